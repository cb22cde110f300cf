"""Tools for testing the exchange, and your own variants of its actors.

* :func:`scenarios`: a hypothesis strategy of valid, random scenarios
  (markets, leveraged accounts, a market maker's book, mark-price paths with
  gaps, trader orders, deposits and withdrawals); ``scenarios(policies=True)``
  adds a random ``[policy]`` table, index prices and bad oracle observations.
* :func:`run`: run a scenario (optionally with your actor subclasses) and
  get the :class:`~sandbox.RunResult` back.
* :func:`check_invariants`: the exchange's invariants as a reusable check.
* :func:`schedules`: a hypothesis strategy of delivery schedules (which
  in-flight message goes next, and each message's latency), and
  :func:`run_schedule` / :func:`run_schedule_sync` to run a scenario under one,
  checking every invariant after every delivery. A failing schedule shrinks
  towards plain FIFO delivery. :class:`ScriptedSchedule` replays exact
  recorded decisions. ``sandbox explore`` prints each shrunk failure as a
  test written with these (:mod:`sandbox._tools.failtest`).
* :func:`capture_events`: every event of the runs inside a ``with`` block, in
  the spirit of ``structlog.testing.capture_logs``.
* :func:`crash_before`: run a scenario with one actor crashing just before
  its n-th message, down for a while, then restarting from its snapshot and
  journal (in the spirit of tractor's fault helpers): a deterministic fault,
  where ``[faults] crash`` is a random one.
"""

from __future__ import annotations

import contextlib
import math
from decimal import Decimal
from typing import Any, Iterator, Mapping, Sequence

import attrs
from hypothesis import strategies as st

from sandbox._exchange.run import RunResult, run_scenario, run_scenario_sync
from sandbox._tools.explore import Budget, Run, TapeChooser, run_once, run_once_async
from sandbox._exchange.invariants import check_all
from sandbox._core.eventlog import EventLog
from sandbox._core.choosers import Chooser, ScriptedChooser, SeededChooser
from sandbox._core.delivery import Network, SeededDelivery
from sandbox._core.runtime import Runtime
from sandbox._core.actor import Violation
from sandbox._core.specs import Scenario
from sandbox._scenario.load import parse_scenario
from sandbox._scenario.parse import PRESETS
from sandbox.messages import Event

__all__ = [
    "scenarios",
    "scenario_dicts",
    "policy_dicts",
    "cross_margin_dicts",
    "run",
    "run_sync",
    "check_invariants",
    "summary_conserves_money",
    "Schedule",
    "ScriptedSchedule",
    "schedules",
    "run_schedule",
    "run_schedule_sync",
    "Run",
    "capture_events",
    "crash_before",
    "crash_before_sync",
]

SYMBOLS = ("PUNK", "BAYC", "AZUKI")


def _dec(value: Decimal) -> str:
    return format(value.quantize(Decimal("0.01")), "f")


