"""The Triton repository written from a build: every config (GPU and CPU variants) parses with Triton's own
model_config_pb2; plan configs name one plan per built target and their dims match the engines' profiles; the demo's
models (fp16, default RTX targets) get the same; bad build folders are one-line errors."""

import json
from pathlib import Path

import pytest
from ntc_export.backend.trt.targets import DEFAULT_TARGETS, get_target
from ntc_export.models import load
from ntc_export.util.errors import NtcError
from ntc_export.util.hashing import sha256_file
from ntc_export.util.paths import ZOO_DIR

model_config_pb2 = pytest.importorskip("tritonclient.grpc.model_config_pb2", reason="tritonclient is not installed")
from google.protobuf import text_format  # noqa: E402

COMPRESSOR, PROJECTOR = "bcae_x16", "mlp2x_gelu"  # what conftest builds
FAMILIES = {"vq": "vq_x16", "hyperprior": "hp_x16", "ntc_grid": "ntc_x16"}  # ... and one compressor per other family
COMPRESSORS = (COMPRESSOR, *FAMILIES.values())
DEMO_TARGETS = tuple(t for t in DEFAULT_TARGETS if get_target(t).backend == "tensorrt_rtx")
# One zoo model per distinct engine signature, which is all a config is written from (the other checkpoints repeat
# one of them): a token model, twice so ensembles are a product (every projector has mlp2x_gelu's tensors); the
# BC-block decoder with its plugins (vq, hp: one dynamic int32 / fp16 input, alike); a decoder of two int32 inputs
# (ntc_x16 alike); a reducer with three inputs and an int64 output (tome: fewer).
DEMO_MODELS = ("bcae_x16", "mlp2x_gelu", "ntc_bc5_x32", "ovis_vet_512", "visionzip_16")


def parse(path: Path):
    return text_format.Parse(path.read_text(), model_config_pb2.ModelConfig())


def manifest(build: Path) -> list[dict]:
    return json.loads((build / "engines" / "manifest.json").read_text())["engines"]


def check_plan_configs(build: Path, repo: Path) -> int:
    """Each engine group's config.pbtxt against the manifest: plans per target, dims from the profiles."""
    groups: dict[str, list[dict]] = {}
    for e in (e for e in manifest(build) if e.get("kind", "engine") == "engine"):
        groups.setdefault(f"{e['model']}_{e['precision']}", []).append(e)
    for name, entries in groups.items():
        config = parse(repo / name / "config.pbtxt")
        assert config.name == name and config.platform == "tensorrt_plan"
        plans = dict(config.cc_model_filenames)
        assert sorted(plans) == sorted(f"{e['sm'] // 10}.{e['sm'] % 10}" for e in entries)
        assert len(set(plans.values())) == len(entries)  # one plan per built target
        version = repo / name / "1"
        for e in entries:
            plan = version / plans[f"{e['sm'] // 10}.{e['sm'] % 10}"]
            assert plan.read_bytes() == (build / "engines" / e["engine"]).read_bytes()
        assert config.default_model_filename in plans.values()
        profiles = entries[0]["profiles"]
        assert config.max_batch_size == max(p[2][0] for p in profiles.values())
        for tensor in config.input:
            lo, _, hi = profiles[tensor.name]
            assert list(tensor.dims) == [b if a == b else -1 for a, b in zip(lo[1:], hi[1:])], tensor.name
        engine_outputs = {t["name"]: t for t in entries[0]["outputs"]}
        assert [t.name for t in config.output] == list(engine_outputs)
        for tensor in config.output:
            assert list(tensor.dims) == engine_outputs[tensor.name]["shape"][1:]
        assert config.dynamic_batching.max_queue_delay_microseconds > 0
        assert [(g.kind, list(g.profile)) for g in config.instance_group] == [(model_config_pb2.ModelInstanceGroup.KIND_GPU, ["0"])]
    return len(groups)


def test_every_config_parses(served_repo):
    repo, index = served_repo
    configs = sorted(repo.glob("*/config.pbtxt")) + sorted(repo.glob("*/configs/*.pbtxt"))
    # plan models with CPU twins, and per compressor its payload step, its grid step and its ensemble
    assert len(configs) == 2 * (len(COMPRESSORS) + 1) + 3 * len(COMPRESSORS)
    for path in configs:
        config = parse(path)
        assert config.name == path.parts[len(repo.parts)]
    assert set(index["models"]) == {f"{PROJECTOR}_fp32", *(f"{c}{suffix}" for c in COMPRESSORS for suffix in (
        "_fp32", "_unpack", "_fp32_grid", f"_{PROJECTOR}_fp32"))}
    assert not index["skipped"]


def test_plan_configs_match_the_engines(served_build, served_repo):
    repo, _ = served_repo
    assert check_plan_configs(served_build, repo) == len(COMPRESSORS) + 1


