#!/usr/bin/env bats
# mfr-cat: options and exit codes, concatenation and pipes, damage found by
# --verify (truncation and flipped bytes, with their offsets), --stats, --list,
# selection, --shuffle (in memory and spilling), --split, --extract, indexes,
# and -o leaving no file behind on failure. Fixtures come from mfr-synth.

bats_require_minimum_version 1.5.0
load helpers

setup_file() {
	need_tool mfr-cat mfr-synth mfr-pack
	cd "$BATS_FILE_TMPDIR"
	mfr-synth -n 3 -m 4 -s 1 >a.mfr      # 12 records, labels 0..2
	mfr-synth -n 5 -m 2 -s 2 >b.mfr      # 10 records, labels 0..4
	# m.mfr: a.mfr with records 0, 1 and 5 flagged masked (checksums fixed)
	cp a.mfr m.mfr
	local off=($(offsets a.mfr))
	for k in 0 1 5; do patch_record m.mfr "${off[k]}" 12 $(($(byte m.mfr $((off[k] + 24))) | 1)); done
}

setup() {
	common_setup
	F=$BATS_FILE_TMPDIR
	cp "$F/a.mfr" "$F/b.mfr" "$F/m.mfr" .
}

# ---- usage ----

@test "mfr-cat -h and --help print the usage on stdout and exit 0" {
	for h in -h --help; do
		run -0 --separate-stderr mfr-cat $h
		[[ $output == "usage: mfr-cat "* ]] || { echo "$output"; false; }
		contains "$output" "--shuffle SEED"
		contains "$output" "options:"
		equals "$stderr" ""
	done
}

@test "mfr-cat: an unknown option is a usage error (exit 2, usage on stderr)" {
	run -2 --separate-stderr mfr-cat --bogus a.mfr
	contains "$stderr" "mfr-cat: unknown option --bogus"
	is_usage_on "$stderr"
	equals "$output" ""
	run -2 --separate-stderr mfr-cat -Z a.mfr
	contains "$stderr" "unknown option -Z"
}

@test "mfr-cat: an option without its argument is a usage error" {
	run -2 --separate-stderr mfr-cat a.mfr --shuffle
	contains "$stderr" "--shuffle needs an argument"
	is_usage_on "$stderr"
}

@test "mfr-cat: numbers out of range or not numbers exit 2 naming the option" {
	run -2 --separate-stderr mfr-cat --split 0 -o p a.mfr
	contains "$stderr" "shard count out of range 1..4096: 0"
	is_usage_on "$stderr"
	run -2 --separate-stderr mfr-cat --split 4097 -o p a.mfr
	contains "$stderr" "shard count out of range 1..4096: 4097"
	run -2 --separate-stderr mfr-cat --split three -o p a.mfr
	contains "$stderr" "shard count is not a number: 'three'"
	run -2 --separate-stderr mfr-cat --shuffle -1 a.mfr
	contains "$stderr" "shuffle seed out of range"
	run -2 --separate-stderr mfr-cat --shuffle 99999999999999999999 a.mfr
	contains "$stderr" "shuffle seed out of range"
	run -2 --separate-stderr mfr-cat --shuffle 1 --mem 0 a.mfr
	contains "$stderr" "--mem (MiB) out of range 1..16777216: 0"
	run -2 --separate-stderr mfr-cat --cap 257 a.mfr
	contains "$stderr" "--cap (MiB) out of range 1..256: 257"
	run -2 --separate-stderr mfr-cat --split 2 --split-by name -o p a.mfr
	contains "$stderr" "--split-by takes record, id or label, not 'name'"
	no_file p-0.mfr p-0.mfr.tmp
}

@test "mfr-cat: modes exclude each other (exit 2)" {
	for modes in "--verify --stats" "--list --shuffle 1" "--stats --list" \
		"--split 2 --extract d" "--reindex --verify" "--extract d --shuffle 3"; do
		run -2 --separate-stderr mfr-cat $modes -o x.mfr a.mfr
		contains "$stderr" "exclude each other"
		is_usage_on "$stderr"
	done
	no_file x.mfr x.mfr.tmp d
}

