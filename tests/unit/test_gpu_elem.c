/* test_gpu_elem.c — the element-wise and per-channel CUDA launchers
 * (common/cuda/elem.cu) against the CPU reference on the same inputs:
 * convert (bit patterns against gcheck_to_f16/gcheck_to_bf16), the NCHW <->
 * NHWC moves, the input from raw pixels (against mfr_input_normalize), the
 * order of the main and side streams, fill, batch norm 2d/1d (training and inference, running
 * statistics and saved mean/invstd), batch norm fused into a PReLU or an add, PReLU, ReLU, sigmoid, add, concat,
 * dropout (mask byte for byte equal to the reference's), L2 normalisation,
 * and the fp32 helpers SGD, sum of squares and scale (host loops).
 *
 * Every layer runs in fp32, fp16 and bf16 on odd shapes (channel counts 3,
 * 17, 64, 130; row counts that are not multiples of the block; batch 1 and
 * more), with inputs rounded to the element type before the reference sees
 * them. Backward passes start from random gradient buffers, so the +=
 * contract is checked, and again with acc = 0 from buffers of NaN, which
 * must be assigned without being read. Tolerances (relative to max(1, max |reference|), see
 * gcheck_close):
 * - F32 terms: the float32 arithmetic of the kernel against the
 *   reference's (double sums): a few units of 2^-24 per operation, so 1e-6
 *   (17 units) for short formulas, 1e-5 for batch norm and L2 norm, whose
 *   outputs pass through a sum, a square root and a division;
 * - sums over M rows into fp32 parameter gradients: SUM_TOL(M), below;
 * - fp16/bf16 outputs add the rounding of the final store, at most one unit
 *   roundoff of the value (gcheck_eps(t) x |value| <= gcheck_eps(t) x
 *   scale), doubled for margin: store_tol.
 * Moves, copies, fill, ReLU forward and scale are exact (tolerance 0). */
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "feed.h"           /* defines: mfr_input_normalize */
#include "gpu_check.h"      /* defines: gcheck_*, check_done */
#include "gpu_layers.h"     /* defines: mfr_*_cuda */
#include "layers_elem.h"    /* defines: mfr_batchnorm_forward_ref, ... */
#include "layers_spatial.h" /* defines: mfr_dropout_forward_ref */

#ifdef MFR_HAVE_CUDA

static const mfr_dtype all_types[3] = {MFR_F32, MFR_F16, MFR_BF16};

/* A fresh seed for every random input. */
static uint64_t next_seed = 20240611;

