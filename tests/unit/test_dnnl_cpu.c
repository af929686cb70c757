/* test_dnnl_cpu.c — the fast CPU layers (dnnl_cpu.h) against the float
 * reference (mfr_*_ref) on fresh random inputs: conv2d over kernels 3x3,
 * 1x1 stride 2, 1x3 / 3x1, 5x5 stride 2, groups 2 and depthwise, odd sizes,
 * N = 1 and 3, with and without bias; linear over small and wide shapes.
 * Forward and every backward output, the += outputs pre-filled with non-zero
 * values, the forward output pre-filled with NaN (every element must be
 * written). Each shape runs twice with fresh data, so the second call goes
 * through the primitive cache; every conv shape runs in both of oneDNN's
 * layout paths (plain and blocked); a few run again on one thread. The
 * inference convolution in the caller's layouts (mfr_conv2d_forward_cpu_layout)
 * runs every shape in each pair of NCHW / blocked input and output, written
 * and accumulated, its blocked padding checked to be zero.
 *
 * Built without oneDNN (make DNNL=no) the same test checks the fallback,
 * which is the reference itself: every difference is then 0. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"          /* defines: CHECK, check_report, check_done */
#include "dnnl_cpu.h"       /* defines: mfr_conv2d_forward_cpu, mfr_cpu_set_threads, ... */
#include "layers_spatial.h" /* defines: mfr_conv2d_forward_ref, mfr_conv_shape, ... */

#ifdef MFR_HAVE_DNNL
void mfr_dnnl_set_layout(int mode); /* dnnl_cpu.c's layouts: 0 plain, 1 blocked, 2 auto */
#endif

/* Tolerance: pass when |fast - ref| <= ATOL_TERM * terms + RTOL * |ref|.
 * The reference sums in double and rounds once; oneDNN sums `terms` float
 * products (each |p| <= 1 here: inputs uniform in [-1,1]) in float, in its
 * own order, blocked. A float sum of K terms whose partial sums stay near
 * sqrt(K)/3 in size (random signs) is off by about eps*sqrt(K)/3 per
 * addition at worst, eps*K*sqrt(K)/3 in all, and typically far less. ATOL_TERM =
 * 1e-6 = 16 eps leaves a wide margin (the largest difference seen is 4%
 * of the tolerance; the run prints it), and it still catches a single
 * missing or doubled product (an error of ~0.3 against 1e-6*K, under 0.01
 * for every shape below) and a += off by 1e-4 relative. RTOL = 1e-5 (~170
 * ulp) covers the rounding of large results and of the += into a
 * pre-filled buffer. */
static const double ATOL_TERM = 1e-6, RTOL = 1e-5;

static double worst_share; /* largest |fast - ref| / tolerance seen: the margin */

static float *rnd(size_t n, uint64_t seed)
{
	float *p = malloc((n ? n : 1) * sizeof *p);
	if (!p)
		abort();
	mfr_rng r = {seed};
	for (size_t i = 0; i < n; i++)
		p[i] = (float)(2 * mfr_rng_uniform(&r) - 1);
	return p;
}

static float *copy(const float *a, size_t n)
{
	float *p = malloc((n ? n : 1) * sizeof *p);
	if (!p)
		abort();
	memcpy(p, a, n * sizeof *p);
	return p;
}

/* Checks fast against ref element by element; on failure prints the worst
 * index and the first few failing pairs. terms: products summed into each
 * element (the scale of the float rounding). */
static void agree(const float *fast, const float *ref, size_t n, double terms, const char *what)
{
	double atol = ATOL_TERM * terms, worst = -1;
	size_t wi = 0, bad = 0;
	for (size_t i = 0; i < n; i++) {
		double d = fabs((double)fast[i] - ref[i]), lim = atol + RTOL * fabs(ref[i]);
		double excess = isnan(d) ? INFINITY : d - lim;
		bad += !(d <= lim); /* NaN fails too */
		if (d / lim > worst_share)
			worst_share = d / lim;
		if (excess > worst) {
			worst = excess;
			wi = i;
		}
	}
	if (check_report(bad == 0, what, __FILE__, __LINE__))
		return;
	fprintf(stderr, "    %zu of %zu off (atol %.3g, rtol %g); worst at [%zu]: fast %.9g, ref %.9g\n",
		bad, n, atol, RTOL, wi, fast[wi], ref[wi]);
	for (size_t i = 0, shown = 0; i < n && shown < 4; i++) {
		double d = fabs((double)fast[i] - ref[i]);
		if (!(d <= atol + RTOL * fabs(ref[i]))) {
			fprintf(stderr, "    [%zu]: fast %.9g, ref %.9g\n", i, fast[i], ref[i]);
			shown++;
		}
	}
}

