/* test_recordio.c — the RecordIO reader against files made by a small writer
 * that cuts records at the magic as MXNet's does (dmlc-core
 * RecordIOWriter::WriteRecord): an insightface-style train.rec/.idx/property,
 * a plain file without header, and damaged variants (truncated at every byte,
 * bad magic, chunk flags out of order, over the cap, a disagreeing .idx, bad
 * labels). Every damaged input must give -1 and a message naming a byte or
 * line, never a crash. */
#include "recordio.h" /* defines: mfr_recordio_open, mfr_recordio_next, ... */

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check.h"

/* ---- the writer (check_buf and check_put come from check.h) ---- */

static void put_chunk(check_buf *b, uint32_t cflag, const uint8_t *p, uint32_t len)
{
	uint8_t h[8];
	mfr_put32(h, MFR_RECORDIO_MAGIC);
	mfr_put32(h + 4, cflag << 29 | len);
	check_put(b, h, 8);
	check_put(b, p, len);
}

/* Appends one record as dmlc-core writes it: every 4-aligned magic in the data
 * ends a chunk (cflag 1 for the first, 2 after) and is dropped; the rest is the
 * last chunk (cflag 3), or the whole record (cflag 0) when nothing was cut;
 * zero padding to 4 bytes after it. Returns the offset of the first chunk. */
static uint64_t write_record(check_buf *b, const uint8_t *d, uint32_t len)
{
	uint64_t start = b->n;
	uint32_t dptr = 0;
	for (uint32_t i = 0; i + 4 <= len; i += 4)
		if (mfr_get32(d + i) == MFR_RECORDIO_MAGIC) {
			put_chunk(b, dptr == 0 ? 1 : 2, d + dptr, i - dptr);
			dptr = i + 4;
		}
	put_chunk(b, dptr ? 3 : 0, d + dptr, len - dptr);
	static const uint8_t zero[4];
	check_put(b, zero, (4 - (len & 3)) & 3);
	return start;
}

/* Builds a record's data: IRHeader (flag = nlab, label in the header when
 * nlab == 0), then nlab float labels, then the image. */
static uint32_t pack(uint8_t *out, float label, const float *labs, uint32_t nlab, uint64_t id, uint64_t id2,
		     const void *img, size_t n)
{
	mfr_put32(out, nlab);
	mfr_putf32(out + 4, nlab ? 0.0f : label);
	mfr_put64(out + 8, id);
	mfr_put64(out + 16, id2);
	for (uint32_t i = 0; i < nlab; i++)
		mfr_putf32(out + 24 + 4 * i, labs[i]);
	memcpy(out + 24 + 4 * nlab, img, n);
	return (uint32_t)(24 + 4 * nlab + n);
}

static void idx_line(check_buf *ix, uint64_t key, uint64_t off)
{
	char line[64];
	int n = snprintf(line, sizeof line, "%llu\t%llu\n", (unsigned long long)key, (unsigned long long)off);
	check_put(ix, line, (size_t)n);
}

/* ---- the insightface fixture ---- */

enum { N_IMG = 6, N_ID = 3 };
static const uint64_t A = N_IMG + 1, B = N_IMG + 1 + N_ID;

typedef struct {
	int32_t label;
	uint32_t flag;
	uint64_t id, id2;
	uint8_t img[96];
	size_t n;
	uint64_t off;
} expect;

static expect want[N_IMG];
static check_buf rec, idx;
static uint64_t pad_at; /* offset of padding bytes after image 5, to make non-zero */
static uint64_t off_img3; /* first chunk of image 3 */