/* A test name (valid until the next call: gcheck_close prints it at once). */
static const char *nm(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static const char *nm(const char *fmt, ...)
{
	static char buf[200];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(buf, sizeof buf, fmt, ap);
	va_end(ap);
	return buf;
}

/* F32 tolerance f plus the fp16/bf16 rounding of the final store. */
static double store_tol(mfr_dtype t, double f) { return f + (t == MFR_F32 ? 0 : 2 * gcheck_eps(t)); }

/* A float32 sum of M terms of either sign against the reference's double:
 * rounding errors of the tree grow with the partial sums, at most about
 * eps32 x sqrt(M) relative to the typical |sum| of random terms (the scale);
 * 4x that, plus the 1e-5 of the terms' own arithmetic. */
static double SUM_TOL(size_t M) { return 1e-5 + 4 * 0x1p-24 * sqrt((double)M); }

/* n zeroed floats; one more, so that n = 0 still gives one readable value */
static float *falloc(size_t n)
{
	float *p = (float *)gcheck_xmalloc((n + 1) * sizeof *p);
	memset(p, 0, (n + 1) * sizeof *p);
	return p;
}

/* n random floats uniform in [-a, a), rounded to type t. */
static float *hrand(size_t n, float a, mfr_dtype t)
{
	float *x = falloc(n);
	gcheck_fill(x, n, next_seed++, a);
	gcheck_round(x, n, t);
	return x;
}

static float *fdup(const float *x, size_t n)
{
	float *p = falloc(n);
	memcpy(p, x, n * sizeof *p);
	return p;
}

/* Host NCHW -> a new device NHWC buffer of type t: gcheck_put_nhwc through
 * a zeroed buffer (gcc 12 cannot see that the transpose fills malloc's and
 * warns, maybe-uninitialized, where it inlines gcheck_put_nhwc). */
static void *put_nhwc(mfr_gpu *g, const float *x, int n, int c, int hw, mfr_dtype t)
{
	size_t cnt = (size_t)n * c * hw;
	float *tmp = falloc(cnt);
	gcheck_nchw_to_nhwc(tmp, x, n, c, hw);
	void *d = gcheck_put(g, tmp, cnt, t);
	free(tmp);
	return d;
}

/* Device fp32 -> host. */
static void get32(mfr_gpu *g, float *x, const float *d, size_t n) { gcheck_get(g, x, d, n, MFR_F32); }

/* Raw bytes device -> host after a checked sync. */
static void get_raw(mfr_gpu *g, void *dst, const void *src, size_t bytes)
{
	mfr_error e = {{0}};
	if (mfr_gpu_sync(g, &e) < 0 || mfr_gpu_get(g, dst, src, bytes, &e) < 0)
		gcheck_die("get", &e);
}

static void put_raw(mfr_gpu *g, void *dst, const void *src, size_t bytes)
{
	mfr_error e = {{0}};
	if (mfr_gpu_put(g, dst, src, bytes, &e) < 0)
		gcheck_die("put", &e);
}

/* ---- convert ---- */

/* fp32 -> fp16/bf16 against the host's round-to-nearest-even bit patterns on
 * edge values (ties, the fp16 overflow edge 65520, subnormals of both, zeros
 * and infinities) and random values over 50 binades; then back to fp32
 * (exact), fp16 <-> bf16 through float, and fp32 -> fp32. */
static void test_convert(mfr_gpu *g)
{
	static const float edge[] = {0.f, -0.f, 1.f, -1.f, INFINITY, -INFINITY, 65504.f, 65519.f, 65520.f, -65520.f,
				     1e5f, 1e-8f, 0x1p-24f, 0x1p-25f, 0x3p-25f, 0x1p-14f, 0x1.ffcp-15f,
				     1.f + 0x1p-11f, 1.f + 0x3p-11f, 1.f + 0x1p-8f, 1.f + 0x3p-8f, 3.4e38f, 1e-40f,
				     -1e-40f, 0x1.fffffep127f, 0.1f, 1.f / 3};
	size_t ne = sizeof edge / sizeof edge[0], n = ne + 10007;
	float *x = falloc(n);
	mfr_rng r = {next_seed++};
	memcpy(x, edge, sizeof edge);
	for (size_t i = ne; i < n; i++) {
		double m = mfr_rng_uniform(&r) * 2 - 1;
		int ex = (int)mfr_rng_below(&r, 50) - 30;
		x[i] = (float)ldexp(m, ex);
	}
	float *dx = (float *)gcheck_put(g, x, n, MFR_F32);
	uint16_t *h = (uint16_t *)gcheck_xmalloc(n * 2), *want = (uint16_t *)gcheck_xmalloc(n * 2);
	float *back = falloc(n), *wantf = falloc(n);
	void *d16 = gcheck_alloc(g, n * 2), *d16b = gcheck_alloc(g, n * 2), *d32 = gcheck_alloc(g, n * 4);
	for (int k = 0; k < 2; k++) {
		mfr_dtype t = k == 0 ? MFR_F16 : MFR_BF16, o = k == 0 ? MFR_BF16 : MFR_F16;
		mfr_convert_cuda(d16, t, dx, MFR_F32, n, g);
		get_raw(g, h, d16, n * 2);
		size_t bad = 0, first = 0;
		for (size_t i = 0; i < n; i++) {
			want[i] = t == MFR_F16 ? gcheck_to_f16(x[i]) : gcheck_to_bf16(x[i]);
			if (h[i] != want[i] && !bad++)
				first = i;
		}
		if (!check_report(bad == 0, nm("convert fp32 -> %s bit patterns", mfr_dtype_name(t)), __FILE__,
				  __LINE__))
			fprintf(stderr, "    %zu differ; first at %zu: %.9g gives 0x%04x, want 0x%04x\n", bad, first,
				x[first], h[first], want[first]);
		/* back to fp32: exact */
		mfr_convert_cuda(d32, MFR_F32, d16, t, n, g);
		get32(g, back, (const float *)d32, n);
		for (size_t i = 0; i < n; i++)
			wantf[i] = t == MFR_F16 ? gcheck_from_f16(want[i]) : gcheck_from_bf16(want[i]);
		bad = 0;
		for (size_t i = 0; i < n; i++)
			bad += memcmp(&back[i], &wantf[i], 4) != 0;
		CHECK_EQ_INT(bad, 0);
		/* to the other half type, through float */
		mfr_convert_cuda(d16b, o, d16, t, n, g);
		get_raw(g, h, d16b, n * 2);
		bad = 0;
		for (size_t i = 0; i < n; i++)
			bad += h[i] != (o == MFR_F16 ? gcheck_to_f16(wantf[i]) : gcheck_to_bf16(wantf[i]));
		CHECK_EQ_INT(bad, 0);
	}
	mfr_convert_cuda(d32, MFR_F32, dx, MFR_F32, n, g);
	get32(g, back, (const float *)d32, n);
	CHECK(memcmp(back, x, n * 4) == 0);
	mfr_gpu_free(g, dx);
	mfr_gpu_free(g, d16);
	mfr_gpu_free(g, d16b);
	mfr_gpu_free(g, d32);
	free(x);
	free(h);
	free(want);
	free(back);
	free(wantf);
}

/* ---- the input from raw pixels, and the side stream ---- */

/* mfr_input_cuda on n random images of w x h against mfr_input_normalize
 * (NCHW, moved to NHWC and rounded to t): exact, the same float operations. */
static void test_input(mfr_gpu *g, mfr_dtype t, int n, int w, int h, int bgr)
{
	mfr_input_spec in;
	mfr_input_spec_insightface(&in);
	in.width = w, in.height = h, in.bgr = bgr;
	if (bgr) { /* per-channel statistics, as an ImageNet-style model has */
		const float mean[3] = {123.675f, 116.28f, 103.53f}, scale[3] = {1 / 58.395f, 1 / 57.12f, 1 / 57.375f};
		memcpy(in.mean, mean, sizeof mean), memcpy(in.scale, scale, sizeof scale);
	}
	size_t cnt = (size_t)n * w * h * 3;
	uint8_t *px = (uint8_t *)gcheck_xmalloc(cnt);
	mfr_rng r = {next_seed++};
	for (size_t i = 0; i < cnt; i++)
		px[i] = (uint8_t)mfr_rng_below(&r, 256);
	float *nchw = falloc(cnt), *want = falloc(cnt), *got = falloc(cnt);
	mfr_input_normalize(px, (size_t)n, &in, nchw);
	gcheck_nchw_to_nhwc(want, nchw, n, 3, w * h);
	gcheck_round(want, cnt, t);
	void *dpx = gcheck_alloc(g, cnt), *dy = gcheck_alloc(g, cnt * mfr_dtype_size(t));
	put_raw(g, dpx, px, cnt);
	mfr_input_cuda(dy, t, (const uint8_t *)dpx, n, w * h, in.mean, in.scale, bgr, g);
	gcheck_get(g, got, dy, cnt, t);
	gcheck_close(nm("input %s n=%d %dx%d bgr=%d", mfr_dtype_name(t), n, w, h, bgr), got, want, cnt, 0);
	mfr_gpu_free(g, dpx);
	mfr_gpu_free(g, dy);
	free(px), free(nchw), free(want), free(got);
}

/* The two streams' order: the main stream fills a buffer, the side stream
 * (after side_wait) uploads over its first part from page-locked memory,
 * the main stream (after main_wait) copies the buffer: the copy shows the
 * upload over the fill. Then the page-locked source is reused for a second
 * round, after the main stream has been waited for. */
static void test_side(mfr_gpu *g)
{
	enum { N = 1000, K = 600 };
	mfr_error e = {{0}};
	float *host = (float *)mfr_gpu_host_alloc(g, K * sizeof *host, &e), got[N], want[N];
	if (!host)
		gcheck_die("host alloc", &e);
	float *a = (float *)gcheck_alloc(g, N * sizeof *a), *b = (float *)gcheck_alloc(g, N * sizeof *b);
	for (int round = 0; round < 2; round++) {
		for (int i = 0; i < K; i++)
			host[i] = (float)(i + 1000 * round);
		mfr_fill_cuda(a, -1.0f - (float)round, N, g);
		if (mfr_gpu_side_wait(g, &e) < 0 || mfr_gpu_put_side(g, a, host, K * sizeof *host, &e) < 0 ||
		    mfr_gpu_main_wait(g, &e) < 0 || mfr_gpu_copy(g, b, a, N * sizeof *a, &e) < 0)
			gcheck_die("side stream", &e);
		gcheck_get(g, got, b, N, MFR_F32); /* waits for the main stream: the source is free again */
		for (int i = 0; i < N; i++)
			want[i] = i < K ? (float)(i + 1000 * round) : -1.0f - (float)round;
		gcheck_close(nm("side stream upload, round %d", round), got, want, N, 0);
	}
	mfr_gpu_free(g, a);
	mfr_gpu_free(g, b);
	mfr_gpu_host_free(g, host);
}

/* ---- NCHW <-> NHWC ---- */

/* to_nhwc from type s to type d (written, then accumulated), to_nchw back
 * (written and accumulated), against host loops: exact, since each output
 * is one rounding of one float value or sum, as the host computes it. */
static void test_layout(mfr_gpu *g, mfr_dtype s, mfr_dtype d, int n, int c, int hw)
{
	size_t cnt = (size_t)n * c * hw;
	float *x = hrand(cnt, 4, s), *y = hrand(cnt, 4, d), *want = falloc(cnt), *got = falloc(cnt);
	void *dx = gcheck_put(g, x, cnt, s), *dy = gcheck_alloc(g, cnt * mfr_dtype_size(d));
	const char *sn = mfr_dtype_name(s), *dn = mfr_dtype_name(d);

	mfr_to_nhwc_cuda(dy, d, dx, s, n, c, hw, 0, g);
	gcheck_get(g, got, dy, cnt, d);
	gcheck_nchw_to_nhwc(want, x, n, c, hw);
	gcheck_round(want, cnt, d);
	gcheck_close(nm("to_nhwc %s->%s n=%d c=%d hw=%d", sn, dn, n, c, hw), got, want, cnt, 0);

	/* accumulate: dy (NHWC) = y, then += x */
	void *dacc = gcheck_put(g, y, cnt, d);
	mfr_to_nhwc_cuda(dacc, d, dx, s, n, c, hw, 1, g);
	gcheck_get(g, got, dacc, cnt, d);
	gcheck_nchw_to_nhwc(want, x, n, c, hw);
	for (size_t i = 0; i < cnt; i++)
		want[i] += y[i];
	gcheck_round(want, cnt, d);
	gcheck_close(nm("to_nhwc += %s->%s n=%d c=%d hw=%d", sn, dn, n, c, hw), got, want, cnt, 0);

	/* back: NHWC (type d, holding x rounded to d) -> NCHW type s */
	void *dz = gcheck_alloc(g, cnt * mfr_dtype_size(s));
	mfr_to_nchw_cuda(dz, s, dy, d, n, c, hw, 0, g);
	gcheck_get(g, got, dz, cnt, s);
	memcpy(want, x, cnt * sizeof *want);
	gcheck_round(want, cnt, d);
	gcheck_round(want, cnt, s);
	gcheck_close(nm("round trip to_nhwc/to_nchw %s->%s->%s n=%d c=%d hw=%d", sn, dn, sn, n, c, hw), got, want,
		     cnt, 0);

	/* to_nchw +=: dz (NCHW, type s) += the NHWC y read as (n,hw,c) */
	float *zb = fdup(got, cnt);
	mfr_to_nchw_cuda(dz, s, dacc, d, n, c, hw, 1, g);
	gcheck_get(g, got, dz, cnt, s);
	float *acc_nhwc = falloc(cnt);
	gcheck_get(g, acc_nhwc, dacc, cnt, d);
	gcheck_nhwc_to_nchw(want, acc_nhwc, n, c, hw);
	for (size_t i = 0; i < cnt; i++)
		want[i] += zb[i];
	gcheck_round(want, cnt, s);
	gcheck_close(nm("to_nchw += %s->%s n=%d c=%d hw=%d", dn, sn, n, c, hw), got, want, cnt, 0);

	mfr_gpu_free(g, dx);
	mfr_gpu_free(g, dy);
	mfr_gpu_free(g, dacc);
	mfr_gpu_free(g, dz);
	free(x);
	free(y);
	free(want);
	free(got);
	free(zb);
	free(acc_nhwc);
}

/* ---- fill, SGD, sum of squares, scale (fp32 helpers) ---- */

static void test_fill(mfr_gpu *g)
{
	size_t n = 1000003;
	float *d = (float *)gcheck_alloc(g, n * 4), *h = falloc(n);
	mfr_fill_cuda(d, 0.25f, n, g);
	get32(g, h, d, n);
	size_t bad = 0;
	for (size_t i = 0; i < n; i++)
		bad += h[i] != 0.25f;
	CHECK_EQ_INT(bad, 0);
	mfr_fill_cuda(d, -3.f, 0, g); /* nothing */
	get32(g, h, d, 1);
	CHECK(h[0] == 0.25f);
	mfr_gpu_free(g, d);
	free(h);
}

/* The host loop is the contract's formula in float: the device may fuse a
 * multiply-add, a few units of 2^-24 (1e-6). */
/* One launch over runs of a block: one run covering it all, or runs of
 * very different lengths with gaps (running statistics) left alone. */
static void test_sgd(mfr_gpu *g, int gaps)
{
	size_t n = 100003;
	float lr = 0.1f, mu = 0.9f, wd = 5e-4f, gscale = 0.5f;
	float *w = hrand(n, 1, MFR_F32), *v = hrand(n, 1, MFR_F32), *gr = hrand(n, 1, MFR_F32);
	float *dw = (float *)gcheck_put(g, w, n, MFR_F32), *dv = (float *)gcheck_put(g, v, n, MFR_F32);
	float *dg = (float *)gcheck_put(g, gr, n, MFR_F32), *got = falloc(n);
	size_t runs[8] = {0, n}, table[12];
	int nruns = 1;
	if (gaps) { /* [0,1), [3,70003), [70010,70011), [70100,n-1): runs of one block, many, one partial */
		size_t r[8] = {0, 1, 3, 70000, 70010, 1, 70100, n - 70101};
		memcpy(runs, r, sizeof r);
		nruns = 4;
	}
	size_t blocks = mfr_sgd_table(table, runs, nruns);
	size_t *druns = (size_t *)gcheck_alloc(g, sizeof table);
	put_raw(g, druns, table, sizeof table);
	mfr_sgd_cuda(dw, dv, dg, druns, nruns, blocks, lr, mu, wd, gscale, g);
	for (int r = 0; r < nruns; r++)
		for (size_t i = runs[2 * r]; i < runs[2 * r] + runs[2 * r + 1]; i++) {
			float gi = gr[i] * gscale + wd * w[i];
			v[i] = mu * v[i] + gi;
			w[i] -= lr * v[i];
		}
	mfr_gpu_free(g, druns);
	get32(g, got, dv, n);
	gcheck_close(gaps ? "sgd v, runs with gaps" : "sgd v", got, v, n, 1e-6);
	get32(g, got, dw, n);
	gcheck_close(gaps ? "sgd w, runs with gaps" : "sgd w", got, w, n, 1e-6);
	mfr_gpu_free(g, dw);
	mfr_gpu_free(g, dv);
	mfr_gpu_free(g, dg);
	free(w);
	free(v);
	free(gr);
	free(got);
}

/* A sum of n positive terms in float32: relative error at most about
 * (terms per thread + tree depth) x 2^-24, well under 1e-5 for these n. */
static void test_sumsq(mfr_gpu *g, size_t n)
{
	float *x = hrand(n, 2, MFR_F32), got, want;
	double s = 0;
	for (size_t i = 0; i < n; i++)
		s += (double)x[i] * x[i];
	want = (float)s;
	float *dx = (float *)gcheck_put(g, x, n ? n : 1, MFR_F32), *dout = (float *)gcheck_alloc(g, 4);
	int *dflag = (int *)gcheck_alloc(g, sizeof(int)), flag = 0;
	put_raw(g, dflag, &flag, sizeof flag);
	mfr_sumsq_cuda(dout, dflag, dx, n, g);
	get32(g, &got, dout, 1);
	get_raw(g, &flag, dflag, sizeof flag);
	gcheck_close(nm("sumsq n=%zu", n), &got, &want, 1, 1e-5);
	CHECK_EQ_INT(flag, 0); /* all finite: left alone */
	mfr_sumsq_cuda(dout, NULL, dx, n, g);
	get32(g, &got, dout, 1);
	gcheck_close(nm("sumsq n=%zu without flag", n), &got, &want, 1, 1e-5);
	if (n > 2) { /* a non-finite value sets the flag: infinity, then NaN */
		float bad[2] = {INFINITY, NAN};
		for (int k = 0; k < 2; k++) {
			flag = 0;
			put_raw(g, dflag, &flag, sizeof flag);
			put_raw(g, dx + n / 2, &bad[k], 4);
			mfr_sumsq_cuda(dout, dflag, dx, n, g);
			get_raw(g, &flag, dflag, sizeof flag);
			CHECK_EQ_INT(flag, 1);
		}
	}
	mfr_gpu_free(g, dx);
	mfr_gpu_free(g, dout);
	mfr_gpu_free(g, dflag);
	free(x);
}

static void test_scale(mfr_gpu *g)
{
	size_t n = 100003;
	float *x = hrand(n, 3, MFR_F32), *got = falloc(n);
	float *dx = (float *)gcheck_put(g, x, n, MFR_F32);
	mfr_scale_cuda(dx, -0.375f, n, g);
	for (size_t i = 0; i < n; i++)
		x[i] *= -0.375f;
	get32(g, got, dx, n);
	gcheck_close("scale", got, x, n, 0);
	mfr_gpu_free(g, dx);
	free(x);
	free(got);
}

/* ---- batch norm ---- */

/* A batch norm backward's din (device, NHWC), dgamma and dbeta against the
 * reference's; got: scratch of N C HW floats. what names the case. */
static void check_bn_grads(mfr_gpu *g, const char *what, mfr_dtype t, int N, int C, int HW, float *got,
			   const void *ddin, const float *din, const float *ddg, const float *dg, const float *ddb,
			   const float *db)
{
	size_t M = (size_t)N * HW;
	gcheck_get_nchw(g, got, ddin, N, C, HW, t);
	gcheck_close(nm("%s din", what), got, din, M * C, store_tol(t, 1e-5));
	get32(g, got, ddg, C);
	gcheck_close(nm("%s dgamma", what), got, dg, C, SUM_TOL(M));
	get32(g, got, ddb, C);
	gcheck_close(nm("%s dbeta", what), got, db, C, SUM_TOL(M));
}

/* Forward (out, saved mean/invstd, running statistics) and backward (din,
 * dgamma, dbeta) of batch norm on (N,C,HW), M = N*HW rows, against the
 * reference. Inputs are offset by shift (2; 30 in the fp32 cases that hold
 * the one-pass statistics to the reference's two passes) so that the
 * variance is small against the mean squared: E[x^2] - E[x]^2 in float
 * would lose 12 bits at 30 and fail. The backward is fed the reference's
 * mean and invstd on both sides. */
static void test_bn(mfr_gpu *g, mfr_dtype t, int N, int C, int HW, int training, float shift)
{
	size_t M = (size_t)N * HW, cnt = M * C;
	double eps = 1e-5, mom = 0.1;
	const char *tn = mfr_dtype_name(t);
	char mode[32];
	snprintf(mode, sizeof mode, "%s x+%g", training ? "train" : "infer", shift);
	float *x = falloc(cnt);
	gcheck_fill(x, cnt, next_seed++, 1);
	for (size_t i = 0; i < cnt; i++)
		x[i] += shift;
	gcheck_round(x, cnt, t);
	float *gamma = hrand(C, 0.5f, MFR_F32), *beta = hrand(C, 0.5f, MFR_F32), *rm = hrand(C, 0.5f, MFR_F32);
	float *rv = hrand(C, 0.4f, MFR_F32);
	for (int c = 0; c < C; c++) {
		gamma[c] += 1;
		rv[c] += 0.5f;
	}
	float *out = falloc(cnt), *mean = falloc(C), *invstd = falloc(C), *rm2 = fdup(rm, C), *rv2 = fdup(rv, C);
	mfr_batchnorm_forward_ref(out, mean, invstd, rm2, rv2, x, gamma, beta, N, C, HW, training, eps, mom);

	void *dx = put_nhwc(g, x, N, C, HW, t), *dout = gcheck_alloc(g, cnt * mfr_dtype_size(t));
	float *dgam = (float *)gcheck_put(g, gamma, C, MFR_F32), *dbet = (float *)gcheck_put(g, beta, C, MFR_F32);
	float *drm = (float *)gcheck_put(g, rm, C, MFR_F32), *drv = (float *)gcheck_put(g, rv, C, MFR_F32);
	float *dmean = (float *)gcheck_alloc(g, C * 4), *dinv = (float *)gcheck_alloc(g, C * 4);
	mfr_bn_forward_cuda(dout, dmean, dinv, drm, drv, dx, dgam, dbet, (int)M, C, training, eps, mom, t, g);
	float *got = falloc(cnt);
	gcheck_get_nchw(g, got, dout, N, C, HW, t);
	gcheck_close(nm("bn_forward %s %s N=%d C=%d HW=%d out", tn, mode, N, C, HW), got, out, cnt,
		     store_tol(t, 1e-5));
	get32(g, got, dmean, C);
	gcheck_close(nm("bn_forward %s %s N=%d C=%d HW=%d mean", tn, mode, N, C, HW), got, mean, C, 1e-5);
	get32(g, got, dinv, C);
	gcheck_close(nm("bn_forward %s %s N=%d C=%d HW=%d invstd", tn, mode, N, C, HW), got, invstd, C, 1e-5);
	get32(g, got, drm, C);
	gcheck_close(nm("bn_forward %s %s N=%d C=%d HW=%d running_mean", tn, mode, N, C, HW), got, rm2, C, 1e-5);
	get32(g, got, drv, C);
	gcheck_close(nm("bn_forward %s %s N=%d C=%d HW=%d running_var", tn, mode, N, C, HW), got, rv2, C, 1e-5);

	/* backward: din, dgamma, dbeta pre-filled (+=) */
	float *dy = hrand(cnt, 1, t), *din = hrand(cnt, 1, t), *dg = hrand(C, 1, MFR_F32), *db = hrand(C, 1, MFR_F32);
	void *ddy = put_nhwc(g, dy, N, C, HW, t), *ddin = put_nhwc(g, din, N, C, HW, t);
	float *ddg = (float *)gcheck_put(g, dg, C, MFR_F32), *ddb = (float *)gcheck_put(g, db, C, MFR_F32);
	float *rmean = (float *)gcheck_put(g, mean, C, MFR_F32), *rinv = (float *)gcheck_put(g, invstd, C, MFR_F32);
	mfr_bn_backward_cuda(ddin, ddg, ddb, ddy, dx, dgam, rmean, rinv, (int)M, C, training, 1, t, g);
	mfr_batchnorm_backward_ref(din, dg, db, dy, x, gamma, mean, invstd, N, C, HW, training);
	char what[96];
	snprintf(what, sizeof what, "bn_backward %s %s N=%d C=%d HW=%d", tn, mode, N, C, HW);
	check_bn_grads(g, what, t, N, C, HW, got, ddin, din, ddg, dg, ddb, db);
	/* acc = 0: din assigned */
	float *din0 = falloc(cnt), *junk = falloc(2 * (size_t)C);
	void *dnan = gcheck_nan(g, cnt, t);
	mfr_bn_backward_cuda(dnan, ddg, ddb, ddy, dx, dgam, rmean, rinv, (int)M, C, training, 0, t, g);
	mfr_batchnorm_backward_ref(din0, junk, junk + C, dy, x, gamma, mean, invstd, N, C, HW, training);
	gcheck_get_nchw(g, got, dnan, N, C, HW, t);
	gcheck_close(nm("bn_backward %s %s N=%d C=%d HW=%d din, acc 0", tn, mode, N, C, HW), got, din0, cnt,
		     store_tol(t, 1e-5));
	mfr_gpu_free(g, dnan);
	free(din0);
	free(junk);

	void *bufs[] = {dx, dout, dgam, dbet, drm, drv, dmean, dinv, ddy, ddin, ddg, ddb, rmean, rinv};
	for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++)
		mfr_gpu_free(g, bufs[i]);
	float *hb[] = {x, gamma, beta, rm, rv, out, mean, invstd, rm2, rv2, got, dy, din, dg, db};
	for (size_t i = 0; i < sizeof hb / sizeof hb[0]; i++)
		free(hb[i]);
}

