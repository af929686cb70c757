/* test_score.c — the scoring library (score.h): every metric on small
 * hand-computed cases (ties between genuine and impostor scores, equal
 * scores, one-element sets), the two TAR@FAR semantics where they differ,
 * unreachable FARs, LFW fold assignment and the k-fold accuracy, the pairs
 * parsers, the streaming selection of the highest impostor scores against
 * a full sort of random data (with compactions, ties, and merges), and the
 * blocked protocols (all-vs-all, cross, identification; cosine and
 * Euclidean; several tiles and threads) against a pair-by-pair loop. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h" /* defines: CHECK, CHECK_NEAR, check_done */
#include "score.h" /* defines: mfr_scores_*, mfr_tar_at_far, mfr_score_all, ... */

static mfr_scores *make(const float *gen, int ng, const float *imp, int ni, uint64_t keep)
{
	mfr_error e;
	mfr_scores *s = mfr_scores_new(keep, -1, 1, &e);
	for (int i = 0; i < ng; i++)
		mfr_scores_add(s, gen[i], 1, &e);
	for (int i = 0; i < ni; i++)
		mfr_scores_add(s, imp[i], 0, &e);
	mfr_scores_finish(s, &e);
	return s;
}

static void hand_cases(void)
{
	/* genuine 0.9 0.8 0.5, impostors 0.85 0.5 0.3 0.1: a genuine and an
	 * impostor tie at 0.5 */
	const float g[] = {0.8f, 0.5f, 0.9f}, im[] = {0.3f, 0.85f, 0.1f, 0.5f};
	mfr_scores *s = make(g, 3, im, 4, 1000);
	CHECK(mfr_scores_complete(s));
	CHECK_EQ_INT(mfr_scores_genuine(s), 3);
	CHECK_EQ_INT(mfr_scores_impostor(s), 4);

	/* at most FAR 0.25: one impostor may pass; threshold = 2nd highest
	 * impostor (0.5), accept > 0.5: genuine 0.9 and 0.8 */
	mfr_op_point o = mfr_tar_at_far(s, 0.25, MFR_AT_MOST);
	CHECK_EQ_INT(o.how, MFR_EXACT);
	CHECK_NEAR(o.tar, 2.0 / 3, 1e-12);
	CHECK_NEAR(o.far, 0.25, 1e-12);
	CHECK_NEAR(o.threshold, 0.5, 1e-7);
	o = mfr_tar_at_far(s, 0.5, MFR_AT_MOST);
	CHECK_NEAR(o.tar, 1.0, 1e-12);
	CHECK_NEAR(o.far, 0.5, 1e-12);
	CHECK_NEAR(o.threshold, 0.3, 1e-7);
	/* 0.2 < 1/4: not reachable, under both rules; never a TAR of 0 */
	CHECK_EQ_INT(mfr_tar_at_far(s, 0.2, MFR_AT_MOST).how, MFR_UNREACHABLE);
	CHECK_EQ_INT(mfr_tar_at_far(s, 0.2, MFR_NEAREST).how, MFR_UNREACHABLE);
	/* FAR 1: everything accepted */
	o = mfr_tar_at_far(s, 1.0, MFR_AT_MOST);
	CHECK(o.tar == 1.0 && o.far == 1.0);

	/* nearest point. sklearn's vertices (fpr, tpr) with drop_intermediate:
	 * (0,0) (0,1/3) (.25,1/3) (.25,2/3) (.5,1) [(.75,1) dropped] (1,1) */
	o = mfr_tar_at_far(s, 0.3, MFR_NEAREST); /* nearest FAR .25; at .25 the higher TAR */
	CHECK_NEAR(o.far, 0.25, 1e-12);
	CHECK_NEAR(o.tar, 2.0 / 3, 1e-12);
	CHECK_NEAR(o.threshold, 0.8, 1e-7);
	/* at 0.4 the two rules differ: nearest reads FAR 0.5, above the target */
	o = mfr_tar_at_far(s, 0.4, MFR_NEAREST);
	CHECK_NEAR(o.far, 0.5, 1e-12);
	CHECK_NEAR(o.tar, 1.0, 1e-12);
	o = mfr_tar_at_far(s, 0.4, MFR_AT_MOST);
	CHECK_NEAR(o.far, 0.25, 1e-12);
	CHECK_NEAR(o.tar, 2.0 / 3, 1e-12);
	/* 0.375 is as near to .25 as to .5: insightface's flip takes the higher */
	o = mfr_tar_at_far(s, 0.375, MFR_NEAREST);
	CHECK_NEAR(o.far, 0.5, 1e-12);
	/* 0.7: .75 was dropped (collinear), so the nearest kept is .5 */
	o = mfr_tar_at_far(s, 0.7, MFR_NEAREST);
	CHECK_NEAR(o.far, 0.5, 1e-12);

	/* EER: at t = 0.5 FAR = 1/4 (0.85), FRR = 1/3 (0.5): mean 7/24 */
	double t;
	mfr_how how;
	CHECK_NEAR(mfr_eer(s, &t, &how), 7.0 / 24, 1e-12);
	CHECK_NEAR(t, 0.5, 1e-7);
	CHECK_EQ_INT(how, MFR_EXACT);
	/* AUC: 0.9 beats 4, 0.8 beats 3, 0.5 beats 2 and ties 1: 9.5 / 12 */
	CHECK_NEAR(mfr_auc(s, &how), 9.5 / 12, 1e-12);
	CHECK_EQ_INT(how, MFR_EXACT);
	mfr_scores_free(s);

	/* all scores equal: no threshold separates anything */
	const float eq[] = {0.5f, 0.5f};
	s = make(eq, 2, eq, 2, 10);
	o = mfr_tar_at_far(s, 0.5, MFR_AT_MOST); /* one of two may pass, but they tie: none passes */
	CHECK_NEAR(o.tar, 0.0, 1e-12);
	CHECK_NEAR(o.far, 0.0, 1e-12);
	CHECK_NEAR(mfr_auc(s, NULL), 0.5, 1e-12);
	CHECK_NEAR(mfr_eer(s, NULL, NULL), 0.5, 1e-12);
	mfr_scores_free(s);

	/* one genuine, one impostor, perfectly separated */
	const float g1[] = {0.7f}, i1[] = {-0.2f};
	s = make(g1, 1, i1, 1, 10);
	CHECK_NEAR(mfr_auc(s, NULL), 1.0, 1e-12);
	CHECK_NEAR(mfr_eer(s, NULL, NULL), 0.0, 1e-12);
	o = mfr_tar_at_far(s, 1.0, MFR_AT_MOST);
	CHECK_NEAR(o.tar, 1.0, 1e-12);
	CHECK_EQ_INT(mfr_tar_at_far(s, 0.5, MFR_AT_MOST).how, MFR_UNREACHABLE);
	mfr_scores_free(s);

	/* no impostors: every metric says empty */
	s = make(g1, 1, NULL, 0, 10);
	CHECK_EQ_INT(mfr_tar_at_far(s, 0.1, MFR_AT_MOST).how, MFR_EMPTY);
	mfr_eer(s, NULL, &how);
	CHECK_EQ_INT(how, MFR_EMPTY);
	mfr_scores_free(s);
}

