"""The venues' rules (issue 17): tiered margin, the closing fee in the bankruptcy price, tier step-down,
several insurance funds, venue presets. Hand-computed numbers, validation, and each bundled scenario
run both ways."""

from __future__ import annotations

import random
import tomllib
from typing import Any

import attrs
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from actors._common import margin_units, position_margin, top_maintenance_rate
from actors.liquidation_engine import bankruptcy_prices, closing_fees
from actors.margin_monitor import trigger
from sandbox import ScenarioError, load_scenario, parse_scenario, resolve_scenario, run_scenario_sync
from sandbox._tools.checklog import check_lines
from sandbox._core.eventlog import EventLog
from sandbox.messages import PositionView
from sandbox._core.money import RATE_ONE
from sandbox._tools.narrate import narrate
from sandbox._core.specs import DEFAULT_POLICY, MarketSpec, Tier
from sandbox._scenario.parse import PRESETS
from sandbox._tools.sweep import apply_override

from .test_scenario_validation import GOOD, write

P = 10**9  # one price or size unit of a whole contract
E = 10**18  # one ETH in wei

TIERS = (Tier(500 * E, 50_000, 100_000, 10), Tier(2000 * E, 100_000, 200_000, 5), Tier(None, 200_000, 400_000, 2))
PUNK = MarketSpec("PUNK", 100 * P, 100_000, 50_000, tick_size=P // 100, tiers=TIERS)


def run(sc):
    result = run_scenario_sync(sc)
    assert result.violations == [], result.violations
    return result


def with_policy(name: str, **policy: Any):
    sc = resolve_scenario(name)
    return attrs.evolve(sc, policy=attrs.evolve(sc.policy, **policy))


def log_ok(result) -> Any:
    return check_lines([(EventLog.dumps(e) + "\n").encode() for e in result.events])


# --- tiered margin: one rule -------------------------------------------------------------------


def test_each_tier_charges_its_own_slice_of_the_notional():
    # 1,200 of notional: 500 x 5% + 700 x 10% = 95 maintenance, 500 x 10% + 700 x 20% = 190 initial.
    assert position_margin(PUNK, 1200 * E) == 95 * E
    assert position_margin(PUNK, 1200 * E, initial=True) == 190 * E
    # Within the first tier it is the flat rate; above the last bound the last rate: 25 + 150 + 1,000 x 20%.
    assert position_margin(PUNK, 400 * E) == 20 * E
    assert position_margin(PUNK, 3000 * E) == (25 + 150 + 200) * E
    # Continuous at a bound: 500 and 500 + 1 wei differ by one wei's margin, rounded up.
    assert position_margin(PUNK, 500 * E + 1) - position_margin(PUNK, 500 * E) == 1


def test_the_risk_factor_scales_every_rate_and_rounds_up_once():
    spec = attrs.evolve(PUNK, risk_factor=1_500_000)
    assert position_margin(spec, 1200 * E) == 142_500_000_000_000_000_000  # 95 x 1.5
    flat = MarketSpec("BAYC", 100 * P, 100_000, 50_000, risk_factor=2_000_000)
    assert position_margin(flat, 94 * E) == 9_400_000_000_000_000_000  # 94 x 5% x 2
    assert position_margin(flat, 1) == 1  # 1 wei x 10%: rounded up, against the trader
    assert top_maintenance_rate(spec) == 300_000 and top_maintenance_rate(flat) == 100_000


def test_a_flat_market_is_exactly_the_historical_rule():
    flat = MarketSpec("PUNK", 100 * P, 100_000, 50_000)
    for notional in (0, 1, 19, 94 * E, 123_456_789_123_456_789):
        assert position_margin(flat, notional) == -(-notional * 50_000 // RATE_ONE)
        assert margin_units(flat, notional) == notional * 50_000 * RATE_ONE


@settings(max_examples=400, deadline=None)
@given(st.integers(-10**20, 10**22), st.integers(1, 10**11), st.integers(1, 10**6), st.integers(1, 10**6),
       st.booleans(), st.sampled_from([1_000_000, 500_000, 1_500_000]))
def test_the_monitors_index_never_misses_a_tiered_account(balance, size, entry, mark, short, risk):
    # The trigger key is derived from the top rate: every account liquidatable at a mark must be a
    # candidate there (a long when mark <= key, a short when mark > key).
    spec = attrs.evolve(PUNK, risk_factor=risk)
    size = -size if short else size
    entry_value, mark = size * entry * P // 1000, mark * P // 1000
    liquidatable = balance + size * mark - entry_value <= position_margin(spec, abs(size) * mark)
    key = trigger(balance, size, entry_value, top_maintenance_rate(spec))
    if liquidatable and key is not None:
        assert (mark <= key) if size > 0 else (mark > key)


def test_tiered_margin_scenario_and_the_same_crash_at_a_flat_rate():
    result = run(resolve_scenario("tiered_margin"))
    refused = result.log.of_kind("order_rejected")[0]
    assert (refused["account"], refused["required"], refused["available"]) == ("newbie", "190", "150")
    started = {e["account"]: e for e in result.log.of_kind("liquidation_started")}
    assert (started["whale"]["equity"], started["whale"]["maintenance_margin"]) == ("160", "161")
    assert started["whale"]["bankruptcy_prices"] == {"PUNK": "85"}
    assert (started["carol"]["equity"], started["carol"]["maintenance_margin"]) == ("9", "9.4")
    assert "small" not in started
    assert [e["amount"] for e in result.log.of_kind("fund_surplus")] == ["100", "5"]
    assert log_ok(result).ok
    sc = resolve_scenario("tiered_margin")
    flat = attrs.evolve(sc, markets=tuple(
        attrs.evolve(m, tiers=(), risk_factor=RATE_ONE, initial_margin=100_000, maintenance_margin=50_000)
        for m in sc.markets))
    plain = run(flat)
    assert plain.log.of_kind("liquidation_started") == [] and plain.log.of_kind("order_rejected") == []


def test_the_maintenance_margin_split_uses_the_tiered_margin():
    # Two losing longs, 1 PUNK at 1000 -> 600 (tiered: 500 x 5% + 100 x 10% = 35) and 1 BAYC at
    # 1000 -> 700 (flat 5%, risk factor 2: 70), balance 200: equity 200 - 400 - 300 = -500, split 35 : 70.
    punk = attrs.evolve(PUNK, mark_price=1000 * P)
    bayc = MarketSpec("BAYC", 1000 * P, 100_000, 50_000, tick_size=P // 100, risk_factor=2_000_000)
    markets = {"PUNK": punk, "BAYC": bayc}
    views = (PositionView("BAYC", P, 1000 * E), PositionView("PUNK", P, 1000 * E))
    prices = bankruptcy_prices(200 * E, views, {"PUNK": 600 * P, "BAYC": 700 * P}, markets, "maintenance_margin")
    # By margin PUNK would carry 500 x 35/105 = 166.67 and BAYC 333.33, but a losing leg carries
    # at most its own loss: BAYC 300 (price 1000, its entry), and the 33.33 over goes to PUNK: 200
    # (price 800).
    assert prices == {"PUNK": 800 * P, "BAYC": 1000 * P}


# --- the closing fee in the bankruptcy price (Bybit) ---------------------------------------------


def test_the_fee_to_close_comes_out_of_a_positive_cushion_only():
    spec = MarketSpec("PUNK", 100 * P, 100_000, 50_000, tick_size=P // 100, taker_fee=5_000)
    markets = {"PUNK": spec}
    long10 = (PositionView("PUNK", 10 * P, 1000 * E),)
    assert closing_fees(long10, {"PUNK": 94 * P}, markets) == 4_700_000_000_000_000_000
    assert bankruptcy_prices(100 * E, long10, {"PUNK": 94 * P}, markets, closing_fee=True) == {"PUNK": 90_470_000_000}
    assert bankruptcy_prices(100 * E, long10, {"PUNK": 94 * P}, markets) == {"PUNK": 90 * P}
    # A cushion smaller than the fee: the price is the mark. A negative equity: unchanged.
    assert bankruptcy_prices(2 * E + 62 * E, long10, {"PUNK": 94 * P}, markets, closing_fee=True) == {"PUNK": 94 * P}
    assert (bankruptcy_prices(0, long10, {"PUNK": 94 * P}, markets, closing_fee=True)
            == bankruptcy_prices(0, long10, {"PUNK": 94 * P}, markets) == {"PUNK": 100 * P})


def test_bankruptcy_closing_fee_scenario_and_nfex_rule():
    bybit = run(resolve_scenario("bankruptcy_closing_fee"))
    assert bybit.log.of_kind("liquidation_started")[0]["bankruptcy_prices"] == {"PUNK": "90.47"}
    assert [e["amount"] for e in bybit.log.of_kind("fund_surplus")] == ["4.7"]
    assert [e["amount"] for e in bybit.log.of_kind("fund_payout")] == ["1.7"]
    assert bybit.summary()["insurance_fund"]["final"] == "3" and bybit.summary()["counts"]["bankruptcies"] == 1
    assert log_ok(bybit).ok
    nfex = run(with_policy("bankruptcy_closing_fee", bankruptcy_closing_fee=False))
    assert nfex.log.of_kind("liquidation_started")[0]["bankruptcy_prices"] == {"PUNK": "90"}
    assert nfex.summary()["insurance_fund"]["final"] == "3" and nfex.summary()["counts"]["bankruptcies"] == 0


# --- tier step-down -------------------------------------------------------------------------------


def test_step_down_hands_the_whale_back_with_five_and_nfex_sells_all_twenty():
    stepped = run(resolve_scenario("tier_step_down"))
    step = stepped.log.of_kind("liquidation_step_down")[0]
    assert (step["closing"], step["limits"], step["maintenance_margin"]) == ({"PUNK": "15"}, {"PUNK": "88.35"}, "161")
    restored = stepped.log.of_kind("liquidation_restored")[0]
    assert (restored["equity"], restored["maintenance_margin"], restored["after"]) == ("115", "23.25", "step_down")
    whale = stepped.summary()["accounts"]["whale"]
    assert (whale["balance"], whale["positions"]["PUNK"]["size"]) == ("150", "5")
    assert "stepped down a tier" in narrate(step)
    assert log_ok(stepped).ok  # its fills are checked like any liquidation's
    nfex = run(with_policy("tier_step_down", tier_step_down=False))
    assert nfex.summary()["accounts"]["whale"] == {**whale, "balance": "0", "positions": {}}
    assert nfex.summary()["insurance_fund"]["final"] == "100"


def test_a_step_down_that_does_not_restore_margin_is_followed_by_the_full_liquidation():
    # The only bid is at 80, below the step's limit (88.35): the step fills nothing, the whale is
    # still at 160 <= 161 on the new snapshot and is liquidated in full at its bankruptcy price 85;
    # the order does not fill either and the fund takes the 20 over at 85.
    sc = resolve_scenario("tier_step_down")
    thin = attrs.evolve(sc, orders=tuple(attrs.evolve(o, price=80 * P) for o in sc.orders))
    result = run(thin)
    kinds = [e["kind"] for e in result.events if e["kind"].startswith("liquidation_") or e["kind"] == "fund_takeover"]
    assert kinds == ["liquidation_step_down", "liquidation_started", "fund_takeover", "liquidation_settled"]
    assert result.log.of_kind("liquidation_started")[0]["bankruptcy_prices"] == {"PUNK": "85"}
    assert result.log.of_kind("fund_takeover")[0]["size"] == "20"


# --- Hyperliquid's backstop vault -------------------------------------------------------------------------


def test_below_two_thirds_of_maintenance_margin_the_vault_takes_position_and_margin():
    # Long 10 at 100 with 100, mark 93: equity 30 < 2/3 x 46.50 = 31. The fund takes the long at
    # 93 - 30/10 = 90 (worth 30 at the mark, alice's margin); the bid at 92 is never used. At 95 the
    # vault's long is worth 50: equity 10 + 50.
    vault = run(resolve_scenario("backstop_vault"))
    started = vault.log.of_kind("liquidation_started")[0]
    assert (started["equity"], started["maintenance_margin"], started["backstop"]) == ("30", "46.5", True)
    assert "backstop vault takes every position over" in narrate(started)
    assert vault.log.of_kind("liquidation_fill") == []
    assert [(e["size"], e["price"]) for e in vault.log.of_kind("fund_takeover")] == [("10", "90")]
    marked = vault.log.of_kind("fund_inventory_marked")[-1]
    assert (marked["unrealized_pnl"], marked["equity"]) == ("50", "60")
    assert vault.summary()["insurance_fund"]["positions"] == {"PUNK": {"size": "10", "entry_value": "900"}}
    assert log_ok(vault).ok
    book = run(with_policy("backstop_vault", backstop_below=0))
    assert [e["price"] for e in book.log.of_kind("liquidation_fill")] == ["92"]
    assert book.summary()["insurance_fund"]["final"] == "30"
    # Just above the threshold (2/3 of 46.50 is 31; at 0.64 it is 29.76 < 30): the book as usual.
    above = run(with_policy("backstop_vault", backstop_below=640_000))
    assert "backstop" not in above.log.of_kind("liquidation_started")[0]


# --- isolated margin ----------------------------------------------------------------------------------


def test_an_isolated_market_is_liquidated_alone_and_its_loss_is_the_funds():
    # alice: 160, PUNK isolated with 60 (long 10 at 100), BAYC cross with 100 (long 10 at 50).
    # t=1 BAYC 41: cross equity 10 <= 20.50: bankruptcy 41 - 10/10 = 40, sold at 40.50, 5 to the fund.
    # t=2 PUNK 93: the bucket's equity 60 - 70 = -10: bankruptcy 100 - 60/10 = 94; the fund takes it
    # there and sells at 93: pays 10, ends at 20 + 5 - 10 = 15. The cross account never pays for it.
    iso = run(resolve_scenario("isolated_margin"))
    started = iso.log.of_kind("liquidation_started")
    assert [(e["account"], e["equity"], e["bankruptcy_prices"]) for e in started] == [
        ("alice", "10", {"BAYC": "40"}), ("alice@PUNK", "-10", {"PUNK": "94"})]
    assert [(e["account"], e["amount"]) for e in iso.log.of_kind("fund_payout")] == [("alice@PUNK", "10")]
    s = iso.summary()
    assert s["insurance_fund"]["final"] == "15"
    assert (s["accounts"]["alice"]["deposited"], s["accounts"]["alice"]["balance"]) == ("100", "0")
    assert s["accounts"]["alice@PUNK"]["deposited"] == "60"
    assert s["accounts"]["alice@PUNK"]["isolated"] == {"owner": "alice", "market": "PUNK"}
    assert "isolated" not in s["accounts"]["alice"]
    assert log_ok(iso).ok
    # In cross margin the same account is at 160 - 90 = 70 <= 50 + 20.50 at t=1: both positions go at once.
    sc = resolve_scenario("isolated_margin")
    cross = run(parse_scenario(tomllib.loads(sc.text.replace('isolated = { PUNK = "60" }', "")), "<cross>"))
    first = cross.log.of_kind("liquidation_started")[0]
    assert (first["account"], first["equity"], sorted(first["positions"])) == ("alice", "70", ["BAYC", "PUNK"])


def test_orders_and_cancels_in_an_isolated_market_are_its_buckets_and_the_deposit_is_split(tmp_path):
    body = GOOD.replace('id = "alice"\n', 'id = "alice"\nisolated = { PUNK = "6" }\n', 1) + """
[[events]]
at = 2
type = "order"
account = "alice"
market = "PUNK"
side = "sell"
price = "99"
size = "1"
id = "ask"

[[events]]
at = 3
type = "cancel"
account = "alice"
order = "ask"

[[events]]
at = 3
type = "deposit"
account = "alice"
amount = "1"
"""
    sc = load_scenario(write(tmp_path, body))
    by_id = {a.id: a for a in sc.accounts}
    assert (by_id["alice"].deposit, by_id["alice"].positions) == (4 * E, ())
    assert (by_id["alice@PUNK"].deposit, by_id["alice@PUNK"].positions[0].size) == (6 * E, P)
    assert [e.account for e in sc.events[1:]] == ["alice@PUNK", "alice@PUNK", "alice"]
    # Sweepable: the bucket's margin is a dotted key like any other.
    doc = tomllib.loads(body)
    assert {a.id: a.deposit for a in parse_scenario(apply_override(doc, "accounts.alice.isolated.PUNK", "9"),
                                                    "<sweep>").accounts}["alice@PUNK"] == 9 * E


# --- Hyperliquid's ADL at the previous oracle price -------------------------------------------------------


def test_adl_at_the_previous_mark_pays_the_counterparty_the_mark_before_the_gap():
    # alice's long 10 goes to the vault at 90 (t=2, mark 89); at 80 (t=3) it drains the vault's 30:
    # ADL at the previous mark, 89: bob realizes (100 - 89) x 10 = 110, the vault pays 900 - 890 = 10.
    hl = run(resolve_scenario("adl_previous_mark"))
    assert [e["price"] for e in hl.log.of_kind("fund_adl_requested")] == ["89"]
    assert [(e["account"], e["size"], e["price"], e["realized_pnl"]) for e in hl.log.of_kind("adl")] == [
        ("bob", "10", "89", "110")]
    assert hl.summary()["insurance_fund"]["final"] == "20"
    assert log_ok(hl).ok
    bk = run(with_policy("adl_previous_mark", adl_price="bankruptcy"))
    assert [(e["price"], e["realized_pnl"]) for e in bk.log.of_kind("adl")] == [("90", "100")]
    assert bk.summary()["insurance_fund"]["final"] == "30"


def test_the_previous_mark_is_limited_by_the_funds_budget_and_never_past_bankruptcy():
    from actors import InsuranceFund
    from actors.insurance_fund import Lot

    spec = MarketSpec("PUNK", 100 * P, 100_000, 50_000, tick_size=P // 100)
    fund = InsuranceFund({"PUNK": spec}, 5 * E)
    fund.policy = attrs.evolve(DEFAULT_POLICY, adl_price="previous_mark")
    fund.marks["PUNK"], fund.prev_marks["PUNK"] = 80 * P, 89 * P
    long = Lot(1, "PUNK", 10 * P, 900 * E, 90 * P, 1, "alice", held=10 * P)
    fund.lots[1] = long
    fund._reindex(long)  # the lot is set by hand here: file it in the fund's reservation index too
    # Budget 5 (balance 5, the lot's own reservation 100 at the mark): 89 would lose 10, so the
    # price moves up to 900 - 5 = 895 for 10, 89.50.
    assert fund.adl_price_for(long) == 89_500_000_000
    fund.ledgers["shared"] = 50 * E
    assert fund.adl_price_for(long) == 89 * P  # the whole difference paid
    fund.prev_marks["PUNK"] = 96 * P
    assert fund.adl_price_for(long) == 96 * P  # above the bankruptcy price: the fund gains
    fund.ledgers["shared"], fund.prev_marks["PUNK"] = 0, 80 * P
    assert fund.adl_price_for(long) == 90 * P  # nothing to pay with: the bankruptcy price
    # A short lot (the fund buys): 110 at the mark, previous 104, bankruptcy 100, budget 30: 103 at most.
    fund.lots = {2: (short := Lot(2, "PUNK", -10 * P, -1000 * E, 100 * P, 2, "bob", held=-10 * P))}
    fund.marks["PUNK"], fund.prev_marks["PUNK"], fund.ledgers["shared"] = 110 * P, 104 * P, 30 * E
    fund._reserves.clear()
    fund._reserved["shared"] = 0
    fund._reindex(short)
    assert fund.adl_price_for(short) == 103 * P


# --- Drift's socialized loss and revenue pool -------------------------------------------------------------


def test_socialized_loss_charges_every_open_position_pro_rata_instead_of_adl():
    # The fund takes alice's long 10 at 94, worth 40 less at 90; it has 10: 30 short. 30 contracts are
    # open (dan 10, bob 12, carol 8): 1 each. At t=2 it sells at 91 (loses 30) and ends at 10.
    drift = run(resolve_scenario("socialized_loss"))
    assert [(e["account"], e["amount"], e["balance"]) for e in drift.log.of_kind("socialized_loss")] == [
        ("dan", "-10", "990"), ("bob", "-12", "988"), ("carol", "-8", "992")]
    assert [e["amount"] for e in drift.log.of_kind("fund_socialized_loss")] == ["30"]
    assert drift.log.of_kind("adl") == []
    assert drift.summary()["insurance_fund"]["final"] == "10"
    assert "socialized loss" in narrate(drift.log.of_kind("socialized_loss")[0])
    # Without it (the fund closes at once): ADL deleverages bob, the first ranked, at 94.
    adl = run(with_policy("socialized_loss", socialized_loss=False))
    assert [(e["account"], e["size"], e["price"]) for e in adl.log.of_kind("adl")] == [("bob", "10", "94")]


def test_each_share_of_a_socialized_loss_is_rounded_up_to_the_wei():
    # A fund of 11: 29 short. dan pays ceil(29 x 10/30) = 9.666...667, bob 11.6, carol ceil(29 x 8/30) =
    # 7.733...334: the fund collects 1 wei more than the loss and keeps it.
    sc = resolve_scenario("socialized_loss")
    drift = run(attrs.evolve(sc, fund_balance=11 * E))
    assert [e["amount"] for e in drift.log.of_kind("socialized_loss")] == [
        "-9.666666666666666667", "-11.6", "-7.733333333333333334"]
    assert [e["amount"] for e in drift.log.of_kind("fund_socialized_loss")] == ["29.000000000000000001"]
    assert drift.summary()["insurance_fund"]["final"] == "10.000000000000000001"


def test_a_socialized_loss_is_all_or_nothing_and_never_makes_a_bankruptcy():
    # dYdX's gap (B short 500 at 1 with 100, DOGE to 2, the fund empty) under drift, with D short 100 at 1
    # too and A long 600 with 400: the fund takes B's short at 1.20, 400 short of holding it at 2. 700
    # contracts are open: A's share 400 x 600/700 = 342.857...143, D's 400 x 100/700 = 57.142...858.
    sc = resolve_scenario("gap_through_bankruptcy")
    a = 'id = "A"\ndeposit = "100"\npositions = [{ market = "DOGE", size = "500"'
    assert a in sc.text
    text = sc.text.replace(a, 'id = "A"\ndeposit = "400"\npositions = [{ market = "DOGE", size = "600"') + """
[[accounts]]
id = "D"
deposit = "DEPOSIT"
positions = [{ market = "DOGE", size = "-100", entry_price = "1" }]
"""

    def under_drift(deposit: str):
        doc = tomllib.loads(text.replace("DEPOSIT", deposit))
        doc["policy"] = "drift"
        return run(parse_scenario(doc, "<drift>"))

    rich = under_drift("200")  # D's balance 200 and equity at 2 (100) pay its share
    assert [(e["account"], e["amount"]) for e in rich.log.of_kind("socialized_loss")] == [
        ("A", "-342.857142857142857143"), ("D", "-57.142857142857142858")]
    assert rich.log.of_kind("adl") == []
    poor = under_drift("150")  # D's equity is 50, less than its share: nobody pays, A is deleveraged
    assert poor.log.of_kind("socialized_loss") == []
    assert [(e["account"], e["size"], e["price"]) for e in poor.log.of_kind("adl")] == [("A", "-500", "1.2")]
    # Nor when a balance is short of its share, whatever the position's profit: A with 100 (equity 700).
    thin = run(parse_scenario({**tomllib.loads(text.replace("DEPOSIT", "200").replace('deposit = "400"',
                                                                                  'deposit = "100"')),
                               "policy": "drift"}, "<drift>"))
    assert thin.log.of_kind("socialized_loss") == [] and len(thin.log.of_kind("adl")) == 1


def test_a_fund_floor_keeps_that_much_and_socializes_the_rest():
    # Floor 5: the fund keeps 5 available after holding the long, so 35 is spread: 35/30 per contract.
    drift = run(with_policy("socialized_loss", fund_floor=5 * E))
    assert [e["amount"] for e in drift.log.of_kind("fund_socialized_loss")] == ["35.000000000000000001"]


def test_the_revenue_pool_feeds_the_fund_on_schedule_until_it_is_empty():
    # 10 a second from a pool of 30: 10, 20, 30 by t=3; alice's long at 90 (20 lost at 88) is accepted,
    # sold at 89 at t=5 (10 lost): the fund ends at 20.
    fed = run(resolve_scenario("revenue_pool"))
    assert [(e["amount"], e["pool_left"]) for e in fed.log.of_kind("fund_revenue")] == [
        ("10", "20"), ("10", "10"), ("10", "0")]
    assert fed.log.of_kind("adl") == []
    assert fed.summary()["insurance_fund"]["final"] == "20"
    assert fed.summary()["insurance_fund"]["revenue_received"] == "30"
    # The last transfer is what the pool has left.
    capped = run(with_policy("revenue_pool", revenue_transfer=25 * E))
    assert [e["amount"] for e in capped.log.of_kind("fund_revenue")] == ["25", "5"]
    unfed = run(with_policy("revenue_pool", revenue_pool=0, revenue_transfer=0))
    assert [(e["account"], e["price"]) for e in unfed.log.of_kind("adl")] == [("bob", "90")]


def test_the_backstop_vault_is_an_account_with_its_own_balance_and_pnl():
    # alice's long 10 (equity 30 < 2/3 x 46.50) goes to hlp at 90, not to the fund; at 95 hlp's
    # balance is still 1,000 and its PnL 10 x (95 - 90) = 50; the fund keeps its 10.
    va = run(resolve_scenario("vault_account"))
    assert [(e["account"], e["vault"], e["size"], e["price"], e["vault_balance"])
            for e in va.log.of_kind("vault_takeover")] == [("alice", "hlp", "10", "90", "1000")]
    assert va.log.of_kind("fund_takeover") == [] and va.log.of_kind("liquidation_fill") == []
    s = va.summary()
    assert s["accounts"]["hlp"]["positions"] == {"PUNK": {"size": "10", "entry_value": "900"}}
    assert s["backstop_vault"] == {"account": "hlp", "balance": "1000", "unrealized_pnl": "50", "pnl": "50"}
    assert s["insurance_fund"] == {"initial": "10", "final": "10", "positions": {}}
    assert "backstop vault hlp takes over" in narrate(va.log.of_kind("vault_takeover")[0])
    # Without the vault account the fund is the vault, as before.
    fund = run(with_policy("vault_account", backstop_vault=""))
    assert [(e["size"], e["price"]) for e in fund.log.of_kind("fund_takeover")] == [("10", "90")]
    assert "backstop_vault" not in fund.summary()


# --- dYdX's fillable price ------------------------------------------------------------------------------


def test_the_fillable_price_limits_the_order_near_the_oracle_and_the_rest_goes_at_bankruptcy():
    # Long 10 at 100 with 100, mark 95, maintenance 8%: equity 50, MM 76, BA = 26/76; limit
    # 95 - 1.5 x 7.60 x 26/76 = 91.10. 5 sell at 94, 5 go to the fund at 90; alice has 20, pays
    # 1.5% of 5 x 94 + 5 x 90 = 920 (13.80) and keeps 6.20; the fund sells the 5 at 90.50: 16.30.
    dydx = run(resolve_scenario("fillable_price"))
    started = dydx.log.of_kind("liquidation_started")[0]
    assert (started["limits"], started["bankruptcy_prices"]) == ({"PUNK": "91.1"}, {"PUNK": "90"})
    assert "fillable price PUNK 91.1 ETH" in narrate(started)
    assert [(e["size"], e["price"]) for e in dydx.log.of_kind("liquidation_fill")] == [("-5", "94")]
    assert [(e["size"], e["price"]) for e in dydx.log.of_kind("fund_takeover")] == [("5", "90")]
    settled = dydx.log.of_kind("liquidation_settled")[0]
    assert (settled["clearance_fee"], settled["returned"]) == ("13.8", "6.2")
    assert dydx.summary()["insurance_fund"]["final"] == "16.3"
    nfex = run(with_policy("fillable_price", liquidation_price="bankruptcy", liquidation_fee=0))
    assert [e["price"] for e in nfex.log.of_kind("liquidation_fill")] == ["94", "90.5"]
    assert nfex.summary()["insurance_fund"]["final"] == "22.5"


def test_the_fillable_limit_is_the_mark_at_maintenance_margin_and_never_past_bankruptcy():
    from actors import LiquidationEngine
    from actors.liquidation_engine import Liquidation
    from sandbox.messages import LiquidationRequested

    spec = MarketSpec("PUNK", 100 * P, 160_000, 80_000, tick_size=P // 100)
    engine = LiquidationEngine({"PUNK": spec})
    engine.policy = attrs.evolve(DEFAULT_POLICY, liquidation_price="fillable")
    engine.marks["PUNK"] = 95 * P
    liq = Liquidation(1, "a", LiquidationRequested("a", 0, 0, (), 0, (), ()), prices={"PUNK": 90 * P})
    long10 = (PositionView("PUNK", 10 * P, 1000 * E),)
    assert engine.order_limits(liq, long10, 76 * E, 76 * E) == {"PUNK": 95 * P}  # BA = 0: the mark
    assert engine.order_limits(liq, long10, 50 * E, 76 * E) == {"PUNK": 91_100_000_000}
    assert engine.order_limits(liq, long10, 0, 76 * E) == {"PUNK": 90 * P}  # 95 - 11.40 is past 90


# --- several insurance funds ------------------------------------------------------------------------


def test_a_surplus_in_one_group_cannot_pay_a_bankruptcy_in_another():
    groups = run(resolve_scenario("fund_groups"))
    funds = groups.summary()["insurance_fund"]["funds"]
    assert {n: (f["initial"], f["final"], f["markets"]) for n, f in funds.items()} == {
        "blue_chip": ("0", "30", ["PUNK"]), "long_tail": ("0", "0", ["BAYC"])}
    opened = groups.log.of_kind("fund_lot_opened")[0]
    assert (opened["fund"], opened["available"], opened["accepted"]) == ("long_tail", "0", False)
    adl = groups.log.of_kind("adl")
    assert [(e["account"], e["size"], e["price"]) for e in adl] == [("carol", "-1", "55")]
    assert groups.summary()["accounts"]["carol"]["balance"] == "105"
    assert "insurance fund blue_chip receives 30 ETH" in narrate(groups.log.of_kind("fund_surplus")[0])
    assert log_ok(groups).ok
    # The same crash with one shared fund: the 30 pays for bob's short (bought back at 62), no ADL.
    shared = run(attrs.evolve(resolve_scenario("fund_groups"), funds=()))
    assert shared.summary()["insurance_fund"]["final"] == "23" and "funds" not in shared.summary()["insurance_fund"]
    assert shared.summary()["counts"]["adl"] == 0
    assert [e["amount"] for e in shared.log.of_kind("fund_payout")] == ["7"]


def test_check_log_books_each_fund_separately():
    events = [dict(e) for e in run(resolve_scenario("fund_groups")).events]
    for e in events:
        if e["kind"] == "fund_surplus":
            e["fund"] = "long_tail"  # the surplus booked to the wrong fund
    report = check_lines([(EventLog.dumps(e) + "\n").encode() for e in events])
    assert report.bad is not None and "long_tail" in report.bad.problem


def test_the_fund_balance_stays_one_number_with_one_fund_and_is_the_sum_with_several():
    from actors import FUND

    groups = run(resolve_scenario("fund_groups"))
    fund = groups.runtime[FUND]
    assert fund.ledgers == {"blue_chip": 30 * E, "long_tail": 0} and fund.balance == 30 * E
    with pytest.raises(AttributeError):
        fund.balance = 0


# --- validation -------------------------------------------------------------------------------------

TIERED = GOOD.replace('initial_margin = "0.1"\nmaintenance_margin = "0.05"\n', "")

VENUE_CASES = [
    # (replace in GOOD or None to append, text, key, problem)
    ("tiers", 'tiers = [{ notional = "10", maintenance_margin = "0.05", initial_margin = "0.1" }]',
     "markets[0].tiers", "at least two tiers"),
    ("tiers", 'tiers = [{ notional = "10", maintenance_margin = "0.05", initial_margin = "0.1" }, '
              '{ notional = "5", maintenance_margin = "0.1", initial_margin = "0.2" }]',
     "markets[0].tiers[1].notional", "above the previous"),
    ("tiers", 'tiers = [{ notional = "10", maintenance_margin = "0.05", initial_margin = "0.1" }, '
              '{ maintenance_margin = "0.04", initial_margin = "0.2" }]',
     "markets[0].tiers[1].maintenance_margin", "not be below the previous"),
    ("tiers", 'tiers = [{ maintenance_margin = "0.05", initial_margin = "0.1" }, '
              '{ maintenance_margin = "0.1", initial_margin = "0.2" }]',
     "markets[0].tiers[0].notional", "is required"),
    ("tiers", 'tiers = [{ notional = "10", maintenance_margin = "0.1", initial_margin = "0.1" }, '
              '{ maintenance_margin = "0.1", initial_margin = "0.2" }]',
     "markets[0].tiers[0].maintenance_margin", "below initial_margin"),
    ("tiers", 'tiers = [{ notional = "10", maintenance_margin = "0.05", initial_margin = "0.1", max_leverage = 20 },'
              ' { maintenance_margin = "0.1", initial_margin = "0.2" }]',
     "markets[0].tiers[0].max_leverage", "at most 1 / initial_margin"),
    ("flat", 'initial_margin = "0.2"\ntiers = [{ notional = "10", maintenance_margin = "0.05", initial_margin = "0.1" },'
             ' { maintenance_margin = "0.1", initial_margin = "0.2" }]',
     "markets[0].initial_margin", "first tier's"),
    ("market", 'risk_factor = "20"', "markets[0].risk_factor", "above 1"),
    ("market", 'risk_factor = "0"', "markets[0].risk_factor", "greater than 0"),
    (None, '[[funds]]\nname = "a"\nmarkets = ["BAYC"]\n', "funds[0].markets", "unknown market"),
    (None, '[[funds]]\nname = "shared"\nmarkets = ["PUNK"]\n', "funds[0].name", "reserved"),
    (None, '[[funds]]\nname = "a"\nmarkets = []\n', "funds[0].markets", "non-empty array"),
    (None, '[[funds]]\nname = "a"\nmarkets = ["PUNK"]\n[[funds]]\nname = "b"\nmarkets = ["PUNK"]\n',
     "funds[1].markets", "already in fund 'a'"),
    (None, '[[funds]]\nname = "a"\nmarkets = ["PUNK"]\n', "insurance_fund", "shared fund has no market"),
    (None, '[policy]\nbankruptcy_closing_fee = "yes"\n', "policy.bankruptcy_closing_fee", "expected true or false"),
    (None, '[policy]\nstep_down_band = "0.1"\n', "policy.step_down_band", "only applies with tier_step_down"),
    (None, '[policy]\ntier_step_down = true\nstep_down_band = "1"\n', "policy.step_down_band", "at most just below 1"),
    (None, '[policy]\npreset = "kraken"\n', "policy.preset", "venue presets nfex, bitmex"),
    (None, '[policy]\nbackstop_below = "1.5"\n', "policy.backstop_below", "at most 1"),
    (None, '[policy]\nfillable_spread = "1"\n', "policy.fillable_spread", "only applies with liquidation_price"),
    (None, '[policy]\nliquidation_price = "mark"\n', "policy.liquidation_price", "must be one of bankruptcy, fillable"),
    (None, '[policy]\npreset = "hyperliquid"\nliquidation = "full"\npartial_fraction = "0.5"\n',
     "policy.partial_fraction", "only applies with liquidation = 'partial'"),
    ("alice", 'isolated = { BAYC = "5" }', "accounts[0].isolated.BAYC", "unknown market"),
    ("alice", 'isolated = { PUNK = "20" }', "accounts[0].isolated", "exceed the deposit (10)"),
    ("alice", 'isolated = { PUNK = "0" }', "accounts[0].isolated.PUNK", "greater than 0"),
    ("alice", 'isolated = "PUNK"', "accounts[0].isolated", "expected a table"),
    ("alice", 'isolated = {}', "accounts[0].isolated", "names no market"),
    (None, '[policy]\nbackstop_vault = "bob"\n', "policy.backstop_vault", "only applies with backstop_below"),
    (None, '[policy]\nbackstop_below = "0.5"\nbackstop_vault = "hlp"\n', "policy.backstop_vault",
     "unknown account 'hlp'"),
    (None, '[policy]\nadl_price = "mark"\n', "policy.adl_price", "must be one of bankruptcy, previous_mark"),
    (None, '[policy]\nsocialized_loss = "yes"\n', "policy.socialized_loss", "expected true or false"),
    (None, '[policy]\nfund_floor = "5"\n', "policy.fund_floor", "only applies with socialized_loss"),
    (None, '[policy]\nsocialized_loss = true\nfund_floor = "-5"\n', "policy.fund_floor", "negative"),
    (None, '[policy]\nrevenue_pool = "30"\n', "policy.revenue_pool", "needs revenue_transfer"),
    (None, '[policy]\nrevenue_transfer = "10"\n', "policy.revenue_transfer", "only applies with a revenue_pool"),
    (None, '[policy]\nrevenue_pool = "30"\nrevenue_transfer = "10"\nrevenue_interval = "0"\n',
     "policy.revenue_interval", "greater than 0"),
]


@pytest.mark.parametrize(("where", "text", "key", "problem"), VENUE_CASES)
def test_a_bad_venue_option_is_named(tmp_path, where, text, key, problem):
    if where is None:
        body = GOOD + "\n" + text
    elif where == "alice":
        body = GOOD.replace('id = "alice"\n', 'id = "alice"\n' + text + "\n", 1)
    elif where in ("tiers", "flat"):
        base = TIERED if where == "tiers" else GOOD.replace('initial_margin = "0.1"\n', "")
        body = base.replace('symbol = "PUNK"\n', 'symbol = "PUNK"\n' + text + "\n", 1)
    else:
        body = GOOD.replace('symbol = "PUNK"\n', 'symbol = "PUNK"\n' + text + "\n", 1)
    with pytest.raises(ScenarioError) as info:
        load_scenario(write(tmp_path, body))
    assert (info.value.key, problem in info.value.problem) == (key, True), info.value


def test_a_policy_string_is_a_venue_preset_and_the_tables_own_keys_win(tmp_path):
    assert load_scenario(write(tmp_path, 'policy = "nfex"\n' + GOOD)).policy == DEFAULT_POLICY
    binance = load_scenario(write(tmp_path, 'policy = "binance"\n' + GOOD)).policy
    assert (binance.tier_step_down, binance.liquidation_fee, binance.adl_ranking, binance.fund_inventory) == (
        True, 10_000, "pnl_x_margin_ratio", "close")
    mine = load_scenario(write(tmp_path, GOOD + '\n[policy]\npreset = "binance"\nliquidation_fee = "0"\n')).policy
    assert mine == attrs.evolve(binance, liquidation_fee=0)
    # A choice the table overrides takes the preset's dependent keys away.
    full = load_scenario(write(tmp_path, GOOD + '\n[policy]\npreset = "hyperliquid"\nliquidation = "full"\n')).policy
    assert (full.liquidation, full.partial_threshold, full.fund_inventory) == ("full", 0, "keep")
    with pytest.raises(ScenarioError) as info:
        load_scenario(write(tmp_path, 'policy = "kraken"\n' + GOOD))
    assert info.value.key == "policy" and "venue presets" in info.value.problem


def test_every_preset_parses_and_the_sweep_can_set_them(tmp_path):
    import tomllib

    doc = tomllib.loads(GOOD)
    for name in PRESETS:
        assert parse_scenario(apply_override(doc, "policy", name), "<sweep>").policy is not None
    fund = apply_override(doc, "markets.PUNK.risk_factor", "1.5")
    assert parse_scenario(fund, "<sweep>").markets[0].risk_factor == 1_500_000
    fee = apply_override(doc, "policy.bankruptcy_closing_fee", "true")
    assert parse_scenario(fee, "<sweep>").policy.bankruptcy_closing_fee is True
    for key, value, field, parsed in (("policy.adl_price", "previous_mark", "adl_price", "previous_mark"),
                                      ("policy.socialized_loss", "true", "socialized_loss", True)):
        assert getattr(parse_scenario(apply_override(doc, key, value), "<sweep>").policy, field) == parsed
    pool = apply_override(apply_override(doc, "policy.revenue_pool", "30"), "policy.revenue_transfer", "10")
    assert parse_scenario(pool, "<sweep>").policy.revenue_transfer == 10 * E
    groups = tomllib.loads((resolve_scenario("fund_groups").text))
    assert parse_scenario(apply_override(groups, "funds.long_tail.balance", "40"), "<sweep>").funds[1].balance == 40 * E


# --- every venue preset side by side -------------------------------------------------------------------


def test_the_docs_show_the_presets_tables_as_they_are_now():
    from sandbox._tools.presets import BEGIN, END, GAP_BEGIN, GAP_END, PAGE, generated, generated_gap

    page = PAGE.read_text()
    for begin, end, table in ((BEGIN, END, generated), (GAP_BEGIN, GAP_END, generated_gap)):
        shown = page.split(begin, 1)[1].split(end, 1)[0].strip()
        assert shown == table(), "docs/concepts/policies.md is stale: run python -m sandbox._tools.presets"


def test_every_preset_keeps_every_invariant_on_the_venue_scenario_under_random_delivery():
    from sandbox._tools.explore import explore
    from sandbox._tools.presets import under_preset

    base = attrs.evolve(resolve_scenario("venue_rules"), latency_ms=(0, 5))
    for name in PRESETS:
        found = explore(under_preset(base, name), examples=15, database=None, seed=random.Random(name).randint(0, 99))
        assert found.finding is None, (name, found.finding and found.finding.failure.summary)


@pytest.mark.parametrize("name", ["tiered_margin", "tier_step_down", "bankruptcy_closing_fee", "fund_groups",
                                  "backstop_vault", "fillable_price", "adl_previous_mark", "socialized_loss",
                                  "revenue_pool", "isolated_margin", "vault_account"])
def test_venue_scenarios_keep_every_invariant_under_latency_and_any_interleaving(name):
    from sandbox._tools.explore import explore

    sc = attrs.evolve(resolve_scenario(name), latency_ms=(0, 10))
    result = explore(sc, examples=40, database=None, seed=0)
    assert result.finding is None, result.finding and result.finding.failure.summary