/* ---- a bn fused into its reader: PReLU(bn(x)) and bn(a) + b ---- */

/* The executor's training fusions (gnet.c plan_fusions) against the
 * reference layers one after the other, the bn's output in float (the fused
 * launchers never round it to t): statistics alone (mfr_bn_forward_cuda
 * with out NULL), then mfr_bn_apply_cuda with a slope against
 * prelu_forward(batchnorm_forward(x)); mfr_bn_prelu_backward_cuda (+= and
 * from NaN with acc 0) against prelu_backward then batchnorm_backward;
 * mfr_bn_add_cuda with the bn on input a (b plain) and on both, and that
 * rectified. */
static void test_bn_fused(mfr_gpu *g, mfr_dtype t, int N, int C, int HW, int training)
{
	size_t M = (size_t)N * HW, cnt = M * C;
	const char *tn = mfr_dtype_name(t), *mode = training ? "train" : "infer";
	double eps = 1e-5, mom = 0.1;
	float *x = hrand(cnt, 1, t), *x2 = hrand(cnt, 1, t), *b = hrand(cnt, 1, t);
	for (size_t i = 0; i < cnt; i++)
		x[i] += 0.5f, x2[i] -= 0.25f; /* off centre: negative and positive outputs */
	gcheck_round(x, cnt, t);
	gcheck_round(x2, cnt, t);
	float *gamma = hrand(C, 0.5f, MFR_F32), *beta = hrand(C, 0.5f, MFR_F32), *slope = hrand(C, 0.2f, MFR_F32);
	float *rm = hrand(C, 0.5f, MFR_F32), *rv = hrand(C, 0.4f, MFR_F32);
	for (int c = 0; c < C; c++)
		gamma[c] += 1, rv[c] += 0.5f, slope[c] += 0.25f;
	float *y = falloc(cnt), *z = falloc(cnt), *mean = falloc(C), *invstd = falloc(C), *got = falloc(cnt);
	float *rm2 = fdup(rm, C), *rv2 = fdup(rv, C);
	mfr_batchnorm_forward_ref(y, mean, invstd, rm2, rv2, x, gamma, beta, N, C, HW, training, eps, mom);
	mfr_prelu_forward_ref(z, y, slope, N, C, HW);

	void *dx = put_nhwc(g, x, N, C, HW, t), *dz = gcheck_alloc(g, cnt * mfr_dtype_size(t));
	float *dgam = (float *)gcheck_put(g, gamma, C, MFR_F32), *dbet = (float *)gcheck_put(g, beta, C, MFR_F32);
	float *dsl = (float *)gcheck_put(g, slope, C, MFR_F32);
	float *drm = (float *)gcheck_put(g, rm, C, MFR_F32), *drv = (float *)gcheck_put(g, rv, C, MFR_F32);
	float *dmean = (float *)gcheck_alloc(g, C * 4), *dinv = (float *)gcheck_alloc(g, C * 4);
	mfr_bn_forward_cuda(NULL, dmean, dinv, drm, drv, dx, dgam, dbet, (int)M, C, training, eps, mom, t, g);
	get32(g, got, dmean, C);
	gcheck_close(nm("bn stats only %s %s N=%d C=%d HW=%d mean", tn, mode, N, C, HW), got, mean, C, 1e-5);
	get32(g, got, drv, C);
	gcheck_close(nm("bn stats only %s %s N=%d C=%d HW=%d running_var", tn, mode, N, C, HW), got, rv2, C, 1e-5);
	mfr_bn_norm bn = {dgam, dbet, dmean, dinv};
	mfr_bn_apply_cuda(dz, dx, &bn, dsl, (int)M, C, t, g);
	gcheck_get_nchw(g, got, dz, N, C, HW, t);
	gcheck_close(nm("bn_apply + prelu %s %s N=%d C=%d HW=%d", tn, mode, N, C, HW), got, z, cnt, store_tol(t, 1e-5));

	/* backward, on the reference's statistics: din, dgamma, dbeta, dslope pre-filled (+=) */
	float *dzv = hrand(cnt, 1, t), *din = hrand(cnt, 1, t), *dg = hrand(C, 1, MFR_F32), *db = hrand(C, 1, MFR_F32);
	float *ds = hrand(C, 1, MFR_F32), *dy = falloc(cnt);
	void *ddz = put_nhwc(g, dzv, N, C, HW, t), *ddin = put_nhwc(g, din, N, C, HW, t);
	float *ddg = (float *)gcheck_put(g, dg, C, MFR_F32), *ddb = (float *)gcheck_put(g, db, C, MFR_F32);
	float *dds = (float *)gcheck_put(g, ds, C, MFR_F32);
	float *rmean = (float *)gcheck_put(g, mean, C, MFR_F32), *rinv = (float *)gcheck_put(g, invstd, C, MFR_F32);
	mfr_bn_norm rbn = {dgam, dbet, rmean, rinv};
	mfr_bn_prelu_backward_cuda(ddin, ddg, ddb, dds, ddz, dx, &rbn, dsl, (int)M, C, training, 1, t, g);
	mfr_prelu_backward_ref(dy, ds, dzv, y, slope, N, C, HW);
	mfr_batchnorm_backward_ref(din, dg, db, dy, x, gamma, mean, invstd, N, C, HW, training);
	char what[96];
	snprintf(what, sizeof what, "bn_prelu_backward %s %s N=%d C=%d HW=%d", tn, mode, N, C, HW);
	check_bn_grads(g, what, t, N, C, HW, got, ddin, din, ddg, dg, ddb, db);
	get32(g, got, dds, C);
	gcheck_close(nm("bn_prelu_backward %s %s N=%d C=%d HW=%d dslope", tn, mode, N, C, HW), got, ds, C, SUM_TOL(M));
	float *din0 = falloc(cnt), *junk = falloc(3 * (size_t)C);
	void *dnan = gcheck_nan(g, cnt, t);
	mfr_bn_prelu_backward_cuda(dnan, ddg, ddb, dds, ddz, dx, &rbn, dsl, (int)M, C, training, 0, t, g);
	mfr_batchnorm_backward_ref(din0, junk, junk + C, dy, x, gamma, mean, invstd, N, C, HW, training);
	gcheck_get_nchw(g, got, dnan, N, C, HW, t);
	gcheck_close(nm("bn_prelu_backward %s %s N=%d C=%d HW=%d din, acc 0", tn, mode, N, C, HW), got, din0, cnt,
		     store_tol(t, 1e-5));

	/* bn(x) + b, then bn(x) + bn2(x2) with the second norm's own statistics */
	float *sum = falloc(cnt), *y2 = falloc(cnt), *mean2 = falloc(C), *inv2 = falloc(C);
	for (size_t i = 0; i < cnt; i++)
		sum[i] = y[i] + b[i];
	void *dbuf = put_nhwc(g, b, N, C, HW, t), *dx2 = put_nhwc(g, x2, N, C, HW, t);
	mfr_bn_add_cuda(dz, dx, &rbn, dbuf, NULL, 0, (int)M, C, t, g);
	gcheck_get_nchw(g, got, dz, N, C, HW, t);
	gcheck_close(nm("bn_add a %s %s N=%d C=%d HW=%d", tn, mode, N, C, HW), got, sum, cnt, store_tol(t, 1e-5));
	mfr_batchnorm_forward_ref(y2, mean2, inv2, rm2, rv2, x2, beta, gamma, N, C, HW, training, eps, mom);
	for (size_t i = 0; i < cnt; i++)
		sum[i] = y[i] + y2[i];
	float *dm2 = (float *)gcheck_put(g, mean2, C, MFR_F32), *di2 = (float *)gcheck_put(g, inv2, C, MFR_F32);
	mfr_bn_norm bn2 = {dbet, dgam, dm2, di2}; /* gamma and beta swapped: a second, different norm */
	mfr_bn_add_cuda(dz, dx, &rbn, dx2, &bn2, 0, (int)M, C, t, g);
	gcheck_get_nchw(g, got, dz, N, C, HW, t);
	gcheck_close(nm("bn_add a, b %s %s N=%d C=%d HW=%d", tn, mode, N, C, HW), got, sum, cnt, store_tol(t, 1e-5));
	mfr_relu_forward_ref(sum, sum, cnt); /* then rectified: an add only a relu reads */
	mfr_bn_add_cuda(dz, dx, &rbn, dx2, &bn2, 1, (int)M, C, t, g);
	gcheck_get_nchw(g, got, dz, N, C, HW, t);
	gcheck_close(nm("bn_add a, b, relu %s %s N=%d C=%d HW=%d", tn, mode, N, C, HW), got, sum, cnt,
		     store_tol(t, 1e-5));

	void *bufs[] = {dx, dz, dgam, dbet, dsl, drm, drv, dmean, dinv, ddz, ddin, ddg, ddb, dds, rmean, rinv, dnan,
			dbuf, dx2, dm2, di2};
	for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++)
		mfr_gpu_free(g, bufs[i]);
	float *hb[] = {x, x2, b, gamma, beta, slope, rm, rv, y, z, mean, invstd, got, rm2, rv2, dzv, din, dg, db, ds, dy,
		       din0, junk, sum, y2, mean2, inv2};
	for (size_t i = 0; i < sizeof hb / sizeof hb[0]; i++)
		free(hb[i]);
}

