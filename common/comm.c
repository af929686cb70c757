/* comm.c — collectives over MPI or in a world of one (see comm.h).
 *
 * Large transfers are cut into pieces of at most CHUNK values, since MPI
 * counts are ints; the gather and scatter of classifier shards are point to
 * point with rank 0, in rank order, so their memory is one shard at a time
 * on the senders.
 */
#include "comm.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifdef MFR_HAVE_MPI
#include <mpi.h>
#endif

#define CHUNK ((size_t)1 << 26)

struct mfr_comm {
	int rank, size, mpi;
	char what[160];
};

static size_t type_size(int dtype)
{
	switch (dtype) {
	case MFR_F32: case MFR_I32: return 4;
	case MFR_F64: case MFR_I64: return 8;
	default: return 1;
	}
}

/* Whether a launcher (mpirun, srun with PMI/PMIx) started this process. */
static int launched(void)
{
	static const char *vars[] = {"OMPI_COMM_WORLD_SIZE", "PMIX_RANK", "PMI_SIZE", "PMI_RANK", "MPI_LOCALNRANKS"};
	for (size_t i = 0; i < sizeof vars / sizeof *vars; i++)
		if (getenv(vars[i]))
			return 1;
	return 0;
}

#ifdef MFR_HAVE_MPI
static MPI_Datatype mpi_type(int dtype)
{
	switch (dtype) {
	case MFR_F32: return MPI_FLOAT;
	case MFR_F64: return MPI_DOUBLE;
	case MFR_I32: return MPI_INT32_T;
	case MFR_I64: return MPI_INT64_T;
	default: return MPI_BYTE;
	}
}

/* Reports an MPI failure with this rank and MPI's message, then ends the job. */
static void check(mfr_comm *c, int rc, const char *what)
{
	if (rc == MPI_SUCCESS)
		return;
	char msg[MPI_MAX_ERROR_STRING];
	int len = 0;
	MPI_Error_string(rc, msg, &len);
	fprintf(stderr, "mfr: rank %d: MPI %s failed: %.*s\n", c->rank, what, len, msg);
	MPI_Abort(MPI_COMM_WORLD, 1);
	exit(1);
}
#endif

mfr_comm *mfr_comm_init(int *argc, char ***argv, mfr_error *e)
{
	mfr_comm *c = calloc(1, sizeof *c);
	if (!c) {
		mfr_fail(e, "out of memory");
		return NULL;
	}
	c->size = 1;
	snprintf(c->what, sizeof c->what, "world of one (no launcher)");
	if (!launched())
		return c;
#ifdef MFR_HAVE_MPI
	int provided = 0;
	if (MPI_Init_thread(argc, argv, MPI_THREAD_FUNNELED, &provided) != MPI_SUCCESS) {
		free(c);
		mfr_fail(e, "MPI_Init_thread failed");
		return NULL;
	}
	MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
	MPI_Comm_rank(MPI_COMM_WORLD, &c->rank);
	MPI_Comm_size(MPI_COMM_WORLD, &c->size);
	c->mpi = 1;
	char lib[MPI_MAX_LIBRARY_VERSION_STRING];
	int len = 0;
	MPI_Get_library_version(lib, &len);
	lib[strcspn(lib, ",\n")] = 0;
	snprintf(c->what, sizeof c->what, "MPI (%.100s), %d ranks", lib, c->size);
	return c;
#else
	const char *n = getenv("OMPI_COMM_WORLD_SIZE") ? getenv("OMPI_COMM_WORLD_SIZE") : getenv("PMI_SIZE");
	if (n && atoi(n) > 1) {
		free(c);
		mfr_fail(e, "started by a launcher with %s ranks, but this build has no MPI (rebuild with MPI=yes; make deps installs OpenMPI)", n);
		return NULL;
	}
	return c;
#endif
}

void mfr_comm_finish(mfr_comm *c)
{
	if (!c)
		return;
#ifdef MFR_HAVE_MPI
	if (c->mpi)
		MPI_Finalize();
#endif
	free(c);
}

_Noreturn void mfr_comm_abort(mfr_comm *c, int status)
{
#ifdef MFR_HAVE_MPI
	if (c && c->mpi && c->size > 1) {
		fflush(stderr);
		MPI_Abort(MPI_COMM_WORLD, status);
	}
#endif
	(void)c;
	exit(status);
}

int mfr_comm_rank(const mfr_comm *c) { return c->rank; }
int mfr_comm_size(const mfr_comm *c) { return c->size; }
const char *mfr_comm_describe(const mfr_comm *c) { return c->what; }

