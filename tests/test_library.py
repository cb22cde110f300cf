"""The scenario library: each bundled scenario's key outcome, with the numbers worked by hand.

Where a scenario shows a policy, the test also runs it under the other choice
(``with_policy``) to show what the policy changes.
"""

from __future__ import annotations

from typing import Any

import attrs
import pytest

from sandbox import RunResult, bundled_scenarios, resolve_scenario, run_scenario_sync
from sandbox.cli import main
from sandbox.explore import events_digest

LIBRARY = sorted(bundled_scenarios())


def run(name: str, seed: int | None = None, **policy: Any) -> RunResult:
    sc = resolve_scenario(name)
    if policy:
        sc = attrs.evolve(sc, policy=attrs.evolve(sc.policy, **policy))
    result = run_scenario_sync(sc, seed=seed)
    assert result.violations == [], result.violations
    return result


def of(result: RunResult, *kinds: str) -> list[dict[str, Any]]:
    return result.log.of_kind(*kinds)


def account(result: RunResult, name: str) -> dict[str, Any]:
    return result.summary()["accounts"][name]


def fund(result: RunResult) -> dict[str, Any]:
    return result.summary()["insurance_fund"]


# --- every scenario ------------------------------------------------------------------


def test_the_library_has_at_least_twelve_scenarios_each_with_a_description():
    assert len(LIBRARY) >= 12
    for name in LIBRARY:
        sc = resolve_scenario(name)
        assert sc.name == name
        assert len(sc.description) > 200, name  # says what it teaches and what it follows


@pytest.mark.parametrize("name", LIBRARY)
def test_sandbox_run_exits_0_with_every_invariant_held(name, capsys):
    assert main(["run", name, "--quiet"]) == 0
    assert "all held at every quiet point" in capsys.readouterr().out


@pytest.mark.parametrize("name", LIBRARY)
def test_a_seed_gives_the_same_events_every_time(name):
    sc = resolve_scenario(name)
    for seed in (0, 7):
        first, second = run_scenario_sync(sc, seed=seed), run_scenario_sync(sc, seed=seed)
        assert events_digest(first.events) == events_digest(second.events)
        assert first.ok


# --- the fund's two sides: surplus and shortfall ------------------------------------------


def test_fill_above_bankruptcy_puts_30_a_contract_into_the_fund():
    # Long 2 at 7000 with 100: bankruptcy 7000 - 100/2 = 6950. Mark 6980: equity
    # 100 - 2 x 20 = 60 <= MM 0.005 x 13960 = 69.8. Sold at 6980: realized -40,
    # 60 left = 2 x (6980 - 6950) -> the fund, 0 -> 60.
    result = run("fill_above_bankruptcy")
    started = of(result, "liquidation_started")[0]
    assert (started["equity"], started["maintenance_margin"]) == ("60", "69.8")
    assert started["bankruptcy_prices"] == {"BTC": "6950"}
    assert fund(result)["final"] == "60"
    assert account(result, "trader")["balance"] == "0"
    assert result.summary()["counts"]["bankruptcies"] == 0


def test_fill_below_bankruptcy_is_paid_from_an_earlier_surplus_without_adl():
    # a1 (bankruptcy 99) sold at 99.25: +0.25. a2 (margin 1.5, bankruptcy 98.5) at
    # mark 98.9: equity 0.4 <= 0.4945; the bid 98.25 is below 98.5, the fund takes
    # the contract at 98.5 with limit 98.5 - 0.25 = 98.25, fills, pays 0.25: back to 0.
    result = run("fill_below_bankruptcy")
    assert [(e["kind"], e["amount"], e["balance"]) for e in of(result, "fund_surplus", "fund_payout")] == [
        ("fund_surplus", "0.25", "0.25"), ("fund_payout", "0.25", "0"),
    ]
    takeover = of(result, "fund_takeover")[0]
    assert (takeover["account"], takeover["price"]) == ("a2", "98.5")
    assert of(result, "fund_order")[0]["limit"] == "98.25"
    assert result.summary()["counts"] == {"liquidations": 2, "bankruptcies": 1, "fund_takeovers": 1, "adl": 0}


