"""`python -m ablations.device` and the job's device stage: the measurement record, its hand-checked pieces
(trimmed mean, KV-cache bytes), the CLI's sources (preset, ckpt=, run=) and its refusals of bad input."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from ablations.device import config as device_config
from ablations.device.__main__ import main
from ablations.device.config import QUANT_NAMES, DeviceConfig
from ablations.job.config import compose_config, job_config
from ablations.job.resume import changed_keys
from ablations.job.validate import validate
from ablations.model.architecture import MobileLLM
from ablations.model.checkpoint import save_model_dir
from ablations.records.errors import ConfigError
from ablations.records.run_dir import RunDir
from tests.conftest import REPO, small_config
from tests.test_adversarial import TINY, run_py, tokens

needs_executorch = pytest.mark.skipif(
    importlib.util.find_spec("executorch") is None,
    reason='needs the device extra: pip install -e ".[device]"',
)
RECORD_KEYS = {
    "quant", "threads", "max_seq_len", "prompt_tokens", "iterations", "warmup", "pte_bytes",
    "planned_memory_bytes", "kv_cache_bytes", "peak_rss_bytes", "load_ms", "init_ms", "prefill_ms",
    "prefill_ms_mean", "prefill_tok_s", "decode_ms", "decode_ms_mean", "decode_tok_s", "ttft_ms",
    "val_loss_fp32", "val_loss", "val_loss_change", "versions",
}  # fmt: skip
"""The contract's `device` block (docs/device.md), which analysis/ reads."""
SHORT = ["max_seq_len=32", "prompt_tokens=8", "iterations=3", "warmup=1"]
"""A quick measurement: a 32-position program, three timed runs."""


def device_cli(*args: str, timeout: int = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "ablations.device", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=dict(os.environ, OMP_NUM_THREADS="1"),
    )


def saved_small_model(folder: Path, **overrides: object) -> MobileLLM:
    model = MobileLLM(small_config(**overrides))
    save_model_dir(model, folder)
    return model


# ---------------------------------------------------------------------- the pieces, by hand


@needs_executorch
def test_the_trimmed_mean_drops_a_tenth_of_the_runs_at_each_end() -> None:
    from ablations.device.measure import trimmed_mean

    # 10 runs: the fastest (-50) and the slowest (100) dropped, the mean of 1..8 kept
    assert trimmed_mean([100.0, 1, 2, 3, 4, 5, 6, 7, 8, -50]) == pytest.approx(4.5)
    # 50 runs (the protocol's): 5 dropped at each end, as ExecuTorch's apps do (sorted[n/10 : n*9/10])
    runs = [float(x) for x in range(50)]
    assert trimmed_mean(runs) == pytest.approx(sum(range(5, 45)) / 40)
    assert trimmed_mean([3.0, 1.0, 2.0]) == pytest.approx(2.0)  # under 10 runs nothing is dropped


@needs_executorch
@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        # 2 (K and V) × 3 applications × 2 KV heads × 32 positions × 16 head dims × 4 bytes
        ({}, 2 * 3 * 2 * 32 * 16 * 4),
        ({"n_kv_heads": 1}, 2 * 3 * 1 * 32 * 16 * 4),  # MQA: one head
        ({"sharing_scheme": "immediate", "sharing_repeats": 2}, 2 * 6 * 2 * 32 * 16 * 4),  # applied twice
    ],
)
def test_kv_cache_bytes_by_hand_and_as_the_program_holds_them(overrides: dict, expected: int) -> None:
    from ablations.device.measure import kv_cache_bytes
    from ablations.device.program import ExportableLM

    model = MobileLLM(small_config(**overrides))
    assert kv_cache_bytes(model.config, 32) == expected
    buffers = sum(b.numel() * b.element_size() for b in ExportableLM(model, 32).caches.buffers())
    assert buffers == expected


@needs_executorch
def test_the_quant_names_are_the_recipes() -> None:
    from ablations.device.quantize import QUANT_RECIPES

    assert tuple(QUANT_RECIPES) == QUANT_NAMES


