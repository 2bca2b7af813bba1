"""A Triton model repository from a build directory's engine manifest.

Per (model, precision): `config.pbtxt` (tensorrt_plan, one plan per built compute capability), `configs/cpu.pbtxt`
(the CPU twin: Python backend + ONNX Runtime on the plan's ONNX) and numbered version folders. Per compressor (every
family: BC blocks, VQ indices, int4/BC latent textures, range-coded hyperprior latents): a payload host step, a crop
step per decoder, and an ensemble payload -> tokens -> embeddings with each projector of the same precision. The
repository is written to a temp folder and renamed into place: never half-written.
"""

import json
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

from ..backend.trt.manifest import ManifestEntry, read_manifest
from ..util.atomic import write_json, write_text
from ..util.errors import NtcError
from ..util.hashing import sha256_file
from . import readme
from .configs import io_signature, plan_config, plan_filename, python_config
from .ensemble import EnsemblePlan, compressor_params, ensemble_models, graph_parts
from .pbtxt import to_pbtxt

INDEX = "repository.json"  # what was written: models, plans per target, ensembles, skipped pairs
CPU_CONFIG = "cpu"  # configs/cpu.pbtxt, chosen with tritonserver --model-config-name=cpu


@dataclass
class ServedModel:
    """One Triton plan model: a built model at one precision, with its engines (one per target)."""

    model: str
    precision: str
    entries: list[dict]
    signature: dict = field(default_factory=dict)

    @property
    def name(self) -> str:
        return f"{self.model}_{self.precision}"

    @property
    def input_names(self) -> list[str]:
        return [t["name"] for t in self.signature["input"]]


def _served_models(build_dir: Path) -> list[ServedModel]:
    """Engine entries of the manifest grouped by (model, precision); every target's engine has the same tensors."""
    entries = [e for e in read_manifest(build_dir)["engines"] if ManifestEntry.parse(e).is_engine]
    if not entries:
        raise NtcError(f"{build_dir}: no engines in engines/manifest.json (build some: ntc-export build MODEL "
                       "--target rtx-ampere --out DIR)")
    groups: dict[tuple[str, str], list[dict]] = {}
    for e in entries:
        groups.setdefault((e["model"], e["precision"]), []).append(e)
    served = []
    for (model, precision), group in sorted(groups.items()):
        signatures = {json.dumps(io_signature(e), sort_keys=True) for e in group}
        if len(signatures) != 1:
            raise NtcError(f"{model} {precision}: engines of different targets have different tensors or profiles; "
                           "rebuild them with the same --batch/--grid")
        served.append(ServedModel(model, precision, sorted(group, key=lambda e: e["sm"]), io_signature(group[0])))
    return served


def _link_or_copy(src: Path, dest: Path) -> None:
    dest.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(src, dest)  # engines are large: a hard link costs nothing where both sit on one file system
    except OSError:
        shutil.copy2(src, dest)


def _python_model_source(name: str) -> str:
    return resources.files("ntc_export.serving.python_backend").joinpath(name).read_text()


def _onnx_of(m: ServedModel) -> Path:
    """The ONNX the plans were built from (every RTX target lowers the same way; the first target's is taken)."""
    onnx = Path(m.entries[0]["onnx"])
    if not onnx.is_file():
        raise NtcError(f"{m.name}: its ONNX {onnx} is gone (the CPU twin runs it); rebuild the engines")
    import onnx as onnx_lib

    graph = onnx_lib.load(str(onnx), load_external_data=False).graph
    if any(t.data_location == onnx_lib.TensorProto.EXTERNAL for t in graph.initializer):
        raise NtcError(f"{onnx}: ONNX with external weights is not supported in a repository yet")
    return onnx


def _write_plan_model(m: ServedModel, build_dir: Path, folder: Path, version: int) -> dict:
    """config.pbtxt, configs/cpu.pbtxt and <version>/ (plans, model.onnx, model.py) of one served model."""
    vdir = folder / str(version)
    plans = {}
    for e in m.entries:
        plans[e["sm"]] = plan_filename(e["sm"])
        _link_or_copy(build_dir / "engines" / e["engine"], vdir / plans[e["sm"]])
    onnx = _onnx_of(m)
    _link_or_copy(onnx, vdir / "model.onnx")
    write_text(vdir / "model.py", _python_model_source("onnx_twin.py"))
    write_text(folder / "config.pbtxt", to_pbtxt(plan_config(m.name, m.signature, plans)))
    write_text(folder / "configs" / f"{CPU_CONFIG}.pbtxt", to_pbtxt(python_config(m.name, m.signature)))
    scales = m.entries[0].get("int8_interface")  # clients quantize / dequantize the int8 token streams with these
    return {"model": m.model, "precision": m.precision, "version": version, "onnx": str(onnx),
            **({"int8_interface": scales} if scales else {}),
            "onnx_sha256": sha256_file(onnx), "plugins": sorted({p["op"] for e in m.entries for p in e["plugins"]}),
            "plans": [{"target": e["target"], "sm": e["sm"], "file": plans[e["sm"]], "sha256": e["sha256"],
                       "backend": e["backend"], "backend_version": e["backend_version"]} for e in m.entries]}


