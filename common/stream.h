/* stream.h — record streams: the framed, checksummed, self-describing container
 * every mfr tool reads and writes (data-formats.md is the byte-level contract).
 *
 * A stream is a header (magic, version, kind, schema) followed by framed
 * records and an end record; streams may be concatenated. The reader tells a
 * clean end from a truncated stream from a corrupted one and names the byte
 * offset of any damage. This file knows frames and headers only; the payload of
 * FACE and EMBEDDING records is coded by record.h.
 */
#ifndef MFR_STREAM_H
#define MFR_STREAM_H

#include <stdint.h>
#include <stdio.h>

#include "util.h" /* defines: mfr_error */

enum {
	MFR_KIND_FACE = 1,
	MFR_KIND_EMBEDDING = 2,
};

/* Frame types (data-formats.md, "Record frame"). Types with the high bit set
 * are ancillary: a reader that does not know one skips it. */
enum {
	MFR_REC_DATA = 0x0001, /* one record of the stream's kind */
	MFR_REC_END = 0x0002,  /* closes a stream: payload u64 count of data records */
	MFR_REC_META = 0x8001, /* provenance text (ancillary) */
};

enum {
	MFR_DTYPE_F32 = 1,
	MFR_DTYPE_F16 = 2,
};

/* The largest payload the format allows (256 MiB); readers check the length
 * field against their cap before allocating. */
#define MFR_MAX_RECORD (256u << 20)
/* The default reader cap: 64 MiB is far above any face image. */
#define MFR_DEFAULT_CAP (64u << 20)

/* Kind-specific schema from the stream header. */
typedef struct {
	uint16_t kind;  /* MFR_KIND_* */
	uint32_t dim;   /* EMBEDDING: vector length (1..65536); FACE: 0 */
	uint16_t dtype; /* EMBEDDING: MFR_DTYPE_*; FACE: 0 */
} mfr_schema;

/* Returns "FACE", "EMBEDDING" or "unknown". */
const char *mfr_kind_name(int kind);

/* ---- reading ---- */

typedef struct mfr_reader mfr_reader;

/* One record as read: a view into the reader's buffer, valid until the next
 * call on the reader. */
typedef struct {
	uint16_t type;       /* MFR_REC_DATA or MFR_REC_META (END is consumed inside) */
	const uint8_t *data; /* payload */
	uint32_t size;       /* payload bytes */
	uint64_t offset;     /* byte offset of the frame in its file */
	uint64_t number;     /* 0-based number of this data record within its file */
	const char *path;    /* the file it came from ("-" shown as "<stdin>") */
} mfr_record;

/* Opens the files in order as one logical sequence of records (paths NULL or
 * n == 0 means stdin; "-" is stdin). All streams must share one schema; the
 * first stream's schema is available after open. cap bounds each payload
 * (0 means MFR_DEFAULT_CAP). want_meta: also return MFR_REC_META records.
 * Returns NULL with e filled on failure (unreadable file, bad header). */
mfr_reader *mfr_reader_open(const char *const *paths, int n, uint32_t cap, int want_meta, mfr_error *e);

/* The same over one already-open FILE (a pipe, fmemopen for fuzzing); name
 * is what messages quote. The FILE is not closed by mfr_reader_close. */
mfr_reader *mfr_reader_open_file(FILE *f, const char *name, uint32_t cap, int want_meta, mfr_error *e);

/* The schema of the stream(s) being read. */
const mfr_schema *mfr_reader_schema(const mfr_reader *r);

/* Reads the next record into *rec. Returns 1 on a record, 0 at the clean end
 * of the last file, -1 on damage or I/O failure with e filled as
 * "'FILE': truncated record N at byte B" / "corrupted record N at byte B
 * (checksum)" / "... (length)" etc. After -1 the reader must only be closed. */
int mfr_reader_next(mfr_reader *r, mfr_record *rec, mfr_error *e);

/* Number of data records returned so far, over all files. */
uint64_t mfr_reader_count(const mfr_reader *r);

void mfr_reader_close(mfr_reader *r);

/* ---- random access through the sidecar index ---- */

/* One index entry: where a data record's frame starts and what it holds. */
typedef struct {
	uint64_t offset;
	uint64_t id;
	int32_t label;
	uint32_t flags;
} mfr_index_entry;

typedef struct {
	mfr_schema schema;
	uint64_t stream_size; /* bytes of the stream file the index describes */
	uint64_t count;
	mfr_index_entry *entries; /* owned */
} mfr_index;

/* Loads PATH.idx for the stream file PATH and checks it against the stream's
 * size; a stale or damaged index is an error. Free with mfr_index_free. */
int mfr_index_load(const char *stream_path, mfr_index *ix, mfr_error *e);
void mfr_index_free(mfr_index *ix);

/* Builds the index of an existing stream file by reading it once (FACE and
 * EMBEDDING streams; every record checked) and writes PATH.idx atomically. */
int mfr_index_build(const char *stream_path, mfr_error *e);

/* Random access: reads the data record whose frame starts at `offset` in an
 * open FILE (the stream file), checking both checksums. *buf is grown as
 * needed (caller frees); returns payload size in *size. */
int mfr_read_at(FILE *f, const char *path, uint64_t offset, uint32_t cap, uint8_t **buf,
		size_t *room, uint32_t *size, mfr_error *e);

/* ---- writing ---- */

typedef struct mfr_writer mfr_writer;

/* Creates a stream on path (NULL or "-" means stdout). A named file is written
 * as PATH.tmp and renamed by mfr_writer_close on success. Refuses a terminal
 * on stdout. Writes the header and, when tool is non-NULL, a metadata record
 * "tool\tversion\targs" built from argv (argc entries). with_index: also write
 * PATH.idx on close (named files only; the records must be FACE or EMBEDDING).
 * Returns NULL with e filled on failure. */
mfr_writer *mfr_writer_open(const char *path, const mfr_schema *s, const char *tool, int argc,
			    char *const *argv, int with_index, mfr_error *e);

/* Appends one record of type MFR_REC_DATA or MFR_REC_META. size must be
 * <= MFR_MAX_RECORD. Data payloads must carry id, label and flags in their
 * first 16 bytes (record.h layout) when the writer keeps an index. */
int mfr_writer_put(mfr_writer *w, uint16_t type, const void *data, uint32_t size, mfr_error *e);

/* Number of data records written. */
uint64_t mfr_writer_count(const mfr_writer *w);

/* Writes the end record, flushes, checks for write errors, renames the temp
 * file into place and writes the index. Frees w in all cases. On failure the
 * temp file is removed and -1 returned. */
int mfr_writer_close(mfr_writer *w, mfr_error *e);

/* Abandons the stream: removes the temp file (stdout is left as is), frees w. */
void mfr_writer_abort(mfr_writer *w);

/* ---- frame primitives (for tools that copy or check frames) ---- */

/* The masked CRC32C stored in frames (data-formats.md, "Checksums"). */
uint32_t mfr_masked_crc(const void *data, size_t n);

#endif
