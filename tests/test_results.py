"""The result record: atomic writes that never leave a half-written or lost record."""

from __future__ import annotations

from pathlib import Path

import pytest

from ablations.records.atomic import atomic_write
from ablations.records.result import is_complete, read_result, write_result


def test_record_round_trips_with_schema_and_no_temporary_files(tmp_path: Path) -> None:
    write_result(tmp_path, {"status": "running", "name": "v"})
    write_result(tmp_path, {"status": "complete", "name": "v", "tokens_seen": 12})
    assert read_result(tmp_path) == {"schema": 1, "status": "complete", "name": "v", "tokens_seen": 12}
    assert is_complete(tmp_path) and [p.name for p in tmp_path.iterdir()] == ["result.json"]
    assert read_result(tmp_path / "elsewhere") is None


def test_a_write_that_fails_midway_keeps_the_previous_record(tmp_path: Path) -> None:
    write_result(tmp_path, {"status": "complete", "name": "kept"})

    def crash(tmp: Path) -> None:
        tmp.write_text('{"status": "comp')  # half a record, then the process dies
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        atomic_write(tmp_path / "result.json", crash)
    assert read_result(tmp_path)["name"] == "kept" and len(list(tmp_path.iterdir())) == 1


def test_unknown_status_is_refused_before_writing(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="result status must be one of"):
        write_result(tmp_path, {"status": "done"})
    assert not (tmp_path / "result.json").exists()