def test_gap_through_bankruptcy_deleverages_the_winner_at_the_bankruptcy_price():
    # dYdX: B short 500 at 1 with 100; next price 2: equity -400; bankruptcy
    # 1 + 100/500 = 1.20. A is deleveraged at 1.20: +100 (not the +500 at mark).
    result = run("gap_through_bankruptcy")
    started = of(result, "liquidation_started")[0]
    assert (started["equity"], started["bankruptcy_prices"]) == ("-400", {"DOGE": "1.2"})
    assert [(e["account"], e["size"], e["price"], e["realized_pnl"]) for e in of(result, "adl")] == [
        ("A", "-500", "1.2", "100"),
    ]
    assert account(result, "A") == {"deposited": "100", "withdrawn": "0", "balance": "200", "positions": {}}
    assert account(result, "B")["balance"] == "0"
    assert fund(result)["final"] == "0"


# --- cascades and the shared fund ------------------------------------------------------------


def test_cascade_empties_the_fund_then_adl_ranks_by_pnl_times_leverage():
    # L1 (bankruptcy 90): fund 5, limit 85, sells at 88: pays 2 -> 3.
    # L2 (bankruptcy 85): fund 3, limit 82, sells at 82: pays 3 -> 0.
    # L3 (long 2, bankruptcy 80): fund 0, limit 80, bids at 78: ADL of 2 at 80.
    # Ranks at mark 84, PnL% x mark value / equity:
    #   S2 short 1 at 95, equity 12 + 11 = 23: 11/95 x 84/23  = 0.423
    #   S3 short 2 at 100, equity 40 + 32 = 72: 32/200 x 168/72 = 0.373
    #   S1 short 1 at 105, equity 50 + 21 = 71: 21/105 x 84/71 = 0.237
    result = run("cascade_adl")
    assert [(e["amount"], e["balance"]) for e in of(result, "fund_payout")] == [("2", "3"), ("3", "0")]
    assert of(result, "adl_ranking")[0]["ranking"] == ["S2", "S3", "S1"]
    assert [(e["account"], e["size"], e["price"]) for e in of(result, "adl")] == [("S2", "1", "80"), ("S3", "1", "80")]
    # S2 buys back at 80 what it sold at 95: +15; S3 closes 1 of 2 at 80: +20.
    assert account(result, "S2") == {"deposited": "12", "withdrawn": "0", "balance": "27", "positions": {}}
    assert account(result, "S3")["balance"] == "60"
    assert account(result, "S3")["positions"] == {"PUNK": {"size": "-1", "entry_value": "-100"}}
    assert account(result, "S1")["positions"] == {"PUNK": {"size": "-1", "entry_value": "-105"}}


def test_cascade_with_plain_pnl_ranking_deleverages_the_largest_pnl_first():
    # PnL% alone: S1 0.2, S3 0.16, S2 0.116: S1 and S3 give one contract each.
    result = run("cascade_adl", adl_ranking="pnl_pct")
    assert of(result, "adl_ranking")[0]["ranking"] == ["S1", "S3", "S2"]
    assert [e["account"] for e in of(result, "adl")] == ["S1", "S3"]
    assert account(result, "S1")["balance"] == "75"  # 50 + (105 - 80)


def test_thin_book_crash_the_first_collection_spends_the_shared_fund():
    # AZUKI surplus 93 - 90 = 3 (10 -> 13); PUNK: long 2 bankrupt at 92, the fund's
    # limit 92 - 13/2 = 85.50, sold at 86: pays 12 (-> 1); BAYC: limit 92 - 1/2 =
    # 91.50 > bids at 86: both contracts deleveraged at 92 against bayc_short (+16).
    result = run("thin_book_crash")
    assert [e["balance"] for e in of(result, "fund_surplus", "fund_payout")] == ["13", "1"]
    assert [(e["account"], e["market"], e["size"], e["price"]) for e in of(result, "adl")] == [
        ("bayc_short", "BAYC", "2", "92"),
    ]
    assert account(result, "bayc_short")["balance"] == "66"
    assert fund(result)["final"] == "1"


def test_thin_book_crash_in_the_other_order_deleverages_the_other_collection():
    sc = resolve_scenario("thin_book_crash")
    azuki, punk, bayc = sc.events
    result = run_scenario_sync(attrs.evolve(sc, events=(azuki, bayc, punk)))
    assert result.ok
    assert [(e["account"], e["market"]) for e in of(result, "adl")] == [("punk_short", "PUNK")]


# --- policies: fund inventory, partial liquidation, clearance fee ------------------------------


