// Plain C++17 rules of the ntc plugin contracts (ntc::BcDecode v1, ntc::WindowAttention v1): field parsing and
// validation, output shapes as integer math on known dims, type/format rules, workspace sizes.
// No TensorRT and no CUDA headers: the TensorRT adapters (plugins/trt) translate their types into these and back,
// so every rule is unit-tested without TensorRT (plugins/tests). Must agree with toolchain/ops/<op>/contract.py
// and toolchain/codec/formats.py; the per-op specs are plugins/specs/*.md.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace ntc {
namespace contract {

constexpr char const* kNamespace = "ntc";
constexpr char const* kVersion = "1";
constexpr char const* kBcDecodeName = "BcDecode";
constexpr char const* kWindowAttentionName = "WindowAttention";

// A dimension not known at build time (TensorRT's -1); shape math propagates it.
constexpr int64_t kUnknownDim = -1;

// Element types the contracts speak about (the adapter maps TensorRT's DataType onto these).
enum class ElemType { kFloat32, kFloat16, kBFloat16, kInt32, kOther };

// Kind of a plugin field's payload (the adapter maps PluginFieldType onto these).
enum class FieldKind { kChar, kInt8, kInt16, kInt32, kInt64, kFloat16, kFloat32, kFloat64, kOther };

// One plugin field as TensorRT hands it over: `length` elements of `kind` at `data` (chars for strings).
struct Field {
  char const* name;
  FieldKind kind;
  void const* data;
  int32_t length;
};

// Outcome of a check: ok, or a one-line message naming the problem.
struct Status {
  bool ok;
  std::string message;
  static Status Ok() { return {true, {}}; }
  static Status Error(std::string msg) { return {false, std::move(msg)}; }
};

// Dims of one tensor; entries may be kUnknownDim.
using Dims = std::vector<int64_t>;

// ---- field readers (shared by both plugins) -------------------------------------------------------------

// The field named `name`, or nullptr.
Field const* find_field(Field const* fields, int32_t count, char const* name);
// A CHAR field as a string (up to the first NUL or `length`).
Status field_string(Field const& field, std::string* out);
// An integer field (any int kind; a float kind only when it holds an integral value) as int64.
Status field_int(Field const& field, int64_t* out);
// A numeric field (any int or float kind) as double.
Status field_double(Field const& field, double* out);
// IEEE binary16 bits to float (used for FLOAT16 fields).
float half_bits_to_float(uint16_t bits);

// ---- ntc::BcDecode v1 -----------------------------------------------------------------------------------

enum class BcLayout { kNchw = 0, kTokens = 1 };
enum class BcDtype { kFloat32 = 0, kFloat16 = 1 };

struct BcFormatInfo {
  char const* name;
  int code;      // format code of ntc_bc_decode / ntc_bc_decode_cuda
  int channels;  // output channels C
  int words;     // int32 words per block W
};

struct BcDecodeConfig {
  std::string format;
  std::string layout;
  std::string dtype;
  BcFormatInfo info;
  BcLayout layout_code;
  BcDtype dtype_code;
};

// Format table entry, or nullptr for an unknown name.
BcFormatInfo const* bc_format_info(std::string const& format);
// Validate format/layout/dtype strings.
Status make_bc_decode_config(std::string const& format, std::string const& layout, std::string const& dtype,
                             BcDecodeConfig* out);
// Read and validate the fields format, layout, dtype (CHAR); other fields are ignored.
Status parse_bc_decode_fields(Field const* fields, int32_t count, BcDecodeConfig* out);
// blocks [B, by, bx, W] -> nchw [B, C, 4by, 4bx] or tokens [B, 16*by*bx, C]; checks rank and a known W.
Status bc_decode_output_dims(BcDecodeConfig const& config, Dims const& blocks, Dims* out);
// Output element type: float32 or float16 per `dtype`.
ElemType bc_decode_output_type(BcDecodeConfig const& config);
// Position 0 (blocks) is INT32, position 1 (output) the dtype; both linear.
bool bc_decode_supports(BcDecodeConfig const& config, int32_t pos, ElemType type, bool linear);
// Run-time check of concrete blocks dims: rank 4, W matches, every dim fits the kernel's int arguments.
Status bc_decode_check_run_dims(BcDecodeConfig const& config, Dims const& blocks);
size_t bc_decode_workspace_size();

// ---- ntc::WindowAttention v1 ----------------------------------------------------------------------------

constexpr int32_t kWindowAttentionInputs = 5;  // q, k, v, bias_table, mask

struct WindowAttentionConfig {
  int32_t heads;
  int32_t window;
  int32_t shift;
  float scale;
};

// heads >= 1, window >= 1, 0 <= shift < window, scale finite.
Status make_window_attention_config(int64_t heads, int64_t window, int64_t shift, double scale,
                                    WindowAttentionConfig* out);
// Read heads, window, scale (required) and shift (optional, default 0); other fields are ignored.
Status parse_window_attention_fields(Field const* fields, int32_t count, WindowAttentionConfig* out);
// q [BW, heads, T, hd] -> [BW, T, heads*hd]; checks the rank of q.
Status window_attention_output_dims(WindowAttentionConfig const& config, Dims const& q, Dims* out);
// Build-time consistency of all five inputs' known dims (q, k, v alike; heads, T = window^2, table and mask).
Status window_attention_check_inputs(WindowAttentionConfig const& config, Dims const* inputs, int32_t nb_inputs);
// Every tensor linear and of one float type (float32, float16 or bfloat16), the type of position 0.
bool window_attention_supports(int32_t pos, ElemType type, bool linear, ElemType first_type);
// Kernel dtype code: 0 float32, 1 float16, 2 bfloat16, or -1.
int window_attention_dtype_code(ElemType type);
size_t window_attention_workspace_size();

}  // namespace contract
}  // namespace ntc
