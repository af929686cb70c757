/* cli.c — option parsing from one table, usage text, messages, number
 * parsing, the stdout check and the progress meter. For tools/ only: these
 * functions exit. */
#include "cli.h" /* defines: mfr_getopt, mfr_usage, mfr_die, mfr_parse_*, mfr_progress_* */

#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static const mfr_tool *tool;

const char *mfr_prog(void) { return tool ? tool->name : "mfr"; }

static void print_synopsis(FILE *f)
{
	const char *s = tool->synopsis;
	int first = 1;
	while (*s) {
		const char *nl = strchr(s, '\n');
		int len = nl ? (int)(nl - s) : (int)strlen(s);
		fprintf(f, "%s %s %.*s\n", first ? "usage:" : "      ", tool->name, len, s);
		first = 0;
		s += len + (nl != NULL);
	}
}

_Noreturn void mfr_usage(int code)
{
	FILE *f = code ? stderr : stdout;
	print_synopsis(f);
	if (code == 0) {
		fprintf(f, "\n%s\n\noptions:\n", tool->about);
		for (const mfr_option *o = tool->opts; o && o->name; o++) {
			char head[64];
			if (o->key < 256)
				snprintf(head, sizeof head, "-%c, --%s%s%s", o->key, o->name, o->arg ? " " : "",
					 o->arg ? o->arg : "");
			else
				snprintf(head, sizeof head, "    --%s%s%s", o->name, o->arg ? " " : "",
					 o->arg ? o->arg : "");
			/* a help text's further lines line up under its first */
			const char *h = o->help ? o->help : "";
			fprintf(f, "  %-26s ", head);
			for (; *h; h++)
				if (*h == '\n')
					fprintf(f, "\n%29s", "");
				else
					fputc(*h, f);
			fputc('\n', f);
		}
		fprintf(f, "  %-26s %s\n", "-h, --help", "print this help and exit");
	}
	exit(code);
}

int mfr_getopt(const mfr_tool *t, int argc, char **argv)
{
	static struct option longs[64];
	static char shorts[160];
	if (tool != t) {
		int nl = 0, ns = 0;
		tool = t;
		shorts[ns++] = ':'; /* report a missing argument as ':' */
		for (const mfr_option *o = t->opts; o && o->name && nl < 62; o++) {
			longs[nl++] = (struct option){o->name, o->arg ? required_argument : no_argument, NULL, o->key};
			if (o->key < 256) {
				shorts[ns++] = (char)o->key;
				if (o->arg)
					shorts[ns++] = ':';
			}
		}
		longs[nl++] = (struct option){"help", no_argument, NULL, 'h'};
		longs[nl] = (struct option){0};
		shorts[ns++] = 'h';
		shorts[ns] = 0;
		opterr = 0;
	}
	int c = getopt_long(argc, argv, shorts, longs, NULL);
	if (c == 'h')
		mfr_usage(0);
	if (c == '?') {
		if (optopt && optopt < 256)
			mfr_usage_error("unknown option -%c", optopt);
		mfr_usage_error("unknown option %s", argv[optind - 1]);
	}
	if (c == ':')
		mfr_usage_error("option %s needs an argument", argv[optind - 1]);
	return c;
}

static void vmsg(const char *fmt, va_list ap)
{
	fprintf(stderr, "%s: ", mfr_prog());
	vfprintf(stderr, fmt, ap);
	fputc('\n', stderr);
}

_Noreturn void mfr_usage_error(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vmsg(fmt, ap);
	va_end(ap);
	if (tool)
		print_synopsis(stderr);
	exit(2);
}

_Noreturn void mfr_die(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vmsg(fmt, ap);
	va_end(ap);
	mfr_temp_cleanup();
	exit(1);
}

_Noreturn void mfr_die_error(const mfr_error *e) { mfr_die("%s", e->msg[0] ? e->msg : "unknown error"); }

void mfr_warn(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vmsg(fmt, ap);
	va_end(ap);
}

long long mfr_parse_int(const char *s, long long lo, long long hi, const char *what)
{
	char *end;
	errno = 0;
	long long v = strtoll(s, &end, 10);
	if (end == s || *end || errno == EINVAL)
		mfr_usage_error("%s is not a number: '%s'", what, s);
	if (errno == ERANGE || v < lo || v > hi)
		mfr_usage_error("%s out of range %lld..%lld: %s", what, lo, hi, s);
	return v;
}

