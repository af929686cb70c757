/* synth.c — the procedural face renderer behind synth.h.
 *
 * A face is modelled in "model pixels" (x right, y down, z toward the camera,
 * origin near the face centre, eyes near y = -10): features are 3D points on
 * an ellipsoidal face surface, each with a tangent frame. A pose rotates the
 * points and frames, an orthographic projection flattens them, and a 2D
 * similarity maps them into the 112x112 crop (fitted to the ArcFace template
 * as an aligner would). Every shape is an implicit function f(s,t) < 0 in its
 * feature's local frame; coverage comes from f and its finite-difference
 * gradient in pixel space (a first-order signed distance), which anti-aliases
 * edges in one sample per pixel; large shapes are done in 4x4 tiles, most of
 * them wholly inside or outside. Shapes are composited in painter's order
 * (layers that the face or hair will cover skip those pixels), the head is
 * shaded by a light on an ellipsoid normal, and a camera stage adds blur,
 * colour cast and noise.
 *
 * Determinism: random numbers come only from mfr_rng seeded by mfr_hash2;
 * float code uses + - * / and sqrtf, which IEEE 754 rounds exactly, plus the
 * polynomial sine below instead of libm's (whose last bit differs between
 * C libraries). FP contraction into FMA would change results with the
 * target, so it is off (GCC already does so under -std=c11).
 *
 * It is not a 3D renderer: there is no occlusion between features, and the
 * silhouette is a 2D outline driven by projected points.
 */
#if defined(__clang__)
#pragma STDC FP_CONTRACT OFF
#endif

#include "synth.h" /* defines: mfr_synth_face, mfr_synth_opts, mfr_synth_var, mfr_synth_* */

#include <math.h> /* sqrtf, floorf, fabsf: exactly rounded everywhere */
#include <stdlib.h>

#define S MFR_SYNTH_SIZE

/* Stream domains: XORed into the seed so identities, outliers and images
 * draw from unrelated sequences. The values are arbitrary odd constants. */
#define DOMAIN_IDENTITY 0x1d3a5f7c9b2e4061ull
#define DOMAIN_OUTLIER 0x6b8d0f2a4c6e8193ull
#define DOMAIN_IMAGE 0x35c7e9a1b3d5f7e9ull

/* insightface's arcface_dst (the same numbers as mfr_arcface_template, kept
 * here so the renderer needs only util.c). */
static const float arcface[10] = {38.2946f, 51.6963f, 73.5318f, 51.5014f, 56.0252f,
				  71.7366f, 41.5493f, 92.3655f, 70.7299f, 92.2041f};

/* ---- platform-stable math ---- */

#define PI 3.14159265358979323846

/* sin by reduction to [-pi/2, pi/2] and its Taylor series to x^13 (error
 * below 1e-9 there, far under float resolution). */
static double syn_sin(double x)
{
	x -= 2.0 * PI * floor(x / (2.0 * PI) + 0.5);
	if (x > PI / 2)
		x = PI - x;
	else if (x < -PI / 2)
		x = -PI - x;
	double x2 = x * x;
	return x * (1 + x2 * (-1.0 / 6 + x2 * (1.0 / 120 + x2 * (-1.0 / 5040 + x2 * (1.0 / 362880 +
	       x2 * (-1.0 / 39916800 + x2 * (1.0 / 6227020800.0)))))));
}
static double syn_cos(double x) { return syn_sin(x + PI / 2); }

static float clampf(float x, float lo, float hi) { return x < lo ? lo : x > hi ? hi : x; }
static float lerpf(float a, float b, float t) { return a + (b - a) * t; }
static float deg(float d) { return d * (float)(PI / 180.0); }

/* Triangular deviate on (-1, 1): a bounded bell with standard deviation
 * 0.41, used instead of a normal (which would need libm's log). */
static float tri(mfr_rng *r) { return (float)(mfr_rng_uniform(r) + mfr_rng_uniform(r) - 1.0); }
static float uni(mfr_rng *r) { return (float)mfr_rng_uniform(r); }
static float uni2(mfr_rng *r) { return (float)(2.0 * mfr_rng_uniform(r) - 1.0); }

/* A 32-bit hash of (key, i) for per-pixel noise (Chris Wellons'
 * "lowbias32" finaliser): cheap, and plenty for grain. */
static uint32_t hash32(uint32_t key, uint32_t i)
{
	uint32_t x = key ^ (i * 0x9e3779b9u);
	x ^= x >> 16;
	x *= 0x7feb352du;
	x ^= x >> 15;
	x *= 0x846ca68bu;
	return x ^ (x >> 16);
}

/* floor for |x| < 2^31; floorf is a libm call on baseline x86-64. */
static int ifloor(float x)
{
	int i = (int)x;
	return i - (x < (float)i);
}

typedef struct {
	float r, g, b;
} rgb;

static rgb mkrgb(float r, float g, float b) { rgb c = {r, g, b}; return c; }
static rgb scale3(rgb c, float k) { return mkrgb(c.r * k, c.g * k, c.b * k); }
static rgb mul3(rgb c, rgb k) { return mkrgb(c.r * k.r, c.g * k.g, c.b * k.b); }
static rgb mix3(rgb a, rgb b, float t) { return mkrgb(lerpf(a.r, b.r, t), lerpf(a.g, b.g, t), lerpf(a.b, b.b, t)); }

/* Piecewise-linear palette lookup, t in [0,1] over n entries. */
static rgb palette(const rgb *p, int n, float t)
{
	t = clampf(t, 0, 1) * (float)(n - 1);
	int i = (int)t;
	if (i >= n - 1)
		return p[n - 1];
	return mix3(p[i], p[i + 1], t - (float)i);
}

/* ---- genes ---- */

enum {
	G_FACE_W, G_FACE_LEN, G_JAW, G_CHEEK, G_EYE_SEP, G_EYE_Y, G_EYE_SIZE, G_EYE_OPEN,
	G_EYE_TILT, G_EYE_ROUND, G_IRIS_TONE, G_IRIS_HUE, G_BROW_THICK, G_BROW_ARCH, G_BROW_TILT,
	G_BROW_GAP, G_BROW_LEN, G_NOSE_LEN, G_NOSE_W, G_NOSE_PROJ, G_MOUTH_W, G_MOUTH_Y,
	G_MOUTH_CURVE, G_LIP_UP, G_LIP_LO, G_LIP_TONE, G_SKIN_L, G_SKIN_UNDER, G_SKIN_RED,
	G_HAIR_L, G_HAIR_RED, G_HAIR_GREY, G_HAIRLINE, G_HAIR_STYLE, G_HAIR_VOL, G_HAIR_PART,
	G_RECEDE, G_BEARD, G_BEARD_KIND, G_BEARD_DENS, G_EAR_SIZE, G_EAR_Y, G_GLASSES,
	G_GLASS_STYLE, G_MOLE, G_MOLE_X, G_MOLE_Y, G_FOLDS, G_HAIR_CURVE,
	G_COUNT
};
_Static_assert(G_COUNT <= MFR_SYNTH_GENES, "gene table larger than mfr_synth_face");

/* Genes that pick a category or a population share (skin and hair
 * lightness) are uniform on [-1,1]; shape genes are triangular. */
static int gene_uniform(int g)
{
	switch (g) {
	case G_SKIN_L: case G_HAIR_L: case G_HAIR_STYLE: case G_BEARD: case G_BEARD_KIND:
	case G_GLASSES: case G_GLASS_STYLE: case G_MOLE: case G_MOLE_X: case G_MOLE_Y:
	case G_HAIR_RED: case G_HAIR_GREY: case G_IRIS_HUE:
		return 1;
	}
	return 0;
}
/* Categorical genes shrink more slowly with difficulty than shape genes, so
 * hard populations still have some beards and hairstyles. */
static int gene_categorical(int g)
{
	return g == G_HAIR_STYLE || g == G_BEARD || g == G_BEARD_KIND || g == G_GLASSES ||
	       g == G_GLASS_STYLE || g == G_MOLE;
}

static void make_face(uint64_t stream, const mfr_synth_opts *o, mfr_synth_face *f)
{
	mfr_rng r = {stream};
	double d = o->difficulty < 0 ? 0 : o->difficulty > 1 ? 1 : o->difficulty;
	float sp = (float)(1.0 - 0.8 * d), spc = (float)(1.0 - 0.5 * d);
	f->key = mfr_rng_next(&r);
	for (int g = 0; g < MFR_SYNTH_GENES; g++) {
		float u = gene_uniform(g) ? uni2(&r) : tri(&r);
		f->gene[g] = g >= G_COUNT ? 0.0f : u * (gene_categorical(g) ? spc : sp);
	}
}

void mfr_synth_defaults(mfr_synth_opts *o)
{
	o->difficulty = 0.5;
	o->variation = 1.0;
	o->align = 1;
	o->background = MFR_SYNTH_BG_RANDOM;
}

void mfr_synth_identity(uint64_t seed, uint64_t index, const mfr_synth_opts *o, mfr_synth_face *f)
{
	make_face(mfr_hash2(seed ^ DOMAIN_IDENTITY, index), o, f);
}

void mfr_synth_outlier(uint64_t seed, uint64_t n, const mfr_synth_opts *o, mfr_synth_face *f)
{
	make_face(mfr_hash2(seed ^ DOMAIN_OUTLIER, n), o, f);
}

/* ---- per-image conditions ---- */

void mfr_synth_vary(const mfr_synth_face *f, uint64_t seed, uint64_t image, const mfr_synth_opts *o,
		    mfr_synth_var *v)
{
	mfr_rng r = {mfr_hash2(mfr_hash2(seed ^ DOMAIN_IMAGE, f->key), image)};
	float k = (float)(o->variation < 0 ? 0 : o->variation > 2 ? 2 : o->variation);
	/* Every draw happens whatever k is, so the stream stays aligned. */
	v->yaw = k * deg(25) * tri(&r);
	v->pitch = k * deg(12) * tri(&r);
	v->roll = k * deg(10) * tri(&r);
	float u = uni(&r);
	v->smile = u < 0.45f ? 0.0f : clampf(k * (u - 0.45f) / 0.55f * 1.1f, 0, 1);
	u = uni(&r);
	v->mouth_open = u < 0.7f ? 0.0f : clampf(k * (u - 0.7f) / 0.3f, 0, 1);
	v->brow_raise = clampf(k * 0.6f * tri(&r), -1, 1);
	u = uni(&r);
	v->eye_close = clampf(k * (u < 0.06f ? 0.6f + u / 0.06f * 0.4f : 0.25f * uni(&r)), 0, 1);
	v->gaze_x = k * 0.5f * tri(&r);
	v->gaze_y = k * 0.4f * tri(&r);
	v->light_az = k * deg(65) * tri(&r);
	v->light_el = deg(25) + k * deg(25) * tri(&r);
	v->light_diffuse = 0.55f + k * 0.25f * tri(&r);
	v->light_ambient = 1.0f - 0.8f * v->light_diffuse;
	v->exposure = 1.0f + k * 0.22f * tri(&r);
	float warm = k * 0.09f * tri(&r), tint = k * 0.04f * tri(&r);
	v->wb[0] = 1.0f + warm;
	v->wb[1] = 1.0f + tint;
	v->wb[2] = 1.0f - warm;
	v->saturation = 1.0f + k * 0.3f * tri(&r);
	v->contrast = 1.0f + k * 0.18f * tri(&r);
	u = uni(&r);
	v->blur = u < 0.3f ? 0.0f : k * 1.3f * (u - 0.3f) / 0.7f;
	u = uni(&r);
	v->noise = k * 0.022f * u * u; /* mostly clean, sometimes grainy */
	v->jitter_rot = k * deg(3) * tri(&r);
	v->jitter_scale = k * 0.05f * tri(&r);
	v->jitter_x = k * 2.0f * tri(&r);
	v->jitter_y = k * 2.0f * tri(&r);
	v->tan = k * tri(&r);
	v->hair_volume = k * tri(&r);
	for (int c = 0; c < 3; c++)
		v->cloth[c] = 0.1f + 0.8f * uni(&r);
	v->glasses = uni(&r) < 0.75f;
	int bg = (int)mfr_rng_below(&r, 3);
	v->background = o->background >= 0 && o->background <= 2 ? o->background : bg;
	v->align = o->align;
	v->bg_seed = mfr_rng_next(&r);
	v->noise_seed = mfr_rng_next(&r);
}

