/* gtrain.c — one rank's training step on its GPU (contracts in gtrain.h).
 * Plain C over gpu.h, gnet.h, gpfc.h and gcomm.h. Built only with CUDA. */
#include "gtrain.h" /* defines: mfr_gtrain_* */

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gcomm.h"      /* defines: mfr_gcomm_* */
#include "gnet.h"       /* defines: mfr_gnet_* */
#include "gpfc.h"       /* defines: mfr_gpfc_* */
#include "gpu_layers.h" /* defines: mfr_sgd_cuda, mfr_sumsq_cuda, mfr_scale_cuda */

#define SCALE_START 65536.0  /* GradScaler's: 2^16 */
#define SCALE_GROWTH 2000    /* clean steps before the scale doubles */
#define MFR_GTRAIN_MAX_OUTPUTS 64 /* outputs of an architecture the step feeds (only the first gets a gradient) */
/* cuBLAS's workspace and the shared scratch (gpu.h), with 16 MiB for the
 * layers' reductions beside a full cuDNN workspace */
#define WORKSPACES ((double)MFR_GPU_BLAS_WORKSPACE_MAX + (double)MFR_GPU_CONV_WORKSPACE_MAX + (16 << 20))
#define BUCKET_BYTES ((size_t)25 << 20)      /* DDP's default gradient bucket */
/* NCCL's own device buffers between ranks: for each channel and peer, a
 * 4 MiB buffer (NCCL_BUFFSIZE's default) per protocol; 512 MiB holds 32
 * channels to a ring's two peers with their LL128 buffers */
#define NCCL_RESERVE ((double)(512 << 20))

typedef struct {
	float ss; /* the gradient's sum of squares */
	int bad;  /* a gradient value is not finite */
} norm_out;

struct mfr_gtrain {
	mfr_gtrain_config c;
	mfr_comm *comm;
	int rank, k, D, G;
	const mfr_arch *a;
	mfr_gpu *g;
	mfr_gnet *net;
	mfr_gpfc *fc;
	mfr_gcomm *gc;
	float *mom;          /* backbone momentum, the parameter block's layout */
	size_t ptotal;
	void *xin;           /* the staged batch as uploaded: raw bytes (NHWC) or NCHW fp32 */
	size_t xin_bytes;
	int staged;          /* a batch is in xin and lab */
	int32_t *lab;        /* host: the staged batch's labels */
	void *x;             /* the batch in the net's type, NHWC */
	float *emb, *F, *dF; /* this rank's embeddings, the global batch's and their gradient, fp32 */
	void *dout;          /* this rank's rows of dF, scaled, in the net's type */
	int32_t *L;          /* host: the global batch's labels */
	norm_out *red;       /* device: the gradient's sum of squares, and whether a value is not finite */
	int nruns;           /* learned tensors as runs (offset, length) of the parameter block */
	size_t *runs, *druns, sgd_blocks; /* host: the runs, then mfr_sgd_table's table; device: the table */
	int nbk, bk_next;    /* gradient all-reduce buckets, in the order backward completes them */
	size_t *bk_lo, *bk_hi; /* bucket b: [bk_lo, bk_hi) of the gradient block */
	int *bk_layer;       /* ... complete once backward has passed this layer */
	double scale;
	int clean;
	char desc[1024];
};

double mfr_gtrain_bytes(const mfr_arch *a, int d, int batch, mfr_dtype t, int64_t classes, double rate, int k, int raw)
{
	size_t P = 0;
	for (int i = 0; i < a->n_tensors; i++)
		P += (size_t)a->tensors[i].count;
	const mfr_shape *in = &a->layers[0].shape;
	double x = (double)batch * in->c * in->h * in->w;
	double G = (double)batch * k;
	return (double)mfr_gnet_bytes(a, batch, 1, t) + (double)P * 4 /* momentum */ +
	       (double)mfr_gpfc_bytes(classes, d, rate, (int)G, k) + x * ((raw ? 1 : 4) + mfr_dtype_size(t)) +
	       (double)batch * d * (4 + mfr_dtype_size(t)) + 2 * G * d * 4 + WORKSPACES + (k > 1 ? NCCL_RESERVE : 0);
}

/* Cuts the gradient block into buckets of about c.bucket_bytes at layer
 * boundaries, from its end (what backward finishes first): the bucket of
 * layers i..j is complete once backward has passed layer i. A cut is
 * rounded up to 4 values (16 bytes, NCCL's aligned path): the few values of
 * layer i below it go with the next bucket, sent later. */
