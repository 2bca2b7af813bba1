"""Ensembles from payload to LLM embeddings: payload (UINT8) -> payload_unpack (Python, host: the compressor family's
unpacking or entropy decoding) -> compressor decoder (plan) -> crop to the payload's grid (Python, host) -> tokens ->
projector (plan) -> embeddings, one per compressor x projector built at the same precision.

A served model is a compressor's decoder when its checkpoint (given, named in the build's report.json, or the zoo's)
or its report.json entry says its architecture is a compressor; a model named `<model>.<part>` is a graph shipped
beside `<model>` (a VQ encoder, a hyper-synthesis) and chains into no ensemble; a projector is any other model taking
"tokens" and returning "tokens_out"."""

import json
from dataclasses import dataclass
from pathlib import Path

from ..util.errors import NtcError
from .configs import ensemble_config
from .payload_layout import step_params

PAYLOAD = "payload"
GRID = {"name": "grid", "data_type": "int32", "dims": [2]}  # a payload's token grid (h, w)
# The crop step's outputs: the ensemble's "tokens", and a copy only the projector reads (python_backend/tokens_to_grid)
CROPPED, PROJECTOR_IN = "tokens", "projector_tokens"


@dataclass
class EnsemblePlan:
    name: str
    steps: list[str]
    config: dict


def _report_models(build_dir: Path) -> dict:
    report = build_dir / "report.json"
    return json.loads(report.read_text()).get("models", {}) if report.is_file() else {}


def _checkpoint_for(model: str, build_dir: Path, report: dict, checkpoints: dict) -> Path | None:
    """The checkpoint of a built model: given, or as report.json names it (relative to the build directory, by name
    in the working directory or the zoo, matched by sha256: evaluate.measure.checkpoint)."""
    from ..evaluate.measure import checkpoint

    if model in checkpoints:
        return Path(checkpoints[model])
    try:
        return checkpoint(build_dir, model, report.get(model))
    except NtcError:
        return None


def graph_parts(served, build_dir: Path) -> set[str]:
    """Models that are a graph shipped beside another (`<model>.<part>`, the main job's extra graphs)."""
    names = {m.model for m in served} | set(_report_models(build_dir))
    return {m.model for m in served if m.model.rpartition(".")[0] in names}


def compressor_params(served, build_dir: Path, checkpoints: dict | None) -> dict[str, tuple[dict, dict] | str]:
    """Compressor model -> (its payload step's parameters, files that step needs), or why it cannot be served."""
    from ..models import ARCHS, load, read_arch

    report, checkpoints = _report_models(build_dir), checkpoints or {}
    parts, out = graph_parts(served, build_dir), {}
    for model in sorted({m.model for m in served} - parts):
        path = _checkpoint_for(model, build_dir, report, checkpoints)
        arch = report.get(model, {}).get("arch") or (read_arch(path) if path else None)
        if arch is None:
            continue  # no checkpoint and no report: served as engines only (a compressor needs --checkpoint)
        if not getattr(ARCHS.get(arch), "is_compressor", False):
            continue
        if path is None:
            out[model] = f"{model}: no checkpoint found for its payload fingerprint (pass --checkpoint)"
            continue
        module = load(path)
        if not module.is_compressor:
            raise NtcError(f"{path} ({module.arch}) is not a token compressor, but {model} was built as {arch}")
        try:
            out[model] = step_params(module, path)
        except NtcError as e:
            out[model] = f"{model}: {e}"
    return out


def _unpack_signature(decoder) -> dict:
    """payload -> the decoder's inputs (same names, types, dims) + the payload's grid."""
    return {"max_batch_size": decoder.signature["max_batch_size"],
            "input": [{"name": PAYLOAD, "data_type": "uint8", "dims": [-1]}],
            "output": [dict(t) for t in decoder.signature["input"]] + [GRID]}


def _grid_signature(decoder) -> dict:
    """The crop step after a decoder: its tokens of the padded grid + the payload's grid -> tokens [h, w, D]."""
    tokens = _tensor(decoder.signature, "output", "tokens_out")
    cropped = {"data_type": tokens["data_type"], "dims": [-1, -1, tokens["dims"][-1]]}
    return {"max_batch_size": decoder.signature["max_batch_size"],
            "input": [{**tokens, "name": "padded_tokens"}, GRID],
            "output": [{**cropped, "name": CROPPED}, {**cropped, "name": PROJECTOR_IN}]}


