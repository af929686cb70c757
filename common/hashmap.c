/* hashmap.c — linear probing over a power-of-two table, kept at most half full. */
#include "hashmap.h" /* defines: mfr_map_* */

#include <stdlib.h>

static size_t slot(uint64_t k, size_t cap)
{
	k ^= k >> 33; /* murmur3 finaliser: spreads sequential ids */
	k *= 0xff51afd7ed558ccdull;
	k ^= k >> 33;
	return (size_t)k & (cap - 1);
}

void mfr_map_free(mfr_map *m)
{
	free(m->keys);
	free(m->vals);
	free(m->used);
	*m = (mfr_map){0};
}

static int grow(mfr_map *m, mfr_error *e)
{
	size_t cap = m->cap ? m->cap * 2 : 64;
	mfr_map n = {calloc(cap, 8), calloc(cap, 8), calloc(cap, 1), cap, 0};
	if (!n.keys || !n.vals || !n.used) {
		mfr_map_free(&n);
		return mfr_fail(e, "out of memory growing a table to %zu entries", cap);
	}
	for (size_t i = 0; i < m->cap; i++)
		if (m->used[i]) {
			size_t j = slot(m->keys[i], cap);
			while (n.used[j])
				j = (j + 1) & (cap - 1);
			n.used[j] = 1;
			n.keys[j] = m->keys[i];
			n.vals[j] = m->vals[i];
			n.n++;
		}
	mfr_map_free(m);
	*m = n;
	return 0;
}

uint64_t *mfr_map_put(mfr_map *m, uint64_t key, int *inserted, mfr_error *e)
{
	if ((m->n + 1) * 2 > m->cap && grow(m, e) < 0)
		return NULL;
	size_t j = slot(key, m->cap);
	while (m->used[j] && m->keys[j] != key)
		j = (j + 1) & (m->cap - 1);
	if (inserted)
		*inserted = !m->used[j];
	if (!m->used[j]) {
		m->used[j] = 1;
		m->keys[j] = key;
		m->vals[j] = 0;
		m->n++;
	}
	return &m->vals[j];
}

uint64_t *mfr_map_get(const mfr_map *m, uint64_t key)
{
	if (!m->cap)
		return NULL;
	size_t j = slot(key, m->cap);
	while (m->used[j]) {
		if (m->keys[j] == key)
			return &m->vals[j];
		j = (j + 1) & (m->cap - 1);
	}
	return NULL;
}

int mfr_map_next(const mfr_map *m, size_t *pos, uint64_t *key, uint64_t *val)
{
	for (; *pos < m->cap; (*pos)++)
		if (m->used[*pos]) {
			*key = m->keys[*pos];
			*val = m->vals[*pos];
			(*pos)++;
			return 1;
		}
	return 0;
}
