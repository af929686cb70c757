/* arch.h — network architectures as text (.arch, data-formats.md section 8):
 * the parser, the parsed graph with inferred shapes, parameter tensors and
 * multiply-accumulate counts, the describer, the canonical writer, and the
 * named presets (iresnet r18..r200, ResNet-50 and its SE, ResNeXt and
 * split-attention variants).
 *
 * This is the description of a network, not its execution: no weights, no
 * layer code. The graph executor binds a parsed mfr_arch to the layers in
 * layers_*.c; the model file (.mfrm) stores the .arch text verbatim and its
 * tensors under the names listed here.
 */
#ifndef MFR_ARCH_H
#define MFR_ARCH_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "layers_spatial.h" /* defines: mfr_conv_shape, mfr_pool_shape, mfr_pad_shape */
#include "util.h"           /* defines: mfr_error */

/* Limits of version 1 (data-formats.md 8.5). */
#define MFR_ARCH_MAX_TEXT (16u << 20)  /* bytes of .arch text */
#define MFR_ARCH_MAX_LAYERS 65536
#define MFR_ARCH_MAX_INPUTS 256        /* inputs of one add/concat */
#define MFR_ARCH_MAX_NAME 128          /* bytes of a layer name */
#define MFR_ARCH_MAX_CHANNELS 65536
#define MFR_ARCH_MAX_SIDE 16384
#define MFR_ARCH_MAX_ELEMS (1u << 28)  /* elements of one activation per image */
#define MFR_ARCH_MAX_TENSOR 2147483647u /* elements of one parameter tensor */

/* Ops, in the order of the table in data-formats.md 8.3. */
typedef enum {
	MFR_OP_INPUT,
	MFR_OP_CONV,
	MFR_OP_BN,
	MFR_OP_BN1D,
	MFR_OP_PRELU,
	MFR_OP_RELU,
	MFR_OP_SIGMOID,
	MFR_OP_ADD,
	MFR_OP_CONCAT,
	MFR_OP_GAP,
	MFR_OP_MAXPOOL,
	MFR_OP_AVGPOOL,
	MFR_OP_PAD,
	MFR_OP_CHPAD,
	MFR_OP_DROPOUT,
	MFR_OP_FLATTEN,
	MFR_OP_LINEAR,
	MFR_OP_L2NORM,
	MFR_OP_SE,
	MFR_OP_SPLAT,
	MFR_OP_COUNT
} mfr_op;

/* The shape of one image's activation: a map C x H x W, or a vector of D = c
 * elements (vec = 1, h = w = 1). Batches add a leading N at run time. */
typedef struct {
	int vec;
	int c, h, w;
} mfr_shape;

/* A stored tensor of a layer. name is "<layer>.<suffix>" (suffixes have no
 * dot, so names never collide); dims are PyTorch's order. buffer = 1 for
 * running statistics (stored, not learned, not counted as parameters);
 * frozen = 1 for a learned-shape tensor held fixed (bn fixgamma=1). */
typedef struct {
	char *name;
	int layer;         /* index into mfr_arch.layers */
	int ndim;          /* 1..4 */
	int dims[4];
	uint64_t count;    /* product of dims */
	int buffer, frozen;
} mfr_arch_tensor;

/* One layer line. Only the fields of the layer's op are meaningful; the rest
 * are zero. All defaults are resolved (a pool's s, splat's inter). */
typedef struct {
	mfr_op op;
	char *name;
	int line;          /* 1-based line in the text it was parsed from */
	int n_in;
	int *in;           /* indices of earlier layers */
	int out;           /* conv, linear: output channels/features; chpad: channels */
	int kh, kw, sh, sw, ph, pw; /* conv, maxpool, avgpool */
	int pt, pb, pl, pr; /* pad: top, bottom, left, right */
	int groups, bias;  /* conv groups; conv/linear bias 0/1 */
	double eps, momentum; /* bn, bn1d */
	int fixgamma;      /* bn, bn1d: gamma held at 1 */
	double p;          /* dropout probability */
	int r;             /* se reduction */
	int radix, inter;  /* splat */
	mfr_shape in_shape; /* shape of the first input (input: the image) */
	mfr_shape shape;   /* inferred output shape */
	int first_tensor, n_tensors; /* its slice of mfr_arch.tensors */
	uint64_t params;   /* elements of its non-buffer tensors */
	uint64_t macs;     /* multiply-accumulates per image (data-formats.md 8.4) */
} mfr_layer;

typedef struct {
	int n_layers;
	mfr_layer *layers;  /* file order; layers[0] is the input */
	int n_outputs;
	int *outputs;       /* layer indices, in the order of the output lines */
	int n_tensors;
	mfr_arch_tensor *tensors; /* layer order, then each op's fixed order */
	uint64_t params, macs;    /* totals */
} mfr_arch;