def _write_unpack_model(name: str, params: dict, signature: dict, files: dict, folder: Path, version: int) -> dict:
    """config.pbtxt and <version>/ (model.py, and the checkpoint where the step decodes with the model's own code)."""
    write_text(folder / str(version) / "model.py", _python_model_source("payload_unpack.py"))
    for file, source in files.items():
        _link_or_copy(Path(source), folder / str(version) / file)
    write_text(folder / "config.pbtxt", to_pbtxt(python_config(name, signature, params)))
    return {"host_step": "payload_unpack", "version": version, **params,
            "outputs": [t["name"] for t in signature["output"]],
            **({"files": {f: sha256_file(Path(src)) for f, src in files.items()}} if files else {})}


def _write_grid_model(name: str, params: dict, signature: dict, folder: Path, version: int) -> dict:
    write_text(folder / str(version) / "model.py", _python_model_source("tokens_to_grid.py"))
    write_text(folder / "config.pbtxt", to_pbtxt(python_config(name, signature, params)))
    return {"host_step": "tokens_to_grid", "version": version, **params}


def _write_ensemble(plan: EnsemblePlan, folder: Path, version: int) -> dict:
    (folder / str(version)).mkdir(parents=True, exist_ok=True)  # an ensemble's version folder stays empty
    write_text(folder / "config.pbtxt", to_pbtxt(plan.config))
    return {"ensemble": plan.steps, "version": version}


def _next_version(previous: dict, name: str) -> int:
    """One above the version this model had in the repository being replaced (1 for a new model)."""
    return int(previous.get("models", {}).get(name, {}).get("version", 0)) + 1


def _carry_versions(old_repo: Path, new_repo: Path, names) -> None:
    """Earlier numbered versions of each model stay servable (Triton's version_policy picks among them)."""
    for name in names:
        for vdir in sorted(p for p in (old_repo / name).glob("*") if p.is_dir() and p.name.isdigit()):
            for f in (p for p in vdir.rglob("*") if p.is_file()):
                _link_or_copy(f, new_repo / name / vdir.relative_to(old_repo / name) / f.relative_to(vdir))


def write_repository(build_dir, out, checkpoints: dict[str, Path] | None = None, plugin_lib: str | None = None
                     ) -> dict:
    """Write the repository for every engine in `build_dir` to `out`; returns its index (also OUT/repository.json).

    `checkpoints`: model name -> checkpoint, for compressors (their payload step checks the model fingerprint);
    by default the build's report.json models and the zoo are searched. `plugin_lib`: the path the launch line gives
    Triton's TensorRT backend (libntc_trt_plugins.so) when the engines hold ntc:: plugin layers."""
    build_dir, out = Path(build_dir).resolve(), Path(out).resolve()
    served = _served_models(build_dir)
    previous = json.loads((out / INDEX).read_text()) if (out / INDEX).is_file() else {}
    if out.exists() and not (out / INDEX).is_file() and any(out.iterdir()):
        raise NtcError(f"{out} exists and is not a repository written by ntc-export triton; choose another --out")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        index = {"build_dir": str(build_dir), "models": {}, "skipped": []}
        for m in served:
            index["models"][m.name] = _write_plan_model(m, build_dir, tmp / m.name, _next_version(previous, m.name))
        unpack, grid_steps, ensembles, skipped = ensemble_models(
            served, compressor_params(served, build_dir, checkpoints), graph_parts(served, build_dir))
        for name, (params, signature, files) in unpack.items():
            index["models"][name] = _write_unpack_model(name, params, signature, files, tmp / name,
                                                        _next_version(previous, name))
        for name, (params, signature) in grid_steps.items():
            index["models"][name] = _write_grid_model(name, params, signature, tmp / name,
                                                      _next_version(previous, name))
        for plan in ensembles:
            index["models"][plan.name] = _write_ensemble(plan, tmp / plan.name, _next_version(previous, plan.name))
        index["skipped"] = skipped
        index["plugin_lib"] = plugin_lib
        if out.exists():
            _carry_versions(out, tmp, index["models"])
        write_text(tmp / "README.md", readme.render(index, out))
        write_json(tmp / INDEX, index)
        _swap_in(tmp, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return index


def _swap_in(tmp: Path, out: Path) -> None:
    """Replace `out` by the finished `tmp` with renames (the old repository is removed only after)."""
    old = None
    if out.exists():
        old = out.parent / f".{out.name}.old.{os.getpid()}"
        os.replace(out, old)
    os.replace(tmp, out)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
