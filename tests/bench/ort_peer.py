#!/usr/bin/env python3
"""ort_peer.py — the peer of bench_net: the same network on onnxruntime (CPU).

Reads the canonical .arch text bench_net writes (data-formats.md section 8),
builds the same network as an ONNX graph with onnx.helper, and times it with
onnxruntime as bench_net times mfr: one image on one thread (intra- and
inter-op threads 1; median ms and GFLOP/s) and a batch of 32 on every core
(img/s); graph optimisation ORT_ENABLE_ALL (onnxruntime folds each conv's
following bn into it, which is its right as a peer). Prints figures, asserts
nothing about time.

    ort_peer.py [--check] [--batch N] [--expect-macs M] [--expect-params P] FILE.arch...

The label of each network is its file name without .arch ("iresnet50").
GFLOP/s count 2 flops per multiply-accumulate, the MACs counted here from the
ONNX graph's own nodes and inferred shapes with the describer's rules
(data-formats.md 8.4); --expect-macs/--expect-params hold them against the
describer's totals, so the figures are for the same network or for nothing.

Weights: random (numpy, seeded, the distributions of mfr_net_init). With
--check, the tensors bench_net -w wrote beside FILE.arch (.tensors, .params)
instead, and the graph's output on the fixed input (.input) is compared with
mfr's (.output): agreement to 1e-3 of the largest output (float32 through
50 layers whose activations reach 1e4 with these weights; mfr's own batch-1
and batch-32 results differ by ~1e-6 of it) says the translation is the
same network.

Ops translated: everything the iresnet and resnet presets use, and the other
plain ops; se and splat are not (they would need subgraphs) and are refused
by name. Exit status: 0, 1 on a mismatch or a failure, 2 on usage.
"""
import argparse
import os
import sys
import time

import numpy as np

try:
    import onnx
    from onnx import TensorProto, helper, numpy_helper, shape_inference
    import onnxruntime as ort
except ImportError as ex:  # run.sh checks first; this is for direct use
    sys.exit(f"ort_peer: {ex.name} is not installed (pip install onnxruntime onnx numpy)")

BATCH = 32
FIGURE_SECONDS = 8.0  # as bench_net: wall seconds per figure after a warm-up
MIN_RUNS, MAX_RUNS = 3, 41
CHECK_RTOL = 1e-3  # of max |y|; see the docstring


class ArchError(Exception):
    pass


def pair(v, key, line):
    try:
        if "x" in v:
            h, w = v.split("x")
            return int(h), int(w)
        return int(v), int(v)
    except ValueError:
        raise ArchError(f"line {line}: bad pair {key}={v}")


def parse_arch(text, name):
    """Returns (layers, outputs): layers a list of dicts with op, name,
    inputs, attrs, line and the inferred per-image shape (C, H, W) or (D,)."""
    layers, shapes, outputs = [], {}, []
    lines = text.splitlines()
    if not lines or lines[0].split("#")[0].split() != ["mfr-arch", "1"]:
        raise ArchError("not an mfr-arch 1 file")
    for ln, raw in enumerate(lines[1:], 2):
        f = raw.split("#")[0].split()
        if not f:
            continue
        if f[0] == "output":
            outputs.append(f[1])
            continue
        if f[0] == "input":
            L = dict(op="input", name=f[1], inputs=[], attrs={}, line=ln)
            L["shape"] = tuple(int(v) for v in f[2:5])
        else:
            ins = [v for v in f[2:] if "=" not in v]
            attrs = dict(v.split("=", 1) for v in f[2:] if "=" in v)
            L = dict(op=f[0], name=f[1], inputs=ins, attrs=attrs, line=ln)
            for i in ins:
                if i not in shapes:
                    raise ArchError(f"line {ln}: unknown input '{i}'")
            L["shape"] = infer(L, [shapes[i] for i in ins], ln)
        shapes[L["name"]] = L["shape"]
        layers.append(L)
    return layers, outputs


def out_hw(h, w, k, s, p):
    return (h + 2 * p[0] - k[0]) // s[0] + 1, (w + 2 * p[1] - k[1]) // s[1] + 1


