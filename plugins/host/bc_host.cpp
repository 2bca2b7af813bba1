// Host (CPU) BC-block decoder behind the C ABI `ntc_bc_decode`: the reference the tests and the ONNX Runtime path use.
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "ntc/bc1.h"
#include "ntc/bc4.h"
#include "ntc/bc5.h"
#include "ntc/bc6h.h"
#include "ntc/bc7.h"

namespace {

enum BcFormat { kBc1 = 0, kBc4 = 1, kBc5 = 2, kBc6hUf16 = 3, kBc6hSf16 = 4, kBc7 = 5 };

// Error codes of ntc_bc_decode (mirrored in toolchain/codec/decode.py).
constexpr int kErrNullPointer = -1;
constexpr int kErrBadFormat = -2;
constexpr int kErrBadSize = -3;
constexpr int kErrBufferSize = -4;

int block_bytes(int format) { return (format == kBc1 || format == kBc4) ? 8 : 16; }

int channels(int format) {
  switch (format) {
    case kBc1: case kBc7: return 4;
    case kBc4: return 1;
    case kBc5: return 2;
    default: return 3;
  }
}

// Decodes one block into 16 texels x channels of uint8 (or uint16 half bits for BC6H) in `texels`.
void decode_block(int format, const uint8_t* block, void* texels) {
  uint32_t words[4];
  memcpy(words, block, (size_t)block_bytes(format));  // the little-endian words of the block
  uint8_t* bytes = static_cast<uint8_t*>(texels);
  switch (format) {
    case kBc1:
    case kBc7: {
      uint32_t rgba[16];
      if (format == kBc1) ntc::bc::bc1_decode_block(words, rgba);
      else ntc::bc::bc7_decode_block(words, rgba);
      for (int i = 0; i < 16; ++i)
        for (int c = 0; c < 4; ++c) bytes[4 * i + c] = (uint8_t)(rgba[i] >> (8 * c));
      break;
    }
    case kBc4:
      ntc::bc::bc4_decode_block(words, bytes);
      break;
    case kBc5: {
      uint8_t red[16], green[16];
      ntc::bc::bc5_decode_block(words, red, green);
      for (int i = 0; i < 16; ++i) { bytes[2 * i] = red[i]; bytes[2 * i + 1] = green[i]; }
      break;
    }
    default:
      ntc::bc::bc6h_decode_block(words, format == kBc6hSf16, static_cast<uint16_t*>(texels));
      break;
  }
}

}  // namespace

extern "C" {

// Decodes ceil(h/4)*ceil(w/4) row-major blocks into an HxWxC image (cropped, the DDS rule).
// out: uint8 for bc1/bc4/bc5/bc7, uint16 half bits for bc6h. Returns 0 or a negative error code.
int ntc_bc_decode(const uint8_t* blocks, size_t nbytes, int format, int height, int width, void* out) {
  if (blocks == nullptr || out == nullptr) return kErrNullPointer;
  if (format < kBc1 || format > kBc7) return kErrBadFormat;
  if (height <= 0 || width <= 0) return kErrBadSize;
  const size_t blocks_y = ((size_t)height + 3) / 4, blocks_x = ((size_t)width + 3) / 4;
  const size_t bb = (size_t)block_bytes(format);
  if (nbytes != blocks_y * blocks_x * bb) return kErrBufferSize;
  const int c = channels(format);
  const size_t texel_bytes = (size_t)c * (format == kBc6hUf16 || format == kBc6hSf16 ? 2 : 1);
  uint8_t* dst = static_cast<uint8_t*>(out);
  alignas(8) uint8_t texels[16 * 4 * 2];
  for (size_t by = 0; by < blocks_y; ++by) {
    for (size_t bx = 0; bx < blocks_x; ++bx) {
      decode_block(format, blocks + (by * blocks_x + bx) * bb, texels);
      const size_t rows = (size_t)height - 4 * by < 4 ? (size_t)height - 4 * by : 4;
      const size_t cols = (size_t)width - 4 * bx < 4 ? (size_t)width - 4 * bx : 4;
      for (size_t y = 0; y < rows; ++y) {
        memcpy(dst + ((4 * by + y) * (size_t)width + 4 * bx) * texel_bytes, texels + 4 * y * texel_bytes,
               cols * texel_bytes);
      }
    }
  }
  return 0;
}

// Bytes of block data an HxW image of `format` needs (0 for bad arguments), so callers can size buffers.
size_t ntc_bc_encoded_size(int format, int height, int width) {
  if (format < kBc1 || format > kBc7 || height <= 0 || width <= 0) return 0;
  return (((size_t)height + 3) / 4) * (((size_t)width + 3) / 4) * (size_t)block_bytes(format);
}

}  // extern "C"
