// ntc::WindowAttention v1 CUDA kernels (C ABI in ntc/window_attention_cuda.h).
//
// Tensor-core kernel (fp16/bf16, window 7|8, head_dim 32|64): one warp owns one (window, head) pair and a CTA holds
// several pairs. The warp stages K and V of its pair in shared memory (cp.async), then for each 16-query tile:
//   S = Q K^T          mma.sync m16n8k16, Q fragments straight from global, K fragments by ldmatrix
//   S = scale*S + bias_table[rel_index] + mask[b % nW]      (keys past T = -inf; T = 49 is padded to 64)
//   P = softmax(S)     row max / sum in registers across the 4 lanes that share a row
//   O = P V            the S accumulators are re-packed as A fragments, V fragments by ldmatrix.trans
// General kernel (any dtype, window, head_dim): one warp per query row, scores in shared memory, fp32 math.
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <atomic>
#include <climits>
#include <cstdint>
#include <cstring>
#include <type_traits>

#include "ntc/window_attention_cuda.h"

namespace ntc::window_attention_detail {

__device__ __forceinline__ float to_float(float x) { return x; }
__device__ __forceinline__ float to_float(__half x) { return __half2float(x); }
__device__ __forceinline__ float to_float(__nv_bfloat16 x) { return __bfloat162float(x); }

template <typename T>
__device__ __forceinline__ T from_float(float x);
template <>
__device__ __forceinline__ float from_float<float>(float x) { return x; }
template <>
__device__ __forceinline__ __half from_float<__half>(float x) { return __float2half_rn(x); }
template <>
__device__ __forceinline__ __nv_bfloat16 from_float<__nv_bfloat16>(float x) { return __float2bfloat16_rn(x); }

// Per 16-bit type: packing two floats into one register (low half = first) and the m16n8k16 MMA with fp32 accumulators.
template <typename T>
struct Mma16;

template <>
struct Mma16<__half> {
  static __device__ __forceinline__ uint32_t pack(float lo, float hi) {
    const __half2 h = __floats2half2_rn(lo, hi);
    uint32_t u;
    memcpy(&u, &h, sizeof(u));
    return u;
  }
  static __device__ __forceinline__ void mma(float (&c)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1) {
    asm("mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};\n"
        : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
  }
};

template <>
struct Mma16<__nv_bfloat16> {
  static __device__ __forceinline__ uint32_t pack(float lo, float hi) {
    const __nv_bfloat162 h = __floats2bfloat162_rn(lo, hi);
    uint32_t u;
    memcpy(&u, &h, sizeof(u));
    return u;
  }
  static __device__ __forceinline__ void mma(float (&c)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1) {
    asm("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};\n"
        : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
  }
};

__device__ __forceinline__ uint32_t smem_addr(const void* p) {
  return static_cast<uint32_t>(__cvta_generic_to_shared(p));
}

__device__ __forceinline__ void cp_async16(void* smem, const void* gmem) {
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16;\n" ::"r"(smem_addr(smem)), "l"(gmem));
}

// The memory clobber keeps the pad-row zero stores ahead of the ldmatrix reads that follow.
__device__ __forceinline__ void cp_async_wait_all() { asm volatile("cp.async.wait_all;\n" ::: "memory"); }

// Four 8x8 b16 matrices; lanes 8m..8m+7 give the row addresses of matrix m, register m receives it.
__device__ __forceinline__ void ldmatrix_x4(uint32_t (&r)[4], const void* row) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(smem_addr(row)));
}

// Same, each matrix transposed on the way into registers.
__device__ __forceinline__ void ldmatrix_x4_trans(uint32_t (&r)[4], const void* row) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(smem_addr(row)));
}

__device__ __forceinline__ uint32_t ldg32(const void* p) { return __ldg(static_cast<const unsigned int*>(p)); }

__device__ __forceinline__ float fast_exp2(float x) {
  float y;
  asm("ex2.approx.ftz.f32 %0, %1;\n" : "=f"(y) : "f"(x));
  return y;
}

__device__ __forceinline__ float quad_max(float x) {
  x = fmaxf(x, __shfl_xor_sync(0xffffffffu, x, 1));
  return fmaxf(x, __shfl_xor_sync(0xffffffffu, x, 2));
}

