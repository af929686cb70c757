/* infer.h — a model run for inference on the CPU (net.h) or a GPU (gnet.h),
 * behind one interface, for the tools that embed faces (mfr-embed). Host
 * batches in, host features out; where the work runs is chosen once by a
 * device name.
 *
 * Device names: "cpu"; "cuda" (GPU 0) or "cuda:N"; "auto" — the first GPU
 * when one is present, else the CPU. The tools' default is the environment's
 * MFR_DEVICE when set, else "auto". On a GPU the
 * network runs in an element type of the caller's choice (fp16 by default
 * in the tools: tensor cores; fp32 runs without TF32, so its features match
 * the CPU's to float rounding). */
#ifndef MFR_INFER_H
#define MFR_INFER_H

#include "arch.h"  /* defines: mfr_arch */
#include "gpu.h"   /* defines: mfr_dtype */
#include "model.h" /* defines: mfr_model */
#include "util.h"  /* defines: mfr_error */

typedef struct mfr_infer mfr_infer;

/* Resolves a device name (NULL: the default, MFR_DEVICE or "auto"): returns 0 for the CPU, 1 for a GPU (its index in
 * *gpu), or -1 with e filled ("--device cuda: no GPU: no CUDA driver",
 * "unknown device 'x' (cpu, cuda, cuda:N, auto)"). */
int mfr_device_select(const char *name, int *gpu, mfr_error *e);

/* Binds arch a (outliving the result) and model m's tensors on the device
 * for batches of 1..max_batch. t: the GPU's element type (ignored on the
 * CPU). NULL with e filled. */
mfr_infer *mfr_infer_new(const mfr_arch *a, const mfr_model *m, int max_batch, const char *device, mfr_dtype t,
			 mfr_error *e);
/* The device name NULL stands for: MFR_DEVICE, or "auto". */
const char *mfr_device_default(void);
void mfr_infer_free(mfr_infer *f);

/* Runs n images x (host, NCHW float, the input layer's shape) and writes
 * output k (host, n x its values per image, float; maps in NCHW order) to
 * out. Returns 0, or -1 with e filled. */
int mfr_infer_run(mfr_infer *f, const float *x, int n, int k, float *out, mfr_error *e);

/* One line on where it runs: "CPU, oneDNN 2.6.3, 2 threads" or
 * "GPU 0 NVIDIA H200, fp16". */
const char *mfr_infer_describe(const mfr_infer *f);

#endif
