"""Rate-distortion of compressors on the same tokens, read against the PCA reference line.

A row per codec (a compressor or a PCA reference, anything with the compressor contract): bytes per image (mean
length of its real payloads), rate (fp16 tokens / bytes), mean per-token cosine, rel L2 and SNR of the decoded
tokens, the ViT saliency head's Pearson r between maps from decoded and original tokens, and a linear probe's
accuracy on decoded tokens where the data has labels. The probe and the PCA references are fitted on training
tokens only, never on the tokens being measured.
"""

import numpy as np

from ..util.errors import NtcError
from . import pca_reference
from .fidelity import fidelity, token_cosine

BATCH = 32


def fit_probe(train_tokens: np.ndarray, labels: np.ndarray):
    """Logistic regression on mean-pooled original training tokens (standardised)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    return make_pipeline(StandardScaler(), LogisticRegression(max_iter=3000, C=0.5)).fit(train_tokens.mean(1), labels)


def saliency_r(tokens_with_cls: np.ndarray, decoded: np.ndarray, reference: np.ndarray | None = None) -> float:
    """Mean Pearson r between saliency maps of the original tokens (`reference`: those maps, computed before) and of
    the decoded ones (CLS kept original)."""
    from ..data.vit import saliency

    recon = np.concatenate([tokens_with_cls[:, :1], decoded], axis=1)
    a = (saliency(tokens_with_cls) if reference is None else reference).reshape(len(recon), -1)
    b = saliency(recon).reshape(len(recon), -1)
    return float(np.mean([np.corrcoef(x, y)[0, 1] for x, y in zip(a, b)]))


def encode_batched(codec, patch_tokens: np.ndarray) -> list[bytes]:
    """Every image's payload, encoded BATCH images at a time (bounded memory)."""
    return [p for start in range(0, len(patch_tokens), BATCH)
            for p in codec.encode(np.ascontiguousarray(patch_tokens[start:start + BATCH]))]


def roundtrip(codec, patch_tokens: np.ndarray) -> tuple[list[bytes], np.ndarray]:
    """(payloads, decoded tokens) of `codec` over the tokens, in batches."""
    payloads = encode_batched(codec, patch_tokens)
    decoded = [codec.decode(payloads[s:s + BATCH]) for s in range(0, len(payloads), BATCH)]
    return payloads, np.concatenate(decoded)


def measure(name: str, codec, tokens, probe=None, with_saliency: bool = True) -> dict:
    """One rate-distortion row of `codec` on a TokenSet."""
    patches = tokens.patch_tokens
    payloads, decoded = roundtrip(codec, patches)
    nbytes = float(np.mean([len(p) for p in payloads]))
    fp16_bytes = patches.shape[1] * patches.shape[2] * 2
    fid = fidelity(patches, decoded)
    return {
        "model": name, "family": codec.family, "arch": getattr(codec, "arch", None),
        "bytes_per_image": nbytes, "rate": fp16_bytes / nbytes, "cosine": token_cosine(decoded, patches),
        "rel_l2": fid["rel_l2"], "snr_db": fid["snr_db"],
        "saliency_r": saliency_r(tokens.tokens, decoded) if with_saliency else None,
        "probe_accuracy": (float(probe.score(decoded.mean(1), tokens.labels))
                           if probe is not None and tokens.labels is not None else None),
        "samples": int(len(patches)),
    }


def original_row(tokens, probe=None) -> dict:
    """The fp16 tokens themselves: rate 1, the probe accuracy every row is read against."""
    patches = tokens.patch_tokens
    return {"model": "original tokens (fp16)", "family": "original", "arch": None,
            "bytes_per_image": float(patches.shape[1] * patches.shape[2] * 2), "rate": 1.0, "cosine": 1.0,
            "rel_l2": 0.0, "snr_db": float("inf"), "saliency_r": 1.0,
            "probe_accuracy": (float(probe.score(patches.mean(1), tokens.labels))
                               if probe is not None and tokens.labels is not None else None),
            "samples": int(len(patches))}


def rate_distortion(models: dict, tokens, train, pca_rates=None, with_saliency: bool = True,
                    pca_cell: int = 1) -> list[dict]:
    """Rows for every model ({name: module with the compressor contract}), the original tokens, and a PCA
    reference row at each model's measured rate (or at `pca_rates`), all on `tokens`; PCA and probe fit on `train`
    (`pca_cell` c > 1: PCA of c x c token cells)."""
    if train.patch_tokens.shape[-1] != tokens.patch_tokens.shape[-1]:
        raise NtcError(f"training tokens are {train.patch_tokens.shape[-1]}-d, the data "
                       f"{tokens.patch_tokens.shape[-1]}-d")
    for name, module in models.items():
        if not getattr(module, "is_compressor", False):
            raise NtcError(f"{name} ({getattr(module, 'arch', '?')}) is not a compressor: rate-distortion needs one")
    probe = fit_probe(train.patch_tokens, train.labels) if train.labels is not None else None
    rows = [original_row(tokens, probe)]
    rows += [measure(name, module, tokens, probe, with_saliency) for name, module in models.items()]
    fit = train.patch_tokens if pca_cell == 1 else pca_reference.to_cells(train.patch_tokens, pca_cell)
    basis = pca_reference.fit_basis(fit)
    rates = pca_rates or sorted({round(r["rate"], 1) for r in rows[1:]})
    prefix = "pca" if pca_cell == 1 else f"pca{pca_cell}x{pca_cell}"
    for rate in rates:
        ref = pca_reference.for_rate(fit, rate, basis)
        if pca_cell > 1:
            ref = pca_reference.CellPcaCodec(ref, pca_cell)
        rows.append(measure(f"{prefix}@{rate:g}x", ref, tokens, probe, with_saliency))
    return rows
