/* train.c — the training loop, checkpoints and the memory planner (see
 * train.h). It prints the run's configuration and its log lines on rank 0's
 * stderr (the one place in common/ that prints: a trainer's progress is its
 * product); errors go back to the tool.
 */
#include "train.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "arch.h"     /* defines: mfr_arch_load, mfr_arch_format */
#include "cli.h"      /* defines: mfr_now, mfr_progress */
#include "dnnl_cpu.h" /* defines: mfr_cpu_set_threads, mfr_cpu_backend */
#include "gpu.h"      /* defines: mfr_dtype_name */
#include "infer.h"    /* defines: mfr_device_select */
#include "loader.h"   /* defines: mfr_loader_* */
#include "maskaug.h"  /* defines: mfr_maskaug_selected, mfr_maskaug_apply */
#include "model.h"    /* defines: mfr_model_* */
#include "net.h"      /* defines: mfr_net_* */
#ifdef MFR_HAVE_CUDA
#include "gtrain.h" /* defines: mfr_gtrain_* */
#endif

#define STATE_SECTION 0x8001u /* the checkpoint's state: data-formats.md 9.7 */
#define GIB (1024.0 * 1024.0 * 1024.0)
#define MAX_OUTPUTS 64 /* of an architecture: the embedding is the first, the rest get no gradient */

void mfr_train_defaults(mfr_train_config *c)
{
	memset(c, 0, sizeof *c);
	c->arch = "r50";
	c->dropout = 0.4;
	c->margin = (mfr_margin){64, 1, 0, 0.4};
	c->sample_rate = 1;
	c->sparse_momentum = 1;
	c->batch = 64;
	c->lr = 0.1;
	c->momentum = 0.9;
	c->wd = c->fc_wd = 1e-4;
	c->epochs = 17;
	c->decay = MFR_DECAY_STEP;
	static const double paper[] = {5, 9, 12, 15};
	memcpy(c->decay_epochs, paper, sizeof paper);
	c->ndecay = 4;
	c->gamma = 0.1;
	c->power = 2;
	c->seed = 1;
	c->log_every = 10;
	c->loader_threads = 2;
	c->prefetch = 2;
	c->dtype = MFR_F16;
}

/* The architecture with the run's dropout, and its embedding size. */
static mfr_arch *load_arch(const char *spec, double dropout, int *dim, mfr_error *e)
{
	mfr_arch *a = mfr_arch_load(spec, e);
	if (!a)
		return NULL;
	for (int i = 0; dropout >= 0 && i < a->n_layers; i++)
		if (a->layers[i].op == MFR_OP_DROPOUT)
			a->layers[i].p = dropout;
	if (a->n_outputs > MAX_OUTPUTS) {
		mfr_fail(e, "'%s': %d outputs; mfr-train trains the first and allows at most %d", spec, a->n_outputs,
			 MAX_OUTPUTS);
		mfr_arch_free(a);
		return NULL;
	}
	const mfr_shape *s = &a->layers[a->outputs[0]].shape;
	*dim = s->c * s->h * s->w;
	return a;
}

int mfr_train_arch_dim(const char *arch, int *dim, mfr_error *e)
{
	mfr_arch *a = load_arch(arch, -1, dim, e);
	mfr_arch_free(a);
	return a ? 0 : -1;
}

static uint64_t all_params(const mfr_arch *a)
{
	uint64_t n = 0;
	for (int i = 0; i < a->n_tensors; i++)
		n += a->tensors[i].count;
	return n;
}

/* ---- the memory planner ---- */

int mfr_train_plan_make(mfr_train_plan *p, int64_t C, int d, int N, int k, double rate, const char *arch,
			int prefetch, int dtype, mfr_error *e)
{
	memset(p, 0, sizeof *p);
	if (C < 1 || d < 1 || N < 1 || k < 1 || !(rate > 0 && rate <= 1))
		return mfr_fail(e, "plan: classes, embedding size, batch and ranks must be >= 1 and the rate in (0, 1]");
	int64_t Cl = (C + k - 1) / k; /* the largest shard */
	double w = (double)d * (double)Cl * 4, logits = (double)N * k * (double)Cl * 4;
	p->local_classes = Cl;
	p->fc_weight = w;
	p->fc_momentum = w;
	p->fc_grad = rate * w;
	p->fc_logits = 2 * rate * logits;
	p->classifier_paper = p->fc_weight + p->fc_momentum + p->fc_grad + p->fc_logits;
	/* what pfc.c allocates: weight, momentum, and for the sampled columns
	 * (at most ceil(r Cl) + N k) the normalised rows, their gradient and one
	 * logits matrix reused for its own gradient */
	double cap = fmin((double)Cl, ceil(rate * (double)Cl) + (double)N * k);
	p->classifier_alloc = 2 * w + 2 * cap * d * 4 + (double)N * k * cap * 4 + 3.0 * N * k * d * 4;
	p->total = p->classifier_alloc;
	if (arch) {
		int dim;
		mfr_arch *a = load_arch(arch, -1, &dim, e);
		if (!a)
			return -1;
		if (dim != d) {
			mfr_arch_free(a);
			return mfr_fail(e, "plan: '%s' embeds in %d dimensions, not %d", arch, dim, d);
		}
		uint64_t P = all_params(a);
		p->backbone_params = a->params;
		p->bb_params = p->bb_grads = p->bb_momentum = (double)P * 4;
		p->bb_activations = (double)mfr_net_training_bytes(a, N);
		const mfr_shape *in = &a->layers[0].shape;
		p->loader = (double)(prefetch + 1) * N * in->c * in->h * in->w * 4;
		p->total += 3 * (double)P * 4 + p->bb_activations + p->loader;
#ifdef MFR_HAVE_CUDA
		p->gpu_total = mfr_gtrain_bytes(a, d, N, (mfr_dtype)dtype, C, rate, k, 1);
#else
		(void)dtype;
#endif
		mfr_arch_free(a);
	}
	return 0;
}

