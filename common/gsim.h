/* gsim.h — similarity blocks on a GPU: the block producer of score.h
 * (mfr_block_fn with its bind hook, mfr_bind_fn) over the project's one
 * cuBLAS GEMM (gpu.h), for mfr-score's blocked protocols and mfr-merge-inter's
 * centre-pair search (clean.h, mfr_pair_search_with). Blocks are computed in
 * float32 with TF32 off, so they equal the CPU's mfr_sgemm blocks to float
 * rounding; the CPU consumers (impostor selection, genuine scores, top-k per
 * centre) are unchanged.
 *
 * What it does: mfr_gsim_bind copies the run's operand sets to the device
 * once, as float32, in chunks of rows (a set too large for the memory budget
 * keeps a resident prefix; the rows past it stay on the host and are copied
 * up with each block that needs them); mfr_gsim_block multiplies the block's
 * rows where they lie (one GEMM per pair of chunk pieces, into one device
 * block) and copies the block back through page-locked memory.
 * What it is not: a device-side consumer — every score comes back to the
 * host, which is what keeps the consumers exact and shared with the CPU path.
 *
 * Threads: mfr_gsim_block may be called from several threads at once (the
 * score engine's workers). A block's GPU work is queued under one lock on
 * g's stream; the caller then waits for its own block only (an event on its
 * page-locked lane, one of at most 16: page-locked memory of at most 16
 * blocks) and copies it out unlocked, so one worker's copy-out and scan
 * overlap the next worker's GEMM. Within one call the work is synchronous
 * (no block is prefetched): the overlap comes from the callers' threads, and
 * a single caller (mfr_pair_search_with) waits for each of its tiles.
 *
 * Only built with CUDA (common/cuda/gsim.cu): without MFR_HAVE_CUDA these
 * functions do not exist, so callers keep their use behind the macro. */
#ifndef MFR_GSIM_H
#define MFR_GSIM_H

#include <stddef.h>
#include <stdint.h>

#include "gpu.h"  /* defines: mfr_gpu */
#include "util.h" /* defines: mfr_error */

#ifdef __cplusplus
extern "C" {
#endif

typedef struct mfr_gsim mfr_gsim;

/* A producer on g (opened by the caller, outliving the result; from now on
 * used only through the producer's lock, so the caller must not use g
 * concurrently). TF32 is turned off on g. budget: bytes of device memory the
 * bound sets may occupy (0: the free memory at bind time less an eighth of
 * the device, at least 1 GiB, left for the block buffers); chunk_rows: rows
 * per device chunk (0: 1 GiB worth). Small values are for tests. NULL with e
 * filled when memory runs out. */
mfr_gsim *mfr_gsim_new(mfr_gpu *g, size_t budget, int64_t chunk_rows, mfr_error *e);
/* Frees the device copies, buffers and lanes (not g). NULL is allowed. */
void mfr_gsim_free(mfr_gsim *s);

/* mfr_bind_fn (score.h), ctx an mfr_gsim: drops what was bound, then, when
 * a is not NULL, uploads rows a (na x dim) and b (nb x dim; nothing more
 * when b == a and nb == na) chunk by chunk while the budget lasts. The rows
 * must stay unchanged until the next bind. Returns 0, or -1 with e filled
 * and nothing bound. */
int mfr_gsim_bind(void *ctx, const float *a, int64_t na, const float *b, int64_t nb, int dim, mfr_error *e);

/* mfr_block_fn (score.h), ctx an mfr_gsim: out (na x nb, row stride ldo >=
 * nb; the rest of each row untouched) = a (na x dim) b (nb x dim)^T in
 * float32. Rows inside a bound set (row-aligned, same dim) are read from
 * its device chunks; any other rows are copied up for this block alone.
 * na, nb, dim <= INT32_MAX. Returns 0 or -1 with e filled. */
int mfr_gsim_block(void *ctx, const float *a, int64_t na, const float *b, int64_t nb, int dim, float *out,
		   int64_t ldo, mfr_error *e);

/* Counters since mfr_gsim_new, and the current binding. */
typedef struct {
	uint64_t binds, blocks, gemms;
	uint64_t bytes_bound;  /* copied up by mfr_gsim_bind */
	uint64_t bytes_staged; /* copied up by mfr_gsim_block (rows not resident) */
	uint64_t bytes_back;   /* blocks copied down */
	int64_t rows_bound, rows_resident; /* now: rows of the bound sets, and of them on the device */
	int64_t chunk_rows;                /* of the current binding */
	int lanes; /* page-locked block buffers made: the most callers at once in a block's GPU part, <= 16 */
} mfr_gsim_stats;
void mfr_gsim_get_stats(mfr_gsim *s, mfr_gsim_stats *st);

#ifdef __cplusplus
}
#endif

#endif
