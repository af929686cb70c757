/* arch.c — the .arch text format (data-formats.md section 8): parser, shape
 * inference, tensor lists, parameter and MAC counts, describer and canonical
 * writer.
 *
 * The parser is table-driven: each op has a row in `ops` naming its input
 * count and its attributes (kind, range, default, field of mfr_layer), so the
 * parser, the writer and the document share one description. Shape rules and
 * counts are per op in infer(). Nothing here executes a network.
 */
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "arch.h" /* defines: mfr_arch_parse, mfr_arch_format, mfr_arch_describe ... */
#include "layers_elem.h" /* defines: mfr_splat_save_len */

enum { A_INT, A_PAIR, A_REAL, A_BOOL };

typedef struct {
	const char *key;
	int kind;
	size_t off, off2;  /* field(s) in mfr_layer; off2 for the W half of a pair */
	double lo, hi;     /* inclusive range */
	double def;        /* default; AUTO = resolved from other values */
	int required;
	int open_hi;       /* the range excludes hi */
} attr_spec;

#define AUTO (-1.0)
#define F(f) offsetof(mfr_layer, f)
#define INT_(k, f, lo, hi, def) {k, A_INT, F(f), 0, lo, hi, def, 0, 0}
#define REQ_INT(k, f, lo, hi) {k, A_INT, F(f), 0, lo, hi, 0, 1, 0}
#define PAIR(k, f, g, lo, hi, def) {k, A_PAIR, F(f), F(g), lo, hi, def, 0, 0}
#define REQ_PAIR(k, f, g, lo, hi) {k, A_PAIR, F(f), F(g), lo, hi, 0, 1, 0}
#define REAL(k, f, lo, hi, def, open) {k, A_REAL, F(f), 0, lo, hi, def, 0, open}
#define BOOL_(k, f, def) {k, A_BOOL, F(f), 0, 0, 1, def, 0, 0}

#define MAXA 6
typedef struct {
	const char *name;
	int min_in, max_in;
	attr_spec attrs[MAXA]; /* ends at the first key == NULL */
} op_spec;

#define BN_ATTRS {REAL("eps", eps, 1e-20, 1, 1e-5, 0), REAL("momentum", momentum, 0, 1, 0.1, 0), \
	BOOL_("fixgamma", fixgamma, 0)}
#define POOL_ATTRS {REQ_PAIR("k", kh, kw, 1, 255), PAIR("s", sh, sw, 1, 255, AUTO), \
	PAIR("p", ph, pw, 0, 255, 0)}

static const op_spec ops[MFR_OP_COUNT] = {
	[MFR_OP_INPUT] = {"input", 0, 0, {{0}}},
	[MFR_OP_CONV] = {"conv", 1, 1, {REQ_INT("out", out, 1, MFR_ARCH_MAX_CHANNELS),
		REQ_PAIR("k", kh, kw, 1, 255), PAIR("s", sh, sw, 1, 255, 1), PAIR("p", ph, pw, 0, 255, 0),
		INT_("g", groups, 1, MFR_ARCH_MAX_CHANNELS, 1), BOOL_("bias", bias, 0)}},
	[MFR_OP_BN] = {"bn", 1, 1, BN_ATTRS},
	[MFR_OP_BN1D] = {"bn1d", 1, 1, BN_ATTRS},
	[MFR_OP_PRELU] = {"prelu", 1, 1, {{0}}},
	[MFR_OP_RELU] = {"relu", 1, 1, {{0}}},
	[MFR_OP_SIGMOID] = {"sigmoid", 1, 1, {{0}}},
	[MFR_OP_ADD] = {"add", 2, MFR_ARCH_MAX_INPUTS, {{0}}},
	[MFR_OP_CONCAT] = {"concat", 2, MFR_ARCH_MAX_INPUTS, {{0}}},
	[MFR_OP_GAP] = {"gap", 1, 1, {{0}}},
	[MFR_OP_MAXPOOL] = {"maxpool", 1, 1, POOL_ATTRS},
	[MFR_OP_AVGPOOL] = {"avgpool", 1, 1, POOL_ATTRS},
	[MFR_OP_PAD] = {"pad", 1, 1, {INT_("t", pt, 0, 255, 0), INT_("b", pb, 0, 255, 0),
		INT_("l", pl, 0, 255, 0), INT_("r", pr, 0, 255, 0)}},
	[MFR_OP_CHPAD] = {"chpad", 1, 1, {REQ_INT("out", out, 1, MFR_ARCH_MAX_CHANNELS)}},
	[MFR_OP_DROPOUT] = {"dropout", 1, 1, {REAL("p", p, 0, 1, 0, 1)}},
	[MFR_OP_FLATTEN] = {"flatten", 1, 1, {{0}}},
	[MFR_OP_LINEAR] = {"linear", 1, 1, {REQ_INT("out", out, 1, MFR_ARCH_MAX_CHANNELS),
		BOOL_("bias", bias, 1)}},
	[MFR_OP_L2NORM] = {"l2norm", 1, 1, {{0}}},
	[MFR_OP_SE] = {"se", 1, 1, {INT_("r", r, 1, MFR_ARCH_MAX_CHANNELS, 16)}},
	[MFR_OP_SPLAT] = {"splat", 1, 1, {INT_("radix", radix, 2, 64, 2),
		INT_("inter", inter, 1, MFR_ARCH_MAX_CHANNELS, AUTO)}},
};

const char *mfr_op_name(mfr_op op)
{
	return (unsigned)op < MFR_OP_COUNT ? ops[op].name : "?";
}

/* ---- the parser's state ---- */

typedef struct {
	const char *p;
	size_t n;
} tok;

