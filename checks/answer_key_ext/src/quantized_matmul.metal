// Answer key: affine quantized matmul on Apple GPUs. One thread per output element.
#include <metal_stdlib>

#include "mlx/backend/metal/kernels/utils.h"

using namespace metal;

// out[i, k] = sum_n a[i, n] * (scale[k, g] * q[k, n] + bias[k, g]),  g = n / group_size
//           = sum_g scale[k, g] * sum_{n in g} a[i, n] q[k, n] + bias[k, g] * sum_{n in g} a[i, n]
template <typename T>
[[kernel]] void key_qmm_t(device const float *scales [[buffer(0)]],
                          device const float *biases [[buffer(1)]],
                          device const T *a [[buffer(2)]],
                          device const uint32_t *b [[buffer(3)]],
                          device T *out [[buffer(4)]],
                          constant const int &M [[buffer(5)]],
                          constant const int &N [[buffer(6)]],
                          constant const int &K [[buffer(7)]],
                          constant const int &group_size [[buffer(8)]],
                          constant const int &bits [[buffer(9)]],
                          uint2 pos [[thread_position_in_grid]]) {
    const int k = static_cast<int>(pos.x);
    const int i = static_cast<int>(pos.y);
    if (k >= K || i >= M) {
        return;
    }
    const int per_word = 32 / bits;
    const uint32_t mask = (1u << bits) - 1u;
    const int groups = N / group_size;
    const int words_per_group = group_size / per_word;
    device const T *a_row = a + static_cast<int64_t>(i) * N;
    device const uint32_t *b_row = b + static_cast<int64_t>(k) * (N / per_word);
    device const float *s_row = scales + static_cast<int64_t>(k) * groups;
    device const float *z_row = biases + static_cast<int64_t>(k) * groups;

    float acc = 0.0f;
    for (int g = 0; g < groups; ++g) {
        float qsum = 0.0f;
        float asum = 0.0f;
        for (int w = 0; w < words_per_group; ++w) {
            uint32_t word = b_row[g * words_per_group + w];
            const int n0 = g * group_size + w * per_word;
            for (int j = 0; j < per_word; ++j) {
                const float x = static_cast<float>(a_row[n0 + j]);
                qsum += x * static_cast<float>(word & mask);
                asum += x;
                word >>= bits;
            }
        }
        acc += s_row[g] * qsum + z_row[g] * asum;
    }
    out[static_cast<int64_t>(i) * K + k] = static_cast<T>(acc);
}

// out[i, k] = sum_n a[i, n] * (scale[n, k / group_size] * q[n, k] + bias[n, k / group_size])
template <typename T>
[[kernel]] void key_qmm_n(device const float *scales [[buffer(0)]],
                          device const float *biases [[buffer(1)]],
                          device const T *a [[buffer(2)]],
                          device const uint32_t *b [[buffer(3)]],
                          device T *out [[buffer(4)]],
                          constant const int &M [[buffer(5)]],
                          constant const int &N [[buffer(6)]],
                          constant const int &K [[buffer(7)]],
                          constant const int &group_size [[buffer(8)]],
                          constant const int &bits [[buffer(9)]],
                          uint2 pos [[thread_position_in_grid]]) {
    const int k = static_cast<int>(pos.x);
    const int i = static_cast<int>(pos.y);
    if (k >= K || i >= M) {
        return;
    }
    const int per_word = 32 / bits;
    const uint32_t mask = (1u << bits) - 1u;
    const int groups = K / group_size;
    const int words = K / per_word;
    const int g = k / group_size;
    const int word_index = k / per_word;
    const uint32_t shift = static_cast<uint32_t>((k % per_word) * bits);
    device const T *a_row = a + static_cast<int64_t>(i) * N;

    float acc = 0.0f;
    for (int n = 0; n < N; ++n) {
        const uint32_t q = (b[static_cast<int64_t>(n) * words + word_index] >> shift) & mask;
        const float w = scales[static_cast<int64_t>(n) * groups + g] * static_cast<float>(q) +
                        biases[static_cast<int64_t>(n) * groups + g];
        acc += static_cast<float>(a_row[n]) * w;
    }
    out[static_cast<int64_t>(i) * K + k] = static_cast<T>(acc);
}

#define instantiate_qmm(tname, type)                          \
    instantiate_kernel("key_qmm_t_" #tname, key_qmm_t, type) \
    instantiate_kernel("key_qmm_n_" #tname, key_qmm_n, type)

instantiate_qmm(float32, float)
instantiate_qmm(float16, half)
instantiate_qmm(bfloat16, bfloat16_t)
