/* maskaug.c — procedural 3-D face masks drawn onto face images (maskaug.h).
 *
 * The pipeline for one face: fit a 7-parameter posed model to the 5
 * landmarks (fit_pose); build the mask's surface as a grid over (s, t) —
 * s across from cheek to cheek, t down from the upper to the lower edge —
 * on a procedural head surface with the cloth tented over the nose and
 * hanging straight from the nose tip to the chin (build_mesh); project the
 * grid with perspective and rasterise its triangles into a visibility
 * buffer (depth and triangle per pixel) over the mask's bounding box only
 * (raster_tri); then evaluate the winning triangle's attribute planes,
 * texture, light and blend each covered pixel once, and draw ear loops or
 * straps (draw_cords). The light comes from the skin the mask leaves
 * visible (estimate_light).
 *
 * Model units: pixels of the ArcFace 112x112 layout at scale 1; origin at
 * the midpoint of the eyes; x toward image right, y down, z toward the
 * camera. Eye line y = 0, nose tip y = 20.1, mouth corners y = 40.7, chin
 * y ~ 63 (the ArcFace template's own proportions).
 *
 * What it is not: a general mesh renderer (one height-field-like surface,
 * no textures larger than a mask, affine interpolation inside triangles a
 * few pixels wide).
 */
#include <math.h> /* sqrt, fabs */
#include <stdlib.h>
#include <string.h>

#include "maskaug.h"      /* defines: mfr_maskaug_*, mfr_mask_templates */
#include "maskaug_impl.h" /* defines: tmpl, TMPL_*, mfr_maskaug_uv_lookup */
#include "record.h"       /* defines: MFR_STYLE_* */

#define PI 3.14159265358979323846

/* Hash domains: keep the decisions independent of each other and of other
 * tools' uses of the same seed. */
#define DOMAIN_SELECT 0x6d61736b2d73656cull /* "mask-sel" */
#define DOMAIN_PARAMS 0x6d61736b2d707261ull /* "mask-pra" */
#define DOMAIN_DERIVE 0x6d61736b2d646572ull /* "mask-der" */

/* ---- platform-stable math (IEEE basic operations and sqrt only) ---- */

static double m_sin(double x)
{
	x -= 2.0 * PI * (double)(long long)(x / (2.0 * PI) + (x >= 0 ? 0.5 : -0.5));
	if (x > PI / 2)
		x = PI - x;
	else if (x < -PI / 2)
		x = -PI - x;
	double x2 = x * x; /* Taylor to x^13 on [-pi/2, pi/2]: error below 1e-9 */
	return x * (1 + x2 * (-1.0 / 6 + x2 * (1.0 / 120 + x2 * (-1.0 / 5040 + x2 * (1.0 / 362880 +
	       x2 * (-1.0 / 39916800 + x2 * (1.0 / 6227020800.0)))))));
}
static double m_cos(double x) { return m_sin(x + PI / 2); }

/* atan by two reductions (x > 1: pi/2 - atan(1/x); x > tan(pi/12): pi/6 +
 * atan of the rotated argument) to |x| <= 0.268, then its series to x^17
 * (error below 1e-11). */
static double m_atan(double x)
{
	int neg = x < 0, inv;
	if (neg)
		x = -x;
	inv = x > 1;
	if (inv)
		x = 1 / x;
	double off = 0;
	if (x > 0.2679491924311228) {
		off = PI / 6;
		x = (x - 0.5773502691896258) / (1 + 0.5773502691896258 * x);
	}
	double x2 = x * x;
	double r = x * (1 - x2 * (1.0 / 3 - x2 * (1.0 / 5 - x2 * (1.0 / 7 - x2 * (1.0 / 9 - x2 * (1.0 / 11 -
		   x2 * (1.0 / 13 - x2 * (1.0 / 15 - x2 / 17))))))));
	r += off;
	if (inv)
		r = PI / 2 - r;
	return neg ? -r : r;
}
static double m_atan2(double y, double x)
{
	if (x > 0)
		return m_atan(y / x);
	if (x < 0)
		return y >= 0 ? m_atan(y / x) + PI : m_atan(y / x) - PI;
	return y > 0 ? PI / 2 : y < 0 ? -PI / 2 : 0;
}
/* sqrt is correctly rounded by IEEE 754: the same bits everywhere */
static double m_sqrt(double x) { return sqrt(x > 0 ? x : 0); }

static float clampf(float x, float lo, float hi) { return x < lo ? lo : x > hi ? hi : x; }
static float lerpf(float a, float b, float t) { return a + (b - a) * t; }
static int ifloor(float x)
{
	int i = (int)x;
	return i - (x < (float)i);
}
static float fractf(float x) { return x - (float)ifloor(x); }
static float smooth01(float x)
{
	x = clampf(x, 0, 1);
	return x * x * (3 - 2 * x);
}

/* lowbias32 finaliser: per-pixel grain and lattice noise. */
static uint32_t hash32(uint32_t key, uint32_t i)
{
	uint32_t x = key ^ (i * 0x9e3779b9u);
	x ^= x >> 16;
	x *= 0x7feb352du;
	x ^= x >> 15;
	x *= 0x846ca68bu;
	return x ^ (x >> 16);
}
static float hash01(uint32_t key, int x, int y)
{
	return (float)(hash32(key, (uint32_t)x * 73856093u ^ (uint32_t)y * 19349663u) >> 8) * (1.0f / 16777216.0f);
}
/* Value noise in [0,1): smooth interpolation of a hashed lattice. */
static float vnoise(uint32_t key, float x, float y)
{
	int ix = ifloor(x), iy = ifloor(y);
	float fx = x - (float)ix, fy = y - (float)iy;
	fx = fx * fx * (3 - 2 * fx);
	fy = fy * fy * (3 - 2 * fy);
	float a = hash01(key, ix, iy), b = hash01(key, ix + 1, iy);
	float c = hash01(key, ix, iy + 1), d = hash01(key, ix + 1, iy + 1);
	return lerpf(lerpf(a, b, fx), lerpf(c, d, fx), fy);
}

/* ---- the face model and the pose fit ---- */

/* The 5 landmarks of the model: eye centres, nose tip, mouth corners, with
 * depths of an average adult face (nose tip 18 units, about 32 mm, in front
 * of the eyes; mouth corners 5), and x, y such that the frontal view at
 * scale 1 puts them on the ArcFace template (relative to its eye midpoint
 * 55.913, 51.599): the template's offsets times (FOCAL - z) / FOCAL, which
 * undoes the perspective magnification of the nearer points. */
static const double model_lm[15] = {
	-17.6186, 0.0, 0.0, 17.6186, 0.0, 0.0, 0.1075, 19.3322, 18.0,
	-14.2043, 40.3136, 5.0, 14.6521, 40.1540, 5.0,
};

/* Distance from the camera to the model's origin, in model units: about
 * 0.8 m for a face 15 cm wide, a portrait distance; perspective makes the
 * near cheek larger than the far one at large yaw. */
#define FOCAL 450.0

typedef struct {
	double tx, ty, s, yaw, pitch, roll, ky; /* ky: vertical stretch of the model about the eye line */
	double R[9];
} pose;

static void pose_rot(pose *p)
{
	double cy = m_cos(p->yaw), sy = m_sin(p->yaw), cp = m_cos(p->pitch), sp = m_sin(p->pitch);
	double cr = m_cos(p->roll), sr = m_sin(p->roll);
	/* R = Rz(roll) Rx(pitch) Ry(yaw) */
	double A[9] = {cy, 0, sy, sp * sy, cp, -sp * cy, -cp * sy, sp, cp * cy};
	double Z[9] = {cr, -sr, 0, sr, cr, 0, 0, 0, 1};
	for (int i = 0; i < 3; i++)
		for (int j = 0; j < 3; j++)
			p->R[3 * i + j] = Z[3 * i] * A[j] + Z[3 * i + 1] * A[3 + j] + Z[3 * i + 2] * A[6 + j];
}

/* Image position (o[0], o[1]) and camera-frame depth o[2] (larger: nearer)
 * of model point X. */
static void project(const pose *p, const double X[3], double o[3])
{
	double x = X[0], y = X[1] * p->ky, z = X[2];
	double rx = p->R[0] * x + p->R[1] * y + p->R[2] * z;
	double ry = p->R[3] * x + p->R[4] * y + p->R[5] * z;
	double rz = p->R[6] * x + p->R[7] * y + p->R[8] * z;
	double k = p->s * FOCAL / (FOCAL - rz);
	o[0] = p->tx + k * rx;
	o[1] = p->ty + k * ry;
	o[2] = rz;
}

enum { NPAR = 7, NRES = 12 };

static void params_to_pose(const double *q, pose *p)
{
	p->tx = q[0], p->ty = q[1], p->s = q[2], p->yaw = q[3], p->pitch = q[4], p->roll = q[5], p->ky = q[6];
	pose_rot(p);
}

/* Residuals of parameter vector q: the 10 landmark differences in model
 * units, and two priors. The prior on ky (weight 8: a 10% stretch costs as
 * much as a 0.8-unit landmark error) keeps a long face from reading as a
 * pitched one; the weak prior on yaw and pitch (1 per radian) only breaks
 * ties when the landmarks are nearly symmetric. */
static void residuals(const double *q, const float lm[10], double s0, double *r)
{
	pose p;
	params_to_pose(q, &p);
	for (int i = 0; i < 5; i++) {
		double o[3];
		project(&p, model_lm + 3 * i, o);
		r[2 * i] = (o[0] - lm[2 * i]) / s0;
		r[2 * i + 1] = (o[1] - lm[2 * i + 1]) / s0;
	}
	r[10] = 8.0 * (q[6] - 1.0);
	r[11] = 1.0 * (q[3] * q[3] + q[4] * q[4]);
}

