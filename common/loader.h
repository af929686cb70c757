/* loader.h — the trainer's data loader: FACE stream files read at random
 * through their sidecar indexes, a seeded shuffle per epoch that every rank
 * computes alike, each rank's share of each global batch, JPEG decoded by
 * worker threads, random horizontal flips, the model's normalisation (or raw
 * pixels, for a GPU to normalise), an
 * optional pixel hook (online mask augmentation) and a queue of batches
 * prepared ahead.
 *
 * Order: the samples of all files, in file order, are numbered 0..N-1. Epoch
 * e visits them in the order of a bijection of 0..N-1 keyed by (seed, e) —
 * a Feistel network with cycle walking, so no permutation is stored and any
 * position is computed directly. Global step t (counted across epochs) is
 * epoch t / S, position t % S with S = floor(N / G) steps per epoch and
 * G = batch x ranks (the tail of an epoch is dropped); rank r takes the
 * batch samples G*(t%S) + r*batch ... + batch - 1 of that order. A sample's
 * flip is decided by hash(seed, epoch, sample), so what a step sees does
 * not depend on the number of threads or on how ranks divide the batch.
 */
#ifndef MFR_LOADER_H
#define MFR_LOADER_H

#include <stdint.h>

#include "feed.h"  /* defines: mfr_pixel_hook */
#include "model.h" /* defines: mfr_input_spec */
#include "util.h"  /* defines: mfr_error */

typedef struct mfr_loader mfr_loader;

typedef struct {
	const char *const *paths; /* FACE stream files, each with its .idx */
	int npaths;
	int batch;                /* images per rank and step */
	int rank, ranks;
	uint64_t seed;
	int threads;              /* decoding threads, >= 1 */
	int prefetch;             /* batches prepared ahead, >= 1 */
	int flip;                 /* 1: mirror each image with probability 1/2 */
	mfr_input_spec input;     /* size, order, normalisation, alignment */
	mfr_pixel_hook hook;      /* may be NULL; its salt is the epoch */
	void *hook_ctx;
} mfr_loader_config;

/* Opens the files and their indexes (a missing index is built and written
 * beside the file, as `mfr-cat --index` does); every label must be >= 0.
 * Starts no threads yet. NULL with e filled. */
mfr_loader *mfr_loader_open(const mfr_loader_config *cfg, mfr_error *e);

uint64_t mfr_loader_samples(const mfr_loader *l);
/* 1 + the largest label. */
int64_t mfr_loader_classes(const mfr_loader *l);
uint64_t mfr_loader_steps_per_epoch(const mfr_loader *l);

/* Sample number i of epoch e's order (0 <= i < samples): the bijection. */
uint64_t mfr_loader_order(const mfr_loader *l, uint64_t epoch, uint64_t i);

/* Starts the workers at global step `step`. Call once. */
int mfr_loader_start(mfr_loader *l, uint64_t step, mfr_error *e);

/* What the batches hold and where their memory comes from. raw = 0: batch
 * x 3 x H x W floats, normalised for the network (as mfr_face_to_input
 * writes them); raw = 1: batch x H x W x 3 bytes, RGB (flipped, aligned,
 * masked, not normalised: mfr_input_normalize, or the GPU, finishes them).
 * alloc and release (both NULL: malloc and free) give and take back the
 * batches' pixel memory, e.g. page-locked for asynchronous copies to a GPU;
 * release must accept NULL; alloc fills e when it fails. */
typedef struct {
	int raw;
	void *(*alloc)(void *ctx, size_t bytes, mfr_error *e);
	void (*release)(void *ctx, void *p);
	void *ctx;
} mfr_loader_output;

/* Sets the output (default: raw 0, malloc); call before mfr_loader_start. */
void mfr_loader_set_output(mfr_loader *l, const mfr_loader_output *o);

/* The next step's batch: x (as mfr_loader_output says), labels, ids. The
 * pointers stay valid until the next call. Blocks while the workers catch
 * up. -1 with e filled when a worker failed (a damaged record: its file,
 * record and byte offset). *wait_s (may be NULL) receives the seconds this
 * call waited. */
int mfr_loader_next(mfr_loader *l, void **x, int32_t **labels, uint64_t **ids, double *wait_s, mfr_error *e);

/* Stops the workers and frees everything. NULL is a no-op. */
void mfr_loader_close(mfr_loader *l);

#endif
