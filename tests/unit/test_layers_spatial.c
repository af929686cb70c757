/* test_layers_spatial.c — the reference spatial layers (layers_spatial.h) in
 * float64: forward against small cases worked out by hand, structural
 * identities (a grouped conv is the concatenation of per-group convs; a 1xk
 * conv is a transposed kx1 conv), finite-difference gradient checks of every
 * gradient on odd, strided, grouped and asymmetric shapes, and the shape
 * constructors' refusals. The float build is compared with this one in
 * test_layers_float.c. */
#define MFR_REAL_DOUBLE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"          /* defines: CHECK, CHECK_NEAR, check_done */
#include "gradcheck.h"      /* defines: gradcheck, gradcheck_run, gc_fill */
#include "layers_spatial.h" /* defines: mfr_conv2d_forward_ref64, mfr_conv_shape, ... */

/* Hand-computed values are small integers or halves: exact in double. */
#define EXACT 1e-12

static double *dalloc(size_t n)
{
	double *p = calloc(n ? n : 1, sizeof *p);
	if (!p)
		abort();
	return p;
}

static void check_all_near(const double *got, const double *want, size_t n, double tol,
	const char *what)
{
	size_t bad = n;
	for (size_t i = 0; i < n && bad == n; i++)
		if (!(fabs(got[i] - want[i]) <= tol))
			bad = i;
	if (!check_report(bad == n, what, __FILE__, __LINE__))
		fprintf(stderr, "    [%zu]: got %.12g, want %.12g\n", bad, got[bad], want[bad]);
}

/* ---- conv2d ---- */

typedef struct {
	mfr_conv_shape s;
	double *in, *w, *b, *out, *dout, *din, *dw, *db;
	size_t nin, nw, nout;
} conv_ctx;

static void conv_fwd(void *p)
{
	conv_ctx *c = p;
	mfr_conv2d_forward_ref64(c->out, c->in, c->w, c->b, &c->s);
}

static void conv_bwd(void *p)
{
	conv_ctx *c = p;
	mfr_conv2d_backward_ref64(c->din, c->dw, c->b ? c->db : NULL, c->dout, c->in, c->w, &c->s);
}

static void conv_alloc(conv_ctx *c, int bias, uint64_t seed)
{
	const mfr_conv_shape *s = &c->s;
	c->nin = (size_t)s->n * s->ci * s->h * s->w;
	c->nw = (size_t)s->co * (s->ci / s->groups) * s->kh * s->kw;
	c->nout = (size_t)s->n * s->co * s->ho * s->wo;
	c->in = dalloc(c->nin);
	c->w = dalloc(c->nw);
	c->b = bias ? dalloc((size_t)s->co) : NULL;
	c->db = dalloc((size_t)s->co);
	c->out = dalloc(c->nout);
	c->dout = dalloc(c->nout);
	c->din = dalloc(c->nin);
	c->dw = dalloc(c->nw);
	gc_fill(c->in, c->nin, -1, 1, seed);
	gc_fill(c->w, c->nw, -1, 1, seed + 1);
	if (bias)
		gc_fill(c->b, (size_t)s->co, -1, 1, seed + 2);
}

static void conv_free(conv_ctx *c)
{
	free(c->in), free(c->w), free(c->b), free(c->db), free(c->out), free(c->dout);
	free(c->din), free(c->dw);
}

static void conv_gradcheck(mfr_conv_shape s, int bias, uint64_t seed)
{
	mfr_error e = {{0}};
	char what[160];
	snprintf(what, sizeof what,
		"conv2d n%d ci%d %dx%d co%d k%dx%d s%dx%d p%dx%d g%d%s", s.n, s.ci, s.h, s.w, s.co, s.kh,
		s.kw, s.sh, s.sw, s.ph, s.pw, s.groups, bias ? "" : " nobias");
	if (!check_report(mfr_conv_shape_init(&s, &e) == 0, what, __FILE__, __LINE__)) {
		fprintf(stderr, "    %s\n", e.msg);
		return;
	}
	conv_ctx c = {.s = s};
	conv_alloc(&c, bias, seed);
	gc_var v[3] = {{c.in, c.din, c.nin, "input"}, {c.w, c.dw, c.nw, "weight"},
		{c.b, c.db, (size_t)s.co, "bias"}};
	gradcheck g = {.forward = conv_fwd, .backward = conv_bwd, .ctx = &c, .out = c.out,
		.dout = c.dout, .n_out = c.nout, .vars = v, .nvars = bias ? 3 : 2,
		.max_points = 4096}; /* every element: the shapes are small */
	gradcheck_run(&g, what);
	conv_free(&c);
}

