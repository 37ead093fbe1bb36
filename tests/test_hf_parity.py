"""The adapter and lm-eval's own `hf` model on the exported LLaMA weights give the same scores (1e-4)."""

from __future__ import annotations

import pytest

from ablations.eval.config import EvalConfig
from ablations.eval.scoring import _task_metrics, run_lm_eval
from ablations.eval.tasks import PAPER_ZERO_SHOT
from tests.eval_fixtures import BENCHMARKS

pytestmark = pytest.mark.skipif(not BENCHMARKS.is_dir(), reason=f"{BENCHMARKS} absent")
pytest.importorskip("accelerate", reason="lm-eval's hf model needs accelerate")

# every task with data in ../shared/benchmarks (multiple-choice ones take the shared-context path)
TASKS = [*PAPER_ZERO_SHOT, "wikitext"]


def hf_results(export_dir, tokenizer, cfg: EvalConfig, work_dir) -> dict:
    import lm_eval
    from lm_eval.models.huggingface import HFLM
    from transformers import LlamaForCausalLM

    from ablations.eval.tasks import task_manager, write_task_configs

    config_dir = write_task_configs(TASKS, work_dir / "hf_tasks", cfg.data_dir)
    hf = HFLM(pretrained=LlamaForCausalLM.from_pretrained(str(export_dir)), tokenizer=tokenizer, batch_size=4)
    return lm_eval.simple_evaluate(
        model=hf, tasks=TASKS, limit=cfg.limit, task_manager=task_manager(config_dir), bootstrap_iters=0
    )


def test_adapter_matches_hf_model_on_exported_weights(tmp_path, eval_model, eval_tokenizer):
    from ablations.model.hf_interop import export_llama

    export_llama(eval_model, tmp_path / "hf", eval_tokenizer)
    cfg = EvalConfig(tasks=TASKS, limit=3, data_dir=str(BENCHMARKS), batch_size=3, bootstrap_iters=0)
    ours = run_lm_eval(eval_model, eval_tokenizer, cfg, TASKS, tmp_path, data_parallel=False)
    theirs = hf_results(tmp_path / "hf", eval_tokenizer, cfg, tmp_path)
    for task in TASKS:
        mine, ref = _task_metrics(ours["results"][task]), _task_metrics(theirs["results"][task])
        assert mine.keys() == ref.keys()
        for name in mine:
            assert mine[name] == pytest.approx(ref[name], rel=1e-4, abs=1e-4), (task, name)
        for a, b in zip(ours["samples"][task], theirs["samples"][task], strict=True):
            logliks = [r[0] if isinstance(r, (list, tuple)) else r for r in a["filtered_resps"]]
            ref_logliks = [r[0] if isinstance(r, (list, tuple)) else r for r in b["filtered_resps"]]
            assert logliks == pytest.approx(ref_logliks, abs=1e-4), (task, a["doc_id"])
