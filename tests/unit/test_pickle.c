/* test_pickle.c — the .bin pack reader against pickles written by hand: byte
 * strings captured once from Python 2.7 (pickle and cPickle, protocol 2) and
 * Python 3.11 (protocols 2 to 5), and larger packs from emitters that follow
 * pickle.py's rules (APPENDS batches of 1000, BINPUT/LONG_BINPUT memo,
 * FRAMEs of ~64 KiB with big bytes outside them). While this test was
 * written, the emitters' packs were byte-identical to Python 2.7's
 * pickle.dumps(obj, 2) and Python 3.11's pickle.dumps(obj, 4/5); the test
 * itself runs no Python.
 * Then damage: unsupported opcodes, every truncation, every single-bit flip,
 * odd image counts, wrong structures, memo and stack abuse. */
#include "pickle.h" /* defines: mfr_binpack_parse, mfr_binpack_read, mfr_binpack_free */

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check.h"


static void op(check_buf *b, int code)
{
	uint8_t c = (uint8_t)code;
	check_put(b, &c, 1);
}

/* opcode with a little-endian argument of w bytes */
static void opn(check_buf *b, int code, uint64_t v, int w)
{
	uint8_t a[8];
	op(b, code);
	for (int i = 0; i < w; i++)
		a[i] = (uint8_t)(v >> (8 * i));
	check_put(b, a, (size_t)w);
}

/* ---- the packs the emitters write ---- */

enum { N_PAIRS = 1250, N_IMAGES = 2 * N_PAIRS, BATCH = 1000 };

static size_t img_len(size_t i) { return (i * 37) % 300 + 2; } /* 2..301: both 'U' and 'T' */
static uint8_t img_byte(size_t i, size_t j) { return j == 0 ? 0xff : j == 1 ? 0xd8 : (uint8_t)(i + j); }
static int same(size_t i) { return i * 7 % 3 == 0; }

static void img_bytes(size_t i, uint8_t *out)
{
	for (size_t j = 0; j < img_len(i); j++)
		out[j] = img_byte(i, j);
}

/* Python 2 pickle.py, protocol 2: str as U/T, each memoized with BINPUT
 * (LONG_BINPUT from 256), lists in APPENDS batches of 1000 (APPEND for a
 * batch of one), bools as NEWTRUE/NEWFALSE, TUPLE2, STOP. */
static void emit_py2(check_buf *b, size_t nimg, size_t npair)
{
	uint32_t memo = 0;
#define PUT() (memo < 256 ? opn(b, 'q', memo, 1) : opn(b, 'r', memo, 4)), memo++
	uint8_t img[512];
	opn(b, 0x80, 2, 1);
	op(b, ']');
	PUT();
	for (size_t s = 0; s < nimg; s += BATCH) {
		size_t k = nimg - s < BATCH ? nimg - s : BATCH;
		if (k > 1)
			op(b, '(');
		for (size_t i = s; i < s + k; i++) {
			size_t n = img_len(i);
			img_bytes(i, img);
			if (n < 256)
				opn(b, 'U', n, 1);
			else
				opn(b, 'T', n, 4);
			check_put(b, img, n);
			PUT();
		}
		op(b, k > 1 ? 'e' : 'a');
	}
	op(b, ']');
	PUT();
	for (size_t s = 0; s < npair; s += BATCH) {
		size_t k = npair - s < BATCH ? npair - s : BATCH;
		if (k > 1)
			op(b, '(');
		for (size_t i = s; i < s + k; i++)
			op(b, same(i) ? 0x88 : 0x89);
		op(b, k > 1 ? 'e' : 'a');
	}
	op(b, 0x86);
	PUT();
	op(b, '.');
#undef PUT
}

/* Python 3, protocol 4: bytes as C/B, MEMOIZE, the body in FRAMEs closed once
 * they pass 64 KiB at an item boundary; bytes of 64 KiB or more are written
 * outside any frame. big: also one image of 70000 bytes at index 3. */