def test_pump_against_a_held_short_drains_the_fund_and_deleverages_the_pumper():
    # The fund accepts the whale's short 100 at 11 (loss at mark 11.50: 50 <= 1000).
    # At 30 it loses 100 x (30 - 11) = 1900 > 1000: drained, the short goes to ADL
    # at 11 against the pumper (long 100 at 10: +100), and the fund is flat.
    result = run("pump_against_fund")
    opened = of(result, "fund_lot_opened")[0]
    assert (opened["loss_at_mark"], opened["accepted"]) == ("50", True)
    marked = of(result, "fund_inventory_marked")
    assert [(e["mark_price"], e["unrealized_pnl"], e["available"]) for e in marked] == [("30", "-1900", "-900")]
    assert [(e["reason"], e["price"]) for e in of(result, "fund_adl_requested")] == [("drained", "11")]
    assert [(e["account"], e["price"], e["realized_pnl"]) for e in of(result, "adl")] == [("pumper", "11", "100")]
    assert fund(result) == {"initial": "1000", "final": "1000", "positions": {}}


def test_pump_against_a_fund_large_enough_holds_through_the_pump():
    # A fund of 5000 covers the 3900 the short loses at 50: it holds, nobody is deleveraged.
    sc = resolve_scenario("pump_against_fund")
    result = run_scenario_sync(attrs.evolve(sc, fund_balance=5000 * 10**18))
    assert result.ok
    assert result.summary()["counts"]["adl"] == 0
    assert fund(result)["positions"] == {"JELLY": {"size": "-100", "entry_value": "-1100"}}
    assert [e["available"] for e in of(result, "fund_inventory_marked")] == ["3100", "1100"]


def test_pump_against_a_fund_that_closes_at_once_deleverages_the_long_instead():
    # One-shot policy: the fund buys back inside its price band, limit 11.50 x 1.1
    # = 12.65; the only offer is 60, so the pumper is deleveraged at 11: +100, and
    # the pump that follows costs the fund nothing.
    result = run("pump_against_fund", fund_inventory="close")
    assert of(result, "fund_order")[0]["limit"] == "12.65"
    assert [(e["account"], e["price"], e["realized_pnl"]) for e in of(result, "adl")] == [("pumper", "11", "100")]
    assert fund(result) == {"initial": "1000", "final": "1000", "positions": {}}
    assert account(result, "pumper")["balance"] == "600"


def test_whale_is_liquidated_in_two_slices_and_handed_back():
    # Slice 1 (t=1): bankruptcy 90, 20 sold at 92: balance 1000 - 160 = 840.
    #   At 94: equity 840 - 80 x 6 = 360 <= MM 80 x 94 x 0.05 = 376.
    # Slice 2 (t=31): bankruptcy 94 - 360/80 = 89.50, 20 sold at 91: 840 - 180 = 660.
    #   At 94: equity 660 - 60 x 6 = 300 > MM 282: handed back at t=61.
    result = run("whale_in_slices")
    started, second = of(result, "liquidation_started")[0], of(result, "liquidation_slice")[0]
    assert (started["time"], started["closing"], started["bankruptcy_prices"]) == (1, {"PUNK": "20"}, {"PUNK": "90"})
    assert (second["time"], second["equity"], second["closing"], second["bankruptcy_prices"]) == (
        31, "360", {"PUNK": "20"}, {"PUNK": "89.5"})
    restored = of(result, "liquidation_restored")[0]
    assert (restored["time"], restored["equity"], restored["maintenance_margin"]) == (61, "300", "282")
    assert account(result, "whale") == {
        "deposited": "1000", "withdrawn": "0", "balance": "660",
        "positions": {"PUNK": {"size": "60", "entry_value": "6000"}},
    }
    assert fund(result)["final"] == "100"
    assert result.summary()["counts"]["liquidations"] == 1


def test_whale_under_full_liquidation_loses_everything():
    # One IOC for 100 at 90: 20 at 92, 20 at 91, then the bids at 89 are below 90.
    # The fund takes 60 at 90 and sells them at 89 (pays 60); the whale's balance
    # 1000 - 160 - 180 - 600 = 60 is swept into the fund first (a liquidation's
    # own surplus reaches the fund ahead of its lots): the fund is back at 100.
    result = run("whale_in_slices", liquidation="full")
    assert account(result, "whale") == {"deposited": "1000", "withdrawn": "0", "balance": "0", "positions": {}}
    assert [(e["kind"], e["amount"]) for e in of(result, "fund_payout", "fund_surplus")] == [
        ("fund_surplus", "60"), ("fund_payout", "60"),
    ]


