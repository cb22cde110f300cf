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
from sandbox._tools.explore import events_digest

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


def test_thin_book_crash_the_fund_holds_through_the_crash_and_nobody_is_deleveraged():
    # AZUKI surplus 93 - 90 = 3 (10 -> 13). PUNK and BAYC: longs of 2 at 92, each
    # losing 4 at mark 90: accepted (13 - 4 - 4 = 5 left). Band 2%: limit 88.20 > the
    # bids at 86: held. t=2: bids at 90, mark 91 (band 89.18): sold at 90, 4 + 4 lost.
    result = run("thin_book_crash")
    assert [(e["market"], e["accepted"]) for e in of(result, "fund_lot_opened")] == [("PUNK", True), ("BAYC", True)]
    assert [(e["time"], e["limit"]) for e in of(result, "fund_order")] == [
        (1, "88.2"), (1, "88.2"), (2, "89.18"), (2, "89.18")]
    assert [(e["time"], e["market"]) for e in of(result, "fund_inventory_held")] == [(1, "PUNK"), (1, "BAYC")]
    assert [(e["amount"], e["balance"]) for e in of(result, "fund_payout")] == [("4", "9"), ("4", "5")]
    assert result.summary()["counts"]["adl"] == 0
    assert fund(result) == {"initial": "10", "final": "5", "positions": {}}


def test_thin_book_crash_under_the_one_shot_policy_deleverages_both_shorts():
    # The same band, one order each: nothing fills at 88.20, so both lots go to ADL at 92.
    result = run("thin_book_crash", fund_inventory="close")
    assert [(e["account"], e["market"], e["size"], e["price"]) for e in of(result, "adl")] == [
        ("punk_short", "PUNK", "2", "92"), ("bayc_short", "BAYC", "2", "92"),
    ]
    assert fund(result)["final"] == "13"


def test_thin_book_crash_one_shot_with_a_wide_band_spends_the_shared_fund_on_the_first_collection():
    # One-shot, 10% band: PUNK's lot is sold at 86 within the budget of 13 (limit 85.50):
    # pays 12 (-> 1); BAYC: limit 92 - 1/2 = 91.50 > bids at 86: deleveraged at 92 (+16).
    result = run("thin_book_crash", fund_inventory="close", fund_price_band=100_000)
    assert [e["balance"] for e in of(result, "fund_surplus", "fund_payout")] == ["13", "1"]
    assert [(e["account"], e["market"], e["size"], e["price"]) for e in of(result, "adl")] == [
        ("bayc_short", "BAYC", "2", "92"),
    ]
    assert account(result, "bayc_short")["balance"] == "66"


def test_thin_book_crash_in_the_other_order_deleverages_the_other_collection():
    sc = resolve_scenario("thin_book_crash")
    azuki, punk, bayc, *later = sc.events
    sc = attrs.evolve(sc, events=(azuki, bayc, punk, *later),
                      policy=attrs.evolve(sc.policy, fund_inventory="close", fund_price_band=100_000))
    result = run_scenario_sync(sc)
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


def test_whale_gets_one_slice_then_its_whole_position_is_liquidated():
    # Hyperliquid: slice 1 (t=1), bankruptcy 90, 20 sold at 92: balance 1000 - 160 = 840;
    # handed back. At 94: equity 840 - 80 x 6 = 360 <= MM 80 x 94 x 0.05 = 376, and within
    # the 30 s cooldown: the next liquidation is for all 80, bankruptcy 94 - 360/80 = 89.50:
    # 20 sold at 91 (840 - 180 = 660), 60 taken over at 89.50 (660 - 630 = 30 left, swept).
    result = run("whale_in_slices")
    first, second = of(result, "liquidation_started")
    assert (first["time"], first["closing"], first["bankruptcy_prices"]) == (1, {"PUNK": "20"}, {"PUNK": "90"})
    restored = of(result, "liquidation_restored")[0]
    assert (restored["equity"], restored["maintenance_margin"], restored["positions"]) == ("360", "376", {"PUNK": "80"})
    assert (second["time"], second["equity"], second["bankruptcy_prices"]) == (1, "360", {"PUNK": "89.5"})
    assert "closing" not in second  # the entire position
    assert [(e["size"], e["price"]) for e in of(result, "liquidation_fill")] == [("-20", "92"), ("-20", "91")]
    assert [(e["size"], e["price"]) for e in of(result, "fund_takeover")] == [("60", "89.5")]
    assert account(result, "whale") == {"deposited": "1000", "withdrawn": "0", "balance": "0", "positions": {}}
    # The fund: +30 surplus, sells the 60 at 89 (a loss of 30): back at 100.
    assert [(e["kind"], e["amount"]) for e in of(result, "fund_surplus", "fund_payout")] == [
        ("fund_surplus", "30"), ("fund_payout", "30")]
    assert fund(result)["final"] == "100"


