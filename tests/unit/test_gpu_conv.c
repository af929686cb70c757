/* test_gpu_conv.c — conv2d on cuDNN and linear on the GEMM wrapper
 * (common/cuda/conv.cu) against the float reference of layers_spatial.c,
 * in fp32 (TF32 off), fp16 and bf16.
 *
 * Convolutions: 3x3/1 pad 1, 3x3/2 pad 1, 1x1/2 (the iresnet shortcut),
 * 1x3 and 3x1 (one with unequal strides), groups 4, depthwise (groups ==
 * ci) and depthwise with two outputs per input, with and without bias, odd
 * channel counts (3 -> 8, 17 -> 5) and 64 -> 64, batch 1 and 3, 9x7 and
 * 14x14 images. For each: the weight conversion to KRSC (exact), forward
 * (=, output pre-filled with NaN so an unwritten element fails), backward
 * (din +=, db += and the master dw += through the written dwc; gradients
 * pre-filled with random values), some with backward split into a din-only
 * and a weights-only call (the NULL paths), the din-only one with acc = 0
 * (din =, pre-filled with NaN so a read or an unwritten element fails).
 * Under cuda-emu, two cached keys whose algorithms cuDNN then refuses to
 * run (EMU_DNN_REFUSE): planned again, once down to the direct kernels. The same again with
 * MFR_CUDNN_DETERMINISTIC=1 on two shapes, with MFR_CONV_DIRECT=1 (the
 * direct kernels, which also run when cuDNN has no algorithm) on all, and
 * with TF32 on (fp32 only, tolerance 1e-2 relative: TF32 keeps 10 mantissa
 * bits). Linear: N=5, I=37, O=11 with and without bias, and larger ones.
 *
 * Tolerances are relative to max(1, max |want|) (gcheck_close). Every
 * compared value is a float32 sum of L products (or terms) of values in
 * [-1, 1] — inputs are rounded to the type first, so the reference sees
 * exactly the device's inputs and fp16/bf16 products are exact in float32 —
 * rounded to the type at most twice (conv, then + bias or + the old
 * gradient) with values up to twice the scale: 3 units of rounding
 * (gcheck_eps), taken as 8 to leave room for the transforms of cuDNN's
 * algorithms (Winograd, split sums); plus the float32 sum itself, whose
 * error with random signs grows like sqrt(L) 2^-24 of the scale, taken as
 * 8 L 2^-24. A wrong index or a missed term errs by O(1) of the scale and
 * fails all of these (bf16: 8 * 2^-8 = 3%). */
#include "gpu_check.h" /* defines: gcheck_*, CHECK, check_done */

#include "layers_spatial.h" /* defines: mfr_conv2d_forward_ref, mfr_linear_forward_ref, mfr_conv_shape */

#ifdef MFR_HAVE_CUDA

#include "gpu_layers.h" /* defines: mfr_conv_forward_cuda, mfr_linear_forward_cuda, ... */

/* The tolerance of a sum of L terms in type t (see the top); TF32: 1e-2.
 * fp32 on cuDNN adds 3e-5: FMA math still allows its FFT and Winograd
 * algorithms, whose transforms round to about 1e-5 of the scale whatever
 * L (the direct kernels and GEMMs do not need it; it stays far below the
 * O(1) error of a wrong index). */
static double tol_sum(mfr_dtype t, long long L, int tf32)
{
	if (tf32)
		return 1e-2;
	double tol = 8 * gcheck_eps(t) + 8.0 * (double)L * 0x1p-24;
	return t == MFR_F32 && !getenv("MFR_CONV_DIRECT") ? tol + 3e-5 : tol;
}

static float *hbuf(size_t n) { return (float *)gcheck_xmalloc(n * sizeof(float)); }

/* n random floats in [-a, a) rounded to t. */
static float *hrand(size_t n, uint64_t seed, float a, mfr_dtype t)
{
	float *x = hbuf(n);
	gcheck_fill(x, n, seed, a);
	gcheck_round(x, n, t);
	return x;
}

static float *hcopy(const float *x, size_t n)
{
	float *y = hbuf(n);
	memcpy(y, x, n * sizeof(float));
	return y;
}

static void check_rc(int rc, const char *what, const mfr_error *e)
{
	if (!check_report(rc == 0, what, __FILE__, __LINE__))
		fprintf(stderr, "    %s\n", e->msg);
}

static void check_launch(mfr_gpu *g, const char *what)
{
	mfr_error e = {{0}};
	check_rc(mfr_gpu_check(g, what, &e), what, &e);
}

