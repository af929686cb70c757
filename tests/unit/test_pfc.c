/* test_pfc.c — the margin-softmax classifier (pfc.h) on one rank: loss and
 * gradients against central differences in float64 for CosFace, ArcFace,
 * combined margins and Partial FC subsets; the sharded code against a plain
 * dense softmax written here; the float build against the double one;
 * sampling (every positive kept, counts, determinism); sparse and dense
 * momentum. The same algorithm across ranks is tested through mfr-train
 * under mpirun (tests/bats/mfr-train.bats). */
#define MFR_REAL_DOUBLE
#include "pfc.h" /* defines: mfr_pfc64_* (real.h gives one mfr_real per file) */

#include "check.h"

/* the float build, declared by hand: pfc.h's prototypes with float */
typedef struct mfr_pfc mfr_pfc;
mfr_pfc *mfr_pfc_new(int64_t classes, int d, double rate, int max_batch, int rank, int size, mfr_error *e);
void mfr_pfc_free(mfr_pfc *p);
float *mfr_pfc_weights(mfr_pfc *p);
void mfr_pfc_init(mfr_pfc *p, uint64_t seed);
int64_t mfr_pfc_sample(mfr_pfc *p, const int32_t *labels, int n, uint64_t step_seed, mfr_error *e);
const int64_t *mfr_pfc_sampled(const mfr_pfc *p, int64_t *count);
int mfr_pfc_forward_backward(mfr_pfc *p, mfr_comm *c, const float *feat, const int32_t *labels, int n,
			     const mfr_margin *m, double *loss, double *acc, float *dfeat, mfr_error *e);
void mfr_pfc_step(mfr_pfc *p, double lr, double mu, double wd, int sparse);

static mfr_comm *comm;

/* The loss of p at the current weights for feat/labels (sampling again with seed). */
static double loss_at(mfr_pfc64 *p, const double *feat, const int32_t *lab, int n, const mfr_margin *m, uint64_t seed,
		      double *dfeat)
{
	mfr_error e = {{0}};
	double loss, acc;
	double *tmp = dfeat ? dfeat : malloc(sizeof(double) * 4096);
	if (mfr_pfc64_sample(p, lab, n, seed, &e) < 0 || mfr_pfc64_forward_backward(p, comm, feat, lab, n, m, &loss, &acc, tmp, &e))
		fprintf(stderr, "error: %s\n", e.msg), exit(1);
	if (!dfeat)
		free(tmp);
	return loss;
}

/* Central differences of every feature and every sampled weight entry. */
static void gradcheck(const char *what, int C, int d, int n, double rate, mfr_margin m)
{
	mfr_error e = {{0}};
	mfr_pfc64 *p = mfr_pfc64_new(C, d, rate, n, 0, 1, &e);
	CHECK(p != NULL);
	mfr_pfc64_init(p, 11);
	double *w = mfr_pfc64_weights(p);
	for (int i = 0; i < C * d; i++) /* rows of different norms: the normalisation matters */
		w[i] *= 1 + (i % 5);
	double feat[64 * 16], dfeat[64 * 16];
	int32_t lab[64];
	mfr_rng r = {77};
	for (int i = 0; i < n * d; i++)
		feat[i] = mfr_rng_normal(&r);
	for (int i = 0; i < n; i++)
		lab[i] = (int32_t)mfr_rng_below(&r, (uint64_t)C);
	loss_at(p, feat, lab, n, &m, 5, dfeat);
	int64_t S;
	const int64_t *smp = mfr_pfc64_sampled(p, &S);
	double *g = malloc(sizeof(double) * (size_t)(S * d));
	memcpy(g, mfr_pfc64_grad(p), sizeof(double) * (size_t)(S * d));
	int64_t sidx[64];
	memcpy(sidx, smp, sizeof(int64_t) * (size_t)S);
	const double eps = 1e-6;
	double worst = 0;
	for (int i = 0; i < n * d; i++) {
		double x = feat[i];
		feat[i] = x + eps;
		double lp = loss_at(p, feat, lab, n, &m, 5, NULL);
		feat[i] = x - eps;
		double lm = loss_at(p, feat, lab, n, &m, 5, NULL);
		feat[i] = x;
		double num = (lp - lm) / (2 * eps), err = fabs(num - dfeat[i]) / fmax(fmax(fabs(num), fabs(dfeat[i])), 1e-3);
		worst = fmax(worst, err);
	}
	for (int64_t k = 0; k < S; k++)
		for (int t = 0; t < d; t++) {
			double *x = &w[sidx[k] * d + t], x0 = *x;
			*x = x0 + eps;
			double lp = loss_at(p, feat, lab, n, &m, 5, NULL);
			*x = x0 - eps;
			double lm = loss_at(p, feat, lab, n, &m, 5, NULL);
			*x = x0;
			double num = (lp - lm) / (2 * eps), an = g[k * d + t];
			worst = fmax(worst, fabs(num - an) / fmax(fmax(fabs(num), fabs(an)), 1e-3));
		}
	if (!CHECK(worst < 1e-5))
		fprintf(stderr, "    %s: worst relative error %.3g\n", what, worst);
	else
		printf("ok gradcheck %s (S=%lld, worst %.2g)\n", what, (long long)S, worst);
	free(g);
	mfr_pfc64_free(p);
}

