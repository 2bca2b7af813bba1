"""Build executors: a local process pool and Ray tasks on a local Ray instance build the same engine set (same
manifest entries) as one-by-one builds; cache hits never reach a worker; bad settings are one-line errors."""

import json

import pytest
from ntc_export.cli import main
from ntc_export.util.errors import NtcError
from ntc_export.util.paths import ZOO_DIR

pytest.importorskip("tensorrt_rtx_bindings", reason="tensorrt_rtx (TensorRT-RTX wheel) is not installed")

MODEL = ZOO_DIR / "mlp2x_gelu.pt"
TARGETS = ("--target", "rtx-ampere", "--target", "rtx-ada")


def build(out, *options, capsys) -> list[dict]:
    capsys.readouterr()
    assert main(["build", str(MODEL), "--precision", "fp16", "--out", str(out), "--json", *TARGETS, *options]) == 0
    return json.loads(capsys.readouterr().out)


def entries(out) -> list[tuple]:
    manifest = json.loads((out / "engines" / "manifest.json").read_text())["engines"]
    return sorted((e["model"], e["target"], e["precision"], e["cache_key"]) for e in manifest)


@pytest.fixture(scope="module")
def one_by_one(tmp_path_factory):
    out = tmp_path_factory.mktemp("one_by_one")
    assert main(["build", str(MODEL), "--precision", "fp16", "--out", str(out), "--json", *TARGETS]) == 0
    return out


def test_local_pool_builds_the_same_engines(one_by_one, tmp_path, capsys):
    rows = build(tmp_path, "--jobs", "2", capsys=capsys)
    assert [r["status"] for r in rows] == ["engine (miss)"] * 2
    assert entries(tmp_path) == entries(one_by_one)
    again = build(tmp_path, "--jobs", "2", capsys=capsys)
    assert [r["status"] for r in again] == ["engine (hit)"] * 2


def test_ray_builds_the_same_engines_on_a_local_instance(one_by_one, tmp_path, capsys):
    pytest.importorskip("ray", reason="ray is not installed (pip install 'ntc-export[ray]')")
    rows = build(tmp_path, "--executor", "ray", "--jobs", "2", capsys=capsys)
    assert [r["status"] for r in rows] == ["engine (miss)"] * 2
    assert entries(tmp_path) == entries(one_by_one)
    manifest = json.loads((tmp_path / "engines" / "manifest.json").read_text())["engines"]
    for e in manifest:  # engines and logs gathered into the output folder, paths are the driver's
        assert (tmp_path / "engines" / e["engine"]).stat().st_size == e["engine_bytes"]
        assert (tmp_path / "engines" / e["build_log"]).is_file() and e["built_on"]
        assert e["onnx"].startswith(str(tmp_path))
    # Cache hits are answered by the driver: no Ray instance is started for them.
    again = build(tmp_path, "--executor", "ray", capsys=capsys)
    assert [r["status"] for r in again] == ["engine (hit)"] * 2


def test_bad_executor_settings():
    from ntc_export.pipeline.executor import run_builds

    with pytest.raises(NtcError, match="unknown executor 'slurm'"):
        run_builds([], "unused", "slurm")
    with pytest.raises(NtcError, match="--jobs must be at least 1"):
        run_builds([], "unused", "local", 0)
