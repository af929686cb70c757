/* test_gpu_attn.c — the CUDA squeeze-excitation and split-attention layers
 * (common/cuda/attn.cu) against the reference (mfr_se_*_ref,
 * mfr_splat_*_ref) on the same seeded random inputs, rounded to the element
 * type, in fp32, fp16 and bf16.
 *
 * Forward: out, and every saved tensor (SE's pooled, hidden, scale; the
 * split-attention save block part by part, in the reference's layout), the
 * running statistics in training and their being left alone in inference.
 * Output buffers start as NaN, so an element the kernels never write fails.
 * Backward: every gradient pre-filled with random values and checked as
 * before + reference gradient (the += contract). The device backward is given
 * the reference's saved tensors, so it is held against the reference on
 * exactly the same inputs.
 *
 * Tolerances. Every intermediate on the device is float32 and its inputs are
 * the reference's inputs exactly, so all tensors differ from the reference
 * (which sums in double) only by float32 rounding: the longest sums are 98
 * terms (HW = 49 positions of R = 2 splits) or 64 (a dot product of C = 64),
 * of values <= 1 in size, typically ~sqrt(n) ulps off, ~1e-6 of the tensor's
 * scale; TOL32 = 2e-5 leaves a margin of ten or more. Tensors stored in type
 * t (out, dx, du) add the one final rounding to t: half a unit in the last
 * place of a value <= the tensor's scale, gcheck_eps(t); 2 * gcheck_eps(t)
 * is allowed. Split attention's inner batch norm multiplies the rounding of
 * its input by gamma * invstd, which is large when the N values of a channel
 * are close together (N = 2 especially); the rounding of t relative to the
 * spread of t is |t| * invstd ulps. Everything from the batch norm on (z,
 * att, out, invstd, and all gradients: they go through dz * gamma * invstd)
 * is therefore allowed amp = max(1, max_j |gamma_j| invstd_j max(1, max_n
 * |t_nj|)) times TOL32, amp computed from the reference's own save block. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gpu_check.h"   /* defines: gcheck_*, CHECK, check_done */
#include "layers_elem.h" /* defines: mfr_se_*_ref, mfr_splat_*_ref, mfr_splat_save_len */

#ifdef MFR_HAVE_CUDA
#include "gpu_layers.h" /* defines: mfr_se_*_cuda, mfr_splat_*_cuda */

#define TOL32 2e-5

static float *falloc(size_t n) { return (float *)gcheck_xmalloc(n * sizeof(float)); }

/* n floats of uniform [-a, a) from seed, rounded to type t. */
static float *frand(size_t n, uint64_t seed, float a, mfr_dtype t)
{
	float *x = falloc(n);
	gcheck_fill(x, n, seed, a);
	gcheck_round(x, n, t);
	return x;
}

static float *fdup(const float *x, size_t n)
{
	float *y = falloc(n);
	memcpy(y, x, n * sizeof *y);
	return y;
}

/* Compares n floats of device buffer d (fp32) with want. */
static void close_f32(mfr_gpu *g, const char *name, const char *what, const void *d, const float *want, size_t n,
		      double tol)
{
	char buf[256];
	float *got = falloc(n);
	gcheck_get(g, got, d, n, MFR_F32);
	snprintf(buf, sizeof buf, "%s: %s", name, what);
	gcheck_close(buf, got, want, n, tol);
	free(got);
}

/* Compares the NHWC device tensor d (type t) with the NCHW want. */
static void close_nhwc(mfr_gpu *g, const char *name, const char *what, const void *d, const float *want, int n,
		       int c, int hw, mfr_dtype t, double tol)
{
	char buf[256];
	size_t cnt = (size_t)n * c * hw;
	float *got = falloc(cnt);
	gcheck_get_nchw(g, got, d, n, c, hw, t);
	snprintf(buf, sizeof buf, "%s: %s", name, what);
	gcheck_close(buf, got, want, cnt, tol);
	free(got);
}

/* ---- squeeze-excitation ---- */