@st.composite
def policy_dicts(draw: st.DrawFn) -> dict[str, Any]:
    """A random ``[policy]`` table: any mix of the venues' rules (see docs/reference/scenario-format.md)."""
    policy: dict[str, Any] = {}
    if draw(st.booleans()):
        policy.update(liquidation="partial", partial_threshold=draw(st.sampled_from(["0", "50", "200"])),
                      partial_fraction=draw(st.sampled_from(["0.2", "0.5"])),
                      partial_cooldown=draw(st.sampled_from(["0", "0.5", "30"])))
    policy["liquidation_fee"] = draw(st.sampled_from(["0", "0.005", "0.01"]))
    policy["adl_ranking"] = draw(st.sampled_from(["pnl_x_leverage", "pnl_x_margin_ratio", "pnl_pct"]))
    policy["fund_inventory"] = draw(st.sampled_from(["work", "close", "keep"]))
    policy["fund_price_band"] = draw(st.sampled_from(["0.02", "0.1", "0.5", "0.9"]))
    policy["bankruptcy_split"] = draw(st.sampled_from(["loss", "maintenance_margin"]))
    policy["fee_to_fund"] = draw(st.sampled_from(["0", "0.5", "1"]))
    policy["funding_interval"] = draw(st.sampled_from(["1", "2", "3600"]))
    policy["funding_divisor"] = draw(st.integers(1, 24))
    if draw(st.booleans()):
        policy["oracle_staleness"] = draw(st.sampled_from(["1", "2.5"]))
        policy["stale_liquidations"] = draw(st.sampled_from(["pause", "continue"]))
        if draw(st.booleans()):
            policy["oracle_band"] = draw(st.sampled_from(["0.1", "0.3"]))
    if draw(st.booleans()):
        policy.update(mark_price="median", impact_notional=draw(st.sampled_from(["1", "50"])))
    policy["bankruptcy_closing_fee"] = draw(st.booleans())
    if draw(st.booleans()):
        policy.update(tier_step_down=True, step_down_band=draw(st.sampled_from(["0.01", "0.05", "0.3"])))
    policy["backstop_below"] = draw(st.sampled_from(["0", "0.5", "0.666667", "1"]))
    if policy["backstop_below"] != "0" and draw(st.booleans()):
        policy["backstop_vault"] = "mm"  # the market maker as the vault (every generated scenario has one)
    if draw(st.booleans()):
        policy.update(liquidation_price="fillable", fillable_spread=draw(st.sampled_from(["0.5", "1.5", "5"])))
    policy["adl_price"] = draw(st.sampled_from(["bankruptcy", "previous_mark"]))
    if draw(st.booleans()):
        policy["socialized_loss"] = True
        if draw(st.booleans()):
            policy["fund_floor"] = draw(st.sampled_from(["1", "50"]))
    if draw(st.booleans()):
        policy.update(revenue_pool=draw(st.sampled_from(["5", "1000"])),
                      revenue_transfer=draw(st.sampled_from(["1", "400"])),
                      revenue_interval=draw(st.sampled_from(["0.5", "1", "3600"])))
    if draw(st.integers(0, 2)) == 0:
        # A venue preset, with some of the keys above overriding it (a key comes with those that depend on it).
        preset = draw(st.sampled_from(sorted(PRESETS)))
        kept: dict[str, Any] = {"preset": preset}
        for parent, dependents in _POLICY_GROUPS.items():
            if parent in policy and draw(st.booleans()):
                kept.update({k: policy[k] for k in (parent, *dependents) if k in policy})
        return kept
    return policy


# Keys of a random [policy] that only mean something beside another (the first).
_POLICY_GROUPS: dict[str, tuple[str, ...]] = {
    "liquidation": ("partial_threshold", "partial_fraction", "partial_cooldown"),
    "liquidation_fee": (), "adl_ranking": (), "fund_inventory": (), "fund_price_band": (), "bankruptcy_split": (),
    "fee_to_fund": (), "funding_interval": (), "funding_divisor": (),
    "oracle_staleness": ("stale_liquidations", "oracle_band"),
    "mark_price": ("impact_notional",),
    "bankruptcy_closing_fee": (), "tier_step_down": ("step_down_band",), "backstop_below": ("backstop_vault",),
    "liquidation_price": ("fillable_spread",), "adl_price": (),
    "socialized_loss": ("fund_floor",), "revenue_pool": ("revenue_transfer", "revenue_interval"),
}


def _tiered(draw: st.DrawFn, market: dict[str, Any], mark: Decimal) -> None:
    """Maybe give ``market`` a tier table (rates rising with notional) and a risk factor, in place."""
    if draw(st.booleans()):
        im = Decimal(market["initial_margin"])
        first, second = (mark * draw(st.sampled_from([Decimal("0.5"), Decimal(2), Decimal(5)])) for _ in range(2))
        low, high = sorted((first, second + 1))
        del market["initial_margin"], market["maintenance_margin"]
        market["tiers"] = [
            {"notional": _dec(low), "maintenance_margin": str(im / 2), "initial_margin": str(im)},
            {"notional": _dec(high), "maintenance_margin": str(im), "initial_margin": str(im * 2)},
            {"maintenance_margin": str(im * 2), "initial_margin": str(im * 3)},
        ]
    if draw(st.booleans()):
        market["risk_factor"] = draw(st.sampled_from(["0.5", "1.2", "1.5"]))


