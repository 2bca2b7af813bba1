// ntc::WindowAttention v1 IPluginV3 adapter: every rule comes from ntc/contracts.h; this file only translates.
#include "window_attention_plugin.h"

#include <new>

#include "ntc/window_attention_cuda.h"
#include "trt_bridge.h"

namespace ntc {
namespace trt {

using nvinfer1::DimsExprs;
using nvinfer1::DynamicPluginTensorDesc;
using nvinfer1::PluginField;
using nvinfer1::PluginFieldCollection;
using nvinfer1::PluginFieldType;

namespace {

template <typename Desc, typename ToDims>
contract::Status check_inputs(contract::WindowAttentionConfig const& config, Desc const* in, ToDims to) {
  contract::Dims dims[contract::kWindowAttentionInputs];
  for (int i = 0; i < contract::kWindowAttentionInputs; ++i) dims[i] = to(in[i]);
  return contract::window_attention_check_inputs(config, dims, contract::kWindowAttentionInputs);
}

}  // namespace

WindowAttentionPlugin::WindowAttentionPlugin(contract::WindowAttentionConfig config)
    : PluginBase(contract::kWindowAttentionInputs, "q, k, v, bias_table, mask"), config_(config) {}

PluginFieldCollection const* WindowAttentionPlugin::field_names() {
  static PluginField const fields[] = {{"heads", nullptr, PluginFieldType::kINT32, 1},
                                       {"window", nullptr, PluginFieldType::kINT32, 1},
                                       {"shift", nullptr, PluginFieldType::kINT32, 1},
                                       {"scale", nullptr, PluginFieldType::kFLOAT32, 1}};
  static PluginFieldCollection const collection{4, fields};
  return &collection;
}

WindowAttentionPlugin* WindowAttentionPlugin::from_fields(PluginFieldCollection const* fc) {
  contract::WindowAttentionConfig config{};
  std::vector<contract::Field> fields = to_fields(fc);
  contract::Status status =
      contract::parse_window_attention_fields(fields.data(), static_cast<int32_t>(fields.size()), &config);
  if (!status.ok) {
    report_error(status.message);
    return nullptr;
  }
  return new (std::nothrow) WindowAttentionPlugin(config);
}

nvinfer1::IPluginV3* WindowAttentionPlugin::clone() noexcept {
  return new (std::nothrow) WindowAttentionPlugin(config_);
}

int32_t WindowAttentionPlugin::configurePlugin(DynamicPluginTensorDesc const* in, int32_t nbInputs,
                                               DynamicPluginTensorDesc const*, int32_t nbOutputs) noexcept {
  try {
    if (check_io(nbInputs, nbOutputs) != 0) return -1;
    contract::Status status =
        check_inputs(config_, in, [](DynamicPluginTensorDesc const& d) { return to_dims(d.desc.dims); });
    if (!status.ok) report_error(status.message);
    return status.ok ? 0 : -1;
  } catch (...) {
    return -1;
  }
}

int32_t WindowAttentionPlugin::getOutputDataTypes(nvinfer1::DataType* outputTypes, int32_t nbOutputs,
                                                  nvinfer1::DataType const* inputTypes,
                                                  int32_t nbInputs) const noexcept {
  // TensorRT asks for types first, so this is where a wrong tensor count gets its message.
  if (check_io(nbInputs, nbOutputs) != 0) return -1;
  outputTypes[0] = inputTypes[0];
  return 0;
}

int32_t WindowAttentionPlugin::getOutputShapes(DimsExprs const* inputs, int32_t nbInputs, DimsExprs const*, int32_t,
                                               DimsExprs* outputs, int32_t nbOutputs,
                                               nvinfer1::IExprBuilder& exprBuilder) noexcept {
  try {
    if (check_io(nbInputs, nbOutputs) != 0) return -1;
    contract::Dims known;
    contract::Status status = contract::window_attention_output_dims(config_, to_dims(inputs[0]), &known);
    if (!status.ok) {
      report_error(status.message);
      return -1;
    }
    DimsExprs const& q = inputs[0];
    outputs[0].nbDims = 3;
    outputs[0].d[0] = q.d[0];
    outputs[0].d[1] = q.d[2];
    outputs[0].d[2] = known[2] >= 0 ? exprBuilder.constant(known[2])
                                    : exprBuilder.operation(nvinfer1::DimensionOperation::kPROD, *q.d[1], *q.d[3]);
    return 0;
  } catch (...) {
    return -1;
  }
}

bool WindowAttentionPlugin::supportsFormatCombination(int32_t pos, DynamicPluginTensorDesc const* inOut,
                                                      int32_t nbInputs, int32_t nbOutputs) noexcept {
  if (!counts_match(nbInputs, nbOutputs) || pos < 0 || pos > nbInputs) return false;
  nvinfer1::PluginTensorDesc const& desc = inOut[pos].desc;
  return contract::window_attention_supports(pos, elem_type(desc.type), desc.format == nvinfer1::TensorFormat::kLINEAR,
                                             elem_type(inOut[0].desc.type));
}

size_t WindowAttentionPlugin::getWorkspaceSize(DynamicPluginTensorDesc const*, int32_t,
                                               DynamicPluginTensorDesc const*, int32_t) const noexcept {
  return contract::window_attention_workspace_size();
}

int32_t WindowAttentionPlugin::onShapeChange(nvinfer1::PluginTensorDesc const* in, int32_t nbInputs,
                                             nvinfer1::PluginTensorDesc const*, int32_t nbOutputs) noexcept {
  try {
    if (check_io(nbInputs, nbOutputs) != 0) return -1;
    contract::Status status =
        check_inputs(config_, in, [](nvinfer1::PluginTensorDesc const& d) { return to_dims(d.dims); });
    if (!status.ok) report_error(status.message);
    return status.ok ? 0 : -1;
  } catch (...) {
    return -1;
  }
}

int32_t WindowAttentionPlugin::enqueue(nvinfer1::PluginTensorDesc const* inputDesc, nvinfer1::PluginTensorDesc const*,
                                       void const* const* inputs, void* const* outputs, void*,
                                       cudaStream_t stream) noexcept {
  nvinfer1::Dims const& q = inputDesc[0].dims;
  int const dtype = contract::window_attention_dtype_code(elem_type(inputDesc[0].type));
  int const status = ntc_window_attention_cuda(
      inputs[0], inputs[1], inputs[2], inputs[3], inputs[4], static_cast<int>(q.d[0]),
      static_cast<int>(inputDesc[4].dims.d[0]), static_cast<int>(q.d[1]), config_.window, static_cast<int>(q.d[3]),
      config_.scale, dtype, outputs[0], stream);
  if (status != 0) report_error("ntc::WindowAttention kernel returned " + std::to_string(status));
  return status;
}

PluginFieldCollection const* WindowAttentionPlugin::getFieldsToSerialize() noexcept {
  // Same kinds as the Python creators write: INT32 heads/window/shift, FLOAT32 scale.
  serialized_[0] = PluginField("heads", &config_.heads, PluginFieldType::kINT32, 1);
  serialized_[1] = PluginField("window", &config_.window, PluginFieldType::kINT32, 1);
  serialized_[2] = PluginField("shift", &config_.shift, PluginFieldType::kINT32, 1);
  serialized_[3] = PluginField("scale", &config_.scale, PluginFieldType::kFLOAT32, 1);
  serialized_collection_.nbFields = 4;
  serialized_collection_.fields = serialized_;
  return &serialized_collection_;
}

}  // namespace trt
}  // namespace ntc
