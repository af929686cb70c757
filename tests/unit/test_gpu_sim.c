/* test_gpu_sim.c — the GPU similarity-block producer (gsim.h,
 * common/cuda/gsim.cu) against the CPU's (score.h, mfr_block_gemm) on
 * seeded random rows, and the protocols and the pair search that consume
 * its blocks against their CPU runs:
 *  - blocks of one bound set over the upper triangle of tiles (what
 *    mfr_score_all asks for), d = 512 and 37, odd set sizes and tiles, with
 *    device chunks smaller than a tile and not dividing it (blocks cross
 *    chunk boundaries: several GEMMs per block), and nothing copied up per
 *    block once bound;
 *  - two sets under a memory budget that holds only a prefix of the second:
 *    blocks across the resident/host boundary (rows copied up per block);
 *  - rows of no bound set (after unbinding; a pointer inside a set but not
 *    on a row boundary), a row stride above nb (the rest of each row must
 *    stay untouched), 1 x 1 and empty blocks;
 *  - mfr_score_all, mfr_score_cross and mfr_identify on 4 threads (blocks
 *    requested concurrently) against the CPU engine; mfr_pair_search_with
 *    against mfr_pair_search (fp32), which must agree exactly.
 *
 * Tolerance of a block entry x.y (rows x, y): a float32 dot product of d
 * terms summed in any order (cuBLAS's, with or without FMA or split-K; the
 * CPU GEMM's) is within gamma_d sum |x_i y_i| <= gamma_d |x| |y| of the
 * exact value, gamma_d = d u / (1 - d u), u = 2^-24 (Higham, Accuracy and
 * Stability, 3.1); two such sums are within twice that. TOL(d) = 2 (d + 2)
 * 2^-24 covers it with the rounding of the product's inputs to spare, and is
 * 6.1e-5 at d = 512, 2.3e-6 at d = 37 relative to |x||y| — while a wrong row,
 * offset or stride gives errors of order |x||y|. TF32 (10-bit products,
 * ~1e-3) would fail it, which is the point: gsim must run full float32.
 * The rows have norms between 0.5 and 2 so that scale matters. */
#include "gpu_check.h" /* defines: gcheck_*, CHECK, check_done */

#include "clean.h" /* defines: mfr_pair_search, mfr_pair_search_with */
#include "score.h" /* defines: mfr_block_gemm, mfr_score_all, mfr_emb_set */

#ifdef MFR_HAVE_CUDA

#include "gsim.h" /* defines: mfr_gsim_* */

static double tol_of(int d) { return 2.0 * (d + 2) * 0x1p-24; }

static void die_if(int bad, const char *what, const mfr_error *e)
{
	if (bad)
		gcheck_die(what, e);
}

/* n rows of d floats, uniform directions scaled to norms in [0.5, 2). */
static float *rows(int64_t n, int d, uint64_t seed)
{
	float *x = (float *)gcheck_xmalloc((size_t)n * d * sizeof *x), scale;
	gcheck_fill(x, (size_t)n * d, seed, 1.f);
	for (int64_t i = 0; i < n; i++) {
		double ss = 0;
		for (int k = 0; k < d; k++)
			ss += (double)x[i * d + k] * x[i * d + k];
		gcheck_fill(&scale, 1, seed * 1000003 + (uint64_t)i, 1.f);
		double want = 1.25 + 0.75 * scale; /* 0.5 .. 2 */
		for (int k = 0; k < d; k++)
			x[i * d + k] = (float)(x[i * d + k] * (ss > 0 ? want / sqrt(ss) : 0));
	}
	return x;
}

static double norm(const float *x, int d)
{
	double ss = 0;
	for (int k = 0; k < d; k++)
		ss += (double)x[k] * x[k];
	return sqrt(ss);
}

/* Worst |got - want| / (|a_i| |b_j|) over a block (row stride ldo), and
 * whether the columns nb..ldo of every row still hold the sentinel. */
typedef struct {
	double worst;
	int64_t wi, wj;
	int pad_ok;
} cmp;

static const float SENTINEL = 12345.f;

