// ntc::BcDecode v1 IPluginV3 adapter: every rule comes from ntc/contracts.h; this file only translates.
#include "bc_decode_plugin.h"

#include <new>

#include "ntc/bc_decode_cuda.h"
#include "trt_bridge.h"

namespace ntc {
namespace trt {

using nvinfer1::DimsExprs;
using nvinfer1::DynamicPluginTensorDesc;
using nvinfer1::PluginField;
using nvinfer1::PluginFieldCollection;
using nvinfer1::PluginFieldType;

BcDecodePlugin::BcDecodePlugin(contract::BcDecodeConfig config)
    : PluginBase(1, "blocks"), config_(std::move(config)) {}

PluginFieldCollection const* BcDecodePlugin::field_names() {
  static PluginField const fields[] = {{"format", nullptr, PluginFieldType::kCHAR, 0},
                                       {"layout", nullptr, PluginFieldType::kCHAR, 0},
                                       {"dtype", nullptr, PluginFieldType::kCHAR, 0}};
  static PluginFieldCollection const collection{3, fields};
  return &collection;
}

BcDecodePlugin* BcDecodePlugin::from_fields(PluginFieldCollection const* fc) {
  contract::BcDecodeConfig config{};
  std::vector<contract::Field> fields = to_fields(fc);
  contract::Status status = contract::parse_bc_decode_fields(fields.data(), static_cast<int32_t>(fields.size()),
                                                             &config);
  if (!status.ok) {
    report_error(status.message);
    return nullptr;
  }
  return new (std::nothrow) BcDecodePlugin(std::move(config));
}

nvinfer1::IPluginV3* BcDecodePlugin::clone() noexcept {
  try {
    return new BcDecodePlugin(config_);
  } catch (...) {
    return nullptr;
  }
}

int32_t BcDecodePlugin::configurePlugin(DynamicPluginTensorDesc const* in, int32_t nbInputs,
                                        DynamicPluginTensorDesc const*, int32_t nbOutputs) noexcept {
  try {
    if (check_io(nbInputs, nbOutputs) != 0) return -1;
    contract::Dims out;
    contract::Status status = contract::bc_decode_output_dims(config_, to_dims(in[0].desc.dims), &out);
    if (!status.ok) report_error(status.message);
    return status.ok ? 0 : -1;
  } catch (...) {
    return -1;
  }
}

int32_t BcDecodePlugin::getOutputDataTypes(nvinfer1::DataType* outputTypes, int32_t nbOutputs,
                                           nvinfer1::DataType const*, int32_t nbInputs) const noexcept {
  // TensorRT asks for types first, so this is where a wrong tensor count gets its message.
  if (check_io(nbInputs, nbOutputs) != 0) return -1;
  bool const f32 = contract::bc_decode_output_type(config_) == contract::ElemType::kFloat32;
  outputTypes[0] = f32 ? nvinfer1::DataType::kFLOAT : nvinfer1::DataType::kHALF;
  return 0;
}

int32_t BcDecodePlugin::getOutputShapes(DimsExprs const* inputs, int32_t nbInputs, DimsExprs const*, int32_t,
                                        DimsExprs* outputs, int32_t nbOutputs,
                                        nvinfer1::IExprBuilder& exprBuilder) noexcept {
  try {
    if (check_io(nbInputs, nbOutputs) != 0) return -1;
    // The contract validates and computes what is known; symbolic dims become expressions here.
    contract::Dims known;
    contract::Status status = contract::bc_decode_output_dims(config_, to_dims(inputs[0]), &known);
    if (!status.ok) {
      report_error(status.message);
      return -1;
    }
    DimsExprs const& blocks = inputs[0];
    auto prod = [&](nvinfer1::IDimensionExpr const* a, nvinfer1::IDimensionExpr const* b) {
      return exprBuilder.operation(nvinfer1::DimensionOperation::kPROD, *a, *b);
    };
    nvinfer1::IDimensionExpr const* symbolic[4];
    if (config_.layout_code == contract::BcLayout::kNchw) {
      symbolic[0] = blocks.d[0];
      symbolic[1] = nullptr;  // channels: always known
      symbolic[2] = prod(blocks.d[1], exprBuilder.constant(4));
      symbolic[3] = prod(blocks.d[2], exprBuilder.constant(4));
    } else {
      symbolic[0] = blocks.d[0];
      symbolic[1] = prod(prod(blocks.d[1], blocks.d[2]), exprBuilder.constant(16));
      symbolic[2] = nullptr;
    }
    outputs[0].nbDims = static_cast<int32_t>(known.size());
    for (size_t i = 0; i < known.size(); ++i) {
      outputs[0].d[i] = known[i] >= 0 ? exprBuilder.constant(known[i]) : symbolic[i];
    }
    return 0;
  } catch (...) {
    return -1;
  }
}

bool BcDecodePlugin::supportsFormatCombination(int32_t pos, DynamicPluginTensorDesc const* inOut, int32_t nbInputs,
                                               int32_t nbOutputs) noexcept {
  if (!counts_match(nbInputs, nbOutputs) || pos < 0 || pos > nbInputs) return false;
  nvinfer1::PluginTensorDesc const& desc = inOut[pos].desc;
  return contract::bc_decode_supports(config_, pos, elem_type(desc.type),
                                      desc.format == nvinfer1::TensorFormat::kLINEAR);
}

size_t BcDecodePlugin::getWorkspaceSize(DynamicPluginTensorDesc const*, int32_t, DynamicPluginTensorDesc const*,
                                        int32_t) const noexcept {
  return contract::bc_decode_workspace_size();
}

int32_t BcDecodePlugin::onShapeChange(nvinfer1::PluginTensorDesc const* in, int32_t nbInputs,
                                      nvinfer1::PluginTensorDesc const*, int32_t nbOutputs) noexcept {
  try {
    if (check_io(nbInputs, nbOutputs) != 0) return -1;
    contract::Status status = contract::bc_decode_check_run_dims(config_, to_dims(in[0].dims));
    if (!status.ok) report_error(status.message);
    return status.ok ? 0 : -1;
  } catch (...) {
    return -1;
  }
}

int32_t BcDecodePlugin::enqueue(nvinfer1::PluginTensorDesc const* inputDesc, nvinfer1::PluginTensorDesc const*,
                                void const* const* inputs, void* const* outputs, void*,
                                cudaStream_t stream) noexcept {
  nvinfer1::Dims const& d = inputDesc[0].dims;
  int const status = ntc_bc_decode_cuda(static_cast<int32_t const*>(inputs[0]), static_cast<int>(d.d[0]),
                                        static_cast<int>(d.d[1]), static_cast<int>(d.d[2]), config_.info.code,
                                        static_cast<int>(config_.layout_code), static_cast<int>(config_.dtype_code),
                                        outputs[0], stream);
  if (status != 0) report_error("ntc::BcDecode kernel returned " + std::to_string(status));
  return status;
}

PluginFieldCollection const* BcDecodePlugin::getFieldsToSerialize() noexcept {
  // Strings travel as CHAR arrays with their NUL, as the Python creators write them.
  std::string const* values[3] = {&config_.format, &config_.layout, &config_.dtype};
  char const* names[3] = {"format", "layout", "dtype"};
  for (int i = 0; i < 3; ++i) {
    serialized_[i] = PluginField(names[i], values[i]->c_str(), PluginFieldType::kCHAR,
                                 static_cast<int32_t>(values[i]->size() + 1));
  }
  serialized_collection_.nbFields = 3;
  serialized_collection_.fields = serialized_;
  return &serialized_collection_;
}

}  // namespace trt
}  // namespace ntc
