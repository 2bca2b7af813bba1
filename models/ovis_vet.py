"""`ovis_vet`: Ovis's visual tokenizer head and visual embedding table (Lu et al. 2024, AIDC-AI/Ovis).

tokens [B, h, w, D] (any grid) -> hidden_stride x hidden_stride merge (grid zero-padded to a multiple, Ovis's order:
(row, col, D) inside a cell) -> Linear(s*s*D, V, no bias) -> LayerNorm(V) -> softmax over the visual vocabulary
(fp32) -> probabilities @ table [V, D_out] (Ovis's VisualEmbedding on float input). `hard`: the argmax visual word's
table row (Ovis's st_argmax forward value) and the word ids as a second output.
State dict: `tokenizer_head.0.weight`, `tokenizer_head.1.{weight,bias}`, `vte.weight` (Ovis: visual_tokenizer.head.*,
vte.weight). Ovis's table has 5 more rows (image indicator tokens) that the LLM looks up by id; the tokenizer's
probabilities are zero there, so they are left out.
"""

import torch
import torch.nn as nn

from ..util.errors import NtcError
from .base import TokenModel
from .grid import grid_tokens
from .projectors import _pad_grid, _space_to_depth
from .registry import register

MAX_VOCAB = 65536


@register("ovis_vet")
class OvisVET(TokenModel):
    """Patch tokens [B, h, w, D] -> visual embeddings [B, ceil(h/s)*ceil(w/s), D_out] (+ word ids with `hard`)."""

    def __init__(self, input_dim=384, output_dim=512, vocab_size=512, hidden_stride=2, hard=False, num_classes=0):
        super().__init__()
        if not 2 <= vocab_size <= MAX_VOCAB:
            raise NtcError(f"ovis_vet: vocab_size must be in 2..{MAX_VOCAB}, got {vocab_size}")
        self.config = dict(input_dim=input_dim, output_dim=output_dim, vocab_size=vocab_size,
                           hidden_stride=hidden_stride, hard=hard, num_classes=num_classes)
        self.input_dim, self.output_dim, self.stride, self.hard = input_dim, output_dim, hidden_stride, hard
        merged = input_dim * hidden_stride * hidden_stride
        self.tokenizer_head = nn.Sequential(nn.Linear(merged, vocab_size, bias=False), nn.LayerNorm(vocab_size))
        self.vte = nn.Embedding(vocab_size, output_dim)
        self._init_head(num_classes)

    @property
    def output_names(self) -> list[str]:
        return ["tokens_out"] + (["visual_ids"] if self.hard else []) + (["logits"] if self.head is not None else [])

    def logits(self, tokens: torch.Tensor, h, w) -> torch.Tensor:
        """Visual-word logits [B, N', V] (after the head's LayerNorm)."""
        x, h, w = _pad_grid(tokens, h, w, self.stride)
        return self.tokenizer_head(_space_to_depth(x, h, w, self.stride))

    def embed(self, logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        # No explicit fp32 casts: the fp16 export keeps LayerNorm, Softmax and TopK in fp32 by itself, and an
        # fp32 Cast pair around Softmax lets the float16 pass drop the Cast back to fp16 (a mistyped MatMul).
        if self.hard:  # TopK, not ArgMax: TopK stays fp32 in fp16 graphs, so near-ties pick the fp32 word
            ids = logits.topk(1, dim=-1).indices[..., 0]
            return self.vte(ids), ids
        return torch.softmax(logits, dim=-1) @ self.vte.weight, None

    def forward(self, tokens: torch.Tensor):
        """tokens [B, h, w, D] (any grid; or [B, h*w, D] square) -> embeddings (+ word ids, logits)."""
        if not torch.compiler.is_exporting():
            self.check_token_grid(tokens)
        x, h, w = grid_tokens(tokens)
        out, ids = self.embed(self.logits(x, h, w))
        extra = ([ids] if ids is not None else []) + ([self.head(out.mean(dim=1))] if self.head is not None else [])
        return (out, *extra) if extra else out