__device__ __forceinline__ float quad_sum(float x) {
  x += __shfl_xor_sync(0xffffffffu, x, 1);
  return x + __shfl_xor_sync(0xffffffffu, x, 2);
}

template <typename T, int WINDOW, int HD, int WARPS>
__global__ void __launch_bounds__(WARPS * 32)
    window_attention_mma_kernel(const T* __restrict__ q, const T* __restrict__ k, const T* __restrict__ v,
                                const T* __restrict__ bias_table, const T* __restrict__ mask, long long pairs,
                                int n_windows, int heads, float scale, T* __restrict__ out) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ < 800
  // cp.async and bf16 m16n8k16 need sm_80; the host never launches this build (see mma_kernel_usable).
  __trap();
#else
  constexpr int TOK = WINDOW * WINDOW;
  constexpr int TPAD = (TOK + 15) / 16 * 16;
  constexpr int STRIDE = HD + 8;  // 16-bit elements per smem row: rows shift by 4 banks, ldmatrix is conflict-free
  constexpr int CHUNKS = HD / 8;  // 16-byte chunks per row
  constexpr int KEY_TILES = TPAD / 8;
  constexpr int DIM_STEPS = HD / 16;
  constexpr int DIM_TILES = HD / 8;
  constexpr float LOG2E = 1.4426950408889634f;
  static_assert(HD % 32 == 0, "ldmatrix.x4 pairs need head_dim to be a multiple of 32");
  static_assert(TOK <= TPAD && TPAD <= 64, "the score tile is held in registers: at most 64 keys");

  __shared__ __align__(16) uint16_t smem[WARPS][2][TPAD * STRIDE];

  const int warp = threadIdx.x >> 5;
  const int lane = threadIdx.x & 31;
  const long long pair = static_cast<long long>(blockIdx.x) * WARPS + warp;
  if (pair >= pairs) return;  // whole warp leaves together; no CTA-wide barrier below
  const long long b = pair / heads;
  const int h = static_cast<int>(pair % heads);
  const long long base = pair * TOK * HD;
  uint16_t* ks = smem[warp][0];
  uint16_t* vs = smem[warp][1];

  for (int c = lane; c < TOK * CHUNKS; c += 32) {
    const int at = (c / CHUNKS) * STRIDE + (c % CHUNKS) * 8;
    cp_async16(ks + at, k + base + static_cast<long long>(c) * 8);
    cp_async16(vs + at, v + base + static_cast<long long>(c) * 8);
  }
  // Padded key rows must be finite zeros: their P is 0, and 0 * garbage could be NaN.
  for (int c = lane; c < (TPAD - TOK) * CHUNKS; c += 32) {
    const int at = (TOK + c / CHUNKS) * STRIDE + (c % CHUNKS) * 8;
    *reinterpret_cast<uint4*>(ks + at) = make_uint4(0u, 0u, 0u, 0u);
    *reinterpret_cast<uint4*>(vs + at) = make_uint4(0u, 0u, 0u, 0u);
  }
  cp_async_wait_all();
  __syncwarp();

  const int g = lane >> 2;  // fragment row within an 8-row group
  const int t = lane & 3;   // fragment column pair
  const T* qh = q + base;
  const T* mask_w = mask ? mask + static_cast<long long>(b % n_windows) * TOK * TOK : nullptr;

