/* emu.h — cuda-emu: the CUDA runtime and device language as seen by a .cu
 * file compiled with g++ on a CPU (see README.md). Everything the emulated
 * headers (cuda_runtime.h, cuda_fp16.h, cuda_bf16.h, cublas_v2.h, cudnn.h,
 * nccl.h) provide comes from here or from the library headers next to it.
 *
 * Model: a launch runs on the calling thread when it is made, after the
 * deferred work queued on its stream (lazy streams: copies from page-locked
 * or device memory, memsets and NCCL collectives wait in a per-stream queue
 * until a synchronisation or later work on their stream needs them). Blocks
 * run one after another; the threads of a block are cooperative fibers,
 * switched only at __syncthreads, the warp intrinsics (__shfl*_sync,
 * __syncwarp, votes) and thread exit. threadIdx & co. are set by the
 * scheduler before it resumes a fiber. kernel<<<...>>>(...) and __shared__
 * are rewritten by rewrite.py before g++ sees the file. */
#ifndef CUDA_EMU_H
#define CUDA_EMU_H

#ifndef __cplusplus
#error "cuda-emu headers are C++ only (the .cu files are compiled with g++)"
#endif

#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <functional>
#include <tuple>
#include <type_traits>
#include <utility>

#define MFR_CUDA_EMU 1
#define CUDART_VERSION 13000
#define __CUDA_EMU__ 1

/* ---- qualifiers ---- */
#define __global__
#define __device__
#define __host__
#define __constant__
#define __managed__
#define __forceinline__ inline __attribute__((always_inline))
#define __align__(n) __attribute__((aligned(n)))
#define __launch_bounds__(...)
#define __grid_constant__
/* __shared__ is deliberately not defined: rewrite.py turns every use into
 * a static variable with per-block poisoning; one it missed fails to compile. */

/* ---- error codes and handles ---- */
typedef enum cudaError {
	cudaSuccess = 0,
	cudaErrorInvalidValue = 1,
	cudaErrorMemoryAllocation = 2,
	cudaErrorInitializationError = 3,
	cudaErrorInvalidConfiguration = 9,
	cudaErrorInvalidDevicePointer = 17,
	cudaErrorInvalidMemcpyDirection = 21,
	cudaErrorInsufficientDriver = 35,
	cudaErrorNoDevice = 100,
	cudaErrorInvalidDevice = 101,
	cudaErrorInvalidResourceHandle = 400,
	cudaErrorNotReady = 600,
	cudaErrorIllegalAddress = 700,
	cudaErrorLaunchOutOfResources = 701,
	cudaErrorLaunchFailure = 719,
	cudaErrorNotSupported = 801,
	cudaErrorUnknown = 999
} cudaError_t;

typedef struct emu_stream *cudaStream_t;
typedef struct emu_event *cudaEvent_t;

enum cudaMemcpyKind {
	cudaMemcpyHostToHost = 0,
	cudaMemcpyHostToDevice = 1,
	cudaMemcpyDeviceToHost = 2,
	cudaMemcpyDeviceToDevice = 3,
	cudaMemcpyDefault = 4
};

#define cudaStreamDefault 0x00
#define cudaStreamNonBlocking 0x01
#define cudaEventDefault 0x00
#define cudaEventBlockingSync 0x01
#define cudaEventDisableTiming 0x02
#define cudaHostAllocDefault 0x00
#define cudaHostAllocPortable 0x01
#define cudaHostAllocMapped 0x02
#define cudaStreamLegacy ((cudaStream_t)0x1)
#define cudaStreamPerThread ((cudaStream_t)0x2)

enum cudaFuncAttribute {
	cudaFuncAttributeMaxDynamicSharedMemorySize = 8,
	cudaFuncAttributePreferredSharedMemoryCarveout = 9
};

enum cudaDeviceAttr {
	cudaDevAttrMaxThreadsPerBlock = 1,
	cudaDevAttrMaxSharedMemoryPerBlock = 8,
	cudaDevAttrWarpSize = 10,
	cudaDevAttrMultiProcessorCount = 16,
	cudaDevAttrComputeCapabilityMajor = 75,
	cudaDevAttrComputeCapabilityMinor = 76,
	cudaDevAttrMaxSharedMemoryPerBlockOptin = 97
};

