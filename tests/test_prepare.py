"""Preparing data once: in parts (any order, concurrent processes, the CLI) equals one process, byte for
byte; shards are verified once and out-of-range ids are caught."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from ablations.data.build import parse_part, parts_dir, prepare_locked, prepare_part
from ablations.data.config import DataConfig, TokenizerConfig
from ablations.data.shards import MANIFEST, VERIFIED, prepare_shards, read_manifest
from ablations.data.tokenizer import load_tokenizer
from ablations.records.errors import DataError

ROOT = Path(__file__).resolve().parents[1]
DOCS = [f"Document {i}: " + "lorem ipsum dolor sit amet, consectetur " * (i % 9 + 1) for i in range(300)]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("corpus") / "docs.jsonl"
    path.write_text("".join(json.dumps({"text": t}) + "\n" for t in DOCS))
    return path


def data_cfg(cache: Path, corpus: Path, **kw: object) -> DataConfig:
    values: dict[str, object] = dict(
        source="local_files",
        paths=[str(corpus)],
        val_fraction=0.1,
        num_proc=1,
        cache_dir=str(cache),
        progress=False,
        shard_tokens=1500,
        block_documents=16,
    )
    values.update(kw)
    return DataConfig(**values)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def tok(tmp_path_factory: pytest.TempPathFactory, corpus: Path):
    cache = tmp_path_factory.mktemp("tok")
    cfg = TokenizerConfig(vocab_size=300, cache_dir=str(cache))
    return cfg, load_tokenizer(cfg, data_cfg(cache, corpus))


def same_tree(a: Path, b: Path) -> None:
    """Every file of the two shard directories is byte-identical (the verification stamp names inodes)."""
    files_a = sorted(p.relative_to(a) for p in a.rglob("*") if p.is_file() and p.name != VERIFIED)
    files_b = sorted(p.relative_to(b) for p in b.rglob("*") if p.is_file() and p.name != VERIFIED)
    assert files_a == files_b
    for rel in files_a:
        assert (a / rel).read_bytes() == (b / rel).read_bytes(), rel


@pytest.mark.parametrize("max_tokens", [None, 5000])
def test_parts_in_any_order_equal_one_process(tok, corpus: Path, tmp_path: Path, max_tokens) -> None:
    tok_cfg, tokenizer = tok
    one = prepare_shards(data_cfg(tmp_path / "one", corpus, max_tokens=max_tokens), tok_cfg, tokenizer)
    assert len(read_manifest(one, False)["splits"]["train"]["shards"]) > 2
    cfg = data_cfg(tmp_path / "parts", corpus, max_tokens=max_tokens)
    assert prepare_part(cfg, tok_cfg, tokenizer, 2, 3) is None  # others missing: no merge yet
    assert prepare_part(cfg, tok_cfg, tokenizer, 0, 3) is None
    merged = prepare_part(cfg, tok_cfg, tokenizer, 1, 3)
    assert merged is not None and merged.name == one.name
    same_tree(one, merged)
    assert not parts_dir(merged).exists()  # the part files are removed after the merge
    assert prepare_part(cfg, tok_cfg, tokenizer, 0, 3) == merged  # a rerun finds the merged shards


def test_cli_parts_as_concurrent_processes_equal_one_process(corpus: Path, tmp_path: Path) -> None:
    base = [sys.executable, "-m", "ablations.prepare", "data=local_files", f"data.paths=[{corpus}]"]
    base += ["data.shard_tokens=1500", "data.block_documents=16", "data.num_proc=1", "data.progress=false"]
    base += ["tokenizer.vocab_size=300"]
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}

    def cli(cache: Path, *extra: str) -> subprocess.Popen:
        args = [*base, f"data.cache_dir={cache}", f"tokenizer.cache_dir={tmp_path / 'tok'}", *extra]
        return subprocess.Popen(
            args, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )

    runs = [cli(tmp_path / "parts", f"part={i}/2") for i in range(2)] + [cli(tmp_path / "one")]
    outputs = [run.communicate(timeout=300) for run in runs]
    assert all(run.returncode == 0 for run in runs), outputs
    # the last part to finish merged (or both finished together: one merged, the other found it merged)
    assert all(("shards: " in out) or ("written" in out) for out, _ in outputs[:2])
    assert any("shards: " in out for out, _ in outputs[:2])
    (one,) = (tmp_path / "one" / "shards").iterdir()
    (merged,) = [p for p in (tmp_path / "parts" / "shards").iterdir() if p.is_dir()]
    same_tree(one, merged)


def test_concurrent_loads_train_the_tokenizer_once(corpus: Path, tmp_path: Path, caplog) -> None:
    """Array parts and ranks that need the same trained tokenizer: one trains it, the others wait for it."""
    import logging
    from concurrent.futures import ThreadPoolExecutor

    from transformers import PreTrainedTokenizerFast  # noqa: F401  # its lazy import is not thread-safe

    from ablations.data.tokenizer import tokenizer_hash

    cfg, data = TokenizerConfig(vocab_size=300, cache_dir=str(tmp_path)), data_cfg(tmp_path, corpus)
    with caplog.at_level(logging.INFO, logger="ablations.data.tokenizer"), ThreadPoolExecutor(3) as pool:
        loaded = list(pool.map(lambda _: load_tokenizer(cfg, data), range(3)))
    assert sum("training a 300-token BPE tokenizer" in r.getMessage() for r in caplog.records) == 1
    assert len({tokenizer_hash(t) for t in loaded}) == 1


def test_bad_part_spec_is_refused() -> None:
    assert parse_part("3/4") == (3, 4)
    for bad in ("4/4", "x/2", "1"):
        with pytest.raises(DataError, match="part="):
            parse_part(bad)


def test_prepare_locked_builds_once_and_reuses(tok, corpus: Path, tmp_path: Path) -> None:
    tok_cfg, _ = tok
    cfg = data_cfg(tmp_path, corpus)
    _, out = prepare_locked(cfg, tok_cfg)
    stamp = (out / MANIFEST).stat().st_mtime_ns
    assert prepare_locked(cfg, tok_cfg)[1] == out and (out / MANIFEST).stat().st_mtime_ns == stamp
    assert not [p for p in out.parent.iterdir() if ".tmp-" in p.name]  # no temporary left behind


def test_verified_once_then_changed_shards_are_checked_again(tok, corpus: Path, tmp_path: Path) -> None:
    tok_cfg, tokenizer = tok
    out = prepare_shards(data_cfg(tmp_path, corpus), tok_cfg, tokenizer)
    stamp = json.loads((out / VERIFIED).read_text())
    manifest = read_manifest(out, verify_hashes=True)
    assert set(stamp) == {
        s["file"] for split in ("train", "val") for s in manifest["splits"][split]["shards"]
    }
    # an id past the vocabulary (a shard written for another tokenizer), with a matching hash
    shard = manifest["splits"]["train"]["shards"][0]
    tokens = np.fromfile(out / shard["file"], dtype=manifest["dtype"])
    tokens[5] = manifest["tokenizer"]["vocab_size"] + 7
    tokens.tofile(out / shard["file"])
    shard["blake2b"] = hashlib.blake2b(tokens.tobytes()).hexdigest()
    (out / MANIFEST).write_text(json.dumps(manifest))
    with pytest.raises(DataError, match=f"{shard['file']}: holds token id"):
        read_manifest(out, verify_hashes=True)


def test_a_budget_over_max_epochs_is_refused_before_training(tmp_path: Path) -> None:
    from ablations.job.config import compose_config
    from ablations.job.stages import run_job
    from ablations.records.errors import ConfigError

    small = [
        "train.micro_batch_size=8",
        "train.seq_len=64",
        "data.progress=false",
        "logger=none",
        "eval=none",
    ]
    small += ["trainer.enable_progress_bar=false"]
    cfg = compose_config([*small, "train.tokens=1000000000", "data.max_epochs=1"])
    with pytest.raises(ConfigError, match=r"epochs of .* above data.max_epochs=1"):
        run_job(cfg, tmp_path, name="too_long")
    record = json.loads((tmp_path / "result.json").read_text())
    assert record["status"] == "failed" and "max_epochs" in record["error"]
    assert not (tmp_path / "checkpoints").exists()  # refused before any training step


def test_epochs_are_counted_against_the_train_windows() -> None:
    from ablations.data.epochs import check_epochs
    from ablations.records.errors import ConfigError

    manifest = {"key": "k", "splits": {"train": {"shards": [{"tokens": 65}, {"tokens": 129}]}}}
    # windows of 64: 1 + 2 = 3 windows = 192 target tokens per epoch
    assert check_epochs(192, 64, manifest, DataConfig()) == 1.0
    assert check_epochs(384, 64, manifest, DataConfig(max_epochs=2.5)) == 2.0
    with pytest.raises(ConfigError, match=r"2\.00 epochs of 192 train tokens .* above data\.max_epochs=1\.5"):
        check_epochs(384, 64, manifest, DataConfig(max_epochs=1.5))


def test_in_range_corruption_of_pretokenized_shards_is_detected(tok, corpus: Path, tmp_path: Path) -> None:
    """data=pretokenized verifies hashes (once, then by stamp): a silently altered shard never trains."""
    from ablations.data.config import DataConfig
    from ablations.job.config import compose_config, job_config

    assert job_config(compose_config(["data=pretokenized", "data.shards_dir=x"])).data.verify_hashes
    tok_cfg, tokenizer = tok
    out = prepare_shards(data_cfg(tmp_path, corpus), tok_cfg, tokenizer)
    manifest = read_manifest(out, verify_hashes=True)
    shard = manifest["splits"]["train"]["shards"][0]
    tokens = np.fromfile(out / shard["file"], dtype=manifest["dtype"])
    tokens[5] = (int(tokens[5]) + 1) % manifest["tokenizer"]["vocab_size"]  # a valid id, the wrong one
    tokens.tofile(out / shard["file"])
    pretokenized = DataConfig(source="pretokenized", shards_dir=str(out), progress=False)
    with pytest.raises(DataError, match=f"{shard['file']}: blake2b differs"):
        prepare_shards(pretokenized, tok_cfg, tokenizer)
