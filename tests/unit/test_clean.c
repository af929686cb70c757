/* test_clean.c — common/clean.c on hand cases: centres, threshold and
 * percentile decisions, small-class policies, rounds that converge, the
 * capped union-find, mutual top-k edges, compact labels; and the blocked
 * pair search, fp32 and int8, against a brute-force double loop on random
 * data for several tile sizes and thread counts (identical output required),
 * and the int8 search on pairs planted at the threshold, rows with large
 * quantisation error and rows its bound does not cover. */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check.h"
#include "clean.h"  /* defines: the functions under test */
#include "record.h" /* defines: mfr_embedding_encode */
#include "stream.h" /* defines: mfr_writer_* */

static void test_centres(void)
{
	mfr_centres cs;
	mfr_error e;
	mfr_centres_init(&cs, 2);
	float a[2] = {1, 0}, b[2] = {0, 1}, c[2] = {0, -1};
	CHECK(mfr_centres_add(&cs, 5, a, &e) == 0);
	CHECK(mfr_centres_add(&cs, 2, b, &e) == 0);
	CHECK(mfr_centres_add(&cs, 5, b, &e) == 0);
	CHECK(mfr_centres_add(&cs, 9, b, &e) == 0);
	CHECK(mfr_centres_add(&cs, 9, c, &e) == 0);
	CHECK(mfr_centres_finish(&cs, &e) == 0);
	CHECK_EQ_INT(cs.n, 3);
	CHECK_EQ_INT(cs.labels[0], 2);
	CHECK_EQ_INT(cs.labels[1], 5);
	CHECK_EQ_INT(cs.labels[2], 9);
	CHECK_EQ_INT(cs.count[1], 2);
	CHECK_EQ_INT(mfr_centres_find(&cs, 5), 1);
	CHECK_EQ_INT(mfr_centres_find(&cs, 3), -1);
	CHECK_EQ_INT(mfr_centres_find(&cs, -1), -1);
	CHECK_NEAR(cs.c[2], sqrt(0.5), 1e-7); /* label 5: (1,1)/sqrt 2 */
	CHECK_NEAR(cs.c[3], sqrt(0.5), 1e-7);
	CHECK(cs.c[4] == 0 && cs.c[5] == 0); /* opposite vectors: a zero centre stays zero */
	mfr_centres_free(&cs);
}

