/* net.c — the graph executor (net.h): storage planning, seeded
 * initialisation, forward and backward over the reference layers, and the
 * model-file binding. Compiled for float (mfr_net_*) and double (mfr_net64_*). */
#include "net.h" /* defines: mfr_net_* / mfr_net64_* */

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "layers_elem.h"    /* defines: batchnorm, prelu, relu, sigmoid, add, concat, l2norm, se, splat */
#include "layers_spatial.h" /* defines: conv2d, pools, gap, pad2d, chanpad, linear, dropout */
#ifndef MFR_REAL_DOUBLE
#include "dnnl_cpu.h" /* defines: mfr_conv2d_forward_cpu, ... (oneDNN, or the reference without it) */
#endif


struct MFR_NET_T {
	const mfr_arch *a;
	int max_batch, training;
	int last_batch, last_training; /* of the last forward; -1 before any */
	int reference;            /* 1: conv and linear on the reference layers too */
	mfr_real *params, *grads;
	size_t *poff, ptotal;
	mfr_real *act, *dact;     /* activations and (training) their gradients */
	size_t *aoff, *anum;      /* per layer: offset in act/dact, values per image */
	mfr_real *save;           /* what forward keeps for backward, per layer */
	size_t *soff;
	uint8_t *mask;            /* dropout masks */
	size_t *moff;
	mfr_real *work;           /* backward scratch, the largest need of any layer */
	const mfr_real **inbuf;   /* concat input pointers */
	mfr_real **dinbuf;
	int *cbuf;
	/* inference: a bn whose input is a conv used by nothing else is folded
	 * into that conv (w' = w*a, b' = (b - mean)*a + beta, a = gamma/sqrt(var+eps))
	 * and shares its output; fold_bn[conv] is the bn's index or -1 */
	int *fold_bn;
	mfr_real *fold;           /* folded weights and biases, per folded conv */
	size_t *foff;
	int fold_dirty;           /* parameters may have changed since folding */
	uint64_t wgen;            /* bumped whenever parameters may have changed: the
				   * fast backend keeps reordered weights per version */
	/* inference: a prelu or relu whose input feeds nothing else works in
	 * place, in its input's slot */
	uint8_t *inplace;
	/* inference on oneDNN (blk > 0, see find_fusions and plan_layouts):
	 * fuse[conv] = the add whose other operand's slot the conv accumulates
	 * into (its sum post-op), fuse[add] = that conv, so the add itself does
	 * nothing; -1 elsewhere. lay[i]: layer i's output layout on the fast
	 * path, 0 (NCHW) or blk (mfr_cpu_block's nChw<blk>c). */
	int blk;
	int *fuse;
	uint8_t *lay;
	mfr_real *stage;          /* layout conversions, and a fused conv's result on the reference */
	mfr_real *coef;           /* per-channel factors of a blocked layer, 2 x padded channels */
};

static size_t shape_numel(const mfr_shape *s) { return (size_t)s->c * (size_t)s->h * (size_t)s->w; }

#define P(n, L, k) ((n)->params + (n)->poff[(L)->first_tensor + (k)])
#define G(n, L, k) ((n)->grads + (n)->poff[(L)->first_tensor + (k)])
#define ACT(n, i) ((n)->act + (n)->aoff[i])
#define DACT(n, i) ((n)->dact + (n)->aoff[i])

static size_t work_len(const mfr_layer *L, int N)
{
	if (L->op == MFR_OP_SE)
		return mfr_se_work_len(L->in_shape.c, L->in_shape.c / L->r);
	if (L->op == MFR_OP_SPLAT)
		return mfr_splat_work_len(N, L->shape.c, L->radix, L->inter);
	return 0;
}

/* Values per image of a layer of shape sh as stored: channels padded to a
 * multiple of blk when the net may keep activations blocked. */
static size_t padded_numel(const MFR_NET_T *n, const mfr_shape *sh)
{
	size_t c = (size_t)sh->c;
	if (n->blk > 0)
		c = (c + (size_t)n->blk - 1) / (size_t)n->blk * (size_t)n->blk;
	return c * (size_t)sh->h * (size_t)sh->w;
}

/* The operand of fused add A whose slot its conv accumulates into. */
static int fused_operand(const MFR_NET_T *n, int A)
{
	const mfr_layer *L = &n->a->layers[A];
	int c = n->fuse[A], q = n->fold_bn[c] >= 0 ? n->fold_bn[c] : c;
	return L->in[0] == q ? L->in[1] : L->in[0];
}

/* Output layouts of the fast path (see lay), by slot group (root): a conv
 * writes blocked; bn, prelu, relu and add stay blocked when all their
 * inputs are; every other layer works on NCHW, as do the network's input and
 * outputs (the caller reads those). */
static void plan_layouts(MFR_NET_T *n, const int *root)
{
	const mfr_arch *a = n->a;
	int nl = a->n_layers;
	for (int i = 0; i < nl; i++)
		n->lay[i] = 1; /* 1: may be blocked, until a rule below says not */
	n->lay[0] = 0;
	for (int k = 0; k < a->n_outputs; k++)
		n->lay[root[a->outputs[k]]] = 0;
	for (int i = 0; i < nl; i++) {
		const mfr_layer *L = &a->layers[i];
		if (root[i] != i) {
			n->lay[i] = n->lay[root[i]];
			continue;
		}
		int ok = n->lay[i] && (L->op == MFR_OP_CONV || L->op == MFR_OP_BN || L->op == MFR_OP_PRELU ||
				       L->op == MFR_OP_RELU || L->op == MFR_OP_ADD);
		for (int k = 0; ok && L->op != MFR_OP_CONV && k < L->n_in; k++)
			ok = n->lay[L->in[k]] != 0;
		n->lay[i] = ok ? (uint8_t)n->blk : 0;
	}
}

/* Inference keeps only live activations: each layer's output takes a free
 * slot (best fit) and its inputs' slots are released after their last
 * consumer. Outputs are never released. A folded bn shares its conv's slot,
 * an in-place prelu or relu its input's, a fused conv and its add the slot of
 * the add's other operand: one slot group, named by its first layer (root).
 * Slots hold padded_numel values per image; on oneDNN the layouts are planned
 * here too (plan_layouts). Returns the block size. */
