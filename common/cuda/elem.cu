/* elem.cu — the element-wise and per-channel launchers of the CUDA backend
 * (contracts in gpu.h and gpu_layers.h): type conversion, NCHW <-> NHWC,
 * fill, batch norm, PReLU, ReLU, sigmoid, add, channel concat, dropout, L2
 * normalisation of rows, and the fp32 optimizer helpers (SGD, sum of
 * squares, scale).
 *
 * Not the convolutions, pooling or attention blocks (other .cu files). The
 * kernels are simple grid-stride loops in float32 whatever the storage type.
 * Per-channel sums (batch norm statistics and gradients, PReLU's slope
 * gradient) and the sum of squares are deterministic two-stage reductions
 * (batch norm's mean and variance in one pass over the input, merged as
 * counts, means and squared deviations: Chan et al.'s pairwise update):
 * each block writes partial sums to g's scratch in a fixed order, a second
 * small kernel adds them in a fixed order; no float atomics, so a rerun
 * gives the same bits. */
#include "gpu_impl.h" /* defines: struct mfr_gpu, ld/st/acc, block_sum, splitmix_at */

#include <assert.h>
#include <math.h>
#include <stdio.h>

/* ---- helpers ---- */

/* Scratch for a launcher, or NULL after recording the failure in g (the
 * launchers return void; mfr_gpu_check reports it). */
static float *scratch_floats(mfr_gpu *g, size_t count, const char *what)
{
	mfr_error e = {{0}};
	void *p = mfr_gpu_scratch(g, count * sizeof(float), &e);
	if (!p && !g->launch_err[0])
		snprintf(g->launch_err, sizeof g->launch_err, "%.40s: %.200s", what, e.msg); /* fits launch_err */
	return (float *)p;
}

/* ---- element types and layouts ---- */

__global__ static void convert_kernel(void *dst, int dt, const void *src, int stype, size_t n)
{
	MFR_FOR(i, n)
		st(dst, i, dt, ld(src, i, stype));
}

/* Transposes each of n matrices src (R rows, S columns, row-major) into dst
 * (S rows, R columns) through a 32x32 tile in shared memory, so both the
 * reads and the writes go along rows. Block (32, 8); the grid covers the
 * tiles of one matrix in x (columns of src) and y (rows of src), and the n
 * matrices in z; every dimension strides, so any size fits the grid limits.
 * The loop bounds depend on the block only, so __syncthreads is reached by
 * every thread. */
#define TILE 32
__global__ static void transpose_kernel(void *dst, int dt, const void *src, int stype, int n, int R, int S,
					int accumulate)
{
	__shared__ float tile[TILE][TILE + 1]; /* +1: no bank conflicts on the column reads */
	int tilesR = (R + TILE - 1) / TILE, tilesS = (S + TILE - 1) / TILE;
	for (int b = blockIdx.z; b < n; b += gridDim.z)
		for (int tr = blockIdx.y; tr < tilesR; tr += gridDim.y)
			for (int ts = blockIdx.x; ts < tilesS; ts += gridDim.x) {
				size_t base = (size_t)b * R * S;
				int r0 = tr * TILE, s0 = ts * TILE;
				for (int j = threadIdx.y; j < TILE; j += blockDim.y) {
					int r = r0 + j, s = s0 + threadIdx.x;
					if (r < R && s < S)
						tile[j][threadIdx.x] = ld(src, base + (size_t)r * S + s, stype);
				}
				__syncthreads();
				for (int j = threadIdx.y; j < TILE; j += blockDim.y) {
					int s = s0 + j, r = r0 + threadIdx.x;
					if (r < R && s < S) {
						size_t o = base + (size_t)s * R + r;
						float v = tile[threadIdx.x][j];
						if (accumulate)
							v += ld(dst, o, dt);
						st(dst, o, dt, v);
					}
				}
				__syncthreads(); /* the tile is refilled by the next iteration */
			}
}

static void transpose(void *dst, mfr_dtype dt, const void *src, mfr_dtype stype, int n, int R, int S,
		      int accumulate, mfr_gpu *g, const char *what)
{
	assert(n >= 0 && R >= 0 && S >= 0);
	if (n == 0 || R == 0 || S == 0) {
		mfr_gpu_launched(g, what);
		return;
	}
	unsigned gx = (unsigned)((S + TILE - 1) / TILE), gy = (unsigned)((R + TILE - 1) / TILE);
	unsigned gz = (unsigned)n;
	if (gy > 65535)
		gy = 65535;
	if (gz > 65535)
		gz = 65535;
	/* enough blocks to fill the device, no more: the loops stride over the rest */
	size_t cap = (size_t)g->sms * 16;
	if ((size_t)gx * gy > cap)
		gz = 1;
	else if ((size_t)gx * gy * gz > cap)
		gz = (unsigned)(cap / ((size_t)gx * gy));
	if (gz < 1)
		gz = 1;
	transpose_kernel<<<dim3(gx, gy, gz), dim3(TILE, 8), 0, g->stream>>>(dst, dt, src, stype, n, R, S,
									   accumulate);
	mfr_gpu_launched(g, what);
}

__global__ static void input_kernel(void *dst, int dt, const uint8_t *src, size_t n, float m0, float m1, float m2,
				    float s0, float s1, float s2, int bgr)
{
	MFR_FOR(i, n) {
		int c = (int)(i % 3);
		float mean = c == 0 ? m0 : c == 1 ? m1 : m2, scale = c == 0 ? s0 : c == 1 ? s1 : s2;
		size_t from = bgr ? i - (size_t)c + (size_t)(2 - c) : i;
		st(dst, i, dt, ((float)src[from] - mean) * scale);
	}
}

__global__ static void fill_kernel(float *p, float value, size_t n)
{
	MFR_FOR(i, n)
		p[i] = value;
}

extern "C" {

void mfr_convert_cuda(void *dst, mfr_dtype dt, const void *src, mfr_dtype stype, size_t n, mfr_gpu *g)
{
	convert_kernel<<<mfr_grid(g, n, MFR_THREADS), MFR_THREADS, 0, g->stream>>>(dst, dt, src, stype, n);
	mfr_gpu_launched(g, "convert");
}

/* (n,c,hw) -> (n,hw,c): each image is a c x hw matrix transposed. */
void mfr_to_nhwc_cuda(void *dst, mfr_dtype dt, const void *src, mfr_dtype stype, int n, int c, int hw,
		      int accumulate, mfr_gpu *g)
{
	transpose(dst, dt, src, stype, n, c, hw, accumulate, g, "to_nhwc");
}

/* (n,hw,c) -> (n,c,hw): each image is an hw x c matrix transposed. */
void mfr_to_nchw_cuda(void *dst, mfr_dtype dt, const void *src, mfr_dtype stype, int n, int c, int hw,
		      int accumulate, mfr_gpu *g)
{
	transpose(dst, dt, src, stype, n, hw, c, accumulate, g, "to_nchw");
}

void mfr_input_cuda(void *dst, mfr_dtype dt, const uint8_t *src, int n, int hw, const float mean[3],
		    const float scale[3], int bgr, mfr_gpu *g)
{
	size_t cnt = (size_t)n * hw * 3;
	input_kernel<<<mfr_grid(g, cnt, MFR_THREADS), MFR_THREADS, 0, g->stream>>>(
		dst, dt, src, cnt, mean[0], mean[1], mean[2], scale[0], scale[1], scale[2], bgr);
	mfr_gpu_launched(g, "input");
}

void mfr_fill_cuda(float *p, float value, size_t n, mfr_gpu *g)
{
	fill_kernel<<<mfr_grid(g, n, MFR_THREADS), MFR_THREADS, 0, g->stream>>>(p, value, n);
	mfr_gpu_launched(g, "fill");
}

} /* extern "C" */

