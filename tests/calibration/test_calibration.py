"""Calibration: Q/DQ fidelity vs PyTorch on real digits tokens, placement, per-channel weights, calibrators vs
independent references, cache hit/miss, plugin scale carry-over, errors."""

import json

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from ntc_export.backend.onnx.export import export_model
from ntc_export.calibration import calibrate
from ntc_export.calibration.calibrators import amax_entropy, amax_kl, amax_mse, amax_percentile
from ntc_export.calibration.formats import fake_quant
from ntc_export.calibration.plugins import METADATA_KEY
from ntc_export.data.tokens import builtin_images, extract_tokens, split_indices
from ntc_export.evaluate.fidelity import fidelity
from ntc_export.models import build
from ntc_export.util.errors import NtcError
from onnx import TensorProto, helper, numpy_helper

QUIET = dict(log=lambda text: None)


def digits_tokens(split: str, count: int):
    """(patch tokens, labels) of the first `count` images of a built-in digits split, through the project's ViT."""
    images, labels, _ = builtin_images("digits")
    idx = split_indices("digits", split, len(images))[:count]
    tokens = extract_tokens([images[i] for i in idx], size=224, progress=False)[:, 1:]
    return np.ascontiguousarray(tokens), labels[idx]


@pytest.fixture(scope="module")
def labelled():
    calib, calib_labels = digits_tokens("calib", 24)
    val, _ = digits_tokens("val", 16)  # disjoint built-in splits
    return calib, val, calib_labels


@pytest.fixture(scope="module")
def tokens(labelled):
    return labelled[:2]


def _fit_head(module, tokens, labels):
    """Quick-train the task head as a ridge-regression linear probe on one-hot digit labels (closed form).
    A random head's logits are mostly noise-level, too weak a signal for a 0.998 FP8 cosine."""
    with torch.no_grad():
        feats = module.core(torch.from_numpy(tokens), 16, 16).mean(1).double()
        x = torch.cat([feats, torch.ones(len(feats), 1, dtype=torch.float64)], 1)
        y = torch.nn.functional.one_hot(torch.from_numpy(labels), 10).double()
        w = torch.linalg.solve(x.T @ x + x.shape[0] * torch.eye(x.shape[1], dtype=torch.float64), x.T @ y)
        module.head.weight.copy_(w[:-1].T.float())
        module.head.bias.copy_(w[-1].float())


@pytest.fixture(scope="module")
def merger(labelled, tmp_path_factory):
    """A Qwen2-VL PatchMerger (LayerNorm, 2x2 merge, MLP; random init) with a quick-fitted 10-class head."""
    torch.manual_seed(0)
    module = build("patch_merger", dict(output_dim=192, mlp_hidden=384, num_classes=10)).eval()
    _fit_head(module, labelled[0], labelled[2])
    path = export_model(module, tmp_path_factory.mktemp("merger"), precisions=("fp32",))["fp32"]
    return module, path


def _ort(path, x):
    """The exported graph's outputs for patch tokens [N, 256, D] (fed on their 16x16 grid) or [N, h, w, D]."""
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    x = x.reshape(len(x), 16, 16, -1) if x.ndim == 3 else x
    return dict(zip([o.name for o in sess.get_outputs()], sess.run(None, {"tokens": x})))


def _torch(module, x):
    with torch.no_grad():
        out, logits = module(torch.from_numpy(x))
    return {"tokens_out": out.numpy(), "logits": logits.numpy()}


def _producers(model):
    return {o: n for n in model.graph.node for o in n.output}


@pytest.mark.parametrize("precision,method,floor", [("int8", "auto", 0.999), ("int8", "entropy", 0.999),
                                                    ("fp8", "mse", 0.998)])
