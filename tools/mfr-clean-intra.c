/* mfr-clean-intra — drop the records of an EMBEDDING stream that lie far from
 * their class centre (intra-class cleaning of noisy labels), keeping the
 * others byte for byte and in order; a TSV report says what went and why.
 *
 * The input is read in passes (centres, similarities, output; two more per
 * extra round) and never held in memory: named files are re-read, stdin is
 * spooled once to $TMPDIR. The decisions are common/clean.c's. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clean.h"  /* defines: mfr_passes_*, mfr_intra_run, mfr_drop_reason */
#include "cli.h"    /* defines: mfr_getopt, mfr_parse_*, mfr_die*, mfr_text_open */
#include "record.h" /* defines: mfr_record_ids */
#include "stream.h" /* defines: mfr_writer_* */

enum { O_REPORT = 256, O_ITER, O_MIN, O_SMALL, O_UNLAB };

static const mfr_option opts[] = {
	{"threshold", 't', "T", "remove records whose cosine similarity to their class centre is below T (-1..1)"},
	{"percentile", 'p', "P", "remove records below their class's P-th percentile of similarity (0..100)"},
	{"iterations", O_ITER, "N", "decision rounds, centres recomputed from the kept records between rounds;\n"
				    "stops early when a round changes nothing (1..1000, default 1)"},
	{"min-images", O_MIN, "K", "a class left with fewer than K records follows --small-class (default 2)"},
	{"small-class", O_SMALL, "POLICY", "keep (restore all its records; default), drop (remove them all) or\n"
					    "survivors (keep what passed)"},
	{"drop-unlabelled", O_UNLAB, NULL, "remove records with label -1 (default: pass them through)"},
	{"report", O_REPORT, "FILE", "write the removed records as TSV: id, label, similarity, reason"},
	{"output", 'o', "FILE", "write to FILE (via FILE.tmp, renamed on success) instead of stdout"},
	{0},
};

static const mfr_tool tool = {
	"mfr-clean-intra",
	"(-t T | -p P) [--iterations N] [--min-images K] [--small-class POLICY]\n"
	"[--drop-unlabelled] [--report FILE] [-o FILE] [FILE...]",
	"Remove the records of EMBEDDING streams that lie far from their class centre (the mean of\n"
	"the class's L2-normalised embeddings); write the others unchanged, in order. No FILE, or -,\n"
	"reads stdin (spooled to $TMPDIR: the input is read in several passes).",
	opts,
};

int main(int argc, char **argv)
{
	mfr_intra_opts o = {.min_images = 2, .small_policy = MFR_SMALL_KEEP, .iterations = 1};
	const char *out = NULL, *report = NULL;
	int c;
	while ((c = mfr_getopt(&tool, argc, argv)) != -1) {
		switch (c) {
		case 't':
			o.use_threshold = 1;
			o.threshold = mfr_parse_real(optarg, -1, 1, "threshold");
			break;
		case 'p':
			o.use_percentile = 1;
			o.percentile = mfr_parse_real(optarg, 0, 100, "percentile");
			break;
		case O_ITER: o.iterations = (int)mfr_parse_int(optarg, 1, 1000, "iterations"); break;
		case O_MIN: o.min_images = (uint64_t)mfr_parse_int(optarg, 0, INT32_MAX, "minimum images"); break;
		case O_SMALL:
			if (strcmp(optarg, "keep") == 0)
				o.small_policy = MFR_SMALL_KEEP;
			else if (strcmp(optarg, "drop") == 0)
				o.small_policy = MFR_SMALL_DROP;
			else if (strcmp(optarg, "survivors") == 0)
				o.small_policy = MFR_SMALL_SURVIVORS;
			else
				mfr_usage_error("--small-class must be keep, drop or survivors, not '%s'", optarg);
			break;
		case O_UNLAB: o.drop_unlabelled = 1; break;
		case O_REPORT: report = optarg; break;
		case 'o': out = optarg; break;
		}
	}
	if (!o.use_threshold && !o.use_percentile)
		mfr_usage_error("no criterion: give -t T, -p P or both");
	double t0 = mfr_now();
	mfr_error e;
	mfr_passes p;
	mfr_passes_init(&p, (const char *const *)argv + optind, argc - optind);
	mfr_intra_result res;
	if (mfr_intra_run(&p, &o, &res, &e) < 0)
		mfr_die_error(&e);

	/* last pass: the kept records, byte for byte, and the report */
	if (mfr_passes_begin(&p, 1, &e) < 0)
		mfr_die_error(&e);
	mfr_writer *w = mfr_writer_open(out, &p.schema, "mfr-clean-intra", argc, argv, 0, &e);
	if (!w)
		mfr_die_error(&e);
	char *rtmp = NULL;
	FILE *rf = report ? mfr_text_open(report, &rtmp) : NULL;
	if (rf)
		fputs("id\tlabel\tsimilarity\treason\n", rf);
	uint64_t by[5] = {0};
	mfr_record rec;
	int got;
	size_t i = 0;
	while ((got = mfr_passes_next(&p, &rec, &e)) == 1) {
		if (rec.type == MFR_REC_META) {
			if (mfr_writer_put(w, MFR_REC_META, rec.data, rec.size, &e) < 0)
				mfr_die_error(&e);
			continue;
		}
		if (i >= res.n)
			mfr_die("'%s': the input changed between passes", rec.path);
		int why = res.why[i];
		by[why]++;
		if (why == MFR_KEEP) {
			if (mfr_writer_put(w, MFR_REC_DATA, rec.data, rec.size, &e) < 0)
				mfr_die_error(&e);
		} else if (rf) {
			uint64_t id;
			int32_t label;
			uint32_t flags;
			if (mfr_record_ids(rec.data, rec.size, &id, &label, &flags, &e) < 0)
				mfr_die_error(&e);
			if (isnan(res.sim[i]))
				fprintf(rf, "%llu\t%d\t-\t%s\n", (unsigned long long)id, label, mfr_drop_reason(why));
			else
				fprintf(rf, "%llu\t%d\t%.6f\t%s\n", (unsigned long long)id, label, res.sim[i],
					mfr_drop_reason(why));
		}
		i++;
	}
	if (got < 0)
		mfr_die_error(&e);
	if (mfr_writer_close(w, &e) < 0)
		mfr_die_error(&e);
	if (rf)
		mfr_text_commit(rf, report, rtmp);
	mfr_passes_close(&p);
	uint64_t removed = res.n - by[MFR_KEEP];
	fprintf(stderr,
		"mfr-clean-intra: %zu records in, %llu kept, %llu removed (threshold %llu, percentile %llu, "
		"small-class %llu, unlabelled %llu); %zu classes in, %zu out; %d round%s%s; %.2f s\n",
		res.n, (unsigned long long)by[MFR_KEEP], (unsigned long long)removed,
		(unsigned long long)by[MFR_DROP_THRESHOLD], (unsigned long long)by[MFR_DROP_PERCENTILE],
		(unsigned long long)by[MFR_DROP_SMALL], (unsigned long long)by[MFR_DROP_UNLABELLED], res.classes_in,
		res.classes_out, res.rounds, res.rounds == 1 ? "" : "s", res.stable ? " (stable)" : "",
		mfr_now() - t0);
	mfr_intra_free(&res);
	return mfr_close_stdout(0);
}