/* library_types.h */
typedef enum cudaDataType_t {
	CUDA_R_16F = 2,
	CUDA_C_16F = 6,
	CUDA_R_16BF = 14,
	CUDA_R_32F = 0,
	CUDA_C_32F = 4,
	CUDA_R_64F = 1,
	CUDA_C_64F = 5,
	CUDA_R_8I = 3,
	CUDA_R_8U = 8,
	CUDA_R_32I = 10
} cudaDataType;

struct uint3 {
	unsigned int x, y, z;
};
struct dim3 {
	unsigned int x, y, z;
	constexpr dim3(unsigned int vx = 1, unsigned int vy = 1, unsigned int vz = 1) : x(vx), y(vy), z(vz) {}
	constexpr dim3(uint3 v) : x(v.x), y(v.y), z(v.z) {}
	constexpr operator uint3() const { return uint3{x, y, z}; }
};

struct cudaDeviceProp {
	char name[256];
	size_t totalGlobalMem;
	size_t sharedMemPerBlock;
	int regsPerBlock;
	int warpSize;
	size_t memPitch;
	int maxThreadsPerBlock;
	int maxThreadsDim[3];
	int maxGridSize[3];
	int clockRate;
	size_t totalConstMem;
	int major;
	int minor;
	size_t textureAlignment;
	int deviceOverlap;
	int multiProcessorCount;
	int integrated;
	int canMapHostMemory;
	int concurrentKernels;
	int ECCEnabled;
	int pciBusID;
	int pciDeviceID;
	int pciDomainID;
	int asyncEngineCount;
	int unifiedAddressing;
	int memoryClockRate;
	int memoryBusWidth;
	int l2CacheSize;
	int maxThreadsPerMultiProcessor;
	size_t sharedMemPerMultiprocessor;
	int regsPerMultiprocessor;
	int managedMemory;
	int isMultiGpuBoard;
	size_t sharedMemPerBlockOptin;
	int maxBlocksPerMultiProcessor;
};

/* ---- the runtime API (emu_runtime.cpp) ---- */
extern "C" {
const char *cudaGetErrorString(cudaError_t e);
const char *cudaGetErrorName(cudaError_t e);
cudaError_t cudaGetLastError(void);
cudaError_t cudaPeekAtLastError(void);
cudaError_t cudaGetDeviceCount(int *n);
cudaError_t cudaGetDevice(int *d);
cudaError_t cudaSetDevice(int d);
cudaError_t cudaGetDeviceProperties(cudaDeviceProp *p, int d);
cudaError_t cudaDeviceGetAttribute(int *v, enum cudaDeviceAttr a, int d);
cudaError_t cudaDeviceSynchronize(void);
cudaError_t cudaDeviceReset(void);
cudaError_t cudaDriverGetVersion(int *v);
cudaError_t cudaRuntimeGetVersion(int *v);
cudaError_t cudaMemGetInfo(size_t *free_bytes, size_t *total_bytes);
cudaError_t cudaMalloc(void **p, size_t bytes);
cudaError_t cudaFree(void *p);
cudaError_t cudaMallocAsync(void **p, size_t bytes, cudaStream_t s);
cudaError_t cudaFreeAsync(void *p, cudaStream_t s);
cudaError_t cudaMallocHost(void **p, size_t bytes);
cudaError_t cudaHostAlloc(void **p, size_t bytes, unsigned int flags);
cudaError_t cudaFreeHost(void *p);
cudaError_t cudaMemcpy(void *dst, const void *src, size_t bytes, enum cudaMemcpyKind kind);
cudaError_t cudaMemcpyAsync(void *dst, const void *src, size_t bytes, enum cudaMemcpyKind kind, cudaStream_t s);
cudaError_t cudaMemset(void *p, int v, size_t bytes);
cudaError_t cudaMemsetAsync(void *p, int v, size_t bytes, cudaStream_t s);
cudaError_t cudaStreamCreate(cudaStream_t *s);
cudaError_t cudaStreamCreateWithFlags(cudaStream_t *s, unsigned int flags);
cudaError_t cudaStreamDestroy(cudaStream_t s);
cudaError_t cudaStreamSynchronize(cudaStream_t s);
cudaError_t cudaStreamQuery(cudaStream_t s);
cudaError_t cudaStreamWaitEvent(cudaStream_t s, cudaEvent_t e, unsigned int flags);
cudaError_t cudaEventCreate(cudaEvent_t *e);
cudaError_t cudaEventCreateWithFlags(cudaEvent_t *e, unsigned int flags);
cudaError_t cudaEventDestroy(cudaEvent_t e);
cudaError_t cudaEventRecord(cudaEvent_t e, cudaStream_t s);
cudaError_t cudaEventSynchronize(cudaEvent_t e);
cudaError_t cudaEventQuery(cudaEvent_t e);
cudaError_t cudaEventElapsedTime(float *ms, cudaEvent_t a, cudaEvent_t b);
cudaError_t cudaFuncSetAttribute(const void *func, enum cudaFuncAttribute attr, int value);
}

