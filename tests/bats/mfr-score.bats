#!/usr/bin/env bats
# mfr-score: metrics on hand-made embeddings (ties, the two TAR semantics),
# the protocols, LFW's pairs.txt through a label map, pack -> embed -> score
# on a .bin pack, composites, JSON and curves, and bad inputs (absent ids,
# dimension mismatch, empty sets, damaged streams, misuse). Embedding
# fixtures come from tests/tools/txt2emb.
bats_require_minimum_version 1.5.0
load helpers

setup() {
	common_setup
	TT=$REPO/${MFR_BUILD:-build/rel}/ttools
	[ -x "$TT/txt2emb" ] || { echo "$TT/txt2emb is missing: make $TT/txt2emb" >&2; return 1; }
	need_tool mfr-score
}

# unit 2-d vectors at a given cosine to (1, 0): "id label flags cos"
emb2() {
	awk '{ printf "%s %s %s %.9f %.9f\n", $1, $2, $3, $4, sqrt(1 - $4 * $4) }' | "$TT/txt2emb" "$1"
}

# The hand case of test_score.c as a pairs list: genuine cosines 0.9 0.8 0.5,
# impostor cosines 0.85 0.5 0.3 0.1 (a genuine and an impostor tie at 0.5)
hand() {
	emb2 h.mfr <<'E'
0 0 0 1
1 0 0 0.9
2 0 0 0.8
3 0 0 0.5
4 1 0 0.85
5 2 0 0.5
6 3 0 0.3
7 4 0 0.1
E
	printf 'id_a\tid_b\tsame\n0\t1\t1\n0\t2\t1\n0\t3\t1\n0\t4\t0\n0\t5\t0\n0\t6\t0\n0\t7\t0\n' > h.tsv
}

@test "mfr-score: hand-computed EER, AUC and TAR@FAR; the two semantics differ at FAR 0.4" {
	hand
	run -0 mfr-score --pairs h.tsv --far 0.2,0.25,0.4 --folds 2 h.mfr
	echo "$output"
	contains "$output" "pairs: 7 pairs: 3 genuine, 4 impostor scores (all kept: every figure exact)"
	contains "$output" "EER: 29.1667% at cosine 0.500000 (exact)"
	contains "$output" "AUC: 0.791667 (exact)"
	contains "$output" "0.2        not reachable: 4 impostor scores, the lowest FAR is 1/4 = 0.25"
	# at most 0.25: threshold 0.5 (the 2nd highest impostor), TAR 2/3
	contains "$output" "0.25       0.666667   0.333333   0.25       0.500000   | 0.666667    0.25       0.800000"
	# at 0.4 the nearest point is FAR 0.5 (above the target) with TAR 1
	contains "$output" "0.4        0.666667   0.333333   0.25       0.500000   | 1.000000    0.5        0.500000"
	run -0 --separate-stderr mfr-score --pairs h.tsv --far 0.4 --json h.mfr
	equals "$(jq -r '.protocols[0].far[0].nearest.tar, .protocols[0].far[0].at_most.tar' <<<"$output" | paste -sd' ')" \
		"1 0.666666667"
	equals "$(jq -r '.protocols[0].auc.value' <<<"$output")" "0.791666667"
}

@test "mfr-score: Euclidean scores the raw vectors by distance" {
	printf '0 0 0 0 0\n1 0 0 3 4\n2 1 0 0 1\n3 2 0 0 2\n' | "$TT/txt2emb" e.mfr
	printf '0\t1\t1\n0\t2\t0\n0\t3\t0\n' > e.tsv
	# genuine distance 5, impostors 1 and 2: every genuine is farther
	run -0 mfr-score --euclidean --pairs e.tsv --far 0.5,1 e.mfr
	contains "$output" "Euclidean (-distance) similarity (accept: distance < threshold)"
	contains "$output" "AUC: 0.000000 (exact)"
	contains "$output" "0.5        0.000000   1.000000   0.5        2.000000"
}

