/* test_qgemm.c — mfr_qgemm_s8 against a naive int64 loop, bit for bit:
 * random int8 of the full range (-128 and 127 included), shapes that are not
 * multiples of anything, row strides wider than k, 1, 2 and every thread;
 * the largest products at the largest k (where a saturating or overflowing
 * kernel would show); the degenerate and invalid arguments. */
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "qgemm.h" /* defines: the functions under test */
#include "util.h"  /* defines: mfr_rng */

static int8_t rand_s8(mfr_rng *r)
{
	uint64_t x = mfr_rng_next(r);
	/* a quarter of the values at the extremes, the rest uniform */
	switch (x & 7) {
	case 0: return -128;
	case 1: return 127;
	default: return (int8_t)(x >> 8);
	}
}

/* One case: m x k by n x k with strides lda = k + pa, ldb = k + pb, ldc = n + pc. */
static void one(mfr_rng *r, int64_t m, int64_t n, int64_t k, int64_t pa, int64_t pb, int64_t pc, int threads)
{
	int64_t lda = k + pa, ldb = k + pb, ldc = n + pc;
	int8_t *a = malloc((size_t)(m * lda + 1)), *b = malloc((size_t)(n * ldb + 1));
	int32_t *c = malloc((size_t)(m * ldc + 1) * sizeof *c);
	for (int64_t i = 0; i < m * lda; i++)
		a[i] = rand_s8(r);
	for (int64_t i = 0; i < n * ldb; i++)
		b[i] = rand_s8(r);
	for (int64_t i = 0; i < m * ldc; i++)
		c[i] = 0x5a5a5a5a; /* written, not accumulated: must be overwritten */
	CHECK(mfr_qgemm_s8(m, n, k, a, lda, b, ldb, c, ldc, threads) == 0);
	int64_t bad = 0, wi = -1, wj = -1;
	for (int64_t i = 0; i < m; i++)
		for (int64_t j = 0; j < n; j++) {
			int64_t s = 0;
			for (int64_t p = 0; p < k; p++)
				s += (int64_t)a[i * lda + p] * b[j * ldb + p];
			if (s != c[i * ldc + j]) {
				if (!bad)
					wi = i, wj = j;
				bad++;
			}
		}
	CHECK_EQ_INT(bad, 0);
	if (bad)
		fprintf(stderr, "    %lld x %lld x %lld threads %d: %lld wrong, first (%lld, %lld)\n", (long long)m,
			(long long)n, (long long)k, threads, (long long)bad, (long long)wi, (long long)wj);
	free(a);
	free(b);
	free(c);
}

static void test_random(void)
{
	mfr_rng r = {11};
	int64_t shapes[][3] = {{1, 1, 1}, {3, 5, 7}, {17, 33, 64}, {64, 64, 512}, {100, 37, 513}, {512, 300, 512},
			       {7, 129, 1000}};
	int th[3] = {1, 2, 0};
	for (size_t s = 0; s < sizeof shapes / sizeof *shapes; s++)
		for (int t = 0; t < 3; t++)
			one(&r, shapes[s][0], shapes[s][1], shapes[s][2], t, 2 * t, 3 * t, th[t]);
}

/* The largest sums: k = MFR_QGEMM_MAX_K of -128 * -128 (2^30), of 127 * -128
 * and of 127 * 127 with the operands in both orders. */
static void test_extremes(void)
{
	int64_t k = MFR_QGEMM_MAX_K;
	int8_t *a = malloc((size_t)(3 * k)), *b = malloc((size_t)(3 * k));
	int8_t v[3] = {-128, 127, -128};
	for (int i = 0; i < 3; i++) {
		memset(a + i * k, (uint8_t)v[i], (size_t)k);
		memset(b + i * k, (uint8_t)v[2 - i], (size_t)k);
	}
	int32_t c[9];
	CHECK(mfr_qgemm_s8(3, 3, k, a, k, b, k, c, 3, 1) == 0);
	for (int i = 0; i < 3; i++)
		for (int j = 0; j < 3; j++)
			CHECK_EQ_INT(c[i * 3 + j], (int64_t)v[i] * v[2 - j] * k);
	free(a);
	free(b);
}

static void test_args(void)
{
	int8_t a[4] = {1, 2, 3, 4};
	int32_t c[4] = {9, 9, 9, 9};
	CHECK(mfr_qgemm_s8(2, 2, 0, a, 0, a, 0, c, 2, 1) == 0); /* k 0: zeros */
	CHECK(c[0] == 0 && c[3] == 0);
	CHECK(mfr_qgemm_s8(0, 2, 2, a, 2, a, 2, c, 2, 1) == 0);
	CHECK(mfr_qgemm_s8(2, 2, 2, a, 1, a, 2, c, 2, 1) == -1);  /* lda < k */
	CHECK(mfr_qgemm_s8(2, 2, 2, a, 2, a, 2, c, 1, 1) == -1);  /* ldc < n */
	CHECK(mfr_qgemm_s8(-1, 2, 2, a, 2, a, 2, c, 2, 1) == -1);
	CHECK(mfr_qgemm_s8(1, 1, MFR_QGEMM_MAX_K + 1, a, MFR_QGEMM_MAX_K + 1, a, MFR_QGEMM_MAX_K + 1, c, 1, 1) == -1);
}

int main(void)
{
	printf("backend: %s\n", mfr_qgemm_backend());
	test_random();
	test_extremes();
	test_args();
	return check_done();
}
