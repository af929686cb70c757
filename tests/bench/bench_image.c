/* bench_image.c — one-thread throughput of the image path a face takes:
 * JPEG decode and encode of 112x112 RGB crops, and 5-point alignment
 * (similarity + bilinear warp) into 112x112. Prints figures, asserts nothing.
 *
 * Inputs: with the shared data present ($MFR_DATA or ../shared/data), up to
 * 500 real LFW crops from lfw/aligned112 and the 150x150 originals with their
 * landmarks; otherwise synthetic faces encoded here at q90. Each output line
 * says which it used. The target from the issue: decode >= 5000 img/s/core.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <math.h>

#include "image.h" /* defines: mfr_jpeg_*, mfr_image_decode, mfr_align_face, mfr_warp_affine */

enum { MAXFILES = 500 };
static const double SECONDS = 2.0; /* CPU seconds per figure: averages out frequency steps */

/* This thread's CPU time, not wall time: "per core" should not depend on
 * what else the machine runs (a shared build box descheduled us for a third
 * of the wall time while this was written). */
static double now(void)
{
	struct timespec t;
	clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
	return t.tv_sec + t.tv_nsec * 1e-9;
}

static const char *data_dir(void)
{
	const char *d = getenv("MFR_DATA");
	if (d)
		return d;
	FILE *f = fopen("../shared/data/README.md", "r");
	if (!f)
		return NULL;
	fclose(f);
	return "../shared/data";
}

static void die(const char *what, const mfr_error *e)
{
	fprintf(stderr, "bench_image: %s: %s\n", what, e->msg);
	exit(1);
}

/* A smooth synthetic face-sized picture: gradients, ripples and soft blobs,
 * so it compresses like a photograph rather than like noise. */
static void synth(mfr_image *im, uint64_t seed)
{
	mfr_rng r = {seed};
	double cx = 30 + mfr_rng_uniform(&r) * (im->w - 60), cy = 30 + mfr_rng_uniform(&r) * (im->h - 60);
	for (int y = 0; y < im->h; y++)
		for (int x = 0; x < im->w; x++)
			for (int k = 0; k < im->c; k++) {
				double d2 = (x - cx) * (x - cx) + (y - cy) * (y - cy);
				double v = 60 + 0.6 * x + 0.3 * y + 20 * sin(0.21 * x + k) * cos(0.13 * y) +
					   90 * exp(-d2 / 800.0) + 8 * (mfr_rng_uniform(&r) - 0.5);
				im->px[((size_t)y * im->w + x) * im->c + k] = (uint8_t)(v < 0 ? 0 : v > 255 ? 255 : v);
			}
}

typedef struct {
	uint8_t *data;
	size_t n;
} blob;

/* Up to MAXFILES JPEGs named in lfw/landmarks_aligned112.txt; returns the count. */
static int load_lfw_crops(const char *dir, blob *b)
{
	char p[4096 + 512], line[1024], path[256];
	snprintf(p, sizeof p, "%s/lfw/landmarks_aligned112.txt", dir);
	FILE *f = fopen(p, "r");
	if (!f)
		return 0;
	int n = 0;
	mfr_error e;
	while (n < MAXFILES && fgets(line, sizeof line, f)) {
		if (sscanf(line, "%255s", path) != 1)
			continue;
		snprintf(p, sizeof p, "%s/lfw/aligned112/%s", dir, path);
		if (mfr_read_file(p, 1 << 20, &b[n].data, &b[n].n, &e) == 0)
			n++;
	}
	fclose(f);
	return n;
}

typedef struct {
	mfr_image im;
	float lm[10];
} face;

/* Up to MAXFILES originals with landmarks from lfw/landmarks_original150.txt. */
static int load_lfw_originals(const char *dir, mfr_jpeg *j, face *fc)
{
	char p[4096 + 512], line[1024], path[256];
	snprintf(p, sizeof p, "%s/lfw/landmarks_original150.txt", dir);
	FILE *f = fopen(p, "r");
	if (!f)
		return 0;
	int n = 0;
	mfr_error e;
	while (n < MAXFILES && fgets(line, sizeof line, f)) {
		float *l = fc[n].lm;
		if (sscanf(line, "%255s %f %f %f %f %f %f %f %f %f %f", path, &l[0], &l[1], &l[2], &l[3],
			   &l[4], &l[5], &l[6], &l[7], &l[8], &l[9]) != 11)
			continue;
		uint8_t *data;
		size_t sz;
		snprintf(p, sizeof p, "%s/lfw/original150/%s", dir, path);
		if (mfr_read_file(p, 1 << 22, &data, &sz, &e) != 0)
			continue;
		if (mfr_image_decode(j, data, sz, 3, MFR_PIXEL_CAP, &fc[n].im, &e) == 0)
			n++;
		free(data);
	}
	fclose(f);
	return n;
}

