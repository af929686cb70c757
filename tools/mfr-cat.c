/* mfr-cat — concatenate, check, summarise, list, select, shuffle, split and
 * extract record streams. Every mode reads FACE or EMBEDDING streams through
 * the same checked reader; selection options apply to all modes but --verify. */
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli.h"     /* defines: mfr_getopt, mfr_die, mfr_parse_int */
#include "hashmap.h" /* defines: mfr_map */
#include "image.h"   /* defines: mfr_image_decode, mfr_png_encode */
#include "record.h"  /* defines: mfr_face_decode, mfr_embedding_decode, MFR_F_* */
#include "stream.h"  /* defines: mfr_reader_*, mfr_writer_*, mfr_index_build */

enum { O_VERIFY = 256, O_DECODE, O_STATS, O_LIST, O_SHUFFLE, O_MEM, O_SPLIT, O_SPLIT_BY, O_EXTRACT,
       O_NAMES, O_INDEX, O_REINDEX, O_IDS, O_LABELS, O_MASKED, O_UNMASKED, O_CAP, O_VALUES };

static const mfr_option opts[] = {
	{"output", 'o', "FILE", "write to FILE (via FILE.tmp, renamed on success) instead of stdout"},
	{"index", O_INDEX, NULL, "with -o, also write the sidecar index FILE.idx"},
	{"verify", O_VERIFY, NULL, "check every frame, checksum and record field; exit 1 on damage"},
	{"decode", O_DECODE, NULL, "with --verify, also decode every image"},
	{"stats", O_STATS, NULL, "print records, identities, images per identity, masked share, sizes"},
	{"list", O_LIST, NULL, "print one TSV line per record (file, offset, id, label, flags, ...)"},
	{"values", O_VALUES, NULL, "with --list on EMBEDDING records, also print the vector's values"},
	{"shuffle", O_SHUFFLE, "SEED", "write the records in a seeded random order (works past memory)"},
	{"mem", O_MEM, "MIB", "memory for --shuffle before spilling to $TMPDIR (default 1024)"},
	{"split", O_SPLIT, "N", "write N shards PREFIX-K.mfr (K = 0..N-1); -o gives PREFIX"},
	{"split-by", O_SPLIT_BY, "KEY", "shard by 'record' (round robin, default), 'id' or 'label' (hash)"},
	{"extract", O_EXTRACT, "DIR", "write FACE images to DIR/LABEL/ID.jpg|png (raw saved as png)"},
	{"names", O_NAMES, "FILE", "with --extract, name folders from a label map TSV (mfr-pack -l)"},
	{"reindex", O_REINDEX, NULL, "build FILE.idx for each FILE operand (no output stream)"},
	{"ids", O_IDS, "FILE", "keep records whose id is listed in FILE (first column)"},
	{"labels", O_LABELS, "FILE", "keep records whose label is listed in FILE (first column)"},
	{"masked", O_MASKED, NULL, "keep only records with the masked flag"},
	{"unmasked", O_UNMASKED, NULL, "keep only records without the masked flag"},
	{"cap", O_CAP, "MIB", "largest record accepted, in MiB (default 64)"},
	{0},
};

static const mfr_tool tool = {
	"mfr-cat",
	"[-o FILE [--index]] [selection] [FILE...]\n"
	"--verify [--decode] [FILE...]\n"
	"--stats | --list [--values] [selection] [FILE...]\n"
	"--shuffle SEED [--mem MIB] [-o FILE] [selection] [FILE...]\n"
	"--split N [--split-by record|id|label] -o PREFIX [selection] [FILE...]\n"
	"--extract DIR [--names FILE] [selection] [FILE...]\n"
	"--reindex FILE...",
	"Concatenate, check, summarise, select, shuffle, split or extract mfr record streams.\n"
	"No FILE, or -, reads stdin. selection: --ids FILE, --labels FILE, --masked, --unmasked.",
	opts,
};

typedef struct {
	mfr_map ids, labels;
	int use_ids, use_labels, masked; /* masked: 0 any, 1 only masked, -1 only unmasked */
} selection;

