"""The BC formats table: the one place that says each format's C ABI code, block size, channels and INT32 words.

Codes are the `format` numbers of the C ABI (plugins/include/ntc/contracts.h); plugin tensors cannot be UINT8, so
blocks travel as INT32 words (2 for 64-bit blocks, 4 for 128-bit blocks).
"""

from dataclasses import dataclass


@dataclass(frozen=True)
class BcFormat:
    name: str
    code: int  # C ABI format code
    block_bytes: int  # bytes per 4x4 block
    channels: int  # decoded channels per texel

    @property
    def int32_words(self) -> int:
        return self.block_bytes // 4


TABLE = {f.name: f for f in (
    BcFormat("bc1", 0, 8, 4),
    BcFormat("bc4", 1, 8, 1),
    BcFormat("bc5", 2, 16, 2),
    BcFormat("bc6h_uf16", 3, 16, 3),
    BcFormat("bc6h_sf16", 4, 16, 3),
    BcFormat("bc7", 5, 16, 4),
)}

# Views of TABLE, keyed by format name.
FORMATS = tuple(TABLE)
FORMAT_CODES = {n: f.code for n, f in TABLE.items()}
BLOCK_BYTES = {n: f.block_bytes for n, f in TABLE.items()}
CHANNELS = {n: f.channels for n, f in TABLE.items()}
WORDS = {n: f.int32_words for n, f in TABLE.items()}
