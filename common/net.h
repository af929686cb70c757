/* net.h — the graph executor: a parsed architecture (arch.h) bound to
 * parameter, gradient and activation storage, run forward and backward
 * layer by layer through the reference layers (layers_*.c).
 *
 * Storage follows llm.c: all parameters (learned tensors and the bn running
 * statistics) in one contiguous block laid out in the architecture's tensor
 * order, gradients in a second block of the same layout, activations and
 * their gradients in per-layer slices of two more blocks. Zeroing, the
 * optimizer step, checkpointing and the all-reduce are then one call each.
 *
 * Like the layers, this file is compiled twice (real.h): for float as the
 * mfr_net_* API, and for double as mfr_net64_* so that whole-network
 * gradient checks run in float64. In the float build conv and linear run on
 * the fast CPU backend (oneDNN, multi-threaded; dnnl_cpu.h), the other
 * layers on the reference. An inference net on oneDNN also keeps its
 * activations in oneDNN's blocked layout between layers (reordered to NCHW
 * only for the layers that need it and at the outputs), lets a convolution
 * add its result to the other operand of a residual add (oneDNN's sum
 * post-op), and runs bn, PReLU, ReLU and add on that layout itself; outputs
 * are NCHW as always. Model-file I/O exists in the float build
 * only. It is not a trainer (no loss, no optimizer) and holds no threads.
 */
#ifndef MFR_NET_H
#define MFR_NET_H

#include <stddef.h>
#include <stdint.h>

#include "arch.h" /* defines: mfr_arch */
#include "real.h" /* defines: mfr_real */
#include "util.h" /* defines: mfr_error */

#ifdef MFR_REAL_DOUBLE
#define MFR_NET(name) mfr_net64_##name
typedef struct mfr_net64 mfr_net64;
#define MFR_NET_T mfr_net64
#else
#define MFR_NET(name) mfr_net_##name
typedef struct mfr_net mfr_net;
#define MFR_NET_T mfr_net
#endif

/* Builds storage for a (which must outlive the net) for batches of 1..max_batch
 * images. training = 1 also allocates gradients and what forward saves for
 * backward. Parameters start zeroed: call init or load. NULL with e filled on
 * bad sizes or no memory. */
MFR_NET_T *MFR_NET(new)(const mfr_arch *a, int max_batch, int training, mfr_error *e);
void MFR_NET(free)(MFR_NET_T *n);

/* Bytes a training net for batches of batch images holds besides its
 * parameters and gradients: activations, their gradients, what forward
 * saves for backward, dropout masks and scratch (for the memory planner). */
size_t MFR_NET(training_bytes)(const mfr_arch *a, int batch);

/* The parameter block: every tensor of a->tensors in order, tensor i at
 * params + offset(i), a->tensors[i].count values. An inference net caches
 * derived weights (conv -> bn folding, reordered copies): calling params,
 * tensor, init or load marks them stale, so write parameters through a
 * pointer from a call made after the last forward. */
mfr_real *MFR_NET(params)(MFR_NET_T *n);
mfr_real *MFR_NET(grads)(MFR_NET_T *n); /* same layout; NULL when not training */
size_t MFR_NET(param_total)(const MFR_NET_T *n);
mfr_real *MFR_NET(tensor)(MFR_NET_T *n, int i);
mfr_real *MFR_NET(tensor_grad)(MFR_NET_T *n, int i);

/* on = 1 runs conv and linear on the reference layers instead of the fast
 * CPU backend (dnnl_cpu.h), for tests that hold one against the other. The
 * double build always uses the reference. */
void MFR_NET(set_reference)(MFR_NET_T *n, int on);

/* Seeded initialisation, deterministic across platforms: conv weights
 * Kaiming normal, fan-out mode (std = sqrt(2 / (out * kh * kw / groups)),
 * as torchvision's ResNet and insightface's mxnet 'msra' init); linear
 * weights and se/splat fc weights Kaiming uniform with a = sqrt(5) and
 * biases uniform(+-1/sqrt(fan_in)) (PyTorch's nn.Linear default); conv
 * biases 0; bn gamma 1, beta 0, running mean 0, running var 1; PReLU slopes
 * 0.25 (PyTorch's default). */
void MFR_NET(init)(MFR_NET_T *n, uint64_t seed);

/* Runs the network on x (batch images of the input layer's C x H x W,
 * NCHW). training: batch-norm statistics from the batch (running statistics
 * updated), dropout active with masks drawn from seed; otherwise inference.
 * Returns 0, or -1 with e filled (batch out of range; training forward on a
 * net built for inference). */
int MFR_NET(forward)(MFR_NET_T *n, const mfr_real *x, int batch, int training, uint64_t seed, mfr_error *e);

/* Output k (0..a->n_outputs-1) of the last forward: batch x dim values;
 * *dim receives the values per image. */
mfr_real *MFR_NET(output)(MFR_NET_T *n, int k, size_t *dim);

/* dLoss/d(input) of the last backward (batch x C x H x W values), or NULL
 * when not training. */
mfr_real *MFR_NET(input_grad)(MFR_NET_T *n);

/* Zeroes the parameter gradients. */
void MFR_NET(zero_grad)(MFR_NET_T *n);

/* Backward of the last training forward: dout[k] holds dLoss/d(output k)
 * (batch x dim values; NULL for an output the loss does not use).
 * Accumulates (+=) parameter gradients into the gradient block (zero them
 * with zero_grad first); activation gradients are internal. -1 with e filled
 * when the last forward was not a training forward. */
int MFR_NET(backward)(MFR_NET_T *n, const mfr_real *const *dout, mfr_error *e);

#ifndef MFR_REAL_DOUBLE
#include "model.h" /* defines: mfr_model */

/* Copies every tensor of the net from m by name, checking shapes; a missing
 * or mis-shaped tensor is an error naming it. Tensors in m that the
 * architecture does not have are an error too (a model for another net),
 * except those named train.* (a checkpoint's training state, mfr-train). */
int mfr_net_load(mfr_net *n, const mfr_model *m, mfr_error *e);

/* Adds every tensor of the net to m (fp32, or fp16 when half is set). */
int mfr_net_store(mfr_net *n, mfr_model *m, int half, mfr_error *e);
#endif

#endif
