"""Policies and oracle trouble: validation, each rule on its own, and the invariants kept honest."""

from __future__ import annotations

import attrs
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from actors import LiquidationEngine
from actors.adl import adl_rank
from actors.oracle import median_mark
from sandbox import ScenarioError, load_scenario, resolve_scenario, run_scenario_sync
from sandbox._exchange.run import book_of
from sandbox._tools.explore import explore
from sandbox.messages import AdlCandidate, PositionView
from sandbox._core.money import parse_units
from sandbox._core.specs import MarketSpec
from sandbox.testing import scenarios

from .helpers import account, event, market, order, run, scenario
from .test_invariants import _assert_all_hold
from .test_scenario_validation import GOOD, sandbox_cli, write

P = 10**9  # one price or size unit of a whole ETH or contract
E = 10**18  # one ETH in wei


# --- validation ---------------------------------------------------------------------


POLICY_CASES = [
    # ([policy] body, key, problem)
    ('colour = "red"', "policy.colour", "unknown key"),
    ('liquidation = "half"', "policy.liquidation", "must be one of full, partial"),
    ('liquidation = "partial"\npartial_fraction = "1.5"', "policy.partial_fraction", "must be at most 1"),
    ('liquidation = "partial"\npartial_fraction = "0"', "policy.partial_fraction", "greater than 0"),
    ('partial_threshold = "100"', "policy.partial_threshold", "only applies with liquidation = 'partial'"),
    ('liquidation_fee = "0.2"', "policy.liquidation_fee", "must be at most"),
    ('adl_ranking = "random"', "policy.adl_ranking", "must be one of"),
    ('fund_inventory = "sell"', "policy.fund_inventory", "must be one of work, close, keep"),
    ('fund_price_band = "1"', "policy.fund_price_band", "must be at most just below 1"),
    ('bankruptcy_split = "notional"', "policy.bankruptcy_split", "must be one of loss, maintenance_margin"),
    ('fee_to_fund = "2"', "policy.fee_to_fund", "must be at most 1"),
    ("funding_divisor = 0", "policy.funding_divisor", "must be between 1 and 10000"),
    ('funding_interval = "0"', "policy.funding_interval", "greater than 0"),
    ('oracle_band = "0.2"', "policy.oracle_band", "needs oracle_staleness"),
    ('stale_liquidations = "pause"', "policy.stale_liquidations", "only applies with an oracle_staleness"),
    ('oracle_staleness = "-1"', "policy.oracle_staleness", "must not be negative"),
    ("basis_window = 3", "policy.basis_window", "only applies with mark_price = 'median'"),
    ('mark_price = "median"', "markets[0].index_price", "is required with policy.mark_price = 'median'"),
]


@pytest.mark.parametrize(("body", "key", "problem"), POLICY_CASES)
def test_a_bad_policy_is_named(tmp_path, body, key, problem):
    path = write(tmp_path, GOOD + "\n[policy]\n" + body + "\n")
    with pytest.raises(ScenarioError) as info:
        load_scenario(path)
    assert (info.value.key, problem in info.value.problem) == (key, True), info.value


EVENT_CASES = [
    ('type = "mark_price"\nmarket = "PUNK"\nprice = "94"', 'type = "oracle_price"\nmarket = "PUNK"\nprice = "x"',
     "events[0].price", "expected a decimal number"),
    ('type = "mark_price"\nmarket = "PUNK"\nprice = "94"', 'type = "index_price"\nmarket = "PUNK"\nprice = "0"',
     "events[0].price", "must be greater than 0"),
    ('type = "mark_price"\nmarket = "PUNK"\nprice = "94"', 'type = "index_price"\nmarket = "PUNK"',
     "events[0].price", "is required"),
    ('mark_price = "100"', 'mark_price = "100"\nindex_price = "-1"', "markets[0].index_price", "must not be negative"),
]


@pytest.mark.parametrize(("old", "new", "key", "problem"), EVENT_CASES)
def test_a_bad_oracle_or_index_event_is_named(tmp_path, old, new, key, problem):
    assert old in GOOD
    with pytest.raises(ScenarioError) as info:
        load_scenario(write(tmp_path, GOOD.replace(old, new, 1)))
    assert (info.value.key, problem in info.value.problem) == (key, True), info.value


def test_mark_price_events_need_the_scripted_mark(tmp_path):
    text = GOOD.replace('mark_price = "100"', 'mark_price = "100"\nindex_price = "100"') + '\n[policy]\nmark_price = "median"\n'
    with pytest.raises(ScenarioError) as info:
        load_scenario(write(tmp_path, text))
    assert info.value.key == "events[0].type" and "policy.mark_price = 'scripted'" in info.value.problem


