"""The command line: the default demo, --out files, determinism across processes, list."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from sandbox import bundled_scenarios


def cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "sandbox", *args], capture_output=True, text=True, timeout=300,
        env={**os.environ, **(env or {})},
    )


def test_default_run_narrates_the_demo_and_exits_0():
    proc = cli("run")
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    for phrase in ("demo", "liquidating alice", "3 ETH left over goes to the fund", "insurance fund takes over carol",
                   "insurance fund accepts carol's short 2 BAYC", "all held at every quiet point"):
        assert phrase in out
    assert "\x1b[" not in out  # piped: no colour codes


def test_out_writes_events_and_summary(tmp_path: Path):
    proc = cli("run", "demo", "--out", str(tmp_path), "--quiet")
    assert proc.returncode == 0, proc.stderr
    events = [json.loads(line) for line in (tmp_path / "events.jsonl").read_text().splitlines()]
    assert [e["seq"] for e in events] == list(range(len(events)))
    for e in events:
        assert {"seq", "time", "actor", "kind"} <= set(e)
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["scenario"] == "demo" and summary["seed"] == 0
    assert summary["insurance_fund"] == {"initial": "5", "final": "4", "positions": {}}
    assert summary["accounts"]["dave"] == {"deposited": "10", "withdrawn": "0", "balance": "10",
                                           "positions": {"BAYC": {"size": "1", "entry_value": "50"}}}
    assert summary["markets"]["BAYC"] == {"mark_price": "57", "open_interest_long": "2", "open_interest_short": "2"}
    assert summary["opening_imbalance"] == "0"
    assert summary["fees"] == "0"
    assert summary["counts"] == {"liquidations": 2, "bankruptcies": 1, "fund_takeovers": 1, "adl": 0}
    assert not list(tmp_path.glob(".*"))  # no temporary files left behind


def _events_bytes(tmp_path: Path, name: str, seed: str, hashseed: str) -> bytes:
    out = tmp_path / f"{name}-{seed}-{hashseed}"
    proc = cli("run", name, "--seed", seed, "--out", str(out), "--quiet", env={"PYTHONHASHSEED": hashseed})
    assert proc.returncode == 0, proc.stderr
    return (out / "events.jsonl").read_bytes()


@pytest.mark.parametrize("name", ["demo", "textbook"])
def test_same_seed_same_bytes_in_separate_processes(tmp_path, name):
    assert _events_bytes(tmp_path, name, "7", "1") == _events_bytes(tmp_path, name, "7", "12345")


def test_list_shows_every_bundled_scenario():
    proc = cli("list")
    assert proc.returncode == 0
    names = [line.split()[0] for line in proc.stdout.splitlines()]
    assert names == list(bundled_scenarios())
    assert {"demo", "textbook"} <= set(names)


def test_log_json_sends_every_event_to_stderr():
    proc = cli("run", "textbook", "--quiet", "--log-json")
    assert proc.returncode == 0
    kinds = [json.loads(line)["kind"] for line in proc.stderr.splitlines()]
    assert "liquidation_started" in kinds and "fund_surplus" in kinds
