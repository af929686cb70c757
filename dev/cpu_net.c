/* cpu_net.c — scratch A/B timer for the inference path (issue 3's latency
 * goal): a preset at batch B on T threads, per-forward CPU time of the
 * process (CLOCK_PROCESS_CPUTIME_ID), which other load on a shared machine
 * disturbs far less than wall clock. Prints min and median CPU ms and a
 * checksum of output 0 (to see that A and B compute the same thing).
 * Build: cc -O2 -Icommon dev/cpu_net.c LIBMFR.a -ldnnl -lgomp -lm -lpthread
 * Run:   cpu_net [PRESET [BATCH [THREADS [RUNS]]]]   (r50 1 1 15) */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "arch.h"
#include "dnnl_cpu.h"
#include "net.h"

static double cpu(void)
{
	struct timespec t;
	clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
	return t.tv_sec + t.tv_nsec * 1e-9;
}

static int cmp(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return (x > y) - (x < y);
}

int main(int argc, char **argv)
{
	const char *preset = argc > 1 ? argv[1] : "r50";
	int batch = argc > 2 ? atoi(argv[2]) : 1, threads = argc > 3 ? atoi(argv[3]) : 1;
	int runs = argc > 4 ? atoi(argv[4]) : 15;
	mfr_error e;
	mfr_arch *a = mfr_arch_load(preset, &e);
	if (!a)
		return fprintf(stderr, "%s\n", e.msg), 1;
	mfr_net *n = mfr_net_new(a, batch, 0, &e);
	mfr_net_init(n, 1);
	size_t per = (size_t)a->layers[0].shape.c * a->layers[0].shape.h * a->layers[0].shape.w;
	float *x = malloc(per * batch * sizeof *x);
	mfr_rng r = {2024};
	for (size_t i = 0; i < per * batch; i++)
		x[i] = (float)(2 * mfr_rng_uniform(&r) - 1);
	mfr_cpu_set_threads(threads);
	double *ts = malloc(runs * sizeof *ts);
	for (int k = -1; k < runs; k++) {
		double t = cpu();
		if (mfr_net_forward(n, x, batch, 0, 0, &e) < 0)
			return fprintf(stderr, "%s\n", e.msg), 1;
		if (k >= 0)
			ts[k] = cpu() - t;
	}
	qsort(ts, runs, sizeof *ts, cmp);
	size_t dim;
	float *y = mfr_net_output(n, 0, &dim);
	double s = 0;
	for (size_t i = 0; i < dim * batch; i++)
		s += fabs(y[i]);
	printf("%s b%d t%d: cpu min %.1f med %.1f ms; sum|y| %.6e\n", preset, batch, threads, ts[0] * 1e3,
	       ts[runs / 2] * 1e3, s);
	return 0;
}
