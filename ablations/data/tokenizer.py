"""Tokenizers: train one on the corpus (LLaMA-style BPE with byte fallback, cached by corpus hash), or load
any Hugging Face tokenizer (hub name or local dir) or SentencePiece `.model`.

Every source comes back as a `transformers.PreTrainedTokenizerBase` with `bos_token_id`, `eos_token_id`,
`encode`, `decode` and `save_pretrained`, which is what the model checkpoint stores and the lm-eval adapter
reloads with `AutoTokenizer.from_pretrained(dir)`.

The trained tokenizer follows LLaMA's conventions: ids 0/1/2 are `<unk>`, `<s>` (BOS), `</s>` (EOS), ids
3..258 are the byte-fallback tokens `<0x00>`..`<0xFF>` (any character outside the vocabulary is spelled in
UTF-8 bytes, so no text is lost), spaces become `▁` with one prepended to the text, and runs of spaces stay
together (indentation is one or two tokens, not one per space). `encode` adds BOS like LLaMA's.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
from pathlib import Path
from typing import Any

from filelock import FileLock
from tokenizers import (
    AddedToken,
    Regex,
    Tokenizer,
    decoders,
    models,
    normalizers,
    pre_tokenizers,
    processors,
    trainers,
)

from ablations.data.config import DataConfig, TokenizerConfig
from ablations.data.corpus import corpus_fingerprint, describe_corpus, iter_training_text
from ablations.records.atomic import temp_sibling
from ablations.records.errors import DataError

log = logging.getLogger(__name__)

SPECIAL_TOKENS: tuple[str, str, str] = ("<unk>", "<s>", "</s>")
BYTE_TOKENS: tuple[str, ...] = tuple(f"<0x{i:02X}>" for i in range(256))
# One pre-token per word with its leading `▁`s: "▁▁▁▁def" stays one piece, so BPE can learn indentation.
PRE_TOKEN_PATTERN = "▁*[^▁]+|▁+"
TRAINED_FORMAT_VERSION = 1  # bump when the recipe below changes, so old caches are not reused


def load_tokenizer(tok_cfg: TokenizerConfig, data: DataConfig | None = None) -> Any:
    """The configured tokenizer.

    `trained` tokenizers are trained on `data`'s corpus on first use and loaded from the cache after;
    `hf` and `sentencepiece` load from `name_or_path`.
    """
    if tok_cfg.kind == "trained":
        if data is None:
            raise DataError("tokenizer.kind=trained needs the data config (the corpus to train on)")
        return trained_tokenizer(tok_cfg, data)
    if tok_cfg.kind == "hf":
        return _load_hf_tokenizer(tok_cfg)
    return _load_sentencepiece(tok_cfg)


def check_vocab_fits(tokenizer: Any, model_vocab_size: int) -> None:
    """Raise if the tokenizer can emit an id the model's embedding has no row for."""
    n = tokenizer_vocab_size(tokenizer)
    if n > model_vocab_size:
        name = getattr(tokenizer, "name_or_path", "") or type(tokenizer).__name__
        raise DataError(
            f"tokenizer {name!r} has {n} tokens but the model's vocab_size is {model_vocab_size}: ids >= "
            f"{model_vocab_size} would index past the embedding. Set model.vocab_size>={n} or use a smaller "
            "tokenizer (tokenizer.vocab_size for a trained one)."
        )


def tokenizer_vocab_size(tokenizer: Any) -> int:
    """Number of ids the tokenizer can produce (base vocabulary plus added tokens)."""
    return max(len(tokenizer), int(getattr(tokenizer, "vocab_size", 0) or 0))


