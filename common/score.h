/* score.h — verification and identification metrics over embeddings: the
 * library behind mfr-score. It reads EMBEDDING streams into memory, produces
 * similarity blocks by GEMM (gemm.h), streams every score of a protocol
 * through a collector that keeps all genuine scores, a bounded exact
 * selection of the highest impostor scores and a fine histogram of all of
 * them, and computes TAR@FAR (two semantics), FNMR@FMR, EER, AUC, ROC
 * points, k-fold accuracy and identification ranks from what it kept.
 * It never stores all scores, so all pairs of 10^5 faces fit in memory.
 *
 * Convention: a score is a similarity, higher means "same person". Cosine
 * similarity is the dot product of L2-normalised vectors; the Euclidean
 * option scores -distance, so one rule serves both: a pair is accepted
 * (a match) when its score is strictly greater than the threshold.
 *
 * Errors are returned (mfr_error); nothing here exits or prints. */
#ifndef MFR_SCORE_H
#define MFR_SCORE_H

#include <stddef.h>
#include <stdint.h>

#include "util.h" /* defines: mfr_error */

/* ---- embedding sets ---- */

/* n embeddings of dim floats, row-major, with their ids, labels, flags. */
typedef struct {
	int64_t n;
	int dim;
	float *vec; /* n x dim, owned */
	uint64_t *ids;
	int32_t *labels;
	uint32_t *flags;
} mfr_emb_set;

/* Reads every EMBEDDING record of the files (n == 0: stdin; "-" stdin) into
 * s (fp16 widened). Errors: unreadable or damaged stream, FACE records, a
 * dimension that differs between files ("'b.mfr': dimension 256, but
 * 'a.mfr' has 512"). Free with mfr_emb_set_free. */
int mfr_emb_set_read(const char *const *paths, int n, mfr_emb_set *s, mfr_error *e);
void mfr_emb_set_free(mfr_emb_set *s);

/* dst = the records of src with keep[i] != 0, in order (dst is new). */
int mfr_emb_set_select(const mfr_emb_set *src, const uint8_t *keep, mfr_emb_set *dst, mfr_error *e);

/* Scales every vector to unit L2 norm (a zero vector stays zero). */
void mfr_emb_set_normalize(mfr_emb_set *s);

/* dst = one template per label of src: the mean of the label's vectors, in
 * increasing label order, with the smallest id of the label and the flags
 * of its first record. Records with label -1 are left out. */
int mfr_emb_set_templates(const mfr_emb_set *src, mfr_emb_set *dst, mfr_error *e);


/* ---- scores ---- */

typedef enum { MFR_SIM_COSINE = 0, MFR_SIM_EUCLIDEAN = 1 } mfr_sim;

/* The similarity block producer: out (na x nb, row stride ldo) = a (na x
 * dim) times b (nb x dim) transposed — raw dot products; the caller turns
 * them into scores. The default, mfr_block_gemm, calls mfr_sgemm on the
 * calling thread; the GPU's (gsim.h) copies the operand sets once (the bind
 * hook below) and returns blocks. Called from several threads at once
 * unless the engine has threads = 1. Returns 0 or -1 with e filled. */
typedef int (*mfr_block_fn)(void *ctx, const float *a, int64_t na, const float *b, int64_t nb, int dim,
			    float *out, int64_t ldo, mfr_error *e);
/* The producer's optional bind hook: called from the calling thread with
 * the two operand sets of a run (a: na rows, b: nb rows of dim floats; b ==
 * a for all pairs of one set) before its first block, and with a = b = NULL
 * after its last block, failed runs included. Every block of the run points
 * into these rows, which stay unchanged until the second call, so a GPU
 * producer (gsim.h) uploads them once. Returns 0, or -1 with e filled and
 * nothing held (the run then fails without the second call). */
typedef int (*mfr_bind_fn)(void *ctx, const float *a, int64_t na, const float *b, int64_t nb, int dim,
			   mfr_error *e);
int mfr_block_gemm(void *ctx, const float *a, int64_t na, const float *b, int64_t nb, int dim, float *out,
		   int64_t ldo, mfr_error *e);

/* Bins of the impostor histogram: 2^17 over the score range (for cosine a
 * bin is 1.5e-5 wide, below float32's rounding of a 512-term dot product). */
#define MFR_SCORE_BINS (1 << 17)

