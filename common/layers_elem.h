/* layers_elem.h — reference CPU layers that work per element or per channel:
 * batch norm (2d and 1d), PReLU, ReLU, sigmoid, add, channel concat, L2
 * normalisation of rows, squeeze-excitation and split attention (ResNeSt).
 *
 * These are the oracle: plain single-threaded loops, sums accumulated in
 * double, tensors contiguous NCHW. They are not the fast path (the CPU and
 * CUDA backends are held against them) and they do not allocate: every saved
 * activation and every scratch buffer is the caller's. They are compiled
 * twice (see real.h): float as mfr_<layer>_ref in libmfr, double as
 * mfr_<layer>_ref64 for the float64 gradient checks.
 *
 * Conventions, for every layer here:
 * - arguments are outputs, then inputs and weights, then sizes and
 *   hyperparameters;
 * - forward WRITES its output and saved tensors (=);
 * - backward ACCUMULATES (+=) into every gradient it produces, input
 *   gradients included (a tensor feeding several layers sums its gradients),
 *   so the caller zeroes gradients once per step;
 * - running statistics of batch norm are state, not gradients: a training
 *   forward updates them in place, an inference forward only reads them;
 * - shape preconditions (positive sizes, divisibility) are asserted: they are
 *   programmer errors, never data errors.
 * Weights of fully connected parts are stored (out, in) row-major, as PyTorch
 * stores nn.Linear and 1x1 Conv2d weights.
 */
#ifndef MFR_LAYERS_ELEM_H
#define MFR_LAYERS_ELEM_H

#include <stddef.h>

#include "real.h" /* defines: mfr_real, MFR_REF */

/* ---- batch norm 2d (N,C,H,W) and 1d (N,C): the 1d form is HW = 1 ----
 *
 * Training (training != 0): per channel c, over the N*HW values,
 *   mean = sum x / M, var = sum (x-mean)^2 / M (biased), M = N*HW > 1,
 *   out = gamma * (x - mean) / sqrt(var + eps) + beta,
 * and the running statistics are updated in place with PyTorch's convention
 *   running_mean = (1-momentum)*running_mean + momentum*mean,
 *   running_var  = (1-momentum)*running_var  + momentum*var*M/(M-1)
 * (the running variance takes the UNBIASED batch variance). PyTorch's
 * default momentum is 0.1 and eps 1e-5; insightface's iresnet uses eps 2e-5.
 * PyTorch's momentum=None (cumulative average) is not offered.
 * Inference (training == 0): mean = running_mean, var = running_var; the
 * running statistics are read only and momentum is ignored.
 *
 * Shapes: out, in (N,C,HW); gamma, beta, running_mean, running_var, mean,
 * invstd (C). Writes out (=), and saves for backward mean (=) and
 * invstd = 1/sqrt(var+eps) (=) in both modes (in inference mode they are
 * the running mean and the running statistics' inverse std). out may not
 * alias in. */
void MFR_REF(batchnorm_forward)(mfr_real *out, mfr_real *mean, mfr_real *invstd,
				mfr_real *running_mean, mfr_real *running_var,
				const mfr_real *in, const mfr_real *gamma, const mfr_real *beta,
				int N, int C, int HW, int training, double eps, double momentum);

/* Backward of batchnorm_forward, with the same training flag as the forward
 * that saved mean and invstd. Training: the full gradient through the batch
 * statistics,
 *   din += gamma*invstd * (dout - mean(dout) - xhat*mean(dout*xhat)),
 * xhat = (in-mean)*invstd, means over the channel's N*HW values. Inference:
 * the per-channel affine map, din += gamma*invstd*dout. Both modes:
 * dgamma += sum dout*xhat, dbeta += sum dout.
 * Shapes: din, dout, in (N,C,HW); dgamma, dbeta, gamma, mean, invstd (C).
 * din, dgamma, dbeta are accumulated (+=). */
void MFR_REF(batchnorm_backward)(mfr_real *din, mfr_real *dgamma, mfr_real *dbeta,
				 const mfr_real *dout, const mfr_real *in, const mfr_real *gamma,
				 const mfr_real *mean, const mfr_real *invstd,
				 int N, int C, int HW, int training);

