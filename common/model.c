/* model.c — the .mfrm container (data-formats.md section 9): encoding,
 * decoding with every offset, size, name and checksum checked, atomic save. */
#include "model.h" /* defines: mfr_model_* */

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "stream.h" /* defines: mfr_masked_crc */

static const uint8_t MAGIC[8] = {0x89, 'M', 'F', 'M', '\r', '\n', 0x1a, '\n'};

int mfr_model_probe(const char *path)
{
	uint8_t b[8];
	FILE *f = strcmp(path, "-") ? fopen(path, "rb") : NULL;
	if (!f)
		return 0;
	int is = fread(b, 1, 8, f) == 8 && memcmp(b, MAGIC, 8) == 0;
	fclose(f);
	return is;
}
#define VERSION 1
#define HEAD 32
#define ENTRY 32
#define ALIGN 64 /* sections and tensor data start on 64-byte boundaries (cache lines, AVX-512 loads, mmap) */
#define MAX_SECTIONS 1024
#define MAX_TENSORS (1 << 20)
#define INPUT_SIZE 84

enum { S_ARCH = 1, S_INPUT = 2, S_TENSORS = 3, S_DATA = 4 };

static const char *section_name(uint32_t t)
{
	switch (t) {
	case S_ARCH: return "arch";
	case S_INPUT: return "input";
	case S_TENSORS: return "tensors";
	case S_DATA: return "data";
	default: return t & 0x8000 ? "optional" : "unknown";
	}
}

void mfr_input_spec_insightface(mfr_input_spec *s)
{
	static const float tmpl[10] = {38.2946f, 51.6963f, 73.5318f, 51.5014f, 56.0252f,
				       71.7366f, 41.5493f, 92.3655f, 70.7299f, 92.2041f};
	*s = (mfr_input_spec){.width = 112, .height = 112, .channels = 3, .bgr = 0, .has_template = 1,
			      .mean = {127.5f, 127.5f, 127.5f}, .scale = {1 / 128.0f, 1 / 128.0f, 1 / 128.0f}};
	memcpy(s->template_lm, tmpl, sizeof tmpl);
}

static size_t dtype_size(uint16_t d) { return d == MFR_TDTYPE_F16 ? 2 : d == MFR_TDTYPE_F32 ? 4 : 0; }

static int name_check(const char *name, size_t len, mfr_error *e)
{
	if (len < 1 || len > MFR_TENSOR_NAME_MAX)
		return mfr_fail(e, "tensor name of %zu bytes (1..%d allowed)", len, MFR_TENSOR_NAME_MAX);
	for (size_t i = 0; i < len; i++)
		if ((unsigned char)name[i] < 0x20 || name[i] == 0x7f)
			return mfr_fail(e, "tensor name holds control byte 0x%02x", (unsigned char)name[i]);
	return 0;
}

/* numel of dims, or 0 with e filled when a dim is < 1 or the product overflows
 * the 2^40 elements this format allows (4 TiB of fp32: never a real tensor). */
static size_t dims_numel(int ndim, const int64_t *dims, mfr_error *e)
{
	uint64_t n = 1;
	for (int i = 0; i < ndim; i++) {
		if (dims[i] < 1 || dims[i] > ((int64_t)1 << 40) || n > ((uint64_t)1 << 40) / (uint64_t)dims[i]) {
			mfr_fail(e, "tensor dimension %d is %lld (1..2^40, product at most 2^40)", i, (long long)dims[i]);
			return 0;
		}
		n *= (uint64_t)dims[i];
	}
	return (size_t)n;
}

mfr_tensor *mfr_model_find(const mfr_model *m, const char *name)
{
	for (int i = 0; i < m->ntensors; i++)
		if (strcmp(m->tensors[i].name, name) == 0)
			return &m->tensors[i];
	return NULL;
}

