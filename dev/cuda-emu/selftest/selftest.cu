/* selftest.cu — cuda-emu's own checks (dev/cuda-emu/run.sh selftest):
 *  1. planted bugs: copies of gpu_impl.h's block_sum without one of its
 *     __syncthreads, elem.cu's tiled transpose without its trailing
 *     __syncthreads, and a warp-synchronous read without __syncwarp must give
 *     WRONG answers under the forward or the reverse schedule, while the
 *     originals are right under both (and a random one);
 *  2. warp intrinsics (__shfl*_sync with widths, votes, __syncthreads_count)
 *     against their definitions; shared memory starts poisoned;
 *  3. fp16 / bf16 conversions bit for bit (fp16 against the compiler's
 *     _Float16, bf16 against a nearest-candidate search);
 *  4. cuBLAS, cuDNN and NCCL stand-ins against double-precision loops;
 *  5. misuse the emulator must report (in a forked child): shuffles over
 *     missing or exited lanes, deadlock, a host pointer passed to a kernel,
 *     host code reading device memory, too much shared memory, bad launch
 *     configurations, copies out of bounds;
 *  6. lazy streams: a planted missing wait between two streams reads stale
 *     data and the fixed version does not, a page-locked source is read when
 *     the copy runs, in-order execution within a stream, legacy
 *     default-stream semantics, the flush points, an asynchronous error, and
 *     the warning for work never waited for;
 *  7. in an MPI world of several ranks (run.sh --ranks N): NCCL collectives
 *     across the ranks against values computed on the host.
 * Last line "N passed, M failed" as the unit tests. */
#include "gpu_impl.h"

#include <cudnn.h>
#include <nccl.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

#ifdef EMU_HAVE_MPI
#include <mpi.h>
#endif

static int passed, failed;
static int world_rank, world_size = 1; /* the MPI world (one rank without mpirun) */

static int check(int ok, const char *what)
{
	if (ok) {
		passed++;
		printf("ok %s\n", what);
	} else {
		failed++;
		printf("FAIL %s\n", what);
		fprintf(stderr, "FAIL %s\n", what);
	}
	return ok;
}

static unsigned long long rng_state = 88172645463325252ull;
static float frand(void)
{
	rng_state ^= rng_state << 13;
	rng_state ^= rng_state >> 7;
	rng_state ^= rng_state << 17;
	return (float)((rng_state >> 11) * 0x1p-53 * 2 - 1);
}

static void *dev_put(const void *h, size_t bytes)
{
	void *d = NULL;
	if (cudaMalloc(&d, bytes) != cudaSuccess || cudaMemcpy(d, h, bytes, cudaMemcpyHostToDevice) != cudaSuccess) {
		fprintf(stderr, "selftest: device alloc/copy failed\n");
		exit(1);
	}
	return d;
}
static void dev_get(void *h, const void *d, size_t bytes)
{
	if (cudaMemcpy(h, d, bytes, cudaMemcpyDeviceToHost) != cudaSuccess) {
		fprintf(stderr, "selftest: copy back failed\n");
		exit(1);
	}
}

/* ---- 1. planted bugs ---- */

/* block_sum (gpu_impl.h) without its second __syncthreads: lanes read sh
 * before the other warps' lane 0 have written it. */
__device__ static float block_sum_no_sync2(float v, float *sh)
{
	int lane = threadIdx.x & 31, w = threadIdx.x >> 5, nw = blockDim.x >> 5;
	v = warp_sum(v);
	__syncthreads();
	if (lane == 0)
		sh[w] = v;
	/* planted: __syncthreads(); */
	v = lane < nw ? sh[lane] : 0.f;
	return warp_sum(v);
}
/* ... and without its first: a warp may overwrite sh while another still
 * reads the previous call's values. */
__device__ static float block_sum_no_sync1(float v, float *sh)
{
	int lane = threadIdx.x & 31, w = threadIdx.x >> 5, nw = blockDim.x >> 5;
	v = warp_sum(v);
	/* planted: __syncthreads(); */
	if (lane == 0)
		sh[w] = v;
	__syncthreads();
	v = lane < nw ? sh[lane] : 0.f;
	return warp_sum(v);
}

/* Per row n: out[3n] = sum x, out[3n+1] = sum 2x (a second block_sum
 * reusing sh), out[3n+2] = 1 when every thread got the same two sums. */
__global__ static void rowsum_k(float *out, const float *x, int N, int D, int variant)
{
	__shared__ float sh[32];
	__shared__ int agree;
	for (int n = blockIdx.x; n < N; n += gridDim.x) {
		float s = 0.f;
		for (int i = threadIdx.x; i < D; i += blockDim.x)
			s += x[(size_t)n * D + i];
		float a, b;
		if (variant == 0) {
			a = block_sum(s, sh);
			b = block_sum(2.f * s, sh);
		} else if (variant == 1) {
			a = block_sum_no_sync2(s, sh);
			b = block_sum_no_sync2(2.f * s, sh);
		} else {
			a = block_sum_no_sync1(s, sh);
			b = block_sum_no_sync1(2.f * s, sh);
		}
		if (threadIdx.x == 0) {
			out[3 * n] = a;
			out[3 * n + 1] = b;
			agree = 1;
		}
		__syncthreads();
		if (a != out[3 * n] || b != out[3 * n + 1])
			agree = 0;
		__syncthreads();
		if (threadIdx.x == 0)
			out[3 * n + 2] = (float)agree;
		__syncthreads();
	}
}

/* elem.cu's transpose_kernel (n matrices R x S -> S x R through a tile),
 * with the trailing __syncthreads optional. */
#define TILE 32
__global__ static void transpose_k(float *dst, const float *src, int n, int R, int S, int trailing_sync)
{
	__shared__ float tile[TILE][TILE + 1];
	int tilesR = (R + TILE - 1) / TILE, tilesS = (S + TILE - 1) / TILE;
	for (int b = blockIdx.z; b < n; b += gridDim.z)
		for (int tr = blockIdx.y; tr < tilesR; tr += gridDim.y)
			for (int ts = blockIdx.x; ts < tilesS; ts += gridDim.x) {
				size_t base = (size_t)b * R * S;
				int r0 = tr * TILE, s0 = ts * TILE;
				for (int j = threadIdx.y; j < TILE; j += blockDim.y) {
					int r = r0 + j, s = s0 + threadIdx.x;
					if (r < R && s < S)
						tile[j][threadIdx.x] = src[base + (size_t)r * S + s];
				}
				__syncthreads();
				for (int j = threadIdx.y; j < TILE; j += blockDim.y) {
					int s = s0 + j, r = r0 + threadIdx.x;
					if (r < R && s < S)
						dst[base + (size_t)s * R + r] = tile[threadIdx.x][j];
				}
				if (trailing_sync)
					__syncthreads();
			}
}

/* Warp-synchronous exchange through shared memory: lane i reads lane
 * (i+1)'s value; correct only with the __syncwarp. */
__global__ static void neighbour_k(float *out, const float *x, int with_syncwarp)
{
	__shared__ float sh[64];
	int i = threadIdx.x;
	sh[i] = x[i];
	if (with_syncwarp)
		__syncwarp();
	out[i] = sh[(i & ~31) + ((i + 1) & 31)];
}

static const char *ORDERS[] = {"fwd", "rev", "rand:7"};