/* Solves the n x n system A x = b in place (partial pivoting); -1 if singular. */
static int solve(double *A, double *b, int n)
{
	for (int c = 0; c < n; c++) {
		int piv = c;
		for (int r = c + 1; r < n; r++)
			if (fabs(A[r * n + c]) > fabs(A[piv * n + c]))
				piv = r;
		if (fabs(A[piv * n + c]) < 1e-14)
			return -1;
		if (piv != c) {
			for (int k = 0; k < n; k++) {
				double t = A[c * n + k];
				A[c * n + k] = A[piv * n + k];
				A[piv * n + k] = t;
			}
			double t = b[c];
			b[c] = b[piv];
			b[piv] = t;
		}
		for (int r = c + 1; r < n; r++) {
			double f = A[r * n + c] / A[c * n + c];
			for (int k = c; k < n; k++)
				A[r * n + k] -= f * A[c * n + k];
			b[r] -= f * b[c];
		}
	}
	for (int c = n - 1; c >= 0; c--) {
		double v = b[c];
		for (int k = c + 1; k < n; k++)
			v -= A[c * n + k] * b[k];
		b[c] = v / A[c * n + c];
	}
	return 0;
}

static int fit_pose(const float *lm_in, pose *out, mfr_error *e)
{
	float tlm[10];
	const float *lm = lm_in;
	if (!lm) { /* the ArcFace template */
		static const float arc[10] = {38.2946f, 51.6963f, 73.5318f, 51.5014f, 56.0252f,
					      71.7366f, 41.5493f, 92.3655f, 70.7299f, 92.2041f};
		memcpy(tlm, arc, sizeof tlm);
		lm = tlm;
	}
	for (int i = 0; i < 10; i++)
		if (!(lm[i] == lm[i]) || fabs(lm[i]) > 1e6)
			return mfr_fail(e, "landmark %d is not a finite number", i / 2 + 1);
	double ex = lm[2] - lm[0], ey = lm[3] - lm[1];
	double mx = 0.5 * (lm[6] + lm[8] - lm[0] - lm[2]), my = 0.5 * (lm[7] + lm[9] - lm[1] - lm[3]);
	double iod = m_sqrt(ex * ex + ey * ey), emd = m_sqrt(mx * mx + my * my);
	if (iod < 6)
		return mfr_fail(e, "landmarks: eyes %.1f px apart (a face needs at least 6)", iod);
	if (emd < 0.3 * iod || emd > 4 * iod)
		return mfr_fail(e, "landmarks: eye-to-mouth distance %.1f px does not fit eyes %.1f px apart",
				emd, iod);
	if (ex * my - ey * mx <= 0.25 * iod * emd)
		return mfr_fail(e, "landmarks: the mouth is not below the eyes (left and right swapped?)");
	double s0 = 0.5 * (iod / 35.2372 + emd / 40.6859);
	double q[NPAR] = {0.5 * (lm[0] + lm[2]), 0.5 * (lm[1] + lm[3]), s0, 0, 0,
			  m_atan2(ey + lm[9] - lm[7], ex + lm[8] - lm[6]), 1};
	/* the model's eye midpoint is not the landmarks' when yawed; start the
	 * translation so that the projected eye midpoint lands on it */
	double r[NRES], lambda = 1e-3;
	residuals(q, lm, s0, r);
	double cost = 0;
	for (int i = 0; i < NRES; i++)
		cost += r[i] * r[i];
	for (int it = 0; it < 30; it++) {
		double J[NRES * NPAR], rr[NRES];
		for (int j = 0; j < NPAR; j++) {
			double h = j < 2 ? 1e-3 * s0 : j == 2 ? 1e-5 * s0 : 1e-5, qs = q[j];
			q[j] = qs + h;
			residuals(q, lm, s0, rr);
			q[j] = qs;
			for (int i = 0; i < NRES; i++)
				J[i * NPAR + j] = (rr[i] - r[i]) / h;
		}
		double A[NPAR * NPAR], g[NPAR];
		for (int a = 0; a < NPAR; a++) {
			g[a] = 0;
			for (int i = 0; i < NRES; i++)
				g[a] -= J[i * NPAR + a] * r[i];
			for (int b = 0; b < NPAR; b++) {
				double v = 0;
				for (int i = 0; i < NRES; i++)
					v += J[i * NPAR + a] * J[i * NPAR + b];
				A[a * NPAR + b] = v;
			}
		}
		int improved = 0;
		for (int tries = 0; tries < 8 && !improved; tries++) {
			double M[NPAR * NPAR], d[NPAR], qn[NPAR];
			memcpy(M, A, sizeof M);
			memcpy(d, g, sizeof d);
			for (int a = 0; a < NPAR; a++)
				M[a * NPAR + a] += lambda * (A[a * NPAR + a] + 1e-9);
			if (solve(M, d, NPAR) < 0) {
				lambda *= 10;
				continue;
			}
			for (int a = 0; a < NPAR; a++)
				qn[a] = q[a] + d[a];
			/* keep the pose physical: |yaw| < 80, |pitch| < 60 degrees, ky 0.7..1.4 */
			qn[3] = qn[3] < -1.4 ? -1.4 : qn[3] > 1.4 ? 1.4 : qn[3];
			qn[4] = qn[4] < -1.05 ? -1.05 : qn[4] > 1.05 ? 1.05 : qn[4];
			qn[6] = qn[6] < 0.7 ? 0.7 : qn[6] > 1.4 ? 1.4 : qn[6];
			if (!(qn[2] > 0.1 * s0))
				qn[2] = 0.1 * s0;
			double rn[NRES], cn = 0;
			residuals(qn, lm, s0, rn);
			for (int i = 0; i < NRES; i++)
				cn += rn[i] * rn[i];
			if (cn < cost) {
				memcpy(q, qn, sizeof qn);
				memcpy(r, rn, sizeof rn);
				improved = cost - cn > 1e-10 * (1 + cost) ? 1 : 2;
				cost = cn;
				lambda = lambda * 0.3 < 1e-7 ? 1e-7 : lambda * 0.3;
			} else {
				lambda *= 10;
			}
		}
		if (improved != 1)
			break;
	}
	for (int a = 0; a < NPAR; a++)
		if (!(q[a] == q[a]))
			return mfr_fail(e, "landmarks: the pose fit did not converge");
	params_to_pose(q, out);
	return 0;
}

int mfr_maskaug_pose(const float lm[10], mfr_maskaug_info *info, mfr_error *e)
{
	pose p;
	if (fit_pose(lm, &p, e) < 0)
		return -1;
	memset(info, 0, sizeof *info);
	info->yaw = (float)(p.yaw * 180 / PI);
	info->pitch = (float)(p.pitch * 180 / PI);
	info->roll = (float)(p.roll * 180 / PI);
	info->scale = (float)p.s;
	return 0;
}

/* ---- the head surface ---- */

/* The head's centre line and width by the nominal height q. Above the chin
 * q is the height y itself; below it (q > 60) q runs on under the chin,
 * where the surface turns back toward the neck: y grows slowly and z falls.
 * Columns: q, y, z of the front profile (without the nose), half-width a. */
static const float profile_tab[][4] = {
	{-40, -40, -2, 44}, {-20, -20, 2, 46.5}, {-10, -10, 3, 47}, {0, 0, 2.5, 47},
	{10, 10, 3, 46.5}, {20, 20, 6, 45.5}, {30, 30, 9, 44}, {40, 40, 9, 41},
	{48, 48, 7.5, 37}, {55, 55, 6.5, 31.5}, {60, 59.3, 4.5, 28}, {65, 62.6, 0.5, 26},
	{70, 64.8, -4, 25.5}, {75, 66.3, -8.8, 25.5}, {85, 68.3, -18.6, 25.5}, {100, 70.5, -33, 25.5},
};
/* The nose above the profile: q, height, half-width at its base. */
static const float nose_tab[][3] = {
	{-4, 0, 7}, {2, 2.5, 8}, {8, 6, 9.5}, {14, 9.5, 11}, {20, 12, 13}, {23, 7, 14}, {27, 0, 14},
};

static void table_at(const float *tab, int rows, int cols, float q, float *out)
{
	int i = 0;
	if (q <= tab[0]) {
		for (int c = 1; c < cols; c++)
			out[c - 1] = tab[c];
		return;
	}
	while (i < rows - 2 && q > tab[(i + 1) * cols])
		i++;
	const float *a = tab + i * cols, *b = a + cols;
	float t = clampf((q - a[0]) / (b[0] - a[0]), 0, 1);
	for (int c = 1; c < cols; c++)
		out[c - 1] = lerpf(a[c], b[c], t);
}

/* How a mask sits on the head (built from the style and params). */
typedef struct {
	int style;        /* MFR_STYLE_*, or 0 for the bare face surface (UV templates) */
	float phimax;     /* azimuth reached at s = +-1 (radians) */
	float phishift;   /* sideways slip (radians) */
	float tc, tside;  /* upper edge: q at the centre, rise toward the sides */
	float bc, bside;  /* lower edge: q at the centre (under the chin), q at the sides */
	float standoff;   /* distance from the skin */
	float nose_k;     /* width factor of the cloth tent over the nose */
	float bridge;     /* 0..1: how straight the cloth hangs from the nose tip to the chin */
	float ridge;      /* KN95: height of the vertical fold */
	float wide, high; /* physical size: arc width and height, for textures */
} shape;

/* Upper and lower edge (in q) at |s| = a. */
static void shape_edges(const shape *sh, float a, float *top, float *bot)
{
	a = clampf(a, 0, 1);
	float u = 1 - a;
	switch (sh->style) {
	case MFR_STYLE_N95: {
		float el = 1 - (float)m_sqrt(1.0 - (double)a * a); /* elliptical cup */
		*top = sh->tc + (sh->tside - sh->tc) * el;
		*bot = sh->bc + (sh->bside - sh->bc) * el;
		break;
	}
	case MFR_STYLE_KN95:
		*top = sh->tc + (sh->tside - sh->tc) * a;
		*bot = sh->bc + (sh->bside - sh->bc) * a * (0.6f + 0.4f * a);
		break;
	case MFR_STYLE_CLOTH:
		*top = sh->tc + (sh->tside - sh->tc) * (1 - u * u * u);
		*bot = sh->bc + (sh->bside - sh->bc) * a * a;
		break;
	case MFR_STYLE_SURGICAL:
		*top = sh->tc + (sh->tside - sh->tc) * (1 - u * u);
		*bot = sh->bc + (sh->bside - sh->bc) * a * a * (1 + a) * 0.5f;
		break;
	default: /* the bare surface: a rectangle in (azimuth, q) */
		*top = sh->tc;
		*bot = sh->bc;
	}
}

