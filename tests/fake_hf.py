"""A fake local Hugging Face cache holding a tiny random Qwen2 in the MLX format, so that the
real-weights checks (``qwen2-0.5b-weights``, ``qwen2-0.5b-decode``, ``qwen2-0.5b-batch``)
run in the tests without a download.

    hub = make_fake_hub(tmp_path)          # tmp_path/hub/models--Qwen--Qwen2-0.5B-Instruct-MLX/...
    monkeypatch.setenv("HF_HUB_CACHE", str(hub))

The snapshot is laid out like the real repo: ``config.json`` with a ``quantization`` table
(group size 64, 4 bits), ``model.safetensors`` holding the packed weights with float16
scales and biases (``mlx_lm.utils.load_model`` reads it back into a quantized Qwen2), and a
tokenizer (``tokenizer.json`` + ``tokenizer_config.json``: a byte-level BPE with as many
entries as the model's vocabulary). The model is random: hidden 128, 2 layers, tied embeddings, like
Qwen2-0.5B's head; rope_theta 1e6 as in the real config.
"""

from __future__ import annotations

import json
from pathlib import Path

REPO_ID = "Qwen/Qwen2-0.5B-Instruct-MLX"
REVISION = "0123456789abcdef0123456789abcdef01234567"
CONFIG = dict(vocab=320, hidden=128, intermediate=192, layers=2, heads=4, kv_heads=2,
              rms_norm_eps=1e-6, rope_theta=1000000.0, max_position_embeddings=512,
              group_size=64, bits=4, embed_scale=0.7)
# Query and key projections scaled up from mlx's default init: sharper attention, so where
# a token sits (RoPE offsets, the decode mask) moves the output by whole nats.
QK_SCALE = 4.0


def _tiny_model(seed: int):
    """A random 4-bit mlx_lm Qwen2 with float16 scales, norms and biases (the dtypes of the
    real checkpoint). Norm weights are not ones and the embedding is spread (std 0.7), so
    the catalogued mistakes move the log-probabilities by whole nats."""
    import mlx.core as mx
    import mlx.nn as nn
    from mlx.utils import tree_map
    from mlx_lm.models import qwen2

    c = CONFIG
    args = qwen2.ModelArgs(
        model_type="qwen2", hidden_size=c["hidden"], num_hidden_layers=c["layers"],
        intermediate_size=c["intermediate"], num_attention_heads=c["heads"],
        num_key_value_heads=c["kv_heads"], rms_norm_eps=c["rms_norm_eps"],
        vocab_size=c["vocab"], rope_theta=c["rope_theta"],
        max_position_embeddings=c["max_position_embeddings"], tie_word_embeddings=True)
    mx.random.seed(seed)
    model = qwen2.Model(args)
    inner = model.model
    inner.embed_tokens.weight = c["embed_scale"] * mx.random.normal((c["vocab"], c["hidden"]))
    for layer in inner.layers:
        layer.input_layernorm.weight = mx.random.uniform(0.5, 1.5, (c["hidden"],))
        layer.post_attention_layernorm.weight = mx.random.uniform(0.5, 1.5, (c["hidden"],))
        attn = layer.self_attn
        for proj in (attn.q_proj, attn.k_proj):
            proj.weight = QK_SCALE * proj.weight
    inner.norm.weight = mx.random.uniform(0.5, 1.5, (c["hidden"],))
    nn.quantize(model, group_size=c["group_size"], bits=c["bits"])
    model.update(tree_map(lambda v: v.astype(mx.float16)
                          if mx.issubdtype(v.dtype, mx.floating) else v, model.parameters()))
    mx.eval(model.parameters())
    return model


def _config(model) -> dict:
    a = model.args
    return {
        "architectures": ["Qwen2ForCausalLM"],
        "model_type": "qwen2",
        "hidden_size": a.hidden_size,
        "intermediate_size": a.intermediate_size,
        "num_attention_heads": a.num_attention_heads,
        "num_hidden_layers": a.num_hidden_layers,
        "num_key_value_heads": a.num_key_value_heads,
        "rms_norm_eps": a.rms_norm_eps,
        "rope_theta": a.rope_theta,
        "max_position_embeddings": a.max_position_embeddings,
        "vocab_size": a.vocab_size,
        "tie_word_embeddings": True,
        "hidden_act": "silu",
        "torch_dtype": "float16",
        "bos_token_id": 0,
        "eos_token_id": 2,
        "quantization": {"group_size": CONFIG["group_size"], "bits": CONFIG["bits"]},
    }


_CORPUS = ["the tiny model writes a short story about the cache and its keys and values",
           "hello world, how are you today? I am a small random model on your machine."]


def _write_tokenizer(snap: Path, vocab_size: int) -> None:
    """A byte-level BPE tokenizer (Qwen2's kind) with exactly ``vocab_size`` entries,
    trained on two sentences; transformers loads it as a Qwen2Tokenizer."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, special_tokens=["<|endoftext|>", "<|im_start|>", "<|im_end|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(_CORPUS * 20, trainer)
    tok.save(str(snap / "tokenizer.json"))
    (snap / "tokenizer_config.json").write_text(json.dumps({
        "tokenizer_class": "Qwen2Tokenizer", "eos_token": "<|im_end|>",
        "pad_token": "<|endoftext|>", "model_max_length": 512}))


def make_fake_hub(root: Path, seed: int = 5) -> Path:
    """Write the fake cache under ``root/hub`` and return that folder (for HF_HUB_CACHE)."""
    import mlx.core as mx
    from mlx.utils import tree_flatten

    hub = Path(root) / "hub"
    repo = hub / ("models--" + REPO_ID.replace("/", "--"))
    snap = repo / "snapshots" / REVISION
    snap.mkdir(parents=True, exist_ok=True)
    (repo / "refs").mkdir(exist_ok=True)
    (repo / "refs" / "main").write_text(REVISION)
    model = _tiny_model(seed)
    weights = dict(tree_flatten(model.parameters()))
    mx.save_safetensors(str(snap / "model.safetensors"), weights, metadata={"format": "mlx"})
    (snap / "config.json").write_text(json.dumps(_config(model), indent=2))
    _write_tokenizer(snap, model.args.vocab_size)
    return hub