@test "mfr-score: all, pg and ident agree with their definitions on a small set; -j does not change the output" {
	"$TT/txt2emb" -r 300 16 20 4 r.mfr
	mfr-score -p all -p pg -p ident --templates --json -j 1 --tile 64 r.mfr > j1.json 2>/dev/null
	mfr-score -p all -p pg -p ident --templates --json -j 2 --tile 64 r.mfr > j2.json 2>/dev/null
	cmp j1.json j2.json
	# other block sizes: the same pairs (the sums may round differently)
	mfr-score -p all --json --tile 37 r.mfr > j3.json 2>/dev/null
	equals "$(jq '.protocols[0].genuine, .protocols[0].impostor' j3.json | paste -sd' ')" "2100 42750"
	# all pairs: 300*299/2, genuine 20 labels of 15: 20*105
	equals "$(jq '.protocols[0].genuine, .protocols[0].impostor' j1.json | paste -sd' ')" "2100 42750"
	# pg: 100 masked probes x 20 templates of the unmasked records
	equals "$(jq '.protocols[1].genuine, .protocols[1].impostor' j1.json | paste -sd' ')" "100 1900"
	equals "$(jq '.protocols[2].probes, .protocols[2].mated, .protocols[2].gallery' j1.json | paste -sd' ')" "100 100 20"
	jq -e '.protocols[2].ranks[0].rate > 0.3 and .protocols[2].ranks[2].rate >= .protocols[2].ranks[0].rate' j1.json
}

@test "mfr-score ident: non-mated probes from a separate gallery give TPIR at FPIR" {
	"$TT/txt2emb" -r 200 16 20 4 r.mfr
	"$TT/txt2emb" -r 100 16 10 9 g.mfr
	# the gallery holds labels 0..9; probes of labels 10..19 are non-mated
	run -0 mfr-score -p ident --templates --gallery g.mfr --fpir 0.01,0.1 r.mfr
	echo "$output"
	contains "$output" "ident: 200 all probes (100 mated) in a gallery of 10 label templates"
	contains "$output" "TPIR at FPIR 0.01: not reachable: 100 non-mated probes, the lowest FPIR is 0.01" ||
		contains "$output" "TPIR at FPIR 0.01: "
	contains "$output" "TPIR at FPIR 0.1: "
	# probes that are also gallery records are refused
	run -1 mfr-score -p ident --probes all --gallery-set all r.mfr
	contains "$output" "records are both probes and gallery"
}

@test "mfr-score: LFW pairs.txt through mfr-pack's label map, folds as the file's sets" {
	# labels 0 A (3 faces), 1 B (1), 2 C (2); ids deliberately not in label order
	emb2 l.mfr <<'E'
10 0 0 1
11 1 0 0.2
12 0 0 0.95
13 2 0 0.5
14 0 0 0.9
15 2 0 0.45
E
	printf 'label\tname\tcount\n0\tA\t3\n1\tB\t1\n2\tC\t2\n' > l.tsv
	printf '2\t1\nA\t1\t2\nA\t1\tB\t1\nC\t1\t2\nB\t1\tC\t2\n' > pairs.txt
	run -0 --separate-stderr mfr-score --lfw-pairs pairs.txt -l l.tsv --json l.mfr
	echo "$output"
	equals "$(jq '.protocols[0].accuracy.folds, .protocols[0].genuine' <<<"$output" | paste -sd' ')" "2 2"
	# A 1 = id 10 and A 2 = id 12: cosine 0.95
	run -0 mfr-score --lfw-pairs pairs.txt -l l.tsv --far 0.5 l.mfr
	contains "$output" "accuracy (2 folds): "
	# an image number beyond the label's faces, and a name not in the map
	printf '1\t1\nA\t1\t4\nA\t1\tZed\t1\n' > bad.txt
	run -1 mfr-score --lfw-pairs bad.txt -l l.tsv l.mfr
	contains "$output" "2 faces of its pairs are not in 'l.mfr': A 4 (image number beyond the label's records), Zed 1 (not in the label map)"
	# a label map whose counts disagree with the stream
	printf 'label\tname\tcount\n0\tA\t4\n1\tB\t1\n2\tC\t2\n' > l2.tsv
	run -1 mfr-score --lfw-pairs pairs.txt -l l2.tsv l.mfr
	contains "$output" "label 0 (A) has 4 images, but 'l.mfr' holds 3 records with it"
}

@test "mfr-score: pairs naming absent ids fail with the count and the first few" {
	hand
	printf '0\t1\t1\n0\t100\t0\n101\t102\t0\n103\t104\t1\n105\t0\t1\n0\t100\t1\n' > bad.tsv
	run -1 mfr-score --pairs bad.tsv h.mfr
	equals "$output" "mfr-score: 'bad.tsv': 6 ids of its pairs are not in 'h.mfr' (after selection): 100, 101, 102, 103, 104, ..."
	printf '0\t1\t2\n' > bad2.tsv
	run -1 mfr-score --pairs bad2.tsv h.mfr
	contains "$output" "'bad2.tsv': line 1 at byte 0: expected 'id_a id_b same'"
}

