"""Properties over random cross-margin crashes: every invariant, under every delivery order.

The scenarios (``sandbox.testing.cross_margin_dicts``) are the ones the
textbook leaves out: several positions per account, entry prices that do not
net, thin books, gaps of 5-95% in one tick, every fund policy and both
bankruptcy splits, network latency. Each run is driven by a hypothesis tape of
delivery decisions and checked after every delivery (money in flight counted)
and at every quiet point: conservation, the fund never negative (its
inventory included), no loss left on an account that cannot pay it, no
negative equity outside a liquidation, open interest balanced, no lot left
with a one-shot fund while ADL has a candidate, no livelock.
"""

from __future__ import annotations

import os

from hypothesis import given, settings
from hypothesis import strategies as st

from actors import FUND
from actors.liquidation_engine import bankruptcy_prices
from sandbox import parse_scenario
from sandbox.messages import PositionView
from sandbox.testing import cross_margin_dicts, run_schedule_sync, schedules

from .helpers import account, event, market, order, run

# The CI profile's count; a fuzzing campaign (HYPOTHESIS_PROFILE=fuzz) tries far more.
EXAMPLES = 5000 if os.environ.get("HYPOTHESIS_PROFILE") == "fuzz" else 300

@settings(max_examples=EXAMPLES, deadline=None)
@given(cross_margin_dicts(), schedules())
def test_every_invariant_holds_in_random_cross_margin_crashes(doc, schedule):
    sc = parse_scenario(doc, "<cross-margin>")
    result = run_schedule_sync(sc, schedule)
    assert result.failure is None, result.failure.summary
    fund = result.runtime[FUND]
    assert fund.balance >= 0


@settings(max_examples=EXAMPLES, deadline=None)
@given(cross_margin_dicts())
def test_no_bankruptcy_price_is_on_the_wrong_side_of_its_mark(doc):
    # For every account of the opening state, at the crash's marks: a flat or
    # winning position of an account with negative equity is priced at its mark
    # (rounded to the tick against nobody's favour: up for a long, down for a
    # short), and no price is below one tick.
    sc = parse_scenario(doc, "<cross-margin>")
    markets = {m.symbol: m for m in sc.markets}
    marks = {m.symbol: m.mark_price for m in sc.markets}
    for e in sc.events:
        marks[e.market] = e.price
    for spec in sc.accounts:
        if not spec.positions:
            continue
        views = tuple(PositionView(p.market, p.size, p.size * p.entry_price) for p in spec.positions)
        equity = spec.deposit + sum(v.size * marks[v.market] - v.entry_value for v in views)
        for split in ("loss", "maintenance_margin"):
            prices = bankruptcy_prices(spec.deposit, views, marks, markets, split)
            for v in views:
                price, mark, tick = prices[v.market], marks[v.market], markets[v.market].tick_size
                assert price >= tick
                if equity < 0 and v.size * mark - v.entry_value >= 0:
                    expected = -(-mark // tick) * tick if v.size > 0 else (mark // tick) * tick
                    assert price == expected, (spec.id, v.market, split)
            # At its bankruptcy prices the account's equity is >= 0 and below one tick per position.
            at_bankruptcy = spec.deposit + sum(v.size * prices[v.market] - v.entry_value for v in views)
            if equity < 0:
                ticks = sum(abs(v.size) * markets[v.market].tick_size for v in views)
                assert 0 <= at_bankruptcy <= ticks


def test_a_crash_larger_than_the_notional_is_carried_by_the_losing_leg():
    # a: long 1 PUNK at 100, short 1 BAYC at 50, with 10. PUNK crashes to 10:
    # equity 10 - 90 = -80. BAYC (flat) is priced at its mark, 50; PUNK carries
    # all of it: 10 + 80 = 90. The fund (100) accepts the long (loss 80 at the
    # mark) and sells it at 9 (its band is 9-11): pays 81. a ends at 0.
    result = run(
        market("PUNK", extra='tick_size = "0.01"') + market("BAYC", mark="50", extra='tick_size = "0.01"')
        + account("a", "10", ("PUNK", "1", "100"), ("BAYC", "-1", "50"))
        + account("c1", "200", ("PUNK", "-1", "100")) + account("c2", "100", ("BAYC", "1", "50"))
        + account("mm", "1000")
        + order("mm", "BAYC", "sell", "50", "1") + order("mm", "PUNK", "buy", "9", "1")
        + event(1, "mark_price", market="PUNK", price="10"),
        fund="100",
    )
    started = result.log.of_kind("liquidation_started")[0]
    assert started["bankruptcy_prices"] == {"BAYC": "50", "PUNK": "90"}
    assert result.summary()["accounts"]["a"]["balance"] == "0"
    assert [e["amount"] for e in result.log.of_kind("fund_payout")] == ["81"]
    assert result.summary()["counts"]["adl"] == 0


def test_the_maintenance_margin_split_weights_the_losing_legs_by_their_margin():
    # Two losing longs, PUNK 1 at 100 -> 60 (mm 5%) and BAYC 1 at 100 -> 70 (mm 10%),
    # with 50: equity 50 - 40 - 30 = -20. By loss (40 : 30) PUNK carries 11.43 and
    # BAYC 8.57; by maintenance margin (60 x 5% = 3 : 70 x 10% = 7) PUNK carries 6,
    # BAYC 14.
    from sandbox._core.money import parse_units

    p = lambda text: parse_units(text, 9)  # noqa: E731
    markets = {m.symbol: m for m in parse_scenario({
        "name": "t", "insurance_fund": {"balance": "0"},
        "markets": [
            {"symbol": "PUNK", "mark_price": "100", "initial_margin": "0.1", "maintenance_margin": "0.05",
             "tick_size": "0.01"},
            {"symbol": "BAYC", "mark_price": "100", "initial_margin": "0.2", "maintenance_margin": "0.1",
             "tick_size": "0.01"}],
        "accounts": [{"id": "a", "deposit": "50", "positions": [
            {"market": "PUNK", "size": "1", "entry_price": "100"}, {"market": "BAYC", "size": "1", "entry_price": "100"}]},
            {"id": "b", "positions": [
            {"market": "PUNK", "size": "-1", "entry_price": "100"}, {"market": "BAYC", "size": "-1", "entry_price": "100"}]}],
    }, "t").markets}
    views = (PositionView("BAYC", 10**9, 100 * 10**18), PositionView("PUNK", 10**9, 100 * 10**18))
    marks = {"PUNK": p("60"), "BAYC": p("70")}
    by_loss = bankruptcy_prices(50 * 10**18, views, marks, markets, "loss")
    by_mm = bankruptcy_prices(50 * 10**18, views, marks, markets, "maintenance_margin")
    assert by_loss == {"PUNK": p("71.43"), "BAYC": p("78.58")}
    assert by_mm == {"PUNK": p("66"), "BAYC": p("84")}
