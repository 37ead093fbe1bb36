from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from ablations.model.axes import ATTENTION_LAYOUTS, FFN_KINDS, NORMS, SHARING_SCHEMES
from ablations.model.config import ModelConfig

# tests never reach the hub (no internet here; local data only)
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

REPO = Path(__file__).resolve().parents[1]
# the full evaluation splits (tests that need them skip without them): ../shared/benchmarks beside the repo,
# or the folder $ABLATIONS_BENCHMARKS names (a worktree elsewhere)
BENCHMARKS = Path(os.environ.get("ABLATIONS_BENCHMARKS") or REPO.parent / "shared" / "benchmarks")


def small_config(**overrides: object) -> ModelConfig:
    """A few-thousand-parameter member of the family; overrides pick the axis under test."""
    values: dict[str, object] = dict(
        dim=64, n_layers=3, n_heads=4, n_kv_heads=2, vocab_size=101, multiple_of=32, max_seq_len=64
    )
    values.update(overrides)
    return ModelConfig(**values)  # type: ignore[arg-type]


def registry_axes() -> dict[str, dict[str, object]]:
    """One small config per registered value of every axis (`ablations.model.axes`), plus combinations.

    Every test parametrised over AXES (counts, FLOPs, causality, KV cache, HF round trip) therefore covers a
    new registry entry without new test code.
    """
    axes: dict[str, dict[str, object]] = {f"ffn={name}": dict(ffn_type=name) for name in FFN_KINDS}
    axes |= {f"norm={name}": dict(norm_type=name) for name in NORMS}
    for name in SHARING_SCHEMES:
        for repeats in (2, 3) if name != "none" else (1,):
            axes[f"sharing={name}x{repeats}"] = dict(sharing_scheme=name, sharing_repeats=repeats)
    for name, layout in ATTENTION_LAYOUTS.items():  # small_config has 4 query heads
        axes[f"attention={name}"] = dict(n_kv_heads=next(kv for kv in (4, 2, 1) if layout.matches(4, kv)))
    axes |= {
        "explicit_head_dim": dict(head_dim=24),
        "untied": dict(share_embeddings=False),
        "gelu_hidden_100": dict(ffn_type="gelu", ffn_hidden=100),
        "reverse_x3_untied_mqa": dict(
            sharing_scheme="reverse", sharing_repeats=3, share_embeddings=False, n_kv_heads=1
        ),
    }
    return axes


AXES: dict[str, dict[str, object]] = registry_axes()


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


@pytest.fixture(autouse=True, scope="session")
def _shared_data_cache(tmp_path_factory: pytest.TempPathFactory) -> None:
    """One tokenizer/shard cache per test session (built once, reused by every training test)."""
    os.environ.setdefault("ABLATIONS_CACHE", str(tmp_path_factory.mktemp("ablations_cache")))


@pytest.fixture(scope="session")
def eval_tokenizer():
    """A real byte-level BPE tokenizer (PreTrainedTokenizerFast, BOS-prepending) for the evaluation tests."""
    from tests.eval_fixtures import make_tokenizer

    return make_tokenizer()


@pytest.fixture(scope="session")
def eval_model(eval_tokenizer):
    """A tiny random SwiGLU MobileLLM over `eval_tokenizer`'s vocabulary."""
    from tests.eval_fixtures import make_model

    return make_model(len(eval_tokenizer))
