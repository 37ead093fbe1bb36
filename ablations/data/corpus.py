"""Corpora as deterministic streams of documents (strings), each with a fingerprint for caching.

Sources: the embedded stdlib corpus (no download), local files (`.txt` = one document per file; `.jsonl`,
`.json`, `.parquet` = one document per record's `text_field`), and Hugging Face datasets (hub or
`save_to_disk`). Validation documents are held out by a hash of their text, so the split does not depend on
order, sharding or the number of processes, and a duplicated document never straddles train and val.
"""

from __future__ import annotations

import functools
import glob
import hashlib
import itertools
import json
import subprocess
import sys
import sysconfig
from collections.abc import Iterator
from pathlib import Path
from pydoc_data.topics import topics
from typing import Any

from ablations.data.config import DataConfig
from ablations.records.errors import DataError

LOCAL_SUFFIXES: tuple[str, ...] = (".txt", ".jsonl", ".json", ".parquet")
# Directories of the stdlib that are tests, vendored code or the installed packages, not library text.
_STDLIB_SKIP_PARTS = frozenset(
    {"test", "tests", "idle_test", "site-packages", "dist-packages", "__pycache__"}
)


def is_validation(text: str, val_fraction: float) -> bool:
    """Whether a document is held out: a stable hash of its text, read as a number in [0, 1)."""
    if val_fraction <= 0.0:
        return False
    digest = hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=8).digest()
    return int.from_bytes(digest, "little") / 2**64 < val_fraction


# ---------------------------------------------------------------------------------------------- embedded


@functools.lru_cache(maxsize=4)
def embedded_documents(max_bytes: int) -> tuple[str, ...]:
    """The embedded corpus of the running interpreter, capped at `max_bytes` of UTF-8 text.

    Documents, in this order: every `pydoc_data` topic (the language reference), the docstrings of the
    built-in (C) modules and their members, then stdlib module sources (docstrings included) in an order
    fixed by a hash of their path, so a cap samples the whole library rather than its first letters.
    """
    docs: list[str] = []
    budget = max_bytes
    for text in itertools.chain(_pydoc_topics(), _builtin_docstrings(), _stdlib_sources()):
        if not text.strip():
            continue
        size = len(text.encode("utf-8"))
        if size > budget:
            continue  # a smaller document later may still fit
        docs.append(text)
        budget -= size
        if budget < 1024:
            break
    return tuple(docs)


def _pydoc_topics() -> list[str]:
    return [f"{name}\n\n{topics[name]}" for name in sorted(topics)]


# Run in a fresh interpreter (-I -S: no site, no environment): members that this process's libraries have
# replaced (pytest's sys hooks, wandb's sys.exit, …) would otherwise change the text, and the shard keys.
_BUILTIN_DOCSTRINGS = """
import inspect, json, sys
docs = []
for name in sorted(sys.builtin_module_names):
    module = sys.modules.get(name) or __import__(name)
    parts = [f"Help on built-in module {name}:\\n\\n{inspect.getdoc(module) or ''}"]
    for member_name, member in sorted(vars(module).items()):
        # callables and classes only: data attributes (sys.path, …) vary between runs
        if member_name.startswith("_") or not (inspect.isroutine(member) or inspect.isclass(member)):
            continue
        doc = inspect.getdoc(member)
        if doc:
            parts.append(f"{name}.{member_name}\\n{doc}")
    docs.append("\\n\\n".join(parts))
print(json.dumps(docs))
"""


def _builtin_docstrings() -> list[str]:
    """The docstrings of the built-in (C) modules and their members, as a fresh interpreter has them."""
    done = subprocess.run(
        [sys.executable, "-I", "-S", "-c", _BUILTIN_DOCSTRINGS], capture_output=True, text=True, check=True
    )
    return json.loads(done.stdout)


def _stdlib_sources() -> Iterator[str]:
    root = Path(sysconfig.get_paths()["stdlib"])
    files = [p for p in root.rglob("*.py") if not _STDLIB_SKIP_PARTS.intersection(p.relative_to(root).parts)]
    files.sort(key=lambda p: hashlib.blake2b(p.relative_to(root).as_posix().encode()).digest())
    return (
        p.read_text(encoding="utf-8", errors="replace") for p in files
    )  # read lazily: the cap stops early


# ------------------------------------------------------------------------------------------- local files


