/* image.c — image buffers, JPEG (TurboJPEG) and PNG (libpng simplified API)
 * coding, and 5-point face alignment (Umeyama similarity + bilinear warp).
 *
 * It is not an image library: 8-bit grey or RGB only, no colour management,
 * no EXIF orientation. Every decoder checks width*height against the caller's
 * pixel cap before it allocates, turns library warnings into errors, and
 * neither prints nor exits, so it can be fuzzed (tests/fuzz/fuzz_jpeg.c).
 */
#include "image.h" /* defines: mfr_image, mfr_jpeg_*, mfr_png_*, mfr_similarity, mfr_warp_affine */

#include <math.h>
#include <png.h>
#include <stdlib.h>
#include <turbojpeg.h>

int mfr_image_alloc(mfr_image *im, int w, int h, int c, mfr_error *e)
{
	/* c = 4 is accepted for callers that keep an alpha plane (mask
	 * templates); the codecs themselves produce 1 or 3 */
	if (w <= 0 || h <= 0 || c < 1 || c > 4) {
		*im = (mfr_image){0};
		return mfr_fail(e, "image: bad size %dx%dx%d", w, h, c);
	}
	size_t n = (size_t)w * (size_t)h;
	if (n > SIZE_MAX / (size_t)c) {
		*im = (mfr_image){0};
		return mfr_fail(e, "image: %dx%dx%d is too large", w, h, c);
	}
	im->px = mfr_malloc(n * (size_t)c, e);
	if (!im->px) {
		*im = (mfr_image){0};
		return -1;
	}
	im->w = w, im->h = h, im->c = c;
	return 0;
}

void mfr_image_free(mfr_image *im)
{
	if (!im)
		return;
	free(im->px);
	*im = (mfr_image){0};
}

int mfr_image_sniff(const uint8_t *p, size_t n)
{
	static const uint8_t png_magic[8] = {0x89, 'P', 'N', 'G', 0x0d, 0x0a, 0x1a, 0x0a};
	if (!p)
		return MFR_IMG_UNKNOWN;
	if (n >= 3 && p[0] == 0xff && p[1] == 0xd8 && p[2] == 0xff)
		return MFR_IMG_JPEG;
	if (n >= 8 && memcmp(p, png_magic, 8) == 0)
		return MFR_IMG_PNG;
	return MFR_IMG_UNKNOWN;
}

/* ---- JPEG ---- */

struct mfr_jpeg {
	tjhandle dec, enc;
};

mfr_jpeg *mfr_jpeg_new(mfr_error *e)
{
	mfr_jpeg *j = mfr_malloc(sizeof *j, e);
	if (!j)
		return NULL;
	j->dec = tjInitDecompress();
	j->enc = tjInitCompress();
	if (!j->dec || !j->enc) {
		mfr_fail(e, "jpeg: cannot create a TurboJPEG handle: %s", tjGetErrorStr2(NULL));
		mfr_jpeg_free(j);
		return NULL;
	}
	return j;
}

void mfr_jpeg_free(mfr_jpeg *j)
{
	if (!j)
		return;
	if (j->dec)
		tjDestroy(j->dec);
	if (j->enc)
		tjDestroy(j->enc);
	free(j);
}

/* After an error TurboJPEG 2.1's tjDecompressHeader3 returns without
 * aborting the decompressor, so the next header read resumes the failed
 * one's marker state ("Bogus DQT index"). A fresh handle after any failure
 * costs microseconds and only on bad input. */
static void jpeg_reset(mfr_jpeg *j)
{
	tjDestroy(j->dec);
	j->dec = tjInitDecompress();
}

/* TurboJPEG takes the length as unsigned long; refuse what would not fit
 * (only possible where long is 32 bits) rather than truncate it. */
static int jpeg_len(size_t n, unsigned long *len, mfr_error *e)
{
	if (n == 0)
		return mfr_fail(e, "jpeg: empty input");
	if (n > (unsigned long)-1)
		return mfr_fail(e, "jpeg: %zu bytes is too large", n);
	*len = (unsigned long)n;
	return 0;
}

