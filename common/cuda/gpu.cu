/* gpu.cu — the CUDA backend's core (contracts in gpu.h): devices, the
 * stream and library handles, memory and copies, the launch-error record,
 * and the one row-major GEMM over cuBLAS. */
#include "gpu_impl.h" /* defines: struct mfr_gpu, check macros */

#include <nccl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MFR_STR_(x) #x
#define MFR_STR(x) MFR_STR_(x)
#define CUDNN_BUILT MFR_STR(CUDNN_MAJOR) "." MFR_STR(CUDNN_MINOR) "." MFR_STR(CUDNN_PATCHLEVEL)

extern "C" {

int mfr_gpu_count(char *why, size_t len)
{
	int n = 0;
	cudaError_t st_ = cudaGetDeviceCount(&n);
	if (st_ != cudaSuccess || n <= 0) {
		if (why && len)
			snprintf(why, len, "%s", st_ == cudaErrorInsufficientDriver ? "no CUDA driver"
						 : st_ == cudaErrorNoDevice || st_ == cudaSuccess ? "no CUDA device"
						 : cudaGetErrorString(st_));
		cudaGetLastError(); /* a failed probe must not poison later checks */
		return 0;
	}
	if (why && len)
		why[0] = 0;
	return n;
}

/* "13.0" from 13000 (CUDA's and NCCL 2.x's encodings differ: see below). */
static void version_str(char *b, size_t n, int v, int nccl)
{
	if (nccl) /* NCCL >= 2.9: major * 10000 + minor * 100 + patch */
		snprintf(b, n, "%d.%d.%d", v / 10000, v / 100 % 100, v % 100);
	else
		snprintf(b, n, "%d.%d", v / 1000, v / 10 % 100);
}

void mfr_gpu_versions(char *buf, size_t len)
{
	int drv = 0, rt = 0, nv = 0, bl[3] = {0, 0, 0};
	char d[16] = "?", r[16] = "?", n[16] = "?", nb[16];
	if (cudaDriverGetVersion(&drv) == cudaSuccess)
		snprintf(d, sizeof d, "none"); /* 0: no driver */
	if (drv > 0)
		version_str(d, sizeof d, drv, 0);
	if (cudaRuntimeGetVersion(&rt) == cudaSuccess)
		version_str(r, sizeof r, rt, 0);
	cudaGetLastError();
	if (ncclGetVersion(&nv) == ncclSuccess)
		version_str(n, sizeof n, nv, 1);
	version_str(nb, sizeof nb, NCCL_VERSION_CODE, 1);
	cublasGetProperty(MAJOR_VERSION, &bl[0]);
	cublasGetProperty(MINOR_VERSION, &bl[1]);
	cublasGetProperty(PATCH_LEVEL, &bl[2]);
	/* cuDNN 9: major * 10000 + minor * 100 + patch */
	size_t dv = cudnnGetVersion();
	int dmaj = (int)(dv / 10000), dmin = (int)(dv / 100 % 100), dpat = (int)(dv % 100);
	snprintf(buf, len, "driver %s, runtime %s, cuDNN %d.%d.%d%s, cuBLAS %d.%d.%d, NCCL %s%s%s%s", d, r, dmaj, dmin,
		 dpat, dv == CUDNN_VERSION ? "" : " (built with " CUDNN_BUILT ")", bl[0], bl[1], bl[2], n,
		 nv == NCCL_VERSION_CODE ? "" : " (built with ", nv == NCCL_VERSION_CODE ? "" : nb,
		 nv == NCCL_VERSION_CODE ? "" : ")");
}

static int open_fail(mfr_gpu *g, mfr_error *e)
{
	(void)e;
	mfr_gpu_close(g);
	return -1;
}

static int open_handles(mfr_gpu *g, mfr_error *e)
{
	cudaDeviceProp p;
	MFR_CUDA_CHECK(e, cudaSetDevice(g->dev));
	MFR_CUDA_CHECK(e, cudaGetDeviceProperties(&p, g->dev));
	snprintf(g->name, sizeof g->name, "%s", p.name);
	g->cc = p.major * 10 + p.minor;
	g->sms = p.multiProcessorCount;
	MFR_CUDA_CHECK(e, cudaStreamCreateWithFlags(&g->stream, cudaStreamNonBlocking));
	MFR_CUDA_CHECK(e, cudaStreamCreateWithFlags(&g->side, cudaStreamNonBlocking));
	MFR_CUDA_CHECK(e, cudaEventCreateWithFlags(&g->ev_main, cudaEventDisableTiming));
	MFR_CUDA_CHECK(e, cudaEventCreateWithFlags(&g->ev_side, cudaEventDisableTiming));
	MFR_CUBLAS_CHECK(e, cublasCreate(&g->blas));
	MFR_CUBLAS_CHECK(e, cublasSetStream(g->blas, g->stream));
	/* after SetStream, which drops a workspace set before it */
	g->blas_ws_bytes = g->cc >= 90 ? MFR_GPU_BLAS_WORKSPACE_MAX : MFR_GPU_BLAS_WORKSPACE_MAX / 8;
	MFR_CUDA_CHECK(e, cudaMalloc(&g->blas_ws, g->blas_ws_bytes));
	g->used = g->peak = g->blas_ws_bytes;
	MFR_CUBLAS_CHECK(e, cublasSetWorkspace(g->blas, g->blas_ws, g->blas_ws_bytes));
	MFR_CUDNN_CHECK(e, cudnnCreate(&g->dnn));
	MFR_CUDNN_CHECK(e, cudnnSetStream(g->dnn, g->stream));
	mfr_gpu_set_tf32(g, 0);
	return 0;
}

mfr_gpu *mfr_gpu_open(int dev, mfr_error *e)
{
	char why[128];
	int n = mfr_gpu_count(why, sizeof why);
	if (n == 0) {
		mfr_fail(e, "no GPU: %s", why);
		return NULL;
	}
	if (dev < 0 || dev >= n) {
		mfr_fail(e, "GPU %d does not exist (%d device%s)", dev, n, n == 1 ? "" : "s");
		return NULL;
	}
	mfr_gpu *g = (mfr_gpu *)calloc(1, sizeof *g);
	if (!g) {
		mfr_fail(e, "out of memory");
		return NULL;
	}
	g->dev = dev;
	const char *s = getenv("MFR_CUDA_SYNC");
	g->sync_each = s && s[0] == '1';
	s = getenv("MFR_GPU_PROFILE");
	g->prof = s && s[0] == '1';
	if (open_handles(g, e) < 0) {
		open_fail(g, e);
		return NULL;
	}
	return g;
}

void mfr_gpu_close(mfr_gpu *g)
{
	if (!g)
		return;
	cudaSetDevice(g->dev);
	if (g->stream)
		cudaStreamSynchronize(g->stream);
	if (g->side)
		cudaStreamSynchronize(g->side);
	if (g->scratch)
		cudaFree(g->scratch);
	for (int i = 0; i < g->pmade; i++)
		cudaEventDestroy(g->pev[i]);
	free(g->pev);
	free(g->pname);
	free(g->ptot);
	if (g->dnn)
		cudnnDestroy(g->dnn);
	if (g->blas)
		cublasDestroy(g->blas);
	if (g->blas_ws)
		cudaFree(g->blas_ws);
	if (g->ev_main)
		cudaEventDestroy(g->ev_main);
	if (g->ev_side)
		cudaEventDestroy(g->ev_side);
	if (g->side)
		cudaStreamDestroy(g->side);
	if (g->stream)
		cudaStreamDestroy(g->stream);
	free(g);
}

const char *mfr_gpu_name(const mfr_gpu *g) { return g->name; }
int mfr_gpu_device(const mfr_gpu *g) { return g->dev; }
int mfr_gpu_capability(const mfr_gpu *g) { return g->cc; }

void mfr_gpu_memory(const mfr_gpu *g, size_t *free_bytes, size_t *total_bytes)
{
	size_t f = 0, t = 0;
	(void)g;
	if (cudaMemGetInfo(&f, &t) != cudaSuccess)
		cudaGetLastError();
	if (free_bytes)
		*free_bytes = f;
	if (total_bytes)
		*total_bytes = t;
}

void mfr_gpu_set_tf32(mfr_gpu *g, int on)
{
	g->tf32 = on;
	/* cuBLAS: the math mode decides fp32 GEMMs through cublasSgemm-style
	 * calls; mfr_gemm_cuda also picks the compute type per call. */
	cublasSetMathMode(g->blas, on ? CUBLAS_TF32_TENSOR_OP_MATH : CUBLAS_DEFAULT_MATH);
}

int mfr_gpu_tf32(const mfr_gpu *g) { return g->tf32; }

/* A size header in front of every allocation, so usage can be counted. */
#define HDR 256

void *mfr_gpu_alloc(mfr_gpu *g, size_t bytes, mfr_error *e)
{
	void *p = NULL;
	cudaError_t st_ = cudaMalloc(&p, bytes + HDR);
	if (st_ != cudaSuccess) {
		size_t f = 0, t = 0;
		cudaGetLastError();
		mfr_gpu_memory(g, &f, &t);
		mfr_fail(e, "out of GPU memory for %zu bytes (%zu free of %zu)", bytes, f, t);
		return NULL;
	}
	size_t hdr[2] = {bytes, 0};
	if (cudaMemcpy(p, hdr, sizeof hdr, cudaMemcpyHostToDevice) != cudaSuccess) {
		cudaGetLastError();
		cudaFree(p);
		mfr_fail(e, "CUDA: cannot write an allocation header");
		return NULL;
	}
	g->used += bytes;
	if (g->used > g->peak)
		g->peak = g->used;
	return (char *)p + HDR;
}

void mfr_gpu_free(mfr_gpu *g, void *p)
{
	if (!p)
		return;
	size_t hdr[2] = {0, 0};
	cudaStreamSynchronize(g->stream);
	cudaStreamSynchronize(g->side);
	char *base = (char *)p - HDR;
	if (cudaMemcpy(hdr, base, sizeof hdr, cudaMemcpyDeviceToHost) == cudaSuccess)
		g->used -= hdr[0] <= g->used ? hdr[0] : g->used;
	else
		cudaGetLastError();
	cudaFree(base);
}

void *mfr_gpu_host_alloc(mfr_gpu *g, size_t bytes, mfr_error *e)
{
	void *p = NULL;
	(void)g;
	if (cudaMallocHost(&p, bytes ? bytes : 1) != cudaSuccess) {
		cudaGetLastError();
		mfr_fail(e, "out of page-locked host memory for %zu bytes", bytes);
		return NULL;
	}
	return p;
}

void mfr_gpu_host_free(mfr_gpu *g, void *p)
{
	(void)g;
	if (p)
		cudaFreeHost(p);
}

int mfr_gpu_put(mfr_gpu *g, void *dst, const void *src, size_t bytes, mfr_error *e)
{
	MFR_CUDA_CHECK(e, cudaMemcpyAsync(dst, src, bytes, cudaMemcpyHostToDevice, g->stream));
	MFR_CUDA_CHECK(e, cudaStreamSynchronize(g->stream));
	return 0;
}

int mfr_gpu_get(mfr_gpu *g, void *dst, const void *src, size_t bytes, mfr_error *e)
{
	MFR_CUDA_CHECK(e, cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToHost, g->stream));
	MFR_CUDA_CHECK(e, cudaStreamSynchronize(g->stream));
	return 0;
}