/* ---- per-channel sums over M rows of C channels ----
 *
 * Stage 1 (chan_partial_kernel): block (32, 8) takes 32 V neighbouring
 * channels, V to a thread (one coalesced read of 32 vectors per row) and
 * one chunk of rows; its 8 rows of threads stride over the chunk, then one
 * thread per channel adds the 8 sums. It writes part[(k*nchunk + chunk)*C
 * + c] for the quantities k = 0, 1 (2) of the mode. Stage 2 (chunk_total):
 * one warp per channel adds the nchunk partial sums.
 *
 * V (chan_vec): 4 channels a thread — 8-byte loads in fp16/bf16, 16 in fp32,
 * so that a warp keeps 4 times the bytes in flight of one value a thread —
 * when C is a multiple of 4 and every buffer aligned to 4 values; else 1.
 * Each channel's arithmetic is the same either way, so are the bits. */
#define CH_TILE 32
#define ROW_THREADS 8

/* V values of a type, aligned to their size: one load or store. */
template <int V> struct alignas(4 * V) vec_f32 {
	float v[V];
};
template <int V> struct alignas(2 * V) vec_f16 {
	__half v[V];
};
template <int V> struct alignas(2 * V) vec_bf16 {
	__nv_bfloat16 v[V];
};

/* Elements i..i+V-1 of p (type t) into v as float; i a multiple of V. */
template <int V> __device__ static inline void ldv(float *v, const void *p, size_t i, int t)
{
	if (t == MFR_F16) {
		vec_f16<V> w = *(const vec_f16<V> *)((const __half *)p + i);
		for (int k = 0; k < V; k++)
			v[k] = __half2float(w.v[k]);
	} else if (t == MFR_BF16) {
		vec_bf16<V> w = *(const vec_bf16<V> *)((const __nv_bfloat16 *)p + i);
		for (int k = 0; k < V; k++)
			v[k] = __bfloat162float(w.v[k]);
	} else {
		vec_f32<V> w = *(const vec_f32<V> *)((const float *)p + i);
		for (int k = 0; k < V; k++)
			v[k] = w.v[k];
	}
}

/* v into elements i..i+V-1 of p, rounded to t; with a, added to them (upd). */
template <int V> __device__ static inline void updv(void *p, size_t i, int t, const float *v, int a)
{
	float o[V];
	if (a)
		ldv<V>(o, p, i, t);
	for (int k = 0; k < V; k++)
		o[k] = a ? o[k] + v[k] : v[k];
	if (t == MFR_F16) {
		vec_f16<V> w;
		for (int k = 0; k < V; k++)
			w.v[k] = __float2half_rn(o[k]);
		*(vec_f16<V> *)((__half *)p + i) = w;
	} else if (t == MFR_BF16) {
		vec_bf16<V> w;
		for (int k = 0; k < V; k++)
			w.v[k] = __float2bfloat16_rn(o[k]);
		*(vec_bf16<V> *)((__nv_bfloat16 *)p + i) = w;
	} else {
		vec_f32<V> w;
		for (int k = 0; k < V; k++)
			w.v[k] = o[k];
		*(vec_f32<V> *)((float *)p + i) = w;
	}
}
template <int V> __device__ static inline void stv(void *p, size_t i, int t, const float *v) { updv<V>(p, i, t, v, 0); }

/* V for C channels when the buffers (NULL ones ignored) allow it. */
static int chan_vec(int C, mfr_dtype t, const void *a, const void *b, const void *c, const void *d)
{
	const void *p[4] = {a, b, c, d};
	size_t al = 4 * mfr_dtype_size(t);
	if (C % 4)
		return 1;
	for (int k = 0; k < 4; k++)
		if (p[k] && (uintptr_t)p[k] % al)
			return 1;
	return 4;
}

/* kernel<V><<<grid, block, 0, g->stream>>>(args...) for V = 4 or 1. */
#define CHAN_LAUNCH(V, kernel, grid, block, ...)                                        \
	do {                                                                            \
		if ((V) == 4)                                                           \
			kernel<4><<<(grid), (block), 0, g->stream>>>(__VA_ARGS__);      \
		else                                                                    \
			kernel<1><<<(grid), (block), 0, g->stream>>>(__VA_ARGS__);      \
	} while (0)

enum {
	PART_BN_GRAD,  /* k0: dy; k1: dy * (x - mean) * invstd */
	PART_PRELU,    /* k0: dy * x where x <= 0 (or NaN, as the reference); and din written in the same pass */
	PART_BN_PRELU  /* a bn whose output y only a PReLU reads, dy its output's gradient, y recomputed from x:
			* k0, k1 as PART_BN_GRAD of the PReLU's input gradient g; k2: dy * y where y <= 0 */
};

/* The batch norm output gi (x - mu) + beta, gi = gamma invstd: one
 * expression wherever it is computed, so a recomputation gives the same
 * bits as the forward. */
__device__ static inline float bn_y(float gi, float x, float mu, float be) { return gi * (x - mu) + be; }

/* PReLU's input gradient: dy where y > 0, else slope * dy. */
__device__ static inline float prelu_g(float y, float dy, float sl) { return y > 0.f ? dy : sl * dy; }

/* PART_PRELU also writes din (= or +=, acc) = dy or slope * dy: PReLU's
 * backward in one pass over dy and x. PART_BN_PRELU reads gamma and beta
 * besides mean and invstd. */