def test_an_oracle_price_may_be_missing_zero_or_negative(tmp_path):
    text = GOOD.replace('type = "mark_price"\nmarket = "PUNK"\nprice = "94"', 'type = "oracle_price"\nmarket = "PUNK"')
    text += '\n[[events]]\nat = 2\ntype = "oracle_price"\nmarket = "PUNK"\nprice = "-3"\n'
    sc = load_scenario(write(tmp_path, text))
    assert [(e.type, e.price) for e in sc.events] == [("oracle_price", None), ("oracle_price", -3 * P)]


def test_cli_refuses_a_bad_policy_with_exit_2(tmp_path):
    path = write(tmp_path, GOOD + '\n[policy]\nliquidation = "half"\n')
    proc = sandbox_cli("run", str(path))
    assert proc.returncode == 2
    assert proc.stdout == "" and "policy.liquidation" in proc.stderr and "Traceback" not in proc.stderr


def test_the_default_policy_is_nfex():
    policy = resolve_scenario("demo").policy
    assert (policy.liquidation, policy.liquidation_fee, policy.adl_ranking, policy.fund_inventory,
            policy.fund_price_band, policy.bankruptcy_split,
            policy.mark_price, policy.fee_to_fund, policy.oracle_band, policy.oracle_staleness_ms) == (
        "full", 0, "pnl_x_leverage", "work", 100_000, "loss", "scripted", 0, 0, 0)


# --- oracle trouble ----------------------------------------------------------------------

ALICE = (
    market(extra='tick_size = "0.01"')
    + account("alice", "10", ("PUNK", "1", "100"))
    + account("bob", "100", ("PUNK", "-1", "100"))
    + account("mm", "1000")
    + order("mm", "PUNK", "buy", "93", "1")
)


def oracle_price(at: float, price: str | None = None) -> str:
    body = f'\n[[events]]\nat = {at}\ntype = "oracle_price"\nmarket = "PUNK"\n'
    return body + (f'price = "{price}"\n' if price is not None else "")


def test_missing_zero_and_negative_prices_are_rejected_and_logged():
    # Whatever the policy: none of these is a price. The mark stays 100 and
    # alice (who would be bankrupt at any of them) is untouched.
    result = run(ALICE + oracle_price(1) + oracle_price(2, "0") + oracle_price(3, "-5"))
    rejected = result.log.of_kind("oracle_price_rejected")
    assert [(e["reason"], e["price"], e["last_valid"]) for e in rejected] == [
        ("missing", None, "100"), ("zero", "0", "100"), ("negative", "-5", "100"),
    ]
    assert result.log.of_kind("mark_price") == []
    assert result.runtime["oracle"].marks["PUNK"] == 100 * P
    assert result.log.of_kind("liquidation_started") == []


def test_a_move_beyond_the_band_is_rejected_one_within_it_accepted():
    # Band 10% of the last valid price, 100: 89.99 is 10.01% away, 90 exactly 10%.
    policy = '\n[policy]\noracle_band = "0.1"\noracle_staleness = "60"\n'
    result = run(ALICE + policy + oracle_price(1, "89.99") + oracle_price(2, "90"))
    assert [(e["price"], e["reason"], e["band"]) for e in result.log.of_kind("oracle_price_rejected")] == [
        ("89.99", "outside_band", "0.1"),
    ]
    assert [e["price"] for e in result.log.of_kind("mark_price")] == ["90"]


def test_without_a_staleness_limit_nothing_is_ever_stale():
    # No limit (the default): an hour without a price pauses nothing.
    result = run(ALICE + oracle_price(3600) + event(3601, "mark_price", market="PUNK", price="94"))
    assert result.log.of_kind("oracle_stale", "liquidation_paused") == []
    assert result.log.of_kind("liquidation_started")[0]["time"] == 3601


STALE = (
    ALICE
    + '\n[policy]\noracle_staleness = "30"\n'
    + oracle_price(20)  # missing: the last valid price is still the one of t=0
    + oracle_price(31)  # missing, and 31 s > 30 s: PUNK is stale
)


def test_staleness_is_logged_once_and_a_fresh_price_ends_it():
    # Missing at t=20, 31 and 35: PUNK is stale from t=31 (31 s > 30 s without a
    # valid price), logged once. At t=40, 94 arrives: fresh again after 40 s, and
    # the liquidation that price causes (equity 4 <= 4.70) is not paused.
    result = run(STALE + oracle_price(35) + oracle_price(40, "94"))
    assert [(e["time"], e["since"], e["limit"]) for e in result.log.of_kind("oracle_stale")] == [(31, 0, 30)]
    assert result.log.of_kind("oracle_fresh")[0]["stale_for"] == 40
    assert result.log.of_kind("liquidation_paused") == []
    assert result.log.of_kind("liquidation_started")[0]["time"] == 40


