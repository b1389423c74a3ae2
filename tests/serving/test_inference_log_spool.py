"""Tests for the inference log's write-ahead spool and its per-row isolation of bad rows.

The spool is about processes dying, so the recovery tests kill a real child process that holds
an :class:`~serving.inference_log.InferenceLog` with SIGKILL and recover its segment in this one.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.parquet as pq

from serving.inference_log import (
    BAD_ROW,
    TORN_SPOOL_RECORD,
    InferenceLog,
    LoggedBatch,
    LogTarget,
    default_spool_dir,
)
from tests.fixtures.serving import REPO
from tests.serving.test_inference_log import BEFORE_MIDNIGHT_MS, SPEC, _batch, _files, _log

Drops = list[tuple[int, str]]

# A child process: log SPEC's rows "k0".."k<n-1>" in batches of 10, report, then wait to be killed.
_CHILD = """
import sys, time
from pathlib import Path
from serving.inference_log import InferenceLog, LoggedBatch, LogTarget
from tests.serving.test_inference_log import SPEC
log = InferenceLog(LogTarget.parse(sys.argv[1]), SPEC, "churn", "6", flush_interval_s=3600)
log.start()
rows = int(sys.argv[2])
for first in range(0, rows, 10):
    ids = [f"k{i}" for i in range(first, min(first + 10, rows))]
    values = [{"tenure": float(i), "charges": 1.5, "plan": "basic"} for i in range(len(ids))]
    log.append(LoggedBatch(1_795_478_399_500, ids, [0.5] * len(ids), values))