#pragma unroll 1
  for (int m0 = 0; m0 < TPAD; m0 += 16) {
    const int r0 = m0 + g;
    const int r1 = r0 + 8;
    const bool ok0 = r0 < TOK;
    const bool ok1 = r1 < TOK;

    uint32_t qa[DIM_STEPS][4];
#pragma unroll
    for (int kk = 0; kk < DIM_STEPS; ++kk) {
      const int d = kk * 16 + 2 * t;
      qa[kk][0] = ok0 ? ldg32(qh + r0 * HD + d) : 0u;
      qa[kk][1] = ok1 ? ldg32(qh + r1 * HD + d) : 0u;
      qa[kk][2] = ok0 ? ldg32(qh + r0 * HD + d + 8) : 0u;
      qa[kk][3] = ok1 ? ldg32(qh + r1 * HD + d + 8) : 0u;
    }

    // s[nt]: rows r0 (elements 0,1) and r1 (2,3), keys nt*8 + 2t + {0,1}.
    float s[KEY_TILES][4];
#pragma unroll
    for (int nt = 0; nt < KEY_TILES; ++nt) {
      s[nt][0] = s[nt][1] = s[nt][2] = s[nt][3] = 0.f;
      if (nt * 8 < TOK) {
#pragma unroll
        for (int kk = 0; kk < DIM_STEPS; kk += 2) {
          uint32_t kb[4];  // {b0,b1} of dim step kk, then of kk + 1
          ldmatrix_x4(kb, ks + (nt * 8 + (lane & 7)) * STRIDE + kk * 16 + (lane >> 3) * 8);
          Mma16<T>::mma(s[nt], qa[kk], kb[0], kb[1]);
          Mma16<T>::mma(s[nt], qa[kk + 1], kb[2], kb[3]);
        }
      }
    }

    const int qb0 = ok0 ? ntc::wa_rel_query_base(r0, WINDOW) : 0;
    const int qb1 = ok1 ? ntc::wa_rel_query_base(r1, WINDOW) : 0;
    const T* mrow0 = (mask_w && ok0) ? mask_w + r0 * TOK : nullptr;
    const T* mrow1 = (mask_w && ok1) ? mask_w + r1 * TOK : nullptr;
    float max0 = -INFINITY, max1 = -INFINITY;
#pragma unroll
    for (int nt = 0; nt < KEY_TILES; ++nt) {
#pragma unroll
      for (int e = 0; e < 2; ++e) {
        const int j = nt * 8 + 2 * t + e;
        float x0 = -INFINITY, x1 = -INFINITY;
        if (j < TOK) {
          x0 = s[nt][e] * scale;
          x1 = s[nt][2 + e] * scale;
          if (bias_table) {
            const int ko = ntc::wa_rel_key_offset(j, WINDOW);
            if (ok0) x0 += to_float(bias_table[(qb0 - ko) * heads + h]);
            if (ok1) x1 += to_float(bias_table[(qb1 - ko) * heads + h]);
          }
          if (mrow0) x0 += to_float(mrow0[j]);
          if (mrow1) x1 += to_float(mrow1[j]);
        }
        s[nt][e] = x0;
        s[nt][2 + e] = x1;
        max0 = fmaxf(max0, x0);
        max1 = fmaxf(max1, x1);
      }
    }
    // Keys 0..7 are always valid, so both maxima are finite.
    max0 = quad_max(max0) * LOG2E;
    max1 = quad_max(max1) * LOG2E;
    float sum0 = 0.f, sum1 = 0.f;
#pragma unroll
    for (int nt = 0; nt < KEY_TILES; ++nt) {
#pragma unroll
      for (int e = 0; e < 2; ++e) {
        s[nt][e] = fast_exp2(fmaf(s[nt][e], LOG2E, -max0));
        s[nt][2 + e] = fast_exp2(fmaf(s[nt][2 + e], LOG2E, -max1));
        sum0 += s[nt][e];
        sum1 += s[nt][2 + e];
      }
    }
    sum0 = quad_sum(sum0);
    sum1 = quad_sum(sum1);

    // O = P V with unnormalised P in [0, 1]; rows are divided by their sums in fp32 at the end.
    float o[DIM_TILES][4];
#pragma unroll
    for (int nt = 0; nt < DIM_TILES; ++nt) o[nt][0] = o[nt][1] = o[nt][2] = o[nt][3] = 0.f;
#pragma unroll
    for (int kk = 0; kk < TPAD / 16; ++kk) {
      // A fragment of keys kk*16..kk*16+15 = score tiles 2kk (k cols 0..7) and 2kk+1 (k cols 8..15).
      const uint32_t pa[4] = {Mma16<T>::pack(s[2 * kk][0], s[2 * kk][1]), Mma16<T>::pack(s[2 * kk][2], s[2 * kk][3]),
                              Mma16<T>::pack(s[2 * kk + 1][0], s[2 * kk + 1][1]),
                              Mma16<T>::pack(s[2 * kk + 1][2], s[2 * kk + 1][3])};
#pragma unroll
      for (int nt = 0; nt < DIM_TILES; nt += 2) {
        uint32_t vb[4];  // {b0,b1} of dim tile nt, then of nt + 1
        ldmatrix_x4_trans(vb, vs + (kk * 16 + (lane & 15)) * STRIDE + nt * 8 + (lane >> 4) * 8);
        Mma16<T>::mma(o[nt], pa, vb[0], vb[1]);
        Mma16<T>::mma(o[nt + 1], pa, vb[2], vb[3]);
      }
    }

    const float inv0 = 1.f / sum0;
    const float inv1 = 1.f / sum1;
    if (ok0) {
      T* dst = out + ntc::wa_out_offset(b, r0, h, 2 * t, TOK, heads, HD);
#pragma unroll
      for (int nt = 0; nt < DIM_TILES; ++nt)
        *reinterpret_cast<uint32_t*>(dst + nt * 8) = Mma16<T>::pack(o[nt][0] * inv0, o[nt][1] * inv0);
    }
    if (ok1) {
      T* dst = out + ntc::wa_out_offset(b, r1, h, 2 * t, TOK, heads, HD);
#pragma unroll
      for (int nt = 0; nt < DIM_TILES; ++nt)
        *reinterpret_cast<uint32_t*>(dst + nt * 8) = Mma16<T>::pack(o[nt][2] * inv1, o[nt][3] * inv1);
    }
  }
