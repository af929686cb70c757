# pipelines/clean-retrain.mk — the paper's iterative cleaning loop as a make
# graph: train M_i on D_i, embed D_i, drop records far from their class centre
# (mfr-clean-intra), merge classes whose centres are close (mfr-merge-inter),
# keep those faces under their new labels (mfr-join) as D_{i+1}, repeat.
# Every artefact is a file under $(D)/r<i>/; a failed step deletes its target.
#
#   make -f pipelines/clean-retrain.mk DATA=train.mfr VAL=val.mfr [ROUNDS=3] ...
#
# DATA   labelled FACE stream to clean (with or without its .idx)
# VAL    FACE stream of held-out identities: verification after every round
# VALPAIRS  pairs TSV of VAL's ids (id_a id_b same) for 10-fold accuracy;
#        made from VAL when not given (genuine and impostor pairs alternating)
# TRUTH  mfr-synth --truth TSV, for cleaning precision and recall (optional)
# M      images per identity of mfr-synth data, for the merge figures (optional)
# ARCH, EPOCHS, BATCH, LR, TRAIN_OPTS   mfr-train's; RANKS > 1 runs it under $(MPIRUN)
# THRE_INTRA, THRE_INTER, CLEAN_OPTS, MERGE_OPTS   the cleaning thresholds
# MASK_RATIO   online masks in training (mfr-train --mask-ratio); masked-probe
#        TAR is measured on VAL with MASK_VAL of its faces masked when > 0
# ROUNDS   at most this many rounds; the loop also stops when the held-out
#        accuracy does not improve on the previous round's
.DELETE_ON_ERROR:
.SECONDARY:
THIS := $(lastword $(MAKEFILE_LIST))
BIN ?= bin
D ?= clean-retrain
DATA ?= $(error DATA=FILE: the FACE stream to clean)
VAL ?= $(error VAL=FILE: held-out FACE stream)
VALPAIRS ?=
TRUTH ?=
M ?=
ROUNDS ?= 3
ARCH ?= r50
EPOCHS ?= 17
BATCH ?= 64
LR ?= 0.1
TRAIN_OPTS ?=
RANKS ?= 1
MPIRUN ?= mpirun --oversubscribe
THRE_INTRA ?= 0.3
THRE_INTER ?= 0.7
CLEAN_OPTS ?=
MERGE_OPTS ?= --max-merge 4
MASK_RATIO ?= 0
MASK_VAL ?= 0.5
SEED ?= 1

TRAIN := $(if $(filter-out 1,$(RANKS)),$(MPIRUN) -np $(RANKS) )$(BIN)/mfr-train
HEADER := round\timages\tclasses\tremoved\tmerged\tprecision\trecall\tsplits_joined\twrong_groups\taccuracy\ttar@1e-3\tmasked_tar@1e-3

# The loop: rounds one after another, a table row printed as each ends.
all:
	@mkdir -p $(D); printf '$(HEADER)\n' > $(D)/table.tsv; prev=; \
	for i in $$(seq 1 $(ROUNDS)); do \
	  $(MAKE) --no-print-directory -f $(THIS) $(D)/r$$i/row.tsv || exit 1; \
	  cat $(D)/r$$i/row.tsv >> $(D)/table.tsv; column -t -s "$$(printf '\t')" $(D)/table.tsv; \
	  acc=$$(cut -f 10 $(D)/r$$i/row.tsv | tr -d %); \
	  if [ -n "$$prev" ] && awk -v a="$$acc" -v b="$$prev" 'BEGIN { exit !(a <= b) }'; then \
	    echo "round $$i: held-out accuracy $$acc% did not improve on $$prev%: stopping"; break; fi; \
	  prev=$$acc; \
	done

# held-out pairs: genuine and impostor alternating, so each tenth is balanced
$(D)/val.pairs.tsv: $(VAL)
	@mkdir -p $(@D)
	$(BIN)/mfr-cat --list $< | awk -F'\t' 'BEGIN { n = 0; ng = 0; s = 0 } NR > 1 { id[n] = $$4; lab[n] = $$5; n++ } \
	  END { for (i = 0; i < n; i++) for (j = i + 1; j < n; j++) if (lab[i] == lab[j]) g[ng++] = id[i] "\t" id[j]; \
	        for (k = 0; k < ng; k++) { print g[k] "\t1"; \
	          do { a = int((k * 7919 + s) % n); b = int((k * 104729 + 3 * s + 1) % n); s++ } while (lab[a] == lab[b]); \
	          print id[a] "\t" id[b] "\t0" } }' > $@
