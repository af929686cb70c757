#!/usr/bin/env bats
# mfr-maskaug: options and exit codes; determinism (seed, threads, shards);
# the masked share within a binomial bound; flags and style codes against
# the audit; --append (derived ids, sources untouched); sizes, encodings and
# channels; refusals (no landmarks on a non-112 face, tiny images, damaged
# streams) with exit 1, the byte offset, and no -o file left behind; user
# templates from ../shared/data/masks when present.

bats_require_minimum_version 1.5.0
load helpers

setup_file() {
	need_tool mfr-maskaug mfr-synth mfr-cat
	export TT=$REPO/${MFR_BUILD:-build/rel}/ttools
	[ -x "$TT/mkface" ] || { echo "$TT/mkface is missing: make test builds it" >&2; return 1; }
	export FACES=$BATS_FILE_TMPDIR/faces.mfr
	mfr-synth -n 60 -m 10 -s 5 -o "$FACES"
}

setup() {
	common_setup
}

# images DIR: "ID.ext CKSUM" of every extracted image, sorted
images() {
	(cd "$1" && find . -type f | sort | while read -r f; do echo "${f##*/} $(cksum <"$f")"; done) | sort
}

# idflags FILE: "ID FLAGS" lines sorted by id
idflags() {
	mfr-cat --list "$1" | awk -F'\t' 'NR > 1 { print $4, $6 }' | sort -n
}

@test "mfr-maskaug -h prints the usage and the options on stdout" {
	run -0 --separate-stderr mfr-maskaug -h
	[[ $output == "usage: mfr-maskaug "* ]] || { echo "$output"; false; }
	for o in "-r, --ratio R" "-s, --seed S" "--styles LIST" "-t, --templates PATH" "--append" "--audit FILE" \
		"-q, --quality Q" "-j, --threads T" "-o, --output FILE" "--index"; do
		contains "$output" "$o"
	done
	equals "$stderr" ""
}

@test "mfr-maskaug: misuse exits 2 with the usage" {
	local args want
	while IFS='|' read -r args want; do
		run -2 --separate-stderr mfr-maskaug $args -o out.mfr "$FACES"
		contains "$stderr" "$want"
		is_usage_on "$stderr"
		equals "$output" ""
	done <<-'EOF'
		--bogus|unknown option --bogus
		-r 1.5|ratio out of range 0..1: 1.5
		-r x|ratio is not a number: 'x'
		-s -1|seed out of range
		-q 0|JPEG quality out of range 1..100: 0
		-j 0|threads out of range 1..256: 0
		--styles gas=1|unknown style 'gas'
		--styles surgical|'surgical' is not NAME=WEIGHT
		--styles surgical=-1|style weight out of range
		--styles surgical=0|every style weight is zero
		--styles user=1|--styles user=W needs --templates PATH
	EOF
	run -2 --separate-stderr mfr-maskaug --index "$FACES"
	contains "$stderr" "--index needs -o FILE"
	no_file out.mfr out.mfr.tmp
}

@test "mfr-maskaug: same seed, same bytes; -j does not change them; another seed does" {
	mfr-maskaug -r 0.5 -s 7 "$FACES" >a.mfr
	mfr-maskaug -r 0.5 -s 7 "$FACES" >b.mfr
	cmp a.mfr b.mfr
	# other threads (and -o, stdin): the provenance records the arguments,
	# so compare the records
	mfr-maskaug -r 0.5 -s 7 -j 3 -o c.mfr "$FACES"
	mfr-maskaug -r 0.5 -s 7 -j 2 <"$FACES" >d.mfr
	mfr-cat --extract xa a.mfr 2>/dev/null
	local f
	for f in c d; do
		diff <(idflags a.mfr) <(idflags $f.mfr)
		mfr-cat --extract x$f $f.mfr 2>/dev/null
		diff <(images xa) <(images x$f)
	done
	mfr-maskaug -r 0.5 -s 8 -o e.mfr "$FACES"
	run -1 cmp -s a.mfr e.mfr
}

