#!/usr/bin/env bash
# tests/gpu/run.sh — the prepared device check (DEVELOPERS.md, "GPU work"):
# on a GPU machine, with build/gpu-pkg made here by tests/gpu/build.sh and
# carried along, it
#   1. says what the machine is, finds cuDNN, cuBLAS and NCCL in the image's
#      Python packages (nvidia-*), and stops at once when a library or the
#      GPU is missing;
#   2. runs every CUDA-vs-CPU unit test (tests/unit/test_gpu_*.c), each
#      launch synchronised (MFR_CUDA_SYNC=1) so a fault names its kernel;
#   3. runs the tool tests on the GPU (tests/bats/gpu.bats);
#   4. benchmarks mfr's training step (bench_gpu_train) against PyTorch's
#      (tests/gpu/torch_ref.py) on the same GPU, network and loss, and the
#      loader alone on the machine's cores (mfr-train --loader-only),
#      where mfr's step spends its GPU time (bench_gpu_train --profile), and
#      the per-channel kernels' GB/s against a device copy (bench_gpu_elem);
# printing each table row as it comes and the whole table last. Under $OUT
# (what the device tool brings back) at most six files: machine.txt,
# units.log, gpu.bats.log, bench.log, profile.txt, summary.txt.
#
# STAGE=tests (steps 1-3), STAGE=bench (1 and 4) or all (default); QUICK=1:
# the first benchmark row only; GRID=1: all 24 rows of the issue's grid (r50
# and r100, batch 128 and 256, fp16 and bf16, 100k classes and 2M at Partial
# FC 0.1 and 1), and r50 b128 fp16 2M at 1 with the classifier's GEMMs on
# TF32 on both sides (about 15 minutes: over one call's budget, the rows
# that do not fit say so) instead of the 7 that fit one call; BUDGET: seconds this call may use (default
# 540, under the device tool's 600 per command): a step that would not fit
# what is left is skipped and says so.
#
#   device run: bash tests/gpu/run.sh      (carry: build/gpu-pkg)
set -u
cd "$(dirname "$0")/../.."
P=build/gpu-pkg
OUT=${OUT:-/tmp/mfr-gpu-out}
STAGE=${STAGE:-all}
BUDGET=${BUDGET:-540}
mkdir -p "$OUT"
T0=$(date +%s)
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
left() { echo $((BUDGET - ($(date +%s) - T0))); }
row() {
	local r
	r=$(printf '%-46s %s' "$1" "$2")
	echo "$r" | tee -a "$OUT/summary.txt"
	TABLE+=("$r")
}
declare -a TABLE
# $TMP/NAME.arch: a preset's text as mfr writes it, which torch_ref.py builds
arch_file() {
	[ -e "$TMP/$1.arch" ] || { $P/bin/mfr-model --new "$1" -o "$TMP/$1.mfrm" 2>/dev/null &&
		$P/bin/mfr-model --arch "$TMP/$1.mfrm" >"$TMP/$1.arch"; }
}
[ -d $P ] || { echo "no $P: run tests/gpu/build.sh here and carry $P"; exit 2; }

