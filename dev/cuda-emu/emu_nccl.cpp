/* emu_nccl.cpp — cuda-emu's NCCL. A communicator of one rank (nranks 1,
 * rank 0) needs nothing else: each collective copies count elements from
 * send to recv. One of several ranks needs cuda-emu built with MPI
 * (EMU_HAVE_MPI) and the program to be exactly that MPI world, MPI_Init
 * already called (the program's own business): rank r of the communicator
 * is rank r of MPI_COMM_WORLD, and the collectives run as MPI collectives on
 * the communicator's duplicate of MPI_COMM_WORLD, fp16 and bf16 reductions
 * through float with the emulator's bit-exact conversions.
 *
 * Every collective is validated when called (communicator, type, op, root,
 * stream, buffers in device memory, overlap only in NCCL's in-place
 * layouts) and then deferred on its stream (emu_defer): it reads its
 * buffers when it runs. The collectives of one communicator run in the
 * order they were called, so every rank runs them in the same order. */
#include "nccl.h"

#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include <vector>

#ifdef EMU_HAVE_MPI
#include <mpi.h>
#endif

#define MAGIC 0x9cc19cc1u

struct emu_nccl {
	unsigned magic;
	int dev;
	int rank, size;
	ncclResult_t async; /* the first failure of a collective, for ncclCommGetAsyncError */
#ifdef EMU_HAVE_MPI
	MPI_Comm mpi = MPI_COMM_NULL; /* size > 1: the duplicate of MPI_COMM_WORLD */
	MPI_Op half_op[2][4] = {};    /* [fp16, bf16][sum, prod, max, min] */
#endif
};

enum { ALLREDUCE, REDUCE, BCAST, ALLGATHER, REDUCESCATTER };

/* One collective call, as validated. */
struct Coll {
	const char *fn;
	int kind;
	const void *send;
	void *recv;
	size_t count;
	ncclDataType_t t;
	int op;
	int root;
};

static size_t tbytes(ncclDataType_t t)
{
	switch (t) {
	case ncclInt8:
	case ncclUint8: return 1;
	case ncclFloat16:
	case ncclBfloat16: return 2;
	case ncclInt32:
	case ncclUint32:
	case ncclFloat32: return 4;
	case ncclInt64:
	case ncclUint64:
	case ncclFloat64: return 8;
	}
	return 0;
}

static int comm_ok(ncclComm_t c) { return c && c->magic == MAGIC; }

/* 1 when the byte ranges [a, a + na) and [b, b + nb) share a byte. */
static int overlap(const void *a, size_t na, const void *b, size_t nb)
{
	return na && nb && (const char *)a < (const char *)b + nb && (const char *)b < (const char *)a + na;
}

#ifdef EMU_HAVE_MPI
/* The fp16 (BF 0) or bf16 (BF 1) reduction OP as an MPI user function:
 * each pair through float, the result rounded to nearest even. */
template <int BF, int OP> static void half_fn(void *in, void *inout, int *len, MPI_Datatype *)
{
	const uint16_t *a = (const uint16_t *)in;
	uint16_t *b = (uint16_t *)inout;
	for (int i = 0; i < *len; i++) {
		float x = BF ? emu_b2f(a[i]) : emu_h2f(a[i]), y = BF ? emu_b2f(b[i]) : emu_h2f(b[i]);
		float r = OP == ncclSum ? x + y : OP == ncclProd ? x * y : OP == ncclMax ? fmaxf(x, y) : fminf(x, y);
		b[i] = BF ? emu_f2b(r) : emu_f2h(r);
	}
}

static MPI_Datatype mpi_type(ncclDataType_t t)
{
	switch (t) {
	case ncclInt8: return MPI_INT8_T;
	case ncclUint8: return MPI_UINT8_T;
	case ncclInt32: return MPI_INT32_T;
	case ncclUint32: return MPI_UINT32_T;
	case ncclInt64: return MPI_INT64_T;
	case ncclUint64: return MPI_UINT64_T;
	case ncclFloat16:
	case ncclBfloat16: return MPI_UINT16_T;
	case ncclFloat32: return MPI_FLOAT;
	case ncclFloat64: return MPI_DOUBLE;
	}
	return MPI_DATATYPE_NULL;
}

