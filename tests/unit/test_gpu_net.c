/* test_gpu_net.c — the GPU executor (gnet.h) against the CPU executor
 * (net.h, on its reference layers) on whole networks: the same parameters,
 * input, dropout seed and output gradients must give the same outputs,
 * running statistics, input gradient and parameter gradients — in fp32 to
 * float rounding, in fp16 and bf16 to their rounding. TINY uses every op of
 * the .arch format; HEAD is iresnet's head (dropout on a map, flatten into a
 * linear), where NHWC vs NCHW order matters; GRAPH has what the planner of
 * gradient slots must get right (a layer no gradient reaches, an input
 * read twice by one add and one concat, an output in mid-network read by
 * later layers, one run with no gradient for it); FUSE what the training
 * fusions of a bn into its reader must and must not take. Backward runs twice on
 * the GPU, so a gradient slot that keeps a stale value fails. Inference nets too (live
 * slots, conv -> bn folded, prelu/relu in place) against the CPU's
 * inference. Skips without a GPU. */
#include "gpu_check.h" /* defines: gcheck_*, CHECK */

#ifdef MFR_HAVE_CUDA
#include "gnet.h"      /* defines: mfr_gnet_* */
#include "net.h"       /* defines: mfr_net_* */
#include "tiny_arch.h" /* defines: TINY, parse */

static const char *HEAD =
	"mfr-arch 1\n"
	"input x 3 8 6\n"
	"conv c1 x out=8 k=3 s=2 p=1\n"
	"bn b1 c1\n"
	"prelu p1 b1\n"
	"dropout d p1 p=0.4\n"
	"flatten f d\n"
	"linear fc f out=16\n"
	"bn1d e fc\n"
	"output e\n";

static const char *GRAPH =
	"mfr-arch 1\n"
	"input x 3 6 5\n"
	"conv c1 x out=4 k=3 p=1\n"
	"bn b1 c1\n"
	"relu r1 b1\n"
	"add a1 r1 r1\n"
	"conv dead r1 out=2 k=1\n"
	"concat cc a1 a1\n"
	"prelu p1 cc\n"
	"conv c2 p1 out=4 k=1\n"
	"add a2 c2 b1 r1\n"
	"dropout d a2 p=0.3\n"
	"gap g d\n"
	"flatten f g\n"
	"linear fc f out=6\n"
	"bn1d e fc\n"
	"output e\n"
	"output b1\n";

/* What the training fusions (gnet.c plan_fusions) must and must not take:
 * bn -> prelu on the input image; bn read by a prelu and an add (not
 * fused); an add of two fused bns; a bn into an add of three (not fused); a
 * net output read by a prelu (not fused); bn1d -> prelu; bn -> relu (a relu
 * is a PReLU of slope 0); an add into a relu (a10), not when another layer
 * reads the add too (a11). And the sharing of
 * an add's gradient slot: a1 by both inputs; a3 by b5 and the owner b1, not
 * p2; a5 by its owner c1, not u1, which would be read after c1's other
 * writer w1 added to it; a8 by both, a7 then by no input (w2 still reads
 * a8's slot, and would write it as o2's gradient). */
static const char *FUSE =
	"mfr-arch 1\n"
	"input x 3 6 5\n"
	"bn b0 x\n"
	"prelu p0 b0\n"
	"conv c1 p0 out=4 k=3 p=1\n"
	"bn b1 c1\n"
	"prelu p1 b1\n"
	"conv c2 p1 out=4 k=1\n"
	"bn b2 c2\n"
	"prelu p2 b2\n"
	"conv c3 p2 out=4 k=1\n"
	"bn b3 c3\n"
	"conv c4 p1 out=4 k=1\n"
	"bn b4 c4\n"
	"add a1 b3 b4\n"
	"bn b5 a1\n"
	"add a3 b5 b1 p2\n"
	"bn b6 a3\n"
	"prelu p6 b6\n"
	"gap g p6\n"
	"flatten f g\n"
	"linear fc f out=6\n"
	"bn1d e fc\n"
	"prelu pe e\n"
	"conv u1 p0 out=4 k=3 p=1\n"
	"conv w1 c1 out=4 k=3 p=1\n"
	"add a5 u1 c1\n"
	"relu r6 a5\n"
	"add a6 r6 w1\n"
	"conv o2 p0 out=4 k=1\n"
	"conv w2 o2 out=4 k=3 p=1\n"
	"conv u2 p0 out=4 k=1\n"
	"add a7 u2 o2\n"
	"add a8 a7 w2\n"
	"conv c9 p0 out=4 k=1\n"
	"bn b9 c9\n"
	"relu r9 b9\n"
	"add a10 r9 c9\n"
	"relu r10 a10\n"
	"conv c13 p0 out=4 k=1\n"
	"add a11 c9 c13\n"
	"relu r11 a11\n"
	"conv c12 r11 out=4 k=1\n"
	"add a12 a11 c12\n"
	"output pe\n"
	"output b6\n"
	"output a6\n"
	"output a8\n"
	"output r10\n"
	"output a12\n";

