"""records/secrets.py: which keys, URLs, text and environment values are masked, and which are not."""

from __future__ import annotations

import dataclasses
import importlib
import logging
import pkgutil
import typing
from pathlib import Path

import pytest

import ablations
from ablations.records.errors import ConfigError
from ablations.records.secrets import MaskingFilter, is_secret_key, mask_secrets, mask_text
from ablations.train.config import WandbLoggerConfig

SECRET_KEYS = [
    "password", "passwd", "pwd", "secret", "token", "api_key", "apikey", "apiKey", "APIKey", "wandb-api-key",
    "WANDB_API_KEY", "HF_TOKEN", "aws_secret_access_key", "AWS_ACCESS_KEY_ID", "accessToken", "access_key",
    "private_key", "privateKey", "credentials", "auth", "Authorization", "bearer", "client_secret",
]  # fmt: skip
ORDINARY_KEYS = ["tokens", "max_tokens", "loss_chunk_tokens", "tokenizer", "author", "key", "keys", "monkey"]


@pytest.mark.parametrize("key", SECRET_KEYS)
def test_secret_named_keys_are_masked_in_mappings_and_text(key: str) -> None:
    assert is_secret_key(key)
    assert mask_secrets({"extra": {key: "S3CRETVALUE"}}) == {"extra": {key: "***"}}
    assert "S3CRETVALUE" not in mask_text(f"+train.extra.{key}=S3CRETVALUE,x=1 {{'{key}': 'S3CRETVALUE'}}")


def test_prose_naming_a_secret_key_is_not_masked() -> None:
    message = "train.api_key: unknown key; TrainConfig has ['tokens', 'tokenizer']"
    assert mask_text(message) == message


@pytest.mark.parametrize("key", ORDINARY_KEYS)
def test_ordinary_keys_are_not_masked(key: str) -> None:
    assert not is_secret_key(key)
    assert mask_secrets({key: "value1234"}) == {key: "value1234"}


def config_dataclasses() -> list[type]:
    """Every dataclass of every `config.py` module of the platform (and what they nest)."""
    found: list[type] = []
    for package in pkgutil.iter_modules(ablations.__path__):
        try:
            module = importlib.import_module(f"ablations.{package.name}.config")
        except ModuleNotFoundError:
            continue
        found += [v for v in vars(module).values() if dataclasses.is_dataclass(v) and isinstance(v, type)]
    return found


def test_no_key_of_any_config_is_masked() -> None:
    keys = {field.name for cls in config_dataclasses() for field in dataclasses.fields(cls)}
    for cls in config_dataclasses():  # the nested groups' field types, by name
        for hint in typing.get_type_hints(cls).values():
            for nested in (hint, *typing.get_args(hint)):
                if dataclasses.is_dataclass(nested):
                    keys |= {field.name for field in dataclasses.fields(nested)}
    assert {"tokens", "tokenizer", "max_tokens", "loss_chunk_tokens", "storage"} <= keys  # the walk saw them
    assert [key for key in sorted(keys) if is_secret_key(key)] == []


@pytest.mark.parametrize(
    ("url", "masked"),
    [
        ("postgresql+psycopg2://optuna:pw1@db/x", "postgresql+psycopg2://optuna:***@db/x"),
        ("https:/bob:HFPASS1@127.0.0.1:1/ds", "https:/bob:***@127.0.0.1:1/ds"),  # as a path join leaves it
        ("/cwd/https:/bob:pw@h/ds", "/cwd/https:/bob:***@h/ds"),
        ("https://:tok@h/x", "https://:***@h/x"),
        ("https://host:8080/path", "https://host:8080/path"),
    ],
)
def test_url_passwords_are_masked_after_one_or_two_slashes(url: str, masked: str) -> None:
    assert mask_text(f"at {url}.") == f"at {masked}."


def test_values_of_secret_named_environment_variables_are_masked(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WANDB_API_KEY", "wandbkey12345")
    monkeypatch.setenv("MY_SERVICE_TOKEN", "short")  # under 8 characters: a word, not searched for
    monkeypatch.setenv("PWD", str(Path.cwd()))  # the shell's working dir, not a password
    record = {"name": "run-wandbkey12345", "note": "short", "dir": str(Path.cwd())}
    assert mask_secrets(record) == {"name": "run-***", "note": "short", "dir": str(Path.cwd())}


def test_the_log_filter_masks_messages_arguments_and_exception_text() -> None:
    try:
        raise ValueError("cannot open https:/bob:TKPASS1@host/tok")
    except ValueError as error:
        record = logging.LogRecord("x", logging.ERROR, __file__, 1, "failed: %s", (error,), None)
        record.exc_info = (type(error), error, error.__traceback__)
    assert MaskingFilter().filter(record)
    assert "TKPASS1" not in logging.Formatter().format(record)
    assert "bob:***@host" in record.getMessage()


def test_a_wandb_entity_or_project_holding_a_secret_is_refused() -> None:
    with pytest.raises(ConfigError, match=r"logger\.wandb\.entity holds a secret"):
        WandbLoggerConfig(entity="https://bob:PWSECRET@host/x")
    assert WandbLoggerConfig(entity="my-team").entity == "my-team"
