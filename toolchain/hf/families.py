"""The supported Hugging Face VLM families: for each `model_type` in config.json, where its projector tensors live
(the key prefixes current and older transformers write), which of our archs computes the same function, how its
submodules are named there, and the dims config.json states."""

from dataclasses import dataclass, field
from typing import Callable

from ..util.errors import NtcError

MERGE_WINDOWS = "2x2 merge windows"  # processor order of Qwen-VL patches: see patch_order.merge_order
ROW_MAJOR = "row-major"


@dataclass(frozen=True)
class Part:
    """One projector of a checkpoint, converted to one of our registered models.

    `renames` maps our submodule names to the checkpoint's (identity when absent); `dims` maps each arch dim to the
    (our key, axis, divisor) whose shape gives it; `stated` holds the dims config.json states (None: not stated).
    """

    name: str  # "" for the main projector; extra projectors (Qwen3-VL DeepStack) are written beside it
    arch: str
    prefixes: tuple[str, ...]  # newest transformers layout first
    dims: dict[str, tuple[str, int, int]]
    stated: dict[str, int | None]
    fixed: dict = field(default_factory=dict)  # arch config that is not a dim (e.g. the norm)
    renames: dict[str, str] = field(default_factory=dict)
    zero_bias: bool = False  # config.json says the Linear layers have no bias: ours get zeros (the same function)


@dataclass(frozen=True)
class Family:
    label: str
    input_order: str  # how the family's own pipeline orders the tokens it feeds the projector
    parts: Callable[[dict], list[Part]]  # config.json -> the projectors to convert


def _get(config: dict, path: str):
    """config value at a dotted path, or None."""
    for key in path.split("."):
        if not isinstance(config, dict) or key not in config:
            return None
        config = config[key]
    return config


def _require(config: dict, path: str, default, allowed: tuple, what: str) -> None:
    value = _get(config, path)
    value = default if value is None else value
    if value not in allowed:
        raise NtcError(f"{what} {path}={value!r} is not supported (supported: {', '.join(map(repr, allowed))})")


def _qwen_prefixes(module: str) -> tuple[str, ...]:
    # transformers 4.52-4.57 saved the tower nested under `model.` (Qwen3-VL's uploads are so too); the Hub's
    # original Qwen2-VL / Qwen2.5-VL uploads, and transformers 5 when it saves them, start at `visual.`
    return (f"model.visual.{module}.", f"visual.{module}.")


_MERGER_DIMS = {"input_dim": ("ln_q.weight", 0, 1), "output_dim": ("mlp.2.weight", 0, 1)}
# Qwen's vision towers feed their mergers packed rows [Σ h·w, D] in processor order: converted mergers ship that form
# too, as extra graph "packed" (models/packed_merger.PackedMerger), beside the grid graph [B, h, w, D]
_PACKED = {"packed_graph": True}


def _qwen2_vl(config: dict) -> list[Part]:
    _require(config, "vision_config.spatial_merge_size", 2, (2,), "Qwen2-VL")
    stated = {"input_dim": _get(config, "vision_config.embed_dim"),
              "output_dim": _get(config, "vision_config.hidden_size")}
    return [Part("", "patch_merger", _qwen_prefixes("merger"), _MERGER_DIMS, stated,
                 {"norm": "layernorm", **_PACKED})]


def _qwen2_5_vl(config: dict) -> list[Part]:
    _require(config, "vision_config.spatial_merge_size", 2, (2,), "Qwen2.5-VL")
    stated = {"input_dim": _get(config, "vision_config.hidden_size"),
              "output_dim": _get(config, "vision_config.out_hidden_size")}
    return [Part("", "patch_merger", _qwen_prefixes("merger"), _MERGER_DIMS, stated,
                 {"norm": "rmsnorm", **_PACKED})]


def _qwen3_vl(config: dict) -> list[Part]:
    _require(config, "vision_config.spatial_merge_size", 2, (2,), "Qwen3-VL")
    stated = {"input_dim": _get(config, "vision_config.hidden_size"),
              "output_dim": _get(config, "vision_config.out_hidden_size")}
    main = Part("", "patch_merger", _qwen_prefixes("merger"), _MERGER_DIMS, stated, {"norm": "layernorm", **_PACKED},
                renames={"ln_q": "norm", "mlp.0": "linear_fc1", "mlp.2": "linear_fc2"})
    deep_dims = {"input_dim": ("norm.weight", 0, 4), "output_dim": ("linear_fc2.weight", 0, 1)}
    # one DeepStack merger per listed ViT layer; each reads that layer's tokens, so each is a model of its own
    layers = _get(config, "vision_config.deepstack_visual_indexes") or []
    return [main] + [Part(f"deepstack{i}", "postshuffle_merger", _qwen_prefixes(f"deepstack_merger_list.{i}"),
                          deep_dims, stated, _PACKED) for i in range(len(layers))]