typedef struct {
	const char *src;   /* name for messages */
	mfr_error *e;
	mfr_arch *a;
	int room_layers, room_tensors;
	int *table;        /* open-addressing name table of layer index + 1 */
	unsigned char *is_output; /* per layer, once the first output line is read */
	int room_outputs;
	size_t table_cap;  /* power of two, or 0 */
	int line;
} parser;

static int perr(parser *P, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int perr(parser *P, const char *fmt, ...)
{
	char what[400];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(what, sizeof what, fmt, ap);
	va_end(ap);
	if (P->line > 0)
		return mfr_fail(P->e, "'%s': line %d: %s", P->src, P->line, what);
	return mfr_fail(P->e, "'%s': %s", P->src, what);
}

static uint64_t hash_name(const char *s, size_t n)
{
	uint64_t h = 0xcbf29ce484222325ull; /* FNV-1a 64 */
	for (size_t i = 0; i < n; i++)
		h = (h ^ (unsigned char)s[i]) * 0x100000001b3ull;
	return h;
}

/* Index of the layer named t, or -1. */
static int lookup(const parser *P, tok t)
{
	if (!P->table_cap)
		return -1;
	size_t mask = P->table_cap - 1;
	for (size_t i = hash_name(t.p, t.n) & mask;; i = (i + 1) & mask) {
		int k = P->table[i];
		if (!k)
			return -1;
		const char *nm = P->a->layers[k - 1].name;
		if (strlen(nm) == t.n && !memcmp(nm, t.p, t.n))
			return k - 1;
	}
}

static int table_insert(parser *P, int idx)
{
	if ((size_t)(idx + 1) * 2 > P->table_cap) {
		size_t cap = P->table_cap ? P->table_cap * 2 : 64;
		int *t = mfr_malloc(cap * sizeof *t, P->e);
		if (!t)
			return -1;
		memset(t, 0, cap * sizeof *t);
		free(P->table);
		P->table = t;
		P->table_cap = cap;
		for (int k = 0; k < idx; k++) {
			const char *nm = P->a->layers[k].name;
			size_t i = hash_name(nm, strlen(nm)) & (cap - 1);
			while (t[i])
				i = (i + 1) & (cap - 1);
			t[i] = k + 1;
		}
	}
	const char *nm = P->a->layers[idx].name;
	size_t i = hash_name(nm, strlen(nm)) & (P->table_cap - 1);
	while (P->table[i])
		i = (i + 1) & (P->table_cap - 1);
	P->table[i] = idx + 1;
	return 0;
}

static int valid_name(tok t)
{
	if (!t.n || t.n > MFR_ARCH_MAX_NAME)
		return 0;
	char c = t.p[0];
	if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_'))
		return 0;
	for (size_t i = 1; i < t.n; i++) {
		c = t.p[i];
		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
		      c == '_' || c == '.' || c == '-'))
			return 0;
	}
	return 1;
}

static int tok_is(tok t, const char *s) { return strlen(s) == t.n && !memcmp(t.p, s, t.n); }

/* Decimal digits only, at most 9 (no sign, no overflow). Returns 0 or -1. */
static int parse_uint(const char *p, size_t n, long *v)
{
	if (!n || n > 9)
		return -1;
	long x = 0;
	for (size_t i = 0; i < n; i++) {
		if (p[i] < '0' || p[i] > '9')
			return -1;
		x = x * 10 + (p[i] - '0');
	}
	*v = x;
	return 0;
}

static int parse_real(const char *p, size_t n, double *v)
{
	char buf[64];
	if (!n || n >= sizeof buf)
		return -1;
	for (size_t i = 0; i < n; i++)
		if (!strchr("0123456789.eE+-", p[i]) || !p[i])
			return -1;
	memcpy(buf, p, n);
	buf[n] = 0;
	char *end;
	double x = strtod(buf, &end);
	if (end != buf + n || !isfinite(x))
		return -1;
	*v = x;
	return 0;
}

/* ---- layers and tensors ---- */

static mfr_layer *new_layer(parser *P)
{
	mfr_arch *a = P->a;
	if (a->n_layers >= MFR_ARCH_MAX_LAYERS) {
		perr(P, "more than %d layers", MFR_ARCH_MAX_LAYERS);
		return NULL;
	}
	if (a->n_layers == P->room_layers) {
		int room = P->room_layers ? P->room_layers * 2 : 64;
		mfr_layer *l = mfr_realloc(a->layers, (size_t)room * sizeof *l, P->e);
		if (!l)
			return NULL;
		a->layers = l;
		P->room_layers = room;
	}
	mfr_layer *l = &a->layers[a->n_layers];
	memset(l, 0, sizeof *l);
	l->line = P->line;
	return l;
}

static int add_tensor(parser *P, int li, const char *suffix, int ndim, const int *dims, int buffer,
		      int frozen)
{
	mfr_arch *a = P->a;
	mfr_layer *l = &a->layers[li];
	uint64_t count = 1;
	for (int i = 0; i < ndim; i++) {
		count *= (uint64_t)dims[i];
		if (count > MFR_ARCH_MAX_TENSOR)
			return perr(P, "%s '%s': tensor '%s' has more than %u elements", ops[l->op].name,
				    l->name, suffix, MFR_ARCH_MAX_TENSOR);
	}
	if (a->n_tensors == P->room_tensors) {
		int room = P->room_tensors ? P->room_tensors * 2 : 128;
		mfr_arch_tensor *t = mfr_realloc(a->tensors, (size_t)room * sizeof *t, P->e);
		if (!t)
			return -1;
		a->tensors = t;
		P->room_tensors = room;
	}
	size_t nl = strlen(l->name), ns = strlen(suffix);
	char *name = mfr_malloc(nl + ns + 2, P->e);
	if (!name)
		return -1;
	memcpy(name, l->name, nl);
	name[nl] = '.';
	memcpy(name + nl + 1, suffix, ns + 1);
	mfr_arch_tensor *t = &a->tensors[a->n_tensors++];
	memset(t, 0, sizeof *t);
	t->name = name;
	t->layer = li;
	t->ndim = ndim;
	memcpy(t->dims, dims, (size_t)ndim * sizeof *dims);
	t->count = count;
	t->buffer = buffer;
	t->frozen = frozen;
	l->n_tensors++;
	if (!buffer)
		l->params += count;
	return 0;
}

