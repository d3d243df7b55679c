// Book days 2.2-2.3 (one chapter, CPU then GPU), lesson 2.2: quantized matmul as an MLX primitive.
// The book's src/extensions/ is this kernels/ folder: build with `tiny-llm-tutor build-kernels`
// (the book's `pdm run build-ext`), check with `tiny-llm-tutor check day2.2` (the book's
// `pdm run test --week 2 --day 2`).
//
// Your task (see the lesson): replace the throw below with
//   1. checks on the inputs (dtypes, 2-D shapes, group_size, bits, the packed width of b);
//   2. `return mx::array({M, K}, a.dtype(), std::make_shared<QuantizedMatmul>(...), {...});`
//   3. a `QuantizedMatmul : mx::Primitive` (declare it in tiny_llm_ext.h) whose eval_cpu
//      allocates the output and queues the loop on mx::cpu::get_command_encoder(stream()),
//      like Axpby::eval_cpu in axpby.cpp;
//   4. (then, for an Apple GPU) an eval_gpu that runs your kernel from quantized_matmul.metal,
//      inside #ifdef _METAL_ ... #else throw ... #endif so that it still builds on Linux.
#include <stdexcept>

#include "tiny_llm_ext.h"

namespace tiny_llm_ext {

mx::array quantized_matmul(const mx::array &scales, const mx::array &biases, const int group_size,
                           const int bits, const mx::array &a, const mx::array &b,
                           const bool transpose_b, mx::StreamOrDevice s) {
    (void)scales, (void)biases, (void)group_size, (void)bits, (void)a, (void)b, (void)transpose_b,
        (void)s;
    throw std::runtime_error("quantized_matmul is still a stub (lesson day 2.2)");
}

}  // namespace tiny_llm_ext
