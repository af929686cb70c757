/* test_synth.c — the synthetic face generator: determinism, landmarks, and
 * above all that the data are hard enough not to be solved by matching
 * pixels, yet carry identity.
 *
 * The difficulty check: 50 identities x 10 images at the defaults, each
 * image reduced to 28x28 RGB (4x4 box means), classified by the nearest
 * class mean with its own image left out of its class's mean. Chance is 2%.
 * Pixel matching must stay far below perfect; a handful of simple features
 * read at the landmarks (patch colours and landmark ratios) must do clearly
 * better than pixels, which shows the identity is in the image and not only
 * in the generator's genes. Measured at the defaults: pixels 25.4%, simple
 * features 42.4%; at difficulty 0 43% and 63%, at difficulty 1 10% and 13%.
 * Measured figures are given with each bound.
 */
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "image.h" /* defines: mfr_arcface_template */
#include "synth.h" /* defines: mfr_synth_* */

enum { NPX = MFR_SYNTH_SIZE * MFR_SYNTH_SIZE * 3 };

static uint64_t fnv1a(const uint8_t *p, size_t n)
{
	uint64_t h = 0xcbf29ce484222325ull;
	for (size_t i = 0; i < n; i++)
		h = (h ^ p[i]) * 0x100000001b3ull;
	return h;
}

static void render(const mfr_synth_face *f, uint64_t seed, uint64_t img, const mfr_synth_opts *o, uint8_t *px,
		   float lm[10])
{
	mfr_error e;
	if (mfr_synth_render(f, seed, img, o, px, lm, &e) < 0) {
		fprintf(stderr, "render: %s\n", e.msg);
		exit(1);
	}
}

static void draw(const mfr_synth_face *f, const mfr_synth_var *v, uint8_t *px, float lm[10])
{
	mfr_error e;
	if (mfr_synth_draw(f, v, px, lm, &e) < 0) {
		fprintf(stderr, "draw: %s\n", e.msg);
		exit(1);
	}
}

typedef struct {
	mfr_synth_face f;
	uint64_t img;
	uint8_t px[NPX];
} job;

static void *render_job(void *arg)
{
	job *j = arg;
	mfr_synth_opts o;
	mfr_synth_defaults(&o);
	render(&j->f, 1, j->img, &o, j->px, NULL);
	return NULL;
}

static void test_determinism(void)
{
	mfr_synth_opts o;
	mfr_synth_defaults(&o);
	static uint8_t a[NPX], b[NPX];
	float la[10], lb[10];
	mfr_synth_face f, g;
	mfr_synth_identity(1, 3, &o, &f);
	render(&f, 1, 5, &o, a, la);
	render(&f, 1, 5, &o, b, lb);
	CHECK(memcmp(a, b, NPX) == 0);
	CHECK(memcmp(la, lb, sizeof la) == 0);

	/* identity k does not depend on what else was generated */
	mfr_synth_face many[10];
	for (int k = 9; k >= 0; k--)
		mfr_synth_identity(1, (uint64_t)k, &o, &many[k]);
	mfr_synth_identity(1, 7, &o, &g);
	CHECK(memcmp(&g, &many[7], sizeof g) == 0);
	mfr_synth_identity(1, 3, &o, &g);
	render(&g, 1, 5, &o, b, lb);
	CHECK(memcmp(a, b, NPX) == 0);

	/* other images, identities, seeds and outliers differ */
	render(&f, 1, 6, &o, b, NULL);
	CHECK(memcmp(a, b, NPX) != 0);
	render(&f, 2, 5, &o, b, NULL);
	CHECK(memcmp(a, b, NPX) != 0);
	mfr_synth_identity(2, 3, &o, &g);
	CHECK(memcmp(f.gene, g.gene, sizeof f.gene) != 0);
	int same = 0;
	for (int n = 0; n < 20; n++) {
		mfr_synth_outlier(1, (uint64_t)n, &o, &g);
		for (int k = 0; k < 10; k++)
			same += memcmp(g.gene, many[k].gene, sizeof g.gene) == 0 || g.key == many[k].key;
	}
	CHECK_EQ_INT(same, 0);

	/* Threads share nothing: four renders at once equal the serial ones. */
	static job jobs[4];
	pthread_t th[4];
	for (int i = 0; i < 4; i++) {
		mfr_synth_identity(1, (uint64_t)i, &o, &jobs[i].f);
		jobs[i].img = (uint64_t)i;
		CHECK(pthread_create(&th[i], NULL, render_job, &jobs[i]) == 0);
	}
	for (int i = 0; i < 4; i++) {
		pthread_join(th[i], NULL);
		render(&jobs[i].f, 1, jobs[i].img, &o, a, NULL);
		CHECK(memcmp(a, jobs[i].px, NPX) == 0);
	}

	/* The bytes are pinned: a change here means the data set changed
	 * (gcc and clang, -O0 to -O2, with and without sanitizers, agree). */
	mfr_synth_identity(1, 0, &o, &f);
	uint64_t h = 0;
	for (int i = 0; i < 4; i++) {
		render(&f, 1, (uint64_t)i, &o, a, NULL);
		h ^= fnv1a(a, NPX) + (uint64_t)i;
	}
	printf("pixel hash of identity 0, images 0..3: %016llx\n", (unsigned long long)h);
	CHECK(h == 0xbd085f6fc22b7502ull);
}

