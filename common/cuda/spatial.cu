/* spatial.cu — the CUDA layers that move or pool whole neighbourhoods, NHWC:
 * global average pooling, max and average pooling, spatial and channel zero
 * padding (contracts in gpu_layers.h; the oracle is layers_spatial.c).
 *
 * Every kernel is a grid-stride loop with one thread per element it WRITES:
 * forward over the outputs, backward over the input gradient, which gathers
 * from every output that depends on it (no atomics, a deterministic result).
 * Channels are innermost, so consecutive threads touch consecutive channels
 * of one position and every load and store is coalesced. Arithmetic is
 * float32 whatever the storage type (ld/st of gpu_impl.h). */
#include "gpu_impl.h" /* defines: mfr_gpu, MFR_FOR, mfr_grid, ld, st, acc */

#include <assert.h>

/* ---- shared device helpers ---- */

/* The real rows (or columns) [*i0, *i1) of output row o's window, padding
 * clipped off, as window_rows of layers_spatial.c: start o*stride - pad,
 * k long; never empty since mfr_pool_shape_init requires pad < k. */
__device__ static inline void win_rows(int o, int k, int stride, int pad, int size, int *i0, int *i1)
{
	int a = o * stride - pad, z = a + k;
	*i0 = a < 0 ? 0 : a;
	*i1 = z > size ? size : z;
}

/* The outputs [*o0, *o1) along one axis whose windows contain input
 * position i: o*stride - pad <= i < o*stride - pad + k, clipped to
 * [0, nout). May be empty (*o0 >= *o1) when stride > k leaves i uncovered. */
__device__ static inline void out_range(int i, int k, int stride, int pad, int nout, int *o0, int *o1)
{
	int lo = i + pad - k + 1, hi = i + pad; /* o*stride in [lo, hi] */
	int a = lo <= 0 ? 0 : (lo + stride - 1) / stride;
	int b = hi / stride + 1; /* hi >= 0: i >= 0, pad >= 0 */
	*o0 = a;
	*o1 = b < nout ? b : nout;
}

/* Flat position y*W + x, within image n, of the argmax of window (oy, ox)
 * in channel ch of in (N,H,W,C) type t: the first maximum in scan order
 * (rows top to bottom, each left to right), or the first NaN — the same
 * loop as max_at of layers_spatial.c. */
__device__ static inline size_t max_at(const void *in, size_t img, int ch, int oy, int ox, mfr_pool_shape s, int t)
{
	int y0, y1, x0, x1;
	win_rows(oy, s.kh, s.sh, s.ph, s.h, &y0, &y1);
	win_rows(ox, s.kw, s.sw, s.pw, s.w, &x0, &x1);
	size_t best = (size_t)y0 * s.w + x0;
	float m = ld(in, (img + best) * s.c + ch, t);
	for (int y = y0; y < y1; y++)
		for (int x = x0; x < x1; x++) {
			if (m != m) /* a NaN already holds: it stays */
				return best;
			size_t p = (size_t)y * s.w + x;
			float v = ld(in, (img + p) * s.c + ch, t);
			if (v > m || v != v) {
				best = p;
				m = v;
			}
		}
	return best;
}

/* ---- global average pooling ---- */

/* One thread per (n, c): the sum over HW in float32, divided by HW. */
__global__ static void gap_fwd_k(void *out, const void *in, int N, int C, int HW, int t)
{
	MFR_FOR(i, (size_t)N * C) {
		size_t n = i / (size_t)C, c = i % (size_t)C;
		float a = 0.f;
		for (int p = 0; p < HW; p++)
			a += ld(in, (n * HW + p) * C + c, t);
		st(out, i, t, a / (float)HW);
	}
}

/* One thread per element of din (N,HW,C): += dout[n, c] / HW. */
__global__ static void gap_bwd_k(void *din, const void *dout, int N, int C, int HW, int t)
{
	MFR_FOR(i, (size_t)N * HW * C) {
		size_t c = i % (size_t)C, n = i / ((size_t)HW * C);
		acc(din, i, t, ld(dout, n * C + c, t) / (float)HW);
	}
}

/* ---- max and average pooling ---- */

/* Decomposes output index i of (N,Ho,Wo,C) into n, oy, ox, ch. */
__device__ static inline void out_pos(size_t i, mfr_pool_shape s, size_t *n, int *oy, int *ox, int *ch)
{
	*ch = (int)(i % (size_t)s.c);
	size_t r = i / (size_t)s.c;
	*ox = (int)(r % (size_t)s.wo);
	r /= (size_t)s.wo;
	*oy = (int)(r % (size_t)s.ho);
	*n = r / (size_t)s.ho;
}