static void test_decide(void)
{
	mfr_error e;
	/* class 0: ten members 0.1 .. 1.0 (shuffled); class 1: two members; one unlabelled */
	float sim[13] = {0.5f, 0.1f, 0.9f, 0.3f, 0.2f, 1.0f, 0.7f, 0.4f, 0.8f, 0.6f, 0.2f, 0.9f, NAN};
	int32_t cls[13] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 1, -1};
	uint8_t why[13];
	mfr_intra_opts o = {.use_threshold = 1, .threshold = 0.45, .iterations = 1};
	CHECK(mfr_intra_decide(&o, sim, cls, 13, 2, why, &e) == 0);
	int kept = 0;
	for (int i = 0; i < 13; i++)
		kept += why[i] == MFR_KEEP;
	CHECK_EQ_INT(kept, 8); /* 0.5..1.0 of class 0, 0.9 of class 1, the unlabelled */
	CHECK_EQ_INT(why[3], MFR_DROP_THRESHOLD);
	CHECK_EQ_INT(why[10], MFR_DROP_THRESHOLD);
	CHECK_EQ_INT(why[12], MFR_KEEP);
	o.drop_unlabelled = 1;
	CHECK(mfr_intra_decide(&o, sim, cls, 13, 2, why, &e) == 0);
	CHECK_EQ_INT(why[12], MFR_DROP_UNLABELLED);

	/* percentile 25: rank floor(10*0.25) = 2 -> value 0.3: 0.1 and 0.2 go; class 1
	 * (2 members): rank 0, nothing goes */
	o = (mfr_intra_opts){.use_percentile = 1, .percentile = 25, .iterations = 1};
	CHECK(mfr_intra_decide(&o, sim, cls, 13, 2, why, &e) == 0);
	CHECK_EQ_INT(why[1], MFR_DROP_PERCENTILE);
	CHECK_EQ_INT(why[4], MFR_DROP_PERCENTILE);
	CHECK_EQ_INT(why[3], MFR_KEEP);
	CHECK_EQ_INT(why[10], MFR_KEEP);
	/* ties at the percentile value stay */
	float tie[4] = {0.5f, 0.5f, 0.5f, 0.9f};
	int32_t c4[4] = {0, 0, 0, 0};
	o.percentile = 50;
	CHECK(mfr_intra_decide(&o, tie, c4, 4, 1, why, &e) == 0);
	CHECK(why[0] == MFR_KEEP && why[1] == MFR_KEEP && why[2] == MFR_KEEP && why[3] == MFR_KEEP);
	o.percentile = 100; /* rank m: nothing is below "past the end" */
	CHECK(mfr_intra_decide(&o, sim, cls, 13, 2, why, &e) == 0);
	CHECK_EQ_INT(why[1], MFR_KEEP);

	/* small classes: threshold 0.85 leaves class 1 with one member (0.9) */
	o = (mfr_intra_opts){.use_threshold = 1, .threshold = 0.85, .min_images = 2, .iterations = 1};
	o.small_policy = MFR_SMALL_KEEP;
	CHECK(mfr_intra_decide(&o, sim, cls, 13, 2, why, &e) == 0);
	CHECK(why[10] == MFR_KEEP && why[11] == MFR_KEEP);
	CHECK_EQ_INT(why[0], MFR_DROP_THRESHOLD); /* class 0 kept 3: untouched by the policy */
	o.small_policy = MFR_SMALL_DROP;
	CHECK(mfr_intra_decide(&o, sim, cls, 13, 2, why, &e) == 0);
	CHECK(why[10] == MFR_DROP_SMALL && why[11] == MFR_DROP_SMALL);
	o.small_policy = MFR_SMALL_SURVIVORS;
	CHECK(mfr_intra_decide(&o, sim, cls, 13, 2, why, &e) == 0);
	CHECK(why[10] == MFR_DROP_THRESHOLD && why[11] == MFR_KEEP);
	o.min_images = 4; /* class 0 now too small as well: survivors keep their 3 */
	CHECK(mfr_intra_decide(&o, sim, cls, 13, 2, why, &e) == 0);
	CHECK(why[2] == MFR_KEEP && why[0] == MFR_DROP_THRESHOLD);
}

/* Writes an EMBEDDING file of 2-d unit vectors at the given angles (degrees),
 * all with label 0 except the last, unlabelled. */
static void write_angles(const char *path, const double *deg, int n)
{
	mfr_error e;
	mfr_schema s = {.kind = MFR_KIND_EMBEDDING, .dim = 2, .dtype = MFR_DTYPE_F32};
	mfr_writer *w = mfr_writer_open(path, &s, NULL, 0, NULL, 0, &e);
	CHECK(w != NULL);
	if (!w)
		return;
	uint8_t buf[24];
	for (int i = 0; i < n; i++) {
		float v[2] = {(float)cos(deg[i] * M_PI / 180), (float)sin(deg[i] * M_PI / 180)};
		mfr_embedding m = {.id = 100 + (uint64_t)i, .label = i == n - 1 ? -1 : 0, .vec = v};
		mfr_embedding_encode(&m, &s, buf);
		CHECK(mfr_writer_put(w, MFR_REC_DATA, buf, sizeof buf, &e) == 0);
	}
	CHECK(mfr_writer_close(w, &e) == 0);
}

