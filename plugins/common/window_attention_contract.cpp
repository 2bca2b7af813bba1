// ntc::WindowAttention v1 rules: fields, output shape, input consistency, types.
#include <climits>
#include <cmath>

#include "ntc/contracts.h"

namespace ntc {
namespace contract {

namespace {

constexpr char const* kInputNames[kWindowAttentionInputs] = {"q", "k", "v", "bias_table", "mask"};

// Known dims must equal `expected` (a negative `expected` means "not known either").
Status expect_dim(char const* tensor, int axis, int64_t got, int64_t expected, char const* what) {
  if (got < 0 || expected < 0 || got == expected) return Status::Ok();
  return Status::Error(std::string("ntc::WindowAttention: ") + tensor + " dim " + std::to_string(axis) + " is " +
                       std::to_string(got) + ", expected " + std::to_string(expected) + " (" + what + ")");
}

Status expect_rank(char const* tensor, Dims const& dims, size_t rank, char const* layout) {
  if (dims.size() == rank) return Status::Ok();
  return Status::Error(std::string("ntc::WindowAttention: ") + tensor + " must be " + layout + ", got rank " +
                       std::to_string(dims.size()));
}

}  // namespace

Status make_window_attention_config(int64_t heads, int64_t window, int64_t shift, double scale,
                                    WindowAttentionConfig* out) {
  if (heads < 1 || window < 1 || heads > INT_MAX || window > 46340) {  // window^2 must fit int
    return Status::Error("ntc::WindowAttention: heads and window must be >= 1 (got " + std::to_string(heads) +
                         ", " + std::to_string(window) + ")");
  }
  if (shift < 0 || shift >= window) {
    return Status::Error("ntc::WindowAttention: need 0 <= shift < window (got shift " + std::to_string(shift) +
                         ", window " + std::to_string(window) + ")");
  }
  if (!std::isfinite(scale)) return Status::Error("ntc::WindowAttention: scale must be finite");
  out->heads = static_cast<int32_t>(heads);
  out->window = static_cast<int32_t>(window);
  out->shift = static_cast<int32_t>(shift);
  out->scale = static_cast<float>(scale);
  return Status::Ok();
}

Status parse_window_attention_fields(Field const* fields, int32_t count, WindowAttentionConfig* out) {
  int64_t ints[3] = {0, 0, 0};
  char const* names[3] = {"heads", "window", "shift"};
  for (int i = 0; i < 3; ++i) {
    Field const* field = find_field(fields, count, names[i]);
    if (field == nullptr) {
      if (i == 2) continue;  // shift is informational and optional
      return Status::Error(std::string("ntc::WindowAttention: missing field ") + names[i]);
    }
    Status status = field_int(*field, &ints[i]);
    if (!status.ok) return Status::Error("ntc::WindowAttention: " + status.message);
  }
  Field const* scale_field = find_field(fields, count, "scale");
  if (scale_field == nullptr) return Status::Error("ntc::WindowAttention: missing field scale");
  double scale = 0.0;
  Status status = field_double(*scale_field, &scale);
  if (!status.ok) return Status::Error("ntc::WindowAttention: " + status.message);
  return make_window_attention_config(ints[0], ints[1], ints[2], scale, out);
}

Status window_attention_output_dims(WindowAttentionConfig const&, Dims const& q, Dims* out) {
  Status status = expect_rank("q", q, 4, "[BW, heads, T, hd]");
  if (!status.ok) return status;
  int64_t const heads_hd = (q[1] < 0 || q[3] < 0) ? kUnknownDim : q[1] * q[3];
  *out = {q[0], q[2], heads_hd};
  return Status::Ok();
}

Status window_attention_check_inputs(WindowAttentionConfig const& config, Dims const* inputs, int32_t nb_inputs) {
  if (nb_inputs != kWindowAttentionInputs) {
    return Status::Error("ntc::WindowAttention: needs 5 inputs (q, k, v, bias_table, mask), got " +
                         std::to_string(nb_inputs));
  }
  int64_t const tokens = static_cast<int64_t>(config.window) * config.window;
  int64_t const rows = static_cast<int64_t>(2 * config.window - 1) * (2 * config.window - 1);
  Dims const& q = inputs[0];
  Status status = expect_rank("q", q, 4, "[BW, heads, T, hd]");
  for (int axis = 0; status.ok && axis < 4; ++axis) {
    if (q[axis] > INT_MAX) status = Status::Error("ntc::WindowAttention: a q dim exceeds INT_MAX");
  }
  if (status.ok) status = expect_dim("q", 1, q[1], config.heads, "heads");
  if (status.ok) status = expect_dim("q", 2, q[2], tokens, "T = window * window");
  for (int i = 1; status.ok && i < 3; ++i) {
    status = expect_rank(kInputNames[i], inputs[i], 4, "[BW, heads, T, hd] like q");
    for (int axis = 0; status.ok && axis < 4; ++axis) {
      status = expect_dim(kInputNames[i], axis, inputs[i][axis], q[axis], "same shape as q");
    }
  }
  if (status.ok) status = expect_rank("bias_table", inputs[3], 2, "[(2*window-1)^2, heads]");
  if (status.ok) status = expect_dim("bias_table", 0, inputs[3][0], rows, "(2*window-1)^2");
  if (status.ok) status = expect_dim("bias_table", 1, inputs[3][1], config.heads, "heads");
  if (status.ok) status = expect_rank("mask", inputs[4], 3, "[nW, T, T]");
  if (status.ok) status = expect_dim("mask", 1, inputs[4][1], tokens, "T");
  if (status.ok) status = expect_dim("mask", 2, inputs[4][2], tokens, "T");
  if (status.ok && inputs[4][0] == 0) status = Status::Error("ntc::WindowAttention: mask has no windows (nW = 0)");
  if (status.ok && inputs[4][0] > INT_MAX) status = Status::Error("ntc::WindowAttention: nW exceeds INT_MAX");
  return status;
}

bool window_attention_supports(int32_t pos, ElemType type, bool linear, ElemType first_type) {
  if (!linear || pos < 0 || pos > kWindowAttentionInputs) return false;
  if (type != ElemType::kFloat32 && type != ElemType::kFloat16 && type != ElemType::kBFloat16) return false;
  return pos == 0 || type == first_type;
}

int window_attention_dtype_code(ElemType type) {
  switch (type) {
    case ElemType::kFloat32: return 0;
    case ElemType::kFloat16: return 1;
    case ElemType::kBFloat16: return 2;
    default: return -1;
  }
}

size_t window_attention_workspace_size() { return 0; }

}  // namespace contract
}  // namespace ntc
