/* score.c — embedding sets, the score collector, the metrics, the blocked
 * protocols and the text inputs of score.h. What the collector keeps and
 * why is in score.h; the choices behind each metric are next to it here. */
#include "score.h" /* defines: mfr_scores, mfr_score_all, mfr_tar_at_far, ... */

#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gemm.h"   /* defines: mfr_sgemm, mfr_gemm_set_threads */
#include "record.h" /* defines: mfr_embedding_decode */
#include "stream.h" /* defines: mfr_reader_* */

/* ---- embedding sets ---- */

void mfr_emb_set_free(mfr_emb_set *s)
{
	free(s->vec);
	free(s->ids);
	free(s->labels);
	free(s->flags);
	*s = (mfr_emb_set){0};
}

static int set_alloc(mfr_emb_set *s, int64_t n, int dim, mfr_error *e)
{
	size_t m = n > 0 ? (size_t)n : 1;
	*s = (mfr_emb_set){.n = n, .dim = dim};
	s->vec = mfr_malloc(m * (size_t)dim * sizeof *s->vec, e);
	s->ids = mfr_malloc(m * sizeof *s->ids, e);
	s->labels = mfr_malloc(m * sizeof *s->labels, e);
	s->flags = mfr_malloc(m * sizeof *s->flags, e);
	if (!s->vec || !s->ids || !s->labels || !s->flags) {
		mfr_emb_set_free(s);
		return -1;
	}
	return 0;
}

int mfr_emb_set_read(const char *const *paths, int n, mfr_emb_set *s, mfr_error *e)
{
	*s = (mfr_emb_set){0};
	mfr_reader *r = mfr_reader_open(paths, n, 0, 0, e);
	if (!r)
		return -1;
	const mfr_schema *sc = mfr_reader_schema(r);
	if (sc->kind != MFR_KIND_EMBEDDING) {
		mfr_fail(e, "'%s': %s records, not EMBEDDING (run mfr-embed first)", n > 0 ? paths[0] : "<stdin>",
			 mfr_kind_name(sc->kind));
		mfr_reader_close(r);
		return -1;
	}
	int dim = (int)sc->dim;
	size_t room = 1024, cnt = 0;
	if (set_alloc(s, (int64_t)room, dim, e) < 0) {
		mfr_reader_close(r);
		return -1;
	}
	mfr_record rec;
	int got;
	while ((got = mfr_reader_next(r, &rec, e)) == 1) {
		if (cnt == room) {
			room *= 2;
			float *v = mfr_realloc(s->vec, room * (size_t)dim * sizeof *v, e);
			if (v)
				s->vec = v;
			uint64_t *id = v ? mfr_realloc(s->ids, room * sizeof *id, e) : NULL;
			if (id)
				s->ids = id;
			int32_t *lb = id ? mfr_realloc(s->labels, room * sizeof *lb, e) : NULL;
			if (lb)
				s->labels = lb;
			uint32_t *fl = lb ? mfr_realloc(s->flags, room * sizeof *fl, e) : NULL;
			if (!fl) {
				got = -1;
				break;
			}
			s->flags = fl;
		}
		mfr_embedding v = {.vec = s->vec + cnt * (size_t)dim};
		if (mfr_embedding_decode(rec.data, rec.size, sc, &v, e) < 0) {
			mfr_error in = *e;
			mfr_fail(e, "'%s': bad record %llu at byte %llu: %s", rec.path, (unsigned long long)rec.number,
				 (unsigned long long)rec.offset, in.msg);
			got = -1;
			break;
		}
		for (int d = 0; d < dim; d++)
			if (!isfinite(v.vec[d])) {
				mfr_fail(e, "'%s': record %llu at byte %llu holds a non-finite value", rec.path,
					 (unsigned long long)rec.number, (unsigned long long)rec.offset);
				got = -1;
				break;
			}
		if (got < 0)
			break;
		s->ids[cnt] = v.id;
		s->labels[cnt] = v.label;
		s->flags[cnt] = v.flags;
		cnt++;
	}
	mfr_reader_close(r);
	if (got < 0) {
		mfr_emb_set_free(s);
		return -1;
	}
	s->n = (int64_t)cnt;
	return 0;
}

int mfr_emb_set_select(const mfr_emb_set *src, const uint8_t *keep, mfr_emb_set *dst, mfr_error *e)
{
	int64_t n = 0;
	for (int64_t i = 0; i < src->n; i++)
		n += keep[i] != 0;
	if (set_alloc(dst, n, src->dim, e) < 0)
		return -1;
	int64_t k = 0;
	for (int64_t i = 0; i < src->n; i++)
		if (keep[i]) {
			memcpy(dst->vec + k * src->dim, src->vec + i * src->dim, (size_t)src->dim * sizeof *src->vec);
			dst->ids[k] = src->ids[i];
			dst->labels[k] = src->labels[i];
			dst->flags[k] = src->flags[i];
			k++;
		}
	return 0;
}

void mfr_emb_set_normalize(mfr_emb_set *s)
{
	for (int64_t i = 0; i < s->n; i++) {
		float *v = s->vec + i * s->dim;
		double ss = 0;
		for (int d = 0; d < s->dim; d++)
			ss += (double)v[d] * v[d];
		if (ss > 0) {
			float inv = (float)(1.0 / sqrt(ss));
			for (int d = 0; d < s->dim; d++)
				v[d] *= inv;
		}
	}
}

typedef struct {
	int32_t label;
	uint64_t id;
	int64_t i;
} lid;

static int cmp_lid(const void *a, const void *b)
{
	const lid *x = a, *y = b;
	if (x->label != y->label)
		return x->label < y->label ? -1 : 1;
	if (x->id != y->id)
		return x->id < y->id ? -1 : 1;
	return x->i < y->i ? -1 : x->i > y->i;
}

/* An order of s's rows by (label, id, position). */
static lid *label_order(const mfr_emb_set *s, mfr_error *e)
{
	lid *o = mfr_malloc((size_t)(s->n > 0 ? s->n : 1) * sizeof *o, e);
	if (!o)
		return NULL;
	for (int64_t i = 0; i < s->n; i++)
		o[i] = (lid){s->labels[i], s->ids[i], i};
	qsort(o, (size_t)s->n, sizeof *o, cmp_lid);
	return o;
}

int mfr_emb_set_templates(const mfr_emb_set *src, mfr_emb_set *dst, mfr_error *e)
{
	lid *o = label_order(src, e);
	if (!o)
		return -1;
	int64_t nl = 0;
	for (int64_t k = 0; k < src->n; k++)
		if (o[k].label >= 0 && (k == 0 || o[k].label != o[k - 1].label))
			nl++;
	if (set_alloc(dst, nl, src->dim, e) < 0) {
		free(o);
		return -1;
	}
	double *acc = mfr_malloc((size_t)src->dim * sizeof *acc, e);
	if (!acc) {
		free(o);
		mfr_emb_set_free(dst);
		return -1;
	}
	int64_t t = 0;
	for (int64_t k = 0; k < src->n;) {
		int64_t end = k;
		while (end < src->n && o[end].label == o[k].label)
			end++;
		if (o[k].label >= 0) {
			memset(acc, 0, (size_t)src->dim * sizeof *acc);
			uint64_t first = UINT64_MAX;
			int64_t firstpos = INT64_MAX;
			for (int64_t q = k; q < end; q++) {
				const float *v = src->vec + o[q].i * src->dim;
				for (int d = 0; d < src->dim; d++)
					acc[d] += v[d];
				if (o[q].id < first)
					first = o[q].id;
				if (o[q].i < firstpos)
					firstpos = o[q].i;
			}
			for (int d = 0; d < src->dim; d++)
				dst->vec[t * src->dim + d] = (float)(acc[d] / (double)(end - k));
			dst->ids[t] = first;
			dst->labels[t] = o[k].label;
			dst->flags[t] = src->flags[firstpos];
			t++;
		}
		k = end;
	}
	free(acc);
	free(o);
	return 0;
}