mfr_tensor *mfr_model_add(mfr_model *m, const char *name, uint16_t dtype, int ndim, const int64_t *dims,
			  mfr_error *e)
{
	if (name_check(name, strlen(name), e) < 0)
		return NULL;
	if (mfr_model_find(m, name)) {
		mfr_fail(e, "duplicate tensor name '%s'", name);
		return NULL;
	}
	if (!dtype_size(dtype) || ndim < 0 || ndim > MFR_TENSOR_MAX_DIMS) {
		mfr_fail(e, "tensor '%s': bad dtype %u or %d dimensions", name, dtype, ndim);
		return NULL;
	}
	size_t numel = dims_numel(ndim, dims, e);
	if (!numel)
		return NULL;
	mfr_tensor *t = mfr_realloc(m->tensors, (size_t)(m->ntensors + 1) * sizeof *t, e);
	if (!t)
		return NULL;
	m->tensors = t;
	t = &m->tensors[m->ntensors];
	*t = (mfr_tensor){.dtype = dtype, .ndim = ndim, .numel = numel};
	if (ndim)
		memcpy(t->dims, dims, (size_t)ndim * sizeof *dims);
	t->name = strdup(name);
	t->data = calloc(numel, sizeof(float));
	if (!t->name || !t->data) {
		free(t->name);
		free(t->data);
		mfr_fail(e, "out of memory for tensor '%s' (%zu values)", name, numel);
		return NULL;
	}
	m->ntensors++;
	return t;
}

int mfr_model_add_section(mfr_model *m, uint32_t type, const void *data, size_t size, mfr_error *e)
{
	if (!(type & 0x8000) || type > 0xffff)
		return mfr_fail(e, "optional section types are 0x8000..0xffff, not 0x%x", type);
	for (int i = 0; i < m->nextra; i++)
		if (m->extra[i].type == type)
			return mfr_fail(e, "duplicate section type 0x%x", type);
	mfr_section *s = mfr_realloc(m->extra, (size_t)(m->nextra + 1) * sizeof *s, e);
	if (!s)
		return -1;
	m->extra = s;
	uint8_t *copy = mfr_malloc(size, e);
	if (!copy)
		return -1;
	memcpy(copy, data, size);
	m->extra[m->nextra++] = (mfr_section){type, copy, size};
	return 0;
}

void mfr_model_free(mfr_model *m)
{
	for (int i = 0; i < m->ntensors; i++) {
		free(m->tensors[i].name);
		free(m->tensors[i].data);
	}
	for (int i = 0; i < m->nextra; i++)
		free(m->extra[i].data);
	free(m->tensors);
	free(m->extra);
	free(m->arch);
	memset(m, 0, sizeof *m);
}

static size_t align_up(size_t x) { return (x + ALIGN - 1) & ~(size_t)(ALIGN - 1); }

/* ---- encoding ---- */

static void input_encode(const mfr_input_spec *s, uint8_t *p)
{
	mfr_put32(p, (uint32_t)s->width);
	mfr_put32(p + 4, (uint32_t)s->height);
	mfr_put32(p + 8, (uint32_t)s->channels);
	mfr_put32(p + 12, (uint32_t)s->bgr);
	for (int i = 0; i < 3; i++) {
		mfr_putf32(p + 16 + 4 * i, s->mean[i]);
		mfr_putf32(p + 28 + 4 * i, s->scale[i]);
	}
	mfr_put32(p + 40, (uint32_t)s->has_template);
	for (int i = 0; i < 10; i++)
		mfr_putf32(p + 44 + 4 * i, s->has_template ? s->template_lm[i] : 0.0f);
}

