"""Hostile files and hostile paths (issue 15): each case the issue found, as a test.

Small files that ask for unbounded work, outputs that must not clobber what
is at their path, inputs that must not read too much or hang, and sweeps
that must not trust their journal or their cluster. Every test here failed
(or hung, or overwrote its target) before the fix; ``docs/guarantees.md``
lists the promises they check.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from sandbox import ScenarioError, load_scenario
from sandbox._core.safeio import OutDir, UnsafePath, read_regular, safe_name, write_atomic
from sandbox.cli import main
from sandbox._exchange.run import Timeline, build, run_scenario_sync, work_limits

MARKET = """\
name = "hostile"
seed = 0
[insurance_fund]
balance = "10"
[[markets]]
symbol = "PUNK"
mark_price = "100"
initial_margin = "0.1"
maintenance_margin = "0.05"
tick_size = "0.01"
lot_size = "0.01"
[[accounts]]
id = "alice"
deposit = "10"
positions = [{ market = "PUNK", size = "1", entry_price = "100" }]
[[accounts]]
id = "bob"
deposit = "100"
positions = [{ market = "PUNK", size = "-1", entry_price = "100" }]
"""

CRASH_LOOP = MARKET + """\
[faults.crash]
probability = "1"
actors = ["oracle"]
[[events]]
at = "1"
type = "mark_price"
market = "PUNK"
price = "99"
"""

CSV_SCENARIO = MARKET.replace('name = "hostile"', 'name = "csv"') + """\
[[price_paths]]
market = "PUNK"
csv = "punk.csv"
"""


def sandbox(*args: str, timeout: float = 120, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "sandbox", *args], capture_output=True, text=True,
                          timeout=timeout, cwd=cwd)


def here(*args: str) -> tuple[int, str, str]:
    """``sandbox ARGS`` in this process: (status, stdout, stderr)."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            status = main(list(args))
        except SystemExit as e:  # argparse
            status = int(e.code or 0)
    return status, out.getvalue(), err.getvalue()


def one_line(err: str) -> str:
    assert err.endswith("\n") and err.count("\n") == 1, repr(err[-2000:])
    assert err.startswith("sandbox: ") and "Traceback" not in err
    return err


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


# --- bounded work ---------------------------------------------------------------------------------


def test_an_index_price_at_a_trillion_seconds_is_refused_before_anything_runs(tmp_path):
    # 222 bytes that used to build 2.8e8 funding ticks up front (2.7 GB in 60 s, no event written).
    path = write(tmp_path / "far.toml", MARKET + '[[events]]\nat = "1000000000000"\ntype = "index_price"\n'
                                                'market = "PUNK"\nprice = "95"\n')
    with pytest.raises(ScenarioError, match=r"277,777,777 funding ticks; at most 100,000"):
        load_scenario(path)
    status, out, err = here("run", str(path), "--out", str(tmp_path / "out"))
    assert status == 2 and out == "" and not (tmp_path / "out").exists()
    one_line(err)


def test_funding_ticks_are_made_as_the_run_reaches_them(tmp_path):
    # 90,000 hourly ticks: allowed, and never held all at once.
    path = write(tmp_path / "long.toml", MARKET + '[[events]]\nat = "324000000"\ntype = "index_price"\n'
                                                  'market = "PUNK"\nprice = "100"\n')
    scenario = load_scenario(path)
    _, timeline = build(scenario)
    assert isinstance(timeline, Timeline) and timeline.funding_ticks == 90_000
    assert len(timeline) == 2  # Started and the index event: the ticks are not in the list
    stream = iter(timeline)
    first = [next(stream) for _ in range(3)]
    assert [(t, type(m).__name__) for t, _, m in first] == [
        (0, "Started"), (3_600_000, "FundingDue"), (7_200_000, "FundingDue")]
    # At the last event's time the scripted stimulus comes before that hour's tick.
    tail = list(stream)[-2:]
    assert [(t, type(m).__name__) for t, _, m in tail] == [(324_000_000_000, "IndexPriceObserved"),
                                                          (324_000_000_000, "FundingDue")]


