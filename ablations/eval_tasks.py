"""Fill a local evaluation data folder from the Hugging Face hub, once, on a machine with internet:

    python -m ablations.eval_tasks DATA_DIR [task ...]     (default: every lm-eval task of the suite)

Each task's splits land in `DATA_DIR/<folder>/<split>.jsonl`, the layout `eval.data_dir` reads.
"""

from __future__ import annotations

import sys

from ablations.eval.tasks import TASKS, export_hub_data


def main(argv: list[str] | None = None) -> None:
    args = list(sys.argv[1:] if argv is None else argv)
    if not args:
        raise SystemExit("usage: python -m ablations.eval_tasks DATA_DIR [task ...]  (default: all tasks)")
    for path in export_hub_data(args[0], args[1:] or list(TASKS)):
        print(f"wrote {path}")


if __name__ == "__main__":
    main()
