#!/usr/bin/env bats
# mfr-clean-intra, mfr-merge-inter and mfr-join on mfr-synth faces with
# injected label noise. The embeddings come from the fixture writer mkemb
# (tests/tools/mkemb.c), not a model: each identity has a known centre,
# flipped and outlier records sit far from their label's centre, and
# --split A:B plants one person under two labels.
bats_require_minimum_version 1.5.0
load helpers

setup_file() {
	TT=$REPO/${MFR_BUILD:-build/rel}/ttools
	cd "$BATS_FILE_TMPDIR" || return 1
	mfr-synth -n 30 -m 10 --flip-ratio 0.1 --outlier-ratio 0.05 --truth truth.tsv -o faces.mfr
	"$TT/mkemb" --truth truth.tsv --split 3:7 --split 11:20 faces.mfr > emb.mfr
	# one person under five labels, for the chaining guard
	"$TT/mkemb" --split 0:1 --split 0:2 --split 0:4 --split 0:5 faces.mfr > chain.mfr
}

setup() {
	common_setup
	need_tool mfr-synth mfr-cat mfr-clean-intra mfr-merge-inter mfr-join
	F=$BATS_FILE_TMPDIR
	TT=$REPO/${MFR_BUILD:-build/rel}/ttools
}

# the records of a stream (id, label, flags, ...) without file and offset
recs() { mfr-cat --list "$1" | cut -f 4-; }

@test "mfr-clean-intra removes the planted flips and outliers (precision and recall)" {
	run -0 mfr-clean-intra -t 0.5 --report rep.tsv -o kept.mfr "$F/emb.mfr"
	contains "$output" "300 records in"
	equals "$(head -n 1 rep.tsv)" "$(printf 'id\tlabel\tsimilarity\treason')"
	awk 'NR > 1 { print $1 }' "$F/truth.tsv" | sort > planted
	awk 'NR > 1 { print $1 }' rep.tsv | sort > removed
	tp=$(comm -12 planted removed | wc -l)
	np=$(wc -l < planted) nr=$(wc -l < removed)
	awk -v tp="$tp" -v np="$np" -v nr="$nr" 'BEGIN { printf "cleaning: precision %.3f recall %.3f\n", tp / nr, tp / np }' >&3
	[ "$np" -gt 20 ]
	[ $((tp * 100)) -ge $((nr * 95)) ] # precision >= 0.95
	[ $((tp * 100)) -ge $((np * 95)) ] # recall >= 0.95
	# the kept records are the input's, byte for byte, in order, minus the removed
	run -0 mfr-cat --list kept.mfr
	equals "$(ids kept.mfr | wc -l)" "$((300 - nr))" "kept"
	recs "$F/emb.mfr" | awk -F'\t' 'NR == FNR { gone[$1] = 1; next } FNR > 1 && !($1 in gone) { print $1, $2 }' removed - > want
	mfr-cat --list kept.mfr | awk -F'\t' 'NR > 1 { print $4, $5 }' > got
	cmp want got
	mfr-cat --list --values kept.mfr | cut -f 4- > gotv
	mfr-cat --list --values --ids <(ids kept.mfr) "$F/emb.mfr" | cut -f 4- > wantv
	cmp wantv gotv
	no_file kept.mfr.tmp rep.tsv.tmp
}

@test "mfr-clean-intra: percentile, rounds, small-class policies" {
	run -0 mfr-clean-intra -p 20 --report rep.tsv -o p.mfr "$F/emb.mfr"
	# floor(m * 0.2) at most per class: 30 classes of ~10
	n=$(($(wc -l < rep.tsv) - 1))
	[ "$n" -gt 30 ] && [ "$n" -le 75 ]
	run -0 awk -F'\t' 'NR > 1 && $4 != "percentile"' rep.tsv
	equals "$output" ""
	run -0 mfr-clean-intra -t 0.5 --iterations 10 -o r.mfr "$F/emb.mfr"
	contains "$output" "(stable)"
	# a threshold only the best survive: keep restores, drop empties, survivors keeps 1 per class
	run -0 mfr-clean-intra -t 0.95 --min-images 3 -o k.mfr "$F/emb.mfr"
	contains "$output" "300 records in, 300 kept"
	run -0 mfr-clean-intra -t 0.95 --min-images 3 --small-class drop --report d.tsv -o d.mfr "$F/emb.mfr"
	contains "$output" ", 0 out"
	[ "$(awk -F'\t' '$4 == "small-class"' d.tsv | wc -l)" -gt 200 ]
	run -0 mfr-clean-intra -t 0.95 --small-class survivors -o s.mfr "$F/emb.mfr"
	lacks "$output" "300 kept"
}