def test_an_underwater_account_in_a_stale_market_waits_and_the_invariant_allows_it():
    # alice is long PUNK and BAYC with 15. PUNK is stale from t=31; at t=45 BAYC
    # (fresh) falls to 80: equity 15 - 20 = -5 <= MM: paused, and the quiet point
    # at t=45 accepts it because PUNK is stale. At t=50 PUNK is back: liquidated.
    body = (
        market(extra='tick_size = "0.01"') + market("BAYC", extra='tick_size = "0.01"')
        + account("alice", "15", ("PUNK", "1", "100"), ("BAYC", "1", "100"))
        + account("b1", "100", ("PUNK", "-1", "100")) + account("b2", "100", ("BAYC", "-1", "100"))
        + '\n[policy]\noracle_staleness = "30"\n'
        + oracle_price(31)
        + event(45, "mark_price", market="BAYC", price="80")
    )
    waiting = run(body)
    assert [(e["time"], e["markets"]) for e in waiting.log.of_kind("liquidation_paused")] == [(45, ["PUNK"])]
    assert list(waiting.runtime["liquidation_engine"].paused) == ["alice"]
    resumed = run(body + event(50, "mark_price", market="PUNK", price="100"))
    assert resumed.log.of_kind("liquidation_resumed")[0]["time"] == 50
    assert resumed.log.of_kind("liquidation_started")[0]["time"] == 50
    assert resumed.summary()["accounts"]["alice"]["balance"] == "0"


def test_stale_liquidations_continue_liquidates_at_the_last_price():
    body = (
        market(extra='tick_size = "0.01"') + market("BAYC", extra='tick_size = "0.01"')
        + account("alice", "15", ("PUNK", "1", "100"), ("BAYC", "1", "100"))
        + account("b1", "100", ("PUNK", "-1", "100")) + account("b2", "100", ("BAYC", "-1", "100"))
        + '\n[policy]\noracle_staleness = "30"\nstale_liquidations = "continue"\n'
        + oracle_price(31)
        + event(45, "mark_price", market="BAYC", price="80")
    )
    result = run(body)
    assert result.log.of_kind("oracle_stale")[0]["liquidations"] == "continue"
    assert result.log.of_kind("liquidation_started")[0]["time"] == 45


class AlwaysPausingEngine(LiquidationEngine):
    """Wrong: pauses every liquidation, stale or not."""

    def is_stale(self, market: str) -> bool:
        return True


class NeverResumingEngine(LiquidationEngine):
    """Wrong: pauses correctly but forgets to resume when prices return."""

    def on_MarkPriceUpdated(self, msg):
        paused, self.paused = self.paused, {}
        super().on_MarkPriceUpdated(msg)
        self.paused = paused


def _stale_then_fresh():
    return scenario(
        ALICE + '\n[policy]\noracle_staleness = "30"\n' + oracle_price(31) + oracle_price(40, "94")
    )


def test_the_invariant_catches_an_engine_that_pauses_a_fresh_market():
    # At t=40 PUNK's price is fresh; an engine that pauses anyway leaves alice
    # underwater, and the exemption (by the oracle's record, not the engine's say-so)
    # does not cover her.
    result = run_scenario_sync(_stale_then_fresh(), actors={"liquidation_engine": AlwaysPausingEngine})
    assert {v.invariant for v in result.violations} == {
        "every underwater account is liquidated", "a paused liquidation resumes when prices return",
    }


def test_the_invariant_catches_an_engine_that_never_resumes():
    # alice is paused at t=45 (PUNK stale); at t=50 PUNK is fresh again, but this
    # engine keeps her waiting: at the quiet point she is underwater in a fresh market.
    late = scenario(
        market(extra='tick_size = "0.01"') + market("BAYC", extra='tick_size = "0.01"')
        + account("alice", "15", ("PUNK", "1", "100"), ("BAYC", "1", "100"))
        + account("b1", "100", ("PUNK", "-1", "100")) + account("b2", "100", ("BAYC", "-1", "100"))
        + '\n[policy]\noracle_staleness = "30"\n'
        + oracle_price(31)
        + event(45, "mark_price", market="BAYC", price="80")
        + event(50, "mark_price", market="PUNK", price="100")
    )
    assert run_scenario_sync(late).ok
    result = run_scenario_sync(late, actors={"liquidation_engine": NeverResumingEngine})
    assert {v.invariant for v in result.violations} == {
        "every underwater account is liquidated", "a paused liquidation resumes when prices return",
        "no account outside a liquidation has negative equity",
    }