static void make_shape(const mfr_maskaug_params *p, shape *sh)
{
	float deg = (float)(PI / 180);
	memset(sh, 0, sizeof *sh);
	sh->style = p->style;
	sh->phishift = p->shift * 4 * deg;
	sh->standoff = 0.5f + 1.3f * p->fit;
	sh->nose_k = 1.35f + 0.5f * p->fit;
	sh->bridge = 0.55f + 0.45f * p->fit;
	switch (p->style) {
	case MFR_STYLE_SURGICAL:
		sh->phimax = (64 + 18 * p->width) * deg;
		sh->tc = 6.5f + 5 * p->top, sh->tside = sh->tc + 8.5f;
		sh->bc = 66 + 8 * p->bottom, sh->bside = 43 + 3 * p->bottom;
		break;
	case MFR_STYLE_N95:
		sh->phimax = (50 + 10 * p->width) * deg;
		sh->tc = 7 + 4 * p->top, sh->tside = 34;
		sh->bc = 65 + 6 * p->bottom, sh->bside = 41;
		sh->standoff += 1.8f; /* a moulded cup stands off the face */
		sh->bridge = 0.9f + 0.1f * p->fit;
		sh->nose_k += 0.4f;
		break;
	case MFR_STYLE_KN95:
		sh->phimax = (58 + 14 * p->width) * deg;
		sh->tc = 6.5f + 5 * p->top, sh->tside = sh->tc + 15;
		sh->bc = 67 + 6 * p->bottom, sh->bside = 42;
		sh->ridge = 2.5f + 1.5f * p->fit;
		sh->bridge = 0.85f + 0.15f * p->fit;
		break;
	case MFR_STYLE_CLOTH:
		sh->phimax = (62 + 14 * p->width) * deg;
		sh->tc = 7 + 4.5f * p->top, sh->tside = sh->tc + 10;
		sh->bc = 66 + 6 * p->bottom, sh->bside = 46;
		break;
	default: /* UV templates: the skin itself, eyes to under the chin */
		sh->style = 0;
		sh->phimax = 88 * deg;
		sh->tc = -12, sh->bc = 80;
		sh->standoff = 0.3f;
		sh->nose_k = 1, sh->bridge = 0;
	}
	sh->wide = sh->phimax * 44;
	sh->high = sh->bc - sh->tc;
}

/* Model point of the head surface (plus the mask's tent and standoff) at
 * azimuth phi and nominal height q; s is the mask's across coordinate (for
 * the KN95 fold). */
static void surface_point(const shape *sh, double phi, float q, float s, double X[3])
{
	float pr[3], nz[2];
	table_at(&profile_tab[0][0], (int)(sizeof profile_tab / sizeof profile_tab[0]), 4, q, pr);
	double sp = m_sin(phi), cp = m_cos(phi);
	double a = pr[2], b = 0.8 * a;
	double x = a * sp, z = pr[1] - b * (1 - cp);
	/* the nose, widened into a tent of cloth by nose_k */
	table_at(&nose_tab[0][0], (int)(sizeof nose_tab / sizeof nose_tab[0]), 3, q, nz);
	double w = nz[1] * sh->nose_k, r = fabs(x) / w;
	double h = nz[0];
	/* below the tip the cloth hangs on the line from the tip (q 20, z 18) to
	 * the chin (q 57, z 7.5), instead of following the lips */
	if (sh->bridge > 0 && q > 20 && q < 60) {
		double line = 18 + (7.5 - 18) * (q - 20) / 37.0;
		double over = line - pr[1] - h;
		if (over > 0) {
			double wb = 30 + 6 * sh->standoff;
			double rb = fabs(x) / wb;
			if (rb < 1)
				z += sh->bridge * over * (1 - rb) * (1 - rb);
		}
	}
	if (r < 1)
		z += h * (1 - r) * (1 - r);
	if (sh->ridge > 0) {
		double u = 1 - fabs(s);
		z += sh->ridge * (u > 0 ? u * u : 0);
	}
	x += sh->standoff * sp;
	z += sh->standoff * cp;
	X[0] = x, X[1] = pr[0], X[2] = z;
}

/* ---- meshing and rasterising ---- */

/* Grid vertices across and down. The grid grows with the face's size so
 * that triangles stay about 5 px wide: 17x9 up to 1.3x the ArcFace scale
 * (the usual 112x112 crop), up to 41x21 for large photographs. */
enum { MAX_NS = 41, MAX_NT = 21 };

typedef struct {
	float x, y, z;      /* image position, camera depth */
	float s, t;         /* mask coordinates */
	float light, facing;
	float mx, my;       /* model x, y (UV templates) */
	float hl;           /* the mask's height (q units) at this s, for edge distances */
} vert;

/* The visibility buffer: per pixel the depth and the triangle seen there
 * (-1: none). Attributes are evaluated afterwards, once per covered pixel,
 * from the triangle's planes, so the raster loop writes 8 bytes a pixel. */
typedef struct {
	float z;
	int32_t tri;
} frag;

/* A pixel of the mask layer: colour times coverage and coverage, 8.8 fixed
 * point (coverage 0..256). The same size as a frag, so the layer can be
 * written over the visibility buffer. */
typedef struct {
	uint16_t c[3], a;
} layer_px;
typedef char layer_fits_frag[sizeof(layer_px) == sizeof(frag) ? 1 : -1];

/* Blurs the W x H layer (at bb[0], bb[1] of the w-wide image rgb) with the
 * separable kernel [1 2 1] / 4 in both directions, taking pixels outside
 * as empty, and blends the result into rgb; the coverage goes to alpha
 * (when not NULL) and is summed into *cover. tmp: room for 12 W + 8 16-bit
 * words. Integer arithmetic, each pass rounded to nearest; the loops are
 * plain enough for the compiler to vectorise. */
static void blur_blend(layer_px *L, size_t W, size_t H, uint16_t *tmp, uint8_t *rgb, int w, const int bb[4],
		       uint8_t *alpha, double *cover)
{
	uint16_t *d = (uint16_t *)(void *)L;
	size_t n = 4 * W;
	uint16_t *pad = tmp; /* a row with one empty pixel each side */
	pad[0] = pad[1] = pad[2] = pad[3] = 0;
	pad[n + 4] = pad[n + 5] = pad[n + 6] = pad[n + 7] = 0;
	for (size_t y = 0; y < H; y++) {
		uint16_t *r = d + y * n;
		memcpy(pad + 4, r, n * sizeof *r);
		for (size_t i = 0; i < n; i++)
			r[i] = (uint16_t)((pad[i] + 2u * pad[i + 4] + pad[i + 8] + 2) >> 2);
	}
	uint16_t *out = tmp + n + 8, *zero = out + n;
	memset(zero, 0, n * sizeof *zero);
	uint32_t sum = 0;
	for (size_t y = 0; y < H; y++) {
		const uint16_t *r = d + y * n, *up = y > 0 ? r - n : zero, *dn = y + 1 < H ? r + n : zero;
		for (size_t i = 0; i < n; i++)
			out[i] = (uint16_t)((up[i] + 2u * r[i] + dn[i] + 2) >> 2);
		size_t k0 = (size_t)(bb[1] + (int)y) * (size_t)w + (size_t)bb[0];
		uint8_t *px = rgb + 3 * k0;
		for (size_t x = 0; x < W; x++, px += 3) {
			const uint16_t *o = out + 4 * x;
			if (!o[3])
				continue;
			for (int c = 0; c < 3; c++)
				px[c] = (uint8_t)((px[c] * (256u - o[3]) + o[c] + 128) >> 8);
			if (alpha) {
				unsigned v = (o[3] * 255u + 128) >> 8;
				if (v > alpha[k0 + x])
					alpha[k0 + x] = (uint8_t)v;
			}
			sum += o[3];
		}
	}
	*cover += sum / 256.0;
}

/* Each attribute of a triangle as a plane over the image, a*x + b*y + c. */
enum { A_S, A_T, A_LIGHT, A_FACING, A_HL, A_MX, A_MY, N_ATTR };
typedef struct {
	float p[N_ATTR][3];
	float igs, igt; /* 1 / screen-space gradient lengths of s and t: pixels per unit */
} tri_planes;

typedef struct {
	float L[3];      /* light direction, camera frame, unit */
	float amb, dif;  /* ambient and diffuse shares */
	float gain[3];   /* exposure times the colour cast of the scene, per channel */
} lighting;

/* The mesh of shape sh under pose p, margins ms, mt beyond the mask's
 * domain so its edge pixels get their soft coverage. */
static void build_mesh(const shape *sh, const pose *p, const lighting *li, float ms, float mt, int ni, int nj,
		       vert *v)
{
	double P[MAX_NS * MAX_NT][3];
	for (int j = 0; j < nj; j++) {
		float t = -mt + (1 + 2 * mt) * (float)j / (float)(nj - 1);
		for (int i = 0; i < ni; i++) {
			float s = -1 - ms + (2 + 2 * ms) * (float)i / (float)(ni - 1);
			float top, bot;
			shape_edges(sh, s < 0 ? -s : s, &top, &bot);
			float q = top + (bot - top) * t;
			double phi = sh->phimax * s + sh->phishift;
			surface_point(sh, phi, q, s, P[j * ni + i]);
			vert *o = &v[j * ni + i];
			o->s = s, o->t = t;
			o->mx = (float)P[j * ni + i][0], o->my = (float)P[j * ni + i][1];
			o->hl = bot - top;
		}
	}
	for (int j = 0; j < nj; j++) {
		for (int i = 0; i < ni; i++) {
			const double *X = P[j * ni + i];
			int i0 = i > 0 ? i - 1 : i, i1 = i < ni - 1 ? i + 1 : i;
			int j0 = j > 0 ? j - 1 : j, j1 = j < nj - 1 ? j + 1 : j;
			const double *a = P[j * ni + i0], *b = P[j * ni + i1], *c = P[j0 * ni + i], *d = P[j1 * ni + i];
			double du[3] = {b[0] - a[0], (b[1] - a[1]) * p->ky, b[2] - a[2]};
			double dv[3] = {d[0] - c[0], (d[1] - c[1]) * p->ky, d[2] - c[2]};
			/* s runs toward +x and t toward +y, so du x dv points toward +z (outward) */
			double n[3] = {du[1] * dv[2] - du[2] * dv[1], du[2] * dv[0] - du[0] * dv[2],
				       du[0] * dv[1] - du[1] * dv[0]};
			double nl = m_sqrt(n[0] * n[0] + n[1] * n[1] + n[2] * n[2]);
			if (nl > 0)
				n[0] /= nl, n[1] /= nl, n[2] /= nl;
			double nc[3];
			for (int k = 0; k < 3; k++)
				nc[k] = p->R[3 * k] * n[0] + p->R[3 * k + 1] * n[1] + p->R[3 * k + 2] * n[2];
			double o[3];
			project(p, X, o);
			/* toward the camera from the point (camera at z = FOCAL on the axis) */
			double rx = p->R[0] * X[0] + p->R[1] * X[1] * p->ky + p->R[2] * X[2];
			double ry = p->R[3] * X[0] + p->R[4] * X[1] * p->ky + p->R[5] * X[2];
			double vx = -rx, vy = -ry, vz = FOCAL - o[2];
			double vl = m_sqrt(vx * vx + vy * vy + vz * vz);
			vert *w = &v[j * ni + i];
			w->x = (float)o[0], w->y = (float)o[1], w->z = (float)o[2];
			w->facing = (float)((nc[0] * vx + nc[1] * vy + nc[2] * vz) / vl);
			double nd = nc[0] * li->L[0] + nc[1] * li->L[1] + nc[2] * li->L[2];
			w->light = li->amb + li->dif * (float)(nd > 0 ? nd : 0);
		}
	}
}

