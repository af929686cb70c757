/* bench_score.c — mfr-score's all-vs-all at the WebFace260M test set's
 * size: all 1.67e9 pairs of 57,715 random L2-normalised 512-d embeddings in
 * 2,510 labels (23 faces each on average, as the challenge's test set),
 * with the exact FNMR at FMR = 1e-5 (the selection keeps the 2 x 1e-5 x N
 * highest impostor scores, what mfr-score keeps for that target). Prints the
 * seconds, pairs/s, and how the time splits between the GEMM (timed alone on
 * a sample of the tiles, on the same threads) and the scan (histogram, selection,
 * genuine scores). Goal: under 60 s on 2 cores. Asserts nothing.
 * A GPU row follows: the same run with the blocks from cuBLAS (gsim.h; a
 * skip line without CUDA or a GPU), its FNMR beside the CPU's, and the GPU
 * blocks alone (GEMM and copy back, one caller) on a sample of tiles.
 * MFR_BENCH_SCORE_N=N runs N faces instead (a quick look). */
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "cli.h"   /* defines: mfr_now */
#include "gemm.h"  /* defines: mfr_sgemm, mfr_gemm_backend */
#include "gpu.h"   /* defines: mfr_gpu_count, mfr_gpu_open */
#include "gsim.h"  /* defines: mfr_gsim_* (with CUDA only) */
#include "score.h" /* defines: mfr_score_all, mfr_scores_*, mfr_tar_at_far */

typedef struct {
	const float *v;
	int64_t n, tile, dim, first, step;
	float *buf;
	double flops;
} gjob;

/* GEMM alone over the upper-triangle tiles first, first+step, ... */
static void *gemm_only(void *arg)
{
	gjob *g = arg;
	mfr_gemm_set_threads(1);
	int64_t nt = (g->n + g->tile - 1) / g->tile, t = 0;
	for (int64_t bi = 0; bi < nt; bi++)
		for (int64_t bj = bi; bj < nt; bj++, t++) {
			if (t % g->step != g->first)
				continue;
			int64_t i0 = bi * g->tile, j0 = bj * g->tile;
			int64_t ni = g->n - i0 < g->tile ? g->n - i0 : g->tile, nj = g->n - j0 < g->tile ? g->n - j0 : g->tile;
			mfr_sgemm(0, 1, ni, nj, g->dim, 1.0f, g->v + i0 * g->dim, g->dim, g->v + j0 * g->dim, g->dim, 0.0f,
				  g->buf, nj);
			g->flops += 2.0 * (double)ni * (double)nj * (double)g->dim;
		}
	return NULL;
}

/* The GPU row: mfr_score_all again with the GPU's blocks, then the blocks
 * alone on the first 32 tiles of the triangle. */
static void gpu_row(const mfr_engine *cpu, mfr_emb_set *s, uint64_t keep, double fmr, double cpu_fnmr,
		    double cpu_secs)
{
#ifdef MFR_HAVE_CUDA
	char why[128];
	if (mfr_gpu_count(why, sizeof why) == 0) {
		printf("skip: GPU row: %s\n", why);
		return;
	}
	mfr_error e;
	mfr_gpu *gpu = mfr_gpu_open(0, &e);
	mfr_gsim *gs = gpu ? mfr_gsim_new(gpu, 0, 0, &e) : NULL;
	if (!gs) {
		printf("skip: GPU row: %s\n", e.msg);
		mfr_gpu_close(gpu);
		return;
	}
	mfr_engine g = *cpu;
	g.block = mfr_gsim_block;
	g.bind = mfr_gsim_bind;
	g.block_ctx = gs;
	mfr_scores *sc = mfr_scores_new(keep, -1, 1, &e);
	double t0 = mfr_now();
	if (!sc || mfr_score_all(&g, s, sc, &e) < 0 || mfr_scores_finish(sc, &e) < 0) {
		printf("GPU row failed: %s\n", e.msg);
	} else {
		double secs = mfr_now() - t0, pairs = (double)s->n * (double)(s->n - 1) / 2;
		mfr_op_point o = mfr_tar_at_far(sc, fmr, MFR_AT_MOST);
		mfr_gsim_stats st;
		mfr_gsim_get_stats(gs, &st);
		printf("all-vs-all on GPU 0 %s (cuBLAS fp32, %d threads scanning): %.2f s = %.3g pairs/s, %.1fx the CPU's; "
		       "FNMR at FMR=1e-5 %.6f (CPU %.6f); %d lanes\n",
		       mfr_gpu_name(gpu), cpu->threads, secs, pairs / secs, cpu_secs / secs, 1 - o.tar, cpu_fnmr, st.lanes);
		/* the blocks alone: one caller, 2048-row tiles, GEMM + copy back */
		int64_t tile = 2048, nt = (s->n + tile - 1) / tile, done = 0;
		float *buf = malloc((size_t)tile * (size_t)tile * sizeof *buf);
		double flops = 0, t1 = mfr_now();
		int bad = !buf || mfr_gsim_bind(gs, s->vec, s->n, s->vec, s->n, s->dim, &e) < 0;
		for (int64_t bi = 0; bi < nt && !bad && done < 32; bi++)
			for (int64_t bj = bi; bj < nt && !bad && done < 32; bj++, done++) {
				int64_t i0 = bi * tile, j0 = bj * tile;
				int64_t ni = s->n - i0 < tile ? s->n - i0 : tile, nj = s->n - j0 < tile ? s->n - j0 : tile;
				bad = mfr_gsim_block(gs, s->vec + i0 * s->dim, ni, s->vec + j0 * s->dim, nj, s->dim, buf, nj, &e) < 0;
				flops += 2.0 * (double)ni * (double)nj * s->dim;
			}
		double bsecs = mfr_now() - t1;
		if (bad)
			printf("GPU blocks alone failed: %s\n", buf ? e.msg : "out of memory");
		else
			printf("GPU blocks alone (bind + %lld tiles of %lld, one caller, GEMM + copy back): %.1f GFLOP/s, %.2f GB/s "
			       "back\n", (long long)done, (long long)tile, flops / bsecs / 1e9,
			       flops / (2.0 * s->dim) * 4 / bsecs / 1e9);
		mfr_gsim_bind(gs, NULL, 0, NULL, 0, 0, &e);
		free(buf);
	}
	mfr_scores_free(sc);
	mfr_gsim_free(gs);
	mfr_gpu_close(gpu);
#else
	(void)cpu, (void)s, (void)keep, (void)fmr, (void)cpu_fnmr, (void)cpu_secs;
	printf("skip: GPU row: built without CUDA\n");
#endif
}

