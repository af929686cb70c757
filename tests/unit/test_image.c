/* test_image.c — unit tests of common/image.c: JPEG and PNG round trips and
 * damaged inputs, the pixel cap, format sniffing, the Umeyama similarity, the
 * affine warp against a double-precision reference, and face alignment — on
 * synthetic images, then on real LFW faces when ../shared/data is present
 * (aligned here and compared with the stored insightface-style crops). */
#include "image.h" /* defines: mfr_image, mfr_jpeg_*, mfr_png_*, mfr_similarity, mfr_warp_affine */

#include <png.h>
#include <turbojpeg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h" /* defines: CHECK, CHECK_EQ_INT, CHECK_NEAR, check_data_dir, check_done */

/* A smooth, face-sized test picture (gradients, ripples and a few soft blobs)
 * that JPEG codes well, so PSNR measures the codec and not the content. */
static void make_image(mfr_image *im, int w, int h, int c, uint64_t seed)
{
	mfr_rng r = {seed};
	double bx[4], by[4], bs[4], bv[4][3];
	for (int i = 0; i < 4; i++) {
		bx[i] = mfr_rng_uniform(&r) * w, by[i] = mfr_rng_uniform(&r) * h;
		bs[i] = 6 + mfr_rng_uniform(&r) * 14;
		for (int k = 0; k < 3; k++)
			bv[i][k] = mfr_rng_uniform(&r) * 120 - 60;
	}
	for (int y = 0; y < h; y++)
		for (int x = 0; x < w; x++)
			for (int k = 0; k < c; k++) {
				double v = 90 + 60.0 * x / w + 30.0 * y / h + 25 * sin(0.11 * x + k) * cos(0.07 * y);
				for (int i = 0; i < 4; i++) {
					double d2 = (x - bx[i]) * (x - bx[i]) + (y - by[i]) * (y - by[i]);
					v += bv[i][k % 3] * exp(-d2 / (2 * bs[i] * bs[i]));
				}
				im->px[((size_t)y * w + x) * c + k] = (uint8_t)(v < 0 ? 0 : v > 255 ? 255 : v + 0.5);
			}
}

static double psnr(const mfr_image *a, const mfr_image *b)
{
	size_t n = (size_t)a->w * a->h * a->c;
	double se = 0;
	for (size_t i = 0; i < n; i++) {
		double d = (double)a->px[i] - b->px[i];
		se += d * d;
	}
	return se == 0 ? 99 : 10 * log10(255.0 * 255.0 / (se / n));
}

static int same_pixels(const mfr_image *a, const mfr_image *b)
{
	return a->w == b->w && a->h == b->h && a->c == b->c &&
	       memcmp(a->px, b->px, (size_t)a->w * a->h * a->c) == 0;
}

static int is_zeroed(const mfr_image *im) { return !im->px && !im->w && !im->h && !im->c; }

/* Offset of the first entropy-coded byte (after the SOS header), or 0. */
static size_t scan_start(const uint8_t *p, size_t n)
{
	size_t i = 2;
	while (i + 4 <= n && p[i] == 0xff) {
		size_t len = (size_t)p[i + 2] << 8 | p[i + 3];
		if (p[i + 1] == 0xda)
			return i + 2 + len;
		i += 2 + len;
	}
	return 0;
}

/* Offset of the SOF0 (baseline) or SOF2 (progressive) marker, or 0. */
static size_t sof_offset(const uint8_t *p, size_t n)
{
	size_t i = 2;
	while (i + 4 <= n && p[i] == 0xff) {
		if (p[i + 1] == 0xc0 || p[i + 1] == 0xc2)
			return i;
		i += 2 + ((size_t)p[i + 2] << 8 | p[i + 3]);
	}
	return 0;
}

