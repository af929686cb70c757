/* gpu_impl.h — what the .cu files of the CUDA backend share and nothing
 * else sees: the mfr_gpu structure, the check macros (one per library, each
 * naming file:line and the library's own message), launch-size helpers, and
 * device helpers for element types and reductions.
 *
 * The .cu files are plain C apart from their kernels: C headers come in
 * through extern "C" (below), no templates, no C++ library. A kernel that
 * must handle fp32, fp16 and bf16 takes the type as an int and loads and
 * stores through ld/st, whose switch is uniform across the grid. */
#ifndef MFR_GPU_IMPL_H
#define MFR_GPU_IMPL_H

#include <cublas_v2.h>
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>
#include <cudnn.h>

extern "C" {
#include "gpu.h"        /* defines: mfr_gpu API, mfr_dtype */
#include "gpu_layers.h" /* defines: the layer launchers */
#include "util.h"       /* defines: mfr_error, mfr_fail */
}

struct mfr_gpu {
	int dev, cc, sms;
	char name[256];
	cudaStream_t stream;
	cudaStream_t side;      /* second queue: uploads, gradient all-reduce (gpu.h) */
	cudaEvent_t ev_main, ev_side; /* the order between the two */
	cublasHandle_t blas;
	cudnnHandle_t dnn;
	void *blas_ws;          /* cuBLAS's workspace, ours (counted in used) */
	size_t blas_ws_bytes;
	int tf32;
	int sync_each;          /* MFR_CUDA_SYNC=1: wait after every launch */
	void *scratch;
	size_t scratch_bytes;
	size_t used, peak;      /* bytes through mfr_gpu_alloc and scratch */
	char launch_err[256];   /* the first failed launch since the last check */
	int prof;               /* span profiler (gpu.h) */
	cudaEvent_t *pev;       /* events recorded, pn of them; pmade created */
	const char **pname;     /* the span each event starts (NULL: a gap) */
	int pn, pmade;
	struct mfr_gpu_ptotal *ptot; /* totals per name */
	int ntot;
};

/* Return -1 (mfr_fail) from the enclosing function when call fails. */
#define MFR_CUDA_CHECK(e, call) do { cudaError_t st_ = (call); if (st_ != cudaSuccess) \
	return mfr_fail((e), "CUDA: %s:%d: %s: %s", __FILE__, __LINE__, #call, cudaGetErrorString(st_)); } while (0)
#define MFR_CUBLAS_CHECK(e, call) do { cublasStatus_t st_ = (call); if (st_ != CUBLAS_STATUS_SUCCESS) \
	return mfr_fail((e), "cuBLAS: %s:%d: %s: %s", __FILE__, __LINE__, #call, cublasGetStatusString(st_)); } while (0)
#define MFR_CUDNN_CHECK(e, call) do { cudnnStatus_t st_ = (call); if (st_ != CUDNN_STATUS_SUCCESS) \
	return mfr_fail((e), "cuDNN: %s:%d: %s: %s", __FILE__, __LINE__, #call, cudnnGetErrorString(st_)); } while (0)

/* After a kernel launch in a void launcher: records the first launch error
 * (reported by mfr_gpu_check) and, with MFR_CUDA_SYNC=1, waits so that an
 * asynchronous fault is pinned to this launch. */
extern "C" void mfr_gpu_launched(mfr_gpu *g, const char *what);

/* Threads per block of the simple kernels, and a grid for a grid-stride
 * loop over n items: enough blocks to fill the device, no more. */
#define MFR_THREADS 256
static inline unsigned mfr_grid(const mfr_gpu *g, size_t n, int threads)
{
	size_t b = (n + (size_t)threads - 1) / (size_t)threads, cap = (size_t)g->sms * 16;
	if (b < 1)
		b = 1;
	return (unsigned)(b < cap ? b : cap);
}

/* Grid-stride loop over [0, n). */
#define MFR_FOR(i, n) for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < (n); \
	i += (size_t)gridDim.x * blockDim.x)

/* Element i of p, of type t, as float; and the store, rounding to nearest. */
__device__ static inline float ld(const void *p, size_t i, int t)
{
	if (t == MFR_F16)
		return __half2float(((const __half *)p)[i]);
	if (t == MFR_BF16)
		return __bfloat162float(((const __nv_bfloat16 *)p)[i]);
	return ((const float *)p)[i];
}
__device__ static inline void st(void *p, size_t i, int t, float v)
{
	if (t == MFR_F16)
		((__half *)p)[i] = __float2half_rn(v);
	else if (t == MFR_BF16)
		((__nv_bfloat16 *)p)[i] = __float2bfloat16_rn(v);
	else
		((float *)p)[i] = v;
}
/* p[i] += v in type t (not atomic). */
__device__ static inline void acc(void *p, size_t i, int t, float v) { st(p, i, t, ld(p, i, t) + v); }
/* p[i] += v when a, else p[i] = v (p[i] not read): the backward launchers'
 * acc argument (gpu_layers.h). */
__device__ static inline void upd(void *p, size_t i, int t, float v, int a)
{
	if (a)
		acc(p, i, t, v);
	else
		st(p, i, t, v);
}

/* Sum of v over the warp, every lane gets it. */
__device__ static inline float warp_sum(float v)
{
	for (int o = 16; o > 0; o >>= 1)
		v += __shfl_xor_sync(0xffffffffu, v, o);
	return v;
}
__device__ static inline float warp_max(float v)
{
	for (int o = 16; o > 0; o >>= 1)
		v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
	return v;
}

/* Sum of v over the block (blockDim.x a multiple of 32, at most 1024); every
 * thread gets it. All threads of the block must call it; sh is 32 floats of
 * shared memory, reusable after the call returns. */
__device__ static inline float block_sum(float v, float *sh)
{
	int lane = threadIdx.x & 31, w = threadIdx.x >> 5, nw = blockDim.x >> 5;
	v = warp_sum(v);
	__syncthreads(); /* sh may still be read by a previous call */
	if (lane == 0)
		sh[w] = v;
	__syncthreads();
	v = lane < nw ? sh[lane] : 0.f;
	return warp_sum(v);
}
__device__ static inline float block_max(float v, float *sh)
{
	int lane = threadIdx.x & 31, w = threadIdx.x >> 5, nw = blockDim.x >> 5;
	v = warp_max(v);
	__syncthreads();
	if (lane == 0)
		sh[w] = v;
	__syncthreads();
	v = lane < nw ? sh[lane] : -INFINITY;
	return warp_max(v);
}

/* The cuDNN / cuBLAS data type of an mfr_dtype. */
static inline cudnnDataType_t mfr_cudnn_type(mfr_dtype t)
{
	return t == MFR_F16 ? CUDNN_DATA_HALF : t == MFR_BF16 ? CUDNN_DATA_BFLOAT16 : CUDNN_DATA_FLOAT;
}
static inline cudaDataType_t mfr_cuda_type(mfr_dtype t)
{
	return t == MFR_F16 ? CUDA_R_16F : t == MFR_BF16 ? CUDA_R_16BF : CUDA_R_32F;
}

/* SplitMix64's i-th draw (0-based) of a generator seeded with seed: what the
 * CPU's mfr_rng gives on its (i+1)-th mfr_rng_next, so a kernel can draw the
 * same dropout mask as the reference without running the sequence. */
__device__ static inline uint64_t splitmix_at(uint64_t seed, uint64_t i)
{
	uint64_t z = seed + (i + 1) * 0x9e3779b97f4a7c15ull;
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

#endif
