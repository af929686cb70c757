/* mfr-synth — write a FACE stream of synthetic faces (common/synth.h): N
 * identities of M aligned 112x112 images each, with optional label noise of
 * the two kinds cleaning must undo, and a truth list of what was injected.
 *
 * Sample ids are identity*M + image and records come in id order
 * (identity-major); labels are 0..N-1. Which records are flipped or
 * outliers is decided per id by mfr_hash2 of (seed, id), so it depends on
 * neither the order nor the thread count, and the bytes written are the
 * same for every -j. A flipped record keeps its face and gets another
 * identity's label; an outlier record shows a face of no identity (a fresh
 * one per record) under a random identity's label. A split identity (chosen
 * by a hash of (seed, identity)) has the clean records of its odd-numbered
 * images under a label of its own, N + the split's rank: one person under two
 * labels, what mfr-merge-inter must undo.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"    /* defines: mfr_getopt, mfr_parse_*, mfr_die*, mfr_text_open, mfr_progress */
#include "image.h"  /* defines: mfr_image, mfr_jpeg_new, mfr_jpeg_encode */
#include "record.h" /* defines: mfr_face, mfr_face_encode, MFR_F_* */
#include "stream.h" /* defines: mfr_writer_* */
#include "synth.h"  /* defines: mfr_synth_* */

enum { O_RAW = 256, O_DIFFICULTY, O_VARIATION, O_FLIP, O_OUTLIER, O_SPLIT, O_TRUTH, O_INDEX };

static const mfr_option opts[] = {
	{"identities", 'n', "N", "number of identities, labels 0..N-1 (default 100)"},
	{"images", 'm', "M", "images per identity (default 10)"},
	{"seed", 's', "S", "seed of the population and its images (default 1)"},
	{"quality", 'q', "Q", "JPEG quality 1..100 (default 90)"},
	{"raw", O_RAW, NULL, "store raw RGB pixels instead of JPEG"},
	{"difficulty", O_DIFFICULTY, "D", "0..1: how alike identities are (default 0.5)"},
	{"variation", O_VARIATION, "V", "0..2: pose, expression, light and camera variation (default 1)"},
	{"flip-ratio", O_FLIP, "R", "fraction of records given another identity's label (default 0)"},
	{"outlier-ratio", O_OUTLIER, "R", "fraction of records replaced by a face of no identity (default 0)"},
	{"split-ratio", O_SPLIT, "R", "fraction of identities whose odd-numbered images get a second label N.. (default 0)"},
	{"truth", O_TRUTH, "FILE", "write the injected records as TSV: id, kind, label, true_label"},
	{"output", 'o', "FILE", "write to FILE (via FILE.tmp, renamed on success) instead of stdout"},
	{"index", O_INDEX, NULL, "with -o, also write the sidecar index FILE.idx"},
	{"threads", 'j', "T", "render with T threads (default 1); the output does not depend on T"},
	{0},
};

static const mfr_tool tool = {
	"mfr-synth",
	"[-n N] [-m M] [-s S] [-q Q | --raw] [--difficulty D] [--variation V]\n"
	"[--flip-ratio R] [--outlier-ratio R] [--split-ratio R] [--truth FILE] [-j T] [-o FILE [--index]]",
	"Write a FACE stream of synthetic aligned faces: N identities x M images, sample id\n"
	"identity*M + image, in that order; optionally with injected label noise.",
	opts,
};

/* Domain of the label-noise hash: keeps it apart from the renderer's. */
#define NOISE_DOMAIN 0x4e6f697365ull /* "Noise" */
#define SPLIT_DOMAIN 0x53706c6974ull /* "Split" */

enum { CLEAN, FLIP, OUTLIER, SPLIT };

typedef struct {
	uint64_t seed, n, m;
	double flip, outlier, split;
	int32_t *split_label; /* per identity: its second label, or -1 */
	uint64_t nsplit;
	mfr_synth_opts so;
	int quality, raw;
} config;

/* The kind of record id (CLEAN, FLIP, OUTLIER) and the label it carries:
 * one hash of the id against the two ratios, so the choice depends on
 * (seed, id) only. A second hash picks the label of a flip (never its own
 * identity) or of an outlier (any identity). */
static int record_kind(const config *c, uint64_t id, int32_t *label)
{
	uint64_t h = mfr_hash2(c->seed ^ NOISE_DOMAIN, id);
	double u = (double)(h >> 11) * 0x1.0p-53; /* uniform in [0,1) */
	uint64_t k = id / c->m;
	uint64_t h2 = mfr_hash2(h, 1);
	*label = (int32_t)k;
	if (u < c->outlier) {
		*label = (int32_t)(h2 % c->n);
		return OUTLIER;
	}
	if (u < c->outlier + c->flip && c->n > 1) {
		*label = (int32_t)((k + 1 + h2 % (c->n - 1)) % c->n); /* never its own */
		return FLIP;
	}
	if (c->split_label && c->split_label[k] >= 0 && id % c->m % 2 == 1) {
		*label = c->split_label[k];
		return SPLIT;
	}
	return CLEAN;
}