template <int V>
__global__ static void chan_partial_kernel(float *part, int mode, const void *x, const void *dy, const float *mean,
					   const float *invstd, const float *gamma, const float *beta, void *din,
					   const float *slope, int acc, int M, int C, int rpc, int t)
{
	__shared__ float sh[3][ROW_THREADS][CH_TILE * V + 1];
	int tx = threadIdx.x, ty = threadIdx.y, c0 = (blockIdx.x * CH_TILE + tx) * V;
	int chunk = blockIdx.y, nchunk = gridDim.y, nk = mode == PART_BN_PRELU ? 3 : 2;
	float s0[V], s1[V], s2[V];
	for (int k = 0; k < V; k++)
		s0[k] = s1[k] = s2[k] = 0.f;
	if (c0 < C) { /* C is a multiple of V: all V channels are */
		float mu[V], is[V], sl[V], gi[V], be[V];
		for (int k = 0; k < V; k++) {
			int c = c0 + k;
			mu[k] = mean ? mean[c] : 0.f, is[k] = invstd ? invstd[c] : 0.f, sl[k] = slope ? slope[c] : 0.f;
			gi[k] = gamma ? gamma[c] * is[k] : 0.f, be[k] = beta ? beta[c] : 0.f;
		}
		long long r0 = (long long)chunk * rpc, r1 = r0 + rpc < M ? r0 + rpc : M;
		for (long long r = r0 + ty; r < r1; r += ROW_THREADS) {
			size_t i = (size_t)r * C + c0;
			float v[V], d[V], o[V];
			ldv<V>(v, x, i, t);
			ldv<V>(d, dy, i, t);
			for (int k = 0; k < V; k++)
				if (mode == PART_BN_GRAD) {
					s0[k] += d[k];
					s1[k] += d[k] * ((v[k] - mu[k]) * is[k]);
				} else if (mode == PART_PRELU) {
					if (!(v[k] > 0.f))
						s0[k] += d[k] * v[k];
					o[k] = prelu_g(v[k], d[k], sl[k]);
				} else { /* PART_BN_PRELU */
					float y = bn_y(gi[k], v[k], mu[k], be[k]), gd = prelu_g(y, d[k], sl[k]);
					if (!(y > 0.f))
						s2[k] += d[k] * y;
					s0[k] += gd;
					s1[k] += gd * ((v[k] - mu[k]) * is[k]);
				}
			if (mode == PART_PRELU)
				updv<V>(din, i, t, o, acc);
		}
	}
	for (int k = 0; k < V; k++) {
		sh[0][ty][tx * V + k] = s0[k];
		sh[1][ty][tx * V + k] = s1[k];
		sh[2][ty][tx * V + k] = s2[k];
	}
	__syncthreads();
	int l = ty * CH_TILE + tx, c = blockIdx.x * CH_TILE * V + l; /* thread l adds channel l of the block */
	if (l < CH_TILE * V && c < C)
		for (int k = 0; k < nk; k++) {
			float a = 0.f;
			for (int j = 0; j < ROW_THREADS; j++)
				a += sh[k][j][l];
			part[((size_t)k * nchunk + chunk) * C + c] = a;
		}
}

/* Total of quantity k of channel c over the nchunk partial sums; called by
 * all 32 lanes of a warp, every lane gets it. */
__device__ static float chunk_total(const float *part, int k, int nchunk, int C, int c)
{
	float s = 0.f;
	for (int j = threadIdx.x & 31; j < nchunk; j += 32)
		s += part[((size_t)k * nchunk + j) * C + c];
	return warp_sum(s);
}

/* The warp of this thread is channel (global thread index)/32; whole warps
 * leave together when it is past C (blocks are a multiple of 32). */
#define WARP_CHANNEL ((int)((blockIdx.x * (size_t)blockDim.x + threadIdx.x) >> 5))

/* Launch geometry of a per-channel reduction: rows per chunk and chunks. At
 * least 64 rows per chunk (8 per thread), and only as many chunks as fill
 * the device (about 8 blocks per multiprocessor), so stage 2 stays short. */
typedef struct {
	int rpc, nchunk;
	dim3 grid, block;
} chan_plan;

static chan_plan chan_plan_for(const mfr_gpu *g, int M, int C, int V)
{
	chan_plan p;
	long long cb = (C + CH_TILE * V - 1) / (CH_TILE * V), want = (long long)g->sms * 8 / cb;
	long long most = ((long long)M + 63) / 64;
	long long n = want < most ? want : most;
	if (n > 65535)
		n = 65535;
	if (n < 1)
		n = 1;
	p.rpc = (int)((M + n - 1) / n);
	p.nchunk = (int)((M + p.rpc - 1) / p.rpc);
	if (p.nchunk < 1)
		p.nchunk = 1;
	p.grid = dim3((unsigned)cb, (unsigned)p.nchunk);
	p.block = dim3(CH_TILE, ROW_THREADS);
	return p;
}

/* Blocks of MFR_THREADS for one warp per channel. */
static unsigned warp_blocks(int C) { return (unsigned)(((size_t)C * 32 + MFR_THREADS - 1) / MFR_THREADS); }

/* ---- batch norm ---- */

/* Count, mean and sum of squared deviations of a set of values; merge()
 * joins two disjoint sets (Chan, Golub and LeVeque's pairwise update: no
 * cancellation between large sums). */
typedef struct {
	float n, mean, m2;
} moments;

__device__ static moments merge(moments a, moments b)
{
	if (b.n == 0.f)
		return a;
	if (a.n == 0.f)
		return b;
	float n = a.n + b.n, d = b.mean - a.mean, f = b.n / n;
	return moments{n, a.mean + d * f, a.m2 + b.m2 + d * d * a.n * f};
}

/* Stage 1 of the statistics, one pass over x: the block layout of
 * chan_partial_kernel; each thread sums its rows' deviations from its first
 * value (a shift inside the data: no cancellation unless that value is far
 * out), the 8 row threads merge, and the chunk's mean and squared deviations
 * go to part[chunk*C + c] and part[(nchunk + chunk)*C + c]. */
template <int V> __global__ static void bn_moments_kernel(float *part, const void *x, int M, int C, int rpc, int t)
{
	__shared__ moments sh[ROW_THREADS][CH_TILE * V];
	int tx = threadIdx.x, ty = threadIdx.y, c0 = (blockIdx.x * CH_TILE + tx) * V;
	int chunk = blockIdx.y, nchunk = gridDim.y;
	moments m[V];
	for (int k = 0; k < V; k++)
		m[k] = moments{0.f, 0.f, 0.f};
	if (c0 < C) {
		long long r0 = (long long)chunk * rpc, r1 = r0 + rpc < M ? r0 + rpc : M;
		float sh0[V], s1[V], s2[V], n = 0.f;
		for (int k = 0; k < V; k++)
			sh0[k] = s1[k] = s2[k] = 0.f;
		for (long long r = r0 + ty; r < r1; r += ROW_THREADS) {
			float v[V];
			ldv<V>(v, x, (size_t)r * C + c0, t);
			for (int k = 0; k < V; k++) {
				if (n == 0.f)
					sh0[k] = v[k];
				float d = v[k] - sh0[k];
				s1[k] += d;
				s2[k] += d * d;
			}
			n += 1.f;
		}
		if (n > 0.f)
			for (int k = 0; k < V; k++)
				m[k] = moments{n, sh0[k] + s1[k] / n, fmaxf(s2[k] - s1[k] * (s1[k] / n), 0.f)};
	}
	for (int k = 0; k < V; k++)
		sh[ty][tx * V + k] = m[k];
	__syncthreads();
	int l = ty * CH_TILE + tx, c = blockIdx.x * CH_TILE * V + l; /* thread l merges channel l of the block */
	if (l < CH_TILE * V && c < C) {
		moments a = sh[0][l];
		for (int j = 1; j < ROW_THREADS; j++)
			a = merge(a, sh[j][l]);
		part[(size_t)chunk * C + c] = a.mean;
		part[((size_t)nchunk + chunk) * C + c] = a.m2;
	}
}

