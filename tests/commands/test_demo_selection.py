"""The demo's model list: one checkpoint per architecture of the zoo (a codec family's lowest rate), every one with
--all."""

from ntc_export.commands.demo import demo_models
from ntc_export.models import read_arch
from ntc_export.util.paths import ZOO_DIR

ZOO = sorted(ZOO_DIR.glob("*.pt"))


def test_one_checkpoint_per_architecture():
    picked = demo_models(ZOO)
    archs = [read_arch(p) for p in picked]
    assert sorted(archs) == sorted({read_arch(p) for p in ZOO}) and len(archs) == len(set(archs))
    names = {p.stem for p in picked}
    assert {"bcae_x4", "hp_x14", "ntc_x16", "vq_x16", "visionzip_16", "tome_64", "mlp2x_gelu"} <= names
    assert len(picked) < len(ZOO)


def test_all_takes_every_checkpoint():
    assert demo_models(ZOO, every=True) == ZOO
