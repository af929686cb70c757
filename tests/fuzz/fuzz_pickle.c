/* fuzz_pickle.c — libFuzzer target for the .bin pack reader: any input must
 * parse or fail with a message, and a parsed pack must lie inside the input. */
#include <stdint.h>
#include <stdlib.h>

#include "pickle.h" /* defines: mfr_binpack_parse, mfr_binpack_free */

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	mfr_binpack b;
	mfr_error e = {{0}};
	if (mfr_binpack_parse(data, size, &b, &e) == 0) {
		if (b.n_images != 2 * b.n_pairs)
			abort();
		for (size_t i = 0; i < b.n_images; i++)
			if (b.images[i] < data || b.sizes[i] > size || b.images[i] + b.sizes[i] > data + size)
				abort();
		for (size_t i = 0; i < b.n_pairs; i++)
			if (b.issame[i] > 1)
				abort();
		mfr_binpack_free(&b);
	} else if (!e.msg[0])
		abort(); /* every failure says why */
	return 0;
}
