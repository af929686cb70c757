/* comm.h — the collectives the trainer needs, over MPI or in a world of one.
 *
 * A program started by mpirun (OpenMPI, or any launcher that sets the PMI/PMIx
 * environment) joins MPI_COMM_WORLD; started alone it is rank 0 of 1 and never
 * calls MPI_Init (so a plain `mfr-train ...` does not need mpirun, and a build
 * without MPI still trains on one process). Only the calling thread uses MPI
 * (MPI_THREAD_FUNNELED). Every collective is blocking and must be called by
 * all ranks in the same order. Errors from MPI abort the job (a rank that
 * fails alone would leave the others waiting forever): they are reported
 * first with the rank and MPI's own message.
 *
 * This is not a general MPI wrapper: it has exactly the operations of the
 * distributed classifier, the gradient all-reduce and checkpointing. The CUDA
 * backend puts NCCL behind the same calls.
 */
#ifndef MFR_COMM_H
#define MFR_COMM_H

#include <stddef.h>
#include <stdint.h>

#include "util.h" /* defines: mfr_error */

typedef struct mfr_comm mfr_comm;

enum { MFR_SUM, MFR_MAX };

/* Joins the job (MPI_Init when a launcher started us and MPI is built in),
 * or makes a world of one. NULL with e filled when MPI fails to start or a
 * launcher started several ranks in a build without MPI. */
mfr_comm *mfr_comm_init(int *argc, char ***argv, mfr_error *e);
/* Leaves the job (MPI_Finalize) and frees c. NULL is a no-op. */
void mfr_comm_finish(mfr_comm *c);
/* Ends every rank of the job with status (MPI_Abort); with one rank, exit. */
__attribute__((noreturn)) void mfr_comm_abort(mfr_comm *c, int status);

int mfr_comm_rank(const mfr_comm *c);
int mfr_comm_size(const mfr_comm *c);
/* "MPI (OpenMPI v4.1.4)" or "world of one (no launcher)" */
const char *mfr_comm_describe(const mfr_comm *c);

/* In place: buf (n values of dtype MFR_F32, MFR_F64, MFR_I32 or MFR_I64) becomes the
 * element-wise op (MFR_SUM, MFR_MAX) over all ranks. The sum is in a fixed
 * order for a given number of ranks, so a rerun is bit-identical. */
void mfr_comm_allreduce(mfr_comm *c, void *buf, size_t n, int dtype, int op);

/* Every rank contributes n values of dtype at in; out receives size*n values,
 * rank 0's first. */
void mfr_comm_allgather(mfr_comm *c, const void *in, void *out, size_t n, int dtype);

/* Rank root's n values of dtype at buf go to every rank. */
void mfr_comm_bcast(mfr_comm *c, void *buf, size_t n, int dtype, int root);

/* Rank 0 receives each rank's counts[r] values (contiguous, in rank order)
 * into out; the other ranks pass out = NULL. counts is the same on all. */
void mfr_comm_gatherv(mfr_comm *c, const void *in, void *out, const int64_t *counts, int dtype);

/* The opposite: rank 0's in (sum of counts values) is cut into the ranks'
 * parts; out receives counts[rank] values. */
void mfr_comm_scatterv(mfr_comm *c, const void *in, void *out, const int64_t *counts, int dtype);

void mfr_comm_barrier(mfr_comm *c);

#endif
