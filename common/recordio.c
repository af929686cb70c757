/* recordio.c — sequential reader of MXNet/insightface RecordIO (.rec, .idx,
 * property); the byte layout is in recordio.h. One code path reads files and
 * in-memory streams (fmemopen), so the fuzz target exercises what tools run.
 * Nothing here prints or exits. */
#include "recordio.h" /* defines: mfr_recordio_open, mfr_recordio_next, ... */

#include <errno.h>
#include <stdlib.h>
#include <string.h>

typedef unsigned long long ull; /* for printf of u64 offsets and keys */

enum { CF_WHOLE = 0, CF_FIRST = 1, CF_MIDDLE = 2, CF_LAST = 3 };
static const char *const cflag_name[8] = {"whole", "first", "middle", "last", "4", "5", "6", "7"};

/* An .idx line is "key\toffset": two u64 in decimal are at most 41 bytes, so a
 * longer line is damage, and the bound keeps a newline-free file from being
 * read into memory whole. */
#define IDX_LINE_MAX 128

struct mfr_recordio {
	FILE *rec, *idx;
	int own_files;           /* opened by mfr_recordio_open: close them */
	char *rec_name, *idx_name;
	uint32_t cap;
	uint8_t *buf;            /* the current joined record */
	size_t room, size;
	uint64_t pos;            /* bytes of .rec consumed */
	uint64_t nrec;           /* records read, all kinds */
	uint64_t idx_lines;      /* .idx lines read */
	uint64_t last_key;
	mfr_recordio_layout lay;
	int pending;             /* buf holds the first record, an image not yet returned */
	uint64_t pending_key, pending_off;
	int at_end;              /* 1: the .rec had no record at open; 2: clean end returned */
	uint64_t n_images, n_identities;
	int failed;
	mfr_error err;           /* the sticky error after a failure */
};

static char *dup_name(const char *s)
{
	size_t n = strlen(s) + 1;
	char *d = malloc(n);
	if (d)
		memcpy(d, s, n);
	return d;
}

static int io_fail(const char *name, mfr_error *e)
{
	return mfr_fail(e, "'%s': read error: %s", name, strerror(errno));
}

/* Reads one record (all its chunks) into r->buf. Returns 1 with r->size and
 * *start (offset of its first chunk), 0 at a clean end (end of file at a chunk
 * boundary outside a split record), -1 on damage. */
static int read_record(mfr_recordio *r, uint64_t *start, mfr_error *e)
{
	const char *nm = r->rec_name;
	uint64_t first = r->pos;
	size_t size = 0;
	int open = 0; /* inside a split record: a middle or last chunk must follow */
	for (;;) {
		uint8_t h[8];
		uint64_t at = r->pos;
		size_t got = fread(h, 1, sizeof h, r->rec);
		if (got < sizeof h && ferror(r->rec))
			return io_fail(nm, e);
		if (got == 0 && !open)
			return 0;
		if (got < sizeof h) {
			if (open)
				return mfr_fail(e, "'%s': truncated record at byte %llu: the file ends at byte %llu before its last chunk",
						nm, (ull)first, (ull)(at + got));
			return mfr_fail(e, "'%s': truncated chunk header at byte %llu: %zu of 8 bytes", nm, (ull)at, got);
		}
		r->pos += sizeof h;
		uint32_t magic = mfr_get32(h), lrec = mfr_get32(h + 4);
		if (magic != MFR_RECORDIO_MAGIC)
			return mfr_fail(e, "'%s': bad chunk magic 0x%08x at byte %llu", nm, magic, (ull)at);
		uint32_t cflag = lrec >> 29, len = lrec & ((1u << 29) - 1);
		if (cflag > CF_LAST) /* 3 bits, 4 meanings: dmlc-core defines no more */
			return mfr_fail(e, "'%s': bad chunk flag %u at byte %llu", nm, cflag, (ull)at);
		if (!open && (cflag == CF_MIDDLE || cflag == CF_LAST))
			return mfr_fail(e, "'%s': %s chunk at byte %llu without a first chunk before it",
					nm, cflag_name[cflag], (ull)at);
		if (open && (cflag == CF_WHOLE || cflag == CF_FIRST))
			return mfr_fail(e, "'%s': %s chunk at byte %llu inside the record begun at byte %llu, which has no last chunk",
					nm, cflag_name[cflag], (ull)at, (ull)first);
		if (!open)
			first = at;
		int more = cflag == CF_FIRST || cflag == CF_MIDDLE;
		uint64_t need = (uint64_t)size + len + (more ? 4 : 0);
		if (need > r->cap)
			return mfr_fail(e, "'%s': record at byte %llu is larger than the %u-byte cap (chunk at byte %llu holds %u bytes)",
					nm, (ull)first, r->cap, (ull)at, len);
		if (need > r->room || !r->buf) { /* also for an empty first record: no NULL + 0 */
			size_t room = r->room ? r->room : 65536;
			while (room < need)
				room *= 2;
			if (room > r->cap)
				room = r->cap;
			uint8_t *nb = mfr_realloc(r->buf, room, e);
			if (!nb)
				return -1;
			r->buf = nb;
			r->room = room;
		}
		got = fread(r->buf + size, 1, len, r->rec);
		if (got < len) {
			if (ferror(r->rec))
				return io_fail(nm, e);
			return mfr_fail(e, "'%s': truncated chunk at byte %llu: %u data bytes, %zu present", nm, (ull)at, len, got);
		}
		/* padding: MXNet's own reader reads it without looking, so do we */
		uint32_t pad = (4 - (len & 3)) & 3;
		uint8_t skip[3];
		got = pad ? fread(skip, 1, pad, r->rec) : 0;
		if (got < pad) {
			if (ferror(r->rec))
				return io_fail(nm, e);
			return mfr_fail(e, "'%s': truncated chunk at byte %llu: %u padding bytes, %zu present", nm, (ull)at, pad, got);
		}
		r->pos += (uint64_t)len + pad;
		size += len;
		if (!more) {
			r->size = size;
			*start = first;
			return 1;
		}
		mfr_put32(r->buf + size, MFR_RECORDIO_MAGIC); /* the magic the writer cut out */
		size += 4;
		open = 1;
	}
}

