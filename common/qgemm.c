/* qgemm.c — mfr_qgemm_s8 on oneDNN's dnnl_gemm_s8s8s32 when the CPU has
 * VNNI, else on a portable loop nest (contract in qgemm.h). The argument
 * checks are shared, so both backends agree on them.
 *
 * The portable loop is a reference, not a kernel: each C entry is an int8 dot
 * product in int32, over blocks of B's rows that stay in cache while A's rows
 * stream past, with C's rows split over POSIX threads. */
#include "qgemm.h" /* defines: mfr_qgemm_s8, mfr_qgemm_fast */

#include <pthread.h>
#include <stdio.h>
#include <unistd.h>

#ifdef MFR_HAVE_DNNL
#include <dnnl.h>
/* as in dnnl_cpu.c: libgomp's ABI, without needing <omp.h> under clang */
int omp_get_num_procs(void);
int omp_get_max_threads(void);
void omp_set_num_threads(int n);
#endif

/* B's rows per block: 64 rows of k = 512 bytes are 32 KiB, an L1's worth. */
enum { NB = 64 };

typedef struct {
	int64_t n, k, lda, ldb, ldc, r0, r1;
	const int8_t *a, *b;
	int32_t *c;
} job;

static void run_rows(const job *j)
{
	for (int64_t j0 = 0; j0 < j->n; j0 += NB) {
		int64_t j1 = j->n - j0 < NB ? j->n : j0 + NB;
		for (int64_t i = j->r0; i < j->r1; i++) {
			const int8_t *ar = j->a + i * j->lda;
			for (int64_t q = j0; q < j1; q++) {
				const int8_t *br = j->b + q * j->ldb;
				int32_t s = 0;
				for (int64_t p = 0; p < j->k; p++)
					s += (int32_t)ar[p] * br[p];
				j->c[i * j->ldc + q] = s;
			}
		}
	}
}

static void *run_thread(void *arg)
{
	run_rows(arg);
	return NULL;
}

static int portable(int64_t m, int64_t n, int64_t k, const int8_t *a, int64_t lda, const int8_t *b, int64_t ldb,
		    int32_t *c, int64_t ldc, int threads)
{
	int nt = threads > 0 ? threads : (int)sysconf(_SC_NPROCESSORS_ONLN);
	/* below ~2M multiply-adds a thread costs more than it saves */
	if (nt < 1 || (double)m * n * k < 2e6)
		nt = 1;
	if (nt > 64)
		nt = 64;
	if (nt > m)
		nt = (int)m;
	job jobs[64];
	pthread_t th[64];
	int started[64] = {0};
	for (int t = 0; t < nt; t++)
		jobs[t] = (job){n, k, lda, ldb, ldc, m * t / nt, m * (t + 1) / nt, a, b, c};
	for (int t = 1; t < nt; t++)
		started[t] = pthread_create(&th[t], NULL, run_thread, &jobs[t]) == 0;
	run_rows(&jobs[0]);
	for (int t = 1; t < nt; t++) {
		if (started[t])
			pthread_join(th[t], NULL);
		else
			run_rows(&jobs[t]); /* no thread: do its share here */
	}
	return 0;
}

#ifdef MFR_HAVE_DNNL

/* oneDNN's int8 GEMM is exact only where VNNI (or AMX) sums u8 x s8 products
 * straight into int32; the ISAs listed are those of oneDNN 2.6 that have it
 * (an unknown future value falls back to the portable loop: slow, not wrong). */
static int have_vnni(void)
{
	switch (dnnl_get_effective_cpu_isa()) {
	case dnnl_cpu_isa_avx512_core_vnni:
	case dnnl_cpu_isa_avx512_core_bf16:
	case dnnl_cpu_isa_avx512_core_amx:
		return 1;
	default:
		return 0;
	}
}

int mfr_qgemm_fast(void) { return have_vnni(); }

const char *mfr_qgemm_backend(void)
{
	static char name[96];
	if (!name[0]) {
		const dnnl_version_t *v = dnnl_version();
		if (have_vnni())
			snprintf(name, sizeof name, "oneDNN %d.%d.%d s8s8s32 (VNNI)", v->major, v->minor, v->patch);
		else
			snprintf(name, sizeof name, "portable C (oneDNN %d.%d.%d without VNNI is not exact)", v->major,
				 v->minor, v->patch);
	}
	return name;
}

static int product(int64_t m, int64_t n, int64_t k, const int8_t *a, int64_t lda, const int8_t *b, int64_t ldb,
		   int32_t *c, int64_t ldc, int threads)
{
	if (!have_vnni())
		return portable(m, n, k, a, lda, b, ldb, c, ldc, threads);
	/* OpenMP's thread count is a per-thread setting: set it for this call
	 * and put the caller's back */
	int was = omp_get_max_threads();
	int want = threads > 0 ? threads : omp_get_num_procs();
	if (want != was)
		omp_set_num_threads(want);
	int32_t co = 0;
	/* alpha 1, beta 0, no offsets: oneDNN keeps the int32 sums as they are */
	dnnl_status_t st = dnnl_gemm_s8s8s32('N', 'T', 'F', m, n, k, 1.0f, a, lda, 0, b, ldb, 0, 0.0f, c, ldc, &co);
	if (want != was)
		omp_set_num_threads(was);
	return st == dnnl_success ? 0 : -1;
}

#else

int mfr_qgemm_fast(void) { return 0; }
const char *mfr_qgemm_backend(void) { return "portable C (built without oneDNN)"; }

static int product(int64_t m, int64_t n, int64_t k, const int8_t *a, int64_t lda, const int8_t *b, int64_t ldb,
		   int32_t *c, int64_t ldc, int threads)
{
	return portable(m, n, k, a, lda, b, ldb, c, ldc, threads);
}

#endif

int mfr_qgemm_s8(int64_t m, int64_t n, int64_t k, const int8_t *a, int64_t lda, const int8_t *b,
		 int64_t ldb, int32_t *c, int64_t ldc, int threads)
{
	if (m < 0 || n < 0 || k < 0 || k > MFR_QGEMM_MAX_K)
		return -1;
	if (m == 0 || n == 0)
		return 0;
	if (!c || ldc < n)
		return -1;
	if (k == 0) {
		for (int64_t i = 0; i < m; i++)
			for (int64_t j = 0; j < n; j++)
				c[i * ldc + j] = 0;
		return 0;
	}
	if (!a || !b || lda < k || ldb < k)
		return -1;
	return product(m, n, k, a, lda, b, ldb, c, ldc, threads);
}