def _grouped(draw: st.DrawFn, document: dict[str, Any], least: Mapping[str, Decimal]) -> None:
    """Maybe put the first market in a fund of its own ([[funds]]); the others stay with the shared fund.

    ``least``: what each market's fund must hold at least (its opening imbalance).
    """
    symbols = [m["symbol"] for m in document["markets"]]
    if len(symbols) < 2 or not draw(st.booleans()):
        return
    balance = draw(st.sampled_from([0, 1, 10, 100])) + math.ceil(least.get(symbols[0], Decimal(0)))
    document["funds"] = [{"name": "first", "balance": str(balance), "markets": [symbols[0]]}]


@st.composite
def scenario_dicts(
    draw: st.DrawFn, max_markets: int = 2, max_pairs: int = 4, max_events: int = 8, policies: bool = False
) -> dict[str, Any]:
    """A random valid scenario as the dict a TOML file would parse to.

    With ``policies``, also a random ``[policy]`` table, index prices (so
    funding runs), and oracle observations that may be missing, zero or negative.
    """
    n_markets = draw(st.integers(1, max_markets))
    markets = []
    marks: dict[str, Decimal] = {}
    for symbol in SYMBOLS[:n_markets]:
        im = draw(st.sampled_from(["0.05", "0.1", "0.2"]))
        mark = Decimal(draw(st.integers(20, 200)))
        marks[symbol] = mark
        fee = draw(st.sampled_from(["0", "0.0015"]))
        markets.append({
            "symbol": symbol, "mark_price": str(mark), "initial_margin": im,
            "maintenance_margin": str(Decimal(im) / 2), "tick_size": "0.01", "lot_size": "0.01",
            "maker_fee": fee, "taker_fee": fee,
        })
    accounts: list[dict[str, Any]] = [{"id": "mm", "deposit": "1000000"}]
    for i in range(draw(st.integers(1, max_pairs))):
        symbol = draw(st.sampled_from(sorted(marks)))
        size = Decimal(draw(st.integers(1, 500))) / 100
        entry = marks[symbol] + Decimal(draw(st.integers(-500, 500))) / 100
        notional = size * entry
        for j, sign in enumerate((1, -1)):
            deposit = notional * Decimal(draw(st.integers(3, 60))) / 100
            accounts.append({
                "id": f"t{i}{'ls'[j]}", "deposit": _dec(deposit),
                "positions": [{"market": symbol, "size": str(sign * size), "entry_price": str(entry)}],
            })
    orders = []
    for symbol, mark in marks.items():
        for side, direction in (("buy", -1), ("sell", 1)):
            for _ in range(draw(st.integers(0, 3))):
                offset = Decimal(draw(st.integers(1, 3000))) / 100
                price = max(mark + direction * offset, Decimal("0.01"))
                orders.append({"account": "mm", "market": symbol, "side": side, "price": _dec(price),
                               "size": str(Decimal(draw(st.integers(1, 300))) / 100)})
    events: list[dict[str, Any]] = []
    traders = [a["id"] for a in accounts[1:]]
    current = dict(marks)
    for k in range(draw(st.integers(1, max_events))):
        at = k + 1
        kind = draw(st.sampled_from(["mark_price", "mark_price", "mark_price", "order", "deposit", "withdraw"]))
        if kind == Event.MARK_PRICE:
            symbol = draw(st.sampled_from(sorted(marks)))
            move = Decimal(draw(st.integers(-35, 35))) / 100
            current[symbol] = max(current[symbol] * (1 + move), Decimal("1"))
            events.append({"at": at, "type": "mark_price", "market": symbol, "price": _dec(current[symbol])})
        elif kind == "order":
            symbol = draw(st.sampled_from(sorted(marks)))
            offset = Decimal(draw(st.integers(-1000, 1000))) / 100
            events.append({
                "at": at, "type": "order", "account": draw(st.sampled_from(traders)), "market": symbol,
                "side": draw(st.sampled_from(["buy", "sell"])),
                "price": _dec(max(current[symbol] + offset, Decimal("0.01"))),
                "size": str(Decimal(draw(st.integers(1, 200))) / 100),
                "tif": draw(st.sampled_from(["gtc", "ioc"])),
            })
        else:
            events.append({"at": at, "type": kind, "account": draw(st.sampled_from(traders)),
                           "amount": str(Decimal(draw(st.integers(1, 2000))) / 100)})
    document: dict[str, Any] = {
        "name": "generated", "seed": draw(st.integers(0, 2**32)),
        "insurance_fund": {"balance": str(draw(st.integers(0, 50)))},
        "markets": markets, "accounts": accounts, "orders": orders, "events": events,
    }
    if policies:
        policy = document["policy"] = draw(policy_dicts())
        if len(marks) > 1 and draw(st.booleans()):
            # A cross-margined pair, so one market's price can put an account in
            # another market underwater (and a stale market can hold it).
            a, b = sorted(marks)[:2]
            size = Decimal(draw(st.integers(1, 300))) / 100
            for name, sign in (("xl", 1), ("xs", -1)):
                accounts.append({
                    "id": name, "deposit": _dec(size * (marks[a] + marks[b]) * Decimal(draw(st.integers(5, 40))) / 100),
                    "positions": [{"market": a, "size": str(sign * size), "entry_price": str(marks[a])},
                                  {"market": b, "size": str(-sign * size), "entry_price": str(marks[b])}],
                })
        for m in markets:
            premium = Decimal(draw(st.integers(-10, 10))) / 100
            m["index_price"] = _dec(marks[m["symbol"]] * (1 + premium))
            _tiered(draw, m, marks[m["symbol"]])
        _grouped(draw, document, {})
        median = policy.get("mark_price") == "median"
        for e in events:
            if e["type"] != "mark_price":
                continue
            if median:  # the mark comes from the book and the index
                e["type"] = "index_price"
            elif draw(st.integers(0, 3)) == 0:  # a bad observation the oracle must refuse
                e["type"] = "oracle_price"
                bad = draw(st.sampled_from([None, "0", "-1"]))
                if bad is None:
                    del e["price"]
                else:
                    e["price"] = bad
    return document


