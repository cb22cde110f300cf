"""Wire the actors for a scenario, run it, and collect the result.

:func:`build` makes a :class:`~sandbox.runtime.Runtime` with one actor per
role (any role can be swapped for a user's subclass) and the timeline of
stimuli; :func:`run_scenario` runs it to the end, checking every invariant at
every quiet point, and returns a :class:`RunResult`.
"""

from __future__ import annotations

from typing import Any, Callable, Literal, Mapping

import attrs
import trio

from actors import (
    ADL,
    CLEARING,
    ENGINE,
    FUND,
    MONITOR,
    ORACLE,
    Account,
    AdlCoordinator,
    Clearing,
    InsuranceFund,
    LiquidationEngine,
    MarginMonitor,
    Oracle,
    OrderBook,
    Trader,
    book_name,
    trader_name,
)
from actors._common import Position

from . import invariants
from .eventlog import EventLog
from .messages import FundingDue, IndexPriceObserved, MarkPriceObserved, PositionView, ScriptedEvent, Started
from .money import fmt_money, fmt_price, fmt_rate, fmt_size
from .runtime import ActorFailed, Delivery, LiveDelivery, Network, Runtime, SeededDelivery, Violation
from .scenario import Scenario

__all__ = ["build", "run_scenario", "run_scenario_sync", "opening_state", "RunResult", "ROLES", "InvariantViolation"]

Mode = Literal["seeded", "live"]

# The roles a user may replace with a subclass, and the default class of each.
ROLES: Mapping[str, type] = {
    ORACLE: Oracle,
    CLEARING: Clearing,
    MONITOR: MarginMonitor,
    ENGINE: LiquidationEngine,
    FUND: InsuranceFund,
    ADL: AdlCoordinator,
    "order_book": OrderBook,
    "trader": Trader,
}


class InvariantViolation(Exception):
    def __init__(self, violations: list[Violation]) -> None:
        self.violations = violations
        super().__init__("; ".join(f"{v.invariant}: {v.detail}" for v in violations))


def build(
    scenario: Scenario,
    delivery: Delivery | None = None,
    actors: Mapping[str, type] | None = None,
    log: EventLog | None = None,
) -> tuple[Runtime, list[tuple[int, str, Any]]]:
    """The runtime with every actor in place, and the timeline of stimuli."""
    unknown = set(actors or ()) - set(ROLES)
    if unknown:
        raise ValueError(f"unknown actor role(s) {sorted(unknown)}; roles are {sorted(ROLES)}")
    cls = {**ROLES, **(actors or {})}
    markets = {m.symbol: m for m in scenario.markets}
    rt = Runtime(delivery, log)

    accounts: dict[str, Account] = {}
    for spec in scenario.accounts:
        acct = Account(spec.id, balance=spec.deposit, deposited=spec.deposit)
        for p in spec.positions:
            acct.positions[p.market] = Position(p.size, p.size * p.entry_price)
        accounts[spec.id] = acct
    rt.add(cls[ORACLE](markets))
    rt.add(cls[CLEARING](markets, accounts))
    rt.add(cls[MONITOR](markets, {a.id: (a.balance, a.views()) for a in accounts.values()}))
    rt.add(cls[ENGINE](markets))
    rt.add(cls[FUND](markets, scenario.fund_balance))
    if scenario.funds:  # several funds for groups of markets: one ledger each
        rt[FUND].set_funds(scenario.funds)
    rt.add(cls[ADL](markets))
    # The scenario's [policy] is configuration, not a constructor argument, so a
    # user's subclass keeps the constructor of the role it replaces.
    for role in (ORACLE, CLEARING, MONITOR, ENGINE, FUND, ADL):
        rt[role].policy = scenario.policy
    for symbol in markets:
        rt.add(cls["order_book"](symbol))

    traders = {o.account for o in scenario.orders} | {e.account for e in scenario.events if e.account}
    for spec in scenario.accounts:  # file order, so actor order is deterministic
        if spec.id in traders:
            rt.add(cls["trader"](spec.id))

    timeline: list[tuple[int, str, Any]] = [(0, MONITOR, Started())]
    timeline += [(0, trader_name(o.account), ScriptedEvent(o)) for o in scenario.orders]
    for e in scenario.events:
        if e.type in ("mark_price", "oracle_price"):
            assert e.market is not None
            timeline.append((e.at_ms, ORACLE, MarkPriceObserved(e.market, e.price)))
        elif e.type == "index_price":
            assert e.market is not None and e.price is not None
            timeline.append((e.at_ms, ORACLE, IndexPriceObserved(e.market, e.price)))
        else:
            assert e.account is not None
            timeline.append((e.at_ms, trader_name(e.account), ScriptedEvent(e)))
    return rt, _with_funding(scenario, timeline)


