"""Errors the platform raises for bad input or a stopped run, so callers can tell them from bugs."""

from __future__ import annotations


class ConfigError(ValueError):
    """A configuration cannot form a valid job; raised before any data or tensor is built."""

    def __init__(self, what: str, violations: list[str]) -> None:
        self.what = what
        self.violations = violations
        lines = "\n".join(f"  - {v}" for v in violations)
        super().__init__(f"invalid {what}:\n{lines}")


class DataError(ValueError):
    """Input data (corpus, tokenizer, token shards) is missing or inconsistent.

    The message names the file or dataset and what is wrong; nothing already written is deleted.
    """


class DivergenceError(RuntimeError):
    """The loss or gradient became NaN/Inf; the job stops before the optimizer applies it."""


class TrialPruned(RuntimeError):
    """An Optuna search trial was stopped by the study's pruner (the job's status is `pruned`)."""


class RunDirLocked(RuntimeError):
    """Another process is running a job in the same run dir (the message names its pid and host)."""
