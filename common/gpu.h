/* gpu.h — the CUDA backend's core, callable from C: one device with its
 * streams and library handles, device memory, copies, element types, the one
 * row-major GEMM over cuBLAS, and the layer launchers of the backend
 * (declared in gpu_layers.h).
 *
 * Built without CUDA (make CUDA=no, or nvcc absent: MFR_HAVE_CUDA undefined)
 * the same functions exist in gpu.c: mfr_gpu_count says 0 and why, and
 * mfr_gpu_open fails with that reason, so no caller needs an #ifdef.
 *
 * Conventions of the backend:
 * - activations and their gradients live on the device in NHWC order
 *   ((N,H,W,C): channels innermost, what cuDNN's tensor-core convolutions
 *   want), in the element type the caller chose (mfr_dtype); a vector
 *   (N,D) is the same with H = W = 1;
 * - parameters, their gradients, optimizer state, batch-norm statistics and
 *   everything a layer saves for backward are float32 (master weights);
 *   conv and linear read a compute copy of their weights in the activation
 *   type;
 * - arithmetic inside kernels is float32 whatever the storage type; sums
 *   over many elements are carried in float32 with tree reductions;
 * - every launcher runs on g's (main) stream and returns without waiting; an
 *   asynchronous fault is reported by the next mfr_gpu_sync (or at its own
 *   launch when the environment has MFR_CUDA_SYNC=1);
 * - forward WRITES (=) outputs, backward ACCUMULATES (+=) every gradient it
 *   produces, as the reference layers do (layers_elem.h), unless a contract
 *   says otherwise.
 * Not thread-safe: one mfr_gpu per thread. */
#ifndef MFR_GPU_H
#define MFR_GPU_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "util.h" /* defines: mfr_error */

