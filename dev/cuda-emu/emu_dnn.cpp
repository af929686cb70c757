/* emu_dnn.cpp — cuda-emu's cuDNN legacy convolutions (cudnn.h): naive loops
 * in float over 4-d tensors of the declared type and strides (NCHW or NHWC
 * activations, KCRS or KRSC filters), groups, padding, stride, dilation,
 * convolution or cross-correlation, alpha/beta blending.
 *
 * Modelled so that a caller's mistakes show: descriptors are validated as
 * cuDNN does (group divisibility, output dims, types); the algorithm lists
 * hold every algorithm of the direction, two usable (one needing a
 * workspace, so the caller's workspace path runs) and the rest
 * NOT_SUPPORTED; a call gets BAD_PARAM with a workspace smaller than its
 * algorithm needs, and the workspace is scribbled on (so scratch shared with
 * other data is caught); fp32 data under DEFAULT or TENSOR_OP math is
 * rounded to TF32 first (what cuDNN may do on sm_80+), under
 * ALLOW_CONVERSION to fp16; FMA math is exact float. Operands must lie in
 * device memory; an output overlapping an input is an error. A call runs
 * when made, after the work deferred on the handle's stream. */
#include "cudnn.h"

#include <stdio.h>
#include <string.h>
#include <stdlib.h>

#define MAGIC 0xd00dd00du

struct emu_cudnn {
	unsigned magic;
	cudaStream_t stream;
};
struct emu_tensor_desc {
	unsigned magic;
	int set;
	cudnnDataType_t t;
	int n, c, h, w;
	long long ns, cs, hs, ws;
};
struct emu_filter_desc {
	unsigned magic;
	int set;
	cudnnDataType_t t;
	cudnnTensorFormat_t f;
	int k, c, h, w;
	long long ks, cs, hs, ws;
};
struct emu_conv_desc {
	unsigned magic;
	int set;
	int ph, pw, sh, sw, dh, dw;
	cudnnConvolutionMode_t mode;
	cudnnDataType_t compute;
	int groups;
	cudnnMathType_t math;
};

