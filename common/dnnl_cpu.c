/* dnnl_cpu.c — conv2d and linear, forward and backward, on oneDNN (contracts
 * in dnnl_cpu.h); without oneDNN, thin calls to the reference layers.
 *
 * How a call runs: the layer and its sizes make a key; the cache maps the
 * key to a ready "plan": one oneDNN primitive plus, for each of its tensors,
 * a "port" saying how the caller's buffer reaches it — directly (the
 * primitive reads or writes the caller's memory), or through a reorder into
 * or out of a temporary in the shared scratch buffer. oneDNN writes (=); the
 * += of the backward outputs is a reorder with a sum post-op from the
 * temporary into the caller's buffer (conv: oneDNN's convolution backward
 * takes no post-ops), or the primitive's own sum post-op (linear: matmul
 * takes one, and accumulating in place spares the temporary).
 *
 * Convolutions with much work per element run in oneDNN's blocked layouts,
 * reordered in and out on every call; the others run on the caller's NCHW
 * directly (LAYOUTS below has the measurements). An inference network can
 * instead keep its activations blocked between layers and spare those
 * reorders (mfr_cpu_block, mfr_conv2d_forward_cpu_layout, mfr_cpu_reorder:
 * net.c does); the layers other than conv and linear are then its business.
 */
#include "dnnl_cpu.h" /* defines: mfr_conv2d_forward_cpu, ... */

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "layers_spatial.h" /* defines: mfr_conv2d_forward_ref, mfr_linear_forward_ref, ... */
#include "util.h"           /* defines: mfr_error, mfr_fail */

#ifndef MFR_HAVE_DNNL

/* ---- without oneDNN: the reference layers ---- */

int mfr_conv2d_forward_cpu(float *out, const float *in, const float *w, const float *b,
	const mfr_conv_shape *s, mfr_error *e)
{
	mfr_conv2d_forward_ref(out, in, w, b, s);
	return 0;
}

int mfr_conv2d_forward_cpu_const(float *out, const float *in, const float *w, const float *b,
	const mfr_conv_shape *s, uint64_t version, mfr_error *e)
{
	mfr_conv2d_forward_ref(out, in, w, b, s);
	return 0;
}

int mfr_conv2d_backward_cpu(float *din, float *dw, float *db, const float *dout, const float *in,
	const float *w, const mfr_conv_shape *s, mfr_error *e)
{
	mfr_conv2d_backward_ref(din, dw, db, dout, in, w, s);
	return 0;
}

int mfr_linear_forward_cpu(float *out, const float *in, const float *w, const float *b, int n,
	int ni, int no, mfr_error *e)
{
	mfr_linear_forward_ref(out, in, w, b, n, ni, no);
	return 0;
}

int mfr_linear_backward_cpu(float *din, float *dw, float *db, const float *dout, const float *in,
	const float *w, int n, int ni, int no, mfr_error *e)
{
	mfr_linear_backward_ref(din, dw, db, dout, in, w, n, ni, no);
	return 0;
}

int mfr_cpu_block(void) { return 0; }

int mfr_conv2d_forward_cpu_layout(float *out, int out_block, const float *in, int in_block, const float *w,
	const float *b, const mfr_conv_shape *s, int accumulate, uint64_t version, mfr_error *e)
{
	if (out_block || in_block || accumulate)
		return mfr_fail(e, "blocked layouts and accumulating convolutions need oneDNN");
	mfr_conv2d_forward_ref(out, in, w, b, s);
	return 0;
}

int mfr_cpu_reorder(float *out, int out_block, const float *in, int in_block, int n, int c, int h, int w,
	mfr_error *e)
{
	if (out_block || in_block)
		return mfr_fail(e, "blocked layouts need oneDNN");
	memcpy(out, in, (size_t)n * c * h * w * sizeof *out);
	return 0;
}

void mfr_cpu_set_threads(int n) {}
int mfr_cpu_threads(void) { return 1; }
const char *mfr_cpu_backend(void) { return "reference (built without oneDNN)"; }
void mfr_cpu_release(void) {}

#else /* MFR_HAVE_DNNL */

#include <assert.h>
#include <pthread.h>

#include <dnnl.h>
#include <dnnl_debug.h>

/* The two OpenMP calls we need, declared here rather than through <omp.h>:
 * oneDNN's Debian build runs on GCC's libgomp (linked by the Makefile), and
 * clang without libomp-dev has no <omp.h>. The ABI is OpenMP's. */
int omp_get_num_procs(void);
int omp_get_max_threads(void);
void omp_set_num_threads(int n);

/* Internal check: on failure fill the function's mfr_error `e` with the
 * place, the call and oneDNN's status name, and jump to its `fail:` label.
 * It does not print: library code returns errors (util.h); the tool prints. */
#define MFR_DNNL_CHECK(call) do { dnnl_status_t st_ = (call); if (st_ != dnnl_success) { \
	mfr_fail(e, "oneDNN: %s:%d: %s: %s", __FILE__, __LINE__, #call, dnnl_status2str(st_)); \
	goto fail; } } while (0)

