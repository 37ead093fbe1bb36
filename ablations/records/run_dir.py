"""The layout of a run directory: every file and folder a job writes, and the analysis reads, named once.

    <run dir>/
      result.json        the result record (`ablations.records.result`)
      metrics.jsonl      one row per logged step (`ablations.records.metrics`)
      job_config.json    the config the run's checkpoints were trained with (resume compares against it)
      checkpoints/       last.ckpt (a file, or a distributed checkpoint directory under FSDP2), step-*.ckpt
      model/             the trained model in the native format, with its tokenizer
      validation.json    the final validation and its per-document sums
      eval_result.json   the evaluation record (`python -m ablations.evaluate`; a job puts it in result.json)
      eval_samples/      per-row outputs of each scored task
      device/            the on-device measurement (`python -m ablations.device`, a job's device stage):
        program.pte      the ExecuTorch program the model was exported to
        device.json      its measurement (a job puts it in result.json's `device`)
      run.log, .hydra/   the job's log and its Hydra config dumps
      .lock              who holds the run dir (`ablations.records.lock`)

Torch-free and import-free: every layer may use it.
"""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar


class RunDir:
    """One run directory; each property is the path of one of its entries, each class constant its name."""

    RECORD: ClassVar[str] = "result.json"
    METRICS: ClassVar[str] = "metrics.jsonl"
    JOB_CONFIG: ClassVar[str] = "job_config.json"
    CHECKPOINTS: ClassVar[str] = "checkpoints"
    LAST_CHECKPOINT: ClassVar[str] = "last.ckpt"
    PERIODIC_CHECKPOINTS: ClassVar[str] = "step-*.ckpt"
    MODEL: ClassVar[str] = "model"
    VALIDATION: ClassVar[str] = "validation.json"
    EVAL_RECORD: ClassVar[str] = "eval_result.json"
    EVAL_SAMPLES: ClassVar[str] = "eval_samples"
    DEVICE: ClassVar[str] = "device"
    DEVICE_PROGRAM: ClassVar[str] = "program.pte"
    DEVICE_RECORD: ClassVar[str] = "device.json"
    LOG: ClassVar[str] = "run.log"
    HYDRA: ClassVar[str] = ".hydra"
    LOCK: ClassVar[str] = ".lock"

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    def __repr__(self) -> str:
        return f"RunDir({str(self.path)!r})"

    @classmethod
    def of_checkpoint(cls, checkpoint: str | Path) -> RunDir | None:
        """The run dir a checkpoint lies in (`<run dir>/checkpoints/…`), or None for one found elsewhere."""
        folder = Path(checkpoint).parent
        return cls(folder.parent) if folder.name == cls.CHECKPOINTS else None

    @property
    def record(self) -> Path:
        return self.path / self.RECORD

    @property
    def metrics(self) -> Path:
        return self.path / self.METRICS

    @property
    def job_config(self) -> Path:
        return self.path / self.JOB_CONFIG

    @property
    def checkpoints(self) -> Path:
        return self.path / self.CHECKPOINTS

    @property
    def last_checkpoint(self) -> Path:
        return self.checkpoints / self.LAST_CHECKPOINT

    def periodic_checkpoints(self) -> list[Path]:
        return list(self.checkpoints.glob(self.PERIODIC_CHECKPOINTS))

    @property
    def model(self) -> Path:
        return self.path / self.MODEL

    @property
    def validation(self) -> Path:
        return self.path / self.VALIDATION

    @property
    def eval_record(self) -> Path:
        return self.path / self.EVAL_RECORD

    @property
    def eval_samples(self) -> Path:
        return self.path / self.EVAL_SAMPLES

    @property
    def device(self) -> Path:
        return self.path / self.DEVICE

    @property
    def device_program(self) -> Path:
        return self.device / self.DEVICE_PROGRAM

    @property
    def device_record(self) -> Path:
        return self.device / self.DEVICE_RECORD

    @property
    def log(self) -> Path:
        return self.path / self.LOG

    @property
    def hydra(self) -> Path:
        return self.path / self.HYDRA

    @property
    def lock(self) -> Path:
        return self.path / self.LOCK
