/* check.h — the unit-test harness: CHECK macros that count instead of abort,
 * and a closing line "N passed, N failed" with a non-zero exit on failure.
 * Every test program includes it once and ends main with `return check_done();`. */
#ifndef MFR_CHECK_H
#define MFR_CHECK_H

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int check_passed, check_failed;

#define CHECK(cond) check_report(!!(cond), #cond, __FILE__, __LINE__)
#define CHECK_EQ_INT(a, b) do { long long a_ = (long long)(a), b_ = (long long)(b); \
	if (!check_report(a_ == b_, #a " == " #b, __FILE__, __LINE__)) \
		fprintf(stderr, "    got %lld, want %lld\n", a_, b_); } while (0)
#define CHECK_NEAR(a, b, tol) do { double a_ = (a), b_ = (b); \
	if (!check_report(fabs(a_ - b_) <= (tol), #a " ~= " #b, __FILE__, __LINE__)) \
		fprintf(stderr, "    got %.9g, want %.9g (tol %g)\n", a_, b_, (double)(tol)); } while (0)

static inline int check_report(int ok, const char *what, const char *file, int line)
{
	if (ok)
		check_passed++;
	else {
		check_failed++;
		fprintf(stderr, "FAIL %s:%d: %s\n", file, line, what);
	}
	return ok;
}

/* Path of the shared real-data folder, or NULL (after printing a skip note)
 * when it is absent. MFR_DATA overrides the default ../shared/data. */
static inline const char *check_data_dir(const char *what)
{
	const char *d = getenv("MFR_DATA");
	static char buf[4096];
	if (!d) {
		FILE *f = fopen("../shared/data/README.md", "r");
		if (!f) {
			printf("skip: %s: ../shared/data is absent (set MFR_DATA)\n", what);
			return NULL;
		}
		fclose(f);
		d = "../shared/data";
	}
	snprintf(buf, sizeof buf, "%s", d);
	return buf;
}

/* A growable byte buffer for building fixtures in memory. */
typedef struct {
	uint8_t *d;
	size_t n, room;
} check_buf;

/* Appends n bytes of p to b (aborts when memory runs out: a test fixture). */
static inline void check_put(check_buf *b, const void *p, size_t n)
{
	if (b->n + n > b->room) {
		b->room = (b->n + n) * 2 + 64;
		b->d = realloc(b->d, b->room);
		if (!b->d)
			abort();
	}
	if (n)
		memcpy(b->d + b->n, p, n);
	b->n += n;
}

static inline int check_done(void)
{
	printf("%d passed, %d failed\n", check_passed, check_failed);
	return check_failed ? 1 : 0;
}

#endif
