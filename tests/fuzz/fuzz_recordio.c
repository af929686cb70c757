/* fuzz_recordio.c — libFuzzer target for the RecordIO reader, through the same
 * FILE* path as files (fmemopen). An input is a .rec, or, when it begins with
 * "idx:", an .idx text up to the first NUL byte followed by the .rec (a .rec
 * starts with the magic 0a 23 d7 ce, so the two never collide). The property
 * parser also gets the whole input. Every failure must carry a message. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "recordio.h" /* defines: mfr_recordio_open_stream, mfr_recordio_next, ... */

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* A small cap keeps the fuzzer off multi-megabyte allocations; the cap logic
 * is the same whatever its value. */
#define FUZZ_CAP (1u << 20)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	mfr_error e = {{0}};
	mfr_recordio_property p;
	if (mfr_recordio_parse_property((const char *)data, size, "property", &p, &e) != 0 && !e.msg[0])
		abort();

	const uint8_t *rec = data, *idx = NULL;
	size_t nrec = size, nidx = 0;
	if (size >= 4 && memcmp(data, "idx:", 4) == 0) {
		const uint8_t *nul = memchr(data + 4, 0, size - 4);
		idx = data + 4;
		nidx = nul ? (size_t)(nul - idx) : size - 4;
		rec = nul ? nul + 1 : data + size;
		nrec = (size_t)(data + size - rec);
	}
	/* fmemopen wants a non-NULL buffer even for zero bytes */
	static uint8_t empty[1];
	FILE *fr = fmemopen(nrec ? (void *)rec : empty, nrec, "rb");
	FILE *fi = idx ? fmemopen(nidx ? (void *)idx : empty, nidx, "r") : NULL;
	if (!fr || (idx && !fi))
		abort();
	mfr_error_clear(&e);
	mfr_recordio *r = mfr_recordio_open_stream(fr, "fuzz.rec", fi, "fuzz.idx", FUZZ_CAP, &e);
	if (!r) {
		if (!e.msg[0])
			abort();
	} else {
		mfr_recordio_image im;
		int k;
		while ((k = mfr_recordio_next(r, &im, &e)) == 1)
			if (im.image_size > FUZZ_CAP || im.label < 0)
				abort();
		if (k < 0 && !e.msg[0])
			abort();
		mfr_recordio_close(r);
	}
	fclose(fr);
	if (fi)
		fclose(fi);
	return 0;
}
