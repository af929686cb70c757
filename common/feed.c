/* feed.c — a FACE record to a network input (see feed.h). */
#include "feed.h"

#include <string.h>

/* The image of f decoded to 3 channels in *im. */
static int decode_rgb(mfr_jpeg *j, const mfr_face *f, mfr_image *im, mfr_error *e)
{
	mfr_image raw = {0};
	if (f->encoding == MFR_ENC_RAW) {
		if (mfr_image_alloc(&raw, f->width, f->height, f->channels, e) < 0)
			return -1;
		memcpy(raw.px, f->image, f->image_size);
	} else if (mfr_image_decode(j, f->image, f->image_size, 3, MFR_PIXEL_CAP, &raw, e) < 0)
		return -1;
	if (raw.c == 3) {
		*im = raw;
		return 0;
	}
	if (mfr_image_alloc(im, raw.w, raw.h, 3, e) < 0) { /* grey: replicate to RGB */
		mfr_image_free(&raw);
		return -1;
	}
	for (int i = 0; i < raw.w * raw.h; i++)
		im->px[3 * i] = im->px[3 * i + 1] = im->px[3 * i + 2] = raw.px[i];
	mfr_image_free(&raw);
	return 0;
}

/* One image's pixels (RGB interleaved, W x H) to the network's planes, read
 * mirrored when flip is set. */
static void normalize_one(const uint8_t *px, int W, int H, const mfr_input_spec *in, int flip, float *dst)
{
	size_t plane = (size_t)W * H;
	for (int c = 0; c < 3; c++) {
		int sc = in->bgr ? 2 - c : c;
		float mean = in->mean[c], scale = in->scale[c];
		float *d = dst + c * plane;
		for (int y = 0; y < H; y++) {
			const uint8_t *row = px + (size_t)y * W * 3;
			float *o = d + (size_t)y * W;
			if (flip)
				for (int x = 0; x < W; x++)
					o[W - 1 - x] = ((float)row[3 * x + sc] - mean) * scale;
			else
				for (int x = 0; x < W; x++)
					o[x] = ((float)row[3 * x + sc] - mean) * scale;
		}
	}
}

void mfr_input_normalize(const uint8_t *px, size_t n, const mfr_input_spec *in, float *dst)
{
	size_t img = (size_t)in->width * in->height * 3;
	for (size_t i = 0; i < n; i++)
		normalize_one(px + i * img, in->width, in->height, in, 0, dst + i * img);
}

int mfr_face_to_input(mfr_jpeg *j, const mfr_face *f, const mfr_input_spec *in, int flip, mfr_pixel_hook hook,
		      void *hook_ctx, uint64_t salt, int raw, void *dst, uint32_t *flags, mfr_error *e)
{
	mfr_image im = {0}, al = {0};
	int W = in->width, H = in->height, rc = -1;
	*flags = f->flags;
	if (decode_rgb(j, f, &im, e) < 0)
		return -1;
	mfr_image *use = &im;
	if (im.w != W || im.h != H) {
		if (!(f->flags & MFR_F_LANDMARKS) || !in->has_template) {
			mfr_fail(e, "the face is %dx%d, the model takes %dx%d, and %s", im.w, im.h, W, H,
				 in->has_template ? "the record has no landmarks to align it by"
						  : "the model has no alignment template");
			goto out;
		}
		if (mfr_align_face(&im, f->landmarks, in->template_lm, W, H, &al, NULL, e) < 0)
			goto out;
		use = &al;
	}
	if (hook && hook(hook_ctx, use, f, salt, flags, e) < 0)
		goto out;
	if (!raw)
		normalize_one(use->px, W, H, in, flip, dst);
	else if (!flip)
		memcpy(dst, use->px, (size_t)W * H * 3);
	else
		for (int y = 0; y < H; y++) {
			const uint8_t *row = use->px + (size_t)y * W * 3;
			uint8_t *o = (uint8_t *)dst + (size_t)y * W * 3;
			for (int x = 0; x < W; x++)
				memcpy(o + 3 * (W - 1 - x), row + 3 * x, 3);
		}
	rc = 0;
out:
	mfr_image_free(&im);
	mfr_image_free(&al);
	return rc;
}