/* ---- physical parameters of a face ---- */

typedef struct {
	/* geometry in model pixels */
	float face_w, top, yw, chin_y, jaw;
	float eye_x, eye_y, eye_a, eye_hu, eye_hl, eye_tilt, eye_round, iris_r;
	float brow_gap, brow_a, brow_th, brow_arch, brow_tilt;
	float nose_y, nose_w, nose_proj;
	float mouth_y, mouth_a, mouth_curve, lip_up, lip_lo;
	float ear_a, ear_b, ear_y;
	float hairline, hair_vol, hair_part, recede, hair_curve;
	int hair_style; /* HAIR_* */
	int beard;      /* BEARD_* */
	float beard_dens;
	int glasses, glass_round;
	float glass_th;
	int mole;
	float mole_x, mole_y, folds, ruddy, socket;
	rgb skin, lip, hair, brow, iris, glass;
} face_p;

enum { HAIR_BALD, HAIR_BUZZ, HAIR_SHORT, HAIR_MEDIUM, HAIR_LONG, HAIR_BANGS };
enum { BEARD_NONE, BEARD_STUBBLE, BEARD_MOUSTACHE, BEARD_GOATEE, BEARD_FULL };

/* Skin tones from very dark to very light (sRGB, 0..1), roughly the range of
 * photographed skin under neutral light. */
static const rgb skin_pal[7] = {
	{0.25f, 0.16f, 0.11f}, {0.40f, 0.25f, 0.17f}, {0.56f, 0.37f, 0.25f}, {0.70f, 0.50f, 0.37f},
	{0.80f, 0.62f, 0.50f}, {0.88f, 0.72f, 0.62f}, {0.95f, 0.82f, 0.74f},
};
/* Natural hair from black to light blond. */
static const rgb hair_pal[6] = {
	{0.06f, 0.05f, 0.05f}, {0.17f, 0.11f, 0.08f}, {0.32f, 0.21f, 0.13f},
	{0.49f, 0.35f, 0.22f}, {0.67f, 0.53f, 0.34f}, {0.85f, 0.74f, 0.52f},
};
/* Irises: dark brown, brown, hazel, green, grey, blue. */
static const rgb iris_pal[6] = {
	{0.20f, 0.11f, 0.06f}, {0.36f, 0.21f, 0.10f}, {0.45f, 0.36f, 0.18f},
	{0.33f, 0.42f, 0.25f}, {0.42f, 0.47f, 0.50f}, {0.28f, 0.45f, 0.62f},
};

static void decode(const mfr_synth_face *f, const mfr_synth_var *v, face_p *p)
{
	const float *g = f->gene;
	p->face_w = 40.5f + 7.0f * g[G_FACE_W];
	p->yw = 1.0f + 6.0f * g[G_CHEEK];
	p->top = -64.0f;
	p->jaw = g[G_JAW];
	p->eye_x = 17.6f + 3.5f * g[G_EYE_SEP];
	p->eye_y = -10.4f + 4.0f * g[G_EYE_Y];
	p->eye_a = 7.4f + 1.8f * g[G_EYE_SIZE];
	float open = 1.0f + 0.6f * g[G_EYE_OPEN];
	p->eye_hu = 0.44f * p->eye_a * open;
	p->eye_hl = 0.28f * p->eye_a * open;
	p->eye_tilt = deg(12) * g[G_EYE_TILT];
	p->eye_round = clampf(0.5f + g[G_EYE_ROUND], 0, 1);
	p->iris_r = 0.45f * p->eye_a;
	p->brow_gap = 9.0f + 3.5f * g[G_BROW_GAP];
	p->brow_a = 10.0f + 3.0f * g[G_BROW_LEN];
	p->brow_th = 3.0f + 2.0f * g[G_BROW_THICK];
	p->brow_arch = 1.6f + 2.5f * g[G_BROW_ARCH];
	p->brow_tilt = deg(14) * g[G_BROW_TILT];
	p->nose_y = 9.7f + 5.0f * g[G_NOSE_LEN];
	p->nose_w = 8.0f + 3.2f * g[G_NOSE_W];
	p->nose_proj = 14.0f + 7.0f * g[G_NOSE_PROJ];
	p->mouth_y = 30.4f + 4.5f * g[G_MOUTH_Y];
	p->mouth_a = 14.4f + 3.8f * g[G_MOUTH_W];
	p->mouth_curve = 0.4f + 1.8f * g[G_MOUTH_CURVE];
	p->lip_up = 2.7f + 1.8f * g[G_LIP_UP];
	p->lip_lo = 3.6f + 2.2f * g[G_LIP_LO];
	p->chin_y = p->mouth_y + 18.0f + 7.0f * g[G_FACE_LEN];
	p->ear_a = 6.5f + 2.0f * g[G_EAR_SIZE];
	p->ear_b = 13.5f + 3.5f * g[G_EAR_SIZE];
	p->ear_y = -1.0f + 5.0f * g[G_EAR_Y];
	p->hairline = -46.0f + 11.0f * g[G_HAIRLINE];
	p->hair_vol = 5.0f + 4.0f * g[G_HAIR_VOL] + 1.5f * v->hair_volume;
	p->hair_part = g[G_HAIR_PART];
	p->recede = clampf(g[G_RECEDE] * 1.5f, 0, 1);
	p->hair_curve = 8.0f + 7.0f * g[G_HAIR_CURVE];
	float hs = g[G_HAIR_STYLE];
	/* categories from one gene; at the default difficulty (genes within
	 * +-0.75) about 5% bald, 12% buzz cut, 47% short, 17% medium, 13% long,
	 * 7% fringe; beards 20%, glasses and moles 10% */
	p->hair_style = hs < -0.68f ? HAIR_BALD : hs < -0.5f ? HAIR_BUZZ : hs < 0.2f ? HAIR_SHORT
		      : hs < 0.45f ? HAIR_MEDIUM : hs < 0.65f ? HAIR_LONG : HAIR_BANGS;
	int bk = (int)((g[G_BEARD_KIND] + 1.0f) * 2.0f);
	p->beard = g[G_BEARD] > 0.45f ? BEARD_STUBBLE + (bk > 3 ? 3 : bk) : BEARD_NONE;
	p->beard_dens = 0.75f + 0.25f * g[G_BEARD_DENS];
	p->glasses = g[G_GLASSES] > 0.6f && v->glasses;
	p->glass_round = g[G_GLASS_STYLE] > 0.2f;
	p->glass_th = 1.2f + 0.5f * g[G_GLASS_STYLE];
	p->mole = g[G_MOLE] > 0.6f;
	p->mole_x = 26.0f * g[G_MOLE_X];
	p->mole_y = 12.0f + 18.0f * g[G_MOLE_Y];
	p->folds = clampf(0.5f + g[G_FOLDS], 0, 1);
	p->ruddy = clampf(0.4f + 0.6f * g[G_SKIN_RED], 0, 1);
	p->socket = clampf(0.5f + g[G_FOLDS] * 0.5f + g[G_BROW_GAP] * 0.3f, 0, 1);

	/* Colours. Skin lightness is uniform over the palette; hair and eyes
	 * follow it as they do in people (dark skin, dark hair and eyes). */
	float L = 0.5f + 0.5f * g[G_SKIN_L] + 0.04f * v->tan;
	rgb skin = palette(skin_pal, 7, L);
	float ut = g[G_SKIN_UNDER];
	skin.r += 0.025f * ut;
	skin.g -= 0.01f * ut;
	skin.b += 0.02f * ut;
	p->skin = skin;
	rgb lipc = mul3(skin, mkrgb(0.86f, 0.62f, 0.62f));
	p->lip = mix3(lipc, mkrgb(0.70f, 0.30f, 0.32f), clampf(0.25f + 0.2f * g[G_LIP_TONE], 0, 1) * L);
	float hl = 0.5f + 0.5f * g[G_HAIR_L];
	float hmax = 0.22f + 1.1f * L;
	hl = hl * (hmax < 1 ? hmax : 1);
	rgb hair = palette(hair_pal, 6, hl);
	if (g[G_HAIR_RED] > 0.55f && L > 0.55f)
		hair = mix3(hair, mkrgb(0.55f, 0.22f, 0.09f), 0.7f);
	float grey = clampf((g[G_HAIR_GREY] - 0.5f) * 2.0f, 0, 1);
	hair = mix3(hair, mkrgb(0.62f, 0.61f, 0.60f), grey * 0.9f);
	p->hair = hair;
	p->brow = mix3(scale3(hair, 0.75f), skin, 0.18f + 0.3f * hl * hl);
	float it = 0.5f + 0.5f * g[G_IRIS_TONE];
	if (L > 0.6f && g[G_IRIS_HUE] > -0.2f)
		p->iris = palette(iris_pal, 6, 0.4f + 0.6f * (0.5f + 0.5f * g[G_IRIS_HUE]));
	else
		p->iris = palette(iris_pal, 6, it * 0.45f);
	float gs = g[G_GLASS_STYLE];
	p->glass = gs > 0.5f ? mkrgb(0.55f, 0.55f, 0.58f) : gs > -0.2f ? mkrgb(0.08f, 0.07f, 0.07f)
							     : mkrgb(0.30f, 0.18f, 0.10f);
}

/* ---- geometry: pose, frames, similarity ---- */

typedef struct {
	float x, y, z;
} v3;

typedef struct {
	float cy, sy, cp, sp; /* cos/sin of yaw and pitch */
} rotm;

/* Pitch about x, then yaw about y. */
static v3 rot3(const rotm *R, v3 p)
{
	float y1 = p.y * R->cp - p.z * R->sp, z1 = p.y * R->sp + p.z * R->cp;
	v3 o = {p.x * R->cy + z1 * R->sy, y1, -p.x * R->sy + z1 * R->cy};
	return o;
}

/* A similarity from the posed (projected) frame to pixels:
 * x' = a x - b y + tx, y' = b x + a y + ty. */
typedef struct {
	float a, b, tx, ty;
} sim2;

static void sim_apply(const sim2 *M, float x, float y, float *ox, float *oy)
{
	*ox = M->a * x - M->b * y + M->tx;
	*oy = M->b * x + M->a * y + M->ty;
}

/* Least-squares similarity taking n points src to dst (Umeyama in 2D,
 * written as complex least squares: never a reflection). */
static sim2 fit_sim(const float *src, const float *dst, int n)
{
	double mx = 0, my = 0, nx = 0, ny = 0, sa = 0, sb = 0, ss = 0;
	for (int i = 0; i < n; i++) {
		mx += src[2 * i], my += src[2 * i + 1], nx += dst[2 * i], ny += dst[2 * i + 1];
	}
	mx /= n, my /= n, nx /= n, ny /= n;
	for (int i = 0; i < n; i++) {
		double px = src[2 * i] - mx, py = src[2 * i + 1] - my;
		double qx = dst[2 * i] - nx, qy = dst[2 * i + 1] - ny;
		sa += px * qx + py * qy;
		sb += px * qy - py * qx;
		ss += px * px + py * py;
	}
	sim2 M;
	double a = sa / ss, b = sb / ss;
	M.a = (float)a;
	M.b = (float)b;
	M.tx = (float)(nx - (a * mx - b * my));
	M.ty = (float)(ny - (b * mx + a * my));
	return M;
}

