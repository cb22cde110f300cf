"""Deterministic delivery, the search over interleavings, the bug zoo, replays."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis.database import InMemoryExampleDatabase

from actors.zoo import VARIANTS
from sandbox import bundled_scenarios, resolve_scenario, run_scenario_sync
from sandbox._tools.explore import events_digest, explore, plan, read_replay, replay_run, run_once, write_replay
from sandbox._core.choosers import ScriptedChooser, SeededChooser
from sandbox._scenario.reader import ScenarioError

RACES = sorted(name for name in bundled_scenarios() if name.startswith("race_"))
# The correct actors must pass this many interleavings of every race scenario.
CORRECT_EXAMPLES = int(os.environ.get("SANDBOX_CORRECT_EXAMPLES", "2000"))


def cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "sandbox", *args], capture_output=True, text=True, cwd=cwd,
                          timeout=600)


def test_every_variant_names_a_bundled_scenario():
    assert len(VARIANTS) >= 6
    for v in VARIANTS.values():
        assert v.scenario in bundled_scenarios()


def test_different_seeds_change_the_interleaving_where_messages_race():
    sc = resolve_scenario("race_two_bankruptcies")
    digests = {events_digest(run_scenario_sync(sc, seed=seed).events) for seed in range(8)}
    assert len(digests) > 1


def test_a_seeded_run_is_the_same_run_every_time():
    sc = resolve_scenario("race_stale_view")
    assert events_digest(run_scenario_sync(sc, seed=5).events) == events_digest(run_scenario_sync(sc, seed=5).events)


@pytest.mark.parametrize("name", sorted(VARIANTS))
def test_each_variant_is_found_within_500_examples_and_shrunk(name):
    variant = VARIANTS[name]
    sc = resolve_scenario(variant.scenario)
    result = explore(sc, examples=500, variant=name, actors=variant.actors, database=None, seed=0,
                     find=variant.find)
    assert result.finding is not None, f"{name} not found"
    assert 1 <= result.first_failure <= 500
    finding = result.finding
    # Every variant breaks an invariant (or, with find, shows the event), but the looping one, which never ends.
    assert finding.failure.kind == ("livelock" if name == "monitor_polls_stale_copy"
                                    else "event" if variant.find else "violation")
    # Shrinking leaves at most as many decisions away from FIFO as the first failure had.
    nonzero = [d for d in finding.decisions if d[3] != d[1]]
    assert len(nonzero) <= len(finding.decisions)
    # Replaying the recorded decisions gives the very same events and failure.
    # (under the same budget: a livelock is the budget running out)
    run = run_once(sc, ScriptedChooser(finding.decisions), actors=variant.actors, budget=finding.budget,
                   find=variant.find)
    assert events_digest(run.events) == events_digest(finding.events)
    assert run.failure == finding.failure


@pytest.mark.parametrize("name", RACES)
def test_correct_actors_pass_every_race_scenario(name):
    result = explore(resolve_scenario(name), examples=CORRECT_EXAMPLES, database=None, seed=0)
    assert result.finding is None, result.finding and result.finding.failure.summary
    assert result.runs == CORRECT_EXAMPLES


def test_the_correct_variant_of_each_scenario_survives_the_seeds_that_break_the_bug():
    # The zoo variants really are the cause: the same decisions that break a
    # variant leave the correct actors intact.
    for variant in VARIANTS.values():
        sc = resolve_scenario(variant.scenario)
        budget = plan(sc, variant.actors).budget  # the looping variant loops until the budget runs out
        for seed in range(3000):
            broken = run_once(sc, SeededChooser(seed), actors=variant.actors, budget=budget, find=variant.find)
            if broken.failure is not None:
                correct = run_once(sc, SeededChooser(seed), find=variant.find)
                assert correct.failure is None, (variant.name, seed, correct.failure)
                break
        else:
            pytest.fail(f"no seed in 3000 breaks {variant.name}")


def test_find_adl_answers_the_question_of_the_race():
    # "Is there an ordering in which winners get deleveraged although the fund
    # had enough in total?" On race_surplus_vs_bankruptcy: yes.
    sc = resolve_scenario("race_surplus_vs_bankruptcy")
    assert all(run_scenario_sync(sc, seed=s).log.counts["adl"] == 0 for s in range(3))
    result = explore(sc, examples=2000, find="adl", database=None, seed=3)
    assert result.finding is not None
    assert result.finding.failure.kind == "event"
    assert any(e["kind"] == "adl" for e in result.finding.events)


def test_the_correct_fund_never_deleverages_a_winner_while_it_covers_the_losses():
    # race_grabbed_reservation: a fund of 1,000,000 and two lots that lose 3 each.
    # Whatever the delivery order and latency, nobody is deleveraged.
    sc = resolve_scenario("race_grabbed_reservation")
    result = explore(sc, examples=300, find="adl", database=None, seed=1)
    assert result.finding is None


def test_failures_are_stored_and_tried_first_next_time():
    db = InMemoryExampleDatabase()
    variant = VARIANTS["takeover_whatever_left"]
    sc = resolve_scenario(variant.scenario)
    first = explore(sc, examples=500, variant=variant.name, actors=variant.actors, database=db)
    assert first.finding is not None and first.first_failure > 1  # FIFO order does not fail
    assert db.data  # saved
    again = explore(sc, examples=500, variant=variant.name, actors=variant.actors, database=db)
    assert again.first_failure == 1
    assert events_digest(again.finding.events) == events_digest(first.finding.events)


def test_replay_file_round_trip(tmp_path):
    variant = VARIANTS["takeover_whatever_left"]
    sc = resolve_scenario(variant.scenario)
    finding = explore(sc, examples=500, variant=variant.name, actors=variant.actors, database=None, seed=0).finding
    path = tmp_path / "r.json"
    write_replay(finding, path)
    replay = read_replay(path)
    assert replay.scenario.digest == sc.digest
    run = replay_run(replay, variant.actors)
    assert events_digest(run.events) == replay.events_sha256


def test_a_tampered_or_foreign_replay_is_a_clear_error(tmp_path):
    variant = VARIANTS["takeover_whatever_left"]
    sc = resolve_scenario(variant.scenario)
    finding = explore(sc, examples=500, variant=variant.name, actors=variant.actors, database=None, seed=0).finding
    path = tmp_path / "r.json"
    write_replay(finding, path)
    doc = json.loads(path.read_text())

    edited = dict(doc, scenario=dict(doc["scenario"], toml=doc["scenario"]["toml"].replace('"10"', '"11"')))
    path.write_text(json.dumps(edited))
    with pytest.raises(ScenarioError, match="scenario.sha256: does not match"):
        read_replay(path)

    path.write_text(json.dumps(dict(doc, version=99)))
    with pytest.raises(ScenarioError, match="version: is 99"):
        read_replay(path)
    proc = cli("replay", str(path))
    assert proc.returncode == 2 and "version" in proc.stderr and "Traceback" not in proc.stderr


def test_explore_cli_finds_writes_a_replay_and_replay_reproduces(tmp_path):
    proc = cli("explore", "race_partial_fill", "--variant", "takeover_whatever_left", "--seed", "0",
               "--out", str(tmp_path), "--db", str(tmp_path / "db"))
    assert proc.returncode == 1, proc.stderr
    assert "INVARIANT VIOLATED" in proc.stdout
    assert "a liquidated position is closed once" in proc.stdout
    assert "TakeOverPosition" in proc.stdout  # the interleaving is listed
    replay = tmp_path / "replay-race_partial_fill-takeover_whatever_left.json"
    assert replay.exists()
    again = cli("replay", str(replay))
    assert again.returncode == 1
    assert "reproduced: the same" in again.stdout
    assert "a liquidated position is closed once" in again.stdout


def test_explore_cli_exits_0_when_nothing_is_found(tmp_path):
    proc = cli("explore", "race_partial_fill", "--examples", "50", "--seed", "1", "--out", str(tmp_path),
               "--db", str(tmp_path / "db"))
    assert proc.returncode == 0, proc.stderr
    assert "nothing found in 50 interleavings" in proc.stdout
    assert not list(tmp_path.glob("replay-*.json"))


@pytest.mark.parametrize("args", [("--variant", "nope"), ("--find", "moon"), ("--examples", "0")])
def test_explore_cli_bad_arguments_exit_2(args, tmp_path):
    proc = cli("explore", "race_partial_fill", *args, "--out", str(tmp_path))
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr and proc.stderr.strip()


def test_variants_cli_lists_the_zoo():
    proc = cli("variants")
    assert proc.returncode == 0
    for name, v in VARIANTS.items():
        assert name in proc.stdout and v.scenario in proc.stdout


def test_explore_workers_share_one_example_database(tmp_path):
    db = tmp_path / "db"
    args = ("explore", "race_partial_fill", "--variant", "takeover_whatever_left", "--workers", "2",
            "--examples", "200", "--out", str(tmp_path), "--db", str(db))
    first = cli(*args)
    assert first.returncode == 1, first.stderr
    # rich wraps at 80 columns, where depends on the length of the tmp path (longer under xdist): compare words
    assert "2 worker(s)" in " ".join(first.stdout.split())
    assert any(db.rglob("*"))  # what was found is in the shared database
    again = cli(*args)
    assert again.returncode == 1
    assert "first failing run: #1;" in " ".join(again.stdout.split())  # replayed from the database at once


@pytest.mark.parametrize("name, seed", [("race_two_bankruptcies", 3), ("cascade_adl", 1), ("demo", 7)])
def test_an_explored_run_logs_like_any_run_and_its_log_passes_check_log(tmp_path, name, seed):
    # One wiring for every entry point: an explored run's log opens with the
    # opening state and closes with run_finished, so check-log can verify it.
    from sandbox._core.eventlog import EventLog
    from sandbox._core.choosers import SeededChooser
    from sandbox._tools.checklog import check_log
    from sandbox._tools.explore import run_once

    run = run_once(resolve_scenario(name), SeededChooser(seed))
    events = run.runtime.log.events
    assert events[0]["kind"] == "opening_state" and events[-1]["kind"] == "run_finished"
    path = tmp_path / "events.jsonl"
    path.write_text("".join(EventLog.dumps(e) + "\n" for e in events))
    report = check_log(path)
    assert report.ok, report.summary()