#ifdef __cplusplus
extern "C" {
#endif

/* Element types of device tensors: MFR_F32, MFR_F16, MFR_BF16 (mfr_dtype,
 * util.h). Bytes of one element: 4, 2, 2. */
size_t mfr_dtype_size(mfr_dtype t);
/* "fp32", "fp16", "bf16". */
const char *mfr_dtype_name(mfr_dtype t);
/* Parses "fp32"/"float32", "fp16"/"float16"/"half", "bf16"/"bfloat16";
 * -1 for anything else. */
int mfr_dtype_parse(const char *s);

typedef struct mfr_gpu mfr_gpu;

/* Number of usable CUDA devices; 0 when there is none, with the reason
 * ("built without CUDA", "no CUDA driver", "no CUDA device") copied into
 * why (len bytes, may be NULL). Never fails, never prints. */
int mfr_gpu_count(char *why, size_t len);

/* One line naming the CUDA driver, runtime, cuDNN, cuBLAS and NCCL this
 * process runs with (and the cuDNN and NCCL versions it was built against
 * where they differ), copied into buf (len bytes); without CUDA, "built
 * without CUDA". Never fails, never prints. */
void mfr_gpu_versions(char *buf, size_t len);

/* Opens device dev (0-based): makes it current for the calling thread,
 * creates a stream, a cuBLAS and a cuDNN handle. TF32 starts OFF (fp32
 * results comparable with the CPU reference); mfr_gpu_set_tf32 turns it on.
 * NULL with e filled when the device is absent or a library fails. */
mfr_gpu *mfr_gpu_open(int dev, mfr_error *e);
/* Waits for the stream and frees everything g owns. NULL is allowed. */
void mfr_gpu_close(mfr_gpu *g);

/* The device's name ("NVIDIA H200"), its index, compute capability
 * (major*10 + minor), total and free memory in bytes (free: at the call). */
const char *mfr_gpu_name(const mfr_gpu *g);
int mfr_gpu_device(const mfr_gpu *g);
int mfr_gpu_capability(const mfr_gpu *g);
void mfr_gpu_memory(const mfr_gpu *g, size_t *free_bytes, size_t *total_bytes);

/* on = 1 lets float32 GEMMs and convolutions use TF32 tensor cores (10-bit
 * mantissa products, ~1e-3 relative); 0 (the default) keeps full float32. */
void mfr_gpu_set_tf32(mfr_gpu *g, int on);
int mfr_gpu_tf32(const mfr_gpu *g);

/* Device memory: bytes (0 gives a valid unique pointer to free). NULL with e
 * filled ("out of GPU memory for N bytes (F free)"). Freeing NULL is fine.
 * mfr_gpu_free waits for the stream first, so work still reading p is done. */
void *mfr_gpu_alloc(mfr_gpu *g, size_t bytes, mfr_error *e);
void mfr_gpu_free(mfr_gpu *g, void *p);

/* Page-locked host memory for asynchronous copies (cudaMallocHost). */
void *mfr_gpu_host_alloc(mfr_gpu *g, size_t bytes, mfr_error *e);
void mfr_gpu_host_free(mfr_gpu *g, void *p);

/* Copies. put: host src -> device dst; get: device src -> host dst; copy:
 * device -> device. put and get are complete when they return (the stream
 * is waited for, so earlier launches are done too); copy is queued on the
 * stream. zero: queues a memset of bytes bytes to 0. -1 with e filled on a
 * CUDA error (which may come from an earlier asynchronous launch). */
int mfr_gpu_put(mfr_gpu *g, void *dst, const void *src, size_t bytes, mfr_error *e);
int mfr_gpu_get(mfr_gpu *g, void *dst, const void *src, size_t bytes, mfr_error *e);
int mfr_gpu_copy(mfr_gpu *g, void *dst, const void *src, size_t bytes, mfr_error *e);
int mfr_gpu_zero(mfr_gpu *g, void *p, size_t bytes, mfr_error *e);
/* Queued copies between page-locked host memory (mfr_gpu_host_alloc) and
 * the device on the main stream: put_async host -> device, get_async device
 * -> host. The host side must stay untouched (put) or unread (get) until
 * the stream has passed the copy (mfr_gpu_sync, mfr_gpu_get, anything that
 * waits for the stream). -1 with e filled on a CUDA error. */
int mfr_gpu_put_async(mfr_gpu *g, void *dst, const void *src, size_t bytes, mfr_error *e);
int mfr_gpu_get_async(mfr_gpu *g, void *dst, const void *src, size_t bytes, mfr_error *e);

/* The side stream: a second queue on g's device for work that overlaps the
 * main stream's (the next batch's upload; the gradient all-reduce while the
 * backward pass goes on). The two are ordered only by these calls.
 * side_wait: what is queued on the side stream from now on starts after
 * everything queued so far on the main stream. main_wait: the other way
 * round. put_side: queues a host -> device copy on the side stream; from
 * page-locked memory (mfr_gpu_host_alloc) it runs while the host goes on,
 * and src must stay untouched until the copy is done (a main_wait, then
 * anything that waits for the main stream). -1 with e filled on a CUDA
 * error. */
int mfr_gpu_side_wait(mfr_gpu *g, mfr_error *e);
int mfr_gpu_main_wait(mfr_gpu *g, mfr_error *e);
int mfr_gpu_put_side(mfr_gpu *g, void *dst, const void *src, size_t bytes, mfr_error *e);

/* Waits until everything queued on g's streams has finished. Returns 0, or
 * -1 with e filled with the first CUDA error (an asynchronous kernel fault
 * poisons the context: close g and give up). */
int mfr_gpu_sync(mfr_gpu *g, mfr_error *e);

/* The error state after launches: 0, or -1 with e filled naming what
 * ("bn_forward: invalid configuration argument"). Launchers that return void
 * leave it to the caller to call this after a sequence of them. */
int mfr_gpu_check(mfr_gpu *g, const char *what, mfr_error *e);

/* What g holds besides the caller's allocations, at most: the cuBLAS
 * workspace mfr_gpu_open allocates (32 MiB from compute capability 9.0, as
 * cuBLAS recommends, 4 MiB before; cuBLAS allocates nothing of its own
 * then), and the shared scratch: cuDNN workspaces are refused above
 * MFR_GPU_CONV_WORKSPACE_MAX, and the layers' reductions ask for a few MiB
 * (channels x partial sums). The memory planner counts their sum. */
#define MFR_GPU_BLAS_WORKSPACE_MAX ((size_t)32 << 20)
#define MFR_GPU_CONV_WORKSPACE_MAX ((size_t)256 << 20)

/* A scratch buffer of at least bytes bytes on the device, shared by every
 * launcher of g (cuDNN workspaces, reductions): valid until the next call
 * that asks for scratch. Grows, never shrinks. NULL with e filled. */
void *mfr_gpu_scratch(mfr_gpu *g, size_t bytes, mfr_error *e);

/* ---- where the time of a step goes (MFR_GPU_PROFILE=1) ----
 * Named spans on g's main stream, timed with CUDA events. mfr_gpu_span
 * ends the running span and starts one called name (a string that outlives
 * g: a literal or a static table's; NULL starts a gap that counts for
 * nothing); it does nothing unless profiling is on, which mfr_gpu_open
 * sets from the environment (MFR_GPU_PROFILE=1) and mfr_gpu_profile
 * changes. A span's time is the stream's wall time between its two events:
 * its kernels and any wait for the host in between. mfr_gpu_profile_collect
 * waits for the stream and adds every ended span to its name's total (the
 * running span carries over); call it once a step, as the events pile up
 * until then. mfr_gpu_profile_report prints the totals to f, largest first,
 * a line each ("#   12.345 ms  20.1%    53.0 calls  conv bwd": ms and calls
 * per unit, what unit names ("step", "batch"), over units, and the share), and
 * clears them (nothing when there are none). -1 with e filled on a CUDA error. */
void mfr_gpu_profile(mfr_gpu *g, int on);
int mfr_gpu_profiling(const mfr_gpu *g);
void mfr_gpu_span(mfr_gpu *g, const char *name);
int mfr_gpu_profile_collect(mfr_gpu *g, mfr_error *e);
void mfr_gpu_profile_report(mfr_gpu *g, FILE *f, double units, const char *unit);

/* Bytes of device memory g has allocated through mfr_gpu_alloc and scratch,
 * now and at most (for the memory report of the benchmarks). */
void mfr_gpu_usage(const mfr_gpu *g, size_t *now, size_t *peak);

/* ---- the one GEMM (row-major, over cuBLAS's column-major by swapping) ----
 * C (m x n, leading dimension ldc) = alpha * op(A) op(B) + beta * C, with
 * op(A) m x k (A stored m x k, lda, or k x m when ta = 1) and op(B) k x n (B
 * stored k x n, ldb, or n x k when tb = 1). A and B have element type ab, C
 * type c, which is ab or MFR_F32 (fp16/bf16 products summed into float32:
 * weight gradients straight into the master gradient). Products are summed
 * in float32 (TF32 only when ab is fp32 and mfr_gpu_set_tf32 is on); fp16
 * and bf16 use tensor cores. beta = 0 ignores C's old contents (NaN too).
 * Queued on the stream. -1 with e filled on a cuBLAS error. */
int mfr_gemm_cuda(int ta, int tb, int m, int n, int k, float alpha, const void *A, int lda, const void *B,
		  int ldb, float beta, void *C, int ldc, mfr_dtype ab, mfr_dtype c, mfr_gpu *g, mfr_error *e);

/* The same GEMM repeated over batch matrices spaced sa, sb, sc elements
 * apart (strided batched). */
int mfr_gemm_batched_cuda(int ta, int tb, int m, int n, int k, float alpha, const void *A, int lda, long long sa,
			  const void *B, int ldb, long long sb, float beta, void *C, int ldc, long long sc, int batch,
			  mfr_dtype ab, mfr_dtype c, mfr_gpu *g, mfr_error *e);

/* ---- element types and layouts ----
 * convert: dst[i] (type dt) = src[i] (type st), n values, round to nearest
 * even; a float beyond fp16's range becomes +-inf. */
void mfr_convert_cuda(void *dst, mfr_dtype dt, const void *src, mfr_dtype st, size_t n, mfr_gpu *g);

/* NCHW <-> NHWC of n images of c channels and hw = H*W positions:
 * to_nhwc: dst (n,hw,c) = src (n,c,hw); to_nchw: dst (n,c,hw) = src (n,hw,c).
 * Element types as convert. dst written (=); accumulate = 1 adds (+=) into
 * dst instead. (Flatten on the device is to_nchw: the linear layer after it
 * expects the reference's C*H*W order; its backward is to_nhwc, +=.) */
void mfr_to_nhwc_cuda(void *dst, mfr_dtype dt, const void *src, mfr_dtype st, int n, int c, int hw,
		      int accumulate, mfr_gpu *g);

/* The network's input from raw pixels: src holds n images of hw positions x
 * 3 bytes (RGB interleaved, the loader's raw output); dst (n,hw,3) of type
 * dt gets channel c = (src[channel bgr ? 2-c : c] - mean[c]) * scale[c] in
 * float32, rounded once to dt: mfr_input_normalize's values, in NHWC. */
void mfr_input_cuda(void *dst, mfr_dtype dt, const uint8_t *src, int n, int hw, const float mean[3],
		    const float scale[3], int bgr, mfr_gpu *g);
void mfr_to_nchw_cuda(void *dst, mfr_dtype dt, const void *src, mfr_dtype st, int n, int c, int hw,
		      int accumulate, mfr_gpu *g);

/* Fills n floats with value (queued). */
void mfr_fill_cuda(float *p, float value, size_t n, mfr_gpu *g);

#ifdef __cplusplus
}
#endif

#endif
