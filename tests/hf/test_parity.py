"""Converted checkpoints compute what transformers' own projector modules compute, on real tokens, in PyTorch and
in ONNX Runtime (fp32, rel L2 <= 1e-5), for every supported family; the Qwen families are fed in the order their
processors emit patches (2x2 merge windows), our checkpoints the same tokens row-major."""

import numpy as np
import pytest
import torch
from ntc_export.backend.onnx.export import export_model
from ntc_export.backend.onnxrt.runner import OrtRunner
from ntc_export.models.grid import as_grid
from ntc_export.cli import main
from ntc_export.evaluate.fidelity import fidelity
from ntc_export.hf import convert, merge_order
from ntc_export.models import load, read_meta

FAMILIES = ("qwen2_vl", "qwen2_5_vl", "qwen3_vl", "qwen3_vl_moe", "llava", "internvl")
TOLERANCE = 1e-5
# Key layouts each family's checkpoints come in (see conftest): what the installed transformers saves, the nested
# names transformers 4.52-4.57 saved, OpenGVLab's original InternVL.
LAYOUTS = {"qwen2_vl": ("saved", "nested"), "qwen2_5_vl": ("saved", "nested"), "qwen3_vl": ("saved",),
           "qwen3_vl_moe": ("saved",), "llava": ("saved", "nested"), "internvl": ("saved", "nested", "original")}


