"""Scoring a model with lm-eval (and the MobileLLM WikiText-2 protocol), and the evaluation record.

- `config`: `EvalConfig` (the `conf/eval/` group). Torch-free.
- `tasks`: the task suite (lm-eval's YAMLs included, data source overridden for offline data).
- `sources`: where each task's data comes from (`eval.data_dir`, the packaged sample in `benchmarks/`, the
  hub), and the check that it is there and parses, before any compute.
- `loading`: checkpoint → (model, tokenizer): native dir, HF export, Lightning `.ckpt`.
- `adapter`: the lm-eval model `mobilellm` (batched log-likelihoods, rolling, generate_until).
- `wikitext`: WikiText-2 perplexity in the MobileLLM protocol.
- `scoring`: `run_evaluation` / `evaluate_checkpoint`, per-sample files, `eval_result.json`.

May import: `ablations.records`, `ablations.model`. Not training code: a checkpoint is read as a file.
"""
