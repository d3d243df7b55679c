// Book days 2.4-2.5 (one chapter, CPU then GPU), lesson 2.4: flash attention as an MLX primitive.
// The book's src/extensions/ is this kernels/ folder: build with `tiny-llm-tutor build-kernels`
// (the book's `pdm run build-ext`), check with `tiny-llm-tutor check day2.4` (the book's
// `pdm run test --week 2 --day 4`).
//
// Your task (see the lesson): replace the throw below with
//   1. checks on the inputs (float32, 3-D q/k/v, num_heads % num_kv_heads == 0,
//      mask of shape (N, L, S));
//   2. a `FlashAttention : mx::Primitive` (declare it in tiny_llm_ext.h) whose eval_cpu
//      runs the tiled online softmax (Br = Bc = 32) on the CPU command encoder, and with
//      is_causal skips fully masked tiles (the causal offset is S - L);
//   3. (then, for an Apple GPU) an eval_gpu that runs your kernel from flash_attention.metal,
//      inside #ifdef _METAL_ ... #else throw ... #endif so that it still builds on Linux.
#include <stdexcept>

#include "tiny_llm_ext.h"

namespace tiny_llm_ext {

mx::array flash_attention(const mx::array &q, const mx::array &k, const mx::array &v,
                          const mx::array &mask, const float scale, const bool is_causal,
                          const int num_kv_heads, const int num_heads, mx::StreamOrDevice s) {
    (void)q, (void)k, (void)v, (void)mask, (void)scale, (void)is_causal, (void)num_kv_heads,
        (void)num_heads, (void)s;
    throw std::runtime_error("flash_attention is still a stub (lesson day 2.4)");
}

}  // namespace tiny_llm_ext