int main(void)
{
	mfr_error e;
	mfr_jpeg *j = mfr_jpeg_new(&e);
	if (!j)
		die("jpeg", &e);
	const char *dir = data_dir();
	blob *b = calloc(MAXFILES, sizeof *b);
	face *fc = calloc(MAXFILES, sizeof *fc);
	int nb = dir ? load_lfw_crops(dir, b) : 0;
	const char *src = "lfw";
	if (nb == 0) { /* synthetic crops, encoded as the real ones would be */
		src = "synthetic q90";
		for (nb = 0; nb < 16; nb++) {
			mfr_image im;
			if (mfr_image_alloc(&im, 112, 112, 3, &e))
				die("alloc", &e);
			synth(&im, (uint64_t)nb + 1);
			if (mfr_jpeg_encode(j, &im, 90, &b[nb].data, &b[nb].n, &e))
				die("encode", &e);
			mfr_image_free(&im);
		}
	}
	size_t bytes = 0;
	for (int i = 0; i < nb; i++)
		bytes += b[i].n;

	/* decode: every pass goes through all files, as a data loader would */
	long count = 0;
	double t0 = now(), t;
	mfr_image im;
	do {
		for (int i = 0; i < nb; i++) {
			if (mfr_image_decode(j, b[i].data, b[i].n, 3, MFR_PIXEL_CAP, &im, &e))
				die("decode", &e);
			mfr_image_free(&im);
		}
		count += nb;
	} while ((t = now() - t0) < SECONDS);
	printf("jpeg decode 112x112: %.0f img/s/core (source: %s, %d files, mean %.1f KB; goal 5000)\n",
	       count / t, src, nb, bytes / 1024.0 / nb);

	/* encode the decoded crops again at q90 */
	int ne = nb < 64 ? nb : 64;
	mfr_image *pix = calloc(ne, sizeof *pix);
	for (int i = 0; i < ne; i++)
		if (mfr_image_decode(j, b[i].data, b[i].n, 3, MFR_PIXEL_CAP, &pix[i], &e))
			die("decode", &e);
	count = 0;
	t0 = now();
	do {
		for (int i = 0; i < ne; i++) {
			uint8_t *out;
			size_t n;
			if (mfr_jpeg_encode(j, &pix[i], 90, &out, &n, &e))
				die("encode", &e);
			free(out);
		}
		count += ne;
	} while ((t = now() - t0) < SECONDS);
	printf("jpeg encode 112x112 q90: %.0f img/s/core (source: %s)\n", count / t, src);

	/* alignment from 150x150 originals (or synthetic ones with the template
	 * rotated, scaled and shifted into them) */
	int nf = dir ? load_lfw_originals(dir, j, fc) : 0;
	const char *asrc = "lfw original150";
	if (nf == 0) {
		asrc = "synthetic 150x150";
		for (nf = 0; nf < 16; nf++) {
			if (mfr_image_alloc(&fc[nf].im, 150, 150, 3, &e))
				die("alloc", &e);
			synth(&fc[nf].im, 100 + (uint64_t)nf);
			double th = 0.05 * (nf - 8), s = 0.75 + 0.01 * nf;
			for (int k = 0; k < 5; k++) {
				double x = mfr_arcface_template[2 * k] - 56, y = mfr_arcface_template[2 * k + 1] - 56;
				fc[nf].lm[2 * k] = (float)(75 + s * (cos(th) * x - sin(th) * y));
				fc[nf].lm[2 * k + 1] = (float)(75 + s * (sin(th) * x + cos(th) * y));
			}
		}
	}
	count = 0;
	t0 = now();
	do {
		for (int i = 0; i < nf; i++) {
			if (mfr_align_face(&fc[i].im, fc[i].lm, mfr_arcface_template, 112, 112, &im, NULL, &e))
				die("align", &e);
			mfr_image_free(&im);
		}
		count += nf;
	} while ((t = now() - t0) < SECONDS);
	printf("align 150x150 -> 112x112: %.0f faces/s/core (source: %s, %d faces)\n", count / t, asrc,
	       nf);

	/* the warp alone, into a preallocated crop */
	float M[6];
	if (mfr_similarity(fc[0].lm, mfr_arcface_template, 5, M, &e))
		die("similarity", &e);
	if (mfr_image_alloc(&im, 112, 112, 3, &e))
		die("alloc", &e);
	count = 0;
	t0 = now();
	do {
		for (int i = 0; i < 100; i++)
			mfr_warp_affine(&im, &fc[count % nf].im, M, 0);
		count += 100;
	} while ((t = now() - t0) < SECONDS);
	printf("warp 112x112 rgb: %.0f img/s/core (%.1f Mpx/s)\n", count / t,
	       count / t * 112 * 112 / 1e6);
	mfr_image_free(&im);

	for (int i = 0; i < ne; i++)
		mfr_image_free(&pix[i]);
	for (int i = 0; i < nf; i++)
		mfr_image_free(&fc[i].im);
	for (int i = 0; i < MAXFILES; i++)
		free(b[i].data);
	free(pix), free(fc), free(b);
	mfr_jpeg_free(j);
	return 0;
}
