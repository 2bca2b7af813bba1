"""Fidelity metrics of a run result against the golden (PyTorch) output."""

import numpy as np


def token_cosine(a: np.ndarray, b: np.ndarray) -> float:
    """Mean over tokens of the cosine between matching token vectors (last axis)."""
    num = (a * b).sum(-1)
    return float((num / (np.linalg.norm(a, axis=-1) * np.linalg.norm(b, axis=-1) + 1e-12)).mean())


def fidelity(ref: np.ndarray, got: np.ndarray) -> dict[str, float]:
    """max_abs, rel_l2, cosine, snr_db of `got` against `ref` (computed in float64)."""
    ref = np.asarray(ref, dtype=np.float64).ravel()
    got = np.asarray(got, dtype=np.float64).ravel()
    if ref.shape != got.shape:
        raise ValueError(f"shape mismatch: reference {ref.shape} vs result {got.shape}")
    err = got - ref
    ref_norm = float(np.linalg.norm(ref))
    err_norm = float(np.linalg.norm(err))
    got_norm = float(np.linalg.norm(got))
    cosine = float(ref @ got / (ref_norm * got_norm)) if ref_norm > 0 and got_norm > 0 else float(ref_norm == got_norm)
    rel_l2 = err_norm / ref_norm if ref_norm > 0 else err_norm
    snr_db = float("inf") if err_norm == 0 else 20.0 * np.log10(max(ref_norm, 1e-300) / err_norm)
    return {
        "max_abs": float(np.abs(err).max()) if err.size else 0.0,
        "rel_l2": float(rel_l2),
        "cosine": cosine,
        "snr_db": float(snr_db),
    }


def concat_outputs(parts: list[dict]) -> dict[str, np.ndarray]:
    """One output dict from per-grid-group outputs, in group order: concatenated along the batch where the groups'
    shapes agree past it (logits, one grid), else each group flattened to [-1, last dim] (token outputs of different
    token counts), else raveled (integer maps whose last axis is a grid side): what fidelity and agreement read."""
    if len(parts) == 1:
        return dict(parts[0])
    out = {}
    for name in parts[0]:
        arrays = [np.asarray(p[name]) for p in parts]
        if len({a.shape[1:] for a in arrays}) == 1:
            out[name] = np.concatenate(arrays)
        elif arrays[0].ndim >= 2 and len({a.shape[-1] for a in arrays}) == 1:
            out[name] = np.concatenate([a.reshape(-1, a.shape[-1]) for a in arrays])
        else:
            out[name] = np.concatenate([a.ravel() for a in arrays])
    return out
