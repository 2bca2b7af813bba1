// Registration when the library is loaded, for hosts that only dlopen a plugin library and never call getCreators:
// Triton's TensorRT backend (--backend-config=tensorrt,plugins=...) and LD_PRELOAD. Opt-in with
// NTC_TRT_REGISTER_ON_LOAD=1, because TensorRT's loadLibrary calls getCreators itself and must not find the creators
// registered twice. The registry comes from getPluginRegistry() of libnvinfer.so.<major of the headers this library
// was built with> (whose IPluginRegistry layout those headers describe), looked up with dlsym: the library still
// links no TensorRT library. NTC_TRT_LIBRARY names another library exporting getPluginRegistry.
#include <dlfcn.h>

#include <NvInferRuntime.h>
#include <NvInferVersion.h>

#include <cstdlib>
#include <string>

#include "ntc/contracts.h"
#include "trt_bridge.h"

extern "C" nvinfer1::IPluginCreatorInterface* const* getCreators(int32_t& nbCreators);

namespace {

using GetRegistry = nvinfer1::IPluginRegistry* (*)();

std::string tensorrt_library() {
  char const* named = std::getenv("NTC_TRT_LIBRARY");
  return named != nullptr && *named ? std::string(named) : "libnvinfer.so." + std::to_string(NV_TENSORRT_MAJOR);
}

void register_on_load() {
  char const* flag = std::getenv("NTC_TRT_REGISTER_ON_LOAD");
  if (flag == nullptr || std::string(flag) != "1") {
    return;
  }
  std::string const library = tensorrt_library();
  // The host's copy when it has loaded TensorRT already (Triton); loaded here first under LD_PRELOAD. Kept open:
  // the registry must outlive the creators registered with it.
  void* handle = dlopen(library.c_str(), RTLD_NOW | RTLD_GLOBAL);
  auto get_registry = handle != nullptr ? reinterpret_cast<GetRegistry>(dlsym(handle, "getPluginRegistry")) : nullptr;
  nvinfer1::IPluginRegistry* registry = get_registry != nullptr ? get_registry() : nullptr;
  if (registry == nullptr) {
    ntc::trt::report_error("ntc plugins: NTC_TRT_REGISTER_ON_LOAD=1 but " + library +
                           " (getPluginRegistry) could not be loaded; the creators are not registered");
    return;
  }
  int32_t count = 0;
  nvinfer1::IPluginCreatorInterface* const* creators = getCreators(count);
  for (int32_t i = 0; i < count; ++i) {
    if (!registry->registerCreator(*creators[i], ntc::contract::kNamespace)) {
      ntc::trt::report_error("ntc plugins: registering a creator with " + library + " failed");
    }
  }
}

__attribute__((constructor)) void ntc_register_on_load() { register_on_load(); }

}  // namespace