/* The bounding box of a mesh, clipped to the image; 0 when empty. */
static int mesh_box(const vert *v, int n, int w, int h, int bb[4])
{
	float x0 = 1e30f, y0 = 1e30f, x1 = -1e30f, y1 = -1e30f;
	for (int i = 0; i < n; i++) {
		x0 = v[i].x < x0 ? v[i].x : x0, x1 = v[i].x > x1 ? v[i].x : x1;
		y0 = v[i].y < y0 ? v[i].y : y0, y1 = v[i].y > y1 ? v[i].y : y1;
	}
	bb[0] = x0 < 0 ? 0 : x0 > (float)w ? w : ifloor(x0);
	bb[1] = y0 < 0 ? 0 : y0 > (float)h ? h : ifloor(y0);
	bb[2] = x1 >= (float)(w - 1) ? w - 1 : x1 < 0 ? -1 : ifloor(x1) + 1;
	bb[3] = y1 >= (float)(h - 1) ? h - 1 : y1 < 0 ? -1 : ifloor(y1) + 1;
	return bb[2] >= bb[0] && bb[3] >= bb[1];
}

/* Rasterises triangle number id (front faces only) into the visibility
 * buffer fr covering box bb, and sets up its attribute planes in *tp;
 * pixel centres at integer coordinates. */
static void raster_tri(const vert *a, const vert *b, const vert *c, int32_t id, tri_planes *tp, frag *fr,
		       const int bb[4])
{
	float area = (b->x - a->x) * (c->y - a->y) - (b->y - a->y) * (c->x - a->x);
	if (!(area > 1e-6f))
		return; /* back-facing or degenerate */
	float minx = a->x < b->x ? a->x : b->x, maxx = a->x > b->x ? a->x : b->x;
	float miny = a->y < b->y ? a->y : b->y, maxy = a->y > b->y ? a->y : b->y;
	minx = c->x < minx ? c->x : minx, maxx = c->x > maxx ? c->x : maxx;
	miny = c->y < miny ? c->y : miny, maxy = c->y > maxy ? c->y : maxy;
	int x0 = ifloor(minx) + 1, x1 = ifloor(maxx), y0 = ifloor(miny) + 1, y1 = ifloor(maxy);
	if (minx == (float)ifloor(minx))
		x0--;
	if (miny == (float)ifloor(miny))
		y0--;
	x0 = x0 < bb[0] ? bb[0] : x0, x1 = x1 > bb[2] ? bb[2] : x1;
	y0 = y0 < bb[1] ? bb[1] : y0, y1 = y1 > bb[3] ? bb[3] : y1;
	if (x0 > x1 || y0 > y1)
		return;
	float inv = 1 / area;
	/* barycentric weights as planes: w0 = A0 x + B0 y + C0, likewise w1 */
	float A0 = -(c->y - b->y) * inv, B0 = (c->x - b->x) * inv;
	float C0 = ((c->y - b->y) * b->x - (c->x - b->x) * b->y) * inv;
	float A1 = -(a->y - c->y) * inv, B1 = (a->x - c->x) * inv;
	float C1 = ((a->y - c->y) * c->x - (a->x - c->x) * c->y) * inv;
	const float va[N_ATTR] = {a->s, a->t, a->light, a->facing, a->hl, a->mx, a->my};
	const float vb[N_ATTR] = {b->s, b->t, b->light, b->facing, b->hl, b->mx, b->my};
	const float vc[N_ATTR] = {c->s, c->t, c->light, c->facing, c->hl, c->mx, c->my};
	for (int k = 0; k < N_ATTR; k++) {
		float d0 = va[k] - vc[k], d1 = vb[k] - vc[k];
		tp->p[k][0] = A0 * d0 + A1 * d1;
		tp->p[k][1] = B0 * d0 + B1 * d1;
		tp->p[k][2] = C0 * d0 + C1 * d1 + vc[k];
	}
	float gs = (float)m_sqrt((double)(tp->p[A_S][0] * tp->p[A_S][0] + tp->p[A_S][1] * tp->p[A_S][1]));
	float gt = (float)m_sqrt((double)(tp->p[A_T][0] * tp->p[A_T][0] + tp->p[A_T][1] * tp->p[A_T][1]));
	tp->igs = 1 / (gs > 1e-6f ? gs : 1e-6f);
	tp->igt = 1 / (gt > 1e-6f ? gt : 1e-6f);
	float dz0 = a->z - c->z, dz1 = b->z - c->z;
	float Az = A0 * dz0 + A1 * dz1, Bz = B0 * dz0 + B1 * dz1, Cz = C0 * dz0 + C1 * dz1 + c->z;
	int W = bb[2] - bb[0] + 1;
	const float eps = -1e-4f; /* shared edges: a pixel on one is drawn by both, never by neither */
	for (int y = y0; y <= y1; y++) {
		float py = (float)y, px = (float)x0;
		float w0 = A0 * px + B0 * py + C0, w1 = A1 * px + B1 * py + C1, z = Az * px + Bz * py + Cz;
		frag *f = &fr[(y - bb[1]) * W + (x0 - bb[0])];
		for (int x = x0; x <= x1; x++, f++, w0 += A0, w1 += A1, z += Az) {
			if (w0 < eps || w1 < eps || 1 - w0 - w1 < eps || z <= f->z)
				continue;
			f->z = z;
			f->tri = id;
		}
	}
}

/* ---- lighting from the visible skin ---- */

/* Mean colour of a (2r+1)^2 patch around (x, y); 0 when it leaves the image. */
static int patch(const uint8_t *rgb, int w, int h, double x, double y, int r, float out[3])
{
	int cx = (int)(x + 0.5), cy = (int)(y + 0.5);
	if (cx - r < 0 || cy - r < 0 || cx + r >= w || cy + r >= h)
		return 0;
	float sum[3] = {0, 0, 0};
	for (int j = cy - r; j <= cy + r; j++)
		for (int i = cx - r; i <= cx + r; i++)
			for (int k = 0; k < 3; k++)
				sum[k] += rgb[((size_t)j * (size_t)w + (size_t)i) * 3 + (size_t)k];
	float n = (float)((2 * r + 1) * (2 * r + 1));
	for (int k = 0; k < 3; k++)
		out[k] = sum[k] / n;
	return 1;
}

/* Estimates the light from skin the mask will not cover: under each eye,
 * beside the eyes and on the forehead. Left/right brightness sets the
 * light's azimuth, the overall level the exposure, and the skin's colour
 * against an average skin colour the scene's cast. */
static void estimate_light(const uint8_t *rgb, int w, int h, const pose *p, lighting *li)
{
	static const double pts[][3] = {
		{-23, 7, 0.5}, {23, 7, 0.5},       /* cheeks under the eyes */
		{-32, -3, -4}, {32, -3, -4},       /* temples beside the eyes */
		{-10, -20, 2.5}, {10, -20, 2.5},   /* forehead */
	};
	int r = (int)(1.5 * p->s + 0.5);
	r = r < 1 ? 1 : r > 12 ? 12 : r;
	float side[2] = {0, 0}, nside[2] = {0, 0}, mean[3] = {0, 0, 0};
	int n = 0;
	for (int i = 0; i < 6; i++) {
		double o[3];
		float c[3];
		project(p, pts[i], o);
		if (!patch(rgb, w, h, o[0], o[1], r, c))
			continue;
		float Y = 0.299f * c[0] + 0.587f * c[1] + 0.114f * c[2];
		if (Y < 12 || Y > 250)
			continue; /* hair, shadow or clipped highlights tell nothing */
		for (int k = 0; k < 3; k++)
			mean[k] += c[k];
		n++;
		side[i & 1] += Y, nside[i & 1] += 1;
	}
	float lx = 0;
	if (nside[0] > 0 && nside[1] > 0) {
		float yl = side[0] / nside[0], yr = side[1] / nside[1];
		lx = clampf(2.5f * (yr - yl) / (yr + yl + 1), -0.85f, 0.85f);
	}
	float L[3] = {lx, -0.35f, 1};
	float l = (float)m_sqrt((double)(L[0] * L[0] + L[1] * L[1] + L[2] * L[2]));
	for (int k = 0; k < 3; k++)
		li->L[k] = L[k] / l;
	li->amb = 0.42f, li->dif = 0.58f;
	float Ysk = 150, cast[3] = {1, 1, 1};
	if (n > 0) {
		for (int k = 0; k < 3; k++)
			mean[k] /= (float)n;
		Ysk = 0.299f * mean[0] + 0.587f * mean[1] + 0.114f * mean[2];
		/* an average skin reflects about 1 : 0.80 : 0.68 (R:G:B); what departs
		 * from that is taken half as the light's colour, half as the person's */
		static const float ref[3] = {1.0f, 0.80f, 0.68f};
		float refY = 0.299f * ref[0] + 0.587f * ref[1] + 0.114f * ref[2];
		for (int k = 0; k < 3; k++) {
			float c = (mean[k] / (Ysk + 1e-3f)) / (ref[k] / refY);
			cast[k] = clampf(1 + 0.5f * (c - 1), 0.85f, 1.15f);
		}
	}
	/* exposure: skin at Y 165 under the frontal light is a normally exposed
	 * face; the square root leaves room for darker skin under good light */
	float expo = clampf((float)m_sqrt((double)(Ysk / 165)), 0.3f, 1.15f);
	float frontal = li->amb + li->dif * li->L[2];
	for (int k = 0; k < 3; k++)
		li->gain[k] = expo * cast[k] / frontal;
}

