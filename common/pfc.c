/* pfc.c — the sharded margin-softmax classifier with Partial FC (see pfc.h).
 *
 * Buffers are sized once, for the most columns a step can sample:
 * min(local classes, ceil(rate x local) + max_batch), since the positives of
 * a batch number at most its rows. Softmax sums are kept in double.
 */
#include "pfc.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "layers_spatial.h" /* defines: linear_forward, linear_backward (reference) */
#ifndef MFR_REAL_DOUBLE
#include "dnnl_cpu.h" /* defines: mfr_linear_forward_cpu, mfr_linear_backward_cpu */
#define REAL_DTYPE MFR_F32
#else
#define REAL_DTYPE MFR_F64
#endif

#define NORM_EPS 1e-12

struct MFR_PFC_T {
	int64_t classes, c0, c1, nl; /* shard [c0, c1), nl = c1 - c0 rows */
	int d, max_batch;
	double rate;
	int64_t cap;          /* most columns a step samples */
	mfr_real *w, *mom;    /* nl x d each */
	int64_t *sampled;     /* nsamp local indices, ascending */
	int64_t nsamp;
	int64_t *col;         /* nl: column of a local class in this step, or -1 */
	uint64_t *keys;       /* nl: selection scratch */
	uint8_t *pos;         /* nl: positive in this step */
	mfr_real *wn, *wnorm; /* cap x d normalised sampled rows, their norms */
	mfr_real *grad;       /* cap x d: dLoss/d(sampled rows) */
	mfr_real *z;          /* max_batch x cap logits, then their gradients */
	mfr_real *fn, *fnorm, *dfn;
	int64_t *tcol;        /* max_batch: target column on this rank or -1 */
	double *red;          /* max_batch x 2 reduction buffer */
};

static void *zalloc(size_t n, size_t size, mfr_error *e)
{
	void *p = calloc(n ? n : 1, size);
	if (!p)
		mfr_fail(e, "out of memory (%zu x %zu bytes for the classifier)", n, size);
	return p;
}

MFR_PFC_T *MFR_PFC(new)(int64_t classes, int d, double rate, int max_batch, int rank, int size, mfr_error *e)
{
	if (classes < 1 || d < 1 || max_batch < 1 || !(rate > 0 && rate <= 1) || size < 1 || rank < 0 || rank >= size) {
		mfr_fail(e, "classifier: bad sizes (classes %lld, dimension %d, rate %g, batch %d)", (long long)classes, d,
			 rate, max_batch);
		return NULL;
	}
	MFR_PFC_T *p = zalloc(1, sizeof *p, e);
	if (!p)
		return NULL;
	p->classes = classes, p->d = d, p->rate = rate, p->max_batch = max_batch;
	mfr_pfc_shard(classes, rank, size, &p->c0, &p->c1);
	p->nl = p->c1 - p->c0;
	int64_t want = (int64_t)ceil(rate * (double)p->nl) + max_batch;
	p->cap = want < p->nl ? want : p->nl;
	size_t nd = (size_t)p->nl * (size_t)d, cd = (size_t)p->cap * (size_t)d;
	if (!(p->w = zalloc(nd, sizeof *p->w, e)) || !(p->mom = zalloc(nd, sizeof *p->mom, e)) ||
	    !(p->sampled = zalloc((size_t)p->nl, sizeof *p->sampled, e)) ||
	    !(p->col = zalloc((size_t)p->nl, sizeof *p->col, e)) ||
	    !(p->keys = zalloc((size_t)p->nl, sizeof *p->keys, e)) || !(p->pos = zalloc((size_t)p->nl, 1, e)) ||
	    !(p->wn = zalloc(cd, sizeof *p->wn, e)) || !(p->wnorm = zalloc((size_t)p->cap, sizeof *p->wnorm, e)) ||
	    !(p->grad = zalloc(cd, sizeof *p->grad, e)) ||
	    !(p->z = zalloc((size_t)max_batch * (size_t)p->cap, sizeof *p->z, e)) ||
	    !(p->fn = zalloc((size_t)max_batch * d, sizeof *p->fn, e)) ||
	    !(p->fnorm = zalloc((size_t)max_batch, sizeof *p->fnorm, e)) ||
	    !(p->dfn = zalloc((size_t)max_batch * d, sizeof *p->dfn, e)) ||
	    !(p->tcol = zalloc((size_t)max_batch, sizeof *p->tcol, e)) ||
	    !(p->red = zalloc((size_t)max_batch * 2, sizeof *p->red, e))) {
		MFR_PFC(free)(p);
		return NULL;
	}
	for (int64_t j = 0; j < p->nl; j++)
		p->col[j] = -1;
	return p;
}

