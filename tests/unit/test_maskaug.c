/* test_maskaug.c — mask augmentation (common/maskaug.h): the choice of
 * records (deterministic, binomially right), the style draw, the pose fit on
 * landmarks of known pose, where masks fall on faces of known geometry (they
 * cover the nose tip and mouth corners and leave the eyes) for every style
 * and the extremes of each shape parameter, determinism, the refusals, and
 * user templates from ../shared/data/masks when present. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "image.h"   /* defines: mfr_arcface_template */
#include "maskaug.h" /* defines: mfr_maskaug_* */
#include "record.h"  /* defines: MFR_STYLE_* */

/* n draws at probability p: within 5 standard deviations (a false alarm
 * about once in 3.5 million runs; the draws are fixed by the seed anyway) */
static int binomial_ok(long k, long n, double p)
{
	double mu = n * p, sd = sqrt(n * p * (1 - p));
	return fabs((double)k - mu) <= 5 * sd + 1;
}

static void test_selection(void)
{
	mfr_maskaug c;
	mfr_maskaug_defaults(&c);
	c.seed = 42;
	const long N = 200000;
	for (int ri = 0; ri < 3; ri++) {
		double r = (double[]){0.15, 0.33, 0.9}[ri];
		c.ratio = r;
		long k = 0;
		for (long id = 0; id < N; id++)
			k += mfr_maskaug_selected(&c, (uint64_t)id * 7919u);
		CHECK(binomial_ok(k, N, r));
	}
	c.ratio = 0;
	int any = 0;
	for (long id = 0; id < 10000; id++)
		any |= mfr_maskaug_selected(&c, (uint64_t)id);
	CHECK(!any);
	c.ratio = 1;
	int all = 1;
	for (long id = 0; id < 10000; id++)
		all &= mfr_maskaug_selected(&c, (uint64_t)id);
	CHECK(all);
	/* a pure function of (seed, id): another seed chooses differently */
	mfr_maskaug d = c;
	c.ratio = d.ratio = 0.5;
	d.seed = 43;
	int same = 0;
	for (long id = 0; id < 1000; id++) {
		CHECK_EQ_INT(mfr_maskaug_selected(&c, (uint64_t)id), mfr_maskaug_selected(&c, (uint64_t)id));
		same += mfr_maskaug_selected(&c, (uint64_t)id) == mfr_maskaug_selected(&d, (uint64_t)id);
	}
	CHECK(same > 400 && same < 600);
	CHECK(mfr_maskaug_derived_id(&c, 5) != 5);
	CHECK(mfr_maskaug_derived_id(&c, 5) != mfr_maskaug_derived_id(&d, 5));
	CHECK(mfr_maskaug_derived_id(&c, 5) == mfr_maskaug_derived_id(&c, 5));
}

static void test_styles(void)
{
	mfr_maskaug c;
	mfr_maskaug_defaults(&c);
	long count[MFR_MASKAUG_STYLES] = {0};
	const long N = 40000;
	for (long id = 0; id < N; id++) {
		mfr_maskaug_params p, q;
		mfr_maskaug_params_for(&c, (uint64_t)id, &p);
		mfr_maskaug_params_for(&c, (uint64_t)id, &q);
		if (memcmp(&p, &q, sizeof p) != 0) {
			CHECK(!"params differ between two calls");
			break;
		}
		count[p.style]++;
		if (p.top < 0 || p.top >= 1 || p.fit < 0 || p.fit >= 1 || p.shift <= -1 || p.shift >= 1) {
			CHECK(!"a shape parameter out of range");
			break;
		}
	}
	CHECK(binomial_ok(count[MFR_STYLE_SURGICAL], N, 0.4));
	CHECK(binomial_ok(count[MFR_STYLE_N95], N, 0.1));
	CHECK(binomial_ok(count[MFR_STYLE_KN95], N, 0.2));
	CHECK(binomial_ok(count[MFR_STYLE_CLOTH], N, 0.3));
	c.weight[MFR_STYLE_SURGICAL] = c.weight[MFR_STYLE_N95] = c.weight[MFR_STYLE_CLOTH] = 0;
	int only = 1;
	for (long id = 0; id < 1000; id++) {
		mfr_maskaug_params p;
		mfr_maskaug_params_for(&c, (uint64_t)id, &p);
		only &= p.style == MFR_STYLE_KN95;
	}
	CHECK(only);

	mfr_error e;
	mfr_maskaug_defaults(&c);
	CHECK(mfr_maskaug_check(&c, &e) == 0);
	c.ratio = 1.5;
	CHECK(mfr_maskaug_check(&c, &e) < 0 && strstr(e.msg, "ratio"));
	mfr_maskaug_defaults(&c);
	c.weight[5] = 1;
	CHECK(mfr_maskaug_check(&c, &e) < 0 && strstr(e.msg, "style 5"));
	mfr_maskaug_defaults(&c);
	c.weight[MFR_STYLE_USER] = 1;
	CHECK(mfr_maskaug_check(&c, &e) < 0 && strstr(e.msg, "no templates"));
	mfr_maskaug_defaults(&c);
	for (int i = 0; i < MFR_MASKAUG_STYLES; i++)
		c.weight[i] = 0;
	CHECK(mfr_maskaug_check(&c, &e) < 0 && strstr(e.msg, "zero"));
	CHECK(mfr_maskaug_style_code("kn95") == MFR_STYLE_KN95);
	CHECK(mfr_maskaug_style_code("gas") == -1);
	CHECK(!strcmp(mfr_maskaug_style_name(MFR_STYLE_CLOTH), "cloth"));
}