static void test_jpeg(mfr_jpeg *j)
{
	mfr_error e = {{0}};
	mfr_image rgb = {0}, grey = {0}, out = {0}, out2 = {0};
	uint8_t *buf = NULL, *gbuf = NULL;
	size_t n = 0, gn = 0;
	CHECK(mfr_image_alloc(&rgb, 112, 112, 3, &e) == 0);
	CHECK(mfr_image_alloc(&grey, 112, 112, 1, &e) == 0);
	make_image(&rgb, 112, 112, 3, 1);
	make_image(&grey, 112, 112, 1, 2);

	/* round trips */
	CHECK(mfr_jpeg_encode(j, &rgb, 95, &buf, &n, &e) == 0);
	CHECK(n > 100 && n < 112 * 112 * 3);
	CHECK_EQ_INT(mfr_image_sniff(buf, n), MFR_IMG_JPEG);
	int w, h, c;
	CHECK(mfr_jpeg_info(j, buf, n, &w, &h, &c, &e) == 0);
	CHECK(w == 112 && h == 112 && c == 3);
	CHECK(mfr_jpeg_decode(j, buf, n, 0, MFR_PIXEL_CAP, &out, &e) == 0);
	CHECK(out.w == 112 && out.h == 112 && out.c == 3);
	double q = psnr(&rgb, &out);
	printf("jpeg rgb q95: %zu bytes, PSNR %.1f dB\n", n, q);
	CHECK(q > 30);
	/* the same stream through the generic entry point gives the same pixels */
	CHECK(mfr_image_decode(j, buf, n, 3, MFR_PIXEL_CAP, &out2, &e) == 0);
	CHECK(same_pixels(&out, &out2));
	mfr_image_free(&out2);

	CHECK(mfr_jpeg_encode(j, &grey, 95, &gbuf, &gn, &e) == 0);
	CHECK(mfr_jpeg_info(j, gbuf, gn, &w, &h, &c, &e) == 0);
	CHECK(w == 112 && h == 112 && c == 1);
	CHECK(mfr_jpeg_decode(j, gbuf, gn, 0, MFR_PIXEL_CAP, &out2, &e) == 0);
	CHECK(out2.c == 1);
	q = psnr(&grey, &out2);
	printf("jpeg grey q95: %zu bytes, PSNR %.1f dB\n", gn, q);
	CHECK(q > 30);

	/* channel conversion: grey stream to RGB repeats the grey value */
	mfr_image g3 = {0};
	CHECK(mfr_jpeg_decode(j, gbuf, gn, 3, MFR_PIXEL_CAP, &g3, &e) == 0);
	int ok = g3.c == 3;
	for (int i = 0; ok && i < 112 * 112; i++)
		ok = g3.px[3 * i] == out2.px[i] && g3.px[3 * i + 1] == out2.px[i] &&
		     g3.px[3 * i + 2] == out2.px[i];
	CHECK(ok);
	mfr_image_free(&g3);
	/* colour stream to grey is the BT.601 luma of the colour decode */
	CHECK(mfr_jpeg_decode(j, buf, n, 1, MFR_PIXEL_CAP, &g3, &e) == 0);
	int worst = 0;
	for (int i = 0; g3.c == 1 && i < 112 * 112; i++) {
		double y = 0.299 * out.px[3 * i] + 0.587 * out.px[3 * i + 1] + 0.114 * out.px[3 * i + 2];
		int d = abs((int)g3.px[i] - (int)lrint(y));
		worst = d > worst ? d : worst;
	}
	/* libjpeg takes Y straight from the stream; luma(RGB) gives Y back up to
	 * the RGB rounding and clipping (measured 0 here, 4 allows for clipping
	 * on saturated content) */
	printf("jpeg colour->grey: worst difference from luma(RGB) %d\n", worst);
	CHECK(g3.c == 1 && worst <= 4);
	mfr_image_free(&g3);
	CHECK(mfr_jpeg_decode(j, buf, n, 2, MFR_PIXEL_CAP, &g3, &e) == -1 && is_zeroed(&g3));
	mfr_image_free(&out2);

	/* quality >= 96 switches colour to 4:4:4 (luma sampling factors 1x1 in
	 * the SOF), below it is 4:2:0 (2x2) */
	uint8_t *b100 = NULL;
	size_t n100 = 0;
	CHECK(mfr_jpeg_encode(j, &rgb, 96, &b100, &n100, &e) == 0);
	size_t sof = sof_offset(b100, n100), sof95 = sof_offset(buf, n);
	CHECK(sof && b100[sof + 9] == 3 && b100[sof + 11] == 0x11);
	CHECK(sof95 && buf[sof95 + 9] == 3 && buf[sof95 + 11] == 0x22);
	CHECK(mfr_jpeg_decode(j, b100, n100, 3, MFR_PIXEL_CAP, &out2, &e) == 0);
	CHECK(psnr(&rgb, &out2) > psnr(&rgb, &out));
	mfr_image_free(&out2);
	free(b100);
	CHECK(mfr_jpeg_encode(j, &rgb, 0, &b100, &n100, &e) == -1 && !b100);
	CHECK(mfr_jpeg_encode(j, &rgb, 101, &b100, &n100, &e) == -1 && !b100);
	CHECK(strstr(e.msg, "quality") != NULL);

	/* the pixel cap is inclusive */
	CHECK(mfr_jpeg_decode(j, buf, n, 3, 112 * 112, &out2, &e) == 0);
	mfr_image_free(&out2);
	CHECK(mfr_jpeg_decode(j, buf, n, 3, 112 * 112 - 1, &out2, &e) == -1 && is_zeroed(&out2));
	CHECK(strncmp(e.msg, "jpeg: ", 6) == 0 && strstr(e.msg, "cap") != NULL);

	/* truncation anywhere before the end of the scan is an error, never a
	 * crash (ASan checks the reads); exact-size copies so an overread shows */
	size_t ss = scan_start(buf, n);
	CHECK(ss > 0 && ss < n - 2);
	int trunc_bad = 0;
	for (size_t cut = 0; cut < n - 2; cut += cut < ss ? 1 : 7) {
		uint8_t *t = malloc(cut ? cut : 1);
		memcpy(t, buf, cut);
		mfr_error_clear(&e);
		if (mfr_jpeg_decode(j, t, cut, 0, MFR_PIXEL_CAP, &out2, &e) != -1 || !is_zeroed(&out2) ||
		    strncmp(e.msg, "jpeg: ", 6) != 0)
			trunc_bad++;
		mfr_image_free(&out2);
		free(t);
	}
	CHECK_EQ_INT(trunc_bad, 0);
	{
		size_t cut = ss + (n - 2 - ss) / 2;
		mfr_error_clear(&e);
		CHECK(mfr_jpeg_decode(j, buf, cut, 0, MFR_PIXEL_CAP, &out2, &e) == -1);
		printf("jpeg truncated at %zu of %zu: %s\n", cut, n, e.msg);
	}

	/* a damaged scan: a marker in the middle of the entropy-coded data (the
	 * commonest byte damage a decoder can see) is a warning, hence an error */
	uint8_t *d = malloc(n);
	memcpy(d, buf, n);
	size_t mid = ss + (n - 2 - ss) / 2;
	d[mid] = 0xff, d[mid + 1] = 0x12;
	mfr_error_clear(&e);
	CHECK(mfr_jpeg_decode(j, d, n, 0, MFR_PIXEL_CAP, &out2, &e) == -1 && is_zeroed(&out2));
	printf("jpeg with a marker in its scan: %s\n", e.msg);
	/* every scan byte flipped in turn: never a crash. Only some can be
	 * detected (270 of 1931 here): a flip that still decodes to valid
	 * Huffman codes gives wrong pixels and no warning */
	int detected = 0, tried = 0;
	for (size_t i = ss; i < n - 2; i++, tried++) {
		memcpy(d, buf, n);
		d[i] ^= 0xff;
		if (mfr_jpeg_decode(j, d, n, 0, MFR_PIXEL_CAP, &out2, &e) == -1)
			detected++, CHECK(is_zeroed(&out2));
		mfr_image_free(&out2);
	}
	printf("jpeg scan byte flips: %d of %d detected\n", detected, tried);
	CHECK(detected > 0);

	/* a forged SOF claiming 60000x60000 (3.6 Gpx, 10.8 GB as RGB): refused
	 * by the cap from the header, before any pixel buffer exists */
	memcpy(d, buf, n);
	sof = sof_offset(d, n);
	CHECK(sof > 0);
	d[sof + 5] = 60000 >> 8, d[sof + 6] = 60000 & 0xff;
	d[sof + 7] = 60000 >> 8, d[sof + 8] = 60000 & 0xff;
	CHECK(mfr_jpeg_info(j, d, n, &w, &h, &c, &e) == 0);
	CHECK(w == 60000 && h == 60000);
	mfr_error_clear(&e);
	CHECK(mfr_jpeg_decode(j, d, n, 0, MFR_PIXEL_CAP, &out2, &e) == -1 && is_zeroed(&out2));
	printf("jpeg forged 60000x60000: %s\n", e.msg);
	CHECK(strstr(e.msg, "60000x60000") && strstr(e.msg, "cap"));
	free(d);

	/* nothing at all, and a bare SOI */
	static const uint8_t soi[] = {0xff, 0xd8, 0xff};
	CHECK(mfr_jpeg_decode(j, soi, 0, 0, MFR_PIXEL_CAP, &out2, &e) == -1);
	CHECK(mfr_jpeg_decode(j, soi, sizeof soi, 0, MFR_PIXEL_CAP, &out2, &e) == -1);
	CHECK(mfr_jpeg_info(j, soi, sizeof soi, &w, &h, &c, &e) == -1);

	free(buf);
	free(gbuf);
	mfr_image_free(&out);
	mfr_image_free(&rgb);
	mfr_image_free(&grey);
}

