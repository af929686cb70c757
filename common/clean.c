/* clean.c — class centres, intra-class decisions, the blocked centre-pair
 * search and capped union-find behind mfr-clean-intra and mfr-merge-inter
 * (contracts in clean.h). Not here: option parsing, reports and output
 * streams, which are the tools' business. */
#include "clean.h" /* defines: mfr_passes, mfr_centres, mfr_intra_*, mfr_pair_search, mfr_uf */

#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "gemm.h"   /* defines: mfr_sgemm, mfr_gemm_set_threads */
#include "qgemm.h"  /* defines: mfr_qgemm_s8, mfr_qgemm_fast */
#include "record.h" /* defines: mfr_embedding_decode, mfr_record_ids */

/* ---- passes ---- */

void mfr_passes_init(mfr_passes *p, const char *const *paths, int n)
{
	*p = (mfr_passes){.paths = paths, .n = n};
	int all_files = n > 0;
	for (int i = 0; i < n; i++) {
		struct stat st;
		if (strcmp(paths[i], "-") == 0 || stat(paths[i], &st) < 0 || !S_ISREG(st.st_mode))
			all_files = 0;
	}
	p->spooling = !all_files;
}

static int pass_end(mfr_passes *p, mfr_error *e)
{
	mfr_reader_close(p->r);
	p->r = NULL;
	if (p->pass == 1) {
		p->records = p->seen;
		p->idsum = p->seensum;
		if (p->sw) {
			mfr_writer *w = p->sw;
			p->sw = NULL;
			if (mfr_writer_close(w, e) < 0)
				return mfr_fail(e, "spool file '%s': %s", p->spool, e->msg);
		}
		return 0;
	}
	if (p->seen != p->records || p->seensum != p->idsum)
		return mfr_fail(e, "'%s': the input changed between passes (%llu records, then %llu)",
				p->spooling ? p->spool : p->paths[0], (unsigned long long)p->records,
				(unsigned long long)p->seen);
	return 0;
}

int mfr_passes_begin(mfr_passes *p, int want_meta, mfr_error *e)
{
	if (p->r) {
		mfr_reader_close(p->r);
		p->r = NULL;
	}
	p->pass++;
	p->seen = p->seensum = 0;
	p->want_meta = want_meta;
	if (p->pass > 1 && p->spooling) {
		const char *sp = p->spool;
		p->r = mfr_reader_open(&sp, 1, 0, want_meta, e);
		return p->r ? 0 : -1;
	}
	/* the spool needs the META records even when this pass does not */
	p->r = mfr_reader_open(p->paths, p->n, 0, want_meta || (p->pass == 1 && p->spooling), e);
	if (!p->r)
		return -1;
	if (p->pass > 1)
		return 0;
	p->schema = *mfr_reader_schema(p->r);
	const char *name = p->n == 0 || strcmp(p->paths[0], "-") == 0 ? "<stdin>" : p->paths[0];
	if (p->schema.kind != MFR_KIND_EMBEDDING) {
		mfr_fail(e, "'%s': is a %s stream, not EMBEDDING records", name, mfr_kind_name(p->schema.kind));
		goto fail;
	}
	if (!p->spooling)
		return 0;
	const char *dir = getenv("TMPDIR");
	if (!dir || !*dir)
		dir = "/tmp";
	size_t len = strlen(dir) + 32;
	if (!(p->spool = mfr_malloc(len, e)))
		goto fail;
	snprintf(p->spool, len, "%s/mfr-spool.XXXXXX", dir);
	int fd = mkstemp(p->spool);
	if (fd < 0) {
		mfr_fail(e, "cannot create a spool file in '%s': %s (set TMPDIR)", dir, strerror(errno));
		free(p->spool);
		p->spool = NULL;
		goto fail;
	}
	close(fd);
	if (mfr_temp_register(p->spool, e) < 0 ||
	    !(p->sw = mfr_writer_open(p->spool, &p->schema, NULL, 0, NULL, 0, e)))
		goto fail;
	return 0;
fail:
	mfr_reader_close(p->r);
	p->r = NULL;
	return -1;
}

int mfr_passes_next(mfr_passes *p, mfr_record *rec, mfr_error *e)
{
	for (;;) {
		int got = mfr_reader_next(p->r, rec, e);
		if (got < 0)
			return -1;
		if (got == 0)
			return pass_end(p, e) < 0 ? -1 : 0;
		if (p->sw && mfr_writer_put(p->sw, rec->type, rec->data, rec->size, e) < 0)
			return mfr_fail(e, "spool file '%s': %s", p->spool, e->msg);
		if (rec->type == MFR_REC_META) {
			if (!p->want_meta)
				continue;
			return 1;
		}
		uint64_t id;
		int32_t label;
		uint32_t flags;
		if (mfr_record_ids(rec->data, rec->size, &id, &label, &flags, e) < 0)
			return mfr_fail(e, "'%s': bad record %llu at byte %llu: %s", rec->path,
					(unsigned long long)rec->number, (unsigned long long)rec->offset, e->msg);
		p->seensum += mfr_hash2(id, p->seen);
		p->seen++;
		return 1;
	}
}

void mfr_passes_close(mfr_passes *p)
{
	if (p->r)
		mfr_reader_close(p->r);
	if (p->sw)
		mfr_writer_abort(p->sw);
	if (p->spool) {
		unlink(p->spool);
		mfr_temp_forget(p->spool);
		free(p->spool);
	}
	p->r = NULL;
	p->sw = NULL;
	p->spool = NULL;
}

/* ---- centres ---- */

void mfr_centres_init(mfr_centres *cs, uint32_t dim)
{
	*cs = (mfr_centres){.dim = dim};
	mfr_map_init(&cs->map);
}

void mfr_centres_free(mfr_centres *cs)
{
	free(cs->labels);
	free(cs->count);
	free(cs->c);
	mfr_map_free(&cs->map);
	*cs = (mfr_centres){0};
}

