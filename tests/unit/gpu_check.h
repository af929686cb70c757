/* gpu_check.h — what the CUDA-vs-reference tests (tests/unit/test_gpu_*.c)
 * share: opening the device or skipping with the reason, seeded random
 * inputs, host-side rounding to fp16/bf16, NCHW <-> NHWC moves between the
 * reference's host arrays and the device, and a relative comparison that
 * names the worst element.
 *
 * Without CUDA or without a GPU every test program prints
 * "skip: <what>: <why>" and the closing line "0 passed, 0 failed", so
 * `make test` shows it skipped and why; tests/gpu/run.sh runs them on a GPU.
 * Host-side helpers abort on out-of-memory or a CUDA error: these are test
 * fixtures, and a failing device must fail the test loudly. */
#ifndef MFR_GPU_CHECK_H
#define MFR_GPU_CHECK_H

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h" /* defines: CHECK, check_done */
#include "gpu.h"   /* defines: mfr_gpu, mfr_dtype */
#include "util.h"  /* defines: mfr_rng */

/* The device, or NULL after printing the skip line (no CUDA, no GPU). */
static inline mfr_gpu *gcheck_open(const char *what)
{
	char why[128];
	mfr_error e = {{0}};
	if (mfr_gpu_count(why, sizeof why) == 0) {
		printf("skip: %s: %s\n", what, why);
		return NULL;
	}
	mfr_gpu *g = mfr_gpu_open(0, &e);
	if (!g) {
		printf("skip: %s: %s\n", what, e.msg);
		return NULL;
	}
	printf("# %s on %s (sm_%d)\n", what, mfr_gpu_name(g), mfr_gpu_capability(g));
	return g;
}

static inline void *gcheck_xmalloc(size_t n)
{
	void *p = calloc(1, n ? n : 1); /* zeroed: gcc cannot always see a loop fill the buffer */
	if (!p) {
		fprintf(stderr, "out of memory\n");
		abort();
	}
	return p;
}

/* n floats uniform in [-a, a), from seed. */
static inline void gcheck_fill(float *x, size_t n, uint64_t seed, float a)
{
	mfr_rng r = {seed};
	for (size_t i = 0; i < n; i++)
		x[i] = (float)((mfr_rng_uniform(&r) * 2 - 1) * a);
}

/* float -> fp16 / bf16 bits, round to nearest even (NaN kept a NaN), and back. */
static inline uint16_t gcheck_to_bf16(float f)
{
	uint32_t u;
	memcpy(&u, &f, 4);
	if ((u & 0x7fffffffu) > 0x7f800000u)
		return (uint16_t)((u >> 16) | 0x40);
	u += 0x7fffu + ((u >> 16) & 1);
	return (uint16_t)(u >> 16);
}
static inline float gcheck_from_bf16(uint16_t h)
{
	uint32_t u = (uint32_t)h << 16;
	float f;
	memcpy(&f, &u, 4);
	return f;
}
static inline uint16_t gcheck_to_f16(float f)
{
	uint32_t u;
	memcpy(&u, &f, 4);
	uint32_t sign = (u >> 16) & 0x8000u, a = u & 0x7fffffffu;
	if (a > 0x7f800000u)
		return (uint16_t)(sign | 0x7e00u);
	if (a >= 0x477ff000u) /* rounds to >= 65520: infinity */
		return (uint16_t)(sign | 0x7c00u);
	if (a < 0x38800000u) { /* below 2^-14: subnormal, in units of 2^-24 */
		float af;
		memcpy(&af, &a, 4);
		return (uint16_t)(sign | (uint32_t)lrintf(af * 16777216.0f)); /* lrintf: nearest even */
	}
	uint32_t m = a + 0xfffu + ((a >> 13) & 1); /* round the 13 dropped bits to nearest even */
	return (uint16_t)(sign | ((m - 0x38000000u) >> 13));
}
static inline float gcheck_from_f16(uint16_t h)
{
	uint32_t sign = (uint32_t)(h & 0x8000u) << 16, ex = (h >> 10) & 31, m = h & 1023u;
	float f;
	if (ex == 0)
		f = ldexpf((float)m, -24);
	else if (ex == 31)
		f = m ? NAN : INFINITY;
	else
		f = ldexpf((float)(m | 1024u), (int)ex - 25);
	uint32_t u;
	memcpy(&u, &f, 4);
	u |= sign;
	memcpy(&f, &u, 4);
	return f;
}

/* Rounds x in place to what type t holds (fp32: unchanged), so the reference
 * sees exactly the device's inputs. */
static inline void gcheck_round(float *x, size_t n, mfr_dtype t)
{
	for (size_t i = 0; i < n; i++)
		x[i] = t == MFR_F16 ? gcheck_from_f16(gcheck_to_f16(x[i]))
		       : t == MFR_BF16 ? gcheck_from_bf16(gcheck_to_bf16(x[i])) : x[i];
}

static inline void gcheck_die(const char *what, const mfr_error *e)
{
	fprintf(stderr, "FAIL %s: %s\n", what, e->msg);
	abort();
}

/* A device buffer of bytes (aborts on failure); free with mfr_gpu_free. */
static inline void *gcheck_alloc(mfr_gpu *g, size_t bytes)
{
	mfr_error e = {{0}};
	void *p = mfr_gpu_alloc(g, bytes, &e);
	if (!p)
		gcheck_die("alloc", &e);
	return p;
}

