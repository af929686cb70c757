/* util.c — error messages, half floats, allocation, whole-file reads and the
 * seeded generator's helpers. Nothing here exits or prints. */
#include "util.h" /* defines: mfr_fail, mfr_malloc, mfr_read_file, mfr_rng_* */

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <sys/stat.h>
#include <stdlib.h>

int mfr_fail(mfr_error *e, const char *fmt, ...)
{
	if (e) {
		va_list ap;
		va_start(ap, fmt);
		vsnprintf(e->msg, sizeof e->msg, fmt, ap);
		va_end(ap);
	}
	return -1;
}

float mfr_half_to_float(uint16_t h)
{
	uint32_t sign = (uint32_t)(h >> 15) << 31, exp = (h >> 10) & 0x1f, man = h & 0x3ff, u;
	if (exp == 0) {
		float f = ldexpf((float)man, -24); /* subnormal or zero */
		return sign ? -f : f;
	}
	if (exp == 31)
		u = sign | 0x7f800000u | (man << 13);
	else
		u = sign | ((exp + 112) << 23) | (man << 13);
	float f;
	memcpy(&f, &u, 4);
	return f;
}

uint16_t mfr_float_to_half(float f)
{
	uint32_t u;
	memcpy(&u, &f, 4);
	uint32_t sign = (u >> 16) & 0x8000;
	uint32_t a = u & 0x7fffffffu;
	if (a >= 0x7f800000u) /* inf or nan: keep nan quiet */
		return (uint16_t)(sign | 0x7c00 | (a > 0x7f800000u ? 0x200 : 0));
	if (a >= 0x477ff000u) /* rounds to beyond 65504 */
		return (uint16_t)(sign | 0x7c00);
	if (a < 0x38800000u) { /* subnormal half: scale so that rounding is done by the FPU */
		float m;
		memcpy(&m, &a, 4);
		return (uint16_t)(sign | (uint32_t)lrintf(m * 16777216.0f));
	}
	uint32_t r = a + 0xfff + ((a >> 13) & 1); /* round to nearest even */
	return (uint16_t)(sign | ((r - 0x38000000u) >> 13));
}

void *mfr_malloc(size_t n, mfr_error *e)
{
	void *p = malloc(n ? n : 1);
	if (!p)
		mfr_fail(e, "out of memory allocating %zu bytes", n);
	return p;
}

void *mfr_realloc(void *p, size_t n, mfr_error *e)
{
	void *q = realloc(p, n ? n : 1);
	if (!q)
		mfr_fail(e, "out of memory allocating %zu bytes", n);
	return q;
}

int mfr_read_file(const char *path, size_t cap, uint8_t **data, size_t *size, mfr_error *e)
{
	int is_stdin = strcmp(path, "-") == 0;
	FILE *f = is_stdin ? stdin : fopen(path, "rb");
	if (!f)
		return mfr_fail(e, "'%s': %s", path, strerror(errno));
	size_t n = 0, room = 65536;
	uint8_t *buf = mfr_malloc(room, e);
	if (!buf)
		goto fail;
	for (;;) {
		if (n == room) {
			if (room > cap) {
				mfr_fail(e, "'%s': larger than the %zu-byte limit", path, cap);
				goto fail;
			}
			uint8_t *nb = mfr_realloc(buf, room * 2, e);
			if (!nb)
				goto fail;
			buf = nb;
			room *= 2;
		}
		size_t got = fread(buf + n, 1, room - n, f);
		n += got;
		if (got == 0)
			break;
	}
	if (ferror(f)) {
		mfr_fail(e, "'%s': read error: %s", path, strerror(errno));
		goto fail;
	}
	if (n > cap) {
		mfr_fail(e, "'%s': larger than the %zu-byte limit", path, cap);
		goto fail;
	}
	if (!is_stdin)
		fclose(f);
	*data = buf;
	*size = n;
	return 0;
fail:
	free(buf);
	if (!is_stdin)
		fclose(f);
	return -1;
}

uint64_t mfr_rng_below(mfr_rng *r, uint64_t n)
{
	uint64_t lim = -n % n; /* 2^64 mod n: values below it are rejected */
	for (;;) {
		uint64_t x = mfr_rng_next(r);
		if (x >= lim)
			return x % n;
	}
}

double mfr_rng_normal(mfr_rng *r)
{
	double u = mfr_rng_uniform(r), v = mfr_rng_uniform(r);
	return sqrt(-2.0 * log(1.0 - u)) * cos(6.283185307179586 * v);
}

uint64_t mfr_hash2(uint64_t a, uint64_t b)
{
	mfr_rng r = {a * 0xd6e8feb86659fd93ull ^ b};
	mfr_rng_next(&r);
	return mfr_rng_next(&r) ^ b;
}

static char **temps;
static size_t ntemps;

int mfr_temp_register(const char *path, mfr_error *e)
{
	char **t = mfr_realloc(temps, (ntemps + 1) * sizeof *temps, e);
	if (!t)
		return -1;
	temps = t;
	if (!(temps[ntemps] = strdup(path)))
		return mfr_fail(e, "out of memory");
	ntemps++;
	return 0;
}

void mfr_temp_forget(const char *path)
{
	for (size_t i = 0; i < ntemps; i++)
		if (strcmp(temps[i], path) == 0) {
			free(temps[i]);
			temps[i] = temps[--ntemps];
			break;
		}
	if (!ntemps) {
		free(temps);
		temps = NULL;
	}
}

void mfr_temp_cleanup(void)
{
	for (size_t i = 0; i < ntemps; i++) {
		remove(temps[i]);
		free(temps[i]);
	}
	free(temps);
	temps = NULL;
	ntemps = 0;
}

void mfr_text_printf(mfr_text *b, const char *fmt, ...)
{
	while (!b->failed) {
		va_list ap;
		va_start(ap, fmt);
		int k = vsnprintf(b->d ? b->d + b->n : NULL, b->d ? b->room - b->n : 0, fmt, ap);
		va_end(ap);
		if (k < 0) {
			b->failed = 1;
			return;
		}
		if (b->d && b->n + (size_t)k < b->room) {
			b->n += (size_t)k;
			return;
		}
		size_t room = (b->room + (size_t)k + 1) * 2;
		char *d = realloc(b->d, room);
		if (!d) {
			b->failed = 1;
			return;
		}
		b->d = d;
		b->room = room;
	}
}

int mfr_path_special(const char *path)
{
	struct stat st;
	return stat(path, &st) == 0 && !S_ISREG(st.st_mode);
}
