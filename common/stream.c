/* stream.c — reading and writing record streams (data-formats.md, "Record
 * streams"), and their sidecar index. Frames only: payloads are record.c's.
 *
 * The reader pulls from stdio with a large buffer; every length is checked by
 * the frame-header checksum before it is trusted and against the cap before
 * anything is allocated from it. */
#include "stream.h" /* defines: mfr_reader_*, mfr_writer_*, mfr_index_* */

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "crc32c.h" /* defines: mfr_crc32c */
#include "record.h" /* defines: mfr_record_ids */

static const uint8_t STREAM_MAGIC[8] = {0x89, 'M', 'F', 'R', '\r', '\n', 0x1a, '\n'};
static const uint8_t INDEX_MAGIC[8] = {0x89, 'M', 'F', 'I', '\r', '\n', 0x1a, '\n'};
#define VERSION 1
#define HEADER_FIXED 20 /* magic, version, kind, flags, schema size */
#define FRAME_HEAD 12   /* length, type, reserved, header checksum */
#define INDEX_HEAD 40
#define INDEX_ENTRY 24

uint32_t mfr_masked_crc(const void *data, size_t n)
{
	uint32_t c = mfr_crc32c(0, data, n);
	/* rotate and add a constant, as TFRecord does: a CRC over bytes that
	 * contain CRCs is otherwise prone to trivial collisions */
	return ((c >> 15) | (c << 17)) + 0xa282ead8u;
}

const char *mfr_kind_name(int kind)
{
	return kind == MFR_KIND_FACE ? "FACE" : kind == MFR_KIND_EMBEDDING ? "EMBEDDING" : "unknown";
}

static uint32_t schema_size(int kind) { return kind == MFR_KIND_EMBEDDING ? 8 : 0; }

/* ---- header coding, shared by reader and writer ---- */

static size_t header_encode(const mfr_schema *s, uint8_t *out)
{
	uint32_t ss = schema_size(s->kind);
	memcpy(out, STREAM_MAGIC, 8);
	mfr_put16(out + 8, VERSION);
	mfr_put16(out + 10, s->kind);
	mfr_put32(out + 12, 0);
	mfr_put32(out + 16, ss);
	if (s->kind == MFR_KIND_EMBEDDING) {
		mfr_put32(out + 20, s->dim);
		mfr_put16(out + 24, s->dtype);
		mfr_put16(out + 26, 0);
	}
	mfr_put32(out + HEADER_FIXED + ss, mfr_masked_crc(out, HEADER_FIXED + ss));
	return HEADER_FIXED + ss + 4;
}

static int schema_check(const mfr_schema *s, mfr_error *e)
{
	if (s->kind == MFR_KIND_FACE) {
		if (s->dim || s->dtype)
			return mfr_fail(e, "FACE schema takes no dimension or dtype");
		return 0;
	}
	if (s->kind != MFR_KIND_EMBEDDING)
		return mfr_fail(e, "unknown record kind %u", s->kind);
	if (s->dim < 1 || s->dim > 65536)
		return mfr_fail(e, "embedding dimension %u out of range 1..65536", s->dim);
	if (s->dtype != MFR_DTYPE_F32 && s->dtype != MFR_DTYPE_F16)
		return mfr_fail(e, "unknown embedding dtype %u", s->dtype);
	return 0;
}

/* ---- reader ---- */

struct mfr_reader {
	const char *const *paths;
	int npaths, cur;
	FILE *f, *given; /* given: a FILE from mfr_reader_open_file, never closed */
	const char *name; /* display name of the current file */
	const char *given_name;
	uint64_t pos;     /* bytes consumed in the current file */
	uint64_t file_records, stream_records, total;
	int in_stream;    /* 1 between a header and its end record */
	int have_schema;
	mfr_schema schema;
	uint32_t cap;
	int want_meta;
	uint8_t *buf;
	size_t room;
	char *iobuf;
};

/* Reads exactly n bytes; returns n, or fewer at end of file (0 = clean EOF
 * at this point), or -1 on an I/O error (e filled). */
static long read_full(mfr_reader *r, void *dst, size_t n, mfr_error *e)
{
	size_t got = fread(dst, 1, n, r->f);
	if (got < n && ferror(r->f))
		return mfr_fail(e, "'%s': read error at byte %llu: %s", r->name,
				(unsigned long long)(r->pos + got), strerror(errno));
	r->pos += got;
	return (long)got;
}

