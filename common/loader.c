/* loader.c — the trainer's data loader (see loader.h).
 *
 * Work is handed out one sample at a time from a shared counter, so every
 * thread decodes into the batch that is needed soonest. Batches live in a
 * ring of prefetch + 1 slots: the consumer holds one while the network uses
 * it, workers fill the others; a worker may write step t only once the
 * consumer has released step t - slots.
 */
#include "loader.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "record.h" /* defines: mfr_face_decode */
#include "stream.h" /* defines: mfr_index_load, mfr_read_at */

typedef struct worker worker;

typedef struct {
	void *x;           /* batch x img bytes */
	int32_t *labels;
	uint64_t *ids;
	uint64_t step;
	int done;
} slot;

struct mfr_loader {
	mfr_loader_config cfg; /* cfg.paths points at paths: the loader's copies */
	char **paths;
	mfr_index *ix;     /* one per file */
	uint64_t *first;   /* npaths + 1: number of each file's first sample */
	uint64_t n, spe;   /* samples, steps per epoch */
	int64_t classes;
	int half_bits;     /* the bijection works on 2 x half_bits bits */
	size_t img;        /* bytes per image: 3 x H x W floats, or bytes when raw */
	mfr_loader_output out;
	int nslots;
	slot *slots;
	pthread_t *tid;
	worker *ws;
	int nthreads;
	pthread_mutex_t mu;
	pthread_cond_t ready, room;
	uint64_t start, next_work, low; /* low: lowest step the consumer has not released */
	int holding, stop, failed;
	mfr_error err;
};

/* ---- the per-epoch bijection ---- */

static uint64_t feistel(uint64_t key, int hb, uint64_t x)
{
	uint64_t mask = ((uint64_t)1 << hb) - 1, L = x >> hb, R = x & mask;
	for (int r = 0; r < 4; r++) {
		uint64_t t = L ^ (mfr_hash2(key + (uint64_t)r, R) & mask);
		L = R;
		R = t;
	}
	return L << hb | R;
}

uint64_t mfr_loader_order(const mfr_loader *l, uint64_t epoch, uint64_t i)
{
	uint64_t key = mfr_hash2(l->cfg.seed, epoch);
	uint64_t x = i;
	do /* cycle walking: the domain is at most 4x the samples */
		x = feistel(key, l->half_bits, x);
	while (x >= l->n);
	return x;
}

/* ---- opening ---- */

mfr_loader *mfr_loader_open(const mfr_loader_config *cfg, mfr_error *e)
{
	if (cfg->npaths < 1 || cfg->batch < 1 || cfg->ranks < 1 || cfg->threads < 1 || cfg->prefetch < 1) {
		mfr_fail(e, "loader: bad configuration");
		return NULL;
	}
	mfr_loader *l = calloc(1, sizeof *l);
	if (!l || !(l->ix = calloc((size_t)cfg->npaths, sizeof *l->ix)) ||
	    !(l->first = calloc((size_t)cfg->npaths + 1, sizeof *l->first))) {
		mfr_fail(e, "out of memory");
		goto fail;
	}
	l->cfg = *cfg;
	if (!(l->paths = calloc((size_t)cfg->npaths, sizeof *l->paths))) {
		mfr_fail(e, "out of memory");
		goto fail;
	}
	for (int f = 0; f < cfg->npaths; f++)
		if (!(l->paths[f] = strdup(cfg->paths[f]))) {
			mfr_fail(e, "out of memory");
			goto fail;
		}
	l->cfg.paths = (const char *const *)l->paths;
	for (int f = 0; f < cfg->npaths; f++) {
		const char *p = cfg->paths[f];
		mfr_error ie;
		if (mfr_index_load(p, &l->ix[f], &ie) < 0) {
			/* no index (or a stale one): build it, as mfr-cat --index does */
			if (mfr_index_build(p, e) < 0 || mfr_index_load(p, &l->ix[f], e) < 0)
				goto fail;
		}
		if (l->ix[f].schema.kind != MFR_KIND_FACE) {
			mfr_fail(e, "'%s': a %s stream, not FACE records", p, mfr_kind_name(l->ix[f].schema.kind));
			goto fail;
		}
		for (uint64_t i = 0; i < l->ix[f].count; i++) {
			int32_t lab = l->ix[f].entries[i].label;
			if (lab < 0) {
				mfr_fail(e, "'%s': record %llu (id %llu) has no label (-1): training needs every face labelled",
					 p, (unsigned long long)i, (unsigned long long)l->ix[f].entries[i].id);
				goto fail;
			}
			if (lab >= l->classes)
				l->classes = (int64_t)lab + 1;
		}
		l->first[f + 1] = l->first[f] + l->ix[f].count;
	}
	l->n = l->first[cfg->npaths];
	uint64_t G = (uint64_t)cfg->batch * (uint64_t)cfg->ranks;
	l->spe = l->n / G;
	if (l->spe == 0) {
		mfr_fail(e, "%llu faces are fewer than one global batch (%d per rank x %d ranks)", (unsigned long long)l->n,
			 cfg->batch, cfg->ranks);
		goto fail;
	}
	while (((uint64_t)1 << (2 * l->half_bits)) < l->n)
		l->half_bits++;
	if (l->half_bits == 0)
		l->half_bits = 1;
	l->img = (size_t)3 * cfg->input.width * cfg->input.height * sizeof(float);
	return l;
fail:
	mfr_loader_close(l);
	return NULL;
}

