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
 * gradients (under NCCL in buckets of the parameter block's tail, each sent
 * on the side stream as soon as backward has passed its layers, so the
 * all-reduce overlaps the rest of backward, as PyTorch's DDP does), optional
 * clipping of their global norm, SGD on the learned
 * backbone tensors and on the sampled classifier rows. In fp32 (TF32 off) it
 * matches the CPU step to float rounding; tests/unit/test_gpu_train.c holds
 * it to that. Built only with CUDA. */
#ifndef MFR_GTRAIN_H
#define MFR_GTRAIN_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "arch.h"  /* defines: mfr_arch */
#include "comm.h"  /* defines: mfr_comm */
#include "gpu.h"   /* defines: mfr_gpu, mfr_dtype */
#include "model.h" /* defines: mfr_input_spec */
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
	size_t bucket_bytes;  /* gradient all-reduce buckets; 0: 25 MiB (DDP's) */
	int raw;              /* 1: batches are raw pixels, normalised on the GPU by input */
	mfr_input_spec input; /* (raw) the model's normalisation and channel order */
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
 * scratch and, over k > 1 ranks, a reserve for NCCL's buffers (512 MiB),
 * for batch per rank over k ranks; raw: batches arrive as bytes. */
double mfr_gtrain_bytes(const mfr_arch *a, int d, int batch, mfr_dtype t, int64_t classes, double rate, int k, int raw);

/* Hands over the next step's batch on this rank: x (host; raw: batch x H x
 * W x 3 bytes, the loader's raw output; else batch x C x H x W floats, NCHW,
 * normalised) and labels (host, batch; copied at once). The upload is queued
 * on the GPU's side stream and, from page-locked memory
 * (mfr_gtrain_host_alloc), overlaps the tail of the step in flight; x must
 * stay untouched until the mfr_gtrain_step that uses it returns. -1 with e
 * filled. */
int mfr_gtrain_stage(mfr_gtrain *t, const void *x, const int32_t *labels, mfr_error *e);

/* One step on the batch staged last (an error when none is). fwd_seed:
 * dropout (as mfr_net_forward's), pfc_seed: the Partial FC negatives (as
 * mfr_pfc_sample's). lr: this step's learning rate. *loss, *acc: the
 * classifier's (same on all ranks); *gnorm: the global gradient norm before
 * clipping (unscaled); *skipped = 1 when fp16 overflowed and the update was
 * skipped (the loss scale halves). Collective. -1 with e filled. Returns
 * with the optimizer's kernels still queued: the next stage and the host's
 * next batch overlap them. */
int mfr_gtrain_step(mfr_gtrain *t, uint64_t fwd_seed, uint64_t pfc_seed, double lr, double *loss, double *acc,
		    double *gnorm, int *skipped, mfr_error *e);

/* Waits for everything queued (the last step's optimizer). -1 with e filled
 * on a device error. */
int mfr_gtrain_sync(mfr_gtrain *t, mfr_error *e);

/* Page-locked host memory on t's GPU, for batches that mfr_gtrain_stage
 * uploads asynchronously (the loader's mfr_loader_output.alloc); free
 * accepts NULL. */
void *mfr_gtrain_host_alloc(mfr_gtrain *t, size_t bytes, mfr_error *e);
void mfr_gtrain_host_free(mfr_gtrain *t, void *p);

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

/* The span profiler of the step's device (gpu.h; on when the environment
 * has MFR_GPU_PROFILE=1): on/off, and the time per span so far per step
 * printed to f (then cleared). With it on, each step waits for the device
 * at its end (to read the events): overlap across steps is lost. */
void mfr_gtrain_profile(mfr_gtrain *t, int on);
void mfr_gtrain_profile_report(mfr_gtrain *t, FILE *f, double steps);

/* Device memory held now and at most (mfr_gpu_usage). */
void mfr_gtrain_memory(const mfr_gtrain *t, size_t *now, size_t *peak);

#endif
