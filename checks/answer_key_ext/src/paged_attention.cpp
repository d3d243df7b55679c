// Answer key: paged attention (CPU primitive; Metal kernel in paged_attention.metal).
//
// Each request's keys/values live in fixed-size pages of one pool, (P, H_kv, page_size, D);
// row b of the block table lists its pages in logical order (-1 after the last one) and
// context_lens[b] says how many positions are real. The kernel walks those pages with an
// online softmax, one page per tile, and never builds a dense copy of the history.
#include <algorithm>
#include <cmath>
#include <cstdint>
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

std::string shape_of(const mx::array &x) {
    std::ostringstream os;
    os << "(";
    for (int i = 0; i < x.ndim(); ++i) os << (i ? ", " : "") << x.shape(i);
    os << (x.ndim() == 1 ? ",)" : ")");
    return os.str();
}

[[noreturn]] void reject(const std::string &msg) {
    throw std::invalid_argument("[paged_attention] " + msg);
}

}  // namespace

mx::array paged_attention(const mx::array &q, const mx::array &key_pages,
                          const mx::array &value_pages, const mx::array &block_table,
                          const mx::array &context_lens, const float scale, const bool is_causal,
                          const int num_kv_heads, const int num_heads, mx::StreamOrDevice s) {
    for (const auto *x : {&q, &key_pages, &value_pages}) {
        if (x->dtype() != mx::float32) reject("query, key_pages and value_pages must be float32");
    }
    if (block_table.dtype() != mx::int32 || context_lens.dtype() != mx::int32) {
        reject("block_table and context_lens must be int32");
    }
    if (q.ndim() != 3) reject("query must be 3-D (B * num_heads, L, D); got " + shape_of(q));
    if (key_pages.ndim() != 4 || key_pages.shape() != value_pages.shape()) {
        reject("key_pages and value_pages must both be (P, num_kv_heads, page_size, D); got " +
               shape_of(key_pages) + " and " + shape_of(value_pages));
    }
    if (block_table.ndim() != 2 || context_lens.ndim() != 1) {
        reject("block_table must be (B, max_pages) and context_lens (B,); got " +
               shape_of(block_table) + " and " + shape_of(context_lens));
    }
    if (num_heads <= 0 || num_kv_heads <= 0 || num_heads % num_kv_heads != 0) {
        reject("num_heads (" + std::to_string(num_heads) + ") must be a multiple of num_kv_heads (" +
               std::to_string(num_kv_heads) + ")");
    }
    if (key_pages.shape(1) != num_kv_heads) {
        reject("pages " + shape_of(key_pages) + " hold " + std::to_string(key_pages.shape(1)) +
               " kv heads, num_kv_heads is " + std::to_string(num_kv_heads));
    }
    if (key_pages.shape(3) != q.shape(2)) reject("query and pages have different head dims");
    const int B = block_table.shape(0);
    if (context_lens.shape(0) != B || q.shape(0) != B * num_heads) {
        reject("query " + shape_of(q) + " with num_heads=" + std::to_string(num_heads) +
               ", block_table " + shape_of(block_table) + " and context_lens " +
               shape_of(context_lens) + " disagree on the batch size");
    }
    // Everything is read by plain indexing: make it contiguous (a no-op when it already is).
    return mx::array(q.shape(), mx::float32,
                     std::make_shared<PagedAttention>(mx::to_stream(s), scale, is_causal,
                                                      num_kv_heads, num_heads),
                     {mx::contiguous(q, false, s), mx::contiguous(key_pages, false, s),
                      mx::contiguous(value_pages, false, s), mx::contiguous(block_table, false, s),
                      mx::contiguous(context_lens, false, s)});
}

// ----------------------------------------------------------------------------- CPU

