"""Your MLX extension, built by ``tiny-llm-tutor build-kernels`` into this folder.

``from tiny_llm_ext import axpby, quantized_matmul, flash_attention`` once it is built.
"""

from pathlib import Path

import mlx.core as mx

try:
    from ._ext import *  # noqa: F401,F403  (the compiled module, _ext*.so)
    from ._ext import load_library
except ImportError as exc:  # not built yet, or built for another Python
    raise ImportError(
        "tiny_llm_ext is not built (or was built for another Python/MLX). "
        "Run `tiny-llm-tutor build-kernels` in your workspace.") from exc

if mx.metal.is_available():
    # The Metal kernels live in tiny_llm_ext.metallib next to this file.
    load_library(mx.gpu, str(Path(__file__).parent))