static size_t plan_inference(MFR_NET_T *n, size_t *aoff)
{
	const mfr_arch *a = n->a;
	int nl = a->n_layers;
	int *last = malloc((size_t)nl * sizeof *last), *slot_of = malloc((size_t)nl * sizeof *slot_of);
	int *root = malloc((size_t)nl * sizeof *root);
	size_t *cap = calloc((size_t)nl, sizeof *cap);
	int *busy = calloc((size_t)nl, sizeof *busy), nslots = 0;
	size_t total = 0;
	if (!last || !slot_of || !cap || !busy || !root) {
		total = (size_t)-1;
		goto out;
	}
	for (int i = 0; i < nl; i++)
		root[i] = i;
	for (int i = 0; i < nl; i++) { /* layer order: a chain conv -> bn -> prelu resolves to the conv */
		const mfr_layer *L = &a->layers[i];
		if ((L->op == MFR_OP_BN && n->fold_bn[L->in[0]] == i) || n->inplace[i])
			root[i] = root[L->in[0]];
		if (n->fuse[i] >= 0) /* a fused conv or add: the slot of the add's other operand */
			root[i] = root[fused_operand(n, L->op == MFR_OP_ADD ? i : n->fuse[i])];
	}
	if (n->blk > 0)
		plan_layouts(n, root);
	for (int i = 0; i < nl; i++)
		last[i] = i;
	for (int i = 0; i < nl; i++) {
		if (last[root[i]] < i)
			last[root[i]] = i;
		for (int k = 0; k < a->layers[i].n_in; k++)
			last[root[a->layers[i].in[k]]] = i;
	}
	for (int k = 0; k < a->n_outputs; k++)
		last[root[a->outputs[k]]] = nl; /* never released */
	for (int i = 0; i < nl; i++) {
		if (root[i] != i) { /* folded, in place or fused: its root's slot */
			slot_of[i] = slot_of[root[i]];
			for (int k = 0; k < a->layers[i].n_in; k++) {
				int r = root[a->layers[i].in[k]];
				if (last[r] == i && r != root[i])
					busy[slot_of[r]] = 0;
			}
			if (last[root[i]] == i)
				busy[slot_of[root[i]]] = 0;
			continue;
		}
		size_t need = padded_numel(n, &a->layers[i].shape) * (size_t)n->max_batch;
		int best = -1;
		for (int s = 0; s < nslots; s++)
			if (!busy[s] && cap[s] >= need && (best < 0 || cap[s] < cap[best]))
				best = s;
		if (best < 0) { /* grow the largest free slot, or open a new one */
			for (int s = 0; s < nslots; s++)
				if (!busy[s] && (best < 0 || cap[s] > cap[best]))
					best = s;
			if (best < 0)
				best = nslots++;
			cap[best] = need;
		}
		busy[best] = 1;
		slot_of[i] = best;
		for (int k = 0; k < a->layers[i].n_in; k++) {
			int r = root[a->layers[i].in[k]];
			if (last[r] == i)
				busy[slot_of[r]] = 0;
		}
		if (last[i] == i) /* unused result: its slot is free again */
			busy[best] = 0;
	}
	size_t *soff = malloc((size_t)(nslots ? nslots : 1) * sizeof *soff);
	if (!soff) {
		total = (size_t)-1;
		goto out;
	}
	for (int s = 0; s < nslots; s++) {
		soff[s] = total;
		total += (cap[s] + 15) & ~(size_t)15; /* 64-byte aligned slices */
	}
	for (int i = 0; i < nl; i++)
		aoff[i] = soff[slot_of[i]];
	free(soff);
out:
	free(last);
	free(slot_of);
	free(root);
	free(cap);
	free(busy);
	return total;
}


/* Marks the adds of two operands that an inference net on oneDNN computes
 * as a sum post-op (see fuse): operand q comes from a conv (its bn folded or
 * none) and feeds only the add; operand p is ready before that conv runs and
 * has no other reader from then on, so the conv may accumulate into p's
 * slot. iresnet's residual add: conv2 (+bn3) into the block input, or the
 * downsample conv (+bn) into conv2's result. */
static void find_fusions(MFR_NET_T *n)
{
	const mfr_arch *a = n->a;
	int nl = a->n_layers;
	for (int i = 0; i < nl; i++)
		n->fuse[i] = -1;
	if (n->training || n->blk <= 0)
		return;
	for (int A = 0; A < nl; A++) {
		const mfr_layer *L = &a->layers[A];
		if (L->op != MFR_OP_ADD || L->n_in != 2)
			continue;
		for (int t = 0; t < 2; t++) {
			int q = L->in[t], p = L->in[1 - t], c = q;
			if (a->layers[q].op == MFR_OP_BN && n->fold_bn[a->layers[q].in[0]] == q)
				c = a->layers[q].in[0];
			if (a->layers[c].op != MFR_OP_CONV || (c == q && n->fold_bn[c] >= 0) || n->fuse[c] >= 0 ||
			    mfr_arch_users(a, q) != 1 || p == q || p == 0 || p > c)
				continue;
			int late = 0; /* another reader of p at or after the conv, or p an output */
			for (int j = c; j < nl; j++)
				for (int k = 0; k < a->layers[j].n_in; k++)
					late |= j != A && a->layers[j].in[k] == p;
			for (int k = 0; k < a->n_outputs; k++)
				late |= a->outputs[k] == p;
			if (late)
				continue;
			n->fuse[c] = A;
			n->fuse[A] = c;
			break;
		}
	}
}

static void *zalloc(size_t count, size_t size, mfr_error *e)
{
	void *p = calloc(count ? count : 1, size);
	if (!p)
		mfr_fail(e, "out of memory allocating %zu x %zu bytes for the network", count, size);
	return p;
}

/* Where each layer's activation (training), saved values and dropout masks
 * go for batches of max_batch (any array may be NULL), their totals in
 * values, and the largest scratch any layer needs. Returns the most inputs
 * a layer has (at least 2). */
