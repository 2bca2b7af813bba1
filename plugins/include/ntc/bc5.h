// BC5 UNORM block decoder: two BC4 blocks, red then green.
#pragma once
#include "ntc/bc4.h"

namespace ntc {
namespace bc {

// words: the block's four little-endian 32-bit words; red/green: 16 texels each, row-major.
NTC_HD void bc5_decode_block(const uint32_t* words, uint8_t* red, uint8_t* green) {
  bc4_decode_block(words, red);
  bc4_decode_block(words + 2, green);
}

}  // namespace bc
}  // namespace ntc
