// BC decode through the GPU texture unit (cudaArray of a block-compressed channel format + tex2D), the hardware
// baseline the benchmark compares the decoder kernel against.
#include <cuda_fp16.h>
#include <cuda_runtime.h>
#include <stdint.h>

#include <new>

#include "ntc/bc_decode_cuda.h"

namespace {

struct BcTexture {
  cudaArray_t array = nullptr;
  cudaTextureObject_t texture = 0;
  int height = 0, width = 0, channels = 0;
};

bool channel_desc(int format, cudaChannelFormatDesc* desc, int* channels, int* block_bytes) {
  switch (format) {
    case 0: *desc = cudaCreateChannelDesc<cudaChannelFormatKindUnsignedBlockCompressed1>(); *channels = 4; *block_bytes = 8; return true;
    case 1: *desc = cudaCreateChannelDesc<cudaChannelFormatKindUnsignedBlockCompressed4>(); *channels = 1; *block_bytes = 8; return true;
    case 2: *desc = cudaCreateChannelDesc<cudaChannelFormatKindUnsignedBlockCompressed5>(); *channels = 2; *block_bytes = 16; return true;
    case 3: *desc = cudaCreateChannelDesc<cudaChannelFormatKindUnsignedBlockCompressed6H>(); *channels = 3; *block_bytes = 16; return true;
    case 4: *desc = cudaCreateChannelDesc<cudaChannelFormatKindSignedBlockCompressed6H>(); *channels = 3; *block_bytes = 16; return true;
    case 5: *desc = cudaCreateChannelDesc<cudaChannelFormatKindUnsignedBlockCompressed7>(); *channels = 4; *block_bytes = 16; return true;
    default: return false;
  }
}

__device__ __forceinline__ void put(float* p, float v) { *p = v; }
__device__ __forceinline__ void put(__half* p, float v) { *p = __float2half_rn(v); }

// One thread per texel, point sampling at texel centres.
template <typename T>
__global__ void texture_fetch_kernel(cudaTextureObject_t texture, int height, int width, int channels, T* out) {
  const int x = blockIdx.x * blockDim.x + threadIdx.x;
  const int y = blockIdx.y * blockDim.y + threadIdx.y;
  if (x >= width || y >= height) return;
  const float4 v = tex2D<float4>(texture, x + 0.5f, y + 0.5f);
  T* dst = out + ((int64_t)y * width + x) * channels;
  put(dst, v.x);
  if (channels > 1) put(dst + 1, v.y);
  if (channels > 2) put(dst + 2, v.z);
  if (channels > 3) put(dst + 3, v.w);
}

}  // namespace

extern "C" int ntc_bc_texture_create(const void* device_blocks, int blocks_y, int blocks_x, int format,
                                     void** handle, cudaStream_t stream) {
  if (device_blocks == nullptr || handle == nullptr) return NTC_BC_ERR_NULL_POINTER;
  if (blocks_y <= 0 || blocks_x <= 0) return NTC_BC_ERR_BAD_SIZE;
  cudaChannelFormatDesc desc;
  int channels = 0, block_bytes = 0;
  if (!channel_desc(format, &desc, &channels, &block_bytes)) return NTC_BC_ERR_BAD_FORMAT;
  BcTexture* t = new (std::nothrow) BcTexture;
  if (t == nullptr) return (int)cudaErrorMemoryAllocation;
  t->height = 4 * blocks_y;
  t->width = 4 * blocks_x;
  t->channels = channels;
  cudaError_t err = cudaMallocArray(&t->array, &desc, t->width, t->height);
  // Block-compressed arrays are copied one row of blocks at a time: width in bytes of a block row, height in blocks.
  const size_t row_bytes = (size_t)blocks_x * block_bytes;
  if (err == cudaSuccess)
    err = cudaMemcpy2DToArrayAsync(t->array, 0, 0, device_blocks, row_bytes, row_bytes, blocks_y,
                                   cudaMemcpyDeviceToDevice, stream);
  if (err == cudaSuccess) {
    cudaResourceDesc res = {};
    res.resType = cudaResourceTypeArray;
    res.res.array.array = t->array;
    cudaTextureDesc tex = {};
    tex.addressMode[0] = tex.addressMode[1] = cudaAddressModeClamp;
    tex.filterMode = cudaFilterModePoint;
    // UNORM BC formats must be read as normalized floats; BC6H returns its half values as floats.
    tex.readMode = (format == 3 || format == 4) ? cudaReadModeElementType : cudaReadModeNormalizedFloat;
    tex.normalizedCoords = 0;
    err = cudaCreateTextureObject(&t->texture, &res, &tex, nullptr);
  }
  if (err != cudaSuccess) {
    if (t->array) cudaFreeArray(t->array);
    delete t;
    return (int)err;
  }
  *handle = t;
  return 0;
}

extern "C" int ntc_bc_texture_decode(void* handle, int dtype, void* out, cudaStream_t stream) {
  if (handle == nullptr || out == nullptr) return NTC_BC_ERR_NULL_POINTER;
  if (dtype != 0 && dtype != 1) return NTC_BC_ERR_BAD_LAYOUT_OR_DTYPE;
  const BcTexture* t = static_cast<const BcTexture*>(handle);
  const dim3 threads(32, 8);
  const dim3 grid((t->width + 31) / 32, (t->height + 7) / 8);
  if (dtype == 0)
    texture_fetch_kernel<float><<<grid, threads, 0, stream>>>(t->texture, t->height, t->width, t->channels,
                                                              static_cast<float*>(out));
  else
    texture_fetch_kernel<__half><<<grid, threads, 0, stream>>>(t->texture, t->height, t->width, t->channels,
                                                               static_cast<__half*>(out));
  return (int)cudaGetLastError();
}

extern "C" int ntc_bc_texture_destroy(void* handle) {
  if (handle == nullptr) return NTC_BC_ERR_NULL_POINTER;
  BcTexture* t = static_cast<BcTexture*>(handle);
  cudaError_t err = cudaDestroyTextureObject(t->texture);
  cudaError_t err2 = cudaFreeArray(t->array);
  delete t;
  return (int)(err != cudaSuccess ? err : err2);
}
