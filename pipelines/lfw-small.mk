# pipelines/lfw-small.mk — a small honest experiment on real faces: a small
# iresnet (pipelines/ir-mini.arch, 1.1M parameters, 69M MACs) trained from
# scratch on LFW's identity-disjoint training split (peopleDevTrain.txt,
# people with 2+ images: 1,184 identities, 6,671 faces), tested on
# pairsDevTest.txt (500 same + 500 different pairs of other people).
# Needs ../shared/data/lfw (not shipped with mfr).
#   make -f pipelines/lfw-small.mk [LFW=DIR] [EPOCHS=12] [RANKS=2]
.DELETE_ON_ERROR:
.SECONDARY:
BIN ?= bin
LFW ?= ../shared/data/lfw
D ?= lfw-small
ARCH ?= pipelines/ir-mini.arch
EPOCHS ?= 12
DECAY ?= 6,9,11
BATCH ?= 64
LR ?= 0.4
RANKS ?= 1
MPIRUN ?= mpirun --oversubscribe
TRAIN := $(if $(filter-out 1,$(RANKS)),$(MPIRUN) -np $(RANKS) )$(BIN)/mfr-train

all: $(D)/test.txt
	@cat $<

# training faces: "Name/Name_000k.jpg label", labels in peopleDevTrain's order
$(D)/train.list: $(LFW)/peopleDevTrain.txt
	@mkdir -p $(@D)
	awk 'NR > 1 && $$2 >= 2 { for (i = 1; i <= $$2; i++) printf "%s/%s_%04d.jpg %d\n", $$1, $$1, i, n; n++ }' $< > $@

$(D)/train.mfr: $(D)/train.list
	$(BIN)/mfr-pack --list $< --root $(LFW)/aligned112 --no-align -o $@ --index

$(D)/model.mfrm: $(D)/train.mfr
	$(TRAIN) -a $(ARCH) -b $(BATCH) --lr $(LR) --warmup 1 --epochs $(EPOCHS) --decay-epochs $(DECAY) --dropout 0 \
	  --wd 5e-4 --log $(D)/train.tsv --log-every 52 --checkpoint $(D)/ckpt.mfrm --save-every 208 -o $@ $<

# test faces: every image of the people pairsDevTest names, packed from a
# folder of links so the label map carries their names (a person missing from
# aligned112 — Betsy_Coffin, see the data's README — is left out)
$(D)/test.mfr: $(LFW)/pairsDevTest.txt
	rm -rf $(D)/test-img && mkdir -p $(D)/test-img
	awk 'NR > 1 { print $$1; if (NF == 4) print $$3 }' $< | sort -u | while read n; do \
	  if [ -d "$(LFW)/aligned112/$$n" ]; then ln -s "$(abspath $(LFW))/aligned112/$$n" $(D)/test-img/$$n; \
	  else echo "lfw-small: $$n is not in $(LFW)/aligned112: its pairs are left out" >&2; fi; done
	$(BIN)/mfr-pack --aligned -l $(D)/test.labels.tsv -o $@ $(D)/test-img

# pairsDevTest as sample ids (image k of a person = the k-th record of its
# label), same and different pairs alternating so that every tenth is balanced
$(D)/test.pairs.tsv: $(LFW)/pairsDevTest.txt $(D)/test.mfr
	$(BIN)/mfr-cat --list $(D)/test.mfr | awk -F'\t' 'NR > 1 { print $$4 "\t" $$5 }' | \
	  awk -v map=$(D)/test.labels.tsv -v pairs=$< 'BEGIN { FS = "\t"; while ((getline l < map) > 0) { split(l, f, "\t"); name[f[1]] = f[2] } } \
	    { k[$$2]++; id[name[$$2] "/" k[$$2]] = $$1 } \
	    END { FS = " "; while ((getline l < pairs) > 0) { n = split(l, f, /[ \t]+/); \
	            if (n == 3) { a = f[1] "/" f[2]; b = f[1] "/" f[3]; s = 1 } else if (n == 4) { a = f[1] "/" f[2]; b = f[3] "/" f[4]; s = 0 } else continue; \
	            if (!(a in id) || !(b in id)) { skip++; continue } \
	            if (s) g[ng++] = id[a] "\t" id[b] "\t1"; else d[nd++] = id[a] "\t" id[b] "\t0" } \
	          for (i = 0; i < ng || i < nd; i++) { if (i < ng) print g[i]; if (i < nd) print d[i] } \
	          if (skip) print "lfw-small: " skip " pair(s) name an image not in the test set: left out" > "/dev/stderr" }' > $@

$(D)/test.emb.mfr: $(D)/model.mfrm $(D)/test.mfr
	$(BIN)/mfr-embed -m $< --flip --normalize -o $@ $(D)/test.mfr

$(D)/test.txt: $(D)/test.emb.mfr $(D)/test.pairs.tsv
	$(BIN)/mfr-score --pairs $(D)/test.pairs.tsv -p pairs --far 1e-2,1e-1 $< > $@

.PHONY: all