/* LAYOUTS. oneDNN's blocked layouts (nChw16c activations, OIhw16i16o
 * weights) run its fastest kernels, but through this interface each call
 * pays reorders: the weights in, every activation in and out. Whether that
 * wins depends on the work per element moved, the arithmetic intensity
 * MACs / (input + output + weight elements): high for a 3x3 convolution of
 * big images or big batches, low for 1x1 convolutions and for 512-channel
 * weights at batch 1. Measured through this interface (tests/bench/
 * bench_conv.c, 16-core AVX-512 Xeon VM; single-thread figures vary by
 * +-20% run to run), GFLOP/s plain/blocked, forward then backward:
 *                          batch 1, 1 thread   batch 64, 16 threads
 *   3x3 64@112              77/139   52/129    667/937   349/787
 *   3x3 128@28             101/154   80/148    799/1060  694/957
 *   3x3 512@7               78/85    36/69     929/1259  633/1399
 *   1x1 64@112 s2           64/37    41/33     411/180   219/105
 *   1x1 128>256@28 s2      114/114   93/90     971/852   777/723
 *   1x1 256>512@14 s2       99/110   86/81     760/848   652/729
 *   iresnet50's nine shapes 81/120   54/109    692/919   434/755
 * Intensities: 3x3 at batch 1 from 48 (512@7) to 333, 1x1 stride 2 from 13
 * to 85 (256>512 at batch 64). LAYOUT_AUTO, the default, takes the blocked
 * path from BLOCKED_FROM up, which gave 123 and 106 GFLOP/s over the nine
 * shapes at batch 1 and 996 and 803 at batch 64 (another run; plain 68/51
 * and 694/474, blocked 113/105 and 943/769 in that run): at least the
 * better of the two fixed choices in every column. The fixed modes stay for
 * remeasuring (mfr_dnnl_set_layout, declared by the test and benchmark). */
enum { LAYOUT_PLAIN, LAYOUT_BLOCKED, LAYOUT_AUTO };
static int layout = LAYOUT_AUTO;
static const double BLOCKED_FROM = 64; /* between 43 (1x1 128>256, plain wins) and 85 */

/* What a port does with its tensor around the main primitive. */
enum {
	P_IN,  /* input: the primitive reads the caller's buffer, or a reordered copy */
	P_OUT, /* output written (=): directly, or reordered out of a temporary */
	P_ACC, /* output accumulated (+=): a temporary, then a reorder with a sum post-op */
	P_SUM, /* output accumulated by the primitive's own sum post-op, in place */
};

typedef struct {
	int arg;                  /* DNNL_ARG_* of the main primitive */
	int kind;                 /* P_* */
	dnnl_memory_t user;       /* the caller's buffer (plain layout) */
	dnnl_memory_t prim;       /* what the primitive sees: user itself when reorder is NULL */
	dnnl_primitive_t reorder; /* user -> prim (P_IN) or prim -> user (P_OUT, P_ACC) */
	size_t off;               /* prim's place in the scratch buffer when reorder != NULL */
} port;

enum { K_CONV_FWD = 1, K_CONV_BWD_DATA, K_CONV_BWD_WEIGHTS, K_LIN_FWD, K_LIN_BWD_DATA,
	K_LIN_BWD_WEIGHTS, K_CONV_LAYOUT, K_REORDER };
enum { MAX_PORTS = 5, CACHE_SIZE = 128 };

/* Plain ints only, zero-filled before use: compared with memcmp. */
typedef struct {
	int kind, threads, blocked, bias;
	int n, ci, h, w, co, kh, kw, sh, sw, ph, pw, groups;
	int src_block, dst_block, sum; /* K_CONV_LAYOUT, K_REORDER: the caller's layouts */
} key;

typedef struct {
	key k;
	int live;
	unsigned long stamp;    /* last use, for least-recently-used eviction */
	dnnl_primitive_t prim;
	int nport;
	port port[MAX_PORTS];
	size_t scratch;         /* bytes of scratch buffer the temporaries need */
} plan;

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static dnnl_engine_t engine;
static dnnl_stream_t stream;
static plan cache[CACHE_SIZE];
static unsigned long clock_;
static void *scratch;
static size_t scratch_size;

/* 0 plain, 1 blocked, 2 auto (the default): for tests and benchmarks only */
void mfr_dnnl_set_layout(int mode);
void mfr_dnnl_set_layout(int mode)
{
	pthread_mutex_lock(&lock);
	layout = mode;
	pthread_mutex_unlock(&lock);
}

/* Whether convolution s runs in oneDNN's blocked layouts (see LAYOUTS). */
static int blocked(const mfr_conv_shape *s)
{
	if (layout != LAYOUT_AUTO)
		return layout == LAYOUT_BLOCKED;
	double in = (double)s->n * s->ci * s->h * s->w, out = (double)s->n * s->co * s->ho * s->wo;
	double w = (double)s->co * (s->ci / s->groups) * s->kh * s->kw;
	return out * w / s->co / (in + out + w) >= BLOCKED_FROM; /* MACs per element moved */
}

static void plan_free(plan *p)
{
	for (int i = 0; i < p->nport; i++) {
		port *q = &p->port[i];
		if (q->prim && q->prim != q->user)
			dnnl_memory_destroy(q->prim);
		if (q->user)
			dnnl_memory_destroy(q->user);
		if (q->reorder)
			dnnl_primitive_destroy(q->reorder);
	}
	if (p->prim)
		dnnl_primitive_destroy(p->prim);
	memset(p, 0, sizeof *p);
}

static int start(mfr_error *e)
{
	if (!engine)
		MFR_DNNL_CHECK(dnnl_engine_create(&engine, dnnl_cpu, 0));
	if (!stream)
		MFR_DNNL_CHECK(dnnl_stream_create(&stream, engine, dnnl_stream_default_flags));
	return 0;
fail:
	return -1;
}

/* One port of plan p from primitive descriptor pd: user describes the
 * caller's tensor. The primitive's own layout is asked of pd; where it
 * differs (or the output is accumulated through a temporary), a reorder
 * is made and a temporary reserved in the scratch buffer. */
