/* test_gpu_train.c — whole training steps on the GPU (gtrain.h) against the
 * CPU's (net.h on its reference layers, pfc.h, the SGD of train.c) from the
 * same state, batch, seeds and learning rate: in fp32 (TF32 off) the loss,
 * accuracy, gradient norm, backbone parameters and momentum, and classifier
 * rows and momentum after three steps agree to float rounding — dense and
 * Partial FC, with clipping, and from raw pixels normalised on the GPU;
 * fp16 (loss scaling) and bf16 steps stay near the fp32 ones. Skips without
 * a GPU.
 *
 * Under mpirun each rank takes its slice of the global batch and its shard
 * of the classifier, and the CPU side runs train.c's distributed step
 * (all-gathered embeddings, all-reduced gradients): so the GPU's collectives
 * (NCCL, or host staging with MFR_NCCL=0) and its gradient buckets, made
 * tiny here so that the all-reduce is cut into many, are held to the same
 * answer. */
#include "gpu_check.h" /* defines: gcheck_*, CHECK */

#ifdef MFR_HAVE_CUDA
#include <math.h>

#include "arch.h"   /* defines: mfr_arch_parse */
#include "comm.h"   /* defines: mfr_comm_init */
#include "feed.h"   /* defines: mfr_input_normalize */
#include "gtrain.h" /* defines: mfr_gtrain_* */
#include "net.h"    /* defines: mfr_net_* */
#include "pfc.h"    /* defines: mfr_pfc_* */

/* iresnet in miniature: stem, one residual block, the head with dropout on a
 * map, flatten, linear and bn1d (the embedding). */
static const char *ARCH =
	"mfr-arch 1\n"
	"input x 3 16 16\n"
	"conv c0 x out=8 k=3 p=1\n"
	"bn b0 c0\n"
	"prelu p0 b0\n"
	"bn b1 p0\n"
	"conv c1 b1 out=16 k=3 s=2 p=1\n"
	"bn b2 c1\n"
	"prelu p1 b2\n"
	"conv c2 p1 out=16 k=3 p=1\n"
	"bn b3 c2\n"
	"conv sc p0 out=16 k=1 s=2\n"
	"bn b4 sc\n"
	"add r1 b3 b4\n"
	"bn b5 r1\n"
	"dropout d b5 p=0.3\n"
	"flatten f d\n"
	"linear fc f out=24\n"
	"bn1d e fc\n"
	"output e\n";

enum { B = 6, C = 13, D = 24, STEPS = 3, IMG = 3 * 16 * 16 };

typedef struct {
	double loss[STEPS], acc[STEPS], gnorm[STEPS];
	float *params, *mom, *fcw, *fcm;
} result;

static mfr_comm *comm;
static int rank, K, G;     /* this rank, the ranks, the global batch (B x K) */
static int64_t c0, c1;     /* this rank's classifier rows */

/* The CPU step of train.c, move for move, on this rank: x and lab hold the
 * global batches of all steps (STEPS x G), w0 the whole classifier. */