static uint64_t seed = 1;

/* One conv shape: forward, then backward with all gradients and with each
 * one alone, twice over with fresh inputs. */
static void conv_case(mfr_conv_shape s, int bias)
{
	mfr_error e;
	char what[160];
	if (mfr_conv_shape_init(&s, &e) < 0) {
		fprintf(stderr, "bad test shape: %s\n", e.msg);
		check_report(0, "shape", __FILE__, __LINE__);
		return;
	}
	int cig = s.ci / s.groups, cog = s.co / s.groups;
	size_t nin = (size_t)s.n * s.ci * s.h * s.w, nout = (size_t)s.n * s.co * s.ho * s.wo;
	size_t nw = (size_t)s.co * cig * s.kh * s.kw, nb = (size_t)s.co;
	double t_fwd = (double)cig * s.kh * s.kw, t_din = (double)cog * s.kh * s.kw,
	       t_dw = (double)s.n * s.ho * s.wo;
	int n0 = snprintf(what, sizeof what, "conv N%d %d->%d %dx%d k%dx%d s%dx%d p%dx%d g%d%s", s.n,
		s.ci, s.co, s.h, s.w, s.kh, s.kw, s.sh, s.sw, s.ph, s.pw, s.groups, bias ? " bias" : "");
	for (int rep = 0; rep < 2; rep++) {
		float *in = rnd(nin, seed++), *w = rnd(nw, seed++), *b = bias ? rnd(nb, seed++) : NULL;
		float *ref = rnd(nout, seed++), *fast = rnd(nout, seed++);
		for (size_t i = 0; i < nout; i++)
			fast[i] = NAN;
		mfr_conv2d_forward_ref(ref, in, w, b, &s);
		int r = mfr_conv2d_forward_cpu(fast, in, w, b, &s, &e);
		snprintf(what + n0, sizeof what - n0, " forward");
		if (!check_report(r == 0, what, __FILE__, __LINE__))
			fprintf(stderr, "    %s\n", e.msg);
		agree(fast, ref, nout, t_fwd + (bias != 0), what);

		/* backward: all three at once, then each alone (a NULL skips) */
		float *dout = rnd(nout, seed++);
		float *din0 = rnd(nin, seed++), *dw0 = rnd(nw, seed++), *db0 = rnd(nb, seed++);
		for (int only = -1; only < 3; only++) {
			int want_in = only < 0 || only == 0, want_w = only < 0 || only == 1,
			    want_b = only < 0 || only == 2;
			float *din_r = copy(din0, nin), *dw_r = copy(dw0, nw), *db_r = copy(db0, nb);
			float *din_f = copy(din0, nin), *dw_f = copy(dw0, nw), *db_f = copy(db0, nb);
			mfr_conv2d_backward_ref(want_in ? din_r : NULL, want_w ? dw_r : NULL,
				want_b ? db_r : NULL, dout, in, w, &s);
			r = mfr_conv2d_backward_cpu(want_in ? din_f : NULL, want_w ? dw_f : NULL,
				want_b ? db_f : NULL, dout, in, w, &s, &e);
			static const char *names[] = {"all", "din only", "dw only", "db only"};
			snprintf(what + n0, sizeof what - n0, " backward (%s)", names[only + 1]);
			size_t m = strlen(what);
			if (!check_report(r == 0, what, __FILE__, __LINE__))
				fprintf(stderr, "    %s\n", e.msg);
			snprintf(what + m, sizeof what - m, " din");
			agree(din_f, din_r, nin, t_din, what); /* untouched ones must stay equal */
			snprintf(what + m, sizeof what - m, " dw");
			agree(dw_f, dw_r, nw, t_dw, what);
			snprintf(what + m, sizeof what - m, " db");
			agree(db_f, db_r, nb, t_dw, what);
			free(din_r), free(dw_r), free(db_r), free(din_f), free(dw_f), free(db_f);
		}
		free(in), free(w), free(b), free(ref), free(fast), free(dout), free(din0), free(dw0),
			free(db0);
	}
}

/* Values of (n,c,hw) in layout blk (0: NCHW), with the padded channels. */
static size_t stored(int n, int c, int hw, int blk)
{
	int cp = blk ? (c + blk - 1) / blk * blk : c;
	return (size_t)n * cp * hw;
}

