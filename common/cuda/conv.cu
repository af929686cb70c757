/* conv.cu — conv2d and linear on the device (contracts in gpu_layers.h):
 * convolutions through cuDNN's legacy convolution API (cudnn_cnn.h) on NHWC
 * activations and KRSC filters, with the algorithm of each shape measured
 * once and cached; the linear layer on the one GEMM wrapper (mfr_gemm_cuda);
 * and the small kernels around them: the weight layout conversions, the
 * bias add and the per-channel (column) sums of bias gradients.
 *
 * Not here: fused conv+bias+activation, the cuDNN graph API, convolution
 * with dilation. An algorithm cuDNN lists and then fails to run (a
 * heuristic's prediction, a workspace that cannot be had) is left out and
 * the key planned again, with a line on stderr. When cuDNN has no
 * algorithm for a shape, or the environment has MFR_CONV_DIRECT=1, plain
 * direct-convolution kernels run instead: slow, but the same sums as the
 * reference, and a way to tell a cuDNN problem from a caller's one.
 *
 * Environment:
 *   MFR_CUDNN_DETERMINISTIC=1  only algorithms cuDNN marks deterministic
 *                              (bit-identical reruns); without it backward
 *                              still prefers a deterministic algorithm when
 *                              it is within 10% of the fastest;
 *   MFR_CONV_DIRECT=1          the direct kernels for every convolution;
 *   MFR_CONV_LOG=1             one line on stderr per plan made (shape,
 *                              type, direction, algorithm, math type,
 *                              workspace), to see what cuDNN chose. */
#include "gpu_impl.h" /* defines: struct mfr_gpu, check macros, ld/st, block_sum */

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- kernels ---- */

/* The weight layouts: per output channel oc, OIHW holds a (cig, rs)
 * matrix and KRSC its transpose (rs, cig), rs = kh kw. The kernels below
 * take block (32, 8): 32 neighbouring input channels j (reads or writes of
 * the KRSC side coalesced) of 8 output channels; each thread runs over the
 * rs positions of its (oc, j), so no index is divided. */
#define WT_X 32
#define WT_Y 8
static dim3 weight_grid(int co, int cig)
{
	int y = (co + WT_Y - 1) / WT_Y;
	return dim3((unsigned)((cig + WT_X - 1) / WT_X), (unsigned)(y < 65535 ? y : 65535));
}
#define WEIGHT_THREADS(oc, j, co, cig)                                                                    \
	for (int oc = blockIdx.y * WT_Y + threadIdx.y, j = blockIdx.x * WT_X + threadIdx.x; oc < (co) && j < (cig); \
	     oc += gridDim.y * WT_Y)

/* wc (Co,kh,kw,cig) type t = w (Co,cig,kh,kw) fp32. */
static __global__ void weight_krsc_kernel(void *wc, const float *w, int co, int cig, int rs, int t)
{
	WEIGHT_THREADS(oc, j, co, cig) {
		size_t k0 = (size_t)oc * rs * cig + j, o0 = ((size_t)oc * cig + j) * rs;
		for (int k = 0; k < rs; k++)
			st(wc, k0 + (size_t)k * cig, t, w[o0 + k]);
	}
}

/* dw (Co,cig,kh,kw) fp32 += dwc (Co,kh,kw,cig) type t; each element of dw
 * has one thread. */
static __global__ void weight_grad_kernel(float *dw, const void *dwc, int co, int cig, int rs, int t)
{
	WEIGHT_THREADS(oc, j, co, cig) {
		size_t k0 = (size_t)oc * rs * cig + j, o0 = ((size_t)oc * cig + j) * rs;
		for (int k = 0; k < rs; k++)
			dw[o0 + k] += ld(dwc, k0 + (size_t)k * cig, t);
	}
}

/* x (M,C) type t += b (C) fp32, row by row. */
static __global__ void bias_kernel(void *x, const float *b, size_t n, int C, int t)
{
	MFR_FOR(i, n)
		st(x, i, t, ld(x, i, t) + b[i % (size_t)C]);
}

/* Column sums of x (M,C) in two passes, deterministic (no atomics): a block
 * of CS_X x CS_Y threads covers CS_X channels of one chunk of rows and
 * writes part[chunk][c]; the second pass adds the chunks of a channel in
 * order. Threads along x read neighbouring channels: coalesced. */
#define CS_X 32
#define CS_Y 8
#define CS_MAX_CHUNKS 1024
static __global__ void colsum_part_kernel(float *part, const void *x, size_t M, int C, size_t chunk, int t)
{
	__shared__ float sh[CS_Y][CS_X + 1];
	int c = blockIdx.x * CS_X + threadIdx.x;
	size_t r0 = blockIdx.y * chunk, r1 = r0 + chunk < M ? r0 + chunk : M;
	float s = 0.f;
	if (c < C)
		for (size_t r = r0 + threadIdx.y; r < r1; r += CS_Y)
			s += ld(x, r * C + c, t);
	sh[threadIdx.y][threadIdx.x] = s;
	__syncthreads();
	if (threadIdx.y == 0 && c < C) {
		for (int y = 1; y < CS_Y; y++)
			s += sh[y][threadIdx.x];
		part[(size_t)blockIdx.y * C + c] = s;
	}
}
static __global__ void colsum_final_kernel(float *sum, const float *part, int chunks, int C)
{
	MFR_FOR(c, (size_t)C) {
		float s = 0.f;
		for (int k = 0; k < chunks; k++)
			s += part[(size_t)k * C + c];
		sum[c] += s;
	}
}