/* ---- the block producer ---- */

int mfr_block_gemm(void *ctx, const float *a, int64_t na, const float *b, int64_t nb, int dim, float *out,
		   int64_t ldo, mfr_error *e)
{
	if (mfr_sgemm(0, 1, na, nb, dim, 1.0f, a, dim, b, dim, 0.0f, out, ldo) < 0)
		return mfr_fail(e, "matrix product of %lld x %lld by %d failed (out of memory?)", (long long)na,
				(long long)nb, dim);
	return 0;
}

/* ---- the collector ---- */

struct mfr_scores {
	uint64_t keep;
	double lo, hi;
	float lof, invf; /* bin(s) = (s - lo) * inv, clamped */
	float *gen;
	size_t ngen, gen_room;
	float *top; /* impostor candidates: all with score > thr since the last compaction */
	size_t ntop, top_cap, top_room; /* allocated; the most before a compaction */
	float thr;
	uint64_t nimp;
	uint64_t *hist;  /* MFR_SCORE_BINS */
	uint64_t *above; /* after finish: above[b] = impostors in bins b.. (BINS + 1 entries) */
	int finished;
};

mfr_scores *mfr_scores_new(uint64_t keep, double lo, double hi, mfr_error *e)
{
	if (keep < 1)
		keep = 1;
	if (!(hi > lo))
		hi = lo + 1;
	mfr_scores *s = mfr_malloc(sizeof *s, e);
	if (!s)
		return NULL;
	*s = (mfr_scores){.keep = keep, .lo = lo, .hi = hi, .thr = -INFINITY};
	s->lof = (float)lo;
	s->invf = (float)(MFR_SCORE_BINS / (hi - lo));
	/* the candidate buffer holds keep plus half again (or 64K) before a
	 * compaction selects the keep highest: amortised O(1) per candidate */
	uint64_t extra = keep / 2 > 65536 ? keep / 2 : 65536;
	s->top_room = (size_t)(keep + extra);
	s->hist = calloc(MFR_SCORE_BINS, sizeof *s->hist);
	if (!s->hist) {
		free(s);
		mfr_fail(e, "out of memory");
		return NULL;
	}
	return s;
}

void mfr_scores_free(mfr_scores *s)
{
	if (!s)
		return;
	free(s->gen);
	free(s->top);
	free(s->hist);
	free(s->above);
	free(s);
}

static void swapf(float *a, float *b)
{
	float t = *a;
	*a = *b;
	*b = t;
}

/* Rearranges v[0..n) so that v[0..k) holds its k largest values (k < n):
 * quickselect with a median-of-three pivot and a three-way partition, so
 * runs of equal scores cost nothing extra. */
static void select_top(float *v, size_t n, size_t k)
{
	size_t lo = 0, hi = n; /* the k-th boundary lies in [lo, hi) */
	while (hi - lo > 1) {
		size_t mid = lo + (hi - lo) / 2;
		float a = v[lo], b = v[mid], c = v[hi - 1];
		float p = a > b ? (b > c ? b : (a > c ? c : a)) : (a > c ? a : (b > c ? c : b));
		/* three-way: [lo, gt) > p, [gt, eq) == p, [eq, hi) < p */
		size_t gt = lo, i = lo, lt = hi;
		while (i < lt) {
			if (v[i] > p)
				swapf(&v[gt++], &v[i++]);
			else if (v[i] < p)
				swapf(&v[i], &v[--lt]);
			else
				i++;
		}
		if (k < gt)
			hi = gt;
		else if (k <= lt)
			return; /* the boundary falls inside the equal run */
		else
			lo = lt;
	}
}

static int grow(void **p, size_t *room, size_t need, size_t size, mfr_error *e)
{
	if (need <= *room)
		return 0;
	size_t r = *room ? *room : 1024;
	while (r < need)
		r *= 2;
	void *q = mfr_realloc(*p, r * size, e);
	if (!q)
		return -1;
	*p = q;
	*room = r;
	return 0;
}

static void compact(mfr_scores *s)
{
	if (s->ntop <= s->keep)
		return;
	select_top(s->top, s->ntop, (size_t)s->keep);
	float m = s->top[0];
	for (size_t i = 1; i < s->keep; i++)
		if (s->top[i] < m)
			m = s->top[i];
	s->ntop = (size_t)s->keep;
	/* the keep highest so far are >= m; a later score equal to m cannot
	 * change the multiset of the keep highest, so only > m is a candidate */
	s->thr = m;
}

/* Adds an impostor candidate (score > thr). */
static int push_top(mfr_scores *s, float v, mfr_error *e)
{
	if (s->ntop == s->top_cap) {
		if (s->top_cap == s->top_room) {
			compact(s);
		} else {
			/* grow towards top_room: a small protocol allocates little */
			size_t r = s->top_cap ? s->top_cap * 2 : 4096;
			if (r > s->top_room)
				r = s->top_room;
			float *q = mfr_realloc(s->top, r * sizeof *q, e);
			if (!q)
				return -1;
			s->top = q;
			s->top_cap = r;
		}
	}
	s->top[s->ntop++] = v;
	return 0;
}

static inline size_t bin_of(const mfr_scores *s, float v)
{
	float f = (v - s->lof) * s->invf;
	f = f < 0 ? 0 : f;
	f = f > (float)(MFR_SCORE_BINS - 1) ? (float)(MFR_SCORE_BINS - 1) : f;
	return (size_t)f;
}

static int add_gen(mfr_scores *s, float v, mfr_error *e)
{
	if (s->ngen == s->gen_room && grow((void **)&s->gen, &s->gen_room, s->ngen + 1, sizeof *s->gen, e) < 0)
		return -1;
	s->gen[s->ngen++] = v;
	return 0;
}

static inline int add_imp(mfr_scores *s, float v, mfr_error *e)
{
	s->nimp++;
	s->hist[bin_of(s, v)]++;
	return v > s->thr ? push_top(s, v, e) : 0;
}

int mfr_scores_add(mfr_scores *s, float score, int genuine, mfr_error *e)
{
	return genuine ? add_gen(s, score, e) : add_imp(s, score, e);
}

/* The hot loop of the blocked protocols: n impostor scores. */
static int add_imps(mfr_scores *s, const float *v, int64_t n, mfr_error *e)
{
	uint64_t *h = s->hist;
	float lof = s->lof, invf = s->invf, thr = s->thr, top = (float)(MFR_SCORE_BINS - 1);
	for (int64_t j = 0; j < n; j++) {
		float x = v[j], f = (x - lof) * invf;
		f = f < 0 ? 0 : f;
		f = f > top ? top : f;
		h[(size_t)f]++;
		if (x > thr) {
			if (push_top(s, x, e) < 0)
				return -1;
			thr = s->thr;
		}
	}
	s->nimp += (uint64_t)n;
	return 0;
}

int mfr_scores_merge(mfr_scores *dst, mfr_scores *src, mfr_error *e)
{
	if (grow((void **)&dst->gen, &dst->gen_room, dst->ngen + src->ngen, sizeof *dst->gen, e) < 0)
		return -1;
	if (src->ngen)
		memcpy(dst->gen + dst->ngen, src->gen, src->ngen * sizeof *src->gen);
	dst->ngen += src->ngen;
	for (size_t i = 0; i < src->ntop; i++)
		if (src->top[i] > dst->thr && push_top(dst, src->top[i], e) < 0)
			return -1;
	dst->nimp += src->nimp;
	for (size_t b = 0; b < MFR_SCORE_BINS; b++)
		dst->hist[b] += src->hist[b];
	free(src->gen);
	free(src->top);
	src->gen = src->top = NULL;
	src->ngen = src->gen_room = src->ntop = src->top_cap = 0;
	src->nimp = 0;
	src->thr = -INFINITY;
	memset(src->hist, 0, MFR_SCORE_BINS * sizeof *src->hist);
	return 0;
}