/* Runs arch text through both executors at batch N in type t and compares.
 * Tolerances relative to each tensor's largest magnitude: fp32 2e-4 — the
 * two sides sum in different orders through ~10 layers, and batch norm over
 * a batch of 4 divides by small standard deviations, which magnifies
 * rounding; fp16 3e-2 and bf16 1.5e-1 — about 30 units of the type's
 * rounding, as every layer's output is rounded to the type again. */
static double tol_of(mfr_dtype t) { return t == MFR_F32 ? 2e-4 : t == MFR_F16 ? 3e-2 : 1.5e-1; }

/* Output k of both executors' last forward at batch N, compared (what names
 * it); returns output k's layer. */
static const mfr_layer *compare_output(mfr_gpu *g, mfr_net *cn, mfr_gnet *gn, const mfr_arch *a, int k, int N,
				       mfr_dtype t, const char *what)
{
	size_t dim, gdim;
	float *want = mfr_net_output(cn, k, &dim);
	void *got_d = mfr_gnet_output(gn, k, &gdim);
	CHECK(dim == gdim);
	const mfr_layer *O = &a->layers[a->outputs[k]];
	float *got = gcheck_xmalloc((size_t)N * dim * sizeof *got);
	gcheck_get_nchw(g, got, got_d, N, O->shape.c, O->shape.h * O->shape.w, t);
	gcheck_close(what, got, want, (size_t)N * dim, tol_of(t));
	free(got);
	return O;
}