/* The direct convolution, NHWC, in float32: one thread per output (forward)
 * or per input element (backward data: it gathers from every output that
 * reads it, so no atomics), one block per weight (backward filter). */
static __global__ void direct_fwd_kernel(void *out, const void *in, const void *wc, mfr_conv_shape s, int t)
{
	int cig = s.ci / s.groups, cog = s.co / s.groups;
	size_t total = (size_t)s.n * s.ho * s.wo * s.co;
	MFR_FOR(i, total) {
		int oc = (int)(i % (size_t)s.co);
		size_t p = i / (size_t)s.co;
		int ox = (int)(p % (size_t)s.wo), oy = (int)(p / (size_t)s.wo % (size_t)s.ho);
		size_t n = p / (size_t)s.wo / (size_t)s.ho;
		int ic0 = oc / cog * cig;
		float sum = 0.f;
		for (int ky = 0; ky < s.kh; ky++) {
			int y = oy * s.sh - s.ph + ky;
			if (y < 0 || y >= s.h)
				continue;
			for (int kx = 0; kx < s.kw; kx++) {
				int x = ox * s.sw - s.pw + kx;
				if (x < 0 || x >= s.w)
					continue;
				size_t ib = ((n * s.h + y) * s.w + x) * s.ci + ic0;
				size_t wb = (((size_t)oc * s.kh + ky) * s.kw + kx) * cig;
				for (int j = 0; j < cig; j++)
					sum += ld(in, ib + j, t) * ld(wc, wb + j, t);
			}
		}
		st(out, i, t, sum);
	}
}

static __global__ void direct_bwd_data_kernel(void *din, const void *dout, const void *wc, mfr_conv_shape s, int t)
{
	int cig = s.ci / s.groups, cog = s.co / s.groups;
	size_t total = (size_t)s.n * s.h * s.w * s.ci;
	MFR_FOR(i, total) {
		int ic = (int)(i % (size_t)s.ci);
		size_t p = i / (size_t)s.ci;
		int x = (int)(p % (size_t)s.w), y = (int)(p / (size_t)s.w % (size_t)s.h);
		size_t n = p / (size_t)s.w / (size_t)s.h;
		int grp = ic / cig, j = ic % cig;
		float sum = 0.f;
		for (int ky = 0; ky < s.kh; ky++) {
			int ty = y + s.ph - ky; /* = oy * sh when output oy reads y through tap ky */
			if (ty < 0 || ty % s.sh || ty / s.sh >= s.ho)
				continue;
			int oy = ty / s.sh;
			for (int kx = 0; kx < s.kw; kx++) {
				int tx = x + s.pw - kx;
				if (tx < 0 || tx % s.sw || tx / s.sw >= s.wo)
					continue;
				int ox = tx / s.sw;
				size_t ob = ((n * s.ho + oy) * s.wo + ox) * s.co;
				for (int oc = grp * cog; oc < (grp + 1) * cog; oc++)
					sum += ld(dout, ob + oc, t) *
					       ld(wc, (((size_t)oc * s.kh + ky) * s.kw + kx) * cig + j, t);
			}
		}
		st(din, i, t, ld(din, i, t) + sum);
	}
}

static __global__ void direct_bwd_filter_kernel(void *dwc, const void *dout, const void *in, mfr_conv_shape s, int t)
{
	__shared__ float sh[32];
	int cig = s.ci / s.groups, cog = s.co / s.groups;
	size_t nw = (size_t)s.co * s.kh * s.kw * cig, np = (size_t)s.n * s.ho * s.wo;
	for (size_t wi = blockIdx.x; wi < nw; wi += gridDim.x) { /* uniform across the block */
		size_t r = wi / (size_t)cig;
		int j = (int)(wi % (size_t)cig), kx = (int)(r % (size_t)s.kw), ky = (int)(r / (size_t)s.kw % (size_t)s.kh);
		int oc = (int)(r / (size_t)s.kw / (size_t)s.kh), ic = oc / cog * cig + j;
		float sum = 0.f;
		for (size_t p = threadIdx.x; p < np; p += blockDim.x) {
			int ox = (int)(p % (size_t)s.wo), oy = (int)(p / (size_t)s.wo % (size_t)s.ho);
			size_t n = p / (size_t)s.wo / (size_t)s.ho;
			int y = oy * s.sh - s.ph + ky, x = ox * s.sw - s.pw + kx;
			if (y < 0 || y >= s.h || x < 0 || x >= s.w)
				continue;
			sum += ld(dout, p * s.co + oc, t) * ld(in, ((n * s.h + y) * s.w + x) * s.ci + ic, t);
		}
		sum = block_sum(sum, sh);
		if (threadIdx.x == 0)
			st(dwc, wi, t, sum);
	}
}

/* ---- host helpers ---- */

static int env_on(const char *name)
{
	const char *v = getenv(name);
	return v && v[0] == '1';
}

