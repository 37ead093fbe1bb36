"""The MobileLLM architecture family in one file.

A LLaMA-style pre-norm decoder (RMSNorm, RoPE over the full head_dim, no biases, no dropout) with the
paper's axes: depth and width, GQA (n_kv_heads), the FFN kind, the norm, tied embeddings (no output
matrix at all), and block-wise weight sharing (distinct blocks stored once, applied along
`block_schedule`). FFN kinds, norms and sharing schemes are read from `ablations.model.axes`.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

from ablations.model.activations import checkpointed_applications
from ablations.model.axes import FFN_KINDS, NORMS
from ablations.model.config import ModelConfig


class Norm(nn.Module):
    """RMSNorm or LayerNorm (`cfg.norm_type`): normalised in fp32 (as LLaMA does), scaled in the input dtype."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        kind = NORMS[cfg.norm_type]
        self.eps, self.centered = cfg.norm_eps, kind.centered
        self.weight = nn.Parameter(torch.ones(cfg.dim))
        self.bias = nn.Parameter(torch.zeros(cfg.dim)) if kind.bias else None

    def forward(self, x: Tensor) -> Tensor:
        shape = (x.shape[-1],)
        if self.centered:
            normed = F.layer_norm(x.float(), shape, eps=self.eps)
        else:
            normed = F.rms_norm(x.float(), shape, eps=self.eps)
        out = self.weight * normed.type_as(x)
        return out if self.bias is None else out + self.bias


def rope_tables(head_dim: int, theta: float, positions: Tensor) -> tuple[Tensor, Tensor]:
    """cos and sin, shape [T, head_dim] ([B, T, head_dim] for positions [B, T]), fp32, in the half-split
    (rotate_half) layout LLaMA/HF use.

    Computed per forward rather than stored: a buffer would be cast by `.to(bfloat16)` and lose the
    precision that positions up to 2048 need.
    """
    exponent = torch.arange(0, head_dim, 2, dtype=torch.int64, device=positions.device).float() / head_dim
    inv_freq = 1.0 / (theta**exponent)
    freqs = positions.float().unsqueeze(-1) * inv_freq
    angles = torch.cat((freqs, freqs), dim=-1)
    return angles.cos(), angles.sin()


def apply_rope(x: Tensor, cos: Tensor, sin: Tensor) -> Tensor:
    """Rotate [B, H, T, head_dim] queries or keys by their positions."""
    x1, x2 = x.chunk(2, dim=-1)
    rotated = torch.cat((-x2, x1), dim=-1)
    return x * cos.to(x.dtype) + rotated * sin.to(x.dtype)


@dataclass
class KVCache:
    """Keys and values for incremental decoding, one slot per block *application*.

    A shared block applied twice owns two slots, so its second pass never attends to the first pass's
    keys, matching what full-sequence recomputation computes.
    """

    keys: Tensor  # [n_applied_layers, batch, n_kv_heads, capacity, head_dim]
    values: Tensor
    length: int = 0  # tokens already cached

    @classmethod
    def empty(
        cls, cfg: ModelConfig, batch: int, capacity: int, device: torch.device, dtype: torch.dtype
    ) -> KVCache:
        shape = (cfg.n_applied_layers, batch, cfg.n_kv_heads, capacity, cfg.head_dim)
        return cls(
            torch.empty(shape, device=device, dtype=dtype), torch.empty(shape, device=device, dtype=dtype)
        )

    @property
    def capacity(self) -> int:
        return self.keys.shape[3]

    def append(self, slot: int, k: Tensor, v: Tensor) -> tuple[Tensor, Tensor]:
        """Store this step's k/v for one block application; return all keys/values cached for it."""
        end = self.length + k.shape[2]
        self.keys[slot, :, :, self.length : end] = k
        self.values[slot, :, :, self.length : end] = v
        return self.keys[slot, :, :, :end], self.values[slot, :, :, :end]


