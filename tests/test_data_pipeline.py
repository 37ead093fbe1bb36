"""The data pipeline end to end with real tokenizers and real files: text → shards → windows → text,
cache reuse/rebuild, and one clear error for each kind of bad input."""

from __future__ import annotations

import itertools
import json
import os
from pathlib import Path

import numpy as np
import pytest

from ablations.data.config import DataConfig, TokenizerConfig
from ablations.data.corpus import embedded_documents, is_validation
from ablations.data.loader import TokenWindowLoader, WindowIndex
from ablations.data.shards import MANIFEST, open_split, prepare_shards, read_manifest
from ablations.data.tokenizer import check_vocab_fits, load_tokenizer, tokenizer_hash
from ablations.records.errors import ConfigError, DataError

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

SMALL = 300_000  # bytes of embedded text: a tokenizer trains on it in well under a second


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("cache")


def data_cfg(cache: Path, **kw: object) -> DataConfig:
    values: dict[str, object] = dict(
        embedded_max_bytes=SMALL, val_fraction=0.1, num_proc=1, cache_dir=str(cache), progress=False
    )
    values.update(kw)
    return DataConfig(**values)  # type: ignore[arg-type]


def tok_cfg(cache: Path, **kw: object) -> TokenizerConfig:
    return TokenizerConfig(**{"vocab_size": 512, "cache_dir": str(cache), **kw})  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def tokenizer(cache: Path):
    return load_tokenizer(tok_cfg(cache), data_cfg(cache))


def write_jsonl(path: Path, texts: list[str], field: str = "text") -> Path:
    path.write_text("".join(json.dumps({field: t}) + "\n" for t in texts))
    return path


DOCS = [
    "The quick brown fox jumps over the lazy dog.\n    Indented line with  two spaces.",
    "Unicode survives byte fallback: naïve café, ☃, 漢字, emoji 🙂 and a literal <s> token.",
    "def f(x):\n    return x + 1\n",
    *(f"Document number {i}: " + "lorem ipsum dolor sit amet " * (i % 7 + 1) for i in range(200)),
]


# ------------------------------------------------------------------------------------------ tokenizer


def test_trained_tokenizer_is_llama_style_and_reloads(tokenizer, cache: Path, tmp_path: Path) -> None:
    from transformers import AutoTokenizer

    assert (tokenizer.unk_token_id, tokenizer.bos_token_id, tokenizer.eos_token_id) == (0, 1, 2)
    assert len(tokenizer) == 512
    assert tokenizer.convert_ids_to_tokens([3, 258]) == ["<0x00>", "<0xFF>"]
    for text in [DOCS[0], DOCS[2], "naïve café, ☃, 漢字 🙂"]:
        ids = tokenizer.encode(text)
        assert ids[0] == tokenizer.bos_token_id  # encode frames text like the shards do (BOS first)
        assert tokenizer.decode(ids, skip_special_tokens=True) == text
    tokenizer.save_pretrained(tmp_path)
    reloaded = AutoTokenizer.from_pretrained(tmp_path)
    assert reloaded.encode(DOCS[1]) == tokenizer.encode(DOCS[1])
    assert tokenizer_hash(reloaded) == tokenizer_hash(tokenizer)
    # cached by corpus hash: loading again reads the same files instead of training
    again = load_tokenizer(tok_cfg(cache), data_cfg(cache))
    assert again.name_or_path == tokenizer.name_or_path
    assert tokenizer_hash(again) == tokenizer_hash(tokenizer)


def test_hf_and_sentencepiece_tokenizers_load_from_local_files(tokenizer, tmp_path: Path) -> None:
    import sentencepiece as spm

    tokenizer.save_pretrained(tmp_path / "hf")
    hf = load_tokenizer(TokenizerConfig(kind="hf", name_or_path=str(tmp_path / "hf")))
    assert hf.encode(DOCS[0]) == tokenizer.encode(DOCS[0])

    corpus = tmp_path / "sp.txt"
    corpus.write_text("\n".join(embedded_documents(SMALL)[:40]))
    spm.SentencePieceTrainer.train(
        input=str(corpus), model_prefix=str(tmp_path / "sp"), vocab_size=400, byte_fallback=True,
        bos_id=1, eos_id=2, unk_id=0, pad_id=-1, minloglevel=2,
        model_type="bpe", normalization_rule_name="identity", remove_extra_whitespaces=False,  # as LLaMA's
    )  # fmt: skip
    sp_cfg = TokenizerConfig(
        kind="sentencepiece", name_or_path=str(tmp_path / "sp.model"), cache_dir=str(tmp_path)
    )
    sp = load_tokenizer(sp_cfg)
    reference = spm.SentencePieceProcessor(model_file=str(tmp_path / "sp.model"))
    for text in ["Assert statements are a convenient way to insert debugging assertions", "x = 1\n  y ☃"]:
        assert sp.encode(text) == [1, *reference.encode(text)]
    assert (sp.bos_token_id, sp.eos_token_id) == (1, 2)