/* The MPI reduction of op on type t (ncclAvg: the sum, divided afterwards). */
static MPI_Op mpi_op(ncclComm_t comm, ncclDataType_t t, int op)
{
	if (op == ncclAvg)
		op = ncclSum;
	if (t == ncclFloat16 || t == ncclBfloat16)
		return comm->half_op[t == ncclBfloat16][op];
	static const MPI_Op ops[] = {MPI_SUM, MPI_PROD, MPI_MAX, MPI_MIN};
	return ops[op];
}

/* q[i] /= by for the n elements of type T at p. */
template <class T> static void div_as(void *p, size_t n, int by)
{
	T *q = (T *)p;
	for (size_t i = 0; i < n; i++)
		q[i] = (T)(q[i] / by);
}

/* ncclAvg: the n sums at p of type t divided by the number of ranks
 * (integers truncated, fp16 and bf16 through float). */
static void divide(void *p, size_t n, ncclDataType_t t, int by)
{
	uint16_t *h = (uint16_t *)p;
	switch (t) {
	case ncclInt8: div_as<int8_t>(p, n, by); break;
	case ncclUint8: div_as<uint8_t>(p, n, by); break;
	case ncclInt32: div_as<int32_t>(p, n, by); break;
	case ncclUint32: div_as<uint32_t>(p, n, by); break;
	case ncclInt64: div_as<int64_t>(p, n, by); break;
	case ncclUint64: div_as<uint64_t>(p, n, by); break;
	case ncclFloat32: div_as<float>(p, n, by); break;
	case ncclFloat64: div_as<double>(p, n, by); break;
	case ncclFloat16:
		for (size_t i = 0; i < n; i++)
			h[i] = emu_f2h(emu_h2f(h[i]) / (float)by);
		break;
	case ncclBfloat16:
		for (size_t i = 0; i < n; i++)
			h[i] = emu_f2b(emu_b2f(h[i]) / (float)by);
		break;
	}
}

/* Runs c on a communicator of several ranks; returns MPI's code. */
static int run_mpi(ncclComm_t comm, const Coll &c)
{
	MPI_Datatype dt = mpi_type(c.t);
	int n = (int)c.count, rc = MPI_SUCCESS;
	size_t cb = c.count * tbytes(c.t);
	const void *in = c.send == c.recv ? MPI_IN_PLACE : c.send;
	switch (c.kind) {
	case ALLREDUCE:
		rc = MPI_Allreduce(in, c.recv, n, dt, mpi_op(comm, c.t, c.op), comm->mpi);
		break;
	case REDUCE:
		rc = MPI_Reduce(comm->rank == c.root ? in : c.send, comm->rank == c.root ? c.recv : nullptr, n, dt,
				mpi_op(comm, c.t, c.op), c.root, comm->mpi);
		break;
	case BCAST:
		if (comm->rank == c.root && c.send != c.recv)
			memmove(c.recv, c.send, cb);
		rc = MPI_Bcast(c.recv, n, dt, c.root, comm->mpi);
		break;
	case ALLGATHER:
		if (c.send == (const char *)c.recv + (size_t)comm->rank * cb)
			rc = MPI_Allgather(MPI_IN_PLACE, 0, MPI_DATATYPE_NULL, c.recv, n, dt, comm->mpi);
		else
			rc = MPI_Allgather(c.send, n, dt, c.recv, n, dt, comm->mpi);
		break;
	case REDUCESCATTER: {
		/* in place (recv inside send): MPI wants the input apart */
		std::vector<char> tmp;
		const void *src = c.send;
		if (overlap(c.send, cb * (size_t)comm->size, c.recv, cb)) {
			tmp.assign((const char *)c.send, (const char *)c.send + cb * (size_t)comm->size);
			src = tmp.data();
		}
		rc = MPI_Reduce_scatter_block(src, c.recv, n, dt, mpi_op(comm, c.t, c.op), comm->mpi);
		break;
	}
	}
	if (rc == MPI_SUCCESS && c.op == ncclAvg && c.kind != BCAST && c.kind != ALLGATHER &&
	    (c.kind != REDUCE || comm->rank == c.root))
		divide(c.recv, c.count, c.t, comm->size);
	return rc;
}
#endif

/* Runs c (deferred until now) on comm. Its buffers must still be device
 * memory (a cudaFreeAsync on another stream may have freed them); an MPI
 * failure is noted and becomes the communicator's asynchronous error. */