/* ---- PReLU ---- */

/* Every 7th input is exactly 0: the slope side, as the reference. */
static void test_prelu(mfr_gpu *g, mfr_dtype t, int N, int C, int HW)
{
	size_t M = (size_t)N * HW, cnt = M * C;
	const char *tn = mfr_dtype_name(t);
	float *x = hrand(cnt, 1, t), *slope = hrand(C, 0.2f, MFR_F32), *out = falloc(cnt), *got = falloc(cnt);
	for (size_t i = 0; i < cnt; i += 7)
		x[i] = 0;
	for (int c = 0; c < C; c++)
		slope[c] += 0.25f;
	mfr_prelu_forward_ref(out, x, slope, N, C, HW);
	void *dx = put_nhwc(g, x, N, C, HW, t), *dout = gcheck_alloc(g, cnt * mfr_dtype_size(t));
	float *dslope = (float *)gcheck_put(g, slope, C, MFR_F32);
	mfr_prelu_forward_cuda(dout, dx, dslope, (int)M, C, t, g);
	gcheck_get_nchw(g, got, dout, N, C, HW, t);
	gcheck_close(nm("prelu_forward %s N=%d C=%d HW=%d", tn, N, C, HW), got, out, cnt, store_tol(t, 1e-6));

	float *dy = hrand(cnt, 1, t), *din = hrand(cnt, 1, t), *ds = hrand(C, 1, MFR_F32);
	void *ddy = put_nhwc(g, dy, N, C, HW, t), *ddin = put_nhwc(g, din, N, C, HW, t);
	float *dds = (float *)gcheck_put(g, ds, C, MFR_F32);
	mfr_prelu_backward_cuda(ddin, dds, ddy, dx, dslope, (int)M, C, 1, t, g);
	mfr_prelu_backward_ref(din, ds, dy, x, slope, N, C, HW);
	gcheck_get_nchw(g, got, ddin, N, C, HW, t);
	gcheck_close(nm("prelu_backward %s N=%d C=%d HW=%d din", tn, N, C, HW), got, din, cnt, store_tol(t, 1e-6));
	float *din0 = falloc(cnt), *junk = falloc(C);
	void *dnan = gcheck_nan(g, cnt, t);
	float *dds0 = (float *)gcheck_put(g, junk, C, MFR_F32);
	mfr_prelu_backward_cuda(dnan, dds0, ddy, dx, dslope, (int)M, C, 0, t, g);
	mfr_prelu_backward_ref(din0, junk, dy, x, slope, N, C, HW);
	gcheck_get_nchw(g, got, dnan, N, C, HW, t);
	gcheck_close(nm("prelu_backward %s N=%d C=%d HW=%d din, acc 0", tn, N, C, HW), got, din0, cnt,
		     store_tol(t, 1e-6));
	mfr_gpu_free(g, dnan);
	mfr_gpu_free(g, dds0);
	free(din0);
	free(junk);
	get32(g, got, dds, C);
	gcheck_close(nm("prelu_backward %s N=%d C=%d HW=%d dslope", tn, N, C, HW), got, ds, C, SUM_TOL(M));

	void *bufs[] = {dx, dout, dslope, ddy, ddin, dds};
	for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++)
		mfr_gpu_free(g, bufs[i]);
	float *hb[] = {x, slope, out, got, dy, din, ds};
	for (size_t i = 0; i < sizeof hb / sizeof hb[0]; i++)
		free(hb[i]);
}