static cmp compare(const float *got, const float *want, const float *a, int64_t na, const float *b, int64_t nb,
		   int d, int64_t ldo)
{
	cmp c = {0, 0, 0, 1};
	for (int64_t i = 0; i < na; i++) {
		double nai = norm(a + i * d, d);
		for (int64_t j = 0; j < nb; j++) {
			double s = nai * norm(b + j * d, d), diff = fabs((double)got[i * ldo + j] - want[i * ldo + j]);
			double r = s > 0 ? diff / s : diff;
			if (r != r)
				r = INFINITY;
			if (r > c.worst) {
				c.worst = r;
				c.wi = i;
				c.wj = j;
			}
		}
		for (int64_t j = nb; j < ldo; j++)
			c.pad_ok &= got[i * ldo + j] == SENTINEL;
	}
	return c;
}

/* One block both ways; counts one check. */
static void check_block(mfr_gsim *s, const char *what, const float *a, int64_t na, const float *b, int64_t nb,
			int d, int64_t ldo)
{
	mfr_error e = {{0}};
	size_t cells = (size_t)(na > 0 ? na : 1) * (size_t)ldo;
	float *got = (float *)gcheck_xmalloc(cells * sizeof *got), *want = (float *)gcheck_xmalloc(cells * sizeof *want);
	for (size_t k = 0; k < cells; k++)
		got[k] = want[k] = SENTINEL;
	die_if(mfr_gsim_block(s, a, na, b, nb, d, got, ldo, &e) < 0, what, &e);
	if (na > 0 && nb > 0)
		die_if(mfr_block_gemm(NULL, a, na, b, nb, d, want, ldo, &e) < 0, "cpu block", &e);
	cmp c = compare(got, want, a, na, b, nb, d, ldo);
	int ok = c.worst <= tol_of(d) && c.pad_ok;
	if (!check_report(ok, what, __FILE__, __LINE__))
		fprintf(stderr, "    %s: %lld x %lld of %d: worst at (%lld, %lld): got %.9g want %.9g (%.3g of |a||b| > %.3g)%s\n",
			what, (long long)na, (long long)nb, d, (long long)c.wi, (long long)c.wj,
			na && nb ? got[c.wi * ldo + c.wj] : 0.f, na && nb ? want[c.wi * ldo + c.wj] : 0.f, c.worst, tol_of(d),
			c.pad_ok ? "" : "; the row padding was written");
	free(got);
	free(want);
}

/* Every block (bi <= bj) of one set in tiles of tile rows, each a check. */
static void triangle(mfr_gsim *s, const char *name, const float *x, int64_t n, int d, int64_t tile)
{
	char what[200];
	int64_t nt = (n + tile - 1) / tile;
	for (int64_t bi = 0; bi < nt; bi++)
		for (int64_t bj = bi; bj < nt; bj++) {
			int64_t i0 = bi * tile, j0 = bj * tile;
			int64_t ni = n - i0 < tile ? n - i0 : tile, nj = n - j0 < tile ? n - j0 : tile;
			snprintf(what, sizeof what, "%s: block (%lld, %lld)", name, (long long)bi, (long long)bj);
			check_block(s, what, x + i0 * d, ni, x + j0 * d, nj, d, nj);
		}
}

/* One bound set: all blocks from the device chunks, nothing copied up per
 * block. chunk 0: the default (the set in one chunk). */
static void one_set(mfr_gpu *g, int64_t n, int d, int64_t tile, int64_t chunk, uint64_t seed)
{
	mfr_error e = {{0}};
	char name[120];
	snprintf(name, sizeof name, "one set %lld x %d, tile %lld, chunk %lld", (long long)n, d, (long long)tile,
		 (long long)chunk);
	float *x = rows(n, d, seed);
	mfr_gsim *s = mfr_gsim_new(g, 0, chunk, &e);
	die_if(!s, "gsim new", &e);
	die_if(mfr_gsim_bind(s, x, n, x, n, d, &e) < 0, "bind", &e);
	mfr_gsim_stats a, b;
	mfr_gsim_get_stats(s, &a);
	CHECK_EQ_INT(a.rows_bound, n);
	CHECK_EQ_INT(a.rows_resident, n);
	CHECK_EQ_INT(a.bytes_bound, (uint64_t)n * d * 4);
	triangle(s, name, x, n, d, tile);
	mfr_gsim_get_stats(s, &b);
	int64_t nt = (n + tile - 1) / tile;
	CHECK_EQ_INT(b.blocks - a.blocks, nt * (nt + 1) / 2);
	CHECK_EQ_INT(b.bytes_staged, a.bytes_staged); /* uploaded once */
	if (chunk > 0 && chunk < tile)
		CHECK(b.gemms - a.gemms > b.blocks - a.blocks); /* blocks did cross chunks */
	printf("ok %s: %llu blocks, %llu GEMMs, 0 bytes copied up per block\n", name,
	       (unsigned long long)(b.blocks - a.blocks), (unsigned long long)(b.gemms - a.gemms));
	die_if(mfr_gsim_bind(s, NULL, 0, NULL, 0, 0, &e) < 0, "unbind", &e);
	mfr_gsim_get_stats(s, &b);
	CHECK_EQ_INT(b.rows_bound, 0);
	mfr_gsim_free(s);
	free(x);
}

