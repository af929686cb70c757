/* gnet.c — the graph executor on the GPU (contracts in gnet.h): storage on
 * the device, compute copies of the weights, and forward and backward layer
 * by layer through the CUDA launchers. Plain C: every device operation goes
 * through gpu.h / gpu_layers.h. Built only with CUDA. */
#include "gnet.h" /* defines: mfr_gnet_* */

#include <stdlib.h>
#include <string.h>

#include "gpu_layers.h" /* defines: the CUDA layer launchers */


struct mfr_gnet {
	mfr_gpu *g;
	const mfr_arch *a;
	mfr_dtype t;
	size_t es;                 /* bytes per element of t */
	int max_batch, training;
	int last_batch, last_training;
	float *params, *grads;     /* device, fp32 */
	size_t *poff, ptotal;
	void *wc;                  /* compute copies of conv and linear weights, type t */
	size_t *woff;              /* per layer: offset (elements) in wc */
	int wdirty;
	void *dwc;                 /* a conv's weight gradient in type t, the largest */
	char *act, *dact;          /* per layer activations and gradients, type t */
	size_t *aoff, *anum;       /* per layer: byte offset in act, values per image */
	size_t *doff;              /* training: per layer its gradient's byte offset in dact (slots: plan_grads) */
	uint8_t *dlive;            /* training: a gradient reaches the layer (else its backward is skipped) */
	uint8_t *dfirst;           /* training: per (layer, input): 0 adds to the input's gradient, 1 writes it
				    * first, 2 shares dy's slot (an add's input: plan_grads) */
	int *dfoff;                /* training: per layer its inputs' first entry in dfirst */
	int zero_dx0;              /* training: no gradient reaches the input: zero its slot at the end */
	int skip_dx0;              /* mfr_gnet_skip_input_grad */
	float *save;               /* what forward keeps for backward, fp32 */
	int *fold_bn;              /* inference: conv -> the bn folded into it, or -1 (mfr_arch_inference_merges) */
	uint8_t *inplace, *folded; /* inference: prelu/relu in place; bn folded away */
	int *into;                 /* training: the layer that applies this one's unstored output (plan_fusions), or -1 */
	int *bias_into;            /* inference: the layer whose output a prelu, relu or 2-input add reads alone
				    * (a conv's, or its folded bn's) -> that reader, which adds the conv's bias, or -1 */
	int *bias_conv;            /* inference: ... and that conv */
	float *zeros, *ones;       /* the widest layer's channels of 0 and of 1 (in save): a relu's slope, a bias's norm */
	float *fold;               /* device: per folded conv its weights (OIHW) then bias, fp32 */
	size_t *foff;
	size_t *soff;
	uint8_t *mask;             /* dropout masks */
	size_t *moff;
	const void **inbuf;        /* concat input pointers (host array of device pointers) */
	void **dinbuf;
	int *cbuf;
};

static size_t numel(const mfr_shape *s) { return (size_t)s->c * (size_t)s->h * (size_t)s->w; }

/* Elements of layer L's compute weight copy (conv, linear), else 0. */
static size_t wc_len(const mfr_arch *a, const mfr_layer *L)
{
	return L->op == MFR_OP_CONV || L->op == MFR_OP_LINEAR ? (size_t)a->tensors[L->first_tensor].count : 0;
}

/* Byte sizes of each block for batch N; offsets filled when the arrays are
 * given. 256-byte alignment per tensor keeps vector loads and cuDNN happy. */
#define ALIGN(x) (((x) + 255) & ~(size_t)255)
typedef struct {
	size_t params, wc, dwc, act, save, mask, fold;
	size_t zeros, nzeros; /* the zeros' offset in save (then as many ones), their count */
} sizes;

/* A slot for need bytes among nslots (cap, busy): the smallest free one
 * that holds it, else the largest free one grown, else a new one; marked
 * busy. */
static int slot_take(size_t *cap, int *busy, int *nslots, size_t need)
{
	int best = -1, big = -1;
	for (int s = 0; s < *nslots; s++)
		if (!busy[s]) {
			if (cap[s] >= need && (best < 0 || cap[s] < cap[best]))
				best = s;
			if (big < 0 || cap[s] > cap[big])
				big = s;
		}
	if (best < 0)
		best = big >= 0 ? big : (*nslots)++;
	if (cap[best] < need)
		cap[best] = need;
	busy[best] = 1;
	return best;
}

/* Slot capacities into offsets (in place); the block's bytes. */
static size_t slot_bases(size_t *cap, int nslots)
{
	size_t total = 0;
	for (int s = 0; s < nslots; s++) {
		size_t c = cap[s];
		cap[s] = total;
		total += c;
	}
	return total;
}

/* A prelu or a relu: what a bn fuses into as an activation (a relu is a
 * PReLU of slope 0). */
static int is_act(mfr_op op) { return op == MFR_OP_PRELU || op == MFR_OP_RELU; }
static int is_bn(mfr_op op) { return op == MFR_OP_BN || op == MFR_OP_BN1D; }
/* A layer that can apply a per-channel affine map to what it reads in the
 * same pass (a fused bn, a conv's bias): an activation or a two-input add. */
static int takes_affine(const mfr_layer *L) { return is_act(L->op) || (L->op == MFR_OP_ADD && L->n_in == 2); }

/* Training fuses a layer into the one layer that reads its output (not a
 * net output): a bn (2d or 1d) into a prelu or relu (bn and activation as
 * one pass, whose backward recomputes the bn's output) or into an add of two
 * inputs (the bn applied as the add reads it); a two-input add into a relu
 * (the add writes the relu's output). into[i] = that reader, else -1; the
 * fused layer's output is never stored. */
static void plan_fusions(const mfr_arch *a, int *into)
{
	for (int i = 0; i < a->n_layers; i++)
		into[i] = -1;
	for (int j = 0; j < a->n_layers; j++) {
		const mfr_layer *L = &a->layers[j];
		if (!takes_affine(L))
			continue;
		for (int k = 0; k < L->n_in; k++) {
			const mfr_layer *I = &a->layers[L->in[k]];
			int fuse = is_bn(I->op) || (L->op == MFR_OP_RELU && I->op == MFR_OP_ADD && I->n_in == 2);
			if (fuse && mfr_arch_users(a, L->in[k]) == 1)
				into[L->in[k]] = j;
		}
	}
}

