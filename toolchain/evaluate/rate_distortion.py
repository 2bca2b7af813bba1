"""Rate-distortion of compressors on the same tokens, read against the PCA reference line.

A row per codec (a compressor or a PCA reference, anything with the compressor contract): bytes per image (mean
length of its real payloads), rate (fp16 tokens / bytes), mean per-token cosine, rel L2 and SNR of the decoded
tokens, the ViT saliency head's Pearson r between maps from decoded and original tokens, and a linear probe's
accuracy on decoded tokens where the data has labels. The probe and the PCA references are fitted on training
tokens only, never on the tokens being measured. Token sets on several grids are coded grid group by grid group;
per-image figures (bytes, rate, saliency r, probe) average over images, token figures over every token.
"""

import numpy as np

from ..util.errors import NtcError
from . import pca_reference
from .fidelity import fidelity, token_cosine

BATCH = 32


def fit_probe(train_tokens: np.ndarray, labels: np.ndarray):
    """Logistic regression on mean-pooled original training tokens (standardised)."""
    return fit_pooled_probe(train_tokens.mean(1), labels)


def fit_pooled_probe(features: np.ndarray, labels: np.ndarray):
    """Logistic regression on mean-pooled tokens [N, D] (standardised)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    return make_pipeline(StandardScaler(), LogisticRegression(max_iter=3000, C=0.5)).fit(features, labels)


def pooled(tokens) -> np.ndarray:
    """Each image's mean patch token [N, D] of a token set (any grids), in the set's order."""
    out = np.empty((len(tokens), token_dim(tokens)), np.float32)
    for idx, ts in tokens.by_grid():
        out[idx] = ts.patch_tokens.mean(1)
    return out


def token_dim(tokens) -> int:
    return tokens.by_grid()[0][1].tokens.shape[-1]


def saliency_rs(tokens_with_cls: np.ndarray, decoded: np.ndarray, reference: np.ndarray | None = None,
                grid=None) -> list[float]:
    """Per image, the Pearson r between saliency maps of the original tokens (`reference`: those maps, computed
    before) and of the decoded ones (CLS kept original), on `grid` (h, w; square when None)."""
    from ..data.vit import saliency

    recon = np.concatenate([tokens_with_cls[:, :1], decoded], axis=1)
    a = (saliency(tokens_with_cls, grid) if reference is None else reference).reshape(len(recon), -1)
    b = saliency(recon, grid).reshape(len(recon), -1)
    return [float(np.corrcoef(x, y)[0, 1]) for x, y in zip(a, b)]


def saliency_r(tokens_with_cls: np.ndarray, decoded: np.ndarray, reference: np.ndarray | None = None,
               grid=None) -> float:
    """Mean Pearson r between saliency maps of the original and the decoded tokens (see saliency_rs)."""
    return float(np.mean(saliency_rs(tokens_with_cls, decoded, reference, grid)))


def encode_batched(codec, patch_tokens: np.ndarray) -> list[bytes]:
    """Every image's payload, encoded BATCH images at a time (bounded memory)."""
    return [p for start in range(0, len(patch_tokens), BATCH)
            for p in codec.encode(np.ascontiguousarray(patch_tokens[start:start + BATCH]))]


def encode_set(codec, tokens) -> list[bytes]:
    """Every image's payload of a token set (any grids), in the set's order: each grid group encoded on its own."""
    payloads = [b""] * len(tokens)
    for idx, ts in tokens.by_grid():
        for i, p in zip(idx, encode_batched(codec, ts.grid_tokens)):
            payloads[i] = p
    return payloads


def roundtrip(codec, tokens: np.ndarray) -> tuple[list[bytes], np.ndarray]:
    """(payloads, decoded tokens [N, h*w, D]) of `codec` over patch tokens of one grid ([N, h, w, D]), in batches."""
    payloads = encode_batched(codec, tokens)
    decoded = [codec.decode(payloads[s:s + BATCH]) for s in range(0, len(payloads), BATCH)]
    return payloads, np.concatenate(decoded)


def measure(name: str, codec, tokens, probe=None, with_saliency: bool = True) -> dict:
    """One rate-distortion row of `codec` on a token set (any grids)."""
    groups = []
    for idx, ts in tokens.by_grid():
        payloads, decoded = roundtrip(codec, ts.grid_tokens)
        groups.append((idx, ts, [len(p) for p in payloads], decoded))
    return row(name, codec.family, getattr(codec, "arch", None), tokens, groups, probe, with_saliency)


