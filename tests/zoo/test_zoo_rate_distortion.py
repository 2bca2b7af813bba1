"""The compressor zoo on natural photographs it never trained on: every checkpoint of every family at or above the PCA
reference line at its rate, each family spanning 16x to 64x, the bc_autoencoder curve monotone in rate with 16x at
token cosine >= 0.98 (real ViT tokens of the pip-installed photographs: held-out = the corpus's calib + val
photographs, PCA fitted on its train photographs)."""

import numpy as np
import pytest
from ntc_export.data import photos
from ntc_export.data.tokens import extract_tokens, to_rgb_uint8
from ntc_export.evaluate.rate_distortion import rate_distortion
from ntc_export.models import load
from ntc_export.util.paths import ZOO_DIR

RATES = (4, 8, 16, 32, 64)
PIP_SOURCES = ("scikit-image", "scikit-learn")  # installed wherever the tests run


def _tokens(splits, crops_per_photo):
    from ntc_export.data.tokens import TokenSet

    found = [p for name, find, _ in photos.SOURCES if name in PIP_SOURCES for p in find() if p.split in splits]
    images = [c for p in found for c in photos.crops(to_rgb_uint8(p.load(), p.key), p.key, crops_per_photo)]
    return TokenSet(extract_tokens(images, size=224, progress=False), (16, 16))


FAMILIES = ("vq", "hyperprior", "ntc_grid")


@pytest.fixture(scope="module")
def corpus():
    return _tokens(("calib", "val"), 8), _tokens(("train",), 4)


@pytest.fixture(scope="module")
def rows(corpus):
    models = {f"bcae_x{r}": load(ZOO_DIR / f"bcae_x{r}.pt") for r in RATES}
    table = rate_distortion(models, *corpus, pca_rates=list(RATES), with_saliency=False)
    return {r["model"]: r for r in table}


@pytest.fixture(scope="module")
def family_rows(corpus):
    """Every other compressor of the zoo, with a PCA row at each one's measured rate."""
    models = {p.stem: load(p) for p in sorted(ZOO_DIR.glob("*.pt")) if not p.stem.startswith("bcae")}
    models = {name: m for name, m in models.items() if m.is_compressor}
    return rate_distortion(models, *corpus, with_saliency=False)


def test_every_family_spans_16x_to_64x_at_or_above_the_pca_line(family_rows):
    pca = {r["model"]: r for r in family_rows if r["family"] == "pca"}
    learned = [r for r in family_rows if r["family"] not in ("pca", "original")]
    assert set(FAMILIES) <= {r["family"] for r in learned}
    for row in learned:
        ref = pca[f"pca@{round(row['rate'], 1):g}x"]
        assert row["cosine"] >= ref["cosine"], (row, ref)
    for family in FAMILIES:
        rates = [r["rate"] for r in learned if r["family"] == family]
        assert min(rates) <= 17 and max(rates) >= 60, (family, rates)


def test_zoo_beats_the_pca_line_and_is_monotone(rows):
    learned = [rows[f"bcae_x{r}"] for r in RATES]
    for rate, row in zip(RATES, learned):
        assert row["rate"] == pytest.approx(rate, rel=0.02)  # payload headers: 36 bytes
        assert row["cosine"] >= rows[f"pca@{rate}x"]["cosine"], (row, rows[f"pca@{rate}x"])
    cosines = [r["cosine"] for r in learned]
    assert all(a > b for a, b in zip(cosines, cosines[1:])), cosines
    assert rows["bcae_x16"]["cosine"] >= 0.98
    assert np.isfinite([r["snr_db"] for r in learned]).all()