static int make_buckets(mfr_gtrain *t, mfr_error *e)
{
	const mfr_arch *a = t->a;
	size_t want = (t->c.bucket_bytes ? t->c.bucket_bytes : BUCKET_BYTES) / 4, hi = t->ptotal, off = 0;
	size_t *first = malloc((size_t)a->n_layers * sizeof *first); /* each layer's first value in the block */
	if (!first || !(t->bk_lo = malloc((size_t)a->n_layers * sizeof *t->bk_lo)) ||
	    !(t->bk_hi = malloc((size_t)a->n_layers * sizeof *t->bk_hi)) ||
	    !(t->bk_layer = malloc((size_t)a->n_layers * sizeof *t->bk_layer))) {
		free(first);
		return mfr_fail(e, "out of memory");
	}
	for (int i = 0; i < a->n_layers; i++) {
		first[i] = off;
		for (int k = 0; k < a->layers[i].n_tensors; k++)
			off += (size_t)a->tensors[a->layers[i].first_tensor + k].count;
	}
	for (int i = a->n_layers - 1; i >= 1 && hi > 0; i--) {
		size_t cut = i == 1 ? 0 : (first[i] + 3) & ~(size_t)3;
		if (hi > cut && (hi - cut >= want || i == 1)) {
			t->bk_lo[t->nbk] = cut;
			t->bk_hi[t->nbk] = hi;
			t->bk_layer[t->nbk++] = i;
			hi = cut;
		}
	}
	free(first);
	return 0;
}

/* mfr_gnet_hook: sends the buckets backward has just completed. */
static int send_buckets(void *ctx, int layer, mfr_error *e)
{
	mfr_gtrain *t = ctx;
	float *grads = mfr_gnet_grads(t->net);
	for (; t->bk_next < t->nbk && t->bk_layer[t->bk_next] >= layer; t->bk_next++) {
		size_t lo = t->bk_lo[t->bk_next];
		if (mfr_gcomm_allreduce_side(t->gc, grads + lo, t->bk_hi[t->bk_next] - lo, MFR_F32, e) < 0)
			return -1;
	}
	return 0;
}