/* ---- PReLU, one slope per channel (insightface's nn.PReLU(C)) ----
 * out = in if in > 0, else slope[c]*in. Shapes: out, in (N,C,HW); slope (C).
 * Writes out (=); backward needs in (nothing extra is saved). */
void MFR_REF(prelu_forward)(mfr_real *out, const mfr_real *in, const mfr_real *slope, int N, int C, int HW);

/* din += dout * (in > 0 ? 1 : slope[c]); dslope[c] += sum over in <= 0 of
 * dout*in. Shapes as prelu_forward; din, dslope accumulated (+=). At in == 0
 * the slope side is taken, as PyTorch does. */
void MFR_REF(prelu_backward)(mfr_real *din, mfr_real *dslope, const mfr_real *dout, const mfr_real *in,
			     const mfr_real *slope, int N, int C, int HW);

/* ---- ReLU on n values (any shape) ----
 * out = max(in, 0), written (=). Backward reads the forward's OUTPUT
 * (out > 0 exactly when in > 0), so the forward may later run in place. */
void MFR_REF(relu_forward)(mfr_real *out, const mfr_real *in, size_t n);

/* din += dout where out > 0 (out: the forward's output). din accumulated (+=). */
void MFR_REF(relu_backward)(mfr_real *din, const mfr_real *dout, const mfr_real *out, size_t n);

/* ---- sigmoid on n values (any shape) ----
 * out = 1/(1+exp(-in)), written (=), computed without overflow for large
 * |in|. Backward reads the forward's output, which is what it saves. */
void MFR_REF(sigmoid_forward)(mfr_real *out, const mfr_real *in, size_t n);

/* din += dout*out*(1-out) (out: the forward's output). din accumulated (+=). */
void MFR_REF(sigmoid_backward)(mfr_real *din, const mfr_real *dout, const mfr_real *out, size_t n);

/* ---- add: out = a + b, n values, same shapes ----
 * out written (=); nothing saved. out may alias a or b. */
void MFR_REF(add_forward)(mfr_real *out, const mfr_real *a, const mfr_real *b, size_t n);

/* da += dout, db += dout (both accumulated). */
void MFR_REF(add_backward)(mfr_real *da, mfr_real *db, const mfr_real *dout, size_t n);

/* ---- channel concat of k inputs: in[i] (N,C[i],HW) -> out (N,sum C[i],HW) ----
 * Input i lands at channels [C[0]+..+C[i-1], ...) of each sample. out is
 * written (=); nothing saved. The input array is `const mfr_real *const *`:
 * declare it as `const mfr_real *in[k]` (C does not convert mfr_real ** to it). */
void MFR_REF(concat_forward)(mfr_real *out, const mfr_real *const *in, int k, const int *C, int N, int HW);

/* Splits dout (N,sum C[i],HW) back: din[i] += its channels (accumulated). */
void MFR_REF(concat_backward)(mfr_real *const *din, const mfr_real *dout, int k, const int *C, int N, int HW);

/* ---- L2 normalisation of each row of (N,D) ----
 * out = in / max(||in||, eps), as torch.nn.functional.normalize (which uses
 * eps = 1e-12). Writes out (=) and saves norm[n] = ||in row n|| (=, the
 * unclamped norm), N values. */
void MFR_REF(l2norm_forward)(mfr_real *out, mfr_real *norm, const mfr_real *in, int N, int D, double eps);

/* With y = in/norm: din += (dout - y*(y.dout)) / norm where norm > eps, and
 * din += dout/eps where the norm was clamped. Same eps as the forward.
 * din accumulated (+=). */
void MFR_REF(l2norm_backward)(mfr_real *din, const mfr_real *dout, const mfr_real *in, const mfr_real *norm,
			      int N, int D, double eps);

/* ---- squeeze-excitation (SE-ResNet, Hu et al. 2018), Cr = C/r hidden ----
 *   pooled = mean over HW of x               (N,C)
 *   hidden = W1 pooled + b1                  (N,Cr)  pre-activation
 *   scale  = sigmoid(W2 relu(hidden) + b2)   (N,C)
 *   out    = x * scale[n,c]                  (N,C,HW)
 * Weights W1 (Cr,C), b1 (Cr), W2 (C,Cr), b2 (C). Writes out (=) and saves
 * pooled, hidden, scale (=, caller buffers of N*C, N*Cr, N*C values). */
