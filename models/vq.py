"""`vq`: visual tokens as codebook indices of 2x2 token cells (product + residual VQ, VQ-VAE style).

Rate: every 2x2 token cell (4 * D values) is stored as G*S indices of ceil(log2 K) bits, so a cell costs
G * S * ceil(log2 K) bits and a token a quarter of that (fp16 tokens: 4 * D * 16 bits per cell; at D = 384, 16x is
1536 bits per cell = 192 one-byte indices = 384 bits per token, 64x is 384 bits per cell = 96 bits per token).

compress:   tokens [B, h*w, D] -> 2x2 cells m [B, n, 4D] -> z = (m - center) @ basis.T + MLP(m) [B, n, L]
            -> G groups of d = L/G dims -> per group S residual stages, nearest of K codewords (fp32 distances,
            ArgMin) -> indices INT32 [B, G*S, h/2, w/2] (channel g*S + s) -> bit-packed payload
deployable: indices -> Gather from the codebooks -> sum of stages -> groups concatenated (z_hat [B, n, L], read as
            z_hat / s with weights times s, see balanced_weights: INT8-friendly, the same products)
            -> z_hat @ basis + center + Linear(LayerNorm(SwinBlocks(Linear up(z_hat)))) -> (undo the 2x2 merge)
            -> tokens_out [B, h*w, D]       (the graph `export` writes; input "indices")
encoder:    `encoder_graph()` is the compress path up to the indices as its own exportable module (input
            "tokens", output "indices" INT32). Its distances ||r||^2 - 2 r E^T + ||e||^2 are computed in fp32 in
            PyTorch and in the fp32 ONNX file. In the fp16 file only the ops on FP16_KEEP_FP32 stay fp32 (here the
            ReduceSum of ||r||^2, and the MLP's LayerNorm); the projection, the r E^T MatMul and the sums run in fp16,
            so near-ties may pick the neighbouring codeword (measured agreement: see tests/vq and the family report).
training:   the same encoder with a straight-through estimator, a commitment loss (`train_forward`'s extra term),
            EMA codebook updates and dead-code restarts after each optimiser step (`after_step`). The recipe
            (ntc_export.train.vq) starts from PCA of cells with interleaved groups (group g holds principal
            directions g, g+G, g+2G, ...: every group mixes high- and low-variance directions, so its codebook
            spreads its bits by variance) and k-means codebooks on corpus latents; both residual branches start at
            zero, so training starts from the linear VQ coder.
"""

import numpy as np
import torch
import torch.nn as nn

from ..codec.payload import Payload, expect_all
from ..ops.tracing import exporting
from ..util.errors import NtcError
from .base import TokenModel, refresh_frozen_weights
from .grid import crop_grid, grid_of, grid_pair, grid_tokens, pad_grid, padded, regroup
from .bc_autoencoder import merge_cells, unmerge_cells
from .blocks import SwinBlock
from .registry import register
from .vector_quantizer import ProductResidualVQ, gather_codes, index_bits, nearest

MERGE = 2  # 2x2 token cells
FP16_BITS = 16


def pack_indices(indices: np.ndarray, bits: int) -> bytes:
    """Non-negative integers -> bytes, each `bits` bits wide, MSB first, in C order; the last byte zero-padded."""
    flat = np.asarray(indices, dtype=np.int64).reshape(-1)
    shifts = np.arange(bits - 1, -1, -1, dtype=np.int64)
    return np.packbits(((flat[:, None] >> shifts) & 1).astype(np.uint8).reshape(-1)).tobytes()


def unpack_indices(body: bytes, count: int, bits: int) -> np.ndarray:
    """Inverse of pack_indices: the first `count` indices of `body` (int64)."""
    raw = np.unpackbits(np.frombuffer(body, np.uint8))[: count * bits].reshape(count, bits).astype(np.int64)
    return (raw << np.arange(bits - 1, -1, -1, dtype=np.int64)).sum(-1)