def resolve_local_files(paths: list[str]) -> list[Path]:
    """Expand files, globs and directories (recursively) into a sorted list of supported files."""
    found: set[Path] = set()
    for spec in paths:
        p = Path(spec).expanduser()
        if p.is_dir():
            found.update(f for f in p.rglob("*") if f.is_file() and f.suffix in LOCAL_SUFFIXES)
        elif p.is_file():
            if p.suffix not in LOCAL_SUFFIXES:
                raise DataError(f"{p}: unsupported file type {p.suffix!r}; use one of {LOCAL_SUFFIXES}")
            found.add(p)
        else:
            found.update(
                Path(m) for m in glob.glob(str(p), recursive=True) if Path(m).suffix in LOCAL_SUFFIXES
            )
    if not found:
        raise DataError(f"data.paths={paths}: no {'/'.join(LOCAL_SUFFIXES)} files found (missing corpus)")
    return sorted(found)


def describe_corpus(cfg: DataConfig) -> str:
    """The corpus in words for an error message: its files (local files named one by one, up to 3), its
    dataset, or its source."""
    if cfg.source == "local_files":
        try:
            files = [str(path) for path in resolve_local_files(cfg.paths)]
        except DataError:
            return f"data.paths={cfg.paths}"
        more = f" and {len(files) - 3} more" if len(files) > 3 else ""
        return f"{', '.join(files[:3])}{more} (data.paths={cfg.paths})"
    if cfg.source == "hf_dataset":
        return f"Hugging Face dataset {cfg.hf_path!r}"
    if cfg.source == "pretokenized":
        return f"the shards in {cfg.shards_dir}"
    return f"data.source={cfg.source}"


def _texts_of_file(path: Path, text_field: str) -> Iterator[str]:
    """The documents of one local file; a malformed file is a DataError naming the file (and line)."""
    try:
        yield from _parse_file(path, text_field)
    except UnicodeDecodeError as error:
        raise DataError(f"{path}: not UTF-8 text (byte {error.start}: {error.reason})") from None
    except OSError as error:
        raise DataError(f"{path}: unreadable ({error})") from None
    except ValueError as error:  # pyarrow's ArrowInvalid is a ValueError
        if isinstance(error, DataError):
            raise
        raise DataError(
            f"{path}: not a readable {path.suffix} file ({type(error).__name__}: {error})"
        ) from None


def _parse_file(path: Path, text_field: str) -> Iterator[str]:
    if path.suffix == ".txt":
        text = path.read_text(encoding="utf-8")  # strict: undecodable bytes are an error, not U+FFFD noise
        if "\x00" in text:
            raise DataError(f"{path}: binary content (NUL bytes) in a .txt corpus file")
        yield text
    elif path.suffix == ".jsonl":
        with path.open(encoding="utf-8") as f:
            for line_no, line in enumerate(f, 1):
                if line.strip():
                    yield _field(_json(line, f"{path}:{line_no}"), text_field, f"{path}:{line_no}")
    elif path.suffix == ".json":
        records = _json(path.read_text(encoding="utf-8"), str(path))
        if isinstance(records, dict):  # {"data": [...]} or a single record
            lists = [v for v in records.values() if isinstance(v, list)]
            records = lists[0] if len(lists) == 1 and text_field not in records else [records]
        for i, record in enumerate(records):
            yield _field(record, text_field, f"{path}[{i}]")
    elif path.suffix == ".parquet":
        import pyarrow.parquet as pq  # heavy (~0.3 s): only for parquet corpora

        parquet = pq.ParquetFile(path)
        if text_field not in parquet.schema_arrow.names:
            raise DataError(
                f"{path}: text field {text_field!r} absent; columns are {parquet.schema_arrow.names} "
                "(set data.text_field)"
            )
        for batch in parquet.iter_batches(columns=[text_field], batch_size=1024):
            yield from (t for t in batch.column(0).to_pylist() if t is not None)


