/* mfr-pack — import faces into a FACE stream from an image folder
 * (ROOT/IDENTITY/IMAGE.jpg or .png), a list file (`path [label] [x1 y1 .. x5 y5]`,
 * aligned from its landmarks), insightface RecordIO (.rec/.idx/property) or an
 * insightface .bin verification pack (with its pairs list).
 *
 * Every image is decoded once to check it and learn its size; JPEG and PNG
 * bytes are stored as they are unless the face is aligned (then re-encoded
 * as JPEG). Labels of folders and lists without labels follow the sorted
 * identity names, and the label map (label, name, count) is written with -l. */
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cli.h"      /* defines: mfr_getopt, mfr_die, mfr_text_open */
#include "hashmap.h"  /* defines: mfr_map */
#include "image.h"    /* defines: mfr_image_decode, mfr_align_face, mfr_jpeg_encode */
#include "pickle.h"   /* defines: mfr_binpack_parse */
#include "record.h"   /* defines: mfr_face, mfr_face_encode, MFR_F_* */
#include "recordio.h" /* defines: mfr_recordio_* */
#include "stream.h"   /* defines: mfr_writer_* */

enum { O_LIST = 256, O_ROOT, O_ALIGNED, O_NO_ALIGN, O_PAIRS, O_INDEX, O_SKIP_BAD };

static const mfr_option opts[] = {
	{"output", 'o', "FILE", "write to FILE (via FILE.tmp, renamed on success) instead of stdout"},
	{"index", O_INDEX, NULL, "with -o, also write the sidecar index FILE.idx"},
	{"labels", 'l', "FILE", "write the label map TSV (label, name, count) to FILE"},
	{"list", O_LIST, "FILE", "read a list file: lines 'path [label] [x1 y1 .. x5 y5]'"},
	{"root", O_ROOT, "DIR", "folder the list's paths are relative to (default: the list's folder)"},
	{"quality", 'q', "Q", "JPEG quality of aligned faces, 1..100 (default 95)"},
	{"no-align", O_NO_ALIGN, NULL, "keep list images as they are, storing their landmarks"},
	{"aligned", O_ALIGNED, NULL, "flag folder images as already aligned to the 112x112 template"},
	{"pairs", O_PAIRS, "FILE", "for a .bin pack: write its pairs TSV (id_a, id_b, same) to FILE"},
	{"skip-bad", O_SKIP_BAD, NULL, "skip undecodable images with a warning instead of failing"},
	{0},
};

static const mfr_tool tool = {
	"mfr-pack",
	"[-o FILE [--index]] [-l LABELS] [--aligned] DIR\n"
	"--list FILE [--root DIR] [-q Q] [--no-align] [-o FILE [--index]] [-l LABELS]\n"
	"[-o FILE [--index]] [-l LABELS] TRAIN.rec\n"
	"--pairs PAIRS.tsv [-o FILE [--index]] PACK.bin",
	"Import faces into a FACE record stream (stdout unless -o): an image folder with one\n"
	"sub-folder per identity, a list file, insightface RecordIO, or a .bin verification pack.",
	opts,
};

typedef struct {
	mfr_writer *w;
	mfr_jpeg *jpeg;
	int quality, align, skip_bad;
	uint64_t skipped;
	uint8_t *buf;
	size_t room;
} packer;

/* Decodes the image to check it, aligns it when landmarks are given and
 * alignment is on, and writes one FACE record. Returns 0, or 1 when the
 * image was skipped (--skip-bad); dies otherwise. */