static void test_rounds(void)
{
	/* five members at 0 deg, three at 90, one at 50, one unlabelled.
	 * Round 1: centre at ~33.7 deg: the 90s go (cos 56 = 0.55 < 0.8).
	 * Round 2: centre at ~7.7 deg: the 50 goes (cos 42 = 0.74).
	 * Round 3: centre at 0: same set as round 2: stable. */
	char path[] = "/tmp/test_clean.XXXXXX";
	int fd = mkstemp(path);
	CHECK(fd >= 0);
	close(fd);
	double deg[10] = {0, 0, 90, 0, 50, 90, 0, 90, 0, 200};
	write_angles(path, deg, 10);
	const char *paths[1] = {path};
	mfr_error e;
	mfr_intra_opts o = {.use_threshold = 1, .threshold = 0.8, .iterations = 1};
	for (int it = 1; it <= 2; it++) {
		o.iterations = it == 1 ? 1 : 10;
		mfr_passes p;
		mfr_passes_init(&p, paths, 1);
		CHECK(p.spooling == 0);
		mfr_intra_result res;
		int rc = mfr_intra_run(&p, &o, &res, &e);
		CHECK(rc == 0);
		if (rc < 0) {
			fprintf(stderr, "    %s\n", e.msg);
			continue;
		}
		int kept = 0;
		for (size_t i = 0; i < res.n; i++)
			kept += res.why[i] == MFR_KEEP;
		CHECK_EQ_INT(res.n, 10);
		CHECK_EQ_INT(res.classes_in, 1);
		CHECK_EQ_INT(res.classes_out, 1);
		if (it == 1) {
			CHECK_EQ_INT(kept, 7); /* five 0s, the 50, the unlabelled */
			CHECK_EQ_INT(res.rounds, 1);
			CHECK_NEAR(res.sim[0], cos(33.71 * M_PI / 180), 1e-3);
		} else {
			CHECK_EQ_INT(kept, 6);
			CHECK_EQ_INT(res.why[4], MFR_DROP_THRESHOLD);
			CHECK_EQ_INT(res.rounds, 3);
			CHECK_EQ_INT(res.stable, 1);
			CHECK_NEAR(res.sim[0], 1.0, 1e-6);
		}
		CHECK(isnan(res.sim[9]) && res.why[9] == MFR_KEEP);
		mfr_intra_free(&res);
		mfr_passes_close(&p);
	}
	unlink(path);
}

static void test_union_find(void)
{
	mfr_uf u;
	mfr_error e;
	CHECK(mfr_uf_init(&u, 6, &e) == 0);
	/* a chain 0-1-2-3-4 and a chord 0-2, strongest first; cap 3 */
	mfr_edge ed[5] = {{0, 1, 0.9f, -1}, {0, 2, 0.85f, -1}, {1, 2, 0.8f, -1}, {2, 3, 0.7f, -1}, {3, 4, 0.6f, -1}};
	mfr_merge_classes(&u, ed, 5, 3);
	CHECK_EQ_INT(ed[0].fate, MFR_EDGE_MERGED);
	CHECK_EQ_INT(ed[1].fate, MFR_EDGE_MERGED);
	CHECK_EQ_INT(ed[2].fate, MFR_EDGE_REDUNDANT);
	CHECK_EQ_INT(ed[3].fate, MFR_EDGE_CAPPED);
	CHECK_EQ_INT(ed[4].fate, MFR_EDGE_MERGED);
	int32_t lab[6];
	CHECK_EQ_INT(mfr_uf_labels(&u, lab), 3);
	int32_t want[6] = {0, 0, 0, 1, 1, 2};
	CHECK(memcmp(lab, want, sizeof want) == 0);
	mfr_uf_free(&u);
	/* no cap: one chain, one group */
	CHECK(mfr_uf_init(&u, 6, &e) == 0);
	for (int i = 0; i < 5; i++)
		ed[i].fate = -1;
	mfr_merge_classes(&u, ed, 5, 0);
	CHECK_EQ_INT(mfr_uf_labels(&u, lab), 2);
	CHECK(lab[4] == 0 && lab[5] == 1);
	mfr_uf_free(&u);
	/* labels follow each group's smallest class, not the union order */
	CHECK(mfr_uf_init(&u, 5, &e) == 0);
	mfr_edge e2[2] = {{1, 4, 0.9f, -1}, {0, 3, 0.8f, -1}};
	mfr_merge_classes(&u, e2, 2, 0);
	CHECK_EQ_INT(mfr_uf_labels(&u, lab), 3);
	int32_t want2[5] = {0, 1, 2, 0, 1};
	CHECK(memcmp(lab, want2, sizeof want2) == 0);
	mfr_uf_free(&u);
}