static int open_file(mfr_reader *r, mfr_error *e)
{
	const char *p = r->npaths ? r->paths[r->cur] : "-";
	if (r->given) {
		r->f = r->given;
		r->name = r->given_name;
	} else if (strcmp(p, "-") == 0) {
		r->f = stdin;
		r->name = "<stdin>";
	} else {
		r->f = fopen(p, "rb");
		r->name = p;
		if (!r->f)
			return mfr_fail(e, "'%s': %s", p, strerror(errno));
	}
	if (!r->iobuf)
		r->iobuf = mfr_malloc(1 << 20, e);
	if (!r->iobuf)
		return -1;
	setvbuf(r->f, r->iobuf, _IOFBF, 1 << 20);
	r->pos = 0;
	r->file_records = 0;
	return 0;
}

static void close_file(mfr_reader *r)
{
	if (r->f && r->f != stdin && r->f != r->given)
		fclose(r->f);
	r->f = NULL;
}

/* A hint for inputs that are another format mfr-pack reads. */
static const char *foreign_hint(const uint8_t *b, long n)
{
	if (n >= 4 && mfr_get32(b) == 0xced7230au)
		return " (this is RecordIO: import it with mfr-pack)";
	if (n >= 3 && b[0] == 0xff && b[1] == 0xd8 && b[2] == 0xff)
		return " (this is a JPEG image: pack images with mfr-pack)";
	if (n >= 2 && b[0] == 0x80 && b[1] >= 2 && b[1] <= 5)
		return " (this looks like a pickle .bin pack: import it with mfr-pack)";
	if (n >= 8 && memcmp(b, INDEX_MAGIC, 8) == 0)
		return " (this is an mfr index, not a stream)";
	return "";
}

/* Reads a stream header at the current position; the first 8 bytes (magic)
 * have already been read into m. */
static int read_header(mfr_reader *r, const uint8_t *m, mfr_error *e)
{
	uint8_t h[HEADER_FIXED + 8 + 4];
	uint64_t at = r->pos - 8;
	memcpy(h, m, 8);
	long got = read_full(r, h + 8, HEADER_FIXED - 8, e);
	if (got < 0)
		return -1;
	if (got < HEADER_FIXED - 8)
		return mfr_fail(e, "'%s': truncated stream header at byte %llu", r->name, (unsigned long long)at);
	uint16_t version = mfr_get16(h + 8);
	mfr_schema s = {.kind = mfr_get16(h + 10)};
	uint32_t flags = mfr_get32(h + 12), ss = mfr_get32(h + 16);
	/* the schema size is fixed by the kind; anything else means the
	 * header is damaged (or of a kind this version does not know) */
	if (ss != schema_size(s.kind) || (s.kind != MFR_KIND_FACE && s.kind != MFR_KIND_EMBEDDING))
		return mfr_fail(e, "'%s': corrupted stream header at byte %llu (kind %u with schema size %u)",
				r->name, (unsigned long long)at, s.kind, ss);
	got = read_full(r, h + HEADER_FIXED, ss + 4, e);
	if (got < 0)
		return -1;
	if (got < (long)ss + 4)
		return mfr_fail(e, "'%s': truncated stream header at byte %llu", r->name, (unsigned long long)at);
	if (mfr_get32(h + HEADER_FIXED + ss) != mfr_masked_crc(h, HEADER_FIXED + ss))
		return mfr_fail(e, "'%s': corrupted stream header at byte %llu (checksum)", r->name,
				(unsigned long long)at);
	if (version != VERSION)
		return mfr_fail(e, "'%s': unsupported stream version %u at byte %llu (this is version %d)",
				r->name, version, (unsigned long long)at + 8, VERSION);
	if (flags)
		return mfr_fail(e, "'%s': reserved header flags 0x%08x set at byte %llu", r->name, flags,
				(unsigned long long)at + 12);
	if (s.kind == MFR_KIND_EMBEDDING) {
		s.dim = mfr_get32(h + 20);
		s.dtype = mfr_get16(h + 24);
		if (mfr_get16(h + 26))
			return mfr_fail(e, "'%s': reserved schema field set at byte %llu", r->name,
					(unsigned long long)at + 26);
	}
	mfr_error se;
	if (schema_check(&s, &se) < 0)
		return mfr_fail(e, "'%s': %s at byte %llu", r->name, se.msg, (unsigned long long)at);
	if (!r->have_schema) {
		r->schema = s;
		r->have_schema = 1;
	} else if (s.kind != r->schema.kind || s.dim != r->schema.dim || s.dtype != r->schema.dtype)
		return mfr_fail(e, "'%s': stream at byte %llu is %s (dim %u) but earlier input is %s (dim %u)",
				r->name, (unsigned long long)at, mfr_kind_name(s.kind), s.dim,
				mfr_kind_name(r->schema.kind), r->schema.dim);
	r->in_stream = 1;
	r->stream_records = 0;
	return 0;
}

