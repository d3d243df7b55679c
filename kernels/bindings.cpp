// Python bindings of the extension (module tiny_llm_ext._ext).
#include <nanobind/nanobind.h>
#include <nanobind/stl/variant.h>

#include "axpby.h"
#include "tiny_llm_ext.h"

namespace nb = nanobind;
using namespace nb::literals;

NB_MODULE(_ext, m) {
    m.doc() = "tiny-llm week 2 and 3 kernels (your MLX extension)";

    m.def("load_library", &tiny_llm_ext::load_library, "device"_a, "path"_a,
          "Load tiny_llm_ext.metallib from `path` (a no-op without Metal).");

    m.def("axpby", &tiny_llm_ext::axpby, "x"_a, "y"_a, "alpha"_a, "beta"_a, nb::kw_only(),
          "stream"_a = nb::none(), "Scale and sum two arrays: alpha * x + beta * y.");

    m.def("quantized_matmul", &tiny_llm_ext::quantized_matmul, "scales"_a, "biases"_a,
          "group_size"_a, "bits"_a, "a"_a, "b"_a, "transpose_b"_a = false,
          "stream"_a = nb::none(),
          "a @ dequantize(b).T (transpose_b) with affine quantized weights b.");

    m.def("flash_attention", &tiny_llm_ext::flash_attention, "query"_a, "key"_a, "value"_a,
          "mask"_a, "scale"_a = 1.0, "is_causal"_a = false, "num_kv_heads"_a, "num_heads"_a,
          "stream"_a = nb::none(),
          "Attention over (N, L, E) queries with a (N, L, S) float32 mask (flash attention 2).");

    m.def("paged_attention", &tiny_llm_ext::paged_attention, "query"_a, "key_pages"_a,
          "value_pages"_a, "block_table"_a, "context_lens"_a, "scale"_a = 1.0,
          "is_causal"_a = false, "num_kv_heads"_a, "num_heads"_a, "stream"_a = nb::none(),
          "Attention of (B * H_q, L, D) queries over (P, H_kv, page_size, D) pages, read "
          "through a (B, max_pages) block table up to each request's context length.");
}
