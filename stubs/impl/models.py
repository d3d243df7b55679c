"""Model name shortcuts and choosing the model class for a course week. PROVIDED: nothing to implement here."""

from typing import Any

from .qwen2_week1 import Qwen2ModelWeek1
from .qwen2_week2 import Qwen2ModelWeek2

__all__ = ["shortcut_name_to_full_name", "dispatch_model"]

_SHORTCUTS = {
    "qwen2-0.5b": "Qwen/Qwen2-0.5B-Instruct-MLX",
    "qwen2-1.5b": "Qwen/Qwen2-1.5B-Instruct-MLX",
    "qwen2-7b": "Qwen/Qwen2-7B-Instruct-MLX",
    "qwen3-0.6b": "mlx-community/Qwen3-0.6B-4bit",
    "qwen3-1.7b": "mlx-community/Qwen3-1.7B-4bit",
    "qwen3-4b": "mlx-community/Qwen3-4B-4bit",
    "qwen3-8b": "mlx-community/Qwen3-8B-4bit",
}


def shortcut_name_to_full_name(shortcut_name: str):
    """Expand a short name such as ``qwen2-0.5b``; any other name is returned unchanged."""
    return _SHORTCUTS.get(shortcut_name.lower(), shortcut_name)


def dispatch_model(model_name: str, mlx_model: Any, week: int, **kwargs):
    """Wrap a loaded ``mlx_lm`` model in the course's model class for ``week``."""
    model_name = shortcut_name_to_full_name(model_name)
    if week == 1 and model_name.startswith("Qwen/Qwen2"):
        return Qwen2ModelWeek1(mlx_model, **kwargs)
    if week == 2 and model_name.startswith("Qwen/Qwen2"):
        return Qwen2ModelWeek2(mlx_model, **kwargs)
    raise ValueError(f"no week-{week} model for {model_name!r} (weeks 1 and 2 have Qwen2 models)")