static void gib_line(FILE *f, const char *what, double bytes, const char *note)
{
	fprintf(f, "%-22s %9.3f GiB%s%s\n", what, bytes / GIB, note ? "  " : "", note ? note : "");
}

void mfr_train_plan_print(const mfr_train_plan *p, FILE *f, int64_t C, int d, int N, int k, double rate, const char *arch)
{
	fprintf(f, "plan per rank: %lld classes over %d ranks (%lld on the largest shard), embedding %d, batch %d per rank "
		   "(%d global), sample rate %g\n",
		(long long)C, k, (long long)p->local_classes, d, N, N * k, rate);
	gib_line(f, "classifier weight:", p->fc_weight, "Mem_w = d x C/k x 4");
	gib_line(f, "classifier momentum:", p->fc_momentum, NULL);
	gib_line(f, "classifier gradient:", p->fc_grad, "sampled rows");
	gib_line(f, "logits:", p->fc_logits, "2 Mem_logits, Mem_logits = N x k x C/k x 4 (sampled columns)");
	gib_line(f, "classifier:", p->classifier_paper, "the paper's Mem_FC = 3 Mem_w + 2 Mem_logits");
	gib_line(f, "classifier allocated:", p->classifier_alloc,
		 "what mfr allocates (one logits buffer, reused for its gradient)");
	if (arch) {
		fprintf(f, "backbone %s: %llu parameters\n", arch, (unsigned long long)p->backbone_params);
		gib_line(f, "backbone parameters:", p->bb_params, "with running statistics");
		gib_line(f, "backbone gradients:", p->bb_grads, NULL);
		gib_line(f, "backbone momentum:", p->bb_momentum, NULL);
		gib_line(f, "activations:", p->bb_activations, "training: values, gradients, saved, scratch");
		gib_line(f, "loader batches:", p->loader, NULL);
	}
	gib_line(f, "total:", p->total, arch ? NULL : "(classifier only: no --arch)");
	if (p->gpu_total > 0)
		gib_line(f, "on a GPU:", p->gpu_total,
			 "device memory per rank of a GPU run (backbone in --dtype, classifier fp32, workspaces, NCCL over ranks)");
}

/* ---- the schedule ---- */

double mfr_train_lr(const mfr_train_config *c, int global_batch, uint64_t t, uint64_t spe)
{
	double base = c->lr * global_batch / 256.0;
	double epoch = (double)t / (double)spe, warm = c->warmup * (double)spe;
	if (warm > 0 && (double)t < warm)
		return base * ((double)t + 1) / warm;
	if (c->decay == MFR_DECAY_POLY) {
		double total = c->epochs * (double)spe, x = ((double)t - warm) / fmax(total - warm, 1);
		return base * pow(fmax(1 - x, 0), c->power);
	}
	double lr = base;
	for (int i = 0; i < c->ndecay; i++)
		if (epoch >= c->decay_epochs[i])
			lr *= c->gamma;
	return lr;
}

/* ---- the run ---- */

typedef struct {
	const mfr_train_config *c;
	mfr_comm *comm;
	int rank, k, B, G, D;
	mfr_arch *a;
	char *arch_text;
	mfr_net *net;
	float *mom;       /* backbone momentum, the parameter block's layout */
	size_t ptotal;
	mfr_pfc *fc;
	int64_t C;
	mfr_loader *ld;
	uint64_t spe, n;
	mfr_input_spec input;
#ifdef MFR_HAVE_CUDA
	mfr_gtrain *gt;   /* the step on a GPU; net and mom are then host copies for checkpoints */
#endif
	float *fcw, *fcm; /* a GPU run's classifier shard on the host, while checkpointing */
	int raw;          /* the loader hands out raw pixels (a GPU normalises them) */
	int64_t scale_log2, scale_clean; /* a resumed checkpoint's fp16 loss scaler, or -1 */
} run;

/* The classifier shard's rows and momentum on the host: the CPU classifier's
 * own, or a GPU run's copies (fc_host). */
static float *fc_weights(run *r) { return r->fc ? mfr_pfc_weights(r->fc) : r->fcw; }
static float *fc_momentum(run *r) { return r->fc ? mfr_pfc_momentum(r->fc) : r->fcm; }

/* A GPU run: host buffers for its classifier shard (freed by fc_host_done).
 * get = 1 also copies the device state down. */
static int fc_host(run *r, int get, mfr_error *e)
{
#ifdef MFR_HAVE_CUDA
	if (!r->gt)
		return 0;
	int64_t c0, c1;
	mfr_pfc_shard(r->C, r->rank, r->k, &c0, &c1);
	size_t n = (size_t)(c1 - c0) * (size_t)r->D;
	if (!(r->fcw = malloc((n ? n : 1) * sizeof *r->fcw)) || !(r->fcm = malloc((n ? n : 1) * sizeof *r->fcm)))
		return mfr_fail(e, "out of memory for a host copy of the classifier shard (%zu values)", n);
	if (get && mfr_gtrain_get_state(r->gt, mfr_net_params(r->net), r->mom, r->fcw, r->fcm, e) < 0)
		return -1;
#else
	(void)r, (void)get, (void)e;
#endif
	return 0;
}

static void fc_host_done(run *r)
{
	free(r->fcw);
	free(r->fcm);
	r->fcw = r->fcm = NULL;
}

