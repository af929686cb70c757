/* bench_gpu_elem — memory throughput of the per-channel launchers a GPU
 * training step spends its time outside the convolutions in (batch norm's
 * statistics, bn + PReLU, bn + add, their backward: gpu_layers.h), at the
 * activation shapes of iresnet50 (112x112x64 down to 7x7x512) at --batch
 * (default 128) in --dtype (default fp16), against the peer measured in the
 * same run on the same bytes: a device-to-device copy (cudaMemcpyAsync), what
 * the memory system gives a plain stream. The bytes a launcher moves are
 * its minimum — S, one activation's bytes: statistics read S; bn + PReLU
 * reads the input twice (statistics, then apply) and writes once... — see
 * the table below; GB/s = those bytes / time, ratio = GB/s over the copy's
 * (2 S per S copied). Each launcher runs --reps times (default 20) after 3
 * warm-up runs, timed on the host around a device synchronisation.
 *
 *   bench_gpu_elem [--batch N] [--dtype T] [--reps R]
 *
 * Prints a line per launcher and shape, "elem op=... shape=NxHxWxC
 * dtype=... ms=... gbs=... copy_gbs=... ratio=...", then "elem summary
 * ratio_min=... ratio_median=...". Without a GPU it prints why and exits 0. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h" /* defines: mfr_now */
#include "gpu.h" /* defines: mfr_gpu_*, mfr_dtype_parse */
#ifdef MFR_HAVE_CUDA
#include "gpu_layers.h" /* defines: mfr_bn_*_cuda */

/* The launchers timed, and the activations of S bytes each moves. */
enum { OP_STATS, OP_BN_PRELU, OP_BN_ADD, OP_BN_PRELU_BWD, OP_BN_BWD_ACC, N_OPS };
static const char *const OP_NAME[N_OPS] = {"bn_stats", "bn_stats+prelu_apply", "bn_stats+bn_add", "bn_prelu_bwd",
					   "bn_bwd_acc"};
static const double OP_S[N_OPS] = {
	1, /* read x */
	3, /* statistics: read x; apply: read x, write out */
	4, /* statistics of one input: read it; add: read both, write out */
	5, /* sums: read dy, x; input gradient: read dy, x, write din */
	6  /* sums: read dy, x; input gradient: read dy, x, din, write din */
};

typedef struct {
	mfr_gpu *g;
	mfr_dtype t;
	int M, C;
	void *x, *x2, *dy, *out, *din;
	float *gamma, *beta, *slope, *mean, *invstd, *rm, *rv, *dg, *db, *ds;
} bufs;

static void run_op(bufs *b, int op)
{
	mfr_bn_norm n = {b->gamma, b->beta, b->mean, b->invstd};
	switch (op) {
	case OP_STATS:
		mfr_bn_forward_cuda(NULL, b->mean, b->invstd, b->rm, b->rv, b->x, b->gamma, b->beta, b->M, b->C, 1, 1e-5,
				    0.1, b->t, b->g);
		break;
	case OP_BN_PRELU:
		mfr_bn_forward_cuda(NULL, b->mean, b->invstd, b->rm, b->rv, b->x, b->gamma, b->beta, b->M, b->C, 1, 1e-5,
				    0.1, b->t, b->g);
		mfr_bn_apply_cuda(b->out, b->x, &n, b->slope, b->M, b->C, b->t, b->g);
		break;
	case OP_BN_ADD:
		mfr_bn_forward_cuda(NULL, b->mean, b->invstd, b->rm, b->rv, b->x, b->gamma, b->beta, b->M, b->C, 1, 1e-5,
				    0.1, b->t, b->g);
		mfr_bn_add_cuda(b->out, b->x, &n, b->x2, NULL, 0, b->M, b->C, b->t, b->g);
		break;
	case OP_BN_PRELU_BWD:
		mfr_bn_prelu_backward_cuda(b->din, b->dg, b->db, b->ds, b->dy, b->x, &n, b->slope, b->M, b->C, 1, 0, b->t,
					   b->g);
		break;
	default:
		mfr_bn_backward_cuda(b->din, b->dg, b->db, b->dy, b->x, b->gamma, b->mean, b->invstd, b->M, b->C, 1, 1,
				     b->t, b->g);
	}
}

/* Seconds per run of op (op < 0: the copy of S bytes), after 3 warm-up
 * runs; -1 with e filled on a device error. */
static double time_op(bufs *b, int op, int reps, size_t S, mfr_error *e)
{
	double t0 = 0;
	for (int k = 0; k < 3 + reps; k++) {
		if (k == 3) {
			if (mfr_gpu_sync(b->g, e) < 0)
				return -1;
			t0 = mfr_now();
		}
		if (op >= 0)
			run_op(b, op);
		else if (mfr_gpu_copy(b->g, b->out, b->x, S, e) < 0)
			return -1;
	}
	if (mfr_gpu_sync(b->g, e) < 0 || mfr_gpu_check(b->g, op < 0 ? "copy" : OP_NAME[op], e) < 0)
		return -1;
	return (mfr_now() - t0) / reps;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return x < y ? -1 : x > y;
}

