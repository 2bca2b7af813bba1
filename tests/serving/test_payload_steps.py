"""The ensembles' payload step without a server, for every compressor family: the inputs it unpacks from payloads
(zero-padded to one length, on a grid that is no multiple of any family's cells), run through the PyTorch decoder
and cropped as the crop step crops, equal the family's own `decode`; VQ indices equal the encoder's; bad payloads are
one-line errors; a build's extra graphs and compressors are no projectors."""

import shutil

import numpy as np
import pytest
import torch
from ntc_export.codec.payload import Payload
from ntc_export.codec.payload import unpack as unpack_payload
from ntc_export.models import load
from ntc_export.serving.ensemble import graph_parts, is_projector
from ntc_export.serving.payload_layout import step_params
from ntc_export.serving.python_backend.unpacking import Unpacker, payload_rows
from ntc_export.serving.repository import ServedModel
from ntc_export.util.errors import NtcError
from ntc_export.util.paths import ZOO_DIR

MODELS = ("bcae_x16", "vq_x16", "hp_x16", "ntc_x16", "ntc_bc5_x32")  # every family; ntc in int4 and BC5 storage
GRID = (11, 18)  # odd and even sides: every family pads it (2x2 cells, 4x4 texels, 16x16 BC-block texels)


def rows(payloads: list[bytes]) -> np.ndarray:
    """Payloads as one request's UINT8 tensor: rows zero-padded to the longest."""
    size = max(map(len, payloads))
    return np.stack([np.frombuffer(p + bytes(size - len(p)), np.uint8) for p in payloads])


@pytest.fixture(scope="module", params=MODELS)
def case(request, tmp_path_factory):
    module = load(ZOO_DIR / f"{request.param}.pt").eval()
    x = np.random.default_rng(0).standard_normal((3, *GRID, module.input_dim)).astype(np.float32)
    # ntc_grid: a short per-image optimisation (the payload layout does not depend on it)
    payloads = module.encode(x, steps=2) if module.family == "ntc_grid" else module.encode(x)
    params, files = step_params(module, ZOO_DIR / f"{request.param}.pt")
    folder = tmp_path_factory.mktemp(request.param)
    for name, source in files.items():  # what the repository puts in the step's version folder
        shutil.copy(source, folder / name)
    return {"module": module, "tokens": x, "payloads": payloads, "unpack": Unpacker({k: str(v) for k, v in
                                                                                     params.items()}, folder)}


@torch.no_grad()
def test_unpacked_inputs_decode_as_the_family_decodes(case):
    module, unpack = case["module"], case["unpack"]
    inputs, grid = unpack(rows(case["payloads"]))
    assert grid == GRID and list(inputs) == module.input_names
    out = module(*(torch.as_tensor(a) for a in inputs.values()))
    out = (out[0] if isinstance(out, tuple) else out).numpy()
    hp, wp = (-(-s // unpack.unit) * unpack.unit for s in grid)
    assert hp * wp == out.shape[1]  # the decoder's padded grid, as the crop step checks
    cropped = out.reshape(len(out), hp, wp, -1)[:, :grid[0], :grid[1]].reshape(len(out), -1, out.shape[-1])
    np.testing.assert_array_equal(cropped, module.decode(case["payloads"]))
    if module.family == "vq":  # the encoder's own indices, bit for bit
        np.testing.assert_array_equal(inputs["indices"], module.compress(case["tokens"]))


def test_bad_payloads_are_one_line_errors(case):
    module, unpack, payloads = case["module"], case["unpack"], case["payloads"]
    corrupt = rows(payloads)
    corrupt[:, :4] = 0
    other = load(ZOO_DIR / ("vq_x16.pt" if module.family != "vq" else "bcae_x16.pt"))
    small = case["tokens"][:1, :8, :8]
    parsed = unpack_payload(payloads[0])
    short = Payload(parsed.family, parsed.fingerprint, parsed.grid, parsed.body[:-4]).pack()
    checks = [(corrupt, "payload 0: not an ntc-export compressed-token payload (no NTCP header)"),
              (rows(other.encode(small)),
               f"payload 0: written by a '{other.family}' compressor, not '{module.family}'"),
              (rows(tail := [*payloads, payloads[0] + b"\0\0\x07"]),  # a longer row, not ending in zeros
               f"payload 3: {max(map(len, tail)) - len(payloads[0])} bytes after its end are not zero padding"),
              (rows([payloads[0], *module.encode(small, **({"steps": 0} if module.family == "ntc_grid" else {}))]),
               "payloads hold different token grids [(8, 8), (11, 18)]"),
              (rows([short]), "payload 0: " + ("corrupt bitstream" if module.family == "hyperprior" else
                                               f"{len(parsed.body) - 4} body bytes, a 11x18 grid needs "
                                               f"{len(parsed.body)}"))]
    for data, message in checks:
        with pytest.raises(NtcError) as info:
            unpack(data)
        assert str(info.value).startswith(message) and "\n" not in str(info.value), str(info.value)


def test_zero_padding_is_cut_at_the_payloads_own_length(case):
    payloads = case["payloads"]
    assert payload_rows(rows(payloads)) == payloads
    assert payload_rows(rows([payloads[0] + bytes(7)])) == [payloads[0]]


def served(model: str, inputs: dict, outputs: dict) -> ServedModel:
    signature = {"max_batch_size": 8, "input": [{"name": n, "data_type": t, "dims": [-1]} for n, t in inputs.items()],
                 "output": [{"name": n, "data_type": t, "dims": [-1]} for n, t in outputs.items()]}
    return ServedModel(model, "fp32", [], signature)


def test_extra_graphs_and_compressors_are_no_projectors(tmp_path):
    """A main job's build holds `<model>.encoder` (tokens -> indices) and `<model>.hyper_synthesis` beside the
    decoders: neither chains as a projector; a token model returning tokens_out does."""
    models = [served("vq_x16", {"indices": "int32"}, {"tokens_out": "fp32"}),
              served("vq_x16.encoder", {"tokens": "fp32"}, {"indices": "int32"}),
              served("hp_x16.hyper_synthesis", {"z_hat": "fp32"}, {"scales": "fp32"}),
              served("mlp2x_gelu", {"tokens": "fp32"}, {"tokens_out": "fp32", "logits": "fp32"}),
              served("tokens_mixer", {"tokens": "fp32"}, {"tokens_out": "fp32"})]
    (tmp_path / "report.json").write_text('{"models": {"hp_x16": {"arch": "hyperprior"}}}')
    parts = graph_parts(models, tmp_path)
    assert parts == {"vq_x16.encoder", "hp_x16.hyper_synthesis"}
    compressors = {"vq_x16": ({}, {})}
    assert [m.model for m in models if is_projector(m, parts, compressors)] == ["mlp2x_gelu", "tokens_mixer"]