def test_unreachable_hub_tokenizer_is_one_clear_error() -> None:
    with pytest.raises(DataError, match=r"(?s)meta-llama/Llama-2-7b-hf.*local directory"):
        load_tokenizer(TokenizerConfig(kind="hf", name_or_path="meta-llama/Llama-2-7b-hf"))


def test_check_vocab_fits(tokenizer) -> None:
    check_vocab_fits(tokenizer, 512)
    with pytest.raises(DataError, match=r"has 512 tokens but the model's vocab_size is 500"):
        check_vocab_fits(tokenizer, 500)


# ----------------------------------------------------------------------------------- round trip


def test_round_trip_text_shards_windows_text(tokenizer, cache: Path, tmp_path: Path) -> None:
    files = [write_jsonl(tmp_path / "a.jsonl", DOCS[:100]), write_jsonl(tmp_path / "b.jsonl", DOCS[100:])]
    cfg = data_cfg(cache, source="local_files", paths=[str(tmp_path / "*.jsonl")], val_fraction=0.0)
    shard_dir = prepare_shards(cfg, tok_cfg(cache), tokenizer)
    manifest = read_manifest(shard_dir, verify_hashes=True)
    assert manifest["splits"]["train"]["documents"] == len(DOCS)
    assert manifest["source"]["files"] == [str(f.resolve()) for f in files]
    assert manifest["tokenizer"]["bos_token_id"] == 1 and manifest["tokenizer"]["add_bos"] is True

    seq_len = 16
    loader = TokenWindowLoader(
        WindowIndex(open_split(shard_dir, manifest, "train"), seq_len), 8, shuffle=False, infinite=False
    )
    batches = list(loader)
    windows = np.concatenate([b.numpy() for b in batches])
    assert batches[0].shape == (8, seq_len + 1)
    assert (windows[1:, 0] == windows[:-1, -1]).all()  # stride seq_len: consecutive windows share a token
    stream = np.concatenate([windows[:, :-1].reshape(-1), windows[-1:, -1]])
    expected = []
    for text in DOCS:  # a literal "<s>" inside a document is text in the shards, never a boundary
        expected += [
            tokenizer.bos_token_id,
            *tokenizer.encode(text, add_special_tokens=False, split_special_tokens=True),
        ]
    assert stream.tolist() == expected[: len(stream)]
    assert len(expected) - len(stream) < seq_len  # only the tail that fills no window is left out
    # decode the covered documents back, split at BOS
    boundaries = [*np.flatnonzero(stream == tokenizer.bos_token_id).tolist(), len(stream)]
    decoded = [tokenizer.decode(stream[a + 1 : b]) for a, b in itertools.pairwise(boundaries)]
    assert decoded[:-1] == DOCS[: len(decoded) - 1]  # the last one may be cut by the final window
    assert loader.tokens_seen == len(batches) * 8 * seq_len


def test_embedded_corpus_shards_record_interpreter_and_hash(tokenizer, cache: Path) -> None:
    import sys

    cfg = data_cfg(cache)
    manifest = read_manifest(prepare_shards(cfg, tok_cfg(cache), tokenizer), verify_hashes=True)
    source = manifest["source"]
    assert source["python"] == sys.version.split()[0] and len(source["content_hash"]) == 32
    docs = embedded_documents(SMALL)
    n_val = sum(is_validation(d, 0.1) for d in docs)
    assert manifest["splits"]["val"]["documents"] == n_val > 0
    assert manifest["splits"]["train"]["documents"] == len(docs) - n_val
    assert manifest["dtype"] == "uint16"
    assert manifest["tokens"] == sum(s["tokens"] for s in manifest["splits"].values())


