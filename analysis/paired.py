"""Paired contrasts between variants: a point estimate and a 95% interval from a bootstrap over seeds and
over documents, both paired.

A contrast is Σ_k w_k · metric(variant k): `{A: +1, B: -1}` is A − B; `{1×: +1, 2×: -2, 3×: +1}` is how much
the second step gains less than the first. Seed s of every variant trained on the same data order, and every
variant is scored on the same documents, so each replicate draws seeds (with replacement) from the seeds all
variants share and documents (with replacement) once for all variants and seeds: what the variants have in
common cancels, and the interval is that of the difference, not of each level.

- bits per byte: per seed, Σ_d Σ_k w_k · nats[k, s, d] / (ln 2 · Σ_d bytes[d]) over the drawn documents;
- zero-shot average: per seed, the mean over tasks of the mean over the task's drawn rows of Σ_k w_k · value.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from analysis.bootstrap import CONFIDENCE, percentile_interval

N_REPLICATES = 4000


@dataclass(frozen=True)
class Contrast:
    """A contrast's estimate (mean over seeds) and its interval, in the metric's unit."""

    value: float
    low: float
    high: float
    seeds: int
    per_seed: tuple[float, ...]
    """The contrast of each shared seed on every document (its spread is the training noise)."""


def _seed_means(per_seed: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Replicates [R, S] of a per-seed statistic → the mean over S seeds drawn with replacement, per replicate."""
    picks = rng.integers(0, per_seed.shape[1], size=per_seed.shape)
    return np.take_along_axis(per_seed, picks, axis=1).mean(axis=1)


def _document_weights(n_docs: int, replicates: int, rng: np.random.Generator) -> np.ndarray:
    """How often each document is drawn in each replicate [R, D] (a resample of D documents)."""
    draws = rng.integers(0, n_docs, size=(replicates, n_docs))
    return np.stack([np.bincount(row, minlength=n_docs) for row in draws]).astype(np.float64)


def bpb_contrast(
    nats: np.ndarray,
    text_bytes: np.ndarray,
    weights: np.ndarray,
    replicates: int = N_REPLICATES,
    seed: int = 0,
) -> Contrast:
    """`nats` [K variants, S seeds, D documents], `text_bytes` [D], `weights` [K] → the contrast in bits per byte."""
    rng = np.random.default_rng(seed)
    combined = np.tensordot(weights, nats, axes=1)  # [S, D]
    per_seed = combined.sum(axis=1) / (math.log(2) * text_bytes.sum())
    doc_weights = _document_weights(len(text_bytes), replicates, rng)
    replicated = (doc_weights @ combined.T) / (math.log(2) * (doc_weights @ text_bytes))[:, None]  # [R, S]
    return _contrast(per_seed, _seed_means(replicated, rng))


def accuracy_contrast(
    tasks: list[np.ndarray], weights: np.ndarray, replicates: int = N_REPLICATES, seed: int = 0
) -> Contrast:
    """`tasks`: per task, values [K variants, S seeds, rows] → the contrast of the task average (same unit)."""
    rng = np.random.default_rng(seed)
    per_task, replicated = [], []
    for values in tasks:
        combined = np.tensordot(weights, values, axes=1)  # [S, rows]
        per_task.append(combined.mean(axis=1))
        replicated.append(
            _document_weights(combined.shape[1], replicates, rng) @ combined.T / combined.shape[1]
        )
    return _contrast(np.mean(per_task, axis=0), _seed_means(np.mean(replicated, axis=0), rng))


def _contrast(per_seed: np.ndarray, replicates: np.ndarray) -> Contrast:
    low, high = percentile_interval(replicates, CONFIDENCE)
    return Contrast(float(per_seed.mean()), low, high, len(per_seed), tuple(float(x) for x in per_seed))