int mfr_model_encode(const mfr_model *m, uint8_t **out, size_t *n, mfr_error *e)
{
	if (!m->arch)
		return mfr_fail(e, "model has no architecture text");
	int ns = 4 + m->nextra;
	size_t table_bytes = 4, data_bytes = 0;
	for (int i = 0; i < m->ntensors; i++) {
		const mfr_tensor *t = &m->tensors[i];
		table_bytes += 2 + strlen(t->name) + 4 + 8 * (size_t)t->ndim + 16;
		data_bytes = align_up(data_bytes) + t->numel * dtype_size(t->dtype);
	}
	size_t sizes[4 + MAX_SECTIONS], offs[4 + MAX_SECTIONS];
	uint32_t types[4 + MAX_SECTIONS];
	if (ns > MAX_SECTIONS)
		return mfr_fail(e, "too many sections (%d)", ns);
	types[0] = S_ARCH, sizes[0] = strlen(m->arch);
	types[1] = S_INPUT, sizes[1] = INPUT_SIZE;
	types[2] = S_TENSORS, sizes[2] = table_bytes;
	types[3] = S_DATA, sizes[3] = data_bytes;
	for (int i = 0; i < m->nextra; i++)
		types[4 + i] = m->extra[i].type, sizes[4 + i] = m->extra[i].size;
	size_t pos = align_up(HEAD + (size_t)ns * ENTRY + 4);
	for (int i = 0; i < ns; i++) {
		offs[i] = pos;
		pos = align_up(pos + sizes[i]);
	}
	uint8_t *b = calloc(1, pos);
	if (!b)
		return mfr_fail(e, "out of memory encoding a %zu-byte model", pos);
	memcpy(b + offs[0], m->arch, sizes[0]);
	input_encode(&m->input, b + offs[1]);
	uint8_t *q = b + offs[2];
	mfr_put32(q, (uint32_t)m->ntensors);
	q += 4;
	size_t doff = 0;
	for (int i = 0; i < m->ntensors; i++) {
		const mfr_tensor *t = &m->tensors[i];
		size_t l = strlen(t->name), ds = dtype_size(t->dtype);
		doff = align_up(doff);
		mfr_put16(q, (uint16_t)l);
		memcpy(q + 2, t->name, l);
		q += 2 + l;
		mfr_put16(q, t->dtype);
		mfr_put16(q + 2, (uint16_t)t->ndim);
		q += 4;
		for (int d = 0; d < t->ndim; d++, q += 8)
			mfr_put64(q, (uint64_t)t->dims[d]);
		mfr_put64(q, doff);
		mfr_put64(q + 8, t->numel * ds);
		q += 16;
		uint8_t *dst = b + offs[3] + doff;
		for (size_t k = 0; k < t->numel; k++) {
			if (t->dtype == MFR_TDTYPE_F16)
				mfr_put16(dst + 2 * k, mfr_float_to_half(t->data[k]));
			else
				mfr_putf32(dst + 4 * k, t->data[k]);
		}
		doff += t->numel * ds;
	}
	for (int i = 0; i < m->nextra; i++)
		memcpy(b + offs[4 + i], m->extra[i].data, sizes[4 + i]);
	memcpy(b, MAGIC, 8);
	mfr_put16(b + 8, VERSION);
	mfr_put32(b + 12, (uint32_t)ns);
	mfr_put64(b + 16, pos);
	mfr_put32(b + 28, mfr_masked_crc(b, 28));
	for (int i = 0; i < ns; i++) {
		uint8_t *t = b + HEAD + (size_t)i * ENTRY;
		mfr_put32(t, types[i]);
		mfr_put64(t + 8, offs[i]);
		mfr_put64(t + 16, sizes[i]);
		mfr_put32(t + 24, mfr_masked_crc(b + offs[i], sizes[i]));
	}
	mfr_put32(b + HEAD + (size_t)ns * ENTRY, mfr_masked_crc(b + HEAD, (size_t)ns * ENTRY));
	*out = b;
	*n = pos;
	return 0;
}

