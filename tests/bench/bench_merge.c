/* bench_merge.c — the centre-pair search of mfr-merge-inter (mfr_pair_search):
 * N random unit centres of 512 dimensions (default 50,000, tens of seconds
 * on 2 shared cores; `bench_merge 100000` for the size; a second
 * argument sets the thread count, default every core), a threshold of 0.3 and top-10, in 4096 x 4096 tiles. Random 512-d directions
 * almost never pass 0.3, so this times the GEMM and the scan, which is the
 * whole cost when few pairs pass. Prints seconds, centre pairs scanned per
 * second and GEMM GFLOP/s; asserts nothing. Issue 7's goal: 100k centres in
 * under 10 s on 2 cores. */
#include <stdio.h>
#include <stdlib.h>

#include "clean.h" /* defines: mfr_pair_search, mfr_unit */
#include "cli.h"   /* defines: mfr_now */
#include "gemm.h"  /* defines: mfr_gemm_backend */

int main(int argc, char **argv)
{
	size_t n = argc > 1 ? (size_t)atol(argv[1]) : 50000;
	int threads = argc > 2 ? atoi(argv[2]) : 0;
	uint32_t d = 512;
	size_t block = 4096;
	float *c = malloc(n * d * sizeof *c);
	if (!c || n < 2) {
		fprintf(stderr, "bench_merge: bad size or out of memory\n");
		return 1;
	}
	mfr_rng r = {42};
	for (size_t i = 0; i < n * d; i++)
		c[i] = (float)mfr_rng_normal(&r);
	for (size_t i = 0; i < n; i++)
		mfr_unit(c + i * d, d);
	mfr_topk t;
	mfr_error e;
	double t0 = mfr_now();
	if (mfr_pair_search(c, n, d, 0.3f, 10, block, threads, &t, &e) < 0) {
		fprintf(stderr, "bench_merge: %s\n", e.msg);
		return 1;
	}
	double s = mfr_now() - t0;
	size_t found = 0;
	for (size_t i = 0; i < n; i++)
		found += t.n_nb[i];
	double pairs = (double)n * (n - 1) / 2;
	double flops = 0; /* what the GEMM did: tiles on and above the diagonal */
	for (size_t i0 = 0; i0 < n; i0 += block)
		for (size_t j0 = i0; j0 < n; j0 += block)
			flops += 2.0 * d * (double)(n - i0 < block ? n - i0 : block) * (double)(n - j0 < block ? n - j0 : block);
	printf("pair search: %zu centres x %u d, threshold 0.3, top-10, tiles %zu, threads %d (%s)\n", n, d, block,
	       threads, mfr_gemm_backend());
	printf("  %.2f s, %.3g pairs/s, %.1f GFLOP/s, %zu neighbour entries found\n", s, pairs / s, flops / s / 1e9,
	       found);
	mfr_topk_free(&t);
	free(c);
	return 0;
}