static cudaError_t run(ncclComm_t comm, const Coll &c, size_t send_bytes, size_t recv_bytes)
{
	if ((send_bytes && !emu_check_device_range(c.send, send_bytes, c.fn)) ||
	    (recv_bytes && !emu_check_device_range(c.recv, recv_bytes, c.fn)))
		return cudaErrorIllegalAddress;
	if (comm->size == 1) {
		if (c.send != c.recv)
			memmove(c.recv, c.send, c.count * tbytes(c.t));
		return cudaSuccess;
	}
#ifdef EMU_HAVE_MPI
	int rc = run_mpi(comm, c);
	if (rc == MPI_SUCCESS)
		return cudaSuccess;
	char msg[MPI_MAX_ERROR_STRING];
	int len = 0;
	MPI_Error_string(rc, msg, &len);
	emu_note("%s on rank %d: MPI failed: %.*s", c.fn, comm->rank, len, msg);
	if (comm->async == ncclSuccess)
		comm->async = ncclSystemError;
#endif
	return cudaErrorLaunchFailure;
}

/* Validates collective c on comm and stream s as NCCL would, then defers
 * it on s. */
static ncclResult_t collective(Coll c, ncclComm_t comm, cudaStream_t s)
{
	const char *fn = c.fn;
	if (!comm_ok(comm)) {
		emu_note("%s: invalid communicator", fn);
		return ncclInvalidArgument;
	}
	if (tbytes(c.t) == 0 || (unsigned)c.op > ncclAvg) {
		emu_note("%s: invalid data type %d or op %d", fn, (int)c.t, c.op);
		return ncclInvalidArgument;
	}
	if ((c.kind == REDUCE || c.kind == BCAST) && (c.root < 0 || c.root >= comm->size)) {
		emu_note("%s: root %d of a communicator of %d rank(s)", fn, c.root, comm->size);
		return ncclInvalidArgument;
	}
	if (!emu_stream_ok(s)) {
		emu_note("%s: invalid stream", fn);
		return ncclInvalidArgument;
	}
	if (c.count == 0)
		return ncclSuccess;
	if (comm->size > 1 && c.count > (size_t)0x7fffffff / (size_t)comm->size) {
		emu_note("%s: count %zu is more than cuda-emu passes to MPI", fn, c.count);
		return ncclInvalidArgument;
	}
	size_t cb = c.count * tbytes(c.t), all = cb * (size_t)comm->size;
	int root = comm->rank == c.root;
	/* the bytes each buffer holds on this rank (the send buffer of a
	 * broadcast and the recv buffer of a reduce only matter on the root) */
	size_t sn = c.kind == REDUCESCATTER ? all : c.kind == BCAST && !root ? 0 : cb;
	size_t rn = c.kind == ALLGATHER ? all : c.kind == REDUCE && !root ? 0 : cb;
	if ((sn && !emu_check_device_range(c.send, sn, fn)) || (rn && !emu_check_device_range(c.recv, rn, fn))) {
		emu_note("%s: send or recv buffer (%zu / %zu bytes) is not device memory", fn, sn, rn);
		return ncclInvalidArgument;
	}
	int in_place = c.kind == ALLGATHER	 ? c.send == (const char *)c.recv + (size_t)comm->rank * cb
		       : c.kind == REDUCESCATTER ? c.recv == (const char *)c.send + (size_t)comm->rank * cb
						 : c.send == c.recv;
	if (!in_place && overlap(c.send, sn, c.recv, rn)) {
		emu_note("%s: send [%p, +%zu) and recv [%p, +%zu) overlap other than in NCCL's in-place layout", fn,
			 c.send, sn, c.recv, rn);
		return ncclInvalidArgument;
	}
	char what[200];
	snprintf(what, sizeof what, "%s of %zu element(s) of type %d (communicator %p, rank %d of %d) on stream %p", fn,
		 c.count, (int)c.t, (void *)comm, comm->rank, comm->size, (void *)s);
	emu_defer(s, what, comm, [comm, c, sn, rn]() { return run(comm, c, sn, rn); });
	return ncclSuccess;
}