@test "mfr-cat: options that need another are usage errors" {
	run -2 --separate-stderr mfr-cat --decode a.mfr
	contains "$stderr" "--decode goes with --verify"
	run -2 --separate-stderr mfr-cat --index a.mfr
	contains "$stderr" "--index needs -o FILE"
	run -2 --separate-stderr mfr-cat --split 2 a.mfr
	contains "$stderr" "--split needs -o PREFIX"
	run -2 --separate-stderr mfr-cat --stats -o x.mfr a.mfr
	contains "$stderr" "-o goes with"
	run -2 --separate-stderr mfr-cat --names n.tsv a.mfr
	contains "$stderr" "--names goes with --extract"
	run -2 --separate-stderr mfr-cat --verify --masked a.mfr
	contains "$stderr" "selection options do not apply"
	no_file x.mfr x.mfr.tmp
}

@test "mfr-cat --reindex without a FILE operand exits 2" {
	run -2 --separate-stderr mfr-cat --reindex
	contains "$stderr" "--reindex needs FILE operands"
	is_usage_on "$stderr"
}

# ---- input errors ----

@test "mfr-cat: a nonexistent file exits 1 naming it, in every mode" {
	for mode in "" --stats --list --verify "--shuffle 1"; do
		run -1 --separate-stderr mfr-cat $mode a.mfr nope.mfr
		contains "$stderr" "'nope.mfr': No such file or directory"
	done
	run -1 --separate-stderr mfr-cat --reindex nope.mfr
	contains "$stderr" "nope.mfr"
	no_file nope.mfr.idx
}

@test "mfr-cat: empty input on stdin exits 1 with a clear message" {
	for mode in "" --stats --list --verify; do
		run -1 --separate-stderr mfr-cat $mode </dev/null
		contains "$stderr" "empty input, not a record stream"
		contains "$stderr" "<stdin>"
	done
	: >empty.mfr
	run -1 --separate-stderr mfr-cat --stats empty.mfr
	contains "$stderr" "'empty.mfr': empty input"
}

@test "mfr-cat: a file that is not a stream exits 1 (bad magic at byte 0)" {
	printf 'label\tname\tcount\n0\talice\t3\n' >text.mfr
	run -1 --separate-stderr mfr-cat --verify text.mfr
	contains "$stderr" "'text.mfr': not an mfr record stream (bad magic at byte 0)"
	run -1 --separate-stderr mfr-cat --stats text.mfr
	contains "$stderr" "bad magic at byte 0"
}

# ---- concatenation and pipes ----

@test "mfr-cat A B concatenates: records add up, identities are the union" {
	equals "$(counts a.mfr)" "12 3"
	equals "$(counts b.mfr)" "10 5"
	mfr-cat a.mfr b.mfr >ab.mfr
	equals "$(counts ab.mfr)" "22 5"
	run -0 mfr-cat --verify ab.mfr
	contains "$output" "ab.mfr: 22 FACE records"
	equals "$(ids ab.mfr | tr '\n' ' ')" "$( (ids a.mfr; ids b.mfr) | tr '\n' ' ')" "ids in order"
}

@test "mfr-cat: byte-concatenated streams are one valid input" {
	run -0 bash -c 'set -o pipefail; cat a.mfr b.mfr | mfr-cat | mfr-cat --stats'
	contains "$output" "records: 22"
	contains "$output" "identities: 5"
	cat a.mfr b.mfr a.mfr >aba.mfr
	run -0 mfr-cat --verify aba.mfr
	contains "$output" "34 FACE records"
	equals "$(counts aba.mfr)" "34 5"
}

@test "mfr-cat in pipes: stdin, - and stdout" {
	run -0 bash -c 'set -o pipefail; mfr-cat a.mfr | mfr-cat --stats'
	contains "$output" "records: 12"
	run -0 bash -c 'set -o pipefail; mfr-cat b.mfr | mfr-cat a.mfr - | mfr-cat --stats'
	contains "$output" "records: 22"
	run -0 bash -c 'mfr-cat --stats - <a.mfr'
	contains "$output" "records: 12"
	run -0 bash -c 'set -o pipefail; mfr-cat a.mfr | mfr-cat | mfr-cat --verify'
	contains "$output" "<stdin>: 12 FACE records"
}