/* ---- conv2d ---- */

typedef struct {
	const char *name;
	mfr_conv_shape s; /* sizes up to groups; ho, wo from mfr_conv_shape_init */
	int bias;
} conv_case;

#define SHAPE(N, CI, H, W, CO, KH, KW, SH, SW, PH, PW, G) \
	{.n = N, .ci = CI, .h = H, .w = W, .co = CO, .kh = KH, .kw = KW, .sh = SH, .sw = SW, .ph = PH, .pw = PW, .groups = G}

static const conv_case conv_cases[] = {
	{"3x3/1 p1 3->8 N3 bias", SHAPE(3, 3, 9, 7, 8, 3, 3, 1, 1, 1, 1, 1), 1},
	{"3x3/1 p1 64->64 N1", SHAPE(1, 64, 9, 7, 64, 3, 3, 1, 1, 1, 1, 1), 0},
	{"3x3/2 p1 17->5 N3 bias", SHAPE(3, 17, 9, 7, 5, 3, 3, 2, 2, 1, 1, 1), 1},
	{"1x1/2 64->128 N3 (shortcut)", SHAPE(3, 64, 9, 7, 128, 1, 1, 2, 2, 0, 0, 1), 0},
	{"1x1/1 17->5 N1 bias", SHAPE(1, 17, 9, 7, 5, 1, 1, 1, 1, 0, 0, 1), 1},
	{"1x3/1 p0x1 17->5 N3 bias", SHAPE(3, 17, 9, 7, 5, 1, 3, 1, 1, 0, 1, 1), 1},
	{"3x1/2x1 p1x0 8->12 N1", SHAPE(1, 8, 9, 7, 12, 3, 1, 2, 1, 1, 0, 1), 0},
	{"3x3/1 p1 groups 4 16->12 N3 bias", SHAPE(3, 16, 9, 7, 12, 3, 3, 1, 1, 1, 1, 4), 1},
	{"3x3/1 p1 depthwise 17 N3", SHAPE(3, 17, 9, 7, 17, 3, 3, 1, 1, 1, 1, 17), 0},
	{"3x3/2 p1 depthwise x2 8->16 N1 bias", SHAPE(1, 8, 9, 7, 16, 3, 3, 2, 2, 1, 1, 8), 1},
	{"3x3/1 p1 64->64 14x14 N3", SHAPE(3, 64, 14, 14, 64, 3, 3, 1, 1, 1, 1, 1), 0},
};
#define NCASES ((int)(sizeof conv_cases / sizeof conv_cases[0]))

/* One case in type t: weight conversion, forward, backward (split into
 * two calls when split), weight-gradient fold. mode names the run. */