#define FRAME_TARGET 65536
typedef struct {
	check_buf *out;
	check_buf frame;
} framer;

static void commit(framer *f)
{
	if (f->frame.n) {
		opn(f->out, 0x95, f->frame.n, 8);
		check_put(f->out, f->frame.d, f->frame.n);
		f->frame.n = 0;
	}
}

static void maybe_commit(framer *f)
{
	if (f->frame.n >= FRAME_TARGET)
		commit(f);
}

static size_t img_len4(size_t i, int big) { return big && i == 3 ? 70000 : img_len(i); }

static void emit_py3(check_buf *b, size_t nimg, size_t npair, int proto, int big)
{
	framer f = {b, {0}};
	check_buf *o = &f.frame;
	uint8_t *img = malloc(70000);
	opn(b, 0x80, (uint64_t)proto, 1);
	op(o, ']');
	op(o, 0x94);
	for (size_t s = 0; s < nimg; s += BATCH) {
		size_t k = nimg - s < BATCH ? nimg - s : BATCH;
		if (k > 1)
			op(o, '(');
		for (size_t i = s; i < s + k; i++) {
			size_t n = img_len4(i, big);
			for (size_t j = 0; j < n; j++)
				img[j] = img_byte(i, j);
			if (n >= FRAME_TARGET) {
				commit(&f);
				opn(b, 'B', n, 4);
				check_put(b, img, n);
			} else {
				if (n < 256)
					opn(o, 'C', n, 1);
				else
					opn(o, 'B', n, 4);
				check_put(o, img, n);
			}
			op(o, 0x94);
			maybe_commit(&f);
		}
		op(o, k > 1 ? 'e' : 'a');
	}
	op(o, ']');
	op(o, 0x94);
	for (size_t s = 0; s < npair; s += BATCH) {
		size_t k = npair - s < BATCH ? npair - s : BATCH;
		if (k > 1)
			op(o, '(');
		for (size_t i = s; i < s + k; i++)
			op(o, same(i) ? 0x88 : 0x89);
		op(o, k > 1 ? 'e' : 'a');
	}
	op(o, 0x86);
	op(o, 0x94);
	op(o, '.');
	commit(&f);
	free(f.frame.d);
	free(img);
}

/* ---- captured from Python ---- */

/* (['\xff\xd8a', 'bbb', '\xff\xd8ccc', 'd'], [True, False]) */
static const char py2_pickle[] =
	"\x80\x02\x5d\x71\x00\x28\x55\x03\xff\xd8\x61\x71\x01\x55\x03\x62\x62\x62\x71\x02\x55\x05\xff\xd8\x63\x63"
	"\x63\x71\x03\x55\x01\x64\x71\x04\x65\x5d\x71\x05\x28\x88\x89\x65\x86\x71\x06\x2e";
/* cPickle: memo from 1, unshared objects not memoized */
static const char py2_cpickle[] =
	"\x80\x02\x5d\x71\x01\x28\x55\x03\xff\xd8\x61\x71\x02\x55\x03\x62\x62\x62\x71\x03\x55\x05\xff\xd8\x63\x63"
	"\x63\x71\x04\x55\x01\x64\x65\x5d\x71\x05\x28\x88\x89\x65\x86\x2e";
static const char py3_p3[] =
	"\x80\x03\x5d\x71\x00\x28\x43\x03\xff\xd8\x61\x71\x01\x43\x03\x62\x62\x62\x71\x02\x43\x05\xff\xd8\x63\x63"
	"\x63\x71\x03\x43\x01\x64\x71\x04\x65\x5d\x71\x05\x28\x88\x89\x65\x86\x71\x06\x2e";
static const char py3_p4[] =
	"\x80\x04\x95\x25\x00\x00\x00\x00\x00\x00\x00\x5d\x94\x28\x43\x03\xff\xd8\x61\x94\x43\x03\x62\x62\x62\x94"
	"\x43\x05\xff\xd8\x63\x63\x63\x94\x43\x01\x64\x94\x65\x5d\x94\x28\x88\x89\x65\x86\x94\x2e";