static int add_port(plan *p, const_dnnl_primitive_desc_t pd, int arg, int kind,
	const dnnl_memory_desc_t *user, mfr_error *e)
{
	assert(p->nport < MAX_PORTS);
	port *q = &p->port[p->nport++];
	dnnl_primitive_desc_t rpd = NULL;
	dnnl_primitive_attr_t attr = NULL;
	dnnl_post_ops_t po = NULL;
	q->arg = arg;
	q->kind = kind;
	MFR_DNNL_CHECK(dnnl_memory_create(&q->user, user, engine, DNNL_MEMORY_NONE));
	const dnnl_memory_desc_t *want = dnnl_primitive_desc_query_md(pd, dnnl_query_exec_arg_md, arg);
	if (!want || want->ndims == 0) {
		mfr_fail(e, "oneDNN: primitive has no argument %d", arg);
		goto fail;
	}
	if (kind == P_SUM || (kind != P_ACC && dnnl_memory_desc_equal(want, user))) {
		q->prim = q->user;
		return 0;
	}
	MFR_DNNL_CHECK(dnnl_memory_create(&q->prim, want, engine, DNNL_MEMORY_NONE));
	p->scratch = (p->scratch + 4095) & ~(size_t)4095; /* page-aligned temporaries */
	q->off = p->scratch;
	p->scratch += dnnl_memory_desc_get_size(want);
	if (kind == P_ACC) {
		MFR_DNNL_CHECK(dnnl_primitive_attr_create(&attr));
		MFR_DNNL_CHECK(dnnl_post_ops_create(&po));
		MFR_DNNL_CHECK(dnnl_post_ops_append_sum(po, 1.0f));
		MFR_DNNL_CHECK(dnnl_primitive_attr_set_post_ops(attr, po));
	}
	if (kind == P_IN)
		MFR_DNNL_CHECK(dnnl_reorder_primitive_desc_create(&rpd, user, engine, want, engine, attr));
	else
		MFR_DNNL_CHECK(dnnl_reorder_primitive_desc_create(&rpd, want, engine, user, engine, attr));
	MFR_DNNL_CHECK(dnnl_primitive_create(&q->reorder, rpd));
	dnnl_primitive_desc_destroy(rpd);
	if (attr)
		dnnl_primitive_attr_destroy(attr);
	if (po)
		dnnl_post_ops_destroy(po);
	return 0;
fail:
	if (rpd)
		dnnl_primitive_desc_destroy(rpd);
	if (attr)
		dnnl_primitive_attr_destroy(attr);
	if (po)
		dnnl_post_ops_destroy(po);
	return -1;
}

/* Runs plan p on the caller's buffers ptr[i] (one per port, in port order).
 * pre, when non-NULL, gives for some input ports an already reordered copy
 * (pre[i] != NULL): the primitive reads it and that port's reorder is
 * skipped (constant weights, see mfr_conv2d_forward_cpu_const). */
static int run_pre(plan *p, void *const *ptr, void *const *pre, mfr_error *e)
{
	if (p->scratch > scratch_size) {
		free(scratch);
		scratch_size = 0;
		scratch = aligned_alloc(4096, (p->scratch + 4095) & ~(size_t)4095);
		if (!scratch)
			return mfr_fail(e, "oneDNN: out of memory for %zu bytes of scratch", p->scratch);
		scratch_size = p->scratch;
	}
	dnnl_exec_arg_t args[MAX_PORTS];
	for (int i = 0; i < p->nport; i++) {
		port *q = &p->port[i];
		MFR_DNNL_CHECK(dnnl_memory_set_data_handle(q->user, ptr[i]));
		if (q->reorder)
			MFR_DNNL_CHECK(dnnl_memory_set_data_handle(q->prim, pre && pre[i] ? pre[i]
										 : (char *)scratch + q->off));
		args[i] = (dnnl_exec_arg_t){q->arg, q->prim};
	}
	for (int i = 0; i < p->nport; i++) {
		port *q = &p->port[i];
		if (q->reorder && q->kind == P_IN && !(pre && pre[i])) {
			dnnl_exec_arg_t ra[2] = {{DNNL_ARG_FROM, q->user}, {DNNL_ARG_TO, q->prim}};
			MFR_DNNL_CHECK(dnnl_primitive_execute(q->reorder, stream, 2, ra));
		}
	}
	MFR_DNNL_CHECK(dnnl_primitive_execute(p->prim, stream, p->nport, args));
	for (int i = 0; i < p->nport; i++) {
		port *q = &p->port[i];
		if (q->reorder && q->kind != P_IN) {
			dnnl_exec_arg_t ra[2] = {{DNNL_ARG_FROM, q->prim}, {DNNL_ARG_TO, q->user}};
			MFR_DNNL_CHECK(dnnl_primitive_execute(q->reorder, stream, 2, ra));
		}
	}
	MFR_DNNL_CHECK(dnnl_stream_wait(stream));
	return 0;
fail:
	return -1;
}

static int run(plan *p, void *const *ptr, mfr_error *e) { return run_pre(p, ptr, NULL, e); }

/* Reordered copies of constant weights, by the caller's pointer: the
 * blocked layouts want weights in OIhw16i16o-like orders, and reordering
 * 43.6M iresnet50 weights on every inference call is a memory pass the
 * size of the model. An entry is valid for one (pointer, version, plan key). */
typedef struct {
	const void *w;
	uint64_t version;
	key k;
	void *buf;
	size_t size;
} wcopy;
static wcopy *wcache;
static int nwcache;

/* The reordered copy of weights w for port q of plan p, made if missing or
 * stale; NULL with e filled on failure. */
