# pipelines/demo.mk — the built-in demo (until training exists): synthesise a
# small face dataset with injected label noise, pack it through an image
# folder as a user's data would be, check it, index it, split it, and print
# what it holds. Run as `make demo` from the top folder.
#   make demo DEMO_IDS=200 DEMO_IMAGES=12 SEED=7
.DELETE_ON_ERROR:
BIN ?= bin
D ?= demo
DEMO_IDS ?= 100
DEMO_IMAGES ?= 10
SEED ?= 1

all: $(D)/report.txt
	@cat $(D)/report.txt

$(D)/synth.mfr:
	@mkdir -p $(D)
	$(BIN)/mfr-synth -n $(DEMO_IDS) -m $(DEMO_IMAGES) -s $(SEED) --flip-ratio 0.05 --outlier-ratio 0.03 \
	  --truth $(D)/noise.tsv -o $@

# out to an image folder and back, the way a user's own data comes in
$(D)/faces.mfr: $(D)/synth.mfr
	rm -rf $(D)/images
	$(BIN)/mfr-cat --extract $(D)/images $<
	$(BIN)/mfr-pack --aligned -l $(D)/labels.tsv -o $@ --index $(D)/images

$(D)/shards: $(D)/faces.mfr
	$(BIN)/mfr-cat --split 2 --split-by label -o $(D)/part $<
	touch $@

$(D)/report.txt: $(D)/faces.mfr $(D)/shards
	{ echo "== mfr-cat --verify --decode"; $(BIN)/mfr-cat --verify --decode $<; \
	  echo "== mfr-cat --stats"; $(BIN)/mfr-cat --stats $<; \
	  echo "== injected noise (ground truth, $(D)/noise.tsv)"; \
	  awk -F'\t' 'NR > 1 { n[$$2]++ } END { for (k in n) print "  " k ": " n[k] }' $(D)/noise.tsv; \
	  echo "== shards by identity"; for s in $(D)/part-*.mfr; do \
	    printf '  %s: ' $$s; $(BIN)/mfr-cat --stats $$s | grep -E '^(records|identities)' | tr '\n' ' '; echo; done; \
	  echo "== first records"; $(BIN)/mfr-cat --list $< | head -n 4; } > $@