/* Chooses the split identities and numbers their second labels N, N+1, ... */
static void choose_splits(config *c)
{
	if (c->split <= 0)
		return;
	if (!(c->split_label = malloc(c->n * sizeof *c->split_label)))
		mfr_die("out of memory");
	for (uint64_t k = 0; k < c->n; k++) {
		double u = (double)(mfr_hash2(c->seed ^ SPLIT_DOMAIN, k) >> 11) * 0x1.0p-53;
		c->split_label[k] = u < c->split ? (int32_t)(c->n + c->nsplit++) : -1;
	}
}

/* One record being made: the encoded payload. */
typedef struct {
	uint8_t *buf;
	size_t room;
	uint32_t size;
	mfr_error e;
	int failed;
} slot;

typedef struct {
	const config *c;
	uint64_t first, count; /* ids of this batch */
	slot *slots;
	int t, nt;             /* worker number, workers */
	mfr_jpeg *jpeg;
	uint8_t px[MFR_SYNTH_SIZE * MFR_SYNTH_SIZE * 3];
	uint8_t *jpg;
} worker;

static int make_record(worker *w, uint64_t id, slot *s)
{
	const config *c = w->c;
	int32_t label;
	int kind = record_kind(c, id, &label);
	mfr_synth_face face;
	uint64_t k = id / c->m, img = id % c->m;
	if (kind == OUTLIER) { /* a split record is its identity's face */
		mfr_synth_outlier(c->seed, id, &c->so, &face);
		img = 0;
	} else {
		mfr_synth_identity(c->seed, k, &c->so, &face);
	}
	mfr_face f = {.id = id, .label = label, .width = MFR_SYNTH_SIZE, .height = MFR_SYNTH_SIZE,
		      .channels = 3, .flags = MFR_F_SYNTHETIC | MFR_F_LANDMARKS | MFR_F_ALIGNED};
	if (mfr_synth_render(&face, c->seed, img, &c->so, w->px, f.landmarks, &s->e) < 0)
		return -1;
	size_t n = sizeof w->px;
	free(w->jpg);
	w->jpg = NULL;
	if (c->raw) {
		f.encoding = MFR_ENC_RAW;
		f.image = w->px;
	} else {
		mfr_image im = {MFR_SYNTH_SIZE, MFR_SYNTH_SIZE, 3, w->px};
		if (mfr_jpeg_encode(w->jpeg, &im, c->quality, &w->jpg, &n, &s->e) < 0)
			return -1;
		f.encoding = MFR_ENC_JPEG;
		f.image = w->jpg;
	}
	f.image_size = (uint32_t)n;
	s->size = mfr_face_size(&f);
	if (s->size > s->room) {
		uint8_t *b = realloc(s->buf, s->size);
		if (!b)
			return mfr_fail(&s->e, "out of memory");
		s->buf = b;
		s->room = s->size;
	}
	mfr_face_encode(&f, s->buf);
	return 0;
}

static void *work(void *arg)
{
	worker *w = arg;
	for (uint64_t i = (uint64_t)w->t; i < w->count; i += (uint64_t)w->nt) {
		slot *s = &w->slots[i];
		s->failed = make_record(w, w->first + i, s) < 0;
	}
	return NULL;
}

/* Lists every flipped, outlier and split record, in id order. */
static void write_truth(const config *c, FILE *f)
{
	fprintf(f, "id\tkind\tlabel\ttrue_label\n");
	for (uint64_t id = 0; id < c->n * c->m; id++) {
		int32_t label;
		int kind = record_kind(c, id, &label);
		if (kind == FLIP)
			fprintf(f, "%llu\tflip\t%d\t%llu\n", (unsigned long long)id, label,
				(unsigned long long)(id / c->m));
		else if (kind == OUTLIER)
			fprintf(f, "%llu\toutlier\t%d\t-1\n", (unsigned long long)id, label);
		else if (kind == SPLIT)
			fprintf(f, "%llu\tsplit\t%d\t%llu\n", (unsigned long long)id, label,
				(unsigned long long)(id / c->m));
	}
}