void mfr_loader_set_output(mfr_loader *l, const mfr_loader_output *o)
{
	l->out = *o;
	l->img = (size_t)3 * l->cfg.input.width * l->cfg.input.height * (o->raw ? 1 : sizeof(float));
}

uint64_t mfr_loader_samples(const mfr_loader *l) { return l->n; }
int64_t mfr_loader_classes(const mfr_loader *l) { return l->classes; }
uint64_t mfr_loader_steps_per_epoch(const mfr_loader *l) { return l->spe; }

/* ---- workers ---- */

struct worker {
	mfr_loader *l;
	FILE **files;
	mfr_jpeg *jpeg;
	uint8_t *buf;
	size_t room;
};

/* Fills sample k of the batch of step t into slot s. */
static int load_one(worker *w, uint64_t t, int k, slot *s, mfr_error *e)
{
	mfr_loader *l = w->l;
	uint64_t epoch = t / l->spe, pos = t % l->spe;
	uint64_t i = pos * l->cfg.batch * l->cfg.ranks + (uint64_t)l->cfg.rank * l->cfg.batch + (uint64_t)k;
	uint64_t g = mfr_loader_order(l, epoch, i);
	int f = 0;
	while (g >= l->first[f + 1])
		f++;
	const mfr_index_entry *en = &l->ix[f].entries[g - l->first[f]];
	const char *path = l->cfg.paths[f];
	if (!w->files[f] && !(w->files[f] = fopen(path, "rb")))
		return mfr_fail(e, "'%s': cannot open for reading", path);
	uint32_t size;
	mfr_face face;
	uint32_t flags;
	int flip = l->cfg.flip && (mfr_hash2(mfr_hash2(l->cfg.seed ^ 0x466c6970ull, epoch), g) & 1);
	if (mfr_read_at(w->files[f], path, en->offset, MFR_DEFAULT_CAP, &w->buf, &w->room, &size, e) < 0)
		return -1;
	mfr_error fe;
	if (mfr_face_decode(w->buf, size, &face, &fe) < 0 ||
	    mfr_face_to_input(w->jpeg, &face, &l->cfg.input, flip, l->cfg.hook, l->cfg.hook_ctx, epoch, l->out.raw,
			      (char *)s->x + (size_t)k * l->img, &flags, &fe) < 0)
		return mfr_fail(e, "'%s': record %llu at byte %llu: %s", path, (unsigned long long)(g - l->first[f]),
				(unsigned long long)en->offset, fe.msg);
	s->labels[k] = face.label;
	s->ids[k] = face.id;
	return 0;
}

static void *work(void *arg)
{
	worker *w = arg;
	mfr_loader *l = w->l;
	mfr_error e;
	pthread_mutex_lock(&l->mu);
	for (;;) {
		if (l->stop || l->failed)
			break;
		uint64_t u = l->next_work++;
		uint64_t t = l->start + u / (uint64_t)l->cfg.batch;
		int k = (int)(u % (uint64_t)l->cfg.batch);
		while (!l->stop && !l->failed && t >= l->low + (uint64_t)l->nslots)
			pthread_cond_wait(&l->room, &l->mu);
		if (l->stop || l->failed)
			break;
		slot *s = &l->slots[t % (uint64_t)l->nslots];
		if (s->step != t) {
			s->step = t;
			s->done = 0;
		}
		pthread_mutex_unlock(&l->mu);
		int rc = load_one(w, t, k, s, &e);
		pthread_mutex_lock(&l->mu);
		if (rc < 0) {
			if (!l->failed) {
				l->failed = 1;
				l->err = e;
			}
			pthread_cond_broadcast(&l->ready);
			pthread_cond_broadcast(&l->room);
			break;
		}
		if (++s->done == l->cfg.batch)
			pthread_cond_broadcast(&l->ready);
	}
	pthread_mutex_unlock(&l->mu);
	return NULL;
}