/* ... with no gradient for output skip (-1: every output has one). */
static void compare(mfr_gpu *g, const char *name, const char *text, int N, mfr_dtype t, int skip)
{
	char what[160];
	mfr_error e = {{0}};
	mfr_arch *a = parse(text);
	CHECK(a != NULL);
	if (!a)
		return;
	double tol = tol_of(t);
	mfr_net *cn = mfr_net_new(a, N, 1, &e);
	mfr_gnet *gn = mfr_gnet_new(g, a, N, 1, t, &e);
	CHECK(cn && gn);
	if (!cn || !gn) {
		fprintf(stderr, "    %s\n", e.msg);
		goto out;
	}
	mfr_net_set_reference(cn, 1);
	mfr_net_init(cn, 7);
	size_t P = mfr_net_param_total(cn);
	CHECK(P == mfr_gnet_param_total(gn));
	float *params = mfr_net_params(cn);
	gcheck_round(params, P, t); /* the device's compute copies see these exactly */
	if (mfr_gnet_put_params(gn, params, &e) < 0)
		gcheck_die("put params", &e);
	const mfr_layer *in = &a->layers[0];
	int C = in->shape.c, HW = in->shape.h * in->shape.w;
	size_t xn = (size_t)N * C * HW;
	float *x = gcheck_xmalloc(xn * sizeof *x);
	gcheck_fill(x, xn, 11, 1.5f);
	gcheck_round(x, xn, t);
	void *dx = gcheck_put_nhwc(g, x, N, C, HW, t);
	uint64_t seed = 99;
	CHECK(mfr_net_forward(cn, x, N, 1, seed, &e) == 0);
	if (mfr_gnet_forward(gn, dx, N, 1, seed, &e) < 0)
		gcheck_die("gnet forward", &e);

	/* outputs (vectors: same layout on both sides), and a gradient for each */
	const void *douts[8] = {0};
	const float *cdouts[8] = {0};
	float *dbuf[8] = {0};
	for (int k = 0; k < a->n_outputs && k < 8; k++) {
		snprintf(what, sizeof what, "%s %s forward output %d", name, mfr_dtype_name(t), k);
		const mfr_layer *O = compare_output(g, cn, gn, a, k, N, t, what);
		size_t dim = (size_t)O->shape.c * O->shape.h * O->shape.w;
		dbuf[k] = gcheck_xmalloc((size_t)N * dim * sizeof *dbuf[k]);
		gcheck_fill(dbuf[k], (size_t)N * dim, 100 + (uint64_t)k, 1.0f);
		gcheck_round(dbuf[k], (size_t)N * dim, t);
		if (k == skip)
			continue;
		cdouts[k] = dbuf[k];
		douts[k] = gcheck_put_nhwc(g, dbuf[k], N, O->shape.c, O->shape.h * O->shape.w, t);
	}
	/* running statistics were updated in place by both */
	float *gp = gcheck_xmalloc(P * sizeof *gp);
	if (mfr_gnet_get_params(gn, gp, &e) < 0)
		gcheck_die("get params", &e);
	snprintf(what, sizeof what, "%s %s parameters after a training forward", name, mfr_dtype_name(t));
	gcheck_close(what, gp, mfr_net_params(cn), P, t == MFR_F32 ? 1e-5 : tol);

	mfr_net_zero_grad(cn);
	CHECK(mfr_net_backward(cn, cdouts, &e) == 0);
	float *gg = gcheck_xmalloc(P * sizeof *gg), *gx = gcheck_xmalloc(xn * sizeof *gx);
	for (int run = 1; run <= 2; run++) {
		if (mfr_gnet_zero_grad(gn, &e) < 0 || mfr_gnet_backward(gn, douts, NULL, NULL, &e) < 0)
			gcheck_die("gnet backward", &e);
		if (mfr_gnet_get_grads(gn, gg, &e) < 0)
			gcheck_die("get grads", &e);
		/* per tensor, so a wrong layer is named */
		for (int i = 0; i < a->n_tensors; i++) {
			const mfr_arch_tensor *T = &a->tensors[i];
			if (T->buffer)
				continue;
			float *want = mfr_net_tensor_grad(cn, i);
			size_t off = (size_t)(want - mfr_net_grads(cn));
			snprintf(what, sizeof what, "%s %s backward %d: gradient of %s", name, mfr_dtype_name(t), run,
				 T->name);
			gcheck_close(what, gg + off, want, (size_t)T->count, tol);
		}
		gcheck_get_nchw(g, gx, mfr_gnet_input_grad(gn), N, C, HW, t);
		snprintf(what, sizeof what, "%s %s backward %d: input gradient", name, mfr_dtype_name(t), run);
		gcheck_close(what, gx, mfr_net_input_grad(cn), xn, tol);
	}
	/* the input's gradient skipped: the parameters' the same */
	mfr_gnet_skip_input_grad(gn, 1);
	float *gs = gcheck_xmalloc(P * sizeof *gs);
	if (mfr_gnet_zero_grad(gn, &e) < 0 || mfr_gnet_backward(gn, douts, NULL, NULL, &e) < 0 ||
	    mfr_gnet_get_grads(gn, gs, &e) < 0)
		gcheck_die("gnet backward without the input's gradient", &e);
	snprintf(what, sizeof what, "%s %s backward without the input's gradient: the same parameter gradients", name,
		 mfr_dtype_name(t));
	gcheck_close(what, gs, gg, P, t == MFR_F32 ? 1e-5 : tol); /* (cuDNN's backward may sum in any order) */
	snprintf(what, sizeof what, "%s %s backward without the input's gradient: none given", name, mfr_dtype_name(t));
	if (check_report(mfr_gnet_input_grad(gn) == NULL, what, __FILE__, __LINE__))
		printf("ok %s\n", what);
	mfr_gnet_skip_input_grad(gn, 0);
	free(gs);
	/* an evaluation forward of the training nets: running statistics */
	CHECK(mfr_net_forward(cn, x, N, 0, seed, &e) == 0);
	if (mfr_gnet_forward(gn, dx, N, 0, seed, &e) < 0)
		gcheck_die("gnet evaluation forward", &e);
	for (int k = 0; k < a->n_outputs; k++) {
		snprintf(what, sizeof what, "%s %s evaluation output %d", name, mfr_dtype_name(t), k);
		compare_output(g, cn, gn, a, k, N, t, what);
	}

	free(gx);
	free(gg);
	free(gp);
	for (int k = 0; k < 8; k++) {
		free(dbuf[k]);
		mfr_gpu_free(g, (void *)douts[k]);
	}
	mfr_gpu_free(g, dx);
	free(x);
out:
	mfr_gnet_free(gn);
	mfr_net_free(cn);
	mfr_arch_free(a);
}