static int selected(const selection *s, const mfr_record *rec)
{
	uint64_t id;
	int32_t label;
	uint32_t flags;
	mfr_error e;
	if (mfr_record_ids(rec->data, rec->size, &id, &label, &flags, &e) < 0)
		mfr_die("'%s': record %llu at byte %llu: %s", rec->path, (unsigned long long)rec->number,
			(unsigned long long)rec->offset, e.msg);
	if (s->use_ids && !mfr_map_get(&s->ids, id))
		return 0;
	if (s->use_labels && !mfr_map_get(&s->labels, (uint64_t)(uint32_t)label))
		return 0;
	if (s->masked && ((flags & MFR_F_MASKED) != 0) != (s->masked > 0))
		return 0;
	return 1;
}

/* A data record's common fields, and for FACE its decoded header. */
typedef struct {
	uint64_t id;
	int32_t label;
	uint32_t flags;
	mfr_face face;
} parsed;

/* Decodes and checks a data record against its kind (vec: room for an
 * EMBEDDING's values); dies on a bad record. */
static void parse_record(const mfr_schema *sc, const mfr_record *rec, float *vec, parsed *p)
{
	mfr_error e;
	int rc;
	if (sc->kind == MFR_KIND_FACE) {
		rc = mfr_face_decode(rec->data, rec->size, &p->face, &e);
		p->id = p->face.id;
		p->label = p->face.label;
		p->flags = p->face.flags;
	} else {
		mfr_embedding v = {.vec = vec};
		rc = mfr_embedding_decode(rec->data, rec->size, sc, &v, &e);
		p->id = v.id;
		p->label = v.label;
		p->flags = v.flags;
	}
	if (rc < 0)
		mfr_die("'%s': bad record %llu at byte %llu: %s", rec->path, (unsigned long long)rec->number,
			(unsigned long long)rec->offset, e.msg);
}

typedef struct {
	const char *const *files;
	int nfiles;
	uint32_t cap;
	selection sel;
} input;

static mfr_reader *open_input(const input *in, int want_meta)
{
	mfr_error e;
	mfr_reader *r = mfr_reader_open(in->files, in->nfiles, in->cap, want_meta, &e);
	if (!r)
		mfr_die_error(&e);
	return r;
}

/* Reads the next selected data record, or a metadata record when the
 * reader wants them; returns 0 at the end, dies on damage. */
static int next_rec(mfr_reader *r, const input *in, mfr_record *rec)
{
	mfr_error e;
	int k;
	while ((k = mfr_reader_next(r, rec, &e)) == 1)
		if (rec->type != MFR_REC_DATA || selected(&in->sel, rec))
			return 1;
	if (k < 0)
		mfr_die_error(&e);
	return 0;
}

/* ---- default mode: concatenate ---- */

static int do_cat(const input *in, const char *out, int with_index, int argc, char **argv)
{
	mfr_reader *r = open_input(in, 1);
	mfr_error e;
	mfr_writer *w = mfr_writer_open(out, mfr_reader_schema(r), "mfr-cat", argc, argv, with_index, &e);
	if (!w)
		mfr_die_error(&e);
	mfr_record rec;
	mfr_error re;
	int k;
	while ((k = mfr_reader_next(r, &rec, &re)) == 1) {
		if (rec.type == MFR_REC_DATA && !selected(&in->sel, &rec))
			continue;
		if (mfr_writer_put(w, rec.type, rec.data, rec.size, &e) < 0) {
			mfr_writer_abort(w);
			mfr_die_error(&e);
		}
	}
	if (k < 0) {
		mfr_writer_abort(w);
		mfr_die_error(&re);
	}
	mfr_reader_close(r);
	if (mfr_writer_close(w, &e) < 0)
		mfr_die_error(&e);
	return 0;
}

/* ---- --verify ---- */