static void build_fixture(void)
{
	uint8_t d[256];
	uint8_t magic[4];
	mfr_put32(magic, MFR_RECORDIO_MAGIC);
	float hdr[2] = {(float)A, (float)B};
	uint64_t off = write_record(&rec, d, pack(d, 0, hdr, 2, 0, 0, "", 0));
	idx_line(&idx, 0, off);

	/* 1: flag 0, float label in the header; a JPEG-looking payload */
	expect *w = &want[0];
	*w = (expect){.label = 0, .flag = 0, .id = 1, .n = 10};
	memcpy(w->img, "\xff\xd8\xff\xe0jpeg\xff\xd9", 10);
	/* 2: the magic at image offsets 0 (record 24), 8 and 12 (two in a row:
	 * an empty middle chunk), once unaligned at 17, and as the last 4 bytes
	 * (an empty last chunk); the ids hold it too (record offset 8) */
	w = &want[1];
	*w = (expect){.label = 1, .flag = 0, .id = MFR_RECORDIO_MAGIC, .id2 = 7, .n = 32};
	for (int i = 0; i < 32; i++)
		w->img[i] = (uint8_t)(0x40 + i);
	memcpy(w->img, magic, 4);
	memcpy(w->img + 8, magic, 4);
	memcpy(w->img + 12, magic, 4);
	memcpy(w->img + 17, magic, 4);
	memcpy(w->img + 28, magic, 4);
	/* 3: flag 2, label array [2, 7.5]: the first is the class */
	w = &want[2];
	*w = (expect){.label = 2, .flag = 2, .id = 3, .n = 5};
	memcpy(w->img, "\x89PNG\r", 5);
	/* 4: flag 1, label array [1] */
	w = &want[3];
	*w = (expect){.label = 1, .flag = 1, .id = 4, .id2 = 0xffffffffffffffffull, .n = 7};
	memcpy(w->img, "\xff\xd8.....", 7);
	/* 5: 13 image bytes: 37-byte record, 3 padding bytes (made non-zero later) */
	w = &want[4];
	*w = (expect){.label = 2, .flag = 0, .id = 5, .n = 13};
	memcpy(w->img, "\xff\xd8thirteen!!!", 13);
	/* 6: a large class number, still exact in float32 */
	w = &want[5];
	*w = (expect){.label = 16777216, .flag = 0, .id = 6, .n = 0};

	for (int k = 0; k < N_IMG; k++) {
		w = &want[k];
		uint32_t n;
		if (w->flag == 0)
			n = pack(d, (float)w->label, NULL, 0, w->id, w->id2, w->img, w->n);
		else {
			float labs[2] = {(float)w->label, 7.5f};
			n = pack(d, 0, labs, w->flag, w->id, w->id2, w->img, w->n);
		}
		w->off = write_record(&rec, d, n);
		idx_line(&idx, (uint64_t)k + 1, w->off);
		if (k == 2)
			off_img3 = w->off;
		if (k == 4)
			pad_at = rec.n - 3;
	}
	/* identity records: [start, end) of each identity's keys, empty image */
	float ranges[N_ID][2] = {{1, 3}, {3, 5}, {5, 7}};
	for (int i = 0; i < N_ID; i++) {
		off = write_record(&rec, d, pack(d, 0, ranges[i], 2, 0, 0, "", 0));
		idx_line(&idx, A + (uint64_t)i, off);
	}
	/* image 2 was written as 6 chunks: the writer did cut it */
	int split = 0;
	for (uint64_t at = 0; at < rec.n;) {
		uint32_t len = mfr_get32(rec.d + at + 4) & ((1u << 29) - 1);
		split += (mfr_get32(rec.d + at + 4) >> 29) != 0;
		at += 8 + ((len + 3) & ~3u);
	}
	CHECK_EQ_INT(split, 6);
	/* MXNet writes zero padding; the reader must not care */
	memset(rec.d + pad_at, 0xa5, 3);
}

/* ---- helpers ---- */

static FILE *mem(const check_buf *b)
{
	FILE *f = tmpfile();
	if (!f)
		abort();
	if (b->n && fwrite(b->d, 1, b->n, f) != b->n)
		abort();
	rewind(f);
	return f;
}

static char dir[] = "/tmp/test_recordio.XXXXXX";

static void write_file(const char *name, const void *p, size_t n)
{
	char path[256];
	snprintf(path, sizeof path, "%s/%s", dir, name);
	FILE *f = fopen(path, "wb");
	if (!f || fwrite(p, 1, n, f) != n || fclose(f))
		abort();
}

/* Reads every image of r; returns the last call's result (0 at a clean end,
 * -1 on error with the message in *e) and the number of images in *nimg. */
static int drain(mfr_recordio *r, mfr_error *e, uint64_t *nimg)
{
	mfr_recordio_image im;
	int k;
	*nimg = 0;
	while ((k = mfr_recordio_next(r, &im, e)) == 1)
		++*nimg;
	return k;
}

/* Opens rec (and idx text when non-NULL) from memory, reads to the end and
 * returns 0 (clean), -1 (error at open or read). The message lands in e. */
