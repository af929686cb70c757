/* clean.h — label cleaning with a model's own embeddings: class centres,
 * intra-class outlier decisions (mfr-clean-intra), the exact search of near
 * centre pairs by blocked GEMM and the capped union-find that merges classes
 * (mfr-merge-inter), and re-readable multi-pass input.
 *
 * Nothing here holds the embeddings of a dataset in memory: inputs are read
 * in passes (mfr_passes), and what is kept between passes is O(classes x d)
 * plus a few bytes per record. Every function returns -1 with e filled on
 * failure and never exits or prints.
 */
#ifndef MFR_CLEAN_H
#define MFR_CLEAN_H

#include <stddef.h>
#include <stdint.h>

#include "hashmap.h" /* defines: mfr_map */
#include "qgemm.h"   /* defines: MFR_QGEMM_MAX_K */
#include "score.h"   /* defines: mfr_block_fn, mfr_bind_fn */
#include "stream.h"  /* defines: mfr_reader, mfr_record, mfr_schema */
#include "util.h"    /* defines: mfr_error */

/* ---- input read in several passes ---- */

/* An EMBEDDING input that can be read more than once. Named regular files are
 * re-opened for every pass; when any operand is stdin or not a regular file
 * (a pipe), the first pass copies every record into a spool file in $TMPDIR
 * (registered with mfr_temp_register, removed by mfr_passes_close or by
 * mfr_die) and later passes read the spool. Every pass after the first must
 * see the same records (count and ids), else it fails: a file that changed
 * under the tool is an error, not silently wrong decisions. */
typedef struct {
	const char *const *paths;
	int n;
	int spooling;       /* 1: the first pass writes the spool */
	char *spool;        /* the spool's path once created (owned) */
	mfr_writer *sw;     /* the spool writer during the first pass */
	mfr_reader *r;      /* the reader of the current pass */
	int pass;           /* passes begun */
	int want_meta;      /* the current pass returns META records */
	mfr_schema schema;  /* the input's schema (after the first begin) */
	uint64_t records, idsum; /* first pass: data records and a hash of their ids */
	uint64_t seen, seensum;  /* current pass */
} mfr_passes;

/* Prepares to read paths[0..n) (n == 0 or "-" is stdin) in passes. No I/O
 * yet. The paths must stay valid until mfr_passes_close. */
void mfr_passes_init(mfr_passes *p, const char *const *paths, int n);

/* Begins a pass: opens the input (or the spool). want_meta: META records are
 * returned too. The first begin fails unless the input is an EMBEDDING
 * stream ("'FILE': is a FACE stream, not EMBEDDING records"). */
int mfr_passes_begin(mfr_passes *p, int want_meta, mfr_error *e);

/* Next record of the current pass: 1 with *rec filled (a view valid until the
 * next call), 0 at the end of the pass (the pass is then closed and checked
 * against the first), -1 on damage or I/O failure. */
int mfr_passes_next(mfr_passes *p, mfr_record *rec, mfr_error *e);

/* Ends any open pass and removes the spool. */
void mfr_passes_close(mfr_passes *p);

/* ---- class centres ---- */

/* Per-class state: class k has label labels[k] (ascending after
 * mfr_centres_finish), count[k] records and, in c[k*dim ..], first a sum of
 * unit vectors and, after finish, the unit mean direction (all zero when the
 * sum is zero). */
typedef struct {
	uint32_t dim;
	size_t n, room;
	int32_t *labels;
	uint64_t *count;
	float *c;
	mfr_map map; /* label -> class index */
} mfr_centres;

/* An empty set of classes of dimension dim (no allocation yet). */
void mfr_centres_init(mfr_centres *cs, uint32_t dim);
void mfr_centres_free(mfr_centres *cs);

/* Class index of label (>= 0), or -1 when the label has no class. */
int64_t mfr_centres_find(const mfr_centres *cs, int32_t label);

/* Adds the unit vector v to label's sum (creating the class) and counts it. */
int mfr_centres_add(mfr_centres *cs, int32_t label, const float *v, mfr_error *e);

/* Renumbers the classes in ascending label order and turns every sum into
 * its unit direction. Deterministic: sums were taken in input order. */
int mfr_centres_finish(mfr_centres *cs, mfr_error *e);

/* Scales v[0..d) to unit L2 norm in place (a zero vector stays zero). */
void mfr_unit(float *v, uint32_t d);

/* Dot product of two d-vectors accumulated in double in index order: the
 * exact-enough, order-fixed similarity every decision uses. */
float mfr_dot(const float *a, const float *b, uint32_t d);

/* One pass of the input: every record with label >= 0 has its embedding made
 * unit and added to cs (freshly initialised by the caller with the input's
 * dimension after mfr_passes_begin, or use mfr_centres_build). */
int mfr_centres_build(mfr_passes *p, mfr_centres *cs, mfr_error *e);

/* ---- mfr-clean-intra ---- */

