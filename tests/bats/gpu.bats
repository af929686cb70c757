#!/usr/bin/env bats
# The CUDA backend through the tools, against the CPU on the same inputs:
# mfr-embed on a GPU in fp32 (TF32 off) equals the CPU to float rounding and
# fp16 stays close; mfr-train's steps on a GPU in fp32 follow the CPU's,
# fp16 steps stay near fp32, a GPU run killed and resumed ends where an
# uninterrupted one does, and MFR_GPU_PROFILE=1 prints both tools' profiles. Every test skips, saying why, without a GPU (CI);
# tests/gpu/run.sh runs them on one.
bats_require_minimum_version 1.5.0
load helpers

setup() {
	common_setup
	need_tool mfr-train mfr-synth mfr-model mfr-embed mfr-cat
	local n
	n=$("$REPO/${MFR_BUILD:-build/rel}/ttools/gpucount")
	[ "${n%% *}" -gt 0 ] || skip "no GPU: ${n#* }"
	SMALL=$REPO/tests/arch/small.arch
	NOBN=$REPO/tests/arch/small-nobn.arch
}

# close A B TOL: two EMBEDDING streams with the same records and every value
# within TOL of the stream's largest magnitude
close() {
	diff <(mfr-cat --list "$1" | cut -f4-6) <(mfr-cat --list "$2" | cut -f4-6)
	paste <(mfr-cat --list --values "$1" | tail -n +2 | cut -f7-) \
	      <(mfr-cat --list --values "$2" | tail -n +2 | cut -f7-) |
		awk -F'\t' -v t="$3" '{ h = NF / 2; for (i = 1; i <= h; i++) { a[++n] = $i; b[n] = $(i + h);
			m = $(i + h) < 0 ? -$(i + h) : $(i + h); if (m > mx) mx = m } }
		END { if (mx < 1) mx = 1; for (i = 1; i <= n; i++) { d = a[i] - b[i]; if (d < 0) d = -d; if (d > w) w = d }
		      printf "max |d| %g of scale %g\n", w, mx; exit !(n > 0 && w <= t * mx) }'
}

# same_weights A B TOL: every weight tensor of two models or checkpoints
# (momentum not compared) within TOL of max(0.1, the tensor's largest
# magnitude). The floor: a few steps from init, batch-norm biases are still
# near 0 (|b| ~ 1e-3) and their gradients are sums over N*H*W terms that
# mostly cancel, so their relative difference between two backends says
# nothing; 0.1 is the scale of the weights they are added to.
same_weights() {
	mfr-model --compare "$1" "$2" >cmp.txt || true
	awk -v t="$3" '/relative to max/ && $1 !~ /momentum/ {
			d = $0; sub(/.*max \|a-b\| /, "", d); sub(/ .*/, "", d)
			r = $0; sub(/.*relative to max \|a\| /, "", r); sub(/\).*/, "", r)
			v = (r + 0 > 0) ? d / r : 0; if (v < 0.1) v = 0.1
			if (d / v > t) { print "weights differ: " $0; bad = 1 } }
		/^(architecture|.*only in|.*different shape)/ { print; bad = 1 }
		END { exit bad }' cmp.txt
}

@test "gpu: mfr-embed on the GPU in fp32 equals the CPU; fp16 and bf16 stay close" {
	mfr-model --new "$SMALL" -o m.mfrm 2>/dev/null # (the device build has no oneDNN: the CPU side runs the reference layers)
	mfr-synth -n 4 -m 3 -o faces.mfr 2>/dev/null
	run -0 mfr-embed --device cpu -m m.mfrm --flip -o cpu.mfr faces.mfr
	run -0 mfr-embed --device cuda --dtype fp32 -m m.mfrm --flip -o g32.mfr faces.mfr
	contains "$stderr$output" "GPU 0"
	close g32.mfr cpu.mfr 1e-4
	run -0 mfr-embed --device cuda --dtype fp16 -m m.mfrm --flip -o g16.mfr faces.mfr
	close g16.mfr cpu.mfr 3e-2
	run -0 mfr-embed --device cuda --dtype bf16 -m m.mfrm --flip -o gb16.mfr faces.mfr
	close gb16.mfr cpu.mfr 1.5e-1
	# a bad device name is a usage-level failure, not a crash
	run -1 mfr-embed --device cuda:99 -m m.mfrm faces.mfr
	contains "$output" "cuda:99"
}