static void folds(void)
{
	int f[23];
	mfr_kfold_assign(23, 10, f);
	CHECK(f[0] == 0 && f[2] == 0 && f[3] == 1 && f[8] == 2 && f[9] == 3 && f[10] == 3 && f[22] == 9);
	int g[6000];
	mfr_kfold_assign(6000, 10, g);
	CHECK(g[599] == 0 && g[600] == 1 && g[5999] == 9);

	/* two folds: fold 1 trains on fold 2 (0.7 different, 0.8 same: threshold
	 * 0.75) and gets both right; fold 2 trains on fold 1 (0.2 different, 0.9
	 * same: 0.55) and accepts its 0.7 different pair */
	const float sc[] = {0.9f, 0.2f, 0.8f, 0.7f};
	const uint8_t same[] = {1, 0, 1, 0};
	const int fold[] = {0, 0, 1, 1};
	double acc[2], thr[2];
	mfr_error e;
	CHECK_EQ_INT(mfr_kfold_accuracy(sc, same, fold, 4, 2, acc, thr, &e), 0);
	CHECK_NEAR(acc[0], 1.0, 1e-12);
	CHECK_NEAR(acc[1], 0.5, 1e-12);
	CHECK_NEAR(thr[0], 0.75, 1e-7);
	CHECK_NEAR(thr[1], 0.55, 1e-7);
	/* a tie on the training folds: fold 1 trains on 0.2 d, 0.6 s, 0.8 d,
	 * 0.9 s, where thresholds 0.4 and 0.85 both get 3 of 4; the higher is
	 * taken, so the test pair (0.7, same) is rejected */
	const float sc2[] = {0.7f, 0.2f, 0.6f, 0.8f, 0.9f};
	const uint8_t same2[] = {1, 0, 1, 0, 1};
	const int fold2[] = {0, 1, 1, 1, 1};
	CHECK_EQ_INT(mfr_kfold_accuracy(sc2, same2, fold2, 5, 2, acc, thr, &e), 0);
	CHECK_NEAR(thr[0], 0.85, 1e-7);
	CHECK_NEAR(acc[0], 0.0, 1e-12);
	const int fold3[] = {0, 0, 0, 0, 0};
	CHECK_EQ_INT(mfr_kfold_accuracy(sc2, same2, fold3, 5, 2, acc, thr, &e), -1);
}