static int emit(packer *p, const char *what, const uint8_t *data, size_t size, uint64_t id, int32_t label,
		uint32_t flags, const float *lm)
{
	mfr_error e;
	mfr_image im = {0}, al = {0};
	int kind = mfr_image_sniff(data, size);
	if (kind == MFR_IMG_UNKNOWN) {
		mfr_fail(&e, "not a JPEG or PNG image");
		goto bad;
	}
	if (mfr_image_decode(p->jpeg, data, size, 0, MFR_PIXEL_CAP, &im, &e) < 0)
		goto bad;
	mfr_face f = {.id = id, .label = label, .flags = flags, .channels = (uint8_t)im.c,
		      .encoding = kind == MFR_IMG_JPEG ? MFR_ENC_JPEG : MFR_ENC_PNG, .image = data,
		      .image_size = (uint32_t)size};
	uint8_t *jpg = NULL;
	if (lm && p->align) {
		if (mfr_align_face(&im, lm, mfr_arcface_template, 112, 112, &al, f.landmarks, &e) < 0)
			goto bad;
		size_t n;
		if (mfr_jpeg_encode(p->jpeg, &al, p->quality, &jpg, &n, &e) < 0)
			mfr_die("%s: %s", what, e.msg);
		f.image = jpg;
		f.image_size = (uint32_t)n;
		f.encoding = MFR_ENC_JPEG;
		f.width = 112;
		f.height = 112;
		f.flags |= MFR_F_ALIGNED | MFR_F_LANDMARKS;
	} else {
		if (im.w > 65535 || im.h > 65535) {
			mfr_fail(&e, "%dx%d is larger than the format's 65535x65535", im.w, im.h);
			goto bad;
		}
		f.width = (uint16_t)im.w;
		f.height = (uint16_t)im.h;
		if (lm) {
			memcpy(f.landmarks, lm, sizeof f.landmarks);
			f.flags |= MFR_F_LANDMARKS;
		}
	}
	if (size > MFR_MAX_RECORD - MFR_FACE_HEADER) {
		mfr_fail(&e, "image of %zu bytes is over the record limit", size);
		goto bad;
	}
	uint32_t n = mfr_face_size(&f);
	if (n > p->room) {
		free(p->buf);
		if (!(p->buf = malloc(p->room = n + n / 2)))
			mfr_die("out of memory");
	}
	mfr_face_encode(&f, p->buf);
	if (mfr_writer_put(p->w, MFR_REC_DATA, p->buf, n, &e) < 0)
		mfr_die_error(&e);
	free(jpg);
	mfr_image_free(&im);
	mfr_image_free(&al);
	return 0;
bad:
	mfr_image_free(&im);
	mfr_image_free(&al);
	if (!p->skip_bad)
		mfr_die("'%s': %s", what, e.msg);
	mfr_warn("'%s': %s (skipped)", what, e.msg);
	p->skipped++;
	return 1;
}

static uint8_t *slurp(const char *path, size_t *n)
{
	uint8_t *d;
	mfr_error e;
	/* 256 MiB: far above any image, and the record limit */
	if (mfr_read_file(path, MFR_MAX_RECORD, &d, n, &e) < 0)
		mfr_die_error(&e);
	return d;
}

/* ---- names: identities sorted bytewise, as `LC_ALL=C ls` ---- */

typedef struct {
	char **v;
	size_t n, room;
} strvec;

static void sv_push(strvec *s, const char *x)
{
	if (s->n == s->room && !(s->v = realloc(s->v, (s->room = s->room ? s->room * 2 : 64) * sizeof *s->v)))
		mfr_die("out of memory");
	if (!(s->v[s->n++] = strdup(x)))
		mfr_die("out of memory");
}

static void sv_free(strvec *s)
{
	for (size_t i = 0; i < s->n; i++)
		free(s->v[i]);
	free(s->v);
	*s = (strvec){0};
}

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

static int is_image_name(const char *name)
{
	const char *dot = strrchr(name, '.');
	return dot && (!strcasecmp(dot, ".jpg") || !strcasecmp(dot, ".jpeg") || !strcasecmp(dot, ".png"));
}

/* Sorted entries of dir: folders (want_dirs) or image files. */
static void list_dir(const char *dir, int want_dirs, strvec *out, uint64_t *ignored)
{
	DIR *d = opendir(dir);
	if (!d)
		mfr_die("'%s': %s", dir, strerror(errno));
	size_t plen = strlen(dir) + 512;
	char *path = malloc(plen);
	for (struct dirent *de; (de = readdir(d));) {
		if (de->d_name[0] == '.')
			continue;
		snprintf(path, plen, "%s/%s", dir, de->d_name);
		struct stat st;
		if (stat(path, &st) != 0)
			mfr_die("'%s': %s", path, strerror(errno));
		if (want_dirs ? S_ISDIR(st.st_mode) : S_ISREG(st.st_mode) && is_image_name(de->d_name))
			sv_push(out, de->d_name);
		else if (ignored)
			++*ignored;
	}
	closedir(d);
	free(path);
	if (out->n > 1)
		qsort(out->v, out->n, sizeof *out->v, cmp_str);
}

