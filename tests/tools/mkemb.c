/* mkemb.c — test fixture writer: an EMBEDDING stream of known geometry for
 * the ids and labels of a FACE stream, standing in for a trained model in the
 * cleaning tests. Each true identity x has a random unit centre (seeded by
 * seed and x); a record's vector is its true identity's centre plus Gaussian
 * noise of norm about SIGMA, so its cosine to the centre is about
 * 1/sqrt(1+SIGMA^2) and to an unrelated centre about 0 +- 1/sqrt(D).
 *
 * The true identity is the record's label, except: ids listed in the noise
 * truth of mfr-synth (--truth: `id kind label true_label`) take true_label
 * when flipped, and a fresh random direction when outliers; --split A:B makes
 * label B the same person as label A (B's records, and records flipped to B,
 * use A's centre), which is what mfr-merge-inter must undo. Test code only.
 *
 * usage: mkemb [-d D] [-s SEED] [--sigma S] [--truth FILE] [--split A:B]...
 *              [--fp16] [FACE-FILE]   > emb.mfr */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"     /* defines: mfr_getopt, mfr_parse_*, mfr_die */
#include "hashmap.h" /* defines: mfr_map */
#include "record.h"  /* defines: mfr_embedding_encode, mfr_record_ids */
#include "stream.h"  /* defines: mfr_reader_*, mfr_writer_* */

enum { O_SIGMA = 256, O_TRUTH, O_SPLIT, O_FP16 };

static const mfr_option opts[] = {
	{"dim", 'd', "D", "embedding dimension (default 64)"},
	{"seed", 's', "S", "seed of the centres and the noise (default 1)"},
	{"sigma", O_SIGMA, "S", "norm of the noise added to a centre (default 0.5)"},
	{"truth", O_TRUTH, "FILE", "mfr-synth's injected-noise TSV"},
	{"split", O_SPLIT, "A:B", "label B is the same identity as label A (repeatable)"},
	{"fp16", O_FP16, NULL, "write f16 vectors"},
	{0},
};

static const mfr_tool tool = {"mkemb", "[-d D] [-s S] [--sigma S] [--truth FILE] [--split A:B]... [--fp16] [FILE]",
			      "Write an EMBEDDING stream of known geometry for a FACE stream's ids.", opts};

/* The unit direction of stream `key` (an identity, or an outlier's id). */
static void direction(uint64_t seed, uint64_t key, float *v, int d)
{
	mfr_rng r = {mfr_hash2(seed, key)};
	double s = 0;
	for (int i = 0; i < d; i++) {
		v[i] = (float)mfr_rng_normal(&r);
		s += (double)v[i] * v[i];
	}
	for (int i = 0; i < d; i++)
		v[i] = (float)(v[i] / sqrt(s));
}

int main(int argc, char **argv)
{
	int d = 64, fp16 = 0, c;
	uint64_t seed = 1;
	double sigma = 0.5;
	const char *truth = NULL;
	mfr_map split, noise; /* label -> identity; id -> (kind << 32 | true_label) */
	mfr_map_init(&split);
	mfr_map_init(&noise);
	mfr_error e;
	while ((c = mfr_getopt(&tool, argc, argv)) != -1) {
		switch (c) {
		case 'd': d = (int)mfr_parse_int(optarg, 1, 65536, "dimension"); break;
		case 's': seed = (uint64_t)mfr_parse_int(optarg, 0, INT64_MAX, "seed"); break;
		case O_SIGMA: sigma = mfr_parse_real(optarg, 0, 100, "sigma"); break;
		case O_TRUTH: truth = optarg; break;
		case O_FP16: fp16 = 1; break;
		case O_SPLIT: {
			long a, b;
			if (sscanf(optarg, "%ld:%ld", &a, &b) != 2 || a < 0 || b < 0)
				mfr_usage_error("--split wants A:B, not '%s'", optarg);
			uint64_t *v = mfr_map_put(&split, (uint64_t)b, NULL, &e);
			if (!v)
				mfr_die_error(&e);
			*v = (uint64_t)a;
			break;
		}
		}
	}
	if (truth) {
		FILE *f = fopen(truth, "r");
		if (!f)
			mfr_die("'%s': cannot open", truth);
		char line[256], kind[32];
		unsigned long long id;
		long label, tl;
		while (fgets(line, sizeof line, f))
			if (sscanf(line, "%llu\t%31s\t%ld\t%ld", &id, kind, &label, &tl) == 4) {
				uint64_t *v = mfr_map_put(&noise, id, NULL, &e);
				if (!v)
					mfr_die_error(&e);
				*v = strcmp(kind, "outlier") == 0 ? 1ull << 32 : (uint64_t)(uint32_t)tl;
			}
		fclose(f);
	}
	mfr_reader *r = mfr_reader_open((const char *const *)argv + optind, argc - optind, 0, 0, &e);
	if (!r)
		mfr_die_error(&e);
	mfr_schema s = {.kind = MFR_KIND_EMBEDDING, .dim = (uint32_t)d, .dtype = fp16 ? MFR_DTYPE_F16 : MFR_DTYPE_F32};
	mfr_writer *w = mfr_writer_open(NULL, &s, "mkemb", argc, argv, 0, &e);
	if (!w)
		mfr_die_error(&e);
	float *v = malloc((size_t)d * sizeof *v), *g = malloc((size_t)d * sizeof *g);
	uint8_t *buf = malloc(mfr_embedding_size(&s));
	if (!v || !g || !buf)
		mfr_die("out of memory");
	mfr_record rec;
	int got;
	while ((got = mfr_reader_next(r, &rec, &e)) == 1) {
		mfr_embedding m;
		uint32_t flags;
		if (mfr_record_ids(rec.data, rec.size, &m.id, &m.label, &flags, &e) < 0)
			mfr_die_error(&e);
		m.flags = flags;
		uint64_t *nz = mfr_map_get(&noise, m.id);
		if (nz && (*nz >> 32)) { /* an outlier: a direction of its own */
			direction(seed ^ 0x6f75746c696572ull, m.id, v, d);
		} else {
			int64_t ident = nz ? (int32_t)(uint32_t)*nz : m.label;
			uint64_t *sp = ident >= 0 ? mfr_map_get(&split, (uint64_t)ident) : NULL;
			if (sp)
				ident = (int64_t)*sp;
			direction(seed, (uint64_t)(ident + 1), v, d);
		}
		direction(seed ^ 0x6e6f697365ull, m.id, g, d);
		for (int i = 0; i < d; i++)
			v[i] += (float)sigma * g[i];
		m.vec = v;
		mfr_embedding_encode(&m, &s, buf);
		if (mfr_writer_put(w, MFR_REC_DATA, buf, mfr_embedding_size(&s), &e) < 0)
			mfr_die_error(&e);
	}
	if (got < 0)
		mfr_die_error(&e);
	if (mfr_writer_close(w, &e) < 0)
		mfr_die_error(&e);
	mfr_reader_close(r);
	free(v);
	free(g);
	free(buf);
	mfr_map_free(&split);
	mfr_map_free(&noise);
	return mfr_close_stdout(0);
}