static void bias_add(mfr_gpu *g, void *x, const float *b, size_t M, int C, mfr_dtype t, const char *what)
{
	size_t n = M * (size_t)C;
	bias_kernel<<<mfr_grid(g, n, MFR_THREADS), MFR_THREADS, 0, g->stream>>>(x, b, n, C, t);
	mfr_gpu_launched(g, what);
}

/* sum (C) fp32 += column sums of x (M,C) type t. Scratch for the partial sums. */
static int colsum(mfr_gpu *g, float *sum, const void *x, size_t M, int C, mfr_dtype t, const char *what,
		  mfr_error *e)
{
	size_t chunks = (M + 255) / 256; /* at least 256 rows per chunk... */
	if (chunks > CS_MAX_CHUNKS)      /* ...and few enough chunks to add up in one pass */
		chunks = CS_MAX_CHUNKS;
	if (chunks < 1)
		chunks = 1;
	size_t chunk = (M + chunks - 1) / chunks;
	chunks = (M + chunk - 1) / chunk; /* no empty chunk */
	if (chunks < 1)
		chunks = 1;
	float *part = (float *)mfr_gpu_scratch(g, chunks * (size_t)C * sizeof(float), e);
	if (!part)
		return -1;
	dim3 grid((unsigned)((C + CS_X - 1) / CS_X), (unsigned)chunks), block(CS_X, CS_Y);
	colsum_part_kernel<<<grid, block, 0, g->stream>>>(part, x, M, C, chunk, t);
	mfr_gpu_launched(g, what);
	colsum_final_kernel<<<mfr_grid(g, (size_t)C, MFR_THREADS), MFR_THREADS, 0, g->stream>>>(sum, part, (int)chunks,
												   C);
	mfr_gpu_launched(g, what);
	return 0;
}

static int shape_ok(const mfr_conv_shape *s, mfr_error *e)
{
	if (!s || s->groups < 1 || s->ci % s->groups || s->co % s->groups || s->ho < 1 || s->wo < 1 || s->n < 1)
		return mfr_fail(e, "conv2d: shape not initialised (call mfr_conv_shape_init)");
	return 0;
}

/* ---- cuDNN: descriptors, algorithm plans and their cache ---- */

enum { FWD = 0, BWD_DATA = 1, BWD_FILTER = 2 };

/* What decides the algorithm: the shape, the element type, TF32 and the
 * determinism switch, on one device. All ints, compared with memcmp. */
typedef struct {
	int dev, t, tf32, det;
	int n, ci, h, w, co, kh, kw, sh, sw, ph, pw, groups;
} conv_key;

/* One direction's choice: the algorithm, the math type it runs with and
 * its workspace; direct = 1 when cuDNN offered nothing usable; refused:
 * the algorithms (bit = algorithm number) that cuDNN listed and then
 * failed to run, never picked again for this key. */
typedef struct {
	int found, direct, algo;
	cudnnMathType_t math;
	size_t ws;
	unsigned refused;
} conv_plan;

typedef struct {
	conv_key k;
	conv_plan p[3];
} conv_entry;

/* The cache is global (struct mfr_gpu stays as it is) and shared by the
 * threads that drive different devices, hence the device in the key and
 * the mutex. It holds only plain data copied in and out under the lock, so
 * replacing an entry (round robin once full) can never pull a descriptor
 * from under another thread: descriptors are made per call instead, a few
 * microseconds of host work. */
#define CACHE_SIZE 512
static conv_entry cache[CACHE_SIZE];
static int cache_used, cache_next;
static pthread_mutex_t cache_mu = PTHREAD_MUTEX_INITIALIZER;

static conv_entry *cache_find(const conv_key *k)
{
	for (int i = 0; i < cache_used; i++)
		if (!memcmp(&cache[i].k, k, sizeof *k))
			return &cache[i];
	return NULL;
}

static int plan_get(const conv_key *k, int dir, conv_plan *p)
{
	int hit = 0;
	pthread_mutex_lock(&cache_mu);
	conv_entry *c = cache_find(k);
	if (c && c->p[dir].found) {
		*p = c->p[dir];
		hit = 1;
	}
	pthread_mutex_unlock(&cache_mu);
	return hit;
}

static void plan_put(const conv_key *k, int dir, const conv_plan *p)
{
	pthread_mutex_lock(&cache_mu);
	conv_entry *c = cache_find(k);
	if (!c) {
		c = &cache[cache_used < CACHE_SIZE ? cache_used++ : cache_next++ % CACHE_SIZE];
		memset(c, 0, sizeof *c);
		c->k = *k;
	}
	c->p[dir] = *p;
	pthread_mutex_unlock(&cache_mu);
}

static void key_make(conv_key *k, const mfr_gpu *g, const mfr_conv_shape *s, mfr_dtype t)
{
	memset(k, 0, sizeof *k);
	k->dev = g->dev;
	k->t = t;
	k->tf32 = t == MFR_F32 && g->tf32;
	k->det = env_on("MFR_CUDNN_DETERMINISTIC");
	k->n = s->n, k->ci = s->ci, k->h = s->h, k->w = s->w, k->co = s->co;
	k->kh = s->kh, k->kw = s->kw, k->sh = s->sh, k->sw = s->sw, k->ph = s->ph, k->pw = s->pw;
	k->groups = s->groups;
}