/* CMYK (TurboJPEG writes it as YCCK, as Adobe software does): decoded with
 * the inks taken as stored inverted, R = C*K/255 */
static void test_cmyk(mfr_jpeg *j)
{
	uint8_t cmyk[16 * 16 * 4];
	for (int i = 0; i < 16 * 16; i++) {
		cmyk[4 * i] = 200, cmyk[4 * i + 1] = 100, cmyk[4 * i + 2] = 50;
		cmyk[4 * i + 3] = i < 128 ? 255 : 128; /* top half no ink, bottom half K */
	}
	tjhandle t = tjInitCompress();
	unsigned char *buf = NULL;
	unsigned long n = 0;
	CHECK(t && tjCompress2(t, cmyk, 16, 0, 16, TJPF_CMYK, &buf, &n, TJSAMP_444, 100, 0) == 0);
	mfr_error e = {{0}};
	mfr_image out = {0};
	int w, h, c;
	CHECK(mfr_jpeg_info(j, buf, n, &w, &h, &c, &e) == 0 && c == 3);
	CHECK(mfr_jpeg_decode(j, buf, n, 0, MFR_PIXEL_CAP, &out, &e) == 0);
	CHECK(out.c == 3 && out.w == 16);
	if (out.c == 3) {
		const uint8_t *top = out.px + 3 * 16 * 2, *bot = out.px + 3 * 16 * 12;
		CHECK(abs(top[0] - 200) <= 2 && abs(top[1] - 100) <= 2 && abs(top[2] - 50) <= 2);
		CHECK(abs(bot[0] - 100) <= 2 && abs(bot[1] - 50) <= 2 && abs(bot[2] - 25) <= 2);
	}
	mfr_image_free(&out);
	CHECK(mfr_jpeg_decode(j, buf, n, 1, MFR_PIXEL_CAP, &out, &e) == 0);
	CHECK(out.c == 1 && abs(out.px[16 * 2] - 124) <= 2); /* .299*200 + .587*100 + .114*50 */
	mfr_image_free(&out);
	tjFree(buf);
	tjDestroy(t);
}

/* CRC-32 as PNG chunks use it (zlib's, bitwise: the test has no -lz). */
static uint32_t crc32_png(const uint8_t *p, size_t n)
{
	uint32_t c = 0xffffffffu;
	for (size_t i = 0; i < n; i++) {
		c ^= p[i];
		for (int k = 0; k < 8; k++)
			c = c & 1 ? 0xedb88320u ^ (c >> 1) : c >> 1;
	}
	return c ^ 0xffffffffu;
}

/* Writes a PNG of the given libpng format from raw samples with libpng's own
 * simplified writer (the library under test only writes 8-bit grey/RGB). */
static uint8_t *png_with(int w, int h, uint32_t format, const void *px, size_t *n)
{
	png_image img;
	memset(&img, 0, sizeof img);
	img.version = PNG_IMAGE_VERSION;
	img.width = w, img.height = h, img.format = format;
	png_alloc_size_t len = 0;
	if (!png_image_write_to_memory(&img, NULL, &len, 0, px, 0, NULL))
		return NULL;
	uint8_t *buf = malloc(len);
	if (!png_image_write_to_memory(&img, buf, &len, 0, px, 0, NULL)) {
		free(buf);
		return NULL;
	}
	*n = len;
	return buf;
}

/* linear [0,1] -> 8-bit code as libpng's simplified API encodes "sRGB": a
 * pure 1/2.2 power (PNG_GAMMA_sRGB), which differs from the true sRGB curve
 * by up to 2 codes (0.05 -> 65, not 63) */
static int gamma22(double l) { return (int)lrint(255 * pow(l, 1 / 2.2)); }