/* Positions the reader at the next stream header, opening the next file when
 * the current one ends cleanly. Returns 1 when a header was read, 0 at the
 * end of all input, -1 on error. */
static int next_stream(mfr_reader *r, mfr_error *e)
{
	for (;;) {
		if (!r->f) {
			if (r->cur >= (r->npaths ? r->npaths : 1))
				return 0;
			if (open_file(r, e) < 0)
				return -1;
		}
		uint8_t m[8];
		uint64_t at = r->pos;
		long got = read_full(r, m, 8, e);
		if (got < 0)
			return -1;
		if (got == 0) {
			if (at == 0)
				return mfr_fail(e, "'%s': empty input, not a record stream", r->name);
			close_file(r);
			r->cur++;
			continue;
		}
		if (got < 8 && memcmp(m, STREAM_MAGIC, (size_t)got) == 0)
			return mfr_fail(e, "'%s': truncated stream header at byte %llu", r->name, (unsigned long long)at);
		if (got < 8 || memcmp(m, STREAM_MAGIC, 8) != 0) {
			if (at == 0)
				return mfr_fail(e, "'%s': not an mfr record stream (bad magic at byte 0)%s",
						r->name, foreign_hint(m, got));
			return mfr_fail(e, "'%s': unexpected bytes after the end of a stream at byte %llu",
					r->name, (unsigned long long)at);
		}
		return read_header(r, m, e) < 0 ? -1 : 1;
	}
}

static mfr_reader *reader_new(const char *const *paths, int n, FILE *given, const char *name, uint32_t cap,
			      int want_meta, mfr_error *e)
{
	mfr_reader *r = calloc(1, sizeof *r);
	if (!r) {
		mfr_fail(e, "out of memory");
		return NULL;
	}
	r->given = given;
	r->given_name = name;
	r->paths = paths;
	r->npaths = paths ? n : 0;
	r->cap = cap ? cap : MFR_DEFAULT_CAP;
	if (r->cap > MFR_MAX_RECORD)
		r->cap = MFR_MAX_RECORD;
	r->want_meta = want_meta;
	if (next_stream(r, e) <= 0) {
		if (!r->have_schema && e && !e->msg[0])
			mfr_fail(e, "no input");
		mfr_reader_close(r);
		return NULL;
	}
	return r;
}

mfr_reader *mfr_reader_open(const char *const *paths, int n, uint32_t cap, int want_meta, mfr_error *e)
{
	return reader_new(paths, n, NULL, NULL, cap, want_meta, e);
}

mfr_reader *mfr_reader_open_file(FILE *f, const char *name, uint32_t cap, int want_meta, mfr_error *e)
{
	return reader_new(NULL, 0, f, name, cap, want_meta, e);
}

const mfr_schema *mfr_reader_schema(const mfr_reader *r) { return &r->schema; }
uint64_t mfr_reader_count(const mfr_reader *r) { return r->total; }