def test_the_embedded_corpus_is_the_same_in_every_process(monkeypatch: pytest.MonkeyPatch) -> None:
    """A fresh interpreter reads the (default-sized) corpus this process reads, although libraries here
    replaced members of built-in modules (pytest: the sys hooks; wandb.init: sys.exit, as done here): same
    text, so every process of a job, and every job of a multirun, finds the same shard key."""
    import hashlib
    import subprocess
    import sys

    from ablations.data.config import DataConfig

    def replaced_exit(code: object = None) -> None:
        """wandb's sys.exit wrapper."""

    monkeypatch.setattr(sys, "exit", replaced_exit)
    embedded_documents.cache_clear()
    DEFAULT_BYTES = DataConfig().embedded_max_bytes
    code = "import hashlib; from ablations.data.corpus import embedded_documents as e; "
    code += f"print(hashlib.sha256(chr(0).join(e({DEFAULT_BYTES})).encode()).hexdigest())"
    fresh = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    here = hashlib.sha256(chr(0).join(embedded_documents(DEFAULT_BYTES)).encode()).hexdigest()
    embedded_documents.cache_clear()
    assert fresh.stdout.strip() == here


def test_shards_do_not_depend_on_num_proc(tokenizer, cache: Path, tmp_path: Path) -> None:
    one = prepare_shards(data_cfg(tmp_path / "c1", num_proc=1), tok_cfg(cache), tokenizer)
    two = prepare_shards(data_cfg(tmp_path / "c2", num_proc=2), tok_cfg(cache), tokenizer)
    assert one.name == two.name
    for split in ("train", "val"):
        assert (one / f"{split}_000000.bin").read_bytes() == (two / f"{split}_000000.bin").read_bytes()


def test_reuse_and_rebuild(tokenizer, cache: Path, tmp_path: Path) -> None:
    corpus = write_jsonl(tmp_path / "c.jsonl", DOCS)
    cfg = data_cfg(tmp_path / "cache", source="local_files", paths=[str(corpus)], shard_tokens=1000)
    first = prepare_shards(cfg, tok_cfg(cache), tokenizer)
    stamp = (first / MANIFEST).stat().st_mtime_ns
    assert len(read_manifest(first, True)["splits"]["train"]["shards"]) > 1  # shard_tokens splits files
    assert prepare_shards(cfg, tok_cfg(cache), tokenizer) == first
    assert (first / MANIFEST).stat().st_mtime_ns == stamp  # reused, not rewritten
    write_jsonl(corpus, [*DOCS, "one more document"])
    second = prepare_shards(cfg, tok_cfg(cache), tokenizer)
    assert second != first and (first / MANIFEST).is_file()  # changed input: new shards, old ones kept
    assert read_manifest(second, True)["splits"]["train"]["documents"] >= len(DOCS) - 30


def test_hf_dataset_from_save_to_disk(tokenizer, cache: Path, tmp_path: Path) -> None:
    import datasets

    datasets.Dataset.from_dict({"content": DOCS}).save_to_disk(str(tmp_path / "ds"))
    cfg = data_cfg(
        cache, source="hf_dataset", hf_path=str(tmp_path / "ds"), text_field="content", max_tokens=2000
    )
    manifest = read_manifest(prepare_shards(cfg, tok_cfg(cache), tokenizer), verify_hashes=True)
    assert manifest["tokens"] == 2000  # the token cap is exact
    with pytest.raises(DataError, match=r"text field 'text' absent.*content"):
        prepare_shards(
            data_cfg(cache, source="hf_dataset", hf_path=str(tmp_path / "ds")), tok_cfg(cache), tokenizer
        )


def test_unreachable_hub_dataset_is_one_clear_error(tokenizer, cache: Path) -> None:
    cfg = data_cfg(cache, source="hf_dataset", hf_path="HuggingFaceFW/fineweb-edu", hf_name="sample-10BT")
    with pytest.raises(DataError, match=r"(?s)HuggingFaceFW/fineweb-edu.*save_to_disk.*data.hf_path=DIR"):
        prepare_shards(cfg, tok_cfg(cache), tokenizer)


def test_pretokenized_shards_are_reused_and_checked(tokenizer, cache: Path, tmp_path: Path) -> None:
    built = prepare_shards(data_cfg(cache), tok_cfg(cache), tokenizer)
    saved_tok = TokenizerConfig(kind="hf", name_or_path=str(built / "tokenizer"))
    pre = data_cfg(cache, source="pretokenized", shards_dir=str(built))
    assert prepare_shards(pre, saved_tok, load_tokenizer(saved_tok)) == built
    other_cfg = tok_cfg(tmp_path, vocab_size=400)
    other = load_tokenizer(other_cfg, data_cfg(tmp_path))
    with pytest.raises(DataError, match=rf"{MANIFEST}: tokenizer hash mismatch"):
        prepare_shards(pre, other_cfg, other)


