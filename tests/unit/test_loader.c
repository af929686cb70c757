/* test_loader.c — the trainer's loader (loader.h) on raw 112x112 faces
 * whose pixels spell their sample number: every epoch visits every face
 * once; epochs differ; ranks take disjoint slices that make up the global
 * batch; threads, prefetch and rank count do not change what a step sees;
 * flips are per (epoch, sample) and about half; the pixel hook sees the
 * epoch; raw output (bytes, in memory from the caller's allocator) is the
 * same batches before normalisation; a damaged record is reported with file
 * and offset. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check.h"
#include "loader.h"
#include "record.h"
#include "stream.h"

enum { N = 103, W = 112 };

/* Writes N raw faces; face i has R = i % 256, G = i / 256 on its left half
 * and B = 200 left, 50 right (so a mirror is visible). Labels i % 7. */
static void write_faces(const char *path)
{
	mfr_error e;
	mfr_schema s = {.kind = MFR_KIND_FACE};
	mfr_writer *w = mfr_writer_open(path, &s, NULL, 0, NULL, 1, &e);
	static uint8_t px[W * W * 3], buf[MFR_FACE_HEADER + sizeof px];
	for (int i = 0; i < N; i++) {
		for (int y = 0; y < W; y++)
			for (int x = 0; x < W; x++) {
				uint8_t *p = px + (y * W + x) * 3;
				p[0] = (uint8_t)(i % 256), p[1] = (uint8_t)(i / 256), p[2] = x < W / 2 ? 200 : 50;
			}
		mfr_face f = {.id = 1000 + (uint64_t)i, .label = i % 7, .width = W, .height = W, .channels = 3,
			      .encoding = MFR_ENC_RAW, .image = px, .image_size = sizeof px};
		mfr_face_encode(&f, buf);
		if (!w || mfr_writer_put(w, MFR_REC_DATA, buf, mfr_face_size(&f), &e) < 0) {
			fprintf(stderr, "fixture: %s\n", e.msg);
			exit(1);
		}
	}
	if (mfr_writer_close(w, &e) < 0) {
		fprintf(stderr, "fixture: %s\n", e.msg);
		exit(1);
	}
}

static int pixel(const float *img, int c, int x) { return (int)(img[c * W * W + x] * 128 + 127.5 + 0.5); }

/* The sample number shown by image k of a batch, and whether it is mirrored. */
static int sample_of(const float *x, int k, int *flipped)
{
	const float *img = x + (size_t)k * 3 * W * W;
	*flipped = pixel(img, 2, 0) == 50;
	return pixel(img, 0, 0) + 256 * pixel(img, 1, 0);
}

/* an allocator that counts, for the raw output */
static int allocs, releases;
static void *count_alloc(void *ctx, size_t bytes, mfr_error *e)
{
	(void)ctx, (void)e;
	allocs++;
	return malloc(bytes);
}
static void count_release(void *ctx, void *p)
{
	(void)ctx;
	releases += p != NULL;
	free(p);
}

/* Steps of a float loader and a raw one side by side: the raw batches,
 * normalised, are the float batches bit for bit. */
static int raw_matches(mfr_loader *fl, mfr_loader *rl, int batch, int steps)
{
	mfr_error e;
	mfr_input_spec in;
	mfr_input_spec_insightface(&in);
	size_t n = (size_t)batch * 3 * W * W;
	float *y = malloc(n * sizeof *y);
	int same = 1;
	for (int t = 0; t < steps; t++) {
		void *x, *r;
		int32_t *lab, *rlab;
		uint64_t *ids, *rids;
		if (mfr_loader_next(fl, &x, &lab, &ids, NULL, &e) < 0 || mfr_loader_next(rl, &r, &rlab, &rids, NULL, &e) < 0) {
			fprintf(stderr, "next: %s\n", e.msg);
			exit(1);
		}
		mfr_input_normalize(r, (size_t)batch, &in, y);
		same &= !memcmp(x, y, n * sizeof *y) && !memcmp(lab, rlab, (size_t)batch * sizeof *lab) &&
			!memcmp(ids, rids, (size_t)batch * sizeof *ids);
	}
	free(y);
	return same;
}

