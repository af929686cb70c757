#!/bin/sh
# vsum.sh FILE: oneDNN verbose exec times of the LAST forward in FILE (a run of
# dev/cpu_net with DNNL_VERBOSE=1), summed by primitive kind and shape
grep '^onednn_verbose,exec' "$1" | awk -F, '/ic3oc64/ {n++} {f[NR]=n; l[NR]=$0} END {for (i=1;i<=NR;i++) if (f[i]==n) print l[i]}' |
awk -F, '{t=$NF; k=$4" "$5" "$(NF-1); if ($4=="reorder") k=$4" "$5" "$7" "$(NF-1); s[k]+=t; c[k]++; tot+=t; if($4=="reorder") ro+=t; if ($4=="convolution") cv+=t} END {for (k in s) printf "%8.2f ms %4d %s\n", s[k], c[k], k; printf "total %.1f reorders %.1f conv %.1f\n", tot, ro, cv}' | sort -rn