static int jpeg_header(mfr_jpeg *j, const uint8_t *p, size_t n, int *w, int *h, int *cs,
		       mfr_error *e)
{
	unsigned long len = 0;
	int subsamp;
	*w = *h = 0; /* TurboJPEG leaves them alone for a tables-only stream */
	if (!j || !p)
		return mfr_fail(e, "jpeg: no decoder or no data");
	if (!j->dec) /* a reset that failed for want of memory */
		j->dec = tjInitDecompress();
	if (!j->dec)
		return mfr_fail(e, "jpeg: cannot create a TurboJPEG handle");
	if (jpeg_len(n, &len, e))
		return -1;
	if (tjDecompressHeader3(j->dec, p, len, w, h, &subsamp, cs) != 0) {
		mfr_fail(e, "jpeg: %s", tjGetErrorStr2(j->dec));
		jpeg_reset(j);
		return -1;
	}
	if (*w <= 0 || *h <= 0) /* a tables-only stream has no image */
		return mfr_fail(e, "jpeg: no image in the stream");
	return 0;
}

int mfr_jpeg_info(mfr_jpeg *j, const uint8_t *p, size_t n, int *w, int *h, int *c, mfr_error *e)
{
	int cs;
	if (jpeg_header(j, p, n, w, h, &cs, e))
		return -1;
	*c = cs == TJCS_GRAY ? 1 : 3;
	return 0;
}

/* libjpeg cannot convert CMYK to RGB or grey, so CMYK and YCCK streams are
 * decoded as CMYK and converted here. Such files come from Adobe software,
 * which stores the inks inverted (0 = full ink), so R = C*K/255 on the stored
 * values — what Pillow does for them. In place: 4 bytes in, c bytes out. */
static void cmyk_to(uint8_t *px, size_t npx, int c)
{
	const uint8_t *s = px;
	uint8_t *d = px;
	for (size_t i = 0; i < npx; i++, s += 4) {
		unsigned k = s[3];
		unsigned r = (s[0] * k + 127) / 255, g = (s[1] * k + 127) / 255,
			 b = (s[2] * k + 127) / 255;
		if (c == 3) {
			d[0] = (uint8_t)r, d[1] = (uint8_t)g, d[2] = (uint8_t)b;
			d += 3;
		} else { /* BT.601 luma, as libjpeg's RGB -> grey */
			*d++ = (uint8_t)((19595 * r + 38470 * g + 7471 * b + 32768) >> 16);
		}
	}
}

int mfr_jpeg_decode(mfr_jpeg *j, const uint8_t *p, size_t n, int channels, size_t pixel_cap,
		    mfr_image *out, mfr_error *e)
{
	int w, h, cs;
	*out = (mfr_image){0};
	if (channels != 0 && channels != 1 && channels != 3)
		return mfr_fail(e, "jpeg: cannot decode to %d channels (1 or 3)", channels);
	if (jpeg_header(j, p, n, &w, &h, &cs, e))
		return -1;
	size_t npx = (size_t)w * (size_t)h;
	if (npx > pixel_cap)
		return mfr_fail(e, "jpeg: %dx%d is over the cap of %zu pixels", w, h, pixel_cap);
	int c = channels ? channels : cs == TJCS_GRAY ? 1 : 3;
	int cmyk = cs == TJCS_CMYK || cs == TJCS_YCCK;
	if (mfr_image_alloc(out, w, h, cmyk ? 4 : c, e))
		return -1;
	/* STOPONWARNING: a truncated or corrupt scan is an error, not a grey
	 * half-face. LIMITSCANS: refuses progressive files with hundreds of
	 * scans, which cost minutes of CPU (libjpeg-turbo's advice for
	 * untrusted input). */
	int pf = cmyk ? TJPF_CMYK : c == 1 ? TJPF_GRAY : TJPF_RGB;
	int flags = TJFLAG_STOPONWARNING | TJFLAG_LIMITSCANS;
	if (tjDecompress2(j->dec, p, (unsigned long)n, out->px, w, 0, h, pf, flags) != 0) {
		mfr_fail(e, "jpeg: %s", tjGetErrorStr2(j->dec));
		jpeg_reset(j);
		mfr_image_free(out);
		return -1;
	}
	if (cmyk) {
		cmyk_to(out->px, npx, c);
		out->c = c; /* the tail of the buffer is unused, not worth a realloc */
	}
	return 0;
}

