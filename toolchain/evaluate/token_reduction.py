"""Token-count reducers and projectors on tasks, on held-out data: every output token scattered back to the grid
positions it stands for (its cover), then the ViT saliency head and the linear probe read the scattered-back tokens.

Covers: ToMe and VisionZip from their graphs' `source` outputs; ovis_vet and the projectors from their fixed
geometry on the token set's grid h x w (k x k cells of the grid zero-padded to a multiple of k; conv16x's two
stride-2 convolutions: 4 x 4 cells,
the stride cells, though each output also sees a ring of neighbours). Outputs outside the ViT's token space
(ovis_vet embeddings, projector outputs) are mapped back by a ridge readout fitted on the training split (output
token -> mean of the ViT tokens it covers). Baselines at the same token counts: uniform grid subsampling (each
position takes its nearest kept token) and average pooling over the same nearest-centre regions.
Every method's tokens come from its exported graph run in ONNX Runtime (fp32), fed on the set's grid. A token set
holds one grid (any h x w); its covers are on that grid.
"""

import tempfile
from pathlib import Path

import numpy as np

from ..models.grid import grid_pair
from ..util.errors import NtcError
from .rate_distortion import fit_probe, saliency_r

BATCH = 64
CELLS = {"mlp2x_gelu": 1, "patch_merger": 2, "pixel_shuffle": 2, "merge3x3": 3, "conv16x": 4}
REDUCERS = ("tome", "visionzip")  # outputs are ViT tokens, with a traced cover
READOUT_ROWS = 60000  # ridge rows kept (evenly spaced) to bound memory