class Attention(nn.Module):
    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.n_heads, self.n_kv_heads, self.head_dim = cfg.n_heads, cfg.n_kv_heads, cfg.head_dim
        self.split = (cfg.q_dim, cfg.kv_dim, cfg.kv_dim)
        # q, k and v in one matrix (rows in that order): one larger matmul instead of three narrow ones
        self.qkv_proj = nn.Linear(cfg.dim, sum(self.split), bias=False)
        self.o_proj = nn.Linear(cfg.q_dim, cfg.dim, bias=False)

    def forward(
        self,
        x: Tensor,
        cos: Tensor,
        sin: Tensor,
        cache: KVCache | None,
        slot: int,
        mask: Tensor | None = None,
    ) -> Tensor:
        batch, seq, _ = x.shape
        q, k, v = self.qkv_proj(x).split(self.split, dim=-1)
        q = q.view(batch, seq, self.n_heads, self.head_dim).transpose(1, 2)
        k = k.view(batch, seq, self.n_kv_heads, self.head_dim).transpose(1, 2)
        v = v.view(batch, seq, self.n_kv_heads, self.head_dim).transpose(1, 2)
        q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
        past = 0
        if cache is not None:
            past = cache.length
            k, v = cache.append(slot, k, v)
        if mask is None and past and seq > 1:  # a chunk after cached tokens: causal, bottom-right aligned
            mask = torch.ones(seq, past + seq, dtype=torch.bool, device=x.device).tril(diagonal=past)
        y = F.scaled_dot_product_attention(
            q,
            k,
            v,
            attn_mask=mask,
            is_causal=mask is None and seq > 1,
            enable_gqa=self.n_kv_heads != self.n_heads,
        )
        return self.o_proj(y.transpose(1, 2).reshape(batch, seq, -1))