def test_qdq_model_matches_pytorch_on_heldout_tokens(tokens, merger, tmp_path, precision, method, floor):
    calib, val = tokens
    module, path = merger
    result = calibrate(path, calib, precision, method, tmp_path, holdout=val, **QUIET)
    ref, got = _torch(module, val), _ort(result.model_path, val)
    for name in ("tokens_out", "logits"):
        assert fidelity(ref[name], got[name])["cosine"] >= floor, name
    # Quantization really happened: the result differs from fp32 and the weights are stored as codes.
    assert fidelity(ref["tokens_out"], got["tokens_out"])["snr_db"] < 80
    model = onnx.load(str(result.model_path))
    code_type = TensorProto.INT8 if precision == "int8" else TensorProto.FLOAT8E4M3FN
    codes = [i for i in model.graph.initializer if i.name.endswith("_codes")]
    assert len(codes) == 3 and all(i.data_type == code_type for i in codes)
    assert not [i.name for i in model.graph.initializer if i.data_type == TensorProto.FLOAT and len(i.dims) == 2]
    if precision == "fp8":
        assert next(o.version for o in model.opset_import if o.domain == "") >= 19


class _Attention(torch.nn.Module):
    """Pre-norm single-head attention block: LayerNorm -> qkv -> softmax(q k^T) v -> proj, plus residual."""

    input_dim, output_names = 32, ["tokens_out"]

    def __init__(self):
        super().__init__()
        self.norm = torch.nn.LayerNorm(32)
        self.qkv = torch.nn.Linear(32, 96)
        self.proj = torch.nn.Linear(32, 32)

    def forward(self, x):
        q, k, v = self.qkv(self.norm(x)).chunk(3, dim=-1)
        attn = torch.softmax(q @ k.transpose(1, 2) / 32 ** 0.5, dim=-1)
        return x + self.proj(attn @ v)


def _export(module, path, x):
    torch.onnx.export(module, (torch.from_numpy(x),), str(path), dynamo=False, opset_version=18,
                      input_names=["tokens"], output_names=["tokens_out"],
                      dynamic_axes={"tokens": {0: "batch"}, "tokens_out": {0: "batch"}})
    return path


def test_qdq_placement_keeps_layernorm_softmax_and_attention_in_float(tmp_path):
    torch.manual_seed(1)
    x = np.random.default_rng(0).normal(size=(16, 8, 32)).astype(np.float32)
    path = _export(_Attention().eval(), tmp_path / "attn.onnx", x)
    result = calibrate(path, x, "int8", "minmax", tmp_path, **QUIET)
    model = onnx.load(str(result.model_path))
    prod = _producers(model)
    inits = {i.name for i in model.graph.initializer}
    ops = [n.op_type for n in model.graph.node]
    assert "LayerNormalization" in ops and "Softmax" in ops
    for node in model.graph.node:
        if node.op_type in ("LayerNormalization", "Softmax", "Add", "Div"):
            assert all(prod[i].op_type != "DequantizeLinear" for i in node.input if i in prod), node.name
        if node.op_type == "Softmax":
            consumers = [n.op_type for n in model.graph.node if node.output[0] in n.input]
            assert "QuantizeLinear" not in consumers
        if node.op_type == "MatMul":
            weighted = any(prod.get(i) is not None and prod[i].op_type == "DequantizeLinear"
                           and prod[i].input[0] in inits for i in node.input)
            act_in = [prod[i].op_type for i in node.input if i in prod]
            if weighted:  # the qkv / proj projections: both inputs come from DequantizeLinear
                assert act_in == ["DequantizeLinear", "DequantizeLinear"], node.name
            else:  # q k^T and attn v stay float
                assert "DequantizeLinear" not in act_in, node.name
    assert len(result.quantized_layers) == 2
    assert sum(n.op_type == "QuantizeLinear" for n in model.graph.node) == 2


