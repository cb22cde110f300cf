"""``sandbox sweep``: the grid, one row per run, resuming, bad input, and identical rows on every backend."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from sandbox._tools import sweep as sw


def cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "sandbox", *args], capture_output=True, text=True, timeout=300,
                          cwd=cwd, env={**os.environ, "COLUMNS": "200"})


def sweep_here(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    """``sandbox sweep ARGS`` in this process (no interpreter start-up): (status, stdout, stderr)."""
    from sandbox.cli import main

    status = main(["sweep", *args])
    out, err = capsys.readouterr()
    return status, out, err


def rows(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "runs.jsonl").read_text().splitlines()]


# --- the grid -------------------------------------------------------------------------------------


DOC = {
    "name": "d",
    "insurance_fund": {"balance": "5"},
    "markets": [{"symbol": "PUNK", "maintenance_margin": "0.05"}, {"symbol": "BAYC", "maintenance_margin": "0.05"}],
    "orders": [{"account": "mm", "market": "PUNK", "price": "93"}, {"account": "mm", "market": "BAYC", "price": "59"}],
    "traders": [{"name": "retail", "count": 10, "leverage": {"min": "2", "max": "5"}}],
    "market_makers": [{"account": "mm", "requote": True}],
}


def test_a_dotted_key_names_tables_and_entries_of_arrays_by_their_name_or_position():
    assert sw.apply_override(DOC, "insurance_fund.balance", "50")["insurance_fund"] == {"balance": "50"}
    assert sw.apply_override(DOC, "markets.BAYC.maintenance_margin", "0.08")["markets"][1]["maintenance_margin"] == "0.08"
    assert sw.apply_override(DOC, "orders.1.price", "60")["orders"][1]["price"] == "60"
    assert sw.apply_override(DOC, "traders.retail.leverage.max", "9")["traders"][0]["leverage"] == {"min": "2", "max": "9"}
    assert DOC["insurance_fund"] == {"balance": "5"}  # the document itself is never changed


def test_a_value_keeps_the_type_of_the_key_it_replaces():
    assert sw.apply_override(DOC, "traders.retail.count", "20")["traders"][0]["count"] == 20
    assert sw.apply_override(DOC, "traders.retail.count", "2.5")["traders"][0]["count"] == "2.5"  # the validator says no
    assert sw.apply_override(DOC, "market_makers.mm.requote", "false")["market_makers"][0]["requote"] is False
    assert sw.apply_override(DOC, "insurance_fund.balance", "10")["insurance_fund"]["balance"] == "10"  # a string stays one
    assert sw.apply_override(DOC, "traders.retail.orders", "3")["traders"][0]["orders"] == 3  # a new key: TOML's reading


@pytest.mark.parametrize(("key", "problem"), [
    ("markets.NOPE.maintenance_margin", "markets.NOPE: no entry named 'NOPE' (there are BAYC, PUNK)"),
    ("orders.mm.price", "orders.mm: several entries have account 'mm'; use its position"),
    ("orders.7.price", "orders.7: there are only 2 entries"),
    ("markets.maintenance_margin", "markets is an array: name one of its entries"),
    ("insurance_fund.balance.x", "insurance_fund.balance is a value, not a table"),
])
def test_a_key_that_leads_nowhere_is_refused(key, problem):
    with pytest.raises(ValueError, match="^" + re.escape(problem)):
        sw.apply_override(DOC, key, "1")


@pytest.mark.parametrize(("text", "problem"), [
    ("insurance_fund.balance", "expected KEY=V1,V2"),
    ("insurance_fund.balance=1,,2", "empty value"),
    ("insurance_fund.balance=1,1", "given twice"),
    ("seed=1,2", "use --seeds"),
    ("insurance_fund..balance=1", "empty part"),
])
def test_a_malformed_set_is_refused(text, problem):
    with pytest.raises(sw.SweepError, match=problem):
        sw.parse_set(text)


def test_the_grid_is_every_combination_in_the_order_given_then_each_seed():
    plan = sw.load_sweep("demo", ["insurance_fund.balance=0,5", "markets.PUNK.maintenance_margin=0.05,0.06,0.07"], 2)
    assert [(dict(t.params), t.seed) for t in plan.tasks()][:3] == [
        ({"insurance_fund.balance": "0", "markets.PUNK.maintenance_margin": "0.05"}, 0),
        ({"insurance_fund.balance": "0", "markets.PUNK.maintenance_margin": "0.05"}, 1),
        ({"insurance_fund.balance": "0", "markets.PUNK.maintenance_margin": "0.06"}, 0),
    ]
    assert len(plan.tasks()) == 2 * 3 * 2


# --- one row per run ---------------------------------------------------------------------------------


def test_a_row_has_the_funds_path_and_the_counts_of_the_run_by_hand():
    plan = sw.load_sweep("demo", ["insurance_fund.balance=0,5,100"], 1)
    by_fund = {t.params[0][1]: sw.execute(plan.job, t) for t in plan.tasks()}
    # Fund 100: +3 surplus from alice (103), then it accepts carol's short 2 BAYC at 56, buys
    # one back at 59 at once (the 65 offer is outside its band, 58 x 1.1 = 63.8) and the other
    # at 57 at t=3: pays 3 + 1 = 4 (99). No ADL.
    assert by_fund["100"] == {
        "params": {"insurance_fund.balance": "100"}, "seed": 0, "status": "ok", "fund_initial": "100",
        "fund_final": "99", "fund_min": "99", "fund_drawdown": "1", "fund_payouts": "4", "fund_payout_count": 1,
        "liquidations": 2, "bankruptcies": 1, "fund_takeovers": 1, "adl": 0, "adl_notional": "0", "violations": [],
    }
    # Fund 5 (the demo): 5 -> 8 -> pays 4 -> 4; nobody deleveraged.
    assert (by_fund["5"]["fund_min"], by_fund["5"]["fund_payouts"], by_fund["5"]["adl"],
            by_fund["5"]["adl_notional"]) == ("4", "4", 0, "0")
    # Fund 0: +3 from alice, but the lot loses 4 at the mark: it cannot accept it, so both
    # contracts are deleveraged at 56: notional 112.
    assert (by_fund["0"]["fund_final"], by_fund["0"]["adl"], by_fund["0"]["adl_notional"]) == ("3", 2, "112")
    assert list(by_fund["0"]) == list(sw.ROW_FIELDS)


def test_the_summary_gives_p_adl_with_its_interval_and_drawdown_quantiles():
    plan = sw.load_sweep("demo", ["insurance_fund.balance=0,100"], 3)
    made = [sw.execute(plan.job, t) for t in plan.tasks()]
    zero, hundred = sw.summarize(plan, made)
    assert (zero["runs"], zero["adl_runs"], zero["p_adl"]) == (3, 3, 1.0)
    assert (hundred["adl_runs"], hundred["p_adl"], hundred["fund_drawdown"]) == (
        0, 0.0, {"p50": "1", "p90": "1", "p99": "1", "max": "1"})
    low, high = hundred["p_adl_95"]
    assert low == 0.0 and 0.5 < high < 0.6  # Wilson: 0 of 3 is still compatible with up to ~56%


def test_quantiles_are_nearest_rank():
    from decimal import Decimal

    values = [Decimal(v) for v in range(1, 11)]
    assert [sw._quantile(values, q) for q in ("0.5", "0.9", "0.99")] == [5, 9, 10]


# --- the command ------------------------------------------------------------------------------------


def test_a_sweep_writes_rows_summary_and_plot_and_prints_runs_per_second(tmp_path: Path):
    out = tmp_path / "out"
    proc = cli("sweep", "demo", "--set", "insurance_fund.balance=0,100", "--seeds", "3", "--workers", "2",
               "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    assert "2 combinations x 3 seeds = 6 runs on 2 local workers" in proc.stdout
    assert " runs/s on 2 local workers" in proc.stdout
    got = rows(out)
    assert [(r["params"]["insurance_fund.balance"], r["seed"]) for r in got] == [
        ("0", 0), ("0", 1), ("0", 2), ("100", 0), ("100", 1), ("100", 2)]
    summary = json.loads((out / "summary.json").read_text())
    assert [c["p_adl"] for c in summary["combinations"]] == [1.0, 0.0]
    assert summary["set"] == {"insurance_fund.balance": ["0", "100"]} and summary["seeds"] == 3
    assert (out / "plot.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not list(out.glob(".*"))  # no temporary file left


def test_rows_are_identical_whatever_the_number_of_workers(tmp_path: Path):
    plan = sw.load_sweep("stochastic_crash", ["insurance_fund.balance=0,200"], 3)
    one = sw.run_sweep(plan, tmp_path / "one", sw.local_backend(1), plot=False)
    two = sw.run_sweep(plan, tmp_path / "two", sw.local_backend(2), plot=False)
    assert (tmp_path / "one" / "runs.jsonl").read_bytes() == (tmp_path / "two" / "runs.jsonl").read_bytes()
    assert one.rows == two.rows and len(one.rows) == 6
    assert all(r["status"] == "ok" for r in one.rows)
    assert len({json.dumps(r["fund_min"]) for r in one.rows if r["params"]["insurance_fund.balance"] == "200"}) > 1


def test_a_restarted_sweep_skips_the_runs_already_done_and_drops_a_torn_line(tmp_path: Path, capsys):
    out = tmp_path / "out"
    args = ("demo", "--set", "insurance_fund.balance=0,100", "--seeds", "3", "--workers", "1", "--out", str(out))
    assert sweep_here(capsys, *args)[0] == 0
    complete = (out / "runs.jsonl").read_text()
    lines = complete.splitlines(keepends=True)
    # As if killed after three rows, in the middle of writing the fourth; mark a kept row so
    # a rerun that recomputed it would show.
    kept = [json.loads(line) for line in lines[:3]]
    kept[1]["liquidations"] = 99
    (out / "runs.jsonl").write_text("".join(json.dumps(r) + "\n" for r in kept) + lines[3][:20])
    status, stdout, stderr = sweep_here(capsys, *args)
    assert status == 0, stderr
    assert "3 runs already done, skipped" in stdout and "3 runs in" in stdout
    again = rows(out)
    assert len(again) == 6 and again[1]["liquidations"] == 99
    assert [r for i, r in enumerate(again) if i != 1] == [json.loads(x) for i, x in enumerate(lines) if i != 1]
    # Nothing left to do: a third run only rewrites the summary.
    status, stdout, _ = sweep_here(capsys, *args)
    assert status == 0 and "6 runs already done" in stdout and "runs/s" not in stdout


def test_an_interrupted_sweep_keeps_its_finished_rows(tmp_path: Path):
    """Killed outright in mid-sweep: every line on disk is a complete row, and a rerun completes the rest."""
    out = tmp_path / "out"
    args = ["sweep", "stochastic_crash", "--set", "insurance_fund.balance=0,50", "--seeds", "10", "--workers", "1",
            "--out", str(out)]
    marker = f"sweep-test-{os.getpid()}-{id(tmp_path)}"
    proc = subprocess.Popen([sys.executable, "-m", "sandbox", *args], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, env={**os.environ, "SANDBOX_TEST_MARKER": marker})
    try:
        journal = out / "runs.jsonl"
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and (not journal.exists() or journal.read_text().count("\n") < 2):
            time.sleep(0.05)
    finally:
        proc.kill()
        proc.wait()
    # Its worker processes (and their forkserver) leave too, though nobody shut the pool down.
    deadline = time.monotonic() + 20
    while _processes_marked(marker) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert _processes_marked(marker) == []
    partial = journal.read_bytes()
    assert partial.count(b"\n") >= 2
    complete = [json.loads(line) for line in partial[: partial.rfind(b"\n")].splitlines()]
    assert 2 <= len(complete) < 20
    done = cli(*args)
    assert done.returncode == 0, done.stderr
    assert f"{len(complete)} runs already done" in done.stdout
    final = rows(out)
    assert len(final) == 20 and all(r in final for r in complete)


def test_ctrl_c_stops_the_sweep_with_status_130_and_keeps_its_rows(tmp_path: Path):
    out = tmp_path / "out"
    proc = subprocess.Popen([sys.executable, "-m", "sandbox", "sweep", "stochastic_crash", "--set",
                             "insurance_fund.balance=0,50", "--seeds", "5000", "--workers", "2", "--out", str(out)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        journal = out / "runs.jsonl"
        while time.monotonic() < deadline and (not journal.exists() or journal.read_text().count("\n") < 2):
            time.sleep(0.05)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=120)
    finally:
        proc.kill()
        proc.wait()
    assert proc.returncode == 130
    assert err.strip().splitlines()[-1] == (f"sandbox: interrupted; the finished runs are in {journal}: "
                                            "run the same command again to resume")
    kept = journal.read_text().splitlines()
    assert 2 <= len(kept) < 10_000 and all(json.loads(line)["status"] == "ok" for line in kept)
    assert not (out / "summary.json").exists()


def _processes_marked(marker: str) -> list[int]:
    """Live processes whose environment carries ``marker`` (they descend from the process it was given to)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            environ = (entry / "environ").read_bytes()
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if f"SANDBOX_TEST_MARKER={marker}".encode() in environ.split(b"\0") and state != "Z":
            found.append(int(entry.name))
    return found