/* Whether activation i applies the bn b (b is its input). */
static int act_of_bn(const mfr_arch *a, const int *into, int b, int i)
{
	return is_act(a->layers[i].op) && is_bn(a->layers[b].op) && into[b] == i;
}

/* Inference adds a conv's bias (its own, or its folded bn's) in the one
 * layer that reads its output, when that is a prelu, a relu or an add of
 * two inputs (one pass instead of two): bias_into[x] = that reader, where x
 * is the layer the reader names (the folded bn, else the conv), and
 * bias_conv[x] = the conv; else -1. Nothing for training (fold_bn all -1
 * there: its bns are fused by plan_fusions instead). */
static void plan_bias_fusions(const mfr_arch *a, const int *fold_bn, int training, int *bias_into, int *bias_conv)
{
	for (int i = 0; i < a->n_layers; i++)
		bias_into[i] = bias_conv[i] = -1;
	for (int j = 0; j < a->n_layers && !training; j++) {
		const mfr_layer *L = &a->layers[j];
		if (!takes_affine(L))
			continue;
		for (int k = 0; k < L->n_in; k++) {
			int x = L->in[k], c = x;
			if (a->layers[x].op == MFR_OP_BN) /* folded into the conv that feeds it? */
				c = a->layers[x].in[0];
			if (a->layers[c].op != MFR_OP_CONV || (c != x && fold_bn[c] != x) ||
			    (c == x && !a->layers[c].bias) || mfr_arch_users(a, x) != 1)
				continue;
			bias_into[x] = j;
			bias_conv[x] = c;
		}
	}
}

/* The layer whose gradient layer i's input k receives: the input, or for a
 * prelu or relu applying a bn (plan_fusions), the bn's input. */
static int grad_input(const mfr_arch *a, const int *into, int i, int k)
{
	int j = a->layers[i].in[k];
	return act_of_bn(a, into, j, i) ? a->layers[j].in[0] : j;
}

/* How many of layer L's inputs are j. */
static int reads_of(const mfr_layer *L, int j)
{
	int r = 0;
	for (int k = 0; k < L->n_in; k++)
		r += L->in[k] == j;
	return r;
}

/* The layers other than i that write layer j's gradient (grad_input): how
 * many (a layer once per input naming j), and in *last the highest of them
 * (-1 when none). */
static int other_writers(const mfr_arch *a, const int *into, int j, int i, int *last)
{
	int n = 0;
	*last = -1;
	for (int q = 0; q < a->n_layers; q++)
		for (int k = 0; q != i && k < a->layers[q].n_in; k++)
			if (grad_input(a, into, q, k) == j)
				n++, *last = q;
	return n;
}

/* Inference keeps only live activations: each layer's output takes the
 * smallest free slot that holds it (or grows the largest free one, or opens
 * a new one), and an input's slot is freed once its last consumer has run
 * (after that consumer's output has its slot, so no layer writes over its
 * own input). A bn folded into its conv and a prelu/relu in place take
 * their input's slot instead (mfr_arch_inference_merges). Outputs are never
 * freed. Fills aoff (byte offsets) when given; returns the block's bytes,
 * or 0 when out of host memory (aoff then untouched). */
static size_t plan_slots(const mfr_arch *a, int N, size_t es, const int *fold_bn, const uint8_t *inplace,
			 size_t *aoff)
{
	int nl = a->n_layers, nslots = 0;
	int *last = malloc((size_t)nl * sizeof *last), *slot_of = malloc((size_t)nl * sizeof *slot_of);
	int *busy = calloc((size_t)nl, sizeof *busy), *root = malloc((size_t)nl * sizeof *root);
	size_t *cap = calloc((size_t)nl, sizeof *cap), total = 0;
	if (!last || !slot_of || !busy || !cap || !root)
		goto out;
	for (int i = 0; i < nl; i++)
		root[i] = inplace[i] ? a->layers[i].in[0] : i;
	for (int c = 0; c < nl; c++)
		if (fold_bn[c] >= 0)
			root[fold_bn[c]] = c;
	for (int i = 0; i < nl; i++)
		last[i] = -1;
	for (int i = 0; i < nl; i++)
		for (int k = 0; k < a->layers[i].n_in; k++)
			last[a->layers[i].in[k]] = i;
	for (int k = 0; k < a->n_outputs; k++)
		last[a->outputs[k]] = nl;
	for (int i = 0; i < nl; i++) {
		if (root[i] != i) { /* its input's slot, which stays busy */
			slot_of[i] = slot_of[root[i]];
			if (last[i] < 0)
				busy[slot_of[i]] = 0;
			continue;
		}
		int best = slot_take(cap, busy, &nslots, ALIGN(numel(&a->layers[i].shape) * (size_t)N * es));
		slot_of[i] = best;
		for (int k = 0; k < a->layers[i].n_in; k++)
			if (last[a->layers[i].in[k]] == i)
				busy[slot_of[a->layers[i].in[k]]] = 0;
		if (last[i] < 0) /* nobody reads it */
			busy[best] = 0;
	}
	total = slot_bases(cap, nslots);
	if (aoff)
		for (int i = 0; i < nl; i++)
			aoff[i] = cap[slot_of[i]];
out:
	free(last), free(slot_of), free(busy), free(cap), free(root);
	return total;
}

/* Training keeps only live activation gradients, in backward's order
 * (layers last to first): a layer's gradient is born when the first layer
 * that reads it runs its backward (an output's at the start: the loss's
 * gradient) and takes a free slot then; it is freed once the layer's own
 * backward has read it; the input's is kept. The first writer assigns (=)
 * rather than adds, so nothing is zeroed for the launchers that take acc.
 * An add's gradient passes unchanged to its inputs, so those born there
 * (and read once by it) share the add's slot instead of a copy, when the
 * add holds it alone: one owner, the first with other writers (their +=
 * come later, the add's index being the highest), and each input the add
 * alone reads whose backward runs before the owner's other writers (a
 * residual block's last bn and its shortcut: no copy). A slot is freed
 * when the last layer sharing it has run its backward. A layer no gradient
 * reaches is skipped (its backward would add zeros); so is a bn a prelu
 * applies (plan_fusions): the prelu's backward writes the bn's input
 * gradient. Fills, when doff is given: doff (byte offsets), dlive, dfirst
 * (per input, at dfoff[layer]: 0 adds, 1 assigns, 2 shares the add's
 * slot) and *zero_dx0 (no gradient reaches the input). Returns the block's
 * bytes, or 0 when out of host memory. */
