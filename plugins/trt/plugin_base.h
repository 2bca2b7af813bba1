// Shared IPluginV3 plumbing for the ntc plugins: capability dispatch, name/version/namespace, one output.
#pragma once

#include <string>

#include <NvInferRuntime.h>

#include "ntc/contracts.h"
#include "trt_bridge.h"

namespace ntc {
namespace trt {

class PluginBase : public nvinfer1::IPluginV3,
                   public nvinfer1::IPluginV3OneCore,
                   public nvinfer1::IPluginV3OneBuild,
                   public nvinfer1::IPluginV3OneRuntime {
 public:
  nvinfer1::IPluginCapability* getCapabilityInterface(nvinfer1::PluginCapabilityType type) noexcept override {
    switch (type) {
      case nvinfer1::PluginCapabilityType::kCORE: return static_cast<nvinfer1::IPluginV3OneCore*>(this);
      case nvinfer1::PluginCapabilityType::kBUILD: return static_cast<nvinfer1::IPluginV3OneBuild*>(this);
      case nvinfer1::PluginCapabilityType::kRUNTIME: return static_cast<nvinfer1::IPluginV3OneRuntime*>(this);
      default: return nullptr;
    }
  }
  char const* getPluginVersion() const noexcept override { return contract::kVersion; }
  char const* getPluginNamespace() const noexcept override { return contract::kNamespace; }
  int32_t getNbOutputs() const noexcept override { return 1; }
  // The plugins hold no per-context resources: a context gets its own copy.
  nvinfer1::IPluginV3* attachToContext(nvinfer1::IPluginResourceContext*) noexcept override { return clone(); }

 protected:
  // Each plugin states its inputs once (count and names, for messages); every entry point checks counts here.
  PluginBase(int32_t nbInputs, char const* inputNames) : nb_inputs_(nbInputs), input_names_(inputNames) {}

  // Silent form for supportsFormatCombination, which TensorRT calls once per tensor and candidate format.
  bool counts_match(int32_t nbInputs, int32_t nbOutputs) const noexcept {
    return nbInputs == nb_inputs_ && nbOutputs == 1;
  }

  // 0 when the tensor counts match the op, else -1 after reporting what the op needs.
  int32_t check_io(int32_t nbInputs, int32_t nbOutputs) const noexcept {
    if (counts_match(nbInputs, nbOutputs)) return 0;
    try {
      report_error(std::string(contract::kNamespace) + "::" + getPluginName() + ": needs " +
                   std::to_string(nb_inputs_) + (nb_inputs_ == 1 ? " input (" : " inputs (") + input_names_ +
                   ") and 1 output, got " + std::to_string(nbInputs) + " and " + std::to_string(nbOutputs));
    } catch (...) {  // the message is best effort; the status is what TensorRT acts on
    }
    return -1;
  }

 private:
  int32_t nb_inputs_;
  char const* input_names_;
};

}  // namespace trt
}  // namespace ntc