/* ---- materials ---- */

static const uint32_t pal_surgical[] = {0x86b4d8, 0xeceeec, 0x78bcaa, 0xe6acbe, 0x303034, 0xb6aad6, 0x9fc9e6};
static const uint32_t pal_n95[] = {0xeeece6, 0xe2ded2, 0xcdcfd0, 0xbed0de};
static const uint32_t pal_kn95[] = {0xf0f0ee, 0x28282c, 0x96989c, 0xe8b6c4, 0x6e96c8};
static const uint32_t pal_cloth[] = {0x28345a, 0x1e1e20, 0xaa282d, 0x78787d, 0x465f8c, 0x646e46,
				     0xc8b9a0, 0x6e2332, 0xc8a032, 0xe6e4de, 0x28787d, 0xdc8296};
static const uint32_t pal_accent[] = {0xf2f0ea, 0x18181a, 0xd8303a, 0xf0c830, 0x8cc0e8, 0xf0a0b8, 0x1e2850, 0x40a050};
static const uint32_t pal_strap[] = {0xf0f0f0, 0xe8c840, 0x4a78c0, 0xe08030};
static const uint32_t pal_valve[] = {0xe07828, 0x5a5c5f, 0xebebeb, 0x7890a8};
#define NPAL(a) ((int)(sizeof(a) / sizeof(a)[0]))

static const char *const cloth_patterns[] = {"plain", "stripes", "checks", "dots", "flowers", "camouflage", "melange"};
enum { N_CLOTH_PATTERNS = 7 };

typedef struct {
	float r, g, b;
} rgbf;
static rgbf hexrgb(uint32_t c)
{
	rgbf o = {(float)(c >> 16 & 255), (float)(c >> 8 & 255), (float)(c & 255)};
	return o;
}
static rgbf mixc(rgbf a, rgbf b, float t)
{
	rgbf o = {lerpf(a.r, b.r, t), lerpf(a.g, b.g, t), lerpf(a.b, b.b, t)};
	return o;
}

typedef struct {
	const mfr_maskaug_params *p;
	const shape *sh;
	rgbf base, accent, third;
	uint32_t key;
	float dir_c, dir_s; /* cloth stripes: direction */
	float period;
} material;

static void make_material(const mfr_maskaug_params *p, const shape *sh, material *m)
{
	memset(m, 0, sizeof *m);
	m->p = p, m->sh = sh;
	m->key = (uint32_t)(p->key ^ p->key >> 32);
	mfr_rng r = {p->key ^ 0x6d6174ull};
	int c = p->colour;
	switch (p->style) {
	case MFR_STYLE_SURGICAL: m->base = hexrgb(pal_surgical[c % NPAL(pal_surgical)]); break;
	case MFR_STYLE_N95:
		m->base = hexrgb(pal_n95[c % NPAL(pal_n95)]);
		m->accent = hexrgb(pal_valve[mfr_rng_below(&r, NPAL(pal_valve))]);
		m->third = hexrgb(pal_strap[mfr_rng_below(&r, NPAL(pal_strap))]);
		break;
	case MFR_STYLE_KN95: m->base = hexrgb(pal_kn95[c % NPAL(pal_kn95)]); break;
	default: {
		m->base = hexrgb(pal_cloth[c % NPAL(pal_cloth)]);
		int a = (int)mfr_rng_below(&r, NPAL(pal_accent));
		m->accent = hexrgb(pal_accent[a]);
		m->third = hexrgb(pal_accent[(a + 1 + (int)mfr_rng_below(&r, NPAL(pal_accent) - 1)) % NPAL(pal_accent)]);
		/* an accent too close to the ground would make the pattern invisible */
		rgbf d = {m->accent.r - m->base.r, m->accent.g - m->base.g, m->accent.b - m->base.b};
		if (d.r * d.r + d.g * d.g + d.b * d.b < 60 * 60)
			m->accent = m->base.r + m->base.g + m->base.b > 380 ? hexrgb(0x202024) : hexrgb(0xf0eee8);
		float ang = mfr_rng_below(&r, 3) == 0 ? 0.7854f : 0; /* a third of the stripes diagonal */
		m->dir_c = (float)m_cos(ang), m->dir_s = (float)m_sin(ang);
		m->period = 3.5f + 4 * (float)mfr_rng_uniform(&r);
	}
	}
}

/* Colour of the mask at (s, t) before lighting, and a shading factor for
 * relief (pleats, seams). X, Y: model units across and down the mask; e:
 * distance to the nearest edge in model units. */
static rgbf material_at(const material *m, float s, float t, float e, float *relief)
{
	const shape *sh = m->sh;
	float X = s * sh->wide * 0.5f, Y = t * sh->high;
	float mod = 1;
	rgbf c = m->base;
	switch (m->p->style) {
	case MFR_STYLE_SURGICAL: {
		float as = s < 0 ? -s : s;
		/* three pleats between the hems, gathered toward the side bindings */
		float pz = (t - 0.17f) / 0.66f * 3;
		if (pz > 0 && pz < 3 && as < 0.9f) {
			float f = fractf(pz);
			float gather = 1 - smooth01((as - 0.7f) / 0.2f);
			mod *= 1 + gather * 0.09f * (0.5f - f); /* each fold faces up at its top */
			float d = (1 - f) * sh->high * 0.66f / 3; /* units above the fold's lower crease */
			if (d < 1.6f) /* the crease: a dark line about a pixel wide at 112x112 */
				mod *= 1 - gather * 0.2f * (1 - d / 1.6f);
		}
		if (as > 0.9f || e < 2.2f) { /* bound hems, with a stitch line */
			mod *= 1.03f;
			float ds = as > 0.9f && (1 - as) * sh->wide * 0.5f < e ? (1 - as) * sh->wide * 0.5f : e;
			if (ds > 1.4f && ds < 1.9f)
				mod *= 0.9f;
		}
		if (t < 0.07f && as < 0.28f) /* the nose wire under the hem */
			mod *= 1.07f;
		break;
	}
	case MFR_STYLE_N95: {
		mod *= 0.97f + 0.06f * vnoise(m->key + 7, X * 0.5f, Y * 0.5f);
		if (e < 2.4f) /* the welded rim */
			mod *= e < 0.5f ? 0.9f : 0.95f;
		if (Y < 4.5f && X > -9 && X < 9) { /* the aluminium nose clip */
			c = hexrgb(0xb4b6ba);
			mod *= 1.0f + 0.12f * (1 - (X < 0 ? -X : X) / 9);
		}
		if (m->p->pattern == 1) { /* an exhalation valve on the wearer's left */
			float dx = X + 0.38f * sh->wide * 0.5f, dy = Y - 0.55f * sh->high;
			float d = (float)m_sqrt((double)(dx * dx + dy * dy));
			if (d < 7) {
				c = m->accent;
				mod *= d > 5.8f ? 0.75f : 0.95f + 0.1f * (1 - d / 5.8f);
				if (d < 3.5f && fractf((dy + 10) / 1.6f) < 0.45f)
					mod *= 0.8f; /* the cap's slots */
			}
		}
		break;
	}
	case MFR_STYLE_KN95: {
		float ax = X < 0 ? -X : X;
		if (ax < 0.5f)
			mod *= 0.78f; /* the welded centre fold */
		if (e > 1.3f && e < 2.1f) /* dotted weld seams along the edges */
			mod *= fractf((X + Y) / 1.3f) < 0.5f ? 0.86f : 0.97f;
		break;
	}
	case MFR_STYLE_CLOTH: {
		float u = X * m->dir_c + Y * m->dir_s, v = Y * m->dir_c - X * m->dir_s;
		switch (m->p->pattern) {
		case 1: /* stripes */
			if (fractf(u / m->period) < 0.42f)
				c = m->accent;
			break;
		case 2: { /* gingham checks */
			int a = fractf(X / m->period) < 0.5f, b = fractf(Y / m->period) < 0.5f;
			c = a && b ? mixc(m->base, m->accent, 0.85f) : a || b ? mixc(m->base, m->accent, 0.45f) : m->base;
			break;
		}
		case 3: { /* polka dots on a staggered grid */
			float P = m->period * 1.3f, gy = Y / P;
			int row = ifloor(gy);
			float gx = X / P + (row & 1) * 0.5f;
			float dx = (fractf(gx) - 0.5f) * P, dy = (fractf(gy) - 0.5f) * P;
			if (dx * dx + dy * dy < 0.09f * P * P)
				c = m->accent;
			break;
		}
		case 4: { /* flowers: blobs of two colours */
			float n = vnoise(m->key, X * 0.28f, Y * 0.28f);
			float n2 = vnoise(m->key + 3, X * 0.6f, Y * 0.6f);
			if (n > 0.66f)
				c = n2 > 0.55f ? m->third : m->accent;
			else if (n2 > 0.8f)
				c = mixc(m->base, hexrgb(0x3c8c46), 0.8f); /* leaves */
			break;
		}
		case 5: { /* camouflage: thresholded noise in four colours */
			static const uint32_t camo[4] = {0x4b5a32, 0x6e5a3c, 0x2d3723, 0xa5966e};
			float n = vnoise(m->key, X * 0.13f, Y * 0.13f) * 0.65f + vnoise(m->key + 9, X * 0.4f, Y * 0.4f) * 0.35f;
			c = hexrgb(camo[n < 0.36f ? 2 : n < 0.5f ? 0 : n < 0.63f ? 1 : 3]);
			break;
		}
		case 6: /* melange: heathered yarn */
			mod *= 0.86f + 0.28f * hash01(m->key, ifloor(X * 2.2f), ifloor(Y * 0.9f));
			break;
		default:
			break;
		}
		(void)v;
		/* the weave, the centre seam and hems */
		float ax = X < 0 ? -X : X;
		if (ax < 0.55f)
			mod *= 0.82f;
		if (e < 1.6f)
			mod *= 0.92f;
		break;
	}
	default:
		break;
	}
	*relief = mod;
	return c;
}