static int t1(parser *P, int li, const char *s, int d0, int buffer, int frozen)
{
	int d[1] = {d0};
	return add_tensor(P, li, s, 1, d, buffer, frozen);
}

static int t2(parser *P, int li, const char *s, int d0, int d1)
{
	int d[2] = {d0, d1};
	return add_tensor(P, li, s, 2, d, 0, 0);
}

/* The four tensors of a batch norm over c features, under prefix ("" or "bn_"). */
static int bn_tensors(parser *P, int li, const char *prefix, int c, int fixgamma)
{
	char s[64];
	snprintf(s, sizeof s, "%sweight", prefix);
	if (t1(P, li, s, c, 0, fixgamma) < 0)
		return -1;
	snprintf(s, sizeof s, "%sbias", prefix);
	if (t1(P, li, s, c, 0, 0) < 0)
		return -1;
	snprintf(s, sizeof s, "%srunning_mean", prefix);
	if (t1(P, li, s, c, 1, 0) < 0)
		return -1;
	snprintf(s, sizeof s, "%srunning_var", prefix);
	return t1(P, li, s, c, 1, 0);
}

static void shape_str(char *buf, size_t n, mfr_shape s)
{
	if (s.vec)
		snprintf(buf, n, "%d", s.c);
	else
		snprintf(buf, n, "%dx%dx%d", s.c, s.h, s.w);
}

static int same_shape(mfr_shape a, mfr_shape b)
{
	return a.vec == b.vec && a.c == b.c && a.h == b.h && a.w == b.w;
}

static uint64_t elems(mfr_shape s) { return (uint64_t)s.c * (uint64_t)s.h * (uint64_t)s.w; }

/* Output side of a window op, or 0 when the window does not fit. */
static int out_side(int in, int k, int s, int p)
{
	long span = (long)in + 2L * p - k;
	return span < 0 ? 0 : (int)(span / s + 1);
}