# ---------------------------------------------------------------------- bad input, before compute


@pytest.mark.parametrize(
    ("args", "named"),
    [
        (["foo=1"], "foo=1: unknown argument"),
        (["quant=int3"], "quant='int3': must be one of"),
        (["prompt_tokens=256"], "prompt_tokens=256: must be < max_seq_len=256"),
        (["max_seq_len=16", "prompt_tokens=16"], "prompt_tokens=16: must be < max_seq_len=16"),
        (["iterations=0"], "iterations=0: must be a positive integer"),
        (["threads=two"], "threads=two: must be an integer"),
        (["ckpt=/no/such/model"], "ckpt=/no/such/model: no such file or directory"),
        (["run=/no/such/run"], "run=/no/such/run: no model export at /no/such/run/model"),
        (["ckpt=/tmp", "model.dim=64"], "model.dim=64: model= overrides a preset"),
        (["model=no_such_preset"], "Could not find 'model/no_such_preset'"),
    ],
)
def test_bad_input_exits_2_naming_the_key(
    args: list[str], named: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(args)
    assert exit_info.value.code == 2
    assert named in capsys.readouterr().err


def test_the_command_prints_its_usage_and_refuses_bad_input_in_one_message() -> None:
    usage = device_cli("--help", timeout=60)
    assert usage.returncode == 0 and "ckpt=PATH" in usage.stdout and "quant=none|8da4w|w8a8" in usage.stdout
    refused = device_cli("quant=int3", timeout=60)
    assert refused.returncode == 2 and "quant='int3'" in refused.stderr and "Traceback" not in refused.stderr


def test_a_missing_extra_is_named_by_the_cli_and_refused_by_the_job(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    monkeypatch.setattr(device_config, "REQUIRED_MODULES", ("executorch", "no_such_module_for_the_test"))
    with pytest.raises(SystemExit) as exit_info:
        main(["model=tiny"])
    assert exit_info.value.code == 2
    assert (
        'no_such_module_for_the_test not installed: install the device extra (pip install -e ".[device]")'
        in (capsys.readouterr().err)
    )
    with pytest.raises(
        ConfigError, match=r"device\.enabled=true but no_such_module_for_the_test not installed"
    ):
        validate(compose_config([*TINY, "device.enabled=true"]), tmp_path)
    validate(compose_config(TINY), tmp_path)  # the stage off: nothing to install


def test_the_job_refuses_a_bad_device_group_by_key() -> None:
    with pytest.raises(ConfigError) as error:
        job_config(compose_config(["device.quant=int3", "device.prompt_tokens=300"]))
    assert "device: quant='int3'" in str(error.value)
    assert "device: prompt_tokens=300: must be < max_seq_len=256" in str(error.value)
    with pytest.raises(ConfigError, match=r"device\.nope: unknown key"):
        job_config(compose_config(["+device.nope=1"]))
    assert job_config(compose_config([])).device == DeviceConfig()  # the job's default: the dataclass's


def test_a_resumed_run_may_add_or_change_its_device_stage() -> None:
    trained_with = {"model": {"dim": 64}, "train": {"lr": 1e-3}}  # a run from before the device group
    current = {**trained_with, "device": {"enabled": True, "quant": "w8a8"}}
    assert changed_keys(trained_with, current, []) == []
    assert changed_keys(current, {**current, "device": {"enabled": True, "quant": "8da4w"}}, []) == []


# ---------------------------------------------------------------------- measured


@needs_executorch
@pytest.mark.slow
def test_a_preset_is_exported_measured_and_recorded(tmp_path: Path) -> None:
    result = device_cli("model=tiny", "iterations=3", "warmup=1", f"out={tmp_path}")
    assert result.returncode == 0, result.stderr
    assert "decode tok/s" in result.stdout and "program size" in result.stdout
    record = json.loads((tmp_path / RunDir.DEVICE_RECORD).read_text())
    assert set(record) == RECORD_KEYS
    assert record["pte_bytes"] == (tmp_path / RunDir.DEVICE_PROGRAM).stat().st_size
    assert record["pte_bytes"] > 4 * 1_000_000  # tiny: ~1.3M fp32 parameters, stored once
    assert (record["max_seq_len"], record["prompt_tokens"], record["iterations"]) == (256, 128, 3)
    assert record["kv_cache_bytes"] == 2 * 4 * 2 * 256 * 32 * 4  # tiny: 4 layers, 2 KV heads of 32
    assert record["decode_tok_s"] == pytest.approx(1e3 / record["decode_ms"])
    assert record["prefill_tok_s"] == pytest.approx(128e3 / record["prefill_ms"])
    assert record["ttft_ms"] >= record["prefill_ms"] > 0 and record["load_ms"] > 0 and record["init_ms"] > 0
    assert record["val_loss"] is None  # an fp32 program from the CLI: no validation split
    assert record["versions"]["executorch"] is not None


@needs_executorch
@pytest.mark.slow
def test_a_model_dir_and_a_run_dir_are_measured_where_asked(tmp_path: Path) -> None:
    saved_small_model(tmp_path / "ckpt")
    result = device_cli(f"ckpt={tmp_path / 'ckpt'}", *SHORT, "threads=2", f"out={tmp_path / 'out'}")
    assert result.returncode == 0, result.stderr
    assert json.loads((tmp_path / "out" / RunDir.DEVICE_RECORD).read_text())["threads"] == 2

    run = RunDir(tmp_path / "run")
    saved_small_model(run.model, sharing_scheme="immediate", sharing_repeats=2)
    result = device_cli(f"run={run.path}", *SHORT)
    assert result.returncode == 0, result.stderr
    assert run.device_program.is_file()  # the run dir's own device/ folder by default
    record = json.loads(run.device_record.read_text())
    assert record["kv_cache_bytes"] == 2 * 6 * 2 * 32 * 16 * 4  # 3 blocks applied twice: 6 caches


@needs_executorch
@pytest.mark.slow
def test_a_quantized_program_reports_its_val_loss_change(tmp_path: Path) -> None:
    from ablations.device.measure import measure

    model = MobileLLM(small_config())
    cfg = DeviceConfig(quant="w8a8", max_seq_len=32, prompt_tokens=8, warmup=0, iterations=2, val_windows=3)
    stream = torch.randint(model.config.vocab_size, (200,))
    record = measure(model, cfg, tmp_path, validation_tokens=stream)
    windows = stream[: 3 * 32].view(3, 32)  # three windows of max_seq_len tokens
    with torch.no_grad():
        logits = model(windows[:, :-1])
    fp32 = torch.nn.functional.cross_entropy(logits.flatten(0, 1), windows[:, 1:].flatten())
    assert record["val_loss_fp32"] == pytest.approx(float(fp32), rel=1e-5)
    assert record["val_loss_change"] == pytest.approx(record["val_loss"] - record["val_loss_fp32"])
    assert abs(record["val_loss_change"]) < 0.5  # random weights at 8 bits: close, not equal
    assert json.loads((tmp_path / RunDir.DEVICE_RECORD).read_text()) == record


@needs_executorch
@pytest.mark.slow
def test_a_job_with_the_device_stage_records_its_device_block(tmp_path: Path) -> None:
    device = ["device.enabled=true", "device.quant=8da4w", "device.max_seq_len=64", "device.prompt_tokens=16",
              "device.iterations=3", "device.warmup=1"]  # fmt: skip
    result = run_py(*TINY, tokens(2), *device, f"hydra.run.dir={tmp_path}")
    assert result.returncode == 0, result.stderr[-3000:]
    record = json.loads(RunDir(tmp_path).record.read_text())
    assert record["status"] == "complete" and set(record["device"]) == RECORD_KEYS
    assert record["device"] == json.loads(RunDir(tmp_path).device_record.read_text())
    assert RunDir(tmp_path).device_program.is_file()
    assert record["device"]["val_loss_fp32"] is not None  # scored on the run's validation split
    assert record["device"]["val_loss_change"] == pytest.approx(
        record["device"]["val_loss"] - record["device"]["val_loss_fp32"]
    )