/* (rotation by ang, scaling by k, both about (cx,cy), then a shift) after M. */
static sim2 sim_around(const sim2 *M, float ang, float k, float cx, float cy, float dx, float dy)
{
	float c = (float)syn_cos(ang) * k, s = (float)syn_sin(ang) * k;
	sim2 o;
	o.a = c * M->a - s * M->b;
	o.b = s * M->a + c * M->b;
	float tx = M->tx - cx, ty = M->ty - cy;
	o.tx = c * tx - s * ty + cx + dx;
	o.ty = s * tx + c * ty + cy + dy;
	return o;
}

/* A local frame in pixels: a point (s,t) is at o + s*u + t*v. */
typedef struct {
	float ox, oy, ux, uy, vx, vy;
} frame;

/* Radii of the ellipsoid whose normals tilt the feature frames. */
#define FACE_RX 48.0f
#define FACE_RY 76.0f
#define FACE_RZ 44.0f

/* Depth of the face surface at (x, y). */
static float surf_z(float x, float y)
{
	float k = 1.0f - (x * x) / (FACE_RX * FACE_RX) - (y * y) / (FACE_RY * FACE_RY);
	return FACE_RZ * sqrtf(k > 0.05f ? k : 0.05f);
}

typedef struct {
	rotm R;
	sim2 M; /* posed -> pixels */
} view;

/* Frame of a feature at 3D point P: s along the surface horizontally
 * (outward when side < 0 mirrors it), t down the surface, both unit model
 * pixels; (c, s_) rotates it in the tangent plane (outer end up for s_ < 0). */
static frame feat_frame(const view *V, v3 P, float side, float c, float s_)
{
	float nx = P.x / (FACE_RX * FACE_RX), ny = P.y / (FACE_RY * FACE_RY), nz = P.z / (FACE_RZ * FACE_RZ);
	float nn = sqrtf(nx * nx + ny * ny + nz * nz);
	nx /= nn, ny /= nn, nz /= nn;
	float ul = sqrtf(nz * nz + nx * nx);
	v3 U = {nz / ul, 0, -nx / ul};
	v3 W = {ny * U.z - nz * U.y, nz * U.x - nx * U.z, nx * U.y - ny * U.x}; /* n x U: down */
	U.x *= side, U.y *= side, U.z *= side;
	v3 U2 = {c * U.x + s_ * W.x, c * U.y + s_ * W.y, c * U.z + s_ * W.z};
	v3 W2 = {-s_ * U.x + c * W.x, -s_ * U.y + c * W.y, -s_ * U.z + c * W.z};
	v3 Pp = rot3(&V->R, P), Up = rot3(&V->R, U2), Wp = rot3(&V->R, W2);
	frame F;
	sim_apply(&V->M, Pp.x, Pp.y, &F.ox, &F.oy);
	F.ux = V->M.a * Up.x - V->M.b * Up.y;
	F.uy = V->M.b * Up.x + V->M.a * Up.y;
	F.vx = V->M.a * Wp.x - V->M.b * Wp.y;
	F.vy = V->M.b * Wp.x + V->M.a * Wp.y;
	return F;
}

/* Sub-frame: origin at (ds, dt) of F, axes scaled by (sx, sy) and rotated
 * by (c, s_) within F. */
static frame sub(const frame *F, float ds, float dt, float sx, float sy, float c, float s_)
{
	frame G;
	G.ox = F->ox + ds * F->ux + dt * F->vx;
	G.oy = F->oy + ds * F->uy + dt * F->vy;
	G.ux = (c * F->ux + s_ * F->vx) * sx;
	G.uy = (c * F->uy + s_ * F->vy) * sx;
	G.vx = (-s_ * F->ux + c * F->vx) * sy;
	G.vy = (-s_ * F->uy + c * F->vy) * sy;
	return G;
}

static void frame_point(const frame *F, float s, float t, float *x, float *y)
{
	*x = F->ox + s * F->ux + t * F->vx;
	*y = F->oy + s * F->uy + t * F->vy;
}

/* ---- shapes ---- */

enum {
	SH_ELLIPSE, /* s^2 + t^2 < 1 */
	SH_BLOB,    /* soft: coverage (1 - s^2 - t^2)^2 */
	SH_LENS,    /* eye opening: p0 upper height, p1 lower, p2/p3 roundness */
	SH_BAND,    /* stroke t = p0 + p1 u + p2 u^2 + p3 u^4, half width p4 + p5 u, |u| < 1, p6 = half length px */
	SH_RRECT,   /* rounded box, half sizes p0 p1, radius p2 (pixels of the frame) */
	SH_RRING,   /* outline of SH_RRECT, half thickness p3 */
	SH_LIPUP,   /* mouth frame; see mouth_* below */
	SH_LIPLO,
	SH_GAP,     /* open-mouth interior, p8 > 0: only its top p8 pixels (teeth) */
	SH_FACE,    /* posed frame; grown by p0 */
	SH_LOCKS,   /* posed frame: hair beside the face */
	SH_CAP,     /* hair on the skull above the hairline */
	SH_BEARD,
};

/* Face outline in the posed frame: an upper half ellipse above the widest
 * row, and a jaw below it narrowing to the chin point along a blend of V,
 * oval and square profiles. */
typedef struct {
	float cx, yw, ax, ay, chx, chy, wv, wo, ws;
} face_geo;

/* Centre and half-width of the outline at posed row y (half-width 0
 * above the top and below the chin). */
static void face_span(const face_geo *G, float y, float *mid, float *hw)
{
	if (y <= G->yw) {
		float v = (y - G->yw) / G->ay, k = 1.0f - v * v;
		*hw = k > 0 ? G->ax * sqrtf(k) : 0.0f;
		*mid = G->cx;
	} else {
		float u = (y - G->yw) / (G->chy - G->yw);
		if (u > 1)
			u = 1;
		float u2 = u * u, w = 1.0f - u2;
		float sh = G->wo * sqrtf(w) + G->wv * w + G->ws * sqrtf(sqrtf(1.0f - u2 * u2));
		*mid = G->chx + (G->cx - G->chx) * sh;
		*hw = G->ax * sh;
	}
}

/* Field of the outline grown by `grow` pixels. */
static float face_field(const face_geo *G, float x, float y, float grow)
{
	float mid, hw;
	face_span(G, y, &mid, &hw);
	float f = fabsf(x - mid) - hw - grow;
	float lim = y <= G->yw ? (G->yw - G->ay) - y - grow : y - G->chy - grow;
	return f > lim ? f : lim;
}

typedef struct {
	int kind;
	float m[6];  /* pixel -> local */
	float m2[6]; /* pixel -> posed frame (shapes that need it) */
	float m3[6]; /* SH_CAP: posed frame -> local */
	float p[10];
	const face_geo *geo;
} shape;

static void frame_inv(const frame *F, float m[6])
{
	float det = F->ux * F->vy - F->vx * F->uy;
	if (det == 0)
		det = 1e-6f;
	float i00 = F->vy / det, i01 = -F->vx / det, i10 = -F->uy / det, i11 = F->ux / det;
	m[0] = i00, m[1] = i01, m[2] = -(i00 * F->ox + i01 * F->oy);
	m[3] = i10, m[4] = i11, m[5] = -(i10 * F->ox + i11 * F->oy);
}

/* Pixel box [x0,x1) x [y0,y1) covering local [s0,s1] x [t0,t1] of F, with a
 * margin for anti-aliasing, clipped to the image. Returns 0 when empty. */
static int frame_box(const frame *F, float s0, float s1, float t0, float t1, float margin, int bb[4])
{
	float xs[4], ys[4];
	frame_point(F, s0, t0, &xs[0], &ys[0]);
	frame_point(F, s1, t0, &xs[1], &ys[1]);
	frame_point(F, s0, t1, &xs[2], &ys[2]);
	frame_point(F, s1, t1, &xs[3], &ys[3]);
	float x0 = xs[0], x1 = xs[0], y0 = ys[0], y1 = ys[0];
	for (int i = 1; i < 4; i++) {
		x0 = xs[i] < x0 ? xs[i] : x0, x1 = xs[i] > x1 ? xs[i] : x1;
		y0 = ys[i] < y0 ? ys[i] : y0, y1 = ys[i] > y1 ? ys[i] : y1;
	}
	float lo = -4.0f, hi = (float)S + 4.0f; /* keeps the int casts in range */
	bb[0] = (int)floorf(clampf(x0 - margin, lo, hi));
	bb[1] = (int)floorf(clampf(y0 - margin, lo, hi));
	bb[2] = (int)floorf(clampf(x1 + margin, lo, hi)) + 1;
	bb[3] = (int)floorf(clampf(y1 + margin, lo, hi)) + 1;
	bb[0] = bb[0] < 0 ? 0 : bb[0], bb[1] = bb[1] < 0 ? 0 : bb[1];
	bb[2] = bb[2] > S ? S : bb[2], bb[3] = bb[3] > S ? S : bb[3];
	return bb[2] > bb[0] && bb[3] > bb[1];
}

/* The hairline of SH_CAP: its depth below the forehead frame's origin at
 * s (face half-widths). p4 roundness, p5 temple slope, p6 sideburn depth,
 * p7 receding corners, p8 side part, p9 fringe depth (0: none). */
static float hairline(const float *p, float s)
{
	s = clampf(s, -1, 1);
	float a = fabsf(s), u2 = s * s;
	float h = p[4] * u2; /* rounded */
	if (a > 0.6f)
		h += (a - 0.6f) * p[5]; /* temples */
	h = h < p[6] ? h : p[6]; /* sideburns */
	float rb = (a - 0.45f) / 0.22f;
	rb = 1.0f - rb * rb;
	if (rb > 0)
		h -= p[7] * rb * rb; /* receding corners */
	h += p[8] * s * (1.0f - 0.5f * a); /* side part */
	if (p[9] > 0 && a < 0.7f) { /* bangs: a fringe with a ragged edge */
		float z = s * 9.0f;
		z = z - (float)ifloor(z);
		float k = 1.0f - (a / 0.7f) * (a / 0.7f);
		h += k * (p[9] + 1.6f * fabsf(z - 0.5f)); /* the teeth fade out at its ends */
	}
	return h;
}

/* Lens profile: 1 at the centre, 0 at u = +-1; rounder with r. */
static float lens_q(float u, float r)
{
	float u2 = u * u;
	return (1.0f - u2) * (1.0f + r * u2);
}

/* The mouth in its frame (u = s across, -1..1 corner to corner; t pixels,
 * down): p0 line curvature, p1 upper lip height, p2 lower lip height, p3
 * cupid's bow depth, p4 upper gap, p5 lower gap (open mouth). */
static float mouth_line(const float *p, float u) { return p[0] * u * u; }