int mfr_reader_next(mfr_reader *r, mfr_record *rec, mfr_error *e)
{
	for (;;) {
		if (!r->in_stream) {
			int k = next_stream(r, e);
			if (k <= 0)
				return k;
		}
		uint8_t h[FRAME_HEAD];
		uint64_t at = r->pos;
		unsigned long long num = (unsigned long long)r->file_records;
		long got = read_full(r, h, FRAME_HEAD, e);
		if (got < 0)
			return -1;
		if (got == 0)
			return mfr_fail(e, "'%s': truncated stream: no end record after %llu records, at byte %llu",
					r->name, num, (unsigned long long)at);
		if (got >= 8 && memcmp(h, STREAM_MAGIC, 8) == 0)
			return mfr_fail(e, "'%s': truncated stream: a new stream starts at byte %llu before the "
					"end record of the previous one", r->name, (unsigned long long)at);
		if (got < FRAME_HEAD)
			return mfr_fail(e, "'%s': truncated record %llu at byte %llu", r->name, num,
					(unsigned long long)at);
		if (mfr_get32(h + 8) != mfr_masked_crc(h, 8))
			return mfr_fail(e, "'%s': corrupted record %llu at byte %llu (frame header checksum)",
					r->name, num, (unsigned long long)at);
		uint32_t len = mfr_get32(h);
		uint16_t type = mfr_get16(h + 4);
		if (mfr_get16(h + 6))
			return mfr_fail(e, "'%s': record %llu at byte %llu has reserved bits set", r->name, num,
					(unsigned long long)at);
		if (len > r->cap)
			return mfr_fail(e, "'%s': record %llu at byte %llu is %u bytes, over the %u-byte cap",
					r->name, num, (unsigned long long)at, len, r->cap);
		if (type != MFR_REC_DATA && type != MFR_REC_END && !(type & 0x8000))
			return mfr_fail(e, "'%s': unknown record type 0x%04x at byte %llu", r->name, type,
					(unsigned long long)at);
		if (len + (size_t)4 > r->room) {
			size_t room = len + (size_t)4 + (len >> 2);
			uint8_t *nb = mfr_realloc(r->buf, room, e);
			if (!nb)
				return -1;
			r->buf = nb;
			r->room = room;
		}
		got = read_full(r, r->buf, len + (size_t)4, e);
		if (got < 0)
			return -1;
		if ((size_t)got < len + (size_t)4)
			return mfr_fail(e, "'%s': truncated record %llu at byte %llu", r->name, num,
					(unsigned long long)at);
		if (mfr_get32(r->buf + len) != mfr_masked_crc(r->buf, len))
			return mfr_fail(e, "'%s': corrupted record %llu at byte %llu (payload checksum)", r->name,
					num, (unsigned long long)at);
		if (type == MFR_REC_END) {
			if (len != 8 || mfr_get64(r->buf) != r->stream_records)
				return mfr_fail(e, "'%s': corrupted end record at byte %llu (it counts %llu records, "
						"the stream had %llu)", r->name, (unsigned long long)at,
						len == 8 ? (unsigned long long)mfr_get64(r->buf) : 0ull,
						(unsigned long long)r->stream_records);
			r->in_stream = 0;
			continue;
		}
		if (type != MFR_REC_DATA && !(type == MFR_REC_META && r->want_meta))
			continue; /* ancillary and unwanted */
		rec->type = type;
		rec->data = r->buf;
		rec->size = len;
		rec->offset = at;
		rec->number = r->file_records;
		rec->path = r->name;
		if (type == MFR_REC_DATA) {
			r->file_records++;
			r->stream_records++;
			r->total++;
		}
		return 1;
	}
}

void mfr_reader_close(mfr_reader *r)
{
	if (!r)
		return;
	close_file(r);
	free(r->buf);
	free(r->iobuf);
	free(r);
}

/* ---- writer ---- */

struct mfr_writer {
	FILE *f;
	char *path, *tmp; /* NULL for stdout */
	FILE *ix;         /* index entries, written to PATH.idx.tmp */
	char *ixtmp;
	mfr_schema schema;
	uint64_t pos, count;
	uint32_t ix_crc; /* running CRC32C of the index entries */
	int failed;
};

static int put_frame(mfr_writer *w, uint16_t type, const void *data, uint32_t size, mfr_error *e)
{
	uint8_t h[FRAME_HEAD], t[4];
	mfr_put32(h, size);
	mfr_put16(h + 4, type);
	mfr_put16(h + 6, 0);
	mfr_put32(h + 8, mfr_masked_crc(h, 8));
	mfr_put32(t, mfr_masked_crc(data, size));
	if (fwrite(h, 1, FRAME_HEAD, w->f) != FRAME_HEAD || (size && fwrite(data, 1, size, w->f) != size) ||
	    fwrite(t, 1, 4, w->f) != 4) {
		w->failed = 1;
		return mfr_fail(e, "'%s': write error: %s", w->path ? w->path : "<stdout>", strerror(errno));
	}
	w->pos += FRAME_HEAD + (uint64_t)size + 4;
	return 0;
}

/* Appends `s` to the metadata text, escaping tab, newline and backslash. */
static size_t meta_escape(char *out, const char *s)
{
	size_t n = 0;
	for (; *s; s++) {
		char c = *s;
		if (c == '\t' || c == '\n' || c == '\\' || c == '\r') {
			if (out) {
				out[n] = '\\';
				out[n + 1] = c == '\t' ? 't' : c == '\n' ? 'n' : c == '\r' ? 'r' : '\\';
			}
			n += 2;
		} else {
			if (out)
				out[n] = c;
			n++;
		}
	}
	return n;
}

