/* test_gpu_pfc.c — the GPU classifier (gpfc.h, common/cuda/gpfc.cu) against
 * the CPU one (pfc.h, float build): the same weights (the CPU's, put on the
 * device), momentum, features and labels. Run alone it is one rank, a world
 * of one; under mpirun (e.g. `mpirun -np 2 build/rel/tests/test_gpu_pfc`,
 * both ranks may share one GPU) every rank holds its shard of both
 * classifiers, so the all-reduces and their host staging run too.
 * For every shape n x C x d in {7, 64} x {50, 1000} x {8, 64}, rate 1 and
 * 0.3, CosFace and ArcFace at s = 64 (and one combined margin; and 10007
 * classes, more columns than one block of the softmax passes takes):
 *  - init draws the CPU's matrix (and zeroes momentum);
 *  - sample picks the same classes (and, on shards of up to 100k classes
 *    over 1-4 ranks at rates from 1e-4 to 1, the sampler alone does);
 *  - forward_backward: loss, accuracy, dfeat (written: pre-filled with NaN),
 *    the sampled rows' gradient;
 *  - step, sparse and then dense from the same state: weight and momentum
 *    of every row; the rows a step must not touch (sparse) or only decays
 *    (dense: the same double arithmetic on equal inputs) bit for bit.
 * A quarter of the rows point near their class's row (target cosine ~0.9:
 * the accuracy counts something, ArcFace's margin works at a small angle),
 * a quarter near its opposite (cosine ~-0.95: ArcFace's fallback region
 * past theta + m2 > pi), the rest random; feature and weight rows of unequal
 * norms, so both normalisations matter.
 *
 * Tolerances (relative to the largest |value| of the tensor compared):
 *  - TOL_INIT 1e-6 per element: the device's log/cos in double are within
 *    2 ulp of glibc's, so the float rounding of 0.01 * normal nearly always
 *    agrees bit for bit (the count is printed) and is otherwise 1 float ulp;
 *  - tol(s) = 10 * s * 2^-24 for the loss and every gradient, 3.8e-5 at
 *    s = 64: the cosines come from two float32 GEMMs with different
 *    summation orders and differ by a few units of 2^-24 (unit rows: every
 *    partial sum is at most 1 in size; the normalisations are done the same
 *    way in double on both sides), s turns that into logit errors s times
 *    larger, and the softmax passes a logit error on as a relative error of
 *    p and so of every gradient; 10 units leave room for the worst of ~10^5
 *    entries. A host transcription of gpfc.cu's pipeline (its own GEMM
 *    order) stayed under 3.4e-6 against pfc.c on exactly these cases. The
 *    loss carries pfc.c's floor on both sides: a row whose target's float
 *    exponential underflows (the rows near the opposite of their class, at
 *    s = 64) counts -log(1e-300) = 690.8;
 *  - accuracy: equal, or one row apart (a row whose two largest cosines lie
 *    within float rounding may be counted on one side only). */
#include "gpu_check.h" /* defines: gcheck_*, CHECK, check_done */

#include "comm.h" /* defines: mfr_comm_init (a world of one) */
#include "pfc.h"  /* defines: mfr_pfc_* (the float build), mfr_margin */

#define TOL_INIT 1e-6

#ifdef MFR_HAVE_CUDA

#include "gcomm.h" /* defines: mfr_gcomm_new */
#include "gpfc.h"  /* defines: mfr_gpfc_* */

static mfr_comm *comm;
static mfr_gcomm *gcomm; /* the device collectives over comm */

static double tol_of(double s) { return 10 * s * 0x1p-24; }

static float *hbuf(size_t n) { return (float *)gcheck_xmalloc((n ? n : 1) * sizeof(float)); }

static void die_if(int bad, const char *what, const mfr_error *e)
{
	if (bad)
		gcheck_die(what, e);
}

/* got against want (n values): max |got - want| <= tol * scale, scale =
 * max(|want|, floor) (floor > 0: the size the values are compared at).
 * Counts one check; prints the worst element. */