/* An inference net on both sides (the GPU's keeps live slots only, folds
 * conv -> bn pairs into the conv and runs prelu/relu in place; the CPU's
 * folds too) from parameters whose running statistics a training forward
 * has moved off 0 and 1, so the fold has something to fold: the outputs at
 * batches max_batch and 1 agree, to the tolerances of compare. */
static void compare_inference(mfr_gpu *g, const char *name, const char *text, int N, mfr_dtype t)
{
	char what[160];
	mfr_error e = {{0}};
	mfr_arch *a = parse(text);
	CHECK(a != NULL);
	if (!a)
		return;
	mfr_net *tn = mfr_net_new(a, N, 1, &e), *cn = mfr_net_new(a, N, 0, &e);
	mfr_gnet *gn = mfr_gnet_new(g, a, N, 0, t, &e);
	CHECK(tn && cn && gn);
	if (!tn || !cn || !gn) {
		fprintf(stderr, "    %s\n", e.msg);
		goto out;
	}
	mfr_net_set_reference(tn, 1);
	mfr_net_set_reference(cn, 1);
	mfr_net_init(tn, 8);
	const mfr_layer *in = &a->layers[0];
	int C = in->shape.c, HW = in->shape.h * in->shape.w;
	size_t xn = (size_t)N * C * HW, P = mfr_net_param_total(tn);
	float *x = gcheck_xmalloc(xn * sizeof *x);
	gcheck_fill(x, xn, 12, 2.0f);
	CHECK(mfr_net_forward(tn, x, N, 1, 5, &e) == 0); /* running statistics move */
	float *params = mfr_net_params(cn);
	memcpy(params, mfr_net_params(tn), P * sizeof *params);
	gcheck_round(params, P, t);
	gcheck_fill(x, xn, 13, 1.5f);
	gcheck_round(x, xn, t);
	if (mfr_gnet_put_params(gn, params, &e) < 0)
		gcheck_die("put params", &e);
	void *dx = gcheck_put_nhwc(g, x, N, C, HW, t);
	for (int batch = N; batch >= 1; batch = batch > 1 ? 1 : 0) {
		CHECK(mfr_net_forward(cn, x, batch, 0, 0, &e) == 0);
		if (mfr_gnet_forward(gn, dx, batch, 0, 0, &e) < 0)
			gcheck_die("gnet inference", &e);
		for (int k = 0; k < a->n_outputs; k++) {
			snprintf(what, sizeof what, "%s %s inference output %d at batch %d", name, mfr_dtype_name(t), k, batch);
			compare_output(g, cn, gn, a, k, batch, t, what);
		}
	}
	/* the live-slot plan is what it claims: far less than a block per layer */
	snprintf(what, sizeof what, "%s %s inference plan %zu bytes < training's %zu", name, mfr_dtype_name(t),
		 mfr_gnet_bytes(a, 256, 0, t), mfr_gnet_bytes(a, 256, 1, t));
	if (check_report(mfr_gnet_bytes(a, 256, 0, t) < mfr_gnet_bytes(a, 256, 1, t) / 2, what, __FILE__, __LINE__))
		printf("ok %s\n", what);
	mfr_gpu_free(g, dx);
	free(x);
out:
	mfr_gnet_free(gn);
	mfr_net_free(cn);
	mfr_net_free(tn);
	mfr_arch_free(a);
}
#endif

int main(void)
{
#ifndef MFR_HAVE_CUDA
	printf("skip: gpu net: built without CUDA\n");
#else
	mfr_gpu *g = gcheck_open("gpu net");
	if (g) {
		mfr_dtype types[3] = {MFR_F32, MFR_F16, MFR_BF16};
		for (int k = 0; k < 3; k++) {
			compare(g, "tiny", TINY, 4, types[k], -1);
			compare(g, "head", HEAD, 3, types[k], -1);
			compare(g, "graph", GRAPH, 3, types[k], -1);
			compare(g, "fuse", FUSE, 3, types[k], -1);
		}
		compare(g, "tiny batch 2", TINY, 2, MFR_F32, -1);
		compare(g, "graph, no gradient for output 1", GRAPH, 3, MFR_F32, 1);
		for (int k = 0; k < 3; k++) {
			compare_inference(g, "tiny", TINY, 4, types[k]);
			compare_inference(g, "head", HEAD, 3, types[k]);
		}
		mfr_gpu_close(g);
	}
#endif
	return check_done();
}