int64_t mfr_centres_find(const mfr_centres *cs, int32_t label)
{
	if (label < 0)
		return -1;
	uint64_t *v = mfr_map_get(&cs->map, (uint64_t)label);
	return v ? (int64_t)*v : -1;
}

int mfr_centres_add(mfr_centres *cs, int32_t label, const float *v, mfr_error *e)
{
	int inserted;
	uint64_t *slot = mfr_map_put(&cs->map, (uint64_t)(uint32_t)label, &inserted, e);
	if (!slot)
		return -1;
	if (inserted) {
		if (cs->n == cs->room) {
			size_t room = cs->room ? cs->room * 2 : 256;
			int32_t *l = mfr_realloc(cs->labels, room * sizeof *l, e);
			if (!l)
				return -1;
			cs->labels = l;
			uint64_t *c = mfr_realloc(cs->count, room * sizeof *c, e);
			if (!c)
				return -1;
			cs->count = c;
			float *f = mfr_realloc(cs->c, room * cs->dim * sizeof *f, e);
			if (!f)
				return -1;
			cs->c = f;
			cs->room = room;
		}
		*slot = cs->n;
		cs->labels[cs->n] = label;
		cs->count[cs->n] = 0;
		memset(cs->c + cs->n * cs->dim, 0, cs->dim * sizeof *cs->c);
		cs->n++;
	}
	size_t k = (size_t)*slot;
	float *s = cs->c + k * cs->dim;
	for (uint32_t i = 0; i < cs->dim; i++)
		s[i] += v[i];
	cs->count[k]++;
	return 0;
}

static const int32_t *sort_labels;
static int by_label(const void *a, const void *b)
{
	int32_t x = sort_labels[*(const uint32_t *)a], y = sort_labels[*(const uint32_t *)b];
	return (x > y) - (x < y);
}

int mfr_centres_finish(mfr_centres *cs, mfr_error *e)
{
	size_t n = cs->n, d = cs->dim;
	uint32_t *ord = mfr_malloc((n ? n : 1) * sizeof *ord, e);
	int32_t *l = mfr_malloc((n ? n : 1) * sizeof *l, e);
	uint64_t *cnt = mfr_malloc((n ? n : 1) * sizeof *cnt, e);
	float *c = mfr_malloc((n ? n : 1) * d * sizeof *c, e);
	if (!ord || !l || !cnt || !c)
		goto fail;
	for (size_t k = 0; k < n; k++)
		ord[k] = (uint32_t)k;
	sort_labels = cs->labels;
	qsort(ord, n, sizeof *ord, by_label);
	mfr_map_free(&cs->map);
	mfr_map_init(&cs->map);
	for (size_t k = 0; k < n; k++) {
		l[k] = cs->labels[ord[k]];
		cnt[k] = cs->count[ord[k]];
		memcpy(c + k * d, cs->c + ord[k] * d, d * sizeof *c);
		mfr_unit(c + k * d, (uint32_t)d);
		uint64_t *slot = mfr_map_put(&cs->map, (uint64_t)l[k], NULL, e);
		if (!slot)
			goto fail;
		*slot = k;
	}
	free(ord);
	free(cs->labels);
	free(cs->count);
	free(cs->c);
	cs->labels = l;
	cs->count = cnt;
	cs->c = c;
	cs->room = n;
	return 0;
fail:
	free(ord);
	free(l);
	free(cnt);
	free(c);
	return -1;
}

void mfr_unit(float *v, uint32_t d)
{
	double s = 0;
	for (uint32_t i = 0; i < d; i++)
		s += (double)v[i] * v[i];
	if (s <= 0)
		return;
	double inv = 1.0 / sqrt(s);
	for (uint32_t i = 0; i < d; i++)
		v[i] = (float)(v[i] * inv);
}

float mfr_dot(const float *a, const float *b, uint32_t d)
{
	double s = 0;
	for (uint32_t i = 0; i < d; i++)
		s += (double)a[i] * b[i];
	return (float)s;
}

/* Decodes rec's embedding into v (dim floats) and makes it unit. */
static int unit_embedding(const mfr_passes *p, const mfr_record *rec, float *v, int32_t *label, mfr_error *e)
{
	mfr_embedding emb = {.vec = v};
	if (mfr_embedding_decode(rec->data, rec->size, &p->schema, &emb, e) < 0)
		return mfr_fail(e, "'%s': bad record %llu at byte %llu: %s", rec->path, (unsigned long long)rec->number,
				(unsigned long long)rec->offset, e->msg);
	mfr_unit(v, p->schema.dim);
	*label = emb.label;
	return 0;
}

int mfr_centres_build(mfr_passes *p, mfr_centres *cs, mfr_error *e)
{
	if (mfr_passes_begin(p, 0, e) < 0)
		return -1;
	mfr_centres_init(cs, p->schema.dim);
	float *v = mfr_malloc(p->schema.dim * sizeof *v, e);
	if (!v)
		return -1;
	mfr_record rec;
	int got;
	int32_t label;
	while ((got = mfr_passes_next(p, &rec, e)) == 1) {
		if (unit_embedding(p, &rec, v, &label, e) < 0 || (label >= 0 && mfr_centres_add(cs, label, v, e) < 0)) {
			got = -1;
			break;
		}
	}
	free(v);
	if (got < 0 || mfr_centres_finish(cs, e) < 0) {
		mfr_centres_free(cs);
		return -1;
	}
	return 0;
}

/* ---- intra-class decisions ---- */

const char *mfr_drop_reason(int why)
{
	switch (why) {
	case MFR_KEEP: return "kept";
	case MFR_DROP_THRESHOLD: return "threshold";
	case MFR_DROP_PERCENTILE: return "percentile";
	case MFR_DROP_SMALL: return "small-class";
	case MFR_DROP_UNLABELLED: return "unlabelled";
	}
	return "unknown";
}

static int by_float(const void *a, const void *b)
{
	float x = *(const float *)a, y = *(const float *)b;
	return (x > y) - (x < y);
}