static int read_all(const check_buf *r, const check_buf *i, uint32_t cap, mfr_error *e)
{
	FILE *fr = mem(r), *fi = i ? mem(i) : NULL;
	mfr_error_clear(e);
	mfr_recordio *rd = mfr_recordio_open_stream(fr, "t.rec", fi, "t.idx", cap, e);
	int k = -1;
	if (rd) {
		uint64_t n;
		k = drain(rd, e, &n);
		mfr_recordio_close(rd);
	}
	fclose(fr);
	if (fi)
		fclose(fi);
	return k;
}

static int has(const mfr_error *e, const char *s)
{
	if (strstr(e->msg, s))
		return 1;
	fprintf(stderr, "    message '%s' lacks '%s'\n", e->msg, s);
	return 0;
}

static check_buf copy(const check_buf *b)
{
	check_buf c = {0};
	check_put(&c, b->d, b->n);
	return c;
}

/* ---- tests ---- */

/* Reads the fixture's images from r: keys from 1 (insightface) or 0 (a plain
 * file), offsets from want[] or from offs when non-NULL. */
static void check_images(mfr_recordio *r, int keys_from_one, const uint64_t *offs)
{
	mfr_error e = {{0}};
	mfr_recordio_image im;
	for (int k = 0; k < N_IMG; k++) {
		int got = mfr_recordio_next(r, &im, &e);
		CHECK_EQ_INT(got, 1);
		if (got != 1) {
			fprintf(stderr, "    %s\n", e.msg);
			return;
		}
		const expect *w = &want[k];
		CHECK_EQ_INT(im.key, keys_from_one ? (uint64_t)k + 1 : (uint64_t)k);
		CHECK_EQ_INT(im.label, w->label);
		CHECK_EQ_INT(im.flag, w->flag);
		CHECK(im.id == w->id);
		CHECK(im.id2 == w->id2);
		CHECK_EQ_INT(im.offset, offs ? offs[k] : w->off);
		CHECK_EQ_INT(im.image_size, w->n);
		CHECK(im.image_size == w->n && memcmp(im.image, w->img, w->n) == 0);
	}
	CHECK_EQ_INT(mfr_recordio_next(r, &im, &e), 0);
	CHECK_EQ_INT(mfr_recordio_next(r, &im, &e), 0); /* stays at the end */
	CHECK_EQ_INT(mfr_recordio_count(r), N_IMG);
}

static void test_files(void)
{
	char path[256];
	mfr_error e = {{0}};
	write_file("train.rec", rec.d, rec.n);
	write_file("train.idx", idx.d, idx.n);
	snprintf(path, sizeof path, "%s/train.rec", dir);

	mfr_recordio_property p = {0};
	CHECK_EQ_INT(mfr_recordio_read_property(path, &p, &e), 0); /* none yet */
	write_file("property", "3,112,112\n", 10);
	CHECK_EQ_INT(mfr_recordio_read_property(path, &p, &e), 1);
	CHECK_EQ_INT(p.num_classes, 3);
	CHECK_EQ_INT(p.height, 112);
	CHECK_EQ_INT(p.width, 112);

	mfr_recordio *r = mfr_recordio_open(path, 0, &e);
	CHECK(r != NULL);
	if (!r) {
		fprintf(stderr, "    %s\n", e.msg);
		return;
	}
	const mfr_recordio_layout *l = mfr_recordio_get_layout(r);
	CHECK(l->has_index);
	CHECK(l->has_header);
	CHECK_EQ_INT(l->image_end, A);
	CHECK_EQ_INT(l->identity_end, B);
	check_images(r, 1, NULL);
	mfr_recordio_close(r);

	/* a path without .rec gets ".idx" appended */
	write_file("pack", rec.d, rec.n);
	write_file("pack.idx", idx.d, idx.n);
	snprintf(path, sizeof path, "%s/pack", dir);
	r = mfr_recordio_open(path, 0, &e);
	CHECK(r && mfr_recordio_get_layout(r)->has_index);
	if (r)
		check_images(r, 1, NULL);
	mfr_recordio_close(r);

	/* a stale .idx beside the file is an error, not silently ignored */
	check_buf bad = copy(&idx);
	bad.d[bad.n - 2]++; /* last offset + 1 */
	write_file("train.idx", bad.d, bad.n);
	snprintf(path, sizeof path, "%s/train.rec", dir);
	r = mfr_recordio_open(path, 0, &e);
	CHECK(r != NULL);
	uint64_t n;
	CHECK_EQ_INT(drain(r, &e, &n), -1);
	CHECK_EQ_INT(n, N_IMG);
	CHECK(has(&e, "train.idx': line 10 gives byte"));
	mfr_recordio_close(r);
	free(bad.d);

	snprintf(path, sizeof path, "%s/missing.rec", dir);
	CHECK(mfr_recordio_open(path, 0, &e) == NULL);
	CHECK(has(&e, "missing.rec': No such file"));

	/* property files */
	const char *badprop[] = {"3,112", "3,112,112,1", "0,112,112", "3,112,x", "3,112,70000", "", "-3,112,112"};
	for (size_t i = 0; i < sizeof badprop / sizeof *badprop; i++) {
		write_file("property", badprop[i], strlen(badprop[i]));
		snprintf(path, sizeof path, "%s/train.rec", dir);
		CHECK_EQ_INT(mfr_recordio_read_property(path, &p, &e), -1);
		CHECK(has(&e, "property': "));
	}
	char longprop[300];
	memset(longprop, '1', sizeof longprop);
	write_file("property", longprop, sizeof longprop);
	CHECK_EQ_INT(mfr_recordio_read_property(path, &p, &e), -1);
	CHECK(has(&e, "property': longer than 255 bytes"));
	CHECK_EQ_INT(mfr_recordio_parse_property(longprop, 100, "p", &p, &e), -1);
	CHECK(has(&e, "'p': longer than 63 bytes"));
	CHECK_EQ_INT(mfr_recordio_parse_property(" 85742 , 112,96 \r\n", 18, "p", &p, &e), 0);
	CHECK_EQ_INT(p.num_classes, 85742);
	CHECK_EQ_INT(p.width, 96);
}