def test_a_partial_liquidation_after_the_cooldown_is_a_slice_again():
    # With a cooldown of 0 the second liquidation is not "within" it: a second 20% slice.
    result = run("whale_in_slices", partial_cooldown_ms=0)
    # (a slice of the size the new liquidation starts from: 20% of 80 = 16)
    assert [e.get("closing") for e in of(result, "liquidation_started")][:2] == [{"PUNK": "20"}, {"PUNK": "16"}]


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


def test_a_spoof_kept_for_two_more_ticks_moves_the_median_mark_a_fifth_each_tick():
    # Drop the pull at t=6 and tick the index at 6 and 7: basis samples 50, 50, 50 ->
    # price2 110, 120, 130. At 120 s (short 1 at 100 with 20) has equity 0: liquidated.
    sc = resolve_scenario("mark_median_spoof")
    index = next(e for e in sc.events if e.type == "index_price")
    kept = tuple(e for e in sc.events if e.at_ms < 6000) + (
        attrs.evolve(index, at_ms=6000), attrs.evolve(index, at_ms=7000))
    result = run_scenario_sync(attrs.evolve(sc, events=kept))
    assert [(e["time"], e["mark"]) for e in of(result, "mark_computed")][4:] == [(5, "110"), (6, "120"), (7, "130")]
    assert [(e["time"], e["account"], e["equity"]) for e in of(result, "liquidation_started")] == [(6, "s", "0")]


def test_a_capped_vault_deleverages_while_its_parent_is_rich():
    # Cap 10. l1's lot (loss 2 at mark 88) is accepted and sold at 86: lost 4, 6 left.
    # l2's lot loses 2 x (90 - 85) = 10 at the mark > 6: refused, ADL at 90.
    result = run("capped_vault_adl")
    assert [(e["account"], e["accepted"]) for e in of(result, "fund_lot_opened")] == [("l1", True), ("l2", False)]
    assert [(e["account"], e["market"], e["size"], e["price"]) for e in of(result, "adl")] == [
        ("bayc_short", "BAYC", "2", "90")]
    assert fund(result)["final"] == "999996"


def test_without_the_cap_the_rich_fund_covers_both_bankruptcies():
    result = run("capped_vault_adl", fund_loss_limit=0)
    assert result.summary()["counts"]["adl"] == 0
    assert [e["amount"] for e in of(result, "fund_payout")] == ["4", "12"]
    assert fund(result)["final"] == "999984"


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


# --- the fund's size: savings, idle capital, a whale --------------------------------------------


