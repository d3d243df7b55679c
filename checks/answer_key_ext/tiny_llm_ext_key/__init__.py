"""The answer key's MLX extension (our own C++/Metal kernels), same API as tiny_llm_ext.

Built by ``tutor.kernels_build.build_answer_key``; never shown to the learner.
"""

from pathlib import Path

import mlx.core as mx

from ._ext import *  # noqa: F401,F403
from ._ext import load_library

if mx.metal.is_available():
    load_library(mx.gpu, str(Path(__file__).parent))
