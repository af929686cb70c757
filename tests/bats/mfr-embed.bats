#!/usr/bin/env bats
# mfr-model and mfr-embed: models made from an architecture, inspected, and
# run over FACE streams; --describe on the presets.
bats_require_minimum_version 1.5.0
load helpers

setup() {
	common_setup
	# a small network on 112x112 faces: cheap on the reference layers
	cat > tiny.arch <<'ARCH'
mfr-arch 1
input x 3 112 112
conv c1 x out=8 k=4 s=4
bn b1 c1
prelu p1 b1
conv c2 p1 out=16 k=3 s=2 p=1
bn b2 c2
gap g b2
flatten f g
linear fc f out=32
bn1d features fc fixgamma=1
output features
ARCH
}

@test "mfr-embed --describe gives insightface's MACs for the iresnets" {
	run -0 mfr-embed --describe r50
	equals "${lines[-1]}" "total: 43590848 params, 6.32G MACs"
	for p in "r18 2.62G" "r100 12.1G" "r200 23.5G"; do
		run -0 mfr-embed --describe ${p% *}
		contains "${lines[-1]}" ", ${p#* } MACs"
	done
}

@test "mfr-embed --describe MODEL.mfrm describes the model's architecture; a damaged model fails" {
	mfr-embed --describe r18 > preset.txt
	run -0 mfr-model --new r18 -o m.mfrm
	mfr-embed --describe m.mfrm > model.txt
	cmp preset.txt model.txt
	head -c 100 m.mfrm > cut.mfrm
	run -1 mfr-embed --describe cut.mfrm
	contains "$output" "truncated model"
}

@test "mfr-embed --describe: unknown preset and bad .arch fail with exit 1" {
	run -1 mfr-embed --describe r51
	contains "$output" "r51"
	printf 'mfr-arch 1\ninput x 3 8 8\nconv c x out=4 k=3 strid=2\noutput c\n' > bad.arch
	run -1 mfr-embed --describe bad.arch
	contains "$output" "line 3"
}

@test "mfr-model --new, --info and --arch" {
	run -0 mfr-model --new tiny.arch --seed 5 -o m.mfrm
	[ -f m.mfrm ] && [ ! -e m.mfrm.tmp ]
	run -0 mfr-model --info m.mfrm
	contains "$output" "input: 112x112x3 RGB"
	contains "$output" "total: "
	run -0 mfr-model --arch m.mfrm
	echo "$output" > again.arch
	run -0 mfr-model --new again.arch --seed 5 -o m2.mfrm
	cmp m.mfrm m2.mfrm
	run -0 mfr-model --new tiny.arch --seed 6 -o m3.mfrm
	run -1 cmp -s m.mfrm m3.mfrm
}

@test "mfr-model: usage errors exit 2" {
	run -2 mfr-model
	run -2 mfr-model --new tiny.arch
	run -2 mfr-model --info a --arch b
	run -2 mfr-model --new tiny.arch -o x.mfrm --seed -1
}

@test "mfr-embed writes one embedding per face with the same ids, labels and flags" {
	mfr-model --new tiny.arch -o m.mfrm 2>/dev/null
	mfr-synth -n 3 -m 3 -o faces.mfr
	run -0 mfr-embed -m m.mfrm -b 4 -o emb.mfr faces.mfr
	contains "$stderr$output" "9 faces"
	run -0 mfr-cat --stats emb.mfr
	contains "$output" "kind: EMBEDDING"
	contains "$output" "dimension: 32 (fp32)"
	contains "$output" "records: 9"
	diff <(mfr-cat --list faces.mfr | cut -f4-6) <(mfr-cat --list emb.mfr | cut -f4-6)
	# batch size does not change the result (oneDNN may pick another kernel
	# for another batch: equal to float rounding); fp16 halves the vectors
	mfr-embed -m m.mfrm -b 1 -o emb1.mfr faces.mfr 2>/dev/null
	diff <(mfr-cat --list emb.mfr | cut -f4-6) <(mfr-cat --list emb1.mfr | cut -f4-6)
	paste <(mfr-cat --list --values emb.mfr | tail -n +2 | cut -f7-) \
	      <(mfr-cat --list --values emb1.mfr | tail -n +2 | cut -f7-) |
		awk -F'\t' '{ h = NF / 2; for (i = 1; i <= h; i++) { d = $i - $(i + h); if (d < 0) d = -d;
		  m = $(i + h) < 0 ? -$(i + h) : $(i + h); if (d > 1e-5 * (m > 1 ? m : 1)) { print "differs: " $i " " $(i + h); exit 1 } } }'

	run -0 bash -c 'mfr-embed -m m.mfrm --fp16 --flip --normalize faces.mfr 2>/dev/null | mfr-cat --stats'
	contains "$output" "dimension: 32 (fp16)"
}

@test "mfr-embed is deterministic and reads stdin" {
	mfr-model --new tiny.arch -o m.mfrm 2>/dev/null
	mfr-synth -n 2 -m 2 -o faces.mfr
	mfr-embed -m m.mfrm --flip -o a.mfr faces.mfr 2>/dev/null
	mfr-embed -m m.mfrm --flip < faces.mfr > b.mfr 2>/dev/null
	diff <(mfr-cat --list --values a.mfr | cut -f4-) <(mfr-cat --list --values b.mfr | cut -f4-)
	# and the vectors are not all alike (a dead network would pass the above)
	[ "$(mfr-cat --list --values a.mfr | cut -f7 | sort -u | wc -l)" -eq 5 ]
}

@test "mfr-embed: bad inputs fail with exit 1 and a message" {
	mfr-model --new tiny.arch -o m.mfrm 2>/dev/null
	mfr-synth -n 1 -m 2 -o faces.mfr
	run -2 mfr-embed faces.mfr
	contains "$stderr$output" "no model"
	run -1 mfr-embed -m nonexistent.mfrm faces.mfr
	contains "$output" "nonexistent.mfrm"
	head -c 1000 m.mfrm > cut.mfrm
	run -1 mfr-embed -m cut.mfrm faces.mfr
	contains "$output" "truncated"
	mfr-embed -m m.mfrm -o emb.mfr faces.mfr 2>/dev/null
	run -1 mfr-embed -m m.mfrm emb.mfr
	contains "$output" "not FACE"
	# a model for 64x64 inputs has no template to align 112x112 faces to
	sed 's/input x 3 112 112/input x 3 64 64/' tiny.arch > small.arch
	mfr-model --new small.arch -o s.mfrm 2>/dev/null
	run -1 mfr-embed -m s.mfrm -o out.mfr faces.mfr
	contains "$output" "the model takes 64x64"
	[ ! -e out.mfr ] && [ ! -e out.mfr.tmp ]
}
