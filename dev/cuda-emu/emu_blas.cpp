/* emu_blas.cpp — cuda-emu's cuBLAS: handles, math mode and the GEMMs
 * (column-major, op N/T, A/B fp32/fp16/bf16, C of the same type or fp32,
 * alpha/beta float, compute 32F) as naive loops summing in float. With
 * TF32 allowed (CUBLAS_COMPUTE_32F_FAST_TF32, or COMPUTE_32F under
 * CUBLAS_TF32_TENSOR_OP_MATH) fp32 inputs are rounded to TF32 first, as the
 * tensor cores do. Arguments are validated as cuBLAS does (leading
 * dimensions, types), and operand ranges must lie in device memory. A GEMM
 * runs when called, after the work deferred on the handle's stream. */
#include "cublas_v2.h"

#include <stdio.h>
#include <stdlib.h>

struct emu_cublas {
	unsigned magic;
	cudaStream_t stream;
	cublasMath_t math;
	cublasPointerMode_t pmode;
};
#define BLAS_MAGIC 0xb1a5b1a5u

static float tf32(float x)
{
	uint32_t u;
	memcpy(&u, &x, 4);
	if ((u & 0x7f800000u) == 0x7f800000u)
		return x;
	u += 0x1000u; /* round to nearest, ties away (cvt.rna.tf32.f32) */
	u &= ~0x1fffu;
	memcpy(&x, &u, 4);
	return x;
}

static float ldt(const void *p, size_t i, cudaDataType_t t)
{
	switch (t) {
	case CUDA_R_16F: return emu_h2f(((const uint16_t *)p)[i]);
	case CUDA_R_16BF: return emu_b2f(((const uint16_t *)p)[i]);
	case CUDA_R_64F: return (float)((const double *)p)[i];
	default: return ((const float *)p)[i];
	}
}

static void stt(void *p, size_t i, cudaDataType_t t, float v)
{
	switch (t) {
	case CUDA_R_16F: ((uint16_t *)p)[i] = emu_f2h(v); break;
	case CUDA_R_16BF: ((uint16_t *)p)[i] = emu_f2b(v); break;
	case CUDA_R_64F: ((double *)p)[i] = v; break;
	default: ((float *)p)[i] = v;
	}
}

static size_t tsize(cudaDataType_t t) { return t == CUDA_R_16F || t == CUDA_R_16BF ? 2 : t == CUDA_R_64F ? 8 : 4; }

static const char *tname(cudaDataType_t t)
{
	switch (t) {
	case CUDA_R_16F: return "CUDA_R_16F";
	case CUDA_R_16BF: return "CUDA_R_16BF";
	case CUDA_R_32F: return "CUDA_R_32F";
	case CUDA_R_64F: return "CUDA_R_64F";
	default: return "another type";
	}
}

static int handle_ok(cublasHandle_t h) { return h && h->magic == BLAS_MAGIC; }

