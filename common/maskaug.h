/* maskaug.h — synthetic face masks drawn onto face images, for training
 * recognisers on masked faces (mfr-maskaug, and the trainer's loader for
 * online masking).
 *
 * How it works: the 5 landmarks (or, for an aligned 112x112 crop without
 * them, the ArcFace template) are fitted by a small 3-D face model under
 * perspective, which gives scale, position, yaw, pitch and roll. A mask is a
 * surface built procedurally over that model's lower face (nose bridge to
 * under the chin, cheek to cheek, with the cloth stretched over the nose and
 * hanging straight from the nose tip to the chin); it is meshed, posed,
 * rasterised with a depth buffer (so its outline at the cheeks and jaw is the
 * surface's silhouette), lit from a light estimated from the visible skin,
 * textured procedurally (surgical pleats and loops, N95/KN95 cups and seams,
 * cloth patterns) and alpha-blended with soft edges. Optional user templates
 * (MaskTheFace RGBA images with six anchors, FMA-3D UV textures) are drawn
 * the same way, see mfr_mask_templates_load.
 *
 * Everything is a pure function of (seed, sample id, pixels, landmarks): no
 * global state is written, so any number of threads may call in parallel,
 * and which records get a mask depends on neither their order nor sharding.
 * The arithmetic uses IEEE basic operations and sqrt only (no libm
 * transcendental whose last bit varies between platforms).
 *
 * What it is not: a face detector or landmark estimator, a photorealistic
 * cloth simulator, or a model of hair, hands or glasses in front of a mask.
 */
#ifndef MFR_MASKAUG_H
#define MFR_MASKAUG_H

#include <stdint.h>

#include "util.h" /* defines: mfr_error, mfr_hash2 */

/* User templates loaded from files (opaque; read-only once loaded, so one
 * set may be shared by all threads). */
typedef struct mfr_mask_templates mfr_mask_templates;

/* Number of style slots: indices are the FACE record style codes
 * (record.h MFR_STYLE_*: 1 surgical, 2 N95, 3 KN95, 4 cloth, 15 user). */
#define MFR_MASKAUG_STYLES 16

/* What to do. Fill with mfr_maskaug_defaults, then change fields. */
typedef struct {
	uint64_t seed;
	/* 0..1: probability that a sample gets a mask (mfr_maskaug_selected). */
	double ratio;
	/* Relative weight of each style code; only 1..4 and 15 may be
	 * non-zero, 15 only when templates is set. Defaults: surgical 4,
	 * N95 1, KN95 2, cloth 3 (surgical and cloth masks are the common
	 * ones in the photographs of the MFR challenge's test sets). */
	double weight[MFR_MASKAUG_STYLES];
	const mfr_mask_templates *templates; /* NULL: procedural masks only */
} mfr_maskaug;

/* The random choices of one mask, drawn from (seed, id) by
 * mfr_maskaug_params; tests and the contact sheet may set them by hand. */
typedef struct {
	int style;      /* 1..4 or 15 (MFR_STYLE_*) */
	int colour;     /* index into the style's palette */
	int pattern;    /* cloth: 0 plain, 1 stripes, 2 checks, 3 dots, 4 flowers, 5 camouflage,
			   6 melange; N95: 1 with an exhalation valve; others 0 */
	int tmpl;       /* style 15: which user template */
	float top;      /* 0..1: upper edge at the nose bridge, from high (0: just under the
			   eyes) to low (1: half way down the nose) */
	float bottom;   /* 0..1: how far under the chin the lower edge reaches */
	float width;    /* 0..1: how far round the cheeks toward the ears */
	float fit;      /* 0..1: 0 tight on the face, 1 loose (more standoff, straighter cloth) */
	float shift;    /* -1..1: sideways slip of the mask */
	uint64_t key;   /* seeds texture noise */
} mfr_maskaug_params;

/* The pose estimated from the landmarks and what was drawn, for audits. */
typedef struct {
	int style;           /* MFR_STYLE_* drawn */
	uint32_t colour;     /* 0xRRGGBB of the main material before lighting */
	const char *pattern; /* a static name: "pleats", "cup", "valve", "folded", "plain", ... or the template's name */
	float coverage;      /* share of the image's pixels the mask covers (alpha-weighted), 0..1 */
	float yaw, pitch, roll; /* degrees; yaw > 0: nose toward image right; pitch > 0: chin up;
				   roll > 0: clockwise on screen */
	float scale;         /* image pixels per model unit (1 at the ArcFace 112x112 layout) */
} mfr_maskaug_info;

