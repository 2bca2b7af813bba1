"""Shared fixtures: fp32 engines of a compressor decoder of every family and a projector built here (TensorRT-RTX,
ahead of time), their Triton repository, and a real tritonserver serving its CPU twins."""

import re
import shutil

import pytest
from ntc_export.models import load
from ntc_export.util.errors import NtcError
from ntc_export.util.paths import ZOO_DIR

COMPRESSOR, PROJECTOR = "bcae_x16", "mlp2x_gelu"
# One zoo compressor per other family (VQ indices, range-coded hyperprior latents, int4 latent textures): their plan
# configs are written as COMPRESSOR's, so one target each keeps the build short.
FAMILIES = {"vq": "vq_x16", "hyperprior": "hp_x16", "ntc_grid": "ntc_x16"}
# The batching test's 64 concurrent requests must meet in batches even when a loaded machine sends them slowly.
BATCHING_DELAY_US = 500_000
TARGETS = ("rtx-ampere", "rtx-ada")


@pytest.fixture(scope="session")
def served_build(tmp_path_factory):
    """A build directory with fp32 engines of COMPRESSOR and PROJECTOR for TARGETS and of each FAMILIES compressor for
    the last target (two local build workers)."""
    pytest.importorskip("tensorrt_rtx_bindings", reason="tensorrt_rtx (TensorRT-RTX wheel) is not installed")
    from ntc_export.cli import main

    out = tmp_path_factory.mktemp("serving_build")
    builds = [(COMPRESSOR, TARGETS), (PROJECTOR, TARGETS), *((m, TARGETS[-1:]) for m in FAMILIES.values())]
    for model, targets in builds:
        args = ["build", str(ZOO_DIR / f"{model}.pt"), "--precision", "fp32", "--out", str(out), "--jobs", "2",
                "--json", *[a for t in targets for a in ("--target", t)]]
        assert main(args) == 0
    return out


@pytest.fixture(scope="session")
def served_repo(served_build, tmp_path_factory):
    from ntc_export.serving.repository import write_repository

    repo = tmp_path_factory.mktemp("serving_repo") / "models"
    index = write_repository(served_build, repo)
    return repo, index


@pytest.fixture(scope="session")
def modules():
    return {name: load(ZOO_DIR / f"{name}.pt").eval() for name in (COMPRESSOR, PROJECTOR, *FAMILIES.values())}


@pytest.fixture(scope="session")
def triton(served_repo, tmp_path_factory):
    """tritonserver on 127.0.0.1 (free ports) with the CPU twins; skipped only when it cannot start here."""
    from ntc_export.serving.tritonserver import TritonServer, prepare_server

    try:
        prepare_server()
    except NtcError as e:
        pytest.skip(f"tritonserver cannot start here: {e}")
    repo = batching_copy(served_repo[0], tmp_path_factory.mktemp("served") / "models")
    server = TritonServer(repo, config_name="cpu", start_timeout=120)
    server.start()
    try:
        yield server
    finally:
        server.stop()


def batching_copy(repo, out):
    """A copy of `repo` whose projector CPU twin waits up to BATCHING_DELAY_US to fill a batch (the shipped 5 ms
    suits a client sending at full speed, not a test on a busy 2-core machine)."""
    shutil.copytree(repo, out)
    config = out / f"{PROJECTOR}_fp32" / "configs" / "cpu.pbtxt"
    text, n = re.subn(r"max_queue_delay_microseconds: \d+", f"max_queue_delay_microseconds: {BATCHING_DELAY_US}",
                      config.read_text())
    assert n == 1, config
    config.write_text(text)
    return out
