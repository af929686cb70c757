/* test_net_float.c — the graph executor's float API: float against the
 * double build on the same weights, the inference memory plan against the
 * keep-everything layout, model save and load bit-exact, seeded
 * initialisation, errors, and the fast inference path (blocked activations,
 * fused residual adds) against the reference on iresnet's block structure
 * and on layers that need NCHW. */
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

/* Gives every tensor of n random values (bn running variances positive),
 * so that bn folding, the per-channel factors and their padding matter. */
static void randomise(mfr_net *n, const mfr_arch *a, uint64_t seed)
{
	mfr_rng g = {seed};
	for (int t = 0; t < a->n_tensors; t++) {
		float *p = mfr_net_tensor(n, t);
		int var = strstr(a->tensors[t].name, "var") != NULL;
		for (size_t i = 0; i < a->tensors[t].count; i++)
			p[i] = var ? (float)(0.5 + mfr_rng_uniform(&g)) : p[i] + (float)(0.4 * mfr_rng_uniform(&g) - 0.2);
	}
}

/* An inference net on the fast path (on oneDNN: blocked activations, residual
 * adds fused into convolutions) against the same net on the reference
 * layers, batch N and then N-1 (a smaller batch than planned), every
 * output. tol: relative to max(|ref|, 1); the fast path sums in float in
 * oneDNN's order through several convolutions. */
static void fast_vs_reference(const char *text, int N, double tol, const char *what)
{
	mfr_arch *a = parse(text);
	if (!a)
		return;
	mfr_error e;
	mfr_net *f = mfr_net_new(a, N, 0, &e), *r = mfr_net_new(a, N, 0, &e);
	CHECK(f && r);
	mfr_net_init(f, 17);
	randomise(f, a, 18);
	memcpy(mfr_net_params(r), mfr_net_params(f), mfr_net_param_total(f) * sizeof(float));
	mfr_net_set_reference(r, 1);
	const mfr_layer *in = &a->layers[0];
	size_t xin = (size_t)N * in->shape.c * in->shape.h * in->shape.w;
	float *x = malloc(xin * sizeof *x);
	mfr_rng g = {19};
	for (size_t i = 0; i < xin; i++)
		x[i] = (float)(2 * mfr_rng_uniform(&g) - 1);
	double worst = 0;
	for (int b = N; b >= N - 1 && b >= 1; b--) {
		CHECK(mfr_net_forward(f, x, b, 0, 0, &e) == 0 && mfr_net_forward(r, x, b, 0, 0, &e) == 0);
		for (int k = 0; k < a->n_outputs; k++) {
			size_t dim;
			float *of = mfr_net_output(f, k, &dim), *orf = mfr_net_output(r, k, NULL);
			for (size_t i = 0; i < dim * (size_t)b; i++) {
				double d = fabs((double)of[i] - orf[i]) / fmax(fabs(orf[i]), 1);
				worst = isnan(d) ? INFINITY : fmax(worst, d);
			}
		}
	}
	printf("fast inference vs reference, %s: worst relative difference %.3g\n", what, worst);
	if (!check_report(worst <= tol, what, __FILE__, __LINE__))
		fprintf(stderr, "    worst %.3g > %.3g\n", worst, tol);
	free(x);
	mfr_net_free(f);
	mfr_net_free(r);
	mfr_arch_free(a);
}

/* iresnet's block structure on channel counts that are no multiple of the
 * block (20, 24): stem, a stride-2 block with a downsample shortcut (fused
 * as the downsample conv accumulating into conv2's result), an identity
 * block (conv2 accumulating into the block input), the head; odd image
 * sizes. With `out2` the last block's sum is an output too: that group
 * then runs on NCHW, fused adds included. */
#define IRES_BLOCKS \
	"mfr-arch 1\ninput x 3 13 11\nconv c0 x out=20 k=3 p=1\nbn b0 c0\nprelu p0 b0\n" \
	"bn l1b1 p0\nconv l1c1 l1b1 out=24 k=3 p=1\nbn l1b2 l1c1\nprelu l1p l1b2\n" \
	"conv l1c2 l1p out=24 k=3 s=2 p=1\nbn l1b3 l1c2\nconv l1d p0 out=24 k=1 s=2\nbn l1db l1d\n" \
	"add l1 l1b3 l1db\nbn l2b1 l1\nconv l2c1 l2b1 out=24 k=3 p=1\nbn l2b2 l2c1\nprelu l2p l2b2\n" \
	"conv l2c2 l2p out=24 k=3 p=1\nbn l2b3 l2c2\nadd l2 l2b3 l1\n" \
	"bn hb l2\nflatten hf hb\ndropout hd hf p=0\nlinear fc hd out=7 bias=1\nbn1d emb fc\noutput emb\n"

/* Layers that need NCHW reading blocked tensors (gap, grouped conv with few
 * channels per group, pools, concat of two blocked inputs, se), an
 * in-place relu, a PReLU that cannot work in place, an add of three. */
static const char *MIXED = "mfr-arch 1\ninput x 5 10 9\nconv c1 x out=12 k=3 p=1\nrelu r1 c1\n"
			   "conv c2 r1 out=12 k=1\nprelu pr c2\nadd a3 c2 pr r1\ngap g a3\n"
			   "conv c3 a3 out=8 k=3 p=1 g=4\nmaxpool mp c3 k=2 s=1 p=1\nconcat cc c3 r1\n"
			   "se s cc r=4\noutput g\noutput s\noutput mp\n";

static void test_fast_inference(void)
{
	/* 1e-4: float32 sums of up to 216 products through five convolutions,
	 * in oneDNN's order; a layout or padding error is off by O(1) */
	fast_vs_reference(IRES_BLOCKS, 3, 1e-4, "iresnet blocks, 20/24 channels");
	fast_vs_reference(IRES_BLOCKS "output l2\n", 2, 1e-4, "iresnet blocks, a block output");
	fast_vs_reference(MIXED, 2, 1e-4, "layers on NCHW between blocked ones");
	/* 3x3 stride-1 convs of 32 and 64 channels: Winograd's algorithm on
	 * AVX-512 (dnnl_cpu.c WINOGRAD); an add that cannot be fused (its conv
	 * reads the other operand) */
	fast_vs_reference("mfr-arch 1\ninput x 3 14 14\nconv c0 x out=32 k=3 p=1\nbn b0 c0\nprelu p0 b0\n"
			  "conv c1 p0 out=32 k=3 p=1\nbn b1 c1\nadd r p0 b1\nconv c2 r out=64 k=3 p=1\nbn b2 c2\n"
			  "prelu p2 b2\noutput p2\n",
			  2, 1e-4, "32 and 64 channels");
	fast_vs_reference(TINY, 3, 1e-4, "tiny (every op)");
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
	test_fast_inference();
	return check_done();
}