template <class T> static inline cudaError_t cudaMalloc(T **p, size_t bytes) { return cudaMalloc((void **)p, bytes); }
template <class T> static inline cudaError_t cudaMallocHost(T **p, size_t bytes) { return cudaMallocHost((void **)p, bytes); }
template <class R, class... A>
static inline cudaError_t cudaFuncSetAttribute(R (*f)(A...), enum cudaFuncAttribute attr, int value)
{
	return cudaFuncSetAttribute(reinterpret_cast<const void *>(f), attr, value);
}

/* ---- fp16 / bf16: storage types with bit-exact round-to-nearest-even ---- */
static inline float emu_h2f(uint16_t h)
{
	uint32_t sign = (uint32_t)(h & 0x8000u) << 16, ex = (h >> 10) & 31, m = h & 1023u;
	float f;
	if (ex == 0)
		f = ldexpf((float)m, -24);
	else if (ex == 31)
		f = m ? NAN : INFINITY;
	else
		f = ldexpf((float)(m | 1024u), (int)ex - 25);
	uint32_t u;
	memcpy(&u, &f, 4);
	u |= sign;
	memcpy(&f, &u, 4);
	return f;
}
static inline uint16_t emu_f2h(float f)
{
	uint32_t u;
	memcpy(&u, &f, 4);
	uint32_t sign = (u >> 16) & 0x8000u, a = u & 0x7fffffffu;
	if (a > 0x7f800000u) /* NaN: the canonical one, as the hardware */
		return (uint16_t)0x7fffu;
	if (a >= 0x477ff000u) /* rounds to >= 65520: infinity */
		return (uint16_t)(sign | 0x7c00u);
	if (a < 0x38800000u) { /* below 2^-14: subnormal in units of 2^-24 */
		float af;
		memcpy(&af, &a, 4);
		return (uint16_t)(sign | (uint32_t)lrintf(af * 16777216.0f));
	}
	uint32_t m = a + 0xfffu + ((a >> 13) & 1);
	return (uint16_t)(sign | ((m - 0x38000000u) >> 13));
}
static inline float emu_b2f(uint16_t h)
{
	uint32_t u = (uint32_t)h << 16;
	float f;
	memcpy(&f, &u, 4);
	return f;
}
static inline uint16_t emu_f2b(float f)
{
	uint32_t u;
	memcpy(&u, &f, 4);
	if ((u & 0x7fffffffu) > 0x7f800000u)
		return (uint16_t)0x7fffu;
	u += 0x7fffu + ((u >> 16) & 1);
	return (uint16_t)(u >> 16);
}