/* calls of the pixel hook per epoch (its salt); workers run ahead of the
 * consumer, so the epoch after the last one read may have some too */
static int hook_calls[8];

static int hook(void *ctx, mfr_image *im, const mfr_face *f, uint64_t salt, uint32_t *flags, mfr_error *e)
{
	(void)ctx, (void)im, (void)f, (void)flags, (void)e;
	__atomic_add_fetch(&hook_calls[salt < 7 ? salt : 7], 1, __ATOMIC_SEQ_CST);
	return 0;
}

static mfr_loader *open_loader(const char *path, int batch, int rank, int ranks, int threads, int prefetch)
{
	const char *paths[1] = {path};
	mfr_loader_config c = {.paths = paths, .npaths = 1, .batch = batch, .rank = rank, .ranks = ranks, .seed = 5,
			       .threads = threads, .prefetch = prefetch, .flip = 1, .hook = hook};
	mfr_input_spec_insightface(&c.input);
	mfr_error e;
	mfr_loader *l = mfr_loader_open(&c, &e);
	if (!l || mfr_loader_start(l, 0, &e) < 0) {
		fprintf(stderr, "loader: %s\n", e.msg);
		exit(1);
	}
	return l;
}

/* Reads `steps` steps of a loader into seq (sample numbers) and fl (flips). */
static void read_steps(mfr_loader *l, int batch, int steps, int *seq, int *fl)
{
	mfr_error e;
	for (int t = 0; t < steps; t++) {
		void *x;
		int32_t *lab;
		uint64_t *ids;
		if (mfr_loader_next(l, &x, &lab, &ids, NULL, &e) < 0) {
			fprintf(stderr, "next: %s\n", e.msg);
			exit(1);
		}
		for (int k = 0; k < batch; k++) {
			int i = sample_of(x, k, &fl[t * batch + k]);
			seq[t * batch + k] = i;
			CHECK(ids[k] == 1000 + (uint64_t)i && lab[k] == i % 7);
		}
	}
}

