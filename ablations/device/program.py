"""`ExportableLM`: MobileLLM in the form ExecuTorch's LLM convention exports (`examples/models/llama`).

One `forward(tokens, input_pos)` serves prefill and decode: the token dimension is dynamic, the KV cache lives
in registered buffers of `max_seq_len` positions updated in place, and nothing branches on the sequence length
(a causal mask over the whole cache replaces `is_causal`). The model's own modules run it: embedding, norms,
FFNs and the attention projections are the model's, so a stored block applied twice is held once.

Attention is written out for the XNNPACK delegate: batched matmuls with the queries grouped by key/value head
(GQA and MQA without repeating K/V), reshapes with one inferred (-1) dimension instead of the symbolic length
(XNNPACK takes the first, not the second), and one additive mask for all layers.

A tied model's embedding is held twice by an fp32 program: the gather runs in ExecuTorch's portable kernels,
the output projection in XNNPACK, which keeps its own copy of the weight.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ablations.model.architecture import Attention, Block, MobileLLM, apply_rope, rope_tables


class StaticKVCache(nn.Module):
    """Keys and values of one block *application* at every position up to `max_seq_len`.

    One module per application (as ExecuTorch's llama has one per layer), so an update writes only its own
    slot; a shared block applied twice owns two, as `ablations.model.architecture.KVCache` does.
    """

    def __init__(self, n_kv_heads: int, max_seq_len: int, head_dim: int) -> None:
        super().__init__()
        shape = (1, n_kv_heads, max_seq_len, head_dim)
        self.register_buffer("keys", torch.zeros(shape), persistent=False)
        self.register_buffer("values", torch.zeros(shape), persistent=False)

    def update(self, positions: Tensor, k: Tensor, v: Tensor) -> tuple[Tensor, Tensor]:
        """Write k/v [1, n_kv_heads, T, head_dim] at `positions` [T]; return the whole cache."""
        self.keys.index_copy_(2, positions, k)
        self.values.index_copy_(2, positions, v)
        return self.keys, self.values


class ExportableLM(nn.Module):
    """MobileLLM with the KV cache as registered buffers of `max_seq_len`, updated in place.

    forward(tokens [1, T] int64, input_pos [1] int64) → logits [1, T, vocab] fp32, T in 1..max_seq_len-1,
    for the tokens at positions input_pos … input_pos+T-1 (positions below input_pos come from the cache).
    """

    def __init__(self, model: MobileLLM, max_seq_len: int) -> None:
        super().__init__()
        cfg = model.config
        if max_seq_len < 3:  # the export example is two tokens, inside the dynamic range 1..max_seq_len-1
            raise ValueError(f"max_seq_len must be >= 3 (got {max_seq_len})")
        self.config, self.max_seq_len = cfg, max_seq_len
        self.block_schedule: tuple[int, ...] = model.block_schedule
        self.embed_tokens, self.blocks, self.norm = model.embed_tokens, model.blocks, model.norm
        self.lm_head = model.lm_head  # None when tied: logits project through the embedding
        self.caches = nn.ModuleList(
            StaticKVCache(cfg.n_kv_heads, max_seq_len, cfg.head_dim) for _ in self.block_schedule
        )

    @property
    def output_weight(self) -> Tensor:
        return self.embed_tokens.weight if self.lm_head is None else self.lm_head.weight

    def forward(self, tokens: Tensor, input_pos: Tensor) -> Tensor:
        positions = input_pos + torch.arange(tokens.shape[1], device=tokens.device)
        cos, sin = rope_tables(self.config.head_dim, self.config.rope_theta, positions)
        # query at position p sees cache positions <= p: causal for prefill, everything cached for decode
        cache_positions = torch.arange(self.max_seq_len, device=tokens.device)
        visible = cache_positions.unsqueeze(0) <= positions.unsqueeze(1)
        # additive, built once, one row per (query head of a group, position): the grouped attention's rows
        group = self.config.n_heads // self.config.n_kv_heads
        mask = torch.zeros(visible.shape).masked_fill(~visible, float("-inf")).repeat(group, 1)
        x = self.embed_tokens(tokens)
        for cache, index in zip(self.caches, self.block_schedule, strict=True):
            x = self._block(self.blocks[index], cache, x, cos, sin, positions, mask)
        hidden = self.norm(x)
        return F.linear(hidden, self.output_weight)

    def _block(
        self,
        block: Block,
        cache: StaticKVCache,
        x: Tensor,
        cos: Tensor,
        sin: Tensor,
        positions: Tensor,
        mask: Tensor,
    ) -> Tensor:
        h = x + self._attention(block.attn, cache, block.attn_norm(x), cos, sin, positions, mask)
        return h + block.ffn(block.ffn_norm(h))

    def _attention(
        self,
        attn: Attention,
        cache: StaticKVCache,
        x: Tensor,
        cos: Tensor,
        sin: Tensor,
        positions: Tensor,
        mask: Tensor,
    ) -> Tensor:
        """`Attention.forward`'s projections and RoPE, attending over the whole static cache under `mask`."""
        kv_heads, head_dim = attn.n_kv_heads, attn.head_dim
        group = attn.n_heads // kv_heads
        q, k, v = attn.qkv_proj(x).split(attn.split, dim=-1)
        # queries grouped by their key/value head ([1, kv, group, T, hd]; head h reads kv head h // group, as
        # in repeat_interleave): a group's queries are rows of one matrix, so GQA and MQA never copy the cache
        q = q.view(1, -1, kv_heads, group, head_dim).permute(0, 2, 3, 1, 4)
        k = k.view(1, -1, kv_heads, head_dim).transpose(1, 2)
        v = v.view(1, -1, kv_heads, head_dim).transpose(1, 2)
        q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
        keys, values = cache.update(positions, k, v)
        # softmax(QKᵀ/√d + mask)·V as batched matmuls over the kv heads: SDPA's export decomposition repeats
        # K/V for GQA and guards fully masked rows in every layer, all outside the XNNPACK delegate
        q = q.contiguous().view(kv_heads, -1, head_dim)
        scores = torch.bmm(q, keys.view(kv_heads, -1, head_dim).transpose(1, 2)) * head_dim**-0.5 + mask
        y = torch.bmm(scores.softmax(dim=-1), values.view(kv_heads, -1, head_dim)).view(
            kv_heads, group, -1, head_dim
        )
        return attn.o_proj(y.permute(2, 0, 1, 3).contiguous().view(1, -1, attn.n_heads * head_dim))