static const char py3_p5[] =
	"\x80\x05\x95\x25\x00\x00\x00\x00\x00\x00\x00\x5d\x94\x28\x43\x03\xff\xd8\x61\x94\x43\x03\x62\x62\x62\x94"
	"\x43\x05\xff\xd8\x63\x63\x63\x94\x43\x01\x64\x94\x65\x5d\x94\x28\x88\x89\x65\x86\x94\x2e";
/* ([x, x], [False]): the second image is a BINGET of the first */
static const char py2_cpickle_same[] =
	"\x80\x02\x5d\x71\x01\x28\x55\x03\xff\xd8\x78\x71\x02\x68\x02\x65\x5d\x71\x03\x89\x61\x86\x2e";
static const char py3_p4_same[] =
	"\x80\x04\x95\x13\x00\x00\x00\x00\x00\x00\x00\x5d\x94\x28\x43\x03\xff\xd8\x78\x94\x68\x01\x65\x5d\x94\x89"
	"\x61\x86\x94\x2e";
/* Python 3 bytes at protocol 2: ([b'\xff\xd8'], []) goes through _codecs.encode */
static const char py3_p2[] =
	"\x80\x02\x5d\x71\x00\x63\x5f\x63\x6f\x64\x65\x63\x73\x0a\x65\x6e\x63\x6f\x64\x65\x0a\x71\x01\x58\x04\x00"
	"\x00\x00\xc3\xbf\xc3\x98\x71\x02\x58\x06\x00\x00\x00\x6c\x61\x74\x69\x6e\x31\x71\x03\x86\x71\x04\x52\x71"
	"\x05\x61\x5d\x71\x06\x86\x71\x07\x2e";

#define LIT(s) (const uint8_t *)(s), sizeof(s) - 1

/* ---- helpers ---- */

static int parse_err(const uint8_t *p, size_t n, mfr_error *e)
{
	mfr_binpack b;
	mfr_error_clear(e);
	int rc = mfr_binpack_parse(p, n, &b, e);
	if (rc == 0)
		mfr_binpack_free(&b);
	return rc;
}

static int has(const mfr_error *e, const char *s)
{
	if (strstr(e->msg, s))
		return 1;
	fprintf(stderr, "    message '%s' lacks '%s'\n", e->msg, s);
	return 0;
}

static void check_small(const uint8_t *p, size_t n, const char *what)
{
	mfr_binpack b;
	mfr_error e = {{0}};
	int rc = mfr_binpack_parse(p, n, &b, &e);
	CHECK_EQ_INT(rc, 0);
	if (rc) {
		fprintf(stderr, "    %s: %s\n", what, e.msg);
		return;
	}
	static const char *const want[] = {"\xff\xd8" "a", "bbb", "\xff\xd8" "ccc", "d"};
	CHECK_EQ_INT(b.n_images, 4);
	CHECK_EQ_INT(b.n_pairs, 2);
	for (size_t i = 0; i < 4 && i < b.n_images; i++) {
		CHECK_EQ_INT(b.sizes[i], strlen(want[i]));
		CHECK(b.sizes[i] == strlen(want[i]) && memcmp(b.images[i], want[i], b.sizes[i]) == 0);
		CHECK(b.images[i] > p && b.images[i] + b.sizes[i] <= p + n); /* views, no copy */
	}
	CHECK(b.issame[0] == 1 && b.issame[1] == 0);
	mfr_binpack_free(&b);
	CHECK(b.images == NULL && b.n_images == 0);
}

/* ---- tests ---- */

