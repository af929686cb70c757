/* mfr-score — verification and identification metrics over EMBEDDING
 * streams: pairs lists (sample ids, or LFW's pairs.txt through mfr-pack's
 * label map), all-vs-all within a set, probes against a gallery (e.g. the
 * masked faces against the unmasked ones), identification (rank-k, CMC,
 * TPIR at FPIR); TAR@FAR in two semantics, FNMR@FMR, EER, AUC, k-fold
 * accuracy, ROC and DET curves, weighted composites with the two ICCV 2021
 * MFR challenge formulas as presets. A readable table on stdout, or JSON.
 *
 * The scoring itself is common/score.c; this file reads the inputs, picks
 * the records each protocol uses, sizes the exact selection and prints. */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"     /* defines: mfr_getopt, mfr_die, mfr_parse_*, mfr_text_open */
#include "gemm.h"    /* defines: mfr_gemm_backend */
#include "gsim.h"    /* defines: mfr_gsim_* (the GPU's blocks; with CUDA only) */
#include "hashmap.h" /* defines: mfr_map */
#include "infer.h"   /* defines: mfr_device_select */
#include "record.h"  /* defines: MFR_F_MASKED */
#include "score.h"   /* defines: mfr_emb_set, mfr_scores, mfr_score_all, ... */

enum {
	O_PAIRS = 256, O_LFW_PAIRS, O_EUCLIDEAN, O_FAR, O_RANKS, O_FPIR, O_SELECT, O_LABELS, O_PROBES, O_GALLERY,
	O_GALLERY_SET, O_TEMPLATES, O_FOLDS, O_WEIGHTS, O_ROC, O_JSON, O_KEEP, O_TILE, O_DEVICE
};

static const mfr_option opts[] = {
	{"protocol", 'p', "NAME", "pairs, all, all-masked, all-unmasked, pg or ident (repeatable)"},
	{"pairs", O_PAIRS, "FILE", "pairs TSV of sample ids 'id_a id_b same' (mfr-pack --pairs)"},
	{"lfw-pairs", O_LFW_PAIRS, "FILE", "LFW's pairs.txt, resolved through the label map (-l)"},
	{"label-map", 'l', "FILE", "mfr-pack's label map TSV 'label name count' (for --lfw-pairs)"},
	{"euclidean", O_EUCLIDEAN, NULL, "score by -Euclidean distance of the raw vectors (default: cosine)"},
	{"far", O_FAR, "LIST", "target FARs (= FMRs), comma-separated (default 1e-6,1e-5,1e-4,1e-3,1e-2,1e-1)"},
	{"ranks", O_RANKS, "LIST", "ident: ranks to report (default 1,5,10)"},
	{"fpir", O_FPIR, "LIST", "ident: target FPIRs (default 1e-3,1e-2,1e-1)"},
	{"select", O_SELECT, "WHICH", "use only masked, unmasked or all records of the input (default all)"},
	{"labels", O_LABELS, "FILE", "use only records whose label is listed in FILE (first column)"},
	{"probes", O_PROBES, "WHICH", "pg/ident probes: masked, unmasked or all (default masked; all with --gallery)"},
	{"gallery", O_GALLERY, "FILE", "pg/ident gallery from this EMBEDDING stream instead of the input"},
	{"gallery-set", O_GALLERY_SET, "WHICH", "pg/ident gallery: masked, unmasked or all (default unmasked; all with --gallery)"},
	{"templates", O_TEMPLATES, NULL, "pg/ident: one template per gallery label (the mean of its embeddings)"},
	{"folds", O_FOLDS, "K", "pairs: k-fold accuracy over K consecutive folds, 2..100 (default 10)"},
	{"weights", O_WEIGHTS, "SPEC", "composite: insightface, webface260m, or PROTO:METRIC[@X]=W,..."},
	{"roc", O_ROC, "PREFIX", "write PREFIX.PROTO.tsv, .roc.svg and .det.svg for each verification protocol"},
	{"json", O_JSON, NULL, "print JSON instead of the table"},
	{"threads", 'j', "N", "threads, 0 = all cores (default 0)"},
	{"keep", O_KEEP, "N", "most impostor scores kept exactly per protocol, 1000..1e9 (default 4194304)"},
	{"tile", O_TILE, "N", "block side of the similarity GEMM, 16..16384 (default 2048)"},
	{"device", O_DEVICE, "DEV", "where the similarity GEMMs run: cpu, cuda, cuda:N, or auto: the first GPU if\n"
				    "there is one (default: $MFR_DEVICE, else auto)"},
	{0},
};

static const mfr_tool tool = {
	"mfr-score",
	"[-p NAME]... [--pairs FILE | --lfw-pairs FILE -l LABELS] [--euclidean] [--far LIST]\n"
	"[--select WHICH] [--labels FILE] [--probes WHICH] [--gallery FILE] [--gallery-set WHICH]\n"
	"[--templates] [--weights SPEC] [--roc PREFIX] [--json] [-j N] [--device DEV] [FILE...]",
	"Score EMBEDDING streams: verification (TAR@FAR at most and nearest, FNMR@FMR, EER, AUC,\n"
	"k-fold accuracy) and identification (rank-k, CMC, TPIR@FPIR). No FILE, or -, reads stdin.\n"
	"Protocols: pairs (the --pairs / --lfw-pairs list; the default when one is given), all (all\n"
	"pairs of the records; the default otherwise), all-masked, all-unmasked, pg (every probe\n"
	"against every gallery record), ident (probes identified in the gallery). Presets for\n"
	"--weights: insightface = 0.25 pg:tar@1e-4 + 0.75 all:tar@1e-6; webface260m = 0.25\n"
	"pg:fnmr@1e-5 + 0.75 all-unmasked:fnmr@1e-5.",
	opts,
};

/* ---- options ---- */

#define MAXL 32
typedef struct {
	int n;
	double v[MAXL];
} dlist;