@pytest.mark.parametrize(("args", "message"), [
    (("--set", "insurance_fund.colour=1"), "--set insurance_fund.colour=1: insurance_fund.colour: unknown key"),
    (("--set", "insurance_fund.balance=10,-5"),
     "--set insurance_fund.balance=-5: insurance_fund.balance: must not be negative, got '-5'"),
    (("--set", "markets.PUNK.maintenance_margin=0.05,0.1"),
     "--set markets.PUNK.maintenance_margin=0.1: markets[0].maintenance_margin: must be below initial_margin"),
    (("--set", "markets.DOGE.tick_size=1"), "--set markets.DOGE.tick_size=1: markets.DOGE: no entry named 'DOGE' (there are BAYC, PUNK)"),
    (("--set", "traders.punk.count=10,many"), "--set traders.punk.count=many: traders[0].count: expected an integer, got a string"),
    (("--set", "seed=1"), "--set seed: cannot be swept (use --seeds)"),
    (("--scheduler", "localhost:8786"), "--scheduler 'localhost:8786': expected tcp://HOST:PORT or tls://HOST:PORT"),
    (("--scheduler", "tcp://127.0.0.1:1", "--workers", "2"), "--workers is for the local pool; with --scheduler the cluster's workers run the sweep"),
])
def test_bad_sweep_input_exits_2_with_one_line_and_writes_nothing(tmp_path: Path, capsys, monkeypatch, args,
                                                                   message):
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "out"
    status, stdout, stderr = sweep_here(capsys, "stochastic_crash", "--seeds", "2", "--out", str(out), *args)
    assert status == 2
    assert stdout == ""
    assert stderr.splitlines() == [f"sandbox: {message}"], stderr
    assert not out.exists() and list(tmp_path.iterdir()) == []


def test_bad_sweep_input_from_the_command_line_has_no_traceback(tmp_path: Path):
    proc = cli("sweep", "demo", "--seeds", "2", "--set", "markets.PUNK.tick_size=0", "--out", str(tmp_path / "o"))
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr == "sandbox: --set markets.PUNK.tick_size=0: markets[0].tick_size: must be greater than 0, got '0'\n"
    assert not (tmp_path / "o").exists()


def test_an_out_directory_of_another_sweep_is_refused(tmp_path: Path, capsys):
    out = tmp_path / "out"
    assert sweep_here(capsys, "demo", "--set", "insurance_fund.balance=0", "--seeds", "1", "--out", str(out))[0] == 0
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    status, _, stderr = sweep_here(capsys, "demo", "--set", "insurance_fund.balance=1", "--seeds", "1", "--out", str(out))
    assert status == 2
    assert stderr.splitlines() == [
        f'sandbox: --out {out}: holds a different sweep (set was {{"insurance_fund.balance": ["0"]}}); '
        "use another --out"]
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
