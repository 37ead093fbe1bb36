"""Fixed-length token windows over shards: seeded shuffling, a disjoint slice per rank, exact resume.

Plain torch and numpy (no Lightning), so any training loop can use it:

    loader = TokenWindowLoader(WindowIndex(open_split(dir, manifest, "train"), seq_len=2048), 32, seed=0,
                               rank=rank, world_size=world_size)
    for batch in loader:            # LongTensor [micro_batch_size, seq_len + 1]
        inputs, targets = batch[:, :-1], batch[:, 1:]
    state = loader.state_dict()     # → checkpoint; loader.load_state_dict(state) continues with the next batch

Windows: a split's shards are cut into windows of `seq_len + 1` tokens with stride `seq_len` (consecutive
windows share one token, so every token but the first of a shard is a target exactly once). A window never
crosses a shard boundary; a shard's last `< seq_len` tokens are left out.

Order: each epoch is a seeded permutation of every window of every shard (global, as OLMo's and Megatron's
indices), saved once per (seq_len, windows, seed, epoch) as a uint32/uint64 `.npy` in `order_dir` and
memory-mapped (or held in memory without `order_dir`). The stream is the epochs one after another; each
batch step takes the next `micro_batch_size · world_size` samples of it, and rank r takes the r-th slice,
so ranks are disjoint and cover every window once per epoch. Validation is one ordered pass instead: rank
r takes windows r, r+W, r+2W, … (equal counts per rank).

State: the number of GLOBAL samples consumed. Batch k is a pure function of (seed, samples at resume, k,
rank, world_size, windows), so restoring it continues exactly where an uninterrupted run would be, even
with another world size: the same global batch draws the same samples whoever holds them.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from filelock import FileLock

from ablations.records.atomic import atomic_write
from ablations.records.errors import DataError


class WindowIndex:
    """Windows of `seq_len + 1` tokens (stride `seq_len`) over token arrays (or lazily mapped `Shard`s)."""

    def __init__(self, shards: Sequence[Any], seq_len: int, name: str = "shards") -> None:
        if seq_len < 1:
            raise DataError(f"seq_len={seq_len} must be >= 1")
        self.shards, self.seq_len, self.name = shards, seq_len, name
        counts = np.array([max(0, (len(s) - 1) // seq_len) for s in shards], dtype=np.int64)
        if counts.sum() == 0:
            longest = max((len(s) for s in shards), default=0)
            raise DataError(
                f"{name}: seq_len={seq_len} is longer than any shard (the longest has {longest} tokens; a window "
                f"needs seq_len + 1 = {seq_len + 1}). Use a smaller seq_len or more data."
            )
        self.starts = np.concatenate([[0], np.cumsum(counts)])

    def __len__(self) -> int:
        return int(self.starts[-1])

    def gather(self, window_ids: np.ndarray) -> torch.Tensor:
        """The windows with these ids as a LongTensor [len(window_ids), seq_len + 1]."""
        shard_of = np.searchsorted(self.starts, window_ids, side="right") - 1
        out = np.empty((len(window_ids), self.seq_len + 1), dtype=np.int64)
        for row, (w, s) in enumerate(zip(window_ids.tolist(), shard_of.tolist(), strict=True)):
            begin = (w - int(self.starts[s])) * self.seq_len
            out[row] = self.shards[s][begin : begin + self.seq_len + 1]
        return torch.from_numpy(out)


def epoch_order(n: int, seed: int, epoch: int, order_file: Path | None) -> np.ndarray:
    """A seeded permutation of `n` window ids for one epoch (uint32 below 2^32 windows, else uint64).

    With `order_file` it is computed once (by the first process to take the file's lock), saved, and
    memory-mapped by every rank after, so a corpus of 10^8 windows costs each rank page cache, not RAM.
    """
    if order_file is None:
        return _permutation(n, seed, epoch)
    if not order_file.is_file():
        order_file.parent.mkdir(parents=True, exist_ok=True)
        with FileLock(order_file.with_name(order_file.name + ".lock")):
            if not order_file.is_file():
                atomic_write(order_file, lambda tmp: _save_npy(tmp, _permutation(n, seed, epoch)))
    order = np.load(order_file, mmap_mode="r")
    if order.shape != (n,):
        raise DataError(f"{order_file}: holds {order.shape[0]} window ids, the shards have {n} windows")
    return order


def _save_npy(path: Path, array: np.ndarray) -> None:
    with path.open("wb") as f:  # a file object: np.save given a path would append ".npy" to it
        np.save(f, array)


def _permutation(n: int, seed: int, epoch: int) -> np.ndarray:
    ids = np.arange(n, dtype=np.uint32 if n < 1 << 32 else np.uint64)
    np.random.default_rng([seed, epoch]).shuffle(ids)
    return ids


class TokenWindowLoader:
    """Batches of windows for one rank: infinite and globally shuffled (training) or one ordered pass
    (validation)."""

    def __init__(
        self,
        index: WindowIndex,
        micro_batch_size: int,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
        shuffle: bool = True,
        infinite: bool = True,
        order_dir: Path | None = None,
    ) -> None:
        if micro_batch_size < 1 or not 0 <= rank < world_size:
            raise DataError(
                f"micro_batch_size={micro_batch_size}, rank={rank}, world_size={world_size}: invalid"
            )
        self.index, self.micro_batch_size, self.seed = index, micro_batch_size, seed
        self.rank, self.world_size, self.shuffle, self.infinite = rank, world_size, shuffle, infinite
        self.order_dir = order_dir
        # validation: equal for every rank, so DDP ranks stay in step
        self.per_rank = len(index) // world_size
        if self.per_rank == 0:
            raise DataError(
                f"{index.name}: {len(index)} windows of seq_len={index.seq_len} cannot give each of "
                f"{world_size} ranks one window; use a smaller seq_len or more data"
            )
        self.base = 0
        """Global samples consumed before this loader's first batch (set by `load_state_dict`)."""
        self.position = 0
        """Batches this rank consumed since `base` (the next batch to yield is batch `position`)."""
        self._orders: dict[int, np.ndarray] = {}

    @property
    def seq_len(self) -> int:
        return self.index.seq_len

    @property
    def global_micro_batch(self) -> int:
        """Samples every rank together takes per batch: micro_batch_size · world_size."""
        return self.micro_batch_size * self.world_size

    @property
    def samples(self) -> int:
        """Global samples consumed so far, by all ranks together (the stream's resumable state)."""
        return self.base + self.position * self.global_micro_batch

    @property
    def tokens_per_batch(self) -> int:
        """Target tokens of one full batch: micro_batch_size · seq_len."""
        return self.micro_batch_size * self.seq_len

    @property
    def tokens_seen(self) -> int:
        """Target tokens consumed so far by all ranks (exact: training batches are always full)."""
        return self.samples * self.seq_len

    def __len__(self) -> int:
        """Batches in one pass (validation); the training stream is infinite."""
        if self.infinite:
            raise TypeError("an infinite TokenWindowLoader has no length; bound training by steps or tokens")
        return -(-self.per_rank // self.micro_batch_size)

    def window_ids(self, batch: int) -> np.ndarray:
        """Window ids of batch number `batch` of this rank (a pure function of the configuration)."""
        m = self.micro_batch_size
        if not self.infinite:  # one ordered pass: rank r takes windows r, r + W, r + 2W, …
            samples = np.arange(batch * m, min((batch + 1) * m, self.per_rank), dtype=np.int64)
            return self._lookup(samples * self.world_size + self.rank)
        first = self.base + batch * self.global_micro_batch + self.rank * m
        return self._lookup(np.arange(first, first + m, dtype=np.int64))

    def _lookup(self, samples: np.ndarray) -> np.ndarray:
        """Window ids at these global positions of the stream (epoch after epoch, each a new permutation)."""
        if not self.shuffle:
            return samples % len(self.index)
        epochs, within = np.divmod(samples, len(self.index))
        out = np.empty_like(samples)
        for e in np.unique(epochs).tolist():
            mask = epochs == e
            out[mask] = self._order(e)[within[mask]]
        return out

    def batch(self, batch: int) -> torch.Tensor:
        """Batch number `batch` of this rank: LongTensor [micro_batch_size, seq_len + 1]."""
        return self.index.gather(self.window_ids(batch))

    def iter_batches(self, start: int, step: int = 1) -> Iterator[torch.Tensor]:
        """Batches start, start + step, … (does not move `position`; workers use step = num_workers)."""
        k = start
        while self.infinite or k < len(self):
            yield self.batch(k)
            k += step

    def __iter__(self) -> Iterator[torch.Tensor]:
        """Yield from `position` on, counting each batch as consumed when it is handed out."""
        for batch in self.iter_batches(self.position):
            self.position += 1
            yield batch

    def _order(self, epoch: int) -> np.ndarray:
        if epoch not in self._orders:
            n = len(self.index)
            file = None
            if self.order_dir is not None:
                file = self.order_dir / f"order-seq{self.seq_len}-n{n}-seed{self.seed}-epoch{epoch}.npy"
            self._orders = {epoch: epoch_order(n, self.seed, epoch, file)}  # one epoch at a time
        return self._orders[epoch]

    def state_dict(self) -> dict[str, Any]:
        return {
            "samples": self.samples,
            "tokens_seen": self.tokens_seen,
            "seed": self.seed,
            "seq_len": self.seq_len,
            "windows": len(self.index),
            "world_size": self.world_size,
            "micro_batch_size": self.micro_batch_size,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue from a saved number of global samples. The world size and micro-batch may change (rank
        r of W takes its slice of each global batch, so the global order goes on unchanged); the stream
        itself (seed, seq_len, windows) must be the same one, else exact resume is impossible."""
        mine = self.state_dict()
        differ = [
            f"{k}: saved {state[k]} vs now {mine[k]}"
            for k in ("seed", "seq_len", "windows")
            if k in state and state[k] != mine[k]
        ]
        if differ or "samples" not in state:
            raise DataError(
                f"{self.index.name}: cannot resume the data stream exactly, it changed ({'; '.join(differ) or 'no samples count'})"
            )
        self.base, self.position = int(state["samples"]), 0


class WindowBatchDataset(torch.utils.data.IterableDataset):
    """A `TokenWindowLoader` as an IterableDataset (use `DataLoader(ds, batch_size=None)`).

    It starts at the loader's `position` when iteration begins; with `num_workers = n`, worker i makes batches
    start + i, start + i + n, …, and DataLoader's round-robin over workers restores the exact order.
    `advance`: count batches as consumed when yielded (plain loops); Lightning counts them instead at
    `on_before_batch_transfer`, because it prefetches a batch before training on the previous one.
    """

    def __init__(self, loader: TokenWindowLoader, advance: bool = False) -> None:
        self.loader, self.advance = loader, advance

    def __len__(self) -> int:
        return len(self.loader)  # TypeError for the infinite training stream: DataLoader then has no length

    def __iter__(self) -> Iterator[torch.Tensor]:
        info = torch.utils.data.get_worker_info()
        if info is None:
            if self.advance:
                yield from self.loader
            else:
                yield from self.loader.iter_batches(self.loader.position)
            return
        yield from self.loader.iter_batches(self.loader.position + info.id, step=info.num_workers)
