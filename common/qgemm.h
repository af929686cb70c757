/* qgemm.h — the exact int8 matrix product behind the int8 centre-pair search
 * of mfr-merge-inter: int8 rows times int8 rows, summed exactly in int32. It
 * is not a general quantised GEMM (no offsets, scales or transposes): scales
 * and error bounds are the caller's business (common/clean.c).
 *
 * Built with oneDNN (MFR_HAVE_DNNL) on a CPU with VNNI it runs on
 * dnnl_gemm_s8s8s32; otherwise on a portable loop nest in plain C. Exactness
 * is the contract, not a hope: oneDNN's int8 kernels without VNNI sum pairs of
 * u8 x s8 products in saturating int16 (vpmaddubsw), so on such CPUs, and
 * for k above what its compensation keeps inside int32, the portable loop
 * runs instead. */
#ifndef MFR_QGEMM_H
#define MFR_QGEMM_H

#include <stdint.h>

/* The largest k mfr_qgemm_s8 accepts: k * 128 * 128 and oneDNN's shifted
 * operands (a + 128 <= 255 times |b| <= 128) stay below 2^31. */
#define MFR_QGEMM_MAX_K 65536

/* Row-major C = A * B^T, exactly:
 *   A is m x k int8 (row stride lda >= k), B is n x k int8 (row stride
 *   ldb >= k: the rows of B are the columns of the product), C is m x n
 *   int32 (row stride ldc >= n), written (=), never read.
 * c[i*ldc + j] = sum over p of a[i*lda + p] * b[j*ldb + p], the exact
 * integer for any int8 values (-128 included), 0 <= k <= MFR_QGEMM_MAX_K.
 * threads: 1 computes on the calling thread (for callers that parallelise
 * over tiles themselves, several may call at once), n > 1 uses up to n
 * threads for this call, 0 every core.
 * Returns 0, or -1 when a size or stride is invalid or the backend fails
 * (out of memory); C is then unspecified. */
int mfr_qgemm_s8(int64_t m, int64_t n, int64_t k, const int8_t *a, int64_t lda, const int8_t *b,
		 int64_t ldb, int32_t *c, int64_t ldc, int threads);

/* 1 when mfr_qgemm_s8 runs on oneDNN's VNNI kernels (tens of times faster
 * than the portable loop), else 0: what lets the pair search choose int8. */
int mfr_qgemm_fast(void);

/* What computes mfr_qgemm_s8, for logs and benchmarks: "oneDNN 2.6.3
 * s8s8s32 (VNNI)" or "portable C (...why...)". A static string. */
const char *mfr_qgemm_backend(void);

#endif