#endif
}

// One warp per (pair, query row): any dtype, window and head_dim. Shared memory per warp: q row + T scores (fp32).
template <typename T>
__global__ void window_attention_general_kernel(const T* __restrict__ q, const T* __restrict__ k,
                                                const T* __restrict__ v, const T* __restrict__ bias_table,
                                                const T* __restrict__ mask, long long rows, int n_windows, int heads,
                                                int window, int head_dim, float scale, T* __restrict__ out) {
  extern __shared__ float general_smem[];
  const int warps = blockDim.x >> 5;
  const int warp = threadIdx.x >> 5;
  const int lane = threadIdx.x & 31;
  const int tok = window * window;
  float* qs = general_smem + warp * (head_dim + tok);
  float* ps = qs + head_dim;

  for (long long item = static_cast<long long>(blockIdx.x) * warps + warp; item < rows;
       item += static_cast<long long>(gridDim.x) * warps) {
    const int i = static_cast<int>(item % tok);
    const long long pair = item / tok;
    const int h = static_cast<int>(pair % heads);
    const long long b = pair / heads;
    const long long pair_base = pair * tok * head_dim;
    const T* qrow = q + pair_base + static_cast<long long>(i) * head_dim;
    for (int d = lane; d < head_dim; d += 32) qs[d] = to_float(qrow[d]);
    __syncwarp();

    const int qb = ntc::wa_rel_query_base(i, window);
    const T* mrow = mask ? mask + ntc::wa_mask_offset(b, n_windows, i, 0, tok) : nullptr;
    float row_max = -INFINITY;
    for (int j = lane; j < tok; j += 32) {
      const T* krow = k + pair_base + static_cast<long long>(j) * head_dim;
      float dot = 0.f;
      for (int d = 0; d < head_dim; ++d) dot = fmaf(qs[d], to_float(krow[d]), dot);
      float s = dot * scale;
      if (bias_table)
        s += to_float(bias_table[ntc::wa_bias_offset(qb - ntc::wa_rel_key_offset(j, window), h, heads)]);
      if (mrow) s += to_float(mrow[j]);
      ps[j] = s;
      row_max = fmaxf(row_max, s);
    }
    for (int off = 16; off > 0; off >>= 1) row_max = fmaxf(row_max, __shfl_xor_sync(0xffffffffu, row_max, off));
    float sum = 0.f;
    for (int j = lane; j < tok; j += 32) {
      const float p = expf(ps[j] - row_max);
      ps[j] = p;
      sum += p;
    }
    for (int off = 16; off > 0; off >>= 1) sum += __shfl_xor_sync(0xffffffffu, sum, off);
    __syncwarp();

    const float inv = 1.f / sum;
    T* orow = out + ntc::wa_out_offset(b, i, h, 0, tok, heads, head_dim);
    for (int d = lane; d < head_dim; d += 32) {
      float acc = 0.f;
      for (int j = 0; j < tok; ++j) acc = fmaf(ps[j], to_float(v[pair_base + static_cast<long long>(j) * head_dim + d]), acc);
      orow[d] = from_float<T>(acc * inv);
    }
    __syncwarp();  // qs / ps are rewritten by the next item
  }
}