def test_weight_scales_are_per_output_channel(tokens, merger, tmp_path):
    calib, _ = tokens
    module, path = merger
    result = calibrate(path, calib, "int8", "minmax", tmp_path, **QUIET)
    model = onnx.load(str(result.model_path))
    inits = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    dqs = {n.output[0]: n for n in model.graph.node if n.op_type == "DequantizeLinear"}
    first = next(n for n in model.graph.node if n.op_type == "MatMul" and "mlp.0" in n.name)
    dq = dqs[first.input[1]]
    weight = module.mlp[0].weight.detach().numpy().astype(np.float64)  # torch Linear: [out, in]
    # each channel's max |w| maps to code 127, unless two same-sign neighbours along K (input features 2i, 2i+1)
    # add up to more: their sum maps to 127 (int16 pair sums of AVX2 int8 kernels)
    pairs = [max(abs(a) + abs(b) if a * b > 0 else 0 for a, b in zip(row[0::2], row[1::2])) for row in weight]
    expected = np.maximum(np.abs(weight).max(axis=1), pairs) / 127.0
    assert helper.get_attribute_value(dq.attribute[0]) == 1  # axis of [in, out] = output channel
    np.testing.assert_allclose(inits[dq.input[1]], expected, rtol=1e-6)
    codes = inits[dq.input[0]].astype(np.float64)
    assert np.abs(codes).max(axis=0).min() >= 63  # the pair bound at most halves a channel's range
    same = codes[0::2] * codes[1::2] > 0
    assert np.where(same, np.abs(codes[0::2]) + np.abs(codes[1::2]), 0).max() <= 128
    assert np.all(np.abs(codes * expected - weight.T) <= expected / 2 * (1 + 1e-5))
    assert len(np.unique(inits[dq.input[1]])) > 100


def _ort_qdq(x, scale, precision):
    zp_type = TensorProto.INT8 if precision == "int8" else TensorProto.FLOAT8E4M3FN
    nodes = [helper.make_node("QuantizeLinear", ["x", "s", "z"], ["q"]),
             helper.make_node("DequantizeLinear", ["q", "s", "z"], ["y"])]
    graph = helper.make_graph(nodes, "qdq", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [len(x)])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [len(x)])],
                              [numpy_helper.from_array(np.float32(scale), "s"), helper.make_tensor("z", zp_type, [], [0])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 19)])
    return ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]


@pytest.mark.parametrize("precision", ["int8", "fp8"])
def test_fake_quant_matches_onnxruntime_qdq(precision):
    x = np.random.default_rng(2).normal(scale=3.0, size=4096).astype(np.float32)
    scale = 0.02 if precision == "int8" else 0.004
    np.testing.assert_allclose(fake_quant(x, scale, precision), _ort_qdq(x, scale, precision), rtol=1e-6, atol=1e-7)


def test_calibrators_against_direct_references():
    rng = np.random.default_rng(3)
    x = np.abs(np.concatenate([rng.normal(size=200_000), rng.normal(scale=40.0, size=20)]))
    amax = float(x.max())
    hist, edges = np.histogram(x, bins=2048, range=(0.0, amax))
    bin_width = edges[1]
    assert abs(amax_percentile(hist, edges, amax, 99.9) - np.percentile(x, 99.9)) <= 2 * bin_width
    # MSE on the histogram agrees with the exact error on the samples within a few percent.
    best = amax_mse(hist, edges, amax, "int8")
    exact = lambda a: np.mean((fake_quant(x, a / 127, "int8") - x) ** 2)
    grid = np.linspace(0.05, 1.0, 160) * amax
    assert exact(best) <= 1.05 * min(exact(a) for a in grid)
    # KL clips the 20 far outliers of a Gaussian, but keeps the whole range of a uniform distribution; entropy is
    # KL never below the mse point.
    assert amax_kl(hist, edges, amax) < 0.3 * amax
    assert amax_entropy(hist, edges, amax) == max(amax_kl(hist, edges, amax), best)
    u = rng.uniform(0, 5, size=100_000)
    uh, ue = np.histogram(u, bins=2048, range=(0.0, u.max()))
    assert amax_kl(uh, ue, u.max()) > 0.95 * u.max() and amax_entropy(uh, ue, u.max()) > 0.95 * u.max()


def test_cache_hit_and_changed_item_messages(tokens, merger, tmp_path):
    calib, val = tokens
    _, path = merger
    first = calibrate(path, calib, "int8", "minmax", tmp_path, **QUIET)
    assert not first.reused and "cache miss" in first.cache_message
    cached = json.loads(first.cache_path.read_text())
    assert cached["key"]["method"] == "minmax" and len(cached["key"]["model_sha256"]) == 64
    assert set(cached["activations"]) == {l["activation"] for l in cached["layers"].values()}
    mtime = first.cache_path.stat().st_mtime_ns
    again = calibrate(path, calib, "int8", "minmax", tmp_path, **QUIET)
    assert again.reused and "cache hit" in again.cache_message and first.cache_path.stat().st_mtime_ns == mtime
    assert again.activations == first.activations
    np.testing.assert_array_equal(_ort(again.model_path, val[:2])["tokens_out"], _ort(first.model_path, val[:2])["tokens_out"])
    changed = calibrate(path, calib, "int8", "mse", tmp_path, **QUIET)
    assert not changed.reused and "method changed (minmax -> mse)" in changed.cache_message
    other_data = calibrate(path, calib[:20], "int8", "mse", tmp_path, **QUIET)
    assert "calibration data changed" in other_data.cache_message and "method" not in other_data.cache_message