int mfr_model_save(const char *path, const mfr_model *m, mfr_error *e)
{
	uint8_t *b;
	size_t n;
	if (mfr_model_encode(m, &b, &n, e) < 0)
		return -1;
	size_t len = strlen(path) + 5;
	char *tmp = malloc(len);
	if (!tmp) {
		free(b);
		return mfr_fail(e, "out of memory");
	}
	int special = mfr_path_special(path); /* a device or FIFO: written in place */
	if (special)
		snprintf(tmp, len, "%s", path);
	else
		snprintf(tmp, len, "%s.tmp", path);
	FILE *f = fopen(tmp, "wb");
	int rc = -1;
	if (!f)
		mfr_fail(e, "'%s': %s", tmp, strerror(errno));
	else if (!special && mfr_temp_register(tmp, e) < 0)
		fclose(f);
	else {
		int bad = fwrite(b, 1, n, f) != n;
		bad |= fflush(f) != 0;
		bad |= fclose(f) != 0;
		if (bad)
			mfr_fail(e, "'%s': write error: %s", tmp, strerror(errno));
		else if (!special && rename(tmp, path) != 0)
			mfr_fail(e, "'%s': cannot rename into place: %s", path, strerror(errno));
		else
			rc = 0;
		if (rc && !special)
			remove(tmp);
		if (!special)
			mfr_temp_forget(tmp);
	}
	free(tmp);
	free(b);
	return rc;
}

/* ---- decoding ---- */

static int input_decode(const uint8_t *p, const char *name, uint64_t at, mfr_input_spec *s, mfr_error *e)
{
	s->width = (int)mfr_get32(p);
	s->height = (int)mfr_get32(p + 4);
	s->channels = (int)mfr_get32(p + 8);
	s->bgr = (int)mfr_get32(p + 12);
	for (int i = 0; i < 3; i++) {
		s->mean[i] = mfr_getf32(p + 16 + 4 * i);
		s->scale[i] = mfr_getf32(p + 28 + 4 * i);
	}
	s->has_template = (int)mfr_get32(p + 40);
	for (int i = 0; i < 10; i++)
		s->template_lm[i] = mfr_getf32(p + 44 + 4 * i);
	if (s->width < 1 || s->width > 65535 || s->height < 1 || s->height > 65535 || (s->channels != 3 && s->channels != 1) ||
	    (s->bgr != 0 && s->bgr != 1) || (s->has_template != 0 && s->has_template != 1))
		return mfr_fail(e, "'%s': bad input section at byte %llu (size %dx%dx%d, order %d, template %d)", name,
				(unsigned long long)at, s->width, s->height, s->channels, s->bgr, s->has_template);
	for (int i = 0; i < 3; i++)
		if (!(s->scale[i] == s->scale[i]) || s->scale[i] == 0 || !(s->mean[i] == s->mean[i]))
			return mfr_fail(e, "'%s': bad input normalisation at byte %llu", name, (unsigned long long)at);
	return 0;
}

