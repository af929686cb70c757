/* cli.h — what every tool's main() shares: one option table that drives both
 * getopt_long and the usage text, range-checked number parsing, messages in
 * the project's form, the stdout check at exit, and a progress meter that
 * appears only when stderr is a terminal.
 *
 * Unlike the rest of libmfr these helpers may exit: they are for tools/ only.
 * Exit codes: 0 success, 1 data/I-O/runtime failure, 2 usage.
 */
#ifndef MFR_CLI_H
#define MFR_CLI_H

#include <stdint.h>
#include <getopt.h> /* optarg, optind for mfr_getopt callers */
#include <stdio.h>

#include "hashmap.h" /* defines: mfr_map */
#include "util.h"    /* defines: mfr_error */

/* One option. key is the short letter, or a value >= 256 for a long-only
 * option. arg is the argument's name in the usage ("FILE"), or NULL. */
typedef struct {
	const char *name;
	int key;
	const char *arg;
	const char *help;
} mfr_option;

/* A tool's description: name ("mfr-cat"), synopsis lines in man-page form
 * (without the name; separate forms by '\n'), a one-line purpose, and the
 * options (terminated by a zeroed entry; -h/--help is added automatically). */
typedef struct {
	const char *name;
	const char *synopsis;
	const char *about;
	const mfr_option *opts;
} mfr_tool;

/* Parses the next option like getopt_long over t->opts. Returns the option's
 * key with the global optarg set, or -1 when options end (optind then indexes
 * the first operand). -h/--help prints the usage to stdout and exits 0; an
 * unknown option or a missing argument prints the message and usage to
 * stderr and exits 2. Remembers t for the helpers below. */
int mfr_getopt(const mfr_tool *t, int argc, char **argv);

/* Prints the usage (synopsis, purpose, options) to stdout with code 0 or to
 * stderr otherwise, and exits with code. */
_Noreturn void mfr_usage(int code);

/* "PROG: MESSAGE" on stderr, then "usage: ..." synopsis; exits 2. */
_Noreturn void mfr_usage_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* "PROG: MESSAGE" on stderr, removes registered temp files, exit 1. */
_Noreturn void mfr_die(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* mfr_die with the message of e. */
_Noreturn void mfr_die_error(const mfr_error *e);
/* "PROG: MESSAGE" on stderr; continues. */
void mfr_warn(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* The tool name given to mfr_getopt ("mfr" before). */
const char *mfr_prog(void);

/* strtonum-style parsing: the whole string must be a number in [lo, hi], else
 * "PROG: WHAT out of range LO..HI: S" (or "not a number") and exit 2. */
long long mfr_parse_int(const char *s, long long lo, long long hi, const char *what);
double mfr_parse_real(const char *s, double lo, double hi, const char *what);

/* Flushes and closes stdout; a write error (full disk, closed pipe) is
 * reported and turns the exit code to 1. Call at the end of main:
 * `return mfr_close_stdout(0);` returns code, or 1 on failure. */
int mfr_close_stdout(int code);

/* Progress on stderr, redrawn at most 10 times a second, only when stderr is
 * a terminal; total 0 means unknown. */
typedef struct {
	const char *what;
	uint64_t total, done;
	double t0, last;
	int on;
} mfr_progress;
void mfr_progress_start(mfr_progress *p, const char *what, uint64_t total);
void mfr_progress_add(mfr_progress *p, uint64_t n);
/* Clears the meter line. */
void mfr_progress_end(mfr_progress *p);

/* A text output (label map, pairs list, report) written to PATH.tmp (in
 * place when PATH is a device or FIFO: mfr_path_special; *tmp is then NULL) and
 * renamed by mfr_text_commit; dies on failure. The temp file is removed if
 * the tool dies first. */
FILE *mfr_text_open(const char *path, char **tmp);
void mfr_text_commit(FILE *f, const char *path, char *tmp);

/* Loads the first whitespace-separated column of a text file as ids
 * (is_label 0) or labels (1: -1 allowed, stored as its 32-bit pattern) into
 * m; blank lines and '#' comments are skipped, so is a first line that is
 * not a number (a header). Dies naming the file and line otherwise. */
void mfr_load_keys(const char *path, mfr_map *m, int is_label);

/* Seconds on a monotonic clock. */
double mfr_now(void);

#endif