def test_a_crash_with_probability_1_ends(tmp_path):
    path = write(tmp_path / "crash.toml", CRASH_LOOP)
    out = tmp_path / "out"
    proc = sandbox("run", str(path), "--quiet", "--out", str(out), timeout=300)
    assert proc.returncode == 4, proc.stderr[-2000:]
    one_line(proc.stderr)
    assert "1,000 crashes in a row and no message delivered" in proc.stderr
    summary = json.loads((out / "summary.json").read_text())
    assert summary["status"] == "stopped" and "crashes in a row" in summary["stopped"]
    last = json.loads((out / "events.jsonl").read_text().splitlines()[-1])
    assert last["kind"] == "work_limit_reached"
    # check-log reads it as the prefix of a run that did not end, not as a bad log.
    assert sandbox("check-log", str(out / "events.jsonl")).returncode == 0


def test_a_run_stops_at_its_step_cap():
    import trio

    from sandbox._exchange.result import WorkLimits
    from sandbox._exchange.run import run_scenario
    from sandbox._scenario.load import resolve_scenario

    demo = resolve_scenario("demo")  # 64 deliveries
    assert work_limits(demo).steps == 10_000 + 64 * work_limits(demo).entries
    result = trio.run(lambda: run_scenario(demo, limits=WorkLimits(10, 10**12, 1)))
    assert result.status == "stopped" and "still busy after 10 steps" in str(result.stopped)
    assert result.runtime.delivery.delivered == 11  # stopped at the first step past the cap
    assert [e["kind"] for e in result.events].count("run_finished") == 0
    assert result.summary()["status"] == "stopped"


def test_a_run_whose_clock_runs_away_stops_at_its_horizon(tmp_path):
    # Each crash keeps the oracle down a minute: time runs, nothing is delivered.
    scenario = load_scenario(write(tmp_path / "down.toml", CRASH_LOOP.replace(
        'actors = ["oracle"]', 'actors = ["oracle"]\ndowntime = "60"')))
    limits = work_limits(scenario)
    assert limits.horizon_ms == 1_000 + 86_400_000 + 1_000 * 60_000
    from sandbox._exchange.result import WorkLimits

    # A horizon an hour after the last event: reached after some 60 crashes, before any other limit.
    result = run_scenario_sync(scenario, limits=WorkLimits(limits.steps, 1_000 + 3_600_000, limits.entries))
    assert result.status == "stopped" and not result.ok
    assert "past the horizon" in str(result.stopped)
    assert result.runtime.now_ms > 3_601_000 and result.events[-1]["kind"] == "work_limit_reached"


def test_every_bundled_scenario_runs_well_inside_its_limits():
    from sandbox._scenario.load import bundled_scenarios

    for name, load in bundled_scenarios().items():
        for seed in (0, 1):
            result = run_scenario_sync(load(), seed=seed)
            limits = work_limits(result.scenario)
            steps = result.runtime.delivery.delivered + result.log.counts["actor_crashed"]
            # docs/guarantees.md: at most 8 steps per entry measured, against a cap of 64 per entry.
            assert result.stopped is None and steps <= 8 * limits.entries, (name, steps, limits)


# --- safe writes ----------------------------------------------------------------------------------


def test_report_onto_the_scenario_or_the_runs_own_log_is_refused(tmp_path):
    path = write(tmp_path / "s.toml", MARKET)
    out = tmp_path / "out"
    for target in (path, out / "events.jsonl", out / "summary.json"):
        status, stdout, err = here("run", str(path), "--quiet", "--out", str(out), "--report", str(target))
        assert status == 2 and stdout == "", err
        assert "one of this command's own inputs or outputs" in one_line(err)
    assert path.read_text() == MARKET and not out.exists()


def test_report_onto_a_fifo_or_a_symlink_is_refused_and_leaves_it_alone(tmp_path):
    fifo = tmp_path / "fifo.html"
    os.mkfifo(fifo)
    victim = write(tmp_path / "victim.txt", "precious")
    link = tmp_path / "link.html"
    link.symlink_to(victim)
    for target, kind in ((fifo, "a FIFO"), (link, "a symbolic link"), (tmp_path, "a directory")):
        status, _, err = here("run", "demo", "--quiet", "--report", str(target))
        assert status == 2 and f"is {kind}" in one_line(err), err
    assert fifo.is_fifo() and link.is_symlink() and victim.read_text() == "precious"