static int name_ok(const char *s)
{
	for (; *s; s++)
		if (*s == '\t' || *s == '\n' || *s == '\r')
			return 0;
	return 1;
}

/* ---- folder ---- */

static void pack_folder(packer *p, const char *root, int aligned, FILE *labels)
{
	strvec ids = {0};
	uint64_t ignored = 0, id = 0;
	list_dir(root, 1, &ids, &ignored);
	if (ignored)
		mfr_warn("'%s': ignored %llu entries that are not identity folders", root, (unsigned long long)ignored);
	if (!ids.n)
		mfr_die("'%s': no identity folders (expected ROOT/IDENTITY/*.jpg)", root);
	mfr_progress pr;
	mfr_progress_start(&pr, "mfr-pack", 0);
	int32_t label = 0;
	size_t plen = strlen(root) + 1024;
	char *path = malloc(plen);
	for (size_t i = 0; i < ids.n; i++) {
		if (!name_ok(ids.v[i]))
			mfr_die("'%s/%s': identity names cannot hold tabs or newlines", root, ids.v[i]);
		strvec files = {0};
		uint64_t other = 0, count = 0;
		snprintf(path, plen, "%s/%s", root, ids.v[i]);
		list_dir(path, 0, &files, &other);
		for (size_t k = 0; k < files.n; k++) {
			snprintf(path, plen, "%s/%s/%s", root, ids.v[i], files.v[k]);
			size_t n;
			uint8_t *d = slurp(path, &n);
			if (emit(p, path, d, n, id, label, aligned ? MFR_F_ALIGNED : 0, NULL) == 0) {
				id++;
				count++;
			}
			free(d);
			mfr_progress_add(&pr, 1);
		}
		if (count) {
			if (labels)
				fprintf(labels, "%d\t%s\t%llu\n", label, ids.v[i], (unsigned long long)count);
			label++;
		} else
			mfr_warn("'%s/%s': no images; identity left out", root, ids.v[i]);
		sv_free(&files);
	}
	mfr_progress_end(&pr);
	free(path);
	sv_free(&ids);
}

/* ---- label counts for inputs with numeric labels (any value up to 2^31-1) ---- */

static void count_label(mfr_map *m, int32_t label)
{
	mfr_error e;
	uint64_t *c = mfr_map_put(m, (uint64_t)label, NULL, &e);
	if (!c)
		mfr_die_error(&e);
	++*c;
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	return x < y ? -1 : x > y;
}

/* Label map rows "label label count" in label order (the name of a numeric
 * label is the number). */
static void write_numeric_labels(FILE *labels, const mfr_map *m)
{
	uint64_t *keys = malloc((m->n ? m->n : 1) * sizeof *keys), key, val;
	size_t pos = 0, k = 0;
	if (!keys)
		mfr_die("out of memory");
	while (mfr_map_next(m, &pos, &key, &val))
		keys[k++] = key;
	qsort(keys, k, sizeof *keys, cmp_u64);
	for (size_t i = 0; i < k; i++)
		fprintf(labels, "%llu\t%llu\t%llu\n", (unsigned long long)keys[i], (unsigned long long)keys[i],
			(unsigned long long)*mfr_map_get(m, keys[i]));
	free(keys);
}

/* ---- list file ---- */

typedef struct {
	char *path;
	int32_t label; /* -2: from the folder name */
	int has_lm;
	float lm[10];
	unsigned long long line;
} entry;

static char *dir_of(const char *path)
{
	const char *slash = strrchr(path, '/');
	if (!slash)
		return strdup(".");
	return strndup(path, (size_t)(slash - path) + (slash == path));
}