static int cmp_asc(const void *a, const void *b)
{
	float x = *(const float *)a, y = *(const float *)b;
	return x < y ? -1 : x > y;
}

static int cmp_desc(const void *a, const void *b) { return cmp_asc(b, a); }

static int cmp_i32(const void *a, const void *b)
{
	int32_t x = *(const int32_t *)a, y = *(const int32_t *)b;
	return x < y ? -1 : x > y;
}

int mfr_scores_finish(mfr_scores *s, mfr_error *e)
{
	compact(s);
	if (s->ntop)
		qsort(s->top, s->ntop, sizeof *s->top, cmp_desc);
	if (s->ngen)
		qsort(s->gen, s->ngen, sizeof *s->gen, cmp_asc);
	if (!(s->above = mfr_malloc((MFR_SCORE_BINS + 1) * sizeof *s->above, e)))
		return -1;
	s->above[MFR_SCORE_BINS] = 0;
	for (size_t b = MFR_SCORE_BINS; b-- > 0;)
		s->above[b] = s->above[b + 1] + s->hist[b];
	s->finished = 1;
	return 0;
}

uint64_t mfr_scores_genuine(const mfr_scores *s) { return s->ngen; }
uint64_t mfr_scores_impostor(const mfr_scores *s) { return s->nimp; }
int mfr_scores_complete(const mfr_scores *s) { return (uint64_t)s->ntop == s->nimp; }
const float *mfr_scores_gen(const mfr_scores *s) { return s->gen; }
const float *mfr_scores_top(const mfr_scores *s, uint64_t *n)
{
	*n = s->ntop;
	return s->top;
}

/* ---- counting ---- */

/* Number of values > t in v[0..n) sorted descending. */
static size_t desc_above(const float *v, size_t n, double t)
{
	size_t lo = 0, hi = n;
	while (lo < hi) {
		size_t m = lo + (hi - lo) / 2;
		if (v[m] > t)
			lo = m + 1;
		else
			hi = m;
	}
	return lo;
}

/* Number of values > t in v[0..n) sorted ascending. */
static size_t asc_above(const float *v, size_t n, double t)
{
	size_t lo = 0, hi = n;
	while (lo < hi) {
		size_t m = lo + (hi - lo) / 2;
		if (v[m] > t)
			hi = m;
		else
			lo = m + 1;
	}
	return n - lo;
}

uint64_t mfr_genuine_above(const mfr_scores *s, double t) { return asc_above(s->gen, s->ngen, t); }

static double bin_width(const mfr_scores *s) { return (s->hi - s->lo) / MFR_SCORE_BINS; }
static double edge(const mfr_scores *s, size_t b) { return s->lo + (double)b * bin_width(s); }

/* Is "impostors > t" known exactly from the kept scores? */
static int exact_at(const mfr_scores *s, double t)
{
	return mfr_scores_complete(s) || (s->ntop > 0 && t >= s->top[s->ntop - 1]);
}

double mfr_impostors_above(const mfr_scores *s, double t, mfr_how *how)
{
	if (exact_at(s, t)) {
		if (how)
			*how = MFR_EXACT;
		return (double)desc_above(s->top, s->ntop, t);
	}
	if (how)
		*how = MFR_BINNED;
	/* the bins above t's, and t's own in proportion to the part above t */
	double x = (t - s->lo) / bin_width(s);
	if (x < 0)
		return (double)s->above[0];
	if (x >= MFR_SCORE_BINS)
		return 0;
	size_t b = (size_t)x;
	return (double)s->above[b + 1] + (double)s->hist[b] * (1.0 - (x - (double)b));
}

/* ---- TAR at FAR ---- */

/* The number of impostors a FAR of x allows among n, robust to x*n landing
 * a rounding error below an integer (1e-5 * 1e5). */
static uint64_t allowed(double x, uint64_t n)
{
	double a = x * (double)n;
	double r = floor(a + 1e-9 * (a > 1 ? a : 1));
	return r >= (double)n ? n : (uint64_t)r;
}

static mfr_op_point at_most(const mfr_scores *s, double x)
{
	mfr_op_point o = {.threshold = NAN};
	uint64_t n = s->nimp, p = s->ngen, a = allowed(x, n);
	if (a == 0) {
		o.how = MFR_UNREACHABLE;
		return o;
	}
	if (a >= n) { /* everything may be accepted */
		o.tar = 1;
		o.far = 1;
		o.threshold = -INFINITY;
		return o;
	}
	if (a < s->ntop) {
		o.threshold = s->top[a];
		o.far = (double)desc_above(s->top, s->ntop, o.threshold) / (double)n;
		o.tar = (double)mfr_genuine_above(s, o.threshold) / (double)p;
		return o;
	}
	/* below the kept scores: the lowest bin edge whose upper bins hold at
	 * most a impostors (above[] falls as b grows) */
	size_t lo = 0, hi = MFR_SCORE_BINS;
	while (lo < hi) {
		size_t m = lo + (hi - lo) / 2;
		if (s->above[m] <= a)
			hi = m;
		else
			lo = m + 1;
	}
	o.threshold = edge(s, lo);
	o.far = (double)s->above[lo] / (double)n;
	o.tar = (double)mfr_genuine_above(s, o.threshold) / (double)p;
	o.how = MFR_BINNED;
	return o;
}

/* sklearn's roc_curve vertices, walked from the highest threshold down:
 * one raw vertex per distinct score v (fps, tps: impostors and genuine >= v);
 * drop_intermediate keeps the first and the last raw vertex and every one
 * where the second difference of fps or of tps is non-zero; (0, 0) is
 * prepended. insightface flips the arrays and takes the first minimum of
 * |fpr - x|: the nearest FAR, the higher FAR on a distance tie, and at one
 * FAR the last vertex (the highest TAR). */
static mfr_op_point nearest(const mfr_scores *s, double x)
{
	mfr_op_point best = {.far = 0, .tar = 0, .threshold = INFINITY};
	double n = (double)s->nimp, p = (double)s->ngen, bd = x; /* the prepended (0,0) */
	int complete = mfr_scores_complete(s);
	size_t gi = s->ngen, ti = 0; /* next genuine gen[gi-1], next impostor top[ti] */
	uint64_t fps = 0, tps = 0;
	/* the last two raw vertices, to decide on the middle one */
	uint64_t f1 = 0, t1 = 0, f0 = 0, t0 = 0;
	double v1 = 0;
	int have = 0;
	for (;;) {
		int more = gi > 0 || ti < s->ntop;
		double v = 0;
		if (more) {
			double g = gi > 0 ? s->gen[gi - 1] : -INFINITY, im = ti < s->ntop ? s->top[ti] : -INFINITY;
			v = g > im ? g : im;
			if (!complete && !(v > s->top[s->ntop - 1]))
				goto approx; /* vertices from here on are not all known */
			while (gi > 0 && s->gen[gi - 1] == v)
				gi--, tps++;
			while (ti < s->ntop && s->top[ti] == v)
				ti++, fps++;
		}
		/* decide on vertex 1 (the previous raw one) now that its successor
		 * is known: kept if first, last, or not collinear */
		if (have >= 1) {
			int last = !more;
			int keep = have == 1 || last ||
				   (have >= 2 && ((int64_t)fps - 2 * (int64_t)f1 + (int64_t)f0 != 0 ||
						  (int64_t)tps - 2 * (int64_t)t1 + (int64_t)t0 != 0));
			if (keep) {
				double fpr = (double)f1 / n, d = fabs(fpr - x);
				if (fpr - x > bd)
					break; /* every later vertex is farther */
				if (d <= bd) {
					bd = d;
					best = (mfr_op_point){.far = fpr, .tar = (double)t1 / p, .threshold = v1};
				}
			}
		}
		if (!more)
			break;
		f0 = f1, t0 = t1;
		f1 = fps, t1 = tps, v1 = v;
		have++;
		if (have > 2)
			have = 2;
	}
	return best;
approx:;
	mfr_op_point o = at_most(s, x);
	if (o.how == MFR_EXACT)
		o.how = MFR_BINNED;
	return o;
}