/* Parses a decimal u64 at *s (digits only), advancing *s. Returns 0 or -1 on
 * no digits or overflow. */
static int parse_u64(const char **s, uint64_t *v)
{
	const char *p = *s;
	uint64_t x = 0;
	if (*p < '0' || *p > '9')
		return -1;
	for (; *p >= '0' && *p <= '9'; p++) {
		unsigned d = (unsigned)(*p - '0');
		if (x > (UINT64_MAX - d) / 10)
			return -1;
		x = x * 10 + d;
	}
	*s = p;
	*v = x;
	return 0;
}

static int is_space(char c) { return c == ' ' || c == '\t' || c == '\r' || c == '\n' || c == '\v' || c == '\f'; }

/* Reads the next .idx line. Returns 1 with *key and *off, 0 at the end of the
 * .idx, -1 on a read error or malformed line. */
static int idx_line(mfr_recordio *r, uint64_t *key, uint64_t *off, mfr_error *e)
{
	char line[IDX_LINE_MAX + 2];
	if (!fgets(line, sizeof line, r->idx)) {
		if (ferror(r->idx))
			return io_fail(r->idx_name, e);
		return 0;
	}
	uint64_t no = ++r->idx_lines;
	size_t n = strlen(line);
	if (n > IDX_LINE_MAX || (n && line[n - 1] != '\n' && !feof(r->idx)))
		return mfr_fail(e, "'%s': line %llu is longer than %d bytes", r->idx_name, (ull)no, IDX_LINE_MAX);
	/* Python's MXIndexedRecordIO strips each line and splits it at a tab */
	while (n && is_space(line[n - 1]))
		line[--n] = 0;
	const char *p = line;
	while (*p == ' ')
		p++;
	if (parse_u64(&p, key) || *p++ != '\t' || parse_u64(&p, off) || *p)
		return mfr_fail(e, "'%s': line %llu is not \"key<TAB>offset\" in decimal", r->idx_name, (ull)no);
	return 1;
}

/* Reads the next record and learns its key. Returns 1, 0 at a clean end (the
 * .idx checked to be exhausted too), -1 on failure. */
