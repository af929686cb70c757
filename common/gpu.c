/* gpu.c — the element-type helpers of gpu.h (host code, built always), and
 * the CUDA backend's entry points when mfr is built without CUDA (make
 * CUDA=no, or nvcc absent): no device is ever found and opening one fails
 * with that reason, so tools carry no #ifdef. With CUDA the real ones are
 * in common/cuda/. */
#include "gpu.h" /* defines: mfr_gpu API */

#include <stdio.h>
#include <string.h>

/* the element-type helpers, with or without CUDA */
size_t mfr_dtype_size(mfr_dtype t) { return t == MFR_F32 ? 4 : 2; }

const char *mfr_dtype_name(mfr_dtype t) { return t == MFR_F16 ? "fp16" : t == MFR_BF16 ? "bf16" : "fp32"; }

int mfr_dtype_parse(const char *s)
{
	if (!strcmp(s, "fp32") || !strcmp(s, "float32"))
		return MFR_F32;
	if (!strcmp(s, "fp16") || !strcmp(s, "float16") || !strcmp(s, "half"))
		return MFR_F16;
	if (!strcmp(s, "bf16") || !strcmp(s, "bfloat16"))
		return MFR_BF16;
	return -1;
}

#ifndef MFR_HAVE_CUDA

int mfr_gpu_count(char *why, size_t len)
{
	if (why && len)
		snprintf(why, len, "built without CUDA");
	return 0;
}

void mfr_gpu_versions(char *buf, size_t len)
{
	if (buf && len)
		snprintf(buf, len, "built without CUDA");
}

mfr_gpu *mfr_gpu_open(int dev, mfr_error *e)
{
	(void)dev;
	mfr_fail(e, "no GPU: built without CUDA (nvcc was not found, or make CUDA=no)");
	return NULL;
}

void mfr_gpu_close(mfr_gpu *g) { (void)g; }

/* never called without a device; here so that callers link */
const char *mfr_gpu_name(const mfr_gpu *g) { (void)g; return "none"; }
int mfr_gpu_capability(const mfr_gpu *g) { (void)g; return 0; }
#endif
