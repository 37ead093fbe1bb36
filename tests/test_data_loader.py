"""The window loader: rank disjointness and coverage, a global seeded order drawing from many shards, exact
resume (plain, on another world size, and via a real Lightning checkpoint), worker processes giving the
same stream, bounded open files."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

from ablations.data.loader import TokenWindowLoader, WindowBatchDataset, WindowIndex
from ablations.records.errors import DataError

SEQ = 8


def index(block_tokens: tuple[int, ...] = (400, 333, 97)) -> WindowIndex:
    """Shards whose token at global position p is p, so every window names where it came from."""
    starts = np.cumsum((0, *block_tokens))
    return WindowIndex([np.arange(a, b, dtype=np.uint32) for a, b in itertools.pairwise(starts)], SEQ)


def windows_of(loader: TokenWindowLoader, n_batches: int) -> list[int]:
    return [int(w) for k in range(n_batches) for w in loader.window_ids(k)]


def test_windows_are_contiguous_slices_within_shards() -> None:
    idx = index()
    assert len(idx) == (400 - 1) // SEQ + (333 - 1) // SEQ + (97 - 1) // SEQ
    batch = idx.gather(np.arange(len(idx)))
    assert batch.dtype == torch.int64 and batch.shape == (len(idx), SEQ + 1)
    assert (batch[:, 1:] - batch[:, :-1] == 1).all()  # never crosses a shard boundary
    assert batch[0, 0] == 0 and batch[(400 - 1) // SEQ, 0] == 400


def global_stream(loaders: list[TokenWindowLoader], n_batches: int) -> list[int]:
    """The window ids of every rank's batch k, concatenated in rank order, for k = 0, 1, …"""
    return [int(w) for k in range(n_batches) for loader in loaders for w in loader.window_ids(k)]


