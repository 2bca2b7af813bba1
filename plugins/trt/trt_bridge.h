// Translation between TensorRT types and the plain contract types (ntc/contracts.h), and error reporting.
#pragma once

#include <string>
#include <vector>

#include <NvInferRuntime.h>

#include "ntc/contracts.h"

#define NTC_TRT_EXPORT __attribute__((visibility("default")))

namespace ntc {
namespace trt {

contract::ElemType elem_type(nvinfer1::DataType type);
contract::FieldKind field_kind(nvinfer1::PluginFieldType type);
contract::Dims to_dims(nvinfer1::Dims const& dims);
// Known (constant) dims of an expression, kUnknownDim where symbolic.
contract::Dims to_dims(nvinfer1::DimsExprs const& dims);
// Field views over a collection (they point into TensorRT's buffers; use them before returning).
std::vector<contract::Field> to_fields(nvinfer1::PluginFieldCollection const* fc);

// Log an error through TensorRT's logger (setLoggerFinder; only when built against TensorRT >= 11 headers), else
// stderr.
void report_error(std::string const& message);
void set_logger_finder(nvinfer1::ILoggerFinder* finder);

}  // namespace trt
}  // namespace ntc