// True when the build of `kernel` loaded for the current device came from sm_80+ code (a library built only for
// older archs runs JIT-compiled PTX whose tensor-core body is compiled out). Cached per device.
template <typename Kernel>
bool mma_kernel_usable(Kernel kernel) {
  static std::atomic<int> cached[64];  // 0 unknown, 1 usable, 2 not usable
  int dev = 0;
  if (cudaGetDevice(&dev) != cudaSuccess || dev < 0 || dev >= 64) return false;
  int state = cached[dev].load(std::memory_order_relaxed);
  if (state == 0) {
    cudaFuncAttributes attr{};
    state = (cudaFuncGetAttributes(&attr, kernel) == cudaSuccess && attr.ptxVersion >= 80) ? 1 : 2;
    cached[dev].store(state, std::memory_order_relaxed);
  }
  return state == 1;
}

template <typename T, int WINDOW, int HD>
int launch_mma(const void* q, const void* k, const void* v, const void* bias_table, const void* mask, long long pairs,
               int n_windows, int heads, float scale, void* out, cudaStream_t stream) {
  constexpr int WARPS = HD <= 32 ? 4 : 2;  // keeps the static K/V tiles under 48 KiB per CTA
  const long long blocks = (pairs + WARPS - 1) / WARPS;
  if (blocks > INT_MAX) return NTC_WA_UNSUPPORTED;
  if (!mma_kernel_usable(window_attention_mma_kernel<T, WINDOW, HD, WARPS>)) return NTC_WA_UNSUPPORTED;
  window_attention_mma_kernel<T, WINDOW, HD, WARPS><<<static_cast<unsigned>(blocks), WARPS * 32, 0, stream>>>(
      static_cast<const T*>(q), static_cast<const T*>(k), static_cast<const T*>(v),
      static_cast<const T*>(bias_table), static_cast<const T*>(mask), pairs, n_windows, heads, scale,
      static_cast<T*>(out));
  return NTC_WA_OK;
}

// Calls fn(window, head_dim) as compile-time constants for the specialised shapes; false for the others.
template <typename Fn>
bool with_mma_shape(int window, int head_dim, Fn&& fn) {
  if (window == 7 && head_dim == 32) return fn(std::integral_constant<int, 7>{}, std::integral_constant<int, 32>{});
  if (window == 7 && head_dim == 64) return fn(std::integral_constant<int, 7>{}, std::integral_constant<int, 64>{});
  if (window == 8 && head_dim == 32) return fn(std::integral_constant<int, 8>{}, std::integral_constant<int, 32>{});
  if (window == 8 && head_dim == 64) return fn(std::integral_constant<int, 8>{}, std::integral_constant<int, 64>{});
  return false;
}

template <typename T>
bool mma_path_available(int window, int head_dim) {
  return with_mma_shape(window, head_dim, [](auto w, auto hd) {
    constexpr int WARPS = decltype(hd)::value <= 32 ? 4 : 2;
    return mma_kernel_usable(window_attention_mma_kernel<T, decltype(w)::value, decltype(hd)::value, WARPS>);
  });
}

template <typename T>
int dispatch_mma(const void* q, const void* k, const void* v, const void* bias_table, const void* mask,
                 long long pairs, int n_windows, int heads, int window, int head_dim, float scale, void* out,
                 cudaStream_t stream) {
  int rc = NTC_WA_UNSUPPORTED;
  with_mma_shape(window, head_dim, [&](auto w, auto hd) {
    rc = launch_mma<T, decltype(w)::value, decltype(hd)::value>(q, k, v, bias_table, mask, pairs, n_windows, heads,
                                                                scale, out, stream);
    return true;
  });
  return rc;
}

