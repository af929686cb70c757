/* gcomm.h — collectives on device buffers for the GPU trainer: NCCL
 * between the ranks' GPUs, bootstrapped over the host communicator (comm.h:
 * rank 0 makes NCCL's unique id and broadcasts it), one GPU per rank; or,
 * when NCCL cannot be used (MFR_NCCL=0 in the environment, or its
 * initialisation fails), the same operations staged through host memory and
 * comm.h's MPI collectives. A world of one needs neither.
 *
 * Every call is collective (all ranks, same order) and queued on the GPU's
 * stream (NCCL) or complete on return (staging). Sums over ranks: NCCL's
 * ring order is fixed for a given topology, so reruns on the same machines
 * repeat; staging sums in comm.h's fixed order. Built only with CUDA. */
#ifndef MFR_GCOMM_H
#define MFR_GCOMM_H

#include <stddef.h>

#include "comm.h" /* defines: mfr_comm, MFR_SUM, MFR_MAX */
#include "gpu.h"  /* defines: mfr_gpu, mfr_dtype */
#include "util.h" /* defines: mfr_error */

#ifdef __cplusplus
extern "C" {
#endif

typedef struct mfr_gcomm mfr_gcomm;

/* Collective over c: the ranks' GPUs g (each rank its own). NULL with e
 * filled only when staging memory cannot be had; an NCCL failure on every
 * rank falls back to staging and says so in mfr_gcomm_describe. A rank
 * whose ncclCommInitRank fails says why on stderr at once, as the others
 * may stay inside theirs (NCCL's bootstrap blocks) until the job is ended. */
mfr_gcomm *mfr_gcomm_new(mfr_comm *c, mfr_gpu *g, mfr_error *e);
void mfr_gcomm_free(mfr_gcomm *gc);

/* "NCCL 2.28.3, 4 ranks", "host staging over MPI (...), 4 ranks (<why>)",
 * or "one rank". */
const char *mfr_gcomm_describe(const mfr_gcomm *gc);

/* In place on the device: buf (n values of t: MFR_F32, or MFR_F16/MFR_BF16
 * with MFR_SUM under NCCL only) becomes op (MFR_SUM, MFR_MAX) over ranks. */
int mfr_gcomm_allreduce(mfr_gcomm *gc, void *buf, size_t n, mfr_dtype t, int op, mfr_error *e);

/* 1 when mfr_gcomm_allreduce_side overlaps the main stream (NCCL across
 * several ranks), 0 when it would block (staging) or has nothing to do. */
int mfr_gcomm_overlaps(const mfr_gcomm *gc);

/* mfr_gcomm_allreduce's sum, overlapping the main stream: under NCCL queued
 * on the GPU's side stream after everything the main stream holds so far
 * (mfr_gpu_side_wait), so the main stream must mfr_gpu_main_wait before it
 * reads buf again; under staging complete on return, like the blocking
 * call. Several in flight must be issued in the same order on every rank. */
int mfr_gcomm_allreduce_side(mfr_gcomm *gc, void *buf, size_t n, mfr_dtype t, mfr_error *e);

/* Every rank's n values of t at in (device) into out (device, size*n values,
 * rank 0's first). t: MFR_F32 or MFR_I32. */
int mfr_gcomm_allgather(mfr_gcomm *gc, const void *in, void *out, size_t n, mfr_dtype t, mfr_error *e);

/* Rank root's n values of t at buf (device) to every rank. */
int mfr_gcomm_bcast(mfr_gcomm *gc, void *buf, size_t n, mfr_dtype t, int root, mfr_error *e);

#ifdef __cplusplus
}
#endif

#endif