extern "C" {

cublasStatus_t cublasCreate(cublasHandle_t *h)
{
	if (!h)
		return CUBLAS_STATUS_INVALID_VALUE;
	int n = 0;
	if (cudaGetDeviceCount(&n) != cudaSuccess || n < 1) {
		cudaGetLastError();
		return CUBLAS_STATUS_NOT_INITIALIZED;
	}
	*h = new emu_cublas{BLAS_MAGIC, 0, CUBLAS_DEFAULT_MATH, CUBLAS_POINTER_MODE_HOST};
	return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasDestroy(cublasHandle_t h)
{
	if (!handle_ok(h))
		return CUBLAS_STATUS_NOT_INITIALIZED;
	h->magic = 0;
	delete h;
	return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasSetStream(cublasHandle_t h, cudaStream_t s)
{
	if (!handle_ok(h))
		return CUBLAS_STATUS_NOT_INITIALIZED;
	if (!emu_stream_ok(s)) {
		emu_note("cublasSetStream: invalid stream %p", (void *)s);
		return CUBLAS_STATUS_INVALID_VALUE;
	}
	h->stream = s;
	return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasGetStream(cublasHandle_t h, cudaStream_t *s)
{
	if (!handle_ok(h))
		return CUBLAS_STATUS_NOT_INITIALIZED;
	if (s)
		*s = h->stream;
	return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasSetMathMode(cublasHandle_t h, cublasMath_t m)
{
	if (!handle_ok(h))
		return CUBLAS_STATUS_NOT_INITIALIZED;
	unsigned base = (unsigned)m & ~16u;
	if (base > 3)
		return CUBLAS_STATUS_INVALID_VALUE;
	h->math = m;
	return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasGetMathMode(cublasHandle_t h, cublasMath_t *m)
{
	if (!handle_ok(h))
		return CUBLAS_STATUS_NOT_INITIALIZED;
	if (m)
		*m = h->math;
	return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasSetPointerMode(cublasHandle_t h, cublasPointerMode_t m)
{
	if (!handle_ok(h))
		return CUBLAS_STATUS_NOT_INITIALIZED;
	h->pmode = m;
	return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasSetWorkspace(cublasHandle_t h, void *ws, size_t bytes)
{
	if (!handle_ok(h))
		return CUBLAS_STATUS_NOT_INITIALIZED;
	if (bytes && !emu_check_device_range(ws, bytes, "cublasSetWorkspace"))
		return CUBLAS_STATUS_INVALID_VALUE;
	return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasGetVersion(cublasHandle_t h, int *v)
{
	(void)h;
	if (v)
		*v = 130000;
	return CUBLAS_STATUS_SUCCESS;
}

/* cuBLAS 13.0.0, as cublasGetVersion says */
cublasStatus_t cublasGetProperty(libraryPropertyType type, int *value)
{
	if (!value || type < MAJOR_VERSION || type > PATCH_LEVEL)
		return CUBLAS_STATUS_INVALID_VALUE;
	*value = type == MAJOR_VERSION ? 13 : 0;
	return CUBLAS_STATUS_SUCCESS;
}

const char *cublasGetStatusName(cublasStatus_t s)
{
	switch (s) {
	case CUBLAS_STATUS_SUCCESS: return "CUBLAS_STATUS_SUCCESS";
	case CUBLAS_STATUS_NOT_INITIALIZED: return "CUBLAS_STATUS_NOT_INITIALIZED";
	case CUBLAS_STATUS_ALLOC_FAILED: return "CUBLAS_STATUS_ALLOC_FAILED";
	case CUBLAS_STATUS_INVALID_VALUE: return "CUBLAS_STATUS_INVALID_VALUE";
	case CUBLAS_STATUS_ARCH_MISMATCH: return "CUBLAS_STATUS_ARCH_MISMATCH";
	case CUBLAS_STATUS_MAPPING_ERROR: return "CUBLAS_STATUS_MAPPING_ERROR";
	case CUBLAS_STATUS_EXECUTION_FAILED: return "CUBLAS_STATUS_EXECUTION_FAILED";
	case CUBLAS_STATUS_INTERNAL_ERROR: return "CUBLAS_STATUS_INTERNAL_ERROR";
	case CUBLAS_STATUS_NOT_SUPPORTED: return "CUBLAS_STATUS_NOT_SUPPORTED";
	case CUBLAS_STATUS_LICENSE_ERROR: return "CUBLAS_STATUS_LICENSE_ERROR";
	}
	return "CUBLAS_STATUS_UNKNOWN";
}

const char *cublasGetStatusString(cublasStatus_t s)
{
	switch (s) {
	case CUBLAS_STATUS_SUCCESS: return "success";
	case CUBLAS_STATUS_NOT_INITIALIZED: return "the library was not initialized";
	case CUBLAS_STATUS_ALLOC_FAILED: return "the resource allocation failed";
	case CUBLAS_STATUS_INVALID_VALUE: return "an invalid numeric value was used as an argument";
	case CUBLAS_STATUS_ARCH_MISMATCH: return "an absent device architectural feature is required";
	case CUBLAS_STATUS_MAPPING_ERROR: return "an access to GPU memory space failed";
	case CUBLAS_STATUS_EXECUTION_FAILED: return "the GPU program failed to execute";
	case CUBLAS_STATUS_INTERNAL_ERROR: return "an internal operation failed";
	case CUBLAS_STATUS_NOT_SUPPORTED: return "the functionality requested is not supported";
	case CUBLAS_STATUS_LICENSE_ERROR: return "error detected trying to check the license";
	}
	return "unknown error";
}

} /* extern "C" */

/* Elements spanned by a rows x cols column-major operand with leading
 * dimension ld, repeated batch times stride elements apart. */
static size_t extent(int rows, int cols, int ld, long long stride, int batch)
{
	if (rows == 0 || cols == 0 || batch == 0)
		return 0;
	return (size_t)(cols - 1) * (size_t)ld + (size_t)rows + (size_t)(batch - 1) * (size_t)stride;
}

static cublasStatus_t gemm(const char *fn, cublasHandle_t h, cublasOperation_t ta, cublasOperation_t tb, int m, int n,
			   int k, const void *alpha, const void *A, cudaDataType_t at, int lda, long long sa,
			   const void *B, cudaDataType_t bt, int ldb, long long sb, const void *beta, void *C,
			   cudaDataType_t ct, int ldc, long long sc, int batch, cublasComputeType_t compute)
{
	if (!handle_ok(h))
		return CUBLAS_STATUS_NOT_INITIALIZED;
	if ((unsigned)ta > 2 || (unsigned)tb > 2 || m < 0 || n < 0 || k < 0 || batch < 0) {
		emu_note("%s: invalid op or negative size (m %d, n %d, k %d, batch %d)", fn, m, n, k, batch);
		return CUBLAS_STATUS_INVALID_VALUE;
	}
	int ra = ta == CUBLAS_OP_N ? m : k, ca = ta == CUBLAS_OP_N ? k : m;
	int rb = tb == CUBLAS_OP_N ? k : n, cb = tb == CUBLAS_OP_N ? n : k;
	if (lda < (ra > 1 ? ra : 1) || ldb < (rb > 1 ? rb : 1) || ldc < (m > 1 ? m : 1)) {
		emu_note("%s: leading dimension too small: lda %d (needs >= %d), ldb %d (>= %d), ldc %d (>= %d)", fn,
			 lda, ra, ldb, rb, ldc, m);
		return CUBLAS_STATUS_INVALID_VALUE;
	}
	if (sa < 0 || sb < 0 || sc < 0) {
		emu_note("%s: negative batch stride", fn);
		return CUBLAS_STATUS_INVALID_VALUE;
	}
	int fast32 = compute == CUBLAS_COMPUTE_32F || compute == CUBLAS_COMPUTE_32F_PEDANTIC ||
		     compute == CUBLAS_COMPUTE_32F_FAST_TF32 || compute == CUBLAS_COMPUTE_32F_FAST_16F ||
		     compute == CUBLAS_COMPUTE_32F_FAST_16BF;
	int ok = fast32 && at == bt &&
		 ((at == CUDA_R_32F && ct == CUDA_R_32F) ||
		  ((at == CUDA_R_16F || at == CUDA_R_16BF) && (ct == at || ct == CUDA_R_32F)));
	if (!ok) {
		emu_note("%s: unsupported combination A %s, B %s, C %s, compute %d", fn, tname(at), tname(bt), tname(ct),
			 (int)compute);
		return CUBLAS_STATUS_NOT_SUPPORTED;
	}
	if (!alpha || !beta) {
		emu_note("%s: NULL alpha or beta", fn);
		return CUBLAS_STATUS_INVALID_VALUE;
	}
	if (m == 0 || n == 0 || batch == 0)
		return CUBLAS_STATUS_SUCCESS;
	emu_stream_flush(h->stream); /* runs in order on the handle's stream */
	emu_device_open(C);
	float al, be;
	if (h->pmode == CUBLAS_POINTER_MODE_DEVICE) {
		if (!emu_check_device_range(alpha, 4, fn) || !emu_check_device_range(beta, 4, fn))
			emu_fatal("%s: alpha/beta are not device memory under CUBLAS_POINTER_MODE_DEVICE", fn);
	}
	al = *(const float *)alpha;
	be = *(const float *)beta;
	size_t ea = k ? extent(ra, ca, lda, sa, batch) : 0, eb = k ? extent(rb, cb, ldb, sb, batch) : 0;
	size_t ec = extent(m, n, ldc, sc, batch);
	if ((ea && !emu_check_device_range(A, ea * tsize(at), fn)) ||
	    (eb && !emu_check_device_range(B, eb * tsize(bt), fn)) || !emu_check_device_range(C, ec * tsize(ct), fn))
		emu_fatal("%s: an operand is not (all) device memory (m %d, n %d, k %d, lda %d, ldb %d, ldc %d, batch %d): "
			  "the GEMM would fault on a device",
			  fn, m, n, k, lda, ldb, ldc, batch);
	int use_tf32 = at == CUDA_R_32F && (compute == CUBLAS_COMPUTE_32F_FAST_TF32 ||
					    (compute == CUBLAS_COMPUTE_32F && (h->math & 15) == CUBLAS_TF32_TENSOR_OP_MATH));
	if (at == CUDA_R_32F && compute == CUBLAS_COMPUTE_32F_FAST_16F)
		use_tf32 = 0; /* not modelled: would round to fp16 */
	for (int b = 0; b < batch; b++) {
		const char *Ab = (const char *)A + (size_t)b * (size_t)sa * tsize(at);
		const char *Bb = (const char *)B + (size_t)b * (size_t)sb * tsize(bt);
		char *Cb = (char *)C + (size_t)b * (size_t)sc * tsize(ct);
		for (int j = 0; j < n; j++)
			for (int i = 0; i < m; i++) {
				float s = 0.f;
				for (int p = 0; p < k; p++) {
					float x = ldt(Ab, ta == CUBLAS_OP_N ? (size_t)i + (size_t)p * lda : (size_t)p + (size_t)i * lda, at);
					float y = ldt(Bb, tb == CUBLAS_OP_N ? (size_t)p + (size_t)j * ldb : (size_t)j + (size_t)p * ldb, bt);
					if (use_tf32) {
						x = tf32(x);
						y = tf32(y);
					}
					s += x * y;
				}
				size_t ci = (size_t)i + (size_t)j * ldc;
				float v = al * s;
				if (be != 0.f) /* beta = 0: C is not read (NaN there is ignored) */
					v += be * ldt(Cb, ci, ct);
				stt(Cb, ci, ct, v);
			}
	}
	emu_device_close_all();
	return CUBLAS_STATUS_SUCCESS;
}

extern "C" {

cublasStatus_t cublasGemmEx(cublasHandle_t h, cublasOperation_t ta, cublasOperation_t tb, int m, int n, int k,
			    const void *alpha, const void *A, cudaDataType_t at, int lda, const void *B,
			    cudaDataType_t bt, int ldb, const void *beta, void *C, cudaDataType_t ct, int ldc,
			    cublasComputeType_t compute, cublasGemmAlgo_t algo)
{
	emu_count(EMU_N_LIB);
	(void)algo;
	return gemm("cublasGemmEx", h, ta, tb, m, n, k, alpha, A, at, lda, 0, B, bt, ldb, 0, beta, C, ct, ldc, 0, 1,
		    compute);
}

cublasStatus_t cublasGemmStridedBatchedEx(cublasHandle_t h, cublasOperation_t ta, cublasOperation_t tb, int m, int n,
					  int k, const void *alpha, const void *A, cudaDataType_t at, int lda,
					  long long sa, const void *B, cudaDataType_t bt, int ldb, long long sb,
					  const void *beta, void *C, cudaDataType_t ct, int ldc, long long sc, int batch,
					  cublasComputeType_t compute, cublasGemmAlgo_t algo)
{
	emu_count(EMU_N_LIB);
	(void)algo;
	return gemm("cublasGemmStridedBatchedEx", h, ta, tb, m, n, k, alpha, A, at, lda, sa, B, bt, ldb, sb, beta, C,
		    ct, ldc, sc, batch, compute);
}

cublasStatus_t cublasSgemm(cublasHandle_t h, cublasOperation_t ta, cublasOperation_t tb, int m, int n, int k,
			   const float *alpha, const float *A, int lda, const float *B, int ldb, const float *beta,
			   float *C, int ldc)
{
	return gemm("cublasSgemm", h, ta, tb, m, n, k, alpha, A, CUDA_R_32F, lda, 0, B, CUDA_R_32F, ldb, 0, beta, C,
		    CUDA_R_32F, ldc, 0, 1, CUBLAS_COMPUTE_32F);
}

cublasStatus_t cublasSgemmStridedBatched(cublasHandle_t h, cublasOperation_t ta, cublasOperation_t tb, int m, int n,
					 int k, const float *alpha, const float *A, int lda, long long sa,
					 const float *B, int ldb, long long sb, const float *beta, float *C, int ldc,
					 long long sc, int batch)
{
	return gemm("cublasSgemmStridedBatched", h, ta, tb, m, n, k, alpha, A, CUDA_R_32F, lda, sa, B, CUDA_R_32F,
		    ldb, sb, beta, C, CUDA_R_32F, ldc, sc, batch, CUBLAS_COMPUTE_32F);
}

} /* extern "C" */