@test "gpu: mfr-train steps in fp32 on the GPU follow the CPU's" {
	mfr-synth -n 41 -m 10 -s 3 -o train.mfr --index 2>/dev/null
	# s = 64 on a small batch is a chaotic regime: float differences between
	# the two backends grow about tenfold a step at the default lr (seen:
	# 1e-7 after 2 steps, 1e-2 after 6). At lr 0.02 over 4 steps they stay
	# near 1e-4 (seen under dev/cuda-emu: losses within 5e-5, weights 9e-4)
	local a="-a $SMALL --dropout 0.2 --epochs 1 --max-steps 4 --lr 0.02 --log-every 1 --classes 41 -b 16 --loader-threads 1"
	run -0 mfr-train $a --device cpu --checkpoint cpu.ckpt --log cpu.tsv train.mfr
	run -0 mfr-train $a --device cuda --dtype fp32 --checkpoint gpu.ckpt --log gpu.tsv train.mfr
	contains "$output" "GPU 0"
	paste <(awk -F'\t' 'NR > 1 { print $3 }' cpu.tsv) <(awk -F'\t' 'NR > 1 { print $3 }' gpu.tsv) |
		awk '{ d = $1 - $2; if (d < 0) d = -d; if (d > 1e-3 * ($1 > 1 ? $1 : 1)) { print "loss " NR ": " $1 " vs " $2; bad = 1 } }
		     END { exit bad }'
	same_weights cpu.ckpt gpu.ckpt 3e-3
	# Partial FC at 0.3 and sparse momentum: the same sampled classes
	run -0 mfr-train $a --sample-rate 0.3 --device cpu --checkpoint pc.ckpt train.mfr
	run -0 mfr-train $a --sample-rate 0.3 --device cuda --dtype fp32 --checkpoint pg.ckpt train.mfr
	same_weights pc.ckpt pg.ckpt 3e-3
}

@test "gpu: an fp16 and a bf16 training step stay near the fp32 step" {
	mfr-synth -n 41 -m 10 -s 3 -o train.mfr --index 2>/dev/null
	local a="-a $SMALL --dropout 0 --epochs 1 --max-steps 1 --lr 0.02 --log-every 1 --classes 41 -b 16 --loader-threads 1 --device cuda"
	run -0 mfr-train $a --dtype fp32 --checkpoint f32.ckpt train.mfr
	# (s = 64 makes embedding gradients of order 1: at 2^16 they would overflow fp16)
	run -0 mfr-train $a --dtype fp16 --loss-scale 1024 --checkpoint f16.ckpt train.mfr
	contains "$output" "loss scaling"
	lacks "$output" "skipped by fp16 overflow" # else fp16 made no update at all
	same_weights f32.ckpt f16.ckpt 2e-2
	run -0 mfr-train $a --dtype bf16 --checkpoint b16.ckpt train.mfr
	same_weights f32.ckpt b16.ckpt 1e-1
}