static void test_conv_gradients(void)
{
	/* n, ci, h, w, co, kh, kw, sh, sw, ph, pw, groups */
	static const int cases[][12] = {
		{2, 3, 7, 5, 4, 3, 3, 1, 1, 1, 1, 1}, /* odd sizes, "same" padding */
		{2, 4, 6, 7, 6, 1, 3, 1, 2, 0, 1, 2}, /* 1x3, stride 1x2, groups 2 */
		{1, 4, 7, 6, 4, 3, 1, 2, 1, 1, 0, 4}, /* 3x1, stride 2x1, depthwise */
		{2, 8, 5, 9, 8, 1, 7, 1, 1, 0, 3, 4}, /* 1x7, groups 4 */
		{2, 3, 7, 5, 5, 3, 3, 2, 2, 3, 2, 1}, /* padding wider than the kernel, stride 2 */
		{3, 2, 4, 4, 2, 2, 2, 2, 2, 0, 0, 1}, /* 2x2 stride 2 (iresnet-style downsampling) */
		{1, 6, 5, 5, 3, 5, 5, 1, 1, 0, 0, 3}, /* kernel as large as the input, co < ci */
		{1, 2, 8, 8, 3, 3, 3, 3, 3, 1, 1, 1}, /* stride 3, not dividing the size */
		{2, 6, 3, 4, 12, 7, 1, 1, 2, 3, 0, 6}, /* 7x1, depthwise multiplier 2 */
		{2, 3, 5, 6, 2, 1, 1, 2, 2, 0, 0, 1}, /* 1x1 stride 2 (projection shortcut) */
	};
	for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
		const int *q = cases[k];
		mfr_conv_shape s = {.n = q[0], .ci = q[1], .h = q[2], .w = q[3], .co = q[4], .kh = q[5],
			.kw = q[6], .sh = q[7], .sw = q[8], .ph = q[9], .pw = q[10], .groups = q[11]};
		conv_gradcheck(s, 1, 100 + k);
	}
	mfr_conv_shape nob = {.n = 2, .ci = 2, .h = 5, .w = 4, .co = 3, .kh = 3, .kw = 2, .sh = 1,
		.sw = 1, .ph = 1, .pw = 0, .groups = 1};
	conv_gradcheck(nob, 0, 7);

	/* random shapes from a seeded generator */
	mfr_rng r = {2024};
	static const int group_choice[] = {1, 2, 4};
	for (int k = 0; k < 8; k++) {
		int g = group_choice[mfr_rng_below(&r, 3)];
		mfr_conv_shape s = {.n = 1 + (int)mfr_rng_below(&r, 3),
			.ci = g * (1 + (int)mfr_rng_below(&r, 2)), .h = 3 + (int)mfr_rng_below(&r, 6),
			.w = 3 + (int)mfr_rng_below(&r, 6), .co = g * (1 + (int)mfr_rng_below(&r, 2)),
			.kh = 1 + (int)mfr_rng_below(&r, 3), .kw = 1 + (int)mfr_rng_below(&r, 3),
			.sh = 1 + (int)mfr_rng_below(&r, 2), .sw = 1 + (int)mfr_rng_below(&r, 2),
			.ph = (int)mfr_rng_below(&r, 3), .pw = (int)mfr_rng_below(&r, 3), .groups = g};
		conv_gradcheck(s, (int)mfr_rng_below(&r, 2), 500 + (uint64_t)k);
	}
}

static void test_conv_forward_by_hand(void)
{
	const double in[9] = {1, 2, 3, 4, 5, 6, 7, 8, 9}; /* 3x3, row-major */
	double out[9];
	mfr_error e = {{0}};

	/* 2x2 kernel, no padding: a cross-correlation (not flipped) */
	mfr_conv_shape s = {.n = 1, .ci = 1, .h = 3, .w = 3, .co = 1, .kh = 2, .kw = 2, .sh = 1,
		.sw = 1, .groups = 1};
	CHECK(mfr_conv_shape_init(&s, &e) == 0 && s.ho == 2 && s.wo == 2);
	const double k2[4] = {1, 2, 3, 4};
	mfr_conv2d_forward_ref64(out, in, k2, NULL, &s);
	const double want2[4] = {37, 47, 67, 77};
	check_all_near(out, want2, 4, EXACT, "conv2d 2x2 kernel on 3x3 by hand");

	/* 3x3 box filter, padding 1, bias 0.5: the neighbourhood sums */
	s = (mfr_conv_shape){.n = 1, .ci = 1, .h = 3, .w = 3, .co = 1, .kh = 3, .kw = 3, .sh = 1,
		.sw = 1, .ph = 1, .pw = 1, .groups = 1};
	CHECK(mfr_conv_shape_init(&s, &e) == 0 && s.ho == 3 && s.wo == 3);
	const double ones[9] = {1, 1, 1, 1, 1, 1, 1, 1, 1}, half = 0.5;
	mfr_conv2d_forward_ref64(out, in, ones, &half, &s);
	const double want3[9] = {12.5, 21.5, 16.5, 27.5, 45.5, 33.5, 24.5, 39.5, 28.5};
	check_all_near(out, want3, 9, EXACT, "conv2d 3x3 box, pad 1, bias by hand");

	/* the same at stride 2: the four corners */
	s.sh = s.sw = 2;
	CHECK(mfr_conv_shape_init(&s, &e) == 0 && s.ho == 2 && s.wo == 2);
	mfr_conv2d_forward_ref64(out, in, ones, NULL, &s);
	const double want4[4] = {12, 16, 24, 28};
	check_all_near(out, want4, 4, EXACT, "conv2d 3x3 box, pad 1, stride 2 by hand");

	/* asymmetric 1x3 kernel with padding only along w: row differences */
	s = (mfr_conv_shape){.n = 1, .ci = 1, .h = 3, .w = 3, .co = 1, .kh = 1, .kw = 3, .sh = 1,
		.sw = 1, .ph = 0, .pw = 1, .groups = 1};
	CHECK(mfr_conv_shape_init(&s, &e) == 0 && s.ho == 3 && s.wo == 3);
	const double d13[3] = {-1, 0, 1};
	mfr_conv2d_forward_ref64(out, in, d13, NULL, &s);
	const double want5[9] = {2, 2, -2, 5, 2, -5, 8, 2, -8};
	check_all_near(out, want5, 9, EXACT, "conv2d 1x3 kernel, pad 0x1 by hand");

	/* groups 2, 1x1: each output channel scales its own input channel */
	s = (mfr_conv_shape){.n = 1, .ci = 2, .h = 1, .w = 2, .co = 2, .kh = 1, .kw = 1, .sh = 1,
		.sw = 1, .groups = 2};
	CHECK(mfr_conv_shape_init(&s, &e) == 0);
	const double gin[4] = {1, 2, 3, 4}, gw[2] = {2, 3}, gb[2] = {0, 10};
	mfr_conv2d_forward_ref64(out, gin, gw, gb, &s);
	const double want6[4] = {2, 4, 19, 22};
	check_all_near(out, want6, 4, EXACT, "conv2d groups 2, 1x1 by hand");

	/* backward by hand: 2x2 kernel on 3x3, dout all ones. dw[ky][kx] is the
	 * sum of the 2x2 block at (ky,kx); din counts the taps covering each pixel
	 * weighted by the kernel. */
	s = (mfr_conv_shape){.n = 1, .ci = 1, .h = 3, .w = 3, .co = 1, .kh = 2, .kw = 2, .sh = 1,
		.sw = 1, .groups = 1};
	CHECK(mfr_conv_shape_init(&s, &e) == 0);
	const double dout[4] = {1, 1, 1, 1};
	double din[9] = {0}, dw[4] = {0}, db = 0;
	mfr_conv2d_backward_ref64(din, dw, &db, dout, in, k2, &s);
	const double wdw[4] = {12, 16, 24, 28}, wdin[9] = {1, 3, 2, 4, 10, 6, 3, 7, 4};
	check_all_near(dw, wdw, 4, EXACT, "conv2d backward dw by hand");
	check_all_near(din, wdin, 9, EXACT, "conv2d backward din by hand");
	CHECK_NEAR(db, 4, EXACT);
}