static int bench(int N, mfr_dtype t, int reps, mfr_error *e)
{
	static const int shapes[][3] = {{112, 112, 64}, {56, 56, 64}, {28, 28, 128}, {14, 14, 256}, {7, 7, 512}};
	enum { NS = sizeof shapes / sizeof shapes[0] };
	double ratios[NS * N_OPS];
	int nr = 0, rc = -1;
	mfr_gpu *g = mfr_gpu_open(0, e);
	if (!g)
		return -1;
	printf("elem device=\"%s\" batch=%d dtype=%s reps=%d\n", mfr_gpu_name(g), N, mfr_dtype_name(t), reps);
	for (int s = 0; s < NS; s++) {
		bufs b = {.g = g, .t = t, .M = N * shapes[s][0] * shapes[s][1], .C = shapes[s][2]};
		size_t S = (size_t)b.M * b.C * mfr_dtype_size(t), cb = (size_t)b.C * sizeof(float);
		void **act[] = {&b.x, &b.x2, &b.dy, &b.out, &b.din};
		float **per[] = {&b.gamma, &b.beta, &b.slope, &b.mean, &b.invstd, &b.rm, &b.rv, &b.dg, &b.db, &b.ds};
		int ok = 1;
		for (size_t k = 0; k < sizeof act / sizeof act[0] && ok; k++)
			ok = (*act[k] = mfr_gpu_alloc(g, S, e)) && mfr_gpu_zero(g, *act[k], S, e) == 0;
		for (size_t k = 0; k < sizeof per / sizeof per[0] && ok; k++)
			ok = (*per[k] = mfr_gpu_alloc(g, cb, e)) && mfr_gpu_zero(g, *per[k], cb, e) == 0;
		double copy = ok ? time_op(&b, -1, reps, S, e) : -1;
		for (int op = 0; op < N_OPS && copy > 0; op++) {
			double sec = time_op(&b, op, reps, S, e);
			if (sec <= 0) {
				copy = -1;
				break;
			}
			double gbs = OP_S[op] * (double)S / sec / 1e9, cgbs = 2.0 * (double)S / copy / 1e9;
			ratios[nr++] = gbs / cgbs;
			printf("elem op=%s shape=%dx%dx%dx%d dtype=%s ms=%.4f gbs=%.0f copy_gbs=%.0f ratio=%.2f\n", OP_NAME[op],
			       N, shapes[s][0], shapes[s][1], shapes[s][2], mfr_dtype_name(t), sec * 1e3, gbs, cgbs,
			       gbs / cgbs);
		}
		for (size_t k = 0; k < sizeof act / sizeof act[0]; k++)
			mfr_gpu_free(g, *act[k]);
		for (size_t k = 0; k < sizeof per / sizeof per[0]; k++)
			mfr_gpu_free(g, *per[k]);
		if (copy <= 0)
			goto out;
	}
	qsort(ratios, (size_t)nr, sizeof ratios[0], cmp_double);
	printf("elem summary ratio_min=%.2f ratio_median=%.2f (launcher GB/s over a device copy's, %d cases)\n",
	       ratios[0], ratios[nr / 2], nr);
	rc = 0;
out:
	mfr_gpu_close(g);
	return rc;
}
#endif

int main(int argc, char **argv)
{
	char why[128];
	if (mfr_gpu_count(why, sizeof why) == 0) {
		printf("skip: bench_gpu_elem: %s\n", why);
		return 0;
	}
#ifdef MFR_HAVE_CUDA
	int N = 128, reps = 20, t = MFR_F16;
	for (int i = 1; i < argc; i++) {
		const char *v = i + 1 < argc ? argv[i + 1] : "";
		if (!strcmp(argv[i], "--batch"))
			N = atoi(v), i++;
		else if (!strcmp(argv[i], "--dtype"))
			t = mfr_dtype_parse(v), i++;
		else if (!strcmp(argv[i], "--reps"))
			reps = atoi(v), i++;
		else {
			fprintf(stderr, "usage: bench_gpu_elem [--batch N] [--dtype fp16|bf16|fp32] [--reps R]\n");
			return 2;
		}
	}
	if (N < 2 || N > 4096 || reps < 1 || t < 0) {
		fprintf(stderr, "bench_gpu_elem: --batch 2..4096, --reps >= 1, --dtype fp16, bf16 or fp32\n");
		return 2;
	}
	mfr_error e = {{0}};
	if (bench(N, (mfr_dtype)t, reps, &e) < 0) {
		fprintf(stderr, "bench_gpu_elem: %s\n", e.msg);
		return 1;
	}
	return 0;
#else
	(void)argc, (void)argv;
	return 0;
#endif
}