static int put_provenance(mfr_writer *w, const char *tool, int argc, char *const *argv, mfr_error *e)
{
	/* two passes: measure, then fill */
	char *text = NULL;
	size_t n = 0;
	for (int pass = 0; pass < 2; pass++) {
		size_t k = 0;
#define EMIT(lit) do { size_t l_ = strlen(lit); if (text) memcpy(text + k, lit, l_); k += l_; } while (0)
		EMIT("tool\t");
		k += meta_escape(text ? text + k : NULL, tool);
		EMIT("\nversion\t" MFR_VERSION "\n");
		for (int i = 1; i < argc; i++) {
			EMIT("arg\t");
			k += meta_escape(text ? text + k : NULL, argv[i]);
			EMIT("\n");
		}
#undef EMIT
		if (!pass) {
			n = k;
			if (n > MFR_MAX_RECORD)
				return mfr_fail(e, "arguments too long for the metadata record");
			text = mfr_malloc(n, e);
			if (!text)
				return -1;
		}
	}
	int rc = put_frame(w, MFR_REC_META, text, (uint32_t)n, e);
	free(text);
	return rc;
}

static char *concat(const char *a, const char *b, mfr_error *e)
{
	size_t la = strlen(a), lb = strlen(b);
	char *s = mfr_malloc(la + lb + 1, e);
	if (s) {
		memcpy(s, a, la);
		memcpy(s + la, b, lb + 1);
	}
	return s;
}

mfr_writer *mfr_writer_open(const char *path, const mfr_schema *s, const char *tool, int argc,
			    char *const *argv, int with_index, mfr_error *e)
{
	mfr_error se;
	if (schema_check(s, &se) < 0) {
		mfr_fail(e, "%s", se.msg);
		return NULL;
	}
	mfr_writer *w = calloc(1, sizeof *w);
	if (!w) {
		mfr_fail(e, "out of memory");
		return NULL;
	}
	w->schema = *s;
	if (!path || strcmp(path, "-") == 0) {
		if (isatty(STDOUT_FILENO)) {
			mfr_fail(e, "stdout is a terminal: refusing to write binary records (use -o FILE or a pipe)");
			free(w);
			return NULL;
		}
		if (with_index) {
			mfr_fail(e, "an index needs a named output file (-o FILE)");
			free(w);
			return NULL;
		}
		w->f = stdout;
	} else {
		int special = mfr_path_special(path);
		if (special && with_index) {
			mfr_fail(e, "'%s': an index needs a regular output file", path);
			free(w);
			return NULL;
		}
		if (!(w->path = concat(path, "", e)) || (!special && !(w->tmp = concat(path, ".tmp", e))))
			goto fail;
		if (special) /* a device or FIFO: written in place, never renamed over */
			w->f = fopen(path, "wb");
		else
			w->f = fopen(w->tmp, "wb");
		if (!w->f || (w->tmp && mfr_temp_register(w->tmp, e) < 0)) {
			mfr_fail(e, "'%s': %s", w->tmp ? w->tmp : path, strerror(errno));
			goto fail;
		}
		if (with_index) {
			if (!(w->ixtmp = concat(path, ".idx.tmp", e)))
				goto fail;
			w->ix = fopen(w->ixtmp, "wb");
			uint8_t zero[INDEX_HEAD] = {0};
			if (!w->ix || mfr_temp_register(w->ixtmp, e) < 0 || fwrite(zero, 1, INDEX_HEAD, w->ix) != INDEX_HEAD) {
				mfr_fail(e, "'%s': %s", w->ixtmp, strerror(errno));
				goto fail;
			}
		}
	}
	uint8_t h[HEADER_FIXED + 8 + 4];
	size_t hn = header_encode(s, h);
	if (fwrite(h, 1, hn, w->f) != hn) {
		mfr_fail(e, "'%s': write error: %s", w->path ? w->path : "<stdout>", strerror(errno));
		goto fail;
	}
	w->pos = hn;
	if (tool && put_provenance(w, tool, argc, argv, e) < 0)
		goto fail;
	return w;
fail:
	mfr_writer_abort(w);
	return NULL;
}

