"""`bc_autoencoder`: visual tokens stored as BC4/BC5 textures, decoded by ntc::BcDecode + a small Swin decoder.

A linear transform coder with learned non-linear residuals: an orthonormal-initialised `basis` [L, k*k*D] is
shared by encoder and decoder (tied), so the model starts as PCA of k x k token cells when `init_linear` is given
the training tokens' principal directions; merging neighbouring tokens lets the latent spend its bits on what a
2x2 cell shares (on the photo corpus, PCA of 2x2 cells keeps 0.987 token cosine at 96 values per token where
per-token PCA keeps 0.968).

compress:   tokens [B, h*w, D] -> (k x k merge: m) -> z = (m - center) @ basis.T + MLP(m) -> L latent channels
            -> per-channel affine to [0, 1] (clamped) -> BC encoder on the host (planes of 1 (BC4) or 2 (BC5)
            channels) -> blocks INT32 [B, P, h/4k, w/4k, W]
deployable: blocks -> BcDecode (tokens layout) -> inverse affine z (read as z / s, see balanced_latent_weights)
            -> z @ basis + center + Linear(LayerNorm(SwinBlocks(Linear up(z)))) -> (undo the merge)
            -> tokens_out [B, h*w, D]           (the graph `export` writes; input "blocks")
training:   the BC encoder + decoder are replaced by `bc_sim.bc4_simulate` (straight-through gradients). Both
            residual branches start at zero, so training starts from the linear coder.

Latent channel l lives in plane l // C, channel l % C (C = 1 for BC4, 2 for BC5). Bytes per image at a 16x16 token
grid: (16/k)^2 * L / 2 (4 bits per latent value), against 256 * D * 2 for fp16 tokens.
"""

import numpy as np
import torch
import torch.nn as nn

from ..codec.payload import Payload, expect_all
from ..ops.bc_decode.torch_op import bc_decode_op
from ..ops.tracing import exporting
from ..util.errors import NtcError
from .base import TokenModel, refresh_frozen_weights
from .grid import crop_grid, grid_of, grid_pair, grid_tokens, pad_grid, padded, regroup
from .bc_sim import bc4_simulate
from .blocks import SwinBlock
from .registry import register

PLANE_CHANNELS = {"bc4": 1, "bc5": 2}
WORDS = {"bc4": 2, "bc5": 4}
FP16_TOKEN_BYTES = 2


def latent_for_rate(rate: float, input_dim: int = 384, merge: int = 1) -> int:
    """Latent channels L giving `rate`x fewer bytes than fp16 tokens (4 bits per latent value), rounded to even."""
    latent = input_dim * FP16_TOKEN_BYTES * 8 * merge * merge / (4 * rate)
    return max(2, int(round(latent / 2)) * 2)


