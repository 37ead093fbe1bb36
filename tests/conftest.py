from __future__ import annotations

import os

import pytest

# tests never reach the hub (no internet here; local data only)
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")


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