static void cpu_run(const mfr_arch *a, const float *p0, const float *w0, const float *x, const int32_t *lab,
		    double rate, double clip, result *r)
{
	mfr_error e = {{0}};
	mfr_net *n = mfr_net_new(a, B, 1, &e);
	mfr_pfc *fc = mfr_pfc_new(C, D, rate, G, rank, K, &e);
	size_t P = mfr_net_param_total(n), rows = (size_t)(c1 - c0);
	float *mom = calloc(P, sizeof *mom), *F = calloc((size_t)G * D, sizeof *F), *dF = calloc((size_t)G * D, sizeof *dF);
	int32_t *L = calloc((size_t)G, sizeof *L);
	mfr_net_set_reference(n, 1);
	memcpy(mfr_net_params(n), p0, P * sizeof *p0);
	memcpy(mfr_pfc_weights(fc), w0 + (size_t)c0 * D, rows * D * sizeof *w0);
	mfr_margin m = {64, 1, 0, 0.4};
	for (int s = 0; s < STEPS; s++) {
		double lr = 0.05;
		size_t mine = (size_t)s * G + (size_t)rank * B;
		CHECK(mfr_net_forward(n, x + mine * IMG, B, 1, 1000 + (uint64_t)s, &e) == 0);
		mfr_comm_allgather(comm, mfr_net_output(n, 0, NULL), F, (size_t)B * D, MFR_F32);
		mfr_comm_allgather(comm, lab + mine, L, (size_t)B, MFR_I32);
		CHECK(mfr_pfc_sample(fc, L, G, 2000 + (uint64_t)s, &e) >= 0);
		CHECK(mfr_pfc_forward_backward(fc, comm, F, L, G, &m, &r->loss[s], &r->acc[s], dF, &e) == 0);
		mfr_net_zero_grad(n);
		const float *dout[1] = {dF + (size_t)rank * B * D};
		CHECK(mfr_net_backward(n, dout, &e) == 0);
		float *g = mfr_net_grads(n), *p = mfr_net_params(n);
		mfr_comm_allreduce(comm, g, P, MFR_F32, MFR_SUM);
		double ss = 0;
		for (size_t j = 0; j < P; j++)
			ss += (double)g[j] * g[j];
		r->gnorm[s] = sqrt(ss);
		if (clip > 0 && r->gnorm[s] > clip)
			for (size_t j = 0; j < P; j++)
				g[j] *= (float)(clip / r->gnorm[s]);
		size_t off = 0;
		for (int i = 0; i < a->n_tensors; i++) {
			size_t cnt = a->tensors[i].count;
			if (!a->tensors[i].buffer && !a->tensors[i].frozen)
				for (size_t j = off; j < off + cnt; j++) {
					float gt = (float)(g[j] + 5e-4 * p[j]);
					mom[j] = (float)(0.9 * mom[j] + gt);
					p[j] = (float)(p[j] - lr * mom[j]);
				}
			off += cnt;
		}
		mfr_pfc_step(fc, lr, 0.9, 5e-4, 1);
	}
	r->params = malloc(P * sizeof *r->params);
	memcpy(r->params, mfr_net_params(n), P * sizeof *r->params);
	r->mom = mom;
	r->fcw = malloc((rows ? rows : 1) * D * sizeof *r->fcw);
	r->fcm = malloc((rows ? rows : 1) * D * sizeof *r->fcm);
	memcpy(r->fcw, mfr_pfc_weights(fc), rows * D * sizeof *r->fcw);
	memcpy(r->fcm, mfr_pfc_momentum(fc), rows * D * sizeof *r->fcm);
	free(F), free(dF), free(L);
	mfr_pfc_free(fc);
	mfr_net_free(n);
}

/* steps steps on the GPU in type t, this rank's slices of the global
 * batches: x as floats (NCHW, normalised), or px as raw pixels (HWC bytes,
 * normalised on the GPU) when px is not NULL. fp16 starts its loss scale at
 * 2^10: with s = 64 the embedding gradients are of order 1, and
 * GradScaler's 2^16 would overflow fp16 and skip the first steps (tested for
 * no skip). */
static void gpu_run(const mfr_arch *a, mfr_dtype t, const float *p0, const float *w0, const float *x,
		    const uint8_t *px, const int32_t *lab, double rate, double clip, size_t P, int steps, result *r,
		    FILE *prof)
{
	mfr_error e = {{0}};
	mfr_gtrain_config c = {.device = 0, .dtype = t, .batch = B, .classes = C, .sample_rate = rate,
			       .sparse_momentum = 1, .margin = {64, 1, 0, 0.4}, .momentum = 0.9, .wd = 5e-4,
			       .fc_wd = 5e-4, .clip = clip, .loss_scale = 1024, .bucket_bytes = 4096, .raw = px != NULL};
	mfr_input_spec_insightface(&c.input);
	mfr_gtrain *g = mfr_gtrain_new(&c, comm, a, D, &e);
	if (!g)
		gcheck_die("gtrain new", &e);
	static int told;
	if (rank == 0 && K > 1 && !told++)
		printf("gtrain: %s\n", mfr_gtrain_describe(g));
	size_t rows = (size_t)(c1 - c0);
	if (mfr_gtrain_put_state(g, p0, NULL, w0 + (size_t)c0 * D, NULL, &e) < 0)
		gcheck_die("put state", &e);
	mfr_gtrain_profile(g, prof != NULL);
	/* the batches in page-locked memory, as the trainer's loader gives them */
	size_t xb = (size_t)B * IMG * (px ? 1 : sizeof(float));
	void *host = mfr_gtrain_host_alloc(g, xb, &e);
	if (!host)
		gcheck_die("host alloc", &e);
	for (int s = 0; s < steps; s++) {
		int skip = 0;
		size_t mine = (size_t)s * G + (size_t)rank * B;
		memcpy(host, px ? (const void *)(px + mine * IMG) : (const void *)(x + mine * IMG), xb);
		if (mfr_gtrain_stage(g, host, lab + mine, &e) < 0 ||
		    mfr_gtrain_step(g, 1000 + (uint64_t)s, 2000 + (uint64_t)s, 0.05, &r->loss[s], &r->acc[s],
				    &r->gnorm[s], &skip, &e) < 0)
			gcheck_die("step", &e);
		CHECK(!skip);
	}
	if (prof)
		mfr_gtrain_profile_report(g, prof, steps);
	mfr_gtrain_host_free(g, host);
	r->params = gcheck_xmalloc(P * sizeof *r->params);
	r->mom = gcheck_xmalloc(P * sizeof *r->mom);
	r->fcw = gcheck_xmalloc((rows ? rows : 1) * D * sizeof *r->fcw);
	r->fcm = gcheck_xmalloc((rows ? rows : 1) * D * sizeof *r->fcm);
	if (mfr_gtrain_get_state(g, r->params, r->mom, r->fcw, r->fcm, &e) < 0)
		gcheck_die("get state", &e);
	mfr_gtrain_free(g);
}