class FeedForward(nn.Module):
    """Ungated (relu, gelu): down(act(up(x))); gated (swiglu, geglu): down(act(gate(x)) · up(x)).

    Gated: `up_proj` holds the gate rows then the up rows (one matmul); HF's gate_proj/up_proj are its halves.
    """

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        kind = FFN_KINDS[cfg.ffn_type]
        self.gated = kind.gated
        self.act = getattr(F, kind.activation)
        self.up_proj = nn.Linear(cfg.dim, (2 if self.gated else 1) * cfg.ffn_hidden, bias=False)
        self.down_proj = nn.Linear(cfg.ffn_hidden, cfg.dim, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        if self.gated:
            gate, up = self.up_proj(x).chunk(2, dim=-1)
            return self.down_proj(self.act(gate) * up)
        return self.down_proj(self.act(self.up_proj(x)))


class Block(nn.Module):
    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.attn_norm = Norm(cfg)
        self.attn = Attention(cfg)
        self.ffn_norm = Norm(cfg)
        self.ffn = FeedForward(cfg)

    def forward(
        self,
        x: Tensor,
        cos: Tensor,
        sin: Tensor,
        cache: KVCache | None = None,
        slot: int = 0,
        mask: Tensor | None = None,
    ) -> Tensor:
        h = x + self.attn(self.attn_norm(x), cos, sin, cache, slot, mask)
        return h + self.ffn(self.ffn_norm(h))


class MobileLLM(nn.Module):
    """Decoder-only LM over `cfg.n_layers` stored blocks applied in `block_schedule` order."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.config = cfg
        self.block_schedule: tuple[int, ...] = cfg.block_schedule
        self.embed_tokens = nn.Embedding(cfg.vocab_size, cfg.dim)
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.n_layers))
        self.norm = Norm(cfg)
        # tied: no output matrix exists, logits = h·Eᵀ (the paper's embedding sharing)
        self.lm_head = None if cfg.share_embeddings else nn.Linear(cfg.dim, cfg.vocab_size, bias=False)
        self.checkpointed: tuple[bool, ...] = checkpointed_applications(cfg.n_applied_layers, "none", 1)
        self.apply(self._init_weights)

    def set_activation_checkpointing(self, mode: str, every: int = 2) -> None:
        """Recompute block applications in backward instead of keeping their activations: `none`, `full`
        (every application) or `every_k` (every `every`-th). Per application, so a shared block applied twice
        is checkpointed at each use; the block is called as a module, so FSDP2's hooks unshard it again."""
        self.checkpointed = checkpointed_applications(self.config.n_applied_layers, mode, every)

    def _init_weights(self, module: nn.Module) -> None:
        if isinstance(module, (nn.Linear, nn.Embedding)):
            nn.init.normal_(module.weight, mean=0.0, std=self.config.init_std)

    @property
    def output_weight(self) -> Tensor:
        return self.embed_tokens.weight if self.lm_head is None else self.lm_head.weight

    def forward(self, tokens: Tensor, cache: KVCache | None = None, project: bool = True) -> Tensor:
        """Logits [B, T, vocab] for tokens [B, T]; with a cache, tokens continue the cached prefix.

        `project=False` returns the final-normed hidden states instead, for a loss that projects them itself
        (the chunked loss): through `__call__`, so torch.compile and FSDP2's hooks still apply.
        """
        hidden = self.hidden_states(tokens, cache)
        return F.linear(hidden, self.output_weight) if project else hidden

    def hidden_states(
        self,
        tokens: Tensor,
        cache: KVCache | None = None,
        positions: Tensor | None = None,
        mask: Tensor | None = None,
    ) -> Tensor:
        """The final-normed hidden states [B, T, dim]: the forward pass before the vocabulary projection
        (scorers project only the positions they need). Packed sequences (several continuations of one
        context in a row) give each token's `positions` [B, T] and the boolean attention `mask`
        [B, 1, T, T] (True = may attend) instead of the causal default; no cache then."""
        start = 0 if cache is None else cache.length
        if cache is not None and start + tokens.shape[1] > cache.capacity:
            raise ValueError(
                f"KV cache holds {cache.capacity} tokens; {start} cached + {tokens.shape[1]} new exceed it"
            )
        if positions is None:
            positions = torch.arange(start, start + tokens.shape[1], device=tokens.device)
        cos, sin = rope_tables(self.config.head_dim, self.config.rope_theta, positions)
        if positions.dim() == 2:  # per row: broadcast over the heads of [B, H, T, head_dim]
            cos, sin = cos.unsqueeze(1), sin.unsqueeze(1)
        x = self.embed_tokens(tokens)
        recompute = cache is None and torch.is_grad_enabled()
        for slot, index in enumerate(self.block_schedule):
            if recompute and self.checkpointed[slot]:
                x = checkpoint(self.blocks[index], x, cos, sin, None, slot, mask, use_reentrant=False)
            else:
                x = self.blocks[index](x, cos, sin, cache, slot, mask)
        if cache is not None:
            cache.length += tokens.shape[1]
        return self.norm(x)

    @torch.no_grad()
    def generate(
        self,
        prompt: Tensor,
        max_new_tokens: int,
        temperature: float = 0.0,
        top_k: int | None = None,
        use_cache: bool = True,
        generator: torch.Generator | None = None,
    ) -> Tensor:
        """Continue `prompt` [B, T] by `max_new_tokens`; temperature 0 is greedy.

        With `use_cache=False` every step recomputes the whole sequence (the reference the cache must match).
        """
        tokens = prompt
        cache = None
        if use_cache:
            param = self.embed_tokens.weight
            cache = KVCache.empty(
                self.config, prompt.shape[0], prompt.shape[1] + max_new_tokens, param.device, param.dtype
            )
        step_input = tokens
        for _ in range(max_new_tokens):
            logits = self(step_input if use_cache else tokens, cache)[:, -1].float()
            next_token = sample_next_token(logits, temperature, top_k, generator)
            tokens = torch.cat((tokens, next_token), dim=1)
            step_input = next_token
        return tokens


def sample_next_token(
    logits: Tensor,
    temperature: float = 0.0,
    top_k: int | None = None,
    generator: torch.Generator | None = None,
) -> Tensor:
    """Next token ids [B, 1] from last-position logits [B, vocab]: greedy at temperature 0, else sampled."""
    if temperature == 0.0:
        return logits.argmax(dim=-1, keepdim=True)
    logits = logits / temperature
    if top_k is not None:
        kth = torch.topk(logits, min(top_k, logits.shape[-1])).values[:, -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    return torch.multinomial(logits.softmax(dim=-1), 1, generator=generator)
