/* gpfc.cu — the sharded margin-softmax classifier with Partial FC on the
 * GPU (contracts in gpfc.h; the oracle is pfc.c, which this file follows
 * step for step and names where it departs).
 *
 * A step's device work, for n batch rows and S sampled columns:
 *   norm_rows_k   features -> fn, fnorm; sampled weight rows -> wn, wnorm
 *   GEMM          z (n x S) = fn wn^T: cosines
 *   target_k      per row, the margin on its target column (double)
 *   colmax_k      row maxima of the logits and of the cosines -> all-reduce
 *   expsum_k      row sums of exp(logit - max) -> all-reduce
 *   rowloss_k     per row -log p(target), target cosine the largest
 *   grad_k        z = dLoss/dcos in place (the exponentials recomputed)
 *   GEMMs         dfn = z wn, then grad = z^T fn over wn (one buffer: the
 *                 sampled rows' gradient takes the place of their
 *                 normalised copy, which is not read again); dfn -> all-reduce
 *   normb_k       both gradients back through the normalisations (the unit
 *                 rows recomputed from w and their norms, kept in double)
 * The normalisations take a warp per row, in a grid-stride loop over rows;
 * element-wise kernels are grid-stride loops over elements. The three passes over the logits take
 * a block per (row, chunk of SM_COLS columns), so a few rows of millions of
 * columns still fill the device; the chunks' maxima and sums (double) are
 * combined per row in chunk order (deterministic). The GEMMs and the softmax over the
 * n x S logits are float32 (the row sums carried in double, stored as
 * float32). In double, as pfc.c, where the work is only
 * per row or per weight: the normalisations and their backward ((n + S) x
 * d values), the target's margin and the row losses (n values: keeps
 * acos's conditioning out of the comparison with pfc.c), the SGD step (so
 * equal gradients give equal bits).
 *
 * Across ranks: four all-reduces a step (row maxima, row sums, the loss
 * and hits, the feature gradient), through gcomm.h: NCCL on the stream, or
 * staged through the host.
 *
 * Not here: fp16/bf16 logits. */
#include "gpu_impl.h" /* defines: struct mfr_gpu, MFR_FOR, mfr_grid, block_sum, block_max, splitmix_at */

#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "gpfc.h" /* defines: mfr_gpfc_*; through it gcomm.h (mfr_gcomm_allreduce), pfc.h (mfr_pfc_shard) */

#define NORM_EPS 1e-12 /* pfc.c's floor under a norm */
#define PI_D 3.14159265358979323846
#define ROWS_GRID_MAX 65535 /* blocks of a row-wise kernel; more rows loop */
#define SM_COLS 4096        /* columns of a block of the softmax passes (16 a thread) */
static size_t chunks_of(int64_t cols) { return cols > SM_COLS ? (size_t)((cols + SM_COLS - 1) / SM_COLS) : 1; }

/* The device buffers, each one mfr_gpu_alloc, in this order. */
enum { B_W, B_MOM, B_COL, B_SAMPLED, B_WN, B_WNORM, B_Z, B_FN, B_DFN, B_FNORM, B_TCOL, B_RED, B_SUM,
       B_TLOG, B_TDT, B_TCOS, B_ROWL, B_TOT, B_POS, B_LAB, B_SEL, B_OFF, B_PART, NBUF };

/* The sampler (see sample below): 256-way radix selection, tiles of
 * SCAN_THREADS x SCAN_ITEMS classes for the compaction. */
#define SEL_BINS 256
#define SCAN_THREADS 512
#define SCAN_ITEMS 8
#define TILE ((int64_t)SCAN_THREADS * SCAN_ITEMS)
static int64_t tiles_of(int64_t nl) { return nl > 0 ? (nl + TILE - 1) / TILE : 1; }

/* The selection's state on the device. */
typedef struct {
	unsigned long long prefix; /* the high bits of the k-th key decided so far */
	long long k;               /* its rank among the keys that share them */
	unsigned hist[SEL_BINS];
} sel_state;

struct mfr_gpfc {
	mfr_gpu *g;
	int64_t classes, c0, c1, nl; /* shard [c0, c1), nl = c1 - c0 rows */
	int d, max_batch;
	double rate;
	int64_t cap;        /* most columns a step samples */
	void *buf[NBUF];    /* the device buffers, typed below */
	float *w, *mom;     /* nl x d */
	int32_t *col;       /* nl: during a dense step a sampled row's column, else -1 */
	int64_t *sampled;   /* cap: the last sample's local indices, ascending */
	float *wn, *grad;   /* cap x d, one buffer: the normalised sampled rows until the
			     * backward's second GEMM, then dLoss/d(sampled rows) */
	double *wnorm;      /* cap: their norms */
	float *z;           /* max_batch x cap: cosines, then dLoss/dcos */
	float *fn, *dfn;    /* max_batch x d: normalised features; their gradient */
	double *fnorm;      /* max_batch */
	int32_t *tcol;      /* max_batch: target column on this rank, or -1 */
	uint8_t *pos;       /* nl: 1 for the batch's classes during a sample, else 0 */
	int64_t *lab;       /* 2 x max_batch: rows' local labels (-1: another rank's), then the positives */
	sel_state *sel;
	long long *off;     /* 2 x tiles: per tile the sampled and tied classes before it */
	float *red;         /* 2 x max_batch: [0, n) row max of logits, [n, 2n) of cosines */
	float *sum;         /* max_batch: row sums of the exponentials */
	double *tlog;       /* max_batch: the target's logit s * margin(cos) */
	float *tdt, *tcos;  /* max_batch: d margin / d cos, the target's raw cosine */
	double *rowl;       /* 2 x max_batch: [0, n) row loss, [n, 2n) row hit */
	double *tot;        /* 2: loss and hits summed over rows */
	double *part;       /* 2 x max_batch x chunks_of(cap): per row and chunk the maxima, then the sum */
	/* host */
	int64_t nsamp;
	int64_t *hlab;      /* 2 x max_batch, page-locked: what goes to lab */
	cudaEvent_t hlab_sent; /* after its last upload (written again once that is done) */
	double *htot;       /* 2, page-locked: tot, for a deferred loss (mfr_gpfc_loss) */
	cudaEvent_t tot_got; /* after htot's copy */
	int tot_n;          /* its rows; 0: nothing pending */
	int64_t *hsampled;  /* cap, for mfr_gpfc_sampled (allocated by it) */
};

/* The most columns a step samples on a shard of nl classes, as pfc.c:
 * the positives number at most the batch's rows. */
static int64_t cap_of(int64_t nl, double rate, int max_batch)
{
	int64_t want = (int64_t)ceil(rate * (double)nl) + max_batch;
	return want < nl ? want : nl;
}

