/* bench_maskaug.c — one-thread throughput of mask augmentation on 112x112
 * faces, stage by stage (JPEG decode, pose fit, mesh + raster + blend, JPEG
 * encode), and the whole decode-mask-encode loop in faces/s/core (issue 6's
 * goal: >= 2,000). Faces come from LFW (../shared/data/lfw/aligned112 with
 * landmarks_aligned112.txt) when present, else from the synthetic
 * generator. With -s FILE it also writes a contact sheet: one row per face
 * (chosen to spread over yaw and pitch), the face unmasked, then one masked
 * copy per style, pattern and user template. Prints figures, asserts nothing.
 *
 * usage: bench_maskaug [-s SHEET.png] [-n FACES] [-t SECONDS]
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "image.h"   /* defines: mfr_jpeg_*, mfr_png_encode, mfr_image */
#include "maskaug.h" /* defines: mfr_maskaug_* */
#include "record.h"  /* defines: MFR_STYLE_* */
#include "synth.h"   /* defines: mfr_synth_* */

static double cpu_now(void)
{
	struct timespec t;
	clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
	return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

static void die(const char *what, const char *msg)
{
	fprintf(stderr, "bench_maskaug: %s: %s\n", what, msg);
	exit(1);
}

typedef struct {
	uint8_t *jpg;
	size_t n;
	float lm[10];
	char name[600];
} face;

/* Up to max LFW faces, every k-th line of the landmark list; 0 when absent. */
static int load_lfw(const char *data, face *F, int max)
{
	char path[4096];
	snprintf(path, sizeof path, "%s/lfw/landmarks_aligned112.txt", data);
	FILE *f = fopen(path, "r");
	if (!f)
		return 0;
	char line[1024];
	int n = 0, k = 0;
	mfr_error e;
	while (n < max && fgets(line, sizeof line, f)) {
		if (k++ % 13 != 0)
			continue; /* a spread of people, not the first few alphabetically */
		char rel[512];
		face *x = &F[n];
		if (sscanf(line, "%511s %f %f %f %f %f %f %f %f %f %f", rel, &x->lm[0], &x->lm[1], &x->lm[2], &x->lm[3],
			   &x->lm[4], &x->lm[5], &x->lm[6], &x->lm[7], &x->lm[8], &x->lm[9]) != 11)
			continue;
		snprintf(path, sizeof path, "%s/lfw/aligned112/%s", data, rel);
		if (mfr_read_file(path, 1 << 24, &x->jpg, &x->n, &e) < 0)
			die(path, e.msg);
		snprintf(x->name, sizeof x->name, "%s", rel);
		n++;
	}
	fclose(f);
	return n;
}

static int make_synth(face *F, int max, mfr_jpeg *j)
{
	mfr_synth_opts o;
	mfr_synth_defaults(&o);
	o.variation = 1.5;
	uint8_t px[112 * 112 * 3];
	mfr_error e;
	for (int i = 0; i < max; i++) {
		mfr_synth_face sf;
		mfr_synth_identity(3, (uint64_t)i, &o, &sf);
		if (mfr_synth_render(&sf, 3, 0, &o, px, F[i].lm, &e) < 0)
			die("synth", e.msg);
		mfr_image im = {112, 112, 3, px};
		if (mfr_jpeg_encode(j, &im, 90, &F[i].jpg, &F[i].n, &e) < 0)
			die("jpeg", e.msg);
		snprintf(F[i].name, sizeof F[i].name, "synth %d", i);
	}
	return max;
}

/* The contact sheet: rows of faces spread over pose, columns of styles. */
static void sheet(const char *out, face *F, int nf, mfr_jpeg *j, const mfr_mask_templates *T)
{
	enum { ROWS = 10, MAXC = 16 };
	mfr_error e;
	/* pick faces spread over yaw (and pitch): sort indices by yaw */
	float yaw[4096];
	int idx[4096], n = nf < 4096 ? nf : 4096;
	for (int i = 0; i < n; i++) {
		mfr_maskaug_info in;
		idx[i] = i;
		yaw[i] = mfr_maskaug_pose(F[i].lm, &in, &e) < 0 ? 0 : in.yaw + 0.01f * in.pitch;
	}
	for (int i = 1; i < n; i++)
		for (int k = i; k > 0 && yaw[idx[k]] < yaw[idx[k - 1]]; k--) {
			int t = idx[k];
			idx[k] = idx[k - 1];
			idx[k - 1] = t;
		}
	mfr_maskaug_params cols[MAXC];
	const char *names[MAXC];
	int nc = 0;
	memset(cols, 0, sizeof cols);
	struct { int style, colour, pattern; const char *what; } want[] = {
		{MFR_STYLE_SURGICAL, 0, 0, "surgical blue"}, {MFR_STYLE_SURGICAL, 1, 0, "surgical white"},
		{MFR_STYLE_N95, 0, 0, "n95"}, {MFR_STYLE_N95, 2, 1, "n95 valve"},
		{MFR_STYLE_KN95, 0, 0, "kn95 white"}, {MFR_STYLE_KN95, 1, 0, "kn95 black"},
		{MFR_STYLE_CLOTH, 0, 1, "cloth stripes"}, {MFR_STYLE_CLOTH, 2, 2, "cloth checks"},
		{MFR_STYLE_CLOTH, 9, 4, "cloth flowers"}, {MFR_STYLE_CLOTH, 5, 5, "cloth camouflage"},
	};
	for (size_t i = 0; i < sizeof want / sizeof want[0]; i++, nc++) {
		cols[nc].style = want[i].style, cols[nc].colour = want[i].colour, cols[nc].pattern = want[i].pattern;
		cols[nc].top = 0.5f, cols[nc].bottom = 0.5f, cols[nc].width = 0.5f, cols[nc].fit = 0.5f;
		cols[nc].key = 77 + i;
		names[nc] = want[i].what;
	}
	for (int t = 0; T && t < mfr_mask_templates_count(T) && nc < MAXC; t += 1 + mfr_mask_templates_count(T) / 4) {
		cols[nc].style = MFR_STYLE_USER, cols[nc].tmpl = t;
		names[nc++] = mfr_mask_templates_name(T, t);
	}
	mfr_maskaug cfg;
	mfr_maskaug_defaults(&cfg);
	cfg.templates = T;
	int W = 112 * (nc + 1), H = 112 * ROWS;
	mfr_image S;
	if (mfr_image_alloc(&S, W, H, 3, &e) < 0)
		die("sheet", e.msg);
	memset(S.px, 40, (size_t)W * H * 3);
	printf("contact sheet %s: rows (by yaw):", out);
	for (int r = 0; r < ROWS && r < n; r++) {
		int fi = idx[(int)((double)r * (n - 1) / (ROWS - 1) + 0.5)];
		mfr_image im = {0};
		if (mfr_jpeg_decode(j, F[fi].jpg, F[fi].n, 3, MFR_PIXEL_CAP, &im, &e) < 0)
			die(F[fi].name, e.msg);
		mfr_maskaug_info in;
		mfr_maskaug_pose(F[fi].lm, &in, &e);
		printf(" %s (yaw %.0f pitch %.0f)%s", F[fi].name, in.yaw, in.pitch, r + 1 < ROWS ? "," : "\n");
		uint8_t *tmp = malloc(112 * 112 * 3);
		for (int c = 0; c <= nc; c++) {
			memcpy(tmp, im.px, 112 * 112 * 3);
			if (c > 0 && mfr_maskaug_draw(&cfg, &cols[c - 1], tmp, 112, 112, F[fi].lm, NULL, NULL, &e) < 0)
				die(names[c - 1], e.msg);
			for (int y = 0; y < 112; y++)
				memcpy(S.px + ((size_t)(r * 112 + y) * W + (size_t)c * 112) * 3, tmp + y * 112 * 3, 112 * 3);
		}
		free(tmp);
		mfr_image_free(&im);
	}
	printf("contact sheet columns: unmasked");
	for (int c = 0; c < nc; c++)
		printf(", %s", names[c]);
	printf("\n");
	uint8_t *png;
	size_t len;
	if (mfr_png_encode(&S, &png, &len, &e) < 0)
		die("png", e.msg);
	FILE *f = fopen(out, "wb");
	if (!f || fwrite(png, 1, len, f) != len || fclose(f) != 0)
		die(out, "cannot write");
	free(png);
	mfr_image_free(&S);
}

int main(int argc, char **argv)
{
	const char *sheet_path = NULL, *tdir = NULL;
	int nmax = 400;
	double secs = 2.0;
	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "-s") && i + 1 < argc)
			sheet_path = argv[++i];
		else if (!strcmp(argv[i], "-n") && i + 1 < argc)
			nmax = atoi(argv[++i]);
		else if (!strcmp(argv[i], "-t") && i + 1 < argc)
			secs = atof(argv[++i]);
		else if (!strcmp(argv[i], "-T") && i + 1 < argc)
			tdir = argv[++i];
		else {
			fprintf(stderr, "usage: bench_maskaug [-s SHEET.png] [-n FACES] [-t SECONDS] [-T TEMPLATES]\n");
			return 2;
		}
	}
	if (nmax < 10 || nmax > 4096)
		nmax = 400;
	const char *data = getenv("MFR_DATA") ? getenv("MFR_DATA") : "../shared/data";
	mfr_error e;
	mfr_jpeg *j = mfr_jpeg_new(&e);
	if (!j)
		die("jpeg", e.msg);
	face *F = calloc((size_t)nmax, sizeof *F);
	int nf = load_lfw(data, F, nmax);
	const char *src = "LFW aligned112";
	if (nf == 0) {
		nf = make_synth(F, nmax, j);
		src = "synthetic faces (no ../shared/data)";
	}
	mfr_mask_templates *T = NULL;
	if (tdir && !(T = mfr_mask_templates_load(tdir, &e)))
		die("templates", e.msg);
	printf("faces: %d %s, 112x112 JPEG, mask on every face, default style weights, JPEG q90 out\n", nf, src);

	mfr_maskaug cfg;
	mfr_maskaug_defaults(&cfg);
	cfg.seed = 1;
	cfg.ratio = 1;
	/* stages, each over the whole set repeatedly for `secs` of CPU */
	mfr_image *im = calloc((size_t)nf, sizeof *im);
	double t0 = cpu_now(), t;
	long n = 0;
	do {
		for (int i = 0; i < nf; i++, n++) {
			mfr_image_free(&im[i]);
			if (mfr_jpeg_decode(j, F[i].jpg, F[i].n, 3, MFR_PIXEL_CAP, &im[i], &e) < 0)
				die(F[i].name, e.msg);
		}
	} while ((t = cpu_now() - t0) < secs);
	double us_dec = 1e6 * t / (double)n;
	t0 = cpu_now(), n = 0;
	do {
		for (int i = 0; i < nf; i++, n++) {
			mfr_maskaug_info in;
			if (mfr_maskaug_pose(F[i].lm, &in, &e) < 0)
				die(F[i].name, e.msg);
		}
	} while ((t = cpu_now() - t0) < secs);
	double us_geo = 1e6 * t / (double)n;
	uint8_t *buf = malloc(112 * 112 * 3);
	double cov = 0;
	t0 = cpu_now(), n = 0;
	do {
		for (int i = 0; i < nf; i++, n++) {
			mfr_maskaug_info in;
			memcpy(buf, im[i].px, 112 * 112 * 3);
			if (mfr_maskaug_apply(&cfg, buf, 112, 112, F[i].lm, (uint64_t)i, &in, &e) < 0)
				die(F[i].name, e.msg);
			cov += in.coverage;
		}
	} while ((t = cpu_now() - t0) < secs);
	double us_draw = 1e6 * t / (double)n;
	cov /= (double)n;
	size_t bytes = 0;
	t0 = cpu_now(), n = 0;
	do {
		for (int i = 0; i < nf; i++, n++) {
			uint8_t *out;
			size_t len;
			if (mfr_jpeg_encode(j, &im[i], 90, &out, &len, &e) < 0)
				die("encode", e.msg);
			bytes += len;
			free(out);
		}
	} while ((t = cpu_now() - t0) < secs);
	double us_enc = 1e6 * t / (double)n;
	long n_enc = n;
	/* the whole loop, as mfr-maskaug runs it per record */
	t0 = cpu_now(), n = 0;
	do {
		for (int i = 0; i < nf; i++, n++) {
			mfr_image x = {0};
			uint8_t *out = NULL;
			size_t len;
			if (mfr_jpeg_decode(j, F[i].jpg, F[i].n, 3, MFR_PIXEL_CAP, &x, &e) < 0 ||
			    mfr_maskaug_apply(&cfg, x.px, 112, 112, F[i].lm, (uint64_t)i, NULL, &e) < 0 ||
			    mfr_jpeg_encode(j, &x, 90, &out, &len, &e) < 0)
				die(F[i].name, e.msg);
			free(out);
			mfr_image_free(&x);
		}
	} while ((t = cpu_now() - t0) < secs);
	double whole = (double)n / t;
	printf("stages (us/face, one core): decode %.1f, geometry (pose fit) %.1f, render (light estimate, mesh, "
	       "raster, texture, blend, cords) %.1f, encode %.1f\n", us_dec, us_geo, us_draw - us_geo, us_enc);
	printf("mask coverage: %.1f%% of the image on average; JPEG q90 out: %.0f bytes a face\n", 100 * cov,
	       (double)bytes / (double)n_enc);
	printf("maskaug decode+mask+encode: %.0f faces/s/core (goal >= 2000)\n", whole);
	if (sheet_path)
		sheet(sheet_path, F, nf, j, T);
	for (int i = 0; i < nf; i++) {
		free(F[i].jpg);
		mfr_image_free(&im[i]);
	}
	free(im);
	free(F);
	free(buf);
	mfr_mask_templates_free(T);
	mfr_jpeg_free(j);
	return 0;
}