/* A grouped conv equals its groups run as separate ungrouped convs on the
 * matching channel slices, concatenated: an independent check of the group
 * indexing, forward and backward. */
static void test_conv_groups_split(int groups, int cpg_in, int cpg_out)
{
	mfr_error e = {{0}};
	mfr_conv_shape s = {.n = 2, .ci = groups * cpg_in, .h = 5, .w = 6, .co = groups * cpg_out,
		.kh = 3, .kw = 2, .sh = 2, .sw = 1, .ph = 1, .pw = 1, .groups = groups};
	CHECK(mfr_conv_shape_init(&s, &e) == 0);
	conv_ctx c = {.s = s};
	conv_alloc(&c, 1, 900 + (uint64_t)groups);
	gc_fill(c.dout, c.nout, -1, 1, 42);
	mfr_conv2d_forward_ref64(c.out, c.in, c.w, c.b, &s);
	mfr_conv2d_backward_ref64(c.din, c.dw, c.db, c.dout, c.in, c.w, &s);

	mfr_conv_shape t = s;
	t.ci = cpg_in, t.co = cpg_out, t.groups = 1;
	CHECK(mfr_conv_shape_init(&t, &e) == 0);
	size_t hw = (size_t)s.h * s.w, ohw = (size_t)s.ho * s.wo, wg = (size_t)cpg_out * cpg_in * 6;
	double *in = dalloc((size_t)s.n * cpg_in * hw), *out = dalloc((size_t)s.n * cpg_out * ohw);
	double *dout = dalloc((size_t)s.n * cpg_out * ohw), *din = dalloc((size_t)s.n * cpg_in * hw);
	double *dw = dalloc(wg), db[64] = {0};
	double worst = 0;
	for (int g = 0; g < groups; g++) {
		for (int n = 0; n < s.n; n++) {
			memcpy(in + (size_t)n * cpg_in * hw, c.in + ((size_t)n * s.ci + (size_t)g * cpg_in) * hw,
				cpg_in * hw * sizeof *in);
			memcpy(dout + (size_t)n * cpg_out * ohw,
				c.dout + ((size_t)n * s.co + (size_t)g * cpg_out) * ohw, cpg_out * ohw * sizeof *dout);
		}
		memset(din, 0, (size_t)s.n * cpg_in * hw * sizeof *din);
		memset(dw, 0, wg * sizeof *dw);
		memset(db, 0, sizeof db);
		mfr_conv2d_forward_ref64(out, in, c.w + g * wg, c.b + g * cpg_out, &t);
		mfr_conv2d_backward_ref64(din, dw, db, dout, in, c.w + g * wg, &t);
		for (int n = 0; n < s.n; n++) {
			for (size_t i = 0; i < cpg_out * ohw; i++)
				worst = fmax(worst, fabs(out[n * cpg_out * ohw + i] -
					c.out[((size_t)n * s.co + (size_t)g * cpg_out) * ohw + i]));
			for (size_t i = 0; i < cpg_in * hw; i++)
				worst = fmax(worst, fabs(din[n * cpg_in * hw + i] -
					c.din[((size_t)n * s.ci + (size_t)g * cpg_in) * hw + i]));
		}
		for (size_t i = 0; i < wg; i++)
			worst = fmax(worst, fabs(dw[i] - c.dw[g * wg + i]));
		for (int i = 0; i < cpg_out; i++)
			worst = fmax(worst, fabs(db[i] - c.db[g * cpg_out + i]));
	}
	char what[96];
	snprintf(what, sizeof what, "conv2d groups %d (%d->%d per group) = per-group convs", groups,
		cpg_in, cpg_out);
	/* the same sums in the same order: equal up to rounding of a few terms */
	if (!check_report(worst <= 1e-12, what, __FILE__, __LINE__))
		fprintf(stderr, "    worst difference %g\n", worst);
	free(in), free(out), free(dout), free(din), free(dw);
	conv_free(&c);
}

