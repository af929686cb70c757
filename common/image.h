/* image.h — images in memory, JPEG and PNG coding, and face alignment.
 *
 * JPEG goes through TurboJPEG, whose error handler returns instead of exiting
 * and prints nothing; PNG through libpng's simplified API. Every decoder checks
 * width*height against a pixel cap before allocating. Alignment is the
 * insightface convention: a least-squares similarity transform (Umeyama) of 5
 * landmarks onto a template, then a bilinear affine warp with a black border.
 */
#ifndef MFR_IMAGE_H
#define MFR_IMAGE_H

#include <stddef.h>
#include <stdint.h>

#include "util.h" /* defines: mfr_error */

/* Interleaved 8-bit image, rows top to bottom, c = 1 (grey) or 3 (RGB).
 * px holds w*h*c bytes and is owned by the image. */
typedef struct {
	int w, h, c;
	uint8_t *px;
} mfr_image;

/* Default cap on decoded pixels: 64 Mpx, far above any face photograph, low
 * enough that a forged header cannot ask for gigabytes. */
#define MFR_PIXEL_CAP ((size_t)1 << 26)

/* Allocates px for a w x h x c image (contents undefined). c may be 1..4
 * (4 for callers that keep an alpha plane; the codecs take 1 or 3). On
 * failure *im is zeroed. */
int mfr_image_alloc(mfr_image *im, int w, int h, int c, mfr_error *e);
/* Frees px and zeroes the struct; safe on a zeroed image. */
void mfr_image_free(mfr_image *im);

enum { MFR_IMG_UNKNOWN = 0, MFR_IMG_JPEG = 1, MFR_IMG_PNG = 2 };
/* Recognises JPEG (FF D8 FF) and PNG (89 50 4E 47 0D 0A 1A 0A) by their magic. */
int mfr_image_sniff(const uint8_t *p, size_t n);

/* A TurboJPEG decoder and encoder pair; one per thread (not thread-safe). */
typedef struct mfr_jpeg mfr_jpeg;
mfr_jpeg *mfr_jpeg_new(mfr_error *e);
void mfr_jpeg_free(mfr_jpeg *j);

/* Reads a JPEG's size without decoding it. */
int mfr_jpeg_info(mfr_jpeg *j, const uint8_t *p, size_t n, int *w, int *h, int *c, mfr_error *e);

/* Decodes a JPEG into *out with `channels` (1 or 3, 0 = as stored: 1 for
 * greyscale, else 3). Refuses images over pixel_cap pixels before allocating.
 * Warnings (e.g. a truncated scan) are errors: a damaged face is not data;
 * so are progressive files with an abusive number of scans. CMYK/YCCK files
 * are converted taking the inks as stored inverted (Adobe, as Pillow does).
 * *out must be zeroed or freed; on failure it is left zeroed. */
int mfr_jpeg_decode(mfr_jpeg *j, const uint8_t *p, size_t n, int channels, size_t pixel_cap,
		    mfr_image *out, mfr_error *e);

/* Encodes im (c = 1 or 3) at quality 1..100 with 4:2:0 subsampling for colour
 * (4:4:4 when quality >= 96). *out is malloc'd; the caller frees it. On
 * failure *out is NULL and *n 0. */
int mfr_jpeg_encode(mfr_jpeg *j, const mfr_image *im, int quality, uint8_t **out, size_t *n,
		    mfr_error *e);

/* PNG decode (8-bit; 16-bit, palette and alpha are converted, alpha dropped
 * over black) and encode, same conventions as the JPEG pair. */
int mfr_png_decode(const uint8_t *p, size_t n, int channels, size_t pixel_cap, mfr_image *out,
		   mfr_error *e);
int mfr_png_encode(const mfr_image *im, uint8_t **out, size_t *n, mfr_error *e);

/* Sniffs and decodes JPEG or PNG (j is used for JPEG). */
int mfr_image_decode(mfr_jpeg *j, const uint8_t *p, size_t n, int channels, size_t pixel_cap,
		     mfr_image *out, mfr_error *e);

/* The ArcFace 112x112 template: left eye, right eye, nose tip, left and right
 * mouth corners, as x1 y1 .. x5 y5 (insightface's arcface_dst). */
extern const float mfr_arcface_template[10];

/* Least-squares similarity transform (rotation, uniform scale, translation)
 * taking the n points src to dst (x y pairs), Umeyama's method; a reflection
 * is never returned (the sign of the smallest singular direction is flipped,
 * as Umeyama prescribes; in 2-D this has a closed form, see image.c). Equals
 * skimage's SimilarityTransform.estimate. M is row-major 2x3:
 * x' = M[0]x + M[1]y + M[2], y' = M[3]x + M[4]y + M[5]. Fails on n < 2,
 * non-finite points, or degenerate input (all src or all dst points equal). */
int mfr_similarity(const float *src, const float *dst, int n, float M[6], mfr_error *e);

/* Inverts a 2x3 affine map. Returns -1 when singular. */
int mfr_affine_invert(const float M[6], float inv[6]);

/* dst (already allocated, same c as src) = src warped by M (src -> dst
 * coordinates), bilinear, pixels from outside src are `border` (0 = black,
 * as cv2.warpAffine); each of the four taps is tested, so edge pixels blend
 * with the border as OpenCV's do. Pixel centres at integer coordinates
 * (OpenCV's; PIL's transform puts them at +0.5, which shifts the result by
 * 0.5(s-1) px at scale s). Source positions are rounded to 1/1024 px and
 * values to nearest: within 1 level of exact bilinear. If the channel counts
 * differ or M is singular, dst is filled with border. */
void mfr_warp_affine(mfr_image *dst, const mfr_image *src, const float M[6], uint8_t border);

/* Aligns a face: estimates the similarity taking landmarks lm (src frame) to
 * tmpl (given in the out_w x out_h frame), warps into a fresh out_w x out_h
 * image *dst (zeroed or freed before), and writes the landmarks mapped into
 * the new frame to out_lm (may be NULL). */
int mfr_align_face(const mfr_image *src, const float lm[10], const float tmpl[10], int out_w,
		   int out_h, mfr_image *dst, float out_lm[10], mfr_error *e);

#endif
