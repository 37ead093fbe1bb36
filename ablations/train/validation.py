"""The final validation: the trained model's loss and bits per byte over the whole held-out split, measured
once after training (not the periodic estimate over `train.val_batches`), with its sampling errors and the
per-document sums that a paired bootstrap resamples.

The held-out split is the set of documents whose text hash falls under `data.val_fraction`
(`ablations.data.corpus.is_validation`): the same documents for every variant, tokenizer and seed. Its
token stream (the val shards, documents one after another, each framed by BOS and/or EOS) is cut into
windows of `seq_len + 1` tokens with stride `seq_len`, the last one partial, so every token after the first
is a target exactly once, and each target is charged to the document it belongs to. A document's bytes are
those of its decoded ids (its UTF-8 text for a lossless tokenizer), so bits per byte compare models whose
tokenizers differ.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F

from ablations.model.architecture import MobileLLM
from ablations.records.errors import DataError

LOGIT_CHUNK_TOKENS = 4096  # positions projected onto the vocabulary at a time (the fp32 logits never whole)


@dataclass
class Validation:
    """One model's validation over the held-out split. Losses in nats per target token; bpb in bits per
    byte of text; each `_se` is a standard error of the figure beside it."""

    loss: float
    loss_se: float
    """Over target tokens, taken as independent: the error of `loss` from the number of tokens measured."""
    bpb: float
    bpb_se: float
    """Over documents (a ratio estimator of summed bits over summed bytes): the error of `bpb` from which
    documents the split holds. Larger than the token error: documents differ more than tokens do."""
    tokens: int
    bytes: int
    documents: int
    per_document: dict[str, list[float]] = field(repr=False)
    """`nats`, `tokens`, `bytes` of each document, in split order (the same order in every run of a corpus)."""

    def summary(self) -> dict[str, Any]:
        """The scalar fields (the record's `train.validation`)."""
        return {k: v for k, v in self.__dict__.items() if k != "per_document"}


def split_tokens(shards: list[Any], max_tokens: int | None) -> np.ndarray:
    """The split's token stream (its shards concatenated), cut at `max_tokens` when given."""
    parts, total = [], 0
    for shard in shards:
        take = len(shard) if max_tokens is None else min(len(shard), max_tokens - total)
        if take <= 0:
            break
        parts.append(np.asarray(shard[0:take], dtype=np.int64))
        total += take
    if total < 2:
        raise DataError("the validation split holds fewer than 2 tokens: nothing to measure")
    return np.concatenate(parts)


def document_ids(stream: np.ndarray, bos_id: int | None, eos_id: int | None) -> np.ndarray:
    """The document index of every position: documents start at a BOS (when documents carry one), else
    after an EOS. Positions before the first BOS belong to document 0."""
    if bos_id is not None:
        return np.maximum(np.cumsum(stream == bos_id) - 1, 0)
    if eos_id is None:
        raise DataError("documents carry neither BOS nor EOS: the split cannot be cut into documents")
    ends = np.cumsum(stream == eos_id)
    return np.concatenate([[0], ends[:-1]])  # the EOS itself closes its document


def document_bytes(stream: np.ndarray, doc_ids: np.ndarray, tokenizer: Any) -> np.ndarray:
    """UTF-8 bytes of each document's text, decoded from its ids without the framing tokens."""
    bounds = np.flatnonzero(np.diff(doc_ids)) + 1
    spans = np.split(stream, bounds)
    return np.array(
        [len(tokenizer.decode(span.tolist(), skip_special_tokens=True).encode("utf-8")) for span in spans],
        dtype=np.int64,
    )


@torch.no_grad()
def token_nats(model: MobileLLM, windows: torch.Tensor) -> torch.Tensor:
    """Next-token negative log-likelihood (nats, fp32) of windows [B, T+1], per target [B, T]."""
    hidden = model(windows[:, :-1], project=False)
    flat, targets = hidden.flatten(0, 1), windows[:, 1:].flatten()
    out = torch.empty(targets.shape, dtype=torch.float32, device=hidden.device)
    for start in range(0, flat.shape[0], LOGIT_CHUNK_TOKENS):
        rows = slice(start, start + LOGIT_CHUNK_TOKENS)
        logits = F.linear(flat[rows], model.output_weight).float()
        out[rows] = F.cross_entropy(logits, targets[rows], reduction="none")
    return out.view(windows.shape[0], -1)


def measure_validation(
    model: MobileLLM,
    stream: np.ndarray,
    tokenizer: Any,
    seq_len: int,
    batch_size: int,
    bos_id: int | None,
    eos_id: int | None,
) -> Validation:
    """Loss and bpb of `model` over `stream` (see the module docstring). Under torch.distributed each rank
    scores every world_size-th window and the sums are reduced, so every rank returns the whole result."""
    doc_ids = document_ids(stream, bos_id, eos_id)
    n_docs = int(doc_ids[-1]) + 1
    device = next(model.parameters()).device
    rank, world = (dist.get_rank(), dist.get_world_size()) if dist.is_initialized() else (0, 1)
    starts = list(range(0, len(stream) - 1, seq_len))[rank::world]
    nats = torch.zeros(n_docs, dtype=torch.float64, device=device)
    counts = torch.zeros(n_docs, dtype=torch.float64, device=device)
    squares = torch.zeros((), dtype=torch.float64, device=device)
    was_training = model.training
    model.eval()
    with torch.autocast(device.type, torch.bfloat16, enabled=device.type == "cuda"):
        for windows, positions in window_batches(stream, starts, seq_len, batch_size):
            values = token_nats(model, windows.to(device)).double().flatten()
            owners = torch.from_numpy(doc_ids[positions].ravel()).to(device)
            nats.index_add_(0, owners, values)
            counts.index_add_(0, owners, torch.ones_like(values))
            squares += (values**2).sum()
    model.train(was_training)
    if world > 1:
        for total in (nats, counts, squares):
            dist.all_reduce(total)
    return summarize(
        nats.cpu().numpy(), counts.cpu().numpy(), document_bytes(stream, doc_ids, tokenizer), float(squares)
    )


def window_batches(
    stream: np.ndarray, starts: list[int], seq_len: int, batch_size: int
) -> Iterator[tuple[torch.Tensor, np.ndarray]]:
    """Batches of the windows beginning at `starts` ([B, seq_len + 1] tokens) with the stream positions of
    their targets; the split's last window, when shorter, comes alone."""
    full = [s for s in starts if s + seq_len < len(stream)]
    for first in range(0, len(full), batch_size):
        group = full[first : first + batch_size]
        windows = np.stack([stream[s : s + seq_len + 1] for s in group])
        yield torch.from_numpy(windows), np.stack([np.arange(s + 1, s + seq_len + 1) for s in group])
    for s in starts[len(full) :]:
        yield torch.from_numpy(stream[s:][None]), np.arange(s + 1, len(stream))[None]


def summarize(nats: np.ndarray, tokens: np.ndarray, text_bytes: np.ndarray, squares: float) -> Validation:
    """The split's figures from per-document sums (nats, target tokens, bytes) and the sum of squared
    per-token nats."""
    n_tokens, n_bytes, total = float(tokens.sum()), float(text_bytes.sum()), float(nats.sum())
    if n_bytes <= 0:
        raise DataError("the validation split decodes to no text: bits per byte are undefined")
    loss = total / n_tokens
    token_var = max(squares / n_tokens - loss**2, 0.0)
    bpb = total / (math.log(2) * n_bytes)
    return Validation(
        loss=loss,
        loss_se=math.sqrt(token_var / n_tokens),
        bpb=bpb,
        bpb_se=ratio_se(nats, text_bytes) / math.log(2),
        tokens=int(n_tokens),
        bytes=int(n_bytes),
        documents=len(nats),
        per_document={
            "nats": nats.tolist(),
            "tokens": tokens.astype(int).tolist(),
            "bytes": text_bytes.tolist(),
        },
    )


def ratio_se(numerators: np.ndarray, denominators: np.ndarray) -> float:
    """Standard error of Σnumerators / Σdenominators over sampled units (the delta method: the spread of
    each unit's residual from the ratio); 0 for fewer than two units."""
    n = len(numerators)
    if n < 2:
        return 0.0
    ratio = numerators.sum() / denominators.sum()
    residuals = numerators - ratio * denominators
    return float(math.sqrt(n / (n - 1) * (residuals**2).sum()) / denominators.sum())
