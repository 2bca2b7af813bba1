// ntc::WindowAttention v1 as an IPluginV3 over the plain contract (ntc/contracts.h) and ntc_window_attention_cuda.
#pragma once

#include "plugin_base.h"

namespace ntc {
namespace trt {

class WindowAttentionPlugin final : public PluginBase {
 public:
  explicit WindowAttentionPlugin(contract::WindowAttentionConfig config);

  // Field names and types the creator advertises (heads, window, shift: INT32; scale: FLOAT32).
  static nvinfer1::PluginFieldCollection const* field_names();
  // A plugin from creator fields, or nullptr after reporting the problem.
  static WindowAttentionPlugin* from_fields(nvinfer1::PluginFieldCollection const* fc);

  nvinfer1::IPluginV3* clone() noexcept override;
  char const* getPluginName() const noexcept override { return contract::kWindowAttentionName; }

  int32_t configurePlugin(nvinfer1::DynamicPluginTensorDesc const* in, int32_t nbInputs,
                          nvinfer1::DynamicPluginTensorDesc const* out, int32_t nbOutputs) noexcept override;
  int32_t getOutputDataTypes(nvinfer1::DataType* outputTypes, int32_t nbOutputs,
                             nvinfer1::DataType const* inputTypes, int32_t nbInputs) const noexcept override;
  int32_t getOutputShapes(nvinfer1::DimsExprs const* inputs, int32_t nbInputs, nvinfer1::DimsExprs const* shapeInputs,
                          int32_t nbShapeInputs, nvinfer1::DimsExprs* outputs, int32_t nbOutputs,
                          nvinfer1::IExprBuilder& exprBuilder) noexcept override;
  bool supportsFormatCombination(int32_t pos, nvinfer1::DynamicPluginTensorDesc const* inOut, int32_t nbInputs,
                                 int32_t nbOutputs) noexcept override;
  size_t getWorkspaceSize(nvinfer1::DynamicPluginTensorDesc const* inputs, int32_t nbInputs,
                          nvinfer1::DynamicPluginTensorDesc const* outputs, int32_t nbOutputs) const noexcept override;

  int32_t onShapeChange(nvinfer1::PluginTensorDesc const* in, int32_t nbInputs, nvinfer1::PluginTensorDesc const* out,
                        int32_t nbOutputs) noexcept override;
  int32_t enqueue(nvinfer1::PluginTensorDesc const* inputDesc, nvinfer1::PluginTensorDesc const* outputDesc,
                  void const* const* inputs, void* const* outputs, void* workspace,
                  cudaStream_t stream) noexcept override;
  nvinfer1::PluginFieldCollection const* getFieldsToSerialize() noexcept override;

 private:
  contract::WindowAttentionConfig config_;
  nvinfer1::PluginField serialized_[4];
  nvinfer1::PluginFieldCollection serialized_collection_{};
};

}  // namespace trt
}  // namespace ntc
