// Plugin field readers: TensorRT passes ONNX attributes as typed arrays (strings as CHAR, ints as INT32 or INT64,
// floats as FLOAT32), so readers accept every numeric width instead of one exact kind.
#include <cmath>
#include <cstring>

#include "ntc/contracts.h"

namespace ntc {
namespace contract {

namespace {

bool is_int_kind(FieldKind kind) {
  return kind == FieldKind::kInt8 || kind == FieldKind::kInt16 || kind == FieldKind::kInt32 ||
         kind == FieldKind::kInt64;
}

bool is_float_kind(FieldKind kind) {
  return kind == FieldKind::kFloat16 || kind == FieldKind::kFloat32 || kind == FieldKind::kFloat64;
}

// First element of a numeric field as double; memcpy because the payload need not be aligned.
double first_value(Field const& field) {
  switch (field.kind) {
    case FieldKind::kInt8: { int8_t v; std::memcpy(&v, field.data, sizeof v); return v; }
    case FieldKind::kInt16: { int16_t v; std::memcpy(&v, field.data, sizeof v); return v; }
    case FieldKind::kInt32: { int32_t v; std::memcpy(&v, field.data, sizeof v); return v; }
    case FieldKind::kInt64: { int64_t v; std::memcpy(&v, field.data, sizeof v); return static_cast<double>(v); }
    case FieldKind::kFloat16: { uint16_t v; std::memcpy(&v, field.data, sizeof v); return half_bits_to_float(v); }
    case FieldKind::kFloat32: { float v; std::memcpy(&v, field.data, sizeof v); return v; }
    case FieldKind::kFloat64: { double v; std::memcpy(&v, field.data, sizeof v); return v; }
    default: return 0.0;
  }
}

Status check_numeric(Field const& field) {
  std::string name = field.name ? field.name : "?";
  if (!is_int_kind(field.kind) && !is_float_kind(field.kind)) {
    return Status::Error("field " + name + " must be numeric");
  }
  if (field.data == nullptr || field.length < 1) {
    return Status::Error("field " + name + " is empty");
  }
  return Status::Ok();
}

}  // namespace

Field const* find_field(Field const* fields, int32_t count, char const* name) {
  for (int32_t i = 0; fields != nullptr && i < count; ++i) {
    if (fields[i].name != nullptr && std::strcmp(fields[i].name, name) == 0) return &fields[i];
  }
  return nullptr;
}

Status field_string(Field const& field, std::string* out) {
  std::string name = field.name ? field.name : "?";
  if (field.kind != FieldKind::kChar && field.kind != FieldKind::kInt8) {
    return Status::Error("field " + name + " must be a string (CHAR)");
  }
  if (field.data == nullptr || field.length < 0) return Status::Error("field " + name + " has no data");
  char const* chars = static_cast<char const*>(field.data);
  size_t n = 0;
  while (n < static_cast<size_t>(field.length) && chars[n] != '\0') ++n;
  out->assign(chars, n);
  return Status::Ok();
}

Status field_int(Field const& field, int64_t* out) {
  Status status = check_numeric(field);
  if (!status.ok) return status;
  if (field.kind == FieldKind::kInt64) {
    std::memcpy(out, field.data, sizeof *out);
    return Status::Ok();
  }
  double value = first_value(field);
  if (is_float_kind(field.kind) && (!std::isfinite(value) || value != std::floor(value))) {
    return Status::Error(std::string("field ") + field.name + " must be an integer");
  }
  *out = static_cast<int64_t>(value);
  return Status::Ok();
}

Status field_double(Field const& field, double* out) {
  Status status = check_numeric(field);
  if (!status.ok) return status;
  *out = first_value(field);
  return Status::Ok();
}

float half_bits_to_float(uint16_t bits) {
  uint32_t sign = static_cast<uint32_t>(bits & 0x8000u) << 16;
  uint32_t exponent = (bits >> 10) & 0x1fu;
  uint32_t mantissa = bits & 0x3ffu;
  uint32_t out;
  if (exponent == 0x1fu) {
    out = sign | 0x7f800000u | (mantissa << 13);  // inf / nan
  } else if (exponent != 0) {
    out = sign | ((exponent + 112u) << 23) | (mantissa << 13);  // rebias 15 -> 127
  } else if (mantissa == 0) {
    out = sign;
  } else {
    // Subnormal half: normalise the mantissa into a float exponent.
    int shift = 0;
    while ((mantissa & 0x400u) == 0) { mantissa <<= 1; ++shift; }
    out = sign | (static_cast<uint32_t>(113 - shift) << 23) | ((mantissa & 0x3ffu) << 13);
  }
  float value;
  std::memcpy(&value, &out, sizeof value);
  return value;
}

}  // namespace contract
}  // namespace ntc