def row(name: str, family: str, arch, tokens, groups, probe=None, with_saliency: bool = True) -> dict:
    """A rate-distortion row from a route's results per grid group of `tokens`: (indices, single-grid TokenSet,
    bytes per image, decoded patch tokens [n, h*w, D])."""
    n = len(tokens)
    nbytes, fp16_bytes, sal = np.zeros(n), np.zeros(n), np.zeros(n)
    features = np.zeros((n, token_dim(tokens)), np.float32)
    originals, decodeds = [], []
    for idx, ts, lengths, decoded in groups:
        patches = ts.patch_tokens
        decoded = np.asarray(decoded, np.float32).reshape(patches.shape)
        nbytes[idx], fp16_bytes[idx] = lengths, patches.shape[1] * patches.shape[2] * 2
        features[idx] = decoded.mean(1)
        if with_saliency:
            sal[idx] = saliency_rs(ts.tokens, decoded, grid=ts.grid)
        originals.append(patches.reshape(-1, patches.shape[-1]))
        decodeds.append(decoded.reshape(-1, patches.shape[-1]))
    original, decoded = np.concatenate(originals), np.concatenate(decodeds)
    fid = fidelity(original, decoded)
    return {
        "model": name, "family": family, "arch": arch,
        "bytes_per_image": float(nbytes.mean()), "rate": float(fp16_bytes.mean() / nbytes.mean()),
        "cosine": token_cosine(decoded, original), "rel_l2": fid["rel_l2"], "snr_db": fid["snr_db"],
        "saliency_r": float(sal.mean()) if with_saliency else None,
        "probe_accuracy": (float(probe.score(features, tokens.labels))
                           if probe is not None and tokens.labels is not None else None),
        "samples": int(n),
    }


def fp16_bytes_per_image(tokens) -> float:
    """Mean bytes of an image's patch tokens in fp16 over a token set (any grids)."""
    return float(np.mean([ts.patch_tokens[0].size * 2 for idx, ts in tokens.by_grid() for _ in idx]))


def original_row(tokens, probe=None) -> dict:
    """The fp16 tokens themselves: rate 1, the probe accuracy every row is read against."""
    return {"model": "original tokens (fp16)", "family": "original", "arch": None,
            "bytes_per_image": fp16_bytes_per_image(tokens), "rate": 1.0, "cosine": 1.0,
            "rel_l2": 0.0, "snr_db": float("inf"), "saliency_r": 1.0,
            "probe_accuracy": (float(probe.score(pooled(tokens), tokens.labels))
                               if probe is not None and tokens.labels is not None else None),
            "samples": int(len(tokens))}


def rate_distortion(models: dict, tokens, train, pca_rates=None, with_saliency: bool = True, pca_cell: int = 1,
                    quant: bool = True, pictures=None, routes=(), cost: bool = False) -> list[dict]:
    """Rows for every model ({name: module with the compressor contract}), the original tokens, a PCA reference row
    at each model's measured rate (or at `pca_rates`), the token-quantization references (`quant`) and a pixel row
    per route where the source `pictures` are given, all on `tokens`; PCA and probe fit on `train` (`pca_cell`
    c > 1: PCA of c x c token cells). Either set may hold images on several grids. `cost`: every row but the
    original's carries `decode_cost` (evaluate/route_costs.py)."""
    if token_dim(train) != token_dim(tokens):
        raise NtcError(f"training tokens are {token_dim(train)}-d, the data {token_dim(tokens)}-d")
    for name, module in models.items():
        if not getattr(module, "is_compressor", False):
            raise NtcError(f"{name} ({getattr(module, 'arch', '?')}) is not a compressor: rate-distortion needs one")
    from . import route_costs

    probe = fit_pooled_probe(pooled(train), train.labels) if train.labels is not None else None

    def coded(name, codec):
        r = measure(name, codec, tokens, probe, with_saliency)
        return {**r, "decode_cost": route_costs.codec_cost(codec, tokens)} if cost else r

    rows = [coded(name, module) for name, module in models.items()]
    rates = pca_rates or sorted({round(r["rate"], 1) for r in rows})
    rows.insert(0, original_row(tokens, probe))
    references = reference_codecs(train, rates, pca_cell, quant, one_per_codec=not pca_rates)
    rows += [coded(name, codec) for name, codec in references.items()]
    if pictures is not None and routes:
        pixels = pixel_rows(tokens, pictures, routes, probe, with_saliency)
        if cost:
            costs = route_costs.pixel_costs(pixels, tokens, pictures)
            pixels = [{**r, "decode_cost": c} for r, c in zip(pixels, costs)]
        rows += pixels
    return rows