static int do_verify(const input *in, int decode)
{
	int bad = 0;
	mfr_jpeg *j = NULL;
	mfr_error e;
	if (decode && !(j = mfr_jpeg_new(&e)))
		mfr_die_error(&e);
	int n = in->nfiles ? in->nfiles : 1;
	for (int i = 0; i < n; i++) {
		const char *one[1] = {in->nfiles ? in->files[i] : "-"};
		const char *name = strcmp(one[0], "-") ? one[0] : "<stdin>";
		mfr_reader *r = mfr_reader_open(one, 1, in->cap, 0, &e);
		if (!r) {
			mfr_warn("%s", e.msg);
			bad = 1;
			continue;
		}
		const mfr_schema *sc = mfr_reader_schema(r);
		float *vec = sc->kind == MFR_KIND_EMBEDDING ? malloc(sc->dim * sizeof *vec) : NULL;
		mfr_record rec;
		int k, failed = 0;
		uint64_t bytes = 0;
		while ((k = mfr_reader_next(r, &rec, &e)) == 1) {
			mfr_error fe;
			bytes += rec.size;
			if (sc->kind == MFR_KIND_FACE) {
				mfr_face f;
				if (mfr_face_decode(rec.data, rec.size, &f, &fe) < 0)
					goto bad_record;
				if (decode && f.encoding != MFR_ENC_RAW) {
					mfr_image im = {0};
					if (mfr_image_decode(j, f.image, f.image_size, 0, MFR_PIXEL_CAP, &im, &fe) < 0)
						goto bad_record;
					int ok = im.w == f.width && im.h == f.height && im.c == f.channels;
					mfr_image_free(&im);
					if (!ok) {
						mfr_fail(&fe, "image is %dx%dx%d, the record says %ux%ux%u", im.w, im.h,
							 im.c, f.width, f.height, f.channels);
						goto bad_record;
					}
				}
			} else {
				mfr_embedding v = {.vec = vec};
				if (mfr_embedding_decode(rec.data, rec.size, sc, &v, &fe) < 0)
					goto bad_record;
			}
			continue;
		bad_record:
			mfr_fail(&e, "'%s': bad record %llu at byte %llu: %s", rec.path,
				 (unsigned long long)rec.number, (unsigned long long)rec.offset, fe.msg);
			k = -1;
			break;
		}
		if (k < 0) {
			mfr_warn("%s", e.msg);
			failed = 1;
		} else
			printf("%s: %llu %s records, %llu payload bytes, ok\n", name,
			       (unsigned long long)mfr_reader_count(r), mfr_kind_name(sc->kind),
			       (unsigned long long)bytes);
		bad |= failed;
		free(vec);
		mfr_reader_close(r);
	}
	mfr_jpeg_free(j);
	return bad;
}

/* ---- --stats ---- */

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	return x < y ? -1 : x > y;
}