mfr_op_point mfr_tar_at_far(const mfr_scores *s, double x, mfr_far_rule rule)
{
	if (!s->nimp || !s->ngen)
		return (mfr_op_point){.threshold = NAN, .how = MFR_EMPTY};
	if (allowed(x, s->nimp) == 0)
		return (mfr_op_point){.threshold = NAN, .how = MFR_UNREACHABLE};
	return rule == MFR_NEAREST ? nearest(s, x) : at_most(s, x);
}

/* ---- EER and AUC ---- */

typedef struct {
	double d, far, frr, t;
	int set;
} eer_best;

/* FAR - FRR at threshold t (accept: score > t): falls as t rises. */
static void eer_try(const mfr_scores *s, double t, eer_best *b)
{
	double far = mfr_impostors_above(s, t, NULL) / (double)s->nimp;
	double frr = 1.0 - (double)mfr_genuine_above(s, t) / (double)s->ngen;
	double d = fabs(far - frr);
	if (!b->set || d < b->d || (d == b->d && t < b->t))
		*b = (eer_best){d, far, frr, t, 1};
}

/* Over candidates c(0..n) ascending in t: the two around the crossing. */
#define EER_SEARCH(n, c)                                                                                       \
	do {                                                                                                   \
		size_t lo_ = 0, hi_ = (n);                                                                     \
		while (lo_ < hi_) {                                                                            \
			size_t m_ = lo_ + (hi_ - lo_) / 2;                                                     \
			double t_ = (c(m_));                                                                   \
			double far_ = mfr_impostors_above(s, t_, NULL) / (double)s->nimp;                      \
			double frr_ = 1.0 - (double)mfr_genuine_above(s, t_) / (double)s->ngen;               \
			if (far_ - frr_ > 0)                                                                   \
				lo_ = m_ + 1;                                                                  \
			else                                                                                   \
				hi_ = m_;                                                                      \
		}                                                                                              \
		if (lo_ < (n))                                                                                 \
			eer_try(s, (c(lo_)), &b);                                                              \
		if (lo_ > 0)                                                                                   \
			eer_try(s, (c(lo_ - 1)), &b);                                                          \
	} while (0)

double mfr_eer(const mfr_scores *s, double *threshold, mfr_how *how)
{
	if (!s->nimp || !s->ngen) {
		if (how)
			*how = MFR_EMPTY;
		if (threshold)
			*threshold = NAN;
		return NAN;
	}
	/* candidate thresholds: every genuine and kept impostor score and,
	 * when some impostors were not kept, the histogram's bin edges; each
	 * family is sorted, so a binary search finds its crossing */
	eer_best b = {0};
#define C_GEN(i) ((double)s->gen[i])
#define C_TOP(i) ((double)s->top[s->ntop - 1 - (i)])
#define C_EDGE(i) (edge(s, (i)))
	EER_SEARCH(s->ngen, C_GEN);
	EER_SEARCH(s->ntop, C_TOP);
	if (!mfr_scores_complete(s))
		EER_SEARCH((size_t)MFR_SCORE_BINS + 1, C_EDGE);
	if (how)
		*how = exact_at(s, b.t) ? MFR_EXACT : MFR_BINNED;
	if (threshold)
		*threshold = b.t;
	return (b.far + b.frr) / 2;
}

double mfr_auc(const mfr_scores *s, mfr_how *how)
{
	if (!s->nimp || !s->ngen) {
		if (how)
			*how = MFR_EMPTY;
		return NAN;
	}
	int exact = 1;
	double sum = 0; /* impostors below each genuine, ties as halves */
	for (size_t i = 0; i < s->ngen; i++) {
		double g = s->gen[i];
		mfr_how h;
		double above = mfr_impostors_above(s, g, &h), eq = 0;
		if (h == MFR_EXACT) {
			/* impostors equal to g: kept ones are exact as long as g is above the lowest kept */
			size_t lo = desc_above(s->top, s->ntop, g), hi = lo;
			while (hi < s->ntop && s->top[hi] == g)
				hi++;
			eq = (double)(hi - lo);
			if (!mfr_scores_complete(s) && hi == s->ntop)
				exact = 0; /* ties may continue below the kept scores */
		} else
			exact = 0;
		sum += (double)s->nimp - above - eq + eq / 2;
	}
	if (how)
		*how = exact ? MFR_EXACT : MFR_BINNED;
	return sum / (double)s->ngen / (double)s->nimp;
}

/* ---- the blocked protocols ---- */

static double norm2(const float *v, int dim)
{
	double ss = 0;
	for (int d = 0; d < dim; d++)
		ss += (double)v[d] * v[d];
	return ss;
}

float mfr_pair_score(const mfr_emb_set *s, int64_t i, int64_t j, mfr_sim sim)
{
	const float *a = s->vec + i * s->dim, *b = s->vec + j * s->dim;
	double dot = 0, d2 = 0;
	for (int d = 0; d < s->dim; d++) {
		dot += (double)a[d] * b[d];
		d2 += ((double)a[d] - b[d]) * ((double)a[d] - b[d]);
	}
	return sim == MFR_SIM_EUCLIDEAN ? (float)-sqrt(d2) : (float)dot;
}

/* Turns raw dot products into -distances: d^2 = |a|^2 + |b|^2 - 2 a.b. */
static void to_euclid(float *row, int64_t n, float na, const float *nb)
{
	for (int64_t j = 0; j < n; j++) {
		float d2 = na + nb[j] - 2 * row[j];
		row[j] = -sqrtf(d2 > 0 ? d2 : 0);
	}
}

typedef struct {
	const mfr_engine *g;
	mfr_block_fn block;
	void *ctx;
	int cross; /* 0: one set, pairs i < j; 1: p x q */
	const mfr_emb_set *p, *q;
	const float *np2, *nq2; /* squared norms (Euclidean) */
	const int64_t *run_lo, *run_hi; /* one set: the label run of each row */
	int64_t tile, tp, tq;           /* tiles along p and q */
	int64_t next, total;            /* the work queue: tile numbers */
	pthread_mutex_t lock;
	int failed;
	mfr_error err;
} job;

typedef struct {
	job *j;
	mfr_scores *out;
	float *buf;
	mfr_error e;
	int failed;
} worker;

/* Tile number t as (row tile, column tile): all of p x q, or the upper
 * triangle (bi <= bj) of one set. */
static void tile_at(const job *j, int64_t t, int64_t *bi, int64_t *bj)
{
	if (j->cross) {
		*bi = t / j->tq;
		*bj = t % j->tq;
		return;
	}
	int64_t r = 0, len = j->tp;
	while (t >= len) {
		t -= len;
		r++;
		len--;
	}
	*bi = r;
	*bj = r + t;
}

