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

Order: each epoch is a seeded permutation of all windows, drawn in two levels (a permutation of blocks of
`SHUFFLE_BLOCK` windows, then one within each block) so it costs O(windows / block) memory at any scale; a
corpus of at most one block is fully shuffled. Rank r of W takes positions r, r+W, r+2W, … of that order, so
ranks are disjoint and, together, cover every window but fewer than W per epoch. The training stream is
infinite: epoch e+1 (a new permutation) follows epoch e without a gap, and a batch may straddle them.

State: the number of batches this rank has consumed. Batch k is a pure function of (seed, k, rank,
world_size, windows), so restoring k continues exactly where an uninterrupted run would be.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import torch

from ablations.records.errors import DataError

SHUFFLE_BLOCK = 1 << 16  # windows per shuffle block (2^16 · 2049 tokens ≈ 134M tokens at seq 2048)


class WindowIndex:
    """Windows of `seq_len + 1` tokens (stride `seq_len`) over a list of token arrays (memmapped shards)."""

    def __init__(self, shards: list[np.ndarray], seq_len: int, name: str = "shards") -> None:
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


class EpochOrder:
    """A seeded permutation of `n` window ids for one epoch (identity when `shuffle` is false)."""

    def __init__(self, n: int, seed: int, epoch: int, shuffle: bool, block: int = SHUFFLE_BLOCK) -> None:
        self.n, self.seed, self.epoch, self.shuffle, self.block = n, seed, epoch, shuffle, block
        n_blocks = -(-n // block)
        sizes = np.full(n_blocks, block, dtype=np.int64)
        sizes[-1] = n - block * (n_blocks - 1)
        self.block_order = np.random.default_rng([seed, epoch]).permutation(n_blocks)
        self.offsets = np.concatenate([[0], np.cumsum(sizes[self.block_order])])
        self._inner: dict[int, np.ndarray] = {}

    def __getitem__(self, positions: np.ndarray) -> np.ndarray:
        if not self.shuffle:
            return positions
        slot = np.searchsorted(self.offsets, positions, side="right") - 1
        out = np.empty_like(positions)
        for i, (s, p) in enumerate(zip(slot.tolist(), positions.tolist(), strict=True)):
            b = int(self.block_order[s])
            out[i] = (
                b * self.block
                + self._within(b, int(self.offsets[s + 1] - self.offsets[s]))[p - self.offsets[s]]
            )
        return out

    def _within(self, b: int, size: int) -> np.ndarray:
        if b not in self._inner:
            if len(self._inner) >= 4:  # batches walk through blocks in order: a few stay hot
                self._inner.pop(next(iter(self._inner)))
            self._inner[b] = np.random.default_rng([self.seed, self.epoch, b]).permutation(size)
        return self._inner[b]


class TokenWindowLoader:
    """Batches of windows for one rank: infinite and shuffled (training) or one ordered pass (validation)."""

    def __init__(
        self,
        index: WindowIndex,
        micro_batch_size: int,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
        shuffle: bool = True,
        infinite: bool = True,
    ) -> None:
        if micro_batch_size < 1 or not 0 <= rank < world_size:
            raise DataError(
                f"micro_batch_size={micro_batch_size}, rank={rank}, world_size={world_size}: invalid"
            )
        self.index, self.micro_batch_size, self.seed = index, micro_batch_size, seed
        self.rank, self.world_size, self.shuffle, self.infinite = rank, world_size, shuffle, infinite
        self.per_rank = len(index) // world_size  # equal for every rank, so DDP ranks stay in step
        if self.per_rank == 0:
            raise DataError(
                f"{index.name}: {len(index)} windows of seq_len={index.seq_len} cannot give each of "
                f"{world_size} ranks one window; use a smaller seq_len or more data"
            )
        self.position = 0
        """Batches consumed so far (the next batch to yield is batch `position`)."""
        self._orders: dict[int, EpochOrder] = {}

    @property
    def seq_len(self) -> int:
        return self.index.seq_len

    @property
    def tokens_per_batch(self) -> int:
        """Target tokens of one full batch: micro_batch_size · seq_len."""
        return self.micro_batch_size * self.seq_len

    @property
    def tokens_seen(self) -> int:
        """Target tokens in the batches consumed so far (exact: training batches are always full)."""
        return self.position * self.tokens_per_batch

    def __len__(self) -> int:
        """Batches in one pass (validation); the training stream is infinite."""
        if self.infinite:
            raise TypeError("an infinite TokenWindowLoader has no length; bound training by steps or tokens")
        return -(-self.per_rank // self.micro_batch_size)

    def window_ids(self, batch: int) -> np.ndarray:
        """Window ids of batch number `batch` of this rank (a pure function of the configuration)."""
        samples = np.arange(
            batch * self.micro_batch_size, (batch + 1) * self.micro_batch_size, dtype=np.int64
        )
        if not self.infinite:
            samples = samples[samples < self.per_rank]
        epochs, within = np.divmod(samples, self.per_rank)
        positions = within * self.world_size + self.rank
        out = np.empty_like(positions)
        for e in np.unique(epochs).tolist():
            mask = epochs == e
            out[mask] = self._order(e)[positions[mask]]
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

    def _order(self, epoch: int) -> EpochOrder:
        if epoch not in self._orders:
            self._orders = {epoch: EpochOrder(len(self.index), self.seed, epoch, self.shuffle)}
        return self._orders[epoch]

    def state_dict(self) -> dict[str, Any]:
        return {
            "position": self.position,
            "tokens_seen": self.tokens_seen,
            "seed": self.seed,
            "world_size": self.world_size,
            "micro_batch_size": self.micro_batch_size,
            "seq_len": self.seq_len,
            "windows": len(self.index),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue from a saved position; the stream must be the same one (else exact resume is impossible)."""
        mine = self.state_dict()
        differ = [
            f"{k}: saved {state[k]} vs now {mine[k]}"
            for k in ("seed", "world_size", "micro_batch_size", "seq_len", "windows")
            if k in state and state[k] != mine[k]
        ]
        if differ:
            raise DataError(
                f"{self.index.name}: cannot resume the data stream exactly, it changed ({'; '.join(differ)})"
            )
        self.position = int(state["position"])


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
