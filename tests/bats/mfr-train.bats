#!/usr/bin/env bats
# mfr-train: the memory planner's figures, bad input and usage, the same
# training on 1, 2 and 3 ranks, kill-and-resume bit for bit, resuming 2 ranks
# on 3, and a small learning run. The networks are tests/arch/small*.arch
# (about 10M MACs a face), the data mfr-synth's.
bats_require_minimum_version 1.5.0
load helpers

setup() {
	common_setup
	need_tool mfr-train mfr-synth mfr-model mfr-cat
	SMALL=$REPO/tests/arch/small.arch
	NOBN=$REPO/tests/arch/small-nobn.arch
}

# mpi NP ARGS...: mfr-train on NP ranks (skips without mpirun)
mpi() {
	local np=$1
	shift
	command -v mpirun >/dev/null || skip "mpirun absent (make deps installs OpenMPI)"
	# OpenMPI refuses root without these; LeakSanitizer (make check-asan)
	# would report OpenMPI's own allocations at exit
	OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1 \
		ASAN_OPTIONS=${ASAN_OPTIONS:+$ASAN_OPTIONS:}detect_leaks=0 \
		mpirun --oversubscribe -np "$np" "$BIN/mfr-train" "$@"
}

# data: 41 identities (labels 0..40) x 10 faces, indexed
data() {
	mfr-synth -n 41 -m 10 -s 3 -o train.mfr --index 2>/dev/null
}

# loss_col LOG: the loss column of a training log, one a line
loss_col() { awk -F'\t' 'NR > 1 { print $3 }' "$1"; }

# same_losses A B TOL: every logged loss of A and B agrees within TOL relative
same_losses() {
	paste <(loss_col "$1") <(loss_col "$2") | awk -v t="$3" '
		{ n++; d = $1 - $2; if (d < 0) d = -d; if (d > t * ($1 > 1 ? $1 : 1)) { print "loss differs at line " n ": " $1 " vs " $2; bad = 1 } }
		END { if (n == 0) { print "no losses logged"; bad = 1 } exit bad }'
}

# same_weights A B TOL: every weight tensor (not the optimizer's momentum)
# of checkpoints A and B within TOL of the tensor's largest magnitude
same_weights() {
	mfr-model --compare "$1" "$2" >cmp.txt || true
	awk -v t="$3" '/relative to max/ && $1 !~ /momentum/ {
			r = $0; sub(/.*relative to max \|a\| /, "", r); sub(/\).*/, "", r)
			if (r + 0 > t) { print "weights differ: " $0; bad = 1 } }
		/^(architecture|.*only in|.*different shape)/ { print; bad = 1 }
		END { exit bad }' cmp.txt
}

@test "mfr-train --plan reproduces the paper's classifier memory (2M classes, d=512, 64 per rank)" {
	run -0 mfr-train --plan --classes 2000000 --embedding-size 512 --batch 64 --ranks 1
	contains "$output" "classifier:               12.398 GiB"
	run -0 mfr-train --plan --classes 2000000 --embedding-size 512 --batch 64 --ranks 32
	contains "$output" "classifier:                1.311 GiB"
	# Partial FC at 0.1 shrinks the gradient and the logits, not the weight
	run -0 mfr-train --plan --classes 2000000 --embedding-size 512 --batch 64 --ranks 1 --sample-rate 0.1
	contains "$output" "classifier weight:         3.815 GiB"
	contains "$output" "logits:                    0.095 GiB"
	# the backbone lines come from the architecture at the batch size
	run -0 mfr-train --plan --classes 1000 --batch 8 -a r18
	contains "$output" "backbone r18: 24025600 parameters"
	contains "$output" "activations:"
	run -0 mfr-train --plan --classes 1000 --batch 8 -a r18 --mem-limit 100M
	contains "$output" "over --mem-limit"
}

@test "mfr-train refuses a plan over --mem-limit before allocating" {
	data
	run -1 mfr-train -a r100 -b 256 --mem-limit 1G -o m.mfrm train.mfr
	contains "$output" "over --mem-limit 1.000 GiB"
	no_file m.mfrm m.mfrm.tmp
}