static float field(const shape *sh, float x, float y)
{
	const float *m = sh->m, *p = sh->p;
	float s = m[0] * x + m[1] * y + m[2], t = m[3] * x + m[4] * y + m[5];
	switch (sh->kind) {
	case SH_ELLIPSE:
		return s * s + t * t - 1.0f;
	case SH_LENS: {
		float up = -p[0] * lens_q(s, p[2]) - t, lo = t - p[1] * lens_q(s, p[3]);
		return up > lo ? up : lo;
	}
	case SH_BAND: {
		float u2 = s * s;
		float c = p[0] + p[1] * s + p[2] * u2 + p[3] * u2 * u2;
		float a = fabsf(t - c) - (p[4] + p[5] * s), e = (fabsf(s) - 1.0f) * p[6];
		return a > e ? a : e;
	}
	case SH_RRECT:
	case SH_RRING: {
		float qx = fabsf(s) - p[0] + p[2], qy = fabsf(t) - p[1] + p[2];
		float ox = qx > 0 ? qx : 0, oy = qy > 0 ? qy : 0, in = qx > qy ? qx : qy;
		float d = sqrtf(ox * ox + oy * oy) + (in < 0 ? in : 0) - p[2];
		return sh->kind == SH_RRECT ? d : fabsf(d) - p[3];
	}
	case SH_LIPUP: {
		float u2 = s * s, w = 1.0f - u2, ml = mouth_line(p, s);
		float bow = 1.0f - u2 / 0.09f;
		bow = bow > 0 ? bow * bow : 0;
		float top = ml - p[1] * w * (1.0f + 0.5f * u2) * (1.0f - p[3] * bow);
		float bot = ml - p[4] * w;
		float a = top - t, b = t - bot;
		return a > b ? a : b;
	}
	case SH_LIPLO: {
		float u2 = s * s, w = 1.0f - u2, ml = mouth_line(p, s);
		float top = ml + p[5] * w, bot = top + p[2] * w * (1.0f + 0.3f * u2);
		float a = top - t, b = t - bot;
		return a > b ? a : b;
	}
	case SH_GAP: {
		float w = 1.0f - s * s, ml = mouth_line(p, s);
		float top = ml - p[4] * w, bot = ml + p[5] * w;
		if (p[8] > 0) {
			float tb = top + p[8] * w;
			bot = bot < tb ? bot : tb;
		}
		float a = top - t, b = t - bot;
		return a > b ? a : b;
	}
	case SH_FACE:
		return face_field(sh->geo, s, t, p[0]);
	case SH_LOCKS: {
		/* p0 inner overlap onto the face, p1 outer reach, p2 lowest row,
		 * p3 highest row */
		float a = -face_field(sh->geo, s, t, -p[0]), b = face_field(sh->geo, s, t, p[1]);
		float c = t - p[2], d = p[3] - t;
		float r = a > b ? a : b;
		r = r > c ? r : c;
		return r > d ? r : d;
	}
	case SH_CAP: {
		/* local (s,t) on the forehead (s in face half-widths) and the
		 * posed q. Inside the face outline, hair is above the hairline
		 * t = h(s). Outside it, hair continues the face's edge at the same
		 * row (so it is always attached to the hair there), out to the
		 * outline grown by p0 at the crown, thinning to p1 at posed row p2
		 * (the sideburns) and to nothing at the hairline's level. */
		const float *n = sh->m2, *k = sh->m3;
		float qx = n[0] * x + n[1] * y + n[2], qy = n[3] * x + n[4] * y + n[5];
		float mid, hw;
		face_span(sh->geo, qy, &mid, &hw);
		float b;
		if (fabsf(qx - mid) <= hw) {
			b = t - hairline(p, s);
		} else {
			float ex = qx < mid ? mid - hw : mid + hw;
			float se = k[0] * ex + k[1] * qy + k[2], te = k[3] * ex + k[4] * qy + k[5];
			b = te - hairline(p, se);
		}
		float gr = p[1] + (p[0] - p[1]) * clampf((p[2] - qy) * (1.0f / 24.0f), 0, 1);
		float lim = -0.5f * b;
		float out = face_field(sh->geo, qx, qy, gr < lim ? gr : lim);
		return out > b ? out : b;
	}
	case SH_BEARD: {
		/* mouth frame (s across in mouth half-widths, t pixels) and the
		 * posed face: beard below t = p0 + p1 s^2, inside the face */
		const float *n = sh->m2;
		float qx = n[0] * x + n[1] * y + n[2], qy = n[3] * x + n[4] * y + n[5];
		float a = face_field(sh->geo, qx, qy, 0.3f), b = p[0] + p[1] * s * s - t;
		return a > b ? a : b;
	}
	}
	return 1.0f;
}

/* ---- canvas ---- */

typedef struct {
	float *rgb;  /* S*S*3 */
	float *mask; /* head coverage, for lighting */
	float *fld;  /* (S+2)^2 field scratch */
	float *cov;  /* S*S coverage */
	float *cov2; /* S*S clip coverage */
	float *coarse; /* (S/TILE+2)^2 tile-corner field */
	float *facecov, *capcov; /* S*S each: coverage of the face and hair cap, drawn late but known early */
	uint8_t *hide_all, *hide_cap; /* S*S each: 1 where the face or cap will hide all below */
	const uint8_t *hide; /* the one in force: blend skips those pixels */
	uint64_t key;
} canvas;

/* Shapes of at least this many pixels, of kinds with no detail finer than
 * a tile, are covered tile by tile: the field at the tile corners decides
 * whole tiles that lie deep inside or outside, and only tiles near an edge
 * are worked out per pixel (from the corners too for smooth outlines). The
 * face, hair and clutter are most of the image; this cuts their field
 * evaluations about tenfold. */
#define TILED_AREA 900
#define TILE 4
static int tiled_ok(int kind)
{
	return kind == SH_FACE || kind == SH_CAP || kind == SH_LOCKS || kind == SH_BEARD ||
	       kind == SH_RRECT || kind == SH_ELLIPSE;
}

/* Per-pixel coverage of the w x h window at (x0,y0) into cov (row stride
 * `stride`), from the field at the window and a one-pixel ring. */
static void cover_exact(const shape *sh, int x0, int y0, int w, int h, float soft, float *fl, float *cov,
			int stride)
{
	int fw = w + 2;
	for (int j = 0; j < h + 2; j++)
		for (int i = 0; i < fw; i++)
			fl[j * fw + i] = field(sh, (float)(x0 + i - 1), (float)(y0 + j - 1));
	float inv = 1.0f / soft, s2 = soft * soft * 0.25f;
	for (int j = 0; j < h; j++) {
		const float *r0 = fl + j * fw, *r1 = r0 + fw, *r2 = r1 + fw;
		for (int i = 0; i < w; i++) {
			float f = r1[i + 1];
			float gx = (r1[i + 2] - r1[i]) * 0.5f, gy = (r2[i + 1] - r0[i + 1]) * 0.5f;
			float g2 = gx * gx + gy * gy, a;
			/* f/|g| approximates the signed distance in pixels */
			if (f * f >= g2 * s2 || g2 == 0)
				a = f < 0 ? 1.0f : 0.0f;
			else
				a = 0.5f - f / sqrtf(g2) * inv;
			cov[j * stride + i] = a;
		}
	}
}

/* Coverage of sh over box bb into cov (row stride bb width). soft: edge
 * width in pixels (1 = a crisp anti-aliased edge). */
static void cover(canvas *C, const shape *sh, const int bb[4], float soft, float *cov)
{
	int w = bb[2] - bb[0], h = bb[3] - bb[1];
	if (sh->kind == SH_BLOB) {
		for (int j = 0; j < h; j++)
			for (int i = 0; i < w; i++) {
				float x = (float)(bb[0] + i), y = (float)(bb[1] + j);
				float s = sh->m[0] * x + sh->m[1] * y + sh->m[2];
				float t = sh->m[3] * x + sh->m[4] * y + sh->m[5];
				float r = 1.0f - s * s - t * t;
				cov[j * w + i] = r > 0 ? r * r : 0.0f;
			}
		return;
	}
	if (w * h < TILED_AREA || !tiled_ok(sh->kind)) {
		cover_exact(sh, bb[0], bb[1], w, h, soft, C->fld, cov, w);
		return;
	}
	int nx = (w + TILE - 1) / TILE, ny = (h + TILE - 1) / TILE, cw = nx + 1;
	int smooth = sh->kind != SH_CAP || sh->p[9] == 0; /* a fringe has detail finer than a tile */
	float *cg = C->coarse;
	for (int j = 0; j <= ny; j++)
		for (int i = 0; i <= nx; i++)
			cg[j * cw + i] = field(sh, (float)(bb[0] + TILE * i), (float)(bb[1] + TILE * j));
	for (int tj = 0; tj < ny; tj++)
		for (int ti = 0; ti < nx; ti++) {
			int x0 = ti * TILE, y0 = tj * TILE;
			int tw = w - x0 < TILE ? w - x0 : TILE, th = h - y0 < TILE ? h - y0 : TILE;
			float f00 = cg[tj * cw + ti], f10 = cg[tj * cw + ti + 1];
			float f01 = cg[(tj + 1) * cw + ti], f11 = cg[(tj + 1) * cw + ti + 1];
			float gx = (f10 - f00 + f11 - f01) * (0.5f / TILE), gy = (f01 - f00 + f11 - f10) * (0.5f / TILE);
			/* deep: every corner farther from the edge than half the tile diagonal
			 * plus half the edge width, so no edge pixel can be in the tile */
			float thr = sqrtf(gx * gx + gy * gy) * (TILE * 0.75f + soft * 0.5f + 0.5f);
			float lo = f00 < f10 ? f00 : f10, hi = f00 > f10 ? f00 : f10;
			lo = lo < f01 ? lo : f01, hi = hi > f01 ? hi : f01;
			lo = lo < f11 ? lo : f11, hi = hi > f11 ? hi : f11;
			float v = -1;
			if (lo > thr)
				v = 0;
			else if (hi < -thr)
				v = 1;
			else if (C->hide) { /* a tile that will be hidden needs no edge */
				int all = 1;
				for (int j = 0; j < th && all; j++)
					for (int i = 0; i < tw; i++)
						all &= C->hide[(bb[1] + y0 + j) * S + bb[0] + x0 + i];
				if (all)
					v = 0;
			}
			if (v >= 0) {
				for (int j = 0; j < th; j++)
					for (int i = 0; i < tw; i++)
						cov[(y0 + j) * w + x0 + i] = v;
				continue;
			}
			/* an edge tile: the gradient from the tile corners; the field
			 * at each pixel, or for smooth kinds bilinear from the corners
			 * (its error is h^2/8 times the curvature: hundredths of a
			 * pixel on a face outline, a rounder tip at the chin) */
			float g = sqrtf(gx * gx + gy * gy);
			float k = g > 0 ? 1.0f / (g * soft) : 0.0f;
			const float it = 1.0f / TILE;
			for (int j = 0; j < th; j++) {
				float fy = (float)j * it;
				float fa = f00 + (f01 - f00) * fy, fb = f10 + (f11 - f10) * fy;
				for (int i = 0; i < tw; i++) {
					float f = smooth ? fa + (fb - fa) * ((float)i * it)
							 : field(sh, (float)(bb[0] + x0 + i), (float)(bb[1] + y0 + j));
					float a = g > 0 ? clampf(0.5f - f * k, 0, 1) : (f < 0 ? 1.0f : 0.0f);
					cov[(y0 + j) * w + x0 + i] = a;
				}
			}
		}
}

enum { TEX_NONE, TEX_SPECKLE, TEX_HAIR };

typedef struct {
	int kind;
	float amount;     /* SPECKLE: share of coverage that varies; HAIR: contrast */
	float tab[64];    /* HAIR: strand values */
	float cx, cy, k;  /* HAIR: crown point and strand density (pixels) */
} texture;

/* Composites colour c with coverage cov*opacity over box bb. head: also
 * marks the lighting mask. */
static void blend(canvas *C, const int bb[4], const float *cov, rgb c, float opacity, int head,
		  const texture *tx)
{
	int w = bb[2] - bb[0];
	int kind = tx ? tx->kind : TEX_NONE;
	float *mask = head ? C->mask : NULL;
	uint32_t key32 = (uint32_t)(C->key ^ C->key >> 32);
	for (int y = bb[1]; y < bb[3]; y++) {
		const float *cr = cov + (y - bb[1]) * w - bb[0];
		float *row = C->rgb + 3 * y * S;
		float dy = kind == TEX_HAIR ? (float)y - tx->cy : 0.0f;
		float hk = kind == TEX_HAIR ? tx->k / (dy > 8.0f ? dy : 8.0f) : 0.0f;
		const uint8_t *hr = C->hide ? C->hide + y * S : NULL;
		for (int x = bb[0]; x < bb[2]; x++) {
			float a = cr[x] * opacity;
			if (a <= 0 || (hr && hr[x]))
				continue;
			rgb cc = c;
			if (kind == TEX_SPECKLE) {
				uint32_t hsh = hash32(key32, (uint32_t)(y * S + x));
				float n = (float)(hsh >> 8) * (1.0f / 16777216.0f);
				a *= 1.0f - tx->amount + tx->amount * n;
			} else if (kind == TEX_HAIR) {
				/* strands: rays from the crown, shaded by a 1D noise */
				float w2 = ((float)x - tx->cx) * hk;
				int fl = ifloor(w2);
				int i0 = fl & 63;
				float n = lerpf(tx->tab[i0], tx->tab[(i0 + 1) & 63], w2 - (float)fl);
				cc = scale3(c, 1.0f + tx->amount * (n - 0.5f));
			}
			float *px = row + 3 * x;
			if (a >= 1) { /* exact, so that skipping hidden pixels changes nothing */
				px[0] = cc.r, px[1] = cc.g, px[2] = cc.b;
				if (mask)
					mask[y * S + x] = 1;
				continue;
			}
			px[0] += (cc.r - px[0]) * a;
			px[1] += (cc.g - px[1]) * a;
			px[2] += (cc.b - px[2]) * a;
			if (mask)
				mask[y * S + x] += (1.0f - mask[y * S + x]) * a;
		}
	}
}

