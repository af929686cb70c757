#!/usr/bin/env python3
"""torch_ref.py — the PyTorch peer of mfr's GPU training benchmark.

mfr-train's network and loss, trained on one CUDA device the way insightface's
arcface_torch trains (autocast fp16/bf16, channels_last, cudnn.benchmark,
GradScaler for fp16 only, SGD momentum 0.9), so mfr's CUDA trainer has a
figure to be held against: images/s of the training step, peak memory, and
the largest classifier that fits.

Network: built from mfr's architecture text (data-formats.md section 8). --arch
takes a preset (r18 r34 r50 r100 r200 resnet50 se-resnet50 resnext50 resnest50,
aliases too; generated here exactly as common/arch_presets.c writes them) or an
.arch file, e.g. `bin/mfr-model --new r50 -o r50.mfrm && bin/mfr-model --arch
r50.mfrm >r50.arch` (mfr has no option that prints a preset's text directly).
Every op of table 8.3 maps to torch with mfr's semantics (bn eps/momentum as
written, PyTorch's convention; fixgamma a frozen weight; dropout p set to
--dropout, 0.4, as mfr-train does). The module's parameter count must equal the
text's, and --expect-params P (from `mfr-embed --describe`) too.

Loss: mfr's pfc.h. Features and classifier rows (C x D, fp32) L2-normalised,
cosine logits with s * (cos(m1 theta + m2) - m3) on the target (CosFace s=64
m3=0.4 by default), softmax cross-entropy, all in fp32 outside autocast
(--fp32-head also runs linear/bn1d layers in fp32, as insightface's iresnet
runs fc and features). Partial FC (--sample-rate r < 1): the batch's classes
plus random others, max(positives, ceil(r C)) rows, as PartialFC v2 on one
GPU. The backward is split at the embedding (classifier in fp32, then the
backbone from the loss-scaled embedding gradient): the gradients of one
backward. --fc-momentum dense (default, insightface v2: SGD on the whole
weight) or sparse (mfr-train's default: only sampled rows move).
Data: uint8 images and uniform labels made on the device once (--pool 16
batches, cycled), normalised (x - 127.5) / 128: the step, not a loader.

Modes: (default) train --steps after --warmup, images/s from CUDA events, peak
memory, losses; --max-classes: the largest class count whose step fits at
--sample-rate 0.1 (doubling then bisection, OOM caught, ~60 s); --check: 3
fp32 steps with TF32 off on one batch plus self-checks (tensor names and
shapes against the text, the loss against float64, gradcheck of the margin);
--describe/--print-arch ARCH: mfr-embed --describe's table or the canonical
text, no torch needed (compared byte for byte with mfr's own).

Output: one line, key=value as bench_gpu_train prints ("torch arch=r50 batch=128
dtype=fp16 classes=100000 rate=1 img_s=... step_ms=... peak_gib=... loss=...";
peak_gib is max_memory_allocated over the timed steps), or one JSON object
with --json (more fields: reserved, the peak with the warm-up, versions).

tests/gpu/run.sh, on the device machine, writes each preset's canonical text
with mfr-model (--new, then --arch) and runs, beside bench_gpu_train on the
same configuration,
    python3 tests/gpu/torch_ref.py --arch $OUT/r50.arch --batch 128 --dtype fp16 \\
        --classes 100000 --sample-rate 1 --steps 20 --warmup 5
reading img_s= and peak_gib= from the last line. By hand:
    python3 tests/gpu/torch_ref.py --check --expect-params 43590848   # r50
    python3 tests/gpu/torch_ref.py --max-classes --json
Exit status: 0; 1 on a failed check, a parameter count that differs, a
non-finite loss or a CUDA failure; 2 on usage, an invalid .arch, no torch or
no CUDA device.
"""
import argparse
import gc
import json
import math
import os
import re
import sys
import time

# ---------------------------------------------------------------------------
# .arch text (data-formats.md section 8): parser, shapes, tensors, counts
# ---------------------------------------------------------------------------

MAX_CHANNELS = 65536
MAX_SIDE = 16384
MAX_ELEMS = 1 << 28
MAX_INPUTS = 256
MAX_NAME = 128

AUTO = object()  # a default resolved from other values (pool s, splat inter)


class ArchError(Exception):
    pass


# attribute: (key, kind, lo, hi, default, required, open_hi), in table order
# (the canonical writer's order). kinds: int, pair, real, bool.
def _a(key, kind, lo, hi, default=None, required=False, open_hi=False):
    return (key, kind, lo, hi, default, required, open_hi)


_BN = [_a("eps", "real", 1e-20, 1.0, 1e-5), _a("momentum", "real", 0.0, 1.0, 0.1), _a("fixgamma", "bool", 0, 1, 0)]
_POOL = [_a("k", "pair", 1, 255, required=True), _a("s", "pair", 1, 255, AUTO), _a("p", "pair", 0, 255, 0)]

# op: (min inputs, max inputs, attributes)
OPS = {
    "input": (0, 0, []),
    "conv": (1, 1, [_a("out", "int", 1, MAX_CHANNELS, required=True), _a("k", "pair", 1, 255, required=True),
                    _a("s", "pair", 1, 255, 1), _a("p", "pair", 0, 255, 0), _a("g", "int", 1, MAX_CHANNELS, 1),
                    _a("bias", "bool", 0, 1, 0)]),
    "bn": (1, 1, _BN),
    "bn1d": (1, 1, _BN),
    "prelu": (1, 1, []),
    "relu": (1, 1, []),
    "sigmoid": (1, 1, []),
    "add": (2, MAX_INPUTS, []),
    "concat": (2, MAX_INPUTS, []),
    "gap": (1, 1, []),
    "maxpool": (1, 1, _POOL),
    "avgpool": (1, 1, _POOL),
    "pad": (1, 1, [_a("t", "int", 0, 255, 0), _a("b", "int", 0, 255, 0), _a("l", "int", 0, 255, 0),
                   _a("r", "int", 0, 255, 0)]),
    "chpad": (1, 1, [_a("out", "int", 1, MAX_CHANNELS, required=True)]),
    "dropout": (1, 1, [_a("p", "real", 0.0, 1.0, 0.0, open_hi=True)]),
    "flatten": (1, 1, []),
    "linear": (1, 1, [_a("out", "int", 1, MAX_CHANNELS, required=True), _a("bias", "bool", 0, 1, 1)]),
    "l2norm": (1, 1, []),
    "se": (1, 1, [_a("r", "int", 1, MAX_CHANNELS, 16)]),
    "splat": (1, 1, [_a("radix", "int", 2, 64, 2), _a("inter", "int", 1, MAX_CHANNELS, AUTO)]),
}
NEEDS_MAP = {"conv", "bn", "gap", "maxpool", "avgpool", "pad", "chpad", "flatten", "se", "splat"}
NEEDS_VEC = {"bn1d", "linear", "l2norm"}

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_.\-]*\Z")
_UINT = re.compile(r"[0-9]{1,9}\Z")
_REAL = re.compile(r"[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)?\Z")


class Shape:
    """One image's activation: a map c x h x w, or a vector of c (vec)."""
    __slots__ = ("vec", "c", "h", "w")

    def __init__(self, vec, c, h=1, w=1):
        self.vec, self.c, self.h, self.w = vec, c, h, w

    def elems(self):
        return self.c * self.h * self.w

    def __eq__(self, o):
        return (self.vec, self.c, self.h, self.w) == (o.vec, o.c, o.h, o.w)

    def __str__(self):
        return str(self.c) if self.vec else f"{self.c}x{self.h}x{self.w}"


class Layer:
    __slots__ = ("op", "name", "line", "ins", "attrs", "in_shape", "shape", "tensors", "params", "macs")


class Arch:
    """layers (file order, layers[0] the input), outputs (indices),
    tensors [(name, dims, buffer, frozen)], params, macs."""

    def __init__(self):
        self.layers, self.outputs, self.tensors = [], [], []
        self.params = self.macs = 0
        self.index = {}

    def find(self, name):
        return self.index.get(name, -1)


def _uint(v):
    if not _UINT.match(v):
        raise ValueError
    return int(v)