/* Stage 2, one warp per channel: the chunks' moments merged (lane by lane,
 * then across the warp), mean and invstd saved, the running statistics
 * updated; the per-channel scalars in double, as the reference. */
__global__ static void bn_stats_kernel(float *mean, float *invstd, float *running_mean, float *running_var,
				       const float *part, int nchunk, int rpc, int M, int C, double eps, double momentum)
{
	int c = WARP_CHANNEL, lane = threadIdx.x & 31;
	if (c >= C)
		return;
	moments m = {0.f, 0.f, 0.f};
	for (int j = lane; j < nchunk; j += 32) {
		long long r0 = (long long)j * rpc, r1 = r0 + rpc < M ? r0 + rpc : M;
		m = merge(m, moments{(float)(r1 - r0), part[(size_t)j * C + c], part[((size_t)nchunk + j) * C + c]});
	}
	for (int o = 16; o > 0; o >>= 1) {
		moments b = {__shfl_down_sync(0xffffffffu, m.n, o), __shfl_down_sync(0xffffffffu, m.mean, o),
			     __shfl_down_sync(0xffffffffu, m.m2, o)};
		m = merge(m, b);
	}
	if (lane == 0) {
		double var = (double)m.m2 / (double)M;
		mean[c] = m.mean;
		invstd[c] = (float)(1 / sqrt(var + eps));
		running_mean[c] = (float)((1 - momentum) * running_mean[c] + momentum * m.mean);
		running_var[c] = (float)((1 - momentum) * running_var[c] +
					 momentum * var * (double)M / (double)(M - 1)); /* unbiased */
	}
}

__global__ static void bn_infer_stats_kernel(float *mean, float *invstd, const float *running_mean,
					     const float *running_var, int C, double eps)
{
	MFR_FOR(c, (size_t)C) {
		mean[c] = running_mean[c];
		invstd[c] = (float)(1 / sqrt((double)running_var[c] + eps));
	}
}

/* The per-channel element-wise kernels (batch norm's output and input
 * gradient, PReLU's output) in the reductions' layout: block (32, 8) on 32
 * neighbouring channels, a thread per channel loading that channel's
 * constants once, its rows striding by the grid's (no index division per
 * element). chan_grid: enough row blocks for about 4 rows per thread. */
#define CHAN_ROWS(r, M) \
	for (long long r = (long long)blockIdx.y * blockDim.y + threadIdx.y; r < (M); r += (long long)gridDim.y * blockDim.y)
static dim3 chan_grid(int M, int C, int V)
{
	long long y = ((long long)M + CH_TILE - 1) / CH_TILE;
	return dim3((unsigned)((C + CH_TILE * V - 1) / (CH_TILE * V)), (unsigned)(y < 1 ? 1 : y < 65535 ? y : 65535));
}

/* The first of this thread's V channels; past C, the thread has none. */
#define CHAN0(V) ((int)((blockIdx.x * CH_TILE + threadIdx.x) * (V)))

/* out = bn(in), then PReLU with slope unless slope is NULL. */
template <int V>
__global__ static void bn_norm_kernel(void *out, const void *in, mfr_bn_norm n, const float *slope, int M, int C,
				      int t)
{
	int c0 = CHAN0(V);
	if (c0 >= C)
		return;
	float gi[V], mu[V], be[V], sl[V];
	for (int k = 0; k < V; k++)
		gi[k] = n.gamma[c0 + k] * n.invstd[c0 + k], mu[k] = n.mean[c0 + k], be[k] = n.beta[c0 + k],
		sl[k] = slope ? slope[c0 + k] : 1.f;
	CHAN_ROWS(r, M) {
		size_t i = (size_t)r * C + c0;
		float v[V];
		ldv<V>(v, in, i, t);
		for (int k = 0; k < V; k++) {
			float y = bn_y(gi[k], v[k], mu[k], be[k]);
			v[k] = y > 0.f ? y : sl[k] * y;
		}
		stv<V>(out, i, t, v);
	}
}

/* One input's per-channel affine map for bn_add_kernel: bn's, or x -> x. */
template <int V> __device__ static inline void bn_affine(float *gi, float *mu, float *be, const mfr_bn_norm &n, int c0)
{
	for (int k = 0; k < V; k++) {
		gi[k] = 1.f, mu[k] = 0.f, be[k] = 0.f;
		if (n.gamma)
			gi[k] = n.gamma[c0 + k] * n.invstd[c0 + k], mu[k] = n.mean[c0 + k], be[k] = n.beta[c0 + k];
	}
}

/* out = a' + b', where x' is bn(x) when its norm has gamma, else x; with
 * relu, max(that, 0) as the reference's relu (x > 0 ? x : 0). */
template <int V>
__global__ static void bn_add_kernel(void *out, const void *a, mfr_bn_norm na, const void *b, mfr_bn_norm nb, int relu,
				     int M, int C, int t)
{
	int c0 = CHAN0(V);
	if (c0 >= C)
		return;
	float ga[V], ma[V], ba[V], gb[V], mb[V], bb[V];
	bn_affine<V>(ga, ma, ba, na, c0);
	bn_affine<V>(gb, mb, bb, nb, c0);
	CHAN_ROWS(r, M) {
		size_t i = (size_t)r * C + c0;
		float va[V], vb[V];
		ldv<V>(va, a, i, t);
		ldv<V>(vb, b, i, t);
		for (int k = 0; k < V; k++) { /* 1 (x - 0) + 0: x */
			va[k] = bn_y(ga[k], va[k], ma[k], ba[k]) + bn_y(gb[k], vb[k], mb[k], bb[k]);
			if (relu)
				va[k] = va[k] > 0.f ? va[k] : 0.f;
		}
		stv<V>(out, i, t, va);
	}
}

/* sums (2C): sum g, sum g*xhat per channel (=), g bn's output gradient; dbeta,
 * dgamma (+=); dslope (+=) from quantity 2 when not NULL (PART_BN_PRELU). */
__global__ static void bn_grad_sums_kernel(float *sums, float *dgamma, float *dbeta, float *dslope,
					   const float *part, int nchunk, int C)
{
	int c = WARP_CHANNEL;
	if (c >= C)
		return;
	float sdy = chunk_total(part, 0, nchunk, C, c), sdyx = chunk_total(part, 1, nchunk, C, c);
	float sdsl = dslope ? chunk_total(part, 2, nchunk, C, c) : 0.f;
	if ((threadIdx.x & 31) == 0) {
		sums[c] = sdy;
		sums[C + c] = sdyx;
		dbeta[c] += sdy;
		dgamma[c] += sdyx;
		if (dslope)
			dslope[c] += sdsl;
	}
}

/* din (= or +=, a) from dout, bn's output gradient; or, with slope, dout is
 * the gradient of PReLU(bn(in)) and bn's output gradient is recomputed. */