static void parsers(void)
{
	mfr_error e;
	mfr_lfw_pairs lp;
	const char *t = "2\t1\nA\t1\t2\nA\t1\tB\t3\nC 2 3\nD\t1\tE\t1\n";
	CHECK_EQ_INT(mfr_lfw_pairs_parse(t, strlen(t), "p", &lp, &e), 0);
	CHECK_EQ_INT(lp.n, 4);
	CHECK(lp.fold[0] == 0 && lp.fold[1] == 0 && lp.fold[2] == 1 && lp.fold[3] == 1);
	CHECK(lp.same[0] == 1 && lp.same[1] == 0 && lp.same[2] == 1 && lp.same[3] == 0);
	CHECK(!strcmp(lp.name_b[1], "B") && lp.num_b[1] == 3 && !strcmp(lp.name_b[2], "C") && lp.num_a[2] == 2);
	mfr_lfw_pairs_free(&lp);
	const char *bad = "1 2\nA 1 2\nA 1 B 2\nC 1 2\n";
	CHECK_EQ_INT(mfr_lfw_pairs_parse(bad, strlen(bad), "p", &lp, &e), -1);
	CHECK(strstr(e.msg, "line 3") != NULL);
	const char *shortf = "1 2\nA 1 2\n";
	CHECK_EQ_INT(mfr_lfw_pairs_parse(shortf, strlen(shortf), "p", &lp, &e), -1);
	CHECK(strstr(e.msg, "1 pairs, the header promises 4") != NULL);

	mfr_pairs p;
	const char *pt = "id_a\tid_b\tsame\n0\t1\t1\n# comment\n2\t3\t0\r\n";
	CHECK_EQ_INT(mfr_pairs_parse(pt, strlen(pt), "p", &p, &e), 0);
	CHECK(p.n == 2 && p.a[1] == 2 && p.b[1] == 3 && p.same[0] == 1 && p.same[1] == 0);
	mfr_pairs_free(&p);
	const char *pb = "0\t1\t2\n";
	CHECK_EQ_INT(mfr_pairs_parse(pb, strlen(pb), "p", &p, &e), -1);
	CHECK(strstr(e.msg, "line 1 at byte 0") != NULL);
	const char *pb2 = "0\t1\t1\n0\t1\n";
	CHECK_EQ_INT(mfr_pairs_parse(pb2, strlen(pb2), "p", &p, &e), -1);
	CHECK(strstr(e.msg, "line 2 at byte 6") != NULL);

	mfr_label_map m;
	const char *lm = "label\tname\tcount\n0\tAaron Eckhart\t1\n1\tB\t3\n";
	CHECK_EQ_INT(mfr_label_map_parse(lm, strlen(lm), "l", &m, &e), 0);
	CHECK(m.n == 2 && !strcmp(m.name[0], "Aaron Eckhart") && m.count[1] == 3 && m.label[1] == 1);
	mfr_label_map_free(&m);
}

