"""The demo's model list: one checkpoint per architecture of the zoo (a codec family's lowest rate), every one with
--all; its data: square crops, then photographs at their own aspect ratio."""

import numpy as np
from ntc_export.commands.demo import demo_models
from ntc_export.models import read_arch
from ntc_export.util.paths import ZOO_DIR

ZOO = sorted(ZOO_DIR.glob("*.pt"))


def test_one_checkpoint_per_architecture():
    picked = demo_models(ZOO)
    archs = [read_arch(p) for p in picked]
    assert sorted(archs) == sorted({read_arch(p) for p in ZOO}) and len(archs) == len(set(archs))
    names = {p.stem for p in picked}
    assert {"bcae_x4", "hp_x16", "ntc_x16", "vq_x16", "visionzip_16", "tome_64", "mlp2x_gelu"} <= names
    assert len(picked) < len(ZOO)


def test_all_takes_every_checkpoint():
    assert demo_models(ZOO, every=True) == ZOO


def test_demo_data_adds_native_aspect_photographs_after_the_square_crops(tmp_path):
    from ntc_export.commands.demo import demo_data
    from ntc_export.data.tokens import builtin_tokens, load_tokens

    data = load_tokens(demo_data(tmp_path, 3, 2))
    assert len(data) == 5 and data.has_attention
    grids = {tuple(g) for g in data.grids[3:]}
    assert any(h != w for h, w in grids)  # the flower photograph is 427x640: a non-square grid
    square = builtin_tokens("photos", 224, split="val", attention=True)
    first = data.subset([0, 1, 2])
    assert first.grid == (16, 16)
    # evenly spaced over the split's 200 crops: its first, middle and last (three photographs, not one)
    assert len(square) == 200
    np.testing.assert_array_equal(first.tokens, square.tokens[[0, 100, 199]])
    assert len({square.meta["names"][i].split("#")[0] for i in (0, 100, 199)}) == 3
