/* fuzz_dlib.c — the JSON reader and the tfjs weights-manifest reader of the
 * dlib converter over arbitrary bytes: an error or a parse, never a crash,
 * an out-of-bounds read or a leak. */
#include <stdint.h>
#include <stdlib.h>

#include "dlib.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	mfr_error e;
	mfr_json *j = mfr_json_parse((const char *)data, size, "fuzz", &e);
	mfr_json_free(j);
	mfr_tfjs w;
	if (mfr_tfjs_parse((const char *)data, size, "fuzz", &w, &e) == 0)
		mfr_tfjs_free(&w);
	return 0;
}