static int close_to(const char *what, const float *got, const float *want, size_t n, double tol, double floor)
{
	double scale = floor, worst = 0;
	size_t wi = 0;
	for (size_t i = 0; i < n; i++)
		if (fabs(want[i]) > scale)
			scale = fabs(want[i]);
	for (size_t i = 0; i < n; i++) {
		double d = fabs((double)got[i] - (double)want[i]);
		if (d != d)
			d = INFINITY;
		if (i == 0 || d > worst) {
			worst = d;
			wi = i;
		}
	}
	int ok = worst <= tol * scale;
	check_report(ok, what, __FILE__, __LINE__);
	if (!ok)
		fprintf(stderr, "    %s: worst at %zu: got %.9g want %.9g (|d| %.3g > tol %.3g x scale %.3g)\n", what, wi,
			n ? got[wi] : 0.f, n ? want[wi] : 0.f, worst, tol, scale);
	else
		printf("ok %s (max |d| %.3g, scale %.3g)\n", what, worst, scale);
	return ok;
}

/* Rows of w (rows x d) whose bits differ from want's, among the rows with
 * mask[row] == 0. */
static int64_t rows_differing(const float *w, const float *want, const uint8_t *mask, int64_t rows, int d)
{
	int64_t bad = 0;
	for (int64_t j = 0; j < rows; j++)
		if (!mask[j] && memcmp(w + j * d, want + j * d, sizeof(float) * (size_t)d) != 0)
			bad++;
	return bad;
}

/* init: the device's draw against mfr_pfc_init's, per element, on this
 * rank's shard. */
static void check_init(mfr_gpu *g, int C, int d, uint64_t seed)
{
	mfr_error e = {{0}};
	char what[160];
	int rank = mfr_comm_rank(comm), size = mfr_comm_size(comm);
	mfr_pfc *cp = mfr_pfc_new(C, d, 1.0, 1, rank, size, &e);
	die_if(!cp, "pfc new", &e);
	mfr_gpfc *gp = mfr_gpfc_new(g, C, d, 1.0, 1, rank, size, &e);
	die_if(!gp, "gpfc new", &e);
	int64_t c0, c1;
	mfr_gpfc_range(gp, &c0, &c1);
	size_t nd = (size_t)(c1 - c0) * d;
	float *w = hbuf(nd), *v = hbuf(nd);
	for (size_t i = 0; i < nd; i++) /* momentum must be zeroed by init */
		v[i] = 1.f;
	die_if(mfr_gpfc_put(gp, NULL, v, &e) < 0, "put", &e);
	mfr_pfc_init(cp, seed);
	mfr_gpfc_init(gp, seed);
	die_if(mfr_gpfc_get(gp, w, v, &e) < 0, "get", &e);
	const float *want = mfr_pfc_weights(cp);
	double worst = 0;
	size_t same = 0, zero = 0;
	for (size_t i = 0; i < nd; i++) {
		double r = fabs((double)w[i] - want[i]) / fmax(fabs((double)want[i]), 1e-30);
		worst = r > worst || r != r ? r : worst;
		same += memcmp(&w[i], &want[i], sizeof(float)) == 0;
		zero += v[i] == 0.f;
	}
	snprintf(what, sizeof what,
		 "init %dx%d seed %llu rows %lld..%lld: per-element relative error %.3g <= %g (%zu of %zu bit-equal)", C,
		 d, (unsigned long long)seed, (long long)c0, (long long)c1 - 1, worst, TOL_INIT, same, nd);
	if (check_report(worst <= TOL_INIT, what, __FILE__, __LINE__))
		printf("ok %s\n", what);
	CHECK_EQ_INT(zero, nd);
	free(w);
	free(v);
	mfr_gpfc_free(gp);
	mfr_pfc_free(cp);
}