@test "mfr-score: dimension mismatch, empty sets, damaged and wrong-kind inputs exit 1" {
	"$TT/txt2emb" -r 30 16 5 1 a.mfr
	"$TT/txt2emb" -r 30 8 5 1 b.mfr
	run -1 mfr-score a.mfr b.mfr
	contains "$output" "b.mfr"
	run -1 mfr-score -p pg --gallery b.mfr a.mfr
	contains "$output" "'b.mfr': dimension 8, but 'a.mfr' has 16"
	# no masked records: pg has no probes, all-masked no pairs
	printf '0 0 0 1 0\n1 0 0 0 1\n' | "$TT/txt2emb" u.mfr
	run -1 mfr-score -p pg u.mfr
	contains "$output" "protocol pg: no probes (masked records of the input)"
	run -1 mfr-score -p all-masked u.mfr
	contains "$output" "protocol all-masked: 0 masked records; all-vs-all needs at least 2"
	run -1 mfr-score --select masked u.mfr
	contains "$output" "no records left after the selection"
	printf '9\n' > labs.txt
	run -1 mfr-score --labels labs.txt u.mfr
	contains "$output" "no records left after the selection"
	# unlabelled records cannot do all-vs-all
	printf '0 -1 0 1 0\n1 -1 0 0 1\n' | "$TT/txt2emb" n.mfr
	run -1 mfr-score n.mfr
	contains "$output" "id 0 has no label (-1)"
	# truncated: the byte offset is named
	head -c $(($(size a.mfr) - 30)) a.mfr > t.mfr
	run -1 mfr-score t.mfr
	contains "$output" "'t.mfr': truncated"
	contains "$output" "byte"
	# FACE records are not embeddings
	need_tool mfr-synth
	mfr-synth -n 2 -m 1 -o f.mfr 2>/dev/null
	run -1 mfr-score f.mfr
	contains "$output" "FACE records, not EMBEDDING"
}

@test "mfr-score: misuse exits 2 with the usage" {
	run -2 mfr-score --bogus
	is_usage_on "$output"
	run -2 mfr-score -p nope x.mfr
	contains "$output" "unknown protocol 'nope'"
	run -2 mfr-score -p pairs x.mfr
	contains "$output" "protocol pairs needs --pairs FILE or --lfw-pairs FILE"
	run -2 mfr-score --lfw-pairs p.txt x.mfr
	contains "$output" "needs the label map"
	run -2 mfr-score --far 0,1e-3 x.mfr
	contains "$output" "--far out of range"
	run -2 mfr-score --weights 'all:tar=1' x.mfr
	contains "$output" "tar needs @X"
	run -2 mfr-score --weights 'all:rank@1=1' x.mfr
	contains "$output" "rank goes with ident"
	run -2 mfr-score --select half x.mfr
	run -0 mfr-score -h
	contains "$output" "webface260m"
}

@test "mfr-score --weights: the challenge presets and an unreachable term" {
	"$TT/txt2emb" -r 300 16 20 4 r.mfr
	run -0 mfr-score --weights insightface --far 1e-3 r.mfr
	echo "$output"
	contains "$output" "pg: 100 masked probes x 200 unmasked records"
	contains "$output" "all: all pairs of 300 all records"
	# 42750 impostors for all: FAR 1e-6 is below 1/42750
	contains "$output" "composite (insightface): 0.25 x pg:tar@0.0001 (0."
	contains "$output" " + 0.75 x all:tar@1e-06 (not reachable)"
	contains "$output" "= not available: term 2 is not reachable"
	run -0 --separate-stderr mfr-score --weights 'pg:fnmr@0.01=0.25,all-unmasked:fnmr@0.01=0.75' --json r.mfr
	jq -e '.composite.value > 0 and .composite.value < 1' <<<"$output"
	local a b
	a=$(jq '.composite.terms[0].value' <<<"$output")
	b=$(jq '.composite.terms[1].value' <<<"$output")
	equals "$(jq '.composite.value' <<<"$output")" "$(awk -v a="$a" -v b="$b" 'BEGIN { printf "%.9g", 0.25 * a + 0.75 * b }')"
}

@test "mfr-score --roc writes the curve TSV and the ROC and DET plots" {
	"$TT/txt2emb" -r 300 16 20 4 r.mfr
	run -0 mfr-score --roc out -p all -p ident --templates --gallery-set all --probes masked --gallery r.mfr r.mfr
	run -0 mfr-score --roc out r.mfr
	[ -f out.all.tsv ] && [ -f out.all.roc.svg ] && [ -f out.all.det.svg ]
	equals "$(head -n 1 out.all.tsv)" "$(printf 'far\ttar\tfnmr\tthreshold\texact')"
	# TAR never falls as the FAR rises, and the last point is FAR 1, TAR 1
	awk -F'\t' 'NR > 2 && $2 < prev { exit 1 } { prev = $2 }' out.all.tsv
	equals "$(tail -n 1 out.all.tsv | cut -f1,2)" "$(printf '1\t1')"
	grep -q '<polyline' out.all.roc.svg
	python3 -c 'import sys, xml.dom.minidom as m; [m.parse(f) for f in sys.argv[1:]]' out.all.roc.svg out.all.det.svg
}

