"""Pixel reference rows: the source pictures found from a token file's provenance, coded with a real image codec,
decoded and re-encoded by the same ViT; a row's bytes are the coded files' length (checked by decoding each file
with imagecodecs, a decoder independent of Pillow)."""

import numpy as np
import pytest
from ntc_export.data import vit
from ntc_export.data.tokens import builtin_images, extract_tokens, make_tokens
from ntc_export.evaluate import pixel_reference
from ntc_export.evaluate.fidelity import token_cosine
from ntc_export.evaluate.rate_distortion import pixel_rows
from ntc_export.util.errors import NtcError

SIZE = (56, 84)  # a non-square 4x6 grid, small enough for a quick ViT pass


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    from PIL import Image

    images, _, names = builtin_images("skimage")
    out = tmp_path_factory.mktemp("pictures")
    paths = []
    for name in ("astronaut", "chelsea", "coffee"):
        path = out / f"{name}.png"
        Image.fromarray(images[names.index(name)]).save(path)
        paths.append(path)
    return paths


@pytest.fixture(scope="module")
def tokens(files):
    return make_tokens(files, size=SIZE, progress=False)


def test_pixel_row_bytes_are_the_coded_files_length(tokens):
    imagecodecs = pytest.importorskip("imagecodecs")
    pictures = pixel_reference.matched_pictures(tokens)
    routes = pixel_reference.check_routes(["jpeg:80", "avif:40"])
    rows = {r["arch"]: r for r in pixel_rows(tokens, pictures, routes, with_saliency=False)}
    (_, ts, resized), = pixel_reference.pictures_by_grid(tokens, pictures)
    assert [p.shape for p in resized] == [(*SIZE, 3)] * 3
    decoders = {"jpeg": imagecodecs.jpeg8_decode, "avif": imagecodecs.avif_decode}
    for route in routes:
        coded = [route.encode(p) for p in resized]
        decoded = [decoders[route.codec](c) for c in coded]  # each is a complete file of its format
        assert all(d.shape == (*SIZE, 3) for d in decoded)
        row = rows[route.arch]
        assert row["family"] == "pixels" and row["bytes_per_image"] == np.mean([len(c) for c in coded])
        again = extract_tokens(decoded, size=SIZE, progress=False)[:, 1:]
        cosine = token_cosine(again.reshape(-1, vit.DIM), ts.patch_tokens.reshape(-1, vit.DIM))
        assert row["cosine"] == pytest.approx(cosine, abs=2e-3)  # two decoders of one file: nearly equal pixels
    assert rows["jpeg-q80"]["cosine"] < 0.999 and rows["avif-q40"]["bytes_per_image"] < rows["jpeg-q80"][
        "bytes_per_image"]


def test_other_pictures_are_refused(tokens, files):
    swapped = tokens.subset([0, 1, 2])
    swapped.meta["names"] = [str(files[i]) for i in (1, 2, 0)]
    with pytest.raises(NtcError, match="not the pictures these tokens came from"):
        pixel_reference.matched_pictures(swapped)


def test_missing_picture_is_one_line(tokens, tmp_path):
    gone = tokens.subset([0, 1, 2])
    gone.meta["names"] = [str(tmp_path / "gone.png")] * 3
    with pytest.raises(NtcError, match="no such image file"):
        pixel_reference.find_pictures(gone)
    with pytest.raises(NtcError, match="--images"):
        pixel_reference.find_pictures(type(tokens)(tokens.tokens, tokens.grid, meta={"names": ["a", "b", "c"],
                                                                                    "source": "elsewhere"}))


def test_routes_are_checked_before_any_work():
    with pytest.raises(NtcError, match="FORMAT:QUALITY"):
        pixel_reference.check_routes(["avif:0"])
    with pytest.raises(NtcError, match="FORMAT:QUALITY"):
        pixel_reference.check_routes(["png:50"])
