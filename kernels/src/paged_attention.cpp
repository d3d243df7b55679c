// Book day 3.2 ("Paged Attention, Part 2"), lesson 3.2: paged attention as an MLX primitive.
// `tiny-llm-tutor build-kernels` builds it, `tiny-llm-tutor check day3.2` checks it (through
// your impl/attention.py paged_attention).
//
// The inputs: q (B * num_heads, L, D); key_pages and value_pages (P, num_kv_heads,
// page_size, D), the pool's pages; block_table (B, max_pages) int32, request b's page ids
// in logical order and -1 after them; context_lens (B,) int32, how many positions request
// b really has. Output: q.shape, float32.
//
// Your task (see the lesson): replace the throw below with
//   1. checks on the inputs (dtypes, ranks, num_heads % num_kv_heads == 0, the pages'
//      kv heads and head dim, one block table row and one length per request);
//   2. a `PagedAttention : mx::Primitive` (declare it in tiny_llm_ext.h) whose eval_cpu,
//      for each (request, query head), walks that request's pages through its block table
//      row up to its context length (not the table's padded width), with an online softmax
//      (running max, running sum, accumulator) in float32, and a causal mask aligned the
//      way lesson 1.3's is. Read K/V in place in the pages: no dense copy;
//   3. (then, for an Apple GPU) an eval_gpu that runs your kernel from paged_attention.metal,
//      inside #ifdef _METAL_ ... #else throw ... #endif so that it still builds on Linux.
#include <stdexcept>

#include "tiny_llm_ext.h"

namespace tiny_llm_ext {

mx::array paged_attention(const mx::array &q, const mx::array &key_pages,
                          const mx::array &value_pages, const mx::array &block_table,
                          const mx::array &context_lens, const float scale, const bool is_causal,
                          const int num_kv_heads, const int num_heads, mx::StreamOrDevice s) {
    (void)q, (void)key_pages, (void)value_pages, (void)block_table, (void)context_lens,
        (void)scale, (void)is_causal, (void)num_kv_heads, (void)num_heads, (void)s;
    throw std::runtime_error("paged_attention is still a stub (lesson day 3.2)");
}

}  // namespace tiny_llm_ext