static void test_captured(void)
{
	check_small(LIT(py2_pickle), "py2 pickle");
	check_small(LIT(py2_cpickle), "py2 cPickle");
	check_small(LIT(py3_p3), "py3 protocol 3");
	check_small(LIT(py3_p4), "py3 protocol 4");
	check_small(LIT(py3_p5), "py3 protocol 5");

	const char *same2[] = {py2_cpickle_same, py3_p4_same};
	size_t nsame[] = {sizeof py2_cpickle_same - 1, sizeof py3_p4_same - 1};
	for (int k = 0; k < 2; k++) {
		mfr_binpack b;
		mfr_error e = {{0}};
		CHECK_EQ_INT(mfr_binpack_parse((const uint8_t *)same2[k], nsame[k], &b, &e), 0);
		CHECK_EQ_INT(b.n_images, 2);
		CHECK_EQ_INT(b.n_pairs, 1);
		CHECK(b.n_images == 2 && b.images[0] == b.images[1] && b.sizes[1] == 3);
		CHECK(b.n_pairs == 1 && b.issame[0] == 0);
		mfr_binpack_free(&b);
	}

	mfr_error e;
	CHECK_EQ_INT(parse_err(LIT(py3_p2), &e), -1);
	CHECK(has(&e, "unsupported pickle opcode 0x63 ('c', GLOBAL"));
	CHECK(has(&e, ") at byte 5: only lists of bytes and bools are read"));
}

static void check_big(const check_buf *b, int big, const char *what)
{
	mfr_binpack pk;
	mfr_error e = {{0}};
	int rc = mfr_binpack_parse(b->d, b->n, &pk, &e);
	CHECK_EQ_INT(rc, 0);
	if (rc) {
		fprintf(stderr, "    %s: %s\n", what, e.msg);
		return;
	}
	CHECK_EQ_INT(pk.n_images, N_IMAGES);
	CHECK_EQ_INT(pk.n_pairs, N_PAIRS);
	int bad_img = 0, bad_same = 0;
	for (size_t i = 0; i < pk.n_images; i++) {
		if (pk.sizes[i] != img_len4(i, big)) {
			bad_img++;
			continue;
		}
		for (size_t j = 0; j < pk.sizes[i]; j++)
			bad_img += pk.images[i][j] != img_byte(i, j);
	}
	for (size_t i = 0; i < pk.n_pairs; i++)
		bad_same += pk.issame[i] != same(i);
	CHECK_EQ_INT(bad_img, 0);
	CHECK_EQ_INT(bad_same, 0);
	mfr_binpack_free(&pk);
}

static check_buf py2_big, py3_big, py3_frames;

static void test_emitted(void)
{
	emit_py2(&py2_big, N_IMAGES, N_PAIRS);
	check_big(&py2_big, 0, "py2 emitter");
	emit_py3(&py3_big, N_IMAGES, N_PAIRS, 4, 1);
	check_big(&py3_big, 1, "py3 emitter");
	/* more than one FRAME, and a big image outside them */
	size_t frames = 0;
	for (size_t i = 0; i + 9 <= py3_big.n; i++)
		if (py3_big.d[i] == 0x95 && i + 9 + mfr_get64(py3_big.d + i + 1) <= py3_big.n) {
			frames++;
			i += 8 + mfr_get64(py3_big.d + i + 1);
		}
	CHECK(frames >= 3);
	emit_py3(&py3_frames, 6, 3, 5, 0);
	CHECK_EQ_INT(parse_err(py3_frames.d, py3_frames.n, &(mfr_error){{0}}), 0);

	/* a pack of one pair: APPEND (a batch of one) for the bools */
	check_buf b = {0};
	emit_py2(&b, 2, 1);
	CHECK_EQ_INT(parse_err(b.d, b.n, &(mfr_error){{0}}), 0);
	/* an empty pack is valid (and useless) */
	b.n = 0;
	emit_py2(&b, 0, 0);
	CHECK_EQ_INT(parse_err(b.d, b.n, &(mfr_error){{0}}), 0);
	free(b.d);
}