extern "C" {

ncclResult_t ncclGetVersion(int *version)
{
	if (!version)
		return ncclInvalidArgument;
	*version = NCCL_VERSION_CODE;
	return ncclSuccess;
}

ncclResult_t ncclGetUniqueId(ncclUniqueId *id)
{
	static int made;
	if (!id)
		return ncclInvalidArgument;
	memset(id, 0, sizeof *id);
	snprintf(id->internal, sizeof id->internal, "cuda-emu nccl id %d.%d", (int)getpid(), ++made);
	return ncclSuccess;
}

ncclResult_t ncclCommInitRank(ncclComm_t *comm, int nranks, ncclUniqueId id, int rank)
{
	static const ncclUniqueId zero = {{0}};
	if (!comm)
		return ncclInvalidArgument;
	if (nranks < 1 || rank < 0 || rank >= nranks) {
		emu_note("ncclCommInitRank: rank %d of %d rank(s)", rank, nranks);
		return ncclInvalidArgument;
	}
	if (!memcmp(&id, &zero, sizeof id)) {
		emu_note("ncclCommInitRank: the unique id is all zeros (never made by ncclGetUniqueId)");
		return ncclInvalidArgument;
	}
	int dev = 0;
	cudaGetDevice(&dev);
	if (nranks == 1) {
		*comm = new emu_nccl{MAGIC, dev, 0, 1, ncclSuccess};
		return ncclSuccess;
	}
#ifndef EMU_HAVE_MPI
	emu_note("ncclCommInitRank: cuda-emu was built without MPI and emulates a world of one rank (got nranks %d, "
		 "rank %d)",
		 nranks, rank);
	return ncclInvalidUsage;
#else
	int init = 0, fin = 0, wsize = 0, wrank = 0;
	MPI_Initialized(&init);
	MPI_Finalized(&fin);
	if (!init || fin) {
		emu_note("ncclCommInitRank: %d ranks need the program to be an MPI world (MPI_Init first; mpirun -np %d)",
			 nranks, nranks);
		return ncclInvalidUsage;
	}
	MPI_Comm_size(MPI_COMM_WORLD, &wsize);
	MPI_Comm_rank(MPI_COMM_WORLD, &wrank);
	if (wsize != nranks || wrank != rank) {
		emu_note("ncclCommInitRank: nranks %d, rank %d, but this is rank %d of an MPI world of %d (cuda-emu maps "
			 "NCCL ranks to MPI_COMM_WORLD's)",
			 nranks, rank, wrank, wsize);
		return ncclInvalidUsage;
	}
	MPI_Comm c;
	if (MPI_Comm_dup(MPI_COMM_WORLD, &c) != MPI_SUCCESS) {
		emu_note("ncclCommInitRank: MPI_Comm_dup failed");
		return ncclSystemError;
	}
	MPI_Comm_set_errhandler(c, MPI_ERRORS_RETURN);
	/* every rank must hold rank 0's id; all agree on the outcome */
	ncclUniqueId root_id = id;
	int same = 0, all = 0;
	if (MPI_Bcast(&root_id, (int)sizeof root_id, MPI_BYTE, 0, c) == MPI_SUCCESS)
		same = !memcmp(&root_id, &id, sizeof id);
	if (MPI_Allreduce(&same, &all, 1, MPI_INT, MPI_MIN, c) != MPI_SUCCESS || !all) {
		emu_note("ncclCommInitRank: %s", same ? "another rank was given a unique id other than rank 0's"
						       : "this rank's unique id is not rank 0's");
		MPI_Comm_free(&c);
		return ncclInvalidUsage;
	}
	ncclComm_t n = new emu_nccl{MAGIC, dev, rank, nranks, ncclSuccess};
	n->mpi = c;
	static MPI_User_function *const fns[2][4] = {
		{half_fn<0, ncclSum>, half_fn<0, ncclProd>, half_fn<0, ncclMax>, half_fn<0, ncclMin>},
		{half_fn<1, ncclSum>, half_fn<1, ncclProd>, half_fn<1, ncclMax>, half_fn<1, ncclMin>}};
	for (int b = 0; b < 2; b++)
		for (int o = 0; o < 4; o++)
			MPI_Op_create(fns[b][o], 1, &n->half_op[b][o]);
	*comm = n;
	return ncclSuccess;
#endif
}

ncclResult_t ncclCommInitAll(ncclComm_t *comms, int ndev, const int *devlist)
{
	(void)devlist;
	if (!comms || ndev != 1)
		return ncclInvalidUsage;
	*comms = new emu_nccl{MAGIC, 0, 0, 1, ncclSuccess};
	return ncclSuccess;
}

/* Runs the communicator's queued collectives first (NCCL finalizes). */
ncclResult_t ncclCommDestroy(ncclComm_t comm)
{
	if (!comm_ok(comm))
		return ncclInvalidArgument;
	emu_defer_flush_key(comm);
#ifdef EMU_HAVE_MPI
	int fin = 0;
	MPI_Finalized(&fin);
	if (comm->size > 1 && !fin) {
		for (int b = 0; b < 2; b++)
			for (int o = 0; o < 4; o++)
				MPI_Op_free(&comm->half_op[b][o]);
		MPI_Comm_free(&comm->mpi);
	}
#endif
	comm->magic = 0;
	delete comm;
	return ncclSuccess;
}
ncclResult_t ncclCommAbort(ncclComm_t comm) { return ncclCommDestroy(comm); }

ncclResult_t ncclCommCount(const ncclComm_t comm, int *count)
{
	if (!comm_ok(comm) || !count)
		return ncclInvalidArgument;
	*count = comm->size;
	return ncclSuccess;
}
ncclResult_t ncclCommUserRank(const ncclComm_t comm, int *rank)
{
	if (!comm_ok(comm) || !rank)
		return ncclInvalidArgument;
	*rank = comm->rank;
	return ncclSuccess;
}
ncclResult_t ncclCommCuDevice(const ncclComm_t comm, int *device)
{
	if (!comm_ok(comm) || !device)
		return ncclInvalidArgument;
	*device = comm->dev;
	return ncclSuccess;
}
ncclResult_t ncclCommGetAsyncError(ncclComm_t comm, ncclResult_t *err)
{
	if (!comm_ok(comm) || !err)
		return ncclInvalidArgument;
	*err = comm->async;
	return ncclSuccess;
}

const char *ncclGetErrorString(ncclResult_t r)
{
	switch (r) {
	case ncclSuccess: return "no error";
	case ncclUnhandledCudaError: return "unhandled cuda error (run with NCCL_DEBUG=INFO for details)";
	case ncclSystemError: return "unhandled system error (run with NCCL_DEBUG=INFO for details)";
	case ncclInternalError: return "internal error - please report this issue to the NCCL developers";
	case ncclInvalidArgument: return "invalid argument (run with NCCL_DEBUG=WARN for details)";
	case ncclInvalidUsage: return "invalid usage (run with NCCL_DEBUG=WARN for details)";
	case ncclRemoteError: return "remote process exited or there was a network error";
	case ncclInProgress: return "NCCL operation in progress";
	}
	return "unknown result code";
}
const char *ncclGetLastError(ncclComm_t comm)
{
	(void)comm;
	return "";
}

ncclResult_t ncclAllReduce(const void *send, void *recv, size_t count, ncclDataType_t t, ncclRedOp_t op,
			   ncclComm_t comm, cudaStream_t s)
{
	return collective(Coll{"ncclAllReduce", ALLREDUCE, send, recv, count, t, op, 0}, comm, s);
}
ncclResult_t ncclReduce(const void *send, void *recv, size_t count, ncclDataType_t t, ncclRedOp_t op, int root,
			ncclComm_t comm, cudaStream_t s)
{
	return collective(Coll{"ncclReduce", REDUCE, send, recv, count, t, op, root}, comm, s);
}
ncclResult_t ncclBroadcast(const void *send, void *recv, size_t count, ncclDataType_t t, int root, ncclComm_t comm,
			   cudaStream_t s)
{
	return collective(Coll{"ncclBroadcast", BCAST, send, recv, count, t, ncclSum, root}, comm, s);
}
ncclResult_t ncclAllGather(const void *send, void *recv, size_t count, ncclDataType_t t, ncclComm_t comm,
			   cudaStream_t s)
{
	return collective(Coll{"ncclAllGather", ALLGATHER, send, recv, count, t, ncclSum, 0}, comm, s);
}
ncclResult_t ncclReduceScatter(const void *send, void *recv, size_t count, ncclDataType_t t, ncclRedOp_t op,
			       ncclComm_t comm, cudaStream_t s)
{
	return collective(Coll{"ncclReduceScatter", REDUCESCATTER, send, recv, count, t, op, 0}, comm, s);
}
ncclResult_t ncclGroupStart(void) { return ncclSuccess; }
ncclResult_t ncclGroupEnd(void) { return ncclSuccess; }

} /* extern "C" */
