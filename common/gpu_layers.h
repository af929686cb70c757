/* gpu_layers.h — the layers of the CUDA backend: the same layers, argument
 * order and =/+= contracts as the reference (layers_elem.h,
 * layers_spatial.h), on device memory, with the conventions of gpu.h:
 * activations NHWC in element type t (fp32, fp16 or bf16), parameters,
 * their gradients and saved statistics float32, arithmetic float32.
 *
 * Rows: a per-channel layer sees an NHWC tensor (N,H,W,C) as M = N*H*W rows
 * of C channels; a vector layer (bn1d, linear) is the case H = W = 1.
 *
 * Launchers that only launch kernels return void and record a failed launch
 * in g (reported by mfr_gpu_check / mfr_gpu_sync). Those that call cuDNN or
 * cuBLAS, or need scratch, return 0 or -1 with e filled.
 *
 * The tests hold every launcher against its reference on random inputs in
 * fp32 (TF32 off; tolerances per layer in tests/unit/test_gpu_*.c) and in
 * fp16/bf16 (tolerances of the type's rounding). */
#ifndef MFR_GPU_LAYERS_H
#define MFR_GPU_LAYERS_H

#include <stddef.h>
#include <stdint.h>

#include "gpu.h"            /* defines: mfr_gpu, mfr_dtype */
#include "layers_spatial.h" /* defines: mfr_conv_shape, mfr_pool_shape, mfr_pad_shape */
#include "util.h"           /* defines: mfr_error */

