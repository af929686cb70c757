/* near.c — reads "score genuine(0|1)" lines, prints for each FAR argument the
 * nearest and at-most operating points (how, TAR, FAR), then EER and AUC.
 * For dev/score-vs-sklearn/cmp.py only. usage: near KEEP FAR... < scores */
#include <stdio.h>
#include <stdlib.h>
#include "score.h"
int main(int argc, char **argv){ mfr_error e; mfr_scores *s = mfr_scores_new(atoll(argv[1]), -1, 1, &e);
 float v; int g; while (scanf("%f %d", &v, &g) == 2) mfr_scores_add(s, v, g, &e); mfr_scores_finish(s, &e);
 for (int i = 2; i < argc; i++) { double x = atof(argv[i]); mfr_op_point n = mfr_tar_at_far(s, x, MFR_NEAREST), a = mfr_tar_at_far(s, x, MFR_AT_MOST);
  printf("%g %d %.9f %.9f %d %.9f %.9f\n", x, n.how, n.tar, n.far, a.how, a.tar, a.far); }
 double t; printf("eer %.9f auc %.9f\n", mfr_eer(s,&t,NULL), mfr_auc(s,NULL)); return 0; }
