# tests/bats/helpers.bash — what the tool tests share: where the binaries and
# the optional real data are, small assertion helpers that print what they
# expected, and byte-level tools to damage or patch a stream (truncate, flip a
# byte, rewrite a payload or frame-header byte with its checksum fixed) with
# nothing but coreutils. Loaded by every tests/bats/mfr-*.bats (`load helpers`).
#
# Environment: MFR_BIN (tools folder, default bin, relative to the top folder),
# MFR_DATA (real data, default ../shared/data; tests that need it skip).
# The tool tests pin the tools to the CPU (MFR_DEVICE=cpu): their figures and
# bit-for-bit checks are the CPU's; tests/bats/gpu.bats asks for the GPU
# explicitly.

REPO=$(cd "$BATS_TEST_DIRNAME/../.." && pwd)
BIN=${MFR_BIN:-bin}
case $BIN in /*) ;; *) BIN=$REPO/$BIN ;; esac
DATA=${MFR_DATA:-$REPO/../shared/data}
PATH=$BIN:$PATH
MFR_DEVICE=cpu
export PATH REPO BIN DATA MFR_DEVICE

# Every test starts in its own empty folder.
common_setup() {
	cd "$BATS_TEST_TMPDIR" || return 1
}

# Fails with a message when a tool is missing, rather than with 127s.
need_tool() {
	local t
	for t; do
		[ -x "$BIN/$t" ] || {
			echo "$BIN/$t is missing: build it (make, or make SAN=1) or set MFR_BIN" >&2
			return 1
		}
	done
}

need_data() { # path under $DATA
	[ -e "$DATA/$1" ] || skip "real data absent: $DATA/$1 (set MFR_DATA)"
}

# ---- assertions: each prints what it wanted and what it got ----

# contains HAYSTACK NEEDLE
contains() {
	[[ $1 == *"$2"* ]] && return 0
	printf 'expected to find: %s\nin:\n%s\n' "$2" "$1" >&2
	return 1
}

# lacks HAYSTACK NEEDLE
lacks() {
	[[ $1 != *"$2"* ]] && return 0
	printf 'did not expect: %s\nin:\n%s\n' "$2" "$1" >&2
	return 1
}

# equals GOT WANT [what]
equals() {
	[ "$1" = "$2" ] && return 0
	printf '%s: expected [%s], got [%s]\n' "${3:-value}" "$2" "$1" >&2
	return 1
}

# The usage synopsis that misuse prints to stderr.
is_usage_on() { # text
	contains "$1" "usage: "
}

# no_file PATH...: none of them exist
no_file() {
	local f
	for f; do
		[ ! -e "$f" ] || { echo "$f should not exist" >&2; ls -la "$(dirname "$f")" >&2; return 1; }
	done
}

# ---- reading streams through mfr-cat ----

# stat_of FILE KEY: the value after "KEY: " in mfr-cat --stats (first word)
stat_of() {
	mfr-cat --stats "$1" | awk -v k="$2: " 'index($0, k) == 1 { print substr($0, length(k) + 1); exit }' |
		awk '{ print $1 }'
}

# counts FILE: "RECORDS IDENTITIES"
counts() {
	local s
	s=$(mfr-cat --stats "$1") || return 1
	awk '/^records: / { r = $2 } /^identities: / { i = $2 } END { print r, i }' <<<"$s"
}

# column FILE N: column N of mfr-cat --list (no header), in stream order
column() {
	mfr-cat --list "$1" | awk -F'\t' -v c="$2" 'NR > 1 { print $c }'
}

# record offsets, ids, labels, flags of a stream, one a line in stream order
offsets() { column "$1" 3; }
ids() { column "$1" 4; }
labels() { column "$1" 5; }

# ---- byte surgery ----

# size FILE
size() { stat -c %s "$1"; }

# byte FILE POS: the unsigned value of one byte
byte() { od -An -v -tu1 -j "$2" -N 1 "$1" | tr -d ' '; }

# u32 FILE POS: a little-endian u32
u32() {
	local b
	b=($(od -An -v -tu1 -j "$2" -N 4 "$1"))
	echo $((b[0] | b[1] << 8 | b[2] << 16 | b[3] << 24))
}

# put_byte FILE POS VALUE: overwrites one byte in place
put_byte() {
	printf "$(printf '\\%03o' $(($3 & 255)))" | dd of="$1" bs=1 seek="$2" conv=notrunc status=none
}

# put_u32 FILE POS VALUE: little-endian, in place
put_u32() {
	local i
	for i in 0 1 2 3; do put_byte "$1" $(($2 + i)) $(($3 >> (8 * i))); done
}

# flip FILE POS [MASK]: xors one byte with MASK (default 0x10)
flip() {
	put_byte "$1" "$2" $(($(byte "$1" "$2") ^ ${3:-0x10}))
}

# masked_crc FILE OFF LEN: the masked CRC-32C the format stores (data-formats.md 1).
# It runs in a bash of its own: under bats' debug trap a byte loop is ~100x slower.
masked_crc() {
	bash -c '
		for ((i = 0; i < 256; i++)); do
			c=$i
			for ((j = 0; j < 8; j++)); do
				((c & 1)) && c=$(((c >> 1) ^ 0x82F63B78)) || c=$((c >> 1))
			done
			t[i]=$c
		done
		c=0xFFFFFFFF
		for b in $(od -An -v -tu1 -j "$2" -N "$3" "$1"); do
			c=$((t[(c ^ b) & 255] ^ (c >> 8)))
		done
		c=$((c ^ 0xFFFFFFFF))
		echo $(((((c >> 15) | (c << 17)) + 0xA282EAD8) & 0xFFFFFFFF))
	' masked_crc "$@"
}

# patch_record FILE FRAME POS VALUE: sets byte POS of the payload of the frame
# that starts at byte FRAME, and rewrites the payload check so that only the
# record's content is wrong, not its framing.
patch_record() {
	local len
	len=$(u32 "$1" "$2")
	put_byte "$1" $(($2 + 12 + $3)) "$4"
	put_u32 "$1" $(($2 + 12 + len)) "$(masked_crc "$1" $(($2 + 12)) "$len")"
}

# patch_frame FILE FRAME POS VALUE: sets byte POS (0..7: length, type,
# reserved) of the frame header at byte FRAME and rewrites the frame check,
# so that the header reads as sound framing with a different content.
patch_frame() {
	put_byte "$1" $(($2 + $3)) "$4"
	put_u32 "$1" $(($2 + 8)) "$(masked_crc "$1" "$2" 8)"
}