static int layout(const mfr_arch *a, int max_batch, int training, size_t *aoff, size_t *anum, size_t *soff,
		  size_t *moff, size_t *atotal, size_t *stotal, size_t *mtotal, size_t *wmax)
{
	int maxin = 2;
	*atotal = *stotal = *mtotal = *wmax = 0;
	for (int i = 0; i < a->n_layers; i++) {
		const mfr_layer *L = &a->layers[i];
		size_t num = shape_numel(&L->shape);
		if (anum)
			anum[i] = num;
		if (L->n_in > maxin)
			maxin = L->n_in;
		if (soff)
			soff[i] = *stotal;
		*stotal += mfr_layer_save_len(L, max_batch);
		if (!training)
			continue;
		if (aoff)
			aoff[i] = *atotal;
		*atotal += (num * (size_t)max_batch + 15) & ~(size_t)15;
		if (moff)
			moff[i] = *mtotal;
		if (L->op == MFR_OP_DROPOUT)
			*mtotal += num * (size_t)max_batch;
		if (work_len(L, max_batch) > *wmax)
			*wmax = work_len(L, max_batch);
	}
	return maxin;
}

size_t MFR_NET(training_bytes)(const mfr_arch *a, int batch)
{
	size_t atotal, stotal, mtotal, wmax;
	layout(a, batch, 1, NULL, NULL, NULL, NULL, &atotal, &stotal, &mtotal, &wmax);
	return (2 * atotal + stotal + wmax) * sizeof(mfr_real) + mtotal;
}

MFR_NET_T *MFR_NET(new)(const mfr_arch *a, int max_batch, int training, mfr_error *e)
{
	if (max_batch < 1 || max_batch > 1 << 20) {
		mfr_fail(e, "batch size %d out of range 1..%d", max_batch, 1 << 20);
		return NULL;
	}
	MFR_NET_T *n = zalloc(1, sizeof *n, e);
	if (!n)
		return NULL;
	int nl = a->n_layers;
	n->a = a;
	n->max_batch = max_batch;
	n->training = training;
	n->last_batch = -1;
	if (!(n->poff = zalloc((size_t)a->n_tensors, sizeof *n->poff, e)) ||
	    !(n->aoff = zalloc((size_t)nl, sizeof *n->aoff, e)) || !(n->anum = zalloc((size_t)nl, sizeof *n->anum, e)) ||
	    !(n->soff = zalloc((size_t)nl, sizeof *n->soff, e)) || !(n->moff = zalloc((size_t)nl, sizeof *n->moff, e)) ||
	    !(n->fold_bn = zalloc((size_t)nl, sizeof *n->fold_bn, e)) || !(n->foff = zalloc((size_t)nl, sizeof *n->foff, e)) ||
	    !(n->inplace = zalloc((size_t)nl, 1, e)) || !(n->fuse = zalloc((size_t)nl, sizeof *n->fuse, e)) ||
	    !(n->lay = zalloc((size_t)nl, 1, e)))
		goto fail;
	if (training)
		for (int i = 0; i < nl; i++)
			n->fold_bn[i] = -1;
	else /* conv -> bn pairs folded, prelu/relu in place */
		mfr_arch_inference_merges(a, n->fold_bn, n->inplace);
#ifndef MFR_REAL_DOUBLE
	if (!training)
		n->blk = mfr_cpu_block();
#endif
	find_fusions(n);
	size_t ftotal = 0;
	for (int i = 0; i < nl; i++)
		if (n->fold_bn[i] >= 0) {
			const mfr_layer *L = &a->layers[i];
			n->foff[i] = ftotal;
			ftotal += (size_t)a->tensors[L->first_tensor].count + (size_t)L->out;
		}
	if (ftotal && !(n->fold = zalloc(ftotal, sizeof(mfr_real), e)))
		goto fail;
	n->fold_dirty = 1;
	n->wgen++;
	for (int i = 0; i < a->n_tensors; i++) {
		n->poff[i] = n->ptotal;
		n->ptotal += (size_t)a->tensors[i].count;
	}
	if (!(n->params = zalloc(n->ptotal, sizeof(mfr_real), e)))
		goto fail;
	if (training && !(n->grads = zalloc(n->ptotal, sizeof(mfr_real), e)))
		goto fail;
	size_t atotal, stotal, mtotal, wmax;
	int maxin = layout(a, max_batch, training, n->aoff, n->anum, n->soff, n->moff, &atotal, &stotal, &mtotal, &wmax);
	if (!training && (atotal = plan_inference(n, n->aoff)) == (size_t)-1) {
		mfr_fail(e, "out of memory planning activations");
		goto fail;
	}
	size_t stage = 0, cmax = 0;
	for (int i = 0; i < nl; i++) { /* (lay and fuse are all 0 and -1 in a training net) */
		const mfr_layer *L = &a->layers[i];
		size_t need = 0; /* blocked inputs of a layer that works on NCHW, a fused conv's result */
		for (int k = 0; L->op != MFR_OP_CONV && !n->lay[i] && k < L->n_in; k++)
			if (n->lay[L->in[k]])
				need += n->anum[L->in[k]] * (size_t)max_batch;
		if (L->op == MFR_OP_CONV && n->fuse[i] >= 0)
			need = n->anum[i] * (size_t)max_batch;
		stage = need > stage ? need : stage;
		size_t c = padded_numel(n, &(mfr_shape){.c = L->shape.c, .h = 1, .w = 1});
		cmax = c > cmax ? c : cmax;
	}
	if ((stage && !(n->stage = zalloc(stage, sizeof(mfr_real), e))) ||
	    (cmax && !(n->coef = zalloc(2 * cmax, sizeof(mfr_real), e))))
		goto fail;
	if (!(n->act = zalloc(atotal, sizeof(mfr_real), e)) || !(n->save = zalloc(stotal, sizeof(mfr_real), e)) ||
	    !(n->inbuf = zalloc((size_t)maxin, sizeof *n->inbuf, e)) ||
	    !(n->dinbuf = zalloc((size_t)maxin, sizeof *n->dinbuf, e)) || !(n->cbuf = zalloc((size_t)maxin, sizeof *n->cbuf, e)))
		goto fail;
	if (training && (!(n->dact = zalloc(atotal, sizeof(mfr_real), e)) || !(n->mask = zalloc(mtotal, 1, e)) ||
			 !(n->work = zalloc(wmax, sizeof(mfr_real), e))))
		goto fail;
	return n;
fail:
	MFR_NET(free)(n);
	return NULL;
}