@test "mfr-train: usage errors exit 2, bad data exits 1 and writes nothing" {
	run -2 mfr-train -o m.mfrm
	contains "$output" "no input"
	is_usage_on "$output"
	run -2 mfr-train --mask-ratio 1.5 -o m.mfrm x.mfr
	contains "$output" "mask ratio out of range"
	run -2 mfr-train --margin sphere -o m.mfrm x.mfr
	run -2 mfr-train --plan
	contains "$output" "--plan needs --classes"
	run -2 mfr-train --mem-limit lots --plan --classes 9
	contains "$output" "memory size not understood"
	data
	run -2 mfr-train train.mfr
	contains "$output" "nothing would be written"
	# a stream cut short
	head -c 20000 train.mfr > cut.mfr
	run -1 mfr-train -a "$SMALL" -b 4 -o m.mfrm cut.mfr
	contains "$output" "cut.mfr"
	no_file m.mfrm m.mfrm.tmp
	# fewer faces than one global batch
	run -1 mfr-train -a "$SMALL" -b 1000 -o m.mfrm train.mfr
	contains "$output" "fewer than one global batch"
	# --classes below the labels present
	run -1 mfr-train -a "$SMALL" -b 8 --classes 5 -o m.mfrm train.mfr
	contains "$output" "--classes 5, but the data has labels up to 40"
	# a checkpoint for another architecture
	run -0 mfr-train -a "$NOBN" -b 8 --max-steps 1 --checkpoint c.ckpt train.mfr
	run -1 mfr-train -a "$SMALL" -b 8 --resume c.ckpt -o m.mfrm train.mfr
	contains "$output" "architecture differs"
	no_file m.mfrm
}

@test "mfr-train: 1, 2 and 3 ranks (uneven class shards) give the same losses and weights" {
	data
	local a="-a $NOBN --dropout 0 --epochs 1 --max-steps 12 --log-every 2 --classes 41 -j 1 --loader-threads 1"
	run -0 mfr-train $a -b 12 --checkpoint r1.ckpt --log r1.tsv train.mfr
	run -0 mpi 2 $a -b 6 --checkpoint r2.ckpt --log r2.tsv train.mfr
	contains "$output" "2 ranks x batch 6 = 12"
	run -0 mpi 3 $a -b 4 --checkpoint r3.ckpt --log r3.tsv train.mfr
	contains "$output" "3 ranks x batch 4 = 12"
	grep -q 'shard 2 28 41' <(strings r3.ckpt)
	same_losses r1.tsv r2.tsv 1e-5
	same_losses r1.tsv r3.tsv 1e-5
	same_weights r1.ckpt r2.ckpt 1e-5
	same_weights r1.ckpt r3.ckpt 1e-5
	# Partial FC over ranks: positives everywhere, the run completes and logs
	run -0 mpi 3 $a -b 4 --sample-rate 0.3 --checkpoint p3.ckpt --log p3.tsv train.mfr
	[ "$(loss_col p3.tsv | wc -l)" = 6 ]
}

@test "mfr-train: killed and resumed, the run ends bit-identical to an uninterrupted one" {
	data
	local a="-a $SMALL --epochs 3 -b 8 -j 1 --dropout 0.2 --warmup 0.5 --decay-epochs 1,2 --log-every 10"
	run -0 mfr-train $a -o full.mfrm --checkpoint full.ckpt train.mfr
	# interrupted for real: SIGKILL once the first checkpoint has landed
	mfr-train $a -o part.mfrm --checkpoint part.ckpt --save-every 20 train.mfr 2>/dev/null &
	local pid=$!
	# (however slow the machine: until the checkpoint lands or the run ends)
	while [ ! -e part.ckpt ] && kill -0 $pid 2>/dev/null; do sleep 0.05; done
	kill -9 $pid 2>/dev/null || true
	wait $pid 2>/dev/null || true
	[ -e part.ckpt ]
	no_file part.ckpt.tmp
	run -0 mfr-train $a -o part.mfrm --checkpoint part.ckpt --save-every 20 --resume part.ckpt train.mfr
	contains "$output" "resumed at step"
	cmp full.mfrm part.mfrm
	cmp full.ckpt part.ckpt
	# and a stop at a chosen step, resumed
	run -0 mfr-train $a --max-steps 33 --checkpoint s.ckpt train.mfr
	run -0 mfr-train $a --resume s.ckpt -o s.mfrm train.mfr
	contains "$output" "resumed at step 33"
	cmp full.mfrm s.mfrm
	# the checkpoint is a model mfr-embed can use (its training state ignored)
	mfr-synth -n 2 -m 2 -s 9 -o few.mfr 2>/dev/null
	run -0 mfr-embed -m full.ckpt -o e.mfr few.mfr
}

@test "mfr-train: a checkpoint of 2 ranks resumes on 3 as the same logical model" {
	data
	local a="-a $NOBN --dropout 0 --epochs 1 --classes 41 -j 1 --loader-threads 1"
	run -0 mpi 2 $a -b 6 --max-steps 10 --checkpoint a2.ckpt train.mfr
	# resumed and saved at once: the re-sharded classifier, the backbone and
	# both momenta come back unchanged
	run -0 mpi 3 $a -b 4 --max-steps 10 --resume a2.ckpt --checkpoint a3.ckpt train.mfr
	contains "$output" "resumed at step 10"
	run -0 mfr-model --compare a2.ckpt a3.ckpt
	contains "$output" "(identical values)"
	# and training on continues as 2 ranks would have
	run -0 mpi 3 $a -b 4 --max-steps 20 --resume a2.ckpt --checkpoint b3.ckpt train.mfr
	run -0 mpi 2 $a -b 6 --max-steps 20 --checkpoint b2.ckpt train.mfr
	same_weights b2.ckpt b3.ckpt 1e-5
	# another global batch: the step is moved to the same place in the data
	run -0 mpi 3 $a -b 6 --max-steps 12 --resume a2.ckpt --checkpoint c3.ckpt train.mfr
	contains "$output" "resumed at step 7"
}

