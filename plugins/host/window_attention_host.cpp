// ntc::WindowAttention v1, fp32 host reference: softmax(scale * q k^T + bias[rel_index] + mask) v per window and head.
// Accumulates in double so it can serve as the CPU oracle for the CUDA kernel and the ONNX Runtime path.
#include <cmath>
#include <vector>

#include "ntc/window_attention_ref.h"

extern "C" int ntc_window_attention_host(const float* q, const float* k, const float* v, const float* bias_table,
                                         const float* mask, int bw, int n_windows, int heads, int window,
                                         int head_dim, float scale, float* out) {
  const int rc = ntc::wa_check_args(q, k, v, mask, out, bw, n_windows, heads, window, head_dim);
  if (rc != NTC_WA_OK) return rc;
  const int tokens = ntc::wa_tokens(window);
  const long long head_stride = static_cast<long long>(tokens) * head_dim;
  std::vector<double> scores(tokens);
  for (long long b = 0; b < bw; ++b) {
    for (int h = 0; h < heads; ++h) {
      const long long pair = (b * heads + h) * head_stride;
      const float* qh = q + pair;
      const float* kh = k + pair;
      const float* vh = v + pair;
      for (int i = 0; i < tokens; ++i) {
        double row_max = -INFINITY;
        for (int j = 0; j < tokens; ++j) {
          double dot = 0.0;
          for (int d = 0; d < head_dim; ++d) dot += static_cast<double>(qh[i * head_dim + d]) * kh[j * head_dim + d];
          double s = dot * scale;
          if (bias_table) s += bias_table[ntc::wa_bias_offset(ntc::wa_rel_index(i, j, window), h, heads)];
          if (mask) s += mask[ntc::wa_mask_offset(b, n_windows, i, j, tokens)];
          scores[j] = s;
          row_max = s > row_max ? s : row_max;
        }
        double sum = 0.0;
        for (int j = 0; j < tokens; ++j) {
          scores[j] = std::exp(scores[j] - row_max);
          sum += scores[j];
        }
        for (int d = 0; d < head_dim; ++d) {
          double acc = 0.0;
          for (int j = 0; j < tokens; ++j) acc += scores[j] * vh[j * head_dim + d];
          out[ntc::wa_out_offset(b, i, h, d, tokens, heads, head_dim)] = static_cast<float>(acc / sum);
        }
      }
    }
  }
  return NTC_WA_OK;
}
