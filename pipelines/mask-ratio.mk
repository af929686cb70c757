# pipelines/mask-ratio.mk — the paper's mask-ratio sweep (its Tables 6 and
# 10): one model per share of training faces masked online (mfr-train
# --mask-ratio), then the FT_FROM model fine-tuned at FINETUNE; each scored on
# held-out identities unmasked (all-vs-all) and as masked probes against an
# unmasked gallery (half of VAL masked by mfr-maskaug), in one table.
#
#   make -f pipelines/mask-ratio.mk DATA=train.mfr VAL=val.mfr [RATIOS="0.10 0.15 0.20"] ...
#
# ARCH, EPOCHS, BATCH, LR, TRAIN_OPTS, RANKS   as clean-retrain.mk
# FT_EPOCHS, FT_LR   the fine-tuning run (from the FT_FROM model, new classifier)
.DELETE_ON_ERROR:
.SECONDARY:
BIN ?= bin
D ?= mask-ratio
DATA ?= $(error DATA=FILE: the FACE stream to train on)
VAL ?= $(error VAL=FILE: held-out FACE stream)
RATIOS ?= 0.10 0.15 0.20
FT_FROM ?= 0.15
FINETUNE ?= 0.33
ARCH ?= r50
EPOCHS ?= 17
FT_EPOCHS ?= 2
BATCH ?= 64
LR ?= 0.1
FT_LR ?= 0.01
TRAIN_OPTS ?=
RANKS ?= 1
MPIRUN ?= mpirun --oversubscribe
SEED ?= 1
TRAIN := $(if $(filter-out 1,$(RANKS)),$(MPIRUN) -np $(RANKS) )$(BIN)/mfr-train
RUNS := $(addprefix m,$(RATIOS)) ft$(FINETUNE)

all: $(foreach r,$(RUNS),$(D)/$(r)/val.txt $(D)/$(r)/valmask.txt)
	@printf 'setting\tunmasked_tar@1e-3\tunmasked_eer\tmasked_tar@1e-3\tmasked_eer\n' > $(D)/table.tsv
	@for r in $(RUNS); do \
	  tar() { awk -v p="^$$2:" '$$0 ~ p { f = 1 } f && $$1 == "0.001" { print ($$2 == "not" ? "n/r" : $$2); exit }' $$1; }; \
	  eer() { awk '/EER:/ { print $$2; exit }' $$1; }; \
	  printf '%s\t%s\t%s\t%s\t%s\n' "$$r" "$$(tar $(D)/$$r/val.txt all)" "$$(eer $(D)/$$r/val.txt)" \
	    "$$(tar $(D)/$$r/valmask.txt pg)" "$$(eer $(D)/$$r/valmask.txt)" >> $(D)/table.tsv; done
	@column -t -s "$$(printf '\t')" $(D)/table.tsv

$(D)/val-masked.mfr: $(VAL)
	@mkdir -p $(@D)
	$(BIN)/mfr-maskaug -r 0.5 -s $(SEED) -o $@ $<

$(D)/m%/model.mfrm: $(DATA)
	@mkdir -p $(@D)
	$(TRAIN) -a $(ARCH) -b $(BATCH) --epochs $(EPOCHS) --lr $(LR) --seed $(SEED) --mask-ratio $* $(TRAIN_OPTS) \
	  --log $(@D)/train.tsv --log-every 50 -o $@ $<

$(D)/ft$(FINETUNE)/model.mfrm: $(D)/m$(FT_FROM)/model.mfrm $(DATA)
	@mkdir -p $(@D)
	$(TRAIN) -a $(ARCH) -b $(BATCH) --epochs $(FT_EPOCHS) --lr $(FT_LR) --seed $(SEED) --mask-ratio $(FINETUNE) \
	  --init $< $(TRAIN_OPTS) --log $(@D)/train.tsv --log-every 50 -o $@ $(DATA)

$(D)/%/val.emb.mfr: $(D)/%/model.mfrm $(VAL)
	$(BIN)/mfr-embed -m $< --flip --normalize -o $@ $(VAL)

$(D)/%/valmask.emb.mfr: $(D)/%/model.mfrm $(D)/val-masked.mfr
	$(BIN)/mfr-embed -m $< --flip --normalize -o $@ $(D)/val-masked.mfr

$(D)/%/val.txt: $(D)/%/val.emb.mfr
	$(BIN)/mfr-score -p all --far 1e-3,1e-2 $< > $@

$(D)/%/valmask.txt: $(D)/%/valmask.emb.mfr
	$(BIN)/mfr-score -p pg --far 1e-3,1e-2 $< > $@

.PHONY: all