/* A plain dense softmax with the CosFace margin over all C classes: the
 * loss and feature gradient the sharded code must equal at rate 1. */
static double dense_cosface(const double *feat, const double *w, const int32_t *lab, int n, int C, int d, double s,
			    double m3, double *dfeat)
{
	double loss = 0, h = 1e-6;
	for (int i = 0; i < n; i++) {
		for (int pass = -1; pass < 2 * d; pass++) { /* pass -1: loss; then +-h for each of d features */
			double f[64];
			memcpy(f, feat + i * d, sizeof(double) * d);
			if (pass >= 0)
				f[pass / 2] += pass % 2 ? -h : h;
			double fn = 0;
			for (int k = 0; k < d; k++)
				fn += f[k] * f[k];
			fn = sqrt(fn);
			double z[64], mx = -1e300, sum = 0;
			for (int c = 0; c < C; c++) {
				double wn = 0, dot = 0;
				for (int k = 0; k < d; k++)
					wn += w[c * d + k] * w[c * d + k], dot += w[c * d + k] * f[k];
				z[c] = s * (dot / (fn * sqrt(wn)) - (c == lab[i] ? m3 : 0));
				mx = fmax(mx, z[c]);
			}
			for (int c = 0; c < C; c++)
				sum += exp(z[c] - mx);
			double li = (log(sum) + mx - z[lab[i]]) / n;
			if (pass < 0)
				loss += li;
			else if (pass % 2 == 0)
				dfeat[i * d + pass / 2] = li;
			else
				dfeat[i * d + pass / 2] = (dfeat[i * d + pass / 2] - li) / (2 * h);
		}
	}
	return loss;
}

static void test_dense_equal(void)
{
	enum { C = 9, D = 6, N = 5 };
	mfr_error e = {{0}};
	mfr_pfc64 *p = mfr_pfc64_new(C, D, 1.0, N, 0, 1, &e);
	mfr_pfc64_init(p, 3);
	double feat[N * D], dfeat[N * D], want[N * D];
	int32_t lab[N] = {0, 8, 3, 3, 5};
	mfr_rng r = {9};
	for (int i = 0; i < N * D; i++)
		feat[i] = mfr_rng_normal(&r);
	mfr_margin m = {64, 1, 0, 0.4};
	double got = loss_at(p, feat, lab, N, &m, 1, dfeat);
	int64_t S;
	mfr_pfc64_sampled(p, &S);
	CHECK_EQ_INT(S, C);
	double ref = dense_cosface(feat, mfr_pfc64_weights(p), lab, N, C, D, 64, 0.4, want);
	CHECK_NEAR(got, ref, 1e-9 * fmax(1, ref));
	double worst = 0;
	for (int i = 0; i < N * D; i++)
		worst = fmax(worst, fabs(dfeat[i] - want[i]) / fmax(fabs(want[i]), 1e-3));
	CHECK(worst < 1e-5);
	mfr_pfc64_free(p);
}