/* Fills sh in colour c; bb from local box [s0,s1]x[t0,t1] of frame F. */
static void paint(canvas *C, const shape *sh, const frame *F, float s0, float s1, float t0, float t1,
		  rgb c, float opacity, float soft, int head, const texture *tx)
{
	int bb[4];
	if (opacity <= 0 || !frame_box(F, s0, s1, t0, t1, soft + 1.5f, bb))
		return;
	cover(C, sh, bb, soft, C->cov);
	blend(C, bb, C->cov, c, opacity, head, tx);
}

static shape mkshape(int kind, const frame *F)
{
	shape sh;
	memset(&sh, 0, sizeof sh);
	sh.kind = kind;
	frame_inv(F, sh.m);
	return sh;
}

/* ---- the face ---- */

/* The 3D points of the landmarks and the mouth frame parameters depend on
 * expression; both the fitted alignment and the drawing use these. */
typedef struct {
	float mouth_a, mcurve, gap_u, gap_l, chin_y;
	v3 eye[2], nose, mouth_c;
} layout;

static void make_layout(const face_p *P, const mfr_synth_var *v, layout *L)
{
	L->mouth_a = P->mouth_a * (1.0f + 0.13f * v->smile);
	L->mcurve = P->mouth_curve - 4.0f * v->smile;
	float G = 7.0f * v->mouth_open;
	L->gap_u = 0.25f * G;
	L->gap_l = 0.75f * G;
	L->chin_y = P->chin_y + 4.0f * v->mouth_open;
	for (int k = 0; k < 2; k++) {
		float x = (k ? 1.0f : -1.0f) * P->eye_x;
		L->eye[k] = (v3){x, P->eye_y, surf_z(x, P->eye_y) - 4.0f};
	}
	L->nose = (v3){0, P->nose_y, surf_z(0, P->nose_y) + P->nose_proj};
	L->mouth_c = (v3){0, P->mouth_y, surf_z(0, P->mouth_y) + 2.0f};
}

/* Mouth frame: s in mouth half-widths, t pixels. */
static frame mouth_frame(const view *V, const layout *L)
{
	frame F = feat_frame(V, L->mouth_c, 1, 1, 0);
	return sub(&F, 0, 0, L->mouth_a, 1, 1, 0);
}

/* Landmarks in pixels under view V. */
static void landmarks(const view *V, const layout *L, float lm[10])
{
	for (int k = 0; k < 2; k++) {
		v3 e = rot3(&V->R, L->eye[k]);
		sim_apply(&V->M, e.x, e.y, &lm[2 * k], &lm[2 * k + 1]);
	}
	v3 n = rot3(&V->R, L->nose);
	sim_apply(&V->M, n.x, n.y, &lm[4], &lm[5]);
	frame F = mouth_frame(V, L);
	for (int k = 0; k < 2; k++) {
		float u = k ? 1.0f : -1.0f;
		frame_point(&F, u, L->mcurve, &lm[6 + 2 * k], &lm[7 + 2 * k]);
	}
}

/* ---- backgrounds ---- */

static rgb random_colour(mfr_rng *r, float sat)
{
	float l = 0.15f + 0.75f * uni(r);
	rgb c;
	c.r = uni(r); /* one draw a statement: argument order is unspecified */
	c.g = uni(r);
	c.b = uni(r);
	float m = (c.r + c.g + c.b) / 3.0f;
	return mkrgb(clampf(l + sat * (c.r - m), 0, 1), clampf(l + sat * (c.g - m), 0, 1),
		     clampf(l + sat * (c.b - m), 0, 1));
}

static void background(canvas *C, const mfr_synth_var *v)
{
	mfr_rng r = {v->bg_seed};
	rgb c0 = random_colour(&r, 0.5f), c1 = random_colour(&r, 0.5f);
	float ang = (float)(2.0 * PI) * uni(&r);
	float dx = (float)syn_cos(ang) / (float)S, dy = (float)syn_sin(ang) / (float)S;
	if (v->background == MFR_SYNTH_BG_PLAIN)
		c1 = c0;
	rgb d = mkrgb(c1.r - c0.r, c1.g - c0.g, c1.b - c0.b);
	for (int y = 0; y < S; y++) {
		float *restrict row = C->rgb + 3 * y * S;
		float t0 = 0.5f - 56.0f * dx + ((float)y - 56.0f) * dy;
		for (int x = 0; x < S; x++) {
			float t = t0 + (float)x * dx;
			t = t < 0 ? 0 : t > 1 ? 1 : t;
			row[3 * x] = c0.r + d.r * t;
			row[3 * x + 1] = c0.g + d.g * t;
			row[3 * x + 2] = c0.b + d.b * t;
		}
	}
	if (v->background != MFR_SYNTH_BG_CLUTTER)
		return;
	int n = 4 + (int)mfr_rng_below(&r, 8);
	for (int i = 0; i < n; i++) {
		frame F = {0, 0, 1, 0, 0, 1};
		F.ox = uni(&r) * S;
		F.oy = uni(&r) * S;
		float tilt = uni2(&r) * 0.6f, ca = (float)syn_cos(tilt), sa = (float)syn_sin(tilt);
		float hw = 4.0f + 30.0f * uni(&r), hh = 4.0f + 30.0f * uni(&r);
		rgb c = random_colour(&r, 0.7f);
		float soft = 1.0f + 2.5f * uni(&r);
		int round = uni(&r) < 0.35f;
		frame G = sub(&F, 0, 0, 1, 1, ca, sa);
		shape sh;
		if (round) {
			frame E = sub(&G, 0, 0, hw, hh, 1, 0);
			sh = mkshape(SH_ELLIPSE, &E);
			paint(C, &sh, &E, -1, 1, -1, 1, c, 1, soft, 0, NULL);
		} else {
			sh = mkshape(SH_RRECT, &G);
			sh.p[0] = hw, sh.p[1] = hh, sh.p[2] = 1.0f + 3.0f * uni(&r);
			paint(C, &sh, &G, -hw, hw, -hh, hh, c, 1, soft, 0, NULL);
		}
	}
}

/* ---- drawing ---- */

static void draw_eye(canvas *C, const view *V, const face_p *P, const mfr_synth_var *v, const layout *L,
		     int k, const v3 *light)
{
	float side = k ? 1.0f : -1.0f;
	float tc = (float)syn_cos(P->eye_tilt), ts = (float)syn_sin(-P->eye_tilt);
	frame B = feat_frame(V, L->eye[k], side, tc, ts);
	float a = P->eye_a, close = v->eye_close;
	float hu = P->eye_hu * (1.0f - close) * (1.0f + 0.15f * v->brow_raise);
	float hl = P->eye_hl * (1.0f - 0.8f * close) * (1.0f - 0.35f * v->smile);
	float r_up = P->eye_round, r_lo = 0.5f * P->eye_round;
	rgb skin = P->skin;

	/* socket shadow and lid crease */
	frame F = sub(&B, 0, -2.0f, a * 1.45f, a * 0.95f, 1, 0);
	shape sh = mkshape(SH_BLOB, &F);
	paint(C, &sh, &F, -1, 1, -1, 1, scale3(skin, 0.62f), 0.22f + 0.2f * P->socket, 1, 1, NULL);
	F = sub(&B, 0, 0, a, 1, 1, 0);
	sh = mkshape(SH_BAND, &F);
	sh.p[0] = -(P->eye_hu + 2.4f + 0.6f * P->socket) * (1.0f - 0.3f * close);
	sh.p[2] = -sh.p[0] * (0.7f - 0.4f * r_up);
	sh.p[3] = -sh.p[0] * 0.3f * r_up;
	sh.p[4] = 0.4f, sh.p[6] = a;
	paint(C, &sh, &F, -1, 1, sh.p[0] - 1, 1, scale3(skin, 0.72f), 0.55f, 1, 1, NULL);

	if (hu + hl < 1.2f) { /* closed: the lash line alone */
		sh = mkshape(SH_BAND, &F);
		sh.p[0] = 0.6f * hl, sh.p[2] = -0.6f * hl, sh.p[4] = 0.55f, sh.p[6] = a;
		paint(C, &sh, &F, -1.05f, 1.05f, -2, 3, mkrgb(0.1f, 0.07f, 0.06f), 0.85f, 1, 1, NULL);
		return;
	}
	/* sclera, then iris and pupil clipped to it */
	int bb[4];
	if (!frame_box(&F, -1, 1, -hu, hl, 2.5f, bb))
		return;
	int w = bb[2] - bb[0], n = w * (bb[3] - bb[1]);
	shape lens = mkshape(SH_LENS, &F);
	lens.p[0] = hu, lens.p[1] = hl, lens.p[2] = r_up, lens.p[3] = r_lo;
	cover(C, &lens, bb, 1, C->cov2);
	blend(C, bb, C->cov2, mix3(mkrgb(0.93f, 0.91f, 0.88f), skin, 0.15f), 1, 1, NULL);
	float ix = v->gaze_x * 0.32f * a, iy = v->gaze_y * 0.25f * hu - 0.3f;
	float ir = P->iris_r;
	struct { float r; rgb c; } disc[3] = {
		{ir, scale3(P->iris, 0.55f)},
		{ir * 0.8f, P->iris},
		{ir * 0.42f, mkrgb(0.03f, 0.02f, 0.02f)},
	};
	for (int i = 0; i < 3; i++) {
		frame I = sub(&B, ix, iy, disc[i].r, disc[i].r, 1, 0);
		sh = mkshape(SH_ELLIPSE, &I);
		cover(C, &sh, bb, 1, C->cov);
		for (int j = 0; j < n; j++)
			C->cov[j] *= C->cov2[j];
		blend(C, bb, C->cov, disc[i].c, 1, 1, NULL);
	}
	/* catchlight on the side of the light */
	frame H = sub(&B, ix + side * 0.35f * ir * light->x, iy - 0.35f * ir, 0.75f, 0.75f, 1, 0);
	sh = mkshape(SH_ELLIPSE, &H);
	cover(C, &sh, bb, 1, C->cov);
	for (int j = 0; j < n; j++)
		C->cov[j] *= C->cov2[j];
	blend(C, bb, C->cov, mkrgb(1, 1, 1), 0.75f, 1, NULL);
	/* upper lid shadow on the eyeball, lashes, lower lid */
	sh = mkshape(SH_BAND, &F);
	sh.p[0] = -hu, sh.p[2] = hu * (1.0f - r_up), sh.p[3] = hu * r_up;
	sh.p[4] = 0.85f, sh.p[5] = 0.3f, sh.p[6] = a * 1.05f;
	paint(C, &sh, &F, -1.05f, 1.05f, -hu - 2, 1, mkrgb(0.08f, 0.06f, 0.05f), 0.9f, 1, 1, NULL);
	sh = mkshape(SH_BAND, &F);
	sh.p[0] = hl + 0.3f, sh.p[2] = -hl * (1.0f - r_lo) - 0.3f, sh.p[3] = -hl * r_lo;
	sh.p[4] = 0.4f, sh.p[6] = a;
	paint(C, &sh, &F, -1, 1, -1, hl + 2, scale3(skin, 0.55f), 0.45f, 1, 1, NULL);
}

