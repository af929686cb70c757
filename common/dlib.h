/* dlib.h — the converter of dlib's ResNet-29 face descriptor
 * (dlib_face_recognition_resnet_model_v1) from the TensorFlow.js weights that
 * face-api.js ships (a weights manifest in JSON plus binary shards with
 * uint8-quantised tensors) into an mfr model (.mfrm): the network written as
 * .arch text, its tensors dequantised and transposed to PyTorch's layout,
 * and dlib's input convention and 150x150 alignment template.
 *
 * It holds the three parts the conversion needs: a small strict JSON reader
 * (RFC 8259, all of it, but nothing more: no comments, no trailing commas,
 * no NaN), the tfjs manifest reader and dequantiser, and the dlib network
 * description. It is not a general tfjs importer: the network is dlib's one
 * architecture, and a manifest for anything else is refused by name.
 */
#ifndef MFR_DLIB_H
#define MFR_DLIB_H

#include <stddef.h>
#include <stdint.h>

#include "model.h" /* defines: mfr_model, mfr_input_spec */
#include "util.h"  /* defines: mfr_error */

/* ---- JSON ---- */

#define MFR_JSON_MAX_DEPTH 64     /* nesting; a manifest needs 4 */
#define MFR_JSON_MAX_NUMBER 128   /* characters of one number literal */

typedef enum {
	MFR_JSON_NULL,
	MFR_JSON_FALSE,
	MFR_JSON_TRUE,
	MFR_JSON_NUMBER,
	MFR_JSON_STRING,
	MFR_JSON_ARRAY,
	MFR_JSON_OBJECT,
} mfr_json_type;

/* A parsed JSON value. at is the byte offset of its first character in the
 * text, for messages that point at the value ("byte 1234"). */
typedef struct mfr_json {
	mfr_json_type type;
	size_t at;
	double num;               /* NUMBER: the nearest double (finite) */
	char *str;                /* STRING: decoded UTF-8, NUL-terminated, owned */
	size_t len;               /* STRING: bytes, no NUL among them */
	size_t n;                 /* ARRAY, OBJECT: members */
	struct mfr_json *items;   /* ARRAY, OBJECT: the n values, owned */
	char **keys;              /* OBJECT: the n keys (decoded, distinct), owned */
} mfr_json;

/* Parses text[0..len) as one JSON value (white space around it allowed).
 * Strict: RFC 8259 grammar; strings must be valid UTF-8 with no raw control
 * characters, escapes are the RFC's (\uXXXX with paired surrogates), and
 * \u0000 is refused (strings are C strings); numbers must be finite as
 * doubles and at most MFR_JSON_MAX_NUMBER characters; nesting at most
 * MFR_JSON_MAX_DEPTH; duplicate object keys are refused. Returns a tree the
 * caller frees with mfr_json_free, or NULL with e filled:
 * "'m.json': byte 57: expected ',' or ']' after an array element".
 * Never reads outside text[0..len). */
mfr_json *mfr_json_parse(const char *text, size_t len, const char *name, mfr_error *e);

/* Frees a tree from mfr_json_parse; NULL is allowed. */
void mfr_json_free(mfr_json *j);

/* The value of key in object o, or NULL (also when o is not an object). */
const mfr_json *mfr_json_get(const mfr_json *o, const char *key);

/* ---- TensorFlow.js weights ---- */

/* One tensor of a manifest. Its bytes lie at offset in the concatenation of
 * its group's shard files (tfjs lays a group's tensors out back to back, in
 * manifest order). qbytes: 0 for plain float32 (4 bytes a value), 1 or 2 for
 * uint8/uint16 quantisation, value = q * scale + min. */
typedef struct {
	char *name;               /* owned */
	int ndim;                 /* 0..MFR_TENSOR_MAX_DIMS */
	int64_t dims[MFR_TENSOR_MAX_DIMS];
	size_t numel;
	int qbytes;
	double scale, min;
	int group;
	size_t offset, bytes;     /* within the group's data */
	float *data;              /* numel values once loaded (mfr_tfjs_load), owned */
} mfr_tfjs_tensor;

typedef struct {
	int ngroups;
	int *npaths;              /* per group */
	char ***paths;            /* per group: shard file names, relative to the manifest */
	size_t *group_bytes;      /* per group: the bytes its shards must hold */
	int n;
	mfr_tfjs_tensor *t;
} mfr_tfjs;

/* Reads a weights manifest (the JSON text[0..len)): an array of groups
 * {"paths": [FILE...], "weights": [{"name", "shape", "dtype": "float32",
 * "quantization"?: {"dtype": "uint8"|"uint16", "scale", "min"}}...]}.
 * Unknown keys are ignored (tfjs adds some over versions); every known one
 * is checked: names 1..255 bytes and distinct, shapes of 0..8 integral dims
 * with at most 2^31-1 elements, dtype float32, scale and min finite, shard
 * paths relative and without '..'. Fills *w (free with mfr_tfjs_free; data
 * stays NULL) or returns -1 with e filled, naming the byte offset. */
int mfr_tfjs_parse(const char *text, size_t len, const char *name, mfr_tfjs *w, mfr_error *e);

/* Reads DIR/MANIFEST and its shards, and dequantises every tensor into its
 * data. The shards of a group must hold exactly the bytes the manifest
 * describes (a longer or shorter file is a mismatch, named). */
int mfr_tfjs_load(const char *dir, const char *manifest, mfr_tfjs *w, mfr_error *e);

void mfr_tfjs_free(mfr_tfjs *w);

/* The tensor called name, or NULL. */
const mfr_tfjs_tensor *mfr_tfjs_find(const mfr_tfjs *w, const char *name);

/* Decodes n stored values at p into out: little-endian float32 (qbytes 0),
 * or uint8/uint16 q (qbytes 1, 2) as q * scale + min, computed in double and
 * rounded once to float, as tfjs's decodeWeights does (JavaScript numbers
 * are doubles, stored into a Float32Array). */
void mfr_tfjs_dequant(float *out, const uint8_t *p, size_t n, int qbytes, double scale, double min);

/* ---- the dlib network ---- */

/* face-api.js's file names in its model folder. */
#define MFR_DLIB_MANIFEST "face_recognition_model-weights_manifest.json"

/* dlib's 5-point alignment template in the 150x150 input frame: left eye,
 * right eye, nose tip, left and right mouth corners, x1 y1 .. x5 y5. */
extern const float mfr_dlib_template[10];

/* dlib's input convention: 150x150 RGB, (pixel - (122.782, 117.001,
 * 104.298)) / 256 (dlib's input_rgb_image averages), the template above. */
void mfr_input_spec_dlib(mfr_input_spec *s);

/* The .arch text of dlib's ResNet-29 (commented; see dlib.c for the layer
 * by layer account), NUL-terminated and malloc'd, or NULL with e filled. */
char *mfr_dlib_arch(mfr_error *e);

/* Converts the tfjs weights in dir (MFR_DLIB_MANIFEST and its shards) into
 * *m (zeroed first; free with mfr_model_free): the arch text, dlib's input
 * convention, and every tensor of the arch in its order, conv filters
 * transposed from tfjs's HWIO to OIHW and the fc from (in, out) to
 * (out, in). Every manifest tensor must be used once with the shape the
 * network needs. Returns 0 or -1 with e filled. */
int mfr_dlib_convert(const char *dir, mfr_model *m, mfr_error *e);

#endif
