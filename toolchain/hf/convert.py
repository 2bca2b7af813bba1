"""Convert a Hugging Face VLM checkpoint folder's projector(s) into our registered models, checked key by key and
shape by shape before anything is written."""

from dataclasses import dataclass
from pathlib import Path

import torch

from ..models import build, save
from ..models.base import TokenModel
from ..util.errors import NtcError
from .families import Family, Part, family_for, hf_key
from .files import file_hashes, read_config, read_tensors, tensor_files

SOURCE = "huggingface"


@dataclass
class Converted:
    """One converted projector: `name` is "" for the main one, e.g. "deepstack0" for extras."""

    name: str
    module: TokenModel
    meta: dict


@dataclass
class _Plan:
    part: Part
    prefix: str
    keys: dict[str, str]  # our state-dict key -> checkpoint tensor name (present in the checkpoint)


def is_hf_folder(path) -> bool:
    return Path(path).is_dir() and (Path(path) / "config.json").is_file()


def _key_names(part: Part) -> list[str]:
    """Our state-dict keys for `part` (names do not depend on dims, so a tiny instance lists them)."""
    return list(build(part.arch, {**part.fixed, "input_dim": 4, "output_dim": 4}).state_dict())


def _plan(folder: Path, family: Family, part: Part, names) -> _Plan:
    """Where `part` lives (the first layout prefix with tensors), and the checkpoint name of each of our keys."""
    prefix = next((p for p in part.prefixes if any(n.startswith(p) for n in names)), None)
    what = f"{family.label} projector{f' {part.name}' if part.name else ''}"
    if prefix is None:
        raise NtcError(f"{folder}: no {what} tensors (looked for {', '.join(p + '*' for p in part.prefixes)})")
    wanted = {ours: hf_key(part, prefix, ours) for ours in _key_names(part)}
    optional = {ours for ours in wanted if part.zero_bias and ours.endswith(".bias")}
    missing = [hf for ours, hf in wanted.items() if hf not in names and ours not in optional]
    if missing:
        raise NtcError(f"{folder}: {what} tensors missing: {', '.join(missing[:4])}")
    extra = sorted(n for n in names if n.startswith(prefix) and n not in wanted.values())
    if extra:
        raise NtcError(f"{folder}: unexpected {what} tensors {', '.join(extra[:4])} (a different projector layout)")
    return _Plan(part, prefix, {ours: hf for ours, hf in wanted.items() if hf in names})


def _dims(folder: Path, plan: _Plan, tensors) -> dict[str, int]:
    """Arch dims from tensor shapes, each checked against the dim config.json states."""
    dims = {}
    for dim, (ours, axis, div) in plan.part.dims.items():
        name = plan.keys[ours]
        shape = list(tensors[name].shape)
        if len(shape) <= axis or shape[axis] % div:
            raise NtcError(f"{folder}: {name} has shape {shape}, not a {plan.part.arch} {dim.replace('_', ' ')}")
        dims[dim] = shape[axis] // div
        stated = plan.part.stated.get(dim)
        if stated is not None and stated != dims[dim]:
            raise NtcError(f"{folder}: {name} has shape {shape}, but config.json states {dim.replace('_', ' ')} "
                           f"{stated}")
    return dims


def _module(folder: Path, plan: _Plan, tensors) -> TokenModel:
    """Our module with the checkpoint's weights (float32), every tensor's shape and dtype checked first."""
    dims = _dims(folder, plan, tensors)
    module = build(plan.part.arch, {**plan.part.fixed, **dims})
    state = {}
    for ours, like in module.state_dict().items():
        if ours not in plan.keys:  # a bias config.json says the checkpoint's Linear has not: zero is that function
            state[ours] = torch.zeros_like(like)
            continue
        name, src = plan.keys[ours], tensors[plan.keys[ours]]
        if list(src.shape) != list(like.shape):
            raise NtcError(f"{folder}: {name} has shape {list(src.shape)}, expected {list(like.shape)} "
                           f"({plan.part.arch} with {dims})")
        if not src.is_floating_point():
            raise NtcError(f"{folder}: {name} is {src.dtype} (quantized checkpoints are not supported)")
        state[ours] = src.to(torch.float32)
    module.load_state_dict(state, strict=True)
    return module.eval()


def convert(folder) -> list[Converted]:
    """Every projector of the checkpoint at `folder` as our model, main one first; reads only their tensors."""
    folder = Path(folder)
    if not folder.is_dir():
        raise NtcError(f"{folder}: not a folder (a Hugging Face checkpoint is config.json + *.safetensors)")
    config = read_config(folder)
    try:
        family = family_for(config.get("model_type"))
        parts = family.parts(config)
    except NtcError as e:
        raise NtcError(f"{folder}: {e}") from None
    where = tensor_files(folder)
    plans = [_plan(folder, family, part, where) for part in parts]
    tensors = read_tensors(folder, where, [n for plan in plans for n in plan.keys.values()])
    modules = [_module(folder, plan, tensors) for plan in plans]
    hashes = file_hashes(folder, [where[n] for n in tensors])
    return [Converted(plan.part.name, module, {
        "source": SOURCE, "folder": str(folder.resolve()), "model_type": config["model_type"],
        "family": family.label, "part": plan.part.name or "main", "input_order": family.input_order,
        "tensors": dict(plan.keys), "dtype": str(tensors[next(iter(plan.keys.values()))].dtype).removeprefix("torch."),
        "files_sha256": hashes}) for plan, module in zip(plans, modules)]


def output_path(out: Path, name: str) -> Path:
    """The main projector goes to `out`; an extra one `name` beside it as OUT_STEM.name.pt."""
    return out if not name else out.with_name(f"{out.stem}.{name}{out.suffix or '.pt'}")


def write(converted: list[Converted], out) -> list[Path]:
    """Save each converted projector (atomic writes) and return the paths, main one first."""
    paths = [output_path(Path(out), c.name) for c in converted]
    for c, path in zip(converted, paths):
        save(c.module, path, meta=c.meta)
    return paths


def main_job_checkpoints(path, out_dir) -> list[Path]:
    """What the main job loads for MODEL: a checkpoint file as is; a Hugging Face folder converted into
    OUT/hf/FOLDER_NAME.pt (and its extra projectors beside it)."""
    path = Path(path)
    if not path.is_dir():
        return [path]
    return write(convert(path), Path(out_dir) / "hf" / f"{path.resolve().name}.pt")