/* Shape inference, tensors and counts of layer li (its inputs resolved). */
static int infer(parser *P, int li)
{
	mfr_arch *a = P->a;
	mfr_layer *l = &a->layers[li];
	const char *op = ops[l->op].name, *nm = l->name;
	mfr_shape x = l->in_shape, y = x;
	char xs[48];
	shape_str(xs, sizeof xs, x);
	l->first_tensor = a->n_tensors;
	int needs_map = l->op == MFR_OP_CONV || l->op == MFR_OP_BN || l->op == MFR_OP_GAP ||
			l->op == MFR_OP_MAXPOOL || l->op == MFR_OP_AVGPOOL || l->op == MFR_OP_PAD ||
			l->op == MFR_OP_CHPAD || l->op == MFR_OP_FLATTEN || l->op == MFR_OP_SE ||
			l->op == MFR_OP_SPLAT;
	int needs_vec = l->op == MFR_OP_BN1D || l->op == MFR_OP_LINEAR || l->op == MFR_OP_L2NORM;
	if (needs_map && x.vec)
		return perr(P, "%s '%s': input '%s' is a vector (%d), not a C x H x W map", op, nm,
			    a->layers[l->in[0]].name, x.c);
	if (needs_vec && !x.vec)
		return perr(P, "%s '%s': input '%s' is a %s map, not a vector%s", op, nm,
			    a->layers[l->in[0]].name, xs, l->op == MFR_OP_LINEAR ? " (flatten it first)" : "");
	uint64_t n = elems(x);
	switch (l->op) {
	case MFR_OP_INPUT:
		break;
	case MFR_OP_CONV: {
		if (x.c % l->groups || l->out % l->groups)
			return perr(P, "conv '%s': g=%d does not divide the %d input and %d output channels", nm,
				    l->groups, x.c, l->out);
		y.c = l->out;
		y.h = out_side(x.h, l->kh, l->sh, l->ph);
		y.w = out_side(x.w, l->kw, l->sw, l->pw);
		if (!y.h || !y.w)
			return perr(P, "conv '%s': kernel %dx%d does not fit the %s input padded by %dx%d", nm,
				    l->kh, l->kw, xs, l->ph, l->pw);
		int d[4] = {l->out, x.c / l->groups, l->kh, l->kw};
		if (add_tensor(P, li, "weight", 4, d, 0, 0) < 0 || (l->bias && t1(P, li, "bias", l->out, 0, 0) < 0))
			return -1;
		l->macs = elems(y) * (uint64_t)(x.c / l->groups) * (uint64_t)(l->kh * l->kw);
		break;
	}
	case MFR_OP_BN:
	case MFR_OP_BN1D:
		if (bn_tensors(P, li, "", x.c, l->fixgamma) < 0)
			return -1;
		l->macs = n;
		break;
	case MFR_OP_PRELU:
		if (t1(P, li, "weight", x.c, 0, 0) < 0)
			return -1;
		l->macs = n;
		break;
	case MFR_OP_RELU:
	case MFR_OP_SIGMOID:
	case MFR_OP_DROPOUT:
		break;
	case MFR_OP_ADD:
	case MFR_OP_CONCAT:
		for (int i = 1; i < l->n_in; i++) {
			mfr_shape z = a->layers[l->in[i]].shape;
			char zs[48];
			shape_str(zs, sizeof zs, z);
			int ok = l->op == MFR_OP_ADD ? same_shape(x, z)
						      : z.vec == x.vec && z.h == x.h && z.w == x.w;
			if (!ok)
				return perr(P, "%s '%s': input '%s' is %s but '%s' is %s%s", op, nm,
					    a->layers[l->in[i]].name, zs, a->layers[l->in[0]].name, xs,
					    l->op == MFR_OP_CONCAT ? " (concat needs equal H x W)" : "");
			if (l->op == MFR_OP_CONCAT) {
				long sum = (long)y.c + z.c, cap = x.vec ? (long)MFR_ARCH_MAX_ELEMS : MFR_ARCH_MAX_CHANNELS;
				if (sum > cap)
					return perr(P, "concat '%s': more than %ld %s", nm, cap, x.vec ? "features" : "channels");
				y.c = (int)sum;
			}
		}
		break;
	case MFR_OP_GAP:
		y.h = y.w = 1;
		l->macs = n;
		break;
	case MFR_OP_MAXPOOL:
	case MFR_OP_AVGPOOL:
		if (2 * l->ph > l->kh || 2 * l->pw > l->kw)
			return perr(P, "%s '%s': padding %dx%d is more than half the %dx%d window", op, nm, l->ph,
				    l->pw, l->kh, l->kw);
		y.h = out_side(x.h, l->kh, l->sh, l->ph);
		y.w = out_side(x.w, l->kw, l->sw, l->pw);
		if (!y.h || !y.w)
			return perr(P, "%s '%s': window %dx%d does not fit the %s input padded by %dx%d", op, nm,
				    l->kh, l->kw, xs, l->ph, l->pw);
		if (l->op == MFR_OP_AVGPOOL)
			l->macs = elems(y) * (uint64_t)(l->kh * l->kw);
		break;
	case MFR_OP_PAD:
		y.h = x.h + l->pt + l->pb;
		y.w = x.w + l->pl + l->pr;
		if (y.h > MFR_ARCH_MAX_SIDE || y.w > MFR_ARCH_MAX_SIDE)
			return perr(P, "pad '%s': output side above %d", nm, MFR_ARCH_MAX_SIDE);
		break;
	case MFR_OP_CHPAD:
		if (l->out < x.c)
			return perr(P, "chpad '%s': out=%d is fewer than the %d input channels", nm, l->out, x.c);
		y.c = l->out;
		break;
	case MFR_OP_FLATTEN:
		y = (mfr_shape){1, (int)n, 1, 1}; /* n <= MFR_ARCH_MAX_ELEMS, checked on x */
		break;
	case MFR_OP_LINEAR:
		y.c = l->out;
		if (t2(P, li, "weight", l->out, x.c) < 0 || (l->bias && t1(P, li, "bias", l->out, 0, 0) < 0))
			return -1;
		l->macs = (uint64_t)x.c * (uint64_t)l->out;
		break;
	case MFR_OP_L2NORM:
		l->macs = 2 * n;
		break;
	case MFR_OP_SE: {
		int mid = x.c / l->r;
		if (!mid)
			return perr(P, "se '%s': r=%d leaves no channels of %d", nm, l->r, x.c);
		if (t2(P, li, "fc1_weight", mid, x.c) < 0 || t1(P, li, "fc1_bias", mid, 0, 0) < 0 ||
		    t2(P, li, "fc2_weight", x.c, mid) < 0 || t1(P, li, "fc2_bias", x.c, 0, 0) < 0)
			return -1;
		l->macs = 2 * n + 2 * (uint64_t)x.c * (uint64_t)mid;
		break;
	}
	case MFR_OP_SPLAT: {
		if (x.c % l->radix)
			return perr(P, "splat '%s': radix=%d does not divide the %d input channels", nm, l->radix, x.c);
		int c = x.c / l->radix;
		if (!l->inter) { /* ResNeSt: max(channels * radix / reduction 4, 32) */
			l->inter = c * l->radix / 4;
			if (l->inter < 32)
				l->inter = 32;
		}
		y.c = c;
		if (t2(P, li, "fc1_weight", l->inter, c) < 0 || t1(P, li, "fc1_bias", l->inter, 0, 0) < 0 ||
		    bn_tensors(P, li, "bn_", l->inter, 0) < 0 || t2(P, li, "fc2_weight", x.c, l->inter) < 0 ||
		    t1(P, li, "fc2_bias", x.c, 0, 0) < 0)
			return -1;
		uint64_t hw = (uint64_t)x.h * (uint64_t)x.w;
		l->macs = (uint64_t)c * hw + (uint64_t)c * l->inter + (uint64_t)l->inter +
			  (uint64_t)l->inter * x.c + (uint64_t)x.c * hw;
		break;
	}
	case MFR_OP_COUNT:
		break;
	}
	if (!y.vec && y.c > MFR_ARCH_MAX_CHANNELS)
		return perr(P, "%s '%s': more than %d channels", op, nm, MFR_ARCH_MAX_CHANNELS);
	if (elems(y) > MFR_ARCH_MAX_ELEMS)
		return perr(P, "%s '%s': output is larger than %u elements", op, nm, MFR_ARCH_MAX_ELEMS);
	l->shape = y;
	if (a->params > UINT64_MAX - l->params || a->macs > UINT64_MAX - l->macs)
		return perr(P, "%s '%s': the totals overflow", op, nm);
	a->params += l->params;
	a->macs += l->macs;
	return 0;
}

