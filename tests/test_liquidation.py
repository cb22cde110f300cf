"""The textbook liquidation cases, with numbers computed by hand in the comments."""

from __future__ import annotations

from sandbox import resolve_scenario, run_scenario_sync

from decimal import Decimal

from .helpers import ONE_SHOT, one_shot, account, balance, event, fund, market, order, run

# 100x leverage: 1% initial, 0.5% maintenance, prices to the cent.
BITMEX = market("XBT", mark="100", im="0.01", mm="0.005", extra='tick_size = "0.01"')


def test_surplus_goes_to_the_fund():
    # alice: long 1 at 100 with 10. Mark 94: equity 4 <= MM 4.7 -> liquidated.
    # Bankruptcy price (100 - 10) / 1 = 90; the order sells at the bid, 93:
    # realized -7, balance 3 -> the fund (50 -> 53); alice ends at 0.
    result = run_scenario_sync(resolve_scenario("textbook"))
    s = result.summary()
    assert result.ok
    assert s["insurance_fund"]["final"] == "53"
    assert s["accounts"]["alice"] == {"deposited": "10", "withdrawn": "0", "balance": "0", "positions": {}}
    assert s["accounts"]["mm"]["positions"] == {"PUNK": {"size": "1", "entry_value": "93"}}
    assert s["counts"] == {"liquidations": 1, "bankruptcies": 0, "fund_takeovers": 0, "adl": 0}
    started = result.log.of_kind("liquidation_started")[0]
    assert started["bankruptcy_prices"] == {"PUNK": "90"}


def test_bitmex_fill_above_bankruptcy_price_feeds_the_fund():
    # Long 1 at 100 with 1: bankruptcy 99. Mark 99.40: equity 0.40 <= MM 0.497.
    # Filled at 99.25: 0.25 better than bankruptcy -> fund 0 -> 0.25.
    result = run(
        BITMEX
        + account("a", "1", ("XBT", "1", "100"))
        + account("b", "10", ("XBT", "-1", "100"))
        + account("mm", "1000")
        + order("mm", "XBT", "buy", "99.25", "1")
        + event(1, "mark_price", market="XBT", price="99.4")
    )
    assert fund(result) == "0.25"
    assert balance(result, "a") == "0"
    assert result.summary()["counts"]["bankruptcies"] == 0


def test_bitmex_fill_below_bankruptcy_price_is_paid_by_the_fund_without_adl():
    # The same account, but the only bid is 98.75, below bankruptcy (99): the
    # liquidation order cannot fill, the fund takes the long over at 99 and
    # sells it with a limit of 99 - 0.25/1 = 98.75: it fills, the fund pays
    # 0.25 and is back at 0, and nobody is deleveraged.
    result = run(
        BITMEX
        + account("a", "1", ("XBT", "1", "100"))
        + account("b", "10", ("XBT", "-1", "100"))
        + account("mm", "1000")
        + order("mm", "XBT", "buy", "98.75", "1")
        + event(1, "mark_price", market="XBT", price="99.4"),
        fund="0.25",
    )
    s = result.summary()
    assert s["insurance_fund"]["final"] == "0"
    assert s["insurance_fund"]["positions"] == {}
    assert s["counts"] == {"liquidations": 1, "bankruptcies": 1, "fund_takeovers": 1, "adl": 0}
    assert s["accounts"]["mm"]["positions"] == {"XBT": {"size": "1", "entry_value": "98.75"}}
    takeover = result.log.of_kind("fund_takeover")[0]
    assert (takeover["size"], takeover["price"]) == ("1", "99")
    assert result.log.of_kind("fund_order")[0]["limit"] == "98.75"


BYBIT = market("BTC", mark="7000", im="0.01", mm="0.005")


def _bybit(bid: str, fund_balance: str):
    # Long 1 at 7000 with 50: bankruptcy price 6950. Mark 6975: equity 25 <= MM 34.875.
    return run(
        BYBIT
        + account("a", "50", ("BTC", "1", "7000"))
        + account("b", "1000", ("BTC", "-1", "7000"))
        + account("mm", "100000")
        + order("mm", "BTC", "buy", bid, "1")
        + event(1, "mark_price", market="BTC", price="6975"),
        fund=fund_balance,
    )


def test_bybit_fill_at_6980_puts_30_into_the_fund():
    assert fund(_bybit("6980", "0")) == "30"


