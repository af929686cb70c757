import numpy as np, subprocess, sys
from sklearn.metrics import roc_curve, roc_auc_score
rng = np.random.default_rng(int(sys.argv[1]))
bad = 0
for trial in range(300):
    ng, ni = rng.integers(1, 60), rng.integers(1, 400)
    q = rng.choice([10, 50, 1000, 0])
    g = rng.normal(0.5, 0.3, ng); i = rng.normal(0.0, 0.3, ni)
    if q: g = np.round(g * q) / q; i = np.round(i * q) / q
    g = g.astype(np.float32); i = i.astype(np.float32)
    xs = sorted(set([1.0 / ni * k for k in (1, 2, 3)] + list(rng.uniform(1.0 / ni, 1, 5))))
    keep = ni
    inp = "".join("%.9g 1\n" % v for v in g) + "".join("%.9g 0\n" % v for v in i)
    out = subprocess.run(["./near", str(keep)] + ["%.17g" % x for x in xs], input=inp, capture_output=True, text=True).stdout.split("\n")
    label = np.r_[np.ones(ng), np.zeros(ni)]; score = np.r_[g, i].astype(np.float64)
    fpr, tpr, _ = roc_curve(label, score)
    fpr = np.flipud(fpr); tpr = np.flipud(tpr)
    for k, x in enumerate(xs):
        _, mi = min(list(zip(abs(fpr - x), range(len(fpr)))))
        f = out[k].split()
        if abs(float(f[2]) - tpr[mi]) > 1e-9 or abs(float(f[3]) - fpr[mi]) > 1e-9:
            bad += 1
            if bad < 5: print("nearest mismatch", trial, x, f, tpr[mi], fpr[mi], q, keep)
        # at-most: bob far_threshold equivalent: largest TAR with FAR <= x
        a = int(np.floor(x * ni + 1e-9))
        srt = np.sort(i)[::-1]
        t = srt[a] if a < ni else -np.inf
        tar = (g > t).mean()
        if abs(float(f[5]) - tar) > 1e-9:
            bad += 1
            if bad < 5: print("at-most mismatch", trial, x, f, tar)
    auc = roc_auc_score(label, score) if ng and ni else None
    ea = out[len(xs)].split()
    if abs(float(ea[3]) - auc) > 1e-9:
        bad += 1
        if bad < 5: print("auc mismatch", trial, ea, auc)
print("mismatches:", bad)