def _json(text: str, where: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as error:
        raise DataError(f"{where}: not valid JSON ({error.msg} at column {error.colno})") from None


def _field(record: Any, text_field: str, where: str) -> str:
    if not isinstance(record, dict) or text_field not in record:
        keys = sorted(record) if isinstance(record, dict) else type(record).__name__
        raise DataError(f"{where}: text field {text_field!r} absent (record has {keys}; set data.text_field)")
    text = record[text_field]
    if not isinstance(text, str):
        raise DataError(f"{where}: field {text_field!r} is a {type(text).__name__}, not text")
    return text


# ------------------------------------------------------------------------------------------ HF datasets


def load_hf_dataset(cfg: DataConfig) -> Any:
    """The configured split as a `datasets.Dataset` (or `IterableDataset` when streaming)."""
    import datasets  # heavy (~1 s): only for Hugging Face corpora

    local = Path(cfg.hf_path or "").expanduser()
    if local.is_dir():
        ds = datasets.load_from_disk(str(local))
        if isinstance(ds, datasets.DatasetDict):
            if cfg.hf_split not in ds:
                raise DataError(f"{local}: no split {cfg.hf_split!r}; splits are {list(ds)}")
            ds = ds[cfg.hf_split]
    else:
        try:
            ds = datasets.load_dataset(
                cfg.hf_path,
                cfg.hf_name,
                split=cfg.hf_split,
                streaming=cfg.streaming,
                revision=cfg.hf_revision,
            )
        except Exception as e:  # hub unreachable, offline mode, name or config unknown, …
            raise DataError(
                f"cannot load Hugging Face dataset {cfg.hf_path!r} (config {cfg.hf_name!r}, split "
                f"{cfg.hf_split!r}): {type(e).__name__}: {e}\n"
                "If the hub is unreachable from here, fetch it where it is reachable with "
                "`datasets.load_dataset(...).save_to_disk(DIR)` and set data.hf_path=DIR (a local path), "
                "or use data=local_files with its parquet/jsonl files."
            ) from e
    columns = ds.column_names
    if columns is not None and cfg.text_field not in columns:
        raise DataError(
            f"Hugging Face dataset {cfg.hf_path!r}: text field {cfg.text_field!r} absent; "
            f"columns are {columns} (set data.text_field)"
        )
    return ds


# ---------------------------------------------------------------------------------------- the interface


def iter_documents(cfg: DataConfig) -> Iterator[str]:
    """Every document of the configured corpus, in a deterministic order (both splits)."""
    if cfg.source == "embedded":
        yield from embedded_documents(cfg.embedded_max_bytes)
    elif cfg.source == "local_files":
        for path in resolve_local_files(cfg.paths):
            yield from _texts_of_file(path, cfg.text_field)
    elif cfg.source == "hf_dataset":
        ds = load_hf_dataset(cfg)
        for record in ds.select_columns([cfg.text_field]) if hasattr(ds, "select_columns") else ds:
            text = record[cfg.text_field]
            if text is not None:
                yield text
    else:
        raise DataError(f"data.source={cfg.source!r} has no documents (pretokenized shards hold only tokens)")


def iter_training_text(cfg: DataConfig, max_bytes: int) -> Iterator[str]:
    """Training-split documents, up to `max_bytes` of text (what a tokenizer is trained on)."""
    budget = max_bytes
    for text in iter_documents(cfg):
        if is_validation(text, cfg.val_fraction):
            continue
        yield text
        budget -= len(text)
        if budget <= 0:
            return


def corpus_fingerprint(cfg: DataConfig) -> dict[str, Any]:
    """What identifies the corpus's content, with a `hash`: same fingerprint, same documents.

    embedded: a hash of the text itself (and the interpreter version that produced it); local files: of
    each file's sha256 (recorded, so a record names the exact corpus it trained on whatever its path; about
    a second per GB at every job start); HF datasets: of the dataset's own fingerprint (a local or cached
    copy) or of name/config/split/revision.
    """
    if cfg.source == "embedded":
        h = hashlib.blake2b(digest_size=16)
        docs = embedded_documents(cfg.embedded_max_bytes)
        for text in docs:
            h.update(text.encode("utf-8", "surrogatepass") + b"\0")
        info: dict[str, Any] = {
            "source": "embedded",
            "python": sys.version.split()[0],
            "implementation": sys.implementation.name,
            "documents": len(docs),
            "bytes": sum(len(t.encode("utf-8")) for t in docs),
            "content_hash": h.hexdigest(),
        }
    elif cfg.source == "local_files":
        files = resolve_local_files(cfg.paths)
        digests = [file_sha256(f) for f in files]
        info = {
            "source": "local_files",
            "files": [str(f.resolve()) for f in files],
            "bytes": sum(f.stat().st_size for f in files),
            "sha256": digests,
            "content_hash": _hash_json(digests),
        }
    elif cfg.source == "hf_dataset":
        spec = {"hf_path": cfg.hf_path, "hf_name": cfg.hf_name, "hf_split": cfg.hf_split}
        spec["hf_revision"] = cfg.hf_revision
        if Path(cfg.hf_path or "").expanduser().is_dir():
            spec["fingerprint"] = getattr(load_hf_dataset(cfg), "_fingerprint", None)
        info = {"source": "hf_dataset", **spec, "content_hash": _hash_json(spec)}
    else:
        raise DataError(f"data.source={cfg.source!r}: pretokenized shards carry their own manifest")
    info["text_field"] = cfg.text_field if cfg.source != "embedded" else None
    info["hash"] = _hash_json([info["content_hash"], info["text_field"]])
    return info


def file_sha256(path: Path) -> str:
    """The sha256 of a file's bytes (what `sha256sum` prints), read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while block := f.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


def _hash_json(value: Any) -> str:
    return hashlib.blake2b(json.dumps(value, sort_keys=True).encode(), digest_size=16).hexdigest()