void MFR_PFC(free)(MFR_PFC_T *p)
{
	if (!p)
		return;
	free(p->w), free(p->mom), free(p->sampled), free(p->col), free(p->keys), free(p->pos);
	free(p->wn), free(p->wnorm), free(p->grad), free(p->z), free(p->fn), free(p->fnorm), free(p->dfn);
	free(p->tcol), free(p->red);
	free(p);
}

mfr_real *MFR_PFC(weights)(MFR_PFC_T *p) { return p->w; }
mfr_real *MFR_PFC(momentum)(MFR_PFC_T *p) { return p->mom; }
const mfr_real *MFR_PFC(grad)(const MFR_PFC_T *p) { return p->grad; }

void MFR_PFC(range)(const MFR_PFC_T *p, int64_t *c0, int64_t *c1)
{
	*c0 = p->c0;
	*c1 = p->c1;
}

const int64_t *MFR_PFC(sampled)(const MFR_PFC_T *p, int64_t *count)
{
	*count = p->nsamp;
	return p->sampled;
}

void MFR_PFC(init)(MFR_PFC_T *p, uint64_t seed)
{
	for (int64_t j = 0; j < p->nl; j++) {
		mfr_rng r = {mfr_hash2(seed, (uint64_t)(p->c0 + j))};
		for (int k = 0; k < p->d; k++)
			p->w[(size_t)j * p->d + k] = (mfr_real)(0.01 * mfr_rng_normal(&r));
	}
	memset(p->mom, 0, (size_t)p->nl * p->d * sizeof *p->mom);
}

/* The k-th smallest (0-based) of a[0..n), reordering a (Hoare selection). */
static uint64_t select_kth(uint64_t *a, int64_t n, int64_t k)
{
	int64_t lo = 0, hi = n - 1;
	while (lo < hi) {
		uint64_t piv = a[lo + (hi - lo) / 2];
		int64_t i = lo, j = hi;
		while (i <= j) {
			while (a[i] < piv)
				i++;
			while (a[j] > piv)
				j--;
			if (i <= j) {
				uint64_t t = a[i];
				a[i++] = a[j];
				a[j--] = t;
			}
		}
		if (k <= j)
			hi = j;
		else if (k >= i)
			lo = i;
		else
			return a[k];
	}
	return a[k];
}

int64_t MFR_PFC(choose)(int64_t classes, int64_t c0, int64_t nl, double rate, const int32_t *labels, int n,
			uint64_t step_seed, uint8_t *pos, uint64_t *keys, int64_t *sampled, mfr_error *e)
{
	for (int i = 0; i < n; i++) /* all checked first, so an error leaves pos clean */
		if (labels[i] < 0 || labels[i] >= classes)
			return mfr_fail(e, "label %d of row %d outside the %lld classes", labels[i], i, (long long)classes);
	int64_t npos = 0;
	for (int i = 0; i < n; i++) {
		int64_t l = labels[i] - c0;
		if (l >= 0 && l < nl && !pos[l]) {
			pos[l] = 1;
			npos++;
		}
	}
	int64_t quota = rate >= 1 ? nl : (int64_t)ceil(rate * (double)nl);
	int64_t need = quota > npos ? quota - npos : 0; /* negatives to draw */
	uint64_t kth = UINT64_MAX;
	if (need > 0 && need < nl - npos) {
		int64_t m = 0;
		for (int64_t j = 0; j < nl; j++)
			if (!pos[j])
				keys[m++] = mfr_hash2(step_seed, (uint64_t)(c0 + j));
		kth = select_kth(keys, m, need - 1);
	}
	int64_t taken = 0, count = 0;
	for (int64_t j = 0; j < nl; j++) {
		int keep = pos[j];
		if (!keep && taken < need && (kth == UINT64_MAX || mfr_hash2(step_seed, (uint64_t)(c0 + j)) <= kth)) {
			keep = 1;
			taken++;
		}
		if (keep)
			sampled[count++] = j;
		pos[j] = 0;
	}
	return count;
}

