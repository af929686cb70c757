/* emu_runtime.cpp — cuda-emu's runtime: the block scheduler (threads of a
 * block as cooperative fibers), __syncthreads and the warp intrinsics,
 * shared-memory poisoning, the device-memory registry (with host access to
 * device memory made an ASan error), lazy streams (per-stream queues of
 * deferred copies, memsets and collectives), and the CUDA runtime API. See
 * README.md for the model and what it does and does not catch.
 *
 * Environment:
 *   EMU_SCHED=fwd|rev|rand[:seed]  order of blocks and of threads within a
 *            block at every scheduling pass (default fwd);
 *   EMU_POISON=0xNN|off   byte that fresh device and shared memory is filled
 *            with (default 0xff: NaN in fp32/fp16/bf16, -1 in ints);
 *   EMU_HOSTCHECK=0       let host code touch device memory (default: ASan
 *            reports it as use-after-poison);
 *   EMU_MEM_MB=N          device memory size (default 8192);
 *   EMU_DEVICES=N         what cudaGetDeviceCount says (default 1; 0 tests
 *            the no-device paths);
 *   EMU_STACK_KB=N        stack of each emulated thread (default 256);
 *   EMU_VERBOSE=1         one line per kernel launch;
 *   EMU_LAZY=0            run every copy, memset and collective at once
 *            (default 1: lazy streams, see emu_defer). */
#include "emu.h"
#include "cublas_v2.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include <atomic>
#include <deque>
#include <map>
#include <mutex>
#include <string>
#include <vector>

#if defined(EMU_ASAN)
/* set by emu.mk: this file is built uninstrumented (fast), the program with ASan */
#elif defined(__SANITIZE_ADDRESS__)
#define EMU_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define EMU_ASAN 1
#endif
#endif
#ifdef EMU_ASAN
#include <sanitizer/asan_interface.h>
#include <sanitizer/common_interface_defs.h>
#endif

thread_local uint3 threadIdx;
thread_local uint3 blockIdx;
thread_local dim3 blockDim;
thread_local dim3 gridDim;
thread_local unsigned long emu_block_serial;

/* ---- configuration ---- */

namespace {

struct Config {
	int sched = 0; /* 0 fwd, 1 rev, 2 rand */
	unsigned long long seed = 1;
	int poison = 0xff; /* -1: off */
	int hostcheck = 1;
	size_t mem = (size_t)8192 << 20;
	int devices = 1;
	size_t stack = (size_t)256 << 10;
	int verbose = 0;
	int lazy = 1;
	int stats = 0;
};

Config cfg_load()
{
	Config c;
	const char *s = getenv("EMU_SCHED");
	if (s && !strcmp(s, "rev"))
		c.sched = 1;
	else if (s && !strncmp(s, "rand", 4)) {
		c.sched = 2;
		if (s[4] == ':')
			c.seed = strtoull(s + 5, NULL, 0) | 1;
	} else if (s && strcmp(s, "fwd") && s[0]) {
		fprintf(stderr, "cuda-emu: EMU_SCHED=%s is not fwd, rev or rand[:seed]\n", s);
		exit(2);
	}
	if ((s = getenv("EMU_POISON")))
		c.poison = !strcmp(s, "off") ? -1 : (int)(strtol(s, NULL, 0) & 0xff);
	if ((s = getenv("EMU_HOSTCHECK")))
		c.hostcheck = s[0] != '0';
	if ((s = getenv("EMU_MEM_MB")))
		c.mem = (size_t)strtoull(s, NULL, 0) << 20;
	if ((s = getenv("EMU_DEVICES")))
		c.devices = atoi(s);
	if ((s = getenv("EMU_STACK_KB")) && atoi(s) >= 16)
		c.stack = (size_t)atoi(s) << 10;
	if ((s = getenv("EMU_VERBOSE")))
		c.verbose = s[0] == '1';
	if ((s = getenv("EMU_LAZY")))
		c.lazy = s[0] != '0';
	if ((s = getenv("EMU_STATS")))
		c.stats = s[0] == '1';
	return c;
}

Config &cfg_mut()
{
	static Config c = cfg_load();
	return c;
}
const Config &cfg() { return cfg_mut(); }

} /* namespace */

void emu_set_sched(const char *spec)
{
	Config &c = cfg_mut();
	c.sched = !strcmp(spec, "rev") ? 1 : !strncmp(spec, "rand", 4) ? 2 : 0;
	if (c.sched == 2 && spec[4] == ':')
		c.seed = strtoull(spec + 5, NULL, 0) | 1;
}

const char *emu_sched_name(void) { return cfg().sched == 1 ? "rev" : cfg().sched == 2 ? "rand" : "fwd"; }

/* Line-buffered stdout: a test's lines must not sit in a buffer when a
 * sanitizer ends the process. */
static void where(char *buf, size_t len);

/* A sanitizer report from inside a kernel ends its stack at fiber_entry:
 * say which launch, block and thread it was. */
static void on_death(void)
{
	char ctx[512];
	where(ctx, sizeof ctx);
	fprintf(stderr, "cuda-emu: the process dies in %s\n", ctx);
}

static void pending_at_exit(void);

__attribute__((constructor)) static void emu_init(void)
{
	setvbuf(stdout, NULL, _IOLBF, 0);
	(void)cfg();
	atexit(pending_at_exit);
#ifdef EMU_ASAN
	__sanitizer_set_death_callback(on_death);
#endif
}

/* ---- the scheduler's state (per host thread) ---- */

namespace {

enum { F_NEW, F_READY, F_RUN, F_BAR, F_WARP, F_DONE };

struct Fiber {
	void *sp = nullptr;
	char *stack = nullptr; /* lowest usable byte (a guard page below) */
	size_t size = 0;
	int state = F_DONE;
	unsigned lin = 0;
	uint3 tid{0, 0, 0};
	const char *wfile = nullptr;
	int wline = 0;
	void *fake = nullptr;
};

struct Warp {
	unsigned lanes, exited, arrived, mask;
	int kind;
	unsigned gen;
	const char *file;
	int line;
	unsigned long long slot[2][32];
};

struct Sched {
	int in_kernel = 0;
	void (*body)(void *) = nullptr;
	void *ctx = nullptr;
	void *sched_sp = nullptr;
	const void *sched_bottom = nullptr;
	size_t sched_size = 0;
	Fiber *cur = nullptr;
	std::vector<Fiber> fib;
	std::vector<Warp> warps;
	std::vector<unsigned> order;
	int n = 0, alive = 0, arrived = 0, exited = 0;
	/* the scheduling position (pick_next): warp order, lane order */
	std::vector<unsigned> word;
	int nw = 0, wi = 0, w = 0, lanes = 0, li = 0, ran = 0, progress = 0;
	int from_sched = 0; /* the next fiber entered is entered from the scheduler */
	int mode = 0;       /* cfg().sched of this launch */
	unsigned bgen = 0;
	int bcount[2] = {0, 0};
	const char *bfile = nullptr;
	int bline = 0;
	/* the launch */
	const char *kname = "", *kfile = "";
	int kline = 0;
	size_t dyn_bytes = 0, static_bytes = 0, shared_limit = 0;
	unsigned char *dyn = nullptr;
	unsigned long long rng = 1;
};

thread_local Sched *S;

Sched *sched()
{
	if (!S)
		S = new Sched;
	return S;
}

unsigned long long rnd(Sched *s)
{
	s->rng ^= s->rng << 13;
	s->rng ^= s->rng >> 7;
	s->rng ^= s->rng << 17;
	return s->rng;
}

} /* namespace */

static void where(char *buf, size_t len)
{
	Sched *s = S;
	if (!s || !s->in_kernel) {
		snprintf(buf, len, "host code");
		return;
	}
	if (s->cur)
		snprintf(buf, len, "kernel %s (launched at %s:%d), block (%u,%u,%u), thread (%u,%u,%u)", s->kname,
			 s->kfile, s->kline, blockIdx.x, blockIdx.y, blockIdx.z, threadIdx.x, threadIdx.y, threadIdx.z);
	else
		snprintf(buf, len, "kernel %s (launched at %s:%d), block (%u,%u,%u)", s->kname, s->kfile, s->kline,
			 blockIdx.x, blockIdx.y, blockIdx.z);
}

