# pipelines/demo.mk — the built-in demo (until training exists): synthesise a
# small face dataset with injected label noise, shuffle and index it, hold out
# identities for verification, check the round trip through an image folder
# (the way a user's own data comes in), and print what it holds.
# Run as `make demo` from the top folder; e.g. make demo DEMO_IDS=200 SEED=7
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

# training order: shuffled once, with an index for random access
$(D)/faces.mfr: $(D)/synth.mfr
	$(BIN)/mfr-cat --shuffle $(SEED) -o $@ --index $<

# identities split in two: one part to train on, one held out for verification
$(D)/part-0.mfr: $(D)/faces.mfr
	$(BIN)/mfr-cat --split 2 --split-by label -o $(D)/part $<

# out to an image folder and back in with mfr-pack
$(D)/repacked.mfr: $(D)/synth.mfr
	rm -rf $(D)/images
	$(BIN)/mfr-cat --extract $(D)/images $<
	$(BIN)/mfr-pack --aligned -l $(D)/labels.tsv -o $@ $(D)/images

$(D)/report.txt: $(D)/faces.mfr $(D)/part-0.mfr $(D)/repacked.mfr
	{ echo "== mfr-cat --verify --decode"; $(BIN)/mfr-cat --verify --decode $<; \
	  echo "== mfr-cat --stats $<"; $(BIN)/mfr-cat --stats $<; \
	  echo "== injected noise (ground truth in $(D)/noise.tsv)"; \
	  awk -F'\t' 'NR > 1 { n[$$2]++ } END { for (k in n) print "  " k ": " n[k] }' $(D)/noise.tsv; \
	  echo "== identity-disjoint split"; for s in $(D)/part-*.mfr; do \
	    printf '  %s: ' $$s; $(BIN)/mfr-cat --stats $$s | grep -E '^(records|identities)' | tr '\n' ' '; echo; done; \
	  echo "== round trip through $(D)/images and mfr-pack"; \
	  printf '  %s: ' $(D)/repacked.mfr; $(BIN)/mfr-cat --stats $(D)/repacked.mfr | grep -E '^(records|identities)' | tr '\n' ' '; echo; \
	  echo "== first records"; $(BIN)/mfr-cat --list $< | head -n 4; } > $@
