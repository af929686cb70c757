/* bench_net.c — speed of the whole layer engine (net.h) on iresnet50, the
 * figure issue 3 asks for: one image on one thread (median ms and GFLOP/s)
 * and a batch of 32 on all cores (img/s); then iresnet18 the same way when
 * the fast path makes that cheap. Inference, random weights (mfr_net_init,
 * seed 1). GFLOP/s count 2 flops per multiply-accumulate of the describer
 * (a->macs, data-formats.md 8.4). Prints figures, asserts nothing.
 *
 * The peer that these figures are held against (tests/bench/ort_peer.py,
 * onnxruntime) rebuilds the same network from its canonical .arch text:
 *
 *   bench_net [-w] [R50.arch [R18.arch]]
 *
 * writes the canonical text (mfr_arch_format) of r50 (and r18) to the paths
 * given. With -w it also writes, beside each X.arch, what the peer needs to
 * check that its graph computes what ours does: X.tensors (one line per
 * tensor, "name count", in the architecture's order), X.params (those
 * tensors as float32 little-endian, concatenated in that order), X.input (the
 * fixed 3x112x112 input) and X.output (our batch-1 output for it).
 *
 * Which path ran: net.c sends conv and linear to the fast CPU backend
 * (dnnl_cpu.h) when it is built with oneDNN, else to the reference layers,
 * which run r50 at batch 1 in seconds (10..15 s on a 2-core Xeon), not tens
 * of milliseconds. The first (warm-up) forward tells which we got; on the
 * reference path one timed batch-1 run follows and the batched figure and
 * r18 are skipped, so the run stays within about a minute either way; every
 * line says which path it measured.
 *
 * Times are wall clock (the batch figure is multi-threaded), so other work on
 * the machine shows up in them: the median of several runs is reported, and
 * the minimum beside it.
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "arch.h"     /* defines: mfr_arch_load, mfr_arch_format */
#include "dnnl_cpu.h" /* defines: mfr_cpu_set_threads, mfr_cpu_threads, mfr_cpu_backend */
#include "net.h"      /* defines: mfr_net_new, mfr_net_init, mfr_net_forward, mfr_net_output */

enum { BATCH = 32 }; /* the "batched": a typical mfr-embed batch */

/* Wall seconds spent on each figure after its warm-up, and the run counts
 * that bound it: enough runs for a stable median on a shared 2-core box,
 * few enough that the whole program stays near a minute. */
static const double FIGURE_SECONDS = 8.0;
enum { MIN_RUNS = 3, MAX_RUNS = 41 };

/* A batch-1 one-thread forward of r50 slower than this is the reference
 * path: oneDNN runs it in 0.05..0.3 s on a current core, the reference
 * layers in several seconds. */
static const double SLOW_SECONDS = 1.0;

static double now(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return t.tv_sec + t.tv_nsec * 1e-9;
}

static void die(const char *what, const mfr_error *e)
{
	fprintf(stderr, "bench_net: %s: %s\n", what, e->msg);
	exit(1);
}

static void *xmalloc(size_t n)
{
	void *p = malloc(n);
	if (!p) {
		fprintf(stderr, "bench_net: out of memory (%zu bytes)\n", n);
		exit(1);
	}
	return p;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return (x > y) - (x < y);
}

typedef struct {
	double median, min;
	int runs;
} timing;

/* Times forward(batch) after one warm-up run: runs until FIGURE_SECONDS have
 * passed (at least MIN_RUNS, at most MAX_RUNS). When slow_seconds > 0 and the
 * warm-up and a second forward both took longer, this is the reference path:
 * one timed run then, and *slow = 1. */
static timing time_forward(mfr_net *n, const float *x, int batch, double slow_seconds, int *slow)
{
	mfr_error e;
	double t0 = now();
	if (mfr_net_forward(n, x, batch, 0, 0, &e) < 0)
		die("forward", &e);
	*slow = slow_seconds > 0 && now() - t0 > slow_seconds;
	if (*slow) { /* the first forward also builds oneDNN's primitives: judge by a second */
		t0 = now();
		if (mfr_net_forward(n, x, batch, 0, 0, &e) < 0)
			die("forward", &e);
		*slow = now() - t0 > slow_seconds;
	}
	double ts[MAX_RUNS], start = now();
	int k = 0, max_runs = *slow ? 1 : MAX_RUNS;
	while (k < max_runs && (k < MIN_RUNS || now() - start < FIGURE_SECONDS)) {
		double t = now();
		if (mfr_net_forward(n, x, batch, 0, 0, &e) < 0)
			die("forward", &e);
		ts[k++] = now() - t;
	}
	qsort(ts, (size_t)k, sizeof *ts, cmp_double);
	timing r = {k % 2 ? ts[k / 2] : (ts[k / 2 - 1] + ts[k / 2]) / 2, ts[0], k};
	return r;
}

