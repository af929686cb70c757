#!/usr/bin/env python3
"""dlib_ref.py - an independent numpy implementation of dlib's ResNet-29 face
descriptor, run from face-api.js's TensorFlow.js weights, to check the model
that `mfr-model --from-dlib` converts (tests/bats/dlib.bats).

Written from the model README (../shared/data/README.md, models/) and
face-api.js's faceRecognitionNet semantics, in NHWC and float64 like a tfjs
graph, not from mfr's C code: the manifest is read with Python's json, uint8
tensors dequantised as tfjs does (q * scale + min, rounded to float32), and
the layers written out below.

usage:
  dlib_ref.py MODEL_DIR IMAGE.ppm...             print one descriptor per image
  dlib_ref.py --compare TSV MODEL_DIR IMAGE.ppm...
      TSV: `mfr-cat --list --values` of mfr-embed's output for the same images
      in the same order. Prints, per image, max|a-b| / max|b| (a: mfr, b: this
      script) and exits 1 when any exceeds --tol (default 1e-4).
Images are binary PPM (P6), 150x150, already aligned: no alignment here.
"""
import json
import os
import sys

import numpy as np

MEAN_RGB = np.array([122.782, 117.001, 104.298])


def load_weights(model_dir):
    with open(os.path.join(model_dir, "face_recognition_model-weights_manifest.json")) as f:
        manifest = json.load(f)
    weights = {}
    for group in manifest:
        data = b"".join(open(os.path.join(model_dir, p), "rb").read() for p in group["paths"])
        off = 0
        for w in group["weights"]:
            n = int(np.prod(w["shape"], dtype=np.int64))
            q = w.get("quantization")
            if q:
                assert q["dtype"] == "uint8", q
                raw = np.frombuffer(data, np.uint8, n, off)
                off += n
                v = (raw.astype(np.float64) * q["scale"] + q["min"]).astype(np.float32)
            else:
                assert w["dtype"] == "float32"
                v = np.frombuffer(data, "<f4", n, off)
                off += 4 * n
            weights[w["name"]] = v.reshape(w["shape"]).astype(np.float64)
        assert off == len(data), (off, len(data))
    return weights