/* Whether the padding channels of blocked (n,c,hw) hold zeros. */
static int padding_zero(const float *x, int n, int c, int hw, int blk)
{
	int cb = (c + blk - 1) / blk;
	for (int k = 0; k < n; k++)
		for (int b = 0; b < cb; b++)
			for (int p = 0; p < hw; p++)
				for (int l = 0; l < blk; l++)
					if (b * blk + l >= c && x[(((size_t)k * cb + b) * hw + p) * blk + l] != 0)
						return 0;
	return 1;
}

/* One conv shape through mfr_conv2d_forward_cpu_layout: input and output
 * NCHW or blocked (mfr_cpu_block), written (out pre-filled with NaN, the
 * padding included) or accumulated into a random tensor. */
static void layout_case(mfr_conv_shape s, int bias)
{
	mfr_error e;
	char what[200];
	if (mfr_conv_shape_init(&s, &e) < 0) {
		check_report(0, "shape", __FILE__, __LINE__);
		return;
	}
	int B = mfr_cpu_block(), hwi = s.h * s.w, hwo = s.ho * s.wo;
	size_t nin = (size_t)s.n * s.ci * hwi, nout = (size_t)s.n * s.co * hwo;
	size_t nw = (size_t)s.co * (s.ci / s.groups) * s.kh * s.kw;
	float *in = rnd(nin, seed++), *w = rnd(nw, seed++), *b = bias ? rnd((size_t)s.co, seed++) : NULL;
	float *prior = rnd(nout, seed++), *ref = malloc(nout * sizeof *ref), *back = malloc(nout * sizeof *back);
	float *inb = malloc(stored(s.n, s.ci, hwi, B) * sizeof *inb), *out = malloc(stored(s.n, s.co, hwo, B) * sizeof *out);
	if (!ref || !back || !inb || !out)
		abort();
	mfr_conv2d_forward_ref(ref, in, w, b, &s);
	if (B) { /* the input reordered to blocked and back is the input */
		CHECK(mfr_cpu_reorder(inb, B, in, 0, s.n, s.ci, s.h, s.w, &e) == 0);
		CHECK(padding_zero(inb, s.n, s.ci, hwi, B));
		float *again = malloc(nin * sizeof *again);
		CHECK(again && mfr_cpu_reorder(again, 0, inb, B, s.n, s.ci, s.h, s.w, &e) == 0 &&
		      memcmp(again, in, nin * sizeof *in) == 0);
		free(again);
	}
	for (int combo = 0; combo < 8; combo++) {
		int ib = combo & 1 ? B : 0, ob = combo & 2 ? B : 0, acc = combo >> 2;
		if ((combo & 1 && !B) || (combo & 2 && !B))
			continue;
		snprintf(what, sizeof what, "conv layouts N%d %d->%d %dx%d k%dx%d s%d g%d%s: in %d out %d%s", s.n, s.ci,
			 s.co, s.h, s.w, s.kh, s.kw, s.sh, s.groups, bias ? " bias" : "", ib, ob, acc ? " +=" : "");
		if (acc && !B) { /* without oneDNN: refused */
			CHECK(mfr_conv2d_forward_cpu_layout(out, 0, in, 0, w, b, &s, 1, 0, &e) == -1);
			continue;
		}
		size_t no = stored(s.n, s.co, hwo, ob);
		for (size_t i = 0; i < no; i++)
			out[i] = NAN;
		if (acc && ob)
			CHECK(mfr_cpu_reorder(out, ob, prior, 0, s.n, s.co, s.ho, s.wo, &e) == 0);
		else if (acc)
			memcpy(out, prior, nout * sizeof *out);
		/* a new version each call: w's address may repeat across cases */
		int r = mfr_conv2d_forward_cpu_layout(out, ob, ib ? inb : in, ib, w, b, &s, acc, seed++, &e);
		if (!check_report(r == 0, what, __FILE__, __LINE__))
			fprintf(stderr, "    %s\n", e.msg);
		if (ob) {
			CHECK(padding_zero(out, s.n, s.co, hwo, ob));
			CHECK(mfr_cpu_reorder(back, 0, out, ob, s.n, s.co, s.ho, s.wo, &e) == 0);
		} else {
			memcpy(back, out, nout * sizeof *out);
		}
		float *want = copy(ref, nout);
		for (size_t i = 0; acc && i < nout; i++)
			want[i] += prior[i];
		agree(back, want, nout, (double)(s.ci / s.groups) * s.kh * s.kw + (bias != 0) + acc, what);
		free(want);
	}
	free(in), free(w), free(b), free(prior), free(ref), free(back), free(inb), free(out);
}