@test "mfr-cat copies the provenance of its input and is deterministic" {
	mfr-cat a.mfr >c1.mfr
	mfr-cat a.mfr >c2.mfr
	cmp c1.mfr c2.mfr
	grep -aq "mfr-synth" c1.mfr
	grep -aq "mfr-cat" c1.mfr
}

@test "mfr-cat -o writes the file and leaves no .tmp" {
	run -0 mfr-cat -o out.mfr a.mfr b.mfr
	equals "$output" ""
	no_file out.mfr.tmp
	equals "$(counts out.mfr)" "22 5"
}

@test "mfr-cat -o: a failed run leaves neither FILE nor FILE.tmp" {
	local off=($(offsets a.mfr))
	head -c $((off[5] + 30)) a.mfr >damaged.mfr
	run -1 --separate-stderr mfr-cat -o out.mfr a.mfr damaged.mfr
	contains "$stderr" "'damaged.mfr': truncated record 5 at byte ${off[5]}"
	no_file out.mfr out.mfr.tmp
	run -1 --separate-stderr mfr-cat -o out.mfr --index damaged.mfr
	no_file out.mfr out.mfr.tmp out.mfr.idx out.mfr.idx.tmp
	run -1 --separate-stderr mfr-cat -o out.mfr --shuffle 4 damaged.mfr
	no_file out.mfr out.mfr.tmp
	run -1 --separate-stderr mfr-cat -o out.mfr a.mfr missing.mfr
	no_file out.mfr out.mfr.tmp
	run -1 --separate-stderr mfr-cat --split 3 -o part damaged.mfr
	no_file part-0.mfr part-1.mfr part-2.mfr part-0.mfr.tmp part-1.mfr.tmp part-2.mfr.tmp
}

@test "mfr-cat -o: a failed run does not clobber an existing FILE" {
	cp b.mfr out.mfr
	head -c 500 a.mfr >damaged.mfr
	run -1 mfr-cat -o out.mfr damaged.mfr
	cmp out.mfr b.mfr
	no_file out.mfr.tmp
}

# ---- --verify ----

@test "mfr-cat --verify passes a sound stream (exit 0)" {
	run -0 --separate-stderr mfr-cat --verify a.mfr b.mfr
	contains "$output" "a.mfr: 12 FACE records"
	contains "$output" "b.mfr: 10 FACE records"
	contains "$output" "ok"
	equals "$stderr" ""
}

@test "mfr-cat --verify --decode passes a sound stream" {
	run -0 --separate-stderr mfr-cat --verify --decode a.mfr
	contains "$output" "a.mfr: 12 FACE records"
	equals "$stderr" ""
}

@test "mfr-cat --verify: truncation at a record boundary is found, with its offset" {
	local off=($(offsets a.mfr)) k
	for k in 1 6 11; do
		head -c "${off[k]}" a.mfr >t.mfr
		run -1 --separate-stderr mfr-cat --verify t.mfr
		contains "$stderr" "'t.mfr': truncated stream"
		contains "$stderr" "at byte ${off[k]}"
		equals "$output" ""
	done
	# the whole stream but its END frame (12 + 8 + 4 bytes): a producer that died
	local end=$(($(size a.mfr) - 24))
	head -c $end a.mfr >t.mfr
	run -1 --separate-stderr mfr-cat --verify t.mfr
	contains "$stderr" "truncated stream: no end record"
	contains "$stderr" "at byte $end"
}

@test "mfr-cat --verify: truncation inside a record names the record and its offset" {
	local off=($(offsets a.mfr)) k cut
	for k in 0 4 11; do
		for cut in 3 12 40 200; do
			head -c $((off[k] + cut)) a.mfr >t.mfr
			run -1 --separate-stderr mfr-cat --verify t.mfr
			contains "$stderr" "'t.mfr': truncated record $k at byte ${off[k]}"
		done
	done
	# inside the END frame
	local end=$(($(size a.mfr) - 24))
	for cut in 1 15 23; do
		head -c $((end + cut)) a.mfr >t.mfr
		run -1 --separate-stderr mfr-cat --verify t.mfr
		contains "$stderr" "truncated record 12 at byte $end"
	done
}

@test "mfr-cat --verify: truncation inside the stream header is found at byte 0" {
	for cut in 1 8 19 23; do
		head -c $cut a.mfr >t.mfr
		run -1 --separate-stderr mfr-cat --verify t.mfr
		contains "$stderr" "'t.mfr': truncated stream header at byte 0"
	done
}