/* What a protocol's scores reduce to; see the file comment. Create with
 * mfr_scores_new, feed, then mfr_scores_finish before reading metrics. */
typedef struct mfr_scores mfr_scores;

/* keep: how many of the highest impostor scores to keep exactly (>= 1).
 * [lo, hi]: the histogram's range (scores outside count in the end bins). */
mfr_scores *mfr_scores_new(uint64_t keep, double lo, double hi, mfr_error *e);
void mfr_scores_free(mfr_scores *s);
/* Adds one score. Returns 0, or -1 when memory runs out. */
int mfr_scores_add(mfr_scores *s, float score, int genuine, mfr_error *e);
/* Moves everything src holds into dst (same keep and range); src is left
 * empty. */
int mfr_scores_merge(mfr_scores *dst, mfr_scores *src, mfr_error *e);
/* Sorts what was kept; after this only the readers below may be called. */
int mfr_scores_finish(mfr_scores *s, mfr_error *e);

uint64_t mfr_scores_genuine(const mfr_scores *s);
uint64_t mfr_scores_impostor(const mfr_scores *s);
/* 1 when every impostor score was kept (all metrics exact). */
int mfr_scores_complete(const mfr_scores *s);
/* Genuine scores, ascending (mfr_scores_genuine of them). */
const float *mfr_scores_gen(const mfr_scores *s);
/* The kept impostor scores, descending; *n gets their count. */
const float *mfr_scores_top(const mfr_scores *s, uint64_t *n);

/* How a metric was obtained. */
typedef enum {
	MFR_EXACT = 0,       /* from kept scores: exact */
	MFR_BINNED = 1,      /* the threshold lies below the kept impostor scores: read at a
			      * histogram bin edge (within one bin, 1.5e-5 for cosine) */
	MFR_UNREACHABLE = 2, /* the target FAR is below 1 / impostors: no threshold reaches it */
	MFR_EMPTY = 3,       /* no genuine or no impostor scores */
} mfr_how;

/* Two readings of "TAR at FAR = x":
 * MFR_AT_MOST (bob.measure's far_threshold): the lowest threshold whose FAR
 *   is at most x; with N impostors, a = floor(x*N) may be accepted, so the
 *   threshold is the (a+1)-th highest impostor score (accept: score > it).
 * MFR_NEAREST (insightface's IJB evaluation: sklearn roc_curve with its
 *   default drop_intermediate, then the point whose FAR is nearest to x,
 *   preferring the higher FAR on a distance tie and the higher TAR at one
 *   FAR): the FAR read can sit above x. */
typedef enum { MFR_AT_MOST = 0, MFR_NEAREST = 1 } mfr_far_rule;

typedef struct {
	double tar;       /* true accept rate (1 - FNMR) */
	double far;       /* the FAR actually obtained */
	double threshold; /* accept when score > threshold (nearest: score >= threshold) */
	mfr_how how;
} mfr_op_point;

/* The operating point at target FAR x (0 < x <= 1). */
mfr_op_point mfr_tar_at_far(const mfr_scores *s, double x, mfr_far_rule rule);

/* Equal error rate: at the candidate threshold where FAR (impostors > t)
 * and FRR (genuine <= t) are closest, their mean; *threshold gets t. */
double mfr_eer(const mfr_scores *s, double *threshold, mfr_how *how);

/* Area under the ROC: P(genuine > impostor) + P(equal) / 2. */
double mfr_auc(const mfr_scores *s, mfr_how *how);

/* Impostors with score > t, exact when t is at or above the lowest kept
 * impostor score (or all were kept); else from the histogram (*how BINNED). */
double mfr_impostors_above(const mfr_scores *s, double t, mfr_how *how);
/* Genuine scores > t (exact). */
uint64_t mfr_genuine_above(const mfr_scores *s, double t);

/* ---- protocols ---- */

typedef struct {
	mfr_sim sim;
	int threads;        /* workers, >= 1 */
	int64_t tile;       /* block side (rows and columns), >= 1; 0: 2048 */
	mfr_block_fn block; /* NULL: mfr_block_gemm */
	mfr_bind_fn bind;   /* NULL: none (see mfr_bind_fn) */
	void *block_ctx;
} mfr_engine;