/* Transposes each (h,w) plane of an (p,h,w) tensor into (p,w,h). */
static void transpose_planes(double *dst, const double *src, int p, int h, int w)
{
	for (int k = 0; k < p; k++)
		for (int y = 0; y < h; y++)
			for (int x = 0; x < w; x++)
				dst[((size_t)k * w + x) * h + y] = src[((size_t)k * h + y) * w + x];
}

/* A 1xk conv with stride (a,b) and padding (c,d) on x is the transpose of a
 * kx1 conv with stride (b,a) and padding (d,c) on x transposed: catches any
 * mix-up of the h and w axes, forward and all gradients. */
static void test_conv_transpose_symmetry(void)
{
	mfr_error e = {{0}};
	mfr_conv_shape a = {.n = 2, .ci = 2, .h = 5, .w = 8, .co = 3, .kh = 1, .kw = 5, .sh = 2,
		.sw = 3, .ph = 1, .pw = 2, .groups = 1};
	mfr_conv_shape b = {.n = 2, .ci = 2, .h = 8, .w = 5, .co = 3, .kh = 5, .kw = 1, .sh = 3,
		.sw = 2, .ph = 2, .pw = 1, .groups = 1};
	CHECK(mfr_conv_shape_init(&a, &e) == 0 && mfr_conv_shape_init(&b, &e) == 0);
	CHECK(a.ho == b.wo && a.wo == b.ho);
	conv_ctx ca = {.s = a}, cb = {.s = b};
	conv_alloc(&ca, 1, 11);
	conv_alloc(&cb, 1, 12);
	gc_fill(ca.dout, ca.nout, -1, 1, 13);
	transpose_planes(cb.in, ca.in, a.n * a.ci, a.h, a.w);
	transpose_planes(cb.w, ca.w, a.co * a.ci, a.kh, a.kw);
	memcpy(cb.b, ca.b, (size_t)a.co * sizeof *cb.b);
	transpose_planes(cb.dout, ca.dout, a.n * a.co, a.ho, a.wo);
	conv_fwd(&ca), conv_bwd(&ca), conv_fwd(&cb), conv_bwd(&cb);
	double *t = dalloc(ca.nout > ca.nin ? ca.nout : ca.nin);
	transpose_planes(t, cb.out, b.n * b.co, b.ho, b.wo);
	check_all_near(t, ca.out, ca.nout, 1e-12, "conv2d 1x5 = transposed 5x1 (forward)");
	transpose_planes(t, cb.din, b.n * b.ci, b.h, b.w);
	check_all_near(t, ca.din, ca.nin, 1e-12, "conv2d 1x5 = transposed 5x1 (din)");
	transpose_planes(t, cb.dw, b.co * b.ci, b.kh, b.kw);
	check_all_near(t, ca.dw, ca.nw, 1e-12, "conv2d 1x5 = transposed 5x1 (dw)");
	check_all_near(cb.db, ca.db, (size_t)a.co, 1e-12, "conv2d 1x5 = transposed 5x1 (db)");
	free(t);
	conv_free(&ca);
	conv_free(&cb);
}

/* NULL gradients are skipped, and each gradient is independent of the others. */
static void test_conv_null_gradients(void)
{
	mfr_error e = {{0}};
	mfr_conv_shape s = {.n = 2, .ci = 4, .h = 5, .w = 5, .co = 4, .kh = 3, .kw = 3, .sh = 1,
		.sw = 1, .ph = 1, .pw = 1, .groups = 2};
	CHECK(mfr_conv_shape_init(&s, &e) == 0);
	conv_ctx c = {.s = s};
	conv_alloc(&c, 1, 31);
	gc_fill(c.dout, c.nout, -1, 1, 32);
	mfr_conv2d_backward_ref64(c.din, c.dw, c.db, c.dout, c.in, c.w, &s);
	double *din = dalloc(c.nin), *dw = dalloc(c.nw), db[4] = {0};
	mfr_conv2d_backward_ref64(din, NULL, NULL, c.dout, c.in, c.w, &s);
	mfr_conv2d_backward_ref64(NULL, dw, NULL, c.dout, c.in, c.w, &s);
	mfr_conv2d_backward_ref64(NULL, NULL, db, c.dout, c.in, c.w, &s);
	check_all_near(din, c.din, c.nin, 0, "conv2d din alone = din with the others");
	check_all_near(dw, c.dw, c.nw, 0, "conv2d dw alone = dw with the others");
	check_all_near(db, c.db, 4, 0, "conv2d db alone = db with the others");
	free(din), free(dw);
	conv_free(&c);
}

/* ---- pooling ---- */

typedef struct {
	mfr_pool_shape s;
	int max;
	double *in, *out, *dout, *din;
	size_t nin, nout;
} pool_ctx;

static void pool_fwd(void *p)
{
	pool_ctx *c = p;
	if (c->max)
		mfr_maxpool2d_forward_ref64(c->out, c->in, &c->s);
	else
		mfr_avgpool2d_forward_ref64(c->out, c->in, &c->s);
}

