/* pickle.c — the insightface .bin pack reader: a pickle machine restricted
 * to the opcodes that build (list of bytes, list of bools); see pickle.h.
 * Values are views into the input; nothing is copied but the lists' items.
 * Nothing here prints or exits. */
#include "pickle.h" /* defines: mfr_binpack_parse, mfr_binpack_read, mfr_binpack_free */

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { V_UNSET, V_MARK, V_BYTES, V_BOOL, V_LIST, V_TUPLE };
static const char *const vname[] = {"nothing", "a mark", "bytes", "a bool", "a list", "a tuple"};

/* bytes: a = offset, b = length; bool: a = 0/1; list: a = list number;
 * tuple: a, b = list numbers */
typedef struct {
	int type;
	uint64_t a, b;
} val;

typedef struct {
	val *v;
	size_t n, room;
} vec;

/* A pack has two lists; a third is damage, and refusing it bounds memory. */
#define MAX_LISTS 2

typedef struct {
	const uint8_t *p;
	size_t n;
	vec stack, memo, lists[MAX_LISTS];
	int nlists;
	uint64_t puts;
	mfr_error *e;
} machine;

static int push(vec *s, val x, mfr_error *e)
{
	if (s->n == s->room) {
		size_t room = s->room ? s->room * 2 : 64;
		val *nv = mfr_realloc(s->v, room * sizeof *nv, e);
		if (!nv)
			return -1;
		s->v = nv;
		s->room = room;
	}
	s->v[s->n++] = x;
	return 0;
}

static const char *opname(int op)
{
	switch (op) {
	case 'c': return "GLOBAL: a class such as numpy.ndarray, or Python 3 bytes at protocol 2";
	case 0x93: return "STACK_GLOBAL: a class such as numpy.ndarray";
	case 'R': return "REDUCE";
	case 'X': return "BINUNICODE: a text string";
	case 0x8c: return "SHORT_BINUNICODE: a text string";
	case 'J': return "BININT";
	case 'M': return "BININT2";
	case 'I': return "INT: protocol 0 or 1";
	case 'N': return "NONE";
	case '}': return "EMPTY_DICT";
	case ')': return "EMPTY_TUPLE";
	case 0x85: return "TUPLE1";
	case 0x87: return "TUPLE3";
	default: return NULL;
	}
}

static int unsupported(machine *m, size_t at)
{
	int op = m->p[at];
	const char *name = opname(op);
	char desc[96] = "";
	if (op >= 0x20 && op < 0x7f)
		snprintf(desc, sizeof desc, " ('%c'%s%s)", op, name ? ", " : "", name ? name : "");
	else if (name)
		snprintf(desc, sizeof desc, " (%s)", name);
	return mfr_fail(m->e, "unsupported pickle opcode 0x%02x%s at byte %zu: only lists of bytes and bools are read",
			op, desc, at);
}

/* Index of the topmost mark, or -1 with e filled. */
static long find_mark(machine *m, size_t at, const char *what)
{
	for (size_t i = m->stack.n; i-- > 0;)
		if (m->stack.v[i].type == V_MARK)
			return (long)i;
	return mfr_fail(m->e, "%s at byte %zu without a MARK", what, at);
}

static int append(machine *m, val list, val item, size_t at)
{
	if (list.type != V_LIST)
		return mfr_fail(m->e, "wrong structure at byte %zu: append to %s, not a list", at, vname[list.type]);
	if (item.type != V_BYTES && item.type != V_BOOL)
		return mfr_fail(m->e, "wrong structure at byte %zu: %s in a list; a pack's lists hold bytes or bools",
				at, vname[item.type]);
	return push(&m->lists[list.a], item, m->e);
}

static int make_tuple(machine *m, size_t from, size_t at)
{
	size_t k = m->stack.n - from;
	if (k != 2)
		return mfr_fail(m->e, "wrong structure at byte %zu: a tuple of %zu items; a pack is (images, issame)", at, k);
	val x = m->stack.v[from], y = m->stack.v[from + 1];
	if (x.type != V_LIST || y.type != V_LIST)
		return mfr_fail(m->e, "wrong structure at byte %zu: a tuple of %s and %s; a pack is (list of bytes, list of bools)",
				at, vname[x.type], vname[y.type]);
	m->stack.n = from;
	return push(&m->stack, (val){V_TUPLE, x.a, y.a}, m->e);
}

/* Memo slots are numbered by the pickler from 0 (pickle.py) or 1 (cPickle)
 * upwards; allowing some slack over the number of puts so far accepts both
 * while keeping the memo's size proportional to the input. */