def _value(op, lname, spec, val):
    key, kind, lo, hi, _, _, open_hi = spec
    try:
        if kind == "bool":
            if val not in ("0", "1"):
                raise ArchError(f"{op} '{lname}': bad value '{val}' for '{key}' (0 or 1)")
            return int(val)
        if kind == "int":
            v = _uint(val)
            if not lo <= v <= hi:
                raise ArchError(f"{op} '{lname}': '{key}' out of range {lo}..{hi}: {v}")
            return v
        if kind == "pair":
            if "x" in val:
                a, b = val.split("x", 1)
                v = (_uint(a), _uint(b))
            else:
                v = (_uint(val),) * 2
            if not (lo <= v[0] <= hi and lo <= v[1] <= hi):
                raise ArchError(f"{op} '{lname}': '{key}' out of range {lo}..{hi}: {val}")
            return v
        if not _REAL.match(val):
            raise ValueError
        d = float(val)
        if not math.isfinite(d) or d < lo or d > hi or (open_hi and d == hi):
            raise ArchError(f"{op} '{lname}': '{key}' out of range {lo:g}..{hi:g}"
                            f"{' (exclusive)' if open_hi else ''}: {val}")
        return d
    except ValueError:
        raise ArchError(f"{op} '{lname}': bad number '{val}' for '{key}'") from None


def _out_side(n, k, s, p):
    span = n + 2 * p - k
    return 0 if span < 0 else span // s + 1