@torch.no_grad()
def reference(family, model, module, patch_tokens: np.ndarray) -> np.ndarray:
    """transformers' projector on row-major patch tokens [B, h*w, D], fed the way the family's model feeds it."""
    x = torch.from_numpy(patch_tokens)
    b, n, d = x.shape
    side = int(n ** 0.5)
    if family.startswith("qwen"):  # processor order; the vision tower concatenates a batch's images into one sequence
        seq = x[:, torch.from_numpy(merge_order(side, side))].reshape(b * n, d)
        return module(seq).reshape(b, n // 4, -1).numpy()
    if family == "internvl":  # the model's own pixel shuffle, as in InternVLModel.get_image_features
        x = model.model.pixel_shuffle(x.reshape(b, side, side, d), scale_factor=0.5).reshape(b, n // 4, 4 * d)
    return module(x).numpy()


@pytest.mark.parametrize("family", FAMILIES)
def test_pytorch_and_onnx_match_transformers(family, hf_models, hf_saved, real_tokens, tmp_path, capsys):
    model, parts = hf_models[family]
    out = tmp_path / "model.pt"
    assert main(["convert-hf", str(hf_saved(family, sharded=True)), "--out", str(out)]) == 0
    written = capsys.readouterr().out.strip().splitlines()
    assert len(written) == len(parts)
    patch = np.ascontiguousarray(real_tokens[:, 1:])  # CLS dropped, as each family's default feature selection does
    for name, module in parts.items():
        path = out if not name else tmp_path / f"model.{name}.pt"
        ours = load(path)
        assert read_meta(path)["model_type"] == family and read_meta(path)["part"] == (name or "main")
        ref = reference(family, model, module, patch)
        with torch.no_grad():
            torch_out = ours(torch.from_numpy(patch)).numpy()
        onnx = export_model(ours, tmp_path / f"onnx-{name or 'main'}", ["fp32"])["fp32"]
        ort_out = OrtRunner(onnx).run({"tokens": as_grid(patch)})["tokens_out"]  # graphs take [B, h, w, D]
        assert ref.shape == torch_out.shape == ort_out.shape
        torch_rel, ort_rel = fidelity(ref, torch_out)["rel_l2"], fidelity(ref, ort_out)["rel_l2"]
        with capsys.disabled():
            print(f"\n{family} {name or 'main'} {ours.arch} {list(ref.shape)}: rel L2 torch {torch_rel:.2e}, "
                  f"onnxruntime {ort_rel:.2e}")
        assert torch_rel <= TOLERANCE and ort_rel <= TOLERANCE
        assert np.linalg.norm(ref) > 0.1 * ref.size ** 0.5  # a real signal, not near-zero outputs
        if family.startswith("qwen"):  # the order matters: row-major tokens fed straight in give other outputs
            with torch.no_grad():
                unordered = module(torch.from_numpy(patch).reshape(-1, patch.shape[-1])).reshape(ref.shape)
            assert fidelity(ref, unordered.numpy())["rel_l2"] > 0.1


@pytest.mark.parametrize("family", FAMILIES)
def test_every_layout_converts_to_the_same_weights(family, hf_saved):
    """One file or shards + index, in each key layout the family's checkpoints come in (LAYOUTS)."""
    runs = {(layout, sharded): convert(hf_saved(family, layout, sharded))
            for layout in LAYOUTS[family] for sharded in (False, True)}
    first = runs[LAYOUTS[family][0], False]
    for got in runs.values():
        assert [c.name for c in got] == [c.name for c in first]
        for a, b in zip(first, got):
            assert a.module.arch == b.module.arch and a.module.config == b.module.config
            sa, sb = a.module.state_dict(), b.module.state_dict()
            assert sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)
    names = {layout: sorted(runs[layout, True][0].meta["tensors"].values()) for layout in LAYOUTS[family]}
    assert len({tuple(n) for n in names.values()}) == len(LAYOUTS[family])  # each layout really had other names
    if "nested" in names:
        assert all(n.startswith("model.") for n in names["nested"])
        assert not any(n.startswith("model.") for n in names["saved"])
    if "original" in names:
        assert runs["original", True][0].meta["model_type"] == "internvl_chat" and "mlp1.0.weight" in names["original"]


def test_only_projector_tensors_are_read(hf_copy):
    """Shards without projector tensors are overwritten with garbage: conversion never opens them."""
    import json

    folder = hf_copy("qwen3_vl", sharded=True)
    weight_map = json.loads((folder / "model.safetensors.index.json").read_text())["weight_map"]
    needed = {f for k, f in weight_map.items() if ".merger" in k or "deepstack_merger_list" in k}
    others = set(weight_map.values()) - needed
    assert needed and others
    for f in others:
        (folder / f).write_bytes(b"not a safetensors file")
    converted = convert(folder)
    assert len(converted) == 3
    hashed = set(converted[0].meta["files_sha256"])
    assert hashed == {"config.json", "model.safetensors.index.json", *needed}


def test_merge_order_is_the_qwen_processor_order(transformers):
    """Qwen2-VL's image processor (also Qwen2.5-VL's, 14 px patches, and Qwen3-VL's, 16 px) on an image whose
    every patch is filled with its row-major index: the emitted sequence is merge_order's (non-square grid)."""
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil

    h, w = 8, 6
    for patch in (14, 16):
        processor = Qwen2VLImageProcessorPil(patch_size=patch, merge_size=2, do_resize=False, do_rescale=False,
                                             do_normalize=False)
        index = np.arange(h * w, dtype=np.uint8).reshape(h, w)
        image = np.repeat(np.repeat(index, patch, 0), patch, 1)[..., None].repeat(3, -1)
        out = processor(images=[image], return_tensors="np")
        assert out["image_grid_thw"].tolist() == [[1, h, w]]
        seq = out["pixel_values"].reshape(h * w, -1)
        assert (seq == seq[:, :1]).all()  # each emitted row is one whole patch
        assert seq[:, 0].astype(int).tolist() == merge_order(h, w).tolist()


def test_llava_without_projector_bias_on_two_feature_layers(transformers, real_tokens, tmp_path):
    """LLaVA variants: `multimodal_projector_bias=False` (our Linear biases are zero: the same function) and two
    ViT feature layers concatenated (input 2 x 384). The second layer's tokens are stood in for by the real tokens of
    the next photograph, since the ViT we have gives one layer."""
    config = transformers.LlavaConfig(
        text_config={"hidden_size": 64, "intermediate_size": 64, "num_hidden_layers": 1, "num_attention_heads": 2,
                     "num_key_value_heads": 1, "vocab_size": 128, "model_type": "llama"},
        vision_config=dict(model_type="clip_vision_model", hidden_size=384, intermediate_size=64, num_hidden_layers=2,
                           num_attention_heads=6, image_size=56, patch_size=14),
        multimodal_projector_bias=False, vision_feature_layer=[-2, -1])
    model = transformers.LlavaForConditionalGeneration(config).eval()
    module = model.model.multi_modal_projector
    assert module.linear_1.bias is None and module.linear_1.in_features == 768
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn(p.shape) / p.shape[1] ** 0.5)
    model.save_pretrained(tmp_path / "llava")
    (converted,) = convert(tmp_path / "llava")
    assert converted.module.input_dim == 768 and not any(n.endswith("bias") for n in converted.meta["tensors"].values())
    patch = real_tokens[:, 1:]
    x = np.ascontiguousarray(np.concatenate([patch, np.roll(patch, 1, axis=0)], axis=-1))
    with torch.no_grad():
        ref = module(torch.from_numpy(x)).numpy()
        ours = converted.module(torch.from_numpy(x)).numpy()
    assert fidelity(ref, ours)["rel_l2"] <= TOLERANCE