/* The float build agrees with the double one (through oneDNN when present). */
static void test_float_double(void)
{
	enum { C = 300, D = 32, N = 24 };
	mfr_error e = {{0}};
	mfr_pfc64 *p = mfr_pfc64_new(C, D, 0.3, N, 0, 1, &e);
	mfr_pfc *q = mfr_pfc_new(C, D, 0.3, N, 0, 1, &e);
	mfr_pfc64_init(p, 5);
	mfr_pfc_init(q, 5);
	double fd[N * D], gd[N * D];
	float ff[N * D], gf[N * D];
	int32_t lab[N];
	mfr_rng r = {1};
	for (int i = 0; i < N * D; i++)
		ff[i] = (float)(fd[i] = (float)mfr_rng_normal(&r));
	for (int i = 0; i < N; i++)
		lab[i] = (int32_t)mfr_rng_below(&r, C);
	for (int i = 0; i < C * D; i++)
		mfr_pfc64_weights(p)[i] = mfr_pfc_weights(q)[i];
	mfr_margin m = {64, 1, 0.5, 0};
	double l64, a64, l32, a32;
	CHECK(mfr_pfc64_sample(p, lab, N, 42, &e) == mfr_pfc_sample(q, lab, N, 42, &e));
	CHECK(!mfr_pfc64_forward_backward(p, comm, fd, lab, N, &m, &l64, &a64, gd, &e));
	CHECK(!mfr_pfc_forward_backward(q, comm, ff, lab, N, &m, &l32, &a32, gf, &e));
	CHECK_NEAR(l32, l64, 1e-4 * l64);
	CHECK_NEAR(a32, a64, 0);
	double worst = 0, big = 0;
	for (int i = 0; i < N * D; i++)
		big = fmax(big, fabs(gd[i]));
	for (int i = 0; i < N * D; i++)
		worst = fmax(worst, fabs(gf[i] - gd[i]) / big);
	CHECK(worst < 1e-3);
	mfr_pfc64_free(p);
	mfr_pfc_free(q);
}

static void test_sampling(void)
{
	enum { C = 1000, N = 40 };
	mfr_error e = {{0}};
	mfr_pfc *p = mfr_pfc_new(C, 4, 0.1, N, 0, 1, &e);
	int32_t lab[N];
	mfr_rng r = {4};
	for (int i = 0; i < N; i++)
		lab[i] = (int32_t)mfr_rng_below(&r, C);
	lab[1] = lab[0]; /* a repeated label counts once */
	int64_t S = mfr_pfc_sample(p, lab, N, 1, &e), S2;
	CHECK_EQ_INT(S, 100); /* ceil(0.1 x 1000), more than the positives */
	const int64_t *s = mfr_pfc_sampled(p, &S2);
	int64_t first[200];
	memcpy(first, s, sizeof(int64_t) * (size_t)S);
	int all = 1, sorted = 1;
	for (int i = 0; i < N; i++) {
		int found = 0;
		for (int64_t k = 0; k < S; k++)
			found |= s[k] == lab[i];
		all &= found;
	}
	for (int64_t k = 1; k < S; k++)
		sorted &= s[k] > s[k - 1];
	CHECK(all);
	CHECK(sorted);
	/* the same seed, the same sample; another seed, other negatives */
	CHECK_EQ_INT(mfr_pfc_sample(p, lab, N, 1, &e), 100);
	CHECK(!memcmp(first, mfr_pfc_sampled(p, &S2), sizeof(int64_t) * 100));
	mfr_pfc_sample(p, lab, N, 2, &e);
	CHECK(memcmp(first, mfr_pfc_sampled(p, &S2), sizeof(int64_t) * 100) != 0);
	/* more positives than the quota: every positive, nothing else */
	mfr_pfc *q = mfr_pfc_new(50, 4, 0.1, N, 0, 1, &e);
	int32_t many[N];
	for (int i = 0; i < N; i++)
		many[i] = i % 20;
	CHECK_EQ_INT(mfr_pfc_sample(q, many, N, 1, &e), 20);
	/* a label outside the classes */
	many[3] = 50;
	CHECK(mfr_pfc_sample(q, many, N, 1, &e) < 0);
	CHECK(strstr(e.msg, "label 50 of row 3") != NULL);
	mfr_pfc_free(q);
	/* rate 1: every class */
	mfr_pfc *f = mfr_pfc_new(C, 4, 1.0, N, 0, 1, &e);
	CHECK_EQ_INT(mfr_pfc_sample(f, lab, N, 1, &e), C);
	mfr_pfc_free(f);
	mfr_pfc_free(p);
}