def _with_funding(scenario: Scenario, timeline: list[tuple[int, str, Any]]) -> list[tuple[int, str, Any]]:
    """Add a funding tick every interval, up to the last scripted event, if any market has an index.

    A tick runs after the scripted events of its time (a stable sort), so an
    index or mark observed at the hour counts in that hour's rate.
    """
    indexed = any(m.index_price is not None for m in scenario.markets) or any(
        e.type == "index_price" for e in scenario.events
    )
    if not indexed or not scenario.events:
        return timeline
    interval = scenario.policy.funding_interval_ms
    end = scenario.events[-1].at_ms
    ticks = [(t, ORACLE, FundingDue()) for t in range(interval, end + 1, interval)]
    return sorted(timeline + ticks, key=lambda entry: entry[0])


@attrs.define
class RunResult:
    scenario: Scenario
    seed: int
    mode: str
    runtime: Runtime
    violations: list[Violation]
    error: ActorFailed | None = None  # an actor raised: the run stopped there

    @property
    def log(self) -> EventLog:
        return self.runtime.log

    @property
    def events(self) -> list[dict[str, Any]]:
        return self.runtime.log.events

    @property
    def ok(self) -> bool:
        return not self.violations and self.error is None

    def summary(self) -> dict[str, Any]:
        from .summary import summarize

        return summarize(self)


async def run_scenario(
    scenario: Scenario,
    *,
    seed: int | None = None,
    mode: Mode = "seeded",
    actors: Mapping[str, type] | None = None,
    delivery: Delivery | None = None,
    check: bool = True,
    raise_on_violation: bool = False,
    log: EventLog | None = None,
    trace: bool = False,
    after_delivery: Callable[[Runtime, Any], None] | None = None,
    observe: Callable[[Runtime], None] | None = None,
) -> RunResult:
    """Run ``scenario`` to the end and return the result.

    ``mode="seeded"`` (default) delivers one message at a time, choosing among
    in-flight messages with ``random.Random(seed)``; ``seed`` defaults to the
    scenario's. ``mode="live"`` runs every actor as its own trio task.
    ``delivery`` overrides both (e.g. a :class:`SeededDelivery` driven by
    hypothesis). With ``check`` every invariant is checked at every quiet
    point; violations are collected in the result, or raised as
    :class:`InvariantViolation` with ``raise_on_violation``.

    ``trace`` records every delivery in ``runtime.trace`` as (seq, time_ms,
    sender, recipient, message type); ``after_delivery(runtime, envelope)``
    runs after each delivery and ``observe(runtime)`` at each quiet point
    (after the invariant checks), e.g. to sample state for a report.

    A stochastic scenario (``sandbox.stochastic``) is generated from ``seed``:
    the result's ``scenario`` is the one that ran.
    """
    seed = scenario.seed if seed is None else seed
    scenario = scenario.for_seed(seed)  # a stochastic scenario draws everything from the run's seed
    if delivery is None:
        delivery = (
            SeededDelivery(seed, network=Network(*scenario.latency_ms), faults=scenario.faults)
            if mode == "seeded"
            else LiveDelivery(scenario.faults, seed)
        )
    rt, timeline = build(scenario, delivery, actors, log)
    if scenario.faults.crash:
        rt.make_durable(scenario.faults.crash_actors, scenario.faults.snapshot_every)
    if trace:
        rt.trace = []
    rt.after_delivery = after_delivery

    seen: set[tuple[str, str]] = set()

    def on_quiet(runtime: Runtime) -> None:
        found = invariants.check_all(runtime, scenario.fund_balance) if check else []
        for v in found:
            if (v.invariant, v.detail) not in seen:  # a lasting breach is reported once
                seen.add((v.invariant, v.detail))
                runtime.report(v)
        if found and raise_on_violation:
            raise InvariantViolation(found)
        if observe is not None:
            observe(runtime)

    run_mode = "seeded" if isinstance(delivery, SeededDelivery) else "live"
    # The log opens with the starting books and closes with the outcome, so it
    # can be checked on its own (``sandbox check-log``); a log without the
    # closing event is the prefix of a run that did not end.
    rt.log.record(0, "exchange", "opening_state", opening_state(scenario, seed, run_mode))
    error: ActorFailed | None = None
    try:
        await rt.run(timeline, on_quiet)
    except ActorFailed as e:
        # A bug in an actor, not in the exchange's books: stop cleanly, keep
        # every event so far, and say which actor, message and seq.
        error = e
        env = e.envelope
        rt.log.record(rt.now_ms, env.recipient, "actor_failed", {
            "message": type(env.message).__name__, "message_seq": env.seq, "sender": env.sender,
            "error": f"{type(e.error).__name__}: {e.error}",
        })
    status = "failed" if error else ("ok" if not rt.violations else "invariant_violated")
    rt.log.record(rt.now_ms, "exchange", "run_finished", {"status": status, "violations": len(rt.violations)})
    if raise_on_violation and rt.violations:
        raise InvariantViolation(rt.violations)
    return RunResult(scenario, seed, run_mode, rt, rt.violations, error)


