"""What the platform writes and reads back, and the errors it raises for bad input.

- `errors`: ConfigError, DataError and the other exceptions that tell bad input from bugs.
- `atomic`: writes a reader (or a crash) never sees half-done.
- `result`: the result record of a job (`result.json`) and the package versions it carries.
- `metrics`: the rows of `metrics.jsonl`.
- `run_dir`: `RunDir`, the layout of a run directory (every file a job writes, named once).
- `lock`, `secrets`: one process per run dir; secrets masked in everything written.

The bottom layer: it imports nothing else from `ablations` (and no torch), so every package may use it.
"""