static void test_conv(mfr_gpu *g, const conv_case *cc, mfr_dtype t, const char *mode, int tf32, int split,
		      uint64_t seed)
{
	mfr_error e = {{0}};
	char tag[200], what[260];
	mfr_conv_shape s = cc->s;
	if (mfr_conv_shape_init(&s, &e) < 0) {
		check_rc(-1, cc->name, &e);
		return;
	}
	snprintf(tag, sizeof tag, "conv %s %s%s%s", cc->name, mfr_dtype_name(t), mode[0] ? " " : "", mode);
	int cig = s.ci / s.groups, cog = s.co / s.groups, hw = s.h * s.w, ohw = s.ho * s.wo;
	size_t nin = (size_t)s.n * s.ci * hw, nout = (size_t)s.n * s.co * ohw;
	size_t nw = (size_t)s.co * cig * s.kh * s.kw, nb = (size_t)s.co;

	/* weights: the master in fp32, the reference sees it rounded to t
	 * as the compute copy holds it */
	float *in = hrand(nin, seed, 1.f, t), *w = hbuf(nw);
	gcheck_fill(w, nw, seed + 1, 1.f);
	float *wr = hcopy(w, nw);
	gcheck_round(wr, nw, t);
	float *b = cc->bias ? hrand(nb, seed + 2, 1.f, MFR_F32) : NULL;

	void *d_in = gcheck_put_nhwc(g, in, s.n, s.ci, hw, t), *d_w = gcheck_put(g, w, nw, MFR_F32);
	void *d_wc = gcheck_nan(g, nw, t), *d_b = b ? gcheck_put(g, b, nb, MFR_F32) : NULL, *d_out = gcheck_nan(g, nout, t);

	/* the compute copy: KRSC, exactly the rounded master */
	float *wk = hbuf(nw), *gwk = hbuf(nw);
	for (int oc = 0; oc < s.co; oc++)
		for (int j = 0; j < cig; j++)
			for (int ky = 0; ky < s.kh; ky++)
				for (int kx = 0; kx < s.kw; kx++)
					wk[(((size_t)oc * s.kh + ky) * s.kw + kx) * cig + j] =
						wr[(((size_t)oc * cig + j) * s.kh + ky) * s.kw + kx];
	mfr_conv_weight_cuda(d_wc, d_w, &s, t, g);
	check_launch(g, "conv_weight");
	gcheck_get(g, gwk, d_wc, nw, t);
	snprintf(what, sizeof what, "%s: weight KRSC", tag);
	gcheck_close(what, gwk, wk, nw, 0);

	/* forward */
	float *want = hbuf(nout), *got = hbuf(nout);
	mfr_conv2d_forward_ref(want, in, wr, b, &s);
	snprintf(what, sizeof what, "%s: forward runs", tag);
	check_rc(mfr_conv_forward_cuda(d_out, d_in, d_wc, (const float *)d_b, &s, t, g, &e), what, &e);
	check_launch(g, what);
	gcheck_get_nchw(g, got, d_out, s.n, s.co, ohw, t);
	snprintf(what, sizeof what, "%s: forward", tag);
	gcheck_close(what, got, want, nout, tol_sum(t, (long long)cig * s.kh * s.kw, tf32));

	/* backward: din (split: NaN, assigned), db and the master dw pre-filled; dwc is written */
	float *dout = hrand(nout, seed + 3, 1.f, t), *din0 = hrand(nin, seed + 4, 1.f, t);
	float *dw0 = hrand(nw, seed + 5, 1.f, MFR_F32), *db0 = hrand(nb, seed + 6, 1.f, MFR_F32);
	if (split)
		memset(din0, 0, nin * sizeof *din0);
	float *wdin = hcopy(din0, nin), *wdw = hcopy(dw0, nw), *wdb = hcopy(db0, nb);
	mfr_conv2d_backward_ref(wdin, wdw, b ? wdb : NULL, dout, in, wr, &s);
	void *d_dout = gcheck_put_nhwc(g, dout, s.n, s.co, ohw, t);
	void *d_din = split ? gcheck_nan(g, nin, t) : gcheck_put_nhwc(g, din0, s.n, s.ci, hw, t);
	void *d_dwc = gcheck_nan(g, nw, t), *d_dw = gcheck_put(g, dw0, nw, MFR_F32);
	void *d_db = b ? gcheck_put(g, db0, nb, MFR_F32) : NULL;
	snprintf(what, sizeof what, "%s: backward runs", tag);
	if (split) {
		check_rc(mfr_conv_backward_cuda(d_din, NULL, NULL, d_dout, d_in, d_wc, &s, 0, t, g, &e), what, &e);
		check_rc(mfr_conv_backward_cuda(NULL, d_dwc, (float *)d_db, d_dout, d_in, d_wc, &s, 1, t, g, &e), what,
			 &e);
	} else {
		check_rc(mfr_conv_backward_cuda(d_din, d_dwc, (float *)d_db, d_dout, d_in, d_wc, &s, 1, t, g, &e), what,
			 &e);
	}
	mfr_conv_weight_grad_cuda((float *)d_dw, d_dwc, &s, t, g);
	check_launch(g, what);

	float *gdin = hbuf(nin), *gdw = hbuf(nw), *gdb = hbuf(nb);
	gcheck_get_nchw(g, gdin, d_din, s.n, s.ci, hw, t);
	gcheck_get(g, gdw, d_dw, nw, MFR_F32);
	snprintf(what, sizeof what, "%s: backward din %s", tag, split ? "= (acc 0)" : "+=");
	gcheck_close(what, gdin, wdin, nin, tol_sum(t, (long long)cog * s.kh * s.kw, tf32));
	snprintf(what, sizeof what, "%s: backward dw += (dwc folded)", tag);
	gcheck_close(what, gdw, wdw, nw, tol_sum(t, (long long)s.n * ohw, tf32));
	if (b) {
		gcheck_get(g, gdb, d_db, nb, MFR_F32);
		snprintf(what, sizeof what, "%s: backward db +=", tag);
		/* dout is in t, the sum in float32: no rounding to t */
		gcheck_close(what, gdb, wdb, nb, tol_sum(MFR_F32, (long long)s.n * ohw, 0));
	}

	void *dev[] = {d_in, d_w, d_wc, d_b, d_out, d_dout, d_din, d_dwc, d_dw, d_db};
	for (size_t i = 0; i < sizeof dev / sizeof dev[0]; i++)
		mfr_gpu_free(g, dev[i]);
	float *host[] = {in, w, wr, b, wk, gwk, want, got, dout, din0, dw0, db0, wdin, wdw, wdb, gdin, gdw, gdb};
	for (size_t i = 0; i < sizeof host / sizeof host[0]; i++)
		free(host[i]);
}

