// BC6H (UF16 / SF16) block decoder: 14 modes of 1 or 2 subsets with (optionally delta-coded) endpoints, following
// the BPTC float specification (ARB_texture_compression_bptc, D3D BC6H). Reserved modes decode to zero.
#pragma once
#include "ntc/bc_common.h"

namespace ntc {
namespace bc {

// Endpoint fields of a BC6H block: (r,g,b) for endpoints 0..3 (subset 0 = e0,e1; subset 1 = e2,e3).
enum Bc6hField { R0, G0, B0, R1, G1, B1, R2, G2, B2, R3, G3, B3 };

// One run of the mode's bit layout, v[first:last] in the specification's notation: the next block bits go to
// bits last..first of field v (reversed when first < last).
#define NTC_BC6H_RUN(field, first, last) (uint16_t)(((field) << 8) | ((first) << 4) | (last))

struct Bc6hMode {
  uint8_t transformed;    // endpoints 1..3 are deltas from endpoint 0
  uint8_t two_subsets;    // 5 partition bits at 77..81, 3-bit indices
  uint8_t endpoint_bits;  // EPB
  uint8_t delta_bits[3];  // r, g, b widths of endpoints 1..3
  uint8_t run_count;
};

// Mode slot for the mode number in the low 2 or 5 bits; -1 for the reserved numbers 19, 23, 27, 31.
NTC_HD int bc6h_mode_slot(uint32_t low5) {
  if ((low5 & 3u) < 2u) return (int)(low5 & 3u);  // modes 0 and 1 use a 2-bit mode field
  switch (low5) {
    case 2: return 2;
    case 6: return 3;
    case 10: return 4;
    case 14: return 5;
    case 18: return 6;
    case 22: return 7;
    case 26: return 8;
    case 30: return 9;
    case 3: return 10;
    case 7: return 11;
    case 11: return 12;
    case 15: return 13;
    default: return -1;
  }
}

NTC_HD Bc6hMode bc6h_mode(int slot) {
  // Table.MF: mode numbers 0, 1, 2, 6, 10, 14, 18, 22, 26, 30, 3, 7, 11, 15.
  static const Bc6hMode kModes[14] = {
      {1, 1, 10, {5, 5, 5}, 19},   {1, 1, 7, {6, 6, 6}, 23},    {1, 1, 11, {5, 4, 4}, 18},
      {1, 1, 11, {4, 5, 4}, 20},   {1, 1, 11, {4, 4, 5}, 20},   {1, 1, 9, {5, 5, 5}, 19},
      {1, 1, 8, {6, 5, 5}, 19},    {1, 1, 8, {5, 6, 5}, 21},    {1, 1, 8, {5, 5, 6}, 21},
      {0, 1, 6, {6, 6, 6}, 23},    {0, 0, 10, {10, 10, 10}, 6}, {1, 0, 11, {9, 9, 9}, 9},
      {1, 0, 12, {8, 8, 8}, 9},    {1, 0, 16, {4, 4, 4}, 9},
  };
  return kModes[slot];
}

// The bit layout after the mode field (Table.F), one row per mode slot.
NTC_HD uint16_t bc6h_run(int slot, int i) {
#define R NTC_BC6H_RUN
  static const uint16_t kRuns[14][23] = {
      // mode 0
      {R(G2, 4, 4), R(B2, 4, 4), R(B3, 4, 4), R(R0, 9, 0), R(G0, 9, 0), R(B0, 9, 0), R(R1, 4, 0), R(G3, 4, 4),
       R(G2, 3, 0), R(G1, 4, 0), R(B3, 0, 0), R(G3, 3, 0), R(B1, 4, 0), R(B3, 1, 1), R(B2, 3, 0), R(R2, 4, 0),
       R(B3, 2, 2), R(R3, 4, 0), R(B3, 3, 3)},
      // mode 1
      {R(G2, 5, 5), R(G3, 4, 4), R(G3, 5, 5), R(R0, 6, 0), R(B3, 0, 0), R(B3, 1, 1), R(B2, 4, 4), R(G0, 6, 0),
       R(B2, 5, 5), R(B3, 2, 2), R(G2, 4, 4), R(B0, 6, 0), R(B3, 3, 3), R(B3, 5, 5), R(B3, 4, 4), R(R1, 5, 0),
       R(G2, 3, 0), R(G1, 5, 0), R(G3, 3, 0), R(B1, 5, 0), R(B2, 3, 0), R(R2, 5, 0), R(R3, 5, 0)},
      // mode 2
      {R(R0, 9, 0), R(G0, 9, 0), R(B0, 9, 0), R(R1, 4, 0), R(R0, 10, 10), R(G2, 3, 0), R(G1, 3, 0), R(G0, 10, 10),
       R(B3, 0, 0), R(G3, 3, 0), R(B1, 3, 0), R(B0, 10, 10), R(B3, 1, 1), R(B2, 3, 0), R(R2, 4, 0), R(B3, 2, 2),
       R(R3, 4, 0), R(B3, 3, 3)},
      // mode 6
      {R(R0, 9, 0), R(G0, 9, 0), R(B0, 9, 0), R(R1, 3, 0), R(R0, 10, 10), R(G3, 4, 4), R(G2, 3, 0), R(G1, 4, 0),
       R(G0, 10, 10), R(G3, 3, 0), R(B1, 3, 0), R(B0, 10, 10), R(B3, 1, 1), R(B2, 3, 0), R(R2, 3, 0), R(B3, 0, 0),
       R(B3, 2, 2), R(R3, 3, 0), R(G2, 4, 4), R(B3, 3, 3)},
      // mode 10
      {R(R0, 9, 0), R(G0, 9, 0), R(B0, 9, 0), R(R1, 3, 0), R(R0, 10, 10), R(B2, 4, 4), R(G2, 3, 0), R(G1, 3, 0),
       R(G0, 10, 10), R(B3, 0, 0), R(G3, 3, 0), R(B1, 4, 0), R(B0, 10, 10), R(B2, 3, 0), R(R2, 3, 0), R(B3, 1, 1),
       R(B3, 2, 2), R(R3, 3, 0), R(B3, 4, 4), R(B3, 3, 3)},
      // mode 14
      {R(R0, 8, 0), R(B2, 4, 4), R(G0, 8, 0), R(G2, 4, 4), R(B0, 8, 0), R(B3, 4, 4), R(R1, 4, 0), R(G3, 4, 4),
       R(G2, 3, 0), R(G1, 4, 0), R(B3, 0, 0), R(G3, 3, 0), R(B1, 4, 0), R(B3, 1, 1), R(B2, 3, 0), R(R2, 4, 0),
       R(B3, 2, 2), R(R3, 4, 0), R(B3, 3, 3)},
      // mode 18
      {R(R0, 7, 0), R(G3, 4, 4), R(B2, 4, 4), R(G0, 7, 0), R(B3, 2, 2), R(G2, 4, 4), R(B0, 7, 0), R(B3, 3, 3),
       R(B3, 4, 4), R(R1, 5, 0), R(G2, 3, 0), R(G1, 4, 0), R(B3, 0, 0), R(G3, 3, 0), R(B1, 4, 0), R(B3, 1, 1),
       R(B2, 3, 0), R(R2, 5, 0), R(R3, 5, 0)},
      // mode 22
      {R(R0, 7, 0), R(B3, 0, 0), R(B2, 4, 4), R(G0, 7, 0), R(G2, 5, 5), R(G2, 4, 4), R(B0, 7, 0), R(G3, 5, 5),
       R(B3, 4, 4), R(R1, 4, 0), R(G3, 4, 4), R(G2, 3, 0), R(G1, 5, 0), R(G3, 3, 0), R(B1, 4, 0), R(B3, 1, 1),
       R(B2, 3, 0), R(R2, 4, 0), R(B3, 2, 2), R(R3, 4, 0), R(B3, 3, 3)},
      // mode 26
      {R(R0, 7, 0), R(B3, 1, 1), R(B2, 4, 4), R(G0, 7, 0), R(B2, 5, 5), R(G2, 4, 4), R(B0, 7, 0), R(B3, 5, 5),
       R(B3, 4, 4), R(R1, 4, 0), R(G3, 4, 4), R(G2, 3, 0), R(G1, 4, 0), R(B3, 0, 0), R(G3, 3, 0), R(B1, 5, 0),
       R(B2, 3, 0), R(R2, 4, 0), R(B3, 2, 2), R(R3, 4, 0), R(B3, 3, 3)},
      // mode 30
      {R(R0, 5, 0), R(G3, 4, 4), R(B3, 0, 0), R(B3, 1, 1), R(B2, 4, 4), R(G0, 5, 0), R(G2, 5, 5), R(B2, 5, 5),
       R(B3, 2, 2), R(G2, 4, 4), R(B0, 5, 0), R(G3, 5, 5), R(B3, 3, 3), R(B3, 5, 5), R(B3, 4, 4), R(R1, 5, 0),
       R(G2, 3, 0), R(G1, 5, 0), R(G3, 3, 0), R(B1, 5, 0), R(B2, 3, 0), R(R2, 5, 0), R(R3, 5, 0)},
      // mode 3
      {R(R0, 9, 0), R(G0, 9, 0), R(B0, 9, 0), R(R1, 9, 0), R(G1, 9, 0), R(B1, 9, 0)},
      // mode 7
      {R(R0, 9, 0), R(G0, 9, 0), R(B0, 9, 0), R(R1, 8, 0), R(R0, 10, 10), R(G1, 8, 0), R(G0, 10, 10), R(B1, 8, 0),
       R(B0, 10, 10)},
      // mode 11
      {R(R0, 9, 0), R(G0, 9, 0), R(B0, 9, 0), R(R1, 7, 0), R(R0, 10, 11), R(G1, 7, 0), R(G0, 10, 11), R(B1, 7, 0),
       R(B0, 10, 11)},
      // mode 15
      {R(R0, 9, 0), R(G0, 9, 0), R(B0, 9, 0), R(R1, 3, 0), R(R0, 10, 15), R(G1, 3, 0), R(G0, 10, 15), R(B1, 3, 0),
       R(B0, 10, 15)},
  };
#undef R
  return kRuns[slot][i];
}

NTC_HD int bc6h_sign_extend(int value, int bits) {
  const int sign = 1 << (bits - 1);
  value &= (1 << bits) - 1;
  return (value ^ sign) - sign;
}

NTC_HD uint32_t bc6h_reverse_bits(uint32_t v, int n) {
  uint32_t r = 0;
  for (int i = 0; i < n; ++i) r |= ((v >> i) & 1u) << (n - 1 - i);
  return r;
}

// Endpoint value scaled to 16 bits before interpolation (spec "unquantize").
NTC_HD int bc6h_unquantize(int x, int bits, bool is_signed) {
  if (!is_signed) {
    if (bits >= 15) return x;
    if (x == 0) return 0;
    if (x == (1 << bits) - 1) return 0xFFFF;
    return ((x << 15) + 0x4000) >> (bits - 1);
  }
  if (bits >= 16) return x;
  const bool negative = x < 0;
  int magnitude = negative ? -x : x;
  int unq;
  if (magnitude == 0) {
    unq = 0;
  } else if (magnitude >= (1 << (bits - 1)) - 1) {
    unq = 0x7FFF;
  } else {
    unq = ((magnitude << 15) + 0x4000) >> (bits - 1);
  }
  return negative ? -unq : unq;
}

// Interpolated value to half-float bits (spec "final unquantization").
NTC_HD uint16_t bc6h_to_half(int x, bool is_signed) {
  if (!is_signed) return (uint16_t)((x * 31) >> 6);
  if (x < 0) return (uint16_t)((((-x) * 31) >> 5) | 0x8000);
  return (uint16_t)((x * 31) >> 5);
}

// words: the block's four little-endian 32-bit words. rgb: 16 texels x 3 half-float bit patterns, row-major.
NTC_HD void bc6h_decode_block(const uint32_t* words, bool is_signed, uint16_t* rgb) {
  const Bits128 bits = bits128_from_words(words);
  const uint32_t low5 = (uint32_t)(bits.lo & 31u);
  const int slot = bc6h_mode_slot(low5);
  if (slot < 0) {
    for (int i = 0; i < 48; ++i) rgb[i] = 0;
    return;
  }
  const Bc6hMode mode = bc6h_mode(slot);
  int endpoint[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0};
  BitReader reader{bits, slot < 2 ? 2 : 5};
  for (int r = 0; r < mode.run_count; ++r) {
    const uint32_t run = bc6h_run(slot, r);
    const int field = (int)(run >> 8), first = (int)((run >> 4) & 15u), last = (int)(run & 15u);
    if (first >= last) {
      endpoint[field] |= (int)(reader.read(first - last + 1) << last);
    } else {
      const int n = last - first + 1;
      endpoint[field] |= (int)(bc6h_reverse_bits(reader.read(n), n) << first);
    }
  }
  const int epb = mode.endpoint_bits;
  const int endpoint_count = mode.two_subsets ? 4 : 2;
  if (is_signed) {
    for (int c = 0; c < 3; ++c) endpoint[c] = bc6h_sign_extend(endpoint[c], epb);
  }
  if (is_signed || mode.transformed) {
    for (int e = 1; e < endpoint_count; ++e)
      for (int c = 0; c < 3; ++c) endpoint[3 * e + c] = bc6h_sign_extend(endpoint[3 * e + c], mode.delta_bits[c]);
  }
  if (mode.transformed) {
    for (int e = 1; e < endpoint_count; ++e)
      for (int c = 0; c < 3; ++c) {
        int v = (endpoint[c] + endpoint[3 * e + c]) & ((1 << epb) - 1);
        endpoint[3 * e + c] = is_signed ? bc6h_sign_extend(v, epb) : v;
      }
  }
  for (int i = 0; i < 3 * endpoint_count; ++i) endpoint[i] = bc6h_unquantize(endpoint[i], epb, is_signed);

  const int index_bits = mode.two_subsets ? 3 : 4;
  const int index_start = mode.two_subsets ? 82 : 65;
  const int partition = mode.two_subsets ? (int)bits_at(bits, 77, 5) : 0;
  const uint32_t subset_mask = mode.two_subsets ? bptc_partition2(partition) : 0u;
  const int anchor = mode.two_subsets ? bptc_anchor2_of_2(partition) : 0;
  for (int i = 0; i < 16; ++i) {
    // Anchor texels (texel 0 and the second subset's anchor) store one bit fewer.
    const int offset = index_start + i * index_bits - (i > 0 ? 1 : 0) - (mode.two_subsets && i > anchor ? 1 : 0);
    const int width = index_bits - ((i == 0 || (mode.two_subsets && i == anchor)) ? 1 : 0);
    const int index = (int)bits_at(bits, offset, width);
    const int weight = bptc_weight(index_bits, index);
    const int base = ((subset_mask >> i) & 1u) ? 6 : 0;
    for (int c = 0; c < 3; ++c) {
      const int v = bptc_interpolate(endpoint[base + c], endpoint[base + 3 + c], weight);
      rgb[3 * i + c] = bc6h_to_half(v, is_signed);
    }
  }
}

#undef NTC_BC6H_RUN

}  // namespace bc
}  // namespace ntc