/* Other spellings a hand-written or foreign pickler may use. */
static void test_variants(void)
{
	check_buf b = {0};
	mfr_binpack pk;
	mfr_error e = {{0}};
	/* BININT1 0/1 bools, BINBYTES8, MARK..TUPLE, LONG_BINPUT/LONG_BINGET */
	opn(&b, 0x80, 4, 1);
	op(&b, '(');
	op(&b, ']');
	op(&b, '(');
	opn(&b, 0x8e, 3, 8);
	check_put(&b, "abc", 3);
	opn(&b, 'r', 7, 4);
	opn(&b, 'j', 7, 4);
	opn(&b, 'B', 1, 4);
	check_put(&b, "z", 1);
	opn(&b, 'T', 0, 4); /* an empty image: the decoder's problem, not the pickle's */
	op(&b, 'e');
	op(&b, ']');
	op(&b, '(');
	opn(&b, 'K', 1, 1);
	opn(&b, 'K', 0, 1);
	op(&b, 'e');
	op(&b, 't');
	op(&b, '.');
	CHECK_EQ_INT(mfr_binpack_parse(b.d, b.n, &pk, &e), 0);
	if (pk.n_images == 4) {
		CHECK(pk.sizes[0] == 3 && memcmp(pk.images[0], "abc", 3) == 0);
		CHECK(pk.images[1] == pk.images[0]);
		CHECK(pk.sizes[2] == 1 && pk.images[2][0] == 'z');
		CHECK(pk.sizes[3] == 0);
		CHECK(pk.issame[0] == 1 && pk.issame[1] == 0);
	} else
		CHECK_EQ_INT(pk.n_images, 4);
	mfr_binpack_free(&pk);
	free(b.d);
}

static void test_truncation(void)
{
	const check_buf *packs[] = {&py2_big, &py3_frames};
	struct {
		const uint8_t *p;
		size_t n;
	} lits[] = {{LIT(py2_pickle)}, {LIT(py2_cpickle)}, {LIT(py3_p4)}, {LIT(py3_p4_same)}};
	int ok = 0, silent = 0;
	mfr_error e;
	for (size_t k = 0; k < 6; k++) {
		const uint8_t *p = k < 2 ? packs[k]->d : lits[k - 2].p;
		size_t n = k < 2 ? packs[k]->n : lits[k - 2].n;
		/* every prefix fails; an exact-size copy lets ASan see over-reads */
		for (size_t m = 0; m < n; m++) {
			uint8_t *c = malloc(m ? m : 1);
			memcpy(c, p, m);
			ok += parse_err(c, m, &e) == 0;
			silent += !strstr(e.msg, "byte ");
			free(c);
		}
	}
	CHECK_EQ_INT(ok, 0);
	CHECK_EQ_INT(silent, 0);
	CHECK_EQ_INT(parse_err(LIT(py3_p3) - 1, &e), -1);
	CHECK(has(&e, "truncated pickle at byte 45: no STOP opcode"));
	CHECK_EQ_INT(parse_err((const uint8_t *)py3_p3, 25, &e), -1);
	CHECK(has(&e, "truncated pickle at byte 20: a 5-byte string, 3 bytes left"));
	CHECK_EQ_INT(parse_err((const uint8_t *)py3_p3, 21, &e), -1);
	CHECK(has(&e, "truncated pickle at byte 20: opcode 0x43 needs 1 argument bytes, 0 left"));
	CHECK_EQ_INT(parse_err((const uint8_t *)py3_p4, 5, &e), -1);
	CHECK(has(&e, "truncated pickle at byte 2: opcode 0x95 needs 8 argument bytes, 2 left"));
	/* inside a frame, the frame's own length is what is found short */
	CHECK_EQ_INT(parse_err(LIT(py3_p4) - 1, &e), -1);
	CHECK(has(&e, "truncated pickle at byte 2: a 37-byte frame, 36 bytes left"));
	CHECK_EQ_INT(parse_err((const uint8_t *)py3_p4, 12, &e), -1);
	CHECK(has(&e, "truncated pickle at byte 2: a 37-byte frame, 1 bytes left"));
	CHECK_EQ_INT(parse_err((const uint8_t *)"", 0, &e), -1);
	CHECK(has(&e, "truncated pickle at byte 0: empty"));
	CHECK_EQ_INT(parse_err((const uint8_t *)"\x80", 1, &e), -1);
	CHECK(has(&e, "truncated pickle at byte 0"));
}