static void draw_brow(canvas *C, const view *V, const face_p *P, const mfr_synth_var *v, int k)
{
	float side = k ? 1.0f : -1.0f, b = v->brow_raise;
	float x = side * (P->eye_x + 1.0f), y = P->eye_y - P->brow_gap - (b > 0 ? 2.8f : 1.2f) * b;
	v3 pt = {x, y, surf_z(x, y) - 1.0f};
	float tilt = P->brow_tilt;
	frame B = feat_frame(V, pt, side, (float)syn_cos(tilt), (float)syn_sin(-tilt));
	frame F = sub(&B, 0, 0, P->brow_a, 1, 1, 0);
	shape sh = mkshape(SH_BAND, &F);
	float arch = P->brow_arch + 0.8f * (b > 0 ? b : 0);
	sh.p[2] = arch;
	sh.p[1] = -0.5f * arch + (b < 0 ? 1.5f * b : 0);
	sh.p[0] = 0;
	sh.p[4] = P->brow_th * 0.42f;
	sh.p[5] = -P->brow_th * 0.2f;
	sh.p[6] = P->brow_a;
	texture tx = {TEX_SPECKLE, 0.35f, {0}, 0, 0, 0};
	paint(C, &sh, &F, -1, 1, -P->brow_th - arch - 3, P->brow_th + arch + 3, P->brow, 0.92f, 1, 1, &tx);
}

static void draw_nose(canvas *C, const view *V, const face_p *P, const layout *L, const v3 *light)
{
	rgb skin = P->skin;
	float w = P->nose_w;
	/* bridge: a side shadow on the side away from the light */
	float by = (P->eye_y + P->nose_y) * 0.5f;
	v3 bp = {0, by, surf_z(0, by) + P->nose_proj * 0.55f};
	frame Bf = feat_frame(V, bp, 1, 1, 0);
	float len = (P->nose_y - P->eye_y) * 0.5f;
	for (int k = 0; k < 2; k++) {
		float side = k ? 1.0f : -1.0f;
		float op = 0.10f + 0.35f * clampf(-side * light->x * 1.6f, 0, 1);
		frame F = sub(&Bf, side * w * 0.42f, 0, 2.2f, len, 1, 0);
		shape sh = mkshape(SH_BLOB, &F);
		paint(C, &sh, &F, -1, 1, -1, 1, scale3(skin, 0.55f), op, 1, 1, NULL);
	}
	frame T = feat_frame(V, L->nose, 1, 1, 0);
	/* tip highlight and the shadow below the tip */
	frame F = sub(&T, 0, -1.2f, w * 0.5f, 3.6f, 1, 0);
	shape sh = mkshape(SH_BLOB, &F);
	paint(C, &sh, &F, -1, 1, -1, 1, scale3(skin, 1.18f), 0.28f, 1, 1, NULL);
	F = sub(&T, 0, 4.2f, w * 0.85f, 2.6f, 1, 0);
	sh = mkshape(SH_BLOB, &F);
	paint(C, &sh, &F, -1, 1, -1, 1, scale3(skin, 0.5f), 0.35f, 1, 1, NULL);
	for (int k = 0; k < 2; k++) {
		float side = k ? 1.0f : -1.0f;
		/* wing of the nose: a short arc bulging outward */
		float c = (float)syn_cos(1.75), s = (float)syn_sin(1.75);
		frame A = sub(&T, side * w * 0.8f, 0.4f, 1, 1, c, side * s);
		F = sub(&A, 0, 0, 3.4f, 1, 1, 0);
		sh = mkshape(SH_BAND, &F);
		sh.p[0] = side * 1.3f, sh.p[2] = -side * 1.3f;
		sh.p[4] = 0.5f, sh.p[6] = 3.4f;
		paint(C, &sh, &F, -1, 1, -3, 3, scale3(skin, 0.52f), 0.55f, 1, 1, NULL);
		/* nostril */
		float nc = (float)syn_cos(0.35), ns = (float)syn_sin(-0.35);
		frame N = feat_frame(V, L->nose, side, 1, 0);
		F = sub(&N, w * 0.38f, 2.6f, 1.9f, 1.05f, nc, ns);
		sh = mkshape(SH_ELLIPSE, &F);
		paint(C, &sh, &F, -1, 1, -1, 1, scale3(skin, 0.28f), 0.85f, 1, 1, NULL);
	}
}

static void draw_mouth(canvas *C, const view *V, const face_p *P, const mfr_synth_var *v, const layout *L)
{
	frame F = mouth_frame(V, L);
	float pm[10] = {L->mcurve, P->lip_up, P->lip_lo, 0.35f, L->gap_u, L->gap_l, 0, 0, 0, 0};
	float t0 = -P->lip_up - 3 - fabsf(L->mcurve), t1 = P->lip_lo + L->gap_l + 3 + fabsf(L->mcurve);
	shape sh;
	if (L->gap_l + L->gap_u > 0.5f) {
		sh = mkshape(SH_GAP, &F);
		memcpy(sh.p, pm, sizeof pm);
		paint(C, &sh, &F, -1.1f, 1.1f, t0, t1, mkrgb(0.22f, 0.07f, 0.07f), 1, 1, 1, NULL);
		sh.p[8] = 0.5f + 2.5f * clampf(v->smile + 0.3f, 0, 1);
		paint(C, &sh, &F, -1.1f, 1.1f, t0, t1, mkrgb(0.9f, 0.88f, 0.82f), 0.9f, 1, 1, NULL);
	}
	sh = mkshape(SH_LIPUP, &F);
	memcpy(sh.p, pm, sizeof pm);
	paint(C, &sh, &F, -1.1f, 1.1f, t0, t1, scale3(P->lip, 0.9f), 1, 1, 1, NULL);
	sh.kind = SH_LIPLO;
	paint(C, &sh, &F, -1.1f, 1.1f, t0, t1, P->lip, 1, 1, 1, NULL);
	/* lower lip sheen and the mouth line */
	frame H = sub(&F, 0, L->gap_l + P->lip_lo * 0.45f, 0.45f, P->lip_lo * 0.35f, 1, 0);
	sh = mkshape(SH_BLOB, &H);
	paint(C, &sh, &H, -1, 1, -1, 1, scale3(P->lip, 1.35f), 0.35f, 1, 1, NULL);
	if (L->gap_l + L->gap_u <= 0.5f) {
		sh = mkshape(SH_BAND, &F);
		sh.p[2] = L->mcurve, sh.p[4] = 0.5f, sh.p[6] = L->mouth_a;
		paint(C, &sh, &F, -1.05f, 1.05f, t0, t1, scale3(P->lip, 0.4f), 0.8f, 1, 1, NULL);
	}
	/* below-lip shadow */
	H = sub(&F, 0, L->gap_l + P->lip_lo + 2.2f, 0.5f, 2.0f, 1, 0);
	sh = mkshape(SH_BLOB, &H);
	paint(C, &sh, &H, -1, 1, -1, 1, scale3(P->skin, 0.6f), 0.3f, 1, 1, NULL);
}

/* Nasolabial folds and cheeks. */
static void draw_cheeks(canvas *C, const view *V, const face_p *P, const mfr_synth_var *v, const layout *L)
{
	for (int k = 0; k < 2; k++) {
		float side = k ? 1.0f : -1.0f;
		float x = side * (P->eye_x + 3.0f), y = P->eye_y + 15.0f;
		frame B = feat_frame(V, (v3){x, y, surf_z(x, y)}, side, 1, 0);
		frame F = sub(&B, 0, 0, 10, 7, 1, 0);
		shape sh = mkshape(SH_BLOB, &F);
		paint(C, &sh, &F, -1, 1, -1, 1, mkrgb(0.85f, 0.35f, 0.35f), 0.22f * P->ruddy, 1, 1, NULL);
		/* fold from the nose wing to beside the mouth corner */
		float x0 = P->nose_w + 1.5f, y0 = P->nose_y + 1.0f;
		float x1 = L->mouth_a + 2.0f, y1 = P->mouth_y - 1.0f - 2.0f * v->smile;
		float dx = x1 - x0, dy = y1 - y0, l = sqrtf(dx * dx + dy * dy);
		float mx = side * (x0 + x1) * 0.5f, my = (y0 + y1) * 0.5f;
		B = feat_frame(V, (v3){mx, my, surf_z(mx, my)}, side, dx / l, dy / l);
		F = sub(&B, 0, 0, l * 0.5f, 1, 1, 0);
		sh = mkshape(SH_BAND, &F);
		sh.p[0] = -1.2f, sh.p[2] = 1.2f, sh.p[4] = 0.6f + 0.5f * v->smile, sh.p[6] = l * 0.5f;
		float op = 0.04f + 0.25f * v->smile + 0.12f * P->folds;
		paint(C, &sh, &F, -1, 1, -3, 3, scale3(P->skin, 0.6f), op, 1.6f, 1, NULL);
	}
}

static void draw_glasses(canvas *C, const view *V, const face_p *P, const layout *L)
{
	float a = P->eye_a + 3.8f, b = P->eye_a * 0.55f + 3.2f;
	float r = P->glass_round ? (a < b ? a : b) * 0.95f : 2.5f;
	for (int k = 0; k < 2; k++) {
		float side = k ? 1.0f : -1.0f;
		frame B = feat_frame(V, L->eye[k], side, 1, 0);
		frame F = sub(&B, 0.8f, 0.5f, 1, 1, 1, 0);
		shape sh = mkshape(SH_RRECT, &F);
		sh.p[0] = a, sh.p[1] = b, sh.p[2] = r;
		paint(C, &sh, &F, -a, a, -b, b, mkrgb(0.85f, 0.9f, 0.95f), 0.1f, 1, 1, NULL);
		sh.kind = SH_RRING;
		sh.p[3] = P->glass_th * 0.5f;
		paint(C, &sh, &F, -a, a, -b, b, P->glass, 0.95f, 1, 1, NULL);
		/* temple arm toward the ear */
		float reach = P->face_w - P->eye_x - a + 3.0f;
		frame G = sub(&F, a + reach * 0.5f, -b * 0.55f, reach * 0.5f, 1, 1, 0);
		sh = mkshape(SH_BAND, &G);
		sh.p[4] = P->glass_th * 0.5f, sh.p[6] = reach * 0.5f;
		paint(C, &sh, &G, -1, 1, -2, 2, P->glass, 0.95f, 1, 1, NULL);
	}
	/* bridge */
	float by = P->eye_y - 1.0f;
	frame B = feat_frame(V, (v3){0, by, surf_z(0, by) + 6.0f}, 1, 1, 0);
	float hw = P->eye_x - a + 1.5f;
	frame F = sub(&B, 0, 0, hw > 1 ? hw : 1, 1, 1, 0);
	shape sh = mkshape(SH_BAND, &F);
	sh.p[0] = -1.0f, sh.p[2] = 1.0f, sh.p[4] = P->glass_th * 0.5f, sh.p[6] = hw;
	paint(C, &sh, &F, -1, 1, -3, 3, P->glass, 0.95f, 1, 1, NULL);
}

/* Head lighting: an ellipsoid normal under a directional light, applied to
 * everything that belongs to the head (weighted by its coverage mask). The
 * light varies slowly, so it is computed every 4 pixels and interpolated. */
