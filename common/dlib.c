/* dlib.c — dlib's ResNet-29 face descriptor from face-api.js's TensorFlow.js
 * weights into an mfr model: a strict JSON reader, the tfjs manifest reader
 * and dequantiser, and the network as .arch text (dlib.h has the contracts).
 *
 * The network, as dlib defines it (dnn_face_recognition_ex.cpp, anet_type)
 * and face-api.js runs it (faceRecognitionNet):
 *   input 150x150 RGB, (pixel - mean) / 256
 *   conv 7x7/2 32 (no padding) + affine + relu            150 -> 72
 *   max pool 3x3/2 (no padding)                            72 -> 35
 *   3 residual blocks of 32, a down-sampling block of 64 and 3 of 64,
 *   a down block of 128 and 2 of 128, a down block of 256 and 2 of 256,
 *   and a last down block of 256                35 -> 17 -> 8 -> 4 -> 2
 *   global mean pool, fc 256 -> 128 without bias; the raw 128-d vector is
 *   the descriptor (dlib compares descriptors by Euclidean distance, 0.6).
 * A residual block: conv 3x3/1 (padding 1) + affine + relu, conv 3x3/1 +
 * affine, plus the input, relu. A down-sampling block: its first conv has
 * stride 2 and no padding, and the shortcut is a 2x2/2 average pool of the
 * input; where the two disagree, the smaller is zero-extended to the larger
 * at the end of each axis — channels appended (dlib's add_prev and tfjs's
 * concat with zeros), rows at the bottom and columns on the right (8 -> 3 by
 * the conv but 4 by the pool, then 4 -> 1 and 2). dlib pads 0 whenever a
 * stride is not 1 (con_, max_pool_, avg_pool_ defaults), which is what
 * face-api's 'valid' means for those layers and 'same' for the 3x3/1 convs.
 * Every conv has a bias (dlib's con_ does; its values are tiny).
 */
#include "dlib.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "arch.h" /* defines: mfr_arch_parse, mfr_arch_tensor */

/* ---------------------------------------------------------------- JSON */

typedef struct {
	const char *s;
	size_t n, i;
	const char *name;
	mfr_error *e;
} jparser;