static void test_no_index(void)
{
	/* without .idx, keys are positions: the same as insightface's keys */
	FILE *f = mem(&rec);
	mfr_error e = {{0}};
	mfr_recordio *r = mfr_recordio_open_stream(f, "t.rec", NULL, NULL, 0, &e);
	CHECK(r != NULL);
	if (r) {
		CHECK(!mfr_recordio_get_layout(r)->has_index);
		CHECK(mfr_recordio_get_layout(r)->has_header);
		check_images(r, 1, NULL);
	}
	mfr_recordio_close(r);
	fclose(f);

	/* an empty file is an empty set of images */
	check_buf empty = {0};
	CHECK_EQ_INT(read_all(&empty, NULL, 0, &e), 0);
	CHECK_EQ_INT(read_all(&empty, &empty, 0, &e), 0);
}

/* record 0 with flag 0: every record is an image, keys from a sparse .idx */
static void test_plain(void)
{
	check_buf r = {0}, ix = {0};
	uint8_t d[256];
	uint64_t offs[N_IMG];
	for (int k = 0; k < N_IMG; k++) {
		const expect *w = &want[k];
		uint32_t n;
		if (w->flag == 0)
			n = pack(d, (float)w->label, NULL, 0, w->id, w->id2, w->img, w->n);
		else {
			float labs[2] = {(float)w->label, 7.5f};
			n = pack(d, 0, labs, w->flag, w->id, w->id2, w->img, w->n);
		}
		offs[k] = write_record(&r, d, n);
		idx_line(&ix, 100 + 5 * (uint64_t)k, offs[k]);
	}
	mfr_error e = {{0}};
	FILE *fr = mem(&r), *fi = mem(&ix);
	mfr_recordio *rd = mfr_recordio_open_stream(fr, "p.rec", fi, "p.idx", 0, &e);
	CHECK(rd != NULL);
	if (rd) {
		CHECK(!mfr_recordio_get_layout(rd)->has_header);
		mfr_recordio_image im;
		for (int k = 0; k < N_IMG; k++) {
			CHECK_EQ_INT(mfr_recordio_next(rd, &im, &e), 1);
			CHECK_EQ_INT(im.key, 100 + 5 * k);
			CHECK_EQ_INT(im.label, want[k].label);
			CHECK_EQ_INT(im.offset, offs[k]);
			CHECK(im.image_size == want[k].n && memcmp(im.image, want[k].img, want[k].n) == 0);
		}
		CHECK_EQ_INT(mfr_recordio_next(rd, &im, &e), 0);
	}
	mfr_recordio_close(rd);
	fclose(fr);
	fclose(fi);

	/* without .idx: keys 0.. and record 0 is an image */
	fr = mem(&r);
	rd = mfr_recordio_open_stream(fr, "p.rec", NULL, NULL, 0, &e);
	CHECK(rd != NULL);
	if (rd)
		check_images(rd, 0, offs);
	mfr_recordio_close(rd);
	fclose(fr);

	/* .idx keys must rise */
	check_buf ix2 = {0};
	for (int k = 0; k < N_IMG; k++)
		idx_line(&ix2, k == 3 ? 100 : 100 + 5 * (uint64_t)k, offs[k]);
	CHECK_EQ_INT(read_all(&r, &ix2, 0, &e), -1);
	CHECK(has(&e, "t.idx': line 4: key 100 is not above the key 110"));
	free(r.d);
	free(ix.d);
	free(ix2.d);
}

