from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from ablations.model_config import ModelConfig

# tests never reach the hub (no internet here; local data only)
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

REPO = Path(__file__).resolve().parents[1]
BENCHMARKS = REPO.parent / "shared" / "benchmarks"


def small_config(**overrides: object) -> ModelConfig:
    """A few-thousand-parameter member of the family; overrides pick the axis under test."""
    values: dict[str, object] = dict(
        dim=64, n_layers=3, n_heads=4, n_kv_heads=2, vocab_size=101, multiple_of=32, max_seq_len=64
    )
    values.update(overrides)
    return ModelConfig(**values)  # type: ignore[arg-type]


# one config per axis of the paper (and combinations), reused by the model, budget and interop tests
AXES: dict[str, dict[str, object]] = {
    "mha": dict(n_kv_heads=4),
    "gqa": dict(),
    "mqa": dict(n_kv_heads=1),
    "explicit_head_dim": dict(head_dim=24),
    "relu": dict(ffn_type="relu"),
    "gelu": dict(ffn_type="gelu", ffn_hidden=100),
    "untied": dict(share_embeddings=False),
    "immediate_x2": dict(sharing_scheme="immediate", sharing_repeats=2),
    "repeat_all_over_x3": dict(sharing_scheme="repeat_all_over", sharing_repeats=3),
    "reverse_x2": dict(sharing_scheme="reverse", sharing_repeats=2),
    "reverse_x3_untied_mqa": dict(
        sharing_scheme="reverse", sharing_repeats=3, share_embeddings=False, n_kv_heads=1
    ),
}


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