template <int V>
__global__ static void bn_din_kernel(void *din, const void *dout, const void *in, mfr_bn_norm n, const float *slope,
				     const float *sums, int M, int C, int training, int a, int t)
{
	int c0 = CHAN0(V);
	if (c0 >= C)
		return;
	float is[V], gs[V], mu[V], be[V], sl[V], mdy[V], mdyx[V];
	for (int k = 0; k < V; k++) {
		int c = c0 + k;
		is[k] = n.invstd[c], gs[k] = n.gamma[c] * is[k], mu[k] = n.mean[c], be[k] = slope ? n.beta[c] : 0.f;
		sl[k] = slope ? slope[c] : 0.f;
		/* training: the batch statistics depend on every x of the channel */
		mdy[k] = training ? sums[c] / (float)M : 0.f, mdyx[k] = training ? sums[C + c] / (float)M : 0.f;
	}
	CHAN_ROWS(r, M) {
		size_t i = (size_t)r * C + c0;
		float v[V], d[V];
		ldv<V>(v, in, i, t);
		ldv<V>(d, dout, i, t);
		for (int k = 0; k < V; k++) {
			if (slope)
				d[k] = prelu_g(bn_y(gs[k], v[k], mu[k], be[k]), d[k], sl[k]);
			float xhat = (v[k] - mu[k]) * is[k];
			d[k] = gs[k] * (d[k] - mdy[k] - xhat * mdyx[k]);
		}
		updv<V>(din, i, t, d, a);
	}
}

/* ---- PReLU ---- */

__global__ static void bn_fold_kernel(float *fw, float *fb, const float *w, const float *bias, const float *gamma,
				      const float *beta, const float *mean, const float *var, size_t per, size_t n, double eps)
{
	MFR_FOR(i, n) {
		size_t c = i / per;
		double s = gamma[c] / sqrt((double)var[c] + eps);
		fw[i] = (float)(w[i] * s);
		if (i % per == 0)
			fb[c] = (float)(((bias ? bias[c] : 0) - (double)mean[c]) * s + beta[c]);
	}
}

template <int V>
__global__ static void prelu_forward_kernel(void *out, const void *in, const float *slope, int M, int C, int t)
{
	int c0 = CHAN0(V);
	if (c0 >= C)
		return;
	float sl[V];
	for (int k = 0; k < V; k++)
		sl[k] = slope[c0 + k];
	CHAN_ROWS(r, M) {
		size_t i = (size_t)r * C + c0;
		float v[V];
		ldv<V>(v, in, i, t);
		for (int k = 0; k < V; k++)
			v[k] = v[k] > 0.f ? v[k] : sl[k] * v[k];
		stv<V>(out, i, t, v);
	}
}

__global__ static void prelu_dslope_kernel(float *dslope, const float *part, int nchunk, int C)
{
	int c = WARP_CHANNEL;
	if (c >= C)
		return;
	float s = chunk_total(part, 0, nchunk, C, c);
	if ((threadIdx.x & 31) == 0)
		dslope[c] += s;
}

/* ---- ReLU, sigmoid, add ----
 * On V values a thread (flat_vec: 4 when n and the buffers allow, as the
 * per-channel kernels; else 1), each value's arithmetic the same. */

/* V for n values when the buffers (NULL ones ignored) allow it. */
static int flat_vec(size_t n, mfr_dtype t, const void *a, const void *b, const void *c)
{
	return n % 4 ? 1 : chan_vec(4, t, a, b, c, NULL);
}

/* kernel<V><<<enough blocks for n / V threads>>>(args...) for V = 4 or 1. */
#define FLAT_LAUNCH(V, kernel, n, ...) \
	CHAN_LAUNCH(V, kernel, mfr_grid(g, (n) / (size_t)(V), MFR_THREADS), MFR_THREADS, __VA_ARGS__)

template <int V> __global__ static void relu_forward_kernel(void *out, const void *in, size_t n, int t)
{
	MFR_FOR(q, n / V) {
		float v[V];
		ldv<V>(v, in, q * V, t);
		for (int k = 0; k < V; k++)
			v[k] = v[k] > 0.f ? v[k] : 0.f;
		stv<V>(out, q * V, t, v);
	}
}

template <int V>
__global__ static void relu_backward_kernel(void *din, const void *dout, const void *out, size_t n, int a, int t)
{
	MFR_FOR(q, n / V) {
		float y[V], d[V];
		ldv<V>(y, out, q * V, t);
		ldv<V>(d, dout, q * V, t);
		for (int k = 0; k < V; k++)
			d[k] = y[k] > 0.f ? d[k] : 0.f;
		updv<V>(din, q * V, t, d, a);
	}
}

template <int V> __global__ static void sigmoid_forward_kernel(void *out, const void *in, size_t n, int t)
{
	MFR_FOR(q, n / V) {
		float v[V];
		ldv<V>(v, in, q * V, t);
		for (int k = 0; k < V; k++) {
			float a = v[k];
			if (a >= 0.f) { /* the two forms keep expf from overflowing */
				v[k] = 1.f / (1.f + expf(-a));
			} else {
				float e = expf(a);
				v[k] = e / (1.f + e);
			}
		}
		stv<V>(out, q * V, t, v);
	}
}

template <int V>
__global__ static void sigmoid_backward_kernel(void *din, const void *dout, const void *out, size_t n, int t)
{
	MFR_FOR(q, n / V) {
		float y[V], d[V];
		ldv<V>(y, out, q * V, t);
		ldv<V>(d, dout, q * V, t);
		for (int k = 0; k < V; k++)
			d[k] = d[k] * y[k] * (1.f - y[k]);
		updv<V>(din, q * V, t, d, 1);
	}
}

template <int V> __global__ static void add_forward_kernel(void *out, const void *a, const void *b, size_t n, int t)
{
	MFR_FOR(q, n / V) {
		float x[V], y[V];
		ldv<V>(x, a, q * V, t);
		ldv<V>(y, b, q * V, t);
		for (int k = 0; k < V; k++)
			x[k] += y[k];
		stv<V>(out, q * V, t, x);
	}
}

/* da, db: either may be NULL (uniform across the grid). */
template <int V> __global__ static void add_backward_kernel(void *da, void *db, const void *dout, size_t n, int a, int t)
{
	MFR_FOR(q, n / V) {
		float d[V];
		ldv<V>(d, dout, q * V, t);
		if (da)
			updv<V>(da, q * V, t, d, a);
		if (db)
			updv<V>(db, q * V, t, d, a);
	}
}

/* ---- concat: a block of w columns between (M, dld) and (M, sld) matrices ---- */

/* dst[r*dld + doff + j] (=, or += when accumulate) src[r*sld + soff + j],
 * r < M, j < w. */
__global__ static void columns_kernel(void *dst, int dld, int doff, const void *src, int sld, int soff, int M,
				      int w, int accumulate, int t)
{
	MFR_FOR(i, (size_t)M * w) {
		size_t r = i / (size_t)w, j = i % (size_t)w;
		size_t o = r * (size_t)dld + (size_t)doff + j;
		float v = ld(src, r * (size_t)sld + (size_t)soff + j, t);
		if (accumulate)
			v += ld(dst, o, t);
		st(dst, o, t, v);
	}
}

/* ---- dropout ---- */