/* Every single-bit flip of small packs: an error or a pack, never a crash,
 * and an accepted pack still keeps every image inside the buffer. */
static void test_bitflips(void)
{
	struct {
		const uint8_t *p;
		size_t n;
	} lits[] = {{LIT(py2_pickle)}, {LIT(py2_cpickle)}, {LIT(py3_p4)}, {LIT(py2_cpickle_same)}};
	int outside = 0, nomsg = 0, accepted = 0;
	for (size_t k = 0; k < sizeof lits / sizeof *lits; k++)
		for (size_t i = 0; i < lits[k].n; i++)
			for (int bit = 0; bit < 8; bit++) {
				uint8_t *c = malloc(lits[k].n);
				memcpy(c, lits[k].p, lits[k].n);
				c[i] ^= (uint8_t)(1 << bit);
				mfr_binpack pk;
				mfr_error e = {{0}};
				if (mfr_binpack_parse(c, lits[k].n, &pk, &e) == 0) {
					accepted++;
					for (size_t j = 0; j < pk.n_images; j++)
						outside += pk.images[j] < c || pk.images[j] + pk.sizes[j] > c + lits[k].n;
					outside += pk.n_images != 2 * pk.n_pairs;
					mfr_binpack_free(&pk);
				} else
					nomsg += e.msg[0] == 0;
				free(c);
			}
	CHECK_EQ_INT(outside, 0);
	CHECK_EQ_INT(nomsg, 0);
	CHECK(accepted > 0); /* flips inside image bytes and bools are still packs */
}

/* builds "PROTO 2" + body + nothing else */
static int body(const char *s, size_t n, mfr_error *e)
{
	check_buf b = {0};
	check_put(&b, "\x80\x02", 2);
	check_put(&b, s, n);
	int rc = parse_err(b.d, b.n, e);
	free(b.d);
	return rc;
}
#define BODY(s, e) body(s, sizeof(s) - 1, e)