static int memo_put(machine *m, uint64_t idx, size_t at)
{
	if (m->stack.n == 0 || m->stack.v[m->stack.n - 1].type == V_MARK)
		return mfr_fail(m->e, "memo put at byte %zu with no value on the stack", at);
	if (idx >= 256 + 2 * m->puts)
		return mfr_fail(m->e, "memo index %llu out of range at byte %zu", (unsigned long long)idx, at);
	m->puts++;
	while (m->memo.n <= idx)
		if (push(&m->memo, (val){V_UNSET, 0, 0}, m->e))
			return -1;
	m->memo.v[idx] = m->stack.v[m->stack.n - 1];
	return 0;
}

static int memo_get(machine *m, uint64_t idx, size_t at)
{
	if (idx >= m->memo.n || m->memo.v[idx].type == V_UNSET)
		return mfr_fail(m->e, "memo index %llu at byte %zu was never stored", (unsigned long long)idx, at);
	return push(&m->stack, m->memo.v[idx], m->e);
}

/* Checks the final value and fills out. */
static int finish(machine *m, size_t at, mfr_binpack *out)
{
	if (m->stack.n != 1 || m->stack.v[0].type != V_TUPLE) {
		const char *top = m->stack.n ? vname[m->stack.v[m->stack.n - 1].type] : "nothing";
		return mfr_fail(m->e, "wrong structure at byte %zu (STOP): %zu values, the last %s; a pack is one tuple (list of bytes, list of bools)",
				at, m->stack.n, top);
	}
	const vec *im = &m->lists[m->stack.v[0].a], *eq = &m->lists[m->stack.v[0].b];
	for (size_t i = 0; i < im->n; i++)
		if (im->v[i].type != V_BYTES)
			return mfr_fail(m->e, "wrong structure: item %zu of the first list is %s; it must be bytes (an image)",
					i, vname[im->v[i].type]);
	for (size_t i = 0; i < eq->n; i++)
		if (eq->v[i].type != V_BOOL)
			return mfr_fail(m->e, "wrong structure: item %zu of the second list is %s; it must be a bool",
					i, vname[eq->v[i].type]);
	if (im->n != 2 * eq->n)
		return mfr_fail(m->e, "%zu images for %zu pairs: a pack holds 2 images per pair", im->n, eq->n);
	out->n_images = im->n;
	out->n_pairs = eq->n;
	out->images = mfr_malloc(im->n * sizeof *out->images, m->e);
	out->sizes = mfr_malloc(im->n * sizeof *out->sizes, m->e);
	out->issame = mfr_malloc(eq->n, m->e);
	if (!out->images || !out->sizes || !out->issame)
		return -1;
	for (size_t i = 0; i < im->n; i++) {
		out->images[i] = m->p + im->v[i].a;
		out->sizes[i] = (size_t)im->v[i].b;
	}
	for (size_t i = 0; i < eq->n; i++)
		out->issame[i] = (uint8_t)eq->v[i].a;
	return 0;
}

static uint64_t get_le(const uint8_t *p, int k)
{
	return k == 1 ? p[0] : k == 4 ? mfr_get32(p) : mfr_get64(p);
}