static int fetch(mfr_recordio *r, uint64_t *key, uint64_t *start, mfr_error *e)
{
	int k = read_record(r, start, e);
	if (k < 0)
		return -1;
	if (!r->idx) {
		if (k)
			*key = r->nrec++;
		return k;
	}
	uint64_t ikey = 0, ioff = 0;
	int li = idx_line(r, &ikey, &ioff, e);
	if (li < 0)
		return -1;
	if (!k) {
		if (li)
			return mfr_fail(e, "'%s': line %llu lists key %llu at byte %llu, but '%s' ends at byte %llu after %llu records",
					r->idx_name, (ull)r->idx_lines, (ull)ikey, (ull)ioff, r->rec_name, (ull)r->pos,
					(ull)r->nrec);
		return 0;
	}
	if (!li)
		return mfr_fail(e, "'%s': record at byte %llu is not listed in '%s', which has %llu lines",
				r->rec_name, (ull)*start, r->idx_name, (ull)r->idx_lines);
	if (ioff != *start)
		return mfr_fail(e, "'%s': line %llu gives byte %llu for key %llu, but record %llu of '%s' starts at byte %llu",
				r->idx_name, (ull)r->idx_lines, (ull)ioff, (ull)ikey, (ull)r->nrec, r->rec_name,
				(ull)*start);
	if (r->nrec && ikey <= r->last_key)
		return mfr_fail(e, "'%s': line %llu: key %llu is not above the key %llu before it; this reader needs rising keys in file order",
				r->idx_name, (ull)r->idx_lines, (ull)ikey, (ull)r->last_key);
	r->last_key = ikey;
	*key = ikey;
	r->nrec++;
	return 1;
}

/* Float label to a class number: an integer in 0..2^31-1 (NaN fails). */
static int class_of(float f, int32_t *out)
{
	if (!(f >= 0.0f && f < 2147483648.0f))
		return -1;
	int32_t c = (int32_t)f;
	if ((float)c != f)
		return -1;
	*out = c;
	return 0;
}

/* The float labels of the record in r->buf: *flag and a pointer to the labels
 * (flag of them, or the header's single label when flag == 0). */
static int record_labels(mfr_recordio *r, uint64_t key, uint64_t off, uint32_t *flag, const uint8_t **labels,
			 mfr_error *e)
{
	if (r->size < MFR_RECORDIO_HEADER_SIZE)
		return mfr_fail(e, "'%s': record key %llu at byte %llu is %zu bytes, shorter than its %d-byte header",
				r->rec_name, (ull)key, (ull)off, r->size, MFR_RECORDIO_HEADER_SIZE);
	*flag = mfr_get32(r->buf);
	if (*flag > (r->size - MFR_RECORDIO_HEADER_SIZE) / 4)
		return mfr_fail(e, "'%s': record key %llu at byte %llu: flag %u says %llu label bytes follow the header, the record has %zu",
				r->rec_name, (ull)key, (ull)off, *flag, (ull)*flag * 4,
				r->size - MFR_RECORDIO_HEADER_SIZE);
	*labels = *flag ? r->buf + MFR_RECORDIO_HEADER_SIZE : r->buf + 4;
	return 0;
}

/* Decodes insightface's header record (key 0, flag > 0) into r->lay. */
static int read_header(mfr_recordio *r, uint64_t off, uint32_t flag, const uint8_t *labels, mfr_error *e)
{
	if (flag < 2)
		return mfr_fail(e, "'%s': header record 0 at byte %llu has 1 label; insightface's has 2 (image end, identity end)",
				r->rec_name, (ull)off);
	float a = mfr_getf32(labels), b = mfr_getf32(labels + 4);
	int32_t ia, ib;
	if (class_of(a, &ia) || class_of(b, &ib) || ia < 1 || ib < ia)
		return mfr_fail(e, "'%s': header record 0 at byte %llu: labels [%.9g, %.9g] are not key bounds a, b with 1 <= a <= b",
				r->rec_name, (ull)off, a, b);
	r->lay.has_header = 1;
	r->lay.image_end = (uint64_t)ia;
	r->lay.identity_end = (uint64_t)ib;
	return 0;
}

static int fail_sticky(mfr_recordio *r, mfr_error *e)
{
	r->failed = 1;
	if (e)
		r->err = *e;
	else
		snprintf(r->err.msg, sizeof r->err.msg, "'%s': reader failed earlier", r->rec_name);
	return -1;
}

