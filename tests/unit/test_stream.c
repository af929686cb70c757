/* test_stream.c — record streams, record payloads, CRC32C, half floats, the
 * hash map: round trips, concatenation, the index, and every way a stream
 * can be damaged (truncation at every byte, a flipped bit in every byte). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check.h"
#include "crc32c.h"
#include "hashmap.h"
#include "record.h"
#include "stream.h"

static char dir[] = "/tmp/mfr-test-stream-XXXXXX";

static char *tmp_path(const char *name)
{
	static char buf[64][512]; /* every path stays valid for the whole run */
	static int k;
	if (k == 64)
		abort();
	char *p = buf[k++];
	snprintf(p, 512, "%s/%s", dir, name);
	return p;
}

static uint8_t *load(const char *path, size_t *n)
{
	uint8_t *d;
	mfr_error e;
	if (mfr_read_file(path, 1 << 30, &d, n, &e) < 0) {
			exit(1);
	}
	return d;
}

static void save(const char *path, const uint8_t *d, size_t n)
{
	FILE *f = fopen(path, "wb");
	fwrite(d, 1, n, f);
	fclose(f);
}

/* A face with a deterministic fake JPEG payload of `size` bytes. */
static void make_face(mfr_face *f, uint8_t *img, uint64_t id, uint32_t size)
{
	for (uint32_t i = 0; i < size; i++)
		img[i] = (uint8_t)(id * 31 + i * 7);
	*f = (mfr_face){.id = id, .label = (int32_t)(id % 5), .flags = id % 3 == 0 ? MFR_F_MASKED | (2u << 1) : 0,
			.width = 112, .height = 112, .channels = 3, .encoding = MFR_ENC_JPEG, .image = img,
			.image_size = size};
	if (id % 2) {
		f->flags |= MFR_F_LANDMARKS;
		for (int i = 0; i < 10; i++)
			f->landmarks[i] = (float)(id + i) * 0.5f;
	}
}

/* Writes n FACE records (ids first..first+n-1) to path. */
static void write_faces(const char *path, uint64_t first, int n, int with_index)
{
	mfr_error e;
	mfr_schema s = {.kind = MFR_KIND_FACE};
	char *argv[] = {"test", "a\tb", "c"};
	mfr_writer *w = mfr_writer_open(path, &s, "test_stream", 3, argv, with_index, &e);
	CHECK(w != NULL);
	uint8_t img[300], buf[400];
	for (int i = 0; i < n; i++) {
		mfr_face f;
		make_face(&f, img, first + i, 50 + (uint32_t)((first + i) * 13 % 200));
		mfr_face_encode(&f, buf);
		CHECK(mfr_writer_put(w, MFR_REC_DATA, buf, mfr_face_size(&f), &e) == 0);
	}
	CHECK(mfr_writer_count(w) == (uint64_t)n);
	CHECK(mfr_writer_close(w, &e) == 0);
}

/* Reads all records of paths; returns the count of data records, or -1 with
 * the error in e. Checks each face against make_face. */
static long read_all(const char *const *paths, int np, mfr_error *e, int *meta)
{
	mfr_reader *r = mfr_reader_open(paths, np, 0, meta != NULL, e);
	if (!r)
		return -1;
	mfr_record rec;
	long n = 0;
	int k;
	while ((k = mfr_reader_next(r, &rec, e)) == 1) {
		if (rec.type == MFR_REC_META) {
			++*meta;
			continue;
		}
		mfr_face f, want;
		uint8_t img[300];
		mfr_error fe;
		if (mfr_face_decode(rec.data, rec.size, &f, &fe) < 0) {
			mfr_fail(e, "decode: %s", fe.msg);
			mfr_reader_close(r);
			return -1;
		}
		make_face(&want, img, f.id, f.image_size);
		if (f.label != want.label || f.flags != want.flags || memcmp(f.image, img, f.image_size) ||
		    memcmp(f.landmarks, want.landmarks, sizeof f.landmarks)) {
			mfr_fail(e, "record %ld differs", n);
			mfr_reader_close(r);
			return -1;
		}
		n++;
	}
	mfr_reader_close(r);
	return k < 0 ? -1 : n;
}