def test_bybit_fill_at_6930_takes_20_out_of_the_fund():
    result = _bybit("6930", "100")
    assert fund(result) == "80"
    assert result.log.of_kind("fund_payout")[0]["amount"] == "20"


def test_gap_through_the_bankruptcy_price_deleverages_at_it():
    # dYdX's example: B shorts 500 at 1 with 100; the price jumps to 2 in one
    # tick, B's equity is 100 - 500 = -400. B's bankruptcy price is
    # 1 + 100/500 = 1.20. The fund (empty) takes the short over at 1.20 and can
    # buy nothing back without a loss, so A, the only long, is deleveraged at
    # 1.20: A realizes +100. B ends at 0; the fund is untouched.
    result = run(
        market("DOGE", mark="1", extra='tick_size = "0.01"')
        + account("A", "100", ("DOGE", "500", "1"))
        + account("B", "100", ("DOGE", "-500", "1"))
        + event(1, "mark_price", market="DOGE", price="2")
    )
    s = result.summary()
    assert result.log.of_kind("liquidation_started")[0]["equity"] == "-400"
    assert result.log.of_kind("liquidation_started")[0]["bankruptcy_prices"] == {"DOGE": "1.2"}
    assert s["accounts"]["B"]["balance"] == "0"
    assert s["accounts"]["A"] == {"deposited": "100", "withdrawn": "0", "balance": "200", "positions": {}}
    assert s["insurance_fund"]["final"] == "0"
    assert s["counts"] == {"liquidations": 1, "bankruptcies": 1, "fund_takeovers": 1, "adl": 1}
    assert s["markets"]["DOGE"]["open_interest_long"] == s["markets"]["DOGE"]["open_interest_short"] == "0"


def test_fund_too_small_so_adl_fires():
    # a: long 2 at 100 with 10 -> bankruptcy 95. A gap to 90: equity -10.
    # Best bid 94 is below 95: no fill. The fund (1) may lose at most 1 on 2,
    # so its limit is 95 - 0.5 = 94.50; the bid at 94 is below that. Both
    # contracts are deleveraged at 95 against b (short 2 at 100: +10).
    result = run(
        market(extra='tick_size = "0.01"')
        + account("a", "10", ("PUNK", "2", "100"))
        + account("b", "100", ("PUNK", "-2", "100"))
        + account("mm", "1000")
        + order("mm", "PUNK", "buy", "94", "1")
        + event(1, "mark_price", market="PUNK", price="90"),
        fund="1",
    )
    s = result.summary()
    assert result.log.of_kind("fund_order")[0]["limit"] == "94.5"
    assert s["counts"]["adl"] == 1
    assert s["insurance_fund"]["final"] == "1"
    assert s["accounts"]["b"] == {"deposited": "100", "withdrawn": "0", "balance": "110", "positions": {}}
    adl = result.log.of_kind("adl")[0]
    assert (adl["account"], adl["size"], adl["price"]) == ("b", "2", "95")


def test_adl_picks_the_highest_ranked_counterparty():
    # Bankrupt long a: 4 at 105 with 50; mark gaps to 90: equity -10,
    # bankruptcy price (420 - 50) / 4 = 92.5. The fund (1.5) sells with limit
    # ceil-to-tick(92.5 - 1.5/4) = 92.13: 3 fill at the bid 92.13 (loss 1.11),
    # 1 is left for ADL. Ranks at mark 90, PnL% x mark value / equity:
    #   s1 short 1 at 100, equity 60:  0.1 x 90/60      = 0.15
    #   s2 short 1 at 100, equity 20:  0.1 x 90/20      = 0.45   <- highest
    #   s3 short 2 at 110, equity 140: 40/220 x 180/140 = 0.2338
    result = run(
        market(extra='tick_size = "0.01"')
        + account("a", "50", ("PUNK", "4", "105"))
        + account("s1", "50", ("PUNK", "-1", "100"))
        + account("s2", "10", ("PUNK", "-1", "100"))
        + account("s3", "100", ("PUNK", "-2", "110"))
        + account("mm", "1000")
        + order("mm", "PUNK", "buy", "92.13", "3")
        + event(1, "mark_price", market="PUNK", price="90")
        + ONE_SHOT,
        fund="1.5",
    )
    s = result.summary()
    assert result.log.of_kind("adl_ranking")[0]["ranking"] == ["s2", "s3", "s1"]
    adl = result.log.of_kind("adl")
    assert [(e["account"], e["size"], e["price"]) for e in adl] == [("s2", "1", "92.5")]
    assert s["accounts"]["s2"] == {"deposited": "10", "withdrawn": "0", "balance": "17.5", "positions": {}}
    assert s["accounts"]["s1"]["positions"] == {"PUNK": {"size": "-1", "entry_value": "-100"}}
    assert s["accounts"]["s3"]["positions"] == {"PUNK": {"size": "-2", "entry_value": "-220"}}
    assert s["insurance_fund"]["final"] == "0.39"


