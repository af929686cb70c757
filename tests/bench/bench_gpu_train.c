/* bench_gpu_train — images per second of mfr's training step on one GPU
 * (gtrain.h: backbone forward and backward in the chosen type, the fp32
 * classifier with Partial FC, SGD), on synthetic batches: the peer of
 * tests/gpu/torch_ref.py, which times PyTorch's step on the same network and
 * loss on the same GPU. Each step uploads its batch from host memory as
 * mfr-train does: raw pixels from page-locked buffers (two, as the loader's
 * ring), normalised on the GPU (PyTorch's peer keeps its batches on the GPU:
 * the upload is counted against mfr).
 *
 *   bench_gpu_train [--arch A] [--batch N] [--classes C] [--rate R] [--dtype T]
 *                   [--tf32] [--steps S] [--warmup W] [--max-classes] [--profile]
 *
 * --tf32 as mfr-train's: fp32 GEMMs (the classifier's, whatever --dtype)
 * and fp32 convolutions on TF32 tensor cores (torch_ref.py --tf32 on).
 * Prints one line: "mfr arch=r50 batch=128 dtype=fp16 classes=100000 rate=1
 * img_s=... step_ms=... peak_gib=... loss=...". --max-classes instead finds
 * the largest class count whose step fits at --rate (default 0.1 there): the
 * planner's figure, then confirmed by building it and running two steps,
 * halving the gap on failure. --profile times the steps span by span
 * (mfr_gpu_span: each layer type forward and backward, the classifier, the
 * optimizer) and prints that table before the line; each step then waits
 * for the device, so its img_s is not the benchmark's. Without a GPU it
 * prints why and exits 0. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "arch.h"   /* defines: mfr_arch_load */
#include "cli.h"    /* defines: mfr_now */
#include "comm.h"   /* defines: mfr_comm_init */
#include "gpu.h"    /* defines: mfr_gpu_count, mfr_dtype_parse */
#include "net.h"    /* defines: mfr_net_* (host initialisation) */
#ifdef MFR_HAVE_CUDA
#include "gtrain.h" /* defines: mfr_gtrain_* */
#endif

#define GIB (1024.0 * 1024.0 * 1024.0)

#ifdef MFR_HAVE_CUDA
typedef struct {
	const char *arch;
	int batch, steps, warmup, profile, tf32;
	int64_t classes;
	double rate;
	mfr_dtype t;
} opts;

/* Builds the step and runs warmup + steps; fills img/s, peak bytes and the
 * last loss. Returns 0, or -1 with e filled (out of memory included). */
static int run(const opts *o, mfr_comm *comm, double *ips, double *peak, double *loss, mfr_error *e)
{
	int d, rc = -1;
	mfr_arch *a = mfr_arch_load(o->arch, e);
	if (!a)
		return -1;
	const mfr_shape *os = &a->layers[a->outputs[0]].shape, *in = &a->layers[0].shape;
	d = os->c * os->h * os->w;
	mfr_gtrain_config c = {.device = 0, .dtype = o->t, .batch = o->batch, .classes = o->classes,
			       .sample_rate = o->rate, .sparse_momentum = 1, .margin = {64, 1, 0, 0.4},
			       .momentum = 0.9, .wd = 5e-4, .fc_wd = 5e-4, .raw = 1, .tf32 = o->tf32};
	mfr_input_spec_insightface(&c.input);
	mfr_net *host = mfr_net_new(a, 1, 0, e);
	mfr_gtrain *t = host ? mfr_gtrain_new(&c, comm, a, d, e) : NULL;
	size_t xn = (size_t)o->batch * in->c * in->h * in->w;
	uint8_t *x[2] = {NULL, NULL};
	int32_t *lab = malloc((size_t)o->batch * sizeof *lab);
	if (!t || !lab || !(x[0] = mfr_gtrain_host_alloc(t, xn, e)) || !(x[1] = mfr_gtrain_host_alloc(t, xn, e))) {
		if (t && !lab)
			mfr_fail(e, "out of memory");
		goto out;
	}
	mfr_gtrain_profile(t, 0); /* the timed steps only, with --profile */
	mfr_net_init(host, 1);
	if (mfr_gtrain_put_state(t, mfr_net_params(host), NULL, NULL, NULL, e) < 0)
		goto out;
	mfr_gtrain_init_classifier(t, 2);
	mfr_rng r = {3};
	for (size_t i = 0; i < xn; i++)
		x[0][i] = x[1][i] = (uint8_t)mfr_rng_below(&r, 256);
	double t0 = 0, gn, acc;
	int skip;
	for (int s = 0; s < o->warmup + o->steps; s++) {
		if (s == o->warmup) {
			mfr_gtrain_profile(t, o->profile);
			t0 = mfr_now();
		}
		for (int i = 0; i < o->batch; i++)
			lab[i] = (int32_t)mfr_rng_below(&r, (uint64_t)o->classes);
		if (mfr_gtrain_stage(t, x[s & 1], lab, e) < 0 ||
		    mfr_gtrain_step(t, (uint64_t)s, (uint64_t)s, 0.1, loss, &acc, &gn, &skip, e) < 0)
			goto out;
	}
	if (mfr_gtrain_sync(t, e) < 0)
		goto out;
	*ips = (double)o->steps * o->batch / (mfr_now() - t0);
	mfr_gtrain_profile_report(t, stdout, o->steps);
	size_t now, pk;
	mfr_gtrain_memory(t, &now, &pk);
	*peak = (double)pk;
	rc = 0;
out:
	if (t) {
		mfr_gtrain_host_free(t, x[0]);
		mfr_gtrain_host_free(t, x[1]);
	}
	mfr_gtrain_free(t);
	mfr_net_free(host);
	mfr_arch_free(a);
	free(lab);
	return rc;
}
#endif

