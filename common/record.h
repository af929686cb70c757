/* record.h — the payloads of FACE and EMBEDDING records (data-formats.md,
 * "FACE record" and "EMBEDDING record"): decoding with every field checked,
 * and encoding. Frames and checksums are stream.h's business. */
#ifndef MFR_RECORD_H
#define MFR_RECORD_H

#include <stdint.h>

#include "stream.h" /* defines: mfr_schema, MFR_DTYPE_* */
#include "util.h"   /* defines: mfr_error */

/* Flag bits shared by FACE and EMBEDDING records. Bits not named here are
 * reserved: writers set them to zero and readers reject them. */
#define MFR_F_MASKED 0x00000001u      /* the face wears a mask (real or synthetic) */
#define MFR_F_STYLE_MASK 0x0000001eu  /* bits 1-4: mask style code, 0 = none/unknown */
#define MFR_F_STYLE_SHIFT 1
#define MFR_F_SYNTHETIC 0x00000020u   /* the image is generated, not photographed */
#define MFR_F_LANDMARKS 0x00000040u   /* the 5 landmarks are valid */
#define MFR_F_ALIGNED 0x00000080u     /* the image is aligned to the 112x112 ArcFace template */
#define MFR_F_DERIVED 0x00000100u     /* a copy made by a tool (e.g. a masked copy); id derived */
#define MFR_F_KNOWN 0x000001ffu       /* every defined bit */

/* Mask style codes (flags bits 1-4). */
enum {
	MFR_STYLE_NONE = 0,
	MFR_STYLE_SURGICAL = 1,
	MFR_STYLE_N95 = 2,
	MFR_STYLE_KN95 = 3,
	MFR_STYLE_CLOTH = 4,
	MFR_STYLE_USER = 15, /* a user-supplied template */
};

/* FACE payload encodings. */
enum {
	MFR_ENC_RAW = 0,  /* width*height*channels bytes, rows top to bottom, RGB interleaved */
	MFR_ENC_JPEG = 1, /* a JFIF/EXIF JPEG file */
	MFR_ENC_PNG = 2,  /* a PNG file */
};

#define MFR_FACE_HEADER 64 /* fixed bytes before the image payload */

/* A FACE record. `image` points into the buffer it was decoded from. */
typedef struct {
	uint64_t id;
	int32_t label; /* -1: no identity known */
	uint32_t flags;
	uint16_t width, height;
	uint8_t channels; /* 1 (grey) or 3 (RGB) */
	uint8_t encoding; /* MFR_ENC_* */
	float landmarks[10]; /* x1 y1 .. x5 y5 in pixels (eyes, nose, mouth corners); valid with MFR_F_LANDMARKS */
	const uint8_t *image;
	uint32_t image_size;
} mfr_face;

/* Decodes a FACE payload of n bytes into *f (no copy: f->image points into p).
 * Checks sizes, reserved bits, encoding, channels, finite landmarks and that a
 * raw image has exactly width*height*channels bytes. Returns 0 or -1 with a
 * message naming the field (without file or offset: the caller adds those). */
int mfr_face_decode(const uint8_t *p, uint32_t n, mfr_face *f, mfr_error *e);

/* Bytes mfr_face_encode writes for f. */
static inline uint32_t mfr_face_size(const mfr_face *f) { return MFR_FACE_HEADER + f->image_size; }

/* Writes f's header and image into out (room for mfr_face_size(f) bytes). */
void mfr_face_encode(const mfr_face *f, uint8_t *out);

/* An EMBEDDING record. vec points to the caller's (or decoder's) floats. */
typedef struct {
	uint64_t id;
	int32_t label;
	uint32_t flags;
	float *vec; /* dim values */
} mfr_embedding;

#define MFR_EMB_HEADER 16

/* Payload bytes of an EMBEDDING record under schema s. */
uint32_t mfr_embedding_size(const mfr_schema *s);

/* Decodes an EMBEDDING payload; vec must have room for s->dim floats (fp16 is
 * widened). Checks the size against the schema and the reserved bits. */
int mfr_embedding_decode(const uint8_t *p, uint32_t n, const mfr_schema *s, mfr_embedding *v,
			 mfr_error *e);

/* Encodes v under schema s into out (mfr_embedding_size(s) bytes); fp16
 * rounds to nearest even. */
void mfr_embedding_encode(const mfr_embedding *v, const mfr_schema *s, uint8_t *out);

/* Reads id, label and flags, the 16 bytes both kinds begin with (n >= 16). */
int mfr_record_ids(const uint8_t *p, uint32_t n, uint64_t *id, int32_t *label, uint32_t *flags,
		   mfr_error *e);

#endif
