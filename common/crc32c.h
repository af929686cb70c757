/* crc32c.h — CRC-32C (Castagnoli, reflected polynomial 0x82F63B78), the
 * checksum of every mfr frame. Uses the SSE4.2 crc32 instruction when the CPU
 * has it (chosen once at run time) and a slicing-by-8 table otherwise. */
#ifndef MFR_CRC32C_H
#define MFR_CRC32C_H

#include <stddef.h>
#include <stdint.h>

/* Extends crc (0 to start) over n bytes and returns the new value; the
 * standard pre- and post-inversion are applied inside, so
 * mfr_crc32c(mfr_crc32c(0, a, n), b, m) == mfr_crc32c(0, a||b, n+m). */
uint32_t mfr_crc32c(uint32_t crc, const void *data, size_t n);

/* The portable path alone, for tests that hold both paths to one answer. */
uint32_t mfr_crc32c_portable(uint32_t crc, const void *data, size_t n);

/* 1 when the hardware path is in use. */
int mfr_crc32c_hw(void);

#endif
