"""`hyperprior`: learned transform coding of the token grid with a scale hyperprior (Ballé et al. 2018).

Any grid h x w: tokens are padded by edge repetition to whole k x k cells (k = `merge`, 2 or 4; gh, gw = hp/k, wp/k
latent cells), the decoded tokens cropped back to the image's own grid (the payload records it).
analysis g_a:   tokens [B, h, w, D] -> k x k token cells m [B, gh*gw, k*k*D] -> y = (T(m - center) + MLP(m)) * gain
                (per channel) -> y [B, M, gh, gw]. T is linear and tied with g_s: `dense`, one basis [M, k*k*D] (PCA
                of cells at init); or `separable`, a basis over the cell's k*k positions times one over the token's
                D features (PCA of tokens, then the Karhunen-Loeve transform of the k x k neighbourhood of each
                component: the separable KLT of transform coding, Goyal, "Theoretical foundations of transform
                coding", IEEE SPM 2001), M = k*k*D coefficients of which the rate keeps the few that matter: a
                4 x 4 cell's redundancy for (k*k)^2 + D^2 weights, where a dense basis would need (k*k*D)^2. The
                residual MLP is optional (enc_dim 0).
hyper-analysis: |y| -> conv1x1 -> GELU -> conv3x3 stride 2 -> z [B, Nz, ceil(gh/2), ceil(gw/2)]
hyper-synthesis h_s: z_hat -> transposed conv 4x4 (stride 2) -> GELU -> conv1x1 -> exp -> scales
                [B, M, 2 ceil(gh/2), 2 ceil(gw/2)], cropped to y's [gh, gw] (an odd latent side leaves the last row
                of scales unused; padding tokens to a multiple of 2k instead would code a whole row of y more)
                (1x1 convs at the M-channel ends: the checkpoint's bytes go to latent channels)
synthesis g_s:  y_hat / gain -> T^-1 (transposed bases) + center + Linear(LayerNorm(SwinBlocks(Linear up(.))))
                -> unmerge -> tokens_out [B, hp*wp, D] (depth 0: no residual, g_s is linear)

compress:   g_a, h_a in PyTorch; z symbols = round(z - median) on each channel's support (factorized prior, models/
            entropy_layers.EntropyBottleneck); scales = h_s(z_hat) per image, mapped to the scale table's index;
            y symbols = round(y); both range coded on the host (codec/range_coding, constriction); payload =
            codec.payload header + body (z word count, z words, y words, CRC32 of the symbols).
decompress: z decoded -> h_s (PyTorch, per image, as in compress: the same indexes) -> y decoded -> g_s.
deployable: the synthesis g_s: input "latents" float32 [B, M, gh, gw] (the integer-valued y_hat) -> tokens_out
            [B, hp*wp, D] (`decode` crops). The hyper-synthesis exports on its own (`hyper_synthesis_graph`:
            "z_hat" -> "scales", uncropped); entropy coding stays on the host: bitstream -> host range decoder ->
            engine.
training:   additive uniform noise in the rate terms, straight-through rounding into the synthesis; the family's loss
            term is lambda * bits per image / fp16 bits per image, lambda adapted after every step by dual ascent
            toward `target_rate` (stored in the buffer `log_lambda`).
"""

import math

import numpy as np
import torch
import torch.nn as nn

from ..codec import range_coding as rc
from ..codec.payload import Payload, expect_all
from ..ops.tracing import exporting
from ..util.errors import NtcError
from .base import TokenModel
from .bc_autoencoder import merge_cells, unmerge_cells
from .blocks import SwinBlock
from .grid import crop_grid, grid_of, grid_pair, grid_tokens, pad_grid, padded
from .entropy_layers import EntropyBottleneck, GaussianConditional
from .registry import register

FP16_TOKEN_BYTES = 2
MAX_LOG_SCALE = 9.0  # e^9 ~ 8100, above the scale table's 4096
MAX_GRID_SIDE = 256  # a payload header naming a larger grid is corrupt, not decoded
MERGES = (2, 4)  # token cell sides
TRANSFORMS = ("dense", "separable")


