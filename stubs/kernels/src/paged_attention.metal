// Book day 3.2 (lesson 3.2, `tiny-llm-tutor check day3.2`): the paged attention Metal kernel
// goes here (compiled only on Apple GPUs).
// One threadgroup per (request and query head, block of queries): every row in it reads the
// same request's pages, so they can share each page in threadgroup memory. Keep the running
// max, the running sum and the output accumulator per query row, as in flash attention.
#include "mlx/backend/metal/kernels/utils.h"
