/* layers_spatial.c — reference forward/backward of conv2d, pooling, padding,
 * linear and dropout (contracts in layers_spatial.h).
 *
 * This is the oracle, not the fast path: direct loops over the definition,
 * one thread, sums carried in double. Backward passes are written as gathers
 * (each gradient element sums everything that depends on it, then adds once)
 * rather than scatters, so each gradient's formula can be read off its loop.
 * The file is compiled twice, for float and (with MFR_REAL_DOUBLE) for double;
 * the shape constructors are compiled in the float build only. */
#include <assert.h>
#include <math.h>
#include <stdint.h>

#include "layers_spatial.h" /* defines: mfr_conv2d_forward_ref, mfr_conv_shape, ... */

/* Largest tensor a shape may describe: 2^40 elements is far beyond any face
 * model and keeps every index product well inside size_t and long long. */
#define MAX_ELEMS (1LL << 40)
/* Every single size must be below 2^28, so that sums like h + 2*ph and
 * products like oy*stride (<= h + 2*ph) stay within int in the loops. */
#define MAX_DIM (1 << 28)

#ifndef MFR_REAL_DOUBLE

/* 1 when a*b*c*d (each >= 1) exceeds MAX_ELEMS, computed without overflow. */
static int over(long long a, long long b, long long c, long long d)
{
	long long f[3] = {b, c, d}, p = a;
	if (p > MAX_ELEMS)
		return 1;
	for (int i = 0; i < 3; i++) {
		if (p > MAX_ELEMS / f[i])
			return 1;
		p *= f[i];
	}
	return 0;
}

/* Checks the sizes common to conv and pool and computes ho, wo. what names
 * the layer in messages. Sizes are added in long long after each is
 * checked positive and below MAX_DIM, and multiplied only through over(). */
static int window_init(const char *what, int n, int c, int h, int w, int kh, int kw, int sh,
	int sw, int ph, int pw, int *ho, int *wo, mfr_error *e)
{
	const int big = MAX_DIM;
	if (n < 1 || c < 1 || h < 1 || w < 1)
		return mfr_fail(e, "%s: input sizes must be >= 1: got %dx%dx%dx%d", what, n, c, h, w);
	if (kh < 1 || kw < 1)
		return mfr_fail(e, "%s: kernel must be >= 1x1: got %dx%d", what, kh, kw);
	if (sh < 1 || sw < 1)
		return mfr_fail(e, "%s: stride must be >= 1: got %dx%d", what, sh, sw);
	if (ph < 0 || pw < 0)
		return mfr_fail(e, "%s: padding must be >= 0: got %dx%d", what, ph, pw);
	if (n >= big || c >= big || h >= big || w >= big || kh >= big || kw >= big || sh >= big ||
		sw >= big || ph >= big || pw >= big)
		return mfr_fail(e, "%s: a size is 2^28 or more", what);
	long long hp = h + 2LL * ph, wp = w + 2LL * pw;
	if (kh > hp || kw > wp)
		return mfr_fail(e, "%s: kernel %dx%d larger than padded input %lldx%lld", what, kh, kw,
			hp, wp);
	long long oh = (hp - kh) / sh + 1, ow = (wp - kw) / sw + 1;
	if (oh >= big || ow >= big)
		return mfr_fail(e, "%s: output %lldx%lld is 2^28 or more", what, oh, ow);
	*ho = (int)oh;
	*wo = (int)ow;
	if (over(n, c, h, w) || over(n, c, *ho, *wo))
		return mfr_fail(e, "%s: input or output of %dx%dx%dx%d is over 2^40 elements", what, n,
			c, h, w);
	return 0;
}

int mfr_conv_shape_init(mfr_conv_shape *s, mfr_error *e)
{
	if (window_init("conv2d", s->n, s->ci, s->h, s->w, s->kh, s->kw, s->sh, s->sw, s->ph, s->pw,
		&s->ho, &s->wo, e))
		return -1;
	if (s->co < 1 || s->co >= MAX_DIM)
		return mfr_fail(e, "conv2d: output channels out of range 1..2^28-1: %d", s->co);
	if (s->groups < 1)
		return mfr_fail(e, "conv2d: groups must be >= 1: got %d", s->groups);
	if (s->ci % s->groups || s->co % s->groups)
		return mfr_fail(e, "conv2d: channels %d -> %d not divisible by groups %d", s->ci, s->co,
			s->groups);
	if (over(s->n, s->co, s->ho, s->wo) || over(s->co, s->ci / s->groups, s->kh, s->kw))
		return mfr_fail(e, "conv2d: output or weight over 2^40 elements");
	return 0;
}