/* ---- ReLU, sigmoid, add on n values ---- */

static void test_pointwise(mfr_gpu *g, mfr_dtype t, size_t n)
{
	const char *tn = mfr_dtype_name(t);
	size_t sz = n * mfr_dtype_size(t);
	float *x = hrand(n, 12, t), *want = falloc(n), *got = falloc(n);
	for (size_t i = 0; i < n; i += 11) /* far outside expf's range, and exact zeros */
		x[i] = i % 2 ? 200.f : -200.f;
	for (size_t i = 5; i < n; i += 13)
		x[i] = 0;
	void *dx = gcheck_put(g, x, n, t), *dy = gcheck_alloc(g, sz);

	/* relu: exact forward, in place too */
	mfr_relu_forward_ref(want, x, n);
	mfr_relu_forward_cuda(dy, dx, n, t, g);
	gcheck_get(g, got, dy, n, t);
	gcheck_close(nm("relu_forward %s n=%zu", tn, n), got, want, n, 0);
	void *dxi = gcheck_put(g, x, n, t);
	mfr_relu_forward_cuda(dxi, dxi, n, t, g);
	gcheck_get(g, got, dxi, n, t);
	gcheck_close(nm("relu_forward in place %s n=%zu", tn, n), got, want, n, 0);
	float *dout = hrand(n, 1, t), *din = hrand(n, 1, t);
	void *ddout = gcheck_put(g, dout, n, t), *ddin = gcheck_put(g, din, n, t);
	mfr_relu_backward_cuda(ddin, ddout, dy, n, 1, t, g);
	mfr_relu_backward_ref(din, dout, want, n);
	gcheck_get(g, got, ddin, n, t);
	gcheck_close(nm("relu_backward %s n=%zu", tn, n), got, din, n, store_tol(t, 0));
	float *zero = falloc(n);
	void *dnan = gcheck_nan(g, n, t);
	mfr_relu_backward_cuda(dnan, ddout, dy, n, 0, t, g);
	mfr_relu_backward_ref(zero, dout, want, n);
	gcheck_get(g, got, dnan, n, t);
	gcheck_close(nm("relu_backward %s n=%zu, acc 0", tn, n), got, zero, n, 0);

	/* sigmoid: expf and a division against double, a few units of 2^-24 */
	mfr_sigmoid_forward_ref(want, x, n);
	mfr_sigmoid_forward_cuda(dy, dx, n, t, g);
	gcheck_get(g, got, dy, n, t);
	gcheck_close(nm("sigmoid_forward %s n=%zu", tn, n), got, want, n, store_tol(t, 1e-6));
	mfr_sigmoid_forward_cuda(dxi, dx, n, t, g);
	mfr_sigmoid_forward_cuda(dxi, dxi, n, t, g); /* in place: sigmoid(sigmoid(x)) */
	float *want2 = falloc(n);
	memcpy(want2, got, n * sizeof *want2); /* the device's sigmoid(x), as type t holds it */
	mfr_sigmoid_forward_ref(want2, want2, n);
	gcheck_get(g, got, dxi, n, t);
	gcheck_close(nm("sigmoid_forward in place %s n=%zu", tn, n), got, want2, n, store_tol(t, 1e-6));
	/* backward reads the forward's output: the reference's, rounded to t */
	gcheck_round(want, n, t);
	void *dys = gcheck_put(g, want, n, t);
	float *din2 = hrand(n, 1, t);
	void *ddin2 = gcheck_put(g, din2, n, t);
	mfr_sigmoid_backward_cuda(ddin2, ddout, dys, n, t, g);
	mfr_sigmoid_backward_ref(din2, dout, want, n);
	gcheck_get(g, got, ddin2, n, t);
	gcheck_close(nm("sigmoid_backward %s n=%zu", tn, n), got, din2, n, store_tol(t, 1e-6));

	/* add: out = a + b, into a fresh buffer and in place over a */
	float *b = hrand(n, 3, t);
	void *db = gcheck_put(g, b, n, t);
	mfr_add_forward_ref(want, x, b, n);
	mfr_add_forward_cuda(dy, dx, db, n, t, g);
	gcheck_get(g, got, dy, n, t);
	gcheck_close(nm("add_forward %s n=%zu", tn, n), got, want, n, store_tol(t, 0));
	void *da = gcheck_put(g, x, n, t);
	mfr_add_forward_cuda(da, da, db, n, t, g);
	gcheck_get(g, got, da, n, t);
	gcheck_close(nm("add_forward in place %s n=%zu", tn, n), got, want, n, store_tol(t, 0));
	/* backward: both, then db alone (da NULL) */
	float *ga = hrand(n, 1, t), *gb = hrand(n, 1, t);
	void *dga = gcheck_put(g, ga, n, t), *dgb = gcheck_put(g, gb, n, t);
	mfr_add_backward_cuda(dga, dgb, ddout, n, 1, t, g);
	mfr_add_backward_cuda(NULL, dgb, ddout, n, 1, t, g);
	for (size_t i = 0; i < n; i++) {
		ga[i] += dout[i];
		gb[i] += dout[i];
	}
	gcheck_round(gb, n, t); /* the device rounds after the first += */
	for (size_t i = 0; i < n; i++)
		gb[i] += dout[i];
	gcheck_get(g, got, dga, n, t);
	gcheck_close(nm("add_backward %s n=%zu da", tn, n), got, ga, n, store_tol(t, 0));
	gcheck_get(g, got, dgb, n, t);
	gcheck_close(nm("add_backward %s n=%zu db twice, da NULL", tn, n), got, gb, n, store_tol(t, 0));
	mfr_add_backward_cuda(dnan, NULL, ddout, n, 0, t, g); /* acc 0: a copy */
	gcheck_get(g, got, dnan, n, t);
	gcheck_close(nm("add_backward %s n=%zu, acc 0", tn, n), got, dout, n, 0);
	mfr_gpu_free(g, dnan);
	free(zero);

	void *bufs[] = {dx, dy, dxi, ddout, ddin, dys, ddin2, db, da, dga, dgb};
	for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++)
		mfr_gpu_free(g, bufs[i]);
	float *hb[] = {x, want, got, dout, din, want2, din2, b, ga, gb};
	for (size_t i = 0; i < sizeof hb / sizeof hb[0]; i++)
		free(hb[i]);
}

