/* train.h — the training loop of mfr-train: a backbone (net.h) trained
 * data-parallel across the ranks of a comm (comm.h), its embeddings fed to
 * the sharded margin-softmax classifier with Partial FC (pfc.h), batches
 * from the loader (loader.h), SGD with momentum, learning-rate schedules,
 * checkpoints that resume on any number of ranks, the TSV log, and the
 * memory planner.
 *
 * One step, on every rank: forward its batch; all-gather embeddings and
 * labels; classifier loss and gradients (pfc.h); backward with its rows of
 * the embedding gradient; all-reduce (sum) the backbone gradients — the loss
 * is the mean over the global batch, so the sum is the gradient of the
 * global loss, i.e. the average of per-rank mean-loss gradients; optional
 * clipping of their global norm; SGD on the backbone and on the sampled
 * classifier rows. Batch-norm statistics are each rank's own (as PyTorch
 * DDP); the saved running statistics are rank 0's.
 *
 * Everything random is a function of (seed, step, rank or sample): dropout
 * masks, flips, Partial FC negatives, the epoch order. A checkpoint
 * therefore holds no generator states, only the step, and a resumed run on
 * the same ranks repeats the uninterrupted one bit for bit.
 */
#ifndef MFR_TRAIN_H
#define MFR_TRAIN_H

#include <stdint.h>
#include <stdio.h>

#include "comm.h" /* defines: mfr_comm */
#include "pfc.h"  /* defines: mfr_margin */
#include "util.h" /* defines: mfr_error */

enum { MFR_DECAY_STEP, MFR_DECAY_POLY };

#define MFR_MAX_DECAY_EPOCHS 16

typedef struct {
	/* data and model */
	const char *const *inputs; /* FACE stream files */
	int ninputs;
	const char *arch;          /* preset name or .arch file */
	const char *output;        /* final model (.mfrm) */
	const char *init;          /* backbone to start from, or NULL */
	const char *resume;        /* checkpoint to continue, or NULL */
	const char *checkpoint;    /* checkpoint path written every save_every steps and at the end, or NULL */
	const char *log;           /* TSV log, or NULL */
	int64_t classes;           /* 0: 1 + the largest label */
	double dropout;            /* < 0: keep the architecture's */
	/* loss */
	mfr_margin margin;
	double sample_rate;
	int sparse_momentum;
	/* optimisation */
	int batch;                 /* per rank */
	double lr;                 /* per 256 images of the global batch */
	double momentum, wd, fc_wd;
	double warmup;             /* epochs */
	double epochs;
	int decay;                 /* MFR_DECAY_* */
	double decay_epochs[MFR_MAX_DECAY_EPOCHS];
	int ndecay;
	double gamma, power;
	double clip;               /* 0: no clipping */
	uint64_t seed;
	int64_t max_steps;         /* > 0: stop at this global step */
	int64_t save_every;        /* steps, 0: only at the end */
	int log_every;
	/* resources */
	const char *device;        /* "cpu", "cuda", "cuda:N" or "auto" (infer.h); NULL: MFR_DEVICE or "auto" */
	int dtype;                 /* the GPU backbone's element type (mfr_dtype); the classifier is fp32 */
	int tf32;                  /* GPU fp32 GEMMs and convolutions on TF32 */
	double loss_scale;         /* GPU fp16: the first loss scale (0: 2^16) */
	double bucket_mb;          /* GPU ranks: gradient all-reduce bucket, MiB (0: 25) */
	int threads, loader_threads, prefetch;
	int loader_only;           /* time the loader alone for an epoch (or max_steps batches); no training */
	double mem_limit;          /* bytes per rank, 0: none */
	/* online mask augmentation (maskaug.h): each (epoch, face) masked with
	 * probability mask_ratio; 0 off */
	double mask_ratio;
	const char *mask_templates; /* user templates (mfr-maskaug -t), or NULL */
} mfr_train_config;

/* Paper defaults: CosFace m = 0.4, s = 64, SGD 0.9, wd 1e-4, lr 0.1 per 256,
 * step decay x0.1 at epochs 5, 9, 12, 15 of 17, dropout 0.4, batch 64; the
 * default device (MFR_DEVICE, or a GPU when there is one), fp16 backbone there. */
void mfr_train_defaults(mfr_train_config *c);

/* The per-rank memory plan. classifier_paper is the paper's
 * Mem_FC = 3 Mem_w + 2 Mem_logits with Mem_w = d (C/k) 4 and
 * Mem_logits = N k (C/k) 4 bytes (sampled columns only under Partial FC:
 * 2 Mem_w + r Mem_w + 2 r Mem_logits). */
typedef struct {
	double fc_weight, fc_momentum, fc_grad, fc_logits, classifier_paper, classifier_alloc;
	double bb_params, bb_grads, bb_momentum, bb_activations, loader;
	double total;
	double gpu_total;          /* device bytes per rank of a GPU run (with arch; 0 without CUDA) */
	int64_t local_classes;
	uint64_t backbone_params;
} mfr_train_plan;

/* The embedding size of an architecture (preset or file). */
int mfr_train_arch_dim(const char *arch, int *dim, mfr_error *e);

/* Fills p for classes C, embedding d, batch N per rank, k ranks, rate r;
 * arch (preset or file) may be NULL (no backbone lines). -1 with e filled. */
int mfr_train_plan_make(mfr_train_plan *p, int64_t C, int d, int N, int k, double rate, const char *arch,
			int prefetch, int dtype, mfr_error *e);
/* Prints p as the readable table of `mfr-train --plan`. */
void mfr_train_plan_print(const mfr_train_plan *p, FILE *f, int64_t C, int d, int N, int k, double rate, const char *arch);

/* The learning rate at global step t of steps_per_epoch-step epochs. */
double mfr_train_lr(const mfr_train_config *c, int global_batch, uint64_t t, uint64_t steps_per_epoch);

/* Runs the training (collective over comm). Returns 0, or -1 with e filled
 * (a rank that fails aborts the job; see comm.h). */
int mfr_train_run(const mfr_train_config *c, mfr_comm *comm, mfr_error *e);

#endif