/* Bytes of each device buffer; the sum is mfr_gpfc_bytes. */
static void layout(int64_t nl, int64_t cap, int d, int B, size_t bytes[NBUF])
{
	size_t L = (size_t)nl, C = (size_t)cap, D = (size_t)d, R = (size_t)B;
	bytes[B_W] = bytes[B_MOM] = L * D * sizeof(float);
	bytes[B_COL] = L * sizeof(int32_t);
	bytes[B_SAMPLED] = C * sizeof(int64_t);
	bytes[B_WN] = C * D * sizeof(float);
	bytes[B_WNORM] = C * sizeof(double);
	bytes[B_Z] = R * C * sizeof(float);
	bytes[B_FN] = bytes[B_DFN] = R * D * sizeof(float);
	bytes[B_FNORM] = R * sizeof(double);
	bytes[B_TCOL] = R * sizeof(int32_t);
	bytes[B_RED] = 2 * R * sizeof(float);
	bytes[B_SUM] = R * sizeof(float);
	bytes[B_TLOG] = R * sizeof(double);
	bytes[B_TDT] = bytes[B_TCOS] = R * sizeof(float);
	bytes[B_ROWL] = 2 * R * sizeof(double);
	bytes[B_TOT] = 2 * sizeof(double);
	bytes[B_POS] = L;
	bytes[B_LAB] = 2 * R * sizeof(int64_t);
	bytes[B_SEL] = sizeof(sel_state);
	bytes[B_OFF] = 2 * (size_t)tiles_of(nl) * sizeof(long long);
	bytes[B_PART] = 2 * R * chunks_of(cap) * sizeof(double);
}

/* ---- kernels ---- */

/* mfr_hash2 of util.c: the second draw of an mfr_rng seeded a*K ^ b, ^ b. */
__device__ static inline uint64_t hash2_dev(uint64_t a, uint64_t b)
{
	return splitmix_at(a * 0xd6e8feb86659fd93ull ^ b, 1) ^ b;
}

/* mfr_pfc_init on the device, one thread per weight: entry k of local row j
 * is the k-th mfr_rng_normal (draws 2k and 2k+1: u, then v) of the rng
 * seeded hash2(seed, c0 + j), in double as util.c, times 0.01, rounded. */
__global__ static void init_k(float *w, float *mom, int64_t c0, size_t nl, int d, uint64_t seed)
{
	MFR_FOR(i, nl * (size_t)d) {
		size_t j = i / (size_t)d, k = i % (size_t)d;
		uint64_t s = hash2_dev(seed, (uint64_t)(c0 + (int64_t)j));
		double u = (double)(splitmix_at(s, 2 * k) >> 11) * 0x1.0p-53;
		double v = (double)(splitmix_at(s, 2 * k + 1) >> 11) * 0x1.0p-53;
		double r = sqrt(-2.0 * log(1.0 - u)) * cos(6.283185307179586 * v);
		w[i] = (float)(0.01 * r);
		mom[i] = 0.f;
	}
}

/* Fills n int32 with v. */
__global__ static void fill_i32_k(int32_t *p, int32_t v, size_t n)
{
	MFR_FOR(i, n)
		p[i] = v;
}

/* ---- the Partial FC sampler (mfr_pfc_choose on the device) ----
 *
 * mfr_pfc_choose keeps the batch's classes (positives) and, of the others,
 * the `need` whose keys hash2(seed, class) are smallest, ties taken in
 * class order; the result ascending. Here: the positives are flagged in
 * pos; the (need-1)-th smallest key of the rest is found digit by digit
 * from the top (8 passes of a 256-bin histogram over the keys that share
 * the digits found so far: hist_k, then pick_k in one thread); then every
 * tile counts its kept and tied classes (count_k), one thread turns the
 * counts into offsets (offsets_k), and each tile writes its kept classes in
 * order (write_k). Keys are recomputed in each pass rather than stored. */

/* pos[lab[i]] = v for the m positives lab[0, m). */
__global__ static void mark_k(uint8_t *pos, const int64_t *lab, int m, uint8_t v)
{
	MFR_FOR(i, (size_t)m)
		pos[lab[i]] = v;
}

__global__ static void sel_init_k(sel_state *st, long long k)
{
	st->prefix = 0;
	st->k = k;
	for (int b = threadIdx.x; b < SEL_BINS; b += blockDim.x)
		st->hist[b] = 0;
}

/* Counts, by their digit at shift, the keys of unflagged classes whose
 * digits above shift are st->prefix's. */
__global__ static void hist_k(sel_state *st, const uint8_t *pos, int64_t nl, int64_t c0, uint64_t seed, int shift)
{
	__shared__ unsigned h[SEL_BINS];
	for (int b = threadIdx.x; b < SEL_BINS; b += blockDim.x)
		h[b] = 0;
	__syncthreads();
	unsigned long long hi = shift == 56 ? 0 : ~0ull << (shift + 8), prefix = st->prefix;
	MFR_FOR(j, (size_t)nl)
		if (!pos[j]) {
			uint64_t key = hash2_dev(seed, (uint64_t)(c0 + (int64_t)j));
			if ((key & hi) == prefix)
				atomicAdd(&h[(key >> shift) & (SEL_BINS - 1)], 1u);
		}
	__syncthreads();
	for (int b = threadIdx.x; b < SEL_BINS; b += blockDim.x)
		if (h[b])
			atomicAdd(&st->hist[b], h[b]);
}

/* The digit at shift of the k-th key: the bin where the running count
 * passes k; k becomes the rank within that bin. Clears the histogram. */
__global__ static void pick_k(sel_state *st, int shift)
{
	if (threadIdx.x == 0) {
		long long k = st->k, before = 0;
		for (int b = 0; b < SEL_BINS; b++) {
			if (k < before + (long long)st->hist[b]) {
				st->prefix |= (unsigned long long)b << shift;
				st->k = k - before;
				break;
			}
			before += st->hist[b];
		}
	}
	__syncthreads();
	for (int b = threadIdx.x; b < SEL_BINS; b += blockDim.x)
		st->hist[b] = 0;
}

/* Exclusive prefix sum of v over the block (SCAN_THREADS threads); *total
 * gets the block's sum. sh: 32 long longs of shared memory. */
__device__ static long long block_scan(long long v, long long *sh, long long *total)
{
	int lane = threadIdx.x & 31, w = threadIdx.x >> 5, nw = blockDim.x >> 5;
	long long x = v;
	for (int o = 1; o < 32; o <<= 1) {
		long long y = __shfl_up_sync(0xffffffffu, x, o);
		if (lane >= o)
			x += y;
	}
	__syncthreads(); /* sh may still be read by a previous call */
	if (lane == 31)
		sh[w] = x;
	__syncthreads();
	if (w == 0) {
		long long t = lane < nw ? sh[lane] : 0;
		for (int o = 1; o < 32; o <<= 1) {
			long long y = __shfl_up_sync(0xffffffffu, t, o);
			if (lane >= o)
				t += y;
		}
		sh[lane] = t;
	}
	__syncthreads();
	*total = sh[nw - 1];
	return x - v + (w > 0 ? sh[w - 1] : 0);
}

