"""Test photographs pinned to the corpus's always-present sources (scikit-image and scikit-learn are hard
dependencies), so a test sees the same pictures, hence the same numbers, whether or not the `photos` extra or Debian's
photo packages are installed. Crops are seeded by each photograph's key (ntc_export.data.photos.crops)."""

from functools import lru_cache

import numpy as np
from ntc_export.data import photos as corpus
from ntc_export.data.pixels import to_rgb_uint8
from ntc_export.data.tokens import TokenSet, extract_tokens, extract_tokens_attention

ALWAYS_PRESENT = ("scikit-image", "scikit-learn")
# What the always-present sources hold per split (the split is a hash of the key: checked in pinned_photos).
PINNED = {"calib": ("scikit-image:camera", "scikit-image:immunohistochemistry"),
          "val": ("scikit-image:gravel", "scikit-learn:flower.jpg")}


def always_present(splits) -> list[corpus.Photo]:
    """Every always-present photograph of the given splits, in catalogue order."""
    return [p for name, find, _ in corpus.SOURCES if name in ALWAYS_PRESENT for p in find() if p.split in splits]


def pinned_photos(split: str) -> list[corpus.Photo]:
    """The pinned held-out photographs of `split` ("calib" or "val")."""
    found = [p for p in always_present((split,)) if p.key in PINNED[split]]
    assert [p.key for p in found] == list(PINNED[split]), f"the {split} split's pinned photographs moved: {found}"
    return found


def pinned_crops(split: str, count: int) -> list[np.ndarray]:
    """`count` crops of the split's pinned photographs, taken in turn from each (crop 0 of each is its centre)."""
    found = pinned_photos(split)
    per = -(-count // len(found))
    crops = [corpus.crops(to_rgb_uint8(p.load(), p.key), p.key, per) for p in found]
    return [c[i] for i in range(per) for c in crops][:count]


@lru_cache(maxsize=None)
def pinned_tokens(split: str, count: int, attention: bool = False) -> TokenSet:
    """ViT tokens (224 px, CLS row kept) of `count` pinned crops of `split`; with `attention`, also the ViT's CLS
    attention and keys. Cached for the session: callers must not modify the arrays."""
    images = pinned_crops(split, count)
    meta = {"source": f"pinned photos:{split}"}
    if not attention:
        return TokenSet(extract_tokens(images, 224, progress=False), (16, 16), None, meta)
    tokens, attn, keys = extract_tokens_attention(images, 224, progress=False)
    return TokenSet(tokens, (16, 16), None, meta, attn, keys)
