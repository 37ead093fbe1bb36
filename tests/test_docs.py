"""README and docs/ stay true: every relative link resolves, every `python run.py …` (or `mobilellm-run …`)
command they show composes to a typed job (the first job of a multirun), and every `python -m …` command they
show answers `--help`. A renamed key, preset, module or page breaks this test.

A command shown to be refused (its line's comment says `refused`) is not composed."""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import tomllib
from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
from hydra.core.override_parser.overrides_parser import OverridesParser

from ablations.job.config import compose_config, job_config
from tests.conftest import REPO

PAGES = [REPO / "README.md", *sorted((REPO / "docs").rglob("*.md"))]
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
FENCE = re.compile(r"```(?:bash|sh|console)?\n(.*?)```", re.S)
SCRIPTS = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["scripts"]


def relative_links() -> list[tuple[Path, str]]:
    found = []
    for page in PAGES:
        for target in LINK.findall(page.read_text()):
            if not re.match(r"[a-z]+:", target) and not target.startswith("#"):
                found.append((page, target))
    return found


def shown_commands() -> list[tuple[Path, list[str], str]]:
    """(page, argv, the line's comment) of every command line (`python …`, `mobilellm-…`) in a code block,
    continuation lines joined."""
    found = []
    for page in PAGES:
        for block in FENCE.findall(page.read_text()):
            for line in block.replace("\\\n", " ").splitlines():
                line = line.strip().removeprefix("$ ")
                if not line.startswith(("python run.py", "python -m ", "mobilellm-")):
                    continue
                comment = line.split(" # ", 1)[1] if " # " in line else ""
                found.append((page, shlex.split(line, comments=True), comment))
    return found


def job_commands() -> list[tuple[str, list[str]]]:
    jobs = []
    for page, words, comment in shown_commands():
        if words[:2] == ["python", "run.py"] or words[:1] == ["mobilellm-run"]:
            args = words[2:] if words[0] == "python" else words[1:]
            if "refused" not in comment:
                jobs.append((f"{page.name}: {shlex.join(words)}", args))
    return jobs


def module_commands() -> list[str]:
    modules = set()
    for _, words, _ in shown_commands():
        if words[:2] == ["python", "-m"] and words[2].startswith(("ablations", "analysis")):
            modules.add(words[2])
        elif words[0] in SCRIPTS and words[0] != "mobilellm-run":
            modules.add(SCRIPTS[words[0]].split(":")[0])
    return sorted(modules)


@pytest.mark.parametrize(("page", "target"), relative_links(), ids=lambda x: str(x).replace(str(REPO), ""))
def test_every_relative_link_resolves(page: Path, target: str) -> None:
    path = (page.parent / target.split("#")[0]).resolve()
    assert path.exists(), f"{page.relative_to(REPO)} links to {target}, which does not exist"
    assert REPO in path.parents or path == REPO, f"{page.relative_to(REPO)} links outside the repo: {target}"


JOBS = job_commands()


@pytest.mark.parametrize(("shown", "args"), JOBS, ids=[shown for shown, _ in JOBS])
def test_every_job_command_shown_composes_to_a_typed_job(shown: str, args: list[str]) -> None:
    overrides = [a for a in args if a not in ("-m", "--multirun")]
    first = BasicSweeper.split_arguments(OverridesParser.create().parse_overrides(overrides), None)[0][0]
    job_config(compose_config(first))  # unknown keys, presets, types and each group's rules: refused here


@pytest.mark.parametrize("module", module_commands())
def test_every_module_command_shown_answers_help(module: str) -> None:
    done = subprocess.run(
        [sys.executable, "-m", module, "--help"], cwd=REPO, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0 and done.stdout.strip(), (done.stdout + done.stderr)[-2000:]


def test_the_docs_show_commands_and_links() -> None:
    assert len(JOBS) >= 10 and len(module_commands()) >= 5 and len(relative_links()) >= 10