def tokenizer_hash(tokenizer: Any) -> str:
    """A hash of the tokenizer's full definition (vocab, merges, normalisation, special tokens)."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    # a slow tokenizer has no serialised definition: its vocabulary stands for it
    text = backend.to_str() if backend is not None else json.dumps(sorted(tokenizer.get_vocab().items()))
    return hashlib.blake2b(text.encode(), digest_size=16).hexdigest()


def tokenizer_info(tokenizer: Any, cfg: TokenizerConfig) -> dict[str, Any]:
    """What the manifest and the result record say about a tokenizer."""
    return {
        "kind": cfg.kind,
        "name_or_path": cfg.name_or_path or str(getattr(tokenizer, "name_or_path", "")),
        "class": type(tokenizer).__name__,
        "vocab_size": tokenizer_vocab_size(tokenizer),
        "hash": tokenizer_hash(tokenizer),
        "bos_token_id": tokenizer.bos_token_id,
        "eos_token_id": tokenizer.eos_token_id,
        "add_bos": cfg.add_bos,
        "add_eos": cfg.add_eos,
    }


# ------------------------------------------------------------------------------------------- trained


def trained_tokenizer_dir(cfg: TokenizerConfig, data: DataConfig) -> Path:
    """Cache directory of the tokenizer trained on `data`'s corpus with `cfg`'s settings."""
    corpus = corpus_fingerprint(data)
    recipe = [TRAINED_FORMAT_VERSION, corpus["hash"], cfg.vocab_size, cfg.min_frequency, cfg.train_max_bytes]
    recipe += [cfg.add_bos, cfg.add_eos, data.val_fraction]
    key = hashlib.blake2b(json.dumps(recipe).encode(), digest_size=8).hexdigest()
    return Path(cfg.cache_dir).expanduser() / "tokenizers" / f"bpe{cfg.vocab_size}-{corpus['source']}-{key}"


def trained_tokenizer(cfg: TokenizerConfig, data: DataConfig) -> Any:
    """Load the cached tokenizer for this corpus and recipe, training (and caching) it first if needed."""
    from transformers import PreTrainedTokenizerFast  # heavy (~2 s): only when a tokenizer is built

    out = trained_tokenizer_dir(cfg, data)
    out.parent.mkdir(parents=True, exist_ok=True)
    # one process trains; the others (array parts, ranks, concurrent jobs) wait for it and load its result
    with FileLock(out.with_name(f"{out.name}.lock")):
        if not (out / "tokenizer.json").is_file():
            log.info("training a %d-token BPE tokenizer on the corpus into %s", cfg.vocab_size, out)
            backend = train_bpe(iter_training_text(data, cfg.train_max_bytes), cfg, describe_corpus(data))
            tmp = temp_sibling(out)
            wrap_backend(backend, cfg).save_pretrained(str(tmp))
            os.replace(tmp, out)  # atomic: a killed trainer leaves no half-written tokenizer
    return PreTrainedTokenizerFast.from_pretrained(str(out))


def train_bpe(texts: Any, cfg: TokenizerConfig, corpus: str = "the corpus") -> Any:
    """A LLaMA-style BPE `tokenizers.Tokenizer` with byte fallback, trained on `texts` to `cfg.vocab_size`
    (`corpus` names where they come from, in the error for none)."""
    n_fixed = len(SPECIAL_TOKENS) + len(BYTE_TOKENS)
    normalizer = normalizers.Sequence([normalizers.Prepend("▁"), normalizers.Replace(" ", "▁")])
    pre_tokenizer = pre_tokenizers.Split(Regex(PRE_TOKEN_PATTERN), behavior="isolated")
    learner = Tokenizer(models.BPE())
    learner.normalizer, learner.pre_tokenizer = normalizer, pre_tokenizer
    trainer = trainers.BpeTrainer(
        vocab_size=cfg.vocab_size - n_fixed,
        min_frequency=cfg.min_frequency,
        limit_alphabet=256,  # rarer characters fall back to bytes
        special_tokens=[],
        show_progress=False,
    )
    learner.train_from_iterator(texts, trainer)
    learned = json.loads(learner.to_str())["model"]
    if not learned["vocab"]:
        raise DataError(
            f"empty corpus: {corpus} has no training text to train a tokenizer on (every document is empty "
            "or held out for validation)"
        )
    # LLaMA's layout: specials, then bytes, then the learned pieces in the order they were learned
    vocab = {tok: i for i, tok in enumerate(SPECIAL_TOKENS + BYTE_TOKENS)}
    for piece, _ in sorted(learned["vocab"].items(), key=lambda kv: kv[1]):
        vocab.setdefault(piece, len(vocab))
    merges = [tuple(m) for m in learned["merges"]]
    tokenizer = Tokenizer(models.BPE(vocab, merges, unk_token="<unk>", byte_fallback=True, fuse_unk=True))
    tokenizer.normalizer, tokenizer.pre_tokenizer = normalizer, pre_tokenizer
    tokenizer.decoder = decoders.Sequence(
        [decoders.Replace("▁", " "), decoders.ByteFallback(), decoders.Fuse(), decoders.Strip(" ", 1, 0)]
    )
    tokenizer.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in SPECIAL_TOKENS])
    _set_post_processor(tokenizer, cfg.add_bos, cfg.add_eos)
    return tokenizer


def _set_post_processor(tokenizer: Any, add_bos: bool, add_eos: bool) -> None:
    """`encode(text)` frames text as the shards frame documents: the same boundary at train and eval."""
    bos, eos = SPECIAL_TOKENS[1], SPECIAL_TOKENS[2]
    single = " ".join([bos] * add_bos + ["$A"] + [eos] * add_eos)
    pair = " ".join([single, *([bos] * add_bos), "$B:1", *([eos] * add_eos)])
    tokenizer.post_processor = processors.TemplateProcessing(
        single=single, pair=pair, special_tokens=[(bos, 1), (eos, 2)]
    )


def wrap_backend(backend: Any, cfg: TokenizerConfig) -> Any:
    """A `PreTrainedTokenizerFast` around a trained `tokenizers.Tokenizer`."""
    from transformers import PreTrainedTokenizerFast  # heavy (~2 s): only when a tokenizer is built

    return PreTrainedTokenizerFast(
        tokenizer_object=backend,
        unk_token=SPECIAL_TOKENS[0],
        bos_token=SPECIAL_TOKENS[1],
        eos_token=SPECIAL_TOKENS[2],
        model_max_length=1 << 30,
        clean_up_tokenization_spaces=False,
    )


# ------------------------------------------------------------------------------------------- loaded


def _load_hf_tokenizer(cfg: TokenizerConfig) -> Any:
    from transformers import AutoTokenizer  # heavy (~2 s): only when a tokenizer is loaded

    try:
        return AutoTokenizer.from_pretrained(cfg.name_or_path, revision=cfg.revision)
    except Exception as e:  # hub unreachable, gated repo, missing files, …
        raise DataError(
            f"cannot load tokenizer {cfg.name_or_path!r}: {type(e).__name__}: {e}\n"
            "If the hub is unreachable (or the repo is gated), download the tokenizer files where it is "
            "reachable and set tokenizer.name_or_path to that local directory."
        ) from e


def _load_sentencepiece(cfg: TokenizerConfig) -> Any:
    """A SentencePiece BPE `.model` (LLaMA's kind) as a LLaMA tokenizer, converted to the fast backend.

    transformers converts from a directory holding `tokenizer.model`, so the file is copied into a cache
    directory named by its hash first.
    """
    from transformers import LlamaTokenizer  # heavy (~2 s): only when a tokenizer is loaded

    path = Path(str(cfg.name_or_path)).expanduser()
    if not path.is_file():
        raise DataError(f"{path}: SentencePiece model not found (tokenizer.name_or_path)")
    digest = hashlib.blake2b(path.read_bytes(), digest_size=8).hexdigest()
    model_dir = Path(cfg.cache_dir).expanduser() / "sentencepiece" / digest
    if not (model_dir / "tokenizer.model").is_file():
        model_dir.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, model_dir / "tokenizer.model")
    try:
        tokenizer = LlamaTokenizer.from_pretrained(
            str(model_dir), add_bos_token=cfg.add_bos, add_eos_token=cfg.add_eos, legacy=True
        )
    except Exception as e:
        raise DataError(f"{path}: not a readable SentencePiece model: {type(e).__name__}: {e}") from e
    if len(tokenizer) <= len(SPECIAL_TOKENS):
        raise DataError(f"{path}: SentencePiece model converted to an empty vocabulary")
    return tokenizer