/* Class j's fate: 2 kept outright (a positive, or a key below the k-th),
 * 1 tied with the k-th key (kept in class order while ties are wanted), 0
 * dropped. kth = ~0 with all = 1: every class kept. */
__device__ static inline int fate(const uint8_t *pos, int64_t j, int64_t c0, uint64_t seed, unsigned long long kth)
{
	if (pos[j])
		return 2;
	uint64_t key = hash2_dev(seed, (uint64_t)(c0 + j));
	return key < kth ? 2 : key == kth ? 1 : 0;
}

/* Per tile: off[2t] = classes kept outright, off[2t+1] = ties. */
__global__ static void count_k(long long *off, const uint8_t *pos, int64_t nl, int64_t c0, uint64_t seed,
			       const sel_state *st)
{
	__shared__ long long sh[32];
	unsigned long long kth = st->prefix;
	int64_t j0 = (int64_t)blockIdx.x * TILE + (int64_t)threadIdx.x * SCAN_ITEMS;
	long long kept = 0, tied = 0, total;
	for (int q = 0; q < SCAN_ITEMS; q++)
		if (j0 + q < nl) {
			int f = fate(pos, j0 + q, c0, seed, kth);
			kept += f == 2;
			tied += f == 1;
		}
	block_scan(kept, sh, &total);
	if (threadIdx.x == 0)
		off[2 * blockIdx.x] = total;
	block_scan(tied, sh, &total);
	if (threadIdx.x == 0)
		off[2 * blockIdx.x + 1] = total;
}

/* The counts of every tile to offsets: off[2t] = classes written before
 * tile t, off[2t+1] = ties before it. One thread: a few thousand tiles. */
__global__ static void offsets_k(long long *off, int64_t tiles)
{
	if (threadIdx.x || blockIdx.x)
		return;
	long long kept = 0, tied = 0;
	for (int64_t t = 0; t < tiles; t++) {
		long long k = off[2 * t], q = off[2 * t + 1];
		off[2 * t] = kept;
		off[2 * t + 1] = tied;
		kept += k;
		tied += q;
	}
}

/* Writes each tile's kept classes, ascending: the outright ones and the
 * first `take` ties of the whole shard. off[2t] then counts only the
 * outright ones before the tile: the ties kept before it are added here. */
__global__ static void write_k(int64_t *sampled, const long long *off, const uint8_t *pos, int64_t nl, int64_t c0,
			       uint64_t seed, const sel_state *st)
{
	__shared__ long long sh[32];
	unsigned long long kth = st->prefix;
	long long take = st->k + 1, total;
	int64_t j0 = (int64_t)blockIdx.x * TILE + (int64_t)threadIdx.x * SCAN_ITEMS;
	int f[SCAN_ITEMS];
	long long tied = 0;
	for (int q = 0; q < SCAN_ITEMS; q++) {
		f[q] = j0 + q < nl ? fate(pos, j0 + q, c0, seed, kth) : 0;
		tied += f[q] == 1;
	}
	long long t0 = off[2 * blockIdx.x + 1], tie = t0 + block_scan(tied, sh, &total);
	long long kept = 0;
	for (int q = 0; q < SCAN_ITEMS; q++) {
		if (f[q] == 1)
			f[q] = tie++ < take ? 2 : 0;
		kept += f[q] == 2;
	}
	long long ties_before = t0 < take ? t0 : take; /* ties kept in earlier tiles */
	long long at = off[2 * blockIdx.x] + ties_before + block_scan(kept, sh, &total);
	for (int q = 0; q < SCAN_ITEMS; q++)
		if (f[q] == 2)
			sampled[at++] = j0 + q;
}

/* sampled[j] = j: every class of the shard. */
__global__ static void iota_k(int64_t *sampled, size_t n)
{
	MFR_FOR(j, n)
		sampled[j] = (int64_t)j;
}

/* tcol[i] = the column of row i's local label lab[i] among the S sampled
 * classes (ascending), or -1 (another rank's class, or not sampled). */
__global__ static void tcol_k(int32_t *tcol, const int64_t *lab, int n, const int64_t *sampled, int64_t S)
{
	MFR_FOR(i, (size_t)n) {
		int64_t l = lab[i], lo = 0, hi = S;
		while (lo < hi) {
			int64_t mid = lo + (hi - lo) / 2;
			if (sampled[mid] < l)
				lo = mid + 1;
			else
				hi = mid;
		}
		tcol[i] = l >= 0 && lo < S && sampled[lo] == l ? (int32_t)lo : -1;
	}
}

/* Sum of v over the block in double (blockDim.x a multiple of 32); as
 * block_sum of gpu_impl.h, sh 32 doubles. */
__device__ static inline double block_sum_d(double v, double *sh)
{
	int lane = threadIdx.x & 31, w = threadIdx.x >> 5, nw = blockDim.x >> 5;
	for (int o = 16; o > 0; o >>= 1)
		v += __shfl_xor_sync(0xffffffffu, v, o);
	__syncthreads();
	if (lane == 0)
		sh[w] = v;
	__syncthreads();
	v = lane < nw ? sh[lane] : 0.0;
	for (int o = 16; o > 0; o >>= 1)
		v += __shfl_xor_sync(0xffffffffu, v, o);
	return v;
}

/* The sum of v over the warp, every lane gets it. */
__device__ static inline double warp_sum_d(double v)
{
	for (int o = 16; o > 0; o >>= 1)
		v += __shfl_xor_sync(0xffffffffu, v, o);
	return v;
}

/* A warp per row r of rows (blocks a multiple of 32 threads: the loop is
 * the same for the warp's lanes); warp_rows_grid's blocks of MFR_THREADS. */
#define WARP_ROWS(r, rows) \
	for (size_t r = ((size_t)blockIdx.x * blockDim.x + threadIdx.x) >> 5; r < (rows); \
	     r += ((size_t)gridDim.x * blockDim.x) >> 5)
static unsigned warp_rows_grid(size_t rows)
{
	size_t b = (rows * 32 + MFR_THREADS - 1) / MFR_THREADS;
	return (unsigned)(b < 1 ? 1 : b < ROWS_GRID_MAX ? b : ROWS_GRID_MAX);
}