def test_a_fund_grown_in_a_calm_period_is_wiped_out_by_one_whale():
    # Five small longs (1 at 100 with 10 .. 12, bankruptcy 90 .. 88) each sold at the
    # bid 92: surpluses 2, 2.5, 3, 3.5, 4 = 15; the maker fee on each, 92 x 0.0015 =
    # 0.138, gives the fund 0.3 x 0.138 = 0.0414. Four trades of 10 at 100: fees
    # 1.5 + 1.5 each, 0.45 + 0.45 to the fund: 3.60. Fund 0 -> 18.807. Whale: long 10
    # at 100 with 125, mark 86: equity -15, bankruptcy 100 - 125/10 = 87.50; its lot
    # loses 10 x 1.50 = 15 <= 18.807: accepted. Limit 87.50 - 1.8807 -> 85.62 (the
    # band allows 77.40): sold at the bid 85.62, a loss of 18.80; the maker fee
    # 856.20 x 0.0015 x 0.3 = 0.38529 comes back: 18.807 - 18.80 + 0.38529 = 0.39229.
    result = run("fund_grows_then_whale")
    assert [(e["account"], e["bankruptcy_prices"]["PUNK"]) for e in of(result, "liquidation_started")][:5] == [
        ("s1", "90"), ("s2", "89.5"), ("s3", "89"), ("s4", "88.5"), ("s5", "88")]
    assert [e["price"] for e in of(result, "liquidation_fill")] == ["92"] * 5
    trades = [e for e in of(result, "fill") if e["account"] in ("t1", "t2")]
    assert len(trades) == 8 and {(e["size"].lstrip("-"), e["price"], e["fee"]) for e in trades} == {("10", "100", "1.5")}
    surpluses = of(result, "fund_surplus")
    assert [(e["account"], e["amount"]) for e in surpluses] == [
        ("s1", "2"), ("s2", "2.5"), ("s3", "3"), ("s4", "3.5"), ("s5", "4")]
    fees = [e["amount"] for e in of(result, "fund_fee_income")]
    assert fees.count("0.45") == 8 and fees.count("0.0414") == 5 and fees[-1] == "0.38529" and len(fees) == 14
    started = of(result, "liquidation_started")[-1]
    assert (started["account"], started["equity"], started["bankruptcy_prices"]) == ("whale", "-15", {"PUNK": "87.5"})
    opened = of(result, "fund_lot_opened")[0]
    assert (opened["loss_at_mark"], opened["available"], opened["accepted"]) == ("15", "18.807", True)
    assert [e["limit"] for e in of(result, "fund_order")] == ["85.62"]
    assert [e["amount"] for e in of(result, "fund_payout")] == ["18.8"]
    assert result.summary()["counts"]["adl"] == 0
    assert fund(result) == {"initial": "0", "final": "0.39229", "positions": {}}


def test_a_fund_of_1000_loses_the_same_to_the_whale_and_survives():
    # Limit: the band, 86 x 0.9 = 77.40 (the budget allows lower); the best bid is still
    # 85.62: the same loss of 18.80 and the same fee back: 1018.807 - 18.80 + 0.38529.
    sc = resolve_scenario("fund_grows_then_whale")
    result = run_scenario_sync(attrs.evolve(sc, fund_balance=1000 * 10**18))
    assert result.ok
    assert of(result, "fund_lot_opened")[0]["accepted"] is True
    assert of(result, "fund_order")[0]["limit"] == "77.4"
    assert [e["amount"] for e in of(result, "fund_payout")] == ["18.8"]
    assert result.summary()["counts"]["adl"] == 0
    assert fund(result)["final"] == "1000.39229"


def fund_of(size: int) -> RunResult:
    sc = resolve_scenario("fund_too_large_or_too_small")
    result = run_scenario_sync(attrs.evolve(sc, fund_balance=size * 10**18))
    assert result.violations == [], result.violations
    return result


def test_a_fund_too_large_is_idle_capital():
    # Lots: PUNK 4 at 90, mark 85 (loss 20), sold at 84: pays 4 x 6 = 24; BAYC 6 at 90,
    # mark 80 (loss 60), limit 80 x 0.9 = 72 (reserves 6 x 18 = 108), sold at 78: pays 72.
    result = run("fund_too_large_or_too_small")
    assert [e["bankruptcy_price"] for e in of(result, "fund_lot_opened")] == ["90", "90"]
    assert [(e["account"], e["price"]) for e in of(result, "fill") if e["account"] == "mm"] == [
        ("mm", "84"), ("mm", "78")]
    assert [(e["loss_at_mark"], e["accepted"]) for e in of(result, "fund_lot_opened")] == [("20", True), ("60", True)]
    assert [(e["limit"], e["max_loss"]) for e in of(result, "fund_order")] == [("76.5", "54"), ("72", "108")]
    assert [e["amount"] for e in of(result, "fund_payout")] == ["24", "72"]
    assert result.summary()["counts"]["adl"] == 0
    assert fund(result) == {"initial": "10000", "final": "9904", "positions": {}}  # 96 used: 0.96%


def test_a_fund_too_small_cannot_accept_the_second_lot():
    # 50: PUNK accepted (20 <= 50), limit 90 - 50/4 = 77.50, sold at 84: pays 24 -> 26.
    # BAYC loses 60 at the mark > 26: ADL of bayc_short at 90: 6 x (100 - 90) = +60.
    result = fund_of(50)
    assert [(e["available"], e["accepted"]) for e in of(result, "fund_lot_opened")] == [("50", True), ("26", False)]
    assert [(e["account"], e["size"], e["price"], e["realized_pnl"]) for e in of(result, "adl")] == [
        ("bayc_short", "6", "90", "60")]
    assert fund(result)["final"] == "26"