/* A feature row for label row wl (d values): kind 1 near wl's direction,
 * kind 2 near its opposite, else random; times a norm that varies. */
static void feature_row(float *f, const float *wl, int d, int kind, double norm, mfr_rng *r)
{
	double wn = 0;
	for (int k = 0; k < d; k++)
		wn += (double)wl[k] * wl[k];
	wn = sqrt(wn);
	for (int k = 0; k < d; k++) {
		double noise = mfr_rng_normal(r) / sqrt((double)d);
		double x = kind == 1 ? wl[k] / wn + 0.5 * noise : kind == 2 ? -wl[k] / wn + 0.3 * noise : noise;
		f[k] = (float)(norm * x);
	}
}

/* One configuration: everything forward_backward and step produce, on
 * this rank's shard. */
static void check_step(mfr_gpu *g, int n, int C, int d, double rate, mfr_margin m, const char *mname, uint64_t seed)
{
	mfr_error e = {{0}};
	char tag[128], what[320];
	snprintf(tag, sizeof tag, "%s n=%d C=%d d=%d rate %g", mname, n, C, d, rate);
	double tol = tol_of(m.s);
	int rank = mfr_comm_rank(comm), size = mfr_comm_size(comm);
	size_t fd = (size_t)n * d;

	/* the whole matrix, as every rank sees it: mfr_pfc_init's rows of
	 * unequal norms, and random momentum */
	mfr_pfc *full = mfr_pfc_new(C, d, 1.0, 1, 0, 1, &e);
	die_if(!full, "pfc new", &e);
	mfr_pfc_init(full, seed);
	float *W = mfr_pfc_weights(full), *V = hbuf((size_t)C * d);
	for (size_t i = 0; i < (size_t)C * d; i++)
		W[i] *= (float)(1 + (i / (size_t)d) % 5);
	gcheck_fill(V, (size_t)C * d, seed + 1, 0.02f);

	mfr_pfc *cp = mfr_pfc_new(C, d, rate, n, rank, size, &e);
	die_if(!cp, "pfc new", &e);
	size_t before, after;
	mfr_gpu_usage(g, &before, NULL);
	mfr_gpfc *gp = mfr_gpfc_new(g, C, d, rate, n, rank, size, &e);
	die_if(!gp, "gpfc new", &e);
	mfr_gpu_usage(g, &after, NULL);
	int64_t c0, c1, p0, p1;
	mfr_gpfc_range(gp, &c0, &c1);
	mfr_pfc_range(cp, &p0, &p1);
	CHECK(c0 == p0 && c1 == p1);
	int64_t nl = c1 - c0;
	size_t nd = (size_t)nl * d;
	if (rank == 0) { /* mfr_gpfc_bytes plans for rank 0's shard, the largest */
		snprintf(what, sizeof what, "%s: mfr_gpfc_bytes is what new allocates", tag);
		if (check_report(after - before == mfr_gpfc_bytes(C, d, rate, n, size), what, __FILE__, __LINE__))
			printf("ok %s\n", what);
	}

	/* this rank's rows, the same on both */
	float *w = mfr_pfc_weights(cp), *v = mfr_pfc_momentum(cp);
	memcpy(w, W + (size_t)c0 * d, sizeof(float) * nd);
	memcpy(v, V + (size_t)c0 * d, sizeof(float) * nd);
	die_if(mfr_gpfc_put(gp, w, v, &e) < 0, "put", &e);

	/* labels (one repeated) and features */
	int32_t *lab = (int32_t *)gcheck_xmalloc((size_t)n * sizeof *lab);
	float *feat = hbuf(fd), *nanb = hbuf(fd);
	mfr_rng r = {seed + 2};
	for (int i = 0; i < n; i++)
		lab[i] = (int32_t)mfr_rng_below(&r, (uint64_t)C);
	if (n > 1)
		lab[1] = lab[0];
	for (int i = 0; i < n; i++)
		feature_row(feat + (size_t)i * d, W + (size_t)lab[i] * d, d, i % 4, 0.5 + (i % 3), &r);
	for (size_t i = 0; i < fd; i++)
		nanb[i] = NAN;
	float *dfeat_d = (float *)gcheck_put(g, nanb, fd, MFR_F32);
	float *feat_d = (float *)gcheck_put(g, feat, fd, MFR_F32);

	/* sampling */
	uint64_t sseed = seed * 7 + 3;
	int64_t Sc = mfr_pfc_sample(cp, lab, n, sseed, &e);
	die_if(Sc < 0, "pfc sample", &e);
	int64_t Sg = mfr_gpfc_sample(gp, lab, n, sseed, &e);
	die_if(Sg < 0, "gpfc sample", &e);
	int64_t S, S2;
	const int64_t *sc = mfr_pfc_sampled(cp, &S), *sg = mfr_gpfc_sampled(gp, &S2, &e);
	die_if(!sg, "gpfc sampled", &e);
	snprintf(what, sizeof what, "%s: the same %lld sampled classes", tag, (long long)Sc);
	if (check_report(Sc == Sg && S == S2 && S == Sc && !memcmp(sc, sg, sizeof(int64_t) * (size_t)S), what, __FILE__,
			 __LINE__))
		printf("ok %s\n", what);
	if (rate >= 1)
		CHECK_EQ_INT(S, nl);
	uint8_t *smask = (uint8_t *)calloc((size_t)(nl ? nl : 1), 1);
	for (int64_t k = 0; k < S; k++)
		smask[sc[k]] = 1;

	/* forward and backward */
	double lc, ac, lg, ag;
	float *dfc = hbuf(fd), *dfg = hbuf(fd);
	die_if(mfr_pfc_forward_backward(cp, comm, feat, lab, n, &m, &lc, &ac, dfc, &e) < 0, "pfc forward_backward", &e);
	/* every other case reads the loss later (deferred: nothing waits in forward_backward) */
	static int deferred;
	deferred ^= 1;
	die_if(mfr_gpfc_forward_backward(gp, gcomm, feat_d, lab, n, &m, deferred ? NULL : &lg, deferred ? NULL : &ag,
					 dfeat_d, &e) < 0,
	       "gpfc forward_backward", &e);
	if (deferred) {
		die_if(mfr_gpfc_loss(gp, &lg, &ag, &e) < 0, "gpfc loss", &e);
		CHECK(mfr_gpfc_loss(gp, &lg, &ag, &e) < 0); /* read once */
	}
	snprintf(what, sizeof what, "%s: loss%s %.9g vs %.9g", tag, deferred ? " (deferred)" : "", lg, lc);
	if (check_report(fabs(lg - lc) <= tol * fmax(1, fabs(lc)), what, __FILE__, __LINE__))
		printf("ok %s\n", what);
	snprintf(what, sizeof what, "%s: accuracy %.6g vs %.6g", tag, ag, ac);
	if (check_report(fabs(ag - ac) <= 1.0 / n + 1e-12, what, __FILE__, __LINE__))
		printf("ok %s\n", what);
	gcheck_get(g, dfg, dfeat_d, fd, MFR_F32);
	snprintf(what, sizeof what, "%s: dfeat", tag);
	close_to(what, dfg, dfc, fd, tol, 1e-30);
	float *gc = hbuf((size_t)S * d), *gg = hbuf((size_t)S * d);
	memcpy(gc, mfr_pfc_grad(cp), sizeof(float) * (size_t)S * d);
	gcheck_get(g, gg, mfr_gpfc_grad(gp), (size_t)S * d, MFR_F32);
	snprintf(what, sizeof what, "%s: sampled rows' gradient", tag);
	close_to(what, gg, gc, (size_t)S * d, tol, 1e-30);

	/* steps: sparse, then dense from the same weights and momentum */
	const double lr = 0.05, mu = 0.9, wd = 5e-4;
	float *w0 = hbuf(nd), *v0 = hbuf(nd), *wg = hbuf(nd), *vg = hbuf(nd);
	memcpy(w0, w, sizeof(float) * nd);
	memcpy(v0, v, sizeof(float) * nd);
	double gmax = 0;
	for (size_t i = 0; i < (size_t)S * d; i++)
		gmax = fmax(gmax, fabs(gc[i]));
	for (int sparse = 1; sparse >= 0; sparse--) {
		const char *kind = sparse ? "sparse" : "dense";
		if (!sparse) {
			memcpy(w, w0, sizeof(float) * nd);
			memcpy(v, v0, sizeof(float) * nd);
			die_if(mfr_gpfc_put(gp, w0, v0, &e) < 0, "put", &e);
		}
		mfr_pfc_step(cp, lr, mu, wd, sparse);
		mfr_gpfc_step(gp, lr, mu, wd, sparse);
		die_if(mfr_gpfc_get(gp, wg, vg, &e) < 0, "get", &e);
		/* a sampled row's error is lr x (gradient error) in w, the
		 * gradient error itself in v: compared at their sizes */
		double vmax = 0, wmax = 0;
		for (size_t i = 0; i < nd; i++)
			vmax = fmax(vmax, fabs(v[i])), wmax = fmax(wmax, fabs(w[i]));
		snprintf(what, sizeof what, "%s: weights after a %s step", tag, kind);
		close_to(what, wg, w, nd, tol, fmax(wmax, lr * fmax(vmax, gmax)));
		snprintf(what, sizeof what, "%s: momentum after a %s step", tag, kind);
		close_to(what, vg, v, nd, tol, fmax(vmax, gmax));
		int64_t bw = rows_differing(wg, w, smask, nl, d), bv = rows_differing(vg, v, smask, nl, d);
		snprintf(what, sizeof what, "%s: rows not sampled bit-equal after a %s step (%lld, %lld differ)", tag, kind,
			 (long long)bw, (long long)bv);
		if (check_report(bw == 0 && bv == 0, what, __FILE__, __LINE__))
			printf("ok %s\n", what);
		if (sparse) {
			int64_t moved = rows_differing(wg, w0, smask, nl, d);
			CHECK_EQ_INT(moved, 0);
		}
	}

	mfr_gpu_free(g, feat_d);
	mfr_gpu_free(g, dfeat_d);
	free(lab), free(feat), free(nanb), free(smask), free(dfc), free(dfg), free(gc), free(gg);
	free(w0), free(v0), free(wg), free(vg), free(V);
	mfr_gpfc_free(gp);
	mfr_pfc_free(cp);
	mfr_pfc_free(full);
}