/* ---- user templates: MaskTheFace anchors, PRNet UV ---- */

/* Projective map H (3x3, row-major) taking src points to dst (n >= 4),
 * least squares on the normalised direct linear transform with h33 = 1. */
static int homography(const float *src, const float *dst, int n, double H[9])
{
	double A[64] = {0}, b[8] = {0};
	/* normalise both point sets (centroid, mean distance) for conditioning */
	double cs[2] = {0, 0}, cd[2] = {0, 0}, ss = 0, sd = 0;
	for (int i = 0; i < n; i++)
		cs[0] += src[2 * i], cs[1] += src[2 * i + 1], cd[0] += dst[2 * i], cd[1] += dst[2 * i + 1];
	cs[0] /= n, cs[1] /= n, cd[0] /= n, cd[1] /= n;
	for (int i = 0; i < n; i++) {
		double a = src[2 * i] - cs[0], c = src[2 * i + 1] - cs[1];
		ss += m_sqrt(a * a + c * c);
		a = dst[2 * i] - cd[0], c = dst[2 * i + 1] - cd[1];
		sd += m_sqrt(a * a + c * c);
	}
	if (ss <= 0 || sd <= 0)
		return -1;
	ss = n / ss, sd = n / sd;
	for (int i = 0; i < n; i++) {
		double x = (src[2 * i] - cs[0]) * ss, y = (src[2 * i + 1] - cs[1]) * ss;
		double u = (dst[2 * i] - cd[0]) * sd, v = (dst[2 * i + 1] - cd[1]) * sd;
		double r1[8] = {x, y, 1, 0, 0, 0, -u * x, -u * y}, r2[8] = {0, 0, 0, x, y, 1, -v * x, -v * y};
		for (int a = 0; a < 8; a++) {
			for (int c = 0; c < 8; c++)
				A[a * 8 + c] += r1[a] * r1[c] + r2[a] * r2[c];
			b[a] += r1[a] * u + r2[a] * v;
		}
	}
	if (solve(A, b, 8) < 0)
		return -1;
	/* undo the normalisations: H = Td^-1 Hn Ts */
	double Hn[9] = {b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7], 1};
	double Ts[9] = {ss, 0, -ss * cs[0], 0, ss, -ss * cs[1], 0, 0, 1};
	double Ti[9] = {1 / sd, 0, cd[0], 0, 1 / sd, cd[1], 0, 0, 1};
	double T[9];
	for (int i = 0; i < 3; i++)
		for (int j = 0; j < 3; j++)
			T[3 * i + j] = Hn[3 * i] * Ts[j] + Hn[3 * i + 1] * Ts[3 + j] + Hn[3 * i + 2] * Ts[6 + j];
	for (int i = 0; i < 3; i++)
		for (int j = 0; j < 3; j++)
			H[3 * i + j] = Ti[3 * i] * T[j] + Ti[3 * i + 1] * T[3 + j] + Ti[3 * i + 2] * T[6 + j];
	return 0;
}

static int invert3(const double M[9], double I[9])
{
	double d = M[0] * (M[4] * M[8] - M[5] * M[7]) - M[1] * (M[3] * M[8] - M[5] * M[6]) +
		   M[2] * (M[3] * M[7] - M[4] * M[6]);
	if (fabs(d) < 1e-18)
		return -1;
	I[0] = (M[4] * M[8] - M[5] * M[7]) / d, I[1] = (M[2] * M[7] - M[1] * M[8]) / d;
	I[2] = (M[1] * M[5] - M[2] * M[4]) / d, I[3] = (M[5] * M[6] - M[3] * M[8]) / d;
	I[4] = (M[0] * M[8] - M[2] * M[6]) / d, I[5] = (M[2] * M[3] - M[0] * M[5]) / d;
	I[6] = (M[3] * M[7] - M[4] * M[6]) / d, I[7] = (M[1] * M[6] - M[0] * M[7]) / d;
	I[8] = (M[0] * M[4] - M[1] * M[3]) / d;
	return 0;
}

/* Bilinear RGBA sample (straight alpha) at (x, y) in v; transparent outside. */
static void sample_rgba(const tmpl_view *v, float x, float y, float o[4])
{
	int ix = ifloor(x), iy = ifloor(y);
	float fx = x - (float)ix, fy = y - (float)iy;
	o[0] = o[1] = o[2] = o[3] = 0;
	for (int k = 0; k < 4; k++) {
		int xx = ix + (k & 1), yy = iy + (k >> 1);
		float wgt = ((k & 1) ? fx : 1 - fx) * ((k >> 1) ? fy : 1 - fy);
		if (xx < 0 || yy < 0 || xx >= v->w || yy >= v->h || wgt <= 0)
			continue;
		const uint8_t *p = v->rgba + ((size_t)yy * (size_t)v->w + (size_t)xx) * 4;
		float a = p[3] * wgt;
		o[0] += p[0] * a, o[1] += p[1] * a, o[2] += p[2] * a, o[3] += a;
	}
	if (o[3] > 0)
		o[0] /= o[3], o[1] /= o[3], o[2] /= o[3];
	o[3] /= 255;
}

/* Projected point of the head surface at (phi, q) for the bare-skin shape. */
static void head_point(const pose *p, double phi, float q, double o[3])
{
	shape bare;
	memset(&bare, 0, sizeof bare);
	bare.nose_k = 1;
	double X[3];
	surface_point(&bare, phi, q, 0, X);
	project(p, X, o);
}

/* The outline point of the face at height q on one side (dir +1: the
 * face's left as seen, i.e. image right at zero roll... taken along the
 * face's own horizontal axis): the projected head point furthest out along
 * that axis, which is the silhouette when the side turns away. */
static void outline_point(const pose *p, float q, int dir, float out[2])
{
	double ax = p->R[0], ay = p->R[3]; /* image direction of the model's x axis (roll) */
	double best = -1e30;
	for (int k = 0; k <= 40; k++) {
		double phi = dir * (PI / 180) * (2.5 * k);
		double o[3];
		head_point(p, phi, q, o);
		double d = dir * (o[0] * ax + o[1] * ay);
		if (d > best)
			best = d, out[0] = (float)o[0], out[1] = (float)o[1];
	}
}

/* ---- drawing ---- */

static void put_info_colour(mfr_maskaug_info *info, rgbf c)
{
	info->colour = (uint32_t)(c.r + 0.5f) << 16 | (uint32_t)(c.g + 0.5f) << 8 | (uint32_t)(c.b + 0.5f);
}

/* Blends colour (0..255 floats) with coverage a (0..1) into pixel px, in
 * 8.8 fixed point: exact at a = 0 and a = 1, within half a level between. */
static inline void blend_px(uint8_t *px, float r, float g, float b, float a)
{
	float c[3] = {r, g, b};
	int ia = (int)(a * 256 + 0.5f);
	for (int k = 0; k < 3; k++) {
		int v = (int)(c[k] < 0 ? 0 : c[k] > 255 ? 255 : c[k] + 0.5f);
		px[k] = (uint8_t)(px[k] + (((v - px[k]) * ia + 128) >> 8));
	}
}

static void note_alpha(uint8_t *alpha, size_t i, float a)
{
	if (alpha) {
		int v = (int)(a * 255 + 0.5f);
		if (v > alpha[i])
			alpha[i] = (uint8_t)v;
	}
}

/* An anti-aliased strap or loop along model polyline X (n points), drawn
 * where the head surface under it faces the camera. width in model units. */
static void draw_cord(uint8_t *rgb, int w, int h, uint8_t *alpha, const pose *p, const lighting *li,
		      double (*X)[3], const float *vis, int n, float width, rgbf col)
{
	float hw = (float)(0.5 * width * p->s);
	if (hw < 0.45f)
		hw = 0.45f; /* at least about a pixel wide */
	float shade = li->amb + li->dif * 0.8f, reach2 = (hw + 0.5f) * (hw + 0.5f);
	for (int i = 0; i + 1 < n; i++) {
		if (vis[i] <= 0 && vis[i + 1] <= 0)
			continue;
		double a[3], b[3];
		project(p, X[i], a);
		project(p, X[i + 1], b);
		float x0 = (float)(a[0] < b[0] ? a[0] : b[0]) - hw - 1, x1 = (float)(a[0] > b[0] ? a[0] : b[0]) + hw + 1;
		float y0 = (float)(a[1] < b[1] ? a[1] : b[1]) - hw - 1, y1 = (float)(a[1] > b[1] ? a[1] : b[1]) + hw + 1;
		int ix0 = ifloor(x0) < 0 ? 0 : ifloor(x0), iy0 = ifloor(y0) < 0 ? 0 : ifloor(y0);
		int ix1 = ifloor(x1) >= w ? w - 1 : ifloor(x1), iy1 = ifloor(y1) >= h ? h - 1 : ifloor(y1);
		float dx = (float)(b[0] - a[0]), dy = (float)(b[1] - a[1]);
		float len2 = dx * dx + dy * dy;
		for (int y = iy0; y <= iy1; y++)
			for (int x = ix0; x <= ix1; x++) {
				float px = (float)x - (float)a[0], py = (float)y - (float)a[1];
				float u = len2 > 0 ? clampf((px * dx + py * dy) / len2, 0, 1) : 0;
				float ex = px - u * dx, ey = py - u * dy, d2 = ex * ex + ey * ey;
				if (d2 >= reach2)
					continue; /* most of the box: no square root */
				float cov = clampf(hw + 0.5f - (float)m_sqrt((double)d2), 0, 1);
				float v = lerpf(vis[i], vis[i + 1], u);
				cov *= clampf(v * 4, 0, 1);
				if (cov <= 0)
					continue;
				cov *= 0.92f; /* thin elastic lets a little skin through */
				size_t k = (size_t)y * (size_t)w + (size_t)x;
				blend_px(rgb + 3 * k, col.r * shade * li->gain[0], col.g * shade * li->gain[1],
					 col.b * shade * li->gain[2], cov);
				note_alpha(alpha, k, cov); /* cords are not counted in the coverage */
			}
	}
}

