#!/usr/bin/env bats
# mfr-pack's insightface importers end to end: RecordIO sets and .bin packs
# written by the fixture writers in tests/tools (mkrec, mkbin), from faces
# made by mfr-synth.
bats_require_minimum_version 1.5.0

setup_file() {
	REPO=$(cd "$BATS_TEST_DIRNAME/../.." && pwd)
	BIN=$REPO/${MFR_BIN:-bin}
	TT=$REPO/${MFR_BUILD:-build/rel}/ttools
	export REPO BIN TT
	F=$BATS_FILE_TMPDIR
	"$BIN/mfr-synth" -n 3 -m 2 -s 5 -o "$F/s.mfr"
	"$BIN/mfr-cat" --extract "$F/img" "$F/s.mfr" 2>/dev/null
}

imgs() { ls "$BATS_FILE_TMPDIR"/img/*/*.jpg; }

@test "mfr-pack reads an insightface RecordIO set: keys, labels, property" {
	local f=($(imgs)) d=$BATS_TEST_TMPDIR
	"$TT/mkrec" "$d/train" "0:${f[0]}" "0+:${f[1]}" "1:${f[2]}" "1:${f[3]}" "2:${f[4]}" "2+:${f[5]}"
	run -0 "$BIN/mfr-pack" -l "$d/l.tsv" -o "$d/x.mfr" "$d/train.rec"
	run -0 "$BIN/mfr-cat" --stats "$d/x.mfr"
	[[ "$output" == *"records: 6"* && "$output" == *"identities: 3"* ]]
	run -0 "$BIN/mfr-cat" --list "$d/x.mfr"
	# ids are the RecordIO keys 1..6, labels as written, flagged aligned (property says 112x112)
	[ "$(echo "$output" | awk -F'\t' 'NR > 1 { printf "%s:%s:%s ", $4, $5, $6 }')" = \
	  "1:0:0x80 2:0:0x80 3:1:0x80 4:1:0x80 5:2:0x80 6:2:0x80 " ]
	[ "$(sed -n 2p "$d/l.tsv")" = "$(printf '0\t0\t2')" ]
	# the images are the same bytes: extracting gives back the input files
	"$BIN/mfr-cat" --extract "$d/out" "$d/x.mfr" 2>/dev/null
	cmp "$d/out/1/3.jpg" "${f[2]}"
}

@test "mfr-pack RecordIO: a label beyond property's class count is refused" {
	local f=($(imgs)) d=$BATS_TEST_TMPDIR
	"$TT/mkrec" "$d/train" "0:${f[0]}" "1:${f[1]}"
	echo "1,112,112" > "$d/property"
	run -1 "$BIN/mfr-pack" -o "$d/x.mfr" "$d/train.rec"
	[[ "$output" == *"property says 1 classes"* ]]
	[ ! -e "$d/x.mfr" ] && [ ! -e "$d/x.mfr.tmp" ]
}

@test "mfr-pack RecordIO: truncated and damaged .rec files fail with a byte offset" {
	local f=($(imgs)) d=$BATS_TEST_TMPDIR
	"$TT/mkrec" "$d/train" "0:${f[0]}" "1:${f[1]}" "2:${f[2]}"
	cp "$d/train.rec" "$d/good.rec"
	size=$(stat -c %s "$d/good.rec")
	head -c $((size / 2)) "$d/good.rec" > "$d/train.rec"
	run -1 "$BIN/mfr-pack" -o "$d/x.mfr" "$d/train.rec"
	[[ "$output" == *"byte"* ]]
	cp "$d/good.rec" "$d/train.rec"
	printf '\x00' | dd of="$d/train.rec" bs=1 seek=$((size / 2)) conv=notrunc 2>/dev/null
	printf '\xff\xff' | dd of="$d/train.rec" bs=1 seek=44 conv=notrunc 2>/dev/null
	run -1 "$BIN/mfr-pack" -o "$d/x.mfr" "$d/train.rec"
	[[ "$output" == *"mfr-pack: "* ]]
	[ ! -e "$d/x.mfr" ]
}

@test "mfr-pack reads .bin packs in pickle protocols 2 and 4, with their pairs" {
	local f=($(imgs)) d=$BATS_TEST_TMPDIR
	for proto in 2 4; do
		"$TT/mkbin" $proto "$d/v$proto.bin" 101 "${f[@]}"
		run -0 "$BIN/mfr-pack" --pairs "$d/p$proto.tsv" -o "$d/v$proto.mfr" "$d/v$proto.bin"
		run -0 "$BIN/mfr-cat" --stats "$d/v$proto.mfr"
		[[ "$output" == *"records: 6"* && "$output" == *"unlabelled: 6"* ]]
		[ "$(cat "$d/p$proto.tsv")" = "$(printf 'id_a\tid_b\tsame\n0\t1\t1\n2\t3\t0\n4\t5\t1')" ]
	done
	cmp "$d/v2.mfr" "$d/v2.mfr"
	"$BIN/mfr-cat" --extract "$d/out" "$d/v4.mfr" 2>/dev/null
	cmp "$d/out/unlabelled/4.jpg" "${f[4]}"
}

@test "mfr-pack .bin: a truncated pack fails and writes neither stream nor pairs" {
	local f=($(imgs)) d=$BATS_TEST_TMPDIR
	"$TT/mkbin" 4 "$d/v.bin" 10 "${f[@]:0:4}"
	head -c 3000 "$d/v.bin" > "$d/t.bin"
	run -1 "$BIN/mfr-pack" --pairs "$d/p.tsv" -o "$d/t.mfr" "$d/t.bin"
	[[ "$output" == *"t.bin"* ]]
	[ ! -e "$d/t.mfr" ] && [ ! -e "$d/p.tsv" ] && [ ! -e "$d/p.tsv.tmp" ]
}