struct __half_raw {
	unsigned short x;
};
struct __half {
	unsigned short __x;
	__half() = default;
	__half(__half_raw r) : __x(r.x) {}
	__half(float f) : __x(emu_f2h(f)) {}
	__half(double f) : __x(emu_f2h((float)f)) {}
	__half(int i) : __x(emu_f2h((float)i)) {}
	operator float() const { return emu_h2f(__x); }
	operator __half_raw() const { return __half_raw{__x}; }
};
typedef __half half;
struct __nv_bfloat16_raw {
	unsigned short x;
};
struct __nv_bfloat16 {
	unsigned short __x;
	__nv_bfloat16() = default;
	__nv_bfloat16(__nv_bfloat16_raw r) : __x(r.x) {}
	__nv_bfloat16(float f) : __x(emu_f2b(f)) {}
	__nv_bfloat16(double f) : __x(emu_f2b((float)f)) {}
	__nv_bfloat16(int i) : __x(emu_f2b((float)i)) {}
	operator float() const { return emu_b2f(__x); }
	operator __nv_bfloat16_raw() const { return __nv_bfloat16_raw{__x}; }
};
typedef __nv_bfloat16 nv_bfloat16;
static_assert(sizeof(__half) == 2 && sizeof(__nv_bfloat16) == 2, "2-byte storage types");

static inline float __half2float(__half h) { return emu_h2f(h.__x); }
static inline __half __float2half_rn(float f) { return __half_raw{emu_f2h(f)}; }
static inline __half __float2half(float f) { return __half_raw{emu_f2h(f)}; }
static inline __half __double2half(double f) { return __half_raw{emu_f2h((float)f)}; }
static inline float __bfloat162float(__nv_bfloat16 h) { return emu_b2f(h.__x); }
static inline __nv_bfloat16 __float2bfloat16_rn(float f) { return __nv_bfloat16_raw{emu_f2b(f)}; }
static inline __nv_bfloat16 __float2bfloat16(float f) { return __nv_bfloat16_raw{emu_f2b(f)}; }
static inline unsigned short __half_as_ushort(__half h) { return h.__x; }
static inline __half __ushort_as_half(unsigned short u) { return __half_raw{u}; }
static inline unsigned short __bfloat16_as_ushort(__nv_bfloat16 h) { return h.__x; }
static inline __nv_bfloat16 __ushort_as_bfloat16(unsigned short u) { return __nv_bfloat16_raw{u}; }
static inline __half __hadd(__half a, __half b) { return __float2half_rn((float)a + (float)b); }
static inline __half __hsub(__half a, __half b) { return __float2half_rn((float)a - (float)b); }
static inline __half __hmul(__half a, __half b) { return __float2half_rn((float)a * (float)b); }
static inline __half __hfma(__half a, __half b, __half c)
{
	return __float2half_rn((float)fma((double)(float)a, (double)(float)b, (double)(float)c));
}
static inline bool __hisnan(__half a) { return (a.__x & 0x7fff) > 0x7c00; }
static inline bool __hisinf(__half a) { return (a.__x & 0x7fff) == 0x7c00; }

/* ---- built-in variables: set by the scheduler for the running fiber ---- */
extern thread_local uint3 threadIdx;
extern thread_local uint3 blockIdx;
extern thread_local dim3 blockDim;
extern thread_local dim3 gridDim;
static constexpr int warpSize = 32;

/* ---- synchronisation (emu_runtime.cpp): fiber switch points. The
 * defaults name the caller's line in reports. ---- */
void __syncthreads(const char *file = __builtin_FILE(), int line = __builtin_LINE());
int __syncthreads_count(int pred, const char *file = __builtin_FILE(), int line = __builtin_LINE());
int __syncthreads_and(int pred, const char *file = __builtin_FILE(), int line = __builtin_LINE());
int __syncthreads_or(int pred, const char *file = __builtin_FILE(), int line = __builtin_LINE());
void __syncwarp(unsigned mask = 0xffffffffu, const char *file = __builtin_FILE(), int line = __builtin_LINE());
unsigned __ballot_sync(unsigned mask, int pred, const char *file = __builtin_FILE(), int line = __builtin_LINE());
int __any_sync(unsigned mask, int pred, const char *file = __builtin_FILE(), int line = __builtin_LINE());
int __all_sync(unsigned mask, int pred, const char *file = __builtin_FILE(), int line = __builtin_LINE());
unsigned __activemask(void);

enum { EMU_SHFL_IDX, EMU_SHFL_UP, EMU_SHFL_DOWN, EMU_SHFL_XOR };
/* One warp-wide exchange: every lane of mask deposits v and waits for the
 * others; returns the value of the source lane of this lane. */
