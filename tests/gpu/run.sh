#!/usr/bin/env bash
# tests/gpu/run.sh — the prepared device check (DEVELOPERS.md, "GPU work"):
# on a GPU machine, with build/gpu-pkg made here by tests/gpu/build.sh and
# carried along, it
#   1. says what the machine is and finds cuDNN, cuBLAS and NCCL in the
#      image's Python packages (nvidia-*), as the binaries need them;
#   2. runs every CUDA-vs-CPU unit test (tests/unit/test_gpu_*.c);
#   3. runs the tool tests on the GPU (tests/bats/gpu.bats);
#   4. benchmarks mfr's training step (bench_gpu_train) against PyTorch's
#      (tests/gpu/torch_ref.py) on the same GPU, same network and loss;
# and prints a short table last. Logs go to $OUT (the device tool brings
# them back). QUICK=1 runs the first benchmark row only.
#
#   device run: bash tests/gpu/run.sh      (carry: build/gpu-pkg)
set -u
cd "$(dirname "$0")/../.."
P=build/gpu-pkg
OUT=${OUT:-/tmp/mfr-gpu-out}
mkdir -p "$OUT"
T0=$(date +%s)
[ -d $P ] || { echo "no $P: run tests/gpu/build.sh here and carry $P"; exit 2; }

# the CUDA libraries of the image's PyTorch packages, then our own
PY=$(command -v python3)
NV=$($PY - <<'PYEOF' 2>/dev/null
import glob, os, site
dirs = set()
for sp in site.getsitepackages() + [site.getusersitepackages()]:
    for d in glob.glob(os.path.join(sp, "nvidia", "*", "lib")):
        dirs.add(d)
print(":".join(sorted(dirs)))
PYEOF
)
export LD_LIBRARY_PATH=$PWD/$P/lib${NV:+:$NV}${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
{
	nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv,noheader
	echo "python: $PY; cuda libraries: ${NV:-none found}"
	for b in $P/bin/mfr-train $P/tests/test_gpu_conv; do
		ldd $b | grep -E 'not found' && echo "MISSING LIBRARIES for $b"
	done
} 2>&1 | tee "$OUT/machine.txt"

declare -a TABLE
row() { TABLE+=("$(printf '%-44s %s' "$1" "$2")"); }

# 2. unit tests
for t in $P/tests/test_gpu_*; do
	n=$(basename "$t")
	timeout 300 "$t" >"$OUT/$n.log" 2>&1
	rc=$?
	line=$(grep -E '^[0-9]+ passed, [0-9]+ failed' "$OUT/$n.log" | tail -n 1)
	row "$n" "${line:-no result (exit $rc)}$([ $rc -ne 0 ] && echo " exit $rc")"
	if [ $rc -ne 0 ]; then
		echo "== $n (exit $rc)"
		grep -E 'FAIL|worst|error|CUDA|cuDNN|cuBLAS' "$OUT/$n.log" | head -n 25
	fi
done

# 3. tool tests on the GPU
MFR_BIN=$P/bin MFR_BUILD=$P timeout 900 $P/bats/bin/bats --tap tests/bats/gpu.bats >"$OUT/gpu.bats.log" 2>&1
ok=$(grep -c '^ok ' "$OUT/gpu.bats.log")
nok=$(grep -c '^not ok ' "$OUT/gpu.bats.log")
row "bats gpu.bats" "$ok passed, $nok failed"
[ "$nok" -ne 0 ] && grep -A 15 '^not ok' "$OUT/gpu.bats.log" | head -n 60

# 4. benchmarks: mfr and PyTorch on the same configurations
CONFIGS=(
	"--arch r50 --batch 128 --dtype fp16 --classes 100000 --rate 1"
	"--arch r50 --batch 128 --dtype bf16 --classes 100000 --rate 1"
	"--arch r50 --batch 256 --dtype fp16 --classes 100000 --rate 1"
	"--arch r100 --batch 128 --dtype fp16 --classes 100000 --rate 1"
	"--arch r50 --batch 128 --dtype fp16 --classes 2000000 --rate 0.1"
	"--arch r50 --batch 128 --dtype fp16 --classes 2000000 --rate 1"
	"--arch r100 --batch 256 --dtype bf16 --classes 2000000 --rate 0.1"
)
[ "${QUICK:-0}" = 1 ] && CONFIGS=("${CONFIGS[0]}")
for cfg in "${CONFIGS[@]}"; do
	m=$(timeout 240 $P/bench/bench_gpu_train $cfg --steps 20 --warmup 5 2>>"$OUT/bench.err" | tail -n 1)
	echo "$m" >>"$OUT/bench.txt"
	arch=$(echo "$cfg" | awk '{print $2}')
	# torch_ref builds the same network from mfr's own .arch text
	$P/bin/mfr-model --new "$arch" -o "$OUT/$arch.mfrm" 2>/dev/null
	$P/bin/mfr-model --arch "$OUT/$arch.mfrm" >"$OUT/$arch.arch" 2>/dev/null
	tcfg=$(echo "$cfg" | sed "s|--arch $arch|--arch $OUT/$arch.arch|; s|--rate|--sample-rate|")
	t=$(timeout 240 $PY tests/gpu/torch_ref.py $tcfg --fc-momentum sparse --dropout 0 --steps 20 --warmup 5 2>>"$OUT/torch.err" | tail -n 1)
	echo "$t" >>"$OUT/torch.txt"
	mi=$(echo "$m" | sed -n 's/.*img_s=\([0-9.]*\).*/\1/p')
	ti=$(echo "$t" | sed -n 's/.*img_s=\([0-9.]*\).*/\1/p')
	mm=$(echo "$m" | sed -n 's/.*peak_gib=\([0-9.]*\).*/\1/p')
	tm=$(echo "$t" | sed -n 's/.*peak_gib=\([0-9.]*\).*/\1/p')
	ratio=$(awk -v a="$mi" -v b="$ti" 'BEGIN { if (a > 0 && b > 0) printf "%.2f", a / b; else print "n/a" }')
	row "$(echo "$cfg" | sed 's/--arch //; s/--batch /b/; s/--dtype //; s/--classes /C=/; s/--rate /r=/')" \
		"mfr ${mi:-fail} img/s ${mm:-?} GiB | torch ${ti:-fail} img/s ${tm:-?} GiB | x$ratio"
done
if [ "${QUICK:-0}" != 1 ]; then
	m=$(timeout 300 $P/bench/bench_gpu_train --max-classes --arch r50 --batch 128 --dtype fp16 2>>"$OUT/bench.err" | tail -n 1)
	echo "$m" >>"$OUT/bench.txt"
	t=$(timeout 200 $PY tests/gpu/torch_ref.py --max-classes --arch r50 --batch 128 --dtype fp16 --fc-momentum sparse \
		--dropout 0 2>>"$OUT/torch.err" | tail -n 1)
	echo "$t" >>"$OUT/torch.txt"
	row "largest classes at PFC 0.1 (r50 b128 fp16)" "mfr $(echo "$m" | sed -n 's/.* classes=\([0-9]*\).*peak_gib=\([0-9.]*\).*/\1 (\2 GiB)/p') | torch $(echo "$t" | tr ' ' '\n' | grep -E '^(max_classes|classes)=' | head -n 1 | cut -d= -f2)"
fi

echo
echo "== mfr GPU check, $(head -n 1 "$OUT/machine.txt"), $(($(date +%s) - T0)) s"
printf '%s\n' "${TABLE[@]}"
