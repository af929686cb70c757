/* mfr-maskaug — FACE stream in, FACE stream out, with synthetic masks drawn
 * on a chosen share of the faces (common/maskaug.h).
 *
 * Which records get a mask, and which mask, is decided per sample id by a
 * hash of (seed, id): the output depends on neither the order of the records
 * nor the number of shards or threads, and the bytes written are the same
 * for every -j. Masked records get the MASKED flag and their style code; in
 * --append mode the source is kept and the masked copy follows it, with an
 * id derived from (seed, id) and the DERIVED flag. Records that already wear
 * a mask are copied unchanged. Images keep their encoding (JPEG re-encoded
 * at -q, PNG, raw) and channel count.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"     /* defines: mfr_getopt, mfr_parse_*, mfr_die*, mfr_text_open, mfr_progress */
#include "image.h"   /* defines: mfr_image, mfr_jpeg_*, mfr_image_decode, mfr_png_encode */
#include "maskaug.h" /* defines: mfr_maskaug_*, mfr_mask_templates_* */
#include "record.h"  /* defines: mfr_face, mfr_face_decode/encode, MFR_F_*, MFR_STYLE_* */
#include "stream.h"  /* defines: mfr_reader_*, mfr_writer_* */

enum { O_STYLES = 256, O_APPEND, O_TEMPLATES, O_AUDIT, O_INDEX, O_CAP };

static const mfr_option opts[] = {
	{"ratio", 'r', "R", "share of faces that get a mask, 0..1 (default 0.15)"},
	{"seed", 's', "S", "seed of the choices and the masks (default 0)"},
	{"styles", O_STYLES, "LIST", "style weights NAME=W,... of surgical, n95, kn95, cloth, user\n"
				     "(default surgical=4,n95=1,kn95=2,cloth=3; user=1 with --templates)"},
	{"templates", 't', "PATH", "user masks: a MaskTheFace masks.cfg, an FMA-3D UV texture .png, or a folder of them"},
	{"append", O_APPEND, NULL, "keep every record and add the masked copies after their sources (new ids)"},
	{"audit", O_AUDIT, "FILE", "write one TSV line per mask drawn: id, source_id, style, colour, pattern,\n"
				   "coverage, yaw, pitch, roll"},
	{"quality", 'q', "Q", "JPEG quality of re-encoded masked faces, 1..100 (default 90)"},
	{"threads", 'j', "T", "draw with T threads (default 1); the output does not depend on T"},
	{"output", 'o', "FILE", "write to FILE (via FILE.tmp, renamed on success) instead of stdout"},
	{"index", O_INDEX, NULL, "with -o, also write the sidecar index FILE.idx"},
	{"cap", O_CAP, "BYTES", "largest record accepted (default 64 MiB)"},
	{0},
};

static const mfr_tool tool = {
	"mfr-maskaug",
	"[-r R] [-s S] [--styles LIST] [-t PATH] [--append] [--audit FILE] [-q Q] [-j T]\n"
	"[-o FILE [--index]] [FILE...]",
	"Draw synthetic masks (surgical, N95, KN95, cloth, user templates) on a share of the faces\n"
	"of FACE streams; which faces and which masks depend on (seed, sample id) only.",
	opts,
};

typedef struct {
	mfr_maskaug cfg;
	int append, quality;
} config;

/* One input record being processed. */
typedef struct {
	uint16_t type;
	uint8_t *in;       /* copy of the payload */
	size_t in_room;
	uint32_t in_size;
	uint64_t number, offset;
	const char *path;
	/* results */
	int masked;        /* 1: out holds the masked record */
	uint8_t *out;
	size_t out_room;
	uint32_t out_size;
	mfr_maskaug_info info;
	uint64_t id, src_id;
	int failed;
	mfr_error e;
} slot;

typedef struct {
	const config *c;
	slot *slots;
	int count, t, nt;
	mfr_jpeg *jpeg;
} worker;

static int grow(uint8_t **b, size_t *room, size_t n, mfr_error *e)
{
	if (n <= *room)
		return 0;
	uint8_t *p = mfr_realloc(*b, n, e);
	if (!p)
		return -1;
	*b = p;
	*room = n;
	return 0;
}

