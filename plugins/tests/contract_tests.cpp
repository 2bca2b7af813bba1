// Unit tests of the plain C++ plugin contracts (no TensorRT, no GPU). Exit status: number of failed checks.
#include <cmath>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "ntc/contracts.h"

using namespace ntc::contract;

namespace {

int g_failures = 0;
int g_checks = 0;

void check(bool ok, char const* what, int line) {
  ++g_checks;
  if (!ok) {
    ++g_failures;
    std::fprintf(stderr, "FAIL line %d: %s\n", line, what);
  }
}
#define CHECK(cond) check((cond), #cond, __LINE__)

bool contains(std::string const& text, char const* part) { return text.find(part) != std::string::npos; }

Field char_field(char const* name, char const* value) {
  return {name, FieldKind::kChar, value, static_cast<int32_t>(std::strlen(value) + 1)};
}

BcDecodeConfig bc(char const* format, char const* layout, char const* dtype) {
  BcDecodeConfig config{};
  Status status = make_bc_decode_config(format, layout, dtype, &config);
  check(status.ok, format, __LINE__);
  return config;
}

void test_half_bits() {
  CHECK(half_bits_to_float(0x3c00) == 1.0f);
  CHECK(half_bits_to_float(0xc000) == -2.0f);
  CHECK(half_bits_to_float(0x7bff) == 65504.0f);
  CHECK(half_bits_to_float(0x3555) == 0.333251953125f);
  CHECK(half_bits_to_float(0x0001) == std::ldexp(1.0f, -24));  // smallest subnormal
  CHECK(half_bits_to_float(0x03ff) == std::ldexp(1023.0f, -24));  // largest subnormal
  CHECK(half_bits_to_float(0x0400) == std::ldexp(1.0f, -14));  // smallest normal
  CHECK(std::isinf(half_bits_to_float(0x7c00)) && half_bits_to_float(0xfc00) < 0);
  CHECK(std::isnan(half_bits_to_float(0x7e00)));
  CHECK(std::signbit(half_bits_to_float(0x8000)) && half_bits_to_float(0x8000) == 0.0f);
}

void test_field_readers() {
  int64_t i = 0;
  double d = 0;
  std::string s;
  // Strings stop at the first NUL or at `length` when there is none.
  char const unterminated[3] = {'b', 'c', '7'};
  CHECK(field_string({"f", FieldKind::kChar, unterminated, 2}, &s).ok && s == "bc");
  CHECK(field_string(char_field("f", "tokens"), &s).ok && s == "tokens");
  CHECK(!field_string({"f", FieldKind::kInt32, "x", 1}, &s).ok);
  int32_t i32 = 7;
  int64_t i64 = -3;
  int16_t i16 = 300;
  int8_t i8 = -5;
  float f32 = 0.125f;
  double f64 = 4.0;
  uint16_t f16 = 0x4400;  // 4.0
  CHECK(field_int({"n", FieldKind::kInt32, &i32, 1}, &i).ok && i == 7);
  CHECK(field_int({"n", FieldKind::kInt64, &i64, 1}, &i).ok && i == -3);
  CHECK(field_int({"n", FieldKind::kInt16, &i16, 1}, &i).ok && i == 300);
  CHECK(field_int({"n", FieldKind::kInt8, &i8, 1}, &i).ok && i == -5);
  CHECK(field_int({"n", FieldKind::kFloat64, &f64, 1}, &i).ok && i == 4);
  CHECK(field_int({"n", FieldKind::kFloat16, &f16, 1}, &i).ok && i == 4);
  Status frac = field_int({"n", FieldKind::kFloat32, &f32, 1}, &i);
  CHECK(!frac.ok && contains(frac.message, "field n must be an integer"));
  CHECK(!field_int({"n", FieldKind::kInt32, nullptr, 1}, &i).ok);
  CHECK(!field_int({"n", FieldKind::kInt32, &i32, 0}, &i).ok);
  CHECK(!field_int({"n", FieldKind::kChar, "7", 2}, &i).ok);
  CHECK(field_double({"x", FieldKind::kFloat32, &f32, 1}, &d).ok && d == 0.125);
  CHECK(field_double({"x", FieldKind::kInt32, &i32, 1}, &d).ok && d == 7.0);
  Field fields[2] = {char_field("a", "1"), char_field("b", "2")};
  CHECK(find_field(fields, 2, "b") == &fields[1]);
  CHECK(find_field(fields, 2, "c") == nullptr);
  CHECK(find_field(nullptr, 0, "a") == nullptr);
}

void test_bc_formats() {
  // format -> (code, channels, words) of the contract table.
  struct Row { char const* name; int code, channels, words; };
  Row const rows[] = {{"bc1", 0, 4, 2}, {"bc4", 1, 1, 2}, {"bc5", 2, 2, 4},
                      {"bc6h_uf16", 3, 3, 4}, {"bc6h_sf16", 4, 3, 4}, {"bc7", 5, 4, 4}};
  for (Row const& row : rows) {
    BcFormatInfo const* info = bc_format_info(row.name);
    CHECK(info != nullptr && info->code == row.code && info->channels == row.channels && info->words == row.words);
  }
  CHECK(bc_format_info("bc3") == nullptr);
  CHECK(bc_format_info("BC7") == nullptr);  // names are case-sensitive, like the Python creators
}

void test_bc_fields() {
  BcDecodeConfig config{};
  Field good[4] = {char_field("dtype", "float16"), char_field("format", "bc5"), char_field("layout", "nchw"),
                   char_field("plugin_version", "1")};
  CHECK(parse_bc_decode_fields(good, 4, &config).ok);
  CHECK(config.info.code == 2 && config.layout_code == BcLayout::kNchw && config.dtype_code == BcDtype::kFloat16);
  CHECK(config.format == "bc5" && config.layout == "nchw" && config.dtype == "float16");

  Status missing = parse_bc_decode_fields(good, 2, &config);
  CHECK(!missing.ok && contains(missing.message, "missing field layout"));
  Field bad_format[3] = {char_field("format", "bc3"), char_field("layout", "nchw"), char_field("dtype", "float32")};
  Status status = parse_bc_decode_fields(bad_format, 3, &config);
  CHECK(!status.ok && contains(status.message, "format='bc3'") && contains(status.message, "bc6h_sf16"));
  Field bad_layout[3] = {char_field("format", "bc1"), char_field("layout", "nhwc"), char_field("dtype", "float32")};
  status = parse_bc_decode_fields(bad_layout, 3, &config);
  CHECK(!status.ok && contains(status.message, "layout='nhwc'"));
  Field bad_dtype[3] = {char_field("format", "bc1"), char_field("layout", "tokens"), char_field("dtype", "bfloat16")};
  status = parse_bc_decode_fields(bad_dtype, 3, &config);
  CHECK(!status.ok && contains(status.message, "dtype='bfloat16'"));
  int32_t number = 1;
  Field numeric_format[3] = {{"format", FieldKind::kInt32, &number, 1}, char_field("layout", "tokens"),
                             char_field("dtype", "float32")};
  CHECK(!parse_bc_decode_fields(numeric_format, 3, &config).ok);
  CHECK(!make_bc_decode_config("", "tokens", "float32", &config).ok);
}

void test_bc_shapes() {
  Dims out;
  // tokens: [B, 16*by*bx, C]; bc7 C=4.
  CHECK(bc_decode_output_dims(bc("bc7", "tokens", "float32"), {2, 3, 5, 4}, &out).ok);
  CHECK((out == Dims{2, 240, 4}));
  // nchw: [B, C, 4*by, 4*bx]; bc5 C=2.
  CHECK(bc_decode_output_dims(bc("bc5", "nchw", "float16"), {1, 2, 3, 4}, &out).ok);
  CHECK((out == Dims{1, 2, 8, 12}));
  CHECK(bc_decode_output_dims(bc("bc4", "nchw", "float32"), {3, 7, 1, 2}, &out).ok);
  CHECK((out == Dims{3, 1, 28, 4}));
  CHECK(bc_decode_output_dims(bc("bc6h_sf16", "tokens", "float16"), {1, 1, 1, 4}, &out).ok);
  CHECK((out == Dims{1, 16, 3}));
  CHECK(bc_decode_output_dims(bc("bc1", "tokens", "float32"), {4, 8, 8, 2}, &out).ok);
  CHECK((out == Dims{4, 1024, 4}));
  // Unknown dims stay unknown; known ones still compute.
  CHECK(bc_decode_output_dims(bc("bc7", "nchw", "float32"), {-1, -1, 6, -1}, &out).ok);
  CHECK((out == Dims{-1, 4, -1, 24}));
  CHECK(bc_decode_output_dims(bc("bc7", "tokens", "float32"), {-1, 2, -1, 4}, &out).ok);
  CHECK((out == Dims{-1, -1, 4}));
  // Wrong W for the format, wrong rank.
  Status status = bc_decode_output_dims(bc("bc1", "tokens", "float32"), {1, 2, 2, 4}, &out);
  CHECK(!status.ok && contains(status.message, "W must be 2"));
  status = bc_decode_output_dims(bc("bc7", "tokens", "float32"), {1, 2, 2, 2}, &out);
  CHECK(!status.ok && contains(status.message, "W must be 4"));
  status = bc_decode_output_dims(bc("bc7", "tokens", "float32"), {2, 2, 4}, &out);
  CHECK(!status.ok && contains(status.message, "rank 3"));
}

void test_bc_types_and_run_dims() {
  BcDecodeConfig f32 = bc("bc7", "tokens", "float32");
  BcDecodeConfig f16 = bc("bc4", "nchw", "float16");
  CHECK(bc_decode_output_type(f32) == ElemType::kFloat32 && bc_decode_output_type(f16) == ElemType::kFloat16);
  CHECK(bc_decode_supports(f32, 0, ElemType::kInt32, true));
  CHECK(!bc_decode_supports(f32, 0, ElemType::kInt32, false));
  CHECK(!bc_decode_supports(f32, 0, ElemType::kFloat32, true));
  CHECK(bc_decode_supports(f32, 1, ElemType::kFloat32, true));
  CHECK(!bc_decode_supports(f32, 1, ElemType::kFloat16, true));
  CHECK(bc_decode_supports(f16, 1, ElemType::kFloat16, true));
  CHECK(!bc_decode_supports(f16, 1, ElemType::kBFloat16, true));
  CHECK(!bc_decode_supports(f16, 2, ElemType::kFloat16, true));
  CHECK(bc_decode_workspace_size() == 0);
  CHECK(bc_decode_check_run_dims(f32, {2, 3, 5, 4}).ok);
  CHECK(!bc_decode_check_run_dims(f32, {2, -1, 5, 4}).ok);
  Status big = bc_decode_check_run_dims(f32, {1, 8192, 8192, 4});  // 2^30 texels * 4 channels
  CHECK(!big.ok && contains(big.message, "INT_MAX"));
  CHECK(bc_decode_check_run_dims(f16, {1, 4096, 4096, 2}).ok);  // 2^28 texels * 1 channel
}

Field int_field(char const* name, int32_t const* value) { return {name, FieldKind::kInt32, value, 1}; }

void test_window_attention_fields() {
  int32_t heads = 3, window = 7, shift = 3;
  float scale = 0.25f;
  WindowAttentionConfig config{};
  Field fields[4] = {int_field("heads", &heads), int_field("window", &window), int_field("shift", &shift),
                     {"scale", FieldKind::kFloat32, &scale, 1}};
  CHECK(parse_window_attention_fields(fields, 4, &config).ok);
  CHECK(config.heads == 3 && config.window == 7 && config.shift == 3 && config.scale == 0.25f);
  // shift is optional (default 0); INT64 ints and FLOAT64 scale are read too.
  int64_t heads64 = 2, window64 = 4;
  double scale64 = 0.5;
  Field wide[3] = {{"heads", FieldKind::kInt64, &heads64, 1}, {"window", FieldKind::kInt64, &window64, 1},
                   {"scale", FieldKind::kFloat64, &scale64, 1}};
  CHECK(parse_window_attention_fields(wide, 3, &config).ok);
  CHECK(config.heads == 2 && config.window == 4 && config.shift == 0 && config.scale == 0.5f);
  Status status = parse_window_attention_fields(fields, 3, &config);
  CHECK(!status.ok && contains(status.message, "missing field scale"));
  status = parse_window_attention_fields(fields + 1, 3, &config);
  CHECK(!status.ok && contains(status.message, "missing field heads"));
  Field string_heads[3] = {char_field("heads", "3"), int_field("window", &window),
                           {"scale", FieldKind::kFloat32, &scale, 1}};
  CHECK(!parse_window_attention_fields(string_heads, 3, &config).ok);

  status = make_window_attention_config(0, 7, 0, 1.0, &config);
  CHECK(!status.ok && contains(status.message, "heads and window must be >= 1 (got 0, 7)"));
  CHECK(!make_window_attention_config(2, 0, 0, 1.0, &config).ok);
  status = make_window_attention_config(2, 4, 4, 1.0, &config);
  CHECK(!status.ok && contains(status.message, "0 <= shift < window"));
  CHECK(!make_window_attention_config(2, 4, -1, 1.0, &config).ok);
  CHECK(!make_window_attention_config(2, 4, 0, std::nan(""), &config).ok);
  CHECK(!make_window_attention_config(2, 4, 0, HUGE_VAL, &config).ok);
  CHECK(make_window_attention_config(1, 1, 0, -2.0, &config).ok && config.scale == -2.0f);
}

WindowAttentionConfig attention(int heads, int window) {
  WindowAttentionConfig config{};
  check(make_window_attention_config(heads, window, 0, 0.5, &config).ok, "attention config", __LINE__);
  return config;
}

void test_window_attention_shapes() {
  Dims out;
  // [BW, heads, T, hd] -> [BW, T, heads*hd]
  CHECK(window_attention_output_dims(attention(2, 2), {6, 2, 4, 4}, &out).ok && (out == Dims{6, 4, 8}));
  CHECK(window_attention_output_dims(attention(6, 7), {-1, 6, 49, 64}, &out).ok && (out == Dims{-1, 49, 384}));
  CHECK(window_attention_output_dims(attention(6, 7), {8, -1, 49, 64}, &out).ok && (out == Dims{8, 49, -1}));
  Status status = window_attention_output_dims(attention(2, 2), {6, 2, 4}, &out);
  CHECK(!status.ok && contains(status.message, "rank 3"));

  WindowAttentionConfig config = attention(2, 2);
  Dims good[5] = {{6, 2, 4, 8}, {6, 2, 4, 8}, {6, 2, 4, 8}, {9, 2}, {3, 4, 4}};
  CHECK(window_attention_check_inputs(config, good, 5).ok);
  Dims dynamic[5] = {{-1, 2, 4, 8}, {-1, 2, 4, 8}, {-1, 2, 4, 8}, {9, 2}, {-1, 4, 4}};
  CHECK(window_attention_check_inputs(config, dynamic, 5).ok);
  CHECK(!window_attention_check_inputs(config, good, 4).ok);
  struct Case { int tensor, axis; int64_t value; char const* message; };
  Case const cases[] = {
      {0, 1, 3, "q dim 1 is 3, expected 2 (heads)"},
      {0, 2, 9, "q dim 2 is 9, expected 4 (T = window * window)"},
      {1, 3, 4, "k dim 3 is 4, expected 8"},
      {2, 0, 5, "v dim 0 is 5, expected 6"},
      {3, 0, 7, "bias_table dim 0 is 7, expected 9"},
      {3, 1, 1, "bias_table dim 1 is 1, expected 2 (heads)"},
      {4, 1, 3, "mask dim 1 is 3, expected 4"},
      {4, 2, 5, "mask dim 2 is 5, expected 4"},
      {4, 0, 0, "nW = 0"},
  };
  for (Case const& c : cases) {
    Dims inputs[5] = {good[0], good[1], good[2], good[3], good[4]};
    inputs[c.tensor][c.axis] = c.value;
    status = window_attention_check_inputs(config, inputs, 5);
    check(!status.ok && contains(status.message, c.message), c.message, __LINE__);
  }
  Dims bad_rank[5] = {good[0], good[1], good[2], {9, 2, 1}, good[4]};
  status = window_attention_check_inputs(config, bad_rank, 5);
  CHECK(!status.ok && contains(status.message, "bias_table must be"));
  // Window 7: table rows (2*7-1)^2 = 169, T = 49.
  WindowAttentionConfig seven = attention(3, 7);
  Dims swin[5] = {{16, 3, 49, 32}, {16, 3, 49, 32}, {16, 3, 49, 32}, {169, 3}, {4, 49, 49}};
  CHECK(window_attention_check_inputs(seven, swin, 5).ok);
}

void test_window_attention_types() {
  for (ElemType t : {ElemType::kFloat32, ElemType::kFloat16, ElemType::kBFloat16}) {
    CHECK(window_attention_supports(0, t, true, t));
    CHECK(window_attention_supports(5, t, true, t));
    CHECK(!window_attention_supports(0, t, false, t));
  }
  CHECK(!window_attention_supports(0, ElemType::kInt32, true, ElemType::kInt32));
  CHECK(!window_attention_supports(3, ElemType::kFloat16, true, ElemType::kFloat32));
  CHECK(!window_attention_supports(6, ElemType::kFloat32, true, ElemType::kFloat32));
  CHECK(window_attention_dtype_code(ElemType::kFloat32) == 0);
  CHECK(window_attention_dtype_code(ElemType::kFloat16) == 1);
  CHECK(window_attention_dtype_code(ElemType::kBFloat16) == 2);
  CHECK(window_attention_dtype_code(ElemType::kInt32) == -1);
  CHECK(window_attention_workspace_size() == 0);
}

}  // namespace

int main() {
  test_half_bits();
  test_field_readers();
  test_bc_formats();
  test_bc_fields();
  test_bc_shapes();
  test_bc_types_and_run_dims();
  test_window_attention_fields();
  test_window_attention_shapes();
  test_window_attention_types();
  std::printf("ntc_contract_tests: %d checks, %d failed\n", g_checks, g_failures);
  return g_failures == 0 ? 0 : 1;
}