@test "gpu: MFR_GPU_PROFILE=1 reports where mfr-embed's and mfr-train's GPU time went" {
	mfr-model --new "$SMALL" -o m.mfrm 2>/dev/null
	mfr-synth -n 4 -m 3 -o faces.mfr 2>/dev/null
	mfr-synth -n 41 -m 10 -s 3 -o train.mfr --index 2>/dev/null
	MFR_GPU_PROFILE=1 run -0 --separate-stderr mfr-embed --device cuda -m m.mfrm -o e.mfr faces.mfr
	contains "$stderr" "# GPU time by span on"
	contains "$stderr" " ms per batch over "
	contains "$stderr" "calls  conv fwd"
	lacks "$stderr" "conv bwd"
	MFR_GPU_PROFILE=1 run -0 --separate-stderr mfr-train -a $SMALL --epochs 1 --max-steps 3 -b 16 --device cuda train.mfr -o t.mfrm
	contains "$stderr" " ms per step over 3 steps"
	contains "$stderr" "calls  conv bwd"
	contains "$stderr" "calls  classifier fwd+bwd"
	# without it: no table
	run -0 --separate-stderr mfr-train -a $SMALL --epochs 1 --max-steps 1 -b 16 --device cuda train.mfr -o t.mfrm
	lacks "$stderr" "GPU time by span"
}

@test "gpu: fp16 training learns (the loss falls) with the default loss scale" {
	mfr-synth -n 41 -m 10 -s 3 -o train.mfr --index 2>/dev/null
	run -0 mfr-train -a $SMALL --epochs 6 -b 32 --lr 0.4 --device cuda --dtype fp16 --log l.tsv --log-every 5 -o f16.mfrm train.mfr
	first=$(awk -F'\t' 'NR == 2 { print $3 }' l.tsv)
	last=$(awk -F'\t' 'END { print $3 }' l.tsv)
	awk -v a="$first" -v b="$last" 'BEGIN { exit !(b < a * 0.8) }'
}

@test "gpu: a GPU run killed and resumed ends where an uninterrupted one does" {
	mfr-synth -n 41 -m 10 -s 3 -o train.mfr --index 2>/dev/null
	local a="-a $SMALL --epochs 3 -b 8 --dropout 0.2 --warmup 0.5 --decay-epochs 1,2 --log-every 10 --device cuda --dtype fp32"
	export MFR_CUDNN_DETERMINISTIC=1
	mfr-train $a -o full.mfrm --checkpoint full.ckpt train.mfr 2>/dev/null
	mfr-train $a -o part.mfrm --checkpoint part.ckpt --save-every 20 train.mfr 2>/dev/null &
	local pid=$!
	while [ ! -e part.ckpt ] && kill -0 $pid 2>/dev/null; do sleep 0.05; done
	kill -9 $pid 2>/dev/null || true
	wait $pid 2>/dev/null || true
	[ -e part.ckpt ]
	no_file part.ckpt.tmp
	run -0 mfr-train $a -o part.mfrm --checkpoint part.ckpt --save-every 20 --resume part.ckpt train.mfr
	contains "$output" "resumed at step"
	# deterministic cuDNN algorithms and a fixed reduction order: the same
	# weights up to the order of float sums that differ between the two runs
	same_weights full.ckpt part.ckpt 1e-5
}

# same_numbers A B TOL: two texts with the same words, where every number
# (a trailing % dropped) is within TOL of its counterpart (relative above 1):
# mfr-score's tables from two GEMMs whose float sums round apart
same_numbers() {
	[ "$(tr -s ' \t' '\n\n' <"$1" | wc -l)" = "$(tr -s ' \t' '\n\n' <"$2" | wc -l)" ] ||
		{ diff "$1" "$2"; return 1; }
	paste -d'\n' <(tr -s ' \t' '\n\n' <"$1") <(tr -s ' \t' '\n\n' <"$2") |
		awk -v t="$3" 'NR % 2 { a = $0; next }
		{ b = $0; x = a; y = b; sub(/%$/, "", x); sub(/%$/, "", y)
		  num = "^[-+]?([0-9]+[.]?[0-9]*|[.][0-9]+)([eE][-+]?[0-9]+)?$"
		  if (x ~ num && y ~ num) { d = x - y; if (d < 0) d = -d; m = y < 0 ? -y : y
			if (d > t * (m > 1 ? m : 1)) { print "differ: " a " vs " b; bad = 1 }
			if (d > w) w = d }
		  else if (a != b) { print "differ: [" a "] vs [" b "]"; bad = 1 } }
		END { printf "max |d| %g\n", w; exit bad }'
}

