/* join.c — the merge and hash joins of EMBEDDING decisions with FACE records
 * (contracts in join.h). */
#include "join.h" /* defines: mfr_join_merge, mfr_join_hash */

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hashmap.h" /* defines: mfr_map */
#include "record.h"  /* defines: mfr_record_ids */

/* Next DATA record of r, copying META records to w on the way. */
static int next_data(mfr_reader *r, mfr_writer *w, mfr_record *rec, uint64_t *id, int32_t *label, mfr_error *e)
{
	for (;;) {
		int got = mfr_reader_next(r, rec, e);
		if (got <= 0)
			return got;
		if (rec->type == MFR_REC_META) {
			if (mfr_writer_put(w, MFR_REC_META, rec->data, rec->size, e) < 0)
				return -1;
			continue;
		}
		uint32_t flags;
		if (mfr_record_ids(rec->data, rec->size, id, label, &flags, e) < 0)
			return mfr_fail(e, "'%s': bad record %llu at byte %llu: %s", rec->path,
					(unsigned long long)rec->number, (unsigned long long)rec->offset, e->msg);
		return 1;
	}
}

/* Writes the face record rec with its label replaced by label. */
static int put_face(mfr_writer *w, const mfr_record *rec, int32_t old, int32_t label, uint8_t **buf, size_t *room,
		    mfr_join_stats *st, mfr_error *e)
{
	if (rec->size > *room) {
		uint8_t *b = mfr_realloc(*buf, rec->size, e);
		if (!b)
			return -1;
		*buf = b;
		*room = rec->size;
	}
	memcpy(*buf, rec->data, rec->size);
	mfr_put32(*buf + 8, (uint32_t)label);
	st->written++;
	st->relabelled += old != label;
	return mfr_writer_put(w, MFR_REC_DATA, *buf, rec->size, e);
}

int mfr_join_merge(mfr_reader *emb, mfr_reader *faces, mfr_writer *w, mfr_join_stats *st, mfr_error *e)
{
	*st = (mfr_join_stats){0};
	mfr_record er, fr;
	uint64_t eid = 0, fid;
	int32_t elab = 0, flab;
	uint8_t *buf = NULL;
	size_t room = 0;
	int have = next_data(emb, w, &er, &eid, &elab, e), got;
	if (have < 0)
		return -1;
	st->emb += have;
	while ((got = next_data(faces, w, &fr, &fid, &flab, e)) == 1) {
		st->faces++;
		if (!have || fid != eid)
			continue;
		if (put_face(w, &fr, flab, elab, &buf, &room, st, e) < 0 ||
		    (have = next_data(emb, w, &er, &eid, &elab, e)) < 0) {
			got = -1;
			break;
		}
		st->emb += have;
	}
	free(buf);
	if (got < 0)
		return -1;
	return have ? 0 : 1;
}

/* Map values: the label in the low 32 bits, the record's number in the
 * EMBEDDING stream in bits 32..62 (saturating; it only orders the report of
 * missing ids), and bit 63 once a face matched it. */
#define SEEN (1ull << 63)
#define SEQ_MAX 0x7fffffffull

int mfr_join_hash(mfr_reader *emb, mfr_reader *faces, mfr_writer *w, int allow_missing, mfr_join_stats *st,
		  mfr_error *e)
{
	*st = (mfr_join_stats){0};
	mfr_map m;
	mfr_map_init(&m);
	mfr_record rec;
	uint64_t id;
	int32_t label;
	uint8_t *buf = NULL;
	size_t room = 0;
	char ename[256] = "";
	int got, rc = -1;
	while ((got = next_data(emb, w, &rec, &id, &label, e)) == 1) {
		if (!ename[0])
			snprintf(ename, sizeof ename, "%s", rec.path);
		int inserted;
		uint64_t *v = mfr_map_put(&m, id, &inserted, e);
		if (!v)
			goto done;
		if (!inserted) {
			mfr_fail(e, "'%s': duplicate id %llu in record %llu at byte %llu", rec.path, (unsigned long long)id,
				 (unsigned long long)rec.number, (unsigned long long)rec.offset);
			goto done;
		}
		uint64_t seq = st->emb < SEQ_MAX ? st->emb : SEQ_MAX;
		*v = seq << 32 | (uint32_t)label;
		st->emb++;
	}
	if (got < 0)
		goto done;
	while ((got = next_data(faces, w, &rec, &id, &label, e)) == 1) {
		st->faces++;
		uint64_t *v = mfr_map_get(&m, id);
		if (!v)
			continue;
		if (*v & SEEN) {
			mfr_fail(e, "'%s': duplicate id %llu in record %llu at byte %llu", rec.path, (unsigned long long)id,
				 (unsigned long long)rec.number, (unsigned long long)rec.offset);
			goto done;
		}
		*v |= SEEN;
		if (put_face(w, &rec, label, (int32_t)(uint32_t)*v, &buf, &room, st, e) < 0)
			goto done;
	}
	if (got < 0)
		goto done;
	/* the missing ids, the first few in EMBEDDING order */
	uint64_t seq[5];
	size_t pos = 0;
	uint64_t key, val;
	while (mfr_map_next(&m, &pos, &key, &val)) {
		if (val & SEEN)
			continue;
		st->missing++;
		uint64_t s = val >> 32 & SEQ_MAX;
		int q;
		if (st->n_first < 5)
			q = st->n_first++;
		else if (s < seq[4])
			q = 4;
		else
			continue;
		while (q > 0 && seq[q - 1] > s) {
			seq[q] = seq[q - 1];
			st->first_missing[q] = st->first_missing[q - 1];
			q--;
		}
		seq[q] = s;
		st->first_missing[q] = key;
	}
	if (st->missing && !allow_missing) {
		char list[160] = "";
		size_t n = 0;
		for (int q = 0; q < st->n_first; q++)
			n += (size_t)snprintf(list + n, sizeof list - n, "%s%llu", q ? ", " : "",
					      (unsigned long long)st->first_missing[q]);
		mfr_fail(e, "'%s': %llu id%s not in the FACE stream: %s%s (--allow-missing to accept)", ename,
			 (unsigned long long)st->missing, st->missing == 1 ? " is" : "s are", list,
			 st->missing > (uint64_t)st->n_first ? ", ..." : "");
		goto done;
	}
	rc = 0;
done:
	free(buf);
	mfr_map_free(&m);
	return rc;
}