static size_t plan_grads(const mfr_arch *a, const int *into, int N, size_t es, size_t *doff, uint8_t *dlive,
			 uint8_t *dfirst, const int *dfoff, int *zero_dx0)
{
	int nl = a->n_layers, nslots = 0;
	int *slot_of = malloc((size_t)nl * sizeof *slot_of), *busy = calloc((size_t)nl + 1, sizeof *busy);
	size_t *cap = calloc((size_t)nl + 1, sizeof *cap), total = 0;
	if (!slot_of || !busy || !cap)
		goto out;
	for (int i = 0; i < nl; i++)
		slot_of[i] = -1;
#define BIRTH(j) (slot_of[j] = slot_take(cap, busy, &nslots, ALIGN(numel(&a->layers[j].shape) * (size_t)N * es)))
	for (int k = 0; k < a->n_outputs; k++)
		if (slot_of[a->outputs[k]] < 0)
			BIRTH(a->outputs[k]);
	for (int i = nl - 1; i > 0; i--) {
		const mfr_layer *L = &a->layers[i];
		if (dlive)
			dlive[i] = slot_of[i] >= 0;
		if (slot_of[i] < 0)
			continue;
		/* an add whose slot is its alone hands it on: to an owner (the
		 * first input born here with other writers, which add to it
		 * later) and to every input it alone reads, if all run before
		 * the owner's other writers */
		int hand = L->op == MFR_OP_ADD && busy[slot_of[i]] == 1, owner = -1, limit = -1, last;
		for (int k = 0; hand && owner < 0 && k < L->n_in; k++)
			if (slot_of[L->in[k]] < 0 && reads_of(L, L->in[k]) == 1 &&
			    other_writers(a, into, L->in[k], i, &last) > 0)
				owner = L->in[k], limit = last;
		for (int k = 0; k < L->n_in; k++) {
			int j = grad_input(a, into, i, k), first = slot_of[j] < 0;
			if (first && hand && reads_of(L, j) == 1 &&
			    (j == owner || (j > limit && other_writers(a, into, j, i, &last) == 0))) {
				slot_of[j] = slot_of[i];
				busy[slot_of[i]]++;
				first = 2;
			} else if (first) {
				BIRTH(j);
			}
			if (dfirst)
				dfirst[dfoff[i] + k] = (uint8_t)first;
		}
		busy[slot_of[i]]--;
	}
	if (zero_dx0)
		*zero_dx0 = slot_of[0] < 0;
	if (slot_of[0] < 0)
		BIRTH(0);
#undef BIRTH
	total = slot_bases(cap, nslots);
	if (doff)
		for (int i = 0; i < nl; i++)
			doff[i] = slot_of[i] >= 0 ? cap[slot_of[i]] : 0;
out:
	free(slot_of), free(busy), free(cap);
	return total;
}

/* Floats of the folded weights and biases of an inference net (fold_bn
 * from mfr_arch_inference_merges); foff (may be NULL) gets each folded
 * conv's offset. */
static size_t fold_len(const mfr_arch *a, const int *fold_bn, size_t *foff)
{
	size_t total = 0;
	for (int i = 0; i < a->n_layers; i++)
		if (fold_bn[i] >= 0) {
			if (foff)
				foff[i] = total;
			total += ALIGN(((size_t)a->tensors[a->layers[i].first_tensor].count + (size_t)a->layers[i].out) * 4) / 4;
		}
	return total;
}

/* fold_bn and inplace: an inference net's merges (mfr_arch_inference_merges),
 * NULL for a training net; foff then receives the folded convs' offsets.
 * into: a training net's fusions (plan_fusions; NULL for inference): a
 * fused bn's output takes no storage. */
static sizes plan(const mfr_arch *a, int N, int training, size_t es, const int *fold_bn, const uint8_t *inplace,
		  const int *into, size_t *poff, size_t *woff, size_t *aoff, size_t *anum, size_t *soff, size_t *moff,
		  size_t *foff)
{
	sizes z = {0};
	for (int i = 0; i < a->n_tensors; i++) {
		if (poff)
			poff[i] = z.params;
		z.params += (size_t)a->tensors[i].count;
	}
	for (int i = 0; i < a->n_layers; i++) {
		const mfr_layer *L = &a->layers[i];
		size_t w = wc_len(a, L), num = numel(&L->shape);
		if (woff)
			woff[i] = z.wc;
		z.wc += ALIGN(w * es) / es;
		if (L->op == MFR_OP_CONV && w > z.dwc)
			z.dwc = w;
		if (anum)
			anum[i] = num;
		if (aoff)
			aoff[i] = z.act;
		if (!into || into[i] < 0)
			z.act += ALIGN(num * (size_t)N * es);
		if (soff)
			soff[i] = z.save;
		z.save += ALIGN(mfr_layer_save_len(L, N) * 4) / 4;
		if (moff)
			moff[i] = z.mask;
		if (training && L->op == MFR_OP_DROPOUT)
			z.mask += ALIGN(num * (size_t)N);
	}
	/* the zeros a fused relu takes as its slope, the ones of a bias's norm */
	for (int i = 0; i < a->n_layers; i++)
		if ((size_t)a->layers[i].shape.c > z.nzeros)
			z.nzeros = (size_t)a->layers[i].shape.c;
	z.zeros = z.save;
	z.save += 2 * (ALIGN(z.nzeros * 4) / 4);
	if (!training) {
		z.act = plan_slots(a, N, es, fold_bn, inplace, aoff);
		z.fold = fold_len(a, fold_bn, foff);
	}
	return z;
}

size_t mfr_gnet_bytes(const mfr_arch *a, int batch, int training, mfr_dtype t)
{
	size_t es = mfr_dtype_size(t), nl = (size_t)a->n_layers;
	int *fold_bn = training ? NULL : malloc(nl * sizeof *fold_bn);
	int *into = training ? malloc(nl * sizeof *into) : NULL;
	uint8_t *inplace = training ? NULL : malloc(nl);
	if (training ? !into : !fold_bn || !inplace) {
		free(fold_bn), free(inplace), free(into);
		return SIZE_MAX; /* no host memory to plan with: nothing fits */
	}
	if (training)
		plan_fusions(a, into);
	else
		mfr_arch_inference_merges(a, fold_bn, inplace);
	sizes z = plan(a, batch, training, es, fold_bn, inplace, into, NULL, NULL, NULL, NULL, NULL, NULL, NULL);
	size_t dact = training ? plan_grads(a, into, batch, es, NULL, NULL, NULL, NULL, NULL) : 0;
	free(fold_bn), free(inplace), free(into);
	if (!z.act || (training && !dact))
		return SIZE_MAX;
	size_t b = z.params * 4 + z.wc * es + z.act + z.save * 4 + z.fold * 4;
	if (training)
		b += z.params * 4 + z.dwc * es + dact + z.mask;
	return b;
}