namespace {

/* Warnings: once per (message, site). */
std::mutex warn_mu;
std::map<std::string, int> *warned;

} /* namespace */

void emu_fatal(const char *fmt, ...)
{
	char ctx[512];
	va_list ap;
	where(ctx, sizeof ctx);
	fflush(stdout);
	fprintf(stderr, "cuda-emu: ERROR: ");
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fprintf(stderr, "\n    in %s\n", ctx);
#ifdef EMU_ASAN
	__sanitizer_print_stack_trace();
#endif
	fflush(stderr);
	abort();
}

void emu_note(const char *fmt, ...)
{
	char ctx[512];
	va_list ap;
	where(ctx, sizeof ctx);
	fflush(stdout);
	fprintf(stderr, "cuda-emu: ");
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fprintf(stderr, " [%s]\n", ctx);
}

static void emu_warn_once(const char *key, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void emu_warn_once(const char *key, const char *fmt, ...)
{
	{
		std::lock_guard<std::mutex> l(warn_mu);
		if (!warned)
			warned = new std::map<std::string, int>;
		if ((*warned)[key]++)
			return;
	}
	char ctx[512];
	va_list ap;
	where(ctx, sizeof ctx);
	fflush(stdout);
	fprintf(stderr, "cuda-emu: WARNING: ");
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fprintf(stderr, "\n    in %s (reported once)\n", ctx);
}

/* ---- fibers: a minimal x86-64 context switch (callee-saved registers,
 * MXCSR and the x87 control word), with ASan told about every stack switch ---- */

#if defined(__x86_64__)
extern "C" void emu_ctx_switch(void **save_sp, void *new_sp);
asm(".text\n"
    ".globl emu_ctx_switch\n"
    ".hidden emu_ctx_switch\n"
    ".type emu_ctx_switch,@function\n"
    "emu_ctx_switch:\n"
    "	pushq %rbp\n"
    "	pushq %rbx\n"
    "	pushq %r12\n"
    "	pushq %r13\n"
    "	pushq %r14\n"
    "	pushq %r15\n"
    "	subq $8, %rsp\n"
    "	stmxcsr (%rsp)\n"
    "	fnstcw 4(%rsp)\n"
    "	movq %rsp, (%rdi)\n"
    "	movq %rsi, %rsp\n"
    "	ldmxcsr (%rsp)\n"
    "	fldcw 4(%rsp)\n"
    "	addq $8, %rsp\n"
    "	popq %r15\n"
    "	popq %r14\n"
    "	popq %r13\n"
    "	popq %r12\n"
    "	popq %rbx\n"
    "	popq %rbp\n"
    "	ret\n"
    ".size emu_ctx_switch,.-emu_ctx_switch\n");
#else
#error "cuda-emu: the fiber switch is written for x86-64 only"
#endif

namespace {

inline void asan_start(void **fake, const void *bottom, size_t size)
{
#ifdef EMU_ASAN
	__sanitizer_start_switch_fiber(fake, bottom, size);
#else
	(void)fake, (void)bottom, (void)size;
#endif
}
inline void asan_finish(void *fake, const void **bottom_old, size_t *size_old)
{
#ifdef EMU_ASAN
	__sanitizer_finish_switch_fiber(fake, bottom_old, size_old);
#else
	(void)fake, (void)bottom_old, (void)size_old;
#endif
}

void fiber_exit(Sched *s, Fiber *f);

/* Where a new fiber starts: reached by emu_ctx_switch's ret. Never
 * returns, so its frame (and those of fiber_exit and switch_from below it
 * at the end) is never unpoisoned by ASan: no redzones here, and
 * fiber_prepare clears the top of a reused stack. */
__attribute__((noreturn, no_sanitize_address)) void fiber_entry()
{
	Sched *s = S;
	const void *bottom = nullptr;
	size_t size = 0;
	asan_finish(nullptr, &bottom, &size);
	if (s->from_sched) { /* remember the scheduler's stack for switching back */
		s->sched_bottom = bottom;
		s->sched_size = size;
		s->from_sched = 0;
	}
	Fiber *f = s->cur;
	s->body(s->ctx);
	fiber_exit(s, f);
	__builtin_unreachable();
}

void fiber_stack(Fiber *f)
{
	if (f->stack)
		return;
	size_t page = (size_t)sysconf(_SC_PAGESIZE), size = cfg().stack;
	char *m = (char *)mmap(NULL, size + page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE,
			       -1, 0);
	if (m == MAP_FAILED)
		emu_fatal("cannot map a %zu-byte thread stack: %s", size, strerror(errno));
	mprotect(m, page, PROT_NONE); /* overflow faults instead of corrupting the next stack */
	f->stack = m + page;
	f->size = size;
}

void fiber_prepare(Fiber *f)
{
	fiber_stack(f);
	uintptr_t top = ((uintptr_t)f->stack + f->size) & ~(uintptr_t)15;
#ifdef EMU_ASAN
	__asan_unpoison_memory_region((void *)(top - 4096), 4096);
#endif
	uint64_t *sp = (uint64_t *)top;
	*--sp = 0;                        /* a return address for fiber_entry's frame: keeps the ABI alignment */
	*--sp = (uint64_t)(uintptr_t)&fiber_entry;
	for (int i = 0; i < 6; i++)
		*--sp = 0;                /* rbp (0 ends frame-pointer unwinding), rbx, r12-r15 */
	uint32_t mx;
	uint16_t cw;
	asm volatile("stmxcsr %0" : "=m"(mx));
	asm volatile("fnstcw %0" : "=m"(cw));
	*--sp = (uint64_t)mx | (uint64_t)cw << 32;
	f->sp = sp;
}

int runnable(const Fiber *f) { return f->state == F_NEW || f->state == F_READY; }

void lane_order(Sched *s)
{
	s->lanes = s->n - 32 * s->w < 32 ? s->n - 32 * s->w : 32;
	s->li = 0;
	s->ran = 0;
	if (s->mode == 2) {
		for (int l = 0; l < s->lanes; l++)
			s->order[l] = (unsigned)l;
		for (int i = s->lanes - 1; i > 0; i--)
			std::swap(s->order[i], s->order[rnd(s) % (unsigned long long)(i + 1)]);
	}
}

void warp_order(Sched *s)
{
	for (int i = 0; i < s->nw; i++)
		s->word[i] = s->mode == 1 ? (unsigned)(s->nw - 1 - i) : (unsigned)i;
	if (s->mode == 2)
		for (int i = s->nw - 1; i > 0; i--)
			std::swap(s->word[i], s->word[rnd(s) % (unsigned long long)(i + 1)]);
	s->wi = 0;
	s->progress = 0;
	s->w = (int)s->word[0];
	lane_order(s);
}

/* The scheduling policy, as a generator: warp-major and depth first. Each
 * warp in turn (forward, reverse or random order) runs its lanes round
 * robin, each until it blocks, until a whole pass over the warp finds no
 * lane that can run (all wait at __syncthreads or have exited); then the
 * next warp. When a round over all warps ran nothing, NULL: the block is
 * done (alive == 0) or deadlocked. A warp thus gets from one block barrier
 * to the next before any other warp moves: the largest skew CUDA allows, so
 * a missing __syncthreads between warps shows in one of the two orders. */
Fiber *pick_next(Sched *s)
{
	for (;;) {
		while (s->li < s->lanes) {
			int l = s->li++;
			unsigned lane = s->mode == 2 ? s->order[l] : s->mode == 1 ? (unsigned)(s->lanes - 1 - l) : (unsigned)l;
			Fiber *f = &s->fib[32 * s->w + lane];
			if (runnable(f)) {
				s->ran = 1;
				return f;
			}
		}
		if (s->ran) { /* another pass over the same warp */
			s->progress = 1;
			lane_order(s);
			continue;
		}
		if (++s->wi < s->nw) {
			s->w = (int)s->word[s->wi];
			lane_order(s);
			continue;
		}
		if (!s->progress) {
			warp_order(s);
			return nullptr;
		}
		warp_order(s);
	}
}

/* Switches from the running fiber f (its state set) to the next one, or
 * back to the scheduler when there is none; returns when f runs again.
 * gone: f has ended (its stack is dead). */
void switch_from(Sched *s, Fiber *f, int gone)
{
	Fiber *nx = pick_next(s);
	if (nx == f) { /* released and next in order: keep running */
		f->state = F_RUN;
		return;
	}
	if (nx) {
		if (nx->state == F_NEW)
			fiber_prepare(nx);
		nx->state = F_RUN;
		s->cur = nx;
		threadIdx = nx->tid;
		asan_start(gone ? nullptr : &f->fake, nx->stack, nx->size);
	} else {
		s->cur = nullptr;
		asan_start(gone ? nullptr : &f->fake, s->sched_bottom, s->sched_size);
	}
	emu_ctx_switch(&f->sp, nx ? nx->sp : s->sched_sp);
	/* f runs again: whoever switched here set s->cur and threadIdx */
	asan_finish(f->fake, nullptr, nullptr);
}

/* Scheduler side: runs the block's fibers until none can run. */
void run_fibers(Sched *s)
{
	Fiber *f = pick_next(s);
	if (!f)
		return;
	if (f->state == F_NEW)
		fiber_prepare(f);
	f->state = F_RUN;
	s->cur = f;
	threadIdx = f->tid;
	s->from_sched = 1;
	void *fake = nullptr;
	asan_start(&fake, f->stack, f->size);
	emu_ctx_switch(&s->sched_sp, f->sp);
	asan_finish(fake, nullptr, nullptr);
	s->cur = nullptr;
}

/* Fiber side: block (state already set) until released. */
void yield(Sched *s, Fiber *f) { switch_from(s, f, 0); }

const char *kind_name(int k)
{
	static const char *n[] = {"__shfl_sync", "__shfl_up_sync", "__shfl_down_sync", "__shfl_xor_sync",
				  "__syncwarp", "__ballot_sync", "__any_sync", "__all_sync"};
	return k >= 0 && k < 8 ? n[k] : "?";
}
enum { K_SYNCWARP = 4, K_BALLOT = 5, K_ANY = 6, K_ALL = 7 };

void release_block(Sched *s)
{
	if (s->exited > 0)
		emu_warn_once((std::string("exitbar:") + s->bfile + ":" + std::to_string(s->bline)).c_str(),
			      "__syncthreads at %s:%d completed with %d of the block's %d threads already exited "
			      "(a barrier in divergent code: undefined behaviour in CUDA)",
			      s->bfile, s->bline, s->exited, s->n);
	for (int i = 0; i < s->n; i++)
		if (s->fib[i].state == F_BAR)
			s->fib[i].state = F_READY;
	s->arrived = 0;
	s->bgen++;
	s->bcount[s->bgen & 1] = 0;
}

void fiber_exit(Sched *s, Fiber *f)
{
	f->state = F_DONE;
	s->alive--;
	s->exited++;
	Warp &W = s->warps[f->lin >> 5];
	unsigned bit = 1u << (f->lin & 31);
	W.exited |= bit;
	if (W.arrived && (W.mask & bit))
		emu_fatal("thread exits while lanes 0x%08x of its warp wait in %s (mask 0x%08x, %s:%d) for it",
			  W.arrived, kind_name(W.kind), W.mask, W.file, W.line);
	if (s->arrived > 0 && s->arrived == s->alive)
		release_block(s);
	switch_from(s, f, 1);
	__builtin_unreachable();
}

inline Sched *in_kernel(const char *what)
{
	Sched *s = S;
	if (__builtin_expect(!s || !s->in_kernel || !s->cur, 0))
		emu_fatal("%s called outside a kernel", what);
	return s;
}
inline Sched *in_kernel_k(int kind)
{
	Sched *s = S;
	if (__builtin_expect(!s || !s->in_kernel || !s->cur, 0))
		emu_fatal("%s called outside a kernel", kind_name(kind));
	return s;
}

int block_barrier(int pred, const char *file, int line)
{
	Sched *s = in_kernel("__syncthreads");
	Fiber *f = s->cur;
	if (s->arrived == 0) {
		s->bfile = file;
		s->bline = line;
	} else if (s->bline != line || (s->bfile != file && strcmp(s->bfile, file)))
		emu_warn_once((std::string("divbar:") + file + ":" + std::to_string(line)).c_str(),
			      "threads of one block wait at different __syncthreads: %s:%d and %s:%d "
			      "(divergent barriers: undefined behaviour in CUDA)",
			      s->bfile, s->bline, file, line);
	int p = s->bgen & 1;
	s->bcount[p] += pred != 0;
	s->arrived++;
	f->state = F_BAR;
	f->wfile = file;
	f->wline = line;
	if (s->arrived == s->alive)
		release_block(s);
	yield(s, f);
	return s->bcount[p];
}

/* Every lane of mask deposits v; returns the phase's slot array. */
const unsigned long long *warp_phase(int kind, unsigned mask, unsigned long long v, const char *file, int line,
				     unsigned *lane_out)
{
	Sched *s = in_kernel_k(kind);
	Fiber *f = s->cur;
	unsigned lane = f->lin & 31, bit = 1u << lane;
	Warp &W = s->warps[f->lin >> 5];
	if (!(mask & bit))
		emu_fatal("%s at %s:%d: mask 0x%08x does not include the calling lane %u", kind_name(kind), file, line,
			  mask, lane);
	if (mask & ~W.lanes)
		emu_fatal("%s at %s:%d: mask 0x%08x names lanes that do not exist (this warp of a %d-thread block "
			  "has lanes 0x%08x)",
			  kind_name(kind), file, line, mask, s->n, W.lanes);
	if (mask & W.exited)
		emu_fatal("%s at %s:%d: mask 0x%08x names lanes that have exited (0x%08x): they never arrive",
			  kind_name(kind), file, line, mask, mask & W.exited);
	if (W.arrived == 0) {
		W.mask = mask;
		W.kind = kind;
		W.file = file;
		W.line = line;
	} else if (W.mask != mask || W.kind != kind)
		emu_fatal("lanes of one warp disagree: lane %u calls %s (mask 0x%08x) at %s:%d while lanes 0x%08x wait "
			  "in %s (mask 0x%08x) at %s:%d",
			  lane, kind_name(kind), mask, file, line, W.arrived, kind_name(W.kind), W.mask, W.file, W.line);
	int p = W.gen & 1;
	W.slot[p][lane] = v;
	W.arrived |= bit;
	f->state = F_WARP;
	f->wfile = file;
	f->wline = line;
	if (W.arrived == W.mask) {
		unsigned base = f->lin & ~31u;
		for (unsigned l = 0; l < 32; l++)
			if (mask >> l & 1)
				s->fib[base + l].state = F_READY;
		W.arrived = 0;
		W.gen++;
	}
	yield(s, f);
	*lane_out = lane;
	return W.slot[p];
}

void deadlock(Sched *s)
{
	char msg[4096];
	size_t o = 0;
	o += (size_t)snprintf(msg + o, sizeof msg - o, "deadlock: %d of %d threads alive, none can run;", s->alive, s->n);
	if (s->arrived)
		o += (size_t)snprintf(msg + o, sizeof msg - o, " %d wait at __syncthreads (%s:%d);", s->arrived,
				      s->bfile, s->bline);
	for (size_t w = 0; w < s->warps.size() && o < sizeof msg - 200; w++) {
		Warp &W = s->warps[w];
		if (W.arrived)
			o += (size_t)snprintf(msg + o, sizeof msg - o,
					      " warp %zu: lanes 0x%08x wait in %s (mask 0x%08x, %s:%d), lanes 0x%08x "
					      "of the mask are elsewhere;",
					      w, W.arrived, kind_name(W.kind), W.mask, W.file, W.line, W.mask & ~W.arrived);
	}
	emu_fatal("%s", msg);
}

void run_block(Sched *s)
{
	int n = s->n;
	for (int i = 0; i < n; i++) {
		Fiber &f = s->fib[i];
		f.state = F_NEW;
		f.lin = (unsigned)i;
		f.tid = uint3{(unsigned)i % blockDim.x, (unsigned)i / blockDim.x % blockDim.y,
			      (unsigned)i / (blockDim.x * blockDim.y)};
	}
	int nw = (n + 31) / 32;
	for (int w = 0; w < nw; w++) {
		Warp &W = s->warps[w];
		int k = n - 32 * w < 32 ? n - 32 * w : 32;
		W.lanes = k == 32 ? 0xffffffffu : (1u << k) - 1;
		W.exited = W.arrived = W.mask = 0;
		W.gen = 0;
	}
	s->alive = n;
	s->arrived = s->exited = 0;
	s->bgen = 0;
	s->bcount[0] = s->bcount[1] = 0;
	s->nw = nw;
	s->word.resize((size_t)nw);
	s->order.resize(32);
	warp_order(s);
	run_fibers(s);
	if (s->alive > 0)
		deadlock(s);
}

} /* namespace */

/* ---- the device-side API ---- */

void __syncthreads(const char *file, int line) { block_barrier(0, file, line); }
int __syncthreads_count(int pred, const char *file, int line) { return block_barrier(pred, file, line); }
int __syncthreads_and(int pred, const char *file, int line)
{
	Sched *s = in_kernel("__syncthreads_and");
	return block_barrier(pred, file, line) == s->alive;
}
int __syncthreads_or(int pred, const char *file, int line) { return block_barrier(pred, file, line) > 0; }

unsigned long long emu_shfl(int kind, unsigned mask, unsigned long long v, int arg, int width, const char *file,
			    int line)
{
	if (width < 1 || width > 32 || (width & (width - 1)))
		emu_fatal("%s at %s:%d: width %d is not a power of two in [1, 32]", kind_name(kind), file, line, width);
	unsigned lane;
	const unsigned long long *slot = warp_phase(kind, mask, v, file, line, &lane);
	unsigned seg = lane & ~(unsigned)(width - 1), l = lane & (unsigned)(width - 1), src = lane;
	switch (kind) {
	case EMU_SHFL_IDX: src = seg + (unsigned)(((arg % width) + width) % width); break;
	case EMU_SHFL_UP: src = (int)l >= arg ? lane - (unsigned)arg : lane; break;
	case EMU_SHFL_DOWN: src = l + (unsigned)arg < (unsigned)width ? lane + (unsigned)arg : lane; break;
	default: {
		unsigned t = lane ^ (unsigned)arg;
		src = t >= 32 || t >= seg + (unsigned)width ? lane : t;
	}
	}
	if (!(mask >> src & 1))
		emu_fatal("%s at %s:%d: lane %u reads lane %u, which is not in mask 0x%08x (undefined value)",
			  kind_name(kind), file, line, lane, src, mask);
	return slot[src];
}

void __syncwarp(unsigned mask, const char *file, int line)
{
	unsigned lane;
	warp_phase(K_SYNCWARP, mask, 0, file, line, &lane);
}

static unsigned vote(int kind, unsigned mask, int pred, const char *file, int line)
{
	unsigned lane, b = 0;
	const unsigned long long *slot = warp_phase(kind, mask, pred != 0, file, line, &lane);
	for (int l = 0; l < 32; l++)
		if ((mask >> l & 1) && slot[l])
			b |= 1u << l;
	return b;
}
unsigned __ballot_sync(unsigned mask, int pred, const char *file, int line) { return vote(K_BALLOT, mask, pred, file, line); }
int __any_sync(unsigned mask, int pred, const char *file, int line) { return vote(K_ANY, mask, pred, file, line) != 0; }
int __all_sync(unsigned mask, int pred, const char *file, int line)
{
	return vote(K_ALL, mask, pred, file, line) == mask;
}
unsigned __activemask(void)
{
	Sched *s = in_kernel("__activemask");
	Warp &W = s->warps[s->cur->lin >> 5];
	return W.lanes & ~W.exited;
}

long long clock64(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return (long long)t.tv_sec * 1000000000LL + t.tv_nsec;
}

void emu_shared_new(void *p, size_t bytes, const char *name, const char *file, int line)
{
	Sched *s = in_kernel("__shared__");
	s->static_bytes += bytes;
	if (s->static_bytes > 49152)
		emu_fatal("static __shared__ memory of the kernel reaches %zu bytes with %s (%s:%d): more than the "
			  "48 KiB nvcc allows",
			  s->static_bytes, name, file, line);
	if (s->static_bytes + s->dyn_bytes > s->shared_limit)
		emu_fatal("static (%zu) + dynamic (%zu) shared memory exceeds the kernel's limit of %zu bytes "
			  "(cudaFuncSetAttribute MaxDynamicSharedMemorySize raises it): the launch fails on a device",
			  s->static_bytes, s->dyn_bytes, s->shared_limit);
	if (cfg().poison >= 0)
		memset(p, cfg().poison, bytes);
}

void *emu_dyn_shared(void)
{
	Sched *s = in_kernel("extern __shared__");
	return s->dyn;
}

/* ---- device memory ---- */

namespace {

struct Alloc {
	size_t size;
	int host; /* 1: cudaMallocHost */
};

std::mutex mem_mu;
std::map<uintptr_t, Alloc> *allocs;
size_t dev_used;
int opened; /* device memory open for host-side access (inside kernels and calls) */

std::map<uintptr_t, Alloc> &A()
{
	if (!allocs)
		allocs = new std::map<uintptr_t, Alloc>;
	return *allocs;
}

/* The allocation holding [p, p + n) (n = 0: p may be its end), or NULL. */
const std::pair<const uintptr_t, Alloc> *find(const void *p, size_t n)
{
	uintptr_t a = (uintptr_t)p;
	auto it = A().upper_bound(a);
	if (it == A().begin())
		return nullptr;
	--it;
	if (a < it->first || a - it->first > it->second.size || n > it->second.size - (a - it->first))
		return nullptr;
	return &*it;
}

void poison_dev(uintptr_t base, size_t size, int on)
{
#ifdef EMU_ASAN
	if (!cfg().hostcheck || size == 0)
		return;
	if (on)
		__asan_poison_memory_region((void *)base, size);
	else
		__asan_unpoison_memory_region((void *)base, size);
#else
	(void)base, (void)size, (void)on;
#endif
}

thread_local cudaError_t last_error = cudaSuccess;

cudaError_t ret(cudaError_t e)
{
	if (e != cudaSuccess)
		last_error = e;
	return e;
}

/* Opens every device allocation for the duration of a kernel or copy. */
struct Open {
	int was;
	Open()
	{
		std::lock_guard<std::mutex> l(mem_mu);
		was = opened++;
		if (!was)
			for (auto &a : A())
				if (!a.second.host)
					poison_dev(a.first, a.second.size, 0);
	}
	~Open()
	{
		std::lock_guard<std::mutex> l(mem_mu);
		if (!--opened)
			for (auto &a : A())
				if (!a.second.host)
					poison_dev(a.first, a.second.size, 1);
	}
};

/* Library calls: opened until emu_device_close_all. */
Open *lib_open;

} /* namespace */

int emu_check_device_range(const void *p, size_t bytes, const char *what)
{
	std::lock_guard<std::mutex> l(mem_mu);
	if (find(p, bytes))
		return 1;
	auto *near = find(p, 0);
	if (near)
		emu_note("%s: [%p, +%zu) runs past the end of its allocation [%p, +%zu)", what, p, bytes,
			 (void *)near->first, near->second.size);
	else
		emu_note("%s: %p is not in any live device allocation", what, p);
	return 0;
}

void emu_device_open(const void *p)
{
	(void)p;
	if (!lib_open)
		lib_open = new Open;
}

void emu_device_close_all(void)
{
	delete lib_open;
	lib_open = nullptr;
}

/* ---- launches ---- */

namespace {
std::map<const void *, int> *dyn_attr;
}

int emu_launch_begin(const emu_cfg &c, const void *kernel, const char *name, const char *file, int line,
		     const void *const *ptrs, const int *ptr_index, int nptr)
{
	Sched *s = sched();
	if (s->in_kernel)
		emu_fatal("kernel %s launched from device code at %s:%d (dynamic parallelism is not emulated)", name,
			  file, line);
	const dim3 &g = c.grid, &b = c.block;
	unsigned long long nt = (unsigned long long)b.x * b.y * b.z;
	if (!g.x || !g.y || !g.z || !b.x || !b.y || !b.z || b.x > 1024 || b.y > 1024 || b.z > 64 || nt > 1024 ||
	    g.x > 2147483647u || g.y > 65535 || g.z > 65535) {
		emu_note("launch of %s at %s:%d fails: invalid configuration (grid %u x %u x %u, block %u x %u x %u)",
			 name, file, line, g.x, g.y, g.z, b.x, b.y, b.z);
		ret(cudaErrorInvalidConfiguration);
		return 1;
	}
	int limit = 49152;
	if (dyn_attr) {
		auto it = dyn_attr->find(kernel);
		if (it != dyn_attr->end() && it->second > 0)
			limit = it->second;
	}
	if (c.shmem > (size_t)limit) {
		emu_note("launch of %s at %s:%d fails: %zu bytes of dynamic shared memory, the limit is %d", name, file,
			 line, c.shmem, limit);
		ret(cudaErrorInvalidValue);
		return 1;
	}
	if (!emu_stream_ok(c.stream)) {
		emu_note("launch of %s at %s:%d fails: invalid stream %p", name, file, line, (void *)c.stream);
		ret(cudaErrorInvalidResourceHandle);
		return 1;
	}
	{
		std::lock_guard<std::mutex> l(mem_mu);
		for (int i = 0; i < nptr; i++)
			if (ptrs[i] && !find(ptrs[i], 0)) {
				mem_mu.unlock();
				emu_fatal("launch of %s at %s:%d: argument %d (%p) is not device memory (a host pointer, "
					  "freed memory, or past an allocation's end): the kernel would fault on a device",
					  name, file, line, ptr_index[i] + 1, ptrs[i]);
			}
	}
	s->kname = name;
	s->kfile = file;
	s->kline = line;
	s->shared_limit = (size_t)(limit > 49152 ? limit : 49152);
	if (cfg().verbose)
		fprintf(stderr, "cuda-emu: launch %s at %s:%d grid %u x %u x %u block %u x %u x %u shmem %zu\n", name,
			file, line, g.x, g.y, g.z, b.x, b.y, b.z, c.shmem);
	emu_stream_flush(c.stream);
	return 0;
}

static std::atomic<long> counts[EMU_N_KINDS];

static void stats_print(void)
{
	fprintf(stderr, "cuda-emu stats: %ld kernel launches, %ld library calls (cuDNN/cuBLAS), %ld host waits\n",
		counts[EMU_N_KERNEL].load(), counts[EMU_N_LIB].load(), counts[EMU_N_WAIT].load());
}

void emu_count(int kind)
{
	static std::atomic<int> armed;
	if (!cfg().stats || kind < 0 || kind >= EMU_N_KINDS)
		return;
	if (!armed.exchange(1))
		atexit(stats_print);
	counts[kind]++;
}

void emu_launch_run(const emu_cfg &c, void (*body)(void *), void *ctx)
{
	emu_count(EMU_N_KERNEL);
	Sched *s = sched();
	Open open_;
	s->in_kernel = 1;
	s->body = body;
	s->ctx = ctx;
	blockDim = c.block;
	gridDim = c.grid;
	s->n = (int)(c.block.x * c.block.y * c.block.z);
	if ((int)s->fib.size() < s->n)
		s->fib.resize((size_t)s->n);
	s->warps.resize((size_t)(s->n + 31) / 32);
	s->dyn_bytes = c.shmem;
	s->dyn = c.shmem ? (unsigned char *)malloc(c.shmem) : nullptr;
	s->rng = cfg().seed;
	s->mode = cfg().sched;
	unsigned long long nb = (unsigned long long)c.grid.x * c.grid.y * c.grid.z;
	std::vector<unsigned long long> border;
	if (cfg().sched == 2) {
		border.resize(nb);
		for (unsigned long long i = 0; i < nb; i++)
			border[i] = i;
		for (unsigned long long i = nb - 1; i > 0 && nb > 1; i--)
			std::swap(border[i], border[rnd(s) % (i + 1)]);
	}
	for (unsigned long long k = 0; k < nb; k++) {
		unsigned long long b = cfg().sched == 0 ? k : cfg().sched == 1 ? nb - 1 - k : border[k];
		blockIdx = uint3{(unsigned)(b % c.grid.x), (unsigned)(b / c.grid.x % c.grid.y),
				 (unsigned)(b / ((unsigned long long)c.grid.x * c.grid.y))};
		emu_block_serial++;
		s->static_bytes = 0;
		if (s->dyn && cfg().poison >= 0)
			memset(s->dyn, cfg().poison, c.shmem);
		run_block(s);
	}
	free(s->dyn);
	s->dyn = nullptr;
	s->in_kernel = 0;
	threadIdx = uint3{0, 0, 0};
	blockIdx = uint3{0, 0, 0};
}

/* ---- the runtime API ---- */

namespace {

std::map<cudaStream_t, int> *streams;
std::map<cudaEvent_t, double> *events;
int current_device;

double now_ms()
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return (double)t.tv_sec * 1e3 + (double)t.tv_nsec * 1e-6;
}

} /* namespace */

