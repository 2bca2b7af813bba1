"""The compressor zoo on natural photographs it never trained on: every checkpoint of every family at or above the PCA
reference line at its rate, each family spanning 16x to 64x, the bc_autoencoder curve monotone in rate with 16x at
token cosine >= 0.98 (real ViT tokens of the pip-installed photographs: held-out = the corpus's calib + val
photographs, PCA fitted on its train photographs).

Both tests read one table: every compressor of the zoo measured once, PCA rows at RATES (the bc_autoencoder's nominal
rates) and at each other model's measured rate. A row depends only on its codec and the tokens, so this table holds
the rows that two runs (bc_autoencoder, the other families) gave, and the tokens are extracted once."""

import numpy as np
import pytest
from ntc_export.data import photos
from ntc_export.data.tokens import TokenSet, extract_tokens, to_rgb_uint8
from ntc_export.evaluate.rate_distortion import rate_distortion
from ntc_export.models import load
from ntc_export.util.paths import ZOO_DIR
from pinned_photos import always_present

RATES = (4, 8, 16, 32, 64)
FAMILIES = ("vq", "hyperprior", "ntc_grid")


def _tokens(splits, crops_per_photo) -> TokenSet:
    images = [c for p in always_present(splits)
              for c in photos.crops(to_rgb_uint8(p.load(), p.key), p.key, crops_per_photo)]
    return TokenSet(extract_tokens(images, size=224, progress=False), (16, 16))


def _other_families(rows) -> list[dict]:
    """The learned rows that are not bc_autoencoder's: vq, hyperprior, ntc_grid."""
    return [r for r in rows if r["family"] not in ("pca", "original", "bc_autoencoder")]


@pytest.fixture(scope="module")
def table():
    """model name -> row: every zoo compressor, PCA at RATES and at every measured rate (one pass over the codecs)."""
    corpus = _tokens(("calib", "val"), 8), _tokens(("train",), 4)
    models = {p.stem: m for p in sorted(ZOO_DIR.glob("*.pt")) if (m := load(p)).is_compressor}
    rows = rate_distortion(models, *corpus, pca_rates=list(RATES), with_saliency=False, quant=False)
    # The PCA rows the other families are read against: their measured rates are known only now.
    measured = sorted({round(r["rate"], 1) for r in _other_families(rows)} - set(RATES))
    rows += [r for r in rate_distortion({}, *corpus, pca_rates=measured, with_saliency=False, quant=False)
             if r["family"] == "pca"]
    return {r["model"]: r for r in rows}


def test_every_family_spans_16x_to_64x_at_or_above_the_pca_line(table):
    learned = _other_families(table.values())
    assert set(FAMILIES) <= {r["family"] for r in learned}
    for row in learned:
        ref = table[f"pca@{round(row['rate'], 1):g}x"]
        assert row["cosine"] >= ref["cosine"], (row, ref)
    for family in FAMILIES:
        rates = [r["rate"] for r in learned if r["family"] == family]
        assert min(rates) <= 17 and max(rates) >= 60, (family, rates)


def test_zoo_beats_the_pca_line_and_is_monotone(table):
    learned = [table[f"bcae_x{r}"] for r in RATES]
    for rate, row in zip(RATES, learned):
        assert row["rate"] == pytest.approx(rate, rel=0.02)  # payload headers: 36 bytes
        assert row["cosine"] >= table[f"pca@{rate}x"]["cosine"], (row, table[f"pca@{rate}x"])
    cosines = [r["cosine"] for r in learned]
    assert all(a > b for a, b in zip(cosines, cosines[1:])), cosines
    assert table["bcae_x16"]["cosine"] >= 0.98
    assert np.isfinite([r["snr_db"] for r in learned]).all()