int mfr_jpeg_encode(mfr_jpeg *j, const mfr_image *im, int quality, uint8_t **out, size_t *n,
		    mfr_error *e)
{
	*out = NULL;
	*n = 0;
	if (!j || !im || !im->px || im->w <= 0 || im->h <= 0 || (im->c != 1 && im->c != 3))
		return mfr_fail(e, "jpeg: cannot encode this image (needs c = 1 or 3)");
	if (quality < 1 || quality > 100)
		return mfr_fail(e, "jpeg: quality out of range 1..100: %d", quality);
	int subsamp = im->c == 1 ? TJSAMP_GRAY : quality >= 96 ? TJSAMP_444 : TJSAMP_420;
	/* Compress into our own worst-case buffer (NOREALLOC), so the caller
	 * gets plain malloc memory and there is no tjAlloc'd copy to make. */
	unsigned long cap = tjBufSize(im->w, im->h, subsamp);
	if (cap == (unsigned long)-1)
		return mfr_fail(e, "jpeg: %s", tjGetErrorStr2(NULL));
	unsigned char *buf = mfr_malloc(cap, e);
	if (!buf)
		return -1;
	unsigned long len = cap;
	if (tjCompress2(j->enc, im->px, im->w, 0, im->h, im->c == 1 ? TJPF_GRAY : TJPF_RGB, &buf,
			&len, subsamp, quality, TJFLAG_NOREALLOC) != 0) {
		free(buf);
		return mfr_fail(e, "jpeg: %s", tjGetErrorStr2(j->enc));
	}
	uint8_t *shrunk = realloc(buf, len); /* a failed shrink keeps buf */
	*out = shrunk ? shrunk : buf;
	*n = len;
	return 0;
}

/* ---- PNG ---- */

int mfr_png_decode(const uint8_t *p, size_t n, int channels, size_t pixel_cap, mfr_image *out,
		   mfr_error *e)
{
	png_image img;
	*out = (mfr_image){0};
	if (channels != 0 && channels != 1 && channels != 3)
		return mfr_fail(e, "png: cannot decode to %d channels (1 or 3)", channels);
	if (!p || n == 0)
		return mfr_fail(e, "png: empty input");
	memset(&img, 0, sizeof img);
	img.version = PNG_IMAGE_VERSION;
	if (!png_image_begin_read_from_memory(&img, p, n)) {
		mfr_fail(e, "png: %s", img.message);
		png_image_free(&img);
		return -1;
	}
	size_t npx = (size_t)img.width * (size_t)img.height;
	if (img.width == 0 || img.height == 0 || img.width > INT32_MAX || img.height > INT32_MAX ||
	    npx > pixel_cap) {
		mfr_fail(e, "png: %ux%u is over the cap of %zu pixels", (unsigned)img.width,
			 (unsigned)img.height, pixel_cap);
		png_image_free(&img);
		return -1;
	}
	int c = channels ? channels : (img.format & PNG_FORMAT_FLAG_COLOR) ? 3 : 1;
	/* 8-bit sRGB out: libpng converts 16-bit, palette and tRNS, and
	 * composes alpha over the background given (black) */
	img.format = c == 1 ? PNG_FORMAT_GRAY : PNG_FORMAT_RGB;
	if (mfr_image_alloc(out, (int)img.width, (int)img.height, c, e)) {
		png_image_free(&img);
		return -1;
	}
	png_color black = {0, 0, 0};
	if (!png_image_finish_read(&img, &black, out->px, 0, NULL)) {
		mfr_fail(e, "png: %s", img.message);
		png_image_free(&img);
		mfr_image_free(out);
		return -1;
	}
	/* warnings (bad CRC in an ancillary chunk, say) leave a usable image;
	 * libpng has already rejected what it cannot decode */
	png_image_free(&img);
	return 0;
}

