/* gnet.h — the graph executor on the GPU: a parsed architecture (arch.h)
 * bound to device storage and run forward and backward through the CUDA
 * layers (gpu_layers.h). The GPU twin of net.h, held against it by
 * tests/unit/test_gpu_net.c.
 *
 * Storage, as in net.h: the parameters (learned tensors and bn running
 * statistics) in one float32 block in the architecture's tensor order —
 * byte for byte the layout of mfr_net_params, so one copy moves a model
 * between the two — the gradients in a second block of that layout, then
 * per layer its activation and activation gradient in the element type the
 * net was built with (fp32, fp16 or bf16; NHWC), what forward saves
 * (float32) and dropout masks. Conv and linear layers also keep a compute
 * copy of their weights in the element type (conv: cuDNN's KRSC layout),
 * refreshed from the master block when it has changed. A net built for
 * inference keeps only live activations: layers share slots once their
 * readers have run (the outputs keep theirs), so a large batch costs a few
 * feature maps per image, not the whole network's; it also folds each bn
 * that alone reads a conv into that conv's weights and bias, and runs a
 * prelu or relu that alone reads its input in place (the CPU executor's
 * merges: mfr_arch_inference_merges); the conv's bias is added by the
 * prelu, relu or two-input add that alone reads its output. A net built for
 * training keeps every activation but those fused away — a bn that alone
 * feeds a prelu, relu or two-input add, and a two-input add that alone
 * feeds a relu, run inside that reader (the backward recomputes a bn's
 * output) — and only live activation gradients: a layer's gradient takes a
 * slot when backward first writes it and frees it once the layer's own
 * backward has read it (an add's inputs share its slot where that is
 * safe); that first writer assigns rather than adds, so no gradient is
 * zeroed in bulk, and a layer no gradient reaches is skipped (r50 at batch
 * 128 in fp16: 5.6 GiB planned for the whole step instead of 11.2).
 *
 * Mixed precision is the caller's scheme around this: a backward seeded with
 * dLoss/dout x S leaves gradients x S (the caller checks them for overflow
 * and unscales in the optimizer step). Batch-norm statistics, saved values,
 * parameters and their gradients are float32 whatever the element type.
 *
 * Built without CUDA this header still compiles but nothing implements it:
 * call it only after mfr_gpu_count says there is a device. */
#ifndef MFR_GNET_H
#define MFR_GNET_H

#include <stddef.h>
#include <stdint.h>

#include "arch.h" /* defines: mfr_arch */
#include "gpu.h"  /* defines: mfr_gpu, mfr_dtype */
#include "util.h" /* defines: mfr_error */

typedef struct mfr_gnet mfr_gnet;

/* Builds device storage on g for a (both must outlive the net), batches of
 * 1..max_batch, activations of type t; training = 1 also allocates
 * gradients and what backward needs. Parameters start zeroed: put them with
 * mfr_gnet_put_params. NULL with e filled (bad sizes, no device memory). */
mfr_gnet *mfr_gnet_new(mfr_gpu *g, const mfr_arch *a, int max_batch, int training, mfr_dtype t, mfr_error *e);
void mfr_gnet_free(mfr_gnet *n);

/* Device bytes mfr_gnet_new(.., batch, training, t) allocates, besides the
 * scratch the layers take (cuDNN workspaces: see mfr_gpu_scratch), and
 * bytes of the largest layer scratch it can foresee (for the memory
 * planner). */
size_t mfr_gnet_bytes(const mfr_arch *a, int batch, int training, mfr_dtype t);

mfr_dtype mfr_gnet_dtype(const mfr_gnet *n);
mfr_gpu *mfr_gnet_gpu(const mfr_gnet *n);

/* The float32 parameter and gradient blocks on the device (layout of
 * mfr_net_params; grads NULL unless training), and their length in values.
 * Writing parameters through the pointer needs mfr_gnet_params_changed
 * before the next forward. */
float *mfr_gnet_params(mfr_gnet *n);
float *mfr_gnet_grads(mfr_gnet *n);
size_t mfr_gnet_param_total(const mfr_gnet *n);
void mfr_gnet_params_changed(mfr_gnet *n);

/* Host <-> device copies of the whole parameter block (param_total floats,
 * the layout of mfr_net_params) and of the gradient block. Complete on
 * return. -1 with e filled on a CUDA error. */
int mfr_gnet_put_params(mfr_gnet *n, const float *host, mfr_error *e);
int mfr_gnet_get_params(mfr_gnet *n, float *host, mfr_error *e);
int mfr_gnet_get_grads(mfr_gnet *n, float *host, mfr_error *e);

/* Runs the network on x: batch images on the device, NHWC, of the input
 * layer's shape, in the net's element type. training: batch statistics
 * (running statistics updated), dropout masks drawn from seed exactly as
 * mfr_net_forward draws them. Queued on the stream; -1 with e filled on a
 * launch or library error. */
int mfr_gnet_forward(mfr_gnet *n, const void *x, int batch, int training, uint64_t seed, mfr_error *e);

/* Output k of the last forward on the device, batch x *dim values of the
 * net's element type: NHWC for a map (as (N,H,W,C)), (N,D) for a vector. */
void *mfr_gnet_output(mfr_gnet *n, int k, size_t *dim);

/* Zeroes the gradient block (queued). */
int mfr_gnet_zero_grad(mfr_gnet *n, mfr_error *e);

/* Called by mfr_gnet_backward after it has queued layer i's backward
 * (layers go last to first): from then on the stream holds everything that
 * writes the gradients of layers i..n_layers-1, which in the parameter
 * block's layer order are its tail from layer i's first tensor on. A
 * non-zero return stops the backward (it returns -1 with e as the hook
 * filled it). */
typedef int (*mfr_gnet_hook)(void *ctx, int layer, mfr_error *e);

/* Backward of the last training forward: dout[k] on the device, the net's
 * element type and output k's layout, or NULL for an output the loss does
 * not use. Accumulates (+=) into the gradient block. hook (may be NULL) runs
 * after each layer i = n_layers-1 .. 1 (see mfr_gnet_hook). -1 with e filled
 * when the last forward was not a training forward, or on a device error. */
int mfr_gnet_backward(mfr_gnet *n, const void *const *dout, mfr_gnet_hook hook, void *ctx, mfr_error *e);

/* dLoss/d(input) of the last backward (device, NHWC, element type), or NULL
 * when not training or skipped. */
void *mfr_gnet_input_grad(mfr_gnet *n);
/* skip = 1: backward spares the input's gradient where nothing reads it (a
 * trainer): a conv reading the input computes no data gradient (for a stem
 * conv, a cuDNN call as costly as its forward), and mfr_gnet_input_grad
 * returns NULL. 0 (the default) computes it. */
void mfr_gnet_skip_input_grad(mfr_gnet *n, int skip);

#endif
