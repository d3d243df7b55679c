// Book days 2.4-2.5 (lesson 2.4, `tiny-llm-tutor check day2.4`): the flash attention Metal kernel
// goes here (compiled only on Apple GPUs).
// One threadgroup per (head, block of queries); keep the running max, the running sum
// and the output accumulator per query row, and use simd_max / simd_sum for row reductions.
#include "mlx/backend/metal/kernels/utils.h"