def test_cpu_twins_mirror_the_plan_configs(served_repo):
    repo, _ = served_repo
    for name in (f"{COMPRESSOR}_fp32", f"{PROJECTOR}_fp32"):
        gpu, cpu = parse(repo / name / "config.pbtxt"), parse(repo / name / "configs" / "cpu.pbtxt")
        assert cpu.backend == "python" and cpu.instance_group[0].kind == model_config_pb2.ModelInstanceGroup.KIND_CPU
        assert (cpu.input, cpu.output, cpu.max_batch_size) == (gpu.input, gpu.output, gpu.max_batch_size)
        assert (repo / name / "1" / "model.onnx").is_file() and (repo / name / "1" / "model.py").is_file()


def test_ensemble_chains_payload_to_embeddings(served_repo):
    repo, _ = served_repo
    config = parse(repo / f"{COMPRESSOR}_{PROJECTOR}_fp32" / "config.pbtxt")
    assert config.platform == "ensemble"
    assert [s.model_name for s in config.ensemble_scheduling.step] == [
        f"{COMPRESSOR}_unpack", f"{COMPRESSOR}_fp32", f"{COMPRESSOR}_fp32_grid", f"{PROJECTOR}_fp32"]
    assert [t.name for t in config.input] == ["payload"] and [t.name for t in config.output] == ["tokens", "embeddings"]
    unpack = parse(repo / f"{COMPRESSOR}_unpack" / "config.pbtxt")
    assert unpack.parameters["fingerprint"].string_value and unpack.backend == "python"


@pytest.mark.parametrize("compressor", COMPRESSORS)
def test_payload_steps_return_what_each_decoder_takes(served_repo, compressor):
    """Every family's payload step: the decoder's inputs (names, types, dims) + the grid, the checkpoint's family
    and fingerprint; the range-decoding step carries the checkpoint itself."""
    repo, index = served_repo
    module = load(ZOO_DIR / f"{compressor}.pt")
    unpack = parse(repo / f"{compressor}_unpack" / "config.pbtxt")
    decoder = parse(repo / f"{compressor}_fp32" / "config.pbtxt")
    assert [(t.name, t.data_type, list(t.dims)) for t in unpack.output] == \
        [(t.name, t.data_type, list(t.dims)) for t in decoder.input] + [("grid", model_config_pb2.TYPE_INT32, [2])]
    assert [t.name for t in decoder.input] == module.input_names
    assert unpack.parameters["family"].string_value == module.family
    assert unpack.parameters["fingerprint"].string_value == module.fingerprint().hex()
    weights = repo / f"{compressor}_unpack" / "1" / "model.pt"
    assert weights.is_file() == (module.family == "hyperprior")
    if weights.is_file():
        assert weights.read_bytes() == (ZOO_DIR / f"{compressor}.pt").read_bytes()
        assert index["models"][f"{compressor}_unpack"]["files"]["model.pt"] == sha256_file(weights)
    steps = parse(repo / f"{compressor}_{PROJECTOR}_fp32" / "config.pbtxt").ensemble_scheduling.step
    assert dict(steps[1].input_map) == {n: n for n in module.input_names}  # unpack's outputs feed the decoder
    # no ensemble output is read by a later step (2.51 would prune the steps behind it when a request leaves it out)
    read = {tensor for step in steps for tensor in step.input_map.values()}
    outputs = {t.name for t in parse(repo / f"{compressor}_{PROJECTOR}_fp32" / "config.pbtxt").output}
    assert outputs == {"tokens", "embeddings"} and not read & outputs


def test_readme_has_both_launch_lines(served_repo):
    repo, _ = served_repo
    text = (repo / "README.md").read_text()
    assert f"python -m ntc_export.serving.tritonserver {repo}" in text
    assert "tritonserver --model-repository=/models --backend-config=tensorrt,plugins=" in text


def test_rewrite_numbers_a_new_version_and_keeps_the_old(served_build, tmp_path):
    from ntc_export.serving.repository import write_repository

    repo = tmp_path / "repo"
    write_repository(served_build, repo)
    index = write_repository(served_build, repo)
    assert index["models"][f"{PROJECTOR}_fp32"]["version"] == 2
    assert (repo / f"{PROJECTOR}_fp32" / "1" / "model.onnx").is_file()
    assert (repo / f"{PROJECTOR}_fp32" / "2" / "model.onnx").is_file()
    assert not list(tmp_path.glob(".repo.*"))  # no temp folder left behind


def test_bad_build_folders_are_one_line_errors(tmp_path):
    from ntc_export.serving.repository import write_repository

    with pytest.raises(NtcError, match="no engines in engines/manifest.json"):
        write_repository(tmp_path, tmp_path / "repo")
    (tmp_path / "engines").mkdir()
    (tmp_path / "engines" / "manifest.json").write_text("{not json")
    with pytest.raises(NtcError, match="corrupt manifest"):
        write_repository(tmp_path, tmp_path / "repo")
    assert not (tmp_path / "repo").exists()


