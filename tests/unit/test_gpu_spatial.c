/* test_gpu_spatial.c — the CUDA spatial layers (common/cuda/spatial.cu:
 * global average pooling, max and average pooling, spatial and channel zero
 * padding) against the float reference of layers_spatial.c, in fp32, fp16
 * and bf16, on odd shapes (7x5 images, 3x3/2 pad 1, 2x2/2, 1x3, 2x3 windows
 * with unequal strides, 1x1/2 leaving inputs uncovered; C = 3, 17, 64, 130;
 * N = 1 and 3), forward (=, every output pre-filled with NaN so an unwritten
 * one fails) and backward (+=, gradients pre-filled with random values).
 * Max pooling is also run on inputs from {-2..2}, so that most windows hold
 * ties and the argmax rule (first maximum in scan order) decides where the
 * gradient goes, and with NaNs (two in one window: the first must win).
 *
 * Tolerances are relative to max(1, max |want|) (gcheck_close):
 *  - copies (max pooling forward, padding forward) are exact: 0;
 *  - a result rounded once to the type after float32 arithmetic on values
 *    within a few units: 2 * gcheck_eps(t) for the rounding plus F32SUM for
 *    float32 sums of at most ~10 terms of size <= ~10 (each rounding <=
 *    2^-24 of the partial sum, and the reference sums in a different order),
 *    or L * 2^-24 * 2 for global pooling over L positions. */
#include "gpu_check.h" /* defines: gcheck_*, CHECK, check_done */

#include "layers_spatial.h" /* defines: mfr_maxpool2d_forward_ref, mfr_pool_shape, ... */

/* float32 sums of up to ~10 terms in a different order than the reference. */
#define F32SUM (128 * 0x1p-24)

#ifdef MFR_HAVE_CUDA

#include "gpu_layers.h" /* defines: mfr_maxpool_forward_cuda, ... */

static float *hbuf(size_t n) { return (float *)gcheck_xmalloc(n * sizeof(float)); }

/* n random floats in [-a, a) rounded to t. */
static float *hrand(size_t n, uint64_t seed, float a, mfr_dtype t)
{
	float *x = hbuf(n);
	gcheck_fill(x, n, seed, a);
	gcheck_round(x, n, t);
	return x;
}

/* n integers from {-k..k}, exact in every type: ties are the rule. */
static float *hints(size_t n, uint64_t seed, int k)
{
	float *x = hbuf(n);
	mfr_rng r = {seed};
	for (size_t i = 0; i < n; i++)
		x[i] = (float)((int)mfr_rng_below(&r, (uint64_t)(2 * k + 1)) - k);
	return x;
}

/* gcheck_close where NaNs must sit at the same places in got and want (one
 * check), the rest compared as gcheck_close does. */
static void close_nan(const char *what, const float *got, const float *want, size_t n, double tol)
{
	float *a = hbuf(n), *b = hbuf(n);
	size_t bad = n;
	for (size_t i = 0; i < n; i++) {
		int ng = got[i] != got[i], nw = want[i] != want[i];
		if (ng != nw && bad == n)
			bad = i;
		a[i] = ng ? 0.f : got[i];
		b[i] = nw ? 0.f : want[i];
	}
	char msg[200];
	snprintf(msg, sizeof msg, "%s: NaNs in place", what);
	if (!check_report(bad == n, msg, __FILE__, __LINE__))
		fprintf(stderr, "    at %zu: got %g want %g\n", bad, got[bad], want[bad]);
	gcheck_close(what, a, b, n, tol);
	free(a);
	free(b);
}

static void check_launch(mfr_gpu *g, const char *what)
{
	mfr_error e = {{0}};
	CHECK(mfr_gpu_check(g, what, &e) == 0);
	if (e.msg[0])
		fprintf(stderr, "    %s\n", e.msg);
}

/* ---- global average pooling ---- */