static void test_errors(void)
{
	mfr_error e;
	/* protocol */
	CHECK_EQ_INT(parse_err((const uint8_t *)"(lp0\n.", 6, &e), -1);
	CHECK(has(&e, "not a pickle of protocol 2 or higher: byte 0 is 0x28, not PROTO (0x80)"));
	CHECK_EQ_INT(parse_err((const uint8_t *)"\x80\x01].", 4, &e), -1);
	CHECK(has(&e, "pickle protocol 1 at byte 1: only protocols 2 to 5 are read"));
	CHECK_EQ_INT(parse_err((const uint8_t *)"\x80\x06].", 4, &e), -1);
	CHECK(has(&e, "pickle protocol 6"));
	CHECK_EQ_INT(BODY("\x80\x02]].", &e), -1); /* PROTO again */
	CHECK(has(&e, "unsupported pickle opcode 0x80 at byte 2"));

	/* unsupported opcodes */
	CHECK_EQ_INT(BODY("]N\x86.", &e), -1);
	CHECK(has(&e, "unsupported pickle opcode 0x4e ('N', NONE) at byte 3: only lists of bytes and bools are read"));
	CHECK_EQ_INT(BODY("]\x93", &e), -1);
	CHECK(has(&e, "unsupported pickle opcode 0x93 (STACK_GLOBAL"));
	CHECK_EQ_INT(BODY("]\xf0", &e), -1);
	CHECK(has(&e, "unsupported pickle opcode 0xf0 at byte 3: only"));
	CHECK_EQ_INT(BODY("]I01\n", &e), -1);
	CHECK(has(&e, "opcode 0x49 ('I', INT: protocol 0 or 1) at byte 3"));

	/* odd counts and wrong structures */
	CHECK_EQ_INT(BODY("](U\x01" "aU\x01" "bU\x01" "ce]\x88" "a\x86.", &e), -1);
	CHECK(has(&e, "3 images for 1 pairs: a pack holds 2 images per pair"));
	CHECK_EQ_INT(BODY("](U\x01" "aU\x01" "be](\x88\x88" "e\x86.", &e), -1);
	CHECK(has(&e, "2 images for 2 pairs"));
	CHECK_EQ_INT(BODY("](\x88\x88" "e](U\x01" "aU\x01" "be\x86.", &e), -1);
	CHECK(has(&e, "wrong structure: item 0 of the first list is a bool; it must be bytes"));
	CHECK_EQ_INT(BODY("](U\x01" "aU\x01" "be](U\x01" "ae\x86.", &e), -1);
	CHECK(has(&e, "item 0 of the second list is bytes; it must be a bool"));
	CHECK_EQ_INT(BODY("]].", &e), -1);
	CHECK(has(&e, "wrong structure at byte 4 (STOP): 2 values, the last a list; a pack is one tuple"));
	CHECK_EQ_INT(BODY("].", &e), -1);
	CHECK_EQ_INT(BODY(".", &e), -1);
	CHECK(has(&e, "0 values, the last nothing"));
	CHECK_EQ_INT(BODY("]]]", &e), -1);
	CHECK(has(&e, "wrong structure at byte 4: a third list"));
	CHECK_EQ_INT(BODY("]]a", &e), -1);
	CHECK(has(&e, "wrong structure at byte 4: a list in a list"));
	CHECK_EQ_INT(BODY("]]\x86\x88" "a", &e), -1);
	CHECK(has(&e, "wrong structure at byte 6: append to a tuple, not a list"));
	CHECK_EQ_INT(BODY("]U\x01" "a\x86", &e), -1);
	CHECK(has(&e, "a tuple of a list and bytes"));
	CHECK_EQ_INT(BODY("(]]]", &e), -1);
	CHECK_EQ_INT(BODY("(]]\x88t", &e), -1);
	CHECK(has(&e, "a tuple of 3 items"));
	CHECK_EQ_INT(BODY("]](\x86", &e), -1);
	CHECK(has(&e, "a tuple of a list and a mark"));
	CHECK_EQ_INT(BODY("]]\x86(\x86.", &e), -1);
	CHECK_EQ_INT(BODY("]]\x86\x88\x86.", &e), -1);
	CHECK(has(&e, "a tuple of a tuple and a bool"));
	CHECK_EQ_INT(BODY("]]\x86\x88.", &e), -1);
	CHECK_EQ_INT(BODY("\x86", &e), -1);
	CHECK(has(&e, "TUPLE2 at byte 2 needs two values"));
	CHECK_EQ_INT(BODY("]]t", &e), -1);
	CHECK(has(&e, "TUPLE at byte 4 without a MARK"));
	CHECK_EQ_INT(BODY("]\x88" "e", &e), -1);
	CHECK(has(&e, "APPENDS at byte 4 without a MARK"));
	CHECK_EQ_INT(BODY("(\x88" "e", &e), -1);
	CHECK(has(&e, "APPENDS to nothing, not a list"));
	CHECK_EQ_INT(BODY("\x88(e", &e), -1);
	CHECK(has(&e, "APPENDS to a bool, not a list"));
	CHECK_EQ_INT(BODY("](a", &e), -1);
	CHECK(has(&e, "APPEND at byte 4 needs a list and a value"));
	CHECK_EQ_INT(BODY("\x88" "a", &e), -1);
	CHECK_EQ_INT(BODY("]K\x02", &e), -1);
	CHECK(has(&e, "integer 2 at byte 3: only 0 and 1 (bools) are read"));
	/* (L, L) of one empty list is an empty pack */
	CHECK_EQ_INT(BODY("]q\x00h\x00\x86.", &e), 0);

	/* after STOP */
	CHECK_EQ_INT(parse_err((const uint8_t *)"\x80\x04]]\x86..", 7, &e), -1);
	CHECK(has(&e, "1 bytes after the STOP opcode at byte 5"));

	/* memo */
	CHECK_EQ_INT(BODY("]h\x00", &e), -1);
	CHECK(has(&e, "memo index 0 at byte 3 was never stored"));
	CHECK_EQ_INT(BODY("]q\x05h\x04", &e), -1);
	CHECK(has(&e, "memo index 4 at byte 5 was never stored"));
	CHECK_EQ_INT(BODY("]r\xff\xff\xff\xff", &e), -1);
	CHECK(has(&e, "memo index 4294967295 out of range at byte 3"));
	CHECK_EQ_INT(BODY("]j\xff\xff\xff\xff", &e), -1);
	CHECK(has(&e, "memo index 4294967295 at byte 3 was never stored"));
	CHECK_EQ_INT(BODY("q\x00", &e), -1);
	CHECK(has(&e, "memo put at byte 2 with no value on the stack"));
	CHECK_EQ_INT(BODY("(\x94", &e), -1);
	CHECK(has(&e, "memo put at byte 3 with no value on the stack"));
	CHECK_EQ_INT(BODY("]q\xff]r\x01\x01\x00\x00\x86.", &e), 0); /* sparse is fine */
	CHECK_EQ_INT(BODY("]q\xff]r\x02\x01\x00\x00", &e), -1); /* 258 after one put */

	/* stack depth */
	check_buf b = {0};
	check_put(&b, "\x80\x02]", 3);
	for (int i = 0; i < MFR_PICKLE_STACK_MAX + 10; i++)
		op(&b, 0x88);
	CHECK_EQ_INT(parse_err(b.d, b.n, &e), -1);
	CHECK(has(&e, "pickle stack deeper than 65536 values at byte 65538"));
	free(b.d);
}