int mfr_model_decode(const uint8_t *p, size_t n, const char *name, mfr_model *m, mfr_error *e)
{
	memset(m, 0, sizeof *m);
	if (n < HEAD || memcmp(p, MAGIC, 8) != 0)
		return mfr_fail(e, "'%s': not an mfr model (%s at byte 0)", name, n < HEAD ? "truncated header" : "bad magic");
	if (mfr_get32(p + 28) != mfr_masked_crc(p, 28))
		return mfr_fail(e, "'%s': corrupted model header at byte 0 (checksum)", name);
	if (mfr_get16(p + 8) != VERSION)
		return mfr_fail(e, "'%s': unsupported model version %u at byte 8", name, mfr_get16(p + 8));
	if (mfr_get16(p + 10) || mfr_get32(p + 24))
		return mfr_fail(e, "'%s': reserved header fields set", name);
	uint32_t ns = mfr_get32(p + 12);
	uint64_t fsize = mfr_get64(p + 16);
	if (fsize != n)
		return mfr_fail(e, "'%s': %s: the header says %llu bytes, the file has %zu", name,
				n < fsize ? "truncated model" : "trailing bytes after the model", (unsigned long long)fsize, n);
	if (ns < 4 || ns > MAX_SECTIONS || HEAD + (uint64_t)ns * ENTRY + 4 > n)
		return mfr_fail(e, "'%s': corrupted model header: %u sections", name, ns);
	const uint8_t *tab = p + HEAD;
	if (mfr_get32(tab + (size_t)ns * ENTRY) != mfr_masked_crc(tab, (size_t)ns * ENTRY))
		return mfr_fail(e, "'%s': corrupted section table at byte %d (checksum)", name, HEAD);
	const uint8_t *sec[4] = {0};
	uint64_t ssize[4] = {0}, sat[4] = {0}, prev_end = HEAD + (uint64_t)ns * ENTRY + 4;
	for (uint32_t i = 0; i < ns; i++) {
		const uint8_t *t = tab + (size_t)i * ENTRY;
		uint32_t type = mfr_get32(t);
		uint64_t off = mfr_get64(t + 8), size = mfr_get64(t + 16);
		if (mfr_get32(t + 4) || mfr_get32(t + 28)) {
			mfr_fail(e, "'%s': section %u: reserved fields set", name, i);
			goto fail;
		}
		if (off < prev_end || off > n || size > n - off || off % ALIGN) {
			mfr_fail(e, "'%s': section %u (%s) at byte %llu with %llu bytes lies outside the file or overlaps "
				 "another", name, i, section_name(type), (unsigned long long)off, (unsigned long long)size);
			goto fail;
		}
		for (uint64_t z = prev_end; z < off; z++)
			if (p[z]) {
				mfr_fail(e, "'%s': padding byte %llu before section %u is not zero", name, (unsigned long long)z, i);
				goto fail;
			}
		prev_end = off + size;
		if (mfr_get32(t + 24) != mfr_masked_crc(p + off, (size_t)size)) {
			mfr_fail(e, "'%s': corrupted section %u (%s) at byte %llu (checksum)", name, i, section_name(type),
				 (unsigned long long)off);
			goto fail;
		}
		int dup = type >= S_ARCH && type <= S_DATA && sec[type - 1];
		for (int k = 0; k < m->nextra; k++)
			dup |= m->extra[k].type == type;
		if (dup) {
			mfr_fail(e, "'%s': section %u: a second %s section of type 0x%x", name, i, section_name(type), type);
			goto fail;
		}
		if (type >= S_ARCH && type <= S_DATA) {
			sec[type - 1] = p + off;
			ssize[type - 1] = size;
			sat[type - 1] = off;
		} else if (type & 0x8000 && type <= 0xffff) {
			if (mfr_model_add_section(m, type, p + off, (size_t)size, e) < 0)
				goto fail;
		} else {
			mfr_fail(e, "'%s': section %u at byte %llu has unknown type 0x%x", name, i, (unsigned long long)off,
				 type);
			goto fail;
		}
	}
	for (uint64_t z = prev_end; z < n; z++)
		if (p[z]) {
			mfr_fail(e, "'%s': padding byte %llu after the last section is not zero", name, (unsigned long long)z);
			goto fail;
		}
	for (int k = 0; k < 4; k++)
		if (!sec[k]) {
			mfr_fail(e, "'%s': no %s section", name, section_name((uint32_t)k + 1));
			goto fail;
		}
	if (ssize[1] != INPUT_SIZE) {
		mfr_fail(e, "'%s': input section of %llu bytes (%d expected)", name, (unsigned long long)ssize[1],
			 INPUT_SIZE);
		goto fail;
	}
	if (input_decode(sec[1], name, sat[1], &m->input, e) < 0)
		goto fail;
	if (memchr(sec[0], 0, (size_t)ssize[0])) {
		mfr_fail(e, "'%s': the architecture text at byte %llu holds a NUL byte", name, (unsigned long long)sat[0]);
		goto fail;
	}
	if (!(m->arch = mfr_malloc((size_t)ssize[0] + 1, e)))
		goto fail;
	memcpy(m->arch, sec[0], (size_t)ssize[0]);
	m->arch[ssize[0]] = 0;

	/* the tensor table: every entry inside the table, its data inside DATA,
	 * in increasing non-overlapping order */
	const uint8_t *q = sec[2], *end = sec[2] + ssize[2];
	if (ssize[2] < 4) {
		mfr_fail(e, "'%s': truncated tensor table at byte %llu", name, (unsigned long long)sat[2]);
		goto fail;
	}
	uint32_t nt = mfr_get32(q);
	q += 4;
	if (nt > MAX_TENSORS || nt > (ssize[2] - 4) / 23) { /* 23: the smallest entry */
		mfr_fail(e, "'%s': tensor table at byte %llu claims %u tensors", name, (unsigned long long)sat[2], nt);
		goto fail;
	}
	uint64_t data_end = 0;
	for (uint32_t i = 0; i < nt; i++) {
		uint64_t at = sat[2] + (uint64_t)(q - sec[2]);
		char tname[MFR_TENSOR_NAME_MAX + 1];
		mfr_error te;
		if (end - q < 2 || (size_t)(end - q) < 2u + mfr_get16(q) + 4u) {
			mfr_fail(e, "'%s': truncated tensor entry %u at byte %llu", name, i, (unsigned long long)at);
			goto fail;
		}
		size_t l = mfr_get16(q);
		if (name_check((const char *)q + 2, l, &te) < 0) {
			mfr_fail(e, "'%s': tensor entry %u at byte %llu: %s", name, i, (unsigned long long)at, te.msg);
			goto fail;
		}
		memcpy(tname, q + 2, l);
		tname[l] = 0;
		q += 2 + l;
		uint16_t dtype = mfr_get16(q), ndim = mfr_get16(q + 2);
		q += 4;
		if (!dtype_size(dtype) || ndim > MFR_TENSOR_MAX_DIMS || (size_t)(end - q) < 8u * ndim + 16u) {
			mfr_fail(e, "'%s': tensor '%s' at byte %llu: bad dtype %u, %u dimensions or truncated entry", name,
				 tname, (unsigned long long)at, dtype, ndim);
			goto fail;
		}
		int64_t dims[MFR_TENSOR_MAX_DIMS];
		for (int d = 0; d < ndim; d++, q += 8)
			dims[d] = (int64_t)mfr_get64(q);
		uint64_t doff = mfr_get64(q), dbytes = mfr_get64(q + 8);
		q += 16;
		mfr_tensor *t = mfr_model_add(m, tname, dtype, ndim, dims, &te);
		if (!t) {
			mfr_fail(e, "'%s': tensor entry %u at byte %llu: %s", name, i, (unsigned long long)at, te.msg);
			goto fail;
		}
		if (dbytes != t->numel * dtype_size(dtype) || doff < data_end || doff % ALIGN || doff > ssize[3] ||
		    dbytes > ssize[3] - doff) {
			mfr_fail(e, "'%s': tensor '%s': data at %llu+%llu does not fit the data section or overlaps", name,
				 tname, (unsigned long long)doff, (unsigned long long)dbytes);
			goto fail;
		}
		data_end = doff + dbytes;
		const uint8_t *src = sec[3] + doff;
		for (size_t k = 0; k < t->numel; k++)
			t->data[k] = dtype == MFR_TDTYPE_F16 ? mfr_half_to_float(mfr_get16(src + 2 * k)) : mfr_getf32(src + 4 * k);
	}
	if (q != end) {
		mfr_fail(e, "'%s': %zu bytes left over after the tensor table", name, (size_t)(end - q));
		goto fail;
	}
	return 0;
fail:
	mfr_model_free(m);
	return -1;
}

int mfr_model_load(const char *path, mfr_model *m, mfr_error *e)
{
	uint8_t *b;
	size_t n;
	memset(m, 0, sizeof *m);
	/* 64 GiB: beyond any face model, and beyond the machine's memory anyway */
	if (mfr_read_file(path, (size_t)64 << 30, &b, &n, e) < 0)
		return -1;
	int rc = mfr_model_decode(b, n, path, m, e);
	free(b);
	return rc;
}
