/* fuzz_pairs.c — mfr-score's text inputs over arbitrary bytes: the pairs
 * TSV, LFW's pairs.txt and mfr-pack's label map. Every input must end in a
 * result or an error message, without a crash or a read past the bytes
 * given (the parsers take a length, not a NUL-terminated string). A pairs
 * list that parses must hold sound values and read back the same when
 * written out as TSV; an LFW list must assign each pair a set in range. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "score.h" /* defines: mfr_pairs_parse, mfr_lfw_pairs_parse, mfr_label_map_parse */

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	/* a copy of exactly size bytes, so ASan catches a read past the end */
	char *text = malloc(size ? size : 1);
	if (!text)
		return 0;
	memcpy(text, data, size);
	mfr_error e;
	mfr_pairs p;
	if (mfr_pairs_parse(text, size, "fuzz", &p, &e) == 0) {
		char *out = NULL;
		size_t n = 0;
		FILE *f = open_memstream(&out, &n);
		if (!f)
			abort();
		fprintf(f, "id_a\tid_b\tsame\n");
		for (size_t k = 0; k < p.n; k++) {
			if (p.same[k] > 1)
				abort();
			fprintf(f, "%llu\t%llu\t%d\n", (unsigned long long)p.a[k], (unsigned long long)p.b[k], p.same[k]);
		}
		fclose(f);
		mfr_pairs q;
		if (mfr_pairs_parse(out, n, "again", &q, &e) != 0 || q.n != p.n ||
		    memcmp(q.a, p.a, p.n * sizeof *p.a) || memcmp(q.b, p.b, p.n * sizeof *p.b) ||
		    memcmp(q.same, p.same, p.n))
			abort(); /* a parsed list must round-trip */
		mfr_pairs_free(&q);
		mfr_pairs_free(&p);
		free(out);
	} else if (!e.msg[0])
		abort(); /* a failure must say why */
	mfr_lfw_pairs l;
	if (mfr_lfw_pairs_parse(text, size, "fuzz", &l, &e) == 0) {
		for (size_t k = 0; k < l.n; k++)
			if (l.fold[k] < 0 || l.fold[k] >= l.sets || l.num_a[k] < 1 || l.num_b[k] < 1 || !l.name_a[k][0] ||
			    (l.same[k] && strcmp(l.name_a[k], l.name_b[k])))
				abort();
		mfr_lfw_pairs_free(&l);
	} else if (!e.msg[0])
		abort();
	mfr_label_map m;
	if (mfr_label_map_parse(text, size, "fuzz", &m, &e) == 0) {
		for (size_t k = 0; k < m.n; k++)
			if (m.label[k] < 0 || !m.name[k][0] || strchr(m.name[k], '\t'))
				abort();
		mfr_label_map_free(&m);
	} else if (!e.msg[0])
		abort();
	free(text);
	return 0;
}