static void pack_list(packer *p, const char *list, const char *root, FILE *labels)
{
	FILE *f = strcmp(list, "-") ? fopen(list, "r") : stdin;
	if (!f)
		mfr_die("'%s': %s", list, strerror(errno));
	entry *ent = NULL;
	size_t n = 0, room = 0;
	char *line = NULL;
	size_t cap = 0;
	ssize_t len;
	unsigned long long lineno = 0;
	int with_labels = -1;
	while ((len = getline(&line, &cap, f)) != -1) {
		lineno++;
		char *fields[13];
		int nf = 0;
		for (char *tok = strtok(line, " \t\r\n"); tok && nf < 13; tok = strtok(NULL, " \t\r\n"))
			fields[nf++] = tok;
		if (nf == 0 || fields[0][0] == '#')
			continue;
		if (nf != 1 && nf != 2 && nf != 11 && nf != 12)
			mfr_die("'%s': line %llu: %d fields; expected 'path [label] [x1 y1 .. x5 y5]' (1, 2, 11 or 12)",
				list, lineno, nf);
		int lab = nf == 2 || nf == 12;
		if (with_labels < 0)
			with_labels = lab;
		else if (with_labels != lab)
			mfr_die("'%s': line %llu: %s a label where earlier lines %s", list, lineno,
				lab ? "has" : "lacks", lab ? "have none" : "have one");
		if (n == room && !(ent = realloc(ent, (room = room ? room * 2 : 1024) * sizeof *ent)))
			mfr_die("out of memory");
		entry *x = &ent[n++];
		*x = (entry){.path = strdup(fields[0]), .label = -2, .has_lm = nf >= 11, .line = lineno};
		if (lab) {
			char *end;
			errno = 0;
			long v = strtol(fields[1], &end, 10);
			if (*end || end == fields[1] || errno || v < 0 || v > 0x7fffffffL)
				mfr_die("'%s': line %llu: label '%s' is not an integer in 0..2147483647", list, lineno,
					fields[1]);
			x->label = (int32_t)v;
		}
		for (int i = 0; x->has_lm && i < 10; i++) {
			char *end;
			x->lm[i] = strtof(fields[lab + 1 + i], &end);
			if (*end || end == fields[lab + 1 + i] || !(x->lm[i] == x->lm[i]))
				mfr_die("'%s': line %llu: landmark %d '%s' is not a number", list, lineno, i / 2 + 1,
					fields[lab + 1 + i]);
		}
	}
	if (ferror(f))
		mfr_die("'%s': read error", list);
	if (f != stdin)
		fclose(f);
	free(line);
	if (!n)
		mfr_die("'%s': no entries", list);

	/* labels from folder names: sorted distinct parent folders */
	strvec names = {0};
	if (!with_labels) {
		strvec all = {0};
		for (size_t i = 0; i < n; i++) {
			char *d = dir_of(ent[i].path);
			const char *base = strrchr(d, '/') ? strrchr(d, '/') + 1 : d;
			if (!strcmp(d, "."))
				mfr_die("'%s': line %llu: '%s' has no identity folder to take its label from (give a label)",
					list, ent[i].line, ent[i].path);
			sv_push(&all, base);
			free(d);
		}
		char **sorted = malloc(all.n * sizeof *sorted);
		memcpy(sorted, all.v, all.n * sizeof *sorted);
		qsort(sorted, all.n, sizeof *sorted, cmp_str);
		for (size_t i = 0; i < all.n; i++)
			if (!names.n || strcmp(names.v[names.n - 1], sorted[i]))
				sv_push(&names, sorted[i]);
		free(sorted);
		for (size_t i = 0; i < n; i++) {
			char **hit = bsearch(&all.v[i], names.v, names.n, sizeof *names.v, cmp_str);
			ent[i].label = (int32_t)(hit - names.v);
		}
		sv_free(&all);
	}
	char *rootdir = root ? strdup(root) : dir_of(strcmp(list, "-") ? list : "./-");
	size_t plen = strlen(rootdir) + 4096;
	char *path = malloc(plen);
	mfr_map counts;
	mfr_map_init(&counts);
	mfr_progress pr;
	mfr_progress_start(&pr, "mfr-pack", n);
	uint64_t id = 0;
	for (size_t i = 0; i < n; i++) {
		if (ent[i].path[0] == '/')
			snprintf(path, plen, "%s", ent[i].path);
		else
			snprintf(path, plen, "%s/%s", rootdir, ent[i].path);
		size_t sz;
		uint8_t *d;
		mfr_error e;
		if (mfr_read_file(path, MFR_MAX_RECORD, &d, &sz, &e) < 0)
			mfr_die("%s (line %llu of '%s'; paths are relative to '%s', set --root)", e.msg, ent[i].line,
				list, rootdir);
		if (emit(p, path, d, sz, id, ent[i].label, 0, ent[i].has_lm ? ent[i].lm : NULL) == 0) {
			id++;
			count_label(&counts, ent[i].label);
		}
		free(d);
		mfr_progress_add(&pr, 1);
	}
	mfr_progress_end(&pr);
	if (labels && names.n)
		for (size_t l = 0; l < names.n; l++) {
			uint64_t *c = mfr_map_get(&counts, l);
			fprintf(labels, "%zu\t%s\t%llu\n", l, names.v[l], c ? (unsigned long long)*c : 0ull);
		}
	else if (labels)
		write_numeric_labels(labels, &counts);
	for (size_t i = 0; i < n; i++)
		free(ent[i].path);
	free(ent);
	mfr_map_free(&counts);
	free(path);
	free(rootdir);
	sv_free(&names);
}

