"""sandbox.testing's helpers for users' own tests: capture_events and crash_before."""

import pytest

from sandbox import resolve_scenario, run_scenario_sync
from sandbox._core.eventlog import EventLog
from sandbox.testing import capture_events, crash_before_sync


def test_capture_events_collects_the_events_of_the_runs_in_the_block():
    with capture_events() as everything, capture_events("adl", "fund_takeover") as some:
        result = run_scenario_sync(resolve_scenario("cascade_adl"))
    assert everything == result.events
    assert some == [e for e in result.events if e["kind"] in ("adl", "fund_takeover")] and some
    with capture_events() as after:
        pass
    run_scenario_sync(resolve_scenario("demo"))
    assert after == []  # the hook is gone once the block ends


@pytest.mark.parametrize("actor, n", [("insurance_fund", 1), ("insurance_fund", 3), ("clearing", 10),
                                      ("liquidation_engine", 2)])
def test_crash_before_crashes_the_actor_just_before_its_nth_message(actor, n):
    order: list[str] = []  # deliveries to the actor, and the crash, in the order they happen
    log = EventLog()
    log.subscribe(lambda e: order.append("crash") if e["kind"] == "actor_crashed" else None)
    result = crash_before_sync(resolve_scenario("demo"), actor, n, downtime_ms=500, log=log,
                               after_delivery=lambda rt, env: order.append("to") if env.recipient == actor else None)
    crashes = [e for e in result.events if e["kind"] == "actor_crashed"]
    assert [e["actor"] for e in crashes] == [actor]
    assert result.log.counts["actor_restarted"] == 1
    # n - 1 messages reached the actor before it went down, and the n-th after its restart.
    assert order.index("crash") == n - 1 and order.count("crash") == 1 and order.count("to") >= n
    crash_seq = crashes[0]["seq"]
    restarted = next(e for e in result.events if e["kind"] == "actor_restarted")
    assert restarted["time"] == crashes[0]["time"] + 0.5
    assert crash_seq < restarted["seq"]
    # A correct actor rebuilds its state: the run ends as the run without a crash does.
    plain = run_scenario_sync(resolve_scenario("demo"))
    assert result.ok and result.summary()["accounts"] == plain.summary()["accounts"]
    assert result.summary()["insurance_fund"] == plain.summary()["insurance_fund"]


def test_crash_before_a_message_that_never_comes_crashes_nothing():
    result = crash_before_sync(resolve_scenario("demo"), "adl", 10_000)
    assert result.log.counts["actor_crashed"] == 0 and result.ok


def test_crash_before_counts_from_one():
    with pytest.raises(ValueError, match="message must be 1 or more"):
        crash_before_sync(resolve_scenario("demo"), "oracle", 0)