static int64_t *shard_counts(const run *r, int per_row)
{
	int64_t *cnt = malloc((size_t)r->k * sizeof *cnt);
	if (!cnt)
		return NULL;
	for (int q = 0; q < r->k; q++) {
		int64_t c0, c1;
		mfr_pfc_shard(r->C, q, r->k, &c0, &c1);
		cnt[q] = (c1 - c0) * per_row;
	}
	return cnt;
}

static int add_tensor(mfr_model *m, const char *name, int ndim, const int64_t *dims, const float *data, mfr_error *e)
{
	mfr_tensor *t = mfr_model_add(m, name, MFR_TDTYPE_F32, ndim, dims, e);
	if (!t)
		return -1;
	memcpy(t->data, data, t->numel * sizeof(float));
	return 0;
}

/* Writes the checkpoint (collective: every rank sends its classifier shard to
 * rank 0, which writes path atomically). */
static int save_checkpoint(run *r, const char *path, uint64_t step, mfr_error *e)
{
	int64_t *cnt = shard_counts(r, r->D);
	float *W = NULL, *M = NULL;
	int rc = -1;
	mfr_model m = {0};
	if (!cnt)
		return mfr_fail(e, "out of memory");
	if (r->rank == 0 && (!(W = malloc((size_t)r->C * r->D * sizeof *W)) || !(M = malloc((size_t)r->C * r->D * sizeof *M)))) {
		mfr_fail(e, "out of memory gathering the %lld x %d classifier", (long long)r->C, r->D);
		free(W), free(M), free(cnt);
		mfr_comm_abort(r->comm, 1); /* the others are about to send */
	}
	mfr_comm_gatherv(r->comm, fc_weights(r), W, cnt, MFR_F32);
	mfr_comm_gatherv(r->comm, fc_momentum(r), M, cnt, MFR_F32);
	if (r->rank != 0) {
		free(cnt);
		return 0;
	}
	mfr_text st = {0};
	mfr_text_printf(&st, "mfr-train checkpoint 1\nstep %llu\nranks %d\nbatch %d\nglobal_batch %d\nsteps_per_epoch %llu\n"
			     "samples %llu\nclasses %lld\nembedding %d\nseed %llu\n",
			(unsigned long long)step, r->k, r->B, r->G, (unsigned long long)r->spe, (unsigned long long)r->n,
			(long long)r->C, r->D, (unsigned long long)r->c->seed);
	for (int q = 0; q < r->k; q++) {
		int64_t c0, c1;
		mfr_pfc_shard(r->C, q, r->k, &c0, &c1);
		mfr_text_printf(&st, "shard %d %lld %lld\n", q, (long long)c0, (long long)c1);
	}
#ifdef MFR_HAVE_CUDA
	if (r->gt) { /* the fp16 loss scaler (1 = 2^0 in the other types) */
		int l2, clean;
		mfr_gtrain_scale_state(r->gt, &l2, &clean);
		mfr_text_printf(&st, "loss_scale_log2 %d\nscale_clean %d\n", l2, clean);
	}
#endif
	int64_t cd[2] = {r->C, r->D}, pd[1] = {(int64_t)r->ptotal};
	if (!st.d || st.failed)
		mfr_fail(e, "out of memory");
	else if (!(m.arch = strdup(r->arch_text)))
		mfr_fail(e, "out of memory");
	else {
		m.input = r->input;
		if (!mfr_net_store(r->net, &m, 0, e) && !add_tensor(&m, "train.fc.weight", 2, cd, W, e) &&
		    !add_tensor(&m, "train.fc.momentum", 2, cd, M, e) && !add_tensor(&m, "train.momentum", 1, pd, r->mom, e) &&
		    !mfr_model_add_section(&m, STATE_SECTION, st.d, st.n, e) && !mfr_model_save(path, &m, e))
			rc = 0;
	}
	free(st.d);
	mfr_model_free(&m);
	free(W), free(M), free(cnt);
	return rc;
}

/* A "key value" line of the state text, or -1. */
static long long state_value(const char *text, const char *key)
{
	size_t kl = strlen(key);
	for (const char *p = text; p && *p; p = strchr(p, '\n'), p = p ? p + 1 : NULL)
		if (!strncmp(p, key, kl) && p[kl] == ' ')
			return atoll(p + kl + 1);
	return -1;
}

/* Rank 0 reads and checks the checkpoint; everything goes out to the ranks
 * (the classifier re-sharded for this run's ranks). Returns the step to
 * start from, or -1 (on every rank) with e filled. */
