// Answer key: flash attention 2 (CPU primitive; Metal kernel in flash_attention.metal).
#include <cmath>
#include <limits>
#include <sstream>
#include <stdexcept>
#include <vector>

#include "mlx/backend/cpu/encoder.h"
#include "mlx/utils.h"

#include "parallel.h"
#include "tiny_llm_ext_key.h"

#ifdef _METAL_
#include "mlx/backend/metal/device.h"
#include "mlx/backend/metal/utils.h"
#endif

namespace tiny_llm_ext_key {

namespace {

std::string shape_str(const mx::array &x) {
    std::ostringstream os;
    os << "(";
    for (int i = 0; i < x.ndim(); ++i) os << (i ? ", " : "") << x.shape(i);
    os << (x.ndim() == 1 ? ",)" : ")");
    return os.str();
}

[[noreturn]] void fail(const std::string &msg) {
    throw std::invalid_argument("[flash_attention] " + msg);
}

constexpr int BR = 32;  // query rows per tile
constexpr int BC = 32;  // key columns per tile

}  // namespace

mx::array flash_attention(const mx::array &q, const mx::array &k, const mx::array &v,
                          const mx::array &mask, const float scale, const bool is_causal,
                          const int num_kv_heads, const int num_heads, mx::StreamOrDevice s) {
    for (const auto *x : {&q, &k, &v, &mask}) {
        if (x->dtype() != mx::float32) fail("query, key, value and mask must be float32");
    }
    if (q.ndim() != 3 || k.ndim() != 3 || v.ndim() != 3 || mask.ndim() != 3) {
        fail("query, key, value and mask must be 3-D; got query " + shape_str(q) + ", key " +
             shape_str(k) + ", value " + shape_str(v) + ", mask " + shape_str(mask));
    }
    if (num_heads <= 0 || num_kv_heads <= 0 || num_heads % num_kv_heads != 0) {
        fail("num_heads (" + std::to_string(num_heads) + ") must be a multiple of num_kv_heads (" +
             std::to_string(num_kv_heads) + ")");
    }
    const int N = q.shape(0), L = q.shape(1), E = q.shape(2), S = k.shape(1);
    if (N % num_heads != 0 || k.shape(0) % num_kv_heads != 0 ||
        N / num_heads != k.shape(0) / num_kv_heads) {
        fail("query " + shape_str(q) + " with num_heads=" + std::to_string(num_heads) +
             " and key " + shape_str(k) + " with num_kv_heads=" + std::to_string(num_kv_heads) +
             " disagree on the batch size");
    }
    if (k.shape() != v.shape()) fail("key " + shape_str(k) + " and value " + shape_str(v) + " differ");
    if (k.shape(2) != E) fail("query and key head dims differ");
    if (mask.shape(0) != N || mask.shape(1) != L || mask.shape(2) != S) {
        fail("mask " + shape_str(mask) + " must be (N, L, S) = (" + std::to_string(N) + ", " +
             std::to_string(L) + ", " + std::to_string(S) + ")");
    }
    // q/k/v are read row by row: make them contiguous. The mask is read through its
    // strides, so a broadcast mask costs no copy.
    return mx::array(q.shape(), mx::float32,
                     std::make_shared<FlashAttention>(mx::to_stream(s), scale, is_causal,
                                                      num_kv_heads, num_heads),
                     {mx::contiguous(q, false, s), mx::contiguous(k, false, s),
                      mx::contiguous(v, false, s), mask});
}

// ----------------------------------------------------------------------------- CPU

namespace {

inline float dot(const float *x, const float *y, int n) {
    float acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    int i = 0;
    for (; i + 8 <= n; i += 8) {
        for (int j = 0; j < 8; ++j) acc[j] += x[i + j] * y[i + j];
    }
    float total = 0;
    for (; i < n; ++i) total += x[i] * y[i];
    for (int j = 0; j < 8; ++j) total += acc[j];
    return total;
}

void flash_cpu(const mx::array &q, const mx::array &k, const mx::array &v, const mx::array &mask,
               mx::array &out, float scale, bool is_causal, int num_kv_heads, int num_heads) {
    const int N = q.shape(0), L = q.shape(1), E = q.shape(2), S = k.shape(1);
    const int ratio = num_heads / num_kv_heads;
    const int Tr = (L + BR - 1) / BR, Tc = (S + BC - 1) / BC;
    const int offset = S - L;  // query row r sees key columns c <= r + offset (causal)
    const float *Q = q.data<float>(), *K = k.data<float>(), *V = v.data<float>();
    const float *Mk = mask.data<float>();
    const int64_t ms0 = mask.strides()[0], ms1 = mask.strides()[1], ms2 = mask.strides()[2];
    float *O = out.data<float>();
    const float neg_inf = -std::numeric_limits<float>::infinity();

    const bool serial = static_cast<double>(N) * L * S * E < (1 << 18);
    parallel_for(N * Tr, serial, [&](int task) {
        const int n = task / Tr, i = task % Tr;
        const int kv = n / ratio;  // = batch * num_kv_heads + head / ratio
        const float *Qn = Q + static_cast<size_t>(n) * L * E;
        const float *Kn = K + static_cast<size_t>(kv) * S * E;
        const float *Vn = V + static_cast<size_t>(kv) * S * E;
        const float *Mn = Mk + static_cast<int64_t>(n) * ms0;

        const int r0 = i * BR, r1 = std::min(r0 + BR, L), br = r1 - r0;
        std::vector<float> o(static_cast<size_t>(br) * E, 0.0f);
        std::vector<float> m(br, neg_inf), l(br, 0.0f);
        float s[BR][BC];

        for (int j = 0; j < Tc; ++j) {
            const int c0 = j * BC, c1 = std::min(c0 + BC, S), bc = c1 - c0;
            bool read_mask = true;
            if (is_causal) {
                // Every column of this tile is right of the last row's diagonal: this tile
                // and all the tiles after it are fully masked.
                if (c0 > r1 - 1 + offset) break;
                // Every column is left of the first row's diagonal: fully visible, and the
                // causal mask is 0 there, so skip reading it.
                read_mask = (c1 - 1) > r0 + offset;
            }
            // S_ij = scale * Q_i K_j^T (+ mask)
            for (int r = 0; r < br; ++r) {
                const float *qr = Qn + static_cast<size_t>(r0 + r) * E;
                for (int c = 0; c < bc; ++c) {
                    s[r][c] = scale * dot(qr, Kn + static_cast<size_t>(c0 + c) * E, E);
                }
            }
            if (read_mask) {
                for (int r = 0; r < br; ++r) {
                    const int row = r0 + r;
                    const float *mrow = Mn + static_cast<int64_t>(row) * ms1;
                    for (int c = 0; c < bc; ++c) {
                        const int col = c0 + c;
                        if (is_causal && col > row + offset) {
                            s[r][c] = neg_inf;
                        } else {
                            s[r][c] += mrow[static_cast<int64_t>(col) * ms2];
                        }
                    }
                }
            }
            // Online softmax: new running max, rescale the old sum and accumulator.
            for (int r = 0; r < br; ++r) {
                float m_new = m[r];
                for (int c = 0; c < bc; ++c) m_new = std::max(m_new, s[r][c]);
                if (m_new == neg_inf) continue;  // everything so far is masked
                const float alpha = std::exp(m[r] - m_new);  // exp(-inf) = 0 on the first tile
                float row_sum = 0.0f;
                float *orow = o.data() + static_cast<size_t>(r) * E;
                for (int e = 0; e < E; ++e) orow[e] *= alpha;
                for (int c = 0; c < bc; ++c) {
                    const float p = std::exp(s[r][c] - m_new);
                    if (p == 0.0f) continue;
                    row_sum += p;
                    const float *vr = Vn + static_cast<size_t>(c0 + c) * E;
                    for (int e = 0; e < E; ++e) orow[e] += p * vr[e];
                }
                l[r] = l[r] * alpha + row_sum;
                m[r] = m_new;
            }
        }
        float *On = O + static_cast<size_t>(n) * L * E;
        for (int r = 0; r < br; ++r) {
            const float inv = 1.0f / l[r];  // a fully masked row gives 0 * inf = nan, like softmax
            float *dst = On + static_cast<size_t>(r0 + r) * E;
            const float *src = o.data() + static_cast<size_t>(r) * E;
            for (int e = 0; e < E; ++e) dst[e] = src[e] * inv;
        }
    });
}

}  // namespace

void FlashAttention::eval_cpu(const std::vector<mx::array> &inputs, std::vector<mx::array> &outputs) {
    auto &q = inputs[0];
    auto &k = inputs[1];
    auto &v = inputs[2];
    auto &mask = inputs[3];
    auto &out = outputs[0];
    for (const auto *x : {&q, &k, &v}) {
        if (!x->flags().row_contiguous) {
            throw std::runtime_error("[FlashAttention] query, key and value must be row-contiguous");
        }
    }
    out.set_data(mx::allocator::malloc(out.nbytes()));

    auto &encoder = mx::cpu::get_command_encoder(stream());
    encoder.set_input_array(q);
    encoder.set_input_array(k);
    encoder.set_input_array(v);
    encoder.set_input_array(mask);
    encoder.set_output_array(out);
    encoder.dispatch([q = mx::array::unsafe_weak_copy(q), k = mx::array::unsafe_weak_copy(k),
                      v = mx::array::unsafe_weak_copy(v), mask = mx::array::unsafe_weak_copy(mask),
                      out = mx::array::unsafe_weak_copy(out), scale = scale_, causal = is_causal_,
                      nkv = num_kv_heads_, nh = num_heads_]() mutable {
        flash_cpu(q, k, v, mask, out, scale, causal, nkv, nh);
    });
}

// ----------------------------------------------------------------------------- GPU

#ifdef _METAL_
void FlashAttention::eval_gpu(const std::vector<mx::array> &inputs, std::vector<mx::array> &outputs) {
    auto &q = inputs[0];
    auto &k = inputs[1];
    auto &v = inputs[2];
    auto &mask = inputs[3];
    auto &out = outputs[0];
    auto &s = stream();
    auto &d = mx::metal::device(s.device);

    const int N = q.shape(0), L = q.shape(1), E = q.shape(2), S = k.shape(1);
    if (E > 128) {
        throw std::runtime_error("[FlashAttention] the Metal kernel supports head dims up to 128");
    }
    out.set_data(mx::allocator::malloc(out.nbytes()));

    auto lib = d.get_library("tiny_llm_ext_key");
    auto kernel = d.get_kernel("key_flash_attention_f32", lib);
    // One SIMD group (32 lanes) per query row, `rows` rows per threadgroup.
    int rows = static_cast<int>(std::min<size_t>(32, kernel->maxTotalThreadsPerThreadgroup() / 32));
    if (rows < 1) throw std::runtime_error("[FlashAttention] threadgroup too small for the kernel");
    const int Tr = (L + rows - 1) / rows;
    const int causal = is_causal_ ? 1 : 0;

    auto &encoder = mx::metal::get_command_encoder(s);
    encoder.set_compute_pipeline_state(kernel);
    encoder.set_input_array(q, 0);
    encoder.set_input_array(k, 1);
    encoder.set_input_array(v, 2);
    encoder.set_input_array(mask, 3);
    encoder.set_output_array(out, 4);
    encoder.set_vector_bytes(mask.strides(), 5);
    encoder.set_bytes(L, 6);
    encoder.set_bytes(S, 7);
    encoder.set_bytes(E, 8);
    encoder.set_bytes(num_kv_heads_, 9);
    encoder.set_bytes(num_heads_, 10);
    encoder.set_bytes(scale_, 11);
    encoder.set_bytes(causal, 12);
    encoder.set_bytes(rows, 13);
    encoder.dispatch_threadgroups(MTL::Size(N, Tr, 1), MTL::Size(32, rows, 1));
}
#else
void FlashAttention::eval_gpu(const std::vector<mx::array> &, std::vector<mx::array> &) {
    throw std::runtime_error("FlashAttention has no GPU implementation (MLX was built without Metal).");
}
#endif

}  // namespace tiny_llm_ext_key
