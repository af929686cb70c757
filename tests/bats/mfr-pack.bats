#!/usr/bin/env bats
# mfr-pack: options and exit codes, image folders (labels from sorted names,
# the label map, empty folders, stray files, bad images), list files (1, 2,
# 11 and 12 fields, --root, alignment from landmarks), RecordIO and .bin
# inputs that are not what they claim, -o leaving nothing behind on failure,
# and, when ../shared/data is present, LFW as a whole.

bats_require_minimum_version 1.5.0
load helpers

# the ArcFace template: landmarks that align a 112x112 face onto itself
TEMPLATE="38.2946 51.6963 73.5318 51.5014 56.0252 71.7366 41.5493 92.3655 70.7299 92.2041"

setup_file() {
	need_tool mfr-pack mfr-cat mfr-synth
	cd "$BATS_FILE_TMPDIR"
	# faces/LABEL/ID.jpg: 4 identities of 3 images
	mfr-synth -n 4 -m 3 -s 1 | mfr-cat --extract faces 2>/dev/null
}

setup() {
	common_setup
	F=$BATS_FILE_TMPDIR
	cp -r "$F/faces" .
}

# first image file of identity folder $1
first_image() { find "faces/$1" -type f | sort | head -n 1; }

# ---- usage ----

@test "mfr-pack -h and --help print the usage on stdout and exit 0" {
	for h in -h --help; do
		run -0 --separate-stderr mfr-pack $h
		[[ $output == "usage: mfr-pack "* ]] || { echo "$output"; false; }
		contains "$output" "--list FILE"
		contains "$output" "--skip-bad"
		equals "$stderr" ""
	done
}

@test "mfr-pack: an unknown option is a usage error (exit 2, usage on stderr)" {
	run -2 --separate-stderr mfr-pack --bogus faces
	contains "$stderr" "mfr-pack: unknown option --bogus"
	is_usage_on "$stderr"
	equals "$output" ""
	run -2 --separate-stderr mfr-pack faces -o
	contains "$stderr" "needs an argument"
}

@test "mfr-pack: a JPEG quality out of range exits 2 naming it" {
	for q in 0 101 -5; do
		run -2 --separate-stderr mfr-pack -q $q --list x.txt
		contains "$stderr" "JPEG quality out of range 1..100: $q"
		is_usage_on "$stderr"
	done
	run -2 --separate-stderr mfr-pack -q high --list x.txt
	contains "$stderr" "JPEG quality is not a number: 'high'"
}

@test "mfr-pack without an input exits 2" {
	run -2 --separate-stderr mfr-pack
	contains "$stderr" "no input"
	is_usage_on "$stderr"
	run -2 --separate-stderr mfr-pack -o out.mfr
	contains "$stderr" "no input"
	no_file out.mfr out.mfr.tmp
}

@test "mfr-pack: operands and options that do not fit together exit 2" {
	run -2 --separate-stderr mfr-pack faces faces
	contains "$stderr" "one input at a time"
	run -2 --separate-stderr mfr-pack --list x.txt faces
	contains "$stderr" "--list takes no operand"
	run -2 --separate-stderr mfr-pack --root faces faces
	contains "$stderr" "--root goes with --list"
	run -2 --separate-stderr mfr-pack --index faces
	contains "$stderr" "--index needs -o FILE"
	run -2 --separate-stderr mfr-pack --pairs p.tsv faces
	contains "$stderr" "--pairs goes with a .bin pack"
	printf 'x\n' >list.txt
	run -2 --separate-stderr mfr-pack list.txt
	contains "$stderr" "'list.txt': not a folder, .rec or .bin (a list file needs --list)"
	is_usage_on "$stderr"
	no_file p.tsv
}

# ---- input errors ----

@test "mfr-pack: a nonexistent input exits 1 naming it" {
	run -1 --separate-stderr mfr-pack nope
	contains "$stderr" "'nope': No such file or directory"
	run -1 --separate-stderr mfr-pack -o out.mfr --list nope.txt
	contains "$stderr" "'nope.txt': No such file or directory"
	no_file out.mfr out.mfr.tmp
}