# ------------------------------------------------------------------------------------------ bad input


def test_missing_and_empty_corpus(tokenizer, cache: Path, tmp_path: Path) -> None:
    missing = data_cfg(cache, source="local_files", paths=[str(tmp_path / "nope" / "*.jsonl")])
    with pytest.raises(DataError, match=r"nope.*no .* files found"):
        prepare_shards(missing, tok_cfg(cache), tokenizer)
    (tmp_path / "empty.jsonl").write_text("")
    empty = data_cfg(cache, source="local_files", paths=[str(tmp_path / "empty.jsonl")])
    with pytest.raises(DataError, match=r"empty corpus.*empty.jsonl"):
        prepare_shards(empty, tok_cfg(cache), tokenizer)
    with pytest.raises(ConfigError, match="needs `paths`"):
        DataConfig(source="local_files")


def test_text_field_absent_names_the_file(tokenizer, cache: Path, tmp_path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    write_jsonl(tmp_path / "x.jsonl", ["a", "b"], field="body")
    cfg = data_cfg(cache, source="local_files", paths=[str(tmp_path / "x.jsonl")])
    with pytest.raises(DataError, match=r"x.jsonl:1: text field 'text' absent"):
        prepare_shards(cfg, tok_cfg(cache), tokenizer)
    pq.write_table(pa.table({"body": ["a"]}), tmp_path / "x.parquet")
    cfg = data_cfg(cache, source="local_files", paths=[str(tmp_path / "x.parquet")])
    with pytest.raises(DataError, match=r"x.parquet: text field 'text' absent; columns are \['body'\]"):
        prepare_shards(cfg, tok_cfg(cache), tokenizer)


def test_truncated_and_corrupted_shards_are_reported_and_kept(tokenizer, cache: Path, tmp_path: Path) -> None:
    shard_dir = prepare_shards(data_cfg(tmp_path), tok_cfg(cache), tokenizer)
    shard = shard_dir / "train_000000.bin"
    data = shard.read_bytes()
    shard.write_bytes(data[:-2])
    with pytest.raises(DataError, match=rf"{shard}: {len(data) - 2} bytes but the manifest says"):
        prepare_shards(data_cfg(tmp_path), tok_cfg(cache), tokenizer)
    shard.write_bytes(data[:-2] + b"\x00\x00" if data[-2:] != b"\x00\x00" else data[:-2] + b"\x01\x00")
    with pytest.raises(DataError, match=rf"{shard}: blake2b differs from the manifest"):
        prepare_shards(data_cfg(tmp_path), tok_cfg(cache), tokenizer)
    assert shard.is_file() and (shard_dir / MANIFEST).is_file()  # nothing written is deleted


def test_seq_len_longer_than_any_shard(tokenizer, cache: Path) -> None:
    shard_dir = prepare_shards(data_cfg(cache), tok_cfg(cache), tokenizer)
    manifest = read_manifest(shard_dir, verify_hashes=False)
    longest = max(s["tokens"] for s in manifest["splits"]["val"]["shards"])
    with pytest.raises(
        DataError, match=rf"seq_len={longest} is longer than any shard \(the longest has {longest}"
    ):
        WindowIndex(open_split(shard_dir, manifest, "val"), longest, name=str(shard_dir))


def test_a_shard_entry_outside_the_shard_directory_is_refused_naming_manifest_and_entry(
    tokenizer, cache: Path, tmp_path: Path
) -> None:
    shard_dir = prepare_shards(data_cfg(tmp_path), tok_cfg(cache), tokenizer)
    manifest_text = (shard_dir / MANIFEST).read_text()
    outside = tmp_path / "outside.bin"  # the right size: only the containment check can refuse it
    outside.write_bytes((shard_dir / "train_000000.bin").read_bytes())
    for name in (f"../../{outside.name}", str(outside), ""):
        manifest = json.loads(manifest_text)
        manifest["splits"]["train"]["shards"][0]["file"] = name
        (shard_dir / MANIFEST).write_text(json.dumps(manifest))
        with pytest.raises(DataError, match=rf"{shard_dir / MANIFEST}: shard entry file='{name}'"):
            read_manifest(shard_dir, verify_hashes=False)