/* ---- concat ---- */

/* Three inputs of 3, 17 and 64 channels; the backward skips input 1
 * (NULL). Copies are exact; the += of backward rounds once. */
static void test_concat(mfr_gpu *g, mfr_dtype t, int N, int HW)
{
	enum { K = 3 };
	int C[K] = {3, 17, 64}, Ct = 3 + 17 + 64;
	size_t M = (size_t)N * HW;
	const char *tn = mfr_dtype_name(t);
	float *x[K], *gx[K];
	void *dxs[K], *dgx[K];
	for (int i = 0; i < K; i++) {
		x[i] = hrand(M * C[i], 2, t);
		gx[i] = hrand(M * C[i], 2, t);
		dxs[i] = put_nhwc(g, x[i], N, C[i], HW, t);
		dgx[i] = i == 1 ? NULL : put_nhwc(g, gx[i], N, C[i], HW, t);
	}
	float *want = falloc(M * Ct), *got = falloc(M * Ct);
	const float *xin[K] = {x[0], x[1], x[2]};
	mfr_concat_forward_ref(want, xin, K, C, N, HW);
	void *dout = gcheck_alloc(g, M * Ct * mfr_dtype_size(t));
	const void *din_c[K] = {dxs[0], dxs[1], dxs[2]};
	mfr_concat_forward_cuda(dout, din_c, K, C, (int)M, t, g);
	gcheck_get_nchw(g, got, dout, N, Ct, HW, t);
	gcheck_close(nm("concat_forward %s N=%d HW=%d", tn, N, HW), got, want, M * Ct, 0);

	float *dy = hrand(M * Ct, 1, t);
	void *ddy = put_nhwc(g, dy, N, Ct, HW, t);
	mfr_concat_backward_cuda(dgx, ddy, K, C, (int)M, t, g);
	float *gxr[K] = {gx[0], gx[1], gx[2]};
	mfr_concat_backward_ref(gxr, dy, K, C, N, HW);
	for (int i = 0; i < K; i += 2) {
		gcheck_get_nchw(g, got, dgx[i], N, C[i], HW, t);
		gcheck_close(nm("concat_backward %s N=%d HW=%d din[%d]", tn, N, HW, i), got, gx[i], M * C[i],
			     store_tol(t, 0));
	}
	for (int i = 0; i < K; i++) {
		mfr_gpu_free(g, dxs[i]);
		mfr_gpu_free(g, dgx[i]);
		free(x[i]);
		free(gx[i]);
	}
	mfr_gpu_free(g, dout);
	mfr_gpu_free(g, ddy);
	free(want);
	free(got);
	free(dy);
}