int64_t MFR_PFC(sample)(MFR_PFC_T *p, const int32_t *labels, int n, uint64_t step_seed, mfr_error *e)
{
	if (n < 1 || n > p->max_batch)
		return mfr_fail(e, "classifier: batch of %d rows, built for 1..%d", n, p->max_batch);
	for (int64_t j = 0; j < p->nsamp; j++) /* forget the last step's columns */
		p->col[p->sampled[j]] = -1;
	p->nsamp = 0;
	int64_t count = MFR_PFC(choose)(p->classes, p->c0, p->nl, p->rate, labels, n, step_seed, p->pos, p->keys,
					p->sampled, e);
	if (count < 0)
		return -1;
	for (int64_t k = 0; k < count; k++)
		p->col[p->sampled[k]] = k;
	p->nsamp = count;
	return count;
}

/* Target logit before the scale, and its derivative in the cosine. */
static double margin_target(const mfr_margin *m, double c, double *dt)
{
	if (m->m1 == 1 && m->m2 == 0) {
		*dt = 1;
		return c - m->m3;
	}
	c = c > 1 ? 1 : c < -1 ? -1 : c;
	double th = acos(c), u = m->m1 * th + m->m2;
	if (u > M_PI) {
		*dt = 1;
		return c - m->m3 - m->m2 * sin(m->m2);
	}
	double st = sqrt(1 - c * c);
	*dt = m->m1 * sin(u) / (st > 1e-6 ? st : 1e-6);
	return cos(u) - m->m3;
}

/* Row-wise L2 normalisation of x (rows x d) into y, norms into nrm. */
static void normalize_rows(mfr_real *y, mfr_real *nrm, const mfr_real *x, int64_t rows, int d)
{
	for (int64_t i = 0; i < rows; i++) {
		double s = 0;
		for (int k = 0; k < d; k++)
			s += (double)x[i * d + k] * x[i * d + k];
		double r = sqrt(s);
		if (r < NORM_EPS)
			r = NORM_EPS;
		nrm[i] = (mfr_real)r;
		for (int k = 0; k < d; k++)
			y[i * d + k] = (mfr_real)(x[i * d + k] / r);
	}
}

/* Back through y = x / |x|: dx = (dy - y (y . dy)) / |x|, written over dy. */
static void normalize_backward(mfr_real *dy, const mfr_real *y, const mfr_real *nrm, int64_t rows, int d)
{
	for (int64_t i = 0; i < rows; i++) {
		double dot = 0;
		for (int k = 0; k < d; k++)
			dot += (double)y[i * d + k] * dy[i * d + k];
		for (int k = 0; k < d; k++)
			dy[i * d + k] = (mfr_real)((dy[i * d + k] - y[i * d + k] * dot) / nrm[i]);
	}
}

static int gemm_logits(MFR_PFC_T *p, int n, mfr_error *e)
{
#ifdef MFR_REAL_DOUBLE
	(void)e;
	MFR_REF(linear_forward)(p->z, p->fn, p->wn, NULL, n, p->d, (int)p->nsamp);
	return 0;
#else
	return mfr_linear_forward_cpu(p->z, p->fn, p->wn, NULL, n, p->d, (int)p->nsamp, e);
#endif
}

static int gemm_back(MFR_PFC_T *p, int n, mfr_error *e)
{
	memset(p->dfn, 0, (size_t)n * p->d * sizeof *p->dfn);
	memset(p->grad, 0, (size_t)p->nsamp * p->d * sizeof *p->grad);
	if (p->nsamp == 0)
		return 0;
#ifdef MFR_REAL_DOUBLE
	(void)e;
	MFR_REF(linear_backward)(p->dfn, p->grad, NULL, p->z, p->fn, p->wn, n, p->d, (int)p->nsamp);
	return 0;
#else
	return mfr_linear_backward_cpu(p->dfn, p->grad, NULL, p->z, p->fn, p->wn, n, p->d, (int)p->nsamp, e);
#endif
}