static void test_truncation(void)
{
	mfr_error e;
	int bad_with = 0, bad_without = 0, nomsg = 0;
	for (size_t n = 0; n < rec.n; n++) {
		check_buf cut = {rec.d, n, n};
		/* with the .idx every cut is caught; without it a cut at a record
		 * boundary is caught by the header's counts (and n == 0 is a valid
		 * empty file) */
		if (read_all(&cut, &idx, 0, &e) != -1)
			bad_with++;
		else if (!strstr(e.msg, "byte ") && !strstr(e.msg, "line "))
			nomsg++;
		if (n > 0) {
			if (read_all(&cut, NULL, 0, &e) != -1)
				bad_without++;
			else if (!strstr(e.msg, "byte "))
				nomsg++, fprintf(stderr, "    %s\n", e.msg);
		}
	}
	CHECK_EQ_INT(bad_with, 0);
	CHECK_EQ_INT(bad_without, 0);
	CHECK_EQ_INT(nomsg, 0);

	/* specific messages */
	check_buf cut = {rec.d, 5, 5};
	CHECK_EQ_INT(read_all(&cut, NULL, 0, &e), -1);
	CHECK(has(&e, "t.rec': truncated chunk header at byte 0: 5 of 8 bytes"));
	cut.n = cut.room = 12;
	CHECK_EQ_INT(read_all(&cut, NULL, 0, &e), -1);
	CHECK(has(&e, "t.rec': truncated chunk at byte 0: 32 data bytes, 4 present"));
	cut.n = cut.room = pad_at + 1;
	CHECK_EQ_INT(read_all(&cut, NULL, 0, &e), -1);
	CHECK(has(&e, "3 padding bytes, 1 present"));
	/* inside image 2, after its first chunk */
	cut.n = cut.room = want[1].off + 8 + 8;
	CHECK_EQ_INT(read_all(&cut, NULL, 0, &e), -1);
	char msg[128];
	snprintf(msg, sizeof msg, "t.rec': truncated record at byte %llu: the file ends at byte %llu before its last chunk",
		 (unsigned long long)want[1].off, (unsigned long long)cut.n);
	CHECK(has(&e, msg));
	/* at the boundary before the identity records */
	cut.n = cut.room = want[5].off + 8 + 24;
	CHECK_EQ_INT(read_all(&cut, NULL, 0, &e), -1);
	CHECK(has(&e, "with 6 image and 0 identity records; its header lists 6 and 3 (truncated?)"));
}