/* Mean and worst distance of landmarks from the template. */
static void lm_error(const float *lm, double *mean, double *worst)
{
	*mean = 0, *worst = 0;
	for (int k = 0; k < 5; k++) {
		double d = hypot(lm[2 * k] - mfr_arcface_template[2 * k], lm[2 * k + 1] - mfr_arcface_template[2 * k + 1]);
		*mean += d / 5;
		*worst = d > *worst ? d : *worst;
	}
}

static double lum(const uint8_t *px, float x, float y)
{
	int i = (int)lrintf(y) * MFR_SYNTH_SIZE + (int)lrintf(x);
	return 0.299 * px[3 * i] + 0.587 * px[3 * i + 1] + 0.114 * px[3 * i + 2];
}

static void test_landmarks(void)
{
	mfr_synth_opts o;
	mfr_synth_defaults(&o);
	o.variation = 0;
	static uint8_t px[NPX];
	float lm[10];
	double sum = 0, worst = 0;
	int dark_eyes = 0;
	for (int k = 0; k < 40; k++) {
		mfr_synth_face f;
		mfr_synth_identity(11, (uint64_t)k, &o, &f);
		for (int align = 0; align < 2; align++) {
			o.align = align;
			render(&f, 11, 0, &o, px, lm);
			double m, w;
			lm_error(lm, &m, &w);
			sum += m / 80;
			worst = w > worst ? w : worst;
		}
		/* the landmarks sit on what was drawn: the pupils are dark */
		dark_eyes += lum(px, lm[0], lm[1]) < 0.6 * lum(px, lm[0], lm[1] + 9) &&
			     lum(px, lm[2], lm[3]) < 0.6 * lum(px, lm[2], lm[3] + 9);
	}
	/* Frontal faces differ from the template only by their own proportions
	 * (measured: mean 0.95 px, worst 2.94 px over 40 identities, both
	 * alignments). */
	printf("frontal landmarks: mean %.2f px, worst %.2f px from the template\n", sum, worst);
	CHECK(sum < 2.0);
	CHECK(worst < 5.0);
	CHECK_EQ_INT(dark_eyes, 40);

	/* yaw moves the nose toward the turn relative to the eyes; roll (when
	 * not re-aligned) tilts the eye line by the roll */
	mfr_synth_face f;
	mfr_synth_identity(11, 1, &o, &f);
	mfr_synth_var v;
	o.align = 1;
	mfr_synth_vary(&f, 11, 0, &o, &v);
	float l0[10], lp[10], ln[10];
	draw(&f, &v, px, l0);
	v.yaw = 20 * (float)M_PI / 180;
	draw(&f, &v, px, lp);
	v.yaw = -v.yaw;
	draw(&f, &v, px, ln);
	double n0 = l0[4] - (l0[0] + l0[2]) / 2, np = lp[4] - (lp[0] + lp[2]) / 2, nn = ln[4] - (ln[0] + ln[2]) / 2;
	/* measured: 0.10, 6.74 and -6.53 px */
	printf("nose offset from the eye midpoint: %.2f px at yaw 0, %.2f at +20, %.2f at -20\n", n0, np, nn);
	CHECK(np - n0 > 3.0);
	CHECK(n0 - nn > 3.0);
	CHECK(fabs((np - n0) + (nn - n0)) < 1.0); /* symmetric */
	CHECK(hypot(lp[2] - lp[0], lp[3] - lp[1]) < hypot(l0[2] - l0[0], l0[3] - l0[1]) + 0.5);
	v.yaw = 0;
	v.align = 0;
	v.roll = 10 * (float)M_PI / 180;
	draw(&f, &v, px, lp);
	double ang = atan2(lp[3] - lp[1], lp[2] - lp[0]) - atan2(l0[3] - l0[1], l0[2] - l0[0]);
	printf("eye line turns %.2f degrees for a roll of 10\n", ang * 180 / M_PI);
	CHECK_NEAR(ang * 180 / M_PI, 10.0, 0.5);
	/* re-aligned crops take the roll out */
	v.align = 1;
	draw(&f, &v, px, lp);
	ang = atan2(lp[3] - lp[1], lp[2] - lp[0]) - atan2(l0[3] - l0[1], l0[2] - l0[0]);
	CHECK(fabs(ang * 180 / M_PI) < 0.5);
}