int mfr_png_encode(const mfr_image *im, uint8_t **out, size_t *n, mfr_error *e)
{
	png_image img;
	*out = NULL;
	*n = 0;
	if (!im || !im->px || im->w <= 0 || im->h <= 0 || (im->c != 1 && im->c != 3))
		return mfr_fail(e, "png: cannot encode this image (needs c = 1 or 3)");
	memset(&img, 0, sizeof img);
	img.version = PNG_IMAGE_VERSION;
	img.width = (png_uint_32)im->w;
	img.height = (png_uint_32)im->h;
	img.format = im->c == 1 ? PNG_FORMAT_GRAY : PNG_FORMAT_RGB;
	/* worst case (stored deflate blocks), so one compression pass is enough;
	 * the second try is there in case libpng's bound is ever too small */
	png_alloc_size_t cap = PNG_IMAGE_PNG_SIZE_MAX(img);
	for (int tries = 0; tries < 2; tries++) {
		uint8_t *buf = mfr_malloc(cap, e);
		if (!buf)
			return -1;
		png_alloc_size_t len = cap;
		if (png_image_write_to_memory(&img, buf, &len, 0, im->px, 0, NULL)) {
			uint8_t *shrunk = realloc(buf, len);
			*out = shrunk ? shrunk : buf;
			*n = len;
			png_image_free(&img);
			return 0;
		}
		free(buf);
		if (len <= cap)
			break;
		cap = len;
	}
	mfr_fail(e, "png: %s", img.message[0] ? img.message : "cannot encode");
	png_image_free(&img);
	return -1;
}

int mfr_image_decode(mfr_jpeg *j, const uint8_t *p, size_t n, int channels, size_t pixel_cap,
		     mfr_image *out, mfr_error *e)
{
	switch (mfr_image_sniff(p, n)) {
	case MFR_IMG_JPEG:
		return mfr_jpeg_decode(j, p, n, channels, pixel_cap, out, e);
	case MFR_IMG_PNG:
		return mfr_png_decode(p, n, channels, pixel_cap, out, e);
	default:
		*out = (mfr_image){0};
		return mfr_fail(e, "image: not a JPEG or PNG file");
	}
}

/* ---- alignment ---- */

const float mfr_arcface_template[10] = {
	38.2946f, 51.6963f, 73.5318f, 51.5014f, 56.0252f,
	71.7366f, 41.5493f, 92.3655f, 70.7299f, 92.2041f,
};

/* In 2-D, Umeyama's estimate has a closed form. With centred points and
 * A = sum(dst_i src_i^T), the proper rotation maximising tr(R^T A) is the
 * angle atan2(A21 - A12, A11 + A22), and tr(R^T A) = |(A11 + A22, A21 - A12)|
 * equals Umeyama's sum of singular values with the smallest one's sign
 * flipped when det A < 0. So scale*R = [[a, -b], [b, a]] with
 *   a = (A11 + A22) / sum|src_i|^2,   b = (A21 - A12) / sum|src_i|^2,
 * the same result as skimage's SimilarityTransform.estimate (which
 * insightface's norm_crop uses) without an SVD, and never a reflection. */