@test "mfr-pack --list -: empty input on stdin exits 1" {
	run -1 --separate-stderr bash -c 'mfr-pack --list - </dev/null >/dev/null'
	contains "$stderr" "'-': no entries"
	printf '# only a comment\n\n' >c.txt
	run -1 --separate-stderr mfr-pack -o out.mfr --list c.txt
	contains "$stderr" "'c.txt': no entries"
	no_file out.mfr out.mfr.tmp
}

@test "mfr-pack: a folder without identity folders exits 1" {
	mkdir none
	run -1 --separate-stderr mfr-pack -o out.mfr none
	contains "$stderr" "'none': no identity folders"
	no_file out.mfr out.mfr.tmp
}

# ---- folders ----

@test "mfr-pack DIR packs every image with one label per identity" {
	run -0 --separate-stderr mfr-pack -o out.mfr -l labels.tsv faces
	contains "$stderr" "mfr-pack: 12 faces packed"
	equals "$output" ""
	no_file out.mfr.tmp labels.tsv.tmp
	equals "$(counts out.mfr)" "12 4"
	run -0 mfr-cat --verify --decode out.mfr
	equals "$(ids out.mfr | tr '\n' ' ')" "0 1 2 3 4 5 6 7 8 9 10 11 " "ids"
	equals "$(labels out.mfr | tr '\n' ' ')" "0 0 0 1 1 1 2 2 2 3 3 3 " "labels"
	equals "$(cat labels.tsv)" $'label\tname\tcount\n0\t0\t3\n1\t1\t3\n2\t2\t3\n3\t3\t3' "label map"
}

@test "mfr-pack DIR is deterministic and writes to a pipe" {
	mfr-pack faces >p1.mfr
	mfr-pack faces >p2.mfr
	cmp p1.mfr p2.mfr
	run -0 bash -c 'set -o pipefail; mfr-pack faces | mfr-cat --stats'
	contains "$output" "records: 12"
}

@test "mfr-pack: labels follow the bytewise-sorted folder names" {
	mv faces/0 faces/zed
	mv faces/1 faces/alpha
	mv faces/2 faces/Mike
	mv faces/3 faces/bob
	mfr-pack -o out.mfr -l labels.tsv faces
	equals "$(cat labels.tsv)" $'label\tname\tcount\n0\tMike\t3\n1\talpha\t3\n2\tbob\t3\n3\tzed\t3' "label map"
	# each folder's images come back in the folder of the same name
	mfr-cat --extract back --names labels.tsv out.mfr
	for d in zed alpha Mike bob; do
		equals "$(for f in back/$d/*; do cksum <"$f"; done | sort)" \
			"$(for f in faces/$d/*; do cksum <"$f"; done | sort)" "images of $d"
		equals "$(ls back/$d | wc -l)" 3 "images in back/$d"
	done
}

@test "mfr-pack --aligned flags the faces as aligned" {
	mfr-pack --aligned faces >out.mfr
	equals "$(column out.mfr 6 | sort -u)" "0x80"
	run -2 --separate-stderr mfr-pack --aligned --list x.txt
	contains "$stderr" "--aligned goes with a folder"
}

@test "mfr-pack: an empty identity folder is left out with a warning" {
	mkdir faces/1a
	run -0 --separate-stderr mfr-pack -o out.mfr -l labels.tsv faces
	contains "$stderr" "'faces/1a': no images; identity left out"
	equals "$(counts out.mfr)" "12 4"
	equals "$(cut -f2 labels.tsv | tr '\n' ' ')" "name 0 1 2 3 " "names in the label map"
	equals "$(labels out.mfr | sort -u | tr '\n' ' ')" "0 1 2 3 " "labels"
}

@test "mfr-pack: files that are not images are ignored" {
	echo "notes" >faces/2/notes.txt
	echo "readme" >faces/README
	mkdir faces/3/.hidden
	run -0 --separate-stderr mfr-pack -o out.mfr faces
	contains "$stderr" "'faces': ignored 1 entries that are not identity folders"
	lacks "$stderr" "notes.txt"
	equals "$(counts out.mfr)" "12 4"
}