int mfr_pool_shape_init(mfr_pool_shape *s, mfr_error *e)
{
	if (window_init("pool", s->n, s->c, s->h, s->w, s->kh, s->kw, s->sh, s->sw, s->ph, s->pw,
		&s->ho, &s->wo, e))
		return -1;
	if (s->ph >= s->kh || s->pw >= s->kw)
		return mfr_fail(e, "pool: padding %dx%d must be smaller than the kernel %dx%d", s->ph,
			s->pw, s->kh, s->kw);
	return 0;
}

int mfr_pad_shape_init(mfr_pad_shape *s, mfr_error *e)
{
	const int big = MAX_DIM;
	if (s->n < 1 || s->c < 1 || s->h < 1 || s->w < 1)
		return mfr_fail(e, "pad: input sizes must be >= 1: got %dx%dx%dx%d", s->n, s->c, s->h,
			s->w);
	if (s->top < 0 || s->bottom < 0 || s->left < 0 || s->right < 0)
		return mfr_fail(e, "pad: padding must be >= 0: got top %d bottom %d left %d right %d",
			s->top, s->bottom, s->left, s->right);
	if (s->n >= big || s->c >= big || s->h >= big || s->w >= big || s->top >= big ||
		s->bottom >= big || s->left >= big || s->right >= big)
		return mfr_fail(e, "pad: a size is 2^28 or more");
	long long ho = (long long)s->top + s->h + s->bottom, wo = (long long)s->left + s->w + s->right;
	if (ho >= big || wo >= big || over(s->n, s->c, ho, wo))
		return mfr_fail(e, "pad: output of %dx%dx%lldx%lld is too large", s->n, s->c, ho, wo);
	s->ho = (int)ho;
	s->wo = (int)wo;
	return 0;
}

#endif /* shape constructors: float build only */

/* ---- conv2d ---- */

/* Flat indices into the input (N,Ci,H,W), the output (N,Co,Ho,Wo) and the
 * weight (Co,Ci/groups,kh,kw) of a convolution. */
static inline size_t in_at(const mfr_conv_shape *s, int n, int c, int y, int x)
{
	return (((size_t)n * s->ci + c) * s->h + y) * s->w + x;
}
static inline size_t out_at(const mfr_conv_shape *s, int n, int c, int y, int x)
{
	return (((size_t)n * s->co + c) * s->ho + y) * s->wo + x;
}
static inline size_t w_at(const mfr_conv_shape *s, int oc, int j, int ky, int kx)
{
	return (((size_t)oc * (s->ci / s->groups) + j) * s->kh + ky) * s->kw + kx;
}

void MFR_REF(conv2d_forward)(mfr_real *out, const mfr_real *in, const mfr_real *w,
	const mfr_real *b, const mfr_conv_shape *s)
{
	int cig = s->ci / s->groups, cog = s->co / s->groups;
	for (int n = 0; n < s->n; n++)
		for (int oc = 0; oc < s->co; oc++) {
			int ic0 = oc / cog * cig; /* first input channel of oc's group */
			for (int oy = 0; oy < s->ho; oy++)
				for (int ox = 0; ox < s->wo; ox++) {
					double acc = b ? b[oc] : 0;
					for (int j = 0; j < cig; j++)
						for (int ky = 0; ky < s->kh; ky++) {
							int y = oy * s->sh - s->ph + ky;
							if (y < 0 || y >= s->h)
								continue;
							for (int kx = 0; kx < s->kw; kx++) {
								int x = ox * s->sw - s->pw + kx;
								if (x < 0 || x >= s->w)
									continue;
								acc += (double)in[in_at(s, n, ic0 + j, y, x)] * w[w_at(s, oc, j, ky, kx)];
							}
						}
					out[out_at(s, n, oc, oy, ox)] = (mfr_real)acc;
				}
		}
}

/* The output coordinate o that reads input coordinate i through kernel tap k
 * (i = o*stride - pad + k), or -1 when none does. */
static inline int tap_out(int i, int k, int stride, int pad, int nout)
{
	int t = i + pad - k;
	if (t < 0 || t % stride)
		return -1;
	t /= stride;
	return t < nout ? t : -1;
}