/* Loops or straps from the mask's sides toward the ears. */
static void draw_cords(uint8_t *rgb, int w, int h, uint8_t *alpha, const pose *p, const lighting *li,
		       const shape *sh, const material *m)
{
	enum { N = 12 };
	int style = m->p->style;
	rgbf col = style == MFR_STYLE_SURGICAL ? hexrgb(0xf2f2f0) :
		   style == MFR_STYLE_N95 ? m->third :
		   style == MFR_STYLE_CLOTH ? mixc(m->base, hexrgb(0x000000), 0.15f) : m->base;
	float width = style == MFR_STYLE_N95 ? 2.2f : 1.0f;
	for (int side = -1; side <= 1; side += 2) {
		for (int k = 0; k < 2; k++) {
			/* start: the mask's corner; end: over the ear (upper cord), or
			 * behind the ear's lobe (lower) -- for N95 straps: round the
			 * back of the head above the ear, and down to the neck */
			float t0 = k == 0 ? (style == MFR_STYLE_N95 ? 0.3f : 0.04f) : (style == MFR_STYLE_N95 ? 0.8f : 0.96f);
			float s0 = style == MFR_STYLE_N95 ? 0.92f : 1.0f;
			float top, bot;
			shape_edges(sh, s0, &top, &bot);
			float q0 = top + (bot - top) * t0;
			double phi0 = side * (sh->phimax * s0) + sh->phishift;
			double phi1 = side * (style == MFR_STYLE_N95 ? 1.85 : 1.72);
			float q1 = style == MFR_STYLE_N95 ? (k == 0 ? -14.0f : 56.0f) : (k == 0 ? 12.0f : 32.0f);
			double X[N][3];
			float vis[N];
			for (int i = 0; i < N; i++) {
				float u = (float)i / (N - 1);
				double phi = phi0 + (phi1 - phi0) * u;
				float q = q0 + (q1 - q0) * u;
				shape cord;
				memset(&cord, 0, sizeof cord);
				cord.nose_k = 1, cord.standoff = 0.4f;
				surface_point(&cord, phi, q, 0, X[i]);
				/* facing of the head there: its outward direction (sin, 0, cos) */
				double n[3] = {m_sin(phi), 0, m_cos(phi)};
				double nz = p->R[6] * n[0] + p->R[7] * n[1] + p->R[8] * n[2];
				vis[i] = (float)(nz - 0.05); /* hidden a little before the limb */
			}
			draw_cord(rgb, w, h, alpha, p, li, X, vis, N, width, col);
		}
	}
}

static int draw_mtf(const tmpl *T, const pose *p, const lighting *li, uint8_t *rgb, int w, int h,
		    uint8_t *alpha, double *cover, mfr_error *e)
{
	int view = VIEW_FRONT;
	double yawd = p->yaw * 180 / PI;
	/* MaskTheFace's views: "_left" shows a face turned toward image left */
	if (yawd < -12 && T->view[VIEW_LEFT].rgba)
		view = VIEW_LEFT;
	else if (yawd > 12 && T->view[VIEW_RIGHT].rgba)
		view = VIEW_RIGHT;
	const tmpl_view *V = &T->view[view];
	float dst[12];
	double o[3];
	outline_point(p, 12, -1, dst + 0); /* a: cheek at the nose's middle, image left */
	head_point(p, 0, 9, o);            /* b: nose bridge */
	dst[2] = (float)o[0], dst[3] = (float)o[1];
	outline_point(p, 12, 1, dst + 4);  /* c */
	outline_point(p, 50, -1, dst + 6); /* d: jaw */
	head_point(p, 0, 64, o);           /* e: under the chin */
	dst[8] = (float)o[0], dst[9] = (float)o[1];
	outline_point(p, 50, 1, dst + 10); /* f */
	double H[9], Hi[9];
	if (homography(V->pt, dst, 6, H) < 0 || invert3(H, Hi) < 0)
		return mfr_fail(e, "template '%s': its anchors are degenerate", T->name);
	/* the template's corners in the image bound the pixels to visit */
	float x0 = 1e30f, y0 = 1e30f, x1 = -1e30f, y1 = -1e30f;
	for (int k = 0; k < 4; k++) {
		double X = (k & 1) ? V->w : 0, Y = (k >> 1) ? V->h : 0;
		double d = H[6] * X + H[7] * Y + H[8];
		if (d <= 1e-12)
			return mfr_fail(e, "template '%s': the face's pose folds it over", T->name);
		float u = (float)((H[0] * X + H[1] * Y + H[2]) / d), v = (float)((H[3] * X + H[4] * Y + H[5]) / d);
		x0 = u < x0 ? u : x0, x1 = u > x1 ? u : x1, y0 = v < y0 ? v : y0, y1 = v > y1 ? v : y1;
	}
	int ix0 = x0 < 0 ? 0 : ifloor(x0), iy0 = y0 < 0 ? 0 : ifloor(y0);
	int ix1 = x1 > (float)(w - 1) ? w - 1 : ifloor(x1) + 1, iy1 = y1 > (float)(h - 1) ? h - 1 : ifloor(y1) + 1;
	float g[3];
	for (int k = 0; k < 3; k++)
		g[k] = li->gain[k] * (li->amb + li->dif * li->L[2]);
	for (int y = iy0; y <= iy1; y++)
		for (int x = ix0; x <= ix1; x++) {
			double d = Hi[6] * x + Hi[7] * y + Hi[8];
			if (d <= 1e-12)
				continue;
			float u = (float)((Hi[0] * x + Hi[1] * y + Hi[2]) / d), v = (float)((Hi[3] * x + Hi[4] * y + Hi[5]) / d);
			float c[4];
			sample_rgba(V, u, v, c);
			if (c[3] <= 0)
				continue;
			size_t k = (size_t)y * (size_t)w + (size_t)x;
			blend_px(rgb + 3 * k, c[0] * g[0], c[1] * g[1], c[2] * g[2], c[3]);
			note_alpha(alpha, k, c[3]);
			*cover += c[3];
		}
	return 0;
}

