#!/usr/bin/env bash
# run.sh — builds mfr's CUDA backend against cuda-emu (CPU emulation, ASan +
# UBSan) and runs GPU unit tests on the CPU. See dev/cuda-emu/README.md.
#
#   dev/cuda-emu/run.sh [options] [TEST...]
#
# TEST: a test name (test_gpu_spatial), a path (tests/unit/test_gpu_spatial.c),
# or "selftest" (the emulator's own checks, planted bugs included). Default:
# every tests/unit/test_gpu_*.c, then the self-test.
# Options:
#   --sched LIST   scheduling orders to run each test under, comma-separated:
#                  fwd, rev, rand[:seed] (default "fwd,rev")
#   --ranks N      run each test as N MPI ranks (mpirun -np N; default 1)
#   --no-build     run what is built
#   -j N           parallel compile jobs (default 2)
# Environment: EMU_TIMEOUT (seconds per run, default 900); the EMU_* switches
# of emu_runtime.cpp pass through.
#
# Everything goes under build/emu: objects, logs/<test>.<sched>.{out,err}
# (with --ranks N > 1: logs/<test>.<sched>.r<rank>.{out,err,rc} and
# logs/<test>.<sched>.mpirun.log).
# Exit status: 0 when every run passed (last line "N passed, 0 failed", exit 0,
# no sanitizer or emulator error; with ranks, on every rank), 1 otherwise.
set -u
cd "$(dirname "$0")/../.." || exit 2
E=build/emu
ED=dev/cuda-emu
SCHEDS=fwd,rev
BUILD=1
JOBS=2
RANKS=1
TESTS=()
while [ $# -gt 0 ]; do
	case "$1" in
	--sched) SCHEDS=$2; shift 2 ;;
	--sched=*) SCHEDS=${1#--sched=}; shift ;;
	--ranks) RANKS=$2; shift 2 ;;
	--ranks=*) RANKS=${1#--ranks=}; shift ;;
	--no-build) BUILD=0; shift ;;
	-j) JOBS=$2; shift 2 ;;
	-h|--help) sed -n '2,24p' "$0"; exit 0 ;;
	*) t=$(basename "$1"); TESTS+=("${t%.c}"); shift ;;
	esac
done
case "$RANKS" in
''|*[!0-9]*|0) echo "--ranks wants a positive number, not '$RANKS'"; exit 2 ;;
esac
if [ "$RANKS" -gt 1 ] && ! command -v mpirun > /dev/null; then
	echo "--ranks $RANKS needs mpirun (OpenMPI)"
	exit 2