/* The math type a direction is searched with: tensor cores for fp16/bf16
 * (products summed in float32: compute type FLOAT); for fp32 with TF32 on,
 * DEFAULT (which lets cuDNN use TF32 on Ampere and later); with TF32 off,
 * FMA, the only type that rules tensor cores out (DEFAULT would allow TF32
 * unless NVIDIA_TF32_OVERRIDE=0). ALLOW_CONVERSION (fp32 data run as fp16)
 * is never used. */
static cudnnMathType_t base_math(const conv_key *k)
{
	return k->t != MFR_F32 ? CUDNN_TENSOR_OP_MATH : k->tf32 ? CUDNN_DEFAULT_MATH : CUDNN_FMA_MATH;
}

typedef struct {
	cudnnTensorDescriptor_t x, y; /* input (N,Ci,H,W) and output (N,Co,Ho,Wo), NHWC */
	cudnnFilterDescriptor_t w;    /* (Co,Ci/groups,kh,kw) stored KRSC */
	cudnnConvolutionDescriptor_t c;
} conv_desc;

static void desc_free(conv_desc *d)
{
	/* cleanup: a failure to destroy has nothing left to tell */
	if (d->c)
		cudnnDestroyConvolutionDescriptor(d->c);
	if (d->w)
		cudnnDestroyFilterDescriptor(d->w);
	if (d->y)
		cudnnDestroyTensorDescriptor(d->y);
	if (d->x)
		cudnnDestroyTensorDescriptor(d->x);
	memset(d, 0, sizeof *d);
}

/* d must be zeroed; the caller frees it with desc_free whatever this returns. */
static int desc_make(conv_desc *d, const mfr_conv_shape *s, mfr_dtype t, mfr_error *e)
{
	cudnnDataType_t dt = mfr_cudnn_type(t);
	int n = 0, c = 0, h = 0, w = 0;
	MFR_CUDNN_CHECK(e, cudnnCreateTensorDescriptor(&d->x));
	MFR_CUDNN_CHECK(e, cudnnCreateTensorDescriptor(&d->y));
	MFR_CUDNN_CHECK(e, cudnnCreateFilterDescriptor(&d->w));
	MFR_CUDNN_CHECK(e, cudnnCreateConvolutionDescriptor(&d->c));
	/* 4d descriptors take the sizes in NCHW order whatever the layout */
	MFR_CUDNN_CHECK(e, cudnnSetTensor4dDescriptor(d->x, CUDNN_TENSOR_NHWC, dt, s->n, s->ci, s->h, s->w));
	MFR_CUDNN_CHECK(e, cudnnSetFilter4dDescriptor(d->w, dt, CUDNN_TENSOR_NHWC, s->co, s->ci / s->groups, s->kh,
						      s->kw));
	MFR_CUDNN_CHECK(e, cudnnSetConvolution2dDescriptor(d->c, s->ph, s->pw, s->sh, s->sw, 1, 1,
							   CUDNN_CROSS_CORRELATION, CUDNN_DATA_FLOAT));
	MFR_CUDNN_CHECK(e, cudnnSetConvolutionGroupCount(d->c, s->groups));
	MFR_CUDNN_CHECK(e, cudnnGetConvolution2dForwardOutputDim(d->c, d->x, d->w, &n, &c, &h, &w));
	if (n != s->n || c != s->co || h != s->ho || w != s->wo)
		return mfr_fail(e, "conv2d: cuDNN makes the output %dx%dx%dx%d where the shape says %dx%dx%dx%d", n, c,
				h, w, s->n, s->co, s->ho, s->wo);
	MFR_CUDNN_CHECK(e, cudnnSetTensor4dDescriptor(d->y, CUDNN_TENSOR_NHWC, dt, s->n, s->co, s->ho, s->wo));
	return 0;
}

/* One algorithm as Find or Get reports it, whatever the direction. */
typedef struct {
	int algo;
	cudnnStatus_t status;
	float time;
	size_t memory;
	cudnnDeterminism_t det;
	cudnnMathType_t math;
} cand;

#define MAX_ALGOS 16
#define COPY_CANDS(c, p, n) do { for (int i_ = 0; i_ < (n); i_++) { \
	(c)[i_].algo = (int)(p)[i_].algo; (c)[i_].status = (p)[i_].status; (c)[i_].time = (p)[i_].time; \
	(c)[i_].memory = (p)[i_].memory; (c)[i_].det = (p)[i_].determinism; (c)[i_].math = (p)[i_].mathType; } } while (0)

/* The algorithms cuDNN offers for dir, best first: measured (Find: runs each
 * once on buffers it allocates itself, so the caller's din, which backward
 * adds to, is never overwritten by a trial) or, measure = 0, from its
 * heuristics (Get_v7). The count, 0 when the call fails. */