/* ---- lazy streams: every stream (the legacy default stream included) has
 * a FIFO of deferred operations, each numbered in the order it was queued
 * (seq). An operation runs after what it waits for: the earlier ones of its
 * stream; under legacy default-stream semantics, for an operation of the
 * legacy stream the earlier ones of every blocking stream (created without
 * cudaStreamNonBlocking), and for one of a blocking stream the earlier ones
 * of the legacy stream; and the earlier ones of its key. lazy_mu guards the
 * queues, the events' positions and async_err; it is held while operations
 * run (a collective of one thread may block in MPI), and taken before
 * mem_mu. ---- */

namespace {

struct Deferred {
	unsigned long long seq;
	std::string what;
	const void *key;
	std::function<cudaError_t()> fn;
};

} /* namespace */

struct emu_stream {
	unsigned flags;
	int legacy; /* 1: the legacy default stream (0, cudaStreamLegacy, cudaStreamPerThread) */
	std::deque<Deferred> q;
};
struct emu_event {
	double t;
	emu_stream *s;          /* the stream it was last recorded on; NULL: never, or destroyed since */
	unsigned long long seq; /* the operations of s queued before the record are those with a lower seq */
};

namespace {

std::recursive_mutex lazy_mu;
unsigned long long next_seq = 1;
cudaError_t async_err = cudaSuccess; /* the first failure of a deferred operation since the last synchronisation */

/* The legacy default stream; cudaStreamPerThread is taken as the same. */
emu_stream *legacy_stream()
{
	static emu_stream *l = new emu_stream{0, 1, {}};
	return l;
}

/* The queue of handle s (valid, per emu_stream_ok). */
emu_stream *stream_of(cudaStream_t s)
{
	return !s || s == cudaStreamLegacy || s == cudaStreamPerThread ? legacy_stream() : s;
}

int blocking(const emu_stream *s) { return !s->legacy && !(s->flags & cudaStreamNonBlocking); }

/* Every stream: the legacy one and the live created ones. */
std::vector<emu_stream *> live_streams()
{
	std::vector<emu_stream *> v{legacy_stream()};
	std::lock_guard<std::mutex> l(mem_mu);
	if (streams)
		for (auto &x : *streams)
			v.push_back(x.first);
	return v;
}

/* s and the streams whose earlier operations an operation of s waits for. */
std::vector<emu_stream *> peers(emu_stream *s)
{
	std::vector<emu_stream *> v{s};
	if (s->legacy) {
		for (emu_stream *o : live_streams())
			if (blocking(o))
				v.push_back(o);
	} else if (blocking(s))
		v.push_back(legacy_stream());
	return v;
}

void run_op(emu_stream *s, Deferred &d);

/* Runs, oldest first, the operations of the streams in set queued before
 * upto (each after what it waits for). */
void drain(const std::vector<emu_stream *> &set, unsigned long long upto)
{
	for (;;) {
		emu_stream *best = nullptr;
		for (emu_stream *s : set)
			if (!s->q.empty() && s->q.front().seq < upto && (!best || s->q.front().seq < best->q.front().seq))
				best = s;
		if (!best)
			return;
		Deferred d = std::move(best->q.front());
		best->q.pop_front();
		run_op(best, d);
	}
}

/* Runs the operations of key queued before upto, each up to and with it
 * on its stream. */
void drain_key(const void *key, unsigned long long upto)
{
	for (;;) {
		emu_stream *at = nullptr;
		unsigned long long seq = upto;
		for (emu_stream *s : live_streams())
			for (const Deferred &d : s->q)
				if (d.key == key && d.seq < seq) {
					at = s;
					seq = d.seq;
				}
		if (!at)
			return;
		drain({at}, seq + 1);
	}
}

/* Runs d (already off its queue) after what it waits for, with device
 * memory open; a failure becomes the pending asynchronous error. */
void run_op(emu_stream *s, Deferred &d)
{
	drain(peers(s), d.seq);
	if (d.key)
		drain_key(d.key, d.seq);
	cudaError_t e;
	{
		Open o;
		e = d.fn();
	}
	if (e != cudaSuccess) {
		emu_note("%s failed when it ran: %s (reported by the next synchronisation)", d.what.c_str(),
			 cudaGetErrorName(e));
		if (async_err == cudaSuccess)
			async_err = e;
		ret(e);
	}
}

/* Runs everything queued on every stream, oldest first. */
void flush_all()
{
	std::lock_guard<std::recursive_mutex> l(lazy_mu);
	drain(live_streams(), ~0ull);
}

/* The result of a synchronising call: the pending asynchronous error (made
 * the last error), which it clears, or cudaSuccess. */
cudaError_t sync_result()
{
	std::lock_guard<std::recursive_mutex> l(lazy_mu);
	cudaError_t e = async_err;
	async_err = cudaSuccess;
	return ret(e);
}

} /* namespace */