/* ---- one line ---- */

static int set_attr(parser *P, mfr_layer *l, const attr_spec *s, tok val)
{
	const char *op = ops[l->op].name;
	char *base = (char *)l;
	long v1, v2;
	const char *x;
	switch (s->kind) {
	case A_BOOL:
		if (!tok_is(val, "0") && !tok_is(val, "1"))
			return perr(P, "%s '%s': bad value '%.*s' for '%s' (0 or 1)", op, l->name, (int)val.n,
				    val.p, s->key);
		*(int *)(base + s->off) = val.p[0] - '0';
		return 0;
	case A_INT:
		if (parse_uint(val.p, val.n, &v1) < 0)
			return perr(P, "%s '%s': bad number '%.*s' for '%s'", op, l->name, (int)val.n, val.p,
				    s->key);
		if (v1 < s->lo || v1 > s->hi)
			return perr(P, "%s '%s': '%s' out of range %.0f..%.0f: %ld", op, l->name, s->key, s->lo,
				    s->hi, v1);
		*(int *)(base + s->off) = (int)v1;
		return 0;
	case A_PAIR:
		x = memchr(val.p, 'x', val.n);
		if (x ? parse_uint(val.p, (size_t)(x - val.p), &v1) < 0 ||
				parse_uint(x + 1, val.n - (size_t)(x - val.p) - 1, &v2) < 0
		      : parse_uint(val.p, val.n, &v1) < 0)
			return perr(P, "%s '%s': bad number '%.*s' for '%s' (N or HxW)", op, l->name, (int)val.n,
				    val.p, s->key);
		if (!x)
			v2 = v1;
		if (v1 < s->lo || v1 > s->hi || v2 < s->lo || v2 > s->hi)
			return perr(P, "%s '%s': '%s' out of range %.0f..%.0f: %.*s", op, l->name, s->key, s->lo,
				    s->hi, (int)val.n, val.p);
		*(int *)(base + s->off) = (int)v1;
		*(int *)(base + s->off2) = (int)v2;
		return 0;
	case A_REAL: {
		double d;
		if (parse_real(val.p, val.n, &d) < 0)
			return perr(P, "%s '%s': bad number '%.*s' for '%s'", op, l->name, (int)val.n, val.p,
				    s->key);
		if (d < s->lo || d > s->hi || (s->open_hi && d == s->hi))
			return perr(P, "%s '%s': '%s' out of range %g..%g%s: %.*s", op, l->name, s->key, s->lo,
				    s->hi, s->open_hi ? " (exclusive)" : "", (int)val.n, val.p);
		*(double *)(base + s->off) = d;
		return 0;
	}
	}
	return -1;
}

static char *dup_tok(parser *P, tok t)
{
	char *s = mfr_malloc(t.n + 1, P->e);
	if (s) {
		memcpy(s, t.p, t.n);
		s[t.n] = 0;
	}
	return s;
}

#define MAXTOK (MFR_ARCH_MAX_INPUTS + 2 + MAXA)

static int parse_input_line(parser *P, const tok *t, int nt)
{
	mfr_arch *a = P->a;
	if (nt < 2 || !valid_name(t[1]))
		return perr(P, "input: %s", nt < 2 ? "missing name" : "bad name (letters, digits, '_', '.', '-'; first a letter or '_')");
	if (a->n_layers)
		return perr(P, "input '%.*s': a second input line (the graph has one input, on line %d)",
			    (int)t[1].n, t[1].p, a->layers[0].line);
	if (nt != 5)
		return perr(P, "input '%.*s': expected 'input NAME C H W'", (int)t[1].n, t[1].p);
	long v[3];
	static const long hi[3] = {MFR_ARCH_MAX_CHANNELS, MFR_ARCH_MAX_SIDE, MFR_ARCH_MAX_SIDE};
	static const char *what[3] = {"C", "H", "W"};
	for (int i = 0; i < 3; i++) {
		if (parse_uint(t[2 + i].p, t[2 + i].n, &v[i]) < 0)
			return perr(P, "input '%.*s': bad number '%.*s' for %s", (int)t[1].n, t[1].p,
				    (int)t[2 + i].n, t[2 + i].p, what[i]);
		if (v[i] < 1 || v[i] > hi[i])
			return perr(P, "input '%.*s': %s out of range 1..%ld: %ld", (int)t[1].n, t[1].p, what[i],
				    hi[i], v[i]);
	}
	mfr_layer *l = new_layer(P);
	if (!l)
		return -1;
	l->op = MFR_OP_INPUT;
	l->in_shape = l->shape = (mfr_shape){0, (int)v[0], (int)v[1], (int)v[2]};
	if (elems(l->shape) > MFR_ARCH_MAX_ELEMS)
		return perr(P, "input '%.*s': larger than %u elements", (int)t[1].n, t[1].p, MFR_ARCH_MAX_ELEMS);
	if (!(l->name = dup_tok(P, t[1])))
		return -1;
	a->n_layers++;
	return table_insert(P, 0);
}