@st.composite
def cross_margin_dicts(draw: st.DrawFn, max_markets: int = 3, max_accounts: int = 5) -> dict[str, Any]:
    """A random cross-margin crash as the dict a TOML file would parse to.

    Two or three markets; accounts holding positions in several of them at
    entry prices that need not net (a real snapshot), a well-margined house
    long and short in every market (the balancing counterparties), thin books (zero to two levels a side), crashes
    and pumps of 5% to 95% in one tick, a random ``[policy]`` (a venue preset
    or any mix of the venues' rules), isolated margin on some accounts, and
    a network latency: the kinds of state where cross-margin bankruptcy, the
    fund's budgeting and ADL are hardest to get right.
    """
    n_markets = draw(st.integers(2, max_markets))
    markets, marks = [], {}
    for symbol in SYMBOLS[:n_markets]:
        im = draw(st.sampled_from(["0.02", "0.05", "0.1"]))
        mark = Decimal(draw(st.integers(20, 200)))
        marks[symbol] = mark
        markets.append({
            "symbol": symbol, "mark_price": str(mark), "initial_margin": im,
            "maintenance_margin": str(Decimal(im) / 2), "tick_size": "0.01", "lot_size": "0.01",
        })
    accounts: list[dict[str, Any]] = [{"id": "mm", "deposit": "1000000"}]
    net = {m: Decimal(0) for m in marks}
    venues = draw(st.booleans())  # the venues' market options: tiers, a risk factor, a taker fee, fund groups
    if venues:
        for m in markets:
            _tiered(draw, m, marks[m["symbol"]])
            m["taker_fee"] = draw(st.sampled_from(["0", "0.0015", "0.01"]))
    for i in range(draw(st.integers(1, max_accounts))):
        held = draw(st.lists(st.sampled_from(sorted(marks)), min_size=1, max_size=n_markets, unique=True))
        positions, notional = [], Decimal(0)
        for symbol in held:
            size = Decimal(draw(st.integers(1, 300))) / 100 * draw(st.sampled_from([1, -1]))
            entry = marks[symbol] * (1 + Decimal(draw(st.integers(-10, 10))) / 100)
            positions.append({"market": symbol, "size": str(size), "entry_price": _dec(entry)})
            net[symbol] += size
            notional += abs(size) * entry
        deposit = notional * Decimal(draw(st.integers(2, 40))) / 100
        account: dict[str, Any] = {"id": f"x{i}", "deposit": _dec(deposit), "positions": positions}
        # Isolated margin on some accounts: one of its markets in a bucket with a share of the deposit.
        if Decimal(_dec(deposit)) > 0 and draw(st.integers(0, 2)) == 0:
            share = Decimal(_dec(deposit * Decimal(draw(st.integers(1, 100))) / 100))
            if share > 0:
                account["isolated"] = {draw(st.sampled_from(held)): str(share)}
        accounts.append(account)
    imbalance = Decimal(0)
    gross = {m: Decimal(0) for m in marks}
    for a in accounts[1:]:
        for p in a["positions"]:
            gross[p["market"]] += abs(Decimal(p["size"]))
    for symbol, size in net.items():
        # A house long and a house short, opened at the mark and margined to survive
        # every move drawn below, large enough to take the whole market's exposure:
        # ADL always has a solvent counterparty on either side.
        house = gross[symbol] + Decimal("0.01")
        for name, held in ((f"hl{symbol.lower()}", house), (f"hs{symbol.lower()}", -house - size)):
            accounts.append({"id": name, "deposit": _dec(abs(held) * marks[symbol] * 20),
                             "positions": [{"market": symbol, "size": str(held), "entry_price": str(marks[symbol])}]})
    per_market = {m: Decimal(0) for m in marks}
    for a in accounts:
        for p in a.get("positions", ()):
            imbalance -= Decimal(p["size"]) * Decimal(p["entry_price"])
            per_market[p["market"]] -= Decimal(p["size"]) * Decimal(p["entry_price"])
    orders = []
    for symbol, mark in marks.items():
        for side, direction in (("buy", -1), ("sell", 1)):
            for _ in range(draw(st.integers(0, 2))):
                offset = mark * Decimal(draw(st.integers(1, 60))) / 100
                orders.append({"account": "mm", "market": symbol, "side": side,
                               "price": _dec(max(mark + direction * offset, Decimal("0.01"))),
                               "size": str(Decimal(draw(st.integers(1, 200))) / 100)})
    events: list[dict[str, Any]] = []
    current = dict(marks)
    for k in range(draw(st.integers(1, 4))):
        symbol = draw(st.sampled_from(sorted(marks)))
        move = Decimal(draw(st.integers(5, 95))) / 100 * draw(st.sampled_from([-1, 1]))
        current[symbol] = max(current[symbol] * (1 + move), Decimal("0.05"))
        events.append({"at": k + 1, "type": "mark_price", "market": symbol, "price": _dec(current[symbol])})
    policy = draw(policy_dicts())
    for key in ("funding_interval", "funding_divisor", "oracle_staleness", "stale_liquidations", "oracle_band",
                "mark_price", "impact_notional"):
        policy.pop(key, None)  # no index prices here: funding and the median mark need one
    latency = draw(st.sampled_from(["0", "0.001", "0.01"]))
    document: dict[str, Any] = {
        "name": "cross_margin", "seed": draw(st.integers(0, 2**32)),
        # The fund holds at least what the opening entry costs do not net to: a
        # snapshot's books lack that much, and when every position is closed
        # somebody pays it (see Scenario.opening_imbalance).
        "insurance_fund": {"balance": str(draw(st.sampled_from([0, 1, 10, 100, 1000, 1_000_000]))
                                          + math.ceil(abs(imbalance)))},
        "network": {"latency": {"min": "0", "max": latency}},
        "markets": markets, "accounts": accounts, "orders": orders, "events": events, "policy": policy,
    }
    if venues:
        # Each fund holds at least what its markets' entry costs do not net to.
        _grouped(draw, document, {m: abs(v) for m, v in per_market.items()})
    return document