def test_symlinks_planted_in_out_are_never_written_through(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    victim = write(tmp_path / "victim.txt", "precious")
    (out / "events.jsonl").symlink_to(victim)
    (out / "summary.json").symlink_to(victim)
    (out / ".summary.json.tmp").symlink_to(victim)  # the old fixed temporary name
    status, _, err = here("run", "demo", "--quiet", "--out", str(out))
    assert status == 0, err
    assert victim.read_text() == "precious"
    assert not (out / "events.jsonl").is_symlink() and (out / "events.jsonl").stat().st_size > 0
    assert json.loads((out / "summary.json").read_text())["status"] == "ok"


def test_a_hard_link_in_out_is_replaced_not_truncated(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    victim = write(tmp_path / "victim.txt", "precious")
    os.link(victim, out / "events.jsonl")
    assert here("run", "demo", "--quiet", "--out", str(out))[0] == 0
    assert victim.read_text() == "precious"


def test_a_killed_run_never_leaves_the_old_summary_beside_its_new_log(tmp_path):
    out = tmp_path / "out"
    assert here("run", "demo", "--quiet", "--out", str(out))[0] == 0
    assert (out / "summary.json").exists()
    old_log = (out / "events.jsonl").read_bytes()
    path = write(tmp_path / "crash.toml", CRASH_LOOP)  # busy for a few seconds
    proc = subprocess.Popen([sys.executable, "-m", "sandbox", "run", str(path), "--quiet", "--out", str(out)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            log = out / "events.jsonl"
            if log.exists() and log.read_bytes()[:200] != old_log[:200] and log.stat().st_size > 50_000:
                break
            time.sleep(0.02)
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert not (out / "summary.json").exists()
    assert json.loads((out / "events.jsonl").read_text().splitlines()[0])["scenario"] == "hostile"
    assert [p.name for p in out.iterdir()] == ["events.jsonl"]


def test_a_second_command_into_a_locked_out_is_refused(tmp_path):
    out = tmp_path / "out"
    with OutDir(out):  # as if another run were writing there
        status, stdout, err = here("run", "demo", "--quiet", "--out", str(out))
        assert status == 2 and stdout == ""
        assert "another sandbox command is writing there" in one_line(err)
        status, _, err = here("sweep", "demo", "--seeds", "1", "--workers", "1", "--out", str(out))
        assert status == 2 and "another sandbox command is writing there" in one_line(err)
    assert list(out.iterdir()) == []
    assert here("run", "demo", "--quiet", "--out", str(out))[0] == 0  # released with the folder


def test_an_events_file_that_is_a_directory_is_bad_input(tmp_path):
    out = tmp_path / "out"
    (out / "events.jsonl").mkdir(parents=True)
    status, _, err = here("run", "demo", "--quiet", "--out", str(out))
    assert status == 2 and "events.jsonl there is a directory" in one_line(err)
    status, _, err = here("check-log", str(out / "events.jsonl"))
    assert status == 2 and "is a directory" in one_line(err)


def test_a_scenario_name_with_dot_dot_keeps_the_sweeps_default_folder_in_out(tmp_path, monkeypatch):
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    path = write(work / "s.toml", MARKET.replace('name = "hostile"', 'name = "../../escaped"'))
    status, _, err = here("sweep", str(path), "--seeds", "1", "--workers", "1")
    assert status == 0, err
    assert sorted(p.name for p in (work / "out").iterdir()) == ["sweep-escaped"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["work"]
    assert safe_name("../../x") == "x" and safe_name("a/b\x1b[2J") == "a_b_2J" and safe_name("..") == "scenario"


def test_the_replay_file_is_named_from_a_harmless_name():
    from sandbox._tools.explore_cli import _replay_name

    scenario = load_scenario_from_text(MARKET.replace('name = "hostile"', 'name = "../../../etc/x"'))
    name = _replay_name(scenario, None, None)
    assert "/" not in name and name == "replay-etc_x.json"


def load_scenario_from_text(text: str):
    from sandbox._scenario.load import _parse_bytes

    return _parse_bytes(text.encode(), "text.toml")


def test_atomic_writes_refuse_what_is_not_a_regular_file_and_leave_no_temporary(tmp_path):
    fifo = tmp_path / "f"
    os.mkfifo(fifo)
    with pytest.raises(UnsafePath, match="is a FIFO"):
        write_atomic(fifo, "x")
    (tmp_path / "l").symlink_to(tmp_path / "absent")
    with pytest.raises(UnsafePath, match="symbolic link"):
        write_atomic(tmp_path / "l", "x")
    assert not (tmp_path / "absent").exists()
    write_atomic(tmp_path / "ok.txt", "one")
    write_atomic(tmp_path / "ok.txt", "two")
    assert (tmp_path / "ok.txt").read_text() == "two"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f", "l", "ok.txt"]


# --- bounded reads --------------------------------------------------------------------------------


def test_a_csv_outside_the_scenarios_folder_is_refused_unless_allowed(tmp_path):
    folder = tmp_path / "downloaded"
    folder.mkdir()
    write(tmp_path / "outside.csv", "at,price\n1,95\n")
    for name in ("../outside.csv", str(tmp_path / "outside.csv"), "/etc/passwd"):
        path = write(folder / "s.toml", CSV_SCENARIO.replace("punk.csv", name))
        status, _, err = here("run", str(path), "--quiet")
        assert status == 2 and "outside the scenario's folder" in one_line(err) and "--allow-outside-paths" in err
    # A symlink inside the folder that leads out is outside too.
    (folder / "punk.csv").symlink_to(tmp_path / "outside.csv")
    path = write(folder / "s.toml", CSV_SCENARIO)
    assert "outside the scenario's folder" in here("run", str(path), "--quiet")[2]
    path = write(folder / "s.toml", CSV_SCENARIO.replace("punk.csv", "../outside.csv"))
    status, _, err = here("run", str(path), "--quiet", "--allow-outside-paths")
    assert status == 0, err


def test_csv_errors_never_quote_the_file(tmp_path):
    write(tmp_path / "punk.csv", "at,price\n1,95\nSECRET-TOKEN-1234,96\n")
    path = write(tmp_path / "s.toml", CSV_SCENARIO)
    status, _, err = here("run", str(path), "--quiet")
    assert status == 2 and "line 3, column 'at'" in one_line(err)
    assert "SECRET" not in err
    write(tmp_path / "punk.csv", "root:x:0:0:root:/root:/bin/bash\n")
    status, _, err = here("run", str(path), "--quiet")
    assert status == 2 and "root" not in one_line(err).replace(str(tmp_path), "")


@pytest.mark.parametrize("command", ["scenario", "csv", "replay", "log"])
def test_a_fifo_given_as_any_input_is_refused_at_once(tmp_path, command):
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    if command == "scenario":
        args = ["run", str(fifo)]
    elif command == "csv":
        os.rename(fifo, tmp_path / "punk.csv")
        args = ["run", str(write(tmp_path / "s.toml", CSV_SCENARIO))]
    elif command == "replay":
        args = ["replay", str(fifo)]
    else:
        args = ["check-log", str(fifo)]
    proc = sandbox(*args, timeout=60)  # a hang would be a TimeoutExpired
    assert proc.returncode == 2
    assert "a FIFO (named pipe)" in one_line(proc.stderr)


def test_replay_and_log_files_have_a_size_limit(tmp_path):
    from sandbox._tools.checklog import MAX_LOG_BYTES
    from sandbox._tools.explore import MAX_REPLAY_BYTES

    big = tmp_path / "big.json"
    with open(big, "wb") as f:  # sparse: nothing is really written
        f.truncate(MAX_REPLAY_BYTES + 1)
    status, _, err = here("replay", str(big))
    assert status == 2 and "too large for a replay file" in one_line(err)
    with open(big, "wb") as f:
        f.truncate(MAX_LOG_BYTES + 1)
    status, _, err = here("check-log", str(big))
    assert status == 2 and "too large for an events file" in one_line(err)
    status, _, err = here("check-log", "/dev/zero")
    assert status == 2 and "a character device" in one_line(err)
    with pytest.raises(UnsafePath, match="too large"):
        read_regular(big, 10)


def _finding(scenario):
    from sandbox._tools.explore import Failure, Finding, _CountingChooser, run_once

    run = run_once(scenario, _CountingChooser())
    return Finding(scenario, None, None, Failure("event", "recorded"), tuple(run.decisions), tuple(run.events), (), 0)


def test_a_replay_of_a_csv_scenario_is_self_contained_and_checks_its_data(tmp_path):
    from sandbox._tools.explore import events_digest, read_replay, replay_run, write_replay

    write(tmp_path / "punk.csv", "at,price\n1,95\n2,80\n3,70\n")
    scenario = load_scenario(write(tmp_path / "s.toml", CSV_SCENARIO)).for_seed(5)  # as explore runs it
    assert [d.name for d in scenario.data_files] == ["punk.csv"]
    finding = _finding(scenario)
    replay_file = tmp_path / "replay.json"
    write_replay(finding, replay_file)
    # The csv changes (or goes): the replay does not look at it.
    write(tmp_path / "punk.csv", "at,price\n1,200\n")
    replay = read_replay(replay_file)
    run = replay_run(replay, None)
    assert events_digest(run.events) == events_digest(finding.events)
    # Edited embedded data is refused, naming it.
    doc = json.loads(replay_file.read_text())
    doc["scenario"]["data"]["punk.csv"]["text"] = "at,price\n1,1\n"
    write(replay_file, json.dumps(doc))
    status, _, err = here("replay", str(replay_file))
    assert status == 2 and "scenario.data.'punk.csv': does not match its sha256" in one_line(err)
    # A replay without the data (an older one) says it is not self-contained.
    del doc["scenario"]["data"]
    write(replay_file, json.dumps(doc))
    status, _, err = here("replay", str(replay_file))
    assert status == 2 and "not self-contained" in one_line(err)


def test_replay_fields_of_the_wrong_type_and_deep_nesting_are_bad_input(tmp_path):
    from sandbox._tools.explore import write_replay

    replay_file = tmp_path / "replay.json"
    write_replay(_finding(load_scenario(write(tmp_path / "s.toml", MARKET))), replay_file)
    good = json.loads(replay_file.read_text())
    cases = [
        ("scenario", "x"), ("decisions", {"a": 1}), ("decisions", [["choose", 0, "1", 0]]), ("events", "12"),
        ("failure", None), ("variant", 3), ("decisions", [["boom", 0, 1, 0]]), ("events_sha256", [1]),
    ]
    for key, value in cases:
        write(replay_file, json.dumps({**good, key: value}))
        status, _, err = here("replay", str(replay_file))
        assert status == 2, (key, value, err)
        one_line(err)
    write(replay_file, "[" * 100_000 + "]" * 100_000)
    status, _, err = here("replay", str(replay_file))
    assert status == 2 and "nested too deeply" in one_line(err)


def test_deeply_nested_json_in_a_log_is_one_bad_line(tmp_path):
    log = write(tmp_path / "events.jsonl", "[" * 100_000 + "]" * 100_000 + "\n")
    status, out, err = here("check-log", str(log))
    assert (status, err) == (1, "")
    assert out.count("\n") == 1 and "line 1: JSON nested too deeply" in out


# --- sweeps and Dask ------------------------------------------------------------------------------

SWEEP = ("demo", "--set", "insurance_fund.balance=0,100", "--seeds", "2", "--workers", "1")


def journal(out: Path) -> list[str]:
    return (out / "runs.jsonl").read_text().splitlines()


def test_resume_redoes_bad_duplicate_and_fabricated_rows_and_never_crashes(tmp_path):
    out = tmp_path / "out"
    assert here("sweep", *SWEEP, "--out", str(out))[0] == 0
    clean = journal(out)
    rows = [json.loads(line) for line in clean]
    fabricated_adl = {**rows[0], "adl": rows[0]["adl"] + 1, "adl_notional": "0"}  # ADL of no notional: no run
    other_fund = {**rows[1], "fund_initial": "5", "fund_min": "5", "fund_final": "5", "fund_drawdown": "0"}
    duplicate = {**rows[2], "liquidations": rows[2]["liquidations"] + 1}  # a second row for task 2
    foreign = {**rows[3], "seed": 9}  # a seed the plan does not have
    lines = [
        json.dumps(fabricated_adl), json.dumps(other_fund), clean[2], json.dumps(duplicate), json.dumps(foreign),
        '{"params": {"insurance_fund.balance": "0"}, "seed": 1}',  # malformed: it crashed the resume
        '{"params": 1}', "[1, 2]", "[" * 50_000, '"just a string"', json.dumps({**rows[3], "seed": True}),
    ]
    write(out / "runs.jsonl", "\n".join(lines) + "\n")
    status, stdout, err = here("sweep", *SWEEP, "--out", str(out))
    assert status == 0, err
    assert "runs already done" not in stdout  # nothing in that journal was a row to keep
    assert journal(out) == clean
    summary = json.loads((out / "summary.json").read_text())
    assert [c["adl_runs"] for c in summary["combinations"]] == [
        sum(1 for r in rows if r["params"] == p and r["adl"] > 0) for p in ({"insurance_fund.balance": "0"},
                                                                            {"insurance_fund.balance": "100"})]
    # A good row is kept: only the missing ones are run.
    write(out / "runs.jsonl", clean[0] + "\n" + clean[3] + "\n")
    status, stdout, _ = here("sweep", *SWEEP, "--out", str(out))
    assert status == 0 and "2 runs already done, skipped" in stdout and journal(out) == clean


def test_the_sweeps_plan_covers_its_csv(tmp_path):
    write(tmp_path / "punk.csv", "at,price\n1,95\n2,90\n")
    path = write(tmp_path / "s.toml", CSV_SCENARIO)
    out = tmp_path / "out"
    args = ("sweep", str(path), "--set", "insurance_fund.balance=0,5", "--seeds", "1", "--workers", "1",
            "--out", str(out))
    assert here(*args)[0] == 0
    plan = json.loads((out / "sweep.json").read_text())
    assert list(plan["data"]) == ["punk.csv"]
    write(tmp_path / "punk.csv", "at,price\n1,50\n2,40\n")  # another price path: its rows must not mix
    status, _, err = here(*args)
    assert status == 2 and "holds a different sweep (data was" in one_line(err)


def test_a_sweep_journal_planted_as_a_symlink_is_not_written_through(tmp_path):
    out = tmp_path / "out"
    assert here("sweep", *SWEEP, "--out", str(out))[0] == 0
    victim = write(tmp_path / "victim.txt", "precious\n")
    (out / "runs.jsonl").unlink()
    (out / "runs.jsonl").symlink_to(victim)
    status, _, err = here("sweep", *SWEEP, "--out", str(out))
    assert status == 2 and "runs.jsonl there is a symbolic link" in one_line(err)
    assert victim.read_text() == "precious\n"


def test_an_unwritable_sweep_out_is_bad_input(tmp_path):
    blocker = write(tmp_path / "file", "")
    for out in (blocker, blocker / "sub"):
        status, stdout, err = here("sweep", *SWEEP, "--out", str(out))
        assert status == 2 and stdout == "", err
        one_line(err)
    assert blocker.read_text() == ""


def test_results_from_a_worker_are_checked_plain_data():
    from sandbox._tools import sweep as sw

    plan = sw.load_sweep("demo", ["insurance_fund.balance=0,100"], 1)
    task, other = plan.tasks()[0], plan.tasks()[1]
    row = sw.execute(plan.job, task)
    assert sw._checked_result(sw._dumps(row), task, "tls://x:1") == row

    class Evil:
        pass

    for bad, problem in ((Evil(), "returned Evil, not a row"), (row, "returned dict, not a row"),
                         (sw._dumps(sw.execute(plan.job, other)), "params of another run"),
                         ("[" * 50_000, "not JSON"), (sw._dumps({**row, "adl": -1}), "adl is not a count")):
        with pytest.raises(sw.SweepError, match=problem):
            sw._checked_result(bad, task, "tls://x:1")


def test_dask_task_keys_are_unpredictable_and_pickled_results_are_refused():
    from distributed import LocalCluster

    from sandbox._tools import sweep as sw

    plan = sw.load_sweep("demo", [], 2)
    with LocalCluster(n_workers=1, threads_per_worker=1, processes=True, dashboard_address=None) as cluster:
        backend = sw.DaskBackend(cluster.scheduler_address)
        try:
            keys: list[list[str]] = []
            for _ in range(2):
                submitted: list[str] = []
                real_submit = backend.client.submit

                def submit(*args, submitted=submitted, real_submit=real_submit, **kwargs):
                    submitted.append(kwargs["key"])
                    return real_submit(*args, **kwargs)

                backend.client.submit = submit  # type: ignore[method-assign]
                rows = list(backend(plan.job, plan.tasks()))
                backend.client.submit = real_submit  # type: ignore[method-assign]
                assert sorted(r["seed"] for r in rows) == [0, 1]
                keys.append(submitted)
            # The same tasks twice: no key in common, none derived from the sweep.
            assert len(set(keys[0] + keys[1])) == 4
            # Something Dask would have to unpickle never reaches the sweep.
            future = backend.client.submit(_unpicklable_result, pure=False)
            with pytest.raises(Exception) as info:
                future.result(timeout=60)
            assert "pickle" in str(info.value).lower() or "serialize" in str(info.value).lower()
            assert "SANDBOX_UNPICKLED" not in os.environ
        finally:
            backend.close()


class _RunsCode:
    def __reduce__(self):
        return (os.environ.__setitem__, ("SANDBOX_UNPICKLED", "yes"))


def _unpicklable_result() -> _RunsCode:
    return _RunsCode()


def test_tls_options_go_together_and_only_with_tls(tmp_path):
    status, _, err = here("sweep", *SWEEP[:-2], "--scheduler", "tcp://127.0.0.1:1", "--tls-cert", "x")
    assert status == 2 and "are for a tls:// scheduler" in one_line(err)
    status, _, err = here("sweep", *SWEEP[:-2], "--tls-cert", "x")
    assert status == 2 and "are for a tls:// --scheduler" in one_line(err)
    status, _, err = here("sweep", *SWEEP[:-2], "--scheduler", "tls://127.0.0.1:1", "--tls-cert", "x")
    assert status == 2 and "go together" in one_line(err)
    status, _, err = here("sweep", *SWEEP[:-2], "--scheduler", "tls://127.0.0.1:1", "--tls-cert", "x",
                          "--tls-key", "y", "--tls-ca-file", str(tmp_path / "absent"))
    assert status == 2 and "--tls-ca-file" in one_line(err) and "no such file" in err


def _certificates(folder: Path) -> dict[str, str]:
    """A CA and one certificate it signed (for 127.0.0.1), made by openssl: the files of a tls:// cluster."""
    ca_key, ca, key, csr, cert = (str(folder / n) for n in ("ca.key", "ca.pem", "key.pem", "req.csr", "cert.pem"))
    run = lambda *a: subprocess.run(["openssl", *a], check=True, capture_output=True, timeout=60)  # noqa: E731
    run("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", ca_key, "-out", ca, "-days", "2",
        "-subj", "/CN=sandbox-test-ca")
    run("req", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out", csr, "-subj", "/CN=127.0.0.1")
    run("x509", "-req", "-in", csr, "-CA", ca, "-CAkey", ca_key, "-CAcreateserial", "-out", cert, "-days", "2")
    return {"ca": ca, "cert": cert, "key": key}


def test_a_sweep_runs_on_a_tls_cluster_with_the_tls_files(tmp_path):
    from distributed import LocalCluster
    from distributed.security import Security

    files = _certificates(tmp_path)
    security = Security(tls_ca_file=files["ca"], tls_scheduler_cert=files["cert"], tls_scheduler_key=files["key"],
                        tls_worker_cert=files["cert"], tls_worker_key=files["key"], tls_client_cert=files["cert"],
                        tls_client_key=files["key"], require_encryption=True)
    with LocalCluster(n_workers=1, threads_per_worker=1, processes=False, protocol="tls://", host="127.0.0.1",
                      security=security, dashboard_address=None) as cluster:
        address = cluster.scheduler_address
        assert address.startswith("tls://127.0.0.1:")
        out = tmp_path / "out"
        status, stdout, err = here("sweep", "demo", "--seeds", "2", "--scheduler", address, "--out", str(out),
                                   "--tls-ca-file", files["ca"], "--tls-cert", files["cert"], "--tls-key", files["key"])
        assert status == 0, err
        assert f"2 runs on the Dask cluster at {address}" in stdout
    local = tmp_path / "local"
    assert here("sweep", "demo", "--seeds", "2", "--workers", "1", "--out", str(local))[0] == 0
    assert (out / "runs.jsonl").read_bytes() == (local / "runs.jsonl").read_bytes()