/* The fixed input: image b of a batch, 3x112x112 values in [-1, 1) (the
 * range of insightface's (x-127.5)/128), from a seeded generator, so two
 * runs (and the peer) see the same numbers. Image 0 is the same in every
 * batch, so the batch-1 and batch-32 outputs of image 0 can be compared. */
static void fill_input(float *x, size_t per_image, int batch)
{
	for (int b = 0; b < batch; b++) {
		mfr_rng r = {mfr_hash2(2024, (uint64_t)b)};
		for (size_t i = 0; i < per_image; i++)
			x[(size_t)b * per_image + i] = (float)(2 * mfr_rng_uniform(&r) - 1);
	}
}

static void write_file(const char *path, const void *p, size_t len)
{
	FILE *f = fopen(path, "wb");
	if (!f || fwrite(p, 1, len, f) != len || fclose(f) != 0) {
		fprintf(stderr, "bench_net: '%s': cannot write\n", path);
		exit(1);
	}
}

/* path with its ".arch" suffix (if any) replaced by ext. */
static char *sibling(const char *path, const char *ext)
{
	size_t n = strlen(path);
	if (n > 5 && !strcmp(path + n - 5, ".arch"))
		n -= 5;
	char *s = xmalloc(n + strlen(ext) + 1);
	memcpy(s, path, n);
	strcpy(s + n, ext);
	return s;
}

/* The files -w writes for the peer's equivalence check (header comment).
 * Float32 little-endian: the machines we build on are little-endian, and
 * a big-endian one would fail the peer's check loudly, not silently. */
static void export_net(const char *arch_path, const mfr_arch *a, mfr_net *n, const float *x, size_t in_len,
		       const float *y, size_t out_len)
{
	char *p = sibling(arch_path, ".tensors");
	FILE *f = fopen(p, "w");
	if (!f) {
		fprintf(stderr, "bench_net: '%s': cannot write\n", p);
		exit(1);
	}
	for (int i = 0; i < a->n_tensors; i++)
		fprintf(f, "%s %llu\n", a->tensors[i].name, (unsigned long long)a->tensors[i].count);
	if (fclose(f) != 0) {
		fprintf(stderr, "bench_net: '%s': cannot write\n", p);
		exit(1);
	}
	free(p);
	p = sibling(arch_path, ".params");
	f = fopen(p, "wb");
	int ok = f != NULL;
	for (int i = 0; ok && i < a->n_tensors; i++) {
		size_t c = (size_t)a->tensors[i].count;
		ok = fwrite(mfr_net_tensor(n, i), sizeof(float), c, f) == c;
	}
	if (!f || fclose(f) != 0 || !ok) {
		fprintf(stderr, "bench_net: '%s': cannot write\n", p);
		exit(1);
	}
	free(p);
	p = sibling(arch_path, ".input");
	write_file(p, x, in_len * sizeof *x);
	free(p);
	p = sibling(arch_path, ".output");
	write_file(p, y, out_len * sizeof *y);
	free(p);
}

/* Benchmarks one preset; label is its insightface name. Returns 1 when the
 * fast path ran. */