int mfr_intra_decide(const mfr_intra_opts *o, const float *sim, const int32_t *cls, size_t n,
		     size_t nclass, uint8_t *why, mfr_error *e)
{
	for (size_t i = 0; i < n; i++) {
		if (cls[i] < 0)
			why[i] = o->drop_unlabelled ? MFR_DROP_UNLABELLED : MFR_KEEP;
		else
			why[i] = o->use_threshold && !(sim[i] >= o->threshold) ? MFR_DROP_THRESHOLD : MFR_KEEP;
	}
	if (!o->use_percentile && o->min_images <= 1)
		return 0;
	/* members grouped by class: start[k] .. start[k+1] in mem[] (counting sort) */
	size_t *start = calloc(nclass + 1, sizeof *start);
	uint32_t *mem = malloc((n ? n : 1) * sizeof *mem);
	float *tmp = NULL;
	if (!start || !mem)
		goto oom;
	for (size_t i = 0; i < n; i++)
		if (cls[i] >= 0)
			start[cls[i] + 1]++;
	size_t largest = 0;
	for (size_t k = 0; k < nclass; k++) {
		if (start[k + 1] > largest)
			largest = start[k + 1];
		start[k + 1] += start[k];
	}
	for (size_t i = 0; i < n; i++)
		if (cls[i] >= 0)
			mem[start[cls[i]]++] = (uint32_t)i;
	for (size_t k = nclass; k > 0; k--)
		start[k] = start[k - 1];
	start[0] = 0;
	if (!(tmp = malloc((largest ? largest : 1) * sizeof *tmp)))
		goto oom;
	for (size_t k = 0; k < nclass; k++) {
		size_t m = start[k + 1] - start[k];
		const uint32_t *ms = mem + start[k];
		if (o->use_percentile && m > 0) {
			for (size_t j = 0; j < m; j++)
				tmp[j] = sim[ms[j]];
			qsort(tmp, m, sizeof *tmp, by_float);
			size_t rank = (size_t)floor((double)m * o->percentile / 100.0);
			if (rank < m)
				for (size_t j = 0; j < m; j++)
					if (sim[ms[j]] < tmp[rank] && why[ms[j]] == MFR_KEEP)
						why[ms[j]] = MFR_DROP_PERCENTILE;
		}
		uint64_t kept = 0;
		for (size_t j = 0; j < m; j++)
			kept += why[ms[j]] == MFR_KEEP;
		if (kept >= o->min_images || kept == m)
			continue;
		for (size_t j = 0; j < m; j++) {
			if (o->small_policy == MFR_SMALL_KEEP)
				why[ms[j]] = MFR_KEEP;
			else if (o->small_policy == MFR_SMALL_DROP)
				why[ms[j]] = MFR_DROP_SMALL;
		}
	}
	free(start);
	free(mem);
	free(tmp);
	return 0;
oom:
	free(start);
	free(mem);
	free(tmp);
	return mfr_fail(e, "out of memory deciding %zu records", n);
}

/* One pass: similarity of every record to its class centre, and its class. */
static int sims_pass(mfr_passes *p, const mfr_centres *cs, float *sim, int32_t *cls, float *v, mfr_error *e)
{
	if (mfr_passes_begin(p, 0, e) < 0)
		return -1;
	mfr_record rec;
	int got;
	size_t i = 0;
	int32_t label;
	while ((got = mfr_passes_next(p, &rec, e)) == 1) {
		if (i >= p->records)
			return mfr_fail(e, "'%s': the input changed between passes", rec.path);
		if (unit_embedding(p, &rec, v, &label, e) < 0)
			return -1;
		int64_t k = mfr_centres_find(cs, label);
		cls[i] = (int32_t)k;
		sim[i] = k >= 0 ? mfr_dot(v, cs->c + (size_t)k * cs->dim, cs->dim) : NAN;
		i++;
	}
	return got;
}

/* One pass: the centres of the kept members; a class that kept nothing keeps
 * its previous centre, so its members are judged against it again. */
static int recentre_pass(mfr_passes *p, mfr_centres *cs, const uint8_t *why, float *v, mfr_error *e)
{
	size_t d = cs->dim;
	float *sum = calloc(cs->n * d + 1, sizeof *sum);
	uint64_t *cnt = calloc(cs->n + 1, sizeof *cnt);
	if (!sum || !cnt) {
		free(sum);
		free(cnt);
		return mfr_fail(e, "out of memory for %zu centres", cs->n);
	}
	int got = mfr_passes_begin(p, 0, e);
	mfr_record rec;
	size_t i = 0;
	int32_t label;
	while (got == 0 && (got = mfr_passes_next(p, &rec, e)) == 1) {
		got = 0;
		if (i >= p->records) {
			got = mfr_fail(e, "'%s': the input changed between passes", rec.path);
			break;
		}
		if (why[i++] != MFR_KEEP)
			continue;
		if (unit_embedding(p, &rec, v, &label, e) < 0) {
			got = -1;
			break;
		}
		int64_t k = mfr_centres_find(cs, label);
		if (k < 0)
			continue;
		float *s = sum + (size_t)k * d;
		for (size_t j = 0; j < d; j++)
			s[j] += v[j];
		cnt[k]++;
	}
	if (got == 0)
		for (size_t k = 0; k < cs->n; k++)
			if (cnt[k]) {
				mfr_unit(sum + k * d, (uint32_t)d);
				memcpy(cs->c + k * d, sum + k * d, d * sizeof *sum);
			}
	free(sum);
	free(cnt);
	return got;
}

