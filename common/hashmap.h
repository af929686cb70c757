/* hashmap.h — an open-addressing hash map from u64 keys to u64 values, for
 * joins by sample id and counts by label. Grows by doubling; no deletion. */
#ifndef MFR_HASHMAP_H
#define MFR_HASHMAP_H

#include <stddef.h>
#include <stdint.h>

#include "util.h" /* defines: mfr_error */

typedef struct {
	uint64_t *keys, *vals;
	uint8_t *used;
	size_t cap, n; /* cap is a power of two */
} mfr_map;

/* Initialises an empty map (no allocation until the first insert). */
static inline void mfr_map_init(mfr_map *m) { *m = (mfr_map){0}; }
void mfr_map_free(mfr_map *m);

/* Returns a pointer to the value for key, inserting it with value 0 when
 * absent (*inserted set to 1 then, if non-NULL). NULL on allocation failure
 * with e filled. The pointer is valid until the next insert. */
uint64_t *mfr_map_put(mfr_map *m, uint64_t key, int *inserted, mfr_error *e);

/* Returns a pointer to the value for key, or NULL when absent. */
uint64_t *mfr_map_get(const mfr_map *m, uint64_t key);

/* Iterates: start with *pos = 0; returns 1 with *key, *val filled, 0 at the end. */
int mfr_map_next(const mfr_map *m, size_t *pos, uint64_t *key, uint64_t *val);

#endif