/* ---- linear ---- */

static void test_linear(mfr_gpu *g, int n, int ni, int no, int bias, mfr_dtype t, int tf32, int split,
			uint64_t seed)
{
	mfr_error e = {{0}};
	char tag[160], what[220];
	snprintf(tag, sizeof tag, "linear N%d I%d O%d%s %s%s%s", n, ni, no, bias ? " bias" : "", mfr_dtype_name(t),
		 tf32 ? " tf32" : "", split ? " split" : "");
	size_t nin = (size_t)n * ni, nout = (size_t)n * no, nw = (size_t)no * ni;
	/* the compute copy goes up in t directly: the reference uses the same values */
	float *in = hrand(nin, seed, 1.f, t), *w = hrand(nw, seed + 1, 1.f, t);
	float *b = bias ? hrand((size_t)no, seed + 2, 1.f, MFR_F32) : NULL;
	float *want = hbuf(nout), *got = hbuf(nout);
	mfr_linear_forward_ref(want, in, w, b, n, ni, no);
	void *d_in = gcheck_put(g, in, nin, t), *d_wc = gcheck_put(g, w, nw, t), *d_out = gcheck_nan(g, nout, t);
	void *d_b = b ? gcheck_put(g, b, (size_t)no, MFR_F32) : NULL;
	snprintf(what, sizeof what, "%s: forward runs", tag);
	check_rc(mfr_linear_forward_cuda(d_out, d_in, d_wc, (const float *)d_b, n, ni, no, t, g, &e), what, &e);
	check_launch(g, what);
	gcheck_get(g, got, d_out, nout, t);
	snprintf(what, sizeof what, "%s: forward", tag);
	gcheck_close(what, got, want, nout, tol_sum(t, ni, tf32));

	float *dout = hrand(nout, seed + 3, 1.f, t), *din0 = hrand(nin, seed + 4, 1.f, t);
	float *dw0 = hrand(nw, seed + 5, 1.f, MFR_F32), *db0 = hrand((size_t)no, seed + 6, 1.f, MFR_F32);
	if (split) /* din-only call with acc = 0: assigned over NaN */
		memset(din0, 0, nin * sizeof *din0);
	float *wdin = hcopy(din0, nin), *wdw = hcopy(dw0, nw), *wdb = hcopy(db0, (size_t)no);
	mfr_linear_backward_ref(wdin, wdw, b ? wdb : NULL, dout, in, w, n, ni, no);
	void *d_dout = gcheck_put(g, dout, nout, t), *d_din = split ? gcheck_nan(g, nin, t) : gcheck_put(g, din0, nin, t);
	void *d_dw = gcheck_put(g, dw0, nw, MFR_F32), *d_db = b ? gcheck_put(g, db0, (size_t)no, MFR_F32) : NULL;
	snprintf(what, sizeof what, "%s: backward runs", tag);
	if (split) {
		check_rc(mfr_linear_backward_cuda(d_din, NULL, NULL, d_dout, d_in, d_wc, n, ni, no, 0, t, g, &e), what,
			 &e);
		check_rc(mfr_linear_backward_cuda(NULL, (float *)d_dw, (float *)d_db, d_dout, d_in, d_wc, n, ni, no, 1,
						  t, g, &e),
			 what, &e);
	} else {
		check_rc(mfr_linear_backward_cuda(d_din, (float *)d_dw, (float *)d_db, d_dout, d_in, d_wc, n, ni, no,
						  1, t, g, &e),
			 what, &e);
	}
	check_launch(g, what);
	float *gdin = hbuf(nin), *gdw = hbuf(nw), *gdb = hbuf((size_t)no);
	gcheck_get(g, gdin, d_din, nin, t);
	gcheck_get(g, gdw, d_dw, nw, MFR_F32);
	snprintf(what, sizeof what, "%s: backward din %s", tag, split ? "= (acc 0)" : "+=");
	gcheck_close(what, gdin, wdin, nin, tol_sum(t, no, tf32));
	snprintf(what, sizeof what, "%s: backward dw +=", tag);
	/* summed into float32 directly: no rounding to t */
	gcheck_close(what, gdw, wdw, nw, tol_sum(MFR_F32, n, tf32));
	if (b) {
		gcheck_get(g, gdb, d_db, (size_t)no, MFR_F32);
		snprintf(what, sizeof what, "%s: backward db +=", tag);
		gcheck_close(what, gdb, wdb, (size_t)no, tol_sum(MFR_F32, n, 0));
	}

	void *dev[] = {d_in, d_wc, d_out, d_b, d_dout, d_din, d_dw, d_db};
	for (size_t i = 0; i < sizeof dev / sizeof dev[0]; i++)
		mfr_gpu_free(g, dev[i]);
	float *host[] = {in, w, b, want, got, dout, din0, dw0, db0, wdin, wdw, wdb, gdin, gdw, gdb};
	for (size_t i = 0; i < sizeof host / sizeof host[0]; i++)
		free(host[i]);
}