static void test_damage(void)
{
	mfr_error e;
	char msg[160];
	CHECK_EQ_INT(read_all(&rec, &idx, 0, &e), 0); /* the intact fixture */

	/* flipped magic at image 3 */
	check_buf b = copy(&rec);
	b.d[off_img3 + 1] ^= 0x10;
	CHECK_EQ_INT(read_all(&b, &idx, 0, &e), -1);
	snprintf(msg, sizeof msg, "t.rec': bad chunk magic 0xced7330a at byte %llu", (unsigned long long)off_img3);
	CHECK(has(&e, msg));
	free(b.d);
	/* and at byte 0 it fails at open */
	b = copy(&rec);
	b.d[0] = 0;
	CHECK_EQ_INT(read_all(&b, NULL, 0, &e), -1);
	CHECK(has(&e, "t.rec': bad chunk magic 0xced72300 at byte 0"));
	free(b.d);

	/* chunk flags out of order */
	uint8_t d[64] = {0};
	check_buf c = {0};
	put_chunk(&c, 2, d, 8);
	CHECK_EQ_INT(read_all(&c, NULL, 0, &e), -1);
	CHECK(has(&e, "t.rec': middle chunk at byte 0 without a first chunk before it"));
	c.n = 0;
	put_chunk(&c, 3, d, 8);
	CHECK_EQ_INT(read_all(&c, NULL, 0, &e), -1);
	CHECK(has(&e, "t.rec': last chunk at byte 0 without a first chunk"));
	c.n = 0;
	put_chunk(&c, 1, d, 8);
	put_chunk(&c, 0, d, 24);
	CHECK_EQ_INT(read_all(&c, NULL, 0, &e), -1);
	CHECK(has(&e, "t.rec': whole chunk at byte 16 inside the record begun at byte 0, which has no last chunk"));
	c.n = 0;
	put_chunk(&c, 1, d, 8);
	put_chunk(&c, 1, d, 8);
	CHECK_EQ_INT(read_all(&c, NULL, 0, &e), -1);
	CHECK(has(&e, "t.rec': first chunk at byte 16 inside the record begun at byte 0"));
	c.n = 0;
	put_chunk(&c, 1, d, 8);
	CHECK_EQ_INT(read_all(&c, NULL, 0, &e), -1);
	CHECK(has(&e, "t.rec': truncated record at byte 0: the file ends at byte 16 before its last chunk"));
	c.n = 0;
	put_chunk(&c, 5, d, 24);
	CHECK_EQ_INT(read_all(&c, NULL, 0, &e), -1);
	CHECK(has(&e, "t.rec': bad chunk flag 5 at byte 0"));
	/* a proper split record is fine: first + middle + last */
	c.n = 0;
	put_chunk(&c, 1, d, 8);
	put_chunk(&c, 2, d, 4);
	put_chunk(&c, 3, d, 4);
	CHECK_EQ_INT(read_all(&c, NULL, 0, &e), 0);

	/* over the cap: a whole record, a split one, and a length field near 2^29
	 * in a tiny file (must fail on the cap, before allocating) */
	CHECK_EQ_INT(read_all(&c, NULL, 23, &e), -1);
	CHECK(has(&e, "t.rec': record at byte 0 is larger than the 23-byte cap (chunk at byte 28 holds 4 bytes)"));
	CHECK_EQ_INT(read_all(&c, NULL, 24, &e), 0);
	c.n = 0;
	put_chunk(&c, 0, d, 40);
	CHECK_EQ_INT(read_all(&c, NULL, 39, &e), -1);
	CHECK(has(&e, "larger than the 39-byte cap"));
	c.n = 0;
	uint8_t h[8];
	mfr_put32(h, MFR_RECORDIO_MAGIC);
	mfr_put32(h + 4, (1u << 29) - 1);
	check_put(&c, h, 8);
	CHECK_EQ_INT(read_all(&c, NULL, 0, &e), -1);
	CHECK(has(&e, "t.rec': record at byte 0 is larger than the 67108864-byte cap (chunk at byte 0 holds 536870911 bytes)"));
	free(c.d);

	/* .idx disagreeing with the .rec */
	check_buf ix = {0};
	for (int k = 0; k < 3; k++) /* a record missing from the .idx */
		idx_line(&ix, (uint64_t)k, k ? want[k - 1].off : 0);
	CHECK_EQ_INT(read_all(&rec, &ix, 0, &e), -1);
	snprintf(msg, sizeof msg, "t.rec': record at byte %llu is not listed in 't.idx', which has 3 lines",
		 (unsigned long long)want[2].off);
	CHECK(has(&e, msg));
	b = copy(&idx);
	idx_line(&b, 99, rec.n); /* a line left over */
	CHECK_EQ_INT(read_all(&rec, &b, 0, &e), -1);
	snprintf(msg, sizeof msg, "t.idx': line 11 lists key 99 at byte %llu, but 't.rec' ends at byte %llu after 10 records",
		 (unsigned long long)rec.n, (unsigned long long)rec.n);
	CHECK(has(&e, msg));
	free(b.d);
	ix.n = 0;
	idx_line(&ix, 0, 0);
	idx_line(&ix, 1, want[0].off + 4); /* an offset off by 4 */
	CHECK_EQ_INT(read_all(&rec, &ix, 0, &e), -1);
	snprintf(msg, sizeof msg, "t.idx': line 2 gives byte %llu for key 1, but record 1 of 't.rec' starts at byte %llu",
		 (unsigned long long)want[0].off + 4, (unsigned long long)want[0].off);
	CHECK(has(&e, msg));
	const char *lines[] = {"0 0\n", "0\t\n", "\t0\n", "0\t0x\n", "x\t0\n", "\n", "0\t-0\n",
			       "99999999999999999999\t0\n", "0\t0\t0\n"};
	for (size_t i = 0; i < sizeof lines / sizeof *lines; i++) {
		ix.n = 0;
		check_put(&ix, lines[i], strlen(lines[i]));
		CHECK_EQ_INT(read_all(&rec, &ix, 0, &e), -1);
		CHECK(has(&e, "t.idx': line 1 is not \"key<TAB>offset\""));
	}
	/* a CRLF line end, and no newline after the last line, are fine */
	ix.n = 0;
	check_put(&ix, "0\t0\r\n", 5);
	size_t first = (size_t)((uint8_t *)memchr(idx.d, '\n', idx.n) + 1 - idx.d);
	check_put(&ix, idx.d + first, idx.n - first - 1);
	CHECK_EQ_INT(read_all(&rec, &ix, 0, &e), 0);
	ix.n = 0;
	check_put(&ix, "  0\t0  \n", 8); /* Python strips each line */
	check_put(&ix, idx.d + first, idx.n - first);
	CHECK_EQ_INT(read_all(&rec, &ix, 0, &e), 0);
	ix.n = 0;
	for (int i = 0; i < 200; i++)
		check_put(&ix, "0", 1);
	CHECK_EQ_INT(read_all(&rec, &ix, 0, &e), -1);
	CHECK(has(&e, "t.idx': line 1 is longer than 128 bytes"));
	/* a key beyond the header's range */
	ix.n = 0;
	idx_line(&ix, 0, 0);
	idx_line(&ix, B, want[0].off);
	CHECK_EQ_INT(read_all(&rec, &ix, 0, &e), -1);
	snprintf(msg, sizeof msg, "t.rec': record key 10 at byte %llu is beyond the header's key range [1, 10)",
		 (unsigned long long)want[0].off);
	CHECK(has(&e, msg));
	free(ix.d);
}