static void test_crc(void)
{
	/* RFC 3720 (iSCSI) B.4 test vectors */
	uint8_t z[32] = {0}, ff[32], inc[32], dec[32];
	for (int i = 0; i < 32; i++) {
		ff[i] = 0xff;
		inc[i] = (uint8_t)i;
		dec[i] = (uint8_t)(31 - i);
	}
	CHECK(mfr_crc32c(0, z, 32) == 0x8a9136aau);
	CHECK(mfr_crc32c(0, ff, 32) == 0x62a8ab43u);
	CHECK(mfr_crc32c(0, inc, 32) == 0x46dd794eu);
	CHECK(mfr_crc32c(0, dec, 32) == 0x113fdb5cu);
	CHECK(mfr_crc32c(0, "123456789", 9) == 0xe3069283u);
	CHECK(mfr_crc32c_portable(0, "123456789", 9) == 0xe3069283u);
	CHECK(mfr_crc32c(0, "", 0) == 0);
	/* both paths agree on every length and alignment, incremental = whole */
	static uint8_t big[5000];
	mfr_rng r = {7};
	for (size_t i = 0; i < sizeof big; i++)
		big[i] = (uint8_t)mfr_rng_next(&r);
	int agree = 1;
	for (size_t off = 0; off < 9; off++)
		for (size_t n = 0; n + off <= sizeof big; n += 97)
			agree &= mfr_crc32c(0, big + off, n) == mfr_crc32c_portable(0, big + off, n);
	CHECK(agree);
	CHECK(mfr_crc32c(mfr_crc32c(0, big, 1234), big + 1234, 3766) == mfr_crc32c(0, big, 5000));
	printf("crc32c: hardware path %s\n", mfr_crc32c_hw() ? "on" : "off");
}

static void test_half(void)
{
	float v[] = {0.0f, -0.0f, 1.0f, -2.5f, 65504.0f, 6.1035156e-05f, 5.9604645e-08f, 0.333251953125f};
	for (size_t i = 0; i < sizeof v / sizeof *v; i++)
		CHECK(mfr_half_to_float(mfr_float_to_half(v[i])) == v[i]);
	CHECK(mfr_float_to_half(1.0f) == 0x3c00);
	CHECK(mfr_float_to_half(65520.0f) == 0x7c00); /* rounds to infinity */
	CHECK(mfr_float_to_half(1.0f + 1.0f / 2048) == 0x3c00); /* tie to even */
	CHECK(mfr_float_to_half(1.0f + 3.0f / 2048) == 0x3c02);
	int ok = 1;
	for (uint32_t h = 0; h < 0x7c00; h++) /* every finite half survives the round trip */
		ok &= mfr_float_to_half(mfr_half_to_float((uint16_t)h)) == h;
	CHECK(ok);
}

static void test_roundtrip(void)
{
	const char *a = tmp_path("a.mfr"), *b = tmp_path("b.mfr");
	write_faces(a, 0, 40, 1);
	write_faces(b, 40, 25, 0);
	mfr_error e;
	int meta = 0;
	const char *pa[] = {a}, *pab[] = {a, b};
	CHECK_EQ_INT(read_all(pa, 1, &e, NULL), 40);
	CHECK_EQ_INT(read_all(pab, 2, &e, &meta), 65);
	CHECK_EQ_INT(meta, 2);
	CHECK(access(tmp_path("a.mfr.tmp"), F_OK) != 0);

	/* byte-level concatenation of two streams is one valid input */
	size_t na, nb;
	uint8_t *da = load(a, &na), *db = load(b, &nb);
	uint8_t *cat = malloc(na + nb);
	memcpy(cat, da, na);
	memcpy(cat + na, db, nb);
	save(tmp_path("ab.mfr"), cat, na + nb);
	const char *pc[] = {tmp_path("ab.mfr")};
	CHECK_EQ_INT(read_all(pc, 1, &e, NULL), 65);

	/* an empty stream: header and end record */
	mfr_schema s = {.kind = MFR_KIND_FACE};
	mfr_writer *w = mfr_writer_open(tmp_path("empty.mfr"), &s, NULL, 0, NULL, 0, &e);
	CHECK(w && mfr_writer_close(w, &e) == 0);
	const char *pe[] = {tmp_path("empty.mfr")};
	CHECK_EQ_INT(read_all(pe, 1, &e, NULL), 0);

	/* a FACE stream and an EMBEDDING stream cannot be read as one */
	mfr_schema es = {.kind = MFR_KIND_EMBEDDING, .dim = 4, .dtype = MFR_DTYPE_F32};
	w = mfr_writer_open(tmp_path("emb.mfr"), &es, NULL, 0, NULL, 0, &e);
	CHECK(w && mfr_writer_close(w, &e) == 0);
	const char *mix[] = {a, tmp_path("emb.mfr")};
	CHECK(read_all(mix, 2, &e, NULL) == -1 && strstr(e.msg, "EMBEDDING"));

	/* index: entries point at the records, random access reads them */
	mfr_index ix;
	CHECK(mfr_index_load(a, &ix, &e) == 0);
	CHECK_EQ_INT(ix.count, 40);
	FILE *f = fopen(a, "rb");
	uint8_t *buf = NULL;
	size_t room = 0;
	int good = 1;
	for (uint64_t i = 0; i < ix.count; i++) {
		uint32_t size;
		mfr_face face;
		good &= mfr_read_at(f, a, ix.entries[i].offset, 0, &buf, &room, &size, &e) == 0 &&
			mfr_face_decode(buf, size, &face, &e) == 0 && face.id == i && ix.entries[i].id == i &&
			ix.entries[i].label == face.label && ix.entries[i].flags == face.flags;
	}
	CHECK(good);
	fclose(f);
	mfr_index_free(&ix);
	/* a rebuilt index is byte-identical to the one written alongside */
	size_t n1, n2;
	uint8_t *i1 = load(tmp_path("a.mfr.idx"), &n1);
	CHECK(mfr_index_build(a, &e) == 0);
	uint8_t *i2 = load(tmp_path("a.mfr.idx"), &n2);
	CHECK(n1 == n2 && memcmp(i1, i2, n1) == 0);
	/* stale: the stream changed size */
	save(a, cat, na + nb);
	CHECK(mfr_index_load(a, &ix, &e) == -1 && strstr(e.msg, "stale"));
	/* damaged index */
	save(a, da, na);
	i1[50] ^= 1;
	save(tmp_path("a.mfr.idx"), i1, n1);
	CHECK(mfr_index_load(a, &ix, &e) == -1 && strstr(e.msg, "corrupted"));
	free(i1);
	free(i2);
	free(buf);
	free(da);
	free(db);
	free(cat);
}