static void test_png(mfr_jpeg *j)
{
	mfr_error e = {{0}};
	mfr_image rgb = {0}, grey = {0}, out = {0};
	uint8_t *buf = NULL;
	size_t n = 0;
	CHECK(mfr_image_alloc(&rgb, 37, 23, 3, &e) == 0);
	CHECK(mfr_image_alloc(&grey, 37, 23, 1, &e) == 0);
	make_image(&rgb, 37, 23, 3, 3);
	make_image(&grey, 37, 23, 1, 4);

	CHECK(mfr_png_encode(&rgb, &buf, &n, &e) == 0);
	CHECK_EQ_INT(mfr_image_sniff(buf, n), MFR_IMG_PNG);
	CHECK(mfr_png_decode(buf, n, 0, MFR_PIXEL_CAP, &out, &e) == 0);
	CHECK(same_pixels(&rgb, &out));
	mfr_image_free(&out);
	CHECK(mfr_image_decode(j, buf, n, 0, MFR_PIXEL_CAP, &out, &e) == 0);
	CHECK(same_pixels(&rgb, &out));
	mfr_image_free(&out);
	/* the cap, inclusive */
	CHECK(mfr_png_decode(buf, n, 0, 37 * 23, &out, &e) == 0);
	mfr_image_free(&out);
	CHECK(mfr_png_decode(buf, n, 0, 37 * 23 - 1, &out, &e) == -1 && is_zeroed(&out));
	CHECK(strncmp(e.msg, "png: ", 5) == 0 && strstr(e.msg, "cap"));
	/* truncated: an error at every length short of the 12-byte IEND chunk
	 * (without it the pixels are all there, and libpng does not look) */
	int trunc_bad = 0;
	for (size_t cut = 0; cut < n - 12; cut++) {
		uint8_t *t = malloc(cut ? cut : 1);
		memcpy(t, buf, cut);
		if (mfr_png_decode(t, cut, 0, MFR_PIXEL_CAP, &out, &e) != -1 || !is_zeroed(&out))
			trunc_bad++;
		mfr_image_free(&out);
		free(t);
	}
	CHECK_EQ_INT(trunc_bad, 0);
	/* a forged IHDR: 60000x60000 refused by the cap (the CRC is fixed up so
	 * libpng accepts the header) */
	{
		uint8_t *f = malloc(n);
		memcpy(f, buf, n);
		mfr_put32(f + 16, 0), mfr_put32(f + 20, 0); /* big-endian 60000 below */
		f[18] = 60000 >> 8, f[19] = 60000 & 0xff, f[22] = 60000 >> 8, f[23] = 60000 & 0xff;
		uint32_t crc = crc32_png(f + 12, 17);
		f[29] = crc >> 24, f[30] = crc >> 16, f[31] = crc >> 8, f[32] = (uint8_t)crc;
		mfr_error_clear(&e);
		CHECK(mfr_png_decode(f, n, 0, MFR_PIXEL_CAP, &out, &e) == -1 && is_zeroed(&out));
		printf("png forged 60000x60000: %s\n", e.msg);
		CHECK(strstr(e.msg, "cap") != NULL);
		free(f);
	}
	free(buf);

	/* grey, and grey <-> RGB conversion */
	CHECK(mfr_png_encode(&grey, &buf, &n, &e) == 0);
	CHECK(mfr_png_decode(buf, n, 0, MFR_PIXEL_CAP, &out, &e) == 0);
	CHECK(same_pixels(&grey, &out));
	mfr_image_free(&out);
	CHECK(mfr_png_decode(buf, n, 3, MFR_PIXEL_CAP, &out, &e) == 0);
	int ok = out.c == 3;
	for (int i = 0; ok && i < 37 * 23; i++)
		ok = out.px[3 * i] == grey.px[i] && out.px[3 * i + 2] == grey.px[i];
	CHECK(ok);
	mfr_image_free(&out);
	free(buf);

	/* RGBA: opaque pixels unchanged, transparent ones black, half alpha in
	 * between (libpng composes in linear light, so not exactly half) */
	uint8_t rgba[4 * 3 * 2] = {
		200, 100, 50, 255,  200, 100, 50, 0,  200, 100, 50, 128,
		10, 20, 30, 255,    255, 255, 255, 0, 255, 255, 255, 128,
	};
	buf = png_with(3, 2, PNG_FORMAT_RGBA, rgba, &n);
	CHECK(buf != NULL);
	CHECK(mfr_png_decode(buf, n, 0, MFR_PIXEL_CAP, &out, &e) == 0);
	CHECK(out.w == 3 && out.h == 2 && out.c == 3);
	if (out.c == 3) {
		CHECK(out.px[0] == 200 && out.px[1] == 100 && out.px[2] == 50);
		CHECK(out.px[3] == 0 && out.px[4] == 0 && out.px[5] == 0);
		CHECK(out.px[6] > 60 && out.px[6] < 180 && out.px[7] > 20 && out.px[7] < 100);
		CHECK(out.px[9] == 10 && out.px[10] == 20 && out.px[11] == 30);
		CHECK(out.px[12] == 0 && out.px[15] > 100 && out.px[15] < 220);
		printf("png rgba 200,100,50 @ alpha 128 over black: %d,%d,%d\n", out.px[6], out.px[7],
		       out.px[8]);
	}
	mfr_image_free(&out);
	free(buf);

	/* 16-bit linear RGB (libpng's writer tags it gAMA 1.0): decoded to
	 * 8-bit gamma-encoded codes */
	uint16_t lin[3 * 4] = {0, 0, 0, 65535, 65535, 65535, 14025, 14025, 14025, 65535, 3277, 0};
	buf = png_with(4, 1, PNG_FORMAT_LINEAR_RGB, lin, &n);
	CHECK(buf != NULL);
	CHECK(mfr_png_decode(buf, n, 0, MFR_PIXEL_CAP, &out, &e) == 0);
	CHECK(out.c == 3 && out.w == 4);
	if (out.c == 3 && out.w == 4) {
		int worst = 0;
		for (int i = 0; i < 12; i++) {
			int want = gamma22(lin[i] / 65535.0), d = abs(want - out.px[i]);
			worst = d > worst ? d : worst;
		}
		printf("png 16-bit linear -> 8-bit: worst difference %d (mid grey -> %d)\n", worst,
		       out.px[6]);
		CHECK(worst <= 1);
	}
	mfr_image_free(&out);
	/* and to grey */
	CHECK(mfr_png_decode(buf, n, 1, MFR_PIXEL_CAP, &out, &e) == 0);
	CHECK(out.c == 1 && out.px[0] == 0 && out.px[1] == 255 && abs(out.px[2] - gamma22(14025 / 65535.0)) <= 1);
	mfr_image_free(&out);
	free(buf);

	CHECK(mfr_png_encode(&(mfr_image){0}, &buf, &n, &e) == -1 && !buf);
	mfr_image_free(&rgb);
	mfr_image_free(&grey);
}

