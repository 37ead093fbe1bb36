"""A study in our RDB storage opens in optuna-dashboard (its WSGI app, called in-process)."""

from __future__ import annotations

import io
import json
from pathlib import Path
from wsgiref.util import setup_testing_defaults

import optuna
from optuna_dashboard import wsgi


def test_the_dashboard_lists_a_study_from_sqlite_storage(tmp_path: Path) -> None:
    storage = f"sqlite:///{tmp_path / 'optuna.db'}"
    study = optuna.create_study(study_name="search_budget_125m", storage=storage)
    study.optimize(lambda trial: (trial.suggest_int("n_layers", 4, 62) - 30) ** 2, n_trials=3)
    environ: dict = {"PATH_INFO": "/api/studies", "REQUEST_METHOD": "GET", "wsgi.input": io.BytesIO()}
    setup_testing_defaults(environ)
    status: list[str] = []
    body = b"".join(wsgi(storage)(environ, lambda s, headers, exc_info=None: status.append(s)))
    assert status[0].startswith("200")
    studies = json.loads(body)["study_summaries"]
    assert [s["study_name"] for s in studies] == ["search_budget_125m"]
