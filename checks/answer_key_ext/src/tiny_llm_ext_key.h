// The answer key's week-2 and week-3 operations and primitives (same API as the learner's tiny_llm_ext).
#pragma once

#include "mlx/ops.h"
#include "mlx/primitives.h"

namespace mx = mlx::core;

namespace tiny_llm_ext_key {

void load_library(mx::Device d, const char *path);

// ---------------------------------------------------------------- quantized matmul
// transpose_b: a (M, N) @ dequantize(b)^T with b (K, N*bits/32), scales/biases (K, N/gs).
// otherwise:   a (M, N) @ dequantize(b)   with b (N, K*bits/32), scales/biases (N, K/gs).
// Affine: w = scale * q + bias per group of `group_size` consecutive packed values;
// 32/bits values per uint32, the first value in the lowest bits. Output dtype = a.dtype.
mx::array quantized_matmul(const mx::array &scales, const mx::array &biases, const int group_size,
                           const int bits, const mx::array &a, const mx::array &b,
                           const bool transpose_b, mx::StreamOrDevice s = {});

class QuantizedMatmul : public mx::Primitive {
  public:
    QuantizedMatmul(mx::Stream stream, int group_size, int bits, bool transpose_b)
        : mx::Primitive(stream), group_size_(group_size), bits_(bits), transpose_b_(transpose_b) {}

    void eval_cpu(const std::vector<mx::array> &inputs, std::vector<mx::array> &outputs) override;
    void eval_gpu(const std::vector<mx::array> &inputs, std::vector<mx::array> &outputs) override;
    std::pair<std::vector<mx::array>, std::vector<int>> vmap(const std::vector<mx::array> &,
                                                             const std::vector<int> &) override {
        throw std::runtime_error("QuantizedMatmul has no vmap implementation.");
    }
    const char *name() const override { return "QuantizedMatmul"; }
    bool is_equivalent(const mx::Primitive &other) const override {
        const auto &o = static_cast<const QuantizedMatmul &>(other);
        return group_size_ == o.group_size_ && bits_ == o.bits_ && transpose_b_ == o.transpose_b_;
    }

  private:
    int group_size_;
    int bits_;
    bool transpose_b_;
};

// ---------------------------------------------------------------- flash attention
// q (N, L, E), k/v (N_kv, S, E), mask (N, L, S) float32 (any strides), N = B * num_heads,
// N_kv = B * num_kv_heads; query head n reads key/value head n / (num_heads / num_kv_heads).
// is_causal: the mask is the causal mask (key c visible to query r iff c <= r + S - L);
// tiles entirely above the diagonal are skipped, tiles entirely below it skip the mask.
mx::array flash_attention(const mx::array &q, const mx::array &k, const mx::array &v,
                          const mx::array &mask, const float scale, const bool is_causal,
                          const int num_kv_heads, const int num_heads, mx::StreamOrDevice s = {});

class FlashAttention : public mx::Primitive {
  public:
    FlashAttention(mx::Stream stream, float scale, bool is_causal, int num_kv_heads, int num_heads)
        : mx::Primitive(stream), scale_(scale), is_causal_(is_causal),
          num_kv_heads_(num_kv_heads), num_heads_(num_heads) {}

    void eval_cpu(const std::vector<mx::array> &inputs, std::vector<mx::array> &outputs) override;
    void eval_gpu(const std::vector<mx::array> &inputs, std::vector<mx::array> &outputs) override;
    std::pair<std::vector<mx::array>, std::vector<int>> vmap(const std::vector<mx::array> &,
                                                             const std::vector<int> &) override {
        throw std::runtime_error("FlashAttention has no vmap implementation.");
    }
    const char *name() const override { return "FlashAttention"; }
    bool is_equivalent(const mx::Primitive &other) const override {
        const auto &o = static_cast<const FlashAttention &>(other);
        return scale_ == o.scale_ && is_causal_ == o.is_causal_ &&
               num_kv_heads_ == o.num_kv_heads_ && num_heads_ == o.num_heads_;
    }

  private:
    float scale_;
    bool is_causal_;
    int num_kv_heads_;
    int num_heads_;
};

// ---------------------------------------------------------------- paged attention (week 3)
// q (B * num_heads, L, D); key/value pages (P, num_kv_heads, page_size, D); block_table
// (B, max_pages) int32, request b's page ids in logical order then -1; context_lens (B,)
// int32. Request b attends its first context_lens[b] positions, read page by page through
// its block table row (never gathered); query head h reads kv head h / (num_heads /
// num_kv_heads). is_causal: query row r sees positions <= context_len - L + r. A row that
// sees no position (an empty slot, context_len 0) is 0. Output: q.shape, float32.
mx::array paged_attention(const mx::array &q, const mx::array &key_pages,
                          const mx::array &value_pages, const mx::array &block_table,
                          const mx::array &context_lens, const float scale, const bool is_causal,
                          const int num_kv_heads, const int num_heads, mx::StreamOrDevice s = {});

class PagedAttention : public mx::Primitive {
  public:
    PagedAttention(mx::Stream stream, float scale, bool is_causal, int num_kv_heads, int num_heads)
        : mx::Primitive(stream), scale_(scale), is_causal_(is_causal),
          num_kv_heads_(num_kv_heads), num_heads_(num_heads) {}

    void eval_cpu(const std::vector<mx::array> &inputs, std::vector<mx::array> &outputs) override;
    void eval_gpu(const std::vector<mx::array> &inputs, std::vector<mx::array> &outputs) override;
    std::pair<std::vector<mx::array>, std::vector<int>> vmap(const std::vector<mx::array> &,
                                                             const std::vector<int> &) override {
        throw std::runtime_error("PagedAttention has no vmap implementation.");
    }
    const char *name() const override { return "PagedAttention"; }
    bool is_equivalent(const mx::Primitive &other) const override {
        const auto &o = static_cast<const PagedAttention &>(other);
        return scale_ == o.scale_ && is_causal_ == o.is_causal_ &&
               num_kv_heads_ == o.num_kv_heads_ && num_heads_ == o.num_heads_;
    }

  private:
    float scale_;
    bool is_causal_;
    int num_kv_heads_;
    int num_heads_;
};

}  // namespace tiny_llm_ext_key