int mfr_similarity(const float *src, const float *dst, int n, float M[6], mfr_error *e)
{
	if (!src || !dst || n < 2)
		return mfr_fail(e, "similarity: needs at least 2 points, got %d", n);
	double sx = 0, sy = 0, dx = 0, dy = 0;
	for (int i = 0; i < n; i++) {
		sx += src[2 * i], sy += src[2 * i + 1];
		dx += dst[2 * i], dy += dst[2 * i + 1];
	}
	sx /= n, sy /= n, dx /= n, dy /= n;
	double var = 0, p = 0, q = 0, dvar = 0;
	for (int i = 0; i < n; i++) {
		double xs = src[2 * i] - sx, ys = src[2 * i + 1] - sy;
		double xd = dst[2 * i] - dx, yd = dst[2 * i + 1] - dy;
		var += xs * xs + ys * ys;
		dvar += xd * xd + yd * yd;
		p += xs * xd + ys * yd;
		q += xs * yd - ys * xd;
	}
	if (!isfinite(var) || !isfinite(dvar) || !isfinite(p) || !isfinite(q))
		return mfr_fail(e, "similarity: points are not finite");
	/* all source points equal (no scale to estimate), or the best map
	 * collapses everything to one point (all destination points equal):
	 * judged relative to the spread, since coordinates are pixels */
	if (var <= 1e-12 * (1 + sx * sx + sy * sy) || p * p + q * q <= 1e-18 * var * dvar ||
	    dvar <= 1e-12 * (1 + dx * dx + dy * dy))
		return mfr_fail(e, "similarity: degenerate points (all equal)");
	double a = p / var, b = q / var;
	M[0] = (float)a, M[1] = (float)-b, M[2] = (float)(dx - (a * sx - b * sy));
	M[3] = (float)b, M[4] = (float)a, M[5] = (float)(dy - (b * sx + a * sy));
	return 0;
}

int mfr_affine_invert(const float M[6], float inv[6])
{
	double a = M[0], b = M[1], c = M[3], d = M[4];
	double det = a * d - b * c;
	if (det == 0 || !isfinite(det))
		return -1;
	double i0 = d / det, i1 = -b / det, i3 = -c / det, i4 = a / det;
	double i2 = -(i0 * M[2] + i1 * M[5]), i5 = -(i3 * M[2] + i4 * M[5]);
	double r[6] = {i0, i1, i2, i3, i4, i5};
	for (int k = 0; k < 6; k++) {
		if (!isfinite(r[k]) || fabs(r[k]) > 3e38)
			return -1;
	}
	for (int k = 0; k < 6; k++)
		inv[k] = (float)r[k];
	return 0;
}

/* The warp works in fixed point: source coordinates in 1/1024 pixel (OpenCV
 * uses 1/32), so with fx, fy in 0..1023 the four bilinear weights are
 * integers summing to 2^20 and a pixel is (sum w_i p_i + 2^19) >> 20 —
 * rounded to nearest, at most 255 * 2^20 < 2^31. */
enum { WBITS = 10, WONE = 1 << WBITS };

/* The x range [*lo, *hi) of a row where u(x) = u0 + du*x stays in
 * [m, lim - m]: solved once per row so the inner loop has no bounds test. */
static void span(double u0, double du, double lim, int w, int *lo, int *hi)
{
	const double m = 0.01; /* keeps rounding away from the edges */
	double a = m, b = lim - m;
	double x0, x1;
	/* far-off coordinates lose more than m to rounding, and would not fit
	 * the inner loop's 32.32 fixed point: leave such rows to the checked
	 * path (only absurd transforms get there) */
	if (b < a || !(fabs(u0) + fabs(du) * w < 1e9)) {
		*lo = *hi = 0;
		return;
	}
	if (du == 0) {
		if (u0 >= a && u0 <= b)
			x0 = 0, x1 = w;
		else
			x0 = x1 = 0;
	} else if (du > 0) {
		x0 = ceil((a - u0) / du), x1 = floor((b - u0) / du) + 1;
	} else {
		x0 = ceil((b - u0) / du), x1 = floor((a - u0) / du) + 1;
	}
	x0 = x0 < 0 ? 0 : x0 > w ? w : x0;
	x1 = x1 < x0 ? x0 : x1 > w ? w : x1;
	if (!(x0 <= x1)) /* NaN */
		x0 = x1 = 0;
	*lo = (int)x0, *hi = (int)x1;
}

/* One pixel with every tap checked: taps outside src read as border, as in
 * OpenCV's BORDER_CONSTANT. */