/* ---- insightface RecordIO ---- */

static void pack_rec(packer *p, const char *path, FILE *labels)
{
	mfr_error e;
	mfr_recordio_property prop;
	int has_prop = mfr_recordio_read_property(path, &prop, &e);
	if (has_prop < 0)
		mfr_die_error(&e);
	mfr_recordio *r = mfr_recordio_open(path, 0, &e);
	if (!r)
		mfr_die_error(&e);
	mfr_recordio_image img;
	mfr_map counts;
	mfr_map_init(&counts);
	int k;
	char what[4096];
	mfr_progress pr;
	mfr_progress_start(&pr, "mfr-pack", 0);
	while ((k = mfr_recordio_next(r, &img, &e)) == 1) {
		if (has_prop && img.label >= prop.num_classes)
			mfr_die("'%s': record %llu at byte %llu has label %d, but property says %d classes", path,
				(unsigned long long)img.key, (unsigned long long)img.offset, img.label, prop.num_classes);
		snprintf(what, sizeof what, "%s: record %llu at byte %llu", path, (unsigned long long)img.key,
			 (unsigned long long)img.offset);
		/* insightface packs are aligned 112x112 faces */
		uint32_t flags = has_prop && prop.width == 112 && prop.height == 112 ? MFR_F_ALIGNED : 0;
		if (emit(p, what, img.image, img.image_size, img.key, img.label, flags, NULL) == 0)
			count_label(&counts, img.label);
		mfr_progress_add(&pr, 1);
	}
	mfr_progress_end(&pr);
	if (k < 0)
		mfr_die_error(&e);
	if (!mfr_recordio_count(r))
		mfr_die("'%s': no image records", path);
	mfr_recordio_close(r);
	if (labels)
		write_numeric_labels(labels, &counts);
	mfr_map_free(&counts);
}

/* ---- insightface .bin verification pack ---- */

static void pack_bin(packer *p, const char *path, const char *pairs)
{
	size_t n;
	uint8_t *d = slurp(path, &n);
	mfr_binpack b;
	mfr_error e;
	if (mfr_binpack_parse(d, n, &b, &e) < 0)
		mfr_die("'%s': %s", path, e.msg);
	if (!b.n_images)
		mfr_die("'%s': the pack holds no images", path);
	char *tmp;
	FILE *pf = mfr_text_open(pairs, &tmp);
	fprintf(pf, "id_a\tid_b\tsame\n");
	char what[4096];
	for (size_t i = 0; i < b.n_images; i++) {
		snprintf(what, sizeof what, "%s: image %zu", path, i);
		/* the pack's images are aligned 112x112 faces without identities */
		emit(p, what, b.images[i], b.sizes[i], i, -1, 0, NULL);
	}
	if (p->skipped)
		mfr_die("'%s': %llu images could not be decoded; the pairs would be incomplete", path,
			(unsigned long long)p->skipped);
	for (size_t i = 0; i < b.n_pairs; i++)
		fprintf(pf, "%zu\t%zu\t%d\n", 2 * i, 2 * i + 1, b.issame[i] ? 1 : 0);
	mfr_text_commit(pf, pairs, tmp);
	mfr_binpack_free(&b);
	free(d);
}

