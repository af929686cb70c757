#!/usr/bin/env bash
# tests/bench/run.sh — what `make bench` runs: each benchmark program, then
# cleaning precision and recall on injected noise, whole-tool throughput
# (pack, verify). Figures are printed, never asserted.
set -u
cd "$(dirname "$0")/../.."
: "${MFR_BIN:=bin}" "${MFR_BUILD:=build/rel}"
DATA=${MFR_DATA:-../shared/data}
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')"
for b in "$MFR_BUILD"/bench/bench_*; do
	[ -x "$b" ] || continue
	[ "$(basename "$b")" = bench_net ] && continue # run below, beside its peer
	[ "$(basename "$b")" = bench_maskaug ] && continue # run below, with its contact sheet
	echo "== $(basename "$b")"
	"$b"
done

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# ---- cleaning precision and recall on injected noise: issue 7 item 6 ----
# mfr-synth makes 300 identities x 10 faces, gives 10% of the records another
# identity's label (flips) and replaces 5% by faces of no identity
# (outliers), and writes that truth; the fixture writer mkemb stands in for a
# trained model: each record gets its true identity's centre plus noise (128
# d, noise of norm 1.5: cosine ~0.55 to its centre, about a real model's
# genuine similarity). mfr-clean-intra (-t 0.4, up to 3 rounds) then removes
# what it finds. Precision: the removed records that were planted; recall:
# the planted records removed.
echo "== cleaning against injected noise (mfr-synth --truth, mkemb, mfr-clean-intra)"
clean_section() {
	local d="$tmp/clean" tp np nr
	mkdir -p "$d"
	"$MFR_BIN"/mfr-synth -n 300 -m 10 -q 50 -j 2 --flip-ratio 0.1 --outlier-ratio 0.05 --truth "$d/truth.tsv" \
		-o "$d/faces.mfr" || return 1
	"$MFR_BUILD"/ttools/mkemb -d 128 --sigma 1.5 --truth "$d/truth.tsv" "$d/faces.mfr" >"$d/emb.mfr" || return 1
	"$MFR_BIN"/mfr-clean-intra -t 0.4 --iterations 3 --report "$d/rep.tsv" -o "$d/kept.mfr" "$d/emb.mfr" || return 1
	awk 'NR > 1 { print $1 }' "$d/truth.tsv" | sort >"$d/planted"
	awk 'NR > 1 { print $1 }' "$d/rep.tsv" | sort >"$d/removed"
	tp=$(comm -12 "$d/planted" "$d/removed" | wc -l)
	np=$(wc -l <"$d/planted") nr=$(wc -l <"$d/removed")
	awk -v tp="$tp" -v np="$np" -v nr="$nr" 'BEGIN {
		printf "cleaning precision %.2f recall %.2f (3000 records, %d planted, %d removed, %d of them planted; goal >= 0.9 each)\n",
			nr ? tp / nr : 0, np ? tp / np : 0, np, nr, tp }'
}
clean_section || echo "cleaning section failed: no figures"
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

# ---- mask augmentation: issue 6 ----
# bench_maskaug: stages and faces/s/core on 112x112 JPEGs, and the contact
# sheet (LFW when present, synthetic faces otherwise; user templates too
# when ../shared/data/masks is there). Then the tool on the packed stream.
echo "== bench_maskaug"
sheet="$MFR_BUILD/bench/maskaug-sheet.png"
tpl=(); [ -f "$DATA/masks/maskthe_face/masks.cfg" ] && tpl=(-T "$DATA/masks/maskthe_face/masks.cfg")
if [ -x "$MFR_BUILD/bench/bench_maskaug" ]; then
	MFR_DATA=$DATA "$MFR_BUILD/bench/bench_maskaug" -s "$sheet" "${tpl[@]}"
fi
# user CPU seconds of a command (wall clock says more about the machine's
# other load than about the tool)
cpu() { local TIMEFORMAT=%U; { time "$@" >/dev/null 2>&1; } 2>&1; }
for j in 1 "$(nproc)"; do
	t=$(secs "$MFR_BIN"/mfr-maskaug -r 1 -j "$j" -o "$tmp/m.mfr" "$tmp/p.mfr")
	c=$(cpu "$MFR_BIN"/mfr-maskaug -r 1 -j "$j" -o "$tmp/m.mfr" "$tmp/p.mfr")
	echo "mfr-maskaug -r 1 -j $j ($what, all masked): $(div "$n" "$t") faces/s wall clock," \
		"$(div "$n" "$c") faces per CPU second (read, decode, mask, encode, write)"
done

