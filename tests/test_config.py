"""One source per default: the job schema's dataclasses hold every default; a preset states only what differs
from them (or from the preset it extends); conf/config.yaml holds only the defaults list and Hydra's settings."""

from __future__ import annotations

import dataclasses
import typing
from pathlib import Path
from typing import Any

import pytest
import yaml

from ablations.job.config import CONF_DIR, GROUPS, JobConfig

SCHEMAS = typing.get_type_hints(JobConfig)


def schema_defaults(group: str) -> dict[str, Any]:
    out = {}
    for f in dataclasses.fields(SCHEMAS[group]):
        if f.default is not dataclasses.MISSING:
            out[f.name] = f.default
        elif f.default_factory is not dataclasses.MISSING:
            out[f.name] = f.default_factory()
    return {k: list(v) if isinstance(v, tuple) else v for k, v in out.items()}


def preset(group: str, name: str) -> dict[str, Any]:
    return yaml.safe_load((CONF_DIR / group / f"{name}.yaml").read_text()) or {}


def parents(node: dict[str, Any]) -> list[str]:
    return [p for p in node.get("defaults", []) if isinstance(p, str) and p != "_self_"]


def values_of(group: str, name: str) -> dict[str, Any]:
    """What a preset sets, the presets it extends first."""
    node, values = preset(group, name), {}
    for parent in parents(node):
        values.update(values_of(group, parent))
    values.update({k: v for k, v in node.items() if k != "defaults"})
    return values


PRESETS = [(g, p.stem) for g in GROUPS for p in sorted((CONF_DIR / g).glob("*.yaml"))]


@pytest.mark.parametrize(("group", "name"), PRESETS, ids=[f"{g}={n}" for g, n in PRESETS])
def test_a_preset_states_only_what_differs_from_the_schema_or_its_parent(group: str, name: str) -> None:
    node = preset(group, name)
    baseline = schema_defaults(group)
    for parent in parents(node):
        baseline.update(values_of(group, parent))
    restated = [k for k, v in node.items() if k != "defaults" and k in baseline and v == baseline[k]]
    assert not restated, f"conf/{group}/{name}.yaml restates defaults {restated}: delete them (one source)"


def test_the_root_config_holds_only_the_defaults_list_and_hydras_settings() -> None:
    assert set(yaml.safe_load((CONF_DIR / "config.yaml").read_text())) == {"defaults", "hydra"}


def test_the_config_tree_is_the_installed_package() -> None:
    import conf

    assert Path(conf.__file__).parent == CONF_DIR and (CONF_DIR / "config.yaml").is_file()