static void test_mutual(void)
{
	/* hand top-1 lists: 0 -> 1, 1 -> 2, 2 -> 1, 3 -> none */
	uint32_t n_nb[4] = {1, 1, 1, 0}, nb[4] = {1, 2, 1, 0};
	float sim[4] = {0.7f, 0.9f, 0.9f, 0};
	mfr_topk t = {.n = 4, .k = 1, .n_nb = n_nb, .sim = sim, .nb = nb};
	mfr_edge *ed;
	size_t n;
	mfr_error e;
	CHECK(mfr_topk_edges(&t, 1, &ed, &n, &e) == 0);
	CHECK_EQ_INT(n, 1);
	CHECK(n == 1 && ed[0].a == 1 && ed[0].b == 2);
	free(ed);
	CHECK(mfr_topk_edges(&t, 0, &ed, &n, &e) == 0);
	CHECK_EQ_INT(n, 2); /* (1,2) once, then (0,1) */
	CHECK(n == 2 && ed[0].a == 1 && ed[0].b == 2 && ed[1].a == 0 && ed[1].b == 1);
	free(ed);
}

/* Brute force: every j != i with mfr_dot >= thr, best k by (sim desc, j asc). */
static void brute(const float *c, size_t n, uint32_t d, float thr, int k, mfr_topk *t)
{
	t->n = n;
	t->k = k;
	t->n_nb = calloc(n, sizeof *t->n_nb);
	t->sim = calloc(n * k, sizeof *t->sim);
	t->nb = calloc(n * k, sizeof *t->nb);
	for (size_t i = 0; i < n; i++)
		for (size_t j = 0; j < n; j++) {
			if (j == i)
				continue;
			float s = mfr_dot(c + i * d, c + j * d, d);
			if (!(s >= thr))
				continue;
			/* insertion into the sorted row */
			uint32_t m = t->n_nb[i], q = m;
			float *rs = t->sim + i * k;
			uint32_t *rj = t->nb + i * k;
			while (q > 0 && (rs[q - 1] < s || (rs[q - 1] == s && rj[q - 1] > j)))
				q--;
			if (q >= (uint32_t)k)
				continue;
			uint32_t end = m < (uint32_t)k ? m : (uint32_t)k - 1;
			for (uint32_t x = end; x > q; x--) {
				rs[x] = rs[x - 1];
				rj[x] = rj[x - 1];
			}
			rs[q] = s;
			rj[q] = (uint32_t)j;
			if (m < (uint32_t)k)
				t->n_nb[i] = m + 1;
		}
}

static int same_topk(const mfr_topk *a, const mfr_topk *b)
{
	for (size_t i = 0; i < a->n; i++) {
		if (a->n_nb[i] != b->n_nb[i])
			return 0;
		for (uint32_t q = 0; q < a->n_nb[i]; q++)
			if (a->nb[i * a->k + q] != b->nb[i * b->k + q] ||
			    memcmp(&a->sim[i * a->k + q], &b->sim[i * b->k + q], 4) != 0)
				return 0;
	}
	return 1;
}

