"""Wire the actors for a scenario, run it, and collect the result.

:func:`build` makes a :class:`~sandbox._core.runtime.Runtime` with one actor per
role (any role can be swapped for a user's subclass) and the timeline of
stimuli; :func:`run_scenario` runs it to the end, checking every invariant at
every quiet point, and returns a :class:`RunResult`.
"""

from __future__ import annotations

import heapq
from typing import Any, Callable, Final, Iterator, Literal, Mapping

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

from sandbox._exchange import invariants
from sandbox._core.eventlog import EventLog
from sandbox.messages import Event, FundingDue, IndexPriceObserved, MarkPriceObserved, ScriptedEvent, Started
from sandbox._core.money import fmt_money, fmt_price, fmt_rate, fmt_size
from sandbox._core.runtime import ActorFailed, Runtime
from sandbox._core.delivery import Delivery, LiveDelivery, Network, SeededDelivery
from sandbox._core.actor import Violation
from sandbox._core.money import RATE_ONE
from sandbox._core.specs import Scenario
from sandbox._exchange.result import RunResult, WorkLimitExceeded, WorkLimits
from sandbox._scenario.parse import funding_ticks

__all__ = [
    "build", "run_scenario", "run_scenario_sync", "opening_state", "RunResult", "ROLES", "InvariantViolation",
    "Timeline", "WorkLimits", "work_limits", "WorkLimitExceeded",
]

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

    timeline = Timeline(scenario)
    timeline.append((0, MONITOR, Started()))
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
    return rt, timeline


Stimulus = tuple[int, str, Any]



def prepare_run(
    scenario: Scenario,
    delivery: Delivery,
    actors: Mapping[str, type] | None = None,
    log: EventLog | None = None,
    *,
    seed: int,
) -> tuple[Runtime, Timeline]:
    """The one wiring of a run, used by every entry point (``run_scenario``, explore, soak, bench).

    :func:`build`'s runtime and timeline; the actors that ``[faults] crash``
    may crash made durable; and the log opened with the ``opening_state``
    (the books at time 0), so that every run's log can be checked on its own
    (``sandbox check-log``). The caller runs it and closes the log with
    :func:`finish_run` when it ends.
    """
    mode = "seeded" if isinstance(delivery, SeededDelivery) else "live"
    # Recorded before the actors are built, so that its (large) fields are gone
    # before they are: a million accounts' opening state is ~750 MB of dicts.
    log = log if log is not None else EventLog()
    log.record(0, "exchange", Event.OPENING_STATE, opening_state(scenario, seed, mode))
    rt, timeline = build(scenario, delivery, actors, log)
    if scenario.faults.crash:
        rt.make_durable(scenario.faults.crash_actors, scenario.faults.snapshot_every)
    return rt, timeline


def finish_run(rt: Runtime, status: str) -> None:
    """Close a run's log with ``run_finished`` (a run stopped short, or a search's cut, has none)."""
    rt.log.record(rt.now_ms, "exchange", Event.RUN_FINISHED, {"status": status, "violations": len(rt.violations)})

class Timeline(list[Stimulus]):
    """The scripted stimuli of a run (a list), and its funding ticks, made only as the run reaches them.

    A funding tick is due every ``policy.funding_interval`` up to the last
    scripted event, if any market has an index. They used to be built up
    front: one ``index_price`` event at t = 10^12 s asked for 2.8 * 10^8 of
    them (gigabytes before the first event). Now iterating merges the
    scripted list, stably sorted by time, with a generator of ticks, so a
    run holds one pending tick at a time (and the scenario's validator
    refuses more than :data:`~sandbox._scenario.reader.MAX_FUNDING_TICKS`). A tick
    runs after the scripted stimuli of its time, so an index or mark
    observed at the hour counts in that hour's rate.

    It stays a list of the scripted stimuli, so callers may append their own
    (``sandbox bench`` and ``soak`` do); ``len`` counts those only, and
    :attr:`funding_ticks` says how many ticks iterating adds.
    """

    def __init__(self, scenario: Scenario) -> None:
        super().__init__()
        self.funding_ticks = funding_ticks(scenario.markets, scenario.events, scenario.policy)
        self._interval = scenario.policy.funding_interval_ms

    def __iter__(self) -> Iterator[Stimulus]:
        scripted = sorted(super().__iter__(), key=lambda entry: entry[0])  # stable: file order breaks ties
        if not self.funding_ticks:
            return iter(scripted)
        ticks = ((k * self._interval, ORACLE, FundingDue()) for k in range(1, self.funding_ticks + 1))
        # heapq.merge is stable across its inputs: at equal times, scripted stimuli come first.
        return heapq.merge(scripted, ticks, key=lambda entry: entry[0])