static void pool_bwd(void *p)
{
	pool_ctx *c = p;
	if (c->max)
		mfr_maxpool2d_backward_ref64(c->din, c->dout, c->in, &c->s);
	else
		mfr_avgpool2d_backward_ref64(c->din, c->dout, &c->s);
}

/* Element i of the input is at a kink of max pooling when some window holding
 * it holds another element within 2 eps of it: a perturbation of +-eps may
 * then swap the argmax and the central difference straddles the switch. */
static int pool_kink(void *p, int v, size_t i, double eps)
{
	const pool_ctx *c = p;
	const mfr_pool_shape *s = &c->s;
	size_t hw = (size_t)s->h * s->w;
	const double *plane = c->in + i / hw * hw;
	int y = (int)(i % hw / s->w), x = (int)(i % s->w);
	(void)v;
	for (int oy = 0; oy < s->ho; oy++)
		for (int ox = 0; ox < s->wo; ox++) {
			int y0 = oy * s->sh - s->ph, x0 = ox * s->sw - s->pw;
			if (y < y0 || y >= y0 + s->kh || x < x0 || x >= x0 + s->kw)
				continue;
			for (int yy = y0 < 0 ? 0 : y0; yy < y0 + s->kh && yy < s->h; yy++)
				for (int xx = x0 < 0 ? 0 : x0; xx < x0 + s->kw && xx < s->w; xx++)
					if ((yy != y || xx != x) && fabs(plane[yy * s->w + xx] - plane[y * s->w + x]) <= 2 * eps)
						return 1;
		}
	return 0;
}

static void pool_gradcheck(mfr_pool_shape s, int max, uint64_t seed, int ties)
{
	mfr_error e = {{0}};
	char what[160];
	snprintf(what, sizeof what, "%s n%d c%d %dx%d k%dx%d s%dx%d p%dx%d%s", max ? "maxpool" : "avgpool",
		s.n, s.c, s.h, s.w, s.kh, s.kw, s.sh, s.sw, s.ph, s.pw, ties ? " with ties" : "");
	if (!check_report(mfr_pool_shape_init(&s, &e) == 0, what, __FILE__, __LINE__)) {
		fprintf(stderr, "    %s\n", e.msg);
		return;
	}
	pool_ctx c = {.s = s, .max = max};
	c.nin = (size_t)s.n * s.c * s.h * s.w;
	c.nout = (size_t)s.n * s.c * s.ho * s.wo;
	c.in = dalloc(c.nin), c.din = dalloc(c.nin), c.out = dalloc(c.nout), c.dout = dalloc(c.nout);
	gc_fill(c.in, c.nin, -1, 1, seed);
	if (ties) /* quantise to 5 levels: many exact ties, which the kink callback must skip */
		for (size_t i = 0; i < c.nin; i++)
			c.in[i] = floor(c.in[i] * 2.5) / 2.5;
	gc_var v = {c.in, c.din, c.nin, "input"};
	gradcheck g = {.forward = pool_fwd, .backward = pool_bwd, .ctx = &c, .out = c.out,
		.dout = c.dout, .n_out = c.nout, .vars = &v, .nvars = 1, .kink = max ? pool_kink : NULL, .max_points = 4096};
	gradcheck_run(&g, what);
	free(c.in), free(c.din), free(c.out), free(c.dout);
}

static void test_pool_gradients(void)
{
	/* n, c, h, w, kh, kw, sh, sw, ph, pw */
	static const int cases[][10] = {
		{2, 3, 7, 5, 3, 3, 2, 2, 1, 1}, /* the classic 3x3/2 pad 1, odd sizes */
		{1, 2, 6, 6, 2, 2, 2, 2, 0, 0}, /* 2x2/2 */
		{2, 2, 5, 7, 1, 3, 1, 2, 0, 2}, /* 1x3, padding as wide as allowed */
		{1, 3, 7, 4, 3, 1, 2, 1, 2, 0}, /* 3x1 */
		{2, 1, 5, 5, 3, 3, 1, 1, 1, 1}, /* overlapping windows */
		{1, 2, 4, 9, 4, 2, 3, 3, 3, 1}, /* stride 3, padding kh-1 */
	};
	for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
		const int *q = cases[k];
		mfr_pool_shape s = {.n = q[0], .c = q[1], .h = q[2], .w = q[3], .kh = q[4], .kw = q[5],
			.sh = q[6], .sw = q[7], .ph = q[8], .pw = q[9]};
		pool_gradcheck(s, 1, 300 + k, 0);
		pool_gradcheck(s, 0, 400 + k, 0);
	}
	mfr_pool_shape t = {.n = 2, .c = 2, .h = 6, .w = 5, .kh = 3, .kw = 3, .sh = 1, .sw = 1, .ph = 1,
		.pw = 1};
	pool_gradcheck(t, 1, 77, 1);
}

