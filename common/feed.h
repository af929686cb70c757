/* feed.h — one FACE record to one network input: decode, replicate grey to
 * RGB, align to the model's template when the size differs (from the
 * record's landmarks; never a silent resize), an optional edit of the pixels
 * (online mask augmentation), mirror, and the model's normalisation into
 * NCHW planes (or the pixels as bytes, for a GPU to normalise). Shared by mfr-embed and the trainer's loader; thread-safe with
 * one mfr_jpeg per thread. */
#ifndef MFR_FEED_H
#define MFR_FEED_H

#include "image.h"  /* defines: mfr_jpeg, mfr_image */
#include "model.h"  /* defines: mfr_input_spec */
#include "record.h" /* defines: mfr_face */

/* Edits the decoded, aligned RGB image of face f in place (e.g. draws a mask),
 * and may set bits in *flags; salt varies the edit between uses of the same
 * face (the trainer passes the epoch). Returns 0 or -1 with e filled. */
typedef int (*mfr_pixel_hook)(void *ctx, mfr_image *im, const mfr_face *f, uint64_t salt, uint32_t *flags,
			      mfr_error *e);

/* Writes face f at dst, mirrored left-right when flip is set; hook (may be
 * NULL) runs on the RGB pixels first, given salt. raw = 0: in->width x
 * in->height x 3 floats, plane by plane, in->bgr order, (pixel - mean) *
 * scale (what mfr_input_normalize makes of the raw form). raw = 1: the
 * pixels as bytes, in->height x in->width x 3, RGB interleaved (a quarter of
 * the bytes, for a GPU to normalise). *flags receives the record's flags and
 * whatever the hook adds. Returns 0 or -1 with e saying what (the caller
 * adds file and offset). */
int mfr_face_to_input(mfr_jpeg *j, const mfr_face *f, const mfr_input_spec *in, int flip, mfr_pixel_hook hook,
		      void *hook_ctx, uint64_t salt, int raw, void *dst, uint32_t *flags, mfr_error *e);

/* n images of raw input (height x width x 3 bytes each, RGB interleaved) to
 * the network's input: n x 3 x height x width floats, plane by plane in
 * in->bgr order, (pixel - mean) * scale. */
void mfr_input_normalize(const uint8_t *px, size_t n, const mfr_input_spec *in, float *dst);

#endif