static int64_t load_checkpoint(run *r, const char *path, mfr_error *e)
{
	int64_t head[4] = {0, -1, -1, -1}; /* ok, step, the loss scaler's log2 scale and clean steps (-1: none) */
	mfr_model m = {0};
	float *W = NULL, *M = NULL;
	if (r->rank == 0) {
		const mfr_tensor *tw, *tm, *tb;
		char *state = NULL;
		if (mfr_model_load(path, &m, e) < 0)
			goto bad;
		for (int i = 0; i < m.nextra; i++)
			if (m.extra[i].type == STATE_SECTION && (state = calloc(1, m.extra[i].size + 1)))
				memcpy(state, m.extra[i].data, m.extra[i].size);
		if (!state) {
			mfr_fail(e, "'%s': not a checkpoint (no training state; a model for --init?)", path);
			goto bad;
		}
		long long step = state_value(state, "step"), classes = state_value(state, "classes"),
			  dim = state_value(state, "embedding"), samples = state_value(state, "samples"),
			  spe = state_value(state, "steps_per_epoch"), gb = state_value(state, "global_batch"),
			  seed = state_value(state, "seed");
		head[2] = state_value(state, "loss_scale_log2");
		head[3] = state_value(state, "scale_clean");
		free(state);
		if (step < 0 || classes < 1 || dim < 1 || spe < 1 || gb < 1) {
			mfr_fail(e, "'%s': damaged training state", path);
			goto bad;
		}
		if (strcmp(m.arch, r->arch_text)) {
			mfr_fail(e, "'%s': the checkpoint's architecture differs from --arch (and --dropout)", path);
			goto bad;
		}
		if (classes != r->C || dim != r->D || (uint64_t)samples != r->n) {
			mfr_fail(e, "'%s': the checkpoint trained %lld classes of dimension %d on %lld faces; this run has %lld, %d, %llu",
				 path, classes, (int)dim, samples, (long long)r->C, r->D, (unsigned long long)r->n);
			goto bad;
		}
		if ((uint64_t)seed != r->c->seed) {
			mfr_fail(e, "'%s': the checkpoint ran with --seed %lld, this run has %llu", path, seed,
				 (unsigned long long)r->c->seed);
			goto bad;
		}
		tw = mfr_model_find(&m, "train.fc.weight");
		tm = mfr_model_find(&m, "train.fc.momentum");
		tb = mfr_model_find(&m, "train.momentum");
		if (!tw || !tm || !tb || tw->numel != (size_t)r->C * r->D || tm->numel != tw->numel || tb->numel != r->ptotal) {
			mfr_fail(e, "'%s': the training tensors are missing or mis-shaped", path);
			goto bad;
		}
		if (mfr_net_load(r->net, &m, e) < 0)
			goto bad;
		memcpy(r->mom, tb->data, r->ptotal * sizeof *r->mom);
		W = tw->data, M = tm->data;
		/* the same place in the data: the same step when the global batch is
		 * unchanged, else the first step at or after the samples already seen */
		if (gb == r->G)
			head[1] = step;
		else {
			int64_t epoch = step / spe, seen = (step % spe) * gb;
			head[1] = epoch * (int64_t)r->spe + (seen + r->G - 1) / r->G;
		}
		head[0] = 1;
	}
bad:
	mfr_comm_bcast(r->comm, head, 4, MFR_I64, 0);
	r->scale_log2 = head[2], r->scale_clean = head[3];
	if (!head[0]) {
		mfr_model_free(&m);
		if (r->rank != 0)
			mfr_fail(e, "rank 0 could not resume from '%s'", path);
		return -1;
	}
	mfr_comm_bcast(r->comm, mfr_net_params(r->net), r->ptotal, MFR_F32, 0);
	mfr_comm_bcast(r->comm, r->mom, r->ptotal, MFR_F32, 0);
	int64_t *cnt = shard_counts(r, r->D);
	if (!cnt) {
		mfr_fail(e, "out of memory");
		mfr_comm_abort(r->comm, 1);
	}
	mfr_comm_scatterv(r->comm, W, fc_weights(r), cnt, MFR_F32);
	mfr_comm_scatterv(r->comm, M, fc_momentum(r), cnt, MFR_F32);
	free(cnt);
	mfr_model_free(&m);
	return head[1];
}

static int save_model(run *r, const char *path, mfr_error *e)
{
	mfr_model m = {0};
	int rc = -1;
	if (!(m.arch = strdup(r->arch_text)))
		mfr_fail(e, "out of memory");
	else {
		m.input = r->input;
		if (!mfr_net_store(r->net, &m, 0, e) && !mfr_model_save(path, &m, e))
			rc = 0;
	}
	mfr_model_free(&m);
	return rc;
}

/* Whether path's temp file (PATH.tmp, what the save writes first) can be
 * created: checked before training, so a bad -o fails now, not hours later. */
static int can_write(const char *path, mfr_error *e)
{
	char tmp[4096];
	if (snprintf(tmp, sizeof tmp, "%s.tmp", path) >= (int)sizeof tmp)
		return mfr_fail(e, "'%s': path too long", path);
	if (mfr_path_special(path)) /* written in place (util.h) */
		snprintf(tmp, sizeof tmp, "%s", path);
	int exists = access(tmp, F_OK) == 0;
	FILE *f = fopen(tmp, "ab");
	if (!f)
		return mfr_fail(e, "'%s': cannot write here (%s)", path, strerror(errno));
	fclose(f);
	if (!exists)
		remove(tmp);
	return 0;
}

static double rss_bytes(void)
{
	FILE *f = fopen("/proc/self/statm", "r");
	long pages = 0, rss = 0;
	if (f) {
		if (fscanf(f, "%ld %ld", &pages, &rss) != 2)
			rss = 0;
		fclose(f);
	}
	return (double)rss * (double)sysconf(_SC_PAGESIZE);
}

static void fmt_eta(char *buf, size_t n, double s)
{
	if (!(s >= 0) || s > 1e8)
		snprintf(buf, n, "?");
	else if (s >= 3600)
		snprintf(buf, n, "%dh%02dm", (int)(s / 3600), (int)fmod(s / 60, 60));
	else
		snprintf(buf, n, "%dm%02ds", (int)(s / 60), (int)fmod(s, 60));
}

/* The loader's pixel hook: online mask augmentation. The choice and the mask
 * are drawn from (seed, epoch, face id), so a face wears different masks in
 * different epochs, and a rerun the same ones. A face already masked is left
 * as it is. The image is the network input, aligned to the template. */