/* Decomposes input index i of (N,H,W,C) into n, y, x, ch. */
__device__ static inline void in_pos(size_t i, mfr_pool_shape s, size_t *n, int *y, int *x, int *ch)
{
	*ch = (int)(i % (size_t)s.c);
	size_t r = i / (size_t)s.c;
	*x = (int)(r % (size_t)s.w);
	r /= (size_t)s.w;
	*y = (int)(r % (size_t)s.h);
	*n = r / (size_t)s.h;
}

/* One thread per output: copies the argmax (the element itself, so the
 * value is exact in every type and a NaN stays a NaN). */
__global__ static void maxpool_fwd_k(void *out, const void *in, mfr_pool_shape s, int t)
{
	MFR_FOR(i, (size_t)s.n * s.ho * s.wo * s.c) {
		size_t n;
		int oy, ox, ch;
		out_pos(i, s, &n, &oy, &ox, &ch);
		size_t img = n * s.h * s.w; /* first position of image n */
		size_t p = max_at(in, img, ch, oy, ox, s, t);
		st(out, i, t, ld(in, (img + p) * s.c + ch, t));
	}
}

/* One thread per input element: sums dout over every window that contains
 * it and whose argmax (recomputed) it is, then adds once. */
__global__ static void maxpool_bwd_k(void *din, const void *dout, const void *in, mfr_pool_shape s, int t)
{
	MFR_FOR(i, (size_t)s.n * s.h * s.w * s.c) {
		size_t n;
		int y, x, ch, oy0, oy1, ox0, ox1;
		in_pos(i, s, &n, &y, &x, &ch);
		out_range(y, s.kh, s.sh, s.ph, s.ho, &oy0, &oy1);
		out_range(x, s.kw, s.sw, s.pw, s.wo, &ox0, &ox1);
		size_t img = n * s.h * s.w, oimg = n * s.ho * s.wo;
		size_t self = (size_t)y * s.w + x;
		float a = 0.f;
		for (int oy = oy0; oy < oy1; oy++)
			for (int ox = ox0; ox < ox1; ox++)
				if (max_at(in, img, ch, oy, ox, s, t) == self)
					a += ld(dout, (oimg + (size_t)oy * s.wo + ox) * s.c + ch, t);
		if (oy0 < oy1 && ox0 < ox1)
			acc(din, i, t, a);
	}
}

/* One thread per output: the float32 mean of the window's real elements. */
__global__ static void avgpool_fwd_k(void *out, const void *in, mfr_pool_shape s, int t)
{
	MFR_FOR(i, (size_t)s.n * s.ho * s.wo * s.c) {
		size_t n;
		int oy, ox, ch, y0, y1, x0, x1;
		out_pos(i, s, &n, &oy, &ox, &ch);
		win_rows(oy, s.kh, s.sh, s.ph, s.h, &y0, &y1);
		win_rows(ox, s.kw, s.sw, s.pw, s.w, &x0, &x1);
		size_t img = n * s.h * s.w;
		float a = 0.f;
		for (int y = y0; y < y1; y++)
			for (int x = x0; x < x1; x++)
				a += ld(in, (img + (size_t)y * s.w + x) * s.c + ch, t);
		st(out, i, t, a / (float)((y1 - y0) * (x1 - x0)));
	}
}

/* One thread per input element: gathers dout / (real elements of the
 * window) from every window that contains it. */
__global__ static void avgpool_bwd_k(void *din, const void *dout, mfr_pool_shape s, int t)
{
	MFR_FOR(i, (size_t)s.n * s.h * s.w * s.c) {
		size_t n;
		int y, x, ch, oy0, oy1, ox0, ox1;
		in_pos(i, s, &n, &y, &x, &ch);
		out_range(y, s.kh, s.sh, s.ph, s.ho, &oy0, &oy1);
		out_range(x, s.kw, s.sw, s.pw, s.wo, &ox0, &ox1);
		size_t oimg = n * s.ho * s.wo;
		float a = 0.f;
		for (int oy = oy0; oy < oy1; oy++) {
			int y0, y1;
			win_rows(oy, s.kh, s.sh, s.ph, s.h, &y0, &y1);
			for (int ox = ox0; ox < ox1; ox++) {
				int x0, x1;
				win_rows(ox, s.kw, s.sw, s.pw, s.w, &x0, &x1);
				float d = ld(dout, (oimg + (size_t)oy * s.wo + ox) * s.c + ch, t);
				a += d / (float)((y1 - y0) * (x1 - x0));
			}
		}
		if (oy0 < oy1 && ox0 < ox1)
			acc(din, i, t, a);
	}
}

