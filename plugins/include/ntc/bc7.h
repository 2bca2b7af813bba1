// BC7 block decoder: 8 modes (1-3 subsets, optional alpha, P-bits, rotation, index selection), following the BPTC
// UNORM specification (ARB_texture_compression_bptc, D3D BC7). A block with no mode bit set decodes to zero.
#pragma once
#include "ntc/bc_common.h"

namespace ntc {
namespace bc {

// Table.M: per-mode field widths, compile-time so each mode's decoder is fully unrolled.
template <int kMode>
struct Bc7ModeInfo;
#define NTC_BC7_MODE(m, ns, pb, rb, isb, cb, ab, epb, spb, ib, ib2)                                          \
  template <>                                                                                              \
  struct Bc7ModeInfo<m> {                                                                                  \
    static constexpr int subsets = ns, partition_bits = pb, rotation_bits = rb, index_select_bits = isb;   \
    static constexpr int colour_bits = cb, alpha_bits = ab, endpoint_pbits = epb, shared_pbits = spb;      \
    static constexpr int index_bits = ib, index2_bits = ib2;                                               \
  };
NTC_BC7_MODE(0, 3, 4, 0, 0, 4, 0, 1, 0, 3, 0)
NTC_BC7_MODE(1, 2, 6, 0, 0, 6, 0, 0, 1, 3, 0)
NTC_BC7_MODE(2, 3, 6, 0, 0, 5, 0, 0, 0, 2, 0)
NTC_BC7_MODE(3, 2, 6, 0, 0, 7, 0, 1, 0, 2, 0)
NTC_BC7_MODE(4, 1, 0, 2, 1, 5, 6, 0, 0, 2, 3)
NTC_BC7_MODE(5, 1, 0, 2, 0, 7, 8, 0, 0, 2, 2)
NTC_BC7_MODE(6, 1, 0, 0, 0, 7, 7, 1, 0, 4, 0)
NTC_BC7_MODE(7, 2, 6, 0, 0, 5, 5, 1, 0, 2, 0)
#undef NTC_BC7_MODE

// A `bits`-wide endpoint value (P-bit included) to 8 bits, the top bits replicated into the low ones.
NTC_HD uint32_t bc7_expand(uint32_t value, int bits) {
  value <<= (8 - bits);
  return value | (value >> bits);
}

// Offset and width of texel i's index in an index array starting at `start`; anchors store one bit fewer.
// anchor1/anchor2 are the other subsets' anchor texels, 16 when the subset does not exist.
NTC_HD void bc7_index_position(int start, int bits, int i, int anchor1, int anchor2, int* offset, int* width) {
  const int anchors_before = (i > 0 ? 1 : 0) + (i > anchor1 ? 1 : 0) + (i > anchor2 ? 1 : 0);
  const bool is_anchor = i == 0 || i == anchor1 || i == anchor2;
  *offset = start + i * bits - anchors_before;
  *width = bits - (is_anchor ? 1 : 0);
}

// rgba: 16 texels, row-major, packed R | G<<8 | B<<16 | A<<24.
template <int kMode>
NTC_HD void bc7_decode_mode(const Bits128& bits, uint32_t* rgba) {
  typedef Bc7ModeInfo<kMode> M;
  constexpr int kEndpoints = 2 * M::subsets;
  BitReader reader{bits, kMode + 1};
  const int partition = (int)reader.read(M::partition_bits);
  const int rotation = (int)reader.read(M::rotation_bits);
  const int index_select = (int)reader.read(M::index_select_bits);

  // Endpoints are stored channel by channel, each channel subset by subset, endpoint by endpoint.
  uint32_t channel[4][kEndpoints];
#if defined(__CUDACC__)
#pragma unroll
#endif
  for (int c = 0; c < 3; ++c)
    for (int e = 0; e < kEndpoints; ++e) channel[c][e] = reader.read(M::colour_bits);
#if defined(__CUDACC__)
#pragma unroll
#endif
  for (int e = 0; e < kEndpoints; ++e) channel[3][e] = M::alpha_bits ? reader.read(M::alpha_bits) : 255u;

  // P-bits become the low bit below each stored channel value, then expand to 8 bits.
  constexpr int kColourWidth = M::colour_bits + (M::endpoint_pbits || M::shared_pbits ? 1 : 0);
  constexpr int kAlphaWidth = M::alpha_bits + (M::endpoint_pbits || M::shared_pbits ? 1 : 0);
  uint32_t pbit[kEndpoints];
#if defined(__CUDACC__)
#pragma unroll
#endif
  for (int e = 0; e < kEndpoints; ++e) pbit[e] = 0;
  if (M::endpoint_pbits) {
    for (int e = 0; e < kEndpoints; ++e) pbit[e] = reader.read(1);
  } else if (M::shared_pbits) {
    for (int s = 0; s < M::subsets; ++s) pbit[2 * s] = pbit[2 * s + 1] = reader.read(1);
  }
#if defined(__CUDACC__)
#pragma unroll
#endif
  for (int e = 0; e < kEndpoints; ++e) {
    for (int c = 0; c < 3; ++c) {
      uint32_t v = (M::endpoint_pbits || M::shared_pbits) ? (channel[c][e] << 1) | pbit[e] : channel[c][e];
      channel[c][e] = bc7_expand(v, kColourWidth);
    }
    if (M::alpha_bits) {
      uint32_t v = (M::endpoint_pbits || M::shared_pbits) ? (channel[3][e] << 1) | pbit[e] : channel[3][e];
      channel[3][e] = bc7_expand(v, kAlphaWidth);
    }
  }

  const uint32_t subset_map = M::subsets == 2 ? bptc_partition2(partition)
                              : M::subsets == 3 ? bptc_partition3(partition) : 0u;
  const int anchor1 = M::subsets == 2 ? bptc_anchor2_of_2(partition) : M::subsets == 3 ? bptc_anchor2_of_3(partition) : 16;
  const int anchor2 = M::subsets == 3 ? bptc_anchor3_of_3(partition) : 16;
  const int index_start = reader.pos;
  const int index2_start = index_start + 16 * M::index_bits - M::subsets;

#if defined(__CUDACC__)
#pragma unroll
#endif
  for (int i = 0; i < 16; ++i) {
    int offset, width;
    bc7_index_position(index_start, M::index_bits, i, anchor1, anchor2, &offset, &width);
    const int index = (int)bits_at(bits, offset, width);
    int colour_weight = bptc_weight(M::index_bits, index);
    int alpha_weight = colour_weight;
    if (M::index2_bits) {
      bc7_index_position(index2_start, M::index2_bits, i, 16, 16, &offset, &width);
      const int weight2 = bptc_weight(M::index2_bits, (int)bits_at(bits, offset, width));
      // Index selection bit 1: colour uses the secondary indices, alpha the primary ones.
      colour_weight = index_select ? weight2 : colour_weight;
      alpha_weight = index_select ? alpha_weight : weight2;
    }
    const int subset = M::subsets == 1 ? 0 : M::subsets == 2 ? (int)((subset_map >> i) & 1u) : (int)((subset_map >> (2 * i)) & 3u);
    uint32_t out[4];
    for (int c = 0; c < 4; ++c) {
      // Select the subset's endpoints without a dynamic array index (keeps them in registers on the GPU).
      uint32_t e0 = channel[c][0], e1 = channel[c][1];
      if (M::subsets > 1 && subset == 1) { e0 = channel[c][2 % kEndpoints]; e1 = channel[c][3 % kEndpoints]; }
      if (M::subsets > 2 && subset == 2) { e0 = channel[c][4 % kEndpoints]; e1 = channel[c][5 % kEndpoints]; }
      out[c] = (uint32_t)bptc_interpolate((int)e0, (int)e1, c == 3 ? alpha_weight : colour_weight);
    }
    // Rotation swaps alpha with red, green or blue after interpolation.
    if (rotation == 1) { uint32_t t = out[0]; out[0] = out[3]; out[3] = t; }
    if (rotation == 2) { uint32_t t = out[1]; out[1] = out[3]; out[3] = t; }
    if (rotation == 3) { uint32_t t = out[2]; out[2] = out[3]; out[3] = t; }
    rgba[i] = out[0] | (out[1] << 8) | (out[2] << 16) | (out[3] << 24);
  }
}

// words: the block's four little-endian 32-bit words. The mode is the number of zero bits below the first set bit.
NTC_HD void bc7_decode_block(const uint32_t* words, uint32_t* rgba) {
  const Bits128 bits = bits128_from_words(words);
  const uint32_t mode_byte = (uint32_t)(bits.lo & 0xFFu);
  if (mode_byte & 1u) return bc7_decode_mode<0>(bits, rgba);
  if (mode_byte & 2u) return bc7_decode_mode<1>(bits, rgba);
  if (mode_byte & 4u) return bc7_decode_mode<2>(bits, rgba);
  if (mode_byte & 8u) return bc7_decode_mode<3>(bits, rgba);
  if (mode_byte & 16u) return bc7_decode_mode<4>(bits, rgba);
  if (mode_byte & 32u) return bc7_decode_mode<5>(bits, rgba);
  if (mode_byte & 64u) return bc7_decode_mode<6>(bits, rgba);
  if (mode_byte & 128u) return bc7_decode_mode<7>(bits, rgba);
  for (int i = 0; i < 16; ++i) rgba[i] = 0u;  // reserved: no mode bit set
}

}  // namespace bc
}  // namespace ntc
