// Answer key: flash attention (float32, head dim <= 128) on Apple GPUs.
//
// Grid: one threadgroup per (n, block of `rows` query rows); inside it one SIMD group of
// 32 lanes per query row. Lane `lane` owns head-dim elements lane, lane + 32, lane + 64,
// lane + 96. Key/value tiles of FA_BC rows are staged in threadgroup memory; each row
// keeps its running max m, running sum l and accumulator o (online softmax).
#include <metal_simdgroup>
#include <metal_stdlib>

#include "mlx/backend/metal/kernels/utils.h"

using namespace metal;

#define FA_BC 16       // key rows per tile (2 * 16 * 128 * 4 B = 16 KiB of threadgroup memory)
#define FA_EMAX 128    // largest head dim
#define FA_PER_LANE 4  // FA_EMAX / 32

[[kernel]] void key_flash_attention_f32(device const float *q [[buffer(0)]],
                                        device const float *k [[buffer(1)]],
                                        device const float *v [[buffer(2)]],
                                        device const float *mask [[buffer(3)]],
                                        device float *out [[buffer(4)]],
                                        constant const int64_t *mask_strides [[buffer(5)]],
                                        constant const int &L [[buffer(6)]],
                                        constant const int &S [[buffer(7)]],
                                        constant const int &E [[buffer(8)]],
                                        constant const int &num_kv_heads [[buffer(9)]],
                                        constant const int &num_heads [[buffer(10)]],
                                        constant const float &scale [[buffer(11)]],
                                        constant const int &is_causal [[buffer(12)]],
                                        constant const int &rows [[buffer(13)]],
                                        uint3 group_pos [[threadgroup_position_in_grid]],
                                        uint3 group_size [[threads_per_threadgroup]],
                                        uint tid [[thread_index_in_threadgroup]],
                                        uint simd_gid [[simdgroup_index_in_threadgroup]],
                                        uint lane [[thread_index_in_simdgroup]]) {
    threadgroup float k_tile[FA_BC * FA_EMAX];
    threadgroup float v_tile[FA_BC * FA_EMAX];

    const int n = static_cast<int>(group_pos.x);
    const int r0 = static_cast<int>(group_pos.y) * rows;
    const int r_last = min(r0 + rows, L) - 1;
    const int row = r0 + static_cast<int>(simd_gid);
    const bool valid_row = row < L;
    const int kv = n / (num_heads / num_kv_heads);
    const int offset = S - L;
    const int nthreads = static_cast<int>(group_size.x * group_size.y);
    const float neg_inf = -numeric_limits<float>::infinity();

    device const float *qn = q + static_cast<int64_t>(n) * L * E;
    device const float *kn = k + static_cast<int64_t>(kv) * S * E;
    device const float *vn = v + static_cast<int64_t>(kv) * S * E;
    device const float *mn = mask + static_cast<int64_t>(n) * mask_strides[0] +
                             static_cast<int64_t>(valid_row ? row : 0) * mask_strides[1];

    float qr[FA_PER_LANE];
    float o[FA_PER_LANE];
    for (int j = 0; j < FA_PER_LANE; ++j) {
        const int e = j * 32 + static_cast<int>(lane);
        qr[j] = (valid_row && e < E) ? qn[static_cast<int64_t>(row) * E + e] * scale : 0.0f;
        o[j] = 0.0f;
    }
    float m = neg_inf;
    float l = 0.0f;

    for (int c0 = 0; c0 < S; c0 += FA_BC) {
        // Same for the whole threadgroup: every column of this tile (and of the tiles
        // after it) is above the diagonal for every row of the block.
        if (is_causal && c0 > r_last + offset) {
            break;
        }
        threadgroup_barrier(mem_flags::mem_threadgroup);
        for (int idx = static_cast<int>(tid); idx < FA_BC * E; idx += nthreads) {
            const int c = idx / E;
            const int e = idx % E;
            const bool inside = c0 + c < S;
            const int64_t src = static_cast<int64_t>(c0 + c) * E + e;
            k_tile[c * FA_EMAX + e] = inside ? kn[src] : 0.0f;
            v_tile[c * FA_EMAX + e] = inside ? vn[src] : 0.0f;
        }
        threadgroup_barrier(mem_flags::mem_threadgroup);

        if (valid_row) {  // uniform within a SIMD group (one row per SIMD group)
            const int c_end = min(FA_BC, S - c0);
            const bool fully_visible = is_causal && (c0 + c_end - 1 <= row + offset);
            for (int c = 0; c < c_end; ++c) {
                float partial = 0.0f;
                for (int j = 0; j < FA_PER_LANE; ++j) {
                    const int e = j * 32 + static_cast<int>(lane);
                    if (e < E) {
                        partial += qr[j] * k_tile[c * FA_EMAX + e];
                    }
                }
                float s = simd_sum(partial);
                const int col = c0 + c;
                if (is_causal && col > row + offset) {
                    s = neg_inf;
                } else if (!fully_visible) {
                    s += mn[static_cast<int64_t>(col) * mask_strides[2]];
                }
                const float m_new = max(m, s);
                if (m_new == neg_inf) {
                    continue;
                }
                const float alpha = exp(m - m_new);
                const float p = exp(s - m_new);
                l = l * alpha + p;
                for (int j = 0; j < FA_PER_LANE; ++j) {
                    const int e = j * 32 + static_cast<int>(lane);
                    if (e < E) {
                        o[j] = o[j] * alpha + p * v_tile[c * FA_EMAX + e];
                    }
                }
                m = m_new;
            }
        }
    }

    if (valid_row) {
        for (int j = 0; j < FA_PER_LANE; ++j) {
            const int e = j * 32 + static_cast<int>(lane);
            if (e < E) {
                out[static_cast<int64_t>(n) * L * E + static_cast<int64_t>(row) * E + e] = o[j] / l;
            }
        }
    }
}