int mfr_maskaug_draw(const mfr_maskaug *cfg, const mfr_maskaug_params *prm, uint8_t *rgb, int w, int h,
		     const float lm[10], uint8_t *alpha, mfr_maskaug_info *info, mfr_error *e)
{
	if (w < 16 || h < 16 || w > 16384 || h > 16384)
		return mfr_fail(e, "%dx%d pixels is not a face crop size (sides 16..16384)", w, h);
	if (!lm && (w != 112 || h != 112))
		return mfr_fail(e, "a %dx%d face without landmarks (only aligned 112x112 crops can do without)", w, h);
	const tmpl *T = NULL;
	if (prm->style == MFR_STYLE_USER) {
		if (!cfg || !cfg->templates || prm->tmpl < 0 || prm->tmpl >= cfg->templates->n)
			return mfr_fail(e, "user template %d is not loaded", prm->tmpl);
		T = &cfg->templates->t[prm->tmpl];
	} else if (prm->style < MFR_STYLE_SURGICAL || prm->style > MFR_STYLE_CLOTH) {
		return mfr_fail(e, "mask style %d is not defined", prm->style);
	}
	pose p;
	if (fit_pose(lm, &p, e) < 0)
		return -1;
	/* the face must be of a size and place an image can show */
	double o[3];
	project(&p, (const double[3]){0, 30, 0}, o);
	if (p.s * 35 > 8.0 * (w > h ? w : h) || o[0] < -w || o[0] > 2.0 * w || o[1] < -h || o[1] > 2.0 * h)
		return mfr_fail(e, "landmarks: the face lies outside the %dx%d image", w, h);
	if (alpha)
		memset(alpha, 0, (size_t)w * (size_t)h);
	lighting li;
	estimate_light(rgb, w, h, &p, &li);
	mfr_maskaug_info inf;
	memset(&inf, 0, sizeof inf);
	inf.style = prm->style;
	inf.yaw = (float)(p.yaw * 180 / PI), inf.pitch = (float)(p.pitch * 180 / PI);
	inf.roll = (float)(p.roll * 180 / PI), inf.scale = (float)p.s;
	double cover = 0;

	if (T && T->kind == TMPL_MTF) {
		if (draw_mtf(T, &p, &li, rgb, w, h, alpha, &cover, e) < 0)
			return -1;
		inf.colour = T->colour, inf.pattern = T->name;
		inf.coverage = (float)(cover / ((double)w * h));
		if (info)
			*info = inf;
		return 0;
	}

	shape sh;
	make_shape(prm, &sh);
	if (T)
		sh.style = 0; /* a UV texture lies on the skin surface */
	/* margins of about 1.5 px beyond the mask's edges, in (s, t) */
	float ms = clampf((float)(1.5 / (p.s * sh.wide * 0.5)), 0.002f, 0.2f);
	float mt = clampf((float)(1.5 / (p.s * sh.high)), 0.002f, 0.2f);
	int NS = p.s <= 1.3 ? 17 : p.s <= 2.5 ? 25 : p.s <= 4 ? 33 : MAX_NS;
	int NT = NS / 2 + 1;
	vert v[MAX_NS * MAX_NT];
	build_mesh(&sh, &p, &li, ms, mt, NS, NT, v);
	int bb[4];
	if (!mesh_box(v, NS * NT, w, h, bb)) {
		if (info)
			*info = inf;
		return 0; /* entirely outside the image */
	}
	size_t W = (size_t)(bb[2] - bb[0] + 1), Hh = (size_t)(bb[3] - bb[1] + 1);
	size_t NTRI = 2 * (size_t)(NS - 1) * (size_t)(NT - 1);
	/* one block for both buffers: at 112x112 it stays under glibc's mmap
	 * threshold (128 KiB), so no page faults per face */
	/* the planes' room doubles as the blur's row buffer afterwards */
	size_t nplanes = NTRI, tmp_bytes = (12 * W + 8) * sizeof(uint16_t);
	if (nplanes * sizeof(tri_planes) < tmp_bytes)
		nplanes = (tmp_bytes + sizeof(tri_planes) - 1) / sizeof(tri_planes);
	tri_planes *planes = mfr_malloc(nplanes * sizeof *planes + W * Hh * sizeof(frag), e);
	if (!planes)
		return -1;
	frag *fr = (frag *)(planes + nplanes);
	for (size_t i = 0; i < W * Hh; i++)
		fr[i].z = -1e30f, fr[i].tri = -1;
	for (int j = 0; j + 1 < NT; j++)
		for (int i = 0; i + 1 < NS; i++) {
			const vert *a = &v[j * NS + i], *b = &v[j * NS + i + 1];
			const vert *c = &v[(j + 1) * NS + i], *d = &v[(j + 1) * NS + i + 1];
			int32_t id = 2 * (j * (NS - 1) + i);
			/* s grows to image right and t downward, so a, b, c has
			 * positive area (x right, y down) when the surface faces us */
			raster_tri(a, b, c, id, &planes[id], fr, bb);
			raster_tri(b, d, c, id + 1, &planes[id + 1], fr, bb);
		}
	material m;
	make_material(prm, &sh, &m);
	if (!T) {
		put_info_colour(&inf, m.base);
		inf.pattern = prm->style == MFR_STYLE_SURGICAL ? "pleats" :
			      prm->style == MFR_STYLE_N95 ? (prm->pattern == 1 ? "valve" : "cup") :
			      prm->style == MFR_STYLE_KN95 ? "folded" :
			      cloth_patterns[prm->pattern >= 0 && prm->pattern < N_CLOTH_PATTERNS ? prm->pattern : 0];
	} else {
		inf.colour = T->colour, inf.pattern = T->name;
	}
	float isoft = 1 / (0.9f + 0.6f * prm->fit); /* edge ramp of 0.9..1.5 px: cloth edges are not knife-sharp */
	float grain = prm->style == MFR_STYLE_SURGICAL ? 0.06f : prm->style == MFR_STYLE_KN95 ? 0.07f : 0.1f;
	/* pass 1: the mask layer, premultiplied, written over the visibility
	 * buffer in place (a layer pixel is as large as a fragment and pixel i
	 * is read before it is written) */
	layer_px *lay = (layer_px *)fr;
	for (size_t yy = 0; yy < Hh; yy++)
		for (size_t xx = 0; xx < W; xx++) {
			const frag f = fr[yy * W + xx];
			layer_px *lp = &lay[yy * W + xx];
			memset(lp, 0, sizeof *lp);
			if (f.tri < 0)
				continue;
			const tri_planes *tp = &planes[f.tri];
			float X = (float)(bb[0] + (int)xx), Y = (float)(bb[1] + (int)yy);
#define ATTR(k) (tp->p[k][0] * X + tp->p[k][1] * Y + tp->p[k][2])
			float facing = ATTR(A_FACING), light = ATTR(A_LIGHT);
			float a;
			float col[3];
			if (T) {
				float u, vv, c[4];
				mfr_maskaug_uv_lookup(ATTR(A_MX), ATTR(A_MY), &u, &vv);
				sample_rgba(&T->view[0], u, vv, c);
				a = c[3] * clampf(facing * 6, 0, 1);
				for (int k = 0; k < 3; k++)
					col[k] = c[k] * light * li.gain[k];
			} else {
				float fs = ATTR(A_S), ft = ATTR(A_T);
				float as = fs < 0 ? -fs : fs;
				float ds = (1 - as) * tp->igs, dt = (ft < 1 - ft ? ft : 1 - ft) * tp->igt;
				float dpx = ds < dt ? ds : dt;
				a = clampf(0.5f + dpx * isoft, 0, 1) * clampf(facing * 6, 0, 1);
				if (a <= 0)
					continue;
				float eu = (1 - as) * sh.wide * 0.5f, et = (ft < 1 - ft ? ft : 1 - ft) * ATTR(A_HL);
				float relief;
				rgbf c = material_at(&m, fs, ft, eu < et ? eu : et, &relief);
				/* fibre grain, one hash a pixel: finer than any pattern */
				relief *= 1 + grain * (hash01(m.key, (int)xx, (int)yy) - 0.5f);
				float l = light * relief;
				col[0] = c.r * l * li.gain[0], col[1] = c.g * l * li.gain[1], col[2] = c.b * l * li.gain[2];
			}
#undef ATTR
			if (a <= 0)
				continue;
			int ia = (int)(a * 256 + 0.5f);
			lp->a = (uint16_t)ia;
			for (int k = 0; k < 3; k++) {
				int cv = (int)(col[k] < 0 ? 0 : col[k] > 255 ? 255 : col[k] + 0.5f);
				lp->c[k] = (uint16_t)(cv * ia);
			}
		}
	/* pass 2: a [1 2 1] blur of the layer (sigma 0.7 px) -- a camera's
	 * optics and JPEG never give a photograph edges or pleats sharper than
	 * that, and a mask drawn crisper than the face looks pasted on -- and
	 * the blend */
	blur_blend(lay, W, Hh, (uint16_t *)(void *)planes, rgb, w, bb, alpha, &cover);
	free(planes);
	if (!T)
		draw_cords(rgb, w, h, alpha, &p, &li, &sh, &m);
	inf.coverage = (float)(cover / ((double)w * h));
	if (info)
		*info = inf;
	return 0;
}

/* ---- configuration and choices ---- */

void mfr_maskaug_defaults(mfr_maskaug *cfg)
{
	memset(cfg, 0, sizeof *cfg);
	cfg->ratio = 0.15;
	cfg->weight[MFR_STYLE_SURGICAL] = 4;
	cfg->weight[MFR_STYLE_N95] = 1;
	cfg->weight[MFR_STYLE_KN95] = 2;
	cfg->weight[MFR_STYLE_CLOTH] = 3;
}

int mfr_maskaug_check(const mfr_maskaug *cfg, mfr_error *e)
{
	if (!(cfg->ratio >= 0 && cfg->ratio <= 1))
		return mfr_fail(e, "mask ratio must lie in 0..1");
	double sum = 0;
	for (int i = 0; i < MFR_MASKAUG_STYLES; i++) {
		double wt = cfg->weight[i];
		if (!(wt >= 0 && wt <= 1e9))
			return mfr_fail(e, "style weight %d must be a finite number >= 0", i);
		if (wt > 0 && !((i >= MFR_STYLE_SURGICAL && i <= MFR_STYLE_CLOTH) || i == MFR_STYLE_USER))
			return mfr_fail(e, "style %d is not defined", i);
		if (wt > 0 && i == MFR_STYLE_USER && (!cfg->templates || cfg->templates->n == 0))
			return mfr_fail(e, "the user style has a weight but no templates are loaded");
		sum += wt;
	}
	if (!(sum > 0))
		return mfr_fail(e, "every style weight is zero");
	return 0;
}

int mfr_maskaug_selected(const mfr_maskaug *cfg, uint64_t id)
{
	uint64_t hsh = mfr_hash2(cfg->seed ^ DOMAIN_SELECT, id);
	return (double)(hsh >> 11) * 0x1.0p-53 < cfg->ratio;
}

uint64_t mfr_maskaug_derived_id(const mfr_maskaug *cfg, uint64_t id)
{
	return mfr_hash2(cfg->seed ^ DOMAIN_DERIVE, id);
}

static float unif(mfr_rng *r) { return (float)mfr_rng_uniform(r); }

void mfr_maskaug_params_for(const mfr_maskaug *cfg, uint64_t id, mfr_maskaug_params *p)
{
	mfr_rng r = {mfr_hash2(cfg->seed ^ DOMAIN_PARAMS, id)};
	memset(p, 0, sizeof *p);
	double sum = 0;
	for (int i = 0; i < MFR_MASKAUG_STYLES; i++)
		sum += cfg->weight[i];
	double u = mfr_rng_uniform(&r) * sum;
	p->style = MFR_STYLE_SURGICAL;
	for (int i = 0; i < MFR_MASKAUG_STYLES; i++) {
		if (cfg->weight[i] <= 0)
			continue;
		p->style = i; /* the last weighted style takes any rounding remainder */
		if (u < cfg->weight[i])
			break;
		u -= cfg->weight[i];
	}
	switch (p->style) {
	case MFR_STYLE_SURGICAL: p->colour = (int)mfr_rng_below(&r, NPAL(pal_surgical)); break;
	case MFR_STYLE_N95:
		p->colour = (int)mfr_rng_below(&r, NPAL(pal_n95));
		p->pattern = mfr_rng_uniform(&r) < 0.3; /* about a third of N95s have a valve */
		break;
	case MFR_STYLE_KN95: p->colour = (int)mfr_rng_below(&r, NPAL(pal_kn95)); break;
	case MFR_STYLE_CLOTH:
		p->colour = (int)mfr_rng_below(&r, NPAL(pal_cloth));
		p->pattern = (int)mfr_rng_below(&r, N_CLOTH_PATTERNS);
		break;
	default:
		p->tmpl = cfg->templates && cfg->templates->n > 0 ? (int)mfr_rng_below(&r, (uint64_t)cfg->templates->n) : 0;
	}
	p->top = unif(&r), p->bottom = unif(&r), p->width = unif(&r), p->fit = unif(&r);
	p->shift = (unif(&r) + unif(&r) - 1);
	p->key = mfr_rng_next(&r);
}

int mfr_maskaug_apply(const mfr_maskaug *cfg, uint8_t *rgb, int w, int h, const float lm[10], uint64_t id,
		      mfr_maskaug_info *info, mfr_error *e)
{
	mfr_maskaug_params p;
	mfr_maskaug_params_for(cfg, id, &p);
	return mfr_maskaug_draw(cfg, &p, rgb, w, h, lm, NULL, info, e);
}

static const char *const style_names[MFR_MASKAUG_STYLES] = {
	[MFR_STYLE_SURGICAL] = "surgical", [MFR_STYLE_N95] = "n95", [MFR_STYLE_KN95] = "kn95",
	[MFR_STYLE_CLOTH] = "cloth", [MFR_STYLE_USER] = "user",
};

const char *mfr_maskaug_style_name(int style)
{
	return style >= 0 && style < MFR_MASKAUG_STYLES ? style_names[style] : NULL;
}

int mfr_maskaug_style_code(const char *name)
{
	for (int i = 0; i < MFR_MASKAUG_STYLES; i++)
		if (style_names[i] && strcmp(style_names[i], name) == 0)
			return i;
	return -1;
}
