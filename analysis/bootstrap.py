"""95% intervals for accuracies: bootstrap over per-sample outputs, t-intervals across seeds.

Intervals are returned as (low, high) fractions. Three sources, best first:
- `seeds`: ≥ 2 seeds of a variant → Student-t interval of the per-seed values (training noise);
- `bootstrap`: one seed with per-sample outputs → percentile bootstrap over documents (evaluation noise);
  the 8-task average is bootstrapped jointly (each task's documents resampled in the same replicate);
- `stderr`: only the record's stderr → normal interval (for the average: √Σσ² / n_tasks).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
from scipy import stats

CONFIDENCE = 0.95
N_RESAMPLES = 2000
_CHUNK = 256  # replicates drawn at once: bounds memory at _CHUNK × n_docs indices

Interval = tuple[float, float]
NAN_INTERVAL: Interval = (math.nan, math.nan)


def read_samples(path: Path, metric: str) -> np.ndarray | None:
    """Per-document values of `metric` from an lm-eval-style jsonl (`{"doc_id", "acc", "acc_norm"}`)."""
    if not path.is_file():
        return None
    values = [json.loads(line)[metric] for line in path.read_text().splitlines() if line.strip()]
    return np.asarray(values, dtype=np.float64) if values else None


def bootstrap_mean_replicates(values: np.ndarray, n_resamples: int, rng: np.random.Generator) -> np.ndarray:
    """Means of `n_resamples` resamples (with replacement, same size) of `values`."""
    means = np.empty(n_resamples)
    for start in range(0, n_resamples, _CHUNK):
        stop = min(start + _CHUNK, n_resamples)
        idx = rng.integers(0, len(values), size=(stop - start, len(values)))
        means[start:stop] = values[idx].mean(axis=1)
    return means


def percentile_interval(replicates: np.ndarray, confidence: float = CONFIDENCE) -> Interval:
    """The central `confidence` range of bootstrap replicates."""
    tail = (1 - confidence) / 2 * 100
    low, high = np.percentile(replicates, [tail, 100 - tail])
    return float(low), float(high)


def bootstrap_intervals(
    samples: dict[str, np.ndarray],
    n_resamples: int = N_RESAMPLES,
    seed: int = 0,
    confidence: float = CONFIDENCE,
) -> tuple[dict[str, Interval], Interval]:
    """Per-task percentile intervals and the interval of their mean, from one set of replicates.

    Tasks are resampled independently (their documents are unrelated); replicate r of the average is
    the mean over tasks of each task's replicate r, so the average's interval accounts for all tasks.
    """
    rng = np.random.default_rng(seed)
    replicates = {task: bootstrap_mean_replicates(v, n_resamples, rng) for task, v in samples.items()}
    per_task = {task: percentile_interval(r, confidence) for task, r in replicates.items()}
    average = np.mean(np.stack(list(replicates.values())), axis=0)
    return per_task, percentile_interval(average, confidence)


def seed_interval(values: np.ndarray, confidence: float = CONFIDENCE) -> Interval:
    """Student-t interval of the mean of per-seed values (needs ≥ 2 finite values), clipped to [0, 1]
    (with two or three seeds the t quantile is large enough to leave the range of an accuracy)."""
    values = np.asarray(values, dtype=np.float64)
    values = values[np.isfinite(values)]
    if len(values) < 2:
        return NAN_INTERVAL
    half = stats.t.ppf((1 + confidence) / 2, len(values) - 1) * values.std(ddof=1) / math.sqrt(len(values))
    mean = values.mean()
    return max(float(mean - half), 0.0), min(float(mean + half), 1.0)


def normal_interval(mean: float, stderr: float, confidence: float = CONFIDENCE) -> Interval:
    """mean ± z·stderr; NaN when the stderr is missing."""
    if not (math.isfinite(mean) and math.isfinite(stderr)):
        return NAN_INTERVAL
    half = stats.norm.ppf((1 + confidence) / 2) * stderr
    return mean - half, mean + half


def intervals_overlap(a: Interval, b: Interval) -> bool:
    """Whether two intervals share a point (False when either is unknown)."""
    if not all(math.isfinite(x) for x in (*a, *b)):
        return False
    return a[0] <= b[1] and b[0] <= a[1]
