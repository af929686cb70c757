/* dlibchip.c — test fixture writer: aligns faces to dlib's 150x150 template
 * and writes each chip twice, losslessly, as PNG (for mfr-pack, so that
 * mfr-embed sees exactly these pixels with no alignment of its own) and as
 * binary PPM (for tests/ref/dlib_ref.py, which has no image decoder). That
 * keeps the alignment out of the comparison of the two implementations.
 * Test code only.
 *
 * usage: dlibchip LIST ROOT PNGDIR PPMDIR
 *   LIST lines: path x1 y1 .. x5 y5 (landmarks in the image's frame);
 *   chip k (0-based line) goes to PNGDIR/kkkk.png and PPMDIR/kkkk.ppm */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dlib.h"  /* defines: mfr_dlib_template */
#include "image.h" /* defines: mfr_image_decode, mfr_align_face, mfr_png_encode */

static void die(const char *what, const char *msg)
{
	fprintf(stderr, "dlibchip: %s: %s\n", what, msg);
	exit(1);
}

int main(int argc, char **argv)
{
	if (argc != 5) {
		fprintf(stderr, "usage: dlibchip LIST ROOT PNGDIR PPMDIR\n");
		return 2;
	}
	FILE *list = fopen(argv[1], "r");
	if (!list)
		die(argv[1], "cannot open");
	mfr_error e;
	mfr_jpeg *j = mfr_jpeg_new(&e);
	if (!j)
		die("jpeg", e.msg);
	char line[4096], rel[2048], path[4096];
	int k = 0;
	while (fgets(line, sizeof line, list)) {
		float lm[10];
		if (sscanf(line, "%2047s %f %f %f %f %f %f %f %f %f %f", rel, &lm[0], &lm[1], &lm[2], &lm[3], &lm[4], &lm[5],
			   &lm[6], &lm[7], &lm[8], &lm[9]) != 11)
			die(argv[1], "a line is not 'path x1 y1 .. x5 y5'");
		snprintf(path, sizeof path, "%s/%s", argv[2], rel);
		uint8_t *bytes;
		size_t n;
		mfr_image im = {0}, chip = {0};
		if (mfr_read_file(path, 64u << 20, &bytes, &n, &e) < 0 ||
		    mfr_image_decode(j, bytes, n, 3, 1u << 26, &im, &e) < 0 ||
		    mfr_align_face(&im, lm, mfr_dlib_template, 150, 150, &chip, NULL, &e) < 0)
			die(path, e.msg);
		free(bytes);
		uint8_t *png;
		size_t pn;
		if (mfr_png_encode(&chip, &png, &pn, &e) < 0)
			die(path, e.msg);
		snprintf(path, sizeof path, "%s/%04d.png", argv[3], k);
		FILE *f = fopen(path, "wb");
		if (!f || fwrite(png, 1, pn, f) != pn || fclose(f))
			die(path, "cannot write");
		free(png);
		snprintf(path, sizeof path, "%s/%04d.ppm", argv[4], k);
		f = fopen(path, "wb");
		if (!f || fprintf(f, "P6\n%d %d\n255\n", chip.w, chip.h) < 0 ||
		    fwrite(chip.px, 1, (size_t)chip.w * chip.h * 3, f) != (size_t)chip.w * chip.h * 3 || fclose(f))
			die(path, "cannot write");
		mfr_image_free(&im);
		mfr_image_free(&chip);
		k++;
	}
	fclose(list);
	mfr_jpeg_free(j);
	return 0;
}