void MFR_NET(free)(MFR_NET_T *n)
{
	if (!n)
		return;
	free(n->params);
	free(n->grads);
	free(n->poff);
	free(n->act);
	free(n->dact);
	free(n->aoff);
	free(n->anum);
	free(n->save);
	free(n->soff);
	free(n->mask);
	free(n->moff);
	free(n->work);
	free(n->inbuf);
	free(n->dinbuf);
	free(n->cbuf);
	free(n->fold_bn);
	free(n->inplace);
	free(n->fuse);
	free(n->lay);
	free(n->stage);
	free(n->coef);
	free(n->fold);
	free(n->foff);
	free(n);
}

/* Handing out the parameters for writing means folded weights are stale. */
mfr_real *MFR_NET(params)(MFR_NET_T *n)
{
	n->fold_dirty = 1;
	n->wgen++;
	return n->params;
}
mfr_real *MFR_NET(grads)(MFR_NET_T *n) { return n->grads; }
size_t MFR_NET(param_total)(const MFR_NET_T *n) { return n->ptotal; }
mfr_real *MFR_NET(tensor)(MFR_NET_T *n, int i)
{
	n->fold_dirty = 1;
	n->wgen++;
	return n->params + n->poff[i];
}
mfr_real *MFR_NET(tensor_grad)(MFR_NET_T *n, int i) { return n->grads ? n->grads + n->poff[i] : NULL; }

/* ---- initialisation ---- */

static const char *suffix(const char *name)
{
	const char *dot = strrchr(name, '.');
	return dot ? dot + 1 : name;
}

static int ends(const char *s, const char *suf)
{
	size_t a = strlen(s), b = strlen(suf);
	return a >= b && strcmp(s + a - b, suf) == 0;
}

void MFR_NET(init)(MFR_NET_T *n, uint64_t seed)
{
	const mfr_arch *a = n->a;
	n->fold_dirty = 1;
	n->wgen++;
	for (int i = 0; i < a->n_tensors; i++) {
		const mfr_arch_tensor *t = &a->tensors[i];
		const mfr_layer *L = &a->layers[t->layer];
		const char *s = suffix(t->name);
		mfr_real *p = n->params + n->poff[i];
		mfr_rng r = {mfr_hash2(seed, (uint64_t)i)}; /* per tensor: independent of the others' sizes */
		size_t cnt = (size_t)t->count;
		if (L->op == MFR_OP_CONV && !strcmp(s, "weight")) {
			double fan_out = (double)L->out * L->kh * L->kw / L->groups;
			double sd = sqrt(2.0 / fan_out);
			for (size_t k = 0; k < cnt; k++)
				p[k] = (mfr_real)(sd * mfr_rng_normal(&r));
		} else if (L->op == MFR_OP_PRELU) {
			for (size_t k = 0; k < cnt; k++)
				p[k] = (mfr_real)0.25;
		} else if (ends(s, "running_var") || ((L->op == MFR_OP_BN || L->op == MFR_OP_BN1D) && !strcmp(s, "weight")) ||
			   !strcmp(s, "bn_weight")) {
			for (size_t k = 0; k < cnt; k++)
				p[k] = 1;
		} else if ((L->op == MFR_OP_LINEAR || L->op == MFR_OP_SE || L->op == MFR_OP_SPLAT) &&
			   (ends(s, "weight") || ends(s, "bias"))) {
			/* fan_in of the matrix this tensor belongs to: dims[1] of its weight */
			const mfr_arch_tensor *w = ends(s, "bias") ? t - 1 : t;
			double fan_in = w->ndim >= 2 ? w->dims[1] : 1;
			double bound = 1.0 / sqrt(fan_in);
			for (size_t k = 0; k < cnt; k++)
				p[k] = (mfr_real)(bound * (2 * mfr_rng_uniform(&r) - 1));
		} else {
			memset(p, 0, cnt * sizeof *p); /* conv bias, bn beta, running means */
		}
	}
}

/* ---- the heavy layers: the fast CPU backend in the float build, unless the
 * net is set to reference; the reference alone in the double build ---- */

void MFR_NET(set_reference)(MFR_NET_T *n, int on) { n->reference = on; }

/* An inference net's weights only change through the calls that bump wgen,
 * so its convolutions may keep reordered weights; a training net's change
 * every step. */
static int conv_fwd(MFR_NET_T *n, mfr_real *out, const mfr_real *in, const mfr_real *w, const mfr_real *b,
		    const mfr_conv_shape *s, mfr_error *e)
{
#ifndef MFR_REAL_DOUBLE
	if (!n->reference)
		return n->training ? mfr_conv2d_forward_cpu(out, in, w, b, s, e)
				   : mfr_conv2d_forward_cpu_const(out, in, w, b, s, n->wgen, e);
#endif
	(void)n;
	(void)e;
	MFR_REF(conv2d_forward)(out, in, w, b, s);
	return 0;
}

/* The fast path's convolution (fast in forward): in and out in layouts
 * in_lay and out_lay, out += the result when accumulate (a fused add). */
static int conv_fwd_layout(MFR_NET_T *n, mfr_real *out, int out_lay, const mfr_real *in, int in_lay,
			   const mfr_real *w, const mfr_real *b, const mfr_conv_shape *s, int accumulate, mfr_error *e)
{
#ifndef MFR_REAL_DOUBLE
	return mfr_conv2d_forward_cpu_layout(out, out_lay, in, in_lay, w, b, s, accumulate, n->wgen, e);
#else
	return mfr_fail(e, "blocked layouts in the double build"); /* blk is 0 there: never called */
#endif
}

/* An activation of shape sh in layout lay, reordered to NCHW into out. */
static int to_plain(mfr_real *out, const mfr_real *in, int lay, int N, const mfr_shape *sh, mfr_error *e)
{
#ifndef MFR_REAL_DOUBLE
	return mfr_cpu_reorder(out, 0, in, lay, N, sh->c, sh->h, sh->w, e);
#else
	return mfr_fail(e, "blocked layouts in the double build"); /* blk is 0 there: never called */
#endif
}