/* ---- distances and classifiers ---- */

enum { FD = 28, NFEAT = FD * FD * 3 };

/* 28x28 RGB of 4x4 box means. */
static void pixel_feature(const uint8_t *px, float *f)
{
	for (int y = 0; y < FD; y++)
		for (int x = 0; x < FD; x++)
			for (int c = 0; c < 3; c++) {
				int s = 0;
				for (int j = 0; j < 4; j++)
					for (int i = 0; i < 4; i++)
						s += px[3 * ((4 * y + j) * MFR_SYNTH_SIZE + 4 * x + i) + c];
				f[3 * (y * FD + x) + c] = (float)s / 16;
			}
}

/* Simple features read at the landmarks: mean colours of 13 patches in a
 * frame of the eye line (cheeks, forehead, hair, chin, temples, eyes, lids)
 * and three landmark ratios. Returns the count. */
enum { NHAND = 42 };
static int hand_feature(const uint8_t *px, const float *lm, float *f)
{
	static const float spot[13][2] = {
		{-0.9f, 0.9f}, {0.9f, 0.9f}, {0, -1.2f}, {0, -2.0f}, {-1.4f, -1.6f}, {1.4f, -1.6f}, {0, 2.3f},
		{-1.45f, 0.2f}, {1.45f, 0.2f}, {-0.5f, 0}, {0.5f, 0}, {-0.5f, -0.45f}, {0.5f, -0.45f},
	};
	float ex = (lm[0] + lm[2]) / 2, ey = (lm[1] + lm[3]) / 2, mx = (lm[6] + lm[8]) / 2, my = (lm[7] + lm[9]) / 2;
	float iod = hypotf(lm[2] - lm[0], lm[3] - lm[1]), ux = (lm[2] - lm[0]) / iod, uy = (lm[3] - lm[1]) / iod;
	int n = 0;
	for (int s = 0; s < 13; s++) {
		float x = ex + iod * (spot[s][0] * ux - spot[s][1] * uy);
		float y = ey + iod * (spot[s][0] * uy + spot[s][1] * ux);
		int r = s >= 9 ? 1 : 2, cnt = 0;
		float acc[3] = {0, 0, 0};
		for (int j = -r; j <= r; j++)
			for (int i = -r; i <= r; i++) {
				int xx = (int)lrintf(x) + i, yy = (int)lrintf(y) + j;
				if (xx < 0 || yy < 0 || xx >= MFR_SYNTH_SIZE || yy >= MFR_SYNTH_SIZE)
					continue;
				for (int c = 0; c < 3; c++)
					acc[c] += px[3 * (yy * MFR_SYNTH_SIZE + xx) + c];
				cnt++;
			}
		for (int c = 0; c < 3; c++)
			f[n++] = cnt ? acc[c] / (float)cnt : 0;
	}
	f[n++] = hypotf(lm[8] - lm[6], lm[9] - lm[7]) / iod * 100;
	f[n++] = hypotf(mx - ex, my - ey) / iod * 100;
	f[n++] = hypotf(lm[4] - ex, lm[5] - ey) / iod * 100;
	return n;
}

/* Leave-one-out nearest class mean over N classes of M samples of d
 * features (sample k*M+m is class k). Returns the accuracy. */