static void *const_weights(plan *p, port *q, const void *w, uint64_t version, mfr_error *e)
{
	wcopy *c = NULL;
	for (int i = 0; i < nwcache && !c; i++)
		if (wcache[i].w == w)
			c = &wcache[i];
	if (c && c->version == version && !memcmp(&c->k, &p->k, sizeof c->k))
		return c->buf;
	const dnnl_memory_desc_t *md;
	MFR_DNNL_CHECK(dnnl_memory_get_memory_desc(q->prim, &md));
	size_t size = dnnl_memory_desc_get_size(md);
	if (!c) {
		wcopy *g = realloc(wcache, (size_t)(nwcache + 1) * sizeof *g);
		if (!g) {
			mfr_fail(e, "oneDNN: out of memory for the weight cache");
			return NULL;
		}
		wcache = g;
		c = &wcache[nwcache++];
		*c = (wcopy){.w = w};
	}
	if (c->size != size) {
		free(c->buf);
		c->buf = aligned_alloc(4096, (size + 4095) & ~(size_t)4095);
		c->size = c->buf ? size : 0;
		if (!c->buf) {
			mfr_fail(e, "oneDNN: out of memory for %zu bytes of reordered weights", size);
			return NULL;
		}
	}
	MFR_DNNL_CHECK(dnnl_memory_set_data_handle(q->user, (void *)w));
	MFR_DNNL_CHECK(dnnl_memory_set_data_handle(q->prim, c->buf));
	dnnl_exec_arg_t ra[2] = {{DNNL_ARG_FROM, q->user}, {DNNL_ARG_TO, q->prim}};
	MFR_DNNL_CHECK(dnnl_primitive_execute(q->reorder, stream, 2, ra));
	MFR_DNNL_CHECK(dnnl_stream_wait(stream));
	c->version = version;
	c->k = p->k;
	return c->buf;
fail:
	return NULL;
}

/* The cached plan for k, or a fresh slot (live == 0, evicting the least
 * recently used plan) for the caller to fill. */
static plan *lookup(const key *k)
{
	plan *victim = &cache[0];
	for (int i = 0; i < CACHE_SIZE; i++) {
		plan *p = &cache[i];
		if (p->live && !memcmp(&p->k, k, sizeof *k)) {
			p->stamp = ++clock_;
			return p;
		}
		if (!p->live || (victim->live && p->stamp < victim->stamp))
			victim = p;
	}
	if (victim->live)
		plan_free(victim);
	victim->k = *k;
	victim->stamp = ++clock_;
	return victim;
}

/* ---- conv2d ---- */

/* The caller's layouts of a convolution's tensors. */
static void conv_mds(const mfr_conv_shape *s, dnnl_memory_desc_t *src, dnnl_memory_desc_t *wei,
	dnnl_memory_desc_t *bias, dnnl_memory_desc_t *dst, int any)
{
	dnnl_dims_t sd = {s->n, s->ci, s->h, s->w}, dd = {s->n, s->co, s->ho, s->wo}, bd = {s->co};
	dnnl_format_tag_t act = any ? dnnl_format_tag_any : dnnl_nchw;
	dnnl_memory_desc_init_by_tag(src, 4, sd, dnnl_f32, act);
	dnnl_memory_desc_init_by_tag(dst, 4, dd, dnnl_f32, act);
	dnnl_memory_desc_init_by_tag(bias, 1, bd, dnnl_f32, dnnl_x);
	if (s->groups == 1) {
		dnnl_dims_t wd = {s->co, s->ci, s->kh, s->kw};
		dnnl_memory_desc_init_by_tag(wei, 4, wd, dnnl_f32, any ? dnnl_format_tag_any : dnnl_oihw);
	} else {
		dnnl_dims_t wd = {s->groups, s->co / s->groups, s->ci / s->groups, s->kh, s->kw};
		dnnl_memory_desc_init_by_tag(wei, 5, wd, dnnl_f32, any ? dnnl_format_tag_any : dnnl_goihw);
	}
}

static key conv_key(int kind, int bias, const mfr_conv_shape *s)
{
	key k;
	memset(&k, 0, sizeof k);
	k.kind = kind;
	k.threads = omp_get_max_threads();
	k.blocked = blocked(s);
	k.bias = bias;
	k.n = s->n, k.ci = s->ci, k.h = s->h, k.w = s->w, k.co = s->co, k.kh = s->kh, k.kw = s->kw;
	k.sh = s->sh, k.sw = s->sw, k.ph = s->ph, k.pw = s->pw, k.groups = s->groups;
	return k;
}

