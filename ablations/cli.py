"""What the `python -m ablations.<command>` entry points share: `--help` prints the command's usage (its
module docstring) and exits 0 before anything is composed, loaded or fetched."""

from __future__ import annotations

import sys

HELP_FLAGS = ("-h", "--help")


def exit_with_usage_if_asked(argv: list[str], usage: str | None) -> None:
    """Print `usage` and exit 0 when the arguments ask for help."""
    if any(arg in HELP_FLAGS for arg in argv):
        print((usage or "").strip())
        sys.exit(0)
