/* util.h — error reporting, little-endian byte helpers and checked allocation
 * shared by every part of libmfr.
 *
 * Library code never exits and never prints: it fills an mfr_error and returns
 * -1 (or NULL), and the tool decides what to do (see cli.h). Messages follow the
 * project form "'subject': what went wrong at byte N" — lower case, no full
 * stop, without the program name (the tool prefixes that).
 */
#ifndef MFR_UTIL_H
#define MFR_UTIL_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#define MFR_VERSION "0.1.0"

/* Element types, one list for every part that moves typed arrays: the
 * collectives (comm.h: f32, f64, i32, i64, u8) and the GPU's tensors (gpu.h:
 * f32, f16, bf16). */
typedef enum { MFR_F32 = 0, MFR_F16 = 1, MFR_BF16 = 2, MFR_F64 = 3, MFR_I32 = 4, MFR_I64 = 5, MFR_U8 = 6 } mfr_dtype;

/* An error message carried back to the caller. msg[0] == 0 means no error. */
typedef struct {
	char msg[512];
} mfr_error;

/* Formats an error message into e (printf-style) and returns -1, so a library
 * function can `return mfr_fail(e, "...")`. e may be NULL (message dropped). */
int mfr_fail(mfr_error *e, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

/* Clears e. */
static inline void mfr_error_clear(mfr_error *e) { if (e) e->msg[0] = 0; }

/* Little-endian loads and stores on unaligned byte pointers. The format is
 * little-endian everywhere (data-formats.md); never fwrite a struct. */
static inline uint16_t mfr_get16(const uint8_t *p) { return (uint16_t)(p[0] | p[1] << 8); }
static inline uint32_t mfr_get32(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}
static inline uint64_t mfr_get64(const uint8_t *p)
{
	return (uint64_t)mfr_get32(p) | (uint64_t)mfr_get32(p + 4) << 32;
}
static inline float mfr_getf32(const uint8_t *p)
{
	uint32_t u = mfr_get32(p);
	float f;
	memcpy(&f, &u, 4);
	return f;
}
static inline void mfr_put16(uint8_t *p, uint16_t v) { p[0] = (uint8_t)v; p[1] = (uint8_t)(v >> 8); }
static inline void mfr_put32(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)v; p[1] = (uint8_t)(v >> 8); p[2] = (uint8_t)(v >> 16); p[3] = (uint8_t)(v >> 24);
}
static inline void mfr_put64(uint8_t *p, uint64_t v) { mfr_put32(p, (uint32_t)v); mfr_put32(p + 4, (uint32_t)(v >> 32)); }
static inline void mfr_putf32(uint8_t *p, float f)
{
	uint32_t u;
	memcpy(&u, &f, 4);
	mfr_put32(p, u);
}

/* IEEE half <-> float conversion (round to nearest even), for fp16 embeddings. */
float mfr_half_to_float(uint16_t h);
uint16_t mfr_float_to_half(float f);

/* malloc/realloc that return NULL and fill e on failure (never abort). */
void *mfr_malloc(size_t n, mfr_error *e);
void *mfr_realloc(void *p, size_t n, mfr_error *e);

/* Reads a whole file into a fresh buffer (*data, *size), refusing files larger
 * than cap bytes. path "-" is stdin. Returns 0, or -1 with e filled; the caller
 * frees *data. */
int mfr_read_file(const char *path, size_t cap, uint8_t **data, size_t *size, mfr_error *e);

/* A growable NUL-terminated text buffer. Start zeroed; after a failed
 * append (no memory) `failed` is set and later appends do nothing, so a
 * builder checks once at the end. The caller frees d. */
typedef struct {
	char *d;
	size_t n, room;
	int failed;
} mfr_text;

/* Appends printf-formatted text to b. */
void mfr_text_printf(mfr_text *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Temporary output files ("NAME.tmp") are registered while being written so
 * that a tool dying on an error removes them (mfr_die calls
 * mfr_temp_cleanup): a failed run never leaves a half file behind. Register
 * copies the path; forget is called once the file is renamed or removed. */
int mfr_temp_register(const char *path, mfr_error *e);

/* Whether path exists and is not a regular file (a device such as
 * /dev/null, a FIFO, a terminal): outputs are then written to it in place,
 * never through PATH.tmp and a rename, which would replace the node. */
int mfr_path_special(const char *path);
void mfr_temp_forget(const char *path);
void mfr_temp_cleanup(void);

/* SplitMix64: the project's seeded generator for shuffles, sampling and
 * synthesis. Deterministic across platforms. */
typedef struct {
	uint64_t s;
} mfr_rng;
static inline uint64_t mfr_rng_next(mfr_rng *r)
{
	uint64_t z = (r->s += 0x9e3779b97f4a7c15ull);
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}
/* Uniform double in [0,1) with 53 random bits. */
static inline double mfr_rng_uniform(mfr_rng *r) { return (double)(mfr_rng_next(r) >> 11) * 0x1.0p-53; }
/* Uniform integer in [0,n), n > 0, without modulo bias. */
uint64_t mfr_rng_below(mfr_rng *r, uint64_t n);
/* Standard normal deviate (Box-Muller, one of the pair). */
double mfr_rng_normal(mfr_rng *r);
/* Stateless hash of (a,b) to 64 bits, for choices that must not depend on
 * order or sharding (e.g. which sample ids get a mask). */
uint64_t mfr_hash2(uint64_t a, uint64_t b);

#endif