void emu_defer(cudaStream_t st, const char *what, const void *key, std::function<cudaError_t()> fn)
{
	std::lock_guard<std::recursive_mutex> l(lazy_mu);
	emu_stream *s = stream_of(st);
	Deferred d{next_seq++, what, key, std::move(fn)};
	if (cfg().lazy)
		s->q.push_back(std::move(d));
	else
		run_op(s, d);
}

void emu_stream_flush(cudaStream_t st)
{
	if (!emu_stream_ok(st))
		emu_fatal("an operation on stream %p, which was destroyed or never created (a library handle that "
			  "outlived its stream?)", (void *)st);
	std::lock_guard<std::recursive_mutex> l(lazy_mu);
	drain(peers(stream_of(st)), next_seq);
}

void emu_defer_flush_key(const void *key)
{
	std::lock_guard<std::recursive_mutex> l(lazy_mu);
	drain_key(key, next_seq);
}

/* At exit: deferred operations still queued are work the program never
 * waited for (its results were never used, or read without synchronising). */
static void pending_at_exit(void)
{
	std::lock_guard<std::recursive_mutex> l(lazy_mu);
	size_t n = 0;
	const Deferred *first = nullptr;
	for (emu_stream *s : live_streams()) {
		n += s->q.size();
		if (!s->q.empty() && (!first || s->q.front().seq < first->seq))
			first = &s->q.front();
	}
	if (n)
		fprintf(stderr, "cuda-emu: WARNING: %zu deferred operation(s) never ran: the program ended without "
			"synchronising the streams they were queued on (the first: %s)\n", n, first->what.c_str());
}