static int list_algos(mfr_gpu *g, const conv_desc *d, int dir, int measure, cand *c)
{
	int n = 0, max = 0;
	cudnnStatus_t st_ = CUDNN_STATUS_SUCCESS;
	if (dir == FWD) {
		cudnnConvolutionFwdAlgoPerf_t p[MAX_ALGOS];
		if (cudnnGetConvolutionForwardAlgorithmMaxCount(g->dnn, &max) != CUDNN_STATUS_SUCCESS || max < 1)
			max = CUDNN_CONVOLUTION_FWD_ALGO_COUNT;
		max = max < MAX_ALGOS ? max : MAX_ALGOS;
		st_ = measure ? cudnnFindConvolutionForwardAlgorithm(g->dnn, d->x, d->w, d->c, d->y, max, &n, p)
			      : cudnnGetConvolutionForwardAlgorithm_v7(g->dnn, d->x, d->w, d->c, d->y, max, &n, p);
		if (st_ == CUDNN_STATUS_SUCCESS)
			COPY_CANDS(c, p, n < max ? n : max);
	} else if (dir == BWD_DATA) {
		cudnnConvolutionBwdDataAlgoPerf_t p[MAX_ALGOS];
		if (cudnnGetConvolutionBackwardDataAlgorithmMaxCount(g->dnn, &max) != CUDNN_STATUS_SUCCESS || max < 1)
			max = CUDNN_CONVOLUTION_BWD_DATA_ALGO_COUNT;
		max = max < MAX_ALGOS ? max : MAX_ALGOS;
		st_ = measure ? cudnnFindConvolutionBackwardDataAlgorithm(g->dnn, d->w, d->y, d->c, d->x, max, &n, p)
			      : cudnnGetConvolutionBackwardDataAlgorithm_v7(g->dnn, d->w, d->y, d->c, d->x, max, &n, p);
		if (st_ == CUDNN_STATUS_SUCCESS)
			COPY_CANDS(c, p, n < max ? n : max);
	} else {
		cudnnConvolutionBwdFilterAlgoPerf_t p[MAX_ALGOS];
		if (cudnnGetConvolutionBackwardFilterAlgorithmMaxCount(g->dnn, &max) != CUDNN_STATUS_SUCCESS || max < 1)
			max = CUDNN_CONVOLUTION_BWD_FILTER_ALGO_COUNT;
		max = max < MAX_ALGOS ? max : MAX_ALGOS;
		st_ = measure ? cudnnFindConvolutionBackwardFilterAlgorithm(g->dnn, d->x, d->y, d->c, d->w, max, &n, p)
			      : cudnnGetConvolutionBackwardFilterAlgorithm_v7(g->dnn, d->x, d->y, d->c, d->w, max, &n,
									     p);
		if (st_ == CUDNN_STATUS_SUCCESS)
			COPY_CANDS(c, p, n < max ? n : max);
	}
	if (st_ != CUDNN_STATUS_SUCCESS)
		return 0;
	return n < max ? n : max;
}

static cudnnStatus_t workspace_size(mfr_gpu *g, const conv_desc *d, int dir, int algo, size_t *ws)
{
	if (dir == FWD)
		return cudnnGetConvolutionForwardWorkspaceSize(g->dnn, d->x, d->w, d->c, d->y,
							       (cudnnConvolutionFwdAlgo_t)algo, ws);
	if (dir == BWD_DATA)
		return cudnnGetConvolutionBackwardDataWorkspaceSize(g->dnn, d->w, d->y, d->c, d->x,
								    (cudnnConvolutionBwdDataAlgo_t)algo, ws);
	return cudnnGetConvolutionBackwardFilterWorkspaceSize(g->dnn, d->x, d->y, d->c, d->w,
							      (cudnnConvolutionBwdFilterAlgo_t)algo, ws);
}

/* The most workspace an algorithm may ask for: MFR_GPU_CONV_WORKSPACE_MAX
 * (what the memory planner counts), less when the device is short of
 * memory, more when the shared scratch is larger anyway. */
static size_t workspace_limit(mfr_gpu *g)
{
	size_t f = 0, total = 0, lim = MFR_GPU_CONV_WORKSPACE_MAX;
	mfr_gpu_memory(g, &f, &total);
	if (f / 4 < lim)
		lim = f / 4;
	if (g->scratch_bytes > lim)
		lim = g->scratch_bytes;
	return lim;
}

static int refused(unsigned mask, int algo) { return algo >= 0 && algo < 32 && (mask >> algo & 1u); }

/* Picks from c (n, best first) the first usable algorithm: it succeeded,
 * is not in p->refused, fits the workspace limit, converts no fp32 data to
 * fp16, and is deterministic when k->det. In backward, a deterministic
 * algorithm within 10% of the fastest goes first. Fills p's algorithm,
 * math and workspace; 0 when none is usable. */