namespace {

int type_ok(cudnnDataType_t t)
{
	return t == CUDNN_DATA_FLOAT || t == CUDNN_DATA_DOUBLE || t == CUDNN_DATA_HALF || t == CUDNN_DATA_BFLOAT16;
}
size_t tsize(cudnnDataType_t t) { return t == CUDNN_DATA_DOUBLE ? 8 : t == CUDNN_DATA_FLOAT ? 4 : 2; }
const char *tname(cudnnDataType_t t)
{
	switch (t) {
	case CUDNN_DATA_FLOAT: return "FLOAT";
	case CUDNN_DATA_DOUBLE: return "DOUBLE";
	case CUDNN_DATA_HALF: return "HALF";
	case CUDNN_DATA_BFLOAT16: return "BFLOAT16";
	default: return "another type";
	}
}

float ld(const void *p, long long i, cudnnDataType_t t)
{
	switch (t) {
	case CUDNN_DATA_HALF: return emu_h2f(((const uint16_t *)p)[i]);
	case CUDNN_DATA_BFLOAT16: return emu_b2f(((const uint16_t *)p)[i]);
	case CUDNN_DATA_DOUBLE: return (float)((const double *)p)[i];
	default: return ((const float *)p)[i];
	}
}
void st(void *p, long long i, cudnnDataType_t t, float v)
{
	switch (t) {
	case CUDNN_DATA_HALF: ((uint16_t *)p)[i] = emu_f2h(v); break;
	case CUDNN_DATA_BFLOAT16: ((uint16_t *)p)[i] = emu_f2b(v); break;
	case CUDNN_DATA_DOUBLE: ((double *)p)[i] = v; break;
	default: ((float *)p)[i] = v;
	}
}

float tf32(float x)
{
	uint32_t u;
	memcpy(&u, &x, 4);
	if ((u & 0x7f800000u) == 0x7f800000u)
		return x;
	u += 0x1000u;
	u &= ~0x1fffu;
	memcpy(&x, &u, 4);
	return x;
}

/* How inputs are rounded before the float products: 0 none, 1 TF32, 2 fp16. */
int input_rounding(cudnnDataType_t t, cudnnMathType_t m)
{
	if (t != CUDNN_DATA_FLOAT)
		return 0;
	if (m == CUDNN_TENSOR_OP_MATH_ALLOW_CONVERSION)
		return 2;
	return m == CUDNN_FMA_MATH ? 0 : 1;
}
float rnd(float v, int how) { return how == 1 ? tf32(v) : how == 2 ? emu_h2f(emu_f2h(v)) : v; }

int handle_ok(cudnnHandle_t h) { return h && h->magic == MAGIC; }

/* The geometry of one convolution, checked as cuDNN checks it. */
struct Geo {
	const emu_tensor_desc *x, *y;
	const emu_filter_desc *w;
	const emu_conv_desc *c;
	int N, C, H, W, K, R, S, Ho, Wo, G, Cg, Kg;
	cudnnDataType_t t;
	int round;
};

cudnnStatus_t out_dims(const emu_conv_desc *c, const emu_tensor_desc *x, const emu_filter_desc *w, int *n, int *k,
		       int *h, int *wo, const char *fn)
{
	if (!c || c->magic != MAGIC || !c->set || !x || x->magic != MAGIC || !x->set || !w || w->magic != MAGIC ||
	    !w->set) {
		emu_note("%s: a descriptor is NULL, destroyed or never set", fn);
		return CUDNN_STATUS_BAD_PARAM;
	}
	if (x->c != w->c * c->groups || w->k % c->groups) {
		emu_note("%s: input has %d channels, filter %d x %d per group with %d groups (needs C = c*groups and K "
			 "divisible by groups)",
			 fn, x->c, w->k, w->c, c->groups);
		return CUDNN_STATUS_BAD_PARAM;
	}
	int eh = (w->h - 1) * c->dh + 1, ew = (w->w - 1) * c->dw + 1;
	int oh = (x->h + 2 * c->ph - eh) / c->sh + 1, ow = (x->w + 2 * c->pw - ew) / c->sw + 1;
	if (x->h + 2 * c->ph < eh || x->w + 2 * c->pw < ew || oh < 1 || ow < 1) {
		emu_note("%s: the filter %dx%d (dilated %dx%d) does not fit the padded input %dx%d", fn, w->h, w->w, eh, ew,
			 x->h + 2 * c->ph, x->w + 2 * c->pw);
		return CUDNN_STATUS_BAD_PARAM;
	}
	*n = x->n;
	*k = w->k;
	*h = oh;
	*wo = ow;
	return CUDNN_STATUS_SUCCESS;
}

cudnnStatus_t geometry(Geo *g, const emu_tensor_desc *x, const emu_filter_desc *w, const emu_conv_desc *c,
		       const emu_tensor_desc *y, const char *fn)
{
	int n, k, h, wo;
	cudnnStatus_t s = out_dims(c, x, w, &n, &k, &h, &wo, fn);
	if (s != CUDNN_STATUS_SUCCESS)
		return s;
	if (!y || y->magic != MAGIC || !y->set) {
		emu_note("%s: the output descriptor is NULL, destroyed or never set", fn);
		return CUDNN_STATUS_BAD_PARAM;
	}
	if (y->n != n || y->c != k || y->h != h || y->w != wo) {
		emu_note("%s: output descriptor is %dx%dx%dx%d (NCHW), the convolution makes %dx%dx%dx%d", fn, y->n, y->c,
			 y->h, y->w, n, k, h, wo);
		return CUDNN_STATUS_BAD_PARAM;
	}
	if (x->t != w->t || x->t != y->t) {
		emu_note("%s: data types differ: x %s, w %s, y %s", fn, tname(x->t), tname(w->t), tname(y->t));
		return CUDNN_STATUS_BAD_PARAM;
	}
	int ok = x->t == CUDNN_DATA_FLOAT ? c->compute == CUDNN_DATA_FLOAT
		 : x->t == CUDNN_DATA_DOUBLE ? c->compute == CUDNN_DATA_DOUBLE
		 : x->t == CUDNN_DATA_HALF ? c->compute == CUDNN_DATA_FLOAT || c->compute == CUDNN_DATA_HALF
					   : c->compute == CUDNN_DATA_FLOAT;
	if (!ok) {
		emu_note("%s: %s data with %s compute type is not a supported configuration", fn, tname(x->t),
			 tname(c->compute));
		return CUDNN_STATUS_NOT_SUPPORTED;
	}
	g->x = x, g->y = y, g->w = w, g->c = c;
	g->N = x->n, g->C = x->c, g->H = x->h, g->W = x->w, g->K = w->k, g->R = w->h, g->S = w->w;
	g->Ho = h, g->Wo = wo, g->G = c->groups, g->Cg = w->c, g->Kg = w->k / c->groups;
	g->t = x->t;
	g->round = input_rounding(x->t, c->math);
	return CUDNN_STATUS_SUCCESS;
}

long long tidx(const emu_tensor_desc *d, int n, int c, int h, int w)
{
	return n * d->ns + c * d->cs + h * d->hs + w * d->ws;
}
long long fidx(const emu_filter_desc *d, int k, int c, int h, int w)
{
	return k * d->ks + c * d->cs + h * d->hs + w * d->ws;
}
size_t tbytes(const emu_tensor_desc *d)
{
	return (size_t)((d->n - 1) * d->ns + (d->c - 1) * d->cs + (d->h - 1) * d->hs + (d->w - 1) * d->ws + 1) *
	       tsize(d->t);
}
size_t fbytes(const emu_filter_desc *d)
{
	return (size_t)((d->k - 1) * d->ks + (d->c - 1) * d->cs + (d->h - 1) * d->hs + (d->w - 1) * d->ws + 1) *
	       tsize(d->t);
}

enum { FWD, BWD_DATA, BWD_FILTER };

/* The usable algorithms of a direction: {algo, time, needs workspace, deterministic}. */
struct AlgoInfo {
	int algo;
	float time;
	int ws;
	int det;
};
const AlgoInfo usable[3][2] = {
	{{1, 1.0f, 1, 1}, {0, 1.5f, 0, 1}},  /* forward: precomputed implicit GEMM first */
	{{0, 1.0f, 0, 0}, {1, 1.05f, 1, 1}}, /* backward data: ALGO_0 (atomics) just ahead of ALGO_1 */
	{{0, 1.0f, 0, 0}, {1, 1.05f, 1, 1}}, /* backward filter: the same */
};
const int algo_count[3] = {CUDNN_CONVOLUTION_FWD_ALGO_COUNT, CUDNN_CONVOLUTION_BWD_DATA_ALGO_COUNT,
			   CUDNN_CONVOLUTION_BWD_FILTER_ALGO_COUNT};

const AlgoInfo *algo_info(int dir, int algo)
{
	for (int i = 0; i < 2; i++)
		if (usable[dir][i].algo == algo)
			return &usable[dir][i];
	return nullptr;
}

size_t ws_need(const Geo *g, const AlgoInfo *a)
{
	if (!a->ws)
		return 0;
	size_t outs = (size_t)g->N * g->K * g->Ho * g->Wo;
	return 256 + 4 * (outs < ((size_t)1 << 20) ? outs : ((size_t)1 << 20));
}

/* Fills perf[0..*returned) for dir: the usable algorithms, then the others
 * as NOT_SUPPORTED. Perf is any of the three perf structs (same layout). */
template <class P, class E>
cudnnStatus_t list(int dir, const Geo *g, int requested, int *returned, P *perf, const char *fn)
{
	if (requested < 1 || !returned || !perf) {
		emu_note("%s: requestedAlgoCount %d < 1 or NULL output", fn, requested);
		return CUDNN_STATUS_BAD_PARAM;
	}
	int n = 0;
	for (int i = 0; i < 2 && n < requested; i++, n++) {
		memset(&perf[n], 0, sizeof perf[n]);
		perf[n].algo = (E)usable[dir][i].algo;
		perf[n].status = CUDNN_STATUS_SUCCESS;
		perf[n].time = usable[dir][i].time;
		perf[n].memory = ws_need(g, &usable[dir][i]);
		perf[n].determinism = usable[dir][i].det ? CUDNN_DETERMINISTIC : CUDNN_NON_DETERMINISTIC;
		perf[n].mathType = g->c->math;
	}
	for (int a = 0; a < algo_count[dir] && n < requested; a++) {
		if (algo_info(dir, a))
			continue;
		memset(&perf[n], 0, sizeof perf[n]);
		perf[n].algo = (E)a;
		perf[n].status = CUDNN_STATUS_NOT_SUPPORTED;
		perf[n].time = -1.f;
		perf[n].memory = 0;
		perf[n].determinism = CUDNN_NON_DETERMINISTIC;
		perf[n].mathType = g->c->math;
		n++;
	}
	*returned = n;
	return CUDNN_STATUS_SUCCESS;
}

cudnnStatus_t ws_size(int dir, const Geo *g, int algo, size_t *bytes, const char *fn)
{
	const AlgoInfo *a = algo_info(dir, algo);
	if (!bytes)
		return CUDNN_STATUS_BAD_PARAM;
	if (!a) {
		emu_note("%s: algorithm %d is not supported for this convolution", fn, algo);
		return CUDNN_STATUS_NOT_SUPPORTED;
	}
	*bytes = ws_need(g, a);
	return CUDNN_STATUS_SUCCESS;
}

int overlaps(const void *a, size_t na, const void *b, size_t nb)
{
	return (const char *)a < (const char *)b + nb && (const char *)b < (const char *)a + na;
}

/* EMU_DNN_REFUSE=DIR:ALGO[,DIR:ALGO...] (DIR fwd, data or filter): those
 * algorithms are listed as usable but their convolution calls return
 * NOT_SUPPORTED after every other check, as a real cuDNN may do with an
 * algorithm its heuristics offered. Read at each call. */
int refused_at_run(int dir, int algo)
{
	static const char *const names[3] = {"fwd", "data", "filter"};
	const char *v = getenv("EMU_DNN_REFUSE");
	char want[32];
	snprintf(want, sizeof want, "%s:%d", names[dir], algo);
	size_t n = strlen(want);
	for (const char *p = v; p && *p;) {
		const char *end = strchr(p, ',');
		size_t len = end ? (size_t)(end - p) : strlen(p);
		if (len == n && !strncmp(p, want, n))
			return 1;
		p = end ? end + 1 : NULL;
	}
	return 0;
}

/* Everything a convolution call checks before computing. */
cudnnStatus_t call_checks(cudnnHandle_t h, int dir, const Geo *g, int algo, void *ws, size_t ws_bytes,
			  const void *alpha, const void *beta, const void *x, const void *w, const void *y,
			  const char *fn)
{
	if (!handle_ok(h))
		return CUDNN_STATUS_NOT_INITIALIZED;
	const AlgoInfo *a = algo_info(dir, algo);
	if (!a) {
		emu_note("%s: algorithm %d is not supported for this convolution", fn, algo);
		return CUDNN_STATUS_NOT_SUPPORTED;
	}
	size_t need = ws_need(g, a);
	if (ws_bytes < need || (need && !ws)) {
		emu_note("%s: algorithm %d needs %zu bytes of workspace, got %zu at %p", fn, algo, need, ws_bytes, ws);
		return CUDNN_STATUS_BAD_PARAM;
	}
	if (!alpha || !beta) {
		emu_note("%s: NULL alpha or beta", fn);
		return CUDNN_STATUS_BAD_PARAM;
	}
	size_t bx = tbytes(g->x), bw = fbytes(g->w), by = tbytes(g->y);
	if (!x || !w || !y || !emu_check_device_range(x, bx, fn) || !emu_check_device_range(w, bw, fn) ||
	    !emu_check_device_range(y, by, fn))
		emu_fatal("%s: an operand is NULL or not (all) device memory (x %p %zu bytes, w %p %zu bytes, y %p %zu "
			  "bytes): the convolution would fault on a device",
			  fn, x, bx, w, bw, y, by);
	/* the output of each direction */
	const void *out = dir == FWD ? y : dir == BWD_DATA ? x : w;
	size_t nout = dir == FWD ? by : dir == BWD_DATA ? bx : bw;
	const void *in1 = dir == FWD ? x : y, *in2 = dir == BWD_FILTER ? x : w;
	size_t n1 = dir == FWD ? bx : by, n2 = dir == BWD_FILTER ? bx : bw;
	if (overlaps(out, nout, in1, n1) || overlaps(out, nout, in2, n2))
		emu_fatal("%s: the output overlaps an input (in-place convolution is undefined in cuDNN)", fn);
	if (need) {
		if (!emu_check_device_range(ws, need, fn))
			emu_fatal("%s: the workspace (%p, %zu bytes) is not device memory", fn, ws, need);
		if (overlaps(ws, need, out, nout) || overlaps(ws, need, in1, n1) || overlaps(ws, need, in2, n2))
			emu_fatal("%s: the workspace overlaps an operand", fn);
	}
	if (refused_at_run(dir, algo)) {
		emu_note("%s: algorithm %d refused at run time (EMU_DNN_REFUSE)", fn, algo);
		return CUDNN_STATUS_NOT_SUPPORTED;
	}
	return CUDNN_STATUS_SUCCESS;
}

float scal(const void *p, cudnnDataType_t t) { return t == CUDNN_DATA_DOUBLE ? (float)*(const double *)p : *(const float *)p; }


void scribble(void *ws, size_t n)
{
	if (n)
		memset(ws, 0xff, n);
}

} /* namespace */

