"""Finding model snapshots in the local Hugging Face cache without importing
huggingface_hub and without touching the network."""

from __future__ import annotations

import os
from pathlib import Path

QWEN2_REPOS = {
    "qwen2-0.5b": "Qwen/Qwen2-0.5B-Instruct-MLX",
    "qwen2-1.5b": "Qwen/Qwen2-1.5B-Instruct-MLX",
    "qwen2-7b": "Qwen/Qwen2-7B-Instruct-MLX",
}


def hub_dir() -> Path:
    hub = os.environ.get("HF_HUB_CACHE")
    if hub:
        return Path(hub)
    home = os.environ.get("HF_HOME") or os.path.join(
        os.environ.get("XDG_CACHE_HOME", os.path.expanduser("~/.cache")), "huggingface")
    return Path(home) / "hub"


def snapshot(repo_id: str) -> Path | None:
    """The local snapshot directory of ``repo_id`` if its config and weights are cached."""
    root = hub_dir() / ("models--" + repo_id.replace("/", "--"))
    snaps = root / "snapshots"
    candidates = []
    ref = root / "refs" / "main"
    if ref.is_file():
        candidates.append(snaps / ref.read_text().strip())
    if snaps.is_dir():
        candidates.extend(sorted(snaps.iterdir()))
    for snap in candidates:
        if (snap / "config.json").is_file() and any(snap.glob("*.safetensors")):
            return snap
    return None