int mfr_writer_put(mfr_writer *w, uint16_t type, const void *data, uint32_t size, mfr_error *e)
{
	if (size > MFR_MAX_RECORD)
		return mfr_fail(e, "record of %u bytes is over the format's %u-byte limit", size, MFR_MAX_RECORD);
	if (type != MFR_REC_DATA && type != MFR_REC_META)
		return mfr_fail(e, "writer: record type 0x%04x cannot be written directly", type);
	if (type == MFR_REC_DATA && w->ix) {
		uint8_t ent[INDEX_ENTRY];
		uint64_t id;
		int32_t label;
		uint32_t flags;
		if (mfr_record_ids(data, size, &id, &label, &flags, e) < 0)
			return -1;
		mfr_put64(ent, w->pos);
		mfr_put64(ent + 8, id);
		mfr_put32(ent + 16, (uint32_t)label);
		mfr_put32(ent + 20, flags);
		w->ix_crc = mfr_crc32c(w->ix_crc, ent, INDEX_ENTRY);
		if (fwrite(ent, 1, INDEX_ENTRY, w->ix) != INDEX_ENTRY) {
			w->failed = 1;
			return mfr_fail(e, "'%s': write error: %s", w->ixtmp, strerror(errno));
		}
	}
	if (put_frame(w, type, data, size, e) < 0)
		return -1;
	if (type == MFR_REC_DATA)
		w->count++;
	return 0;
}

uint64_t mfr_writer_count(const mfr_writer *w) { return w->count; }

static void index_header(uint8_t *h, const mfr_schema *s, uint64_t stream_size, uint64_t count, uint32_t ecrc)
{
	memcpy(h, INDEX_MAGIC, 8);
	mfr_put16(h + 8, VERSION);
	mfr_put16(h + 10, s->kind);
	mfr_put32(h + 12, 0);
	mfr_put64(h + 16, stream_size);
	mfr_put64(h + 24, count);
	mfr_put32(h + 32, ecrc);
	mfr_put32(h + 36, mfr_masked_crc(h, 36));
}

int mfr_writer_close(mfr_writer *w, mfr_error *e)
{
	uint8_t cnt[8];
	mfr_put64(cnt, w->count);
	if (put_frame(w, MFR_REC_END, cnt, 8, e) < 0)
		goto fail;
	if (w->f == stdout) {
		if (fflush(stdout) != 0) {
			mfr_fail(e, "'<stdout>': write error: %s", strerror(errno));
			goto fail;
		}
		free(w);
		return 0;
	}
	/* fsync before the rename makes the file whole on disk when it appears;
	 * a device or FIFO written in place has nothing to sync (EINVAL) */
	if (fflush(w->f) != 0 || ferror(w->f) || (w->tmp && fsync(fileno(w->f)) != 0)) {
		mfr_fail(e, "'%s': write error: %s", w->path, strerror(errno));
		goto fail;
	}
	int rc = fclose(w->f);
	w->f = NULL;
	if (rc != 0) {
		mfr_fail(e, "'%s': write error: %s", w->path, strerror(errno));
		goto fail;
	}
	if (w->ix) {
		uint8_t h[INDEX_HEAD];
		index_header(h, &w->schema, w->pos, w->count, w->ix_crc);
		if (fseek(w->ix, 0, SEEK_SET) != 0 || fwrite(h, 1, INDEX_HEAD, w->ix) != INDEX_HEAD ||
		    fflush(w->ix) != 0) {
			mfr_fail(e, "'%s': write error: %s", w->ixtmp, strerror(errno));
			goto fail;
		}
		rc = fclose(w->ix);
		w->ix = NULL;
		if (rc != 0) {
			mfr_fail(e, "'%s': write error: %s", w->ixtmp, strerror(errno));
			goto fail;
		}
	}
	if (w->tmp && rename(w->tmp, w->path) != 0) {
		mfr_fail(e, "'%s': cannot rename into place: %s", w->path, strerror(errno));
		goto fail;
	}
	if (w->tmp)
		mfr_temp_forget(w->tmp);
	if (w->ixtmp) {
		char *ixpath = concat(w->path, ".idx", e);
		if (!ixpath || rename(w->ixtmp, ixpath) != 0) {
			if (ixpath)
				mfr_fail(e, "'%s': cannot rename into place: %s", ixpath, strerror(errno));
			free(ixpath);
			remove(w->ixtmp);
			mfr_temp_forget(w->ixtmp);
			free(w->ixtmp);
			free(w->path);
			free(w->tmp);
			free(w);
			return -1;
		}
		free(ixpath);
		mfr_temp_forget(w->ixtmp);
	}
	free(w->ixtmp);
	free(w->path);
	free(w->tmp);
	free(w);
	return 0;
fail:
	mfr_writer_abort(w);
	return -1;
}

void mfr_writer_abort(mfr_writer *w)
{
	if (!w)
		return;
	if (w->f && w->f != stdout)
		fclose(w->f);
	else if (w->f == stdout)
		fflush(stdout);
	if (w->tmp) {
		remove(w->tmp);
		mfr_temp_forget(w->tmp);
	}
	if (w->ix)
		fclose(w->ix);
	if (w->ixtmp) {
		remove(w->ixtmp);
		mfr_temp_forget(w->ixtmp);
	}
	free(w->ixtmp);
	free(w->path);
	free(w->tmp);
	free(w);
}