void MFR_REF(se_forward)(mfr_real *out, mfr_real *pooled, mfr_real *hidden, mfr_real *scale,
			 const mfr_real *x, const mfr_real *W1, const mfr_real *b1, const mfr_real *W2,
			 const mfr_real *b2, int N, int C, int Cr, int HW);

/* Backward of se_forward from its saved pooled, hidden, scale. Accumulates
 * (+=) dx (N,C,HW), dW1 (Cr,C), db1 (Cr), dW2 (C,Cr), db2 (C). work is
 * scratch of mfr_se_work_len(C, Cr) values, overwritten. */
void MFR_REF(se_backward)(mfr_real *dx, mfr_real *dW1, mfr_real *db1, mfr_real *dW2, mfr_real *db2,
			  mfr_real *work, const mfr_real *dout, const mfr_real *x, const mfr_real *W1,
			  const mfr_real *W2, const mfr_real *pooled, const mfr_real *hidden,
			  const mfr_real *scale, int N, int C, int Cr, int HW);

static inline size_t mfr_se_work_len(int C, int Cr) { return (size_t)C + (size_t)Cr; }

/* ---- split attention (ResNeSt, Zhang et al. 2020), radix R, cardinality K ----
 * Input u (N,R*C,HW): split r is channels [r*C, (r+1)*C), as torch.split of
 * the grouped conv's output. With Cg = C/K and Ig = inter/K:
 *   gap = mean over HW of sum_r split_r                          (N,C)
 *   t   = fc1(gap): 1x1 conv with K groups, W1 (inter,Cg), b1     (N,inter)
 *   z   = relu(batchnorm(t)), gamma, beta, running stats (inter), as
 *         batchnorm_forward with HW = 1 (training needs N > 1)    (N,inter)
 *   a   = fc2(z): 1x1 conv with K groups, W2 (R*C,Ig), b2 (R*C)   (N,R*C)
 *   att = rSoftMax(a): index k*R*Cg + r*Cg + j of a is radix r of channel
 *         k*Cg + j; softmax over r for R > 1, sigmoid for R == 1  (N,R*C)
 *   out[n,c] = sum_r att[n, radix r of c] * u[n, r*C + c]       (N,C,HW)
 * ResNeSt takes inter = max(C*R/4, 32); here it is a parameter (K | C,
 * K | inter). Weights are PyTorch's grouped-conv layout (out, in/groups).
 * Forward writes out (=), updates running_mean/running_var as
 * batchnorm_forward does when training, and saves into save (=) a block of
 * mfr_splat_save_len values laid out as
 *   gap (N*C) | t (N*inter) | bn mean (inter) | bn invstd (inter) |
 *   z (N*inter) | att (N*R*C). */
void MFR_REF(splat_forward)(mfr_real *out, mfr_real *save, mfr_real *running_mean, mfr_real *running_var,
			    const mfr_real *u, const mfr_real *W1, const mfr_real *b1, const mfr_real *gamma,
			    const mfr_real *beta, const mfr_real *W2, const mfr_real *b2,
			    int N, int C, int R, int K, int inter, int HW, int training, double eps,
			    double momentum);

/* Backward of splat_forward (same training flag) from its save block.
 * Accumulates (+=) du (N,R*C,HW), dW1 (inter,Cg), db1 (inter), dgamma,
 * dbeta (inter), dW2 (R*C,Ig), db2 (R*C). work is scratch of
 * mfr_splat_work_len values, overwritten. */
void MFR_REF(splat_backward)(mfr_real *du, mfr_real *dW1, mfr_real *db1, mfr_real *dgamma, mfr_real *dbeta,
			     mfr_real *dW2, mfr_real *db2, mfr_real *work, const mfr_real *dout,
			     const mfr_real *u, const mfr_real *W1, const mfr_real *gamma, const mfr_real *W2,
			     const mfr_real *save, int N, int C, int R, int K, int inter, int HW, int training);

static inline size_t mfr_splat_save_len(int N, int C, int R, int inter)
{
	return (size_t)N * C + 2 * (size_t)N * inter + 2 * (size_t)inter + (size_t)N * R * C;
}
static inline size_t mfr_splat_work_len(int N, int C, int R, int inter)
{
	return (size_t)N * R * C + 2 * (size_t)N * inter + (size_t)N * C;
}

#endif
