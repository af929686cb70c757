/* recordio.h — a reader of MXNet/insightface RecordIO (`train.rec` with its
 * `train.idx` and `property`), the form MS1M, Glint360K and WebFace ship in.
 *
 * It reads sequentially (no seek), checks every chunk, joins split records,
 * checks the .idx against the chunk positions it finds, decodes the IRHeader
 * and returns the image records with their keys and labels, skipping
 * insightface's header and per-identity records. It does not decode images and
 * does not write RecordIO (mfr's own container is stream.h).
 *
 * The .rec file is a sequence of chunks, every field little-endian:
 *
 *   field    size  meaning
 *   magic    4     0xced7230a (dmlc-core's kMagic; marks chunk starts so a
 *                  reader can resynchronise, which is why data holding it are split)
 *   lrecord  4     bits 31..29 cflag: 0 whole record, 1 first chunk,
 *                  2 middle chunk, 3 last chunk; bits 28..0 the data length
 *   data     len   chunk data
 *   padding  0..3  to a 4-byte boundary; zero when MXNet writes it, not checked
 *
 * A record whose data hold the magic at a 4-aligned position is written as
 * chunks cut at each such magic, the magic removed; joining the chunk data with
 * the magic put back between them gives the record. A record's data are:
 *
 *   field    size       meaning
 *   flag     4 (u32)    0: one label, in `label`; n > 0: n float32 labels follow
 *   label    4 (f32)    the label when flag == 0 (0 otherwise)
 *   id       8 (u64)    free for the writer (insightface: 0)
 *   id2      8 (u64)    free for the writer
 *   labels   4*flag     float32 labels when flag > 0; the first is the class
 *   image    the rest   JPEG or PNG bytes
 *
 * (MXNet packs this header with Python struct 'IfQQ', native order and
 * alignment: 24 bytes without padding, little-endian as read here because the
 * files come from little-endian machines.)
 *
 * insightface layout: when the record of key 0 has flag > 0, it is a header
 * whose labels [a, b] say that keys 1..a-1 are images and keys a..b-1 are
 * per-identity records (labels [start, end) of that identity's keys), which
 * are skipped. When record 0 has flag == 0, every record is an image.
 *
 * `.idx` (beside the .rec, same name with .idx): text lines "key\toffset", the
 * offset of each record's first chunk, one line per record in file order.
 * `property` (same folder): text "num_classes,height,width".
 */
#ifndef MFR_RECORDIO_H
#define MFR_RECORDIO_H

#include <stdint.h>
#include <stdio.h>

#include "util.h" /* defines: mfr_error */

/* dmlc-core's chunk magic, as the u32 read little-endian from the file. */
#define MFR_RECORDIO_MAGIC 0xced7230au
/* Default cap on one joined record: 64 MiB is far above any face image, and
 * far below the format's own limit (2^29 bytes per chunk, chunks unbounded). */
#define MFR_RECORDIO_DEFAULT_CAP (64u << 20)
/* Bytes of IRHeader before the label array. */
#define MFR_RECORDIO_HEADER_SIZE 24

typedef struct mfr_recordio mfr_recordio;

/* One image record: a view into the reader's buffer, valid until the next
 * call on the reader. */
typedef struct {
	uint64_t key;         /* the .idx key, or the record's position 0,1,2... without .idx */
	int32_t label;        /* class: the header label (flag 0) or the first of the labels */
	uint32_t flag;        /* IRHeader flag: number of float labels after the header */
	uint64_t id, id2;     /* IRHeader ids, as stored */
	const uint8_t *image; /* image bytes (JPEG or PNG; not checked here) */
	size_t image_size;
	uint64_t offset;      /* byte offset of the record's first chunk in the .rec */
} mfr_recordio_image;

/* What the reader learned at open. */
typedef struct {
	int has_index;         /* keys come from the .idx */
	int has_header;        /* record 0 is an insightface header (flag > 0) */
	uint64_t image_end;    /* has_header: a; image keys are 1..a-1 */
	uint64_t identity_end; /* has_header: b; identity records have keys a..b-1 */
} mfr_recordio_layout;

/* The `property` file. */
typedef struct {
	int32_t num_classes; /* 1..2^31-1 */
	int32_t height;      /* 1..65536 */
	int32_t width;       /* 1..65536 */
} mfr_recordio_property;

/* Opens the .rec at path and, when it exists, its .idx (path with a final
 * ".rec" replaced by ".idx", else with ".idx" appended). Reads record 0 to learn
 * the layout. cap bounds each joined record in bytes (0 means
 * MFR_RECORDIO_DEFAULT_CAP). Returns NULL with e filled when a file cannot be
 * opened or record 0 is damaged ("'train.rec': bad chunk magic 0x... at byte 0").
 * Close with mfr_recordio_close. */
mfr_recordio *mfr_recordio_open(const char *path, uint32_t cap, mfr_error *e);

/* The same over already-open streams, for pipes, tests and fuzzing (fmemopen):
 * rec is the .rec stream, idx the .idx text or NULL (keys are then positions).
 * rec_name and idx_name are what messages quote (copied; idx_name may be
 * NULL when idx is). The reader reads both streams
 * sequentially from their current position and never closes them; offsets are
 * counted from that position. Same returns as mfr_recordio_open. */
mfr_recordio *mfr_recordio_open_stream(FILE *rec, const char *rec_name, FILE *idx,
				       const char *idx_name, uint32_t cap, mfr_error *e);

/* The layout learned at open. */
const mfr_recordio_layout *mfr_recordio_get_layout(const mfr_recordio *r);

/* Reads the next image record, in file order, which is key order: the .idx
 * keys must rise strictly line by line. Record 0 when it is a header and the
 * identity records are read, checked for framing and skipped. Returns 1 with
 * *img filled, 0 at the clean end, or -1 with e filled on:
 *   damage   "'train.rec': bad chunk magic 0x12345678 at byte 4096",
 *            truncated chunk header or data, a chunk out of cflag order,
 *            a record above the cap or shorter than its header;
 *   labels   a label that is not an integer in 0..2^31-1;
 *   .idx     a line that is malformed, out of key order, or whose offset
 *            differs from where the record starts; a record not listed, or a
 *            line left over at the end;
 *   layout   a key beyond the header's range [1, b), or fewer image or
 *            identity records than the header promises (a file cut at a
 *            record boundary).
 * After -1 the reader only returns -1 again and must be closed. */
int mfr_recordio_next(mfr_recordio *r, mfr_recordio_image *img, mfr_error *e);

/* Number of image records returned so far. */
uint64_t mfr_recordio_count(const mfr_recordio *r);

/* Frees the reader and closes the files mfr_recordio_open opened (streams
 * given to mfr_recordio_open_stream are left open). r may be NULL. */
void mfr_recordio_close(mfr_recordio *r);

/* Reads the `property` file in the folder of rec_path into *p. Returns 1 when
 * read, 0 when there is no such file (*p untouched), -1 with e filled when it
 * cannot be read or is malformed. */
int mfr_recordio_read_property(const char *rec_path, mfr_recordio_property *p, mfr_error *e);

/* Parses property text ("85742,112,112", surrounding white space allowed) of
 * n bytes; name is quoted in messages. Returns 0 or -1 with e filled. */
int mfr_recordio_parse_property(const char *text, size_t n, const char *name,
				mfr_recordio_property *p, mfr_error *e);

#endif