void MFR_REF(conv2d_backward)(mfr_real *din, mfr_real *dw, mfr_real *db,
	const mfr_real *dout, const mfr_real *in, const mfr_real *w, const mfr_conv_shape *s)
{
	int cig = s->ci / s->groups, cog = s->co / s->groups;
	if (db)
		for (int oc = 0; oc < s->co; oc++) {
			double acc = 0;
			for (int n = 0; n < s->n; n++)
				for (int o = 0; o < s->ho * s->wo; o++)
					acc += dout[out_at(s, n, oc, 0, 0) + o];
			db[oc] += (mfr_real)acc;
		}
	/* dw[oc][j][ky][kx] = sum over n, oy, ox of
	 * dout[n][oc][oy][ox] * in[n][ic0+j][y][x], (y,x) the input the tap reads */
	if (dw)
		for (int oc = 0; oc < s->co; oc++) {
			int ic0 = oc / cog * cig;
			for (int j = 0; j < cig; j++)
				for (int ky = 0; ky < s->kh; ky++)
					for (int kx = 0; kx < s->kw; kx++) {
						double acc = 0;
						for (int n = 0; n < s->n; n++)
							for (int oy = 0; oy < s->ho; oy++) {
								int y = oy * s->sh - s->ph + ky;
								if (y < 0 || y >= s->h)
									continue;
								for (int ox = 0; ox < s->wo; ox++) {
									int x = ox * s->sw - s->pw + kx;
									if (x < 0 || x >= s->w)
										continue;
									acc += (double)dout[out_at(s, n, oc, oy, ox)] *
										in[in_at(s, n, ic0 + j, y, x)];
								}
							}
						dw[w_at(s, oc, j, ky, kx)] += (mfr_real)acc;
					}
		}
	/* din[n][ic][y][x] = sum over the oc of ic's group and the taps (ky,kx)
	 * whose output (oy,ox) reads (y,x) of dout[n][oc][oy][ox] * w[oc][j][ky][kx] */
	if (din)
		for (int n = 0; n < s->n; n++)
			for (int ic = 0; ic < s->ci; ic++) {
				int g = ic / cig, j = ic % cig;
				for (int y = 0; y < s->h; y++)
					for (int x = 0; x < s->w; x++) {
						double acc = 0;
						for (int oc = g * cog; oc < (g + 1) * cog; oc++)
							for (int ky = 0; ky < s->kh; ky++) {
								int oy = tap_out(y, ky, s->sh, s->ph, s->ho);
								if (oy < 0)
									continue;
								for (int kx = 0; kx < s->kw; kx++) {
									int ox = tap_out(x, kx, s->sw, s->pw, s->wo);
									if (ox < 0)
										continue;
									acc += (double)dout[out_at(s, n, oc, oy, ox)] * w[w_at(s, oc, j, ky, kx)];
								}
							}
						din[in_at(s, n, ic, y, x)] += (mfr_real)acc;
					}
			}
}

/* ---- max and average pooling ---- */

/* The real rows (or columns) [*i0, *i1) of output row o's window, padding
 * clipped off; never empty, as mfr_pool_shape_init requires pad < kernel. */
static inline void window_rows(int o, int k, int stride, int pad, int size, int *i0, int *i1)
{
	int a = o * stride - pad, z = a + k;
	*i0 = a < 0 ? 0 : a;
	*i1 = z > size ? size : z;
}

/* Flat index, within one (H,W) plane, of the argmax of window (oy,ox): the
 * first maximum in scan order, or the first NaN. */
static size_t max_at(const mfr_real *plane, int oy, int ox, const mfr_pool_shape *s)
{
	int y0, y1, x0, x1;
	window_rows(oy, s->kh, s->sh, s->ph, s->h, &y0, &y1);
	window_rows(ox, s->kw, s->sw, s->pw, s->w, &x0, &x1);
	size_t best = (size_t)y0 * s->w + x0;
	for (int y = y0; y < y1; y++)
		for (int x = x0; x < x1; x++) {
			size_t i = (size_t)y * s->w + x;
			mfr_real v = plane[i], m = plane[best];
			if (isnan(m))
				return best;
			if (v > m || isnan(v))
				best = i;
		}
	return best;
}

