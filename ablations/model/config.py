"""`ModelConfig`: one typed, validated point of the architecture family.

Torch-free: the budget CLI, sweeps and config validation use it without building a model. Axis values
(`ffn_type`, `norm_type`, `sharing_scheme`) are names in the registries of `ablations.model.axes`.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

from ablations.model.axes import FFN_KINDS, NORMS, SHARING_SCHEMES, attention_violations, block_schedule
from ablations.records.errors import ConfigError


def derived_ffn_hidden(dim: int, ffn_type: str, multiplier: float | None, multiple_of: int) -> int:
    """FFN hidden size from the LLaMA rule: multiple_of · ceil(multiplier · dim / multiple_of).

    With the default multiplier 8/3 and multiple_of 256 this gives 576 → 1536, 1280 → 3584, 1600 → 4352.
    """
    m = FFN_KINDS[ffn_type].default_multiplier if multiplier is None else multiplier
    # round() first so 8/3·576 = 1536.0000000002 does not round up to the next multiple
    return multiple_of * math.ceil(round(m * dim / multiple_of, 9))


@dataclass
class ModelConfig:
    """One point of the architecture family: a pre-norm decoder with the paper's axes.

    Optional fields (`n_kv_heads`, `head_dim`, `ffn_hidden`) are resolved in `__post_init__`, so a
    constructed config always holds the concrete shape it describes.
    """

    dim: int = 576
    """Width of the residual stream (the paper's "embedding dimension")."""
    n_layers: int = 30
    """Number of distinct (stored) transformer blocks; layer sharing applies them more than once."""
    n_heads: int = 9
    """Number of query heads."""
    n_kv_heads: int | None = None
    """Number of key/value heads (GQA); None → n_heads (MHA); 1 → MQA. Must divide n_heads."""
    head_dim: int | None = None
    """Per-head width; None → dim // n_heads (dim must then be divisible by n_heads). Even, for RoPE."""
    vocab_size: int = 32000
    """Rows of the token embedding (and of the output matrix when untied)."""
    ffn_type: str = "swiglu"
    """A registered FFN kind (`ablations.model.axes.FFN_KINDS`): relu, gelu, swiglu, geglu."""
    ffn_hidden: int | None = None
    """FFN hidden size; None → derived from dim with `ffn_multiplier` and `multiple_of`."""
    ffn_multiplier: float | None = None
    """Hidden = multiplier·dim before rounding; None → the FFN kind's default (8/3 gated, 4 ungated)."""
    multiple_of: int = 256
    """The derived FFN hidden size is rounded up to a multiple of this (LLaMA uses 256)."""
    norm_type: str = "rmsnorm"
    """A registered norm (`ablations.model.axes.NORMS`): rmsnorm (the paper's), layernorm."""
    share_embeddings: bool = True
    """Tie input and output embeddings: no output matrix exists, logits = h·Eᵀ."""
    sharing_scheme: str = "none"
    """A registered sharing scheme (`ablations.model.axes.SHARING_SCHEMES`): none, immediate,
    repeat_all_over, reverse."""
    sharing_repeats: int = 1
    """How many times each stored block is applied (k ≥ 1); ignored when sharing_scheme is `none`."""
    norm_eps: float = 1e-5
    """Epsilon of the norms."""
    rope_theta: float = 10000.0
    """RoPE base frequency; rotation covers the full head_dim."""
    max_seq_len: int = 2048
    """Training context length; also the default KV-cache size and the FLOP counter's sequence length."""
    init_std: float = 0.02
    """Standard deviation of the N(0, std) init of every linear and embedding weight."""

    def __post_init__(self) -> None:
        problems = self.violations()
        if problems:
            raise ConfigError("model config", problems)
        if self.n_kv_heads is None:
            self.n_kv_heads = self.n_heads
        if self.head_dim is None:
            self.head_dim = self.dim // self.n_heads
        if self.ffn_hidden is None:
            self.ffn_hidden = derived_ffn_hidden(
                self.dim, self.ffn_type, self.ffn_multiplier, self.multiple_of
            )
        if self.sharing_scheme == "none":
            self.sharing_repeats = 1

    def violations(self) -> list[str]:
        """Every rule the config breaks, each naming the rule and the values."""
        v: list[str] = []
        for name in ("dim", "n_layers", "n_heads", "vocab_size", "multiple_of", "max_seq_len"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 1:
                v.append(f"{name} must be a positive integer (got {getattr(self, name)!r})")
        for name in ("n_kv_heads", "head_dim", "ffn_hidden"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, int) or value < 1):
                v.append(f"{name} must be a positive integer or null (got {value!r})")
        for name in ("norm_eps", "rope_theta", "init_std"):
            if not (getattr(self, name) > 0 and math.isfinite(getattr(self, name))):
                v.append(f"{name} must be > 0 and finite (got {getattr(self, name)!r})")
        if self.ffn_multiplier is not None and not (
            self.ffn_multiplier > 0 and math.isfinite(self.ffn_multiplier)
        ):
            v.append(f"ffn_multiplier must be > 0 and finite, or null (got {self.ffn_multiplier!r})")
        for name, registry in (
            ("ffn_type", FFN_KINDS),
            ("norm_type", NORMS),
            ("sharing_scheme", SHARING_SCHEMES),
        ):
            if getattr(self, name) not in registry:
                v.append(f"{name} must be one of {tuple(registry)} (got {getattr(self, name)!r})")
        if not isinstance(self.sharing_repeats, int) or self.sharing_repeats < 1:
            v.append(f"sharing_repeats must be an integer >= 1 (got {self.sharing_repeats!r})")
        shape = (self.dim, self.n_heads, self.n_kv_heads or 1, self.head_dim or 2)
        if all(isinstance(x, int) and x >= 1 for x in shape):  # the shape rules need valid numbers
            v += attention_violations(self.dim, self.n_heads, self.n_kv_heads, self.head_dim)
        return v

    @property
    def block_schedule(self) -> tuple[int, ...]:
        """Stored-block index of each block application, in order."""
        return block_schedule(self.n_layers, self.sharing_scheme, self.sharing_repeats)

    @property
    def n_applied_layers(self) -> int:
        """Number of block applications per forward pass (n_layers · repeats)."""
        return len(self.block_schedule)

    @property
    def q_dim(self) -> int:
        """Width of the concatenated query heads (n_heads · head_dim); equals dim by default."""
        return self.n_heads * self.head_dim  # type: ignore[operator]

    @property
    def kv_dim(self) -> int:
        """Width of the concatenated key (or value) heads."""
        return self.n_kv_heads * self.head_dim  # type: ignore[operator]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> ModelConfig:
        """Build from a mapping (a result record, a checkpoint's JSON), rejecting unknown keys by name."""
        known = set(cls.__dataclass_fields__)
        unknown = sorted(set(values) - known)
        if unknown:
            raise ConfigError("model config", [f"unknown field(s) {unknown}; valid fields: {sorted(known)}"])
        return cls(**values)