def scenarios(**kwargs: Any) -> st.SearchStrategy[Scenario]:
    """A hypothesis strategy of random valid :class:`Scenario` objects."""
    return scenario_dicts(**kwargs).map(lambda d: parse_scenario(d, "<generated>"))


async def run(scenario: Scenario, **kwargs: Any) -> RunResult:
    """Run ``scenario`` inside an existing trio run (e.g. a pytest-trio test)."""
    return await run_scenario(scenario, **kwargs)


def run_sync(scenario: Scenario, **kwargs: Any) -> RunResult:
    """Run ``scenario`` from synchronous code."""
    return run_scenario_sync(scenario, **kwargs)


def check_invariants(runtime: Runtime, scenario: Scenario, *, quiet: bool = True) -> list[Violation]:
    """Every invariant of the exchange on ``runtime``'s current state."""
    return check_all(runtime, scenario.fund_balance, quiet=quiet)


def summary_conserves_money(summary: Mapping[str, Any], initial_fund: str) -> bool:
    """Recompute conservation from ``summary.json`` alone, in exact decimals.

    Independent of :mod:`sandbox._exchange.invariants`: the summary's own numbers must
    show balances + fund + fees + unrealized PnL == deposits - withdrawals +
    initial fund + what a revenue pool paid in (``revenue_received``) + the
    opening imbalance.
    """
    marks = {m: Decimal(v["mark_price"]) for m, v in summary["markets"].items()}

    def upnl(positions: Mapping[str, Any]) -> Decimal:
        return sum((Decimal(p["size"]) * marks[m] - Decimal(p["entry_value"]) for m, p in positions.items()),
                   Decimal(0))

    total = Decimal(summary["insurance_fund"]["final"]) + Decimal(summary["fees"])
    total += upnl(summary["insurance_fund"]["positions"])
    external = Decimal(initial_fund) + Decimal(summary.get("opening_imbalance", "0"))
    external += Decimal(summary["insurance_fund"].get("revenue_received", "0"))
    for acct in summary["accounts"].values():
        total += Decimal(acct["balance"]) + upnl(acct["positions"])
        external += Decimal(acct["deposited"]) - Decimal(acct["withdrawn"])
    return total == external