int main(void)
{
	char path[] = "/tmp/test_loader_XXXXXX";
	int fd = mkstemp(path);
	close(fd);
	write_faces(path);

	/* one rank, batch 10: 10 steps per epoch (3 faces dropped), 3 epochs */
	mfr_loader *l = open_loader(path, 10, 0, 1, 3, 2);
	CHECK_EQ_INT(mfr_loader_samples(l), N);
	CHECK_EQ_INT(mfr_loader_classes(l), 7);
	CHECK_EQ_INT(mfr_loader_steps_per_epoch(l), 10);
	int seq[300], fl[300];
	read_steps(l, 10, 30, seq, fl);
	mfr_loader_close(l);
	for (int ep = 0; ep < 3; ep++) {
		int seen[N] = {0}, dup = 0;
		for (int i = 0; i < 100; i++)
			dup += seen[seq[ep * 100 + i]]++ > 0;
		CHECK_EQ_INT(dup, 0); /* each face at most once in an epoch */
	}
	CHECK(memcmp(seq, seq + 100, 100 * sizeof *seq) != 0); /* epochs are ordered differently */
	int flips = 0;
	for (int i = 0; i < 300; i++)
		flips += fl[i];
	CHECK(flips > 100 && flips < 200);
	/* every face of the 3 epochs read went through the hook once, with its epoch */
	CHECK_EQ_INT(hook_calls[0], 100);
	CHECK_EQ_INT(hook_calls[1], 100);
	CHECK_EQ_INT(hook_calls[2], 100);
	CHECK(hook_calls[3] <= 30 && hook_calls[4] == 0);

	/* the bijection visits 0..N-1 exactly once */
	l = open_loader(path, 10, 0, 1, 1, 1);
	int hit[N] = {0}, all = 1;
	for (uint64_t i = 0; i < N; i++)
		hit[mfr_loader_order(l, 4, i)]++;
	for (int i = 0; i < N; i++)
		all &= hit[i] == 1;
	CHECK(all);
	mfr_loader_close(l);

	/* one thread, prefetch 1: the same steps as three threads */
	int seq1[300], fl1[300];
	l = open_loader(path, 10, 0, 1, 1, 1);
	read_steps(l, 10, 30, seq1, fl1);
	mfr_loader_close(l);
	CHECK(!memcmp(seq, seq1, sizeof seq) && !memcmp(fl, fl1, sizeof fl));

	/* two ranks of batch 5 see the one-rank batch-10 global batches, slice by slice */
	int r0[150], r1[150], f0[150], f1[150];
	mfr_loader *a = open_loader(path, 5, 0, 2, 2, 2), *b = open_loader(path, 5, 1, 2, 2, 2);
	read_steps(a, 5, 30, r0, f0);
	read_steps(b, 5, 30, r1, f1);
	mfr_loader_close(a);
	mfr_loader_close(b);
	int same = 1;
	for (int t = 0; t < 30; t++)
		for (int k = 0; k < 5; k++) {
			same &= r0[t * 5 + k] == seq[t * 10 + k] && f0[t * 5 + k] == fl[t * 10 + k];
			same &= r1[t * 5 + k] == seq[t * 10 + 5 + k] && f1[t * 5 + k] == fl[t * 10 + 5 + k];
		}
	CHECK(same);

	/* raw output from the caller's allocator: the same batches, unnormalised */
	a = open_loader(path, 10, 0, 1, 2, 2);
	const char *rpaths[1] = {path};
	mfr_loader_config rc = {.paths = rpaths, .npaths = 1, .batch = 10, .ranks = 1, .seed = 5, .threads = 3,
				.prefetch = 3, .flip = 1};
	mfr_input_spec_insightface(&rc.input);
	mfr_error re;
	b = mfr_loader_open(&rc, &re);
	mfr_loader_output ro = {.raw = 1, .alloc = count_alloc, .release = count_release};
	CHECK(b != NULL);
	mfr_loader_set_output(b, &ro);
	CHECK(mfr_loader_start(b, 0, &re) == 0);
	CHECK(raw_matches(a, b, 10, 25));
	mfr_loader_close(a);
	mfr_loader_close(b);
	CHECK_EQ_INT(allocs, 4); /* prefetch + 1 batches */
	CHECK_EQ_INT(releases, 4);

	/* a damaged record: the error names the file and the byte */
	FILE *f = fopen(path, "r+b");
	fseek(f, 2000, SEEK_SET);
	fputc(0x55 ^ fgetc(f), f);
	fclose(f);
	const char *paths[1] = {path};
	mfr_loader_config c = {.paths = paths, .npaths = 1, .batch = 50, .ranks = 1, .seed = 5, .threads = 2, .prefetch = 1};
	mfr_input_spec_insightface(&c.input);
	mfr_error e;
	l = mfr_loader_open(&c, &e);
	int failed = 0;
	if (l && mfr_loader_start(l, 0, &e) == 0) {
		void *x;
		int32_t *lab;
		uint64_t *ids;
		for (int t = 0; t < 2 && !failed; t++)
			failed = mfr_loader_next(l, &x, &lab, &ids, NULL, &e) < 0;
	}
	CHECK(failed);
	CHECK(strstr(e.msg, path) != NULL && strstr(e.msg, "byte") != NULL);
	if (failed)
		printf("damaged record: %s\n", e.msg);
	mfr_loader_close(l);
	remove(path);
	char idx[64];
	snprintf(idx, sizeof idx, "%s.idx", path);
	remove(idx);
	return check_done();
}