def _tensor(signature: dict, kind: str, name: str) -> dict:
    return next(t for t in signature[kind] if t["name"] == name)


def _ensemble(decoder, projector, unpack_name: str, grid_name: str) -> EnsemblePlan | str:
    """The ensemble of one decoder and one projector, or why they do not chain."""
    tokens = _tensor(_grid_signature(decoder), "output", CROPPED)
    wanted = _tensor(projector.signature, "input", "tokens")
    if tokens["data_type"] != wanted["data_type"] or len(tokens["dims"]) != len(wanted["dims"]) or \
            tokens["dims"][-1] != wanted["dims"][-1]:
        return (f"{decoder.name} -> {projector.name}: tokens {tokens['data_type']} {tokens['dims']} do not match "
                f"{wanted['data_type']} {wanted['dims']}")
    embeddings = _tensor(projector.signature, "output", "tokens_out")
    name = f"{decoder.model}_{projector.model}_{decoder.precision}"
    inputs = {n: n for n in decoder.input_names}  # ensemble tensors named as the decoder's inputs
    steps = [{"model": unpack_name, "input_map": {PAYLOAD: PAYLOAD}, "output_map": {**inputs, "grid": "grid"}},
             {"model": decoder.name, "input_map": inputs, "output_map": {"tokens_out": "padded"}},
             {"model": grid_name, "input_map": {"padded_tokens": "padded", "grid": "grid"},
              "output_map": {CROPPED: CROPPED, PROJECTOR_IN: PROJECTOR_IN}},
             {"model": projector.name, "input_map": {"tokens": PROJECTOR_IN},
              "output_map": {"tokens_out": "embeddings"}}]
    max_batch = min(decoder.signature["max_batch_size"], projector.signature["max_batch_size"])
    config = ensemble_config(name, max_batch, steps, [{"name": PAYLOAD, "data_type": "uint8", "dims": [-1]}],
                             [{**tokens, "name": CROPPED}, {**embeddings, "name": "embeddings"}])
    return EnsemblePlan(name, [s["model"] for s in steps], config)


def is_projector(m, parts: set[str], compressors) -> bool:
    """Takes tokens, returns tokens_out, and is neither a compressor nor a graph shipped beside another model."""
    outputs = [t["name"] for t in m.signature["output"]]
    return m.input_names == ["tokens"] and "tokens_out" in outputs and m.model not in parts and \
        m.model not in compressors


def ensemble_models(served, params: dict, parts: set[str] = frozenset()
                    ) -> tuple[dict, dict, list[EnsemblePlan], list[str]]:
    """(payload steps {name: (params, signature, files)}, crop steps {name: (params, signature)}, ensembles, skipped
    pairs with reasons); `params` from compressor_params, `parts` from graph_parts."""
    unpack, grid_steps, ensembles, skipped = {}, {}, [], []
    decoders = [m for m in served if m.model in params]
    projectors = [m for m in served if is_projector(m, parts, params)]
    for decoder in decoders:
        p = params[decoder.model]
        if isinstance(p, str):
            skipped.append(p)
            continue
        step, files = p
        signature = _unpack_signature(decoder)
        unpack_name, grid_name = f"{decoder.model}_unpack", f"{decoder.name}_grid"
        if unpack.get(unpack_name, (None, signature))[1] != signature:
            unpack_name = f"{decoder.name}_unpack"  # this precision's decoder takes other types (fp16 latents)
        for projector in (x for x in projectors if x.precision == decoder.precision):
            plan = _ensemble(decoder, projector, unpack_name, grid_name)
            if isinstance(plan, str):
                skipped.append(plan)
                continue
            ensembles.append(plan)
            # One payload step per compressor, shared by its precisions where their decoders take the same tensors.
            unpack.setdefault(unpack_name, (step, signature, files))
            grid_steps.setdefault(grid_name, ({"unit": step["unit"]}, _grid_signature(decoder)))
    return unpack, grid_steps, ensembles, skipped