static void test_gap(mfr_gpu *g, mfr_dtype t, int N, int C, int HW, uint64_t seed)
{
	char what[160];
	size_t nin = (size_t)N * C * HW, nout = (size_t)N * C;
	float *in = hrand(nin, seed, 1.f, t), *want = hbuf(nout), *got = hbuf(nout);
	mfr_gap_forward_ref(want, in, N, C, HW);
	void *din_ = gcheck_put_nhwc(g, in, N, C, HW, t), *dout_ = gcheck_nan(g, nout, t);
	mfr_gap_forward_cuda(dout_, din_, N, C, HW, t, g);
	check_launch(g, "gap_forward");
	gcheck_get(g, got, dout_, nout, t); /* (N,C): the same in NCHW and NHWC */
	snprintf(what, sizeof what, "gap forward %s N%d C%d HW%d", mfr_dtype_name(t), N, C, HW);
	/* one rounding to t of a mean of |x| <= 1, plus the float32 sum of HW terms */
	close_nan(what, got, want, nout, 2 * gcheck_eps(t) + 2.0 * HW * 0x1p-24);

	float *dout = hrand(nout, seed + 1, 1.f, t), *din = hrand(nin, seed + 2, 1.f, t);
	float *dwant = hbuf(nin), *dgot = hbuf(nin);
	memcpy(dwant, din, nin * sizeof(float));
	mfr_gap_backward_ref(dwant, dout, N, C, HW);
	void *ddin = gcheck_put_nhwc(g, din, N, C, HW, t), *ddout = gcheck_put(g, dout, nout, t);
	mfr_gap_backward_cuda(ddin, ddout, N, C, HW, t, g);
	check_launch(g, "gap_backward");
	gcheck_get_nchw(g, dgot, ddin, N, C, HW, t);
	snprintf(what, sizeof what, "gap backward += %s N%d C%d HW%d", mfr_dtype_name(t), N, C, HW);
	/* before + dout/HW: one rounding to t, two in float32 */
	gcheck_close(what, dgot, dwant, nin, 2 * gcheck_eps(t) + 4 * 0x1p-24);

	mfr_gpu_free(g, din_);
	mfr_gpu_free(g, dout_);
	mfr_gpu_free(g, ddin);
	mfr_gpu_free(g, ddout);
	free(in);
	free(want);
	free(got);
	free(dout);
	free(din);
	free(dwant);
	free(dgot);
}

/* ---- max and average pooling ---- */

enum { IN_UNIFORM, IN_INTS, IN_NANS };

/* Pooling (max when is_max, else average) of shape s (n, c, h, w, window;
 * init here) on inputs of the given kind, forward and backward. */