static int conv_bwd(MFR_NET_T *n, mfr_real *din, mfr_real *dw, mfr_real *db, const mfr_real *dout,
		    const mfr_real *in, const mfr_real *w, const mfr_conv_shape *s, mfr_error *e)
{
#ifndef MFR_REAL_DOUBLE
	if (!n->reference)
		return mfr_conv2d_backward_cpu(din, dw, db, dout, in, w, s, e);
#endif
	(void)n;
	(void)e;
	MFR_REF(conv2d_backward)(din, dw, db, dout, in, w, s);
	return 0;
}

static int linear_fwd(MFR_NET_T *n, mfr_real *out, const mfr_real *in, const mfr_real *w, const mfr_real *b, int N,
		      int ni, int no, mfr_error *e)
{
#ifndef MFR_REAL_DOUBLE
	if (!n->reference)
		return mfr_linear_forward_cpu(out, in, w, b, N, ni, no, e);
#endif
	(void)n;
	(void)e;
	MFR_REF(linear_forward)(out, in, w, b, N, ni, no);
	return 0;
}

static int linear_bwd(MFR_NET_T *n, mfr_real *din, mfr_real *dw, mfr_real *db, const mfr_real *dout,
		      const mfr_real *in, const mfr_real *w, int N, int ni, int no, mfr_error *e)
{
#ifndef MFR_REAL_DOUBLE
	if (!n->reference)
		return mfr_linear_backward_cpu(din, dw, db, dout, in, w, N, ni, no, e);
#endif
	(void)n;
	(void)e;
	MFR_REF(linear_backward)(din, dw, db, dout, in, w, N, ni, no);
	return 0;
}

/* ---- conv -> bn folding (inference) ---- */

static void refold(MFR_NET_T *n)
{
	const mfr_arch *a = n->a;
	for (int i = 0; i < a->n_layers; i++) {
		if (n->fold_bn[i] < 0)
			continue;
		const mfr_layer *L = &a->layers[i], *B = &a->layers[n->fold_bn[i]];
		size_t per = (size_t)a->tensors[L->first_tensor].count / (size_t)L->out;
		const mfr_real *w = P(n, L, 0), *bias = L->bias ? P(n, L, 1) : NULL;
		const mfr_real *gamma = P(n, B, 0), *beta = P(n, B, 1), *rm = P(n, B, 2), *rv = P(n, B, 3);
		mfr_real *fw = n->fold + n->foff[i], *fb = fw + per * (size_t)L->out;
		for (int c = 0; c < L->out; c++) {
			double s = gamma[c] / sqrt((double)rv[c] + B->eps);
			for (size_t k = 0; k < per; k++)
				fw[(size_t)c * per + k] = (mfr_real)(w[(size_t)c * per + k] * s);
			fb[c] = (mfr_real)(((bias ? bias[c] : 0) - (double)rm[c]) * s + beta[c]);
		}
	}
	n->fold_dirty = 0;
}

/* An inference bn applied in place (the reference path of a folded pair),
 * with the reference layer's arithmetic. */
static void bn_infer_inplace(MFR_NET_T *n, const mfr_layer *B, mfr_real *x, int N)
{
	int C = B->in_shape.c, HW = B->in_shape.h * B->in_shape.w;
	const mfr_real *gamma = P(n, B, 0), *beta = P(n, B, 1), *rm = P(n, B, 2), *rv = P(n, B, 3);
	for (int c = 0; c < C; c++) {
		double mu = rm[c], istd = 1 / sqrt(rv[c] + B->eps), g = gamma[c] * istd, b = beta[c];
		for (int k = 0; k < N; k++) {
			mfr_real *y = x + ((size_t)k * C + c) * HW;
			for (int i = 0; i < HW; i++)
				y[i] = (mfr_real)(g * (y[i] - mu) + b);
		}
	}
}

/* The per-channel kernels of inference, on 16-byte vectors (GCC's and
 * clang's vector extensions, SSE2 on x86-64: no compiler here vectorises
 * the plain loops at -O2, and the branch of a scalar PReLU mispredicts on
 * every other element). The PReLU select keeps the reference's arithmetic
 * exactly: x where x > 0, else slope * x (NaN and -0 included). */
#define VL ((int)(16 / sizeof(mfr_real)))
typedef mfr_real vreal __attribute__((vector_size(16)));
#ifdef MFR_REAL_DOUBLE
typedef int64_t vmask __attribute__((vector_size(16)));
#else
typedef int32_t vmask __attribute__((vector_size(16)));
#endif

static vreal vload(const mfr_real *p)
{
	vreal v;
	memcpy(&v, p, sizeof v);
	return v;
}

static void vstore(mfr_real *p, vreal v) { memcpy(p, &v, sizeof v); }

/* y = x*a + b (b != NULL), or PReLU with slopes a, for VL values */
static vreal vkernel(vreal x, vreal a, const vreal *b)
{
	if (b)
		return x * a + *b;
	vmask m = x > 0;
	return (vreal)(((vmask)x & m) | ((vmask)(a * x) & ~m));
}

/* y = x*a + b per channel (b != NULL), or PReLU with slopes a (b == NULL),
 * on (N,C,HW) in layout blk (0: NCHW; else nChw<blk>c with C padded, and
 * zero factors for the padding, which stays zero). y may be x. */
static void per_channel(mfr_real *y, const mfr_real *x, const mfr_real *a, const mfr_real *b, int N, int C,
			size_t HW, int blk)
{
	int B = blk > 0 ? blk : 1, Cb = (C + B - 1) / B;
	for (int k = 0; k < N; k++)
		for (int cb = 0; cb < Cb; cb++) {
			size_t o = ((size_t)k * Cb + cb) * HW * B, i = 0;
			const mfr_real *ac = a + (size_t)cb * B, *bc = b ? b + (size_t)cb * B : NULL;
			if (B % VL == 0) { /* blocked: the factors of lanes l..l+VL-1 */
				for (; i < HW; i++)
					for (int l = 0; l < B; l += VL) {
						vreal bv = bc ? vload(bc + l) : (vreal){0};
						vstore(y + o + i * B + l, vkernel(vload(x + o + i * B + l), vload(ac + l),
										  bc ? &bv : NULL));
					}
				continue;
			}
			vreal av = (vreal){0} + ac[0], bv = (vreal){0} + (bc ? bc[0] : 0); /* NCHW: one channel */
			for (; i + VL <= HW; i += VL)
				vstore(y + o + i, vkernel(vload(x + o + i), av, bc ? &bv : NULL));
			for (; i < HW; i++)
				y[o + i] = bc ? x[o + i] * ac[0] + bc[0] : x[o + i] > 0 ? x[o + i] : ac[0] * x[o + i];
		}
}