fi
if [ ${#TESTS[@]} -eq 0 ]; then
	for f in tests/unit/test_gpu_*.c; do t=$(basename "$f"); TESTS+=("${t%.c}"); done
	TESTS+=(selftest)
fi
UNIT=()
EXTRA=()
for t in "${TESTS[@]}"; do
	if [ "$t" = selftest ]; then EXTRA=("$ED/selftest/selftest.cu"); fi
	UNIT+=("$t")
done
mkdir -p "$E/logs" "$E/tests"

MK=(make --no-print-directory -f "$ED/emu.mk" WERROR=0)
if [ $BUILD = 1 ]; then
	echo "== building under $E (ASan+UBSan; a failing file is reported and skipped)"
	units=()
	for u in "${UNIT[@]}"; do [ "$u" = selftest ] || units+=("$u"); done
	"${MK[@]}" -k -j"$JOBS" emu-objs TESTS="${units[*]}" EXTRA_CU="${EXTRA[*]:-}" 2>&1 |
		grep -v '^probe:' | grep -v "Nothing to be done" | grep -v "^make.*Error\|^make.*Target.*not remade"
fi

LIBS=$("${MK[@]}" -s emu-libs 2>/dev/null | grep -v '^probe:' | tail -n 1)
# the library: every object that compiled (rules delete an object before
# compiling it, so a failed compile leaves none behind)
rm -f "$E/libmfr_emu.a"
mapfile -t OBJS < <(find "$E/emu" "$E/obj/common" "$E/obj/common64" -name '*.o' 2>/dev/null | sort)
# objects whose source is gone (a renamed file) must not linger
KEEP=()
for o in "${OBJS[@]}"; do
	case "$o" in
	"$E"/emu/*) src="$ED/$(basename "${o%.o}").cpp" ;;
	"$E"/obj/common64/*) src="common/$(basename "${o%.o}").c" ;;
	*.cu.o) src="${o#"$E"/obj/}"; src="${src%.o}" ;;
	*) src="${o#"$E"/obj/}"; src="${src%.o}.c" ;;
	esac
	[ -f "$src" ] && KEEP+=("$o")
done
ar rcs "$E/libmfr_emu.a" "${KEEP[@]}"
for cu in common/cuda/*.cu; do
	[ -f "$E/obj/${cu%.cu}.cu.o" ] || echo "  NOT BUILT: $cu (see $E/obj/${cu%.cu}.cu.o.log)"
done

IFS=, read -r -a SCHED_LIST <<< "$SCHEDS"
TIMEOUT=${EMU_TIMEOUT:-900}
# Under mpirun, LeakSanitizer needs full stacks (the slow unwinder) to tell
# OpenMPI's own never-freed allocations (lsan-mpi.supp) from the program's.
if [ "$RANKS" -gt 1 ]; then
	ASAN_RUN=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=0:fast_unwind_on_malloc=0}
	LSAN_RUN=${LSAN_OPTIONS:-suppressions=$PWD/$ED/lsan-mpi.supp}
else
	ASAN_RUN=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=0}
	LSAN_RUN=${LSAN_OPTIONS:-}
fi
bad=0

# judge LABEL OUT ERR RC SECONDS: prints one line for a process of a run
# (the test's last line, exit code, time, findings), and for one that did
# not pass its first FAIL lines and findings; sets bad=1 when it did not.
judge() {
	local label=$1 out=$2 err=$3 rc=$4 secs=$5 last n ok x only_warn
	local notes=()
	last=$(grep -v '^\s*$' "$out" 2>/dev/null | tail -n 1)
	touch "$err"
	n=$(grep -c "runtime error:" "$err"); [ "$n" -gt 0 ] && notes+=("UBSan: $n")
	grep -q "ERROR: AddressSanitizer" "$err" && notes+=("ASan: $(grep -m1 -o 'AddressSanitizer: [a-z-]*' "$err")")
	grep -q "ERROR: LeakSanitizer" "$err" && notes+=("LSan: $(grep -m1 'SUMMARY' "$err" | sed 's/SUMMARY: AddressSanitizer: //')")
	n=$(grep -c "^cuda-emu: ERROR" "$err"); [ "$n" -gt 0 ] && notes+=("emu error")
	n=$(grep -c "^cuda-emu: WARNING" "$err"); [ "$n" -gt 0 ] && notes+=("emu warnings: $n")
	n=$(grep -c "^FAIL" "$err"); [ "$n" -gt 0 ] && notes+=("FAIL lines: $n")
	[ "$rc" = 124 ] && notes+=("TIMEOUT after ${TIMEOUT}s")
	[ "$rc" -gt 128 ] && [ "$rc" != 124 ] && notes+=("killed by signal $((rc - 128))")
	ok=0
	[ "$rc" = 0 ] && echo "$last" | grep -qE '^[0-9]+ passed, 0 failed$' && [ ${#notes[@]} -eq 0 ] && ok=1
	# warnings alone do not fail a run
	if [ $ok = 0 ] && [ "$rc" = 0 ] && echo "$last" | grep -qE '^[0-9]+ passed, 0 failed$'; then
		only_warn=1
		for x in "${notes[@]}"; do case "$x" in "emu warnings"*) ;; *) only_warn=0 ;; esac; done
		[ $only_warn = 1 ] && ok=1
	fi
	[ $ok = 1 ] || bad=1
	printf '%-22s %-8s %s  [rc %d, %ds]%s\n' "$name" "$label" "${last:-(no output)}" "$rc" "$secs" \
		"$([ ${#notes[@]} -gt 0 ] && printf ' (%s)' "$(IFS=';'; echo "${notes[*]}")")"
	if [ $ok = 0 ]; then
		grep -E "^FAIL|^cuda-emu: (ERROR|WARNING)|runtime error:|ERROR: AddressSanitizer|^    in |^    [a-z_ +=]+: worst|SUMMARY" "$err" |
			head -n 12 | sed 's/^/    | /'
		echo "    | (full: $out, $err)"
	fi
}

printf '== running %d test(s) under: %s%s\n' "${#UNIT[@]}" "$SCHEDS" "$([ "$RANKS" -gt 1 ] && echo ", $RANKS ranks")"
for u in "${UNIT[@]}"; do
	name=$u
	obj="$E/obj/tests/unit/$u.o"
	[ "$u" = selftest ] && obj="$E/obj/$ED/selftest/selftest.cu.o"
	bin="$E/tests/$name"
	if [ ! -f "$obj" ]; then
		echo "$name: NOT BUILT (compile failed: ${obj}.log)"
		bad=1
		continue
	fi
	# shellcheck disable=SC2086
	if ! g++ -fsanitize=address,undefined "$obj" "$E/libmfr_emu.a" $LIBS -o "$bin" > "$bin.link.log" 2>&1; then
		echo "$name: LINK FAILED:"
		grep -E "undefined reference|error" "$bin.link.log" | sed 's/^.*: //' | sort | uniq -c | head -n 12 | sed 's/^/    /'
		bad=1
		continue
	fi
	for s in "${SCHED_LIST[@]}"; do
		base="$E/logs/$name.${s//:/_}"
		t0=$(date +%s)
		if [ "$RANKS" -gt 1 ]; then
			# each rank writes its own logs and exit code (a small wrapper
			# run by mpirun); the run passes when every rank passed
			rm -f "$base".r*.out "$base".r*.err "$base".r*.rc
			timeout "$TIMEOUT" mpirun -np "$RANKS" --oversubscribe --allow-run-as-root \
				env EMU_SCHED="$s" ASAN_OPTIONS="$ASAN_RUN" LSAN_OPTIONS="$LSAN_RUN" \
				UBSAN_OPTIONS="${UBSAN_OPTIONS:-print_stacktrace=1}" \
				sh -c 'r=$OMPI_COMM_WORLD_RANK; "$0" > "$1.r$r.out" 2> "$1.r$r.err"; c=$?; echo $c > "$1.r$r.rc"; exit $c' \
				"$bin" "$base" > "$base.mpirun.log" 2>&1
			rc=$?
			t1=$(date +%s)
			for ((r = 0; r < RANKS; r++)); do
				rrc=$(cat "$base.r$r.rc" 2>/dev/null)
				# no exit code: the rank never ended (mpirun's rc, e.g. the timeout)
				judge "$s/r$r" "$base.r$r.out" "$base.r$r.err" "${rrc:-$([ $rc = 0 ] && echo 1 || echo $rc)}" $((t1 - t0))
			done
		else
			EMU_SCHED=$s ASAN_OPTIONS=$ASAN_RUN LSAN_OPTIONS=$LSAN_RUN \
				UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1} \
				timeout "$TIMEOUT" "$bin" > "$base.out" 2> "$base.err"
			rc=$?
			t1=$(date +%s)
			judge "$s" "$base.out" "$base.err" $rc $((t1 - t0))
		fi
	done
done
exit $bad
