// BC4 UNORM block decoder: two 8-bit endpoints + 16 3-bit indices (also each half of a BC5 block).
#pragma once
#include "ntc/bc_common.h"

namespace ntc {
namespace bc {

// Palette entry `index`: 6 interpolated values when e0 > e1, else 4 interpolated values plus 0 and 255.
// Interpolation truncates (integer division), the rule of bcdec, the project's bit-exact reference for BC4/BC5.
NTC_HD uint32_t bc4_value(uint32_t e0, uint32_t e1, uint32_t index) {
  if (index == 0) return e0;
  if (index == 1) return e1;
  if (e0 > e1) return ((8 - index) * e0 + (index - 1) * e1) / 7;
  if (index == 6) return 0;
  if (index == 7) return 255;
  return ((6 - index) * e0 + (index - 1) * e1) / 5;
}

// words: the block's two little-endian 32-bit words; out: 16 texels, row-major.
NTC_HD void bc4_decode_block(const uint32_t* words, uint8_t* out) {
  const uint64_t bits = (uint64_t)words[0] | ((uint64_t)words[1] << 32);
  const uint32_t endpoint0 = (uint32_t)(bits & 0xFFu);
  const uint32_t endpoint1 = (uint32_t)((bits >> 8) & 0xFFu);
  const uint64_t indices = bits >> 16;  // 16 x 3 bits
#if defined(__CUDACC__)
#pragma unroll
#endif
  for (int i = 0; i < 16; ++i) {
    out[i] = (uint8_t)bc4_value(endpoint0, endpoint1, (uint32_t)((indices >> (3 * i)) & 7u));
  }
}

}  // namespace bc
}  // namespace ntc