def test_a_fund_the_size_of_the_crash_ends_at_zero_without_adl():
    # 96: pays 24 (-> 72); BAYC 60 <= 72, budget 72: limit 90 - 72/6 = 78, sold there: pays 72.
    result = fund_of(96)
    assert [e["available"] for e in of(result, "fund_lot_opened")] == ["96", "72"]
    assert of(result, "fund_order")[1]["limit"] == "78"
    assert result.summary()["counts"]["adl"] == 0
    assert fund(result) == {"initial": "96", "final": "0", "positions": {}}


# --- a spiral, and a manipulation ----------------------------------------------------------------


def spiral(*, deposits: dict[str, str] | None = None, extra_bid: str | None = None,
           seller: bool = True) -> RunResult:
    from decimal import Decimal
    sc = resolve_scenario("liquidation_spiral")
    if deposits:
        sc = attrs.evolve(sc, accounts=tuple(
            attrs.evolve(a, deposit=int(Decimal(deposits[a.id]) * 10**18)) if a.id in deposits else a
            for a in sc.accounts))
    if extra_bid:
        bid = sc.orders[0]
        sc = attrs.evolve(sc, orders=(*sc.orders, attrs.evolve(bid, price=int(Decimal(extra_bid) * 10**9))))
    if not seller:
        sc = attrs.evolve(sc, events=tuple(e for e in sc.events if e.type != "order"))
    result = run_scenario_sync(sc)
    assert result.violations == [], result.violations
    return result


def marks_after_warm_up(result: RunResult) -> list[str]:
    return [e["mark"] for e in of(result, "mark_computed")][4:]


def test_a_liquidation_spiral_each_sale_lowers_the_mark_that_liquidates_the_next():
    # Warm-up: mid (99 + 101)/2 = 100, basis 0. The seller takes 99 and 98: mid 98.75,
    # basis -1.25; price2 = 100 + (sum of the last 5 bases)/5, price1 = 100, the median
    # is price2: 99.75, 99.50, 99.25. a (long 1 at 100 with 5): equity 5 - 0.75 = 4.25
    # <= 0.045 x 99.25 = 4.46625, bankruptcy 95, sold at 96.5 (+1.5). Mid (95 + 101)/2
    # = 98: the last five bases 0, -1.25 x 3, -2 -> 98.85; -1.25 x 2, -2 x 3 -> 98.45:
    # b (5.8): 4.25 <= 4.43025, bankruptcy 94.2, sold at 95 (+0.8). Mid (93.5 + 101)/2
    # = 97.25 -> 98.15, 97.85: c (6.5):
    # 4.35 <= 4.40325, bankruptcy 93.5, sold at 93.5 (0 left). Mid 96.5 -> 96.65 at t=15.
    result = spiral()
    computed = {e["time"]: e for e in of(result, "mark_computed")}
    assert (computed[5]["impact_mid"], computed[8]["impact_mid"], computed[10]["impact_mid"],
            computed[12]["impact_mid"]) == ("98.75", "98", "97.25", "96.5")
    assert marks_after_warm_up(result) == [
        "99.75", "99.5", "99.25", "98.85", "98.45", "98.15", "97.85", "97.4", "97.1", "96.8", "96.65"]
    started = [(e["time"], e["account"], e["equity"], e["maintenance_margin"], e["bankruptcy_prices"]["PUNK"])
               for e in of(result, "liquidation_started")]
    assert started == [(7, "a", "4.25", "4.46625", "95"), (9, "b", "4.25", "4.43025", "94.2"),
                       (11, "c", "4.35", "4.40325", "93.5")]
    assert [(e["account"], e["price"]) for e in of(result, "liquidation_fill")] == [
        ("a", "96.5"), ("b", "95"), ("c", "93.5")]
    assert [(e["account"], e["amount"]) for e in of(result, "fund_surplus")] == [("a", "1.5"), ("b", "0.8")]
    assert result.summary()["counts"]["bankruptcies"] == 0
    assert fund(result)["final"] == "12.3"


