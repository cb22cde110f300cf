"""``sandbox check-log``: good logs pass, and each kind of damage is reported at its line."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any, Callable

import attrs
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from actors import InsuranceFund, LiquidationEngine
from sandbox import bundled_scenarios, resolve_scenario, run_scenario_sync
from sandbox._tools.checklog import LogReport, check_lines
from sandbox._core.eventlog import EventLog
from sandbox._scenario.parse import PRESETS, _parse_policy
from sandbox.testing import scenarios

from .helpers import one_shot, account, event, market, order, scenario


def lines_of(events: list[dict[str, Any]]) -> list[bytes]:
    return [(EventLog.dumps(e) + "\n").encode() for e in events]


def demo_events() -> list[dict[str, Any]]:
    """The demo's log under the one-shot fund policy (a payout and an ADL to edit)."""
    return run_scenario_sync(one_shot(resolve_scenario("demo"))).events


def line_of(events: list[dict[str, Any]], kind: str, n: int = 0, **match: str) -> int:
    """The 1-based line number of the n-th event of ``kind`` (with these field values)."""
    found = [i for i, e in enumerate(events) if e["kind"] == kind and all(e.get(k) == v for k, v in match.items())]
    return found[n] + 1


def renumbered(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{**e, "seq": i} for i, e in enumerate(events)]


def edited(events: list[dict[str, Any]], line: int, **fields: Any) -> list[dict[str, Any]]:
    out = [dict(e) for e in events]
    out[line - 1].update(fields)
    return out


def assert_bad_at(report: LogReport, line: int, *phrases: str) -> None:
    assert report.bad is not None, report.summary()
    assert report.bad.line == line, report.bad
    for phrase in phrases:
        assert phrase in report.bad.problem, report.bad


# --- good logs pass --------------------------------------------------------------------


def run_under(name: str, policy: str) -> Any:
    """A bundled scenario's run under its own policy ("own") or a venue preset (as tests/golden/events.py)."""
    sc = resolve_scenario(name)
    if policy != "own":
        sc = attrs.evolve(sc, policy=_parse_policy(sc.source, policy))
    return run_scenario_sync(sc)


@pytest.mark.parametrize("policy", ["own", *PRESETS])
@pytest.mark.parametrize("name", sorted(bundled_scenarios()))
def test_logs_of_every_bundled_scenario_pass_under_every_policy(name, policy):
    result = run_under(name, policy)
    report = check_lines(lines_of(result.events))
    assert report.ok, report.summary()
    assert report.complete and not report.torn_tail
    assert report.events == len(result.events)
    assert report.liquidations == result.summary()["counts"]["liquidations"]
    assert report.fund_final == result.runtime["insurance_fund"].balance
    assert "cannot verify" not in report.summary()


@given(scenarios(max_pairs=5, max_events=10), st.integers(0, 2**32))
def test_logs_of_random_scenarios_under_random_delivery_orders_pass(sc, seed):
    report = check_lines(lines_of(run_scenario_sync(sc, seed=seed).events))
    assert report.ok and report.complete, report.summary()


@settings(max_examples=20)
@given(scenarios(max_pairs=5, max_events=10))
def test_logs_of_live_runs_pass(sc):
    report = check_lines(lines_of(run_scenario_sync(sc, mode="live").events))
    assert report.ok and report.complete, report.summary()


def test_a_prefix_is_a_good_log_that_did_not_finish():
    events = demo_events()
    report = check_lines(lines_of(events[:12]))
    assert report.ok and not report.complete
    assert report.events == 12
    assert "cut off after seq 11" in report.summary()