static void test_se(mfr_gpu *g, int N, int C, int Cr, int HW, mfr_dtype t, uint64_t seed)
{
	char name[128];
	mfr_error e = {{0}};
	snprintf(name, sizeof name, "se N=%d C=%d Cr=%d HW=%d %s", N, C, Cr, HW, mfr_dtype_name(t));
	size_t nx = (size_t)N * C * HW, nc = (size_t)N * C, ncr = (size_t)N * Cr;
	size_t nw = (size_t)Cr * C;
	/* weights as PyTorch initialises nn.Linear: U(-1/sqrt(fan_in), ...) */
	float *x = frand(nx, seed, 1.f, t);
	float *W1 = frand(nw, seed + 1, 1.f / sqrtf((float)C), MFR_F32);
	float *b1 = frand((size_t)Cr, seed + 2, 0.5f, MFR_F32);
	float *W2 = frand(nw, seed + 3, 1.f / sqrtf((float)Cr), MFR_F32);
	float *b2 = frand((size_t)C, seed + 4, 0.5f, MFR_F32);
	double tol_t = TOL32 + 2 * gcheck_eps(t);

	/* forward */
	float *out = falloc(nx), *pooled = falloc(nc), *hidden = falloc(ncr), *scale = falloc(nc);
	mfr_se_forward_ref(out, pooled, hidden, scale, x, W1, b1, W2, b2, N, C, Cr, HW);
	void *d_x = gcheck_put_nhwc(g, x, N, C, HW, t);
	void *d_W1 = gcheck_put(g, W1, nw, MFR_F32), *d_b1 = gcheck_put(g, b1, (size_t)Cr, MFR_F32);
	void *d_W2 = gcheck_put(g, W2, nw, MFR_F32), *d_b2 = gcheck_put(g, b2, (size_t)C, MFR_F32);
	void *d_out = gcheck_nan(g, nx, t), *d_pooled = gcheck_nan(g, nc, MFR_F32);
	void *d_hidden = gcheck_nan(g, ncr, MFR_F32), *d_scale = gcheck_nan(g, nc, MFR_F32);
	mfr_se_forward_cuda(d_out, (float *)d_pooled, (float *)d_hidden, (float *)d_scale, d_x, (float *)d_W1,
			    (float *)d_b1, (float *)d_W2, (float *)d_b2, N, C, Cr, HW, t, g);
	if (mfr_gpu_check(g, "se_forward", &e) < 0)
		gcheck_die(name, &e);
	close_nhwc(g, name, "out", d_out, out, N, C, HW, t, tol_t);
	close_f32(g, name, "pooled", d_pooled, pooled, nc, TOL32);
	close_f32(g, name, "hidden", d_hidden, hidden, ncr, TOL32);
	close_f32(g, name, "scale", d_scale, scale, nc, TOL32);

	/* backward from the reference's saved tensors, onto random gradients */
	float *dy = frand(nx, seed + 5, 1.f, t);
	float *dx = frand(nx, seed + 6, 1.f, t);
	float *dW1 = frand(nw, seed + 7, 1.f, MFR_F32), *db1 = frand((size_t)Cr, seed + 8, 1.f, MFR_F32);
	float *dW2 = frand(nw, seed + 9, 1.f, MFR_F32), *db2 = frand((size_t)C, seed + 10, 1.f, MFR_F32);
	void *d_dy = gcheck_put_nhwc(g, dy, N, C, HW, t), *d_dx = gcheck_put_nhwc(g, dx, N, C, HW, t);
	void *d_dW1 = gcheck_put(g, dW1, nw, MFR_F32), *d_db1 = gcheck_put(g, db1, (size_t)Cr, MFR_F32);
	void *d_dW2 = gcheck_put(g, dW2, nw, MFR_F32), *d_db2 = gcheck_put(g, db2, (size_t)C, MFR_F32);
	void *d_p = gcheck_put(g, pooled, nc, MFR_F32), *d_h = gcheck_put(g, hidden, ncr, MFR_F32);
	void *d_s = gcheck_put(g, scale, nc, MFR_F32);
	float *work = falloc(mfr_se_work_len(C, Cr));
	mfr_se_backward_ref(dx, dW1, db1, dW2, db2, work, dy, x, W1, W2, pooled, hidden, scale, N, C, Cr, HW);
	if (mfr_se_backward_cuda(d_dx, (float *)d_dW1, (float *)d_db1, (float *)d_dW2, (float *)d_db2, d_dy, d_x,
				 (float *)d_W1, (float *)d_W2, (float *)d_p, (float *)d_h, (float *)d_s, N, C, Cr, HW,
				 t, g, &e) < 0)
		gcheck_die(name, &e);
	close_nhwc(g, name, "dx", d_dx, dx, N, C, HW, t, tol_t);
	close_f32(g, name, "dW1", d_dW1, dW1, nw, TOL32);
	close_f32(g, name, "db1", d_db1, db1, (size_t)Cr, TOL32);
	close_f32(g, name, "dW2", d_dW2, dW2, nw, TOL32);
	close_f32(g, name, "db2", d_db2, db2, (size_t)C, TOL32);

	void *dev[] = {d_x, d_W1, d_b1, d_W2, d_b2, d_out, d_pooled, d_hidden, d_scale, d_dy, d_dx,
		       d_dW1, d_db1, d_dW2, d_db2, d_p, d_h, d_s};
	for (size_t i = 0; i < sizeof dev / sizeof *dev; i++)
		mfr_gpu_free(g, dev[i]);
	float *host[] = {x, W1, b1, W2, b2, out, pooled, hidden, scale, dy, dx, dW1, db1, dW2, db2, work};
	for (size_t i = 0; i < sizeof host / sizeof *host; i++)
		free(host[i]);
}

