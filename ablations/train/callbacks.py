"""Training callbacks: throughput/MFU monitor, progress bar, pre-emption signals, last checkpoint (saved and
requeued when pre-empted; killed writes' partial files removed)."""

from __future__ import annotations

import logging
import os
import resource
import subprocess
import time
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import RichProgressBar
from lightning.pytorch.utilities.exceptions import SIGTERMException

from ablations.train.checkpoint_io import remove_partial_checkpoints
from ablations.train.loggers import JsonlLogger
from ablations.train.perf import mfu, peak_tflops
from ablations.train.signals import PREEMPTION

log = logging.getLogger(__name__)


class MetricsRewind(L.Callback):
    """At the start of (resumed) training: metrics.jsonl keeps only the steps before the one training
    continues from, so replayed steps are never logged twice."""

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        for logger in trainer.loggers:
            if isinstance(logger, JsonlLogger):
                logger.rewind(trainer.global_step)


class ThroughputMonitor(L.Callback):
    """Every `every_n_steps` optimizer steps: tokens seen, tokens/s, TFLOP/s, MFU and peak memory.

    FLOPs come from `ablations.model.counts.flops_per_token` (the one MFU formula, see ablations.train.perf).
    """

    def __init__(
        self, flops_per_token: int, every_n_steps: int, peak_tflops_per_device: float | None = None
    ) -> None:
        self.flops_per_token = flops_per_token
        self.every_n_steps = every_n_steps
        self.peak_override = peak_tflops_per_device
        self.tokens_per_s: float | None = None
        self.loss: float | None = None
        """train/loss at the last logging step (read once per window, for the progress bar)."""
        self._last: tuple[float, int] | None = None

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._last = (time.perf_counter(), pl_module.tokens_seen)

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, *args: Any) -> None:
        step = trainer.global_step
        if step == 0 or step % self.every_n_steps or trainer.fit_loop._should_accumulate():
            return
        if pl_module.device.type == "cuda":
            torch.cuda.synchronize()  # time finished work, not queued kernels
        now, tokens = time.perf_counter(), pl_module.tokens_seen
        last_time, last_tokens = self._last or (now, tokens)
        self._last = (now, tokens)
        if now <= last_time or tokens <= last_tokens:
            return
        self.tokens_per_s = (tokens - last_tokens) / (now - last_time)
        loss = trainer.callback_metrics.get("train/loss")
        self.loss = float(loss) if loss is not None else None
        peak = self.peak_override or self._device_peak(pl_module.device)
        metrics: dict[str, Any] = {
            "train/tokens": tokens,
            "perf/tokens_per_s": self.tokens_per_s,
            "perf/tflops": self.tokens_per_s * self.flops_per_token / 1e12,
            "perf/peak_mem_gb": self._peak_memory_gb(pl_module.device),
        }
        utilisation = mfu(self.tokens_per_s, self.flops_per_token, trainer.world_size, peak)
        if utilisation is not None:
            metrics["perf/mfu"] = utilisation
        for (
            logger
        ) in trainer.loggers:  # keyed like Lightning's rows: the 0-based index of the step just taken
            logger.log_metrics(metrics, step=step - 1)

    @staticmethod
    def _device_peak(device: torch.device) -> float | None:
        return peak_tflops(torch.cuda.get_device_name(device)) if device.type == "cuda" else None

    @staticmethod
    def _peak_memory_gb(device: torch.device) -> float:
        if device.type == "cuda":
            return torch.cuda.max_memory_allocated(device) / 2**30
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB on Linux


class TokenProgressBar(RichProgressBar):
    """Lightning's rich bar (with its ETA) plus the loss and throughput of the last logging window (read by
    the monitor at log time, so the bar adds no host sync per batch)."""

    def __init__(self, monitor: ThroughputMonitor) -> None:
        super().__init__()
        self.monitor = monitor

    def get_metrics(self, trainer: L.Trainer, pl_module: L.LightningModule) -> dict[str, Any]:
        metrics = super().get_metrics(trainer, pl_module)
        if self.monitor.loss is not None:
            metrics["loss"] = f"{self.monitor.loss:.3f}"
        if self.monitor.tokens_per_s:
            metrics["tok/s"] = f"{self.monitor.tokens_per_s:,.0f}"
        return metrics


class PreemptionSignals(L.Callback):
    """SIGTERM (SLURM pre-emption, `scancel`) or SIGUSR2 (submitit's and `--signal`'s time-limit warning) on
    ANY rank, received during training or before it (the flag of `ablations.train.signals`, installed at job
    start), stops every rank at the next optimizer-step boundary, through the flag Lightning's own SIGTERM
    handling reads; `LastCheckpoint` then writes last.ckpt and requeues.

    At train start the note-only handler goes back over Lightning's (which broadcasts from inside the
    handler, so a signal reaching only a non-zero rank deadlocks); Lightning's teardown restores the
    handlers it found before fit. Ranks agree on the flag with one boolean all-reduce per optimizer step."""

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        PREEMPTION.install()

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, *args: Any) -> None:
        if trainer.fit_loop._should_accumulate():
            return
        stop = trainer.strategy.reduce_boolean_decision(PREEMPTION.received is not None, all=False)
        if stop:
            log.warning(
                "pre-emption signal (%s): stopping after step %d to checkpoint",
                PREEMPTION.received.name if PREEMPTION.received else "on another rank",
                trainer.global_step,
            )
            trainer._signal_connector.received_sigterm = (
                True  # Lightning raises SIGTERMException after this step
            )


class LastCheckpoint(L.Callback):
    """`last.ckpt` at the end of training, and when pre-empted (see `PreemptionSignals`) at the step
    boundary where Lightning stops, followed by `scontrol requeue` of the SLURM job (the requeued job runs
    the same command in the same run directory and resumes: ckpt_path=auto). Saved by every rank (a
    collective under FSDP); written atomically by `AtomicCheckpointIO`. At fit start, the partial files of
    checkpoint writes a kill interrupted are removed."""

    def __init__(self, last_ckpt_path: str | Path) -> None:
        self.last_ckpt_path = Path(last_ckpt_path)

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.is_global_zero:  # the run dir's holder, before any checkpoint of this run is written
            remove_partial_checkpoints(self.last_ckpt_path.parent)

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.save(trainer)

    def save(self, trainer: L.Trainer) -> None:
        """The whole training state (weights_only=False: also optimizer, scheduler, loops, callbacks), said
        explicitly: left unset, Lightning logs "`weights_only` was not set, defaulting to False", which reads
        like an unsafe load. It is a save; every load of a checkpoint is weights_only=True."""
        trainer.save_checkpoint(self.last_ckpt_path, weights_only=False)

    def on_exception(
        self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException
    ) -> None:
        if not isinstance(exception, SIGTERMException):
            return
        self.save(trainer)
        job_id = os.environ.get("SLURM_JOB_ID")
        if trainer.is_global_zero and job_id:
            # our handler replaced submitit's, so the job asks SLURM itself (an array task's own job id)
            subprocess.run(["scontrol", "requeue", job_id], check=False)
