#!/usr/bin/env bats
# The Makefile's switches and probes: each probe prints one line saying what
# it found, a forced switch is obeyed, and an invalid value stops the build.
bats_require_minimum_version 1.5.0

setup() { REPO=$(cd "$BATS_TEST_DIRNAME/../.." && pwd); }

@test "make prints one line per probe" {
	run -0 make -C "$REPO" -n all
	[ "$(grep -c '^probe: TurboJPEG' <<<"$output")" -eq 1 ]
	[ "$(grep -c '^probe: libpng' <<<"$output")" -eq 1 ]
	[ "$(grep -c '^probe: CUDA' <<<"$output")" -eq 1 ]
	[ "$(grep -c '^probe: MPI' <<<"$output")" -eq 1 ]
}

@test "make CUDA=no MPI=no turns both off and says so" {
	run -0 make -C "$REPO" -n all CUDA=no MPI=no
	[[ "$output" == *"probe: CUDA off (CUDA=no)"* ]]
	[[ "$output" == *"probe: MPI off (MPI=no)"* ]]
}

@test "the CUDA probe finds nvcc when it is installed" {
	command -v nvcc >/dev/null || [ -x /usr/local/cuda/bin/nvcc ] || skip "no nvcc on this machine"
	run -0 make -C "$REPO" -n all CUDA=yes
	[[ "$output" == *"probe: CUDA nvcc "* ]]
}

@test "CUDA=yes without nvcc stops the build" {
	# NVCC= on the command line overrides what the probe found: as if absent
	run -2 make -C "$REPO" -n all CUDA=yes NVCC=
	[[ "$output" == *"CUDA=yes but nvcc was not found"* ]]
	run -2 make -C "$REPO" -n all MPI=yes MPICC=
	[[ "$output" == *"MPI=yes but mpicc was not found"* ]]
}

@test "invalid switch values stop the build with a message" {
	run -2 make -C "$REPO" -n all CUDA=maybe
	[[ "$output" == *"CUDA must be auto, yes or no, not 'maybe'"* ]]
	run -2 make -C "$REPO" -n all MPI=1
	[[ "$output" == *"MPI must be auto, yes or no, not '1'"* ]]
}