mfr_gtrain *mfr_gtrain_new(const mfr_gtrain_config *c, mfr_comm *comm, const mfr_arch *a, int d, mfr_error *e)
{
	mfr_gtrain *t = calloc(1, sizeof *t);
	if (!t) {
		mfr_fail(e, "out of memory");
		return NULL;
	}
	t->c = *c;
	t->comm = comm;
	t->rank = mfr_comm_rank(comm);
	t->k = mfr_comm_size(comm);
	t->D = d;
	t->G = c->batch * t->k;
	t->a = a;
	t->scale = c->dtype == MFR_F16 ? (c->loss_scale > 0 ? c->loss_scale : SCALE_START) : 1;
	if (c->raw && a->layers[0].shape.c != 3) {
		mfr_fail(e, "raw batches are RGB; the input has %d channels", a->layers[0].shape.c);
		goto fail;
	}
	if (a->n_outputs > MFR_GTRAIN_MAX_OUTPUTS) {
		mfr_fail(e, "%d outputs: the training step allows at most %d", a->n_outputs, MFR_GTRAIN_MAX_OUTPUTS);
		goto fail;
	}
	if (!(t->g = mfr_gpu_open(c->device, e)))
		goto fail;
	mfr_gpu_set_tf32(t->g, c->tf32);
	double need = mfr_gtrain_bytes(a, d, c->batch, c->dtype, c->classes, c->sample_rate, t->k, c->raw);
	size_t free_b = 0, total_b = 0, held = 0;
	mfr_gpu_memory(t->g, &free_b, &total_b);
	mfr_gpu_usage(t->g, &held, NULL); /* the cuBLAS workspace need counts is taken already */
	if (need - (double)held > (double)free_b) {
		mfr_fail(e, "GPU %d (%s) has %.2f GiB free of %.2f; this run needs about %.2f GiB per rank (see --plan): "
			    "more ranks, a smaller --batch or a lower --sample-rate",
			 c->device, mfr_gpu_name(t->g), free_b / 1073741824.0, total_b / 1073741824.0, need / 1073741824.0);
		goto fail;
	}
	if (!(t->net = mfr_gnet_new(t->g, a, c->batch, 1, c->dtype, e)) ||
	    !(t->fc = mfr_gpfc_new(t->g, c->classes, d, c->sample_rate, t->G, t->rank, t->k, e)) ||
	    !(t->gc = mfr_gcomm_new(comm, t->g, e)))
		goto fail;
	mfr_gnet_skip_input_grad(t->net, 1); /* nothing reads the images' gradient */
	t->ptotal = mfr_gnet_param_total(t->net);
	const mfr_shape *in = &a->layers[0].shape;
	size_t xn = (size_t)c->batch * in->c * in->h * in->w, es = mfr_dtype_size(c->dtype);
	t->xin_bytes = xn * (c->raw ? 1 : 4);
	if (!(t->mom = mfr_gpu_alloc(t->g, t->ptotal * 4, e)) || !(t->xin = mfr_gpu_alloc(t->g, t->xin_bytes, e)) ||
	    !(t->x = mfr_gpu_alloc(t->g, xn * es, e)) || !(t->emb = mfr_gpu_alloc(t->g, (size_t)c->batch * d * 4, e)) ||
	    !(t->F = mfr_gpu_alloc(t->g, (size_t)t->G * d * 4, e)) ||
	    !(t->dF = mfr_gpu_alloc(t->g, (size_t)t->G * d * 4, e)) ||
	    !(t->dout = mfr_gpu_alloc(t->g, (size_t)c->batch * d * es, e)) || !(t->red = mfr_gpu_alloc(t->g, sizeof *t->red, e)))
		goto fail;
	if (mfr_gpu_zero(t->g, t->mom, t->ptotal * 4, e) < 0)
		goto fail;
	if (!(t->L = malloc((size_t)t->G * sizeof *t->L)) || !(t->lab = malloc((size_t)c->batch * sizeof *t->lab)) ||
	    !(t->runs = malloc(5 * ((size_t)a->n_tensors + 1) * sizeof(size_t)))) {
		mfr_fail(e, "out of memory");
		goto fail;
	}
	/* the learned tensors (not running statistics, not frozen) as runs */
	size_t off = 0;
	for (int i = 0; i < a->n_tensors; i++) {
		size_t cnt = (size_t)a->tensors[i].count;
		if (!a->tensors[i].buffer && !a->tensors[i].frozen) {
			size_t *last = t->nruns > 0 ? t->runs + 2 * (t->nruns - 1) : NULL;
			if (last && last[0] + last[1] == off)
				last[1] += cnt;
			else {
				t->runs[2 * t->nruns] = off;
				t->runs[2 * t->nruns++ + 1] = cnt;
			}
		}
		off += cnt;
	}
	size_t *table = t->runs + 2 * ((size_t)a->n_tensors + 1);
	t->sgd_blocks = mfr_sgd_table(table, t->runs, t->nruns);
	if (!(t->druns = mfr_gpu_alloc(t->g, 3 * ((size_t)t->nruns + 1) * sizeof(size_t), e)) ||
	    mfr_gpu_put(t->g, t->druns, table, 3 * (size_t)t->nruns * sizeof(size_t), e) < 0)
		goto fail;
	if (mfr_gcomm_overlaps(t->gc) && make_buckets(t, e) < 0)
		goto fail;
	char bk[96] = "";
	if (t->nbk)
		snprintf(bk, sizeof bk, ", gradients all-reduced in %d bucket%s during backward", t->nbk, t->nbk > 1 ? "s" : "");
	char ver[256];
	mfr_gpu_versions(ver, sizeof ver);
	snprintf(t->desc, sizeof t->desc, "GPU %d %s (%s), backbone %s%s, classifier fp32%s, %s%s", c->device,
		 mfr_gpu_name(t->g), ver, mfr_dtype_name(c->dtype),
		 c->dtype == MFR_F16 ? " with dynamic loss scaling" : c->dtype == MFR_F32 && c->tf32 ? " (TF32)" : "",
		 c->tf32 ? " (TF32 GEMMs)" : "", mfr_gcomm_describe(t->gc), bk);
	return t;
fail:
	mfr_gtrain_free(t);
	return NULL;
}

void mfr_gtrain_free(mfr_gtrain *t)
{
	if (!t)
		return;
	if (t->g) {
		mfr_gpu_free(t->g, t->mom);
		mfr_gpu_free(t->g, t->xin);
		mfr_gpu_free(t->g, t->x);
		mfr_gpu_free(t->g, t->emb);
		mfr_gpu_free(t->g, t->F);
		mfr_gpu_free(t->g, t->dF);
		mfr_gpu_free(t->g, t->dout);
		mfr_gpu_free(t->g, t->red);
		mfr_gpu_free(t->g, t->druns);
	}
	mfr_gcomm_free(t->gc);
	mfr_gpfc_free(t->fc);
	mfr_gnet_free(t->net);
	mfr_gpu_close(t->g);
	free(t->L);
	free(t->lab);
	free(t->runs);
	free(t->bk_lo);
	free(t->bk_hi);
	free(t->bk_layer);
	free(t);
}