PAIRS := $(or $(VALPAIRS),$(D)/val.pairs.tsv)

# VAL with MASK_VAL of its faces masked: masked probes, unmasked gallery
$(D)/val-masked.mfr: $(VAL)
	@mkdir -p $(@D)
	$(BIN)/mfr-maskaug -r $(MASK_VAL) -s $(SEED) -o $@ $<

define round
# round $(1): its training set is DATA (round 1) or round $(2)'s joined output
$(D)/r$(1)/train.mfr: $(if $(2),$(D)/r$(2)/kept.emb.mfr $(D)/r$(2)/train.mfr,$(DATA))
	@mkdir -p $$(@D)
	$(if $(2),$(BIN)/mfr-join -o $$@ $$^,$(BIN)/mfr-cat -o $$@ $$<)

$(D)/r$(1)/model.mfrm: $(D)/r$(1)/train.mfr
	$(TRAIN) -a $(ARCH) -b $(BATCH) --epochs $(EPOCHS) --lr $(LR) --seed $(SEED) --mask-ratio $(MASK_RATIO) \
	  $(TRAIN_OPTS) --log $(D)/r$(1)/train.tsv --log-every 50 -o $$@ $$<

$(D)/r$(1)/emb.mfr: $(D)/r$(1)/model.mfrm $(D)/r$(1)/train.mfr
	$(BIN)/mfr-embed -m $$< --normalize -o $$@ $(D)/r$(1)/train.mfr

$(D)/r$(1)/clean.emb.mfr: $(D)/r$(1)/emb.mfr
	$(BIN)/mfr-clean-intra -t $(THRE_INTRA) $(CLEAN_OPTS) --report $(D)/r$(1)/removed.tsv -o $$@ $$<

$(D)/r$(1)/kept.emb.mfr: $(D)/r$(1)/clean.emb.mfr
	$(BIN)/mfr-merge-inter -t $(THRE_INTER) $(MERGE_OPTS) --pairs $(D)/r$(1)/merged.tsv --map $(D)/r$(1)/labels.tsv \
	  -o $$@ $$<

$(D)/r$(1)/val.emb.mfr: $(D)/r$(1)/model.mfrm $(VAL)
	$(BIN)/mfr-embed -m $$< --flip --normalize -o $$@ $(VAL)

$(D)/r$(1)/val.txt: $(D)/r$(1)/val.emb.mfr $(PAIRS)
	$(BIN)/mfr-score --pairs $(PAIRS) -p pairs -p all --far 1e-3,1e-2 $$< > $$@

$(D)/r$(1)/valmask.emb.mfr: $(D)/r$(1)/model.mfrm $(D)/val-masked.mfr
	$(BIN)/mfr-embed -m $$< --flip --normalize -o $$@ $(D)/val-masked.mfr

$(D)/r$(1)/valmask.txt: $(D)/r$(1)/valmask.emb.mfr
	$(BIN)/mfr-score -p pg --far 1e-3,1e-2 $$< > $$@

$(D)/r$(1)/row.tsv: $(D)/r$(1)/kept.emb.mfr $(D)/r$(1)/val.txt $(if $(filter-out 0,$(MASK_VAL)),$(D)/r$(1)/valmask.txt)
	MFR_BIN=$(BIN) bash pipelines/round-report.sh $(1) $(DATA) $$< $(D)/r$(1)/val.txt \
	  $(if $(filter-out 0,$(MASK_VAL)),$(D)/r$(1)/valmask.txt,-) $(TRUTH) $(M) > $$@
endef

$(foreach i,$(shell seq 1 $(ROUNDS)),$(eval $(call round,$(i),$(if $(filter 1,$(i)),,$(shell expr $(i) - 1)))))

.PHONY: all
