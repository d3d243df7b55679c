#include "tiny_llm_ext_key.h"

#ifdef _METAL_
#include "mlx/backend/metal/device.h"
#endif

namespace tiny_llm_ext_key {

void load_library(mx::Device d, const char *path) {
#ifdef _METAL_
    // Loads <path>/tiny_llm_ext_key.metallib and registers it under the name "tiny_llm_ext_key";
    // eval_gpu finds it again with get_library("tiny_llm_ext_key").
    mx::metal::device(d).get_library("tiny_llm_ext_key", path);
#else
    (void)d;
    (void)path;
#endif
}

}  // namespace tiny_llm_ext_key