static int run_tile(worker *w, int64_t bi, int64_t bj)
{
	job *j = w->j;
	const mfr_emb_set *p = j->p, *q = j->q;
	int64_t i0 = bi * j->tile, j0 = bj * j->tile;
	int64_t ni = p->n - i0 < j->tile ? p->n - i0 : j->tile, nj = q->n - j0 < j->tile ? q->n - j0 : j->tile;
	if (j->block(j->ctx, p->vec + i0 * p->dim, ni, q->vec + j0 * q->dim, nj, p->dim, w->buf, nj, &w->e) < 0)
		return -1;
	int euclid = j->g->sim == MFR_SIM_EUCLIDEAN;
	for (int64_t r = 0; r < ni; r++) {
		int64_t i = i0 + r;
		float *row = w->buf + r * nj;
		int64_t c0 = 0;
		if (!j->cross && bi == bj)
			c0 = r + 1; /* the diagonal tile: j > i only */
		if (c0 >= nj)
			continue;
		if (euclid)
			to_euclid(row + c0, nj - c0, j->np2[i], j->nq2 + j0 + c0);
		if (!j->cross) {
			/* the genuine columns are the label run of row i */
			int64_t glo = j->run_lo[i] - j0, ghi = j->run_hi[i] - j0;
			glo = glo < c0 ? c0 : glo > nj ? nj : glo;
			ghi = ghi < glo ? glo : ghi > nj ? nj : ghi;
			if (add_imps(w->out, row + c0, glo - c0, &w->e) < 0)
				return -1;
			for (int64_t c = glo; c < ghi; c++)
				if (add_gen(w->out, row[c], &w->e) < 0)
					return -1;
			if (add_imps(w->out, row + ghi, nj - ghi, &w->e) < 0)
				return -1;
		} else {
			int32_t l = p->labels[i];
			uint64_t id = p->ids[i];
			for (int64_t c = c0; c < nj; c++) {
				if (q->ids[j0 + c] == id)
					continue;
				int r_ = l >= 0 && q->labels[j0 + c] == l ? add_gen(w->out, row[c], &w->e)
									   : add_imp(w->out, row[c], &w->e);
				if (r_ < 0)
					return -1;
			}
		}
	}
	return 0;
}

static void *work(void *arg)
{
	worker *w = arg;
	job *j = w->j;
	mfr_gemm_set_threads(1); /* parallel over tiles, one GEMM thread each */
	for (;;) {
		pthread_mutex_lock(&j->lock);
		int64_t t = j->failed ? j->total : j->next++;
		pthread_mutex_unlock(&j->lock);
		if (t >= j->total)
			break;
		int64_t bi, bj;
		tile_at(j, t, &bi, &bj);
		if (run_tile(w, bi, bj) < 0) {
			pthread_mutex_lock(&j->lock);
			if (!j->failed)
				j->err = w->e;
			j->failed = 1;
			pthread_mutex_unlock(&j->lock);
			break;
		}
	}
	return NULL;
}

/* Runs the job's tiles on g->threads workers, each into its own collector,
 * then merges them into out in worker order. */
static int run_job(job *j, mfr_scores *out, mfr_error *e)
{
	int nt = j->g->threads > 0 ? j->g->threads : 1;
	if (nt > j->total)
		nt = j->total > 0 ? (int)j->total : 1;
	if (nt > 256)
		nt = 256;
	worker *w = calloc((size_t)nt, sizeof *w);
	pthread_t *th = calloc((size_t)nt, sizeof *th);
	int *started = calloc((size_t)nt, sizeof *started);
	int rc = 0, bound = 0; /* bound: the producer holds the operands (mfr_bind_fn) */
	if (!w || !th || !started) {
		rc = mfr_fail(e, "out of memory");
		goto done;
	}
	pthread_mutex_init(&j->lock, NULL);
	for (int k = 0; k < nt; k++) {
		w[k].j = j;
		w[k].out = mfr_scores_new(out->keep, out->lo, out->hi, e);
		w[k].buf = malloc((size_t)j->tile * (size_t)j->tile * sizeof *w[k].buf);
		if (!w[k].out || !w[k].buf) {
			rc = mfr_fail(e, "out of memory for %d workers' blocks of %lld x %lld", nt, (long long)j->tile,
				      (long long)j->tile);
			goto done;
		}
	}
	if (j->g->bind) {
		if (j->g->bind(j->ctx, j->p->vec, j->p->n, j->q->vec, j->q->n, j->p->dim, e) < 0) {
			rc = -1;
			pthread_mutex_destroy(&j->lock);
			goto done;
		}
		bound = 1;
	}
	int saved = mfr_gemm_threads();
	for (int k = 1; k < nt; k++)
		started[k] = pthread_create(&th[k], NULL, work, &w[k]) == 0;
	work(&w[0]);
	for (int k = 1; k < nt; k++)
		if (started[k])
			pthread_join(th[k], NULL);
	mfr_gemm_set_threads(saved);
	/* a worker that could not start: its share was taken by the others */
	pthread_mutex_destroy(&j->lock);
	if (j->failed) {
		*e = j->err;
		rc = -1;
		goto done;
	}
	for (int k = 0; k < nt && rc == 0; k++)
		rc = mfr_scores_merge(out, w[k].out, e);
done:
	if (bound) {
		mfr_error ignored;
		j->g->bind(j->ctx, NULL, 0, NULL, 0, 0, &ignored);
	}
	for (int k = 0; w && k < nt; k++) {
		mfr_scores_free(w[k].out);
		free(w[k].buf);
	}
	free(w);
	free(th);
	free(started);
	return rc;
}

static int64_t tile_of(const mfr_engine *g) { return g->tile > 0 ? g->tile : 2048; }

int mfr_score_all(const mfr_engine *g, mfr_emb_set *s, mfr_scores *out, mfr_error *e)
{
	for (int64_t i = 0; i < s->n; i++)
		if (s->labels[i] < 0)
			return mfr_fail(e, "id %llu has no label (-1): all-vs-all needs every record's identity",
					(unsigned long long)s->ids[i]);
	if (s->n < 2)
		return 0;
	/* sort by (label, id) so each label's genuine pairs are one run */
	lid *o = label_order(s, e);
	mfr_emb_set t;
	if (!o || set_alloc(&t, s->n, s->dim, e) < 0) {
		free(o);
		return -1;
	}
	for (int64_t k = 0; k < s->n; k++) {
		int64_t i = o[k].i;
		memcpy(t.vec + k * s->dim, s->vec + i * s->dim, (size_t)s->dim * sizeof *s->vec);
		t.ids[k] = s->ids[i];
		t.labels[k] = s->labels[i];
		t.flags[k] = s->flags[i];
	}
	free(o);
	mfr_emb_set_free(s);
	*s = t;
	int64_t *lo = mfr_malloc((size_t)s->n * sizeof *lo, e), *hi = mfr_malloc((size_t)s->n * sizeof *hi, e);
	float *n2 = mfr_malloc((size_t)s->n * sizeof *n2, e);
	int rc = -1;
	if (!lo || !hi || !n2)
		goto done;
	for (int64_t k = 0; k < s->n;) {
		int64_t end = k;
		while (end < s->n && s->labels[end] == s->labels[k])
			end++;
		for (int64_t q = k; q < end; q++)
			lo[q] = k, hi[q] = end;
		k = end;
	}
	for (int64_t k = 0; k < s->n; k++)
		n2[k] = (float)norm2(s->vec + k * s->dim, s->dim);
	job j = {.g = g, .block = g->block ? g->block : mfr_block_gemm, .ctx = g->block_ctx, .p = s, .q = s,
		 .np2 = n2, .nq2 = n2, .run_lo = lo, .run_hi = hi, .tile = tile_of(g)};
	j.tp = j.tq = (s->n + j.tile - 1) / j.tile;
	j.total = j.tp * (j.tp + 1) / 2;
	rc = run_job(&j, out, e);
done:
	free(lo);
	free(hi);
	free(n2);
	return rc;
}

int mfr_score_cross(const mfr_engine *g, const mfr_emb_set *p, const mfr_emb_set *q, mfr_scores *out,
		    mfr_error *e)
{
	if (p->dim != q->dim)
		return mfr_fail(e, "the probes have dimension %d, the gallery %d", p->dim, q->dim);
	if (p->n == 0 || q->n == 0)
		return 0;
	float *np2 = mfr_malloc((size_t)p->n * sizeof *np2, e), *nq2 = mfr_malloc((size_t)q->n * sizeof *nq2, e);
	int rc = -1;
	if (np2 && nq2) {
		for (int64_t k = 0; k < p->n; k++)
			np2[k] = (float)norm2(p->vec + k * p->dim, p->dim);
		for (int64_t k = 0; k < q->n; k++)
			nq2[k] = (float)norm2(q->vec + k * q->dim, q->dim);
		job j = {.g = g, .block = g->block ? g->block : mfr_block_gemm, .ctx = g->block_ctx, .cross = 1,
			 .p = p, .q = q, .np2 = np2, .nq2 = nq2, .tile = tile_of(g)};
		j.tp = (p->n + j.tile - 1) / j.tile;
		j.tq = (q->n + j.tile - 1) / j.tile;
		j.total = j.tp * j.tq;
		rc = run_job(&j, out, e);
	}
	free(np2);
	free(nq2);
	return rc;
}