template <typename T>
int launch_general(const void* q, const void* k, const void* v, const void* bias_table, const void* mask,
                   long long pairs, int n_windows, int heads, int window, int head_dim, float scale, void* out,
                   cudaStream_t stream) {
  const long long tok = static_cast<long long>(window) * window;
  const long long per_warp = (head_dim + tok) * static_cast<long long>(sizeof(float));
  int warps = 4;
  while (warps > 1 && warps * per_warp > 48 * 1024) warps /= 2;
  if (warps * per_warp > 48 * 1024) return NTC_WA_UNSUPPORTED;  // window too large for the default smem budget
  const long long rows = pairs * tok;
  long long blocks = (rows + warps - 1) / warps;
  if (blocks > (1ll << 20)) blocks = 1ll << 20;  // grid-stride loop covers the rest
  window_attention_general_kernel<T><<<static_cast<unsigned>(blocks), warps * 32, warps * per_warp, stream>>>(
      static_cast<const T*>(q), static_cast<const T*>(k), static_cast<const T*>(v),
      static_cast<const T*>(bias_table), static_cast<const T*>(mask), rows, n_windows, heads, window, head_dim,
      scale, static_cast<T*>(out));
  return NTC_WA_OK;
}

}  // namespace ntc::window_attention_detail

using namespace ntc::window_attention_detail;

extern "C" int ntc_window_attention_cuda_uses_mma(const void* q, const void* k, const void* v, const void* out,
                                                  int window, int head_dim, int dtype) {
  const uintptr_t in_bits =
      reinterpret_cast<uintptr_t>(q) | reinterpret_cast<uintptr_t>(k) | reinterpret_cast<uintptr_t>(v);
  if (in_bits % 16 != 0 || reinterpret_cast<uintptr_t>(out) % 4 != 0) return 0;
  if (dtype == NTC_WA_DTYPE_FLOAT16) return mma_path_available<__half>(window, head_dim) ? 1 : 0;
  if (dtype == NTC_WA_DTYPE_BFLOAT16) return mma_path_available<__nv_bfloat16>(window, head_dim) ? 1 : 0;
  return 0;
}

extern "C" int ntc_window_attention_cuda(const void* q, const void* k, const void* v, const void* bias_table,
                                         const void* mask, int bw, int n_windows, int heads, int window,
                                         int head_dim, float scale, int dtype, void* out, cudaStream_t stream) {
  int rc = ntc::wa_check_args(q, k, v, mask, out, bw, n_windows, heads, window, head_dim);
  if (rc != NTC_WA_OK) return rc;
  if (dtype != NTC_WA_DTYPE_FLOAT32 && dtype != NTC_WA_DTYPE_FLOAT16 && dtype != NTC_WA_DTYPE_BFLOAT16)
    return NTC_WA_BAD_ARGUMENT;
  if (bw == 0) return NTC_WA_OK;
  const long long pairs = static_cast<long long>(bw) * heads;
  rc = NTC_WA_UNSUPPORTED;
  if (ntc_window_attention_cuda_uses_mma(q, k, v, out, window, head_dim, dtype))
    rc = dtype == NTC_WA_DTYPE_FLOAT16
             ? dispatch_mma<__half>(q, k, v, bias_table, mask, pairs, n_windows, heads, window, head_dim, scale, out,
                                    stream)
             : dispatch_mma<__nv_bfloat16>(q, k, v, bias_table, mask, pairs, n_windows, heads, window, head_dim,
                                           scale, out, stream);
  if (rc == NTC_WA_UNSUPPORTED) {  // any shape, dtype, alignment or arch the tensor-core kernel does not take
    if (dtype == NTC_WA_DTYPE_FLOAT16)
      rc = launch_general<__half>(q, k, v, bias_table, mask, pairs, n_windows, heads, window, head_dim, scale, out,
                                  stream);
    else if (dtype == NTC_WA_DTYPE_BFLOAT16)
      rc = launch_general<__nv_bfloat16>(q, k, v, bias_table, mask, pairs, n_windows, heads, window, head_dim,
                                         scale, out, stream);
    else
      rc = launch_general<float>(q, k, v, bias_table, mask, pairs, n_windows, heads, window, head_dim, scale, out,
                                 stream);
  }
  if (rc != NTC_WA_OK) return rc;
  return static_cast<int>(cudaGetLastError());
}
