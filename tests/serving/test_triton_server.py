"""A real tritonserver (nvidia-pytriton's 2.51, Python backend) serving the CPU twins of a compressor decoder of every
family, a projector and their payload -> tokens -> embeddings ensembles: HTTP and gRPC answers against PyTorch (each
family's own decode, then the projector), dynamic batching in the server's statistics, and the server's own errors
for bad requests, a corrupt payload's one-line reason through every ensemble included."""

import json
import threading
from functools import partial

import numpy as np
import pytest
import torch

httpclient = pytest.importorskip("tritonclient.http", reason="tritonclient[http] is not installed")
grpcclient = pytest.importorskip("tritonclient.grpc", reason="tritonclient[grpc] is not installed")
from tritonclient.utils import InferenceServerException  # noqa: E402

COMPRESSOR, PROJECTOR = "bcae_x16", "mlp2x_gelu"  # what conftest builds
FAMILIES = {"vq": "vq_x16", "hyperprior": "hp_x16", "ntc_grid": "ntc_x16"}  # ... and one compressor per other family
DECODER, PROJ = f"{COMPRESSOR}_fp32", f"{PROJECTOR}_fp32"
ENSEMBLE = f"{COMPRESSOR}_{PROJECTOR}_fp32"
REL_L2 = 1e-5
CONCURRENT = 64
GRID = (11, 18)  # no multiple of any family's cells: every ensemble pads and crops
NO_HEADER = "payload 0: not an ntc-export compressed-token payload (no NTCP header)"


def rel_l2(a, b) -> float:
    return float(np.linalg.norm(np.asarray(a, np.float64) - b) / np.linalg.norm(b))


def tokens(n: int, seed: int = 0) -> np.ndarray:
    """Patch tokens on their 16x16 grid [n, 16, 16, 384] (what the projector takes), scaled like the ViT's
    final-LayerNorm output."""
    return np.random.default_rng(seed).standard_normal((n, 16, 16, 384)).astype(np.float32)


@torch.no_grad()
def golden(module, x: np.ndarray) -> np.ndarray:
    out = module(torch.as_tensor(x))
    return (out[0] if isinstance(out, tuple) else out).numpy()


def infer(client, lib, model: str, name: str, array: np.ndarray, outputs: list[str], dtype: str | None = None):
    dtype = dtype or {np.dtype(np.float32): "FP32", np.dtype(np.int32): "INT32", np.dtype(np.uint8): "UINT8"}[
        array.dtype]
    tensor = lib.InferInput(name, list(array.shape), dtype)
    tensor.set_data_from_numpy(array)
    result = client.infer(model, [tensor], outputs=[lib.InferRequestedOutput(o) for o in outputs])
    return {o: result.as_numpy(o) for o in outputs}


@pytest.fixture(scope="module")
def http(triton):
    client = httpclient.InferenceServerClient(triton.http_url, concurrency=CONCURRENT, network_timeout=120)
    yield client
    client.close()


@pytest.fixture(scope="module")
def grpc(triton):
    client = grpcclient.InferenceServerClient(triton.grpc_url)
    yield client
    client.close()


@pytest.fixture(scope="module")
def payload_case(modules):
    compressor = modules[COMPRESSOR]
    x = tokens(3, seed=1)
    payloads = compressor.encode(x)
    blocks = compressor.compress(x)
    return {"payloads": np.stack([np.frombuffer(p, np.uint8) for p in payloads]), "blocks": blocks,
            "tokens": compressor.decode(payloads)}


def rows(payloads: list[bytes]) -> np.ndarray:
    """One request's payload tensor: a row per image, zero-padded to the longest (range-coded ones differ)."""
    size = max(map(len, payloads))
    return np.stack([np.frombuffer(p + bytes(size - len(p)), np.uint8) for p in payloads])


@pytest.fixture(scope="module", params=sorted(FAMILIES))
def family_case(request, modules):
    """A family's payloads of 3 images on GRID and the PyTorch golden: its own decode, then the projector."""
    name = FAMILIES[request.param]
    module = modules[name]
    x = np.random.default_rng(4).standard_normal((3, *GRID, 384)).astype(np.float32)
    payloads = module.encode(x, steps=2) if request.param == "ntc_grid" else module.encode(x)  # a short optimisation
    decoded = module.decode(payloads).reshape(3, *GRID, -1)
    return {"family": request.param, "ensemble": f"{name}_{PROJECTOR}_fp32", "payloads": payloads,
            "tokens": decoded, "embeddings": golden(modules[PROJECTOR], decoded)}