int mfr_gpu_put_async(mfr_gpu *g, void *dst, const void *src, size_t bytes, mfr_error *e)
{
	MFR_CUDA_CHECK(e, cudaMemcpyAsync(dst, src, bytes, cudaMemcpyHostToDevice, g->stream));
	return 0;
}

int mfr_gpu_get_async(mfr_gpu *g, void *dst, const void *src, size_t bytes, mfr_error *e)
{
	MFR_CUDA_CHECK(e, cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToHost, g->stream));
	return 0;
}

int mfr_gpu_copy(mfr_gpu *g, void *dst, const void *src, size_t bytes, mfr_error *e)
{
	MFR_CUDA_CHECK(e, cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice, g->stream));
	return 0;
}

int mfr_gpu_zero(mfr_gpu *g, void *p, size_t bytes, mfr_error *e)
{
	MFR_CUDA_CHECK(e, cudaMemsetAsync(p, 0, bytes, g->stream));
	return 0;
}

int mfr_gpu_side_wait(mfr_gpu *g, mfr_error *e)
{
	MFR_CUDA_CHECK(e, cudaEventRecord(g->ev_main, g->stream));
	MFR_CUDA_CHECK(e, cudaStreamWaitEvent(g->side, g->ev_main, 0));
	return 0;
}