def infer(L, ins, ln):
    op, a, x = L["op"], L["attrs"], ins[0]
    if op == "conv":
        k, s, p = pair(a["k"], "k", ln), pair(a.get("s", "1"), "s", ln), pair(a.get("p", "0"), "p", ln)
        return (int(a["out"]),) + out_hw(x[1], x[2], k, s, p)
    if op in ("maxpool", "avgpool"):
        k = pair(a["k"], "k", ln)
        s, p = pair(a.get("s", a["k"]), "s", ln), pair(a.get("p", "0"), "p", ln)
        return (x[0],) + out_hw(x[1], x[2], k, s, p)
    if op in ("bn", "bn1d", "prelu", "relu", "sigmoid", "add", "dropout", "l2norm", "se"):
        return x
    if op == "concat":
        return (sum(i[0] for i in ins),) + x[1:]
    if op == "gap":
        return (x[0], 1, 1)
    if op == "pad":
        g = lambda k: int(a.get(k, "0"))
        return (x[0], x[1] + g("t") + g("b"), x[2] + g("l") + g("r"))
    if op == "chpad":
        return (int(a["out"]),) + x[1:]
    if op == "flatten":
        return (int(np.prod(x)),)
    if op == "linear":
        return (int(a["out"]),)
    raise ArchError(f"line {ln}: op '{op}' ({L['name']}) is not translated to ONNX by this peer")


