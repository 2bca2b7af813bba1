"""bc_autoencoder: BC simulation vs a real min/max BC4 encoder + host decode, export -> ONNX Runtime fidelity,
compress/decompress against bcdec (imagecodecs) + the decoder layers, train command, bad block inputs."""

import imagecodecs
import numpy as np
import pytest
import torch
from click.testing import CliRunner
from ntc_export.codec.decode import decode
from ntc_export.codec.encode_bc45 import pack_bc4
from ntc_export.models import build, load
from ntc_export.models.bc_autoencoder import latent_for_rate
from ntc_export.models.bc_sim import bc4_simulate
from ntc_export.util.errors import NtcError

TINY = dict(latent=8, dim=32, depth=2, heads=2, window=8, mlp_ratio=2.0)


def minmax_bc4_encode(x255: np.ndarray) -> np.ndarray:
    """A simple BC4 encoder on float32 values [N, 16] in [0, 255]: e0 = round(max), e1 = round(min), nearest index
    in the palette the decoder will use (first on ties)."""
    e0 = np.rint(x255.max(-1)).astype(np.int64)
    e1 = np.rint(x255.min(-1)).astype(np.int64)
    k = np.arange(8)
    w = np.array([0, 7, 1, 2, 3, 4, 5, 6])
    pal8 = ((7 - w) * e0[:, None] + w * e1[:, None]) // 7
    # e0 == e1 selects the 6-value mode; its entries 0..5 are all e0 then, 6 and 7 are 0 and 255.
    pal6 = np.where(k < 6, e0[:, None], np.where(k == 6, 0, 255))
    pal = np.where((e0 > e1)[:, None], pal8, pal6).astype(np.float32)
    idx = np.abs(x255[:, :, None] - pal[:, None, :]).argmin(-1)
    return pack_bc4(e0, e1, idx)


def test_bc_sim_equals_minmax_encoder_then_host_decode():
    rng = np.random.default_rng(0)
    x = rng.random((2, 3, 8, 12), dtype=np.float32)
    x[0, 0, :4, :4] = 0.25  # a flat block
    x[1, 2, 4:, 4:8] = rng.random((4, 4), dtype=np.float32) * 0.01  # a nearly flat block
    sim = bc4_simulate(torch.from_numpy(x)).numpy()
    for b in range(2):
        for c in range(3):
            plane = x[b, c] * np.float32(255)
            blocks = plane.reshape(2, 4, 3, 4).transpose(0, 2, 1, 3).reshape(-1, 16)
            decoded = decode(minmax_bc4_encode(blocks), "bc4", 8, 12)
            np.testing.assert_array_equal(sim[b, c], decoded.astype(np.float32) / np.float32(255))


def test_bc_sim_straight_through_gradient():
    x = torch.rand(1, 2, 4, 4, requires_grad=True)
    weights = torch.randn(1, 2, 4, 4)
    (bc4_simulate(x) * weights).sum().backward()
    torch.testing.assert_close(x.grad, weights)


def test_rate_bookkeeping():
    assert latent_for_rate(16) == 96 and latent_for_rate(64) == 24 and latent_for_rate(4) == 384
    model = build("bc_autoencoder", dict(TINY, latent=96))
    assert model.bytes_per_image() * 16 == 256 * 384 * 2


def _trained_like(seed=0):
    """A tiny model with non-trivial weights (distinct biases, as after training)."""
    torch.manual_seed(seed)
    model = build("bc_autoencoder", TINY)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.02 * torch.randn_like(p))
    return model.eval()


def bcdec_latents(blocks: np.ndarray) -> torch.Tensor:
    """INT32 BC5 blocks [B, P, by, bx, 4] -> latent values [B, (4 by)*(4 bx), 2P] decoded by bcdec (imagecodecs), not
    the project's decoders: latent l is plane l // 2, channel l % 2 (the layout the module docstring states)."""
    b, p, by, bx, _ = blocks.shape
    raw = np.ascontiguousarray(blocks).astype("<i4").view(np.uint8)  # little-endian words -> block bytes
    img = np.array([[imagecodecs.bcn_decode(raw[i, j].tobytes(), 5, shape=(4 * by, 4 * bx, 2)) for j in range(p)]
                    for i in range(b)])  # [B, P, H, W, 2]
    unit = img.transpose(0, 2, 3, 1, 4).reshape(b, 16 * by * bx, 2 * p)
    return torch.from_numpy(unit.astype(np.float32) / np.float32(255))


