/* gsim.cu — the GPU similarity-block producer of gsim.h: the bound operand
 * sets in device chunks, each block as float32 GEMMs (mfr_gemm_cuda, TF32
 * off) over the pieces its rows fall into, and page-locked lanes that carry
 * blocks back to the callers. No kernels: the only device work is cuBLAS
 * and copies, all on g's one stream, so stream order alone keeps a block's
 * buffers from being overwritten while an earlier block still reads them.
 *
 * Locks: `gpu` guards g, the bound sets, the device buffers and the
 * counters; `pool` guards which lanes are busy. A lane (its page-locked
 * buffer and event) belongs to one caller between lane_take and lane_give. */
#include "gpu_impl.h" /* defines: struct mfr_gpu, MFR_CUDA_CHECK */

#include <limits.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

extern "C" {
#include "gsim.h" /* defines: mfr_gsim_* */
}

extern "C" {

/* A caller holds a lane only while its block is computed and copied out,
 * not while it scans the block, and the GPU work of blocks runs one after
 * another on the stream: a few lanes keep it busy. More callers wait for a
 * lane; the cap bounds the page-locked memory (16 blocks). */
enum { MAX_LANES = 16 };

/* One bound operand set: the caller's rows, and the device copies of its
 * first nres chunks of chunk_rows rows (the last chunk may be shorter). */
typedef struct {
	const float *host;
	int64_t n;
	int64_t nchunk, nres;
	float **chunk; /* nchunk slots, the first nres filled */
} gset;

typedef struct {
	float *host;      /* page-locked, cap floats */
	size_t cap;
	cudaEvent_t done; /* recorded after the block's copy into host */
	int has_event, busy;
} lane;

/* Rows [off, off + n) of a block, on the device at p (row stride dim). */
typedef struct {
	int64_t off, n;
	const float *p;
} piece;

struct mfr_gsim {
	mfr_gpu *g;
	size_t budget_opt; /* 0: from the free memory at bind */
	int64_t chunk_opt; /* 0: 1 GiB of rows */
	pthread_mutex_t gpu;
	int dim, nset;
	int64_t chunk_rows; /* of the binding; 0 when nothing is bound */
	gset set[2];
	float *stage[2];      /* device: rows of a (0) and b (1) copied up for one block */
	size_t stage_cap[2];  /* floats */
	float *out;           /* device: the block */
	size_t out_cap;
	mfr_gsim_stats st;
	pthread_mutex_t pool;
	pthread_cond_t freed;
	lane lanes[MAX_LANES];
	int nlanes;
};

mfr_gsim *mfr_gsim_new(mfr_gpu *g, size_t budget, int64_t chunk_rows, mfr_error *e)
{
	mfr_gsim *s = (mfr_gsim *)calloc(1, sizeof *s);
	if (!s) {
		mfr_fail(e, "out of memory");
		return NULL;
	}
	s->g = g;
	s->budget_opt = budget;
	s->chunk_opt = chunk_rows > 0 ? chunk_rows : 0;
	pthread_mutex_init(&s->gpu, NULL);
	pthread_mutex_init(&s->pool, NULL);
	pthread_cond_init(&s->freed, NULL);
	mfr_gpu_set_tf32(g, 0); /* scores within float rounding of the CPU's */
	return s;
}

/* Frees the bound sets' device copies (under the gpu lock). */
static void drop(mfr_gsim *s)
{
	for (int i = 0; i < 2; i++) {
		gset *t = &s->set[i];
		for (int64_t k = 0; k < t->nres; k++)
			mfr_gpu_free(s->g, t->chunk[k]);
		free(t->chunk);
		memset(t, 0, sizeof *t);
	}
	s->nset = 0;
	s->dim = 0;
	s->chunk_rows = 0;
	s->st.rows_bound = s->st.rows_resident = s->st.chunk_rows = 0;
}

void mfr_gsim_free(mfr_gsim *s)
{
	if (!s)
		return;
	if (cudaSetDevice(mfr_gpu_device(s->g)) != cudaSuccess)
		cudaGetLastError();
	drop(s);
	mfr_gpu_free(s->g, s->stage[0]);
	mfr_gpu_free(s->g, s->stage[1]);
	mfr_gpu_free(s->g, s->out);
	for (int i = 0; i < s->nlanes; i++) {
		if (s->lanes[i].has_event)
			cudaEventDestroy(s->lanes[i].done);
		mfr_gpu_host_free(s->g, s->lanes[i].host);
	}
	pthread_mutex_destroy(&s->gpu);
	pthread_mutex_destroy(&s->pool);
	pthread_cond_destroy(&s->freed);
	free(s);
}

/* A device buffer of at least want floats. Growing frees the old one,
 * which first waits for the stream: queued blocks may still read it. */
static int grow(mfr_gsim *s, float **p, size_t *cap, size_t want, mfr_error *e)
{
	if (*p && *cap >= want)
		return 0;
	mfr_gpu_free(s->g, *p);
	*p = NULL;
	*cap = 0;
	if (!(*p = (float *)mfr_gpu_alloc(s->g, want * sizeof(float), e)))
		return -1;
	*cap = want;
	return 0;
}

static int bind_locked(mfr_gsim *s, const float *a, int64_t na, const float *b, int64_t nb, int dim,
		       mfr_error *e)
{
	MFR_CUDA_CHECK(e, cudaSetDevice(mfr_gpu_device(s->g)));
	drop(s);
	if (!a)
		return 0;
	if (!b || dim < 1 || na < 0 || nb < 0)
		return mfr_fail(e, "gpu similarity: bad operand sets (%lld and %lld rows of %d)", (long long)na,
				(long long)nb, dim);
	size_t row = (size_t)dim * sizeof(float);
	int64_t C = s->chunk_opt > 0 ? s->chunk_opt : (int64_t)(((size_t)1 << 30) / row);
	if (C < 1)
		C = 1;
	size_t budget = s->budget_opt;
	if (!budget) {
		/* what the blocks need (a tile, its rows, a lane's copy) is far
		 * below the 1 GiB (or an eighth of the device) left over */
		size_t f = 0, t = 0, spare;
		mfr_gpu_memory(s->g, &f, &t);
		spare = t / 8 > ((size_t)1 << 30) ? t / 8 : (size_t)1 << 30;
		budget = f > spare ? f - spare : 0;
	}
	s->dim = dim;
	s->chunk_rows = C;
	s->st.chunk_rows = C;
	s->set[0].host = a;
	s->set[0].n = na;
	s->nset = 1;
	if (b != a || nb != na) {
		s->set[1].host = b;
		s->set[1].n = nb;
		s->nset = 2;
	}
	size_t used = 0;
	for (int i = 0; i < s->nset; i++) {
		gset *t = &s->set[i];
		t->nchunk = (t->n + C - 1) / C;
		t->chunk = (float **)calloc(t->nchunk > 0 ? (size_t)t->nchunk : 1, sizeof *t->chunk);
		if (!t->chunk)
			return mfr_fail(e, "out of memory");
		s->st.rows_bound += t->n;
		/* a prefix of chunks, while the budget lasts: the rest stays on
		 * the host and goes up with each block that needs it */
		for (int64_t k = 0; k < t->nchunk; k++) {
			int64_t rows = t->n - k * C < C ? t->n - k * C : C;
			size_t bytes = (size_t)rows * row;
			if (used + bytes > budget)
				break;
			mfr_error full;
			float *p = (float *)mfr_gpu_alloc(s->g, bytes, &full);
			if (!p)
				break; /* the free memory was overstated: stop here, not fail */
			t->chunk[t->nres++] = p;
			used += bytes;
			if (mfr_gpu_put(s->g, p, t->host + (size_t)k * (size_t)C * (size_t)dim, bytes, e) < 0)
				return -1;
			s->st.bytes_bound += bytes;
			s->st.rows_resident += rows;
		}
	}
	s->st.binds++;
	return 0;
}

int mfr_gsim_bind(void *ctx, const float *a, int64_t na, const float *b, int64_t nb, int dim, mfr_error *e)
{
	mfr_gsim *s = (mfr_gsim *)ctx;
	pthread_mutex_lock(&s->gpu);
	int rc = bind_locked(s, a, na, b, nb, dim, e);
	if (rc < 0)
		drop(s);
	pthread_mutex_unlock(&s->gpu);
	return rc;
}

/* The bound set holding rows x[0 .. n) whole, row-aligned, with the bound
 * dimension; *r0 gets the first row's index in it. NULL: none. */
static const gset *find(const mfr_gsim *s, const float *x, int64_t n, int dim, int64_t *r0)
{
	if (dim != s->dim)
		return NULL;
	uintptr_t px = (uintptr_t)x, row = (uintptr_t)dim * sizeof(float);
	for (int i = 0; i < s->nset; i++) {
		const gset *t = &s->set[i];
		uintptr_t h = (uintptr_t)t->host;
		if (px < h || (px - h) % row)
			continue;
		uintptr_t r = (px - h) / row;
		if (r <= (uintptr_t)t->n && (uintptr_t)n <= (uintptr_t)t->n - r) {
			*r0 = (int64_t)r;
			return t;
		}
	}
	return NULL;
}

/* Rows x[0 .. n) of a block as device pieces, in order: the rows of a bound
 * set's resident chunks in place (one piece per chunk touched), then the
 * rest (rows past the resident prefix, or of no bound set) in one piece,
 * copied up to stage[w]. pc has room for n / chunk_rows + 3 pieces. */
static int pieces(mfr_gsim *s, int w, const float *x, int64_t n, int dim, piece *pc, int64_t *np, mfr_error *e)
{
	int64_t r0 = 0, done = 0;
	const gset *t = find(s, x, n, dim, &r0);
	*np = 0;
	if (t) {
		int64_t C = s->chunk_rows, res = t->nres * C < t->n ? t->nres * C : t->n;
		while (done < n && r0 + done < res) {
			int64_t r = r0 + done, k = r / C, end = (k + 1) * C < r0 + n ? (k + 1) * C : r0 + n;
			pc[(*np)++] = piece{done, end - r, t->chunk[k] + (size_t)(r - k * C) * (size_t)dim};
			done = end - r0;
		}
	}
	if (done < n) {
		size_t m = (size_t)(n - done) * (size_t)dim;
		if (grow(s, &s->stage[w], &s->stage_cap[w], m, e) < 0)
			return -1;
		MFR_CUDA_CHECK(e, cudaMemcpyAsync(s->stage[w], x + (size_t)done * (size_t)dim, m * sizeof(float),
						  cudaMemcpyHostToDevice, s->g->stream));
		pc[(*np)++] = piece{done, n - done, s->stage[w]};
		s->st.bytes_staged += m * sizeof(float);
	}
	return 0;
}

/* Queues block (a, b) into lane l: its GEMMs into out, then out's copy into
 * l's page-locked buffer and l's event. Under the gpu lock. */
static int enqueue(mfr_gsim *s, lane *l, const float *a, int64_t na, const float *b, int64_t nb, int dim,
		   piece *pa, piece *pb, mfr_error *e)
{
	mfr_gpu *g = s->g;
	size_t cells = (size_t)na * (size_t)nb;
	MFR_CUDA_CHECK(e, cudaSetDevice(mfr_gpu_device(g)));
	if (!l->has_event) {
		MFR_CUDA_CHECK(e, cudaEventCreateWithFlags(&l->done, cudaEventDisableTiming));
		l->has_event = 1;
	}
	if (l->cap < cells) { /* the lane's last copy is done: its owner waited for it */
		mfr_gpu_host_free(g, l->host);
		l->cap = 0;
		if (!(l->host = (float *)mfr_gpu_host_alloc(g, cells * sizeof(float), e)))
			return -1;
		l->cap = cells;
	}
	if (grow(s, &s->out, &s->out_cap, cells, e) < 0)
		return -1;
	int64_t npa = 0, npb = 0;
	if (pieces(s, 0, a, na, dim, pa, &npa, e) < 0 || pieces(s, 1, b, nb, dim, pb, &npb, e) < 0)
		return -1;
	for (int64_t i = 0; i < npa; i++)
		for (int64_t j = 0; j < npb; j++)
			if (mfr_gemm_cuda(0, 1, (int)pa[i].n, (int)pb[j].n, dim, 1.0f, pa[i].p, dim, pb[j].p, dim, 0.0f,
					  s->out + (size_t)pa[i].off * (size_t)nb + (size_t)pb[j].off, (int)nb, MFR_F32,
					  MFR_F32, g, e) < 0)
				return -1;
	MFR_CUDA_CHECK(e, cudaMemcpyAsync(l->host, s->out, cells * sizeof(float), cudaMemcpyDeviceToHost, g->stream));
	MFR_CUDA_CHECK(e, cudaEventRecord(l->done, g->stream));
	s->st.blocks++;
	s->st.gemms += (uint64_t)(npa * npb);
	s->st.bytes_back += cells * sizeof(float);
	return 0;
}

static lane *lane_take(mfr_gsim *s)
{
	lane *l = NULL;
	pthread_mutex_lock(&s->pool);
	for (;;) {
		for (int i = 0; i < s->nlanes && !l; i++)
			if (!s->lanes[i].busy)
				l = &s->lanes[i];
		if (!l && s->nlanes < MAX_LANES)
			l = &s->lanes[s->nlanes++]; /* zeroed by calloc */
		if (l)
			break;
		pthread_cond_wait(&s->freed, &s->pool);
	}
	l->busy = 1;
	pthread_mutex_unlock(&s->pool);
	return l;
}

static void lane_give(mfr_gsim *s, lane *l)
{
	pthread_mutex_lock(&s->pool);
	l->busy = 0;
	pthread_cond_signal(&s->freed);
	pthread_mutex_unlock(&s->pool);
}

static int lane_wait(lane *l, mfr_error *e)
{
	MFR_CUDA_CHECK(e, cudaEventSynchronize(l->done));
	return 0;
}

int mfr_gsim_block(void *ctx, const float *a, int64_t na, const float *b, int64_t nb, int dim, float *out,
		   int64_t ldo, mfr_error *e)
{
	mfr_gsim *s = (mfr_gsim *)ctx;
	if (na < 0 || nb < 0 || dim < 1 || ldo < nb || na > INT_MAX || nb > INT_MAX)
		return mfr_fail(e, "gpu similarity: bad block %lld x %lld of %d (row stride %lld)", (long long)na,
				(long long)nb, dim, (long long)ldo);
	if (na == 0 || nb == 0)
		return 0;
	lane *l = lane_take(s);
	pthread_mutex_lock(&s->gpu);
	int64_t C = s->chunk_rows > 0 ? s->chunk_rows : INT64_MAX;
	piece *pa = (piece *)malloc((size_t)(na / C + 3) * sizeof *pa);
	piece *pb = (piece *)malloc((size_t)(nb / C + 3) * sizeof *pb);
	int rc = pa && pb ? enqueue(s, l, a, na, b, nb, dim, pa, pb, e) : mfr_fail(e, "out of memory");
	if (rc < 0 && cudaStreamSynchronize(s->g->stream) != cudaSuccess) /* nothing may still write the lane */
		cudaGetLastError();
	pthread_mutex_unlock(&s->gpu);
	free(pa);
	free(pb);
	if (rc == 0 && lane_wait(l, e) < 0) {
		rc = -1;
		if (cudaStreamSynchronize(s->g->stream) != cudaSuccess)
			cudaGetLastError();
	}
	if (rc == 0) {
		if (ldo == nb)
			memcpy(out, l->host, (size_t)na * (size_t)nb * sizeof *out);
		else
			for (int64_t i = 0; i < na; i++)
				memcpy(out + (size_t)i * (size_t)ldo, l->host + (size_t)i * (size_t)nb,
				       (size_t)nb * sizeof *out);
	}
	lane_give(s, l);
	return rc;
}

void mfr_gsim_get_stats(mfr_gsim *s, mfr_gsim_stats *st)
{
	pthread_mutex_lock(&s->gpu);
	*st = s->st;
	pthread_mutex_unlock(&s->gpu);
	pthread_mutex_lock(&s->pool);
	st->lanes = s->nlanes;
	pthread_mutex_unlock(&s->pool);
}

} /* extern "C" */