mfr_recordio *mfr_recordio_open_stream(FILE *rec, const char *rec_name, FILE *idx, const char *idx_name,
				       uint32_t cap, mfr_error *e)
{
	mfr_recordio *r = calloc(1, sizeof *r);
	if (!r) {
		mfr_fail(e, "out of memory");
		return NULL;
	}
	r->rec = rec;
	r->idx = idx;
	r->cap = cap ? cap : MFR_RECORDIO_DEFAULT_CAP;
	r->rec_name = dup_name(rec_name);
	r->idx_name = dup_name(idx && idx_name ? idx_name : "");
	if (!r->rec_name || !r->idx_name) {
		mfr_fail(e, "out of memory");
		goto fail;
	}
	r->lay.has_index = idx != NULL;
	uint64_t key, off;
	int k = fetch(r, &key, &off, e);
	if (k < 0)
		goto fail;
	if (k == 0) {
		r->at_end = 1;
		return r;
	}
	if (key == 0) {
		uint32_t flag;
		const uint8_t *labels;
		if (record_labels(r, key, off, &flag, &labels, e))
			goto fail;
		if (flag > 0) {
			if (read_header(r, off, flag, labels, e))
				goto fail;
			return r;
		}
	}
	r->pending = 1;
	r->pending_key = key;
	r->pending_off = off;
	return r;
fail:
	mfr_recordio_close(r); /* own_files is 0: the caller's streams stay open */
	return NULL;
}

/* The .idx beside a .rec: "x.rec" -> "x.idx", anything else -> "x.idx" appended. */
static char *idx_path_of(const char *path)
{
	size_t n = strlen(path);
	int has_rec = n >= 4 && strcmp(path + n - 4, ".rec") == 0;
	size_t base = has_rec ? n - 4 : n;
	char *p = malloc(base + 5);
	if (p) {
		memcpy(p, path, base);
		memcpy(p + base, ".idx", 5);
	}
	return p;
}

mfr_recordio *mfr_recordio_open(const char *path, uint32_t cap, mfr_error *e)
{
	FILE *rec = fopen(path, "rb");
	if (!rec) {
		mfr_fail(e, "'%s': %s", path, strerror(errno));
		return NULL;
	}
	char *ipath = idx_path_of(path);
	if (!ipath) {
		fclose(rec);
		mfr_fail(e, "out of memory");
		return NULL;
	}
	FILE *idx = fopen(ipath, "r");
	if (!idx && errno != ENOENT) {
		mfr_fail(e, "'%s': %s", ipath, strerror(errno));
		free(ipath);
		fclose(rec);
		return NULL;
	}
	mfr_recordio *r = mfr_recordio_open_stream(rec, path, idx, ipath, cap, e);
	free(ipath);
	if (!r) {
		fclose(rec);
		if (idx)
			fclose(idx);
		return NULL;
	}
	r->own_files = 1;
	return r;
}

const mfr_recordio_layout *mfr_recordio_get_layout(const mfr_recordio *r) { return &r->lay; }

uint64_t mfr_recordio_count(const mfr_recordio *r) { return r->n_images; }

/* At the clean end: a header's promise of a-1 images and b-a identities is
 * what tells a file cut at a record boundary from a whole one. */
static int end_checks(mfr_recordio *r, mfr_error *e)
{
	if (!r->lay.has_header)
		return 0;
	uint64_t want_img = r->lay.image_end - 1, want_id = r->lay.identity_end - r->lay.image_end;
	if (r->n_images != want_img || r->n_identities != want_id)
		return mfr_fail(e, "'%s': ends at byte %llu with %llu image and %llu identity records; its header lists %llu and %llu (truncated?)",
				r->rec_name, (ull)r->pos, (ull)r->n_images, (ull)r->n_identities, (ull)want_img,
				(ull)want_id);
	return 0;
}

