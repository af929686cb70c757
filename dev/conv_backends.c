/* conv_backends.c — scratch measurement for issue 3's choice of fast CPU
 * backend: one convolution forward of iresnet50's shapes, single thread,
 * by (a) im2col + OpenBLAS sgemm, (b) oneDNN on plain NCHW tensors,
 * (c) oneDNN in its preferred (blocked) layouts, reorders excluded — what a
 * network kept in oneDNN's layout end to end would pay.
 * Build: gcc -O2 dev/conv_backends.c -ldnnl -lopenblas -o /tmp/cb
 * Run:   OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 /tmp/cb */
#include <cblas.h>
#include <dnnl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double now(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return t.tv_sec + t.tv_nsec * 1e-9;
}

#define CK(x) do { dnnl_status_t s_ = (x); if (s_ != dnnl_success) { fprintf(stderr, "%s: %d\n", #x, s_); exit(1); } } while (0)

typedef struct { int N, C, H, K, S, Co; } shape; /* square kernel K, stride S, pad K/2 */

static void im2col(const float *in, float *col, int C, int H, int W, int K, int S, int P, int Ho, int Wo)
{
	for (int c = 0; c < C; c++)
		for (int ky = 0; ky < K; ky++)
			for (int kx = 0; kx < K; kx++) {
				float *row = col + ((size_t)(c * K + ky) * K + kx) * Ho * Wo;
				for (int y = 0; y < Ho; y++) {
					int iy = y * S - P + ky;
					for (int x = 0; x < Wo; x++) {
						int ix = x * S - P + kx;
						row[y * Wo + x] = iy >= 0 && iy < H && ix >= 0 && ix < W ? in[((size_t)c * H + iy) * W + ix] : 0;
					}
				}
			}
}

static double bench_blas(shape s, float *in, float *w, float *out)
{
	int P = s.K / 2, Ho = (s.H + 2 * P - s.K) / s.S + 1;
	float *col = malloc(sizeof(float) * s.C * s.K * s.K * Ho * Ho);
	double best = 1e9;
	for (int rep = 0; rep < 5; rep++) {
		double t0 = now();
		for (int n = 0; n < s.N; n++) {
			const float *x = in + (size_t)n * s.C * s.H * s.H;
			float *y = out + (size_t)n * s.Co * Ho * Ho;
			if (s.K == 1 && s.S == 1)
				cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, s.Co, Ho * Ho, s.C, 1, w, s.C, x, Ho * Ho, 0, y, Ho * Ho);
			else {
				im2col(x, col, s.C, s.H, s.H, s.K, s.S, P, Ho, Ho);
				cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, s.Co, Ho * Ho, s.C * s.K * s.K, 1, w,
					    s.C * s.K * s.K, col, Ho * Ho, 0, y, Ho * Ho);
			}
		}
		double t = now() - t0;
		best = t < best ? t : best;
	}
	free(col);
	return best;
}