static int pick(mfr_gpu *g, const conv_desc *d, const conv_key *k, int dir, cand *c, int n, size_t limit,
		conv_plan *p)
{
	int order[MAX_ALGOS], m = 0;
	for (int i = 0; i < n; i++)
		if (c[i].status == CUDNN_STATUS_SUCCESS && c[i].math != CUDNN_TENSOR_OP_MATH_ALLOW_CONVERSION &&
		    c[i].memory <= limit && (!k->det || c[i].det == CUDNN_DETERMINISTIC) && !refused(p->refused, c[i].algo))
			order[m++] = i;
	if (dir != FWD && m > 1 && c[order[0]].det != CUDNN_DETERMINISTIC && c[order[0]].time > 0)
		for (int j = 1; j < m; j++)
			if (c[order[j]].det == CUDNN_DETERMINISTIC && c[order[j]].time >= 0 &&
			    c[order[j]].time <= 1.1f * c[order[0]].time) {
				int keep = order[j];
				memmove(order + 1, order, (size_t)j * sizeof order[0]);
				order[0] = keep;
				break;
			}
	for (int j = 0; j < m; j++) {
		cand *a = &c[order[j]];
		/* fp32 without TF32 runs on FMA whatever the algorithm was
		 * listed with (PyTorch does the same) */
		cudnnMathType_t math = k->t == MFR_F32 && !k->tf32 ? CUDNN_FMA_MATH : a->math;
		size_t ws = 0;
		if (cudnnSetConvolutionMathType(d->c, math) != CUDNN_STATUS_SUCCESS ||
		    workspace_size(g, d, dir, a->algo, &ws) != CUDNN_STATUS_SUCCESS || ws > limit)
			continue;
		p->algo = a->algo;
		p->math = math;
		p->ws = ws;
		return 1;
	}
	return 0;
}

/* One line on stderr for a plan made (MFR_CONV_LOG): shape, type,
 * direction, the algorithm, math and workspace; with a timed search, its
 * time and, when another algorithm measured faster (refused: workspace,
 * determinism, conversion), that one's time and workspace. */
static void plan_log(const conv_key *k, int dir, const conv_plan *p, const cand *c, int listed)
{
	static const char *const dirs[3] = {"forward", "backward data", "backward filter"};
	static const char *const maths[4] = {"default", "tensor-op", "tensor-op+conversion", "fma"};
	int mi = (int)p->math;
	fprintf(stderr, "# conv plan: dev %d %s%s%s n%d %dx%dx%d -> %d k%dx%d s%dx%d p%dx%d g%d %s: ", k->dev,
		mfr_dtype_name((mfr_dtype)k->t), k->tf32 ? " tf32" : "", k->det ? " deterministic" : "", k->n, k->ci,
		k->h, k->w, k->co, k->kh, k->kw, k->sh, k->sw, k->ph, k->pw, k->groups, dirs[dir]);
	if (p->direct) {
		fprintf(stderr, "direct kernels (cuDNN listed %d, none usable)\n", listed);
		return;
	}
	fprintf(stderr, "cuDNN algo %d, math %s, workspace %zu bytes", p->algo, mi >= 0 && mi < 4 ? maths[mi] : "?",
		p->ws);
	int mine = -1, best = -1;
	for (int i = 0; i < listed; i++)
		if (c[i].status == CUDNN_STATUS_SUCCESS && c[i].time > 0) {
			if (mine < 0 && c[i].algo == p->algo)
				mine = i;
			if (best < 0 || c[i].time < c[best].time)
				best = i;
		}
	if (mine >= 0)
		fprintf(stderr, ", %.3f ms", c[mine].time);
	if (best >= 0 && c[best].algo != p->algo)
		fprintf(stderr, "; faster, not taken: algo %d, %.3f ms, workspace %zu bytes", c[best].algo, c[best].time,
			c[best].memory);
	fputc('\n', stderr);
}

/* Makes (measures) and caches the plan for dir, never picking an
 * algorithm in the mask refused. */
static int plan_make(mfr_gpu *g, const conv_desc *d, const conv_key *k, int dir, unsigned refused, conv_plan *p,
		     mfr_error *e)
{
	cand c[MAX_ALGOS];
	memset(p, 0, sizeof *p);
	p->refused = refused;
	size_t limit = workspace_limit(g);
	MFR_CUDNN_CHECK(e, cudnnSetConvolutionMathType(d->c, base_math(k)));
	/* deterministic mode asks the heuristics, a pure function of the
	 * shape: a timed search could pick another algorithm in another
	 * process (a resumed run), and another summation order with it */
	int n = list_algos(g, d, dir, !k->det, c);
	if (!pick(g, d, k, dir, c, n, limit, p)) {
		/* Find failed or measured nothing usable (it allocates its own
		 * buffers, so a full device makes every trial fail): the
		 * heuristics need no memory. */
		MFR_CUDNN_CHECK(e, cudnnSetConvolutionMathType(d->c, base_math(k)));
		n = list_algos(g, d, dir, 0, c);
		if (!pick(g, d, k, dir, c, n, limit, p))
			p->direct = 1;
	}
	p->found = 1;
	plan_put(k, dir, p);
	if (env_on("MFR_CONV_LOG"))
		plan_log(k, dir, p, c, n);
	return 0;
}

/* The plan for dir: from the cache, or measured now (once per key). */
static int plan_for(mfr_gpu *g, const conv_desc *d, const conv_key *k, int dir, conv_plan *p, mfr_error *e)
{
	return plan_get(k, dir, p) ? 0 : plan_make(g, d, k, dir, 0, p, e);
}

/* Runs dir on cuDNN with plan p: FWD dst (out) = conv(a = in, b = wc);
 * BWD_DATA dst (din) += (acc) or = from a = dout, b = wc; BWD_FILTER dst
 * (dwc) = from a = dout, b = in. Scaling factors are float for every data
 * type but double. 0 done; 1 when the algorithm could not run (cuDNN
 * refused the call, or its workspace could not be had; why says which)
 * while the device is sound, so another algorithm may; -1 on error. */