int MFR_PFC(forward_backward)(MFR_PFC_T *p, mfr_comm *c, const mfr_real *feat, const int32_t *labels, int n,
			      const mfr_margin *m, double *loss, double *acc, mfr_real *dfeat, mfr_error *e)
{
	if (n < 1 || n > p->max_batch)
		return mfr_fail(e, "classifier: batch of %d rows, built for 1..%d", n, p->max_batch);
	int d = p->d;
	int64_t S = p->nsamp;
	normalize_rows(p->fn, p->fnorm, feat, n, d);
	for (int64_t j = 0; j < S; j++) {
		int64_t r = p->sampled[j];
		normalize_rows(p->wn + j * d, p->wnorm + j, p->w + r * d, 1, d);
	}
	if (S > 0 && gemm_logits(p, n, e))
		return -1;

	/* margins on the targets this rank owns; row maxima of logits and cosines */
	double *zmax = p->red, *cmax = p->red + n;
	for (int i = 0; i < n; i++) {
		mfr_real *z = p->z + (size_t)i * S;
		int64_t l = labels[i] - p->c0;
		p->tcol[i] = l >= 0 && l < p->nl ? p->col[l] : -1;
		double mc = -INFINITY, mz = -INFINITY;
		for (int64_t j = 0; j < S; j++) {
			double cj = z[j];
			if (cj > mc)
				mc = cj;
			double dt;
			double zj = m->s * (j == p->tcol[i] ? margin_target(m, cj, &dt) : cj);
			if (zj > mz)
				mz = zj;
		}
		zmax[i] = mz;
		cmax[i] = mc;
	}
	mfr_comm_allreduce(c, p->red, (size_t)2 * n, MFR_F64, MFR_MAX);

	/* exponentials (kept in z) and their sums; targets' raw cosines */
	double *sum = malloc((size_t)n * 3 * sizeof *sum);
	if (!sum)
		return mfr_fail(e, "out of memory");
	double *tcos = sum + n, *tl = sum + 2 * (size_t)n; /* tl: the target's logit - zmax, where it is here */
	for (int i = 0; i < n; i++) {
		mfr_real *z = p->z + (size_t)i * S;
		double s = 0;
		tcos[i] = 0;
		tl[i] = 0;
		for (int64_t j = 0; j < S; j++) {
			double cj = z[j], dt, zj = cj;
			if (j == p->tcol[i]) {
				tcos[i] = cj;
				zj = margin_target(m, cj, &dt);
				tl[i] = m->s * zj - zmax[i];
			}
			double ex = exp(m->s * zj - zmax[i]);
			s += ex;
			z[j] = (mfr_real)ex;
		}
		sum[i] = s;
	}
	mfr_comm_allreduce(c, sum, (size_t)n, MFR_F64, MFR_SUM);

	/* loss, accuracy and the gradient in the cosines, in place of z */
	double tot[2] = {0, 0};
	for (int i = 0; i < n; i++) {
		mfr_real *z = p->z + (size_t)i * S;
		for (int64_t j = 0; j < S; j++) {
			double pj = z[j] / sum[i], g = pj;
			if (j == p->tcol[i]) {
				double dt;
				margin_target(m, tcos[i], &dt);
				/* -log p = log(sum) - (logit - zmax): exact even where
				 * exp(logit - zmax) underflowed to 0 */
				tot[0] += log(sum[i]) - tl[i];
				tot[1] += tcos[i] >= cmax[i];
				g = (pj - 1) * dt;
			}
			z[j] = (mfr_real)(m->s * g / n);
		}
	}
	free(sum);
	mfr_comm_allreduce(c, tot, 2, MFR_F64, MFR_SUM);
	*loss = tot[0] / n;
	*acc = tot[1] / n;

	if (gemm_back(p, n, e))
		return -1;
	mfr_comm_allreduce(c, p->dfn, (size_t)n * d, REAL_DTYPE, MFR_SUM);
	normalize_backward(p->dfn, p->fn, p->fnorm, n, d);
	memcpy(dfeat, p->dfn, (size_t)n * d * sizeof *dfeat);
	normalize_backward(p->grad, p->wn, p->wnorm, S, d);
	return 0;
}

/* One row's update; g NULL for a row that was not sampled. */
static void sgd_row(mfr_real *w, mfr_real *v, const mfr_real *g, int d, double lr, double mu, double wd)
{
	for (int t = 0; t < d; t++) {
		mfr_real gt = (mfr_real)((g ? g[t] : 0) + wd * w[t]);
		v[t] = (mfr_real)(mu * v[t] + gt);
		w[t] = (mfr_real)(w[t] - lr * v[t]);
	}
}

void MFR_PFC(step)(MFR_PFC_T *p, double lr, double mu, double wd, int sparse)
{
	int d = p->d;
	if (sparse) {
		for (int64_t k = 0; k < p->nsamp; k++) {
			int64_t j = p->sampled[k];
			sgd_row(p->w + j * d, p->mom + j * d, p->grad + k * d, d, lr, mu, wd);
		}
		return;
	}
	for (int64_t j = 0; j < p->nl; j++) {
		int64_t k = p->col[j];
		sgd_row(p->w + j * d, p->mom + j * d, k >= 0 ? p->grad + k * d : NULL, d, lr, mu, wd);
	}
}