static double bench_dnnl(shape s, float *in, float *w, float *out, int any)
{
	dnnl_engine_t eng;
	dnnl_stream_t st;
	CK(dnnl_engine_create(&eng, dnnl_cpu, 0));
	CK(dnnl_stream_create(&st, eng, dnnl_stream_default_flags));
	int P = s.K / 2, Ho = (s.H + 2 * P - s.K) / s.S + 1;
	dnnl_dims_t sd = {s.N, s.C, s.H, s.H}, wd = {s.Co, s.C, s.K, s.K}, dd = {s.N, s.Co, Ho, Ho};
	dnnl_dims_t strides = {s.S, s.S}, pad = {P, P};
	dnnl_memory_desc_t smd, wmd, dmd, sany, wany, dany;
	CK(dnnl_memory_desc_init_by_tag(&smd, 4, sd, dnnl_f32, dnnl_nchw));
	CK(dnnl_memory_desc_init_by_tag(&wmd, 4, wd, dnnl_f32, dnnl_oihw));
	CK(dnnl_memory_desc_init_by_tag(&dmd, 4, dd, dnnl_f32, dnnl_nchw));
	CK(dnnl_memory_desc_init_by_tag(&sany, 4, sd, dnnl_f32, any ? dnnl_format_tag_any : dnnl_nchw));
	CK(dnnl_memory_desc_init_by_tag(&wany, 4, wd, dnnl_f32, any ? dnnl_format_tag_any : dnnl_oihw));
	CK(dnnl_memory_desc_init_by_tag(&dany, 4, dd, dnnl_f32, any ? dnnl_format_tag_any : dnnl_nchw));
	dnnl_convolution_desc_t cd;
	CK(dnnl_convolution_forward_desc_init(&cd, dnnl_forward_inference, dnnl_convolution_direct, &sany, &wany, NULL,
					      &dany, strides, pad, pad));
	dnnl_primitive_desc_t pd;
	CK(dnnl_primitive_desc_create(&pd, &cd, NULL, eng, NULL));
	const dnnl_memory_desc_t *ps = dnnl_primitive_desc_query_md(pd, dnnl_query_src_md, 0);
	const dnnl_memory_desc_t *pw = dnnl_primitive_desc_query_md(pd, dnnl_query_weights_md, 0);
	const dnnl_memory_desc_t *pdst = dnnl_primitive_desc_query_md(pd, dnnl_query_dst_md, 0);
	dnnl_memory_t ms, mw, md;
	CK(dnnl_memory_create(&ms, ps, eng, DNNL_MEMORY_ALLOCATE));
	CK(dnnl_memory_create(&mw, pw, eng, DNNL_MEMORY_ALLOCATE));
	CK(dnnl_memory_create(&md, pdst, eng, DNNL_MEMORY_ALLOCATE));
	(void)smd; (void)wmd; (void)dmd; (void)in; (void)w; (void)out; /* values do not matter for timing */
	dnnl_primitive_t conv;
	CK(dnnl_primitive_create(&conv, pd));
	dnnl_exec_arg_t args[] = {{DNNL_ARG_SRC, ms}, {DNNL_ARG_WEIGHTS, mw}, {DNNL_ARG_DST, md}};
	double best = 1e9;
	for (int rep = 0; rep < 6; rep++) {
		double t0 = now();
		CK(dnnl_primitive_execute(conv, st, 3, args));
		CK(dnnl_stream_wait(st));
		double t = now() - t0;
		if (rep)
			best = t < best ? t : best;
	}
	const char *impl;
	dnnl_primitive_desc_query(pd, dnnl_query_impl_info_str, 0, &impl);
	fprintf(stderr, "  dnnl %s impl: %s\n", any ? "any " : "nchw", impl);
	dnnl_primitive_destroy(conv);
	dnnl_memory_destroy(ms);
	dnnl_memory_destroy(mw);
	dnnl_memory_destroy(md);
	dnnl_primitive_desc_destroy(pd);
	dnnl_stream_destroy(st);
	dnnl_engine_destroy(eng);
	return best;
}

int main(void)
{
	shape shapes[] = {
		{1, 64, 112, 3, 1, 64}, {1, 64, 112, 3, 2, 64}, {1, 128, 28, 3, 1, 128},
		{1, 256, 14, 3, 1, 256}, {1, 512, 7, 3, 1, 512}, {1, 256, 28, 1, 2, 512},
		{16, 256, 14, 3, 1, 256},
	};
	double tot[3] = {0}, flops_tot = 0;
	for (size_t i = 0; i < sizeof shapes / sizeof *shapes; i++) {
		shape s = shapes[i];
		int P = s.K / 2, Ho = (s.H + 2 * P - s.K) / s.S + 1;
		size_t nin = (size_t)s.N * s.C * s.H * s.H, nw = (size_t)s.Co * s.C * s.K * s.K, nout = (size_t)s.N * s.Co * Ho * Ho;
		float *in = calloc(nin, 4), *w = calloc(nw, 4), *out = calloc(nout, 4);
		for (size_t k = 0; k < nin; k++) in[k] = (float)(k % 7) - 3;
		for (size_t k = 0; k < nw; k++) w[k] = (float)(k % 5) - 2;
		double flops = 2.0 * nout * s.C * s.K * s.K;
		double tb = bench_blas(s, in, w, out), tn = bench_dnnl(s, in, w, out, 0), ta = bench_dnnl(s, in, w, out, 1);
		printf("N%-2d %3d->%3d k%d s%d @%3d: blas %6.1f  dnnl-nchw %6.1f  dnnl-blocked %6.1f GFLOP/s\n", s.N, s.C, s.Co,
		       s.K, s.S, s.H, flops / tb / 1e9, flops / tn / 1e9, flops / ta / 1e9);
		if (s.N == 1) {
			tot[0] += tb; tot[1] += tn; tot[2] += ta; flops_tot += flops;
		}
		free(in); free(w); free(out);
	}
	printf("batch-1 shapes together: blas %.1f, dnnl-nchw %.1f, dnnl-blocked %.1f GFLOP/s\n", flops_tot / tot[0] / 1e9,
	       flops_tot / tot[1] / 1e9, flops_tot / tot[2] / 1e9);
	return 0;
}