static void test_sniff(mfr_jpeg *j)
{
	static const uint8_t jpg[] = {0xff, 0xd8, 0xff, 0xe0};
	static const uint8_t png[] = {0x89, 'P', 'N', 'G', 0x0d, 0x0a, 0x1a, 0x0a, 0};
	static const uint8_t gif[] = "GIF89a";
	CHECK_EQ_INT(mfr_image_sniff(jpg, 4), MFR_IMG_JPEG);
	CHECK_EQ_INT(mfr_image_sniff(jpg, 3), MFR_IMG_JPEG);
	CHECK_EQ_INT(mfr_image_sniff(jpg, 2), MFR_IMG_UNKNOWN);
	CHECK_EQ_INT(mfr_image_sniff(png, 9), MFR_IMG_PNG);
	CHECK_EQ_INT(mfr_image_sniff(png, 8), MFR_IMG_PNG);
	CHECK_EQ_INT(mfr_image_sniff(png, 7), MFR_IMG_UNKNOWN);
	CHECK_EQ_INT(mfr_image_sniff(gif, 6), MFR_IMG_UNKNOWN);
	CHECK_EQ_INT(mfr_image_sniff(NULL, 0), MFR_IMG_UNKNOWN);
	mfr_error e = {{0}};
	mfr_image out = {0};
	CHECK(mfr_image_decode(j, gif, 6, 0, MFR_PIXEL_CAP, &out, &e) == -1 && is_zeroed(&out));
	CHECK(e.msg[0] != 0);
	CHECK(mfr_image_alloc(&out, 0, 5, 3, &e) == -1 && is_zeroed(&out));
	CHECK(mfr_image_alloc(&out, 5, 5, 5, &e) == -1 && is_zeroed(&out));
	mfr_image_free(&out);
	mfr_image_free(NULL);
}

/* Independent least-squares reference: the similarity x' = a x - b y + tx,
 * y' = b x + a y + ty is linear in (a, b, tx, ty); solve the 4x4 normal
 * equations by Gaussian elimination. */
static void ls_similarity(const float *s, const float *d, int n, double out[4])
{
	double A[4][5] = {{0}};
	for (int i = 0; i < n; i++) {
		double x = s[2 * i], y = s[2 * i + 1];
		double r1[5] = {x, -y, 1, 0, d[2 * i]}, r2[5] = {y, x, 0, 1, d[2 * i + 1]};
		for (int p = 0; p < 4; p++)
			for (int q = 0; q < 5; q++)
				A[p][q] += r1[p] * r1[q] + r2[p] * r2[q];
	}
	for (int c = 0; c < 4; c++) {
		int piv = c;
		for (int r = c + 1; r < 4; r++)
			if (fabs(A[r][c]) > fabs(A[piv][c]))
				piv = r;
		for (int q = 0; q < 5; q++) {
			double t = A[c][q];
			A[c][q] = A[piv][q], A[piv][q] = t;
		}
		for (int r = 0; r < 4; r++) {
			if (r == c)
				continue;
			double f = A[r][c] / A[c][c];
			for (int q = 0; q < 5; q++)
				A[r][q] -= f * A[c][q];
		}
	}
	for (int c = 0; c < 4; c++)
		out[c] = A[c][4] / A[c][c];
}

static void apply(const float M[6], const float *s, float *d, int n)
{
	for (int i = 0; i < n; i++) {
		float x = s[2 * i], y = s[2 * i + 1];
		d[2 * i] = M[0] * x + M[1] * y + M[2];
		d[2 * i + 1] = M[3] * x + M[4] * y + M[5];
	}
}

static void test_similarity(void)
{
	mfr_error e = {{0}};
	const float *t = mfr_arcface_template;
	CHECK_NEAR(t[0], 38.2946, 1e-5); /* as float */
	CHECK_NEAR(t[9], 92.2041, 1e-5);

	/* exact recovery: rotate 0.3 rad, scale 1.7, translate (12, -5) */
	double th = 0.3, sc = 1.7;
	float T[6] = {(float)(sc * cos(th)), (float)(-sc * sin(th)), 12,
		      (float)(sc * sin(th)), (float)(sc * cos(th)), -5};
	float dst[10], M[6];
	apply(T, t, dst, 5);
	CHECK(mfr_similarity(t, dst, 5, M, &e) == 0);
	double worst = 0;
	for (int k = 0; k < 6; k++)
		worst = fmax(worst, fabs(M[k] - T[k]));
	CHECK_NEAR(worst, 0, 1e-4); /* float inputs: ~1e-5 of 100 px coordinates */

	/* with noise: equals the normal-equation least squares, and beats
	 * nearby maps */
	mfr_rng r = {42};
	float noisy[10];
	for (int i = 0; i < 10; i++)
		noisy[i] = dst[i] + (float)(2 * mfr_rng_normal(&r));
	CHECK(mfr_similarity(t, noisy, 5, M, &e) == 0);
	double ref[4];
	ls_similarity(t, noisy, 5, ref);
	CHECK_NEAR(M[0], ref[0], 1e-5);
	CHECK_NEAR(M[3], ref[1], 1e-5);
	CHECK_NEAR(M[2], ref[2], 1e-3);
	CHECK_NEAR(M[5], ref[3], 1e-3);
	CHECK(M[0] == M[4] && M[1] == -M[3]);

	/* mirrored points: the best map is still a rotation (det > 0), and it is
	 * the least-squares proper similarity */
	float mir[10];
	for (int i = 0; i < 5; i++)
		mir[2 * i] = 112 - t[2 * i], mir[2 * i + 1] = t[2 * i + 1];
	CHECK(mfr_similarity(t, mir, 5, M, &e) == 0);
	CHECK(M[0] * M[4] - M[1] * M[3] > 0);
	CHECK(M[0] == M[4] && M[1] == -M[3]);
	ls_similarity(t, mir, 5, ref);
	CHECK_NEAR(M[0], ref[0], 1e-5);
	CHECK_NEAR(M[3], ref[1], 1e-5);
	/* three points where the reflection fits exactly and a rotation badly */
	float s3[6] = {0, 0, 10, 0, 0, 20}, d3[6] = {0, 0, -10, 0, 0, 20};
	CHECK(mfr_similarity(s3, d3, 3, M, &e) == 0);
	CHECK(M[0] * M[4] - M[1] * M[3] >= 0);
	ls_similarity(s3, d3, 3, ref);
	CHECK_NEAR(M[0], ref[0], 1e-6);
	CHECK_NEAR(M[3], ref[1], 1e-6);

	/* degenerate */
	float same[10] = {5, 5, 5, 5, 5, 5, 5, 5, 5, 5};
	mfr_error_clear(&e);
	CHECK(mfr_similarity(same, t, 5, M, &e) == -1 && e.msg[0]);
	CHECK(mfr_similarity(t, same, 5, M, &e) == -1);
	float bad[10];
	memcpy(bad, t, sizeof bad);
	bad[3] = NAN;
	CHECK(mfr_similarity(bad, t, 5, M, &e) == -1);
	CHECK(mfr_similarity(t, t, 1, M, &e) == -1);
}

