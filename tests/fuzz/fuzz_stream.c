/* fuzz_stream.c — the record-stream reader and the FACE/EMBEDDING payload
 * decoders over arbitrary bytes: every input must end in a record, a clean
 * end or an error, without a crash or an out-of-bounds read. */
#include <stdio.h>
#include <stdlib.h>

#include "record.h"
#include "stream.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	FILE *f = fmemopen((void *)data, size ? size : 1, "rb");
	if (!f)
		return 0;
	if (!size)
		fgetc(f); /* fmemopen cannot open an empty buffer: consume the one byte */
	mfr_error e;
	/* a small cap keeps the fuzzer from spending time on huge allocations */
	mfr_reader *r = mfr_reader_open_file(f, "fuzz", 1 << 20, 1, &e);
	if (r) {
		const mfr_schema *s = mfr_reader_schema(r);
		float *vec = s->kind == MFR_KIND_EMBEDDING ? malloc(s->dim * sizeof *vec) : NULL;
		mfr_record rec;
		while (mfr_reader_next(r, &rec, &e) == 1) {
			if (rec.type != MFR_REC_DATA)
				continue;
			if (s->kind == MFR_KIND_FACE) {
				mfr_face face;
				mfr_face_decode(rec.data, rec.size, &face, &e);
			} else {
				mfr_embedding v = {.vec = vec};
				mfr_embedding_decode(rec.data, rec.size, s, &v, &e);
			}
		}
		free(vec);
		mfr_reader_close(r);
	}
	fclose(f);
	return 0;
}