/* Two sets, a budget that holds p and only the first chunks of q: blocks
 * p x q cross q's resident/host boundary. Then the odd pointers. */
static void two_sets(mfr_gpu *g, int64_t np, int64_t nq, int d, int64_t tile, int64_t chunk, int64_t budget_rows,
		     uint64_t seed)
{
	mfr_error e = {{0}};
	char name[160], what[220];
	snprintf(name, sizeof name, "sets %lld x %lld of %d, tile %lld, chunk %lld, budget %lld rows", (long long)np,
		 (long long)nq, d, (long long)tile, (long long)chunk, (long long)budget_rows);
	float *p = rows(np, d, seed), *q = rows(nq, d, seed + 1);
	mfr_gsim *s = mfr_gsim_new(g, (size_t)budget_rows * d * 4, chunk, &e);
	die_if(!s, "gsim new", &e);
	die_if(mfr_gsim_bind(s, p, np, q, nq, d, &e) < 0, "bind", &e);
	mfr_gsim_stats a, b;
	mfr_gsim_get_stats(s, &a);
	CHECK_EQ_INT(a.rows_bound, np + nq);
	CHECK(a.rows_resident < np + nq); /* the budget left part of q on the host */
	CHECK(a.rows_resident >= np);
	for (int64_t i0 = 0; i0 < np; i0 += tile)
		for (int64_t j0 = 0; j0 < nq; j0 += tile) {
			int64_t ni = np - i0 < tile ? np - i0 : tile, nj = nq - j0 < tile ? nq - j0 : tile;
			snprintf(what, sizeof what, "%s: block (%lld, %lld)", name, (long long)i0, (long long)j0);
			check_block(s, what, p + i0 * d, ni, q + j0 * d, nj, d, nj);
		}
	/* q x p too (the operands' roles swapped), whole, in one block */
	snprintf(what, sizeof what, "%s: all of q x p in one block", name);
	check_block(s, what, q, nq, p, np, d, np);
	mfr_gsim_get_stats(s, &b);
	CHECK(b.bytes_staged > a.bytes_staged);
	/* a pointer inside p but off a row boundary: not the set's rows, so
	 * copied up as given (what the CPU reads too) */
	snprintf(what, sizeof what, "%s: rows off a row boundary", name);
	check_block(s, what, p + 5, (np - 1) / 2, q + 3 * d, 7, d, 7);
	/* a row stride above nb: the padding stays */
	snprintf(what, sizeof what, "%s: row stride 3 above the block", name);
	check_block(s, what, p + d, 9, q + 2 * d, 11, d, 14);
	snprintf(what, sizeof what, "%s: a 1 x 1 block", name);
	check_block(s, what, q + (nq - 1) * d, 1, p, 1, d, 1);
	snprintf(what, sizeof what, "%s: empty blocks", name);
	check_block(s, what, p, 0, q, 5, d, 5);
	check_block(s, what, p, 5, q, 0, d, 1);
	/* unbound: the same rows, all copied up per block */
	die_if(mfr_gsim_bind(s, NULL, 0, NULL, 0, 0, &e) < 0, "unbind", &e);
	mfr_gsim_get_stats(s, &a);
	snprintf(what, sizeof what, "%s: unbound", name);
	check_block(s, what, p + d, np - 1, q, nq < tile ? nq : tile, d, nq < tile ? nq : tile);
	mfr_gsim_get_stats(s, &b);
	CHECK(b.bytes_staged > a.bytes_staged);
	printf("ok %s\n", name);
	mfr_gsim_free(s);
	free(p);
	free(q);
}