/* ---- identification ---- */

typedef struct {
	const mfr_engine *g;
	mfr_block_fn block;
	void *ctx;
	const mfr_emb_set *p, *q;
	const float *np2, *nq2;
	const int32_t *glab; /* distinct gallery labels, ascending */
	int64_t nl;
	const int64_t *col_label; /* gallery row -> index in glab */
	int64_t rows;             /* probes per block */
	int64_t next, total;
	pthread_mutex_t lock;
	mfr_ident *r;
	int failed;
	mfr_error err;
} ijob;

static int64_t find_label(const int32_t *v, int64_t n, int32_t l)
{
	int64_t lo = 0, hi = n;
	while (lo < hi) {
		int64_t m = lo + (hi - lo) / 2;
		if (v[m] < l)
			lo = m + 1;
		else
			hi = m;
	}
	return lo < n && v[lo] == l ? lo : -1;
}

static int ident_block(ijob *j, int64_t b, float *buf, float *best, mfr_error *e)
{
	const mfr_emb_set *p = j->p, *q = j->q;
	int64_t i0 = b * j->rows, ni = p->n - i0 < j->rows ? p->n - i0 : j->rows;
	if (j->block(j->ctx, p->vec + i0 * p->dim, ni, q->vec, q->n, p->dim, buf, q->n, e) < 0)
		return -1;
	for (int64_t r = 0; r < ni; r++) {
		int64_t i = i0 + r;
		float *row = buf + r * q->n, *bl = best + r * j->nl;
		if (j->g->sim == MFR_SIM_EUCLIDEAN)
			to_euclid(row, q->n, j->np2[i], j->nq2);
		for (int64_t l = 0; l < j->nl; l++)
			bl[l] = -INFINITY;
		for (int64_t c = 0; c < q->n; c++)
			if (row[c] > bl[j->col_label[c]])
				bl[j->col_label[c]] = row[c];
		int64_t m = p->labels[i] >= 0 ? find_label(j->glab, j->nl, p->labels[i]) : -1;
		float top = -INFINITY;
		for (int64_t l = 0; l < j->nl; l++)
			if (bl[l] > top)
				top = bl[l];
		j->r->top[i] = top;
		if (m < 0) {
			j->r->rank[i] = 0;
			j->r->mated[i] = 0;
			continue;
		}
		float ms = bl[m];
		int32_t rank = 1;
		for (int64_t l = 0; l < j->nl; l++)
			if (l != m && bl[l] >= ms)
				rank++;
		j->r->rank[i] = rank;
		j->r->mated[i] = ms;
	}
	return 0;
}

static void *iwork(void *arg)
{
	ijob *j = arg;
	mfr_error e = {{0}};
	mfr_gemm_set_threads(1);
	float *buf = malloc((size_t)j->rows * (size_t)j->q->n * sizeof *buf);
	float *best = malloc((size_t)j->rows * (size_t)j->nl * sizeof *best);
	int bad = !buf || !best;
	if (bad)
		mfr_fail(&e, "out of memory for identification blocks");
	for (;;) {
		pthread_mutex_lock(&j->lock);
		if (bad && !j->failed) {
			j->failed = 1;
			j->err = e;
		}
		int64_t t = j->failed ? j->total : j->next++;
		pthread_mutex_unlock(&j->lock);
		if (t >= j->total)
			break;
		bad = ident_block(j, t, buf, best, &e) < 0;
	}
	free(buf);
	free(best);
	return NULL;
}

int mfr_identify(const mfr_engine *g, const mfr_emb_set *probe, const mfr_emb_set *gallery, mfr_ident *r,
		 mfr_error *e)
{
	*r = (mfr_ident){0};
	if (probe->dim != gallery->dim)
		return mfr_fail(e, "the probes have dimension %d, the gallery %d", probe->dim, gallery->dim);
	if (gallery->n == 0)
		return mfr_fail(e, "the gallery is empty");
	int rc = -1;
	int64_t n = probe->n > 0 ? probe->n : 1;
	r->n = probe->n;
	r->rank = mfr_malloc((size_t)n * sizeof *r->rank, e);
	r->mated = mfr_malloc((size_t)n * sizeof *r->mated, e);
	r->top = mfr_malloc((size_t)n * sizeof *r->top, e);
	int32_t *glab = mfr_malloc((size_t)gallery->n * sizeof *glab, e);
	int64_t *col = mfr_malloc((size_t)gallery->n * sizeof *col, e);
	float *np2 = mfr_malloc((size_t)n * sizeof *np2, e), *nq2 = mfr_malloc((size_t)gallery->n * sizeof *nq2, e);
	if (!r->rank || !r->mated || !r->top || !glab || !col || !np2 || !nq2)
		goto done;
	memcpy(glab, gallery->labels, (size_t)gallery->n * sizeof *glab);
	qsort(glab, (size_t)gallery->n, sizeof *glab, cmp_i32);
	int64_t nl = 0;
	for (int64_t k = 0; k < gallery->n; k++)
		if (glab[k] >= 0 && (nl == 0 || glab[k] != glab[nl - 1]))
			glab[nl++] = glab[k];
	if (nl == 0) {
		mfr_fail(e, "the gallery has no labelled records");
		goto done;
	}
	for (int64_t k = 0; k < gallery->n; k++) {
		int64_t li = gallery->labels[k] >= 0 ? find_label(glab, nl, gallery->labels[k]) : -1;
		if (li < 0) {
			mfr_fail(e, "gallery id %llu has no label (-1)", (unsigned long long)gallery->ids[k]);
			goto done;
		}
		col[k] = li;
	}
	for (int64_t k = 0; k < probe->n; k++)
		np2[k] = (float)norm2(probe->vec + k * probe->dim, probe->dim);
	for (int64_t k = 0; k < gallery->n; k++)
		nq2[k] = (float)norm2(gallery->vec + k * gallery->dim, gallery->dim);
	/* probes per block: the block (rows x gallery) and the per-label best
	 * (rows x labels) stay near 64 MiB each */
	int64_t wide = gallery->n > nl ? gallery->n : nl, rows = ((int64_t)1 << 24) / wide;
	rows = rows < 1 ? 1 : rows > tile_of(g) ? tile_of(g) : rows;
	ijob j = {.g = g, .block = g->block ? g->block : mfr_block_gemm, .ctx = g->block_ctx, .p = probe,
		  .q = gallery, .np2 = np2, .nq2 = nq2, .glab = glab, .nl = nl, .col_label = col, .rows = rows,
		  .r = r};
	j.total = (probe->n + rows - 1) / rows;
	pthread_mutex_init(&j.lock, NULL);
	int nt = g->threads > 0 ? g->threads : 1;
	if (nt > j.total)
		nt = j.total > 0 ? (int)j.total : 1;
	if (nt > 256)
		nt = 256;
	pthread_t th[256];
	int started[256] = {0};
	if (g->bind && g->bind(j.ctx, probe->vec, probe->n, gallery->vec, gallery->n, probe->dim, e) < 0) {
		pthread_mutex_destroy(&j.lock);
		goto done;
	}
	int saved = mfr_gemm_threads();
	for (int k = 1; k < nt; k++)
		started[k] = pthread_create(&th[k], NULL, iwork, &j) == 0;
	iwork(&j);
	for (int k = 1; k < nt; k++)
		if (started[k])
			pthread_join(th[k], NULL);
	mfr_gemm_set_threads(saved);
	pthread_mutex_destroy(&j.lock);
	if (g->bind) {
		mfr_error ignored;
		g->bind(j.ctx, NULL, 0, NULL, 0, 0, &ignored);
	}
	if (j.failed)
		*e = j.err;
	else
		rc = 0;
done:
	free(glab);
	free(col);
	free(np2);
	free(nq2);
	if (rc < 0)
		mfr_ident_free(r);
	return rc;
}