static int do_stats(const input *in)
{
	mfr_reader *r = open_input(in, 0);
	const mfr_schema schema = *mfr_reader_schema(r), *sc = &schema; /* outlives the reader */
	mfr_map labels, sizes;
	mfr_map_init(&labels);
	mfr_map_init(&sizes);
	uint64_t n = 0, unlabelled = 0, masked = 0, synthetic = 0, landmarks = 0, derived = 0, bytes = 0;
	uint64_t styles[16] = {0}, enc[3] = {0};
	float *vec = sc->kind == MFR_KIND_EMBEDDING ? malloc(sc->dim * sizeof *vec) : NULL;
	mfr_record rec;
	mfr_error e;
	while (next_rec(r, in, &rec)) {
		parsed p;
		parse_record(sc, &rec, vec, &p);
		int32_t label = p.label;
		uint32_t flags = p.flags;
		n++;
		bytes += rec.size;
		if (label < 0)
			unlabelled++;
		else {
			uint64_t *c = mfr_map_put(&labels, (uint64_t)label, NULL, &e);
			if (!c)
				mfr_die_error(&e);
			++*c;
		}
		masked += (flags & MFR_F_MASKED) != 0;
		styles[(flags & MFR_F_STYLE_MASK) >> MFR_F_STYLE_SHIFT]++;
		synthetic += (flags & MFR_F_SYNTHETIC) != 0;
		landmarks += (flags & MFR_F_LANDMARKS) != 0;
		derived += (flags & MFR_F_DERIVED) != 0;
		if (sc->kind == MFR_KIND_FACE) {
			const mfr_face *f = &p.face;
			enc[f->encoding]++;
			uint64_t *c = mfr_map_put(&sizes, (uint64_t)f->width << 32 | (uint64_t)f->height << 8 | f->channels,
						  NULL, &e);
			if (!c)
				mfr_die_error(&e);
			++*c;
		}
	}
	mfr_reader_close(r);
	free(vec);

	printf("kind: %s\n", mfr_kind_name(sc->kind));
	if (sc->kind == MFR_KIND_EMBEDDING)
		printf("dimension: %u (%s)\n", sc->dim, sc->dtype == MFR_DTYPE_F16 ? "fp16" : "fp32");
	printf("records: %llu\n", (unsigned long long)n);
	printf("identities: %zu\n", labels.n);
	printf("unlabelled: %llu\n", (unsigned long long)unlabelled);
	printf("masked: %llu (%.2f%%)\n", (unsigned long long)masked, n ? 100.0 * masked / n : 0.0);
	static const char *style_names[16] = {"none", "surgical", "n95", "kn95", "cloth", [15] = "user"};
	for (int s = 1; s < 16; s++)
		if (styles[s])
			printf("  style %s: %llu\n", style_names[s] ? style_names[s] : "other", (unsigned long long)styles[s]);
	printf("synthetic: %llu\n", (unsigned long long)synthetic);
	printf("landmarks: %llu\n", (unsigned long long)landmarks);
	printf("derived: %llu\n", (unsigned long long)derived);
	printf("payload bytes: %llu (mean %.1f per record)\n", (unsigned long long)bytes, n ? (double)bytes / n : 0.0);

	if (labels.n) {
		uint64_t *counts = malloc(labels.n * sizeof *counts), key, val;
		size_t pos = 0, k = 0;
		while (mfr_map_next(&labels, &pos, &key, &val))
			counts[k++] = val;
		qsort(counts, k, sizeof *counts, cmp_u64);
		printf("images per identity: min %llu, median %llu, mean %.2f, max %llu\n",
		       (unsigned long long)counts[0], (unsigned long long)counts[k / 2],
		       (double)(n - unlabelled) / k, (unsigned long long)counts[k - 1]);
		printf("histogram (images per identity: identities):\n");
		/* bins 1, 2, 3-4, 5-8, ...: powers of two, as identity sizes span decades */
		for (uint64_t lo = 1, hi = 1; lo <= counts[k - 1]; lo = hi + 1, hi = hi * 2) {
			size_t c = 0;
			for (size_t i = 0; i < k; i++)
				c += counts[i] >= lo && counts[i] <= hi;
			if (hi < counts[0])
				continue; /* bins below the smallest identity */
			if (lo == hi)
				printf("  %-12llu %zu\n", (unsigned long long)lo, c);
			else {
				char b[48];
				snprintf(b, sizeof b, "%llu-%llu", (unsigned long long)lo, (unsigned long long)hi);
				printf("  %-12s %zu\n", b, c);
			}
		}
		free(counts);
	}
	if (sc->kind == MFR_KIND_FACE) {
		printf("encodings: jpeg %llu, png %llu, raw %llu\n", (unsigned long long)enc[MFR_ENC_JPEG],
		       (unsigned long long)enc[MFR_ENC_PNG], (unsigned long long)enc[MFR_ENC_RAW]);
		printf("image sizes (width x height x channels: records):\n");
		uint64_t key, val;
		size_t pos = 0, shown = 0;
		while (mfr_map_next(&sizes, &pos, &key, &val) && shown++ < 10)
			printf("  %llux%llux%llu %llu\n", (unsigned long long)(key >> 32),
			       (unsigned long long)((key >> 8) & 0xffffff), (unsigned long long)(key & 0xff),
			       (unsigned long long)val);
		if (sizes.n > 10)
			printf("  (%zu sizes in all)\n", sizes.n);
	}
	mfr_map_free(&labels);
	mfr_map_free(&sizes);
	return 0;
}

/* ---- --list ---- */

