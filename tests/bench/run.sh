#!/usr/bin/env bash
# tests/bench/run.sh — what `make bench` runs: each benchmark program, then
# whole-tool throughput (pack, verify). Figures are printed, never asserted.
set -u
cd "$(dirname "$0")/../.."
: "${MFR_BIN:=bin}" "${MFR_BUILD:=build/rel}"
DATA=${MFR_DATA:-../shared/data}
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')"
for b in "$MFR_BUILD"/bench/bench_*; do
	[ -x "$b" ] || continue
	echo "== $(basename "$b")"
	"$b"
done

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
echo "== tools (one process each; wall-clock seconds)"
secs() { local t0=$(date +%s.%N); "$@" >/dev/null || return 1; awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.3f", b - a }'; }
div() { awk -v a="$1" -v b="$2" -v f="${3:-%.0f}" 'BEGIN { printf f, a / b }'; }
if [ -d "$DATA/lfw/aligned112" ]; then
	src="$DATA/lfw/aligned112"; what="LFW aligned112"
	cat "$src"/*/* >/dev/null   # warm the page cache: measure packing, not the disk
else
	"$MFR_BIN"/mfr-synth -n 400 -m 10 -o "$tmp/s.mfr" && "$MFR_BIN"/mfr-cat --extract "$tmp/img" "$tmp/s.mfr" 2>/dev/null
	src="$tmp/img"; what="4,000 synthetic faces (no ../shared/data)"
fi
t=$(secs "$MFR_BIN"/mfr-pack -o "$tmp/p.mfr" "$src" 2>/dev/null)
n=$("$MFR_BIN"/mfr-cat --stats "$tmp/p.mfr" | sed -n 's/^records: //p')
bytes=$(stat -c %s "$tmp/p.mfr"); mb=$((bytes / 1000000))
echo "mfr-pack folder ($what): $n images in ${t}s = $(div "$n" "$t") img/s (decode check included), ${mb} MB"
t=$(secs "$MFR_BIN"/mfr-cat --verify "$tmp/p.mfr")
echo "mfr-cat --verify: $(div "$bytes" "$t" %.0f | awk '{ printf "%.2f", $1 / 1e9 }') GB/s"
t=$(secs "$MFR_BIN"/mfr-cat --verify --decode "$tmp/p.mfr")
echo "mfr-cat --verify --decode: $(div "$n" "$t") img/s"
