# mfr — build, test and benchmark. `make help` lists the targets.
#
# Switches (set on the command line or in the environment):
#   CC      compiler (gcc or clang)              CUDA  auto|yes|no  compile CUDA code with nvcc
#   WERROR  1: warnings are errors (CI sets it)  MPI   auto|yes|no  build the MPI parts with mpicc
#   SAN     1: ASan+UBSan build in build/asan (what `make check-asan` uses)
#   DNNL    auto|yes|no  fast CPU conv/linear on oneDNN (no: the reference layers)
#   CUDA_ARCH  compute capabilities to build for (default "80 90")

CC ?= cc
CUDA ?= auto
# GPU generations the CUDA code is built for: 80 (A100), 90 (H100/H200)
CUDA_ARCH ?= 80 90
space := $(subst ,, )
MPI ?= auto
DNNL ?= auto
WERROR ?= 0
SAN ?= 0

ifeq ($(filter $(CUDA),auto yes no),)
$(error CUDA must be auto, yes or no, not '$(CUDA)')
endif
ifeq ($(filter $(MPI),auto yes no),)
$(error MPI must be auto, yes or no, not '$(MPI)')
endif
ifeq ($(filter $(DNNL),auto yes no),)
$(error DNNL must be auto, yes or no, not '$(DNNL)')
endif

ifeq ($(SAN),1)
BUILD := build/asan
SANFLAGS := -fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer
else
BUILD := build/rel
SANFLAGS :=
endif
BIN := $(if $(filter 1,$(SAN)),$(BUILD)/bin,bin)

# ---- probes: one line each, only for targets that build ----
NOPROBE := $(filter help deps clean,$(MAKECMDGOALS))
ifeq ($(NOPROBE),)
JPEG_CFLAGS := $(shell pkg-config --cflags libturbojpeg 2>/dev/null)
JPEG_LIBS := $(shell pkg-config --libs libturbojpeg 2>/dev/null)
ifeq ($(JPEG_LIBS),)
$(error TurboJPEG not found (Debian: libturbojpeg0-dev); run `make deps`)
endif
$(info probe: TurboJPEG $(shell pkg-config --modversion libturbojpeg))
PNG_CFLAGS := $(shell pkg-config --cflags libpng 2>/dev/null)
PNG_LIBS := $(shell pkg-config --libs libpng 2>/dev/null)
ifeq ($(PNG_LIBS),)
$(error libpng not found (Debian: libpng-dev); run `make deps`)
endif
$(info probe: libpng $(shell pkg-config --modversion libpng))

NVCC := $(shell command -v nvcc 2>/dev/null || ls /usr/local/cuda/bin/nvcc 2>/dev/null)
ifeq ($(CUDA),no)
HAVE_CUDA := 0
$(info probe: CUDA off (CUDA=no))
else ifneq ($(NVCC),)
HAVE_CUDA := 1
CUDA_HOME := $(patsubst %/bin/nvcc,%,$(realpath $(NVCC)))
$(info probe: CUDA nvcc $(shell $(NVCC) --version | sed -n 's/.*release \([0-9.]*\).*/\1/p') at $(NVCC), for sm_$(subst $(space),/sm_,$(CUDA_ARCH)))
else ifeq ($(CUDA),yes)
$(error CUDA=yes but nvcc was not found on PATH or in /usr/local/cuda/bin)
else
HAVE_CUDA := 0
$(info probe: CUDA not found (nvcc absent); CPU only)
endif

MPICC := $(shell command -v mpicc 2>/dev/null)
ifeq ($(MPI),no)
HAVE_MPI := 0
$(info probe: MPI off (MPI=no))
else ifneq ($(MPICC),)
HAVE_MPI := 1
MPI_CFLAGS := -DMFR_HAVE_MPI $(shell $(MPICC) --showme:compile 2>/dev/null)
MPI_LIBS := $(shell $(MPICC) --showme:link 2>/dev/null)
$(info probe: MPI $(shell mpirun --version 2>/dev/null | head -n 1) (mfr-train across ranks))
else ifeq ($(MPI),yes)
$(error MPI=yes but mpicc was not found; run `make deps`)
else
HAVE_MPI := 0
$(info probe: MPI not found (mpicc absent); world of one)
endif

