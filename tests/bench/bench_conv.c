/* bench_conv.c — speed of the fast CPU conv2d (dnnl_cpu.h) against the
 * reference on iresnet50's convolutions: each 3x3 stage shape (64@112,
 * the 64@112 stride-2 entry, 128@28, 256@14, 512@7) and the 1x1 stride-2
 * shortcuts, forward and backward (din and dw together; iresnet's convs have
 * no bias), batch 1 on one thread and batch 32 (or argv[1]) on all cores.
 * GFLOP/s count 2 flops per multiply-add (backward: two convolutions' worth).
 *
 * The reference is single-threaded and linear in the batch, so it is timed
 * once, at batch 1, and the batch-32 ratio is taken against 32 times that
 * (it would take minutes to run). With oneDNN, the fast path is timed in
 * each layout mode of dnnl_cpu.c: plain NCHW, oneDNN's blocked layouts with
 * reorders on every call, and its automatic choice between them ("fast",
 * the default, which the ratio to the reference uses).
 * Prints figures, asserts nothing.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "dnnl_cpu.h"       /* defines: mfr_conv2d_forward_cpu, mfr_cpu_set_threads, ... */
#include "layers_spatial.h" /* defines: mfr_conv2d_forward_ref, mfr_conv_shape */

#ifdef MFR_HAVE_DNNL
void mfr_dnnl_set_layout(int mode); /* dnnl_cpu.c's layouts: 0 plain, 1 blocked, 2 auto */
#endif

static const double SECONDS = 0.3; /* wall time per fast figure, after a warm-up call */

static double now(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return t.tv_sec + t.tv_nsec * 1e-9;
}

static void die(const char *what, const mfr_error *e)
{
	fprintf(stderr, "bench_conv: %s: %s\n", what, e->msg);
	exit(1);
}

typedef struct {
	const char *name;
	int ci, h, co, k, stride;
} conv;

static const conv convs[] = {
	{"3x3 64@112", 64, 112, 64, 3, 1},
	{"3x3 64@112 s2", 64, 112, 64, 3, 2},
	{"3x3 128@28", 128, 28, 128, 3, 1},
	{"3x3 256@14", 256, 14, 256, 3, 1},
	{"3x3 512@7", 512, 7, 512, 3, 1},
	{"1x1 64@112 s2", 64, 112, 64, 1, 2},
	{"1x1 64>128@56 s2", 64, 56, 128, 1, 2},
	{"1x1 128>256@28 s2", 128, 28, 256, 1, 2},
	{"1x1 256>512@14 s2", 256, 14, 512, 1, 2},
};
enum { NCONV = sizeof convs / sizeof *convs };

static mfr_conv_shape shape_of(const conv *c, int n)
{
	mfr_conv_shape s = {.n = n, .ci = c->ci, .h = c->h, .w = c->h, .co = c->co, .kh = c->k,
		.kw = c->k, .sh = c->stride, .sw = c->stride, .ph = c->k / 2, .pw = c->k / 2,
		.groups = 1};
	mfr_error e;
	if (mfr_conv_shape_init(&s, &e) < 0)
		die("shape", &e);
	return s;
}

typedef struct {
	float *in, *w, *out, *dout, *din, *dw;
} bufs;

static float *fill(size_t n)
{
	float *p = malloc(n * sizeof *p);
	if (!p) {
		fprintf(stderr, "bench_conv: out of memory\n");
		exit(1);
	}
	for (size_t i = 0; i < n; i++)
		p[i] = (float)((i * 2654435761u) % 1000) * 1e-3f - 0.5f;
	return p;
}

static bufs alloc(const mfr_conv_shape *s)
{
	size_t nin = (size_t)s->n * s->ci * s->h * s->w, nout = (size_t)s->n * s->co * s->ho * s->wo;
	size_t nw = (size_t)s->co * s->ci * s->kh * s->kw;
	return (bufs){fill(nin), fill(nw), fill(nout), fill(nout), fill(nin), fill(nw)};
}

static void release(bufs *b)
{
	free(b->in), free(b->w), free(b->out), free(b->dout), free(b->din), free(b->dw);
}

/* Seconds per call: fast = the best of repeated calls after a warm-up (which
 * also builds the cached primitive); ref = one call. */
static double time_fwd(const mfr_conv_shape *s, bufs *b, int fast)
{
	mfr_error e;
	if (!fast) {
		double t0 = now();
		mfr_conv2d_forward_ref(b->out, b->in, b->w, NULL, s);
		return now() - t0;
	}
	if (mfr_conv2d_forward_cpu(b->out, b->in, b->w, NULL, s, &e) < 0)
		die("forward", &e);
	double best = 1e30, start = now();
	do {
		double t0 = now();
		if (mfr_conv2d_forward_cpu(b->out, b->in, b->w, NULL, s, &e) < 0)
			die("forward", &e);
		double t = now() - t0;
		best = t < best ? t : best;
	} while (now() - start < SECONDS);
	return best;
}