@pytest.fixture(scope="module")
def demo_build(tmp_path_factory):
    """The demo's engines: DEMO_MODELS at fp16 for the default RTX targets (two local build workers)."""
    from ntc_export.cli import main

    out = tmp_path_factory.mktemp("demo_build")
    for name in DEMO_MODELS:
        args = ["build", str(ZOO_DIR / f"{name}.pt"), "--precision", "fp16", "--out", str(out), "--jobs", "2",
                "--json", *[a for t in DEMO_TARGETS for a in ("--target", t)]]
        assert main(args) == 0
    return out


def test_demo_models_gpu_configs(demo_build, tmp_path):
    """Every plan config against its engines, one plan per default RTX target (every SM's cc key), one ensemble per
    BC-block decoder x token model and none for the other families and the reducers, every config parsing."""
    from ntc_export.serving.repository import write_repository

    index = write_repository(demo_build, tmp_path / "repo")
    zoo = sorted(DEMO_MODELS)
    assert check_plan_configs(demo_build, tmp_path / "repo") == len(zoo)
    for name in zoo:
        assert [p["target"] for p in index["models"][f"{name}_fp16"]["plans"]] == list(DEMO_TARGETS)
    ensembles = [n for n, m in index["models"].items() if "ensemble" in m]
    # payload -> decoder -> projector chains exist for every compressor (BC blocks, BC5 latent textures)
    compressors = [n for n in zoo if load(ZOO_DIR / f"{n}.pt").is_compressor]
    assert len(compressors) == 2
    # token -> embedding models (projectors, ovis_vet); the reducers also take the ViT's attention / keys
    projectors = [n for n in zoo if (m := load(ZOO_DIR / f"{n}.pt")).input_names == ["tokens"] and not m.is_compressor]
    assert len(ensembles) == len(compressors) * len(projectors)
    for path in (tmp_path / "repo").glob("*/config*.pbtxt"):
        parse(path)
    for path in (tmp_path / "repo").glob("*/configs/*.pbtxt"):
        parse(path)


def test_triton_command(served_build, tmp_path, capsys):
    from ntc_export.cli import main

    assert main(["triton", str(served_build), "--out", str(tmp_path / "repo")]) == 0
    out = capsys.readouterr().out
    assert f"{PROJECTOR}_fp32 (version 1): rtx-ampere, rtx-ada" in out
    assert f"{COMPRESSOR}_{PROJECTOR}_fp32 (version 1): {COMPRESSOR}_unpack -> {COMPRESSOR}_fp32 -> " in out
    (tmp_path / "empty").mkdir()
    assert main(["triton", str(tmp_path / "empty"), "--out", str(tmp_path / "repo2")]) == 2
    assert "no engines in engines/manifest.json" in capsys.readouterr().err


def test_int8_token_interface_is_served_with_its_scales(tmp_path):
    """A reducer's int8 plan: int8 token tensors in the config, the scales in repository.json and the README."""
    pytest.importorskip("tensorrt_rtx_bindings")
    import numpy as np
    from ntc_export.backend.onnx.export import export_model
    from ntc_export.backend.trt.build import build_engine
    from ntc_export.calibration.interface import calibrate_interface
    from ntc_export.serving.repository import write_repository

    module = load(ZOO_DIR / "visionzip_16.pt").eval()
    fp32 = export_model(module, tmp_path / "onnx", ("fp32",))["fp32"]
    rng = np.random.default_rng(0)
    feeds = {"tokens": rng.normal(size=(16, 16, 16, 384)).astype(np.float32),  # every input on the 16x16 grid
             "attention": rng.random((16, 6, 16, 16)).astype(np.float32),
             "keys": rng.normal(size=(16, 16, 16, 384)).astype(np.float32)}
    scales = {k: v["scale"] for k, v in calibrate_interface(fp32, feeds, module.int8_streams,
                                                            tmp_path / "onnx")["scales"].items()}
    build_engine(tmp_path / "onnx" / "model.int8.onnx", "rtx-ada", "int8", tmp_path / "build",
                 profiles=module.input_profiles((1, 1, 2), (16, 16, 16)), name="visionzip_16")
    index = write_repository(tmp_path / "build", tmp_path / "repo")
    assert index["models"]["visionzip_16_int8"]["int8_interface"] == pytest.approx(scales)
    config = parse(tmp_path / "repo" / "visionzip_16_int8" / "config.pbtxt")
    types = {t.name: model_config_pb2.DataType.Name(t.data_type) for t in [*config.input, *config.output]}
    assert types["tokens"] == types["tokens_out"] == "TYPE_INT8" and types["attention"] == "TYPE_FP16"
    assert f"`tokens_out` scale {scales['tokens_out']:.6g}" in (tmp_path / "repo" / "README.md").read_text()