/* The span profiler's table (report, rewound) holds span with calls per
 * step (a time >= 0); calls 0: the span may also be absent. */
static void check_span(FILE *report, const char *span, double calls)
{
	char line[256], name[64];
	double ms, share, n;
	int found = 0;
	rewind(report);
	while (fgets(line, sizeof line, report))
		if (sscanf(line, "# %lf ms %lf%% %lf calls %63[^\n]", &ms, &share, &n, name) == 4) {
			if (!strcmp(name, span)) {
				found = 1;
				CHECK(ms >= 0 && share >= 0 && share <= 100);
				if (!check_report(fabs(n - calls) < 1e-9, span, __FILE__, __LINE__))
					fprintf(stderr, "    %s: %g calls per step, want %g\n", span, n, calls);
			}
		}
	if (!found) /* absent: right only for a span that must not run (calls 0) */
		check_report(calls == 0, span, __FILE__, __LINE__);
}

static void result_free(result *r)
{
	free(r->params), free(r->mom), free(r->fcw), free(r->fcm);
}

/* Compares two results of steps steps; tol relative to each block's scale
 * (gcheck_close). */
static void compare(const char *what, const result *got, const result *want, size_t P, int steps, double tol)
{
	char name[160];
	for (int s = 0; s < steps; s++) {
		snprintf(name, sizeof name, "%s: loss of step %d", what, s);
		float gl = (float)got->loss[s], wl = (float)want->loss[s];
		gcheck_close(name, &gl, &wl, 1, tol);
		snprintf(name, sizeof name, "%s: gradient norm of step %d", what, s);
		float gg = (float)got->gnorm[s], wg = (float)want->gnorm[s];
		gcheck_close(name, &gg, &wg, 1, tol);
	}
	snprintf(name, sizeof name, "%s: backbone parameters", what);
	gcheck_close(name, got->params, want->params, P, tol);
	snprintf(name, sizeof name, "%s: backbone momentum", what);
	gcheck_close(name, got->mom, want->mom, P, tol);
	size_t rows = (size_t)(c1 - c0);
	snprintf(name, sizeof name, "%s: classifier rows", what);
	gcheck_close(name, got->fcw, want->fcw, rows * D, tol);
	snprintf(name, sizeof name, "%s: classifier momentum", what);
	gcheck_close(name, got->fcm, want->fcm, rows * D, tol);
}
#endif