/* Fills the free slot p with the plan of a convolution in direction kind. */
static int conv_plan(plan *p, int kind, int bias, const mfr_conv_shape *s, mfr_error *e)
{
	dnnl_memory_desc_t src, wei, bia, dst, asrc, awei, abia, adst;
	dnnl_convolution_desc_t fwd, cd;
	dnnl_primitive_desc_t hint = NULL, pd = NULL;
	dnnl_dims_t strides = {s->sh, s->sw}, pad = {s->ph, s->pw};
	/* oneDNN checks (H - kh + pad_l + pad_r)/sh + 1 == Ho with the same
	 * floor division as mfr_conv_shape_init, so symmetric padding fits. */
	conv_mds(s, &src, &wei, &bia, &dst, 0);
	conv_mds(s, &asrc, &awei, &abia, &adst, blocked(s));
	MFR_DNNL_CHECK(dnnl_convolution_forward_desc_init(&fwd, dnnl_forward_training,
		dnnl_convolution_direct, &asrc, &awei, bias ? &abia : NULL, &adst, strides, pad, pad));
	MFR_DNNL_CHECK(dnnl_primitive_desc_create(kind == K_CONV_FWD ? &pd : &hint, &fwd, NULL, engine,
		NULL));
	if (kind == K_CONV_BWD_DATA) {
		MFR_DNNL_CHECK(dnnl_convolution_backward_data_desc_init(&cd, dnnl_convolution_direct,
			&asrc, &awei, &adst, strides, pad, pad));
		MFR_DNNL_CHECK(dnnl_primitive_desc_create(&pd, &cd, NULL, engine, hint));
	} else if (kind == K_CONV_BWD_WEIGHTS) {
		MFR_DNNL_CHECK(dnnl_convolution_backward_weights_desc_init(&cd, dnnl_convolution_direct,
			&asrc, &awei, bias ? &abia : NULL, &adst, strides, pad, pad));
		MFR_DNNL_CHECK(dnnl_primitive_desc_create(&pd, &cd, NULL, engine, hint));
	}
	MFR_DNNL_CHECK(dnnl_primitive_create(&p->prim, pd));
	int ok = 0;
	if (kind == K_CONV_FWD) {
		ok = add_port(p, pd, DNNL_ARG_SRC, P_IN, &src, e) || add_port(p, pd, DNNL_ARG_WEIGHTS, P_IN, &wei, e) ||
			(bias && add_port(p, pd, DNNL_ARG_BIAS, P_IN, &bia, e)) ||
			add_port(p, pd, DNNL_ARG_DST, P_OUT, &dst, e);
	} else if (kind == K_CONV_BWD_DATA) {
		ok = add_port(p, pd, DNNL_ARG_DIFF_DST, P_IN, &dst, e) ||
			add_port(p, pd, DNNL_ARG_WEIGHTS, P_IN, &wei, e) ||
			add_port(p, pd, DNNL_ARG_DIFF_SRC, P_ACC, &src, e);
	} else {
		ok = add_port(p, pd, DNNL_ARG_DIFF_DST, P_IN, &dst, e) ||
			add_port(p, pd, DNNL_ARG_SRC, P_IN, &src, e) ||
			add_port(p, pd, DNNL_ARG_DIFF_WEIGHTS, P_ACC, &wei, e) ||
			(bias && add_port(p, pd, DNNL_ARG_DIFF_BIAS, P_ACC, &bia, e));
	}
	if (ok)
		goto fail;
	dnnl_primitive_desc_destroy(pd);
	if (hint)
		dnnl_primitive_desc_destroy(hint);
	p->live = 1;
	return 0;
fail:
	if (pd)
		dnnl_primitive_desc_destroy(pd);
	if (hint)
		dnnl_primitive_desc_destroy(hint);
	plan_free(p);
	return -1;
}

/* Looks up or builds the plan for (kind, bias, s) and runs it on ptr. The
 * caller holds the lock. */
static int conv_run(int kind, int bias, const mfr_conv_shape *s, void *const *ptr, mfr_error *e)
{
	if (start(e) < 0)
		return -1;
	key k = conv_key(kind, bias, s);
	plan *p = lookup(&k);
	if (!p->live && conv_plan(p, kind, bias, s, e) < 0)
		return -1;
	return run(p, ptr, e);
}

int mfr_conv2d_forward_cpu_const(float *out, const float *in, const float *w, const float *b,
	const mfr_conv_shape *s, uint64_t version, mfr_error *e)
{
	pthread_mutex_lock(&lock); /* ports: src, weights, [bias,] dst */
	int r = -1;
	if (start(e) < 0)
		goto out;
	key k = conv_key(K_CONV_FWD, b != NULL, s);
	plan *p = lookup(&k);
	if (!p->live && conv_plan(p, K_CONV_FWD, b != NULL, s, e) < 0)
		goto out;
	void *pre[MAX_PORTS] = {0};
	if (p->port[1].reorder && !(pre[1] = const_weights(p, &p->port[1], w, version, e)))
		goto out;
	r = b ? run_pre(p, (void *[]){(void *)in, (void *)w, (void *)b, out}, pre, e)
	      : run_pre(p, (void *[]){(void *)in, (void *)w, out}, pre, e);
out:
	pthread_mutex_unlock(&lock);
	return r;
}

int mfr_conv2d_forward_cpu(float *out, const float *in, const float *w, const float *b,
	const mfr_conv_shape *s, mfr_error *e)
{
	pthread_mutex_lock(&lock); /* ports: src, weights, [bias,] dst */
	int r = b ? conv_run(K_CONV_FWD, 1, s, (void *[]){(void *)in, (void *)w, (void *)b, out}, e)
		  : conv_run(K_CONV_FWD, 0, s, (void *[]){(void *)in, (void *)w, out}, e);
	pthread_mutex_unlock(&lock);
	return r;
}

int mfr_conv2d_backward_cpu(float *din, float *dw, float *db, const float *dout, const float *in,
	const float *w, const mfr_conv_shape *s, mfr_error *e)
{
	int r = 0;
	if (!dw && db) /* oneDNN makes db only together with dw: a plain sum is all it takes */
		mfr_conv2d_backward_ref(NULL, NULL, db, dout, in, w, s);
	pthread_mutex_lock(&lock);
	if (din)
		r = conv_run(K_CONV_BWD_DATA, 0, s, (void *[]){(void *)dout, (void *)w, din}, e);
	if (r == 0 && dw)
		r = conv_run(K_CONV_BWD_WEIGHTS, db != NULL, s,
			(void *[]){(void *)dout, (void *)in, dw, db}, e);
	pthread_mutex_unlock(&lock);
	return r;
}

/* ---- inference in the caller's layouts (mfr_cpu_block) ---- */

static int block_size = -1; /* mfr_cpu_block's answer, once asked */

/* An activation tensor (n,c,h,w) in layout blk: NCHW (0) or nChw<blk>c. */
static void act_md(dnnl_memory_desc_t *md, int n, int c, int h, int w, int blk)
{
	dnnl_dims_t d = {n, c, h, w};
	dnnl_memory_desc_init_by_tag(md, 4, d, dnnl_f32,
		blk == 16 ? dnnl_nChw16c : blk == 8 ? dnnl_nChw8c : dnnl_nchw);
}

