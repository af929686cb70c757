/* test_layers_float.c — the float build of the spatial reference layers
 * (mfr_*_ref, in libmfr) against the double build (mfr_*_ref64, gradient
 * checked in test_layers_spatial.c) on the same float inputs: forward and
 * every backward, with the += buffers pre-filled. Both builds carry sums in
 * double, so they differ only by float rounding of results and of the +=.
 *
 * real.h gives one mfr_real per translation unit, so this file includes
 * layers_spatial.h for float and declares the few double functions it calls
 * by hand below; they must follow the header (the double build's signatures
 * are the float ones with double for mfr_real). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"          /* defines: CHECK, check_report, check_done */
#include "layers_spatial.h" /* defines: mfr_conv2d_forward_ref, mfr_conv_shape, ... */

void mfr_conv2d_forward_ref64(double *out, const double *in, const double *w, const double *b,
	const mfr_conv_shape *s);
void mfr_conv2d_backward_ref64(double *din, double *dw, double *db, const double *dout,
	const double *in, const double *w, const mfr_conv_shape *s);
void mfr_maxpool2d_forward_ref64(double *out, const double *in, const mfr_pool_shape *s);
void mfr_maxpool2d_backward_ref64(double *din, const double *dout, const double *in,
	const mfr_pool_shape *s);
void mfr_avgpool2d_forward_ref64(double *out, const double *in, const mfr_pool_shape *s);
void mfr_avgpool2d_backward_ref64(double *din, const double *dout, const mfr_pool_shape *s);
void mfr_gap_forward_ref64(double *out, const double *in, int n, int c, int hw);
void mfr_gap_backward_ref64(double *din, const double *dout, int n, int c, int hw);
void mfr_pad2d_forward_ref64(double *out, const double *in, const mfr_pad_shape *s);
void mfr_pad2d_backward_ref64(double *din, const double *dout, const mfr_pad_shape *s);
void mfr_chanpad_forward_ref64(double *out, const double *in, int n, int c, int c2, int hw);
void mfr_chanpad_backward_ref64(double *din, const double *dout, int n, int c, int c2, int hw);
void mfr_linear_forward_ref64(double *out, const double *in, const double *w, const double *b,
	int n, int ni, int no);
void mfr_linear_backward_ref64(double *din, double *dw, double *db, const double *dout,
	const double *in, const double *w, int n, int ni, int no);
void mfr_dropout_forward_ref64(double *out, uint8_t *mask, const double *in, double p,
	uint64_t seed, size_t count);
void mfr_dropout_backward_ref64(double *din, const double *dout, const uint8_t *mask, double p,
	size_t count);

/* A float tensor and its exact double copy. */
typedef struct {
	float *f;
	double *d;
	size_t n;
} pair;

static pair mk(size_t n, double lo, double hi, uint64_t seed)
{
	pair p = {calloc(n ? n : 1, sizeof(float)), calloc(n ? n : 1, sizeof(double)), n};
	if (!p.f || !p.d)
		abort();
	mfr_rng r = {seed};
	for (size_t i = 0; i < n; i++) {
		p.f[i] = (float)(lo + (hi - lo) * mfr_rng_uniform(&r));
		p.d[i] = p.f[i];
	}
	return p;
}

static void drop(pair *p) { free(p->f), free(p->d); }

/* Float results must agree to 1e-5 relative (scaled by max(|d|, 1), as the
 * gradient checks scale): float keeps 24 bits (6e-8), and the += into a
 * pre-filled buffer adds one more rounding, so 1e-5 leaves a wide margin
 * while catching any real difference between the builds. */
static void agree(const pair *p, const char *what)
{
	double worst = 0;
	size_t wi = 0;
	for (size_t i = 0; i < p->n; i++) {
		double err = fabs(p->f[i] - p->d[i]) / fmax(fabs(p->d[i]), 1);
		if (!(err <= worst)) {
			worst = err;
			wi = i;
		}
	}
	if (!check_report(worst <= 1e-5, what, __FILE__, __LINE__))
		fprintf(stderr, "    worst relative error %.3g at [%zu]: float %.9g, double %.9g\n", worst,
			wi, (double)p->f[wi], p->d[wi]);
}