static void warp_px_edge(uint8_t *d, const mfr_image *src, double u, double v, uint8_t border)
{
	int c = src->c;
	if (!(u > -1 && u < src->w && v > -1 && v < src->h)) { /* also NaN */
		for (int k = 0; k < c; k++)
			d[k] = border;
		return;
	}
	/* u, v > -1: add 2 pixels so the floor is a truncation of a positive */
	int64_t U = (int64_t)((u + 2) * WONE + 0.5), V = (int64_t)((v + 2) * WONE + 0.5);
	int x = (int)(U >> WBITS) - 2, y = (int)(V >> WBITS) - 2;
	int fx = (int)(U & (WONE - 1)), fy = (int)(V & (WONE - 1));
	size_t stride = (size_t)src->w * (size_t)c;
	int in_x0 = x >= 0 && x < src->w, in_x1 = x + 1 >= 0 && x + 1 < src->w;
	int in_y0 = y >= 0 && y < src->h, in_y1 = y + 1 >= 0 && y + 1 < src->h;
	const uint8_t *r0 = in_y0 ? src->px + (size_t)y * stride : NULL;
	const uint8_t *r1 = in_y1 ? src->px + (size_t)(y + 1) * stride : NULL;
	int w11 = fx * fy, w01 = (fx << WBITS) - w11, w10 = (fy << WBITS) - w11;
	int w00 = (1 << 2 * WBITS) - w01 - w10 - w11;
	for (int k = 0; k < c; k++) {
		int p00 = r0 && in_x0 ? r0[(size_t)x * c + k] : border;
		int p01 = r0 && in_x1 ? r0[(size_t)(x + 1) * c + k] : border;
		int p10 = r1 && in_x0 ? r1[(size_t)x * c + k] : border;
		int p11 = r1 && in_x1 ? r1[(size_t)(x + 1) * c + k] : border;
		d[k] = (uint8_t)((p00 * w00 + p01 * w01 + p10 * w10 + p11 * w11 +
				  (1 << (2 * WBITS - 1))) >> (2 * WBITS));
	}
}

/* The interior of a row, [lo, hi): all four taps inside src. Coordinates
 * step in 32.32 fixed point (one add per pixel, no conversion), re-anchored
 * from the double map every 256 pixels so the step's rounding (2^-33 px)
 * cannot add up to the 0.01 px margin that span() keeps. Inlined with a
 * constant C at each call, so the channel loop unrolls. */
static inline __attribute__((always_inline)) void
warp_row_inner(uint8_t *d, const uint8_t *s, size_t stride, int C, double u0, double du,
	       double v0, double dv, int lo, int hi)
{
	const double one = 4294967296.0; /* 2^32 */
	const int64_t half = (int64_t)1 << (31 - WBITS); /* rounds to 1/1024 */
	int64_t dA = (int64_t)llround(du * one), dB = (int64_t)llround(dv * one);
	for (int x0 = lo; x0 < hi; x0 += 256) {
		int x1 = hi - x0 > 256 ? x0 + 256 : hi;
		int64_t A = (int64_t)llround((u0 + du * x0) * one) + half;
		int64_t B = (int64_t)llround((v0 + dv * x0) * one) + half;
		uint8_t *q = d + (size_t)x0 * C;
		for (int x = x0; x < x1; x++, A += dA, B += dB, q += C) {
			/* u, v >= 0.01 here: the shifts see non-negative values */
			uint64_t U = (uint64_t)A >> (32 - WBITS), V = (uint64_t)B >> (32 - WBITS);
			int fx = (int)(U & (WONE - 1)), fy = (int)(V & (WONE - 1));
			const uint8_t *p = s + (size_t)(V >> WBITS) * stride + (size_t)(U >> WBITS) * C;
			int w11 = fx * fy, w01 = (fx << WBITS) - w11, w10 = (fy << WBITS) - w11;
			int w00 = (1 << 2 * WBITS) - w01 - w10 - w11;
#define TAP(k) (q[k] = (uint8_t)((p[k] * w00 + p[(k) + C] * w01 + p[(k) + stride] * w10 + \
					p[(k) + stride + C] * w11 + (1 << (2 * WBITS - 1))) >> (2 * WBITS)))
			/* unrolled by hand: gcc -O2 leaves a 3-trip loop rolled */
			if (C <= 4) {
				TAP(0);
				if (C > 1)
					TAP(1);
				if (C > 2)
					TAP(2);
				if (C > 3)
					TAP(3);
			} else {
				for (int k = 0; k < C; k++)
					TAP(k);
			}