static int run_cudnn(mfr_gpu *g, const conv_desc *d, int dir, int acc, const conv_plan *p, void *dst, const void *a,
		     const void *b, char why[96], mfr_error *e)
{
	const float one = 1.f, zero = 0.f;
	void *ws = NULL;
	MFR_CUDNN_CHECK(e, cudnnSetConvolutionMathType(d->c, p->math));
	if (p->ws > 0) {
		mfr_error se = {{0}};
		if (!(ws = mfr_gpu_scratch(g, p->ws, &se))) {
			snprintf(why, 96, "no %zu bytes of workspace", p->ws);
			return 1; /* the failed allocation cleared its error */
		}
	}
	cudnnStatus_t st;
	if (dir == FWD)
		st = cudnnConvolutionForward(g->dnn, &one, d->x, a, d->w, b, d->c, (cudnnConvolutionFwdAlgo_t)p->algo, ws,
					     p->ws, &zero, d->y, dst);
	else if (dir == BWD_DATA) /* beta 1: din +=, beta 0: din = */
		st = cudnnConvolutionBackwardData(g->dnn, &one, d->w, b, d->y, a, d->c,
						  (cudnnConvolutionBwdDataAlgo_t)p->algo, ws, p->ws, acc ? &one : &zero,
						  d->x, dst);
	else /* beta 0: dwc = */
		st = cudnnConvolutionBackwardFilter(g->dnn, &one, d->x, b, d->y, a, d->c,
						    (cudnnConvolutionBwdFilterAlgo_t)p->algo, ws, p->ws, &zero, d->w, dst);
	if (st == CUDNN_STATUS_SUCCESS)
		return 0;
	/* a launch error cuDNN left behind is part of its refusal (the
	 * launchers here take theirs at once: mfr_gpu_launched); a fault of
	 * the device is sticky and the stream reports it */
	cudaGetLastError();
	cudaError_t ce = cudaStreamQuery(g->stream);
	if (ce != cudaSuccess && ce != cudaErrorNotReady) /* no algorithm will do */
		return mfr_fail(e, "cuDNN: convolution algorithm %d: %s, after CUDA: %s", p->algo, cudnnGetErrorString(st),
				cudaGetErrorString(ce));
	/* BAD_PARAM and NOT_SUPPORTED (and their sub-codes: the thousands
	 * digit) are refusals before any work; after another failure part of
	 * din += may have been added, and a second try would add it twice */
	int before = (int)st / 1000 * 1000 == CUDNN_STATUS_BAD_PARAM || (int)st / 1000 * 1000 == CUDNN_STATUS_NOT_SUPPORTED;
	if (!before && dir == BWD_DATA && acc)
		return mfr_fail(e, "cuDNN: convolution backward data, algorithm %d: %s", p->algo, cudnnGetErrorString(st));
	snprintf(why, 96, "%s", cudnnGetErrorString(st));
	return 1;
}

/* dir on cuDNN (arguments as run_cudnn): 0 done, 1 when the direct kernels
 * must do it (cuDNN has no algorithm, or MFR_CONV_DIRECT=1), -1 on error. */
static int conv_cudnn(mfr_gpu *g, int dir, int acc, void *dst, const void *a, const void *b, const mfr_conv_shape *s,
		      mfr_dtype t, mfr_error *e)
{
	conv_desc d;
	conv_key k;
	conv_plan p;
	if (env_on("MFR_CONV_DIRECT"))
		return 1;
	memset(&d, 0, sizeof d);
	key_make(&k, g, s, t);
	int rc = desc_make(&d, s, t, e);
	if (rc == 0)
		rc = plan_for(g, &d, &k, dir, &p, e);
	/* an algorithm cuDNN listed (heuristics are predictions) and then
	 * would not run: planned again without it, down to the direct kernels */
	char why[96];
	while (rc == 0 && !p.direct && (rc = run_cudnn(g, &d, dir, acc, &p, dst, a, b, why, e)) == 1) {
		static const char *const dirs[3] = {"forward", "backward data", "backward filter"};
		int algo = p.algo;
		rc = plan_make(g, &d, &k, dir, p.refused | (algo >= 0 && algo < 32 ? 1u << algo : ~0u), &p, e);
		char now[40] = "the direct kernels (slow)";
		if (!p.direct)
			snprintf(now, sizeof now, "algorithm %d", p.algo);
		if (rc == 0)
			fprintf(stderr, "mfr: conv n%d %dx%dx%d -> %d k%dx%d s%dx%d g%d %s %s: cuDNN algorithm %d failed to run "
				"(%s); now %s\n", s->n, s->ci, s->h, s->w, s->co, s->kh, s->kw, s->sh, s->sw, s->groups,
				mfr_dtype_name(t), dirs[dir], algo, why, now);
	}
	if (rc == 0 && p.direct)
		rc = 1;
	desc_free(&d);
	return rc;
}

/* ---- the launchers ---- */