/* ---- index ---- */

static int file_size(const char *path, uint64_t *size, mfr_error *e)
{
	FILE *s = fopen(path, "rb");
	if (!s)
		return mfr_fail(e, "'%s': %s", path, strerror(errno));
	int rc = fseeko(s, 0, SEEK_END);
	off_t end = ftello(s);
	fclose(s);
	if (rc != 0 || end < 0)
		return mfr_fail(e, "'%s': cannot find its size: %s", path, strerror(errno));
	*size = (uint64_t)end;
	return 0;
}

int mfr_read_at(FILE *f, const char *path, uint64_t offset, uint32_t cap, uint8_t **buf, size_t *room,
		uint32_t *size, mfr_error *e)
{
	uint8_t h[FRAME_HEAD];
	if (!cap || cap > MFR_MAX_RECORD)
		cap = MFR_MAX_RECORD;
	if (fseeko(f, (off_t)offset, SEEK_SET) != 0)
		return mfr_fail(e, "'%s': cannot seek to byte %llu: %s", path, (unsigned long long)offset,
				strerror(errno));
	if (fread(h, 1, FRAME_HEAD, f) != FRAME_HEAD)
		return mfr_fail(e, "'%s': truncated record at byte %llu", path, (unsigned long long)offset);
	if (mfr_get32(h + 8) != mfr_masked_crc(h, 8))
		return mfr_fail(e, "'%s': corrupted record at byte %llu (frame header checksum)", path,
				(unsigned long long)offset);
	uint32_t len = mfr_get32(h);
	if (mfr_get16(h + 4) != MFR_REC_DATA || mfr_get16(h + 6))
		return mfr_fail(e, "'%s': no data record at byte %llu (stale index?)", path,
				(unsigned long long)offset);
	if (len > cap)
		return mfr_fail(e, "'%s': record at byte %llu is %u bytes, over the %u-byte cap", path,
				(unsigned long long)offset, len, cap);
	if (len + (size_t)4 > *room) {
		uint8_t *nb = mfr_realloc(*buf, len + (size_t)4, e);
		if (!nb)
			return -1;
		*buf = nb;
		*room = len + (size_t)4;
	}
	if (fread(*buf, 1, len + (size_t)4, f) != len + (size_t)4)
		return mfr_fail(e, "'%s': truncated record at byte %llu", path, (unsigned long long)offset);
	if (mfr_get32(*buf + len) != mfr_masked_crc(*buf, len))
		return mfr_fail(e, "'%s': corrupted record at byte %llu (payload checksum)", path,
				(unsigned long long)offset);
	*size = len;
	return 0;
}

int mfr_index_load(const char *stream_path, mfr_index *ix, mfr_error *e)
{
	memset(ix, 0, sizeof *ix);
	char *p = concat(stream_path, ".idx", e);
	if (!p)
		return -1;
	FILE *f = fopen(p, "rb");
	uint8_t h[INDEX_HEAD];
	int rc = -1;
	if (!f) {
		mfr_fail(e, "'%s': %s (build it with mfr-cat --index)", p, strerror(errno));
		goto out;
	}
	if (fread(h, 1, INDEX_HEAD, f) != INDEX_HEAD || memcmp(h, INDEX_MAGIC, 8) != 0) {
		mfr_fail(e, "'%s': not an mfr index (bad magic or truncated header at byte 0)", p);
		goto out;
	}
	if (mfr_get32(h + 36) != mfr_masked_crc(h, 36)) {
		mfr_fail(e, "'%s': corrupted index header at byte 0 (checksum)", p);
		goto out;
	}
	if (mfr_get16(h + 8) != VERSION || mfr_get32(h + 12)) {
		mfr_fail(e, "'%s': unsupported index version or reserved bits at byte 8", p);
		goto out;
	}
	ix->schema.kind = mfr_get16(h + 10);
	ix->stream_size = mfr_get64(h + 16);
	ix->count = mfr_get64(h + 24);
	uint64_t size;
	if (file_size(stream_path, &size, e) < 0)
		goto out;
	if (size != ix->stream_size) {
		mfr_fail(e, "'%s': stale index: it describes %llu bytes but the stream has %llu (rebuild it "
			 "with mfr-cat --index)", p, (unsigned long long)ix->stream_size, (unsigned long long)size);
		goto out;
	}
	/* each entry takes at least one 16-byte frame plus a 16-byte payload */
	if (ix->count > size / 32) {
		mfr_fail(e, "'%s': corrupted index: %llu entries cannot fit a %llu-byte stream", p,
			 (unsigned long long)ix->count, (unsigned long long)size);
		goto out;
	}
	size_t bytes = (size_t)ix->count * INDEX_ENTRY;
	uint8_t *raw = mfr_malloc(bytes, e);
	ix->entries = mfr_malloc((size_t)ix->count * sizeof *ix->entries, e);
	if (!raw || !ix->entries) {
		free(raw);
		goto out;
	}
	if (fread(raw, 1, bytes, f) != bytes) {
		mfr_fail(e, "'%s': truncated index at byte %llu", p, (unsigned long long)INDEX_HEAD);
		free(raw);
		goto out;
	}
	if (mfr_crc32c(0, raw, bytes) != mfr_get32(h + 32)) {
		mfr_fail(e, "'%s': corrupted index entries (checksum)", p);
		free(raw);
		goto out;
	}
	for (uint64_t i = 0; i < ix->count; i++) {
		const uint8_t *q = raw + i * INDEX_ENTRY;
		ix->entries[i] = (mfr_index_entry){mfr_get64(q), mfr_get64(q + 8), (int32_t)mfr_get32(q + 16),
						   mfr_get32(q + 20)};
	}
	free(raw);
	rc = 0;
out:
	if (f)
		fclose(f);
	free(p);
	if (rc)
		mfr_index_free(ix);
	return rc;
}

