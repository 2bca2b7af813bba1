// ntc::BcDecode v1 rules: fields, output shape, types. Same table as toolchain/codec/formats.py (a test compares).
#include <climits>

#include "ntc/contracts.h"

namespace ntc {
namespace contract {

namespace {

constexpr BcFormatInfo kFormats[] = {
    {"bc1", 0, 4, 2}, {"bc4", 1, 1, 2}, {"bc5", 2, 2, 4},
    {"bc6h_uf16", 3, 3, 4}, {"bc6h_sf16", 4, 3, 4}, {"bc7", 5, 4, 4},
};

// a * b where either may be unknown.
int64_t mul_dims(int64_t a, int64_t b) { return (a < 0 || b < 0) ? kUnknownDim : a * b; }

}  // namespace

BcFormatInfo const* bc_format_info(std::string const& format) {
  for (BcFormatInfo const& info : kFormats) {
    if (format == info.name) return &info;
  }
  return nullptr;
}

Status make_bc_decode_config(std::string const& format, std::string const& layout, std::string const& dtype,
                             BcDecodeConfig* out) {
  BcFormatInfo const* info = bc_format_info(format);
  if (info == nullptr) {
    return Status::Error("ntc::BcDecode: format='" + format +
                         "'; choose from bc1, bc4, bc5, bc6h_uf16, bc6h_sf16, bc7");
  }
  if (layout != "nchw" && layout != "tokens") {
    return Status::Error("ntc::BcDecode: layout='" + layout + "'; choose from nchw, tokens");
  }
  if (dtype != "float32" && dtype != "float16") {
    return Status::Error("ntc::BcDecode: dtype='" + dtype + "'; choose from float32, float16");
  }
  out->format = format;
  out->layout = layout;
  out->dtype = dtype;
  out->info = *info;
  out->layout_code = layout == "nchw" ? BcLayout::kNchw : BcLayout::kTokens;
  out->dtype_code = dtype == "float32" ? BcDtype::kFloat32 : BcDtype::kFloat16;
  return Status::Ok();
}

Status parse_bc_decode_fields(Field const* fields, int32_t count, BcDecodeConfig* out) {
  std::string values[3];
  char const* names[3] = {"format", "layout", "dtype"};
  for (int i = 0; i < 3; ++i) {
    Field const* field = find_field(fields, count, names[i]);
    if (field == nullptr) return Status::Error(std::string("ntc::BcDecode: missing field ") + names[i]);
    Status status = field_string(*field, &values[i]);
    if (!status.ok) return Status::Error("ntc::BcDecode: " + status.message);
  }
  return make_bc_decode_config(values[0], values[1], values[2], out);
}

Status bc_decode_output_dims(BcDecodeConfig const& config, Dims const& blocks, Dims* out) {
  if (blocks.size() != 4) {
    return Status::Error("ntc::BcDecode: blocks must be [B, by, bx, W], got rank " + std::to_string(blocks.size()));
  }
  if (blocks[3] >= 0 && blocks[3] != config.info.words) {
    return Status::Error("ntc::BcDecode " + config.format + ": W must be " + std::to_string(config.info.words) +
                         ", got " + std::to_string(blocks[3]));
  }
  int64_t const b = blocks[0], by = blocks[1], bx = blocks[2], c = config.info.channels;
  if (config.layout_code == BcLayout::kNchw) {
    *out = {b, c, mul_dims(by, 4), mul_dims(bx, 4)};
  } else {
    *out = {b, mul_dims(mul_dims(by, bx), 16), c};
  }
  return Status::Ok();
}

ElemType bc_decode_output_type(BcDecodeConfig const& config) {
  return config.dtype_code == BcDtype::kFloat32 ? ElemType::kFloat32 : ElemType::kFloat16;
}

bool bc_decode_supports(BcDecodeConfig const& config, int32_t pos, ElemType type, bool linear) {
  if (!linear || pos < 0 || pos > 1) return false;
  return type == (pos == 0 ? ElemType::kInt32 : bc_decode_output_type(config));
}

Status bc_decode_check_run_dims(BcDecodeConfig const& config, Dims const& blocks) {
  Dims out;
  Status status = bc_decode_output_dims(config, blocks, &out);
  if (!status.ok) return status;
  for (int64_t d : blocks) {
    if (d < 0) return Status::Error("ntc::BcDecode: run-time blocks dims must be known");
  }
  if (blocks[3] != config.info.words) return Status::Error("ntc::BcDecode: W must be known at run time");
  // The kernel takes int dims and indexes texels with int: keep every count within INT_MAX.
  int64_t texels = 1;
  for (int i = 0; i < 3; ++i) {
    if (blocks[i] > INT_MAX) return Status::Error("ntc::BcDecode: a blocks dim exceeds INT_MAX");
    texels = texels > INT64_MAX / (blocks[i] + 1) ? INT64_MAX : texels * blocks[i];
  }
  if (texels > INT_MAX / (16 * config.info.channels)) {
    return Status::Error("ntc::BcDecode: output has more than INT_MAX elements");
  }
  return Status::Ok();
}

size_t bc_decode_workspace_size() { return 0; }

}  // namespace contract
}  // namespace ntc