def opening_state(scenario: Scenario, seed: int, mode: str) -> dict[str, Any]:
    """The fields of the log's first event: everything on the books at time 0.

    Markets with their parameters, every account's balance and positions
    (``entry_value`` = size x entry price, the exact cost basis, as in
    ``summary.json``) and the fund's balance, as exact decimal strings.
    """
    funds = {
        "funds": {f.name: {"balance": fmt_money(f.balance), "markets": list(f.markets)} for f in scenario.funds}
    } if scenario.funds else {}
    return {
        "scenario": scenario.name,
        "digest": scenario.digest,
        "seed": seed,
        "mode": mode,
        "insurance_fund": fmt_money(scenario.fund_balance),
        **funds,
        "opening_imbalance": fmt_money(scenario.opening_imbalance),
        "markets": {
            m.symbol: {
                "mark_price": fmt_price(m.mark_price),
                "tick_size": fmt_price(m.tick_size),
                "lot_size": fmt_size(m.lot_size),
                "initial_margin": fmt_rate(m.initial_margin),
                "maintenance_margin": fmt_rate(m.maintenance_margin),
                "maker_fee": fmt_rate(m.maker_fee),
                "taker_fee": fmt_rate(m.taker_fee),
                **_tiers_of(m),
            }
            for m in scenario.markets
        },
        "accounts": {
            a.id: {
                "balance": fmt_money(a.deposit),
                "positions": {
                    p.market: {"size": fmt_size(p.size), "entry_value": fmt_money(p.size * p.entry_price)}
                    for p in a.positions
                },
            }
            for a in scenario.accounts
        },
    }


def _tiers_of(m: Any) -> dict[str, Any]:
    """A tiered market's risk factor and tier table, for the opening state (nothing for a flat rate)."""
    if not m.tiered:
        return {}
    return {
        "risk_factor": fmt_rate(m.risk_factor),
        "tiers": [{"notional": None if t.notional is None else fmt_money(t.notional),
                   "maintenance_margin": fmt_rate(t.maintenance_margin), "initial_margin": fmt_rate(t.initial_margin),
                   "max_leverage": t.max_leverage} for t in m.tiers],
    }


def run_scenario_sync(scenario: Scenario, **kwargs: Any) -> RunResult:
    """:func:`run_scenario` from synchronous code (starts its own trio run)."""
    return trio.run(lambda: run_scenario(scenario, **kwargs))


def book_of(result: RunResult, market: str) -> OrderBook:
    return result.runtime[book_name(market)]