mfr_gnet *mfr_gnet_new(mfr_gpu *g, const mfr_arch *a, int max_batch, int training, mfr_dtype t, mfr_error *e)
{
	if (max_batch < 1 || max_batch > 1 << 20) {
		mfr_fail(e, "batch size %d out of range 1..%d", max_batch, 1 << 20);
		return NULL;
	}
	mfr_gnet *n = calloc(1, sizeof *n);
	int nl = a->n_layers, maxin = 2, nin = 0;
	if (!n) {
		mfr_fail(e, "out of memory");
		return NULL;
	}
	n->g = g;
	n->a = a;
	n->t = t;
	n->es = mfr_dtype_size(t);
	n->max_batch = max_batch;
	n->training = training;
	n->last_batch = -1;
	n->wdirty = 1;
	for (int i = 0; i < nl; i++) {
		if (a->layers[i].n_in > maxin)
			maxin = a->layers[i].n_in;
		nin += a->layers[i].n_in;
	}
	if (!(n->poff = calloc((size_t)a->n_tensors + 1, sizeof *n->poff)) ||
	    !(n->woff = calloc((size_t)nl, sizeof *n->woff)) || !(n->aoff = calloc((size_t)nl, sizeof *n->aoff)) ||
	    !(n->anum = calloc((size_t)nl, sizeof *n->anum)) || !(n->soff = calloc((size_t)nl, sizeof *n->soff)) ||
	    !(n->moff = calloc((size_t)nl, sizeof *n->moff)) || !(n->fold_bn = calloc((size_t)nl, sizeof *n->fold_bn)) ||
	    !(n->inplace = calloc((size_t)nl, 1)) || !(n->folded = calloc((size_t)nl, 1)) ||
	    !(n->foff = calloc((size_t)nl, sizeof *n->foff)) ||
	    !(n->inbuf = calloc((size_t)maxin, sizeof *n->inbuf)) ||
	    !(n->dinbuf = calloc((size_t)maxin, sizeof *n->dinbuf)) || !(n->cbuf = calloc((size_t)maxin, sizeof *n->cbuf)) ||
	    !(n->doff = calloc((size_t)nl, sizeof *n->doff)) || !(n->dlive = calloc((size_t)nl, 1)) ||
	    !(n->dfirst = calloc((size_t)nin + 1, 1)) || !(n->dfoff = calloc((size_t)nl, sizeof *n->dfoff)) ||
	    !(n->into = calloc((size_t)nl, sizeof *n->into)) ||
	    !(n->bias_into = calloc((size_t)nl, sizeof *n->bias_into)) ||
	    !(n->bias_conv = calloc((size_t)nl, sizeof *n->bias_conv))) {
		mfr_fail(e, "out of memory");
		goto fail;
	}
	for (int i = 1; i < nl; i++)
		n->dfoff[i] = n->dfoff[i - 1] + a->layers[i - 1].n_in;
	if (training) {
		for (int i = 0; i < nl; i++)
			n->fold_bn[i] = -1;
		plan_fusions(a, n->into);
	} else {
		mfr_arch_inference_merges(a, n->fold_bn, n->inplace);
		for (int i = 0; i < nl; i++)
			n->into[i] = -1;
	}
	for (int i = 0; i < nl; i++)
		if (n->fold_bn[i] >= 0)
			n->folded[n->fold_bn[i]] = 1;
	plan_bias_fusions(a, n->fold_bn, training, n->bias_into, n->bias_conv);
	sizes z = plan(a, max_batch, training, n->es, training ? NULL : n->fold_bn, training ? NULL : n->inplace,
		       training ? n->into : NULL, n->poff, n->woff, n->aoff, n->anum, n->soff, n->moff, n->foff);
	n->ptotal = z.params;
	size_t dact_bytes = training ? plan_grads(a, n->into, max_batch, n->es, n->doff, n->dlive, n->dfirst, n->dfoff,
						  &n->zero_dx0)
				     : 0;
	if (!z.act || (training && !dact_bytes)) {
		mfr_fail(e, "out of memory");
		goto fail;
	}
	if (!(n->params = mfr_gpu_alloc(g, z.params * 4, e)) || !(n->wc = mfr_gpu_alloc(g, z.wc * n->es, e)) ||
	    !(n->act = mfr_gpu_alloc(g, z.act, e)) || !(n->save = mfr_gpu_alloc(g, z.save * 4, e)) ||
	    (z.fold && !(n->fold = mfr_gpu_alloc(g, z.fold * 4, e))))
		goto fail;
	if (mfr_gpu_zero(g, n->params, z.params * 4, e) < 0)
		goto fail;
	if (training && (!(n->grads = mfr_gpu_alloc(g, z.params * 4, e)) || !(n->dwc = mfr_gpu_alloc(g, z.dwc * n->es, e)) ||
			 !(n->dact = mfr_gpu_alloc(g, dact_bytes, e)) || !(n->mask = mfr_gpu_alloc(g, z.mask, e))))
		goto fail;
	if (training && mfr_gpu_zero(g, n->grads, z.params * 4, e) < 0)
		goto fail;
	n->zeros = n->save + z.zeros;
	n->ones = n->zeros + ALIGN(z.nzeros * 4) / 4;
	if (mfr_gpu_zero(g, n->zeros, z.nzeros * 4, e) < 0)
		goto fail;
	mfr_fill_cuda(n->ones, 1.f, z.nzeros, g);
	return n;
fail:
	mfr_gnet_free(n);
	return NULL;
}

