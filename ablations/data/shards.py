"""Token shards: a corpus tokenised once into flat memory-mappable files plus a JSON manifest.

    <cache_dir>/shards/<key>/manifest.json       tokenizer, source, hashes, token and document counts
    <cache_dir>/shards/<key>/train_000000.bin    raw little-endian uint16 (vocab <= 65536) or uint32 ids
    <cache_dir>/shards/<key>/val_000000.bin      the held-out documents, same layout
    <cache_dir>/shards/<key>/tokenizer/          the tokenizer (save_pretrained), for data=pretokenized

`key` hashes everything the tokens depend on (corpus fingerprint, tokenizer hash, boundary policy, split,
cap, shard size), so the same inputs reuse the shards and changed inputs build new ones beside them. Each
document is framed as the tokenizer config says (BOS before it, as LLaMA; optionally EOS after) and
documents are concatenated in corpus order; a document may continue into the next shard file.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import multiprocessing
import os
import shutil
import time
from collections import OrderedDict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from tokenizers import Tokenizer

from ablations.data.config import DataConfig, TokenizerConfig
from ablations.data.corpus import corpus_fingerprint, describe_corpus, is_validation, iter_documents
from ablations.data.tokenizer import tokenizer_info, tokenizer_vocab_size
from ablations.records.atomic import atomic_write_text, temp_sibling
from ablations.records.errors import DataError

MANIFEST = "manifest.json"
FORMAT = "ablations-token-shards"
FORMAT_VERSION = 1
SPLITS: tuple[str, str] = ("train", "val")
MAX_OPEN_SHARDS = 128  # memory maps (file descriptors) a split keeps open at once


def shard_dtype(vocab_size: int) -> np.dtype:
    """uint16 while every id fits in 16 bits (vocab <= 65536), else uint32."""
    return np.dtype(np.uint16 if vocab_size <= 1 << 16 else np.uint32)


@dataclass
class EncodedBatch:
    """The tokens of a batch of documents, per split, already framed with BOS/EOS."""

    tokens: dict[str, np.ndarray]
    documents: dict[str, int]


# --------------------------------------------------------------------------------------- tokenising

_worker: dict[str, Any] = {}


def _init_encoder(
    tokenizer_json: str, bos: int | None, eos: int | None, val_fraction: float, dtype: str
) -> None:
    backend = Tokenizer.from_str(tokenizer_json)
    backend.encode_special_tokens = True  # "<s>" inside a document is text, never a document boundary
    _worker.update(backend=backend, bos=bos, eos=eos, val_fraction=val_fraction, dtype=np.dtype(dtype))


def _encode(texts: list[str]) -> EncodedBatch:
    """Tokenise a batch of documents (in a worker or in-process) and frame each one."""
    w = _worker
    bos, eos = [w["bos"]] if w["bos"] is not None else [], [w["eos"]] if w["eos"] is not None else []
    flat: dict[str, list[int]] = {s: [] for s in SPLITS}
    documents = dict.fromkeys(SPLITS, 0)
    for text, enc in zip(texts, w["backend"].encode_batch_fast(texts, add_special_tokens=False), strict=True):
        split = "val" if is_validation(text, w["val_fraction"]) else "train"
        flat[split] += bos
        flat[split] += enc.ids
        flat[split] += eos
        documents[split] += 1
    return EncodedBatch({s: np.array(ids, dtype=w["dtype"]) for s, ids in flat.items()}, documents)


def document_blocks(texts: Iterable[str], block_documents: int) -> Iterator[list[str]]:
    """Consecutive blocks of `block_documents` documents (the last may be shorter): the unit of one worker
    task, of the token cap, and of the parts a preparation is split into."""
    block: list[str] = []
    for text in texts:
        block.append(text)
        if len(block) == block_documents:
            yield block
            block = []
    if block:
        yield block


def encode_corpus(
    blocks: Iterable[list[str]], tokenizer: Any, tok_cfg: TokenizerConfig, val_fraction: float, num_proc: int
) -> Iterator[EncodedBatch]:
    """Each block of documents tokenised, in order, by `num_proc` processes (the order never depends on it)."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None:
        raise DataError(f"tokenizer {type(tokenizer).__name__} has no fast (Rust) backend to tokenise with")
    bos = _special_id(tokenizer, "bos") if tok_cfg.add_bos else None
    eos = _special_id(tokenizer, "eos") if tok_cfg.add_eos else None
    dtype = shard_dtype(tokenizer_vocab_size(tokenizer)).str
    init_args = (backend.to_str(), bos, eos, val_fraction, dtype)
    if num_proc == 1:
        _init_encoder(*init_args)
        yield from map(_encode, blocks)
        return
    # fork is cheap; the workers use no threads of the parent. One Rust thread each: the processes are
    # the parallelism, and a forked Rayon pool would deadlock.
    context = multiprocessing.get_context(
        "fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn"
    )
    saved = os.environ.get("TOKENIZERS_PARALLELISM")
    os.environ["TOKENIZERS_PARALLELISM"] = "false"
    try:
        with context.Pool(num_proc, initializer=_init_encoder, initargs=init_args) as pool:
            yield from pool.imap(_encode, blocks, chunksize=1)
    finally:
        if saved is None:
            os.environ.pop("TOKENIZERS_PARALLELISM", None)
        else:
            os.environ["TOKENIZERS_PARALLELISM"] = saved