@test "mfr-cat --verify: truncation in a second concatenated stream counts bytes from the file start" {
	local sa off=($(offsets b.mfr))
	sa=$(size a.mfr)
	{ cat a.mfr; head -c $((off[3] + 50)) b.mfr; } >t.mfr
	run -1 --separate-stderr mfr-cat --verify t.mfr
	contains "$stderr" "truncated record 15 at byte $((sa + off[3]))"
	{ cat a.mfr; head -c 10 b.mfr; } >t.mfr
	run -1 --separate-stderr mfr-cat --verify t.mfr
	contains "$stderr" "truncated stream header at byte $sa"
	# a stream that lacks its END frame, followed by another one
	{ head -c $(($(size a.mfr) - 24)) a.mfr; cat b.mfr; } >t.mfr
	run -1 --separate-stderr mfr-cat --verify t.mfr
	contains "$stderr" "a new stream starts at byte $((sa - 24))"
}

@test "mfr-cat --verify: a flipped byte in the stream header is found at byte 0" {
	local pos
	for pos in 8 10 12 16 20 22; do
		cp a.mfr t.mfr
		flip t.mfr $pos
		run -1 --separate-stderr mfr-cat --verify t.mfr
		contains "$stderr" "'t.mfr': corrupted stream header at byte 0"
	done
	cp a.mfr t.mfr
	flip t.mfr 1
	run -1 --separate-stderr mfr-cat --verify t.mfr
	contains "$stderr" "bad magic at byte 0"
}

@test "mfr-cat --verify: a flipped byte in a frame header names the record and offset" {
	local off=($(offsets a.mfr)) k d
	for k in 0 7; do
		for d in 0 3 4 6 8 11; do
			cp a.mfr t.mfr
			flip t.mfr $((off[k] + d))
			run -1 --separate-stderr mfr-cat --verify t.mfr
			contains "$stderr" "corrupted record $k at byte ${off[k]} (frame header checksum)"
		done
	done
}

@test "mfr-cat --verify: a flipped byte in a payload or its check names the record and offset" {
	local off=($(offsets a.mfr)) k d len
	for k in 0 5 11; do
		len=$(u32 a.mfr "${off[k]}")
		for d in 12 20 $((12 + 64)) $((12 + len / 2)) $((12 + len - 1)) $((12 + len + 2)); do
			cp a.mfr t.mfr
			flip t.mfr $((off[k] + d)) 0x01
			run -1 --separate-stderr mfr-cat --verify t.mfr
			contains "$stderr" "'t.mfr': corrupted record $k at byte ${off[k]} (payload checksum)"
		done
	done
}

@test "mfr-cat --verify: a flipped byte in the END frame or in a second stream is found" {
	local end sa off=($(offsets b.mfr))
	end=$(($(size a.mfr) - 24))
	for d in 0 9 12 19 21; do
		cp a.mfr t.mfr
		flip t.mfr $((end + d))
		run -1 --separate-stderr mfr-cat --verify t.mfr
		contains "$stderr" "at byte $end"
	done
	sa=$(size a.mfr)
	cat a.mfr b.mfr >t.mfr
	flip t.mfr $((sa + off[2] + 100))
	run -1 --separate-stderr mfr-cat --verify t.mfr
	contains "$stderr" "corrupted record 14 at byte $((sa + off[2])) (payload checksum)"
}

@test "mfr-cat --verify: bytes after the END frame are refused with their offset" {
	{ cat a.mfr; printf 'trailing junk'; } >t.mfr
	run -1 --separate-stderr mfr-cat --verify t.mfr
	contains "$stderr" "'t.mfr': unexpected bytes after the end of a stream at byte $(size a.mfr)"
}

@test "mfr-cat --verify checks each file: a good one is reported ok, a bad one fails the run" {
	head -c 300 a.mfr >t.mfr
	run -1 --separate-stderr mfr-cat --verify a.mfr t.mfr b.mfr
	contains "$output" "a.mfr: 12 FACE records"
	contains "$output" "b.mfr: 10 FACE records"
	lacks "$output" "t.mfr"
	contains "$stderr" "'t.mfr': truncated"
}

