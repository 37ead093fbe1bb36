"""Typed configs of the data pipeline: where the text comes from (`DataConfig`) and how it becomes tokens
(`TokenizerConfig`). Hydra nodes `conf/data/*.yaml` and `conf/tokenizer/*.yaml` map onto them one to one.

No torch import: building and validating these is instant.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ablations.records.errors import ConfigError

DATA_SOURCES: tuple[str, ...] = ("embedded", "local_files", "hf_dataset", "pretokenized")
TOKENIZER_KINDS: tuple[str, ...] = ("trained", "hf", "sentencepiece")


@dataclass
class DataConfig:
    """Where the training text comes from, and how it is split, tokenised into shards and cached."""

    source: str = "embedded"
    """`embedded` (stdlib text of the running interpreter, no download), `local_files`, `hf_dataset`,
    or `pretokenized` (a shard directory written by this pipeline)."""
    paths: list[str] = field(default_factory=list)
    """local_files: files, globs (`data/**/*.jsonl`) or directories of `.txt`, `.jsonl`, `.json`, `.parquet`."""
    text_field: str = "text"
    """The field holding the document text in `.jsonl`/`.json`/`.parquet` records and HF datasets."""
    hf_path: str | None = None
    """hf_dataset: a hub name (`HuggingFaceFW/fineweb-edu`) or a local `Dataset.save_to_disk` directory."""
    hf_name: str | None = None
    """hf_dataset: the dataset's config name (`sample-10BT`), if it has several."""
    hf_split: str = "train"
    """hf_dataset: which split to read (validation is always held out from it by document)."""
    hf_revision: str | None = None
    """hf_dataset: a hub revision (commit or tag) to pin; part of the cache key."""
    streaming: bool = False
    """hf_dataset: stream records from the hub instead of downloading the whole split first."""
    shards_dir: str | None = None
    """pretokenized: the directory holding `manifest.json` and the `.bin` shards."""
    max_tokens: int | None = None
    """Stop reading the corpus once this many tokens are written (a cap for huge datasets); null: all."""
    embedded_max_bytes: int = 4_000_000
    """embedded: size of the stdlib corpus in bytes of text (a few MB trains a tiny model in minutes)."""
    val_fraction: float = 0.01
    """Fraction of documents held out for validation, chosen by a hash of each document's text."""
    num_proc: int = 2
    """Tokeniser processes (1: in-process)."""
    shard_tokens: int = 1 << 27
    """Tokens per shard file (the last one of each split is shorter); 2^27 = 256 MiB of uint16."""
    block_documents: int = 1024
    """Documents per tokenising task: the unit of the token cap and of the parts (`part=i/N`) a preparation
    is split into (block b goes to part b mod N)."""
    max_epochs: float | None = None
    """Refuse a token budget above this many passes over the training split (null: no limit; a warning is
    logged above one epoch in any case)."""
    cache_dir: str = ".cache"
    """Where token shards (`<cache_dir>/shards/<key>/`) are written and reused."""
    verify_hashes: bool = True
    """Check each shard's blake2b (and that its ids fit the vocabulary) once: shards unchanged since their
    last verification (`verified.json`) are not read again; sizes are always checked."""
    progress: bool = True
    """Show a rich progress bar (docs, tokens, tokens/s) while tokenising."""
    loader_workers: int | None = None
    """DataLoader worker processes for training batches (pinned memory, persistent workers); None → 4 on
    GPU, 0 on CPU (where the main process keeps up with a tiny model)."""

    def __post_init__(self) -> None:
        problems: list[str] = []
        if self.source not in DATA_SOURCES:
            problems.append(f"source={self.source!r} is not one of {DATA_SOURCES}")
        if self.source == "local_files" and not self.paths:
            problems.append("source=local_files needs `paths` (files, globs or directories)")
        if self.source == "hf_dataset" and not self.hf_path:
            problems.append("source=hf_dataset needs `hf_path` (a hub name or a save_to_disk directory)")
        if self.source == "pretokenized" and not self.shards_dir:
            problems.append("source=pretokenized needs `shards_dir` (a directory with manifest.json)")
        if not 0.0 <= self.val_fraction < 1.0:
            problems.append(f"val_fraction={self.val_fraction} must be in [0, 1)")
        if self.num_proc < 1:
            problems.append(f"num_proc={self.num_proc} must be >= 1")
        if self.loader_workers is not None and self.loader_workers < 0:
            problems.append(f"loader_workers={self.loader_workers} must be >= 0 or null")
        if self.shard_tokens < 1:
            problems.append(f"shard_tokens={self.shard_tokens} must be >= 1")
        if self.max_tokens is not None and self.max_tokens < 1:
            problems.append(f"max_tokens={self.max_tokens} must be >= 1 (or null for no cap)")
        if self.block_documents < 1:
            problems.append(f"block_documents={self.block_documents} must be >= 1")
        if self.max_epochs is not None and self.max_epochs <= 0:
            problems.append(f"max_epochs={self.max_epochs} must be > 0 (or null for no limit)")
        if self.embedded_max_bytes < 1:
            problems.append(f"embedded_max_bytes={self.embedded_max_bytes} must be >= 1")
        if problems:
            raise ConfigError("data config", problems)
        self.paths = [str(p) for p in self.paths]


@dataclass
class TokenizerConfig:
    """Which tokenizer turns text into ids, and how documents are framed with special tokens."""

    kind: str = "trained"
    """`trained` (BPE with byte fallback trained on the corpus, cached by corpus hash), `hf` (any
    `AutoTokenizer` hub name or local dir), or `sentencepiece` (a `.model` file)."""
    name_or_path: str | None = None
    """hf: hub name or local directory; sentencepiece: path of the `.model` file."""
    revision: str | None = None
    """hf: hub revision to pin."""
    vocab_size: int = 4096
    """trained: total vocabulary, including 3 special tokens and 256 byte-fallback tokens."""
    min_frequency: int = 2
    """trained: a merge must occur at least this often in the training text."""
    train_max_bytes: int = 200_000_000
    """trained: bytes of (training-split) text the tokenizer is trained on; more is not read."""
    add_bos: bool = True
    """Put BOS before every document (LLaMA's boundary policy); the same at train and eval time."""
    add_eos: bool = False
    """Put EOS after every document."""
    cache_dir: str = ".cache"
    """trained: tokenizers are saved under `<cache_dir>/tokenizers/<corpus hash>-v<vocab>/`."""

    def __post_init__(self) -> None:
        problems: list[str] = []
        if self.kind not in TOKENIZER_KINDS:
            problems.append(f"kind={self.kind!r} is not one of {TOKENIZER_KINDS}")
        if self.kind in ("hf", "sentencepiece") and not self.name_or_path:
            problems.append(f"kind={self.kind} needs `name_or_path`")
        if self.kind == "trained" and self.vocab_size < 259 + 16:
            problems.append(f"vocab_size={self.vocab_size} must be >= 275 (3 specials + 256 bytes + merges)")
        if self.min_frequency < 1:
            problems.append(f"min_frequency={self.min_frequency} must be >= 1")
        if not (self.add_bos or self.add_eos):
            problems.append("at least one of add_bos / add_eos must be true, or documents run together")
        if problems:
            raise ConfigError("tokenizer config", problems)