/* Why a record was removed; 0 means kept. */
enum {
	MFR_KEEP = 0,
	MFR_DROP_THRESHOLD = 1,  /* similarity below --threshold */
	MFR_DROP_PERCENTILE = 2, /* below its class's --percentile */
	MFR_DROP_SMALL = 3,      /* its class kept too few images (policy drop) */
	MFR_DROP_UNLABELLED = 4, /* label -1 and --drop-unlabelled */
};
const char *mfr_drop_reason(int why);

/* What to do with a class left with fewer than min_images kept records. */
enum {
	MFR_SMALL_KEEP = 0,      /* restore all its records: its centre is not trusted (default) */
	MFR_SMALL_DROP = 1,      /* remove all its records */
	MFR_SMALL_SURVIVORS = 2, /* keep what passed */
};

typedef struct {
	int use_threshold;
	double threshold;        /* cosine; remove sim < threshold */
	int use_percentile;
	double percentile;       /* 0..100: remove sim below the class's P-th percentile */
	uint64_t min_images;     /* classes left below this go to small_policy (0/1: none) */
	int small_policy;        /* MFR_SMALL_* */
	int drop_unlabelled;
	int iterations;          /* decision rounds, >= 1 */
} mfr_intra_opts;

/* The decisions on n records: sim[i] is record i's similarity to its class
 * centre, cls[i] its class in 0..nclass (-1: unlabelled). Writes why[i]
 * (MFR_KEEP or MFR_DROP_*). The percentile of a class of m members is the
 * value at rank floor(m*P/100) of its similarities sorted ascending; members
 * strictly below it are removed (so at most that many, ties kept). Returns 0
 * or -1 (out of memory). */
int mfr_intra_decide(const mfr_intra_opts *o, const float *sim, const int32_t *cls, size_t n,
		     size_t nclass, uint8_t *why, mfr_error *e);

/* The result of mfr_intra_run, one entry per input record (input order). */
typedef struct {
	size_t n;          /* records */
	uint8_t *why;      /* MFR_KEEP or MFR_DROP_* */
	float *sim;        /* similarity to the centre of the last round (NaN: unlabelled) */
	size_t classes_in, classes_out;
	int rounds;        /* decision rounds run */
	int stable;        /* 1: the last round kept the same records as the one before */
	mfr_centres cs;    /* the centres of the last round */
} mfr_intra_result;

/* Runs the whole decision on p: one pass for the centres of all members,
 * then per round one pass for the similarities and, between rounds, one for
 * the centres of the kept members; stops after o->iterations rounds or when
 * a round changes nothing. Memory: the centres plus 13 bytes per record.
 * Free res with mfr_intra_free. */
int mfr_intra_run(mfr_passes *p, const mfr_intra_opts *o, mfr_intra_result *res, mfr_error *e);
void mfr_intra_free(mfr_intra_result *res);

/* ---- centre-pair search ---- */

/* Per-centre nearest neighbours: row i holds n_nb[i] <= k entries (sim
 * descending, then index ascending) of the centres j != i with
 * sim(i,j) >= threshold. */
typedef struct {
	size_t n;
	int k;
	uint32_t *n_nb;
	float *sim;    /* n x k */
	uint32_t *nb;  /* n x k */
	int method;        /* the search that filled it: MFR_SEARCH_FP32, _INT8 or _BLOCKS */
	uint64_t rescored; /* pairs it rescored with mfr_dot (for benchmarks and logs) */
} mfr_topk;

/* How mfr_pair_search computes its first, approximate similarities; every
 * method gives the same result. */
enum {
	MFR_SEARCH_AUTO = 0, /* int8 when mfr_qgemm_fast() and d <= MFR_QGEMM_MAX_K, else fp32 */
	MFR_SEARCH_FP32 = 1, /* mfr_sgemm tiles, a fixed rounding margin */
	MFR_SEARCH_INT8 = 2, /* mfr_qgemm_s8 tiles, a rigorous per-pair bound (any backend) */
	MFR_SEARCH_BLOCKS = 3, /* fp32 tiles from a block producer: mfr_pair_search_with only */
};

