"""Your tiny-llm package (week 1, Qwen2). Fill in the stubs lesson by lesson."""

from . import (
    attention,
    basics,
    embedding,
    generate,
    layer_norm,
    models,
    positional_encoding,
    quantize,
    qwen2_week1,
    sampler,
)
from .attention import *  # noqa: F401,F403
from .basics import *  # noqa: F401,F403
from .embedding import *  # noqa: F401,F403
from .generate import *  # noqa: F401,F403
from .layer_norm import *  # noqa: F401,F403
from .models import *  # noqa: F401,F403
from .positional_encoding import *  # noqa: F401,F403
from .quantize import *  # noqa: F401,F403
from .qwen2_week1 import Qwen2ModelWeek1  # noqa: F401
from .sampler import *  # noqa: F401,F403