@test "mfr-maskaug: the masked share is within a binomial bound; flags and styles match the audit" {
	mfr-maskaug -r 0.3 -s 11 --audit audit.tsv -o m.mfr "$FACES"
	local n k
	n=$(stat_of m.mfr records)
	equals "$n" 600 records
	k=$(stat_of m.mfr masked)
	# 600 draws at 0.3: mean 180, sd 11.2; 5 sd either side
	[ "$k" -ge 124 ] && [ "$k" -le 236 ] || { echo "masked $k of 600 at ratio 0.3"; false; }
	equals "$(head -n 1 audit.tsv)" "$(printf 'id\tsource_id\tstyle\tcolour\tpattern\tcoverage\tyaw\tpitch\troll')"
	equals "$(($(wc -l <audit.tsv) - 1))" "$k" "audit lines"
	# every masked record: flag bit 0 and the style code of its audit line in bits 1-4
	declare -A code=([surgical]=1 [n95]=2 [kn95]=3 [cloth]=4)
	declare -A style
	local id src st rest flags
	while IFS=$'\t' read -r id src st rest; do style[$id]=${code[$st]}; equals "$src" "$id" "source id"; done < <(tail -n +2 audit.tsv)
	while read -r id flags; do
		flags=$((flags))
		if [ -n "${style[$id]:-}" ]; then
			[ $((flags & 1)) = 1 ] && [ $(((flags >> 1) & 15)) = "${style[$id]}" ] ||
				{ echo "record $id flags $flags, audit style ${style[$id]}"; false; }
		else
			[ $((flags & 0x1f)) = 0 ] || { echo "unmasked record $id has flags $flags"; false; }
		fi
	done < <(idflags m.mfr)
	# the four styles all occur, near their default weights 4:1:2:3
	local s
	for s in surgical n95 kn95 cloth; do
		[ "$(awk -F'\t' -v s=$s '$3 == s' audit.tsv | wc -l)" -gt 5 ] || { echo "few $s"; false; }
	done
	awk -F'\t' 'NR > 1 && ($6 < 0.1 || $6 > 0.5) { print "coverage", $0; bad = 1 } END { exit bad }' audit.tsv
}

@test "mfr-maskaug: ratio 0 copies the records, ratio 1 masks them all" {
	mfr-maskaug -r 0 -o z.mfr "$FACES"
	equals "$(stat_of z.mfr masked)" 0
	mfr-cat --extract x0 "$FACES" 2>/dev/null
	mfr-cat --extract x1 z.mfr 2>/dev/null
	diff <(images x0) <(images x1)
	mfr-maskaug -r 1 --styles kn95=1 -o all.mfr "$FACES"
	equals "$(stat_of all.mfr masked)" 600
	contains "$(mfr-cat --stats all.mfr)" "style kn95: 600"
	# faces already masked are not masked again
	mfr-maskaug -r 1 --styles cloth=1 -o again.mfr all.mfr
	contains "$(mfr-cat --stats again.mfr)" "style kn95: 600"
}

@test "mfr-maskaug: sharded runs give the records of the unsharded run" {
	mfr-maskaug -r 0.4 -s 3 -o whole.mfr "$FACES"
	mfr-cat --split 3 -o part "$FACES"
	local k
	for k in 0 1 2; do mfr-maskaug -r 0.4 -s 3 -o "m$k.mfr" "part-$k.mfr"; done
	mfr-cat m0.mfr m1.mfr m2.mfr >joined.mfr
	diff <(idflags whole.mfr) <(idflags joined.mfr)
	mfr-cat --extract xw whole.mfr 2>/dev/null
	mfr-cat --extract xj joined.mfr 2>/dev/null
	diff <(images xw) <(images xj)
}

@test "mfr-maskaug --append keeps the sources and adds derived masked copies" {
	mfr-maskaug -r 0.25 -s 4 --append --audit a.tsv -o app.mfr "$FACES"
	local k n
	k=$(stat_of app.mfr masked)
	n=$(stat_of app.mfr records)
	equals "$n" $((600 + k)) records
	equals "$(stat_of app.mfr derived)" "$k" derived
	# the sources, byte for byte
	mfr-cat --unmasked -o src.mfr app.mfr
	mfr-cat --extract xs src.mfr 2>/dev/null
	mfr-cat --extract xf "$FACES" 2>/dev/null
	diff <(images xs) <(images xf)
	# each copy follows its source, with the id of the audit and flags DERIVED|MASKED
	awk -F'\t' 'NR > 1 && $1 == $2 { print "copy keeps its id:", $0; bad = 1 } END { exit bad }' a.tsv
	mfr-cat --list app.mfr | awk -F'\t' 'NR > 1 { print $4, $6 }' >list.txt
	tail -n +2 a.tsv | while IFS=$'\t' read -r id src rest; do
		grep -A1 -x "$src 0x[0-9a-f]*" list.txt | tail -n 1 | grep -q "^$id " ||
			{ echo "copy $id does not follow $src"; false; }
	done
	local f
	for f in $(mfr-cat --masked --list app.mfr | awk -F'\t' 'NR > 1 { print $6 }' | sort -u); do
		[ $((f & 0x101)) = $((0x101)) ] || { echo "copy flags $f"; false; }
	done
	# a second seed derives other ids
	mfr-maskaug -r 0.25 -s 5 --append -o app2.mfr "$FACES"
	run -1 diff -q <(mfr-cat --masked --list app.mfr | cut -f4) <(mfr-cat --masked --list app2.mfr | cut -f4)
}