static void test_pool(mfr_gpu *g, mfr_dtype t, mfr_pool_shape s, int is_max, int kind, uint64_t seed)
{
	mfr_error e = {{0}};
	char what[200], tag[160];
	if (mfr_pool_shape_init(&s, &e) < 0) {
		check_report(0, "pool shape", __FILE__, __LINE__);
		fprintf(stderr, "    %s\n", e.msg);
		return;
	}
	snprintf(tag, sizeof tag, "%s %s N%d C%d %dx%d k%dx%d s%dx%d p%dx%d%s", is_max ? "maxpool" : "avgpool",
		 mfr_dtype_name(t), s.n, s.c, s.h, s.w, s.kh, s.kw, s.sh, s.sw, s.ph, s.pw,
		 kind == IN_INTS ? " ties" : kind == IN_NANS ? " ties+NaN" : "");
	int hw = s.h * s.w, ohw = s.ho * s.wo;
	size_t nin = (size_t)s.n * s.c * hw, nout = (size_t)s.n * s.c * ohw;
	float *in = kind == IN_UNIFORM ? hrand(nin, seed, 1.f, t) : hints(nin, seed, 2);
	if (kind == IN_NANS) {
		/* two NaNs in the first window of image 0, channel 0 (the first in scan
		 * order must take the gradient), one in the last corner of the last
		 * image and channel, one in the middle of channel 0 of the last image */
		in[s.w > 1 ? 1 : 0] = NAN;
		in[nin - 1] = NAN;
		in[(size_t)(s.n - 1) * s.c * hw + (size_t)(s.h / 2) * s.w + s.w / 2] = NAN;
		if (s.h > 1)
			in[s.w] = NAN; /* (1, 0) */
	}
	float *want = hbuf(nout), *got = hbuf(nout);
	if (is_max)
		mfr_maxpool2d_forward_ref(want, in, &s);
	else
		mfr_avgpool2d_forward_ref(want, in, &s);
	void *d_in = gcheck_put_nhwc(g, in, s.n, s.c, hw, t), *d_out = gcheck_nan(g, nout, t);
	if (is_max)
		mfr_maxpool_forward_cuda(d_out, d_in, &s, t, g);
	else
		mfr_avgpool_forward_cuda(d_out, d_in, &s, t, g);
	check_launch(g, "pool forward");
	gcheck_get_nchw(g, got, d_out, s.n, s.c, ohw, t);
	snprintf(what, sizeof what, "%s forward", tag);
	/* max: a copy of an input element, exact; average: a mean of <= kh*kw
	 * values |x| <= 1 summed in float32, rounded once to t */
	close_nan(what, got, want, nout, is_max ? 0 : 2 * gcheck_eps(t) + F32SUM);

	float *dout = hrand(nout, seed + 1, 1.f, t), *din = hrand(nin, seed + 2, 1.f, t);
	float *dwant = hbuf(nin), *dgot = hbuf(nin);
	memcpy(dwant, din, nin * sizeof(float));
	if (is_max)
		mfr_maxpool2d_backward_ref(dwant, dout, in, &s);
	else
		mfr_avgpool2d_backward_ref(dwant, dout, &s);
	void *d_din = gcheck_put_nhwc(g, din, s.n, s.c, hw, t), *d_dout = gcheck_put_nhwc(g, dout, s.n, s.c, ohw, t);
	if (is_max)
		mfr_maxpool_backward_cuda(d_din, d_dout, d_in, &s, t, g);
	else
		mfr_avgpool_backward_cuda(d_din, d_dout, &s, t, g);
	check_launch(g, "pool backward");
	gcheck_get_nchw(g, dgot, d_din, s.n, s.c, hw, t);
	snprintf(what, sizeof what, "%s backward +=", tag);
	/* before + the dout shares of the <= ceil(kh/sh)*ceil(kw/sw) windows that
	 * hold the element, summed in float32 (another order than the
	 * reference's), rounded once to t; a misrouted share is off by ~0.1-1 */
	gcheck_close(what, dgot, dwant, nin, 2 * gcheck_eps(t) + F32SUM);

	mfr_gpu_free(g, d_in);
	mfr_gpu_free(g, d_out);
	mfr_gpu_free(g, d_din);
	mfr_gpu_free(g, d_dout);
	free(in);
	free(want);
	free(got);
	free(dout);
	free(din);
	free(dwant);
	free(dgot);
}

/* ---- spatial padding ---- */