/* WINOGRAD. A 3x3 stride-1 convolution of channel counts that are multiples
 * of 16 runs on Winograd's algorithm where oneDNN has a kernel for it (its
 * AVX-512 f32 kernels, F(2x2,3x3) and F(4x4,3x3); elsewhere it answers
 * "unimplemented" and the direct kernel runs). Fewer multiplications for the
 * same result up to float rounding of the same order as the direct
 * kernel's: against the float64-accumulating reference, iresnet18's
 * embedding at batch 1 is off by 1.7e-5 (direct: 1.0e-5) with |y| up to
 * 11.5, iresnet50's by 0.15 (direct: 0.12) with |y| up to 6.1e4. Measured
 * on iresnet50 (2-core AVX-512 Xeon, process CPU time per forward, the
 * blocked inference path): batch 1 on one thread 77.5 ms against 94.4
 * direct, batch 32 on two 2.3 s against 3.0-3.5 s. */

/* Fills the free slot p with a forward convolution reading src and writing
 * dst in the caller's layouts k->src_block and k->dst_block, so that a
 * network kept in oneDNN's layout pays no reorders. Should no optimised
 * kernel take those layouts (oneDNN would answer with its reference
 * convolution, ~100x slower: grouped convolutions with few channels per
 * group in a blocked layout, for one), the primitive picks its own and the
 * ports reorder, as K_CONV_FWD does. With k->sum, dst += the convolution:
 * oneDNN's sum post-op in place, or on that fallback a temporary and a
 * reorder that accumulates (P_ACC). */
static int conv_layout_plan(plan *p, const key *k, const mfr_conv_shape *s, mfr_error *e)
{
	dnnl_memory_desc_t src, wei, bia, dst, asrc, awei, abia, adst;
	dnnl_convolution_desc_t cd;
	dnnl_primitive_desc_t pd = NULL;
	dnnl_primitive_attr_t attr = NULL;
	dnnl_post_ops_t po = NULL;
	dnnl_dims_t strides = {s->sh, s->sw}, pad = {s->ph, s->pw};
	conv_mds(s, &src, &wei, &bia, &dst, 0);
	conv_mds(s, &asrc, &awei, &abia, &adst, 1);
	act_md(&src, s->n, s->ci, s->h, s->w, k->src_block);
	act_md(&dst, s->n, s->co, s->ho, s->wo, k->dst_block);
	MFR_DNNL_CHECK(dnnl_primitive_attr_create(&attr));
	if (k->sum) {
		MFR_DNNL_CHECK(dnnl_post_ops_create(&po));
		MFR_DNNL_CHECK(dnnl_post_ops_append_sum(po, 1.0f));
		MFR_DNNL_CHECK(dnnl_primitive_attr_set_post_ops(attr, po));
	}
	/* Tried in order until one gives an optimised kernel: Winograd (see
	 * WINOGRAD), direct in the caller's layouts, direct in oneDNN's own. */
	int wino = s->kh == 3 && s->kw == 3 && s->sh == 1 && s->sw == 1 && s->groups == 1 && s->ci % 16 == 0 &&
		s->co % 16 == 0;
	int own = 0; /* 1: the primitive's own activation layouts (the fallback) */
	for (int try = !wino; try < 3; try++) {
		own = try == 2;
		MFR_DNNL_CHECK(dnnl_convolution_forward_desc_init(&cd,
			try == 0 ? dnnl_forward_inference : dnnl_forward_training,
			try == 0 ? dnnl_convolution_winograd : dnnl_convolution_direct,
			own || !k->src_block ? &asrc : &src, &awei, k->bias ? &abia : NULL, own ? &adst : &dst,
			strides, pad, pad));
		dnnl_status_t st = dnnl_primitive_desc_create(&pd, &cd, own ? NULL : attr, engine, NULL);
		if (st == dnnl_unimplemented && try < 2)
			continue;
		MFR_DNNL_CHECK(st);
		const char *impl = "";
		MFR_DNNL_CHECK(dnnl_primitive_desc_query(pd, dnnl_query_impl_info_str, 0, &impl));
		if (own || strncmp(impl, "ref", 3) != 0)
			break;
		dnnl_primitive_desc_destroy(pd);
		pd = NULL;
	}
	MFR_DNNL_CHECK(dnnl_primitive_create(&p->prim, pd));
	if (add_port(p, pd, DNNL_ARG_SRC, P_IN, &src, e) || add_port(p, pd, DNNL_ARG_WEIGHTS, P_IN, &wei, e) ||
		(k->bias && add_port(p, pd, DNNL_ARG_BIAS, P_IN, &bia, e)) ||
		add_port(p, pd, DNNL_ARG_DST, !k->sum ? P_OUT : own ? P_ACC : P_SUM, &dst, e))
		goto fail;
	dnnl_primitive_desc_destroy(pd);
	dnnl_primitive_attr_destroy(attr);
	if (po)
		dnnl_post_ops_destroy(po);
	p->live = 1;
	return 0;
fail:
	if (pd)
		dnnl_primitive_desc_destroy(pd);
	if (attr)
		dnnl_primitive_attr_destroy(attr);
	if (po)
		dnnl_post_ops_destroy(po);
	plan_free(p);
	return -1;
}

