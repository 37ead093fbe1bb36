"""Keeping secrets out of everything the platform writes: records, logs, config dumps, W&B.

Two kinds are masked: the password of any URL (`postgresql://user:PASSWORD@host/db`) and the value of any
mapping key that names a secret (`password`, `token`, `api_key`, `secret`, …).
"""

from __future__ import annotations

import re
from typing import Any

MASK = "***"
# scheme://user:password@host: the password is whatever stands between the first ':' after '//' and '@'
_URL_PASSWORD = re.compile(r"(?P<head>[A-Za-z][A-Za-z0-9+.-]*://[^/:@\s]*:)(?P<password>[^@\s]+)(?P<at>@)")
_SECRET_KEY = re.compile(r"(^|_)(password|passwd|secret|token|api_?key|credentials?)$", re.IGNORECASE)


def mask_text(text: str) -> str:
    """`text` with every URL password replaced by ***."""
    return _URL_PASSWORD.sub(lambda m: m["head"] + MASK + m["at"], text)


def mask_secrets(value: Any) -> Any:
    """A copy of `value` (nested dicts, lists, strings) with URL passwords and secret-named keys masked."""
    if isinstance(value, dict):
        return {
            key: MASK if isinstance(key, str) and _SECRET_KEY.search(key) and item else mask_secrets(item)
            for key, item in value.items()
        }
    if isinstance(value, (list, tuple)):
        return type(value)(mask_secrets(item) for item in value)
    if isinstance(value, str):
        return mask_text(value)
    return value
