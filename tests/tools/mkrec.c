/* mkrec.c — test fixture writer: packs image files into an insightface-style
 * RecordIO set (PREFIX.rec, PREFIX.idx, and `property` beside them), the way
 * MXNet's recordio writes it: record 0 a header (flag 2, labels [a, b]),
 * image records 1..a-1, then one record per identity (labels [start, end)).
 * A record whose bytes hold the chunk magic at a 4-aligned offset is split
 * into chunks there, the magic removed. Test code only: mfr never writes
 * RecordIO.
 *
 * usage: mkrec PREFIX LABEL:FILE...   (labels 0..K-1, files grouped by label)
 *        A label written LABEL+ stores it as a one-element label array (flag 1). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util.h"

#define MAGIC 0xced7230au

static FILE *rec, *idx;
static uint64_t pos;

static void chunk(const uint8_t *p, uint32_t n, uint32_t cflag)
{
	uint8_t h[8], pad[4] = {0};
	mfr_put32(h, MAGIC);
	mfr_put32(h + 4, cflag << 29 | n);
	fwrite(h, 1, 8, rec);
	fwrite(p, 1, n, rec);
	uint32_t padn = (4 - n % 4) % 4;
	fwrite(pad, 1, padn, rec);
	pos += 8 + n + padn;
}

static void put_record(uint64_t key, const uint8_t *p, uint32_t n)
{
	fprintf(idx, "%llu\t%llu\n", (unsigned long long)key, (unsigned long long)pos);
	uint32_t start = 0, parts = 0;
	for (uint32_t i = 0; i + 4 <= n; i += 4)
		if (mfr_get32(p + i) == MAGIC) {
			chunk(p + start, i - start, parts ? 2 : 1);
			parts++;
			start = i + 4;
		}
	chunk(p + start, n - start, parts ? 3 : 0);
}

static void put_header_record(uint64_t key, uint32_t flag, float label, const float *labels,
			      const uint8_t *img, uint32_t n)
{
	uint32_t size = 24 + 4 * flag + n;
	uint8_t *b = calloc(1, size);
	mfr_put32(b, flag);
	mfr_putf32(b + 4, label);
	for (uint32_t i = 0; i < flag; i++)
		mfr_putf32(b + 24 + 4 * i, labels[i]);
	if (n)
		memcpy(b + 24 + 4 * flag, img, n);
	put_record(key, b, size);
	free(b);
}

int main(int argc, char **argv)
{
	if (argc < 3) {
		fprintf(stderr, "usage: mkrec PREFIX LABEL:FILE...\n");
		return 2;
	}
	char path[4096];
	snprintf(path, sizeof path, "%s.rec", argv[1]);
	rec = fopen(path, "wb");
	snprintf(path, sizeof path, "%s.idx", argv[1]);
	idx = fopen(path, "w");
	if (!rec || !idx)
		return 1;
	int n = argc - 2, nlabels = 0;
	int *label = calloc((size_t)n, sizeof *label);
	for (int i = 0; i < n; i++) {
		label[i] = atoi(argv[2 + i]);
		if (label[i] + 1 > nlabels)
			nlabels = label[i] + 1;
	}
	float hdr[2] = {(float)(n + 1), (float)(n + 1 + nlabels)};
	put_header_record(0, 2, 0, hdr, NULL, 0);
	for (int i = 0; i < n; i++) {
		char *colon = strchr(argv[2 + i], ':');
		uint8_t *img;
		size_t sz;
		mfr_error e;
		if (!colon || mfr_read_file(colon + 1, 1 << 26, &img, &sz, &e) < 0) {
			fprintf(stderr, "mkrec: bad argument '%s'\n", argv[2 + i]);
			return 1;
		}
		float l = (float)label[i];
		if (colon[-1] == '+')
			put_header_record((uint64_t)i + 1, 1, 0, &l, img, (uint32_t)sz);
		else
			put_header_record((uint64_t)i + 1, 0, l, NULL, img, (uint32_t)sz);
		free(img);
	}
	for (int k = 0, i = 0; k < nlabels; k++) {
		int start = i + 1;
		while (i < n && label[i] == k)
			i++;
		float range[2] = {(float)start, (float)(i + 1)};
		put_header_record((uint64_t)(n + 1 + k), 2, 0, range, NULL, 0);
	}
	fclose(rec);
	fclose(idx);
	char *slash = strrchr(argv[1], '/');
	snprintf(path, sizeof path, "%.*sproperty", slash ? (int)(slash - argv[1] + 1) : 0, argv[1]);
	FILE *p = fopen(path, "w");
	fprintf(p, "%d,112,112\n", nlabels);
	fclose(p);
	free(label);
	return 0;
}