static void linear_case(int n, int ni, int no, int bias)
{
	mfr_error e;
	char what[120];
	size_t nin = (size_t)n * ni, nout = (size_t)n * no, nw = (size_t)no * ni;
	int n0 = snprintf(what, sizeof what, "linear N%d %d->%d%s", n, ni, no, bias ? " bias" : "");
	for (int rep = 0; rep < 2; rep++) {
		float *in = rnd(nin, seed++), *w = rnd(nw, seed++), *b = bias ? rnd(no, seed++) : NULL;
		float *ref = rnd(nout, seed++), *fast = rnd(nout, seed++);
		for (size_t i = 0; i < nout; i++)
			fast[i] = NAN;
		mfr_linear_forward_ref(ref, in, w, b, n, ni, no);
		int r = mfr_linear_forward_cpu(fast, in, w, b, n, ni, no, &e);
		snprintf(what + n0, sizeof what - n0, " forward");
		if (!check_report(r == 0, what, __FILE__, __LINE__))
			fprintf(stderr, "    %s\n", e.msg);
		agree(fast, ref, nout, ni + (bias != 0), what);

		float *dout = rnd(nout, seed++);
		float *din0 = rnd(nin, seed++), *dw0 = rnd(nw, seed++), *db0 = rnd(no, seed++);
		for (int only = -1; only < 3; only++) {
			int want_in = only < 0 || only == 0, want_w = only < 0 || only == 1,
			    want_b = only < 0 || only == 2;
			float *din_r = copy(din0, nin), *dw_r = copy(dw0, nw), *db_r = copy(db0, no);
			float *din_f = copy(din0, nin), *dw_f = copy(dw0, nw), *db_f = copy(db0, no);
			mfr_linear_backward_ref(want_in ? din_r : NULL, want_w ? dw_r : NULL,
				want_b ? db_r : NULL, dout, in, w, n, ni, no);
			r = mfr_linear_backward_cpu(want_in ? din_f : NULL, want_w ? dw_f : NULL,
				want_b ? db_f : NULL, dout, in, w, n, ni, no, &e);
			static const char *names[] = {"all", "din only", "dw only", "db only"};
			snprintf(what + n0, sizeof what - n0, " backward (%s)", names[only + 1]);
			size_t m = strlen(what);
			if (!check_report(r == 0, what, __FILE__, __LINE__))
				fprintf(stderr, "    %s\n", e.msg);
			snprintf(what + m, sizeof what - m, " din");
			agree(din_f, din_r, nin, no, what);
			snprintf(what + m, sizeof what - m, " dw");
			agree(dw_f, dw_r, nw, n, what);
			snprintf(what + m, sizeof what - m, " db");
			agree(db_f, db_r, no, n, what);
			free(din_r), free(dw_r), free(db_r), free(din_f), free(dw_f), free(db_f);
		}
		free(in), free(w), free(b), free(ref), free(fast), free(dout), free(din0), free(dw0),
			free(db0);
	}
}

/* The conv shapes: iresnet-like blocks shrunk to test size, then the
 * corners (asymmetric kernels, groups, odd sizes, padding wider than the
 * kernel's reach). */
