"""The main job takes a Hugging Face checkpoint folder as MODEL: converted on the way (every projector, Qwen3-VL's
DeepStack mergers as models of their own, each with its packed graph beside it), validated like any checkpoint, and a
rerun skips every stage."""

import json

from ntc_export.cli import main
from ntc_export.data.tokens import TokenSet
from ntc_export.models import read_meta


def test_main_job_converts_a_folder(hf_copy, real_tokens, tmp_path):
    folder = hf_copy("qwen3_vl", sharded=True).rename(tmp_path / "qwen3-vl-tiny")
    TokenSet(real_tokens[:2], (16, 16), None, {"source": "scikit-image photographs"}).save(tmp_path / "val.npz")
    args = [str(folder), "--data", str(tmp_path / "val.npz"), "--precision", "fp32", "--no-build",
            "--out", str(tmp_path / "out"), "--quiet"]
    assert main(args) == 0
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    names = ["qwen3-vl-tiny", "qwen3-vl-tiny.deepstack0", "qwen3-vl-tiny.deepstack1"]
    assert list(report["models"]) == names
    assert [report["models"][n]["arch"] for n in names] == ["patch_merger", "postshuffle_merger", "postshuffle_merger"]
    records = [r for r in report["records"] if r["precision"] == "fp32"]
    packed = [f"{n}.packed" for n in names]  # each Qwen merger also ships its packed form (an extra graph)
    assert {r["model"] for r in records} == set(names + packed)
    assert all(r["pass"] and r["rel_l2"] <= 1e-5 for r in records)
    meta = read_meta(tmp_path / "out" / "hf" / "qwen3-vl-tiny.deepstack1.pt")
    assert meta["folder"] == str(folder.resolve()) and meta["part"] == "deepstack1"

    assert main(args) == 0  # the conversion writes the same bytes again, so every stage is a cache hit
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert manifest["stages_run"] == [] and len(manifest["stages_skipped"]) == 3 * len(names) + 2 * len(packed)