/* A labelled set of n unit rows in `labels` labels: each row its label's
 * direction plus noise (genuine scores well above impostors, as real). */
static void labelled(mfr_emb_set *s, int64_t n, int d, int labels, uint64_t seed)
{
	float *c = rows(labels, d, seed), *noise = rows(n, d, seed + 7);
	*s = (mfr_emb_set){.n = n, .dim = d};
	s->vec = (float *)gcheck_xmalloc((size_t)n * d * sizeof *s->vec);
	s->ids = (uint64_t *)gcheck_xmalloc((size_t)n * sizeof *s->ids);
	s->labels = (int32_t *)gcheck_xmalloc((size_t)n * sizeof *s->labels);
	s->flags = (uint32_t *)gcheck_xmalloc((size_t)n * sizeof *s->flags);
	for (int64_t i = 0; i < n; i++) {
		int l = (int)((i * 7919) % labels);
		for (int k = 0; k < d; k++)
			s->vec[i * d + k] = c[l * d + k] + 0.6f * noise[i * d + k];
		s->ids[i] = (uint64_t)(1000 + i);
		s->labels[i] = l;
	}
	mfr_emb_set_normalize(s);
	free(c);
	free(noise);
}

static void copy_set(const mfr_emb_set *src, mfr_emb_set *dst)
{
	mfr_error e = {{0}};
	uint8_t *keep = (uint8_t *)gcheck_xmalloc((size_t)src->n);
	memset(keep, 1, (size_t)src->n);
	die_if(mfr_emb_set_select(src, keep, dst, &e) < 0, "copy set", &e);
	free(keep);
}

/* Two finished collectors: equal counts, kept scores within TOL (unit rows,
 * so |x||y| = 1) element for element in their sorted orders. */
static void same_scores(const char *what, mfr_scores *c, mfr_scores *gp, int d)
{
	char w[200];
	CHECK_EQ_INT(mfr_scores_genuine(gp), mfr_scores_genuine(c));
	CHECK_EQ_INT(mfr_scores_impostor(gp), mfr_scores_impostor(c));
	CHECK(mfr_scores_complete(c) && mfr_scores_complete(gp));
	uint64_t nc, ng;
	const float *tc = mfr_scores_top(c, &nc), *tg = mfr_scores_top(gp, &ng);
	CHECK_EQ_INT(ng, nc);
	snprintf(w, sizeof w, "%s: genuine scores", what);
	gcheck_close(w, mfr_scores_gen(gp), mfr_scores_gen(c), (size_t)mfr_scores_genuine(c), tol_of(d));
	snprintf(w, sizeof w, "%s: impostor scores", what);
	gcheck_close(w, tg, tc, (size_t)(ng < nc ? ng : nc), tol_of(d));
}

/* d(probe i, gallery row k) in double. */
static double dot(const mfr_emb_set *p, int64_t i, const mfr_emb_set *q, int64_t k)
{
	double s = 0;
	for (int j = 0; j < p->dim; j++)
		s += (double)p->vec[i * p->dim + j] * q->vec[k * q->dim + j];
	return s;
}

/* Whether probe i's mated score has a rival label within 4 TOL: there the
 * two sides may rank it differently, and rightly so. */
static int near_tie(const mfr_emb_set *p, int64_t i, const mfr_emb_set *q, int d)
{
	double m = -INFINITY;
	for (int64_t k = 0; k < q->n; k++)
		if (q->labels[k] == p->labels[i])
			m = fmax(m, dot(p, i, q, k));
	for (int64_t k = 0; k < q->n; k++)
		if (q->labels[k] != p->labels[i] && fabs(dot(p, i, q, k) - m) <= 4 * tol_of(d))
			return 1;
	return 0;
}