int mfr_cpu_block(void)
{
	pthread_mutex_lock(&lock);
	if (block_size < 0) {
		/* Ask oneDNN which layout it wants for a typical 3x3 convolution
		 * (iresnet's 64@56): its answer follows the CPU (16 lanes with
		 * AVX-512, 8 with AVX2). Any failure means plain. Asked as
		 * forward_training, like every convolution here: for
		 * forward_inference oneDNN 2.6 answers plain (its gemm kernel),
		 * which measured slower. */
		dnnl_memory_desc_t src, wei, bia, dst, b16, b8;
		dnnl_convolution_desc_t cd;
		dnnl_primitive_desc_t pd = NULL;
		mfr_conv_shape s = {.n = 1, .ci = 64, .h = 56, .w = 56, .co = 64, .kh = 3, .kw = 3, .sh = 1, .sw = 1,
			.ph = 1, .pw = 1, .groups = 1};
		mfr_error err, *e = &err;
		block_size = 0;
		mfr_conv_shape_init(&s, NULL);
		conv_mds(&s, &src, &wei, &bia, &dst, 1);
		act_md(&b16, 1, 64, 56, 56, 16);
		act_md(&b8, 1, 64, 56, 56, 8);
		if (start(e) < 0)
			goto fail;
		MFR_DNNL_CHECK(dnnl_convolution_forward_desc_init(&cd, dnnl_forward_training,
			dnnl_convolution_direct, &src, &wei, NULL, &dst, (dnnl_dims_t){1, 1}, (dnnl_dims_t){1, 1},
			(dnnl_dims_t){1, 1}));
		MFR_DNNL_CHECK(dnnl_primitive_desc_create(&pd, &cd, NULL, engine, NULL));
		const dnnl_memory_desc_t *want = dnnl_primitive_desc_query_md(pd, dnnl_query_dst_md, 0);
		block_size = dnnl_memory_desc_equal(want, &b16) ? 16 : dnnl_memory_desc_equal(want, &b8) ? 8 : 0;
	fail:
		if (pd)
			dnnl_primitive_desc_destroy(pd);
	}
	pthread_mutex_unlock(&lock);
	return block_size;
}

int mfr_conv2d_forward_cpu_layout(float *out, int out_block, const float *in, int in_block, const float *w,
	const float *b, const mfr_conv_shape *s, int accumulate, uint64_t version, mfr_error *e)
{
	pthread_mutex_lock(&lock); /* ports: src, weights, [bias,] dst */
	int r = -1;
	if (start(e) < 0)
		goto out;
	key k = conv_key(K_CONV_LAYOUT, b != NULL, s);
	k.blocked = 0;
	k.src_block = in_block, k.dst_block = out_block, k.sum = accumulate != 0;
	plan *p = lookup(&k);
	if (!p->live && conv_layout_plan(p, &k, s, e) < 0)
		goto out;
	void *pre[MAX_PORTS] = {0};
	if (p->port[1].reorder && !(pre[1] = const_weights(p, &p->port[1], w, version, e)))
		goto out;
	r = b ? run_pre(p, (void *[]){(void *)in, (void *)w, (void *)b, out}, pre, e)
	      : run_pre(p, (void *[]){(void *)in, (void *)w, out}, pre, e);
out:
	pthread_mutex_unlock(&lock);
	return r;
}

int mfr_cpu_reorder(float *out, int out_block, const float *in, int in_block, int n, int c, int h, int w,
	mfr_error *e)
{
	dnnl_primitive_desc_t pd = NULL;
	plan *p = NULL;
	pthread_mutex_lock(&lock);
	int r = -1;
	if (start(e) < 0)
		goto fail;
	key k;
	memset(&k, 0, sizeof k);
	k.kind = K_REORDER, k.threads = omp_get_max_threads();
	k.n = n, k.ci = c, k.h = h, k.w = w, k.src_block = in_block, k.dst_block = out_block;
	p = lookup(&k);
	if (!p->live) {
		dnnl_memory_desc_t src, dst;
		act_md(&src, n, c, h, w, in_block);
		act_md(&dst, n, c, h, w, out_block);
		MFR_DNNL_CHECK(dnnl_reorder_primitive_desc_create(&pd, &src, engine, &dst, engine, NULL));
		MFR_DNNL_CHECK(dnnl_primitive_create(&p->prim, pd));
		if (add_port(p, pd, DNNL_ARG_FROM, P_IN, &src, e) || add_port(p, pd, DNNL_ARG_TO, P_OUT, &dst, e))
			goto fail;
		p->live = 1;
	}
	r = run(p, (void *[]){(void *)in, out}, e);
fail:
	if (p && !p->live)
		plan_free(p);
	if (pd)
		dnnl_primitive_desc_destroy(pd);
	pthread_mutex_unlock(&lock);
	return r;
}

/* ---- linear, as matmul ---- */

/* A row-major (rows, cols) matrix, or its transpose when t (the same memory
 * read as (cols, rows) with strides (1, cols)). */
static void mat(dnnl_memory_desc_t *md, int rows, int cols, int t)
{
	dnnl_dims_t d = {t ? cols : rows, t ? rows : cols}, st = {t ? 1 : cols, t ? cols : 1};
	dnnl_memory_desc_init_by_strides(md, 2, d, dnnl_f32, st);
}

/* Fills the free slot p with a matmul dst (m,k) (=, or += with acc) = a @ b,
 * a (m,l) and b (l,k) described by amd, bmd; with bias (1,k) when bias. */
