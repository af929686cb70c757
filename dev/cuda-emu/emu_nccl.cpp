/* emu_nccl.cpp — cuda-emu's NCCL: one rank (nranks 1, rank 0); every
 * collective of one rank is a copy of count elements from send to recv
 * (nothing when they are the same buffer), with both in device memory. */
#include "nccl.h"

#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#define MAGIC 0x9cc19cc1u

struct emu_nccl {
	unsigned magic;
	int dev;
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

static ncclResult_t copy(const char *fn, const void *send, void *recv, size_t count, ncclDataType_t t, int op,
			 ncclComm_t comm, cudaStream_t s)
{
	if (!comm_ok(comm)) {
		emu_note("%s: invalid communicator", fn);
		return ncclInvalidArgument;
	}
	if (tbytes(t) == 0 || (unsigned)op > 4) {
		emu_note("%s: invalid data type %d or op %d", fn, (int)t, op);
		return ncclInvalidArgument;
	}
	if (!emu_stream_ok(s)) {
		emu_note("%s: invalid stream", fn);
		return ncclInvalidArgument;
	}
	size_t n = count * tbytes(t);
	if (n == 0)
		return ncclSuccess;
	if (!emu_check_device_range(send, n, fn) || !emu_check_device_range(recv, n, fn)) {
		emu_note("%s: send or recv buffer (%zu bytes) is not device memory", fn, n);
		return ncclInvalidArgument;
	}
	if (send != recv) {
		emu_device_open(recv);
		memmove(recv, send, n);
		emu_device_close_all();
	}
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
	if (!id)
		return ncclInvalidArgument;
	memset(id, 0, sizeof *id);
	snprintf(id->internal, sizeof id->internal, "cuda-emu nccl id %d", (int)getpid());
	return ncclSuccess;
}

ncclResult_t ncclCommInitRank(ncclComm_t *comm, int nranks, ncclUniqueId id, int rank)
{
	static const ncclUniqueId zero = {{0}};
	if (!comm)
		return ncclInvalidArgument;
	if (nranks != 1 || rank != 0) {
		emu_note("ncclCommInitRank: cuda-emu emulates a world of one rank (got nranks %d, rank %d)", nranks, rank);
		return ncclInvalidUsage;
	}
	if (!memcmp(&id, &zero, sizeof id)) {
		emu_note("ncclCommInitRank: the unique id is all zeros (never made by ncclGetUniqueId)");
		return ncclInvalidArgument;
	}
	int dev = 0;
	cudaGetDevice(&dev);
	*comm = new emu_nccl{MAGIC, dev};
	return ncclSuccess;
}

ncclResult_t ncclCommInitAll(ncclComm_t *comms, int ndev, const int *devlist)
{
	(void)devlist;
	if (!comms || ndev != 1)
		return ncclInvalidUsage;
	*comms = new emu_nccl{MAGIC, 0};
	return ncclSuccess;
}

ncclResult_t ncclCommDestroy(ncclComm_t comm)
{
	if (!comm_ok(comm))
		return ncclInvalidArgument;
	comm->magic = 0;
	delete comm;
	return ncclSuccess;
}
ncclResult_t ncclCommAbort(ncclComm_t comm) { return ncclCommDestroy(comm); }

ncclResult_t ncclCommCount(const ncclComm_t comm, int *count)
{
	if (!comm_ok(comm) || !count)
		return ncclInvalidArgument;
	*count = 1;
	return ncclSuccess;
}
ncclResult_t ncclCommUserRank(const ncclComm_t comm, int *rank)
{
	if (!comm_ok(comm) || !rank)
		return ncclInvalidArgument;
	*rank = 0;
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
	*err = ncclSuccess;
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
	return copy("ncclAllReduce", send, recv, count, t, op, comm, s);
}
ncclResult_t ncclReduce(const void *send, void *recv, size_t count, ncclDataType_t t, ncclRedOp_t op, int root,
			ncclComm_t comm, cudaStream_t s)
{
	if (root != 0)
		return ncclInvalidArgument;
	return copy("ncclReduce", send, recv, count, t, op, comm, s);
}
ncclResult_t ncclBroadcast(const void *send, void *recv, size_t count, ncclDataType_t t, int root, ncclComm_t comm,
			   cudaStream_t s)
{
	if (root != 0) {
		emu_note("ncclBroadcast: root %d of a one-rank world", root);
		return ncclInvalidArgument;
	}
	return copy("ncclBroadcast", send, recv, count, t, 0, comm, s);
}
ncclResult_t ncclAllGather(const void *send, void *recv, size_t count, ncclDataType_t t, ncclComm_t comm,
			   cudaStream_t s)
{
	return copy("ncclAllGather", send, recv, count, t, 0, comm, s);
}
ncclResult_t ncclReduceScatter(const void *send, void *recv, size_t count, ncclDataType_t t, ncclRedOp_t op,
			       ncclComm_t comm, cudaStream_t s)
{
	return copy("ncclReduceScatter", send, recv, count, t, op, comm, s);
}
ncclResult_t ncclGroupStart(void) { return ncclSuccess; }
ncclResult_t ncclGroupEnd(void) { return ncclSuccess; }

} /* extern "C" */
