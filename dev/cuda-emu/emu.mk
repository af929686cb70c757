# emu.mk — cuda-emu's build rules, driven by run.sh (make -f dev/cuda-emu/emu.mk).
# Includes the project Makefile for its probes and flags (JPEG, PNG, oneDNN,
# MPI) and builds everything under build/emu with ASan+UBSan:
#   build/emu/src/common/cuda/*.cu.cc, *.h   common/cuda/* through rewrite.py
#   build/emu/obj/...                       objects (.cu with g++, .c with gcc)
# A .cu whose compile fails leaves no object (and a .log beside it).
# With MPI (the Makefile's probe found mpicc), emu_nccl.cpp and the
# self-test are built with it: NCCL communicators of several ranks run
# their collectives over MPI, and the self-test joins an MPI world when
# mpirun started it.
include Makefile

E := build/emu
ED := dev/cuda-emu
CXX := g++
EMU_CC ?= gcc
EMU_SAN ?= -fsanitize=address,undefined -fno-omit-frame-pointer
EMU_OPT ?= -O1 -g
E_CFLAGS := -std=c11 -D_GNU_SOURCE -Wall -Wextra -Wshadow -Wstrict-prototypes -Wno-unused-parameter $(EMU_OPT) \
	$(EMU_SAN) -Icommon $(JPEG_CFLAGS) $(PNG_CFLAGS) $(DNNL_CFLAGS) $(MPI_CFLAGS) -DMFR_HAVE_CUDA -MMD -MP
E_CXXFLAGS := -std=c++17 -D_GNU_SOURCE -Wall -Wextra -Wno-unused-parameter $(EMU_OPT) $(EMU_SAN) -DMFR_HAVE_CUDA \
	-MMD -MP
E_LIBS := $(JPEG_LIBS) $(PNG_LIBS) $(DNNL_LIBS) $(MPI_LIBS) -lm -lpthread
# mpi.h in C++ without OpenMPI's or MPICH's C++ bindings
EMU_MPI := $(if $(filter 1,$(HAVE_MPI)),$(MPI_CFLAGS) -DEMU_HAVE_MPI -DOMPI_SKIP_MPICXX -DMPICH_SKIP_MPICXX)

EMU_RT := $(patsubst $(ED)/%.cpp,$(E)/emu/%.o,$(wildcard $(ED)/*.cpp))
CU_SRC := $(wildcard common/cuda/*.cu)
CU_HDR := $(wildcard common/cuda/*.h)
HDR_RW := $(CU_HDR:%=$(E)/src/%)
CU_OBJ := $(CU_SRC:%.cu=$(E)/obj/%.cu.o)
CUC_OBJ := $(patsubst %.c,$(E)/obj/%.o,$(wildcard common/cuda/*.c))
CPU_OBJ := $(patsubst %.c,$(E)/obj/%.o,$(LIB_SRC))
R64_OBJ := $(patsubst common/%.c,$(E)/obj/common64/%.o,$(wildcard common/layers_*.c) common/net.c common/pfc.c)
# run.sh passes TESTS (basenames) and EXTRA_CU (more .cu files, e.g. the self-test)
TESTS ?=
EXTRA_CU ?=
EXTRA_CU_OBJ := $(patsubst %.cu,$(E)/obj/%.cu.o,$(EXTRA_CU))
TEST_OBJ := $(TESTS:%=$(E)/obj/tests/unit/%.o)

.PHONY: emu-objs emu-libs
emu-objs: $(EMU_RT) $(CU_OBJ) $(CUC_OBJ) $(CPU_OBJ) $(R64_OBJ) $(TEST_OBJ) $(EXTRA_CU_OBJ)
emu-libs:
	@echo "$(E_LIBS)"

# compile quietly; on failure show the first errors and keep the full log
define compile
@mkdir -p $(@D); rm -f $@
@if $(1) > $@.log 2>&1; then echo "  $(2)"; \
	if grep -q "warning:" $@.log; then echo "    (warnings: $@.log)"; fi; \
else echo "  FAILED $(3) (full log: $@.log)"; grep -E "error|Error" $@.log | head -n 8 | sed 's/^/    /'; exit 1; fi
endef

$(E)/emu/%.o: $(ED)/%.cpp $(wildcard $(ED)/*.h)
	$(call compile,$(CXX) $(E_CXXFLAGS) -I$(ED) -c $< -o $@,CXX $<,$<)

# the scheduler itself: optimised and not instrumented (the programs still
# link with ASan; EMU_ASAN keeps the fiber annotations and the poisoning)
$(E)/emu/emu_runtime.o: $(ED)/emu_runtime.cpp $(wildcard $(ED)/*.h)
	$(call compile,$(CXX) $(filter-out $(EMU_SAN) $(EMU_OPT),$(E_CXXFLAGS)) -O2 -g \
		$(if $(findstring address,$(EMU_SAN)),-DEMU_ASAN=1) -I$(ED) -c $< -o $@,CXX $<,$<)

$(E)/emu/emu_nccl.o $(E)/obj/$(ED)/selftest/selftest.cu.o: E_CXXFLAGS += $(EMU_MPI)

# rewritten sources: the .cu and the headers next to it (a __shared__ or a
# launch in gpu_impl.h is rewritten too)
$(E)/src/common/cuda/%.cu.cc: common/cuda/%.cu $(ED)/rewrite.py
	@mkdir -p $(@D)
	@python3 $(ED)/rewrite.py $< $@ --display-name $<
$(E)/src/%.cu.cc: %.cu $(ED)/rewrite.py
	@mkdir -p $(@D)
	@python3 $(ED)/rewrite.py $< $@ --display-name $<
$(E)/src/common/cuda/%.h: common/cuda/%.h $(ED)/rewrite.py
	@mkdir -p $(@D)
	@python3 $(ED)/rewrite.py $< $@ --display-name $<

# the emulated headers come first, so the real CUDA ones are never used
$(E)/obj/%.cu.o: $(E)/src/%.cu.cc $(HDR_RW) $(wildcard $(ED)/*.h)
	$(call compile,$(CXX) $(E_CXXFLAGS) -I$(ED) -I$(E)/src/common/cuda -Icommon -Icommon/cuda -c $< -o $@,CXX $*.cu,$*.cu)

$(E)/obj/common64/%.o: common/%.c
	$(call compile,$(EMU_CC) $(E_CFLAGS) -DMFR_REAL_DOUBLE -c $< -o $@,CC64 $<,$<)

$(E)/obj/tests/unit/%.o: tests/unit/%.c
	$(call compile,$(EMU_CC) $(E_CFLAGS) -Itests/unit -c $< -o $@,CC $<,$<)

$(E)/obj/%.o: %.c
	$(call compile,$(EMU_CC) $(E_CFLAGS) -c $< -o $@,CC $<,$<)

-include $(EMU_RT:.o=.d) $(CU_OBJ:.o=.d) $(CUC_OBJ:.o=.d) $(CPU_OBJ:.o=.d) $(R64_OBJ:.o=.d) $(TEST_OBJ:.o=.d) \
	$(EXTRA_CU_OBJ:.o=.d)