/* Inference batch norm as y = x*a + b per channel in float (the reference
 * carries each element through double): vectorises, half the work. Layout
 * blk as per_channel; the factors go to n->coef. */
static void bn_infer_fast(MFR_NET_T *n, const mfr_layer *L, mfr_real *out, const mfr_real *in, int N, int blk)
{
	int C = L->in_shape.c, B = blk > 0 ? blk : 1, Cp = (C + B - 1) / B * B;
	const mfr_real *gamma = P(n, L, 0), *beta = P(n, L, 1), *rm = P(n, L, 2), *rv = P(n, L, 3);
	mfr_real *a = n->coef, *b = n->coef + Cp;
	for (int c = 0; c < Cp; c++) {
		double g = c < C ? gamma[c] / sqrt((double)rv[c] + L->eps) : 0;
		a[c] = (mfr_real)g;
		b[c] = c < C ? (mfr_real)(beta[c] - rm[c] * g) : 0;
	}
	per_channel(out, in, a, b, N, C, (size_t)L->in_shape.h * L->in_shape.w, blk);
}

/* Inference PReLU, in place when out == in (the plan gave it its input's
 * slot): the reference's arithmetic, one pass over memory instead of two.
 * Layout blk as per_channel. */
static void prelu_infer(MFR_NET_T *n, const mfr_layer *L, mfr_real *out, const mfr_real *in, int N, int blk)
{
	int C = L->in_shape.c, B = blk > 0 ? blk : 1, Cp = (C + B - 1) / B * B;
	const mfr_real *slope = P(n, L, 0);
	for (int c = 0; c < Cp; c++)
		n->coef[c] = c < C ? slope[c] : 0;
	per_channel(out, in, n->coef, NULL, N, C, (size_t)L->in_shape.h * L->in_shape.w, blk);
}

/* ---- forward ---- */