def test_surplus_in_one_market_pays_a_bankruptcy_in_another():
    # The demo under the one-shot fund policy: alice's PUNK liquidation leaves 3
    # (fund 5 -> 8); carol's BAYC bankruptcy then costs the fund 3 (one contract
    # bought at 59 against a bankruptcy price of 56); the last contract is
    # deleveraged against dave at once.
    result = run_scenario_sync(one_shot(resolve_scenario("demo")))
    assert result.ok
    payouts = [(e["kind"], e["amount"], e["balance"]) for e in result.log.of_kind("fund_surplus", "fund_payout")]
    assert payouts == [("fund_surplus", "3", "8"), ("fund_payout", "3", "5")]
    adl = result.log.of_kind("adl")
    assert [(e["account"], e["size"], e["price"]) for e in adl] == [("dave", "-1", "56")]
    s = result.summary()
    assert s["accounts"]["dave"]["balance"] == "16"
    assert s["counts"] == {"liquidations": 2, "bankruptcies": 1, "fund_takeovers": 1, "adl": 1}


def test_the_default_fund_accepts_what_it_covers_and_works_it_out_without_adl():
    # The demo under NFEX's rule: the fund (8 after alice's surplus) accepts
    # carol's 2 BAYC short at 56, which loses 2 x (58 - 56) = 4 at the mark; it
    # buys one at 59 at once (its band at mark 58 is 52.2-63.8, its budget
    # (8 + 112) / 2 = 60 stops it short of the 65 offer) and holds the other.
    # At t=3 the mark is 57 and a seller offers at 57: the fund buys it there.
    # Losses 3 + 1 = 4, fund 8 -> 4, and nobody is auto-deleveraged.
    result = run_scenario_sync(resolve_scenario("demo"))
    assert result.ok, result.violations
    opened = result.log.of_kind("fund_lot_opened")[0]
    assert (opened["size"], opened["loss_at_mark"], opened["available"], opened["accepted"]) == ("-2", "4", "8", True)
    assert [e["limit"] for e in result.log.of_kind("fund_order")] == ["60", "61"]
    held = result.log.of_kind("fund_inventory_held")[0]
    assert (held["size"], held["reserved"]) == ("-1", "5")
    payouts = [(e["kind"], e["amount"], e["balance"]) for e in result.log.of_kind("fund_surplus", "fund_payout")]
    assert payouts == [("fund_surplus", "3", "8"), ("fund_payout", "4", "4")]
    s = result.summary()
    assert s["counts"] == {"liquidations": 2, "bankruptcies": 1, "fund_takeovers": 1, "adl": 0}
    assert s["accounts"]["dave"]["positions"] == {"BAYC": {"size": "1", "entry_value": "50"}}
    assert s["insurance_fund"]["positions"] == {}


# h: long 1 PUNK at 100 and short 2 BAYC at 50, with 11.9; u: the same PUNK
# long alone, with 10; c1 and c2 hold the other sides.
HEDGED = (
    market("PUNK")
    + market("BAYC", mark="50")
    + account("h", "11.9", ("PUNK", "1", "100"), ("BAYC", "-2", "50"))
    + account("u", "10", ("PUNK", "1", "100"))
    + account("c1", "100", ("PUNK", "-2", "100"))
    + account("c2", "100", ("BAYC", "2", "50"))
)