/* Exact search of all pairs of the n rows of c (n x d, row-major; meant to be
 * unit or zero: the margins below assume norms of about 1) with
 * sim = mfr_dot(row i, row j) >= threshold, keeping each centre's top k
 * (1..1024). Only tiles on or above the diagonal are computed (the n x n
 * matrix is never held), with `threads` threads (0: every core). A pair is
 * reported with mfr_dot's value, and only pairs a cheap first pass cannot
 * rule out are rescored with mfr_dot, so the result is that of the brute
 * force loop over mfr_dot, the same for every method, block size and thread
 * count. n < 2^32. Free t with mfr_topk_free.
 *
 * MFR_SEARCH_FP32: block x block tiles of mfr_sgemm; a pair is rescored when
 * its float similarity is within 1e-3 + d * 2.4e-7 of the threshold (float
 * rounding of a GEMM over unit rows is about d * 2^-24).
 *
 * MFR_SEARCH_INT8: each row x is quantised with its own step,
 *   u = fl(max_i |x_i| / 127),  q = round(x / u) in -127..127,  x~ = q u,
 * tiles of at most 512 x 512 (block caps them) of P = q_x . q_y come from
 * mfr_qgemm_s8 exactly, and x~ . y~ = P u_x u_y. With e_x = x - x~,
 *   x.y = x~.y~ + x~.e_y + e_x.y      (x = x~ + e_x, then y = y~ + e_y)
 * and by Cauchy-Schwarz on the two error terms
 *   |x.y - x~.y~| <= |x~| |e_y| + |e_x| |y| = B(x, y).
 * A pair is rescored unless
 *   P u_x u_y < thr' - |e_x|' |y| - |x~| |e_y|'
 * where thr' = thr - 1e-6 (1 + |thr|) absorbs mfr_dot's final rounding to
 * float (2^-24 |thr|) and the |thr| part of this test's float rounding,
 * and |e|' = |e| (1 + 1e-6) + 1e-5 |x| adds 1e-5 |x| |y| and more to the
 * bound, which absorbs the test's float rounding of P u_x u_y (3 roundings,
 * under 2e-7 |x~||y~| < 8e-7 |x||y|: |e_x| <= sqrt(d) u / 2 < 1.01 |x| for
 * d <= 65536), the test's rounding of its threshold side (under 4e-7 |x||y|),
 * mfr_dot's double sum (d 2^-53 |x||y|) and the norms' own rounding to
 * float. So a pair with mfr_dot >= thr is never skipped. Rows with a
 * non-finite value, or a largest |x_i| outside [2^-40, 2^40] (where those
 * float margins are not argued), are rescored against every row; zero rows
 * are exact (x~ = x = 0). For unit rows of 512 d, B is about 0.016, so only
 * pairs within about that of the threshold are rescored. */
int mfr_pair_search(const float *c, size_t n, uint32_t d, float threshold, int k, size_t block, int threads,
		    int method, mfr_topk *t, mfr_error *e);

/* mfr_pair_search by MFR_SEARCH_FP32's rule with its block x block tiles
 * from the producer fn (score.h; gsim.h's GPU GEMM) instead of mfr_sgemm;
 * bind (may be NULL) is called with c before the first tile and with NULL
 * after the last. fn is called from the calling thread only. The producer's
 * float sums must be as close to the exact dot product as a float32 GEMM's
 * (TF32 would not be: its ~1e-3 relative error exceeds the margin); then
 * the result is mfr_pair_search's. t->method is MFR_SEARCH_BLOCKS. */
int mfr_pair_search_with(const float *c, size_t n, uint32_t d, float threshold, int k, size_t block,
			 int threads, mfr_block_fn fn, mfr_bind_fn bind, void *ctx, mfr_topk *t, mfr_error *e);
void mfr_topk_free(mfr_topk *t);

/* Whether j is among i's kept neighbours. */
int mfr_topk_has(const mfr_topk *t, uint32_t i, uint32_t j);

/* An edge between two classes a < b. */
typedef struct {
	uint32_t a, b;
	float sim;
	int fate; /* after mfr_merge_classes: MFR_EDGE_* */
} mfr_edge;

enum {
	MFR_EDGE_MERGED = 0,    /* joined two groups */
	MFR_EDGE_REDUNDANT = 1, /* both ends were already in one group */
	MFR_EDGE_CAPPED = 2,    /* refused: the union would exceed the size cap */
};
const char *mfr_edge_fate(int fate);

/* The edges of a search: each pair (a, b) once, present when b is among a's
 * top k or a among b's (mutual: both), sorted by similarity descending, then
 * a, then b ascending. *edges is allocated (caller frees). */
int mfr_topk_edges(const mfr_topk *t, int mutual, mfr_edge **edges, size_t *n_edges, mfr_error *e);

/* Union-find over n classes with group sizes. */
typedef struct {
	uint32_t *parent, *size;
	size_t n;
} mfr_uf;

int mfr_uf_init(mfr_uf *u, size_t n, mfr_error *e);
void mfr_uf_free(mfr_uf *u);
uint32_t mfr_uf_find(mfr_uf *u, uint32_t x);

/* Processes the edges in the given order (mfr_topk_edges' order: strongest
 * first) and sets each edge's fate: a union is refused when the merged group
 * would hold more than cap classes (cap 0: no cap). */
void mfr_merge_classes(mfr_uf *u, mfr_edge *edges, size_t n_edges, uint64_t cap);

/* Compact new labels: group g gets the number of groups whose smallest class
 * comes before g's smallest class, so labels are 0..groups-1 in the order of
 * each group's smallest old label, whatever the order of the unions. Writes
 * newlab[0..n); returns the number of groups. */
size_t mfr_uf_labels(mfr_uf *u, int32_t *newlab);

#endif