static int ends_with(const char *s, const char *suffix)
{
	size_t a = strlen(s), b = strlen(suffix);
	return a >= b && !strcasecmp(s + a - b, suffix);
}

int main(int argc, char **argv)
{
	const char *out = NULL, *labels_path = NULL, *list = NULL, *root = NULL, *pairs = NULL;
	int with_index = 0, aligned = 0;
	packer p = {.quality = 95, .align = 1};
	int c;
	while ((c = mfr_getopt(&tool, argc, argv)) != -1) {
		switch (c) {
		case 'o': out = optarg; break;
		case 'l': labels_path = optarg; break;
		case 'q': p.quality = (int)mfr_parse_int(optarg, 1, 100, "JPEG quality"); break;
		case O_INDEX: with_index = 1; break;
		case O_LIST: list = optarg; break;
		case O_ROOT: root = optarg; break;
		case O_NO_ALIGN: p.align = 0; break;
		case O_ALIGNED: aligned = 1; break;
		case O_PAIRS: pairs = optarg; break;
		case O_SKIP_BAD: p.skip_bad = 1; break;
		}
	}
	int nops = argc - optind;
	const char *src = nops ? argv[optind] : NULL;
	if (list && nops)
		mfr_usage_error("--list takes no operand");
	if (!list && nops != 1)
		mfr_usage_error(nops ? "one input at a time" : "no input: give DIR, TRAIN.rec, PACK.bin or --list FILE");
	if (with_index && !out)
		mfr_usage_error("--index needs -o FILE");
	enum { FOLDER, LIST, REC, BIN } mode = LIST;
	if (!list) {
		struct stat st;
		if (stat(src, &st) != 0)
			mfr_die("'%s': %s", src, strerror(errno));
		if (S_ISDIR(st.st_mode))
			mode = FOLDER;
		else if (ends_with(src, ".rec"))
			mode = REC;
		else if (ends_with(src, ".bin"))
			mode = BIN;
		else
			mfr_usage_error("'%s': not a folder, .rec or .bin (a list file needs --list)", src);
	}
	if (root && mode != LIST)
		mfr_usage_error("--root goes with --list");
	if (aligned && mode != FOLDER)
		mfr_usage_error("--aligned goes with a folder");
	if (mode == BIN && !pairs)
		mfr_usage_error("a .bin pack needs --pairs FILE for its pairs list");
	if (pairs && mode != BIN)
		mfr_usage_error("--pairs goes with a .bin pack");
	if (mode == BIN && labels_path)
		mfr_usage_error("a .bin pack has no identities: -l does not apply");

	mfr_error e;
	mfr_schema s = {.kind = MFR_KIND_FACE};
	if (!(p.jpeg = mfr_jpeg_new(&e)))
		mfr_die_error(&e);
	char *ltmp = NULL;
	FILE *labels = labels_path ? mfr_text_open(labels_path, &ltmp) : NULL;
	if (labels)
		fprintf(labels, "label\tname\tcount\n");
	if (!(p.w = mfr_writer_open(out, &s, "mfr-pack", argc, argv, with_index, &e)))
		mfr_die_error(&e);
	switch (mode) {
	case FOLDER: pack_folder(&p, src, aligned, labels); break;
	case LIST: pack_list(&p, list, root, labels); break;
	case REC: pack_rec(&p, src, labels); break;
	case BIN: pack_bin(&p, src, pairs); break;
	}
	uint64_t n = mfr_writer_count(p.w);
	if (mfr_writer_close(p.w, &e) < 0)
		mfr_die_error(&e);
	if (labels)
		mfr_text_commit(labels, labels_path, ltmp);
	mfr_jpeg_free(p.jpeg);
	free(p.buf);
	fprintf(stderr, "mfr-pack: %llu faces packed", (unsigned long long)n);
	if (p.skipped)
		fprintf(stderr, ", %llu skipped", (unsigned long long)p.skipped);
	fputc('\n', stderr);
	return mfr_close_stdout(0);
}
