"""`ntc_grid`: Neural Texture Compression (RTXNTC) adapted to visual tokens, with an NTBC (BC4/BC5) storage variant.

Per image two quantised latent textures over its token grid: a fine texture (one texel per 2x2 tokens, C_f
channels) and a coarse texture (one texel per 4x4 tokens, C_c channels); on the 16x16 design grid (training, rate
bookkeeping) 8x8 and 4x4 texels. A token reads
  - the 4 fine texels around its sample point, concatenated (RTXNTC's 4-neighbour sampling, not interpolated),
  - the coarse texture sampled bilinearly (edge-clamped, pixel centres as F.interpolate(align_corners=False)),
  - a positional encoding of its sub-texel position (one-hot of (y mod 4, x mod 4): its place in a coarse texel,
    which also fixes its place in the fine texel),
and a small MLP shared across images (hidden 64, 64; RTXNTC's clamped hard-GELU) maps them to the token. 384-d
outputs from a 64-wide MLP lose too much (its last hidden layer is a 64-d bottleneck: even the best 64-d linear code
of a token, PCA unquantised, keeps only 0.973 token cosine on the photo train split, below the 0.985 this model's
linear part reaches at 16x), so two linear skips carry the bulk (see `decode_features`): the coarse
skip (bilinear coarse features @ W_c) and the fine skip (the token's own texel, one of its 4 neighbours, @ W_f's
slice for the token's parity = a decoder of 2x2 token cells). Both start from PCA (train/ntc_grid.init): W_c from
PCA of 4x4-cell mean tokens, W_f from PCA of the 2x2 cells of what the coarse level leaves, so an untrained model is
a two-level linear pyramid coder; the MLP's last layer starts at zero.

Any grid: every sampling rule is local (a token reads texels within one texel of its own), so the textures cover the
whole image and are sampled across it, edge-clamped at the image's border only; on a 16x16 grid this is the design's
sampling exactly (trained checkpoints unchanged), on larger grids interior tokens read real neighbours where a
16x16 tile's border would clamp (what every interior token of the design grid does). Tokens are padded by edge
repetition to whole coarse texels (int4: a multiple of 4) or whole coarse BC blocks (bc4/bc5: a multiple of 16) and
the decoded tokens cropped back; the rate per token is the design's at every padded grid (16x at 16x).

Storage (config `storage`), for a padded grid hp x wp:
  int4: latents as 4-bit codes; graph inputs "codes" INT32 [B, C_f, hp/2, wp/2] and "coarse" INT32
        [B, C_c, hp/4, wp/4], dequantised in the graph by a per-channel affine (code * scale + offset).
  bc4 / bc5 (NTBC): each latent channel a texture plane in [0, 1] stored as BC4 (1 channel per plane) or BC5
        (2 channels) blocks; graph inputs "blocks" INT32 [B, P_f, hp/8, wp/8, W] and "coarse_blocks" INT32
        [B, P_c, hp/16, wp/16, W], decoded by ntc::BcDecode, then the same per-channel affine.
Bits per 16x16 tokens: 4 * (64 C_f + 16 C_c) for every storage (BC4/BC5 spend 4 bits per texel and channel); 16x
fewer bytes than fp16 tokens = 98304 bits.

compress:   tokens -> padded grid -> amortised encoder (the PCA pyramid read through the decoder's own skips: coarse
            features from 4x4-cell means, fine features from the 2x2 cells of the residual) -> per-image optimisation
            of the latents with the decoder frozen (Adam on the continuous latents over a batch of images: every
            image's latents are independent; the loss reads the image's own tokens, not its padding; each step
            quantised by the storage's quantiser, an image keeps the best seen) -> 4-bit codes (host) or BC blocks
            (host BC encoder) -> Payload per image (recording the image's own grid).
deployable: codes (or BC blocks) -> dequantise -> sample -> skips + MLP -> tokens_out [B, hp*wp, D]; one graph for
            every grid (the sampling positions are aranges over the traced sizes, no constants of the grid).
training:   amortised encoder -> straight-through 4-bit rounding (int4) or bc_sim.bc4_simulate (NTBC) -> decoder,
            the shared loop of ntc_export.train.compressor.
"""

import hashlib
from collections import OrderedDict

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from ..codec.payload import Payload, expect_all
from ..ops.bc_decode.torch_op import bc_decode_op
from ..ops.tracing import exporting
from ..util.errors import NtcError
from .base import TokenModel
from .bc_autoencoder import merge_cells, unmerge_cells
from .bc_sim import bc4_simulate
from .grid import crop_grid, grid_of, grid_pair, grid_tokens, pad_grid, padded, regroup
from .registry import register