/* All pairs i < j of s (genuine: same label). s must be normalised for
 * cosine; every label must be >= 0. s is REORDERED (sorted by label, then
 * id) so that each label's genuine pairs are one contiguous run. The
 * collector out receives every pair once. */
int mfr_score_all(const mfr_engine *g, mfr_emb_set *s, mfr_scores *out, mfr_error *e);

/* All pairs (p[i], q[j]) of two sets, genuine when the labels are equal
 * (label -1 matches nothing); a pair of records with the same id (the same
 * sample in both sets) is skipped. */
int mfr_score_cross(const mfr_engine *g, const mfr_emb_set *p, const mfr_emb_set *q, mfr_scores *out,
		    mfr_error *e);

/* The score of one pair of rows (normalised for cosine). */
float mfr_pair_score(const mfr_emb_set *s, int64_t i, int64_t j, mfr_sim sim);

/* Identification of each probe against a gallery (usually templates): the
 * gallery's best score per label decides. rank[i] = 1 + the number of other
 * gallery labels scoring at least the probe's mated score (a tie counts
 * against the probe), 0 when its label is not in the gallery (non-mated);
 * mated[i] its mated score (0 for non-mated); top[i] its best score over
 * every label (for non-mated probes: the false-alarm score). */
typedef struct {
	int64_t n;
	int32_t *rank;
	float *mated, *top;
} mfr_ident;
int mfr_identify(const mfr_engine *g, const mfr_emb_set *probe, const mfr_emb_set *gallery, mfr_ident *r,
		 mfr_error *e);
void mfr_ident_free(mfr_ident *r);
/* Fraction of mated probes with rank <= k. */
double mfr_ident_rank(const mfr_ident *r, int k);
/* TPIR at FPIR x (rank 1, at-most rule over the non-mated probes' top
 * scores: threshold = the (floor(x*M)+1)-th highest of M). *how gets
 * UNREACHABLE when x < 1/M and EMPTY without mated or non-mated probes. */
double mfr_ident_tpir(const mfr_ident *r, double x, double *threshold, mfr_how *how);

/* ---- k-fold accuracy (the LFW protocol) ---- */

/* fold[i] for n pairs in k consecutive folds, the first n % k folds one
 * longer (scikit-learn's KFold without shuffling, what insightface uses on
 * the .bin packs; LFW's pairs.txt is 10 such folds of 300 + 300). */
void mfr_kfold_assign(size_t n, int k, int *fold);

/* For each fold f: the threshold that maximises accuracy on the other folds
 * (candidates: midpoints between consecutive distinct scores, and one below
 * the lowest; the highest such threshold on a tie), applied to fold f.
 * acc[f], thr[f] (k entries) get the fold's accuracy and threshold. Returns
 * 0, or -1 when a fold is empty or no pair lies outside a fold. */
int mfr_kfold_accuracy(const float *score, const uint8_t *same, const int *fold, size_t n, int k, double *acc,
		       double *thr, mfr_error *e);

/* ---- text inputs ---- */

/* A pairs list: TSV `id_a id_b same` (data-formats.md 6), what mfr-pack
 * --pairs writes; header row and # comments allowed. */
typedef struct {
	size_t n;
	uint64_t *a, *b;
	uint8_t *same;
} mfr_pairs;
int mfr_pairs_parse(const char *text, size_t len, const char *name, mfr_pairs *p, mfr_error *e);
void mfr_pairs_free(mfr_pairs *p);

/* LFW's pairs.txt: a first line `SETS N`, then SETS x (N lines `name i j`
 * (same person) then N lines `name1 i name2 j`), image numbers from 1.
 * fold[k] is the set of pair k. */
typedef struct {
	size_t n;
	int sets;
	char **name_a, **name_b;
	int *num_a, *num_b, *fold;
	uint8_t *same;
} mfr_lfw_pairs;
int mfr_lfw_pairs_parse(const char *text, size_t len, const char *name, mfr_lfw_pairs *p, mfr_error *e);
void mfr_lfw_pairs_free(mfr_lfw_pairs *p);

/* mfr-pack's label map: TSV `label name count`. */
typedef struct {
	size_t n;
	int32_t *label;
	char **name;
	uint64_t *count;
} mfr_label_map;
int mfr_label_map_parse(const char *text, size_t len, const char *name, mfr_label_map *m, mfr_error *e);
void mfr_label_map_free(mfr_label_map *m);

#endif