def test_a_torn_last_line_is_ignored():
    raw = lines_of(demo_events()[:12])
    raw[-1] = raw[-1][: len(raw[-1]) // 2]  # killed in the middle of writing it
    report = check_lines(raw)
    assert report.ok and report.torn_tail and report.events == 11


def test_a_bad_line_without_newline_in_the_middle_is_not_torn():
    raw = lines_of(demo_events()[:12])
    raw[5] = b'{"seq": 5, "ti\n'
    assert_bad_at(check_lines(raw), 6, "not valid JSON")


# --- damage is reported at its line ----------------------------------------------------


def test_a_deleted_line_is_a_seq_gap_at_the_next_line():
    events = demo_events()
    del events[9]
    assert_bad_at(check_lines(lines_of(events)), 10, "seq 10 where 9 was expected", "missing")


def test_a_line_that_is_not_json():
    raw = lines_of(demo_events())
    raw[6] = b"this is not json\n"
    report = check_lines(raw)
    assert_bad_at(report, 7, "not valid JSON")
    assert report.bad is not None and report.bad.seq is None


def test_an_edited_realized_pnl_breaks_conservation_on_its_line():
    events = demo_events()
    n = line_of(events, "liquidation_fill", account="alice")
    assert events[n - 1]["realized_pnl"] == "-7"
    report = check_lines(lines_of(edited(events, n, realized_pnl="-6", balance="4")))
    assert_bad_at(report, n, "money is not conserved", "by 1", "states realized PnL -6, the trade realizes -7")
    assert report.bad is not None and report.bad.seq == n - 1


def test_an_edited_surplus_breaks_conservation_where_the_fund_receives_it():
    events = demo_events()
    n = line_of(events, "fund_surplus")
    report = check_lines(lines_of(edited(events, n, amount="4", balance="9")))
    assert_bad_at(report, n, "money is not conserved", "by 1", "sent 3, the fund received 4")


def test_an_edited_fund_payout_breaks_conservation():
    events = demo_events()
    n = line_of(events, "fund_payout")
    report = check_lines(lines_of(edited(events, n, amount="2", balance="6")))
    assert_bad_at(report, n, "money is not conserved", "whose trades come to -3")


def test_an_edited_stated_balance_is_caught():
    events = demo_events()
    n = line_of(events, "adl")
    assert_bad_at(check_lines(lines_of(edited(events, n, balance="17"))), n,
                  "dave's balance is stated as 17, but the log adds up to 16")


def test_a_duplicated_fill_line_is_a_repeated_seq():
    events = demo_events()
    n = line_of(events, "fill")
    events.insert(n, dict(events[n - 1]))
    assert_bad_at(check_lines(lines_of(events)), n + 1, f"seq {n - 1} where {n} was expected", "repeated")


def test_a_duplicated_fill_renumbered_applies_no_trade():
    events = demo_events()
    n = line_of(events, "fill")
    events.insert(n, dict(events[n - 1]))
    assert_bad_at(check_lines(lines_of(renumbered(events))), n + 1, "no trade in the log is waiting for it")


def test_a_fill_removed_and_renumbered_leaves_the_trade_unapplied_at_the_end():
    events = demo_events()
    n = line_of(events, "fill", account="mm", market="BAYC")
    del events[n - 1]
    events = renumbered(events)
    assert_bad_at(check_lines(lines_of(events)), len(events), "never applied to mm in BAYC")


def test_an_edited_fee_is_recomputed_from_the_market_rates():
    result = run_scenario_sync(scenario(
        market(extra='maker_fee = "0.001"\ntaker_fee = "0.002"')
        + account("a", "100") + account("b", "100")
        + order("a", "PUNK", "sell", "100", "1")
        + event(1, "order", account="b", market="PUNK", side="buy", price="100", size="1")
    ))
    events = result.events
    n = line_of(events, "fill", account="b")
    assert (events[n - 1]["fee"], events[n]["kind"]) == ("0.2", "fee")  # 1 x 100 x 0.2%, then its fee event
    assert check_lines(lines_of(events)).ok
    assert_bad_at(check_lines(lines_of(edited(events, n, fee="0.1"))), n,
                  "fee is stated as 0.1, but 1 x 100 at the taker rate is 0.2")
    assert_bad_at(check_lines(lines_of(edited(events, n + 1, amount="0.3"))), n + 1,
                  "the fill before it charged 0.2")


def test_an_edited_deposit_shows_in_the_stated_balance():
    result = run_scenario_sync(scenario(market() + account("a", "10") + event(1, "deposit", account="a", amount="5")))
    events = result.events
    n = line_of(events, "deposit")
    assert check_lines(lines_of(events)).ok
    assert_bad_at(check_lines(lines_of(edited(events, n, amount="6"))), n, "a's balance is stated as 15")


def test_unbalanced_open_interest_in_the_opening_state():
    events = demo_events()
    opening = json.loads(json.dumps(events[0]))
    opening["accounts"]["bob"]["positions"]["PUNK"] = {"size": "-2", "entry_value": "-100"}
    assert_bad_at(check_lines(lines_of([opening] + events[1:])), 1, "long open interest != short", "PUNK")


def test_an_account_frozen_twice_at_once():
    events = demo_events()
    n = line_of(events, "account_frozen", account="alice")
    events.insert(n, dict(events[n - 1], liq_id=7))
    assert_bad_at(check_lines(lines_of(renumbered(events))), n + 1,
                  "no account is liquidated twice at once", "alice is frozen by liquidation 7 while liquidation 1")


class _Reckless(InsuranceFund):
    """A fund that ignores its budget: its IOC may lose more than it has."""

    def budget(self, lot: Any) -> int:
        return 10**30


def test_a_fund_driven_negative_is_caught_on_the_payout_line():
    # demo's BAYC bankruptcy, with a reckless fund: it buys back both contracts
    # (59 and 65) against a bankruptcy price of 56 and loses 3 + 9 = 12 > 8
    # (with a price band wide enough to reach 65).
    result = run_scenario_sync(one_shot(resolve_scenario("demo"), fund_price_band=500_000),
                               actors={"insurance_fund": _Reckless})
    assert not result.ok
    events = result.events
    n = line_of(events, "fund_payout")
    assert events[n - 1]["balance"] == "-4"
    assert_bad_at(check_lines(lines_of(events)), n, "the fund is negative: -4")


class _AtMark(LiquidationEngine):
    """An engine that closes at the mark instead of the bankruptcy price: a gap leaves the account negative."""

    def bankruptcy_prices(self, balance, positions):  # type: ignore[no-untyped-def]
        return {p.market: self.marks[p.market] for p in positions}


def test_an_engine_that_prices_at_the_mark_is_caught_at_its_first_liquidation():
    events = run_scenario_sync(one_shot(resolve_scenario("demo")), actors={"liquidation_engine": _AtMark}).events
    n = line_of(events, "liquidation_started")
    assert_bad_at(check_lines(lines_of(events)), n, "liquidation 1 states bankruptcy prices {'PUNK': '94'}",
                  "gives {'PUNK': '90'}")


def test_a_negative_balance_after_settlement_is_recomputed_not_just_read():
    result = run_scenario_sync(one_shot(resolve_scenario("demo")), actors={"liquidation_engine": _AtMark})
    events = result.events
    # The engine's own events state the prices it should have used (those of the
    # default engine), so that only the money it then moves is wrong.
    honest = {e["liq_id"]: e["bankruptcy_prices"] for e in demo_events() if e["kind"] == "liquidation_started"}
    events = [dict(e, bankruptcy_prices=honest[e["liq_id"]]) if e["kind"] == "liquidation_started" else e
              for e in events]
    n = line_of(events, "invariant_violated")
    assert events[n - 1]["invariant"] == "no negative balance once a liquidation is settled"
    # The run reported it; check-log says so at that line ...
    assert_bad_at(check_lines(lines_of(events)), n, "the run reports an invariant violated")
    # ... and finds it on its own when the report is removed.
    del events[n - 1]
    assert_bad_at(check_lines(lines_of(renumbered(events))), n,
                  "no negative balance once a liquidation is settled", "carol ends liquidation 2 at -4")


def test_a_liquidation_handed_back_ends_it_and_only_its_own_id_can():
    events = demo_events()
    n = line_of(events, "fund_surplus")  # a quiet point: bob is healthy
    frozen = {"seq": 0, "time": 1, "actor": "clearing", "kind": "account_frozen", "account": "bob", "liq_id": 9,
              "cancelling": []}
    cancelled = {"seq": 0, "time": 1, "actor": "liquidation_engine", "kind": "liquidation_cancelled",
                 "account": "bob", "liq_id": 9, "equity": "26", "maintenance_margin": "4.7"}
    unfrozen = {"seq": 0, "time": 1, "actor": "clearing", "kind": "account_unfrozen", "account": "bob", "liq_id": 9}
    handed_back = events[:n] + [frozen, cancelled, unfrozen] + events[n:]
    assert check_lines(lines_of(renumbered(handed_back))).ok
    wrong_id = events[:n] + [frozen, cancelled, dict(unfrozen, liq_id=8)] + events[n:]
    assert_bad_at(check_lines(lines_of(renumbered(wrong_id))), n + 3, "bob is not under liquidation 8")
    never_ended = events[:n] + [frozen] + events[n:]
    assert_bad_at(check_lines(lines_of(renumbered(never_ended))), len(events) + 1,
                  "every liquidation completes", "bob still under liquidation 9")


def test_unknown_event_kinds_are_refused_and_time_never_goes_back():
    events = demo_events()
    n = line_of(events, "mark_price", market="BAYC")
    extra = {"seq": 0, "time": 2, "actor": "oracle", "kind": "mark_price_rejected", "market": "BAYC"}
    assert_bad_at(check_lines(lines_of(renumbered(events[:n] + [extra] + events[n:]))), n + 1,
                  "unknown event kind 'mark_price_rejected'")
    assert_bad_at(check_lines(lines_of(edited(events, n + 1, time=1.5))), n + 1, "time goes back from 2 to 1.5")


def test_the_log_must_open_with_the_opening_state():
    events = demo_events()[1:]
    assert_bad_at(check_lines(lines_of(renumbered(events))), 1, "must open with opening_state")


# --- the command ----------------------------------------------------------------------


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "sandbox", *args], capture_output=True, text=True, timeout=120)