int mfr_intra_run(mfr_passes *p, const mfr_intra_opts *o, mfr_intra_result *res, mfr_error *e)
{
	*res = (mfr_intra_result){0};
	if (mfr_centres_build(p, &res->cs, e) < 0)
		return -1;
	size_t n = p->records;
	if (n >= UINT32_MAX) {
		mfr_centres_free(&res->cs);
		return mfr_fail(e, "%zu records: more than this tool's limit of 2^32-1 in one run", n);
	}
	res->n = n;
	res->classes_in = res->cs.n;
	res->why = malloc(n + 1);
	res->sim = malloc((n + 1) * sizeof *res->sim);
	int32_t *cls = malloc((n + 1) * sizeof *cls);
	uint8_t *prev = malloc(n + 1);
	float *v = malloc(p->schema.dim * sizeof *v);
	int rc = -1;
	if (!res->why || !res->sim || !cls || !prev || !v) {
		mfr_fail(e, "out of memory for %zu records", n);
		goto done;
	}
	for (int round = 1; round <= o->iterations; round++) {
		if (sims_pass(p, &res->cs, res->sim, cls, v, e) < 0 ||
		    mfr_intra_decide(o, res->sim, cls, n, res->cs.n, res->why, e) < 0)
			goto done;
		res->rounds = round;
		if (round > 1) {
			size_t i = 0;
			while (i < n && (prev[i] == MFR_KEEP) == (res->why[i] == MFR_KEEP))
				i++;
			if (i == n) {
				res->stable = 1;
				break;
			}
		}
		if (round == o->iterations)
			break;
		memcpy(prev, res->why, n);
		if (recentre_pass(p, &res->cs, res->why, v, e) < 0)
			goto done;
	}
	uint8_t *alive = calloc(res->cs.n + 1, 1);
	if (!alive) {
		mfr_fail(e, "out of memory");
		goto done;
	}
	for (size_t i = 0; i < n; i++)
		if (cls[i] >= 0 && res->why[i] == MFR_KEEP && !alive[cls[i]]) {
			alive[cls[i]] = 1;
			res->classes_out++;
		}
	free(alive);
	rc = 0;
done:
	free(cls);
	free(prev);
	free(v);
	if (rc < 0)
		mfr_intra_free(res);
	return rc;
}

void mfr_intra_free(mfr_intra_result *res)
{
	free(res->why);
	free(res->sim);
	mfr_centres_free(&res->cs);
	*res = (mfr_intra_result){0};
}

/* ---- pair search ---- */

/* A neighbour is worse than another when its similarity is lower or, on a
 * tie, its index is higher: a total order, so the kept set does not depend on
 * the order candidates arrive in. */
static int worse(float sa, uint32_t ja, float sb, uint32_t jb)
{
	return sa < sb || (sa == sb && ja > jb);
}

/* Offers (s, j) to row i's bounded heap, whose root is its worst entry. */
static void heap_offer(mfr_topk *t, uint32_t i, float s, uint32_t j)
{
	int k = t->k;
	float *hs = t->sim + (size_t)i * k;
	uint32_t *hj = t->nb + (size_t)i * k;
	uint32_t n = t->n_nb[i];
	if (n < (uint32_t)k) {
		uint32_t c = n;
		while (c > 0) {
			uint32_t par = (c - 1) / 2;
			if (!worse(s, j, hs[par], hj[par]))
				break;
			hs[c] = hs[par];
			hj[c] = hj[par];
			c = par;
		}
		hs[c] = s;
		hj[c] = j;
		t->n_nb[i] = n + 1;
		return;
	}
	if (!worse(hs[0], hj[0], s, j))
		return;
	uint32_t c = 0;
	for (;;) {
		uint32_t l = 2 * c + 1, r = l + 1, m = c;
		float ms = s;
		uint32_t mj = j;
		if (l < n && worse(hs[l], hj[l], ms, mj))
			m = l, ms = hs[l], mj = hj[l];
		if (r < n && worse(hs[r], hj[r], ms, mj))
			m = r;
		if (m == c)
			break;
		hs[c] = hs[m];
		hj[c] = hj[m];
		c = m;
	}
	hs[c] = s;
	hj[c] = j;
}

typedef struct {
	uint32_t i, j;
	float s;
} cand;

typedef struct {
	const float *c, *S;
	uint32_t d;
	size_t i0, j0, bi, bj, ldS;
	int diag;
	float lo, threshold;
	size_t r0, r1; /* rows of the tile this worker scans */
	cand *out;
	size_t n, room;
	uint64_t rescored;
	int oom;
} scan_job;

static void *scan_rows(void *arg)
{
	scan_job *w = arg;
	for (size_t r = w->r0; r < w->r1; r++) {
		const float *row = w->S + r * w->ldS;
		size_t c0 = w->diag ? r + 1 : 0;
		for (size_t q = c0; q < w->bj; q++) {
			if (!(row[q] >= w->lo))
				continue;
			uint32_t i = (uint32_t)(w->i0 + r), j = (uint32_t)(w->j0 + q);
			w->rescored++;
			float s = mfr_dot(w->c + (size_t)i * w->d, w->c + (size_t)j * w->d, w->d);
			if (!(s >= w->threshold))
				continue;
			if (w->n == w->room) {
				size_t room = w->room ? w->room * 2 : 1024;
				cand *o = realloc(w->out, room * sizeof *o);
				if (!o) {
					w->oom = 1;
					return NULL;
				}
				w->out = o;
				w->room = room;
			}
			w->out[w->n++] = (cand){i, j, s};
		}
	}
	return NULL;
}

static int nb_order(const void *a, const void *b)
{
	const uint64_t *x = a, *y = b; /* packed: see mfr_pair_search */
	return (*x > *y) - (*x < *y);
}

/* Every row in order: sim descending, index ascending. Similarities are
 * never NaN here (>= threshold); sort on a key built from (sim, index). */
static void sort_rows(mfr_topk *t)
{
	size_t k = (size_t)t->k;
	for (size_t i = 0; i < t->n; i++) {
		uint32_t m = t->n_nb[i];
		uint64_t key[1024];
		for (uint32_t q = 0; q < m; q++) {
			float s = t->sim[i * k + q];
			uint32_t u;
			memcpy(&u, &s, 4);
			u = (u & 0x80000000u) ? ~u : u | 0x80000000u; /* ascending float order as unsigned */
			key[q] = (uint64_t)(~u) << 32 | t->nb[i * k + q];
		}
		qsort(key, m, sizeof *key, nb_order);
		for (uint32_t q = 0; q < m; q++) {
			uint32_t u = ~(uint32_t)(key[q] >> 32);
			u = (u & 0x80000000u) ? u & 0x7fffffffu : ~u;
			memcpy(&t->sim[i * k + q], &u, 4);
			t->nb[i * k + q] = (uint32_t)key[q];
		}
	}
}

