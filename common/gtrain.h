/* gtrain.h — one rank's training step on its GPU, for the loop in train.c:
 * the backbone (gnet.h) in the chosen element type with float32 master
 * weights, the sharded classifier with Partial FC in float32 (gpfc.h),
 * device collectives (gcomm.h: NCCL, or host staging), SGD with momentum on
 * the device, and for fp16 dynamic loss scaling (PyTorch GradScaler's
 * policy: start at 2^16, halve and skip the update when a gradient is not
 * finite, double after 2000 clean steps).
 *
 * The step is the CPU step of train.h, move for move: forward (same dropout
 * seeds), all-gather embeddings (as float32) and labels, classifier loss and
 * gradients, backward of this rank's rows, all-reduce (sum) of the backbone
 * gradients, optional clipping of their global norm, SGD on the learned
 * backbone tensors and on the sampled classifier rows. In fp32 (TF32 off) it
 * matches the CPU step to float rounding; tests/unit/test_gpu_train.c holds
 * it to that. Built only with CUDA. */
#ifndef MFR_GTRAIN_H
#define MFR_GTRAIN_H

#include <stddef.h>
#include <stdint.h>

#include "arch.h"  /* defines: mfr_arch */
#include "comm.h"  /* defines: mfr_comm */
#include "gpu.h"   /* defines: mfr_gpu, mfr_dtype */
#include "pfc.h"   /* defines: mfr_margin */
#include "util.h"  /* defines: mfr_error */

typedef struct mfr_gtrain mfr_gtrain;

typedef struct {
	int device;           /* GPU index */
	mfr_dtype dtype;      /* backbone element type */
	int batch;            /* per rank */
	int64_t classes;
	double sample_rate;
	int sparse_momentum;
	mfr_margin margin;
	double momentum, wd, fc_wd, clip;
	int tf32;             /* fp32 GEMMs and convolutions on TF32 */
	double loss_scale;    /* fp16: the first loss scale, 0 for GradScaler's 2^16 */
} mfr_gtrain_config;

/* Opens GPU c->device and builds the step for architecture a (outliving
 * it) with embedding size d on this rank of comm. Parameters and the
 * classifier start zeroed: put them with mfr_gtrain_put_state. Refuses
 * (NULL, e filled) when mfr_gtrain_bytes exceeds the device's free memory,
 * before allocating. */
mfr_gtrain *mfr_gtrain_new(const mfr_gtrain_config *c, mfr_comm *comm, const mfr_arch *a, int d, mfr_error *e);
void mfr_gtrain_free(mfr_gtrain *t);

/* Device bytes the step holds (backbone, its momentum, classifier shard
 * with momentum and sampled buffers, staging), plus the layers' largest
 * scratch, for batch per rank over k ranks. */
double mfr_gtrain_bytes(const mfr_arch *a, int d, int batch, mfr_dtype t, int64_t classes, double rate, int k);

/* One step on this rank's batch: x (host, batch x C x H x W float, NCHW, the
 * loader's output), labels (host, batch). fwd_seed: dropout (as
 * mfr_net_forward's), pfc_seed: the Partial FC negatives (as
 * mfr_pfc_sample's). lr: this step's learning rate. *loss, *acc: the
 * classifier's (same on all ranks); *gnorm: the global gradient norm before
 * clipping (unscaled); *skipped = 1 when fp16 overflowed and the update was
 * skipped (the loss scale halves). Collective. -1 with e filled. */
int mfr_gtrain_step(mfr_gtrain *t, const float *x, const int32_t *labels, uint64_t fwd_seed, uint64_t pfc_seed,
		    double lr, double *loss, double *acc, double *gnorm, int *skipped, mfr_error *e);

/* Host copies of the state, in the CPU trainer's layouts: params and mom
 * (mfr_net_params' layout, param_total floats), the classifier shard's rows
 * and momentum ((c1-c0) x d each). Any pointer may be NULL to skip it. */
int mfr_gtrain_get_state(mfr_gtrain *t, float *params, float *mom, float *fcw, float *fcm, mfr_error *e);
int mfr_gtrain_put_state(mfr_gtrain *t, const float *params, const float *mom, const float *fcw, const float *fcm,
			 mfr_error *e);

/* "GPU 0 NVIDIA H200, fp16 (loss scale 65536), classifier fp32, NCCL 2.28.3, 4 ranks" */
const char *mfr_gtrain_describe(const mfr_gtrain *t);

/* Draws the classifier shard as mfr_pfc_init does (the same logical matrix
 * on any number of ranks); momentum zeroed. */
void mfr_gtrain_init_classifier(mfr_gtrain *t, uint64_t seed);

/* The loss scale now (1 unless fp16). */
double mfr_gtrain_loss_scale(const mfr_gtrain *t);

/* The fp16 loss scaler's state, for checkpoints: the scale as a power of
 * two and the clean steps since it last changed; set restores them (a
 * resumed run then skips and grows where an uninterrupted one does). */
void mfr_gtrain_scale_state(const mfr_gtrain *t, int *log2_scale, int *clean);
void mfr_gtrain_set_scale_state(mfr_gtrain *t, int log2_scale, int clean);

/* Device memory held now and at most (mfr_gpu_usage). */
void mfr_gtrain_memory(const mfr_gtrain *t, size_t *now, size_t *peak);

#endif