/* Fills cfg: seed 0, ratio 0.15 (the paper's share of masked training
 * faces), the default style weights, no templates. */
void mfr_maskaug_defaults(mfr_maskaug *cfg);

/* Checks cfg: ratio in [0,1]; weights finite, >= 0, on allowed styles (15
 * only with templates), and not all zero. Returns 0, or -1 with e filled. */
int mfr_maskaug_check(const mfr_maskaug *cfg, mfr_error *e);

/* 1 when sample `id` gets a mask under cfg, else 0: a hash of (seed, id)
 * compared with ratio, so the decision depends on nothing else. */
int mfr_maskaug_selected(const mfr_maskaug *cfg, uint64_t id);

/* The id of the masked copy of sample `id` (mfr-maskaug --append): a hash of
 * (seed, id), so copies made with different seeds get different ids. */
uint64_t mfr_maskaug_derived_id(const mfr_maskaug *cfg, uint64_t id);

/* Draws the mask choices for sample `id` from (seed, id): the style by the
 * weights, then colour, pattern and shape. cfg must pass mfr_maskaug_check. */
void mfr_maskaug_params_for(const mfr_maskaug *cfg, uint64_t id, mfr_maskaug_params *p);

/* Draws mask p onto rgb (w x h, 3 bytes a pixel, rows top to bottom), in
 * place. lm: the 5 landmarks (x1 y1 .. x5 y5 in pixels: eyes, nose tip,
 * mouth corners, left/right as seen); NULL means the image is an aligned
 * 112x112 crop and the ArcFace template stands in. alpha: NULL, or w*h bytes
 * that receive the mask's coverage (0..255) per pixel (zero elsewhere).
 * info: NULL or filled. cfg supplies the templates for style 15.
 * Fails, leaving the pixels untouched, when lm is NULL and the image is not
 * 112x112, when a side is under 16 or over 16384 pixels, when the landmarks
 * are not finite or are too close together (eyes under 6 px apart) or too
 * far apart for a face, or when memory runs out. */
int mfr_maskaug_draw(const mfr_maskaug *cfg, const mfr_maskaug_params *p, uint8_t *rgb, int w, int h,
		     const float lm[10], uint8_t *alpha, mfr_maskaug_info *info, mfr_error *e);

/* mfr_maskaug_params_for then mfr_maskaug_draw: the mask sample `id` gets
 * under cfg (whether or not mfr_maskaug_selected chose it; callers ask that
 * first). Same contract as mfr_maskaug_draw. */
int mfr_maskaug_apply(const mfr_maskaug *cfg, uint8_t *rgb, int w, int h, const float lm[10],
		      uint64_t id, mfr_maskaug_info *info, mfr_error *e);

/* The pose fit alone: scale, yaw, pitch, roll (info fields of those names)
 * of the face whose landmarks are lm (NULL: the ArcFace template). Fails on
 * landmarks that are not finite or degenerate, as mfr_maskaug_draw does. */
int mfr_maskaug_pose(const float lm[10], mfr_maskaug_info *info, mfr_error *e);

/* Style names as the audit and the command line spell them: "surgical",
 * "n95", "kn95", "cloth", "user"; NULL for other codes. */
const char *mfr_maskaug_style_name(int style);
/* The code of a style name, or -1. */
int mfr_maskaug_style_code(const char *name);

/* ---- user templates ---- */

/* Loads user templates from path:
 *  - a MaskTheFace configuration (a file whose name ends in .cfg): INI-style
 *    sections `[name]` with `template: PATH` (an RGBA PNG; a relative path is
 *    tried beside the .cfg, then as templates/BASENAME beside it) and
 *    `mask_a` .. `mask_f: X, Y`, the template's points that go to the nose
 *    bridge (b), the cheeks level with it (a, c), the jaw (d, f) and the chin
 *    (e). Sections named NAME_left / NAME_right are the views used when the
 *    face is turned toward image left / right.
 *  - an FMA-3D texture (a .png): 256x256 RGBA in PRNet's UV layout (alpha is
 *    the mask), or a folder of them (every *.png in it, in name order).
 * Returns NULL with e filled (unreadable file, bad line with its number, a
 * template that is not RGBA, no templates). Free with mfr_mask_templates_free. */
mfr_mask_templates *mfr_mask_templates_load(const char *path, mfr_error *e);
void mfr_mask_templates_free(mfr_mask_templates *t);
/* Number of templates (views of one MaskTheFace mask count once). */
int mfr_mask_templates_count(const mfr_mask_templates *t);
/* The name of template i (section name, or PNG file name). */
const char *mfr_mask_templates_name(const mfr_mask_templates *t, int i);

#endif