static int mask_hook(void *ctx, mfr_image *im, const mfr_face *f, uint64_t epoch, uint32_t *flags, mfr_error *e)
{
	mfr_maskaug cfg = *(const mfr_maskaug *)ctx;
	if (f->flags & MFR_F_MASKED)
		return 0;
	cfg.seed = mfr_hash2(cfg.seed, epoch);
	if (!mfr_maskaug_selected(&cfg, f->id))
		return 0;
	mfr_maskaug_info info;
	if (mfr_maskaug_apply(&cfg, im->px, im->w, im->h, NULL, f->id, &info, e) < 0)
		return -1;
	*flags = (*flags & ~MFR_F_STYLE_MASK) | MFR_F_MASKED | (uint32_t)info.style << MFR_F_STYLE_SHIFT;
	return 0;
}

/* SGD with momentum and weight decay on the learned backbone tensors. */
static void backbone_step(run *r, double lr)
{
	const mfr_arch *a = r->a;
	float *p = mfr_net_params(r->net), *g = mfr_net_grads(r->net);
	size_t off = 0;
	for (int i = 0; i < a->n_tensors; i++) {
		size_t cnt = a->tensors[i].count;
		if (!a->tensors[i].buffer && !a->tensors[i].frozen)
			for (size_t j = off; j < off + cnt; j++) {
				float gt = (float)(g[j] + r->c->wd * p[j]);
				r->mom[j] = (float)(r->c->momentum * r->mom[j] + gt);
				p[j] = (float)(p[j] - lr * r->mom[j]);
			}
		off += cnt;
	}
}

/* Scales the backbone gradient to global norm c->clip when it is larger;
 * returns the norm before clipping. */
static double clip_grads(run *r)
{
	float *g = mfr_net_grads(r->net);
	double s = 0;
	for (size_t j = 0; j < r->ptotal; j++)
		s += (double)g[j] * g[j];
	double norm = sqrt(s);
	if (r->c->clip > 0 && norm > r->c->clip) {
		float f = (float)(r->c->clip / norm);
		for (size_t j = 0; j < r->ptotal; j++)
			g[j] *= f;
	}
	return norm;
}

/* The loader alone (decode, flip, masks, normalisation; no model): one
 * epoch, or --max-steps batches, timed on every rank, figures on rank 0's
 * stderr. What a GPU's step must not wait for (a GPU run's loader hands out
 * raw pixels: the normalisation is then left out here too). */
static int loader_only(run *r, mfr_error *e)
{
	const mfr_train_config *c = r->c;
	uint64_t steps = r->spe;
	if (c->max_steps > 0 && (uint64_t)c->max_steps < steps)
		steps = (uint64_t)c->max_steps;
	if (mfr_loader_start(r->ld, 0, e) < 0)
		return -1;
	double t0 = mfr_now();
	for (uint64_t s = 0; s < steps; s++) {
		void *x;
		int32_t *lab;
		uint64_t *ids;
		if (mfr_loader_next(r->ld, &x, &lab, &ids, NULL, e) < 0)
			return -1;
	}
	double secs = mfr_now() - t0, ips = steps * (double)r->B / secs;
	double all = ips;
	mfr_comm_allreduce(r->comm, &all, 1, MFR_F64, MFR_SUM);
	if (r->rank == 0)
		fprintf(stderr, "mfr-train: loader alone: %llu batches of %d in %.2f s: %.1f img/s per rank, %.1f img/s over %d "
				"rank%s (%d decode threads per rank, masks on %g of faces, %s)\n",
			(unsigned long long)steps, r->B, secs, ips, all, r->k, r->k > 1 ? "s" : "", c->loader_threads,
			c->mask_ratio, r->raw ? "raw pixels for a GPU" : "normalised floats");
	return 0;
}

/* A checkpoint of the run's state: a GPU run's comes down to the host first.
 * Collective; a rank that cannot make its host copy ends the job (the others
 * would wait for its shard). */
static int save_state(run *r, const char *path, uint64_t step, mfr_error *e)
{
	if (fc_host(r, 1, e) < 0) {
		fprintf(stderr, "mfr-train: rank %d: %s\n", r->rank, e->msg);
		mfr_comm_abort(r->comm, 1);
	}
	int rc = save_checkpoint(r, path, step, e);
	fc_host_done(r);
	return rc;
}

/* This rank's index among the ranks of its node, from the launcher's
 * environment (OpenMPI, MPICH/Hydra, Slurm, torchrun's convention); 0. */
static int local_rank(void)
{
	static const char *vars[] = {"OMPI_COMM_WORLD_LOCAL_RANK", "MPI_LOCALRANKID", "SLURM_LOCALID", "LOCAL_RANK"};
	for (size_t i = 0; i < sizeof vars / sizeof *vars; i++) {
		const char *v = getenv(vars[i]);
		if (v && *v)
			return atoi(v) > 0 ? atoi(v) : 0;
	}
	return 0;
}

#ifdef MFR_HAVE_CUDA
/* The loader's batches in page-locked memory of the run's GPU. */
static void *pinned_alloc(void *ctx, size_t bytes, mfr_error *e) { return mfr_gtrain_host_alloc(ctx, bytes, e); }
static void pinned_free(void *ctx, void *p) { mfr_gtrain_host_free(ctx, p); }
#endif

static const char *compute_name(const run *r)
{
#ifdef MFR_HAVE_CUDA
	if (r->gt)
		return mfr_gtrain_describe(r->gt);
#endif
	(void)r;
	return mfr_cpu_backend();
}

