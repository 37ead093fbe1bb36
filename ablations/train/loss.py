"""The next-token loss, with or without the full [tokens × vocab] fp32 logits.

The plain path projects every position onto the vocabulary, upcasts the logits to fp32 and takes the
cross-entropy: at vocab 32000 that is 187.5 KiB per token (bf16 logits + fp32 copy) at its peak, and the
fp32 log-softmax is kept for backward. The chunked path runs the projection and the cross-entropy over
`chunk_tokens` positions at a time, each chunk under `torch.utils.checkpoint`: its logits are freed once its
loss is summed, and backward recomputes them chunk by chunk, so at most one chunk's logits exist at once.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor
from torch.utils.checkpoint import checkpoint

from ablations.model.architecture import MobileLLM


def _summed_cross_entropy(hidden: Tensor, weight: Tensor, targets: Tensor) -> Tensor:
    return F.cross_entropy(F.linear(hidden, weight).float(), targets, reduction="sum")


def chunked_linear_cross_entropy(
    hidden: Tensor, weight: Tensor, targets: Tensor, chunk_tokens: int
) -> Tensor:
    """Mean cross-entropy of `hidden` [N, dim] · `weight`ᵀ [dim, vocab] against `targets` [N], in fp32,
    computed `chunk_tokens` rows at a time (each chunk's logits recomputed in backward, never all at once)."""
    total = hidden.new_zeros((), dtype=hidden.dtype).float()
    for start in range(0, hidden.shape[0], chunk_tokens):
        rows = slice(start, start + chunk_tokens)
        total = total + checkpoint(
            _summed_cross_entropy, hidden[rows], weight, targets[rows], use_reentrant=False
        )
    return total / hidden.shape[0]


def lm_loss(model: MobileLLM, batch: Tensor, chunk_tokens: int | None = None) -> Tensor:
    """Mean next-token cross-entropy of windows [B, T+1] (inputs = [:, :-1], targets = [:, 1:]), in fp32.

    `chunk_tokens`: None → the plain path (all logits at once); N → `chunked_linear_cross_entropy`.
    """
    targets = batch[:, 1:].flatten()
    if chunk_tokens is None:
        return F.cross_entropy(model(batch[:, :-1]).flatten(0, 1).float(), targets)
    hidden = model(batch[:, :-1], project=False).flatten(0, 1)
    return chunked_linear_cross_entropy(hidden, model.output_weight, targets, chunk_tokens)