/* a one-record file (no header) from a record's data */
static int one(const uint8_t *d, uint32_t n, mfr_error *e)
{
	check_buf c = {0};
	write_record(&c, d, n);
	int k = read_all(&c, NULL, 0, e);
	free(c.d);
	return k;
}

static void test_labels(void)
{
	mfr_error e;
	uint8_t d[64];
	const float bad[] = {1.5f, -1.0f, 2147483648.0f, 1e30f, 0.5f};
	for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
		CHECK_EQ_INT(one(d, pack(d, bad[i], NULL, 0, 0, 0, "x", 1), &e), -1);
		CHECK(has(&e, "t.rec': record key 0 at byte 0: label "));
		CHECK(has(&e, "is not a class number"));
		CHECK_EQ_INT(one(d, pack(d, 0, &bad[i], 1, 0, 0, "x", 1), &e), -1); /* as a header of 1 label */
	}
	uint32_t nan = 0x7fc00000u;
	float fnan;
	memcpy(&fnan, &nan, 4);
	CHECK_EQ_INT(one(d, pack(d, fnan, NULL, 0, 0, 0, "x", 1), &e), -1);
	CHECK(has(&e, "label nan is not a class number"));
	CHECK_EQ_INT(one(d, pack(d, 2147483520.0f, NULL, 0, 0, 0, "x", 1), &e), 0); /* largest float below 2^31 */
	CHECK_EQ_INT(one(d, pack(d, -0.0f, NULL, 0, 0, 0, "x", 1), &e), 0);

	/* a 2-label record 0 is a header; with 1 label or a bad range it is an error */
	float l1 = 3;
	CHECK_EQ_INT(one(d, pack(d, 0, &l1, 1, 0, 0, "", 0), &e), -1);
	CHECK(has(&e, "t.rec': header record 0 at byte 0 has 1 label"));
	float lr[2] = {0, 5};
	CHECK_EQ_INT(one(d, pack(d, 0, lr, 2, 0, 0, "", 0), &e), -1);
	CHECK(has(&e, "labels [0, 5] are not key bounds"));
	lr[0] = 5, lr[1] = 4;
	CHECK_EQ_INT(one(d, pack(d, 0, lr, 2, 0, 0, "", 0), &e), -1);
	lr[0] = 1, lr[1] = 1;
	CHECK_EQ_INT(one(d, pack(d, 0, lr, 2, 0, 0, "", 0), &e), 0); /* no images, no identities */

	/* records too short for their header or their labels (an empty first
	 * record once added an offset to a NULL buffer: found by fuzzing) */
	CHECK_EQ_INT(one(d, 0, &e), -1);
	CHECK(has(&e, "t.rec': record key 0 at byte 0 is 0 bytes, shorter than its 24-byte header"));
	CHECK_EQ_INT(one(d, 23, &e), -1);
	CHECK(has(&e, "t.rec': record key 0 at byte 0 is 23 bytes, shorter than its 24-byte header"));
	pack(d, 0, lr, 2, 0, 0, "", 0);
	mfr_put32(d, 3);
	CHECK_EQ_INT(one(d, 32, &e), -1);
	CHECK(has(&e, "flag 3 says 12 label bytes follow the header, the record has 8"));
	mfr_put32(d, 0xffffffffu);
	CHECK_EQ_INT(one(d, 32, &e), -1);
}