int mfr_gtrain_stage(mfr_gtrain *t, const void *x, const int32_t *labels, mfr_error *e)
{
	memcpy(t->lab, labels, (size_t)t->c.batch * sizeof *t->lab);
	if (mfr_gpu_put_side(t->g, t->xin, x, t->xin_bytes, e) < 0)
		return -1;
	t->staged = 1;
	return 0;
}

int mfr_gtrain_sync(mfr_gtrain *t, mfr_error *e) { return mfr_gpu_sync(t->g, e); }

void *mfr_gtrain_host_alloc(mfr_gtrain *t, size_t bytes, mfr_error *e) { return mfr_gpu_host_alloc(t->g, bytes, e); }

void mfr_gtrain_host_free(mfr_gtrain *t, void *p) { mfr_gpu_host_free(t->g, p); }

/* A step's last call, skipped or not: launch errors, and the profiler's
 * spans of the step (the time until the next step is the host's). */
static int step_end(mfr_gpu *g, mfr_error *e)
{
	mfr_gpu_span(g, NULL);
	if (mfr_gpu_check(g, "training step", e) < 0)
		return -1;
	return mfr_gpu_profiling(g) ? mfr_gpu_profile_collect(g, e) : 0;
}

int mfr_gtrain_step(mfr_gtrain *t, uint64_t fwd_seed, uint64_t pfc_seed, double lr, double *loss, double *acc,
		    double *gnorm, int *skipped, mfr_error *e)
{
	const mfr_gtrain_config *c = &t->c;
	mfr_gpu *g = t->g;
	const mfr_shape *in = &t->a->layers[0].shape;
	int B = c->batch, D = t->D, hw = in->h * in->w;
	size_t bd = (size_t)B * D;
	*skipped = 0;
	if (!t->staged)
		return mfr_fail(e, "no batch staged for this step");
	t->staged = 0;
	/* the staged batch, once uploaded, into the net's layout and type; the
	 * next upload (side stream) waits until this has read it */
	if (mfr_gpu_main_wait(g, e) < 0)
		return -1;
	mfr_gpu_span(g, "input");
	if (c->raw)
		mfr_input_cuda(t->x, c->dtype, t->xin, B, hw, c->input.mean, c->input.scale, c->input.bgr, g);
	else
		mfr_to_nhwc_cuda(t->x, c->dtype, t->xin, MFR_F32, B, in->c, hw, 0, g);
	if (mfr_gpu_side_wait(g, e) < 0 || mfr_gnet_forward(t->net, t->x, B, 1, fwd_seed, e) < 0)
		return -1;
	/* embeddings as float32 to every rank; labels over the host */
	mfr_gpu_span(g, "embedding gather");
	mfr_convert_cuda(t->emb, MFR_F32, mfr_gnet_output(t->net, 0, NULL), c->dtype, bd, g);
	if (mfr_gcomm_allgather(t->gc, t->emb, t->F, bd, MFR_F32, e) < 0)
		return -1;
	mfr_comm_allgather(t->comm, t->lab, t->L, (size_t)B, MFR_I32);
	mfr_gpu_span(g, "classifier fwd+bwd");
	if (mfr_gpfc_sample(t->fc, t->L, t->G, pfc_seed, e) < 0 ||
	    mfr_gpfc_forward_backward(t->fc, t->gc, t->F, t->L, t->G, &c->margin, NULL, NULL, t->dF, e) < 0)
		return -1; /* the loss is read below, with the gradient norm: no wait here */
	/* this rank's rows, times the loss scale, in the net's type */
	float *mine = t->dF + (size_t)t->rank * bd;
	mfr_gpu_span(g, "loss scale + zero grads");
	if (t->scale != 1)
		mfr_scale_cuda(mine, (float)t->scale, bd, g);
	mfr_convert_cuda(t->dout, c->dtype, mine, MFR_F32, bd, g);
	const void *douts[MFR_GTRAIN_MAX_OUTPUTS] = {t->dout}; /* the first output is the embedding */
	float *grads = mfr_gnet_grads(t->net), *params = mfr_gnet_params(t->net);
	if (mfr_gnet_zero_grad(t->net, e) < 0)
		return -1;
	if (t->nbk) { /* buckets on the side stream as backward completes them */
		t->bk_next = 0;
		if (mfr_gnet_backward(t->net, douts, send_buckets, t, e) < 0 || send_buckets(t, 0, e) < 0 ||
		    mfr_gpu_main_wait(g, e) < 0)
			return -1;
	} else if (mfr_gnet_backward(t->net, douts, NULL, NULL, e) < 0 ||
		   mfr_gcomm_allreduce(t->gc, grads, t->ptotal, MFR_F32, MFR_SUM, e) < 0)
		return -1;
	/* the norm (and, for fp16, overflow) in one pass; this waits for the step */
	norm_out h;
	mfr_gpu_span(g, "gradient norm");
	if (mfr_gpu_zero(g, &t->red->bad, sizeof t->red->bad, e) < 0)
		return -1;
	mfr_sumsq_cuda(&t->red->ss, &t->red->bad, grads, t->ptotal, g);
	if (mfr_gpu_check(g, "gradient norm", e) < 0 || mfr_gpu_get(g, &h, t->red, sizeof h, e) < 0 ||
	    mfr_gpfc_loss(t->fc, loss, acc, e) < 0)
		return -1;
	float ss = h.ss;
	int bad = h.bad;
	if (!isfinite(*loss))
		return mfr_fail(e, "the loss is not finite (lr %g): lower --lr or set --clip", lr);
	if (bad || !isfinite(ss)) {
		if (c->dtype != MFR_F16)
			return mfr_fail(e, "a backbone gradient is not finite (lr %g): lower --lr or set --clip", lr);
		t->scale /= 2;
		t->clean = 0;
		*skipped = 1;
		*gnorm = INFINITY;
		return step_end(g, e);
	}
	double norm = sqrt((double)ss) / t->scale, gscale = 1 / t->scale;
	*gnorm = norm;
	if (c->clip > 0 && norm > c->clip)
		gscale *= c->clip / norm;
	mfr_gpu_span(g, "sgd backbone");
	mfr_sgd_cuda(params, t->mom, grads, t->druns, t->nruns, t->sgd_blocks, (float)lr, (float)c->momentum, (float)c->wd,
		     (float)gscale, g);
	mfr_gnet_params_changed(t->net);
	mfr_gpu_span(g, "sgd classifier");
	mfr_gpfc_step(t->fc, lr, c->momentum, c->fc_wd, c->sparse_momentum);
	if (c->dtype == MFR_F16 && ++t->clean >= SCALE_GROWTH) {
		t->scale *= 2;
		t->clean = 0;
	}
	return step_end(g, e);
}

