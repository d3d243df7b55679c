"""Answer key for the tiny-llm API (Qwen2), weeks 1 to 3. Used by the checks; never shown.

The week-2 functions that run on the compiled extension (``quantized_matmul``,
``flash_attention``) import it on first call, so this package imports without it.
"""

from . import (
    agent,
    attention,
    basics,
    batch,
    embedding,
    generate,
    kv_cache,
    layer_norm,
    long_context,
    models,
    moe,
    paged_kv_cache,
    positional_encoding,
    quantize,
    qwen2_moe,
    qwen2_week1,
    qwen2_week2,
    qwen2_week3,
    rag,
    sampler,
    speculative,
)
from .agent import *  # noqa: F401,F403
from .attention import *  # noqa: F401,F403
from .basics import *  # noqa: F401,F403
from .batch import *  # noqa: F401,F403
from .embedding import *  # noqa: F401,F403
from .generate import *  # noqa: F401,F403
from .kv_cache import *  # noqa: F401,F403
from .layer_norm import *  # noqa: F401,F403
from .long_context import *  # noqa: F401,F403
from .models import *  # noqa: F401,F403
from .moe import *  # noqa: F401,F403
from .paged_kv_cache import *  # noqa: F401,F403
from .positional_encoding import *  # noqa: F401,F403
from .quantize import *  # noqa: F401,F403
from .qwen2_moe import Qwen2MoeModel  # noqa: F401
from .qwen2_week1 import Qwen2ModelWeek1  # noqa: F401
from .qwen2_week2 import Qwen2ModelWeek2  # noqa: F401
from .qwen2_week3 import Qwen2ModelWeek3  # noqa: F401
from .rag import *  # noqa: F401,F403
from .sampler import *  # noqa: F401,F403
# after .generate: the speculative_generate of the package is day 3.4's
from .speculative import *  # noqa: F401,F403