/* Row r of y (rows x d) = row idx[r] of x (idx NULL: row r) over its L2
 * norm, the norm (floored at NORM_EPS) into nrm[r] in double (pfc.c keeps
 * it as a float: normb_k rounds it so): pfc.c's normalize_rows in its own
 * double arithmetic (the squares of floats are exact in double), so the
 * unit rows match the CPU's to the last bit but for ties, and unit_el gives
 * them again from x and nrm. A warp per row (WARP_ROWS): millions of
 * sampled rows of 512 values each keep the device busy without a block's
 * synchronisations per row. */
__device__ static inline float unit_el(float x, double nr) { return (float)((double)x / nr); }

__global__ static void norm_rows_k(float *y, double *nrm, const float *x, const int64_t *idx, size_t rows, int d)
{
	int lane = threadIdx.x & 31;
	WARP_ROWS(r, rows) {
		const float *xr = x + (size_t)(idx ? idx[r] : (int64_t)r) * (size_t)d;
		double s = 0;
		for (int k = lane; k < d; k += 32)
			s += (double)xr[k] * (double)xr[k];
		s = warp_sum_d(s);
		double nr = sqrt(s);
		if (nr < NORM_EPS)
			nr = NORM_EPS;
		for (int k = lane; k < d; k += 32)
			y[r * (size_t)d + k] = unit_el(xr[k], nr);
		if (lane == 0)
			nrm[r] = nr;
	}
}

/* Per row with its target on this rank (tcol >= 0): the target's raw
 * cosine, its logit s * (cos(m1 theta + m2) - m3) (or the monotonic
 * fallback past theta + m2 > pi) and the derivative in the cosine: pfc.c's
 * margin_target, in double. Rows without: zeros, never read. */
__global__ static void target_k(double *tlog, float *tdt, float *tcos, const float *z, const int32_t *tcol, int n,
				size_t S, double s, double m1, double m2, double m3)
{
	MFR_FOR(i, (size_t)n) {
		int tc = tcol[i];
		if (tc < 0) {
			tlog[i] = 0;
			tdt[i] = 0.f;
			tcos[i] = 0.f;
			continue;
		}
		float raw = z[i * S + (size_t)tc];
		double c = raw, t, dt;
		if (m1 == 1 && m2 == 0) {
			dt = 1;
			t = c - m3;
		} else {
			c = c > 1 ? 1 : c < -1 ? -1 : c;
			double th = acos(c), u = m1 * th + m2;
			if (u > PI_D) {
				dt = 1;
				t = c - m3 - m2 * sin(m2);
			} else {
				double st = sqrt(1 - c * c);
				dt = m1 * sin(u) / (st > 1e-6 ? st : 1e-6);
				t = cos(u) - m3;
			}
		}
		tlog[i] = s * t;
		tdt[i] = (float)dt;
		tcos[i] = raw;
	}
}

/* The softmax passes' blocks: x a chunk of SM_COLS columns, y rows (a
 * grid-stride loop past ROWS_GRID_MAX). */
#define CHUNK_ROWS(i, j0, j1, n, S)                                                                    \
	for (size_t i = blockIdx.y, j0 = (size_t)blockIdx.x * SM_COLS,                                   \
		    j1 = j0 + SM_COLS < (S) ? j0 + SM_COLS : (S);                                           \
	     i < (size_t)(n); i += gridDim.y)

/* The logit of column j of row i: s * cos, or the target's margin logit. */
__device__ static inline float logit_of(float s, float c, size_t j, int64_t tc, double tl)
{
	return (int64_t)j == tc ? (float)tl : s * c;
}

/* The exponential of column j relative to zmax: for an ordinary column one
 * fma (s * cos is exact in it, so the columns near the maximum lose nothing
 * to rounding); the target's in double from its double logit. */
__device__ static inline float exp_of(float s, float c, size_t j, int64_t tc, double tl, float zmax)
{
	return (int64_t)j == tc ? (float)exp(tl - (double)zmax) : expf(fmaf(s, c, -zmax));
}

/* Per row i and chunk k: the largest logit and cosine of the chunk to
 * part[(i nch + k) 2 + 0, 1]; -inf over no columns. */
__global__ static void colmax_k(double *part, const float *z, const int32_t *tcol, const double *tlog, int n, size_t S,
				float s)
{
	__shared__ float sh[32];
	CHUNK_ROWS(i, j0, j1, n, S) {
		const float *zi = z + i * S;
		int64_t tc = tcol[i];
		float mz = -INFINITY, mc = -INFINITY;
		for (size_t j = j0 + threadIdx.x; j < j1; j += blockDim.x) {
			float cj = zi[j];
			mc = fmaxf(mc, cj);
			mz = fmaxf(mz, logit_of(s, cj, j, tc, tlog[i]));
		}
		mz = block_max(mz, sh);
		mc = block_max(mc, sh);
		if (threadIdx.x == 0) {
			size_t o = (i * gridDim.x + blockIdx.x) * 2;
			part[o] = mz;
			part[o + 1] = mc;
		}
	}
}

/* Per row: red[i] = max logit, red[n + i] = max cosine over its nch chunks. */
__global__ static void rowmax_k(float *red, const double *part, int n, int nch)
{
	MFR_FOR(i, (size_t)n) {
		float mz = -INFINITY, mc = -INFINITY;
		for (int k = 0; k < nch; k++) {
			mz = fmaxf(mz, (float)part[(i * nch + k) * 2]);
			mc = fmaxf(mc, (float)part[(i * nch + k) * 2 + 1]);
		}
		red[i] = mz;
		red[(size_t)n + i] = mc;
	}
}

/* Per row i and chunk k: the sum of the chunk's exponentials (exp_of) to
 * part[i nch + k], in double (pfc.c's too: at a million columns float
 * would round at every step). */
__global__ static void expsum_k(double *part, const float *z, const float *red, const int32_t *tcol,
				const double *tlog, int n, size_t S, float s)
{
	__shared__ double sh[32];
	CHUNK_ROWS(i, j0, j1, n, S) {
		const float *zi = z + i * S;
		int64_t tc = tcol[i];
		float zmax = red[i];
		double sum = 0;
		for (size_t j = j0 + threadIdx.x; j < j1; j += blockDim.x)
			sum += exp_of(s, zi[j], j, tc, tlog[i], zmax);
		sum = block_sum_d(sum, sh);
		if (threadIdx.x == 0)
			part[i * gridDim.x + blockIdx.x] = sum;
	}
}

/* Per row: sum[i] = its chunks' sums, added in chunk order. */
__global__ static void rowsum_k(float *sum, const double *part, int n, int nch)
{
	MFR_FOR(i, (size_t)n) {
		double t = 0;
		for (int k = 0; k < nch; k++)
			t += part[i * nch + k];
		sum[i] = (float)t;
	}
}