static void test_pool_by_hand(void)
{
	const double in[9] = {1, 2, 3, 4, 5, 6, 7, 8, 9};
	double out[9];
	mfr_error e = {{0}};
	mfr_pool_shape s = {.n = 1, .c = 1, .h = 3, .w = 3, .kh = 3, .kw = 3, .sh = 1, .sw = 1,
		.ph = 1, .pw = 1};
	CHECK(mfr_pool_shape_init(&s, &e) == 0 && s.ho == 3 && s.wo == 3);
	mfr_maxpool2d_forward_ref64(out, in, &s);
	const double wmax[9] = {5, 6, 6, 8, 9, 9, 8, 9, 9};
	check_all_near(out, wmax, 9, EXACT, "maxpool 3x3 pad 1 by hand");
	/* padding excluded from the divisor: a corner window averages 4 values */
	mfr_avgpool2d_forward_ref64(out, in, &s);
	const double wavg[9] = {3, 3.5, 4, 4.5, 5, 5.5, 6, 6.5, 7};
	check_all_near(out, wavg, 9, EXACT, "avgpool 3x3 pad 1 by hand (padding not counted)");

	/* avgpool backward: the corner output's gradient is split over its 4
	 * real elements, the edge's over 6, the centre's over 9 */
	double dout[9] = {0}, din[9] = {0};
	dout[0] = 1;
	mfr_avgpool2d_backward_ref64(din, dout, &s);
	const double wd0[9] = {0.25, 0.25, 0, 0.25, 0.25, 0, 0, 0, 0};
	check_all_near(din, wd0, 9, EXACT, "avgpool backward corner window");

	/* 2x2/2 on 4x4 with ties: the first maximum in scan order takes the
	 * gradient, the tied ones nothing */
	const double t[16] = {
		1, 7, 2, 2,
		7, 3, 2, 2,
		0, 0, 5, 4,
		0, 0, 3, 5};
	s = (mfr_pool_shape){.n = 1, .c = 1, .h = 4, .w = 4, .kh = 2, .kw = 2, .sh = 2, .sw = 2};
	CHECK(mfr_pool_shape_init(&s, &e) == 0 && s.ho == 2 && s.wo == 2);
	mfr_maxpool2d_forward_ref64(out, t, &s);
	const double wt[4] = {7, 2, 0, 5};
	check_all_near(out, wt, 4, EXACT, "maxpool 2x2/2 with ties by hand");
	double ones[4] = {1, 10, 100, 1000}, dt[16] = {0};
	mfr_maxpool2d_backward_ref64(dt, ones, t, &s);
	const double wdt[16] = {
		0, 1, 10, 0,
		0, 0, 0, 0,
		100, 0, 1000, 0,
		0, 0, 0, 0};
	check_all_near(dt, wdt, 16, EXACT, "maxpool backward goes to the first maximum");

	/* a NaN wins its window */
	double nanin[4] = {1, NAN, 3, 2}, nanout[1];
	s = (mfr_pool_shape){.n = 1, .c = 1, .h = 2, .w = 2, .kh = 2, .kw = 2, .sh = 2, .sw = 2};
	CHECK(mfr_pool_shape_init(&s, &e) == 0);
	mfr_maxpool2d_forward_ref64(nanout, nanin, &s);
	CHECK(isnan(nanout[0]));
}

/* ---- global average pooling, padding, linear, dropout ---- */

typedef struct {
	int kind; /* 0 gap, 1 pad2d, 2 chanpad, 3 linear, 4 dropout */
	int n, c, c2, hw, ni, no;
	mfr_pad_shape ps;
	double p;
	uint64_t seed;
	double *in, *w, *b, *out, *dout, *din, *dw, *db;
	uint8_t *mask;
} misc_ctx;

static void misc_fwd(void *p)
{
	misc_ctx *c = p;
	switch (c->kind) {
	case 0: mfr_gap_forward_ref64(c->out, c->in, c->n, c->c, c->hw); break;
	case 1: mfr_pad2d_forward_ref64(c->out, c->in, &c->ps); break;
	case 2: mfr_chanpad_forward_ref64(c->out, c->in, c->n, c->c, c->c2, c->hw); break;
	case 3: mfr_linear_forward_ref64(c->out, c->in, c->w, c->b, c->n, c->ni, c->no); break;
	case 4: mfr_dropout_forward_ref64(c->out, c->mask, c->in, c->p, c->seed, (size_t)c->n * c->ni); break;
	}
}

static void misc_bwd(void *p)
{
	misc_ctx *c = p;
	switch (c->kind) {
	case 0: mfr_gap_backward_ref64(c->din, c->dout, c->n, c->c, c->hw); break;
	case 1: mfr_pad2d_backward_ref64(c->din, c->dout, &c->ps); break;
	case 2: mfr_chanpad_backward_ref64(c->din, c->dout, c->n, c->c, c->c2, c->hw); break;
	case 3: mfr_linear_backward_ref64(c->din, c->dw, c->b ? c->db : NULL, c->dout, c->in, c->w, c->n, c->ni, c->no); break;
	case 4: mfr_dropout_backward_ref64(c->din, c->dout, c->mask, c->p, (size_t)c->n * c->ni); break;
	}
}

/* Runs the gradient check of c with nin inputs and nout outputs (and, for
 * linear, nw weights and no biases when c->b is set). */