void MFR_REF(maxpool2d_forward)(mfr_real *out, const mfr_real *in, const mfr_pool_shape *s)
{
	size_t hw = (size_t)s->h * s->w, ohw = (size_t)s->ho * s->wo;
	for (size_t p = 0; p < (size_t)s->n * s->c; p++)
		for (int oy = 0; oy < s->ho; oy++)
			for (int ox = 0; ox < s->wo; ox++)
				out[p * ohw + (size_t)oy * s->wo + ox] = in[p * hw + max_at(in + p * hw, oy, ox, s)];
}

void MFR_REF(maxpool2d_backward)(mfr_real *din, const mfr_real *dout, const mfr_real *in,
	const mfr_pool_shape *s)
{
	/* A scatter: one input element may be the argmax of several windows. */
	size_t hw = (size_t)s->h * s->w, ohw = (size_t)s->ho * s->wo;
	for (size_t p = 0; p < (size_t)s->n * s->c; p++)
		for (int oy = 0; oy < s->ho; oy++)
			for (int ox = 0; ox < s->wo; ox++)
				din[p * hw + max_at(in + p * hw, oy, ox, s)] += dout[p * ohw + (size_t)oy * s->wo + ox];
}

void MFR_REF(avgpool2d_forward)(mfr_real *out, const mfr_real *in, const mfr_pool_shape *s)
{
	size_t hw = (size_t)s->h * s->w, ohw = (size_t)s->ho * s->wo;
	for (size_t p = 0; p < (size_t)s->n * s->c; p++)
		for (int oy = 0; oy < s->ho; oy++)
			for (int ox = 0; ox < s->wo; ox++) {
				int y0, y1, x0, x1;
				window_rows(oy, s->kh, s->sh, s->ph, s->h, &y0, &y1);
				window_rows(ox, s->kw, s->sw, s->pw, s->w, &x0, &x1);
				double acc = 0;
				for (int y = y0; y < y1; y++)
					for (int x = x0; x < x1; x++)
						acc += in[p * hw + (size_t)y * s->w + x];
				out[p * ohw + (size_t)oy * s->wo + ox] = (mfr_real)(acc / ((y1 - y0) * (x1 - x0)));
			}
}

void MFR_REF(avgpool2d_backward)(mfr_real *din, const mfr_real *dout, const mfr_pool_shape *s)
{
	/* A scatter: overlapping windows (stride < kernel) share input elements. */
	size_t hw = (size_t)s->h * s->w, ohw = (size_t)s->ho * s->wo;
	for (size_t p = 0; p < (size_t)s->n * s->c; p++)
		for (int oy = 0; oy < s->ho; oy++)
			for (int ox = 0; ox < s->wo; ox++) {
				int y0, y1, x0, x1;
				window_rows(oy, s->kh, s->sh, s->ph, s->h, &y0, &y1);
				window_rows(ox, s->kw, s->sw, s->pw, s->w, &x0, &x1);
				mfr_real g = (mfr_real)(dout[p * ohw + (size_t)oy * s->wo + ox] /
					(double)((y1 - y0) * (x1 - x0)));
				for (int y = y0; y < y1; y++)
					for (int x = x0; x < x1; x++)
						din[p * hw + (size_t)y * s->w + x] += g;
			}
}

/* ---- global average pooling ---- */

void MFR_REF(gap_forward)(mfr_real *out, const mfr_real *in, int n, int c, int hw)
{
	assert(n >= 1 && c >= 1 && hw >= 1);
	for (size_t p = 0; p < (size_t)n * c; p++) {
		double acc = 0;
		for (int i = 0; i < hw; i++)
			acc += in[p * hw + i];
		out[p] = (mfr_real)(acc / hw);
	}
}

void MFR_REF(gap_backward)(mfr_real *din, const mfr_real *dout, int n, int c, int hw)
{
	assert(n >= 1 && c >= 1 && hw >= 1);
	for (size_t p = 0; p < (size_t)n * c; p++) {
		mfr_real g = (mfr_real)(dout[p] / (double)hw);
		for (int i = 0; i < hw; i++)
			din[p * hw + i] += g;
	}
}

/* ---- spatial and channel zero padding ---- */

void MFR_REF(pad2d_forward)(mfr_real *out, const mfr_real *in, const mfr_pad_shape *s)
{
	size_t hw = (size_t)s->h * s->w, ohw = (size_t)s->ho * s->wo;
	for (size_t p = 0; p < (size_t)s->n * s->c; p++)
		for (int oy = 0; oy < s->ho; oy++)
			for (int ox = 0; ox < s->wo; ox++) {
				int y = oy - s->top, x = ox - s->left;
				int inside = y >= 0 && y < s->h && x >= 0 && x < s->w;
				out[p * ohw + (size_t)oy * s->wo + ox] = inside ? in[p * hw + (size_t)y * s->w + x] : 0;
			}
}