/* fn: the tiles' producer (score.h), NULL for mfr_sgemm on the calling
 * thread's GEMM threads. */
static int search_fp32(const float *c, size_t n, uint32_t d, float threshold, size_t block, int threads,
		       mfr_block_fn fn, void *ctx, mfr_topk *t, mfr_error *e)
{
	size_t bs = block < n ? block : (n ? n : 1);
	int rc = -1;
	float *S = malloc(bs * bs * sizeof *S);
	scan_job *jobs = calloc((size_t)threads, sizeof *jobs);
	pthread_t *tid = calloc((size_t)threads, sizeof *tid);
	if (!S || !jobs || !tid) {
		mfr_fail(e, "out of memory for the pair search of %zu centres", n);
		goto done;
	}
	mfr_gemm_set_threads(threads);
	/* The GEMM's float sums differ from mfr_dot's by rounding, at most about
	 * d * 2^-24 for unit rows: candidates within a margin well above that are
	 * rescored exactly, so none at or above the threshold is lost. */
	float lo = threshold - (1e-3f + (float)d * 2.4e-7f);
	for (size_t i0 = 0; i0 < n; i0 += bs) {
		size_t bi = n - i0 < bs ? n - i0 : bs;
		for (size_t j0 = i0; j0 < n; j0 += bs) {
			size_t bj = n - j0 < bs ? n - j0 : bs;
			if (fn) {
				if (fn(ctx, c + i0 * d, (int64_t)bi, c + j0 * d, (int64_t)bj, (int)d, S, (int64_t)bj, e) < 0)
					goto done;
			} else if (mfr_sgemm(0, 1, (int64_t)bi, (int64_t)bj, d, 1.0f, c + i0 * d, d, c + j0 * d, d, 0.0f, S,
					     (int64_t)bj) < 0) {
				mfr_fail(e, "pair search: GEMM of a %zu x %zu tile failed", bi, bj);
				goto done;
			}
			int nt = threads;
			if ((size_t)nt > bi)
				nt = (int)bi;
			for (int w = 0; w < nt; w++) {
				scan_job *j = &jobs[w];
				*j = (scan_job){.c = c, .S = S, .d = d, .i0 = i0, .j0 = j0, .bi = bi, .bj = bj, .ldS = bj,
						.diag = i0 == j0, .lo = lo, .threshold = threshold,
						.r0 = bi * w / nt, .r1 = bi * (w + 1) / nt, .out = j->out, .room = j->room,
						.rescored = j->rescored};
			}
			int started = 0;
			for (int w = 1; w < nt; w++) {
				if (pthread_create(&tid[w], NULL, scan_rows, &jobs[w]) != 0)
					break;
				started = w;
			}
			scan_rows(&jobs[0]);
			for (int w = started + 1; w < nt; w++) /* threads that did not start */
				scan_rows(&jobs[w]);
			for (int w = 1; w <= started; w++)
				pthread_join(tid[w], NULL);
			for (int w = 0; w < nt; w++) {
				if (jobs[w].oom) {
					mfr_fail(e, "out of memory for pair candidates");
					goto done;
				}
				for (size_t q = 0; q < jobs[w].n; q++) {
					cand *x = &jobs[w].out[q];
					heap_offer(t, x->i, x->s, x->j);
					heap_offer(t, x->j, x->s, x->i);
				}
			}
		}
	}
	rc = 0;
done:
	for (int w = 0; jobs && w < threads; w++) {
		t->rescored += jobs[w].rescored;
		free(jobs[w].out);
	}
	free(jobs);
	free(tid);
	free(S);
	return rc;
}

/* ---- int8 search (the bound is argued in clean.h) ---- */

/* Tile side: a 512 x 512 int32 tile is 1 MiB, which stays in a worker's L2
 * while it is scanned; oneDNN's VNNI kernel runs at its full rate from this
 * size up (measured: 512, 1024 and 2048 squares within noise on one core). */
enum { QTILE = 512, CHUNK = 64 };

typedef struct {
	const float *c;
	size_t n, bs, ntile;
	uint32_t d;
	float threshold, lo;
	int8_t *q;              /* n x d */
	float *u, *nrm, *nq, *ex; /* per row: step, |x|, |x~|, |e_x|' (NaN: rescore always) */
	uint64_t tiles;         /* tiles on or above the diagonal */
	atomic_uint_fast64_t next;
	pthread_mutex_t lock;   /* guards t's heaps */
	mfr_topk *t;
} qsearch;

typedef struct {
	qsearch *s;
	size_t r0, r1; /* rows to quantise */
	int32_t *P;
	cand *out;
	size_t n, room;
	uint64_t rescored;
	int failed; /* 1: out of memory, 2: the GEMM failed */
} qworker;