def reference_codecs(train, rates, pca_cell: int = 1, quant: bool = True, one_per_codec: bool = False) -> dict:
    """{row name: codec} of the references that need no training beyond a fit on `train`: PCA + uniform
    quantization at each rate (`one_per_codec`: close rates that pick the same components and bits give one row),
    and (`quant`) fp8 / int8 / int4 token quantization."""
    from . import quant_reference

    fit = pca_reference.fit_units(train, pca_cell)
    basis = pca_reference.fit_basis(fit)
    prefix = "pca" if pca_cell == 1 else f"pca{pca_cell}x{pca_cell}"
    out = {}
    for rate in rates:
        ref = pca_reference.for_rate(fit, rate, basis)
        codec = pca_reference.CellPcaCodec(ref, pca_cell) if pca_cell > 1 else ref
        if not one_per_codec or codec.arch not in {c.arch for c in out.values()}:
            out[f"{prefix}@{rate:g}x"] = codec
    return {**out, **(quant_reference.reference_codecs() if quant else {})}


def pixel_rows(tokens, pictures, routes, probe=None, with_saliency: bool = True, progress: bool = False
               ) -> list[dict]:
    """A row per pixel route (evaluate/pixel_reference.py): the source pictures coded, decoded and re-encoded by the
    ViT, read against the token file's own tokens (`pictures`: pixel_reference.matched_pictures); `image_decode_ms`
    is the picture decode's mean time per image."""
    from . import pixel_reference

    groups = pixel_reference.pictures_by_grid(tokens, pictures)
    rows = []
    for route in routes:
        results = pixel_reference.route_results(route, groups, progress)
        r = row(route.name, pixel_reference.FAMILY, route.arch, tokens,
                [(idx, ts, lengths, decoded) for idx, ts, lengths, decoded, _ in results], probe, with_saliency)
        r["image_decode_ms"] = float(np.average([ms for *_, ms in results], weights=[len(i) for i, *_ in results]))
        rows.append(r)
    return rows


def series_of(r: dict) -> str:
    """The line a row belongs to: its family (a learned family, pca, quant), or its picture codec for pixel rows."""
    if r["family"] == "pixels":
        return f"{str(r['arch']).rsplit('-q', 1)[0]} → ViT"
    return r["family"]


def bytes_at(rows: list[dict], cosine: float) -> dict[str, float | None]:
    """Per series, the bytes per image at which it reaches token cosine `cosine`: log-linear interpolation between
    the two points of its upper frontier that bracket it; its smallest point where that already reaches it; None
    where no point does."""
    out = {}
    for series in dict.fromkeys(series_of(r) for r in rows if r["family"] != "original"):
        points = sorted((r["bytes_per_image"], r["cosine"]) for r in rows if series_of(r) == series)
        frontier, best = [], -np.inf
        for b, c in points:  # keep only points better than every smaller one
            if c > best:
                frontier.append((b, c))
                best = c
        above = next((i for i, (_, c) in enumerate(frontier) if c >= cosine), None)
        if above is None:
            out[series] = None
        elif above == 0:
            out[series] = frontier[0][0]
        else:
            (b0, c0), (b1, c1) = frontier[above - 1], frontier[above]
            out[series] = float(np.exp(np.log(b0) + (cosine - c0) / (c1 - c0) * (np.log(b1) - np.log(b0))))
    return out


DEFAULT_AT = (0.99,)
REFERENCE_FAMILIES = ("original", "pca", "quant", "pixels")


def best_at(rows: list[dict], cosine: float) -> dict:
    """At token cosine `cosine`: the learned line and the picture line needing the fewest bytes, their bytes and the
    ratio (learned / picture; > 1: the picture route is smaller)."""
    need = bytes_at(rows, cosine)
    pixel_series = {series_of(r) for r in rows if r["family"] == "pixels"}
    learned = {s: b for s, b in need.items() if b is not None and s not in pixel_series
               and s not in REFERENCE_FAMILIES}
    pictures = {s: b for s, b in need.items() if b is not None and s in pixel_series}
    best_l = min(learned, key=learned.get) if learned else None
    best_p = min(pictures, key=pictures.get) if pictures else None
    return {"cosine": cosine, "codec": best_l, "codec_bytes": learned.get(best_l), "picture": best_p,
            "picture_bytes": pictures.get(best_p),
            "ratio": learned[best_l] / pictures[best_p] if best_l and best_p else None}


def summary_lines(rows: list[dict], at) -> list[str]:
    """One line per cosine: the bytes our best codec and the best picture route need, and their ratio."""
    lines = []
    for c in at:
        b = best_at(rows, c)
        codec = f"{b['codec']} {b['codec_bytes']:,.0f} B" if b["codec"] else "no codec reaches it"
        picture = f"{b['picture']} {b['picture_bytes']:,.0f} B" if b["picture"] else "no picture route reaches it"
        ratio = f"; bytes ratio codec/picture {b['ratio']:.2f}" if b["ratio"] else ""
        lines.append(f"at token cosine {c:g}: best codec {codec}; best picture route {picture}{ratio}")
    return lines
