/* record.c — FACE and EMBEDDING payloads (data-formats.md): field-by-field
 * decoding with every value checked, and encoding. */
#include "record.h" /* defines: mfr_face_*, mfr_embedding_*, mfr_record_ids */

#include <math.h>

int mfr_record_ids(const uint8_t *p, uint32_t n, uint64_t *id, int32_t *label, uint32_t *flags,
		   mfr_error *e)
{
	if (n < 16)
		return mfr_fail(e, "record of %u bytes is shorter than its 16-byte id, label and flags", n);
	*id = mfr_get64(p);
	*label = (int32_t)mfr_get32(p + 8);
	*flags = mfr_get32(p + 12);
	return 0;
}

static int check_common(int32_t label, uint32_t flags, mfr_error *e)
{
	if (label < -1)
		return mfr_fail(e, "label %d is negative (only -1, no identity, is allowed)", label);
	if (flags & ~MFR_F_KNOWN)
		return mfr_fail(e, "reserved flag bits 0x%08x set", flags & ~MFR_F_KNOWN);
	uint32_t style = (flags & MFR_F_STYLE_MASK) >> MFR_F_STYLE_SHIFT;
	if (style && !(flags & MFR_F_MASKED))
		return mfr_fail(e, "mask style %u on a record without the masked flag", style);
	return 0;
}

int mfr_face_decode(const uint8_t *p, uint32_t n, mfr_face *f, mfr_error *e)
{
	if (n < MFR_FACE_HEADER)
		return mfr_fail(e, "FACE record of %u bytes is shorter than its %d-byte header", n, MFR_FACE_HEADER);
	f->id = mfr_get64(p);
	f->label = (int32_t)mfr_get32(p + 8);
	f->flags = mfr_get32(p + 12);
	f->width = mfr_get16(p + 16);
	f->height = mfr_get16(p + 18);
	f->channels = p[20];
	f->encoding = p[21];
	if (check_common(f->label, f->flags, e) < 0)
		return -1;
	if (mfr_get16(p + 22))
		return mfr_fail(e, "reserved field at offset 22 is not zero");
	if (!f->width || !f->height)
		return mfr_fail(e, "image size %ux%u is empty", f->width, f->height);
	if (f->channels != 1 && f->channels != 3)
		return mfr_fail(e, "%u channels (1 or 3 expected)", f->channels);
	if (f->encoding > MFR_ENC_PNG)
		return mfr_fail(e, "unknown image encoding %u", f->encoding);
	for (int i = 0; i < 10; i++) {
		f->landmarks[i] = mfr_getf32(p + 24 + 4 * i);
		if (!(f->flags & MFR_F_LANDMARKS) ? f->landmarks[i] != 0 : !isfinite(f->landmarks[i]))
			return mfr_fail(e, (f->flags & MFR_F_LANDMARKS) ? "landmark %d is not finite"
									 : "landmark %d is set without the landmarks flag",
					i / 2 + 1);
	}
	f->image = p + MFR_FACE_HEADER;
	f->image_size = n - MFR_FACE_HEADER;
	if (f->encoding == MFR_ENC_RAW && f->image_size != (uint32_t)f->width * f->height * f->channels)
		return mfr_fail(e, "raw image of %ux%ux%u needs %u bytes, record has %u", f->width, f->height,
				f->channels, (uint32_t)f->width * f->height * f->channels, f->image_size);
	if (f->encoding != MFR_ENC_RAW && f->image_size == 0)
		return mfr_fail(e, "empty image payload");
	return 0;
}

void mfr_face_encode(const mfr_face *f, uint8_t *out)
{
	mfr_put64(out, f->id);
	mfr_put32(out + 8, (uint32_t)f->label);
	mfr_put32(out + 12, f->flags);
	mfr_put16(out + 16, f->width);
	mfr_put16(out + 18, f->height);
	out[20] = f->channels;
	out[21] = f->encoding;
	mfr_put16(out + 22, 0);
	for (int i = 0; i < 10; i++)
		mfr_putf32(out + 24 + 4 * i, (f->flags & MFR_F_LANDMARKS) ? f->landmarks[i] : 0.0f);
	memcpy(out + MFR_FACE_HEADER, f->image, f->image_size);
}

uint32_t mfr_embedding_size(const mfr_schema *s)
{
	return MFR_EMB_HEADER + s->dim * (s->dtype == MFR_DTYPE_F16 ? 2u : 4u);
}

int mfr_embedding_decode(const uint8_t *p, uint32_t n, const mfr_schema *s, mfr_embedding *v, mfr_error *e)
{
	if (n != mfr_embedding_size(s))
		return mfr_fail(e, "EMBEDDING record of %u bytes, the schema (dim %u) needs %u", n, s->dim,
				mfr_embedding_size(s));
	v->id = mfr_get64(p);
	v->label = (int32_t)mfr_get32(p + 8);
	v->flags = mfr_get32(p + 12);
	if (check_common(v->label, v->flags, e) < 0)
		return -1;
	const uint8_t *q = p + MFR_EMB_HEADER;
	if (s->dtype == MFR_DTYPE_F16)
		for (uint32_t i = 0; i < s->dim; i++)
			v->vec[i] = mfr_half_to_float(mfr_get16(q + 2 * i));
	else
		for (uint32_t i = 0; i < s->dim; i++)
			v->vec[i] = mfr_getf32(q + 4 * i);
	for (uint32_t i = 0; i < s->dim; i++)
		if (!isfinite(v->vec[i]))
			return mfr_fail(e, "embedding value %u is not finite", i);
	return 0;
}

void mfr_embedding_encode(const mfr_embedding *v, const mfr_schema *s, uint8_t *out)
{
	mfr_put64(out, v->id);
	mfr_put32(out + 8, (uint32_t)v->label);
	mfr_put32(out + 12, v->flags);
	uint8_t *q = out + MFR_EMB_HEADER;
	if (s->dtype == MFR_DTYPE_F16)
		for (uint32_t i = 0; i < s->dim; i++)
			mfr_put16(q + 2 * i, mfr_float_to_half(v->vec[i]));
	else
		for (uint32_t i = 0; i < s->dim; i++)
			mfr_putf32(q + 4 * i, v->vec[i]);
}