def test_models_ready(triton, http):
    for model in (DECODER, PROJ, f"{COMPRESSOR}_unpack", ENSEMBLE):
        assert http.is_model_ready(model), model
    for name in FAMILIES.values():
        for model in (f"{name}_fp32", f"{name}_unpack", f"{name}_fp32_grid", f"{name}_{PROJECTOR}_fp32"):
            assert http.is_model_ready(model), model
    config = http.get_model_config(DECODER)
    assert config["backend"] == "python" and config["max_batch_size"] == 8  # the CPU twin of configs/cpu.pbtxt


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_decoder_and_projector_match_pytorch(protocol, http, grpc, modules, payload_case):
    client, lib = (http, httpclient) if protocol == "http" else (grpc, grpcclient)
    decoded = infer(client, lib, DECODER, "blocks", payload_case["blocks"], ["tokens_out"])["tokens_out"]
    assert decoded.shape == (3, 256, 384) and decoded.dtype == np.float32
    assert rel_l2(decoded, golden(modules[COMPRESSOR], payload_case["blocks"])) <= REL_L2
    x = tokens(2, seed=2)
    projected = infer(client, lib, PROJ, "tokens", x, ["tokens_out", "logits"])
    ref = modules[PROJECTOR](torch.as_tensor(x))
    assert rel_l2(projected["tokens_out"], ref[0].detach().numpy()) <= REL_L2
    assert rel_l2(projected["logits"], ref[1].detach().numpy()) <= REL_L2


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_ensemble_payload_to_embeddings_matches_pytorch(protocol, http, grpc, modules, payload_case):
    client, lib = (http, httpclient) if protocol == "http" else (grpc, grpcclient)
    out = infer(client, lib, ENSEMBLE, "payload", payload_case["payloads"], ["tokens", "embeddings"])
    # PyTorch golden: the compressor's own decode of the payloads, then the projector.
    assert out["tokens"].shape == (3, 16, 16, 384)  # the payloads' own grid, as the projector takes it
    assert rel_l2(out["tokens"].reshape(3, 256, 384), payload_case["tokens"]) <= REL_L2
    assert rel_l2(out["embeddings"], golden(modules[PROJECTOR], payload_case["tokens"])) <= REL_L2


def test_every_family_payload_to_embeddings_over_grpc(grpc, family_case):
    """Payload bytes in, tokens and embeddings out, equal to PyTorch; asking for the embeddings alone works too."""
    data = rows(family_case["payloads"])
    out = infer(grpc, grpcclient, family_case["ensemble"], "payload", data, ["tokens", "embeddings"])
    assert out["tokens"].shape == (3, *GRID, 384)
    assert rel_l2(out["tokens"], family_case["tokens"]) <= REL_L2
    assert rel_l2(out["embeddings"], family_case["embeddings"]) <= REL_L2
    alone = infer(grpc, grpcclient, family_case["ensemble"], "payload", data, ["embeddings"])["embeddings"]
    assert rel_l2(alone, family_case["embeddings"]) <= REL_L2


