// CUDA BC-block decoder (ntc::BcDecode v1): one thread per 4x4 block, the same header decoders as the host library,
// 16-byte block loads and 16-/8-byte vector stores of 4 consecutive output values.
#include <cuda_fp16.h>
#include <cuda_runtime.h>
#include <stdint.h>

#include "ntc/bc1.h"
#include "ntc/bc4.h"
#include "ntc/bc5.h"
#include "ntc/bc6h.h"
#include "ntc/bc7.h"
#include "ntc/bc_decode_cuda.h"

namespace {

enum { kBc1 = 0, kBc4 = 1, kBc5 = 2, kBc6hUf16 = 3, kBc6hSf16 = 4, kBc7 = 5 };
enum { kNchw = 0, kTokens = 1, kGather = 2 };
constexpr int kThreads = 128;

__host__ __device__ constexpr int channels_of(int format) {
  return (format == kBc1 || format == kBc7) ? 4 : format == kBc4 ? 1 : format == kBc5 ? 2 : 3;
}
__host__ __device__ constexpr int words_of(int format) { return (format == kBc1 || format == kBc4) ? 2 : 4; }

// UNORM byte to the output type: float32 value/255 (IEEE division, as numpy), float16 rounded from that float.
__device__ __forceinline__ void from_unorm(uint32_t v, float* out) { *out = (float)v / 255.0f; }
__device__ __forceinline__ void from_unorm(uint32_t v, __half* out) { *out = __float2half_rn((float)v / 255.0f); }
__device__ __forceinline__ void from_half_bits(uint16_t v, float* out) { *out = __half2float(__ushort_as_half(v)); }
__device__ __forceinline__ void from_half_bits(uint16_t v, __half* out) { *out = __ushort_as_half(v); }

__device__ __forceinline__ void store4(float* p, const float* v) {
  *reinterpret_cast<float4*>(p) = make_float4(v[0], v[1], v[2], v[3]);
}
__device__ __forceinline__ void store4(__half* p, const __half* v) {
  uint2 packed;
  packed.x = (uint32_t)__half_as_ushort(v[0]) | ((uint32_t)__half_as_ushort(v[1]) << 16);
  packed.y = (uint32_t)__half_as_ushort(v[2]) | ((uint32_t)__half_as_ushort(v[3]) << 16);
  *reinterpret_cast<uint2*>(p) = packed;
}

// Decodes one block into texel-major values[16 * C].
template <int kFormat, typename T>
__device__ __forceinline__ void decode_block_values(const uint32_t* words, T* values) {
  constexpr int C = channels_of(kFormat);
  if (kFormat == kBc1 || kFormat == kBc7) {
    uint32_t rgba[16];
    if (kFormat == kBc1) ntc::bc::bc1_decode_block(words, rgba);
    else ntc::bc::bc7_decode_block(words, rgba);
#pragma unroll
    for (int i = 0; i < 16; ++i)
#pragma unroll
      for (int c = 0; c < 4; ++c) from_unorm((rgba[i] >> (8 * c)) & 0xFFu, &values[i * C + c]);
  } else if (kFormat == kBc4) {
    uint8_t v[16];
    ntc::bc::bc4_decode_block(words, v);
#pragma unroll
    for (int i = 0; i < 16; ++i) from_unorm(v[i], &values[i]);
  } else if (kFormat == kBc5) {
    uint8_t red[16], green[16];
    ntc::bc::bc5_decode_block(words, red, green);
#pragma unroll
    for (int i = 0; i < 16; ++i) {
      from_unorm(red[i], &values[2 * i]);
      from_unorm(green[i], &values[2 * i + 1]);
    }
  } else {
    uint16_t rgb[48];
    ntc::bc::bc6h_decode_block(words, kFormat == kBc6hSf16, rgb);
#pragma unroll
    for (int i = 0; i < 48; ++i) from_half_bits(rgb[i], &values[i]);
  }
}

template <int kFormat>
__device__ __forceinline__ void load_block(const int32_t* blocks, int64_t block, uint32_t* words) {
  if (words_of(kFormat) == 2) {
    const int2 w = __ldg(reinterpret_cast<const int2*>(blocks) + block);
    words[0] = (uint32_t)w.x; words[1] = (uint32_t)w.y;
  } else {
    const int4 w = __ldg(reinterpret_cast<const int4*>(blocks) + block);
    words[0] = (uint32_t)w.x; words[1] = (uint32_t)w.y; words[2] = (uint32_t)w.z; words[3] = (uint32_t)w.w;
  }
}

// Grid over blocks (kNchw/kTokens: batch*by*bx blocks; kGather: n_indices).
template <int kFormat, int kLayout, typename T>
__global__ void __launch_bounds__(kThreads) bc_decode_kernel(const int32_t* __restrict__ blocks,
                                                            const int32_t* __restrict__ block_indices,
                                                            int64_t total, int blocks_y, int blocks_x,
                                                            T* __restrict__ out) {
  constexpr int C = channels_of(kFormat);
  const int64_t k = (int64_t)blockIdx.x * kThreads + threadIdx.x;
  if (k >= total) return;
  uint32_t words[4] = {0u, 0u, 0u, 0u};
  T values[16 * C];
  int64_t source = k;
  if (kLayout == kGather) source = __ldg(block_indices + k);
  if (source >= 0) {
    load_block<kFormat>(blocks, source, words);
    decode_block_values<kFormat>(words, values);
  } else {
#pragma unroll
    for (int i = 0; i < 16 * C; ++i) values[i] = T(0.0f);
  }

  if (kLayout == kGather) {
    T* dst = out + k * 16 * C;
#pragma unroll
    for (int q = 0; q < 4 * C; ++q) store4(dst + 4 * q, values + 4 * q);
    return;
  }
  const int64_t per_image = (int64_t)blocks_y * blocks_x;
  const int64_t b = k / per_image;
  const int64_t rest = k - b * per_image;
  const int64_t by = rest / blocks_x, bx = rest - (rest / blocks_x) * blocks_x;
  const int64_t height = 4 * (int64_t)blocks_y, width = 4 * (int64_t)blocks_x;
  if (kLayout == kNchw) {
#pragma unroll
    for (int c = 0; c < C; ++c)
#pragma unroll
      for (int y = 0; y < 4; ++y) {
        T row[4] = {values[(4 * y) * C + c], values[(4 * y + 1) * C + c], values[(4 * y + 2) * C + c],
                    values[(4 * y + 3) * C + c]};
        store4(out + ((b * C + c) * height + 4 * by + y) * width + 4 * bx, row);
      }
  } else {
    // Tokens: each block row is 4 pixels x C channels, contiguous.
#pragma unroll
    for (int y = 0; y < 4; ++y) {
      T* dst = out + ((b * height + 4 * by + y) * width + 4 * bx) * C;
#pragma unroll
      for (int q = 0; q < C; ++q) store4(dst + 4 * q, values + 4 * y * C + 4 * q);
    }
  }
}

template <int kFormat, int kLayout, typename T>
int launch(const int32_t* blocks, const int32_t* indices, int64_t total, int blocks_y, int blocks_x, void* out,
           cudaStream_t stream) {
  const int64_t grid = (total + kThreads - 1) / kThreads;
  if (grid > 0x7FFFFFFF) return NTC_BC_ERR_BAD_SIZE;
  bc_decode_kernel<kFormat, kLayout, T><<<(unsigned)grid, kThreads, 0, stream>>>(
      blocks, indices, total, blocks_y, blocks_x, static_cast<T*>(out));
  return (int)cudaGetLastError();
}

template <int kLayout, typename T>
int dispatch_format(int format, const int32_t* blocks, const int32_t* indices, int64_t total, int blocks_y,
                    int blocks_x, void* out, cudaStream_t stream) {
  switch (format) {
    case kBc1: return launch<kBc1, kLayout, T>(blocks, indices, total, blocks_y, blocks_x, out, stream);
    case kBc4: return launch<kBc4, kLayout, T>(blocks, indices, total, blocks_y, blocks_x, out, stream);
    case kBc5: return launch<kBc5, kLayout, T>(blocks, indices, total, blocks_y, blocks_x, out, stream);
    case kBc6hUf16: return launch<kBc6hUf16, kLayout, T>(blocks, indices, total, blocks_y, blocks_x, out, stream);
    case kBc6hSf16: return launch<kBc6hSf16, kLayout, T>(blocks, indices, total, blocks_y, blocks_x, out, stream);
    case kBc7: return launch<kBc7, kLayout, T>(blocks, indices, total, blocks_y, blocks_x, out, stream);
    default: return NTC_BC_ERR_BAD_FORMAT;
  }
}

template <int kLayout>
int dispatch_dtype(int dtype, int format, const int32_t* blocks, const int32_t* indices, int64_t total,
                   int blocks_y, int blocks_x, void* out, cudaStream_t stream) {
  if (dtype == 0) return dispatch_format<kLayout, float>(format, blocks, indices, total, blocks_y, blocks_x, out, stream);
  return dispatch_format<kLayout, __half>(format, blocks, indices, total, blocks_y, blocks_x, out, stream);
}

int check_common(const void* blocks, int format, int dtype, const void* out) {
  if (blocks == nullptr || out == nullptr) return NTC_BC_ERR_NULL_POINTER;
  if (format < kBc1 || format > kBc7) return NTC_BC_ERR_BAD_FORMAT;
  if (dtype != 0 && dtype != 1) return NTC_BC_ERR_BAD_LAYOUT_OR_DTYPE;
  const uintptr_t block_align = words_of(format) == 2 ? 8 : 16;
  const uintptr_t out_align = dtype == 0 ? 16 : 8;
  if (reinterpret_cast<uintptr_t>(blocks) % block_align || reinterpret_cast<uintptr_t>(out) % out_align)
    return NTC_BC_ERR_MISALIGNED;
  return 0;
}

}  // namespace