int mfr_loader_start(mfr_loader *l, uint64_t step, mfr_error *e)
{
	l->nslots = l->cfg.prefetch + 1;
	if (!(l->slots = calloc((size_t)l->nslots, sizeof *l->slots)) ||
	    !(l->tid = calloc((size_t)l->cfg.threads, sizeof *l->tid)))
		return mfr_fail(e, "out of memory");
	for (int i = 0; i < l->nslots; i++) {
		slot *s = &l->slots[i];
		s->step = UINT64_MAX;
		size_t xb = l->img * (size_t)l->cfg.batch;
		if (l->out.alloc ? !(s->x = l->out.alloc(l->out.ctx, xb, e)) : !(s->x = malloc(xb)))
			return l->out.alloc ? -1 : mfr_fail(e, "out of memory (%d batches of %d images)", l->nslots, l->cfg.batch);
		if (!(s->labels = malloc((size_t)l->cfg.batch * sizeof *s->labels)) || !(s->ids = malloc((size_t)l->cfg.batch * sizeof *s->ids)))
			return mfr_fail(e, "out of memory (%d batches of %d images)", l->nslots, l->cfg.batch);
	}
	l->start = l->low = step;
	pthread_mutex_init(&l->mu, NULL);
	pthread_cond_init(&l->ready, NULL);
	pthread_cond_init(&l->room, NULL);
	worker *ws = l->ws = calloc((size_t)l->cfg.threads, sizeof *ws);
	if (!ws)
		return mfr_fail(e, "out of memory");
	for (int i = 0; i < l->cfg.threads; i++) {
		ws[i].l = l;
		if (!(ws[i].files = calloc((size_t)l->cfg.npaths, sizeof *ws[i].files)) || !(ws[i].jpeg = mfr_jpeg_new(e)))
			return mfr_fail(e, "out of memory");
	}
	for (int i = 0; i < l->cfg.threads; i++) {
		if (pthread_create(&l->tid[i], NULL, work, &ws[i]) != 0)
			return mfr_fail(e, "cannot start loader thread %d", i);
		l->nthreads++;
	}
	return 0;
}

static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

int mfr_loader_next(mfr_loader *l, void **x, int32_t **labels, uint64_t **ids, double *wait_s, mfr_error *e)
{
	double t0 = now();
	pthread_mutex_lock(&l->mu);
	if (l->holding) { /* release the batch handed out last time */
		l->low++;
		l->holding = 0;
		pthread_cond_broadcast(&l->room);
	}
	slot *s = &l->slots[l->low % (uint64_t)l->nslots];
	while (!l->failed && !(s->step == l->low && s->done == l->cfg.batch))
		pthread_cond_wait(&l->ready, &l->mu);
	int rc = 0;
	if (l->failed) {
		*e = l->err;
		rc = -1;
	} else {
		l->holding = 1;
		*x = s->x;
		*labels = s->labels;
		*ids = s->ids;
	}
	pthread_mutex_unlock(&l->mu);
	if (wait_s)
		*wait_s = now() - t0;
	return rc;
}

void mfr_loader_close(mfr_loader *l)
{
	if (!l)
		return;
	if (l->tid) {
		pthread_mutex_lock(&l->mu);
		l->stop = 1;
		pthread_cond_broadcast(&l->room);
		pthread_cond_broadcast(&l->ready);
		pthread_mutex_unlock(&l->mu);
		for (int i = 0; i < l->nthreads; i++)
			pthread_join(l->tid[i], NULL);
		pthread_mutex_destroy(&l->mu);
		pthread_cond_destroy(&l->ready);
		pthread_cond_destroy(&l->room);
	}
	if (l->ws)
		for (int i = 0; i < l->cfg.threads; i++) {
			for (int f = 0; l->ws[i].files && f < l->cfg.npaths; f++)
				if (l->ws[i].files[f])
					fclose(l->ws[i].files[f]);
			free(l->ws[i].files);
			mfr_jpeg_free(l->ws[i].jpeg);
			free(l->ws[i].buf);
		}
	free(l->ws);
	for (int i = 0; l->slots && i < l->nslots; i++) {
		if (l->out.release)
			l->out.release(l->out.ctx, l->slots[i].x);
		else
			free(l->slots[i].x);
		free(l->slots[i].labels), free(l->slots[i].ids);
	}
	free(l->slots);
	free(l->tid);
	if (l->ix)
		for (int f = 0; f < l->cfg.npaths; f++)
			mfr_index_free(&l->ix[f]);
	free(l->ix);
	for (int f = 0; l->paths && f < l->cfg.npaths; f++)
		free(l->paths[f]);
	free(l->paths);
	free(l->first);
	free(l);
}