static void misc_gradcheck(misc_ctx *c, size_t nin, size_t nout, size_t nw, const char *what)
{
	c->in = dalloc(nin), c->din = dalloc(nin), c->out = dalloc(nout), c->dout = dalloc(nout);
	c->w = dalloc(nw), c->dw = dalloc(nw), c->db = dalloc((size_t)c->no + 1);
	c->mask = calloc(nin ? nin : 1, 1);
	if (!c->mask)
		abort();
	gc_fill(c->in, nin, -1, 1, 61);
	gc_fill(c->w, nw, -1, 1, 62);
	if (c->b)
		gc_fill(c->b, (size_t)c->no, -1, 1, 63);
	gc_var v[3] = {{c->in, c->din, nin, "input"}, {c->w, c->dw, nw, "weight"},
		{c->b, c->db, (size_t)c->no, "bias"}};
	gradcheck g = {.forward = misc_fwd, .backward = misc_bwd, .ctx = c, .out = c->out,
		.dout = c->dout, .n_out = nout, .vars = v, .nvars = nw ? (c->b ? 3 : 2) : 1};
	gradcheck_run(&g, what);
	free(c->in), free(c->din), free(c->out), free(c->dout), free(c->w), free(c->dw), free(c->db);
	free(c->mask);
}

static void test_misc_gradients(void)
{
	misc_ctx c = {.kind = 0, .n = 3, .c = 4, .hw = 7 * 5};
	misc_gradcheck(&c, 3 * 4 * 35, 3 * 4, 0, "global average pool 3x4x7x5");

	mfr_error e = {{0}};
	c = (misc_ctx){.kind = 1, .ps = {.n = 2, .c = 3, .h = 5, .w = 4, .top = 1, .bottom = 2,
		.left = 0, .right = 3}};
	CHECK(mfr_pad_shape_init(&c.ps, &e) == 0 && c.ps.ho == 8 && c.ps.wo == 7);
	misc_gradcheck(&c, 2 * 3 * 5 * 4, (size_t)2 * 3 * c.ps.ho * c.ps.wo, 0, "pad2d 2x3x5x4 (1,2,0,3)");

	c = (misc_ctx){.kind = 2, .n = 2, .c = 3, .c2 = 5, .hw = 6};
	misc_gradcheck(&c, 2 * 3 * 6, 2 * 5 * 6, 0, "chanpad 3->5");

	double b[5];
	c = (misc_ctx){.kind = 3, .n = 3, .ni = 7, .no = 5, .b = b};
	misc_gradcheck(&c, 3 * 7, 3 * 5, 5 * 7, "linear 7->5, n 3");
	c = (misc_ctx){.kind = 3, .n = 2, .ni = 4, .no = 6};
	misc_gradcheck(&c, 2 * 4, 2 * 6, 6 * 4, "linear 4->6 without bias");

	c = (misc_ctx){.kind = 4, .n = 3, .ni = 40, .p = 0.3, .seed = 99};
	misc_gradcheck(&c, 120, 120, 0, "dropout p 0.3");
	c = (misc_ctx){.kind = 4, .n = 1, .ni = 50, .p = 0, .seed = 5};
	misc_gradcheck(&c, 50, 50, 0, "dropout p 0");
}

static void test_misc_by_hand(void)
{
	mfr_error e = {{0}};
	const double in[4] = {1, 2, 3, 4};
	double out[16];

	mfr_gap_forward_ref64(out, in, 2, 1, 2);
	const double wg[2] = {1.5, 3.5};
	check_all_near(out, wg, 2, EXACT, "global average pool by hand");

	mfr_pad_shape ps = {.n = 1, .c = 1, .h = 2, .w = 2, .top = 1, .bottom = 0, .left = 0, .right = 2};
	CHECK(mfr_pad_shape_init(&ps, &e) == 0 && ps.ho == 3 && ps.wo == 4);
	mfr_pad2d_forward_ref64(out, in, &ps);
	const double wp[12] = {0, 0, 0, 0, 1, 2, 0, 0, 3, 4, 0, 0};
	check_all_near(out, wp, 12, EXACT, "pad2d (1,0,0,2) by hand");

	mfr_chanpad_forward_ref64(out, in, 2, 1, 3, 2); /* (2,1,1,2) -> (2,3,1,2) */
	const double wc[12] = {1, 2, 0, 0, 0, 0, 3, 4, 0, 0, 0, 0};
	check_all_near(out, wc, 12, EXACT, "chanpad 1->3 by hand");

	const double w[6] = {1, 0, 0, 1, 1, 1}, b[3] = {0, 0, 1}; /* (3,2) */
	mfr_linear_forward_ref64(out, in, w, b, 2, 2, 3);
	const double wl[6] = {1, 2, 4, 3, 4, 8};
	check_all_near(out, wl, 6, EXACT, "linear by hand");

	/* dropout: reproducible, inverted scaling, p = 0 the identity, the kept
	 * fraction close to 1-p */
	enum { N = 20000 };
	double *x = dalloc(N), *y = dalloc(N), *y2 = dalloc(N);
	uint8_t *m = malloc(N), *m2 = malloc(N);
	if (!m || !m2)
		abort();
	gc_fill(x, N, -1, 1, 8);
	mfr_dropout_forward_ref64(y, m, x, 0.25, 1234, N);
	mfr_dropout_forward_ref64(y2, m2, x, 0.25, 1234, N);
	CHECK(memcmp(m, m2, N) == 0 && memcmp(y, y2, N * sizeof *y) == 0);
	size_t kept = 0, right = 0;
	for (size_t i = 0; i < N; i++) {
		kept += m[i];
		right += m[i] ? fabs(y[i] - x[i] / 0.75) <= 1e-15 : y[i] == 0;
	}
	CHECK_EQ_INT(right, N);
	/* binomial sd sqrt(N p (1-p)) ~ 61; 5 sd */
	CHECK(fabs((double)kept - 0.75 * N) < 5 * 61.3);
	mfr_dropout_forward_ref64(y2, m2, x, 0.25, 1235, N);
	CHECK(memcmp(m, m2, N) != 0);
	mfr_dropout_forward_ref64(y, m, x, 0, 1234, N);
	check_all_near(y, x, N, 0, "dropout p 0 is the identity");
	size_t all = 0;
	for (size_t i = 0; i < N; i++)
		all += m[i];
	CHECK_EQ_INT(all, N);
	free(x), free(y), free(y2), free(m), free(m2);
}

