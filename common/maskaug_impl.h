/* maskaug_impl.h — what maskaug.c (geometry, rendering) and maskaug_user.c
 * (loading user templates) share. Not part of libmfr's public interface. */
#ifndef MFR_MASKAUG_IMPL_H
#define MFR_MASKAUG_IMPL_H

#include <stdint.h>

enum { TMPL_MTF = 1, TMPL_UV = 2 }; /* MaskTheFace image + anchors; FMA-3D UV texture */
enum { VIEW_FRONT = 0, VIEW_LEFT = 1, VIEW_RIGHT = 2 };

/* One RGBA image (straight alpha), rows top to bottom. */
typedef struct {
	int w, h;
	uint8_t *rgba;
	float pt[12]; /* MaskTheFace: anchors a..f as x y pairs in this image */
} tmpl_view;

typedef struct {
	char name[64];
	int kind;            /* TMPL_* */
	tmpl_view view[3];   /* TMPL_MTF: front, turned left, turned right (rgba NULL: absent); TMPL_UV: [0] */
	uint32_t colour;     /* mean colour of the opaque part, 0xRRGGBB (for the audit) */
} tmpl;

struct mfr_mask_templates {
	int n;
	tmpl *t;
};

/* PRNet UV coordinates (pixels of the 256x256 layout) of the surface point
 * in front of model point (x, y) (maskaug.c's model units, frontal
 * projection); defined in maskaug_uv.c. */
void mfr_maskaug_uv_lookup(float x, float y, float *u, float *v);

#endif