static int cmp_desc_f(const void *a, const void *b)
{
	float x = *(const float *)a, y = *(const float *)b;
	return x > y ? -1 : x < y;
}

/* The streaming selection (with compactions and a merge) keeps exactly the
 * highest impostor scores a full sort finds, ties included. */
static void streaming(void)
{
	mfr_rng r = {7};
	enum { N = 400000, KEEP = 3000 };
	float *all = malloc(N * sizeof *all);
	mfr_error e;
	for (int rep = 0; rep < 2; rep++) {
		mfr_scores *a = mfr_scores_new(KEEP, -1, 1, &e), *b = mfr_scores_new(KEEP, -1, 1, &e);
		for (int i = 0; i < N; i++) {
			double u = mfr_rng_normal(&r) * 0.2;
			/* rep 1: scores on a coarse grid, so the boundary ties */
			all[i] = rep ? (float)(round(u * 200) / 200) : (float)u;
			mfr_scores_add(i % 3 ? a : b, all[i], 0, &e);
		}
		mfr_scores_add(a, 0.5f, 1, &e);
		CHECK_EQ_INT(mfr_scores_merge(a, b, &e), 0);
		mfr_scores_free(b);
		CHECK_EQ_INT(mfr_scores_finish(a, &e), 0);
		qsort(all, N, sizeof *all, cmp_desc_f);
		uint64_t n;
		const float *top = mfr_scores_top(a, &n);
		CHECK_EQ_INT(n, KEEP);
		CHECK(!mfr_scores_complete(a));
		CHECK(!memcmp(top, all, KEEP * sizeof *all));
		/* TAR@FAR within the kept range: the brute-force threshold */
		for (double far = 1e-5; far < (double)KEEP / N; far *= 3) {
			mfr_op_point o = mfr_tar_at_far(a, far, MFR_AT_MOST);
			size_t k = (size_t)floor(far * N + 1e-9);
			if (k == 0) {
				CHECK_EQ_INT(o.how, MFR_UNREACHABLE);
				continue;
			}
			CHECK_EQ_INT(o.how, MFR_EXACT);
			CHECK(o.threshold == all[k]);
			size_t above = 0;
			while (above < N && all[above] > all[k])
				above++;
			CHECK_NEAR(o.far, (double)above / N, 1e-15);
			CHECK(o.far <= far);
		}
		/* beyond the kept range: binned, and close to the truth */
		mfr_op_point o = mfr_tar_at_far(a, 0.1, MFR_AT_MOST);
		CHECK_EQ_INT(o.how, MFR_BINNED);
		CHECK(o.far <= 0.1 && o.far > 0.099);
		mfr_how how;
		double above = mfr_impostors_above(a, 0.0, &how);
		size_t truth = 0, ge;
		while (truth < N && all[truth] > 0.0f)
			truth++;
		for (ge = truth; ge < N && all[ge] >= 0.0f;)
			ge++;
		CHECK_EQ_INT(how, MFR_BINNED);
		/* within about a bin (~12 scores here) of the truth; in rep 1 the
		 * scores equal to 0 share the bin and may count whole */
		if (!CHECK(above >= (double)truth - 30 && above <= (double)ge + 30))
			fprintf(stderr, "    histogram %.1f, truth %zu (%zu with the zeros)\n", above, truth, ge);
		mfr_scores_free(a);
	}
	free(all);
}

/* EER and AUC with most impostors not kept (histogram) agree with the
 * exact values from keeping them all, to well within a bin's mass. */