static void test_conv(mfr_conv_shape s, uint64_t seed)
{
	mfr_error e = {{0}};
	CHECK(mfr_conv_shape_init(&s, &e) == 0);
	size_t nin = (size_t)s.n * s.ci * s.h * s.w, nw = (size_t)s.co * (s.ci / s.groups) * s.kh * s.kw;
	size_t nout = (size_t)s.n * s.co * s.ho * s.wo;
	pair in = mk(nin, -1, 1, seed), w = mk(nw, -1, 1, seed + 1), b = mk((size_t)s.co, -1, 1, seed + 2);
	pair out = mk(nout, 0, 0, 0), dout = mk(nout, -1, 1, seed + 3);
	pair din = mk(nin, -1, 1, seed + 4), dw = mk(nw, -1, 1, seed + 5), db = mk((size_t)s.co, -1, 1, seed + 6);
	mfr_conv2d_forward_ref(out.f, in.f, w.f, b.f, &s);
	mfr_conv2d_forward_ref64(out.d, in.d, w.d, b.d, &s);
	mfr_conv2d_backward_ref(din.f, dw.f, db.f, dout.f, in.f, w.f, &s);
	mfr_conv2d_backward_ref64(din.d, dw.d, db.d, dout.d, in.d, w.d, &s);
	char what[96];
	snprintf(what, sizeof what, "conv2d k%dx%d g%d float = double: ", s.kh, s.kw, s.groups);
	size_t l = strlen(what);
	strcpy(what + l, "out"), agree(&out, what);
	strcpy(what + l, "din"), agree(&din, what);
	strcpy(what + l, "dw"), agree(&dw, what);
	strcpy(what + l, "db"), agree(&db, what);
	drop(&in), drop(&w), drop(&b), drop(&out), drop(&dout), drop(&din), drop(&dw), drop(&db);
}

static void test_pool(void)
{
	mfr_error e = {{0}};
	mfr_pool_shape s = {.n = 2, .c = 3, .h = 9, .w = 7, .kh = 3, .kw = 2, .sh = 2, .sw = 1, .ph = 1,
		.pw = 1};
	CHECK(mfr_pool_shape_init(&s, &e) == 0);
	size_t nin = (size_t)s.n * s.c * s.h * s.w, nout = (size_t)s.n * s.c * s.ho * s.wo;
	pair in = mk(nin, -1, 1, 1), out = mk(nout, 0, 0, 0), dout = mk(nout, -1, 1, 2);
	pair din = mk(nin, -1, 1, 3);
	mfr_maxpool2d_forward_ref(out.f, in.f, &s);
	mfr_maxpool2d_forward_ref64(out.d, in.d, &s);
	agree(&out, "maxpool float = double: out");
	mfr_maxpool2d_backward_ref(din.f, dout.f, in.f, &s);
	mfr_maxpool2d_backward_ref64(din.d, dout.d, in.d, &s);
	agree(&din, "maxpool float = double: din");
	mfr_avgpool2d_forward_ref(out.f, in.f, &s);
	mfr_avgpool2d_forward_ref64(out.d, in.d, &s);
	agree(&out, "avgpool float = double: out");
	mfr_avgpool2d_backward_ref(din.f, dout.f, &s);
	mfr_avgpool2d_backward_ref64(din.d, dout.d, &s);
	agree(&din, "avgpool float = double: din");
	drop(&in), drop(&out), drop(&dout), drop(&din);

	pair g = mk(2 * 3 * 63, -1, 1, 4), go = mk(6, 0, 0, 0), gd = mk(6, -1, 1, 5), gi = mk(2 * 3 * 63, -1, 1, 6);
	mfr_gap_forward_ref(go.f, g.f, 2, 3, 63);
	mfr_gap_forward_ref64(go.d, g.d, 2, 3, 63);
	agree(&go, "global average pool float = double: out");
	mfr_gap_backward_ref(gi.f, gd.f, 2, 3, 63);
	mfr_gap_backward_ref64(gi.d, gd.d, 2, 3, 63);
	agree(&gi, "global average pool float = double: din");
	drop(&g), drop(&go), drop(&gd), drop(&gi);
}

