"""A change of one unit anywhere in a good log is caught, at the line of the event changed.

Every numeric field of every event (amounts, prices, sizes, rates, ids,
``seq``, ``time``; the tables inside ``opening_state`` and the liquidation
events too) is moved by one unit of its own kind, up and down, in the logs of
several scenarios and policies, exhaustively; and in random scenarios with
random policies, sampled by hypothesis. ``check-log`` must refuse each changed
log at the changed line, except for the fields docs/reference/cli.md lists as
caught later (and why) or not checked at all (and why): those must never be
blamed on an earlier line, and the "later" ones must be caught, at their line
or after it.
"""

from __future__ import annotations

import json
from decimal import Decimal, InvalidOperation
from functools import lru_cache
from typing import Any, Iterator

import attrs
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sandbox import resolve_scenario, run_scenario_sync
from sandbox._tools.checklog import LogReport, check_lines
from sandbox._core.eventlog import EventLog
from sandbox._core.money import MONEY_DECIMALS, PRICE_DECIMALS, RATE_DECIMALS, SIZE_DECIMALS
from sandbox._core.specs import Scenario
from sandbox._scenario.parse import _parse_policy
from sandbox.testing import scenarios

from .helpers import one_shot

# Fields caught at their line when it can tell, else at a later line, and why
# (docs/reference/cli.md says the same).
LATER = {
    # The book's trade is the only line of a liquidation's or the fund's IOC
    # order (they never rest, and are not logged when placed): its size is
    # checked where clearing applies it, the next fill of that order.
    ("trade", "size"),
    # The engine numbers its liquidations in the order it starts them, and
    # clearing freezes in the order its messages arrive: a wrong id is caught
    # at the liquidation's next line.
    ("account_frozen", "liq_id"),
    # An observed mark: off the tick it is caught at its line; within it, by
    # the next line that uses it (a margin call, a fill's margin, the next
    # mark's "previous").
    ("mark_price", "price"),
}

# Fields check-log cannot check at their line and checks only where they are
# used, if they are (so a value nothing uses cannot be caught), or does not
# recompute at all; and why (docs/reference/cli.md).
UNCHECKED = {
    # Observed inputs and an order's terms: checked where they are used (the
    # funding rate and the median mark use the index; the book's trades, a
    # cancel or an expiry use the order's price and size). A price or size off
    # the tick or lot is caught at its line; within them, the line cannot tell.
    ("index_price", "price"), ("order_placed", "price"), ("order_placed", "size"),
    # The funding rate's divisor and cap are policy parameters the log does not
    # state: the rate is bounded at its line (its sign, at most the premium) and
    # checked exactly by the payments it makes, if any, on the next lines. The
    # index before the first index_price line is the scenario's, which
    # opening_state does not list.
    ("funding_rate", "rate"), ("funding_rate", "index"), ("mark_computed", "index"),
    # The fund's available balance: its balance less every open lot's
    # reservation at the fund's own copy of each mark, by the lot's state (in
    # an order, held, in ADL), and under a capped vault its losses so far.
    ("fund_lot_opened", "available"), ("fund_inventory_held", "available"),
    ("fund_inventory_marked", "available"), ("fund_adl_requested", "available"),
    # The part of a lot the fund still certainly holds (ADL fills may be in
    # flight): the size of its order, of its ADL request, of a crossing of two
    # lots (caught when the lots close, if they do).
    ("fund_order", "size"), ("fund_adl_requested", "size"), ("fund_netted", "size"),
    # Partial-liquidation slices and tier step-downs: policy parameters
    # (partial_fraction, the step-down targets) the log does not state.
    # (Their limits off the tick are caught at their line.)
    ("liquidation_started", "closing"), ("liquidation_step_down", "closing"), ("liquidation_step_down", "limits"),
    ("liquidation_started", "limits"),
    # The socialized loss's floor (policy.fund_floor) and the revenue pool's size (policy.revenue_pool) are
    # not in the log: they are inferred from the first request (amount + available + what is being charged)
    # and the first transfer (paid + pool_left), and hold every later one to them. The first request's
    # amount is caught where clearing charges it (its shares are recomputed from it), not if nobody could pay
    # and still cannot; its available (unchecked, above) at the next request; the first transfer's pool_left
    # at the next transfer, if there is one.
    ("fund_socialize_requested", "amount"), ("fund_socialize_requested", "available"),
    ("fund_revenue", "pool_left"),
    # The median mark's terms: impact prices from the book's depth, which the log does not hold.
    ("mark_computed", "impact_bid"), ("mark_computed", "impact_ask"), ("mark_computed", "impact_mid"),
    ("mark_computed", "price1"), ("mark_computed", "price2"), ("mark_computed", "mark"),
    # What the run was asked to do, not what it did: checked for type only.
    ("opening_state", "seed"),
    # The rejections and oracle warnings state figures of requests that moved nothing.
    ("order_rejected", "required"), ("order_rejected", "available"), ("withdraw_rejected", "amount"),
    ("oracle_price_rejected", "price"), ("oracle_price_rejected", "last_valid"), ("oracle_price_rejected", "band"),
    ("oracle_stale", "since"), ("oracle_stale", "limit"), ("oracle_stale", "last_valid"),
    ("oracle_stale", "liquidations"), ("oracle_fresh", "price"), ("oracle_fresh", "stale_for"),
    ("fault_delay", "delay_ms"), ("duplicate_ignored", "message_seq"), ("actor_restarted", "replayed"),
}