def test_without_a_liquidation_the_mark_stops_at_98_75_and_b_and_c_survive():
    # a with 20 is never liquidated: the mid stays 98.75 and the mark walks down to it;
    # there b's equity is 5.8 - 1.25 = 4.55 > 0.045 x 98.75 = 4.44375.
    result = spiral(deposits={"a": "20"})
    assert marks_after_warm_up(result)[-1] == "98.75"
    assert of(result, "liquidation_started") == []
    # Exact, in the sandbox's units (wei; price 1e-9; size 1e-9; rates in ppm).
    sc = resolve_scenario("liquidation_spiral")
    b, punk = next(a for a in sc.accounts if a.id == "b"), sc.markets[0]
    mark = 98_750_000_000
    equity = b.deposit - 10**9 * (100 * 10**9 - mark)
    margin = 10**9 * mark * punk.maintenance_margin // 10**6
    assert (equity, margin) == (4_550_000_000_000_000_000, 4_443_750_000_000_000_000)


def test_without_b_liquidation_the_mark_stops_at_98_and_c_survives():
    # a's sale takes the mid to 98; c's equity there is 6.5 - 2 = 4.5 > 0.045 x 98 = 4.41.
    result = spiral(deposits={"b": "20"})
    assert marks_after_warm_up(result)[-1] == "98"
    assert [e["account"] for e in of(result, "liquidation_started")] == ["a"]
    sc = resolve_scenario("liquidation_spiral")
    c, punk = next(a for a in sc.accounts if a.id == "c"), sc.markets[0]
    mark = 98 * 10**9
    equity = c.deposit - 10**9 * (100 * 10**9 - mark)
    margin = 10**9 * mark * punk.maintenance_margin // 10**6
    assert (equity, margin) == (4_500_000_000_000_000_000, 4_410_000_000_000_000_000)