/* Quantises rows r0..r1 (see clean.h): q, u and the norms of the bound. */
static void quantise_rows(qsearch *s, size_t r0, size_t r1)
{
	uint32_t d = s->d;
	for (size_t i = r0; i < r1; i++) {
		const float *x = s->c + i * d;
		int8_t *q = s->q + i * d;
		double m = 0;
		int wild = 0;
		for (uint32_t p = 0; p < d; p++) {
			if (!isfinite(x[p]))
				wild = 1;
			else if (fabs(x[p]) > m)
				m = fabs(x[p]);
		}
		memset(q, 0, d);
		if (!wild && m == 0) { /* exact: x~ = x = 0 */
			s->u[i] = s->nrm[i] = s->nq[i] = s->ex[i] = 0;
			continue;
		}
		if (wild || m < 0x1p-40 || m > 0x1p40) { /* NaN makes every test with this row pass */
			s->u[i] = 0;
			s->nrm[i] = s->nq[i] = s->ex[i] = NAN;
			continue;
		}
		float u = (float)(m / 127);
		double xx = 0, qq = 0, ee = 0;
		for (uint32_t p = 0; p < d; p++) {
			double v = nearbyint(x[p] / (double)u);
			v = v > 127 ? 127 : v < -127 ? -127 : v;
			q[p] = (int8_t)v;
			double err = x[p] - v * u; /* v * u is exact in double */
			xx += (double)x[p] * x[p];
			qq += v * v;
			ee += err * err;
		}
		s->u[i] = u;
		s->nrm[i] = (float)sqrt(xx);
		s->nq[i] = (float)(u * sqrt(qq));
		double ex = sqrt(ee) * (1 + 1e-6) + 1e-5 * sqrt(xx);
		float exf = (float)ex;
		s->ex[i] = (double)exf < ex ? nextafterf(exf, INFINITY) : exf;
	}
}

static void *quantise_thread(void *arg)
{
	qworker *w = arg;
	quantise_rows(w->s, w->r0, w->r1);
	return NULL;
}

/* Scans the bi x bj tile P of rows i0.., columns j0..: each pair that passes
 * both tests below is rescored with mfr_dot and kept when >= threshold. */
static int scan_tile(qworker *w, size_t i0, size_t j0, size_t bi, size_t bj)
{
	qsearch *s = w->s;
	const float *u = s->u, *nrm = s->nrm, *nq = s->nq, *ex = s->ex;
	float lo = s->lo;
	/* A first, integer test per row: with the columns' largest u, |y| and
	 * |e_y|', t(x,y) = lo - |e_x|'|y| - |x~||e_y|' >= num for every column,
	 * so when num > 0 a pair that passes the float test below has
	 * P >= t / (u_x u_y) >= num / (u_x umax). num and the quotient are taken
	 * in double from the stored floats (errors ~1e-16 relative) and lowered
	 * by 1e-9 relative and 1: a bound P must reach. A NaN column or row (a
	 * row rescored always) turns the first test off. */
	float umax = 0, nmax = 0, emax = 0;
	int wild = 0;
	for (size_t q = 0; q < bj; q++) {
		size_t j = j0 + q;
		if (isnan(ex[j]))
			wild = 1;
		else {
			umax = u[j] > umax ? u[j] : umax;
			nmax = nrm[j] > nmax ? nrm[j] : nmax;
			emax = ex[j] > emax ? ex[j] : emax;
		}
	}
	for (size_t r = 0; r < bi; r++) {
		size_t i = i0 + r;
		float ui = u[i], exi = ex[i], nqi = nq[i];
		int32_t L = INT32_MIN;
		if (!wild && !isnan(exi)) {
			double num = (double)lo - (double)exi * nmax - (double)nqi * emax;
			if (num > 0) {
				double den = (double)ui * umax;
				if (den == 0)
					continue; /* P u_x u_y = 0 < t for every column */
				double v = num / den * (1 - 1e-9) - 1;
				L = v >= 0x1p31 ? INT32_MAX : (int32_t)floor(v);
			}
		}
		const int32_t *row = w->P + r * bj;
		size_t c0 = i0 == j0 ? r + 1 : 0;
		for (size_t q0 = c0; q0 < bj; q0 += CHUNK) {
			size_t q1 = bj - q0 < CHUNK ? bj : q0 + CHUNK;
			int hit = 0;
			if (q1 - q0 == CHUNK) {
				for (int x = 0; x < CHUNK; x++) /* a constant trip count: vectorised */
					hit |= row[q0 + x] >= L;
			} else
				hit = 1;
			if (!hit)
				continue;
			for (size_t q = q0; q < q1; q++) {
				if (row[q] < L)
					continue;
				size_t j = j0 + q;
				/* the per-pair bound; NaN (a row rescored always) passes */
				float a = (float)row[q] * (ui * u[j]);
				if (a < lo - exi * nrm[j] - nqi * ex[j])
					continue;
				w->rescored++;
				float sim = mfr_dot(s->c + i * s->d, s->c + j * s->d, s->d);
				if (!(sim >= s->threshold))
					continue;
				if (w->n == w->room) {
					size_t room = w->room ? w->room * 2 : 1024;
					cand *o = realloc(w->out, room * sizeof *o);
					if (!o)
						return -1;
					w->out = o;
					w->room = room;
				}
				w->out[w->n++] = (cand){(uint32_t)i, (uint32_t)j, sim};
			}
		}
	}
	return 0;
}

/* A worker: takes the next tile (row-major over the tiles on or above the
 * diagonal) until none is left; its candidates go into the shared heaps
 * after each tile. The heaps' total order makes the result independent of
 * which worker offers what when. */
static void *search_thread(void *arg)
{
	qworker *w = arg;
	qsearch *s = w->s;
	size_t ti = 0;
	uint64_t base = 0; /* index of tile (ti, ti) */
	for (;;) {
		uint64_t idx = atomic_fetch_add(&s->next, 1);
		if (idx >= s->tiles)
			break;
		while (idx >= base + (s->ntile - ti)) { /* a worker's indices only grow */
			base += s->ntile - ti;
			ti++;
		}
		size_t tj = ti + (size_t)(idx - base);
		size_t i0 = ti * s->bs, j0 = tj * s->bs;
		size_t bi = s->n - i0 < s->bs ? s->n - i0 : s->bs, bj = s->n - j0 < s->bs ? s->n - j0 : s->bs;
		if (mfr_qgemm_s8((int64_t)bi, (int64_t)bj, s->d, s->q + i0 * s->d, s->d, s->q + j0 * s->d, s->d, w->P,
				 (int64_t)bj, 1) < 0)
			w->failed = 2;
		else if (scan_tile(w, i0, j0, bi, bj) < 0)
			w->failed = 1;
		if (w->failed) {
			atomic_store(&s->next, s->tiles); /* the others stop too */
			break;
		}
		if (w->n) {
			pthread_mutex_lock(&s->lock);
			for (size_t q = 0; q < w->n; q++) {
				cand *x = &w->out[q];
				heap_offer(s->t, x->i, x->s, x->j);
				heap_offer(s->t, x->j, x->s, x->i);
			}
			pthread_mutex_unlock(&s->lock);
			w->n = 0;
		}
	}
	return NULL;
}

