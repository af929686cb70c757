#!/usr/bin/env bats
# pipelines/: the cleaning loop (clean-retrain.mk) end to end on a tiny
# synthetic dataset — every artefact a file, a table row per round with
# figures from the tools — and a failed step that leaves no target behind.
bats_require_minimum_version 1.5.0
load helpers

setup() {
	common_setup
	need_tool mfr-synth mfr-train mfr-embed mfr-clean-intra mfr-merge-inter mfr-join mfr-score mfr-maskaug mfr-cat
	mfr-synth -n 12 -m 6 -s 4 --flip-ratio 0.1 --outlier-ratio 0.05 --split-ratio 0.2 --truth noise.tsv -o train.mfr 2>/dev/null
	mfr-synth -n 6 -m 4 -s 99 -o val.mfr 2>/dev/null
	LOOP=(make --no-print-directory -C "$REPO" -f pipelines/clean-retrain.mk BIN="$BIN" D="$PWD/loop"
		DATA="$PWD/train.mfr" VAL="$PWD/val.mfr" TRUTH="$PWD/noise.tsv" M=6 ARCH=tests/arch/small.arch
		EPOCHS=2 BATCH=8 LR=0.2 THRE_INTRA=0.2 THRE_INTER=0.8 MASK_RATIO=0.2)
}

@test "clean-retrain.mk: two rounds, a table row each, every artefact on disk" {
	run -0 "${LOOP[@]}" ROUNDS=2
	contains "$output" "precision"
	local f
	for f in train.mfr model.mfrm emb.mfr clean.emb.mfr kept.emb.mfr removed.tsv merged.tsv labels.tsv val.txt valmask.txt row.tsv; do
		[ -s "loop/r1/$f" ] || { echo "loop/r1/$f missing or empty" >&2; return 1; }
	done
	# a row per round run (the loop may stop after round 1 when accuracy does not improve)
	local rows
	rows=$(($(wc -l < loop/table.tsv) - 1))
	[ "$rows" -ge 1 ] && [ "$rows" -le 2 ]
	# round 1's figures: images = the kept records, precision and recall in 0..1, accuracy a percentage
	awk -F'\t' -v kept="$(mfr-cat --stats loop/r1/kept.emb.mfr | awk '/^records: / { print $2 }')" 'NR == 2 {
		if ($2 != kept) { print "images " $2 " != kept " kept; exit 1 }
		if (!($6 >= 0 && $6 <= 1 && $7 >= 0 && $7 <= 1)) { print "precision/recall " $6 " " $7; exit 1 }
		if ($10 !~ /%$/ || $12 == "-") { print "scores " $10 " " $12; exit 1 } }' loop/table.tsv
	# round 2 (when run) trained on round 1's joined output
	if [ "$rows" = 2 ]; then
		equals "$(mfr-cat --stats loop/r2/train.mfr | awk '/^records: / { print $2 }')" \
			"$(mfr-cat --stats loop/r1/kept.emb.mfr | awk '/^records: / { print $2 }')" "round 2 faces"
	fi
}

@test "clean-retrain.mk: a failing step stops the loop and leaves no half target" {
	run -2 "${LOOP[@]}" ROUNDS=1 THRE_INTRA=7
	no_file loop/r1/clean.emb.mfr loop/r1/clean.emb.mfr.tmp loop/r1/row.tsv
	[ -s loop/r1/model.mfrm ]
}

@test "mask-ratio.mk: one ratio and its fine-tune, unmasked and masked figures in one table" {
	run -0 make --no-print-directory -C "$REPO" -f pipelines/mask-ratio.mk BIN="$BIN" D="$PWD/mr" DATA="$PWD/train.mfr" \
		VAL="$PWD/val.mfr" ARCH=tests/arch/small.arch EPOCHS=1 FT_EPOCHS=1 BATCH=8 RATIOS=0.15
	[ "$(wc -l < mr/table.tsv)" = 3 ]
	awk -F'\t' 'NR > 1 && ($3 !~ /%$/ || $5 !~ /%$/) { print "no EER: " $0; exit 1 }' mr/table.tsv
	contains "$(cut -f 1 mr/table.tsv | tr '\n' ' ')" "m0.15 ft0.33"
}