print("appended", flush=True)
time.sleep(600)
"""


def _killed_child(log_dir: Path, rows: int) -> None:
    """Run a child that logs ``rows`` rows, and SIGKILL it once append has returned for all."""
    child = subprocess.Popen(
        [sys.executable, "-c", _CHILD, str(log_dir), str(rows)],
        cwd=REPO,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert child.stdout is not None
    assert child.stdout.readline().strip() == "appended"
    child.send_signal(signal.SIGKILL)
    child.wait(10)
    child.stdout.close()


def _logged(root: Path) -> list[dict[str, object]]:
    return [row for path in _files(root) for row in pq.read_table(path).to_pylist()]


def _logged_ids(root: Path) -> list[str]:
    return [str(row["row_id"]) for row in _logged(root)]


def _spool_files(log_dir: Path) -> list[Path]:
    return sorted((log_dir / ".spool").glob("spool-*.jsonl"))


def test_a_bad_row_costs_only_itself(tmp_path: Path) -> None:
    drops: Drops = []
    log = _log(LogTarget.parse(str(tmp_path)), on_drop=lambda n, why: drops.append((n, why)))
    good = [_batch(BEFORE_MIDNIGHT_MS, *(f"r{i}-{j}" for j in range(10))) for i in range(50)]
    bad = LoggedBatch(
        BEFORE_MIDNIGHT_MS, ["bad"], [0.5], [{"tenure": 1.0, "charges": 2.0, "plan": "\ud800"}]
    )
    log.write([*good[:25], bad, *good[25:]])
    ids = [row["row_id"] for row in _logged(tmp_path)]
    assert len(ids) == 500
    assert "bad" not in ids
    assert drops == [(1, BAD_ROW)]


def test_a_bad_row_through_append_and_flush_is_counted_and_the_rest_written(
    tmp_path: Path,
) -> None:
    drops: Drops = []
    log = _log(
        LogTarget.parse(str(tmp_path)),
        flush_interval_s=3600,
        on_drop=lambda n, why: drops.append((n, why)),
    )
    log.start()
    for index in range(500):
        assert log.append(_batch(BEFORE_MIDNIGHT_MS, f"r{index}"))
    wrong_type = {"tenure": "not a number", "charges": None, "plan": None}
    assert log.append(LoggedBatch(BEFORE_MIDNIGHT_MS, ["bad"], [0.5], [wrong_type]))
    log.close()
    assert sorted(_logged_ids(tmp_path)) == sorted(f"r{index}" for index in range(500))
    assert drops == [(1, BAD_ROW)]
    assert _spool_files(tmp_path) == []


def test_a_flush_deletes_the_spool_segment_it_wrote(tmp_path: Path) -> None:
    log = _log(LogTarget.parse(str(tmp_path)), flush_rows=3, flush_interval_s=3600)
    log.start()
    log.append(_batch(BEFORE_MIDNIGHT_MS, "a", "b"))
    (segment,) = _spool_files(tmp_path)
    assert segment.name.startswith(f"spool-{os.getpid()}-")
    log.append(_batch(BEFORE_MIDNIGHT_MS, "c"))
    deadline = time.monotonic() + 5
    while _spool_files(tmp_path) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert _spool_files(tmp_path) == []
    assert sorted(_logged_ids(tmp_path)) == ["a", "b", "c"]
    log.append(_batch(BEFORE_MIDNIGHT_MS, "d"))
    (next_segment,) = _spool_files(tmp_path)
    assert next_segment != segment
    log.close()
    assert _spool_files(tmp_path) == []


def test_rows_of_a_killed_process_are_recovered_at_the_next_start(tmp_path: Path) -> None:
    _killed_child(tmp_path, rows=95)
    assert _files(tmp_path) == []
    assert len(_spool_files(tmp_path)) == 1
    drops: Drops = []
    log = _log(LogTarget.parse(str(tmp_path)), on_drop=lambda n, why: drops.append((n, why)))
    log.start()
    rows = _logged(tmp_path)
    log.close()
    assert sorted(str(row["row_id"]) for row in rows) == sorted(f"k{i}" for i in range(95))
    # Written as what the dead process served (version 6), not as this log's version 7.
    assert {(row["model_name"], row["model_version"]) for row in rows} == {("churn", "6")}
    assert rows[0]["charges"] == 1.5 and rows[0]["plan"] == "basic"
    assert drops == []
    assert _spool_files(tmp_path) == []


def test_a_torn_last_record_is_skipped_and_counted(tmp_path: Path) -> None:
    _killed_child(tmp_path, rows=30)
    (segment,) = _spool_files(tmp_path)
    data = segment.read_bytes()
    segment.write_bytes(data[:-15])  # the last batch (k20..k29) cut short, as a kill mid-write
    drops: Drops = []
    log = _log(LogTarget.parse(str(tmp_path)), on_drop=lambda n, why: drops.append((n, why)))
    assert log.recover() == 20
    assert sorted(_logged_ids(tmp_path)) == sorted(f"k{i}" for i in range(20))
    assert drops == [(10, TORN_SPOOL_RECORD)]
    assert _spool_files(tmp_path) == []


def test_a_live_process_segment_is_not_recovered(tmp_path: Path) -> None:
    live = _log(LogTarget.parse(str(tmp_path)), flush_interval_s=3600)
    live.append(_batch(BEFORE_MIDNIGHT_MS, "a"))
    other = _log(LogTarget.parse(str(tmp_path)))
    assert other.recover() == 0
    assert _files(tmp_path) == []
    assert len(_spool_files(tmp_path)) == 1
    live.start()  # recovers nothing of its own: its segment is held
    live.close()
    assert [row["row_id"] for row in _logged(tmp_path)] == ["a"]
    assert _spool_files(tmp_path) == []


def test_a_segment_that_cannot_be_written_is_kept_for_the_next_start(tmp_path: Path) -> None:
    _killed_child(tmp_path, rows=10)
    (tmp_path / "model=churn").write_text("a file where a folder should be")
    log = _log(LogTarget.parse(str(tmp_path)))
    assert log.recover() == 0
    assert len(_spool_files(tmp_path)) == 1
    (tmp_path / "model=churn").unlink()
    assert log.recover() == 10
    assert _spool_files(tmp_path) == []


def test_the_s3_spool_is_local_and_named_after_bucket_and_prefix() -> None:
    spool = default_spool_dir(LogTarget.parse("s3://logs/serving/churn"))
    assert spool.parts[-3:] == ("logs", "serving", "churn")
    assert default_spool_dir(LogTarget.parse("/var/log/x")) == Path("/var/log/x/.spool")


def test_a_log_that_only_writes_touches_no_spool(tmp_path: Path) -> None:
    InferenceLog(LogTarget.parse(str(tmp_path)), SPEC, "churn", "7").write(
        [_batch(BEFORE_MIDNIGHT_MS, "a")]
    )
    assert not (tmp_path / ".spool").exists()
