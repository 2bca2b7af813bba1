"""The compressor contract on real tokens (payload files are the bytes `rd` reports and decode like the in-memory
path), the PCA reference line, and `ntc-export rd`."""

import json

import numpy as np
import pytest
from ntc_export.cli import main
from ntc_export.codec.payload import unpack, unpack_file
from ntc_export.data.tokens import TokenSet, builtin_images, extract_tokens, split_indices
from ntc_export.evaluate import pca_reference
from ntc_export.evaluate.fidelity import token_cosine
from ntc_export.models import load
from ntc_export.util.paths import ZOO_DIR


@pytest.fixture(scope="module")
def token_files(tmp_path_factory):
    """Labelled digits tokens from the real ViT: 48 from the train split (fit) and 16 from val (measured)."""
    images, labels, _ = builtin_images("digits")
    out = tmp_path_factory.mktemp("rd")
    files = {}
    for split, n in (("train", 48), ("val", 16)):
        idx = split_indices("digits", split, len(images))[:n]
        tokens = extract_tokens([images[i] for i in idx], size=224, progress=False)
        files[split] = TokenSet(tokens, (16, 16), labels[idx], {"source": f"digits/{split}"}).save(out / f"{split}.npz")
    return files


def _load(path):
    from ntc_export.data.tokens import load_tokens

    return load_tokens(path)


def test_payload_file_is_what_rd_reports_and_decodes_like_memory(token_files, tmp_path):
    model = ZOO_DIR / "bcae_x16.pt"
    assert main(["compress", str(model), "--data", str(token_files["val"]), "--out", str(tmp_path / "p.bin")]) == 0
    payloads = unpack_file((tmp_path / "p.bin").read_bytes())
    assert main(["rd", str(model), "--data", str(token_files["val"]), "--fit", str(token_files["train"]),
                 "--no-saliency", "--out", str(tmp_path / "rd.json")]) == 0
    rows = {r["model"]: r for r in json.loads((tmp_path / "rd.json").read_text())["rows"]}
    assert rows["bcae_x16"]["bytes_per_image"] == np.mean([len(p) for p in payloads])
    module = load(model)
    patches = _load(token_files["val"]).patch_tokens
    assert all(unpack(p).grid == (16, 16) for p in payloads)
    assert np.array_equal(module.decode(payloads), module.decompress(module.compress(patches)))
    assert main(["decompress", str(model), str(tmp_path / "p.bin"), "--out", str(tmp_path / "d.npz")]) == 0
    with np.load(tmp_path / "d.npz") as z:
        assert np.array_equal(z["patch_tokens"], module.decode(payloads))
    assert rows["bcae_x16"]["cosine"] == pytest.approx(token_cosine(module.decode(payloads), patches))


