"""The window loader: rank disjointness and coverage, seeded order, exact resume (plain and via a real
Lightning checkpoint), worker processes giving the same stream."""

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


def test_two_ranks_are_disjoint_and_cover_an_epoch() -> None:
    idx = index()
    per_rank = len(idx) // 2
    seen = []
    for rank in (0, 1):
        loader = TokenWindowLoader(idx, 4, seed=3, rank=rank, world_size=2)
        ids = windows_of(loader, 100)[:per_rank]  # one epoch of this rank
        assert len(set(ids)) == per_rank
        seen.append(set(ids))
    assert not seen[0] & seen[1]
    assert len(seen[0] | seen[1]) == len(idx) - len(idx) % 2  # all but fewer than world_size windows


def test_order_is_seeded_shuffled_and_changes_each_epoch() -> None:
    idx = index()
    a = TokenWindowLoader(idx, 4, seed=1)
    n = len(idx)
    first, second = windows_of(a, n // 4 * 2)[:n], windows_of(a, (2 * n) // 4 + 1)[n : 2 * n]
    assert sorted(first) == sorted(second) == list(range(n))
    assert first != list(range(n)) and first != second
    assert windows_of(TokenWindowLoader(idx, 4, seed=1), 10) == windows_of(a, 10)
    assert windows_of(TokenWindowLoader(idx, 4, seed=2), 10) != windows_of(a, 10)


def test_block_shuffle_is_a_permutation_at_scale() -> None:
    from ablations.data.loader import EpochOrder

    order = EpochOrder(1000, seed=0, epoch=0, shuffle=True, block=64)  # 16 blocks, the last one short
    perm = order[np.arange(1000)]
    assert sorted(perm.tolist()) == list(range(1000)) and perm.tolist() != list(range(1000))


@pytest.mark.parametrize("stop", [5, 26])  # mid-epoch, and past the first epoch boundary
def test_exact_resume_mid_epoch(stop: int) -> None:
    idx = index()
    uninterrupted = TokenWindowLoader(idx, 4, seed=7, rank=1, world_size=2)
    reference = [b for _, b in zip(range(stop + 5), uninterrupted, strict=False)]
    first = TokenWindowLoader(idx, 4, seed=7, rank=1, world_size=2)
    for _, _b in zip(range(stop), first, strict=False):
        pass
    state = first.state_dict()
    assert state["position"] == stop and state["tokens_seen"] == stop * 4 * SEQ
    resumed = TokenWindowLoader(idx, 4, seed=7, rank=1, world_size=2)
    resumed.load_state_dict(state)
    for expected, got in zip(reference[stop:], resumed, strict=False):
        assert torch.equal(expected, got)
    with pytest.raises(DataError, match=r"cannot resume.*micro_batch_size: saved 4 vs now 5"):
        TokenWindowLoader(idx, 5, seed=7, rank=1, world_size=2).load_state_dict(state)


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
    assert torch.load(ckpt, weights_only=False)["TokenDataModule"]["train"]["position"] == 3
    resumed, resumed_dm = fit(6, str(ckpt))
    assert len(resumed.batches) == 3
    for expected, got in zip(full.batches[3:], resumed.batches, strict=True):
        assert torch.equal(expected, got)
    assert resumed_dm.tokens_seen == full_dm.tokens_seen