# oneDNN: Debian ships no dnnl.pc, so the header decides when pkg-config has
# nothing; its OpenMP runtime (libgomp) is linked too, for the thread count.
DNNL_VERSION := $(shell pkg-config --modversion dnnl 2>/dev/null)
DNNL_HEADER := $(wildcard /usr/include/dnnl.h /usr/include/oneapi/dnnl/dnnl.h)
ifeq ($(DNNL),no)
HAVE_DNNL := 0
$(info probe: oneDNN off (DNNL=no); conv/linear on the reference layers)
else ifneq ($(DNNL_VERSION)$(DNNL_HEADER),)
HAVE_DNNL := 1
DNNL_CFLAGS := -DMFR_HAVE_DNNL $(shell pkg-config --cflags dnnl 2>/dev/null)
DNNL_LIBS := $(or $(shell pkg-config --libs dnnl 2>/dev/null),-ldnnl) -lgomp
$(info probe: oneDNN $(or $(DNNL_VERSION),$(shell sed -n 's/^\#define DNNL_VERSION_\(MAJOR\|MINOR\|PATCH\) //p' /usr/include/oneapi/dnnl/dnnl_config.h /usr/include/oneapi/dnnl/dnnl_version.h 2>/dev/null | paste -sd.)) ($(or $(firstword $(DNNL_HEADER)),pkg-config dnnl)))
else ifeq ($(DNNL),yes)
$(error DNNL=yes but oneDNN was not found (Debian: libdnnl-dev); run `make deps`)
else
HAVE_DNNL := 0
$(info probe: oneDNN not found (dnnl.h absent); conv/linear on the reference layers)
endif
endif

WARN := -Wall -Wextra -Wshadow -Wstrict-prototypes -Wno-unused-parameter
ifeq ($(WERROR),1)
WARN += -Werror
endif
CFLAGS ?= -O2 -g
ALL_CFLAGS := -std=c11 -D_GNU_SOURCE $(WARN) $(CFLAGS) $(SANFLAGS) -Icommon $(JPEG_CFLAGS) $(PNG_CFLAGS) $(DNNL_CFLAGS) \
	$(MPI_CFLAGS) -MMD -MP
# --as-needed: only the programs that use comm.c (mfr-train) load libmpi
LDLIBS := $(JPEG_LIBS) $(PNG_LIBS) $(DNNL_LIBS) $(MPI_LIBS) -lm -lpthread
ALL_LDFLAGS := -Wl,--as-needed $(LDFLAGS) $(SANFLAGS)