void mfr_index_free(mfr_index *ix)
{
	free(ix->entries);
	memset(ix, 0, sizeof *ix);
}

int mfr_index_build(const char *stream_path, mfr_error *e)
{
	const char *paths[1] = {stream_path};
	mfr_reader *r = mfr_reader_open(paths, 1, 0, 0, e);
	if (!r)
		return -1;
	char *p = concat(stream_path, ".idx", e), *tmp = concat(stream_path, ".idx.tmp", e);
	FILE *f = p && tmp ? fopen(tmp, "wb") : NULL;
	if (f && mfr_temp_register(tmp, e) < 0) {
		fclose(f);
		f = NULL;
	}
	uint8_t h[INDEX_HEAD] = {0}, ent[INDEX_ENTRY];
	uint32_t crc = 0;
	uint64_t n = 0;
	int k, rc = -1;
	mfr_record rec;
	if (!f) {
		if (p && tmp)
			mfr_fail(e, "'%s': %s", tmp, strerror(errno));
		goto out;
	}
	if (fwrite(h, 1, INDEX_HEAD, f) != INDEX_HEAD)
		goto werr;
	while ((k = mfr_reader_next(r, &rec, e)) == 1) {
		uint64_t id;
		int32_t label;
		uint32_t flags;
		mfr_error re;
		if (mfr_record_ids(rec.data, rec.size, &id, &label, &flags, &re) < 0) {
			mfr_fail(e, "'%s': record %llu at byte %llu: %s", rec.path, (unsigned long long)rec.number,
				 (unsigned long long)rec.offset, re.msg);
			goto out;
		}
		mfr_put64(ent, rec.offset);
		mfr_put64(ent + 8, id);
		mfr_put32(ent + 16, (uint32_t)label);
		mfr_put32(ent + 20, flags);
		crc = mfr_crc32c(crc, ent, INDEX_ENTRY);
		if (fwrite(ent, 1, INDEX_ENTRY, f) != INDEX_ENTRY)
			goto werr;
		n++;
	}
	if (k < 0)
		goto out;
	uint64_t size;
	if (file_size(stream_path, &size, e) < 0)
		goto out;
	index_header(h, mfr_reader_schema(r), size, n, crc);
	if (fseek(f, 0, SEEK_SET) != 0 || fwrite(h, 1, INDEX_HEAD, f) != INDEX_HEAD || fflush(f) != 0)
		goto werr;
	rc = fclose(f);
	f = NULL;
	if (rc != 0)
		goto werr;
	if (rename(tmp, p) != 0) {
		mfr_fail(e, "'%s': cannot rename into place: %s", p, strerror(errno));
		rc = -1;
		goto out;
	}
	rc = 0;
	goto out;
werr:
	mfr_fail(e, "'%s': write error: %s", tmp, strerror(errno));
	rc = -1;
out:
	if (f)
		fclose(f);
	if (tmp) {
		if (rc)
			remove(tmp);
		mfr_temp_forget(tmp);
	}
	free(p);
	free(tmp);
	mfr_reader_close(r);
	return rc;
}