static void test_search(void)
{
	/* 300 unit vectors in 16-d, a third of them near one of 20 seeds, so
	 * rows have from zero to tens of neighbours above 0.5 */
	size_t n = 300;
	uint32_t d = 16;
	float *c = malloc(n * d * sizeof *c), seeds[20 * 16];
	mfr_rng r = {7};
	for (size_t i = 0; i < 20 * d; i++)
		seeds[i] = (float)mfr_rng_normal(&r);
	for (size_t i = 0; i < n; i++) {
		for (uint32_t q = 0; q < d; q++)
			c[i * d + q] = (float)mfr_rng_normal(&r) * 0.5f + (i % 3 == 0 ? seeds[(i / 3) % 20 * d + q] : 0);
		mfr_unit(c + i * d, d);
	}
	mfr_error e;
	int ks[2] = {3, 1024};
	size_t blocks[4] = {16, 37, 300, 4096};
	for (int ki = 0; ki < 2; ki++) {
		mfr_topk want;
		brute(c, n, d, 0.5f, ks[ki], &want);
		size_t total = 0;
		for (size_t i = 0; i < n; i++)
			total += want.n_nb[i];
		CHECK(total > 300); /* the case exercises the heaps */
		for (int bi = 0; bi < 4; bi++)
			for (int th = 1; th <= 2; th++) {
				for (int m = MFR_SEARCH_FP32; m <= MFR_SEARCH_INT8; m++) {
					mfr_topk got;
					CHECK(mfr_pair_search(c, n, d, 0.5f, ks[ki], blocks[bi], th, m, &got, &e) == 0);
					int same = same_topk(&got, &want);
					CHECK(same);
					if (!same)
						fprintf(stderr, "    k %d block %zu threads %d method %d\n", ks[ki],
							blocks[bi], th, m);
					mfr_topk_free(&got);
				}
			}
		mfr_topk_free(&want);
	}
	/* no pair above a threshold of 1: empty rows */
	for (int m = MFR_SEARCH_AUTO; m <= MFR_SEARCH_INT8; m++) {
		mfr_topk got;
		CHECK(mfr_pair_search(c, n, d, 1.0f, 5, 64, 2, m, &got, &e) == 0);
		size_t any = 0;
		for (size_t i = 0; i < n; i++)
			any += got.n_nb[i];
		CHECK_EQ_INT(any, 0);
		mfr_topk_free(&got);
	}
	mfr_topk got;
	CHECK(mfr_pair_search(c, n, d, 0.5f, 5, 64, 2, 7, &got, &e) == -1); /* no such method */
	free(c);
}

/* b := a unit vector at cosine cos from the unit vector a (a and the
 * direction dir, or a random one, Gram-Schmidt), so mfr_dot(a, b) lands
 * within float rounding (~1e-7) of cos. */
static void plant(const float *a, float *b, uint32_t d, double cos, const double *dir, mfr_rng *r)
{
	double v[1024], dot = 0, nn = 0;
	for (uint32_t q = 0; q < d; q++) {
		v[q] = dir ? dir[q] : mfr_rng_normal(r);
		dot += v[q] * a[q];
	}
	for (uint32_t q = 0; q < d; q++) {
		v[q] -= dot * a[q];
		nn += v[q] * v[q];
	}
	double sn = sqrt(1 - cos * cos) / sqrt(nn);
	for (uint32_t q = 0; q < d; q++)
		b[q] = (float)(cos * a[q] + sn * v[q]);
}

/* e := x - x~, x's int8 quantisation error as clean.h defines it. */
static void quant_err(const float *x, uint32_t d, double *e)
{
	float mx = 0;
	for (uint32_t q = 0; q < d; q++)
		mx = fabsf(x[q]) > mx ? fabsf(x[q]) : mx;
	float u = mx / 127;
	for (uint32_t q = 0; q < d; q++)
		e[q] = x[q] - nearbyint(x[q] / (double)u) * u;
}

/* The int8 search where it is hardest: pairs planted at the threshold +-1e-6,
 * +-3e-7 and on it, a third of them leaning towards the first row's
 * quantisation error (where the int8 score is furthest from the truth), rows
 * with one dominant component (quantisation error near its worst: every
 * other component rounds to a step or two), pairs of those near the
 * threshold, a zero row, duplicates; then rows the bound does
 * not cover (NaN, inf, a largest component of 1e-20, a norm of 1e3), which it
 * must rescore against every row. Against brute force and the fp32 search,
 * bit for bit, for several tiles and both thread counts. */