/* Errors the GPU classifier reports as the CPU one does. */
static void check_errors(mfr_gpu *g)
{
	mfr_error e = {{0}};
	CHECK(mfr_gpfc_new(g, 0, 8, 0.5, 4, 0, 1, &e) == NULL);
	CHECK(mfr_gpfc_new(g, 10, 8, 1.5, 4, 0, 1, &e) == NULL);
	CHECK(mfr_gpfc_bytes(10, 8, 0, 4, 1) == 0);
	mfr_gpfc *gp = mfr_gpfc_new(g, 10, 8, 0.5, 4, 0, 1, &e);
	die_if(!gp, "gpfc new", &e);
	int32_t lab[5] = {1, 2, 10, 3, 4};
	CHECK(mfr_gpfc_sample(gp, lab, 4, 1, &e) < 0);
	CHECK(strstr(e.msg, "label 10 of row 2") != NULL);
	CHECK(mfr_gpfc_sample(gp, lab, 5, 1, &e) < 0);
	CHECK(strstr(e.msg, "batch of 5 rows") != NULL);
	lab[2] = 9; /* the error left no positive behind: the next sample is the CPU's */
	mfr_pfc *cp = mfr_pfc_new(10, 8, 0.5, 4, 0, 1, &e);
	int64_t a = mfr_gpfc_sample(gp, lab, 4, 1, &e), b = mfr_pfc_sample(cp, lab, 4, 1, &e), na, nb;
	const int64_t *sa = mfr_gpfc_sampled(gp, &na, &e), *sb = mfr_pfc_sampled(cp, &nb);
	CHECK(sa && a == b && na == nb && !memcmp(sa, sb, sizeof(int64_t) * (size_t)na));
	mfr_pfc_free(cp);
	mfr_gpfc_free(gp);
	/* more ranks than classes: an empty shard still runs (this rank adds 0) */
	gp = mfr_gpfc_new(g, 3, 8, 0.5, 4, 3, 4, &e);
	die_if(!gp, "gpfc new (empty shard)", &e);
	int64_t c0, c1;
	mfr_gpfc_range(gp, &c0, &c1);
	CHECK(c0 == 3 && c1 == 3);
	CHECK_EQ_INT(mfr_gpfc_sample(gp, lab, 2, 1, &e), 0);
	float feat[16], zero[16] = {0}, got[16];
	gcheck_fill(feat, 16, 5, 1.f);
	float *feat_d = (float *)gcheck_put(g, feat, 16, MFR_F32), *df_d = (float *)gcheck_alloc(g, sizeof got);
	double loss = -1, acc = -1;
	mfr_margin m = {64, 1, 0.5, 0};
	die_if(mfr_gpfc_forward_backward(gp, gcomm, feat_d, lab, 2, &m, &loss, &acc, df_d, &e) < 0,
	       "gpfc forward_backward (empty shard)", &e);
	gcheck_get(g, got, df_d, 16, MFR_F32);
	CHECK(loss == 0 && acc == 0 && !memcmp(got, zero, sizeof got));
	mfr_gpfc_step(gp, 0.1, 0.9, 5e-4, 0);
	mfr_gpfc_step(gp, 0.1, 0.9, 5e-4, 1);
	CHECK(mfr_gpu_sync(g, &e) == 0);
	mfr_gpu_free(g, feat_d);
	mfr_gpu_free(g, df_d);
	mfr_gpfc_free(gp);
}