/* ---- spatial and channel zero padding ---- */

/* One thread per output (N,Ho,Wo,C): the input at (oy-top, ox-left) or 0. */
__global__ static void pad_fwd_k(void *out, const void *in, mfr_pad_shape s, int t)
{
	MFR_FOR(i, (size_t)s.n * s.ho * s.wo * s.c) {
		size_t ch = i % (size_t)s.c, r = i / (size_t)s.c;
		int ox = (int)(r % (size_t)s.wo);
		r /= (size_t)s.wo;
		int oy = (int)(r % (size_t)s.ho);
		size_t n = r / (size_t)s.ho;
		int y = oy - s.top, x = ox - s.left;
		float v = 0.f;
		if (y >= 0 && y < s.h && x >= 0 && x < s.w)
			v = ld(in, ((n * s.h + y) * s.w + x) * s.c + ch, t);
		st(out, i, t, v);
	}
}

/* One thread per input (N,H,W,C): += dout at (y+top, x+left). */
__global__ static void pad_bwd_k(void *din, const void *dout, mfr_pad_shape s, int t)
{
	MFR_FOR(i, (size_t)s.n * s.h * s.w * s.c) {
		size_t ch = i % (size_t)s.c, r = i / (size_t)s.c;
		int x = (int)(r % (size_t)s.w);
		r /= (size_t)s.w;
		int y = (int)(r % (size_t)s.h);
		size_t n = r / (size_t)s.h;
		acc(din, i, t, ld(dout, ((n * s.ho + y + s.top) * s.wo + x + s.left) * s.c + ch, t));
	}
}

/* One thread per output (M,c2): channel ch < c copied, the rest 0. */
__global__ static void chanpad_fwd_k(void *out, const void *in, int M, int c, int c2, int t)
{
	MFR_FOR(i, (size_t)M * c2) {
		size_t r = i / (size_t)c2, ch = i % (size_t)c2;
		st(out, i, t, ch < (size_t)c ? ld(in, r * c + ch, t) : 0.f);
	}
}

/* One thread per input gradient (M,c): += the same channel of dout. */
__global__ static void chanpad_bwd_k(void *din, const void *dout, int M, int c, int c2, int t)
{
	MFR_FOR(i, (size_t)M * c) {
		size_t r = i / (size_t)c, ch = i % (size_t)c;
		acc(din, i, t, ld(dout, r * c2 + ch, t));
	}
}

/* ---- launchers ---- */

/* The pooling shape preconditions mfr_pool_shape_init guarantees. */
static void pool_ok(const mfr_pool_shape *s)
{
	assert(s && s->n >= 1 && s->c >= 1 && s->h >= 1 && s->w >= 1 && s->ho >= 1 && s->wo >= 1);
	assert(s->sh >= 1 && s->sw >= 1 && s->ph >= 0 && s->pw >= 0 && s->ph < s->kh && s->pw < s->kw);
	(void)s;
}

static size_t pool_in(const mfr_pool_shape *s) { return (size_t)s->n * s->h * s->w * s->c; }
static size_t pool_out(const mfr_pool_shape *s) { return (size_t)s->n * s->ho * s->wo * s->c; }

