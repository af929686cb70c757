#!/usr/bin/env bash
# tests/gpu/build.sh — builds, on this machine, what tests/gpu/run.sh runs on
# a GPU machine (the device tool's H100/H200, whose image has the CUDA driver,
# cuDNN, cuBLAS and NCCL in PyTorch's Python packages but none of mfr's other
# libraries): the tools, the GPU unit tests, the fixture tools and the GPU
# benchmark for sm_90 only, without oneDNN and MPI (one GPU, one rank), and
# without debug info, into build/dev; then gathers the runnables, the shared libraries the
# device lacks (TurboJPEG, libpng) and bats into build/gpu-pkg: carry that.
set -euo pipefail
cd "$(dirname "$0")/../.."
D=build/dev
make -j2 BUILD=$D BIN=$D/bin CUDA=yes CUDA_ARCH=90 DNNL=no MPI=no CFLAGS=-O2 NVCCFLAGS=-O3 \
	all $D/tests/test_gpu_elem $D/tests/test_gpu_spatial $D/tests/test_gpu_conv $D/tests/test_gpu_attn \
	$D/tests/test_gpu_net $D/tests/test_gpu_pfc $D/tests/test_gpu_train $D/tests/test_gpu_sim \
	$D/ttools/gpucount $D/ttools/mkemb $D/ttools/txt2emb $D/bench/bench_gpu_train $D/bench/bench_gpu_elem >/dev/null
# what travels: the runnables, the missing libraries and bats, in one folder
P=build/gpu-pkg
rm -rf $P && mkdir -p $P/lib $P/bats/bin $P/bats/lib $P/bats/libexec
cp -r $D/bin $D/tests $D/ttools $D/bench $P/
rm -rf $P/tests/unit $P/tests/fuzz $P/tests/tools $P/tests/bench
for so in libturbojpeg.so.0 libpng16.so.16; do
	cp -L "$(ldconfig -p | awk -v n=$so '$1 == n { print $NF; exit }')" $P/lib/
done
cp -r /usr/lib/bats-core $P/bats/lib/ && cp -r /usr/libexec/bats-core $P/bats/libexec/ && cp /usr/bin/bats $P/bats/bin/
find $P -type f -perm -u+x -exec strip {} + 2>/dev/null || true
echo "carry $P: $(du -sh $P | cut -f1)"