/* Masks record s when its id is chosen; leaves s->masked 0 otherwise. */
static int process(worker *w, slot *s)
{
	const config *c = w->c;
	mfr_face f;
	if (mfr_face_decode(s->in, s->in_size, &f, &s->e) < 0)
		return -1;
	s->src_id = f.id;
	if (!mfr_maskaug_selected(&c->cfg, f.id) || (f.flags & MFR_F_MASKED))
		return 0;
	const float *lm = (f.flags & MFR_F_LANDMARKS) ? f.landmarks : NULL;
	if (!lm && (f.width != 112 || f.height != 112))
		return mfr_fail(&s->e, "a %ux%u face without landmarks (only aligned 112x112 crops can do without)",
				f.width, f.height);
	mfr_image im = {0};
	if (f.encoding == MFR_ENC_RAW) {
		if (mfr_image_alloc(&im, f.width, f.height, 3, &s->e) < 0)
			return -1;
		size_t n = (size_t)f.width * f.height;
		for (size_t i = 0; i < n; i++)
			for (int k = 0; k < 3; k++)
				im.px[3 * i + (size_t)k] = f.image[f.channels == 3 ? 3 * i + (size_t)k : i];
	} else if (mfr_image_decode(w->jpeg, f.image, f.image_size, 3, MFR_PIXEL_CAP, &im, &s->e) < 0) {
		return -1;
	} else if (im.w != f.width || im.h != f.height) {
		mfr_fail(&s->e, "the image is %dx%d, the record says %ux%u", im.w, im.h, f.width, f.height);
		mfr_image_free(&im);
		return -1;
	}
	if (mfr_maskaug_apply(&c->cfg, im.px, im.w, im.h, lm, f.id, &s->info, &s->e) < 0) {
		mfr_image_free(&im);
		return -1;
	}
	if (f.channels == 1) { /* back to grey: ITU-R BT.601 luma, as JPEG's */
		size_t n = (size_t)im.w * (size_t)im.h;
		for (size_t i = 0; i < n; i++) {
			const uint8_t *p = im.px + 3 * i;
			im.px[i] = (uint8_t)((299 * p[0] + 587 * p[1] + 114 * p[2] + 500) / 1000);
		}
		im.c = 1;
	}
	uint8_t *enc = NULL;
	size_t n = 0;
	int rc = 0;
	if (f.encoding == MFR_ENC_JPEG)
		rc = mfr_jpeg_encode(w->jpeg, &im, c->quality, &enc, &n, &s->e);
	else if (f.encoding == MFR_ENC_PNG)
		rc = mfr_png_encode(&im, &enc, &n, &s->e);
	if (rc < 0) {
		mfr_image_free(&im);
		return -1;
	}
	if (f.encoding == MFR_ENC_RAW) {
		f.image = im.px;
		f.image_size = (uint32_t)((size_t)im.w * (size_t)im.h * (size_t)im.c);
	} else {
		f.image = enc;
		f.image_size = (uint32_t)n;
	}
	f.flags = (f.flags & ~MFR_F_STYLE_MASK) | MFR_F_MASKED |
		  ((uint32_t)s->info.style << MFR_F_STYLE_SHIFT & MFR_F_STYLE_MASK);
	if (c->append) {
		f.id = mfr_maskaug_derived_id(&c->cfg, f.id);
		f.flags |= MFR_F_DERIVED;
	}
	s->id = f.id;
	if (grow(&s->out, &s->out_room, mfr_face_size(&f), &s->e) == 0) {
		mfr_face_encode(&f, s->out);
		s->out_size = mfr_face_size(&f);
		s->masked = 1;
	} else {
		rc = -1;
	}
	free(enc);
	mfr_image_free(&im);
	return rc;
}

static void *work(void *arg)
{
	worker *w = arg;
	for (int i = w->t; i < w->count; i += w->nt) {
		slot *s = &w->slots[i];
		s->masked = 0;
		if (s->type == MFR_REC_DATA)
			s->failed = process(w, s) < 0;
	}
	return NULL;
}

