"""The final validation (ablations/train/validation.py): loss and bits per byte over the whole held-out split,
pinned to a hand computation window by window, document by document; its standard errors pinned to their
textbook formulas."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from ablations.model.architecture import MobileLLM
from ablations.model.config import ModelConfig
from ablations.train.validation import document_ids, measure_validation, ratio_se, summarize

BOS, EOS = 1, 2


class ByteTokenizer:
    """Ids 3 + byte: a lossless tokenizer whose decoded text is known byte for byte."""

    def encode(self, text: str) -> list[int]:
        return [3 + b for b in text.encode("utf-8")]

    def decode(self, ids: list[int], skip_special_tokens: bool = True) -> str:
        return bytes(i - 3 for i in ids if i >= 3).decode("utf-8")


TEXTS = ["the cat sat", "é on the mat, twice", "z"]  # a 2-byte character; a one-byte document


def stream_of(texts: list[str], bos: bool, eos: bool) -> np.ndarray:
    tokenizer, ids = ByteTokenizer(), []
    for text in texts:
        ids += ([BOS] if bos else []) + tokenizer.encode(text) + ([EOS] if eos else [])
    return np.array(ids, dtype=np.int64)


@pytest.fixture(scope="module")
def model() -> MobileLLM:
    torch.manual_seed(0)
    cfg = ModelConfig(dim=32, n_layers=2, n_heads=2, vocab_size=3 + 256, multiple_of=16, max_seq_len=16)
    return MobileLLM(cfg).eval()


def by_hand(
    model: MobileLLM, stream: np.ndarray, seq_len: int, owner_of: list[int]
) -> dict[int, list[float]]:
    """Each document's target nats: windows [s, s + seq_len] for s = 0, seq_len, …, each scored on its own."""
    nats: dict[int, list[float]] = {}
    for start in range(0, len(stream) - 1, seq_len):
        window = torch.from_numpy(stream[start : start + seq_len + 1])[None]
        with torch.no_grad():
            logp = F.log_softmax(model(window[:, :-1]).float(), dim=-1)[0]
        for i, target in enumerate(window[0, 1:].tolist()):
            nats.setdefault(owner_of[start + 1 + i], []).append(-logp[i, target].item())
    return nats


@pytest.mark.parametrize(("bos", "eos"), [(True, False), (False, True), (True, True)])
def test_loss_and_bits_per_byte_equal_a_window_by_window_hand_computation(
    model: MobileLLM, bos: bool, eos: bool
) -> None:
    stream = stream_of(TEXTS, bos, eos)
    owner_of, doc = [], 0  # documents by hand: a BOS opens one, else an EOS closes one
    for i, token in enumerate(stream.tolist()):
        if bos and token == BOS and i > 0:
            doc += 1
        owner_of.append(doc)
        if not bos and token == EOS:
            doc += 1
    seq_len = 7  # the stream's length is no multiple of it: the last window is partial
    assert (len(stream) - 1) % seq_len != 0
    nats = by_hand(model, stream, seq_len, owner_of)

    result = measure_validation(
        model, stream, ByteTokenizer(), seq_len, 2, BOS if bos else None, EOS if eos else None
    )
    every = [x for doc_nats in nats.values() for x in doc_nats]
    assert result.tokens == len(stream) - 1 == len(every)  # every token after the first, once
    assert result.documents == len(TEXTS)
    assert result.bytes == sum(len(t.encode("utf-8")) for t in TEXTS)
    assert result.loss == pytest.approx(sum(every) / len(every), rel=1e-5)
    assert result.bpb == pytest.approx(sum(every) / math.log(2) / result.bytes, rel=1e-5)
    assert result.per_document["bytes"] == [len(t.encode("utf-8")) for t in TEXTS]
    assert result.per_document["tokens"] == [len(nats[d]) for d in range(len(TEXTS))]
    assert result.per_document["nats"] == pytest.approx([sum(nats[d]) for d in range(len(TEXTS))], rel=1e-5)
    token_sd = np.std(every)  # population sd of per-token nats
    assert result.loss_se == pytest.approx(token_sd / math.sqrt(len(every)), rel=1e-4)


def test_the_batch_size_changes_nothing(model: MobileLLM) -> None:
    stream = stream_of(TEXTS * 3, True, False)
    one, many = (measure_validation(model, stream, ByteTokenizer(), 5, b, BOS, None) for b in (1, 4))
    assert one.per_document["nats"] == pytest.approx(many.per_document["nats"], rel=1e-6)


def test_documents_are_cut_at_bos_or_after_eos() -> None:
    stream = np.array([BOS, 5, 6, BOS, 7, BOS])
    assert document_ids(stream, BOS, None).tolist() == [0, 0, 0, 1, 1, 2]
    stream = np.array([5, 6, EOS, 7, EOS, 8])
    assert document_ids(stream, None, EOS).tolist() == [0, 0, 0, 1, 1, 2]


def test_the_document_error_is_the_standard_error_of_a_ratio() -> None:
    # equal denominators: the ratio is a mean, its error the standard error of the mean (sd ddof=1 / √n)
    values = np.array([1.0, 2.0, 3.0, 6.0])
    assert ratio_se(values, np.ones(4)) == pytest.approx(values.std(ddof=1) / 2)
    # a document of twice the bytes and twice the bits leaves the ratio, and its error, unchanged
    assert ratio_se(np.array([2.0, 4.0]), np.array([1.0, 2.0])) == 0.0
    assert ratio_se(np.array([3.0]), np.array([1.0])) == 0.0


def test_summarize_gives_bits_per_byte_from_nats() -> None:
    result = summarize(
        np.array([math.log(2) * 8]), np.array([4]), np.array([2]), squares=4 * (2 * math.log(2)) ** 2
    )
    assert result.bpb == pytest.approx(4.0)  # 8 bits over 2 bytes
    assert result.loss == pytest.approx(2 * math.log(2)) and result.loss_se == pytest.approx(0.0, abs=1e-9)
