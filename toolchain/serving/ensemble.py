"""Ensembles from payload to LLM embeddings: payload (UINT8) -> payload_unpack (Python, host) -> compressor decoder
(plan) -> tokens -> projector (plan) -> embeddings, one per compressor x projector built at the same precision."""

import json
from dataclasses import dataclass
from pathlib import Path

from ..util.errors import NtcError
from ..util.paths import ZOO_DIR
from .configs import ensemble_config

PAYLOAD = "payload"


@dataclass
class EnsemblePlan:
    name: str
    steps: list[str]
    config: dict


def _is_decoder(m) -> bool:
    """A compressor decoder takes BC blocks (INT32 [B, planes, by, bx, W]); a projector takes tokens."""
    return m.input_names == ["blocks"]


def _checkpoint_for(model: str, build_dir: Path, checkpoints: dict) -> Path | None:
    """The checkpoint of a built model: given, named in the build's report.json, or a zoo file of that name."""
    if model in checkpoints:
        return Path(checkpoints[model])
    report = build_dir / "report.json"
    if report.is_file():
        path = json.loads(report.read_text()).get("models", {}).get(model, {}).get("path")
        if path and Path(path).is_file():
            return Path(path)
    zoo = ZOO_DIR / f"{model}.pt"
    return zoo if zoo.is_file() else None


def compressor_params(served, build_dir: Path, checkpoints: dict | None) -> dict[str, dict | str]:
    """model -> the payload step's parameters (family, fingerprint, block layout), or why they are unknown."""
    from ..models import load

    params = {}
    for model in sorted({m.model for m in served if _is_decoder(m)}):
        path = _checkpoint_for(model, build_dir, checkpoints or {})
        if path is None:
            params[model] = f"{model}: no checkpoint found for its payload fingerprint (pass --checkpoint)"
            continue
        module = load(path)
        if not module.is_compressor:
            raise NtcError(f"{path} ({module.arch}) is not a token compressor, but {model}'s engines take BC blocks")
        from ..models.bc_autoencoder import WORDS

        params[model] = {"family": module.family, "fingerprint": module.fingerprint().hex(),
                         "planes": module.planes, "words": WORDS[module.bc_format], "unit": 4 * module.merge,
                         "checkpoint": str(path)}
    return params


GRID = {"name": "grid", "data_type": "int32", "dims": [2]}  # a payload's token grid (h, w)


def _unpack_signature(decoder) -> dict:
    blocks = decoder.signature["input"][0]
    return {"max_batch_size": decoder.signature["max_batch_size"],
            "input": [{"name": PAYLOAD, "data_type": "uint8", "dims": [-1]}],
            "output": [{"name": "blocks", "data_type": blocks["data_type"], "dims": blocks["dims"]}, GRID]}


def _grid_signature(decoder) -> dict:
    """The crop step after a decoder: its tokens of the padded grid + the payload's grid -> tokens [h, w, D]."""
    tokens = _tensor(decoder.signature, "output", "tokens_out")
    return {"max_batch_size": decoder.signature["max_batch_size"],
            "input": [{**tokens, "name": "padded_tokens"}, GRID],
            "output": [{"name": "tokens", "data_type": tokens["data_type"], "dims": [-1, -1, tokens["dims"][-1]]}]}


def _tensor(signature: dict, kind: str, name: str) -> dict:
    return next(t for t in signature[kind] if t["name"] == name)


def _ensemble(decoder, projector, unpack_name: str, grid_name: str) -> EnsemblePlan | str:
    """The ensemble of one decoder and one projector, or why they do not chain."""
    tokens = _tensor(_grid_signature(decoder), "output", "tokens")
    wanted = _tensor(projector.signature, "input", "tokens")
    if tokens["data_type"] != wanted["data_type"] or len(tokens["dims"]) != len(wanted["dims"]) or \
            tokens["dims"][-1] != wanted["dims"][-1]:
        return (f"{decoder.name} -> {projector.name}: tokens {tokens['data_type']} {tokens['dims']} do not match "
                f"{wanted['data_type']} {wanted['dims']}")
    embeddings = _tensor(projector.signature, "output", "tokens_out")
    name = f"{decoder.model}_{projector.model}_{decoder.precision}"
    steps = [{"model": unpack_name, "input_map": {PAYLOAD: PAYLOAD},
              "output_map": {"blocks": "blocks", "grid": "grid"}},
             {"model": decoder.name, "input_map": {"blocks": "blocks"}, "output_map": {"tokens_out": "padded"}},
             {"model": grid_name, "input_map": {"padded_tokens": "padded", "grid": "grid"},
              "output_map": {"tokens": "tokens"}},
             {"model": projector.name, "input_map": {"tokens": "tokens"}, "output_map": {"tokens_out": "embeddings"}}]
    max_batch = min(decoder.signature["max_batch_size"], projector.signature["max_batch_size"])
    config = ensemble_config(name, max_batch, steps, [{"name": PAYLOAD, "data_type": "uint8", "dims": [-1]}],
                             [{**tokens, "name": "tokens"}, {**embeddings, "name": "embeddings"}])
    return EnsemblePlan(name, [s["model"] for s in steps], config)


def ensemble_models(served, params: dict) -> tuple[dict, dict, list[EnsemblePlan], list[str]]:
    """(unpack models {name: (params, signature)}, crop steps {name: (params, signature)}, ensembles, skipped pairs
    with reasons)."""
    unpack, grid_steps, ensembles, skipped = {}, {}, [], []
    decoders = [m for m in served if _is_decoder(m)]
    projectors = [m for m in served if m.input_names == ["tokens"]]
    for decoder in decoders:
        p = params[decoder.model]
        if isinstance(p, str):
            skipped.append(p)
            continue
        unpack_name, grid_name = f"{decoder.model}_unpack", f"{decoder.name}_grid"
        for projector in (x for x in projectors if x.precision == decoder.precision):
            plan = _ensemble(decoder, projector, unpack_name, grid_name)
            if isinstance(plan, str):
                skipped.append(plan)
                continue
            ensembles.append(plan)
            # One payload step per compressor, shared by its precisions; its blocks carry the decoder's layout.
            unpack.setdefault(unpack_name, ({k: v for k, v in p.items() if k != "checkpoint"},
                                            _unpack_signature(decoder)))
            grid_steps.setdefault(grid_name, ({"unit": p["unit"]}, _grid_signature(decoder)))  # one per dtype
    return unpack, grid_steps, ensembles, skipped