static void planted(void)
{
	const int N = 5, D = 1000;
	float *x = (float *)malloc(sizeof(float) * N * D);
	double want[N][2];
	for (int n = 0; n < N; n++) {
		double s = 0;
		for (int i = 0; i < D; i++)
			s += x[n * D + i] = frand();
		want[n][0] = s;
		want[n][1] = 2 * s;
	}
	float *dx = (float *)dev_put(x, sizeof(float) * N * D), *dout;
	cudaMalloc(&dout, sizeof(float) * 3 * N);
	static const char *vname[] = {"block_sum", "block_sum without its 2nd __syncthreads",
				      "block_sum without its 1st __syncthreads"};
	for (int v = 0; v < 3; v++) {
		char detected[64] = "";
		for (int o = 0; o < 3; o++) {
			emu_set_sched(ORDERS[o]);
			float got[3 * N];
			rowsum_k<<<3, 256>>>(dout, dx, N, D, v);
			dev_get(got, dout, sizeof got);
			int right = 1;
			for (int n = 0; n < N; n++)
				right &= fabs(got[3 * n] - want[n][0]) < 1e-3 && fabs(got[3 * n + 1] - want[n][1]) < 1e-3 &&
					 got[3 * n + 2] == 1.f;
			if (v == 0) {
				char what[128];
				snprintf(what, sizeof what, "%s right under %s", vname[v], ORDERS[o]);
				check(right, what);
			} else if (!right && o < 2) {
				strcat(detected, detected[0] ? "," : "");
				strcat(detected, ORDERS[o]);
			}
		}
		if (v) {
			char what[160];
			snprintf(what, sizeof what, "planted bug shows: %s gives a wrong sum under [%s]", vname[v],
				 detected[0] ? detected : "no order");
			check(detected[0] != 0, what);
		}
	}
	cudaFree(dx);
	cudaFree(dout);
	free(x);

	/* transpose: 3 matrices 70 x 45, a 1 x 1 x 1 grid so every block loops over tiles */
	const int n = 3, R = 70, S = 45;
	size_t cnt = (size_t)n * R * S;
	float *h = (float *)malloc(cnt * sizeof(float)), *t = (float *)malloc(cnt * sizeof(float));
	for (size_t i = 0; i < cnt; i++)
		h[i] = (float)i;
	float *ds = (float *)dev_put(h, cnt * sizeof(float)), *dd;
	cudaMalloc(&dd, cnt * sizeof(float));
	for (int v = 1; v >= 0; v--) {
		char detected[64] = "";
		for (int o = 0; o < 3; o++) {
			emu_set_sched(ORDERS[o]);
			transpose_k<<<dim3(1, 1, 1), dim3(TILE, 8)>>>(dd, ds, n, R, S, v);
			dev_get(t, dd, cnt * sizeof(float));
			int right = 1;
			for (int b = 0; b < n; b++)
				for (int r = 0; r < R; r++)
					for (int s = 0; s < S; s++)
						right &= t[(size_t)b * R * S + (size_t)s * R + r] == h[(size_t)b * R * S + (size_t)r * S + s];
			if (v) {
				char what[128];
				snprintf(what, sizeof what, "transpose right under %s", ORDERS[o]);
				check(right, what);
			} else if (!right && o < 2) {
				strcat(detected, detected[0] ? "," : "");
				strcat(detected, ORDERS[o]);
			}
		}
		if (!v) {
			char what[160];
			snprintf(what, sizeof what, "planted bug shows: transpose without its trailing __syncthreads is wrong "
				 "under [%s]", detected[0] ? detected : "no order");
			check(detected[0] != 0, what);
		}
	}
	cudaFree(ds);
	cudaFree(dd);
	free(h);
	free(t);

	/* warp-synchronous neighbour read */
	float xin[64], got[64];
	for (int i = 0; i < 64; i++)
		xin[i] = (float)(i + 1);
	float *dxi = (float *)dev_put(xin, sizeof xin), *dgo;
	cudaMalloc(&dgo, sizeof got);
	for (int v = 1; v >= 0; v--) {
		char detected[64] = "";
		for (int o = 0; o < 3; o++) {
			emu_set_sched(ORDERS[o]);
			neighbour_k<<<1, 64>>>(dgo, dxi, v);
			dev_get(got, dgo, sizeof got);
			int right = 1;
			for (int i = 0; i < 64; i++)
				right &= got[i] == xin[(i & ~31) + ((i + 1) & 31)];
			if (v) {
				char what[128];
				snprintf(what, sizeof what, "warp exchange with __syncwarp right under %s", ORDERS[o]);
				check(right, what);
			} else if (!right && o < 2) {
				strcat(detected, detected[0] ? "," : "");
				strcat(detected, ORDERS[o]);
			}
		}
		if (!v) {
			char what[160];
			snprintf(what, sizeof what, "planted bug shows: warp exchange without __syncwarp is wrong under [%s]",
				 detected[0] ? detected : "no order");
			check(detected[0] != 0, what);
		}
	}
	cudaFree(dxi);
	cudaFree(dgo);
	emu_set_sched("fwd");
}

/* ---- 2. intrinsics ---- */

/* A shuffle over a 16-lane mask: lanes 16..31 do not take part. */
__global__ static void partial_mask_k(int *out)
{
	int lane = threadIdx.x & 31;
	int v = -1;
	if (lane < 16)
		v = __shfl_down_sync(0x0000ffffu, lane * 2, 1, 16);
	out[threadIdx.x] = v;
}

static void intrinsics(void)
{
	int pm[32], *dpm;
	cudaMalloc(&dpm, sizeof pm);
	partial_mask_k<<<1, 32>>>(dpm);
	dev_get(pm, dpm, sizeof pm);
	int ok = 1;
	for (int l = 0; l < 32; l++)
		ok &= pm[l] == (l < 16 ? (l < 15 ? (l + 1) * 2 : l * 2) : -1);
	check(ok, "__shfl_down_sync over a 16-lane mask (the other lanes elsewhere)");
	cudaFree(dpm);
}

__global__ static void intrinsics2_k(int *out, int *nan_out)
{
	__shared__ float fresh[64];
	int t = threadIdx.x, lane = t & 31;
	int *o = out + t * 9;
	nan_out[t] = fresh[t] != fresh[t];
	o[0] = __shfl_xor_sync(0xffffffffu, t * 10, 5);
	o[1] = __shfl_down_sync(0xffffffffu, t * 10, 3, 16);
	o[2] = __shfl_up_sync(0xffffffffu, t * 10, 2, 8);
	o[3] = __shfl_sync(0xffffffffu, t * 10, 7);
	o[4] = __shfl_sync(0xffffffffu, t * 10, lane + 1, 4);
	o[5] = (int)__ballot_sync(0xffffffffu, lane % 3 == 0);
	o[6] = __any_sync(0xffffffffu, t == 40);
	o[7] = __all_sync(0xffffffffu, lane < 31);
	o[8] = __syncthreads_count(t % 5 == 0);
}