int mfr_gpu_main_wait(mfr_gpu *g, mfr_error *e)
{
	MFR_CUDA_CHECK(e, cudaEventRecord(g->ev_side, g->side));
	MFR_CUDA_CHECK(e, cudaStreamWaitEvent(g->stream, g->ev_side, 0));
	return 0;
}

int mfr_gpu_put_side(mfr_gpu *g, void *dst, const void *src, size_t bytes, mfr_error *e)
{
	MFR_CUDA_CHECK(e, cudaMemcpyAsync(dst, src, bytes, cudaMemcpyHostToDevice, g->side));
	return 0;
}

int mfr_gpu_sync(mfr_gpu *g, mfr_error *e)
{
	if (mfr_gpu_check(g, "launch", e) < 0)
		return -1;
	MFR_CUDA_CHECK(e, cudaStreamSynchronize(g->side));
	MFR_CUDA_CHECK(e, cudaStreamSynchronize(g->stream));
	return 0;
}

void mfr_gpu_launched(mfr_gpu *g, const char *what)
{
	cudaError_t st_ = cudaGetLastError();
	if (st_ == cudaSuccess && g->sync_each)
		st_ = cudaStreamSynchronize(g->stream);
	if (st_ != cudaSuccess && !g->launch_err[0])
		snprintf(g->launch_err, sizeof g->launch_err, "%s: %s", what, cudaGetErrorString(st_));
}