# ---- iresnet50 (and iresnet18) against onnxruntime: issue 3 item 8 ----
# bench_net times the layer engine and writes the canonical .arch text, the
# weights, the fixed input and its output (-w); tests/bench/ort_peer.py builds
# the same network as an ONNX graph from that text, checks it against the
# describer's MACs and parameters and against mfr's output on the same
# weights, and times it with onnxruntime in this same run. The peer is a
# benchmark-only dependency (pip install onnxruntime onnx numpy): when it is
# missing this says why and goes on; MFR_BENCH_INSTALL=1 lets it pip-install.
# Ratios: latency mfr/peer (below 1: mfr faster; the goal is <= 1.0),
# throughput mfr/peer (above 1: mfr faster), of the medians and, since mfr
# and the peer run one after the other on a machine others may be using, of
# the fastest runs too. (The loop above has run
# bench_net once already, without the peer; these are its figures again,
# taken next to the peer's.)
echo "== iresnet vs peer (bench_net, then tests/bench/ort_peer.py; wall-clock medians)"
# what keeps the peer from running, or nothing: the import error's last line
peer_missing() {
	python3 -c 'import onnxruntime, onnx, numpy' 2>&1 >/dev/null | tail -n 1 |
		sed 's/^ModuleNotFoundError: No module named \(.*\)/\1 is not installed/'
}
# figure NET 'batch 1,' FILE: the number after "... NET batch 1, ...: "
figure() { sed -n "s/^.* $1 $2[^:]*: \([0-9.]*\) .*/\1/p" "$3" | head -n 1; }
# fastest NET 'batch 1,' FILE: the "min N ms" of that line (the run least
# disturbed by whatever else the machine was doing)
fastest() { sed -n "s/^.* $1 $2.* min \([0-9.]*\) ms.*/\1/p" "$3" | head -n 1; }
peer_section() {
	local net="$tmp/net" why="" nn macs params rc pre m1 p1 m32 p32 lo1 lo32
	mkdir -p "$net"
	if ! "$MFR_BUILD"/bench/bench_net -w "$net/iresnet50.arch" "$net/iresnet18.arch" >"$net/mfr.txt"; then
		cat "$net/mfr.txt"
		echo "bench_net failed: no comparison"
		return 1
	fi
	cat "$net/mfr.txt"
	if ! command -v python3 >/dev/null; then
		why="python3 not found"
	elif [ -n "$(peer_missing)" ]; then
		if [ "${MFR_BENCH_INSTALL:-0}" = 1 ]; then
			echo "installing the peer (MFR_BENCH_INSTALL=1): python3 -m pip install onnxruntime onnx numpy"
			python3 -m pip install -q onnxruntime onnx numpy >&2 || why="pip install failed"
		fi
		[ -z "$why" ] && why=$(peer_missing)
		[ -n "$why" ] && why="$why (pip install onnxruntime onnx numpy, or rerun with MFR_BENCH_INSTALL=1)"
	fi
	if [ -n "$why" ]; then
		echo "peer skipped: $why"
		return 0
	fi
	for nn in iresnet50 iresnet18; do
		[ -f "$net/$nn.arch" ] && grep -q "^mfr $nn batch 1," "$net/mfr.txt" || continue
		macs=$(sed -n "s/^$nn (.*): [0-9]* params, .* MACs (\([0-9]*\)).*/\1/p" "$net/mfr.txt" | head -n 1)
		params=$(sed -n "s/^$nn (.*): \([0-9]*\) params, .*/\1/p" "$net/mfr.txt" | head -n 1)
		python3 tests/bench/ort_peer.py --check --expect-macs "$macs" --expect-params "$params" "$net/$nn.arch" \
			>"$net/peer.txt"
		rc=$?
		cat "$net/peer.txt"
		if [ $rc != 0 ]; then
			echo "$nn: peer failed (exit $rc): no ratio"
			continue
		fi
		pre=""; [ "$nn" = iresnet50 ] || pre="$nn "
		m1=$(figure "$nn" "batch 1," "$net/mfr.txt"); p1=$(figure "$nn" "batch 1," "$net/peer.txt")
		lo1=$(div "$(fastest "$nn" "batch 1," "$net/mfr.txt")" "$(fastest "$nn" "batch 1," "$net/peer.txt")" %.2f)
		echo "${pre}latency ratio mfr/peer (batch 1, 1 thread): $(div "$m1" "$p1" %.2f) (goal <= 1.0; of the fastest runs: $lo1)"
		if ! grep -q "^mfr $nn batch 32, .* img/s" "$net/mfr.txt"; then
			echo "${pre}throughput ratio mfr/peer (batch 32, all cores): none (mfr skipped the batch, see above)"
			continue
		fi
		m32=$(figure "$nn" "batch 32," "$net/mfr.txt"); p32=$(figure "$nn" "batch 32," "$net/peer.txt")
		# img/s from the fastest batch times: the inverse ratio of the times
		lo32=$(div "$(fastest "$nn" "batch 32," "$net/peer.txt")" "$(fastest "$nn" "batch 32," "$net/mfr.txt")" %.2f)
		echo "${pre}throughput ratio mfr/peer (batch 32, all cores): $(div "$m32" "$p32" %.2f) (of the fastest runs: $lo32)"
	done
}
peer_section
