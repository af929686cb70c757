/* gradcheck.h — finite-difference gradient checks in float64 for the
 * reference layers (compiled for double as mfr_<layer>_ref64, see real.h).
 *
 * The scalar loss is a fixed random projection of the output, L = sum r*out
 * (so every output element matters, as llm.c's fakeloss and Caffe's
 * GradientChecker do). Analytic gradients come from one backward pass with
 * dout = r; the gradient buffers are pre-filled with 0.5 and 0.5 is taken off
 * afterwards, which also checks that backward accumulates (+=) as the layer
 * contracts say. Numeric gradients are central differences
 * (L(x+eps) - L(x-eps)) / 2eps, forward re-run from scratch each time (a
 * forward that draws random numbers must reseed itself). Pass when
 * |a - n| <= tol * max(|a|, |n|, 1). Points where the function has a kink
 * (ReLU at 0, max-pool ties) are skipped through the optional kink callback.
 * Large arrays are checked at up to max_points random elements.
 *
 * Use: fill a gradcheck, call gradcheck_run; it adds to check.h's counters
 * (one CHECK per variable) and prints the worst element when one fails. */
#ifndef MFR_GRADCHECK_H
#define MFR_GRADCHECK_H

#include <stdio.h>
#include <stdlib.h>

#include "check.h"
#include "util.h"

typedef struct {
	double *x;    /* the values perturbed: an input or a parameter */
	double *grad; /* where backward accumulates dL/dx (n values) */
	size_t n;
	const char *name;
} gc_var;

typedef struct {
	void (*forward)(void *ctx);  /* reads the vars' x, writes out[0..n_out) */
	void (*backward)(void *ctx); /* reads dout, accumulates into the vars' grad */
	void *ctx;
	double *out, *dout;
	size_t n_out;
	gc_var *vars;
	int nvars;
	double eps;      /* 0: 1e-5 */
	double tol;      /* 0: 1e-6 */
	size_t max_points; /* 0: 200 per variable */
	/* optional: 1 when element i of var v sits within eps of a kink */
	int (*kink)(void *ctx, int v, size_t i, double eps);
} gradcheck;

/* Fills x[0..n) with uniform values in [lo, hi) from a seeded generator. */
static inline void gc_fill(double *x, size_t n, double lo, double hi, uint64_t seed)
{
	mfr_rng r = {seed};
	for (size_t i = 0; i < n; i++)
		x[i] = lo + (hi - lo) * mfr_rng_uniform(&r);
}

static inline double gc_loss(const gradcheck *g)
{
	double l = 0;
	for (size_t i = 0; i < g->n_out; i++)
		l += g->dout[i] * g->out[i];
	return l;
}

/* Runs the check; returns the number of variables that failed. */
static inline int gradcheck_run(gradcheck *g, const char *what)
{
	double eps = g->eps ? g->eps : 1e-5, tol = g->tol ? g->tol : 1e-6;
	size_t maxp = g->max_points ? g->max_points : 200;
	gc_fill(g->dout, g->n_out, -1, 1, 0x5eed);
	for (int v = 0; v < g->nvars; v++)
		for (size_t i = 0; i < g->vars[v].n; i++)
			g->vars[v].grad[i] = 0.5;
	g->forward(g->ctx);
	g->backward(g->ctx);
	for (int v = 0; v < g->nvars; v++)
		for (size_t i = 0; i < g->vars[v].n; i++)
			g->vars[v].grad[i] -= 0.5;
	int failed = 0;
	mfr_rng pick = {77};
	for (int v = 0; v < g->nvars; v++) {
		gc_var *x = &g->vars[v];
		double worst = 0, wa = 0, wn = 0;
		size_t wi = 0, checked = 0, skipped = 0;
		size_t points = x->n < maxp ? x->n : maxp;
		for (size_t k = 0; k < points; k++) {
			size_t i = x->n <= maxp ? k : (size_t)mfr_rng_below(&pick, x->n);
			if (g->kink && g->kink(g->ctx, v, i, eps)) {
				skipped++;
				continue;
			}
			double keep = x->x[i];
			x->x[i] = keep + eps;
			g->forward(g->ctx);
			double lp = gc_loss(g);
			x->x[i] = keep - eps;
			g->forward(g->ctx);
			double lm = gc_loss(g);
			x->x[i] = keep;
			double num = (lp - lm) / (2 * eps), a = x->grad[i];
			double scale = fabs(a) > fabs(num) ? fabs(a) : fabs(num);
			double err = fabs(a - num) / (scale > 1 ? scale : 1);
			if (err > worst) {
				worst = err;
				wi = i;
				wa = a;
				wn = num;
			}
			checked++;
		}
		int ok = worst <= tol && checked > 0;
		char label[256];
		snprintf(label, sizeof label, "gradient of %s w.r.t. %s", what, x->name);
		check_report(ok, label, __FILE__, __LINE__);
		if (!ok)
			fprintf(stderr, "    %zu checked, %zu skipped at kinks; worst relative error %.3g at [%zu]: "
				"analytic %.9g, numeric %.9g\n", checked, skipped, worst, wi, wa, wn);
		failed += !ok;
	}
	g->forward(g->ctx); /* leave out[] for the unperturbed inputs */
	return failed;
}

#endif