static int parse_output_line(parser *P, const tok *t, int nt)
{
	mfr_arch *a = P->a;
	if (nt != 2)
		return perr(P, "output: expected 'output NAME'");
	int k = lookup(P, t[1]);
	if (k < 0)
		return perr(P, "output: undefined tensor '%.*s'", (int)t[1].n, t[1].p);
	if (!P->is_output) {
		if (!(P->is_output = mfr_malloc(MFR_ARCH_MAX_LAYERS, P->e)))
			return -1;
		memset(P->is_output, 0, MFR_ARCH_MAX_LAYERS);
	}
	if (P->is_output[k])
		return perr(P, "output '%.*s': listed twice", (int)t[1].n, t[1].p);
	P->is_output[k] = 1;
	if (a->n_outputs == P->room_outputs) {
		int room = P->room_outputs ? P->room_outputs * 2 : 4;
		int *o = mfr_realloc(a->outputs, (size_t)room * sizeof *o, P->e);
		if (!o)
			return -1;
		a->outputs = o;
		P->room_outputs = room;
	}
	a->outputs[a->n_outputs++] = k;
	return 0;
}

static int parse_line(parser *P, const tok *t, int nt)
{
	mfr_arch *a = P->a;
	int op = -1;
	for (int i = 0; i < MFR_OP_COUNT; i++)
		if (tok_is(t[0], ops[i].name))
			op = i;
	if (tok_is(t[0], "output"))
		return parse_output_line(P, t, nt);
	if (op < 0)
		return perr(P, "unknown op '%.*s'", (int)t[0].n, t[0].p);
	if (op == MFR_OP_INPUT)
		return parse_input_line(P, t, nt);
	const op_spec *os = &ops[op];
	if (nt < 2 || memchr(t[1].p, '=', t[1].n))
		return perr(P, "%s: missing layer name", os->name);
	if (!valid_name(t[1]))
		return perr(P, "%s: bad layer name '%.*s' (letters, digits, '_', '.', '-'; first a letter or '_'; at most %d bytes)",
			    os->name, (int)(t[1].n > 200 ? 200 : t[1].n), t[1].p, MFR_ARCH_MAX_NAME);
	int dup = lookup(P, t[1]);
	if (dup >= 0)
		return perr(P, "%s '%.*s': name already defined on line %d", os->name, (int)t[1].n, t[1].p,
			    a->layers[dup].line);
	mfr_layer *l = new_layer(P);
	if (!l)
		return -1;
	l->op = (mfr_op)op;
	if (!(l->name = dup_tok(P, t[1])))
		return -1;
	a->n_layers++; /* owned from here on: mfr_arch_free releases it */
	int li = a->n_layers - 1;
	int i = 2;
	int nin = 0;
	while (i + nin < nt && !memchr(t[i + nin].p, '=', t[i + nin].n))
		nin++;
	if (nin < os->min_in || nin > os->max_in) {
		if (os->min_in == os->max_in)
			return perr(P, "%s '%s': needs %d input%s, got %d", os->name, l->name, os->min_in,
				    os->min_in == 1 ? "" : "s", nin);
		return perr(P, "%s '%s': needs %d to %d inputs, got %d", os->name, l->name, os->min_in,
			    os->max_in, nin);
	}
	if (!(l->in = mfr_malloc((size_t)nin * sizeof *l->in, P->e)))
		return -1;
	for (int k = 0; k < nin; k++) {
		int src = lookup(P, t[i + k]);
		if (src < 0)
			return perr(P, "%s '%s': undefined input '%.*s'", os->name, l->name, (int)t[i + k].n,
				    t[i + k].p);
		l->in[l->n_in++] = src;
	}
	l->in_shape = a->layers[l->in[0]].shape;
	/* defaults, then the attributes given */
	int seen[MAXA] = {0};
	for (int k = 0; k < MAXA && os->attrs[k].key; k++) {
		const attr_spec *s = &os->attrs[k];
		char *base = (char *)l;
		if (s->kind == A_REAL)
			*(double *)(base + s->off) = s->def;
		else {
			int d = s->def == AUTO ? 0 : (int)s->def;
			*(int *)(base + s->off) = d;
			if (s->kind == A_PAIR)
				*(int *)(base + s->off2) = d;
		}
	}
	for (i += nin; i < nt; i++) {
		const char *eq = memchr(t[i].p, '=', t[i].n);
		if (!eq)
			return perr(P, "%s '%s': '%.*s' follows the attributes (inputs come first)", os->name,
				    l->name, (int)t[i].n, t[i].p);
		tok key = {t[i].p, (size_t)(eq - t[i].p)}, val = {eq + 1, t[i].n - key.n - 1};
		int k = 0;
		while (k < MAXA && os->attrs[k].key && !tok_is(key, os->attrs[k].key))
			k++;
		if (k == MAXA || !os->attrs[k].key)
			return perr(P, "%s '%s': unknown attribute '%.*s'", os->name, l->name,
				    (int)(key.n > 64 ? 64 : key.n), key.p);
		if (seen[k])
			return perr(P, "%s '%s': attribute '%s' given twice", os->name, l->name, os->attrs[k].key);
		seen[k] = 1;
		if (set_attr(P, l, &os->attrs[k], val) < 0)
			return -1;
	}
	for (int k = 0; k < MAXA && os->attrs[k].key; k++)
		if (os->attrs[k].required && !seen[k])
			return perr(P, "%s '%s': missing attribute '%s'", os->name, l->name, os->attrs[k].key);
	if ((op == MFR_OP_MAXPOOL || op == MFR_OP_AVGPOOL) && !l->sh) {
		l->sh = l->kh;
		l->sw = l->kw;
	}
	if (infer(P, li) < 0)
		return -1;
	return table_insert(P, li);
}