static void test_invert(void)
{
	mfr_rng r = {7};
	int bad = 0;
	for (int it = 0; it < 100; it++) {
		float M[6], I[6];
		for (int k = 0; k < 6; k++)
			M[k] = (float)(mfr_rng_uniform(&r) * 4 - 2);
		if (fabs(M[0] * M[4] - M[1] * M[3]) < 0.1)
			continue;
		if (mfr_affine_invert(M, I) != 0) {
			bad++;
			continue;
		}
		/* I after M is the identity */
		double c[6] = {
			I[0] * M[0] + I[1] * M[3], I[0] * M[1] + I[1] * M[4], I[0] * M[2] + I[1] * M[5] + I[2],
			I[3] * M[0] + I[4] * M[3], I[3] * M[1] + I[4] * M[4], I[3] * M[2] + I[4] * M[5] + I[5],
		};
		double id[6] = {1, 0, 0, 0, 1, 0};
		for (int k = 0; k < 6; k++)
			bad += fabs(c[k] - id[k]) > 1e-4;
	}
	CHECK_EQ_INT(bad, 0);
	float S[6] = {1, 2, 3, 2, 4, 5}, I[6];
	CHECK(mfr_affine_invert(S, I) == -1);
	float Z[6] = {0};
	CHECK(mfr_affine_invert(Z, I) == -1);
}

/* Double-precision bilinear reference with OpenCV's conventions. */
static int ref_px(const mfr_image *s, const float M[6], int x, int y, int k, uint8_t border)
{
	float I[6];
	mfr_affine_invert(M, I);
	double u = (double)I[0] * x + (double)I[1] * y + I[2], v = (double)I[3] * x + (double)I[4] * y + I[5];
	double fu = floor(u), fv = floor(v), a = u - fu, b = v - fv;
	int x0 = (int)fu, y0 = (int)fv;
	double p[2][2];
	for (int dy = 0; dy < 2; dy++)
		for (int dx = 0; dx < 2; dx++) {
			int xx = x0 + dx, yy = y0 + dy;
			p[dy][dx] = xx >= 0 && xx < s->w && yy >= 0 && yy < s->h
					    ? s->px[((size_t)yy * s->w + xx) * s->c + k]
					    : border;
		}
	double val = (1 - b) * ((1 - a) * p[0][0] + a * p[0][1]) + b * ((1 - a) * p[1][0] + a * p[1][1]);
	return (int)lrint(val);
}

/* Largest difference between mfr_warp_affine and ref_px over all of dst. */
static int warp_vs_ref(mfr_image *dst, const mfr_image *src, const float M[6], uint8_t border)
{
	mfr_warp_affine(dst, src, M, border);
	int worst = 0;
	for (int y = 0; y < dst->h; y++)
		for (int x = 0; x < dst->w; x++)
			for (int k = 0; k < dst->c; k++) {
				int d = abs(dst->px[((size_t)y * dst->w + x) * dst->c + k] -
					    ref_px(src, M, x, y, k, border));
				worst = d > worst ? d : worst;
			}
	return worst;
}

static void test_warp(void)
{
	mfr_error e = {{0}};
	/* rows longer than the inner loop's 256-pixel block, and 4 channels */
	{
		mfr_image src = {0}, dst = {0};
		CHECK(mfr_image_alloc(&src, 700, 90, 4, &e) == 0);
		CHECK(mfr_image_alloc(&dst, 650, 60, 4, &e) == 0);
		make_image(&src, 700, 90, 4, 5);
		float M[6] = {0.93f * cosf(0.05f), -0.93f * sinf(0.05f), -20.5f,
			      0.93f * sinf(0.05f), 0.93f * cosf(0.05f), -8.25f};
		CHECK(warp_vs_ref(&dst, &src, M, 11) <= 1);
		float flip[6] = {-1, 0, 640.3f, 0, -1.02f, 70}; /* mirror: negative steps */
		CHECK(warp_vs_ref(&dst, &src, flip, 11) <= 1);
		mfr_image_free(&src);
		mfr_image_free(&dst);
	}
	for (int c = 1; c <= 3; c += 2) {
		mfr_image src = {0}, dst = {0};
		CHECK(mfr_image_alloc(&src, 61, 47, c, &e) == 0);
		make_image(&src, 61, 47, c, 10 + c);
		/* identity: the same pixels */
		CHECK(mfr_image_alloc(&dst, 61, 47, c, &e) == 0);
		float id[6] = {1, 0, 0, 0, 1, 0};
		mfr_warp_affine(&dst, &src, id, 77);
		CHECK(same_pixels(&src, &dst));
		/* integer translation (+5, -3) into a larger frame: shifted pixels,
		 * border value everywhere else */
		mfr_image_free(&dst);
		CHECK(mfr_image_alloc(&dst, 70, 50, c, &e) == 0);
		float tr[6] = {1, 0, 5, 0, 1, -3};
		mfr_warp_affine(&dst, &src, tr, 77);
		int bad = 0, nborder = 0;
		for (int y = 0; y < 50; y++)
			for (int x = 0; x < 70; x++)
				for (int k = 0; k < c; k++) {
					int sx = x - 5, sy = y + 3;
					int want = sx >= 0 && sx < 61 && sy >= 0 && sy < 47
							   ? src.px[((size_t)sy * 61 + sx) * c + k]
							   : 77;
					nborder += want == 77 && !(sx >= 0 && sx < 61 && sy >= 0 && sy < 47);
					bad += dst.px[((size_t)y * 70 + x) * c + k] != want;
				}
		CHECK_EQ_INT(bad, 0);
		CHECK(nborder > 0);
		/* rotation + scale + shift against the double reference: within one
		 * level (coordinates are rounded to 1/1024 px) */
		float rs[6] = {0.9f * cosf(0.4f), -0.9f * sinf(0.4f), 14.3f,
			       0.9f * sinf(0.4f), 0.9f * cosf(0.4f), -6.7f};
		mfr_warp_affine(&dst, &src, rs, 30);
		int worst = 0, differ = 0;
		for (int y = 0; y < 50; y++)
			for (int x = 0; x < 70; x++)
				for (int k = 0; k < c; k++) {
					int d = abs(dst.px[((size_t)y * 70 + x) * c + k] - ref_px(&src, rs, x, y, k, 30));
					worst = d > worst ? d : worst;
					differ += d != 0;
				}
		printf("warp c=%d vs double reference: worst %d, %d of %d values differ\n", c, worst,
		       differ, 70 * 50 * c);
		CHECK(worst <= 1);
		/* an upscale (edge taps everywhere near the border) and a singular map */
		float up[6] = {3.1f, 0, -20, 0, 3.1f, -10};
		mfr_warp_affine(&dst, &src, up, 0);
		worst = 0;
		for (int y = 0; y < 50; y++)
			for (int x = 0; x < 70; x++)
				for (int k = 0; k < c; k++) {
					int d = abs(dst.px[((size_t)y * 70 + x) * c + k] - ref_px(&src, up, x, y, k, 0));
					worst = d > worst ? d : worst;
				}
		CHECK(worst <= 1);
		float sing[6] = {0};
		mfr_warp_affine(&dst, &src, sing, 9);
		CHECK(dst.px[0] == 9 && dst.px[70 * 50 * c - 1] == 9);
		/* half-pixel shift: the rounded mean of neighbours */
		float half[6] = {1, 0, 0.5f, 0, 1, 0};
		mfr_warp_affine(&dst, &src, half, 0);
		int x = 10, y = 10;
		int want = (src.px[((size_t)y * 61 + x - 1) * c] + src.px[((size_t)y * 61 + x) * c] + 1) / 2;
		CHECK_EQ_INT(dst.px[((size_t)y * 70 + x) * c], want);
		mfr_image_free(&dst);
		mfr_image_free(&src);
	}
}