class Schedule:
    """A delivery schedule: the tape of decisions a run reads (see :class:`sandbox._tools.explore.TapeChooser`)."""

    def __init__(self, tape: bytes) -> None:
        self.tape = tape

    def chooser(self) -> TapeChooser:
        return TapeChooser(self.tape)

    def __repr__(self) -> str:
        return f"Schedule({self.tape!r})"


class ScriptedSchedule:
    """A schedule of exact recorded decisions, as a replay file holds them (see :class:`ScriptedChooser`).

    Strict where :class:`Schedule` is tolerant: a run that asks for a
    different decision raises :class:`sandbox._core.choosers.ReplayDiverged`.
    """

    def __init__(self, decisions: Sequence[tuple[str, int, int, int]]) -> None:
        self.decisions = [tuple(d) for d in decisions]

    def chooser(self) -> ScriptedChooser:
        return ScriptedChooser(self.decisions)  # type: ignore[arg-type]

    def __repr__(self) -> str:
        return f"ScriptedSchedule({self.decisions!r})"


def schedules(length: int = 256) -> st.SearchStrategy[Schedule]:
    """Schedules of ``length`` decisions (later decisions deliver the oldest message, no latency)."""
    return st.binary(min_size=length, max_size=length).map(Schedule)


async def run_schedule(
    scenario: Scenario, schedule: Schedule | ScriptedSchedule, *, actors: Mapping[str, type] | None = None,
    find: str | None = None, budget: Budget | None = None,
) -> Run:
    """Run ``scenario`` under ``schedule`` (inside trio, e.g. a pytest-trio test).

    Every invariant is checked after every delivery and at every quiet point;
    the run stops at the first failure. ``run.failure`` says what failed (None
    if nothing did), ``run.events`` is the event log, ``run.runtime`` holds
    every actor's final state and ``run.decisions`` replays the run. A run
    that exceeds ``budget`` (see :class:`sandbox._tools.explore.Budget`) stops as a
    ``livelock``.
    """
    return await run_once_async(scenario, schedule.chooser(), actors=actors, find=find, budget=budget)


