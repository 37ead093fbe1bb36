"""Keeping secrets out of everything the platform writes: records, logs, config dumps, W&B.

Masked, wherever a value is written:
- the password of any URL (`postgresql://user:PASSWORD@host/db`, also `https:/user:PASSWORD@host` as a
  path join leaves it);
- the value of a mapping key on the explicit list of secret key names (`password`, `api_key`,
  `accessToken`, `HF_TOKEN`, …: the whole key, case and separators aside, never a word of it, so
  `flops_per_token`, `bos_token_id` or `max_tokens` keep their values), also in text as `KEY=VALUE` (a Hydra
  override) or `'KEY': VALUE` (a logged dict, JSON);
- the value of any secret-named environment variable (`WANDB_API_KEY`, `MY_SERVICE_TOKEN`, …) wherever it
  appears, so an interpolation such as `name=${oc.env:WANDB_API_KEY}` cannot carry it out.
"""

from __future__ import annotations

import itertools
import logging
import os
import re
import sys
import warnings
from typing import Any

MASK = "***"
# scheme://user:password@host (or scheme:/… once a path join collapsed the '//'): the password is whatever
# stands between the first ':' after the slashes and the '@'
_URL_PASSWORD = re.compile(
    r"(?P<head>[A-Za-z][A-Za-z0-9+.-]*:/{1,2}[^/:@\s]*:)(?P<password>[^@\s]+)(?P<at>@)"
)
# the words of an environment variable's name: camelCase, snake_case, kebab-case all split the same way
_WORD = re.compile(r"[A-Z]+(?=[A-Z][a-z])|[A-Z]?[a-z]+|[A-Z]+|[0-9]+")
_SECRET_WORDS = frozenset(
    {
        "secret", "secrets", "password", "passwords", "passwd", "pwd", "passphrase", "token", "credential",
        "credentials", "auth", "authorization", "bearer", "apikey", "apikeys", "accesskey", "privatekey",
        "authtoken", "accesstoken",
    }
)  # fmt: skip
# two words naming a secret together (`api_key`, `access-key`, `privateKey`); `key` alone names none
_SECRET_PAIRS = frozenset({("api", "key"), ("api", "keys"), ("access", "key"), ("private", "key")})
SECRET_KEYS = frozenset(
    {
        "secret", "secrets", "token", "auth", "authorization", "bearer", "pwd", "credential", "accesskeyid",
        "awsaccesskeyid", "hftoken", "hfhubtoken", "huggingfacehubtoken", "huggingfacetoken", "githubtoken",
        "ghtoken", "gitlabtoken", "wandbtoken", "slacktoken",
    }
)  # fmt: skip
"""Key names (lower case, separators removed) whose values are secrets, matched as the whole key."""
SECRET_KEY_ENDINGS = (
    "password", "passwords", "passwd", "passphrase", "credentials", "secret", "apikey", "apikeys", "apitoken",
    "accesskey", "secretkey", "privatekey", "accesstoken", "authtoken", "refreshtoken", "bearertoken",
    "sessiontoken",
)  # fmt: skip
"""Compound names that make any key ending with them a secret (`db_password`, `wandb-api-key`,
`client_secret`); none is a word a record's field ends with (`token`, `tokens` are not among them)."""
# KEY=VALUE or KEY: VALUE in text, the key and value optionally quoted (an override, a logged dict repr)
_KEY_VALUE = re.compile(
    r"(?P<key>['\"]?[+~]{0,2}[A-Za-z_][\w.\-]*['\"]?)(?P<sep>\s*[=:]\s*)(?P<quote>['\"]?)(?P<value>[^\s,'\"{}\[\]]+)"
)
MIN_ENV_SECRET_LEN = 8
"""Shorter values of secret-named environment variables are not searched for (they would mask words)."""
NOT_SECRET_ENV = frozenset({"PWD", "OLDPWD", "SSH_AUTH_SOCK"})
"""Environment variables whose names read as secrets but hold paths (the shell's `pwd`, an agent socket)."""


def is_secret_key(key: str) -> bool:
    """Whether a mapping key (or the last part of a dotted one) names a secret: the whole key, case and
    separators aside, is on the explicit list, or ends with a compound secret name. Never a word of it:
    `flops_per_token`, `bos_token_id`, `tokens`, `max_tokens`, `tokenizer` and `author` name none."""
    name = re.sub(r"[^a-z0-9]", "", key.rsplit(".", 1)[-1].lower())
    return name in SECRET_KEYS or name.endswith(SECRET_KEY_ENDINGS)


