/* synth.h — procedural faces: the project's built-in data for its demo and
 * tests, made to train a recognizer on (not to look photographic).
 *
 * An identity is a vector of "genes" drawn from (seed, index): face outline
 * and jaw, skin tone, eyes and iris colour, brows, nose, mouth and lips, hair
 * (colour, hairline, style), facial hair, ears, and rare traits (glasses,
 * moles). An image of an identity is drawn from (seed, identity, image index):
 * head pose, expression, lighting, blur, sensor noise, colour cast and
 * background vary. Faces are rendered with analytic anti-aliasing into a
 * 112x112 RGB crop in the insightface/ArcFace layout: at frontal pose the eye
 * centres, nose tip and mouth corners sit near the ArcFace template, and the
 * renderer returns the 5 landmarks of the face it drew.
 *
 * Everything is deterministic: only mfr_rng/mfr_hash2 draw numbers, and the
 * float arithmetic uses IEEE basic operations and sqrt only (sine and cosine
 * are polynomials here, not libm), so the bytes are the same on every run,
 * thread and IEEE platform. What it is not: a 3D renderer, a photo-realistic
 * model, or a source of real-world accuracy figures.
 */
#ifndef MFR_SYNTH_H
#define MFR_SYNTH_H

#include <stdint.h>

#include "util.h" /* defines: mfr_error, mfr_rng, mfr_hash2 */

/* Side of the square crop every image is rendered at (the ArcFace size). */
#define MFR_SYNTH_SIZE 112
/* Length of the gene vector (some entries are spare, kept at 0). */
#define MFR_SYNTH_GENES 64

/* One face: the genes that fix its appearance, and a key that seeds its
 * images and per-face texture. Genes lie in [-1, 1] with 0 the population's
 * centre; difficulty shrinks them toward 0 (see mfr_synth_opts). */
typedef struct {
	uint64_t key;
	float gene[MFR_SYNTH_GENES];
} mfr_synth_face;

/* Backgrounds (mfr_synth_opts.background, mfr_synth_var.background). */
enum {
	MFR_SYNTH_BG_RANDOM = -1, /* opts only: draw one per image */
	MFR_SYNTH_BG_PLAIN = 0,   /* one flat colour */
	MFR_SYNTH_BG_GRADIENT = 1,
	MFR_SYNTH_BG_CLUTTER = 2, /* gradient plus soft rectangles and blobs */
};

typedef struct {
	/* 0..1: how alike identities are. The genes of every identity are
	 * scaled by 1 - 0.8*difficulty, so at 1 all faces crowd around the
	 * population's centre (rare traits vanish first). Default 0.5. */
	double difficulty;
	/* 0..2: strength of per-image variation (pose, expression, lighting,
	 * blur, noise, colour cast, alignment jitter); 0 renders every image
	 * of a face frontal, neutral and evenly lit. Default 1. */
	double variation;
	/* 1 (default): each image is re-aligned on its own landmarks, as
	 * insightface crops are, so roll is removed and only a small detector
	 * jitter is left. 0: the face keeps its frontal alignment and roll and
	 * yaw move it in the frame. */
	int align;
	/* MFR_SYNTH_BG_*: one background kind for all images, or random. */
	int background;
} mfr_synth_opts;

/* Fills o with the defaults above. */
void mfr_synth_defaults(mfr_synth_opts *o);

/* Identity `index` of the population of `seed`. Depends on (seed, index,
 * o->difficulty) only, so identity k is the same whatever the number of
 * identities generated. */
void mfr_synth_identity(uint64_t seed, uint64_t index, const mfr_synth_opts *o, mfr_synth_face *f);

/* Outlier face `n` of `seed`: a face of no identity, drawn like an identity
 * but from a separate stream, so it never equals any mfr_synth_identity. */
void mfr_synth_outlier(uint64_t seed, uint64_t n, const mfr_synth_opts *o, mfr_synth_face *f);

/* The conditions of one image. mfr_synth_vary draws them; tests and tools
 * may set them by hand before mfr_synth_draw. Angles in radians; positive
 * yaw turns the face toward +x (image right), positive pitch raises the
 * chin, positive roll turns the face clockwise on the screen. */
typedef struct {
	float yaw, pitch, roll;
	float smile;      /* 0..1: mouth corners up and out, cheeks raised */
	float mouth_open; /* 0..1 */
	float brow_raise; /* -1 (frown) .. 1 */
	float eye_close;  /* 0..1 (1 = closed) */
	float gaze_x, gaze_y; /* -1..1: iris offset */
	float light_az, light_el; /* light direction: azimuth (+ = from image right), elevation */
	float light_diffuse, light_ambient; /* shading strengths (sum near 1) */
	float exposure;   /* overall gain */
	float wb[3];      /* white-balance gains */
	float saturation, contrast;
	float blur;       /* gaussian-like blur radius in pixels (0 = none) */
	float noise;      /* sensor noise standard deviation, 0..1 scale */
	float jitter_rot, jitter_scale, jitter_x, jitter_y; /* alignment error */
	float tan;        /* -1..1 skin tone drift of the day */
	float hair_volume; /* -1..1 */
	float cloth[3];   /* clothing colour */
	int glasses;      /* 1: wears the face's glasses, if it has any */
	int background;   /* MFR_SYNTH_BG_PLAIN..CLUTTER */
	int align;        /* as mfr_synth_opts.align */
	uint64_t bg_seed, noise_seed;
} mfr_synth_var;

/* Draws the conditions of image `image` of face f under seed: depends on
 * (seed, f->key, image, o->variation, o->align, o->background) only. */
void mfr_synth_vary(const mfr_synth_face *f, uint64_t seed, uint64_t image, const mfr_synth_opts *o,
		    mfr_synth_var *v);

/* Renders face f under v into px (MFR_SYNTH_SIZE^2 * 3 bytes, interleaved
 * RGB, rows top to bottom) and, when lm is non-NULL, writes its landmarks:
 * left eye, right eye, nose tip, left and right mouth corner centres as
 * x1 y1 .. x5 y5 in pixels (pixel centres at integer coordinates, as
 * mfr_arcface_template). Thread-safe; allocates a ~480 KB workspace.
 * Returns 0, or -1 with e filled when out of memory. */
int mfr_synth_draw(const mfr_synth_face *f, const mfr_synth_var *v, uint8_t *px, float lm[10],
		   mfr_error *e);

/* mfr_synth_vary then mfr_synth_draw: image `image` of f under seed. */
int mfr_synth_render(const mfr_synth_face *f, uint64_t seed, uint64_t image, const mfr_synth_opts *o,
		     uint8_t *px, float lm[10], mfr_error *e);

#endif