/* The memory plan at the size the design is for: 10M classes x 512 at rate
 * 0.1, global batch 512, on one GPU: under 80 GB. */
/* The sampler alone on shards of many tiles (4096 classes each): for
 * classes C over k ranks (this process plays each rank in turn), rate r
 * and batches of n rows whose labels crowd into few classes or spread over
 * all, the device's choice is the CPU's, class for class, over several
 * steps (the positives' flags must be cleared between steps). */
static void check_sampler(mfr_gpu *g, int64_t C, int k, double rate, int n, int crowd, uint64_t seed)
{
	mfr_error e = {{0}};
	int32_t *lab = (int32_t *)gcheck_xmalloc((size_t)n * sizeof *lab);
	int same = 1;
	int64_t total = 0;
	for (int r = 0; r < k; r++) {
		mfr_gpfc *gp = mfr_gpfc_new(g, C, 4, rate, n, r, k, &e);
		mfr_pfc *cp = mfr_pfc_new(C, 4, rate, n, r, k, &e);
		die_if(!gp || !cp, "sampler setup", &e);
		mfr_rng rng = {seed + (uint64_t)r};
		for (int step = 0; step < 3; step++) {
			for (int i = 0; i < n; i++)
				lab[i] = (int32_t)(crowd ? mfr_rng_below(&rng, 5) * (uint64_t)(C / 5) : mfr_rng_below(&rng, (uint64_t)C));
			uint64_t ss = seed * 31 + (uint64_t)step;
			int64_t a = mfr_gpfc_sample(gp, lab, n, ss, &e), b = mfr_pfc_sample(cp, lab, n, ss, &e), na, nb;
			const int64_t *sa = mfr_gpfc_sampled(gp, &na, &e), *sb = mfr_pfc_sampled(cp, &nb);
			die_if(a < 0 || b < 0 || !sa, "sampler", &e);
			same &= a == b && na == nb && !memcmp(sa, sb, sizeof(int64_t) * (size_t)na);
			total += na;
		}
		mfr_gpfc_free(gp);
		mfr_pfc_free(cp);
	}
	char what[160];
	snprintf(what, sizeof what, "sampler: %lld classes over %d rank%s, rate %g, %d rows%s: the CPU's %lld choices",
		 (long long)C, k, k > 1 ? "s" : "", rate, n, crowd ? " in 5 classes" : "", (long long)total);
	if (check_report(same, what, __FILE__, __LINE__))
		printf("ok %s\n", what);
	free(lab);
}