static double time_bwd(const mfr_conv_shape *s, bufs *b, int fast)
{
	mfr_error e;
	if (!fast) {
		double t0 = now();
		mfr_conv2d_backward_ref(b->din, b->dw, NULL, b->dout, b->in, b->w, s);
		return now() - t0;
	}
	if (mfr_conv2d_backward_cpu(b->din, b->dw, NULL, b->dout, b->in, b->w, s, &e) < 0)
		die("backward", &e);
	double best = 1e30, start = now();
	do {
		double t0 = now();
		if (mfr_conv2d_backward_cpu(b->din, b->dw, NULL, b->dout, b->in, b->w, s, &e) < 0)
			die("backward", &e);
		double t = now() - t0;
		best = t < best ? t : best;
	} while (now() - start < SECONDS);
	return best;
}

static double macs(const mfr_conv_shape *s)
{
	return (double)s->n * s->co * s->ho * s->wo * (s->ci / s->groups) * s->kh * s->kw;
}

/* One table: every shape at batch n on the current thread count, the
 * reference's batch-1 seconds (ref_f, ref_b) scaled by n. With oneDNN the
 * fast path runs in each layout mode of dnnl_cpu.c: plain, blocked, and the
 * automatic choice it makes by default ("fast"). */
static void table(int n, const double *ref_f, const double *ref_b)
{
#ifdef MFR_HAVE_DNNL
	enum { L = 3 };
	static const char *head[2][L] = {{"fwd plain", "blocked", "fast"}, {"bwd plain", "blocked", "fast"}};
#else
	enum { L = 1 };
	static const char *head[2][L] = {{"fwd fast"}, {"bwd fast"}};
#endif
	double tot_mac = 0, tot[2][L] = {{0}}, tot_r[2] = {0};
	printf("batch %d, %d thread%s; GFLOP/s, fast also in ms per call%s\n", n, mfr_cpu_threads(),
		mfr_cpu_threads() == 1 ? "" : "s", n > 1 ? "; ref = batch-1 time x batch" : "");
	printf("%-18s", "");
	for (int dir = 0; dir < 2; dir++) {
		for (int l = 0; l < L; l++)
			printf(l == L - 1 ? " %17s" : " %9s", head[dir][l]);
		printf(" %7s %6s%s", "ref", "x ref", dir ? "\n" : " |");
	}
	for (int i = 0; i <= NCONV; i++) {
		double m, t[2][L], r[2];
		if (i < NCONV) {
			mfr_conv_shape s = shape_of(&convs[i], n);
			bufs b = alloc(&s);
			m = macs(&s);
			for (int l = 0; l < L; l++) {
#ifdef MFR_HAVE_DNNL
				mfr_dnnl_set_layout(l);
#endif
				t[0][l] = time_fwd(&s, &b, 1);
				t[1][l] = time_bwd(&s, &b, 1);
			}
			release(&b);
			r[0] = ref_f[i] * n, r[1] = ref_b[i] * n;
			tot_mac += m;
			for (int dir = 0; dir < 2; dir++) {
				tot_r[dir] += r[dir];
				for (int l = 0; l < L; l++)
					tot[dir][l] += t[dir][l];
			}
			printf("%-18s", convs[i].name);
		} else {
			m = tot_mac;
			memcpy(t, tot, sizeof t);
			memcpy(r, tot_r, sizeof r);
			printf("%-18s", "all of the above");
		}
		for (int dir = 0; dir < 2; dir++) {
			double f = dir ? 4 * m : 2 * m; /* backward: din and dw, a convolution each */
			for (int l = 0; l < L; l++)
				printf(" %9.1f", f / t[dir][l] / 1e9);
			printf(" (%6.2f) %7.2f %6.0f%s", t[dir][L - 1] * 1e3, f / r[dir] / 1e9,
				r[dir] / t[dir][L - 1], dir ? "\n" : " |");
		}
	}
}

int main(int argc, char **argv)
{
	int batch = argc > 1 ? atoi(argv[1]) : 32;
	if (batch < 1 || batch > 4096) {
		fprintf(stderr, "usage: bench_conv [batch 1..4096]\n");
		return 2;
	}
	printf("backend: %s; x ref = how many times faster than the reference\n", mfr_cpu_backend());
	double ref_f[NCONV], ref_b[NCONV];
	for (int i = 0; i < NCONV; i++) {
		mfr_conv_shape s = shape_of(&convs[i], 1);
		bufs b = alloc(&s);
		ref_f[i] = time_fwd(&s, &b, 0);
		ref_b[i] = time_bwd(&s, &b, 0);
		release(&b);
	}
	mfr_cpu_set_threads(1);
	table(1, ref_f, ref_b);
	mfr_cpu_set_threads(0);
	table(batch, ref_f, ref_b);
	mfr_cpu_release();
	return 0;
}
