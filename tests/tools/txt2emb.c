/* txt2emb.c — test fixture writer: an EMBEDDING stream from text, one record
 * per line `id label flags v1 .. vD` (white-space separated; D from the
 * first line, every line the same), or random ones: `txt2emb -r N D LABELS
 * SEED OUT` writes N unit vectors of a label centre plus noise (every 3rd
 * record flagged masked). Test code only.
 *
 * usage: txt2emb [-16] OUT < TEXT        (-16: store fp16)
 *        txt2emb -r N D LABELS SEED OUT */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "record.h"
#include "stream.h"

static mfr_writer *w;
static mfr_schema s = {.kind = MFR_KIND_EMBEDDING, .dtype = MFR_DTYPE_F32};

static void put(uint64_t id, int32_t label, uint32_t flags, float *v)
{
	mfr_error e;
	static uint8_t buf[16 + 4 * 65536];
	mfr_embedding emb = {id, label, flags, v};
	mfr_embedding_encode(&emb, &s, buf);
	if (mfr_writer_put(w, MFR_REC_DATA, buf, mfr_embedding_size(&s), &e) < 0) {
		fprintf(stderr, "txt2emb: %s\n", e.msg);
		exit(1);
	}
}

static void open_out(const char *path)
{
	mfr_error e;
	if (!(w = mfr_writer_open(path, &s, NULL, 0, NULL, 0, &e))) {
		fprintf(stderr, "txt2emb: %s\n", e.msg);
		exit(1);
	}
}

int main(int argc, char **argv)
{
	mfr_error e;
	if (argc == 7 && !strcmp(argv[1], "-r")) {
		long n = atol(argv[2]), labels = atol(argv[4]);
		s.dim = (uint32_t)atol(argv[3]);
		mfr_rng r = {(uint64_t)atoll(argv[5])};
		open_out(argv[6]);
		float *v = malloc(s.dim * sizeof *v);
		for (long i = 0; i < n; i++) {
			int32_t l = (int32_t)(i % labels);
			double ss = 0;
			for (uint32_t d = 0; d < s.dim; d++) {
				v[d] = (float)(sin(l * 3.7 + d * 0.9) + 0.7 * mfr_rng_normal(&r));
				ss += (double)v[d] * v[d];
			}
			for (uint32_t d = 0; d < s.dim; d++)
				v[d] = (float)(v[d] / sqrt(ss));
			put((uint64_t)i, l, i % 3 == 0 ? MFR_F_MASKED : 0, v);
		}
		free(v);
	} else if (argc == 2 || (argc == 3 && !strcmp(argv[1], "-16"))) {
		if (argc == 3)
			s.dtype = MFR_DTYPE_F16;
		char line[1 << 16];
		float v[4096];
		while (fgets(line, sizeof line, stdin)) {
			char *p = line, *end;
			if (*p == '#' || *p == '\n')
				continue;
			unsigned long long id = strtoull(p, &p, 10);
			long label = strtol(p, &p, 10);
			unsigned long flags = strtoul(p, &p, 10);
			uint32_t d = 0;
			for (;; d++) {
				double x = strtod(p, &end);
				if (end == p)
					break;
				v[d] = (float)x;
				p = end;
			}
			if (!s.dim) {
				s.dim = d;
				open_out(argv[argc - 1]);
			}
			if (d != s.dim) {
				fprintf(stderr, "txt2emb: line with %u values, the first had %u\n", d, s.dim);
				return 1;
			}
			put(id, (int32_t)label, (uint32_t)flags, v);
		}
		if (!w) {
			fprintf(stderr, "txt2emb: no records\n");
			return 1;
		}
	} else {
		fprintf(stderr, "usage: txt2emb [-16] OUT < TEXT\n       txt2emb -r N D LABELS SEED OUT\n");
		return 2;
	}
	if (mfr_writer_close(w, &e) < 0) {
		fprintf(stderr, "txt2emb: %s\n", e.msg);
		return 1;
	}
	return 0;
}
