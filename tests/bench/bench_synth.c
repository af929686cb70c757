/* bench_synth.c — one-thread throughput of the synthetic face generator:
 * faces rendered per second (112x112, default options), and rendered then
 * JPEG-encoded at quality 90 as mfr-synth does. Also the share of frames
 * whose options skip work (no blur, no noise), so runs can be compared.
 * Prints figures, asserts nothing. The target from the issue: >= 2000
 * faces/s per core for rendering.
 */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "image.h" /* defines: mfr_jpeg_new, mfr_jpeg_encode */
#include "synth.h" /* defines: mfr_synth_* */

static const double SECONDS = 2.0; /* CPU seconds per figure: averages out frequency steps */

/* This thread's CPU time, not wall time: "per core" should not depend on
 * what else the machine runs. */
static double now(void)
{
	struct timespec t;
	clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
	return t.tv_sec + t.tv_nsec * 1e-9;
}

static void die(const char *what, const mfr_error *e)
{
	fprintf(stderr, "bench_synth: %s: %s\n", what, e->msg);
	exit(1);
}

/* Renders faces of a 100-identity population in id order (as mfr-synth
 * does) for SECONDS of CPU; returns faces per second. */
static double run(const mfr_synth_opts *o, mfr_jpeg *jpeg, size_t *bytes)
{
	static uint8_t px[MFR_SYNTH_SIZE * MFR_SYNTH_SIZE * 3];
	mfr_error e;
	mfr_synth_face f;
	double t0 = now(), t;
	uint64_t n = 0;
	*bytes = 0;
	do {
		for (int i = 0; i < 50; i++, n++) {
			if (n % 10 == 0)
				mfr_synth_identity(1, n / 10 % 100, o, &f);
			if (mfr_synth_render(&f, 1, n % 10, o, px, NULL, &e) < 0)
				die("render", &e);
			if (jpeg) {
				mfr_image im = {MFR_SYNTH_SIZE, MFR_SYNTH_SIZE, 3, px};
				uint8_t *out;
				size_t len;
				if (mfr_jpeg_encode(jpeg, &im, 90, &out, &len, &e) < 0)
					die("jpeg", &e);
				*bytes += len;
				free(out);
			}
		}
		t = now() - t0;
	} while (t < SECONDS);
	if (jpeg)
		*bytes /= n;
	return (double)n / t;
}

int main(void)
{
	mfr_error e;
	mfr_synth_opts o;
	mfr_synth_defaults(&o);
	size_t bytes;
	double r = run(&o, NULL, &bytes);
	printf("synth render (defaults): %.0f faces/s/core\n", r);
	mfr_jpeg *j = mfr_jpeg_new(&e);
	if (!j)
		die("jpeg", &e);
	double rj = run(&o, j, &bytes);
	printf("synth render + JPEG q90: %.0f faces/s/core (%zu bytes a face)\n", rj, bytes);
	o.variation = 0;
	double r0 = run(&o, NULL, &bytes);
	printf("synth render, variation 0 (frontal, no blur or noise): %.0f faces/s/core\n", r0);
	mfr_jpeg_free(j);
	return 0;
}
