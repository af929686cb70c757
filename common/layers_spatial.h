/* layers_spatial.h — the reference (oracle) CPU layers that mix neighbouring
 * elements or whole rows: conv2d, max and average pooling, global average
 * pooling, spatial and channel zero-padding, linear and dropout.
 *
 * These are plain single-threaded loops written to be obviously right; they
 * are the oracle the fast CPU backend and the CUDA backend are tested against,
 * not something to train a full network with. Element-wise and normalisation
 * layers live in layers_elem.h. Flatten has no function: an (N,C,H,W) tensor
 * in contiguous NCHW memory already is an (N,C*H*W) matrix.
 *
 * Every function is compiled twice (see real.h): mfr_<layer>_ref in float
 * (libmfr) and mfr_<layer>_ref64 in double (the gradient-check tests). The
 * shape structs and their constructors do not depend on mfr_real and exist
 * once, in libmfr.
 *
 * Conventions shared by all layers here:
 *  - tensors are contiguous, row-major, batch first: (N,C,H,W) is NCHW;
 *  - argument order: outputs, then inputs and weights, then sizes;
 *  - forward WRITES its output (=);
 *  - backward ACCUMULATES (+=) into every gradient it produces, input
 *    gradients included (a tensor in a DAG may feed several layers, so the
 *    caller zeroes gradients once and every consumer adds its share);
 *  - a NULL gradient pointer skips that gradient;
 *  - reductions (dot products, sums) are carried in double even in the float
 *    build, so the float reference is as close to exact as it can cheaply be;
 *  - sizes are trusted: shape structs come from their constructors, which
 *    reject bad sizes; plain size arguments are checked by assert only
 *    (a wrong size there is a programmer error, not bad input). */
#ifndef MFR_LAYERS_SPATIAL_H
#define MFR_LAYERS_SPATIAL_H

#include <stddef.h>
#include <stdint.h>

#include "real.h" /* defines: mfr_real, MFR_REF */
#include "util.h" /* defines: mfr_error */

/* ---- shapes (independent of mfr_real) ---- */

/* Sizes of a 2-D convolution. The caller sets the fields up to groups (a
 * designated initializer reads best) and calls mfr_conv_shape_init, which
 * validates them and fills ho and wo. */
typedef struct {
	int n, ci, h, w; /* input (N,Ci,H,W) */
	int co;          /* output channels */
	int kh, kw;      /* kernel height and width: 1xk and kx1 are fine */
	int sh, sw;      /* stride per axis, >= 1 */
	int ph, pw;      /* zero padding on each side per axis, >= 0 */
	int groups;      /* >= 1, divides ci and co; groups == ci is depthwise */
	int ho, wo;      /* set by init: (H + 2ph - kh)/sh + 1, likewise wo */
} mfr_conv_shape;

/* Validates s (every size >= 1, padding >= 0, channels divisible by groups,
 * kernel no larger than the padded input, no size 2^28 or over, no tensor
 * over 2^40 elements) and sets s->ho, s->wo. Returns 0, or -1 with e filled ("conv2d: ..."). Padding
 * wider than the kernel is allowed (the border outputs then see only zeros,
 * plus the bias). */
int mfr_conv_shape_init(mfr_conv_shape *s, mfr_error *e);

/* Sizes of a max or average pooling, same meaning as in mfr_conv_shape. */
typedef struct {
	int n, c, h, w;
	int kh, kw;
	int sh, sw;
	int ph, pw;
	int ho, wo; /* set by init */
} mfr_pool_shape;

/* Validates s as mfr_conv_shape_init does and also requires ph < kh and
 * pw < kw, which is exactly what guarantees every window holds at least one
 * real (non-padding) element (so a max exists and an average has a non-zero
 * divisor). Sets ho, wo. Returns 0, or -1 with e filled ("pool: ..."). */
int mfr_pool_shape_init(mfr_pool_shape *s, mfr_error *e);

/* Sizes of a spatial zero padding: (N,C,H,W) -> (N,C,top+H+bottom,left+W+right). */
typedef struct {
	int n, c, h, w;
	int top, bottom, left, right; /* >= 0 */
	int ho, wo;                   /* set by init */
} mfr_pad_shape;

/* Validates s (sizes >= 1, paddings >= 0, no size 2^28 or over, no tensor
 * over 2^40 elements) and
 * sets ho, wo. Returns 0, or -1 with e filled ("pad: ..."). */
int mfr_pad_shape_init(mfr_pad_shape *s, mfr_error *e);

/* ---- layers (float: mfr_*_ref, double: mfr_*_ref64) ---- */

/* conv2d: out (N,Co,Ho,Wo) = (= written) cross-correlation of in (N,Ci,H,W)
 * with w (Co, Ci/groups, kh, kw), zero padded, plus b (Co) when b != NULL.
 * Output channel oc of group g = oc / (Co/groups) sees input channels
 * g*(Ci/groups) .. (g+1)*(Ci/groups)-1. Saves nothing; backward needs in and w. */
void MFR_REF(conv2d_forward)(mfr_real *out, const mfr_real *in, const mfr_real *w,
	const mfr_real *b, const mfr_conv_shape *s);

/* conv2d backward, given dout (N,Co,Ho,Wo) and the forward's in and w:
 *   din (N,Ci,H,W)          += dL/din
 *   dw  (Co,Ci/groups,kh,kw) += dL/dw
 *   db  (Co)                 += dL/db
 * each may be NULL to skip it. */
