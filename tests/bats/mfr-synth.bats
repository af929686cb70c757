#!/usr/bin/env bats
# mfr-synth: options and exit codes, the stream it writes (sound, counted,
# ids and labels as documented), determinism (seed, threads, identity k
# independent of N), injected label noise against its --truth list, and -o
# leaving nothing behind on failure.

bats_require_minimum_version 1.5.0
load helpers

setup_file() {
	need_tool mfr-synth mfr-cat
}

setup() {
	common_setup
}

# images DIR: "LABEL/ID.ext CKSUM" for every extracted image, sorted
images() {
	(cd "$1" && find . -type f | sort | while read -r f; do echo "$f $(cksum <"$f")"; done)
}

# ---- usage ----

@test "mfr-synth -h and --help print the usage and the options on stdout" {
	for h in -h --help; do
		run -0 --separate-stderr mfr-synth $h
		[[ $output == "usage: mfr-synth "* ]] || { echo "$output"; false; }
		for o in "-n, --identities N" "-m, --images M" "-s, --seed S" "--raw" "--flip-ratio R" \
			"--outlier-ratio R" "--truth FILE" "-o, --output FILE" "--index" "-j, --threads T"; do
			contains "$output" "$o"
		done
		equals "$stderr" ""
	done
}

@test "mfr-synth: an unknown option or an operand is a usage error (exit 2)" {
	run -2 --separate-stderr mfr-synth --bogus
	contains "$stderr" "mfr-synth: unknown option --bogus"
	is_usage_on "$stderr"
	equals "$output" ""
	run -2 --separate-stderr mfr-synth -n 2 faces.mfr
	contains "$stderr" "unexpected operand 'faces.mfr'"
	is_usage_on "$stderr"
	run -2 --separate-stderr mfr-synth -n
	contains "$stderr" "needs an argument"
	run -2 --separate-stderr mfr-synth -n 1 -m 1 --index
	contains "$stderr" "--index needs -o FILE"
}

@test "mfr-synth: numbers out of range exit 2 naming the option" {
	local args want
	while IFS='|' read -r args want; do
		run -2 --separate-stderr mfr-synth $args -o out.mfr
		contains "$stderr" "$want"
		is_usage_on "$stderr"
		equals "$output" ""
	done <<-'EOF'
		-n 0|number of identities out of range 1..100000000: 0
		-n 100000001|number of identities out of range
		-n many|number of identities is not a number: 'many'
		-m 0|images per identity out of range 1..1000000: 0
		-s -1|seed out of range
		-q 0|JPEG quality out of range 1..100: 0
		-q 101|JPEG quality out of range 1..100: 101
		-j 0|threads out of range 1..256: 0
		--difficulty 1.5|difficulty out of range 0..1: 1.5
		--variation -0.1|variation out of range 0..2: -0.1
		--flip-ratio 1.5|flip ratio out of range 0..1: 1.5
		--flip-ratio -0.1|flip ratio out of range 0..1: -0.1
		--flip-ratio nan|flip ratio is not a number: 'nan'
		--flip-ratio 0.1x|flip ratio is not a number: '0.1x'
		--outlier-ratio 2|outlier ratio out of range 0..1: 2
		--flip-ratio 0.6 --outlier-ratio 0.5|add up to more than 1
		-n 1 --flip-ratio 0.1|--flip-ratio needs at least 2 identities
		-n 100000000 -m 1000000|too many
	EOF
	no_file out.mfr out.mfr.tmp
}

# ---- output ----

@test "mfr-synth with no options writes a sound FACE stream (100 x 10)" {
	run -0 --separate-stderr bash -c 'set -o pipefail; mfr-synth | mfr-cat --verify --decode'
	contains "$output" "<stdin>: 1000 FACE records"
	contains "$output" "ok"
}

@test "mfr-synth -n 3 -m 4: 12 records of 3 identities, ids identity*M + image" {
	mfr-synth -n 3 -m 4 >s.mfr
	equals "$(counts s.mfr)" "12 3"
	mfr-cat --verify --decode s.mfr
	equals "$(ids s.mfr | tr '\n' ' ')" "0 1 2 3 4 5 6 7 8 9 10 11 " "ids"
	equals "$(labels s.mfr | tr '\n' ' ')" "0 0 0 0 1 1 1 1 2 2 2 2 " "labels"
	# synthetic, landmarks, aligned; 112x112 RGB JPEG
	equals "$(column s.mfr 6 | sort -u)" "0xe0" "flags"
	equals "$(mfr-cat --list s.mfr | awk -F'\t' 'NR > 1 { print $7 "x" $8 "x" $9, $10 }' | sort -u)" "112x112x3 jpeg"
	run -0 mfr-cat --stats s.mfr
	contains "$output" "synthetic: 12"
	contains "$output" "landmarks: 12"
	contains "$output" "masked: 0 "
}

