// IPluginCreatorV3One for each ntc plugin and the library entry points TensorRT's load_library looks up:
// getCreators (IPluginCreatorInterface list) and setLoggerFinder (errors go to the caller's logger).
#include "bc_decode_plugin.h"
#include "trt_bridge.h"
#include "window_attention_plugin.h"

namespace ntc {
namespace trt {

namespace {

template <typename Plugin>
class Creator final : public nvinfer1::IPluginCreatorV3One {
 public:
  explicit Creator(char const* name) : name_(name) {}

  nvinfer1::IPluginV3* createPlugin(char const*, nvinfer1::PluginFieldCollection const* fc,
                                    nvinfer1::TensorRTPhase) noexcept override {
    try {
      return Plugin::from_fields(fc);
    } catch (...) {
      report_error(std::string("ntc::") + name_ + ": creating the plugin failed");
      return nullptr;
    }
  }
  nvinfer1::PluginFieldCollection const* getFieldNames() noexcept override { return Plugin::field_names(); }
  char const* getPluginName() const noexcept override { return name_; }
  char const* getPluginVersion() const noexcept override { return contract::kVersion; }
  char const* getPluginNamespace() const noexcept override { return contract::kNamespace; }

 private:
  char const* name_;
};

}  // namespace

}  // namespace trt
}  // namespace ntc

extern "C" NTC_TRT_EXPORT nvinfer1::IPluginCreatorInterface* const* getCreators(int32_t& nbCreators) {
  static ntc::trt::Creator<ntc::trt::BcDecodePlugin> bc_decode(ntc::contract::kBcDecodeName);
  static ntc::trt::Creator<ntc::trt::WindowAttentionPlugin> window_attention(ntc::contract::kWindowAttentionName);
  static nvinfer1::IPluginCreatorInterface* const creators[] = {&bc_decode, &window_attention};
  nbCreators = 2;
  return creators;
}

extern "C" NTC_TRT_EXPORT void setLoggerFinder(nvinfer1::ILoggerFinder* finder) {
  ntc::trt::set_logger_finder(finder);
}
