"""Hydra's config dumps (`.hydra/config.yaml`, `hydra.yaml`, `overrides.yaml`, a sweep's `multirun.yaml`)
rewritten with their secrets masked: Hydra writes them, with every command-line value, before the job starts."""

from __future__ import annotations

from pathlib import Path

from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import OmegaConf

from ablations.records.atomic import atomic_write_text
from ablations.records.secrets import mask_secrets


def mask_yaml_file(path: Path) -> None:
    """Rewrite one YAML file with its secrets masked (unchanged files are left alone)."""
    plain = OmegaConf.to_container(OmegaConf.load(path), resolve=False)
    masked = mask_secrets(plain)
    if masked != plain:
        atomic_write_text(path, OmegaConf.to_yaml(OmegaConf.create(masked)))


def mask_hydra_dumps() -> None:
    """Mask this process's Hydra dumps: its output subdir (`.hydra`, or a DDP rank's `.pl_hydra_N`) and, in a
    multirun, the sweep dir's `multirun.yaml`."""
    hydra_cfg = HydraConfig.get()
    paths: list[Path] = []
    if hydra_cfg.output_subdir is not None:
        paths += sorted((Path(hydra_cfg.runtime.output_dir) / hydra_cfg.output_subdir).glob("*.yaml"))
    if hydra_cfg.mode == RunMode.MULTIRUN:
        paths.append(Path(hydra_cfg.sweep.dir) / "multirun.yaml")
    for path in paths:
        if path.is_file():
            mask_yaml_file(path)