static void intrinsics_check(void)
{
	int *d, *dn, h[64 * 9], nan_[64];
	cudaMalloc(&d, sizeof h);
	cudaMalloc(&dn, sizeof nan_);
	intrinsics2_k<<<1, 64>>>(d, dn);
	dev_get(h, d, sizeof h);
	dev_get(nan_, dn, sizeof nan_);
	int ok[9] = {1, 1, 1, 1, 1, 1, 1, 1, 1}, nan_ok = 1;
	unsigned ball = 0;
	for (int l = 0; l < 32; l++)
		if (l % 3 == 0)
			ball |= 1u << l;
	for (int t = 0; t < 64; t++) {
		int lane = t & 31, w = t & ~31;
		int *o = h + t * 9;
		ok[0] &= o[0] == (w + (lane ^ 5)) * 10;
		ok[1] &= o[1] == ((lane % 16) + 3 < 16 ? t + 3 : t) * 10;
		ok[2] &= o[2] == ((lane % 8) >= 2 ? t - 2 : t) * 10;
		ok[3] &= o[3] == (w + 7) * 10;
		ok[4] &= o[4] == (w + (lane & ~3) + ((lane + 1) & 3)) * 10;
		ok[5] &= (unsigned)o[5] == ball;
		ok[6] &= o[6] == (t >= 32);
		ok[7] &= o[7] == 0;
		ok[8] &= o[8] == 13; /* t % 5 == 0 for t < 64: 0, 5, ..., 60 */
		nan_ok &= nan_[t] == 1;
	}
	static const char *names[] = {"__shfl_xor_sync", "__shfl_down_sync width 16", "__shfl_up_sync width 8",
				      "__shfl_sync", "__shfl_sync width 4", "__ballot_sync", "__any_sync",
				      "__all_sync", "__syncthreads_count"};
	for (int i = 0; i < 9; i++)
		check(ok[i], names[i]);
	check(nan_ok, "shared memory starts poisoned (NaN)");
	cudaFree(d);
	cudaFree(dn);
}

/* ---- 3. conversions ---- */

static uint16_t bf16_nearest(float f)
{
	uint32_t u;
	memcpy(&u, &f, 4);
	uint32_t lo = u & 0xffff0000u, hi = lo + 0x10000u;
	float flo, fhi;
	memcpy(&flo, &lo, 4);
	memcpy(&fhi, &hi, 4);
	double dl = fabs((double)f - flo), dh = fabs((double)fhi - f);
	if (dl < dh)
		return (uint16_t)(lo >> 16);
	if (dh < dl)
		return (uint16_t)(hi >> 16);
	return (uint16_t)(((lo >> 16) & 1) ? hi >> 16 : lo >> 16);
}

static void conversions(void)
{
	int ok = 1, okr = 1, okb = 1, okbr = 1;
	for (uint32_t b = 0; b < 65536; b++) {
		_Float16 hv;
		uint16_t bits = (uint16_t)b;
		memcpy(&hv, &bits, 2);
		float ref = (float)hv, got = __half2float(__ushort_as_half(bits));
		if (!(ref == got || (ref != ref && got != got)) || (ref == 0 && signbit(ref) != signbit(got)))
			ok = 0;
		if (ref == ref && __half_as_ushort(__float2half_rn(got)) != bits)
			okr = 0;
		float bf = __bfloat162float(__ushort_as_bfloat16(bits));
		uint32_t u = (uint32_t)bits << 16;
		float bref;
		memcpy(&bref, &u, 4);
		if (memcmp(&bf, &bref, 4))
			okb = 0;
	}
	check(ok, "fp16 -> float: all 65536 values equal _Float16's");
	check(okr, "fp16 -> float -> fp16 round trip");
	check(okb, "bf16 -> float: all 65536 values");
	int okf = 1;
	for (int i = 0; i < 2000000; i++) {
		rng_state = rng_state * 6364136223846793005ull + 1442695040888963407ull;
		uint32_t u = (uint32_t)rng_state ^ (uint32_t)(rng_state >> 32);
		float f;
		memcpy(&f, &u, 4);
		if (i < 65536) { /* every tie and neighbour of the fp16 grid near 1 and in the subnormals */
			uint32_t base = i < 32768 ? 0x3f800000u + (uint32_t)i * 0x1000u / 2 : 0x33000000u + (uint32_t)(i - 32768) * 0x400u;
			memcpy(&f, &base, 4);
		}
		if (f != f)
			continue;
		_Float16 hv = (_Float16)f;
		uint16_t want, got = __half_as_ushort(__float2half_rn(f));
		memcpy(&want, &hv, 2);
		if (want != got) {
			if (okf)
				fprintf(stderr, "fp16 mismatch: %a -> %04x, _Float16 %04x\n", f, got, want);
			okf = 0;
		}
		uint16_t gb = __bfloat16_as_ushort(__float2bfloat16_rn(f)), wb = bf16_nearest(f);
		if (gb != wb && fabsf(f) < 3.3e38f) {
			if (okbr)
				fprintf(stderr, "bf16 mismatch: %a -> %04x, nearest %04x\n", f, gb, wb);
			okbr = 0;
		}
	}
	check(okf, "float -> fp16 (__float2half_rn): 2M values incl. ties and subnormals equal _Float16's");
	check(okbr, "float -> bf16 (__float2bfloat16_rn): 2M values equal the nearest, ties to even");
	check(__half_as_ushort(__float2half_rn(65519.f)) == 0x7bff && __half_as_ushort(__float2half_rn(65520.f)) == 0x7c00,
	      "fp16 overflow boundary: 65519 -> max, 65520 -> inf");
}

/* ---- 4. libraries ---- */