/* Element i of the NHWC tensor is (n, hw, c); its draw is the reference's
 * NCHW index (n*C + c)*HW + hw. Kept iff (draw >> 11) * 2^-53 >= p, which is
 * (draw >> 11) >= keep_from = ceil(p * 2^53) in integers (both sides exact). */
__global__ static void dropout_forward_kernel(void *out, uint8_t *mask, const void *in, uint64_t keep_from,
					      float scale, uint64_t seed, int N, int C, int HW, int t)
{
	size_t img = (size_t)HW * C;
	MFR_FOR(i, (size_t)N * img) {
		size_t n = i / img, rem = i % img, hw = rem / (size_t)C, c = rem % (size_t)C;
		uint64_t draw = splitmix_at(seed, ((uint64_t)n * (uint64_t)C + c) * (uint64_t)HW + hw);
		int keep = (draw >> 11) >= keep_from;
		mask[i] = (uint8_t)keep;
		st(out, i, t, keep ? ld(in, i, t) * scale : 0.f);
	}
}

__global__ static void dropout_backward_kernel(void *din, const void *dout, const uint8_t *mask, float scale,
					       size_t n, int a, int t)
{
	MFR_FOR(i, n) {
		if (mask[i])
			upd(din, i, t, ld(dout, i, t) * scale, a);
		else if (!a)
			st(din, i, t, 0.f);
	}
}

/* ---- L2 normalisation: one block per row (blocks stride over rows) ---- */

__global__ static void l2norm_forward_kernel(void *out, float *norm, const void *in, int N, int D, float eps,
					     int t)
{
	__shared__ float sh[32];
	for (int n = blockIdx.x; n < N; n += gridDim.x) {
		size_t o = (size_t)n * D;
		float ss = 0.f;
		for (int i = threadIdx.x; i < D; i += blockDim.x) {
			float v = ld(in, o + i, t);
			ss += v * v;
		}
		float nr = sqrtf(block_sum(ss, sh)), den = nr > eps ? nr : eps;
		if (threadIdx.x == 0)
			norm[n] = nr;
		for (int i = threadIdx.x; i < D; i += blockDim.x)
			st(out, o + i, t, ld(in, o + i, t) / den);
	}
}

/* y = x/norm: din += (dy - y*(y.dy))/norm; din += dy/eps where the norm was
 * clamped (the forward was the linear map x/eps). The branch is uniform per
 * block, so block_sum is reached by every thread. */
__global__ static void l2norm_backward_kernel(void *din, const void *dout, const void *in, const float *norm, int N,
					      int D, float eps, int t)
{
	__shared__ float sh[32];
	for (int n = blockIdx.x; n < N; n += gridDim.x) {
		size_t o = (size_t)n * D;
		float nr = norm[n];
		if (!(nr > eps)) {
			for (int i = threadIdx.x; i < D; i += blockDim.x)
				acc(din, o + i, t, ld(dout, o + i, t) / eps);
			continue;
		}
		float s = 0.f;
		for (int i = threadIdx.x; i < D; i += blockDim.x)
			s += ld(in, o + i, t) / nr * ld(dout, o + i, t);
		float ydy = block_sum(s, sh);
		for (int i = threadIdx.x; i < D; i += blockDim.x)
			acc(din, o + i, t, (ld(dout, o + i, t) - ld(in, o + i, t) / nr * ydy) / nr);
	}
}

/* ---- optimizer helpers on fp32 ---- */

/* Run blockIdx.y of runs, its blocks striding over it. */
/* Block b takes MFR_SGD_BLOCK indices of the run whose blocks hold it (a
 * binary search of the table's first blocks). */
__global__ static void sgd_kernel(float *w, float *v, const float *grad, const size_t *table, int nruns, float lr,
				  float mu, float wd, float gscale)
{
	size_t b = blockIdx.x;
	int lo = 0, hi = nruns - 1; /* the last run whose first block is <= b */
	while (lo < hi) {
		int mid = (lo + hi + 1) / 2;
		if (table[3 * mid + 2] <= b)
			lo = mid;
		else
			hi = mid - 1;
	}
	size_t off = table[3 * lo], n = table[3 * lo + 1], j0 = (b - table[3 * lo + 2]) * MFR_SGD_BLOCK;
	size_t j1 = j0 + MFR_SGD_BLOCK < n ? j0 + MFR_SGD_BLOCK : n;
	for (size_t j = j0 + threadIdx.x; j < j1; j += blockDim.x) {
		size_t i = off + j;
		float gr = grad[i] * gscale + wd * w[i];
		float vi = mu * v[i] + gr;
		v[i] = vi;
		w[i] -= lr * vi;
	}
}

/* Stage 1: part[block] = the block's sum of squares; flag = 1 on a
 * non-finite value (every writer writes 1, so the race is harmless). */
__global__ static void sumsq_partial_kernel(float *part, int *flag, const float *x, size_t n)
{
	__shared__ float sh[32];
	float s = 0.f;
	int bad = 0;
	MFR_FOR(i, n) {
		float v = x[i];
		s += v * v;
		bad |= !isfinite(v);
	}
	if (bad && flag)
		*flag = 1;
	s = block_sum(s, sh);
	if (threadIdx.x == 0)
		part[blockIdx.x] = s;
}

/* Stage 2: one block adds the partial sums in a fixed order. */
__global__ static void sumsq_final_kernel(float *out, const float *part, int nb)
{
	__shared__ float sh[32];
	float s = 0.f;
	for (int i = threadIdx.x; i < nb; i += blockDim.x)
		s += part[i];
	s = block_sum(s, sh);
	if (threadIdx.x == 0)
		*out = s;
}

__global__ static void scale_kernel(float *x, float a, size_t n)
{
	MFR_FOR(i, n)
		x[i] *= a;
}