mfr_arch *mfr_arch_parse(const char *text, size_t len, const char *name, mfr_error *e)
{
	mfr_error_clear(e);
	parser P = {.src = name ? name : "arch", .e = e};
	if (len > MFR_ARCH_MAX_TEXT) {
		perr(&P, "larger than the %u-byte limit of .arch text", MFR_ARCH_MAX_TEXT);
		return NULL;
	}
	if (!(P.a = mfr_malloc(sizeof *P.a, e)))
		return NULL;
	memset(P.a, 0, sizeof *P.a);
	tok *t = mfr_malloc(MAXTOK * sizeof *t, e);
	int bad = !t;
	size_t pos = 0;
	while (!bad && (pos < len || P.line == 0)) {
		const char *s = text + pos;
		const char *nl = pos < len ? memchr(s, '\n', len - pos) : NULL;
		size_t n = nl ? (size_t)(nl - s) : len - pos;
		pos += n + (nl != NULL);
		P.line++;
		int nt = 0;
		for (size_t i = 0; i < n && !bad;) {
			unsigned char c = (unsigned char)s[i];
			if (c == '#')
				break;
			if (c == ' ' || c == '\t' || c == '\r') {
				i++;
				continue;
			}
			size_t j = i;
			while (j < n) {
				c = (unsigned char)s[j];
				if (c == ' ' || c == '\t' || c == '\r' || c == '#')
					break;
				if (c < 0x21 || c > 0x7e) {
					bad = perr(&P, "byte 0x%02x is not allowed (.arch text is printable ASCII)", c);
					break;
				}
				j++;
			}
			if (bad)
				break;
			if (nt == MAXTOK) {
				bad = perr(&P, "more than %d fields", MAXTOK);
				break;
			}
			t[nt++] = (tok){s + i, j - i};
			i = j;
		}
		if (bad)
			break;
		if (P.line == 1) {
			if (nt != 2 || !tok_is(t[0], "mfr-arch"))
				bad = perr(&P, "not an .arch text (the first line must be 'mfr-arch 1')");
			else if (!tok_is(t[1], "1"))
				bad = perr(&P, "unsupported version '%.*s' (this reader knows 'mfr-arch 1')",
					   (int)(t[1].n > 32 ? 32 : t[1].n), t[1].p);
			continue;
		}
		if (nt && parse_line(&P, t, nt) < 0)
			bad = 1;
	}
	P.line = 0;
	if (!bad && !P.a->n_layers)
		bad = perr(&P, "no input line");
	if (!bad && !P.a->n_outputs)
		bad = perr(&P, "no output line");
	free(t);
	free(P.table);
	free(P.is_output);
	if (bad) {
		mfr_arch_free(P.a);
		return NULL;
	}
	return P.a;
}

void mfr_arch_free(mfr_arch *a)
{
	if (!a)
		return;
	for (int i = 0; i < a->n_layers; i++) {
		free(a->layers[i].name);
		free(a->layers[i].in);
	}
	for (int i = 0; i < a->n_tensors; i++)
		free(a->tensors[i].name);
	free(a->layers);
	free(a->outputs);
	free(a->tensors);
	free(a);
}

int mfr_arch_find(const mfr_arch *a, const char *name)
{
	for (int i = 0; i < a->n_layers; i++)
		if (!strcmp(a->layers[i].name, name))
			return i;
	return -1;
}

/* ---- writing ---- */

/* The shortest %g form that reads back as the same double. */
static void real_str(char *buf, size_t n, double v)
{
	for (int prec = 1; prec <= 17; prec++) {
		snprintf(buf, n, "%.*g", prec, v);
		if (strtod(buf, NULL) == v)
			return;
	}
}

char *mfr_arch_format(const mfr_arch *a, size_t *len, mfr_error *e)
{
	mfr_text b = {0};
	mfr_text_printf(&b, "mfr-arch 1\n");
	for (int i = 0; i < a->n_layers; i++) {
		const mfr_layer *l = &a->layers[i];
		const op_spec *os = &ops[l->op];
		if (l->op == MFR_OP_INPUT) {
			mfr_text_printf(&b, "input %s %d %d %d\n", l->name, l->shape.c, l->shape.h, l->shape.w);
			continue;
		}
		mfr_text_printf(&b, "%s %s", os->name, l->name);
		for (int k = 0; k < l->n_in; k++)
			mfr_text_printf(&b, " %s", a->layers[l->in[k]].name);
		for (int k = 0; k < MAXA && os->attrs[k].key; k++) {
			const attr_spec *s = &os->attrs[k];
			const char *base = (const char *)l;
			int v1 = *(const int *)(base + s->off);
			if (s->kind == A_REAL) {
				char r[40];
				real_str(r, sizeof r, *(const double *)(base + s->off));
				mfr_text_printf(&b, " %s=%s", s->key, r);
			} else if (s->kind == A_PAIR && *(const int *)(base + s->off2) != v1)
				mfr_text_printf(&b, " %s=%dx%d", s->key, v1, *(const int *)(base + s->off2));
			else
				mfr_text_printf(&b, " %s=%d", s->key, v1);
		}
		mfr_text_printf(&b, "\n");
	}
	for (int i = 0; i < a->n_outputs; i++)
		mfr_text_printf(&b, "output %s\n", a->layers[a->outputs[i]].name);
	if (b.failed) {
		free(b.d);
		if (e && !e->msg[0])
			mfr_fail(e, "cannot format the architecture");
		return NULL;
	}
	if (len)
		*len = b.n;
	return b.d;
}

char *mfr_arch_eng(char buf[16], uint64_t v)
{
	static const char sfx[] = "KMGTPE";
	if (v < 1000) {
		snprintf(buf, 16, "%u", (unsigned)v);
		return buf;
	}
	double x = (double)v;
	int k = -1;
	while (x >= 999.5 && k < 5) {
		x /= 1000;
		k++;
	}
	/* three significant digits; a value that rounds up to the next
	 * decade (9.996 -> 10.0) takes the wider format */
	if (x < 9.995)
		snprintf(buf, 16, "%.2f%c", x, sfx[k]);
	else if (x < 99.95)
		snprintf(buf, 16, "%.1f%c", x, sfx[k]);
	else
		snprintf(buf, 16, "%.0f%c", x, sfx[k]);
	return buf;
}