static void blas(void)
{
	cublasHandle_t h;
	check(cublasCreate(&h) == CUBLAS_STATUS_SUCCESS, "cublasCreate");
	const int m = 7, n = 5, k = 9, batch = 3;
	int ok_all = 1;
	for (int ta = 0; ta < 2; ta++)
		for (int tb = 0; tb < 2; tb++)
			for (int ty = 0; ty < 3; ty++) {
				cudaDataType_t at = ty == 0 ? CUDA_R_32F : ty == 1 ? CUDA_R_16F : CUDA_R_16BF;
				cudaDataType_t ct = ty == 0 ? CUDA_R_32F : ty == 1 ? CUDA_R_16F : CUDA_R_32F;
				size_t es = ty ? 2 : 4, ces = ct == CUDA_R_32F ? 4 : 2;
				int lda = (ta ? k : m) + 2, ldb = (tb ? n : k) + 1, ldc = m + 3;
				long long sa = (long long)lda * (ta ? m : k), sb = (long long)ldb * (tb ? k : n),
					  sc = (long long)ldc * n;
				float *A = (float *)calloc((size_t)sa * batch, 4), *B = (float *)calloc((size_t)sb * batch, 4),
				      *C = (float *)calloc((size_t)sc * batch, 4);
				void *hA = malloc((size_t)sa * batch * es), *hB = malloc((size_t)sb * batch * es),
				     *hC = malloc((size_t)sc * batch * ces);
				for (long long i = 0; i < sa * batch; i++) {
					A[i] = ty == 1 ? __half2float(__float2half_rn(frand())) : ty == 2 ? __bfloat162float(__float2bfloat16_rn(frand())) : frand();
					if (ty == 0) ((float *)hA)[i] = A[i];
					else ((uint16_t *)hA)[i] = ty == 1 ? __half_as_ushort(__float2half_rn(A[i])) : __bfloat16_as_ushort(__float2bfloat16_rn(A[i]));
				}
				for (long long i = 0; i < sb * batch; i++) {
					B[i] = ty == 1 ? __half2float(__float2half_rn(frand())) : ty == 2 ? __bfloat162float(__float2bfloat16_rn(frand())) : frand();
					if (ty == 0) ((float *)hB)[i] = B[i];
					else ((uint16_t *)hB)[i] = ty == 1 ? __half_as_ushort(__float2half_rn(B[i])) : __bfloat16_as_ushort(__float2bfloat16_rn(B[i]));
				}
				for (long long i = 0; i < sc * batch; i++) {
					C[i] = ct == CUDA_R_16F ? __half2float(__float2half_rn(frand())) : frand();
					if (ct == CUDA_R_32F) ((float *)hC)[i] = C[i];
					else ((uint16_t *)hC)[i] = __half_as_ushort(__float2half_rn(C[i]));
				}
				void *dA = dev_put(hA, (size_t)sa * batch * es), *dB = dev_put(hB, (size_t)sb * batch * es),
				     *dC = dev_put(hC, (size_t)sc * batch * ces);
				float alpha = 0.75f, beta = -0.5f;
				cublasStatus_t st = cublasGemmStridedBatchedEx(
					h, ta ? CUBLAS_OP_T : CUBLAS_OP_N, tb ? CUBLAS_OP_T : CUBLAS_OP_N, m, n, k, &alpha, dA, at,
					lda, sa, dB, at, ldb, sb, &beta, dC, ct, ldc, sc, batch, CUBLAS_COMPUTE_32F,
					CUBLAS_GEMM_DEFAULT);
				dev_get(hC, dC, (size_t)sc * batch * ces);
				double worst = 0;
				for (int b = 0; b < batch; b++)
					for (int i = 0; i < m; i++)
						for (int j = 0; j < n; j++) {
							double s = 0;
							for (int p = 0; p < k; p++)
								s += (double)A[b * sa + (ta ? p + (long long)i * lda : i + (long long)p * lda)] *
								     B[b * sb + (tb ? j + (long long)p * ldb : p + (long long)j * ldb)];
							long long ci = b * sc + i + (long long)j * ldc;
							double want = alpha * s + beta * C[ci];
							float got = ct == CUDA_R_32F ? ((float *)hC)[ci] : __half2float(__ushort_as_half(((uint16_t *)hC)[ci]));
							double d = fabs(got - want);
							worst = d > worst ? d : worst;
						}
				double tol = ct == CUDA_R_16F ? 4e-3 : 1e-5;
				if (st != CUBLAS_STATUS_SUCCESS || worst > tol) {
					fprintf(stderr, "gemm ta %d tb %d type %d: status %d worst %g\n", ta, tb, ty, (int)st, worst);
					ok_all = 0;
				}
				cudaFree(dA), cudaFree(dB), cudaFree(dC);
				free(A), free(B), free(C), free(hA), free(hB), free(hC);
			}
	check(ok_all, "cublasGemmStridedBatchedEx: N/T x N/T x fp32/fp16/bf16 (C fp32 or fp16), alpha, beta, ld > rows");
	/* TF32: 1 + 2^-12 is exact in fp32, not in TF32 */
	float a = 1.f + 0x1p-12f, one = 1.f, zero = 0.f, c = 0;
	float *da = (float *)dev_put(&a, 4), *dc;
	cudaMalloc(&dc, 4);
	cublasGemmEx(h, CUBLAS_OP_N, CUBLAS_OP_N, 1, 1, 1, &one, da, CUDA_R_32F, 1, da, CUDA_R_32F, 1, &zero, dc,
		     CUDA_R_32F, 1, CUBLAS_COMPUTE_32F_FAST_TF32, CUBLAS_GEMM_DEFAULT);
	dev_get(&c, dc, 4);
	check(c == 1.f, "cuBLAS FAST_TF32 rounds inputs to TF32");
	cublasGemmEx(h, CUBLAS_OP_N, CUBLAS_OP_N, 1, 1, 1, &one, da, CUDA_R_32F, 1, da, CUDA_R_32F, 1, &zero, dc,
		     CUDA_R_32F, 1, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT);
	dev_get(&c, dc, 4);
	check(c == a * a, "cuBLAS COMPUTE_32F under default math is exact fp32");
	check(cublasGemmEx(h, CUBLAS_OP_N, CUBLAS_OP_N, 2, 1, 1, &one, da, CUDA_R_32F, 1, da, CUDA_R_32F, 1, &zero, dc,
			   CUDA_R_32F, 1, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT) == CUBLAS_STATUS_INVALID_VALUE,
	      "cuBLAS rejects lda < m");
	cudaFree(da), cudaFree(dc);
	cublasDestroy(h);
}

/* A grouped, strided, padded convolution in NHWC / KRSC against double
 * loops in NCHW indexing; backward data and filter with beta = 1. */
