// BC1 (DXT1) block decoder: two RGB565 endpoints + 16 2-bit indices, with the 3-colour + transparent-black mode.
#pragma once
#include "ntc/bc_common.h"

namespace ntc {
namespace bc {

// 5- and 6-bit channel to 8 bits by bit replication (exact D3D expansion).
NTC_HD uint32_t bc1_expand5(uint32_t c) { return (c << 3) | (c >> 2); }
NTC_HD uint32_t bc1_expand6(uint32_t c) { return (c << 2) | (c >> 4); }

// Palette entry `index` for one 8-bit channel.
// Rounding rule (host and device alike): ideal D3D interpolation rounded to nearest on the bit-replicated 8-bit
// endpoints: c2 = (2*c0 + c1 + 1) / 3, c3 = (c0 + 2*c1 + 1) / 3 (4 colours), c2 = (c0 + c1 + 1) / 2 (3 colours).
// It stays within +-1 of bcdec (exact c*255/31 expansion) and of texture2ddecoder (truncating interpolation);
// AMD/NVIDIA hardware use their own fixed-point rules and may also differ by 1.
NTC_HD uint32_t bc1_channel(uint32_t c0, uint32_t c1, uint32_t index, bool four_colour) {
  if (index == 0) return c0;
  if (index == 1) return c1;
  if (four_colour) return index == 2 ? (2 * c0 + c1 + 1) / 3 : (c0 + 2 * c1 + 1) / 3;
  return index == 2 ? (c0 + c1 + 1) / 2 : 0;
}

// words: the block's two little-endian 32-bit words. rgba: 16 texels, row-major, packed R | G<<8 | B<<16 | A<<24.
NTC_HD void bc1_decode_block(const uint32_t* words, uint32_t* rgba) {
  const uint32_t endpoint0 = words[0] & 0xFFFFu;
  const uint32_t endpoint1 = words[0] >> 16;
  const uint32_t indices = words[1];
  // c0 > c1 selects 4 opaque colours; otherwise 3 colours and index 3 = transparent black.
  const bool four_colour = endpoint0 > endpoint1;
  const uint32_t r0 = bc1_expand5(endpoint0 >> 11), g0 = bc1_expand6((endpoint0 >> 5) & 63u), b0 = bc1_expand5(endpoint0 & 31u);
  const uint32_t r1 = bc1_expand5(endpoint1 >> 11), g1 = bc1_expand6((endpoint1 >> 5) & 63u), b1 = bc1_expand5(endpoint1 & 31u);
#if defined(__CUDACC__)
#pragma unroll
#endif
  for (int i = 0; i < 16; ++i) {
    const uint32_t index = (indices >> (2 * i)) & 3u;
    const bool transparent = !four_colour && index == 3;
    const uint32_t r = bc1_channel(r0, r1, index, four_colour);
    const uint32_t g = bc1_channel(g0, g1, index, four_colour);
    const uint32_t b = bc1_channel(b0, b1, index, four_colour);
    const uint32_t a = transparent ? 0u : 255u;
    rgba[i] = r | (g << 8) | (b << 16) | (a << 24);
  }
}

}  // namespace bc
}  // namespace ntc