static void shade(canvas *C, const view *V, const face_geo *G, const mfr_synth_var *v, const v3 *Lt)
{
	enum { STEP = 4, NG = S / STEP + 1 };
	float lg[NG * NG];
	/* posed coordinates of pixel (x, y): invert the similarity */
	float det = V->M.a * V->M.a + V->M.b * V->M.b;
	float ia = V->M.a / det, ib = V->M.b / det;
	float rx = 1.0f / (G->ax * 1.12f), ry = 1.0f / 62.0f, cy = G->yw - 6.0f;
	float wrap = 0.25f, amb = v->light_ambient, dif = v->light_diffuse / (1.0f + wrap);
	for (int j = 0; j < NG; j++)
		for (int i = 0; i < NG; i++) {
			float dx = (float)(STEP * i) - V->M.tx, dy = (float)(STEP * j) - V->M.ty;
			float qx = ia * dx + ib * dy, qy = -ib * dx + ia * dy;
			float nx = (qx - G->cx) * rx, ny = (qy - cy) * ry;
			float r2 = nx * nx + ny * ny;
			if (r2 > 0.98f) { /* beyond the rim: its normal */
				float k = sqrtf(0.98f / r2);
				nx *= k, ny *= k, r2 = 0.98f;
			}
			float nz = sqrtf(1.0f - r2);
			float d = nx * Lt->x + ny * Lt->y + nz * Lt->z + wrap;
			lg[j * NG + i] = amb + dif * (d > 0 ? d : 0) - 1.0f;
		}
	const float it = 1.0f / STEP;
	for (int y = 0; y < S; y++) {
		int j = y / STEP;
		float fy = (float)(y - STEP * j) * it;
		const float *g0 = lg + j * NG, *g1 = g0 + NG;
		float *row = C->rgb + 3 * y * S;
		const float *mrow = C->mask + y * S;
		for (int x = 0; x < S; x++) {
			float m = mrow[x];
			if (m <= 0)
				continue;
			int i = x / STEP;
			float fx = (float)(x - STEP * i) * it;
			float a = g0[i] + (g1[i] - g0[i]) * fy, b = g0[i + 1] + (g1[i + 1] - g0[i + 1]) * fy;
			float k = 1.0f + (a + (b - a) * fx) * m;
			float *px = row + 3 * x;
			px[0] *= k, px[1] *= k, px[2] *= k;
		}
	}
}

/* o[i] (+)= k * (a[i] + b[i]) over one image row of floats; written with
 * restrict and a constant length so that -O2 vectorizes it. */
static void row_axpy2(float *restrict o, const float *restrict a, const float *restrict b, float k)
{
	for (int i = 0; i < 3 * S; i++)
		o[i] += k * (a[i] + b[i]);
}
static void row_scale(float *restrict o, const float *restrict a, float k)
{
	for (int i = 0; i < 3 * S; i++)
		o[i] = k * a[i];
}

/* The camera: blur, then colour cast, saturation and contrast (one affine
 * colour map, which commutes with the blur), sensor noise, quantization. */
static void camera(canvas *C, const mfr_synth_var *v, uint8_t *out)
{
	enum { W3 = 3 * S };
	float *p = C->rgb;
	if (v->blur > 0.05f) {
		/* separable biweight kernel of radius blur+1, edges clamped */
		float k[5] = {0}, sum = 0, rr = v->blur + 1.0f;
		int R = (int)rr;
		R = R > 4 ? 4 : R;
		for (int i = 0; i <= R; i++) {
			float q = (float)i / rr;
			q = 1.0f - q * q;
			k[i] = q > 0 ? q * q : 0;
			sum += i ? 2 * k[i] : k[i];
		}
		for (int i = 0; i <= R; i++)
			k[i] /= sum;
		float *pad = C->fld, *acc = C->fld + 3 * (S + 8);
		for (int y = 0; y < S; y++) {
			float *row = p + y * W3;
			for (int i = 0; i < 12; i++) {
				pad[i] = row[i % 3];
				pad[12 + W3 + i] = row[W3 - 3 + i % 3];
			}
			memcpy(pad + 12, row, sizeof(float) * W3);
			const float *q = pad + 12;
			row_scale(acc, q, k[0]);
			for (int j = 1; j <= R; j++)
				row_axpy2(acc, q - 3 * j, q + 3 * j, k[j]);
			memcpy(row, acc, sizeof(float) * W3);
		}
		float *o2 = C->cov; /* cov, cov2 and mask: free by now */
		for (int y = 0; y < S; y++) {
			float *o = o2 + y * W3;
			row_scale(o, p + y * W3, k[0]);
			for (int j = 1; j <= R; j++) {
				const float *ra = p + (y - j < 0 ? 0 : y - j) * W3;
				const float *rb = p + (y + j >= S ? S - 1 : y + j) * W3;
				row_axpy2(o, ra, rb, k[j]);
			}
		}
		p = o2;
	}
	/* c' = contrast * (l + sat * (g c - l)) + (1 - contrast) / 2 with
	 * l = w . (g c): a 3x3 matrix and an offset, scaled to 0..255 */
	static const float wl[3] = {0.299f, 0.587f, 0.114f};
	float M[9], g[3], ct = v->contrast * 255.0f, sat = v->saturation;
	for (int c = 0; c < 3; c++)
		g[c] = v->exposure * v->wb[c];
	for (int i = 0; i < 3; i++)
		for (int c = 0; c < 3; c++)
			M[3 * i + c] = ct * ((1.0f - sat) * wl[c] * g[c] + (i == c ? sat * g[c] : 0.0f));
	float off = 127.5f * (1.0f - v->contrast) + 0.5f; /* + 0.5: round on truncation */
	/* noise: a luminance part (triangular, sd 0.41 per unit) and a weaker
	 * chroma part per channel, from one 32-bit hash per pixel */
	float sl = v->noise * 255.0f * (1.0f / 0.41f) * (1.0f / 256.0f);
	float sc = v->noise * 255.0f * 0.6f * (1.0f / 0.29f) * (1.0f / 32.0f);
	/* locals: stores through out (a char type) could alias anything */
	const int noisy = v->noise > 0;
	const uint32_t seed = (uint32_t)(v->noise_seed ^ v->noise_seed >> 32);
	const float m0 = M[0], m1 = M[1], m2 = M[2], m3 = M[3], m4 = M[4], m5 = M[5], m6 = M[6],
		    m7 = M[7], m8 = M[8];
	for (int i = 0; i < S * S; i++) {
		float r = p[3 * i], gg = p[3 * i + 1], b = p[3 * i + 2];
		float n0 = 0, n1 = 0, n2 = 0;
		if (noisy) {
			uint32_t h = hash32(seed, (uint32_t)i);
			float nl = (float)((int)(h & 0xff) + (int)((h >> 8) & 0xff) - 255) * sl;
			n0 = nl + (float)((int)((h >> 16) & 0x1f) - 16) * sc;
			n1 = nl + (float)((int)((h >> 21) & 0x1f) - 16) * sc;
			n2 = nl + (float)((int)((h >> 26) & 0x1f) - 16) * sc;
		}
		float x0 = m0 * r + m1 * gg + m2 * b + off + n0;
		float x1 = m3 * r + m4 * gg + m5 * b + off + n1;
		float x2 = m6 * r + m7 * gg + m8 * b + off + n2;
		int q0 = (int)(x0 > 0 ? (x0 < 255.0f ? x0 : 255.0f) : 0.0f);
		int q1 = (int)(x1 > 0 ? (x1 < 255.0f ? x1 : 255.0f) : 0.0f);
		int q2 = (int)(x2 > 0 ? (x2 < 255.0f ? x2 : 255.0f) : 0.0f);
		out[3 * i] = (uint8_t)q0;
		out[3 * i + 1] = (uint8_t)q1;
		out[3 * i + 2] = (uint8_t)q2;
	}
}