static double ncm(const float *x, int N, int M, int d)
{
	double *mu = calloc((size_t)N * d, sizeof *mu);
	for (int k = 0; k < N; k++)
		for (int m = 0; m < M; m++)
			for (int i = 0; i < d; i++)
				mu[(size_t)k * d + i] += x[((size_t)k * M + m) * d + i] / M;
	int ok = 0;
	for (int k = 0; k < N; k++)
		for (int m = 0; m < M; m++) {
			const float *s = x + ((size_t)k * M + m) * d;
			int best = -1;
			double bd = 0;
			for (int j = 0; j < N; j++) {
				double dist = 0;
				for (int i = 0; i < d; i++) {
					double c = mu[(size_t)j * d + i];
					if (j == k)
						c = (c * M - s[i]) / (M - 1);
					dist += (s[i] - c) * (s[i] - c);
				}
				if (best < 0 || dist < bd)
					best = j, bd = dist;
			}
			ok += best == k;
		}
	free(mu);
	return (double)ok / (N * M);
}

/* Standardizes each feature over all samples (z-scores). */
static void standardize(float *x, int n, int d)
{
	for (int i = 0; i < d; i++) {
		double s = 0, s2 = 0;
		for (int k = 0; k < n; k++)
			s += x[(size_t)k * d + i], s2 += (double)x[(size_t)k * d + i] * x[(size_t)k * d + i];
		double mu = s / n, sd = sqrt(s2 / n - mu * mu) + 1e-6;
		for (int k = 0; k < n; k++)
			x[(size_t)k * d + i] = (float)((x[(size_t)k * d + i] - mu) / sd);
	}
}

typedef struct {
	double pixel, hand; /* NCM accuracies */
	double within, nearest; /* mean distance of images to their class mean; of class means to the nearest other */
	double gene_min;        /* smallest gene distance between two identities */
} figures;

static void measure(double difficulty, int N, int M, uint64_t seed, figures *r)
{
	mfr_synth_opts o;
	mfr_synth_defaults(&o);
	o.difficulty = difficulty;
	float *px_f = malloc(sizeof(float) * (size_t)N * M * NFEAT), *hd = malloc(sizeof(float) * (size_t)N * M * NHAND);
	mfr_synth_face *faces = malloc(sizeof *faces * N);
	static uint8_t px[NPX];
	float lm[10];
	for (int k = 0; k < N; k++) {
		mfr_synth_identity(seed, (uint64_t)k, &o, &faces[k]);
		for (int m = 0; m < M; m++) {
			render(&faces[k], seed, (uint64_t)m, &o, px, lm);
			pixel_feature(px, px_f + ((size_t)k * M + m) * NFEAT);
			hand_feature(px, lm, hd + ((size_t)k * M + m) * NHAND);
		}
	}
	r->pixel = ncm(px_f, N, M, NFEAT);
	standardize(hd, N * M, NHAND);
	r->hand = ncm(hd, N, M, NHAND);
	/* within and nearest-between distances in pixel space */
	double *mu = calloc((size_t)N * NFEAT, sizeof *mu);
	for (int k = 0; k < N; k++)
		for (int m = 0; m < M; m++)
			for (int i = 0; i < NFEAT; i++)
				mu[(size_t)k * NFEAT + i] += px_f[((size_t)k * M + m) * NFEAT + i] / M;
	r->within = r->nearest = 0;
	for (int k = 0; k < N; k++) {
		for (int m = 0; m < M; m++) {
			double d = 0;
			for (int i = 0; i < NFEAT; i++) {
				double t = px_f[((size_t)k * M + m) * NFEAT + i] - mu[(size_t)k * NFEAT + i];
				d += t * t;
			}
			r->within += sqrt(d) / (N * M);
		}
		double nn = -1;
		for (int j = 0; j < N; j++) {
			if (j == k)
				continue;
			double d = 0;
			for (int i = 0; i < NFEAT; i++) {
				double t = mu[(size_t)j * NFEAT + i] - mu[(size_t)k * NFEAT + i];
				d += t * t;
			}
			nn = nn < 0 || d < nn ? d : nn;
		}
		r->nearest += sqrt(nn) / N;
	}
	r->gene_min = -1;
	for (int k = 0; k < N; k++)
		for (int j = k + 1; j < N; j++) {
			double d = 0;
			for (int i = 0; i < MFR_SYNTH_GENES; i++)
				d += (faces[k].gene[i] - faces[j].gene[i]) * (faces[k].gene[i] - faces[j].gene[i]);
			d = sqrt(d);
			r->gene_min = r->gene_min < 0 || d < r->gene_min ? d : r->gene_min;
		}
	free(mu);
	free(px_f);
	free(hd);
	free(faces);
}