/* lm = the ArcFace template under a similarity: rotation a (radians),
 * scale k, then shift (dx, dy). */
static void similar(float lm[10], double a, double k, double dx, double dy)
{
	double c = cos(a) * k, s = sin(a) * k;
	for (int i = 0; i < 5; i++) {
		double x = mfr_arcface_template[2 * i] - 56, y = mfr_arcface_template[2 * i + 1] - 56;
		lm[2 * i] = (float)(c * x - s * y + 56 * k + dx);
		lm[2 * i + 1] = (float)(s * x + c * y + 56 * k + dy);
	}
}

static void test_pose(void)
{
	mfr_maskaug_info in;
	mfr_error e;
	CHECK(mfr_maskaug_pose(NULL, &in, &e) == 0);
	CHECK_NEAR(in.yaw, 0, 1.5);
	CHECK_NEAR(in.pitch, 0, 1.5);
	CHECK_NEAR(in.roll, 0, 0.5);
	CHECK_NEAR(in.scale, 1, 0.03);
	float lm[10];
	similar(lm, 20 * M_PI / 180, 3, 40, -10);
	CHECK(mfr_maskaug_pose(lm, &in, &e) == 0);
	CHECK_NEAR(in.roll, 20, 0.5);
	CHECK_NEAR(in.yaw, 0, 1.5);
	CHECK_NEAR(in.scale, 3, 0.1);
	/* nose moved toward image right: the face turned right (yaw > 0);
	 * nose moved up toward the eyes: chin up (pitch > 0) */
	memcpy(lm, mfr_arcface_template, sizeof lm);
	lm[4] += 6;
	CHECK(mfr_maskaug_pose(lm, &in, &e) == 0);
	CHECK(in.yaw > 10 && in.yaw < 40);
	memcpy(lm, mfr_arcface_template, sizeof lm);
	lm[5] -= 4;
	CHECK(mfr_maskaug_pose(lm, &in, &e) == 0);
	CHECK(in.pitch > 5 && in.pitch < 40);
	/* refusals */
	memcpy(lm, mfr_arcface_template, sizeof lm);
	lm[3] = NAN;
	CHECK(mfr_maskaug_pose(lm, &in, &e) < 0 && strstr(e.msg, "not a finite"));
	memcpy(lm, mfr_arcface_template, sizeof lm);
	lm[2] = lm[0] + 1, lm[3] = lm[1];
	CHECK(mfr_maskaug_pose(lm, &in, &e) < 0 && strstr(e.msg, "eyes"));
	memcpy(lm, mfr_arcface_template, sizeof lm);
	for (int i = 0; i < 5; i++)
		lm[2 * i] = 112 - lm[2 * i]; /* mirrored: left and right swapped */
	CHECK(mfr_maskaug_pose(lm, &in, &e) < 0 && strstr(e.msg, "swapped"));
}

static float alpha_at(const uint8_t *a, int w, float x, float y)
{
	return a[(int)(y + 0.5f) * w + (int)(x + 0.5f)] / 255.0f;
}

/* Draws p on a flat grey face of w x w with landmarks lm (NULL: template)
 * and checks: nose tip and both mouth corners covered; both eyes and the
 * skin `below` px (at 112) under their centres not covered (a lower eyelid
 * is about 3 px under the centre at 112x112); coverage plausible. */