static void run_all(mfr_gpu *g)
{
	static const mfr_dtype types[] = {MFR_F32, MFR_F16, MFR_BF16};
	uint64_t seed = 7000;

	/* the plans cuDNN makes go to stderr ("# conv plan: ..."): a first
	 * run on a new GPU shows which shapes fell back to the direct kernels */
	setenv("MFR_CONV_LOG", "1", 0);

	/* cuDNN, each shape and type measured once (the plan cache) */
	for (int i = 0; i < NCASES; i++)
		for (int k = 0; k < 3; k++)
			test_conv(g, &conv_cases[i], types[k], "", 0, i % 3 == 1, seed += 10);
	/* a second run of the same keys comes from the cache */
	test_conv(g, &conv_cases[1], MFR_F16, "cached", 0, 0, seed += 10);

	/* an algorithm cuDNN lists, then refuses to run: the key is planned
	 * again without it (one refused: the emulator's other algorithm; all:
	 * the direct kernels). EMU_DNN_REFUSE is cuda-emu's; a real cuDNN
	 * ignores it and these are two more cached runs. */
	setenv("EMU_DNN_REFUSE", "fwd:1,data:1,filter:1", 1);
	test_conv(g, &conv_cases[0], MFR_F32, "one algorithm refused", 0, 1, seed += 10);
	setenv("EMU_DNN_REFUSE", "fwd:0,fwd:1,data:0,data:1,filter:0,filter:1", 1);
	test_conv(g, &conv_cases[7], MFR_BF16, "every algorithm refused", 0, 0, seed += 10);
	unsetenv("EMU_DNN_REFUSE");

	setenv("MFR_CUDNN_DETERMINISTIC", "1", 1);
	for (int k = 0; k < 2; k++) {
		test_conv(g, &conv_cases[1], types[k], "deterministic", 0, 0, seed += 10);
		test_conv(g, &conv_cases[7], types[k], "deterministic", 0, 0, seed += 10);
	}
	unsetenv("MFR_CUDNN_DETERMINISTIC");

	setenv("MFR_CONV_DIRECT", "1", 1);
	for (int i = 0; i < NCASES; i++)
		for (int k = 0; k < 3; k++)
			test_conv(g, &conv_cases[i], types[k], "direct", 0, i % 3 == 2, seed += 10);
	unsetenv("MFR_CONV_DIRECT");

	/* TF32 on: the same results within TF32's precision */
	mfr_gpu_set_tf32(g, 1);
	test_conv(g, &conv_cases[1], MFR_F32, "tf32", 1, 0, seed += 10);
	test_conv(g, &conv_cases[7], MFR_F32, "tf32", 1, 0, seed += 10);
	test_conv(g, &conv_cases[10], MFR_F32, "tf32", 1, 0, seed += 10);
	test_linear(g, 64, 512, 130, 1, MFR_F32, 1, 0, seed += 10);
	mfr_gpu_set_tf32(g, 0);

	for (int k = 0; k < 3; k++) {
		test_linear(g, 5, 37, 11, 1, types[k], 0, 0, seed += 10);
		test_linear(g, 5, 37, 11, 0, types[k], 0, 1, seed += 10);
		test_linear(g, 64, 512, 130, 1, types[k], 0, 0, seed += 10);
		test_linear(g, 3, 1000, 7, 1, types[k], 0, 1, seed += 10);
		test_linear(g, 300, 64, 33, 1, types[k], 0, 0, seed += 10);
	}
}

#endif /* MFR_HAVE_CUDA */

int main(void)
{
	mfr_gpu *g = gcheck_open("gpu conv");
	if (!g)
		return check_done();
#ifdef MFR_HAVE_CUDA
	run_all(g);
#else
	printf("skip: gpu conv: built without CUDA\n");
#endif
	mfr_gpu_close(g);
	return check_done();
}