extern "C" {

void mfr_conv_weight_cuda(void *wc, const float *w, const mfr_conv_shape *s, mfr_dtype t, mfr_gpu *g)
{
	int cig = s->ci / s->groups;
	weight_krsc_kernel<<<weight_grid(s->co, cig), dim3(WT_X, WT_Y), 0, g->stream>>>(wc, w, s->co, cig,
											 s->kh * s->kw, t);
	mfr_gpu_launched(g, "conv_weight");
}

void mfr_conv_weight_grad_cuda(float *dw, const void *dwc, const mfr_conv_shape *s, mfr_dtype t, mfr_gpu *g)
{
	int cig = s->ci / s->groups;
	weight_grad_kernel<<<weight_grid(s->co, cig), dim3(WT_X, WT_Y), 0, g->stream>>>(dw, dwc, s->co, cig,
											 s->kh * s->kw, t);
	mfr_gpu_launched(g, "conv_weight_grad");
}

int mfr_conv_forward_cuda(void *out, const void *in, const void *wc, const float *b, const mfr_conv_shape *s,
			  mfr_dtype t, mfr_gpu *g, mfr_error *e)
{
	if (shape_ok(s, e) < 0)
		return -1;
	int rc = conv_cudnn(g, FWD, 0, out, in, wc, s, t, e);
	if (rc < 0)
		return -1;
	if (rc == 1) {
		size_t n = (size_t)s->n * s->ho * s->wo * s->co;
		direct_fwd_kernel<<<mfr_grid(g, n, MFR_THREADS), MFR_THREADS, 0, g->stream>>>(out, in, wc, *s, t);
		mfr_gpu_launched(g, "conv_forward (direct)");
	}
	if (b)
		bias_add(g, out, b, (size_t)s->n * s->ho * s->wo, s->co, t, "conv_forward bias");
	return 0;
}

int mfr_conv_backward_cuda(void *din, void *dwc, float *db, const void *dout, const void *in, const void *wc,
			   const mfr_conv_shape *s, int acc, mfr_dtype t, mfr_gpu *g, mfr_error *e)
{
	if (shape_ok(s, e) < 0)
		return -1;
	if (db && colsum(g, db, dout, (size_t)s->n * s->ho * s->wo, s->co, t, "conv_backward bias", e) < 0)
		return -1;
	if (din) {
		int rc = conv_cudnn(g, BWD_DATA, acc, din, dout, wc, s, t, e);
		if (rc < 0)
			return -1;
		if (rc == 1) {
			size_t n = (size_t)s->n * s->h * s->w * s->ci;
			if (!acc && mfr_gpu_zero(g, din, n * mfr_dtype_size(t), e) < 0) /* the direct kernel adds */
				return -1;
			direct_bwd_data_kernel<<<mfr_grid(g, n, MFR_THREADS), MFR_THREADS, 0, g->stream>>>(din, dout, wc,
													  *s, t);
			mfr_gpu_launched(g, "conv_backward data (direct)");
		}
	}
	if (dwc) {
		int rc = conv_cudnn(g, BWD_FILTER, 0, dwc, dout, in, s, t, e);
		if (rc < 0)
			return -1;
		if (rc == 1) {
			size_t nw = (size_t)s->co * s->kh * s->kw * (s->ci / s->groups);
			direct_bwd_filter_kernel<<<mfr_grid(g, nw, 1), MFR_THREADS, 0, g->stream>>>(dwc, dout, in, *s,
												    t);
			mfr_gpu_launched(g, "conv_backward filter (direct)");
		}
	}
	return 0;
}

int mfr_linear_forward_cuda(void *out, const void *in, const void *wc, const float *b, int n, int ni, int no,
			    mfr_dtype t, mfr_gpu *g, mfr_error *e)
{
	if (n < 1 || ni < 1 || no < 1)
		return mfr_fail(e, "linear: sizes must be >= 1: got n %d, in %d, out %d", n, ni, no);
	/* out (n,no) = in (n,ni) wc^T, wc stored (no,ni) */
	if (mfr_gemm_cuda(0, 1, n, no, ni, 1.f, in, ni, wc, ni, 0.f, out, no, t, t, g, e) < 0)
		return -1;
	if (b)
		bias_add(g, out, b, (size_t)n, no, t, "linear_forward bias");
	return 0;
}

int mfr_linear_backward_cuda(void *din, float *dw, float *db, const void *dout, const void *in, const void *wc,
			     int n, int ni, int no, int acc, mfr_dtype t, mfr_gpu *g, mfr_error *e)
{
	if (n < 1 || ni < 1 || no < 1)
		return mfr_fail(e, "linear: sizes must be >= 1: got n %d, in %d, out %d", n, ni, no);
	/* din (n,ni) += (or =) dout (n,no) wc (no,ni) */
	if (din && mfr_gemm_cuda(0, 0, n, ni, no, 1.f, dout, no, wc, ni, acc ? 1.f : 0.f, din, ni, t, t, g, e) < 0)
		return -1;
	/* dw (no,ni) fp32 += dout^T (dout stored (n,no)) in (n,ni) */
	if (dw && mfr_gemm_cuda(1, 0, no, ni, n, 1.f, dout, no, in, ni, 1.f, dw, ni, t, MFR_F32, g, e) < 0)
		return -1;
	if (db && colsum(g, db, dout, (size_t)n, no, t, "linear_backward bias", e) < 0)
		return -1;
	return 0;
}

} /* extern "C" */