static void test_momentum(void)
{
	enum { C = 200, D = 8, N = 6 };
	mfr_error e = {{0}};
	for (int sparse = 0; sparse <= 1; sparse++) {
		mfr_pfc *p = mfr_pfc_new(C, D, 0.05, N, 0, 1, &e);
		mfr_pfc_init(p, 8);
		float *w = mfr_pfc_weights(p), before[C * D], feat[N * D], df[N * D];
		memcpy(before, w, sizeof before);
		mfr_rng r = {2};
		for (int i = 0; i < N * D; i++)
			feat[i] = (float)mfr_rng_normal(&r);
		int32_t lab[N] = {1, 2, 3, 50, 51, 199};
		mfr_margin m = {64, 1, 0, 0.4};
		double loss, acc;
		mfr_pfc_sample(p, lab, N, 3, &e);
		CHECK(!mfr_pfc_forward_backward(p, comm, feat, lab, N, &m, &loss, &acc, df, &e));
		mfr_pfc_step(p, 0.1, 0.9, 5e-4, sparse);
		int64_t S;
		const int64_t *s = mfr_pfc_sampled(p, &S);
		int untouched = 0, moved = 0;
		for (int c = 0; c < C; c++) {
			int sampled = 0;
			for (int64_t k = 0; k < S; k++)
				sampled |= s[k] == c;
			int same = !memcmp(before + c * D, w + c * D, sizeof(float) * D);
			if (sampled)
				moved += !same;
			else
				untouched += same;
		}
		CHECK_EQ_INT(moved, S);
		CHECK_EQ_INT(untouched, sparse ? C - S : 0); /* dense: weight decay moves them */
		mfr_pfc_free(p);
	}
}

/* A target so unlikely that exp(logit - max) underflows in float: the loss
 * must still be -log p, not a clamp. Two classes in 2-d, the feature on
 * class 1's row and opposite class 0's, target 0, CosFace s = 64, m = 0.4:
 * logits 64 (class 1) and 64 (-1 - 0.4) = -89.6 (target), so
 * -log p = 153.6 + log(1 + e^-153.6) = 153.6. */
static void test_unlikely_target(void)
{
	mfr_error e = {{0}};
	mfr_pfc *p = mfr_pfc_new(2, 2, 1.0, 1, 0, 1, &e);
	CHECK(p != NULL);
	if (!p)
		return;
	float *w = mfr_pfc_weights(p);
	w[0] = -1, w[1] = 0, w[2] = 1, w[3] = 0;
	float feat[2] = {1, 0}, df[2];
	int32_t lab[1] = {0};
	mfr_margin m = {64, 1, 0, 0.4};
	double loss, acc;
	CHECK(mfr_pfc_sample(p, lab, 1, 1, &e) == 2);
	CHECK(mfr_pfc_forward_backward(p, comm, feat, lab, 1, &m, &loss, &acc, df, &e) == 0);
	CHECK_NEAR(loss, 153.6, 1e-4);
	CHECK(acc == 0);
	mfr_pfc_free(p);
}

int main(int argc, char **argv)
{
	mfr_error e = {{0}};
	comm = mfr_comm_init(&argc, &argv, &e);
	gradcheck("cosface s=4", 7, 5, 4, 1.0, (mfr_margin){4, 1, 0, 0.4});
	gradcheck("arcface s=4", 7, 5, 4, 1.0, (mfr_margin){4, 1, 0.5, 0});
	gradcheck("combined s=8", 9, 4, 6, 1.0, (mfr_margin){8, 0.9, 0.4, 0.15});
	gradcheck("cosface s=64", 6, 4, 3, 1.0, (mfr_margin){64, 1, 0, 0.4});
	gradcheck("arcface s=64", 6, 4, 3, 1.0, (mfr_margin){64, 1, 0.5, 0});
	gradcheck("partial fc rate 0.3", 30, 4, 5, 0.3, (mfr_margin){16, 1, 0.5, 0});
	test_dense_equal();
	test_float_double();
	test_sampling();
	test_momentum();
	test_unlikely_target();
	mfr_comm_finish(comm);
	return check_done();
}