/* Runs fn on workers 1..nt-1 in threads and on worker 0 here; a worker
 * whose thread did not start runs here too. */
static void run_workers(void *(*fn)(void *), qworker *ws, pthread_t *tid, int nt)
{
	int started = 0;
	for (int w = 1; w < nt; w++) {
		if (pthread_create(&tid[w], NULL, fn, &ws[w]) != 0)
			break;
		started = w;
	}
	fn(&ws[0]);
	for (int w = started + 1; w < nt; w++)
		fn(&ws[w]);
	for (int w = 1; w <= started; w++)
		pthread_join(tid[w], NULL);
}

static int search_int8(const float *c, size_t n, uint32_t d, float threshold, size_t block, int threads,
		       mfr_topk *t, mfr_error *e)
{
	if (d > MFR_QGEMM_MAX_K)
		return mfr_fail(e, "pair search: the int8 search takes at most %d dimensions, not %u", MFR_QGEMM_MAX_K,
				d);
	qsearch s = {.c = c, .n = n, .d = d, .threshold = threshold, .t = t};
	s.bs = block < QTILE ? block : QTILE;
	s.ntile = (n + s.bs - 1) / s.bs;
	s.tiles = (uint64_t)s.ntile * (s.ntile + 1) / 2;
	atomic_init(&s.next, 0);
	/* thr' = thr - 1e-6 (1 + |thr|), rounded down to a float */
	double lo = threshold - 1e-6 * (1 + fabs(threshold));
	s.lo = (float)lo;
	if ((double)s.lo > lo)
		s.lo = nextafterf(s.lo, -INFINITY);
	int nt = threads;
	if ((uint64_t)nt > s.tiles)
		nt = s.tiles ? (int)s.tiles : 1;
	s.q = malloc((size_t)n * d + 1);
	s.u = malloc((n + 1) * sizeof *s.u);
	s.nrm = malloc((n + 1) * sizeof *s.nrm);
	s.nq = malloc((n + 1) * sizeof *s.nq);
	s.ex = malloc((n + 1) * sizeof *s.ex);
	qworker *ws = calloc((size_t)nt, sizeof *ws);
	pthread_t *tid = calloc((size_t)nt, sizeof *tid);
	int rc = -1, locked = 0;
	if (!s.q || !s.u || !s.nrm || !s.nq || !s.ex || !ws || !tid) {
		mfr_fail(e, "out of memory for the int8 pair search of %zu centres", n);
		goto done;
	}
	for (int w = 0; w < nt; w++)
		ws[w] = (qworker){.s = &s, .r0 = n * w / nt, .r1 = n * (w + 1) / nt};
	run_workers(quantise_thread, ws, tid, nt);
	for (int w = 0; w < nt; w++)
		if (!(ws[w].P = malloc(s.bs * s.bs * sizeof *ws[w].P))) {
			mfr_fail(e, "out of memory for the int8 pair search of %zu centres", n);
			goto done;
		}
	if (pthread_mutex_init(&s.lock, NULL) != 0) {
		mfr_fail(e, "pair search: cannot create a lock");
		goto done;
	}
	locked = 1;
	run_workers(search_thread, ws, tid, nt);
	rc = 0;
	for (int w = 0; w < nt; w++) {
		t->rescored += ws[w].rescored;
		if (ws[w].failed && rc == 0)
			rc = ws[w].failed == 1 ? mfr_fail(e, "out of memory for pair candidates")
					       : mfr_fail(e, "pair search: int8 GEMM of a tile failed");
	}
done:
	if (locked)
		pthread_mutex_destroy(&s.lock);
	for (int w = 0; ws && w < nt; w++) {
		free(ws[w].P);
		free(ws[w].out);
	}
	free(ws);
	free(tid);
	free(s.q);
	free(s.u);
	free(s.nrm);
	free(s.nq);
	free(s.ex);
	return rc;
}

/* mfr_pair_search and mfr_pair_search_with (method MFR_SEARCH_BLOCKS, fn
 * not NULL). */
static int pair_search(const float *c, size_t n, uint32_t d, float threshold, int k, size_t block, int threads,
		       int method, mfr_block_fn fn, mfr_bind_fn bind, void *ctx, mfr_topk *t, mfr_error *e)
{
	*t = (mfr_topk){.n = n, .k = k};
	if (k < 1 || k > 1024 || block < 1 || n >= UINT32_MAX || d > INT32_MAX ||
	    (method != MFR_SEARCH_AUTO && method != MFR_SEARCH_FP32 && method != MFR_SEARCH_INT8 &&
	     !(method == MFR_SEARCH_BLOCKS && fn)))
		return mfr_fail(e, "pair search: bad arguments (k %d, block %zu, n %zu, method %d)", k, block, n,
				method);
	if (method == MFR_SEARCH_AUTO)
		method = mfr_qgemm_fast() && d <= MFR_QGEMM_MAX_K ? MFR_SEARCH_INT8 : MFR_SEARCH_FP32;
	t->method = method;
	if (threads <= 0) {
		long nc = sysconf(_SC_NPROCESSORS_ONLN);
		threads = nc > 0 ? (int)nc : 1;
	}
	if (threads > 256)
		threads = 256;
	t->n_nb = calloc(n + 1, sizeof *t->n_nb);
	t->sim = malloc(((size_t)n * k + 1) * sizeof *t->sim);
	t->nb = malloc(((size_t)n * k + 1) * sizeof *t->nb);
	if (!t->n_nb || !t->sim || !t->nb) {
		mfr_topk_free(t);
		return mfr_fail(e, "out of memory for the pair search of %zu centres", n);
	}
	int rc;
	if (method == MFR_SEARCH_BLOCKS) {
		rc = bind ? bind(ctx, c, (int64_t)n, c, (int64_t)n, (int)d, e) : 0;
		if (rc == 0) {
			rc = search_fp32(c, n, d, threshold, block, threads, fn, ctx, t, e);
			mfr_error ignored;
			if (bind)
				bind(ctx, NULL, 0, NULL, 0, 0, &ignored);
		}
	} else
		rc = method == MFR_SEARCH_INT8 ? search_int8(c, n, d, threshold, block, threads, t, e)
					       : search_fp32(c, n, d, threshold, block, threads, NULL, NULL, t, e);
	if (rc < 0) {
		mfr_topk_free(t);
		return -1;
	}
	sort_rows(t);
	return 0;
}