int main(void)
{
	int64_t n = 57715;
	const char *env = getenv("MFR_BENCH_SCORE_N");
	if (env && atoll(env) >= 100)
		n = atoll(env);
	const int dim = 512, labels = (int)(n / 23), threads = (int)sysconf(_SC_NPROCESSORS_ONLN);
	const double fmr = 1e-5;
	mfr_emb_set s = {.n = n, .dim = dim};
	s.vec = malloc((size_t)n * dim * sizeof *s.vec);
	s.ids = malloc((size_t)n * sizeof *s.ids);
	s.labels = malloc((size_t)n * sizeof *s.labels);
	s.flags = calloc((size_t)n, sizeof *s.flags);
	if (!s.vec || !s.ids || !s.labels || !s.flags)
		return 1;
	mfr_rng r = {2021};
	for (int64_t i = 0; i < n; i++) {
		for (int d = 0; d < dim; d++)
			s.vec[i * dim + d] = (float)mfr_rng_normal(&r);
		s.ids[i] = (uint64_t)i;
		s.labels[i] = (int32_t)mfr_rng_below(&r, (uint64_t)labels);
	}
	mfr_emb_set_normalize(&s);
	/* the pair counts are known before scoring: size the selection */
	uint64_t *cnt = calloc((size_t)labels, sizeof *cnt), gen = 0;
	for (int64_t i = 0; i < n; i++)
		cnt[s.labels[i]]++;
	for (int l = 0; l < labels; l++)
		gen += cnt[l] * (cnt[l] - 1) / 2;
	free(cnt);
	uint64_t pairs = (uint64_t)n * (uint64_t)(n - 1) / 2, imp = pairs - gen;
	uint64_t keep = (uint64_t)(2 * fmr * (double)imp) + 16;

	mfr_error e;
	mfr_engine g = {.sim = MFR_SIM_COSINE, .threads = threads};
	mfr_scores *sc = mfr_scores_new(keep, -1, 1, &e);
	double t0 = mfr_now();
	if (!sc || mfr_score_all(&g, &s, sc, &e) < 0 || mfr_scores_finish(sc, &e) < 0) {
		fprintf(stderr, "bench_score: %s\n", e.msg);
		return 1;
	}
	double secs = mfr_now() - t0;
	mfr_op_point o = mfr_tar_at_far(sc, fmr, MFR_AT_MOST);
	printf("all-vs-all: %lld faces x 512-d, %d labels: %llu pairs (%llu genuine) in %.2f s = %.3g pairs/s "
	       "(%d threads, %s)\n",
	       (long long)n, labels, (unsigned long long)pairs, (unsigned long long)gen, secs, (double)pairs / secs,
	       threads, mfr_gemm_backend());
	printf("FNMR at FMR=1e-5: %.6f (%s; threshold %.6f, FMR %.3g; %llu highest impostor scores kept)\n", 1 - o.tar,
	       o.how == MFR_EXACT ? "exact" : "not exact", o.threshold, o.far, (unsigned long long)keep);
	mfr_scores_free(sc);

	/* the GEMM's share: a sample of the tiles again, GEMM alone, one GEMM
	 * thread per worker as in mfr_score_all; worker k takes the tiles t
	 * with t % 16 == k (so 2 workers time 1/8 of the triangle) */
	gjob j[16];
	pthread_t th[16];
	int nt = threads < 16 ? threads : 16;
	double t1 = mfr_now(), flops = 0;
	for (int k = 0; k < nt; k++)
		j[k] = (gjob){s.vec, n, 2048, dim, k, 16, malloc((size_t)2048 * 2048 * sizeof(float)), 0};
	for (int k = 1; k < nt; k++)
		pthread_create(&th[k], NULL, gemm_only, &j[k]);
	gemm_only(&j[0]);
	for (int k = 1; k < nt; k++)
		pthread_join(th[k], NULL);
	double gsecs = mfr_now() - t1;
	for (int k = 0; k < nt; k++) {
		flops += j[k].flops;
		free(j[k].buf);
	}
	double total_flops = 2.0 * (double)n * (double)n / 2 * dim; /* the triangle, diagonal tiles whole */
	double gemm_est = gsecs * total_flops / flops;
	printf("split: GEMM alone %.1f GFLOP/s -> ~%.1f s of the %.1f s (%.0f%%); scan (histogram, selection, "
	       "genuine) the rest, ~%.1f s\n",
	       flops / gsecs / 1e9, gemm_est, secs, 100 * gemm_est / secs, secs - gemm_est);
	gpu_row(&g, &s, keep, fmr, 1 - o.tar, secs);
	mfr_emb_set_free(&s);
	return 0;
}