# 1. the machine; the CUDA libraries of the image's PyTorch packages, then ours
PY=$(command -v python3)
NV=$($PY - <<'PYEOF' 2>/dev/null
import glob, os, site
dirs = set()
for sp in site.getsitepackages() + [site.getusersitepackages()]:
    dirs.update(glob.glob(os.path.join(sp, "nvidia", "*", "lib")))
print(":".join(sorted(dirs)))
PYEOF
)
[ -n "$NV" ] || NV=$(ls -d /opt/torch/.venv/lib/python3*/site-packages/nvidia/*/lib 2>/dev/null | paste -sd:)
export LD_LIBRARY_PATH=$PWD/$P/lib${NV:+:$NV}${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
missing=0
{
	nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv,noheader
	echo "python: $PY; cuda libraries: ${NV:-none found}"
	# the binaries, and the libraries cuDNN and cuBLAS load at run time
	# (cuDNN 9's engines: a missing one shows only as fewer algorithms)
	for b in $P/bin/mfr-train $P/tests/test_gpu_conv $P/tests/test_gpu_pfc \
		$(echo "$NV" | tr ':' '\n' | while read -r d; do ls "$d"/libcudnn*.so.* "$d"/libcublas*.so.* 2>/dev/null; done); do
		ldd "$b" | grep 'not found' | sed "s|^|$b: |"
	done
	v=$($P/ttools/gpucount --versions 2>&1)
	echo "gpucount: $(echo "$v" | head -n 1)"
	echo "libraries: $(echo "$v" | sed -n 2p)"
} >"$OUT/machine.txt" 2>&1
cat "$OUT/machine.txt"
grep -q 'not found' "$OUT/machine.txt" && missing=1
grep -q '^gpucount: [1-9]' "$OUT/machine.txt" || missing=1
if [ $missing = 1 ]; then
	echo "stopping: a library or the GPU is missing (see above); nothing else would mean anything"
	exit 3
fi

if [ "$STAGE" != bench ]; then
	# 2. unit tests
	for t in $P/tests/test_gpu_*; do
		n=$(basename "$t")
		if [ "$(left)" -lt 60 ]; then
			row "$n" "not run: out of time"
			continue
		fi
		MFR_CUDA_SYNC=1 timeout 120 "$t" >"$TMP/$n.log" 2>&1
		rc=$?
		{ echo "==== $n (exit $rc)"; cat "$TMP/$n.log"; } >>"$OUT/units.log"
		line=$(grep -E '^[0-9]+ passed, [0-9]+ failed' "$TMP/$n.log" | tail -n 1)
		row "$n" "${line:-no result}$([ $rc -ne 0 ] && echo " (exit $rc)")"
		[ $rc -ne 0 ] && grep -E 'FAIL|worst|CUDA|cuDNN|cuBLAS|NCCL' "$TMP/$n.log" | head -n 12
	done

	# 3. tool tests on the GPU
	if [ "$(left)" -lt 120 ]; then
		row "bats gpu.bats" "not run: out of time"
	else
		tb=$(($(left) - 60))
		[ $tb -gt 300 ] && tb=300
		MFR_BIN=$P/bin MFR_BUILD=$P timeout $tb $P/bats/bin/bats --tap tests/bats/gpu.bats >"$OUT/gpu.bats.log" 2>&1
		sk=$(grep -c '^ok .*# skip' "$OUT/gpu.bats.log")
		ok=$(($(grep -c '^ok ' "$OUT/gpu.bats.log") - sk))
		nok=$(grep -c '^not ok ' "$OUT/gpu.bats.log")
		row "bats gpu.bats" "$ok passed, $nok failed, $sk skipped"
		[ "$nok" -ne 0 ] && grep -A 12 '^not ok' "$OUT/gpu.bats.log" | head -n 50
	fi
fi

if [ "$STAGE" != tests ]; then
	# 4. benchmarks: mfr and PyTorch on the same configurations (PyTorch
	# builds the same network from mfr's own .arch text)
	CONFIGS=(
		"--arch r50 --batch 128 --dtype fp16 --classes 100000 --rate 1"
		"--arch r50 --batch 128 --dtype bf16 --classes 100000 --rate 1"
		"--arch r100 --batch 128 --dtype fp16 --classes 100000 --rate 1"
		"--arch r50 --batch 256 --dtype fp16 --classes 100000 --rate 1"
		"--arch r50 --batch 128 --dtype fp16 --classes 2000000 --rate 0.1"
		"--arch r50 --batch 128 --dtype fp16 --classes 2000000 --rate 1"
		"--arch r100 --batch 256 --dtype bf16 --classes 2000000 --rate 0.1"
	)
	[ "${QUICK:-0}" = 1 ] && CONFIGS=("${CONFIGS[0]}")
	if [ "${GRID:-0}" = 1 ]; then # the issue's whole grid: r50/r100 x b128/b256 x fp16/bf16 x 3 classifiers
		CONFIGS=()
		for arch in r50 r100; do for b in 128 256; do for t in fp16 bf16; do
			for cr in "100000 --rate 1" "2000000 --rate 0.1" "2000000 --rate 1"; do
				CONFIGS+=("--arch $arch --batch $b --dtype $t --classes $cr")
			done
		done; done; done
		# the classifier's GEMMs on TF32 on both sides (PyTorch: matmul TF32)
		CONFIGS+=("--arch r50 --batch 128 --dtype fp16 --classes 2000000 --rate 1 --tf32")
	fi
	for cfg in "${CONFIGS[@]}"; do
		name=$(echo "$cfg" | sed 's/--arch //; s/--batch /b/; s/--dtype //; s/--classes /C=/; s/--rate /r=/; s/--tf32/tf32/')
		if [ "$(left)" -lt 100 ]; then
			row "$name" "not run: out of time"
			continue
		fi
		arch=$(echo "$cfg" | awk '{print $2}')
		arch_file "$arch"
		m=$(timeout 90 $P/bench/bench_gpu_train $cfg --steps 20 --warmup 5 2>>"$TMP/bench.err" | tail -n 1)
		tcfg=$(echo "$cfg" | sed "s|--arch $arch|--arch $TMP/$arch.arch|; s|--rate|--sample-rate|; s|--tf32|--tf32 on|")
		t=$(timeout 90 $PY tests/gpu/torch_ref.py $tcfg --fc-momentum sparse --dropout 0 --steps 20 --warmup 5 \
			2>>"$TMP/bench.err" | tail -n 1)
		printf '%s\n%s\n' "$m" "$t" >>"$OUT/bench.log"
		mi=$(echo "$m" | sed -n 's/.*img_s=\([0-9.]*\).*/\1/p')
		ti=$(echo "$t" | sed -n 's/.*img_s=\([0-9.]*\).*/\1/p')
		mm=$(echo "$m" | sed -n 's/.*peak_gib=\([0-9.]*\).*/\1/p')
		tm=$(echo "$t" | sed -n 's/.*peak_gib=\([0-9.]*\).*/\1/p')
		ratio=$(awk -v a="$mi" -v b="$ti" 'BEGIN { if (a > 0 && b > 0) printf "%.2f", a / b; else print "n/a" }')
		row "$name" "mfr ${mi:-fail} img/s ${mm:-?} GiB | torch ${ti:-fail} img/s ${tm:-?} GiB | x$ratio"
	done
	# the step span by span (each layer type forward and backward, the
	# classifier, the optimizer): where the next change should go
	if [ "${QUICK:-0}" != 1 ] && [ "$(left)" -ge 80 ]; then
		MFR_CONV_LOG=1 timeout 60 $P/bench/bench_gpu_train --arch r50 --batch 128 --dtype fp16 --classes 100000 \
			--rate 1 --steps 10 --warmup 5 --profile >"$OUT/profile.txt" 2>"$TMP/plans.err"
		grep '^# conv plan' "$TMP/plans.err" >>"$OUT/profile.txt"
		grep -v '^# conv plan' "$TMP/plans.err" >>"$TMP/bench.err"
		row "r50 b128 fp16 conv plans (fwd, bwd data, bwd filter)" \
			"$(grep -c 'cuDNN algo' "$TMP/plans.err") on cuDNN, $(grep -c 'direct kernels' "$TMP/plans.err") on direct kernels, $(grep -c 'faster, not taken' "$TMP/plans.err") with a faster one refused"
		arch_file r50
		[ "$(left)" -ge 60 ] && timeout 50 $PY tests/gpu/torch_ref.py --arch "$TMP/r50.arch" --batch 128 --dtype fp16 \
			--classes 100000 --sample-rate 1 --fc-momentum sparse --dropout 0 --steps 10 --warmup 5 --profile \
			>>"$OUT/profile.txt" 2>>"$TMP/bench.err"
		row "r50 b128 fp16 GPU time, top spans" "$(grep '^# .* calls ' "$OUT/profile.txt" | head -n 4 |
			sed 's/^# *[0-9.]* ms *\([0-9.]*%\) .* calls  \(.*\)$/\2 \1/' | paste -sd';' - | sed 's/;/; /g')"
	fi
	# the per-channel kernels (bn statistics, bn + PReLU, bn + add, their
	# backward) at r50's shapes against a device copy of the same bytes
	if [ "${QUICK:-0}" != 1 ] && [ "$(left)" -ge 40 ]; then
		timeout 30 $P/bench/bench_gpu_elem --batch 128 --dtype fp16 >"$TMP/elem.out" 2>>"$TMP/bench.err"
		cat "$TMP/elem.out" >>"$OUT/bench.log"
		row "per-channel kernels / device copy, GB/s (r50 b128 fp16)" \
			"$(sed -n 's/^elem summary ratio_min=\([0-9.]*\) ratio_median=\([0-9.]*\).*/min \1, median \2/p' "$TMP/elem.out")"
	fi
	# the data path alone on this machine's cores: what a step must not wait
	# for (raw pixels, as a GPU run's loader hands them out)
	if [ "${QUICK:-0}" != 1 ] && [ "$(left)" -ge 60 ]; then
		nt=$(nproc)
		$P/bin/mfr-synth -n 200 -m 20 -j "$nt" -o "$TMP/faces.mfr" --index 2>>"$TMP/bench.err"
		l=$(timeout 40 $P/bin/mfr-train --loader-only -b 128 --loader-threads "$nt" --max-steps 30 "$TMP/faces.mfr" 2>&1 |
			grep 'loader alone' | tail -n 1)
		echo "$l" >>"$OUT/bench.log"
		row "loader alone (b128, $nt decode threads)" "$(echo "$l" | sed -n 's/.*: \([0-9.]*\) img\/s per rank.*/\1 img\/s/p')"
	fi
	if [ "${QUICK:-0}" != 1 ]; then
		if [ "$(left)" -lt 150 ]; then
			row "largest classes at PFC 0.1 (r50 b128 fp16)" "not run: out of time"
		else
			m=$(timeout 70 $P/bench/bench_gpu_train --max-classes --arch r50 --batch 128 --dtype fp16 \
				2>>"$TMP/bench.err" | tail -n 1)
			t=$(timeout 70 $PY tests/gpu/torch_ref.py --max-classes --arch r50 --batch 128 --dtype fp16 \
				--fc-momentum sparse --dropout 0 --max-seconds 50 2>>"$TMP/bench.err" | tail -n 1)
			printf '%s\n%s\n' "$m" "$t" >>"$OUT/bench.log"
			row "largest classes at PFC 0.1 (r50 b128 fp16)" \
				"mfr $(echo "$m" | sed -n 's/.* classes=\([0-9]*\).*peak_gib=\([0-9.]*\).*/\1 (\2 GiB)/p') | torch $(echo "$t" | tr ' ' '\n' | grep -E '^classes=' | head -n 1 | cut -d= -f2)"
		fi
	fi
	[ -s "$TMP/bench.err" ] && { echo "==== stderr"; cat "$TMP/bench.err"; } >>"$OUT/bench.log"
fi

echo
echo "== mfr GPU check ($STAGE), $(head -n 1 "$OUT/machine.txt"), $(($(date +%s) - T0)) s"
printf '%s\n' "${TABLE[@]}"