@test "mfr-clean-intra and mfr-merge-inter read stdin through a spool that is removed" {
	mkdir tmp
	mfr-clean-intra -t 0.5 -o a.mfr "$F/emb.mfr"
	TMPDIR=$PWD/tmp run -0 bash -c "set -o pipefail; cat '$F/emb.mfr' | mfr-clean-intra -t 0.5 > b.mfr"
	[ "$(recs a.mfr)" = "$(recs b.mfr)" ]
	mfr-merge-inter -t 0.6 --map m1.tsv "$F/emb.mfr" > c.mfr
	TMPDIR=$PWD/tmp run -0 bash -c "set -o pipefail; mfr-merge-inter -t 0.6 --map m2.tsv - < '$F/emb.mfr' > d.mfr"
	[ "$(recs c.mfr)" = "$(recs d.mfr)" ]
	cmp m1.tsv m2.tsv
	equals "$(ls -A tmp)" "" "spool left in TMPDIR"
}

@test "mfr-merge-inter merges the split labels and nothing else" {
	mfr-clean-intra -t 0.5 -o kept.mfr "$F/emb.mfr"
	run -0 mfr-merge-inter -t 0.6 --pairs pairs.tsv --map map.tsv -o merged.mfr kept.mfr
	contains "$output" "30 classes in, 28 out"
	run -0 awk -F'\t' 'NR > 1 && $4 == "merged" { print $1 "-" $2 }' pairs.tsv
	equals "$(echo $output)" "3-7 11-20"
	equals "$(head -n 1 map.tsv)" "$(printf 'old_label\tnew_label\timages')"
	# compact labels in the order of each group's smallest old label
	equals "$(awk -F'\t' '$1 == 7 || $1 == 3 { print $2 }' map.tsv | sort -u)" "3"
	equals "$(awk -F'\t' '$1 == 20 { print $2 }' map.tsv)" "10"
	equals "$(awk -F'\t' '$1 == 29 { print $2 }' map.tsv)" "27"
	equals "$(labels merged.mfr | sort -n | uniq | wc -l)" "28"
	equals "$(ids merged.mfr)" "$(ids kept.mfr)" "ids and order"
	# images column: the records of each old label
	equals "$(awk -F'\t' 'NR > 1 { s += $3 } END { print s }' map.tsv)" "$(ids kept.mfr | wc -l)"
}

@test "mfr-merge-inter: the size cap and mutual top-k stop chaining" {
	run -0 mfr-merge-inter -t 0.6 --max-merge 0 --map all.tsv -o all.mfr "$F/chain.mfr"
	contains "$output" "30 classes in, 26 out"
	run -0 mfr-merge-inter -t 0.6 --max-merge 3 --pairs p.tsv --map cap.tsv -o cap.mfr "$F/chain.mfr"
	contains "$output" "30 classes in, 27 out" # groups of 3 and 2
	contains "$(cat p.tsv)" "capped"
	equals "$(awk -F'\t' 'NR > 1 { n[$2]++ } END { for (g in n) if (n[g] > m) m = n[g]; print m }' cap.tsv)" "3"
	run -0 mfr-merge-inter -t 0.6 --mutual -k 1 --map mu.tsv -o mu.mfr "$F/chain.mfr"
	equals "$(awk -F'\t' 'NR > 1 { n[$2]++ } END { for (g in n) if (n[g] > m) m = n[g]; print m }' mu.tsv)" "2"
}

@test "mfr-merge-inter: the same output for every thread count, tile size and search" {
	mfr-merge-inter -t 0.6 --max-merge 3 -j 1 --pairs p1 --map m1 -o o1.mfr "$F/chain.mfr"
	mfr-merge-inter -t 0.6 --max-merge 3 -j 2 --block 16 --pairs p2 --map m2 -o o2.mfr "$F/chain.mfr"
	cmp p1 p2
	cmp m1 m2
	[ "$(recs o1.mfr)" = "$(recs o2.mfr)" ]
	for m in int8 fp32; do
		run -0 mfr-merge-inter -t 0.6 --max-merge 3 -j 2 --search $m --pairs p.$m --map m.$m -o o.$m.mfr "$F/chain.mfr"
		contains "$output" "($m, "
		cmp p1 p.$m
		cmp m1 m.$m
		[ "$(recs o1.mfr)" = "$(recs o.$m.mfr)" ]
	done
	run -2 mfr-merge-inter -t 0.6 --search int4 "$F/chain.mfr"
	contains "$output" "--search wants auto, int8, fp32 or gpu, not 'int4'"
	run -2 mfr-merge-inter -t 0.6 --search gpu --device cpu "$F/chain.mfr"
	contains "$output" "--search gpu runs on a GPU, not on --device cpu"
}