/* ---- shape constructors ---- */

static void expect_conv_error(mfr_conv_shape s, const char *needle)
{
	mfr_error e = {{0}};
	int rc = mfr_conv_shape_init(&s, &e);
	char what[128];
	snprintf(what, sizeof what, "conv shape refused with '%s'", needle);
	if (!check_report(rc == -1 && strstr(e.msg, needle), what, __FILE__, __LINE__))
		fprintf(stderr, "    rc %d, message '%s'\n", rc, e.msg);
}

static void expect_pool_error(mfr_pool_shape s, const char *needle)
{
	mfr_error e = {{0}};
	int rc = mfr_pool_shape_init(&s, &e);
	char what[128];
	snprintf(what, sizeof what, "pool shape refused with '%s'", needle);
	if (!check_report(rc == -1 && strstr(e.msg, needle), what, __FILE__, __LINE__))
		fprintf(stderr, "    rc %d, message '%s'\n", rc, e.msg);
}

static void test_shape_errors(void)
{
	const mfr_conv_shape ok = {.n = 1, .ci = 4, .h = 5, .w = 5, .co = 6, .kh = 3, .kw = 3,
		.sh = 1, .sw = 1, .ph = 0, .pw = 0, .groups = 2};
	mfr_conv_shape s = ok;
	mfr_error e = {{0}};
	CHECK(mfr_conv_shape_init(&s, &e) == 0 && s.ho == 3 && s.wo == 3);
	s = ok, s.kh = 6;
	expect_conv_error(s, "kernel 6x3 larger than padded input 5x5");
	s = ok, s.kw = 8, s.pw = 1;
	expect_conv_error(s, "larger than padded input 5x7");
	s = ok, s.kw = 7, s.pw = 1;
	CHECK(mfr_conv_shape_init(&s, &e) == 0 && s.wo == 1);
	s = ok, s.groups = 3;
	expect_conv_error(s, "not divisible by groups 3");
	s = ok, s.co = 5;
	expect_conv_error(s, "not divisible by groups");
	s = ok, s.groups = 0;
	expect_conv_error(s, "groups must be >= 1");
	s = ok, s.h = 0;
	expect_conv_error(s, "input sizes must be >= 1");
	s = ok, s.n = 0;
	expect_conv_error(s, "input sizes must be >= 1");
	s = ok, s.co = 0;
	expect_conv_error(s, "output channels");
	s = ok, s.kw = 0;
	expect_conv_error(s, "kernel must be >= 1x1");
	s = ok, s.sh = 0;
	expect_conv_error(s, "stride must be >= 1");
	s = ok, s.pw = -1;
	expect_conv_error(s, "padding must be >= 0");
	s = ok, s.h = 1 << 28;
	expect_conv_error(s, "2^28 or more");
	s = ok, s.n = 1 << 27, s.ci = 1 << 27;
	expect_conv_error(s, "over 2^40 elements");
	s = ok, s.co = 1 << 20, s.ci = 1 << 20, s.groups = 1;
	expect_conv_error(s, "over 2^40 elements");

	const mfr_pool_shape pok = {.n = 1, .c = 1, .h = 4, .w = 4, .kh = 2, .kw = 3, .sh = 2,
		.sw = 2, .ph = 1, .pw = 2};
	mfr_pool_shape p = pok;
	CHECK(mfr_pool_shape_init(&p, &e) == 0 && p.ho == 3 && p.wo == 3);
	p = pok, p.ph = 2;
	expect_pool_error(p, "padding 2x2 must be smaller than the kernel 2x3");
	p = pok, p.pw = 3;
	expect_pool_error(p, "must be smaller than the kernel");
	p = pok, p.kh = 7;
	expect_pool_error(p, "larger than padded input");
	p = pok, p.c = 0;
	expect_pool_error(p, "input sizes must be >= 1");

	mfr_pad_shape q = {.n = 1, .c = 1, .h = 2, .w = 2, .top = -1};
	CHECK(mfr_pad_shape_init(&q, &e) == -1 && strstr(e.msg, "pad: padding must be >= 0"));
	q = (mfr_pad_shape){.n = 1, .c = 0, .h = 2, .w = 2};
	CHECK(mfr_pad_shape_init(&q, &e) == -1 && strstr(e.msg, "input sizes must be >= 1"));
	q = (mfr_pad_shape){.n = 1, .c = 1, .h = 2, .w = 2};
	CHECK(mfr_pad_shape_init(&q, &e) == 0 && q.ho == 2 && q.wo == 2);
}

int main(void)
{
	test_conv_forward_by_hand();
	test_conv_groups_split(2, 3, 2);
	test_conv_groups_split(4, 1, 1); /* depthwise */
	test_conv_groups_split(3, 2, 4);
	test_conv_transpose_symmetry();
	test_conv_null_gradients();
	test_conv_gradients();
	test_pool_by_hand();
	test_pool_gradients();
	test_misc_by_hand();
	test_misc_gradients();
	test_shape_errors();
	return check_done();
}