@test "mfr-cat: damage found by other modes exits 1 with the offset too" {
	local off=($(offsets a.mfr))
	cp a.mfr t.mfr
	flip t.mfr $((off[3] + 300))
	for mode in "" --stats --list "--shuffle 2"; do
		run -1 --separate-stderr bash -c "mfr-cat $mode t.mfr >/dev/null"
		contains "$stderr" "corrupted record 3 at byte ${off[3]}"
	done
	run -1 --separate-stderr bash -c 'head -c 1000 a.mfr | mfr-cat --stats'
	contains "$stderr" "'<stdin>': truncated record 0 at byte ${off[0]}"
}

@test "mfr-cat --verify checks record fields, --decode the images inside sound frames" {
	local off=($(offsets a.mfr)) b
	# a mask style without the masked flag: the frame is sound, the record is not
	cp a.mfr t.mfr
	b=$(byte t.mfr $((off[2] + 24)))
	patch_record t.mfr "${off[2]}" 12 $(((b & ~1) | 2))
	run -1 --separate-stderr mfr-cat --verify t.mfr
	contains "$stderr" "'t.mfr': bad record 2 at byte ${off[2]}"
	# a broken image (its JPEG SOI marker gone): only --decode sees it
	cp a.mfr t.mfr
	patch_record t.mfr "${off[4]}" 64 0
	patch_record t.mfr "${off[4]}" 65 0
	run -0 mfr-cat --verify t.mfr
	run -1 --separate-stderr mfr-cat --verify --decode t.mfr
	contains "$stderr" "'t.mfr': bad record 4 at byte ${off[4]}"
}

@test "mfr-cat --verify: sound frames that say the wrong thing are refused with their offset" {
	local off=($(offsets a.mfr)) end
	end=$(($(size a.mfr) - 24))
	# the END frame counts one record more than the stream has
	cp a.mfr t.mfr
	patch_record t.mfr $end 0 13
	run -1 --separate-stderr mfr-cat --verify t.mfr
	contains "$stderr" "'t.mfr': corrupted end record at byte $end (it counts 13 records, the stream had 12)"
	# a reserved field set in a frame header
	cp a.mfr t.mfr
	patch_frame t.mfr "${off[3]}" 6 1
	run -1 --separate-stderr mfr-cat --verify t.mfr
	contains "$stderr" "'t.mfr': record 3 at byte ${off[3]} has reserved bits set"
	# an unknown essential frame type
	cp a.mfr t.mfr
	patch_frame t.mfr "${off[3]}" 4 3
	run -1 --separate-stderr mfr-cat --verify t.mfr
	contains "$stderr" "'t.mfr': unknown record type 0x0003 at byte ${off[3]}"
	# a DATA frame turned ancillary is skipped, so END no longer agrees
	cp a.mfr t.mfr
	patch_frame t.mfr "${off[3]}" 5 0x80
	run -1 --separate-stderr mfr-cat --verify t.mfr
	contains "$stderr" "corrupted end record at byte $end (it counts 12 records, the stream had 11)"
	# a frame length over the reader's cap is refused before anything is read
	cp a.mfr t.mfr
	patch_frame t.mfr "${off[3]}" 2 0x20
	run -1 --separate-stderr mfr-cat --verify --cap 1 t.mfr
	contains "$stderr" "'t.mfr': record 3 at byte ${off[3]} is"
	contains "$stderr" "over the 1048576-byte cap"
	run -1 --separate-stderr mfr-cat --verify t.mfr
	contains "$stderr" "'t.mfr': truncated record 3 at byte ${off[3]}"
}

@test "mfr-cat: an unknown ancillary frame is skipped" {
	# the META frame right after the 24-byte header, retyped 0x8007
	equals "$(byte a.mfr 29)" 128 "META type high byte"
	cp a.mfr t.mfr
	patch_frame t.mfr 24 4 7
	run -0 mfr-cat --verify t.mfr
	contains "$output" "t.mfr: 12 FACE records"
	equals "$(counts t.mfr)" "12 3"
}

# ---- --stats and --list ----