static const struct {
	mfr_conv_shape s;
	int bias;
} convs[] = {
	{{.n = 1, .ci = 16, .h = 14, .w = 14, .co = 16, .kh = 3, .kw = 3, .sh = 1, .sw = 1, .ph = 1, .pw = 1, .groups = 1}, 0},
	{{.n = 3, .ci = 16, .h = 14, .w = 14, .co = 32, .kh = 3, .kw = 3, .sh = 2, .sw = 2, .ph = 1, .pw = 1, .groups = 1}, 0},
	{{.n = 3, .ci = 64, .h = 7, .w = 7, .co = 64, .kh = 3, .kw = 3, .sh = 1, .sw = 1, .ph = 1, .pw = 1, .groups = 1}, 1},
	{{.n = 1, .ci = 3, .h = 17, .w = 17, .co = 8, .kh = 3, .kw = 3, .sh = 1, .sw = 1, .ph = 1, .pw = 1, .groups = 1}, 1},
	{{.n = 3, .ci = 16, .h = 14, .w = 14, .co = 32, .kh = 1, .kw = 1, .sh = 2, .sw = 2, .ph = 0, .pw = 0, .groups = 1}, 0},
	{{.n = 1, .ci = 32, .h = 7, .w = 7, .co = 64, .kh = 1, .kw = 1, .sh = 2, .sw = 2, .ph = 0, .pw = 0, .groups = 1}, 1},
	{{.n = 3, .ci = 8, .h = 9, .w = 11, .co = 12, .kh = 1, .kw = 3, .sh = 1, .sw = 1, .ph = 0, .pw = 1, .groups = 1}, 1},
	{{.n = 1, .ci = 8, .h = 11, .w = 9, .co = 12, .kh = 3, .kw = 1, .sh = 1, .sw = 1, .ph = 1, .pw = 0, .groups = 1}, 0},
	{{.n = 3, .ci = 6, .h = 10, .w = 13, .co = 10, .kh = 1, .kw = 3, .sh = 2, .sw = 1, .ph = 0, .pw = 1, .groups = 2}, 1},
	{{.n = 3, .ci = 8, .h = 12, .w = 12, .co = 16, .kh = 3, .kw = 3, .sh = 1, .sw = 1, .ph = 1, .pw = 1, .groups = 2}, 0},
	{{.n = 1, .ci = 16, .h = 9, .w = 9, .co = 16, .kh = 3, .kw = 3, .sh = 1, .sw = 1, .ph = 1, .pw = 1, .groups = 16}, 1},
	{{.n = 3, .ci = 12, .h = 13, .w = 11, .co = 24, .kh = 3, .kw = 3, .sh = 2, .sw = 2, .ph = 1, .pw = 1, .groups = 12}, 0},
	{{.n = 3, .ci = 5, .h = 15, .w = 13, .co = 7, .kh = 5, .kw = 5, .sh = 2, .sw = 2, .ph = 2, .pw = 2, .groups = 1}, 1},
	{{.n = 1, .ci = 4, .h = 8, .w = 7, .co = 6, .kh = 2, .kw = 3, .sh = 3, .sw = 2, .ph = 0, .pw = 1, .groups = 1}, 0},
	{{.n = 1, .ci = 3, .h = 5, .w = 5, .co = 4, .kh = 3, .kw = 3, .sh = 1, .sw = 1, .ph = 4, .pw = 2, .groups = 1}, 1},
	{{.n = 3, .ci = 1, .h = 1, .w = 1, .co = 1, .kh = 1, .kw = 1, .sh = 1, .sw = 1, .ph = 0, .pw = 0, .groups = 1}, 1},
};

static const struct {
	int n, ni, no, bias;
} linears[] = {
	{1, 7, 5, 1}, {3, 64, 10, 0}, {5, 300, 129, 1}, {1, 25088 / 16, 512, 1}, {4, 1, 1, 0},
};

int main(void)
{
	printf("backend: %s; threads: %d\n", mfr_cpu_backend(), mfr_cpu_threads());
	for (size_t i = 0; i < sizeof convs / sizeof *convs; i++)
		conv_case(convs[i].s, convs[i].bias);
	for (size_t i = 0; i < sizeof linears / sizeof *linears; i++)
		linear_case(linears[i].n, linears[i].ni, linears[i].no, linears[i].bias);
	printf("activation block: %d\n", mfr_cpu_block());
	for (size_t i = 0; i < sizeof convs / sizeof *convs; i++)
		layout_case(convs[i].s, convs[i].bias);
#ifdef MFR_HAVE_DNNL
	/* The automatic choice above takes the plain layouts for most of these
	 * small shapes: run every shape through each layout path. */
	for (int mode = 0; mode < 2; mode++) {
		mfr_dnnl_set_layout(mode);
		for (size_t i = 0; i < sizeof convs / sizeof *convs; i++)
			conv_case(convs[i].s, convs[i].bias);
	}
	mfr_dnnl_set_layout(2);
#endif

	/* The thread count is part of the cache key: one thread, then all again. */
	mfr_cpu_set_threads(1);
	CHECK(mfr_cpu_threads() == 1 || !strncmp(mfr_cpu_backend(), "reference", 9));
	conv_case(convs[2].s, 1);
	linear_case(3, 64, 10, 1);
	mfr_cpu_set_threads(0);
	conv_case(convs[1].s, 0);

	/* Release drops the cache; the next call rebuilds it. */
	mfr_cpu_release();
	conv_case(convs[0].s, 1);
	mfr_cpu_release();
	printf("largest difference: %.3g of its tolerance\n", worst_share);
	return check_done();
}