def is_secret_env_name(name: str) -> bool:
    """Whether an environment variable's name says its value is a secret: one of its words (or two adjacent
    ones) does (`MY_SERVICE_TOKEN`, `WANDB_API_KEY`). Its value is then masked wherever it appears."""
    words = [word.lower() for word in _WORD.findall(name)]
    return name not in NOT_SECRET_ENV and (
        any(word in _SECRET_WORDS for word in words)
        or any(pair in _SECRET_PAIRS for pair in itertools.pairwise(words))
    )


def env_secrets() -> list[str]:
    """The values of the environment's secret-named variables, longest first (the ones worth masking)."""
    values = {
        value
        for name, value in os.environ.items()
        if is_secret_env_name(name) and len(value) >= MIN_ENV_SECRET_LEN
    }
    return sorted(values, key=len, reverse=True)


def _mask_key_value(match: re.Match[str]) -> str:
    key = match["key"].strip("'\"")
    quoted = match["key"][0] in "'\""
    if not is_secret_key(key) or match["value"] == MASK or (":" in match["sep"] and not quoted):
        return match[0]  # `KEY: …` unquoted is prose ("api_key: unknown key") or a URL's scheme, not a pair
    return match["key"] + match["sep"] + match["quote"] + MASK


def mask_text(text: str, environment: list[str] | None = None) -> str:
    """`text` with every URL password, secret-named key's value and secret environment value masked."""
    for value in env_secrets() if environment is None else environment:
        text = text.replace(value, MASK)
    text = _URL_PASSWORD.sub(lambda m: m["head"] + MASK + m["at"], text)
    return _KEY_VALUE.sub(_mask_key_value, text)


def mask_secrets(value: Any, environment: list[str] | None = None) -> Any:
    """A copy of `value` (nested dicts, lists, strings) with URL passwords, secret-named keys and secret
    environment values masked."""
    environment = env_secrets() if environment is None else environment
    if isinstance(value, dict):
        return {
            key: MASK
            if isinstance(key, str) and is_secret_key(key) and item not in (None, "", {}, [])
            else mask_secrets(item, environment)
            for key, item in value.items()
        }
    if isinstance(value, (list, tuple)):
        return type(value)(mask_secrets(item, environment) for item in value)
    if isinstance(value, str):
        return mask_text(value, environment)
    return value


class MaskingFilter(logging.Filter):
    """Masks secrets in a log record's message and exception text, on a handler (so every record the
    handler writes, from any logger, passes through it)."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg = mask_text(record.getMessage())
        record.args = None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = mask_text(record.exc_text)
        if record.stack_info:
            record.stack_info = mask_text(record.stack_info)
        return True


def install_log_masking() -> None:
    """Add the masking filter to every handler configured now (the root logger's console and Hydra's
    run.log file, and any other logger's own), once each; warnings printed to stderr are masked too."""
    if not getattr(warnings.formatwarning, "masks_secrets", False):
        unmasked = warnings.formatwarning

        def formatwarning(*args: Any, **kwargs: Any) -> str:
            return mask_text(unmasked(*args, **kwargs))

        formatwarning.masks_secrets = True  # type: ignore[attr-defined]
        warnings.formatwarning = formatwarning
    loggers = [logging.getLogger()] + [
        logger for logger in logging.Logger.manager.loggerDict.values() if isinstance(logger, logging.Logger)
    ]
    for logger in loggers:
        for handler in logger.handlers:
            if not any(isinstance(f, MaskingFilter) for f in handler.filters):
                handler.addFilter(MaskingFilter())


BAD_INPUT_EXIT = 2
"""README's exit code for bad config or input (`ablations.job.outcome.EXIT_CODES["config"]`)."""


def cli_exit(error: BaseException) -> SystemExit:
    """A command's exit for bad input: prints `error: <message>` (which names the file or key) to stderr,
    secrets masked, no traceback, and returns the exit with code 2. Raise it `from None`."""
    print(f"error: {mask_text(str(error))}", file=sys.stderr)
    return SystemExit(BAD_INPUT_EXIT)