void mfr_ident_free(mfr_ident *r)
{
	free(r->rank);
	free(r->mated);
	free(r->top);
	*r = (mfr_ident){0};
}

double mfr_ident_rank(const mfr_ident *r, int k)
{
	int64_t mated = 0, hit = 0;
	for (int64_t i = 0; i < r->n; i++)
		if (r->rank[i] > 0) {
			mated++;
			hit += r->rank[i] <= k;
		}
	return mated ? (double)hit / (double)mated : NAN;
}

double mfr_ident_tpir(const mfr_ident *r, double x, double *threshold, mfr_how *how)
{
	int64_t nm = 0, m = 0;
	for (int64_t i = 0; i < r->n; i++)
		r->rank[i] ? m++ : nm++;
	*threshold = NAN;
	if (!nm || !m) {
		*how = MFR_EMPTY;
		return NAN;
	}
	uint64_t a = allowed(x, (uint64_t)nm);
	if (a == 0) {
		*how = MFR_UNREACHABLE;
		return NAN;
	}
	*how = MFR_EXACT;
	float *v = malloc((size_t)nm * sizeof *v);
	if (!v) {
		*how = MFR_EMPTY;
		return NAN;
	}
	int64_t k = 0;
	for (int64_t i = 0; i < r->n; i++)
		if (!r->rank[i])
			v[k++] = r->top[i];
	qsort(v, (size_t)nm, sizeof *v, cmp_desc);
	double t = a >= (uint64_t)nm ? -INFINITY : v[a];
	free(v);
	int64_t hit = 0;
	for (int64_t i = 0; i < r->n; i++)
		if (r->rank[i] == 1 && r->mated[i] > t)
			hit++;
	*threshold = t;
	return (double)hit / (double)m;
}

/* ---- k-fold accuracy ---- */

void mfr_kfold_assign(size_t n, int k, int *fold)
{
	size_t base = n / (size_t)k, extra = n % (size_t)k, i = 0;
	for (int f = 0; f < k; f++)
		for (size_t c = 0; c < base + ((size_t)f < extra); c++)
			fold[i++] = f;
}

typedef struct {
	float s;
	uint8_t same;
} spair;

static int cmp_spair(const void *a, const void *b) { return cmp_asc(&((const spair *)a)->s, &((const spair *)b)->s); }

int mfr_kfold_accuracy(const float *score, const uint8_t *same, const int *fold, size_t n, int k, double *acc,
		       double *thr, mfr_error *e)
{
	spair *v = mfr_malloc((n ? n : 1) * sizeof *v, e);
	if (!v)
		return -1;
	for (int f = 0; f < k; f++) {
		size_t m = 0, nsame = 0, ntest = 0;
		for (size_t i = 0; i < n; i++)
			if (fold[i] != f) {
				v[m++] = (spair){score[i], same[i]};
				nsame += same[i];
			} else
				ntest++;
		if (!m || !ntest) {
			free(v);
			return mfr_fail(e, "fold %d of %d: %s", f + 1, k, ntest ? "no pairs outside it" : "empty");
		}
		qsort(v, m, sizeof *v, cmp_spair);
		/* threshold below everything: all accepted, the same pairs right;
		 * raising it past each group of equal scores rejects the group */
		size_t correct = nsame, best = correct;
		double bt = (double)v[0].s - 1.0;
		for (size_t i = 0; i < m;) {
			size_t end = i;
			while (end < m && v[end].s == v[i].s) {
				correct += v[end].same ? (size_t)0 : 1;
				correct -= v[end].same ? 1 : 0;
				end++;
			}
			double t = end < m ? ((double)v[i].s + (double)v[end].s) / 2 : (double)v[i].s + 1.0;
			if (correct >= best) {
				best = correct;
				bt = t;
			}
			i = end;
		}
		size_t right = 0;
		for (size_t i = 0; i < n; i++)
			if (fold[i] == f)
				right += same[i] ? score[i] > bt : !(score[i] > bt);
		acc[f] = (double)right / (double)ntest;
		thr[f] = bt;
	}
	free(v);
	return 0;
}

/* ---- text inputs ---- */

/* Splits the line [p, end) in place-free fashion: up to max fields separated
 * by runs of tabs and spaces (tabs only when tabs_only), CR at the end
 * ignored. Returns the number of fields (max + 1 when there are more). */
static int split(const char *p, const char *end, int tabs_only, const char **f, int *len, int max)
{
	while (end > p && end[-1] == '\r')
		end--;
	int n = 0;
	while (p < end) {
		if (!tabs_only)
			while (p < end && (*p == ' ' || *p == '\t'))
				p++;
		if (p >= end)
			break;
		const char *s = p;
		while (p < end && *p != '\t' && (tabs_only || *p != ' '))
			p++;
		if (n == max)
			return max + 1;
		f[n] = s;
		len[n] = (int)(p - s);
		n++;
		if (tabs_only && p < end)
			p++; /* one tab: an empty field stays a field */
	}
	return n;
}

/* A decimal number in [0, max] spelled by the whole field. */
static int field_u64(const char *f, int len, uint64_t max, uint64_t *v)
{
	if (len < 1 || len > 20)
		return -1;
	uint64_t x = 0;
	for (int i = 0; i < len; i++) {
		if (f[i] < '0' || f[i] > '9')
			return -1;
		unsigned d = (unsigned)(f[i] - '0');
		if (x > (UINT64_MAX - d) / 10)
			return -1;
		x = x * 10 + d;
	}
	if (x > max)
		return -1;
	*v = x;
	return 0;
}

/* Iterates lines: *p at a line start; returns its end (the '\n' or end). */
static const char *line_end(const char *p, const char *end)
{
	const char *nl = memchr(p, '\n', (size_t)(end - p));
	return nl ? nl : end;
}

void mfr_pairs_free(mfr_pairs *p)
{
	free(p->a);
	free(p->b);
	free(p->same);
	*p = (mfr_pairs){0};
}

int mfr_pairs_parse(const char *text, size_t len, const char *name, mfr_pairs *p, mfr_error *e)
{
	*p = (mfr_pairs){0};
	size_t room = 0;
	const char *s = text, *end = text + len;
	uint64_t lineno = 0;
	int first = 1;
	while (s < end) {
		const char *le = line_end(s, end);
		lineno++;
		const char *f[4];
		int fl[4];
		int nf = *s == '#' ? 0 : split(s, le, 0, f, fl, 3);
		uint64_t a, b, same;
		if (nf == 0) {
			/* blank line or comment */
		} else if (nf == 3 && field_u64(f[0], fl[0], UINT64_MAX, &a) == 0 &&
			   field_u64(f[1], fl[1], UINT64_MAX, &b) == 0 && field_u64(f[2], fl[2], 1, &same) == 0) {
			if (p->n == room) {
				room = room ? room * 2 : 1024;
				uint64_t *na = mfr_realloc(p->a, room * sizeof *na, e);
				if (na)
					p->a = na;
				uint64_t *nb = na ? mfr_realloc(p->b, room * sizeof *nb, e) : NULL;
				if (nb)
					p->b = nb;
				uint8_t *ns = nb ? mfr_realloc(p->same, room, e) : NULL;
				if (!ns) {
					mfr_pairs_free(p);
					return -1;
				}
				p->same = ns;
			}
			p->a[p->n] = a;
			p->b[p->n] = b;
			p->same[p->n] = (uint8_t)same;
			p->n++;
		} else if (first && nf == 3 && !(*f[0] >= '0' && *f[0] <= '9')) {
			/* a header row (id_a id_b same) */
		} else {
			mfr_pairs_free(p);
			return mfr_fail(e, "'%s': line %llu at byte %zu: expected 'id_a id_b same' (two sample ids and 0 or 1)",
					name, (unsigned long long)lineno, (size_t)(s - text));
		}
		if (nf)
			first = 0;
		s = le < end ? le + 1 : end;
	}
	if (!p->n)
		return mfr_fail(e, "'%s': no pairs", name);
	return 0;
}