/* Truncation at every length and a flipped bit at every byte: always an
 * error naming a byte offset, never a crash, never a wrong record. */
static void test_damage(void)
{
	const char *a = tmp_path("d.mfr"), *t = tmp_path("t.mfr");
	write_faces(a, 0, 6, 0);
	size_t n;
	uint8_t *d = load(a, &n);
	const char *pt[] = {t};
	mfr_error e;
	int trunc_ok = 1, flip_ok = 1;
	for (size_t len = 0; len < n; len++) {
		save(t, d, len);
		long k = read_all(pt, 1, &e, NULL);
		int ok = k == -1 && (len == 0 ? strstr(e.msg, "empty") != NULL
					      : strstr(e.msg, "truncated") != NULL && strstr(e.msg, "at byte") != NULL);
		if (!ok && trunc_ok)
			fprintf(stderr, "truncated at %zu: %ld '%s'\n", len, k, e.msg);
		trunc_ok &= ok;
	}
	CHECK(trunc_ok);
	for (size_t i = 0; i < n; i++) {
		for (int bit = 0; bit < 8; bit += 3) {
			d[i] ^= (uint8_t)(1 << bit);
			save(t, d, n);
			long k = read_all(pt, 1, &e, NULL);
			int ok = k == -1 && strstr(e.msg, "byte") != NULL;
			if (!ok && flip_ok)
				fprintf(stderr, "flip at %zu bit %d: %ld '%s'\n", i, bit, k, e.msg);
			flip_ok &= ok;
			d[i] ^= (uint8_t)(1 << bit);
		}
	}
	CHECK(flip_ok);
	/* a stream cut at a record boundary lacks its end record */
	save(t, d, n - 24); /* the end frame is 12 + 8 + 4 bytes */
	CHECK(read_all(pt, 1, &e, NULL) == -1 && strstr(e.msg, "no end record"));
	/* trailing garbage after a complete stream */
	uint8_t *g = malloc(n + 3);
	memcpy(g, d, n);
	memcpy(g + n, "xyz", 3);
	save(t, g, n + 3);
	CHECK(read_all(pt, 1, &e, NULL) == -1 && strstr(e.msg, "after the end"));
	free(g);
	/* a foreign file gets a hint */
	uint8_t rec[8] = {0x0a, 0x23, 0xd7, 0xce, 0, 0, 0, 0};
	save(t, rec, 8);
	CHECK(read_all(pt, 1, &e, NULL) == -1 && strstr(e.msg, "RecordIO"));
	free(d);
}

/* A length field forged with a valid header checksum is refused by the cap
 * before any allocation. */
static void test_cap(void)
{
	const char *t = tmp_path("cap.mfr");
	write_faces(t, 0, 1, 0);
	size_t n;
	uint8_t *d = load(t, &n);
	/* the data frame follows the 20-byte header + 4 CRC and the metadata frame */
	size_t at = 24;
	at += 12 + mfr_get32(d + at) + 4;
	mfr_put32(d + at, 0x7fffffff);
	mfr_put32(d + at + 8, mfr_masked_crc(d + at, 8));
	save(t, d, n);
	const char *pt[] = {t};
	mfr_error e;
	CHECK(read_all(pt, 1, &e, NULL) == -1 && strstr(e.msg, "cap"));
	free(d);
}