# --- bounded work ----------------------------------------------------------------------------

# Every run stops at a cap of steps (deliveries, and crashes of [faults] crash,
# which deliver nothing) and at a horizon of virtual time, both derived from
# the scenario (docs/guarantees.md, "Bounded work"). Measured on every bundled
# scenario and on generated ones of up to 600 accounts and 10,000 events: at
# most 16 deliveries per scripted entry, so the cap leaves a margin of 4 or more.
BASE_STEPS: Final = 10_000
STEPS_PER_ENTRY: Final = 64
HORIZON_SLACK_MS: Final = 86_400_000  # a day of virtual time after the last stimulus
HOPS_OF_DELAY: Final = 1_000  # ... plus this many messages' worth of the largest delay a message can have
# Crashes in a row with no delivery between them: the run makes no progress
# ([faults] crash with probability 1, or so close to it that it is the same).
# At a chance p per delivery, 1,000 in a row has probability p**1000: for
# p = 0.99, 4e-5 per delivery.
MAX_CRASHES_IN_A_ROW: Final = 1_000


def work_limits(scenario: Scenario) -> WorkLimits:
    """The limits of ``scenario``'s runs (the formula is in docs/guarantees.md).

    ``entries`` = accounts + markets + orders + events + funding ticks + 1;
    ``steps`` = 10,000 + 64 x entries. The horizon is the last stimulus's
    time plus a day, plus 1,000 times the largest delay one message can
    have (latency + [faults] delay + crash downtime), plus the longest a
    partial liquidation can take (its slices x its cooldown).
    """
    ticks = funding_ticks(scenario.markets, scenario.events, scenario.policy)
    entries = 1 + len(scenario.accounts) + len(scenario.markets) + len(scenario.orders) + len(scenario.events) + ticks
    last = scenario.events[-1].at_ms if scenario.events else 0
    per_message = scenario.latency_ms[1] + scenario.faults.delay_max_ms + scenario.faults.crash_downtime_ms
    policy = scenario.policy
    partial = 0
    if policy.liquidation == "partial":
        partial = -(-RATE_ONE // policy.partial_fraction) * policy.partial_cooldown_ms
    horizon = last + HORIZON_SLACK_MS + HOPS_OF_DELAY * per_message + partial
    return WorkLimits(BASE_STEPS + STEPS_PER_ENTRY * entries, horizon, entries)


class _Budget:
    """Counts a run's steps and watches its clock; raises :class:`WorkLimitExceeded` past either limit."""

    def __init__(self, limits: WorkLimits, rt: Runtime) -> None:
        self.limits = limits
        self.steps = 0
        self.crashes_in_a_row = 0
        self._rt = rt

    def delivered(self) -> None:
        self.crashes_in_a_row = 0
        self.step()

    def step(self) -> None:
        self.steps += 1
        if self.steps > self.limits.steps:
            raise WorkLimitExceeded(
                f"still busy after {self.limits.steps:,} steps (deliveries and crashes), the cap for a scenario "
                f"of {self.limits.entries:,} entries: stopped (see docs/guarantees.md, 'Bounded work')", self.limits)
        if self._rt.now_ms > self.limits.horizon_ms:
            raise WorkLimitExceeded(
                f"still busy at t={self._rt.now_ms / 1000:g} s, past the horizon of "
                f"t={self.limits.horizon_ms / 1000:g} s: stopped (see docs/guarantees.md, 'Bounded work')",
                self.limits)

    def on_event(self, event: dict[str, Any]) -> None:
        if event["kind"] == Event.ACTOR_CRASHED:  # a step that delivers nothing
            self.crashes_in_a_row += 1
            if self.crashes_in_a_row >= MAX_CRASHES_IN_A_ROW:
                raise WorkLimitExceeded(
                    f"{MAX_CRASHES_IN_A_ROW:,} crashes in a row and no message delivered: the run makes no "
                    "progress ([faults] crash): stopped (see docs/guarantees.md, 'Bounded work')", self.limits)
            self.step()


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
    limits: WorkLimits | None = None,
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

    A stochastic scenario (``sandbox._scenario.generators``) is generated from ``seed``:
    the result's ``scenario`` is the one that ran.

    Every run is bounded (``limits``, default :func:`work_limits` of the
    scenario): past its cap of steps or its horizon of virtual time it stops,
    and the result's ``stopped`` says which; its log then ends with a
    ``work_limit_reached`` event and no ``run_finished`` (a prefix of a run
    that did not end).
    """
    seed = scenario.seed if seed is None else seed
    scenario = scenario.for_seed(seed)  # a stochastic scenario draws everything from the run's seed
    if delivery is None:
        delivery = (
            SeededDelivery(seed, network=Network(*scenario.latency_ms), faults=scenario.faults)
            if mode == "seeded"
            else LiveDelivery(scenario.faults, seed)
        )
    rt, timeline = prepare_run(scenario, delivery, actors, log, seed=seed)
    run_mode = "seeded" if isinstance(delivery, SeededDelivery) else "live"
    if trace:
        rt.trace = []
    budget = _Budget(limits if limits is not None else work_limits(scenario), rt)
    rt.log.subscribe(budget.on_event, kinds=("actor_crashed",))  # (the other kinds stay lazy)

    # Each quiet point checks what changed since the last one (invariants.QuietChecker); the end of the
    # run checks everything again.
    checker = invariants.QuietChecker(rt, scenario.fund_balance) if check else None

    def counted(runtime: Runtime, envelope: Any) -> None:
        budget.delivered()
        if checker is not None:
            checker.delivered(envelope)
        if after_delivery is not None:
            after_delivery(runtime, envelope)

    rt.after_delivery = counted

    seen: set[tuple[str, str]] = set()

    def report(runtime: Runtime, found: list[Violation]) -> None:
        for v in found:
            if (v.invariant, v.detail) not in seen:  # a lasting breach is reported once
                seen.add((v.invariant, v.detail))
                runtime.report(v)
        if found and raise_on_violation:
            raise InvariantViolation(found)

    def on_quiet(runtime: Runtime) -> None:
        report(runtime, checker.check() if checker is not None else [])
        if observe is not None:
            observe(runtime)

    # The log opened with the starting books (prepare_run) and closes with the
    # outcome, so it can be checked on its own (``sandbox check-log``); a log
    # without the closing event is the prefix of a run that did not end.
    error: ActorFailed | None = None
    stopped: WorkLimitExceeded | None = None
    try:
        await rt.run(timeline, on_quiet)
        if check:  # the full check at the end: reports what the incremental checks could have missed
            report(rt, invariants.check_all(rt, scenario.fund_balance))
    except WorkLimitExceeded as e:
        stopped = e
        rt.log.record(rt.now_ms, "exchange", Event.WORK_LIMIT_REACHED, {
            "reason": str(e), "steps": budget.limits.steps, "horizon": budget.limits.horizon_ms / 1000,
        })
    except ActorFailed as e:
        # A bug in an actor, not in the exchange's books: stop cleanly, keep
        # every event so far, and say which actor, message and seq.
        error = e
        env = e.envelope
        rt.log.record(rt.now_ms, env.recipient, Event.ACTOR_FAILED, {
            "message": type(env.message).__name__, "message_seq": env.seq, "sender": env.sender,
            "error": f"{type(e.error).__name__}: {e.error}",
        })
    result = RunResult(scenario, seed, run_mode, rt, rt.violations, error, stopped)
    if stopped is None:
        finish_run(rt, result.status)
    if raise_on_violation and rt.violations:
        raise InvariantViolation(rt.violations)
    return result


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
