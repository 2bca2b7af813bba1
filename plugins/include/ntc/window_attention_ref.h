// ntc::WindowAttention v1: index and bias helpers shared by the host reference and the CUDA kernel.
// Swin relative index for query i=(yi,xi), key j=(yj,xj) in a window of side w:
//   (yi - yj + w - 1) * (2w - 1) + (xi - xj + w - 1)
// It splits into a query part minus a key part, so kernels compute each once per row / column.
#pragma once

#if defined(__CUDACC__)
#define NTC_WA_HD __host__ __device__ __forceinline__
#else
#define NTC_WA_HD inline
#endif

// Return codes of the C ABI (ntc_window_attention_host / ntc_window_attention_cuda); CUDA errors are > 0.
#define NTC_WA_OK 0
#define NTC_WA_BAD_ARGUMENT (-1)
#define NTC_WA_UNSUPPORTED (-2)

namespace ntc {

// Tokens per window (T = window * window).
NTC_WA_HD int wa_tokens(int window) { return window * window; }

// Rows of the relative-position bias table: (2w - 1)^2.
NTC_WA_HD int wa_table_rows(int window) { return (2 * window - 1) * (2 * window - 1); }

// Query part of the relative index: (yi + w - 1) * (2w - 1) + xi + w - 1.
NTC_WA_HD int wa_rel_query_base(int i, int window) {
  const int side = 2 * window - 1;
  return (i / window + window - 1) * side + (i % window) + window - 1;
}

// Key part of the relative index: yj * (2w - 1) + xj.
NTC_WA_HD int wa_rel_key_offset(int j, int window) {
  return (j / window) * (2 * window - 1) + (j % window);
}

// Full relative index of (query i, key j); always in [0, (2w-1)^2).
NTC_WA_HD int wa_rel_index(int i, int j, int window) {
  return wa_rel_query_base(i, window) - wa_rel_key_offset(j, window);
}

// Offset of bias_table[rel, head] in the [(2w-1)^2, heads] table.
NTC_WA_HD long long wa_bias_offset(int rel, int head, int heads) {
  return static_cast<long long>(rel) * heads + head;
}

// Offset of mask[b % nW, i, j] in the [nW, T, T] additive mask.
NTC_WA_HD long long wa_mask_offset(long long b, int n_windows, int i, int j, int tokens) {
  return (static_cast<long long>(b % n_windows) * tokens + i) * tokens + j;
}

// Offset of out[b, i, head * hd + d] in the [BW, T, heads * hd] output.
NTC_WA_HD long long wa_out_offset(long long b, int i, int head, int d, int tokens, int heads, int head_dim) {
  return (b * tokens + i) * static_cast<long long>(heads) * head_dim + static_cast<long long>(head) * head_dim + d;
}

}  // namespace ntc

namespace ntc {

// Shape and pointer checks common to every implementation (mask and bias_table may be null: no mask / no bias).
inline int wa_check_args(const void* q, const void* k, const void* v, const void* mask, const void* out, int bw,
                         int n_windows, int heads, int window, int head_dim) {
  if (!q || !k || !v || !out) return NTC_WA_BAD_ARGUMENT;
  if (bw < 0 || heads <= 0 || window <= 0 || head_dim <= 0) return NTC_WA_BAD_ARGUMENT;
  if (mask && n_windows <= 0) return NTC_WA_BAD_ARGUMENT;
  return NTC_WA_OK;
}

}  // namespace ntc
