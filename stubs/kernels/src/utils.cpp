#include "tiny_llm_ext.h"

#ifdef _METAL_
#include "mlx/backend/metal/device.h"
#endif

namespace tiny_llm_ext {

void load_library(mx::Device d, const char *path) {
#ifdef _METAL_
    // Loads <path>/tiny_llm_ext.metallib and registers it under the name "tiny_llm_ext";
    // eval_gpu finds it again with get_library("tiny_llm_ext").
    mx::metal::device(d).get_library("tiny_llm_ext", path);
#else
    (void)d;
    (void)path;
#endif
}

}  // namespace tiny_llm_ext