static void test_pad(mfr_gpu *g, mfr_dtype t, mfr_pad_shape s, uint64_t seed)
{
	mfr_error e = {{0}};
	char what[200];
	if (mfr_pad_shape_init(&s, &e) < 0) {
		check_report(0, "pad shape", __FILE__, __LINE__);
		fprintf(stderr, "    %s\n", e.msg);
		return;
	}
	int hw = s.h * s.w, ohw = s.ho * s.wo;
	size_t nin = (size_t)s.n * s.c * hw, nout = (size_t)s.n * s.c * ohw;
	float *in = hrand(nin, seed, 1.f, t), *want = hbuf(nout), *got = hbuf(nout);
	mfr_pad2d_forward_ref(want, in, &s);
	void *d_in = gcheck_put_nhwc(g, in, s.n, s.c, hw, t), *d_out = gcheck_nan(g, nout, t);
	mfr_pad_forward_cuda(d_out, d_in, &s, t, g);
	check_launch(g, "pad_forward");
	gcheck_get_nchw(g, got, d_out, s.n, s.c, ohw, t);
	snprintf(what, sizeof what, "pad forward %s N%d C%d %dx%d t%d b%d l%d r%d", mfr_dtype_name(t), s.n, s.c, s.h,
		 s.w, s.top, s.bottom, s.left, s.right);
	close_nan(what, got, want, nout, 0); /* a copy and zeros: exact */

	float *dout = hrand(nout, seed + 1, 1.f, t), *din = hrand(nin, seed + 2, 1.f, t);
	float *dwant = hbuf(nin), *dgot = hbuf(nin);
	memcpy(dwant, din, nin * sizeof(float));
	mfr_pad2d_backward_ref(dwant, dout, &s);
	void *d_din = gcheck_put_nhwc(g, din, s.n, s.c, hw, t), *d_dout = gcheck_put_nhwc(g, dout, s.n, s.c, ohw, t);
	mfr_pad_backward_cuda(d_din, d_dout, &s, t, g);
	check_launch(g, "pad_backward");
	gcheck_get_nchw(g, dgot, d_din, s.n, s.c, hw, t);
	snprintf(what, sizeof what, "pad backward += %s N%d C%d %dx%d t%d b%d l%d r%d", mfr_dtype_name(t), s.n, s.c,
		 s.h, s.w, s.top, s.bottom, s.left, s.right);
	/* before + dout: float32 exact as the reference, rounded once to t */
	gcheck_close(what, dgot, dwant, nin, 2 * gcheck_eps(t));

	mfr_gpu_free(g, d_in);
	mfr_gpu_free(g, d_out);
	mfr_gpu_free(g, d_din);
	mfr_gpu_free(g, d_dout);
	free(in);
	free(want);
	free(got);
	free(dout);
	free(din);
	free(dwant);
	free(dgot);
}

/* ---- channel padding: M = n*hw rows, c -> c2 ---- */

static void test_chanpad(mfr_gpu *g, mfr_dtype t, int n, int c, int c2, int hw, uint64_t seed)
{
	char what[160];
	size_t nin = (size_t)n * c * hw, nout = (size_t)n * c2 * hw;
	int M = n * hw;
	float *in = hrand(nin, seed, 1.f, t), *want = hbuf(nout), *got = hbuf(nout);
	mfr_chanpad_forward_ref(want, in, n, c, c2, hw);
	void *d_in = gcheck_put_nhwc(g, in, n, c, hw, t), *d_out = gcheck_nan(g, nout, t);
	mfr_chanpad_forward_cuda(d_out, d_in, M, c, c2, t, g);
	check_launch(g, "chanpad_forward");
	gcheck_get_nchw(g, got, d_out, n, c2, hw, t);
	snprintf(what, sizeof what, "chanpad forward %s M%d %d->%d", mfr_dtype_name(t), M, c, c2);
	close_nan(what, got, want, nout, 0); /* a copy and zeros: exact */

	float *dout = hrand(nout, seed + 1, 1.f, t), *din = hrand(nin, seed + 2, 1.f, t);
	float *dwant = hbuf(nin), *dgot = hbuf(nin);
	memcpy(dwant, din, nin * sizeof(float));
	mfr_chanpad_backward_ref(dwant, dout, n, c, c2, hw);
	void *d_din = gcheck_put_nhwc(g, din, n, c, hw, t), *d_dout = gcheck_put_nhwc(g, dout, n, c2, hw, t);
	mfr_chanpad_backward_cuda(d_din, d_dout, M, c, c2, t, g);
	check_launch(g, "chanpad_backward");
	gcheck_get_nchw(g, dgot, d_din, n, c, hw, t);
	snprintf(what, sizeof what, "chanpad backward += %s M%d %d->%d", mfr_dtype_name(t), M, c, c2);
	/* before + dout: float32 exact as the reference, rounded once to t */
	gcheck_close(what, dgot, dwant, nin, 2 * gcheck_eps(t));

	mfr_gpu_free(g, d_in);
	mfr_gpu_free(g, d_out);
	mfr_gpu_free(g, d_din);
	mfr_gpu_free(g, d_dout);
	free(in);
	free(want);
	free(got);
	free(dout);
	free(din);
	free(dwant);
	free(dgot);
}