def test_clearance_fee_is_capped_at_what_is_left_and_the_rest_is_returned():
    # carol: sold at 92.50, 0.50 left; fee 1% x 92.50 = 0.925, capped at 0.50.
    # alice: sold at 93, 3 left; fee 0.93 to the fund, 2.07 back to alice.
    result = run("clearance_fee")
    settled = {e["account"]: (e["clearance_fee"], e["returned"]) for e in of(result, "liquidation_settled")}
    assert settled == {"carol": ("0.5", "0"), "alice": ("0.93", "2.07")}
    assert account(result, "alice")["balance"] == "2.07"
    assert fund(result)["final"] == "51.43"


def test_without_a_clearance_fee_the_fund_takes_all_that_is_left():
    result = run("clearance_fee", liquidation_fee=0)
    assert account(result, "alice")["balance"] == "0"
    assert fund(result)["final"] == "53.5"  # 50 + 0.5 + 3


def test_hedged_account_survives_where_the_same_long_alone_is_liquidated():
    # h: 11.90 - 10 (PUNK) + 10 (BAYC) = 11.90 > MM 0.05 x (90 + 90) = 9.
    # u: 10 - 10 = 0 <= 4.50: sold at 91, 1 left for the fund.
    result = run("hedged_cross_margin")
    assert [e["account"] for e in of(result, "liquidation_started")] == ["u"]
    assert account(result, "h")["balance"] == "11.9"
    assert account(result, "h")["positions"] == {
        "BAYC": {"size": "-2", "entry_value": "-100"}, "PUNK": {"size": "1", "entry_value": "100"},
    }
    assert fund(result)["final"] == "11"


# --- the mark price ------------------------------------------------------------------------


def test_oracle_band_refuses_the_spike_and_accepts_the_move_once_stale():
    # 70 from 100 is a 30% move > 25%: refused at t=1, 10, 40, 60. The last valid
    # price was at t=2; at t=70 it is 68 s old > 60: accepted. alice is bankrupt
    # at 70 (equity -20, bankruptcy 90); the fund sells at 69 and pays 21.
    result = run("oracle_spike")
    rejected = of(result, "oracle_price_rejected")
    assert [(e["time"], e["reason"]) for e in rejected] == [(1, "outside_band"), (10, "outside_band"),
                                                            (40, "outside_band"), (60, "outside_band")]
    assert [(e["time"], e["price"]) for e in of(result, "mark_price")] == [(2, "99"), (70, "70")]
    assert of(result, "oracle_fresh")[0]["stale_for"] == 68
    assert of(result, "liquidation_started")[0]["time"] == 70
    assert fund(result)["final"] == "29"


def test_without_a_band_the_spike_liquidates_alice_at_once():
    result = run("oracle_spike", oracle_band=0)
    assert of(result, "liquidation_started")[0]["time"] == 1
    assert of(result, "oracle_price_rejected") == []


def test_a_stale_market_pauses_the_liquidation_until_the_price_returns():
    # t=45: by PUNK's stale 100, equity 15 - 8 = 7 <= MM 0.05 x 192 = 9.60, but
    # PUNK's last valid price is from t=0 (> 30 s): paused. t=60: PUNK 110:
    # equity 15 + 10 - 8 = 17 > 0.05 x 202 = 10.10: the resumed liquidation is
    # cancelled on the snapshot and alice keeps everything.
    result = run("oracle_stale")
    assert [(e["time"], e["market"]) for e in of(result, "oracle_stale")] == [(40, "PUNK")]
    paused = of(result, "liquidation_paused")[0]
    assert (paused["time"], paused["markets"], paused["equity"]) == (45, ["PUNK"], "7")
    assert of(result, "liquidation_resumed")[0]["time"] == 60
    cancelled = of(result, "liquidation_cancelled")[0]
    assert (cancelled["equity"], cancelled["maintenance_margin"]) == ("17", "10.1")
    assert account(result, "alice")["balance"] == "15"
    assert result.summary()["counts"]["liquidations"] == 0


def test_with_stale_liquidations_continue_alice_is_liquidated_on_the_stale_price():
    # Equity 7 split over notionals 100 : 92: PUNK's share 3.6458..., its bankruptcy
    # price 96.3541... -> 96.36 (up, a long); BAYC's 88.6458... -> 88.65. BAYC sells
    # at 93; PUNK cannot fill at 96.36, the fund takes it and sells at 93 (pays
    # 3.36). alice: 15 - 7 - 3.64 = 4.36 -> the fund: 20 + 4.36 - 3.36 = 21.
    result = run("oracle_stale", stale_liquidations="continue")
    started = of(result, "liquidation_started")[0]
    assert (started["time"], started["bankruptcy_prices"]) == (45, {"BAYC": "88.65", "PUNK": "96.36"})
    assert account(result, "alice")["balance"] == "0"
    assert fund(result)["final"] == "21"


