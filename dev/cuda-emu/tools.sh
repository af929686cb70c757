#!/usr/bin/env bash
# tools.sh — the tools (tools/mfr-*.c), the test fixture tools
# (tests/tools/*.c) and the GPU benchmarks (tests/bench/bench_gpu_*.c, into
# build/emu/bench) linked against cuda-emu's library, then the GPU tool
# tests (tests/bats/gpu.bats) run with them: mfr-train and mfr-embed's whole
# GPU paths (device selection, checkpoints through host copies, resume,
# loss scaling) on the CPU. Run dev/cuda-emu/run.sh first (it builds
# build/emu/libmfr_emu.a).
#
#   dev/cuda-emu/tools.sh [bats options, e.g. -f 'mfr-embed']
set -u
cd "$(dirname "$0")/../.." || exit 2
E=build/emu
ED=dev/cuda-emu
[ -f "$E/libmfr_emu.a" ] || { echo "no $E/libmfr_emu.a: run $ED/run.sh first"; exit 2; }
MK=(make --no-print-directory -f "$ED/emu.mk" WERROR=0)
LIBS=$("${MK[@]}" -s emu-libs 2>/dev/null | grep -v '^probe:' | tail -n 1)
CFL=$("${MK[@]}" -s -f /dev/stdin emu-cflags <<'MK' 2>/dev/null | grep -v '^probe:' | tail -n 1
include dev/cuda-emu/emu.mk
emu-cflags:
	@echo "$(E_CFLAGS)"
MK
)
mkdir -p "$E/bin" "$E/ttools" "$E/bench" "$E/obj/tools" "$E/obj/tests/tools" "$E/obj/tests/bench"
bad=0
for src in tools/mfr-*.c tests/tools/*.c tests/bench/bench_gpu_*.c; do
	n=$(basename "${src%.c}")
	case "$src" in tools/*) out="$E/bin/$n" ;; tests/bench/*) out="$E/bench/$n" ;; *) out="$E/ttools/$n" ;; esac
	obj="$E/obj/${src%.c}.o"
	# shellcheck disable=SC2086
	if ! gcc $CFL -c "$src" -o "$obj" 2>"$obj.log" || ! g++ -fsanitize=address,undefined "$obj" "$E/libmfr_emu.a" $LIBS -o "$out" 2>>"$obj.log"; then
		echo "  FAILED $src (see $obj.log)"
		bad=1
	fi
done
[ $bad = 0 ] || exit 1
echo "== tests/bats/gpu.bats on cuda-emu"
MFR_BIN=$E/bin MFR_BUILD=$E ASAN_OPTIONS=detect_leaks=0 bats "$@" tests/bats/gpu.bats