void mfr_gnet_free(mfr_gnet *n)
{
	if (!n)
		return;
	mfr_gpu *g = n->g;
	mfr_gpu_free(g, n->params);
	mfr_gpu_free(g, n->grads);
	mfr_gpu_free(g, n->wc);
	mfr_gpu_free(g, n->dwc);
	mfr_gpu_free(g, n->act);
	mfr_gpu_free(g, n->dact);
	mfr_gpu_free(g, n->save);
	mfr_gpu_free(g, n->mask);
	mfr_gpu_free(g, n->fold);
	free(n->fold_bn);
	free(n->inplace);
	free(n->folded);
	free(n->foff);
	free(n->poff);
	free(n->woff);
	free(n->aoff);
	free(n->anum);
	free(n->soff);
	free(n->moff);
	free(n->inbuf);
	free(n->dinbuf);
	free(n->cbuf);
	free(n->doff);
	free(n->dlive);
	free(n->dfirst);
	free(n->dfoff);
	free(n->into);
	free(n->bias_into);
	free(n->bias_conv);
	free(n);
}

mfr_dtype mfr_gnet_dtype(const mfr_gnet *n) { return n->t; }
mfr_gpu *mfr_gnet_gpu(const mfr_gnet *n) { return n->g; }
float *mfr_gnet_params(mfr_gnet *n) { return n->params; }
float *mfr_gnet_grads(mfr_gnet *n) { return n->grads; }
size_t mfr_gnet_param_total(const mfr_gnet *n) { return n->ptotal; }
void mfr_gnet_params_changed(mfr_gnet *n) { n->wdirty = 1; }

int mfr_gnet_put_params(mfr_gnet *n, const float *host, mfr_error *e)
{
	n->wdirty = 1;
	return mfr_gpu_put(n->g, n->params, host, n->ptotal * 4, e);
}

int mfr_gnet_get_params(mfr_gnet *n, float *host, mfr_error *e)
{
	return mfr_gpu_get(n->g, host, n->params, n->ptotal * 4, e);
}

int mfr_gnet_get_grads(mfr_gnet *n, float *host, mfr_error *e)
{
	if (!n->grads)
		return mfr_fail(e, "this network was built for inference: it has no gradients");
	return mfr_gpu_get(n->g, host, n->grads, n->ptotal * 4, e);
}

#define P(L, k) (n->params + n->poff[(L)->first_tensor + (k)])
#define G(L, k) (n->grads + n->poff[(L)->first_tensor + (k)])
#define ACT(i) ((void *)(n->act + n->aoff[i]))
#define DACT(i) ((void *)(n->dact + n->doff[i]))
#define WC(i) ((void *)((char *)n->wc + n->woff[i] * n->es))

/* Refreshes the compute copies of conv and linear weights from the master
 * block. */
static int refresh_weights(mfr_gnet *n, mfr_error *e)
{
	const mfr_arch *a = n->a;
	for (int i = 0; i < a->n_layers; i++) {
		const mfr_layer *L = &a->layers[i];
		if (L->op == MFR_OP_CONV) {
			mfr_conv_shape s;
			if (mfr_layer_conv_shape(L, 1, &s) < 0)
				return mfr_fail(e, "conv '%s': bad shape", L->name);
			const float *w = P(L, 0);
			if (n->fold_bn[i] >= 0) { /* bn folded in: scaled weights, then a bias */
				const mfr_layer *B = &a->layers[n->fold_bn[i]];
				float *fw = n->fold + n->foff[i];
				mfr_bn_fold_cuda(fw, fw + a->tensors[L->first_tensor].count, w, L->bias ? P(L, 1) : NULL, P(B, 0),
						 P(B, 1), P(B, 2), P(B, 3), L->out, (size_t)a->tensors[L->first_tensor].count / (size_t)L->out,
						 B->eps, n->g);
				w = fw;
			}
			mfr_conv_weight_cuda(WC(i), w, &s, n->t, n->g);
		} else if (L->op == MFR_OP_LINEAR) {
			mfr_convert_cuda(WC(i), n->t, P(L, 0), MFR_F32, wc_len(a, L), n->g);
		}
	}
	n->wdirty = 0;
	return mfr_gpu_check(n->g, "weight copies", e);
}

/* Batch norm layer i's normalisation: its parameters and the statistics its
 * forward saved. */
static mfr_bn_norm bn_norm_of(mfr_gnet *n, int i)
{
	const mfr_layer *L = &n->a->layers[i];
	const float *sv = n->save + n->soff[i];
	if (L->op != MFR_OP_BN && L->op != MFR_OP_BN1D)
		return (mfr_bn_norm){NULL, NULL, NULL, NULL};
	return (mfr_bn_norm){P(L, 0), P(L, 1), sv, sv + L->in_shape.c};
}

/* Conv layer i's bias as the forward adds it: its folded bn's, its own, or
 * NULL. */
static const float *conv_bias(mfr_gnet *n, int i)
{
	const mfr_layer *L = &n->a->layers[i];
	if (n->fold_bn[i] >= 0)
		return n->fold + n->foff[i] + n->a->tensors[L->first_tensor].count;
	return L->bias ? P(L, 1) : NULL;
}

/* Input k of layer i as layer i reads it: *x its activation; or, when a bn
 * (training, plan_fusions) or a conv's bias (inference, plan_bias_fusions)
 * is fused into layer i, *x the activation under it and *norm the affine
 * map layer i applies (returns 1). */
static int fused_input(mfr_gnet *n, int i, int k, const void **x, mfr_bn_norm *norm)
{
	int j = n->a->layers[i].in[k];
	if (n->into[j] == i && is_bn(n->a->layers[j].op)) {
		*x = ACT(n->a->layers[j].in[0]);
		*norm = bn_norm_of(n, j);
		return 1;
	}
	*x = ACT(j);
	if (n->bias_into[j] == i) { /* x + bias: gamma 1, mean 0, invstd 1 */
		*norm = (mfr_bn_norm){n->ones, conv_bias(n, n->bias_conv[j]), n->zeros, n->ones};
		return 1;
	}
	return 0;
}

/* The slope a fused activation j applies (plan_fusions): a prelu's own, a
 * relu's zeros. */
static const float *slope_of(mfr_gnet *n, int j)
{
	const mfr_layer *L = &n->a->layers[j];
	return L->op == MFR_OP_PRELU ? P(L, 0) : n->zeros;
}

