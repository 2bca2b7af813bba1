// ntc::WindowAttention v1, CUDA C ABI (libntc_kernels.so). No TensorRT dependency.
//   q, k, v     [BW, heads, T, hd]           T = window * window
//   bias_table  [(2*window-1)^2, heads]      may be null (no bias)
//   mask        [n_windows, T, T] additive   may be null (no mask); window b uses mask[b % n_windows]
//   out         [BW, T, heads * hd]          softmax(scale * q k^T + bias[rel_index] + mask) v, heads concatenated
// All tensors share one dtype: 0 = float32, 1 = float16, 2 = bfloat16; accumulation is fp32.
// fp16/bf16 with window 7 or 8 and head_dim 32 or 64 run the tensor-core kernel (needs q, k, v 16-byte aligned and
// out 4-byte aligned); every other case runs the general kernel.
// Returns NTC_WA_OK (0), NTC_WA_BAD_ARGUMENT (-1), NTC_WA_UNSUPPORTED (-2) or a cudaError_t (> 0) from the launch.
#pragma once

#include <cuda_runtime_api.h>

#include "ntc/window_attention_ref.h"

#define NTC_WA_DTYPE_FLOAT32 0
#define NTC_WA_DTYPE_FLOAT16 1
#define NTC_WA_DTYPE_BFLOAT16 2

#ifdef __cplusplus
extern "C" {
#endif

int ntc_window_attention_cuda(const void* q, const void* k, const void* v, const void* bias_table, const void* mask,
                              int bw, int n_windows, int heads, int window, int head_dim, float scale, int dtype,
                              void* out, cudaStream_t stream);

// 1 when (dtype, window, head_dim) and the pointers' alignment select the tensor-core kernel, else 0.
int ntc_window_attention_cuda_uses_mma(const void* q, const void* k, const void* v, const void* out, int window,
                                       int head_dim, int dtype);

#ifdef __cplusplus
}
#endif