void MFR_REF(pad2d_backward)(mfr_real *din, const mfr_real *dout, const mfr_pad_shape *s)
{
	size_t hw = (size_t)s->h * s->w, ohw = (size_t)s->ho * s->wo;
	for (size_t p = 0; p < (size_t)s->n * s->c; p++)
		for (int y = 0; y < s->h; y++)
			for (int x = 0; x < s->w; x++)
				din[p * hw + (size_t)y * s->w + x] +=
					dout[p * ohw + (size_t)(y + s->top) * s->wo + (x + s->left)];
}

void MFR_REF(chanpad_forward)(mfr_real *out, const mfr_real *in, int n, int c, int c2, int hw)
{
	assert(n >= 1 && c >= 1 && c2 >= c && hw >= 1);
	for (int i = 0; i < n; i++)
		for (int ch = 0; ch < c2; ch++)
			for (int k = 0; k < hw; k++)
				out[((size_t)i * c2 + ch) * hw + k] = ch < c ? in[((size_t)i * c + ch) * hw + k] : 0;
}

void MFR_REF(chanpad_backward)(mfr_real *din, const mfr_real *dout, int n, int c, int c2, int hw)
{
	assert(n >= 1 && c >= 1 && c2 >= c && hw >= 1);
	for (int i = 0; i < n; i++)
		for (int ch = 0; ch < c; ch++)
			for (int k = 0; k < hw; k++)
				din[((size_t)i * c + ch) * hw + k] += dout[((size_t)i * c2 + ch) * hw + k];
}

/* ---- linear ---- */

void MFR_REF(linear_forward)(mfr_real *out, const mfr_real *in, const mfr_real *w,
	const mfr_real *b, int n, int ni, int no)
{
	assert(n >= 1 && ni >= 1 && no >= 1);
	for (int r = 0; r < n; r++)
		for (int o = 0; o < no; o++) {
			double acc = b ? b[o] : 0;
			for (int i = 0; i < ni; i++)
				acc += (double)in[(size_t)r * ni + i] * w[(size_t)o * ni + i];
			out[(size_t)r * no + o] = (mfr_real)acc;
		}
}

void MFR_REF(linear_backward)(mfr_real *din, mfr_real *dw, mfr_real *db,
	const mfr_real *dout, const mfr_real *in, const mfr_real *w, int n, int ni, int no)
{
	assert(n >= 1 && ni >= 1 && no >= 1);
	if (db)
		for (int o = 0; o < no; o++) {
			double acc = 0;
			for (int r = 0; r < n; r++)
				acc += dout[(size_t)r * no + o];
			db[o] += (mfr_real)acc;
		}
	if (dw)
		for (int o = 0; o < no; o++)
			for (int i = 0; i < ni; i++) {
				double acc = 0;
				for (int r = 0; r < n; r++)
					acc += (double)dout[(size_t)r * no + o] * in[(size_t)r * ni + i];
				dw[(size_t)o * ni + i] += (mfr_real)acc;
			}
	if (din)
		for (int r = 0; r < n; r++)
			for (int i = 0; i < ni; i++) {
				double acc = 0;
				for (int o = 0; o < no; o++)
					acc += (double)dout[(size_t)r * no + o] * w[(size_t)o * ni + i];
				din[(size_t)r * ni + i] += (mfr_real)acc;
			}
}

/* ---- dropout ---- */

void MFR_REF(dropout_forward)(mfr_real *out, uint8_t *mask, const mfr_real *in, double p,
	uint64_t seed, size_t count)
{
	assert(p >= 0 && p < 1);
	mfr_rng r = {seed};
	double scale = 1 / (1 - p);
	for (size_t i = 0; i < count; i++) {
		mask[i] = mfr_rng_uniform(&r) >= p;
		out[i] = mask[i] ? (mfr_real)(in[i] * scale) : 0;
	}
}

void MFR_REF(dropout_backward)(mfr_real *din, const mfr_real *dout, const uint8_t *mask,
	double p, size_t count)
{
	assert(p >= 0 && p < 1);
	double scale = 1 / (1 - p);
	for (size_t i = 0; i < count; i++)
		if (mask[i])
			din[i] += (mfr_real)(dout[i] * scale);
}