/* ---- split attention ---- */

typedef struct {
	int R, K, C, inter, HW;
} splat_case;

static void test_splat(mfr_gpu *g, const splat_case *sc, int N, int training, mfr_dtype t, uint64_t seed)
{
	char name[160];
	mfr_error e = {{0}};
	int R = sc->R, K = sc->K, C = sc->C, inter = sc->inter, HW = sc->HW;
	int Cg = C / K, Ig = inter / K, RC = R * C;
	/* momentum as PyTorch's default; eps larger than its 1e-5 so that eps
	 * visibly moves invstd next to running variances of about 1 */
	const double eps = 1e-3, momentum = 0.1;
	snprintf(name, sizeof name, "splat R=%d K=%d C=%d inter=%d HW=%d N=%d %s %s", R, K, C, inter, HW, N,
		 training ? "train" : "infer", mfr_dtype_name(t));
	size_t nu = (size_t)N * RC * HW, ny = (size_t)N * C * HW;
	size_t nw1 = (size_t)inter * Cg, nw2 = (size_t)RC * Ig, ns = mfr_splat_save_len(N, C, R, inter);
	float *u = frand(nu, seed, 1.f, t);
	float *W1 = frand(nw1, seed + 1, 1.f / sqrtf((float)Cg), MFR_F32);
	float *b1 = frand((size_t)inter, seed + 2, 0.5f, MFR_F32);
	float *gamma = frand((size_t)inter, seed + 3, 0.5f, MFR_F32);
	float *beta = frand((size_t)inter, seed + 4, 0.5f, MFR_F32);
	float *W2 = frand(nw2, seed + 5, 1.f / sqrtf((float)Ig), MFR_F32);
	float *b2 = frand((size_t)RC, seed + 6, 0.5f, MFR_F32);
	float *rm = frand((size_t)inter, seed + 7, 0.5f, MFR_F32);
	float *rv = frand((size_t)inter, seed + 8, 0.5f, MFR_F32);
	for (int j = 0; j < inter; j++) {
		gamma[j] += 1; /* gamma in [0.5, 1.5), running variance in [0.5, 1.5) */
		rv[j] += 1;
	}

	/* forward */
	float *out = falloc(ny), *save = falloc(ns);
	float *rm_ref = fdup(rm, (size_t)inter), *rv_ref = fdup(rv, (size_t)inter);
	mfr_splat_forward_ref(out, save, rm_ref, rv_ref, u, W1, b1, gamma, beta, W2, b2, N, C, R, K, inter, HW,
			      training, eps, momentum);
	/* the parts of the save block (the reference's layout) */
	size_t o_gap = 0, o_t = o_gap + (size_t)N * C, o_mean = o_t + (size_t)N * inter, o_invstd = o_mean + inter;
	size_t o_z = o_invstd + inter, o_att = o_z + (size_t)N * inter;
	CHECK(o_att + (size_t)N * RC == ns);
	double amp = 1;
	for (int j = 0; j < inter; j++) {
		double tmax = 1;
		for (int n = 0; n < N; n++)
			tmax = fmax(tmax, fabs(save[o_t + (size_t)n * inter + j]));
		amp = fmax(amp, fabs(gamma[j]) * save[o_invstd + j] * tmax);
	}
	double tol_a = TOL32 * amp, tol_at = tol_a + 2 * gcheck_eps(t);
	printf("# %s: batch-norm amplification %.3g\n", name, amp);

	void *d_u = gcheck_put_nhwc(g, u, N, RC, HW, t);
	void *d_W1 = gcheck_put(g, W1, nw1, MFR_F32), *d_b1 = gcheck_put(g, b1, (size_t)inter, MFR_F32);
	void *d_gamma = gcheck_put(g, gamma, (size_t)inter, MFR_F32);
	void *d_beta = gcheck_put(g, beta, (size_t)inter, MFR_F32);
	void *d_W2 = gcheck_put(g, W2, nw2, MFR_F32), *d_b2 = gcheck_put(g, b2, (size_t)RC, MFR_F32);
	void *d_rm = gcheck_put(g, rm, (size_t)inter, MFR_F32), *d_rv = gcheck_put(g, rv, (size_t)inter, MFR_F32);
	void *d_out = gcheck_nan(g, ny, t), *d_save = gcheck_nan(g, ns, MFR_F32);
	if (mfr_splat_forward_cuda(d_out, (float *)d_save, (float *)d_rm, (float *)d_rv, d_u, (float *)d_W1,
				   (float *)d_b1, (float *)d_gamma, (float *)d_beta, (float *)d_W2, (float *)d_b2, N, C,
				   R, K, inter, HW, training, eps, momentum, t, g, &e) < 0)
		gcheck_die(name, &e);
	close_nhwc(g, name, "out", d_out, out, N, C, HW, t, tol_at);
	float *got = falloc(ns);
	gcheck_get(g, got, d_save, ns, MFR_F32);
	struct {
		const char *what;
		size_t off, n;
		double tol;
	} part[] = {
		{"save gap", o_gap, (size_t)N * C, TOL32},
		{"save t", o_t, (size_t)N * inter, TOL32},
		{"save mean", o_mean, (size_t)inter, TOL32},
		{"save invstd", o_invstd, (size_t)inter, tol_a},
		{"save z", o_z, (size_t)N * inter, tol_a},
		{"save att", o_att, (size_t)N * RC, tol_a},
	};
	for (size_t i = 0; i < sizeof part / sizeof *part; i++) {
		char buf[256];
		snprintf(buf, sizeof buf, "%s: %s", name, part[i].what);
		gcheck_close(buf, got + part[i].off, save + part[i].off, part[i].n, part[i].tol);
	}
	free(got);
	/* training updates the running statistics, inference leaves them be
	 * (the reference's rm_ref, rv_ref are then rm, rv: compared exactly) */
	close_f32(g, name, "running_mean", d_rm, rm_ref, (size_t)inter, training ? TOL32 : 0);
	close_f32(g, name, "running_var", d_rv, rv_ref, (size_t)inter, training ? TOL32 : 0);

	/* backward from the reference's save block, onto random gradients */
	float *dy = frand(ny, seed + 9, 1.f, t), *du = frand(nu, seed + 10, 1.f, t);
	float *dW1 = frand(nw1, seed + 11, 1.f, MFR_F32), *db1 = frand((size_t)inter, seed + 12, 1.f, MFR_F32);
	float *dgamma = frand((size_t)inter, seed + 13, 1.f, MFR_F32);
	float *dbeta = frand((size_t)inter, seed + 14, 1.f, MFR_F32);
	float *dW2 = frand(nw2, seed + 15, 1.f, MFR_F32), *db2 = frand((size_t)RC, seed + 16, 1.f, MFR_F32);
	void *d_dy = gcheck_put_nhwc(g, dy, N, C, HW, t), *d_du = gcheck_put_nhwc(g, du, N, RC, HW, t);
	void *d_dW1 = gcheck_put(g, dW1, nw1, MFR_F32), *d_db1 = gcheck_put(g, db1, (size_t)inter, MFR_F32);
	void *d_dgamma = gcheck_put(g, dgamma, (size_t)inter, MFR_F32);
	void *d_dbeta = gcheck_put(g, dbeta, (size_t)inter, MFR_F32);
	void *d_dW2 = gcheck_put(g, dW2, nw2, MFR_F32), *d_db2 = gcheck_put(g, db2, (size_t)RC, MFR_F32);
	void *d_sref = gcheck_put(g, save, ns, MFR_F32);
	float *work = falloc(mfr_splat_work_len(N, C, R, inter));
	mfr_splat_backward_ref(du, dW1, db1, dgamma, dbeta, dW2, db2, work, dy, u, W1, gamma, W2, save, N, C, R, K,
			       inter, HW, training);
	if (mfr_splat_backward_cuda(d_du, (float *)d_dW1, (float *)d_db1, (float *)d_dgamma, (float *)d_dbeta,
				    (float *)d_dW2, (float *)d_db2, d_dy, d_u, (float *)d_W1, (float *)d_gamma,
				    (float *)d_W2, (float *)d_sref, N, C, R, K, inter, HW, training, t, g, &e) < 0)
		gcheck_die(name, &e);
	close_nhwc(g, name, "du", d_du, du, N, RC, HW, t, tol_at);
	close_f32(g, name, "dW1", d_dW1, dW1, nw1, tol_a);
	close_f32(g, name, "db1", d_db1, db1, (size_t)inter, tol_a);
	close_f32(g, name, "dgamma", d_dgamma, dgamma, (size_t)inter, tol_a);
	close_f32(g, name, "dbeta", d_dbeta, dbeta, (size_t)inter, tol_a);
	close_f32(g, name, "dW2", d_dW2, dW2, nw2, tol_a);
	close_f32(g, name, "db2", d_db2, db2, (size_t)RC, tol_a);

	void *dev[] = {d_u, d_W1, d_b1, d_gamma, d_beta, d_W2, d_b2, d_rm, d_rv, d_out, d_save, d_dy, d_du,
		       d_dW1, d_db1, d_dgamma, d_dbeta, d_dW2, d_db2, d_sref};
	for (size_t i = 0; i < sizeof dev / sizeof *dev; i++)
		mfr_gpu_free(g, dev[i]);
	float *host[] = {u, W1, b1, gamma, beta, W2, b2, rm, rv, out, save, rm_ref, rv_ref, dy, du,
			 dW1, db1, dgamma, dbeta, dW2, db2, work};
	for (size_t i = 0; i < sizeof host / sizeof *host; i++)
		free(host[i]);
}
#endif /* MFR_HAVE_CUDA */