@test "mfr-join selects and relabels faces, in either order, from files or stdin" {
	mfr-clean-intra -t 0.5 -o kept.mfr "$F/emb.mfr"
	mfr-merge-inter -t 0.6 -o merged.mfr kept.mfr
	run -0 mfr-join -o j1.mfr merged.mfr "$F/faces.mfr"
	contains "$output" "merge join"
	equals "$(ids j1.mfr)" "$(ids merged.mfr)"
	equals "$(labels j1.mfr)" "$(labels merged.mfr)"
	run -0 mfr-cat --verify j1.mfr
	mfr-cat --shuffle 5 -o shuf.mfr "$F/faces.mfr"
	run -0 mfr-join -o j2.mfr merged.mfr shuf.mfr
	contains "$output" "hash join"
	equals "$(ids j2.mfr)" "$(mfr-cat --list --ids <(ids merged.mfr) shuf.mfr | awk 'NR > 1 { print $4 }')" "FACE order"
	[ "$(recs j1.mfr | sort)" = "$(recs j2.mfr | sort)" ]
	run -0 bash -c "set -o pipefail; mfr-cat shuf.mfr | mfr-join merged.mfr > j3.mfr"
	[ "$(recs j2.mfr)" = "$(recs j3.mfr)" ]
	run -0 mfr-join --method merge -o j4.mfr merged.mfr "$F/faces.mfr"
	[ "$(recs j1.mfr)" = "$(recs j4.mfr)" ]
	run -1 mfr-join --method merge -o j5.mfr merged.mfr shuf.mfr
	contains "$output" "--method hash"
	no_file j5.mfr j5.mfr.tmp
}

@test "mfr-join: ids missing from the FACE stream are an error unless allowed" {
	ids "$F/faces.mfr" | head -n 250 > some
	mfr-cat --ids some -o part.mfr "$F/faces.mfr"
	run -1 mfr-join -o j.mfr "$F/emb.mfr" part.mfr
	contains "$output" "50 ids are not in the FACE stream: 250, 251, 252, 253, 254, ..."
	no_file j.mfr j.mfr.tmp
	run -0 mfr-join --allow-missing -o j.mfr "$F/emb.mfr" part.mfr
	contains "$output" "250 written"
	contains "$output" "50 missing"
}

@test "bad inputs: clear errors, exit codes, no output files" {
	run -1 mfr-clean-intra -t 0.5 --report r.tsv -o o.mfr "$F/faces.mfr"
	contains "$output" "is a FACE stream, not EMBEDDING records"
	run -1 mfr-merge-inter -t 0.5 -o o.mfr "$F/faces.mfr"
	contains "$output" "not EMBEDDING"
	run -1 mfr-join -o o.mfr "$F/faces.mfr" "$F/faces.mfr"
	contains "$output" "not EMBEDDING"
	run -1 mfr-join -o o.mfr "$F/emb.mfr" "$F/emb.mfr"
	contains "$output" "not FACE"
	"$TT/mkemb" -d 32 "$F/faces.mfr" > d32.mfr
	run -1 mfr-clean-intra -t 0.5 --report r.tsv -o o.mfr "$F/emb.mfr" d32.mfr
	contains "$output" "d32.mfr"
	cp "$F/emb.mfr" bad.mfr
	flip bad.mfr 5000
	run -1 mfr-clean-intra -t 0.5 --report r.tsv -o o.mfr bad.mfr
	contains "$output" "'bad.mfr': corrupted"
	contains "$output" "at byte"
	run -1 bash -c "mfr-merge-inter -t 0.5 --map m.tsv -o o.mfr < bad.mfr"
	contains "$output" "corrupted"
	head -c 40000 "$F/emb.mfr" > cut.mfr
	run -1 mfr-clean-intra -t 0.5 -o o.mfr cut.mfr
	contains "$output" "truncated"
	no_file o.mfr o.mfr.tmp r.tsv r.tsv.tmp m.tsv
	run -2 mfr-clean-intra "$F/emb.mfr"
	is_usage_on "$output"
	run -2 mfr-merge-inter "$F/emb.mfr"
	run -2 mfr-merge-inter -t 2 "$F/emb.mfr"
	contains "$output" "out of range"
	run -2 mfr-join
	run -2 mfr-join - -
	run -2 mfr-clean-intra -t 0.5 --small-class some "$F/emb.mfr"
}