static int matmul_plan(plan *p, const dnnl_memory_desc_t *amd, const dnnl_memory_desc_t *bmd,
	int bias, const dnnl_memory_desc_t *dmd, int acc, mfr_error *e)
{
	dnnl_matmul_desc_t md;
	dnnl_memory_desc_t bias_md;
	dnnl_primitive_attr_t attr = NULL;
	dnnl_post_ops_t po = NULL;
	dnnl_primitive_desc_t pd = NULL;
	mat(&bias_md, 1, (int)dmd->dims[1], 0);
	MFR_DNNL_CHECK(dnnl_matmul_desc_init(&md, amd, bmd, bias ? &bias_md : NULL, dmd));
	MFR_DNNL_CHECK(dnnl_primitive_attr_create(&attr));
	if (acc) {
		MFR_DNNL_CHECK(dnnl_post_ops_create(&po));
		MFR_DNNL_CHECK(dnnl_post_ops_append_sum(po, 1.0f));
		MFR_DNNL_CHECK(dnnl_primitive_attr_set_post_ops(attr, po));
	}
	MFR_DNNL_CHECK(dnnl_primitive_desc_create(&pd, &md, attr, engine, NULL));
	MFR_DNNL_CHECK(dnnl_primitive_create(&p->prim, pd));
	if (add_port(p, pd, DNNL_ARG_SRC, P_IN, amd, e) || add_port(p, pd, DNNL_ARG_WEIGHTS, P_IN, bmd, e) ||
		(bias && add_port(p, pd, DNNL_ARG_BIAS, P_IN, &bias_md, e)) ||
		add_port(p, pd, DNNL_ARG_DST, acc ? P_SUM : P_OUT, dmd, e))
		goto fail;
	dnnl_primitive_desc_destroy(pd);
	dnnl_primitive_attr_destroy(attr);
	if (po)
		dnnl_post_ops_destroy(po);
	p->live = 1;
	return 0;
fail:
	if (pd)
		dnnl_primitive_desc_destroy(pd);
	if (attr)
		dnnl_primitive_attr_destroy(attr);
	if (po)
		dnnl_post_ops_destroy(po);
	plan_free(p);
	return -1;
}

static int linear_run(int kind, int bias, int n, int ni, int no, void *const *ptr, mfr_error *e)
{
	if (start(e) < 0)
		return -1;
	key k;
	memset(&k, 0, sizeof k);
	k.kind = kind, k.threads = omp_get_max_threads(), k.bias = bias;
	k.n = n, k.ci = ni, k.co = no;
	plan *p = lookup(&k);
	if (!p->live) {
		dnnl_memory_desc_t a, b, d;
		int r;
		if (kind == K_LIN_FWD) { /* out (n,no) = in (n,ni) @ w^T (ni,no) */
			mat(&a, n, ni, 0), mat(&b, no, ni, 1), mat(&d, n, no, 0);
			r = matmul_plan(p, &a, &b, bias, &d, 0, e);
		} else if (kind == K_LIN_BWD_DATA) { /* din (n,ni) += dout (n,no) @ w (no,ni) */
			mat(&a, n, no, 0), mat(&b, no, ni, 0), mat(&d, n, ni, 0);
			r = matmul_plan(p, &a, &b, 0, &d, 1, e);
		} else { /* dw (no,ni) += dout^T (no,n) @ in (n,ni) */
			mat(&a, n, no, 1), mat(&b, n, ni, 0), mat(&d, no, ni, 0);
			r = matmul_plan(p, &a, &b, 0, &d, 1, e);
		}
		if (r < 0)
			return -1;
	}
	return run(p, ptr, e);
}

int mfr_linear_forward_cpu(float *out, const float *in, const float *w, const float *b, int n,
	int ni, int no, mfr_error *e)
{
	assert(n >= 1 && ni >= 1 && no >= 1);
	pthread_mutex_lock(&lock);
	int r = b ? linear_run(K_LIN_FWD, 1, n, ni, no, (void *[]){(void *)in, (void *)w, (void *)b, out}, e)
		  : linear_run(K_LIN_FWD, 0, n, ni, no, (void *[]){(void *)in, (void *)w, out}, e);
	pthread_mutex_unlock(&lock);
	return r;
}

int mfr_linear_backward_cpu(float *din, float *dw, float *db, const float *dout, const float *in,
	const float *w, int n, int ni, int no, mfr_error *e)
{
	assert(n >= 1 && ni >= 1 && no >= 1);
	int r = 0;
	if (db) /* n*no additions: the reference's double sum is as fast as any */
		mfr_linear_backward_ref(NULL, NULL, db, dout, in, w, n, ni, no);
	pthread_mutex_lock(&lock);
	if (din)
		r = linear_run(K_LIN_BWD_DATA, 0, n, ni, no, (void *[]){(void *)dout, (void *)w, din}, e);
	if (r == 0 && dw)
		r = linear_run(K_LIN_BWD_WEIGHTS, 0, n, ni, no, (void *[]){(void *)dout, (void *)in, dw}, e);
	pthread_mutex_unlock(&lock);
	return r;
}

/* ---- threads, identity, cleanup ---- */

void mfr_cpu_set_threads(int n)
{
	omp_set_num_threads(n > 0 ? n : omp_get_num_procs());
}

int mfr_cpu_threads(void) { return omp_get_max_threads(); }

const char *mfr_cpu_backend(void)
{
	static char name[64];
	pthread_mutex_lock(&lock);
	if (!name[0]) {
		const dnnl_version_t *v = dnnl_version();
		snprintf(name, sizeof name, "oneDNN %d.%d.%d", v->major, v->minor, v->patch);
	}
	pthread_mutex_unlock(&lock);
	return name;
}

void mfr_cpu_release(void)
{
	pthread_mutex_lock(&lock);
	for (int i = 0; i < CACHE_SIZE; i++)
		if (cache[i].live)
			plan_free(&cache[i]);
	for (int i = 0; i < nwcache; i++)
		free(wcache[i].buf);
	free(wcache);
	wcache = NULL;
	nwcache = 0;
	free(scratch);
	scratch = NULL;
	scratch_size = 0;
	if (stream)
		dnnl_stream_destroy(stream);
	if (engine)
		dnnl_engine_destroy(engine);
	stream = NULL;
	engine = NULL;
	pthread_mutex_unlock(&lock);
}

#endif /* MFR_HAVE_DNNL */