def _special_id(tokenizer: Any, which: str) -> int:
    token_id = getattr(tokenizer, f"{which}_token_id")
    if token_id is None:
        flag = "add_bos" if which == "bos" else "add_eos"
        raise DataError(
            f"tokenizer {getattr(tokenizer, 'name_or_path', '')!r} has no {which.upper()} token but "
            f"tokenizer.{flag}=true; set tokenizer.{flag}=false and frame documents with the other token"
        )
    return int(token_id)


# ------------------------------------------------------------------------------------------ writing


class _SplitWriter:
    """Appends tokens of one split to fixed-size shard files, hashing them as they are written."""

    def __init__(self, out: Path, split: str, shard_tokens: int) -> None:
        self.out, self.split, self.shard_tokens = out, split, shard_tokens
        self.shards: list[dict[str, Any]] = []
        self.documents = 0
        self._file: Any = None
        self._hash: Any = None
        self._count = 0

    def write(self, tokens: np.ndarray) -> None:
        while tokens.size:
            if self._file is None:
                name = f"{self.split}_{len(self.shards):06d}.bin"
                self._file, self._hash, self._count = (self.out / name).open("wb"), hashlib.blake2b(), 0
                self.shards.append({"file": name, "tokens": 0, "blake2b": None})
            take = tokens[: self.shard_tokens - self._count]
            data = take.tobytes()
            self._file.write(data)
            self._hash.update(data)
            self._count += take.size
            tokens = tokens[take.size :]
            if self._count == self.shard_tokens:
                self._close()

    def _close(self) -> None:
        if self._file is not None:
            self._file.close()
            self.shards[-1].update(tokens=self._count, blake2b=self._hash.hexdigest())
            self._file = None

    def summary(self) -> dict[str, Any]:
        self._close()
        return {
            "tokens": sum(s["tokens"] for s in self.shards),
            "documents": self.documents,
            "shards": self.shards,
        }


def write_shards(
    out: Path, batches: Iterable[EncodedBatch], shard_tokens: int, max_tokens: int | None, progress: bool
) -> dict[str, Any]:
    """Write tokenised batches into `out` as split shards; returns the manifest's `splits` entry."""
    writers = {s: _SplitWriter(out, s, shard_tokens) for s in SPLITS}
    total = 0
    with _progress(progress) as (bar, task):
        start = time.perf_counter()
        for batch in batches:
            for split in SPLITS:
                tokens = batch.tokens[split]
                if max_tokens is not None:
                    tokens = tokens[: max(0, max_tokens - total)]
                writers[split].write(tokens)
                writers[split].documents += batch.documents[split]
                total += tokens.size
            if bar is not None:
                docs = sum(w.documents for w in writers.values())
                rate = total / max(time.perf_counter() - start, 1e-9)
                bar.update(task, completed=total, docs=docs, rate=rate)
            if max_tokens is not None and total >= max_tokens:
                break
    return {s: w.summary() for s, w in writers.items()}


