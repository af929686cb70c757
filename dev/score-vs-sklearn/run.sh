#!/usr/bin/env bash
# dev/score-vs-sklearn — a one-off cross-check of score.c against the
# reference implementations the two TAR@FAR semantics come from (not part of
# make test: it needs scikit-learn). cmp.py draws 300 random score sets
# (1..60 genuine, 1..400 impostor, often on a coarse grid so that genuine
# and impostor scores tie), and compares near.c's readings with:
#   nearest  insightface's IJB script: sklearn roc_curve, np.flipud, the
#            first min of (|fpr - x|, index)
#   at most  bob.measure's far_threshold: the (floor(x*N)+1)-th highest
#            impostor, accept above it
#   AUC      sklearn roc_auc_score
# Last run (scikit-learn 1.9.1): "mismatches: 0" for seeds 1 and 2.
# usage: make && dev/score-vs-sklearn/run.sh [SEED]   (pip install scikit-learn numpy)
set -eu
cd "$(dirname "$0")"
top=../..
${CC:-cc} -O2 -I$top/common near.c $top/build/rel/libmfr.a -ldnnl -lgomp -lm -lpthread -o /tmp/mfr-near
sed 's|"\./near"|"/tmp/mfr-near"|' cmp.py | python3 - "${1:-1}"