static int do_list(const input *in, int values)
{
	mfr_reader *r = open_input(in, 0);
	const mfr_schema *sc = mfr_reader_schema(r);
	float *vec = sc->kind == MFR_KIND_EMBEDDING ? malloc(sc->dim * sizeof *vec) : NULL;
	static const char *encname[] = {"raw", "jpeg", "png"};
	mfr_record rec;
	if (sc->kind == MFR_KIND_FACE)
		printf("file\trecord\toffset\tid\tlabel\tflags\twidth\theight\tchannels\tencoding\tbytes\n");
	else {
		printf("file\trecord\toffset\tid\tlabel\tflags");
		for (uint32_t d = 0; values && d < sc->dim; d++)
			printf("\tv%u", d);
		putchar('\n');
	}
	while (next_rec(r, in, &rec)) {
		parsed p;
		parse_record(sc, &rec, vec, &p);
		printf("%s\t%llu\t%llu\t%llu\t%d\t0x%x", rec.path, (unsigned long long)rec.number,
		       (unsigned long long)rec.offset, (unsigned long long)p.id, p.label, p.flags);
		if (sc->kind == MFR_KIND_FACE) {
			const mfr_face *f = &p.face;
			printf("\t%u\t%u\t%u\t%s\t%u", f->width, f->height, f->channels, encname[f->encoding],
			       f->image_size);
		} else if (values)
			for (uint32_t d = 0; d < sc->dim; d++)
				printf("\t%.9g", vec[d]);
		putchar('\n');
	}
	free(vec);
	mfr_reader_close(r);
	return 0;
}

/* ---- --shuffle: in memory, or by random buckets on disk, recursively ---- */

typedef struct {
	uint8_t *data;
	uint32_t size;
} blob;

static void write_or_die(mfr_writer *w, uint16_t type, const void *p, uint32_t n)
{
	mfr_error e;
	if (mfr_writer_put(w, type, p, n, &e) < 0) {
		mfr_writer_abort(w);
		mfr_die_error(&e);
	}
}

static void shuffle_blobs(blob *b, size_t n, mfr_rng *rng)
{
	for (size_t i = n; i > 1; i--) { /* Fisher-Yates */
		size_t j = (size_t)mfr_rng_below(rng, i);
		blob t = b[i - 1];
		b[i - 1] = b[j];
		b[j] = t;
	}
}

#define BUCKETS 64

/* A bucket file holds records as u32 size + payload. Shuffles the records of
 * `f` (rewound) into w: in memory when they fit in mem bytes, else by
 * scattering into BUCKETS new files and recursing. */
static void shuffle_file(FILE *f, uint64_t bytes, uint64_t mem, mfr_rng *rng, mfr_writer *w, int depth)
{
	rewind(f);
	uint8_t h[4];
	if (bytes <= mem || depth > 8) {
		blob *b = NULL;
		size_t n = 0, room = 0;
		while (fread(h, 1, 4, f) == 4) {
			uint32_t sz = mfr_get32(h);
			if (n == room && !(b = realloc(b, (room = room ? room * 2 : 1024) * sizeof *b)))
				mfr_die("out of memory");
			if (!(b[n].data = malloc(sz ? sz : 1)) || fread(b[n].data, 1, sz, f) != sz)
				mfr_die("spill file: read error");
			b[n++].size = sz;
		}
		shuffle_blobs(b, n, rng);
		for (size_t i = 0; i < n; i++) {
			write_or_die(w, MFR_REC_DATA, b[i].data, b[i].size);
			free(b[i].data);
		}
		free(b);
		return;
	}
	FILE *bk[BUCKETS];
	uint64_t bb[BUCKETS] = {0};
	for (int i = 0; i < BUCKETS; i++)
		if (!(bk[i] = tmpfile()))
			mfr_die("cannot create a spill file in $TMPDIR: %s", strerror(errno));
	uint8_t *buf = NULL;
	size_t room = 0;
	while (fread(h, 1, 4, f) == 4) {
		uint32_t sz = mfr_get32(h);
		if (sz > room && !(buf = realloc(buf, room = sz)))
			mfr_die("out of memory");
		if (fread(buf, 1, sz, f) != sz)
			mfr_die("spill file: read error");
		int k = (int)mfr_rng_below(rng, BUCKETS);
		if (fwrite(h, 1, 4, bk[k]) != 4 || fwrite(buf, 1, sz, bk[k]) != sz)
			mfr_die("spill file: write error: %s", strerror(errno));
		bb[k] += sz + 4;
	}
	free(buf);
	for (int i = 0; i < BUCKETS; i++) {
		shuffle_file(bk[i], bb[i], mem, rng, w, depth + 1);
		fclose(bk[i]);
	}
}