def conv2d(x, f, stride, padding):
    """x: H,W,Ci; f: kh,kw,Ci,Co (tfjs's HWIO); padding 'same' or 'valid' as TF."""
    kh, kw = f.shape[:2]
    H, W = x.shape[:2]
    if padding == "same":
        Ho, Wo = -(-H // stride), -(-W // stride)
        ph = max((Ho - 1) * stride + kh - H, 0)
        pw = max((Wo - 1) * stride + kw - W, 0)
        x = np.pad(x, ((ph // 2, ph - ph // 2), (pw // 2, pw - pw // 2), (0, 0)))
    Ho = (x.shape[0] - kh) // stride + 1
    Wo = (x.shape[1] - kw) // stride + 1
    out = np.zeros((Ho, Wo, f.shape[3]))
    for i in range(kh):
        for j in range(kw):
            patch = x[i:i + stride * (Ho - 1) + 1:stride, j:j + stride * (Wo - 1) + 1:stride, :]
            out += patch @ f[i, j]
    return out


def conv_layer(x, w, name, stride=1, relu=True, padding="same"):
    out = conv2d(x, w[name + "/conv/filters"], stride, padding) + w[name + "/conv/bias"]
    out = out * w[name + "/scale/weights"] + w[name + "/scale/biases"]
    return np.maximum(out, 0) if relu else out


def pool(x, k, s, op):  # 'valid' padding
    Ho = (x.shape[0] - k) // s + 1
    Wo = (x.shape[1] - k) // s + 1
    win = [x[i:i + s * (Ho - 1) + 1:s, j:j + s * (Wo - 1) + 1:s, :] for i in range(k) for j in range(k)]
    return np.max(win, axis=0) if op == "max" else np.mean(win, axis=0)


def residual(x, w, name):
    out = conv_layer(x, w, name + "/conv1")
    out = conv_layer(out, w, name + "/conv2", relu=False)
    return np.maximum(out + x, 0)


def residual_down(x, w, name):
    out = conv_layer(x, w, name + "/conv1", stride=2, padding="valid")
    out = conv_layer(out, w, name + "/conv2", relu=False)
    pooled = pool(x, 2, 2, "avg")
    if pooled.shape[2] != out.shape[2]:  # zeros appended as new channels
        pooled = np.concatenate([pooled, np.zeros(pooled.shape[:2] + (out.shape[2] - pooled.shape[2],))], 2)
    if pooled.shape[:2] != out.shape[:2]:  # the smaller map zero-extended at the bottom/right
        H = max(pooled.shape[0], out.shape[0])
        W = max(pooled.shape[1], out.shape[1])
        grow = lambda t: np.pad(t, ((0, H - t.shape[0]), (0, W - t.shape[1]), (0, 0)))
        pooled, out = grow(pooled), grow(out)
    return np.maximum(out + pooled, 0)


def descriptor(img, w):
    """img: 150,150,3 uint8 RGB -> 128 values."""
    x = (img.astype(np.float64) - MEAN_RGB) / 256
    x = conv_layer(x, w, "conv32_down", stride=2, padding="valid")
    x = pool(x, 3, 2, "max")
    for b in ("conv32_1", "conv32_2", "conv32_3"):
        x = residual(x, w, b)
    x = residual_down(x, w, "conv64_down")
    for b in ("conv64_1", "conv64_2", "conv64_3"):
        x = residual(x, w, b)
    x = residual_down(x, w, "conv128_down")
    for b in ("conv128_1", "conv128_2"):
        x = residual(x, w, b)
    x = residual_down(x, w, "conv256_down")
    for b in ("conv256_1", "conv256_2"):
        x = residual(x, w, b)
    x = residual_down(x, w, "conv256_down_out")
    return x.mean(axis=(0, 1)) @ w["fc"]


def read_ppm(path):
    with open(path, "rb") as f:
        data = f.read()
    fields, pos = [], 0
    while len(fields) < 4:  # magic, width, height, maxval; no comments (our writer has none)
        while data[pos:pos + 1].isspace():
            pos += 1
        start = pos
        while not data[pos:pos + 1].isspace():
            pos += 1
        fields.append(data[start:pos])
    assert fields[0] == b"P6" and fields[3] == b"255", path
    w, h = int(fields[1]), int(fields[2])
    return np.frombuffer(data, np.uint8, w * h * 3, pos + 1).reshape(h, w, 3)


def main(argv):
    tol, tsv = 1e-4, None
    while argv and argv[0].startswith("--"):
        if argv[0] == "--compare":
            tsv, argv = argv[1], argv[2:]
        elif argv[0] == "--tol":
            tol, argv = float(argv[1]), argv[2:]
        else:
            sys.exit("dlib_ref.py: unknown option " + argv[0])
    if len(argv) < 2:
        sys.exit(__doc__)
    w = load_weights(argv[0])
    refs = [descriptor(read_ppm(p), w) for p in argv[1:]]
    if tsv is None:
        for r in refs:
            print("\t".join("%.9g" % v for v in r))
        return 0
    rows = [l.rstrip("\n").split("\t") for l in open(tsv)][1:]
    if len(rows) != len(refs):
        sys.exit("dlib_ref.py: %d embeddings in %s, %d images" % (len(rows), tsv, len(refs)))
    worst = 0.0
    for k, (row, b) in enumerate(zip(rows, refs)):
        a = np.array([float(v) for v in row[6:]])
        rel = np.max(np.abs(a - b)) / np.max(np.abs(b))
        worst = max(worst, rel)
        print("image %d: max|mfr-ref| / max|ref| = %.3g (max|ref| %.3g)" % (k, rel, np.max(np.abs(b))))
    print("worst: %.3g (tolerance %g)" % (worst, tol))
    return 0 if worst <= tol else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
