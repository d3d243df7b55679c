// Book days 2.2-2.3 (lesson 2.2, `tiny-llm-tutor check day2.2`): the quantized matmul Metal kernel
// goes here (compiled only on Apple GPUs).
// One thread per output element C[i, k]; instantiate it for half and bfloat16_t with
// instantiate_kernel("your_kernel_name", your_kernel, half) and look it up by that name
// in QuantizedMatmul::eval_gpu.
#include "mlx/backend/metal/kernels/utils.h"