/* Renders bright soft dots at 5 points on a dark picture. */
static void draw_dots(mfr_image *im, const float *pts)
{
	for (int y = 0; y < im->h; y++)
		for (int x = 0; x < im->w; x++) {
			double v = 20;
			for (int i = 0; i < 5; i++) {
				double dx = x - pts[2 * i], dy = y - pts[2 * i + 1];
				v += 235 * exp(-(dx * dx + dy * dy) / (2 * 2.5 * 2.5));
			}
			for (int k = 0; k < im->c; k++)
				im->px[((size_t)y * im->w + x) * im->c + k] = (uint8_t)(v > 255 ? 255 : v);
		}
}

static void test_align(void)
{
	mfr_error e = {{0}};
	/* the template placed in a 300x280 picture, rotated 20 degrees and scaled
	 * by 2.2: aligning must bring the dots back onto the template */
	double th = 20 * M_PI / 180, sc = 2.2;
	float T[6] = {(float)(sc * cos(th)), (float)(-sc * sin(th)), 90,
		      (float)(sc * sin(th)), (float)(sc * cos(th)), 10};
	float lm[10], out_lm[10];
	apply(T, mfr_arcface_template, lm, 5);
	mfr_image src = {0}, dst = {0};
	CHECK(mfr_image_alloc(&src, 300, 280, 3, &e) == 0);
	draw_dots(&src, lm);
	CHECK(mfr_align_face(&src, lm, mfr_arcface_template, 112, 112, &dst, out_lm, &e) == 0);
	CHECK(dst.w == 112 && dst.h == 112 && dst.c == 3);
	double worst = 0;
	for (int i = 0; i < 10; i++)
		worst = fmax(worst, fabs(out_lm[i] - mfr_arcface_template[i]));
	CHECK_NEAR(worst, 0, 1e-3);
	/* the brightest pixel near each template point is within a pixel of it,
	 * and the corners are background */
	int far = 0;
	for (int i = 0; i < 5; i++) {
		int bx = 0, by = 0, best = -1;
		int tx = (int)lrintf(mfr_arcface_template[2 * i]), ty = (int)lrintf(mfr_arcface_template[2 * i + 1]);
		for (int y = ty - 4; y <= ty + 4; y++)
			for (int x = tx - 4; x <= tx + 4; x++) {
				int v = dst.px[((size_t)y * 112 + x) * 3 + 1];
				if (v > best)
					best = v, bx = x, by = y;
			}
		far += fabs(bx - mfr_arcface_template[2 * i]) > 1 || fabs(by - mfr_arcface_template[2 * i + 1]) > 1 ||
		       best < 200;
	}
	CHECK_EQ_INT(far, 0);
	CHECK(dst.px[0] < 40 && dst.px[(112 * 112 - 1) * 3] < 40);
	mfr_image_free(&dst);
	/* a face near the picture's edge: the outside is black */
	float T2[6] = {1, 0, -40, 0, 1, -30};
	apply(T2, mfr_arcface_template, lm, 5);
	CHECK(mfr_align_face(&src, lm, mfr_arcface_template, 112, 112, &dst, NULL, &e) == 0);
	CHECK(dst.px[0] == 0 && dst.px[1] == 0);
	mfr_image_free(&dst);
	float same[10] = {0};
	CHECK(mfr_align_face(&src, same, mfr_arcface_template, 112, 112, &dst, out_lm, &e) == -1);
	CHECK(is_zeroed(&dst));
	mfr_image_free(&src);
}

/* ---- real data ---- */

typedef struct {
	char path[256];
	float lm[10];
} lm_entry;

