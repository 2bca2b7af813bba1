// Shared pieces of the BC-block decoders: host/device qualifier, 128-bit bit reader, BPTC tables.
// Every decoder is a header-only __host__ __device__ function so g++ (host reference) and nvcc (kernel) compile the
// same code.
#pragma once
#include <stdint.h>

#if defined(__CUDACC__)
#define NTC_HD __host__ __device__ __forceinline__
#else
#define NTC_HD inline
#endif

namespace ntc {
namespace bc {

// A 128-bit block as two little-endian 64-bit halves (bit 0 = LSB of byte 0).
struct Bits128 {
  uint64_t lo;
  uint64_t hi;
};

NTC_HD Bits128 bits128_from_words(const uint32_t* w) {
  Bits128 b;
  b.lo = (uint64_t)w[0] | ((uint64_t)w[1] << 32);
  b.hi = (uint64_t)w[2] | ((uint64_t)w[3] << 32);
  return b;
}

// n (0..32) bits starting at bit `off` (off + n <= 128); selects instead of array indexing keep it in registers.
NTC_HD uint32_t bits_at(const Bits128& b, int off, int n) {
  uint64_t v;
  if (off >= 64) {
    v = b.hi >> (off - 64);
  } else if (off == 0) {
    v = b.lo;
  } else {
    v = (b.lo >> off) | (b.hi << (64 - off));
  }
  return (uint32_t)(v & ((1ull << n) - 1ull));
}

// Sequential LSB-first reader, the order in which BPTC fields are laid out.
struct BitReader {
  Bits128 bits;
  int pos;
  NTC_HD uint32_t read(int n) {
    uint32_t v = bits_at(bits, pos, n);
    pos += n;
    return v;
  }
};

// BPTC interpolation weights (6-bit factors) for 2-, 3- and 4-bit indices.
NTC_HD int bptc_weight(int index_bits, int index) {
  static const uint8_t kWeights2[4] = {0, 21, 43, 64};
  static const uint8_t kWeights3[8] = {0, 9, 18, 27, 37, 46, 55, 64};
  static const uint8_t kWeights4[16] = {0, 4, 9, 13, 17, 21, 26, 30, 34, 38, 43, 47, 51, 55, 60, 64};
  if (index_bits == 2) return kWeights2[index & 3];
  if (index_bits == 3) return kWeights3[index & 7];
  return kWeights4[index & 15];
}

// Two-subset partitions (BPTC Table.P2), one bit per texel, texel i at bit i.
NTC_HD uint32_t bptc_partition2(int partition) {
  static const uint16_t kP2[64] = {
      0xccccu, 0x8888u, 0xeeeeu, 0xecc8u, 0xc880u, 0xfeecu, 0xfec8u, 0xec80u,
      0xc800u, 0xffecu, 0xfe80u, 0xe800u, 0xffe8u, 0xff00u, 0xfff0u, 0xf000u,
      0xf710u, 0x008eu, 0x7100u, 0x08ceu, 0x008cu, 0x7310u, 0x3100u, 0x8cceu,
      0x088cu, 0x3110u, 0x6666u, 0x366cu, 0x17e8u, 0x0ff0u, 0x718eu, 0x399cu,
      0xaaaau, 0xf0f0u, 0x5a5au, 0x33ccu, 0x3c3cu, 0x55aau, 0x9696u, 0xa55au,
      0x73ceu, 0x13c8u, 0x324cu, 0x3bdcu, 0x6996u, 0xc33cu, 0x9966u, 0x0660u,
      0x0272u, 0x04e4u, 0x4e40u, 0x2720u, 0xc936u, 0x936cu, 0x39c6u, 0x639cu,
      0x9336u, 0x9cc6u, 0x817eu, 0xe718u, 0xccf0u, 0x0fccu, 0x7744u, 0xee22u,
  };
  return kP2[partition & 63];
}

// Three-subset partitions (BPTC Table.P3), two bits per texel, texel i at bits 2i..2i+1.
NTC_HD uint32_t bptc_partition3(int partition) {
  static const uint32_t kP3[64] = {
      0xaa685050u, 0x6a5a5040u, 0x5a5a4200u, 0x5450a0a8u, 0xa5a50000u, 0xa0a05050u, 0x5555a0a0u, 0x5a5a5050u,
      0xaa550000u, 0xaa555500u, 0xaaaa5500u, 0x90909090u, 0x94949494u, 0xa4a4a4a4u, 0xa9a59450u, 0x2a0a4250u,
      0xa5945040u, 0x0a425054u, 0xa5a5a500u, 0x55a0a0a0u, 0xa8a85454u, 0x6a6a4040u, 0xa4a45000u, 0x1a1a0500u,
      0x0050a4a4u, 0xaaa59090u, 0x14696914u, 0x69691400u, 0xa08585a0u, 0xaa821414u, 0x50a4a450u, 0x6a5a0200u,
      0xa9a58000u, 0x5090a0a8u, 0xa8a09050u, 0x24242424u, 0x00aa5500u, 0x24924924u, 0x24499224u, 0x50a50a50u,
      0x500aa550u, 0xaaaa4444u, 0x66660000u, 0xa5a0a5a0u, 0x50a050a0u, 0x69286928u, 0x44aaaa44u, 0x66666600u,
      0xaa444444u, 0x54a854a8u, 0x95809580u, 0x96969600u, 0xa85454a8u, 0x80959580u, 0xaa141414u, 0x96960000u,
      0xaaaa1414u, 0xa05050a0u, 0xa0a5a5a0u, 0x96000000u, 0x40804080u, 0xa9a8a9a8u, 0xaaaaaa44u, 0x2a4a5254u,
  };
  return kP3[partition & 63];
}

// Anchor texel of the second subset in two-subset partitions (Table.A2).
NTC_HD int bptc_anchor2_of_2(int partition) {
  static const uint8_t kA2[64] = {
      15, 15, 15, 15, 15, 15, 15, 15, 15, 15, 15, 15, 15, 15, 15, 15,
      15, 2,  8,  2,  2,  8,  8,  15, 2,  8,  2,  2,  8,  8,  2,  2,
      15, 15, 6,  8,  2,  8,  15, 15, 2,  8,  2,  2,  2,  15, 15, 6,
      6,  2,  6,  8,  15, 15, 2,  2,  15, 15, 15, 15, 15, 2,  2,  15,
  };
  return kA2[partition & 63];
}

// Anchor texels of the second and third subsets in three-subset partitions (Tables A3a, A3b).
NTC_HD int bptc_anchor2_of_3(int partition) {
  static const uint8_t kA3a[64] = {
      3, 3,  15, 15, 8, 3,  15, 15, 8,  8,  6,  6,  6,  5,  3,  3,
      3, 3,  8,  15, 3, 3,  6,  10, 5,  8,  8,  6,  8,  5,  15, 15,
      8, 15, 3,  5,  6, 10, 8,  15, 15, 3,  15, 5,  15, 15, 15, 15,
      3, 15, 5,  5,  5, 8,  5,  10, 5,  10, 8,  13, 15, 12, 3,  3,
  };
  return kA3a[partition & 63];
}

NTC_HD int bptc_anchor3_of_3(int partition) {
  static const uint8_t kA3b[64] = {
      15, 8,  8,  3,  15, 15, 3,  8,  15, 15, 15, 15, 15, 15, 15, 8,
      15, 8,  15, 3,  15, 8,  15, 8,  3,  15, 6,  10, 15, 15, 10, 8,
      15, 3,  15, 10, 10, 8,  9,  10, 6,  15, 8,  15, 3,  6,  6,  8,
      15, 3,  15, 15, 15, 15, 15, 15, 15, 15, 15, 15, 3,  15, 15, 8,
  };
  return kA3b[partition & 63];
}

// BPTC interpolation between two endpoints with a 6-bit weight (rounded).
NTC_HD int bptc_interpolate(int e0, int e1, int weight) {
  return (e0 * (64 - weight) + e1 * weight + 32) >> 6;
}

}  // namespace bc
}  // namespace ntc