@test "mfr-synth --raw writes raw pixels; -q sets the JPEG quality" {
	mfr-synth -n 2 -m 2 --raw >r.mfr
	equals "$(column r.mfr 10 | sort -u)" "raw" "encoding"
	equals "$(column r.mfr 11 | sort -u)" $((112 * 112 * 3)) "image bytes"
	mfr-cat --verify --decode r.mfr
	mfr-synth -n 2 -m 2 -q 30 >q30.mfr
	mfr-synth -n 2 -m 2 -q 98 >q98.mfr
	local lo hi
	lo=$(column q30.mfr 11 | awk '{ s += $1 } END { print s }')
	hi=$(column q98.mfr 11 | awk '{ s += $1 } END { print s }')
	[ "$lo" -lt "$hi" ] || { echo "q30 $lo bytes, q98 $hi bytes" >&2; false; }
}

@test "mfr-synth: the same seed gives the same bytes, another seed other faces" {
	mfr-synth -n 3 -m 2 -s 5 >a.mfr
	mfr-synth -n 3 -m 2 -s 5 >b.mfr
	cmp a.mfr b.mfr
	mfr-synth -n 3 -m 2 -s 6 >c.mfr
	run -1 cmp -s a.mfr c.mfr
	mfr-cat --extract da a.mfr 2>/dev/null
	mfr-cat --extract dc c.mfr 2>/dev/null
	local f same=0
	for f in da/*/*; do cmp -s "$f" "dc/${f#da/}" && same=$((same + 1)); done
	equals "$same" 0 "images equal across seeds"
	# -o gives the same records as stdout
	mfr-synth -n 3 -m 2 -s 5 -o o.mfr
	no_file o.mfr.tmp
	mfr-cat --extract do o.mfr 2>/dev/null
	diff -r da do
}

@test "mfr-synth: the faces do not depend on the thread count" {
	mfr-synth -n 3 -m 50 -s 2 -j 1 >j1.mfr
	mfr-synth -n 3 -m 50 -s 2 -j 3 >j3.mfr
	mfr-cat --extract d1 j1.mfr 2>/dev/null
	mfr-cat --extract d3 j3.mfr 2>/dev/null
	equals "$(images d1 | wc -l)" 150 "images"
	diff -r d1 d3
}

@test "mfr-synth: identity k is the same whatever the number of identities" {
	mfr-synth -n 2 -m 3 -s 9 >n2.mfr
	mfr-synth -n 5 -m 3 -s 9 >n5.mfr
	mfr-cat --extract d2 n2.mfr 2>/dev/null
	mfr-cat --extract d5 n5.mfr 2>/dev/null
	diff -r d2/0 d5/0
	diff -r d2/1 d5/1
}

@test "mfr-synth -o FILE --index writes an index that --reindex reproduces" {
	mfr-synth -n 2 -m 3 -o s.mfr --index
	equals "$(size s.mfr.idx)" $((40 + 6 * 24)) "index size"
	no_file s.mfr.tmp s.mfr.idx.tmp
	mv s.mfr.idx saved.idx
	mfr-cat --reindex s.mfr
	cmp s.mfr.idx saved.idx
}

# ---- label noise and its truth ----

# check_truth STREAM TRUTH M: every truth row matches its record, and every
# other record carries its own identity's label (id / M)
check_truth() {
	mfr-cat --list "$1" | awk -F'\t' 'NR > 1 { print $4 "\t" $5 }' >labels.tsv
	awk -F'\t' -v m="$3" '
		FNR == NR { label[$1] = $2; n++; next }
		FNR == 1 { if ($0 != "id\tkind\tlabel\ttrue_label") { print "bad header: " $0; bad = 1 }; next }
		{
			rows++
			if (!($1 in label)) { print "id " $1 " is not in the stream"; bad = 1; next }
			if (label[$1] != $3) { print "id " $1 ": stream label " label[$1] ", truth " $3; bad = 1 }
			if ($2 == "flip" && ($4 != int($1 / m) || $3 == $4)) { print "bad flip row: " $0; bad = 1 }
			if ($2 == "outlier" && $4 != -1) { print "bad outlier row: " $0; bad = 1 }
			if ($2 != "flip" && $2 != "outlier") { print "bad kind: " $0; bad = 1 }
			if (NF != 4) { print "not 4 fields: " $0; bad = 1 }
			noisy[$1] = 1
		}
		END {
			for (id in label)
				if (!(id in noisy) && label[id] != int(id / m)) { print "id " id " relabelled without a truth row"; bad = 1 }
			exit bad
		}' labels.tsv "$2" >&2
}

@test "mfr-synth --flip-ratio --truth: flipped labels match the truth list" {
	mfr-synth -n 10 -m 10 -s 3 --flip-ratio 0.3 --truth truth.tsv -o s.mfr
	equals "$(head -n 1 truth.tsv)" $'id\tkind\tlabel\ttrue_label' "header"
	local n
	n=$(awk 'NR > 1' truth.tsv | wc -l)
	[ "$n" -ge 15 ] && [ "$n" -le 45 ] || { echo "$n flips in 100 records at ratio 0.3" >&2; false; }
	equals "$(awk -F'\t' 'NR > 1 { print $2 }' truth.tsv | sort -u)" "flip" "kinds"
	check_truth s.mfr truth.tsv 10
	no_file truth.tsv.tmp
	# the truth's ids select exactly the flipped records
	run -0 mfr-cat --stats --ids truth.tsv s.mfr
	contains "$output" "records: $n"
	# a flip keeps the face: the image is the one the clean stream has
	mfr-synth -n 10 -m 10 -s 3 >clean.mfr
	equals "$(column s.mfr 11 | tr '\n' ' ')" "$(column clean.mfr 11 | tr '\n' ' ')" "image sizes"
}

@test "mfr-synth --outlier-ratio --truth: outliers carry true_label -1 and new faces" {
	mfr-synth -n 10 -m 10 -s 3 --outlier-ratio 0.2 --truth truth.tsv >s.mfr
	local n
	n=$(awk 'NR > 1' truth.tsv | wc -l)
	[ "$n" -ge 8 ] && [ "$n" -le 35 ] || { echo "$n outliers in 100 records at ratio 0.2" >&2; false; }
	equals "$(awk -F'\t' 'NR > 1 { print $2 }' truth.tsv | sort -u)" "outlier" "kinds"
	check_truth s.mfr truth.tsv 10
	equals "$(counts s.mfr)" "100 10"
	mfr-cat --verify --decode s.mfr
	# an outlier's image is not its slot's clean image
	mfr-synth -n 10 -m 10 -s 3 >clean.mfr
	mfr-cat --extract dn s.mfr 2>/dev/null
	mfr-cat --extract dc clean.mfr 2>/dev/null
	local id label same=0
	while IFS=$'\t' read -r id _ label _; do
		cmp -s "dn/$label/$id.jpg" "dc/$((id / 10))/$id.jpg" && same=$((same + 1))
	done < <(awk 'NR > 1' truth.tsv)
	equals "$same" 0 "outliers with their clean image"
}

@test "mfr-synth: both kinds of noise together, and a truth list with no noise" {
	mfr-synth -n 8 -m 5 -s 4 --flip-ratio 0.25 --outlier-ratio 0.25 --truth truth.tsv >s.mfr
	equals "$(awk -F'\t' 'NR > 1 { print $2 }' truth.tsv | sort -u | tr '\n' ' ')" "flip outlier " "kinds"
	check_truth s.mfr truth.tsv 5
	mfr-synth -n 3 -m 2 --truth none.tsv >s.mfr
	equals "$(cat none.tsv)" $'id\tkind\tlabel\ttrue_label' "truth without noise"
}

# ---- failures ----

@test "mfr-synth: an output in a missing folder exits 1 naming it" {
	run -1 --separate-stderr mfr-synth -n 1 -m 1 -o nodir/s.mfr
	contains "$stderr" "nodir/s.mfr"
	run -1 --separate-stderr bash -c 'mfr-synth -n 1 -m 1 --truth nodir/t.tsv >/dev/null'
	contains "$stderr" "nodir/t.tsv"
}

@test "mfr-synth -o: a failed run leaves neither FILE nor FILE.tmp" {
	run -1 --separate-stderr mfr-synth -n 2 -m 2 --flip-ratio 0.5 -o s.mfr --truth nodir/t.tsv
	contains "$stderr" "nodir/t.tsv"
	no_file s.mfr s.mfr.tmp
}

@test "mfr-synth reads nothing: stdin may be empty" {
	run -0 bash -c 'set -o pipefail; mfr-synth -n 1 -m 2 </dev/null | mfr-cat --stats'
	contains "$output" "records: 2"
}