@test "gpu: mfr-score and mfr-merge-inter with --device cuda give the CPU's tables and merges" {
	need_tool mfr-score mfr-merge-inter
	local TT=$REPO/${MFR_BUILD:-build/rel}/ttools
	# mfr-score: 900 random 512-d unit vectors in 40 labels, every third
	# masked; small tiles and 4 workers, so many blocks are asked for at once.
	# Scores agree to float rounding (a few 1e-7), so thresholds agree to
	# 1e-6 and counts, rates, EER and AUC are equal but where a genuine and
	# an impostor score lie within that of each other (none here). Not
	# compared: the nearest-FAR rule (right of the '|': sklearn's
	# drop_intermediate keeps a ROC vertex wherever two impostor scores are
	# equal, and which scores round to equal floats differs between GEMMs).
	"$TT/txt2emb" -r 900 512 40 7 r.mfr
	local p="-p all -p all-masked -p pg -p ident --far 1e-4,1e-3,1e-2,1e-1 -j 4" t
	for t in "--tile 128" "--tile 200 --templates"; do
		run -0 --separate-stderr mfr-score $p $t --device cpu r.mfr
		echo "$output" | cut -d'|' -f1 >cpu.txt
		run -0 --separate-stderr mfr-score $p $t --device cuda r.mfr
		echo "$output" | cut -d'|' -f1 >gpu.txt
		contains "$stderr" "GPU 0"
		contains "$stderr" "cuBLAS fp32"
		same_numbers cpu.txt gpu.txt 2e-6
	done
	# the same on mkemb's embeddings (512-d; one identity under five labels)
	mfr-synth -n 60 -m 6 -o faces.mfr 2>/dev/null
	"$TT/mkemb" -d 512 --split 3:7 --split 0:1 --split 0:2 --split 0:4 faces.mfr >emb.mfr
	mfr-score -p all --device cpu emb.mfr 2>/dev/null | cut -d'|' -f1 >c2.txt
	mfr-score -p all --device cuda emb.mfr 2>/dev/null | cut -d'|' -f1 >g2.txt
	same_numbers c2.txt g2.txt 2e-6
	# mfr-merge-inter: the GPU's tiles (many, of 16) give the CPU's pairs,
	# map and records exactly (every candidate is rescored on the CPU)
	mfr-merge-inter -t 0.6 --max-merge 3 --search fp32 --pairs p.cpu --map m.cpu -o o.cpu.mfr emb.mfr 2>/dev/null
	run -0 mfr-merge-inter -t 0.6 --max-merge 3 --search gpu --device cuda --block 16 --pairs p.gpu --map m.gpu \
		-o o.gpu.mfr emb.mfr
	contains "$output" "(gpu, "
	cmp p.cpu p.gpu
	cmp m.cpu m.gpu
	cmp <(mfr-cat --list o.cpu.mfr | cut -f 4-) <(mfr-cat --list o.gpu.mfr | cut -f 4-)
	[ "$(wc -l <p.gpu)" -gt 2 ] # the splits were found
	# auto on a GPU device picks the GPU; int8 stays on the CPU
	run -0 mfr-merge-inter -t 0.6 --max-merge 3 --device cuda --pairs p.auto -o o.auto.mfr emb.mfr
	contains "$output" "(gpu, "
	cmp p.cpu p.auto
	run -0 mfr-merge-inter -t 0.6 --max-merge 3 --device cuda --search int8 --pairs p.int8 -o o.int8.mfr emb.mfr
	lacks "$output" "(gpu, "
	cmp p.cpu p.int8
	run -1 mfr-score --device cuda:99 r.mfr
	contains "$output" "cuda:99"
}