/* Parses .arch text (len bytes, need not be NUL-terminated). name is used in
 * messages only ("'r50.arch': line 12: conv 'c3': unknown attribute 'strid'").
 * Returns a graph the caller frees with mfr_arch_free, or NULL with e filled:
 * every syntax, name, range, shape and size error is reported, with the line
 * number when it has one. Never reads outside text[0..len). */
mfr_arch *mfr_arch_parse(const char *text, size_t len, const char *name, mfr_error *e);

/* Frees a graph from mfr_arch_parse; NULL is allowed. */
void mfr_arch_free(mfr_arch *a);

/* Returns the index of the layer called name, or -1. */
int mfr_arch_find(const mfr_arch *a, const char *name);

/* The op's keyword in the text ("conv", "bn1d", ...); "?" if out of range. */
const char *mfr_op_name(mfr_op op);

/* Writes a in canonical form: the version line, one line per layer in order
 * with every attribute of its op spelled out (resolved defaults included),
 * then the output lines; no comments. Parsing the result gives the same
 * graph, and writing that again the same bytes. Returns a NUL-terminated
 * malloc'd string (its length in *len when len is non-NULL) or NULL with e
 * filled (out of memory). */
char *mfr_arch_format(const mfr_arch *a, size_t *len, mfr_error *e);

/* Writes a per-layer table (index, name, op, output shape, parameters, MACs)
 * to f, ending with the line "total: P params, M MACs" — P exact, M in
 * engineering form (mfr_arch_eng). Returns 0, or -1 with e filled when
 * writing to f fails. */
int mfr_arch_describe(const mfr_arch *a, FILE *f, mfr_error *e);

/* Formats v with three significant digits and an SI suffix (K, M, G, T, P,
 * E; powers of 1000): 6321499136 -> "6.32G", 23451886592 -> "23.5G"; values
 * below 1000 are written whole ("512"). buf needs 16 bytes; returns buf. */
char *mfr_arch_eng(char buf[16], uint64_t v);

/* Fixed hyperparameters of ops (data-formats.md 8.3): the inner batch norm
 * of splat, and the floor under an l2norm's norm (torch's normalize). */
#define MFR_SPLAT_EPS 1e-5
#define MFR_SPLAT_MOMENTUM 0.1
#define MFR_L2_EPS 1e-12

/* Values layer L's forward saves for its backward at batch N (batch-norm
 * mean and invstd, l2norm norms, SE and splat intermediates; 0 for the
 * rest): the executors' save blocks (net.c in mfr_real, gnet.c in float). */
size_t mfr_layer_save_len(const mfr_layer *L, int N);

/* Readers of layer i's output: the layers that take it as an input (once
 * per input slot) and the network's outputs that name it. */
int mfr_arch_users(const mfr_arch *a, int i);

/* What an inference executor merges (net.c and gnet.c alike), arrays of
 * n_layers: fold_bn[c] = the bn that reads conv c's output when it is that
 * output's only reader (folded into the conv's weights and bias), else -1;
 * inplace[i] = 1 for a prelu or relu whose input has no other reader and
 * is not the input image (it may overwrite its input). */
void mfr_arch_inference_merges(const mfr_arch *a, int *fold_bn, uint8_t *inplace);

/* The sizes of conv, pool (maxpool, avgpool) or pad layer L at batch N, as
 * the layer functions take them (layers_spatial.h). Returns 0, or -1 when
 * they are invalid (a parsed arch's layers never are). */
int mfr_layer_conv_shape(const mfr_layer *L, int N, mfr_conv_shape *s);
int mfr_layer_pool_shape(const mfr_layer *L, int N, mfr_pool_shape *s);
int mfr_layer_pad_shape(const mfr_layer *L, int N, mfr_pad_shape *s);

/* ---- presets (arch_presets.c) ---- */

/* Returns the .arch text of the preset called name as a NUL-terminated
 * malloc'd string, or NULL with e filled ("unknown architecture preset
 * 'x' (known: ...)"). Names: r18 r34 r50 r100 r200 (aliases iresnet18 ...),
 * resnet50, se-resnet50, resnext50 (resnext50-32x4d), resnest50. The text
 * parses with mfr_arch_parse; a user may dump, edit and load it. */
char *mfr_arch_preset(const char *name, mfr_error *e);

/* The canonical preset names, NULL-terminated, for listings and tests. */
const char *const *mfr_arch_preset_names(void);

/* Loads spec: a preset name when it is one (exactly), otherwise the path of
 * an .arch file ("-" is stdin). Returns a graph, or NULL with e filled. */
mfr_arch *mfr_arch_load(const char *spec, mfr_error *e);

#endif