PRICE_KEYS = {"price", "previous", "mark_price", "bankruptcy_price", "limit", "index", "impact_bid", "impact_ask",
              "impact_mid", "mark", "price1", "price2", "last_valid", "tick_size"}
SIZE_KEYS = {"size", "unfilled", "remaining", "lot_size"}
RATE_KEYS = {"rate", "initial_margin", "maintenance_margin", "maker_fee", "taker_fee", "risk_factor", "band"}


def decimals_of(kind: str, path: tuple[Any, ...]) -> int:
    """The unit a decimal field is counted in, by its name (docs/reference/units.md)."""
    if path[0] in ("bankruptcy_prices", "limits"):
        return PRICE_DECIMALS
    if path[0] in ("positions", "closing") and kind != "opening_state":
        return SIZE_DECIMALS
    key = next((k for k in reversed(path) if isinstance(k, str) and k not in ("tiers",)), path[0])
    if kind == "opening_state" and path[0] == "accounts" and key == "size":
        return SIZE_DECIMALS
    if key in PRICE_KEYS:
        return PRICE_DECIMALS
    if key in SIZE_KEYS:
        return SIZE_DECIMALS
    if key in RATE_KEYS and not (kind == "opening_state" and path[-1] == "notional"):
        return RATE_DECIMALS
    return MONEY_DECIMALS


def numeric_fields(event: dict[str, Any]) -> Iterator[tuple[tuple[Any, ...], Any]]:
    """(path, value) of every number or decimal string in an event, nested tables included."""
    def walk(obj: Any, path: tuple[Any, ...]) -> Iterator[tuple[tuple[Any, ...], Any]]:
        if isinstance(obj, dict):
            for k, v in obj.items():
                yield from walk(v, (*path, k))
        elif isinstance(obj, list):
            for i, v in enumerate(obj):
                yield from walk(v, (*path, i))
        elif isinstance(obj, bool):
            return
        elif isinstance(obj, (int, float)):
            yield path, obj
        elif isinstance(obj, str):
            try:
                Decimal(obj)
            except InvalidOperation:
                return
            if obj.strip() and obj.lower() not in ("nan", "inf", "infinity", "-inf", "-infinity"):
                yield path, obj

    for key, value in event.items():
        if key not in ("actor", "kind", "digest", "scenario", "mode"):
            yield from walk(value, (key,))


def moved(value: Any, decimals: int, step: int, key: str) -> Any:
    """``value`` moved by ``step`` units: one unit of its kind (time: one virtual millisecond)."""
    if isinstance(value, int):
        return value + step if key != "time" else value + Decimal(step) / 1000
    if isinstance(value, float):
        return float(Decimal(repr(value)) + Decimal(step) / 1000)
    d = Decimal(value) + Decimal(step).scaleb(-decimals)
    return format(d.normalize(), "f") if d else "0"


def with_field(event: dict[str, Any], path: tuple[Any, ...], value: Any) -> dict[str, Any]:
    out = json.loads(json.dumps(event))
    target = out
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = float(value) if isinstance(value, Decimal) else value
    return out


def field_name(kind: str, path: tuple[Any, ...]) -> str:
    return path[0] if kind != "opening_state" else next(k for k in reversed(path) if isinstance(k, str))


def lines_of(events: list[dict[str, Any]]) -> list[bytes]:
    return [(EventLog.dumps(e) + "\n").encode() for e in events]