unsigned long long emu_shfl(int kind, unsigned mask, unsigned long long v, int arg, int width, const char *file,
			    int line);

template <class T> static inline T emu_shfl_t(int kind, unsigned mask, T var, int arg, int width, const char *f, int l)
{
	static_assert(sizeof(T) <= 8 && std::is_trivially_copyable<T>::value, "shuffle of a type wider than 8 bytes");
	unsigned long long b = 0;
	memcpy(&b, &var, sizeof var);
	b = emu_shfl(kind, mask, b, arg, width, f, l);
	memcpy(&var, &b, sizeof var);
	return var;
}
template <class T>
static inline T __shfl_sync(unsigned mask, T var, int srcLane, int width = 32, const char *f = __builtin_FILE(),
			    int l = __builtin_LINE())
{
	return emu_shfl_t(EMU_SHFL_IDX, mask, var, srcLane, width, f, l);
}
template <class T>
static inline T __shfl_up_sync(unsigned mask, T var, unsigned delta, int width = 32, const char *f = __builtin_FILE(),
			       int l = __builtin_LINE())
{
	return emu_shfl_t(EMU_SHFL_UP, mask, var, (int)delta, width, f, l);
}
template <class T>
static inline T __shfl_down_sync(unsigned mask, T var, unsigned delta, int width = 32,
				 const char *f = __builtin_FILE(), int l = __builtin_LINE())
{
	return emu_shfl_t(EMU_SHFL_DOWN, mask, var, (int)delta, width, f, l);
}
template <class T>
static inline T __shfl_xor_sync(unsigned mask, T var, int laneMask, int width = 32, const char *f = __builtin_FILE(),
				int l = __builtin_LINE())
{
	return emu_shfl_t(EMU_SHFL_XOR, mask, var, laneMask, width, f, l);
}

static inline void __threadfence(void) { __atomic_thread_fence(__ATOMIC_SEQ_CST); }
static inline void __threadfence_block(void) { __atomic_thread_fence(__ATOMIC_SEQ_CST); }
static inline void __threadfence_system(void) { __atomic_thread_fence(__ATOMIC_SEQ_CST); }
long long clock64(void);
static inline void __nanosleep(unsigned) {}
template <class T> static inline T __ldg(const T *p) { return *p; }

/* ---- atomics: fibers switch only at barriers, so plain read-modify-write
 * is atomic here ---- */
#define EMU_ATOMIC_RMW(name, T, expr) \
	static inline T name(T *p, T v) { T o = *p; *p = (expr); return o; }
#define EMU_ATOMIC_ALL(name, expr) \
	EMU_ATOMIC_RMW(name, int, expr) EMU_ATOMIC_RMW(name, unsigned int, expr) \
	EMU_ATOMIC_RMW(name, unsigned long long, expr) EMU_ATOMIC_RMW(name, long long, expr)
EMU_ATOMIC_ALL(atomicAdd, o + v)
EMU_ATOMIC_RMW(atomicAdd, float, o + v)
EMU_ATOMIC_RMW(atomicAdd, double, o + v)
EMU_ATOMIC_ALL(atomicSub, o - v)
EMU_ATOMIC_RMW(atomicSub, float, o - v)
EMU_ATOMIC_ALL(atomicMax, o > v ? o : v)
EMU_ATOMIC_ALL(atomicMin, o < v ? o : v)
EMU_ATOMIC_ALL(atomicExch, v)
EMU_ATOMIC_RMW(atomicExch, float, v)
EMU_ATOMIC_ALL(atomicAnd, o & v)
EMU_ATOMIC_ALL(atomicOr, o | v)
EMU_ATOMIC_ALL(atomicXor, o ^ v)
#undef EMU_ATOMIC_ALL
#undef EMU_ATOMIC_RMW
static inline __half atomicAdd(__half *p, __half v)
{
	__half o = *p;
	*p = __float2half_rn((float)o + (float)v);
	return o;
}
static inline __nv_bfloat16 atomicAdd(__nv_bfloat16 *p, __nv_bfloat16 v)
{
	__nv_bfloat16 o = *p;
	*p = __float2bfloat16_rn((float)o + (float)v);
	return o;
}
static inline unsigned atomicInc(unsigned *p, unsigned v)
{
	unsigned o = *p;
	*p = o >= v ? 0 : o + 1;
	return o;
}
static inline unsigned atomicDec(unsigned *p, unsigned v)
{
	unsigned o = *p;
	*p = (o == 0 || o > v) ? v : o - 1;
	return o;
}
#define EMU_CAS(T) static inline T atomicCAS(T *p, T cmp, T v) { T o = *p; if (o == cmp) *p = v; return o; }
EMU_CAS(int)
EMU_CAS(unsigned int)
EMU_CAS(unsigned long long)
EMU_CAS(unsigned short)
#undef EMU_CAS

