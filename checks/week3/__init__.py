"""Week 3 (part 1): 3.1 paged KV cache, 3.2 paged attention and continuous batching over
pages, 3.3 mixture of experts (Qwen2-MoE), 3.4 speculative decoding."""
