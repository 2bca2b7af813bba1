// TensorRT <-> contract type mapping and error reporting for the ntc plugin adapters.
#include "trt_bridge.h"

#include <NvInferVersion.h>

#include <atomic>
#include <cstdio>

namespace ntc {
namespace trt {

namespace {
std::atomic<nvinfer1::ILoggerFinder*> g_logger_finder{nullptr};
}  // namespace

contract::ElemType elem_type(nvinfer1::DataType type) {
  switch (type) {
    case nvinfer1::DataType::kFLOAT: return contract::ElemType::kFloat32;
    case nvinfer1::DataType::kHALF: return contract::ElemType::kFloat16;
    case nvinfer1::DataType::kBF16: return contract::ElemType::kBFloat16;
    case nvinfer1::DataType::kINT32: return contract::ElemType::kInt32;
    default: return contract::ElemType::kOther;
  }
}

contract::FieldKind field_kind(nvinfer1::PluginFieldType type) {
  switch (type) {
    case nvinfer1::PluginFieldType::kCHAR: return contract::FieldKind::kChar;
    case nvinfer1::PluginFieldType::kINT8: return contract::FieldKind::kInt8;
    case nvinfer1::PluginFieldType::kINT16: return contract::FieldKind::kInt16;
    case nvinfer1::PluginFieldType::kINT32: return contract::FieldKind::kInt32;
    case nvinfer1::PluginFieldType::kINT64: return contract::FieldKind::kInt64;
    case nvinfer1::PluginFieldType::kFLOAT16: return contract::FieldKind::kFloat16;
    case nvinfer1::PluginFieldType::kFLOAT32: return contract::FieldKind::kFloat32;
    case nvinfer1::PluginFieldType::kFLOAT64: return contract::FieldKind::kFloat64;
    default: return contract::FieldKind::kOther;
  }
}

contract::Dims to_dims(nvinfer1::Dims const& dims) {
  contract::Dims out;
  for (int32_t i = 0; i < dims.nbDims; ++i) out.push_back(dims.d[i]);
  return out;
}

contract::Dims to_dims(nvinfer1::DimsExprs const& dims) {
  contract::Dims out;
  for (int32_t i = 0; i < dims.nbDims; ++i) {
    nvinfer1::IDimensionExpr const* e = dims.d[i];
    out.push_back(e != nullptr && e->isConstant() ? e->getConstantValue() : contract::kUnknownDim);
  }
  return out;
}

std::vector<contract::Field> to_fields(nvinfer1::PluginFieldCollection const* fc) {
  std::vector<contract::Field> out;
  for (int32_t i = 0; fc != nullptr && i < fc->nbFields; ++i) {
    nvinfer1::PluginField const& f = fc->fields[i];
    out.push_back({f.name, field_kind(f.type), f.data, f.length});
  }
  return out;
}

void set_logger_finder(nvinfer1::ILoggerFinder* finder) { g_logger_finder.store(finder); }

// TensorRT 11 made ILogger and ILoggerFinder versioned interfaces, which moves findLogger/log in their vtables;
// TensorRT-RTX 1.7 hands over the 11-style finder (measured). Calling through 10.x headers would hit the wrong
// slots, so a library built against 10.x headers reports to stderr only.
#if NV_TENSORRT_MAJOR >= 11
constexpr bool kUseLoggerFinder = true;
#else
constexpr bool kUseLoggerFinder = false;
#endif

void report_error(std::string const& message) {
  nvinfer1::ILoggerFinder* finder = kUseLoggerFinder ? g_logger_finder.load() : nullptr;
  nvinfer1::ILogger* logger = finder != nullptr ? finder->findLogger() : nullptr;
  if (logger != nullptr) {
    logger->log(nvinfer1::ILogger::Severity::kERROR, message.c_str());
  } else {
    std::fprintf(stderr, "[ntc plugins] %s\n", message.c_str());
  }
}

}  // namespace trt
}  // namespace ntc