/* In a controlled setting (a little pose and light, one plain background)
 * identities differ more than the images of one identity do. */
static void test_identity_vs_image(void)
{
	enum { N = 20, M = 6 };
	mfr_synth_opts o;
	mfr_synth_defaults(&o);
	o.variation = 0.3;
	o.background = MFR_SYNTH_BG_PLAIN;
	static float f[N * M][NFEAT];
	static uint8_t px[NPX];
	for (int k = 0; k < N; k++) {
		mfr_synth_face face;
		mfr_synth_identity(5, (uint64_t)k, &o, &face);
		for (int m = 0; m < M; m++) {
			mfr_synth_var v;
			mfr_synth_vary(&face, 5, (uint64_t)m, &o, &v);
			v.bg_seed = 42; /* the same plain background for all */
			draw(&face, &v, px, NULL);
			pixel_feature(px, f[k * M + m]);
		}
	}
	static double mu[N][NFEAT];
	for (int k = 0; k < N; k++)
		for (int m = 0; m < M; m++)
			for (int i = 0; i < NFEAT; i++)
				mu[k][i] += f[k * M + m][i] / M;
	double within = 0, between = 0;
	for (int k = 0; k < N; k++) {
		for (int m = 0; m < M; m++) {
			double d = 0;
			for (int i = 0; i < NFEAT; i++)
				d += (f[k * M + m][i] - mu[k][i]) * (f[k * M + m][i] - mu[k][i]);
			within += sqrt(d) / (N * M);
		}
		for (int j = 0; j < N; j++)
			if (j != k) {
				double d = 0;
				for (int i = 0; i < NFEAT; i++)
					d += (mu[j][i] - mu[k][i]) * (mu[j][i] - mu[k][i]);
				between += sqrt(d) / (N * (N - 1));
			}
	}
	/* measured: 2795 between, 737 within (in 28x28x3 levels) */
	printf("controlled: mean distance between identity means %.0f, of images to their mean %.0f\n", between,
	       within);
	CHECK(between > 2.5 * within);
}

static void test_difficulty(void)
{
	figures d0, d5, d1;
	measure(0.5, 50, 10, 7, &d5);
	measure(0.0, 30, 8, 8, &d0);
	measure(1.0, 30, 8, 8, &d1);
	printf("difficulty 0.5, 50x10: pixel NCM %.3f, feature NCM %.3f (chance 0.020); within %.0f, "
	       "nearest other mean %.0f; closest genes %.3f\n",
	       d5.pixel, d5.hand, d5.within, d5.nearest, d5.gene_min);
	printf("difficulty 0, 30x8: pixel NCM %.3f, feature NCM %.3f; difficulty 1: %.3f, %.3f (chance 0.033)\n",
	       d0.pixel, d0.hand, d1.pixel, d1.hand);
	/* Pixel matching does not solve it (measured 0.254), yet is well above
	 * chance (0.02). */
	CHECK(d5.pixel < 0.40);
	CHECK(d5.pixel > 0.10);
	/* Identity is in the image: 42 simple features read at the landmarks
	 * do clearly better (measured 0.424). */
	CHECK(d5.hand > d5.pixel + 0.10);
	/* Within-identity variation is comparable to the gap to the closest
	 * other identity (measured 1755 against 865: 2.0x), not negligible and
	 * not overwhelming. */
	CHECK(d5.within > 1.0 * d5.nearest);
	CHECK(d5.within < 4.0 * d5.nearest);
	/* Identities are distinct in their parameters (measured: the closest
	 * two of 50 are 1.87 apart; a gene spans [-0.6, 0.6] at 0.5). */
	CHECK(d5.gene_min > 0.5);
	/* The knob works: harder is harder, on both measures (measured pixel
	 * 0.433 and features 0.633 at 0; 0.096 and 0.125 at 1). */
	CHECK(d0.pixel > d1.pixel + 0.2);
	CHECK(d0.hand > d1.hand + 0.3);
}

int main(void)
{
	test_determinism();
	test_landmarks();
	test_identity_vs_image();
	test_difficulty();
	return check_done();
}