static int do_shuffle(const input *in, uint64_t seed, uint64_t mem, const char *out, int with_index,
		      int argc, char **argv)
{
	mfr_reader *r = open_input(in, 1);
	mfr_error e;
	mfr_writer *w = mfr_writer_open(out, mfr_reader_schema(r), "mfr-cat", argc, argv, with_index, &e);
	if (!w)
		mfr_die_error(&e);
	mfr_rng rng = {seed};
	blob *b = NULL;
	size_t n = 0, room = 0;
	uint64_t held = 0;
	FILE *spill = NULL;
	uint64_t spilled = 0;
	mfr_record rec;
	while (next_rec(r, in, &rec)) {
		if (rec.type == MFR_REC_META) {
			write_or_die(w, MFR_REC_META, rec.data, rec.size);
			continue;
		}
		if (!spill && held + rec.size <= mem) {
			if (n == room && !(b = realloc(b, (room = room ? room * 2 : 1024) * sizeof *b)))
				mfr_die("out of memory");
			if (!(b[n].data = malloc(rec.size ? rec.size : 1)))
				mfr_die("out of memory");
			memcpy(b[n].data, rec.data, rec.size);
			b[n++].size = rec.size;
			held += rec.size;
			continue;
		}
		if (!spill) { /* over the budget: move what is held to disk */
			if (!(spill = tmpfile()))
				mfr_die("cannot create a spill file in $TMPDIR: %s", strerror(errno));
			for (size_t i = 0; i < n; i++) {
				uint8_t h[4];
				mfr_put32(h, b[i].size);
				if (fwrite(h, 1, 4, spill) != 4 || fwrite(b[i].data, 1, b[i].size, spill) != b[i].size)
					mfr_die("spill file: write error: %s", strerror(errno));
				spilled += b[i].size + 4;
				free(b[i].data);
			}
			n = 0;
		}
		uint8_t h[4];
		mfr_put32(h, rec.size);
		if (fwrite(h, 1, 4, spill) != 4 || fwrite(rec.data, 1, rec.size, spill) != rec.size)
			mfr_die("spill file: write error: %s", strerror(errno));
		spilled += rec.size + 4;
	}
	mfr_reader_close(r);
	if (spill) {
		if (fflush(spill) != 0)
			mfr_die("spill file: write error: %s", strerror(errno));
		shuffle_file(spill, spilled, mem, &rng, w, 0);
		fclose(spill);
	} else {
		shuffle_blobs(b, n, &rng);
		for (size_t i = 0; i < n; i++) {
			write_or_die(w, MFR_REC_DATA, b[i].data, b[i].size);
			free(b[i].data);
		}
	}
	free(b);
	if (mfr_writer_close(w, &e) < 0)
		mfr_die_error(&e);
	return 0;
}

/* ---- --split ---- */

static int do_split(const input *in, int nshards, const char *by, const char *prefix, int with_index,
		    int argc, char **argv)
{
	mfr_reader *r = open_input(in, 1);
	mfr_error e;
	mfr_writer **w = calloc((size_t)nshards, sizeof *w);
	size_t plen = strlen(prefix) + 32;
	char *path = malloc(plen);
	for (int k = 0; k < nshards; k++) {
		snprintf(path, plen, "%s-%d.mfr", prefix, k);
		if (!(w[k] = mfr_writer_open(path, mfr_reader_schema(r), "mfr-cat", argc, argv, with_index, &e))) {
			for (int i = 0; i < k; i++)
				mfr_writer_abort(w[i]);
			mfr_die_error(&e);
		}
	}
	mfr_record rec;
	uint64_t i = 0;
	while (next_rec(r, in, &rec)) {
		if (rec.type == MFR_REC_META) {
			for (int k = 0; k < nshards; k++)
				write_or_die(w[k], MFR_REC_META, rec.data, rec.size);
			continue;
		}
		uint64_t id;
		int32_t label;
		uint32_t flags;
		mfr_record_ids(rec.data, rec.size, &id, &label, &flags, &e);
		uint64_t k = by[0] == 'r' ? i++ : by[0] == 'i' ? mfr_hash2(0, id) : mfr_hash2(1, (uint32_t)label);
		if (mfr_writer_put(w[k % nshards], MFR_REC_DATA, rec.data, rec.size, &e) < 0) {
			for (int s = 0; s < nshards; s++)
				mfr_writer_abort(w[s]);
			mfr_die_error(&e);
		}
	}
	mfr_reader_close(r);
	int bad = 0;
	for (int k = 0; k < nshards; k++)
		if (mfr_writer_close(w[k], &e) < 0) {
			mfr_warn("%s", e.msg);
			bad = 1;
		}
	free(w);
	free(path);
	return bad;
}