int main(int argc, char **argv)
{
	char why[128];
	if (mfr_gpu_count(why, sizeof why) == 0) {
		printf("skip: bench_gpu_train: %s\n", why);
		return 0;
	}
#ifdef MFR_HAVE_CUDA
	opts o = {.arch = "r50", .batch = 128, .steps = 20, .warmup = 5, .classes = 100000, .rate = 1, .t = MFR_F16};
	int maxc = 0, rate_set = 0;
	for (int i = 1; i < argc; i++) {
		const char *v = i + 1 < argc ? argv[i + 1] : "";
		if (!strcmp(argv[i], "--arch"))
			o.arch = v, i++;
		else if (!strcmp(argv[i], "--batch"))
			o.batch = atoi(v), i++;
		else if (!strcmp(argv[i], "--classes"))
			o.classes = atoll(v), i++;
		else if (!strcmp(argv[i], "--rate"))
			o.rate = atof(v), rate_set = 1, i++;
		else if (!strcmp(argv[i], "--steps"))
			o.steps = atoi(v), i++;
		else if (!strcmp(argv[i], "--warmup"))
			o.warmup = atoi(v), i++;
		else if (!strcmp(argv[i], "--dtype"))
			o.t = (mfr_dtype)mfr_dtype_parse(v), i++;
		else if (!strcmp(argv[i], "--max-classes"))
			maxc = 1;
		else if (!strcmp(argv[i], "--profile"))
			o.profile = 1;
		else if (!strcmp(argv[i], "--tf32"))
			o.tf32 = 1;
		else {
			fprintf(stderr, "bench_gpu_train: unknown option '%s'\n", argv[i]);
			return 2;
		}
	}
	if ((int)o.t < 0 || o.batch < 1 || o.classes < 1 || !(o.rate > 0 && o.rate <= 1)) {
		fprintf(stderr, "bench_gpu_train: bad option value\n");
		return 2;
	}
	mfr_error e;
	mfr_comm *comm = mfr_comm_init(&argc, &argv, &e);
	if (!comm) {
		fprintf(stderr, "bench_gpu_train: %s\n", e.msg);
		return 1;
	}
	double ips, peak, loss;
	if (maxc) {
		if (!rate_set)
			o.rate = 0.1;
		o.steps = 2, o.warmup = 0;
		/* the planner's answer: classes grow until mfr_gtrain_bytes passes free memory */
		mfr_gpu *g = mfr_gpu_open(0, &e);
		size_t fr = 0, tot = 0;
		if (g)
			mfr_gpu_memory(g, &fr, &tot);
		mfr_gpu_close(g);
		mfr_arch *a = mfr_arch_load(o.arch, &e);
		if (!a) {
			fprintf(stderr, "bench_gpu_train: %s\n", e.msg);
			return 1;
		}
		int64_t lo = 1000, hi = 1000;
		while (mfr_gtrain_bytes(a, 512, o.batch, o.t, hi * 2, o.rate, 1, 1) < (double)fr && hi < (int64_t)1 << 40)
			hi *= 2;
		lo = hi, hi *= 2;
		while (hi - lo > lo / 100) { /* to 1% */
			int64_t mid = lo + (hi - lo) / 2;
			if (mfr_gtrain_bytes(a, 512, o.batch, o.t, mid, o.rate, 1, 1) < (double)fr)
				lo = mid;
			else
				hi = mid;
		}
		mfr_arch_free(a);
		int64_t plan = lo;
		/* confirmed by running it, backing off by 5% on failure */
		for (int tries = 0; tries < 6; tries++) {
			o.classes = lo;
			if (run(&o, comm, &ips, &peak, &loss, &e) == 0) {
				printf("mfr max_classes arch=%s batch=%d dtype=%s rate=%g classes=%lld planned=%lld peak_gib=%.2f "
				       "free_gib=%.2f img_s=%.1f\n",
				       o.arch, o.batch, mfr_dtype_name(o.t), o.rate, (long long)lo, (long long)plan, peak / GIB,
				       fr / GIB, ips);
				mfr_comm_finish(comm);
				return 0;
			}
			fprintf(stderr, "bench_gpu_train: %lld classes failed: %s\n", (long long)lo, e.msg);
			lo = lo * 95 / 100;
		}
		mfr_comm_finish(comm);
		return 1;
	}
	if (run(&o, comm, &ips, &peak, &loss, &e) < 0) {
		printf("mfr arch=%s batch=%d dtype=%s classes=%lld rate=%g failed: %s\n", o.arch, o.batch, mfr_dtype_name(o.t),
		       (long long)o.classes, o.rate, e.msg);
		mfr_comm_finish(comm);
		return 1;
	}
	printf("mfr arch=%s batch=%d dtype=%s%s classes=%lld rate=%g img_s=%.1f step_ms=%.2f peak_gib=%.2f loss=%.4f\n",
	       o.arch, o.batch, mfr_dtype_name(o.t), o.tf32 ? " tf32=on" : "", (long long)o.classes, o.rate, ips,
	       1000.0 * o.batch / ips, peak / GIB, loss);
	mfr_comm_finish(comm);
#else
	(void)argc, (void)argv;
#endif
	return 0;
}