static void binned_metrics(void)
{
	mfr_rng r = {3};
	mfr_error e;
	mfr_scores *full = mfr_scores_new(300000, -2, 2, &e), *part = mfr_scores_new(500, -2, 2, &e);
	for (int i = 0; i < 300000; i++) {
		float v = (float)(mfr_rng_normal(&r) * 0.2);
		mfr_scores_add(full, v, 0, &e);
		mfr_scores_add(part, v, 0, &e);
	}
	for (int i = 0; i < 20000; i++) {
		float v = (float)(0.45 + mfr_rng_normal(&r) * 0.2);
		mfr_scores_add(full, v, 1, &e);
		mfr_scores_add(part, v, 1, &e);
	}
	mfr_scores_finish(full, &e);
	mfr_scores_finish(part, &e);
	mfr_how h1, h2;
	double t1, t2, e1 = mfr_eer(full, &t1, &h1), e2 = mfr_eer(part, &t2, &h2);
	CHECK(h1 == MFR_EXACT && h2 == MFR_BINNED);
	CHECK_NEAR(e2, e1, 2e-4);
	CHECK_NEAR(e1, 0.1303, 0.01); /* Phi(-0.225 / 0.2) for two normals 0.45 apart */
	double a1 = mfr_auc(full, &h1), a2 = mfr_auc(part, &h2);
	CHECK(h1 == MFR_EXACT && h2 == MFR_BINNED);
	CHECK_NEAR(a2, a1, 1e-5);
	/* the exact region agrees too; nearest needs vertices to 2x the target */
	mfr_op_point o1 = mfr_tar_at_far(full, 1e-3, MFR_NEAREST), o2 = mfr_tar_at_far(part, 1e-3, MFR_NEAREST);
	CHECK(o1.tar == o2.tar && o1.far == o2.far && o2.how == MFR_EXACT);
	mfr_scores_free(full);
	mfr_scores_free(part);
}

/* A random set: n vectors of dim, labels 0..nl-1, every 5th masked. */
static void random_set(mfr_emb_set *s, int64_t n, int dim, int nl, mfr_rng *r)
{
	s->n = n;
	s->dim = dim;
	s->vec = malloc((size_t)(n * dim) * sizeof *s->vec);
	s->ids = malloc((size_t)n * sizeof *s->ids);
	s->labels = malloc((size_t)n * sizeof *s->labels);
	s->flags = malloc((size_t)n * sizeof *s->flags);
	for (int64_t i = 0; i < n; i++) {
		int32_t l = (int32_t)mfr_rng_below(r, (uint64_t)nl);
		for (int d = 0; d < dim; d++) /* a label centre plus noise: real genuine/impostor separation */
			s->vec[i * dim + d] = (float)(sin(l * 7.1 + d * 1.3) + 0.8 * mfr_rng_normal(r));
		s->ids[i] = 1000 + (uint64_t)i;
		s->labels[i] = l;
		s->flags[i] = i % 5 == 0;
	}
}

static int cmp_asc_f(const void *a, const void *b) { return cmp_desc_f(b, a); }

/* Scores of all pairs of the protocol, by the pair-by-pair loop. */
static void brute(const mfr_emb_set *p, const mfr_emb_set *q, int one, mfr_sim sim, float **gen, size_t *ng,
		  float **imp, size_t *ni)
{
	*gen = malloc((size_t)(p->n * q->n) * sizeof **gen);
	*imp = malloc((size_t)(p->n * q->n) * sizeof **imp);
	*ng = *ni = 0;
	mfr_emb_set both = *p;
	for (int64_t i = 0; i < p->n; i++)
		for (int64_t j = one ? i + 1 : 0; j < q->n; j++) {
			if (!one && p->ids[i] == q->ids[j])
				continue;
			float s;
			if (one)
				s = mfr_pair_score(&both, i, j, sim);
			else {
				double dot = 0, d2 = 0;
				for (int d = 0; d < p->dim; d++) {
					double a = p->vec[i * p->dim + d], b = q->vec[j * q->dim + d];
					dot += a * b;
					d2 += (a - b) * (a - b);
				}
				s = sim == MFR_SIM_EUCLIDEAN ? (float)-sqrt(d2) : (float)dot;
			}
			if (p->labels[i] == q->labels[j])
				(*gen)[(*ng)++] = s;
			else
				(*imp)[(*ni)++] = s;
		}
	qsort(*gen, *ng, sizeof **gen, cmp_asc_f);
	qsort(*imp, *ni, sizeof **imp, cmp_desc_f);
}

