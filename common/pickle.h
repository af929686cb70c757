/* pickle.h — a reader of insightface `.bin` verification packs (lfw.bin,
 * cfp_fp.bin, agedb_30.bin, ...): the pickle of the tuple (bins, issame_list),
 * where bins is a list of encoded images (JPEG bytes) and issame_list a list
 * of bools, pair i being images 2i and 2i+1.
 *
 * It is not a general unpickler: it reads pickle protocols 2 to 5 as Python 2
 * (`str` as SHORT_BINSTRING/BINSTRING) and Python 3 (`bytes` as
 * SHORT_BINBYTES/BINBYTES/BINBYTES8, FRAME, MEMOIZE) write that one structure,
 * and refuses every other opcode by name and byte offset — notably GLOBAL and
 * REDUCE, so it never imports or calls anything. Protocol 5 adds nothing to
 * lists of bytes and bools, and is what Python 3.8+ writes with
 * pickle.HIGHEST_PROTOCOL. Python 3 `bytes` pickled at protocol 2 go through
 * GLOBAL _codecs.encode and are refused (re-pickle with protocol 3 or higher).
 *
 * Opcodes read (byte, name, argument):
 *   0x80 PROTO u8 (2..5, first byte only)     0x95 FRAME u64 (a size hint)
 *   ']'  EMPTY_LIST   '(' MARK   'a' APPEND   'e' APPENDS   '.' STOP
 *   'U'  SHORT_BINSTRING u8 len   'T' BINSTRING u32 len
 *   'C'  SHORT_BINBYTES u8 len    'B' BINBYTES u32 len   0x8e BINBYTES8 u64 len
 *   0x88 NEWTRUE   0x89 NEWFALSE   'K' BININT1 u8 (0 or 1: a bool)
 *   0x86 TUPLE2    't' TUPLE (of two items)
 *   'q'  BINPUT u8   'r' LONG_BINPUT u32   0x94 MEMOIZE   'h' BINGET u8   'j' LONG_BINGET u32
 * All integers little-endian.
 */
#ifndef MFR_PICKLE_H
#define MFR_PICKLE_H

#include <stddef.h>
#include <stdint.h>

#include "util.h" /* defines: mfr_error */

/* A parsed pack. images[i] points into the parsed buffer (no copy); the
 * buffer must outlive the pack unless the pack owns it (mfr_binpack_read). */
typedef struct {
	size_t n_images;
	const uint8_t **images; /* n_images pointers to encoded images */
	size_t *sizes;          /* n_images byte counts */
	size_t n_pairs;         /* n_images / 2 */
	uint8_t *issame;        /* n_pairs values: 1 same identity, 0 different */
	uint8_t *owned;         /* the file's bytes when read by mfr_binpack_read, else NULL */
} mfr_binpack;

/* The pickle stack holds at most this many values; Python batches APPENDS
 * by 1000, so a real pack stays near 1000. */
#define MFR_PICKLE_STACK_MAX 65536

/* Parses the pickle in p[0..n) into *out (zeroed first). Returns 0, or -1 with
 * e filled, *out then empty, on: an opcode outside the list above ("unsupported
 * pickle opcode 0x63 ('c') at byte N: only lists of bytes and bools are read"),
 * input cut short ("truncated pickle at byte N: ..."), bytes after STOP, a
 * memo index out of range or unset, a stack deeper than MFR_PICKLE_STACK_MAX,
 * a structure other than (list of bytes, list of bools), or a number of
 * images other than 2 * pairs. Messages carry no file name; prefix it. */
int mfr_binpack_parse(const uint8_t *p, size_t n, mfr_binpack *out, mfr_error *e);

/* Reads the file at path (at most cap bytes; "-" is stdin) and parses it;
 * the pack owns the bytes. Messages are "'lfw.bin': ...". Returns 0 or -1. */
int mfr_binpack_read(const char *path, size_t cap, mfr_binpack *out, mfr_error *e);

/* Frees the arrays (and owned bytes) and zeroes *b. b may be NULL; freeing
 * a zeroed pack is fine. */
void mfr_binpack_free(mfr_binpack *b);

#endif