extern "C" int ntc_bc_decode_cuda(const int32_t* blocks, int batch, int blocks_y, int blocks_x, int format,
                                  int layout, int dtype, void* out, cudaStream_t stream) {
  if (int rc = check_common(blocks, format, dtype, out)) return rc;
  if (layout != kNchw && layout != kTokens) return NTC_BC_ERR_BAD_LAYOUT_OR_DTYPE;
  if (batch <= 0 || blocks_y <= 0 || blocks_x <= 0) return NTC_BC_ERR_BAD_SIZE;
  const int64_t total = (int64_t)batch * blocks_y * blocks_x;
  if (layout == kNchw) return dispatch_dtype<kNchw>(dtype, format, blocks, nullptr, total, blocks_y, blocks_x, out, stream);
  return dispatch_dtype<kTokens>(dtype, format, blocks, nullptr, total, blocks_y, blocks_x, out, stream);
}

extern "C" int ntc_bc_decode_gather_cuda(const int32_t* blocks, const int32_t* block_indices, int n_indices,
                                         int format, int dtype, void* out, cudaStream_t stream) {
  if (int rc = check_common(blocks, format, dtype, out)) return rc;
  if (block_indices == nullptr) return NTC_BC_ERR_NULL_POINTER;
  if (n_indices <= 0) return NTC_BC_ERR_BAD_SIZE;
  return dispatch_dtype<kGather>(dtype, format, blocks, block_indices, n_indices, 1, 1, out, stream);
}