/* ---- dropout ---- */

/* The mask must be the reference's on the NCHW tensor, moved to NHWC, byte
 * for byte. Outputs: in * (float)(1/(1-p)) on the device against
 * (float)(in * (1/(1-p))) in the reference, one or two roundings: 1e-6. */
static void test_dropout(mfr_gpu *g, mfr_dtype t, int N, int C, int HW, double p, uint64_t seed)
{
	size_t cnt = (size_t)N * C * HW;
	const char *tn = mfr_dtype_name(t);
	float *x = hrand(cnt, 2, t), *out = falloc(cnt), *got = falloc(cnt);
	uint8_t *mask = (uint8_t *)gcheck_xmalloc(cnt), *want = (uint8_t *)gcheck_xmalloc(cnt);
	uint8_t *gmask = (uint8_t *)gcheck_xmalloc(cnt);
	mfr_dropout_forward_ref(out, mask, x, p, seed, cnt);
	for (int n = 0; n < N; n++) /* NCHW -> NHWC, bytes */
		for (int c = 0; c < C; c++)
			for (int i = 0; i < HW; i++)
				want[((size_t)n * HW + i) * C + c] = mask[((size_t)n * C + c) * HW + i];
	void *dx = put_nhwc(g, x, N, C, HW, t), *dout = gcheck_alloc(g, cnt * mfr_dtype_size(t));
	uint8_t *dmask = (uint8_t *)gcheck_alloc(g, cnt);
	mfr_dropout_forward_cuda(dout, dmask, dx, p, seed, N, C, HW, t, g);
	get_raw(g, gmask, dmask, cnt);
	size_t bad = 0, first = 0, kept = 0;
	for (size_t i = 0; i < cnt; i++) {
		kept += want[i];
		if (gmask[i] != want[i] && !bad++)
			first = i;
	}
	if (!check_report(bad == 0, nm("dropout_forward %s N=%d C=%d HW=%d p=%g mask", tn, N, C, HW, p), __FILE__,
			  __LINE__))
		fprintf(stderr, "    %zu of %zu differ; first at NHWC %zu: got %d want %d\n", bad, cnt, first,
			gmask[first], want[first]);
	else
		printf("ok dropout mask p=%g: %zu of %zu kept\n", p, kept, cnt);
	if (p == 0)
		CHECK_EQ_INT(kept, cnt);
	gcheck_get_nchw(g, got, dout, N, C, HW, t);
	gcheck_close(nm("dropout_forward %s N=%d C=%d HW=%d p=%g out", tn, N, C, HW, p), got, out, cnt,
		     store_tol(t, 1e-6));

	/* backward, on the NHWC arrays directly (it is element-wise) */
	float *dy = hrand(cnt, 1, t), *din = hrand(cnt, 1, t);
	void *ddy = gcheck_put(g, dy, cnt, t), *ddin = gcheck_put(g, din, cnt, t);
	mfr_dropout_backward_cuda(ddin, ddy, dmask, p, cnt, 1, t, g);
	mfr_dropout_backward_ref(din, dy, want, p, cnt);
	gcheck_get(g, got, ddin, cnt, t);
	gcheck_close(nm("dropout_backward %s N=%d C=%d HW=%d p=%g", tn, N, C, HW, p), got, din, cnt,
		     store_tol(t, 1e-6));
	float *din0 = falloc(cnt);
	void *dnan = gcheck_nan(g, cnt, t);
	mfr_dropout_backward_cuda(dnan, ddy, dmask, p, cnt, 0, t, g);
	mfr_dropout_backward_ref(din0, dy, want, p, cnt);
	gcheck_get(g, got, dnan, cnt, t);
	gcheck_close(nm("dropout_backward %s N=%d C=%d HW=%d p=%g, acc 0", tn, N, C, HW, p), got, din0, cnt,
		     store_tol(t, 1e-6));
	mfr_gpu_free(g, dnan);
	free(din0);

	mfr_gpu_free(g, dx);
	mfr_gpu_free(g, dout);
	mfr_gpu_free(g, dmask);
	mfr_gpu_free(g, ddy);
	mfr_gpu_free(g, ddin);
	free(x);
	free(out);
	free(got);
	free(mask);
	free(want);
	free(gmask);
	free(dy);
	free(din);
}

