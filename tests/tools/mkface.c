/* mkface.c — test fixture writer: a FACE stream of N records of one size
 * with a smooth grey-brown gradient image (raw, JPEG or PNG), ids 0..N-1,
 * label 0, with or without landmarks (the ArcFace template scaled to the
 * image). For the tools' tests of sizes and encodings the synthetic
 * generator does not make. Test code only.
 *
 * usage: mkface W H C ENC N LM > out.mfr
 *   C 1 or 3; ENC raw|jpeg|png; LM 1: landmarks set (flag LANDMARKS), 0: none */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "image.h"  /* defines: mfr_image, mfr_jpeg_*, mfr_png_encode, mfr_arcface_template */
#include "record.h" /* defines: mfr_face, mfr_face_encode */
#include "stream.h" /* defines: mfr_writer_* */

int main(int argc, char **argv)
{
	if (argc != 7) {
		fprintf(stderr, "usage: mkface W H C ENC N LM > out.mfr\n");
		return 2;
	}
	int w = atoi(argv[1]), h = atoi(argv[2]), c = atoi(argv[3]), n = atoi(argv[5]), lm = atoi(argv[6]);
	const char *enc = argv[4];
	mfr_error e;
	mfr_image im;
	if (w < 1 || h < 1 || (c != 1 && c != 3) || mfr_image_alloc(&im, w, h, c, &e) < 0) {
		fprintf(stderr, "mkface: bad size\n");
		return 2;
	}
	for (int y = 0; y < h; y++)
		for (int x = 0; x < w; x++)
			for (int k = 0; k < c; k++)
				im.px[((size_t)y * w + x) * c + k] = (uint8_t)(90 + 60 * x / w + 40 * y / h - 20 * k);
	uint8_t *data = im.px;
	size_t size = (size_t)w * h * c;
	mfr_face f = {.width = (uint16_t)w, .height = (uint16_t)h, .channels = (uint8_t)c};
	if (!strcmp(enc, "jpeg")) {
		mfr_jpeg *j = mfr_jpeg_new(&e);
		if (!j || mfr_jpeg_encode(j, &im, 90, &data, &size, &e) < 0)
			return fprintf(stderr, "mkface: %s\n", e.msg), 1;
		mfr_jpeg_free(j);
		f.encoding = MFR_ENC_JPEG;
	} else if (!strcmp(enc, "png")) {
		if (mfr_png_encode(&im, &data, &size, &e) < 0)
			return fprintf(stderr, "mkface: %s\n", e.msg), 1;
		f.encoding = MFR_ENC_PNG;
	} else {
		f.encoding = MFR_ENC_RAW;
	}
	if (lm) {
		f.flags |= MFR_F_LANDMARKS;
		for (int i = 0; i < 10; i++)
			f.landmarks[i] = mfr_arcface_template[i] * (float)(i % 2 ? h : w) / 112.0f;
	}
	f.image = data;
	f.image_size = (uint32_t)size;
	mfr_schema s = {.kind = MFR_KIND_FACE};
	mfr_writer *wr = mfr_writer_open(NULL, &s, "mkface", argc, argv, 0, &e);
	if (!wr)
		return fprintf(stderr, "mkface: %s\n", e.msg), 1;
	uint8_t *buf = malloc(mfr_face_size(&f));
	for (int i = 0; i < n; i++) {
		f.id = (uint64_t)i;
		mfr_face_encode(&f, buf);
		if (mfr_writer_put(wr, MFR_REC_DATA, buf, mfr_face_size(&f), &e) < 0)
			return fprintf(stderr, "mkface: %s\n", e.msg), 1;
	}
	if (mfr_writer_close(wr, &e) < 0)
		return fprintf(stderr, "mkface: %s\n", e.msg), 1;
	free(buf);
	if (data != im.px)
		free(data);
	mfr_image_free(&im);
	return 0;
}