int MFR_NET(forward)(MFR_NET_T *n, const mfr_real *x, int batch, int training, uint64_t seed, mfr_error *e)
{
	const mfr_arch *a = n->a;
	if (batch < 1 || batch > n->max_batch)
		return mfr_fail(e, "batch of %d images: this network was built for 1..%d", batch, n->max_batch);
	if (training && !n->training)
		return mfr_fail(e, "training forward on a network built for inference");
	int N = batch;
	/* the fast path: activations in the layouts plan_layouts chose */
	int fast = n->blk > 0 && !n->reference && !training;
	for (int i = 0; i < a->n_layers; i++) {
		const mfr_layer *L = &a->layers[i];
		mfr_real *out = ACT(n, i), *sv = n->save + n->soff[i];
		const mfr_shape *is = &L->in_shape;
		int C = is->c, HW = is->h * is->w, lay = fast ? n->lay[i] : 0;
		size_t cnt = (lay ? padded_numel(n, &L->shape) : n->anum[i]) * (size_t)N, staged = 0;
		for (int k = 0; k < L->n_in; k++) { /* a blocked input of a layer on NCHW: a plain copy */
			int j = L->in[k];
			n->inbuf[k] = ACT(n, j);
			if (!fast || L->op == MFR_OP_CONV || n->lay[j] == lay)
				continue;
			const mfr_shape *js = &a->layers[j].shape;
			if (to_plain(n->stage + staged, ACT(n, j), n->lay[j], N, js, e) < 0)
				return -1;
			n->inbuf[k] = n->stage + staged;
			staged += n->anum[j] * (size_t)N;
		}
		const mfr_real *in = L->n_in ? n->inbuf[0] : NULL;
		switch (L->op) {
		case MFR_OP_INPUT: memcpy(out, x, cnt * sizeof *out); break;
		case MFR_OP_CONV: {
			mfr_conv_shape s;
			if (mfr_layer_conv_shape(L, N, &s) < 0)
				return mfr_fail(e, "conv '%s': bad shape", L->name);
			const mfr_real *w = P(n, L, 0), *b = L->bias ? P(n, L, 1) : NULL;
			int fold = !training && n->fold_bn[i] >= 0;
			if (fold && !n->reference) {
				if (n->fold_dirty)
					refold(n);
				w = n->fold + n->foff[i];
				b = w + a->tensors[L->first_tensor].count;
			}
			if (fast) {
				if (conv_fwd_layout(n, out, lay, in, n->lay[L->in[0]], w, b, &s, n->fuse[i] >= 0, e) < 0)
					return -1;
				break;
			}
			/* a fused conv on the reference: its result, then the add */
			mfr_real *y = n->fuse[i] >= 0 ? n->stage : out;
			if (conv_fwd(n, y, in, w, b, &s, e) < 0)
				return -1;
			if (fold && n->reference)
				bn_infer_inplace(n, &a->layers[n->fold_bn[i]], y, N);
			if (y != out)
				MFR_REF(add_forward)(out, out, y, cnt);
			break;
		}
		case MFR_OP_BN:
		case MFR_OP_BN1D:
			if (!training && L->op == MFR_OP_BN && n->fold_bn[L->in[0]] == i)
				break; /* folded into its conv, which wrote this output */
			if (!training && !n->reference) { /* an affine map per channel, in float */
				bn_infer_fast(n, L, out, in, N, lay);
				break;
			}
			MFR_REF(batchnorm_forward)(out, sv, sv + C, P(n, L, 2), P(n, L, 3), in, P(n, L, 0), P(n, L, 1), N, C,
						   HW, training, L->eps, L->momentum);
			break;
		case MFR_OP_PRELU:
			if (!training)
				prelu_infer(n, L, out, n->inplace[i] ? out : in, N, lay);
			else
				MFR_REF(prelu_forward)(out, in, P(n, L, 0), N, C, HW);
			break;
		case MFR_OP_RELU:
			if (n->inplace[i])
				for (size_t j = 0; j < cnt; j++)
					out[j] = out[j] > 0 ? out[j] : 0;
			else
				MFR_REF(relu_forward)(out, in, cnt);
			break;
		case MFR_OP_SIGMOID: MFR_REF(sigmoid_forward)(out, in, cnt); break;
		case MFR_OP_ADD:
			if (n->fuse[i] >= 0)
				break; /* its conv accumulated into this slot */
			MFR_REF(add_forward)(out, in, n->inbuf[1], cnt);
			for (int k = 2; k < L->n_in; k++)
				MFR_REF(add_forward)(out, out, n->inbuf[k], cnt);
			break;
		case MFR_OP_CONCAT:
			for (int k = 0; k < L->n_in; k++)
				n->cbuf[k] = a->layers[L->in[k]].shape.c;
			MFR_REF(concat_forward)(out, n->inbuf, L->n_in, n->cbuf, N, L->shape.h * L->shape.w);
			break;
		case MFR_OP_GAP: MFR_REF(gap_forward)(out, in, N, C, HW); break;
		case MFR_OP_MAXPOOL:
		case MFR_OP_AVGPOOL: {
			mfr_pool_shape s;
			if (mfr_layer_pool_shape(L, N, &s) < 0)
				return mfr_fail(e, "%s '%s': bad shape", mfr_op_name(L->op), L->name);
			if (L->op == MFR_OP_MAXPOOL)
				MFR_REF(maxpool2d_forward)(out, in, &s);
			else
				MFR_REF(avgpool2d_forward)(out, in, &s);
			break;
		}
		case MFR_OP_PAD: {
			mfr_pad_shape s;
			if (mfr_layer_pad_shape(L, N, &s) < 0)
				return mfr_fail(e, "pad '%s': bad shape", L->name);
			MFR_REF(pad2d_forward)(out, in, &s);
			break;
		}
		case MFR_OP_CHPAD: MFR_REF(chanpad_forward)(out, in, N, C, L->out, HW); break;
		case MFR_OP_DROPOUT:
			if (training && L->p > 0)
				MFR_REF(dropout_forward)(out, n->mask + n->moff[i], in, L->p, mfr_hash2(seed, (uint64_t)i), cnt);
			else
				memcpy(out, in, cnt * sizeof *out);
			break;
		case MFR_OP_FLATTEN: memcpy(out, in, cnt * sizeof *out); break;
		case MFR_OP_LINEAR:
			if (linear_fwd(n, out, in, P(n, L, 0), L->bias ? P(n, L, 1) : NULL, N, C, L->out, e) < 0)
				return -1;
			break;
		case MFR_OP_L2NORM: MFR_REF(l2norm_forward)(out, sv, in, N, C, MFR_L2_EPS); break;
		case MFR_OP_SE: {
			int Cr = C / L->r;
			MFR_REF(se_forward)(out, sv, sv + (size_t)N * C, sv + (size_t)N * (C + Cr), in, P(n, L, 0), P(n, L, 1),
					    P(n, L, 2), P(n, L, 3), N, C, Cr, HW);
			break;
		}
		case MFR_OP_SPLAT:
			MFR_REF(splat_forward)(out, sv, P(n, L, 4), P(n, L, 5), in, P(n, L, 0), P(n, L, 1), P(n, L, 2),
					       P(n, L, 3), P(n, L, 6), P(n, L, 7), N, L->shape.c, L->radix, 1, L->inter, HW,
					       training, MFR_SPLAT_EPS, MFR_SPLAT_MOMENTUM);
			break;
		default: return mfr_fail(e, "layer '%s': op %d cannot run", L->name, (int)L->op);
		}
	}
	n->last_batch = batch;
	n->last_training = training;
	return 0;
}

mfr_real *MFR_NET(output)(MFR_NET_T *n, int k, size_t *dim)
{
	int i = n->a->outputs[k];
	if (dim)
		*dim = n->anum[i];
	return ACT(n, i);
}

mfr_real *MFR_NET(input_grad)(MFR_NET_T *n) { return n->dact ? DACT(n, 0) : NULL; }

void MFR_NET(zero_grad)(MFR_NET_T *n)
{
	if (n->grads)
		memset(n->grads, 0, n->ptotal * sizeof *n->grads);
}

/* ---- backward ---- */

