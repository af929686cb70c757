/* test_net_float.c — the graph executor's float API: float against the
 * double build on the same weights, the inference memory plan against the
 * keep-everything layout, model save and load bit-exact, seeded
 * initialisation, and errors. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "arch.h"
#include "check.h"
#include "model.h"
#include "net.h"
#include "tiny_arch.h"

/* The double build's API (common64/net.o), declared by hand: one file can
 * see only one mfr_real. Keep in step with net.h. */
typedef struct mfr_net64 mfr_net64;
mfr_net64 *mfr_net64_new(const mfr_arch *a, int max_batch, int training, mfr_error *e);
void mfr_net64_free(mfr_net64 *n);
double *mfr_net64_params(mfr_net64 *n);
void mfr_net64_init(mfr_net64 *n, uint64_t seed);
int mfr_net64_forward(mfr_net64 *n, const double *x, int batch, int training, uint64_t seed, mfr_error *e);
double *mfr_net64_output(mfr_net64 *n, int k, size_t *dim);

/* float and double nets with the same weights agree; the inference plan
 * (buffers reused) gives exactly the keep-everything layout's outputs */
static void test_float_double_and_plan(void)
{
	mfr_arch *a = parse(TINY);
	if (!a)
		return;
	mfr_error e;
	int N = 4;
	mfr_net *fn = mfr_net_new(a, N, 1, &e), *fi = mfr_net_new(a, N, 0, &e);
	mfr_net64 *dn = mfr_net64_new(a, N, 0, &e);
	CHECK(fn && fi && dn);
	mfr_net_init(fn, 3);
	mfr_net64_init(dn, 3);
	memcpy(mfr_net_params(fi), mfr_net_params(fn), mfr_net_param_total(fn) * sizeof(float));
	size_t xin = (size_t)N * 3 * 9 * 8;
	float *xf = malloc(xin * sizeof *xf);
	double *xd = malloc(xin * sizeof *xd);
	mfr_rng r = {5};
	for (size_t i = 0; i < xin; i++)
		xd[i] = xf[i] = (float)(2 * mfr_rng_uniform(&r) - 1);
	/* same seed, same init: float params are the double ones rounded */
	int same_init = 1;
	for (size_t i = 0; i < mfr_net_param_total(fn); i++)
		same_init &= mfr_net_params(fn)[i] == (float)mfr_net64_params(dn)[i];
	CHECK(same_init);
	CHECK(mfr_net_forward(fn, xf, N, 0, 1, &e) == 0);
	CHECK(mfr_net_forward(fi, xf, N, 0, 1, &e) == 0);
	CHECK(mfr_net64_forward(dn, xd, N, 0, 1, &e) == 0);
	/* fi folds its conv -> bn pairs (an inference net); fn, built for
	 * training, does not: float rounding apart, the same function */
	for (int k = 0; k < 2; k++) {
		size_t dim;
		float *of = mfr_net_output(fn, k, &dim), *oi = mfr_net_output(fi, k, NULL);
		double *od = mfr_net64_output(dn, k, NULL), worst = 0, wf = 0;
		for (size_t i = 0; i < dim * (size_t)N; i++) {
			worst = fmax(worst, fabs(of[i] - od[i]) / fmax(fabs(od[i]), 1));
			wf = fmax(wf, fabs(oi[i] - od[i]) / fmax(fabs(od[i]), 1));
		}
		CHECK(worst < 1e-5);
		CHECK(wf < 1e-5);
	}
	/* on the reference layers the folded plan applies the bn in place with
	 * the reference's arithmetic: bit-identical to the unfolded net */
	mfr_net_set_reference(fn, 1);
	mfr_net_set_reference(fi, 1);
	CHECK(mfr_net_forward(fn, xf, N, 0, 1, &e) == 0 && mfr_net_forward(fi, xf, N, 0, 1, &e) == 0);
	for (int k = 0; k < 2; k++) {
		size_t dim;
		float *of = mfr_net_output(fn, k, &dim), *oi = mfr_net_output(fi, k, NULL);
		CHECK(memcmp(of, oi, dim * (size_t)N * sizeof *of) == 0);
	}
	mfr_net_set_reference(fn, 0);
	mfr_net_set_reference(fi, 0);
	CHECK(mfr_net_forward(fi, xf, N, 0, 1, &e) == 0);
	/* l2norm output has unit rows */
	size_t dim;
	float *o = mfr_net_output(fn, 0, &dim);
	double s = 0;
	for (size_t i = 0; i < dim; i++)
		s += (double)o[i] * o[i];
	CHECK_NEAR(s, 1.0, 1e-5);

	/* model round trip: store, save, load, bind: identical outputs */
	mfr_model m = {0}, l;
	m.arch = strdup(TINY);
	mfr_input_spec_insightface(&m.input);
	CHECK(mfr_net_store(fn, &m, 0, &e) == 0);
	char path[] = "/tmp/mfr-test-net-XXXXXX";
	close(mkstemp(path));
	CHECK(mfr_model_save(path, &m, &e) == 0 && mfr_model_load(path, &l, &e) == 0);
	mfr_net *back = mfr_net_new(a, N, 0, &e);
	CHECK(back && mfr_net_load(back, &l, &e) == 0);
	CHECK(memcmp(mfr_net_params(back), mfr_net_params(fn), mfr_net_param_total(fn) * sizeof(float)) == 0);
	CHECK(mfr_net_forward(back, xf, N, 0, 1, &e) == 0);
	CHECK(memcmp(mfr_net_output(back, 0, NULL), mfr_net_output(fi, 0, NULL), dim * (size_t)N * sizeof(float)) == 0);
	/* a model missing a tensor, or with a stranger, is refused */
	free(l.tensors[3].name);
	l.tensors[3].name = strdup("nope.weight");
	CHECK(mfr_net_load(back, &l, &e) == -1 && strstr(e.msg, "has no tensor"));
	/* errors */
	CHECK(mfr_net_forward(fi, xf, N + 1, 0, 1, &e) == -1 && strstr(e.msg, "batch"));
	CHECK(mfr_net_forward(fi, xf, N, 1, 1, &e) == -1 && strstr(e.msg, "inference"));
	const float *none[2] = {NULL, NULL};
	CHECK(mfr_net_backward(fi, none, &e) == -1);
	remove(path);
	mfr_model_free(&m);
	mfr_model_free(&l);
	mfr_net_free(back);
	mfr_net_free(fn);
	mfr_net_free(fi);
	mfr_net64_free(dn);
	free(xf);
	free(xd);
	mfr_arch_free(a);
}