/* Profiler span names per op (mfr_gpu_span), in mfr_op's order. */
_Static_assert(MFR_OP_COUNT == 20 && MFR_OP_SPLAT == 19, "the span tables follow mfr_op");
static const char *const SPAN_FWD[MFR_OP_COUNT] = {
	"input copy", "conv fwd", "bn fwd", "bn1d fwd", "prelu fwd", "relu fwd", "sigmoid fwd", "add fwd",
	"concat fwd", "gap fwd", "maxpool fwd", "avgpool fwd", "pad fwd", "chpad fwd", "dropout fwd",
	"flatten fwd", "linear fwd", "l2norm fwd", "se fwd", "splat fwd"};
static const char *const SPAN_BWD[MFR_OP_COUNT] = {
	"input", "conv bwd", "bn bwd", "bn1d bwd", "prelu bwd", "relu bwd", "sigmoid bwd", "add bwd",
	"concat bwd", "gap bwd", "maxpool bwd", "avgpool bwd", "pad bwd", "chpad bwd", "dropout bwd",
	"flatten bwd", "linear bwd", "l2norm bwd", "se bwd", "splat bwd"};

/* Layer i's span in forward (bwd = 0) or backward: its op's, or the fused
 * pair's (plan_fusions: a bn's own span holds its statistics, its reader's
 * the rest); NULL for a relu whose add writes its output. */
static const char *span_of(const mfr_gnet *n, int i, int bwd)
{
	const mfr_layer *L = &n->a->layers[i];
	if (is_act(L->op) && act_of_bn(n->a, n->into, L->in[0], i))
		return L->op == MFR_OP_PRELU ? (bwd ? "bn+prelu bwd" : "bn+prelu fwd") : bwd ? "bn+relu bwd" : "bn+relu fwd";
	if (!bwd && is_act(L->op) && n->into[L->in[0]] == i) /* an add wrote it */
		return NULL;
	if (!bwd && L->op == MFR_OP_ADD && L->n_in == 2) {
		int bn = n->into[L->in[0]] == i || n->into[L->in[1]] == i;
		return n->into[i] >= 0 ? (bn ? "bn+add+relu fwd" : "add+relu fwd") : bn ? "bn+add fwd" : "add fwd";
	}
	return (bwd ? SPAN_BWD : SPAN_FWD)[L->op];
}

int mfr_gnet_forward(mfr_gnet *n, const void *x, int batch, int training, uint64_t seed, mfr_error *e)
{
	const mfr_arch *a = n->a;
	mfr_gpu *g = n->g;
	mfr_dtype t = n->t;
	if (batch < 1 || batch > n->max_batch)
		return mfr_fail(e, "batch of %d images: this network was built for 1..%d", batch, n->max_batch);
	if (training && !n->training)
		return mfr_fail(e, "training forward on a network built for inference");
	if (n->wdirty && refresh_weights(n, e) < 0)
		return -1;
	int N = batch;
	for (int i = 0; i < a->n_layers; i++) {
		const mfr_layer *L = &a->layers[i];
		void *out = ACT(i);
		float *sv = n->save + n->soff[i];
		const mfr_shape *is = &L->in_shape;
		int C = is->c, HW = is->h * is->w, M = N * HW;
		size_t cnt = n->anum[i] * (size_t)N;
		for (int k = 0; k < L->n_in; k++)
			n->inbuf[k] = ACT(L->in[k]);
		const void *in = L->n_in ? n->inbuf[0] : NULL;
		const char *span = span_of(n, i, 0);
		if (span) /* else the layer does nothing */
			mfr_gpu_span(g, span);
		switch (L->op) {
		case MFR_OP_INPUT:
			if (mfr_gpu_copy(g, out, x, cnt * n->es, e) < 0)
				return -1;
			break;
		case MFR_OP_CONV: {
			mfr_conv_shape s;
			if (mfr_layer_conv_shape(L, N, &s) < 0)
				return mfr_fail(e, "conv '%s': bad shape", L->name);
			const float *b = conv_bias(n, i);
			if (n->bias_into[n->fold_bn[i] >= 0 ? n->fold_bn[i] : i] >= 0) /* its reader adds it */
				b = NULL;
			if (mfr_conv_forward_cuda(out, in, WC(i), b, &s, t, g, e) < 0)
				return -1;
			break;
		}
		case MFR_OP_BN:
			if (n->folded[i]) /* in its conv's weights and bias; its output is the conv's */
				break;
			/* fall through */
		case MFR_OP_BN1D: /* fused: only the statistics here; its reader applies them */
			mfr_bn_forward_cuda(n->into[i] < 0 ? out : NULL, sv, sv + C, P(L, 2), P(L, 3), in, P(L, 0), P(L, 1), M,
					    C, training, L->eps, L->momentum, t, g);
			break;
		case MFR_OP_PRELU:
		case MFR_OP_RELU: {
			const void *src;
			mfr_bn_norm nm;
			if (n->into[L->in[0]] == i && a->layers[L->in[0]].op == MFR_OP_ADD)
				break; /* the add wrote it */
			if (fused_input(n, i, 0, &src, &nm)) /* act(bn(x)) or act(x + bias) */
				mfr_bn_apply_cuda(out, src, &nm, slope_of(n, i), M, C, t, g);
			else if (L->op == MFR_OP_PRELU)
				mfr_prelu_forward_cuda(out, in, P(L, 0), M, C, t, g);
			else
				mfr_relu_forward_cuda(out, in, cnt, t, g);
			break;
		}
		case MFR_OP_SIGMOID: mfr_sigmoid_forward_cuda(out, in, cnt, t, g); break;
		case MFR_OP_ADD: {
			if (L->n_in == 2) { /* per channel: a fused bn or bias applied to either input or both */
				const void *x0, *x1;
				mfr_bn_norm n0, n1;
				int b0 = fused_input(n, i, 0, &x0, &n0), b1 = fused_input(n, i, 1, &x1, &n1);
				int r = n->into[i]; /* fused into a relu: its output, rectified */
				mfr_bn_add_cuda(r >= 0 ? ACT(r) : out, x0, b0 ? &n0 : NULL, x1, b1 ? &n1 : NULL, r >= 0,
						N * L->shape.h * L->shape.w, L->shape.c, t, g);
				break;
			}
			mfr_add_forward_cuda(out, in, n->inbuf[1], cnt, t, g);
			for (int k = 2; k < L->n_in; k++)
				mfr_add_forward_cuda(out, out, n->inbuf[k], cnt, t, g);
			break;
		}
		case MFR_OP_CONCAT:
			for (int k = 0; k < L->n_in; k++)
				n->cbuf[k] = a->layers[L->in[k]].shape.c;
			mfr_concat_forward_cuda(out, n->inbuf, L->n_in, n->cbuf, N * L->shape.h * L->shape.w, t, g);
			break;
		case MFR_OP_GAP: mfr_gap_forward_cuda(out, in, N, C, HW, t, g); break;
		case MFR_OP_MAXPOOL:
		case MFR_OP_AVGPOOL: {
			mfr_pool_shape s;
			if (mfr_layer_pool_shape(L, N, &s) < 0)
				return mfr_fail(e, "%s '%s': bad shape", mfr_op_name(L->op), L->name);
			if (L->op == MFR_OP_MAXPOOL)
				mfr_maxpool_forward_cuda(out, in, &s, t, g);
			else
				mfr_avgpool_forward_cuda(out, in, &s, t, g);
			break;
		}
		case MFR_OP_PAD: {
			mfr_pad_shape s;
			if (mfr_layer_pad_shape(L, N, &s) < 0)
				return mfr_fail(e, "pad '%s': bad shape", L->name);
			mfr_pad_forward_cuda(out, in, &s, t, g);
			break;
		}
		case MFR_OP_CHPAD: mfr_chanpad_forward_cuda(out, in, M, C, L->out, t, g); break;
		case MFR_OP_DROPOUT:
			if (training && L->p > 0)
				mfr_dropout_forward_cuda(out, n->mask + n->moff[i], in, L->p, mfr_hash2(seed, (uint64_t)i), N, C,
							 HW, t, g);
			else if (mfr_gpu_copy(g, out, in, cnt * n->es, e) < 0)
				return -1;
			break;
		case MFR_OP_FLATTEN: /* NHWC -> the reference's C*H*W order, which the next linear's weights assume */
			mfr_to_nchw_cuda(out, t, in, t, N, C, HW, 0, g);
			break;
		case MFR_OP_LINEAR:
			if (mfr_linear_forward_cuda(out, in, WC(i), L->bias ? P(L, 1) : NULL, N, C, L->out, t, g, e) < 0)
				return -1;
			break;
		case MFR_OP_L2NORM: mfr_l2norm_forward_cuda(out, sv, in, N, C, MFR_L2_EPS, t, g); break;
		case MFR_OP_SE: {
			int Cr = C / L->r;
			mfr_se_forward_cuda(out, sv, sv + (size_t)N * C, sv + (size_t)N * (C + Cr), in, P(L, 0), P(L, 1),
					    P(L, 2), P(L, 3), N, C, Cr, HW, t, g);
			break;
		}
		case MFR_OP_SPLAT:
			if (mfr_splat_forward_cuda(out, sv, P(L, 4), P(L, 5), in, P(L, 0), P(L, 1), P(L, 2), P(L, 3), P(L, 6),
						   P(L, 7), N, L->shape.c, L->radix, 1, L->inter, HW, training, MFR_SPLAT_EPS,
						   MFR_SPLAT_MOMENTUM, t, g, e) < 0)
				return -1;
			break;
		default: return mfr_fail(e, "layer '%s': op %d cannot run", L->name, (int)L->op);
		}
		if (mfr_gpu_check(g, L->name, e) < 0)
			return -1;
	}
	n->last_batch = batch;
	n->last_training = training;
	return 0;
}