static void check_plan(void)
{
	size_t b = mfr_gpfc_bytes(10000000, 512, 0.1, 512, 1);
	double gib = (double)b / (1 << 30);
	char what[128];
	snprintf(what, sizeof what, "10M x 512 at rate 0.1, batch 512: %.2f GiB on one GPU (< 74.5 GiB = 80 GB)", gib);
	if (check_report(b > (size_t)2 * 10000000 * 512 * 4 && gib < 74.5, what, __FILE__, __LINE__))
		printf("ok %s\n", what);
}

static void run_all(mfr_gpu *g)
{
	const mfr_margin cosface = {64, 1, 0, 0.4}, arcface = {64, 1, 0.5, 0}, combined = {64, 0.9, 0.4, 0.15};
	check_init(g, 50, 8, 1);
	check_init(g, 1000, 64, 12345);
	check_init(g, 37, 130, 7);
	check_plan();
	check_errors(g);
	check_sampler(g, 100003, 1, 0.1, 64, 0, 1);
	check_sampler(g, 100003, 3, 0.37, 128, 0, 2);
	check_sampler(g, 50000, 2, 0.999, 64, 1, 3);  /* nearly every class: a k-th key near the top */
	check_sampler(g, 50000, 1, 0.0001, 64, 0, 4); /* quota below the positives: those alone */
	check_sampler(g, 40961, 1, 0.0003, 16, 1, 5); /* a few negatives beside 5 positives */
	check_sampler(g, 9000, 4, 1.0, 32, 0, 6);     /* rate 1: every class */
	uint64_t seed = 100;
	static const int ns[2] = {7, 64}, cs[2] = {50, 1000}, ds[2] = {8, 64};
	static const double rates[2] = {1.0, 0.3};
	for (int a = 0; a < 2; a++)
		for (int b = 0; b < 2; b++)
			for (int c = 0; c < 2; c++)
				for (int r = 0; r < 2; r++) {
					check_step(g, ns[a], cs[b], ds[c], rates[r], cosface, "cosface", seed++);
					check_step(g, ns[a], cs[b], ds[c], rates[r], arcface, "arcface", seed++);
				}
	check_step(g, 33, 200, 17, 0.5, combined, "combined", seed++);
	/* more columns than one block of the softmax passes takes (4096): chunks, the last one partial */
	check_step(g, 5, 10007, 16, 1.0, arcface, "arcface", seed++);
	check_step(g, 9, 10007, 16, 0.7, cosface, "cosface", seed++);
}

#endif /* MFR_HAVE_CUDA */

int main(int argc, char **argv)
{
#ifdef MFR_HAVE_CUDA
	mfr_gpu *g = gcheck_open("gpu classifier");
	if (!g)
		return check_done();
	mfr_error e = {{0}};
	comm = mfr_comm_init(&argc, &argv, &e);
	if (!comm || !(gcomm = mfr_gcomm_new(comm, g, &e)))
		gcheck_die("comm", &e);
	run_all(g);
	mfr_gcomm_free(gcomm);
	mfr_comm_finish(comm);
	mfr_gpu_close(g);
#else
	(void)argc, (void)argv;
	printf("skip: gpu classifier: built without CUDA\n");
#endif
	return check_done();
}
