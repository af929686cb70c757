/* gemm.h — the one single-precision matrix multiply every part of mfr calls
 * (scoring's similarity blocks, the trainer, mfr-merge-inter; later a cuBLAS
 * backend behind the same contract). Nothing else calls a BLAS directly.
 *
 * Built with oneDNN (MFR_HAVE_DNNL) it runs on dnnl_sgemm, multi-threaded
 * through oneDNN's OpenMP runtime; without it, on a portable cache-blocked
 * loop nest in plain C, split over POSIX threads. Both follow one contract. */
#ifndef MFR_GEMM_H
#define MFR_GEMM_H

#include <stdint.h>

/* Row-major C = alpha * op(A) * op(B) + beta * C, where
 *   op(A) is m x k: A itself (trans_a = 0, A stored m x k, row stride lda >= k)
 *                   or A^T   (trans_a != 0, A stored k x m, lda >= m);
 *   op(B) is k x n: B (trans_b = 0, stored k x n, ldb >= n)
 *                   or B^T   (trans_b != 0, stored n x k, ldb >= k);
 *   C is m x n, row stride ldc >= n; written (=) when beta == 0 — C's old
 *   contents, NaN included, are then never read — and accumulated (+=,
 *   after scaling by beta) otherwise.
 * m, n, k >= 0; with m or n 0 nothing happens; with k 0, C = beta * C.
 * A and B must not overlap C. Sums are accumulated in float, in an order the
 * backend chooses: results differ from a naive loop by float rounding
 * (~1e-6 relative per sqrt(k) terms), not bit for bit, but the same call on
 * the same thread count gives the same bits.
 * Returns 0, or -1 when a size or stride is invalid or the backend fails
 * (out of memory); C is then unspecified. */
int mfr_sgemm(int trans_a, int trans_b, int64_t m, int64_t n, int64_t k, float alpha, const float *a,
	      int64_t lda, const float *b, int64_t ldb, float beta, float *c, int64_t ldc);

/* Threads mfr_sgemm uses: n >= 1, or 0 for every core. With oneDNN this is
 * mfr_cpu_set_threads (OpenMP's setting for calls from the calling thread,
 * shared with the layers); without, the fallback's process-wide count. */
void mfr_gemm_set_threads(int n);
int mfr_gemm_threads(void);

/* What computes mfr_sgemm, for logs and benchmarks: "oneDNN 2.6.3 sgemm" or
 * "portable blocked C". A static string. */
const char *mfr_gemm_backend(void);

#endif