/* Reads "path x1 y1 .. x5 y5" lines; returns the count (at most cap). */
static int read_landmarks(const char *file, lm_entry *out, int cap)
{
	FILE *f = fopen(file, "r");
	if (!f)
		return -1;
	char line[1024];
	int n = 0;
	while (n < cap && fgets(line, sizeof line, f)) {
		lm_entry *t = &out[n];
		float *l = t->lm;
		if (sscanf(line, "%255s %f %f %f %f %f %f %f %f %f %f", t->path, &l[0], &l[1], &l[2],
			   &l[3], &l[4], &l[5], &l[6], &l[7], &l[8], &l[9]) == 11)
			n++;
	}
	fclose(f);
	return n;
}

static int load_image(mfr_jpeg *j, const char *path, mfr_image *im)
{
	uint8_t *data;
	size_t n;
	mfr_error e = {{0}};
	if (mfr_read_file(path, 1 << 24, &data, &n, &e) != 0) {
		fprintf(stderr, "    %s\n", e.msg);
		return -1;
	}
	int rc = mfr_image_decode(j, data, n, 3, MFR_PIXEL_CAP, im, &e);
	if (rc)
		fprintf(stderr, "    '%s': %s\n", path, e.msg);
	free(data);
	return rc;
}

static void test_lfw(mfr_jpeg *j)
{
	const char *dir = check_data_dir("lfw alignment");
	if (!dir)
		return;
	char p[4096 + 512]; /* the data dir (< 4096) and a 255-byte path */
	enum { NORIG = 20, NALIGNED = 14000 };
	lm_entry *orig = calloc(NORIG, sizeof *orig), *al = calloc(NALIGNED, sizeof *al);
	snprintf(p, sizeof p, "%s/lfw/landmarks_original150.txt", dir);
	int no = read_landmarks(p, orig, NORIG);
	snprintf(p, sizeof p, "%s/lfw/landmarks_aligned112.txt", dir);
	int na = read_landmarks(p, al, NALIGNED);
	if (no <= 0 || na <= 0) {
		printf("skip: lfw alignment: landmark files missing under %s/lfw\n", dir);
		free(orig), free(al);
		return;
	}
	int done = 0, lm_bad = 0;
	double sum_mad = 0, worst_mad = 0, worst_lm = 0, sum_corner = 0;
	for (int i = 0; i < no; i++) {
		const lm_entry *a = NULL;
		for (int k = 0; k < na && !a; k++)
			if (strcmp(al[k].path, orig[i].path) == 0)
				a = &al[k];
		if (!a)
			continue;
		mfr_image src = {0}, ref = {0}, dst = {0};
		snprintf(p, sizeof p, "%s/lfw/original150/%s", dir, orig[i].path);
		if (load_image(j, p, &src) != 0)
			continue;
		snprintf(p, sizeof p, "%s/lfw/aligned112/%s", dir, orig[i].path);
		if (load_image(j, p, &ref) != 0) {
			mfr_image_free(&src);
			continue;
		}
		float out_lm[10];
		mfr_error e = {{0}};
		if (mfr_align_face(&src, orig[i].lm, mfr_arcface_template, 112, 112, &dst, out_lm, &e) == 0 &&
		    ref.w == 112 && ref.h == 112) {
			double mad = 0;
			for (size_t k = 0; k < 112 * 112 * 3; k++)
				mad += abs((int)dst.px[k] - (int)ref.px[k]);
			mad /= 112 * 112 * 3;
			sum_mad += mad;
			worst_mad = fmax(worst_mad, mad);
			/* the same map under the pixel-corner convention (pixel i
			 * covers [i, i+1), as PIL's transform): M'(p) = M(p+.5) - .5 */
			float M[6];
			mfr_similarity(orig[i].lm, mfr_arcface_template, 5, M, &e);
			M[2] += 0.5f * (M[0] + M[1]) - 0.5f;
			M[5] += 0.5f * (M[3] + M[4]) - 0.5f;
			mfr_warp_affine(&dst, &src, M, 0);
			mad = 0;
			for (size_t k = 0; k < 112 * 112 * 3; k++)
				mad += abs((int)dst.px[k] - (int)ref.px[k]);
			sum_corner += mad / (112 * 112 * 3);
			for (int k = 0; k < 10; k++) {
				double d = fabs(out_lm[k] - a->lm[k]);
				worst_lm = fmax(worst_lm, d);
				lm_bad += d > 1.0;
			}
			done++;
		}
		mfr_image_free(&src);
		mfr_image_free(&ref);
		mfr_image_free(&dst);
	}
	if (!done) {
		CHECK(done > 0);
		free(orig), free(al);
		return;
	}
	printf("lfw: %d faces aligned; mean abs pixel difference from aligned112: mean %.2f, "
	       "worst %.2f (%.2f under the pixel-corner convention); worst landmark "
	       "difference %.3f px\n",
	       done, sum_mad / done, worst_mad, sum_corner / done, worst_lm);
	CHECK(done >= NORIG / 2);
	/* Measured on these 20 faces: mean 2.39, worst 4.75 (levels of 255).
	 * Two causes, both in the reference rather than here: aligned112 is a
	 * JPEG (re-encoding our own crops at q95 alone gives 1.2), and it was
	 * warped with the pixel-corner convention, which at these face scales
	 * (s ~ 1.3-1.5) moves the content 0.5(s-1) ~ 0.2 px right and down;
	 * emulating that brings the mean to 1.2, the JPEG floor. So the
	 * interpolation is right, the offset is the data maker's, and the
	 * bounds leave ~25% headroom over what was measured. */
	CHECK(sum_mad / done < 3.0);
	CHECK(worst_mad < 6.0);
	CHECK(sum_corner / done < 1.6);
	/* the landmarks file was written with the same similarity: measured
	 * 0.005 px (its two decimals) */
	CHECK_EQ_INT(lm_bad, 0);
	free(orig);
	free(al);
}

int main(void)
{
	mfr_error e = {{0}};
	mfr_jpeg *j = mfr_jpeg_new(&e);
	CHECK(j != NULL);
	if (!j) {
		fprintf(stderr, "%s\n", e.msg);
		return check_done();
	}
	test_sniff(j);
	test_jpeg(j);
	test_cmyk(j);
	test_png(j);
	test_similarity();
	test_invert();
	test_warp();
	test_align();
	test_lfw(j);
	mfr_jpeg_free(j);
	return check_done();
}