# --- the median mark, funding, fees ----------------------------------------------------------


def test_median_mark_is_the_middle_value_rounded_down_to_the_tick():
    assert median_mark(150 * P, 100 * P, 110 * P, P // 100) == 110 * P
    assert median_mark(100 * P, 101_234_567_890, 130 * P, P // 100) == 101_230_000_000
    assert median_mark(1, 2, 3, P // 100) == P // 100  # never below one tick


def test_impact_prices_average_over_levels_bid_down_ask_up():
    # Asks 101 x 1 and 103 x 1; 150 of notional buys 1 at 101 and 49/103 at 103:
    # average 150 / (1 + 49/103) = 15450 / 152 = 101.6447368421..., up: 101.644736843.
    # Bids 99 x 2: 150 / (150/99) = 99 exactly. 300 of notional: more than the bids hold.
    result = run(
        market() + account("mm", "1000")
        + order("mm", "PUNK", "sell", "101", "1") + order("mm", "PUNK", "sell", "103", "1")
        + order("mm", "PUNK", "buy", "99", "2")
    )
    book = book_of(result, "PUNK")
    assert book.impact_price("sell", 150 * E) == 101_644_736_843
    assert book.impact_price("buy", 150 * E) == 99 * P
    assert book.impact_price("buy", 300 * E) is None


def test_funding_rounds_against_both_traders_and_the_wei_left_goes_to_the_fund():
    # rate = (100.000000001 - 99.9997) / 99.9997 / 1 = 3.00001...e-6 -> 3 ppm.
    # One size unit (1e-9 contract) at 100.000000001: 100000000001 wei x 3e-6 =
    # 300000.000003 wei: the long pays 300001 (up), the short gets 300000 (down),
    # and the 1 wei left over goes to the fund.
    result = run(
        market(mark="100.000000001", extra='index_price = "99.9997"')
        + account("l", "1", ("PUNK", "0.000000001", "100"))
        + account("s", "1", ("PUNK", "-0.000000001", "100"))
        + '\n[policy]\nfunding_interval = "1"\nfunding_divisor = 1\n'
        + event(1, "index_price", market="PUNK", price="99.9997")
    )
    assert result.log.of_kind("funding_rate")[0]["rate"] == "0.000003"
    accounts = result.runtime["clearing"].accounts
    assert accounts["l"].balance == E - 300_001
    assert accounts["s"].balance == E + 300_000
    assert result.runtime["insurance_fund"].balance == 1
    assert result.log.of_kind("fund_funding_received")[0]["amount"] == "0.000000000000000001"


def test_funding_is_capped_and_a_negative_rate_makes_shorts_pay():
    # Mark 80 against an index of 100: premium -20%, / 24 = -0.8333%, capped at
    # -0.5%. Shorts pay 80 x 2 x 0.005 = 0.80; the long receives it.
    result = run(
        market(extra='index_price = "100"')
        + account("l", "100", ("PUNK", "2", "100")) + account("s", "100", ("PUNK", "-2", "100"))
        + '\n[policy]\nmax_funding_rate = "0.005"\n'
        + event(1, "mark_price", market="PUNK", price="80")
        + event(3600, "index_price", market="PUNK", price="100")
    )
    assert result.log.of_kind("funding_rate")[0]["rate"] == "-0.005"
    funding = [(e["account"], e["amount"]) for e in result.log.of_kind("funding")]
    assert funding == [("s", "-0.8"), ("l", "0.8")]


def test_fee_share_is_rounded_up_in_favour_of_the_fund():
    # One size unit bought at 10.000000001: notional 10000000001 wei, fee
    # ceil(10000000001 x 0.0015) = 15000001 wei each side. The fund's share,
    # 15000001 x 0.333334 = 5000010.333334, is rounded up: 5000011; the exchange
    # keeps 9999990 of each fee.
    result = run(
        market("AZUKI", mark="10", extra='maker_fee = "0.0015"\ntaker_fee = "0.0015"')
        + account("t", "100") + account("mm", "1000")
        + order("mm", "AZUKI", "sell", "10.000000001", "0.000000001")
        + '\n[policy]\nfee_to_fund = "0.333334"\n'
        + event(1, "order", account="t", market="AZUKI", side="buy", price="10.000000001", size="0.000000001")
    )
    shares = [parse_units(e["amount"], 18) for e in result.log.of_kind("fund_fee_income")]
    assert shares == [5_000_011, 5_000_011]
    assert result.runtime["clearing"].fees == 2 * 9_999_990
    assert result.runtime["insurance_fund"].balance == 2 * 5_000_011


# --- ADL ranking formulas ------------------------------------------------------------------


def test_adl_rankings_by_formula():
    # Short 1 at 105, balance 50, mark 84: PnL 21, PnL% 0.2, equity 71, MM 4.2.
    spec = {"PUNK": MarketSpec("PUNK", 100 * P, 100_000, 50_000)}
    c = AdlCandidate("s1", 50 * E, (PositionView("PUNK", -P, -105 * E),))
    marks = {"PUNK": 84 * P}
    from fractions import Fraction

    assert adl_rank(c, "PUNK", marks) == Fraction(1, 5) * Fraction(84, 71)
    assert adl_rank(c, "PUNK", marks, "pnl_pct") == Fraction(1, 5)
    assert adl_rank(c, "PUNK", marks, "pnl_x_margin_ratio", spec) == Fraction(1, 5) * Fraction(42, 710)


# --- partial liquidation and the liquidation lock ------------------------------------------------


def test_a_position_at_or_below_the_threshold_is_closed_in_full():
    # Threshold 200: long 2 at mark 94 is 188 of notional: one full order.
    result = run(
        market(extra='tick_size = "0.01"')
        + account("a", "20", ("PUNK", "2", "100")) + account("b", "100", ("PUNK", "-2", "100"))
        + account("mm", "1000") + order("mm", "PUNK", "buy", "93", "2")
        + '\n[policy]\nliquidation = "partial"\npartial_threshold = "200"\n'
        + event(1, "mark_price", market="PUNK", price="94")
    )
    started = result.log.of_kind("liquidation_started")[0]
    assert "closing" not in started
    assert result.summary()["accounts"]["a"]["balance"] == "0"


def test_clearance_fee_is_paid_per_slice_before_the_engine_judges_again():
    # whale_in_slices with a 1% fee: slice 1 sells 20 at 92 = 1840 of notional:
    # fee 18.40, balance 1000 - 160 - 18.40 = 821.60; at 94 equity 821.60 - 480 =
    # 341.60 <= 376: liquidated again, in full (bankruptcy 94 - 341.60/80 = 89.73).
    sc = resolve_scenario("whale_in_slices")
    result = run_scenario_sync(attrs.evolve(sc, policy=attrs.evolve(sc.policy, liquidation_fee=10_000)))
    assert result.ok
    fees = result.log.of_kind("clearance_fee")
    assert (fees[0]["amount"], fees[0]["balance"]) == ("18.4", "821.6")
    second = result.log.of_kind("liquidation_started")[1]
    assert (second["equity"], second["bankruptcy_prices"]) == ("341.6", {"PUNK": "89.73"})


# --- every policy, every interleaving -----------------------------------------------------


POLICY_SCENARIOS = ["whale_in_slices", "funding_drain", "fee_income", "clearance_fee", "pump_against_fund",
                    "oracle_stale", "mark_median_spoof"]


@pytest.mark.parametrize("name", POLICY_SCENARIOS)
def test_policy_scenarios_keep_every_invariant_under_latency_and_any_interleaving(name):
    # With up to 10 ms per message, money in flight (funding, fees, clearance fees)
    # must still add up after every single delivery.
    sc = attrs.evolve(resolve_scenario(name), latency_ms=(0, 10))
    result = explore(sc, examples=60, database=None, seed=0)
    assert result.finding is None, result.finding and result.finding.failure.summary


@settings(max_examples=40)
@given(scenarios(policies=True), st.integers(0, 2**32))
def test_invariants_hold_in_random_scenarios_under_random_policies(sc, seed):
    _assert_all_hold(run_scenario_sync(sc, seed=seed))


def test_the_documented_policy_table_is_valid_and_says_the_defaults(tmp_path):
    # The [policy] table of docs/reference/scenario-format.md, as written (comments
    # left out by TOML), is accepted and is exactly the default policy.
    from pathlib import Path

    readme = (Path(__file__).parent.parent / "docs" / "reference" / "scenario-format.md").read_text()
    block = readme.split("[policy]                     # optional", 1)[1].split("```", 1)[0]
    sc = load_scenario(write(tmp_path, GOOD + "\n[policy]\n" + block.split("\n", 1)[1]))
    assert sc.policy == resolve_scenario("demo").policy