static void parse_list(const char *s, double lo, double hi, const char *what, dlist *l)
{
	char *copy = strdup(s), *save = NULL;
	l->n = 0;
	for (char *t = strtok_r(copy, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
		if (l->n == MAXL)
			mfr_usage_error("%s: at most %d values", what, MAXL);
		l->v[l->n++] = mfr_parse_real(t, lo, hi, what);
	}
	if (!l->n)
		mfr_usage_error("%s: empty list", what);
	free(copy);
}

enum { SEL_ALL, SEL_MASKED, SEL_UNMASKED };

static int parse_which(const char *s, const char *what)
{
	if (!strcmp(s, "all"))
		return SEL_ALL;
	if (!strcmp(s, "masked"))
		return SEL_MASKED;
	if (!strcmp(s, "unmasked"))
		return SEL_UNMASKED;
	mfr_usage_error("%s must be masked, unmasked or all, not '%s'", what, s);
}

static const char *which_name(int w) { return w == SEL_MASKED ? "masked" : w == SEL_UNMASKED ? "unmasked" : "all"; }

enum { P_PAIRS, P_ALL, P_ALL_MASKED, P_ALL_UNMASKED, P_PG, P_IDENT, NPROTO };
static const char *const proto_names[NPROTO] = {"pairs", "all", "all-masked", "all-unmasked", "pg", "ident"};

static int proto_of(const char *s)
{
	for (int k = 0; k < NPROTO; k++)
		if (!strcmp(s, proto_names[k]))
			return k;
	return -1;
}

/* A composite term: weight * metric(protocol[, x]). */
enum { M_TAR, M_TAR_NEAREST, M_FNMR, M_ACC, M_EER, M_AUC, M_RANK, M_TPIR };
static const char *const metric_names[] = {"tar", "tar-nearest", "fnmr", "acc", "eer", "auc", "rank", "tpir"};
typedef struct {
	int proto, metric;
	double x, w;
} term;

static int parse_weights(const char *spec, term *t, int max)
{
	if (!strcmp(spec, "insightface"))
		spec = "pg:tar@1e-4=0.25,all:tar@1e-6=0.75";
	else if (!strcmp(spec, "webface260m"))
		spec = "pg:fnmr@1e-5=0.25,all-unmasked:fnmr@1e-5=0.75";
	char *copy = strdup(spec), *save = NULL;
	int n = 0;
	for (char *it = strtok_r(copy, ",", &save); it; it = strtok_r(NULL, ",", &save)) {
		if (n == max)
			mfr_usage_error("--weights: at most %d terms", max);
		char *colon = strchr(it, ':'), *eq = strrchr(it, '=');
		if (!colon || !eq || eq < colon)
			mfr_usage_error("--weights: '%s' is not PROTOCOL:METRIC[@X]=WEIGHT", it);
		*colon = *eq = 0;
		char *metric = colon + 1, *at = strchr(metric, '@');
		if (at)
			*at++ = 0;
		term x = {.proto = proto_of(it), .metric = -1};
		if (x.proto < 0)
			mfr_usage_error("--weights: unknown protocol '%s'", it);
		for (int m = 0; m < (int)(sizeof metric_names / sizeof *metric_names); m++)
			if (!strcmp(metric, metric_names[m]))
				x.metric = m;
		if (x.metric < 0)
			mfr_usage_error("--weights: unknown metric '%s' (tar, tar-nearest, fnmr, acc, eer, auc, rank, tpir)", metric);
		int needs_x = x.metric == M_TAR || x.metric == M_TAR_NEAREST || x.metric == M_FNMR || x.metric == M_RANK ||
			      x.metric == M_TPIR;
		if (needs_x != (at != NULL))
			mfr_usage_error("--weights: %s %s", metric, needs_x ? "needs @X (a FAR, FPIR or rank)" : "takes no @X");
		if (at)
			x.x = x.metric == M_RANK ? (double)mfr_parse_int(at, 1, 1000000, "--weights rank")
						 : mfr_parse_real(at, 1e-12, 1, "--weights rate");
		if ((x.metric == M_RANK || x.metric == M_TPIR) != (x.proto == P_IDENT))
			mfr_usage_error("--weights: %s goes with %s", metric_names[x.metric],
					x.proto == P_IDENT ? "a verification protocol" : "ident");
		if (x.metric == M_ACC && x.proto != P_PAIRS)
			mfr_usage_error("--weights: acc goes with the pairs protocol");
		x.w = mfr_parse_real(eq + 1, -1e6, 1e6, "--weights weight");
		t[n++] = x;
	}
	free(copy);
	if (!n)
		mfr_usage_error("--weights: no terms");
	return n;
}

/* ---- inputs ---- */

static char *slurp(const char *path, size_t *n)
{
	uint8_t *d;
	mfr_error e;
	/* 1 GiB: pairs lists of tens of millions of lines */
	if (mfr_read_file(path, (size_t)1 << 30, &d, n, &e) < 0)
		mfr_die_error(&e);
	return (char *)d;
}

static int matches(uint32_t flags, int which)
{
	return which == SEL_ALL || (which == SEL_MASKED) == ((flags & MFR_F_MASKED) != 0);
}

/* dst = the records of src matching which (and the label set, if any). */
static void subset(const mfr_emb_set *src, int which, const mfr_map *labels, mfr_emb_set *dst)
{
	mfr_error e;
	uint8_t *keep = malloc(src->n > 0 ? (size_t)src->n : 1);
	if (!keep)
		mfr_die("out of memory");
	for (int64_t i = 0; i < src->n; i++)
		keep[i] = matches(src->flags[i], which) &&
			  (!labels || (src->labels[i] >= 0 && mfr_map_get(labels, (uint64_t)src->labels[i])));
	if (mfr_emb_set_select(src, keep, dst, &e) < 0)
		mfr_die_error(&e);
	free(keep);
}

/* ---- results ---- */

typedef struct {
	int proto;
	char what[256];
	mfr_scores *sc; /* verification */
	int folds;      /* pairs: k-fold accuracy */
	double *acc, *thr, acc_mean, acc_std;
	mfr_ident id; /* ident */
	int64_t probes, gallery, mated;
} result;

typedef struct {
	mfr_sim sim;
	dlist far, ranks, fpir;
	int json;
	const char *roc;
	uint64_t keep_cap;
	mfr_engine g;
} config;

/* How many of the highest impostor scores to keep: all of them when they
 * are few (16 MiB of floats), else twice the count the largest target FAR
 * allows (the nearest-point rule looks up to about twice the target), up to
 * the cap. */
static uint64_t keep_for(const config *c, uint64_t imp)
{
	double maxfar = 0;
	for (int k = 0; k < c->far.n; k++)
		if (c->far.v[k] > maxfar)
			maxfar = c->far.v[k];
	uint64_t want = (uint64_t)fmin(2 * maxfar * (double)imp + 16, 1e18), all = (uint64_t)1 << 22;
	uint64_t k = want < c->keep_cap ? want : c->keep_cap;
	if (imp <= all || imp <= k)
		k = imp; /* few enough: keep them all, every figure exact */
	return k < 1 ? 1 : k;
}

static mfr_scores *new_scores(const config *c, uint64_t imp, double maxnorm)
{
	mfr_error e;
	/* cosine of unit vectors lies in [-1, 1]; -distance in [-2 max|v|, 0];
	 * a little margin for float rounding */
	double lo = c->sim == MFR_SIM_COSINE ? -1.001 : -2 * maxnorm * 1.001 - 1e-6;
	double hi = c->sim == MFR_SIM_COSINE ? 1.001 : 1e-6;
	mfr_scores *s = mfr_scores_new(keep_for(c, imp), lo, hi, &e);
	if (!s)
		mfr_die_error(&e);
	return s;
}

static double max_norm(const mfr_emb_set *s)
{
	double m = 0;
	for (int64_t i = 0; i < s->n; i++) {
		double ss = 0;
		for (int d = 0; d < s->dim; d++)
			ss += (double)s->vec[i * s->dim + d] * s->vec[i * s->dim + d];
		if (ss > m)
			m = ss;
	}
	return sqrt(m);
}

static void finish(mfr_scores *s)
{
	mfr_error e;
	if (mfr_scores_finish(s, &e) < 0)
		mfr_die_error(&e);
}

/* ---- the pairs protocol ---- */

typedef struct {
	size_t n;
	int64_t *a, *b;
	uint8_t *same;
	int *fold;
	int folds;
} plist;

/* An index from id to row. Ids must be unique. */
static void id_index(const mfr_emb_set *s, mfr_map *m, const char *what)
{
	mfr_error e;
	mfr_map_init(m);
	for (int64_t i = 0; i < s->n; i++) {
		int ins;
		uint64_t *v = mfr_map_put(m, s->ids[i], &ins, &e);
		if (!v)
			mfr_die_error(&e);
		if (!ins)
			mfr_die("%s: id %llu appears twice; ids must be unique to name pairs", what,
				(unsigned long long)s->ids[i]);
		*v = (uint64_t)i;
	}
}

static void pairs_from_ids(const char *path, const mfr_emb_set *s, const char *inname, int folds, plist *pl)
{
	size_t len;
	char *text = slurp(path, &len);
	mfr_pairs p;
	mfr_error e;
	if (mfr_pairs_parse(text, len, path, &p, &e) < 0)
		mfr_die_error(&e);
	free(text);
	mfr_map ix;
	id_index(s, &ix, inname);
	*pl = (plist){.n = p.n, .folds = folds};
	pl->a = malloc(p.n * sizeof *pl->a);
	pl->b = malloc(p.n * sizeof *pl->b);
	pl->same = malloc(p.n);
	pl->fold = malloc(p.n * sizeof *pl->fold);
	if (!pl->a || !pl->b || !pl->same || !pl->fold)
		mfr_die("out of memory");
	/* every absent id is counted and the first few named, so one run shows
	 * whether a few faces failed or the wrong stream was given */
	uint64_t missing = 0, shown[5];
	int nshown = 0;
	mfr_map seen;
	mfr_map_init(&seen);
	for (size_t k = 0; k < p.n; k++) {
		uint64_t ids[2] = {p.a[k], p.b[k]};
		int64_t rows[2];
		for (int h = 0; h < 2; h++) {
			uint64_t *v = mfr_map_get(&ix, ids[h]);
			rows[h] = v ? (int64_t)*v : -1;
			int ins = 0;
			if (!v && mfr_map_put(&seen, ids[h], &ins, &e) && ins) {
				missing++;
				if (nshown < 5)
					shown[nshown++] = ids[h];
			}
		}
		pl->a[k] = rows[0];
		pl->b[k] = rows[1];
		pl->same[k] = p.same[k];
	}
	if (missing) {
		char list[160] = "";
		for (int k = 0; k < nshown; k++)
			snprintf(list + strlen(list), sizeof list - strlen(list), "%s%llu", k ? ", " : "",
				 (unsigned long long)shown[k]);
		mfr_die("'%s': %llu ids of its pairs are not in %s (after selection): %s%s", path,
			(unsigned long long)missing, inname, list, missing > 5 ? ", ..." : "");
	}
	mfr_map_free(&seen);
	mfr_map_free(&ix);
	mfr_kfold_assign(p.n, folds, pl->fold);
	mfr_pairs_free(&p);
}

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

static const uint64_t *order_ids; /* for cmp_row_id */
static int cmp_row_id(const void *a, const void *b)
{
	uint64_t x = order_ids[*(const int64_t *)a], y = order_ids[*(const int64_t *)b];
	return x < y ? -1 : x > y;
}

/* LFW pairs.txt: name -> label (label map), image number k -> the k-th
 * record of that label in id order (mfr-pack numbers a folder's images in
 * sorted order, and LFW's files are Name_0001.jpg, Name_0002.jpg, ...). */
static void pairs_from_lfw(const char *path, const char *mappath, const mfr_emb_set *s, const char *inname, plist *pl)
{
	size_t len;
	char *text = slurp(path, &len);
	mfr_lfw_pairs p;
	mfr_error e;
	if (mfr_lfw_pairs_parse(text, len, path, &p, &e) < 0)
		mfr_die_error(&e);
	free(text);
	text = slurp(mappath, &len);
	mfr_label_map lm;
	if (mfr_label_map_parse(text, len, mappath, &lm, &e) < 0)
		mfr_die_error(&e);
	free(text);
	/* names sorted with their map row: "name\0" then the row index */
	char **names = malloc(lm.n * sizeof *names);
	for (size_t k = 0; k < lm.n; k++) {
		size_t nl = strlen(lm.name[k]);
		names[k] = malloc(nl + 1 + sizeof(size_t));
		memcpy(names[k], lm.name[k], nl + 1);
		memcpy(names[k] + nl + 1, &k, sizeof k);
	}
	qsort(names, lm.n, sizeof *names, cmp_str);
	/* rows of each label, in id order: sort (label, id) */
	mfr_map first; /* label -> index into order[] of its first row */
	mfr_map_init(&first);
	int64_t *order = malloc((size_t)(s->n > 0 ? s->n : 1) * sizeof *order);
	for (int64_t i = 0; i < s->n; i++)
		order[i] = i;
	/* insertion into per-label buckets by counting */
	mfr_map cnt;
	mfr_map_init(&cnt);
	for (int64_t i = 0; i < s->n; i++) {
		uint64_t *c = mfr_map_put(&cnt, (uint64_t)(uint32_t)s->labels[i], NULL, &e);
		if (!c)
			mfr_die_error(&e);
		++*c;
	}
	{
		size_t pos = 0;
		uint64_t key, val, at = 0;
		while (mfr_map_next(&cnt, &pos, &key, &val)) {
			uint64_t *f = mfr_map_put(&first, key, NULL, &e);
			if (!f)
				mfr_die_error(&e);
			*f = at;
			at += val;
		}
		mfr_map fill;
		mfr_map_init(&fill);
		for (int64_t i = 0; i < s->n; i++) {
			uint64_t key2 = (uint64_t)(uint32_t)s->labels[i];
			uint64_t *f = mfr_map_put(&fill, key2, NULL, &e);
			order[*mfr_map_get(&first, key2) + (*f)++] = i;
		}
		mfr_map_free(&fill);
		/* within a label, in id order */
		order_ids = s->ids;
		pos = 0;
		while (mfr_map_next(&cnt, &pos, &key, &val))
			qsort(order + *mfr_map_get(&first, key), (size_t)val, sizeof *order, cmp_row_id);
	}
	*pl = (plist){.n = p.n, .folds = p.sets};
	pl->a = malloc(p.n * sizeof *pl->a);
	pl->b = malloc(p.n * sizeof *pl->b);
	pl->same = malloc(p.n);
	pl->fold = malloc(p.n * sizeof *pl->fold);
	uint64_t missing = 0;
	char shown[5][200];
	int nshown = 0;
	for (size_t k = 0; k < p.n; k++) {
		const char *nm[2] = {p.name_a[k], p.name_b[k]};
		int num[2] = {p.num_a[k], p.num_b[k]};
		int64_t rows[2] = {-1, -1};
		for (int h = 0; h < 2; h++) {
			/* binary search by name */
			size_t lo = 0, hi = lm.n;
			while (lo < hi) {
				size_t m = lo + (hi - lo) / 2;
				if (strcmp(names[m], nm[h]) < 0)
					lo = m + 1;
				else
					hi = m;
			}
			const char *why = NULL;
			if (lo == lm.n || strcmp(names[lo], nm[h])) {
				why = "not in the label map";
			} else {
				size_t row;
				memcpy(&row, names[lo] + strlen(names[lo]) + 1, sizeof row);
				uint64_t key2 = (uint64_t)(uint32_t)lm.label[row];
				uint64_t *c = mfr_map_get(&cnt, key2);
				uint64_t have = c ? *c : 0;
				if (have != lm.count[row] && have > 0)
					mfr_die("'%s': label %d (%s) has %llu images, but %s holds %llu records with it; "
						"image numbers would be misread", mappath, lm.label[row], lm.name[row],
						(unsigned long long)lm.count[row], inname, (unsigned long long)have);
				if ((uint64_t)num[h] > have)
					why = have ? "image number beyond the label's records" : "no records with its label";
				else
					rows[h] = order[*mfr_map_get(&first, key2) + (uint64_t)num[h] - 1];
			}
			if (why) {
				missing++;
				if (nshown < 5)
					snprintf(shown[nshown++], sizeof shown[0], "%.120s %d (%s)", nm[h], num[h], why);
			}
		}
		pl->a[k] = rows[0];
		pl->b[k] = rows[1];
		pl->same[k] = p.same[k];
		pl->fold[k] = p.fold[k];
	}
	if (missing) {
		char list[1200] = "";
		for (int k = 0; k < nshown; k++)
			snprintf(list + strlen(list), sizeof list - strlen(list), "%s%s", k ? ", " : "", shown[k]);
		mfr_die("'%s': %llu faces of its pairs are not in %s: %s%s", path, (unsigned long long)missing, inname,
			list, missing > 5 ? ", ..." : "");
	}
	for (size_t k = 0; k < lm.n; k++)
		free(names[k]);
	free(names);
	free(order);
	mfr_map_free(&first);
	mfr_map_free(&cnt);
	mfr_label_map_free(&lm);
	mfr_lfw_pairs_free(&p);
}

static void run_pairs(const config *c, const mfr_emb_set *s, const plist *pl, result *r)
{
	mfr_error e;
	uint64_t imp = 0;
	for (size_t k = 0; k < pl->n; k++)
		imp += !pl->same[k];
	r->sc = new_scores(c, imp, max_norm(s));
	float *score = malloc((pl->n ? pl->n : 1) * sizeof *score);
	if (!score)
		mfr_die("out of memory");
	for (size_t k = 0; k < pl->n; k++) {
		score[k] = mfr_pair_score(s, pl->a[k], pl->b[k], c->sim);
		if (mfr_scores_add(r->sc, score[k], pl->same[k], &e) < 0)
			mfr_die_error(&e);
	}
	finish(r->sc);
	r->folds = pl->folds;
	if (pl->folds >= 2 && pl->n >= (size_t)pl->folds) {
		r->acc = malloc((size_t)pl->folds * sizeof *r->acc);
		r->thr = malloc((size_t)pl->folds * sizeof *r->thr);
		if (mfr_kfold_accuracy(score, pl->same, pl->fold, pl->n, pl->folds, r->acc, r->thr, &e) < 0)
			mfr_die("pairs: %s", e.msg);
		double m = 0, v = 0;
		for (int f = 0; f < pl->folds; f++)
			m += r->acc[f];
		m /= pl->folds;
		for (int f = 0; f < pl->folds; f++)
			v += (r->acc[f] - m) * (r->acc[f] - m);
		r->acc_mean = m;
		r->acc_std = sqrt(v / pl->folds); /* population std, as insightface's np.std */
	} else
		r->folds = 0;
	snprintf(r->what, sizeof r->what, "%zu pairs", pl->n);
	free(score);
}

/* ---- the blocked protocols ---- */

static void run_all(const config *c, const mfr_emb_set *src, int which, result *r)
{
	mfr_emb_set s;
	mfr_error e;
	subset(src, which, NULL, &s);
	if (s.n < 2)
		mfr_die("protocol %s: %lld %s records; all-vs-all needs at least 2", proto_names[r->proto], (long long)s.n,
			which_name(which));
	mfr_map cnt;
	mfr_map_init(&cnt);
	for (int64_t i = 0; i < s.n; i++) {
		if (s.labels[i] < 0)
			mfr_die("protocol %s: id %llu has no label (-1); all-vs-all needs identities (a .bin pack's faces "
				"have none: score its pairs)", proto_names[r->proto], (unsigned long long)s.ids[i]);
		uint64_t *v = mfr_map_put(&cnt, (uint64_t)s.labels[i], NULL, &e);
		if (!v)
			mfr_die_error(&e);
		++*v;
	}
	uint64_t gen = 0, pairs = (uint64_t)s.n * (uint64_t)(s.n - 1) / 2, key, val;
	size_t pos = 0;
	while (mfr_map_next(&cnt, &pos, &key, &val))
		gen += val * (val - 1) / 2;
	size_t labels = cnt.n;
	mfr_map_free(&cnt);
	r->sc = new_scores(c, pairs - gen, max_norm(&s));
	if (mfr_score_all(&c->g, &s, r->sc, &e) < 0)
		mfr_die("protocol %s: %s", proto_names[r->proto], e.msg);
	finish(r->sc);
	snprintf(r->what, sizeof r->what, "all pairs of %lld %s records, %zu labels", (long long)s.n,
		 which_name(which), labels);
	mfr_emb_set_free(&s);
}

/* The probe and gallery sets of pg and ident. */
static void probe_gallery(const config *c, const mfr_emb_set *src, const mfr_emb_set *gal_file, int probes,
			  int gallery, int templates, mfr_emb_set *p, mfr_emb_set *q, const char *pname)
{
	mfr_error e;
	subset(src, probes, NULL, p);
	subset(gal_file ? gal_file : src, gallery, NULL, q);
	if (p->n == 0)
		mfr_die("protocol %s: no probes (%s records of the input)", pname, which_name(probes));
	if (q->n == 0)
		mfr_die("protocol %s: empty gallery (%s records of the %s)", pname, which_name(gallery),
			gal_file ? "gallery stream" : "input");
	if (templates) {
		mfr_emb_set t;
		if (mfr_emb_set_templates(q, &t, &e) < 0)
			mfr_die_error(&e);
		mfr_emb_set_free(q);
		*q = t;
		if (q->n == 0)
			mfr_die("protocol %s: the gallery has no labelled records to make templates of", pname);
		if (c->sim == MFR_SIM_COSINE)
			mfr_emb_set_normalize(q);
	}
}

static void run_pg(const config *c, const mfr_emb_set *src, const mfr_emb_set *gal_file, int probes, int gallery,
		   int templates, result *r)
{
	mfr_emb_set p, q;
	mfr_error e;
	probe_gallery(c, src, gal_file, probes, gallery, templates, &p, &q, "pg");
	double mn = fmax(max_norm(&p), max_norm(&q));
	r->sc = new_scores(c, (uint64_t)p.n * (uint64_t)q.n, mn);
	if (mfr_score_cross(&c->g, &p, &q, r->sc, &e) < 0)
		mfr_die("protocol pg: %s", e.msg);
	finish(r->sc);
	snprintf(r->what, sizeof r->what, "%lld %s probes x %lld %s%s", (long long)p.n, which_name(probes),
		 (long long)q.n, templates ? "templates of " : "", gal_file ? "gallery-stream records" : which_name(gallery));
	if (!gal_file)
		snprintf(r->what + strlen(r->what), sizeof r->what - strlen(r->what), " records");
	mfr_emb_set_free(&p);
	mfr_emb_set_free(&q);
}

static void run_ident(const config *c, const mfr_emb_set *src, const mfr_emb_set *gal_file, int probes,
		      int gallery, int templates, result *r)
{
	mfr_emb_set p, q;
	mfr_error e;
	probe_gallery(c, src, gal_file, probes, gallery, templates, &p, &q, "ident");
	/* a probe's own record in the gallery (the same id) would be found
	 * trivially: it leaves the gallery */
	mfr_map ids;
	mfr_map_init(&ids);
	for (int64_t i = 0; i < p.n; i++)
		if (!mfr_map_put(&ids, p.ids[i], NULL, &e))
			mfr_die_error(&e);
	int64_t dup = 0;
	if (!templates)
		for (int64_t k = 0; k < q.n; k++)
			dup += mfr_map_get(&ids, q.ids[k]) != NULL;
	mfr_map_free(&ids);
	if (dup)
		mfr_die("protocol ident: %lld records are both probes and gallery (give disjoint --probes and "
			"--gallery-set, or --gallery FILE)", (long long)dup);
	if (mfr_identify(&c->g, &p, &q, &r->id, &e) < 0)
		mfr_die("protocol ident: %s", e.msg);
	r->probes = p.n;
	r->gallery = q.n;
	for (int64_t i = 0; i < p.n; i++)
		r->mated += r->id.rank[i] > 0;
	snprintf(r->what, sizeof r->what, "%lld %s probes (%lld mated) in a gallery of %lld %s", (long long)p.n,
		 which_name(probes), (long long)r->mated, (long long)q.n, templates ? "label templates" : "records");
	mfr_emb_set_free(&p);
	mfr_emb_set_free(&q);
}

/* ---- output ---- */

/* A threshold as the user reads it: a cosine, or a distance. */
static double shown(const config *c, double t) { return c->sim == MFR_SIM_EUCLIDEAN ? -t : t; }

static const char *how_word(mfr_how h) { return h == MFR_EXACT ? "exact" : h == MFR_BINNED ? "binned" : h == MFR_UNREACHABLE ? "unreachable" : "empty"; }

/* JSON number or null. */
static void jnum(FILE *f, double v)
{
	if (isfinite(v))
		fprintf(f, "%.9g", v);
	else
		fputs("null", f);
}

static void jstr(FILE *f, const char *s)
{
	fputc('"', f);
	for (; *s; s++) {
		unsigned char ch = (unsigned char)*s;
		if (ch == '"' || ch == '\\')
			fprintf(f, "\\%c", ch);
		else if (ch < 0x20)
			fprintf(f, "\\u%04x", ch);
		else
			fputc(ch, f);
	}
	fputc('"', f);
}

static void print_verification(const config *c, const result *r)
{
	const mfr_scores *s = r->sc;
	uint64_t ng = mfr_scores_genuine(s), ni = mfr_scores_impostor(s), kept;
	mfr_scores_top(s, &kept);
	const char *unit = c->sim == MFR_SIM_EUCLIDEAN ? "distance" : "cosine";
	if (c->json) {
		printf("{\"protocol\": ");
		jstr(stdout, proto_names[r->proto]);
		printf(", \"what\": ");
		jstr(stdout, r->what);
		printf(", \"genuine\": %llu, \"impostor\": %llu, \"impostor_kept\": %llu, \"complete\": %s",
		       (unsigned long long)ng, (unsigned long long)ni, (unsigned long long)kept,
		       mfr_scores_complete(s) ? "true" : "false");
		if (r->folds) {
			printf(", \"accuracy\": {\"folds\": %d, \"mean\": ", r->folds);
			jnum(stdout, r->acc_mean);
			printf(", \"std\": ");
			jnum(stdout, r->acc_std);
			printf(", \"per_fold\": [");
			for (int f = 0; f < r->folds; f++) {
				printf(f ? ", " : "");
				jnum(stdout, r->acc[f]);
			}
			printf("], \"thresholds\": [");
			for (int f = 0; f < r->folds; f++) {
				printf(f ? ", " : "");
				jnum(stdout, shown(c, r->thr[f]));
			}
			printf("]}");
		}
		mfr_how h;
		double t, eer = mfr_eer(s, &t, &h);
		printf(", \"eer\": {\"value\": ");
		jnum(stdout, eer);
		printf(", \"threshold\": ");
		jnum(stdout, shown(c, t));
		printf(", \"how\": \"%s\"}, \"auc\": {\"value\": ", how_word(h));
		double auc = mfr_auc(s, &h);
		jnum(stdout, auc);
		printf(", \"how\": \"%s\"}, \"threshold_unit\": \"%s\", \"far\": [", how_word(h), unit);
		for (int k = 0; k < c->far.n; k++) {
			printf("%s{\"target\": %.9g", k ? ", " : "", c->far.v[k]);
			for (int rule = 0; rule < 2; rule++) {
				mfr_op_point o = mfr_tar_at_far(s, c->far.v[k], (mfr_far_rule)rule);
				printf(", \"%s\": {\"how\": \"%s\"", rule ? "nearest" : "at_most", how_word(o.how));
				if (o.how == MFR_EXACT || o.how == MFR_BINNED) {
					printf(", \"tar\": ");
					jnum(stdout, o.tar);
					printf(", \"fnmr\": ");
					jnum(stdout, 1 - o.tar);
					printf(", \"far\": ");
					jnum(stdout, o.far);
					printf(", \"threshold\": ");
					jnum(stdout, shown(c, o.threshold));
				}
				printf("}");
			}
			printf("}");
		}
		printf("]}");
		return;
	}
	printf("%s: %s: %llu genuine, %llu impostor scores (%s)\n", proto_names[r->proto], r->what,
	       (unsigned long long)ng, (unsigned long long)ni,
	       mfr_scores_complete(s) ? "all kept: every figure exact" : "the highest kept exactly, the rest in a histogram");
	if (r->folds) {
		printf("  accuracy (%d folds): %.3f%% +- %.3f%%  [", r->folds, 100 * r->acc_mean, 100 * r->acc_std);
		for (int f = 0; f < r->folds; f++)
			printf("%s%.2f", f ? " " : "", 100 * r->acc[f]);
		printf("]\n");
	}
	mfr_how h;
	double t, eer = mfr_eer(s, &t, &h);
	if (h == MFR_EMPTY) {
		printf("  no %s scores: no rates\n", ng ? "impostor" : "genuine");
		return;
	}
	printf("  EER: %.4f%% at %s %.6f (%s)\n", 100 * eer, unit, shown(c, t), how_word(h));
	double auc = mfr_auc(s, &h);
	printf("  AUC: %.6f (%s)\n", auc, how_word(h));
	const char *rel = c->sim == MFR_SIM_EUCLIDEAN ? "<" : ">";
	printf("  %-9s  %-10s %-10s %-10s %-10s | %-11s %-10s %s\n", "FAR", "TAR", "FNMR", "FAR got", rel[0] == '<' ? "dist <" : "cos >",
	       "TAR nearest", "FAR read", rel[0] == '<' ? "dist <=" : "cos >=");
	int binned = 0;
	for (int k = 0; k < c->far.n; k++) {
		mfr_op_point o = mfr_tar_at_far(s, c->far.v[k], MFR_AT_MOST), q = mfr_tar_at_far(s, c->far.v[k], MFR_NEAREST);
		if (o.how == MFR_UNREACHABLE) {
			printf("  %-9.3g  not reachable: %llu impostor scores, the lowest FAR is 1/%llu = %.3g\n", c->far.v[k],
			       (unsigned long long)ni, (unsigned long long)ni, 1.0 / (double)ni);
			continue;
		}
		binned |= o.how == MFR_BINNED || q.how == MFR_BINNED;
		printf("  %-9.3g  %-10.6f %-10.6f %-10.3g %-10.6f | %-11.6f %-10.3g %.6f%s\n", c->far.v[k], o.tar, 1 - o.tar,
		       o.far, shown(c, o.threshold), q.tar, q.far, shown(c, q.threshold),
		       o.how == MFR_BINNED || q.how == MFR_BINNED ? " ~" : "");
	}
	if (binned)
		printf("  ~ below the kept impostor scores: read at a histogram bin edge (bins of %.2g; --keep more for exact)\n",
		       (c->sim == MFR_SIM_COSINE ? 2.002 : 1.0) / MFR_SCORE_BINS);
}

static void print_ident(const config *c, const result *r)
{
	if (c->json) {
		printf("{\"protocol\": \"ident\", \"what\": ");
		jstr(stdout, r->what);
		printf(", \"probes\": %lld, \"mated\": %lld, \"gallery\": %lld, \"ranks\": [", (long long)r->probes,
		       (long long)r->mated, (long long)r->gallery);
		for (int k = 0; k < c->ranks.n; k++) {
			printf("%s{\"rank\": %d, \"rate\": ", k ? ", " : "", (int)c->ranks.v[k]);
			jnum(stdout, mfr_ident_rank(&r->id, (int)c->ranks.v[k]));
			printf("}");
		}
		printf("], \"tpir\": [");
		for (int k = 0; k < c->fpir.n; k++) {
			double t;
			mfr_how h;
			double v = mfr_ident_tpir(&r->id, c->fpir.v[k], &t, &h);
			printf("%s{\"fpir\": %.9g, \"how\": \"%s\", \"tpir\": ", k ? ", " : "", c->fpir.v[k], how_word(h));
			jnum(stdout, v);
			printf(", \"threshold\": ");
			jnum(stdout, shown(c, t));
			printf("}");
		}
		printf("]}");
		return;
	}
	printf("ident: %s\n", r->what);
	if (!r->mated)
		printf("  no mated probes: no ranks\n");
	else
		for (int k = 0; k < c->ranks.n; k++)
			printf("  rank-%d: %.4f%%\n", (int)c->ranks.v[k], 100 * mfr_ident_rank(&r->id, (int)c->ranks.v[k]));
	int64_t nm = r->probes - r->mated;
	for (int k = 0; k < c->fpir.n; k++) {
		double t;
		mfr_how h;
		double v = mfr_ident_tpir(&r->id, c->fpir.v[k], &t, &h);
		if (h == MFR_EMPTY) {
			printf("  TPIR: needs mated and non-mated probes (%lld and %lld here)\n", (long long)r->mated, (long long)nm);
			break;
		}
		if (h == MFR_UNREACHABLE)
			printf("  TPIR at FPIR %.3g: not reachable: %lld non-mated probes, the lowest FPIR is %.3g\n",
			       c->fpir.v[k], (long long)nm, 1.0 / (double)nm);
		else
			printf("  TPIR at FPIR %.3g: %.4f%% (%s %s %.6f)\n", c->fpir.v[k], 100 * v,
			       c->sim == MFR_SIM_EUCLIDEAN ? "distance" : "cosine", c->sim == MFR_SIM_EUCLIDEAN ? "<" : ">",
			       shown(c, t));
	}
}

/* The CMC (rank 1..R) as TSV on a file. */
static void write_cmc(const char *path, const result *r)
{
	char *tmp;
	FILE *f = mfr_text_open(path, &tmp);
	fprintf(f, "rank\trate\n");
	int maxr = 0;
	for (int64_t i = 0; i < r->id.n; i++)
		if (r->id.rank[i] > maxr)
			maxr = r->id.rank[i];
	if (maxr > 1000)
		maxr = 1000;
	for (int k = 1; k <= maxr; k++)
		fprintf(f, "%d\t%.9g\n", k, mfr_ident_rank(&r->id, k));
	mfr_text_commit(f, path, tmp);
}

/* ---- ROC and DET ---- */

typedef struct {
	double far, tar;
} pt;

/* The at-most operating points on a grid of FARs, 10 per decade, from the
 * lowest reachable (1/impostors) to 1. */
static int curve(const config *c, const mfr_scores *s, pt **out, FILE *tsv)
{
	uint64_t ni = mfr_scores_impostor(s);
	if (!ni || !mfr_scores_genuine(s))
		return 0;
	int lo = (int)floor(log10(1.0 / (double)ni) * 10) - 1, n = 0;
	*out = malloc((size_t)(-lo + 2) * sizeof **out);
	if (tsv)
		fprintf(tsv, "far\ttar\tfnmr\tthreshold\texact\n");
	for (int k = lo; k <= 0; k++) {
		double x = pow(10, k / 10.0);
		mfr_op_point o = mfr_tar_at_far(s, x, MFR_AT_MOST);
		if (o.how != MFR_EXACT && o.how != MFR_BINNED)
			continue;
		if (tsv) {
			fprintf(tsv, "%.6g\t%.9g\t%.9g\t", x, o.tar, 1 - o.tar);
			if (isfinite(o.threshold))
				fprintf(tsv, "%.9g", shown(c, o.threshold));
			else
				fprintf(tsv, "%s", c->sim == MFR_SIM_EUCLIDEAN ? "inf" : "-inf");
			fprintf(tsv, "\t%d\n", o.how == MFR_EXACT);
		}
		(*out)[n++] = (pt){o.far > 0 ? o.far : x, o.tar};
	}
	return n;
}

/* A plot: log10 x from x0 to 0; y linear [0,1] (ROC) or log10 from y0 to 0 (DET). */
static void svg(const char *path, const char *title, const char *xl, const char *yl, const pt *p, int n, int det)
{
	char *tmp;
	FILE *f = mfr_text_open(path, &tmp);
	const double W = 640, H = 480, L = 70, R = 20, T = 40, B = 50;
	double x0 = 0, y0 = det ? 0 : 0;
	for (int k = 0; k < n; k++) {
		double lx = log10(p[k].far), ly = det ? log10(fmax(1 - p[k].tar, 1e-6)) : 0;
		if (lx < x0)
			x0 = floor(lx);
		if (det && ly < y0)
			y0 = floor(ly);
	}
	if (x0 > -1)
		x0 = -1;
	if (det && y0 > -1)
		y0 = -1;
#define PX(lx) (L + ((lx) - x0) / (0 - x0) * (W - L - R))
#define PY(v) (det ? T + (0 - (v)) / (0 - y0) * (H - T - B) : T + (1 - (v)) * (H - T - B))
	fprintf(f, "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%.0f\" height=\"%.0f\" font-family=\"sans-serif\" "
		   "font-size=\"12\">\n<rect width=\"100%%\" height=\"100%%\" fill=\"white\"/>\n", W, H);
	fprintf(f, "<text x=\"%.0f\" y=\"24\" text-anchor=\"middle\" font-size=\"14\">", W / 2);
	for (const char *q = title; *q; q++)
		*q == '<' ? fputs("&lt;", f) : *q == '&' ? fputs("&amp;", f) : fputc(*q, f);
	fprintf(f, "</text>\n");
	for (int d = (int)x0; d <= 0; d++)
		fprintf(f, "<line x1=\"%.1f\" y1=\"%.0f\" x2=\"%.1f\" y2=\"%.0f\" stroke=\"#ddd\"/><text x=\"%.1f\" y=\"%.0f\" "
			   "text-anchor=\"middle\">1e%d</text>\n", PX(d), T, PX(d), H - B, PX(d), H - B + 16, d);
	if (det)
		for (int d = (int)y0; d <= 0; d++)
			fprintf(f, "<line x1=\"%.0f\" y1=\"%.1f\" x2=\"%.0f\" y2=\"%.1f\" stroke=\"#ddd\"/><text x=\"%.0f\" "
				   "y=\"%.1f\" text-anchor=\"end\">1e%d</text>\n", L, PY(d), W - R, PY(d), L - 6, PY(d) + 4, d);
	else
		for (int k = 0; k <= 10; k += 2)
			fprintf(f, "<line x1=\"%.0f\" y1=\"%.1f\" x2=\"%.0f\" y2=\"%.1f\" stroke=\"#ddd\"/><text x=\"%.0f\" "
				   "y=\"%.1f\" text-anchor=\"end\">%.1f</text>\n", L, PY(k / 10.0), W - R, PY(k / 10.0), L - 6,
				PY(k / 10.0) + 4, k / 10.0);
	fprintf(f, "<rect x=\"%.0f\" y=\"%.0f\" width=\"%.0f\" height=\"%.0f\" fill=\"none\" stroke=\"black\"/>\n", L, T,
		W - L - R, H - T - B);
	fprintf(f, "<text x=\"%.0f\" y=\"%.0f\" text-anchor=\"middle\">%s</text>\n", (L + W - R) / 2, H - 12, xl);
	fprintf(f, "<text transform=\"translate(18 %.0f) rotate(-90)\" text-anchor=\"middle\">%s</text>\n", (T + H - B) / 2, yl);
	fprintf(f, "<polyline fill=\"none\" stroke=\"#1f5fbf\" stroke-width=\"2\" points=\"");
	for (int k = 0; k < n; k++) {
		double v = det ? log10(fmax(1 - p[k].tar, pow(10, y0))) : p[k].tar;
		fprintf(f, "%s%.1f,%.1f", k ? " " : "", PX(log10(p[k].far)), PY(v));
	}
	fprintf(f, "\"/>\n</svg>\n");
#undef PX
#undef PY
	mfr_text_commit(f, path, tmp);
}

static void write_curves(const config *c, const result *r)
{
	size_t n = strlen(c->roc) + 64;
	char *path = malloc(n);
	snprintf(path, n, "%s.%s.tsv", c->roc, proto_names[r->proto]);
	char *tmp;
	FILE *tsv = mfr_text_open(path, &tmp);
	pt *p = NULL;
	int np = curve(c, r->sc, &p, tsv);
	mfr_text_commit(tsv, path, tmp);
	char title[400];
	snprintf(title, sizeof title, "ROC: %s (%s)", proto_names[r->proto], r->what);
	snprintf(path, n, "%s.%s.roc.svg", c->roc, proto_names[r->proto]);
	svg(path, title, "FAR (at most)", "TAR", p, np, 0);
	snprintf(title, sizeof title, "DET: %s (%s)", proto_names[r->proto], r->what);
	snprintf(path, n, "%s.%s.det.svg", c->roc, proto_names[r->proto]);
	svg(path, title, "FMR", "FNMR", p, np, 1);
	free(p);
	free(path);
}

/* ---- composites ---- */

/* The value of one term, or NaN with *why set. */
static double term_value(const term *t, const result *r, const char **why)
{
	*why = NULL;
	if (t->proto == P_IDENT) {
		mfr_how h = MFR_EXACT;
		double th, v = t->metric == M_RANK ? mfr_ident_rank(&r->id, (int)t->x) : mfr_ident_tpir(&r->id, t->x, &th, &h);
		if (h != MFR_EXACT || !isfinite(v))
			*why = h == MFR_UNREACHABLE ? "not reachable" : "no mated or non-mated probes";
		return *why ? NAN : v;
	}
	mfr_how h = MFR_EXACT;
	double v = NAN;
	switch (t->metric) {
	case M_ACC:
		if (!r->folds)
			*why = "no folds";
		v = r->acc_mean;
		break;
	case M_EER: v = mfr_eer(r->sc, NULL, &h); break;
	case M_AUC: v = mfr_auc(r->sc, &h); break;
	default: {
		mfr_op_point o = mfr_tar_at_far(r->sc, t->x, t->metric == M_TAR_NEAREST ? MFR_NEAREST : MFR_AT_MOST);
		h = o.how;
		v = t->metric == M_FNMR ? 1 - o.tar : o.tar;
	}
	}
	if (h == MFR_UNREACHABLE)
		*why = "not reachable";
	else if (h == MFR_EMPTY)
		*why = "no genuine or impostor scores";
	return *why ? NAN : v;
}

static void print_composite(const config *c, const char *spec, const term *t, int nt, result *res, const int *at)
{
	double sum = 0;
	const char *fail = NULL;
	int fail_k = -1;
	if (c->json)
		printf(", \"composite\": {\"spec\": ");
	if (c->json) {
		jstr(stdout, spec);
		printf(", \"terms\": [");
	} else
		printf("composite (%s):", spec);
	for (int k = 0; k < nt; k++) {
		const char *why;
		double v = term_value(&t[k], &res[at[t[k].proto]], &why);
		if (why && !fail)
			fail = why, fail_k = k;
		else
			sum += t[k].w * v;
		char name[96];
		snprintf(name, sizeof name, "%s:%s", proto_names[t[k].proto], metric_names[t[k].metric]);
		if (t[k].metric == M_RANK)
			snprintf(name + strlen(name), sizeof name - strlen(name), "@%d", (int)t[k].x);
		else if (t[k].metric != M_ACC && t[k].metric != M_EER && t[k].metric != M_AUC)
			snprintf(name + strlen(name), sizeof name - strlen(name), "@%.3g", t[k].x);
		if (c->json) {
			printf("%s{\"term\": \"%s\", \"weight\": %.9g, \"value\": ", k ? ", " : "", name, t[k].w);
			jnum(stdout, v);
			printf("}");
		} else if (why)
			printf("%s %g x %s (%s)", k ? " +" : "", t[k].w, name, why);
		else
			printf("%s %g x %s (%.6f)", k ? " +" : "", t[k].w, name, v);
	}
	if (c->json) {
		printf("], \"value\": ");
		jnum(stdout, fail ? NAN : sum);
		printf("}");
	} else if (fail)
		printf("\n  = not available: term %d is %s\n", fail_k + 1, fail);
	else
		printf("\n  = %.6f\n", sum);
}

/* ---- main ---- */

int main(int argc, char **argv)
{
	config c = {.sim = MFR_SIM_COSINE, .keep_cap = (uint64_t)1 << 22};
	parse_list("1e-6,1e-5,1e-4,1e-3,1e-2,1e-1", 1e-12, 1, "--far", &c.far);
	parse_list("1,5,10", 1, 1e6, "--ranks", &c.ranks);
	parse_list("1e-3,1e-2,1e-1", 1e-12, 1, "--fpir", &c.fpir);
	const char *pairs = NULL, *lfw = NULL, *lmap = NULL, *labels_path = NULL, *gallery_path = NULL, *weights = NULL;
	int protos[NPROTO], np = 0, select = SEL_ALL, probes = -1, gset = -1, templates = 0, folds = 10, threads = 0, ch;
	int64_t tile = 2048;
	const char *device = NULL;
	while ((ch = mfr_getopt(&tool, argc, argv)) != -1) {
		switch (ch) {
		case 'p': {
			int p = proto_of(optarg);
			if (p < 0)
				mfr_usage_error("unknown protocol '%s' (pairs, all, all-masked, all-unmasked, pg, ident)", optarg);
			int dup = 0;
			for (int k = 0; k < np; k++)
				dup |= protos[k] == p;
			if (!dup)
				protos[np++] = p;
			break;
		}
		case O_PAIRS: pairs = optarg; break;
		case O_LFW_PAIRS: lfw = optarg; break;
		case 'l': lmap = optarg; break;
		case O_EUCLIDEAN: c.sim = MFR_SIM_EUCLIDEAN; break;
		case O_FAR: parse_list(optarg, 1e-12, 1, "--far", &c.far); break;
		case O_RANKS: parse_list(optarg, 1, 1e6, "--ranks", &c.ranks); break;
		case O_FPIR: parse_list(optarg, 1e-12, 1, "--fpir", &c.fpir); break;
		case O_SELECT: select = parse_which(optarg, "--select"); break;
		case O_LABELS: labels_path = optarg; break;
		case O_PROBES: probes = parse_which(optarg, "--probes"); break;
		case O_GALLERY: gallery_path = optarg; break;
		case O_GALLERY_SET: gset = parse_which(optarg, "--gallery-set"); break;
		case O_TEMPLATES: templates = 1; break;
		case O_FOLDS: folds = (int)mfr_parse_int(optarg, 2, 100, "fold count"); break;
		case O_WEIGHTS: weights = optarg; break;
		case O_ROC: c.roc = optarg; break;
		case O_JSON: c.json = 1; break;
		case 'j': threads = (int)mfr_parse_int(optarg, 0, 1024, "thread count"); break;
		case O_KEEP: c.keep_cap = (uint64_t)mfr_parse_int(optarg, 1000, 1000000000, "kept scores"); break;
		case O_TILE: tile = mfr_parse_int(optarg, 16, 16384, "tile"); break;
		case O_DEVICE: device = optarg; break;
		}
	}
	if (pairs && lfw)
		mfr_usage_error("--pairs and --lfw-pairs: one pairs list at a time");
	if (lfw && !lmap)
		mfr_usage_error("--lfw-pairs needs the label map (-l FILE, written by mfr-pack -l)");
	if (lmap && !lfw)
		mfr_usage_error("-l goes with --lfw-pairs");
	term terms[16];
	int nterms = weights ? parse_weights(weights, terms, 16) : 0;
	for (int k = 0; k < nterms; k++) {
		int dup = 0;
		for (int q = 0; q < np; q++)
			dup |= protos[q] == terms[k].proto;
		if (!dup)
			protos[np++] = terms[k].proto;
	}
	if (!np)
		protos[np++] = pairs || lfw ? P_PAIRS : P_ALL;
	for (int k = 0; k < np; k++)
		if (protos[k] == P_PAIRS && !pairs && !lfw)
			mfr_usage_error("protocol pairs needs --pairs FILE or --lfw-pairs FILE");
	if (probes < 0)
		probes = gallery_path ? SEL_ALL : SEL_MASKED;
	if (gset < 0)
		gset = gallery_path ? SEL_ALL : SEL_UNMASKED;
	if (threads == 0)
		threads = (int)sysconf(_SC_NPROCESSORS_ONLN);
	c.g = (mfr_engine){.sim = c.sim, .threads = threads > 0 ? threads : 1, .tile = tile};

	mfr_error e;
	/* the blocked protocols' GEMMs on a GPU: the same blocks to float
	 * rounding, handed to the same CPU consumers (gsim.h) */
	int dev, on_gpu = mfr_device_select(device, &dev, &e);
	if (on_gpu < 0)
		mfr_die_error(&e);
	char backend[300];
	snprintf(backend, sizeof backend, "%s", mfr_gemm_backend());
#ifdef MFR_HAVE_CUDA
	mfr_gpu *gpu = NULL;
	mfr_gsim *gs = NULL;
	int blocked = 0; /* a protocol with GEMMs (pairs are scored one by one) */
	for (int k = 0; k < np; k++)
		blocked |= protos[k] != P_PAIRS;
	if (on_gpu && blocked) {
		if (!(gpu = mfr_gpu_open(dev, &e)) || !(gs = mfr_gsim_new(gpu, 0, 0, &e)))
			mfr_die_error(&e);
		c.g.block = mfr_gsim_block;
		c.g.bind = mfr_gsim_bind;
		c.g.block_ctx = gs;
		snprintf(backend, sizeof backend, "GPU %d %s, cuBLAS fp32", dev, mfr_gpu_name(gpu));
	}
#else
	if (on_gpu) /* mfr_device_select finds no GPU without CUDA */
		mfr_die("built without CUDA");
#endif
	int nin = argc - optind;
	const char *const *in = (const char *const *)argv + optind;
	char inname[300];
	snprintf(inname, sizeof inname, "'%s'%s", nin ? in[0] : "<stdin>", nin > 1 ? " and the other inputs" : "");
	double t0 = mfr_now();
	mfr_emb_set all, gal = {0};
	if (mfr_emb_set_read(in, nin, &all, &e) < 0)
		mfr_die_error(&e);
	if (all.n == 0)
		mfr_die("%s: no embeddings", inname);
	mfr_map lab;
	mfr_map_init(&lab);
	if (labels_path)
		mfr_load_keys(labels_path, &lab, 1);
	mfr_emb_set set;
	subset(&all, select, labels_path ? &lab : NULL, &set);
	mfr_emb_set_free(&all);
	if (set.n == 0)
		mfr_die("%s: no records left after the selection (--select %s%s)", inname, which_name(select),
			labels_path ? ", --labels" : "");
	if (gallery_path) {
		const char *gp[1] = {gallery_path};
		if (mfr_emb_set_read(gp, 1, &gal, &e) < 0)
			mfr_die_error(&e);
		if (gal.dim != set.dim)
			mfr_die("'%s': dimension %d, but %s has %d", gallery_path, gal.dim, inname, set.dim);
		if (labels_path) {
			mfr_emb_set g2;
			subset(&gal, SEL_ALL, &lab, &g2);
			mfr_emb_set_free(&gal);
			gal = g2;
		}
		if (c.sim == MFR_SIM_COSINE)
			mfr_emb_set_normalize(&gal);
	}
	mfr_map_free(&lab);
	if (c.sim == MFR_SIM_COSINE)
		mfr_emb_set_normalize(&set);
	double tread = mfr_now() - t0;

	result res[NPROTO];
	int at[NPROTO];
	for (int k = 0; k < np; k++) {
		result *r = &res[k];
		*r = (result){.proto = protos[k]};
		at[protos[k]] = k;
		double t1 = mfr_now();
		switch (protos[k]) {
		case P_PAIRS: {
			plist pl;
			if (lfw)
				pairs_from_lfw(lfw, lmap, &set, inname, &pl);
			else
				pairs_from_ids(pairs, &set, inname, folds, &pl);
			run_pairs(&c, &set, &pl, r);
			free(pl.a);
			free(pl.b);
			free(pl.same);
			free(pl.fold);
			break;
		}
		case P_ALL: run_all(&c, &set, SEL_ALL, r); break;
		case P_ALL_MASKED: run_all(&c, &set, SEL_MASKED, r); break;
		case P_ALL_UNMASKED: run_all(&c, &set, SEL_UNMASKED, r); break;
		case P_PG: run_pg(&c, &set, gallery_path ? &gal : NULL, probes, gset, templates, r); break;
		case P_IDENT: run_ident(&c, &set, gallery_path ? &gal : NULL, probes, gset, templates, r); break;
		}
		fprintf(stderr, "mfr-score: %s: %s in %.2f s (%d threads, %s)\n", proto_names[protos[k]], r->what,
			mfr_now() - t1, c.g.threads, protos[k] == P_PAIRS ? "per pair, CPU" : backend);
	}
	fprintf(stderr, "mfr-score: read %lld records of %d-d in %.2f s\n", (long long)set.n, set.dim, tread);

	if (c.json) {
		printf("{\"tool\": \"mfr-score\", \"version\": \"%s\", \"similarity\": \"%s\", \"records\": %lld, "
		       "\"dimension\": %d, \"inputs\": [", MFR_VERSION, c.sim == MFR_SIM_COSINE ? "cosine" : "euclidean",
		       (long long)set.n, set.dim);
		for (int k = 0; k < nin; k++) {
			printf(k ? ", " : "");
			jstr(stdout, in[k]);
		}
		printf("], \"protocols\": [");
	} else
		printf("mfr-score: %lld records, %d-d, %s similarity%s\n", (long long)set.n, set.dim,
		       c.sim == MFR_SIM_COSINE ? "cosine" : "Euclidean (-distance)",
		       c.sim == MFR_SIM_COSINE ? " (accept: cos > threshold)" : " (accept: distance < threshold)");
	for (int k = 0; k < np; k++) {
		if (c.json)
			printf(k ? ", " : "");
		if (res[k].proto == P_IDENT)
			print_ident(&c, &res[k]);
		else
			print_verification(&c, &res[k]);
		if (c.roc && res[k].proto != P_IDENT)
			write_curves(&c, &res[k]);
		if (c.roc && res[k].proto == P_IDENT) {
			size_t n = strlen(c.roc) + 32;
			char *path = malloc(n);
			snprintf(path, n, "%s.ident.cmc.tsv", c.roc);
			write_cmc(path, &res[k]);
			free(path);
		}
	}
	if (c.json)
		printf("]");
	if (nterms)
		print_composite(&c, weights, terms, nterms, res, at);
	if (c.json)
		printf("}\n");
	for (int k = 0; k < np; k++) {
		mfr_scores_free(res[k].sc);
		free(res[k].acc);
		free(res[k].thr);
		mfr_ident_free(&res[k].id);
	}
	mfr_emb_set_free(&set);
	mfr_emb_set_free(&gal);
#ifdef MFR_HAVE_CUDA
	mfr_gsim_free(gs);
	mfr_gpu_close(gpu);
#endif
	return mfr_close_stdout(0);
}