def run_schedule_sync(
    scenario: Scenario, schedule: Schedule | ScriptedSchedule, *, actors: Mapping[str, type] | None = None,
    find: str | None = None, budget: Budget | None = None,
) -> Run:
    """:func:`run_schedule` from synchronous code."""
    return run_once(scenario, schedule.chooser(), actors=actors, find=find, budget=budget)


@contextlib.contextmanager
def capture_events(*kinds: str) -> Iterator[list[dict[str, Any]]]:
    """Collect the events of every run that starts inside the block (only these ``kinds``, if any are given).

    ::

        with capture_events("adl", "fund_takeover") as events:
            run_scenario_sync(resolve_scenario("cascade_adl"))
        assert [e["kind"] for e in events][:1] == ["fund_takeover"]

    Like ``structlog.testing.capture_logs``, it hooks the event log for the
    duration of the block (not thread-safe: one block at a time): every
    :class:`~sandbox._core.eventlog.EventLog` made inside it gets a listener,
    so lazily recorded events are made as they happen, with the same values.
    """
    captured: list[dict[str, Any]] = []
    original = EventLog.__init__

    def init(self: EventLog, *args: Any, **kwargs: Any) -> None:
        original(self, *args, **kwargs)
        self.subscribe(captured.append, kinds=kinds or None)

    EventLog.__init__ = init  # type: ignore[method-assign]
    try:
        yield captured
    finally:
        EventLog.__init__ = original  # type: ignore[method-assign]


class _CrashBefore:
    """A chooser that crashes one actor at its ``message``-th delivery (and never again).

    The delivery asks the chooser about a crash only for deliveries to the
    actors that may crash, so the n-th question is the n-th message to it.
    """

    def __init__(self, inner: Chooser, message: int) -> None:
        self._inner, self._left = inner, message

    def choose(self, n: int) -> int:
        return self._inner.choose(n)

    def latency(self, low: int, high: int) -> int:
        return self._inner.latency(low, high)

    def chance(self, ppm: int) -> bool:
        self._left -= 1
        return self._left == 0


async def crash_before(scenario: Scenario, actor: str, message: int, *, downtime_ms: int = 0,
                       seed: int | None = None, snapshot_every: int = 20, **kwargs: Any) -> RunResult:
    """Run ``scenario`` with ``actor`` crashing just before its ``message``-th message (1: the first).

    The actor stays down ``downtime_ms`` of virtual time (messages to it
    wait), then restarts from its last snapshot (every ``snapshot_every``
    messages) plus the journal of what it handled since; a restart that does
    not rebuild the state it lost is a violation. Deliveries are otherwise the
    seeded ones of ``seed`` (the scenario's by default). ``actor`` is a role
    that can crash (``oracle``, ``clearing``, ``margin_monitor``,
    ``liquidation_engine``, ``insurance_fund``, ``adl``); ``kwargs`` go to
    :func:`sandbox.run_scenario` (``actors=`` for your variants). If the actor
    receives fewer than ``message`` messages, nothing crashes.
    """
    if message < 1:
        raise ValueError(f"message must be 1 or more, got {message}")
    faults = attrs.evolve(scenario.faults, crash=1, crash_actors=(actor,), crash_downtime_ms=downtime_ms,
                          snapshot_every=snapshot_every)
    if scenario.faults.crash or scenario.faults.delay or scenario.faults.duplicate:
        raise ValueError("crash_before runs a scenario without [faults] of its own")
    scenario = attrs.evolve(scenario, faults=faults)
    seed = scenario.seed if seed is None else seed
    chooser = _CrashBefore(SeededChooser(seed), message)
    delivery = SeededDelivery(seed, chooser=chooser, network=Network(*scenario.latency_ms), faults=faults)
    return await run_scenario(scenario, seed=seed, delivery=delivery, **kwargs)


def crash_before_sync(scenario: Scenario, actor: str, message: int, **kwargs: Any) -> RunResult:
    """:func:`crash_before` from synchronous code."""
    import trio

    return trio.run(lambda: crash_before(scenario, actor, message, **kwargs))