static int same_values(const float *a, const float *b, size_t n, double tol)
{
	for (size_t i = 0; i < n; i++)
		if (fabs((double)a[i] - b[i]) > tol) {
			fprintf(stderr, "    value %zu: %.9g vs %.9g\n", i, a[i], b[i]);
			return 0;
		}
	return 1;
}

static void protocols(void)
{
	mfr_rng r = {11};
	mfr_error e;
	for (int sim = 0; sim < 2; sim++)
		for (int threads = 1; threads <= 3; threads += 2) {
			mfr_emb_set s;
			random_set(&s, 301, 24, 23, &r);
			if (sim == MFR_SIM_COSINE)
				mfr_emb_set_normalize(&s);
			/* the brute force on the set as given; the engine reorders its copy */
			float *gen, *imp;
			size_t ng, ni;
			brute(&s, &s, 1, (mfr_sim)sim, &gen, &ng, &imp, &ni);
			mfr_engine g = {.sim = (mfr_sim)sim, .threads = threads, .tile = 64};
			double lo = sim ? -100 : -1, hi = sim ? 0 : 1;
			mfr_scores *sc = mfr_scores_new(ni, lo, hi, &e);
			CHECK_EQ_INT(mfr_score_all(&g, &s, sc, &e), 0);
			mfr_scores_finish(sc, &e);
			CHECK_EQ_INT(mfr_scores_genuine(sc), ng);
			CHECK_EQ_INT(mfr_scores_impostor(sc), ni);
			CHECK(ng + ni == 301 * 300 / 2);
			uint64_t nt;
			const float *top = mfr_scores_top(sc, &nt);
			/* float32 GEMM against double sums: 24 terms, |score| <= ~20 */
			double tol = sim ? 2e-4 : 2e-6;
			CHECK(same_values(mfr_scores_gen(sc), gen, ng, tol));
			CHECK(nt == ni && same_values(top, imp, ni, tol));
			mfr_scores_free(sc);

			/* cross: masked probes against the unmasked rest */
			uint8_t *keep = malloc((size_t)s.n);
			for (int64_t i = 0; i < s.n; i++)
				keep[i] = s.flags[i] & 1;
			mfr_emb_set p, q;
			mfr_emb_set_select(&s, keep, &p, &e);
			for (int64_t i = 0; i < s.n; i++)
				keep[i] = !keep[i];
			mfr_emb_set_select(&s, keep, &q, &e);
			free(gen);
			free(imp);
			brute(&p, &q, 0, (mfr_sim)sim, &gen, &ng, &imp, &ni);
			sc = mfr_scores_new(ni, lo, hi, &e);
			CHECK_EQ_INT(mfr_score_cross(&g, &p, &q, sc, &e), 0);
			mfr_scores_finish(sc, &e);
			CHECK_EQ_INT(mfr_scores_genuine(sc), ng);
			CHECK_EQ_INT(mfr_scores_impostor(sc), ni);
			top = mfr_scores_top(sc, &nt);
			CHECK(same_values(mfr_scores_gen(sc), gen, ng, tol));
			CHECK(same_values(top, imp, ni, tol));
			mfr_scores_free(sc);
			/* the same set on both sides: each pair twice, the diagonal skipped */
			sc = mfr_scores_new(1000, lo, hi, &e);
			CHECK_EQ_INT(mfr_score_cross(&g, &q, &q, sc, &e), 0);
			mfr_scores_finish(sc, &e);
			CHECK_EQ_INT(mfr_scores_genuine(sc) + mfr_scores_impostor(sc), q.n * (q.n - 1));
			mfr_scores_free(sc);

			/* identification against templates, by a plain loop */
			mfr_emb_set t;
			CHECK_EQ_INT(mfr_emb_set_templates(&q, &t, &e), 0);
			if (sim == MFR_SIM_COSINE)
				mfr_emb_set_normalize(&t);
			mfr_ident id;
			CHECK_EQ_INT(mfr_identify(&g, &p, &t, &id, &e), 0);
			int ok = 1;
			for (int64_t i = 0; i < p.n; i++) {
				float ms = -INFINITY, top1 = -INFINITY;
				int64_t m = -1;
				for (int64_t k = 0; k < t.n; k++) {
					float v = 0;
					double dot = 0, d2 = 0;
					for (int d = 0; d < t.dim; d++) {
						double a = p.vec[i * p.dim + d], b = t.vec[k * t.dim + d];
						dot += a * b;
						d2 += (a - b) * (a - b);
					}
					v = sim ? (float)-sqrt(d2) : (float)dot;
					if (v > top1)
						top1 = v;
					if (t.labels[k] == p.labels[i])
						ms = v, m = k;
				}
				int rank = 0;
				if (m >= 0) {
					rank = 1;
					for (int64_t k = 0; k < t.n; k++)
						if (k != m) {
							double dot = 0, d2 = 0;
							for (int d = 0; d < t.dim; d++) {
								double a = p.vec[i * p.dim + d], b = t.vec[k * t.dim + d];
								dot += a * b;
								d2 += (a - b) * (a - b);
							}
							float v = sim ? (float)-sqrt(d2) : (float)dot;
							rank += v >= ms;
						}
				}
				if (rank != id.rank[i] || fabs(top1 - id.top[i]) > tol)
					ok = 0;
			}
			CHECK(ok);
			double r1 = mfr_ident_rank(&id, 1);
			if (!CHECK(r1 > 0.15 && r1 <= 1.0)) /* far above chance (1/23): the labels have centres */
				fprintf(stderr, "    rank 1: %g\n", r1);
			CHECK(mfr_ident_rank(&id, 23) == 1.0);
			mfr_ident_free(&id);
			mfr_emb_set_free(&t);
			mfr_emb_set_free(&p);
			mfr_emb_set_free(&q);
			free(keep);
			free(gen);
			free(imp);
			mfr_emb_set_free(&s);
		}
	/* a label of -1 in all-vs-all is an error that names the id */
	mfr_emb_set s;
	random_set(&s, 10, 4, 3, &r);
	s.labels[4] = -1;
	mfr_engine g = {.threads = 1};
	mfr_scores *sc = mfr_scores_new(10, -1, 1, &e);
	CHECK_EQ_INT(mfr_score_all(&g, &s, sc, &e), -1);
	CHECK(strstr(e.msg, "id 1004") != NULL);
	mfr_scores_free(sc);
	mfr_emb_set_free(&s);
}

