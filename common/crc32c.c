/* crc32c.c — CRC-32C with the SSE4.2 crc32 instruction where the CPU has it,
 * slicing-by-8 tables elsewhere. The choice is made once, on first use. */
#include "crc32c.h" /* defines: mfr_crc32c, mfr_crc32c_portable, mfr_crc32c_hw */

#include <string.h>

#define POLY 0x82f63b78u /* Castagnoli, reflected */

static uint32_t table[8][256];
static int table_ready;

static void make_table(void)
{
	for (uint32_t i = 0; i < 256; i++) {
		uint32_t c = i;
		for (int k = 0; k < 8; k++)
			c = c & 1 ? (c >> 1) ^ POLY : c >> 1;
		table[0][i] = c;
	}
	for (int t = 1; t < 8; t++)
		for (uint32_t i = 0; i < 256; i++)
			table[t][i] = (table[t - 1][i] >> 8) ^ table[0][table[t - 1][i] & 0xff];
	table_ready = 1;
}

uint32_t mfr_crc32c_portable(uint32_t crc, const void *data, size_t n)
{
	const uint8_t *p = data;
	if (!table_ready) /* benign race: every thread writes the same values */
		make_table();
	crc = ~crc;
	while (n && ((uintptr_t)p & 7)) {
		crc = (crc >> 8) ^ table[0][(crc ^ *p++) & 0xff];
		n--;
	}
	while (n >= 8) {
		uint32_t lo, hi;
		memcpy(&lo, p, 4);
		memcpy(&hi, p + 4, 4);
		lo ^= crc; /* little-endian hosts only: x86-64 and aarch64 */
		crc = table[7][lo & 0xff] ^ table[6][(lo >> 8) & 0xff] ^ table[5][(lo >> 16) & 0xff] ^
		      table[4][lo >> 24] ^ table[3][hi & 0xff] ^ table[2][(hi >> 8) & 0xff] ^
		      table[1][(hi >> 16) & 0xff] ^ table[0][hi >> 24];
		p += 8;
		n -= 8;
	}
	while (n--)
		crc = (crc >> 8) ^ table[0][(crc ^ *p++) & 0xff];
	return ~crc;
}

/* Multiplication in GF(2) modulo the reflected polynomial, for shifting a CRC
 * register over runs of zero bytes (used to combine parallel streams). */
static uint32_t gf2_mul(uint32_t a, uint32_t b)
{
	uint32_t r = 0;
	for (int i = 0; i < 32; i++) {
		if (a & 0x80000000u)
			r ^= b;
		a <<= 1;
		b = b & 1 ? (b >> 1) ^ POLY : b >> 1;
	}
	return r;
}

/* x^(8n) mod P in reflected form, cached for the two shifts crc_hw uses. */
static uint32_t xpow8n(size_t n)
{
	uint32_t r = 0x80000000u, sq = 0x00800000u; /* x^0, x^8 */
	while (n) {
		if (n & 1)
			r = gf2_mul(r, sq);
		sq = gf2_mul(sq, sq);
		n >>= 1;
	}
	return r;
}

/* The raw register after nbytes more zero bytes (no pre/post inversion). */
static uint32_t crc_shift(uint32_t crc, size_t nbytes)
{
	static uint32_t k256, k512;
	if (nbytes == 256 || nbytes == 512) {
		uint32_t *k = nbytes == 256 ? &k256 : &k512;
		if (!*k)
			*k = xpow8n(nbytes);
		return gf2_mul(*k, crc);
	}
	return gf2_mul(xpow8n(nbytes), crc);
}

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <cpuid.h>
#include <nmmintrin.h>

__attribute__((target("sse4.2"))) static uint32_t crc_hw(uint32_t crc, const void *data, size_t n)
{
	const uint8_t *p = data;
	uint64_t c = ~crc;
	while (n && ((uintptr_t)p & 7)) {
		c = _mm_crc32_u8((uint32_t)c, *p++);
		n--;
	}
	/* three independent streams hide the instruction's 3-cycle latency */
	while (n >= 3 * 256) {
		uint64_t c1 = 0, c2 = 0;
		const uint8_t *a = p, *b = p + 256, *d = p + 512;
		for (int i = 0; i < 256; i += 8) {
			uint64_t x, y, z;
			memcpy(&x, a + i, 8);
			memcpy(&y, b + i, 8);
			memcpy(&z, d + i, 8);
			c = _mm_crc32_u64(c, x);
			c1 = _mm_crc32_u64(c1, y);
			c2 = _mm_crc32_u64(c2, z);
		}
		/* CRC is linear: the whole block's register is c advanced over
		 * 512 zero bytes, plus c1 advanced over 256, plus c2 */
		c = crc_shift((uint32_t)c, 512) ^ crc_shift((uint32_t)c1, 256) ^ c2;
		p += 768;
		n -= 768;
	}
	while (n >= 8) {
		uint64_t x;
		memcpy(&x, p, 8);
		c = _mm_crc32_u64(c, x);
		p += 8;
		n -= 8;
	}
	while (n--)
		c = _mm_crc32_u8((uint32_t)c, *p++);
	return ~(uint32_t)c;
}

static int hw_state = -1; /* -1 unknown, 0 no, 1 yes */

static int have_sse42(void)
{
	if (hw_state < 0) {
		unsigned a, b, c, d;
		hw_state = __get_cpuid(1, &a, &b, &c, &d) && (c & bit_SSE4_2);
	}
	return hw_state;
}
#else
static int have_sse42(void) { return 0; }
static uint32_t crc_hw(uint32_t crc, const void *data, size_t n) { return mfr_crc32c_portable(crc, data, n); }
#endif

uint32_t mfr_crc32c(uint32_t crc, const void *data, size_t n)
{
	return have_sse42() ? crc_hw(crc, data, n) : mfr_crc32c_portable(crc, data, n);
}

int mfr_crc32c_hw(void) { return have_sse42(); }