/* "colour" as #rrggbb, the rest as numbers with enough digits to compare. */
static void audit_line(FILE *f, const slot *s)
{
	const mfr_maskaug_info *in = &s->info;
	fprintf(f, "%llu\t%llu\t%s\t#%06x\t%s\t%.4f\t%.1f\t%.1f\t%.1f\n", (unsigned long long)s->id,
		(unsigned long long)s->src_id, mfr_maskaug_style_name(in->style), (unsigned)in->colour,
		in->pattern ? in->pattern : "-", in->coverage, in->yaw, in->pitch, in->roll);
}

/* Parses --styles "name=w,name=w" into cfg's weights (unnamed styles 0). */
static void parse_styles(const char *arg, mfr_maskaug *cfg, int *user_given)
{
	char buf[1024];
	if (strlen(arg) >= sizeof buf)
		mfr_usage_error("--styles: list too long");
	snprintf(buf, sizeof buf, "%s", arg);
	for (int i = 0; i < MFR_MASKAUG_STYLES; i++)
		cfg->weight[i] = 0;
	for (char *tok = strtok(buf, ","); tok; tok = strtok(NULL, ",")) {
		char *eq = strchr(tok, '=');
		if (!eq)
			mfr_usage_error("--styles: '%s' is not NAME=WEIGHT", tok);
		*eq = 0;
		int code = mfr_maskaug_style_code(tok);
		if (code < 0)
			mfr_usage_error("--styles: unknown style '%s' (surgical, n95, kn95, cloth, user)", tok);
		cfg->weight[code] = mfr_parse_real(eq + 1, 0, 1e6, "style weight");
		if (code == MFR_STYLE_USER)
			*user_given = 1;
	}
}

