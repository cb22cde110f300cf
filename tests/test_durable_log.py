"""events.jsonl is written as events happen: a run killed with SIGKILL leaves a valid prefix."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from sandbox._tools.checklog import check_log
from sandbox._core.eventlog import EventFile, EventLog

from .longscenario import long_scenario_toml


def test_each_event_is_in_the_file_the_moment_it_is_recorded(tmp_path: Path):
    path = tmp_path / "events.jsonl"
    log = EventLog()
    with EventFile(path) as f:
        log.subscribe(f)
        for i in range(3):
            log.record(1000 * i, "oracle", "mark_price", {"market": "PUNK", "price": str(100 + i)})
            # Read by another handle, before anything is closed or flushed.
            lines = path.read_bytes().splitlines(keepends=True)
            assert len(lines) == i + 1 and lines[-1].endswith(b"\n")
            assert json.loads(lines[-1]) == log.events[-1]


def test_a_run_killed_with_sigkill_leaves_a_valid_prefix(tmp_path: Path):
    scenario = tmp_path / "long.toml"
    scenario.write_text(long_scenario_toml())
    out = tmp_path / "out"
    log = out / "events.jsonl"
    # --log-json also sends each event to stderr (line-buffered, to a file here)
    # just before it goes to events.jsonl: what the run had recorded when it died.
    echo = tmp_path / "stderr.jsonl"
    with open(echo, "wb") as stderr:
        proc = subprocess.Popen(
            [sys.executable, "-m", "sandbox", "run", str(scenario), "--out", str(out), "--quiet", "--log-json"],
            stdout=subprocess.DEVNULL, stderr=stderr,
        )
        try:
            deadline = time.monotonic() + 60
            while not (log.exists() and log.stat().st_size > 100_000):  # well into the run, far from its end
                assert proc.poll() is None, echo.read_text()[-2000:]
                assert time.monotonic() < deadline, "the run wrote too little"
                time.sleep(0.005)
            os.kill(proc.pid, signal.SIGKILL)
            assert proc.wait(timeout=30) == -signal.SIGKILL
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()

    raw = log.read_bytes()
    lines = raw.split(b"\n")
    complete, tail = lines[:-1], lines[-1]  # tail: b"" unless the last line was torn
    # One write() per whole line: nothing is torn (check-log would tolerate it anyway).
    assert tail == b"", tail[:200]
    events = [json.loads(line) for line in complete]  # every complete line is JSON ...
    assert [e["seq"] for e in events] == list(range(len(events)))  # ... with contiguous seq from 0
    assert events[0]["kind"] == "opening_state"
    assert all(e["kind"] != "run_finished" for e in events)  # killed mid-run
    assert not (out / "summary.json").exists()
    # Written as events happen: the file holds every event the run had recorded,
    # but (perhaps) the one it was writing when it died; a buffered writer lags
    # by a whole buffer.
    # (--log-json goes through structlog, which adds its "event" key.)
    recorded = [json.loads(line) for line in echo.read_bytes().split(b"\n")[:-1]]
    for r in recorded:
        assert r.pop("event") == r["kind"]
    assert len(recorded) - 1 <= len(complete) <= len(recorded)
    assert events == recorded[: len(complete)]

    report = check_log(log)
    assert report.ok, report.summary()
    assert not report.complete and report.events == len(events)