/* A pooling shape: n, c, h, w, kh, kw, sh, sw, ph, pw. */
static mfr_pool_shape pool(int n, int c, int h, int w, int kh, int kw, int sh, int sw, int ph, int pw)
{
	mfr_pool_shape s = {.n = n, .c = c, .h = h, .w = w, .kh = kh, .kw = kw, .sh = sh, .sw = sw, .ph = ph, .pw = pw};
	return s;
}

static void run_all(mfr_gpu *g)
{
	const mfr_dtype types[3] = {MFR_F32, MFR_F16, MFR_BF16};
	const mfr_pool_shape shapes[] = {
		pool(3, 17, 7, 5, 3, 3, 2, 2, 1, 1), /* the stem's 3x3/2 pad 1 on an odd image */
		pool(1, 64, 7, 5, 2, 2, 2, 2, 0, 0), /* 2x2/2: the last row dropped */
		pool(3, 3, 5, 7, 1, 3, 1, 1, 0, 1),  /* 1x3, stride 1, pad only on the width */
		pool(1, 130, 6, 9, 3, 3, 1, 1, 1, 1), /* heavy overlap: 9 windows per element */
		pool(3, 17, 8, 7, 2, 3, 3, 2, 1, 1), /* unequal window and strides */
		pool(3, 3, 7, 5, 1, 1, 2, 2, 0, 0),  /* stride > window: uncovered inputs */
	};
	const int nshapes = (int)(sizeof shapes / sizeof shapes[0]);
	uint64_t seed = 1000;
	for (int ti = 0; ti < 3; ti++) {
		mfr_dtype t = types[ti];
		test_gap(g, t, 1, 64, 35, seed += 10);
		test_gap(g, t, 3, 17, 49, seed += 10);
		test_gap(g, t, 3, 130, 1, seed += 10);
		test_gap(g, t, 2, 3, 300, seed += 10);
		for (int i = 0; i < nshapes; i++) {
			test_pool(g, t, shapes[i], 1, IN_UNIFORM, seed += 10);
			test_pool(g, t, shapes[i], 1, IN_INTS, seed += 10);
			test_pool(g, t, shapes[i], 1, IN_NANS, seed += 10);
			test_pool(g, t, shapes[i], 0, IN_UNIFORM, seed += 10);
		}
		mfr_pad_shape p1 = {.n = 3, .c = 17, .h = 7, .w = 5, .top = 1, .bottom = 2, .left = 0, .right = 3};
		mfr_pad_shape p2 = {.n = 1, .c = 64, .h = 5, .w = 7, .top = 0, .bottom = 0, .left = 2, .right = 1};
		mfr_pad_shape p3 = {.n = 3, .c = 3, .h = 4, .w = 4, .top = 1, .bottom = 1, .left = 1, .right = 1};
		test_pad(g, t, p1, seed += 10);
		test_pad(g, t, p2, seed += 10);
		test_pad(g, t, p3, seed += 10);
		test_chanpad(g, t, 3, 17, 64, 35, seed += 10);
		test_chanpad(g, t, 1, 3, 3, 49, seed += 10);
		test_chanpad(g, t, 3, 64, 130, 7, seed += 10);
	}
}

#endif /* MFR_HAVE_CUDA */

int main(void)
{
#ifdef MFR_HAVE_CUDA
	mfr_gpu *g = gcheck_open("gpu spatial layers");
	if (!g)
		return check_done();
	run_all(g);
	mfr_gpu_close(g);
#else
	printf("skip: gpu spatial layers: built without CUDA\n");
#endif
	return check_done();
}