/* the fast backend against the reference, through a whole training step:
 * outputs and every parameter gradient */
static void test_fast_vs_reference(void)
{
	mfr_arch *a = parse(TINY);
	if (!a)
		return;
	mfr_error e;
	int N = 3;
	mfr_net *f = mfr_net_new(a, N, 1, &e), *r = mfr_net_new(a, N, 1, &e);
	mfr_net_init(f, 21);
	mfr_net_init(r, 21);
	mfr_net_set_reference(r, 1);
	size_t xin = (size_t)N * 3 * 9 * 8, dim;
	float *x = malloc(xin * sizeof *x);
	mfr_rng g = {8};
	for (size_t i = 0; i < xin; i++)
		x[i] = (float)(2 * mfr_rng_uniform(&g) - 1);
	CHECK(mfr_net_forward(f, x, N, 1, 5, &e) == 0 && mfr_net_forward(r, x, N, 1, 5, &e) == 0);
	float *of = mfr_net_output(f, 0, &dim), *orf = mfr_net_output(r, 0, NULL);
	float *dout = malloc(dim * N * sizeof *dout);
	double worst = 0;
	for (size_t i = 0; i < dim * N; i++) {
		worst = fmax(worst, fabs(of[i] - orf[i]) / fmax(fabs(orf[i]), 1));
		dout[i] = (float)(2 * mfr_rng_uniform(&g) - 1);
	}
	/* oneDNN sums in float in its own order: 1e-5 relative is float32
	 * rounding over these short sums, far below any real error */
	CHECK(worst < 1e-5);
	const float *d[2] = {dout, NULL};
	mfr_net_zero_grad(f);
	mfr_net_zero_grad(r);
	CHECK(mfr_net_backward(f, d, &e) == 0 && mfr_net_backward(r, d, &e) == 0);
	worst = 0;
	for (size_t i = 0; i < mfr_net_param_total(f); i++) {
		float a1 = mfr_net_grads(f)[i], b1 = mfr_net_grads(r)[i];
		worst = fmax(worst, fabs(a1 - b1) / fmax(fabs(b1), 1));
	}
	printf("fast backend vs reference on a training step: worst gradient difference %.3g\n", worst);
	CHECK(worst < 1e-4);
	free(x);
	free(dout);
	mfr_net_free(f);
	mfr_net_free(r);
	mfr_arch_free(a);
}

