"""Every subcommand works on a zoo model of every command path, compressors included, given only the checkpoint and a
token file: `export`, `validate`, `calibrate` and `build` share the main job's route from a model to its feeds and
profiles. One model per path: a token model (the projectors and ovis_vet are fed the tokens as they are, by the base
`prepare_inputs`, so they take the same path; tests/zoo exports and validates each projector (test_zoo_fidelity.py),
calibrates it (test_zoo_quantized.py) and builds each architecture (test_zoo_engines.py)) and one checkpoint of each
compressor family (its own `prepare_inputs` makes the family's feeds: blocks, indices, latents, grid codes; the
siblings differ in widths)."""

import json

import pytest
from ntc_export.cli import main
from ntc_export.data.tokens import TokenSet, builtin_images, extract_tokens, split_indices
from ntc_export.models import load
from ntc_export.util.paths import ZOO_DIR

# Models that read the ViT's attention / keys beside the tokens (the reducers) need a token file made with
# `ntc-export tokens --attention`, and have no weights to calibrate: tests/reducers/test_zoo_reducers.py covers them.
ZOO_MODELS = {p.stem: load(p) for p in sorted(ZOO_DIR.glob("*.pt"))}
# Command path -> the model that takes it: "tokens" for the token models, else the compressor family.
PATHS = {"tokens": "mlp2x_gelu", "bc_autoencoder": "bcae_x16", "vq": "vq_x16", "hyperprior": "hp_x200",
         "ntc_grid": "ntc_bc5_x32"}
ZOO = sorted(PATHS.values())


def _path(model) -> str:
    return model.family if model.is_compressor else "tokens"


@pytest.fixture(scope="module")
def token_file(tmp_path_factory):
    """16 held-out digits as a token file from the real ViT (CLS row included, as `ntc-export tokens` writes)."""
    images, labels, _ = builtin_images("digits")
    idx = split_indices("digits", "val", len(images))[:16]
    tokens = extract_tokens([images[i] for i in idx], size=224, progress=False)
    path = tmp_path_factory.mktemp("tokens") / "digits16.npz"
    return TokenSet(tokens, (16, 16), labels[idx], {"source": "digits/val[:16]"}).save(path)


def _ok(*args) -> None:
    assert main([str(a) for a in args]) == 0, f"ntc-export {' '.join(map(str, args))} failed"


def test_zoo_is_complete():
    assert {"bcae_x16", "mlp2x_gelu"} <= set(ZOO_MODELS)
    assert {"bc_autoencoder", "vq", "hyperprior", "ntc_grid", "mlp2x_gelu"} <= {ZOO_MODELS[n].arch for n in ZOO}
    # Every command path of the zoo (reducers aside, see above) has its model here, and no path has two.
    paths = {_path(m) for m in ZOO_MODELS.values() if not getattr(m, "token_fields", ())}
    assert paths == set(PATHS) and all(_path(ZOO_MODELS[name]) == path for path, name in PATHS.items())


@pytest.mark.parametrize("name", ZOO)
def test_subcommands_on_zoo_model(name, token_file, tmp_path):
    model = ZOO_DIR / f"{name}.pt"
    _ok("export", model, "--out", tmp_path / "export")
    assert sorted(p.name for p in (tmp_path / "export").glob("*.onnx")) == ["model.fp16.onnx", "model.fp32.onnx"]

    _ok("validate", model, "--data", token_file, "--out", tmp_path / "validate")
    records = json.loads((tmp_path / "validate" / "validation.json").read_text())
    assert {r["precision"] for r in records} == {"fp32", "fp16"} and all(r["pass"] for r in records)

    _ok("calibrate", model, "--data", token_file, "--method", "minmax", "--out", tmp_path / "calibrate")
    assert (tmp_path / "calibrate" / "model.int8.onnx").is_file()

    _ok("build", model, "--target", "rtx-ampere", "--target", "jetson-orin", "--out", tmp_path / "build")
    manifest = json.loads((tmp_path / "build" / "engines" / "manifest.json").read_text())
    kinds = {(e["target"], e["kind"]) for e in manifest["engines"] if e["model"] == name}
    assert kinds == {("rtx-ampere", "engine"), ("jetson-orin", "bundle")}
    engine = next(e for e in manifest["engines"] if e["kind"] == "engine")
    assert set(engine["profiles"]) == {i["name"] for i in engine["inputs"] if -1 in i["shape"]}


def test_build_calibrates_a_checkpoint_for_int8_and_the_manifest_names_the_data(token_file, tmp_path):
    _ok("build", ZOO_DIR / "mlp2x_gelu.pt", "--target", "rtx-ampere", "--precision", "int8", "--calib-data", token_file,
        "--calib-method", "minmax", "--out", tmp_path)
    entries = json.loads((tmp_path / "engines" / "manifest.json").read_text())["engines"]
    assert [(e["target"], e["precision"]) for e in entries] == [("rtx-ampere", "int8")]
    assert entries[0]["calibration_data"] == str(token_file) and entries[0]["calibration_method"] == "minmax"
    assert len(entries[0]["calibration_sha256"]) == 64
    assert entries[0]["onnx"].endswith("model.int8.onnx")
