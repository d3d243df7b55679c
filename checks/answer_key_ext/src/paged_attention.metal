// Answer key: paged attention (float32, head dim <= 128) on Apple GPUs.
//
// Grid: one threadgroup per (n, block of `rows` query rows), n = request * num_heads + head;
// inside it one SIMD group of 32 lanes per query row. Lane `lane` owns head-dim elements
// lane, lane + 32, lane + 64, lane + 96. Every row of a threadgroup belongs to the same
// request and kv head, so they walk the same pages: the threadgroup stages each page, PA_BC
// positions at a time, in threadgroup memory, and each row keeps its running max m, running
// sum l and accumulator o (online softmax). Only the request's first context_len positions
// are read, through its block table row; nothing is gathered into a dense copy.
#include <metal_simdgroup>
#include <metal_stdlib>

#include "mlx/backend/metal/kernels/utils.h"

using namespace metal;

#define PA_BC 16       // positions staged at a time (2 * 16 * 128 * 4 B = 16 KiB)
#define PA_DMAX 128    // largest head dim
#define PA_PER_LANE 4  // PA_DMAX / 32

[[kernel]] void key_paged_attention_f32(device const float *q [[buffer(0)]],
                                        device const float *key_pages [[buffer(1)]],
                                        device const float *value_pages [[buffer(2)]],
                                        device const int *block_table [[buffer(3)]],
                                        device const int *context_lens [[buffer(4)]],
                                        device float *out [[buffer(5)]],
                                        constant const int &L [[buffer(6)]],
                                        constant const int &D [[buffer(7)]],
                                        constant const int &P [[buffer(8)]],
                                        constant const int &num_kv_heads [[buffer(9)]],
                                        constant const int &page_size [[buffer(10)]],
                                        constant const int &max_pages [[buffer(11)]],
                                        constant const int &num_heads [[buffer(12)]],
                                        constant const float &scale [[buffer(13)]],
                                        constant const int &is_causal [[buffer(14)]],
                                        constant const int &rows [[buffer(15)]],
                                        uint3 group_pos [[threadgroup_position_in_grid]],
                                        uint3 group_size [[threads_per_threadgroup]],
                                        uint tid [[thread_index_in_threadgroup]],
                                        uint simd_gid [[simdgroup_index_in_threadgroup]],
                                        uint lane [[thread_index_in_simdgroup]]) {
    threadgroup float k_tile[PA_BC * PA_DMAX];
    threadgroup float v_tile[PA_BC * PA_DMAX];

    const int n = static_cast<int>(group_pos.x);
    const int b = n / num_heads;
    const int kv_head = (n % num_heads) / (num_heads / num_kv_heads);
    const int row = static_cast<int>(group_pos.y) * rows + static_cast<int>(simd_gid);
    const bool valid_row = row < L;
    const int nthreads = static_cast<int>(group_size.x * group_size.y);
    const float neg_inf = -numeric_limits<float>::infinity();

    // Same for the whole threadgroup: the request's length and its pages.
    const int ctx = clamp(context_lens[b], 0, max_pages * page_size);
    const int used_pages = (ctx + page_size - 1) / page_size;
    const int offset = ctx - L;  // causal: row r sees positions <= offset + r
    device const int *row_pages = block_table + static_cast<int64_t>(b) * max_pages;
    const int64_t head_stride = static_cast<int64_t>(page_size) * D;
    const int64_t page_stride = static_cast<int64_t>(num_kv_heads) * head_stride;

    device const float *qn = q + static_cast<int64_t>(n) * L * D;
    float qr[PA_PER_LANE];
    float o[PA_PER_LANE];
    for (int j = 0; j < PA_PER_LANE; ++j) {
        const int e = j * 32 + static_cast<int>(lane);
        qr[j] = (valid_row && e < D) ? qn[static_cast<int64_t>(row) * D + e] * scale : 0.0f;
        o[j] = 0.0f;
    }
    float m = neg_inf;
    float l = 0.0f;

    for (int p = 0; p < used_pages; ++p) {
        const int page = row_pages[p];
        if (page < 0 || page >= P) {
            continue;  // uniform: no page there, nothing to read
        }
        const int first = p * page_size;
        const int valid = min(page_size, ctx - first);  // the last page may be partial
        device const float *kp = key_pages + page * page_stride + kv_head * head_stride;
        device const float *vp = value_pages + page * page_stride + kv_head * head_stride;

        for (int c0 = 0; c0 < valid; c0 += PA_BC) {
            const int bc = min(PA_BC, valid - c0);
            threadgroup_barrier(mem_flags::mem_threadgroup);
            for (int idx = static_cast<int>(tid); idx < bc * D; idx += nthreads) {
                const int c = idx / D;
                const int e = idx % D;
                const int64_t src = static_cast<int64_t>(c0 + c) * D + e;
                k_tile[c * PA_DMAX + e] = kp[src];
                v_tile[c * PA_DMAX + e] = vp[src];
            }
            threadgroup_barrier(mem_flags::mem_threadgroup);

            if (valid_row) {  // uniform within a SIMD group (one row per SIMD group)
                const int visible = is_causal ? min(bc, offset + row - (first + c0) + 1) : bc;
                for (int c = 0; c < visible; ++c) {
                    float partial = 0.0f;
                    for (int j = 0; j < PA_PER_LANE; ++j) {
                        const int e = j * 32 + static_cast<int>(lane);
                        if (e < D) {
                            partial += qr[j] * k_tile[c * PA_DMAX + e];
                        }
                    }
                    const float s = simd_sum(partial);
                    // Rescale what was summed under the old max before adding this position.
                    const float m_new = max(m, s);
                    const float alpha = exp(m - m_new);  // 0 for the first position (m = -inf)
                    const float w = exp(s - m_new);
                    l = l * alpha + w;
                    for (int j = 0; j < PA_PER_LANE; ++j) {
                        const int e = j * 32 + static_cast<int>(lane);
                        if (e < D) {
                            o[j] = o[j] * alpha + w * v_tile[c * PA_DMAX + e];
                        }
                    }
                    m = m_new;
                }
            }
        }
    }

    if (valid_row) {
        // A row that saw no position (an empty slot, or a causal row before the context)
        // is 0, not 0 / 0.
        const float inv = l > 0.0f ? 1.0f / l : 0.0f;
        for (int j = 0; j < PA_PER_LANE; ++j) {
            const int e = j * 32 + static_cast<int>(lane);
            if (e < D) {
                out[static_cast<int64_t>(n) * L * D + static_cast<int64_t>(row) * D + e] = o[j] * inv;
            }
        }
    }
}