/* ---- --extract ---- */

/* Label -> folder name from a label map TSV (label, name, count). */
static char **load_names(const char *path, int32_t *nnames)
{
	FILE *f = fopen(path, "r");
	if (!f)
		mfr_die("'%s': %s", path, strerror(errno));
	char **names = NULL;
	int32_t n = 0;
	char line[8192];
	unsigned long long lineno = 0;
	while (fgets(line, sizeof line, f)) {
		lineno++;
		char *tab = strchr(line, '\t'), *end;
		if (lineno == 1 && strncmp(line, "label\t", 6) == 0)
			continue;
		if (!tab)
			mfr_die("'%s': line %llu: expected 'label<TAB>name<TAB>count'", path, lineno);
		long v = strtol(line, &end, 10);
		if (end != tab || v < 0 || v > 0x7fffffffL)
			mfr_die("'%s': line %llu: bad label", path, lineno);
		char *name = tab + 1, *t2 = strpbrk(name, "\t\n");
		if (t2)
			*t2 = 0;
		if (!*name || strchr(name, '/') || !strcmp(name, ".") || !strcmp(name, ".."))
			mfr_die("'%s': line %llu: unusable folder name '%s'", path, lineno, name);
		if (v >= n) {
			int32_t nn = (int32_t)v + 1;
			names = realloc(names, (size_t)nn * sizeof *names);
			for (int32_t i = n; i < nn; i++)
				names[i] = NULL;
			n = nn;
		}
		free(names[v]);
		names[v] = strdup(name);
	}
	fclose(f);
	*nnames = n;
	return names;
}

static int do_extract(const input *in, const char *dir, const char *names_path)
{
	int32_t nnames = 0;
	char **names = names_path ? load_names(names_path, &nnames) : NULL;
	mfr_reader *r = open_input(in, 0);
	if (mfr_reader_schema(r)->kind != MFR_KIND_FACE)
		mfr_die("--extract needs a FACE stream, not %s", mfr_kind_name(mfr_reader_schema(r)->kind));
	if (mkdir(dir, 0777) != 0 && errno != EEXIST)
		mfr_die("'%s': %s", dir, strerror(errno));
	mfr_record rec;
	mfr_error e;
	uint64_t n = 0;
	char path[8192];
	while (next_rec(r, in, &rec)) {
		mfr_face f;
		if (mfr_face_decode(rec.data, rec.size, &f, &e) < 0)
			mfr_die("'%s': bad record %llu at byte %llu: %s", rec.path, (unsigned long long)rec.number,
				(unsigned long long)rec.offset, e.msg);
		char sub[64];
		const char *folder = sub;
		if (f.label < 0)
			folder = "unlabelled";
		else if (names && f.label < nnames && names[f.label])
			folder = names[f.label];
		else
			snprintf(sub, sizeof sub, "%d", f.label);
		snprintf(path, sizeof path, "%s/%s", dir, folder);
		if (mkdir(path, 0777) != 0 && errno != EEXIST)
			mfr_die("'%s': %s", path, strerror(errno));
		const uint8_t *data = f.image;
		size_t size = f.image_size;
		uint8_t *png = NULL;
		if (f.encoding == MFR_ENC_RAW) {
			mfr_image im = {f.width, f.height, f.channels, (uint8_t *)f.image};
			if (mfr_png_encode(&im, &png, &size, &e) < 0)
				mfr_die("record %llu: %s", (unsigned long long)rec.number, e.msg);
			data = png;
		}
		snprintf(path, sizeof path, "%s/%s/%llu.%s", dir, folder, (unsigned long long)f.id,
			 f.encoding == MFR_ENC_JPEG ? "jpg" : "png");
		FILE *o = fopen(path, "wb");
		if (!o || fwrite(data, 1, size, o) != size || fclose(o) != 0)
			mfr_die("'%s': write error: %s", path, strerror(errno));
		free(png);
		n++;
	}
	mfr_reader_close(r);
	for (int32_t i = 0; i < nnames; i++)
		free(names[i]);
	free(names);
	fprintf(stderr, "mfr-cat: extracted %llu images to '%s'\n", (unsigned long long)n, dir);
	return 0;
}