static int covers_right(const mfr_maskaug *c, const mfr_maskaug_params *p, int w, const float *lm, float below,
			const char *what)
{
	uint8_t *img = malloc((size_t)w * w * 3), *a = malloc((size_t)w * w);
	memset(img, 150, (size_t)w * w * 3);
	mfr_maskaug_info in;
	mfr_error e = {{0}};
	memset(&in, 0, sizeof in);
	int ok = mfr_maskaug_draw(c, p, img, w, w, lm, a, &in, &e) == 0;
	const float *L = lm ? lm : mfr_arcface_template;
	float k = lm ? (float)w / 112 : 1;
	if (ok) {
		ok &= alpha_at(a, w, L[4], L[5]) > 0.95f;
		ok &= alpha_at(a, w, L[6], L[7]) > 0.95f && alpha_at(a, w, L[8], L[9]) > 0.95f;
		ok &= alpha_at(a, w, L[0], L[1]) == 0 && alpha_at(a, w, L[2], L[3]) == 0;
		ok &= alpha_at(a, w, L[0], L[1] + below * k) == 0 && alpha_at(a, w, L[2], L[3] + below * k) == 0;
		ok &= in.coverage > 0.1f && in.coverage < 0.5f;
	}
	if (!ok)
		fprintf(stderr, "    %s: style %d top %.1f bottom %.1f width %.1f fit %.1f: %s (coverage %.3f) "
			"nose %.2f mouth %.2f/%.2f eyes %.2f/%.2f\n", what, p->style, p->top, p->bottom, p->width,
			p->fit, e.msg, in.coverage, alpha_at(a, w, L[4], L[5]), alpha_at(a, w, L[6], L[7]),
			alpha_at(a, w, L[8], L[9]), alpha_at(a, w, L[0], L[1]), alpha_at(a, w, L[2], L[3]));
	free(img);
	free(a);
	return ok;
}

static void test_geometry(void)
{
	mfr_maskaug c;
	mfr_maskaug_defaults(&c);
	int bad = 0, n = 0;
	for (int style = MFR_STYLE_SURGICAL; style <= MFR_STYLE_CLOTH; style++)
		for (int corner = 0; corner < 16; corner++) {
			mfr_maskaug_params p = {.style = style, .pattern = corner % 3, .key = (uint64_t)corner};
			p.top = (float)(corner & 1), p.bottom = (float)(corner >> 1 & 1);
			p.width = (float)(corner >> 2 & 1), p.fit = (float)(corner >> 3 & 1);
			p.shift = corner & 1 ? 1 : -1;
			bad += !covers_right(&c, &p, 112, NULL, 4, "aligned 112");
			float lm[10];
			/* an unaligned 300x300 photo, the face rotated and off-centre */
			similar(lm, (corner - 8) * 0.05, 2.2, 20, 5);
			bad += !covers_right(&c, &p, 300, lm, 4, "unaligned 300");
			n += 2;
		}
	CHECK_EQ_INT(bad, 0);
	CHECK(n == 128);
}

static void test_determinism_and_errors(void)
{
	mfr_maskaug c;
	mfr_maskaug_defaults(&c);
	c.seed = 9;
	uint8_t *a = malloc(112 * 112 * 3), *b = malloc(112 * 112 * 3), *o = malloc(112 * 112 * 3);
	for (int i = 0; i < 112 * 112 * 3; i++)
		o[i] = (uint8_t)(i * 7 % 251);
	mfr_error e;
	int diff_ids = 0;
	for (uint64_t id = 0; id < 20; id++) {
		memcpy(a, o, 112 * 112 * 3);
		memcpy(b, o, 112 * 112 * 3);
		CHECK(mfr_maskaug_apply(&c, a, 112, 112, NULL, id, NULL, &e) == 0);
		CHECK(mfr_maskaug_apply(&c, b, 112, 112, NULL, id, NULL, &e) == 0);
		CHECK(memcmp(a, b, 112 * 112 * 3) == 0);
		CHECK(memcmp(a, o, 112 * 112 * 3) != 0);
		memcpy(b, o, 112 * 112 * 3);
		CHECK(mfr_maskaug_apply(&c, b, 112, 112, NULL, id + 100, NULL, &e) == 0);
		diff_ids += memcmp(a, b, 112 * 112 * 3) != 0;
	}
	CHECK_EQ_INT(diff_ids, 20);
	/* refusals leave the pixels untouched */
	memcpy(a, o, 112 * 112 * 3);
	CHECK(mfr_maskaug_apply(&c, a, 100, 100, NULL, 1, NULL, &e) < 0 && strstr(e.msg, "without landmarks"));
	CHECK(mfr_maskaug_apply(&c, a, 8, 8, mfr_arcface_template, 1, NULL, &e) < 0 && strstr(e.msg, "not a face crop"));
	float lm[10];
	memcpy(lm, mfr_arcface_template, sizeof lm);
	lm[2] = lm[0], lm[3] = lm[1];
	CHECK(mfr_maskaug_apply(&c, a, 112, 112, lm, 1, NULL, &e) < 0 && strstr(e.msg, "eyes"));
	similar(lm, 0, 1, 5000, 0);
	CHECK(mfr_maskaug_apply(&c, a, 112, 112, lm, 1, NULL, &e) < 0 && strstr(e.msg, "outside"));
	CHECK(memcmp(a, o, 112 * 112 * 3) == 0);
	mfr_maskaug_params p = {.style = 7};
	CHECK(mfr_maskaug_draw(&c, &p, a, 112, 112, NULL, NULL, NULL, &e) < 0 && strstr(e.msg, "style 7"));
	p.style = MFR_STYLE_USER;
	CHECK(mfr_maskaug_draw(&c, &p, a, 112, 112, NULL, NULL, NULL, &e) < 0 && strstr(e.msg, "not loaded"));
	free(a);
	free(b);
	free(o);
}