static void dnn(void)
{
	const int N = 2, C = 6, H = 7, W = 5, K = 4, G = 2, R = 3, S = 2, ph = 1, pw = 0, sh = 2, sw = 1;
	const int Cg = C / G, Kg = K / G, Ho = (H + 2 * ph - R) / sh + 1, Wo = (W + 2 * pw - S) / sw + 1;
	cudnnHandle_t h;
	check(cudnnCreate(&h) == CUDNN_STATUS_SUCCESS, "cudnnCreate");
	cudnnTensorDescriptor_t xd, yd;
	cudnnFilterDescriptor_t wd;
	cudnnConvolutionDescriptor_t cd;
	cudnnCreateTensorDescriptor(&xd);
	cudnnCreateTensorDescriptor(&yd);
	cudnnCreateFilterDescriptor(&wd);
	cudnnCreateConvolutionDescriptor(&cd);
	cudnnSetTensor4dDescriptor(xd, CUDNN_TENSOR_NHWC, CUDNN_DATA_FLOAT, N, C, H, W);
	cudnnSetFilter4dDescriptor(wd, CUDNN_DATA_FLOAT, CUDNN_TENSOR_NHWC, K, Cg, R, S);
	cudnnSetConvolution2dDescriptor(cd, ph, pw, sh, sw, 1, 1, CUDNN_CROSS_CORRELATION, CUDNN_DATA_FLOAT);
	cudnnSetConvolutionGroupCount(cd, G);
	cudnnSetConvolutionMathType(cd, CUDNN_FMA_MATH);
	int n, k, ho, wo;
	check(cudnnGetConvolution2dForwardOutputDim(cd, xd, wd, &n, &k, &ho, &wo) == CUDNN_STATUS_SUCCESS && n == N &&
		      k == K && ho == Ho && wo == Wo,
	      "cudnnGetConvolution2dForwardOutputDim");
	cudnnSetTensor4dDescriptor(yd, CUDNN_TENSOR_NHWC, CUDNN_DATA_FLOAT, N, K, Ho, Wo);
	/* NHWC x[n][h][w][c], KRSC w[k][r][s][c] */
	float x[N * H * W * C], w[K * R * S * Cg], y[N * Ho * Wo * K], dx[N * H * W * C], dw[K * R * S * Cg];
	for (float &v : x) v = frand();
	for (float &v : w) v = frand();
	for (float &v : y) v = frand();
	for (float &v : dx) v = frand();
	for (float &v : dw) v = frand();
#define X(n_, c_, h_, w_) x[(((n_) * H + (h_)) * W + (w_)) * C + (c_)]
#define WT(k_, c_, r_, s_) w[(((k_) * R + (r_)) * S + (s_)) * Cg + (c_)]
#define Y(n_, k_, h_, w_) y[(((n_) * Ho + (h_)) * Wo + (w_)) * K + (k_)]
	double yref[N][K][Ho][Wo], dxref[N][C][H][W], dwref[K][Cg][R][S];
	memset(yref, 0, sizeof yref);
	memset(dxref, 0, sizeof dxref);
	memset(dwref, 0, sizeof dwref);
	for (int a = 0; a < N; a++)
		for (int o = 0; o < K; o++)
			for (int i = 0; i < Ho; i++)
				for (int j = 0; j < Wo; j++)
					for (int c = 0; c < Cg; c++)
						for (int r = 0; r < R; r++)
							for (int s = 0; s < S; s++) {
								int iy = i * sh - ph + r, ix = j * sw - pw + s, ci = o / Kg * Cg + c;
								if (iy < 0 || iy >= H || ix < 0 || ix >= W)
									continue;
								yref[a][o][i][j] += (double)X(a, ci, iy, ix) * WT(o, c, r, s);
								/* with dy = y (the random values), the adjoints */
								dxref[a][ci][iy][ix] += (double)Y(a, o, i, j) * WT(o, c, r, s);
								dwref[o][c][r][s] += (double)Y(a, o, i, j) * X(a, ci, iy, ix);
							}
	float *dX = (float *)dev_put(x, sizeof x), *dW = (float *)dev_put(w, sizeof w), *dY,
	      *dDY = (float *)dev_put(y, sizeof y), *dDX = (float *)dev_put(dx, sizeof dx),
	      *dDW = (float *)dev_put(dw, sizeof dw);
	cudaMalloc(&dY, sizeof y);
	/* the algorithm lists: usable ones first, one of them needs a workspace */
	cudnnConvolutionFwdAlgoPerf_t pf[8];
	int got = 0;
	check(cudnnFindConvolutionForwardAlgorithm(h, xd, wd, cd, yd, 8, &got, pf) == CUDNN_STATUS_SUCCESS && got == 8 &&
		      pf[0].status == CUDNN_STATUS_SUCCESS && pf[0].memory > 0 && pf[2].status != CUDNN_STATUS_SUCCESS,
	      "cudnnFind: 8 forward algorithms, the first usable and needing a workspace");
	size_t need = 0;
	cudnnGetConvolutionForwardWorkspaceSize(h, xd, wd, cd, yd, pf[0].algo, &need);
	void *ws;
	cudaMalloc(&ws, need);
	float one = 1.f, zero = 0.f;
	check(cudnnConvolutionForward(h, &one, xd, dX, wd, dW, cd, pf[0].algo, ws, need - 1, &zero, yd, dY) ==
		      CUDNN_STATUS_BAD_PARAM,
	      "cudnnConvolutionForward rejects a workspace one byte short");
	check(cudnnConvolutionForward(h, &one, xd, dX, wd, dW, cd, pf[0].algo, ws, need, &zero, yd, dY) ==
		      CUDNN_STATUS_SUCCESS,
	      "cudnnConvolutionForward");
	float yg[N * Ho * Wo * K];
	dev_get(yg, dY, sizeof yg);
	double worst = 0;
	for (int a = 0; a < N; a++)
		for (int o = 0; o < K; o++)
			for (int i = 0; i < Ho; i++)
				for (int j = 0; j < Wo; j++)
					worst = fmax(worst, fabs(yg[((a * Ho + i) * Wo + j) * K + o] - yref[a][o][i][j]));
	check(worst < 1e-5, "conv forward (NHWC, KRSC, 2 groups, stride 2x1, pad 1x0) equals double loops");
	check(cudnnConvolutionBackwardData(h, &one, wd, dW, yd, dDY, cd, CUDNN_CONVOLUTION_BWD_DATA_ALGO_0, NULL, 0,
					   &one, xd, dDX) == CUDNN_STATUS_SUCCESS,
	      "cudnnConvolutionBackwardData");
	float dxg[N * H * W * C], dwg[K * R * S * Cg];
	dev_get(dxg, dDX, sizeof dxg);
	worst = 0;
	for (int a = 0; a < N; a++)
		for (int c = 0; c < C; c++)
			for (int i = 0; i < H; i++)
				for (int j = 0; j < W; j++)
					worst = fmax(worst, fabs(dxg[((a * H + i) * W + j) * C + c] - (dxref[a][c][i][j] + dx[((a * H + i) * W + j) * C + c])));
	check(worst < 1e-5, "conv backward data, beta 1 (+=), equals double loops");
	check(cudnnConvolutionBackwardFilter(h, &one, xd, dX, yd, dDY, cd, CUDNN_CONVOLUTION_BWD_FILTER_ALGO_0, NULL, 0,
					     &one, wd, dDW) == CUDNN_STATUS_SUCCESS,
	      "cudnnConvolutionBackwardFilter");
	dev_get(dwg, dDW, sizeof dwg);
	worst = 0;
	for (int o = 0; o < K; o++)
		for (int c = 0; c < Cg; c++)
			for (int r = 0; r < R; r++)
				for (int s = 0; s < S; s++)
					worst = fmax(worst, fabs(dwg[((o * R + r) * S + s) * Cg + c] - (dwref[o][c][r][s] + dw[((o * R + r) * S + s) * Cg + c])));
	check(worst < 1e-5, "conv backward filter, beta 1 (+=), equals double loops");
	/* a wrong output descriptor */
	cudnnSetTensor4dDescriptor(yd, CUDNN_TENSOR_NHWC, CUDNN_DATA_FLOAT, N, K, Ho + 1, Wo);
	check(cudnnConvolutionForward(h, &one, xd, dX, wd, dW, cd, CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_GEMM, NULL, 0, &zero,
				      yd, dY) == CUDNN_STATUS_BAD_PARAM,
	      "cudnnConvolutionForward rejects an output descriptor of the wrong size");
	cudnnSetConvolutionGroupCount(cd, 4);
	check(cudnnGetConvolution2dForwardOutputDim(cd, xd, wd, &n, &k, &ho, &wo) == CUDNN_STATUS_BAD_PARAM,
	      "cuDNN rejects C != c * groups");
	cudaFree(dX), cudaFree(dW), cudaFree(dY), cudaFree(dDY), cudaFree(dDX), cudaFree(dDW), cudaFree(ws);
	cudnnDestroyTensorDescriptor(xd);
	cudnnDestroyTensorDescriptor(yd);
	cudnnDestroyFilterDescriptor(wd);
	cudnnDestroyConvolutionDescriptor(cd);
	cudnnDestroy(h);
}

static void nccl(void)
{
	ncclUniqueId id;
	ncclComm_t c;
	check(ncclGetUniqueId(&id) == ncclSuccess && ncclCommInitRank(&c, 1, id, 0) == ncclSuccess, "ncclCommInitRank, one rank");
	float h[5] = {1, 2, 3, 4, 5}, g[5];
	float *a = (float *)dev_put(h, sizeof h), *b;
	cudaMalloc(&b, sizeof h);
	check(ncclAllReduce(a, b, 5, ncclFloat32, ncclSum, c, 0) == ncclSuccess, "ncclAllReduce");
	dev_get(g, b, sizeof g);
	check(!memcmp(g, h, sizeof h), "ncclAllReduce of one rank copies");
	check(ncclAllReduce(h, b, 5, ncclFloat32, ncclSum, c, 0) == ncclInvalidArgument, "ncclAllReduce rejects host memory");
	/* the collectives of one communicator run in the order they were
	 * called, whatever their streams */
	cudaStream_t s1, s2;
	cudaStreamCreateWithFlags(&s1, cudaStreamNonBlocking);
	cudaStreamCreateWithFlags(&s2, cudaStreamNonBlocking);
	cudaMemset(b, 0, sizeof h);
	ncclAllReduce(a, b, 5, ncclFloat32, ncclSum, c, s2);
	ncclBroadcast(a, a, 5, ncclFloat32, 0, c, s1);
	cudaStreamSynchronize(s1);
	dev_get(g, b, sizeof g); /* the legacy stream: s2 is non-blocking */
	check(!memcmp(g, h, sizeof h), "synchronising a collective's stream runs the communicator's earlier ones first");
	cudaStreamDestroy(s1);
	cudaStreamDestroy(s2);
	ncclCommDestroy(c);
	cudaFree(a);
	cudaFree(b);
	ncclComm_t c2;
	check(ncclCommInitRank(&c2, world_size + 1, id, 0) == ncclInvalidUsage,
	      "ncclCommInitRank refuses more ranks than the MPI world has");
}