namespace {

inline float dot8(const float *x, const float *y, int n) {
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

struct PagedShapes {
    int N, L, D;           // queries (N = B * num_heads, L rows, head dim D)
    int P, H, page_size;   // pages (P, H, page_size, D)
    int max_pages;         // block table width
};

void paged_cpu(const mx::array &q, const mx::array &kp, const mx::array &vp,
               const mx::array &table, const mx::array &lens, mx::array &out, float scale,
               bool is_causal, int num_kv_heads, int num_heads) {
    const PagedShapes sh{q.shape(0), q.shape(1), q.shape(2), kp.shape(0), kp.shape(1),
                         kp.shape(2), table.shape(1)};
    const int ratio = num_heads / num_kv_heads;
    const float *Q = q.data<float>(), *K = kp.data<float>(), *V = vp.data<float>();
    const int32_t *T = table.data<int32_t>(), *C = lens.data<int32_t>();
    float *O = out.data<float>();
    const float neg_inf = -std::numeric_limits<float>::infinity();
    const size_t page_stride = static_cast<size_t>(sh.H) * sh.page_size * sh.D;
    const size_t head_stride = static_cast<size_t>(sh.page_size) * sh.D;

    // The work is what the context lengths hold, not the table's padded width.
    double work = 0;
    for (int b = 0; b < table.shape(0); ++b) work += std::max(C[b], 0);
    work *= static_cast<double>(num_heads) * sh.L * sh.D;
    const bool serial = work < (1 << 18);

    parallel_for(sh.N, serial, [&](int n) {
        const int b = n / num_heads;
        const int kv_head = (n % num_heads) / ratio;  // query heads come in groups of `ratio`
        const int ctx = std::min(std::max(C[b], 0), sh.max_pages * sh.page_size);
        const float *Qn = Q + static_cast<size_t>(n) * sh.L * sh.D;
        float *On = O + static_cast<size_t>(n) * sh.L * sh.D;
        std::fill(On, On + static_cast<size_t>(sh.L) * sh.D, 0.0f);  // rows that see nothing stay 0
        if (ctx == 0) return;  // an empty slot: nothing to read, no NaN to leak

        std::vector<float> m(sh.L, neg_inf), l(sh.L, 0.0f), s(sh.page_size);
        const int32_t *row_pages = T + static_cast<size_t>(b) * sh.max_pages;
        const int used_pages = (ctx + sh.page_size - 1) / sh.page_size;
        // Causal, bottom-right aligned: the L queries are the last L of the ctx positions,
        // so query row r sees positions <= ctx - L + r.
        const int offset = ctx - sh.L;

        for (int p = 0; p < used_pages; ++p) {
            const int page = row_pages[p];
            if (page < 0 || page >= sh.P) continue;  // no page there: nothing to read
            const int first = p * sh.page_size;
            const int valid = std::min(sh.page_size, ctx - first);  // the last page may be partial
            const float *Kp = K + page * page_stride + kv_head * head_stride;
            const float *Vp = V + page * page_stride + kv_head * head_stride;

            for (int r = 0; r < sh.L; ++r) {
                const int visible = is_causal ? std::min(valid, offset + r - first + 1) : valid;
                if (visible <= 0) continue;
                const float *qr = Qn + static_cast<size_t>(r) * sh.D;
                float m_new = m[r];
                for (int c = 0; c < visible; ++c) {
                    s[c] = scale * dot8(qr, Kp + static_cast<size_t>(c) * sh.D, sh.D);
                    m_new = std::max(m_new, s[c]);
                }
                // Rescale what was summed under the old max before adding this page.
                const float alpha = std::exp(m[r] - m_new);  // 0 on the first page (m = -inf)
                float *orow = On + static_cast<size_t>(r) * sh.D;
                for (int e = 0; e < sh.D; ++e) orow[e] *= alpha;
                float page_sum = 0.0f;
                for (int c = 0; c < visible; ++c) {
                    const float w = std::exp(s[c] - m_new);
                    page_sum += w;
                    const float *vr = Vp + static_cast<size_t>(c) * sh.D;
                    for (int e = 0; e < sh.D; ++e) orow[e] += w * vr[e];
                }
                l[r] = l[r] * alpha + page_sum;
                m[r] = m_new;
            }
        }
        for (int r = 0; r < sh.L; ++r) {
            if (l[r] == 0.0f) continue;  // a row that saw no position stays 0, not 0/0
            const float inv = 1.0f / l[r];
            float *orow = On + static_cast<size_t>(r) * sh.D;
            for (int e = 0; e < sh.D; ++e) orow[e] *= inv;
        }
    });
}

}  // namespace

void PagedAttention::eval_cpu(const std::vector<mx::array> &inputs, std::vector<mx::array> &outputs) {
    auto &q = inputs[0];
    auto &kp = inputs[1];
    auto &vp = inputs[2];
    auto &table = inputs[3];
    auto &lens = inputs[4];
    auto &out = outputs[0];
    for (const auto &x : inputs) {
        if (!x.flags().row_contiguous) {
            throw std::runtime_error("[PagedAttention] every input must be row-contiguous");
        }
    }
    out.set_data(mx::allocator::malloc(out.nbytes()));

    auto &encoder = mx::cpu::get_command_encoder(stream());
    for (const auto &x : inputs) encoder.set_input_array(x);
    encoder.set_output_array(out);
    encoder.dispatch([q = mx::array::unsafe_weak_copy(q), kp = mx::array::unsafe_weak_copy(kp),
                      vp = mx::array::unsafe_weak_copy(vp),
                      table = mx::array::unsafe_weak_copy(table),
                      lens = mx::array::unsafe_weak_copy(lens),
                      out = mx::array::unsafe_weak_copy(out), scale = scale_, causal = is_causal_,
                      nkv = num_kv_heads_, nh = num_heads_]() mutable {
        paged_cpu(q, kp, vp, table, lens, out, scale, causal, nkv, nh);
    });
}

// ----------------------------------------------------------------------------- GPU

#ifdef _METAL_
void PagedAttention::eval_gpu(const std::vector<mx::array> &inputs, std::vector<mx::array> &outputs) {
    auto &q = inputs[0];
    auto &kp = inputs[1];
    auto &vp = inputs[2];
    auto &table = inputs[3];
    auto &lens = inputs[4];
    auto &out = outputs[0];
    auto &s = stream();
    auto &d = mx::metal::device(s.device);

    const int N = q.shape(0), L = q.shape(1), D = q.shape(2);
    const int P = kp.shape(0), page_size = kp.shape(2), max_pages = table.shape(1);
    if (D > 128) {
        throw std::runtime_error("[PagedAttention] the Metal kernel supports head dims up to 128");
    }
    out.set_data(mx::allocator::malloc(out.nbytes()));

    auto lib = d.get_library("tiny_llm_ext_key");
    auto kernel = d.get_kernel("key_paged_attention_f32", lib);
    // One SIMD group (32 lanes) per query row, `rows` rows of one (request, head) per
    // threadgroup: they share the request's pages, staged once in threadgroup memory.
    int rows = static_cast<int>(std::min<size_t>(32, kernel->maxTotalThreadsPerThreadgroup() / 32));
    if (rows < 1) throw std::runtime_error("[PagedAttention] threadgroup too small for the kernel");
    const int Tr = (L + rows - 1) / rows;
    const int causal = is_causal_ ? 1 : 0;

    auto &encoder = mx::metal::get_command_encoder(s);
    encoder.set_compute_pipeline_state(kernel);
    encoder.set_input_array(q, 0);
    encoder.set_input_array(kp, 1);
    encoder.set_input_array(vp, 2);
    encoder.set_input_array(table, 3);
    encoder.set_input_array(lens, 4);
    encoder.set_output_array(out, 5);
    encoder.set_bytes(L, 6);
    encoder.set_bytes(D, 7);
    encoder.set_bytes(P, 8);
    encoder.set_bytes(num_kv_heads_, 9);
    encoder.set_bytes(page_size, 10);
    encoder.set_bytes(max_pages, 11);
    encoder.set_bytes(num_heads_, 12);
    encoder.set_bytes(scale_, 13);
    encoder.set_bytes(causal, 14);
    encoder.set_bytes(rows, 15);
    encoder.dispatch_threadgroups(MTL::Size(N, Tr, 1), MTL::Size(32, rows, 1));
}
#else
void PagedAttention::eval_gpu(const std::vector<mx::array> &, std::vector<mx::array> &) {
    throw std::runtime_error("PagedAttention has no GPU implementation (MLX was built without Metal).");
}
#endif

}  // namespace tiny_llm_ext_key