void mfr_comm_allreduce(mfr_comm *c, void *buf, size_t n, int dtype, int op)
{
	if (c->size == 1 || n == 0)
		return;
#ifdef MFR_HAVE_MPI
	size_t es = type_size(dtype);
	for (size_t off = 0; off < n; off += CHUNK) {
		size_t k = n - off < CHUNK ? n - off : CHUNK;
		check(c, MPI_Allreduce(MPI_IN_PLACE, (char *)buf + off * es, (int)k, mpi_type(dtype),
				       op == MFR_MAX ? MPI_MAX : MPI_SUM, MPI_COMM_WORLD), "allreduce");
	}
#else
	(void)buf, (void)dtype, (void)op;
#endif
}

void mfr_comm_allgather(mfr_comm *c, const void *in, void *out, size_t n, int dtype)
{
	size_t es = type_size(dtype);
	if (c->size == 1) {
		memmove(out, in, n * es);
		return;
	}
#ifdef MFR_HAVE_MPI
	if (n > CHUNK) { /* rare: per-rank blocks over 2^26 values, one root at a time */
		for (int r = 0; r < c->size; r++) {
			if (r == c->rank)
				memmove((char *)out + (size_t)r * n * es, in, n * es);
			mfr_comm_bcast(c, (char *)out + (size_t)r * n * es, n, dtype, r);
		}
		return;
	}
	check(c, MPI_Allgather(in, (int)n, mpi_type(dtype), out, (int)n, mpi_type(dtype), MPI_COMM_WORLD), "allgather");
#endif
}

void mfr_comm_bcast(mfr_comm *c, void *buf, size_t n, int dtype, int root)
{
	if (c->size == 1)
		return;
#ifdef MFR_HAVE_MPI
	size_t es = type_size(dtype);
	for (size_t off = 0; off < n; off += CHUNK) {
		size_t k = n - off < CHUNK ? n - off : CHUNK;
		check(c, MPI_Bcast((char *)buf + off * es, (int)k, mpi_type(dtype), root, MPI_COMM_WORLD), "bcast");
	}
#else
	(void)buf, (void)n, (void)dtype, (void)root;
#endif
}

#ifdef MFR_HAVE_MPI
static void send_chunks(mfr_comm *c, const void *p, size_t n, int dtype, int to)
{
	size_t es = type_size(dtype);
	for (size_t off = 0; off < n; off += CHUNK) {
		size_t k = n - off < CHUNK ? n - off : CHUNK;
		check(c, MPI_Send((const char *)p + off * es, (int)k, mpi_type(dtype), to, 7, MPI_COMM_WORLD), "send");
	}
}

static void recv_chunks(mfr_comm *c, void *p, size_t n, int dtype, int from)
{
	size_t es = type_size(dtype);
	for (size_t off = 0; off < n; off += CHUNK) {
		size_t k = n - off < CHUNK ? n - off : CHUNK;
		check(c, MPI_Recv((char *)p + off * es, (int)k, mpi_type(dtype), from, 7, MPI_COMM_WORLD,
				  MPI_STATUS_IGNORE), "recv");
	}
}
#endif

/* Moves each rank's part between its local buffer and rank 0's whole one:
 * gather (to_root) or scatter, parts in rank order, counts[r] values each. */
static void exchange(mfr_comm *c, void *local, void *whole, const int64_t *counts, int dtype, int to_root)
{
	size_t es = type_size(dtype);
	if (c->size == 1) {
		if (to_root)
			memmove(whole, local, (size_t)counts[0] * es);
		else
			memmove(local, whole, (size_t)counts[0] * es);
		return;
	}
#ifdef MFR_HAVE_MPI
	if (c->rank != 0) {
		if (to_root)
			send_chunks(c, local, (size_t)counts[c->rank], dtype, 0);
		else
			recv_chunks(c, local, (size_t)counts[c->rank], dtype, 0);
		return;
	}
	size_t off = 0;
	for (int r = 0; r < c->size; r++) {
		char *part = (char *)whole + off * es;
		if (r == 0 && to_root)
			memmove(part, local, (size_t)counts[0] * es);
		else if (r == 0)
			memmove(local, part, (size_t)counts[0] * es);
		else if (to_root)
			recv_chunks(c, part, (size_t)counts[r], dtype, r);
		else
			send_chunks(c, part, (size_t)counts[r], dtype, r);
		off += (size_t)counts[r];
	}
#endif
}

void mfr_comm_gatherv(mfr_comm *c, const void *in, void *out, const int64_t *counts, int dtype)
{
	exchange(c, (void *)in, out, counts, dtype, 1); /* read only: gathering never writes in */
}

void mfr_comm_scatterv(mfr_comm *c, const void *in, void *out, const int64_t *counts, int dtype)
{
	exchange(c, out, (void *)in, counts, dtype, 0); /* read only: scattering never writes in */
}

void mfr_comm_barrier(mfr_comm *c)
{
#ifdef MFR_HAVE_MPI
	if (c->mpi && c->size > 1)
		check(c, MPI_Barrier(MPI_COMM_WORLD), "barrier");
#else
	(void)c;
#endif
}