/* ---- device math beyond <math.h> ---- */
/* glibc declares these names itself (as aliases): macros, after <math.h> */
#define __expf(x) expf(x)
#define __logf(x) logf(x)
#define __log2f(x) log2f(x)
#define __sinf(x) sinf(x)
#define __cosf(x) cosf(x)
#define __tanf(x) tanf(x)
#define __powf(a, b) powf(a, b)
#define __exp10f(x) exp10f(x)
static inline float __fdividef(float a, float b) { return a / b; }
static inline float __frcp_rn(float x) { return 1.f / x; }
static inline float __fsqrt_rn(float x) { return sqrtf(x); }
static inline float __fadd_rn(float a, float b) { return a + b; }
static inline float __fsub_rn(float a, float b) { return a - b; }
static inline float __fmul_rn(float a, float b) { return a * b; }
static inline float __fdiv_rn(float a, float b) { return a / b; }
static inline float __fmaf_rn(float a, float b, float c) { return fmaf(a, b, c); }
static inline double __dadd_rn(double a, double b) { return a + b; }
static inline double __dsub_rn(double a, double b) { return a - b; }
static inline double __dmul_rn(double a, double b) { return a * b; }
static inline double __ddiv_rn(double a, double b) { return a / b; }
static inline double __drcp_rn(double a) { return 1.0 / a; }
static inline double __dsqrt_rn(double a) { return sqrt(a); }
static inline double __fma_rn(double a, double b, double c) { return fma(a, b, c); }
static inline float __fsqrt_rz(float x) { return sqrtf(x); }
static inline float __saturatef(float x) { return x != x ? 0.f : x < 0.f ? 0.f : x > 1.f ? 1.f : x; }
static inline float rsqrtf(float x) { return 1.f / sqrtf(x); }
static inline double rsqrt(double x) { return 1.0 / sqrt(x); }
static inline float rcbrtf(float x) { return 1.f / cbrtf(x); }
static inline float normcdff(float x) { return 0.5f * erfcf(-x * (float)M_SQRT1_2); }
static inline int __float_as_int(float f) { int i; memcpy(&i, &f, 4); return i; }
static inline unsigned __float_as_uint(float f) { unsigned i; memcpy(&i, &f, 4); return i; }
static inline float __int_as_float(int i) { float f; memcpy(&f, &i, 4); return f; }
static inline float __uint_as_float(unsigned i) { float f; memcpy(&f, &i, 4); return f; }
static inline long long __double_as_longlong(double d) { long long i; memcpy(&i, &d, 8); return i; }
static inline double __longlong_as_double(long long i) { double d; memcpy(&d, &i, 8); return d; }
static inline int __float2int_rn(float f) { return (int)lrintf(f); }
static inline int __float2int_rz(float f) { return (int)f; }
static inline int __float2int_rd(float f) { return (int)floorf(f); }
static inline int __float2int_ru(float f) { return (int)ceilf(f); }
static inline float __int2float_rn(int i) { return (float)i; }
static inline int __popc(unsigned x) { return __builtin_popcount(x); }
static inline int __popcll(unsigned long long x) { return __builtin_popcountll(x); }
static inline int __clz(int x) { return x ? __builtin_clz((unsigned)x) : 32; }
static inline int __clzll(long long x) { return x ? __builtin_clzll((unsigned long long)x) : 64; }
static inline int __ffs(int x) { return __builtin_ffs(x); }
static inline int __ffsll(long long x) { return __builtin_ffsll(x); }
static inline unsigned __brev(unsigned x)
{
	unsigned r = 0;
	for (int i = 0; i < 32; i++)
		r |= ((x >> i) & 1u) << (31 - i);
	return r;
}
static inline int __mul24(int a, int b) { return a * b; }
static inline unsigned __umul24(unsigned a, unsigned b) { return a * b; }
static inline int __mulhi(int a, int b) { return (int)(((long long)a * b) >> 32); }
static inline unsigned __umulhi(unsigned a, unsigned b) { return (unsigned)(((unsigned long long)a * b) >> 32); }
/* CUDA's device min/max overloads */
static inline int min(int a, int b) { return a < b ? a : b; }
static inline int max(int a, int b) { return a > b ? a : b; }
static inline unsigned min(unsigned a, unsigned b) { return a < b ? a : b; }
static inline unsigned max(unsigned a, unsigned b) { return a > b ? a : b; }
static inline long long min(long long a, long long b) { return a < b ? a : b; }
static inline long long max(long long a, long long b) { return a > b ? a : b; }
static inline unsigned long long min(unsigned long long a, unsigned long long b) { return a < b ? a : b; }
static inline unsigned long long max(unsigned long long a, unsigned long long b) { return a > b ? a : b; }
static inline unsigned long min(unsigned long a, unsigned long b) { return a < b ? a : b; }
static inline unsigned long max(unsigned long a, unsigned long b) { return a > b ? a : b; }
static inline long min(long a, long b) { return a < b ? a : b; }
static inline long max(long a, long b) { return a > b ? a : b; }
static inline float min(float a, float b) { return fminf(a, b); }
static inline float max(float a, float b) { return fmaxf(a, b); }
static inline double min(double a, double b) { return fmin(a, b); }
static inline double max(double a, double b) { return fmax(a, b); }
static inline unsigned umin(unsigned a, unsigned b) { return a < b ? a : b; }
static inline unsigned umax(unsigned a, unsigned b) { return a > b ? a : b; }