class _progress:
    """A rich progress bar showing documents, tokens and tokens/s (or nothing when disabled)."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self.bar: Any = None

    def __enter__(self) -> tuple[Any, Any]:
        if not self.enabled:
            return None, None
        self.bar = Progress(
            SpinnerColumn(),
            TextColumn("tokenising"),
            TextColumn("{task.fields[docs]:,} docs"),
            TextColumn("{task.completed:,.0f} tokens"),
            TextColumn("{task.fields[rate]:,.0f} tokens/s"),
            TimeElapsedColumn(),
            transient=False,
        )
        self.bar.__enter__()
        return self.bar, self.bar.add_task("tokenise", total=None, docs=0, rate=0.0)

    def __exit__(self, *exc: object) -> None:
        if self.bar is not None:
            self.bar.__exit__(*exc)


# ----------------------------------------------------------------------------------------- manifest


def shards_key(corpus: dict[str, Any], tok: dict[str, Any], data_cfg: DataConfig) -> str:
    """Hash of every input the shard contents depend on (not of num_proc: the output never depends on it)."""
    inputs = [FORMAT_VERSION, corpus["hash"], tok["hash"], tok["add_bos"], tok["add_eos"]]
    inputs += [data_cfg.val_fraction, data_cfg.max_tokens, data_cfg.shard_tokens, data_cfg.block_documents]
    return hashlib.blake2b(json.dumps(inputs).encode(), digest_size=10).hexdigest()


def shard_dir_of(data_cfg: DataConfig, info: dict[str, Any]) -> Path:
    """Where the shards of this corpus and tokenizer live (pretokenized: the configured directory)."""
    if data_cfg.source == "pretokenized":
        return Path(str(data_cfg.shards_dir)).expanduser()
    key = shards_key(corpus_fingerprint(data_cfg), info, data_cfg)
    return Path(data_cfg.cache_dir).expanduser() / "shards" / key


def prepare_shards(data_cfg: DataConfig, tok_cfg: TokenizerConfig, tokenizer: Any) -> Path:
    """The shard directory for this corpus and tokenizer: checked and reused if built, else built now."""
    info = tokenizer_info(tokenizer, tok_cfg)
    out = shard_dir_of(data_cfg, info)
    if data_cfg.source == "pretokenized":
        check_tokenizer_matches(read_manifest(out, data_cfg.verify_hashes), info, out)
        return out
    if (out / MANIFEST).is_file():
        read_manifest(out, data_cfg.verify_hashes)  # a damaged cache is reported, never silently rebuilt
        return out
    blocks = document_blocks(iter_documents(data_cfg), data_cfg.block_documents)
    batches = encode_corpus(blocks, tokenizer, tok_cfg, data_cfg.val_fraction, data_cfg.num_proc)
    return build_shards(out, batches, data_cfg, tokenizer, info)


def build_shards(
    out: Path, batches: Iterable[EncodedBatch], data_cfg: DataConfig, tokenizer: Any, info: dict[str, Any]
) -> Path:
    """Write the shards of these tokenised blocks and their manifest into a temporary directory, then
    publish it as `out` in one rename (readers see a complete directory or none)."""
    tmp = temp_sibling(out)
    tmp.mkdir(parents=True, exist_ok=True)
    try:
        splits = write_shards(tmp, batches, data_cfg.shard_tokens, data_cfg.max_tokens, data_cfg.progress)
        if splits["train"]["tokens"] == 0:
            raise DataError(f"empty corpus: {describe_corpus(data_cfg)} gave no training tokens")
        tokenizer.save_pretrained(str(tmp / "tokenizer"))
        manifest = {
            "format": FORMAT,
            "version": FORMAT_VERSION,
            "key": out.name,
            "dtype": shard_dtype(info["vocab_size"]).name,
            "tokenizer": info,
            "source": corpus_fingerprint(data_cfg),
            "val_fraction": data_cfg.val_fraction,
            "max_tokens": data_cfg.max_tokens,
            "shard_tokens": data_cfg.shard_tokens,
            "block_documents": data_cfg.block_documents,
            "splits": splits,
            "tokens": sum(s["tokens"] for s in splits.values()),
        }
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
        write_verified_stamp(tmp, manifest)  # hashed while written: verified by construction
        try:
            os.replace(tmp, out)
        except OSError:  # another process published the same key first: same inputs, same bytes
            shutil.rmtree(tmp)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)  # only our own unfinished directory
        raise
    return out


def read_manifest(shard_dir: Path, verify_hashes: bool) -> dict[str, Any]:
    """The manifest of `shard_dir`, after checking that every shard file has its listed size and, with
    `verify_hashes`, that each shard not verified before has its listed blake2b and only ids < vocab size."""
    path = Path(shard_dir) / MANIFEST
    if not path.is_file():
        raise DataError(f"{path}: shard manifest not found (is {shard_dir} a shard directory?)")
    try:
        manifest = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise DataError(f"{path}: not valid JSON ({e})") from e
    if manifest.get("format") != FORMAT or manifest.get("version") != FORMAT_VERSION:
        raise DataError(f"{path}: not a version-{FORMAT_VERSION} {FORMAT} manifest")
    itemsize = np.dtype(manifest["dtype"]).itemsize
    for shard in _all_shards(manifest):
        check_shard_name(shard.get("file"), path)
        file = Path(shard_dir) / shard["file"]
        if not file.is_file():
            raise DataError(f"{file}: shard listed in {path} is missing")
        size, expected = file.stat().st_size, shard["tokens"] * itemsize
        if size != expected:
            raise DataError(
                f"{file}: {size} bytes but the manifest says {shard['tokens']} {manifest['dtype']} tokens "
                f"= {expected} bytes (truncated or overwritten shard)"
            )
    if verify_hashes:
        verify_shards(Path(shard_dir), manifest)
    return manifest


def check_shard_name(name: Any, manifest_path: Path) -> None:
    """Refuse a shard entry naming a file outside the shard directory (an absolute path, a `..` step),
    before anything is opened: a manifest may only point at its own directory's files."""
    parts = Path(name).parts if isinstance(name, str) else ()
    if not parts or Path(name).is_absolute() or ".." in parts:
        raise DataError(
            f"{manifest_path}: shard entry file={name!r} is not a file name inside {manifest_path.parent} "
            "(absolute paths and `..` are refused)"
        )