static void test_search_int8(void)
{
	size_t n = 420;
	uint32_t d = 128;
	float thr = 0.6f;
	float *c = calloc(n * d, sizeof *c);
	mfr_rng r = {99};
	for (size_t i = 0; i < n; i++) {
		float *x = c + i * d;
		for (uint32_t q = 0; q < d; q++)
			x[q] = (float)mfr_rng_normal(&r);
		if (i % 10 == 1) /* dominant component */
			x[i % d] = 40.0f;
		if (i == 7) /* the zero row */
			memset(x, 0, d * sizeof *x);
		else
			mfr_unit(x, d);
	}
	/* planted pairs: rows 200.. are placed relative to rows 0.. */
	double off[7] = {-1e-6, -3e-7, 0, 3e-7, 1e-6, 0.003, -0.003};
	for (size_t p = 0; p < 140; p++) {
		size_t a = p < 70 ? p : 10 * ((p - 70) % 20) + 1; /* then the dominant rows 1, 11, .. 191 */
		if (a == 7)
			a = 8;
		/* every third pair: b leans towards a's quantisation error e_a, so
		 * e_a . b is near |e_a| |b|, the bound's first term at its worst */
		double err[1024];
		const float *x = c + a * d;
		quant_err(x, d, err);
		plant(x, c + (200 + p) * d, d, thr + off[p % 7], p % 3 == 0 ? err : NULL, &r);
	}
	/* the same leaning with the planted row first (rows 352.. towards the
	 * errors of rows 404..), where the bound's second term is at its worst */
	for (size_t p = 0; p < 16; p++) {
		double err[1024];
		const float *x = c + (404 + p) * d;
		quant_err(x, d, err);
		plant(x, c + (352 + p) * d, d, thr + off[p % 7], err, &r);
	}
	memcpy(c + 350 * d, c + 3 * d, d * sizeof *c); /* duplicates: sim 1 */
	memcpy(c + 351 * d, c + 3 * d, d * sizeof *c);
	mfr_error e;
	size_t blocks[3] = {16, 37, 4096};
	for (int wild = 0; wild <= 1; wild++) {
		if (wild) {
			c[400 * d + 5] = NAN;
			c[401 * d + 9] = INFINITY;
			for (uint32_t q = 0; q < d; q++) {
				c[402 * d + q] *= 1e-20f;
				c[403 * d + q] = c[200 * d + q] * 1e3f;
			}
		}
		mfr_topk want;
		brute(c, n, d, thr, 5, &want);
		if (!wild) { /* the case is what it says */
			size_t near_above = 0, near_below = 0;
			for (size_t i = 0; i < n; i++)
				for (size_t j = i + 1; j < n; j++) {
					float s = mfr_dot(c + i * d, c + j * d, d);
					near_above += s >= thr && s < thr + 2e-6f;
					near_below += s < thr && s > thr - 2e-6f;
				}
			CHECK(near_above >= 20 && near_below >= 20);
			if (near_above < 20 || near_below < 20)
				fprintf(stderr, "    near the threshold: %zu above, %zu below\n", near_above, near_below);
		}
		for (int bi = 0; bi < 3; bi++)
			for (int th = 1; th <= 2; th++)
				for (int m = wild ? MFR_SEARCH_INT8 : MFR_SEARCH_FP32; m <= MFR_SEARCH_INT8; m++) {
					mfr_topk got;
					CHECK(mfr_pair_search(c, n, d, thr, 5, blocks[bi], th, m, &got, &e) == 0);
					int same = same_topk(&got, &want);
					CHECK(same);
					if (!same)
						fprintf(stderr, "    wild %d block %zu threads %d method %d\n", wild,
							blocks[bi], th, m);
					CHECK_EQ_INT(got.method, m);
					/* the bound rules out most pairs: all but the wild rows' */
					if (m == MFR_SEARCH_INT8)
						CHECK(got.rescored < (wild ? 4 * n + n * n / 20 : n * n / 20));
					mfr_topk_free(&got);
				}
		mfr_topk_free(&want);
	}
	free(c);
}

int main(void)
{
	test_centres();
	test_decide();
	test_rounds();
	test_union_find();
	test_mutual();
	test_search();
	test_search_int8();
	return check_done();
}