/* The protocols on 4 threads, GPU blocks against CPU blocks. */
static void protocols(mfr_gpu *g, int64_t n, int d, int labels, int64_t tile, int64_t chunk, uint64_t seed)
{
	mfr_error e = {{0}};
	char what[160];
	snprintf(what, sizeof what, "protocols on %lld x %d, %d labels, tile %lld, chunk %lld", (long long)n, d, labels,
		 (long long)tile, (long long)chunk);
	mfr_gsim *s = mfr_gsim_new(g, 0, chunk, &e);
	die_if(!s, "gsim new", &e);
	mfr_engine cpu = {.sim = MFR_SIM_COSINE, .threads = 4, .tile = tile};
	mfr_engine gpu = cpu;
	gpu.block = mfr_gsim_block;
	gpu.bind = mfr_gsim_bind;
	gpu.block_ctx = s;
	mfr_emb_set a, b;
	labelled(&a, n, d, labels, seed);
	copy_set(&a, &b);

	/* all pairs of one set (each run sorts its own copy the same way) */
	uint64_t all = (uint64_t)n * (uint64_t)(n - 1) / 2;
	mfr_scores *sc = mfr_scores_new(all, -1.001, 1.001, &e), *sg = mfr_scores_new(all, -1.001, 1.001, &e);
	die_if(!sc || !sg, "scores", &e);
	die_if(mfr_score_all(&cpu, &a, sc, &e) < 0, "cpu all", &e);
	die_if(mfr_score_all(&gpu, &b, sg, &e) < 0, "gpu all", &e);
	die_if(mfr_scores_finish(sc, &e) < 0 || mfr_scores_finish(sg, &e) < 0, "finish", &e);
	char w[220];
	snprintf(w, sizeof w, "%s: all", what);
	same_scores(w, sc, sg, d);
	mfr_scores_free(sc);
	mfr_scores_free(sg);

	/* probes (the first third) against a gallery (the rest) */
	uint8_t *keep = (uint8_t *)gcheck_xmalloc((size_t)n);
	for (int64_t i = 0; i < n; i++)
		keep[i] = i < n / 3;
	mfr_emb_set p, q;
	die_if(mfr_emb_set_select(&a, keep, &p, &e) < 0, "probes", &e);
	for (int64_t i = 0; i < n; i++)
		keep[i] = !keep[i];
	die_if(mfr_emb_set_select(&a, keep, &q, &e) < 0, "gallery", &e);
	uint64_t cross = (uint64_t)p.n * (uint64_t)q.n;
	sc = mfr_scores_new(cross, -1.001, 1.001, &e);
	sg = mfr_scores_new(cross, -1.001, 1.001, &e);
	die_if(!sc || !sg, "scores", &e);
	die_if(mfr_score_cross(&cpu, &p, &q, sc, &e) < 0, "cpu cross", &e);
	die_if(mfr_score_cross(&gpu, &p, &q, sg, &e) < 0, "gpu cross", &e);
	die_if(mfr_scores_finish(sc, &e) < 0 || mfr_scores_finish(sg, &e) < 0, "finish", &e);
	snprintf(w, sizeof w, "%s: probes x gallery", what);
	same_scores(w, sc, sg, d);
	mfr_scores_free(sc);
	mfr_scores_free(sg);

	/* identification; a probe's label is missing from the gallery for
	 * labels 0 and 1 (non-mated probes) */
	for (int64_t i = 0; i < n; i++)
		keep[i] = i >= n / 3 && a.labels[i] > 1;
	mfr_emb_set q2;
	die_if(mfr_emb_set_select(&a, keep, &q2, &e) < 0, "gallery", &e);
	mfr_ident ic, ig;
	die_if(mfr_identify(&cpu, &p, &q2, &ic, &e) < 0, "cpu ident", &e);
	die_if(mfr_identify(&gpu, &p, &q2, &ig, &e) < 0, "gpu ident", &e);
	snprintf(w, sizeof w, "%s: ident mated scores", what);
	gcheck_close(w, ig.mated, ic.mated, (size_t)p.n, tol_of(d));
	snprintf(w, sizeof w, "%s: ident best scores", what);
	gcheck_close(w, ig.top, ic.top, (size_t)p.n, tol_of(d));
	int64_t differ = 0, unexplained = 0;
	for (int64_t i = 0; i < p.n; i++)
		if (ig.rank[i] != ic.rank[i]) {
			differ++;
			unexplained += !near_tie(&p, i, &q2, d);
		}
	CHECK_EQ_INT(unexplained, 0);
	printf("ok %s: ident ranks equal but for %lld near ties\n", what, (long long)differ);
	mfr_ident_free(&ic);
	mfr_ident_free(&ig);

	mfr_gsim_stats st;
	mfr_gsim_get_stats(s, &st);
	CHECK_EQ_INT(st.binds, 3);
	CHECK_EQ_INT(st.rows_bound, 0); /* every run unbound at its end */
	CHECK_EQ_INT(st.bytes_staged, 0);
	printf("ok %s: %llu blocks on %d lanes\n", what, (unsigned long long)st.blocks, st.lanes);
	free(keep);
	mfr_emb_set_free(&a);
	mfr_emb_set_free(&b);
	mfr_emb_set_free(&p);
	mfr_emb_set_free(&q);
	mfr_emb_set_free(&q2);
	mfr_gsim_free(s);
}