extern "C" {

/* Training: mean (pass 1), then the sum of squared deviations from it
 * (pass 2: no cancellation of E[x^2] - E[x]^2), then normalise. */
void mfr_bn_fold_cuda(float *fw, float *fb, const float *w, const float *bias, const float *gamma, const float *beta,
		      const float *mean, const float *var, int out, size_t per, double eps, mfr_gpu *g)
{
	size_t n = (size_t)out * per;
	bn_fold_kernel<<<mfr_grid(g, n, MFR_THREADS), MFR_THREADS, 0, g->stream>>>(fw, fb, w, bias, gamma, beta, mean, var,
										    per, n, eps);
	mfr_gpu_launched(g, "bn fold");
}

void mfr_bn_forward_cuda(void *out, float *mean, float *invstd, float *running_mean, float *running_var,
			 const void *in, const float *gamma, const float *beta, int M, int C, int training,
			 double eps, double momentum, mfr_dtype t, mfr_gpu *g)
{
	assert(M > 0 && C > 0 && eps > 0);
	assert(!training || M > 1); /* the unbiased variance needs two values */
	if (training) {
		int V = chan_vec(C, t, in, NULL, NULL, NULL);
		chan_plan p = chan_plan_for(g, M, C, V);
		float *part = scratch_floats(g, 2 * (size_t)p.nchunk * C, "bn_forward");
		if (!part)
			return;
		CHAN_LAUNCH(V, bn_moments_kernel, p.grid, p.block, part, in, M, C, p.rpc, t);
		bn_stats_kernel<<<warp_blocks(C), MFR_THREADS, 0, g->stream>>>(mean, invstd, running_mean, running_var,
									       part, p.nchunk, p.rpc, M, C, eps, momentum);
	} else {
		bn_infer_stats_kernel<<<mfr_grid(g, (size_t)C, MFR_THREADS), MFR_THREADS, 0, g->stream>>>(
			mean, invstd, running_mean, running_var, C, eps);
	}
	if (out) {
		mfr_bn_norm n = {gamma, beta, mean, invstd};
		mfr_bn_apply_cuda(out, in, &n, NULL, M, C, t, g);
	}
	mfr_gpu_launched(g, "bn_forward");
}

void mfr_bn_apply_cuda(void *out, const void *in, const mfr_bn_norm *n, const float *slope, int M, int C,
		       mfr_dtype t, mfr_gpu *g)
{
	assert(M > 0 && C > 0);
	int V = chan_vec(C, t, out, in, NULL, NULL);
	CHAN_LAUNCH(V, bn_norm_kernel, chan_grid(M, C, V), dim3(CH_TILE, ROW_THREADS), out, in, *n, slope, M, C, t);
	mfr_gpu_launched(g, "bn_apply");
}

void mfr_bn_add_cuda(void *out, const void *a, const mfr_bn_norm *na, const void *b, const mfr_bn_norm *nb,
		     int relu, int M, int C, mfr_dtype t, mfr_gpu *g)
{
	assert(M > 0 && C > 0);
	mfr_bn_norm none = {NULL, NULL, NULL, NULL};
	int V = chan_vec(C, t, out, a, b, NULL);
	CHAN_LAUNCH(V, bn_add_kernel, chan_grid(M, C, V), dim3(CH_TILE, ROW_THREADS), out, a, na ? *na : none, b,
		    nb ? *nb : none, relu, M, C, t);
	mfr_gpu_launched(g, "bn_add");
}

/* Batch norm's backward; with slope, of PReLU(bn(in)) (dslope +=). */
static void bn_backward(void *din, float *dgamma, float *dbeta, float *dslope, const void *dout, const void *in,
			const mfr_bn_norm *n, const float *slope, int M, int C, int training, int acc, mfr_dtype t,
			mfr_gpu *g)
{
	assert(M > 0 && C > 0);
	int V = chan_vec(C, t, din, dout, in, NULL);
	chan_plan p = chan_plan_for(g, M, C, V);
	size_t nk = slope ? 3 : 2;
	/* partial sums (nk x nchunk x C), then the channel totals (2 x C) */
	float *part = scratch_floats(g, nk * p.nchunk * C + 2 * (size_t)C, "bn_backward");
	if (!part)
		return;
	float *sums = part + nk * p.nchunk * C;
	CHAN_LAUNCH(V, chan_partial_kernel, p.grid, p.block, part, slope ? PART_BN_PRELU : PART_BN_GRAD, in, dout,
		    n->mean, n->invstd, n->gamma, n->beta, NULL, slope, 0, M, C, p.rpc, t);
	bn_grad_sums_kernel<<<warp_blocks(C), MFR_THREADS, 0, g->stream>>>(sums, dgamma, dbeta, slope ? dslope : NULL,
									   part, p.nchunk, C);
	CHAN_LAUNCH(V, bn_din_kernel, chan_grid(M, C, V), dim3(CH_TILE, ROW_THREADS), din, dout, in, *n, slope, sums, M,
		    C, training, acc, t);
	mfr_gpu_launched(g, "bn_backward");
}

void mfr_bn_backward_cuda(void *din, float *dgamma, float *dbeta, const void *dout, const void *in,
			  const float *gamma, const float *mean, const float *invstd, int M, int C, int training,
			  int acc, mfr_dtype t, mfr_gpu *g)
{
	mfr_bn_norm n = {gamma, NULL, mean, invstd};
	bn_backward(din, dgamma, dbeta, NULL, dout, in, &n, NULL, M, C, training, acc, t, g);
}

void mfr_bn_prelu_backward_cuda(void *din, float *dgamma, float *dbeta, float *dslope, const void *dout,
				const void *in, const mfr_bn_norm *n, const float *slope, int M, int C, int training,
				int acc, mfr_dtype t, mfr_gpu *g)
{
	bn_backward(din, dgamma, dbeta, dslope, dout, in, n, slope, M, C, training, acc, t, g);
}

void mfr_prelu_forward_cuda(void *out, const void *in, const float *slope, int M, int C, mfr_dtype t, mfr_gpu *g)
{
	assert(M >= 0 && C > 0);
	int V = chan_vec(C, t, out, in, NULL, NULL);
	if (M > 0)
		CHAN_LAUNCH(V, prelu_forward_kernel, chan_grid(M, C, V), dim3(CH_TILE, ROW_THREADS), out, in, slope, M, C,
			    t);
	mfr_gpu_launched(g, "prelu_forward");
}

void mfr_prelu_backward_cuda(void *din, float *dslope, const void *dout, const void *in, const float *slope, int M,
			     int C, int acc, mfr_dtype t, mfr_gpu *g)
{
	assert(M > 0 && C > 0);
	int V = chan_vec(C, t, din, dout, in, NULL);
	chan_plan p = chan_plan_for(g, M, C, V);
	float *part = scratch_floats(g, 2 * (size_t)p.nchunk * C, "prelu_backward");
	if (!part)
		return;
	CHAN_LAUNCH(V, chan_partial_kernel, p.grid, p.block, part, PART_PRELU, in, dout, NULL, NULL, NULL, NULL, din,
		    slope, acc, M, C, p.rpc, t);
	prelu_dslope_kernel<<<warp_blocks(C), MFR_THREADS, 0, g->stream>>>(dslope, part, p.nchunk, C);
	mfr_gpu_launched(g, "prelu_backward");
}

void mfr_relu_forward_cuda(void *out, const void *in, size_t n, mfr_dtype t, mfr_gpu *g)
{
	int V = flat_vec(n, t, out, in, NULL);
	FLAT_LAUNCH(V, relu_forward_kernel, n, out, in, n, t);
	mfr_gpu_launched(g, "relu_forward");
}

void mfr_relu_backward_cuda(void *din, const void *dout, const void *out, size_t n, int acc, mfr_dtype t,
			    mfr_gpu *g)
{
	int V = flat_vec(n, t, din, dout, out);
	FLAT_LAUNCH(V, relu_backward_kernel, n, din, dout, out, n, acc, t);
	mfr_gpu_launched(g, "relu_backward");
}

void mfr_sigmoid_forward_cuda(void *out, const void *in, size_t n, mfr_dtype t, mfr_gpu *g)
{
	int V = flat_vec(n, t, out, in, NULL);
	FLAT_LAUNCH(V, sigmoid_forward_kernel, n, out, in, n, t);
	mfr_gpu_launched(g, "sigmoid_forward");
}

void mfr_sigmoid_backward_cuda(void *din, const void *dout, const void *out, size_t n, mfr_dtype t, mfr_gpu *g)
{
	int V = flat_vec(n, t, din, dout, out);
	FLAT_LAUNCH(V, sigmoid_backward_kernel, n, din, dout, out, n, t);
	mfr_gpu_launched(g, "sigmoid_backward");
}

void mfr_add_forward_cuda(void *out, const void *a, const void *b, size_t n, mfr_dtype t, mfr_gpu *g)
{
	int V = flat_vec(n, t, out, a, b);
	FLAT_LAUNCH(V, add_forward_kernel, n, out, a, b, n, t);
	mfr_gpu_launched(g, "add_forward");
}

void mfr_add_backward_cuda(void *da, void *db, const void *dout, size_t n, int acc, mfr_dtype t, mfr_gpu *g)
{
	int V = flat_vec(n, t, da, db, dout);
	if (da || db)
		FLAT_LAUNCH(V, add_backward_kernel, n, da, db, dout, n, acc, t);
	mfr_gpu_launched(g, "add_backward");
}

/* One launch per input: its C[i] columns of every row. */
void mfr_concat_forward_cuda(void *out, const void *const *in, int k, const int *C, int M, mfr_dtype t, mfr_gpu *g)
{
	int Ct = 0, c0 = 0;
	assert(k > 0 && M >= 0);
	for (int i = 0; i < k; i++) {
		assert(C[i] > 0);
		Ct += C[i];
	}
	for (int i = 0; i < k; i++) {
		size_t cnt = (size_t)M * C[i];
		columns_kernel<<<mfr_grid(g, cnt, MFR_THREADS), MFR_THREADS, 0, g->stream>>>(out, Ct, c0, in[i], C[i],
											    0, M, C[i], 0, t);
		c0 += C[i];
	}
	mfr_gpu_launched(g, "concat_forward");
}

void mfr_concat_backward_cuda(void *const *din, const void *dout, int k, const int *C, int M, mfr_dtype t,
			      mfr_gpu *g)
{
	int Ct = 0, c0 = 0;
	assert(k > 0 && M >= 0);
	for (int i = 0; i < k; i++) {
		assert(C[i] > 0);
		Ct += C[i];
	}
	for (int i = 0; i < k; i++) {
		size_t cnt = (size_t)M * C[i];
		if (din[i])
			columns_kernel<<<mfr_grid(g, cnt, MFR_THREADS), MFR_THREADS, 0, g->stream>>>(
				din[i], C[i], 0, dout, Ct, c0, M, C[i], 1, t);
		c0 += C[i];
	}
	mfr_gpu_launched(g, "concat_backward");
}

/* p * 2^53 is exact (a power-of-two scaling of a double in [0,1)), so its
 * ceiling is the exact integer threshold of mfr_rng_uniform(...) >= p. */
static uint64_t keep_threshold(double p) { return (uint64_t)ceil(p * 0x1p53); }

void mfr_dropout_forward_cuda(void *out, uint8_t *mask, const void *in, double p, uint64_t seed, int N, int C,
			      int HW, mfr_dtype t, mfr_gpu *g)
{
	assert(p >= 0 && p < 1 && N >= 0 && C > 0 && HW > 0);
	size_t n = (size_t)N * HW * C;
	dropout_forward_kernel<<<mfr_grid(g, n, MFR_THREADS), MFR_THREADS, 0, g->stream>>>(
		out, mask, in, keep_threshold(p), (float)(1 / (1 - p)), seed, N, C, HW, t);
	mfr_gpu_launched(g, "dropout_forward");
}

void mfr_dropout_backward_cuda(void *din, const void *dout, const uint8_t *mask, double p, size_t n, int acc,
			       mfr_dtype t, mfr_gpu *g)
{
	assert(p >= 0 && p < 1);
	dropout_backward_kernel<<<mfr_grid(g, n, MFR_THREADS), MFR_THREADS, 0, g->stream>>>(
		din, dout, mask, (float)(1 / (1 - p)), n, acc, t);
	mfr_gpu_launched(g, "dropout_backward");
}

/* Rows per launch: at most 65535 blocks, each striding over rows beyond. */
static unsigned row_blocks(int N) { return (unsigned)(N < 1 ? 1 : N < 65535 ? N : 65535); }

void mfr_l2norm_forward_cuda(void *out, float *norm, const void *in, int N, int D, double eps, mfr_dtype t,
			     mfr_gpu *g)
{
	assert(N >= 0 && D > 0 && eps > 0);
	l2norm_forward_kernel<<<row_blocks(N), MFR_THREADS, 0, g->stream>>>(out, norm, in, N, D, (float)eps, t);
	mfr_gpu_launched(g, "l2norm_forward");
}

void mfr_l2norm_backward_cuda(void *din, const void *dout, const void *in, const float *norm, int N, int D,
			      double eps, mfr_dtype t, mfr_gpu *g)
{
	assert(N >= 0 && D > 0 && eps > 0);
	l2norm_backward_kernel<<<row_blocks(N), MFR_THREADS, 0, g->stream>>>(din, dout, in, norm, N, D, (float)eps,
									      t);
	mfr_gpu_launched(g, "l2norm_backward");
}

size_t mfr_sgd_table(size_t *table, const size_t *runs, int nruns)
{
	size_t blocks = 0;
	for (int r = 0; r < nruns; r++) {
		table[3 * r] = runs[2 * r];
		table[3 * r + 1] = runs[2 * r + 1];
		table[3 * r + 2] = blocks;
		blocks += (runs[2 * r + 1] + MFR_SGD_BLOCK - 1) / MFR_SGD_BLOCK;
	}
	return blocks;
}

void mfr_sgd_cuda(float *w, float *v, const float *grad, const size_t *table, int nruns, size_t blocks, float lr,
		  float mu, float wd, float gscale, mfr_gpu *g)
{
	assert(blocks < (size_t)1 << 31); /* gridDim.x: 8e12 parameters */
	if (nruns < 1 || blocks == 0)
		return;
	sgd_kernel<<<(unsigned)blocks, MFR_THREADS, 0, g->stream>>>(w, v, grad, table, nruns, lr, mu, wd, gscale);
	mfr_gpu_launched(g, "sgd");
}

void mfr_sumsq_cuda(float *out, int *flag, const float *x, size_t n, mfr_gpu *g)
{
	unsigned nb = mfr_grid(g, n, MFR_THREADS);
	float *part = scratch_floats(g, nb, "sumsq");
	if (!part)
		return;
	sumsq_partial_kernel<<<nb, MFR_THREADS, 0, g->stream>>>(part, flag, x, n);
	sumsq_final_kernel<<<1, 1024, 0, g->stream>>>(out, part, (int)nb);
	mfr_gpu_launched(g, "sumsq");
}

void mfr_scale_cuda(float *x, float a, size_t n, mfr_gpu *g)
{
	scale_kernel<<<mfr_grid(g, n, MFR_THREADS), MFR_THREADS, 0, g->stream>>>(x, a, n);
	mfr_gpu_launched(g, "scale");
}

} /* extern "C" */
