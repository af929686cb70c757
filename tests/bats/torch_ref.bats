#!/usr/bin/env bats
# tests/gpu/torch_ref.py, the PyTorch peer of the GPU benchmark, builds its
# network from mfr's .arch text with its own parser: its canonical text and
# its --describe table must equal mfr's, preset for preset, or the benchmark
# would hold mfr against another network. Needs python3 (no torch); the
# step check on the CPU runs where PyTorch is installed and skips otherwise.

bats_require_minimum_version 1.5.0
load helpers

setup() {
	common_setup
	need_tool mfr-model mfr-embed
	command -v python3 >/dev/null || skip "python3 absent (make deps installs it)"
	REF=$REPO/tests/gpu/torch_ref.py
}

PRESETS="r18 r34 r50 r100 r200 resnet50 se-resnet50 resnext50 resnest50"

@test "torch_ref.py writes each preset's .arch text as mfr-model does" {
	for p in $PRESETS; do
		run -0 mfr-model --new $p -o $p.mfrm
		mfr-model --arch $p.mfrm > $p.arch
		python3 "$REF" --print-arch $p > $p.py.arch
		cmp $p.arch $p.py.arch || { diff $p.arch $p.py.arch | head -n 20; false; }
	done
}

@test "torch_ref.py --describe gives mfr-embed --describe's table: shapes, params and MACs" {
	for p in $PRESETS; do
		mfr-embed --describe $p > $p.desc
		python3 "$REF" --describe $p > $p.py.desc
		cmp $p.desc $p.py.desc || { diff $p.desc $p.py.desc | head -n 20; false; }
	done
	# and from a file, with a layer the presets lack
	printf 'mfr-arch 1\ninput data 3 16 16\nconv c data out=8 k=3 s=2 p=1\nbn b c\nprelu r b\nmaxpool m r k=2\nflatten f m\nlinear fc f out=16\nbn1d e fc fixgamma=1\noutput e\n' > t.arch
	mfr-embed --describe t.arch > t.desc
	python3 "$REF" --describe t.arch > t.py.desc
	cmp t.desc t.py.desc || { diff t.desc t.py.desc; false; }
}

@test "torch_ref.py refuses a bad .arch with the line, exit 2" {
	printf 'mfr-arch 1\ninput x 3 8 8\nconv c x out=4 k=3 strid=2\noutput c\n' > bad.arch
	run -2 python3 "$REF" --describe bad.arch
	contains "$output" "line 3"
}

@test "torch_ref.py --check on the CPU: the margin's gradient, the loss against float64, three steps" {
	python3 -c 'import torch' 2>/dev/null || skip "PyTorch absent (pip install torch to run the peer's check here)"
	run -0 python3 "$REF" --device cpu --check --arch r18 --batch 4 --classes 100 --expect-params 24025600
	contains "$output" "check: ok"
	run -1 python3 "$REF" --device cpu --check --arch r18 --batch 4 --classes 100 --expect-params 24025601
	contains "$output" "--expect-params says 24025601"
}