def _infer(a, L):
    """Output shape, tensors, parameters and MACs of L (8.3, 8.4)."""
    x, op, at, nm = L.in_shape, L.op, L.attrs, L.name
    src = a.layers[L.ins[0]].name
    if op in NEEDS_MAP and x.vec:
        raise ArchError(f"{op} '{nm}': input '{src}' is a vector ({x.c}), not a C x H x W map")
    if op in NEEDS_VEC and not x.vec:
        raise ArchError(f"{op} '{nm}': input '{src}' is a {x} map, not a vector"
                        f"{' (flatten it first)' if op == 'linear' else ''}")
    y, n, macs, t = Shape(x.vec, x.c, x.h, x.w), x.elems(), 0, []

    def bn_t(prefix, c, fix):
        return [(prefix + "weight", (c,), 0, fix), (prefix + "bias", (c,), 0, 0),
                (prefix + "running_mean", (c,), 1, 0), (prefix + "running_var", (c,), 1, 0)]

    if op == "conv":
        g, (kh, kw), (sh, sw), (ph, pw) = at["g"], at["k"], at["s"], at["p"]
        if x.c % g or at["out"] % g:
            raise ArchError(f"conv '{nm}': g={g} does not divide the {x.c} input and {at['out']} output channels")
        y = Shape(0, at["out"], _out_side(x.h, kh, sh, ph), _out_side(x.w, kw, sw, pw))
        if not y.h or not y.w:
            raise ArchError(f"conv '{nm}': kernel {kh}x{kw} does not fit the {x} input padded by {ph}x{pw}")
        t = [("weight", (at["out"], x.c // g, kh, kw), 0, 0)]
        if at["bias"]:
            t.append(("bias", (at["out"],), 0, 0))
        macs = y.elems() * (x.c // g) * kh * kw
    elif op in ("bn", "bn1d"):
        t, macs = bn_t("", x.c, at["fixgamma"]), n
    elif op == "prelu":
        t, macs = [("weight", (x.c,), 0, 0)], n
    elif op in ("add", "concat"):
        for i in L.ins[1:]:
            z = a.layers[i].shape
            ok = z == x if op == "add" else (z.vec == x.vec and z.h == x.h and z.w == x.w)
            if not ok:
                raise ArchError(f"{op} '{nm}': input '{a.layers[i].name}' is {z} but '{src}' is {x}"
                                f"{' (concat needs equal H x W)' if op == 'concat' else ''}")
            if op == "concat":
                y.c += z.c
        if op == "concat" and y.c > (MAX_ELEMS if x.vec else MAX_CHANNELS):
            raise ArchError(f"concat '{nm}': too many channels")
    elif op == "gap":
        y.h = y.w = 1
        macs = n
    elif op in ("maxpool", "avgpool"):
        (kh, kw), (sh, sw), (ph, pw) = at["k"], at["s"], at["p"]
        if 2 * ph > kh or 2 * pw > kw:
            raise ArchError(f"{op} '{nm}': padding {ph}x{pw} is more than half the {kh}x{kw} window")
        y.h, y.w = _out_side(x.h, kh, sh, ph), _out_side(x.w, kw, sw, pw)
        if not y.h or not y.w:
            raise ArchError(f"{op} '{nm}': window {kh}x{kw} does not fit the {x} input padded by {ph}x{pw}")
        if op == "avgpool":
            macs = y.elems() * kh * kw
    elif op == "pad":
        y.h, y.w = x.h + at["t"] + at["b"], x.w + at["l"] + at["r"]
        if y.h > MAX_SIDE or y.w > MAX_SIDE:
            raise ArchError(f"pad '{nm}': output side above {MAX_SIDE}")
    elif op == "chpad":
        if at["out"] < x.c:
            raise ArchError(f"chpad '{nm}': out={at['out']} is fewer than the {x.c} input channels")
        y.c = at["out"]
    elif op == "flatten":
        y = Shape(1, n)
    elif op == "linear":
        y.c = at["out"]
        t = [("weight", (at["out"], x.c), 0, 0)]
        if at["bias"]:
            t.append(("bias", (at["out"],), 0, 0))
        macs = x.c * at["out"]
    elif op == "l2norm":
        macs = 2 * n
    elif op == "se":
        mid = x.c // at["r"]
        if not mid:
            raise ArchError(f"se '{nm}': r={at['r']} leaves no channels of {x.c}")
        t = [("fc1_weight", (mid, x.c), 0, 0), ("fc1_bias", (mid,), 0, 0), ("fc2_weight", (x.c, mid), 0, 0),
             ("fc2_bias", (x.c,), 0, 0)]
        macs = 2 * n + 2 * x.c * mid
    elif op == "splat":
        r = at["radix"]
        if x.c % r:
            raise ArchError(f"splat '{nm}': radix={r} does not divide the {x.c} input channels")
        c = x.c // r
        if at["inter"] is AUTO:  # ResNeSt: max(channels * radix / 4, 32)
            at["inter"] = max(c * r // 4, 32)
        i = at["inter"]
        y.c = c
        t = [("fc1_weight", (i, c), 0, 0), ("fc1_bias", (i,), 0, 0)] + bn_t("bn_", i, 0) + \
            [("fc2_weight", (x.c, i), 0, 0), ("fc2_bias", (x.c,), 0, 0)]
        hw = x.h * x.w
        macs = c * hw + c * i + i + i * x.c + x.c * hw
    if not y.vec and y.c > MAX_CHANNELS:
        raise ArchError(f"{op} '{nm}': more than {MAX_CHANNELS} channels")
    if y.elems() > MAX_ELEMS:
        raise ArchError(f"{op} '{nm}': output is larger than {MAX_ELEMS} elements")
    L.shape, L.macs = y, macs
    L.tensors = [(f"{nm}.{suf}", dims, buf, fro) for suf, dims, buf, fro in t]
    L.params = sum(math.prod(d) for _, d, buf, _ in L.tensors if not buf)


def parse_arch(text, src="arch"):
    """Parses .arch text as mfr_arch_parse does; raises ArchError with the line."""
    a = Arch()
    if len(text) > (16 << 20):
        raise ArchError(f"'{src}': larger than the 16 MiB limit of .arch text")
    lines = text.split("\n")
    for ln, raw in enumerate(lines, 1):
        body = raw.split("#", 1)[0]
        for ch in body:
            if ch not in " \t\r" and not "\x21" <= ch <= "\x7e":
                raise ArchError(f"'{src}': line {ln}: byte 0x{ord(ch):02x} is not allowed (.arch text is printable ASCII)")
        f = [v for v in re.split(r"[ \t\r]+", body) if v]
        try:
            if ln == 1:
                if len(f) != 2 or f[0] != "mfr-arch":
                    raise ArchError("not an .arch text (the first line must be 'mfr-arch 1')")
                if f[1] != "1":
                    raise ArchError(f"unsupported version '{f[1][:32]}' (this reader knows 'mfr-arch 1')")
                continue
            if f:
                _parse_line(a, f, ln)
        except ArchError as ex:
            raise ArchError(f"'{src}': line {ln}: {ex}") from None
    if not a.layers:
        raise ArchError(f"'{src}': no input line")
    if not a.outputs:
        raise ArchError(f"'{src}': no output line")
    return a


def _parse_line(a, f, ln):
    op = f[0]
    if op == "output":
        if len(f) != 2:
            raise ArchError("output: expected 'output NAME'")
        k = a.find(f[1])
        if k < 0:
            raise ArchError(f"output: undefined tensor '{f[1]}'")
        if k in a.outputs:
            raise ArchError(f"output '{f[1]}': listed twice")
        a.outputs.append(k)
        return
    if op not in OPS:
        raise ArchError(f"unknown op '{op}'")
    if op == "input":
        if len(f) < 2 or not _valid_name(f[1]):
            raise ArchError("input: " + ("missing name" if len(f) < 2 else "bad name"))
        if a.layers:
            raise ArchError(f"input '{f[1]}': a second input line (the graph has one input, on line {a.layers[0].line})")
        if len(f) != 5:
            raise ArchError(f"input '{f[1]}': expected 'input NAME C H W'")
        v = []
        for what, s, hi in zip("CHW", f[2:5], (MAX_CHANNELS, MAX_SIDE, MAX_SIDE)):
            try:
                n = _uint(s)
            except ValueError:
                raise ArchError(f"input '{f[1]}': bad number '{s}' for {what}") from None
            if not 1 <= n <= hi:
                raise ArchError(f"input '{f[1]}': {what} out of range 1..{hi}: {n}")
            v.append(n)
        L = Layer()
        L.op, L.name, L.line, L.ins, L.attrs = "input", f[1], ln, [], {}
        L.in_shape = L.shape = Shape(0, *v)
        if L.shape.elems() > MAX_ELEMS:
            raise ArchError(f"input '{f[1]}': larger than {MAX_ELEMS} elements")
        L.tensors, L.params, L.macs = [], 0, 0
        a.index[L.name] = 0
        a.layers.append(L)
        return
    min_in, max_in, specs = OPS[op]
    if len(f) < 2 or "=" in f[1]:
        raise ArchError(f"{op}: missing layer name")
    if not _valid_name(f[1]):
        raise ArchError(f"{op}: bad layer name '{f[1][:200]}'")
    nm = f[1]
    if nm in a.index:
        raise ArchError(f"{op} '{nm}': name already defined on line {a.layers[a.index[nm]].line}")
    ins = []
    i = 2
    while i < len(f) and "=" not in f[i]:
        ins.append(f[i])
        i += 1
    if not min_in <= len(ins) <= max_in:
        if min_in == max_in:
            raise ArchError(f"{op} '{nm}': needs {min_in} input{'' if min_in == 1 else 's'}, got {len(ins)}")
        raise ArchError(f"{op} '{nm}': needs {min_in} to {max_in} inputs, got {len(ins)}")
    idx = []
    for s in ins:
        k = a.find(s)
        if k < 0:
            raise ArchError(f"{op} '{nm}': undefined input '{s}'")
        idx.append(k)
    at, seen = {}, set()
    for s in specs:
        d = s[4]
        at[s[0]] = (d, d) if s[1] == "pair" and d is not AUTO and d is not None else d
    for kv in f[i:]:
        if "=" not in kv:
            raise ArchError(f"{op} '{nm}': '{kv}' follows the attributes (inputs come first)")
        key, val = kv.split("=", 1)
        spec = next((s for s in specs if s[0] == key), None)
        if spec is None:
            raise ArchError(f"{op} '{nm}': unknown attribute '{key[:64]}'")
        if key in seen:
            raise ArchError(f"{op} '{nm}': attribute '{key}' given twice")
        seen.add(key)
        at[key] = _value(op, nm, spec, val)
    for s in specs:
        if s[5] and s[0] not in seen:
            raise ArchError(f"{op} '{nm}': missing attribute '{s[0]}'")
    if op in ("maxpool", "avgpool") and at["s"] is AUTO:
        at["s"] = at["k"]
    L = Layer()
    L.op, L.name, L.line, L.ins, L.attrs = op, nm, ln, idx, at
    L.in_shape = a.layers[idx[0]].shape
    _infer(a, L)
    if len(a.layers) >= 65536:
        raise ArchError("more than 65536 layers")
    a.index[nm] = len(a.layers)
    a.layers.append(L)
    a.tensors.extend(L.tensors)
    a.params += L.params
    a.macs += L.macs


def _valid_name(s):
    return len(s) <= MAX_NAME and _NAME.match(s) is not None


def _real_str(v):
    """The shortest %g form that reads back exactly (arch.c real_str)."""
    for prec in range(1, 18):
        s = "%.*g" % (prec, v)
        if float(s) == v:
            return s
    return repr(v)


def format_arch(a):
    """mfr_arch_format: canonical text, every attribute spelled out."""
    out = ["mfr-arch 1"]
    for L in a.layers:
        if L.op == "input":
            out.append(f"input {L.name} {L.shape.c} {L.shape.h} {L.shape.w}")
            continue
        f = [L.op, L.name] + [a.layers[i].name for i in L.ins]
        for key, kind, *_ in OPS[L.op][2]:
            v = L.attrs[key]
            if kind == "real":
                f.append(f"{key}={_real_str(v)}")
            elif kind == "pair":
                f.append(f"{key}={v[0]}" if v[0] == v[1] else f"{key}={v[0]}x{v[1]}")
            else:
                f.append(f"{key}={v}")
        out.append(" ".join(f))
    out += [f"output {a.layers[k].name}" for k in a.outputs]
    return "\n".join(out) + "\n"


def eng(v):
    """mfr_arch_eng: three significant digits and an SI suffix."""
    if v < 1000:
        return str(v)
    x, k = float(v), -1
    while x >= 999.5 and k < 5:
        x /= 1000
        k += 1
    sfx = "KMGTPE"[k]
    if x < 9.995:
        return "%.2f%s" % (x, sfx)
    if x < 99.95:
        return "%.1f%s" % (x, sfx)
    return "%.0f%s" % (x, sfx)


def describe(a, f):
    """mfr_arch_describe's table, byte for byte."""
    w = 4
    for L in a.layers:
        if len(L.name) > w:
            w = min(len(L.name), 40)
    f.write("%5s  %-*s  %-8s %-14s %12s %14s\n" % ("#", w, "name", "op", "output", "params", "MACs"))
    for i, L in enumerate(a.layers):
        f.write("%5d  %-*s  %-8s %-14s %12d %14d\n" % (i, w, L.name, L.op, str(L.shape), L.params, L.macs))
    for k in a.outputs:
        f.write(f"output: {a.layers[k].name} ({a.layers[k].shape})\n")
    f.write(f"total: {a.params} params, {eng(a.macs)} MACs\n")


# ---- presets: common/arch_presets.c, text for text ----

PRESETS = ["r18", "r34", "r50", "r100", "r200", "resnet50", "se-resnet50", "resnext50", "resnest50"]
ALIASES = {"iresnet18": "r18", "iresnet34": "r34", "iresnet50": "r50", "iresnet100": "r100", "iresnet200": "r200",
           "seresnet50": "se-resnet50", "se_resnet50": "se-resnet50", "resnext50-32x4d": "resnext50",
           "resnext50_32x4d": "resnext50"}
IRESNET_BLOCKS = {"r18": (2, 2, 2, 2), "r34": (3, 4, 6, 3), "r50": (3, 4, 14, 3), "r100": (3, 13, 30, 3),
                  "r200": (6, 26, 60, 6)}


def _stem(b):
    b.append("input data 3 112 112")
    b.append("conv conv1 data out=64 k=3 s=1 p=1 bias=0")
    b.append("bn bn1 conv1 eps=1e-05")
    b.append("prelu prelu bn1")


def _head(b, x):
    b.append("# head: BN, flatten, dropout, fc to the 512-d embedding, BN1d (gamma fixed at 1)")
    b.append(f"bn bn2 {x} eps=1e-05")
    b.append("flatten flatten bn2")
    b.append("dropout dropout flatten p=0")
    b.append("linear fc dropout out=512 bias=1")
    b.append("bn1d features fc eps=1e-05 fixgamma=1")
    b.append("output features")


def _iresnet(b, name, layers):
    b.append("mfr-arch 1")
    b.append(f"# {name}: insightface iresnet (arcface_torch backbones/iresnet.py), blocks "
             f"{layers[0]},{layers[1]},{layers[2]},{layers[3]}")
    b.append("# IBasicBlock: BN, conv3x3, BN, PReLU, conv3x3 (stride), BN, + shortcut; no activation after the add")
    _stem(b)
    x, inplanes = "prelu", 64
    for st in range(4):
        planes = 64 << st
        b.append(f"# layer{st + 1}: {layers[st]} blocks, {planes} channels, stride 2 in the first")
        for k in range(layers[st]):
            s = 1 if k else 2
            p = f"layer{st + 1}.{k}"
            b.append(f"bn {p}.bn1 {x} eps=1e-05")
            b.append(f"conv {p}.conv1 {p}.bn1 out={planes} k=3 s=1 p=1 bias=0")
            b.append(f"bn {p}.bn2 {p}.conv1 eps=1e-05")
            b.append(f"prelu {p}.prelu {p}.bn2")
            b.append(f"conv {p}.conv2 {p}.prelu out={planes} k=3 s={s} p=1 bias=0")
            b.append(f"bn {p}.bn3 {p}.conv2 eps=1e-05")
            if s != 1 or inplanes != planes:
                b.append(f"conv {p}.downsample.0 {x} out={planes} k=1 s={s} p=0 bias=0")
                b.append(f"bn {p}.downsample.1 {p}.downsample.0 eps=1e-05")
                b.append(f"add {p}.add {p}.bn3 {p}.downsample.1")
            else:
                b.append(f"add {p}.add {p}.bn3 {x}")
            x, inplanes = f"{p}.add", planes
    _head(b, x)


def _resnet50(b, name, variant):
    layers = (3, 4, 6, 3)
    b.append("mfr-arch 1")
    b.append(f"# {name} adapted to 112x112 faces: iresnet stem (3x3 stride 1, BN, PReLU, no max pool),")
    b.append("# stride 2 in the first block of every stage (112 -> 7), iresnet head (512-d)")
    if variant == "se":
        b.append("# SE (r=16) on the residual branch after bn3, before the add (Hu et al.)")
    if variant == "next":
        b.append("# ResNeXt 32x4d: 3x3 conv with 32 groups of width 4*planes/64")
    if variant == "nest":
        b.append("# split attention (ResNeSt-like): radix 2, cardinality 1; the 3x3 conv gives 2*width")
        b.append("# channels in 2 groups, BN, ReLU, then splat; stride in that conv (no avd, no avg_down)")
    _stem(b)
    x, inplanes = "prelu", 64
    for st in range(4):
        planes = 64 << st
        out = planes * 4
        width = planes // 64 * 4 * 32 if variant == "next" else planes
        b.append(f"# layer{st + 1}: {layers[st]} bottlenecks, width {width}, {out} channels out")
        for k in range(layers[st]):
            s = 1 if k else 2
            p = f"layer{st + 1}.{k}"
            b.append(f"conv {p}.conv1 {x} out={width} k=1 s=1 p=0 bias=0")
            b.append(f"bn {p}.bn1 {p}.conv1 eps=1e-05")
            b.append(f"relu {p}.relu1 {p}.bn1")
            if variant == "nest":
                b.append(f"conv {p}.conv2 {p}.relu1 out={2 * width} k=3 s={s} p=1 g=2 bias=0")
                b.append(f"bn {p}.bn2 {p}.conv2 eps=1e-05")
                b.append(f"relu {p}.relu2 {p}.bn2")
                b.append(f"splat {p}.splat {p}.relu2 radix=2")
                b.append(f"conv {p}.conv3 {p}.splat out={out} k=1 s=1 p=0 bias=0")
            else:
                b.append(f"conv {p}.conv2 {p}.relu1 out={width} k=3 s={s} p=1 g={32 if variant == 'next' else 1} bias=0")
                b.append(f"bn {p}.bn2 {p}.conv2 eps=1e-05")
                b.append(f"relu {p}.relu2 {p}.bn2")
                b.append(f"conv {p}.conv3 {p}.relu2 out={out} k=1 s=1 p=0 bias=0")
            b.append(f"bn {p}.bn3 {p}.conv3 eps=1e-05")
            res = f"{p}.bn3"
            if variant == "se":
                b.append(f"se {p}.se {p}.bn3 r=16")
                res = f"{p}.se"
            if s != 1 or inplanes != out:
                b.append(f"conv {p}.downsample.0 {x} out={out} k=1 s={s} p=0 bias=0")
                b.append(f"bn {p}.downsample.1 {p}.downsample.0 eps=1e-05")
                b.append(f"add {p}.add {res} {p}.downsample.1")
            else:
                b.append(f"add {p}.add {res} {x}")
            b.append(f"relu {p}.relu {p}.add")
            x, inplanes = f"{p}.relu", out
    _head(b, x)


def preset_text(name):
    """The preset's .arch text as mfr_arch_preset writes it, or None."""
    n = ALIASES.get(name, name)
    if n not in PRESETS:
        return None
    b = []
    if n in IRESNET_BLOCKS:
        _iresnet(b, n, IRESNET_BLOCKS[n])
    else:
        _resnet50(b, n, {"resnet50": "plain", "se-resnet50": "se", "resnext50": "next", "resnest50": "nest"}[n])
    return "\n".join(b) + "\n"


def load_arch(spec):
    """mfr_arch_load: a preset name when it is one, else a file ('-' stdin)."""
    text = preset_text(spec)
    if text is not None:
        return parse_arch(text, spec)
    try:
        if spec == "-":
            text = sys.stdin.buffer.read()
        else:
            with open(spec, "rb") as f:
                text = f.read()
    except OSError as ex:
        raise ArchError(f"'{spec}': {ex.strerror} (not a preset: {' '.join(PRESETS)})") from None
    # bytes as characters one for one: the parser rejects any outside
    # printable ASCII where mfr does (comments are not checked)
    return parse_arch(text.decode("latin-1"), spec)


# ---------------------------------------------------------------------------
# torch: the network, the margin-softmax classifier, the training step
# ---------------------------------------------------------------------------

torch = nn = F = None  # imported in main() when a mode needs them


def import_torch():
    global torch, nn, F
    try:
        import torch as _t
        import torch.nn as _nn
        import torch.nn.functional as _F
    except ImportError as ex:
        print(f"torch_ref: {ex} (this mode needs PyTorch with CUDA)", file=sys.stderr)
        sys.exit(2)
    torch, nn, F = _t, _nn, _F


def build_modules():
    """Module classes, defined once torch is imported."""

    class SE(nn.Module):
        """se: y = x * sigmoid(fc2(relu(fc1(gap(x))))), tensors as table 8.3."""

        def __init__(self, c, mid):
            super().__init__()
            self.fc1_weight = nn.Parameter(torch.empty(mid, c))
            self.fc1_bias = nn.Parameter(torch.empty(mid))
            self.fc2_weight = nn.Parameter(torch.empty(c, mid))
            self.fc2_bias = nn.Parameter(torch.empty(c))

        def forward(self, x):
            s = x.mean((2, 3))
            s = F.relu(F.linear(s, self.fc1_weight, self.fc1_bias))
            s = torch.sigmoid(F.linear(s, self.fc2_weight, self.fc2_bias))
            return x * s.to(x.dtype)[:, :, None, None]

    class Splat(nn.Module):
        """splat (ResNeSt split attention, cardinality 1), tensors as table 8.3."""

        def __init__(self, rc, radix, inter):
            super().__init__()
            c = rc // radix
            self.radix, self.c = radix, c
            self.fc1_weight = nn.Parameter(torch.empty(inter, c))
            self.fc1_bias = nn.Parameter(torch.empty(inter))
            self.bn_weight = nn.Parameter(torch.ones(inter))
            self.bn_bias = nn.Parameter(torch.zeros(inter))
            self.register_buffer("bn_running_mean", torch.zeros(inter))
            self.register_buffer("bn_running_var", torch.ones(inter))
            self.fc2_weight = nn.Parameter(torch.empty(rc, inter))
            self.fc2_bias = nn.Parameter(torch.empty(rc))

        def forward(self, x):
            n, _, h, w = x.shape
            xs = x.reshape(n, self.radix, self.c, h, w)
            g = xs.sum(1).mean((2, 3))
            g = F.linear(g, self.fc1_weight, self.fc1_bias)
            g = F.batch_norm(g, self.bn_running_mean, self.bn_running_var, self.bn_weight, self.bn_bias,
                             self.training, 0.1, 1e-5)
            g = F.linear(F.relu(g), self.fc2_weight, self.fc2_bias)
            att = torch.softmax(g.reshape(n, self.radix, self.c), dim=1).to(xs.dtype)
            return (xs * att[:, :, :, None, None]).sum(1)

    class Graph(nn.Module):
        """The .arch graph, run in file order. Modules sit at their layer's
        dotted name (layer1.0.conv1), so the state_dict carries mfr's tensor
        names; a name that cannot be a module path falls back to 'L<index>'."""

        def __init__(self, a, dropout, fp32_head=False):
            super().__init__()
            self.arch = a
            self.fp32_head = fp32_head
            self.keys = [None] * len(a.layers)
            self.named_like_mfr = True
            # the values each layer needs no longer after it runs
            last = {}
            for i, L in enumerate(a.layers):
                for j in L.ins:
                    last[j] = i
            keep = set(a.outputs)
            self.frees = [[] for _ in a.layers]
            for j, i in last.items():
                if j not in keep:
                    self.frees[i].append(j)
            self.out_index = a.outputs[0]
            self.mods = []
            for i, L in enumerate(a.layers):
                m = self._module(L, dropout)
                if m is not None:
                    self._attach(i, L.name, m)
            self.mods = [self.layer_module(i) if self.keys[i] else None for i in range(len(a.layers))]

        def _module(self, L, dropout):
            at, x = L.attrs, L.in_shape
            if L.op == "conv":
                return nn.Conv2d(x.c, at["out"], at["k"], at["s"], at["p"], groups=at["g"], bias=bool(at["bias"]))
            if L.op in ("bn", "bn1d"):
                cls = nn.BatchNorm2d if L.op == "bn" else nn.BatchNorm1d
                m = cls(x.c, eps=at["eps"], momentum=at["momentum"])
                if at["fixgamma"]:
                    m.weight.requires_grad_(False)
                return m
            if L.op == "prelu":
                return nn.PReLU(x.c, init=0.25)
            if L.op == "linear":
                return nn.Linear(x.c, at["out"], bias=bool(at["bias"]))
            if L.op == "dropout":
                return nn.Dropout(dropout if dropout >= 0 else at["p"])
            if L.op == "maxpool":
                return nn.MaxPool2d(at["k"], at["s"], at["p"])
            if L.op == "avgpool":
                return nn.AvgPool2d(at["k"], at["s"], at["p"], count_include_pad=False)
            if L.op == "se":
                return SE(x.c, x.c // at["r"])
            if L.op == "splat":
                return Splat(x.c, at["radix"], at["inter"])
            return None

        def _attach(self, i, name, m):
            parts = name.split(".")
            ok = self.named_like_mfr and all(parts)
            parent = self
            if ok:
                try:
                    for p in parts[:-1]:
                        child = parent._modules.get(p)
                        if child is None:
                            if hasattr(parent, p):
                                raise KeyError(p)
                            child = nn.Module()
                            parent.add_module(p, child)
                        elif type(child) is not nn.Module:
                            raise KeyError(p)  # a layer's module, not a container
                        parent = child
                    if parts[-1] in parent._modules or hasattr(parent, parts[-1]):
                        raise KeyError(parts[-1])
                    parent.add_module(parts[-1], m)
                    self.keys[i] = (parts, None)
                    return
                except (KeyError, TypeError):
                    pass
            self.named_like_mfr = False
            self.add_module(f"L{i}", m)
            self.keys[i] = (None, f"L{i}")

        def layer_module(self, i):
            parts, flat = self.keys[i]
            if flat:
                return self._modules[flat]
            m = self
            for p in parts:
                m = m._modules[p]
            return m

        def init_weights(self, gen):
            """mfr_net_init's distributions (net.h): conv Kaiming normal fan-out
            over groups, linear and se/splat fc PyTorch's nn.Linear default,
            bn 1/0, PReLU 0.25."""
            for i, L in enumerate(self.arch.layers):
                if self.keys[i] is None:
                    continue
                m = self.layer_module(i)
                with torch.no_grad():
                    if L.op == "conv":
                        kh, kw = L.attrs["k"]
                        std = math.sqrt(2.0 / (L.attrs["out"] * kh * kw / L.attrs["g"]))
                        m.weight.normal_(0.0, std, generator=gen)
                        if m.bias is not None:
                            m.bias.zero_()
                    elif L.op == "linear":
                        bound = 1.0 / math.sqrt(L.in_shape.c)
                        m.weight.uniform_(-bound, bound, generator=gen)
                        if m.bias is not None:
                            m.bias.uniform_(-bound, bound, generator=gen)
                    elif L.op in ("se", "splat"):
                        for w, b in (("fc1_weight", "fc1_bias"), ("fc2_weight", "fc2_bias")):
                            bound = 1.0 / math.sqrt(getattr(m, w).shape[1])
                            getattr(m, w).uniform_(-bound, bound, generator=gen)
                            getattr(m, b).uniform_(-bound, bound, generator=gen)

        def forward(self, x):
            a = self.arch
            v = [None] * len(a.layers)
            v[0] = x
            for i in range(1, len(a.layers)):
                L = a.layers[i]
                op, at = L.op, L.attrs
                y = v[L.ins[0]]
                if self.mods[i] is not None:
                    if self.fp32_head and op in ("linear", "bn1d"):
                        # insightface: fc and features in fp32, outside autocast
                        with torch.autocast(y.device.type, enabled=False):
                            y = self.mods[i](y.float())
                    else:
                        y = self.mods[i](y)
                elif op == "relu":
                    y = F.relu(y)
                elif op == "sigmoid":
                    y = torch.sigmoid(y)
                elif op == "add":
                    for j in L.ins[1:]:
                        y = y + v[j]
                elif op == "concat":
                    y = torch.cat([v[j] for j in L.ins], 1)
                elif op == "gap":
                    y = F.adaptive_avg_pool2d(y, 1)
                elif op == "pad":
                    y = F.pad(y, (at["l"], at["r"], at["t"], at["b"]))
                elif op == "chpad":
                    y = F.pad(y, (0, 0, 0, 0, 0, at["out"] - L.in_shape.c))
                elif op == "flatten":
                    y = torch.flatten(y, 1)
                elif op == "l2norm":
                    y = F.normalize(y, dim=1, eps=1e-12)
                else:
                    raise RuntimeError(f"op '{op}' ({L.name}) has no torch translation")
                v[i] = y
                for j in self.frees[i]:
                    v[j] = None
            out = v[self.out_index]
            return out if out.dim() == 2 else torch.flatten(out, 1)

    return Graph


def margin_target(c, m1, m2, m3):
    """mfr pfc.c margin_target: cos(m1 theta + m2) - m3, or past theta + m2 >
    pi (m1 theta + m2 > pi) cos(theta) - m3 - m2 sin(m2); in float64."""
    if m1 == 1 and m2 == 0:
        return c - m3
    cd = c.double().clamp(-1.0, 1.0)
    th = torch.acos(cd.clamp(-1.0 + 1e-12, 1.0 - 1e-12))
    u = m1 * th + m2
    t = torch.where(u > math.pi, cd - m3 - m2 * math.sin(m2), torch.cos(u) - m3)
    return t.to(c.dtype)


def margin_loss(f, w, y, s, m1, m2, m3):
    """Mean over rows of -log softmax(s * z)[y], z the cosines of the rows of
    f and w with the margin on the target column y."""
    fn = F.normalize(f, dim=1, eps=1e-12)
    wn = F.normalize(w, dim=1, eps=1e-12)
    cos = fn @ wn.t()
    yi = y[:, None]
    tgt = margin_target(cos.gather(1, yi), m1, m2, m3)
    logits = cos.scatter(1, yi, tgt) * s
    return F.cross_entropy(logits, y)


class PartialFC:
    """The C x D classifier with Partial FC sampling and its SGD step.

    dense: the weight is an SGD parameter (momentum and weight decay on every
    row each step, insightface PartialFC v2 on one GPU); sparse: only the
    sampled rows and their momentum move (mfr-train's default)."""

    def __init__(self, classes, dim, rate, batch, args, device, gen):
        self.C, self.rate, self.args = classes, rate, args
        self.quota = classes if rate >= 1 else int(math.ceil(rate * classes))
        self.weight = torch.empty(classes, dim, device=device, dtype=torch.float32)
        self.weight.normal_(0.0, 0.01, generator=gen)
        self.weight.requires_grad_(True)
        self.sparse = args.fc_momentum == "sparse" and self.quota < classes
        self.opt = None
        if self.sparse:
            self.mom = torch.zeros_like(self.weight, requires_grad=False)
        else:
            # one tensor, maybe over 2^31 elements: the single-tensor path
            self.opt = torch.optim.SGD([self.weight], lr=args.lr, momentum=args.momentum,
                                       weight_decay=args.fc_wd, foreach=False)
        self.batch = batch
        self.sampled = None

    def sample(self, y):
        """Positives plus random negatives: max(positives, ceil(rate C)) rows,
        ascending; returns (index or None, labels remapped)."""
        if self.quota >= self.C:
            return None, y
        k = self.quota
        if k < y.numel():  # there may be more positives than the quota: count them
            k = max(k, int(torch.unique(y).numel()))
        key = torch.rand(self.C, device=y.device)
        key[y] = 2.0  # every positive above every negative
        idx = torch.topk(key, k, sorted=False).indices.sort().values
        return idx, torch.searchsorted(idx, y)

    def forward_backward(self, f, y):
        """Loss of features f (N x D, fp32, a leaf) against labels y; leaves
        f.grad and the classifier's gradient. Returns the loss (a tensor)."""
        a = self.args
        idx, ys = self.sample(y)
        self.sampled = idx
        if idx is None:
            w = self.weight
        elif self.sparse:
            w = self.weight.detach().index_select(0, idx).requires_grad_(True)
            self.w_sub = w
        else:
            w = self.weight.index_select(0, idx)  # backward: a dense C x D gradient
        loss = margin_loss(f, w, ys, a.scale, a.m1, a.m2, a.m3)
        loss.backward()
        return loss.detach()

    def step(self):
        if self.opt is not None:
            self.opt.step()
            self.opt.zero_grad(set_to_none=True)
            return
        a, idx = self.args, self.sampled
        with torch.no_grad():
            w = self.weight.index_select(0, idx)
            g = self.w_sub.grad + a.fc_wd * w
            m = self.mom.index_select(0, idx).mul_(a.momentum).add_(g)
            self.mom.index_copy_(0, idx, m)
            self.weight.index_copy_(0, idx, w - a.lr * m)
        self.w_sub = None


def set_tf32(on):
    """TF32 for fp32 matmul and cuDNN convolutions, through the fp32_precision
    API where this torch has it (mixing it with the legacy flags is an error
    in recent releases), else the legacy allow_tf32 flags."""
    mode = "tf32" if on else "ieee"
    mm, cd = torch.backends.cuda.matmul, torch.backends.cudnn
    try:
        if hasattr(mm, "fp32_precision"):
            mm.fp32_precision = mode
            for sub in ("conv", "rnn"):
                if hasattr(cd, sub) and hasattr(getattr(cd, sub), "fp32_precision"):
                    getattr(cd, sub).fp32_precision = mode
            return f"matmul {mm.fp32_precision}, cudnn conv {cd.conv.fp32_precision}"
        mm.allow_tf32 = on
        cd.allow_tf32 = on
        return f"matmul allow_tf32={mm.allow_tf32}, cudnn allow_tf32={cd.allow_tf32}"
    except (AttributeError, RuntimeError) as ex:
        print(f"torch_ref: warning: could not set TF32 {'on' if on else 'off'}: {ex}", file=sys.stderr)
        return "unknown"


class Trainer:
    """The backbone, the classifier, the optimiser and the data pool."""

    def __init__(self, a, args, classes, rate, batch, device, dtype, seed):
        self.args, self.arch, self.batch, self.device = args, a, batch, device
        self.dtype = dtype
        gen = torch.Generator(device="cpu")
        gen.manual_seed(seed)
        Graph = build_modules()
        self.model = Graph(a, args.dropout, args.fp32_head)
        self.model.init_weights(gen)
        self.model.to(device)
        if args.memory_format == "channels_last":
            self.model.to(memory_format=torch.channels_last)
        self.model.train()
        self.dim = a.layers[a.outputs[0]].shape.elems()
        learn = [p for p in self.model.parameters() if p.requires_grad]
        self.opt = torch.optim.SGD(learn, lr=args.lr, momentum=args.momentum, weight_decay=args.wd)
        dgen = torch.Generator(device=device)
        dgen.manual_seed(seed + 1)
        self.fc = PartialFC(classes, self.dim, rate, batch, args, device, dgen)
        self.scaler = torch.amp.GradScaler(device.type, enabled=dtype == torch.float16)
        self.autocast = dtype in (torch.float16, torch.bfloat16)
        c, h, w = a.layers[0].shape.c, a.layers[0].shape.h, a.layers[0].shape.w
        P = args.pool
        self.images = torch.randint(0, 256, (P, batch, c, h, w), dtype=torch.uint8, device=device, generator=dgen)
        self.labels = torch.randint(0, classes, (P, batch), dtype=torch.int64, device=device, generator=dgen)
        self.net = torch.compile(self.model) if args.compile else self.model

    def step(self, t):
        """One training step on pool batch t % pool; returns the loss tensor."""
        P = self.images.shape[0]
        x = self.images[t % P].float().sub_(127.5).div_(128.0)
        if self.args.memory_format == "channels_last":
            x = x.contiguous(memory_format=torch.channels_last)
        y = self.labels[t % P]
        with torch.autocast(self.device.type, dtype=self.dtype if self.autocast else torch.bfloat16,
                            enabled=self.autocast):
            emb = self.net(x)
        f = emb.detach().float().requires_grad_(True)
        loss = self.fc.forward_backward(f, y)  # fp32, outside autocast
        # the backbone's backward from the embedding gradient, loss-scaled
        emb.backward(self.scaler.scale(f.grad).to(emb.dtype))
        self.scaler.step(self.opt)
        self.scaler.update()
        self.opt.zero_grad(set_to_none=True)
        self.fc.step()
        return loss

    def params(self):
        return sum(p.numel() for p in self.model.parameters())


def device_info():
    if not torch.cuda.is_initialized():  # --device cpu
        return {"device": "cpu", "device_memory_bytes": None, "torch": torch.__version__, "cuda": None,
                "cudnn": None}
    p = torch.cuda.get_device_properties(0)
    cudnn = torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None
    return {"device": p.name, "device_memory_bytes": int(p.total_memory), "torch": torch.__version__,
            "cuda": torch.version.cuda, "cudnn": cudnn}


DTYPES = {"fp16": "float16", "bf16": "bfloat16", "fp32": "float32"}


def setup(args):
    import_torch()
    if args.device == "cpu":  # a pre-flight of this script where there is no GPU: no timing worth reading
        torch.set_num_threads(max(1, os.cpu_count() or 1))
        args.tf32_state = "cpu"
        return torch.device("cpu")
    if not torch.cuda.is_available():
        print("torch_ref: no CUDA device (torch.cuda.is_available() is False)", file=sys.stderr)
        sys.exit(2)
    torch.backends.cudnn.benchmark = True
    args.tf32_state = set_tf32(args.tf32 == "on")
    return torch.device("cuda", 0)


def check_params(a, tr, args, label):
    got = tr.params()
    if got != a.params:
        print(f"torch_ref: {label}: the torch module has {got} parameters, the .arch text {a.params}",
              file=sys.stderr)
        sys.exit(1)
    if args.expect_params is not None and got != args.expect_params:
        print(f"torch_ref: {label}: {got} parameters, --expect-params says {args.expect_params}", file=sys.stderr)
        sys.exit(1)


def run_train(a, args, label):
    dev = setup(args)
    dtype = getattr(torch, DTYPES[args.dtype])
    torch.manual_seed(args.seed)
    rate = 1.0 if args.sample_rate is None else args.sample_rate
    tr = Trainer(a, args, args.classes, rate, args.batch, dev, dtype, args.seed)
    check_params(a, tr, args, label)
    losses = []
    cuda = dev.type == "cuda"
    for t in range(args.warmup):
        losses.append(tr.step(t))
    peak_all = 0
    if cuda:
        torch.cuda.synchronize()
        peak_all = torch.cuda.max_memory_allocated()
        torch.cuda.reset_peak_memory_stats()
        t0, t1 = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        t0.record()
    wall = time.perf_counter()
    if args.profile:  # the same steps under torch.profiler: its table, then the line
        from torch.profiler import ProfilerActivity, profile
        acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])
        with profile(activities=acts) as prof:
            for t in range(args.warmup, args.warmup + args.steps):
                losses.append(tr.step(t))
            if cuda:
                torch.cuda.synchronize()
        keys = ("self_device_time_total", "self_cuda_time_total") if cuda else ("self_cpu_time_total",)
        table, key = None, keys[0]
        for key in keys:  # the device's key was renamed across releases
            try:
                table = prof.key_averages().table(sort_by=key, row_limit=20)
                break
            except Exception:  # noqa: BLE001 — an unknown key: try the other name
                continue
        table = table or "(no table: this torch knows none of the keys %s)" % (keys,)
        print(f"# torch.profiler over {args.steps} steps, by {key}:")
        print("\n".join("# " + ln for ln in table.splitlines()))
    else:
        for t in range(args.warmup, args.warmup + args.steps):
            losses.append(tr.step(t))
    if cuda:
        t1.record()
        t1.synchronize()
    wall = time.perf_counter() - wall
    ms = t0.elapsed_time(t1) if cuda else wall * 1000.0
    peak = torch.cuda.max_memory_allocated() if cuda else 0  # no allocator statistics on the CPU
    reserved = torch.cuda.max_memory_reserved() if cuda else 0
    lv = torch.stack(losses).float().cpu().tolist() if losses else []
    finite = all(math.isfinite(v) for v in lv)
    ips = args.steps * args.batch / (ms / 1000.0) if args.steps and ms > 0 else 0.0
    r = {"tool": "torch_ref", "mode": "train", "arch": label, "params": tr.params(), "macs": a.macs,
         "dtype": args.dtype, "batch": args.batch, "classes": args.classes, "sample_rate": rate,
         "sample_quota": tr.fc.quota,
         "fc_momentum": "dense" if not tr.fc.sparse else "sparse", "steps": args.steps, "warmup": args.warmup,
         "images_per_s": round(ips, 2), "ms_per_step": round(ms / args.steps, 4) if args.steps else None,
         "wall_s": round(wall, 3), "peak_allocated_bytes": int(max(peak, 0)),
         "peak_allocated_incl_warmup_bytes": int(max(peak_all, peak)), "peak_reserved_bytes": int(reserved),
         "loss_first": lv[0] if lv else None, "loss": lv[-1] if lv else None, "loss_finite": finite,
         "loss_scale": tr.scaler.get_scale() if tr.scaler.is_enabled() else None,
         "tf32": args.tf32 == "on", "tf32_state": args.tf32_state, "channels_last": args.memory_format == "channels_last",
         "compile": bool(args.compile), "fp32_head": bool(args.fp32_head), "dropout": args.dropout,
         "margin": [args.scale, args.m1, args.m2, args.m3]}
    r.update(device_info())
    if args.json:
        print(json.dumps(r))
    else:  # key=value, as bench_gpu_train prints (tests/gpu/run.sh reads img_s= and peak_gib=)
        gib = 1024.0 ** 3
        print(f"torch arch={label} batch={args.batch} dtype={args.dtype} classes={args.classes} rate={rate:g} "
              f"img_s={ips:.1f} step_ms={ms / max(args.steps, 1):.2f} peak_gib={peak / gib:.2f} "
              f"peak_with_warmup_gib={max(peak_all, peak) / gib:.2f} reserved_gib={reserved / gib:.2f} "
              f"loss={lv[-1] if lv else float('nan'):.4f} first_loss={lv[0] if lv else float('nan'):.4f} "
              f"fc_momentum={r['fc_momentum']} dropout={args.dropout:g} tf32={args.tf32} "
              f"device={r['device'].replace(' ', '_')} torch={r['torch']}")
    if not finite:
        print(f"torch_ref: {label}: a loss is not finite: {lv}", file=sys.stderr)
        sys.exit(1)


def _free():
    gc.collect()
    torch.cuda.synchronize()
    torch.cuda.empty_cache()


def _is_oom(ex):
    if isinstance(ex, torch.cuda.OutOfMemoryError):
        return True
    s = str(ex)
    return isinstance(ex, RuntimeError) and ("out of memory" in s or "CUBLAS_STATUS_ALLOC_FAILED" in s
                                             or "CUDNN_STATUS_ALLOC_FAILED" in s or "CUDNN_STATUS_NOT_SUPPORTED" in s
                                             and "memory" in s)


def _probe(a, args, classes, rate, dev, dtype):
    """Training steps with classes classes; the peak bytes, or raises."""
    tr = None
    try:
        torch.cuda.reset_peak_memory_stats()
        tr = Trainer(a, args, classes, rate, args.batch, dev, dtype, args.seed)
        # two steps at least, and until the backbone's SGD has its momentum
        # (an fp16 step the GradScaler skips allocates none)
        t = 0
        while t < 2 or (not tr.opt.state and t < 8):
            loss = tr.step(t)
            t += 1
        v = float(loss)
        if not math.isfinite(v):
            raise RuntimeError(f"the loss is not finite ({v}) at {classes} classes")
        torch.cuda.synchronize()
        return torch.cuda.max_memory_allocated()
    finally:
        del tr


def run_max_classes(a, args, label):
    if args.device == "cpu":
        print("torch_ref: --max-classes measures GPU memory: it needs --device cuda", file=sys.stderr)
        sys.exit(2)
    dev = setup(args)
    dtype = getattr(torch, DTYPES[args.dtype])
    rate = 0.1 if args.sample_rate is None else args.sample_rate
    start = time.perf_counter()
    probes = []

    def probe(c):
        t = time.perf_counter()
        peak, err = None, None
        try:
            peak = _probe(a, args, c, rate, dev, dtype)
        except Exception as ex:  # noqa: BLE001 — only out-of-memory is an answer
            if not _is_oom(ex):
                raise
            err = type(ex).__name__
        _free()
        fit = err is None
        probes.append({"classes": c, "fit": fit, "peak_allocated_bytes": peak,
                       "seconds": round(time.perf_counter() - t, 2)})
        if not args.json:
            print(f"  probe {c} classes: {'fits, peak %.2f GiB' % (peak / 1024.0 ** 3) if fit else 'out of memory'}"
                  f" ({time.perf_counter() - t:.1f} s)", file=sys.stderr)
        return fit

    def left():
        return args.max_seconds - (time.perf_counter() - start)

    lo, hi = 0, None
    c = args.classes if args.classes_given else 1 << 20
    c = max(c, args.batch)
    # doubling (or halving, when the first probe does not fit)
    if probe(c):
        lo = c
        while left() > 0:
            if probe(2 * lo):
                lo *= 2
            else:
                hi = 2 * lo
                break
    else:
        hi = c
        while left() > 0 and hi > args.batch:
            m = max(hi // 2, args.batch)
            if probe(m):
                lo = m
                break
            hi = m
    # bisection to 1% (or until the time is up)
    if lo and hi:
        while left() > 0 and hi - lo > max(lo // 100, 1024):
            m = (lo + hi) // 2
            if probe(m):
                lo = m
            else:
                hi = m
    secs = time.perf_counter() - start
    r = {"tool": "torch_ref", "mode": "max_classes", "arch": label, "dtype": args.dtype, "batch": args.batch,
         "sample_rate": rate, "fc_momentum": args.fc_momentum, "max_classes": lo,
         "first_failing": hi, "search_seconds": round(secs, 1), "probes": probes}
    r.update(device_info())
    if args.json:
        print(json.dumps(r))
    else:  # key=value, as bench_gpu_train --max-classes prints
        best = max((p["peak_allocated_bytes"] or 0 for p in probes if p["fit"] and p["classes"] == lo), default=0)
        print(f"torch max_classes arch={label} batch={args.batch} dtype={args.dtype} rate={rate:g} classes={lo} "
              f"first_failing={hi if hi else 'none_in_time'} peak_gib={best / 1024.0 ** 3:.2f} probes={len(probes)} "
              f"search_s={secs:.1f} fc_momentum={args.fc_momentum}")
    if not lo:
        sys.exit(1)


def run_check(a, args, label):
    """fp32, TF32 off, 3 steps on one batch; self-checks."""
    args.tf32 = "off"
    dev = setup(args)
    torch.manual_seed(args.seed)
    rate = 1.0 if args.sample_rate is None else args.sample_rate
    classes = args.classes if args.classes_given else 1000
    ok = True
    out = sys.stderr if args.json else sys.stdout

    def say(msg):
        print(msg, file=out)

    tr = Trainer(a, args, classes, rate, args.batch, dev, torch.float32, args.seed)
    check_params(a, tr, args, label)
    say(f"check: {label}: {tr.params()} parameters (the .arch text says {a.params}), {eng(a.macs)} MACs, "
          f"embedding {tr.dim}")
    # tensor names and shapes against the text (8.4)
    if tr.model.named_like_mfr:
        sd = {k: tuple(v.shape) for k, v in tr.model.state_dict().items() if not k.endswith("num_batches_tracked")}
        want = {n: tuple(d) for n, d, _, _ in a.tensors}
        if sd != want:
            miss = sorted(set(want) - set(sd))[:5]
            extra = sorted(set(sd) - set(want))[:5]
            diff = [k for k in want if k in sd and sd[k] != want[k]][:5]
            say(f"check: FAIL tensors differ from the text: missing {miss} extra {extra} shapes {diff}")
            ok = False
        else:
            say(f"check: the module's {len(sd)} tensors have the text's names and shapes")
    else:
        say("check: (layer names are not module paths here: tensor names not compared)")
    # the margin's gradient in float64 on the CPU, CosFace and ArcFace
    for m in ((64.0, 1.0, 0.0, 0.4), (64.0, 1.0, 0.5, 0.0), (30.0, 1.0, 0.3, 0.2)):
        g = torch.Generator().manual_seed(3)
        f = torch.randn(6, 16, dtype=torch.float64, generator=g, requires_grad=True)
        w = torch.randn(11, 16, dtype=torch.float64, generator=g, requires_grad=True)
        y = torch.tensor([0, 3, 3, 7, 10, 1])
        fn = lambda f, w: margin_loss(f, w, y, *m)  # noqa: E731
        good = torch.autograd.gradcheck(fn, (f, w), eps=1e-6, atol=1e-5, rtol=1e-4, raise_exception=False)
        say(f"check: margin s={m[0]:g} m=({m[1]:g}, {m[2]:g}, {m[3]:g}) gradient (gradcheck, float64): "
              f"{'ok' if good else 'FAIL'}")
        ok &= bool(good)
    # the loss of one batch, against a float64 recomputation
    x = tr.images[0].float().sub_(127.5).div_(128.0)
    if args.memory_format == "channels_last":
        x = x.contiguous(memory_format=torch.channels_last)
    y = tr.labels[0]
    tr.model.eval()  # no dropout, running statistics: deterministic features
    with torch.no_grad():
        emb = tr.model(x).double()
        idx, ys = tr.fc.sample(y)
        w = (tr.fc.weight if idx is None else tr.fc.weight[idx]).double()
        fn = emb / emb.norm(dim=1, keepdim=True).clamp_min(1e-12)
        wn = w / w.norm(dim=1, keepdim=True).clamp_min(1e-12)
        z = fn @ wn.t()
        ct = z[torch.arange(len(ys), device=z.device), ys]
        if args.m1 == 1 and args.m2 == 0:
            t = ct - args.m3
        else:
            th = torch.acos(ct.clamp(-1, 1))
            u = args.m1 * th + args.m2
            t = torch.where(u > math.pi, ct - args.m3 - args.m2 * math.sin(args.m2), torch.cos(u) - args.m3)
        z[torch.arange(len(ys), device=z.device), ys] = t
        ref = (torch.logsumexp(args.scale * z, 1) - args.scale * t).mean().item()
        got = margin_loss(emb.float(), w.float(), ys, args.scale, args.m1, args.m2, args.m3).item()
    good = abs(got - ref) <= 1e-4 * max(1.0, abs(ref))
    say(f"check: loss of batch 0 (eval mode): {got:.6f}, float64 recomputation {ref:.6f}: {'ok' if good else 'FAIL'}")
    ok &= good
    tr.model.train()
    # 3 training steps on batch 0
    lv = []
    for s in range(3):
        loss = float(tr.step(0))
        lv.append(loss)
        say(f"check: step {s + 1} loss {loss:.6f}")
    if not all(math.isfinite(v) for v in lv):
        say("check: FAIL a loss is not finite")
        ok = False
    else:
        say(f"check: the loss {'falls' if lv[-1] < lv[0] else 'does not fall'} over 3 steps on one batch "
            f"(information: a start at chance is about ln({classes}) + s m3 = "
            f"{math.log(classes) + args.scale * args.m3:.2f} or above)")
    r = {"tool": "torch_ref", "mode": "check", "arch": label, "params": tr.params(), "classes": classes,
         "batch": args.batch, "sample_rate": rate, "losses": lv, "ok": bool(ok)}
    r.update(device_info())
    if args.json:
        print(json.dumps(r))
    say(f"check: {'ok' if ok else 'FAILED'}")
    sys.exit(0 if ok else 1)


def main(argv=None):
    ap = argparse.ArgumentParser(
        prog="torch_ref.py",
        description="PyTorch peer of mfr's GPU training step: the .arch network, margin softmax with "
                    "Partial FC, synthetic data on the device.")
    mode = ap.add_mutually_exclusive_group()
    mode.add_argument("--max-classes", action="store_true",
                      help="find the largest class count whose training step fits (default rate 0.1)")
    mode.add_argument("--check", action="store_true", help="3 fp32 steps with TF32 off, and self-checks")
    mode.add_argument("--describe", metavar="ARCH", help="print mfr-embed --describe's table (no torch)")
    mode.add_argument("--print-arch", metavar="ARCH", help="print the canonical .arch text (no torch)")
    ap.add_argument("--arch", default="r50", help="preset name or .arch file (default r50)")
    ap.add_argument("--batch", type=int, default=128, help="images per step (default 128)")
    ap.add_argument("--classes", type=int, default=None, help="classifier classes (default 100000; "
                    "--check 1000; --max-classes: the first probe, default 2^20)")
    ap.add_argument("--sample-rate", type=float, default=None,
                    help="Partial FC rate in (0, 1] (default 1; --max-classes 0.1)")
    ap.add_argument("--dtype", choices=sorted(DTYPES), default="fp16", help="autocast type (default fp16)")
    ap.add_argument("--steps", type=int, default=50, help="timed steps (default 50)")
    ap.add_argument("--warmup", type=int, default=10, help="untimed steps first (default 10)")
    ap.add_argument("--json", action="store_true", help="one JSON line")
    ap.add_argument("--expect-params", type=int, default=None, help="fail unless the network has P parameters")
    ap.add_argument("--margin", choices=("cosface", "arcface", "combined"), default="cosface",
                    help="cosface (m3 0.4, default), arcface (m2 0.5) or combined (--m1 --m2 --m3)")
    ap.add_argument("--m1", type=float, default=None)
    ap.add_argument("--m2", type=float, default=None)
    ap.add_argument("--m3", type=float, default=None)
    ap.add_argument("--scale", type=float, default=64.0, help="logit scale s (default 64)")
    ap.add_argument("--fc-momentum", choices=("dense", "sparse"), default="dense",
                    help="dense (default, insightface v2) or sparse (mfr-train's default)")
    ap.add_argument("--dropout", type=float, default=0.4,
                    help="p of every dropout layer, as mfr-train sets it (default 0.4; < 0: the text's)")
    ap.add_argument("--lr", type=float, default=0.1)
    ap.add_argument("--momentum", type=float, default=0.9)
    ap.add_argument("--wd", type=float, default=5e-4, help="backbone weight decay (default 5e-4)")
    ap.add_argument("--fc-wd", type=float, default=None, help="classifier weight decay (default --wd)")
    ap.add_argument("--tf32", choices=("on", "off"), default="off",
                    help="TF32 for fp32 matmul and convolutions (default off, as mfr's GPU backend)")
    ap.add_argument("--memory-format", choices=("channels_last", "contiguous"), default="channels_last")
    ap.add_argument("--compile", action="store_true", help="torch.compile the backbone (off by default)")
    ap.add_argument("--fp32-head", action="store_true",
                    help="run linear and bn1d layers in fp32 outside autocast, as insightface's iresnet runs "
                         "fc and features (default: everything under autocast)")
    ap.add_argument("--pool", type=int, default=16, help="batches of synthetic data on the device (default 16)")
    ap.add_argument("--max-seconds", type=float, default=60.0, help="--max-classes: search time cap (default 60)")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--profile", action="store_true",
                    help="train mode: the timed steps under torch.profiler, its table (# lines) before the line "
                         "(its overhead is in img_s)")
    ap.add_argument("--device", choices=("cuda", "cpu"), default="cuda",
                    help="cuda (default) or cpu: this script's pre-flight where there is no GPU (fp32 or bf16; "
                         "times and memory mean nothing there)")
    args = ap.parse_args(argv)

    if args.describe or args.print_arch:
        try:
            a = load_arch(args.describe or args.print_arch)
        except ArchError as ex:
            print(f"torch_ref: {ex}", file=sys.stderr)
            return 2
        if args.describe:
            describe(a, sys.stdout)
        else:
            sys.stdout.write(format_arch(a))
        return 0

    m = {"cosface": (1.0, 0.0, 0.4), "arcface": (1.0, 0.5, 0.0), "combined": (1.0, 0.0, 0.0)}[args.margin]
    args.m1 = m[0] if args.m1 is None else args.m1
    args.m2 = m[1] if args.m2 is None else args.m2
    args.m3 = m[2] if args.m3 is None else args.m3
    args.fc_wd = args.wd if args.fc_wd is None else args.fc_wd
    args.classes_given = args.classes is not None
    if args.classes is None:
        args.classes = 100000
    if args.batch < 2:
        ap.error("--batch must be at least 2 (batch norm in training)")
    if args.classes < 1 or args.steps < 0 or args.warmup < 0 or args.pool < 1:
        ap.error("--classes and --pool must be positive, --steps and --warmup not negative")
    if args.sample_rate is not None and not 0 < args.sample_rate <= 1:
        ap.error("--sample-rate must be in (0, 1]")
    if not args.dropout < 1:
        ap.error("--dropout must be below 1")
    try:
        a = load_arch(args.arch)
    except ArchError as ex:
        print(f"torch_ref: {ex}", file=sys.stderr)
        return 2
    label = args.arch if preset_text(args.arch) is not None else os.path.basename(args.arch).rsplit(".arch", 1)[0]
    if args.check:
        run_check(a, args, label)
    elif args.max_classes:
        run_max_classes(a, args, label)
    else:
        run_train(a, args, label)
    return 0


if __name__ == "__main__":
    sys.exit(main())
