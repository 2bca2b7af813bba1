// Shared IPluginV3 plumbing for the ntc plugins: capability dispatch, name/version/namespace, one output.
#pragma once

#include <NvInferRuntime.h>

#include "ntc/contracts.h"

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
};

}  // namespace trt
}  // namespace ntc
