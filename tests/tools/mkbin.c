/* mkbin.c — test fixture writer: an insightface .bin verification pack, i.e.
 * the pickle of (list of image bytes, list of bools), in protocol 2 as
 * Python 2 writes `str` (SHORT_BINSTRING/BINSTRING, BINPUT memo) or protocol
 * 4 as Python 3 writes `bytes` (FRAME, SHORT_BINBYTES/BINBYTES, MEMOIZE).
 * Test code only.
 *
 * usage: mkbin 2|4 OUT.bin SAME FILE...   (SAME: one 0/1 per pair, e.g. 10;
 *                                          two FILEs per pair) */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util.h"

static uint8_t *out;
static size_t n, room;
static int proto, memo;

static void put(const void *p, size_t k)
{
	while (n + k > room)
		out = realloc(out, room = room ? room * 2 : 1 << 16);
	memcpy(out + n, p, k);
	n += k;
}
static void op(uint8_t c) { put(&c, 1); }
static void u32(uint32_t v) { uint8_t b[4]; mfr_put32(b, v); put(b, 4); }
static void remember(void)
{
	if (proto == 4)
		op(0x94); /* MEMOIZE */
	else if (memo < 256) {
		op('q');
		op((uint8_t)memo);
	} else {
		op('r');
		u32((uint32_t)memo);
	}
	memo++;
}

int main(int argc, char **argv)
{
	if (argc < 4) {
		fprintf(stderr, "usage: mkbin 2|4 OUT.bin SAME FILE...\n");
		return 2;
	}
	proto = atoi(argv[1]);
	const char *same = argv[3];
	op(0x80);
	op((uint8_t)proto);
	size_t frame_at = 0;
	if (proto == 4) { /* one frame for everything; its length is patched at the end */
		op(0x95);
		frame_at = n;
		put("\0\0\0\0\0\0\0\0", 8);
	}
	op(']');
	remember();
	op('(');
	for (int i = 4; i < argc; i++) {
		uint8_t *img;
		size_t sz;
		mfr_error e;
		if (mfr_read_file(argv[i], 1 << 26, &img, &sz, &e) < 0) {
			fprintf(stderr, "mkbin: %s\n", e.msg);
			return 1;
		}
		if (sz < 256) {
			op(proto == 4 ? 'C' : 'U');
			op((uint8_t)sz);
		} else {
			op(proto == 4 ? 'B' : 'T');
			u32((uint32_t)sz);
		}
		put(img, sz);
		remember();
		free(img);
	}
	op('e'); /* APPENDS */
	op(']');
	remember();
	op('(');
	for (const char *s = same; *s; s++)
		op(*s == '1' ? 0x88 : 0x89); /* NEWTRUE / NEWFALSE */
	op('e');
	op(0x86); /* TUPLE2 */
	remember();
	op('.');
	if (proto == 4) {
		uint64_t len = n - frame_at - 8;
		mfr_put64(out + frame_at, len);
	}
	FILE *f = fopen(argv[2], "wb");
	if (!f || fwrite(out, 1, n, f) != n || fclose(f) != 0)
		return 1;
	free(out);
	return 0;
}