int mfr_synth_draw(const mfr_synth_face *f, const mfr_synth_var *v, uint8_t *out, float lm_out[10],
		   mfr_error *e)
{
	face_p P;
	decode(f, v, &P);
	layout L;
	make_layout(&P, v, &L);

	/* the view: pose, then the similarity into the crop */
	view V;
	V.R.cy = (float)syn_cos(v->yaw), V.R.sy = (float)syn_sin(v->yaw);
	V.R.cp = (float)syn_cos(v->pitch), V.R.sp = (float)syn_sin(v->pitch);
	V.M = (sim2){1, 0, 0, 0};
	float lm[10];
	landmarks(&V, &L, lm);
	float cx = 56.0f, cy = 62.0f;
	if (v->align) {
		V.M = fit_sim(lm, arcface, 5);
	} else {
		/* the identity's frontal, neutral alignment, then roll */
		mfr_synth_var n = *v;
		n.smile = n.mouth_open = 0;
		layout L0;
		make_layout(&P, &n, &L0);
		view V0 = {{1, 0, 1, 0}, {1, 0, 0, 0}};
		float lm0[10];
		landmarks(&V0, &L0, lm0);
		sim2 M0 = fit_sim(lm0, arcface, 5);
		V.M = sim_around(&M0, v->roll, 1, cx, cy, 0, 0);
	}
	V.M = sim_around(&V.M, v->jitter_rot, 1.0f + v->jitter_scale, cx, cy, v->jitter_x, v->jitter_y);
	landmarks(&V, &L, lm);
	if (lm_out)
		memcpy(lm_out, lm, sizeof lm);

	size_t nf = S * S * 8 + (S + 2) * (S + 2) + (S / TILE + 2) * (S / TILE + 2);
	float *ws = malloc(sizeof(float) * nf + 2 * S * S);
	if (!ws)
		return mfr_fail(e, "out of memory rendering a synthetic face");
	canvas C;
	C.rgb = ws;
	C.cov = ws + 3 * S * S;
	C.cov2 = ws + 4 * S * S;
	C.mask = ws + 5 * S * S; /* cov, cov2, mask: the blur's output after shading */
	C.facecov = ws + 6 * S * S;
	C.capcov = ws + 7 * S * S;
	C.fld = ws + 8 * S * S;
	C.coarse = C.fld + (S + 2) * (S + 2);
	C.hide_all = (uint8_t *)(ws + nf);
	C.hide_cap = C.hide_all + S * S;
	C.hide = NULL;
	memset(C.hide_all, 0, 2 * S * S);
	C.key = f->key;
	memset(C.mask, 0, sizeof(float) * S * S);

	float la = v->light_az, le = v->light_el;
	v3 Lt = {(float)(syn_sin(la) * syn_cos(le)), (float)-syn_sin(le), (float)(syn_cos(la) * syn_cos(le))};

	/* posed frame as a frame in pixels */
	frame PF;
	sim_apply(&V.M, 0, 0, &PF.ox, &PF.oy);
	PF.ux = V.M.a, PF.uy = V.M.b, PF.vx = -V.M.b, PF.vy = V.M.a;

	/* face outline in the posed frame */
	face_geo G;
	{
		v3 c = rot3(&V.R, (v3){0, P.yw, 0});
		v3 ch = rot3(&V.R, (v3){0, L.chin_y, surf_z(0, L.chin_y) - 8.0f});
		float cyw = V.R.cy, syw = V.R.sy;
		G.cx = c.x;
		G.yw = c.y;
		G.ax = sqrtf(P.face_w * P.face_w * cyw * cyw + FACE_RZ * FACE_RZ * syw * syw);
		G.ay = c.y - (P.top * V.R.cp);
		G.chx = ch.x;
		G.chy = ch.y;
		float j = P.jaw;
		G.wv = j < 0 ? -j : 0;
		G.ws = j > 0 ? j : 0;
		G.wo = 1.0f - G.wv - G.ws;
	}
	texture htx = {TEX_HAIR, 0.45f, {0}, 0, 0, 0};
	{
		mfr_rng r = {f->key ^ 0x5bd1e995ull};
		for (int i = 0; i < 64; i++)
			htx.tab[i] = uni(&r);
		float crx, cry;
		v3 cr = rot3(&V.R, (v3){P.hair_part * 12.0f, -95.0f, 0});
		sim_apply(&V.M, cr.x, cr.y, &crx, &cry);
		htx.cx = crx, htx.cy = cry, htx.k = 28.0f;
	}
	int long_hair = P.hair_style >= HAIR_MEDIUM;
	rgb hair = P.hair;

	/* The face and the hair cap are opaque and drawn late: their coverage,
	 * computed first, lets every layer below skip the pixels they will hide
	 * (the image is the same, the work is not). */
	int facebb[4] = {0, 0, 0, 0}, capbb[4] = {0, 0, 0, 0};
	{
		shape sh = mkshape(SH_FACE, &PF);
		sh.geo = &G;
		float x0 = G.cx - G.ax - 2, x1 = G.cx + G.ax + 2;
		if (frame_box(&PF, x0 < G.chx ? x0 : G.chx, x1 > G.chx ? x1 : G.chx, G.yw - G.ay - 2, G.chy + 2,
			      2.5f, facebb))
			cover(&C, &sh, facebb, 1, C.facecov);
	}
	float cap_op = P.hair_style == HAIR_BUZZ ? 0.55f : 1.0f;
	texture cap_tx = htx;
	if (P.hair_style == HAIR_BUZZ)
		cap_tx.kind = TEX_SPECKLE, cap_tx.amount = 0.6f;
	{
		float hy = P.hair_style == HAIR_BALD ? -74.0f : P.hairline;
		v3 hp = {0, hy, surf_z(0, hy)};
		frame B = feat_frame(&V, hp, 1, 1, 0);
		frame F = sub(&B, 0, 0, P.face_w, 1, 1, 0);
		shape sh = mkshape(SH_CAP, &F);
		frame_inv(&PF, sh.m2);
		/* m3 = m o (posed -> pixel) */
		const float *m = sh.m;
		sh.m3[0] = m[0] * PF.ux + m[1] * PF.uy, sh.m3[1] = m[0] * PF.vx + m[1] * PF.vy;
		sh.m3[2] = m[0] * PF.ox + m[1] * PF.oy + m[2];
		sh.m3[3] = m[3] * PF.ux + m[4] * PF.uy, sh.m3[4] = m[3] * PF.vx + m[4] * PF.vy;
		sh.m3[5] = m[3] * PF.ox + m[4] * PF.oy + m[5];
		sh.geo = &G;
		int thin = P.hair_style == HAIR_BUZZ || P.hair_style == HAIR_BALD;
		v3 sbp = rot3(&V.R, (v3){0, P.ear_y - 8.0f, 0});
		sh.p[0] = thin ? 1.0f : P.hair_vol;
		sh.p[1] = thin ? 0.5f : 3.5f;
		sh.p[2] = sbp.y;
		sh.p[4] = P.hair_curve;
		sh.p[5] = 1.9f * P.face_w;
		sh.p[6] = (P.ear_y - 6.0f) - hy;
		sh.p[7] = P.recede * 10.0f;
		sh.p[8] = P.hair_part * 8.0f;
		sh.p[9] = P.hair_style == HAIR_BANGS ? 14.0f : 0.0f;
		/* the cap reaches down to the sideburns at most */
		float bx, by;
		v3 sb = rot3(&V.R, (v3){0, P.ear_y, 0});
		sim_apply(&V.M, sb.x, sb.y, &bx, &by);
		capbb[2] = S, capbb[3] = (int)clampf(by + 40.0f, 0, S);
		if (capbb[3] > 0)
			cover(&C, &sh, capbb, 1.4f, C.capcov);
	}
	for (int y = capbb[1]; y < capbb[3]; y++)
		for (int x = capbb[0]; x < capbb[2]; x++)
			C.hide_cap[y * S + x] = C.capcov[(y - capbb[1]) * (capbb[2] - capbb[0]) + x - capbb[0]] * cap_op >= 1.0f;
	memcpy(C.hide_all, C.hide_cap, S * S);
	for (int y = facebb[1]; y < facebb[3]; y++)
		for (int x = facebb[0]; x < facebb[2]; x++)
			C.hide_all[y * S + x] |= C.facecov[(y - facebb[1]) * (facebb[2] - facebb[0]) + x - facebb[0]] >= 1.0f;

	C.hide = C.hide_all;
	background(&C, v);

	/* hair behind the head */
	if (long_hair) {
		float bottom = P.hair_style == HAIR_MEDIUM ? G.chy - 4.0f : G.chy + 40.0f;
		float top = G.yw - G.ay - P.hair_vol;
		frame F = sub(&PF, G.cx, (top + bottom) * 0.5f, 1, 1, 1, 0);
		shape sh = mkshape(SH_RRECT, &F);
		float hw = G.ax + P.hair_vol + 6.0f, hh = (bottom - top) * 0.5f;
		sh.p[0] = hw, sh.p[1] = hh, sh.p[2] = P.hair_style == HAIR_MEDIUM ? 18.0f : 12.0f;
		paint(&C, &sh, &F, -hw, hw, -hh, hh, scale3(hair, 0.7f), 1, 1, 1, &htx);
	}
	/* shoulders, neck */
	{
		frame F = sub(&PF, G.cx * 0.5f + G.chx * 0.5f, G.chy + 44.0f, G.ax * 2.6f, 34.0f, 1, 0);
		shape sh = mkshape(SH_ELLIPSE, &F);
		rgb cl = mkrgb(v->cloth[0], v->cloth[1], v->cloth[2]);
		paint(&C, &sh, &F, -1, 1, -1, 1, cl, 1, 1, 1, NULL);
		float nw = P.face_w * 0.62f, nh = 30.0f;
		F = sub(&PF, G.chx * 0.6f + G.cx * 0.4f, G.chy + 8.0f, 1, 1, 1, 0);
		sh = mkshape(SH_RRECT, &F);
		sh.p[0] = nw, sh.p[1] = nh, sh.p[2] = 8.0f;
		paint(&C, &sh, &F, -nw, nw, -nh, nh, scale3(P.skin, 0.68f), 1, 1, 1, NULL);
	}
	/* ears (behind the face outline) */
	if (!long_hair)
		for (int k = 0; k < 2; k++) {
			float side = k ? 1.0f : -1.0f;
			v3 ep = {side * (P.face_w + 1.5f), P.ear_y, -2.0f};
			/* the ear plane faces sideways and a little forward */
			v3 U = {-side * 0.57f, 0, 0.82f};
			v3 Pp = rot3(&V.R, ep), Up = rot3(&V.R, U);
			frame B;
			sim_apply(&V.M, Pp.x, Pp.y, &B.ox, &B.oy);
			B.ux = V.M.a * Up.x - V.M.b * Up.y, B.uy = V.M.b * Up.x + V.M.a * Up.y;
			B.vx = -V.M.b, B.vy = V.M.a;
			frame F = sub(&B, 0, 0, P.ear_a, P.ear_b, 1, 0);
			/* the ear's visible width never drops below 3 pixels */
			float wx = F.ux * F.ux + F.uy * F.uy;
			if (wx < 9.0f) {
				float k2 = 3.0f / sqrtf(wx > 1e-6f ? wx : 1e-6f);
				F.ux *= k2, F.uy *= k2;
			}
			shape sh = mkshape(SH_ELLIPSE, &F);
			paint(&C, &sh, &F, -1, 1, -1, 1, mul3(P.skin, mkrgb(0.95f, 0.85f, 0.83f)), 1, 1, 1, NULL);
			frame I = sub(&F, 0.05f, 0.05f, 0.5f, 0.62f, 1, 0);
			sh = mkshape(SH_BLOB, &I);
			paint(&C, &sh, &I, -1, 1, -1, 1, scale3(P.skin, 0.55f), 0.6f, 1, 1, NULL);
		}
	/* the face, then what lies on it: under the cap's shadow of hiding */
	C.hide = C.hide_cap;
	if (facebb[3] > facebb[1])
		blend(&C, facebb, C.facecov, P.skin, 1, 1, NULL);
	draw_cheeks(&C, &V, &P, v, &L);
	if (P.mole) {
		v3 mp = {P.mole_x, P.mole_y - 10.0f, surf_z(P.mole_x, P.mole_y - 10.0f)};
		frame B = feat_frame(&V, mp, 1, 1, 0);
		frame F = sub(&B, 0, 0, 1.2f, 1.2f, 1, 0);
		shape sh = mkshape(SH_ELLIPSE, &F);
		paint(&C, &sh, &F, -1, 1, -1, 1, mul3(P.skin, mkrgb(0.45f, 0.35f, 0.32f)), 0.9f, 1, 1, NULL);
	}
	for (int k = 0; k < 2; k++)
		draw_eye(&C, &V, &P, v, &L, k, &Lt);
	for (int k = 0; k < 2; k++)
		draw_brow(&C, &V, &P, v, k);
	draw_nose(&C, &V, &P, &L, &Lt);
	/* beard under the lips, moustache over them */
	frame MF = mouth_frame(&V, &L);
	if (P.beard == BEARD_STUBBLE || P.beard == BEARD_FULL) {
		shape sh = mkshape(SH_BEARD, &MF);
		frame_inv(&PF, sh.m2);
		sh.geo = &G;
		float s2 = (P.face_w / L.mouth_a) * (P.face_w / L.mouth_a);
		sh.p[0] = -7.0f, sh.p[1] = -14.0f / s2;
		float op = P.beard == BEARD_FULL ? 0.92f * P.beard_dens : 0.4f * P.beard_dens;
		texture tx = {TEX_SPECKLE, P.beard == BEARD_FULL ? 0.3f : 0.8f, {0}, 0, 0, 0};
		float sw = P.face_w / L.mouth_a + 0.2f;
		paint(&C, &sh, &MF, -sw, sw, -30, L.chin_y - P.mouth_y + 8, scale3(hair, 0.8f), op, 1, 1, &tx);
	}
	if (P.beard == BEARD_GOATEE) {
		frame F = sub(&MF, 0, P.lip_lo + L.gap_l + 6.5f, 0.36f, 7.0f, 1, 0);
		shape sh = mkshape(SH_ELLIPSE, &F);
		texture tx = {TEX_SPECKLE, 0.5f, {0}, 0, 0, 0};
		paint(&C, &sh, &F, -1, 1, -1, 1, scale3(hair, 0.8f), 0.75f * P.beard_dens, 2.0f, 1, &tx);
	}
	draw_mouth(&C, &V, &P, v, &L);
	if (P.beard == BEARD_MOUSTACHE || P.beard == BEARD_GOATEE || P.beard == BEARD_FULL) {
		frame F = sub(&MF, 0, 0, 1.12f, 1, 1, 0);
		shape sh = mkshape(SH_BAND, &F);
		sh.p[0] = -P.lip_up - 2.2f - L.gap_u, sh.p[2] = 2.5f + L.mcurve * 0.5f;
		sh.p[4] = 2.0f, sh.p[5] = 0, sh.p[6] = L.mouth_a * 1.12f;
		texture tx = {TEX_SPECKLE, 0.3f, {0}, 0, 0, 0};
		paint(&C, &sh, &F, -1, 1, -12, 6, scale3(hair, 0.8f), 0.9f * P.beard_dens, 1.2f, 1, &tx);
	}
	/* hair: locks beside the face, then the cap */
	if (long_hair) {
		shape sh = mkshape(SH_LOCKS, &PF);
		sh.geo = &G;
		sh.p[0] = 3.5f + 2.0f * P.hair_vol * 0.2f;
		sh.p[1] = 6.0f + P.hair_vol;
		sh.p[2] = P.hair_style == HAIR_MEDIUM ? G.yw + 22.0f : G.chy + 30.0f;
		sh.p[3] = G.yw - G.ay;
		float x0 = G.cx - G.ax - 20, x1 = G.cx + G.ax + 20;
		paint(&C, &sh, &PF, x0, x1, G.yw - G.ay, sh.p[2] + 2, hair, 1, 1, 1, &htx);
	}
	/* the cap, whose coverage is known since the start */
	C.hide = NULL;
	if (capbb[3] > capbb[1])
		blend(&C, capbb, C.capcov, hair, cap_op, 1, &cap_tx);
	if (P.glasses)
		draw_glasses(&C, &V, &P, &L);

	shade(&C, &V, &G, v, &Lt);
	camera(&C, v, out);
	free(ws);
	return 0;
}

int mfr_synth_render(const mfr_synth_face *f, uint64_t seed, uint64_t image, const mfr_synth_opts *o,
		     uint8_t *px, float lm[10], mfr_error *e)
{
	mfr_synth_var v;
	mfr_synth_vary(f, seed, image, o, &v);
	return mfr_synth_draw(f, &v, px, lm, e);
}
