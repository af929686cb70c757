/* gemm.c — mfr_sgemm on oneDNN's dnnl_sgemm, or on a portable blocked loop
 * nest when mfr is built without oneDNN. The argument checks and the
 * degenerate cases (m or n 0, k 0) are shared, so both backends agree on
 * them; only the product itself differs.
 *
 * The fallback is not a tuned BLAS: it packs a KC x NC panel of op(B) into a
 * contiguous buffer (so the inner loop is a unit-stride, vectorisable
 * multiply-add whatever the transposes), updates four rows of C per pass over
 * the panel (each panel load feeds four multiply-adds), and splits C's rows
 * over POSIX threads. On one AVX2 core it reaches a few GFLOP/s, a tenth of
 * oneDNN's: correct and usable, not fast. */
#include "gemm.h" /* defines: mfr_sgemm, mfr_gemm_set_threads */

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "dnnl_cpu.h" /* defines: mfr_cpu_set_threads, mfr_cpu_threads, mfr_cpu_backend */

#ifdef MFR_HAVE_DNNL
#include <dnnl.h>
#endif

/* C = beta * C over m x n (beta 0 writes zeros without reading C). */
static void scale_c(int64_t m, int64_t n, float beta, float *c, int64_t ldc)
{
	for (int64_t i = 0; i < m; i++) {
		float *r = c + i * ldc;
		if (beta == 0.0f)
			memset(r, 0, (size_t)n * sizeof *r);
		else if (beta != 1.0f)
			for (int64_t j = 0; j < n; j++)
				r[j] *= beta;
	}
}

#ifndef MFR_HAVE_DNNL

/* Panel sizes: a KC x NC panel of op(B) is 256 KiB of floats, which stays in
 * a 1-2 MiB L2 while every row of C streams past it; a row segment of C
 * (NC floats, 2 KiB) stays in L1 across the KC updates of a pass. */
enum { KC = 256, NC = 256 };

static atomic_int fb_threads; /* 0: every core; set from the scoring workers at once */

typedef struct {
	int ta, tb;
	int64_t m, n, k, lda, ldb, ldc, r0, r1;
	float alpha, beta;
	const float *a, *b;
	float *c;
	int failed;
} job;

static void run_rows(job *j)
{
	float *bp = malloc((size_t)KC * NC * sizeof *bp);
	if (!bp) {
		j->failed = 1;
		return;
	}
	for (int64_t jc = 0; jc < j->n; jc += NC) {
		int64_t nc = j->n - jc < NC ? j->n - jc : NC;
		for (int64_t pc = 0; pc < j->k; pc += KC) {
			int64_t kc = j->k - pc < KC ? j->k - pc : KC;
			/* pack op(B)[pc.., jc..] as kc rows of nc */
			for (int64_t p = 0; p < kc; p++)
				for (int64_t q = 0; q < nc; q++)
					bp[p * nc + q] = j->tb ? j->b[(jc + q) * j->ldb + pc + p] : j->b[(pc + p) * j->ldb + jc + q];
			for (int64_t i = j->r0; i < j->r1; i += 4) {
				int rows = j->r1 - i < 4 ? (int)(j->r1 - i) : 4;
				float *cr[4];
				for (int r = 0; r < 4; r++)
					cr[r] = j->c + (i + (r < rows ? r : 0)) * j->ldc + jc;
				if (pc == 0)
					scale_c(rows, nc, j->beta, cr[0], j->ldc);
				for (int64_t p = 0; p < kc; p++) {
					float av[4];
					for (int r = 0; r < 4; r++) {
						int64_t ii = i + (r < rows ? r : 0), pp = pc + p;
						av[r] = j->alpha * (j->ta ? j->a[pp * j->lda + ii] : j->a[ii * j->lda + pp]);
					}
					const float *brow = bp + p * nc;
					if (rows == 4) {
						float *c0 = cr[0], *c1 = cr[1], *c2 = cr[2], *c3 = cr[3];
						for (int64_t q = 0; q < nc; q++) {
							float bv = brow[q];
							c0[q] += av[0] * bv;
							c1[q] += av[1] * bv;
							c2[q] += av[2] * bv;
							c3[q] += av[3] * bv;
						}
					} else
						for (int r = 0; r < rows; r++)
							for (int64_t q = 0; q < nc; q++)
								cr[r][q] += av[r] * brow[q];
				}
			}
		}
	}
	free(bp);
}