@test "mfr-pack: PNG images are packed as PNG" {
	mfr-synth -n 2 -m 2 -s 5 --raw | mfr-cat --extract pngs 2>/dev/null
	equals "$(find pngs -name '*.png' | wc -l)" 4 "png files"
	mfr-pack pngs >out.mfr
	equals "$(column out.mfr 10 | sort -u)" "png"
	equals "$(counts out.mfr)" "4 2"
	mfr-cat --verify --decode out.mfr
}

@test "mfr-pack: a corrupt JPEG exits 1 naming it and leaves no output" {
	printf '\377\330\377\340 this is not the rest of a JPEG' >faces/1/bad.jpg
	run -1 --separate-stderr mfr-pack -o out.mfr -l labels.tsv --index faces
	contains "$stderr" "'faces/1/bad.jpg'"
	no_file out.mfr out.mfr.tmp out.mfr.idx out.mfr.idx.tmp labels.tsv labels.tsv.tmp
	# a truncated one, and a text file named .jpg
	head -c 200 "$(first_image 0)" >faces/1/bad.jpg
	run -1 --separate-stderr mfr-pack -o out.mfr faces
	contains "$stderr" "'faces/1/bad.jpg'"
	echo "hello" >faces/1/bad.jpg
	run -1 --separate-stderr mfr-pack -o out.mfr faces
	contains "$stderr" "'faces/1/bad.jpg': not a JPEG or PNG image"
	no_file out.mfr out.mfr.tmp
}

@test "mfr-pack --skip-bad skips a corrupt image with a warning" {
	printf '\377\330\377\340 this is not the rest of a JPEG' >faces/1/bad.jpg
	echo "hello" >faces/2/text.png
	run -0 --separate-stderr mfr-pack --skip-bad -o out.mfr -l labels.tsv faces
	contains "$stderr" "'faces/1/bad.jpg'"
	contains "$stderr" "'faces/2/text.png': not a JPEG or PNG image (skipped)"
	contains "$stderr" "12 faces packed, 2 skipped"
	equals "$(counts out.mfr)" "12 4"
	equals "$(awk -F'\t' '$1 == 1 { print $3 }' labels.tsv)" 3 "count of identity 1"
	mfr-cat --verify --decode out.mfr
}

