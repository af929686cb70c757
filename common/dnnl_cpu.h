/* dnnl_cpu.h — the fast CPU backend of the heavy layers: conv2d and linear,
 * forward and backward, float32, multi-threaded, on oneDNN (Intel's deep
 * learning primitives, Debian libdnnl-dev).
 *
 * Same tensors, layouts, argument order and =/+= contract as the reference
 * mfr_conv2d_*_ref and mfr_linear_*_ref (layers_spatial.h), which stay the
 * oracle tests/unit/test_dnnl_cpu.c holds these against. Differences from the
 * reference: float32 sums are accumulated in float in an order oneDNN picks
 * (results differ from the reference by ~1e-6..1e-5 relative, not bit for
 * bit), the functions take a trailing mfr_error and return 0 or -1, and they
 * use the threads mfr_cpu_set_threads gives them.
 *
 * Built without oneDNN (make DNNL=no, or the library absent: MFR_HAVE_DNNL
 * undefined) the same functions exist and call the reference layers, so no
 * caller needs an #ifdef; they then never fail.
 *
 * Inside, a convolution with much arithmetic per element (3x3 on big images
 * or batches) runs in oneDNN's blocked layouts, reordered from and to the
 * caller's NCHW on every call; the rest (1x1, small batches of 512-channel
 * weights, linear) run on the caller's layouts directly: the choice that
 * measured fastest on iresnet50 at batch 1 and 64 (figures in dnnl_cpu.c).
 * A caller that keeps activations in the blocked layout itself spares those
 * reorders: mfr_cpu_block, mfr_conv2d_forward_cpu_layout, mfr_cpu_reorder.
 * Primitives are created once per (shape, direction, thread count) and
 * cached (128 entries, least recently used evicted).
 *
 * Threads: the functions serialise on one internal lock (the primitive cache
 * and the scratch buffer are shared), so calling them from several threads is
 * safe but gains nothing; the parallelism is oneDNN's own, inside each call. */
#ifndef MFR_DNNL_CPU_H
#define MFR_DNNL_CPU_H

#include <stdint.h>

#include "layers_spatial.h" /* defines: mfr_conv_shape, mfr_conv2d_forward_ref, ... */
#include "util.h"           /* defines: mfr_error */

/* conv2d forward: out (N,Co,Ho,Wo) = (= written) in (N,Ci,H,W) cross-
 * correlated with w (Co,Ci/groups,kh,kw), plus b (Co) when b != NULL; s from
 * mfr_conv_shape_init. As mfr_conv2d_forward_ref. Returns 0, or -1 with e
 * filled when oneDNN fails (out of memory, an unsupported shape); out is then
 * unspecified. */
int mfr_conv2d_forward_cpu(float *out, const float *in, const float *w, const float *b,
	const mfr_conv_shape *s, mfr_error *e);

/* conv2d forward for inference with constant weights: as
 * mfr_conv2d_forward_cpu, but the reordered (blocked) copy of w is kept,
 * keyed by the pointer w, and reused while version is unchanged — the caller
 * promises that w's values do not change without a new version. Memory: one
 * copy of every such weight tensor, until mfr_cpu_release. */
int mfr_conv2d_forward_cpu_const(float *out, const float *in, const float *w, const float *b,
	const mfr_conv_shape *s, uint64_t version, mfr_error *e);

/* The channel block of the activation layout oneDNN's convolutions run
 * fastest in on this CPU: 16 (AVX-512), 8 (AVX2), or 0 when that is plain
 * NCHW (or without oneDNN). In the layout of block B a tensor (N,C,H,W) is
 * stored as (N, ceil(C/B), H, W, B) — oneDNN's nChw16c / nChw8c: element
 * (n,c,y,x) at ((n*ceil(C/B) + c/B)*H*W + y*W + x)*B + c%B — and the
 * channels from C up to ceil(C/B)*B are padding that must hold zeros (the
 * functions below write them as zeros and assume zeros there). Asked of
 * oneDNN once, then cached. */
int mfr_cpu_block(void);

/* conv2d forward for inference in chosen activation layouts: as
 * mfr_conv2d_forward_cpu_const (constant weights w, reordered copy kept per
 * version), but in is in layout in_block and out in out_block, each 0
 * (NCHW) or mfr_cpu_block()'s B (see there). With accumulate != 0,
 * out += (accumulated) the convolution plus bias: out holds a tensor of
 * out's shape and layout on entry; otherwise out is written (=). A 3x3
 * stride-1 convolution may run on Winograd's algorithm (dnnl_cpu.c
 * WINOGRAD): float rounding of the same order as the direct one's. Returns 0,
 * or -1 with e filled (oneDNN failed; without oneDNN, any block or
 * accumulate, which it cannot do). */
int mfr_conv2d_forward_cpu_layout(float *out, int out_block, const float *in, int in_block, const float *w,
	const float *b, const mfr_conv_shape *s, int accumulate, uint64_t version, mfr_error *e);

/* Converts activations (n,c,h,w) between layouts: out in layout out_block =
 * in in layout in_block (0 or mfr_cpu_block()'s B each; blocked padding
 * written as zeros). out and in must not overlap. Returns 0, or -1 with e
 * filled (oneDNN failed; without oneDNN, a block other than 0). */
int mfr_cpu_reorder(float *out, int out_block, const float *in, int in_block, int n, int c, int h, int w,
	mfr_error *e);

/* conv2d backward, given dout (N,Co,Ho,Wo) and the forward's in and w:
 *   din (N,Ci,H,W)           += dL/din
 *   dw  (Co,Ci/groups,kh,kw) += dL/dw
 *   db  (Co)                 += dL/db
 * each ACCUMULATED (+=), each may be NULL to skip it; as
 * mfr_conv2d_backward_ref. Returns 0, or -1 with e filled (the gradients are
 * then unspecified). */
int mfr_conv2d_backward_cpu(float *din, float *dw, float *db, const float *dout, const float *in,
	const float *w, const mfr_conv_shape *s, mfr_error *e);

/* linear forward: out (N,O) = (= written) in (N,I) @ w^T + b, w (O,I)
 * row-major, b (O) or NULL; n, ni, no >= 1. As mfr_linear_forward_ref.
 * Returns 0, or -1 with e filled. */
int mfr_linear_forward_cpu(float *out, const float *in, const float *w, const float *b, int n,
	int ni, int no, mfr_error *e);

/* linear backward, given dout (N,O):
 *   din (N,I) += dout @ w
 *   dw  (O,I) += dout^T @ in
 *   db  (O)   += column sums of dout
 * each ACCUMULATED (+=), each may be NULL. As mfr_linear_backward_ref.
 * Returns 0, or -1 with e filled. */
int mfr_linear_backward_cpu(float *din, float *dw, float *db, const float *dout, const float *in,
	const float *w, int n, int ni, int no, mfr_error *e);

/* Sets the number of threads the calls above use (OpenMP's, which oneDNN
 * runs on): n >= 1, or 0 for every core. It applies to calls made from the
 * calling thread (an OpenMP per-thread setting). Without oneDNN it does
 * nothing (the reference is single-threaded). */
void mfr_cpu_set_threads(int n);

/* The thread count the next call from this thread would use (1 without
 * oneDNN). */
int mfr_cpu_threads(void);

/* What computes these layers, for logs and benchmarks: "oneDNN 2.6.3" or
 * "reference (built without oneDNN)". A static string. */
const char *mfr_cpu_backend(void);

/* Frees the cached primitives and the scratch buffer (they are rebuilt on
 * the next call). Optional: for leak checkers and long-lived processes that
 * are done with the layers. */
void mfr_cpu_release(void);

#endif