def test_the_spiral_is_set_up_as_its_description_says():
    # Deposits 5, 5.8, 6.5 on a notional of 100 (20x, 17.2x, 15.4x); rates 5% / 4.5%;
    # one contract bid at each of 99 .. 89, 50 at 80, 50 offered at 101; impact notional 50,
    # price2 over the last 5 bases; the seller sells 2 at t=4.5; the index is always 100.
    sc = resolve_scenario("liquidation_spiral")
    assert {a.id: a.deposit for a in sc.accounts if a.id in ("a", "b", "c")} == {
        "a": 5 * 10**18, "b": 58 * 10**17, "c": 65 * 10**17}
    punk = sc.markets[0]
    assert (punk.initial_margin, punk.maintenance_margin) == (50_000, 45_000)
    book = [(o.side, o.price // 10**7, o.size // 10**9) for o in sc.orders]
    assert book == [("buy", p, 1) for p in (9900, 9800, 9650, 9500, 9350, 9200, 9050, 8900)] + [
        ("buy", 8000, 50), ("sell", 10100, 50)]
    assert (sc.policy.impact_notional, sc.policy.basis_window) == (50 * 10**18, 5)
    seller = [e for e in sc.events if e.type == "order"]
    assert [(e.at_ms, e.order.side, e.order.size) for e in seller] == [(4500, "sell", 2 * 10**9)]
    assert {e.price for e in sc.events if e.type == "index_price"} == {100 * 10**9}


def test_with_a_deeper_book_a_liquidation_does_not_move_the_mark_and_the_spiral_stops():
    # A second contract bid at 96.5: a's sale leaves the impact bid at 96.5, the mid at 98.75.
    result = spiral(extra_bid="96.5")
    assert [e["account"] for e in of(result, "liquidation_started")] == ["a"]
    assert marks_after_warm_up(result)[-1] == "98.75"


def test_without_the_seller_nobody_is_liquidated():
    result = spiral(seller=False)
    assert set(marks_after_warm_up(result)) == {"100"}
    assert of(result, "liquidation_started") == []


def test_an_oracle_manipulation_drains_the_fund_into_the_attackers_long():
    # Pump 10 -> 30: the short's equity 100 - 100 x 20 = -1900, bankruptcy 10 + 100/100 =
    # 11. The fund accepts (loss at mark 100 x 19 = 1900 <= 2000); its limit is
    # min(band 33, budget 11 + 2000/100 = 31) = 31. It buys from attacker_long at 31:
    # pays 100 x 20 = 2000; attacker_long realizes 100 x 21 = 2100 and withdraws 2200.
    from actors.insurance_fund import band_limit_price

    result = run("oracle_manipulation")
    # The fund's 10% band alone would let it buy back the short at 30 x 1.1 = 33.
    assert band_limit_price(-100 * 10**9, 30 * 10**9, 100_000, 10**7) == 33 * 10**9
    assert [e["price"] for e in of(result, "mark_price")] == ["30", "30", "10"]
    started = of(result, "liquidation_started")[0]
    assert (started["account"], started["equity"], started["bankruptcy_prices"]) == (
        "attacker_short", "-1900", {"MNGO": "11"})
    opened = of(result, "fund_lot_opened")[0]
    assert (opened["loss_at_mark"], opened["available"], opened["accepted"]) == ("1900", "2000", True)
    assert [(e["time"], e["limit"]) for e in of(result, "fund_order")] == [(1, "31"), (4, "31")]
    assert [(e["time"], e["amount"], e["reason"]) for e in of(result, "withdraw_rejected")] == [
        (2, "2000", "more than the balance")]
    assert [(e["time"], e["amount"]) for e in of(result, "withdraw")] == [(5, "2200")]
    assert [(e["amount"], e["balance"]) for e in of(result, "fund_payout")] == [("2000", "0")]
    assert account(result, "attacker_long") == {"deposited": "100", "withdrawn": "2200", "balance": "0",
                                                "positions": {}}
    assert account(result, "attacker_short") == {"deposited": "100", "withdrawn": "0", "balance": "0",
                                                 "positions": {}}
    assert fund(result) == {"initial": "2000", "final": "0", "positions": {}}
    assert result.summary()["counts"]["adl"] == 0


def test_a_fund_too_small_to_accept_the_pumped_lot_hands_it_to_adl_and_the_attack_gains_nothing():
    # 1900 > 1000: ADL at 11 against attacker_long: +100, the 100 the short lost.
    sc = resolve_scenario("oracle_manipulation")
    result = run_scenario_sync(attrs.evolve(sc, fund_balance=1000 * 10**18))
    assert result.violations == []
    assert [(e["account"], e["price"], e["realized_pnl"]) for e in of(result, "adl")] == [
        ("attacker_long", "11", "100")]
    assert account(result, "attacker_long")["balance"] == "200"
    assert account(result, "attacker_long")["withdrawn"] == "0"
    assert fund(result)["final"] == "1000"


def test_an_oracle_band_refuses_the_pump():
    result = run("oracle_manipulation", oracle_band=250_000, oracle_staleness_ms=60_000)
    assert [(e["time"], e["reason"]) for e in of(result, "oracle_price_rejected")] == [
        (1, "outside_band"), (4, "outside_band")]
    assert of(result, "liquidation_started") == []
    assert fund(result)["final"] == "2000"


# --- the library's reference page -------------------------------------------------------------


def test_the_library_page_has_a_row_for_every_bundled_scenario_and_no_other():
    import re
    from pathlib import Path

    page = Path(__file__).resolve().parents[1] / "docs" / "reference" / "scenario-library.md"
    rows = re.findall(r"^\| `([^`]+)` \|", page.read_text(encoding="utf-8"), flags=re.MULTILINE)
    assert sorted(rows) == LIBRARY  # each scenario once, by its own name (no `race_*`)


@pytest.mark.parametrize(("name", "ids"), [
    ("thin_book_crash", {"p", "q"}), ("funding_drain", {"long"}), ("hedged_cross_margin", {"h"}),
    ("clearance_fee", {"carol"}), ("fill_above_bankruptcy", {"trader"}),
])
def test_the_accounts_a_description_says_start_below_initial_margin_do(name, ids):
    # Equity at the starting marks against the initial margin of the positions (10%, or 1% for BTC):
    # p, q 16 < 20; long 60 < 100; h 11.90 < 10 + 10; carol 8 < 10; trader 100 < 140.
    sc = resolve_scenario(name)
    markets = {m.symbol: m for m in sc.markets}
    below = set()
    for acct in sc.accounts:
        if not acct.positions:
            continue
        equity = acct.deposit + sum(p.size * (markets[p.market].mark_price - p.entry_price) for p in acct.positions)
        margin = sum(abs(p.size) * markets[p.market].mark_price * markets[p.market].initial_margin // 10**6
                     for p in acct.positions)
        assert {markets[p.market].initial_margin for p in acct.positions} <= {100_000, 10_000}
        if equity < margin:
            below.add(acct.id)
    assert ids <= below