#ifdef __cplusplus
extern "C" {
#endif

/* ---- batch norm over M rows of C channels (2d: M = N*H*W; 1d: M = N) ----
 * As mfr_batchnorm_forward_ref: training (M > 1) normalises with the batch
 * statistics, updates running_mean/running_var in place (momentum, unbiased
 * variance) and saves mean and invstd; inference uses the running statistics
 * and still writes mean, invstd. out (M,C) type t written (NULL: only the
 * statistics, see mfr_bn_apply_cuda); may not alias in. */
void mfr_bn_forward_cuda(void *out, float *mean, float *invstd, float *running_mean, float *running_var,
			 const void *in, const float *gamma, const float *beta, int M, int C, int training,
			 double eps, double momentum, mfr_dtype t, mfr_gpu *g);
/* A batch norm's normalisation, device pointers to C floats each:
 * y = gamma (x - mean) invstd + beta. */
typedef struct {
	const float *gamma, *beta, *mean, *invstd;
} mfr_bn_norm;
/* out = y = bn(in) with n's statistics; then, unless slope is NULL,
 * PReLU(y) with slope (C; zeros: ReLU) — a bn whose output only a PReLU or
 * ReLU reads, as one pass (y is not rounded to t in between). out may be in. With out
 * NULL, mfr_bn_forward_cuda computes only the statistics (training) and
 * running statistics: a consumer applies them (this, mfr_bn_add_cuda). */
void mfr_bn_apply_cuda(void *out, const void *in, const mfr_bn_norm *n, const float *slope, int M, int C,
		       mfr_dtype t, mfr_gpu *g);
/* out (M,C) = a' + b', where x' = bn(x) with its norm, or x where the norm
 * is NULL: an add of a bn's output it alone reads, without that output
 * (both NULL: a plain add); relu = 1: then ReLU (an add only a relu reads).
 * out may alias a plain a or b. */
void mfr_bn_add_cuda(void *out, const void *a, const mfr_bn_norm *na, const void *b, const mfr_bn_norm *nb,
		     int relu, int M, int C, mfr_dtype t, mfr_gpu *g);
/* As mfr_batchnorm_backward_ref: din (M,C) += (acc = 1) or = (acc = 0: din
 * is not read, so a fresh buffer needs no zeroing; the executor's first
 * writer of a gradient), dgamma, dbeta (C) +=. The other backward launchers
 * with an acc argument take it the same way. */
void mfr_bn_backward_cuda(void *din, float *dgamma, float *dbeta, const void *dout, const void *in,
			  const float *gamma, const float *mean, const float *invstd, int M, int C, int training,
			  int acc, mfr_dtype t, mfr_gpu *g);
/* The backward of PReLU(bn(in)) (mfr_bn_apply_cuda with a slope): dout is
 * the PReLU output's gradient; bn's output is recomputed from in, never
 * read. din (M,C) = or += (acc), dgamma, dbeta, dslope (C; may be NULL, for
 * a ReLU's zeros) +=: the same as
 * mfr_prelu_backward_cuda then mfr_bn_backward_cuda, with no rounding of
 * the gradient in between. */
void mfr_bn_prelu_backward_cuda(void *din, float *dgamma, float *dbeta, float *dslope, const void *dout,
				const void *in, const mfr_bn_norm *n, const float *slope, int M, int C, int training,
				int acc, mfr_dtype t, mfr_gpu *g);

/* A conv followed by an inference bn as one conv (the CPU's fold in net.c,
 * its double arithmetic): per output channel c of out, s = gamma[c] /
 * sqrt(var[c] + eps); fw (out x per, OIHW fp32) = w s; fb[c] = (bias[c] (0
 * when bias is NULL) - mean[c]) s + beta[c]. */
void mfr_bn_fold_cuda(float *fw, float *fb, const float *w, const float *bias, const float *gamma, const float *beta,
		      const float *mean, const float *var, int out, size_t per, double eps, mfr_gpu *g);

/* ---- PReLU over M rows of C channels: slope (C); out may be in ---- */
void mfr_prelu_forward_cuda(void *out, const void *in, const float *slope, int M, int C, mfr_dtype t, mfr_gpu *g);
/* din (M,C) += or = (acc); dslope (C) += sum over in <= 0 of dout*in. */
void mfr_prelu_backward_cuda(void *din, float *dslope, const void *dout, const void *in, const float *slope, int M,
			     int C, int acc, mfr_dtype t, mfr_gpu *g);

/* ---- ReLU, sigmoid, add on n values (any layout) ----
 * Backward of relu and sigmoid reads the forward's OUTPUT. out may alias in
 * (relu, sigmoid) or a/b (add). */
void mfr_relu_forward_cuda(void *out, const void *in, size_t n, mfr_dtype t, mfr_gpu *g);
void mfr_relu_backward_cuda(void *din, const void *dout, const void *out, size_t n, int acc, mfr_dtype t,
			    mfr_gpu *g);
void mfr_sigmoid_forward_cuda(void *out, const void *in, size_t n, mfr_dtype t, mfr_gpu *g);
void mfr_sigmoid_backward_cuda(void *din, const void *dout, const void *out, size_t n, mfr_dtype t, mfr_gpu *g);
void mfr_add_forward_cuda(void *out, const void *a, const void *b, size_t n, mfr_dtype t, mfr_gpu *g);
/* da += dout, db += dout (or =, acc); either may be NULL. */
void mfr_add_backward_cuda(void *da, void *db, const void *dout, size_t n, int acc, mfr_dtype t, mfr_gpu *g);

/* ---- channel concat of k inputs over M rows: in[i] (M,C[i]) -> out (M,sum C) ----
 * in and C are host arrays of device pointers and channel counts. */
void mfr_concat_forward_cuda(void *out, const void *const *in, int k, const int *C, int M, mfr_dtype t, mfr_gpu *g);
/* din[i] += its channels of dout; a NULL din[i] is skipped. */
void mfr_concat_backward_cuda(void *const *din, const void *dout, int k, const int *C, int M, mfr_dtype t,
			      mfr_gpu *g);

/* ---- global average pooling: in (N,HW,C) -> out (N,C) ---- */
void mfr_gap_forward_cuda(void *out, const void *in, int N, int C, int HW, mfr_dtype t, mfr_gpu *g);
/* din (N,HW,C) += dout (N,C) / HW. */
void mfr_gap_backward_cuda(void *din, const void *dout, int N, int C, int HW, mfr_dtype t, mfr_gpu *g);

/* ---- max and average pooling, NHWC, s from mfr_pool_shape_init ----
 * Same windows, tie rule (first maximum in scan order; NaN wins) and
 * divisor (padding excluded) as the reference. Backward of max pooling
 * re-reads in; each input gathers from the windows that contain it, so no
 * atomics and a deterministic result. */
void mfr_maxpool_forward_cuda(void *out, const void *in, const mfr_pool_shape *s, mfr_dtype t, mfr_gpu *g);
void mfr_maxpool_backward_cuda(void *din, const void *dout, const void *in, const mfr_pool_shape *s, mfr_dtype t,
			       mfr_gpu *g);
void mfr_avgpool_forward_cuda(void *out, const void *in, const mfr_pool_shape *s, mfr_dtype t, mfr_gpu *g);
void mfr_avgpool_backward_cuda(void *din, const void *dout, const mfr_pool_shape *s, mfr_dtype t, mfr_gpu *g);

/* ---- spatial zero padding (NHWC) and channel zero padding (M rows, c -> c2) ---- */
void mfr_pad_forward_cuda(void *out, const void *in, const mfr_pad_shape *s, mfr_dtype t, mfr_gpu *g);
void mfr_pad_backward_cuda(void *din, const void *dout, const mfr_pad_shape *s, mfr_dtype t, mfr_gpu *g);
void mfr_chanpad_forward_cuda(void *out, const void *in, int M, int c, int c2, mfr_dtype t, mfr_gpu *g);
void mfr_chanpad_backward_cuda(void *din, const void *dout, int M, int c, int c2, mfr_dtype t, mfr_gpu *g);

/* ---- dropout (training only) on an NHWC tensor (N,HW,C) ----
 * The same mask as mfr_dropout_forward_ref on the NCHW tensor: element
 * (n,hw,c) is kept iff draw number (n*C + c)*HW + hw of an mfr_rng seeded
 * with seed is >= p — SplitMix64 is counter-based, so each thread computes
 * its own draw. out = in/(1-p) where kept, 0 elsewhere; mask (N,HW,C) bytes
 * = 1 kept, 0 dropped (=). 0 <= p < 1. */
void mfr_dropout_forward_cuda(void *out, uint8_t *mask, const void *in, double p, uint64_t seed, int N, int C,
			      int HW, mfr_dtype t, mfr_gpu *g);
/* din += (or =, acc) dout/(1-p) where mask is 1, 0 elsewhere; n = N*HW*C. */
void mfr_dropout_backward_cuda(void *din, const void *dout, const uint8_t *mask, double p, size_t n, int acc,
			       mfr_dtype t, mfr_gpu *g);

/* ---- L2 normalisation of each row of (N,D) ----
 * As mfr_l2norm_forward_ref: out = in / max(||in||, eps), norm (N) fp32 =. */
void mfr_l2norm_forward_cuda(void *out, float *norm, const void *in, int N, int D, double eps, mfr_dtype t,
			     mfr_gpu *g);
void mfr_l2norm_backward_cuda(void *din, const void *dout, const void *in, const float *norm, int N, int D,
			      double eps, mfr_dtype t, mfr_gpu *g);

/* ---- squeeze-excitation, x NHWC (N,HW,C), Cr = C/r ----
 * As mfr_se_forward_ref; W1 (Cr,C), b1 (Cr), W2 (C,Cr), b2 (C) fp32; saves
 * pooled (N,C), hidden (N,Cr), scale (N,C), fp32 (=). */
void mfr_se_forward_cuda(void *out, float *pooled, float *hidden, float *scale, const void *x, const float *W1,
			 const float *b1, const float *W2, const float *b2, int N, int C, int Cr, int HW, mfr_dtype t,
			 mfr_gpu *g);
/* As mfr_se_backward_ref: dx (N,HW,C) +=, dW1, db1, dW2, db2 += (fp32).
 * Scratch from mfr_gpu_scratch. */
int mfr_se_backward_cuda(void *dx, float *dW1, float *db1, float *dW2, float *db2, const void *dout, const void *x,
			 const float *W1, const float *W2, const float *pooled, const float *hidden,
			 const float *scale, int N, int C, int Cr, int HW, mfr_dtype t, mfr_gpu *g, mfr_error *e);

/* ---- split attention, u NHWC (N,HW,R*C) ----
 * As mfr_splat_forward_ref, weights fp32 in the reference's layouts, save
 * (mfr_splat_save_len values, fp32, the reference's layout) written. */
int mfr_splat_forward_cuda(void *out, float *save, float *running_mean, float *running_var, const void *u,
			   const float *W1, const float *b1, const float *gamma, const float *beta, const float *W2,
			   const float *b2, int N, int C, int R, int K, int inter, int HW, int training, double eps,
			   double momentum, mfr_dtype t, mfr_gpu *g, mfr_error *e);
int mfr_splat_backward_cuda(void *du, float *dW1, float *db1, float *dgamma, float *dbeta, float *dW2, float *db2,
			    const void *dout, const void *u, const float *W1, const float *gamma, const float *W2,
			    const float *save, int N, int C, int R, int K, int inter, int HW, int training,
			    mfr_dtype t, mfr_gpu *g, mfr_error *e);

/* ---- conv2d on cuDNN, NHWC ----
 * The compute copy of a weight: wc (Co,kh,kw,Ci/groups) type t (cuDNN's
 * NHWC filter layout, KRSC) = the master w (Co,Ci/groups,kh,kw) fp32 (KCRS,
 * the reference's layout). And back: dw (KCRS, fp32) += dwc (KRSC, type t). */
void mfr_conv_weight_cuda(void *wc, const float *w, const mfr_conv_shape *s, mfr_dtype t, mfr_gpu *g);
void mfr_conv_weight_grad_cuda(float *dw, const void *dwc, const mfr_conv_shape *s, mfr_dtype t, mfr_gpu *g);

/* out (N,Ho,Wo,Co) type t = in (N,H,W,Ci) cross-correlated with wc, plus b
 * (Co, fp32) when b != NULL. The algorithm is chosen once per shape and type
 * (cuDNN's measured choice, cached) within the workspace limit; fp16/bf16
 * run on tensor cores, fp32 on TF32 only when mfr_gpu_set_tf32 is on. */
int mfr_conv_forward_cuda(void *out, const void *in, const void *wc, const float *b, const mfr_conv_shape *s,
			  mfr_dtype t, mfr_gpu *g, mfr_error *e);
/* Backward: din (N,H,W,Ci) += or = (acc; cuDNN's beta); dwc (KRSC, type t)
 * = (WRITTEN: fold it into the master gradient with
 * mfr_conv_weight_grad_cuda); db (Co, fp32) +=. Any of the three may be
 * NULL. */
int mfr_conv_backward_cuda(void *din, void *dwc, float *db, const void *dout, const void *in, const void *wc,
			   const mfr_conv_shape *s, int acc, mfr_dtype t, mfr_gpu *g, mfr_error *e);

/* ---- linear on cuBLAS: in (N,I) type t, wc (O,I) type t (the compute copy,
 * mfr_convert_cuda of the master), b (O) fp32 or NULL ----
 * out (N,O) type t = in wc^T + b. */
int mfr_linear_forward_cuda(void *out, const void *in, const void *wc, const float *b, int n, int ni, int no,
			    mfr_dtype t, mfr_gpu *g, mfr_error *e);
/* din (N,I) += (or =, acc) dout wc; dw (O,I) fp32 += dout^T in (straight
 * into the master gradient, summed in fp32); db (O) fp32 += column sums of
 * dout. Any may be NULL. */
int mfr_linear_backward_cuda(void *din, float *dw, float *db, const void *dout, const void *in, const void *wc,
			     int n, int ni, int no, int acc, mfr_dtype t, mfr_gpu *g, mfr_error *e);

/* ---- optimizer and loss-scaling helpers on fp32 blocks ----
 * SGD with momentum, PyTorch's form, in one launch on the runs of a
 * parameter block: nruns disjoint index ranges, given to mfr_sgd_table on
 * the host as pairs (offset, length), which writes table (3 nruns values:
 * per run offset, length and its first block, each run cut into blocks of
 * MFR_SGD_BLOCK indices) and returns the blocks in all; mfr_sgd_cuda takes
 * that table in device memory and the blocks. For every index i of a run,
 * with gr = grad[i]*gscale + wd*w[i]: v[i] = mu*v[i] + gr; w[i] -= lr*v[i].
 * Indices outside the runs (running statistics, frozen tensors) are not
 * touched. (gscale: 1/loss scale, 1/ranks...) */
#define MFR_SGD_BLOCK 4096
size_t mfr_sgd_table(size_t *table, const size_t *runs, int nruns);
void mfr_sgd_cuda(float *w, float *v, const float *grad, const size_t *table, int nruns, size_t blocks, float lr,
		  float mu, float wd, float gscale, mfr_gpu *g);
/* The sum of squares of x (n values) into *out (a device float, written) and,
 * when flag != NULL, *flag (device int) set to 1 when some x is not finite
 * (left alone otherwise). For clipping and the fp16 overflow check. */
void mfr_sumsq_cuda(float *out, int *flag, const float *x, size_t n, mfr_gpu *g);
/* x *= a on n floats. */
void mfr_scale_cuda(float *x, float a, size_t n, mfr_gpu *g);

#ifdef __cplusplus
}
#endif

#endif
