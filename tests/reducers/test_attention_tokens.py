"""`ntc-export tokens --attention`: the stored CLS attention and keys against a recomputation from the ViT's own
Q/K and key projection, the token file round trip, and VisionZip fed with the real attention and keys."""

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from click.testing import CliRunner
from ntc_export.backend.onnx.export import export_model
from ntc_export.backend.onnxrt.runner import OrtRunner
from ntc_export.data import tokens as T
from ntc_export.data import vit
from ntc_export.models.visionzip import VisionZip
from ntc_export.util.errors import NtcError
from PIL import Image

LAST = vit.ATTENTION_LAYER
Q_SCALED = vit.block_tensor(LAST, "Mul_output_0")  # [B, heads, T, 64], query * 64**-0.25
K_SCALED = vit.block_tensor(LAST, "Mul_1_output_0")  # [B, heads, 64, T], key * 64**-0.25, transposed
NORM1 = f"/backbone/encoder/layer.{vit.KEYS_LAYER}/norm1/Add_1_output_0"  # the penultimate block's key input


@pytest.fixture(scope="module")
def images():
    return T.builtin_images("skimage")[0][:3]


@pytest.fixture(scope="module")
def probes(images):
    """The stock graph's last-block scaled Q and K and the penultimate block's norm1 output, from its own nodes."""
    src = vit.make_image_size_symbolic(onnx.load(str(vit.verified_source())))
    nodes = vit._upstream_nodes(src.graph, [Q_SCALED, K_SCALED, NORM1], set())
    image = next(i for i in src.graph.input if i.name == vit.IMAGE_INPUT)
    outs = [onnx.helper.make_tensor_value_info(n, onnx.TensorProto.FLOAT, None) for n in (Q_SCALED, K_SCALED, NORM1)]
    model = vit._subgraph(src, nodes, [image], outs, "probe")
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    q, k, norm1 = session.run(None, {vit.IMAGE_INPUT: T.preprocess(images, 224)})
    key_matmul = next(n for n in src.graph.node if n.name == vit.block_tensor(vit.KEYS_LAYER, "key/MatMul"))
    inits = {i.name: onnx.numpy_helper.to_array(i) for i in src.graph.initializer}
    weight = inits[key_matmul.input[1]]
    bias = inits[f"backbone.encoder.layer.{vit.KEYS_LAYER}.attention.attention.key.bias"]
    return q, k, norm1 @ weight.astype(np.float64) + bias


@pytest.fixture(scope="module")
def attention_file(tmp_path_factory, images):
    """A token file written by the command from PNG files (lossless: the same pixels)."""
    from ntc_export.cli import cli

    folder = tmp_path_factory.mktemp("attention")
    paths = []
    for i, img in enumerate(images):
        paths.append(str(folder / f"img{i}.png"))
        Image.fromarray(img).save(paths[-1])
    out = folder / "att.npz"
    res = CliRunner().invoke(cli, ["tokens", *paths, "--attention", "--out", str(out), "--no-progress"])
    assert res.exit_code == 0, res.output
    assert "cls_attention [3, 6, 256], keys [3, 257, 384]" in res.output
    return out


def test_stored_attention_and_keys_match_a_recomputation(attention_file, probes):
    q, k, keys = probes
    logits = q.astype(np.float64) @ k.astype(np.float64)  # [B, heads, T, T]
    probs = np.exp(logits - logits.max(-1, keepdims=True))
    probs /= probs.sum(-1, keepdims=True)
    ts = T.load_tokens(attention_file)
    assert ts.attention.shape == (3, vit.HEADS, 256) and ts.keys.shape == (3, 257, vit.DIM)
    np.testing.assert_allclose(ts.attention, probs[:, :, 0, 1:], rtol=1e-4, atol=1e-7)
    np.testing.assert_allclose(ts.keys, keys, rtol=1e-4, atol=1e-4)
    assert np.all(ts.attention.sum(-1) < 1)  # the CLS query's weight on itself is left out
    assert ts.meta["attention_source"]["tensors"]["cls_attention"] == vit.ATTENTION_PROBS


def test_tokens_are_those_of_the_plain_model_and_subsets_keep_attention(attention_file, images):
    ts = T.load_tokens(attention_file)
    np.testing.assert_array_equal(ts.tokens, T.extract_tokens(images, progress=False))
    sub = ts.subset([2, 0])
    np.testing.assert_array_equal(sub.attention, ts.attention[[2, 0]])
    np.testing.assert_array_equal(sub.keys, ts.keys[[2, 0]])
    with pytest.raises(NtcError, match="come together"):
        T.TokenSet(ts.tokens, ts.grid, attention=ts.attention)
    with pytest.raises(NtcError, match="cls_attention must be"):
        T.TokenSet(ts.tokens, ts.grid, attention=ts.attention[:, :, :10], keys=ts.keys)


def test_visionzip_on_real_attention_and_keys(tmp_path, attention_file):
    ts = T.load_tokens(attention_file)
    head_dim = vit.DIM // vit.HEADS
    keys = ts.keys[:, 1:].reshape(len(ts), 256, vit.HEADS, head_dim).mean(2)  # VisionZip: keys averaged over heads
    feeds = {"tokens": np.ascontiguousarray(ts.grid_tokens), "attention": ts.attention.reshape(len(ts), -1, 16, 16),
             "keys": np.ascontiguousarray(keys.reshape(len(ts), 16, 16, head_dim), dtype=np.float32)}  # on the grid
    module = VisionZip(dominant=54, contextual=10, heads=vit.HEADS, keys_dim=head_dim)
    with torch.no_grad():
        want = [o.numpy() for o in module(*(torch.from_numpy(feeds[n]) for n in module.input_names))]
    got = OrtRunner(export_model(module, tmp_path, precisions=("fp32",))["fp32"]).run(feeds)
    np.testing.assert_array_equal(got["dominant_indices"], want[1])
    np.testing.assert_allclose(got["tokens_out"], want[0], rtol=1e-5, atol=1e-5)
    top = np.argsort(-ts.attention.sum(1), axis=1)[:, :54]
    np.testing.assert_array_equal(np.sort(top, axis=1), want[1])  # the 54 most attended patches