static int jfail(jparser *p, size_t at, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int jfail(jparser *p, size_t at, const char *fmt, ...)
{
	char what[400];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(what, sizeof what, fmt, ap);
	va_end(ap);
	return mfr_fail(p->e, "'%s': byte %zu: %s", p->name, at, what);
}

static void jskip(jparser *p)
{
	while (p->i < p->n && (p->s[p->i] == ' ' || p->s[p->i] == '\t' || p->s[p->i] == '\n' || p->s[p->i] == '\r'))
		p->i++;
}

/* What the parser found at i, for messages: a character, or the end. */
static const char *jfound(jparser *p, char buf[8])
{
	if (p->i >= p->n)
		return "the end of the text";
	unsigned char c = (unsigned char)p->s[p->i];
	if (c > 0x20 && c < 0x7f)
		snprintf(buf, 8, "'%c'", c);
	else
		snprintf(buf, 8, "0x%02x", c);
	return buf;
}

static int hexval(int c)
{
	return c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
}

static int read_hex4(jparser *p, size_t at, unsigned *v)
{
	if (p->n - p->i < 4)
		return jfail(p, at, "truncated \\u escape");
	*v = 0;
	for (int k = 0; k < 4; k++) {
		int h = hexval((unsigned char)p->s[p->i + k]);
		if (h < 0)
			return jfail(p, p->i + k, "bad hex digit in \\u escape");
		*v = *v << 4 | (unsigned)h;
	}
	p->i += 4;
	return 0;
}

/* Length of the valid UTF-8 sequence at s[0..n), or 0 (RFC 3629: no
 * overlong forms, no surrogates, nothing above U+10FFFF). */
static size_t utf8_len(const unsigned char *s, size_t n)
{
	unsigned c = s[0];
	size_t k;
	unsigned lo = 0x80, hi = 0xBF;
	if (c < 0x80)
		return 1;
	else if (c >= 0xC2 && c <= 0xDF)
		k = 2;
	else if (c >= 0xE0 && c <= 0xEF) {
		k = 3;
		if (c == 0xE0)
			lo = 0xA0;
		if (c == 0xED)
			hi = 0x9F;
	} else if (c >= 0xF0 && c <= 0xF4) {
		k = 4;
		if (c == 0xF0)
			lo = 0x90;
		if (c == 0xF4)
			hi = 0x8F;
	} else
		return 0;
	if (n < k || s[1] < lo || s[1] > hi)
		return 0;
	for (size_t j = 2; j < k; j++)
		if (s[j] < 0x80 || s[j] > 0xBF)
			return 0;
	return k;
}

static size_t put_utf8(char *o, unsigned cp)
{
	if (cp < 0x80) {
		o[0] = (char)cp;
		return 1;
	}
	if (cp < 0x800) {
		o[0] = (char)(0xC0 | cp >> 6);
		o[1] = (char)(0x80 | (cp & 0x3F));
		return 2;
	}
	if (cp < 0x10000) {
		o[0] = (char)(0xE0 | cp >> 12);
		o[1] = (char)(0x80 | (cp >> 6 & 0x3F));
		o[2] = (char)(0x80 | (cp & 0x3F));
		return 3;
	}
	o[0] = (char)(0xF0 | cp >> 18);
	o[1] = (char)(0x80 | (cp >> 12 & 0x3F));
	o[2] = (char)(0x80 | (cp >> 6 & 0x3F));
	o[3] = (char)(0x80 | (cp & 0x3F));
	return 4;
}

/* A string at p->i (the opening quote); decoded into a fresh *out. Decoded
 * text is never longer than its source, so one allocation of the remaining
 * length bounds it. */
static int jstring(jparser *p, char **out, size_t *outlen)
{
	size_t start = p->i++;
	size_t end = p->i;
	while (end < p->n && p->s[end] != '"') /* the closing quote bounds the buffer */
		end += p->s[end] == '\\' ? 2 : 1;
	if (end >= p->n)
		return jfail(p, start, "unterminated string");
	char *o = malloc(end - p->i + 1);
	if (!o)
		return mfr_fail(p->e, "out of memory");
	size_t k = 0;
	for (;;) {
		if (p->i >= p->n) { /* unreachable: the scan above found the quote */
			free(o);
			return jfail(p, start, "unterminated string");
		}
		unsigned char c = (unsigned char)p->s[p->i];
		if (c == '"') {
			p->i++;
			break;
		}
		if (c < 0x20) {
			free(o);
			return jfail(p, p->i, "control character 0x%02x in a string (escape it)", c);
		}
		if (c != '\\') {
			size_t u = utf8_len((const unsigned char *)p->s + p->i, p->n - p->i);
			if (!u) {
				free(o);
				return jfail(p, p->i, "invalid UTF-8 in a string");
			}
			memcpy(o + k, p->s + p->i, u);
			k += u;
			p->i += u;
			continue;
		}
		size_t at = p->i++;
		if (p->i >= p->n) {
			free(o);
			return jfail(p, at, "unterminated string");
		}
		char x = p->s[p->i++];
		switch (x) {
		case '"': o[k++] = '"'; break;
		case '\\': o[k++] = '\\'; break;
		case '/': o[k++] = '/'; break;
		case 'b': o[k++] = '\b'; break;
		case 'f': o[k++] = '\f'; break;
		case 'n': o[k++] = '\n'; break;
		case 'r': o[k++] = '\r'; break;
		case 't': o[k++] = '\t'; break;
		case 'u': {
			unsigned cp, lo;
			if (read_hex4(p, at, &cp) < 0) {
				free(o);
				return -1;
			}
			if (cp >= 0xDC00 && cp <= 0xDFFF) {
				free(o);
				return jfail(p, at, "unpaired low surrogate \\u%04X", cp);
			}
			if (cp >= 0xD800 && cp <= 0xDBFF) {
				if (p->n - p->i < 2 || p->s[p->i] != '\\' || p->s[p->i + 1] != 'u') {
					free(o);
					return jfail(p, at, "high surrogate \\u%04X without its low half", cp);
				}
				p->i += 2;
				if (read_hex4(p, at, &lo) < 0) {
					free(o);
					return -1;
				}
				if (lo < 0xDC00 || lo > 0xDFFF) {
					free(o);
					return jfail(p, at, "high surrogate \\u%04X without its low half", cp);
				}
				cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
			}
			if (cp == 0) {
				free(o);
				return jfail(p, at, "\\u0000 in a string (not allowed here)");
			}
			/* an escape is 6 or 12 source bytes and at most 4 decoded: fits */
			k += put_utf8(o + k, cp);
			break;
		}
		default:
			free(o);
			return jfail(p, at, "bad escape '\\%c'", x > 0x20 && x < 0x7f ? x : '?');
		}
	}
	o[k] = 0;
	*out = o;
	*outlen = k;
	return 0;
}

static int isdig(char c) { return c >= '0' && c <= '9'; }

static int jnumber(jparser *p, double *v)
{
	size_t start = p->i, i = p->i;
	if (i < p->n && p->s[i] == '-')
		i++;
	if (i >= p->n || !isdig(p->s[i]))
		return jfail(p, start, "bad number: expected a digit");
	if (p->s[i] == '0') {
		i++;
		if (i < p->n && isdig(p->s[i]))
			return jfail(p, start, "bad number: leading zero");
	} else
		while (i < p->n && isdig(p->s[i]))
			i++;
	if (i < p->n && p->s[i] == '.') {
		i++;
		if (i >= p->n || !isdig(p->s[i]))
			return jfail(p, start, "bad number: expected a digit after '.'");
		while (i < p->n && isdig(p->s[i]))
			i++;
	}
	if (i < p->n && (p->s[i] == 'e' || p->s[i] == 'E')) {
		i++;
		if (i < p->n && (p->s[i] == '+' || p->s[i] == '-'))
			i++;
		if (i >= p->n || !isdig(p->s[i]))
			return jfail(p, start, "bad number: expected a digit in the exponent");
		while (i < p->n && isdig(p->s[i]))
			i++;
	}
	if (i - start > MFR_JSON_MAX_NUMBER)
		return jfail(p, start, "number longer than %d characters", MFR_JSON_MAX_NUMBER);
	char buf[MFR_JSON_MAX_NUMBER + 1];
	memcpy(buf, p->s + start, i - start);
	buf[i - start] = 0;
	/* the grammar above is a subset of strtod's, so strtod reads it all;
	 * the C locale's '.' is assumed (libmfr never calls setlocale) */
	char *end;
	*v = strtod(buf, &end);
	if (*end || !isfinite(*v))
		return jfail(p, start, "number out of range: %s", buf);
	p->i = i;
	return 0;
}

static void jfree_members(mfr_json *j)
{
	if (j->type == MFR_JSON_STRING)
		free(j->str);
	for (size_t k = 0; k < j->n; k++) {
		jfree_members(&j->items[k]);
		if (j->keys)
			free(j->keys[k]);
	}
	free(j->items);
	free(j->keys);
}

static int jvalue(jparser *p, mfr_json *v, int depth);

/* Appends a member to an array or object, growing by doubling. */
static mfr_json *jgrow(jparser *p, mfr_json *v, size_t *room)
{
	if (v->n == *room) {
		size_t r = *room ? *room * 2 : 4;
		mfr_json *it = realloc(v->items, r * sizeof *it);
		if (!it)
			return mfr_fail(p->e, "out of memory"), NULL;
		v->items = it;
		if (v->type == MFR_JSON_OBJECT) {
			char **ks = realloc(v->keys, r * sizeof *ks);
			if (!ks)
				return mfr_fail(p->e, "out of memory"), NULL;
			v->keys = ks;
		}
		*room = r;
	}
	mfr_json *m = &v->items[v->n];
	memset(m, 0, sizeof *m);
	return m;
}

static int jcontainer(jparser *p, mfr_json *v, int depth)
{
	int obj = p->s[p->i] == '{';
	char close = obj ? '}' : ']';
	const char *what = obj ? "object" : "array";
	v->type = obj ? MFR_JSON_OBJECT : MFR_JSON_ARRAY;
	if (depth >= MFR_JSON_MAX_DEPTH)
		return jfail(p, p->i, "nesting deeper than %d", MFR_JSON_MAX_DEPTH);
	p->i++;
	jskip(p);
	if (p->i < p->n && p->s[p->i] == close) {
		p->i++;
		return 0;
	}
	size_t room = 0;
	char fb[8];
	for (;;) {
		mfr_json *m = jgrow(p, v, &room);
		if (!m)
			return -1;
		if (obj) {
			if (p->i >= p->n || p->s[p->i] != '"')
				return jfail(p, p->i, "expected a key string in an object, found %s", jfound(p, fb));
			size_t kat = p->i, klen;
			char *key;
			if (jstring(p, &key, &klen) < 0)
				return -1;
			for (size_t k = 0; k < v->n; k++)
				if (!strcmp(v->keys[k], key)) {
					free(key);
					return jfail(p, kat, "duplicate key \"%.64s\"", v->keys[k]);
				}
			v->keys[v->n] = key;
			jskip(p);
			if (p->i >= p->n || p->s[p->i] != ':') {
				free(key);
				return jfail(p, p->i, "expected ':' after a key, found %s", jfound(p, fb));
			}
			p->i++;
			jskip(p);
		}
		/* count the member now so that a failure below frees what it holds */
		int rc = jvalue(p, m, depth + 1);
		v->n++;
		if (rc < 0)
			return -1;
		jskip(p);
		if (p->i < p->n && p->s[p->i] == ',') {
			p->i++;
			jskip(p);
			continue;
		}
		if (p->i < p->n && p->s[p->i] == close) {
			p->i++;
			return 0;
		}
		return jfail(p, p->i, "expected ',' or '%c' after an %s member, found %s", close, what, jfound(p, fb));
	}
}

static int jvalue(jparser *p, mfr_json *v, int depth)
{
	char fb[8];
	v->at = p->i;
	if (p->i >= p->n)
		return jfail(p, p->i, "expected a value, found the end of the text");
	char c = p->s[p->i];
	static const struct {
		const char *word;
		mfr_json_type type;
	} words[] = {{"null", MFR_JSON_NULL}, {"true", MFR_JSON_TRUE}, {"false", MFR_JSON_FALSE}};
	for (size_t k = 0; k < sizeof words / sizeof *words; k++)
		if (c == words[k].word[0]) {
			size_t l = strlen(words[k].word);
			if (p->n - p->i < l || memcmp(p->s + p->i, words[k].word, l))
				return jfail(p, p->i, "bad literal (expected %s)", words[k].word);
			p->i += l;
			v->type = words[k].type;
			return 0;
		}
	if (c == '"') {
		v->type = MFR_JSON_STRING;
		return jstring(p, &v->str, &v->len);
	}
	if (c == '-' || isdig(c)) {
		v->type = MFR_JSON_NUMBER;
		return jnumber(p, &v->num);
	}
	if (c == '[' || c == '{')
		return jcontainer(p, v, depth);
	return jfail(p, p->i, "expected a value, found %s", jfound(p, fb));
}

mfr_json *mfr_json_parse(const char *text, size_t len, const char *name, mfr_error *e)
{
	jparser p = {.s = text, .n = len, .name = name, .e = e};
	mfr_json *j = calloc(1, sizeof *j);
	if (!j) {
		mfr_fail(e, "out of memory");
		return NULL;
	}
	jskip(&p);
	if (jvalue(&p, j, 0) < 0) {
		mfr_json_free(j);
		return NULL;
	}
	jskip(&p);
	if (p.i != p.n) {
		char fb[8];
		jfail(&p, p.i, "text after the JSON value: %s", jfound(&p, fb));
		mfr_json_free(j);
		return NULL;
	}
	return j;
}

void mfr_json_free(mfr_json *j)
{
	if (!j)
		return;
	jfree_members(j);
	free(j);
}

const mfr_json *mfr_json_get(const mfr_json *o, const char *key)
{
	if (!o || o->type != MFR_JSON_OBJECT)
		return NULL;
	for (size_t k = 0; k < o->n; k++)
		if (!strcmp(o->keys[k], key))
			return &o->items[k];
	return NULL;
}

/* ---------------------------------------------------------------- tfjs manifest */

static const char *jtype_name(const mfr_json *j)
{
	static const char *n[] = {"null", "false", "true", "a number", "a string", "an array", "an object"};
	return j ? n[j->type] : "missing";
}

/* The member key of o, which must have type t; NULL with e filled otherwise. */
static const mfr_json *member(const mfr_json *o, const char *key, mfr_json_type t, const char *name,
			      const char *where, mfr_error *e)
{
	const mfr_json *m = mfr_json_get(o, key);
	if (!m) {
		mfr_fail(e, "'%s': byte %zu: %s has no \"%s\"", name, o->at, where, key);
		return NULL;
	}
	if (m->type != t) {
		static const char *want[] = {"null", "false", "true", "a number", "a string", "an array", "an object"};
		mfr_fail(e, "'%s': byte %zu: %s: \"%s\" must be %s, not %s", name, m->at, where, key, want[t],
			 jtype_name(m));
		return NULL;
	}
	return m;
}

/* A shard path must stay in the manifest's folder: relative, no '..'. */
static int path_ok(const char *s)
{
	if (!*s || *s == '/')
		return 0;
	for (const char *c = s; *c;) {
		const char *slash = strchr(c, '/');
		size_t l = slash ? (size_t)(slash - c) : strlen(c);
		if (l == 0 || (l == 2 && c[0] == '.' && c[1] == '.'))
			return 0;
		c += l + (slash != NULL);
	}
	return 1;
}

void mfr_tfjs_free(mfr_tfjs *w)
{
	if (!w)
		return;
	for (int g = 0; g < w->ngroups; g++) {
		for (int k = 0; w->paths && w->paths[g] && k < w->npaths[g]; k++)
			free(w->paths[g][k]);
		if (w->paths)
			free(w->paths[g]);
	}
	free(w->paths);
	free(w->npaths);
	free(w->group_bytes);
	for (int i = 0; i < w->n; i++) {
		free(w->t[i].name);
		free(w->t[i].data);
	}
	free(w->t);
	memset(w, 0, sizeof *w);
}

static int parse_tensor(const mfr_json *o, const char *name, int group, int index, mfr_tfjs_tensor *t,
			mfr_error *e)
{
	char where[64];
	snprintf(where, sizeof where, "weight %d of group %d", index, group);
	if (o->type != MFR_JSON_OBJECT)
		return mfr_fail(e, "'%s': byte %zu: %s is %s, not an object", name, o->at, where, jtype_name(o));
	const mfr_json *jn = member(o, "name", MFR_JSON_STRING, name, where, e);
	if (!jn)
		return -1;
	if (jn->len < 1 || jn->len > MFR_TENSOR_NAME_MAX)
		return mfr_fail(e, "'%s': byte %zu: %s: a name has 1..%d bytes", name, jn->at, where, MFR_TENSOR_NAME_MAX);
	snprintf(where, sizeof where, "weight '%.40s'", jn->str);
	const mfr_json *js = member(o, "shape", MFR_JSON_ARRAY, name, where, e);
	const mfr_json *jd = js ? member(o, "dtype", MFR_JSON_STRING, name, where, e) : NULL;
	if (!jd)
		return -1;
	if (js->n > MFR_TENSOR_MAX_DIMS)
		return mfr_fail(e, "'%s': byte %zu: %s: %zu dimensions, at most %d", name, js->at, where, js->n,
				MFR_TENSOR_MAX_DIMS);
	if (strcmp(jd->str, "float32"))
		return mfr_fail(e, "'%s': byte %zu: %s: dtype \"%.32s\" is not supported (float32 only)", name, jd->at,
				where, jd->str);
	t->ndim = (int)js->n;
	size_t numel = 1;
	for (size_t k = 0; k < js->n; k++) {
		const mfr_json *d = &js->items[k];
		if (d->type != MFR_JSON_NUMBER || d->num != floor(d->num) || d->num < 0 || d->num > 2147483647.0)
			return mfr_fail(e, "'%s': byte %zu: %s: a dimension must be an integer 0..2147483647", name, d->at,
					where);
		t->dims[k] = (int64_t)d->num;
		if (t->dims[k] && numel > 2147483647u / (size_t)t->dims[k])
			return mfr_fail(e, "'%s': byte %zu: %s: more than 2^31-1 elements", name, js->at, where);
		numel *= (size_t)t->dims[k];
	}
	t->numel = numel;
	const mfr_json *jq = mfr_json_get(o, "quantization");
	if (jq && !member(o, "quantization", MFR_JSON_OBJECT, name, where, e))
		return -1;
	if (jq) {
		const mfr_json *qd = member(jq, "dtype", MFR_JSON_STRING, name, where, e);
		const mfr_json *qs = qd ? member(jq, "scale", MFR_JSON_NUMBER, name, where, e) : NULL;
		const mfr_json *qm = qs ? member(jq, "min", MFR_JSON_NUMBER, name, where, e) : NULL;
		if (!qm)
			return -1;
		if (!strcmp(qd->str, "uint8"))
			t->qbytes = 1;
		else if (!strcmp(qd->str, "uint16"))
			t->qbytes = 2;
		else
			return mfr_fail(e, "'%s': byte %zu: %s: quantisation \"%.32s\" is not supported (uint8, uint16)",
					name, qd->at, where, qd->str);
		t->scale = qs->num;
		t->min = qm->num;
	}
	if (!(t->name = strdup(jn->str)))
		return mfr_fail(e, "out of memory");
	t->group = group;
	t->bytes = numel * (t->qbytes ? (size_t)t->qbytes : 4);
	return 0;
}

int mfr_tfjs_parse(const char *text, size_t len, const char *name, mfr_tfjs *w, mfr_error *e)
{
	memset(w, 0, sizeof *w);
	mfr_json *root = mfr_json_parse(text, len, name, e);
	if (!root)
		return -1;
	int rc = -1;
	if (root->type != MFR_JSON_ARRAY || root->n < 1) {
		mfr_fail(e, "'%s': byte %zu: a weights manifest is an array of groups, not %s", name, root->at,
			 root->type == MFR_JSON_ARRAY ? "an empty array" : jtype_name(root));
		goto out;
	}
	if (root->n > 65536) {
		mfr_fail(e, "'%s': more than 65536 weight groups", name);
		goto out;
	}
	int ng = (int)root->n;
	size_t total = 0;
	for (int g = 0; g < ng; g++) {
		const mfr_json *gr = &root->items[g];
		if (gr->type != MFR_JSON_OBJECT) {
			mfr_fail(e, "'%s': byte %zu: group %d is %s, not an object", name, gr->at, g, jtype_name(gr));
			goto out;
		}
		char where[32];
		snprintf(where, sizeof where, "group %d", g);
		const mfr_json *ps = member(gr, "paths", MFR_JSON_ARRAY, name, where, e);
		const mfr_json *ws = ps ? member(gr, "weights", MFR_JSON_ARRAY, name, where, e) : NULL;
		if (!ws)
			goto out;
		if (ps->n < 1 || ps->n > 65536) {
			mfr_fail(e, "'%s': byte %zu: group %d needs 1..65536 paths", name, ps->at, g);
			goto out;
		}
		total += ws->n;
	}
	if (total > 65536) {
		mfr_fail(e, "'%s': more than 65536 weights", name);
		goto out;
	}
	w->npaths = calloc((size_t)ng, sizeof *w->npaths);
	w->paths = calloc((size_t)ng, sizeof *w->paths);
	w->group_bytes = calloc((size_t)ng, sizeof *w->group_bytes);
	w->t = calloc(total ? total : 1, sizeof *w->t);
	if (!w->npaths || !w->paths || !w->group_bytes || !w->t) {
		mfr_fail(e, "out of memory");
		goto out;
	}
	w->ngroups = ng;
	for (int g = 0; g < ng; g++) {
		const mfr_json *gr = &root->items[g];
		const mfr_json *ps = mfr_json_get(gr, "paths"), *ws = mfr_json_get(gr, "weights");
		if (!(w->paths[g] = calloc(ps->n, sizeof **w->paths))) {
			mfr_fail(e, "out of memory");
			goto out;
		}
		for (size_t k = 0; k < ps->n; k++) {
			const mfr_json *pj = &ps->items[k];
			if (pj->type != MFR_JSON_STRING || !path_ok(pj->str)) {
				mfr_fail(e, "'%s': byte %zu: group %d: a path must be a relative file name without '..'", name,
					 pj->at, g);
				goto out;
			}
			if (!(w->paths[g][k] = strdup(pj->str))) {
				mfr_fail(e, "out of memory");
				goto out;
			}
			w->npaths[g] = (int)k + 1;
		}
		size_t off = 0;
		for (size_t k = 0; k < ws->n; k++) {
			mfr_tfjs_tensor *t = &w->t[w->n];
			if (parse_tensor(&ws->items[k], name, g, (int)k, t, e) < 0)
				goto out;
			w->n++;
			if (mfr_tfjs_find(w, t->name) != t) {
				mfr_fail(e, "'%s': byte %zu: weight '%s' appears twice", name, ws->items[k].at, t->name);
				goto out;
			}
			t->offset = off;
			off += t->bytes; /* at most 65536 tensors of 2^33 bytes: no overflow in 64 bits */
		}
		w->group_bytes[g] = off;
	}
	rc = 0;
out:
	mfr_json_free(root);
	if (rc < 0)
		mfr_tfjs_free(w);
	return rc;
}

const mfr_tfjs_tensor *mfr_tfjs_find(const mfr_tfjs *w, const char *name)
{
	for (int i = 0; i < w->n; i++)
		if (!strcmp(w->t[i].name, name))
			return &w->t[i];
	return NULL;
}

void mfr_tfjs_dequant(float *out, const uint8_t *p, size_t n, int qbytes, double scale, double min)
{
	if (qbytes == 0)
		for (size_t i = 0; i < n; i++)
			out[i] = mfr_getf32(p + 4 * i);
	else if (qbytes == 1)
		for (size_t i = 0; i < n; i++)
			out[i] = (float)(p[i] * scale + min);
	else
		for (size_t i = 0; i < n; i++)
			out[i] = (float)(mfr_get16(p + 2 * i) * scale + min);
}

/* A shard is the network's whole weight data: 6.4 MB for dlib. The cap keeps a
 * wrong path (a disk image, /dev/zero) from being read into memory. */
#define SHARD_CAP ((size_t)1 << 30)

static char *join(const char *dir, const char *file, mfr_error *e)
{
	size_t n = strlen(dir) + strlen(file) + 2;
	char *s = mfr_malloc(n, e);
	if (s)
		snprintf(s, n, "%s/%s", dir, file);
	return s;
}

int mfr_tfjs_load(const char *dir, const char *manifest, mfr_tfjs *w, mfr_error *e)
{
	memset(w, 0, sizeof *w);
	char *mpath = join(dir, manifest, e);
	if (!mpath)
		return -1;
	uint8_t *text = NULL;
	size_t tlen;
	if (mfr_read_file(mpath, 16u << 20, &text, &tlen, e) < 0 ||
	    mfr_tfjs_parse((const char *)text, tlen, mpath, w, e) < 0) {
		free(text);
		free(mpath);
		return -1;
	}
	free(text);
	free(mpath);
	for (int g = 0; g < w->ngroups; g++) {
		if (w->group_bytes[g] > SHARD_CAP) {
			mfr_fail(e, "'%s': group %d describes %zu bytes, more than %zu", manifest, g, w->group_bytes[g],
				 SHARD_CAP);
			goto fail;
		}
		uint8_t *all = mfr_malloc(w->group_bytes[g] ? w->group_bytes[g] : 1, e);
		if (!all)
			goto fail;
		size_t have = 0;
		for (int k = 0; k < w->npaths[g]; k++) {
			char *sp = join(dir, w->paths[g][k], e);
			uint8_t *d = NULL;
			size_t n = 0;
			if (!sp || mfr_read_file(sp, SHARD_CAP, &d, &n, e) < 0) {
				free(sp);
				free(all);
				goto fail;
			}
			if (n > w->group_bytes[g] - have) {
				mfr_fail(e, "'%s': %zu bytes, more than the %zu the manifest describes for group %d", sp,
					 have + n, w->group_bytes[g], g);
				free(d);
				free(sp);
				free(all);
				goto fail;
			}
			if (n)
				memcpy(all + have, d, n);
			have += n;
			free(d);
			free(sp);
		}
		if (have != w->group_bytes[g]) {
			mfr_fail(e, "'%s/%s': group %d's shards hold %zu bytes, the manifest describes %zu (truncated?)", dir,
				 w->paths[g][w->npaths[g] - 1], g, have, w->group_bytes[g]);
			free(all);
			goto fail;
		}
		for (int i = 0; i < w->n; i++) {
			mfr_tfjs_tensor *t = &w->t[i];
			if (t->group != g)
				continue;
			if (!(t->data = mfr_malloc((t->numel ? t->numel : 1) * sizeof *t->data, e))) {
				free(all);
				goto fail;
			}
			mfr_tfjs_dequant(t->data, all + t->offset, t->numel, t->qbytes, t->scale, t->min);
		}
		free(all);
	}
	return 0;
fail:
	mfr_tfjs_free(w);
	return -1;
}

/* ---------------------------------------------------------------- the dlib network */

/* From the README of face-api's dlib model (the 150x150 frame). The points
 * are symmetric about x = 74.0, as dlib's mean face is. */
const float mfr_dlib_template[10] = {47.55f, 46.6f, 100.46f, 46.6f, 74.01f, 76.56f, 50.41f, 103.02f, 97.61f, 103.02f};

void mfr_input_spec_dlib(mfr_input_spec *s)
{
	*s = (mfr_input_spec){.width = 150, .height = 150, .channels = 3, .bgr = 0, .has_template = 1,
			      .mean = {122.782f, 117.001f, 104.298f},
			      .scale = {1 / 256.0f, 1 / 256.0f, 1 / 256.0f}};
	memcpy(s->template_lm, mfr_dlib_template, sizeof mfr_dlib_template);
}

/* The residual stages in order: block name (face-api's), width, and whether
 * it down-samples. */
static const struct {
	const char *name;
	int width, down;
} blocks[] = {
	{"conv32_1", 32, 0},     {"conv32_2", 32, 0},  {"conv32_3", 32, 0},  {"conv64_down", 64, 1},
	{"conv64_1", 64, 0},     {"conv64_2", 64, 0},  {"conv64_3", 64, 0},  {"conv128_down", 128, 1},
	{"conv128_1", 128, 0},   {"conv128_2", 128, 0}, {"conv256_down", 256, 1}, {"conv256_1", 256, 0},
	{"conv256_2", 256, 0},   {"conv256_down_out", 256, 1},
};

#define DLIB_SIDE 150
#define DLIB_DIM 128

typedef struct {
	char *s;
	size_t n, room;
	int oom;
} sbuf;

static void sb_printf(sbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void sb_printf(sbuf *b, const char *fmt, ...)
{
	if (b->oom)
		return;
	for (;;) {
		va_list ap;
		va_start(ap, fmt);
		int k = vsnprintf(b->s ? b->s + b->n : NULL, b->s ? b->room - b->n : 0, fmt, ap);
		va_end(ap);
		if (k < 0) {
			b->oom = 1;
			return;
		}
		if (b->s && b->n + (size_t)k < b->room) {
			b->n += (size_t)k;
			return;
		}
		size_t r = (b->room + (size_t)k + 1) * 2;
		char *s = realloc(b->s, r);
		if (!s) {
			b->oom = 1;
			return;
		}
		b->s = s;
		b->room = r;
	}
}

/* conv PREFIX.conv + affine PREFIX.scale (as bn) + optionally relu
 * PREFIX.relu; note, when given, becomes a comment on the conv line. */
static void conv_unit(sbuf *b, const char *prefix, const char *in, int out, int k, int s, int p, int relu,
		      const char *note)
{
	sb_printf(b, "conv %s.conv %s out=%d k=%d s=%d p=%d bias=1%s%s\n", prefix, in, out, k, s, p,
		  note ? "  # " : "", note ? note : "");
	sb_printf(b, "bn %s.scale %s.conv eps=1e-20\n", prefix, prefix);
	if (relu)
		sb_printf(b, "relu %s.relu %s.scale\n", prefix, prefix);
}

char *mfr_dlib_arch(mfr_error *e)
{
	sbuf b = {0};
	sb_printf(&b,
		  "mfr-arch 1\n"
		  "# dlib's ResNet-29 face descriptor (dlib_face_recognition_resnet_model_v1), written by\n"
		  "# mfr-model --from-dlib from face-api.js's TensorFlow.js weights; layer names follow face-api's.\n"
		  "# dlib's affine layer (y = a*x + b per channel) is written as an inference bn with\n"
		  "# running_mean 0, running_var 1 and eps=1e-20, so that 1/sqrt(var + eps) is exactly 1 and\n"
		  "# y = weight*x + bias. The model is for inference: training would switch those bn layers to\n"
		  "# batch statistics, which is not dlib's network.\n"
		  "# Strided layers have no padding (dlib's default when the stride is not 1); 3x3/1 convs pad 1.\n"
		  "input data 3 %d %d\n",
		  DLIB_SIDE, DLIB_SIDE);
	int h = (DLIB_SIDE - 7) / 2 + 1;
	conv_unit(&b, "conv32_down", "data", 32, 7, 2, 0, 1, NULL);
	sb_printf(&b, "maxpool pool conv32_down.relu k=3 s=2  # %dx%d\n", (h - 3) / 2 + 1, (h - 3) / 2 + 1);
	h = (h - 3) / 2 + 1;
	int c = 32;
	const char *prev = "pool";
	char unit[160], a[160], sc[160];
	for (size_t i = 0; i < sizeof blocks / sizeof *blocks; i++) {
		const char *n = blocks[i].name;
		int w = blocks[i].width;
		if (!blocks[i].down) {
			sb_printf(&b, "# %s: residual block, %dx%dx%d\n", n, w, h, h);
			snprintf(unit, sizeof unit, "%s.conv1", n);
			conv_unit(&b, unit, prev, w, 3, 1, 1, 1, NULL);
			snprintf(unit, sizeof unit, "%s.conv2", n);
			snprintf(a, sizeof a, "%s.conv1.relu", n);
			conv_unit(&b, unit, a, w, 3, 1, 1, 0, NULL);
			sb_printf(&b, "add %s.add %s.conv2.scale %s\n", n, n, prev);
		} else {
			int hc = (h - 3) / 2 + 1, hp = h / 2, ho = hc > hp ? hc : hp;
			sb_printf(&b, "# %s: down-sampling block, %dx%dx%d -> %dx%dx%d\n", n, c, h, h, w, ho, ho);
			snprintf(unit, sizeof unit, "%s.conv1", n);
			char note[64];
			snprintf(note, sizeof note, "%dx%d", hc, hc);
			conv_unit(&b, unit, prev, w, 3, 2, 0, 1, note);
			snprintf(unit, sizeof unit, "%s.conv2", n);
			snprintf(a, sizeof a, "%s.conv1.relu", n);
			conv_unit(&b, unit, a, w, 3, 1, 1, 0, NULL);
			snprintf(a, sizeof a, "%s.conv2.scale", n);
			if (hc < ho) {
				sb_printf(&b, "pad %s.pad %s t=0 b=%d l=0 r=%d  # zero rows/columns at the end, as dlib's add_prev\n",
					  n, a, ho - hc, ho - hc);
				snprintf(a, sizeof a, "%s.pad", n);
			}
			sb_printf(&b, "avgpool %s.pool %s k=2 s=2  # the shortcut, %dx%d\n", n, prev, hp, hp);
			snprintf(sc, sizeof sc, "%s.pool", n);
			if (c < w) {
				sb_printf(&b, "chpad %s.chpad %s out=%d\n", n, sc, w);
				snprintf(sc, sizeof sc, "%s.chpad", n);
			}
			if (hp < ho) {
				sb_printf(&b, "pad %s.poolpad %s t=0 b=%d l=0 r=%d\n", n, sc, ho - hp, ho - hp);
				snprintf(sc, sizeof sc, "%s.poolpad", n);
			}
			sb_printf(&b, "add %s.add %s %s\n", n, a, sc);
			h = ho;
			c = w;
		}
		sb_printf(&b, "relu %s %s.add\n", n, n);
		prev = n;
	}
	sb_printf(&b,
		  "gap gap %s\n"
		  "flatten flatten gap\n"
		  "linear fc flatten out=%d bias=0  # dlib's fc_no_bias; no l2norm: descriptors compare by Euclidean distance\n"
		  "output fc\n",
		  prev, DLIB_DIM);
	if (b.oom) {
		free(b.s);
		mfr_fail(e, "out of memory");
		return NULL;
	}
	return b.s;
}

/* Copies the manifest tensor for arch tensor at (name "<layer>.<suffix>",
 * PyTorch dims) into dst, checking the shape and marking it used. */
static int fill(const mfr_arch *a, const mfr_arch_tensor *at, const mfr_tfjs *w, char *used, float *dst,
		const char *mname, mfr_error *e)
{
	const mfr_layer *l = &a->layers[at->layer];
	const char *suffix = at->name + strlen(l->name) + 1;
	if (l->op == MFR_OP_BN && (!strcmp(suffix, "running_mean") || !strcmp(suffix, "running_var"))) {
		float v = suffix[8] == 'v' ? 1.0f : 0.0f; /* an affine: mean 0, var 1 */
		for (uint64_t k = 0; k < at->count; k++)
			dst[k] = v;
		return 0;
	}
	/* face-api's name: the layer name with '/' for '.', then its own suffix */
	char src[300];
	snprintf(src, sizeof src, "%s", l->name);
	for (char *p = src; *p; p++)
		if (*p == '.')
			*p = '/';
	const char *tsuffix = NULL;
	if (l->op == MFR_OP_CONV)
		tsuffix = !strcmp(suffix, "weight") ? "/filters" : "/bias";
	else if (l->op == MFR_OP_BN)
		tsuffix = !strcmp(suffix, "weight") ? "/weights" : "/biases";
	else if (l->op == MFR_OP_LINEAR)
		tsuffix = "";
	else
		return mfr_fail(e, "internal: no dlib source for tensor '%s'", at->name);
	strncat(src, tsuffix, sizeof src - strlen(src) - 1);
	const mfr_tfjs_tensor *t = mfr_tfjs_find(w, src);
	if (!t)
		return mfr_fail(e, "'%s': no weight '%s' (for '%s'): not dlib's face descriptor?", mname, src, at->name);
	used[t - w->t] = 1;
	/* tfjs layouts: conv filters HWIO, fc (in, out), vectors as they are */
	int64_t want[4];
	int nd = at->ndim;
	if (l->op == MFR_OP_CONV && nd == 4) {
		want[0] = at->dims[2], want[1] = at->dims[3], want[2] = at->dims[1], want[3] = at->dims[0];
	} else if (l->op == MFR_OP_LINEAR) {
		want[0] = at->dims[1], want[1] = at->dims[0];
	} else
		want[0] = at->dims[0];
	int ok = t->ndim == nd;
	for (int k = 0; ok && k < nd; k++)
		ok = t->dims[k] == want[k];
	if (!ok) {
		char got[128] = "", exp[128] = "";
		for (int k = 0; k < t->ndim; k++)
			snprintf(got + strlen(got), sizeof got - strlen(got), "%s%lld", k ? "x" : "", (long long)t->dims[k]);
		for (int k = 0; k < nd; k++)
			snprintf(exp + strlen(exp), sizeof exp - strlen(exp), "%s%lld", k ? "x" : "", (long long)want[k]);
		return mfr_fail(e, "'%s': weight '%s' is %s, dlib's network needs %s", mname, src, t->ndim ? got : "a scalar",
				exp);
	}
	if (l->op == MFR_OP_CONV && nd == 4) {
		int O = at->dims[0], I = at->dims[1], KH = at->dims[2], KW = at->dims[3];
		for (int o = 0; o < O; o++)
			for (int i = 0; i < I; i++)
				for (int y = 0; y < KH; y++)
					for (int x = 0; x < KW; x++)
						dst[((size_t)(o * I + i) * KH + y) * KW + x] =
							t->data[((size_t)(y * KW + x) * I + i) * O + o];
	} else if (l->op == MFR_OP_LINEAR) {
		int O = at->dims[0], D = at->dims[1];
		for (int o = 0; o < O; o++)
			for (int d = 0; d < D; d++)
				dst[(size_t)o * D + d] = t->data[(size_t)d * O + o];
	} else
		memcpy(dst, t->data, at->count * sizeof *dst);
	return 0;
}

int mfr_dlib_convert(const char *dir, mfr_model *m, mfr_error *e)
{
	memset(m, 0, sizeof *m);
	mfr_tfjs w;
	char mname[4096];
	snprintf(mname, sizeof mname, "%s/%s", dir, MFR_DLIB_MANIFEST);
	if (mfr_tfjs_load(dir, MFR_DLIB_MANIFEST, &w, e) < 0)
		return -1;
	mfr_arch *a = NULL;
	char *used = NULL;
	if (!(m->arch = mfr_dlib_arch(e)))
		goto fail;
	if (!(a = mfr_arch_parse(m->arch, strlen(m->arch), "dlib", e)))
		goto fail;
	if (!(used = calloc((size_t)w.n + 1, 1))) {
		mfr_fail(e, "out of memory");
		goto fail;
	}
	mfr_input_spec_dlib(&m->input);
	for (int i = 0; i < a->n_tensors; i++) {
		const mfr_arch_tensor *at = &a->tensors[i];
		int64_t dims[4];
		for (int k = 0; k < at->ndim; k++)
			dims[k] = at->dims[k];
		mfr_tensor *t = mfr_model_add(m, at->name, MFR_TDTYPE_F32, at->ndim, dims, e);
		if (!t || fill(a, at, &w, used, t->data, mname, e) < 0)
			goto fail;
	}
	for (int i = 0; i < w.n; i++)
		if (!used[i]) {
			mfr_fail(e, "'%s': weight '%s' has no place in dlib's network: not dlib's face descriptor?", mname,
				 w.t[i].name);
			goto fail;
		}
	free(used);
	mfr_arch_free(a);
	mfr_tfjs_free(&w);
	return 0;
fail:
	free(used);
	mfr_arch_free(a);
	mfr_tfjs_free(&w);
	mfr_model_free(m);
	return -1;
}