/* ---- shared memory (rewrite.py): __shared__ T x[..]; becomes
 * static T x[..]; EMU_SHARED(x); — the first thread of each block to get
 * there fills x with the poison byte (shared memory starts as garbage);
 * extern __shared__ T x[]; becomes T *x = (T *)emu_dyn_shared(); ---- */
extern thread_local unsigned long emu_block_serial;
void emu_shared_new(void *p, size_t bytes, const char *name, const char *file, int line);
void *emu_dyn_shared(void);
#define EMU_SHARED(v) do { static unsigned long emu_sh_serial_; if (emu_sh_serial_ != emu_block_serial) { \
	emu_sh_serial_ = emu_block_serial; emu_shared_new((void *)&(v), sizeof(v), #v, __FILE__, __LINE__); } } while (0)

/* ---- kernel launches (rewrite.py): k<<<g, b, sh, s>>>(args) becomes
 * emu_launcher<decltype(k)>(emu_cfg(g, b, sh, s), k, "k", file, line)(args):
 * the arguments convert to the kernel's parameter types exactly as in a
 * call, are evaluated once, and every thread gets its own copy. ---- */
struct emu_cfg {
	dim3 grid, block;
	size_t shmem;
	cudaStream_t stream;
	emu_cfg(dim3 g, dim3 b, size_t sh = 0, cudaStream_t s = 0) : grid(g), block(b), shmem(sh), stream(s) {}
};

/* Validates a launch (sets the last error and returns nonzero when it
 * would fail on a device, checks that pointer arguments are device memory),
 * then runs body(ctx) on every thread of every block. */
int emu_launch_begin(const emu_cfg &c, const void *kernel, const char *name, const char *file, int line,
		     const void *const *ptrs, const int *ptr_index, int nptr);
void emu_launch_run(const emu_cfg &c, void (*body)(void *), void *ctx);

template <class F> struct emu_launcher;
template <class... P> struct emu_launcher<void(P...)> {
	emu_cfg c;
	void (*k)(P...);
	const char *name, *file;
	int line;
	emu_launcher(const emu_cfg &cfg, void (*kern)(P...), const char *n, const char *f, int l)
		: c(cfg), k(kern), name(n), file(f), line(l)
	{
	}
	template <size_t... I>
	static int ptr_args(const std::tuple<P...> &a, const void **ptrs, int *idx, std::index_sequence<I...>)
	{
		int n = 0;
		(void)ptrs;
		(void)idx;
		(void)a;
		((std::is_pointer<P>::value ? (ptrs[n] = (const void *)(uintptr_t)emu_as_ptr(std::get<I>(a)),
					       idx[n] = (int)I, n++)
					    : 0),
		 ...);
		return n;
	}
	template <class T> static uintptr_t emu_as_ptr(const T &v)
	{
		if constexpr (std::is_pointer<T>::value)
			return (uintptr_t)(const volatile void *)v;
		else
			return 0;
	}
	struct ctx_t {
		void (*k)(P...);
		std::tuple<P...> *a;
	};
	static void body(void *v)
	{
		ctx_t *x = (ctx_t *)v;
		std::apply(x->k, *x->a);
	}
	void operator()(P... p) const
	{
		std::tuple<P...> args(p...);
		const void *ptrs[sizeof...(P) + 1];
		int idx[sizeof...(P) + 1];
		int n = ptr_args(args, ptrs, idx, std::index_sequence_for<P...>{});
		if (emu_launch_begin(c, reinterpret_cast<const void *>(k), name, file, line, ptrs, idx, n))
			return;
		ctx_t ctx{k, &args};
		emu_launch_run(c, &body, &ctx);
	}
};

/* ---- for the emulated libraries (emu_runtime.cpp) ---- */
/* 1 when [p, p + bytes) lies in one live cudaMalloc (or cudaMallocHost)
 * allocation; otherwise reports what as an error and returns 0. */
int emu_check_device_range(const void *p, size_t bytes, const char *what);
/* Device memory is poisoned for the host (ASan) outside kernels and library
 * calls; a library call opens the ranges it touches with these. */
void emu_device_open(const void *p);
void emu_device_close_all(void);
/* EMU_STATS=1: counts of what the program asked of the device, printed to
 * stderr at exit: kernel launches, library calls that compute (cuDNN
 * convolutions and batch norms, cuBLAS GEMMs: one or more kernels each on a
 * GPU) and host waits (stream, event and device synchronisations, blocking
 * copies). */
enum { EMU_N_KERNEL, EMU_N_LIB, EMU_N_WAIT, EMU_N_KINDS };
void emu_count(int kind);
/* Reports a failed call of an emulated library (printed with the caller). */
void emu_note(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* A fatal emulation error: message, the current kernel context, stack, abort. */
[[noreturn]] void emu_fatal(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
int emu_stream_ok(cudaStream_t s);
/* Lazy streams (EMU_LAZY=0: off). emu_defer queues fn on stream s (valid,
 * per emu_stream_ok) as a deferred operation: it runs later, when s is
 * synchronised, an event recorded after it is waited for, later work on s
 * runs, or the device is synchronised; with device memory open for host
 * access. A result other than cudaSuccess is an asynchronous error: noted,
 * made the last error, and returned by the next synchronising call. what
 * names the operation in reports. key: NULL, or an ordering key (an NCCL
 * communicator): operations of one key run in the order they were queued,
 * whatever their streams. With lazy streams off, fn runs now. */
void emu_defer(cudaStream_t s, const char *what, const void *key, std::function<cudaError_t()> fn);
/* Before an operation on stream s that runs at once (a launch, a cuBLAS or
 * cuDNN call): runs everything deferred on s, and what that waits for. A
 * stream that was destroyed or never created is a fatal error. */
void emu_stream_flush(cudaStream_t s);
/* Runs every deferred operation queued with key (and what each waits for). */
void emu_defer_flush_key(const void *key);
/* The scheduling order from now on ("fwd", "rev", "rand[:seed]"; EMU_SCHED
 * sets the initial one), and its name: for the self-test. */
void emu_set_sched(const char *spec);
const char *emu_sched_name(void);

#endif