/* An inference net caches folded and reordered weights; changing a weight
 * through mfr_net_params must refresh them: the result equals a fresh net
 * built with the changed weights. Uses r18-sized convolutions so the fast
 * backend takes its blocked (reordering) path. */
static void test_weight_caches(void)
{
	mfr_arch *a = parse("mfr-arch 1\ninput x 3 32 32\nconv c1 x out=64 k=3 p=1\nbn b1 c1\n"
			    "prelu p1 b1\nconv c2 p1 out=64 k=3 p=1\nbn b2 c2\nadd r b2 p1\noutput r\n");
	if (!a)
		return;
	mfr_error e;
	mfr_net *n = mfr_net_new(a, 2, 0, &e), *fresh = mfr_net_new(a, 2, 0, &e);
	mfr_net_init(n, 4);
	size_t xin = 2 * 3 * 32 * 32, dim;
	float *x = malloc(xin * sizeof *x);
	mfr_rng g = {9};
	for (size_t i = 0; i < xin; i++)
		x[i] = (float)(2 * mfr_rng_uniform(&g) - 1);
	CHECK(mfr_net_forward(n, x, 2, 0, 0, &e) == 0);
	/* change both convolutions' weights (tensors 0 and 6: c1.weight, c2.weight)
	 * and a bn scale; running variances must stay positive */
	for (int t = 0; t <= 6; t += 6) {
		float *w = mfr_net_tensor(n, t);
		for (size_t i = 0; i < a->tensors[t].count; i += 3)
			w[i] *= -1.5f;
	}
	mfr_net_tensor(n, 1)[0] = 2.0f;
	CHECK(mfr_net_forward(n, x, 2, 0, 0, &e) == 0);
	memcpy(mfr_net_params(fresh), mfr_net_params(n), mfr_net_param_total(n) * sizeof(float));
	CHECK(mfr_net_forward(fresh, x, 2, 0, 0, &e) == 0);
	float *o1 = mfr_net_output(n, 0, &dim), *o2 = mfr_net_output(fresh, 0, NULL);
	CHECK(memcmp(o1, o2, dim * 2 * sizeof *o1) == 0);
	mfr_net_free(n);
	mfr_net_free(fresh);
	free(x);
	mfr_arch_free(a);
}

/* Kaiming fan-out init has the right spread on a big conv */
static void test_init(void)
{
	mfr_arch *a = parse("mfr-arch 1\ninput x 64 4 4\nconv c x out=128 k=3 p=1\noutput c\n");
	if (!a)
		return;
	mfr_error e;
	mfr_net *n = mfr_net_new(a, 1, 0, &e);
	mfr_net_init(n, 9);
	float *w = mfr_net_tensor(n, 0);
	size_t cnt = 128 * 64 * 9;
	double s = 0, s2 = 0;
	for (size_t i = 0; i < cnt; i++) {
		s += w[i];
		s2 += (double)w[i] * w[i];
	}
	double sd = sqrt(s2 / cnt - (s / cnt) * (s / cnt)), want = sqrt(2.0 / (128 * 9));
	CHECK_NEAR(sd / want, 1.0, 0.02); /* 73,728 draws: the sample std is within 1% */
	CHECK(fabs(s / cnt) < 3 * want / sqrt((double)cnt));
	mfr_net_free(n);
	mfr_arch_free(a);
}

int main(void)
{
	test_float_double_and_plan();
	test_init();
	test_fast_vs_reference();
	test_weight_caches();
	return check_done();
}