def _all_shards(manifest: dict[str, Any]) -> list[dict[str, Any]]:
    return [shard for split in SPLITS for shard in manifest["splits"][split]["shards"]]


VERIFIED = "verified.json"


def verify_shards(shard_dir: Path, manifest: dict[str, Any]) -> None:
    """Hash and range-check every shard changed since its last verification (`verified.json` holds the
    size, mtime and inode each shard had when verified), so a shard directory is read in full once, not
    on every start of every rank. The stamp is refreshed where the directory is writable."""
    stamp = _read_verified_stamp(shard_dir)
    vocab = int(manifest["tokenizer"]["vocab_size"])
    dtype = np.dtype(manifest["dtype"])
    changed = [s for s in _all_shards(manifest) if stamp.get(s["file"]) != _stat_key(shard_dir / s["file"])]
    for shard in changed:
        file = shard_dir / shard["file"]
        digest, top = _hash_and_max(file, dtype)
        if digest != shard["blake2b"]:
            raise DataError(
                f"{file}: blake2b differs from the manifest's {shard['blake2b']} (corrupted shard)"
            )
        if top >= vocab:
            raise DataError(
                f"{file}: holds token id {top} but the tokenizer has {vocab} ids (a corrupted shard or "
                "the manifest of another tokenizer)"
            )
    if changed:
        with contextlib.suppress(OSError):  # a read-only shared directory: verified now, and again next time
            write_verified_stamp(shard_dir, manifest)


