#!/usr/bin/env bash
# pipelines/round-report.sh — one TSV row describing a cleaning round of
# clean-retrain.mk, every number read from the tools' outputs:
#   round images classes removed merged precision recall splits_joined
#   wrong_groups accuracy tar masked_tar
# usage: round-report.sh ROUND DATA KEPT VALSCORE MASKSCORE [TRUTH [M]]
#   DATA      the FACE stream the loop started from (the noisy training set)
#   KEPT      the round's cleaned and relabelled EMBEDDING stream
#   VALSCORE  mfr-score's table for the held-out identities (pairs and all)
#   MASKSCORE the same for masked probes against unmasked gallery, or -
#   TRUTH     mfr-synth --truth TSV (id kind label true_label), or absent:
#             precision and recall are then "-"
#   M         images per identity of mfr-synth data (true identity = id / M),
#             for the merge figures; absent: "-"
# Cleaning precision and recall are over records: removed = the ids of DATA
# missing from KEPT (all rounds so far), noise = DATA's flipped and outlier
# records. splits_joined: identities mfr-synth split under two labels whose
# kept clean records now share one label; wrong_groups: labels of KEPT whose
# clean records come from more than one true identity.
set -euo pipefail
round=$1 data=$2 kept=$3 valscore=$4 maskscore=$5 truth=${6:-} m=${7:-}
: "${MFR_BIN:=bin}"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
"$MFR_BIN"/mfr-cat --list "$data" | awk -F'\t' 'NR > 1 { print $4 }' | sort >"$tmp/all"
"$MFR_BIN"/mfr-cat --list "$kept" | awk -F'\t' 'NR > 1 { print $4 "\t" $5 }' | sort >"$tmp/kept"
images=$(wc -l <"$tmp/kept")
classes=$(cut -f 2 "$tmp/kept" | sort -u | wc -l)
cut -f 1 "$tmp/kept" | comm -23 "$tmp/all" - >"$tmp/removed"
removed=$(wc -l <"$tmp/removed")
# merges this round: the pairs mfr-merge-inter wrote beside KEPT with decision "merged"
merged=$(awk -F'\t' '$4 == "merged"' "$(dirname "$kept")/merged.tsv" 2>/dev/null | wc -l)
precision=- recall=- joined=- wrong=-
if [ -n "$truth" ]; then
	awk -F'\t' 'NR > 1 && ($2 == "flip" || $2 == "outlier") { print $1 }' "$truth" | sort | comm -12 - "$tmp/all" >"$tmp/noise"
	hit=$(comm -12 "$tmp/noise" "$tmp/removed" | wc -l)
	noise=$(wc -l <"$tmp/noise")
	precision=$(awk -v h="$hit" -v r="$removed" 'BEGIN { printf "%.3f", r ? h / r : 1 }')
	recall=$(awk -v h="$hit" -v n="$noise" 'BEGIN { printf "%.3f", n ? h / n : 1 }')
	if [ -n "$m" ]; then
		# clean records only: true identity id / M
		awk -F'\t' 'NR > 1 && ($2 == "flip" || $2 == "outlier") { print $1 }' "$truth" | sort >"$tmp/dirty"
		join -t $'\t' -v 1 "$tmp/kept" "$tmp/dirty" | awk -F'\t' -v m="$m" '{ print int($1 / m) "\t" $2 }' >"$tmp/clean"
		wrong=$(sort -u "$tmp/clean" | cut -f 2 | sort | uniq -d | wc -l)
		awk -F'\t' 'NR > 1 && $2 == "split" { print $4 }' "$truth" | sort -u >"$tmp/split"
		joined=$(sort -u "$tmp/clean" | cut -f 1 | sort | uniq -c | awk '$1 == 1 { print $2 }' | sort |
			comm -12 - "$tmp/split" | wc -l)
		joined="$joined/$(wc -l <"$tmp/split")"
	fi
fi
# figures from mfr-score's tables: 10-fold accuracy of the pairs protocol, TAR at FAR 1e-3
acc=$(awk '/accuracy/ && /%/ { for (i = 1; i <= NF; i++) if ($i ~ /%$/) { print $i; exit } }' "$valscore")
# TAR at FAR 1e-3 ("n/r": not reachable with so few impostor pairs)
tar_at() { awk -v p="^$2:" '$0 ~ p { f = 1 } f && $1 == "0.001" { print ($2 == "not" ? "n/r" : $2); exit }' "$1"; }
tar=$(tar_at "$valscore" all)
mtar=-
[ "$maskscore" != - ] && mtar=$(tar_at "$maskscore" pg)
printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$round" "$images" "$classes" "$removed" "$merged" \
	"$precision" "$recall" "$joined" "$wrong" "${acc:--}" "${tar:--}" "${mtar:--}"