void *mfr_gnet_output(mfr_gnet *n, int k, size_t *dim)
{
	int i = n->a->outputs[k];
	if (dim)
		*dim = n->anum[i];
	return ACT(i);
}

void *mfr_gnet_input_grad(mfr_gnet *n) { return n->dact && !n->skip_dx0 ? DACT(0) : NULL; }
void mfr_gnet_skip_input_grad(mfr_gnet *n, int skip) { n->skip_dx0 = skip; }

int mfr_gnet_zero_grad(mfr_gnet *n, mfr_error *e)
{
	if (!n->grads)
		return mfr_fail(e, "this network was built for inference: it has no gradients");
	return mfr_gpu_zero(n->g, n->grads, n->ptotal * 4, e);
}

/* The ops whose backward launcher takes acc (gpu_layers.h): the first to
 * write a gradient assigns it; for the others it is zeroed first. */
static int takes_acc(mfr_op op)
{
	switch (op) {
	case MFR_OP_CONV:
	case MFR_OP_BN:
	case MFR_OP_BN1D:
	case MFR_OP_PRELU:
	case MFR_OP_RELU:
	case MFR_OP_ADD:
	case MFR_OP_DROPOUT:
	case MFR_OP_FLATTEN:
	case MFR_OP_LINEAR: return 1;
	default: return 0;
	}
}