/* ---- 5. misuse, each in a forked child that must die saying what ---- */

__global__ static void warp_sum_k(float *out)
{
	float v = warp_sum(1.f);
	out[threadIdx.x] = v;
}
__global__ static void half_warp_sum_k(float *out)
{
	float v = 1.f;
	if (threadIdx.x < 16)
		v = warp_sum(v);
	out[threadIdx.x] = v;
}
__global__ static void deadlock_k(float *out)
{
	if (threadIdx.x < 16)
		__syncwarp();
	else
		__syncthreads();
	out[threadIdx.x] = 1.f;
}
__global__ static void touch_k(float *p) { p[threadIdx.x] = 1.f; }
__global__ static void big_shared_k(float *out)
{
	__shared__ float big[13000];
	big[threadIdx.x] = 1.f;
	out[threadIdx.x] = big[threadIdx.x];
}

static float *dev_buf;
static void die_partial_warp(void) { warp_sum_k<<<1, 48>>>(dev_buf); }
static void die_divergent_shfl(void) { half_warp_sum_k<<<1, 32>>>(dev_buf); }
static void die_deadlock(void) { deadlock_k<<<1, 32>>>(dev_buf); }
static void die_host_ptr(void)
{
	static float host[64];
	touch_k<<<1, 32>>>(host);
}
static void die_host_reads_device(void)
{
	volatile float v = dev_buf[3];
	(void)v;
}
static void die_big_shared(void) { big_shared_k<<<1, 32>>>(dev_buf); }
static void die_after_free(void)
{
	float *p;
	cudaMalloc(&p, 64);
	cudaFree(p);
	touch_k<<<1, 16>>>(p);
}

static void death(const char *what, void (*fn)(void), const char *expect)
{
	int p[2];
	if (pipe(p)) {
		perror("pipe");
		exit(1);
	}
	fflush(stdout);
	fflush(stderr);
	pid_t pid = fork();
	if (pid == 0) {
		dup2(p[1], 2);
		close(p[0]);
		fn();
		_exit(0);
	}
	close(p[1]);
	static char buf[65536];
	size_t n = 0;
	ssize_t r;
	while ((r = read(p[0], buf + n, sizeof buf - 1 - n)) > 0)
		n += (size_t)r;
	buf[n] = 0;
	close(p[0]);
	int st = 0;
	waitpid(pid, &st, 0);
	int died = !(WIFEXITED(st) && WEXITSTATUS(st) == 0);
	char msg[256];
	snprintf(msg, sizeof msg, "emulator reports %s (\"%s\")", what, expect);
	if (!check(died && strstr(buf, expect), msg))
		fprintf(stderr, "    child %s; its stderr:\n%.2000s\n", died ? "died" : "exited 0", buf);
}

static void misuse(void)
{
	cudaMalloc(&dev_buf, 4096);
	death("a full-mask shuffle in a 48-thread block", die_partial_warp, "names lanes that do not exist");
	death("a full-mask shuffle by half a warp", die_divergent_shfl, "mask 0xffffffff");
	death("a deadlock (half a warp in __syncwarp, half in __syncthreads)", die_deadlock, "deadlock");
	death("a host pointer passed to a kernel", die_host_ptr, "is not device memory");
	death("host code reading device memory", die_host_reads_device, "use-after-poison");
	death("more than 48 KiB of static shared memory", die_big_shared, "48 KiB");
	death("a kernel given freed device memory", die_after_free, "is not device memory");

	touch_k<<<1, 2048>>>(dev_buf);
	check(cudaGetLastError() == cudaErrorInvalidConfiguration, "a 2048-thread block: cudaErrorInvalidConfiguration");
	touch_k<<<dim3(1, 70000), 32>>>(dev_buf);
	check(cudaGetLastError() == cudaErrorInvalidConfiguration, "grid.y 70000: cudaErrorInvalidConfiguration");
	check(cudaGetLastError() == cudaSuccess, "cudaGetLastError clears the error");
	float h[2048];
	check(cudaMemcpy(dev_buf, h, sizeof h, cudaMemcpyHostToDevice) == cudaErrorInvalidValue,
	      "cudaMemcpy past the end of a device allocation fails");
	check(cudaMemcpy(h, dev_buf, 64, cudaMemcpyHostToDevice) == cudaErrorInvalidValue,
	      "cudaMemcpy with the wrong direction fails");
	cudaGetLastError();
	cudaFree(dev_buf);
}

/* ---- 6. lazy streams ---- */

#define LN 64
__global__ static void copy_k(int *out, const int *in) { out[threadIdx.x] = in[threadIdx.x]; }

/* 1 when the LN ints at device d all equal v. */
static int dev_all(const int *d, int v)
{
	int h[LN];
	dev_get(h, d, sizeof h);
	for (int i = 0; i < LN; i++)
		if (h[i] != v)
			return 0;
	return 1;
}
static void host_fill(int *h, int v)
{
	for (int i = 0; i < LN; i++)
		h[i] = v;
}

/* 1 unless EMU_LAZY=0 turned lazy streams off. */
static int lazy_on(void)
{
	const char *env = getenv("EMU_LAZY");
	return !(env && env[0] == '0');
}

static int *lazy_pin, *lazy_dst;
/* A copy queued and never waited for: the exit warning. */
static void die_unsynchronised(void)
{
	cudaStream_t s;
	cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking);
	cudaMemcpyAsync(lazy_dst, lazy_pin, LN * sizeof(int), cudaMemcpyHostToDevice, s);
	exit(3);
}