def _refresh_tables(module, incompatible_keys) -> None:
    """After load_state_dict: eval mode's coding tables follow the loaded weights."""
    module.train(module.training)


class HyperSynthesis(nn.Module):
    """h_s: z_hat [B, Nz, zh, zw] -> positive scales [B, M, 2 zh, 2 zw] (y's coder crops them to y's grid)."""

    def __init__(self, hyper: int, latent: int):
        super().__init__()
        self.up = nn.ConvTranspose2d(hyper, hyper, 4, stride=2, padding=1)
        self.act = nn.GELU()
        self.out = nn.Conv2d(hyper, latent, 1)

    def forward(self, z_hat: torch.Tensor) -> torch.Tensor:
        # log-scales capped just above the scale table's top: exp cannot overflow (no inf/NaN gradients)
        return torch.exp(torch.clamp(self.out(self.act(self.up(z_hat))), max=MAX_LOG_SCALE))


class HyperSynthesisGraph(nn.Module):
    """The hyper-synthesis as an exportable graph of its own ("z_hat" -> "scales"), fed from real payload symbols."""

    input_names = ["z_hat"]
    output_names = ["scales"]

    def __init__(self, owner: "HyperpriorCoder"):
        super().__init__()
        self.h_s = owner.h_s
        self.arch = f"{owner.arch}.hyper_synthesis"
        self.input_dim = owner.input_dim  # the tokens `prepare_inputs` reads
        self.grid_multiple = 2 * owner.merge  # z_hat has one cell per 2 x 2 latent cells
        self._owner = [owner]  # not a submodule: the graph holds h_s only

    def forward(self, z_hat: torch.Tensor) -> torch.Tensor:
        return self.h_s(z_hat)

    def example_inputs(self, batch: int = 2, grid=16) -> tuple:
        """z_hat for a token grid (a side or (h, w)): one cell per 2k tokens a side, what `prepare_inputs` gives."""
        g = torch.Generator().manual_seed(0)
        unit = self.grid_multiple
        shape = (batch, self._owner[0].hyper, *(padded(s, unit) // unit for s in grid_pair(grid)))
        return (torch.round(torch.randn(shape, generator=g) * 2),)

    def dynamic_axes(self) -> dict:
        # scales: 2 z_hat cells a side, the latent grid rounded up to even (y's coder crops)
        return {"z_hat": {0: "batch", 2: "hyper_y", 3: "hyper_x"}, "scales": {0: "batch", 2: "scales_y", 3: "scales_x"}}

    def prepare_inputs(self, patch_tokens) -> dict:
        """Held-out tokens (any grid) -> z_hat from the real quantiser (what the host decoder feeds h_s)."""
        owner = self._owner[0]
        zs = owner.analyse(owner._as_tensor(patch_tokens))[2]
        return {"z_hat": owner.entropy_bottleneck.dequantize(zs).numpy()}


@register("hyperprior")
class HyperpriorCoder(TokenModel):
    """Token compressor: learned transform + scale hyperprior, real range-coded payloads (see module docstring)."""

    input_names = ["latents"]
    is_compressor = True
    family = "hyperprior"
    decode_graph_names = ("hyper_synthesis",)  # its scales steer the range decoder of y: a decode-side graph

    def __init__(self, input_dim=384, latent=128, hyper=32, merge=2, enc_dim=64, dim=64, depth=1, heads=4, window=4,
                 mlp_ratio=2.0, target_rate=16.0, lam=30.0, lam_step=0.05, num_classes=0, transform="dense"):
        super().__init__()
        if merge not in MERGES:
            raise NtcError(f"hyperprior codes 2x2 or 4x4 token cells (merge 2 or 4), got merge {merge}")
        if transform not in TRANSFORMS:
            raise NtcError(f"hyperprior transform must be one of {', '.join(TRANSFORMS)}, got {transform!r}")
        if transform == "separable" and latent != input_dim * merge * merge:
            raise NtcError(f"hyperprior: the separable transform keeps every coefficient of a cell, latent "
                           f"{input_dim * merge * merge}, got {latent}")
        if latent > input_dim * merge * merge or latent < 1 or hyper < 1 or dim % heads:
            raise NtcError(f"hyperprior: need 1 <= latent <= {input_dim * merge * merge}, hyper >= 1, dim divisible "
                           f"by heads (got {latent}, {hyper}, {dim}, {heads})")
        if target_rate <= 0 or lam <= 0:
            raise NtcError(f"hyperprior: target_rate and lam must be positive (got {target_rate}, {lam})")
        self.config = dict(input_dim=input_dim, latent=latent, hyper=hyper, merge=merge, enc_dim=enc_dim, dim=dim,
                           depth=depth, heads=heads, window=window, mlp_ratio=mlp_ratio, target_rate=target_rate,
                           lam=lam, lam_step=lam_step, num_classes=num_classes, transform=transform)
        self.input_dim = self.output_dim = input_dim
        self.latent, self.hyper, self.merge = latent, hyper, merge
        self.grid_multiple = merge  # the deployable graph's latents: one cell per k tokens a side
        merged = input_dim * merge * merge
        # g_a / g_s share the linear coder (PCA of cells when the recipe's init sets it): one dense basis over the
        # cell, or a spatial basis over its positions times a channel basis over the token's features.
        self.transform = transform
        self.register_buffer("center", torch.zeros(merged))
        if transform == "dense":
            self.basis = nn.Parameter(nn.init.orthogonal_(torch.empty(latent, merged)))
        else:
            self.spatial_basis = nn.Parameter(nn.init.orthogonal_(torch.empty(merge * merge, merge * merge)))
            self.channel_basis = nn.Parameter(nn.init.orthogonal_(torch.empty(input_dim, input_dim)))
        # The analysis residual (optional: enc_dim 0 keeps g_a linear, its weights go to more latent channels).
        self.encoder = nn.Sequential(nn.LayerNorm(merged), nn.Linear(merged, enc_dim), nn.GELU(),
                                     nn.Linear(enc_dim, latent)) if enc_dim > 0 else None
        self.log_gain = nn.Parameter(torch.zeros(latent))
        self.h_a = nn.Sequential(nn.Conv2d(latent, hyper, 1), nn.GELU(),
                                 nn.Conv2d(hyper, hyper, 3, stride=2, padding=1))
        self.h_s = HyperSynthesis(hyper, latent)
        self.entropy_bottleneck = EntropyBottleneck(hyper)
        self.gaussian = GaussianConditional()
        # The synthesis residual (optional: depth 0 keeps g_s linear, the tied inverse of g_a's transform).
        self.up = nn.Linear(latent, dim) if depth > 0 else None
        self.blocks = nn.ModuleList(
            SwinBlock(dim, heads, window, shift=0 if i % 2 == 0 else window // 2, mlp_ratio=mlp_ratio)
            for i in range(depth))
        self.norm = nn.LayerNorm(dim) if depth > 0 else None
        self.out = nn.Linear(dim, merged) if depth > 0 else None
        ends = ([self.encoder[-1]] if self.encoder is not None else []) + ([self.out] if depth > 0 else [])
        for residual_end in ends:
            nn.init.zeros_(residual_end.weight)  # residual branches start at zero: the linear coder
            nn.init.zeros_(residual_end.bias)
        # Rate control: log lambda, adapted by dual ascent in training; the final value is kept with the weights.
        self.register_buffer("log_lambda", torch.tensor(math.log(lam)))
        self._last_bytes = None
        self.__dict__["_h_s64"] = None
        self.register_load_state_dict_post_hook(_refresh_tables)
        self._init_head(num_classes)

    # ---- pieces -------------------------------------------------------------------------------------------------

    def _as_tensor(self, tokens) -> torch.Tensor:
        t = tokens.float() if isinstance(tokens, torch.Tensor) else torch.as_tensor(np.asarray(tokens, np.float32))
        self._check_tokens(t)
        return t

    def _check_tokens(self, tokens: torch.Tensor) -> tuple[int, int]:
        """(hp, wp): the grid of tokens (any grid) padded to whole k x k cells."""
        return tuple(padded(s, self.merge) for s in self.check_token_grid(tokens))

    def cells(self, tokens: torch.Tensor) -> torch.Tensor:
        """tokens [B, h, w, D] (any grid; or [B, h*w, D] square) -> k x k token cells of the grid padded to whole
        cells, [B, (hp/k)*(wp/k), k*k*D]."""
        self._check_tokens(tokens)
        x, h, w = grid_tokens(tokens)
        g = pad_grid(x.reshape(x.shape[0], h, w, -1), self.merge)
        return merge_cells(g.flatten(1, 2), g.shape[1], g.shape[2], self.merge)

    def project(self, m: torch.Tensor) -> torch.Tensor:
        """Cells [B, n, k*k*D] -> linear coefficients [B, n, M] (separable: spatial component major)."""
        if self.transform == "dense":
            return (m - self.center) @ self.basis.T
        x = (m - self.center).reshape(*m.shape[:2], self.merge * self.merge, self.input_dim)
        return (self.spatial_basis @ x @ self.channel_basis.T).flatten(2)

    def unproject(self, v: torch.Tensor) -> torch.Tensor:
        """Coefficients [B, n, M] -> cells [B, n, k*k*D] (the transposed bases: the inverse while they stay
        orthonormal, as PCA starts them)."""
        if self.transform == "dense":
            return v @ self.basis + self.center
        x = v.reshape(*v.shape[:2], self.merge * self.merge, self.input_dim)
        return (self.spatial_basis.T @ x @ self.channel_basis).flatten(2) + self.center

    def g_a(self, tokens: torch.Tensor) -> torch.Tensor:
        """tokens (any grid) -> y [B, M, hp/k, wp/k] (k x k token cells)."""
        h, w = self._check_tokens(tokens)
        m = self.cells(tokens)
        y = self.project(m)
        if self.encoder is not None:
            y = y + self.encoder(m)
        y = y * torch.exp(self.log_gain)
        return y.transpose(1, 2).reshape(len(tokens), self.latent, h // self.merge, w // self.merge)

    def g_s(self, y_hat: torch.Tensor) -> torch.Tensor:
        """y_hat [B, M, gh, gw] -> tokens [B, (k gh)*(k gw), D] on the padded grid."""
        b, _, gh, gw = y_hat.shape
        v = y_hat.flatten(2).transpose(1, 2) * torch.exp(-self.log_gain)
        if self.up is None:
            return unmerge_cells(self.unproject(v), gh, gw, self.merge)
        x = self.up(v)
        for block in self.blocks:
            x = block(x, gh, gw)
        return unmerge_cells(self.unproject(v) + self.out(self.norm(x)), gh, gw, self.merge)

    def scales(self, z_hat: torch.Tensor, grid, h_s=None) -> torch.Tensor:
        """h_s (or its float64 copy) on z_hat, cropped to y's latent grid `grid` (gh, gw)."""
        return (h_s or self.h_s)(z_hat)[..., :grid[0], :grid[1]]

    def _own_grid(self, tokens: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
        """Tokens decoded on the padded grid -> the grid of `tokens` (the image's own)."""
        return crop_grid(out, self._check_tokens(tokens), grid_of(tokens, self.arch))

    def _with_head(self, tokens: torch.Tensor):
        return tokens if self.head is None else (tokens, self.head(tokens.mean(dim=1)))

    def lam(self) -> float:
        return float(self.log_lambda.exp())

    def train(self, mode: bool = True):
        """Entering eval mode builds the factorized prior's coding tables (medians, supports, pmfs)."""
        super().train(mode)
        self.__dict__["_h_s64"] = None  # the coder's float64 copy of h_s, rebuilt from the current weights
        if mode:
            self.entropy_bottleneck.reset()
        else:
            self.entropy_bottleneck.update()
        return self

    # ---- the deployable graph -----------------------------------------------------------------------------------

    def forward(self, latents: torch.Tensor):
        """latents float32 [B, M, gh, gw] (y_hat) -> tokens [B, k gh * k gw, D] (+ logits)."""
        if not exporting():
            self._check_latents(latents)
        return self._with_head(self.g_s(latents))

    def _check_latents(self, latents) -> None:
        if not isinstance(latents, torch.Tensor) or latents.dtype != torch.float32:
            raise NtcError(f"hyperprior latents must be a float32 tensor, got {getattr(latents, 'dtype', latents)}")
        if latents.dim() != 4 or latents.shape[1] != self.latent:
            raise NtcError(f"hyperprior latents must be float32 [B, {self.latent}, gh, gw], got shape "
                           f"{list(latents.shape)}")

    def extra_graphs(self) -> dict[str, nn.Module]:
        """The hyper-synthesis ships too: the host decoder feeds it z_hat and reads the scales of y's coder."""
        return {"hyper_synthesis": self.hyper_synthesis_graph()}

    def hyper_synthesis_graph(self) -> nn.Module:
        """h_s as its own exportable graph ("z_hat" -> "scales")."""
        return HyperSynthesisGraph(self).eval()

    # ---- training path ------------------------------------------------------------------------------------------

    def fp16_bits(self, tokens: torch.Tensor) -> float:
        """Bits of one image's own tokens (any grid) in fp16."""
        return grid_tokens(tokens)[0][0].numel() * FP16_TOKEN_BYTES * 8

    def train_forward(self, tokens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, dict]:
        """(reconstruction on the tokens' own grid, lambda * bits per image / fp16 bits per image, stats)."""
        y = self.g_a(tokens)
        z = self.h_a(torch.abs(y))
        z_hat, z_lik = self.entropy_bottleneck(z)
        y_hat, y_lik = self.gaussian(y, self.scales(z_hat, y.shape[2:]))
        bits = (-torch.log2(y_lik).sum() - torch.log2(z_lik).sum()) / len(tokens)
        self._last_bytes = float(bits.detach()) / 8 + self.overhead_bytes()
        extra = self.log_lambda.exp() * bits / self.fp16_bits(tokens)
        stats = {"bits": float(bits.detach()), "lambda": self.lam()}
        return self._own_grid(tokens, self.g_s(y_hat)), extra, stats

    @torch.no_grad()
    def after_step(self, tokens: torch.Tensor) -> None:
        """Dual ascent on log lambda: up when the step's estimated bytes exceed the target, down otherwise."""
        if self._last_bytes is None:
            return
        target = self.fp16_bits(tokens) / 8 / self.config["target_rate"]
        step = self.config["lam_step"] * (self._last_bytes / target - 1.0)
        self.log_lambda.add_(max(-0.5, min(0.5, step))).clamp_(-12.0, 12.0)

    def reconstruct(self, tokens: torch.Tensor):
        """Eval path without the range coder: tokens (any grid) -> real quantiser -> tokens on their own grid
        (+ logits)."""
        t = self._as_tensor(tokens)
        y_hat = self.gaussian.quantize(self.g_a(t))
        return self._with_head(self._own_grid(t, self.g_s(y_hat)))

    # ---- host compress / decompress -----------------------------------------------------------------------------

    def analyse(self, tokens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """tokens -> (y symbols (float, integer-valued) [B, M, gh, gw], scale indexes int64 [B, M, gh, gw],
        z symbols int64 [B, Nz, ceil(gh/2), ceil(gw/2)]); the scales come from h_s one image at a time, as in
        decode."""
        if self.training:
            raise NtcError("hyperprior: coding needs eval mode (the factorized prior's tables)")
        with torch.no_grad():
            y = self.g_a(tokens)
            zs = self.entropy_bottleneck.symbols(self.h_a(torch.abs(y)))
            idx = self.scale_indexes(zs, y.shape[2:])
            return self.gaussian.quantize(y), idx, zs

    def scale_indexes(self, z_symbols: torch.Tensor, grid) -> torch.Tensor:
        """z symbols [B, Nz, zh, zw] -> scale table indexes [B, M, gh, gw] on y's latent grid `grid`: h_s in float64,
        one image at a time, so encoder and decoder pick the same index whatever float32 kernels, batch or memory
        alignment would round differently."""
        if self._h_s64 is None:
            import copy

            self.__dict__["_h_s64"] = copy.deepcopy(self.h_s).double()  # not a submodule: no state_dict entry
        z_hat = self.entropy_bottleneck.dequantize(z_symbols, torch.float64)
        with torch.no_grad():
            return torch.cat([self.gaussian.scale_indexes(self.scales(z_hat[i:i + 1], grid, self._h_s64))
                              for i in range(len(z_hat))])

    def _z_pmfs(self, count: int) -> np.ndarray:
        """One pmf row per z symbol of one image (channel-major order, `count` positions per channel)."""
        return np.repeat(self.entropy_bottleneck.pmf_table(), count, axis=0)

    def overhead_bytes(self) -> int:
        """Bytes of a payload beyond the two streams: the payload header and the body's framing."""
        return len(Payload(self.family, b"\0" * 8, (0, 0), b"").pack()) + rc.FRAMING_BYTES

    @torch.no_grad()
    def estimate_bits(self, tokens) -> tuple[np.ndarray, np.ndarray]:
        """(y bits, z bits) per image from the model's discrete likelihoods at eval (table scales, z pmfs): the
        rate the range coder should reach, without coding."""
        ys, idx, zs = self.analyse(self._as_tensor(tokens))
        y_lik = self.gaussian.likelihood(ys, self.gaussian.scale_table[idx])
        pmf = torch.from_numpy(self.entropy_bottleneck.pmf_table())
        pmf = pmf / pmf.sum(1, keepdim=True)
        z_p = torch.gather(pmf[None].expand(len(zs), -1, -1), 2, zs.flatten(2))
        floor = 2.0 ** -rc.PRECISION  # the coder's smallest probability (its models are leaky)
        y_bits = -torch.log2(y_lik.double().clamp_min(floor)).flatten(1).sum(1)
        z_bits = -torch.log2(z_p.clamp_min(floor)).flatten(1).sum(1)
        return y_bits.numpy(), z_bits.numpy()

    def estimate_bytes(self, tokens) -> np.ndarray:
        """Estimated payload bytes per image: discrete-likelihood bits / 8 + header and framing bytes."""
        y_bits, z_bits = self.estimate_bits(tokens)
        return (y_bits + z_bits) / 8 + self.overhead_bytes()

    def _body(self, ys: torch.Tensor, idx: torch.Tensor, zs: torch.Tensor) -> bytes:
        """One image's body from its symbols."""
        z_sym = zs.reshape(-1).numpy()
        y_sym = ys.reshape(-1).to(torch.int32).numpy()
        z_words = rc.encode_categorical(z_sym, self._z_pmfs(zs[0].numel()))
        stds = self.gaussian.scale_table.double()[idx.reshape(-1)].numpy()
        y_words = rc.encode_gaussian(y_sym, stds, self.gaussian.max_symbol)
        return rc.pack_body(z_words, y_words, rc.symbols_crc(z_sym, y_sym))

    def encode(self, patch_tokens) -> list[bytes]:
        """Patch tokens [N, h, w, D] (any grid; or [N, h*w, D] square) -> one payload per image (header + range-coded
        z and y streams of the grid padded to whole cells + CRC32); the payload records the image's own grid."""
        tokens = np.asarray(patch_tokens, dtype=np.float32)
        grid = grid_of(tokens, self.arch, self.input_dim)
        ys, idx, zs = self.analyse(self._as_tensor(tokens))
        fingerprint = self.fingerprint()
        return [Payload(self.family, fingerprint, grid, self._body(ys[i], idx[i], zs[i])).pack()
                for i in range(len(tokens))]

    def _grid_shapes(self, grid: tuple[int, int], what: str) -> tuple[tuple, tuple]:
        """(y's shape, z's shape) of one image at a token grid (h, w)."""
        h, w = grid
        if not (0 < h <= MAX_GRID_SIDE and 0 < w <= MAX_GRID_SIDE):
            raise NtcError(f"{what}: token grid {h}x{w} is outside 1..{MAX_GRID_SIDE} a side; corrupt header?")
        gh, gw = padded(h, self.merge) // self.merge, padded(w, self.merge) // self.merge
        return (self.latent, gh, gw), (self.hyper, padded(gh, 2) // 2, padded(gw, 2) // 2)

    def decode_latents(self, payloads) -> np.ndarray:
        """Payloads from `encode` of this model (one grid) -> y_hat float32 [N, M, gh, gw] (the engine's input: the
        grid padded to whole cells)."""
        return self._decode_latents(payloads)[0]

    def _decode_latents(self, payloads) -> tuple[np.ndarray, tuple[int, int]]:
        """(y_hat [N, M, gh, gw], the payloads' token grid (h, w))."""
        if self.training:
            raise NtcError("hyperprior: decoding needs eval mode (the factorized prior's tables)")
        fingerprint = self.fingerprint()
        parsed = expect_all(payloads, self.family, fingerprint)
        y_shape, z_shape = self._grid_shapes(parsed[0].grid, "payload 0")
        out = []
        for i, p in enumerate(parsed):
            z_words, y_words, crc = rc.unpack_body(p.body, f"payload {i}")
            z_sym = rc.decode_categorical(z_words, self._z_pmfs(z_shape[1] * z_shape[2]))
            zs = torch.from_numpy(z_sym.astype(np.int64)).reshape(1, *z_shape)
            idx = self.scale_indexes(zs, y_shape[1:])
            stds = self.gaussian.scale_table.double()[idx.reshape(-1)].numpy()
            y_sym = rc.decode_gaussian(y_words, stds, self.gaussian.max_symbol)
            rc.check_crc(crc, f"payload {i}", z_sym, y_sym)
            out.append(y_sym.reshape(y_shape).astype(np.float32))
        return np.stack(out), parsed[0].grid

    @torch.no_grad()
    def decode(self, payloads) -> np.ndarray:
        """Payloads from `encode` of this model (one grid) -> patch tokens float32 [N, h*w, D] on that grid."""
        latents, grid = self._decode_latents(payloads)
        out = self(torch.from_numpy(latents))
        out = (out[0] if isinstance(out, tuple) else out).numpy()
        return crop_grid(out, (latents.shape[2] * self.merge, latents.shape[3] * self.merge), grid)

    # ---- export interface ---------------------------------------------------------------------------------------

    def example_inputs(self, batch: int = 2, grid=16) -> tuple:
        """latents for a token grid (a side or (h, w)), padded to whole cells as `encode` pads it."""
        g = torch.Generator().manual_seed(0)
        shape = (batch, self.latent, *(padded(s, self.merge) // self.merge for s in grid_pair(grid)))
        return (torch.round(torch.randn(shape, generator=g) * 3),)

    def input_axes(self) -> dict:
        return {"latents": {0: "batch", 2: "latent_y", 3: "latent_x"}}

    def prepare_inputs(self, patch_tokens) -> dict:
        """Held-out tokens (any grid) -> the deployable graph's feed: y_hat from the real quantiser (what the payload
        holds) on the grid padded to whole cells (the graph decodes that grid; `decode` crops it)."""
        return {"latents": self.analyse(self._as_tensor(patch_tokens))[0].numpy()}