def cell_cover(grid, k: int) -> np.ndarray:
    """0/1 [ceil(h/k)*ceil(w/k), h*w] on `grid` (h, w; or a square's side): output token i (row-major over the
    padded grid) covers its k x k cell."""
    h, w = grid_pair(grid)
    cols = -(-w // k)
    r, c = np.divmod(np.arange(h * w), w)
    cover = np.zeros((-(-h // k) * cols, h * w), np.float32)
    cover[(r // k) * cols + c // k, np.arange(h * w)] = 1
    return cover


def lattice(grid, count: int) -> np.ndarray:
    """`count` evenly spaced positions of `grid` (h, w; or a square's side), row-major indices: on a square grid
    with a square count, a sqrt x sqrt lattice; else evenly spaced row-major indices."""
    h, w = grid_pair(grid)
    root = int(round(count ** 0.5))
    if h == w and root * root == count:
        axis = np.linspace(0, h - 1, root).round().astype(int)
        return (axis[:, None] * w + axis[None, :]).ravel()
    return np.linspace(0, h * w - 1, count).round().astype(int)


def nearest_cover(grid, centres: np.ndarray) -> np.ndarray:
    """0/1 [len(centres), h*w] on `grid` (h, w; or a square's side): each position covered by its nearest centre
    (ties: the first)."""
    h, w = grid_pair(grid)
    pos = np.stack(np.divmod(np.arange(h * w), w), 1)
    d = ((pos[None] - pos[centres][:, None]) ** 2).sum(-1)
    cover = np.zeros((len(centres), h * w), np.float32)
    cover[d.argmin(0), np.arange(h * w)] = 1
    return cover


def scatter_back(tokens_out: np.ndarray, cover: np.ndarray) -> np.ndarray:
    """tokens_out [B, n, D], cover [B or 1, n, N] -> [B, N, D]: each position the mean of the tokens covering it
    (exactly one for every method here; zero where none)."""
    cover = np.broadcast_to(cover, (len(tokens_out), *cover.shape[1:]))
    counts = np.maximum(cover.sum(1), 1)[..., None]
    return np.einsum("bnp,bnd->bpd", cover, tokens_out, optimize=True) / counts


def covered_mean(patch_tokens: np.ndarray, cover: np.ndarray) -> np.ndarray:
    """[B, N, D], cover [B or 1, n, N] -> [B, n, D]: the mean ViT token of each output's cover."""
    cover = np.broadcast_to(cover, (len(patch_tokens), *cover.shape[1:]))
    return np.einsum("bnp,bpd->bnd", cover, patch_tokens, optimize=True) / np.maximum(cover.sum(2), 1)[..., None]


class Readout:
    """Ridge map from output tokens to ViT token space (with a bias), fitted in closed form."""

    def __init__(self, weight: np.ndarray, bias: np.ndarray):
        self.weight, self.bias = weight, bias

    @classmethod
    def fit(cls, x: np.ndarray, y: np.ndarray, alpha: float = 1.0) -> "Readout":
        """x [M, D_out] -> y [M, D]; alpha scaled by the mean feature variance (unit-free)."""
        mx, my = x.mean(0), y.mean(0)
        xc = (x - mx).astype(np.float64)
        gram = xc.T @ xc
        gram[np.diag_indices_from(gram)] += alpha * np.trace(gram) / len(gram)
        weight = np.linalg.solve(gram, xc.T @ (y - my)).astype(np.float32)
        return cls(weight, (my - mx @ weight).astype(np.float32))

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return x @ self.weight + self.bias


def fit_readout(tokens_out: np.ndarray, cover: np.ndarray, patch_tokens: np.ndarray) -> Readout:
    """Readout fitted on training outputs: each output token -> the mean of the ViT tokens it covers."""
    y = covered_mean(patch_tokens, cover).reshape(-1, patch_tokens.shape[-1])
    x = tokens_out.reshape(-1, tokens_out.shape[-1])
    keep = np.linspace(0, len(x) - 1, min(len(x), READOUT_ROWS)).round().astype(int)
    return Readout.fit(x[keep], y[keep])


def kind_of(module) -> str:
    """'reducer' (ViT-space outputs with a traced cover), 'projector' (fixed cells, a readout back to ViT space);
    a one-line NtcError for anything else."""
    arch = getattr(module, "arch", "?")
    if arch in REDUCERS:
        return "reducer"
    if arch in CELLS or arch == "ovis_vet":
        return "projector"
    raise NtcError(f"{arch} is neither a token-count reducer ({', '.join(REDUCERS)}) nor a projector "
                   f"({', '.join([*CELLS, 'ovis_vet'])})")


def traced(module):
    """The same reducer with its `source` output."""
    return type(module)(**{**module.config, "trace_source": True}).eval()


def run_outputs(module, tokens, folder: Path) -> tuple[np.ndarray, np.ndarray]:
    """(tokens_out [B, n, D_out], cover [B or 1, n, h*w]) of `module`'s exported fp32 graph over a TokenSet (one
    grid, fed on it)."""
    from ..backend.onnx.export import export_model
    from ..backend.onnxrt.runner import OrtRunner
    from ..data.tokens import model_fields

    kind = kind_of(module)
    graph = traced(module) if kind == "reducer" else module.eval()
    runner = OrtRunner(export_model(graph, folder, ("fp32",))["fp32"], providers=["CPUExecutionProvider"])
    fields = model_fields(graph, tokens)
    outs, covers = [], []
    for s in range(0, len(tokens), BATCH):
        feeds = graph.prepare_inputs(tokens.grid_tokens[s:s + BATCH], **{k: v[s:s + BATCH] for k, v in fields.items()})
        res = runner.run({n: np.ascontiguousarray(feeds[n], dtype=np.float32) for n in graph.input_names})
        outs.append(res["tokens_out"].astype(np.float32))
        if kind == "reducer":
            covers.append(res["source"].astype(np.float32))
    if kind == "reducer":
        return np.concatenate(outs), np.concatenate(covers)
    k = module.stride if module.arch == "ovis_vet" else CELLS[module.arch]
    return np.concatenate(outs), cell_cover(tokens.grid, k)[None]


def baseline_outputs(kind: str, patch_tokens: np.ndarray, count: int, grid=None) -> tuple[np.ndarray, np.ndarray]:
    """'subsample' or 'avgpool' at `count` tokens of patch tokens [B, h*w, D] on `grid` (h, w; square when None) ->
    (tokens_out, cover [1, count, h*w])."""
    grid = grid if grid is not None else int(round(patch_tokens.shape[1] ** 0.5))
    if count > np.prod(grid_pair(grid)):
        raise NtcError(f"a {count}-token baseline needs at least {count} patch tokens, the grid has "
                       f"{np.prod(grid_pair(grid))}")
    centres = lattice(grid, count)
    cover = nearest_cover(grid, centres)[None]
    out = patch_tokens[:, centres] if kind == "subsample" else covered_mean(patch_tokens, cover)
    return out, cover


def scores(scattered: np.ndarray, tokens, probe=None, reference=None) -> dict:
    """Task columns of scattered-back tokens: saliency r (tokens with CLS; `reference`: their own saliency maps) or
    probe accuracy (labels), and the relative reconstruction error."""
    patches = tokens.patch_tokens
    rel = float(np.mean(np.linalg.norm(scattered - patches, axis=(1, 2)) / np.linalg.norm(patches, axis=(1, 2))))
    if probe is None:
        return {"saliency_r": saliency_r(tokens.tokens, scattered.astype(np.float32), reference, tokens.grid),
                "rel_error": rel}
    return {"probe_accuracy": float(probe.score(scattered.mean(1), tokens.labels)), "task_rel_error": rel}


class Suite:
    """The held-out sets and what is fitted on the training sets: the saliency set (val, train for readouts) and
    the labelled task (val, train for the probe and readouts); `policy_fit`: the adaptive policy's training set
    for the held-out data (default `fit`; it needs the ViT's attention)."""

    def __init__(self, data, fit, task_val, task_fit, policy_fit=None):
        for name, ts in (("task data", task_val), ("task training data", task_fit)):
            if ts is not None and ts.labels is None:
                raise NtcError(f"the {name} has no labels: the probe needs a labelled task")
        if task_fit is not None and task_fit.labels is not None and len(np.unique(task_fit.labels)) < 2:
            raise NtcError("the task training data has a single class: the probe needs two or more")
        self.data, self.fit, self.task_val, self.task_fit = data, fit, task_val, task_fit
        self.policy_fit = policy_fit if policy_fit is not None else fit  # needs the ViT's attention
        self.probe = fit_probe(task_fit.patch_tokens, task_fit.labels) if task_fit is not None else None
        self._maps = None

    def reference_maps(self) -> np.ndarray:
        """The saliency maps of the held-out data's own tokens (computed once: every row compares with them)."""
        from ..data.vit import saliency

        if self._maps is None:
            self._maps = saliency(self.data.tokens, self.data.grid)
        return self._maps

    def pairs(self):
        """(held-out set, training set, probe or None) for each measured set."""
        yield self.data, self.fit, None
        if self.task_val is not None:
            yield self.task_val, self.task_fit, self.probe


def reduction_row(name: str, family: str, outputs, suite: Suite, readout: bool) -> dict:
    """One table row. `outputs(tokens) -> (tokens_out, cover)`; with `readout`, a ridge readout fitted on each
    training set maps outputs to ViT space first."""
    row = {"model": name, "family": family, "readout": "ridge (train split)" if readout else None}
    for held, train, probe in suite.pairs():
        out, cover = outputs(held)
        if readout:
            t_out, t_cover = outputs(train)
            out = fit_readout(t_out, t_cover, train.patch_tokens)(out)
        n_out = float(np.mean((cover.sum(2) > 0).sum(1)))
        if probe is None:
            row.update(tokens_per_image=n_out, ratio=held.patch_tokens.shape[1] / n_out)
        row.update(scores(scatter_back(out, cover), held, probe, None if probe else suite.reference_maps()))
    return row


def original_row(suite: Suite) -> dict:
    row = {"model": "all patch tokens", "family": "original", "readout": None}
    row.update(tokens_per_image=float(suite.data.patch_tokens.shape[1]), ratio=1.0)
    for held, _, probe in suite.pairs():
        row.update(scores(held.patch_tokens, held, probe, None if probe else suite.reference_maps()))
    return row


def token_reduction(models: dict, suite: Suite, baseline_counts=(), log=lambda text: None) -> list[dict]:
    """Rows for every reducer / projector ({name: module}), the original tokens and the two baselines at each
    model's token count (and at `baseline_counts`); `log` hears one line per row."""
    kinds = {name: kind_of(m) for name, m in models.items()}  # every model checked before any work
    log("all patch tokens (the reference saliency maps)")
    rows = [original_row(suite)]
    with tempfile.TemporaryDirectory() as tmp:
        for i, (name, module) in enumerate(models.items()):
            cache = {}

            def outputs(ts, module=module, cache=cache, i=i):
                if id(ts) not in cache:
                    cache[id(ts)] = run_outputs(module, ts, Path(tmp) / f"{i}_{len(cache)}")
                return cache[id(ts)]

            log(f"{name} ({i + 1}/{len(models)}): exported, run in ONNX Runtime, scored")
            rows.append(reduction_row(name, module.arch, outputs, suite, kinds[name] == "projector"))
    counts = sorted({int(round(r["tokens_per_image"])) for r in rows[1:]} | set(baseline_counts))
    for count in counts:
        log(f"baselines at {count} tokens")
        for kind, label in (("subsample", "uniform subsample"), ("avgpool", "average pool")):
            rows.append(reduction_row(f"{label} {count}", f"{label} (baseline)",
                                      lambda ts, k=kind, c=count: baseline_outputs(k, ts.patch_tokens, c, ts.grid),
                                      suite, False))
    return rows