def test_cross_margin_keeps_a_hedged_account_alive():
    # h: long 1 PUNK at 100 and short 2 BAYC at 50, with 11.9. u: the same PUNK
    # long alone, with 10. BAYC falls to 45 (h +10), then PUNK to 90 (-10).
    # h: equity 11.9 - 10 + 10 = 11.9 > MM 0.05 x (90 + 2 x 45) = 9  -> alive.
    # u: equity 10 - 10 = 0 <= MM 4.5                            -> liquidated.
    result = run(
        HEDGED
        + event(1, "mark_price", market="BAYC", price="45")
        + event(2, "mark_price", market="PUNK", price="90")
    )
    liquidated = [e["account"] for e in result.log.of_kind("liquidation_started")]
    assert liquidated == ["u"]
    s = result.summary()
    assert s["accounts"]["h"]["positions"] == {
        "BAYC": {"size": "-2", "entry_value": "-100"},
        "PUNK": {"size": "1", "entry_value": "100"},
    }


def test_hedge_is_liquidated_when_the_hedging_leg_moves_last():
    # The same accounts with only PUNK falling: h's equity is 11.9 - 10 = 1.9
    # <= MM 0.05 x (90 + 100) = 9.5: both go. h's equity 1.9 is split over its
    # positions by mark notional, 90 : 100 -> 0.9 and 1.0, so its bankruptcy
    # prices are PUNK 90 - 0.9/1 = 89.1 and BAYC 50 + 1.0/2 = 50.5; with no
    # book both are deleveraged there and h ends at exactly 0.
    result = run(
        HEDGED
        + event(1, "mark_price", market="PUNK", price="90")
    )
    assert sorted(e["account"] for e in result.log.of_kind("liquidation_started")) == ["h", "u"]
    started = {e["account"]: e for e in result.log.of_kind("liquidation_started")}
    assert started["h"]["equity"] == "1.9"
    assert started["h"]["bankruptcy_prices"] == {"BAYC": "50.5", "PUNK": "89.1"}
    assert balance(result, "h") == "0"


def test_a_realistic_snapshot_with_unequal_entry_prices_runs_and_conserves_money():
    # alice long 1 at 100, carol short 1 at 95: sizes net, costs do not. The
    # books hold -100 + 95 = -5 of unrealized PnL at any mark: the opening
    # imbalance, a constant of the conservation equation.
    result = run(
        market()
        + account("alice", "10", ("PUNK", "1", "100"))
        + account("carol", "10", ("PUNK", "-1", "95"))
        + account("mm", "1000")
        + order("mm", "PUNK", "buy", "92", "1")
        + event(1, "mark_price", market="PUNK", price="93")
    )
    s = result.summary()
    assert s["opening_imbalance"] == "-5"
    assert result.scenario.opening_imbalance == -5 * 10**18
    # alice (equity 10 - 7 = 3 <= MM 4.65) is liquidated at 92 and ends at 0.
    assert s["accounts"]["alice"]["balance"] == "0"
    from sandbox.testing import summary_conserves_money

    assert summary_conserves_money(s, "0")


# B short 5 PUNK at 100 with 10; the mark gaps to 110: equity 10 - 50 = -40, bankruptcy
# price 110 - 40/5 = 102. The fund (0) cannot accept a lot that loses 5 x 8 = 40 at the
# mark, so the 5 go to ADL at 102 against the longs. Lot size 1 keeps the numbers whole.
ADL_MARKET = market(extra='tick_size = "0.01"\nlot_size = "1"')


def test_adl_cancels_the_deleveraged_traders_open_orders_in_that_market():
    # A (long 5 at 100) has a resting sell of 5 at 200: it reduced A's position, so it
    # was never margin-checked; after ADL closes A, it would open a fresh short.
    result = run(
        ADL_MARKET
        + account("A", "100", ("PUNK", "5", "100"))
        + account("B", "10", ("PUNK", "-5", "100"))
        + order("A", "PUNK", "sell", "200", "5", id="take-profit")
        + event(1, "mark_price", market="PUNK", price="110")
    )
    adl = result.log.of_kind("adl")
    assert [(e["account"], e["size"], e["price"]) for e in adl] == [("A", "-5", "102")]
    assert [(e["account"], e["market"]) for e in result.log.of_kind("adl_orders_cancelled")] == [("A", "PUNK")]
    assert [e["order_id"] for e in result.log.of_kind("order_cancelled")] == ["A#take-profit"]
    assert result.runtime["clearing"].accounts["A"].orders == {}
    assert result.summary()["accounts"]["A"] == {
        "deposited": "100", "withdrawn": "0", "balance": "110", "positions": {}}