def test_target_cosine_keeps_most_sensitive_layers(tokens, merger, tmp_path):
    calib, val = tokens
    _, path = merger
    result = calibrate(path, calib, "int8", "minmax", tmp_path, target_cosine=0.99995, holdout=val, **QUIET)
    assert result.evaluated_on == "held-out tokens"
    assert set(result.sensitivity) == {"/mlp/mlp.0/MatMul", "/mlp/mlp.2/MatMul", "/head/Gemm"}
    assert result.kept_high_precision, "0.99995 is above what full INT8 reaches on this model"
    kept = [k["layer"] for k in result.kept_high_precision]
    order = sorted(result.sensitivity, key=result.sensitivity.get)
    assert kept == order[:len(kept)]
    for k in result.kept_high_precision:
        assert k["sensitivity_cosine"] == result.sensitivity[k["layer"]] and k["model_cosine_before"] < 0.99995
    # Keeping layers must stop before keeping them all: the least sensitive (the head, 0.999999 alone against at
    # most 0.99994 for the MLP matmuls) stays quantized.
    assert "/head/Gemm" in result.quantized_layers
    assert sorted(result.quantized_layers + kept) == sorted(result.sensitivity)
    assert min(f["cosine"] for f in result.fidelity.values()) >= 0.99995
    model = onnx.load(str(result.model_path))
    prod = _producers(model)
    for node in model.graph.node:
        dequantized = [i in prod and prod[i].op_type == "DequantizeLinear" for i in node.input]
        if node.name in kept:
            assert not any(dequantized), node.name
        if node.name in result.quantized_layers:
            assert all(dequantized[:2]), node.name  # activation and weight both go through Q/DQ in the written graph


def _toy_graph(plugin: bool):
    """X -> MatMul(W1) -> h -> [decomposed: Mul(2) -> h2 -> MatMul(Wi) -> Softmax | plugin: ntc::Toy] -> attn_out
    -> MatMul(W2) -> y. The plugin replaces the bracket and keeps its boundary names h and attn_out."""
    rng = np.random.default_rng(4)
    inits = [numpy_helper.from_array(rng.normal(size=(8, 8)).astype(np.float32), n) for n in ("W1", "W2")]
    nodes = [helper.make_node("MatMul", ["X", "W1"], ["h"], name="proj_in")]
    if plugin:
        nodes.append(helper.make_node("Toy", ["h"], ["attn_out"], name="toy", domain="ntc"))
    else:
        inits += [numpy_helper.from_array(np.float32(2.0), "two"),
                  numpy_helper.from_array(rng.normal(size=(8, 8)).astype(np.float32), "Wi")]
        nodes += [helper.make_node("Mul", ["h", "two"], ["h2"], name="scale"),
                  helper.make_node("MatMul", ["h2", "Wi"], ["inner"], name="inner_proj"),
                  helper.make_node("Softmax", ["inner"], ["attn_out"], name="softmax", axis=-1)]
    nodes.append(helper.make_node("MatMul", ["attn_out", "W2"], ["y"], name="proj_out"))
    graph = helper.make_graph(nodes, "toy", [helper.make_tensor_value_info("X", TensorProto.FLOAT, ["b", 4, 8])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["b", 4, 8])], inits)
    opsets = [helper.make_opsetid("", 18)] + ([helper.make_opsetid("ntc", 1)] if plugin else [])
    return helper.make_model(graph, opset_imports=opsets)


