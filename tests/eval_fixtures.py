"""A real small tokenizer and a tiny random MobileLLM for the evaluation tests."""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
from transformers import PreTrainedTokenizerFast

from ablations.model.architecture import MobileLLM
from ablations.model.config import ModelConfig
from tests.conftest import BENCHMARKS

# evaluation tests never reach the hub (no internet here; local data only)
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

SPECIALS = ["<unk>", "<s>", "</s>"]
FALLBACK_TEXT = [
    "Question: Which gas do plants take in?\nAnswer: carbon dioxide",
    "The quick brown fox jumps over the lazy dog. It is 12 o'clock; 3.5% — ünïcode!",
]


def training_text() -> list[str]:
    """A few hundred benchmark lines (or a fallback) to train the toy tokenizer on."""
    lines = list(FALLBACK_TEXT)
    for task in ("arc_easy/test", "piqa/validation", "hellaswag/validation", "boolq/validation"):
        path = BENCHMARKS / f"{task}.jsonl"
        if path.is_file():
            with path.open() as rows:
                lines += [next(rows) for _ in range(150)]
    return lines


def make_tokenizer(vocab_size: int = 600) -> PreTrainedTokenizerFast:
    """Byte-level BPE (every byte representable) that prepends <s>, like LLaMA's tokenizer."""
    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIALS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(training_text(), trainer=trainer)
    bos = tok.token_to_id("<s>")
    tok.post_processor = processors.Sequence(
        [
            processors.ByteLevel(trim_offsets=False),
            processors.TemplateProcessing(single="<s> $A", pair="<s> $A $B", special_tokens=[("<s>", bos)]),
        ]
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token="<s>", eos_token="</s>", unk_token="<unk>", pad_token="</s>"
    )


def make_model(vocab_size: int, seed: int = 0, **overrides: object) -> MobileLLM:
    """A tiny random SwiGLU MobileLLM (exportable to LLaMA), with larger init so choices differ clearly."""
    fields = dict(
        vocab_size=vocab_size, dim=64, n_layers=2, n_heads=4, n_kv_heads=2, multiple_of=32, max_seq_len=512
    )
    fields.update(overrides)
    torch.manual_seed(seed)
    cfg = ModelConfig(**fields, init_std=0.1)  # type: ignore[arg-type]
    return MobileLLM(cfg).eval().requires_grad_(False)


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path