def tensor_list(L, in_shape):
    """The layer's stored tensors, data-formats.md 8.3 order: (suffix, shape, kind),
    kind one of conv_w, lin_w, lin_b, zero, one, prelu."""
    op, a = L["op"], L["attrs"]
    C = in_shape[0]
    if op == "conv":
        kh, kw = pair(a["k"], "k", L["line"])
        g = int(a.get("g", "1"))
        t = [("weight", (int(a["out"]), C // g, kh, kw), "conv_w")]
        if a.get("bias", "0") == "1":
            t.append(("bias", (int(a["out"]),), "zero"))
        return t
    if op in ("bn", "bn1d"):
        return [("weight", (C,), "one"), ("bias", (C,), "zero"), ("running_mean", (C,), "zero"),
                ("running_var", (C,), "one")]
    if op == "prelu":
        return [("weight", (C,), "prelu")]
    if op == "linear":
        t = [("weight", (int(a["out"]), C), "lin_w")]
        if a.get("bias", "1") == "1":
            t.append(("bias", (int(a["out"]),), "lin_b"))
        return t
    return []


def random_tensor(rng, L, shape, kind):
    """mfr_net_init's distributions (net.h), drawn by numpy."""
    if kind == "conv_w":
        fan_out = shape[0] * shape[2] * shape[3]
        return (rng.standard_normal(shape) * np.sqrt(2.0 / fan_out)).astype(np.float32)
    if kind in ("lin_w", "lin_b"):  # PyTorch's nn.Linear: uniform(+-1/sqrt(fan_in))
        bound = 1.0 / np.sqrt(L["in"][0])
        return rng.uniform(-bound, bound, shape).astype(np.float32)
    if kind == "prelu":
        return np.full(shape, 0.25, np.float32)
    return np.full(shape, 1.0 if kind == "one" else 0.0, np.float32)


def load_weights(prefix):
    """The tensors bench_net -w wrote: {name: flat float32 array}."""
    names = []
    with open(prefix + ".tensors") as f:
        for line in f:
            n, c = line.split()
            names.append((n, int(c)))
    flat = np.fromfile(prefix + ".params", dtype="<f4")
    total = sum(c for _, c in names)
    if flat.size != total:
        raise ArchError(f"'{prefix}.params': {flat.size} values, the tensor list says {total}")
    out, off = {}, 0
    for n, c in names:
        out[n] = flat[off:off + c]
        off += c
    return out, [n for n, _ in names]


def build(layers, outputs, weights=None, seed=1):
    """The ONNX model: input 'data' (N, C, H, W) with a symbolic batch.
    Returns (model, params): params counts non-buffer weights as 8.4 does."""
    rng = np.random.default_rng(seed)
    nodes, inits, params, order = [], [], 0, []
    shapes = {L["name"]: L["shape"] for L in layers}

    def init(name, arr):
        inits.append(numpy_helper.from_array(np.ascontiguousarray(arr, dtype=np.float32), name))
        return name

    for L in layers:
        op, a, n, ins = L["op"], L["attrs"], L["name"], L["inputs"]
        if op == "input":
            continue
        x = shapes[ins[0]]
        L["in"] = x
        ts = {}
        for suf, shp, kind in tensor_list(L, x):
            tname = f"{n}.{suf}"
            order.append(tname)
            if weights is not None:
                if tname not in weights:
                    raise ArchError(f"tensor '{tname}' is not in the exported weights")
                arr = weights[tname]
                if arr.size != int(np.prod(shp)):
                    raise ArchError(f"tensor '{tname}': {arr.size} values, expected shape {shp}")
                arr = arr.reshape(shp)
            else:
                arr = random_tensor(rng, L, shp, kind)
            if not suf.startswith("running_"):
                params += arr.size
            ts[suf] = arr
        if op == "conv":
            kh, kw = pair(a["k"], "k", L["line"])
            sh, sw = pair(a.get("s", "1"), "s", L["line"])
            ph, pw = pair(a.get("p", "0"), "p", L["line"])
            cin = [ins[0], init(n + ".weight", ts["weight"])]
            if "bias" in ts:
                cin.append(init(n + ".bias", ts["bias"]))
            nodes.append(helper.make_node("Conv", cin, [n], name=n, kernel_shape=[kh, kw], strides=[sh, sw],
                                          pads=[ph, pw, ph, pw], group=int(a.get("g", "1"))))
        elif op in ("bn", "bn1d"):
            cin = [ins[0]] + [init(f"{n}.{s}", ts[s]) for s in ("weight", "bias", "running_mean", "running_var")]
            nodes.append(helper.make_node("BatchNormalization", cin, [n], name=n, epsilon=float(a.get("eps", "1e-05"))))
        elif op == "prelu":
            slope = ts["weight"].reshape((-1, 1, 1) if len(x) == 3 else (-1,))
            nodes.append(helper.make_node("PRelu", [ins[0], init(n + ".weight", slope)], [n], name=n))
        elif op in ("relu", "sigmoid"):
            nodes.append(helper.make_node(op.capitalize(), [ins[0]], [n], name=n))
        elif op == "add":
            prev = ins[0]
            for k, other in enumerate(ins[1:]):
                out = n if k == len(ins) - 2 else f"{n}.sum{k}"
                nodes.append(helper.make_node("Add", [prev, other], [out], name=out))
                prev = out
        elif op == "concat":
            nodes.append(helper.make_node("Concat", ins, [n], name=n, axis=1))
        elif op == "gap":
            nodes.append(helper.make_node("GlobalAveragePool", [ins[0]], [n], name=n))
        elif op in ("maxpool", "avgpool"):
            kh, kw = pair(a["k"], "k", L["line"])
            sh, sw = pair(a.get("s", a["k"]), "s", L["line"])
            ph, pw = pair(a.get("p", "0"), "p", L["line"])
            kw_ = dict(kernel_shape=[kh, kw], strides=[sh, sw], pads=[ph, pw, ph, pw])
            if op == "avgpool":
                kw_["count_include_pad"] = 0
            nodes.append(helper.make_node("MaxPool" if op == "maxpool" else "AveragePool", [ins[0]], [n], name=n, **kw_))
        elif op in ("pad", "chpad"):
            if op == "pad":
                g = lambda k: int(a.get(k, "0"))
                pads = [0, 0, g("t"), g("l"), 0, 0, g("b"), g("r")]
            else:
                pads = [0, 0, 0, 0, 0, int(a["out"]) - x[0], 0, 0]
            pname = init_int64(inits, n + ".pads", pads)
            nodes.append(helper.make_node("Pad", [ins[0], pname], [n], name=n, mode="constant"))
        elif op == "dropout":  # inference: the identity
            nodes.append(helper.make_node("Identity", [ins[0]], [n], name=n))
        elif op == "flatten":
            nodes.append(helper.make_node("Flatten", [ins[0]], [n], name=n, axis=1))
        elif op == "linear":
            cin = [ins[0], init(n + ".weight", ts["weight"])]
            if "bias" in ts:
                cin.append(init(n + ".bias", ts["bias"]))
            nodes.append(helper.make_node("Gemm", cin, [n], name=n, transB=1))
        elif op == "l2norm":
            nodes.append(helper.make_node("LpNormalization", [ins[0]], [n], name=n, axis=1, p=2))
        else:
            raise ArchError(f"line {L['line']}: op '{op}' ({n}) is not translated to ONNX by this peer")
    inp = layers[0]
    g = helper.make_graph(
        nodes, "mfr", [helper.make_tensor_value_info(inp["name"], TensorProto.FLOAT, ["N"] + list(inp["shape"]))],
        [helper.make_tensor_value_info(o, TensorProto.FLOAT, ["N"] + list(shapes[o])) for o in outputs], inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)], producer_name="mfr ort_peer")
    m.ir_version = 8  # opset 17's; onnxruntime releases all read it
    onnx.checker.check_model(m)
    return m, params, order


def init_int64(inits, name, vals):
    inits.append(numpy_helper.from_array(np.array(vals, dtype=np.int64), name))
    return name


def count_macs(model):
    """Per-image MACs of the ONNX graph by the describer's rules (8.4), from
    the node attributes and the shapes ONNX itself infers — not from the
    .arch text — so a mistranslated layer shows up as a different count."""
    m = shape_inference.infer_shapes(model, strict_mode=True)
    shp = {}
    for vi in list(m.graph.value_info) + list(m.graph.input) + list(m.graph.output):
        shp[vi.name] = [d.dim_value for d in vi.type.tensor_type.shape.dim][1:]  # drop N
    for t in m.graph.initializer:
        shp[t.name] = list(t.dims)
    per = lambda s: int(np.prod(s))
    macs = 0
    for nd in m.graph.node:
        at = {a.name: helper.get_attribute_value(a) for a in nd.attribute}
        out, x = shp[nd.output[0]], shp[nd.input[0]]
        if nd.op_type == "Conv":
            w = shp[nd.input[1]]
            macs += per(out) * w[1] * w[2] * w[3]
        elif nd.op_type == "Gemm":
            w = shp[nd.input[1]]
            macs += w[0] * w[1]
        elif nd.op_type in ("BatchNormalization", "PRelu"):
            macs += per(out)
        elif nd.op_type == "AveragePool":
            macs += per(out) * int(np.prod(at["kernel_shape"]))
        elif nd.op_type == "GlobalAveragePool":
            macs += per(x)
        elif nd.op_type == "LpNormalization":
            macs += 2 * per(x)
    return macs


def session(model, threads):
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    return ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"])


def time_runs(sess, feed):
    """Median and minimum wall seconds after one warm-up run, as bench_net."""
    sess.run(None, feed)
    ts, start = [], time.perf_counter()
    while len(ts) < MAX_RUNS and (len(ts) < MIN_RUNS or time.perf_counter() - start < FIGURE_SECONDS):
        t = time.perf_counter()
        sess.run(None, feed)
        ts.append(time.perf_counter() - t)
    return float(np.median(ts)), min(ts), len(ts)


def fixed_input(shape, batch):
    # any values in [-1, 1): bench_net's fixed input only matters for --check
    rng = np.random.default_rng(2024)
    return rng.uniform(-1, 1, (batch,) + tuple(shape)).astype(np.float32)


def run(path, args):
    label = os.path.basename(path)
    label = label[:-5] if label.endswith(".arch") else label
    prefix = path[:-5] if path.endswith(".arch") else path
    with open(path) as f:
        layers, outputs = parse_arch(f.read(), path)
    if len(outputs) != 1:
        raise ArchError(f"{len(outputs)} outputs; the peer times one")
    weights = names = None
    if args.check:
        weights, names = load_weights(prefix)
    model, params, order = build(layers, outputs, weights)
    if names is not None and names != order:
        raise ArchError(f"the exported tensor list differs from the graph's (first: "
                        f"{next((a, b) for a, b in zip(names + [''], order + ['']) if a != b)})")
    macs = count_macs(model)
    ver = f"onnxruntime {ort.__version__}"
    ok = True
    note = []
    if args.expect_macs is not None:
        same = macs == args.expect_macs
        ok &= same
        note.append(f"describer {args.expect_macs} MACs: {'same' if same else 'DIFFERENT'}")
    if args.expect_params is not None:
        same = params == args.expect_params
        ok &= same
        note.append(f"{args.expect_params} params: {'same' if same else 'DIFFERENT'}")
    print(f"{ver} {label}: ONNX graph of {len(model.graph.node)} nodes, {params} params, {macs} MACs per image"
          + (f" ({'; '.join(note)})" if note else ""), flush=True)
    if not ok:
        print(f"ort_peer: {label}: the ONNX graph is not the describer's network; no figures", file=sys.stderr)
        return False
    shape = layers[0]["shape"]
    gflop = 2 * macs / 1e9
    s1 = session(model, 1)
    if args.check:
        x = np.fromfile(prefix + ".input", dtype="<f4").reshape((1,) + tuple(shape))
        want = np.fromfile(prefix + ".output", dtype="<f4")
        got = s1.run(None, {layers[0]["name"]: x})[0].reshape(-1)
        if got.shape != want.shape:
            print(f"ort_peer: {label}: output has {got.size} values, mfr's {want.size}", file=sys.stderr)
            return False
        diff, scale = float(np.max(np.abs(got - want))), float(np.max(np.abs(want)))
        same = diff <= CHECK_RTOL * max(scale, 1e-30)
        print(f"{ver} {label} vs mfr, same weights and input: max |diff| {diff:.2e} (max |y| {scale:.2e}): "
              f"{'same network' if same else 'DIFFERENT'}", flush=True)
        if not same:
            return False
    feed = {layers[0]["name"]: fixed_input(shape, 1)}
    med, mn, k = time_runs(s1, feed)
    print(f"{ver} {label} batch 1, 1 thread: {med * 1e3:.1f} ms ({gflop / med:.1f} GFLOP/s; "
          f"min {mn * 1e3:.1f} ms, {k} runs)", flush=True)
    del s1
    # every core this process may use, as OpenMP's default under mfr
    threads = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    sb = session(model, threads)
    feed = {layers[0]["name"]: fixed_input(shape, args.batch)}
    med, mn, k = time_runs(sb, feed)
    print(f"{ver} {label} batch {args.batch}, {threads} threads: {args.batch / med:.1f} img/s "
          f"({gflop * args.batch / med:.1f} GFLOP/s; median {med * 1e3:.1f} ms per batch, min {mn * 1e3:.1f} ms, "
          f"{k} runs)", flush=True)
    return True


def main():
    p = argparse.ArgumentParser(description="onnxruntime peer of bench_net")
    p.add_argument("arch", nargs="+", help="canonical .arch files (bench_net writes them)")
    p.add_argument("--check", action="store_true", help="use bench_net -w's weights and compare outputs")
    p.add_argument("--batch", type=int, default=BATCH, help="batch of the throughput figure (32)")
    p.add_argument("--expect-macs", type=int, help="the describer's MACs (with one FILE)")
    p.add_argument("--expect-params", type=int, help="the describer's parameters (with one FILE)")
    args = p.parse_args()
    if (args.expect_macs is not None or args.expect_params is not None) and len(args.arch) != 1:
        p.error("--expect-macs/--expect-params take one FILE")
    if not 1 <= args.batch <= 65536:
        p.error(f"batch size out of range 1..65536: {args.batch}")
    ok = True
    for path in args.arch:
        try:
            ok &= run(path, args)
        except (ArchError, OSError) as ex:
            print(f"ort_peer: '{path}': {ex}", file=sys.stderr)
            ok = False
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