static void test_records(void)
{
	uint8_t img[50], buf[200];
	mfr_face f, g;
	mfr_error e;
	make_face(&f, img, 3, 50);
	mfr_face_encode(&f, buf);
	CHECK(mfr_face_decode(buf, mfr_face_size(&f), &g, &e) == 0);
	CHECK(g.id == 3 && g.label == f.label && g.flags == f.flags && g.image_size == 50);
	CHECK(mfr_face_decode(buf, 63, &g, &e) == -1);
	mfr_put32(buf + 12, 0x80000000u);
	CHECK(mfr_face_decode(buf, mfr_face_size(&f), &g, &e) == -1 && strstr(e.msg, "reserved"));
	mfr_put32(buf + 12, 2u << 1); /* style without the masked bit */
	CHECK(mfr_face_decode(buf, mfr_face_size(&f), &g, &e) == -1 && strstr(e.msg, "style"));
	mfr_face_encode(&f, buf);
	buf[21] = 7;
	CHECK(mfr_face_decode(buf, mfr_face_size(&f), &g, &e) == -1 && strstr(e.msg, "encoding"));
	mfr_face_encode(&f, buf);
	mfr_put32(buf + 8, (uint32_t)-5);
	CHECK(mfr_face_decode(buf, mfr_face_size(&f), &g, &e) == -1 && strstr(e.msg, "label"));
	/* raw payload must match width*height*channels */
	f = (mfr_face){.id = 1, .label = -1, .width = 5, .height = 2, .channels = 1, .encoding = MFR_ENC_RAW,
		       .image = img, .image_size = 10};
	mfr_face_encode(&f, buf);
	CHECK(mfr_face_decode(buf, mfr_face_size(&f), &g, &e) == 0 && g.label == -1);
	CHECK(mfr_face_decode(buf, mfr_face_size(&f) - 1, &g, &e) == -1);

	mfr_schema s32 = {MFR_KIND_EMBEDDING, 5, MFR_DTYPE_F32}, s16 = {MFR_KIND_EMBEDDING, 5, MFR_DTYPE_F16};
	float v[5] = {0.5f, -1.25f, 3.0f, 0.0f, 100.0f}, out[5];
	mfr_embedding em = {.id = 9, .label = 2, .flags = MFR_F_MASKED, .vec = v}, got = {.vec = out};
	CHECK(mfr_embedding_size(&s32) == 36 && mfr_embedding_size(&s16) == 26);
	mfr_embedding_encode(&em, &s32, buf);
	CHECK(mfr_embedding_decode(buf, 36, &s32, &got, &e) == 0 && got.id == 9 && memcmp(v, out, sizeof v) == 0);
	CHECK(mfr_embedding_decode(buf, 35, &s32, &got, &e) == -1);
	mfr_embedding_encode(&em, &s16, buf);
	CHECK(mfr_embedding_decode(buf, 26, &s16, &got, &e) == 0 && memcmp(v, out, sizeof v) == 0);
	mfr_putf32(buf + 16, 0.0f / 0.0f);
	CHECK(mfr_embedding_decode(buf, 36, &s32, &got, &e) == -1);
}

static void test_map(void)
{
	mfr_map m;
	mfr_map_init(&m);
	mfr_error e;
	CHECK(mfr_map_get(&m, 5) == NULL);
	int ins, ok = 1;
	for (uint64_t k = 0; k < 10000; k++)
		*mfr_map_put(&m, k * 7919, &ins, &e) = k;
	for (uint64_t k = 0; k < 10000; k++)
		ok &= mfr_map_get(&m, k * 7919) && *mfr_map_get(&m, k * 7919) == k;
	CHECK(ok && m.n == 10000 && mfr_map_get(&m, 3) == NULL);
	mfr_map_put(&m, 7919, &ins, &e);
	CHECK(ins == 0);
	size_t pos = 0, seen = 0;
	uint64_t key, val;
	while (mfr_map_next(&m, &pos, &key, &val))
		seen++;
	CHECK(seen == 10000);
	mfr_map_free(&m);
}

int main(void)
{
	if (!mkdtemp(dir)) {
		perror("mkdtemp");
		return 1;
	}
	test_crc();
	test_half();
	test_records();
	test_map();
	test_roundtrip();
	test_damage();
	test_cap();
	char cmd[600];
	snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
	if (system(cmd) != 0)
		fprintf(stderr, "cannot remove %s\n", dir);
	return check_done();
}
