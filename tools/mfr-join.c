/* mfr-join — apply cleaning decisions to faces: write the FACE records whose
 * ids are in a (cleaned, relabelled) EMBEDDING stream, in the FACE stream's
 * order, with the EMBEDDING stream's labels.
 *
 * With --method auto (the default) a streaming merge join is tried first
 * when it can be undone — both inputs named regular files and the output a
 * -o file — and the hash join (EMBEDDING side in memory) runs instead when
 * the ids turn out not to be in the same order; otherwise the hash join runs
 * directly. The joins are common/join.c's. */
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "cli.h"    /* defines: mfr_getopt, mfr_die*, mfr_now */
#include "join.h"   /* defines: mfr_join_merge, mfr_join_hash */
#include "stream.h" /* defines: mfr_reader_*, mfr_writer_* */

enum { O_ALLOW = 256, O_METHOD };

static const mfr_option opts[] = {
	{"allow-missing", O_ALLOW, NULL, "accept EMBEDDING ids that are not in the FACE stream (they are counted)"},
	{"method", O_METHOD, "M", "auto (default), merge (ids in the same order, nothing held in memory)\n"
				  "or hash (any order; the EMBEDDING ids held in memory)"},
	{"output", 'o', "FILE", "write to FILE (via FILE.tmp, renamed on success) instead of stdout"},
	{0},
};

static const mfr_tool tool = {
	"mfr-join",
	"[--allow-missing] [--method M] [-o FILE] EMBEDDINGS [FACE...]",
	"Write the FACE records whose ids appear in the EMBEDDING stream EMBEDDINGS (e.g. the output\n"
	"of mfr-clean-intra or mfr-merge-inter), in the FACE stream's order, with the labels the\n"
	"EMBEDDING stream gives them. No FACE file, or -, reads stdin (EMBEDDINGS may be - instead).",
	opts,
};

enum { AUTO, MERGE, HASH };

static int regular(const char *path)
{
	struct stat st;
	return strcmp(path, "-") != 0 && stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

static void open_all(const char *emb, const char *const *faces, int nf, mfr_reader **er, mfr_reader **fr)
{
	mfr_error e;
	if (!(*er = mfr_reader_open(&emb, 1, 0, 1, &e)))
		mfr_die_error(&e);
	const mfr_schema *s = mfr_reader_schema(*er);
	if (s->kind != MFR_KIND_EMBEDDING)
		mfr_die("'%s': is a %s stream, not EMBEDDING records", strcmp(emb, "-") ? emb : "<stdin>",
			mfr_kind_name(s->kind));
	if (!(*fr = mfr_reader_open(faces, nf, 0, 1, &e)))
		mfr_die_error(&e);
	s = mfr_reader_schema(*fr);
	if (s->kind != MFR_KIND_FACE)
		mfr_die("'%s': is a %s stream, not FACE records", nf && strcmp(faces[0], "-") ? faces[0] : "<stdin>",
			mfr_kind_name(s->kind));
}

int main(int argc, char **argv)
{
	const char *out = NULL;
	int allow = 0, method = AUTO, c;
	while ((c = mfr_getopt(&tool, argc, argv)) != -1) {
		switch (c) {
		case O_ALLOW: allow = 1; break;
		case O_METHOD:
			if (strcmp(optarg, "auto") == 0)
				method = AUTO;
			else if (strcmp(optarg, "merge") == 0)
				method = MERGE;
			else if (strcmp(optarg, "hash") == 0)
				method = HASH;
			else
				mfr_usage_error("--method must be auto, merge or hash, not '%s'", optarg);
			break;
		case 'o': out = optarg; break;
		}
	}
	if (optind >= argc)
		mfr_usage_error("no EMBEDDING stream given");
	const char *emb = argv[optind++];
	const char *const *faces = (const char *const *)argv + optind;
	int nf = argc - optind;
	int emb_stdin = strcmp(emb, "-") == 0, face_stdin = nf == 0;
	for (int i = 0; i < nf; i++)
		face_stdin |= strcmp(faces[i], "-") == 0;
	if (emb_stdin && face_stdin)
		mfr_usage_error("the EMBEDDING and the FACE streams cannot both be stdin");

	double t0 = mfr_now();
	mfr_error e;
	mfr_reader *er, *fr;
	open_all(emb, faces, nf, &er, &fr);
	mfr_writer *w = mfr_writer_open(out, mfr_reader_schema(fr), "mfr-join", argc, argv, 0, &e);
	if (!w)
		mfr_die_error(&e);
	mfr_join_stats st;
	const char *how = "hash join";
	int undoable = out && regular(emb) && !face_stdin;
	for (int i = 0; undoable && i < nf; i++)
		undoable = regular(faces[i]);
	if (method == MERGE || (method == AUTO && undoable)) {
		int got = mfr_join_merge(er, fr, w, &st, &e);
		if (got < 0)
			mfr_die_error(&e);
		if (got == 1)
			how = "merge join";
		else if (method == MERGE)
			mfr_die("'%s': the ids are not in the FACE stream's order, or some are missing: "
				"use --method hash", emb);
		else { /* undo and join again by hash */
			mfr_writer_abort(w);
			mfr_reader_close(er);
			mfr_reader_close(fr);
			open_all(emb, faces, nf, &er, &fr);
			if (!(w = mfr_writer_open(out, mfr_reader_schema(fr), "mfr-join", argc, argv, 0, &e)))
				mfr_die_error(&e);
			how = "hash join (the ids are in another order)";
			method = HASH;
		}
	} else
		method = HASH;
	if (method == HASH && mfr_join_hash(er, fr, w, allow, &st, &e) < 0)
		mfr_die_error(&e);
	if (mfr_writer_close(w, &e) < 0)
		mfr_die_error(&e);
	mfr_reader_close(er);
	mfr_reader_close(fr);
	fprintf(stderr,
		"mfr-join: %llu faces read, %llu written (%llu relabelled); %llu embedding ids, %llu missing; %s; "
		"%.2f s\n",
		(unsigned long long)st.faces, (unsigned long long)st.written, (unsigned long long)st.relabelled,
		(unsigned long long)st.emb, (unsigned long long)st.missing, how, mfr_now() - t0);
	return mfr_close_stdout(0);
}