void MFR_REF(conv2d_backward)(mfr_real *din, mfr_real *dw, mfr_real *db,
	const mfr_real *dout, const mfr_real *in, const mfr_real *w, const mfr_conv_shape *s);

/* Max pooling: out (N,C,Ho,Wo) = (= written) the maximum of each kh x kw
 * window of in (N,C,H,W); padding never wins (it is not -inf or 0, it is
 * simply not a candidate). Ties: the first maximum in scan order (rows top to
 * bottom, each left to right) is the argmax. A NaN in a window wins (the
 * first NaN), so NaNs propagate. Saves nothing; backward re-reads in. */
void MFR_REF(maxpool2d_forward)(mfr_real *out, const mfr_real *in, const mfr_pool_shape *s);

/* Max pooling backward: din (N,C,H,W) += dout (N,C,Ho,Wo) routed to the
 * argmax of each window as forward defines it (first maximum in scan order;
 * the other tied elements get nothing). Overlapping windows add up. */
void MFR_REF(maxpool2d_backward)(mfr_real *din, const mfr_real *dout, const mfr_real *in,
	const mfr_pool_shape *s);

/* Average pooling: out (N,C,Ho,Wo) = (= written) the mean of the real
 * elements of each window of in (N,C,H,W). Padding is EXCLUDED from the
 * divisor (PyTorch count_include_pad=False): a corner window that overlaps
 * the padding by one row divides by the elements it actually covers. Saves
 * nothing. */
void MFR_REF(avgpool2d_forward)(mfr_real *out, const mfr_real *in, const mfr_pool_shape *s);

/* Average pooling backward: din (N,C,H,W) += dout / (real elements of the
 * window) spread over each window. Does not need in. */
void MFR_REF(avgpool2d_backward)(mfr_real *din, const mfr_real *dout, const mfr_pool_shape *s);

/* Global average pooling: out (N,C) = (= written) the mean over H*W = hw of
 * in (N,C,H,W). Saves nothing. n, c, hw >= 1. */
void MFR_REF(gap_forward)(mfr_real *out, const mfr_real *in, int n, int c, int hw);

/* Global average pooling backward: din (N,C,H,W) += dout (N,C) / hw. */
void MFR_REF(gap_backward)(mfr_real *din, const mfr_real *dout, int n, int c, int hw);

/* Spatial zero padding: out (N,C,Ho,Wo) = (= written) in (N,C,H,W) placed at
 * row top, column left, zeros elsewhere. Saves nothing. */
void MFR_REF(pad2d_forward)(mfr_real *out, const mfr_real *in, const mfr_pad_shape *s);

/* Spatial zero padding backward: din (N,C,H,W) += the interior of dout
 * (N,C,Ho,Wo); the gradient on the border is dropped. */
void MFR_REF(pad2d_backward)(mfr_real *din, const mfr_real *dout, const mfr_pad_shape *s);

/* Channel zero padding (dlib-style shortcut): out (N,C2,H,W) = (= written)
 * in (N,C,H,W) in channels 0..C-1 and zeros in channels C..C2-1, with
 * hw = H*W. n, c, hw >= 1, c2 >= c. Saves nothing. */
void MFR_REF(chanpad_forward)(mfr_real *out, const mfr_real *in, int n, int c, int c2, int hw);

/* Channel zero padding backward: din (N,C,H,W) += channels 0..C-1 of
 * dout (N,C2,H,W). */
void MFR_REF(chanpad_backward)(mfr_real *din, const mfr_real *dout, int n, int c, int c2, int hw);

/* Linear (fully connected): out (N,O) = (= written) in (N,I) @ w^T + b, with
 * w (O,I) row-major (PyTorch's layout) and b (O) or NULL for no bias.
 * n, ni, no >= 1. Saves nothing; backward needs in and w. */
void MFR_REF(linear_forward)(mfr_real *out, const mfr_real *in, const mfr_real *w,
	const mfr_real *b, int n, int ni, int no);

/* Linear backward, given dout (N,O):
 *   din (N,I) += dout @ w
 *   dw  (O,I) += dout^T @ in
 *   db  (O)   += column sums of dout
 * each may be NULL to skip it. */
void MFR_REF(linear_backward)(mfr_real *din, mfr_real *dw, mfr_real *db,
	const mfr_real *dout, const mfr_real *in, const mfr_real *w, int n, int ni, int no);

/* Dropout, training only (at inference do not call it: it is the identity).
 * Element i is kept with probability 1-p, decided by the i-th draw of an
 * mfr_rng seeded with seed (kept iff mfr_rng_uniform >= p), so the same seed
 * gives the same mask in the float and double builds and a forward can be
 * re-run exactly. Inverted dropout: out = (= written) in / (1-p) where kept,
 * 0 where dropped. mask (count bytes, = written) receives 1 for kept, 0 for
 * dropped: it is what backward needs. 0 <= p < 1; p = 0 is the identity
 * (mask all ones). The caller picks a fresh seed per step. */
void MFR_REF(dropout_forward)(mfr_real *out, uint8_t *mask, const mfr_real *in, double p,
	uint64_t seed, size_t count);

/* Dropout backward: din += dout / (1-p) where mask is 1, nothing where 0;
 * p and mask are the forward's. */
void MFR_REF(dropout_backward)(mfr_real *din, const mfr_real *dout, const uint8_t *mask,
	double p, size_t count);

#endif