int main(int argc, char **argv)
{
#ifndef MFR_HAVE_CUDA
	(void)argc, (void)argv;
	printf("skip: gpu training step: built without CUDA\n");
#else
	mfr_gpu *probe = gcheck_open("gpu training step");
	if (!probe)
		return check_done();
	mfr_gpu_close(probe); /* gtrain opens its own */
	mfr_error e = {{0}};
	if (!(comm = mfr_comm_init(&argc, &argv, &e)))
		gcheck_die("comm", &e);
	mfr_arch *a = mfr_arch_parse(ARCH, strlen(ARCH), "step.arch", &e);
	if (!a)
		gcheck_die("arch", &e);
	mfr_net *init = mfr_net_new(a, 1, 0, &e);
	mfr_net_init(init, 5);
	size_t P = mfr_net_param_total(init);
	float *p0 = malloc(P * sizeof *p0), *w0 = malloc((size_t)C * D * sizeof *w0);
	memcpy(p0, mfr_net_params(init), P * sizeof *p0);
	mfr_net_free(init);
	mfr_pfc *fc = mfr_pfc_new(C, D, 1, B, 0, 1, &e);
	mfr_pfc_init(fc, 9);
	memcpy(w0, mfr_pfc_weights(fc), (size_t)C * D * sizeof *w0);
	mfr_pfc_free(fc);
	rank = mfr_comm_rank(comm), K = mfr_comm_size(comm), G = B * K;
	mfr_pfc_shard(C, rank, K, &c0, &c1);
	/* every rank makes the same global batches and takes its slices */
	size_t xn = (size_t)STEPS * G * IMG;
	float *x = malloc(xn * sizeof *x), *xr = malloc(xn * sizeof *xr);
	uint8_t *px = malloc(xn);
	int32_t *lab = malloc((size_t)STEPS * G * sizeof *lab);
	gcheck_fill(x, xn, 21, 1.0f);
	mfr_rng r = {22};
	for (int i = 0; i < STEPS * G; i++)
		lab[i] = (int32_t)mfr_rng_below(&r, C);
	for (size_t i = 0; i < xn; i++)
		px[i] = (uint8_t)mfr_rng_below(&r, 256);
	mfr_input_spec in;
	mfr_input_spec_insightface(&in);
	in.width = in.height = 16;
	mfr_input_normalize(px, (size_t)STEPS * G, &in, xr);

	/* fp32 against the CPU: the sums run in other orders on the two sides
	 * (cuDNN, cuBLAS, tree reductions vs the reference's double sums), and
	 * batch norm over 6 images and s = 64 in the classifier magnify float
	 * rounding: 1e-3 of each block's scale after three steps */
	const struct {
		const char *what;
		double rate, clip;
		int raw;
	} cases[] = {{"dense", 1.0, 0, 0}, {"partial fc 0.4", 0.4, 0, 0}, {"clipped at 0.5", 1.0, 0.5, 0},
		     {"raw pixels", 0.4, 0, 1}};
	for (size_t k = 0; k < sizeof cases / sizeof *cases; k++) {
		result cpu, gpu;
		cpu_run(a, p0, w0, cases[k].raw ? xr : x, lab, cases[k].rate, cases[k].clip, &cpu);
		gpu_run(a, MFR_F32, p0, w0, x, cases[k].raw ? px : NULL, lab, cases[k].rate, cases[k].clip, P, STEPS, &gpu,
			NULL);
		char what[64];
		snprintf(what, sizeof what, "fp32 %s%s", cases[k].what, K > 1 ? ", ranks" : "");
		compare(what, &gpu, &cpu, P, STEPS, 1e-3);
		if (k == 0) { /* the span profiler: same steps, each span counted once per layer and step */
			/* bit for bit against an unprofiled run, both on the
			 * algorithms cuDNN marks deterministic (on a device the
			 * others, atomics in backward, differ run to run) */
			result det, pr;
			FILE *rep = tmpfile();
			CHECK(rep != NULL);
			setenv("MFR_CUDNN_DETERMINISTIC", "1", 1);
			gpu_run(a, MFR_F32, p0, w0, x, NULL, lab, 1.0, 0, P, STEPS, &det, NULL);
			gpu_run(a, MFR_F32, p0, w0, x, NULL, lab, 1.0, 0, P, STEPS, &pr, rep);
			unsetenv("MFR_CUDNN_DETERMINISTIC");
			compare("fp32 dense, profiled", &pr, &det, P, STEPS, 0);
			result_free(&det);
			if (rep) {
				static const struct {
					const char *span;
					double calls;
				} want[] = {{"conv fwd", 4}, {"conv bwd", 4}, {"conv wgrad fold", 4}, {"bn fwd", 6},
					    {"bn bwd", 4},   {"bn1d fwd", 1}, {"bn+prelu fwd", 2}, {"bn+prelu bwd", 2},
					    {"bn+add fwd", 1}, {"add bwd", 1}, {"prelu fwd", 0}, {"prelu bwd", 0},
					    {"input", 1},
					    {"input copy", 1}, {"classifier fwd+bwd", 1}, {"sgd backbone", 1},
					    {"sgd classifier", 1}, {"gradient norm", 1}, {"backward seed", 1}};
				for (size_t i = 0; i < sizeof want / sizeof *want; i++)
					check_span(rep, want[i].span, want[i].calls);
				fclose(rep);
			}
			result_free(&pr);
		}
		result_free(&cpu), result_free(&gpu);
	}
	/* one mixed-precision step near the fp32 step: fp16 keeps 11 bits, bf16
	 * 8, through every layer and both passes (over several steps the
	 * trajectories part: batch norm over 6 images amplifies the difference) */
	result f, h, b;
	gpu_run(a, MFR_F32, p0, w0, x, NULL, lab, 1.0, 0, P, 1, &f, NULL);
	gpu_run(a, MFR_F16, p0, w0, x, NULL, lab, 1.0, 0, P, 1, &h, NULL);
	compare("fp16 vs fp32, one step", &h, &f, P, 1, 3e-2);
	gpu_run(a, MFR_BF16, p0, w0, x, NULL, lab, 1.0, 0, P, 1, &b, NULL);
	compare("bf16 vs fp32, one step", &b, &f, P, 1, 1.5e-1);
	result_free(&f), result_free(&h), result_free(&b);
	free(p0), free(w0), free(x), free(xr), free(px), free(lab);
	mfr_arch_free(a);
	mfr_comm_finish(comm);
#endif
	return check_done();
}