int mfr_gpu_check(mfr_gpu *g, const char *what, mfr_error *e)
{
	mfr_gpu_launched(g, what);
	if (g->launch_err[0]) {
		mfr_fail(e, "CUDA: %s", g->launch_err);
		g->launch_err[0] = 0;
		return -1;
	}
	return 0;
}

void *mfr_gpu_scratch(mfr_gpu *g, size_t bytes, mfr_error *e)
{
	if (bytes <= g->scratch_bytes && g->scratch)
		return g->scratch;
	if (g->scratch) {
		cudaStreamSynchronize(g->stream); /* queued work may still use it */
		cudaFree(g->scratch);
		g->used -= g->scratch_bytes;
		g->scratch = NULL;
		g->scratch_bytes = 0;
	}
	size_t want = bytes < 256 ? 256 : bytes;
	if (cudaMalloc(&g->scratch, want) != cudaSuccess) {
		size_t f = 0, t = 0;
		cudaGetLastError();
		g->scratch = NULL;
		mfr_gpu_memory(g, &f, &t);
		mfr_fail(e, "out of GPU memory for %zu bytes of scratch (%zu free of %zu)", bytes, f, t);
		return NULL;
	}
	g->scratch_bytes = want;
	g->used += want;
	if (g->used > g->peak)
		g->peak = g->used;
	return g->scratch;
}

/* ---- span profiler ---- */

struct mfr_gpu_ptotal {
	const char *name;
	double ms;
	long n;
};

void mfr_gpu_profile(mfr_gpu *g, int on) { g->prof = on; }
int mfr_gpu_profiling(const mfr_gpu *g) { return g->prof; }

void mfr_gpu_span(mfr_gpu *g, const char *name)
{
	if (!g->prof)
		return;
	if (g->pn == g->pmade) { /* one more event; on failure the profile stops */
		int cap = g->pmade ? 2 * g->pmade : 256;
		cudaEvent_t *ev = (cudaEvent_t *)realloc(g->pev, (size_t)cap * sizeof *ev);
		if (ev)
			g->pev = ev;
		const char **nm = (const char **)realloc(g->pname, (size_t)cap * sizeof *nm);
		if (nm)
			g->pname = nm;
		if (!ev || !nm || cudaEventCreate(&g->pev[g->pmade]) != cudaSuccess) {
			cudaGetLastError();
			g->prof = 0;
			return;
		}
		g->pmade++;
	}
	if (cudaEventRecord(g->pev[g->pn], g->stream) != cudaSuccess) {
		cudaGetLastError();
		g->prof = 0;
		return;
	}
	g->pname[g->pn++] = name;
}

static void ptotal_add(mfr_gpu *g, const char *name, double ms)
{
	int i = 0;
	while (i < g->ntot && g->ptot[i].name != name && strcmp(g->ptot[i].name, name) != 0)
		i++;
	if (i == g->ntot) {
		struct mfr_gpu_ptotal *t = (struct mfr_gpu_ptotal *)realloc(g->ptot, (size_t)(i + 1) * sizeof *t);
		if (!t)
			return;
		g->ptot = t;
		g->ptot[g->ntot++] = (struct mfr_gpu_ptotal){name, 0, 0};
	}
	g->ptot[i].ms += ms;
	g->ptot[i].n++;
}

int mfr_gpu_profile_collect(mfr_gpu *g, mfr_error *e)
{
	if (g->pn < 2)
		return 0;
	MFR_CUDA_CHECK(e, cudaEventSynchronize(g->pev[g->pn - 1]));
	for (int i = 0; i + 1 < g->pn; i++) {
		float ms = 0;
		if (!g->pname[i])
			continue;
		MFR_CUDA_CHECK(e, cudaEventElapsedTime(&ms, g->pev[i], g->pev[i + 1]));
		ptotal_add(g, g->pname[i], ms);
	}
	cudaEvent_t last = g->pev[g->pn - 1]; /* the running span starts the next batch */
	g->pev[g->pn - 1] = g->pev[0];
	g->pev[0] = last;
	g->pname[0] = g->pname[g->pn - 1];
	g->pn = 1;
	return 0;
}

