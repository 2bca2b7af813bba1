// C ABI of the CUDA BC-block decoder (plugins/kernels/bc_decode.cu, libntc_kernels.so): ntc::BcDecode version 1.
#pragma once
#include <cuda_runtime_api.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

// Format codes (as ntc_bc_decode): 0 bc1, 1 bc4, 2 bc5, 3 bc6h_uf16, 4 bc6h_sf16, 5 bc7.
// Layouts: 0 nchw [B, C, 4*by, 4*bx]; 1 tokens [B, 16*by*bx, C] (row-major pixels). Dtypes: 0 float32, 1 float16.
// UNORM formats give value/255; BC6H gives its half value (widened exactly for float32).
// Error codes besides cudaError_t values (all nonzero results are failures).
#define NTC_BC_ERR_NULL_POINTER (-1)
#define NTC_BC_ERR_BAD_FORMAT (-2)
#define NTC_BC_ERR_BAD_SIZE (-3)
#define NTC_BC_ERR_BAD_LAYOUT_OR_DTYPE (-4)
#define NTC_BC_ERR_MISALIGNED (-5)  // blocks need 8/16-byte, out 16-byte (float32) or 8-byte (float16) alignment

// blocks: INT32 [batch, blocks_y, blocks_x, W] on the device, W = 2 (bc1, bc4) or 4 (others).
int ntc_bc_decode_cuda(const int32_t* blocks, int batch, int blocks_y, int blocks_x, int format, int layout,
                       int dtype, void* out, cudaStream_t stream);

// Decodes blocks[block_indices[k]] (flat block index) into out [n_indices, 16, C], texels row-major.
// A negative index gives zeros; indices past the end of `blocks` are the caller's error (not checked).
int ntc_bc_decode_gather_cuda(const int32_t* blocks, const int32_t* block_indices, int n_indices, int format,
                              int dtype, void* out, cudaStream_t stream);

// Hardware (texture unit) BC decode, for benchmarks: upload once, then fetch every texel with tex2D.
// Output: [4*by, 4*bx, C] interleaved (C = 4 bc1/bc7, 1 bc4, 2 bc5, 3 bc6h), float32 or float16.
int ntc_bc_texture_create(const void* device_blocks, int blocks_y, int blocks_x, int format, void** handle,
                          cudaStream_t stream);
int ntc_bc_texture_decode(void* handle, int dtype, void* out, cudaStream_t stream);
int ntc_bc_texture_destroy(void* handle);

#ifdef __cplusplus
}
#endif