@test "mfr-pack --skip-bad leaves out an identity whose images are all bad" {
	rm faces/2/*
	printf '\377\330\377\340 broken' >faces/2/bad.jpg
	run -0 --separate-stderr mfr-pack --skip-bad -l labels.tsv faces
	contains "$stderr" "no images; identity left out"
	equals "$(cut -f2 labels.tsv | tr '\n' ' ')" "name 0 1 3 " "names"
}

@test "mfr-pack -o FILE --index writes an index that --reindex reproduces" {
	mfr-pack -o out.mfr --index faces
	equals "$(size out.mfr.idx)" $((40 + 12 * 24)) "index size"
	mv out.mfr.idx saved.idx
	mfr-cat --reindex out.mfr
	cmp out.mfr.idx saved.idx
}

# ---- list files ----

@test "mfr-pack --list, one field: labels from the sorted parent folders" {
	mkdir -p data
	mv faces data/
	mv data/faces/3 data/faces/apple
	(cd data && find faces -type f | LC_ALL=C sort -r) >data/list.txt
	run -0 --separate-stderr mfr-pack --list data/list.txt -l labels.tsv -o out.mfr
	equals "$(counts out.mfr)" "12 4"
	equals "$(cut -f2 labels.tsv | tr '\n' ' ')" "name 0 1 2 apple " "names"
	equals "$(cut -f3 labels.tsv | tr '\n' ' ')" "count 3 3 3 3 " "counts"
	# the list is in reverse order: its first line is an image of 'apple', label 3, id 0
	equals "$(mfr-cat --list out.mfr | awk -F'\t' 'NR == 2 { print $4, $5 }')" "0 3" "first record"
}

@test "mfr-pack --list, two fields: the labels given; paths relative to --root" {
	local a b
	a=$(first_image 0)
	b=$(first_image 3)
	printf '%s 7\n%s 3\n\n# a comment\n%s 7\n' "${a#faces/}" "${b#faces/}" "${b#faces/}" >list.txt
	run -1 --separate-stderr mfr-pack --list list.txt
	contains "$stderr" "line 1 of 'list.txt'; paths are relative to '.', set --root"
	run -0 --separate-stderr mfr-pack --list list.txt --root faces -l labels.tsv -o out.mfr
	equals "$(labels out.mfr | tr '\n' ' ')" "7 3 7 " "labels"
	equals "$(counts out.mfr)" "3 2"
	equals "$(cat labels.tsv)" $'label\tname\tcount\n3\t3\t1\n7\t7\t2' "label map"
	# from stdin, relative to the current folder
	run -0 bash -c 'set -o pipefail; sed -E "s|^([0-9])|faces/\\1|" list.txt | mfr-pack --list - | mfr-cat --stats'
	contains "$output" "records: 3"
}

@test "mfr-pack --list with landmarks (11 and 12 fields) aligns to 112x112 and sets the landmark flags" {
	local a b flags
	a=$(first_image 1)
	b=$(first_image 2)
	printf '%s %s\n%s %s\n' "$a" "$TEMPLATE" "$b" "$TEMPLATE" >l11.txt
	printf '%s 5 %s\n%s 6 %s\n' "$a" "$TEMPLATE" "$b" "$TEMPLATE" >l12.txt
	for l in l11 l12; do
		mfr-pack --list $l.txt -o $l.mfr
		equals "$(mfr-cat --list $l.mfr | awk -F'\t' 'NR > 1 { print $7 "x" $8 "x" $9, $10 }' | sort -u)" "112x112x3 jpeg" "$l sizes"
		for flags in $(column $l.mfr 6); do
			equals $((flags & 0xc0)) $((0xc0)) "$l flags $flags"
		done
		mfr-cat --verify --decode $l.mfr
	done
	equals "$(labels l11.mfr | tr '\n' ' ')" "0 1 " "labels from folders"
	equals "$(labels l12.mfr | tr '\n' ' ')" "5 6 " "labels given"
	equals "$(stat_of l12.mfr landmarks)" 2 "landmarks"
	# --no-align keeps the image and its landmarks
	mfr-pack --no-align --list l12.txt -o n.mfr
	equals "$(column n.mfr 6 | sort -u)" "0x40" "flags without alignment"
	equals "$(column n.mfr 11 | tr '\n' ' ')" "$(stat -c %s "$a" "$b" | tr '\n' ' ')" "image bytes kept"
}

@test "mfr-pack --list -l: labels up to 2147483647 are valid" {
	local a b
	a=$(first_image 0)
	b=$(first_image 1)
	printf '%s 2147483647\n%s 0\n' "$a" "$b" >big.txt
	run -0 --separate-stderr mfr-pack --list big.txt -l labels.tsv -o out.mfr
	equals "$(labels out.mfr | tr '\n' ' ')" "2147483647 0 " "labels"
	equals "$(cat labels.tsv)" $'label\tname\tcount\n0\t0\t1\n2147483647\t2147483647\t1' "label map"
}

@test "mfr-pack --list: lines with and without labels cannot mix (exit 1)" {
	local a b
	a=$(first_image 0)
	b=$(first_image 1)
	printf '%s 0\n%s\n' "$a" "$b" >mixed.txt
	run -1 --separate-stderr mfr-pack --list mixed.txt -o out.mfr
	contains "$stderr" "'mixed.txt': line 2: lacks a label where earlier lines have one"
	no_file out.mfr out.mfr.tmp
	printf '%s\n%s 1 %s\n' "$a" "$b" "$TEMPLATE" >mixed.txt
	run -1 --separate-stderr mfr-pack --list mixed.txt -o out.mfr
	contains "$stderr" "'mixed.txt': line 2: has a label where earlier lines have none"
	no_file out.mfr out.mfr.tmp
}

@test "mfr-pack --list: malformed lines exit 1 naming the line" {
	local a
	a=$(first_image 0)
	printf '%s 1 2\n' "$a" >bad.txt
	run -1 --separate-stderr mfr-pack --list bad.txt -o out.mfr
	contains "$stderr" "'bad.txt': line 1: 3 fields"
	printf '%s 0\n%s -1\n' "$a" "$a" >bad.txt
	run -1 --separate-stderr mfr-pack --list bad.txt
	contains "$stderr" "'bad.txt': line 2: label '-1' is not an integer in 0..2147483647"
	printf '%s one\n' "$a" >bad.txt
	run -1 --separate-stderr mfr-pack --list bad.txt
	contains "$stderr" "'bad.txt': line 1: label 'one' is not an integer"
	printf '%s %s\n' "$a" "${TEMPLATE/56.0252/nose}" >bad.txt
	run -1 --separate-stderr mfr-pack --list bad.txt
	contains "$stderr" "'bad.txt': line 1: landmark 3 'nose' is not a number"
	cp "$a" loose.jpg
	printf 'loose.jpg\n' >bad.txt
	run -1 --separate-stderr mfr-pack --list bad.txt
	contains "$stderr" "'loose.jpg' has no identity folder"
	no_file out.mfr out.mfr.tmp
}

@test "mfr-pack --list: a missing image exits 1 naming it and the line" {
	printf '%s\nfaces/0/missing.jpg\n' "$(first_image 0)" >list.txt
	run -1 --separate-stderr mfr-pack --list list.txt -o out.mfr
	contains "$stderr" "faces/0/missing.jpg"
	contains "$stderr" "line 2 of 'list.txt'"
	no_file out.mfr out.mfr.tmp
}

# ---- RecordIO and .bin ----

@test "mfr-pack: a .rec with garbage content exits 1 with a message" {
	head -c 3000 "$(first_image 0)" >garbage.rec
	run -1 --separate-stderr mfr-pack -o out.mfr garbage.rec
	contains "$stderr" "'garbage.rec'"
	contains "$stderr" "at byte 0"
	no_file out.mfr out.mfr.tmp
	printf 'not a recordio file at all, just some text\n' >text.rec
	run -1 --separate-stderr mfr-pack text.rec
	contains "$stderr" "'text.rec'"
}

@test "mfr-pack: an empty .rec is no data (exit 1), not zero faces" {
	: >empty.rec
	run -1 --separate-stderr mfr-pack -o out.mfr empty.rec
	contains "$stderr" "'empty.rec'"
	no_file out.mfr out.mfr.tmp
}

@test "mfr-pack: a .bin needs --pairs (exit 2); with garbage content it exits 1" {
	head -c 3000 "$(first_image 0)" >pack.bin
	run -2 --separate-stderr mfr-pack pack.bin
	contains "$stderr" "a .bin pack needs --pairs FILE"
	is_usage_on "$stderr"
	run -2 --separate-stderr mfr-pack --pairs pairs.tsv -l labels.tsv pack.bin
	contains "$stderr" "-l does not apply"
	run -1 --separate-stderr mfr-pack --pairs pairs.tsv -o out.mfr pack.bin
	contains "$stderr" "'pack.bin': not a pickle"
	no_file out.mfr out.mfr.tmp pairs.tsv pairs.tsv.tmp
	: >empty.bin
	run -1 --separate-stderr mfr-pack --pairs pairs.tsv -o out.mfr empty.bin
	contains "$stderr" "'empty.bin'"
	no_file out.mfr out.mfr.tmp pairs.tsv pairs.tsv.tmp
}

# ---- real data (skipped when ../shared/data is absent) ----

@test "mfr-pack packs LFW aligned112: 5748 identities, 13232 records" {
	need_data lfw/aligned112
	run -0 --separate-stderr bash -c 'set -o pipefail; mfr-pack --aligned "$DATA/lfw/aligned112" | mfr-cat --stats'
	contains "$output" $'\nrecords: 13232\n'
	contains "$output" $'\nidentities: 5748\n'
	contains "$stderr" "13232 faces packed"
}

@test "mfr-pack --list LFW original150 landmarks: 1548 aligned records" {
	need_data lfw/landmarks_original150.txt
	need_data lfw/original150
	run -0 --separate-stderr mfr-pack --list "$DATA/lfw/landmarks_original150.txt" --root "$DATA/lfw/original150" -o lfw.mfr
	contains "$stderr" "1548 faces packed"
	equals "$(stat_of lfw.mfr records)" 1548 "records"
	equals "$(stat_of lfw.mfr landmarks)" 1548 "records with landmarks"
	equals "$(column lfw.mfr 7 | sort -u)x$(column lfw.mfr 8 | sort -u)" "112x112" "size"
}
