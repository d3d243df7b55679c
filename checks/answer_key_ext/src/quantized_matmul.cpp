// Answer key: affine quantized matmul (CPU primitive; Metal kernel in quantized_matmul.metal).
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
    throw std::invalid_argument("[quantized_matmul] " + msg);
}

}  // namespace

mx::array quantized_matmul(const mx::array &scales, const mx::array &biases, const int group_size,
                           const int bits, const mx::array &a, const mx::array &b,
                           const bool transpose_b, mx::StreamOrDevice s) {
    if (a.ndim() != 2 || b.ndim() != 2 || scales.ndim() != 2) {
        fail("a, b, scales and biases must be 2-D; got a " + shape_str(a) + ", b " + shape_str(b) +
             ", scales " + shape_str(scales));
    }
    if (a.dtype() != mx::float32 && a.dtype() != mx::float16 && a.dtype() != mx::bfloat16) {
        fail("a must be float32, float16 or bfloat16");
    }
    if (b.dtype() != mx::uint32) fail("b must be uint32 (packed quantized values)");
    if (!mx::issubdtype(scales.dtype(), mx::floating) || !mx::issubdtype(biases.dtype(), mx::floating)) {
        fail("scales and biases must be floating point");
    }
    if (bits != 2 && bits != 4 && bits != 8) fail("bits must be 2, 4 or 8");
    if (group_size != 32 && group_size != 64 && group_size != 128) {
        fail("group_size must be 32, 64 or 128");
    }
    if (scales.shape() != biases.shape()) {
        fail("scales " + shape_str(scales) + " and biases " + shape_str(biases) + " differ in shape");
    }
    const int per_word = 32 / bits;
    const int M = a.shape(0), N = a.shape(1);
    int K;
    if (transpose_b) {  // b: (K, N / per_word), groups along N
        K = b.shape(0);
        if (b.shape(1) * per_word != N) {
            fail("a " + shape_str(a) + " does not match b " + shape_str(b) + " with bits=" +
                 std::to_string(bits) + " (expected b.shape[1] * " + std::to_string(per_word) +
                 " == a.shape[1])");
        }
        if (scales.shape(0) != K || scales.shape(1) * group_size != N) {
            fail("scales " + shape_str(scales) + " do not match b " + shape_str(b) +
                 " with group_size=" + std::to_string(group_size));
        }
    } else {  // b: (N, K / per_word), groups along K
        if (b.shape(0) != N) {
            fail("a " + shape_str(a) + " does not match b " + shape_str(b) +
                 " (expected b.shape[0] == a.shape[1] when transpose_b is false)");
        }
        K = b.shape(1) * per_word;
        if (scales.shape(0) != N || scales.shape(1) * group_size != K) {
            fail("scales " + shape_str(scales) + " do not match b " + shape_str(b) +
                 " with group_size=" + std::to_string(group_size));
        }
    }
    (void)M;
    // Scales and biases are tiny: read them as float32 whatever their dtype (checkpoints
    // often store them in bfloat16 next to float16 activations).
    auto sc = mx::contiguous(mx::astype(scales, mx::float32, s), false, s);
    auto bi = mx::contiguous(mx::astype(biases, mx::float32, s), false, s);
    return mx::array({a.shape(0), K}, a.dtype(),
                     std::make_shared<QuantizedMatmul>(mx::to_stream(s), group_size, bits, transpose_b),
                     {sc, bi, mx::contiguous(a, false, s), mx::contiguous(b, false, s)});
}

// ----------------------------------------------------------------------------- CPU

