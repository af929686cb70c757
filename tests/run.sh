#!/usr/bin/env bash
# tests/run.sh — what `make test` runs: every unit test program, every fuzz
# target replayed over its corpus, and the bats tool tests. Prints each suite's
# closing line and, last, the total "N passed, N failed".
# Environment: MFR_BIN (tools), MFR_BUILD (build folder), set by the Makefile.
set -u
cd "$(dirname "$0")/.."
: "${MFR_BIN:=bin}" "${MFR_BUILD:=build/rel}"
export MFR_BIN MFR_BUILD
passed=0 failed=0 broken=()

tally() { # name, output file, exit code
	local line p f
	line=$(grep -E '^[0-9]+ passed, [0-9]+ failed' "$2" | tail -n 1)
	if [ -z "$line" ]; then p=0 f=1; else p=${line%% passed*}; f=${line#*, }; f=${f%% failed*}; fi
	[ "$3" -ne 0 ] && [ "$f" -eq 0 ] && f=1
	passed=$((passed + p)) failed=$((failed + f))
	[ "$f" -ne 0 ] && broken+=("$1")
	printf '%-28s %s\n' "$1" "${line:-no result line (exit $3)}"
}

log=$(mktemp -d)
trap 'rm -rf "$log"' EXIT

for t in "$MFR_BUILD"/tests/test_*; do
	[ -x "$t" ] || continue
	n=$(basename "$t")
	"$t" >"$log/$n" 2>&1; rc=$?
	tally "$n" "$log/$n" $rc
	grep -m 1 '^skip:' "$log/$n" | sed 's/^/    /' # a suite that did not run says why (the GPU tests without a GPU)
	[ $rc -ne 0 ] && sed 's/^/    /' "$log/$n" | grep -v '^    ok' | tail -n 30
done

for r in "$MFR_BUILD"/replay/fuzz_*; do
	[ -x "$r" ] || continue
	n=$(basename "$r")
	"$r" "tests/fuzz/corpus/${n#fuzz_}" >"$log/$n" 2>&1; rc=$?
	tally "replay $n" "$log/$n" $rc
	[ $rc -ne 0 ] && tail -n 30 "$log/$n" | sed 's/^/    /'
done

shopt -s nullglob
bats_files=(tests/bats/*.bats)
if [ ${#bats_files[@]} -gt 0 ]; then
	bats --tap "${bats_files[@]}" >"$log/bats" 2>&1; rc=$?
	ok=$(grep -c '^ok ' "$log/bats"); nok=$(grep -c '^not ok ' "$log/bats")
	echo "$ok passed, $nok failed" >>"$log/bats"
	tally "bats (${#bats_files[@]} files)" "$log/bats" $rc
	[ $rc -ne 0 ] && grep -A 12 '^not ok' "$log/bats" | sed 's/^/    /' | head -n 80
fi

[ ${#broken[@]} -gt 0 ] && echo "failing: ${broken[*]}"
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
