/* test_gemm.c — mfr_sgemm (gemm.h) against a naive triple loop summed in
 * double: every transpose combination, odd sizes (1, 3, 17, 130, 257: across
 * the fallback's 4-row groups and 256-wide panels), strides larger than the
 * rows, alpha and beta (beta 0 on a NaN-filled C must not read it), k = 0,
 * the invalid arguments, and one and two threads. With oneDNN it checks
 * dnnl_sgemm through the wrapper; built with DNNL=no, the fallback. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "check.h" /* defines: CHECK, check_done */
#include "gemm.h"  /* defines: mfr_sgemm, mfr_gemm_set_threads */
#include "util.h"  /* defines: mfr_rng */

/* Tolerance: each term |a*b| <= 1 (inputs in [-1,1]); float sums of k terms
 * are off by at most ~k*eps in the worst order, far less for random signs.
 * 2e-6 * k (about 17 eps per term) plus 1e-5 relative for alpha, beta and
 * the final rounding; a dropped or doubled product (>= ~1e-2 here) fails. */
static double worst;

static void fill(float *x, size_t n, mfr_rng *r)
{
	for (size_t i = 0; i < n; i++)
		x[i] = (float)(2 * mfr_rng_uniform(r) - 1);
}

static void one(int ta, int tb, int64_t m, int64_t n, int64_t k, float alpha, float beta, int pad, mfr_rng *r)
{
	int64_t lda = (ta ? m : k) + pad, ldb = (tb ? k : n) + pad, ldc = n + pad;
	int64_t arows = ta ? k : m, brows = tb ? n : k;
	float *a = malloc((size_t)(arows * lda + 1) * sizeof *a), *b = malloc((size_t)(brows * ldb + 1) * sizeof *b);
	float *c = malloc((size_t)(m * ldc + 1) * sizeof *c), *c0 = malloc((size_t)(m * ldc + 1) * sizeof *c0);
	fill(a, (size_t)(arows * lda), r);
	fill(b, (size_t)(brows * ldb), r);
	fill(c0, (size_t)(m * ldc), r);
	for (int64_t i = 0; i < m * ldc; i++)
		c[i] = beta == 0 ? NAN : c0[i];
	/* the padding columns of C must stay as they were */
	for (int64_t i = 0; i < m; i++)
		for (int64_t j = n; j < ldc; j++)
			c[i * ldc + j] = c0[i * ldc + j] = 7.0f;
	int rc = mfr_sgemm(ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
	CHECK_EQ_INT(rc, 0);
	int bad = 0;
	for (int64_t i = 0; i < m && !bad; i++) {
		for (int64_t j = 0; j < ldc; j++) {
			double want;
			if (j >= n)
				want = 7.0;
			else {
				double s = 0;
				for (int64_t p = 0; p < k; p++)
					s += (double)(ta ? a[p * lda + i] : a[i * lda + p]) *
					     (double)(tb ? b[j * ldb + p] : b[p * ldb + j]);
				want = alpha * s + (beta == 0 ? 0.0 : beta * (double)c0[i * ldc + j]);
			}
			double got = c[i * ldc + j], tol = 2e-6 * (double)(k + 1) + 1e-5 * fabs(want);
			double d = fabs(got - want);
			if (!(d <= tol)) {
				fprintf(stderr, "    ta=%d tb=%d m=%lld n=%lld k=%lld: C[%lld][%lld] = %.9g, want %.9g\n", ta, tb,
					(long long)m, (long long)n, (long long)k, (long long)i, (long long)j, got, want);
				bad = 1;
				break;
			}
			if (d / tol > worst)
				worst = d / tol;
		}
	}
	CHECK(!bad);
	free(a);
	free(b);
	free(c);
	free(c0);
}

int main(void)
{
	mfr_rng r = {42};
	static const int64_t sizes[][3] = {{1, 1, 1}, {3, 5, 7}, {17, 1, 33}, {1, 130, 9}, {130, 17, 257},
					   {257, 130, 64}, {64, 300, 512}};
	for (int threads = 1; threads <= 2; threads++) {
		mfr_gemm_set_threads(threads);
		for (int ta = 0; ta < 2; ta++)
			for (int tb = 0; tb < 2; tb++)
				for (size_t s = 0; s < sizeof sizes / sizeof *sizes; s++) {
					one(ta, tb, sizes[s][0], sizes[s][1], sizes[s][2], 1.0f, 0.0f, 0, &r);
					one(ta, tb, sizes[s][0], sizes[s][1], sizes[s][2], -0.5f, 1.0f, 3, &r);
					one(ta, tb, sizes[s][0], sizes[s][1], sizes[s][2], 2.0f, 0.25f, 1, &r);
				}
	}
	mfr_gemm_set_threads(0);
	/* k = 0: C = beta * C; beta 0 clears a NaN-filled C */
	float c[6] = {1, 2, 3, 4, 5, 6}, z[6] = {NAN, NAN, NAN, NAN, NAN, NAN}, x[1] = {1};
	CHECK_EQ_INT(mfr_sgemm(0, 0, 2, 3, 0, 1.0f, x, 1, x, 3, 0.5f, c, 3), 0);
	CHECK(c[0] == 0.5f && c[5] == 3.0f);
	CHECK_EQ_INT(mfr_sgemm(1, 1, 2, 3, 0, 1.0f, x, 2, x, 1, 0.0f, z, 3), 0);
	CHECK(z[0] == 0.0f && z[5] == 0.0f);
	/* m or n 0: nothing to do, nothing touched */
	CHECK_EQ_INT(mfr_sgemm(0, 0, 0, 3, 2, 1.0f, NULL, 2, x, 3, 0.0f, NULL, 3), 0);
	/* invalid: negative size, short strides, missing matrices */
	float a[12] = {0}, b[12] = {0}, cc[12];
	CHECK_EQ_INT(mfr_sgemm(0, 0, -1, 2, 2, 1.0f, a, 2, b, 2, 0.0f, cc, 2), -1);
	CHECK_EQ_INT(mfr_sgemm(0, 0, 2, 2, 3, 1.0f, a, 2, b, 2, 0.0f, cc, 2), -1); /* lda < k */
	CHECK_EQ_INT(mfr_sgemm(1, 0, 3, 2, 2, 1.0f, a, 2, b, 2, 0.0f, cc, 2), -1); /* A^T: lda < m */
	CHECK_EQ_INT(mfr_sgemm(0, 1, 2, 2, 3, 1.0f, a, 3, b, 2, 0.0f, cc, 2), -1); /* B^T: ldb < k */
	CHECK_EQ_INT(mfr_sgemm(0, 0, 2, 3, 2, 1.0f, a, 2, b, 3, 0.0f, cc, 2), -1); /* ldc < n */
	CHECK_EQ_INT(mfr_sgemm(0, 0, 2, 2, 2, 1.0f, NULL, 2, b, 2, 0.0f, cc, 2), -1);
	printf("backend: %s; worst difference %.1f%% of the tolerance\n", mfr_gemm_backend(), 100 * worst);
	return check_done();
}
