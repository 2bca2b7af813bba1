"""Every zoo projector exports and meets the fp32/fp16 thresholds on real tokens at 224 px and 448 px grids."""

import numpy as np
import pytest
from ntc_export.backend.onnx.export import export_model
from ntc_export.data.tokens import builtin_images, extract_tokens, split_indices
from ntc_export.evaluate.validate import failures, validate_onnx
from ntc_export.models import load
from ntc_export.util.paths import ZOO_DIR

PROJECTORS = ["mlp2x_gelu", "patch_merger", "pixel_shuffle", "merge3x3", "conv16x"]


@pytest.fixture(scope="module")
def real_tokens():
    """Held-out digits (224 px, with labels) and bundled photographs (448 px): real ViT tokens."""
    images, labels, _ = builtin_images("digits")
    idx = split_indices("digits", "val", len(images))[:48]
    digits = extract_tokens([images[i] for i in idx], size=224, progress=False)[:, 1:]
    photos, _, _ = builtin_images("skimage")
    photos448 = extract_tokens(photos[:4], size=448, progress=False)[:, 1:]
    return {224: (digits, labels[idx]), 448: (photos448, None)}


@pytest.mark.parametrize("name", PROJECTORS)
def test_zoo_model_meets_thresholds(name, real_tokens, tmp_path):
    path = ZOO_DIR / f"{name}.pt"
    assert path.exists(), f"zoo checkpoint {path} missing: run scripts/build_zoo.py"
    module = load(path)
    onnx_paths = export_model(module, tmp_path)
    for size, (tokens, labels) in real_tokens.items():
        assert tokens.shape[1] == (size // 14) ** 2
        records = validate_onnx(name, module, onnx_paths, np.ascontiguousarray(tokens), labels)
        assert {r["precision"] for r in records} == {"fp32", "fp16"}
        assert not failures(records), [(r["precision"], r["output"], r["rel_l2"], r["cosine"]) for r in records]
        fp32 = [r for r in records if r["precision"] == "fp32"]
        assert max(r["rel_l2"] for r in fp32) <= 1e-5
        assert min(r["cosine"] for r in records if r["precision"] == "fp16") >= 0.9995
        if labels is not None:  # a trained head: the digits are recognised, and fp16 keeps the accuracy
            golden = records[0]["task_metric_golden"]
            assert golden >= 0.8
            assert all(abs(r["task_metric"] - golden) <= 0.03 for r in records)
