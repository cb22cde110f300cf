"""The invariants hold over random scenarios and delivery orders, and the checks can fail."""

from __future__ import annotations

from decimal import Decimal

from hypothesis import given, settings
from hypothesis import strategies as st

from actors import CLEARING, FUND
from sandbox import run_scenario_sync
from sandbox.testing import check_invariants, scenarios, summary_conserves_money

from .helpers import ONE_SHOT, account, event, market, order, run, scenario


def _assert_all_hold(result):
    assert result.violations == []
    s = result.summary()
    assert summary_conserves_money(s, s["insurance_fund"]["initial"])
    assert Decimal(s["insurance_fund"]["final"]) >= 0
    for m in s["markets"].values():
        assert m["open_interest_long"] == m["open_interest_short"]
    # Every liquidated account ended at exactly zero (NFEX: it loses the rest).
    clearing = result.runtime[CLEARING]
    assert all(residual >= 0 for _, residual in clearing.settled)
    for e in result.log.of_kind("liquidation_settled"):
        assert e["account"] in s["accounts"]


@given(scenarios(), st.integers(0, 2**32))
def test_invariants_hold_in_random_scenarios_under_random_delivery_orders(sc, seed):
    _assert_all_hold(run_scenario_sync(sc, seed=seed))


@settings(max_examples=20)
@given(scenarios())
def test_invariants_hold_in_live_mode(sc):
    _assert_all_hold(run_scenario_sync(sc, mode="live"))


@given(scenarios(max_pairs=2, max_events=4), st.integers(0, 1000))
def test_no_account_is_liquidated_twice_at_once(sc, seed):
    result = run_scenario_sync(sc, seed=seed)
    open_liqs: set[str] = set()
    for e in result.events:
        if e["kind"] == "account_frozen":
            assert e["account"] not in open_liqs
            open_liqs.add(e["account"])
        elif e["kind"] in ("liquidation_settled", "account_unfrozen"):
            open_liqs.discard(e["account"])
    assert not open_liqs


def _gap_result():
    return run(
        market(extra='tick_size = "0.01"')
        + account("a", "10", ("PUNK", "2", "100"))
        + account("b", "100", ("PUNK", "-2", "100"))
        + event(1, "mark_price", market="PUNK", price="90"),
    )


def test_the_conservation_check_catches_a_missing_wei():
    result = _gap_result()
    sc = result.scenario
    assert check_invariants(result.runtime, sc) == []
    result.runtime[CLEARING].accounts["b"].balance -= 1
    found = check_invariants(result.runtime, sc)
    assert [v.invariant for v in found] == ["money is conserved"]
    assert "by -0.000000000000000001" in found[0].detail


def test_the_fund_check_catches_a_negative_fund():
    result = _gap_result()
    result.runtime[FUND].balance = -1
    result.runtime[CLEARING].fees += 1  # keep money conserved: only the fund check should fire
    assert [v.invariant for v in check_invariants(result.runtime, result.scenario)] == [
        "fund never negative", "fund never negative, inventory included"]


def test_the_open_interest_check_catches_a_one_sided_position():
    result = _gap_result()
    from actors._common import Position

    result.runtime[CLEARING].accounts["b"].positions["PUNK"] = Position(1, 90 * 10**9)
    found = {v.invariant for v in check_invariants(result.runtime, result.scenario)}
    assert "long open interest equals short" in found


def test_the_liveness_check_catches_an_unliquidated_underwater_account():
    sc = scenario(
        market() + account("a", "10", ("PUNK", "1", "100")) + account("b", "100", ("PUNK", "-1", "100"))
        + event(1, "mark_price", market="PUNK", price="50")
    )

    from actors import MarginMonitor

    class BlindMonitor(MarginMonitor):
        def check(self, account: str) -> None:  # never asks for a liquidation
            return None

    result = run_scenario_sync(sc, actors={"margin_monitor": BlindMonitor})
    assert {v.invariant for v in result.violations} == {
        "every underwater account is liquidated", "no account outside a liquidation has negative equity"}


def test_adl_giving_up_while_one_of_its_fills_is_in_flight_leaves_the_fund_consistent():
    # Found by the policy fuzzing (seed 0): two BAYC shorts and a long go bankrupt
    # together. ADL closes 0.01 of the fund's short lot against xl and gives up on
    # the other 0.01; its DeleverageAbandoned (adl -> fund) overtakes the ADL fill
    # (clearing -> fund). The fund then nets the kept lot against a long lot: it may
    # only cross the 0.01 it certainly holds, and the late fill closes the rest.
    # Before the fix it netted 0.02, closed the lot, and the late fill hit a lot
    # that no longer existed (KeyError).
    bayc = market("BAYC", mark="20", im="0.2", mm="0.1", extra='tick_size = "0.01"\nlot_size = "0.01"')
    punk = market("PUNK", mark="20", im="0.05", mm="0.025", extra='tick_size = "0.01"\nlot_size = "0.01"')
    result = run(
        punk + bayc
        + account("mm", "1000000")
        + account("t0l", "0.01", ("BAYC", "0.02", "20")) + account("t0s", "0.01", ("BAYC", "-0.02", "20"))
        + account("t1l", "0.02", ("BAYC", "0.03", "20")) + account("t1s", "0.07", ("BAYC", "-0.03", "20"))
        + account("t2l", "0.01", ("PUNK", "0.01", "20")) + account("t2s", "0.01", ("PUNK", "-0.01", "20"))
        + account("xl", "0.03", ("BAYC", "0.01", "20"), ("PUNK", "-0.01", "20"))
        + account("xs", "0.02", ("BAYC", "-0.01", "20"), ("PUNK", "0.01", "20"))
        + order("mm", "BAYC", "sell", "20.01", "0.01")
        + ONE_SHOT
    )
    kept = result.log.of_kind("fund_inventory_kept")
    assert [(e["market"], e["size"]) for e in kept] == [("BAYC", "-0.01"), ("BAYC", "0.01")]
    assert [e["size"] for e in result.log.of_kind("fund_netted")] == ["0.01", "0.01"]
    _assert_all_hold(result)
    assert result.runtime[FUND].lots == {}
    assert result.summary()["insurance_fund"]["final"] == "0.0284"


def test_the_monitor_never_asks_again_on_a_view_older_than_the_engines_last_answer():
    # The livelock race_withdrawal could show: an update sent before the freeze
    # reaches the monitor after the engine has judged a newer version of the
    # account. The monitor must wait for clearing's newer update, not ask again.
    from actors import MONITOR
    from sandbox._exchange.run import build
    from sandbox.messages import AccountUpdated, LiquidationEnded, PositionView

    sc = scenario(market() + account("a", "10", ("PUNK", "1", "100")) + account("b", "100", ("PUNK", "-1", "100")))
    rt, _ = build(sc)
    monitor = rt[MONITOR]
    underwater = (PositionView("PUNK", 10**9, 200 * 10**18),)  # long 1 at 200, mark 100: equity -90
    monitor.on_LiquidationEnded(LiquidationEnded(1, "a", "cancelled", (), version=5))
    monitor.on_AccountUpdated(AccountUpdated("a", 10 * 10**18, underwater, False, version=4))
    assert "a" not in monitor.requested  # an old view: no request
    monitor.on_AccountUpdated(AccountUpdated("a", 10 * 10**18, underwater, False, version=6))
    assert "a" in monitor.requested  # the newer view is underwater: asked once