int emu_stream_ok(cudaStream_t s)
{
	std::lock_guard<std::mutex> l(mem_mu);
	return !s || s == cudaStreamLegacy || s == cudaStreamPerThread || (streams && streams->count(s));
}

extern "C" {

const char *cudaGetErrorName(cudaError_t e)
{
	switch (e) {
	case cudaSuccess: return "cudaSuccess";
	case cudaErrorInvalidValue: return "cudaErrorInvalidValue";
	case cudaErrorMemoryAllocation: return "cudaErrorMemoryAllocation";
	case cudaErrorInitializationError: return "cudaErrorInitializationError";
	case cudaErrorInvalidConfiguration: return "cudaErrorInvalidConfiguration";
	case cudaErrorInvalidDevicePointer: return "cudaErrorInvalidDevicePointer";
	case cudaErrorInvalidMemcpyDirection: return "cudaErrorInvalidMemcpyDirection";
	case cudaErrorInsufficientDriver: return "cudaErrorInsufficientDriver";
	case cudaErrorNoDevice: return "cudaErrorNoDevice";
	case cudaErrorInvalidDevice: return "cudaErrorInvalidDevice";
	case cudaErrorInvalidResourceHandle: return "cudaErrorInvalidResourceHandle";
	case cudaErrorNotReady: return "cudaErrorNotReady";
	case cudaErrorIllegalAddress: return "cudaErrorIllegalAddress";
	case cudaErrorLaunchOutOfResources: return "cudaErrorLaunchOutOfResources";
	case cudaErrorLaunchFailure: return "cudaErrorLaunchFailure";
	case cudaErrorNotSupported: return "cudaErrorNotSupported";
	default: return "cudaErrorUnknown";
	}
}

const char *cudaGetErrorString(cudaError_t e)
{
	switch (e) {
	case cudaSuccess: return "no error";
	case cudaErrorInvalidValue: return "invalid argument";
	case cudaErrorMemoryAllocation: return "out of memory";
	case cudaErrorInitializationError: return "initialization error";
	case cudaErrorInvalidConfiguration: return "invalid configuration argument";
	case cudaErrorInvalidDevicePointer: return "invalid device pointer";
	case cudaErrorInvalidMemcpyDirection: return "invalid copy direction for memcpy";
	case cudaErrorInsufficientDriver: return "CUDA driver version is insufficient for CUDA runtime version";
	case cudaErrorNoDevice: return "no CUDA-capable device is detected";
	case cudaErrorInvalidDevice: return "invalid device ordinal";
	case cudaErrorInvalidResourceHandle: return "invalid resource handle";
	case cudaErrorNotReady: return "device not ready";
	case cudaErrorIllegalAddress: return "an illegal memory access was encountered";
	case cudaErrorLaunchOutOfResources: return "too many resources requested for launch";
	case cudaErrorLaunchFailure: return "unspecified launch failure";
	case cudaErrorNotSupported: return "operation not supported";
	default: return "unknown error";
	}
}

cudaError_t cudaGetLastError(void)
{
	cudaError_t e = last_error;
	last_error = cudaSuccess;
	return e;
}

cudaError_t cudaPeekAtLastError(void) { return last_error; }

cudaError_t cudaGetDeviceCount(int *n)
{
	if (!n)
		return ret(cudaErrorInvalidValue);
	*n = cfg().devices > 0 ? cfg().devices : 0;
	return cfg().devices > 0 ? cudaSuccess : ret(cudaErrorNoDevice);
}

cudaError_t cudaGetDevice(int *d)
{
	if (!d)
		return ret(cudaErrorInvalidValue);
	*d = current_device;
	return cudaSuccess;
}

cudaError_t cudaSetDevice(int d)
{
	if (d < 0 || d >= cfg().devices)
		return ret(cudaErrorInvalidDevice);
	current_device = d;
	return cudaSuccess;
}

cudaError_t cudaGetDeviceProperties(cudaDeviceProp *p, int d)
{
	if (!p)
		return ret(cudaErrorInvalidValue);
	if (d < 0 || d >= cfg().devices)
		return ret(cudaErrorInvalidDevice);
	memset(p, 0, sizeof *p);
	snprintf(p->name, sizeof p->name, "cuda-emu");
	p->totalGlobalMem = cfg().mem;
	p->sharedMemPerBlock = 49152;
	p->sharedMemPerBlockOptin = 232448;
	p->sharedMemPerMultiprocessor = 233472;
	p->regsPerBlock = 65536;
	p->regsPerMultiprocessor = 65536;
	p->warpSize = 32;
	p->maxThreadsPerBlock = 1024;
	p->maxThreadsDim[0] = 1024;
	p->maxThreadsDim[1] = 1024;
	p->maxThreadsDim[2] = 64;
	p->maxGridSize[0] = 2147483647;
	p->maxGridSize[1] = 65535;
	p->maxGridSize[2] = 65535;
	p->major = 9;
	p->minor = 0;
	p->multiProcessorCount = 4;
	p->maxThreadsPerMultiProcessor = 2048;
	p->maxBlocksPerMultiProcessor = 32;
	p->canMapHostMemory = 1;
	p->concurrentKernels = 1;
	p->unifiedAddressing = 1;
	p->managedMemory = 1;
	p->asyncEngineCount = 2;
	p->l2CacheSize = 50 << 20;
	return cudaSuccess;
}

cudaError_t cudaDeviceGetAttribute(int *v, enum cudaDeviceAttr a, int d)
{
	cudaDeviceProp p;
	if (!v)
		return ret(cudaErrorInvalidValue);
	cudaError_t e = cudaGetDeviceProperties(&p, d);
	if (e != cudaSuccess)
		return e;
	switch (a) {
	case cudaDevAttrMaxThreadsPerBlock: *v = p.maxThreadsPerBlock; break;
	case cudaDevAttrMaxSharedMemoryPerBlock: *v = (int)p.sharedMemPerBlock; break;
	case cudaDevAttrWarpSize: *v = 32; break;
	case cudaDevAttrMultiProcessorCount: *v = p.multiProcessorCount; break;
	case cudaDevAttrComputeCapabilityMajor: *v = p.major; break;
	case cudaDevAttrComputeCapabilityMinor: *v = p.minor; break;
	case cudaDevAttrMaxSharedMemoryPerBlockOptin: *v = (int)p.sharedMemPerBlockOptin; break;
	default: return ret(cudaErrorInvalidValue);
	}
	return cudaSuccess;
}

cudaError_t cudaDeviceSynchronize(void)
{
	emu_count(EMU_N_WAIT);
	flush_all();
	return sync_result();
}
cudaError_t cudaDeviceReset(void) { return cudaSuccess; }
cudaError_t cudaDriverGetVersion(int *v)
{
	if (v)
		*v = 13000;
	return cudaSuccess;
}
cudaError_t cudaRuntimeGetVersion(int *v)
{
	if (v)
		*v = 13000;
	return cudaSuccess;
}

cudaError_t cudaMemGetInfo(size_t *free_bytes, size_t *total_bytes)
{
	std::lock_guard<std::mutex> l(mem_mu);
	if (free_bytes)
		*free_bytes = cfg().mem > dev_used ? cfg().mem - dev_used : 0;
	if (total_bytes)
		*total_bytes = cfg().mem;
	return cudaSuccess;
}

static cudaError_t alloc(void **p, size_t bytes, int host)
{
	if (!p)
		return ret(cudaErrorInvalidValue);
	*p = nullptr;
	if (bytes == 0)
		return cudaSuccess;
	std::lock_guard<std::mutex> l(mem_mu);
	if (!host && bytes > cfg().mem - dev_used)
		return ret(cudaErrorMemoryAllocation);
	void *m = nullptr;
	if (posix_memalign(&m, 256, bytes))
		return ret(cudaErrorMemoryAllocation);
	if (cfg().poison >= 0 && !host)
		memset(m, cfg().poison, bytes); /* cudaMalloc'd memory is not cleared */
	A()[(uintptr_t)m] = Alloc{bytes, host};
	if (!host) {
		dev_used += bytes;
		if (!opened)
			poison_dev((uintptr_t)m, bytes, 1);
	}
	*p = m;
	return cudaSuccess;
}

static cudaError_t release(void *p, int host)
{
	if (!p)
		return cudaSuccess;
	std::lock_guard<std::mutex> l(mem_mu);
	auto it = A().find((uintptr_t)p);
	if (it == A().end() || it->second.host != host) {
		auto *in = find(p, 0);
		mem_mu.unlock();
		emu_fatal("%s(%p): %s", host ? "cudaFreeHost" : "cudaFree", p,
			  in ? "not the start of an allocation" : "not a live allocation (double free, or never allocated here)");
	}
	if (!host) {
		dev_used -= it->second.size;
		poison_dev(it->first, it->second.size, 0);
	}
	A().erase(it);
	free(p);
	return cudaSuccess;
}

/* cudaFree and cudaFreeHost synchronise the device first, as CUDA's do. */
cudaError_t cudaMalloc(void **p, size_t bytes) { return alloc(p, bytes, 0); }
cudaError_t cudaFree(void *p)
{
	if (p)
		flush_all();
	return release(p, 0);
}
cudaError_t cudaMallocAsync(void **p, size_t bytes, cudaStream_t s)
{
	if (!emu_stream_ok(s))
		return ret(cudaErrorInvalidResourceHandle);
	return alloc(p, bytes, 0);
}
/* Stream-ordered: the memory goes once s has run what was queued on it,
 * while other streams may still hold deferred operations on it (they fail
 * when they run: a missing wait between the streams). */
cudaError_t cudaFreeAsync(void *p, cudaStream_t s)
{
	if (!emu_stream_ok(s))
		return ret(cudaErrorInvalidResourceHandle);
	emu_stream_flush(s);
	return release(p, 0);
}
cudaError_t cudaMallocHost(void **p, size_t bytes) { return alloc(p, bytes ? bytes : 1, 1); }
cudaError_t cudaHostAlloc(void **p, size_t bytes, unsigned int flags)
{
	(void)flags;
	return alloc(p, bytes ? bytes : 1, 1);
}
cudaError_t cudaFreeHost(void *p)
{
	if (p)
		flush_all();
	return release(p, 1);
}

/* 1 device, 0 host memory (pageable or pinned), -1 a device pointer whose
 * range runs past its allocation. */
static int classify(const void *p, size_t n)
{
	std::lock_guard<std::mutex> l(mem_mu);
	auto *a = find(p, 0);
	if (!a || a->second.host)
		return 0;
	return find(p, n) ? 1 : -1;
}

/* 1 when p lies in a cudaMallocHost / cudaHostAlloc allocation. */
static int pinned(const void *p)
{
	std::lock_guard<std::mutex> l(mem_mu);
	auto *a = find(p, 0);
	return a && a->second.host;
}

static const char *kind_str(enum cudaMemcpyKind k)
{
	static const char *n[] = {"HostToHost", "HostToDevice", "DeviceToHost", "DeviceToDevice", "Default"};
	return (unsigned)k < 5 ? n[k] : "?";
}

/* Validates a copy of bytes (> 0) from src to dst as fn (cudaMemcpy or
 * cudaMemcpyAsync) would: cudaSuccess with *dd and *sd set to 1 for device
 * memory and 0 for host memory, or the error (noted, made the last error). */
static cudaError_t copy_check(const char *fn, void *dst, const void *src, size_t bytes, enum cudaMemcpyKind kind,
			      int *dd, int *sd)
{
	if (!dst || !src) {
		emu_note("%s %s: NULL pointer", fn, kind_str(kind));
		return ret(cudaErrorInvalidValue);
	}
	int d = classify(dst, bytes), s = classify(src, bytes);
	if (d < 0 || s < 0) {
		emu_note("%s %s of %zu bytes: the %s range runs past the end of its device allocation", fn,
			 kind_str(kind), bytes, d < 0 ? "destination" : "source");
		return ret(cudaErrorInvalidValue);
	}
	int want_d = -1, want_s = -1;
	switch (kind) {
	case cudaMemcpyHostToHost: want_d = 0, want_s = 0; break;
	case cudaMemcpyHostToDevice: want_d = 1, want_s = 0; break;
	case cudaMemcpyDeviceToHost: want_d = 0, want_s = 1; break;
	case cudaMemcpyDeviceToDevice: want_d = 1, want_s = 1; break;
	case cudaMemcpyDefault: break;
	default: return ret(cudaErrorInvalidMemcpyDirection);
	}
	if ((want_d >= 0 && want_d != d) || (want_s >= 0 && want_s != s)) {
		emu_note("%s %s: the destination %p is %s memory and the source %p is %s memory", fn, kind_str(kind), dst,
			 d ? "device" : "host", src, s ? "device" : "host");
		return ret(cudaErrorInvalidValue);
	}
	if (d && s && (char *)dst < (const char *)src + bytes && (const char *)src < (char *)dst + bytes)
		emu_note("%s of %zu bytes between overlapping device ranges (undefined)", fn, bytes);
	*dd = d;
	*sd = s;
	return cudaSuccess;
}

/* A deferred operation when it runs: cudaSuccess when [p, p + bytes) is
 * still device memory; otherwise (a cudaFreeAsync on another stream ran
 * first) notes it and returns cudaErrorIllegalAddress. */
static cudaError_t still_device(const void *p, size_t bytes)
{
	if (classify(p, bytes) == 1)
		return cudaSuccess;
	emu_note("device memory [%p, +%zu) was freed before a deferred operation on it ran (a cudaFreeAsync on "
		 "another stream without a wait?)", p, bytes);
	return cudaErrorIllegalAddress;
}

cudaError_t cudaMemcpy(void *dst, const void *src, size_t bytes, enum cudaMemcpyKind kind)
{
	emu_count(EMU_N_WAIT);
	if (bytes == 0)
		return cudaSuccess;
	int d, s;
	cudaError_t e = copy_check("cudaMemcpy", dst, src, bytes, kind, &d, &s);
	if (e != cudaSuccess)
		return e;
	emu_stream_flush(0); /* the legacy stream: after it and every blocking stream */
	Open o;
	memmove(dst, src, bytes);
	return cudaSuccess;
}

/* Into host memory: at once, after what is queued on st. Into device
 * memory: deferred; a source in device or page-locked memory is read when
 * the copy runs, a pageable one now (CUDA stages it before returning). */
cudaError_t cudaMemcpyAsync(void *dst, const void *src, size_t bytes, enum cudaMemcpyKind kind, cudaStream_t st)
{
	if (!emu_stream_ok(st))
		return ret(cudaErrorInvalidResourceHandle);
	if (bytes == 0)
		return cudaSuccess;
	int d, s;
	cudaError_t e = copy_check("cudaMemcpyAsync", dst, src, bytes, kind, &d, &s);
	if (e != cudaSuccess)
		return e;
	if (!d) {
		emu_stream_flush(st);
		Open o;
		memmove(dst, src, bytes);
		return cudaSuccess;
	}
	int pin = !s && pinned(src);
	char what[256];
	snprintf(what, sizeof what, "cudaMemcpyAsync of %zu bytes from %s %p to device memory %p on stream %p", bytes,
		 s ? "device memory" : pin ? "page-locked host memory" : "pageable host memory", src, dst, (void *)st);
	if (s || pin)
		emu_defer(st, what, nullptr, [=]() {
			cudaError_t r = still_device(dst, bytes);
			if (r == cudaSuccess && s)
				r = still_device(src, bytes);
			if (r == cudaSuccess)
				memmove(dst, src, bytes);
			return r;
		});
	else {
		std::vector<char> stage((const char *)src, (const char *)src + bytes);
		emu_defer(st, what, nullptr, [=, stage = std::move(stage)]() {
			cudaError_t r = still_device(dst, bytes);
			if (r == cudaSuccess)
				memcpy(dst, stage.data(), bytes);
			return r;
		});
	}
	return cudaSuccess;
}

/* 1 when [p, p + bytes) is device memory; otherwise notes it for fn. */
static int memset_ok(const char *fn, void *p, size_t bytes)
{
	if (classify(p, bytes) == 1)
		return 1;
	emu_note("%s of %zu bytes at %p: not (all) device memory", fn, bytes, p);
	return 0;
}

cudaError_t cudaMemset(void *p, int v, size_t bytes)
{
	if (bytes == 0)
		return cudaSuccess;
	if (!memset_ok("cudaMemset", p, bytes))
		return ret(cudaErrorInvalidValue);
	emu_stream_flush(0);
	Open o;
	memset(p, v, bytes);
	return cudaSuccess;
}

cudaError_t cudaMemsetAsync(void *p, int v, size_t bytes, cudaStream_t s)
{
	if (!emu_stream_ok(s))
		return ret(cudaErrorInvalidResourceHandle);
	if (bytes == 0)
		return cudaSuccess;
	if (!memset_ok("cudaMemsetAsync", p, bytes))
		return ret(cudaErrorInvalidValue);
	char what[160];
	snprintf(what, sizeof what, "cudaMemsetAsync of %zu bytes at %p on stream %p", bytes, p, (void *)s);
	emu_defer(s, what, nullptr, [=]() {
		cudaError_t r = still_device(p, bytes);
		if (r == cudaSuccess)
			memset(p, v, bytes);
		return r;
	});
	return cudaSuccess;
}

cudaError_t cudaStreamCreateWithFlags(cudaStream_t *s, unsigned int flags)
{
	if (!s)
		return ret(cudaErrorInvalidValue);
	cudaStream_t n = new emu_stream{flags, 0, {}};
	std::lock_guard<std::mutex> l(mem_mu);
	if (!streams)
		streams = new std::map<cudaStream_t, int>;
	(*streams)[n] = 1;
	*s = n;
	return cudaSuccess;
}
cudaError_t cudaStreamCreate(cudaStream_t *s) { return cudaStreamCreateWithFlags(s, 0); }

/* Runs what is queued on s first; events recorded on s count as reached. */
cudaError_t cudaStreamDestroy(cudaStream_t s)
{
	std::lock_guard<std::recursive_mutex> lz(lazy_mu);
	if (!s || s == cudaStreamLegacy || s == cudaStreamPerThread || !emu_stream_ok(s))
		return ret(cudaErrorInvalidResourceHandle);
	emu_stream_flush(s);
	std::lock_guard<std::mutex> l(mem_mu);
	streams->erase(s);
	if (events)
		for (auto &e : *events)
			if (e.first->s == s)
				e.first->s = nullptr;
	delete s;
	return cudaSuccess;
}

cudaError_t cudaStreamSynchronize(cudaStream_t s)
{
	emu_count(EMU_N_WAIT);
	if (!emu_stream_ok(s))
		return ret(cudaErrorInvalidResourceHandle);
	emu_stream_flush(s);
	return sync_result();
}
cudaError_t cudaStreamQuery(cudaStream_t s) { return cudaStreamSynchronize(s); }

cudaError_t cudaEventCreateWithFlags(cudaEvent_t *e, unsigned int flags)
{
	(void)flags;
	if (!e)
		return ret(cudaErrorInvalidValue);
	*e = new emu_event{now_ms(), nullptr, 0};
	std::lock_guard<std::mutex> l(mem_mu);
	if (!events)
		events = new std::map<cudaEvent_t, double>;
	(*events)[*e] = 0;
	return cudaSuccess;
}
cudaError_t cudaEventCreate(cudaEvent_t *e) { return cudaEventCreateWithFlags(e, 0); }
static int event_ok(cudaEvent_t e)
{
	std::lock_guard<std::mutex> l(mem_mu);
	return e && events && events->count(e);
}
cudaError_t cudaEventDestroy(cudaEvent_t e)
{
	if (!event_ok(e))
		return ret(cudaErrorInvalidResourceHandle);
	std::lock_guard<std::mutex> l(mem_mu);
	events->erase(e);
	delete e;
	return cudaSuccess;
}

/* Remembers the end of s's queue: waiting for e runs s up to there. */
cudaError_t cudaEventRecord(cudaEvent_t e, cudaStream_t s)
{
	if (!event_ok(e) || !emu_stream_ok(s))
		return ret(cudaErrorInvalidResourceHandle);
	std::lock_guard<std::recursive_mutex> l(lazy_mu);
	e->t = now_ms();
	e->s = stream_of(s);
	e->seq = next_seq;
	return cudaSuccess;
}

/* Runs the stream e was recorded on up to the record (and what that waits
 * for, as an operation queued there would). */
static void event_reach(cudaEvent_t e)
{
	std::lock_guard<std::recursive_mutex> l(lazy_mu);
	if (e->s)
		drain(peers(e->s), e->seq);
}

cudaError_t cudaStreamWaitEvent(cudaStream_t s, cudaEvent_t e, unsigned int flags)
{
	(void)flags;
	if (!emu_stream_ok(s) || !event_ok(e))
		return ret(cudaErrorInvalidResourceHandle);
	event_reach(e);
	return cudaSuccess;
}
cudaError_t cudaEventSynchronize(cudaEvent_t e)
{
	emu_count(EMU_N_WAIT);
	if (!event_ok(e))
		return ret(cudaErrorInvalidResourceHandle);
	event_reach(e);
	return sync_result();
}
cudaError_t cudaEventQuery(cudaEvent_t e) { return cudaEventSynchronize(e); }
cudaError_t cudaEventElapsedTime(float *ms, cudaEvent_t a, cudaEvent_t b)
{
	if (!ms || !event_ok(a) || !event_ok(b))
		return ret(cudaErrorInvalidResourceHandle);
	*ms = (float)(b->t - a->t);
	return cudaSuccess;
}

cudaError_t cudaFuncSetAttribute(const void *func, enum cudaFuncAttribute attr, int value)
{
	if (!func)
		return ret(cudaErrorInvalidValue);
	if (attr == cudaFuncAttributeMaxDynamicSharedMemorySize) {
		if (value < 0 || value > 232448)
			return ret(cudaErrorInvalidValue);
		std::lock_guard<std::mutex> l(mem_mu);
		if (!dyn_attr)
			dyn_attr = new std::map<const void *, int>;
		(*dyn_attr)[func] = value;
	}
	return cudaSuccess;
}

} /* extern "C" */