static int run(machine *m, mfr_binpack *out)
{
	const uint8_t *p = m->p;
	size_t n = m->n, pos = 0;
	mfr_error *e = m->e;
	if (n == 0)
		return mfr_fail(e, "truncated pickle at byte 0: empty");
	if (p[0] != 0x80) /* protocols 0 and 1 have no PROTO, and write bools as text */
		return mfr_fail(e, "not a pickle of protocol 2 or higher: byte 0 is 0x%02x, not PROTO (0x80)", p[0]);
	if (n == 1)
		return mfr_fail(e, "truncated pickle at byte 0: opcode 0x80 needs 1 argument byte, 0 left");
	if (p[1] < 2 || p[1] > 5)
		return mfr_fail(e, "pickle protocol %d at byte 1: only protocols 2 to 5 are read", p[1]);
	pos = 2;
	while (pos < n) {
		size_t at = pos;
		int op = p[pos++];
		/* argument width of the opcodes that take a fixed one */
		int argw = 0;
		switch (op) {
		case 'U': case 'C': case 'K': case 'q': case 'h': argw = 1; break;
		case 'T': case 'B': case 'r': case 'j': argw = 4; break;
		case 0x8e: case 0x95: argw = 8; break;
		}
		uint64_t arg = 0;
		if (argw) {
			if (n - pos < (size_t)argw)
				return mfr_fail(e, "truncated pickle at byte %zu: opcode 0x%02x needs %d argument bytes, %zu left",
						at, op, argw, n - pos);
			arg = get_le(p + pos, argw);
			pos += (size_t)argw;
		}
		if (m->stack.n >= MFR_PICKLE_STACK_MAX)
			return mfr_fail(e, "pickle stack deeper than %d values at byte %zu", MFR_PICKLE_STACK_MAX, at);
		switch (op) {
		case 0x95: /* FRAME: the next arg bytes are one frame; only a hint */
			if (arg > n - pos)
				return mfr_fail(e, "truncated pickle at byte %zu: a %llu-byte frame, %zu bytes left", at,
						(unsigned long long)arg, n - pos);
			break;
		case 'U': case 'C': case 'T': case 'B': case 0x8e:
			if (arg > n - pos)
				return mfr_fail(e, "truncated pickle at byte %zu: a %llu-byte string, %zu bytes left", at,
						(unsigned long long)arg, n - pos);
			if (push(&m->stack, (val){V_BYTES, pos, arg}, e))
				return -1;
			pos += (size_t)arg;
			break;
		case 0x88: case 0x89:
			if (push(&m->stack, (val){V_BOOL, op == 0x88, 0}, e))
				return -1;
			break;
		case 'K':
			if (arg > 1)
				return mfr_fail(e, "integer %llu at byte %zu: only 0 and 1 (bools) are read",
						(unsigned long long)arg, at);
			if (push(&m->stack, (val){V_BOOL, arg, 0}, e))
				return -1;
			break;
		case ']':
			if (m->nlists == MAX_LISTS)
				return mfr_fail(e, "wrong structure at byte %zu: a third list; a pack is (images, issame)", at);
			if (push(&m->stack, (val){V_LIST, (uint64_t)m->nlists++, 0}, e))
				return -1;
			break;
		case '(':
			if (push(&m->stack, (val){V_MARK, 0, 0}, e))
				return -1;
			break;
		case 'a':
			if (m->stack.n < 2 || m->stack.v[m->stack.n - 1].type == V_MARK ||
			    m->stack.v[m->stack.n - 2].type == V_MARK)
				return mfr_fail(e, "APPEND at byte %zu needs a list and a value on the stack", at);
			if (append(m, m->stack.v[m->stack.n - 2], m->stack.v[m->stack.n - 1], at))
				return -1;
			m->stack.n--;
			break;
		case 'e': {
			long mk = find_mark(m, at, "APPENDS");
			if (mk < 0)
				return -1;
			if (mk == 0 || m->stack.v[mk - 1].type != V_LIST)
				return mfr_fail(e, "wrong structure at byte %zu: APPENDS to %s, not a list", at,
						vname[mk ? m->stack.v[mk - 1].type : V_UNSET]);
			for (size_t i = (size_t)mk + 1; i < m->stack.n; i++)
				if (append(m, m->stack.v[mk - 1], m->stack.v[i], at))
					return -1;
			m->stack.n = (size_t)mk;
			break;
		}
		case 0x86:
			if (m->stack.n < 2)
				return mfr_fail(e, "TUPLE2 at byte %zu needs two values on the stack", at);
			if (make_tuple(m, m->stack.n - 2, at))
				return -1;
			break;
		case 't': {
			long mk = find_mark(m, at, "TUPLE");
			if (mk < 0)
				return -1;
			/* drop the mark, then build from the items above it */
			memmove(m->stack.v + mk, m->stack.v + mk + 1, (m->stack.n - (size_t)mk - 1) * sizeof(val));
			m->stack.n--;
			if (make_tuple(m, (size_t)mk, at))
				return -1;
			break;
		}
		case 'q': case 'r':
			if (memo_put(m, arg, at))
				return -1;
			break;
		case 0x94:
			if (memo_put(m, m->memo.n, at))
				return -1;
			break;
		case 'h': case 'j':
			if (memo_get(m, arg, at))
				return -1;
			break;
		case '.':
			if (pos != n)
				return mfr_fail(e, "%zu bytes after the STOP opcode at byte %zu", n - pos, at);
			return finish(m, at, out);
		default:
			return unsupported(m, at);
		}
	}
	return mfr_fail(e, "truncated pickle at byte %zu: no STOP opcode", n);
}

void mfr_binpack_free(mfr_binpack *b)
{
	if (!b)
		return;
	free(b->images);
	free(b->sizes);
	free(b->issame);
	free(b->owned);
	memset(b, 0, sizeof *b);
}

int mfr_binpack_parse(const uint8_t *p, size_t n, mfr_binpack *out, mfr_error *e)
{
	memset(out, 0, sizeof *out);
	machine m = {.p = p, .n = n, .e = e};
	int rc = run(&m, out);
	free(m.stack.v);
	free(m.memo.v);
	for (int i = 0; i < MAX_LISTS; i++)
		free(m.lists[i].v);
	if (rc)
		mfr_binpack_free(out);
	return rc;
}

int mfr_binpack_read(const char *path, size_t cap, mfr_binpack *out, mfr_error *e)
{
	uint8_t *data;
	size_t size;
	memset(out, 0, sizeof *out);
	if (mfr_read_file(path, cap, &data, &size, e))
		return -1;
	mfr_error pe = {{0}};
	if (mfr_binpack_parse(data, size, out, &pe)) {
		free(data);
		return mfr_fail(e, "'%s': %s", path, pe.msg);
	}
	out->owned = data;
	return 0;
}