def merge_cells(x: torch.Tensor, h, w, k: int) -> torch.Tensor:
    """[B, h*w, C] -> [B, (h/k)*(w/k), k*k*C] (row, col, C order inside each k x k cell)."""
    if k == 1:
        return x
    b, _, c = x.shape
    x = x.reshape(b, h // k, k, w // k, k, c).permute(0, 1, 3, 2, 4, 5)
    return regroup(x, b, -1, k * k * c)


def unmerge_cells(x: torch.Tensor, h, w, k: int) -> torch.Tensor:
    """Inverse of merge_cells: [B, h*w, k*k*C] on the latent grid (h, w) -> [B, (k h)*(k w), C]."""
    if k == 1:
        return x
    b = x.shape[0]
    c = x.shape[-1] // (k * k)
    x = x.reshape(b, h, w, k, k, c).permute(0, 1, 3, 2, 4, 5)
    return regroup(x, b, -1, c)


@register("bc_autoencoder")
class BcAutoencoder(TokenModel):
    """Token compressor storing latents as BC4/BC5 blocks (see module docstring)."""

    input_names = ["blocks"]
    is_compressor = True
    family = "bc_autoencoder"

    def __init__(self, input_dim=384, latent=96, merge=1, bc_format="bc5", dim=192, depth=2, heads=6, window=8,
                 mlp_ratio=2.0, num_classes=0):
        super().__init__()
        if bc_format not in PLANE_CHANNELS:
            raise NtcError(f"bc_autoencoder: bc_format must be bc4 or bc5, got {bc_format!r}")
        if latent % PLANE_CHANNELS[bc_format]:
            raise NtcError(f"bc_autoencoder: {bc_format} needs an even latent channel count, got {latent}")
        if merge < 1 or dim % heads:
            raise NtcError(f"bc_autoencoder: need merge >= 1 and dim divisible by heads (got {merge}, {dim}, {heads})")
        if latent > input_dim * merge * merge:
            raise NtcError(f"bc_autoencoder: latent {latent} exceeds the {input_dim * merge * merge} values of a "
                           f"{merge}x{merge} token cell")
        self.config = dict(input_dim=input_dim, latent=latent, merge=merge, bc_format=bc_format, dim=dim, depth=depth,
                           heads=heads, window=window, mlp_ratio=mlp_ratio, num_classes=num_classes)
        self.input_dim = self.output_dim = input_dim
        self.latent, self.merge, self.bc_format = latent, merge, bc_format
        self.planes = latent // PLANE_CHANNELS[bc_format]
        self.grid_multiple = 4 * merge  # latent textures are whole 4x4 blocks
        merged = input_dim * merge * merge
        # The linear coder: z = (m - center) @ basis.T, m_hat = z @ basis + center (PCA when init_linear sets it).
        self.register_buffer("center", torch.zeros(merged))
        self.basis = nn.Parameter(nn.init.orthogonal_(torch.empty(latent, merged)))
        self.encoder = nn.Sequential(nn.LayerNorm(merged), nn.Linear(merged, dim), nn.GELU(), nn.Linear(dim, latent))
        # Affine from latent values to the texture's [0, 1] range (and back, in the deployable graph).
        self.to_unit_scale = nn.Parameter(torch.full((latent,), 0.15))
        self.to_unit_offset = nn.Parameter(torch.full((latent,), 0.5))
        self.up = nn.Linear(latent, dim)
        self.blocks = nn.ModuleList(
            SwinBlock(dim, heads, window, shift=0 if i % 2 == 0 else window // 2, mlp_ratio=mlp_ratio)
            for i in range(depth))
        self.norm = nn.LayerNorm(dim)
        self.out = nn.Linear(dim, merged)
        for name in ("_divisor", "_basis_b", "_up_b"):  # set while in eval mode (see `train`)
            self.register_buffer(name, None, persistent=False)
        self.register_load_state_dict_post_hook(refresh_frozen_weights)
        for residual_end in (self.encoder[-1], self.out):  # residual branches start at zero
            nn.init.zeros_(residual_end.weight)
            nn.init.zeros_(residual_end.bias)
        self._init_head(num_classes)

    @torch.no_grad()
    def init_linear(self, center, directions, lo, hi) -> None:
        """Start from a linear coder: cell mean [k*k*D], orthonormal directions [L, k*k*D] and the clipping range
        [L] of each latent (lo, hi) mapped onto the texture's [0, 1]."""
        f = lambda a: torch.as_tensor(a, dtype=torch.float32)  # noqa: E731
        lo, hi = f(lo), f(hi)
        if tuple(directions.shape) != tuple(self.basis.shape) or tuple(center.shape) != tuple(self.center.shape):
            raise NtcError(f"init_linear: need center {list(self.center.shape)} and directions "
                           f"{list(self.basis.shape)}, got {list(center.shape)} and {list(directions.shape)}")
        self.center.copy_(f(center))
        self.basis.copy_(f(directions))
        span = (hi - lo).clamp_min(1e-6)
        self.to_unit_scale.copy_(1.0 / span)
        self.to_unit_offset.copy_(-lo / span)
        self.train(self.training)  # refresh the frozen weights of eval mode

    # ---- pieces -------------------------------------------------------------------------------------------------

    def padded_grid(self, tokens: torch.Tensor) -> torch.Tensor:
        """tokens [B, h, w, D] (any grid; or [B, h*w, D] square) -> [B, h*w, D] on the grid padded to whole
        4k x 4k texture blocks, and that grid."""
        self.check_token_grid(tokens)
        x, h, w = grid_tokens(tokens)
        g = pad_grid(x.reshape(x.shape[0], h, w, -1), self.grid_multiple)
        return g.flatten(1, 2), g.shape[1], g.shape[2]

    def cells(self, tokens: torch.Tensor) -> torch.Tensor:
        """tokens (any grid) -> the k x k token cells the latent codes on the padded grid, [B, (hp/k)*(wp/k), k*k*D]."""
        x, h, w = self.padded_grid(tokens)
        return merge_cells(x, h, w, self.merge)

    def encode_unit(self, tokens: torch.Tensor) -> tuple[torch.Tensor, int, int]:
        """tokens (any grid) -> latent planes in [0, 1] as [B, L, hp/k, wp/k] and the latent grid."""
        _, h, w = self.padded_grid(tokens)
        k = self.merge
        m = self.cells(tokens)
        z = (m - self.center) @ self.basis.T + self.encoder(m)
        u = (z * self.to_unit_scale + self.to_unit_offset).clamp(0.0, 1.0)
        b = tokens.shape[0]
        return u.transpose(1, 2).reshape(b, self.latent, h // k, w // k), h // k, w // k

    def balanced_latent_weights(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(divisor [L], basis rows [L, k*k*D], `up` weight [dim, L]) with z's per-channel range moved half into the
        weights: the matmuls read z / s with weights times s, s = sqrt(max|z| / max|w|) per latent (the same
        product). z's channels span ranges as different as the PCA spectrum; balanced, one INT8 scale for the
        activation and one per weight column lose far less (SmoothQuant's migration, alpha 0.5; max|z| read off the
        affine, since unit is in [0, 1])."""
        z_max = torch.maximum(self.to_unit_offset.abs(), (1 - self.to_unit_offset).abs()) / self.to_unit_scale.abs()
        w_max = torch.maximum(self.basis.abs().amax(1), self.up.weight.abs().amax(0)).clamp_min(1e-12)
        s = (z_max / w_max).sqrt()
        return self.to_unit_scale * s, self.basis * s[:, None], self.up.weight * s

    def train(self, mode: bool = True):
        """Entering eval mode freezes the balanced weights as buffers, so an export stores them as constants (the
        weights Q/DQ quantizes); training computes them from the parameters on every step."""
        super().train(mode)
        frozen = None if mode else tuple(t.detach().clone() for t in self.balanced_latent_weights())
        for name, value in zip(("_divisor", "_basis_b", "_up_b"), frozen or (None, None, None)):
            self.register_buffer(name, value, persistent=False)
        return self

    def decode_latent(self, unit: torch.Tensor, h, w) -> torch.Tensor:
        """Latent values in [0, 1] [B, h*w, L] on the latent grid -> tokens [B, (k h)*(k w), D]."""
        divisor, basis, up_weight = ((self._divisor, self._basis_b, self._up_b) if self._divisor is not None
                                     else self.balanced_latent_weights())
        zs = (unit - self.to_unit_offset) / divisor
        x = nn.functional.linear(zs, up_weight, self.up.bias)
        for block in self.blocks:
            x = block(x, h, w)
        return unmerge_cells(zs @ basis + self.center + self.out(self.norm(x)), h, w, self.merge)

    def _with_head(self, tokens: torch.Tensor):
        return tokens if self.head is None else (tokens, self.head(tokens.mean(dim=1)))

    # ---- the deployable graph -----------------------------------------------------------------------------------

    def forward(self, blocks: torch.Tensor):
        """blocks INT32 [B, P, by, bx, W] -> tokens [B, (4k by)*(4k bx), D] (+ logits)."""
        if not exporting():
            self._check_blocks(blocks)
        b, p, by, bx, words = blocks.shape
        c = PLANE_CHANNELS[self.bc_format]
        texels = bc_decode_op(blocks.reshape(-1, by, bx, words), self.bc_format, "tokens", "float32")
        n = texels.shape[1]
        unit = regroup(texels.reshape(b, p, n, c).permute(0, 2, 1, 3), b, n, p * c)
        return self._with_head(self.decode_latent(unit, by * 4, bx * 4))

    def _check_blocks(self, blocks: torch.Tensor) -> None:
        w = WORDS[self.bc_format]
        if not isinstance(blocks, torch.Tensor) or blocks.dtype != torch.int32:
            raise NtcError(f"bc_autoencoder blocks must be an int32 tensor, got {getattr(blocks, 'dtype', blocks)}")
        if blocks.dim() != 5 or blocks.shape[1] != self.planes or blocks.shape[-1] != w:
            raise NtcError(f"bc_autoencoder blocks must be INT32 [B, {self.planes}, by, bx, {w}] "
                           f"({self.bc_format}), got shape {list(blocks.shape)}")

    # ---- training path ------------------------------------------------------------------------------------------

    def reconstruct(self, tokens: torch.Tensor):
        """Training/eval path without the host encoder: tokens (any grid) -> simulated BC -> tokens [B, h*w, D] on
        their own grid (+ logits)."""
        unit, h, w = self.encode_unit(tokens)
        q = bc4_simulate(unit)
        b = tokens.shape[0]
        out = self.decode_latent(q.reshape(b, self.latent, -1).transpose(1, 2), h, w)
        k = self.merge
        return self._with_head(crop_grid(out, (h * k, w * k), grid_of(tokens, self.arch)))

    # ---- host compress / decompress -----------------------------------------------------------------------------

    @torch.no_grad()
    def compress(self, tokens, quality: str = "fast", chunk_blocks: int = 8192) -> np.ndarray:
        """tokens [N, h, w, D] (any grid; or [N, h*w, D] square; numpy or torch) -> INT32 blocks
        [N, P, hp/4k, wp/4k, W] of the grid padded to whole blocks, from the real BC encoder.

        "fast" (min/max endpoints, nearest index) is the encoder the decoder was trained through (bc_sim); the
        "thorough" search lowers the texture error, but on digits val tokens it gave no better token cosine (measured
        0.95577 vs 0.95585 at 16x) at ~70x the encode time."""
        from ..codec.decode import blocks_to_int32
        from ..codec.encode import encode

        t = torch.as_tensor(np.asarray(tokens, dtype=np.float32)) if not isinstance(tokens, torch.Tensor) else \
            tokens.float()
        unit, gh, gw = self.encode_unit(t)
        n, c = t.shape[0], PLANE_CHANNELS[self.bc_format]
        # [N, P, gh, gw, C]: each plane one texture; stacked vertically, blocks of one plane stay contiguous.
        planes = unit.reshape(n, self.planes, c, gh, gw).permute(0, 1, 3, 4, 2).numpy()
        by, bx = gh // 4, gw // 4
        per_plane = by * bx * c
        step = max(1, chunk_blocks // per_plane)
        flat = planes.reshape(n * self.planes, gh, gw, c)
        out = []
        for start in range(0, len(flat), step):
            tall = flat[start:start + step].reshape(-1, gw, c)
            out.append(encode(tall[..., 0] if c == 1 else tall, self.bc_format, quality=quality))
        blocks = np.concatenate(out).reshape(n, self.planes, by, bx, -1)
        return blocks_to_int32(blocks)

    @torch.no_grad()
    def decompress(self, blocks) -> np.ndarray:
        """INT32 blocks [N, P, by, bx, W] -> tokens float32 [N, h*w, D]."""
        out = self.eval()(torch.as_tensor(np.asarray(blocks)))
        return (out[0] if isinstance(out, tuple) else out).numpy()

    def bytes_per_image(self, grid=16) -> int:
        """BC block bytes of one image at a token grid (a side or (h, w)), padded to whole blocks: the rate this
        model is built for (its payloads add a small header; `encode` gives the real bytes)."""
        h, w = (padded(s, self.grid_multiple) for s in grid_pair(grid))
        return (h // self.merge) * (w // self.merge) * self.latent // 2

    # ---- the compressor contract: one payload per image ----------------------------------------------------------

    def _block_shape(self, grid: tuple[int, int]) -> tuple[int, ...]:
        unit = self.grid_multiple
        return self.planes, -(-grid[0] // unit), -(-grid[1] // unit), WORDS[self.bc_format]

    def encode(self, patch_tokens, quality: str = "fast") -> list[bytes]:
        """Patch tokens [N, h, w, D] (any grid) -> one payload per image: its BC blocks as little-endian INT32
        words; the payload records the image's own grid (h, w)."""
        tokens = np.asarray(patch_tokens, dtype=np.float32)
        grid = grid_of(tokens, self.arch, self.input_dim)
        blocks = self.compress(tokens, quality=quality)
        fingerprint = self.fingerprint()
        return [Payload(self.family, fingerprint, grid, b.astype("<i4").tobytes()).pack() for b in blocks]

    def decode(self, payloads) -> np.ndarray:
        """Payloads from `encode` of this model (one grid) -> patch tokens float32 [N, h*w, D] on that grid."""
        fingerprint = self.fingerprint()
        parsed = expect_all(payloads, self.family, fingerprint)
        shape = self._block_shape(parsed[0].grid)
        size = 4 * int(np.prod(shape))
        bad = next((i for i, p in enumerate(parsed) if len(p.body) != size), None)
        if bad is not None:
            raise NtcError(f"payload {bad}: {len(parsed[bad].body)} body bytes, this model's grid "
                           f"{parsed[0].grid} needs {size}")
        blocks = np.stack([np.frombuffer(p.body, "<i4").reshape(shape) for p in parsed]).astype(np.int32)
        unit = self.grid_multiple
        return crop_grid(self.decompress(blocks), (shape[1] * unit, shape[2] * unit), parsed[0].grid)

    # ---- export interface ---------------------------------------------------------------------------------------

    def example_inputs(self, batch: int = 2, grid=16) -> tuple:
        g = torch.Generator().manual_seed(0)
        shape = (batch, *self._block_shape(grid_pair(grid)))
        return (torch.randint(-(2**31), 2**31 - 1, shape, generator=g, dtype=torch.int64).to(torch.int32),)

    def input_axes(self) -> dict:
        return {"blocks": {0: "batch", 2: "blocks_y", 3: "blocks_x"}}

    def prepare_inputs(self, patch_tokens) -> dict:
        """Held-out tokens (any grid) -> the deployable graph's feed: the encoder + host BC encoder make the blocks
        of the grid padded to whole blocks (the graph decodes that grid; `decode` crops it)."""
        return {"blocks": self.compress(patch_tokens)}