@test "mfr-train: arcface, combined margins, poly decay, dense momentum and --init fine-tuning run" {
	data
	local a="-a $SMALL -b 16 -j 1 --epochs 2 --log-every 5"
	run -0 mfr-train $a --margin arcface --decay poly --warmup 0.2 --fc-momentum dense --clip 5 --log arc.tsv -o arc.mfrm train.mfr
	contains "$output" "dense momentum"
	[ "$(loss_col arc.tsv | wc -l)" -ge 4 ]
	# poly decay (power 2) ends near 0: the last step's rate is (1/steps)^2 of the base
	awk -F'\t' 'NR == 2 { a = $5 } END { if (!($5 < a / 1000)) { print "last lr " $5 " vs " a; exit 1 } }' arc.tsv
	run -0 mfr-train $a --m1 1 --m2 0.3 --m3 0.2 --max-steps 5 -o comb.mfrm train.mfr
	contains "$output" "m=(1, 0.3, 0.2)"
	# online masks: a third of the faces each epoch
	run -0 mfr-train $a --mask-ratio 0.33 --max-steps 5 -o mask.mfrm train.mfr
	contains "$output" "masks on 0.33 of faces"
	# fine-tuning from the trained backbone starts from a lower loss than a fresh one
	run -0 mfr-train $a --max-steps 5 --log fresh.tsv -o f.mfrm train.mfr
	run -0 mfr-train $a --max-steps 5 --init arc.mfrm --log tuned.tsv -o t.mfrm train.mfr
	awk -v a="$(loss_col tuned.tsv | head -n 1)" -v b="$(loss_col fresh.tsv | head -n 1)" \
		'BEGIN { if (!(a < b)) { print "fine-tuned loss " a " not below fresh " b; exit 1 } }'
	run -1 mfr-train $a --init nosuch.mfrm -o x.mfrm train.mfr
	contains "$output" "nosuch.mfrm"
}

# metric EMB KEY: the EER or AUC (KEY eer|auc) of all-vs-all scoring
metric() {
	mfr-score -p all --json "$1" 2>/dev/null | tr ',{' '\n\n' | awk -v k="\"$2\": " '
		index($0, k) { f = 1 } f && /"value"/ { sub(/.*"value": /, ""); print; exit }'
}

@test "mfr-train learns: the loss falls and held-out verification improves" {
	need_tool mfr-score mfr-embed
	mfr-synth -n 50 -m 12 -s 11 -o all.mfr 2>/dev/null
	mfr-cat --split 2 --split-by label -o part all.mfr
	mfr-model --new "$SMALL" --seed 1 -o init.mfrm 2>/dev/null
	run -0 mfr-train -a "$SMALL" -b 16 -j 0 --epochs 10 --lr 0.4 --warmup 1 --decay-epochs 7,9 --dropout 0 \
		--wd 5e-4 --log-every 10 --log log.tsv -o m.mfrm part-0.mfr
	local first last
	first=$(loss_col log.tsv | head -n 1) last=$(loss_col log.tsv | tail -n 1)
	awk -v a="$first" -v b="$last" 'BEGIN { if (!(b < 0.7 * a)) { print "loss " a " -> " b; exit 1 } }'
	mfr-embed -m init.mfrm --normalize -o before.mfr part-1.mfr 2>/dev/null
	mfr-embed -m m.mfrm --normalize -o after.mfr part-1.mfr 2>/dev/null
	local auc0 auc1 eer0 eer1
	auc0=$(metric before.mfr auc) auc1=$(metric after.mfr auc) eer0=$(metric before.mfr eer) eer1=$(metric after.mfr eer)
	echo "held-out identities: AUC $auc0 -> $auc1, EER $eer0 -> $eer1" >&3
	awk -v a="$auc0" -v b="$auc1" -v c="$eer0" -v d="$eer1" \
		'BEGIN { if (!(b > a + 0.05 && d < c - 0.05)) { print "no improvement"; exit 1 } }'
}

@test "mfr-train --loader-only times the loader alone and trains nothing" {
	data
	run -0 mfr-train --loader-only -b 16 --loader-threads 2 train.mfr
	contains "$output" "loader alone: 25 batches of 16"
	contains "$output" "img/s per rank"
	run -0 mfr-train --loader-only -b 16 --max-steps 3 --mask-ratio 0.5 train.mfr
	contains "$output" "loader alone: 3 batches of 16"
	[ -z "$(ls | grep -v '^train\.mfr')" ] || { ls; false; }
}