@test "mfr-cat --stats prints records, identities and masked" {
	run -0 --separate-stderr mfr-cat --stats a.mfr
	contains "$output" "kind: FACE"
	contains "$output" $'\nrecords: 12\n'
	contains "$output" $'\nidentities: 3\n'
	contains "$output" $'\nmasked: 0 (0.00%)\n'
	contains "$output" "images per identity: min 4, median 4, mean 4.00, max 4"
	equals "$stderr" ""
	run -0 mfr-cat --stats m.mfr
	contains "$output" $'\nmasked: 3 (25.00%)\n'
	run -0 mfr-cat --stats b.mfr
	contains "$output" $'\nrecords: 10\n'
	contains "$output" $'\nidentities: 5\n'
}

@test "mfr-cat --list prints a TSV header and one row per record" {
	run -0 --separate-stderr mfr-cat --list a.mfr
	local lines
	mapfile -t lines <<<"$output"
	equals "${lines[0]}" $'file\trecord\toffset\tid\tlabel\tflags\twidth\theight\tchannels\tencoding\tbytes' "header"
	equals "${#lines[@]}" 13 "lines"
	equals "$(awk -F'\t' 'NR > 1 && NF != 11' <<<"$output")" "" "rows without 11 fields"
	equals "$(awk -F'\t' 'NR > 1 { print $1 }' <<<"$output" | sort -u)" "a.mfr" "file column"
	equals "$(awk -F'\t' 'NR > 1 { print $2 }' <<<"$output" | tr '\n' ' ')" "0 1 2 3 4 5 6 7 8 9 10 11 " "record column"
	equals "$(labels a.mfr | sort -u | tr '\n' ' ')" "0 1 2 " "labels"
	run -0 mfr-cat --list a.mfr b.mfr
	equals "$(wc -l <<<"$output")" 23 "lines for two files"
}

# ---- selection ----

@test "mfr-cat --ids keeps the listed ids (first column, header skipped)" {
	local id=($(ids a.mfr))
	printf 'id\tnote\n%s\tx\n%s\ty\n' "${id[3]}" "${id[9]}" >keep.tsv
	run -0 mfr-cat --list --ids keep.tsv a.mfr
	equals "$(awk -F'\t' 'NR > 1 { print $4 }' <<<"$output" | tr '\n' ' ')" "${id[3]} ${id[9]} "
	run -0 bash -c 'set -o pipefail; mfr-cat --ids keep.tsv a.mfr | mfr-cat --stats'
	contains "$output" "records: 2"
}

@test "mfr-cat --labels keeps the listed labels" {
	printf '1\n' >l1.txt
	run -0 bash -c 'set -o pipefail; mfr-cat --labels l1.txt a.mfr | mfr-cat --stats'
	contains "$output" "records: 4"
	contains "$output" "identities: 1"
	equals "$(mfr-cat --labels l1.txt a.mfr b.mfr | mfr-cat --list | awk -F'\t' 'NR > 1 { print $5 }' | sort -u)" 1
	printf '0\n2\n' >l02.txt
	equals "$(mfr-cat --labels l02.txt a.mfr | mfr-cat --stats | grep -c '^records: 8$')" 1
}

@test "mfr-cat --masked and --unmasked select by the masked flag" {
	run -0 mfr-cat --list --masked m.mfr
	equals "$(awk -F'\t' 'NR > 1 { print $2 }' <<<"$output" | tr '\n' ' ')" "0 1 5 " "masked records"
	run -0 bash -c 'set -o pipefail; mfr-cat --unmasked m.mfr | mfr-cat --stats'
	contains "$output" "records: 9"
	contains "$output" "masked: 0 "
	run -0 bash -c 'set -o pipefail; mfr-cat --masked a.mfr | mfr-cat --stats'
	contains "$output" "records: 0"
	local lab
	lab=$(labels m.mfr | sed -n 6p)
	echo "$lab" >l.txt
	run -0 mfr-cat --stats --masked --labels l.txt m.mfr
	contains "$output" "records: 1"
}

@test "mfr-cat --labels and --ids read the label map of mfr-pack and a listing's id column" {
	mfr-cat --extract faces a.mfr 2>/dev/null
	mfr-pack -l map.tsv faces >p.mfr 2>/dev/null
	awk -F'\t' 'NR == 1 || $1 == 2' map.tsv >one.tsv
	run -0 mfr-cat --stats --labels one.tsv p.mfr
	contains "$output" "records: 4"
	contains "$output" "identities: 1"
	mfr-cat --list a.mfr | cut -f4 | head -n 4 >ids.tsv
	run -0 mfr-cat --stats --ids ids.tsv a.mfr
	contains "$output" "records: 3"
}

