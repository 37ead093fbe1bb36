"""What the prepared splits give a run, checked before training: how many passes over the training split
the token budget makes (a budget far above the corpus would otherwise silently repeat it), and whether the
validation split holds a window at all (else the run would record no val_loss)."""

from __future__ import annotations

import logging
from typing import Any

from ablations.data.config import DataConfig
from ablations.data.corpus import describe_corpus
from ablations.records.errors import ConfigError, DataError

log = logging.getLogger(__name__)


def split_windows(manifest: dict[str, Any], split: str, seq_len: int) -> int:
    """Windows of `seq_len` (+1 target) tokens a split's shards hold (a window never crosses a shard)."""
    return sum(max(0, (s["tokens"] - 1) // seq_len) for s in manifest["splits"][split]["shards"])


def train_window_tokens(manifest: dict[str, Any], seq_len: int) -> int:
    """Target tokens of one epoch: the windows of `seq_len` the train shards hold, times `seq_len`."""
    return split_windows(manifest, "train", seq_len) * seq_len


def check_validation_split(manifest: dict[str, Any], seq_len: int, data_cfg: DataConfig) -> None:
    """With `data.val_fraction` > 0 the validation split must hold a window of `seq_len`: else every
    validation (and the record's val_loss) would be empty. A DataError names the corpus and the fixes."""
    if data_cfg.val_fraction <= 0 or split_windows(manifest, "val", seq_len):
        return
    val = manifest["splits"]["val"]
    raise DataError(
        f"{describe_corpus(data_cfg)}: the validation split (data.val_fraction={data_cfg.val_fraction}) holds "
        f"{val.get('documents', 0)} document(s), {val['tokens']} tokens: no window of {seq_len} tokens, so the run "
        "would record no val_loss. Use a corpus of more documents (a .txt file is one document, a .jsonl line "
        "one), raise data.val_fraction, or set data.val_fraction=0 to train without validation"
    )


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
