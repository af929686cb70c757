/* gcomm.cu — device collectives (gcomm.h): NCCL bootstrapped over comm.h,
 * or host staging through comm.h. */
#include "gpu_impl.h" /* defines: struct mfr_gpu, check macros */

#include <nccl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

extern "C" {
#include "gcomm.h" /* defines: mfr_gcomm_* */
}

#define MFR_NCCL_CHECK(e, call) do { ncclResult_t st_ = (call); if (st_ != ncclSuccess) \
	return mfr_fail((e), "NCCL: %s:%d: %s: %s", __FILE__, __LINE__, #call, ncclGetErrorString(st_)); } while (0)

struct mfr_gcomm {
	mfr_comm *c;
	mfr_gpu *g;
	int rank, size;
	ncclComm_t nccl;      /* NULL: staging */
	void *host;           /* staging buffer */
	size_t host_bytes;
	char desc[384];
};

static int nccl_init(mfr_gcomm *gc, mfr_error *e)
{
	ncclUniqueId id;
	/* every rank's device first: a rank that returned early here would
	 * leave the others waiting inside ncclCommInitRank */
	int32_t devs = cudaSetDevice(gc->g->dev) == cudaSuccess;
	mfr_comm_allreduce(gc->c, &devs, 1, MFR_I32, MFR_SUM);
	if (devs != gc->size)
		return mfr_fail(e, "a rank could not select its GPU");
	/* every rank takes part in the broadcast, so a failure on rank 0 is
	 * told to the others by an all-zero id */
	int ok = 1;
	memset(&id, 0, sizeof id);
	if (gc->rank == 0 && ncclGetUniqueId(&id) != ncclSuccess)
		ok = 0;
	mfr_comm_bcast(gc->c, &id, sizeof id, MFR_U8, 0);
	static const ncclUniqueId zero = {{0}};
	if (!ok || !memcmp(&id, &zero, sizeof id))
		return mfr_fail(e, "rank 0 could not make an NCCL id");
	MFR_NCCL_CHECK(e, ncclCommInitRank(&gc->nccl, gc->size, id, gc->rank));
	return 0;
}

extern "C" mfr_gcomm *mfr_gcomm_new(mfr_comm *c, mfr_gpu *g, mfr_error *e)
{
	mfr_gcomm *gc = (mfr_gcomm *)calloc(1, sizeof *gc);
	if (!gc) {
		mfr_fail(e, "out of memory");
		return NULL;
	}
	gc->c = c;
	gc->g = g;
	gc->rank = mfr_comm_rank(c);
	gc->size = mfr_comm_size(c);
	if (gc->size == 1) {
		snprintf(gc->desc, sizeof gc->desc, "one rank");
		return gc;
	}
	const char *env = getenv("MFR_NCCL");
	char why[256] = "MFR_NCCL=0";
	int want = !(env && env[0] == '0');
	/* all ranks agree on trying NCCL (the environment may differ) */
	int32_t w = want;
	mfr_comm_allreduce(c, &w, 1, MFR_I32, MFR_SUM);
	if (w == gc->size) {
		mfr_error ne = {{0}};
		int rc = nccl_init(gc, &ne);
		/* said at once: a rank that fails inside ncclCommInitRank
		 * leaves the others waiting there, not at the agreement below */
		if (rc < 0)
			fprintf(stderr, "mfr: rank %d: NCCL failed: %s; falling back to host staging if every rank agrees\n",
				gc->rank, ne.msg);
		int32_t okc = rc == 0;
		mfr_comm_allreduce(c, &okc, 1, MFR_I32, MFR_SUM);
		if (okc == gc->size) {
			int v = 0;
			ncclGetVersion(&v);
			snprintf(gc->desc, sizeof gc->desc, "NCCL %d.%d.%d, %d ranks", v / 10000, v / 100 % 100, v % 100,
				 gc->size);
			return gc;
		}
		if (gc->nccl) /* its peers may never finish: abort, not destroy (which waits for them) */
			ncclCommAbort(gc->nccl);
		gc->nccl = NULL;
		snprintf(why, sizeof why, "NCCL failed: %.200s", rc < 0 ? ne.msg : "on another rank");
	}
	snprintf(gc->desc, sizeof gc->desc, "host staging over %.100s (%.230s)", mfr_comm_describe(c), why);
	return gc;
}

extern "C" void mfr_gcomm_free(mfr_gcomm *gc)
{
	if (!gc)
		return;
	if (gc->nccl)
		ncclCommDestroy(gc->nccl);
	if (gc->host)
		mfr_gpu_host_free(gc->g, gc->host);
	free(gc);
}

extern "C" const char *mfr_gcomm_describe(const mfr_gcomm *gc) { return gc->desc; }

static ncclDataType_t nccl_type(mfr_dtype t)
{
	switch (t) {
	case MFR_F16: return ncclFloat16;
	case MFR_BF16: return ncclBfloat16;
	case MFR_I32: return ncclInt32;
	case MFR_I64: return ncclInt64;
	case MFR_F64: return ncclFloat64;
	case MFR_U8: return ncclUint8;
	default: return ncclFloat32;
	}
}

static size_t type_bytes(mfr_dtype t)
{
	switch (t) {
	case MFR_F16:
	case MFR_BF16: return 2;
	case MFR_F64:
	case MFR_I64: return 8;
	case MFR_U8: return 1;
	default: return 4;
	}
}

/* The host staging buffer, at least bytes long. */
static void *staging(mfr_gcomm *gc, size_t bytes, mfr_error *e)
{
	if (bytes <= gc->host_bytes)
		return gc->host;
	mfr_gpu_host_free(gc->g, gc->host);
	gc->host_bytes = 0;
	if (!(gc->host = mfr_gpu_host_alloc(gc->g, bytes, e)))
		return NULL;
	gc->host_bytes = bytes;
	return gc->host;
}

extern "C" int mfr_gcomm_allreduce(mfr_gcomm *gc, void *buf, size_t n, mfr_dtype t, int op, mfr_error *e)
{
	if (gc->size == 1 || n == 0)
		return 0;
	if (gc->nccl) {
		MFR_NCCL_CHECK(e, ncclAllReduce(buf, buf, n, nccl_type(t), op == MFR_MAX ? ncclMax : ncclSum, gc->nccl,
						gc->g->stream));
		return 0;
	}
	if (t != MFR_F32 && t != MFR_I32 && t != MFR_I64 && t != MFR_F64)
		return mfr_fail(e, "allreduce of %s needs NCCL", mfr_dtype_name(t));
	size_t bytes = n * type_bytes(t);
	void *h = staging(gc, bytes, e);
	if (!h || mfr_gpu_get(gc->g, h, buf, bytes, e) < 0)
		return -1;
	mfr_comm_allreduce(gc->c, h, n, t, op);
	return mfr_gpu_put(gc->g, buf, h, bytes, e);
}

extern "C" int mfr_gcomm_overlaps(const mfr_gcomm *gc) { return gc->size > 1 && gc->nccl; }

extern "C" int mfr_gcomm_allreduce_side(mfr_gcomm *gc, void *buf, size_t n, mfr_dtype t, mfr_error *e)
{
	if (gc->size == 1 || n == 0)
		return 0;
	if (!gc->nccl)
		return mfr_gcomm_allreduce(gc, buf, n, t, MFR_SUM, e);
	if (mfr_gpu_side_wait(gc->g, e) < 0)
		return -1;
	MFR_NCCL_CHECK(e, ncclAllReduce(buf, buf, n, nccl_type(t), ncclSum, gc->nccl, gc->g->side));
	return 0;
}

extern "C" int mfr_gcomm_allgather(mfr_gcomm *gc, const void *in, void *out, size_t n, mfr_dtype t, mfr_error *e)
{
	size_t bytes = n * type_bytes(t);
	if (gc->size == 1)
		return in == out ? 0 : mfr_gpu_copy(gc->g, out, in, bytes, e);
	if (gc->nccl) {
		MFR_NCCL_CHECK(e, ncclAllGather(in, out, n, nccl_type(t), gc->nccl, gc->g->stream));
		return 0;
	}
	char *h = (char *)staging(gc, bytes * (size_t)(gc->size + 1), e);
	if (!h || mfr_gpu_get(gc->g, h, in, bytes, e) < 0)
		return -1;
	mfr_comm_allgather(gc->c, h, h + bytes, n, t);
	return mfr_gpu_put(gc->g, out, h + bytes, bytes * (size_t)gc->size, e);
}

extern "C" int mfr_gcomm_bcast(mfr_gcomm *gc, void *buf, size_t n, mfr_dtype t, int root, mfr_error *e)
{
	size_t bytes = n * type_bytes(t);
	if (gc->size == 1 || n == 0)
		return 0;
	if (gc->nccl) {
		MFR_NCCL_CHECK(e, ncclBroadcast(buf, buf, n, nccl_type(t), root, gc->nccl, gc->g->stream));
		return 0;
	}
	void *h = staging(gc, bytes, e);
	if (!h || (gc->rank == root && mfr_gpu_get(gc->g, h, buf, bytes, e) < 0))
		return -1;
	mfr_comm_bcast(gc->c, h, n, t, root);
	return gc->rank == root ? 0 : mfr_gpu_put(gc->g, buf, h, bytes, e);
}
