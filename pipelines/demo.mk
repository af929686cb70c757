# pipelines/demo.mk — the built-in demo (`make demo`): the paper's cleaning
# loop end to end on the CPU, on synthetic faces with injected label noise.
#
# mfr-synth draws DEMO_IDS identities x DEMO_IMAGES faces with flipped labels,
# outliers and identities split under two labels (ground truth in
# demo/noise.tsv), and a separate population of held-out identities. Then
# pipelines/clean-retrain.mk runs up to ROUNDS rounds of train (a small
# network, online masks on MASK_RATIO of the faces) -> embed -> clean ->
# merge -> join, printing per round: images and classes, the cleaning's
# precision and recall against the injected noise, split identities joined
# again, held-out 10-fold accuracy and TAR at FAR 1e-3, and the TAR of masked
# probes against the unmasked gallery. Every number comes from the tools.
#   make demo                      # about 5 minutes on 2 cores
#   make demo DEMO_IDS=200 ROUNDS=4 SEED=7
.DELETE_ON_ERROR:
.SECONDARY:
BIN ?= bin
D ?= demo
DEMO_IDS ?= 60
DEMO_IMAGES ?= 16
VAL_IDS ?= 30
VAL_IMAGES ?= 8
SEED ?= 1
ROUNDS ?= 3
MASK_RATIO ?= 0.15
EPOCHS ?= 12
# how alike identities are (mfr-synth): the small network separates 0.3 well
DIFFICULTY ?= 0.3

all: $(D)/train.mfr $(D)/val.mfr
	@echo "== data: $$($(BIN)/mfr-cat --stats $(D)/train.mfr | grep -E '^(records|identities)' | tr '\n' ' ')" \
	  "with injected noise:" $$(awk -F'\t' 'NR > 1 { n[$$2]++ } END { for (k in n) printf "%s %d, ", k, n[k] }' $(D)/noise.tsv)
	@echo "== held out: $$($(BIN)/mfr-cat --stats $(D)/val.mfr | grep -E '^(records|identities)' | tr '\n' ' ')"
	@$(MAKE) --no-print-directory -f pipelines/clean-retrain.mk BIN=$(BIN) D=$(D)/loop DATA=$(D)/train.mfr \
	  VAL=$(D)/val.mfr TRUTH=$(D)/noise.tsv M=$(DEMO_IMAGES) ROUNDS=$(ROUNDS) SEED=$(SEED) \
	  ARCH=tests/arch/small.arch EPOCHS=$(EPOCHS) BATCH=32 LR=0.4 \
	  TRAIN_OPTS="--warmup 1 --decay-epochs $$(($(EPOCHS) * 2 / 3)),$$(($(EPOCHS) * 5 / 6)) --dropout 0 --wd 5e-4" \
	  THRE_INTRA=0.6 THRE_INTER=0.97 MERGE_OPTS="--mutual -k 1 --max-merge 2" MASK_RATIO=$(MASK_RATIO)
	@echo "== the last round: cleaning precision $$(tail -n 1 $(D)/loop/table.tsv | cut -f 6)" \
	  "recall $$(tail -n 1 $(D)/loop/table.tsv | cut -f 7) (removed records vs injected flips and outliers)"

$(D)/train.mfr:
	@mkdir -p $(D)
	$(BIN)/mfr-synth -n $(DEMO_IDS) -m $(DEMO_IMAGES) -s $(SEED) --difficulty $(DIFFICULTY) --flip-ratio 0.06 \
	  --outlier-ratio 0.04 --split-ratio 0.1 --truth $(D)/noise.tsv -j 2 -o $@ --index

# held-out identities: another population (another seed), no noise
$(D)/val.mfr:
	@mkdir -p $(D)
	$(BIN)/mfr-synth -n $(VAL_IDS) -m $(VAL_IMAGES) -s $$(($(SEED) + 1000)) --difficulty $(DIFFICULTY) -j 2 -o $@

.PHONY: all
