/* gpfc.h — the sharded margin-softmax classifier with Partial FC on the GPU:
 * pfc.h's algorithm, function for function, with the shard's weights and
 * momentum, the batch's features and their gradient on the device.
 *
 * What stays on the host: the labels. The sampling runs on the device and
 * picks exactly the classes pfc.c's mfr_pfc_choose picks (the positives and
 * the classes with the smallest keys hash(step seed, class), found by a
 * radix selection over the keys; ties in class order), so the CPU and the
 * GPU train on the same columns. What runs on the device, in float32 (the
 * paper keeps the classifier, logits and softmax in fp32; TF32 only when
 * mfr_gpu_set_tf32 is on): gathering and normalising the sampled rows, the
 * cosines by mfr_gemm_cuda, the margin on the targets this rank owns, the
 * softmax through all-reduced row maxima and sums, loss and accuracy, the
 * gradients through both normalisations, and the SGD step.
 *
 * Memory (mfr_gpfc_bytes): weight and momentum, nl x d floats each, a
 * column map (nl int32, for the dense step), plus buffers sized by the
 * most columns a step samples,
 * cap = min(nl, ceil(rate x nl) + max_batch): the sampled rows normalised
 * and their gradient (cap x d each), the logits (max_batch x cap), and per
 * batch row a few values. Nothing is n x C: at 10M classes x 512, rate 0.1
 * and a global batch of 512 one GPU holds 41 GB of weight and momentum plus
 * about 6 GB. The sampler adds a byte per class (the positives' flags);
 * it hashes every class of the shard 10 times a step (8 histogram passes,
 * count, write), on the device.
 *
 * Collectives (the classifier's max and sum all-reduces) go through gcomm.h:
 * NCCL on the stream, or staged through the host. Built only with CUDA. */
#ifndef MFR_GPFC_H
#define MFR_GPFC_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" { /* comm.h and pfc.h have no guard of their own */
#endif

#include "gcomm.h" /* defines: mfr_gcomm */
#include "gpu.h"  /* defines: mfr_gpu */
#include "pfc.h"  /* defines: mfr_margin, mfr_pfc_shard */
#include "util.h" /* defines: mfr_error */

typedef struct mfr_gpfc mfr_gpfc;

/* A shard on g for rank of size ranks: classes classes of dimension d,
 * sampling at rate (0 < rate <= 1) for global batches of up to max_batch
 * rows. Weight and momentum start at zero: call init, or put. NULL with e
 * filled for bad sizes or when device memory runs out. */
mfr_gpfc *mfr_gpfc_new(mfr_gpu *g, int64_t classes, int d, double rate, int max_batch, int rank, int size,
		       mfr_error *e);
/* Frees everything (waits for g's stream). NULL is a no-op. */
void mfr_gpfc_free(mfr_gpfc *p);

/* Device bytes mfr_gpfc_new allocates on the rank with the largest shard
 * (rank 0), for the memory planner: exactly what it asks mfr_gpu_alloc for
 * (each allocation also carries gpu.cu's small header; cuBLAS keeps its
 * own workspace). */
size_t mfr_gpfc_bytes(int64_t classes, int d, double rate, int max_batch, int size);

/* The shard's rows on the device: (c1 - c0) x d floats, row c - c0 for
 * class c; momentum the same. */
float *mfr_gpfc_weights(mfr_gpfc *p);
float *mfr_gpfc_momentum(mfr_gpfc *p);
void mfr_gpfc_range(const mfr_gpfc *p, int64_t *c0, int64_t *c1);

/* mfr_pfc_init's matrix, drawn on the device: row c from the rng seeded
 * with mfr_hash2(seed, c), the same Box-Muller in double, rounded to float.
 * Equal to the CPU's up to the last bit of the device's log and cos
 * (double, within 2 ulp of glibc's): after rounding to float nearly always
 * bit-identical, else 1 ulp (the test allows 1e-6 relative). Momentum
 * zeroed. Queued on g's stream; a launch error shows at the next check. */
void mfr_gpfc_init(mfr_gpfc *p, uint64_t seed);

/* Host copies of the shard, for checkpoints and tests: w and mom are
 * (c1 - c0) x d floats each (pfc.h's layout); either may be NULL to skip
 * it. put overwrites, get reads (both complete on return). 0, or -1 with e
 * filled. */
int mfr_gpfc_put(mfr_gpfc *p, const float *w, const float *mom, mfr_error *e);
int mfr_gpfc_get(mfr_gpfc *p, float *w, float *mom, mfr_error *e);

/* As mfr_pfc_sample: labels (host) of the global batch, n <= max_batch,
 * the same choice as the CPU for the same step_seed. Returns the number of
 * rows sampled on this rank, or -1 with e filled. */
int64_t mfr_gpfc_sample(mfr_gpfc *p, const int32_t *labels, int n, uint64_t step_seed, mfr_error *e);
/* The sampled classes of the last sample call, copied to the host
 * (ascending, local; valid until the next call), or NULL with e filled. */
const int64_t *mfr_gpfc_sampled(mfr_gpfc *p, int64_t *count, mfr_error *e);

/* As mfr_pfc_forward_backward, after a sample call with the same labels:
 * feat (device, n x d, the global batch, rank-major), labels (host);
 * *loss the mean over the global batch of -log p(target), *acc the
 * fraction of rows whose target cosine is the largest sampled one (both the
 * same on every rank); dfeat (device, n x d) = dLoss/dfeat summed over
 * ranks, WRITTEN (=); the gradient of the sampled rows is kept for step.
 * Collective over c. Waits for g's stream for the loss (and for each
 * all-reduce across ranks without NCCL); the gradients' last kernels stay
 * queued on it. loss NULL (acc too): nothing waits, the loss and accuracy
 * come from mfr_gpfc_loss once the caller has reason to wait anyway. 0, or
 * -1 with e filled. */
int mfr_gpfc_forward_backward(mfr_gpfc *p, mfr_gcomm *c, const float *feat, const int32_t *labels, int n,
			      const mfr_margin *m, double *loss, double *acc, float *dfeat, mfr_error *e);

/* The loss and accuracy of the last forward_backward called with loss
 * NULL: waits until the stream has copied them (free when the caller has
 * just waited for it). -1 with e filled when none is pending or on a CUDA
 * error. */
int mfr_gpfc_loss(mfr_gpfc *p, double *loss, double *acc, mfr_error *e);

/* The gradient of the sampled rows of the last forward_backward (device,
 * count x d, in the order of sampled()). */
const float *mfr_gpfc_grad(const mfr_gpfc *p);

/* As mfr_pfc_step (g += wd w; v = mu v + g; w -= lr v, in double then
 * rounded to float as pfc.c does, so equal gradients give equal bits):
 * sparse = 1 on the sampled rows only, 0 on every row of the shard (g = wd w
 * for the rows not sampled). Queued on g's stream. */
void mfr_gpfc_step(mfr_gpfc *p, double lr, double mu, double wd, int sparse);

#ifdef __cplusplus
}
#endif

#endif