@test "mfr-cat: a bad id or label list exits 1 naming the file and line" {
	printf 'id\n3\nseven\n' >bad.txt
	run -1 --separate-stderr mfr-cat --ids bad.txt a.mfr
	contains "$stderr" "'bad.txt': line 3: not an id"
	run -1 --separate-stderr mfr-cat --labels nope.txt a.mfr
	contains "$stderr" "'nope.txt'"
}

# ---- --shuffle ----

@test "mfr-cat --shuffle keeps the records, is seeded and deterministic" {
	mfr-cat --shuffle 7 a.mfr b.mfr >s1.mfr
	mfr-cat --shuffle 7 a.mfr b.mfr >s2.mfr
	cmp s1.mfr s2.mfr
	mfr-cat --shuffle 8 a.mfr b.mfr >s3.mfr
	mfr-cat --verify s1.mfr s3.mfr
	equals "$(ids s1.mfr | sort -n | tr '\n' ' ')" "$( (ids a.mfr; ids b.mfr) | sort -n | tr '\n' ' ')" "ids"
	equals "$(labels s1.mfr | sort -n | tr '\n' ' ')" "$( (labels a.mfr; labels b.mfr) | sort -n | tr '\n' ' ')" "labels"
	[ "$(ids s1.mfr | tr '\n' ' ')" != "$(ids s3.mfr | tr '\n' ' ')" ]
	[ "$(column s1.mfr 11 | tr '\n' ' ')" != "$( (column a.mfr 11; column b.mfr 11) | tr '\n' ' ')" ]
	# -o gives the same records
	mfr-cat --shuffle 7 -o s4.mfr a.mfr b.mfr
	equals "$(ids s4.mfr | tr '\n' ' ')" "$(ids s1.mfr | tr '\n' ' ')" "order with -o"
	no_file s4.mfr.tmp
}

@test "mfr-cat --shuffle --mem 1 spills past memory and keeps every record" {
	mfr-synth --raw -n 10 -m 10 -s 3 >raw.mfr
	[ "$(size raw.mfr)" -gt $((3 << 20)) ] || { echo "raw.mfr is only $(size raw.mfr) bytes" >&2; false; }
	mfr-cat --shuffle 5 --mem 1 raw.mfr >s1.mfr
	mfr-cat --shuffle 5 --mem 1 raw.mfr >s2.mfr
	cmp s1.mfr s2.mfr
	run -0 mfr-cat --verify s1.mfr
	contains "$output" "100 FACE records"
	equals "$(ids s1.mfr | sort -n | tr '\n' ' ')" "$(ids raw.mfr | sort -n | tr '\n' ' ')" "ids"
	[ "$(ids s1.mfr | tr '\n' ' ')" != "$(ids raw.mfr | tr '\n' ' ')" ]
	# the payloads travel with their ids
	equals "$(mfr-cat --list s1.mfr | cut -f4- | sort | md5sum)" "$(mfr-cat --list raw.mfr | cut -f4- | sort | md5sum)"
}

# ---- --split ----

@test "mfr-cat --split 3 -o P writes three shards holding all the records" {
	run -0 mfr-cat --split 3 -o part a.mfr b.mfr
	local k
	for k in 0 1 2; do
		mfr-cat --verify part-$k.mfr
		equals "$(stat_of part-$k.mfr records)" "$([ $k -eq 0 ] && echo 8 || echo 7)" "records in part-$k"
	done
	no_file part-3.mfr part-0.mfr.tmp
	equals "$(cat part-0.mfr part-1.mfr part-2.mfr | mfr-cat --list | awk -F'\t' 'NR > 1 { print $4 "/" $5 }' | sort)" \
		"$(mfr-cat --list a.mfr b.mfr | awk -F'\t' 'NR > 1 { print $4 "/" $5 }' | sort)" "records of the shards"
}