void mfr_gtrain_profile_report(mfr_gtrain *t, FILE *f, double steps) { mfr_gpu_profile_report(t->g, f, steps, "step"); }

void mfr_gtrain_profile(mfr_gtrain *t, int on) { mfr_gpu_profile(t->g, on); }

int mfr_gtrain_get_state(mfr_gtrain *t, float *params, float *mom, float *fcw, float *fcm, mfr_error *e)
{
	if (params && mfr_gnet_get_params(t->net, params, e) < 0)
		return -1;
	if (mom && mfr_gpu_get(t->g, mom, t->mom, t->ptotal * 4, e) < 0)
		return -1;
	return mfr_gpfc_get(t->fc, fcw, fcm, e);
}

int mfr_gtrain_put_state(mfr_gtrain *t, const float *params, const float *mom, const float *fcw, const float *fcm,
			 mfr_error *e)
{
	if (params && mfr_gnet_put_params(t->net, params, e) < 0)
		return -1;
	if (mom && mfr_gpu_put(t->g, t->mom, mom, t->ptotal * 4, e) < 0)
		return -1;
	return mfr_gpfc_put(t->fc, fcw, fcm, e);
}

const char *mfr_gtrain_describe(const mfr_gtrain *t) { return t->desc; }

void mfr_gtrain_init_classifier(mfr_gtrain *t, uint64_t seed) { mfr_gpfc_init(t->fc, seed); }

double mfr_gtrain_loss_scale(const mfr_gtrain *t) { return t->scale; }

void mfr_gtrain_scale_state(const mfr_gtrain *t, int *log2_scale, int *clean)
{
	int l2 = (int)lrint(log2(t->scale));
	*log2_scale = l2 > 0 ? l2 : 0; /* a scale under 1 (a run overflowing for 17 steps in a row) restarts at 1 */
	*clean = t->clean;
}

void mfr_gtrain_set_scale_state(mfr_gtrain *t, int log2_scale, int clean)
{
	if (t->c.dtype != MFR_F16)
		return;
	t->scale = ldexp(1.0, log2_scale);
	t->clean = clean;
}

void mfr_gtrain_memory(const mfr_gtrain *t, size_t *now, size_t *peak) { mfr_gpu_usage(t->g, now, peak); }
