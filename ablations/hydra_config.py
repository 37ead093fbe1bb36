"""Composing the Hydra config tree outside `run.py` (CLIs, tests) and turning its nodes into typed configs."""

from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from ablations.model_config import ModelConfig

CONF_DIR = Path(__file__).resolve().parent.parent / "conf"


def compose_config(overrides: list[str] | None = None, config_name: str = "config") -> DictConfig:
    """`conf/<config_name>.yaml` with Hydra overrides applied, as `run.py` would see it (hydra node included)."""
    from hydra import compose, initialize_config_dir

    if not CONF_DIR.is_dir():
        raise FileNotFoundError(
            f"config tree not found at {CONF_DIR}: install the project with `pip install -e .`"
        )
    from ablations.sweep import apply_solve, register_resolvers

    register_resolvers()
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose(config_name=config_name, overrides=overrides or [], return_hydra_config=True)
    return apply_solve(cfg)  # solved widths, exactly as run.py applies them


def group_choice(cfg: DictConfig, group: str) -> str:
    """The option chosen for a config group (e.g. `model` → `mobilellm_125m`), or '?' if unknown."""
    try:
        return str(cfg.hydra.runtime.choices[group])
    except Exception:  # composed without the hydra node
        return "?"


def model_config_from(cfg: DictConfig) -> ModelConfig:
    """The validated `ModelConfig` of a composed job config (raises ConfigError naming broken rules)."""
    return ModelConfig.from_dict(OmegaConf.to_container(cfg.model, resolve=True))  # type: ignore[arg-type]


def resolved_config(cfg: DictConfig) -> dict:
    """The job's config as plain data, interpolations resolved, without Hydra's own node."""
    return {
        key: OmegaConf.to_container(cfg[key], resolve=True) if OmegaConf.is_config(cfg[key]) else cfg[key]
        for key in cfg
        if key != "hydra"
    }