LIB_SRC := $(wildcard common/*.c)
LIB_OBJ := $(LIB_SRC:%.c=$(BUILD)/%.o)
# the CUDA backend: kernels (.cu, nvcc) and the C that drives them (.c), in
# libmfr only when CUDA is found; C files see MFR_HAVE_CUDA
CUDA_CU := $(wildcard common/cuda/*.cu)
CUDA_C := $(wildcard common/cuda/*.c)
ifeq ($(HAVE_CUDA),1)
ALL_CFLAGS += -DMFR_HAVE_CUDA
LIB_OBJ += $(CUDA_CU:%.cu=$(BUILD)/%.o) $(CUDA_C:%.c=$(BUILD)/%.o)
# cudart static (no libcudart.so needed at run time); cuBLAS, cuDNN, NCCL shared
LDLIBS += -L$(CUDA_HOME)/lib64 -L$(CUDA_HOME)/lib -lcudnn -lcublas -lnccl -lcudart_static -ldl -lrt -lstdc++
NVCC_WARN := -Xcompiler -Wall,-Wextra,-Wno-unused-parameter
ifeq ($(WERROR),1)
NVCC_WARN += -Werror all-warnings
endif
NVCCFLAGS ?= -O3 -g -lineinfo
ALL_NVCCFLAGS := -std=c++17 $(NVCCFLAGS) $(NVCC_WARN) -DMFR_HAVE_CUDA -D_GNU_SOURCE -Icommon -Icommon/cuda \
	$(foreach a,$(CUDA_ARCH),-gencode=arch=compute_$(a),code=sm_$(a)) -MMD -MP
endif
LIB := $(BUILD)/libmfr.a
TOOL_SRC := $(wildcard tools/mfr-*.c)
TOOLS := $(TOOL_SRC:tools/%.c=$(BIN)/%)
# the reference layers again in double, for the float64 gradient checks
REF64_OBJ := $(patsubst common/%.c,$(BUILD)/common64/%.o,$(wildcard common/layers_*.c) common/net.c common/pfc.c)
UNIT_SRC := $(wildcard tests/unit/test_*.c)
UNITS := $(UNIT_SRC:tests/unit/%.c=$(BUILD)/tests/%)
FUZZ_SRC := $(wildcard tests/fuzz/fuzz_*.c)
REPLAYS := $(FUZZ_SRC:tests/fuzz/%.c=$(BUILD)/replay/%)
TTOOL_SRC := $(wildcard tests/tools/*.c)
TTOOLS := $(TTOOL_SRC:tests/tools/%.c=$(BUILD)/ttools/%)
BENCH_SRC := $(wildcard tests/bench/bench_*.c)
BENCHES := $(BENCH_SRC:tests/bench/%.c=$(BUILD)/bench/%)

.PHONY: all test check-asan bench deps fuzz clean help units replays demo
.DELETE_ON_ERROR:
# keep the objects of tests and fuzz targets (pattern-rule intermediates)
.SECONDARY:

all: $(TOOLS)

$(BUILD)/%.o: %.c
	@mkdir -p $(@D)
	$(CC) $(ALL_CFLAGS) -c $< -o $@

$(BUILD)/%.o: %.cu
	@mkdir -p $(@D)
	$(NVCC) $(ALL_NVCCFLAGS) -c $< -o $@

$(LIB): $(LIB_OBJ)
	@mkdir -p $(@D)
	rm -f $@ && ar rcs $@ $^

$(BIN)/%: $(BUILD)/tools/%.o $(LIB)
	@mkdir -p $(@D)
	$(CC) $(ALL_LDFLAGS) $^ $(LDLIBS) -o $@

$(BUILD)/common64/%.o: common/%.c
	@mkdir -p $(@D)
	$(CC) $(ALL_CFLAGS) -DMFR_REAL_DOUBLE -c $< -o $@

$(BUILD)/tests/%: $(BUILD)/tests/unit/%.o $(REF64_OBJ) $(LIB)
	@mkdir -p $(@D)
	$(CC) $(ALL_LDFLAGS) $^ $(LDLIBS) -o $@

$(BUILD)/replay/%: $(BUILD)/tests/fuzz/%.o $(BUILD)/tests/fuzz/replay.o $(LIB)
	@mkdir -p $(@D)
	$(CC) $(ALL_LDFLAGS) $^ $(LDLIBS) -o $@

# fixture writers the bats tests use (RecordIO, .bin packs)
$(BUILD)/ttools/%: $(BUILD)/tests/tools/%.o $(LIB)
	@mkdir -p $(@D)
	$(CC) $(ALL_LDFLAGS) $^ $(LDLIBS) -o $@

$(BUILD)/bench/%: $(BUILD)/tests/bench/%.o $(LIB)
	@mkdir -p $(@D)
	$(CC) $(ALL_LDFLAGS) $^ $(LDLIBS) -o $@

units: $(UNITS)
replays: $(REPLAYS)

# Unit tests, fuzz-corpus replays and bats tool tests; the last line is the
# total "N passed, N failed".
test: all $(UNITS) $(REPLAYS) $(TTOOLS)
	@MFR_BIN=$(BIN) MFR_BUILD=$(BUILD) bash tests/run.sh

check-asan:
	$(MAKE) SAN=1 test

bench: all $(BENCHES) $(TTOOLS)
	@MFR_BIN=$(BIN) MFR_BUILD=$(BUILD) bash tests/bench/run.sh

# libFuzzer builds with clang: `make fuzz` then e.g.
#   mkdir -p /tmp/c && build/fuzz/fuzz_stream /tmp/c tests/fuzz/corpus/stream -max_total_time=60
# (new inputs go to the first folder: keep the committed corpus small)
fuzz:
	@mkdir -p build/fuzz
	for f in $(FUZZ_SRC); do n=$$(basename $$f .c); \
	  clang -std=c11 -D_GNU_SOURCE -O1 -g -fsanitize=fuzzer,address,undefined -Icommon \
	    $(JPEG_CFLAGS) $(PNG_CFLAGS) $$f $(LIB_SRC) $(LDLIBS) -o build/fuzz/$$n || exit 1; done
	@echo "fuzzers in build/fuzz; corpora in tests/fuzz/corpus/<name>"

# Installs the Debian packages the project needs, when missing.
DEB_PKGS := build-essential pkg-config python3 libturbojpeg0-dev libpng-dev libopenmpi-dev openmpi-bin bats clang libdnnl-dev libclang-rt-14-dev
deps:
	@missing=$$(for p in $(DEB_PKGS); do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done); \
	if [ -z "$$missing" ]; then echo "deps: all present ($(DEB_PKGS))"; \
	else echo "deps: installing $$missing"; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $$missing; fi

# The README's first command: a built-in synthetic dataset packed and inspected.
demo: all
	@$(MAKE) --no-print-directory -f pipelines/demo.mk BIN=$(BIN)

clean:
	rm -rf build bin demo

help:
	@echo "make            build libmfr.a and bin/mfr-*"
	@echo "make deps       install the Debian packages mfr needs"
	@echo "make test       unit tests, fuzz-corpus replays, bats tool tests"
	@echo "make check-asan the same under ASan+UBSan (build/asan)"
	@echo "make bench      throughput figures (printed, not asserted)"
	@echo "make fuzz       libFuzzer builds of the fuzz targets (clang)"
	@echo "make demo       pack and inspect a built-in synthetic dataset"

-include $(LIB_OBJ:.o=.d) $(CUDA_CU:%.cu=$(BUILD)/%.d) $(REF64_OBJ:.o=.d) $(TOOL_SRC:%.c=$(BUILD)/%.d) $(UNIT_SRC:%.c=$(BUILD)/%.d) \
	$(TTOOL_SRC:%.c=$(BUILD)/%.d) $(BENCH_SRC:%.c=$(BUILD)/%.d) $(FUZZ_SRC:%.c=$(BUILD)/%.d)