static int bench(const char *preset, const char *label, const char *arch_path, int export)
{
	mfr_error e;
	mfr_arch *a = mfr_arch_load(preset, &e);
	if (!a)
		die(preset, &e);
	if (arch_path) {
		size_t len;
		char *text = mfr_arch_format(a, &len, &e);
		if (!text)
			die("format", &e);
		write_file(arch_path, text, len);
		free(text);
	}
	const mfr_layer *in = &a->layers[0];
	size_t per_image = (size_t)in->shape.c * in->shape.h * in->shape.w;
	double gflop = 2.0 * (double)a->macs / 1e9; /* per image */
	char eng[16];
	printf("%s (%s): %llu params, %s MACs (%llu) per image, input %dx%dx%d\n", label, preset,
	       (unsigned long long)a->params, mfr_arch_eng(eng, a->macs), (unsigned long long)a->macs, in->shape.c,
	       in->shape.h, in->shape.w);

	/* batch 1, one thread */
	mfr_net *n = mfr_net_new(a, 1, 0, &e);
	if (!n)
		die("net", &e);
	mfr_net_init(n, 1);
	float *x = xmalloc(BATCH * per_image * sizeof *x);
	fill_input(x, per_image, BATCH);
	mfr_cpu_set_threads(1);
	int slow;
	timing t1 = time_forward(n, x, 1, SLOW_SECONDS * (gflop / 12.64), &slow); /* 12.64 GFLOP: r50 */
	int fast = !slow;
	printf("mfr %s batch 1, 1 thread: %.1f ms (%.1f GFLOP/s; min %.1f ms, %d runs, %s path)\n", label,
	       t1.median * 1e3, gflop / t1.median, t1.min * 1e3, t1.runs, fast ? "fast" : "reference");
	size_t dim;
	const float *y = mfr_net_output(n, 0, &dim);
	double sum = 0, sumabs = 0;
	for (size_t i = 0; i < dim; i++) {
		sum += y[i];
		sumabs += fabs(y[i]);
	}
	printf("mfr %s checksum (seed 1, fixed input): %zu values, sum %.6e, sum|y| %.6e, y[0..2] %.6e %.6e %.6e\n",
	       label, dim, sum, sumabs, y[0], y[1], y[2]);
	float *y1 = xmalloc(dim * sizeof *y1);
	memcpy(y1, y, dim * sizeof *y1);
	if (export && arch_path)
		export_net(arch_path, a, n, x, per_image, y1, dim);

	/* batched, every core. The reference layers run on one thread whatever
	 * the setting and take seconds per image: a batch would take minutes. */
	if (!fast) {
		printf("mfr %s batch %d: skipped (the reference path: one thread, about %.2f img/s)\n", label, BATCH,
		       1 / t1.median);
		free(y1);
		free(x);
		mfr_net_free(n);
		mfr_arch_free(a);
		return 0;
	}
	int batch = BATCH;
	mfr_net *nb = mfr_net_new(a, batch, 0, &e);
	if (!nb)
		die("net", &e);
	memcpy(mfr_net_params(nb), mfr_net_params(n), mfr_net_param_total(n) * sizeof(float)); /* = init(nb, 1) */
	mfr_cpu_set_threads(0);
	int threads = mfr_cpu_threads();
	timing tb = time_forward(nb, x, batch, 0, &slow);
	printf("mfr %s batch %d, %d thread%s: %.1f img/s (%.1f GFLOP/s; median %.1f ms per batch, min %.1f ms, %d runs, "
	       "fast path)\n",
	       label, batch, threads, threads == 1 ? "" : "s", batch / tb.median, gflop * batch / tb.median,
	       tb.median * 1e3, tb.min * 1e3, tb.runs);
	/* image 0 of the batch is the batch-1 image: the two results should
	 * agree to float rounding (a different blocking order at most) */
	const float *yb = mfr_net_output(nb, 0, NULL);
	double worst = 0, scale = 0;
	for (size_t i = 0; i < dim; i++) {
		worst = fmax(worst, fabs((double)yb[i] - y1[i]));
		scale = fmax(scale, fabs((double)y1[i]));
	}
	printf("mfr %s batch %d image 0 vs batch 1: max |diff| %.2e (max |y| %.2e)\n", label, batch, worst, scale);
	free(y1);
	free(x);
	mfr_net_free(nb);
	mfr_net_free(n);
	mfr_arch_free(a);
	return fast;
}

int main(int argc, char **argv)
{
	int export = 0, c;
	while ((c = getopt(argc, argv, "wh")) != -1) {
		switch (c) {
		case 'w': export = 1; break;
		case 'h': printf("usage: bench_net [-w] [R50.arch [R18.arch]]\n"); return 0;
		default: fprintf(stderr, "usage: bench_net [-w] [R50.arch [R18.arch]]\n"); return 2;
		}
	}
	const char *r50_path = optind < argc ? argv[optind] : NULL;
	const char *r18_path = optind + 1 < argc ? argv[optind + 1] : NULL;
	mfr_cpu_set_threads(0);
	printf("conv/linear backend: %s; %d thread%s on all cores\n", mfr_cpu_backend(), mfr_cpu_threads(),
	       mfr_cpu_threads() == 1 ? "" : "s");
	fflush(stdout);
	int fast = bench("r50", "iresnet50", r50_path, export);
	fflush(stdout);
	if (fast)
		bench("r18", "iresnet18", r18_path, export);
	else
		printf("iresnet18: skipped (the reference path)\n");
	return 0;
}