GRID = 16  # the design grid's side (training tokens, rate bookkeeping)
FINE_TEXEL, COARSE_TEXEL = 2, 4  # tokens per texel side of the fine and coarse textures
STORAGES = {"int4": 0, "bc4": 1, "bc5": 2}  # channels per texture plane (0: not a texture)
WORDS = {"bc4": 2, "bc5": 4}
LEVELS = 15  # int4 codes 0..15
CHUNK_TOKENS = 64 * GRID * GRID  # tokens optimised at once by `compress` (64 design-grid images)
COMPRESSED_BYTES = 64 << 20  # latents `compress` keeps (a run encodes the same tokens repeatedly): ~680 16x16 images


def hgelu_clamp(x: torch.Tensor) -> torch.Tensor:
    """RTXNTC's clamped hard GELU: min(x, 3) * clamp(x / 3 + 0.5, 0, 1); range [-3/16, 3]."""
    return torch.clamp(x, max=3.0) * torch.clamp(x / 3.0 + 0.5, 0.0, 1.0)


def neighbour_rows(n, side) -> tuple[torch.Tensor, torch.Tensor]:
    """(lower, upper) fine-texel row of the 4 texels around each of `n` token rows' sample point: token i sits at
    texel coordinate (i + 0.5) / 2 - 0.5, so its lower texel is floor((2i - 1) / 4); edge-clamped to `side` texels.
    Sizes may be traced (an arange, no branch): the same rule on every grid."""
    lo = torch.div(2 * torch.arange(n) - 1, 4, rounding_mode="floor")
    return lo.clamp(min=0), torch.where(lo + 1 < side, lo + 1, side - 1)


def bilinear_taps(n, side) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(lower texel, upper texel, weight of the upper) per token row for bilinear sampling of `side` coarse texels at
    the token centres (i + 0.5) / 4 - 0.5, edge-clamped: F.interpolate(mode="bilinear", align_corners=False)."""
    u = ((torch.arange(n, dtype=torch.float32) + 0.5) / COARSE_TEXEL - 0.5).clamp(min=0.0)
    lo = torch.floor(u)
    t = u - lo
    lo = lo.to(torch.int64)  # <= side - 1: the last token's coordinate is side - 0.625
    return lo, torch.where(lo + 1 < side, lo + 1, side - 1), t


def four_neighbours(fine: torch.Tensor) -> torch.Tensor:
    """Fine features [B, Sh, Sw, C] -> the 4 texels around each token of the (2 Sh) x (2 Sw) grid, concatenated
    (top-left, top-right, bottom-left, bottom-right): [B, 4 Sh Sw, 4C]."""
    b, sh, sw, c = fine.shape
    top, bottom = neighbour_rows(FINE_TEXEL * sh, sh)
    left, right = neighbour_rows(FINE_TEXEL * sw, sw)
    rows = [fine.index_select(1, top), fine.index_select(1, bottom)]
    nb = torch.cat([r.index_select(2, col) for r in rows for col in (left, right)], dim=-1)
    return nb.reshape(b, -1, 4 * c)


def bilinear(coarse: torch.Tensor, h, w) -> torch.Tensor:
    """Coarse features [B, Sh, Sw, C] sampled bilinearly at the centres of an h x w token grid: [B, h*w, C]
    (separable: rows, then columns)."""
    b, sh, sw, c = coarse.shape
    for dim, n, side in ((1, h, sh), (2, w, sw)):
        lo, hi, t = bilinear_taps(n, side)
        a = coarse.index_select(dim, lo)
        shape = [1, 1, 1, 1]
        shape[dim] = n
        coarse = a + (coarse.index_select(dim, hi) - a) * t.reshape(shape)
    return coarse.reshape(b, -1, c)


def position_encoding(h, w) -> torch.Tensor:
    """[h*w, 16] one-hot of each token's (y mod 4, x mod 4): its sub-texel position."""
    p = COARSE_TEXEL
    cell = (torch.arange(h) % p).reshape(-1, 1) * p + (torch.arange(w) % p).reshape(1, -1)
    return (cell.reshape(-1, 1) == torch.arange(p * p).reshape(1, -1)).to(torch.float32)