static void lazy(void)
{
	if (!lazy_on()) {
		printf("# EMU_LAZY=0: the lazy-stream checks are skipped\n");
		return;
	}
	cudaStream_t A, B, C;
	cudaEvent_t ev;
	int *pin, page[LN], *dst, *out, *tmp;
	cudaStreamCreateWithFlags(&A, cudaStreamNonBlocking);
	cudaStreamCreateWithFlags(&B, cudaStreamNonBlocking);
	cudaStreamCreate(&C); /* blocking: ordered with the legacy stream */
	cudaEventCreateWithFlags(&ev, cudaEventDisableTiming);
	cudaMallocHost(&pin, LN * sizeof(int));
	cudaMalloc(&dst, LN * sizeof(int));
	cudaMalloc(&out, LN * sizeof(int));
	const size_t nb = LN * sizeof(int);

	/* planted: an upload on B read by a kernel on A with no wait between */
	cudaMemset(dst, 0, nb);
	host_fill(pin, 7);
	cudaMemcpyAsync(dst, pin, nb, cudaMemcpyHostToDevice, B);
	copy_k<<<1, LN, 0, A>>>(out, dst);
	cudaStreamSynchronize(A);
	check(dev_all(out, 0), "planted bug shows: a kernel on stream A reads the old data of an upload on stream B "
			       "it never waited for");
	cudaStreamSynchronize(B);
	/* fixed: an event recorded on B, waited for by A */
	cudaMemset(dst, 0, nb);
	cudaMemcpyAsync(dst, pin, nb, cudaMemcpyHostToDevice, B);
	cudaEventRecord(ev, B);
	cudaStreamWaitEvent(A, ev, 0);
	copy_k<<<1, LN, 0, A>>>(out, dst);
	cudaStreamSynchronize(A);
	check(dev_all(out, 7), "with cudaEventRecord(B) + cudaStreamWaitEvent(A) the kernel reads the upload");

	/* the source is read when the copy runs: page-locked late, pageable at once */
	host_fill(pin, 1);
	cudaMemcpyAsync(dst, pin, nb, cudaMemcpyHostToDevice, B);
	host_fill(pin, 2);
	cudaStreamSynchronize(B);
	check(dev_all(dst, 2), "an upload from page-locked memory sees the host overwrite it before the sync");
	host_fill(page, 3);
	cudaMemcpyAsync(dst, page, nb, cudaMemcpyHostToDevice, B);
	host_fill(page, 4);
	cudaStreamSynchronize(B);
	check(dev_all(dst, 3), "an upload from pageable memory is staged when called");

	/* in order within a stream */
	cudaMemset(dst, 5, nb);
	cudaMemsetAsync(dst, 0, nb, A);
	copy_k<<<1, LN, 0, A>>>(out, dst);
	cudaStreamSynchronize(A);
	check(dev_all(out, 0), "a kernel sees the memset queued before it on its stream");
	int h[LN];
	cudaMemsetAsync(dst, 0, nb, A);
	cudaMemcpyAsync(dst, out, nb, cudaMemcpyDeviceToDevice, A); /* out is 0 */
	cudaMemsetAsync(out, 0x01, nb, A);
	cudaMemcpyAsync(h, out, nb, cudaMemcpyDeviceToHost, A);
	check(h[0] == 0x01010101 && h[LN - 1] == 0x01010101, "a download runs after the work queued before it on its stream");

	/* legacy default-stream semantics */
	host_fill(pin, 8);
	cudaMemset(dst, 0, nb);
	cudaMemcpyAsync(dst, pin, nb, cudaMemcpyHostToDevice, C);
	copy_k<<<1, LN>>>(out, dst);
	check(dev_all(out, 8), "a kernel on the legacy stream waits for a blocking stream's upload");
	cudaMemset(dst, 0, nb);
	cudaMemcpyAsync(dst, pin, nb, cudaMemcpyHostToDevice, B);
	copy_k<<<1, LN>>>(out, dst);
	check(dev_all(out, 0), "a kernel on the legacy stream does not wait for a non-blocking stream");
	cudaStreamSynchronize(B);

	/* flush points: cudaEventSynchronize, cudaFree, cudaDeviceSynchronize */
	host_fill(pin, 9);
	cudaMemcpyAsync(dst, pin, nb, cudaMemcpyHostToDevice, B);
	cudaEventRecord(ev, B);
	cudaEventSynchronize(ev);
	host_fill(pin, 10);
	cudaStreamSynchronize(B);
	check(dev_all(dst, 9), "cudaEventSynchronize runs the stream up to the event");
	cudaMalloc(&tmp, 16);
	cudaMemcpyAsync(dst, pin, nb, cudaMemcpyHostToDevice, B);
	cudaFree(tmp);
	host_fill(pin, 11);
	cudaStreamSynchronize(B);
	check(dev_all(dst, 10), "cudaFree runs every stream's queued work");
	cudaMemcpyAsync(dst, pin, nb, cudaMemcpyHostToDevice, B);
	cudaDeviceSynchronize();
	host_fill(pin, 12);
	cudaStreamSynchronize(B);
	check(dev_all(dst, 11), "cudaDeviceSynchronize runs every stream's queued work");

	/* a deferred copy whose source another stream freed: an asynchronous error */
	cudaMalloc(&tmp, nb);
	cudaMemcpyAsync(dst, tmp, nb, cudaMemcpyDeviceToDevice, B);
	cudaFreeAsync(tmp, A);
	check(cudaStreamSynchronize(B) == cudaErrorIllegalAddress && cudaGetLastError() == cudaErrorIllegalAddress &&
		      cudaStreamSynchronize(B) == cudaSuccess,
	      "a copy from memory freed on another stream fails when it runs, reported by the next sync once");

	lazy_pin = pin;
	lazy_dst = dst;
	death("work queued and never waited for at exit", die_unsynchronised, "deferred operation(s) never ran");

	cudaEventDestroy(ev);
	cudaStreamDestroy(A);
	cudaStreamDestroy(B);
	cudaStreamDestroy(C);
	cudaFreeHost(pin);
	cudaFree(dst);
	cudaFree(out);
}

/* ---- 7. NCCL across the ranks of an MPI world ---- */

#ifdef EMU_HAVE_MPI
/* Rank r's value j of collective k: small integers and halves, so every sum
 * is exact in fp32 and fp16 whatever the order. */
static float val(int k, int r, int j) { return (float)((k * 7 + r * 5 + j * 3) % 23) * 0.5f - 4.f; }

/* A new device buffer holding the n values v as kind: 0 fp32, 1 int32
 * (twice the value, an integer), 2 fp16, 3 bf16. */
static void *put_as(const float *v, int n, int kind)
{
	void *h = malloc((size_t)n * 4);
	for (int i = 0; i < n; i++) {
		if (kind == 0)
			((float *)h)[i] = v[i];
		else if (kind == 1)
			((int *)h)[i] = (int)(v[i] * 2);
		else if (kind == 2)
			((uint16_t *)h)[i] = __half_as_ushort(__float2half_rn(v[i]));
		else
			((uint16_t *)h)[i] = __bfloat16_as_ushort(__float2bfloat16_rn(v[i]));
	}
	void *d = dev_put(h, (size_t)n * (kind >= 2 ? 2 : 4));
	free(h);
	return d;
}
/* The n values of kind (as put_as) at device d, as floats into v. */
static void get_as(float *v, const void *d, int n, int kind)
{
	void *h = malloc((size_t)n * 4);
	dev_get(h, d, (size_t)n * (kind >= 2 ? 2 : 4));
	for (int i = 0; i < n; i++)
		v[i] = kind == 0 ? ((float *)h)[i] : kind == 1 ? (float)((int *)h)[i] / 2
		     : kind == 2 ? __half2float(__ushort_as_half(((uint16_t *)h)[i]))
				 : __bfloat162float(__ushort_as_bfloat16(((uint16_t *)h)[i]));
	free(h);
}