int main(int argc, char **argv)
{
	const char *out = NULL, *extract = NULL, *names = NULL, *split_by = "record";
	int verify = 0, decode = 0, stats = 0, list = 0, values = 0, shuffle = 0, split = 0, with_index = 0, reindex = 0;
	uint64_t seed = 0, mem = 1024;
	input in = {0};
	mfr_map_init(&in.sel.ids);
	mfr_map_init(&in.sel.labels);
	int c, modes = 0;
	while ((c = mfr_getopt(&tool, argc, argv)) != -1) {
		switch (c) {
		case 'o': out = optarg; break;
		case O_INDEX: with_index = 1; break;
		case O_VERIFY: verify = 1; modes++; break;
		case O_DECODE: decode = 1; break;
		case O_STATS: stats = 1; modes++; break;
		case O_LIST: list = 1; modes++; break;
		case O_SHUFFLE: shuffle = 1; modes++;
			seed = (uint64_t)mfr_parse_int(optarg, 0, INT64_MAX, "shuffle seed");
			break;
		case O_MEM: mem = (uint64_t)mfr_parse_int(optarg, 1, 1 << 24, "--mem (MiB)"); break;
		case O_SPLIT: split = (int)mfr_parse_int(optarg, 1, 4096, "shard count"); modes++; break;
		case O_SPLIT_BY:
			if (strcmp(optarg, "record") && strcmp(optarg, "id") && strcmp(optarg, "label"))
				mfr_usage_error("--split-by takes record, id or label, not '%s'", optarg);
			split_by = optarg;
			break;
		case O_EXTRACT: extract = optarg; modes++; break;
		case O_NAMES: names = optarg; break;
		case O_REINDEX: reindex = 1; modes++; break;
		case O_IDS: mfr_load_keys(optarg, &in.sel.ids, 0); in.sel.use_ids = 1; break;
		case O_LABELS: mfr_load_keys(optarg, &in.sel.labels, 1); in.sel.use_labels = 1; break;
		case O_MASKED: in.sel.masked = 1; break;
		case O_UNMASKED: in.sel.masked = -1; break;
		case O_VALUES: values = 1; break;
		case O_CAP: in.cap = (uint32_t)mfr_parse_int(optarg, 1, 256, "--cap (MiB)") << 20; break;
		}
	}
	if (modes > 1)
		mfr_usage_error("--verify, --stats, --list, --shuffle, --split, --extract and --reindex exclude each other");
	if (decode && !verify)
		mfr_usage_error("--decode goes with --verify");
	if (values && !list)
		mfr_usage_error("--values goes with --list");
	if (names && !extract)
		mfr_usage_error("--names goes with --extract");
	if (split && !out)
		mfr_usage_error("--split needs -o PREFIX");
	if (out && (verify || stats || list || extract || reindex))
		mfr_usage_error("-o goes with concatenation, --shuffle or --split");
	if (with_index && !out)
		mfr_usage_error("--index needs -o FILE");
	if (verify && (in.sel.use_ids || in.sel.use_labels || in.sel.masked))
		mfr_usage_error("--verify checks whole streams: selection options do not apply");
	in.files = (const char *const *)argv + optind;
	in.nfiles = argc - optind;
	mem <<= 20;

	int rc;
	if (reindex) {
		if (!in.nfiles)
			mfr_usage_error("--reindex needs FILE operands");
		rc = 0;
		for (int i = 0; i < in.nfiles; i++) {
			mfr_error e;
			if (mfr_index_build(in.files[i], &e) < 0) {
				mfr_warn("%s", e.msg);
				rc = 1;
			}
		}
	} else if (verify)
		rc = do_verify(&in, decode);
	else if (stats)
		rc = do_stats(&in);
	else if (list)
		rc = do_list(&in, values);
	else if (shuffle)
		rc = do_shuffle(&in, seed, mem, out, with_index, argc, argv);
	else if (split)
		rc = do_split(&in, split, split_by, out, with_index, argc, argv);
	else if (extract)
		rc = do_extract(&in, extract, names);
	else
		rc = do_cat(&in, out, with_index, argc, argv);
	mfr_map_free(&in.sel.ids);
	mfr_map_free(&in.sel.labels);
	return mfr_close_stdout(rc);
}
