"""Fill a local evaluation data folder from the Hugging Face hub, once, on a machine with internet:

    python -m ablations.fetch_eval_data DATA_DIR [task ...]     (default: every lm-eval task of the suite)

Each task's splits land in `DATA_DIR/<folder>/<split>.jsonl`, the layout `eval.data_dir` reads.
"""

from __future__ import annotations

import sys

from ablations.cli import exit_with_usage_if_asked
from ablations.eval.tasks import KNOWN_TASKS, TASKS, WIKITEXT_MOBILELLM, export_hub_data


def hub_tasks(names: list[str]) -> list[str]:
    """The lm-eval tasks whose data the named tasks read (the MobileLLM WikiText-2 protocol reads `wikitext`'s)."""
    unknown = [name for name in names if name not in KNOWN_TASKS]
    if unknown:
        raise SystemExit(f"unknown task(s) {unknown}; known: {', '.join(KNOWN_TASKS)}")
    return list(dict.fromkeys("wikitext" if name == WIKITEXT_MOBILELLM else name for name in names))


def main(argv: list[str] | None = None) -> None:
    args = list(sys.argv[1:] if argv is None else argv)
    exit_with_usage_if_asked(args, __doc__)
    if not args:
        raise SystemExit(
            "usage: python -m ablations.fetch_eval_data DATA_DIR [task ...]  (default: all tasks)"
        )
    for path in export_hub_data(args[0], hub_tasks(args[1:]) or list(TASKS)):
        print(f"wrote {path}")


if __name__ == "__main__":
    main()
