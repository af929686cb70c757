/* bench_stream.c — stream throughput on one core: CRC32C alone (hardware and
 * portable paths), writing a stream, and reading it back with every checksum
 * verified (what `mfr-cat --verify` does), from the page cache. Prints
 * figures; asserts nothing. Goal: verify >= 1 GB/s per core. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "crc32c.h"
#include "record.h"
#include "stream.h"

#define RECORDS 40000
#define IMAGE 5200 /* bytes: the mean JPEG size of LFW's aligned 112x112 faces */

int main(void)
{
	static uint8_t big[64 << 20];
	mfr_rng r = {1};
	for (size_t i = 0; i < sizeof big; i += 8) {
		uint64_t x = mfr_rng_next(&r);
		memcpy(big + i, &x, 8);
	}
	double t0 = mfr_now();
	uint32_t c = 0;
	int reps = 0;
	while (mfr_now() - t0 < 1.0) {
		c ^= mfr_crc32c(0, big, sizeof big);
		reps++;
	}
	double hw = reps * (double)sizeof big / (mfr_now() - t0) / 1e9;
	t0 = mfr_now();
	reps = 0;
	while (mfr_now() - t0 < 1.0) {
		c ^= mfr_crc32c_portable(0, big, sizeof big);
		reps++;
	}
	double sw = reps * (double)sizeof big / (mfr_now() - t0) / 1e9;
	printf("crc32c %s: %.2f GB/s/core; portable: %.2f GB/s/core (%08x)\n",
	       mfr_crc32c_hw() ? "sse4.2" : "(no sse4.2)", hw, sw, c);

	char path[] = "/tmp/mfr-bench-stream-XXXXXX";
	int fd = mkstemp(path);
	if (fd < 0)
		return 1;
	close(fd);
	mfr_error e;
	mfr_schema s = {.kind = MFR_KIND_FACE};
	t0 = mfr_now();
	mfr_writer *w = mfr_writer_open(path, &s, NULL, 0, NULL, 0, &e);
	uint8_t *buf = malloc(MFR_FACE_HEADER + IMAGE);
	for (int i = 0; i < RECORDS && w; i++) {
		mfr_face f = {.id = (uint64_t)i, .label = i / 20, .width = 112, .height = 112, .channels = 3,
			      .encoding = MFR_ENC_JPEG, .image = big + (size_t)i * 997 % (sizeof big - IMAGE),
			      .image_size = IMAGE};
		mfr_face_encode(&f, buf);
		if (mfr_writer_put(w, MFR_REC_DATA, buf, mfr_face_size(&f), &e) < 0)
			break;
	}
	if (!w || mfr_writer_close(w, &e) < 0) {
		fprintf(stderr, "bench_stream: %s\n", e.msg);
		return 1;
	}
	double bytes = (double)RECORDS * (MFR_FACE_HEADER + IMAGE + 16);
	printf("stream write (to page cache, fsync at close): %.2f GB/s/core\n", bytes / (mfr_now() - t0) / 1e9);

	double best = 0;
	for (int rep = 0; rep < 3; rep++) {
		const char *paths[] = {path};
		t0 = mfr_now();
		mfr_reader *rd = mfr_reader_open(paths, 1, 0, 0, &e);
		mfr_record rec;
		long n = 0;
		while (rd && mfr_reader_next(rd, &rec, &e) == 1) {
			mfr_face f;
			n += mfr_face_decode(rec.data, rec.size, &f, &e) == 0;
		}
		mfr_reader_close(rd);
		double gbs = bytes / (mfr_now() - t0) / 1e9;
		if (n != RECORDS) {
			fprintf(stderr, "bench_stream: read %ld of %d records\n", n, RECORDS);
			return 1;
		}
		best = gbs > best ? gbs : best;
	}
	printf("stream verify (read + both checksums + FACE decode, page cache): %.2f GB/s/core (goal >= 1)\n", best);
	free(buf);
	remove(path);
	return 0;
}
