"""Epoch accounting: how many passes over the training split a token budget makes, checked before training
(a budget far above the corpus would otherwise silently repeat it)."""

from __future__ import annotations

import logging
from typing import Any

from ablations.data.config import DataConfig
from ablations.records.errors import ConfigError

log = logging.getLogger(__name__)


def train_window_tokens(manifest: dict[str, Any], seq_len: int) -> int:
    """Target tokens of one epoch: the windows of `seq_len` the train shards hold, times `seq_len`."""
    shards = manifest["splits"]["train"]["shards"]
    return sum(max(0, (s["tokens"] - 1) // seq_len) for s in shards) * seq_len


def check_epochs(tokens: int, seq_len: int, manifest: dict[str, Any], data_cfg: DataConfig) -> float:
    """Epochs the run's `tokens` make over the train split; a warning above one, a ConfigError above
    `data.max_epochs`."""
    per_epoch = train_window_tokens(manifest, seq_len)
    epochs = tokens / per_epoch if per_epoch else float("inf")
    where = f"{per_epoch:,} train tokens in windows of {seq_len} (shards {manifest.get('key')})"
    if data_cfg.max_epochs is not None and epochs > data_cfg.max_epochs:
        raise ConfigError(
            "data config",
            [
                f"the budget of {tokens:,} tokens is {epochs:.2f} epochs of {where}, above "
                f"data.max_epochs={data_cfg.max_epochs}: use a larger corpus (or no data.max_tokens cap), "
                "a smaller train.tokens, or raise data.max_epochs"
            ],
        )
    if epochs > 1:
        log.warning(
            "the budget of %s tokens repeats the corpus: %.2f epochs of %s", f"{tokens:,}", epochs, where
        )
    return epochs