def test_plugin_graph_receives_scales_by_tensor_name(tmp_path):
    onnx.save(_toy_graph(False), str(tmp_path / "decomposed.onnx"))
    onnx.save(_toy_graph(True), str(tmp_path / "plugin.onnx"))
    x = np.random.default_rng(5).normal(size=(16, 4, 8)).astype(np.float32)
    result = calibrate(tmp_path / "decomposed.onnx", x, "int8", "minmax", tmp_path,
                       plugin_onnx=tmp_path / "plugin.onnx", **QUIET)
    # Independent reference for the carried scales: max |tensor| over the data, computed in numpy.
    h = x @ numpy_helper.to_array(_toy_graph(False).graph.initializer[0])
    inner = (2 * h) @ numpy_helper.to_array(_toy_graph(False).graph.initializer[3])
    attn = np.exp(inner - inner.max(-1, keepdims=True))
    attn /= attn.sum(-1, keepdims=True)
    assert result.activations["h"]["scale"] == pytest.approx(np.abs(h).max() / 127, rel=1e-5)
    assert result.activations["attn_out"]["scale"] == pytest.approx(attn.max() / 127, rel=1e-5)
    report = result.plugin
    assert report["quantized_layers"] == ["proj_in", "proj_out"]
    assert set(report["plugin_io_scales"]) == {"h", "attn_out"} and report["plugin_io_missing"] == []
    assert report["dropped_internal"] == ["h2"]
    pmodel = onnx.load(str(result.plugin_model_path))
    inits = {i.name: numpy_helper.to_array(i) for i in pmodel.graph.initializer}
    prod = _producers(pmodel)
    proj_out = next(n for n in pmodel.graph.node if n.name == "proj_out")
    q_scale = inits[prod[prod[proj_out.input[0]].input[0]].input[1]]
    assert float(q_scale) == pytest.approx(result.activations["attn_out"]["scale"])
    toy = next(n for n in pmodel.graph.node if n.domain == "ntc")
    assert prod[toy.input[0]].op_type == "MatMul"  # plugin input stays float
    meta = json.loads(next(p.value for p in pmodel.metadata_props if p.key == METADATA_KEY))
    assert meta == pytest.approx(report["plugin_io_scales"])


def test_bad_calibration_data_is_a_clear_error(tokens, merger, tmp_path):
    calib, _ = tokens
    _, path = merger
    with pytest.raises(NtcError, match="too small: 8 samples"):
        calibrate(path, calib[:8], "int8", "minmax", tmp_path, **QUIET)
    with pytest.raises(NtcError, match=r"shape \[24, 16, 16, 383\]; model input 'tokens' expects "
                                       r"\[\?, \?, \?, 384\]"):
        calibrate(path, calib[..., :383], "int8", "minmax", tmp_path, **QUIET)
    bad = calib.copy()
    bad[3, 5, 7] = np.nan
    with pytest.raises(NtcError, match="NaN/Inf values \\(first in sample 3\\)"):
        calibrate(path, bad, "int8", "minmax", tmp_path, **QUIET)
    with pytest.raises(NtcError, match="'entropy' does not apply to fp8"):
        calibrate(path, calib, "fp8", "entropy", tmp_path, **QUIET)
    with pytest.raises(NtcError, match="no such token file"):
        calibrate(path, tmp_path / "missing.npz", "int8", "minmax", tmp_path, **QUIET)
    blocks = helper.make_model(helper.make_graph(
        [helper.make_node("Cast", ["blocks"], ["y"], to=TensorProto.FLOAT)], "blocks",
        [helper.make_tensor_value_info("blocks", TensorProto.INT32, ["b", 4, 2])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["b", 4, 2])]))
    onnx.save(blocks, str(tmp_path / "blocks.onnx"))
    with pytest.raises(NtcError, match="model input 'blocks' is int32; calibration feeds float32 tokens"):
        calibrate(tmp_path / "blocks.onnx", calib, "int8", "minmax", tmp_path, **QUIET)


def test_cli_calibrate_writes_model_and_cache(tokens, merger, tmp_path):
    from ntc_export.cli import main

    calib, _ = tokens
    _, path = merger
    np.savez(tmp_path / "calib.npz", patch_tokens=calib)
    rc = main(["calibrate", str(path), "--data", str(tmp_path / "calib.npz"), "--precision", "fp8",
               "--method", "minmax", "--out", str(tmp_path / "out")])
    assert rc == 0
    assert (tmp_path / "out" / "model.fp8.onnx").exists() and (tmp_path / "out" / "calibration" / "fp8.json").exists()
    np.savez(tmp_path / "few.npz", patch_tokens=calib[:4])
    assert main(["calibrate", str(path), "--data", str(tmp_path / "few.npz"), "--out", str(tmp_path / "out")]) == 2