extern "C" {

size_t cudnnGetVersion(void) { return CUDNN_VERSION; }

const char *cudnnGetErrorString(cudnnStatus_t s)
{
	switch (s) {
	case CUDNN_STATUS_SUCCESS: return "CUDNN_STATUS_SUCCESS";
	case CUDNN_STATUS_NOT_INITIALIZED: return "CUDNN_STATUS_NOT_INITIALIZED";
	case CUDNN_STATUS_BAD_PARAM: return "CUDNN_STATUS_BAD_PARAM";
	case CUDNN_STATUS_BAD_PARAM_NULL_POINTER: return "CUDNN_STATUS_BAD_PARAM_NULL_POINTER";
	case CUDNN_STATUS_NOT_SUPPORTED: return "CUDNN_STATUS_NOT_SUPPORTED";
	case CUDNN_STATUS_INTERNAL_ERROR: return "CUDNN_STATUS_INTERNAL_ERROR";
	case CUDNN_STATUS_ALLOC_FAILED: return "CUDNN_STATUS_ALLOC_FAILED";
	case CUDNN_STATUS_EXECUTION_FAILED: return "CUDNN_STATUS_EXECUTION_FAILED";
	default: return "CUDNN_STATUS_UNKNOWN";
	}
}

cudnnStatus_t cudnnCreate(cudnnHandle_t *h)
{
	if (!h)
		return CUDNN_STATUS_BAD_PARAM;
	int n = 0;
	if (cudaGetDeviceCount(&n) != cudaSuccess || n < 1) {
		cudaGetLastError();
		return CUDNN_STATUS_NOT_INITIALIZED;
	}
	*h = new emu_cudnn{MAGIC, 0};
	return CUDNN_STATUS_SUCCESS;
}

cudnnStatus_t cudnnDestroy(cudnnHandle_t h)
{
	if (!handle_ok(h))
		return CUDNN_STATUS_BAD_PARAM;
	h->magic = 0;
	delete h;
	return CUDNN_STATUS_SUCCESS;
}

cudnnStatus_t cudnnSetStream(cudnnHandle_t h, cudaStream_t s)
{
	if (!handle_ok(h))
		return CUDNN_STATUS_BAD_PARAM;
	if (!emu_stream_ok(s)) {
		emu_note("cudnnSetStream: invalid stream %p", (void *)s);
		return CUDNN_STATUS_BAD_PARAM;
	}
	h->stream = s;
	return CUDNN_STATUS_SUCCESS;
}

cudnnStatus_t cudnnGetStream(cudnnHandle_t h, cudaStream_t *s)
{
	if (!handle_ok(h) || !s)
		return CUDNN_STATUS_BAD_PARAM;
	*s = h->stream;
	return CUDNN_STATUS_SUCCESS;
}

cudnnStatus_t cudnnCreateTensorDescriptor(cudnnTensorDescriptor_t *d)
{
	if (!d)
		return CUDNN_STATUS_BAD_PARAM;
	*d = new emu_tensor_desc();
	(*d)->magic = MAGIC;
	return CUDNN_STATUS_SUCCESS;
}

cudnnStatus_t cudnnDestroyTensorDescriptor(cudnnTensorDescriptor_t d)
{
	if (!d)
		return CUDNN_STATUS_SUCCESS;
	if (d->magic != MAGIC)
		emu_fatal("cudnnDestroyTensorDescriptor: not a live descriptor (double destroy?)");
	d->magic = 0;
	delete d;
	return CUDNN_STATUS_SUCCESS;
}

cudnnStatus_t cudnnSetTensor4dDescriptorEx(cudnnTensorDescriptor_t d, cudnnDataType_t t, int n, int c, int h, int w,
					   int ns, int cs, int hs, int ws)
{
	if (!d || d->magic != MAGIC)
		return CUDNN_STATUS_BAD_PARAM;
	if (n < 1 || c < 1 || h < 1 || w < 1 || ns < 1 || cs < 1 || hs < 1 || ws < 1) {
		emu_note("cudnnSetTensor4dDescriptor: dims %d x %d x %d x %d and strides must be >= 1", n, c, h, w);
		return CUDNN_STATUS_BAD_PARAM;
	}
	if (!type_ok(t)) {
		emu_note("cudnnSetTensor4dDescriptor: data type %d not emulated", (int)t);
		return CUDNN_STATUS_NOT_SUPPORTED;
	}
	d->t = t, d->n = n, d->c = c, d->h = h, d->w = w, d->ns = ns, d->cs = cs, d->hs = hs, d->ws = ws;
	d->set = 1;
	return CUDNN_STATUS_SUCCESS;
}

cudnnStatus_t cudnnSetTensor4dDescriptor(cudnnTensorDescriptor_t d, cudnnTensorFormat_t f, cudnnDataType_t t, int n,
					 int c, int h, int w)
{
	if (f == CUDNN_TENSOR_NCHW)
		return cudnnSetTensor4dDescriptorEx(d, t, n, c, h, w, c * h * w, h * w, w, 1);
	if (f == CUDNN_TENSOR_NHWC)
		return cudnnSetTensor4dDescriptorEx(d, t, n, c, h, w, h * w * c, 1, w * c, c);
	emu_note("cudnnSetTensor4dDescriptor: format %d not emulated", (int)f);
	return CUDNN_STATUS_NOT_SUPPORTED;
}

cudnnStatus_t cudnnGetTensor4dDescriptor(const cudnnTensorDescriptor_t d, cudnnDataType_t *t, int *n, int *c, int *h,
					 int *w, int *ns, int *cs, int *hs, int *ws)
{
	if (!d || d->magic != MAGIC || !d->set)
		return CUDNN_STATUS_BAD_PARAM;
	*t = d->t, *n = d->n, *c = d->c, *h = d->h, *w = d->w;
	*ns = (int)d->ns, *cs = (int)d->cs, *hs = (int)d->hs, *ws = (int)d->ws;
	return CUDNN_STATUS_SUCCESS;
}

cudnnStatus_t cudnnCreateFilterDescriptor(cudnnFilterDescriptor_t *d)
{
	if (!d)
		return CUDNN_STATUS_BAD_PARAM;
	*d = new emu_filter_desc();
	(*d)->magic = MAGIC;
	return CUDNN_STATUS_SUCCESS;
}

cudnnStatus_t cudnnDestroyFilterDescriptor(cudnnFilterDescriptor_t d)
{
	if (!d)
		return CUDNN_STATUS_SUCCESS;
	if (d->magic != MAGIC)
		emu_fatal("cudnnDestroyFilterDescriptor: not a live descriptor (double destroy?)");
	d->magic = 0;
	delete d;
	return CUDNN_STATUS_SUCCESS;
}

cudnnStatus_t cudnnSetFilter4dDescriptor(cudnnFilterDescriptor_t d, cudnnDataType_t t, cudnnTensorFormat_t f, int k,
					 int c, int h, int w)
{
	if (!d || d->magic != MAGIC)
		return CUDNN_STATUS_BAD_PARAM;
	if (k < 1 || c < 1 || h < 1 || w < 1) {
		emu_note("cudnnSetFilter4dDescriptor: dims %d x %d x %d x %d must be >= 1", k, c, h, w);
		return CUDNN_STATUS_BAD_PARAM;
	}
	if (!type_ok(t) || (f != CUDNN_TENSOR_NCHW && f != CUDNN_TENSOR_NHWC)) {
		emu_note("cudnnSetFilter4dDescriptor: type %d / format %d not emulated", (int)t, (int)f);
		return CUDNN_STATUS_NOT_SUPPORTED;
	}
	d->t = t, d->f = f, d->k = k, d->c = c, d->h = h, d->w = w;
	if (f == CUDNN_TENSOR_NCHW) /* KCRS */
		d->ks = (long long)c * h * w, d->cs = (long long)h * w, d->hs = w, d->ws = 1;
	else /* KRSC */
		d->ks = (long long)h * w * c, d->cs = 1, d->hs = (long long)w * c, d->ws = c;
	d->set = 1;
	return CUDNN_STATUS_SUCCESS;
}

cudnnStatus_t cudnnCreateConvolutionDescriptor(cudnnConvolutionDescriptor_t *d)
{
	if (!d)
		return CUDNN_STATUS_BAD_PARAM;
	*d = new emu_conv_desc();
	(*d)->magic = MAGIC;
	(*d)->groups = 1;
	(*d)->math = CUDNN_DEFAULT_MATH;
	return CUDNN_STATUS_SUCCESS;
}

cudnnStatus_t cudnnDestroyConvolutionDescriptor(cudnnConvolutionDescriptor_t d)
{
	if (!d)
		return CUDNN_STATUS_SUCCESS;
	if (d->magic != MAGIC)
		emu_fatal("cudnnDestroyConvolutionDescriptor: not a live descriptor (double destroy?)");
	d->magic = 0;
	delete d;
	return CUDNN_STATUS_SUCCESS;
}

cudnnStatus_t cudnnSetConvolution2dDescriptor(cudnnConvolutionDescriptor_t d, int pad_h, int pad_w, int u, int v,
					      int dilation_h, int dilation_w, cudnnConvolutionMode_t mode,
					      cudnnDataType_t compute)
{
	if (!d || d->magic != MAGIC)
		return CUDNN_STATUS_BAD_PARAM;
	if (pad_h < 0 || pad_w < 0 || u < 1 || v < 1 || dilation_h < 1 || dilation_w < 1 ||
	    (mode != CUDNN_CONVOLUTION && mode != CUDNN_CROSS_CORRELATION) || !type_ok(compute)) {
		emu_note("cudnnSetConvolution2dDescriptor: pad %d,%d stride %d,%d dilation %d,%d mode %d compute %d: "
			 "bad parameter",
			 pad_h, pad_w, u, v, dilation_h, dilation_w, (int)mode, (int)compute);
		return CUDNN_STATUS_BAD_PARAM;
	}
	d->ph = pad_h, d->pw = pad_w, d->sh = u, d->sw = v, d->dh = dilation_h, d->dw = dilation_w;
	d->mode = mode;
	d->compute = compute;
	d->set = 1;
	return CUDNN_STATUS_SUCCESS;
}

cudnnStatus_t cudnnSetConvolutionGroupCount(cudnnConvolutionDescriptor_t d, int groups)
{
	if (!d || d->magic != MAGIC || groups < 1)
		return CUDNN_STATUS_BAD_PARAM;
	d->groups = groups;
	return CUDNN_STATUS_SUCCESS;
}

cudnnStatus_t cudnnGetConvolutionGroupCount(cudnnConvolutionDescriptor_t d, int *groups)
{
	if (!d || d->magic != MAGIC || !groups)
		return CUDNN_STATUS_BAD_PARAM;
	*groups = d->groups;
	return CUDNN_STATUS_SUCCESS;
}

cudnnStatus_t cudnnSetConvolutionMathType(cudnnConvolutionDescriptor_t d, cudnnMathType_t m)
{
	if (!d || d->magic != MAGIC || (unsigned)m > 3)
		return CUDNN_STATUS_BAD_PARAM;
	d->math = m;
	return CUDNN_STATUS_SUCCESS;
}

cudnnStatus_t cudnnGetConvolutionMathType(cudnnConvolutionDescriptor_t d, cudnnMathType_t *m)
{
	if (!d || d->magic != MAGIC || !m)
		return CUDNN_STATUS_BAD_PARAM;
	*m = d->math;
	return CUDNN_STATUS_SUCCESS;
}

cudnnStatus_t cudnnGetConvolution2dForwardOutputDim(const cudnnConvolutionDescriptor_t c,
						    const cudnnTensorDescriptor_t x, const cudnnFilterDescriptor_t w,
						    int *n, int *k, int *h, int *wo)
{
	if (!n || !k || !h || !wo)
		return CUDNN_STATUS_BAD_PARAM;
	return out_dims(c, x, w, n, k, h, wo, "cudnnGetConvolution2dForwardOutputDim");
}

cudnnStatus_t cudnnGetConvolutionForwardAlgorithmMaxCount(cudnnHandle_t h, int *count)
{
	if (!handle_ok(h) || !count)
		return CUDNN_STATUS_BAD_PARAM;
	*count = CUDNN_CONVOLUTION_FWD_ALGO_COUNT;
	return CUDNN_STATUS_SUCCESS;
}
cudnnStatus_t cudnnGetConvolutionBackwardDataAlgorithmMaxCount(cudnnHandle_t h, int *count)
{
	if (!handle_ok(h) || !count)
		return CUDNN_STATUS_BAD_PARAM;
	*count = CUDNN_CONVOLUTION_BWD_DATA_ALGO_COUNT;
	return CUDNN_STATUS_SUCCESS;
}
cudnnStatus_t cudnnGetConvolutionBackwardFilterAlgorithmMaxCount(cudnnHandle_t h, int *count)
{
	if (!handle_ok(h) || !count)
		return CUDNN_STATUS_BAD_PARAM;
	*count = CUDNN_CONVOLUTION_BWD_FILTER_ALGO_COUNT;
	return CUDNN_STATUS_SUCCESS;
}

#define GEO_OR_RETURN(g, x, w, c, y, fn) \
	Geo g; \
	if (!handle_ok(h)) \
		return CUDNN_STATUS_BAD_PARAM; \
	{ \
		cudnnStatus_t s_ = geometry(&g, x, w, c, y, fn); \
		if (s_ != CUDNN_STATUS_SUCCESS) \
			return s_; \
	}

cudnnStatus_t cudnnFindConvolutionForwardAlgorithm(cudnnHandle_t h, const cudnnTensorDescriptor_t x,
						   const cudnnFilterDescriptor_t w,
						   const cudnnConvolutionDescriptor_t c,
						   const cudnnTensorDescriptor_t y, int requested, int *returned,
						   cudnnConvolutionFwdAlgoPerf_t *perf)
{
	GEO_OR_RETURN(g, x, w, c, y, "cudnnFindConvolutionForwardAlgorithm");
	return list<cudnnConvolutionFwdAlgoPerf_t, cudnnConvolutionFwdAlgo_t>(FWD, &g, requested, returned, perf,
									       "cudnnFindConvolutionForwardAlgorithm");
}
cudnnStatus_t cudnnGetConvolutionForwardAlgorithm_v7(cudnnHandle_t h, const cudnnTensorDescriptor_t x,
						     const cudnnFilterDescriptor_t w,
						     const cudnnConvolutionDescriptor_t c,
						     const cudnnTensorDescriptor_t y, int requested, int *returned,
						     cudnnConvolutionFwdAlgoPerf_t *perf)
{
	GEO_OR_RETURN(g, x, w, c, y, "cudnnGetConvolutionForwardAlgorithm_v7");
	return list<cudnnConvolutionFwdAlgoPerf_t, cudnnConvolutionFwdAlgo_t>(FWD, &g, requested, returned, perf,
									       "cudnnGetConvolutionForwardAlgorithm_v7");
}
cudnnStatus_t cudnnFindConvolutionBackwardDataAlgorithm(cudnnHandle_t h, const cudnnFilterDescriptor_t w,
							const cudnnTensorDescriptor_t dy,
							const cudnnConvolutionDescriptor_t c,
							const cudnnTensorDescriptor_t dx, int requested, int *returned,
							cudnnConvolutionBwdDataAlgoPerf_t *perf)
{
	GEO_OR_RETURN(g, dx, w, c, dy, "cudnnFindConvolutionBackwardDataAlgorithm");
	return list<cudnnConvolutionBwdDataAlgoPerf_t, cudnnConvolutionBwdDataAlgo_t>(
		BWD_DATA, &g, requested, returned, perf, "cudnnFindConvolutionBackwardDataAlgorithm");
}
cudnnStatus_t cudnnGetConvolutionBackwardDataAlgorithm_v7(cudnnHandle_t h, const cudnnFilterDescriptor_t w,
							  const cudnnTensorDescriptor_t dy,
							  const cudnnConvolutionDescriptor_t c,
							  const cudnnTensorDescriptor_t dx, int requested,
							  int *returned, cudnnConvolutionBwdDataAlgoPerf_t *perf)
{
	GEO_OR_RETURN(g, dx, w, c, dy, "cudnnGetConvolutionBackwardDataAlgorithm_v7");
	return list<cudnnConvolutionBwdDataAlgoPerf_t, cudnnConvolutionBwdDataAlgo_t>(
		BWD_DATA, &g, requested, returned, perf, "cudnnGetConvolutionBackwardDataAlgorithm_v7");
}
cudnnStatus_t cudnnFindConvolutionBackwardFilterAlgorithm(cudnnHandle_t h, const cudnnTensorDescriptor_t x,
							  const cudnnTensorDescriptor_t dy,
							  const cudnnConvolutionDescriptor_t c,
							  const cudnnFilterDescriptor_t dw, int requested,
							  int *returned, cudnnConvolutionBwdFilterAlgoPerf_t *perf)
{
	GEO_OR_RETURN(g, x, dw, c, dy, "cudnnFindConvolutionBackwardFilterAlgorithm");
	return list<cudnnConvolutionBwdFilterAlgoPerf_t, cudnnConvolutionBwdFilterAlgo_t>(
		BWD_FILTER, &g, requested, returned, perf, "cudnnFindConvolutionBackwardFilterAlgorithm");
}
cudnnStatus_t cudnnGetConvolutionBackwardFilterAlgorithm_v7(cudnnHandle_t h, const cudnnTensorDescriptor_t x,
							    const cudnnTensorDescriptor_t dy,
							    const cudnnConvolutionDescriptor_t c,
							    const cudnnFilterDescriptor_t dw, int requested,
							    int *returned, cudnnConvolutionBwdFilterAlgoPerf_t *perf)
{
	GEO_OR_RETURN(g, x, dw, c, dy, "cudnnGetConvolutionBackwardFilterAlgorithm_v7");
	return list<cudnnConvolutionBwdFilterAlgoPerf_t, cudnnConvolutionBwdFilterAlgo_t>(
		BWD_FILTER, &g, requested, returned, perf, "cudnnGetConvolutionBackwardFilterAlgorithm_v7");
}

cudnnStatus_t cudnnGetConvolutionForwardWorkspaceSize(cudnnHandle_t h, const cudnnTensorDescriptor_t x,
						      const cudnnFilterDescriptor_t w,
						      const cudnnConvolutionDescriptor_t c,
						      const cudnnTensorDescriptor_t y, cudnnConvolutionFwdAlgo_t algo,
						      size_t *bytes)
{
	GEO_OR_RETURN(g, x, w, c, y, "cudnnGetConvolutionForwardWorkspaceSize");
	return ws_size(FWD, &g, algo, bytes, "cudnnGetConvolutionForwardWorkspaceSize");
}
cudnnStatus_t cudnnGetConvolutionBackwardDataWorkspaceSize(cudnnHandle_t h, const cudnnFilterDescriptor_t w,
							   const cudnnTensorDescriptor_t dy,
							   const cudnnConvolutionDescriptor_t c,
							   const cudnnTensorDescriptor_t dx,
							   cudnnConvolutionBwdDataAlgo_t algo, size_t *bytes)
{
	GEO_OR_RETURN(g, dx, w, c, dy, "cudnnGetConvolutionBackwardDataWorkspaceSize");
	return ws_size(BWD_DATA, &g, algo, bytes, "cudnnGetConvolutionBackwardDataWorkspaceSize");
}
cudnnStatus_t cudnnGetConvolutionBackwardFilterWorkspaceSize(cudnnHandle_t h, const cudnnTensorDescriptor_t x,
							     const cudnnTensorDescriptor_t dy,
							     const cudnnConvolutionDescriptor_t c,
							     const cudnnFilterDescriptor_t dw,
							     cudnnConvolutionBwdFilterAlgo_t algo, size_t *bytes)
{
	GEO_OR_RETURN(g, x, dw, c, dy, "cudnnGetConvolutionBackwardFilterWorkspaceSize");
	return ws_size(BWD_FILTER, &g, algo, bytes, "cudnnGetConvolutionBackwardFilterWorkspaceSize");
}

cudnnStatus_t cudnnConvolutionForward(cudnnHandle_t h, const void *alpha, const cudnnTensorDescriptor_t xd,
				      const void *x, const cudnnFilterDescriptor_t wd, const void *w,
				      const cudnnConvolutionDescriptor_t cd, cudnnConvolutionFwdAlgo_t algo, void *ws,
				      size_t ws_bytes, const void *beta, const cudnnTensorDescriptor_t yd, void *y)
{
	emu_count(EMU_N_LIB);
	const char *fn = "cudnnConvolutionForward";
	GEO_OR_RETURN(g, xd, wd, cd, yd, fn);
	emu_stream_flush(h->stream);
	emu_device_open(y);
	cudnnStatus_t s = call_checks(h, FWD, &g, algo, ws, ws_bytes, alpha, beta, x, w, y, fn);
	if (s != CUDNN_STATUS_SUCCESS) {
		emu_device_close_all();
		return s;
	}
	size_t need = 0;
	ws_size(FWD, &g, algo, &need, fn);
	scribble(ws, need);
	float al = scal(alpha, g.t), be = scal(beta, g.t);
	int flip = cd->mode == CUDNN_CONVOLUTION;
	for (int n = 0; n < g.N; n++)
		for (int k = 0; k < g.K; k++)
			for (int oy = 0; oy < g.Ho; oy++)
				for (int ox = 0; ox < g.Wo; ox++) {
					int grp = k / g.Kg;
					float sum = 0.f;
					for (int c = 0; c < g.Cg; c++)
						for (int r = 0; r < g.R; r++) {
							int iy = oy * cd->sh - cd->ph + r * cd->dh;
							if (iy < 0 || iy >= g.H)
								continue;
							for (int q = 0; q < g.S; q++) {
								int ix = ox * cd->sw - cd->pw + q * cd->dw;
								if (ix < 0 || ix >= g.W)
									continue;
								float a = ld(x, tidx(xd, n, grp * g.Cg + c, iy, ix), g.t);
								float b = ld(w, fidx(wd, k, c, flip ? g.R - 1 - r : r,
										     flip ? g.S - 1 - q : q), g.t);
								sum += rnd(a, g.round) * rnd(b, g.round);
							}
						}
					long long o = tidx(yd, n, k, oy, ox);
					float v = al * sum;
					if (be != 0.f)
						v += be * ld(y, o, g.t);
					st(y, o, g.t, v);
				}
	emu_device_close_all();
	return CUDNN_STATUS_SUCCESS;
}

cudnnStatus_t cudnnConvolutionBackwardData(cudnnHandle_t h, const void *alpha, const cudnnFilterDescriptor_t wd,
					   const void *w, const cudnnTensorDescriptor_t dyd, const void *dy,
					   const cudnnConvolutionDescriptor_t cd, cudnnConvolutionBwdDataAlgo_t algo,
					   void *ws, size_t ws_bytes, const void *beta,
					   const cudnnTensorDescriptor_t dxd, void *dx)
{
	emu_count(EMU_N_LIB);
	const char *fn = "cudnnConvolutionBackwardData";
	GEO_OR_RETURN(g, dxd, wd, cd, dyd, fn);
	emu_stream_flush(h->stream);
	emu_device_open(dx);
	cudnnStatus_t s = call_checks(h, BWD_DATA, &g, algo, ws, ws_bytes, alpha, beta, dx, w, dy, fn);
	if (s != CUDNN_STATUS_SUCCESS) {
		emu_device_close_all();
		return s;
	}
	size_t need = 0;
	ws_size(BWD_DATA, &g, algo, &need, fn);
	scribble(ws, need);
	float al = scal(alpha, g.t), be = scal(beta, g.t);
	int flip = cd->mode == CUDNN_CONVOLUTION;
	for (int n = 0; n < g.N; n++)
		for (int ci = 0; ci < g.C; ci++)
			for (int iy = 0; iy < g.H; iy++)
				for (int ix = 0; ix < g.W; ix++) {
					int grp = ci / g.Cg, c = ci % g.Cg;
					float sum = 0.f;
					for (int k = grp * g.Kg; k < (grp + 1) * g.Kg; k++)
						for (int r = 0; r < g.R; r++) {
							int ty = iy + cd->ph - r * cd->dh;
							if (ty < 0 || ty % cd->sh || ty / cd->sh >= g.Ho)
								continue;
							int oy = ty / cd->sh;
							for (int q = 0; q < g.S; q++) {
								int tx = ix + cd->pw - q * cd->dw;
								if (tx < 0 || tx % cd->sw || tx / cd->sw >= g.Wo)
									continue;
								int ox = tx / cd->sw;
								float a = ld(dy, tidx(dyd, n, k, oy, ox), g.t);
								float b = ld(w, fidx(wd, k, c, flip ? g.R - 1 - r : r,
										     flip ? g.S - 1 - q : q), g.t);
								sum += rnd(a, g.round) * rnd(b, g.round);
							}
						}
					long long o = tidx(dxd, n, ci, iy, ix);
					float v = al * sum;
					if (be != 0.f)
						v += be * ld(dx, o, g.t);
					st(dx, o, g.t, v);
				}
	emu_device_close_all();
	return CUDNN_STATUS_SUCCESS;
}

cudnnStatus_t cudnnConvolutionBackwardFilter(cudnnHandle_t h, const void *alpha, const cudnnTensorDescriptor_t xd,
					     const void *x, const cudnnTensorDescriptor_t dyd, const void *dy,
					     const cudnnConvolutionDescriptor_t cd,
					     cudnnConvolutionBwdFilterAlgo_t algo, void *ws, size_t ws_bytes,
					     const void *beta, const cudnnFilterDescriptor_t dwd, void *dw)
{
	emu_count(EMU_N_LIB);
	const char *fn = "cudnnConvolutionBackwardFilter";
	GEO_OR_RETURN(g, xd, dwd, cd, dyd, fn);
	emu_stream_flush(h->stream);
	emu_device_open(dw);
	cudnnStatus_t s = call_checks(h, BWD_FILTER, &g, algo, ws, ws_bytes, alpha, beta, x, dw, dy, fn);
	if (s != CUDNN_STATUS_SUCCESS) {
		emu_device_close_all();
		return s;
	}
	size_t need = 0;
	ws_size(BWD_FILTER, &g, algo, &need, fn);
	scribble(ws, need);
	float al = scal(alpha, g.t), be = scal(beta, g.t);
	int flip = cd->mode == CUDNN_CONVOLUTION;
	for (int k = 0; k < g.K; k++)
		for (int c = 0; c < g.Cg; c++)
			for (int r = 0; r < g.R; r++)
				for (int q = 0; q < g.S; q++) {
					int grp = k / g.Kg;
					float sum = 0.f;
					for (int n = 0; n < g.N; n++)
						for (int oy = 0; oy < g.Ho; oy++) {
							int iy = oy * cd->sh - cd->ph + r * cd->dh;
							if (iy < 0 || iy >= g.H)
								continue;
							for (int ox = 0; ox < g.Wo; ox++) {
								int ix = ox * cd->sw - cd->pw + q * cd->dw;
								if (ix < 0 || ix >= g.W)
									continue;
								float a = ld(dy, tidx(dyd, n, k, oy, ox), g.t);
								float b = ld(x, tidx(xd, n, grp * g.Cg + c, iy, ix), g.t);
								sum += rnd(a, g.round) * rnd(b, g.round);
							}
						}
					long long o = fidx(dwd, k, c, flip ? g.R - 1 - r : r, flip ? g.S - 1 - q : q);
					float v = al * sum;
					if (be != 0.f)
						v += be * ld(dw, o, g.t);
					st(dw, o, g.t, v);
				}
	emu_device_close_all();
	return CUDNN_STATUS_SUCCESS;
}

cudnnStatus_t cudnnConvolutionBackwardBias(cudnnHandle_t h, const void *alpha, const cudnnTensorDescriptor_t dyd,
					   const void *dy, const void *beta, const cudnnTensorDescriptor_t dbd,
					   void *db)
{
	emu_count(EMU_N_LIB);
	const char *fn = "cudnnConvolutionBackwardBias";
	if (!handle_ok(h) || !alpha || !beta || !dyd || !dbd || dyd->magic != MAGIC || dbd->magic != MAGIC ||
	    !dyd->set || !dbd->set)
		return CUDNN_STATUS_BAD_PARAM;
	if (dbd->n != 1 || dbd->c != dyd->c || dbd->h != 1 || dbd->w != 1 || dbd->t != dyd->t) {
		emu_note("%s: the bias descriptor must be 1 x %d x 1 x 1 of the same type", fn, dyd->c);
		return CUDNN_STATUS_BAD_PARAM;
	}
	emu_stream_flush(h->stream);
	emu_device_open(db);
	if (!emu_check_device_range(dy, tbytes(dyd), fn) || !emu_check_device_range(db, tbytes(dbd), fn))
		emu_fatal("%s: an operand is not (all) device memory", fn);
	float al = scal(alpha, dyd->t), be = scal(beta, dyd->t);
	for (int c = 0; c < dyd->c; c++) {
		float sum = 0.f;
		for (int n = 0; n < dyd->n; n++)
			for (int y = 0; y < dyd->h; y++)
				for (int x = 0; x < dyd->w; x++)
					sum += ld(dy, tidx(dyd, n, c, y, x), dyd->t);
		long long o = tidx(dbd, 0, c, 0, 0);
		float v = al * sum;
		if (be != 0.f)
			v += be * ld(db, o, dbd->t);
		st(db, o, dbd->t, v);
	}
	emu_device_close_all();
	return CUDNN_STATUS_SUCCESS;
}

cudnnStatus_t cudnnAddTensor(cudnnHandle_t h, const void *alpha, const cudnnTensorDescriptor_t ad, const void *a,
			     const void *beta, const cudnnTensorDescriptor_t cd, void *c)
{
	const char *fn = "cudnnAddTensor";
	if (!handle_ok(h) || !alpha || !beta || !ad || !cd || ad->magic != MAGIC || cd->magic != MAGIC || !ad->set ||
	    !cd->set)
		return CUDNN_STATUS_BAD_PARAM;
	if ((ad->n != cd->n && ad->n != 1) || (ad->c != cd->c && ad->c != 1) || (ad->h != cd->h && ad->h != 1) ||
	    (ad->w != cd->w && ad->w != 1) || ad->t != cd->t) {
		emu_note("%s: A %dx%dx%dx%d does not broadcast to C %dx%dx%dx%d (or types differ)", fn, ad->n, ad->c, ad->h,
			 ad->w, cd->n, cd->c, cd->h, cd->w);
		return CUDNN_STATUS_BAD_PARAM;
	}
	emu_stream_flush(h->stream);
	emu_device_open(c);
	if (!emu_check_device_range(a, tbytes(ad), fn) || !emu_check_device_range(c, tbytes(cd), fn))
		emu_fatal("%s: an operand is not (all) device memory", fn);
	float al = scal(alpha, cd->t), be = scal(beta, cd->t);
	for (int n = 0; n < cd->n; n++)
		for (int ch = 0; ch < cd->c; ch++)
			for (int y = 0; y < cd->h; y++)
				for (int x = 0; x < cd->w; x++) {
					float v = al * ld(a, tidx(ad, ad->n == 1 ? 0 : n, ad->c == 1 ? 0 : ch,
								  ad->h == 1 ? 0 : y, ad->w == 1 ? 0 : x), ad->t);
					long long o = tidx(cd, n, ch, y, x);
					if (be != 0.f)
						v += be * ld(c, o, cd->t);
					st(c, o, cd->t, v);
				}
	emu_device_close_all();
	return CUDNN_STATUS_SUCCESS;
}

} /* extern "C" */