@register("vq")
class VqCompressor(TokenModel):
    """Token compressor storing 2x2 token cells as product/residual VQ indices (see module docstring)."""

    input_names = ["indices"]
    is_compressor = True
    family = "vq"
    grid_multiple = MERGE

    def __init__(self, input_dim=384, latent=576, groups=192, stages=1, codewords=256, dim=64, depth=2, heads=4,
                 window=4, mlp_ratio=2.0, enc_hidden=32, decay=0.99, dead_after=100, commitment=0.25, seed=0,
                 num_classes=0):
        super().__init__()
        merged = input_dim * MERGE * MERGE
        if groups < 1 or latent % groups:
            raise NtcError(f"vq: latent {latent} must split into {groups} groups of equal size")
        if latent > merged:
            raise NtcError(f"vq: latent {latent} exceeds the {merged} values of a 2x2 token cell")
        if dim % heads:
            raise NtcError(f"vq: decoder width {dim} is not a multiple of heads {heads}")
        self.config = dict(input_dim=input_dim, latent=latent, groups=groups, stages=stages, codewords=codewords,
                           dim=dim, depth=depth, heads=heads, window=window, mlp_ratio=mlp_ratio,
                           enc_hidden=enc_hidden, decay=decay, dead_after=dead_after, commitment=commitment,
                           seed=seed, num_classes=num_classes)
        self.input_dim = self.output_dim = input_dim
        self.latent, self.groups, self.stages, self.codewords = latent, groups, stages, codewords
        self.group_dim = latent // groups
        self.commitment = commitment
        self.register_buffer("center", torch.zeros(merged))
        self.basis = nn.Parameter(nn.init.orthogonal_(torch.empty(latent, merged)))
        self.encoder = (nn.Sequential(nn.LayerNorm(merged), nn.Linear(merged, enc_hidden), nn.GELU(),
                                      nn.Linear(enc_hidden, latent)) if enc_hidden > 0 else None)
        self.vq = ProductResidualVQ(groups, stages, codewords, self.group_dim, decay, dead_after, seed)
        # Scale of the commitment term: the cells' total variance (set by init_linear), so it is unit-free.
        self.register_buffer("cell_var", torch.ones(()))
        self.up = nn.Linear(latent, dim)
        self.blocks = nn.ModuleList(
            SwinBlock(dim, heads, window, shift=0 if i % 2 == 0 else window // 2, mlp_ratio=mlp_ratio)
            for i in range(depth))
        self.norm = nn.LayerNorm(dim)
        self.out = nn.Linear(dim, merged)
        ends = [self.out] + ([self.encoder[-1]] if self.encoder is not None else [])
        for residual_end in ends:  # residual branches start at zero: training starts from the linear VQ coder
            nn.init.zeros_(residual_end.weight)
            nn.init.zeros_(residual_end.bias)
        for name in ("_books_b", "_basis_b", "_up_b"):  # balanced weights, set while in eval mode (see `train`)
            self.register_buffer(name, None, persistent=False)
        self.register_load_state_dict_post_hook(refresh_frozen_weights)
        self._init_head(num_classes)

    def train(self, mode: bool = True):
        """Entering eval mode freezes the balanced weights as buffers, so an export stores them as constants (the
        weights Q/DQ quantizes); otherwise they are computed from the parameters on every call."""
        super().train(mode)
        frozen = None if mode else tuple(t.detach().clone() for t in self.balanced_weights())
        for name, value in zip(("_books_b", "_basis_b", "_up_b"), frozen or (None, None, None)):
            self.register_buffer(name, value, persistent=False)
        return self

    @property
    def channels(self) -> int:
        """Indices per cell: G * S."""
        return self.groups * self.stages

    @property
    def bits_per_cell(self) -> int:
        return self.channels * index_bits(self.codewords)

    @torch.no_grad()
    def init_linear(self, center, directions, cell_var: float | None = None) -> None:
        """Start from a linear coder: cell mean [4D] and orthonormal directions [L, 4D] (rows in group order)."""
        f = lambda a: torch.as_tensor(np.asarray(a), dtype=torch.float32)  # noqa: E731
        if tuple(np.shape(directions)) != tuple(self.basis.shape) or tuple(np.shape(center)) != \
                tuple(self.center.shape):
            raise NtcError(f"init_linear: need center {list(self.center.shape)} and directions "
                           f"{list(self.basis.shape)}, got {list(np.shape(center))} and {list(np.shape(directions))}")
        self.center.copy_(f(center))
        self.basis.copy_(f(directions))
        if cell_var is not None:
            self.cell_var.fill_(float(cell_var))
        self.train(self.training)  # refresh the frozen weights of eval mode

    # ---- pieces -------------------------------------------------------------------------------------------------

    def _check_tokens(self, tokens: torch.Tensor) -> tuple[int, int]:
        """(hp, wp): the grid of tokens (any grid) padded to whole 2x2 cells."""
        return tuple(padded(s, MERGE) for s in self.check_token_grid(tokens))

    def cells(self, tokens: torch.Tensor) -> torch.Tensor:
        """tokens [B, h, w, D] (any grid; or [B, h*w, D] square) -> 2x2 token cells of the grid padded to whole
        cells, [B, (hp/2)*(wp/2), 4D]."""
        x, h, w = grid_tokens(tokens)
        g = pad_grid(x.reshape(x.shape[0], h, w, -1), MERGE)
        return merge_cells(g.flatten(1, 2), g.shape[1], g.shape[2], MERGE)

    def latent_of_cells(self, m: torch.Tensor) -> torch.Tensor:
        """Cells [B, n, 4D] -> latents z [B, n, L]."""
        z = (m - self.center) @ self.basis.T
        return z if self.encoder is None else z + self.encoder(m)

    def decode_latent(self, z_hat: torch.Tensor, h, w, basis=None, up_weight=None) -> torch.Tensor:
        """Quantised latents [B, h*w, L] on the cell grid (h, w) -> tokens [B, (2h)*(2w), D] (`basis`, `up_weight`:
        the balanced weights when z_hat comes from balanced codebooks)."""
        basis = self.basis if basis is None else basis
        x = nn.functional.linear(z_hat, self.up.weight if up_weight is None else up_weight, self.up.bias)
        for block in self.blocks:
            x = block(x, h, w)
        return unmerge_cells(z_hat @ basis + self.center + self.out(self.norm(x)), h, w, MERGE)

    def balanced_weights(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(codebooks / s [G, S, K, d], basis * s [L, 4D], up weight * s [dim, L]) with s per latent dim =
        sqrt(max|z_hat| / max|w|): the same products, but the latent's per-dim range (as wide as the PCA spectrum)
        moved half into the weights, so one INT8 scale for z_hat and one per weight column lose far less
        (SmoothQuant's migration, alpha 0.5, as bc_autoencoder; max|z_hat| read off the codebooks)."""
        g, d = self.groups, self.group_dim
        z_max = self.vq.codebooks.abs().amax(2).sum(1).reshape(-1)  # stages add up: [L]
        w_max = torch.maximum(self.basis.abs().amax(1), self.up.weight.abs().amax(0)).clamp_min(1e-12)
        s = (z_max.clamp_min(1e-12) / w_max).sqrt()
        return self.vq.codebooks / s.reshape(g, 1, 1, d), self.basis * s[:, None], self.up.weight * s

    def _with_head(self, tokens: torch.Tensor):
        return tokens if self.head is None else (tokens, self.head(tokens.mean(dim=1)))

    # ---- the deployable graph -----------------------------------------------------------------------------------

    def forward(self, indices: torch.Tensor):
        """indices INT32 [B, G*S, h/2, w/2] -> tokens [B, h*w, D] (+ logits)."""
        if not exporting():
            self._check_indices(indices)
        b, c, gh, gw = indices.shape
        books, basis, up_weight = ((self._books_b, self._basis_b, self._up_b) if self._books_b is not None
                                   else self.balanced_weights())
        offsets = (torch.arange(c, dtype=torch.int32) * self.codewords).reshape(1, c, 1, 1)
        codes = nn.functional.embedding(indices + offsets, books.reshape(-1, self.group_dim))  # [B, G*S, gh, gw, d]
        codes = codes.reshape(b, self.groups, self.stages, gh * gw, self.group_dim).sum(2)
        z_hat = regroup(codes.permute(0, 2, 1, 3), b, gh * gw, self.latent)
        return self._with_head(self.decode_latent(z_hat, gh, gw, basis, up_weight))

    def _check_indices(self, indices) -> None:
        if not isinstance(indices, torch.Tensor) or indices.dtype != torch.int32:
            raise NtcError(f"vq indices must be an int32 tensor, got {getattr(indices, 'dtype', type(indices))}")
        if indices.dim() != 4 or indices.shape[1] != self.channels or min(indices.shape) < 1:
            raise NtcError(f"vq indices must be INT32 [B, {self.channels}, h/2, w/2], got shape "
                           f"{list(indices.shape)}")
        lo, hi = int(indices.min()), int(indices.max())
        if lo < 0 or hi >= self.codewords:
            raise NtcError(f"vq indices out of range: [{lo}, {hi}] found, codebooks hold 0..{self.codewords - 1}")

    # ---- the encoder --------------------------------------------------------------------------------------------

    def quantize_cells(self, m: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Cells [B, n, 4D] -> (z_hat [B, n, L], indices [B, n, G, S]); no gradients."""
        b, n, _ = m.shape
        z = self.latent_of_cells(m).reshape(b * n, self.groups, self.group_dim)
        z_hat, idx, _ = self.vq.quantize(z)
        return z_hat.reshape(b, n, self.latent), idx.reshape(b, n, self.groups, self.stages)

    @torch.no_grad()
    def compress(self, tokens) -> np.ndarray:
        """tokens [N, h, w, D] (any grid; numpy or torch) -> indices INT32 [N, G*S, hp/2, wp/2] of the grid padded to
        whole cells."""
        t = torch.as_tensor(np.asarray(tokens, dtype=np.float32)) if not isinstance(tokens, torch.Tensor) else \
            tokens.float()
        h, w = self._check_tokens(t)
        _, idx = self.quantize_cells(self.cells(t))
        return idx.reshape(len(t), h // MERGE, w // MERGE, self.channels).permute(0, 3, 1, 2).to(torch.int32).numpy()

    @torch.no_grad()
    def decompress(self, indices) -> np.ndarray:
        """INT32 indices [N, G*S, h/2, w/2] -> tokens float32 [N, h*w, D]."""
        out = self.eval()(torch.as_tensor(np.asarray(indices)))
        return (out[0] if isinstance(out, tuple) else out).numpy()

    def extra_graphs(self) -> dict[str, nn.Module]:
        """The encoder graph ships too: tokens -> indices on the GPU (see VqEncoderGraph)."""
        return {"encoder": self.encoder_graph()}

    def encoder_graph(self) -> "VqEncoderGraph":
        """The compress path as an exportable module: tokens [B, h*w, D] -> indices INT32 [B, G*S, h/2, w/2]."""
        return VqEncoderGraph(self)

    # ---- training path ------------------------------------------------------------------------------------------

    def train_forward(self, tokens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, dict]:
        """Straight-through VQ: (tokens, commitment * ||z - z_hat||^2 / cell variance, {commit, perplexity})."""
        h, w = self._check_tokens(tokens)
        m = self.cells(tokens)
        b, n, _ = m.shape
        z = self.latent_of_cells(m).reshape(b * n, self.groups, self.group_dim)
        z_q, commit, idx = self.vq(z)
        pred = crop_grid(self.decode_latent(z_q.reshape(b, n, self.latent), h // MERGE, w // MERGE), (h, w),
                         grid_of(tokens, self.arch))
        from .vector_quantizer import perplexity

        ppl = float(perplexity(self.vq.counts(idx)).mean())
        return pred, self.commitment * commit / self.cell_var, {"commit": commit.item(), "perplexity": ppl}

    def after_step(self, tokens: torch.Tensor) -> None:
        """EMA codebook update and dead-code restarts from the step's own assignments."""
        self.vq.apply_pending()

    def reconstruct(self, tokens: torch.Tensor):
        """Eval path without payloads: tokens (any grid) -> VQ -> tokens on their own grid (+ logits)."""
        h, w = self._check_tokens(tokens)
        z_hat, _ = self.quantize_cells(self.cells(tokens))
        out = self.decode_latent(z_hat, h // MERGE, w // MERGE)
        return self._with_head(crop_grid(out, (h, w), grid_of(tokens, self.arch)))

    # ---- the compressor contract: one payload per image ----------------------------------------------------------

    def bytes_per_image(self, grid=16) -> int:
        """Index bytes of one image at a token grid (a side or (h, w); padded to whole cells; payloads add their
        header)."""
        h, w = (padded(s, MERGE) // MERGE for s in grid_pair(grid))
        return -(-self.bits_per_cell * h * w // 8)

    def encode(self, patch_tokens) -> list[bytes]:
        """Patch tokens [N, h, w, D] (any grid) -> one payload per image: its indices, ceil(log2 K) bits each, MSB
        first; the payload records the image's own grid."""
        tokens = np.asarray(patch_tokens, dtype=np.float32)
        grid = grid_of(tokens, self.arch, dim=self.input_dim)
        indices = self.compress(tokens)
        fingerprint, bits = self.fingerprint(), index_bits(self.codewords)
        return [Payload(self.family, fingerprint, grid, pack_indices(i, bits)).pack() for i in indices]

    def decode(self, payloads) -> np.ndarray:
        """Payloads from `encode` of this model (one grid) -> patch tokens float32 [N, h*w, D]."""
        fingerprint = self.fingerprint()
        parsed = expect_all(payloads, self.family, fingerprint)
        h, w = parsed[0].grid
        if h < 1 or w < 1:
            raise NtcError(f"payload token grid {h}x{w} is empty")
        shape = (self.channels, padded(h, MERGE) // MERGE, padded(w, MERGE) // MERGE)
        bits = index_bits(self.codewords)
        count = int(np.prod(shape))
        size = -(-count * bits // 8)
        out = []
        for i, p in enumerate(parsed):
            if len(p.body) != size:
                raise NtcError(f"payload {i}: {len(p.body)} body bytes, grid {h}x{w} needs {size}")
            idx = unpack_indices(p.body, count, bits)
            if idx.max() >= self.codewords:
                raise NtcError(f"payload {i}: index {int(idx.max())} out of range (codebooks hold "
                               f"{self.codewords} codewords)")
            out.append(idx.reshape(shape))
        tokens = self.decompress(np.stack(out).astype(np.int32))
        return crop_grid(tokens, (shape[1] * MERGE, shape[2] * MERGE), (h, w))

    # ---- export interface ---------------------------------------------------------------------------------------

    def example_inputs(self, batch: int = 2, grid=16) -> tuple:
        g = torch.Generator().manual_seed(0)
        shape = (batch, self.channels, *(padded(s, MERGE) // MERGE for s in grid_pair(grid)))
        return (torch.randint(0, self.codewords, shape, generator=g, dtype=torch.int64).to(torch.int32),)

    def input_axes(self) -> dict:
        return {"indices": {0: "batch", 2: "cells_y", 3: "cells_x"}}

    def prepare_inputs(self, patch_tokens) -> dict:
        """Held-out tokens -> the deployable graph's feed: the encoder's indices."""
        return {"indices": self.compress(patch_tokens)}


class VqEncoderGraph(nn.Module):
    """Exportable encoder of a VqCompressor: tokens [B, h, w, D] -> indices INT32 [B, G*S, hp/2, wp/2] (any grid,
    padded to whole cells as `compress` pads it; dynamic batch, height and width). Distances in fp32 in this module and its fp32 ONNX file (see the module docstring for
    the fp16 file)."""

    input_names = ["tokens"]
    output_names = ["indices"]

    def __init__(self, model: VqCompressor):
        super().__init__()
        self.model = model

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        model = self.model
        if not exporting():
            model._check_tokens(tokens)
        x, h, w = grid_tokens(tokens)
        gh, gw = (h + MERGE - 1) // MERGE, (w + MERGE - 1) // MERGE
        b = tokens.shape[0]
        z = model.latent_of_cells(model.cells(tokens))
        r = z.reshape(-1, model.groups, model.group_dim).transpose(0, 1)  # [G, N, d]
        idx = []
        for s in range(model.stages):
            books = model.vq.codebooks[:, s]
            i = nearest(r, books)
            idx.append(i)
            if s + 1 < model.stages:
                r = r - gather_codes(books, i)
        out = regroup(torch.stack(idx, -1).transpose(0, 1), b, gh, gw, model.channels)
        return out.permute(0, 3, 1, 2).to(torch.int32)

    def example_inputs(self, batch: int = 2, grid=16) -> tuple:
        return (self.model.example_input(batch, grid),)

    def dynamic_axes(self) -> dict:
        return {"tokens": {0: "batch", 1: "grid_h", 2: "grid_w"}, "indices": {0: "batch", 2: "cells_y", 3: "cells_x"}}