int main(int argc, char **argv)
{
	config c = {.quality = 90};
	mfr_maskaug_defaults(&c.cfg);
	const char *out = NULL, *audit = NULL, *tpath = NULL, *styles = NULL;
	int with_index = 0, nt = 1, opt;
	uint32_t cap = 0;
	while ((opt = mfr_getopt(&tool, argc, argv)) != -1) {
		switch (opt) {
		case 'r': c.cfg.ratio = mfr_parse_real(optarg, 0, 1, "ratio"); break;
		case 's': c.cfg.seed = (uint64_t)mfr_parse_int(optarg, 0, INT64_MAX, "seed"); break;
		case O_STYLES: styles = optarg; break;
		case 't': tpath = optarg; break;
		case O_APPEND: c.append = 1; break;
		case O_AUDIT: audit = optarg; break;
		case 'q': c.quality = (int)mfr_parse_int(optarg, 1, 100, "JPEG quality"); break;
		case 'j': nt = (int)mfr_parse_int(optarg, 1, 256, "threads"); break;
		case 'o': out = optarg; break;
		case O_INDEX: with_index = 1; break;
		case O_CAP: cap = (uint32_t)mfr_parse_int(optarg, 64, MFR_MAX_RECORD, "record cap"); break;
		}
	}
	if (with_index && !out)
		mfr_usage_error("--index needs -o FILE");
	int user_given = 0;
	if (styles)
		parse_styles(styles, &c.cfg, &user_given);
	if (user_given && !tpath)
		mfr_usage_error("--styles user=W needs --templates PATH");
	mfr_error e;
	mfr_mask_templates *T = NULL;
	if (tpath) {
		if (!(T = mfr_mask_templates_load(tpath, &e)))
			mfr_die_error(&e);
		c.cfg.templates = T;
		if (!user_given)
			c.cfg.weight[MFR_STYLE_USER] = 1;
	}
	if (mfr_maskaug_check(&c.cfg, &e) < 0)
		mfr_usage_error("%s", e.msg);

	const char *const *files = (const char *const *)(argv + optind);
	int nfiles = argc - optind;
	mfr_reader *r = mfr_reader_open(files, nfiles, cap, 1, &e);
	if (!r)
		mfr_die_error(&e);
	if (mfr_reader_schema(r)->kind != MFR_KIND_FACE)
		mfr_die("'%s': a %s stream, not FACE", nfiles ? files[0] : "<stdin>",
			mfr_kind_name(mfr_reader_schema(r)->kind));
	char *audit_tmp = NULL;
	FILE *audit_f = audit ? mfr_text_open(audit, &audit_tmp) : NULL;
	if (audit_f)
		fprintf(audit_f, "id\tsource_id\tstyle\tcolour\tpattern\tcoverage\tyaw\tpitch\troll\n");
	mfr_schema schema = {.kind = MFR_KIND_FACE};
	mfr_writer *wr = mfr_writer_open(out, &schema, "mfr-maskaug", argc, argv, with_index, &e);
	if (!wr)
		mfr_die_error(&e);

	enum { PER_THREAD = 64 };
	int batch = PER_THREAD * nt;
	slot *slots = calloc((size_t)batch, sizeof *slots);
	worker *ws = calloc((size_t)nt, sizeof *ws);
	pthread_t *th = calloc((size_t)nt, sizeof *th);
	if (!slots || !ws || !th)
		mfr_die("out of memory");
	for (int t = 0; t < nt; t++) {
		ws[t].c = &c, ws[t].slots = slots, ws[t].t = t, ws[t].nt = nt;
		if (!(ws[t].jpeg = mfr_jpeg_new(&e)))
			mfr_die_error(&e);
	}
	mfr_progress prog;
	mfr_progress_start(&prog, "faces", 0);
	uint64_t seen = 0, masked = 0;
	int done = 0;
	while (!done) {
		int count = 0;
		while (count < batch) {
			mfr_record rec;
			int got = mfr_reader_next(r, &rec, &e);
			if (got < 0) {
				mfr_writer_abort(wr);
				mfr_die_error(&e);
			}
			if (got == 0) {
				done = 1;
				break;
			}
			slot *s = &slots[count++];
			if (grow(&s->in, &s->in_room, rec.size ? rec.size : 1, &e) < 0)
				mfr_die_error(&e);
			memcpy(s->in, rec.data, rec.size);
			s->type = rec.type, s->in_size = rec.size, s->number = rec.number, s->offset = rec.offset;
			s->path = rec.path; /* the reader keeps its file names for its lifetime */
			s->failed = 0;
		}
		for (int t = 0; t < nt; t++) {
			ws[t].count = count;
			if (t > 0 && pthread_create(&th[t], NULL, work, &ws[t]) != 0)
				mfr_die("cannot start a thread");
		}
		work(&ws[0]);
		for (int t = 1; t < nt; t++)
			pthread_join(th[t], NULL);
		for (int i = 0; i < count; i++) {
			slot *s = &slots[i];
			if (s->failed) {
				mfr_writer_abort(wr);
				mfr_die("'%s': record %llu at byte %llu: %s", s->path, (unsigned long long)s->number,
					(unsigned long long)s->offset, s->e.msg);
			}
			int put_src = s->type != MFR_REC_DATA || !s->masked || c.append;
			if ((put_src && mfr_writer_put(wr, s->type, s->in, s->in_size, &e) < 0) ||
			    (s->masked && mfr_writer_put(wr, MFR_REC_DATA, s->out, s->out_size, &e) < 0)) {
				mfr_writer_abort(wr);
				mfr_die_error(&e);
			}
			if (s->type == MFR_REC_DATA)
				seen++;
			if (s->masked) {
				masked++;
				if (audit_f)
					audit_line(audit_f, s);
			}
		}
		mfr_progress_add(&prog, (uint64_t)count);
	}
	mfr_progress_end(&prog);
	if (mfr_writer_close(wr, &e) < 0)
		mfr_die_error(&e);
	if (audit_f)
		mfr_text_commit(audit_f, audit, audit_tmp);
	mfr_reader_close(r);
	for (int i = 0; i < batch; i++) {
		free(slots[i].in);
		free(slots[i].out);
	}
	for (int t = 0; t < nt; t++)
		mfr_jpeg_free(ws[t].jpeg);
	free(slots);
	free(ws);
	free(th);
	mfr_mask_templates_free(T);
	(void)seen;
	(void)masked;
	return mfr_close_stdout(0);
}