def test_foreign_or_truncated_payload_file_is_one_line_exit_2(token_files, tmp_path, capsys):
    out = tmp_path / "p.bin"
    assert main(["compress", str(ZOO_DIR / "bcae_x16.pt"), "--data", str(token_files["val"]), "--out", str(out)]) == 0
    assert main(["decompress", str(ZOO_DIR / "bcae_x8.pt"), str(out), "--out", str(tmp_path / "a.npz")]) == 2
    (tmp_path / "cut.bin").write_bytes(out.read_bytes()[:-7])
    assert main(["decompress", str(ZOO_DIR / "bcae_x16.pt"), str(tmp_path / "cut.bin"), "--out",
                 str(tmp_path / "b.npz")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert "written by another bc_autoencoder model" in err[0] and "truncated" in err[1]
    assert not (tmp_path / "a.npz").exists() and not (tmp_path / "b.npz").exists()


def test_pca_reference_fits_its_budget_and_improves_with_rate(token_files):
    train, val = _load(token_files["train"]).patch_tokens, _load(token_files["val"]).patch_tokens
    basis = pca_reference.fit_basis(train)
    cosines = []
    for rate in (64, 16, 4):
        codec = pca_reference.for_rate(train, rate, basis)
        payloads = codec.encode(val)
        body_bits = 8 * len(unpack(payloads[0]).body)
        assert body_bits <= 256 * 384 * 16 / rate + 7  # packed bits within the budget
        cosines.append(token_cosine(codec.decode(payloads), val))
    assert cosines[0] < cosines[1] < cosines[2]
    # Every component at 8 bits reconstructs almost exactly: the codec is PCA + uniform quantization, nothing else.
    full = pca_reference.codec(train, *basis, k=384, bits=8)
    assert token_cosine(full.decode(full.encode(val)), val) > 0.999


def test_rd_rows_and_probe(token_files, tmp_path, capsys):
    assert main(["rd", str(ZOO_DIR / "bcae_x16.pt"), str(ZOO_DIR / "bcae_x64.pt"), "--data", str(token_files["val"]),
                 "--fit", str(token_files["train"]), "--out", str(tmp_path / "rd.json"),
                 "--plot", str(tmp_path / "rd.png")]) == 0
    # the token file names no way to its pictures: one line, and every other row still runs
    assert "pixel rows skipped:" in capsys.readouterr().err
    rows = json.loads((tmp_path / "rd.json").read_text())["rows"]
    assert [r["family"] for r in rows] == ["original", "bc_autoencoder", "bc_autoencoder", "pca", "pca"] + [
        "quant"] * 3
    for r in rows:
        assert 0 <= r["probe_accuracy"] <= 1 and -1 <= r["saliency_r"] <= 1
    for r in rows[1:]:  # a decode cost on every row: counted, timed and bounded
        cost = r["decode_cost"]
        assert cost["flops"] > 0 and cost["bytes_moved"] > 0 and set(cost["p50_ms"]) == {
            "t1_b1", "t1_b16", "tall_b1", "tall_b16"}
        assert cost["bound_ms"]["rtx-ada"]["bound_ms"] > 0
    quant = {r["arch"]: r for r in rows if r["family"] == "quant"}
    assert quant["int8-token"]["cosine"] > 0.9999 and 3.5 < quant["int4-g32"]["rate"] < 3.6
    learned = {round(r["rate"]): r for r in rows if r["family"] == "bc_autoencoder"}
    assert set(learned) == {16, 63}
    assert (tmp_path / "rd.png").read_bytes()[:4] == b"\x89PNG"


def test_pca_of_token_cells_fits_its_budget_and_round_trips(token_files, tmp_path):
    train, val = _load(token_files["train"]).patch_tokens, _load(token_files["val"]).patch_tokens
    cells = pca_reference.to_cells(val, 2)
    assert cells.shape == (len(val), 64, 4 * 384)
    np.testing.assert_array_equal(cells[0, 0], np.concatenate([val[0, 0], val[0, 1], val[0, 16], val[0, 17]]))
    np.testing.assert_array_equal(pca_reference.from_cells(cells, 2), val)
    train_cells = pca_reference.to_cells(train, 2)
    codec = pca_reference.CellPcaCodec(pca_reference.for_rate(train_cells, 16, pca_reference.fit_basis(train_cells)), 2)
    payloads = codec.encode(val)
    assert 8 * len(unpack(payloads[0]).body) <= 256 * 384 * 16 / 16 + 7
    assert codec.decode(payloads).shape == val.shape and codec.arch.endswith("@2x2")
    args = ["--data", str(token_files["val"]), "--fit", str(token_files["train"]), "--no-saliency", "--pca-cell", "2",
            "--no-quant", "--no-cost", "--no-pixels"]
    assert main(["rd", str(ZOO_DIR / "bcae_x16.pt"), *args, "--out", str(tmp_path / "rd.json")]) == 0
    rows = json.loads((tmp_path / "rd.json").read_text())["rows"]
    assert [r["model"] for r in rows] == ["original tokens (fp16)", "bcae_x16", "pca2x2@16x"]


def test_rows_on_a_set_of_several_grids_read_each_image_on_its_own():
    """A ragged set (3x5 and 4x4 images interleaved): bytes, rate, token cosine, rel L2 and probe accuracy equal
    those of coding every image alone on its own grid, in the file's order."""
    from ntc_export.data.tokens import MixedTokenSet
    from ntc_export.evaluate.rate_distortion import fit_pooled_probe, measure, original_row

    rng, d = np.random.default_rng(0), 12
    images = {i: rng.standard_normal((3, 5, d) if i % 2 else (4, 4, d)).astype(np.float32) + i % 3 for i in range(7)}
    labels = np.array([i % 3 for i in range(7)])
    groups = []
    for idx in (np.array([1, 3, 5]), np.array([0, 2, 4, 6])):
        tokens = np.stack([np.concatenate([np.zeros((1, d), np.float32), images[i].reshape(-1, d)]) for i in idx])
        groups.append((idx, TokenSet(tokens, images[idx[0]].shape[:2], labels[idx])))
    ragged = MixedTokenSet(groups)
    train = rng.standard_normal((20, 16, d)).astype(np.float32)
    codec = pca_reference.codec(train, *pca_reference.fit_basis(train), k=4, bits=5)
    probe = fit_pooled_probe(np.stack([images[i].reshape(-1, d).mean(0) for i in range(7)]), labels)
    row = measure("pca", codec, ragged, probe, with_saliency=False)
    alone = [codec.encode(images[i][None])[0] for i in range(7)]
    decoded = [codec.decode([p])[0] for p in alone]
    original = np.concatenate([images[i].reshape(-1, d) for i in range(7)])
    flat = np.concatenate(decoded)
    cos = (flat * original).sum(1) / np.linalg.norm(flat, axis=1) / np.linalg.norm(original, axis=1)
    assert row["bytes_per_image"] == np.mean([len(p) for p in alone]) and row["samples"] == 7
    assert row["rate"] == pytest.approx(np.mean([images[i].size * 2 for i in range(7)]) / row["bytes_per_image"])
    assert row["cosine"] == pytest.approx(cos.mean(), abs=1e-6)
    assert row["rel_l2"] == pytest.approx(np.linalg.norm(flat - original) / np.linalg.norm(original), rel=1e-6)
    assert row["probe_accuracy"] == probe.score(np.stack([x.mean(0) for x in decoded]), labels)
    assert original_row(ragged)["bytes_per_image"] == np.mean([images[i].size * 2 for i in range(7)])