static void test_pads(void)
{
	mfr_error e = {{0}};
	mfr_pad_shape s = {.n = 2, .c = 2, .h = 3, .w = 5, .top = 2, .bottom = 1, .left = 1, .right = 0};
	CHECK(mfr_pad_shape_init(&s, &e) == 0);
	size_t nin = 2 * 2 * 15, nout = (size_t)2 * 2 * s.ho * s.wo;
	pair in = mk(nin, -1, 1, 1), out = mk(nout, 0, 0, 0), dout = mk(nout, -1, 1, 2), din = mk(nin, -1, 1, 3);
	mfr_pad2d_forward_ref(out.f, in.f, &s);
	mfr_pad2d_forward_ref64(out.d, in.d, &s);
	agree(&out, "pad2d float = double: out");
	mfr_pad2d_backward_ref(din.f, dout.f, &s);
	mfr_pad2d_backward_ref64(din.d, dout.d, &s);
	agree(&din, "pad2d float = double: din");
	drop(&out), drop(&dout);
	out = mk(2 * 5 * 15, 0, 0, 0), dout = mk(2 * 5 * 15, -1, 1, 4);
	mfr_chanpad_forward_ref(out.f, in.f, 2, 2, 5, 15);
	mfr_chanpad_forward_ref64(out.d, in.d, 2, 2, 5, 15);
	agree(&out, "chanpad float = double: out");
	mfr_chanpad_backward_ref(din.f, dout.f, 2, 2, 5, 15);
	mfr_chanpad_backward_ref64(din.d, dout.d, 2, 2, 5, 15);
	agree(&din, "chanpad float = double: din");
	drop(&in), drop(&out), drop(&dout), drop(&din);
}

static void test_linear_dropout(void)
{
	enum { N = 3, I = 50, O = 17 };
	pair in = mk(N * I, -1, 1, 1), w = mk(O * I, -1, 1, 2), b = mk(O, -1, 1, 3), out = mk(N * O, 0, 0, 0);
	pair dout = mk(N * O, -1, 1, 4), din = mk(N * I, -1, 1, 5), dw = mk(O * I, -1, 1, 6), db = mk(O, -1, 1, 7);
	mfr_linear_forward_ref(out.f, in.f, w.f, b.f, N, I, O);
	mfr_linear_forward_ref64(out.d, in.d, w.d, b.d, N, I, O);
	agree(&out, "linear float = double: out");
	mfr_linear_backward_ref(din.f, dw.f, db.f, dout.f, in.f, w.f, N, I, O);
	mfr_linear_backward_ref64(din.d, dw.d, db.d, dout.d, in.d, w.d, N, I, O);
	agree(&din, "linear float = double: din");
	agree(&dw, "linear float = double: dw");
	agree(&db, "linear float = double: db");

	/* the same seed draws the same mask in both builds */
	uint8_t mf[N * I], md[N * I];
	mfr_dropout_forward_ref(din.f, mf, in.f, 0.4, 77, N * I);
	mfr_dropout_forward_ref64(din.d, md, in.d, 0.4, 77, N * I);
	CHECK(memcmp(mf, md, sizeof mf) == 0);
	agree(&din, "dropout float = double: out");
	pair dd = mk(N * I, -1, 1, 8), dg = mk(N * I, -1, 1, 9);
	mfr_dropout_backward_ref(dd.f, dg.f, mf, 0.4, N * I);
	mfr_dropout_backward_ref64(dd.d, dg.d, md, 0.4, N * I);
	agree(&dd, "dropout float = double: din");
	drop(&in), drop(&w), drop(&b), drop(&out), drop(&dout), drop(&din), drop(&dw), drop(&db);
	drop(&dd), drop(&dg);
}

int main(void)
{
	test_conv((mfr_conv_shape){.n = 2, .ci = 4, .h = 9, .w = 7, .co = 6, .kh = 3, .kw = 3, .sh = 2,
		.sw = 2, .ph = 1, .pw = 1, .groups = 2}, 10);
	test_conv((mfr_conv_shape){.n = 1, .ci = 8, .h = 6, .w = 11, .co = 8, .kh = 1, .kw = 7, .sh = 1,
		.sw = 2, .ph = 0, .pw = 3, .groups = 8}, 20);
	test_conv((mfr_conv_shape){.n = 2, .ci = 16, .h = 7, .w = 7, .co = 12, .kh = 3, .kw = 1, .sh = 1,
		.sw = 1, .ph = 1, .pw = 0, .groups = 1}, 30);
	test_pool();
	test_pads();
	test_linear_dropout();
	return check_done();
}