/* The pair search over the GPU's tiles against the CPU's fp32 search:
 * exactly the same neighbours and similarities (both rescore with mfr_dot).
 * Near pairs are planted (a row and a copy with a little noise). */
static void pair_search(mfr_gpu *g, int64_t n, int d, size_t block, int64_t chunk, uint64_t seed)
{
	mfr_error e = {{0}};
	char what[160];
	snprintf(what, sizeof what, "pair search %lld x %d, block %zu, chunk %lld", (long long)n, d, block,
		 (long long)chunk);
	float *c = rows(n, d, seed), *noise = rows(n, d, seed + 3);
	for (int64_t i = 1; i < n; i += 3) /* row i near row i - 1 */
		for (int k = 0; k < d; k++)
			c[i * d + k] = c[(i - 1) * d + k] + 0.2f * noise[i * d + k];
	for (int64_t i = 0; i < n; i++)
		mfr_unit(c + i * d, (uint32_t)d);
	mfr_gsim *s = mfr_gsim_new(g, 0, chunk, &e);
	die_if(!s, "gsim new", &e);
	mfr_topk tc, tg;
	die_if(mfr_pair_search(c, (size_t)n, (uint32_t)d, 0.8f, 5, block, 2, MFR_SEARCH_FP32, &tc, &e) < 0, "cpu search",
	       &e);
	die_if(mfr_pair_search_with(c, (size_t)n, (uint32_t)d, 0.8f, 5, block, 2, mfr_gsim_block, mfr_gsim_bind, s, &tg,
				    &e) < 0,
	       "gpu search", &e);
	CHECK_EQ_INT(tg.method, MFR_SEARCH_BLOCKS);
	size_t found = 0, differ = 0;
	for (int64_t i = 0; i < n; i++) {
		found += tc.n_nb[i];
		differ += tg.n_nb[i] != tc.n_nb[i] ||
			  memcmp(tg.nb + i * 5, tc.nb + i * 5, tc.n_nb[i] * sizeof *tc.nb) != 0 ||
			  memcmp(tg.sim + i * 5, tc.sim + i * 5, tc.n_nb[i] * sizeof *tc.sim) != 0;
	}
	CHECK(found > (size_t)n / 3); /* the planted pairs were found */
	CHECK_EQ_INT(differ, 0);
	printf("ok %s: %zu neighbours, the same on both (%llu vs %llu rescored)\n", what, found,
	       (unsigned long long)tg.rescored, (unsigned long long)tc.rescored);
	mfr_topk_free(&tc);
	mfr_topk_free(&tg);
	mfr_gsim_free(s);
	free(c);
	free(noise);
}

static void run_all(mfr_gpu *g)
{
	one_set(g, 601, 512, 256, 0, 11);
	one_set(g, 1000, 37, 300, 97, 12);
	one_set(g, 257, 512, 100, 33, 13);
	two_sets(g, 517, 1203, 37, 128, 100, 900, 21);
	two_sets(g, 130, 411, 512, 64, 50, 250, 22);
	protocols(g, 700, 37, 40, 64, 150, 31);
	protocols(g, 300, 512, 17, 80, 0, 32);
	pair_search(g, 700, 64, 128, 100, 41);
	pair_search(g, 301, 512, 4096, 0, 42);
}

#endif /* MFR_HAVE_CUDA */

int main(void)
{
#ifdef MFR_HAVE_CUDA
	mfr_gpu *g = gcheck_open("gpu similarity blocks");
	if (!g)
		return check_done();
	run_all(g);
	mfr_gpu_close(g);
#else
	printf("skip: gpu similarity blocks: built without CUDA\n");
#endif
	return check_done();
}
