"""The real Qwen2-0.5B-Instruct checkpoint for the week-2 end-to-end checks
(``qwen2-0.5b-decode`` on day 2.1, ``qwen2-0.5b-batch`` on day 2.6).

    model = load_real_qwen2()   # mlx_lm's Qwen2 from the local Hugging Face cache, or Skip

Nothing is downloaded: when the snapshot is not in the cache the check is skipped with the
command that gets it. Tolerances follow the book's own real-weights tests (24 float16
layers against mlx_lm's forward on the same int4 weights): rtol 0.1 and atol 0.5 on
log-probabilities (logits normalised by their logsumexp), so likely tokens (log-prob near
0) are not held to a tighter bound than float16 can keep over 24 layers.
"""

from __future__ import annotations

import os

from ..harness import Skip, hf_snapshot, import_mlx_lm

REAL_REPO = "Qwen/Qwen2-0.5B-Instruct-MLX"
REAL_LOGP = {"dtype": "float16", "rtol": 1e-1, "atol": 0.5}
SKIP_REASON = ("Qwen2-0.5B-Instruct-MLX is not in the local Hugging Face cache: `hf download "
               "Qwen/Qwen2-0.5B-Instruct-MLX` gets it (about 300 MB)")
CASE_NAME = "Qwen2-0.5B-Instruct (4-bit)"


def real_snapshot():
    path = hf_snapshot(REAL_REPO)
    if path is None:
        raise Skip(SKIP_REASON)
    return path


def load_real_qwen2(path=None):
    """mlx_lm's Qwen2 with the checkpoint's weights (int4 linears and embedding), as
    ``mlx_lm.load`` builds it, without the tokenizer."""
    path = path or real_snapshot()
    # mlx_lm.utils imports transformers, which prints a note about PyTorch; keep it quiet.
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    utils = import_mlx_lm("mlx_lm.utils")
    model, _ = utils.load_model(path)
    return model