def test_cli_calibrate_takes_token_files_and_rejects_a_wrong_grid_in_one_line(tokens, merger, tmp_path, capsys):
    """What `ntc-export tokens` writes (CLS row included) calibrates an exported ONNX; a grid the graph cannot take
    (patch_merger needs an even side) or a wrong width is one line, exit 2, and writes nothing."""
    from ntc_export.cli import main
    from ntc_export.data.tokens import TokenSet

    calib, _ = tokens
    _, path = merger
    cls = np.zeros((len(calib), 1, calib.shape[-1]), np.float32)
    TokenSet(np.concatenate([cls, calib], 1), (16, 16)).save(tmp_path / "t.npz")
    assert main(["calibrate", str(path), "--data", str(tmp_path / "t.npz"), "--method", "minmax",
                 "--out", str(tmp_path / "ok")]) == 0
    odd = calib.reshape(len(calib), 16, 16, -1)[:, :15, :15].reshape(len(calib), 225, -1)
    TokenSet(np.concatenate([cls, odd], 1), (15, 15)).save(tmp_path / "odd.npz")
    TokenSet(np.concatenate([cls, calib], 1)[..., :380], (16, 16)).save(tmp_path / "narrow.npz")
    capsys.readouterr()
    for name, message in (("odd", "cannot run on the calibration data (tokens [8, 15, 15, 384])"),
                          ("narrow", "shape [24, 16, 16, 380]; model input 'tokens' expects [?, ?, ?, 384]")):
        assert main(["calibrate", str(path), "--data", str(tmp_path / f"{name}.npz"), "--out",
                     str(tmp_path / name)]) == 2
        err = capsys.readouterr().err.strip().splitlines()  # progress lines, then the error
        assert message in err[-1] and "Traceback" not in "\n".join(err), err
        assert not (tmp_path / name / "model.int8.onnx").exists()


def test_tokens_on_several_grids_calibrate_group_by_group(tokens, merger, tmp_path):
    """A ragged token set (16x16 images and 8x12 crops of others, interleaved) calibrates through FeedGroups: each
    grid runs on its own and minmax scales are the largest magnitude over both grids, i.e. the larger of the scales
    each grid alone gives; the Q/DQ graph then matches PyTorch on both grids."""
    from ntc_export.data.tokens import MixedTokenSet, TokenSet

    calib, val = tokens
    module, path = merger
    cls = np.zeros((len(calib), 1, calib.shape[-1]), np.float32)
    crops = calib.reshape(len(calib), 16, 16, -1)[::-1, 4:12, 2:14].reshape(len(calib), 96, -1)
    square, small = (TokenSet(np.concatenate([cls, t], 1), g) for t, g in ((calib, (16, 16)), (crops, (8, 12))))
    order = np.random.default_rng(0).permutation(2 * len(calib))
    ragged = MixedTokenSet([(np.sort(order[:len(calib)]), square), (np.sort(order[len(calib):]), small)])
    both = calibrate(path, ragged, "int8", "minmax", tmp_path / "both", **QUIET)
    alone = [calibrate(path, ts, "int8", "minmax", tmp_path / name, **QUIET)
             for name, ts in (("square", square), ("small", small))]
    for tensor, act in both.activations.items():
        assert act["amax"] == pytest.approx(max(a.activations[tensor]["amax"] for a in alone), rel=1e-6), tensor
    assert {a["amax"] for a in alone[0].activations.values()} != {a["amax"] for a in alone[1].activations.values()}
    held = val.reshape(len(val), 16, 16, -1)
    for x in (held, held[:, 2:10, 4:16]):
        ref, got = _torch(module, np.ascontiguousarray(x)), _ort(both.model_path, np.ascontiguousarray(x))
        assert fidelity(ref["tokens_out"], got["tokens_out"])["cosine"] >= 0.999