#undef TAP
		}
	}
}

void mfr_warp_affine(mfr_image *dst, const mfr_image *src, const float M[6], uint8_t border)
{
	float invf[6];
	size_t dstride = (size_t)dst->w * (size_t)dst->c;
	if (src->c != dst->c || src->w <= 0 || src->h <= 0 || mfr_affine_invert(M, invf) != 0) {
		memset(dst->px, border, dstride * (size_t)dst->h);
		return;
	}
	/* the inverse recomputed in double: the float one loses ~1e-7 relative,
	 * which is 1e-4 px at 1000 px, harmless, but there is no reason to */
	double a = M[0], b = M[1], c = M[3], dd = M[4], det = a * dd - b * c;
	double i0 = dd / det, i1 = -b / det, i3 = -c / det, i4 = a / det;
	double i2 = -(i0 * M[2] + i1 * M[5]), i5 = -(i3 * M[2] + i4 * M[5]);
	size_t sstride = (size_t)src->w * (size_t)src->c;
	for (int y = 0; y < dst->h; y++) {
		double u0 = i1 * y + i2, v0 = i4 * y + i5;
		int lx, hx, ly, hy;
		/* interior: floor(u) in [0, w-2] and floor(v) in [0, h-2] */
		span(u0, i0, src->w - 1, dst->w, &lx, &hx);
		span(v0, i3, src->h - 1, dst->w, &ly, &hy);
		int lo = lx > ly ? lx : ly, hi = hx < hy ? hx : hy;
		if (hi < lo)
			hi = lo;
		uint8_t *d = dst->px + (size_t)y * dstride;
		for (int x = 0; x < lo; x++)
			warp_px_edge(d + (size_t)x * dst->c, src, u0 + i0 * x, v0 + i3 * x, border);
		switch (src->c) {
		case 1: warp_row_inner(d, src->px, sstride, 1, u0, i0, v0, i3, lo, hi); break;
		case 3: warp_row_inner(d, src->px, sstride, 3, u0, i0, v0, i3, lo, hi); break;
		case 4: warp_row_inner(d, src->px, sstride, 4, u0, i0, v0, i3, lo, hi); break;
		default: warp_row_inner(d, src->px, sstride, src->c, u0, i0, v0, i3, lo, hi); break;
		}
		for (int x = hi; x < dst->w; x++)
			warp_px_edge(d + (size_t)x * dst->c, src, u0 + i0 * x, v0 + i3 * x, border);
	}
}

int mfr_align_face(const mfr_image *src, const float lm[10], const float tmpl[10], int out_w,
		   int out_h, mfr_image *dst, float out_lm[10], mfr_error *e)
{
	float M[6];
	*dst = (mfr_image){0};
	if (!src || !src->px || src->w <= 0 || src->h <= 0)
		return mfr_fail(e, "align: empty source image");
	if (mfr_similarity(lm, tmpl, 5, M, e))
		return -1;
	if (mfr_image_alloc(dst, out_w, out_h, src->c, e))
		return -1;
	mfr_warp_affine(dst, src, M, 0);
	if (out_lm) {
		for (int i = 0; i < 5; i++) {
			float x = lm[2 * i], y = lm[2 * i + 1];
			out_lm[2 * i] = M[0] * x + M[1] * y + M[2];
			out_lm[2 * i + 1] = M[3] * x + M[4] * y + M[5];
		}
	}
	return 0;
}