namespace {

// Dequantizes `count` values starting at packed row `row` (uint32 words), with the group
// scales/biases of that row, into w (float).
inline void dequantize_row(const uint32_t *row, const float *row_scales, const float *row_biases,
                           int count, int group_size, int bits, float *w) {
    const int per_word = 32 / bits;
    const uint32_t mask = (1u << bits) - 1u;
    const int words_per_group = group_size / per_word;
    const int groups = count / group_size;
    for (int g = 0; g < groups; ++g) {
        const float s = row_scales[g], z = row_biases[g];
        const uint32_t *words = row + g * words_per_group;
        float *out = w + g * group_size;
        for (int wi = 0; wi < words_per_group; ++wi) {
            uint32_t word = words[wi];
            for (int j = 0; j < per_word; ++j) {
                out[wi * per_word + j] = s * static_cast<float>(word & mask) + z;
                word >>= bits;
            }
        }
    }
}

inline float dot(const float *x, const float *y, int n) {
    // Eight independent partial sums so the compiler can keep several lanes busy.
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

template <typename T>
void qmm_cpu(const mx::array &scales, const mx::array &biases, const mx::array &a,
             const mx::array &b, mx::array &out, int group_size, int bits, bool transpose_b) {
    const int M = a.shape(0), N = a.shape(1), K = out.shape(1);
    const float *S = scales.data<float>();
    const float *Z = biases.data<float>();
    const uint32_t *B = b.data<uint32_t>();
    const T *A = a.data<T>();
    T *C = out.data<T>();
    const int per_word = 32 / bits;

    std::vector<float> af(static_cast<size_t>(M) * N);  // activations in float32, once
    for (size_t i = 0; i < af.size(); ++i) af[i] = static_cast<float>(A[i]);

    const bool serial = static_cast<double>(M) * N * K < (1 << 20);
    if (transpose_b) {
        // out[i, k] = sum_n a[i, n] * w[k, n]: dequantize row k of b once, dot it with every a row.
        const int words = N / per_word, groups = N / group_size;
        constexpr int ROWS = 16;  // rows of b per task
        const int tasks = (K + ROWS - 1) / ROWS;
        parallel_for(tasks, serial, [&](int t) {
            std::vector<float> w(N);
            for (int k = t * ROWS; k < std::min(K, (t + 1) * ROWS); ++k) {
                dequantize_row(B + static_cast<size_t>(k) * words, S + static_cast<size_t>(k) * groups,
                               Z + static_cast<size_t>(k) * groups, N, group_size, bits, w.data());
                for (int i = 0; i < M; ++i) {
                    C[static_cast<size_t>(i) * K + k] =
                        static_cast<T>(dot(af.data() + static_cast<size_t>(i) * N, w.data(), N));
                }
            }
        });
    } else {
        // out[i, :] = sum_n a[i, n] * w[n, :]: split the output columns between tasks by
        // groups; each task dequantizes its slice of every row n of b.
        const int words = K / per_word, groups = K / group_size;
        const int tasks = groups;
        parallel_for(tasks, serial, [&](int g) {
            std::vector<float> w(group_size);
            std::vector<float> acc(static_cast<size_t>(M) * group_size, 0.0f);
            const int words_per_group = group_size / per_word;
            for (int n = 0; n < N; ++n) {
                dequantize_row(B + static_cast<size_t>(n) * words + static_cast<size_t>(g) * words_per_group,
                               S + static_cast<size_t>(n) * groups + g, Z + static_cast<size_t>(n) * groups + g,
                               group_size, group_size, bits, w.data());
                for (int i = 0; i < M; ++i) {
                    const float x = af[static_cast<size_t>(i) * N + n];
                    float *row = acc.data() + static_cast<size_t>(i) * group_size;
                    for (int j = 0; j < group_size; ++j) row[j] += x * w[j];
                }
            }
            for (int i = 0; i < M; ++i) {
                for (int j = 0; j < group_size; ++j) {
                    C[static_cast<size_t>(i) * K + g * group_size + j] =
                        static_cast<T>(acc[static_cast<size_t>(i) * group_size + j]);
                }
            }
        });
    }
}

}  // namespace

void QuantizedMatmul::eval_cpu(const std::vector<mx::array> &inputs, std::vector<mx::array> &outputs) {
    auto &scales = inputs[0];
    auto &biases = inputs[1];
    auto &a = inputs[2];
    auto &b = inputs[3];
    auto &out = outputs[0];
    for (const auto *x : {&scales, &biases, &a, &b}) {
        if (!x->flags().row_contiguous) {
            throw std::runtime_error("[QuantizedMatmul] inputs must be row-contiguous");
        }
    }
    out.set_data(mx::allocator::malloc(out.nbytes()));

    auto &encoder = mx::cpu::get_command_encoder(stream());
    encoder.set_input_array(scales);
    encoder.set_input_array(biases);
    encoder.set_input_array(a);
    encoder.set_input_array(b);
    encoder.set_output_array(out);
    encoder.dispatch([scales = mx::array::unsafe_weak_copy(scales),
                      biases = mx::array::unsafe_weak_copy(biases),
                      a = mx::array::unsafe_weak_copy(a), b = mx::array::unsafe_weak_copy(b),
                      out = mx::array::unsafe_weak_copy(out), gs = group_size_, bits = bits_,
                      tb = transpose_b_]() mutable {
        switch (a.dtype()) {
            case mx::float32: qmm_cpu<float>(scales, biases, a, b, out, gs, bits, tb); break;
            case mx::float16: qmm_cpu<mx::float16_t>(scales, biases, a, b, out, gs, bits, tb); break;
            case mx::bfloat16: qmm_cpu<mx::bfloat16_t>(scales, biases, a, b, out, gs, bits, tb); break;
            default: throw std::runtime_error("[QuantizedMatmul] unsupported dtype");
        }
    });
}

// ----------------------------------------------------------------------------- GPU

#ifdef _METAL_
void QuantizedMatmul::eval_gpu(const std::vector<mx::array> &inputs, std::vector<mx::array> &outputs) {
    auto &scales = inputs[0];
    auto &biases = inputs[1];
    auto &a = inputs[2];
    auto &b = inputs[3];
    auto &out = outputs[0];
    auto &s = stream();
    auto &d = mx::metal::device(s.device);
    out.set_data(mx::allocator::malloc(out.nbytes()));

    const int M = a.shape(0), N = a.shape(1), K = out.shape(1);
    std::string name = std::string("key_qmm_") + (transpose_b_ ? "t_" : "n_") + mx::type_to_name(a);
    auto lib = d.get_library("tiny_llm_ext_key");
    auto kernel = d.get_kernel(name, lib);

    auto &encoder = mx::metal::get_command_encoder(s);
    encoder.set_compute_pipeline_state(kernel);
    encoder.set_input_array(scales, 0);
    encoder.set_input_array(biases, 1);
    encoder.set_input_array(a, 2);
    encoder.set_input_array(b, 3);
    encoder.set_output_array(out, 4);
    encoder.set_bytes(M, 5);
    encoder.set_bytes(N, 6);
    encoder.set_bytes(K, 7);
    encoder.set_bytes(group_size_, 8);
    encoder.set_bytes(bits_, 9);
    // One thread per output element: x runs over K (32 per SIMD group), y over M.
    size_t tg_y = std::max<size_t>(1, std::min<size_t>(kernel->maxTotalThreadsPerThreadgroup() / 32,
                                                        static_cast<size_t>(M)));
    encoder.dispatch_threads(MTL::Size(K, M, 1), MTL::Size(32, tg_y, 1));
}
#else
void QuantizedMatmul::eval_gpu(const std::vector<mx::array> &, std::vector<mx::array> &) {
    throw std::runtime_error("QuantizedMatmul has no GPU implementation (MLX was built without Metal).");
}
#endif

}  // namespace tiny_llm_ext_key