def write_verified_stamp(shard_dir: Path, manifest: dict[str, Any]) -> None:
    stamp = {s["file"]: _stat_key(shard_dir / s["file"]) for s in _all_shards(manifest)}
    atomic_write_text(shard_dir / VERIFIED, json.dumps(stamp) + "\n")


def _read_verified_stamp(shard_dir: Path) -> dict[str, Any]:
    try:
        return json.loads((shard_dir / VERIFIED).read_text())
    except (OSError, json.JSONDecodeError):
        return {}


def _stat_key(file: Path) -> list[int]:
    st = file.stat()
    return [st.st_size, st.st_mtime_ns, st.st_ino]


def _hash_and_max(file: Path, dtype: np.dtype) -> tuple[str, int]:
    """The file's blake2b and its largest token id, in one streaming pass."""
    h, top = hashlib.blake2b(), -1
    chunk = (1 << 24) // dtype.itemsize * dtype.itemsize
    with file.open("rb") as f:
        while data := f.read(chunk):
            h.update(data)
            top = max(top, int(np.frombuffer(data, dtype=dtype).max()))
    return h.hexdigest(), top


def check_tokenizer_matches(manifest: dict[str, Any], tok: dict[str, Any], shard_dir: Path) -> None:
    """Pretokenized shards must have been built with the configured tokenizer and boundary policy."""
    built = manifest["tokenizer"]
    for key in ("hash", "add_bos", "add_eos"):
        if built[key] != tok[key]:
            raise DataError(
                f"{Path(shard_dir) / MANIFEST}: tokenizer {key} mismatch: shards were built with "
                f"{built[key]!r} ({built['name_or_path']}), the config gives {tok[key]!r} ({tok['name_or_path']}). "
                f"Use the tokenizer saved with the shards: tokenizer=hf tokenizer.name_or_path={Path(shard_dir) / 'tokenizer'}"
            )


def open_split(
    shard_dir: Path, manifest: dict[str, Any], split: str, max_open: int = MAX_OPEN_SHARDS
) -> list[Shard]:
    """A split's shards (empty ones left out), memory-mapped on first use; at most `max_open` stay open."""
    dtype = np.dtype(manifest["dtype"])
    files = OpenShards(max_open)
    return [
        Shard(Path(shard_dir) / s["file"], dtype, s["tokens"], files)
        for s in manifest["splits"][split]["shards"]
        if s["tokens"] > 0
    ]


class OpenShards:
    """Read-only memory maps of shard files, opened on demand, the least recently used closed beyond
    `max_open` (each map holds a file descriptor: 2,000 shards must not need 2,000)."""

    def __init__(self, max_open: int) -> None:
        self.max_open = max_open
        self._maps: OrderedDict[Path, np.memmap] = OrderedDict()

    def get(self, path: Path, dtype: np.dtype, tokens: int) -> np.memmap:
        mapped = self._maps.get(path)
        if mapped is None:
            while len(self._maps) >= self.max_open:
                self._maps.popitem(last=False)  # the map (and its descriptor) closes with its last reference
            mapped = self._maps[path] = np.memmap(path, dtype=dtype, mode="r", shape=(tokens,))
        self._maps.move_to_end(path)
        return mapped

    def __getstate__(self) -> dict[str, Any]:
        return {"max_open": self.max_open, "_maps": OrderedDict()}  # a worker process opens its own


class Shard:
    """One shard file as a read-only token array: `len` and slicing (slices are copies of the mapped data)."""

    def __init__(self, path: Path, dtype: np.dtype, tokens: int, files: OpenShards) -> None:
        self.path, self.dtype, self.tokens, self.files = path, dtype, tokens, files

    def __len__(self) -> int:
        return self.tokens

    def __getitem__(self, key: slice) -> np.ndarray:
        return np.array(self.files.get(self.path, self.dtype, self.tokens)[key])