def test_every_familys_corrupt_payload_gets_the_payload_steps_error(grpc, family_case):
    corrupt = rows(family_case["payloads"])
    corrupt[:, :4] = 0  # no NTCP magic
    message = _server_error(lambda: infer(grpc, grpcclient, family_case["ensemble"], "payload", corrupt,
                                          ["embeddings"]))
    assert f"in ensemble '{family_case['ensemble']}', {NO_HEADER}" in message, message
    if family_case["family"] == "hyperprior":  # a flipped byte in the y stream: the range decoder's check
        flipped = rows(family_case["payloads"])
        flipped[0, len(family_case["payloads"][0]) // 2] ^= 0x5A  # mid-stream (the last words may not matter)
        message = _server_error(lambda: infer(grpc, grpcclient, family_case["ensemble"], "payload", flipped,
                                              ["tokens"]))
        assert "corrupt" in message and "\n" not in message, message
    assert grpc.is_server_live()


def test_dynamic_batching_under_concurrent_requests(grpc, modules, tmp_path_factory):
    before = grpc.get_inference_statistics(PROJ, as_json=True)["model_stats"][0]
    x = tokens(CONCURRENT, seed=3)
    done, results = threading.Semaphore(0), {}

    def callback(i, result, error):
        results[i] = error if error is not None else result.as_numpy("tokens_out")
        done.release()

    for i in range(CONCURRENT):  # all 64 in flight at once: gRPC sends each from its own call
        tensor = grpcclient.InferInput("tokens", [1, 16, 16, 384], "FP32")
        tensor.set_data_from_numpy(x[i:i + 1])
        grpc.async_infer(PROJ, [tensor], partial(callback, i), outputs=[grpcclient.InferRequestedOutput("tokens_out")])
    for _ in range(CONCURRENT):
        assert done.acquire(timeout=120), "a request got no answer in 120 s"
    errors = [r for r in results.values() if isinstance(r, Exception)]
    assert not errors, errors[0]
    got = np.concatenate([results[i] for i in range(CONCURRENT)])
    assert rel_l2(got, golden(modules[PROJECTOR], x)) <= REL_L2
    after = grpc.get_inference_statistics(PROJ, as_json=True)["model_stats"][0]
    inferences = int(after["inference_count"]) - int(before.get("inference_count", 0))
    executions = int(after["execution_count"]) - int(before.get("execution_count", 0))
    counts = [{int(b["batch_size"]): int(b["compute_infer"]["count"]) for b in s.get("batch_stats", [])}
              for s in (before, after)]
    batches = {size: n - counts[0].get(size, 0) for size, n in sorted(counts[1].items()) if n > counts[0].get(size, 0)}
    stats = {"model": PROJ, "requests": CONCURRENT, "inference_count": inferences, "execution_count": executions,
             "executions_by_batch_size": batches}
    (tmp_path_factory.getbasetemp() / "batching_stats.json").write_text(json.dumps(stats, indent=2))
    print("batching statistics:", json.dumps(stats))
    assert inferences == CONCURRENT == sum(size * n for size, n in batches.items())
    assert executions < CONCURRENT and max(batches) > 1, stats  # requests were served in batches


def _server_error(call) -> str:
    with pytest.raises(InferenceServerException) as info:
        call()
    return str(info.value)


def test_bad_requests_get_the_servers_error(http, grpc, payload_case):
    blocks = payload_case["blocks"]
    wrong_dtype = _server_error(lambda: infer(http, httpclient, DECODER, "blocks", blocks.astype(np.float32),
                                              ["tokens_out"]))
    assert "data-type" in wrong_dtype or "datatype" in wrong_dtype.lower(), wrong_dtype
    wrong_shape = _server_error(lambda: infer(grpc, grpcclient, DECODER, "blocks", blocks[:, :100], ["tokens_out"]))
    assert "shape" in wrong_shape, wrong_shape
    oversized = np.repeat(blocks[:1], 9, axis=0)  # max_batch_size is 8
    too_big = _server_error(lambda: infer(http, httpclient, DECODER, "blocks", oversized, ["tokens_out"]))
    assert "batch" in too_big.lower(), too_big
    corrupt = payload_case["payloads"].copy()
    corrupt[:, :4] = 0  # no NTCP magic: the payload step answers with its one-line error
    bad_payload = _server_error(lambda: infer(http, httpclient, f"{COMPRESSOR}_unpack", "payload", corrupt,
                                              ["blocks"]))
    assert "payload 0: not an ntc-export compressed-token payload" in bad_payload, bad_payload
    # Through the ensemble: the step's own one-line reason, named by the ensemble.
    for client, lib in ((http, httpclient), (grpc, grpcclient)):
        message = _server_error(lambda: infer(client, lib, ENSEMBLE, "payload", corrupt, ["embeddings"]))
        assert f"in ensemble '{ENSEMBLE}', {NO_HEADER}" in message, message
    # The server is still up and answering.
    assert http.is_server_live() and grpc.is_server_live()
    again = infer(http, httpclient, DECODER, "blocks", blocks, ["tokens_out"])["tokens_out"]
    assert rel_l2(again, payload_case["tokens"]) <= REL_L2
