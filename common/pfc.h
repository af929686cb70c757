/* pfc.h — the margin-softmax classifier, sharded by class across ranks
 * (distributed FC), with Partial FC sampling and its SGD step.
 *
 * C classes are cut into contiguous ranges, one per rank (the first C % k
 * ranks hold one class more). Each rank keeps its rows of the C x d weight
 * and their momentum. A step, given the features and labels of the whole
 * global batch (all-gathered by the caller, rank-major):
 *   1. sample: the rank's classes that are some row's label (positives) plus
 *      the negatives with the lowest hash(step seed, class) keys, up to
 *      max(positives, ceil(rate x local classes)); rate 1 keeps every class;
 *   2. logits z = s * cos(f_i, w_j) over the sampled rows, with the margin
 *      cos(m1*theta + m2) - m3 on the target, on the rank that owns it;
 *   3. softmax through the all-reduced row maximum and sum of exponentials;
 *      loss = mean over the global batch of -log p(target);
 *   4. gradients: d(features) summed over ranks (each rank then takes its
 *      own rows), d(sampled weight rows) local.
 * The loss and gradients are exact: the same on any number of ranks, up to
 * float rounding of the reductions. Features and weight rows are L2
 * normalised inside, and gradients flow through the normalisation.
 *
 * Like net.c this file is compiled for float (mfr_pfc_*) and for double
 * (mfr_pfc64_*, the gradient checks). It holds no threads; its GEMMs run on
 * the CPU backend (dnnl_cpu.h) in the float build.
 */
#ifndef MFR_PFC_H
#define MFR_PFC_H

#include <stddef.h>
#include <stdint.h>

#include "comm.h" /* defines: mfr_comm */
#include "real.h" /* defines: mfr_real */
#include "util.h" /* defines: mfr_error */

#ifdef MFR_REAL_DOUBLE
#define MFR_PFC(name) mfr_pfc64_##name
#define MFR_PFC_T mfr_pfc64
typedef struct mfr_pfc64 mfr_pfc64;
#else
#define MFR_PFC(name) mfr_pfc_##name
#define MFR_PFC_T mfr_pfc
typedef struct mfr_pfc mfr_pfc;
#endif

/* The combined margin of insightface: target logit s * (cos(m1 theta + m2) - m3).
 * CosFace: m1 = 1, m2 = 0, m3 = 0.4; ArcFace: m1 = 1, m2 = 0.5, m3 = 0. Past
 * theta + m2 > pi (m1 = 1) the angle can no longer grow with theta, so the
 * target falls back to cos(theta) - m3 - m2 sin(m2), which keeps the logit
 * monotonic (ArcFace's "easy margin off"). */
typedef struct {
	double s, m1, m2, m3;
} mfr_margin;

/* Rank rank's range [*c0, *c1) of classes classes cut over size ranks. */
static inline void mfr_pfc_shard(int64_t classes, int rank, int size, int64_t *c0, int64_t *c1)
{
	int64_t base = classes / size, rem = classes % size;
	*c0 = base * rank + (rank < rem ? rank : rem);
	*c1 = *c0 + base + (rank < rem);
}

/* A shard for this rank of comm: classes classes of dimension d, sampling
 * at rate (0 < rate <= 1) for batches of up to max_batch global rows.
 * Weights and momentum start at zero: call init, or fill weights(). */
MFR_PFC_T *MFR_PFC(new)(int64_t classes, int d, double rate, int max_batch, int rank, int size, mfr_error *e);
void MFR_PFC(free)(MFR_PFC_T *p);

/* The shard's rows: (c1 - c0) x d, row c - c0 for class c. */
mfr_real *MFR_PFC(weights)(MFR_PFC_T *p);
mfr_real *MFR_PFC(momentum)(MFR_PFC_T *p);
void MFR_PFC(range)(const MFR_PFC_T *p, int64_t *c0, int64_t *c1);

/* Row c drawn from N(0, 0.01^2) by an rng seeded with hash(seed, c): the same
 * logical matrix on any number of ranks. Momentum zeroed. Exactly: entry k
 * of row c is (float)(0.01 * mfr_rng_normal(&r)), the k-th call on
 * r = {mfr_hash2(seed, c)} (each call takes two draws); gpfc.cu repeats
 * this on the device. */
void MFR_PFC(init)(MFR_PFC_T *p, uint64_t seed);

/* Step 1 above for labels[0..n) (the global batch; labels outside 0..C-1
 * are an error). step_seed decides the negatives. Returns the number of
 * rows sampled on this rank, or -1 with e filled. */
int64_t MFR_PFC(sample)(MFR_PFC_T *p, const int32_t *labels, int n, uint64_t step_seed, mfr_error *e);

/* Step 1 without a shard object, what sample runs and the GPU classifier
 * (gpfc.h) shares: the shard [c0, c0 + nl) of classes classes at rate, for
 * labels[0..n). sampled (nl entries) receives the chosen local indices,
 * ascending; pos (nl bytes, all zero) and keys (nl) are scratch, pos left
 * all zero again. Returns the count, or -1 with e filled for a label
 * outside 0..classes-1 (nothing written then). */
int64_t MFR_PFC(choose)(int64_t classes, int64_t c0, int64_t nl, double rate, const int32_t *labels, int n,
			uint64_t step_seed, uint8_t *pos, uint64_t *keys, int64_t *sampled, mfr_error *e);
/* The sampled classes (ascending, local indices) of the last sample call. */
const int64_t *MFR_PFC(sampled)(const MFR_PFC_T *p, int64_t *count);

/* Steps 2-4 above on feat (n x d, the global batch, rank-major) after a
 * sample call with the same labels: *loss receives the mean loss (same on
 * every rank), *acc the fraction of rows whose target cosine is the largest
 * among the sampled classes (without margin), dfeat (n x d) = dLoss/dfeat
 * summed over ranks (written), and the gradient of the sampled rows is kept
 * for step. Collective. Returns 0 or -1 with e filled. */
int MFR_PFC(forward_backward)(MFR_PFC_T *p, mfr_comm *c, const mfr_real *feat, const int32_t *labels, int n,
			      const mfr_margin *m, double *loss, double *acc, mfr_real *dfeat, mfr_error *e);

/* The gradient of the sampled rows of the last forward_backward:
 * count x d, in the order of sampled(). */
const mfr_real *MFR_PFC(grad)(const MFR_PFC_T *p);

/* SGD with momentum mu and weight decay wd (PyTorch's form: g += wd w;
 * v = mu v + g; w -= lr v) on the sampled rows. sparse = 0 also applies it to
 * the unsampled rows with g = wd w (what insightface's Partial FC v2 does, its
 * optimizer seeing the whole matrix); sparse = 1 leaves them untouched. */
void MFR_PFC(step)(MFR_PFC_T *p, double lr, double mu, double wd, int sparse);

#endif
