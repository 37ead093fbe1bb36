"""Preparing a corpus once: tokenizer and shards built by one process (under a file lock), or split into N
parts that run anywhere (a SLURM array, many machines) and are merged into the same shards.

    <cache_dir>/shards/<key>.parts/part-00001-of-00004/part.json   per block: tokens and documents per split
    <cache_dir>/shards/<key>.parts/part-00001-of-00004/train.bin   the part's train tokens, block after block
    <cache_dir>/shards/<key>.parts/part-00001-of-00004/val.bin

The corpus is cut into blocks of `data.block_documents` consecutive documents; block b belongs to part
b mod N. The merge reads the blocks back in corpus order and writes them with the same writer as a
one-process preparation (`build_shards`), so the shards and manifest are byte-identical to it. The part
that finishes last merges (under a lock) and removes the part files.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
from filelock import FileLock

from ablations.data.config import DataConfig, TokenizerConfig
from ablations.data.corpus import iter_documents
from ablations.data.shards import (
    MANIFEST,
    SPLITS,
    EncodedBatch,
    build_shards,
    document_blocks,
    encode_corpus,
    prepare_shards,
    shard_dir_of,
    shard_dtype,
)
from ablations.data.tokenizer import load_tokenizer, tokenizer_info
from ablations.records.atomic import temp_sibling
from ablations.records.errors import DataError

PART_MANIFEST = "part.json"
PART_FORMAT = "ablations-token-shards-part"
LOCK_FILE = "prepare.lock"


def prepare_locked(data_cfg: DataConfig, tok_cfg: TokenizerConfig) -> tuple[Any, Path]:
    """Tokenizer and shard directory, built by whichever process takes the cache's lock first; every other
    process (rank, node, concurrent job) waits for it and then reuses what it built."""
    cache = Path(data_cfg.cache_dir).expanduser()
    cache.mkdir(parents=True, exist_ok=True)
    with FileLock(cache / LOCK_FILE):
        tokenizer = load_tokenizer(tok_cfg, data_cfg)
        return tokenizer, prepare_shards(data_cfg, tok_cfg, tokenizer)


def parse_part(text: str) -> tuple[int, int]:
    """`i/N` (0 <= i < N) → (i, N)."""
    try:
        part, parts = (int(x) for x in text.split("/"))
    except ValueError:
        raise DataError(f"part={text!r}: expected i/N with integers, e.g. part=0/4") from None
    if not 0 <= part < parts:
        raise DataError(f"part={text!r}: needs 0 <= i < N")
    return part, parts


def parts_dir(out: Path) -> Path:
    return out.with_name(f"{out.name}.parts")


def part_dir(out: Path, part: int, parts: int) -> Path:
    return parts_dir(out) / f"part-{part:05d}-of-{parts:05d}"


def prepare_part(
    data_cfg: DataConfig, tok_cfg: TokenizerConfig, tokenizer: Any, part: int, parts: int
) -> Path | None:
    """Tokenise part `part` of `parts` (skipped if already written), then merge if every part is written.
    Returns the merged shard directory, or None while other parts are still missing."""
    if data_cfg.source == "pretokenized":
        raise DataError("data.source=pretokenized: the shards are already prepared")
    info = tokenizer_info(tokenizer, tok_cfg)
    out = shard_dir_of(data_cfg, info)
    if (out / MANIFEST).is_file():
        return out
    mine = part_dir(out, part, parts)
    if not (mine / PART_MANIFEST).is_file():
        write_part(mine, data_cfg, tok_cfg, tokenizer, info, part, parts)
    return merge_parts(out, data_cfg, tokenizer, info, parts)


def write_part(
    where: Path,
    data_cfg: DataConfig,
    tok_cfg: TokenizerConfig,
    tokenizer: Any,
    info: dict[str, Any],
    part: int,
    parts: int,
) -> None:
    """The part's blocks tokenised into `where` (published by one rename)."""
    own = (
        block
        for b, block in enumerate(document_blocks(iter_documents(data_cfg), data_cfg.block_documents))
        if b % parts == part
    )
    tmp = temp_sibling(where)
    tmp.mkdir(parents=True, exist_ok=True)
    try:
        blocks: list[list[int]] = []
        total = 0
        files = {s: (tmp / f"{s}.bin").open("wb") for s in SPLITS}
        with files["train"], files["val"]:
            for batch in encode_corpus(own, tokenizer, tok_cfg, data_cfg.val_fraction, data_cfg.num_proc):
                for split in SPLITS:
                    files[split].write(batch.tokens[split].tobytes())
                blocks.append(
                    [int(batch.tokens[s].size) for s in SPLITS] + [batch.documents[s] for s in SPLITS]
                )
                total += sum(int(batch.tokens[s].size) for s in SPLITS)
                if data_cfg.max_tokens is not None and total >= data_cfg.max_tokens:
                    break  # the merge stops at the cap before it needs any later block of this part
        meta = {
            "format": PART_FORMAT,
            "part": part,
            "parts": parts,
            "dtype": shard_dtype(info["vocab_size"]).name,
        }
        meta["blocks"] = blocks
        (tmp / PART_MANIFEST).write_text(json.dumps(meta) + "\n")
        where.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.replace(tmp, where)
        except OSError:  # the same part was written by another process first: same bytes
            shutil.rmtree(tmp)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def merge_parts(
    out: Path, data_cfg: DataConfig, tokenizer: Any, info: dict[str, Any], parts: int
) -> Path | None:
    """Merge the parts into `out` once all `parts` are written (one merger under a lock); None before."""
    root = parts_dir(out)
    with FileLock(root.with_name(f"{root.name}.lock")):
        if (out / MANIFEST).is_file():
            return out
        dirs = [part_dir(out, p, parts) for p in range(parts)]
        if not all((d / PART_MANIFEST).is_file() for d in dirs):
            return None
        metas = [json.loads((d / PART_MANIFEST).read_text()) for d in dirs]
        build_shards(out, merged_blocks(dirs, metas), data_cfg, tokenizer, info)
        shutil.rmtree(root, ignore_errors=True)
    return out


def merged_blocks(dirs: list[Path], metas: list[dict[str, Any]]) -> Iterator[EncodedBatch]:
    """The parts' blocks in corpus order (block b is the (b // N)-th block of part b mod N)."""
    parts = len(dirs)
    maps = [{s: _memmap(d / f"{s}.bin", m) for s in SPLITS} for d, m in zip(dirs, metas, strict=True)]
    offsets = [dict.fromkeys(SPLITS, 0) for _ in dirs]
    b = 0
    while b // parts < len(metas[b % parts]["blocks"]):
        p, entry = b % parts, metas[b % parts]["blocks"][b // parts]
        tokens, documents = {}, {}
        for i, split in enumerate(SPLITS):
            start, n = offsets[p][split], entry[i]
            tokens[split] = np.asarray(maps[p][split][start : start + n])
            documents[split] = entry[len(SPLITS) + i]
            offsets[p][split] += n
        yield EncodedBatch(tokens, documents)
        b += 1


def _memmap(file: Path, meta: dict[str, Any]) -> np.ndarray:
    dtype = np.dtype(meta["dtype"])
    if file.stat().st_size == 0:
        return np.empty(0, dtype=dtype)
    return np.memmap(file, dtype=dtype, mode="r")