int mfr_arch_describe(const mfr_arch *a, FILE *f, mfr_error *e)
{
	int w = 4;
	for (int i = 0; i < a->n_layers; i++) {
		int n = (int)strlen(a->layers[i].name);
		if (n > w)
			w = n < 40 ? n : 40;
	}
	fprintf(f, "%5s  %-*s  %-8s %-14s %12s %14s\n", "#", w, "name", "op", "output", "params", "MACs");
	for (int i = 0; i < a->n_layers; i++) {
		const mfr_layer *l = &a->layers[i];
		char s[48];
		shape_str(s, sizeof s, l->shape);
		fprintf(f, "%5d  %-*s  %-8s %-14s %12llu %14llu\n", i, w, l->name, ops[l->op].name, s,
			(unsigned long long)l->params, (unsigned long long)l->macs);
	}
	for (int i = 0; i < a->n_outputs; i++) {
		char s[48];
		shape_str(s, sizeof s, a->layers[a->outputs[i]].shape);
		fprintf(f, "output: %s (%s)\n", a->layers[a->outputs[i]].name, s);
	}
	char m[16];
	fprintf(f, "total: %llu params, %s MACs\n", (unsigned long long)a->params, mfr_arch_eng(m, a->macs));
	if (fflush(f) != 0 || ferror(f))
		return mfr_fail(e, "cannot write the description");
	return 0;
}

mfr_arch *mfr_arch_load(const char *spec, mfr_error *e)
{
	char *text = mfr_arch_preset(spec, NULL);
	if (text) {
		mfr_arch *a = mfr_arch_parse(text, strlen(text), spec, e);
		free(text);
		return a;
	}
	uint8_t *d;
	size_t n;
	if (mfr_read_file(spec, MFR_ARCH_MAX_TEXT, &d, &n, e) < 0)
		return NULL;
	mfr_arch *a = mfr_arch_parse((const char *)d, n, spec, e);
	free(d);
	return a;
}

/* ---- what the executors share: readers, inference merges, a layer's shapes
 * and saved values at batch N ---- */

int mfr_arch_users(const mfr_arch *a, int i)
{
	int users = 0;
	for (int j = 0; j < a->n_layers; j++)
		for (int k = 0; k < a->layers[j].n_in; k++)
			users += a->layers[j].in[k] == i;
	for (int k = 0; k < a->n_outputs; k++)
		users += a->outputs[k] == i;
	return users;
}

void mfr_arch_inference_merges(const mfr_arch *a, int *fold_bn, uint8_t *inplace)
{
	int nl = a->n_layers;
	for (int i = 0; i < nl; i++) {
		fold_bn[i] = -1;
		inplace[i] = 0;
	}
	for (int b = 0; b < nl; b++) {
		const mfr_layer *B = &a->layers[b];
		if (B->op == MFR_OP_BN && a->layers[B->in[0]].op == MFR_OP_CONV && mfr_arch_users(a, B->in[0]) == 1)
			fold_bn[B->in[0]] = b;
	}
	for (int i = 0; i < nl; i++) {
		const mfr_layer *L = &a->layers[i];
		if ((L->op == MFR_OP_PRELU || L->op == MFR_OP_RELU) && L->in[0] != 0 && mfr_arch_users(a, L->in[0]) == 1)
			inplace[i] = 1; /* never overwrite the input image */
	}
}

size_t mfr_layer_save_len(const mfr_layer *L, int N)
{
	const mfr_shape *in = &L->in_shape;
	switch (L->op) {
	case MFR_OP_BN:
	case MFR_OP_BN1D: return 2 * (size_t)in->c;
	case MFR_OP_L2NORM: return (size_t)N;
	case MFR_OP_SE: return (size_t)N * (2 * (size_t)in->c + (size_t)(in->c / L->r));
	case MFR_OP_SPLAT: return mfr_splat_save_len(N, L->shape.c, L->radix, L->inter);
	default: return 0;
	}
}

int mfr_layer_conv_shape(const mfr_layer *L, int N, mfr_conv_shape *s)
{
	*s = (mfr_conv_shape){.n = N, .ci = L->in_shape.c, .h = L->in_shape.h, .w = L->in_shape.w, .co = L->out,
			      .kh = L->kh, .kw = L->kw, .sh = L->sh, .sw = L->sw, .ph = L->ph, .pw = L->pw,
			      .groups = L->groups};
	return mfr_conv_shape_init(s, NULL);
}

int mfr_layer_pool_shape(const mfr_layer *L, int N, mfr_pool_shape *s)
{
	*s = (mfr_pool_shape){.n = N, .c = L->in_shape.c, .h = L->in_shape.h, .w = L->in_shape.w, .kh = L->kh,
			      .kw = L->kw, .sh = L->sh, .sw = L->sw, .ph = L->ph, .pw = L->pw};
	return mfr_pool_shape_init(s, NULL);
}

int mfr_layer_pad_shape(const mfr_layer *L, int N, mfr_pad_shape *s)
{
	*s = (mfr_pad_shape){.n = N, .c = L->in_shape.c, .h = L->in_shape.h, .w = L->in_shape.w, .top = L->pt,
			     .bottom = L->pb, .left = L->pl, .right = L->pr};
	return mfr_pad_shape_init(s, NULL);
}