/* Per row owned here: rowl[i] = -log p(target) = log(sum) - (logit -
 * max), pfc.c's loss; rowl[n + i] = 1 when the target's cosine is the
 * row's largest. 0 and 0 for rows owned elsewhere. */
__global__ static void rowloss_k(double *rowl, const float *sum, const float *red, const int32_t *tcol,
				 const float *tcos, const double *tlog, int n)
{
	MFR_FOR(i, (size_t)n) {
		int tc = tcol[i];
		double l = 0, hit = 0;
		if (tc >= 0) {
			/* -log p = log(sum) - (logit - zmax), as pfc.c: exact even
			 * where exp(logit - zmax) underflowed to 0 */
			l = log((double)sum[i]) - (tlog[i] - (double)red[i]);
			hit = tcos[i] >= red[(size_t)n + i];
		}
		rowl[i] = l;
		rowl[(size_t)n + i] = hit;
	}
}

/* z = dLoss/dcos in place: scale * (p - [target]) * (d margin/d cos on the
 * target), scale = s / n, p = exp_of / sum (the exponential as expsum_k). */
__global__ static void grad_k(float *z, const float *sum, const float *red, const int32_t *tcol, const double *tlog,
			      const float *tdt, int n, size_t S, float s, float scale)
{
	CHUNK_ROWS(i, j0, j1, n, S) {
		float *zi = z + i * S, zmax = red[i], si = sum[i];
		int64_t tc = tcol[i];
		for (size_t j = j0 + threadIdx.x; j < j1; j += blockDim.x) {
			float pj = exp_of(s, zi[j], j, tc, tlog[i], zmax) / si;
			zi[j] = scale * ((int64_t)j == tc ? (pj - 1.f) * tdt[i] : pj);
		}
	}
}

/* loss and hits summed over the n rows of rowl, in double: one block of
 * MFR_THREADS (a power of two). */
__global__ static void tot_k(double *tot, const double *rowl, int n)
{
	__shared__ double sh[2][MFR_THREADS];
	double a = 0, b = 0;
	for (int i = threadIdx.x; i < n; i += blockDim.x) {
		a += rowl[i];
		b += rowl[(size_t)n + i];
	}
	sh[0][threadIdx.x] = a;
	sh[1][threadIdx.x] = b;
	__syncthreads();
	for (int h = blockDim.x / 2; h > 0; h >>= 1) {
		if ((int)threadIdx.x < h) {
			sh[0][threadIdx.x] += sh[0][threadIdx.x + h];
			sh[1][threadIdx.x] += sh[1][threadIdx.x + h];
		}
		__syncthreads();
	}
	if (threadIdx.x == 0) {
		tot[0] = sh[0][0];
		tot[1] = sh[1][0];
	}
}

/* Back through y = x / |x| per row: dx = (dy - y (y . dy)) / |x|, in double
 * as pfc.c's normalize_backward (which divides by the norm as a float). y
 * is the unit rows, or, NULL, made again from row idx[r] of x and nrm as
 * norm_rows_k made them (the same bits). dx may be dy (each lane rewrites
 * only the elements it read, after its warp's dot product is complete). A
 * warp per row. */
__global__ static void normb_k(float *dx, const float *dy, const float *y, const float *x, const int64_t *idx,
			       const double *nrm, size_t rows, int d)
{
	int lane = threadIdx.x & 31;
	WARP_ROWS(r, rows) {
		size_t o = r * (size_t)d;
		const float *xr = y ? NULL : x + (size_t)idx[r] * (size_t)d;
		double nr = nrm[r], dot = 0;
		for (int k = lane; k < d; k += 32)
			dot += (double)(y ? y[o + k] : unit_el(xr[k], nr)) * (double)dy[o + k];
		dot = warp_sum_d(dot);
		double nf = (float)nr;
		for (int k = lane; k < d; k += 32)
			dx[o + k] = (float)(((double)dy[o + k] - (double)(y ? y[o + k] : unit_el(xr[k], nr)) * dot) / nf);
	}
}

/* pfc.c's sgd_row for one entry, the same double operations with no fused
 * multiply-add (the _rn intrinsics are never contracted), so the same
 * inputs round to the same floats. */
__device__ static inline void sgd_el(float *w, float *v, size_t i, double g, double lr, double mu, double wd)
{
	float gt = (float)__dadd_rn(g, __dmul_rn(wd, (double)w[i]));
	float vt = (float)__dadd_rn(__dmul_rn(mu, (double)v[i]), (double)gt);
	v[i] = vt;
	w[i] = (float)__dsub_rn((double)w[i], __dmul_rn(lr, (double)vt));
}

/* Sparse step: the S sampled rows, one thread per entry. */
__global__ static void sgd_sparse_k(float *w, float *v, const float *grad, const int64_t *sampled, size_t S, int d,
				    double lr, double mu, double wd)
{
	int lane = threadIdx.x & 31;
	WARP_ROWS(k, S) {
		size_t wo = (size_t)sampled[k] * (size_t)d, go = k * (size_t)d;
		for (int t = lane; t < d; t += 32)
			sgd_el(w, v, wo + t, (double)grad[go + t], lr, mu, wd);
	}
}
__global__ static void sgd_dense_k(float *w, float *v, const float *grad, const int32_t *col, size_t nl, int d,
				   double lr, double mu, double wd)
{
	int lane = threadIdx.x & 31;
	WARP_ROWS(j, nl) {
		int32_t k = col[j];
		size_t wo = j * (size_t)d, go = (size_t)(k >= 0 ? k : 0) * (size_t)d;
		for (int t = lane; t < d; t += 32)
			sgd_el(w, v, wo + t, k >= 0 ? (double)grad[go + t] : 0.0, lr, mu, wd);
	}
}
__global__ static void setcol_k(int32_t *col, const int64_t *sampled, size_t S, int set)
{
	MFR_FOR(k, S)
		col[sampled[k]] = set ? (int32_t)k : -1;
}

/* ---- the API ---- */