/* TPIR at FPIR: 2 mated probes, 4 non-mated; hand-made ranks and scores. */
static void tpir(void)
{
	int32_t rank[] = {1, 2, 0, 0, 0, 0};
	float mated[] = {0.9f, 0.8f, 0, 0, 0, 0}, top[] = {0.9f, 0.85f, 0.7f, 0.95f, 0.1f, 0.2f};
	mfr_ident r = {6, rank, mated, top};
	double t;
	mfr_how how;
	/* FPIR 0.25: one of 4 non-mated may alarm: threshold 0.7 (2nd highest);
	 * probe 0 (rank 1, 0.9 > 0.7) is found, probe 1 is rank 2 */
	CHECK_NEAR(mfr_ident_tpir(&r, 0.25, &t, &how), 0.5, 1e-12);
	CHECK_NEAR(t, 0.7, 1e-7);
	/* FPIR 0: none may: unreachable below 1/4 */
	mfr_ident_tpir(&r, 0.2, &t, &how);
	CHECK_EQ_INT(how, MFR_UNREACHABLE);
	CHECK_NEAR(mfr_ident_rank(&r, 1), 0.5, 1e-12);
	CHECK_NEAR(mfr_ident_rank(&r, 2), 1.0, 1e-12);
}

int main(void)
{
	hand_cases();
	folds();
	parsers();
	streaming();
	binned_metrics();
	protocols();
	tpir();
	return check_done();
}