int mfr_pair_search(const float *c, size_t n, uint32_t d, float threshold, int k, size_t block, int threads,
		    int method, mfr_topk *t, mfr_error *e)
{
	return pair_search(c, n, d, threshold, k, block, threads, method, NULL, NULL, NULL, t, e);
}

int mfr_pair_search_with(const float *c, size_t n, uint32_t d, float threshold, int k, size_t block,
			 int threads, mfr_block_fn fn, mfr_bind_fn bind, void *ctx, mfr_topk *t, mfr_error *e)
{
	return pair_search(c, n, d, threshold, k, block, threads, MFR_SEARCH_BLOCKS, fn, bind, ctx, t, e);
}

void mfr_topk_free(mfr_topk *t)
{
	free(t->n_nb);
	free(t->sim);
	free(t->nb);
	*t = (mfr_topk){0};
}

int mfr_topk_has(const mfr_topk *t, uint32_t i, uint32_t j)
{
	const uint32_t *nb = t->nb + (size_t)i * t->k;
	for (uint32_t q = 0; q < t->n_nb[i]; q++)
		if (nb[q] == j)
			return 1;
	return 0;
}

const char *mfr_edge_fate(int fate)
{
	switch (fate) {
	case MFR_EDGE_MERGED: return "merged";
	case MFR_EDGE_REDUNDANT: return "redundant";
	case MFR_EDGE_CAPPED: return "capped";
	}
	return "unknown";
}

static int edge_order(const void *x, const void *y)
{
	const mfr_edge *a = x, *b = y;
	if (a->sim != b->sim)
		return a->sim > b->sim ? -1 : 1;
	if (a->a != b->a)
		return a->a < b->a ? -1 : 1;
	return (a->b > b->b) - (a->b < b->b);
}

int mfr_topk_edges(const mfr_topk *t, int mutual, mfr_edge **edges, size_t *n_edges, mfr_error *e)
{
	size_t n = 0, room = 0;
	mfr_edge *out = NULL;
	for (uint32_t i = 0; i < t->n; i++)
		for (uint32_t q = 0; q < t->n_nb[i]; q++) {
			uint32_t j = t->nb[(size_t)i * t->k + q];
			int back = mfr_topk_has(t, j, i);
			/* each pair once: from its smaller end, or from the larger end
			 * when the smaller does not list it */
			if (mutual ? !back || i > j : i > j && back)
				continue;
			if (n == room) {
				room = room ? room * 2 : 256;
				mfr_edge *o = mfr_realloc(out, room * sizeof *o, e);
				if (!o) {
					free(out);
					return -1;
				}
				out = o;
			}
			out[n++] = (mfr_edge){i < j ? i : j, i < j ? j : i, t->sim[(size_t)i * t->k + q], 0};
		}
	if (n)
		qsort(out, n, sizeof *out, edge_order);
	*edges = out;
	*n_edges = n;
	return 0;
}

int mfr_uf_init(mfr_uf *u, size_t n, mfr_error *e)
{
	u->n = n;
	u->parent = mfr_malloc((n + 1) * sizeof *u->parent, e);
	u->size = mfr_malloc((n + 1) * sizeof *u->size, e);
	if (!u->parent || !u->size) {
		mfr_uf_free(u);
		return -1;
	}
	for (size_t i = 0; i < n; i++) {
		u->parent[i] = (uint32_t)i;
		u->size[i] = 1;
	}
	return 0;
}

void mfr_uf_free(mfr_uf *u)
{
	free(u->parent);
	free(u->size);
	u->parent = u->size = NULL;
}

uint32_t mfr_uf_find(mfr_uf *u, uint32_t x)
{
	while (u->parent[x] != x) {
		u->parent[x] = u->parent[u->parent[x]];
		x = u->parent[x];
	}
	return x;
}

void mfr_merge_classes(mfr_uf *u, mfr_edge *edges, size_t n_edges, uint64_t cap)
{
	for (size_t q = 0; q < n_edges; q++) {
		uint32_t a = mfr_uf_find(u, edges[q].a), b = mfr_uf_find(u, edges[q].b);
		if (a == b) {
			edges[q].fate = MFR_EDGE_REDUNDANT;
			continue;
		}
		if (cap && (uint64_t)u->size[a] + u->size[b] > cap) {
			edges[q].fate = MFR_EDGE_CAPPED;
			continue;
		}
		if (u->size[a] < u->size[b]) {
			uint32_t x = a;
			a = b;
			b = x;
		}
		u->parent[b] = a;
		u->size[a] += u->size[b];
		edges[q].fate = MFR_EDGE_MERGED;
	}
}

size_t mfr_uf_labels(mfr_uf *u, int32_t *newlab)
{
	size_t groups = 0;
	for (size_t k = 0; k < u->n; k++)
		newlab[k] = -1;
	/* k ascending meets every group first at its smallest class */
	for (size_t k = 0; k < u->n; k++) {
		uint32_t r = mfr_uf_find(u, (uint32_t)k);
		if (newlab[r] < 0)
			newlab[r] = (int32_t)groups++;
		newlab[k] = newlab[r];
	}
	return groups;
}
