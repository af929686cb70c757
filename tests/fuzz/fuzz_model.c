/* fuzz_model.c — the .mfrm decoder over arbitrary bytes: an error or a model,
 * never a crash, an out-of-bounds read or a leak. */
#include <stdint.h>
#include <stdlib.h>

#include "model.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	mfr_model m;
	mfr_error e;
	if (mfr_model_decode(data, size, "fuzz", &m, &e) == 0)
		mfr_model_free(&m);
	return 0;
}