@test "mfr-cat --split-by label puts each label in exactly one shard" {
	mfr-synth -n 12 -m 2 -s 4 >c.mfr
	mfr-cat --split 4 --split-by label -o part c.mfr
	local k
	for k in 0 1 2 3; do labels part-$k.mfr | sort -u; done >seen.txt
	equals "$(sort seen.txt | uniq -d)" "" "labels in two shards"
	equals "$(sort -n seen.txt | tr '\n' ' ')" "$(labels c.mfr | sort -nu | tr '\n' ' ')" "labels"
	equals "$(cat part-*.mfr | mfr-cat --stats | grep '^records:')" "records: 24"
	[ "$(stat_of part-0.mfr records)" -lt 24 ] || [ "$(stat_of part-1.mfr records)" -lt 24 ]
}

@test "mfr-cat --split-by id writes every record once" {
	mfr-cat --split 2 --split-by id -o part a.mfr
	equals "$( (ids part-0.mfr; ids part-1.mfr) | sort -n | tr '\n' ' ')" "$(ids a.mfr | sort -n | tr '\n' ' ')"
}

# ---- --extract ----

@test "mfr-cat --extract DIR then mfr-pack DIR round-trips the faces" {
	run -0 --separate-stderr mfr-cat --extract faces a.mfr
	contains "$stderr" "extracted 12 images to 'faces'"
	local id=($(ids a.mfr)) lab=($(labels a.mfr))
	[ -f "faces/${lab[0]}/${id[0]}.jpg" ] || [ -f "faces/${lab[0]}/${id[0]}.png" ]
	equals "$(find faces -type f | wc -l)" 12 "files"
	equals "$(find faces -mindepth 1 -type d | wc -l)" 3 "folders"
	mfr-pack faces >back.mfr
	equals "$(counts back.mfr)" "12 3"
	mfr-cat --verify --decode back.mfr
}

@test "mfr-cat --extract --names names the folders from a label map" {
	printf 'label\tname\tcount\n0\talice\t4\n1\tbob\t4\n2\tcarol\t4\n' >names.tsv
	mfr-cat --extract faces --names names.tsv a.mfr
	equals "$(ls faces | tr '\n' ' ')" "alice bob carol "
	equals "$(ls faces/bob | wc -l)" 4
}

# ---- indexes ----

@test "mfr-cat -o FILE --index writes FILE.idx; --reindex rebuilds it identically" {
	mfr-cat -o c.mfr --index a.mfr b.mfr
	[ -f c.mfr.idx ]
	no_file c.mfr.tmp c.mfr.idx.tmp
	equals "$(size c.mfr.idx)" $((40 + 22 * 24)) "index size"
	equals "$(od -An -tx1 -N 8 c.mfr.idx | tr -d ' ')" "894d46490d0a1a0a" "index magic"
	mv c.mfr.idx saved.idx
	run -0 mfr-cat --reindex c.mfr
	cmp c.mfr.idx saved.idx
	no_file c.mfr.idx.tmp
}

@test "mfr-cat --reindex of a damaged file exits 1 and writes no index" {
	local off=($(offsets a.mfr))
	cp a.mfr t.mfr
	flip t.mfr $((off[6] + 80))
	run -1 --separate-stderr mfr-cat --reindex t.mfr
	contains "$stderr" "'t.mfr'"
	contains "$stderr" "at byte ${off[6]}"
	no_file t.mfr.idx t.mfr.idx.tmp
}

@test "-o naming a FIFO or device writes into it, never renaming a temp file over it" {
	mfr-synth -n 3 -m 2 -o s.mfr 2>/dev/null
	mkfifo f1 f2 f3
	cat f1 > got.mfr &
	mfr-cat -o f1 s.mfr
	wait
	[ -p f1 ]
	mfr-cat --verify got.mfr
	equals "$(ids got.mfr | tr '\n' ' ')" "$(ids s.mfr | tr '\n' ' ')" "ids"
	no_file f1.tmp
	cat f2 > truth.tsv &
	mfr-synth -n 3 -m 2 --flip-ratio 0.5 --truth f2 -o s2.mfr 2>/dev/null
	wait
	[ -p f2 ]
	contains "$(head -n 1 truth.tsv)" "id	kind"
	cat f3 > m.mfrm &
	mfr-model --new "$REPO/tests/arch/small.arch" -o f3 2>/dev/null
	wait
	[ -p f3 ]
	run -0 mfr-model --info m.mfrm
	run -1 mfr-cat -o f1 --index s.mfr
	contains "$output" "an index needs a regular output file"
}
