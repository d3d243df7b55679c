"""Week 3: 3.1 paged KV cache, 3.2 paged attention and continuous batching over pages,
3.3 mixture of experts (Qwen2-MoE), 3.4 speculative decoding, 3.5 retrieval-augmented
generation over the course's own lessons, 3.6 tool calling and an agent loop, 3.7 long
context (YaRN RoPE scaling, a sink + sliding-window cache, a quantized cache)."""