void mfr_lfw_pairs_free(mfr_lfw_pairs *p)
{
	for (size_t i = 0; i < p->n; i++) {
		free(p->name_a[i]);
		free(p->name_b[i]);
	}
	free(p->name_a);
	free(p->name_b);
	free(p->num_a);
	free(p->num_b);
	free(p->fold);
	free(p->same);
	*p = (mfr_lfw_pairs){0};
}

/* Names hold no control characters (NUL included): a name is text. */
static int has_ctl(const char *f, int len)
{
	for (int i = 0; i < len; i++)
		if ((unsigned char)f[i] < 0x20 || f[i] == 0x7f)
			return 1;
	return 0;
}

static char *dup_field(const char *f, int len, mfr_error *e)
{
	char *d = mfr_malloc((size_t)len + 1, e);
	if (d) {
		memcpy(d, f, (size_t)len);
		d[len] = 0;
	}
	return d;
}

int mfr_lfw_pairs_parse(const char *text, size_t len, const char *name, mfr_lfw_pairs *p, mfr_error *e)
{
	*p = (mfr_lfw_pairs){0};
	const char *s = text, *end = text + len;
	uint64_t lineno = 0, sets = 0, per = 0;
	size_t want = 0;
	while (s < end) {
		const char *le = line_end(s, end);
		lineno++;
		const char *f[5];
		int fl[5];
		int nf = split(s, le, 0, f, fl, 4);
		size_t at = (size_t)(s - text);
		s = le < end ? le + 1 : end;
		if (nf == 0)
			continue;
		if (!want) {
			/* pairs.txt: "10 300"; pairsDevTrain/Test.txt: "1100" (one set) */
			int ok = (nf == 2 && field_u64(f[0], fl[0], 1000, &sets) == 0 && field_u64(f[1], fl[1], 1000000, &per) == 0) ||
				 (nf == 1 && field_u64(f[0], fl[0], 1000000, &per) == 0 && (sets = 1));
			if (!ok || sets < 1 || per < 1) {
				mfr_lfw_pairs_free(p);
				return mfr_fail(e, "'%s': line 1: expected 'SETS PAIRS' (LFW's pairs.txt header, e.g. '10 300')", name);
			}
			want = (size_t)(2 * sets * per);
			p->name_a = mfr_malloc(want * sizeof *p->name_a, e);
			p->name_b = mfr_malloc(want * sizeof *p->name_b, e);
			p->num_a = mfr_malloc(want * sizeof *p->num_a, e);
			p->num_b = mfr_malloc(want * sizeof *p->num_b, e);
			p->fold = mfr_malloc(want * sizeof *p->fold, e);
			p->same = mfr_malloc(want, e);
			if (!p->name_a || !p->name_b || !p->num_a || !p->num_b || !p->fold || !p->same) {
				mfr_lfw_pairs_free(p);
				return -1;
			}
			p->sets = (int)sets;
			continue;
		}
		if (p->n == want) {
			mfr_lfw_pairs_free(p);
			return mfr_fail(e, "'%s': line %llu at byte %zu: more pairs than the header's %zu", name,
					(unsigned long long)lineno, at, want);
		}
		/* within each set: per same-person lines, then per different-person lines */
		size_t k = p->n;
		int same = (k % (2 * per)) < per;
		uint64_t na, nb;
		int ok = same ? nf == 3 && field_u64(f[1], fl[1], 1000000, &na) == 0 &&
					field_u64(f[2], fl[2], 1000000, &nb) == 0
			      : nf == 4 && field_u64(f[1], fl[1], 1000000, &na) == 0 &&
					field_u64(f[3], fl[3], 1000000, &nb) == 0;
		if (ok && (has_ctl(f[0], fl[0]) || (!same && has_ctl(f[2], fl[2])))) {
			mfr_lfw_pairs_free(p);
			return mfr_fail(e, "'%s': line %llu at byte %zu: a control character in a name", name,
					(unsigned long long)lineno, at);
		}
		if (!ok || na < 1 || nb < 1) {
			mfr_lfw_pairs_free(p);
			return mfr_fail(e, "'%s': line %llu at byte %zu: expected %s (pair %zu of set %zu is a %s pair)", name,
					(unsigned long long)lineno, at, same ? "'name n1 n2'" : "'name1 n1 name2 n2'",
					k % (2 * per) + 1, k / (2 * per) + 1, same ? "same-person" : "different-person");
		}
		p->name_a[k] = dup_field(f[0], fl[0], e);
		p->name_b[k] = same ? dup_field(f[0], fl[0], e) : dup_field(f[2], fl[2], e);
		p->n++;
		if (!p->name_a[k] || !p->name_b[k]) {
			mfr_lfw_pairs_free(p);
			return -1;
		}
		p->num_a[k] = (int)na;
		p->num_b[k] = (int)nb;
		p->same[k] = (uint8_t)same;
		p->fold[k] = (int)(k / (2 * per));
	}
	if (!want || p->n != want) {
		size_t got = p->n;
		mfr_lfw_pairs_free(p);
		if (!want)
			return mfr_fail(e, "'%s': empty (expected LFW's pairs.txt)", name);
		return mfr_fail(e, "'%s': %zu pairs, the header promises %zu (truncated?)", name, got, want);
	}
	return 0;
}

void mfr_label_map_free(mfr_label_map *m)
{
	for (size_t i = 0; i < m->n; i++)
		free(m->name[i]);
	free(m->label);
	free(m->name);
	free(m->count);
	*m = (mfr_label_map){0};
}

int mfr_label_map_parse(const char *text, size_t len, const char *name, mfr_label_map *m, mfr_error *e)
{
	*m = (mfr_label_map){0};
	size_t room = 0;
	const char *s = text, *end = text + len;
	uint64_t lineno = 0;
	int first = 1;
	while (s < end) {
		const char *le = line_end(s, end);
		lineno++;
		const char *f[4];
		int fl[4];
		size_t at = (size_t)(s - text);
		int blank = le == s || *s == '#';
		int nf = blank ? 0 : split(s, le, 1, f, fl, 3);
		s = le < end ? le + 1 : end;
		if (blank)
			continue;
		uint64_t lab, cnt;
		if (nf == 3 && field_u64(f[0], fl[0], INT32_MAX, &lab) == 0 && fl[1] > 0 && !has_ctl(f[1], fl[1]) &&
		    field_u64(f[2], fl[2], UINT64_MAX, &cnt) == 0) {
			if (m->n == room) {
				room = room ? room * 2 : 1024;
				int32_t *l = mfr_realloc(m->label, room * sizeof *l, e);
				if (l)
					m->label = l;
				char **nm = l ? mfr_realloc(m->name, room * sizeof *nm, e) : NULL;
				if (nm)
					m->name = nm;
				uint64_t *c = nm ? mfr_realloc(m->count, room * sizeof *c, e) : NULL;
				if (!c) {
					mfr_label_map_free(m);
					return -1;
				}
				m->count = c;
			}
			if (!(m->name[m->n] = dup_field(f[1], fl[1], e))) {
				mfr_label_map_free(m);
				return -1;
			}
			m->label[m->n] = (int32_t)lab;
			m->count[m->n] = cnt;
			m->n++;
		} else if (!(first && nf == 3 && !(*f[0] >= '0' && *f[0] <= '9'))) {
			mfr_label_map_free(m);
			return mfr_fail(e, "'%s': line %llu at byte %zu: expected 'label<TAB>name<TAB>count' (mfr-pack -l)", name,
					(unsigned long long)lineno, at);
		}
		first = 0;
	}
	if (!m->n)
		return mfr_fail(e, "'%s': no labels", name);
	return 0;
}
