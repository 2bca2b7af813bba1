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
    n = len(tokens)
    nbytes, fp16_bytes, sal = np.zeros(n), np.zeros(n), np.zeros(n)
    features = np.zeros((n, token_dim(tokens)), np.float32)
    originals, decodeds = [], []
    for idx, ts in tokens.by_grid():
        patches = ts.patch_tokens
        payloads, decoded = roundtrip(codec, ts.grid_tokens)
        decoded = decoded.reshape(patches.shape)
        nbytes[idx], fp16_bytes[idx] = [len(p) for p in payloads], patches.shape[1] * patches.shape[2] * 2
        features[idx] = decoded.mean(1)
        if with_saliency:
            sal[idx] = saliency_rs(ts.tokens, decoded, grid=ts.grid)
        originals.append(patches.reshape(-1, patches.shape[-1]))
        decodeds.append(decoded.reshape(-1, patches.shape[-1]))
    original, decoded = np.concatenate(originals), np.concatenate(decodeds)
    fid = fidelity(original, decoded)
    return {
        "model": name, "family": codec.family, "arch": getattr(codec, "arch", None),
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


def rate_distortion(models: dict, tokens, train, pca_rates=None, with_saliency: bool = True,
                    pca_cell: int = 1) -> list[dict]:
    """Rows for every model ({name: module with the compressor contract}), the original tokens, and a PCA
    reference row at each model's measured rate (or at `pca_rates`), all on `tokens`; PCA and probe fit on `train`
    (`pca_cell` c > 1: PCA of c x c token cells). Either set may hold images on several grids."""
    if token_dim(train) != token_dim(tokens):
        raise NtcError(f"training tokens are {token_dim(train)}-d, the data {token_dim(tokens)}-d")
    for name, module in models.items():
        if not getattr(module, "is_compressor", False):
            raise NtcError(f"{name} ({getattr(module, 'arch', '?')}) is not a compressor: rate-distortion needs one")
    probe = fit_pooled_probe(pooled(train), train.labels) if train.labels is not None else None
    rows = [original_row(tokens, probe)]
    rows += [measure(name, module, tokens, probe, with_saliency) for name, module in models.items()]
    fit = pca_reference.fit_units(train, pca_cell)
    basis = pca_reference.fit_basis(fit)
    rates = pca_rates or sorted({round(r["rate"], 1) for r in rows[1:]})
    prefix = "pca" if pca_cell == 1 else f"pca{pca_cell}x{pca_cell}"
    for rate in rates:
        ref = pca_reference.for_rate(fit, rate, basis)
        if pca_cell > 1:
            ref = pca_reference.CellPcaCodec(ref, pca_cell)
        rows.append(measure(f"{prefix}@{rate:g}x", ref, tokens, probe, with_saliency))
    return rows