static void test_templates(void)
{
	mfr_error e;
	/* a damaged configuration names its line */
	const char *bad = "/tmp/test_maskaug_bad.cfg";
	FILE *f = fopen(bad, "w");
	fprintf(f, "[x]\ntemplate: x.png\nmask_a: 1, 2\nmask_b 3 4\n");
	fclose(f);
	CHECK(mfr_mask_templates_load(bad, &e) == NULL && strstr(e.msg, "line 4"));
	f = fopen(bad, "w");
	fprintf(f, "[x]\ntemplate: x.png\nmask_a: 1, 2\n");
	fclose(f);
	CHECK(mfr_mask_templates_load(bad, &e) == NULL && strstr(e.msg, "lacks"));
	remove(bad);
	CHECK(mfr_mask_templates_load("/nonexistent/masks.cfg", &e) == NULL && strstr(e.msg, "cannot open"));
	CHECK(mfr_mask_templates_load("/etc/hostname", &e) == NULL && strstr(e.msg, "not a MaskTheFace"));

	const char *data = check_data_dir("user templates");
	if (!data)
		return;
	char path[4096];
	mfr_maskaug c;
	mfr_maskaug_defaults(&c);
	if (snprintf(path, sizeof path, "%s/masks/maskthe_face/masks.cfg", data) >= (int)sizeof path)
		return;
	mfr_mask_templates *T = mfr_mask_templates_load(path, &e);
	CHECK(T != NULL);
	if (T) {
		CHECK_EQ_INT(mfr_mask_templates_count(T), 7); /* surgical x3 colours, N95, KN95, cloth, gas */
		c.templates = T;
		int bad_n = 0;
		for (int i = 0; i < mfr_mask_templates_count(T); i++) {
			if (!strcmp(mfr_mask_templates_name(T, i), "gas"))
				continue; /* a gas mask covers the eyes by design */
			mfr_maskaug_params p = {.style = MFR_STYLE_USER, .tmpl = i};
			bad_n += !covers_right(&c, &p, 112, NULL, 1, mfr_mask_templates_name(T, i));
		}
		CHECK_EQ_INT(bad_n, 0);
		mfr_mask_templates_free(T);
	} else {
		fprintf(stderr, "    %s\n", e.msg);
	}
	if (snprintf(path, sizeof path, "%s/masks/fma3d_uv", data) >= (int)sizeof path)
		return;
	T = mfr_mask_templates_load(path, &e);
	CHECK(T != NULL);
	if (T) {
		CHECK_EQ_INT(mfr_mask_templates_count(T), 8);
		c.templates = T;
		int bad_n = 0;
		for (int i = 0; i < mfr_mask_templates_count(T); i++) {
			mfr_maskaug_params p = {.style = MFR_STYLE_USER, .tmpl = i};
			bad_n += !covers_right(&c, &p, 112, NULL, 1, mfr_mask_templates_name(T, i));
		}
		CHECK_EQ_INT(bad_n, 0);
		mfr_mask_templates_free(T);
	} else {
		fprintf(stderr, "    %s\n", e.msg);
	}
}

int main(void)
{
	test_selection();
	test_styles();
	test_pose();
	test_geometry();
	test_determinism_and_errors();
	test_templates();
	return check_done();
}
