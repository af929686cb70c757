/* fuzz_arch.c — the .arch parser over arbitrary bytes: every input must end
 * in a graph or an error message, without a crash or an out-of-bounds read.
 * A graph that parses must also round-trip: its canonical text parses to the
 * same totals and writes the same bytes again. */
#include <stdlib.h>
#include <string.h>

#include "arch.h" /* defines: mfr_arch_parse, mfr_arch_format, mfr_arch_describe */

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	mfr_error e;
	mfr_arch *a = mfr_arch_parse((const char *)data, size, "fuzz", &e);
	if (!a) {
		if (!e.msg[0])
			abort(); /* a failure must say why */
		return 0;
	}
	size_t n1, n2;
	char *c1 = mfr_arch_format(a, &n1, &e);
	mfr_arch *b = c1 ? mfr_arch_parse(c1, n1, "canonical", &e) : NULL;
	char *c2 = b ? mfr_arch_format(b, &n2, &e) : NULL;
	if (!c2 || n1 != n2 || memcmp(c1, c2, n1) || a->macs != b->macs || a->params != b->params ||
	    a->n_tensors != b->n_tensors)
		abort(); /* the canonical form must round-trip */
	FILE *f = fopen("/dev/null", "w");
	if (f) {
		mfr_arch_describe(a, f, &e);
		fclose(f);
	}
	free(c1);
	free(c2);
	mfr_arch_free(a);
	mfr_arch_free(b);
	return 0;
}
