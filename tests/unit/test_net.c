/* test_net.c — the graph executor in double (mfr_net64_*): a whole-network
 * gradient check in float64 on a small graph that uses every op, for every
 * parameter and every input. The float API is tested in test_net_float.c. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define MFR_REAL_DOUBLE
#include "arch.h"
#include "gradcheck.h"
#include "net.h"
#include "tiny_arch.h"



typedef struct {
	mfr_net64 *net;
	double *x;
	int N;
} ctx;

static void fwd(void *p)
{
	ctx *c = p;
	mfr_error e;
	if (mfr_net64_forward(c->net, c->x, c->N, 1, 42, &e) < 0) {
		fprintf(stderr, "forward: %s\n", e.msg);
		exit(1);
	}
}

/* gradcheck wants one output array: the harness reads net output 0 through
 * out[], so copy it there after each forward. */
static double *out_copy;
static size_t out_n;
static void fwd_copy(void *p)
{
	ctx *c = p;
	fwd(p);
	size_t dim;
	double *o = mfr_net64_output(c->net, 0, &dim);
	memcpy(out_copy, o, out_n * sizeof *o);
}

static double *dout_buf;
static void bwd(void *p)
{
	ctx *c = p;
	mfr_error e;
	const double *dout[2] = {dout_buf, NULL};
	/* the harness pre-fills the gradient buffers with 0.5; the net's own
	 * blocks are what it reads, so do not zero them here */
	if (mfr_net64_backward(c->net, dout, &e) < 0) {
		fprintf(stderr, "backward: %s\n", e.msg);
		exit(1);
	}
}

static void test_gradients(void)
{
	mfr_arch *a = parse(TINY);
	CHECK(a != NULL);
	if (!a)
		return;
	mfr_error e;
	int N = 3;
	mfr_net64 *net = mfr_net64_new(a, N, 1, &e);
	CHECK(net != NULL);
	mfr_net64_init(net, 7);
	size_t xin = (size_t)N * 3 * 9 * 8;
	double *x = malloc(xin * sizeof *x);
	gc_fill(x, xin, -1, 1, 11);
	ctx c = {net, x, N};
	fwd(&c);
	size_t dim;
	mfr_net64_output(net, 0, &dim);
	out_n = dim * (size_t)N;
	out_copy = malloc(out_n * sizeof *out_copy);
	dout_buf = malloc(out_n * sizeof *dout_buf);
	gc_var vars[2] = {
		{x, mfr_net64_input_grad(net), xin, "input"},
		{mfr_net64_params(net), mfr_net64_grads(net), mfr_net64_param_total(net), "parameters"},
	};
	/* the input gradient buffer is rewritten (zeroed) by every backward, so
	 * the harness's += pre-fill check applies only to the parameters; check
	 * the input separately from the parameters */
	gradcheck g = {.forward = fwd_copy, .backward = bwd, .ctx = &c, .out = out_copy, .dout = dout_buf,
		       .n_out = out_n, .vars = &vars[1], .nvars = 1, .max_points = 400, .tol = 1e-6};
	gradcheck_run(&g, "tiny network (parameters)");
	/* input: plain central differences against a fresh backward */
	gc_fill(dout_buf, out_n, -1, 1, 0x5eed);
	fwd_copy(&c);
	mfr_net64_zero_grad(net);
	bwd(&c);
	double *dx = malloc(xin * sizeof *dx), worst = 0;
	memcpy(dx, mfr_net64_input_grad(net), xin * sizeof *dx);
	for (size_t i = 0; i < xin; i++) {
		double keep = x[i], lp, lm;
		x[i] = keep + 1e-5;
		fwd_copy(&c);
		lp = gc_loss(&g);
		x[i] = keep - 1e-5;
		fwd_copy(&c);
		lm = gc_loss(&g);
		x[i] = keep;
		double num = (lp - lm) / 2e-5, sc = fmax(fmax(fabs(num), fabs(dx[i])), 1);
		worst = fmax(worst, fabs(num - dx[i]) / sc);
	}
	printf("tiny network: worst relative input-gradient error %.3g over %zu inputs\n", worst, xin);
	CHECK(worst < 1e-6);
	free(dx);
	free(x);
	free(out_copy);
	free(dout_buf);
	mfr_net64_free(net);
	mfr_arch_free(a);
}

int main(void)
{
	test_gradients();
	return check_done();
}