def test_the_median_mark_moves_a_fifth_of_a_spoof():
    # t=5: impact bid 140, ask 160 -> mid 150; basis samples 0, 0, 0, 0, 50 ->
    # price2 = 100 + 10 = 110; price1 = 100 (no funding yet): median 110.
    # s (short 1 at 100 with 20): equity 10 > MM 5.50. At t=7 the mid is 100 again.
    result = run("mark_median_spoof")
    computed = {e["time"]: e for e in of(result, "mark_computed")}
    spoofed = computed[5]
    assert (spoofed["impact_bid"], spoofed["impact_ask"], spoofed["impact_mid"]) == ("140", "160", "150")
    assert (spoofed["price1"], spoofed["price2"], spoofed["mark"]) == ("100", "110", "110")
    assert (computed[7]["impact_mid"], computed[7]["mark"]) == ("100", "100")
    assert of(result, "liquidation_started") == []
    assert account(result, "s")["balance"] == "20"


# --- withdrawals, funding, fees ------------------------------------------------------------------


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_a_withdrawal_during_the_liquidation_is_refused(seed):
    # 10 ms a message: frozen at 2.040; the withdrawal reaches clearing at 2.065,
    # before settlement at 2.080. Bankruptcy 100 - 11 = 89; sold at 92: 3 -> fund.
    result = run("withdrawal_vs_liquidation", seed=seed)
    assert [(e["time"], e["amount"]) for e in of(result, "withdraw")] == [(1.02, "4")]
    assert [(e["time"], e["reason"]) for e in of(result, "withdraw_rejected")] == [
        (2.065, "account under liquidation"), (3.02, "more than the balance"),
    ]
    assert of(result, "account_frozen")[0]["time"] == 2.04
    assert of(result, "liquidation_settled")[0]["time"] == 2.08
    assert fund(result)["final"] == "13"


def test_funding_drains_the_fund_hour_by_hour_then_falls_short():
    # Rate (84 - 75) / 75 / 24 = 0.005. The fund is long 10 (kept at 94), which
    # loses 100 at mark 84: of its 112, 12 is available. The short is owed
    # 84 x 10 x 0.005 = 4.20 an hour: the fund pays 4.20, 4.20, then the 3.60 it
    # has available; the short gets 4.20 + 4.20 + 3.60 = 12.
    result = run("funding_drain")
    assert {e["rate"] for e in of(result, "funding_rate")} == {"0.005"}
    paid = of(result, "fund_funding_paid")
    assert [(e["time"], e["amount"], e["owed"], e["balance"]) for e in paid] == [
        (3600, "4.2", "4.2", "107.8"), (7200, "4.2", "4.2", "103.6"), (10800, "3.6", "4.2", "100"),
    ]
    assert [e["time"] for e in of(result, "funding_shortfall")] == [10800]
    assert account(result, "short")["balance"] == "512"
    assert fund(result) == {"initial": "112", "final": "100",
                            "positions": {"PUNK": {"size": "10", "entry_value": "940"}}}


def test_fees_build_the_fund_and_pay_for_a_bankruptcy():
    # Four round trips: (100.10 + 99.90) x 0.0015 x 2 sides = 0.60 each -> 2.40.
    # Bankrupt long 10 at bankruptcy 9; the fund's limit 9 - 2.40/10 = 8.76, sold
    # at 8.80: pays 2 (-> 0.40); the buyer's maker fee 88 x 0.0015 = 0.132 -> 0.532.
    result = run("fee_income")
    income = of(result, "fund_fee_income")
    assert len(income) == 17 and income[15]["balance"] == "2.4"  # 8 trades x 2 sides, then the maker fee
    assert of(result, "fund_order")[0]["limit"] == "8.76"
    assert of(result, "fund_payout")[0]["amount"] == "2"
    assert fund(result)["final"] == "0.532"
    assert result.summary()["fees"] == "0"  # every fee went to the fund
    assert result.summary()["counts"]["adl"] == 0


def test_without_fees_in_the_fund_the_short_is_deleveraged():
    # The 2.40 of fees stay the exchange's; the empty fund cannot sell, so no
    # maker fee either, and the short is deleveraged at 9: +10.
    result = run("fee_income", fee_to_fund=0)
    assert result.summary()["fees"] == "2.4"
    assert fund(result)["final"] == "0"
    assert [(e["account"], e["price"], e["realized_pnl"]) for e in of(result, "adl")] == [("short", "9", "10")]