/* ---- L2 normalisation ---- */

/* clamp: row 0 is zeros and row 1 tiny (norm < eps), so both take the
 * clamped branch; the backward is fed the reference's norm. */
static void test_l2norm(mfr_gpu *g, mfr_dtype t, int N, int D, double eps, int clamp)
{
	size_t cnt = (size_t)N * D;
	const char *tn = mfr_dtype_name(t);
	float *x = hrand(cnt, 1, t), *out = falloc(cnt), *norm = falloc(N), *got = falloc(cnt);
	if (clamp) {
		for (int i = 0; i < D; i++) {
			x[i] = 0;
			x[D + i] *= 1e-3f;
		}
		gcheck_round(x, cnt, t);
	}
	mfr_l2norm_forward_ref(out, norm, x, N, D, eps);
	void *dx = gcheck_put(g, x, cnt, t), *dout = gcheck_alloc(g, cnt * mfr_dtype_size(t));
	float *dnorm = (float *)gcheck_alloc(g, N * 4);
	mfr_l2norm_forward_cuda(dout, dnorm, dx, N, D, eps, t, g);
	gcheck_get(g, got, dout, cnt, t);
	gcheck_close(nm("l2norm_forward %s N=%d D=%d eps=%g out", tn, N, D, eps), got, out, cnt, store_tol(t, 1e-5));
	get32(g, got, dnorm, N);
	gcheck_close(nm("l2norm_forward %s N=%d D=%d eps=%g norm", tn, N, D, eps), got, norm, N, 1e-5);

	float *dy = hrand(cnt, 1, t), *din = hrand(cnt, 1, t);
	void *ddy = gcheck_put(g, dy, cnt, t), *ddin = gcheck_put(g, din, cnt, t);
	float *rnorm = (float *)gcheck_put(g, norm, N, MFR_F32);
	mfr_l2norm_backward_cuda(ddin, ddy, dx, rnorm, N, D, eps, t, g);
	mfr_l2norm_backward_ref(din, dy, x, norm, N, D, eps);
	gcheck_get(g, got, ddin, cnt, t);
	gcheck_close(nm("l2norm_backward %s N=%d D=%d eps=%g", tn, N, D, eps), got, din, cnt, store_tol(t, 1e-5));

	mfr_gpu_free(g, dx);
	mfr_gpu_free(g, dout);
	mfr_gpu_free(g, dnorm);
	mfr_gpu_free(g, ddy);
	mfr_gpu_free(g, ddin);
	mfr_gpu_free(g, rnorm);
	free(x);
	free(out);
	free(norm);
	free(got);
	free(dy);
	free(din);
}

static void run_all(mfr_gpu *g)
{
	test_convert(g);
	for (int a = 0; a < 3; a++)
		for (int b = 0; b < 3; b++)
			test_layout(g, all_types[a], all_types[b], 2, 17, 35);
	test_layout(g, MFR_F32, MFR_F32, 3, 130, 33 * 33);
	test_layout(g, MFR_F32, MFR_F16, 1, 3, 37 * 41);
	test_layout(g, MFR_BF16, MFR_BF16, 5, 64, 7 * 7);
	for (int k = 0; k < 3; k++) {
		test_input(g, all_types[k], 3, 37, 41, 0);
		test_input(g, all_types[k], 2, 112, 112, 1);
	}
	test_side(g);
	test_fill(g);
	test_sgd(g, 0);
	test_sgd(g, 1);
	test_sumsq(g, 0);
	test_sumsq(g, 3);
	test_sumsq(g, 1000);
	test_sumsq(g, 10000019);
	test_scale(g);

	/* (N, C, HW): odd channel counts, batch 1 and more, bn1d (HW = 1,
	 * including the smallest batch M = 2), and long columns that need many
	 * chunks in the two-stage reduction */
	static const int bn_shapes[][3] = {{2, 17, 35}, {1, 64, 143}, {3, 130, 9}, {37, 130, 1},
					   {2, 3, 1},   {4, 3, 25013}, {2, 64, 5001}};
	test_bn(g, MFR_F32, 2, 64, 5001, 1, 30);
	test_bn(g, MFR_F32, 3, 130, 9, 1, 30);
	for (int k = 0; k < 3; k++) {
		mfr_dtype t = all_types[k];
		for (size_t s = 0; s < sizeof bn_shapes / sizeof bn_shapes[0]; s++)
			for (int training = 1; training >= 0; training--)
				test_bn(g, t, bn_shapes[s][0], bn_shapes[s][1], bn_shapes[s][2], training, 2);
		for (int training = 1; training >= 0; training--) {
			test_bn_fused(g, t, 2, 17, 35, training);
			test_bn_fused(g, t, 3, 130, 9, training);
			test_bn_fused(g, t, 37, 64, 1, training);
		}
		test_bn_fused(g, t, 2, 64, 5001, 1);
		test_prelu(g, t, 2, 17, 35);
		test_prelu(g, t, 1, 130, 9);
		test_prelu(g, t, 3, 64, 4099);
		test_pointwise(g, t, 100003);
		test_pointwise(g, t, 5);
		test_pointwise(g, t, 65536); /* 4 values a thread */
		test_concat(g, t, 2, 35);
		test_concat(g, t, 1, 9);
		test_dropout(g, t, 2, 17, 35, 0.3, 12345);
		test_dropout(g, t, 1, 64, 49, 0.5, 0x9e3779b97f4a7c15ull);
		test_dropout(g, t, 3, 130, 9, 0.9, 7);
		test_dropout(g, t, 2, 3, 25, 0, 99);
		test_l2norm(g, t, 5, 512, 1e-12, 0);
		test_l2norm(g, t, 3, 130, 1e-12, 0);
		test_l2norm(g, t, 1, 17, 1e-12, 0);
		test_l2norm(g, t, 4, 512, 0.05, 1);
	}
}

#endif /* MFR_HAVE_CUDA */

int main(void)
{
#ifdef MFR_HAVE_CUDA
	mfr_gpu *g = gcheck_open("gpu elem");
	if (!g)
		return check_done();
	run_all(g);
	mfr_gpu_close(g);
#else
	printf("skip: gpu elem: built without CUDA\n");
#endif
	return check_done();
}