static void *run_thread(void *arg)
{
	run_rows(arg);
	return NULL;
}

static int product(int ta, int tb, int64_t m, int64_t n, int64_t k, float alpha, const float *a, int64_t lda,
		   const float *b, int64_t ldb, float beta, float *c, int64_t ldc)
{
	int nt = fb_threads > 0 ? fb_threads : (int)sysconf(_SC_NPROCESSORS_ONLN);
	if (nt < 1)
		nt = 1;
	/* below ~2M multiply-adds a thread costs more than it saves */
	if ((double)m * n * k < 2e6 || m < 8)
		nt = 1;
	if (nt > 64)
		nt = 64;
	if (nt > m / 4)
		nt = (int)(m / 4) > 0 ? (int)(m / 4) : 1;
	job jobs[64];
	pthread_t th[64];
	int started[64] = {0};
	int64_t per = (m + nt - 1) / nt;
	per = (per + 3) / 4 * 4;
	for (int t = 0; t < nt; t++) {
		int64_t r0 = t * per, r1 = r0 + per < m ? r0 + per : m;
		jobs[t] = (job){ta, tb, m, n, k, lda, ldb, ldc, r0 < m ? r0 : m, r1, alpha, beta, a, b, c, 0};
	}
	for (int t = 1; t < nt; t++)
		started[t] = pthread_create(&th[t], NULL, run_thread, &jobs[t]) == 0;
	run_rows(&jobs[0]);
	int failed = jobs[0].failed;
	for (int t = 1; t < nt; t++) {
		if (started[t])
			pthread_join(th[t], NULL);
		else
			run_rows(&jobs[t]); /* no thread: do its share here */
		failed |= jobs[t].failed;
	}
	return failed ? -1 : 0;
}

void mfr_gemm_set_threads(int n) { fb_threads = n > 0 ? n : 0; }

int mfr_gemm_threads(void)
{
	int n = fb_threads > 0 ? fb_threads : (int)sysconf(_SC_NPROCESSORS_ONLN);
	return n > 0 ? n : 1;
}

const char *mfr_gemm_backend(void) { return "portable blocked C"; }

#else /* MFR_HAVE_DNNL */

static int product(int ta, int tb, int64_t m, int64_t n, int64_t k, float alpha, const float *a, int64_t lda,
		   const float *b, int64_t ldb, float beta, float *c, int64_t ldc)
{
	dnnl_status_t st = dnnl_sgemm(ta ? 'T' : 'N', tb ? 'T' : 'N', m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
	return st == dnnl_success ? 0 : -1;
}

void mfr_gemm_set_threads(int n) { mfr_cpu_set_threads(n); }
int mfr_gemm_threads(void) { return mfr_cpu_threads(); }

const char *mfr_gemm_backend(void)
{
	static char name[80];
	if (!name[0]) {
		const dnnl_version_t *v = dnnl_version();
		snprintf(name, sizeof name, "oneDNN %d.%d.%d sgemm", v->major, v->minor, v->patch);
	}
	return name;
}

#endif

int mfr_sgemm(int trans_a, int trans_b, int64_t m, int64_t n, int64_t k, float alpha, const float *a,
	      int64_t lda, const float *b, int64_t ldb, float beta, float *c, int64_t ldc)
{
	if (m < 0 || n < 0 || k < 0)
		return -1;
	if (m == 0 || n == 0)
		return 0;
	if (ldc < n || !c)
		return -1;
	if (k == 0) {
		scale_c(m, n, beta, c, ldc);
		return 0;
	}
	/* the stored shapes: A is m x k or k x m, B is k x n or n x k */
	if (!a || !b || lda < (trans_a ? m : k) || ldb < (trans_b ? k : n))
		return -1;
	return product(trans_a != 0, trans_b != 0, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
}