int main(int argc, char **argv)
{
	config c = {.seed = 1, .n = 100, .m = 10, .quality = 90};
	mfr_synth_defaults(&c.so);
	const char *out = NULL, *truth = NULL;
	int with_index = 0, nt = 1, opt;
	while ((opt = mfr_getopt(&tool, argc, argv)) != -1) {
		switch (opt) {
		case 'n': c.n = (uint64_t)mfr_parse_int(optarg, 1, 100000000, "number of identities"); break;
		case 'm': c.m = (uint64_t)mfr_parse_int(optarg, 1, 1000000, "images per identity"); break;
		case 's': c.seed = (uint64_t)mfr_parse_int(optarg, 0, INT64_MAX, "seed"); break;
		case 'q': c.quality = (int)mfr_parse_int(optarg, 1, 100, "JPEG quality"); break;
		case O_RAW: c.raw = 1; break;
		case O_DIFFICULTY: c.so.difficulty = mfr_parse_real(optarg, 0, 1, "difficulty"); break;
		case O_VARIATION: c.so.variation = mfr_parse_real(optarg, 0, 2, "variation"); break;
		case O_FLIP: c.flip = mfr_parse_real(optarg, 0, 1, "flip ratio"); break;
		case O_OUTLIER: c.outlier = mfr_parse_real(optarg, 0, 1, "outlier ratio"); break;
		case O_SPLIT: c.split = mfr_parse_real(optarg, 0, 1, "split ratio"); break;
		case O_TRUTH: truth = optarg; break;
		case 'o': out = optarg; break;
		case O_INDEX: with_index = 1; break;
		case 'j': nt = (int)mfr_parse_int(optarg, 1, 256, "threads"); break;
		}
	}
	if (optind < argc)
		mfr_usage_error("unexpected operand '%s'", argv[optind]);
	if (with_index && !out)
		mfr_usage_error("--index needs -o FILE");
	if (c.flip + c.outlier > 1)
		mfr_usage_error("flip ratio and outlier ratio add up to more than 1");
	if (c.flip > 0 && c.n < 2)
		mfr_usage_error("--flip-ratio needs at least 2 identities");
	if (c.n * c.m > ((uint64_t)1 << 40)) /* ids stay far inside 64 bits, counts inside a day's work */
		mfr_usage_error("%llu identities x %llu images is too many", (unsigned long long)c.n,
				(unsigned long long)c.m);
	if (c.n > INT32_MAX / 2)
		mfr_usage_error("labels must fit in 32 bits");
	if (c.split > 0 && c.m < 2)
		mfr_usage_error("--split-ratio needs at least 2 images per identity");
	choose_splits(&c);

	/* the truth list first: a bad path fails before any rendering, and the
	 * file appears (renamed from FILE.tmp) only after the stream is whole */
	char *truth_tmp = NULL;
	FILE *truth_f = truth ? mfr_text_open(truth, &truth_tmp) : NULL;
	if (truth_f)
		write_truth(&c, truth_f);

	mfr_error e;
	mfr_schema schema = {.kind = MFR_KIND_FACE};
	mfr_writer *wr = mfr_writer_open(out, &schema, "mfr-synth", argc, argv, with_index, &e);
	if (!wr)
		mfr_die_error(&e);

	/* Batches of records rendered in parallel and written in id order. */
	enum { PER_THREAD = 64 };
	uint64_t total = c.n * c.m, batch = (uint64_t)PER_THREAD * (uint64_t)nt;
	slot *slots = calloc(batch, sizeof *slots);
	worker *ws = calloc((size_t)nt, sizeof *ws);
	pthread_t *th = calloc((size_t)nt, sizeof *th);
	if (!slots || !ws || !th)
		mfr_die("out of memory");
	for (int t = 0; t < nt; t++) {
		ws[t].c = &c, ws[t].slots = slots, ws[t].t = t, ws[t].nt = nt;
		if (!c.raw && !(ws[t].jpeg = mfr_jpeg_new(&e)))
			mfr_die_error(&e);
	}
	mfr_progress prog;
	mfr_progress_start(&prog, "faces", total);
	for (uint64_t first = 0; first < total; first += batch) {
		uint64_t count = total - first < batch ? total - first : batch;
		for (int t = 0; t < nt; t++) {
			ws[t].first = first, ws[t].count = count;
			if (t > 0 && pthread_create(&th[t], NULL, work, &ws[t]) != 0)
				mfr_die("cannot start a thread");
		}
		work(&ws[0]);
		for (int t = 1; t < nt; t++)
			pthread_join(th[t], NULL);
		for (uint64_t i = 0; i < count; i++) {
			if (slots[i].failed) {
				mfr_writer_abort(wr);
				mfr_die("record %llu: %s", (unsigned long long)(first + i), slots[i].e.msg);
			}
			if (mfr_writer_put(wr, MFR_REC_DATA, slots[i].buf, slots[i].size, &e) < 0) {
				mfr_writer_abort(wr);
				mfr_die_error(&e);
			}
		}
		mfr_progress_add(&prog, count);
	}
	mfr_progress_end(&prog);
	if (mfr_writer_close(wr, &e) < 0)
		mfr_die_error(&e);
	if (truth_f)
		mfr_text_commit(truth_f, truth, truth_tmp);
	for (uint64_t i = 0; i < batch; i++)
		free(slots[i].buf);
	for (int t = 0; t < nt; t++) {
		mfr_jpeg_free(ws[t].jpeg);
		free(ws[t].jpg);
	}
	free(slots);
	free(ws);
	free(th);
	free(c.split_label);
	return mfr_close_stdout(0);
}