int MFR_NET(backward)(MFR_NET_T *n, const mfr_real *const *dout, mfr_error *e)
{
	const mfr_arch *a = n->a;
	if (!n->training || n->last_batch < 1 || !n->last_training)
		return mfr_fail(e, "backward needs a training forward first");
	int N = n->last_batch;
	for (int i = 0; i < a->n_layers; i++)
		memset(DACT(n, i), 0, n->anum[i] * (size_t)N * sizeof(mfr_real));
	for (int k = 0; k < a->n_outputs; k++)
		if (dout[k]) {
			int o = a->outputs[k];
			mfr_real *d = DACT(n, o);
			for (size_t j = 0; j < n->anum[o] * (size_t)N; j++)
				d[j] += dout[k][j];
		}
	for (int i = a->n_layers - 1; i > 0; i--) {
		const mfr_layer *L = &a->layers[i];
		const mfr_real *dy = DACT(n, i), *y = ACT(n, i), *sv = n->save + n->soff[i];
		const mfr_real *in = L->n_in ? ACT(n, L->in[0]) : NULL;
		mfr_real *dx = L->n_in ? DACT(n, L->in[0]) : NULL;
		const mfr_shape *is = &L->in_shape;
		int C = is->c, HW = is->h * is->w;
		size_t cnt = n->anum[i] * (size_t)N;
		switch (L->op) {
		case MFR_OP_CONV: {
			mfr_conv_shape s;
			mfr_layer_conv_shape(L, N, &s);
			if (conv_bwd(n, dx, G(n, L, 0), L->bias ? G(n, L, 1) : NULL, dy, in, P(n, L, 0), &s, e) < 0)
				return -1;
			break;
		}
		case MFR_OP_BN:
		case MFR_OP_BN1D:
			MFR_REF(batchnorm_backward)(dx, G(n, L, 0), G(n, L, 1), dy, in, P(n, L, 0), sv, sv + C, N, C, HW, 1);
			break;
		case MFR_OP_PRELU: MFR_REF(prelu_backward)(dx, G(n, L, 0), dy, in, P(n, L, 0), N, C, HW); break;
		case MFR_OP_RELU: MFR_REF(relu_backward)(dx, dy, y, cnt); break;
		case MFR_OP_SIGMOID: MFR_REF(sigmoid_backward)(dx, dy, y, cnt); break;
		case MFR_OP_ADD:
			for (int k = 0; k < L->n_in; k++) {
				mfr_real *d = DACT(n, L->in[k]);
				for (size_t j = 0; j < cnt; j++)
					d[j] += dy[j];
			}
			break;
		case MFR_OP_CONCAT:
			for (int k = 0; k < L->n_in; k++) {
				n->dinbuf[k] = DACT(n, L->in[k]);
				n->cbuf[k] = a->layers[L->in[k]].shape.c;
			}
			MFR_REF(concat_backward)(n->dinbuf, dy, L->n_in, n->cbuf, N, L->shape.h * L->shape.w);
			break;
		case MFR_OP_GAP: MFR_REF(gap_backward)(dx, dy, N, C, HW); break;
		case MFR_OP_MAXPOOL:
		case MFR_OP_AVGPOOL: {
			mfr_pool_shape s;
			mfr_layer_pool_shape(L, N, &s);
			if (L->op == MFR_OP_MAXPOOL)
				MFR_REF(maxpool2d_backward)(dx, dy, in, &s);
			else
				MFR_REF(avgpool2d_backward)(dx, dy, &s);
			break;
		}
		case MFR_OP_PAD: {
			mfr_pad_shape s;
			mfr_layer_pad_shape(L, N, &s);
			MFR_REF(pad2d_backward)(dx, dy, &s);
			break;
		}
		case MFR_OP_CHPAD: MFR_REF(chanpad_backward)(dx, dy, N, C, L->out, HW); break;
		case MFR_OP_DROPOUT:
		case MFR_OP_FLATTEN:
			if (L->op == MFR_OP_DROPOUT && L->p > 0)
				MFR_REF(dropout_backward)(dx, dy, n->mask + n->moff[i], L->p, cnt);
			else /* flatten, and dropout with p = 0, are the identity */
				for (size_t j = 0; j < cnt; j++)
					dx[j] += dy[j];
			break;
		case MFR_OP_LINEAR:
			if (linear_bwd(n, dx, G(n, L, 0), L->bias ? G(n, L, 1) : NULL, dy, in, P(n, L, 0), N, C, L->out, e) < 0)
				return -1;
			break;
		case MFR_OP_L2NORM: MFR_REF(l2norm_backward)(dx, dy, in, sv, N, C, MFR_L2_EPS); break;
		case MFR_OP_SE: {
			int Cr = C / L->r;
			MFR_REF(se_backward)(dx, G(n, L, 0), G(n, L, 1), G(n, L, 2), G(n, L, 3), n->work, dy, in, P(n, L, 0),
					     P(n, L, 2), sv, sv + (size_t)N * C, sv + (size_t)N * (C + Cr), N, C, Cr, HW);
			break;
		}
		case MFR_OP_SPLAT:
			MFR_REF(splat_backward)(dx, G(n, L, 0), G(n, L, 1), G(n, L, 2), G(n, L, 3), G(n, L, 6), G(n, L, 7),
						n->work, dy, in, P(n, L, 0), P(n, L, 2), P(n, L, 6), sv, N, L->shape.c,
						L->radix, 1, L->inter, HW, 1);
			break;
		default: return mfr_fail(e, "layer '%s': op %d has no backward", L->name, (int)L->op);
		}
	}
	return 0;
}

/* ---- model files (float build only) ---- */

#ifndef MFR_REAL_DOUBLE
int mfr_net_load(mfr_net *n, const mfr_model *m, mfr_error *e)
{
	const mfr_arch *a = n->a;
	n->fold_dirty = 1;
	n->wgen++;
	for (int i = 0; i < a->n_tensors; i++) {
		const mfr_arch_tensor *t = &a->tensors[i];
		const mfr_tensor *mt = mfr_model_find(m, t->name);
		if (!mt)
			return mfr_fail(e, "the model has no tensor '%s'", t->name);
		int ok = mt->ndim == t->ndim;
		for (int d = 0; ok && d < t->ndim; d++)
			ok = mt->dims[d] == t->dims[d];
		if (!ok)
			return mfr_fail(e, "tensor '%s' has the wrong shape for this architecture", t->name);
		memcpy(n->params + n->poff[i], mt->data, mt->numel * sizeof(float));
	}
	if (m->ntensors != a->n_tensors) {
		for (int k = 0; k < m->ntensors; k++) {
			int found = 0;
			/* a checkpoint's training state (mfr-train) is not the net's */
			found = !strncmp(m->tensors[k].name, "train.", 6);
			for (int i = 0; i < a->n_tensors && !found; i++)
				found = !strcmp(a->tensors[i].name, m->tensors[k].name);
			if (!found)
				return mfr_fail(e, "the model's tensor '%s' is not in the architecture", m->tensors[k].name);
		}
	}
	return 0;
}

int mfr_net_store(mfr_net *n, mfr_model *m, int half, mfr_error *e)
{
	const mfr_arch *a = n->a;
	for (int i = 0; i < a->n_tensors; i++) {
		const mfr_arch_tensor *t = &a->tensors[i];
		int64_t dims[4];
		for (int d = 0; d < t->ndim; d++)
			dims[d] = t->dims[d];
		mfr_tensor *mt = mfr_model_add(m, t->name, half ? MFR_TDTYPE_F16 : MFR_TDTYPE_F32, t->ndim, dims, e);
		if (!mt)
			return -1;
		memcpy(mt->data, n->params + n->poff[i], mt->numel * sizeof(float));
	}
	return 0;
}
#endif
