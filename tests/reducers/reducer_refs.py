"""Plain numpy/loop references written from the papers' pseudo-code, one image at a time (float64)."""

import numpy as np


def _unit(v: np.ndarray) -> np.ndarray:
    return v / np.linalg.norm(v)


def tome(x: np.ndarray, r: int, steps: int, keys: np.ndarray | None = None):
    """ToMe bipartite soft matching with merge_wavg, `steps` times, unmerged A kept in grid order: (tokens [N', D],
    sizes [N'], sources [N'] sets, margin: the smallest score gap any decision rested on (r-th vs (r+1)-th edge,
    a merged A token's best vs second-best B match))."""
    margin = np.inf
    toks = [row.astype(np.float64) for row in x]
    sizes = [1.0] * len(toks)
    ks = None if keys is None else [row.astype(np.float64) for row in keys]
    sources = [{i} for i in range(len(toks))]
    for _ in range(steps):
        metric = ks if ks is not None else toks
        a, b = list(range(0, len(toks), 2)), list(range(1, len(toks), 2))
        best, match = [], []
        second = []
        for i in a:
            scores = [float(_unit(metric[i]) @ _unit(metric[j])) for j in b]
            match.append(int(np.argmax(scores)))  # first maximum, as torch.max / ArgMax
            best.append(max(scores))
            second.append(sorted(scores)[-2] if len(scores) > 1 else -np.inf)
        edges = sorted(range(len(a)), key=lambda e: -best[e])  # stable: equal scores keep A order
        merged, unmerged = edges[:r], sorted(edges[r:])
        gaps = [best[e] - second[e] for e in merged] + ([best[edges[r - 1]] - best[edges[r]]] if r < len(a) else [])
        margin = min(margin, *gaps)
        sums = {j: toks[b[j]] * sizes[b[j]] for j in range(len(b))}
        ksum = None if ks is None else {j: ks[b[j]] * sizes[b[j]] for j in range(len(b))}
        size = {j: sizes[b[j]] for j in range(len(b))}
        src = {j: set(sources[b[j]]) for j in range(len(b))}
        for e in merged:
            i, j = a[e], match[e]
            sums[j] = sums[j] + toks[i] * sizes[i]
            if ksum is not None:
                ksum[j] = ksum[j] + ks[i] * sizes[i]
            size[j] += sizes[i]
            src[j] |= sources[i]
        order = [a[e] for e in unmerged]
        new_toks = [toks[i] for i in order] + [sums[j] / size[j] for j in range(len(b))]
        if ks is not None:
            ks = [ks[i] for i in order] + [ksum[j] / size[j] for j in range(len(b))]
        sources = [sources[i] for i in order] + [src[j] for j in range(len(b))]
        sizes = [sizes[i] for i in order] + [size[j] for j in range(len(b))]
        toks = new_toks
    return np.array(toks), np.array(sizes), sources, margin


def visionzip(x: np.ndarray, score: np.ndarray, dominant: int, contextual: int, keys: np.ndarray | None = None):
    """VisionZip on one image: (tokens [dominant + contextual, D], dominant positions ascending, margin: the smallest
    gap between a merged token's best and second-best target cosine)."""
    n = len(x)
    dom = sorted(int(i) for i in np.argsort(-score, kind="stable")[:dominant])
    rest = [i for i in range(n) if i not in dom]
    metric = x if keys is None else keys
    step = max(1, len(rest) // contextual)
    targets = list(range(0, len(rest), step))[:contextual]
    others = [p for p in range(len(rest)) if p not in targets]
    acc = [np.zeros(x.shape[1]) for _ in targets]
    count = [0] * len(targets)
    margin = np.inf
    for p in others:
        sims = [float(_unit(metric[rest[p]].astype(np.float64)) @ _unit(metric[rest[t]].astype(np.float64)))
                for t in targets]
        t = int(np.argmax(sims))
        margin = min(margin, sims[t] - (sorted(sims)[-2] if len(sims) > 1 else -np.inf))
        acc[t] += x[rest[p]]
        count[t] += 1
    ctx = [x[rest[t]] + acc[q] / max(count[q], 1) for q, t in enumerate(targets)]
    return np.concatenate([x[dom], np.array(ctx)]), np.array(dom), margin


def ovis_vet(x: np.ndarray, stride: int, w_head: np.ndarray, ln_w: np.ndarray, ln_b: np.ndarray, table: np.ndarray,
             hard: bool = False, eps: float = 1e-5):
    """Ovis visual tokenizer + VTE on one image's tokens [h, w, D] (or [h*w, D] on a square grid): (embeddings
    [N', D_out], word ids [N'], each cell's gap between its best and second-best logit [N'])."""
    if x.ndim == 2:
        side = int(round(len(x) ** 0.5))
        x = x.reshape(side, side, -1)
    h, w = x.shape[:2]
    ph, pw = -(-h // stride) * stride, -(-w // stride) * stride
    grid = np.zeros((ph, pw, x.shape[2]))
    grid[:h, :w] = x
    out, ids, gaps = [], [], []
    for gy in range(0, ph, stride):
        for gx in range(0, pw, stride):
            cell = np.concatenate([grid[gy + dy, gx + dx] for dy in range(stride) for dx in range(stride)])
            logit = w_head.astype(np.float64) @ cell
            logit = (logit - logit.mean()) / np.sqrt(logit.var() + eps) * ln_w + ln_b
            word = int(np.argmax(logit))
            ids.append(word)
            gaps.append(logit[word] - np.sort(logit)[-2])
            if hard:
                out.append(table[word].astype(np.float64))
            else:
                p = np.exp(logit - logit.max())
                out.append((p / p.sum()) @ table.astype(np.float64))
    return np.array(out), np.array(ids), np.array(gaps)


def ovis_vet_of(module, x: np.ndarray, hard: bool):
    """ovis_vet with an OvisVET module's weights (as float64): (embeddings, word ids, logit gaps) of one image's tokens
    [h, w, D] (or [h*w, D] on a square grid)."""
    p = {k: v.numpy().astype(np.float64) for k, v in module.state_dict().items()}
    return ovis_vet(x, module.stride, p["tokenizer_head.0.weight"], p["tokenizer_head.1.weight"],
                    p["tokenizer_head.1.bias"], p["vte.weight"], hard)
