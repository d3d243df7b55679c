// The warm-up kernel, working as shipped: z = alpha * x + beta * y.
//
// Read it as a template for the week's kernels: the op function builds a lazy array
// whose primitive is `Axpby`; MLX later calls eval_cpu (CPU stream) or eval_gpu (GPU
// stream). On the CPU the work is queued on the stream's command encoder.
#include <sstream>
#include <stdexcept>

#include "mlx/backend/common/utils.h"
#include "mlx/backend/cpu/encoder.h"
#include "mlx/utils.h"

#include "axpby.h"

#ifdef _METAL_
#include "mlx/backend/metal/device.h"
#include "mlx/backend/metal/utils.h"
#endif

namespace tiny_llm_ext {

mx::array axpby(const mx::array &x, const mx::array &y, const float alpha, const float beta,
                mx::StreamOrDevice s) {
    // Integer inputs compute in float32; float inputs keep their (promoted) dtype.
    auto dtype = mx::promote_types(x.dtype(), y.dtype());
    if (!mx::issubdtype(dtype, mx::floating)) {
        dtype = mx::promote_types(dtype, mx::float32);
    }
    auto inputs = mx::broadcast_arrays({mx::astype(x, dtype, s), mx::astype(y, dtype, s)}, s);
    auto shape = inputs[0].shape();
    return mx::array(shape, dtype, std::make_shared<Axpby>(mx::to_stream(s), alpha, beta), inputs);
}

// ----------------------------------------------------------------------------- CPU

template <typename T>
static void axpby_cpu(const mx::array &x, const mx::array &y, mx::array &out, float alpha,
                      float beta) {
    const T *xp = x.data<T>();
    const T *yp = y.data<T>();
    T *op = out.data<T>();
    const size_t n = out.size();
    if (x.flags().row_contiguous && y.flags().row_contiguous) {
        for (size_t i = 0; i < n; ++i) {
            op[i] = static_cast<T>(alpha * static_cast<float>(xp[i]) +
                                   beta * static_cast<float>(yp[i]));
        }
        return;
    }
    // Broadcast or strided inputs: map the output index to each input's memory offset.
    for (size_t i = 0; i < n; ++i) {
        auto xo = mx::elem_to_loc(static_cast<int64_t>(i), x.shape(), x.strides());
        auto yo = mx::elem_to_loc(static_cast<int64_t>(i), y.shape(), y.strides());
        op[i] = static_cast<T>(alpha * static_cast<float>(xp[xo]) +
                               beta * static_cast<float>(yp[yo]));
    }
}

void Axpby::eval_cpu(const std::vector<mx::array> &inputs, std::vector<mx::array> &outputs) {
    auto &x = inputs[0];
    auto &y = inputs[1];
    auto &out = outputs[0];
    // Allocate the output only now, when MLX evaluates the graph.
    out.set_data(mx::allocator::malloc(out.nbytes()));

    auto &encoder = mx::cpu::get_command_encoder(stream());
    encoder.set_input_array(x);
    encoder.set_input_array(y);
    encoder.set_output_array(out);
    // The task runs later on the stream's thread: capture weak copies (no ownership).
    encoder.dispatch([x = mx::array::unsafe_weak_copy(x), y = mx::array::unsafe_weak_copy(y),
                      out = mx::array::unsafe_weak_copy(out), alpha = alpha_,
                      beta = beta_]() mutable {
        switch (out.dtype()) {
            case mx::float32: axpby_cpu<float>(x, y, out, alpha, beta); break;
            case mx::float16: axpby_cpu<mx::float16_t>(x, y, out, alpha, beta); break;
            case mx::bfloat16: axpby_cpu<mx::bfloat16_t>(x, y, out, alpha, beta); break;
            default: throw std::runtime_error("axpby supports float32, float16 and bfloat16.");
        }
    });
}

// ----------------------------------------------------------------------------- GPU

#ifdef _METAL_
void Axpby::eval_gpu(const std::vector<mx::array> &inputs, std::vector<mx::array> &outputs) {
    auto &x = inputs[0];
    auto &y = inputs[1];
    auto &out = outputs[0];
    auto &s = stream();
    auto &d = mx::metal::device(s.device);

    bool contiguous = x.flags().row_contiguous && y.flags().row_contiguous;
    out.set_data(mx::allocator::malloc(out.nbytes()));

    std::string name = std::string("axpby_") + (contiguous ? "contiguous_" : "general_") +
                       mx::type_to_name(out);
    auto lib = d.get_library("tiny_llm_ext");  // loaded by load_library() at import
    auto kernel = d.get_kernel(name, lib);

    auto &encoder = mx::metal::get_command_encoder(s);
    encoder.set_compute_pipeline_state(kernel);
    encoder.set_input_array(x, 0);
    encoder.set_input_array(y, 1);
    encoder.set_output_array(out, 2);
    encoder.set_bytes(alpha_, 3);
    encoder.set_bytes(beta_, 4);
    if (!contiguous) {
        int ndim = out.ndim();
        encoder.set_vector_bytes(x.shape(), 5);
        encoder.set_vector_bytes(x.strides(), 6);
        encoder.set_vector_bytes(y.strides(), 7);
        encoder.set_bytes(ndim, 8);
    }
    size_t n = out.size();
    size_t group = std::min<size_t>(n, kernel->maxTotalThreadsPerThreadgroup());
    encoder.dispatch_threads(MTL::Size(n, 1, 1), MTL::Size(group, 1, 1));
}
#else
void Axpby::eval_gpu(const std::vector<mx::array> &, std::vector<mx::array> &) {
    throw std::runtime_error("Axpby has no GPU implementation (MLX was built without Metal).");
}
#endif

// ----------------------------------------------------------------------------- transforms

std::vector<mx::array> Axpby::jvp(const std::vector<mx::array> &primals,
                                  const std::vector<mx::array> &tangents,
                                  const std::vector<int> &argnums) {
    if (argnums.size() == 2) {
        return {axpby(tangents[0], tangents[1], alpha_, beta_, stream())};
    }
    float k = argnums[0] == 0 ? alpha_ : beta_;
    return {mx::multiply(mx::array(k, tangents[0].dtype()), tangents[0], stream())};
}

std::vector<mx::array> Axpby::vjp(const std::vector<mx::array> &primals,
                                  const std::vector<mx::array> &cotangents,
                                  const std::vector<int> &argnums,
                                  const std::vector<mx::array> &) {
    std::vector<mx::array> grads;
    for (int arg : argnums) {
        float k = arg == 0 ? alpha_ : beta_;
        grads.push_back(mx::multiply(mx::array(k, cotangents[0].dtype()), cotangents[0], stream()));
    }
    return grads;
}

std::pair<std::vector<mx::array>, std::vector<int>> Axpby::vmap(const std::vector<mx::array> &,
                                                                const std::vector<int> &) {
    throw std::runtime_error("Axpby has no vmap implementation.");
}

bool Axpby::is_equivalent(const mx::Primitive &other) const {
    const auto &o = static_cast<const Axpby &>(other);
    return alpha_ == o.alpha_ && beta_ == o.beta_;
}

}  // namespace tiny_llm_ext