def test_check_log_command_ok_bad_and_unreadable(tmp_path: Path):
    proc = cli("run", "demo", "--quiet", "--out", str(tmp_path))
    assert proc.returncode == 0, proc.stderr
    log = tmp_path / "events.jsonl"
    ok = cli("check-log", str(log))
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert ok.stdout.startswith(f"{log}: OK, 33 events (seq 0-32), scenario demo (seed 0), run finished")

    same = cli("check-log", str(log), "--scenario", "demo")
    assert same.returncode == 0 and same.stdout == ok.stdout, same.stdout + same.stderr
    other = cli("check-log", str(log), "--scenario", "textbook")
    assert other.returncode == 1 and "line 1, seq 0: the log was not made from this scenario" in other.stdout
    richer = tmp_path / "richer.jsonl"  # bob opens with 1 more: only the scenario can tell
    richer.write_bytes(log.read_bytes().replace(b'"bob":{"balance":"20"', b'"bob":{"balance":"21"', 1))
    assert cli("check-log", str(richer)).returncode == 0
    told = cli("check-log", str(richer), "--scenario", "demo")
    assert told.returncode == 1
    assert "line 1, seq 0: opening_state.accounts.bob.balance is not what scenario 'demo' opens with" in told.stdout

    broken = tmp_path / "broken.jsonl"
    raw = log.read_bytes().splitlines(keepends=True)
    broken.write_bytes(b"".join(raw[:5] + raw[6:]))
    bad = cli("check-log", str(broken))
    assert bad.returncode == 1
    assert bad.stdout.strip() == f"{broken}: line 6, seq 6: seq 6 where 5 was expected (a line is missing)"

    missing = cli("check-log", str(tmp_path / "absent.jsonl"))
    assert missing.returncode == 2 and missing.stdout == ""
    assert missing.stderr.strip().splitlines() == [f"sandbox: check-log: {tmp_path / 'absent.jsonl'}: no such file"]
    directory = cli("check-log", str(tmp_path))
    assert directory.returncode == 2 and len(directory.stderr.strip().splitlines()) == 1
    assert "Traceback" not in missing.stderr + directory.stderr