@test "mfr-maskaug: raw, PNG and grey faces keep their encoding and channels; unaligned faces with landmarks work" {
	"$TT/mkface" 112 112 1 raw 4 0 >grey.mfr
	"$TT/mkface" 112 112 3 png 4 0 >png.mfr
	"$TT/mkface" 300 240 3 jpeg 4 1 >big.mfr
	local f
	for f in grey png big; do
		mfr-maskaug -r 1 -o "m-$f.mfr" "$f.mfr"
		equals "$(stat_of "m-$f.mfr" masked)" 4 "$f masked"
		diff <(mfr-cat --list "$f.mfr" | cut -f 7-10) <(mfr-cat --list "m-$f.mfr" | cut -f 7-10)
		mfr-cat --verify --decode "m-$f.mfr"
	done
	run -1 cmp -s png.mfr m-png.mfr
}

@test "mfr-maskaug: a non-112 face without landmarks, or a tiny image, fails with exit 1 and leaves no output" {
	"$TT/mkface" 100 100 3 jpeg 3 0 >nolm.mfr
	run -1 --separate-stderr mfr-maskaug -r 1 -o out.mfr nolm.mfr
	contains "$stderr" "mfr-maskaug: 'nolm.mfr': record 0 at byte "
	contains "$stderr" "a 100x100 face without landmarks"
	no_file out.mfr out.mfr.tmp
	"$TT/mkface" 8 8 3 raw 2 1 >tiny.mfr
	run -1 --separate-stderr mfr-maskaug -r 1 --audit a.tsv -o out.mfr tiny.mfr
	contains "$stderr" "8x8 pixels is not a face crop size"
	no_file out.mfr out.mfr.tmp a.tsv a.tsv.tmp
	# unselected records are not looked at: ratio 0 copies them
	mfr-maskaug -r 0 -o ok.mfr nolm.mfr
	equals "$(stat_of ok.mfr records)" 3
}

@test "mfr-maskaug: truncated and corrupted streams fail with exit 1 naming the byte, leaving no output" {
	mfr-synth -n 2 -m 2 -o s.mfr
	local size off
	size=$(size s.mfr)
	head -c $((size - 30)) s.mfr >trunc.mfr
	run -1 --separate-stderr mfr-maskaug -r 0.5 -o out.mfr trunc.mfr
	contains "$stderr" "mfr-maskaug: 'trunc.mfr': truncated"
	contains "$stderr" "at byte"
	no_file out.mfr out.mfr.tmp
	cp s.mfr bad.mfr
	off=$(offsets s.mfr | sed -n 2p)
	flip bad.mfr $((off + 12 + 70))
	run -1 --separate-stderr mfr-maskaug -r 0.5 -o out.mfr bad.mfr
	contains "$stderr" "mfr-maskaug: 'bad.mfr': corrupted record 1 at byte $off"
	no_file out.mfr out.mfr.tmp
	run -1 --separate-stderr mfr-maskaug -o out.mfr missing.mfr
	contains "$stderr" "missing.mfr"
	no_file out.mfr out.mfr.tmp
}

@test "mfr-maskaug: MaskTheFace and FMA-3D templates from ../shared/data/masks" {
	need_data masks/maskthe_face/masks.cfg
	mfr-synth -n 4 -m 5 -o s.mfr
	mfr-maskaug -r 1 -t "$DATA/masks/maskthe_face/masks.cfg" --styles user=1 --audit a.tsv -o u.mfr s.mfr
	contains "$(mfr-cat --stats u.mfr)" "style user: 20"
	awk -F'\t' 'NR > 1 && $3 != "user" { bad = 1 } END { exit bad }' a.tsv
	mfr-maskaug -r 1 -t "$DATA/masks/fma3d_uv" --styles user=1,surgical=1 --audit b.tsv -o v.mfr s.mfr
	equals "$(stat_of v.mfr masked)" 20
	grep -q $'\tuser\t' b.tsv
	run -1 --separate-stderr mfr-maskaug -t "$DATA/masks/prnet_uv/face_ind.txt" s.mfr
	contains "$stderr" "not a MaskTheFace .cfg"
}