static void nccl_ranks(void)
{
	const int R = world_size, me = world_rank, N = 37;
	ncclUniqueId id, own;
	ncclComm_t c;
	ncclGetUniqueId(&own);
	id = own;
	MPI_Bcast(&id, sizeof id, MPI_BYTE, 0, MPI_COMM_WORLD);
	check(ncclCommInitRank(&c, R, own, me) == ncclInvalidUsage,
	      "ncclCommInitRank: every rank refuses when they were given different unique ids");
	int cnt = 0, rk = -1;
	check(ncclCommInitRank(&c, R, id, me) == ncclSuccess && ncclCommCount(c, &cnt) == ncclSuccess && cnt == R &&
		      ncclCommUserRank(c, &rk) == ncclSuccess && rk == me,
	      "ncclCommInitRank across the MPI world: count and rank");
	cudaStream_t s;
	cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking);
	static const char *tn[] = {"fp32", "int32", "fp16", "bf16"};
	static const ncclDataType_t nt[] = {ncclFloat32, ncclInt32, ncclFloat16, ncclBfloat16};
	static const char *on[] = {"sum", "prod", "max", "min", "avg"};
	/* allreduce: {type, op, in place} */
	static const int cases[][3] = {{0, ncclSum, 0}, {0, ncclMax, 1}, {1, ncclSum, 1}, {1, ncclMax, 0},
				       {2, ncclSum, 1}, {3, ncclMax, 0}, {0, ncclMin, 0}, {0, ncclAvg, 1}};
	float mine[4 * N], want[4 * N], got[4 * N];
	for (size_t k = 0; k < sizeof cases / sizeof *cases; k++) {
		int ty = cases[k][0], op = cases[k][1], inplace = cases[k][2];
		for (int j = 0; j < N; j++) {
			mine[j] = val((int)k, me, j);
			float w = val((int)k, 0, j);
			for (int r = 1; r < R; r++) {
				float v = val((int)k, r, j);
				w = op == ncclSum || op == ncclAvg ? w + v : op == ncclMax ? fmaxf(w, v) : fminf(w, v);
			}
			want[j] = op == ncclAvg ? w / (float)R : w;
		}
		void *a = put_as(mine, N, ty), *b = a;
		if (!inplace)
			cudaMalloc(&b, (size_t)N * 4);
		ncclResult_t st = ncclAllReduce(a, b, N, nt[ty], (ncclRedOp_t)op, c, s);
		cudaStreamSynchronize(s);
		get_as(got, b, N, ty);
		char what[128];
		snprintf(what, sizeof what, "ncclAllReduce %s %s %s across %d ranks", on[op], tn[ty],
			 inplace ? "in place" : "out of place", R);
		check(st == ncclSuccess && !memcmp(got, want, (size_t)N * sizeof(float)), what);
		cudaFree(a);
		if (!inplace)
			cudaFree(b);
	}
	/* allgather in place: this rank's part already at recv + rank * N */
	for (int r = 0; r < R; r++)
		for (int j = 0; j < N; j++) {
			want[r * N + j] = val(20, r, j);
			mine[r * N + j] = r == me ? want[r * N + j] : -1.f;
		}
	float *ag = (float *)put_as(mine, R * N, 0);
	ncclResult_t st = ncclAllGather(ag + (size_t)me * N, ag, N, ncclFloat32, c, s);
	cudaStreamSynchronize(s);
	get_as(got, ag, R * N, 0);
	check(st == ncclSuccess && !memcmp(got, want, (size_t)R * N * sizeof(float)), "ncclAllGather in place");
	cudaFree(ag);
	/* broadcast from root 1, out of place */
	for (int j = 0; j < N; j++) {
		mine[j] = val(21, me, j);
		want[j] = val(21, 1, j);
	}
	float *bs = (float *)put_as(mine, N, 0), *br;
	cudaMalloc(&br, (size_t)N * 4);
	st = ncclBroadcast(bs, br, N, ncclFloat32, 1, c, s);
	cudaStreamSynchronize(s);
	get_as(got, br, N, 0);
	check(st == ncclSuccess && !memcmp(got, want, (size_t)N * sizeof(float)), "ncclBroadcast from root 1");
	/* reduce to the last rank, in place */
	for (int j = 0; j < N; j++) {
		mine[j] = val(22, me, j);
		want[j] = 0;
		for (int r = 0; r < R; r++)
			want[j] += val(22, r, j);
	}
	cudaMemcpy(bs, mine, (size_t)N * 4, cudaMemcpyHostToDevice);
	st = ncclReduce(bs, bs, N, ncclFloat32, ncclSum, R - 1, c, s);
	cudaStreamSynchronize(s);
	get_as(got, bs, N, 0);
	check(st == ncclSuccess && (me != R - 1 || !memcmp(got, want, (size_t)N * sizeof(float))),
	      "ncclReduce sum to the last rank, in place");
	cudaFree(bs);
	cudaFree(br);
	/* reducescatter, out of place and in place (recv = send + rank * N) */
	for (int inplace = 0; inplace < 2; inplace++) {
		for (int j = 0; j < R * N; j++)
			mine[j] = val(23 + inplace, me, j);
		for (int j = 0; j < N; j++) {
			want[j] = 0;
			for (int r = 0; r < R; r++)
				want[j] += val(23 + inplace, r, me * N + j);
		}
		float *rs = (float *)put_as(mine, R * N, 0), *rr = rs + (size_t)me * N;
		if (!inplace)
			cudaMalloc(&rr, (size_t)N * 4);
		st = ncclReduceScatter(rs, rr, N, ncclFloat32, ncclSum, c, s);
		cudaStreamSynchronize(s);
		get_as(got, rr, N, 0);
		check(st == ncclSuccess && !memcmp(got, want, (size_t)N * sizeof(float)),
		      inplace ? "ncclReduceScatter in place" : "ncclReduceScatter out of place");
		cudaFree(rs);
		if (!inplace)
			cudaFree(rr);
	}
	/* deferred: a collective reads its buffer when its stream runs it */
	float one = 1.f, two = 2.f;
	float *lz = (float *)dev_put(&one, 4);
	ncclAllReduce(lz, lz, 1, ncclFloat32, ncclSum, c, s);
	cudaMemcpy(lz, &two, 4, cudaMemcpyHostToDevice); /* the legacy stream: s is non-blocking */
	cudaStreamSynchronize(s);
	get_as(got, lz, 1, 0);
	if (lazy_on())
		check(got[0] == 2.f * (float)R, "a deferred ncclAllReduce reads its buffer when its stream runs it");
	cudaFree(lz);
	check(ncclCommDestroy(c) == ncclSuccess, "ncclCommDestroy");
	cudaStreamDestroy(s);
}
#endif

int main(int argc, char **argv)
{
#ifdef EMU_HAVE_MPI
	/* started by mpirun: join its world (the library does so in comm.c) */
	if (getenv("OMPI_COMM_WORLD_SIZE") || getenv("PMIX_RANK") || getenv("PMI_SIZE")) {
		MPI_Init(&argc, &argv);
		MPI_Comm_rank(MPI_COMM_WORLD, &world_rank);
		MPI_Comm_size(MPI_COMM_WORLD, &world_size);
	}
#else
	(void)argc, (void)argv;
#endif
	printf("# cuda-emu self-test (schedule %s, rank %d of %d)\n", emu_sched_name(), world_rank, world_size);
	planted();
	intrinsics();
	intrinsics_check();
	conversions();
	blas();
	dnn();
	nccl();
	misuse();
	lazy();
#ifdef EMU_HAVE_MPI
	if (world_size > 1)
		nccl_ranks();
	int mpi = 0;
	MPI_Initialized(&mpi);
	if (mpi)
		MPI_Finalize();
#endif
	printf("%d passed, %d failed\n", passed, failed);
	return failed ? 1 : 0;
}