def test_ranks_are_disjoint_and_cover_every_window_each_epoch() -> None:
    idx = index()
    n = len(idx)
    ranks = [TokenWindowLoader(idx, 4, seed=3, rank=r, world_size=2) for r in (0, 1)]
    stream = global_stream(ranks, 2 * n // 8 + 2)
    assert sorted(stream[:n]) == sorted(stream[n : 2 * n]) == list(range(n))  # every window, each epoch
    batch0 = [set(r.window_ids(0).tolist()) for r in ranks]
    assert not batch0[0] & batch0[1]


def test_order_is_seeded_shuffled_and_changes_each_epoch() -> None:
    idx = index()
    a = TokenWindowLoader(idx, 4, seed=1)
    n = len(idx)
    first, second = windows_of(a, n // 4 * 2)[:n], windows_of(a, (2 * n) // 4 + 1)[n : 2 * n]
    assert sorted(first) == sorted(second) == list(range(n))
    assert first != list(range(n)) and first != second
    assert windows_of(TokenWindowLoader(idx, 4, seed=1), 10) == windows_of(a, 10)
    assert windows_of(TokenWindowLoader(idx, 4, seed=2), 10) != windows_of(a, 10)


def test_epoch_order_is_saved_once_and_memory_mapped(tmp_path) -> None:
    from ablations.data.loader import epoch_order

    saved = epoch_order(1000, seed=0, epoch=2, order_file=tmp_path / "o.npy")
    assert isinstance(saved, np.memmap) and saved.dtype == np.uint32
    assert sorted(saved.tolist()) == list(range(1000)) and saved.tolist() != list(range(1000))
    assert np.array_equal(saved, epoch_order(1000, seed=0, epoch=2, order_file=None))
    assert np.array_equal(epoch_order(1000, seed=0, epoch=2, order_file=tmp_path / "o.npy"), saved)
    with pytest.raises(DataError, match="holds 1000 window ids, the shards have 999"):
        epoch_order(999, seed=0, epoch=2, order_file=tmp_path / "o.npy")


def test_global_shuffle_draws_each_batch_from_many_shards() -> None:
    """64 shards of 2^14 windows (a local shuffle of 2^16-window blocks would draw a batch from 4 of them),
    global batches of 64 windows on 4 ranks: over 20 consecutive batches, at least 90% of the distinct
    shards uniform sampling gives per batch, on average, and no batch far below it."""
    size = (1 << 14) * SEQ + 1
    idx = WindowIndex([np.arange(s * size, (s + 1) * size, dtype=np.uint32) for s in range(64)], SEQ)
    ranks = [TokenWindowLoader(idx, 16, seed=0, rank=r, world_size=4) for r in range(4)]
    expected = 64 * (1 - (1 - 1 / 64) ** 64)  # ≈ 40.7
    counts = []
    for k in range(20):
        windows = np.concatenate([r.window_ids(k) for r in ranks])
        counts.append(len(np.unique(np.searchsorted(idx.starts, windows, side="right"))))
    assert np.mean(counts) >= 0.9 * expected and min(counts) >= 0.75 * expected, counts


@pytest.mark.parametrize("stop", [5, 26])  # mid-epoch, and past the first epoch boundary
def test_exact_resume_mid_epoch(stop: int) -> None:
    idx = index()
    uninterrupted = TokenWindowLoader(idx, 4, seed=7, rank=1, world_size=2)
    reference = [b for _, b in zip(range(stop + 5), uninterrupted, strict=False)]
    first = TokenWindowLoader(idx, 4, seed=7, rank=1, world_size=2)
    for _, _b in zip(range(stop), first, strict=False):
        pass
    state = first.state_dict()
    assert state["samples"] == stop * 4 * 2 and state["tokens_seen"] == stop * 4 * 2 * SEQ
    resumed = TokenWindowLoader(idx, 4, seed=7, rank=1, world_size=2)
    resumed.load_state_dict(state)
    for expected, got in zip(reference[stop:], resumed, strict=False):
        assert torch.equal(expected, got)
    with pytest.raises(DataError, match=r"cannot resume.*seed: saved 7 vs now 8"):
        TokenWindowLoader(idx, 4, seed=8, rank=1, world_size=2).load_state_dict(state)


def test_resume_on_another_world_size_keeps_the_global_order() -> None:
    """4 ranks × 2 windows, then 2 ranks × 4 (the same global batch of 8): the global stream goes on."""
    idx = index()
    reference = global_stream([TokenWindowLoader(idx, 2, seed=4, rank=r, world_size=4) for r in range(4)], 30)
    before = [TokenWindowLoader(idx, 2, seed=4, rank=r, world_size=4) for r in range(4)]
    for loader in before:
        for _, _b in zip(range(13), loader, strict=False):
            pass
    after = [TokenWindowLoader(idx, 4, seed=4, rank=r, world_size=2) for r in range(2)]
    for loader in after:
        loader.load_state_dict(before[0].state_dict())  # the checkpoint holds rank 0's state
    assert global_stream(after, 17) == reference[13 * 8 :]


def test_workers_give_the_same_stream() -> None:
    loader = TokenWindowLoader(index(), 4, seed=5)
    loader.position = 3
    dl = torch.utils.data.DataLoader(WindowBatchDataset(loader), batch_size=None, num_workers=2)
    got = [b for _, b in zip(range(6), dl, strict=False)]
    for k, b in enumerate(got):
        assert torch.equal(b, loader.batch(3 + k))


def test_validation_is_one_ordered_pass_split_by_rank() -> None:
    idx = index()
    rows = []
    for rank in (0, 1):
        val = TokenWindowLoader(idx, 8, rank=rank, world_size=2, shuffle=False, infinite=False)
        batches = list(val)
        assert len(batches) == len(val) and batches[-1].shape[0] <= 8
        rows.append(torch.cat(batches)[:, 0].tolist())
    assert not set(rows[0]) & set(rows[1]) and len(rows[0]) == len(rows[1]) == len(idx) // 2


@pytest.mark.parametrize("num_workers", [0, 2])
def test_lightning_checkpoint_resumes_with_the_next_batch(tmp_path, num_workers: int) -> None:
    """A real Trainer: fit 6 steps with a checkpoint at step 3, resume from it; the batches after the resume
    equal those of the uninterrupted run (Lightning prefetches a batch, which must not be counted), also with
    DataLoader workers (persistent, prefetching ahead)."""
    import lightning as L

    from ablations.data.config import DataConfig, TokenizerConfig
    from ablations.data.datamodule import TokenDataModule

    class Recorder(L.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.w = torch.nn.Parameter(torch.zeros(1))
            self.batches: list[torch.Tensor] = []

        def training_step(self, batch: torch.Tensor, batch_idx: int) -> torch.Tensor:
            self.batches.append(batch.clone())
            return (self.w * batch[:, 0].float().mean()).sum()

        def configure_optimizers(self) -> torch.optim.Optimizer:
            return torch.optim.SGD(self.parameters(), lr=0.0)

    data = DataConfig(embedded_max_bytes=200_000, cache_dir=str(tmp_path), num_proc=1, progress=False)
    tok = TokenizerConfig(vocab_size=400, cache_dir=str(tmp_path))

    def fit(max_steps: int, ckpt_path: str | None = None) -> tuple[Recorder, TokenDataModule]:
        module, dm = (
            Recorder(),
            TokenDataModule(data, tok, seq_len=32, micro_batch_size=2, seed=11, num_workers=num_workers),
        )
        trainer = L.Trainer(
            max_steps=max_steps, accelerator="cpu", logger=False, enable_progress_bar=False,
            enable_model_summary=False, limit_val_batches=0, default_root_dir=tmp_path,
            callbacks=[L.pytorch.callbacks.ModelCheckpoint(dirpath=tmp_path / "ckpt", every_n_train_steps=3, save_top_k=-1)],
        )  # fmt: skip
        trainer.fit(module, datamodule=dm, ckpt_path=ckpt_path)
        return module, dm

    full, full_dm = fit(6)
    assert full_dm.train_dataloader().persistent_workers == (num_workers > 0)
    assert full_dm.tokens_seen == 6 * 2 * 32 and full_dm.manifest["tokens"] > 0
    ckpt = next((tmp_path / "ckpt").glob("*step=3.ckpt"))
    assert torch.load(ckpt, weights_only=True)["TokenDataModule"]["train"]["samples"] == 3 * 2
    resumed, resumed_dm = fit(6, str(ckpt))
    assert len(resumed.batches) == 3
    for expected, got in zip(full.batches[3:], resumed.batches, strict=True):
        assert torch.equal(expected, got)
    assert resumed_dm.tokens_seen == full_dm.tokens_seen


FD_PROBE = """
import json, resource, sys
from pathlib import Path
import numpy as np
from ablations.data.loader import TokenWindowLoader, WindowIndex
from ablations.data.shards import open_split
resource.setrlimit(resource.RLIMIT_NOFILE, (256, 256))
manifest = json.loads(Path(sys.argv[1], "manifest.json").read_text())
index = WindowIndex(open_split(Path(sys.argv[1]), manifest, "train", max_open=int(sys.argv[2])), 8)
loader = TokenWindowLoader(index, 64, seed=0)
seen = set()
for _, batch in zip(range(400), loader):
    seen.update((batch[:, 0] // 100).tolist())
print(len(seen))
"""


@pytest.mark.parametrize("max_open", [128, 100_000])
def test_2000_shards_under_ulimit_256(tmp_path, max_open: int) -> None:
    """Every one of 2,000 shards is read with at most 256 descriptors; without the cap it runs out."""
    import json
    import subprocess
    import sys

    shards = []
    for s in range(2000):
        np.arange(s * 100, (s + 1) * 100, dtype=np.uint32).tofile(tmp_path / f"train_{s:06d}.bin")
        shards.append({"file": f"train_{s:06d}.bin", "tokens": 100})
    manifest = {"dtype": "uint32", "splits": {"train": {"shards": shards}}}
    (tmp_path / "manifest.json").write_text(json.dumps(manifest))
    run = subprocess.run(
        [sys.executable, "-c", FD_PROBE, str(tmp_path), str(max_open)], capture_output=True, text=True
    )
    if max_open == 128:
        assert run.returncode == 0, run.stderr
        assert int(run.stdout) == 2000
    else:
        assert run.returncode != 0 and "Too many open files" in run.stderr