def _llava(config: dict) -> list[Part]:
    _require(config, "projector_hidden_act", "gelu", ("gelu",), "LLaVA")
    layers = _get(config, "vision_feature_layer")
    vision = _get(config, "vision_config.hidden_size")
    stated = {"input_dim": vision * (len(layers) if isinstance(layers, list) else 1) if vision else None,
              "output_dim": _get(config, "text_config.hidden_size")}
    bias = _get(config, "multimodal_projector_bias")
    return [Part("", "mlp2x_gelu", ("model.multi_modal_projector.", "multi_modal_projector."),
                 {"input_dim": ("mlp.0.weight", 1, 1), "output_dim": ("mlp.0.weight", 0, 1)}, stated,
                 renames={"mlp.0": "linear_1", "mlp.2": "linear_2"}, zero_bias=bias is False)]


_SHUFFLE_DIMS = {"input_dim": ("mlp1.0.weight", 0, 4), "output_dim": ("mlp1.1.weight", 0, 1)}


def _internvl(config: dict) -> list[Part]:
    _require(config, "downsample_ratio", 0.5, (0.5,), "InternVL")
    _require(config, "projector_hidden_act", "gelu", ("gelu",), "InternVL")
    stated = {"input_dim": _get(config, "vision_config.hidden_size"),
              "output_dim": _get(config, "text_config.hidden_size")}
    return [Part("", "pixel_shuffle", ("model.multi_modal_projector.", "multi_modal_projector."), _SHUFFLE_DIMS,
                 stated, renames={"mlp1.0": "layer_norm", "mlp1.1": "linear_1", "mlp1.3": "linear_2"})]


def _internvl_chat(config: dict) -> list[Part]:
    """OpenGVLab's original InternVL layout (remote code): `mlp1` = LayerNorm, Linear, GELU, Linear."""
    _require(config, "downsample_ratio", 0.5, (0.5,), "InternVL")
    # v1 pixel shuffle leaves the merged grid transposed (column-major tokens): not the function our arch computes
    _require(config, "ps_version", "v1", ("v2",), "InternVL")
    stated = {"input_dim": _get(config, "vision_config.hidden_size"),
              "output_dim": _get(config, "llm_config.hidden_size")}
    return [Part("", "pixel_shuffle", ("mlp1.",), _SHUFFLE_DIMS, stated,
                 renames={"mlp1.0": "0", "mlp1.1": "1", "mlp1.3": "3"})]


FAMILIES = {  # model_type -> family
    "qwen2_vl": Family("Qwen2-VL", MERGE_WINDOWS, _qwen2_vl),
    "qwen2_5_vl": Family("Qwen2.5-VL", MERGE_WINDOWS, _qwen2_5_vl),
    "qwen3_vl": Family("Qwen3-VL", MERGE_WINDOWS, _qwen3_vl),
    "qwen3_vl_moe": Family("Qwen3-VL", MERGE_WINDOWS, _qwen3_vl),  # the MoE LLMs share Qwen3-VL's vision tower
    "llava": Family("LLaVA", ROW_MAJOR, _llava),
    "internvl": Family("InternVL", ROW_MAJOR, _internvl),  # transformers' own InternVL
    "internvl_chat": Family("InternVL", ROW_MAJOR, _internvl_chat),  # OpenGVLab's original checkpoints
}


def family_for(model_type) -> Family:
    """The family of a config.json `model_type`; a one-line error naming the supported ones otherwise."""
    if model_type not in FAMILIES:
        raise NtcError(f"model_type {model_type!r} is not supported (supported: {', '.join(sorted(FAMILIES))})")
    return FAMILIES[model_type]


def hf_key(part: Part, prefix: str, ours: str) -> str:
    """The checkpoint's name for our state-dict key `ours` (the longest matching rename applies)."""
    for mine in sorted(part.renames, key=len, reverse=True):
        if ours == mine or ours.startswith(mine + "."):
            return prefix + part.renames[mine] + ours[len(mine):]
    return prefix + ours