int main(void)
{
	mfr_gpu *g = gcheck_open("gpu attention layers");
	if (!g)
		return check_done();
#ifdef MFR_HAVE_CUDA
	static const mfr_dtype types[] = {MFR_F32, MFR_F16, MFR_BF16};
	/* SE: C = 64 with r = 16 and C = 24 with r = 4; a 7x7 map and a
	 * vector; one sample and three */
	static const int se[][3] = {{64, 4, 49}, {64, 4, 1}, {24, 6, 49}, {24, 6, 1}};
	/* split attention: radix 2 with one and two groups, radix 4, and the
	 * sigmoid case R = 1; inter at ResNeSt's 32 and at small values whose
	 * groups are narrower than the channel groups (Ig != Cg), down to one
	 * input per group (Ig = 1) */
	static const splat_case sp[] = {
		{2, 1, 16, 32, 49}, {2, 2, 32, 6, 49}, {2, 2, 16, 32, 1},
		{1, 1, 32, 32, 49}, {1, 2, 16, 10, 1}, {4, 2, 16, 8, 9}, {2, 2, 16, 2, 3},
	};
	uint64_t seed = 1000;
	for (size_t ti = 0; ti < sizeof types / sizeof *types; ti++) {
		mfr_dtype t = types[ti];
		for (size_t i = 0; i < sizeof se / sizeof *se; i++)
			for (int N = 1; N <= 3; N += 2, seed += 100)
				test_se(g, N, se[i][0], se[i][1], se[i][2], t, seed);
		for (size_t i = 0; i < sizeof sp / sizeof *sp; i++)
			for (int training = 1; training >= 0; training--)
				for (int N = 2; N <= 4; N += 2, seed += 100)
					test_splat(g, &sp[i], N, training, t, seed);
	}
#else
	printf("skip: gpu attention layers: built without CUDA\n");
#endif
	mfr_gpu_close(g);
	return check_done();
}