/* Host floats -> a new device buffer of type t, element for element. */
static inline void *gcheck_put(mfr_gpu *g, const float *x, size_t n, mfr_dtype t)
{
	mfr_error e = {{0}};
	void *d = gcheck_alloc(g, n * mfr_dtype_size(t));
	void *h = gcheck_xmalloc(n * mfr_dtype_size(t));
	for (size_t i = 0; i < n; i++) {
		if (t == MFR_F32)
			((float *)h)[i] = x[i];
		else
			((uint16_t *)h)[i] = t == MFR_F16 ? gcheck_to_f16(x[i]) : gcheck_to_bf16(x[i]);
	}
	if (mfr_gpu_put(g, d, h, n * mfr_dtype_size(t), &e) < 0)
		gcheck_die("put", &e);
	free(h);
	return d;
}

/* A new device buffer of n values of type t, all NaN: an output a launcher
 * leaves unwritten, or a gradient an acc = 0 launcher reads, stays NaN and
 * fails the comparison. */
static inline void *gcheck_nan(mfr_gpu *g, size_t n, mfr_dtype t)
{
	float *h = (float *)gcheck_xmalloc((n ? n : 1) * sizeof *h);
	for (size_t i = 0; i < n; i++)
		h[i] = NAN;
	void *d = gcheck_put(g, h, n, t);
	free(h);
	return d;
}

/* Device buffer of type t -> host floats (waits for the stream; aborts with
 * the launch error when a kernel failed). */
static inline void gcheck_get(mfr_gpu *g, float *x, const void *d, size_t n, mfr_dtype t)
{
	mfr_error e = {{0}};
	void *h = gcheck_xmalloc(n * mfr_dtype_size(t));
	if (mfr_gpu_sync(g, &e) < 0 || mfr_gpu_get(g, h, d, n * mfr_dtype_size(t), &e) < 0)
		gcheck_die("get", &e);
	for (size_t i = 0; i < n; i++)
		x[i] = t == MFR_F32 ? ((float *)h)[i]
		       : t == MFR_F16 ? gcheck_from_f16(((uint16_t *)h)[i]) : gcheck_from_bf16(((uint16_t *)h)[i]);
	free(h);
}

/* Host NCHW (n,c,hw) <-> host NHWC (n,hw,c). */
static inline void gcheck_nchw_to_nhwc(float *dst, const float *src, int n, int c, int hw)
{
	for (int i = 0; i < n; i++)
		for (int ch = 0; ch < c; ch++)
			for (int p = 0; p < hw; p++)
				dst[((size_t)i * hw + p) * c + ch] = src[((size_t)i * c + ch) * hw + p];
}
static inline void gcheck_nhwc_to_nchw(float *dst, const float *src, int n, int c, int hw)
{
	for (int i = 0; i < n; i++)
		for (int ch = 0; ch < c; ch++)
			for (int p = 0; p < hw; p++)
				dst[((size_t)i * c + ch) * hw + p] = src[((size_t)i * hw + p) * c + ch];
}

/* Host NCHW floats -> a new device NHWC buffer of type t. */
static inline void *gcheck_put_nhwc(mfr_gpu *g, const float *x, int n, int c, int hw, mfr_dtype t)
{
	size_t cnt = (size_t)n * c * hw;
	float *tmp = (float *)gcheck_xmalloc(cnt * sizeof *tmp);
	gcheck_nchw_to_nhwc(tmp, x, n, c, hw);
	void *d = gcheck_put(g, tmp, cnt, t);
	free(tmp);
	return d;
}

/* Device NHWC buffer of type t -> host NCHW floats. */
static inline void gcheck_get_nchw(mfr_gpu *g, float *x, const void *d, int n, int c, int hw, mfr_dtype t)
{
	size_t cnt = (size_t)n * c * hw;
	float *tmp = (float *)gcheck_xmalloc(cnt * sizeof *tmp);
	gcheck_get(g, tmp, d, cnt, t);
	gcheck_nhwc_to_nchw(x, tmp, n, c, hw);
	free(tmp);
}

/* Unit roundoff of type t: 2^-24, 2^-11, 2^-8. Tolerances are stated as
 * multiples of it (and of the sum length where sums are long). */
static inline double gcheck_eps(mfr_dtype t) { return t == MFR_F16 ? 0x1p-11 : t == MFR_BF16 ? 0x1p-8 : 0x1p-24; }

/* Compares got with want (n values): passes when every |got - want| <= tol *
 * max(1, max |want|) — relative to the tensor's scale, so elements near zero
 * are held to the same absolute error as the large ones. Reports the worst
 * element. Counts one check. */
static inline int gcheck_close(const char *what, const float *got, const float *want, size_t n, double tol)
{
	double scale = 1, worst = 0;
	size_t wi = 0;
	for (size_t i = 0; i < n; i++)
		if (fabs(want[i]) > scale)
			scale = fabs(want[i]);
	for (size_t i = 0; i < n; i++) {
		int gn = got[i] != got[i], wn = want[i] != want[i];
		double d = gn && wn ? 0 : fabs((double)got[i] - (double)want[i]); /* NaN where NaN is wanted is right */
		if (d != d || gn != wn)
			d = INFINITY;
		if (d > worst || (worst == 0 && i == 0)) {
			worst = d;
			wi = i;
		}
	}
	int ok = worst <= tol * scale;
	check_report(ok, what, __FILE__, __LINE__);
	if (!ok)
		fprintf(stderr, "    %s: worst at %zu: got %.9g want %.9g (|d| %.3g > tol %.3g x scale %.3g)\n", what, wi,
			n ? got[wi] : 0.f, n ? want[wi] : 0.f, worst, tol, scale);
	else
		printf("ok %s (max |d| %.3g, scale %.3g)\n", what, worst, scale);
	return ok;
}

#endif