extern "C" {

/* Contracts in gpu_layers.h. */
void mfr_gap_forward_cuda(void *out, const void *in, int N, int C, int HW, mfr_dtype t, mfr_gpu *g)
{
	assert(N >= 1 && C >= 1 && HW >= 1);
	size_t n = (size_t)N * C;
	gap_fwd_k<<<mfr_grid(g, n, MFR_THREADS), MFR_THREADS, 0, g->stream>>>(out, in, N, C, HW, (int)t);
	mfr_gpu_launched(g, "gap_forward");
}

void mfr_gap_backward_cuda(void *din, const void *dout, int N, int C, int HW, mfr_dtype t, mfr_gpu *g)
{
	assert(N >= 1 && C >= 1 && HW >= 1);
	size_t n = (size_t)N * HW * C;
	gap_bwd_k<<<mfr_grid(g, n, MFR_THREADS), MFR_THREADS, 0, g->stream>>>(din, dout, N, C, HW, (int)t);
	mfr_gpu_launched(g, "gap_backward");
}

void mfr_maxpool_forward_cuda(void *out, const void *in, const mfr_pool_shape *s, mfr_dtype t, mfr_gpu *g)
{
	pool_ok(s);
	maxpool_fwd_k<<<mfr_grid(g, pool_out(s), MFR_THREADS), MFR_THREADS, 0, g->stream>>>(out, in, *s, (int)t);
	mfr_gpu_launched(g, "maxpool_forward");
}

void mfr_maxpool_backward_cuda(void *din, const void *dout, const void *in, const mfr_pool_shape *s, mfr_dtype t,
			       mfr_gpu *g)
{
	pool_ok(s);
	maxpool_bwd_k<<<mfr_grid(g, pool_in(s), MFR_THREADS), MFR_THREADS, 0, g->stream>>>(din, dout, in, *s,
											    (int)t);
	mfr_gpu_launched(g, "maxpool_backward");
}

void mfr_avgpool_forward_cuda(void *out, const void *in, const mfr_pool_shape *s, mfr_dtype t, mfr_gpu *g)
{
	pool_ok(s);
	avgpool_fwd_k<<<mfr_grid(g, pool_out(s), MFR_THREADS), MFR_THREADS, 0, g->stream>>>(out, in, *s, (int)t);
	mfr_gpu_launched(g, "avgpool_forward");
}

void mfr_avgpool_backward_cuda(void *din, const void *dout, const mfr_pool_shape *s, mfr_dtype t, mfr_gpu *g)
{
	pool_ok(s);
	avgpool_bwd_k<<<mfr_grid(g, pool_in(s), MFR_THREADS), MFR_THREADS, 0, g->stream>>>(din, dout, *s, (int)t);
	mfr_gpu_launched(g, "avgpool_backward");
}

void mfr_pad_forward_cuda(void *out, const void *in, const mfr_pad_shape *s, mfr_dtype t, mfr_gpu *g)
{
	assert(s && s->n >= 1 && s->c >= 1 && s->h >= 1 && s->w >= 1 && s->top >= 0 && s->left >= 0);
	assert(s->ho == s->top + s->h + s->bottom && s->wo == s->left + s->w + s->right);
	size_t n = (size_t)s->n * s->ho * s->wo * s->c;
	pad_fwd_k<<<mfr_grid(g, n, MFR_THREADS), MFR_THREADS, 0, g->stream>>>(out, in, *s, (int)t);
	mfr_gpu_launched(g, "pad_forward");
}

void mfr_pad_backward_cuda(void *din, const void *dout, const mfr_pad_shape *s, mfr_dtype t, mfr_gpu *g)
{
	assert(s && s->n >= 1 && s->c >= 1 && s->h >= 1 && s->w >= 1 && s->top >= 0 && s->left >= 0);
	assert(s->ho == s->top + s->h + s->bottom && s->wo == s->left + s->w + s->right);
	size_t n = (size_t)s->n * s->h * s->w * s->c;
	pad_bwd_k<<<mfr_grid(g, n, MFR_THREADS), MFR_THREADS, 0, g->stream>>>(din, dout, *s, (int)t);
	mfr_gpu_launched(g, "pad_backward");
}

void mfr_chanpad_forward_cuda(void *out, const void *in, int M, int c, int c2, mfr_dtype t, mfr_gpu *g)
{
	assert(M >= 1 && c >= 1 && c2 >= c);
	size_t n = (size_t)M * c2;
	chanpad_fwd_k<<<mfr_grid(g, n, MFR_THREADS), MFR_THREADS, 0, g->stream>>>(out, in, M, c, c2, (int)t);
	mfr_gpu_launched(g, "chanpad_forward");
}

void mfr_chanpad_backward_cuda(void *din, const void *dout, int M, int c, int c2, mfr_dtype t, mfr_gpu *g)
{
	assert(M >= 1 && c >= 1 && c2 >= c);
	size_t n = (size_t)M * c;
	chanpad_bwd_k<<<mfr_grid(g, n, MFR_THREADS), MFR_THREADS, 0, g->stream>>>(din, dout, M, c, c2, (int)t);
	mfr_gpu_launched(g, "chanpad_backward");
}

} /* extern "C" */