def test_adl_deleverages_a_thin_counterparty_only_as_far_as_its_balance_pays():
    # A snapshot: A1 is long 5 PUNK at 125 with only 50 of balance, kept healthy by a
    # BAYC short that is 500 up. At mark 110 the ranks (PnL% / leverage, both losing)
    # are A1 -0.12 / (550/475) = -0.104 and A2 (long 5 at 130 with 1000) -0.154 /
    # (550/900) = -0.252: A1 first. At the ADL price 102 A1 loses 23 a contract: its
    # 50 pays for 2 (balance 4); A2 gives the other 3 (-28 each: 916).
    result = run(
        ADL_MARKET + market("BAYC", mark="50", extra='tick_size = "0.01"\nlot_size = "1"')
        + account("A1", "50", ("PUNK", "5", "125"), ("BAYC", "-10", "100"))
        + account("A2", "1000", ("PUNK", "5", "130"))
        + account("B", "10", ("PUNK", "-5", "100"))
        + account("C", "1000", ("PUNK", "-5", "100"))
        + account("D", "1000", ("BAYC", "10", "100"))
        + event(1, "mark_price", market="PUNK", price="110")
    )
    assert result.log.of_kind("adl_ranking")[0]["ranking"] == ["A1", "A2"]
    adl = result.log.of_kind("adl")
    assert [(e["account"], e["size"], e["price"], e["balance"]) for e in adl] == [
        ("A1", "-2", "102", "4"), ("A2", "-3", "102", "916")]
    s = result.summary()
    assert s["accounts"]["A1"]["positions"]["PUNK"] == {"size": "3", "entry_value": "375"}
    assert s["accounts"]["B"]["balance"] == "0"
    assert all(Decimal(a["balance"]) >= 0 for a in s["accounts"].values())


def test_an_order_that_only_reduces_is_checked_at_its_own_price():
    # a: long 1 at 100 with 2 (maintenance 1%). A sell of 1 at 97 would realize -3:
    # more than the balance, refused. At 98.50 it realizes -1.50 plus a taker fee of
    # 98.50 x 0.15% = 0.14775: 0.35225 is left, accepted.
    result = run(
        market(mm="0.01", extra='taker_fee = "0.0015"\nmaker_fee = "0.0015"\ntick_size = "0.01"')
        + account("a", "2", ("PUNK", "1", "100"))
        + account("b", "100", ("PUNK", "-1", "100"))
        + account("mm", "1000")
        + order("mm", "PUNK", "buy", "98.5", "1")
        + event(1, "order", account="a", market="PUNK", side="sell", price="97", size="1", tif="ioc")
        + event(2, "order", account="a", market="PUNK", side="sell", price="98.5", size="1", tif="ioc")
    )
    rejected = result.log.of_kind("order_rejected")
    assert [(e["time"], e["reason"], e["realized_pnl"], e["fee"]) for e in rejected] == [
        (1, "its realized loss and fee exceed the balance", "-3", "0.1455")]
    assert result.summary()["accounts"]["a"]["balance"] == "0.35225"


STUB = (market(mark="90", extra='tick_size = "0.01"')
        + account("a", "10", ("PUNK", "1", "100")) + account("b", "100", ("PUNK", "-1", "100"))
        + account("mm", "1000") + order("mm", "PUNK", "buy", "1", "1")
        + event(1, "mark_price", market="PUNK", price="85"))


def test_the_fund_does_not_sell_into_a_stub_bid_far_below_the_mark():
    # a (long 1 at 100 with 10) has equity 0 at the opening mark 90: liquidated at once,
    # bankruptcy price 90. A rich fund (1000) accepts the lot, but its band keeps it from
    # selling below 90 x 0.9 = 81, and after the mark falls to 85, below 76.50: the stub
    # bid at 1 is left alone and the fund holds the contract.
    result = run(STUB, fund="1000")
    assert [e["limit"] for e in result.log.of_kind("fund_order")] == ["81", "76.5"]
    assert result.log.of_kind("trade") == []
    assert result.summary()["insurance_fund"]["positions"] == {"PUNK": {"size": "1", "entry_value": "90"}}


def test_under_the_one_shot_policy_the_band_sends_the_fund_to_adl_instead_of_the_stub():
    result = run(STUB + ONE_SHOT, fund="1000")
    assert result.log.of_kind("trade") == []
    assert [(e["account"], e["size"], e["price"]) for e in result.log.of_kind("adl")] == [("b", "1", "90")]
    assert result.summary()["insurance_fund"]["final"] == "1000"
