/* model.h — the model file (.mfrm, data-formats.md section 9): a network's
 * architecture text, its input conventions, named tensors and optional
 * sections (training state), each section checksummed, so that a model loads
 * alone and damage is found before use.
 *
 * This file reads and writes the container; it does not know layers or
 * shapes beyond each tensor's own (the graph executor checks that the tensors
 * match the architecture). */
#ifndef MFR_MODEL_H
#define MFR_MODEL_H

#include <stddef.h>
#include <stdint.h>

#include "util.h" /* defines: mfr_error */

#define MFR_TENSOR_MAX_DIMS 8
#define MFR_TENSOR_NAME_MAX 255

enum {
	MFR_TDTYPE_F32 = 1,
	MFR_TDTYPE_F16 = 2,
};

/* A named tensor. data holds numel floats in memory whatever the stored
 * dtype (fp16 is widened on load, narrowed on save). */
typedef struct {
	char *name;    /* owned, 1..255 bytes, no NUL/tab/newline */
	uint16_t dtype; /* as stored in the file: MFR_TDTYPE_* */
	int ndim;       /* 0..8 (0: a scalar) */
	int64_t dims[MFR_TENSOR_MAX_DIMS];
	size_t numel;
	float *data; /* owned */
} mfr_tensor;

/* How images are fed to the network: size, channel order, normalisation
 * ((pixel - mean[c]) * scale[c]) and the 5-point alignment template faces
 * were aligned to (in this input frame). insightface's convention: 112x112
 * RGB, (x - 127.5) / 128, template mfr_arcface_template. */
typedef struct {
	int width, height, channels; /* channels 3 */
	int bgr;                     /* 0: RGB order, 1: BGR */
	float mean[3], scale[3];
	int has_template;
	float template_lm[10];
} mfr_input_spec;

/* An optional section the container carries without interpreting it (the
 * trainer's optimizer state, sampler position, ...). type >= 0x8000. */
typedef struct {
	uint32_t type;
	uint8_t *data; /* owned */
	size_t size;
} mfr_section;

typedef struct {
	char *arch;       /* owned, NUL-terminated .arch text (data-formats.md section 8) */
	mfr_input_spec input;
	mfr_tensor *tensors; /* owned */
	int ntensors;
	mfr_section *extra; /* owned */
	int nextra;
} mfr_model;

/* insightface's input convention (see mfr_input_spec). */
void mfr_input_spec_insightface(mfr_input_spec *s);

/* Adds a zero-filled tensor (name copied, dims[0..ndim)) to m and returns it,
 * or NULL with e filled (duplicate name, bad name or dims, no memory). The
 * pointer is valid until the next mfr_model_add (the table may move); find
 * tensors again by name afterwards. */
mfr_tensor *mfr_model_add(mfr_model *m, const char *name, uint16_t dtype, int ndim, const int64_t *dims,
			  mfr_error *e);

/* The tensor called name, or NULL. */
mfr_tensor *mfr_model_find(const mfr_model *m, const char *name);

/* Adds a copy of an optional section (type >= 0x8000, unique). */
int mfr_model_add_section(mfr_model *m, uint32_t type, const void *data, size_t size, mfr_error *e);

/* Writes m to path (PATH.tmp, renamed on success; the temp file is removed
 * on failure). Tensors are stored in their dtype, each 64-byte aligned.
 * Returns 0 or -1 with e filled. */
int mfr_model_save(const char *path, const mfr_model *m, mfr_error *e);

/* Serialises m into a fresh buffer (*out, *n; the caller frees). */
int mfr_model_encode(const mfr_model *m, uint8_t **out, size_t *n, mfr_error *e);

/* Reads a model from path, checking every checksum, size and name. On
 * failure *m is left empty and e says what and where:
 * "'r50.mfrm': corrupted section 2 (tensors) at byte 4096 (checksum)". */
int mfr_model_load(const char *path, mfr_model *m, mfr_error *e);

/* 1 when the file at path begins with the model container's magic (an
 * .mfrm, whatever its state past that), 0 otherwise or when it cannot be
 * read (the caller's next read reports why). */
int mfr_model_probe(const char *path);

/* The same from memory; name is what messages quote. */
int mfr_model_decode(const uint8_t *p, size_t n, const char *name, mfr_model *m, mfr_error *e);

/* Frees everything m owns and zeroes it. */
void mfr_model_free(mfr_model *m);

#endif
