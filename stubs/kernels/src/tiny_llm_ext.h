// Declarations of the extension's operations (the Python bindings are in ../bindings.cpp).
// This kernels/ folder is the book's src/extensions/; `tiny-llm-tutor build-kernels` builds it
// (the book's `pdm run build-ext`).
#pragma once

#include "mlx/ops.h"
#include "mlx/primitives.h"

namespace mx = mlx::core;

namespace tiny_llm_ext {

// Load tiny_llm_ext.metallib from `path` (the package directory). No-op without Metal.
void load_library(mx::Device d, const char *path);

// Book days 2.2-2.3 (lesson 2.2): C = A @ dequantize(B)^T (transpose_b) with affine
// `bits`-bit weights.
mx::array quantized_matmul(const mx::array &scales,   // (K, N / group_size)
                           const mx::array &biases,   // (K, N / group_size)
                           const int group_size,      // 64 in the course
                           const int bits,            // 4 in the course
                           const mx::array &a,        // (M, N) activations
                           const mx::array &b,        // (K, N * bits / 32) uint32, packed
                           const bool transpose_b,    // the course uses true
                           mx::StreamOrDevice s = {});

// Book days 2.4-2.5 (lesson 2.4): flash attention over (N, L, E) queries and (N_kv, S, E)
// keys/values, with an (N, L, S) float32 mask that is always given.
mx::array flash_attention(const mx::array &q, const mx::array &k, const mx::array &v,
                          const mx::array &mask, const float scale, const bool is_causal,
                          const int num_kv_heads, const int num_heads,
                          mx::StreamOrDevice s = {});

// Book day 3.2 (lesson 3.2): attention of (B * num_heads, L, D) queries over the pool's
// (P, num_kv_heads, page_size, D) key/value pages, read through a (B, max_pages) int32 block
// table (-1 = no page) up to each request's context length (context_lens, (B,) int32).
mx::array paged_attention(const mx::array &q, const mx::array &key_pages,
                          const mx::array &value_pages, const mx::array &block_table,
                          const mx::array &context_lens, const float scale, const bool is_causal,
                          const int num_kv_heads, const int num_heads, mx::StreamOrDevice s = {});

}  // namespace tiny_llm_ext
