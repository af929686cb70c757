/* fuzz_jpeg.c — libFuzzer target for the image decoders: JPEG (TurboJPEG) and
 * PNG (libpng) through mfr_image_decode, each input decoded as stored, as
 * grey and as RGB under a 4 Mpx cap, so a forged header cannot make a run
 * allocate more than ~16 MB. Decoding must fail cleanly or produce an image
 * of the size its header announced; it must never crash, leak or print.
 * Replayed over tests/fuzz/corpus/jpeg by `make test` (replay.c, gcc). */
#include <stdlib.h>

#include "image.h" /* defines: mfr_image_decode, mfr_jpeg_new, mfr_image_free */

/* 4 Mpx: more than any face crop, and keeps libFuzzer's 2 GB RSS limit far */
#define FUZZ_PIXEL_CAP ((size_t)1 << 22)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static mfr_jpeg *j; /* one decoder for the run, as a tool's thread keeps one */
	mfr_error e;
	if (!j && !(j = mfr_jpeg_new(&e)))
		abort();
	static const int channels[3] = {0, 1, 3};
	for (int k = 0; k < 3; k++) {
		mfr_image im = {0};
		mfr_error_clear(&e);
		if (mfr_image_decode(j, data, size, channels[k], FUZZ_PIXEL_CAP, &im, &e) == 0) {
			/* a success is a whole image of the promised shape */
			if (im.w <= 0 || im.h <= 0 || (size_t)im.w * im.h > FUZZ_PIXEL_CAP ||
			    (channels[k] && im.c != channels[k]) || (im.c != 1 && im.c != 3) || !im.px)
				abort();
			/* touch every byte, so MSan/ASan see uninitialised or short buffers */
			unsigned sum = 0;
			for (size_t i = 0, n = (size_t)im.w * im.h * im.c; i < n; i++)
				sum += im.px[i];
			volatile unsigned sink = sum;
			(void)sink;
		} else if (!e.msg[0] || im.px) {
			abort(); /* a failure names its cause and leaves *out zeroed */
		}
		mfr_image_free(&im);
	}
	return 0;
}
