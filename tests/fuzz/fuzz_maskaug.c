/* fuzz_maskaug.c — the mask renderer over arbitrary landmarks, image sizes
 * and mask parameters: every input must draw or fail with a message,
 * without a crash, an out-of-bounds write or undefined behaviour.
 *
 * Input layout: u8 width-16, u8 height-16 (images of 16..271 px), u8 flags
 * (bit 0: landmarks from the input, else none), u8 style, then 10 f32
 * landmarks, then 5 bytes of shape parameters (top, bottom, width, fit,
 * shift as byte/255), u8 colour, u8 pattern; missing bytes read as zero. */
#include <stdlib.h>
#include <string.h>

#include "maskaug.h"
#include "util.h" /* defines: mfr_getf32 */

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	uint8_t in[64] = {0};
	memcpy(in, data, size < sizeof in ? size : sizeof in);
	int w = 16 + in[0], h = 16 + in[1];
	float lm[10];
	for (int i = 0; i < 10; i++)
		lm[i] = mfr_getf32(in + 4 + 4 * i);
	mfr_maskaug cfg;
	mfr_maskaug_defaults(&cfg);
	mfr_maskaug_params p = {.style = in[3] % 6, .top = in[44] / 255.0f, .bottom = in[45] / 255.0f,
				.width = in[46] / 255.0f, .fit = in[47] / 255.0f, .shift = in[48] / 127.5f - 1,
				.colour = in[49], .pattern = in[50] % 7, .key = in[51]};
	uint8_t *img = malloc((size_t)w * h * 3), *alpha = malloc((size_t)w * h);
	if (!img || !alpha)
		goto out;
	memset(img, 128, (size_t)w * h * 3);
	mfr_error e;
	mfr_maskaug_info info;
	mfr_maskaug_draw(&cfg, &p, img, w, h, (in[2] & 1) ? lm : NULL, alpha, &info, &e);
out:
	free(img);
	free(alpha);
	return 0;
}