double mfr_parse_real(const char *s, double lo, double hi, const char *what)
{
	char *end;
	errno = 0;
	double v = strtod(s, &end);
	if (end == s || *end || isnan(v))
		mfr_usage_error("%s is not a number: '%s'", what, s);
	if (errno == ERANGE || v < lo || v > hi)
		mfr_usage_error("%s out of range %g..%g: %s", what, lo, hi, s);
	return v;
}

int mfr_close_stdout(int code)
{
	/* fflush then check the error flag and fclose: a full disk or a closed
	 * pipe must not pass as success */
	if (fflush(stdout) != 0 || ferror(stdout) | (fclose(stdout) != 0)) {
		fprintf(stderr, "%s: write error on stdout: %s\n", mfr_prog(), strerror(errno));
		return 1;
	}
	return code;
}

double mfr_now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

void mfr_progress_start(mfr_progress *p, const char *what, uint64_t total)
{
	*p = (mfr_progress){.what = what, .total = total, .t0 = mfr_now(), .on = isatty(STDERR_FILENO)};
	p->last = p->t0;
}

void mfr_progress_add(mfr_progress *p, uint64_t n)
{
	p->done += n;
	if (!p->on)
		return;
	double t = mfr_now();
	if (t - p->last < 0.1)
		return;
	p->last = t;
	double rate = p->done / (t - p->t0 > 1e-9 ? t - p->t0 : 1e-9);
	if (p->total)
		fprintf(stderr, "\r%s: %llu/%llu (%.0f%%) %.0f/s ", p->what, (unsigned long long)p->done,
			(unsigned long long)p->total, 100.0 * p->done / p->total, rate);
	else
		fprintf(stderr, "\r%s: %llu %.0f/s ", p->what, (unsigned long long)p->done, rate);
}

void mfr_progress_end(mfr_progress *p)
{
	if (p->on)
		fprintf(stderr, "\r\033[K");
}

FILE *mfr_text_open(const char *path, char **tmp)
{
	size_t n = strlen(path) + 5;
	mfr_error e;
	if (mfr_path_special(path)) { /* a device or FIFO: written in place */
		*tmp = NULL;
		FILE *f = fopen(path, "w");
		if (!f)
			mfr_die("'%s': %s", path, strerror(errno));
		return f;
	}
	if (!(*tmp = malloc(n)))
		mfr_die("out of memory");
	snprintf(*tmp, n, "%s.tmp", path);
	FILE *f = fopen(*tmp, "w");
	if (!f)
		mfr_die("'%s': %s", *tmp, strerror(errno));
	if (mfr_temp_register(*tmp, &e) < 0)
		mfr_die_error(&e);
	return f;
}

void mfr_text_commit(FILE *f, const char *path, char *tmp)
{
	if (fflush(f) != 0 || ferror(f) | (fclose(f) != 0))
		mfr_die("'%s': write error: %s", path, strerror(errno));
	if (!tmp)
		return;
	if (rename(tmp, path) != 0)
		mfr_die("'%s': cannot rename into place: %s", path, strerror(errno));
	mfr_temp_forget(tmp);
	free(tmp);
}

/* Loads the first whitespace-separated column of a text file as integers; a
 * header line (first field not a number) is skipped. */
void mfr_load_keys(const char *path, mfr_map *m, int is_label)
{
	FILE *f = fopen(path, "r");
	if (!f)
		mfr_die("'%s': %s", path, strerror(errno));
	char line[4096];
	unsigned long long lineno = 0;
	mfr_error e;
	while (fgets(line, sizeof line, f)) {
		lineno++;
		char *end, *s = line + strspn(line, " \t");
		if (*s == '\n' || *s == 0 || *s == '#')
			continue;
		errno = 0;
		long long v = strtoll(s, &end, 10);
		if (end == s || (*end && !strchr(" \t\r\n", *end)) || errno) {
			if (lineno == 1)
				continue; /* header row */
			mfr_die("'%s': line %llu: not a%s: %.40s", path, lineno, is_label ? " label" : "n id", s);
		}
		uint64_t key = is_label ? (uint64_t)(uint32_t)(int32_t)v : (uint64_t)v;
		if (!mfr_map_put(m, key, NULL, &e))
			mfr_die_error(&e);
	}
	if (ferror(f))
		mfr_die("'%s': read error", path);
	fclose(f);
}