# --- the venue rules: ADL at the previous mark, the socialized loss, the revenue pool, the vault -------------


def bundled_events(name: str) -> list[dict[str, Any]]:
    return run_scenario_sync(resolve_scenario(name)).events


def test_adl_trades_at_the_price_the_fund_asked_for():
    events = bundled_events("adl_previous_mark")
    line = line_of(events, "adl")
    asked = events[line_of(events, "fund_adl_requested") - 1]["price"]
    bankruptcy = events[line_of(events, "fund_lot_opened") - 1]["bankruptcy_price"]
    assert events[line - 1]["price"] == asked != bankruptcy  # at the previous mark, not the bankruptcy price
    report = check_lines(lines_of(edited(events, line, price=bankruptcy)))
    assert_bad_at(report, line, "the fund asked for")


def test_socialized_charges_follow_clearing_order_and_share():
    events = bundled_events("socialized_loss")
    first = line_of(events, "socialized_loss")
    second = events[first]  # the next charge: another account's
    assert second["kind"] == "socialized_loss" and second["account"] != events[first - 1]["account"]
    report = check_lines(lines_of(edited(events, first, account=second["account"])))
    assert_bad_at(report, first, "the next position to pay")


def test_a_socialized_loss_must_reach_the_fund_whole():
    events = bundled_events("socialized_loss")
    line = line_of(events, "fund_socialized_loss")
    report = check_lines(lines_of(renumbered(events[:line - 2] + events[line - 1:])))  # a charge dropped
    assert_bad_at(report, line - 1, "was never charged")


def test_the_revenue_pool_is_one_pool_and_its_money_comes_from_outside():
    events = bundled_events("revenue_pool")
    line = line_of(events, "fund_revenue", 1)
    report = check_lines(lines_of(edited(events, line, pool_left="11")))
    assert_bad_at(report, line, "the revenue pool pays")


def test_the_vault_is_one_account_and_takes_what_the_backstop_liquidates():
    events = bundled_events("vault_account")
    line = line_of(events, "vault_takeover")
    # (The first takeover names the vault, which opening_state does not: another account's balance gives it away.)
    assert_bad_at(check_lines(lines_of(edited(events, line, vault="mm"))), line, "the vault mm's balance")
    assert_bad_at(check_lines(lines_of(edited(events, line, size="9"))), line, "the backstop liquidates")
