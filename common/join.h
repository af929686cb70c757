/* join.h — applying cleaning decisions to faces: the FACE records whose ids
 * appear in a (cleaned, relabelled) EMBEDDING stream, in the FACE stream's
 * order, with the EMBEDDING stream's labels (the tool is mfr-join).
 *
 * Two methods give the same output. The merge join reads both streams once,
 * in step, and holds nothing: it works when the EMBEDDING ids come in the
 * same relative order as in the FACE stream (what mfr-embed and the cleaning
 * tools preserve). The hash join holds the EMBEDDING side in a map
 * (common/hashmap.h, about 50 bytes per record) and works for any order.
 */
#ifndef MFR_JOIN_H
#define MFR_JOIN_H

#include <stdint.h>

#include "stream.h" /* defines: mfr_reader, mfr_writer */
#include "util.h"   /* defines: mfr_error */

typedef struct {
	uint64_t emb;      /* EMBEDDING records read */
	uint64_t faces;    /* FACE records read */
	uint64_t written;  /* FACE records written */
	uint64_t relabelled; /* of those, how many got a label other than their own */
	uint64_t missing;  /* EMBEDDING ids not found among the faces (hash join) */
	uint64_t first_missing[5]; /* the first of them in EMBEDDING order */
	int n_first;
} mfr_join_stats;

/* Merge join of emb (EMBEDDING) and faces (FACE) readers into w; META
 * records of both (when their readers return them) are copied to w. Returns
 * 1 when every EMBEDDING id was matched in order, 0 when not (ids in another
 * order, or missing: what was written to w is then incomplete and must be
 * discarded — run mfr_join_hash on fresh readers), -1 on a read or write
 * error (e filled). */
int mfr_join_merge(mfr_reader *emb, mfr_reader *faces, mfr_writer *w, mfr_join_stats *st, mfr_error *e);

/* Hash join: reads emb whole into a map, then streams faces into w. A
 * duplicate id on either side is an error. EMBEDDING ids absent from the
 * faces are counted in st->missing (the first few kept); with allow_missing
 * 0 they make the call fail after the faces are read ("N ids of 'EMB' are
 * not in the FACE stream: 12, 40, ..."). Returns 0 or -1. */
int mfr_join_hash(mfr_reader *emb, mfr_reader *faces, mfr_writer *w, int allow_missing, mfr_join_stats *st,
		  mfr_error *e);

#endif