int mfr_train_run(const mfr_train_config *c, mfr_comm *comm, mfr_error *e)
{
	run R = {.c = c, .comm = comm, .rank = mfr_comm_rank(comm), .k = mfr_comm_size(comm), .B = c->batch};
	run *r = &R;
	int rc = -1;
	FILE *log = NULL;
	float *F = NULL, *dF = NULL;
	int32_t *L = NULL;
	mfr_model init = {0};
	mfr_maskaug mask;
	mfr_mask_templates *templates = NULL;
	r->G = r->B * r->k;
	mfr_cpu_set_threads(c->threads);
	if (!(r->a = load_arch(c->arch, c->dropout, &r->D, e)) || !(r->arch_text = mfr_arch_format(r->a, NULL, e)))
		goto out;
	if (r->rank == 0 && ((c->output && can_write(c->output, e) < 0) || (c->checkpoint && can_write(c->checkpoint, e) < 0)))
		goto out;
	mfr_input_spec_insightface(&r->input);
	const mfr_shape *ish = &r->a->layers[0].shape;
	if (ish->c != 3) {
		mfr_fail(e, "'%s': the input has %d channels; training reads RGB faces (3)", c->arch, ish->c);
		goto out;
	}
	r->input.width = ish->w, r->input.height = ish->h;
	if (c->init) {
		if (mfr_model_load(c->init, &init, e) < 0)
			goto out;
		r->input = init.input;
		if (r->input.width != ish->w || r->input.height != ish->h) {
			mfr_fail(e, "'%s': the model takes %dx%d faces, the architecture %dx%d", c->init, r->input.width,
				 r->input.height, ish->w, ish->h);
			mfr_model_free(&init);
			goto out;
		}
	}

	mfr_loader_config lc = {.paths = c->inputs, .npaths = c->ninputs, .batch = r->B, .rank = r->rank, .ranks = r->k,
				.seed = c->seed, .threads = c->loader_threads, .prefetch = c->prefetch, .flip = 1,
				.input = r->input};
	if (c->mask_ratio > 0) {
		if (r->input.width != 112 || r->input.height != 112) {
			mfr_fail(e, "--mask-ratio needs 112x112 aligned inputs (the ArcFace layout); this model takes %dx%d",
				 r->input.width, r->input.height);
			goto out_init;
		}
		mfr_maskaug_defaults(&mask);
		mask.seed = mfr_hash2(c->seed, 0x6d61736bull);
		mask.ratio = c->mask_ratio;
		if (c->mask_templates) {
			if (!(templates = mfr_mask_templates_load(c->mask_templates, e)))
				goto out_init;
			mask.templates = templates;
		}
		if (mfr_maskaug_check(&mask, e) < 0)
			goto out_init;
		lc.hook = mask_hook;
		lc.hook_ctx = &mask;
	}
	if (!(r->ld = mfr_loader_open(&lc, e)))
		goto out_init;
	r->n = mfr_loader_samples(r->ld);
	r->spe = mfr_loader_steps_per_epoch(r->ld);
	r->C = mfr_loader_classes(r->ld);
	if (c->classes) {
		if (c->classes < r->C) {
			mfr_fail(e, "--classes %lld, but the data has labels up to %lld", (long long)c->classes, (long long)r->C - 1);
			goto out_init;
		}
		r->C = c->classes;
	}
	mfr_train_plan plan;
	if (mfr_train_plan_make(&plan, r->C, r->D, r->B, r->k, c->sample_rate, c->arch, c->prefetch, c->dtype, e) < 0)
		goto out_init;
	/* where the step runs: the same on every rank (a GPU only when all have one) */
	const char *device = c->device ? c->device : mfr_device_default();
	int gpu_dev = 0, on_gpu = mfr_device_select(device, &gpu_dev, e);
	if (on_gpu < 0)
		goto out_init;
	int32_t all = on_gpu;
	mfr_comm_allreduce(comm, &all, 1, MFR_I32, MFR_SUM);
	if (all != r->k) {
		if (on_gpu && strcmp(device, "auto")) {
			mfr_fail(e, "device %s: some ranks have no GPU", device);
			goto out_init;
		}
		on_gpu = 0;
	}
	if (on_gpu && !strchr(device, ':')) /* one GPU per rank: by the rank on its node */
		gpu_dev = local_rank() % mfr_gpu_count(NULL, 0);
	if (c->loader_only) {
		r->raw = on_gpu;
		mfr_loader_output o = {.raw = r->raw};
		mfr_loader_set_output(r->ld, &o);
		rc = loader_only(r, e);
		goto out_init;
	}
	if (!on_gpu && c->mem_limit > 0 && plan.total > c->mem_limit) {
		mfr_fail(e, "the plan needs %.3f GiB per rank, over --mem-limit %.3f GiB (see --plan; more ranks or a lower --sample-rate shrink the classifier)",
			 plan.total / GIB, c->mem_limit / GIB);
		goto out_init;
	}
	if (on_gpu && c->mem_limit > 0 && plan.gpu_total > c->mem_limit) {
		mfr_fail(e, "the plan needs %.3f GiB of GPU memory per rank, over --mem-limit %.3f GiB", plan.gpu_total / GIB,
			 c->mem_limit / GIB);
		goto out_init;
	}
	/* a GPU run keeps a host copy of the parameters only for loading and saving */
	if (!(r->net = on_gpu ? mfr_net_new(r->a, 1, 0, e) : mfr_net_new(r->a, r->B, 1, e)))
		goto out_init;
	r->ptotal = mfr_net_param_total(r->net);
	if (!(r->mom = calloc(r->ptotal, sizeof *r->mom))) {
		mfr_fail(e, "out of memory");
		goto out_init;
	}
	if (c->init) {
		if (mfr_net_load(r->net, &init, e) < 0)
			goto out_init;
	} else
		mfr_net_init(r->net, c->seed);
	mfr_model_free(&init);
	if (on_gpu) {
#ifdef MFR_HAVE_CUDA
		mfr_gtrain_config gcfg = {.device = gpu_dev, .dtype = (mfr_dtype)c->dtype, .batch = r->B, .classes = r->C,
					  .sample_rate = c->sample_rate, .sparse_momentum = c->sparse_momentum,
					  .margin = c->margin, .momentum = c->momentum, .wd = c->wd, .fc_wd = c->fc_wd,
					  .clip = c->clip, .tf32 = c->tf32, .loss_scale = c->loss_scale,
					  .bucket_bytes = (size_t)(c->bucket_mb * 1048576), .raw = 1,
					  .input = r->input};
		if (!(r->gt = mfr_gtrain_new(&gcfg, comm, r->a, r->D, e)) ||
		    mfr_gtrain_put_state(r->gt, mfr_net_params(r->net), r->mom, NULL, NULL, e) < 0)
			goto out;
		mfr_gtrain_init_classifier(r->gt, mfr_hash2(c->seed, 0x636c6173ull));
		/* the loader hands out raw pixels in page-locked memory: a quarter of
		 * the bytes, uploaded while the last step's optimizer runs */
		r->raw = 1;
		mfr_loader_output o = {.raw = 1, .alloc = pinned_alloc, .release = pinned_free, .ctx = r->gt};
		mfr_loader_set_output(r->ld, &o);
#endif
	} else {
		if (!(r->fc = mfr_pfc_new(r->C, r->D, c->sample_rate, r->G, r->rank, r->k, e)))
			goto out;
		mfr_pfc_init(r->fc, mfr_hash2(c->seed, 0x636c6173ull));
	}
	if (!(F = malloc((size_t)r->G * r->D * sizeof *F)) || !(dF = malloc((size_t)r->G * r->D * sizeof *dF)) ||
	    !(L = malloc((size_t)r->G * sizeof *L))) {
		mfr_fail(e, "out of memory");
		goto out;
	}

	uint64_t step = 0, total = (uint64_t)floor(c->epochs * (double)r->spe), stop = total;
	if (c->max_steps > 0 && (uint64_t)c->max_steps < stop)
		stop = (uint64_t)c->max_steps;
	if (c->resume) {
		if (fc_host(r, 0, e) < 0)
			goto out;
		int64_t s = load_checkpoint(r, c->resume, e);
#ifdef MFR_HAVE_CUDA
		if (s >= 0 && r->gt && mfr_gtrain_put_state(r->gt, mfr_net_params(r->net), r->mom, r->fcw, r->fcm, e) < 0)
			s = -1;
		if (s >= 0 && r->gt && r->scale_log2 >= 0 && r->scale_clean >= 0)
			mfr_gtrain_set_scale_state(r->gt, (int)r->scale_log2, (int)r->scale_clean);
#endif
		fc_host_done(r);
		if (s < 0)
			goto out;
		step = (uint64_t)s;
	}
	if (r->rank == 0) {
		fprintf(stderr,
			"mfr-train: %s (%.1fM parameters, embedding %d) on %llu faces of %lld classes; %d rank%s x batch %d = %d, "
			"%llu steps per epoch, %g epochs (%llu steps%s), lr %g (%g per 256), %s s=%g m=(%g, %g, %g), "
			"sample rate %g (%s momentum), masks on %g of faces, compute %s, %s%s\n",
			c->arch, r->a->params / 1e6, r->D, (unsigned long long)r->n, (long long)r->C, r->k, r->k > 1 ? "s" : "",
			r->B, r->G, (unsigned long long)r->spe, c->epochs, (unsigned long long)total,
			stop < total ? ", stopping early" : "", c->lr * r->G / 256.0, c->lr,
			c->margin.m2 == 0 && c->margin.m1 == 1 ? "cosface" : "margin", c->margin.s, c->margin.m1, c->margin.m2,
			c->margin.m3, c->sample_rate, c->sparse_momentum ? "sparse" : "dense", c->mask_ratio, compute_name(r),
			mfr_comm_describe(comm), c->resume ? "; resuming" : "");
		if (c->resume)
			fprintf(stderr, "mfr-train: resumed at step %llu (epoch %.2f)\n", (unsigned long long)step,
				(double)step / (double)r->spe);
		if (c->log) {
			int fresh = !c->resume || access(c->log, F_OK) != 0;
			if (!(log = fopen(c->log, fresh ? "w" : "a"))) {
				mfr_fail(e, "'%s': cannot open the log for writing", c->log);
				mfr_comm_abort(comm, 1);
			}
			if (fresh)
				fprintf(log, "step\tepoch\tloss\taccuracy\tlr\timages_per_s\tloader_wait\tgrad_norm\teta_s\trss_bytes\n");
		}
	}
	if (mfr_loader_start(r->ld, step, e) < 0)
		goto out;

	mfr_progress bar;
	if (r->rank == 0)
		mfr_progress_start(&bar, "training", stop > step ? stop - step : 0);
	double t0 = mfr_now(), tlog = t0, wait_sum = 0, loss_sum = 0, acc_sum = 0, gnorm = 0;
	uint64_t first = step, since = 0, skipped = 0;
	while (step < stop) {
		double lr = mfr_train_lr(c, r->G, step, r->spe), wait, loss, acc;
		void *x;
		int32_t *lab;
		uint64_t *ids;
		if (mfr_loader_next(r->ld, &x, &lab, &ids, &wait, e) < 0)
			goto out;
		wait_sum += wait;
		uint64_t fwd_seed = mfr_hash2(mfr_hash2(c->seed, step), (uint64_t)r->rank);
		uint64_t pfc_seed = mfr_hash2(c->seed ^ 0x70666373ull, step);
#ifdef MFR_HAVE_CUDA
		if (r->gt) {
			int skip;
			mfr_error se;
			if (mfr_gtrain_stage(r->gt, x, lab, &se) < 0 ||
			    mfr_gtrain_step(r->gt, fwd_seed, pfc_seed, lr, &loss, &acc, &gnorm, &skip, &se) < 0) {
				mfr_fail(e, "step %llu: %s", (unsigned long long)step, se.msg);
				goto out;
			}
			skipped += (uint64_t)skip;
			goto stepped;
		}
#endif
		if (mfr_net_forward(r->net, x, r->B, 1, fwd_seed, e) < 0)
			goto out;
		size_t dim;
		float *emb = mfr_net_output(r->net, 0, &dim);
		mfr_comm_allgather(comm, emb, F, (size_t)r->B * r->D, MFR_F32);
		mfr_comm_allgather(comm, lab, L, (size_t)r->B, MFR_I32);
		if (mfr_pfc_sample(r->fc, L, r->G, pfc_seed, e) < 0 ||
		    mfr_pfc_forward_backward(r->fc, comm, F, L, r->G, &c->margin, &loss, &acc, dF, e) < 0)
			goto out;
		if (!isfinite(loss)) {
			mfr_fail(e, "the loss is not finite at step %llu (lr %g): lower --lr or set --clip", (unsigned long long)step, lr);
			goto out;
		}
		mfr_net_zero_grad(r->net);
		const float *dout[MAX_OUTPUTS] = {dF + (size_t)r->rank * r->B * r->D}; /* the embedding; others get none */
		if (mfr_net_backward(r->net, dout, e) < 0)
			goto out;
		mfr_comm_allreduce(comm, mfr_net_grads(r->net), r->ptotal, MFR_F32, MFR_SUM);
		gnorm = clip_grads(r);
		backbone_step(r, lr);
		mfr_pfc_step(r->fc, lr, c->momentum, c->fc_wd, c->sparse_momentum);
#ifdef MFR_HAVE_CUDA
	stepped:
#endif
		step++, since++;
		loss_sum += loss, acc_sum += acc;
		if (r->rank == 0)
			mfr_progress_add(&bar, 1);
		if (step % (uint64_t)c->log_every == 0 || step == stop) {
			double now = mfr_now(), ips = (double)since * r->G / (now - tlog);
			double eta = (double)(stop - step) * (now - t0) / (double)(step - first);
			if (r->rank == 0) {
				char etas[32];
				fmt_eta(etas, sizeof etas, eta);
				mfr_progress_end(&bar);
				fprintf(stderr, "step %llu/%llu epoch %.2f loss %.4f acc %.3f lr %.5g %.1f img/s (loader wait %.0f%%) "
						"eta %s rss %.2f GiB\n",
					(unsigned long long)step, (unsigned long long)stop, (double)step / (double)r->spe,
					loss_sum / (double)since, acc_sum / (double)since, lr, ips,
					100 * wait_sum / (now - tlog), etas, rss_bytes() / GIB);
				if (log) {
					fprintf(log, "%llu\t%.4f\t%.6f\t%.4f\t%.6g\t%.2f\t%.4f\t%.4g\t%.0f\t%.0f\n",
						(unsigned long long)step, (double)step / (double)r->spe, loss_sum / (double)since,
						acc_sum / (double)since, lr, ips, wait_sum / (now - tlog), gnorm, eta, rss_bytes());
					fflush(log);
				}
				mfr_progress_start(&bar, "training", stop - step);
			}
			tlog = now, since = 0, wait_sum = loss_sum = acc_sum = 0;
		}
		if (c->checkpoint && c->save_every > 0 && step % (uint64_t)c->save_every == 0 && step < stop &&
		    save_state(r, c->checkpoint, step, e) < 0)
			goto out;
	}
	if (r->rank == 0)
		mfr_progress_end(&bar);
	if (c->checkpoint && save_state(r, c->checkpoint, step, e) < 0)
		goto out;
#ifdef MFR_HAVE_CUDA
	if (r->gt && mfr_gtrain_get_state(r->gt, mfr_net_params(r->net), NULL, NULL, NULL, e) < 0)
		goto out;
	if (r->gt && r->rank == 0 && step > first) /* MFR_GPU_PROFILE=1: where the steps' GPU time went */
		mfr_gtrain_profile_report(r->gt, stderr, (double)(step - first));
#endif
	if (r->rank == 0 && c->output && save_model(r, c->output, e) < 0)
		goto out;
	if (r->rank == 0 && skipped)
		fprintf(stderr, "mfr-train: %llu steps skipped by fp16 overflow (loss scaling)\n", (unsigned long long)skipped);
	if (r->rank == 0)
		fprintf(stderr, "mfr-train: %llu steps in %.1f s%s%s\n", (unsigned long long)(step - first), mfr_now() - t0,
			c->output ? ", model in " : "", c->output ? c->output : "");
	rc = 0;
	goto out;
out_init:
	mfr_model_free(&init);
out:
	if (log && fclose(log) != 0 && rc == 0)
		rc = mfr_fail(e, "'%s': write error", c->log);
	free(F), free(dF), free(L);
	mfr_loader_close(r->ld);
	mfr_mask_templates_free(templates);
	mfr_pfc_free(r->fc);
#ifdef MFR_HAVE_CUDA
	mfr_gtrain_free(r->gt);
#endif
	fc_host_done(r);
	mfr_net_free(r->net);
	free(r->mom);
	free(r->arch_text);
	mfr_arch_free(r->a);
	return rc;
}