extern "C" {

size_t mfr_gpfc_bytes(int64_t classes, int d, double rate, int max_batch, int size)
{
	if (classes < 1 || d < 1 || max_batch < 1 || !(rate > 0 && rate <= 1) || size < 1)
		return 0;
	int64_t c0, c1;
	mfr_pfc_shard(classes, 0, size, &c0, &c1);
	size_t bytes[NBUF], total = 0;
	layout(c1 - c0, cap_of(c1 - c0, rate, max_batch), d, max_batch, bytes);
	for (int i = 0; i < NBUF; i++)
		total += bytes[i];
	return total;
}

void mfr_gpfc_free(mfr_gpfc *p)
{
	if (!p)
		return;
	for (int i = 0; i < NBUF; i++)
		mfr_gpu_free(p->g, p->buf[i]);
	if (p->hlab_sent)
		cudaEventDestroy(p->hlab_sent);
	if (p->tot_got)
		cudaEventDestroy(p->tot_got);
	mfr_gpu_host_free(p->g, p->hlab);
	mfr_gpu_host_free(p->g, p->htot);
	free(p->hsampled);
	free(p);
}

mfr_gpfc *mfr_gpfc_new(mfr_gpu *g, int64_t classes, int d, double rate, int max_batch, int rank, int size,
		       mfr_error *e)
{
	if (classes < 1 || d < 1 || max_batch < 1 || !(rate > 0 && rate <= 1) || size < 1 || rank < 0 || rank >= size) {
		mfr_fail(e, "classifier: bad sizes (classes %lld, dimension %d, rate %g, batch %d)", (long long)classes, d,
			 rate, max_batch);
		return NULL;
	}
	mfr_gpfc *p = (mfr_gpfc *)calloc(1, sizeof *p);
	if (!p) {
		mfr_fail(e, "out of memory");
		return NULL;
	}
	p->g = g;
	p->classes = classes, p->d = d, p->rate = rate, p->max_batch = max_batch;
	mfr_pfc_shard(classes, rank, size, &p->c0, &p->c1);
	p->nl = p->c1 - p->c0;
	p->cap = cap_of(p->nl, rate, max_batch);
	if (p->cap > INT_MAX) { /* GEMM sizes and col's columns are int */
		mfr_fail(e, "classifier: %lld sampled columns are too many for one GPU GEMM (more ranks, a lower rate)",
			 (long long)p->cap);
		free(p);
		return NULL;
	}
	size_t bytes[NBUF];
	layout(p->nl, p->cap, d, max_batch, bytes);
	for (int i = 0; i < NBUF; i++)
		if (!(p->buf[i] = mfr_gpu_alloc(g, bytes[i], e)))
			goto fail;
	p->w = (float *)p->buf[B_W];
	p->mom = (float *)p->buf[B_MOM];
	p->col = (int32_t *)p->buf[B_COL];
	p->sampled = (int64_t *)p->buf[B_SAMPLED];
	p->wn = p->grad = (float *)p->buf[B_WN];
	p->wnorm = (double *)p->buf[B_WNORM];
	p->z = (float *)p->buf[B_Z];
	p->fn = (float *)p->buf[B_FN];
	p->dfn = (float *)p->buf[B_DFN];
	p->fnorm = (double *)p->buf[B_FNORM];
	p->tcol = (int32_t *)p->buf[B_TCOL];
	p->red = (float *)p->buf[B_RED];
	p->sum = (float *)p->buf[B_SUM];
	p->tlog = (double *)p->buf[B_TLOG];
	p->tdt = (float *)p->buf[B_TDT];
	p->tcos = (float *)p->buf[B_TCOS];
	p->rowl = (double *)p->buf[B_ROWL];
	p->tot = (double *)p->buf[B_TOT];
	p->pos = (uint8_t *)p->buf[B_POS];
	p->lab = (int64_t *)p->buf[B_LAB];
	p->sel = (sel_state *)p->buf[B_SEL];
	p->off = (long long *)p->buf[B_OFF];
	p->part = (double *)p->buf[B_PART];
	if (!(p->hlab = (int64_t *)mfr_gpu_host_alloc(g, 2 * (size_t)max_batch * sizeof *p->hlab, e)) ||
	    !(p->htot = (double *)mfr_gpu_host_alloc(g, 2 * sizeof *p->htot, e)))
		goto fail;
	for (int k = 0; k < 2; k++) {
		cudaEvent_t *ev = k ? &p->tot_got : &p->hlab_sent;
		if (cudaEventCreateWithFlags(ev, cudaEventDisableTiming) != cudaSuccess) {
			cudaGetLastError();
			*ev = NULL;
			mfr_fail(e, "classifier: cannot create a CUDA event");
			goto fail;
		}
	}
	/* zero weight and momentum (as pfc.c's calloc) and the gradient (a step
	 * before any forward_backward moves nothing but decay), no positives
	 * flagged, col all -1 */
	if (mfr_gpu_zero(g, p->w, bytes[B_W], e) < 0 || mfr_gpu_zero(g, p->mom, bytes[B_MOM], e) < 0 ||
	    mfr_gpu_zero(g, p->grad, bytes[B_WN], e) < 0 || mfr_gpu_zero(g, p->pos, bytes[B_POS], e) < 0)
		goto fail;
	fill_i32_k<<<mfr_grid(g, (size_t)p->nl, MFR_THREADS), MFR_THREADS, 0, g->stream>>>(p->col, -1, (size_t)p->nl);
	mfr_gpu_launched(g, "gpfc fill");
	if (mfr_gpu_sync(g, e) < 0)
		goto fail;
	return p;
fail:
	mfr_gpfc_free(p);
	return NULL;
}

float *mfr_gpfc_weights(mfr_gpfc *p) { return p->w; }
float *mfr_gpfc_momentum(mfr_gpfc *p) { return p->mom; }
const float *mfr_gpfc_grad(const mfr_gpfc *p) { return p->grad; }

void mfr_gpfc_range(const mfr_gpfc *p, int64_t *c0, int64_t *c1)
{
	*c0 = p->c0;
	*c1 = p->c1;
}

const int64_t *mfr_gpfc_sampled(mfr_gpfc *p, int64_t *count, mfr_error *e)
{
	if (!p->hsampled && !(p->hsampled = (int64_t *)malloc((p->cap ? p->cap : 1) * sizeof *p->hsampled))) {
		mfr_fail(e, "out of memory");
		return NULL;
	}
	if (mfr_gpu_get(p->g, p->hsampled, p->sampled, (size_t)p->nsamp * sizeof *p->hsampled, e) < 0)
		return NULL;
	*count = p->nsamp;
	return p->hsampled;
}

void mfr_gpfc_init(mfr_gpfc *p, uint64_t seed)
{
	mfr_gpu *g = p->g;
	size_t n = (size_t)p->nl * (size_t)p->d;
	init_k<<<mfr_grid(g, n, MFR_THREADS), MFR_THREADS, 0, g->stream>>>(p->w, p->mom, p->c0, (size_t)p->nl, p->d,
									 seed);
	mfr_gpu_launched(g, "gpfc init");
}

int mfr_gpfc_put(mfr_gpfc *p, const float *w, const float *mom, mfr_error *e)
{
	size_t bytes = (size_t)p->nl * (size_t)p->d * sizeof(float);
	if (w && mfr_gpu_put(p->g, p->w, w, bytes, e) < 0)
		return -1;
	if (mom && mfr_gpu_put(p->g, p->mom, mom, bytes, e) < 0)
		return -1;
	return 0;
}

int mfr_gpfc_get(mfr_gpfc *p, float *w, float *mom, mfr_error *e)
{
	size_t bytes = (size_t)p->nl * (size_t)p->d * sizeof(float);
	if (mfr_gpu_sync(p->g, e) < 0)
		return -1;
	if (w && mfr_gpu_get(p->g, w, p->w, bytes, e) < 0)
		return -1;
	if (mom && mfr_gpu_get(p->g, mom, p->mom, bytes, e) < 0)
		return -1;
	return 0;
}

static int cmp_i64(const void *a, const void *b)
{
	int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
	return x < y ? -1 : x > y;
}

int64_t mfr_gpfc_sample(mfr_gpfc *p, const int32_t *labels, int n, uint64_t step_seed, mfr_error *e)
{
	if (n < 1 || n > p->max_batch)
		return mfr_fail(e, "classifier: batch of %d rows, built for 1..%d", n, p->max_batch);
	for (int i = 0; i < n; i++)
		if (labels[i] < 0 || labels[i] >= p->classes)
			return mfr_fail(e, "label %d of row %d outside the %lld classes", labels[i], i, (long long)p->classes);
	mfr_gpu *g = p->g;
	cudaStream_t st = g->stream;
	p->nsamp = 0;
	/* the rows' local labels, then the distinct positives, ascending (once
	 * the last upload has read hlab: at once, but for back-to-back samples) */
	MFR_CUDA_CHECK(e, cudaEventSynchronize(p->hlab_sent));
	int64_t *rl = p->hlab, *ps = p->hlab + n;
	int npos = 0;
	for (int i = 0; i < n; i++) {
		int64_t l = (int64_t)labels[i] - p->c0;
		rl[i] = l >= 0 && l < p->nl ? l : -1;
		if (rl[i] >= 0)
			ps[npos++] = l;
	}
	qsort(ps, (size_t)npos, sizeof *ps, cmp_i64);
	int m = 0;
	for (int i = 0; i < npos; i++)
		if (m == 0 || ps[i] != ps[m - 1])
			ps[m++] = ps[i];
	npos = m;
	if (mfr_gpu_put_async(g, p->lab, p->hlab, (size_t)(n + npos) * sizeof *p->hlab, e) < 0)
		return -1;
	MFR_CUDA_CHECK(e, cudaEventRecord(p->hlab_sent, st));
	int64_t quota = p->rate >= 1 ? p->nl : (int64_t)ceil(p->rate * (double)p->nl);
	int64_t need = quota > npos ? quota - npos : 0, rest = p->nl - npos, count;
	if (need >= rest) { /* every class */
		count = p->nl;
		iota_k<<<mfr_grid(g, (size_t)count, MFR_THREADS), MFR_THREADS, 0, st>>>(p->sampled, (size_t)count);
	} else if (need == 0) { /* the positives alone */
		count = npos;
		if (mfr_gpu_copy(g, p->sampled, p->lab + n, (size_t)npos * sizeof *p->sampled, e) < 0)
			return -1;
	} else { /* the positives and the need smallest other keys */
		count = npos + need;
		int64_t tiles = tiles_of(p->nl);
		if (npos)
			mark_k<<<mfr_grid(g, (size_t)npos, MFR_THREADS), MFR_THREADS, 0, st>>>(p->pos, p->lab + n, npos, 1);
		sel_init_k<<<1, SEL_BINS, 0, st>>>(p->sel, (long long)(need - 1));
		for (int shift = 56; shift >= 0; shift -= 8) {
			hist_k<<<mfr_grid(g, (size_t)p->nl, MFR_THREADS), MFR_THREADS, 0, st>>>(p->sel, p->pos, p->nl, p->c0,
												 step_seed, shift);
			pick_k<<<1, SEL_BINS, 0, st>>>(p->sel, shift);
		}
		count_k<<<(unsigned)tiles, SCAN_THREADS, 0, st>>>(p->off, p->pos, p->nl, p->c0, step_seed, p->sel);
		offsets_k<<<1, 32, 0, st>>>(p->off, tiles);
		write_k<<<(unsigned)tiles, SCAN_THREADS, 0, st>>>(p->sampled, p->off, p->pos, p->nl, p->c0, step_seed,
								 p->sel);
		if (npos)
			mark_k<<<mfr_grid(g, (size_t)npos, MFR_THREADS), MFR_THREADS, 0, st>>>(p->pos, p->lab + n, npos, 0);
	}
	if (count > p->cap) /* cannot happen: cap bounds quota + positives */
		return mfr_fail(e, "classifier: %lld columns sampled, room for %lld", (long long)count, (long long)p->cap);
	if (count > 0)
		tcol_k<<<mfr_grid(g, (size_t)n, MFR_THREADS), MFR_THREADS, 0, st>>>(p->tcol, p->lab, n, p->sampled, count);
	mfr_gpu_launched(g, "gpfc sample");
	if (mfr_gpu_check(g, "gpfc sample", e) < 0)
		return -1;
	p->nsamp = count;
	return count;
}

/* Blocks for a row-wise kernel over rows rows. */
static unsigned rows_grid(size_t rows) { return (unsigned)(rows < 1 ? 1 : rows < ROWS_GRID_MAX ? rows : ROWS_GRID_MAX); }

int mfr_gpfc_forward_backward(mfr_gpfc *p, mfr_gcomm *c, const float *feat, const int32_t *labels, int n,
			      const mfr_margin *m, double *loss, double *acc, float *dfeat, mfr_error *e)
{
	if (n < 1 || n > p->max_batch)
		return mfr_fail(e, "classifier: batch of %d rows, built for 1..%d", n, p->max_batch);
	mfr_gpu *g = p->g;
	cudaStream_t st = g->stream;
	int d = p->d;
	int64_t S = p->nsamp;
	size_t Sz = (size_t)S;
	float s = (float)m->s;

	(void)labels; /* sample found each row's target column (tcol) */
	if (S == 0)
		fill_i32_k<<<mfr_grid(g, (size_t)n, MFR_THREADS), MFR_THREADS, 0, st>>>(p->tcol, -1, (size_t)n);

	/* normalised features and sampled rows; cosines */
	norm_rows_k<<<warp_rows_grid((size_t)n), MFR_THREADS, 0, st>>>(p->fn, p->fnorm, feat, NULL, (size_t)n, d);
	mfr_gpu_launched(g, "gpfc norm features");
	if (S > 0) {
		norm_rows_k<<<warp_rows_grid(Sz), MFR_THREADS, 0, st>>>(p->wn, p->wnorm, p->w, p->sampled, Sz, d);
		mfr_gpu_launched(g, "gpfc norm rows");
		if (mfr_gemm_cuda(0, 1, n, (int)S, d, 1.f, p->fn, d, p->wn, d, 0.f, p->z, (int)S, MFR_F32, MFR_F32, g, e) < 0)
			return -1;
	}

	/* margins, row maxima over all ranks */
	target_k<<<mfr_grid(g, (size_t)n, MFR_THREADS), MFR_THREADS, 0, st>>>(p->tlog, p->tdt, p->tcos, p->z, p->tcol, n,
									       Sz, m->s, m->m1, m->m2, m->m3);
	mfr_gpu_launched(g, "gpfc target");
	dim3 chunks((unsigned)chunks_of(S), rows_grid((size_t)n));
	colmax_k<<<chunks, MFR_THREADS, 0, st>>>(p->part, p->z, p->tcol, p->tlog, n, Sz, s);
	rowmax_k<<<mfr_grid(g, (size_t)n, MFR_THREADS), MFR_THREADS, 0, st>>>(p->red, p->part, n, (int)chunks.x);
	mfr_gpu_launched(g, "gpfc rowmax");
	if (mfr_gpu_check(g, "gpfc forward", e) < 0 || mfr_gcomm_allreduce(c, p->red, (size_t)2 * n, MFR_F32, MFR_MAX, e) < 0)
		return -1;

	/* the sums of the exponentials over all ranks */
	expsum_k<<<chunks, MFR_THREADS, 0, st>>>(p->part, p->z, p->red, p->tcol, p->tlog, n, Sz, s);
	rowsum_k<<<mfr_grid(g, (size_t)n, MFR_THREADS), MFR_THREADS, 0, st>>>(p->sum, p->part, n, (int)chunks.x);
	mfr_gpu_launched(g, "gpfc exp");
	if (mfr_gpu_check(g, "gpfc softmax", e) < 0 || mfr_gcomm_allreduce(c, p->sum, (size_t)n, MFR_F32, MFR_SUM, e) < 0)
		return -1;

	/* loss and accuracy, then the gradient in the cosines in place of z */
	rowloss_k<<<mfr_grid(g, (size_t)n, MFR_THREADS), MFR_THREADS, 0, st>>>(p->rowl, p->sum, p->red, p->tcol, p->tcos,
										p->tlog, n);
	mfr_gpu_launched(g, "gpfc rowloss");
	tot_k<<<1, MFR_THREADS, 0, st>>>(p->tot, p->rowl, n);
	mfr_gpu_launched(g, "gpfc tot");
	if (S > 0) {
		grad_k<<<chunks, MFR_THREADS, 0, st>>>(p->z, p->sum, p->red, p->tcol, p->tlog, p->tdt, n, Sz, s,
						       (float)(m->s / n));
		mfr_gpu_launched(g, "gpfc grad");
	}
	if (mfr_gpu_check(g, "gpfc loss", e) < 0 || mfr_gcomm_allreduce(c, p->tot, 2, MFR_F64, MFR_SUM, e) < 0 ||
	    mfr_gpu_get_async(g, p->htot, p->tot, 2 * sizeof *p->htot, e) < 0)
		return -1;
	MFR_CUDA_CHECK(e, cudaEventRecord(p->tot_got, st));
	p->tot_n = n;
	if (loss && mfr_gpfc_loss(p, loss, acc, e) < 0)
		return -1;

	/* dfn = dz wn, then grad = dz^T fn written over wn (in this order: one
	 * buffer); nothing sampled here: this rank adds 0 */
	if (S == 0) {
		if (mfr_gpu_zero(g, p->dfn, (size_t)n * d * sizeof(float), e) < 0)
			return -1;
	} else if (mfr_gemm_cuda(0, 0, n, d, (int)S, 1.f, p->z, (int)S, p->wn, d, 0.f, p->dfn, d, MFR_F32, MFR_F32, g,
				 e) < 0 ||
		   mfr_gemm_cuda(1, 0, (int)S, d, n, 1.f, p->z, (int)S, p->fn, d, 0.f, p->grad, d, MFR_F32, MFR_F32, g,
				 e) < 0)
		return -1;
	if (mfr_gcomm_allreduce(c, p->dfn, (size_t)n * d, MFR_F32, MFR_SUM, e) < 0)
		return -1;
	normb_k<<<warp_rows_grid((size_t)n), MFR_THREADS, 0, st>>>(dfeat, p->dfn, p->fn, NULL, NULL, p->fnorm,
								    (size_t)n, d);
	mfr_gpu_launched(g, "gpfc feature gradient");
	if (S > 0) {
		normb_k<<<warp_rows_grid(Sz), MFR_THREADS, 0, st>>>(p->grad, p->grad, NULL, p->w, p->sampled, p->wnorm,
								     Sz, d);
		mfr_gpu_launched(g, "gpfc row gradient");
	}
	return mfr_gpu_check(g, "gpfc backward", e);
}

int mfr_gpfc_loss(mfr_gpfc *p, double *loss, double *acc, mfr_error *e)
{
	if (!p->tot_n)
		return mfr_fail(e, "classifier: no loss pending");
	MFR_CUDA_CHECK(e, cudaEventSynchronize(p->tot_got));
	*loss = p->htot[0] / p->tot_n;
	*acc = p->htot[1] / p->tot_n;
	p->tot_n = 0;
	return 0;
}

void mfr_gpfc_step(mfr_gpfc *p, double lr, double mu, double wd, int sparse)
{
	mfr_gpu *g = p->g;
	cudaStream_t st = g->stream;
	size_t S = (size_t)p->nsamp, nl = (size_t)p->nl;
	if (sparse) {
		if (S > 0) {
			sgd_sparse_k<<<warp_rows_grid(S), MFR_THREADS, 0, st>>>(p->w, p->mom, p->grad, p->sampled, S, p->d, lr,
										 mu, wd);
			mfr_gpu_launched(g, "gpfc sparse step");
		}
		return;
	}
	if (S > 0) {
		setcol_k<<<mfr_grid(g, S, MFR_THREADS), MFR_THREADS, 0, st>>>(p->col, p->sampled, S, 1);
		mfr_gpu_launched(g, "gpfc columns");
	}
	sgd_dense_k<<<warp_rows_grid(nl), MFR_THREADS, 0, st>>>(p->w, p->mom, p->grad, p->col, nl, p->d, lr, mu, wd);
	mfr_gpu_launched(g, "gpfc dense step");
	if (S > 0) {
		setcol_k<<<mfr_grid(g, S, MFR_THREADS), MFR_THREADS, 0, st>>>(p->col, p->sampled, S, 0);
		mfr_gpu_launched(g, "gpfc columns");
	}
}

} /* extern "C" */