int mfr_gnet_backward(mfr_gnet *n, const void *const *dout, mfr_gnet_hook hook, void *ctx, mfr_error *e)
{
	const mfr_arch *a = n->a;
	mfr_gpu *g = n->g;
	mfr_dtype t = n->t;
	if (!n->training || n->last_batch < 1 || !n->last_training)
		return mfr_fail(e, "backward needs a training forward first");
	int N = n->last_batch;
	/* the loss's gradients: the first into an output's slot assigns */
	mfr_gpu_span(g, "backward seed");
	for (int k = 0; k < a->n_outputs; k++) {
		int o = a->outputs[k], seen = 0;
		for (int j = 0; j < k; j++)
			seen |= a->outputs[j] == o && dout[j];
		size_t bytes = n->anum[o] * (size_t)N * n->es;
		if (dout[k] && seen)
			mfr_add_forward_cuda(DACT(o), DACT(o), dout[k], n->anum[o] * (size_t)N, t, g);
		else if (dout[k] ? mfr_gpu_copy(g, DACT(o), dout[k], bytes, e) < 0 : mfr_gpu_zero(g, DACT(o), bytes, e) < 0)
			return -1;
	}
	for (int i = a->n_layers - 1; i > 0; i--) {
		const mfr_layer *L = &a->layers[i];
		if (!n->dlive[i]) { /* no gradient reaches it: its backward adds nothing */
			if (hook && hook(ctx, i, e) != 0)
				return -1;
			continue;
		}
		const void *dy = DACT(i), *y = ACT(i);
		const float *sv = n->save + n->soff[i];
		const void *in = L->n_in ? ACT(L->in[0]) : NULL;
		void *dx = L->n_in ? DACT(L->in[0]) : NULL;
		const uint8_t *first = n->dfirst + n->dfoff[i];
		int acc = !first[0]; /* the single-input layers' */
		const mfr_shape *is = &L->in_shape;
		int C = is->c, HW = is->h * is->w, M = N * HW;
		size_t cnt = n->anum[i] * (size_t)N;
		mfr_gpu_span(g, span_of(n, i, 1));
		if (!takes_acc(L->op)) /* a gradient born here is zeroed for the launcher's += */
			for (int k = 0; k < L->n_in; k++)
				if (first[k] && mfr_gpu_zero(g, DACT(L->in[k]), n->anum[L->in[k]] * (size_t)N * n->es, e) < 0)
					return -1;
		switch (L->op) {
		case MFR_OP_CONV: {
			mfr_conv_shape s;
			mfr_layer_conv_shape(L, N, &s);
			if (mfr_conv_backward_cuda(L->in[0] == 0 && n->skip_dx0 ? NULL : dx, n->dwc, L->bias ? G(L, 1) : NULL, dy,
						   in, WC(i), &s, acc, t, g, e) < 0)
				return -1;
			mfr_gpu_span(g, "conv wgrad fold");
			mfr_conv_weight_grad_cuda(G(L, 0), n->dwc, &s, t, g);
			break;
		}
		case MFR_OP_BN:
		case MFR_OP_BN1D:
			mfr_bn_backward_cuda(dx, G(L, 0), G(L, 1), dy, in, P(L, 0), sv, sv + C, M, C, 1, acc, t, g);
			break;
		case MFR_OP_PRELU:
		case MFR_OP_RELU: {
			int b = L->in[0];
			if (act_of_bn(a, n->into, b, i)) { /* act(bn(x)): x's gradient, the bn's parameters' (and the slope's) */
				const mfr_layer *B = &a->layers[b];
				mfr_bn_norm bn = bn_norm_of(n, b);
				mfr_bn_prelu_backward_cuda(DACT(B->in[0]), G(B, 0), G(B, 1),
							   L->op == MFR_OP_PRELU ? G(L, 0) : NULL, dy, ACT(B->in[0]), &bn,
							   slope_of(n, i), M, C, 1, acc, t, g);
			} else if (L->op == MFR_OP_PRELU) {
				mfr_prelu_backward_cuda(dx, G(L, 0), dy, in, P(L, 0), M, C, acc, t, g);
			} else {
				mfr_relu_backward_cuda(dx, dy, y, cnt, acc, t, g);
			}
			break;
		}
		case MFR_OP_SIGMOID: mfr_sigmoid_backward_cuda(dx, dy, y, cnt, t, g); break;
		case MFR_OP_ADD: /* first[k] == 2: that input's gradient is dy's slot already */
			for (int k = 0; k < L->n_in; k++)
				if (first[k] != 2)
					mfr_add_backward_cuda(DACT(L->in[k]), NULL, dy, cnt, !first[k], t, g);
			break;
		case MFR_OP_CONCAT:
			for (int k = 0; k < L->n_in; k++) {
				n->dinbuf[k] = DACT(L->in[k]);
				n->cbuf[k] = a->layers[L->in[k]].shape.c;
			}
			mfr_concat_backward_cuda(n->dinbuf, dy, L->n_in, n->cbuf, N * L->shape.h * L->shape.w, t, g);
			break;
		case MFR_OP_GAP: mfr_gap_backward_cuda(dx, dy, N, C, HW, t, g); break;
		case MFR_OP_MAXPOOL:
		case MFR_OP_AVGPOOL: {
			mfr_pool_shape s;
			mfr_layer_pool_shape(L, N, &s);
			if (L->op == MFR_OP_MAXPOOL)
				mfr_maxpool_backward_cuda(dx, dy, in, &s, t, g);
			else
				mfr_avgpool_backward_cuda(dx, dy, &s, t, g);
			break;
		}
		case MFR_OP_PAD: {
			mfr_pad_shape s;
			mfr_layer_pad_shape(L, N, &s);
			mfr_pad_backward_cuda(dx, dy, &s, t, g);
			break;
		}
		case MFR_OP_CHPAD: mfr_chanpad_backward_cuda(dx, dy, M, C, L->out, t, g); break;
		case MFR_OP_DROPOUT:
			if (L->p > 0)
				mfr_dropout_backward_cuda(dx, dy, n->mask + n->moff[i], L->p, cnt, acc, t, g);
			else
				mfr_add_backward_cuda(dx, NULL, dy, cnt, acc, t, g);
			break;
		case MFR_OP_FLATTEN: mfr_to_nhwc_cuda(dx, t, dy, t, N, C, HW, acc, g); break;
		case MFR_OP_LINEAR:
			if (mfr_linear_backward_cuda(dx, G(L, 0), L->bias ? G(L, 1) : NULL, dy, in, WC(i), N, C, L->out, acc,
						     t, g, e) < 0)
				return -1;
			break;
		case MFR_OP_L2NORM: mfr_l2norm_backward_cuda(dx, dy, in, sv, N, C, MFR_L2_EPS, t, g); break;
		case MFR_OP_SE: {
			int Cr = C / L->r;
			if (mfr_se_backward_cuda(dx, G(L, 0), G(L, 1), G(L, 2), G(L, 3), dy, in, P(L, 0), P(L, 2), sv,
						 sv + (size_t)N * C, sv + (size_t)N * (C + Cr), N, C, Cr, HW, t, g, e) < 0)
				return -1;
			break;
		}
		case MFR_OP_SPLAT:
			if (mfr_splat_backward_cuda(dx, G(L, 0), G(L, 1), G(L, 2), G(L, 3), G(L, 6), G(L, 7), dy, in, P(L, 0),
						    P(L, 2), P(L, 6), sv, N, L->shape.c, L->radix, 1, L->inter, HW, 1, t, g,
						    e) < 0)
				return -1;
			break;
		default: return mfr_fail(e, "layer '%s': op %d has no backward", L->name, (int)L->op);
		}
		if (mfr_gpu_check(g, L->name, e) < 0 || (hook && hook(ctx, i, e) != 0))
			return -1;
	}
	if (n->zero_dx0 && !n->skip_dx0) /* nothing reached the input: its gradient is 0 */
		return mfr_gpu_zero(g, DACT(0), n->anum[0] * (size_t)N * n->es, e);
	return 0;
}