def latent_values_for_rate(rate: float, input_dim: int = 384) -> int:
    """Latent values per design-grid image (64 C_f + 16 C_c) at 4 bits each giving `rate`x fewer bytes than fp16
    tokens."""
    return int(round(GRID * GRID * input_dim * 16 / (4 * rate)))


def pack_nibbles(codes: np.ndarray) -> bytes:
    """Codes 0..15 -> bytes, two per byte (first code in the low nibble; an odd count ends on a zero nibble)."""
    c = np.append(codes.astype(np.uint8).reshape(-1), np.zeros(codes.size % 2, np.uint8)).reshape(-1, 2)
    return (c[:, 0] | (c[:, 1] << 4)).astype(np.uint8).tobytes()


def unpack_nibbles(data: bytes) -> np.ndarray:
    b = np.frombuffer(data, np.uint8)
    return np.stack([b & 15, b >> 4], axis=1).reshape(-1)


@register("ntc_grid")
class NtcGrid(TokenModel):
    """Two latent textures + shared MLP decoder per RTXNTC, int4 or BC4/BC5 storage (see module docstring)."""

    is_compressor = True
    family = "ntc_grid"

    def __init__(self, input_dim=384, fine_channels=352, coarse_channels=128, hidden=64, layers=2, storage="int4",
                 opt_steps=40, opt_lr=0.004, num_classes=0):
        super().__init__()
        if storage not in STORAGES:
            raise NtcError(f"ntc_grid: storage must be int4, bc4 or bc5, got {storage!r}")
        c = STORAGES[storage]
        if min(fine_channels, coarse_channels) < 1 or (c and (fine_channels % c or coarse_channels % c)):
            raise NtcError(f"ntc_grid: channel counts {fine_channels}, {coarse_channels} do not fit {storage} storage")
        if fine_channels > 4 * input_dim or coarse_channels > input_dim or layers < 1 or hidden < 1:
            raise NtcError("ntc_grid: need fine_channels <= 4 D, coarse_channels <= D, layers and hidden >= 1")
        self.config = dict(input_dim=input_dim, fine_channels=fine_channels, coarse_channels=coarse_channels,
                           hidden=hidden, layers=layers, storage=storage, opt_steps=opt_steps, opt_lr=opt_lr,
                           num_classes=num_classes)
        self.input_dim = self.output_dim = input_dim
        self.cf, self.cc, self.storage = fine_channels, coarse_channels, storage
        self.opt_steps, self.opt_lr = opt_steps, opt_lr
        self._compressed = OrderedDict()  # image key -> (fine, coarse) graph inputs, see `compress`
        self.input_names = ["codes", "coarse"] if storage == "int4" else ["blocks", "coarse_blocks"]
        # padded grids come in whole coarse texels (int4) or whole coarse BC blocks (4x4 texels of 4x4 tokens)
        self.grid_multiple = COARSE_TEXEL * (1 if storage == "int4" else 4)
        # Per-channel dequantisation: unit value (code / 15, or the BC texel) -> feature = unit * scale + offset.
        self.fine_scale = nn.Parameter(torch.ones(fine_channels))
        self.fine_offset = nn.Parameter(torch.full((fine_channels,), -0.5))
        self.coarse_scale = nn.Parameter(torch.ones(coarse_channels))
        self.coarse_offset = nn.Parameter(torch.full((coarse_channels,), -0.5))
        # Linear skips (PCA pyramid at init): fine texel -> its 2x2 token cell, bilinear coarse -> token.
        self.w_fine = nn.Parameter(nn.init.orthogonal_(torch.empty(fine_channels, 4 * input_dim)) * 0.1)
        self.w_coarse = nn.Parameter(nn.init.orthogonal_(torch.empty(coarse_channels, input_dim)) * 0.1)
        self.bias = nn.Parameter(torch.zeros(4 * input_dim))  # per 2x2-cell position
        self.register_buffer("coarse_center", torch.zeros(input_dim))  # amortised encoder only: the coarse constant
        widths = [4 * fine_channels + coarse_channels + COARSE_TEXEL ** 2] + [hidden] * layers
        self.mlp = nn.ModuleList(nn.Linear(a, b) for a, b in zip(widths[:-1], widths[1:]))
        self.mlp_out = nn.Linear(hidden, input_dim)
        nn.init.zeros_(self.mlp_out.weight)  # training starts from the linear pyramid
        nn.init.zeros_(self.mlp_out.bias)
        self._init_head(num_classes)

    # ---- sampling and the decoder -------------------------------------------------------------------------------

    def sample(self, fine: torch.Tensor, coarse: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """fine features [B, Sh, Sw, C_f], coarse [B, Sh/2, Sw/2, C_c] -> (4-neighbour concat [B, N, 4 C_f],
        bilinear coarse [B, N, C_c]) for the N = 2 Sh x 2 Sw tokens."""
        return four_neighbours(fine), bilinear(coarse, FINE_TEXEL * fine.shape[1], FINE_TEXEL * fine.shape[2])

    def decode_features(self, fine: torch.Tensor, coarse: torch.Tensor) -> torch.Tensor:
        """Dequantised features fine [B, Sh, Sw, C_f], coarse [B, Sh/2, Sw/2, C_c] -> tokens [B, 2 Sh * 2 Sw, D].

        Fine skip: a token's own texel (the neighbour of its 4 that covers it) times W_f's rows for its position in
        the texel, computed per texel as fine @ W_f and laid out by unmerge_cells (the same product, no gather)."""
        b, sh, sw, _ = fine.shape
        nb, co = self.sample(fine, coarse)
        pe = position_encoding(FINE_TEXEL * sh, FINE_TEXEL * sw)
        x = torch.cat([nb, co, pe.expand(b, -1, -1)], dim=-1)
        for layer in self.mlp:
            x = hgelu_clamp(layer(x))
        fine_skip = unmerge_cells((fine @ self.w_fine + self.bias).reshape(b, -1, self.bias.shape[0]), sh, sw, 2)
        return fine_skip + co @ self.w_coarse + self.mlp_out(x)

    def dequantise(self, unit_fine: torch.Tensor, unit_coarse: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Unit values [B, C, Sh, Sw] (texture layout) -> features [B, Sh, Sw, C]."""
        f = _channels_last(unit_fine) * self.fine_scale + self.fine_offset
        c = _channels_last(unit_coarse) * self.coarse_scale + self.coarse_offset
        return f, c

    def decode_unit(self, unit_fine: torch.Tensor, unit_coarse: torch.Tensor) -> torch.Tensor:
        """Unit values fine [B, C_f, hp/2, wp/2], coarse [B, C_c, hp/4, wp/4] -> tokens [B, hp*wp, D]."""
        return self.decode_features(*self.dequantise(unit_fine, unit_coarse))

    def _with_head(self, tokens: torch.Tensor):
        return tokens if self.head is None else (tokens, self.head(tokens.mean(dim=1)))

    # ---- the deployable graph -----------------------------------------------------------------------------------

    def forward(self, fine_in: torch.Tensor, coarse_in: torch.Tensor):
        """int4: codes INT32 [B, C_f, hp/2, wp/2], coarse INT32 [B, C_c, hp/4, wp/4]; bc4/bc5: blocks INT32
        [B, P_f, hp/8, wp/8, W], coarse_blocks INT32 [B, P_c, hp/16, wp/16, W] -> tokens [B, hp*wp, D] (+ logits)."""
        if not exporting():
            self._check_inputs(fine_in, coarse_in)
        if self.storage == "int4":
            uf, uc = fine_in.to(torch.float32) / LEVELS, coarse_in.to(torch.float32) / LEVELS
        else:
            uf, uc = self._bc_unit(fine_in, self.cf), self._bc_unit(coarse_in, self.cc)
        return self._with_head(self.decode_unit(uf, uc))

    def _bc_unit(self, blocks: torch.Tensor, channels: int) -> torch.Tensor:
        """BC blocks [B, P, by, bx, W] -> unit values [B, channels, 4 by, 4 bx] (plane p holds channels
        p*c .. p*c + c - 1)."""
        b, p, by, bx, words = blocks.shape
        c = STORAGES[self.storage]
        texels = bc_decode_op(blocks.reshape(-1, by, bx, words), self.storage, "tokens", "float32")
        texels = texels.reshape(b, p, 4 * by, 4 * bx, c).permute(0, 1, 4, 2, 3)
        return regroup(texels, b, channels, 4 * by, 4 * bx)

    def _input_shapes(self, grid=GRID) -> list[tuple[int, ...]]:
        """The graph's input shapes (batch left out) for a token grid (a side or (h, w); padded as `compress` pads)."""
        h, w = (padded(s, self.grid_multiple) for s in grid_pair(grid))
        if self.storage == "int4":
            return [(self.cf, h // FINE_TEXEL, w // FINE_TEXEL), (self.cc, h // COARSE_TEXEL, w // COARSE_TEXEL)]
        c, words, block = STORAGES[self.storage], WORDS[self.storage], 4 * FINE_TEXEL  # tokens per fine BC block
        return [(self.cf // c, h // block, w // block, words),
                (self.cc // c, h // (2 * block), w // (2 * block), words)]

    def _check_inputs(self, *inputs) -> None:
        """Both inputs int32 with this model's channels (words), one batch, the fine texture twice the coarse one."""
        fine, coarse = inputs
        shape_f, shape_c = self._input_shapes()
        for name, t, shape in zip(self.input_names, inputs, (shape_f, shape_c)):
            if not isinstance(t, torch.Tensor) or t.dtype != torch.int32:
                raise NtcError(f"ntc_grid {name} must be an int32 tensor, got {getattr(t, 'dtype', type(t).__name__)}")
            if t.dim() != len(shape) + 1 or t.shape[1] != shape[0] or t.shape[4:] != shape[3:] or min(t.shape) < 1:
                dims = ", ".join([str(shape[0]), "y", "x", *map(str, shape[3:])])
                raise NtcError(f"ntc_grid {name} must be INT32 [B, {dims}] ({self.storage}), got shape "
                               f"{list(t.shape)}")
        if fine.shape[0] != coarse.shape[0] or list(fine.shape[2:4]) != [2 * s for s in coarse.shape[2:4]]:
            raise NtcError(f"ntc_grid {self.input_names[0]} {list(fine.shape)} and {self.input_names[1]} "
                           f"{list(coarse.shape)} are not one batch of one grid (fine texture twice the coarse)")
        for name, t in zip(self.input_names, inputs):
            if self.storage == "int4" and (int(t.min()) < 0 or int(t.max()) > LEVELS):
                raise NtcError(f"ntc_grid {name}: 4-bit codes must lie in 0..15, got {int(t.min())}..{int(t.max())}")

    # ---- quantisers (training / optimisation: straight-through) ------------------------------------------------

    def quantise_unit(self, unit: torch.Tensor) -> torch.Tensor:
        """Unit values [B, C, sh, sw] -> what storage returns, straight-through gradient."""
        unit = unit.clamp(0.0, 1.0)
        if self.storage == "int4":
            return unit + (torch.round(unit * LEVELS) / LEVELS - unit).detach()
        return bc4_simulate(unit)  # BC5 = two independent BC4 channels

    # ---- the amortised encoder ----------------------------------------------------------------------------------

    def _check_tokens(self, tokens: torch.Tensor) -> tuple[int, int]:
        """(h, w) of patch tokens [B, h, w, D] (any grid) or [B, h*w, D] (a square grid)."""
        return self.check_token_grid(tokens)

    def padded_tokens(self, tokens: torch.Tensor) -> tuple[torch.Tensor, int, int]:
        """tokens (any grid) -> ([B, hp*wp, D] on the grid padded to `grid_multiple` by edge repetition, hp, wp)."""
        self._check_tokens(tokens)
        x, h, w = grid_tokens(tokens)
        g = pad_grid(x.reshape(x.shape[0], h, w, -1), self.grid_multiple)
        return g.flatten(1, 2), g.shape[1], g.shape[2]

    def _to_unit(self, features: torch.Tensor, scale, offset) -> torch.Tensor:
        """Features [B, Sh, Sw, C] -> unit values [B, C, Sh, Sw] (inverse of the dequantisation affine)."""
        return ((features - offset) / scale).permute(0, 3, 1, 2).clamp(0.0, 1.0)

    def amortised(self, tokens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """tokens (any grid) -> unit values of the padded grid (fine [B, C_f, hp/2, wp/2], coarse
        [B, C_c, hp/4, wp/4]): least-squares reads through the linear skips (pseudo-inverses), coarse first, fine on
        what the quantised coarse level leaves; the MLP is left out. With PCA skips this is the PCA pyramid's
        encoder."""
        x, h, w = self.padded_tokens(tokens)
        b, p = x.shape[0], COARSE_TEXEL
        w_c, w_f = self.w_coarse.detach(), self.w_fine.detach()
        means = x.reshape(b, h // p, p, w // p, p, -1).mean((2, 4))
        fc = (means - self.coarse_center) @ torch.linalg.pinv(w_c)
        uc = self.quantise_unit(self._to_unit(fc, self.coarse_scale.detach(), self.coarse_offset.detach())).detach()
        coarse = _channels_last(uc) * self.coarse_scale.detach() + self.coarse_offset.detach()
        residual = x - bilinear(coarse, h, w) @ w_c
        cells = merge_cells(residual, h, w, 2) - self.bias.detach()
        fine = (cells @ torch.linalg.pinv(w_f)).reshape(b, h // 2, w // 2, -1)
        return self._to_unit(fine, self.fine_scale.detach(), self.fine_offset.detach()), uc

    # ---- training path ------------------------------------------------------------------------------------------

    def reconstruct(self, tokens: torch.Tensor):
        """Training/eval path without the per-image optimisation: amortised encoder -> simulated storage -> tokens
        [B, h*w, D] on their own grid (+ logits)."""
        uf, uc = self.amortised(tokens)
        out = self.decode_unit(self.quantise_unit(uf), self.quantise_unit(uc))
        return self._with_head(self._crop(out, uf, grid_of(tokens, self.arch)))

    @staticmethod
    def _crop(decoded: torch.Tensor, unit_fine: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
        """Tokens decoded on the padded grid (the fine texture's, doubled) -> the image's own grid."""
        return crop_grid(decoded, (FINE_TEXEL * unit_fine.shape[2], FINE_TEXEL * unit_fine.shape[3]), grid)

    # ---- the real encoder: per-image optimisation ---------------------------------------------------------------

    def image_loss(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Per-image loss [B]: token MSE over the image's token variance + (1 - mean token cosine)."""
        var = (target - target.mean(1, keepdim=True)).pow(2).mean((1, 2)).clamp_min(1e-8)
        mse = (pred - target).pow(2).mean((1, 2)) / var
        return mse + 1.0 - F.cosine_similarity(pred, target, dim=-1).mean(1)

    def optimise(self, tokens: torch.Tensor, steps: int | None = None, lr: float | None = None
                 ) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-image optimisation of the latents (decoder frozen) from the amortised start: Adam on the continuous
        unit values, one run over the batch (every image's latents and loss are its own, and Adam is per element).
        The loss reads the image's own tokens (the padding is cropped off before it). Each step's latents are
        quantised by the storage's quantiser and an image keeps the best quantised latents seen (its start
        included), so optimisation never raises an image's loss. Gradients through the continuous latents, not
        straight-through rounding: on photo tokens STE steps moved many codes across rounding boundaries at once
        and raised the loss (0.104 -> 0.12 in 40 steps at any lr tried), the continuous descent lowered it
        (0.117 -> 0.112). Returns quantised unit values (fine, coarse) of the padded grid."""
        steps = self.opt_steps if steps is None else steps
        lr = self.opt_lr if lr is None else lr
        grid, target = grid_of(tokens, self.arch), grid_tokens(tokens)[0]
        was_training = self.training
        self.eval()
        params = [p for p in self.parameters() if p.requires_grad]
        for p in params:
            p.requires_grad_(False)
        try:
            with torch.no_grad():
                uf, uc = self.amortised(tokens)
            uf, uc = uf.clone().requires_grad_(True), uc.clone().requires_grad_(True)
            loss_of = lambda f, c: self.image_loss(self._crop(self.decode_unit(f, c), f, grid), target)  # noqa: E731
            best_f = best_c = best_loss = None
            opt = torch.optim.Adam([uf, uc], lr=lr)
            for step in range(steps + 1):
                with torch.no_grad():
                    qf, qc = self.quantise_unit(uf), self.quantise_unit(uc)
                    loss_q = loss_of(qf, qc)
                    if best_loss is None:
                        best_f, best_c, best_loss = qf.clone(), qc.clone(), loss_q
                    else:
                        better = loss_q < best_loss
                        best_loss = torch.where(better, loss_q, best_loss)
                        best_f[better], best_c[better] = qf[better], qc[better]
                if step == steps:
                    break
                loss = loss_of(uf, uc)
                opt.zero_grad(set_to_none=True)
                loss.sum().backward()
                opt.step()
                with torch.no_grad():
                    uf.clamp_(0.0, 1.0)
                    uc.clamp_(0.0, 1.0)
        finally:
            for p in params:
                p.requires_grad_(True)
            self.train(was_training)
        return best_f, best_c

    # ---- host compress / decompress -----------------------------------------------------------------------------

    def _as_tensor(self, tokens) -> torch.Tensor:
        t = tokens.float() if isinstance(tokens, torch.Tensor) else torch.as_tensor(np.asarray(tokens, np.float32))
        self._check_tokens(t)
        return t

    def compress(self, tokens, steps: int | None = None, chunk_tokens: int = CHUNK_TOKENS
                 ) -> tuple[np.ndarray, np.ndarray]:
        """tokens [N, h, w, D] (any grid; or [N, h*w, D] square) -> the graph's two INT32 inputs for the grid padded
        to `grid_multiple`: codes [N, C_f, hp/2, wp/2] and [N, C_c, hp/4, wp/4] (int4) or BC blocks
        [N, P_f, hp/8, wp/8, W] and [N, P_c, hp/16, wp/16, W] (host BC encoder, "fast": the encoder bc_sim
        simulates). Images are optimised `chunk_tokens` padded tokens at a time. An image this model has already
        compressed (same tokens, weights and steps) is taken from `_compressed` instead of optimised again: each
        image's optimisation is its own (per-image loss, per-element Adam), so the batch it came in does not matter."""
        t = self._as_tensor(tokens)
        hp, wp = (padded(s, self.grid_multiple) for s in grid_of(t, self.arch))
        chunk = max(1, chunk_tokens // (hp * wp))
        setting = hashlib.sha256(self.fingerprint() + repr((self.opt_steps if steps is None else steps,
                                                            self.opt_lr)).encode())
        keys = [_image_key(setting, image) for image in t]
        todo = [i for i, key in enumerate(keys) if key not in self._compressed]
        for s in range(0, len(todo), chunk):
            part = todo[s:s + chunk]
            qf, qc = self.optimise(t[part], steps)
            if self.storage == "int4":
                fine, coarse = (torch.round(q * LEVELS).to(torch.int32).numpy() for q in (qf, qc))
            else:
                fine, coarse = self._bc_blocks(qf), self._bc_blocks(qc)
            for j, i in enumerate(part):
                self._compressed[keys[i]] = (fine[j].copy(), coarse[j].copy())
        out = [self._compressed[key] for key in keys]
        self._keep_recent(keys)
        return np.stack([o[0] for o in out]), np.stack([o[1] for o in out])

    def _keep_recent(self, used: list[bytes]) -> None:
        """Mark `used` as the most recent entries of `_compressed`, then drop the least recent beyond
        COMPRESSED_BYTES."""
        for key in used:
            self._compressed.move_to_end(key)
        kept = sum(f.nbytes + c.nbytes for f, c in self._compressed.values())
        while kept > COMPRESSED_BYTES:
            f, c = self._compressed.popitem(last=False)[1]
            kept -= f.nbytes + c.nbytes

    def _bc_blocks(self, unit: torch.Tensor) -> np.ndarray:
        """Unit values [N, C, sh, sw] -> INT32 BC blocks [N, C/c, sh/4, sw/4, W] from the host encoder."""
        from ..codec.decode import blocks_to_int32
        from ..codec.encode import encode

        n, ch, sh, sw = unit.shape
        c = STORAGES[self.storage]
        planes = unit.detach().reshape(n * ch // c, c, sh, sw).permute(0, 2, 3, 1).numpy()
        tall = np.ascontiguousarray(planes.reshape(-1, sw, c))  # planes stacked vertically: blocks stay per plane
        blocks = encode(tall[..., 0] if c == 1 else tall, self.storage, quality="fast")
        return blocks_to_int32(blocks.reshape(n, ch // c, sh // 4, sw // 4, -1))

    @torch.no_grad()
    def decompress(self, fine_in, coarse_in) -> np.ndarray:
        """The graph's two inputs -> tokens float32 [N, hp*wp, D] on the padded grid."""
        out = self.eval()(torch.as_tensor(np.asarray(fine_in)), torch.as_tensor(np.asarray(coarse_in)))
        return (out[0] if isinstance(out, tuple) else out).numpy()

    def bytes_per_image(self, grid=GRID) -> int:
        """Latent bytes of one image at a token grid (a side or (h, w); padded to `grid_multiple`), 4 bits per value:
        the rate this model is built for (payloads add a header)."""
        values = sum(int(np.prod(s)) for s in self._input_shapes(grid))  # codes, or INT32 block words
        return (values + 1) // 2 if self.storage == "int4" else 4 * values

    # ---- the compressor contract: one payload per image ----------------------------------------------------------

    def _body(self, fine_in: np.ndarray, coarse_in: np.ndarray) -> bytes:
        if self.storage == "int4":
            return pack_nibbles(np.concatenate([fine_in.reshape(-1), coarse_in.reshape(-1)]))
        return fine_in.astype("<i4").tobytes() + coarse_in.astype("<i4").tobytes()

    def _unbody(self, body: bytes, grid: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
        shape_f, shape_c = self._input_shapes(grid)
        n_f, n_c = int(np.prod(shape_f)), int(np.prod(shape_c))
        if self.storage == "int4":
            codes = unpack_nibbles(body)[:n_f + n_c].astype(np.int32)
        else:
            codes = np.frombuffer(body, "<i4").astype(np.int32)
        return codes[:n_f].reshape(shape_f), codes[n_f:].reshape(shape_c)

    def encode(self, patch_tokens, steps: int | None = None) -> list[bytes]:
        """Patch tokens [N, h, w, D] (any grid; or [N, h*w, D] square) -> one payload per image: packed 4-bit codes
        (fine, then coarse; low nibble first) or the BC blocks as little-endian INT32 words (fine planes, then coarse
        planes) of the padded grid; the payload records the image's own grid (h, w)."""
        tokens = np.asarray(patch_tokens, dtype=np.float32)
        grid = grid_of(tokens, self.arch, self.input_dim)
        fine_in, coarse_in = self.compress(tokens, steps)
        fingerprint = self.fingerprint()
        return [Payload(self.family, fingerprint, grid, self._body(f, c)).pack() for f, c in zip(fine_in, coarse_in)]

    def decode(self, payloads) -> np.ndarray:
        """Payloads from `encode` of this model (one grid) -> patch tokens float32 [N, h*w, D] on that grid."""
        fingerprint = self.fingerprint()
        parsed = expect_all(payloads, self.family, fingerprint)
        grid = parsed[0].grid
        if min(grid) < 1:
            raise NtcError(f"payload token grid {grid[0]}x{grid[1]} is empty")
        size = self.bytes_per_image(grid)
        for i, p in enumerate(parsed):
            if len(p.body) != size:
                raise NtcError(f"payload {i}: {len(p.body)} body bytes, this model needs {size} at a "
                               f"{grid[0]}x{grid[1]} grid")
        pairs = [self._unbody(p.body, grid) for p in parsed]
        fine = np.stack([a for a, _ in pairs])
        tokens = self.decompress(fine, np.stack([b for _, b in pairs]))
        return crop_grid(tokens, tuple(padded(s, self.grid_multiple) for s in grid), grid)

    # ---- export interface ---------------------------------------------------------------------------------------

    def example_inputs(self, batch: int = 2, grid=GRID) -> tuple:
        """The graph's inputs for `batch` images at a token grid (a side or (h, w); padded to `grid_multiple`)."""
        g = torch.Generator().manual_seed(0)
        shapes = self._input_shapes(grid)
        if self.storage == "int4":
            return tuple(torch.randint(0, LEVELS + 1, (batch, *s), generator=g, dtype=torch.int32) for s in shapes)
        return tuple(torch.randint(-(2**31), 2**31 - 1, (batch, *s), generator=g, dtype=torch.int64).to(torch.int32)
                     for s in shapes)

    def input_axes(self) -> dict:
        fine, coarse = self.input_names
        unit = "" if self.storage == "int4" else "_blocks"  # texels, or BC blocks of 4x4 texels
        return {fine: {0: "batch", 2: f"fine{unit}_y", 3: f"fine{unit}_x"},
                coarse: {0: "batch", 2: f"coarse{unit}_y", 3: f"coarse{unit}_x"}}

    def prepare_inputs(self, patch_tokens) -> dict:
        """Held-out tokens (any grid) -> the deployable graph's feeds from the real encoder (per-image optimisation)
        for the padded grid (the graph decodes that grid; `decode` crops it)."""
        fine_in, coarse_in = self.compress(patch_tokens)
        return dict(zip(self.input_names, (fine_in, coarse_in)))


def _image_key(setting, image: torch.Tensor) -> bytes:
    """One image's key in `_compressed`: the model and optimisation setting, its grid and its token values."""
    h = setting.copy()
    h.update(repr(tuple(image.shape)).encode())
    h.update(image.detach().contiguous().numpy().tobytes())
    return h.digest()


def _channels_last(unit: torch.Tensor) -> torch.Tensor:
    """[B, C, Sh, Sw] -> [B, Sh, Sw, C] through a contiguous copy (later reshapes add no size guard)."""
    b, c, sh, sw = unit.shape
    return regroup(unit.permute(0, 2, 3, 1), b, sh, sw, c)