static void test_read(void)
{
	char dir[] = "/tmp/test_pickle.XXXXXX", path[256];
	if (!mkdtemp(dir)) {
		CHECK(0);
		return;
	}
	snprintf(path, sizeof path, "%s/lfw.bin", dir);
	FILE *f = fopen(path, "wb");
	fwrite(py2_pickle, 1, sizeof py2_pickle - 1, f);
	fclose(f);
	mfr_binpack pk;
	mfr_error e = {{0}};
	CHECK_EQ_INT(mfr_binpack_read(path, 1 << 20, &pk, &e), 0);
	CHECK(pk.owned != NULL && pk.n_images == 4 && pk.n_pairs == 2);
	CHECK(pk.n_images == 4 && pk.sizes[2] == 5 && memcmp(pk.images[2], "\xff\xd8" "ccc", 5) == 0);
	mfr_binpack_free(&pk);

	f = fopen(path, "wb");
	fwrite(py3_p2, 1, sizeof py3_p2 - 1, f);
	fclose(f);
	CHECK_EQ_INT(mfr_binpack_read(path, 1 << 20, &pk, &e), -1);
	CHECK(has(&e, "lfw.bin': unsupported pickle opcode 0x63"));
	CHECK(pk.images == NULL && pk.owned == NULL);
	unlink(path);
	CHECK_EQ_INT(mfr_binpack_read(path, 1 << 20, &pk, &e), -1);
	CHECK(has(&e, "lfw.bin': No such file"));
	rmdir(dir);
}

int main(void)
{
	test_captured();
	test_emitted();
	test_variants();
	test_truncation();
	test_bitflips();
	test_errors();
	test_read();
	free(py2_big.d);
	free(py3_big.d);
	free(py3_frames.d);
	return check_done();
}