def check_one_change(events: list[dict[str, Any]], lines: list[bytes], i: int, path: tuple[Any, ...], step: int,
                     made_from: Scenario | None) -> None:
    """Change one field of line ``i + 1`` by ``step`` units and check where check-log says so."""
    event = events[i]
    kind, name = event["kind"], field_name(event["kind"], path)
    value = event
    for key in path:
        value = value[key]
    new = moved(value, decimals_of(kind, path), step, path[0])
    changed = list(lines)
    changed[i] = (EventLog.dumps(with_field(event, path, new)) + "\n").encode()
    report: LogReport = check_lines(changed, made_from)
    where = f"line {i + 1} ({kind}) field {'.'.join(map(str, path))} {value!r} -> {new!r}"
    if path == ("time",):
        # Virtual time only has to run forward: a change is caught where it
        # breaks that order (at the line, or the next), and cannot be seen otherwise.
        later = events[i + 1]["time"] if i + 1 < len(events) else None
        earlier = events[i - 1]["time"] if i else None
        if i == 0 or (earlier is not None and new < earlier):
            assert report.bad is not None and report.bad.line == i + 1, (where, report.summary())
        elif later is not None and new > later:
            assert report.bad is not None and report.bad.line == i + 2, (where, report.summary())
        else:
            assert report.ok, (where, report.summary())
        return
    if (kind, name) in UNCHECKED:
        assert report.bad is None or report.bad.line >= i + 1, (where, report.summary())
    elif (kind, name) in LATER:
        assert report.bad is not None and report.bad.line >= i + 1, (where, report.summary())
    else:
        assert report.bad is not None and report.bad.line == i + 1, (where, report.summary())


# Good logs of several scenarios and policies: a payout, ADL, cross margin,
# tiers, funding, fee shares, clearance fees, partial liquidations, several
# funds, a median mark and the venue presets.
CASES = [
    ("demo", "one_shot"), ("demo", "own"), ("venue_rules", "own"), ("funding_drain", "own"),
    ("clearance_fee", "own"), ("fee_income", "own"), ("whale_in_slices", "own"), ("cross_margin_crash", "own"),
    ("tier_step_down", "binance"), ("fund_groups", "own"), ("cascade_adl", "own"), ("mark_median_spoof", "own"),
    ("backstop_vault", "own"), ("textbook", "dydx"), ("fill_below_bankruptcy", "hyperliquid"),
    # The venue rules: ADL at the previous mark, a socialized loss, the revenue pool, the vault as an
    # account, isolated margin; and the presets that use them.
    ("adl_previous_mark", "own"), ("socialized_loss", "own"), ("revenue_pool", "own"), ("vault_account", "own"),
    ("isolated_margin", "own"), ("adl_previous_mark", "hyperliquid"), ("adl_previous_mark", "drift"),
]


@lru_cache(maxsize=None)
def good_log(name: str, policy: str) -> tuple[Scenario, list[dict[str, Any]], list[bytes]]:
    sc = resolve_scenario(name)
    run_sc = one_shot(sc) if policy == "one_shot" else sc
    if policy not in ("own", "one_shot"):
        run_sc = attrs.evolve(sc, policy=_parse_policy(sc.source, policy))
    events = run_scenario_sync(run_sc).events
    lines = lines_of(events)
    assert check_lines(lines, sc).ok
    return sc, events, lines


@pytest.mark.parametrize("name, policy", CASES)
def test_every_one_unit_change_of_a_good_log_is_caught_at_its_line(name, policy):
    sc, events, lines = good_log(name, policy)
    for i, event in enumerate(events):
        for path, _ in numeric_fields(event):
            for step in (1, -1):
                check_one_change(events, lines, i, path, step, sc if i == 0 else None)


def test_every_one_unit_change_of_the_opening_state_is_caught_on_line_1_given_the_scenario():
    """Without the scenario an opening balance shows only where it is used (or never: docs); with it, at once."""
    sc, events, lines = good_log("venue_rules", "own")
    for path, _ in numeric_fields(events[0]):
        for step in (1, -1):
            check_one_change(events, lines, 0, path, step, sc)


@settings(max_examples=30)
@given(scenarios(max_markets=2, max_pairs=5, max_events=8, policies=True), st.integers(0, 2**32), st.data())
def test_a_one_unit_change_of_a_random_log_is_caught_at_its_line(sc, seed, data):
    events = run_scenario_sync(sc, seed=seed).events
    lines = lines_of(events)
    base = check_lines(lines)
    if not base.ok:  # the run itself found a violation: nothing to mutate
        assert any(e["kind"] == "invariant_violated" for e in events), base.summary()
        return
    i = data.draw(st.integers(1, len(events) - 1), label="line index")
    fields = list(numeric_fields(events[i]))
    path = data.draw(st.sampled_from([p for p, _ in fields]), label="field")
    step = data.draw(st.sampled_from([1, -1]), label="step")
    check_one_change(events, lines, i, path, step, None)
