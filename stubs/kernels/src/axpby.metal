// Metal kernels for the axpby warm-up (compiled only on Apple GPUs).
#include "mlx/backend/metal/kernels/utils.h"

template <typename T>
[[kernel]] void axpby_general(device const T *x [[buffer(0)]],
                              device const T *y [[buffer(1)]],
                              device T *out [[buffer(2)]],
                              constant const float &alpha [[buffer(3)]],
                              constant const float &beta [[buffer(4)]],
                              constant const int *shape [[buffer(5)]],
                              constant const int64_t *x_strides [[buffer(6)]],
                              constant const int64_t *y_strides [[buffer(7)]],
                              constant const int &ndim [[buffer(8)]],
                              uint index [[thread_position_in_grid]]) {
    auto xo = elem_to_loc<int64_t>(static_cast<int64_t>(index), shape, x_strides, ndim);
    auto yo = elem_to_loc<int64_t>(static_cast<int64_t>(index), shape, y_strides, ndim);
    out[index] = static_cast<T>(alpha * static_cast<float>(x[xo]) +
                                beta * static_cast<float>(y[yo]));
}

template <typename T>
[[kernel]] void axpby_contiguous(device const T *x [[buffer(0)]],
                                 device const T *y [[buffer(1)]],
                                 device T *out [[buffer(2)]],
                                 constant const float &alpha [[buffer(3)]],
                                 constant const float &beta [[buffer(4)]],
                                 uint index [[thread_position_in_grid]]) {
    out[index] = static_cast<T>(alpha * static_cast<float>(x[index]) +
                                beta * static_cast<float>(y[index]));
}

#define instantiate_axpby(tname, type)                                      \
    instantiate_kernel("axpby_general_" #tname, axpby_general, type)       \
    instantiate_kernel("axpby_contiguous_" #tname, axpby_contiguous, type)

instantiate_axpby(float32, float)
instantiate_axpby(float16, half)
instantiate_axpby(bfloat16, bfloat16_t)
