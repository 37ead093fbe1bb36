"""`TokenDataModule`: the data pipeline as a Lightning `LightningDataModule` (a thin wrapper).

    dm = TokenDataModule(DataConfig(...), TokenizerConfig(...), seq_len=2048, micro_batch_size=32, seed=0)
    trainer.fit(module, datamodule=dm)

`prepare_data` trains/loads the tokenizer and builds the shards under a file lock in the cache directory, so
whichever process comes first builds them and every other rank, node or job waits and reuses them; `setup`
opens them on every rank. Train batches are LongTensor [micro_batch_size, seq_len + 1] (inputs `[:, :-1]`,
targets `[:, 1:]`), disjoint per rank, from an infinite seeded stream; validation is one ordered pass over
the held-out documents (its last batch may be smaller). `state_dict` holds the number of global training samples
consumed, so a run resumed from a Lightning checkpoint (on any number of ranks with the same global batch)
continues with exactly the next batch.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import lightning as L
import torch

from ablations.data.build import prepare_locked
from ablations.data.config import DataConfig, TokenizerConfig
from ablations.data.loader import TokenWindowLoader, WindowBatchDataset, WindowIndex
from ablations.data.shards import open_split, read_manifest
from ablations.data.tokenizer import load_tokenizer

GPU_LOADER_WORKERS = 4  # enough to keep a GPU fed from memory-mapped shards (the work is slicing + copying)


def loader_workers(configured: int | None, accelerator: str) -> int:
    """DataLoader workers: the configured number, else 0 on CPU (the main process keeps up with a tiny
    model) and GPU_LOADER_WORKERS on an accelerator."""
    if configured is not None:
        return configured
    return 0 if accelerator == "cpu" else GPU_LOADER_WORKERS


class TokenDataModule(L.LightningDataModule):
    def __init__(
        self,
        data: DataConfig,
        tokenizer: TokenizerConfig,
        seq_len: int,
        micro_batch_size: int,
        seed: int = 0,
        num_workers: int = 0,
        val_micro_batch_size: int | None = None,
    ) -> None:
        super().__init__()
        self.data_cfg = data
        self.tokenizer_cfg = tokenizer
        self.seq_len, self.micro_batch_size, self.seed = int(seq_len), int(micro_batch_size), int(seed)
        self.num_workers = num_workers
        self.val_micro_batch_size = val_micro_batch_size or micro_batch_size
        self.shard_dir: Path | None = None
        self.manifest: dict[str, Any] = {}
        """The shard manifest (tokenizer, source, hashes, token counts), for the result record."""
        self.train_loader: TokenWindowLoader | None = None
        self.val_loader: TokenWindowLoader | None = None
        self._tokenizer: Any = None
        self._pending_state: dict[str, Any] | None = None

    @property
    def tokenizer(self) -> Any:
        if self._tokenizer is None:
            self._tokenizer = load_tokenizer(self.tokenizer_cfg, self.data_cfg)
        return self._tokenizer

    @property
    def tokens_seen(self) -> int:
        """Training target tokens consumed so far by all ranks (global samples · seq_len)."""
        return self.train_loader.tokens_seen if self.train_loader is not None else 0

    def prepare_data(self) -> None:
        if self.shard_dir is None:
            self._tokenizer, self.shard_dir = prepare_locked(self.data_cfg, self.tokenizer_cfg)

    def setup(self, stage: str | None = None) -> None:
        if self.train_loader is not None:
            return
        self.prepare_data()  # a no-op after prepare_data; plain use (no Trainer) builds the shards here
        assert self.shard_dir is not None
        self.manifest = read_manifest(self.shard_dir, verify_hashes=False)
        rank, world = self._rank_and_world()
        where = str(self.shard_dir)
        train = WindowIndex(
            open_split(self.shard_dir, self.manifest, "train"), self.seq_len, f"{where} (train)"
        )
        # the epoch orders are computed once and memory-mapped by every rank (beside the shards' cache)
        orders = Path(self.data_cfg.cache_dir).expanduser() / "orders" / self.shard_dir.name
        self.train_loader = TokenWindowLoader(
            train, self.micro_batch_size, self.seed, rank, world, order_dir=orders
        )
        if self.manifest["splits"]["val"]["tokens"] > self.seq_len:
            val = WindowIndex(
                open_split(self.shard_dir, self.manifest, "val"), self.seq_len, f"{where} (val)"
            )
            self.val_loader = TokenWindowLoader(
                val, self.val_micro_batch_size, self.seed, rank, world, shuffle=False, infinite=False
            )
        if self._pending_state is not None:
            self.train_loader.load_state_dict(self._pending_state)
            self._pending_state = None

    def _rank_and_world(self) -> tuple[int, int]:
        trainer = self._trainer_or_none()
        return (trainer.global_rank, trainer.world_size) if trainer is not None else (0, 1)

    def _trainer_or_none(self) -> Any:
        return getattr(self, "trainer", None)

    def train_dataloader(self) -> torch.utils.data.DataLoader:
        assert self.train_loader is not None, "call setup() first"
        # without a trainer nobody calls on_before_batch_transfer: count batches as they are yielded
        advance = self._trainer_or_none() is None and self.num_workers == 0
        return self._dataloader(WindowBatchDataset(self.train_loader, advance=advance))

    def val_dataloader(self) -> torch.utils.data.DataLoader | list:
        if self.val_loader is None:
            return []  # no held-out split (val_fraction: 0 or too few tokens)
        return self._dataloader(WindowBatchDataset(self.val_loader))

    def _dataloader(self, dataset: WindowBatchDataset) -> torch.utils.data.DataLoader:
        return torch.utils.data.DataLoader(
            dataset,
            batch_size=None,  # the dataset yields whole batches
            num_workers=self.num_workers,
            pin_memory=torch.cuda.is_available(),
            persistent_workers=self.num_workers > 0,  # no worker restart per validation or epoch
        )

    def on_before_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        # Lightning calls this for the batch it is about to train on (after its one-batch prefetch), so
        # counting here makes the saved position the batches actually trained on.
        trainer = self._trainer_or_none()
        if trainer is not None and trainer.training and self.train_loader is not None:
            self.train_loader.position += 1
        return batch

    def state_dict(self) -> dict[str, Any]:
        return {"train": self.train_loader.state_dict()} if self.train_loader is not None else {}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        if "train" not in state_dict:
            return
        if self.train_loader is None:
            self._pending_state = state_dict["train"]  # restored before setup(): apply once it runs
        else:
            self.train_loader.load_state_dict(state_dict["train"])