@test "pack -> embed -> score: a .bin pack's pairs" {
	need_tool mfr-synth mfr-cat mfr-pack mfr-model mfr-embed
	mfr-synth -n 4 -m 2 -s 3 -o s.mfr
	mfr-cat --extract img s.mfr 2>/dev/null
	local f=(img/*/*.jpg)
	"$TT/mkbin" 4 v.bin 1010 "${f[@]}"
	mfr-pack --pairs p.tsv -o v.mfr v.bin 2>/dev/null
	cat > tiny.arch <<'ARCH'
mfr-arch 1
input x 3 112 112
conv c1 x out=8 k=8 s=8
gap g c1
flatten f g
linear fc f out=16
output fc
ARCH
	mfr-model --new tiny.arch --seed 3 -o m.mfrm 2>/dev/null
	mfr-embed -m m.mfrm -o e.mfr v.mfr 2>/dev/null
	run -0 mfr-score --pairs p.tsv --folds 2 e.mfr
	echo "$output"
	contains "$output" "pairs: 4 pairs: 2 genuine, 2 impostor scores"
	contains "$output" "accuracy (2 folds): "
	# through a pipe, the same table
	local file_out=$output
	run -0 --separate-stderr bash -c 'set -o pipefail; mfr-embed -m m.mfrm v.mfr 2>/dev/null | mfr-score --pairs p.tsv --folds 2'
	equals "$output" "$(grep -v '^mfr-score: pairs: 4 pairs in\|^mfr-score: read' <<<"$file_out")"
	# all-vs-all needs identities, which a .bin pack does not have
	run -1 mfr-score e.mfr
	contains "$output" "has no label (-1)"
}

@test "LFW with dlib's model: pack -> embed -> score on pairs from pairs.txt's first set" {
	need_data lfw/pairs.txt
	need_data models/dlib_resnet_tfjs/face_recognition_model-weights_manifest.json
	need_tool mfr-pack mfr-model mfr-embed
	# from set 1 of pairs.txt, the first 50 same and 50 different pairs whose
	# people have at most 8 images; the stream holds every image of those
	# people (pairs number a person's images). About 400 faces: seconds.
	awk '{ split($1, p, "/"); n[p[1]]++ } END { for (k in n) print k, n[k] }' \
		"$DATA/lfw/landmarks_aligned112.txt" > counts.txt
	awk 'NR == FNR { n[$1] = $2; next } FNR == 1 || FNR > 601 { next }
		NF == 3 && n[$1] <= 8 && s < 50 { s++; print > "same.txt" }
		NF == 4 && n[$1] <= 8 && n[$3] <= 8 && d < 50 { d++; print > "diff.txt" }' counts.txt "$DATA/lfw/pairs.txt"
	{ printf '1\t50\n'; cat same.txt diff.txt; } > pairs1.txt
	[ "$(wc -l < pairs1.txt)" -eq 101 ]
	awk 'NR > 1 { print $1; if (NF == 4) print $3 }' pairs1.txt | sort -u > people.txt
	awk 'NR == FNR { want[$1] = 1; next } { split($1, p, "/"); if (p[1] in want) print }' people.txt \
		"$DATA/lfw/landmarks_aligned112.txt" | LC_ALL=C sort > list.txt
	mfr-model --from-dlib "$DATA/models/dlib_resnet_tfjs" -o dlib.mfrm 2>/dev/null
	mfr-pack --list list.txt --root "$DATA/lfw/aligned112" --no-align -l labels.tsv -o faces.mfr 2>/dev/null
	mfr-embed -m dlib.mfrm -o emb.mfr faces.mfr 2>/dev/null
	run -0 --separate-stderr mfr-score --euclidean --lfw-pairs pairs1.txt -l labels.tsv --far 1e-2 --json emb.mfr
	# one set: no folds to train on. dlib at its own threshold 0.6 gets
	# ~99% of LFW right: here the EER must be low and the AUC high
	echo "$output" | jq -c '.protocols[0] | {eer: .eer.value, auc: .auc.value}'
	jq -e '.protocols[0].genuine == 50 and .protocols[0].impostor == 50' <<<"$output"
	jq -e '.protocols[0].eer.value < 0.05 and .protocols[0].auc.value > 0.99' <<<"$output"
}
