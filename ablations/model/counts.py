"""Closed-form parameter counts, FLOPs per token and the iso-parameter solver. No tensors are built.

Every number here is pinned by tests to the instantiated module (`sum(p.numel())`), to torch's FLOP
counter, and to the model card; `python -m ablations.budget` prints them for any composed config.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from ablations.model.axes import FFN_KINDS, NORMS
from ablations.model.config import ModelConfig
from ablations.records.errors import ConfigError


@dataclass(frozen=True)
class ParamCounts:
    """Parameter counts of one config. "Stored" counts each shared block once; "applied" once per use."""

    embedding: int
    """Input token embedding, vocab · dim."""
    output: int
    """Separate output matrix, vocab · dim; 0 with share_embeddings."""
    attention_per_block: int
    ffn_per_block: int
    norms_per_block: int
    final_norm: int
    n_blocks: int
    n_applied_blocks: int

    @property
    def per_block(self) -> int:
        return self.attention_per_block + self.ffn_per_block + self.norms_per_block

    @property
    def total(self) -> int:
        """Every stored parameter: what `sum(p.numel() for p in model.parameters())` reports."""
        return self.embedding + self.output + self.n_blocks * self.per_block + self.final_norm

    @property
    def non_embedding(self) -> int:
        """Total minus the vocabulary matrices (input embedding and, when untied, the output matrix)."""
        return self.total - self.embedding - self.output

    @property
    def applied(self) -> int:
        """Parameters a token passes through, counting a shared block at each application."""
        return self.total + (self.n_applied_blocks - self.n_blocks) * self.per_block

    @property
    def matmul_per_token(self) -> int:
        """Weights in matrix multiplies per token: applied blocks' linears plus the logit projection
        (norm weights scale, they do not multiply matrices)."""
        linear_per_block = self.attention_per_block + self.ffn_per_block
        return self.n_applied_blocks * linear_per_block + self.embedding  # logits = h·Wᵀ, vocab·dim

    def as_dict(self) -> dict[str, int]:
        names = ("embedding", "output", "non_embedding", "total", "applied", "per_block", "matmul_per_token")
        return {name: getattr(self, name) for name in names}


def count_params(cfg: ModelConfig) -> ParamCounts:
    """Exact parameter counts of `cfg` (no linear biases; norm weights, and biases where the norm has
    them, included)."""
    attention = cfg.dim * cfg.q_dim + 2 * cfg.dim * cfg.kv_dim + cfg.q_dim * cfg.dim  # q, k, v, o
    norm = NORMS[cfg.norm_type].params_per_channel * cfg.dim
    return ParamCounts(
        embedding=cfg.vocab_size * cfg.dim,
        output=0 if cfg.share_embeddings else cfg.vocab_size * cfg.dim,
        attention_per_block=attention,
        ffn_per_block=FFN_KINDS[cfg.ffn_type].n_matrices * cfg.dim * cfg.ffn_hidden,  # type: ignore[operator]
        norms_per_block=2 * norm,
        final_norm=norm,
        n_blocks=cfg.n_layers,
        n_applied_blocks=cfg.n_applied_layers,
    )


def flops_per_token(cfg: ModelConfig, seq_len: int | None = None) -> int:
    """Training FLOPs (forward + backward) per token: 6·N_matmul + 12·L_applied·q_dim·seq.

    N_matmul counts every executed weight multiply (shared blocks once per application, plus the logit
    projection); the second term is attention's QKᵀ and PV over the full (unmasked) seq × seq square, as
    in PaLM's MFU formula. q_dim = n_heads·head_dim, which is dim unless head_dim is set explicitly.
    This is the one formula MFU is computed from.
    """
    seq = cfg.max_seq_len if seq_len is None else seq_len
    return 6 * count_params(cfg).matmul_per_token + 12 * cfg.n_applied_layers * cfg.q_dim * seq


def solve_iso_params(
    budget: int,
    template: ModelConfig,
    vary: Literal["dim", "ffn_hidden"] = "dim",
    max_dim: int = 16384,
) -> ModelConfig:
    """The config closest to `budget` total parameters, varying one axis of `template`.

    - `vary="dim"`: width in steps that keep head_dim and the heads/kv-heads ratio of the template
      (dim = n_heads·head_dim, n_heads a multiple of the ratio); the FFN hidden size follows the
      template's rule (its ffn_multiplier/multiple_of) — depth-vs-width sweeps.
    - `vary="ffn_hidden"`: FFN hidden size in multiples of `multiple_of`, everything else fixed —
      e.g. a ReLU FFN matched to a SwiGLU model's count.
    Ties go to the smaller model.
    """
    if budget < 1:
        raise ConfigError("iso-parameter search", [f"budget must be positive (got {budget})"])
    if vary == "dim":
        ratio = template.n_heads // template.n_kv_heads
        step = template.head_dim * ratio

        def candidate(i: int) -> ModelConfig:
            n_heads = i * ratio
            return dataclasses.replace(
                template,
                dim=i * step,
                n_heads=n_heads,
                n_kv_heads=i,
                head_dim=template.head_dim,
                ffn_hidden=None,
            )

        limit = max_dim // step
    elif vary == "ffn_hidden":

        def candidate(i: int) -> ModelConfig:
            return dataclasses.replace(template, ffn_hidden=i * template.multiple_of)

        limit = 1 << 20
    else:
        raise ConfigError("iso-parameter search", [f"vary must be 'dim' or 'ffn_hidden' (got {vary!r})"])
    return candidate(_closest_step(lambda i: count_params(candidate(i)).total, budget, limit))


def _closest_step(total_at: Callable[[int], int], budget: int, limit: int) -> int:
    """Smallest-|total - budget| step i in [1, limit] of a count increasing in i (binary search)."""
    lo, hi = 1, limit
    while lo < hi:  # first i with total(i) >= budget
        mid = (lo + hi) // 2
        if total_at(mid) >= budget:
            hi = mid
        else:
            lo = mid + 1
    if lo > 1 and budget - total_at(lo - 1) <= total_at(lo) - budget:
        return lo - 1
    return lo


def summary_rows(cfg: ModelConfig, seq_len: int | None = None) -> list[tuple[str, str]]:
    """(label, value) rows describing a config's shape and budget, for tables and logs."""
    counts = count_params(cfg)
    seq = cfg.max_seq_len if seq_len is None else seq_len
    return [
        ("blocks stored / applied", f"{cfg.n_layers} / {cfg.n_applied_layers}"),
        ("sharing", f"{cfg.sharing_scheme} x{cfg.sharing_repeats}"),
        (
            "dim / heads / kv heads / head dim",
            f"{cfg.dim} / {cfg.n_heads} / {cfg.n_kv_heads} / {cfg.head_dim}",
        ),
        ("ffn", f"{cfg.ffn_type}, hidden {cfg.ffn_hidden}"),
        ("norm", cfg.norm_type),
        ("vocab / tied embeddings", f"{cfg.vocab_size} / {cfg.share_embeddings}"),
        ("params: total (stored)", f"{counts.total:,}"),
        ("params: embedding", f"{counts.embedding:,}"),
        ("params: output matrix", f"{counts.output:,}"),
        ("params: non-embedding", f"{counts.non_embedding:,}"),
        ("params: applied (shared blocks per use)", f"{counts.applied:,}"),
        (f"train FLOPs / token (seq {seq})", f"{flops_per_token(cfg, seq):,}"),
    ]