def test_compress_is_the_simulated_encoder_read_back_by_bcdec():
    model = _trained_like()
    tokens = torch.randn(2, 256, 384)
    blocks = model.compress(tokens)
    assert blocks.dtype == np.int32 and blocks.shape == (2, 4, 4, 4, 4)  # 8 latents = 4 BC5 planes of 16x16
    unit, gh, gw = model.encode_unit(tokens)
    sim = bc4_simulate(unit).detach().reshape(2, 8, gh * gw).transpose(1, 2)
    # The "fast" host encoder is the min/max encoder bc_sim simulates: bcdec reads back the simulated latents.
    torch.testing.assert_close(bcdec_latents(blocks), sim, rtol=0, atol=0)


def test_decompress_is_bcdec_then_the_decoder_layers():
    model = _trained_like()
    blocks = model.compress(torch.randn(2, 256, 384))
    out = model.decompress(blocks)
    assert out.shape == (2, 256, 384)
    with torch.no_grad():
        ref = model.decode_latent(bcdec_latents(blocks), 16, 16)
    torch.testing.assert_close(torch.from_numpy(out), ref, rtol=1e-5, atol=1e-5)


def _export_and_validate(tmp_path, precisions):
    import onnx
    from ntc_export.backend.onnx.export import export_model
    from ntc_export.evaluate.validate import validate_onnx

    model = _trained_like(1)
    paths = export_model(model, tmp_path, precisions=precisions, name="bcae")
    graph = onnx.load(str(paths[precisions[0]])).graph
    assert [i.name for i in graph.input] == ["blocks"]
    assert graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.INT32
    assert sum(n.op_type == "BcDecode" and n.domain == "ntc" for n in graph.node) == 1
    tokens = np.random.default_rng(0).standard_normal((3, 256, 384)).astype(np.float32)
    return {r["precision"]: r for r in validate_onnx("bcae", model, paths, tokens)}


def test_export_fp32_validates_in_onnx_runtime(tmp_path):
    record = _export_and_validate(tmp_path, ("fp32",))["fp32"]
    assert record["rel_l2"] <= 1e-5 and record["pass"]


def test_export_fp16_validates_in_onnx_runtime(tmp_path):
    record = _export_and_validate(tmp_path, ("fp16",))["fp16"]
    assert record["cosine"] >= 0.9995 and record["pass"]


def test_bad_blocks_raise():
    model = _trained_like()
    good = model.compress(torch.randn(1, 256, 384))
    with pytest.raises(NtcError, match=r"\[B, 4, by, bx, 4\]"):
        model(torch.from_numpy(good[..., :2].copy()))  # wrong last dim (BC4-sized words for a BC5 model)
    with pytest.raises(NtcError, match=r"\[B, 4, by, bx, 4\]"):
        model(torch.from_numpy(good[:, :3].copy()))  # truncated: a plane missing
    with pytest.raises(NtcError, match="int32"):
        model(torch.from_numpy(good.astype(np.int64)))
    with pytest.raises(NtcError, match="not a square grid"):
        model.compress(torch.randn(1, 250, 384))


def test_train_command_smoke(tmp_path):
    from ntc_export.cli import cli as main
    from ntc_export.data.tokens import TokenSet

    rng = np.random.default_rng(0)
    data = tmp_path / "tokens.npz"
    TokenSet(rng.standard_normal((4, 257, 384)).astype(np.float32), (16, 16)).save(data)
    out = tmp_path / "bcae.pt"
    args = ["train", "--arch", "bc_autoencoder", "--rate", "64", "--data", str(data), "--epochs", "1", "--batch", "2",
            "--dim", "32", "--depth", "1", "--out", str(out), "--no-progress"]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    model = load(out)
    assert model.arch == "bc_autoencoder" and model.config["latent"] == 96 and model.config["merge"] == 2 \
        and model.config["dim"] == 32
    assert "final loss" in result.output
    bad = CliRunner().invoke(main, ["train", "--data", str(tmp_path / "missing.npz"), "--out", str(out)])
    assert isinstance(bad.exception, NtcError) and "no such token file" in str(bad.exception)