int mfr_recordio_next(mfr_recordio *r, mfr_recordio_image *img, mfr_error *e)
{
	if (r->failed) {
		if (e)
			*e = r->err;
		return -1;
	}
	if (r->at_end == 2)
		return 0;
	for (;;) {
		uint64_t key, off;
		if (r->pending) {
			r->pending = 0;
			key = r->pending_key;
			off = r->pending_off;
		} else {
			int k = r->at_end ? 0 : fetch(r, &key, &off, e);
			if (k < 0)
				return fail_sticky(r, e);
			if (k == 0) {
				if (end_checks(r, e))
					return fail_sticky(r, e);
				r->at_end = 2;
				return 0;
			}
		}
		if (r->lay.has_header) {
			/* key 0 was the header: keys rise, so it cannot come again */
			if (key >= r->lay.identity_end) {
				mfr_fail(e, "'%s': record key %llu at byte %llu is beyond the header's key range [1, %llu)",
					 r->rec_name, (ull)key, (ull)off, (ull)r->lay.identity_end);
				return fail_sticky(r, e);
			}
			if (key >= r->lay.image_end) {
				r->n_identities++;
				continue;
			}
		}
		uint32_t flag;
		const uint8_t *labels;
		if (record_labels(r, key, off, &flag, &labels, e))
			return fail_sticky(r, e);
		float f = mfr_getf32(labels);
		int32_t label;
		if (class_of(f, &label)) {
			mfr_fail(e, "'%s': record key %llu at byte %llu: label %.9g is not a class number (an integer 0..2147483647)",
				 r->rec_name, (ull)key, (ull)off, f);
			return fail_sticky(r, e);
		}
		size_t head = MFR_RECORDIO_HEADER_SIZE + (size_t)flag * 4;
		img->key = key;
		img->label = label;
		img->flag = flag;
		img->id = mfr_get64(r->buf + 8);
		img->id2 = mfr_get64(r->buf + 16);
		img->image = r->buf + head;
		img->image_size = r->size - head;
		img->offset = off;
		r->n_images++;
		return 1;
	}
}

void mfr_recordio_close(mfr_recordio *r)
{
	if (!r)
		return;
	if (r->own_files) {
		fclose(r->rec);
		if (r->idx)
			fclose(r->idx);
	}
	free(r->rec_name);
	free(r->idx_name);
	free(r->buf);
	free(r);
}

int mfr_recordio_parse_property(const char *text, size_t n, const char *name, mfr_recordio_property *p,
				mfr_error *e)
{
	/* copy into a terminated buffer; a real one is "85742,112,112\n" */
	char s[64];
	while (n && is_space(text[n - 1]))
		n--;
	while (n && is_space(*text))
		text++, n--;
	if (n >= sizeof s)
		return mfr_fail(e, "'%s': longer than %zu bytes; expected \"num_classes,height,width\"", name, sizeof s - 1);
	memcpy(s, text, n);
	s[n] = 0;
	static const uint64_t max[3] = {INT32_MAX, 65536, 65536};
	uint64_t v[3];
	const char *q = s;
	for (int i = 0; i < 3; i++) {
		while (*q == ' ')
			q++;
		if (parse_u64(&q, &v[i]) || v[i] < 1 || v[i] > max[i])
			goto bad;
		while (*q == ' ')
			q++;
		if (*q++ != (i < 2 ? ',' : 0))
			goto bad;
	}
	p->num_classes = (int32_t)v[0];
	p->height = (int32_t)v[1];
	p->width = (int32_t)v[2];
	return 0;
bad:
	return mfr_fail(e, "'%s': not \"num_classes,height,width\" (classes 1..2147483647, sizes 1..65536): '%s'",
			name, s);
}

int mfr_recordio_read_property(const char *rec_path, mfr_recordio_property *p, mfr_error *e)
{
	const char *slash = strrchr(rec_path, '/');
	size_t dir = slash ? (size_t)(slash - rec_path) + 1 : 0;
	char *path = malloc(dir + sizeof "property");
	if (!path)
		return mfr_fail(e, "out of memory");
	memcpy(path, rec_path, dir);
	memcpy(path + dir, "property", sizeof "property");
	FILE *f = fopen(path, "r");
	if (!f) {
		int rc = errno == ENOENT ? 0 : mfr_fail(e, "'%s': %s", path, strerror(errno));
		free(path);
		return rc;
	}
	char text[256];
	size_t n = fread(text, 1, sizeof text, f);
	int rc;
	if (ferror(f))
		rc = mfr_fail(e, "'%s': read error: %s", path, strerror(errno));
	else if (n == sizeof text)
		rc = mfr_fail(e, "'%s': longer than %zu bytes; expected \"num_classes,height,width\"", path,
			      sizeof text - 1);
	else
		rc = mfr_recordio_parse_property(text, n, path, p, e) ? -1 : 1;
	fclose(f);
	free(path);
	return rc;
}