static int ptotal_desc(const void *a, const void *b)
{
	double x = ((const struct mfr_gpu_ptotal *)a)->ms, y = ((const struct mfr_gpu_ptotal *)b)->ms;
	return x < y ? 1 : x > y ? -1 : 0;
}

void mfr_gpu_profile_report(mfr_gpu *g, FILE *f, double units, const char *unit)
{
	double all = 0;
	if (!g->ntot)
		return;
	for (int i = 0; i < g->ntot; i++)
		all += g->ptot[i].ms;
	qsort(g->ptot, (size_t)g->ntot, sizeof *g->ptot, ptotal_desc);
	if (units <= 0)
		units = 1;
	fprintf(f, "# GPU time by span on %s: %.3f ms per %s over %g %ss\n", g->name, all / units, unit, units, unit);
	for (int i = 0; i < g->ntot; i++)
		fprintf(f, "#   %9.3f ms %5.1f%% %8.1f calls  %s\n", g->ptot[i].ms / units,
			all > 0 ? 100 * g->ptot[i].ms / all : 0.0, g->ptot[i].n / units, g->ptot[i].name);
	g->ntot = 0;
}

void mfr_gpu_usage(const mfr_gpu *g, size_t *now, size_t *peak)
{
	if (now)
		*now = g->used;
	if (peak)
		*peak = g->peak;
}

/* Row-major C = op(A) op(B) is column-major C^T = op(B)^T op(A)^T: cuBLAS
 * gets B first with the transposes kept as they are (a row-major matrix read
 * column-major is already its transpose). */
int mfr_gemm_batched_cuda(int ta, int tb, int m, int n, int k, float alpha, const void *A, int lda, long long sa,
			  const void *B, int ldb, long long sb, float beta, void *C, int ldc, long long sc, int batch,
			  mfr_dtype ab, mfr_dtype c, mfr_gpu *g, mfr_error *e)
{
	if (c != ab && c != MFR_F32)
		return mfr_fail(e, "gemm: a %s product cannot be written as %s", mfr_dtype_name(ab), mfr_dtype_name(c));
	if (m <= 0 || n <= 0 || batch <= 0)
		return 0;
	cublasComputeType_t ct = ab == MFR_F32 && g->tf32 ? CUBLAS_COMPUTE_32F_FAST_TF32 : CUBLAS_COMPUTE_32F;
	cublasOperation_t oa = ta ? CUBLAS_OP_T : CUBLAS_OP_N, ob = tb ? CUBLAS_OP_T : CUBLAS_OP_N;
	if (k <= 0) { /* nothing summed: C = beta C */
		if (beta == 0.f && ldc == n && sc == (long long)m * n)
			return cudaMemsetAsync(C, 0, (size_t)m * n * batch * mfr_dtype_size(c), g->stream) == cudaSuccess
				       ? 0
				       : mfr_fail(e, "gemm: cannot clear C");
		return mfr_fail(e, "gemm: k = 0 with beta != 0 is not supported");
	}
	if (batch == 1)
		MFR_CUBLAS_CHECK(e, cublasGemmEx(g->blas, ob, oa, n, m, k, &alpha, B, mfr_cuda_type(ab), ldb, A,
						 mfr_cuda_type(ab), lda, &beta, C, mfr_cuda_type(c), ldc, ct,
						 CUBLAS_GEMM_DEFAULT));
	else
		MFR_CUBLAS_CHECK(e, cublasGemmStridedBatchedEx(g->blas, ob, oa, n, m, k, &alpha, B, mfr_cuda_type(ab),
							       ldb, sb, A, mfr_cuda_type(ab), lda, sa, &beta, C,
							       mfr_cuda_type(c), ldc, sc, batch, ct,
							       CUBLAS_GEMM_DEFAULT));
	return 0;
}

int mfr_gemm_cuda(int ta, int tb, int m, int n, int k, float alpha, const void *A, int lda, const void *B,
		  int ldb, float beta, void *C, int ldc, mfr_dtype ab, mfr_dtype c, mfr_gpu *g, mfr_error *e)
{
	return mfr_gemm_batched_cuda(ta, tb, m, n, k, alpha, A, lda, 0, B, ldb, 0, beta, C, ldc, 0, 1, ab, c, g, e);
}

} /* extern "C" */