/* a record far above the reader's first buffer (64 KiB), with the magic at
 * every 4096th byte, comes back byte-exact; a short record after it fails */
static void test_big(void)
{
	enum { N = 300000 };
	uint8_t *d = malloc(N + 64);
	mfr_rng g = {42};
	size_t n = pack(d, 5, NULL, 0, 9, 0, "", 0);
	for (size_t i = 0; i < N; i++)
		d[n + i] = (uint8_t)mfr_rng_next(&g);
	for (size_t i = 4096; i + 4 <= N; i += 4096)
		mfr_put32(d + n + i, MFR_RECORDIO_MAGIC); /* n is 24: 4-aligned */
	check_buf b = {0};
	write_record(&b, d, (uint32_t)(n + N));
	uint64_t second = write_record(&b, d, 10);
	FILE *f = mem(&b);
	mfr_error e = {{0}};
	mfr_recordio *r = mfr_recordio_open_stream(f, "t.rec", NULL, NULL, 0, &e);
	CHECK(r != NULL);
	if (r) {
		mfr_recordio_image im;
		CHECK_EQ_INT(mfr_recordio_next(r, &im, &e), 1);
		CHECK_EQ_INT(im.label, 5);
		CHECK(im.image_size == N && memcmp(im.image, d + n, N) == 0);
		CHECK_EQ_INT(mfr_recordio_next(r, &im, &e), -1);
		char msg[128];
		snprintf(msg, sizeof msg, "t.rec': record key 1 at byte %llu is 10 bytes, shorter than its 24-byte header",
			 (unsigned long long)second);
		CHECK(has(&e, msg));
	}
	mfr_recordio_close(r);
	fclose(f);
	/* the same record over a 200000-byte cap fails on the cap */
	b.n = second;
	CHECK_EQ_INT(read_all(&b, NULL, 200000, &e), -1);
	CHECK(has(&e, "t.rec': record at byte 0 is larger than the 200000-byte cap"));
	free(b.d);
	free(d);
}

/* after an error the reader keeps failing, and closing it is fine */
static void test_sticky(void)
{
	check_buf b = copy(&rec);
	b.d[want[2].off] ^= 1;
	FILE *f = mem(&b);
	mfr_error e;
	mfr_recordio *r = mfr_recordio_open_stream(f, "t.rec", NULL, NULL, 0, &e);
	CHECK(r != NULL);
	uint64_t n;
	CHECK_EQ_INT(drain(r, &e, &n), -1);
	CHECK_EQ_INT(n, 2);
	mfr_recordio_image im;
	mfr_error e2 = {{0}};
	CHECK_EQ_INT(mfr_recordio_next(r, &im, &e2), -1);
	CHECK(strcmp(e.msg, e2.msg) == 0);
	mfr_recordio_close(r);
	fclose(f);
	free(b.d);
}

int main(void)
{
	if (!mkdtemp(dir)) {
		perror("mkdtemp");
		return 1;
	}
	build_fixture();
	test_files();
	test_no_index();
	test_plain();
	test_truncation();
	test_damage();
	test_labels();
	test_big();
	test_sticky();
	const char *names[] = {"train.rec", "train.idx", "pack", "pack.idx", "property"};
	char path[256];
	for (size_t i = 0; i < sizeof names / sizeof *names; i++) {
		snprintf(path, sizeof path, "%s/%s", dir, names[i]);
		unlink(path);
	}
	rmdir(dir);
	free(rec.d);
	free(idx.d);
	return check_done();
}
