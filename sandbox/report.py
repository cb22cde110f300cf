"""The teaching report: one self-contained HTML page that shows a run.

``sandbox run SCENARIO --report FILE.html`` records a run with a
:class:`Recorder` and writes it with :func:`write_report`. The page works
offline: every chart is an SVG that matplotlib renders into the HTML itself,
the one script (the stepping view, :func:`stepper_html`) is inline and
allowed by its hash, and a Content-Security-Policy forbids every other
script and loading anything from anywhere.

What it shows: the mark price of each market (with the trades, and the
bankruptcy prices of liquidations); the equity of the most interesting
accounts against their maintenance margin; the insurance fund's balance with
a marker for each surplus, takeover, payout and ADL; open interest; and a
message sequence diagram of the actors (:func:`summarise_trace` keeps it
readable when a run delivers thousands of messages).

**The x axis.** Virtual time does not move while the exchange works through
the cascade of messages one scripted event sets off (see
``docs/architecture.md``), so a plain time axis would draw a whole
liquidation as one vertical line. Every chart therefore gives each instant of
virtual time an equal-width *band* and draws the cascade inside it in the
order the messages were delivered: x = band + the fraction of that instant's
deliveries done so far. The sequence diagram uses the same order.

**Sampling.** The recorder samples the true state (clearing's accounts, the
oracle's marks, the fund) after every delivery to an actor that owns that
state, keeping a point only when a value changed, so the charts see states
that never reach a quiet point (an account's equity below its maintenance
margin just before it is liquidated). Amounts become floats here, for
plotting only; the text of the report quotes the exact decimal strings of
the events and of ``summary.json``.
"""

from __future__ import annotations

import base64
import hashlib
import html
import io
import json
import math
import os
import re
from bisect import bisect_left
from collections import Counter
from itertools import zip_longest
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Final, Iterable, Sequence

import attrs

from actors._common import ADL, CLEARING, ENGINE, FUND, MONITOR, ORACLE, book_name, equity, maintenance_margin

from . import messages as msgs
from .eventlog import EventLog, time_seconds
from .money import MONEY_DECIMALS, PRICE_DECIMALS, SIZE_DECIMALS, fmt_money, fmt_price, fmt_size
from .narrate import narrate
from .plain import plain
from .runtime import Envelope, Runtime

if TYPE_CHECKING:
    from matplotlib.figure import Figure

# matplotlib is imported by the functions that draw, on first use: recording a
# run, summarising a trace or checking a path does not load it.

__all__ = [
    "Recorder",
    "Recording",
    "Delivered",
    "Arrow",
    "Gap",
    "ReportPathError",
    "ReportLogError",
    "recording_from_log",
    "stepper_html",
    "step_data",
    "check_report_path",
    "summarise_trace",
    "choose_accounts",
    "render_html",
    "write_report",
    "SEQUENCE_LIMIT",
    "MAX_ACCOUNTS",
]

# The sequence diagram draws at most this many rows; beyond it, it summarises.
SEQUENCE_LIMIT: Final = 300
# The stepping view shows this many price levels of each side of a book.
STEP_BOOK_LEVELS: Final = 3
# At most this many accounts get an equity chart.
MAX_ACCOUNTS: Final = 8
# Inside each band of the x axis the cascade is drawn between these fractions.
_PAD: Final = 0.06

# Actors whose deliveries can change what the charts show.
_STATEFUL: Final = frozenset({CLEARING, ORACLE, FUND})

# Message categories: a colour in the diagram, and which rows are "the flow".
MARKET_DATA, TRADING, LIQUIDATION, FUND_FLOW, ADL_FLOW = "market data", "trading", "liquidation", "fund", "ADL"
FLOW: Final = frozenset({LIQUIDATION, FUND_FLOW, ADL_FLOW})
COLOURS: Final = {
    MARKET_DATA: "#8a8f98",
    TRADING: "#3b4a5a",
    LIQUIDATION: "#c62828",
    FUND_FLOW: "#7b1fa2",
    ADL_FLOW: "#1565c0",
}
_LIQUIDATION_TYPES: Final = frozenset({
    "LiquidationRequested", "FreezeAccount", "UnfreezeAccount", "AccountFrozen", "CancelAccountOrders",
    "AccountOrdersCancelled", "TakeOverPosition", "LiquidationSettled", "LiquidationEnded",
})
_FUND_TYPES: Final = frozenset({"PositionTakenOver", "SurplusTransferred"})
_ADL_TYPES: Final = frozenset({
    "DeleverageRequested", "DeleverageAbandoned", "AdlCandidatesRequested", "AdlCandidates", "Deleverage",
    "Deleveraged",
})
# A sequence diagram that must be cut keeps the flows that start with these,
# from WINDOW_BEFORE rows before to WINDOW_AFTER rows after.
ANCHORS: Final = ("LiquidationRequested", "PositionTakenOver", "DeleverageRequested", "DeleverageAbandoned")
WINDOW_BEFORE: Final = 2
WINDOW_AFTER: Final = 30


# --- recording ------------------------------------------------------------------------


@attrs.frozen
class Delivered:
    """One delivered message, as the sequence diagram draws it."""

    index: int  # delivery order, from 0
    time_ms: int
    sender: str
    recipient: str
    type: str
    detail: str
    category: str


@attrs.frozen
class Recording:
    """Everything the report draws. Positions ``p`` count deliveries done (0 = the start)."""

    scenario: Any
    seed: int
    mode: str
    summary: dict[str, Any]
    violations: list[Any]
    deliveries: list[Delivered]
    marks: dict[str, list[tuple[int, int]]]
    open_interest: dict[str, list[tuple[int, int]]]
    accounts: dict[str, list[tuple[int, tuple[int, int]]]]  # (p, (equity, maintenance margin))
    fund: list[tuple[int, tuple[int, int]]]  # (p, (balance, available))
    events: list[tuple[int, dict[str, Any]]]  # (p, event)
    # For the stepping view: per delivery, what it changed (see Recorder.after_delivery); None = nothing.
    steps: list[dict[str, Any] | None] = attrs.field(factory=list)


def _put(series: list[tuple[int, Any]], p: int, value: Any) -> None:
    """Append (p, value) if the value changed; a later sample at the same p replaces the earlier."""
    if series and series[-1][1] == value:
        return
    if series and series[-1][0] == p:
        series.pop()
        if series and series[-1][1] == value:
            return
    series.append((p, value))


class Recorder:
    """Samples a run for the report.

    ``recorder.attach(log)`` before the run, pass ``**recorder.run_options()``
    to :func:`sandbox.run_scenario`, then ``recorder.finish(result)``.

    Sampling every account after every delivery would cost (accounts x
    deliveries); instead a delivery to clearing re-reads only the account the
    message names (clearing's handlers change no other), a new mark re-reads
    every account, and every quiet point re-reads everything, so a custom
    clearing that does more is still caught there. Open interest is kept as
    running totals of each account's contribution, plus the fund's lots.
    """

    def __init__(self) -> None:
        self.deliveries: list[Delivered] = []
        self.marks: dict[str, list[tuple[int, int]]] = {}
        self.open_interest: dict[str, list[tuple[int, int]]] = {}
        self.accounts: dict[str, list[tuple[int, tuple[int, int]]]] = {}
        self.fund: list[tuple[int, tuple[int, int]]] = []
        self.events: list[tuple[int, dict[str, Any]]] = []
        self._pending: list[dict[str, Any]] = []
        self._held: dict[str, dict[str, int]] = {}  # account -> market -> size
        self._oi: dict[str, list[int]] = {}  # market -> [long, short] over accounts (not the fund)
        # The stepping view's state as last shown: what a delivery changed is the difference.
        self.steps: list[dict[str, Any] | None] = []
        self._shown: dict[str, dict[str, Any]] = {"books": {}, "accounts": {}, "marks": {}, "fund": {}}

    def attach(self, log: EventLog) -> None:
        log.subscribe(self._pending.append)

    def run_options(self) -> dict[str, Any]:
        return {"after_delivery": self.after_delivery, "observe": self.observe}

    # Events are recorded inside a handler; they belong to the delivery that is
    # under way, so they wait until after_delivery knows its position. Events
    # recorded at a quiet point (invariant violations) are placed by observe.
    def _flush(self, p: int) -> list[dict[str, Any]]:
        flushed = list(self._pending)
        self.events.extend((p, e) for e in flushed)
        self._pending.clear()
        return flushed

    def after_delivery(self, runtime: Runtime, envelope: Envelope) -> None:
        if not self.deliveries and envelope.recipient not in _STATEFUL:
            self._sample(runtime, 0, None)  # nothing sampled has changed yet: this is the start
        message = envelope.message
        self.deliveries.append(Delivered(  # the names and details may quote user text: made plain here
            len(self.deliveries), runtime.now_ms, plain(envelope.sender), plain(envelope.recipient),
            type(message).__name__, plain(describe(message)), category(message, envelope.sender, envelope.recipient),
        ))
        p = len(self.deliveries)
        said = self._flush(p)
        account = getattr(message, "account", None)
        accounts: tuple[str, ...] | None = ()
        if p == 1 or envelope.recipient == ORACLE:
            accounts = None
        elif envelope.recipient == CLEARING:
            accounts = (account,) if isinstance(account, str) else None
        if accounts != () or envelope.recipient == FUND:
            self._sample(runtime, p, accounts)
        book = envelope.recipient if envelope.recipient.startswith("book:") else None
        self.steps.append(self._step(runtime, accounts, None if p == 1 else book, said,
                                     account if isinstance(account, str) else None))

    def observe(self, runtime: Runtime) -> None:
        p = len(self.deliveries)
        said = self._flush(p)
        self._sample(runtime, p, None)
        if self.steps:  # what a quiet point finds belongs to the delivery before it
            self.steps[-1] = _merge_steps([self.steps[-1], self._step(runtime, None, None, said, None)])

    def _step(self, rt: Runtime, accounts: Iterable[str] | None, book: str | None, said: list[dict[str, Any]],
              account: str | None) -> dict[str, Any] | None:
        """What the stepping view shows as changed by one delivery, as exact decimal strings.

        The same accounts as :meth:`_sample` reads (None: every account), the
        book the message went to (None: every book), the marks and the fund;
        only values that differ from the last shown are kept.
        """
        clearing, fund, marks = rt[CLEARING], rt[FUND], rt[ORACLE].marks
        shown = self._shown
        delta: dict[str, Any] = {}

        def put(part: str, key: str, value: Any) -> None:
            if shown[part].get(key) != value:
                shown[part][key] = value
                delta.setdefault(part, {})[key] = value

        for market, price in marks.items():
            put("marks", market, fmt_price(price))
        books = [book_name(m) for m in clearing.markets] if book is None else [book]
        for name in books:
            actor = rt[name]
            put("books", name[len("book:"):], {side: [[fmt_price(px), fmt_size(sz)] for px, sz in
                                                       actor.depth(side)[:STEP_BOOK_LEVELS]]
                                               for side in ("buy", "sell")})
        for acct_id in clearing.accounts if accounts is None else accounts:
            acct = clearing.accounts.get(acct_id)
            if acct is None:
                continue
            eq, mm, triples = _account_values(clearing, acct, marks)
            put("accounts", acct_id, [fmt_money(acct.balance), fmt_money(eq), fmt_money(mm),
                                      ", ".join(f"{fmt_held(fmt_size(sz))} {m}" for m, sz, _ in triples) or "none"])
        available = fund.available
        put("fund", "fund", [fmt_money(fund.balance), fmt_money(fund.balance - available), fmt_money(available)])
        involved = list(dict.fromkeys(([account] if account is not None else []) + list(delta.get("accounts", ()))))
        if involved:
            delta["involved"] = involved
        sentences = [x for e in said if (x := narrate(e)) is not None]
        if sentences:
            delta["said"] = sentences
        return delta or None

    def _sample(self, rt: Runtime, p: int, accounts: Iterable[str] | None) -> None:
        """Sample at position p: the marks, the fund, and ``accounts`` (None: every account)."""
        clearing, fund = rt[CLEARING], rt[FUND]
        marks = rt[ORACLE].marks
        for market, price in marks.items():
            _put(self.marks.setdefault(market, []), p, price)
        for market in clearing.markets:
            self._oi.setdefault(market, [0, 0])
        for account in clearing.accounts if accounts is None else accounts:
            acct = clearing.accounts.get(account)
            if acct is None:
                continue
            eq, mm, triples = _account_values(clearing, acct, marks)
            _put(self.accounts.setdefault(account, []), p, (eq, mm))
            held = {m: size for m, size, _ in triples}
            before = self._held.get(account, {})
            if held != before:
                for sign, sizes in ((-1, before), (1, held)):
                    for m, size in sizes.items():
                        self._oi[m][0 if size > 0 else 1] += sign * abs(size)
                self._held[account] = held
        oi = {m: list(sides) for m, sides in self._oi.items()}
        for lot in fund.lots.values():
            oi[lot.market][0 if lot.size > 0 else 1] += abs(lot.size)
        for market, (long, short) in oi.items():
            if long == short:  # between the two fills of one trade the sides differ for a moment
                _put(self.open_interest.setdefault(market, []), p, long)
        _put(self.fund, p, (fund.balance, fund.available))

    def finish(self, result: Any) -> Recording:
        """The recording of a finished run (``result`` is its :class:`~sandbox.RunResult`)."""
        said = self._flush(len(self.deliveries))
        if said and self.steps:
            self.steps[-1] = _merge_steps([self.steps[-1], {"said": [x for e in said if (x := narrate(e))]}])
        return Recording(
            result.scenario, result.seed, result.mode, result.summary(), list(result.violations),
            self.deliveries, self.marks, self.open_interest, self.accounts, self.fund, self.events, self.steps,
        )


def _account_values(clearing: Any, acct: Any, marks: dict[str, int]) -> tuple[int, int, list[tuple[str, int, int]]]:
    """An account's equity and maintenance margin at ``marks``, and its open positions (market, size, entry)."""
    triples = [(m, pos.size, pos.entry_value) for m, pos in acct.positions.items() if pos.size]
    return equity(acct.balance, triples, marks), maintenance_margin(triples, marks, clearing.markets), triples


def _merge_steps(steps: Iterable[dict[str, Any] | None]) -> dict[str, Any] | None:
    """Several deliveries' changes as one step: later values win, accounts and sentences add up."""
    out: dict[str, Any] = {}
    for step in steps:
        for part, value in (step or {}).items():
            if part in ("involved", "said"):
                out[part] = list(dict.fromkeys(out.get(part, []) + value)) if part == "involved" else \
                    out.get(part, []) + value
            else:
                out.setdefault(part, {}).update(value)
    return out or None


def _signed_trade(size: int) -> str:
    return f"buys {fmt_size(size)}" if size > 0 else f"sells {fmt_size(-size)}"


def describe(message: Any) -> str:
    """A few words of what a message carries, for the sequence diagram."""
    m = message
    if isinstance(m, (msgs.MarkPriceObserved, msgs.MarkPriceUpdated)):
        return f"{m.market} {fmt_price(m.price)}"
    if isinstance(m, msgs.ScriptedEvent):
        e = m.event
        kind = getattr(e, "type", "order")
        return f"{kind} ({getattr(e, 'account', '') or ''})" if kind != "order" else f"order ({e.account})"
    if isinstance(m, msgs.PlaceOrder):
        return f"{m.account} {m.side} {fmt_size(m.size)} {m.market} @ {fmt_price(m.price)}"
    if isinstance(m, msgs.SubmitOrder):
        o = m.order
        who = {"liquidation": f"liquidation of {o.account}: ", "fund": "fund: "}.get(o.kind, f"{o.account} ")
        return f"{who}{o.side} {fmt_size(o.size)} {o.market} @ {fmt_price(o.price)} {o.tif.upper()}"
    if isinstance(m, msgs.Fill):
        return f"{m.account} {_signed_trade(m.size)} @ {fmt_price(m.price)}"
    if isinstance(m, msgs.OrderClosed):
        return f"{m.account}: {m.reason}, {fmt_size(m.unfilled)} unfilled"
    if isinstance(m, msgs.LiquidationRequested):
        return m.account
    if isinstance(m, (msgs.TakeOverPosition, msgs.PositionTakenOver)):
        return f"{m.account} {fmt_size(m.size)} {m.market} @ {fmt_price(m.price)}"
    if isinstance(m, msgs.DeleverageRequested):
        return f"{fmt_size(m.size)} {m.market} @ {fmt_price(m.price)}"
    if isinstance(m, msgs.Deleverage):
        return f"{m.account} {fmt_size(m.size)} {m.market} @ {fmt_price(m.price)}"
    if isinstance(m, msgs.AdlCandidates):
        return f"{len(m.candidates)} candidates"
    account = getattr(m, "account", None)
    return account if isinstance(account, str) else ""


def category(message: Any, sender: str = "", recipient: str = "") -> str:
    """Which part of the protocol a message belongs to (the diagram's colour)."""
    name = type(message).__name__
    if name in ("MarkPriceObserved", "MarkPriceUpdated"):
        return MARKET_DATA
    if name in _LIQUIDATION_TYPES:
        return LIQUIDATION
    if name in _FUND_TYPES:
        return FUND_FLOW
    if name in _ADL_TYPES:
        return ADL_FLOW
    kind = getattr(getattr(message, "order", message), "kind", None)
    if isinstance(message, msgs.Fill) and message.liquidity == "adl":
        return ADL_FLOW
    if kind == "liquidation":
        return LIQUIDATION
    if kind == "fund":
        return FUND_FLOW
    ends = (sender, recipient)
    if ENGINE in ends:
        return LIQUIDATION
    if FUND in ends:
        return FUND_FLOW
    if ADL in ends:
        return ADL_FLOW
    return TRADING


# --- the sequence diagram's rows ----------------------------------------------------------


@attrs.frozen
class Arrow:
    """A drawn message; ``count`` > 1 when identical consecutive messages were collapsed."""

    first: Delivered
    count: int = 1
    same_detail: bool = True  # False when collapsed messages carried different details

    @property
    def detail(self) -> str:
        return self.first.detail if self.same_detail else ""


@attrs.frozen
class Gap:
    """Messages not drawn, counted by type."""

    count: int
    by_type: tuple[tuple[str, int], ...]
    from_ms: int
    to_ms: int

    def label(self, most: int = 4) -> str:
        shown = ", ".join(f"{name} ×{n:,}" for name, n in self.by_type[:most])
        more = len(self.by_type) - most
        rest = f", {more} other kind{'s' if more > 1 else ''}" if more > 0 else ""
        when = fmt_time(self.from_ms) if self.from_ms == self.to_ms else \
            f"{fmt_time(self.from_ms)} to {fmt_time(self.to_ms)}"
        noun = "message" if self.count == 1 else "messages"
        return f"{self.count:,} {noun} not drawn ({when}): {shown}{rest}"


Row = Arrow | Gap


def _gap(rows: Sequence[Row]) -> Gap:
    counts: Counter[str] = Counter()
    times: list[int] = []
    for r in rows:
        if isinstance(r, Arrow):
            counts[r.first.type] += r.count
            times.append(r.first.time_ms)
        else:
            counts.update(dict(r.by_type))
            times += [r.from_ms, r.to_ms]
    ordered = tuple(sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))
    return Gap(sum(counts.values()), ordered, min(times), max(times))


def _merge_gaps(rows: Iterable[Row]) -> list[Row]:
    out: list[Row] = []
    for r in rows:
        if isinstance(r, Gap) and out and isinstance(out[-1], Gap):
            out[-1] = _gap([out[-1], r])
        else:
            out.append(r)
    return out


def _collapse(deliveries: Sequence[Delivered]) -> list[Row]:
    out: list[Row] = []
    for d in deliveries:
        last = out[-1] if out else None
        if (isinstance(last, Arrow) and (last.first.sender, last.first.recipient, last.first.type, last.first.time_ms)
                == (d.sender, d.recipient, d.type, d.time_ms)):
            out[-1] = Arrow(last.first, last.count + 1, last.same_detail and last.first.detail == d.detail)
        else:
            out.append(Arrow(d))
    return out


def _is_flow(row: Row) -> bool:
    return isinstance(row, Arrow) and row.first.category in FLOW


def _fold_background(rows: Sequence[Row], keep_run: int = 2) -> list[Row]:
    """Runs of more than ``keep_run`` rows outside the liquidation flow become one gap each."""
    out: list[Row] = []
    run: list[Row] = []

    def close() -> None:
        if len(run) > keep_run:
            out.append(_gap(run))
        else:
            out.extend(run)
        run.clear()

    for r in rows:
        if _is_flow(r):
            close()
            out.append(r)
        else:
            run.append(r)
    close()
    return _merge_gaps(out)


def _kept(rows: Sequence[Row], keep: set[int]) -> list[Row]:
    """The rows whose index is in ``keep``; each run of the others becomes one gap."""
    out: list[Row] = []
    skipped: list[Row] = []
    for i, r in enumerate(rows):
        if i in keep:
            if skipped:
                out.append(_gap(skipped))
                skipped = []
            out.append(r)
        else:
            skipped.append(r)
    if skipped:
        out.append(_gap(skipped))
    return _merge_gaps(out)


def _kept_size(n: int, keep: set[int]) -> int:
    """len(_kept(rows, keep)) for len(rows) == n, without building it."""
    size, in_gap = 0, False
    for i in range(n):
        if i in keep:
            size, in_gap = size + 1, False
        elif not in_gap:
            size, in_gap = size + 1, True
    return size


def _anchor_order(rows: Sequence[Row]) -> list[int]:
    """Where the flows start, the first of every kind before the second of any."""
    by_kind: dict[str, list[int]] = {k: [] for k in ANCHORS}
    for i, r in enumerate(rows):
        if isinstance(r, Arrow) and r.first.type in by_kind:
            by_kind[r.first.type].append(i)
    order = [i for rank in zip_longest(*by_kind.values()) for i in rank if i is not None]
    return order or [i for i, r in enumerate(rows) if _is_flow(r)] or [0]


def summarise_trace(deliveries: Sequence[Delivered], limit: int = SEQUENCE_LIMIT) -> list[Row]:
    """The rows of the sequence diagram: at most ``limit``, every message accounted for.

    0. If there are no more than ``limit`` messages, each is one arrow.
    1. Otherwise identical consecutive messages (same sender, recipient, type
       and instant) become one arrow marked ×N.
    2. If that is still more than ``limit`` rows, runs of three or more
       messages outside the liquidation flow (mark updates, account updates,
       ordinary trading) become one "not drawn" row that counts them by type.
    3. If it is still too long, whole flows are shown and the rest counted:
       from the first liquidation request, the first fund takeover, the first
       ADL request, then the second of each and so on, the rows from just
       before each to :data:`WINDOW_AFTER` rows after it are kept while they
       fit; every run of rows in between becomes one "not drawn" row.
    """
    if limit < 1:
        raise ValueError("limit must be at least 1")
    if len(deliveries) <= limit:
        return [Arrow(d) for d in deliveries]
    rows = _collapse(deliveries)
    if len(rows) <= limit:
        return rows
    rows = _fold_background(rows)
    if len(rows) <= limit:
        return rows
    n = len(rows)
    keep: set[int] = set()
    size = 1  # everything in one gap
    misses = 0
    for a in _anchor_order(rows):
        if size >= limit - 1 or misses >= 20:
            break
        for after in (WINDOW_AFTER, WINDOW_AFTER // 3, 0):
            trial = keep | set(range(max(0, a - WINDOW_BEFORE if after else a), min(n, a + after + 1)))
            trial_size = _kept_size(n, trial)
            if trial_size <= limit:
                keep, size, misses = trial, trial_size, 0
                break
        else:
            misses += 1
    return _kept(rows, keep)


def rows_count(rows: Iterable[Row]) -> int:
    """How many messages the rows stand for (drawn or not)."""
    return sum(r.count for r in rows)


# --- account selection ----------------------------------------------------------------------


@attrs.frozen
class AccountChoice:
    shown: list[str]
    reason: dict[str, str]
    sentence: str


def _quotas(sizes: Sequence[int], limit: int, reserve: Sequence[int]) -> list[int]:
    """How many of each group to show: first what ``reserve`` sets aside for each, then in group order."""
    take = [min(n, r) for n, r in zip(sizes, reserve)]
    while sum(take) > limit:  # a limit smaller than the reserves: trim from the last group
        k = max(i for i, t in enumerate(take) if t)
        take[k] -= 1
    for i, n in enumerate(sizes):
        take[i] += min(n - take[i], limit - sum(take))
    return take


def _interleave(first: Sequence[str], second: Sequence[str]) -> list[str]:
    return [a for pair in zip_longest(first, second) for a in pair if a is not None]


def choose_accounts(recording: Recording, limit: int = MAX_ACCOUNTS) -> AccountChoice:
    """The accounts worth a chart: liquidated, deleveraged by ADL, and those closest to liquidation.

    When there are more than ``limit``, most places go to liquidated accounts
    (bankrupt ones and ones that left a surplus, alternately, earliest first),
    one to an account deleveraged by ADL and two to the survivors that came
    closest to liquidation (lowest equity ÷ maintenance margin).
    """
    liquidated: list[str] = []
    bankrupt: set[str] = set()
    deleveraged: list[str] = []
    for _, e in recording.events:
        if e["kind"] == "liquidation_started" and e["account"] not in liquidated:
            liquidated.append(e["account"])
        elif e["kind"] == "bankruptcy":
            bankrupt.add(e["account"])
        elif e["kind"] == "adl" and e["account"] not in deleveraged:
            deleveraged.append(e["account"])
    deleveraged = [a for a in deleveraged if a not in liquidated]
    if liquidated and liquidated[0] in bankrupt:
        liquidated = _interleave([a for a in liquidated if a in bankrupt], [a for a in liquidated if a not in bankrupt])
    else:
        liquidated = _interleave([a for a in liquidated if a not in bankrupt], [a for a in liquidated if a in bankrupt])

    def closest(acct: str) -> float:
        ratios = [eq / mm for _, (eq, mm) in recording.accounts[acct] if mm > 0]
        return min(ratios) if ratios else math.inf

    others = [a for a in recording.accounts if a not in liquidated and a not in deleveraged]
    others = sorted((a for a in others if closest(a) < math.inf), key=lambda a: (closest(a), a))

    n_liq, n_adl, n_other = _quotas([len(liquidated), len(deleveraged), len(others)], limit, [limit - 3, 1, 2])
    shown = liquidated[:n_liq] + deleveraged[:n_adl] + others[:n_other]
    reason: dict[str, str] = {}
    for a in shown:
        if a in liquidated:
            reason[a] = "liquidated"
        elif a in deleveraged:
            reason[a] = "deleveraged by ADL"
        else:
            reason[a] = f"equity ≥ {closest(a):.2f} × maint. margin throughout"
    total = len(recording.accounts)
    flat = total - len(liquidated) - len(deleveraged) - len(others)
    parts = []
    if n_liq:
        parts.append(f"the {n_liq} liquidated" if n_liq == len(liquidated) else
                     f"{n_liq} of the {len(liquidated)} liquidated (bankrupt or not in turn, earliest first)")
    if n_adl:
        parts.append(f"the {n_adl} deleveraged by ADL" if n_adl == len(deleveraged) else
                     f"{n_adl} of the {len(deleveraged)} deleveraged by ADL (earliest first)")
    if n_other:
        parts.append(f"the {n_other} other{'s' if n_other > 1 else ''} that came closest to liquidation "
                     "(lowest equity ÷ maintenance margin)")
    what = _and(parts) or "none held a position"
    if len(shown) == total:
        sentence = f"All {total} accounts are shown: {what}."
    else:
        sentence = f"Showing {len(shown)} of {total} accounts: {what}."
    if flat:
        sentence += (f" {flat} account{'s' if flat > 1 else ''} never held a position"
                     f" and {'are' if flat > 1 else 'is'} left out.")
    return AccountChoice(shown, reason, sentence)


def _and(parts: Sequence[str]) -> str:
    if len(parts) <= 1:
        return "".join(parts)
    return ", ".join(parts[:-1]) + " and " + parts[-1]


# --- the x axis -------------------------------------------------------------------------------


def fmt_time(ms: int) -> str:
    """Virtual time for people: ``1 s``, ``2.5 s``, ``90 min``, ``3 h``."""
    if ms and ms % 3_600_000 == 0:
        return f"{ms // 3_600_000} h"
    if ms and ms % 60_000 == 0 and ms >= 600_000:
        return f"{ms // 60_000} min"
    return f"{time_seconds(ms)} s"


class Bands:
    """Maps "deliveries done" to x: one band per instant of virtual time.

    An instant in which something drawn changes gets a band of width 1; an
    instant in which nothing drawn changes (orders resting in the book, a
    price move nobody feels) gets a narrower one, so the eye goes where
    something happens.
    """

    QUIET_WIDTH: Final = 0.4

    def __init__(self, deliveries: Sequence[Delivered], changes: Iterable[int] = ()) -> None:
        self.steps: list[tuple[int, int, int]] = []  # (time_ms, first delivery, end)
        for d in deliveries:
            if self.steps and self.steps[-1][0] == d.time_ms:
                t, a, _ = self.steps[-1]
                self.steps[-1] = (t, a, d.index + 1)
            else:
                self.steps.append((d.time_ms, d.index, d.index + 1))
        self._ends = [end for _, _, end in self.steps]
        busy = [False] * len(self.steps)
        for p in changes:
            if p > 0:
                busy[min(bisect_left(self._ends, p), len(self.steps) - 1)] = True
        self.widths = [1.0 if b else self.QUIET_WIDTH for b in busy]
        self.lefts = [0.0]
        for w in self.widths:
            self.lefts.append(self.lefts[-1] + w)

    @property
    def end(self) -> float:
        return self.lefts[-1] if self.steps else 1.0

    def x(self, p: int) -> float:
        if p <= 0 or not self.steps:
            return 0.0
        j = min(bisect_left(self._ends, p), len(self.steps) - 1)
        _, a, b = self.steps[j]
        return self.lefts[j] + self.widths[j] * (_PAD + (1 - 2 * _PAD) * (p - a) / (b - a))

    def decorate(self, ax: Any) -> None:
        from matplotlib.ticker import FixedFormatter, FixedLocator

        n = len(self.steps)
        if n <= 80:
            for j in range(1, n, 2):
                ax.axvspan(self.lefts[j], self.lefts[j + 1], color="#eef1f5", zorder=0, lw=0)
        ax.set_xlim(0, self.end)
        shown = sorted({round(k * (n - 1) / 11) for k in range(12)}) if n > 12 else list(range(n))
        ax.xaxis.set_major_locator(FixedLocator([self.lefts[j] + self.widths[j] / 2 for j in shown]))
        ax.xaxis.set_major_formatter(FixedFormatter([fmt_time(self.steps[j][0]) for j in shown]))
        ax.tick_params(axis="x", length=0)


def _steps(bands: Bands, series: Sequence[tuple[int, Any]], value: Callable[[Any], float]) -> tuple[list[float], list[float]]:
    xs = [bands.x(p) for p, _ in series]
    ys = [value(v) for _, v in series]
    if series:
        xs.append(bands.end)
        ys.append(ys[-1])
    return xs, ys


def _at(series: Sequence[tuple[int, Any]], p: int) -> Any:
    """The value of a step series at position p (the last sample at or before it)."""
    value = series[0][1] if series else None
    for q, v in series:
        if q > p:
            break
        value = v
    return value


def _eth(wei: int) -> float:
    return wei / 10**MONEY_DECIMALS  # plotting only


def _price(units: int) -> float:
    return units / 10**PRICE_DECIMALS  # plotting only


def _size(units: int) -> float:
    return units / 10**SIZE_DECIMALS  # plotting only


def _dec(text: str) -> float:
    return float(text)  # an event's exact decimal string, for plotting only


# --- charts -----------------------------------------------------------------------------------

_RC: Final = {
    "svg.fonttype": "none",  # real <text>: selectable, searchable, small
    "svg.hashsalt": "perp-risk-sandbox",  # the same run gives the same bytes
    "font.family": "DejaVu Sans",
    "font.size": 9,
    "axes.titlesize": 10,
    "axes.titleweight": "bold",
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.grid": True,
    "axes.grid.axis": "y",
    "grid.color": "#dde1e6",
    "grid.linewidth": 0.6,
    "legend.frameon": False,
    "legend.fontsize": 8,
    # Account ids and symbols are user text: "$x$" must be drawn as it is, not parsed as mathtext or TeX.
    "text.parse_math": False,
    "text.usetex": False,
}


_XLABEL: Final = "virtual time: one band per instant; inside it, the cascade of messages in delivery order"


def _figure(width: float, height: float) -> Figure:
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), layout="constrained")


def _svg(fig: Figure, prefix: str, label: str, titles: dict[str, str] | None = None, min_scale: float = 0.0,
         newlines: bool = False) -> str:
    """The figure as inline SVG, ids made unique to this figure, with tooltips.

    The SVG scales down to the page's width, but not below ``min_scale`` of
    its natural size (the page scrolls sideways instead). Every text drawn
    goes through :func:`plain` first (titles, labels and legends quote
    account ids and symbols); ``newlines`` keeps line breaks, for a chart
    whose own labels have them.
    """
    import matplotlib

    _plain_texts(fig, newlines)
    buf = io.StringIO()
    with matplotlib.rc_context(_RC):
        fig.savefig(buf, format="svg", metadata={"Date": None})
    text = buf.getvalue()
    text = text[text.index("<svg"):]
    text = re.sub(r'\bid="([^"]+)"', lambda m: f'id="{prefix}-{m.group(1)}"', text)
    text = re.sub(r'url\(#([^)]+)\)', lambda m: f"url(#{prefix}-{m.group(1)})", text)
    text = re.sub(r'href="#([^"]+)"', lambda m: f'href="#{prefix}-{m.group(1)}"', text)
    text = re.sub(r'<svg([^>]*?) width="([\d.]+)pt" height="([\d.]+)pt"',
                  lambda m: f'<svg{m.group(1)} class="chart" role="img" aria-label="{html.escape(label)}" '
                            f'style="max-width:{m.group(2)}pt;min-width:{float(m.group(2)) * min_scale:.0f}pt"',
                  text, count=1)
    if titles:
        def add_title(m: re.Match[str]) -> str:
            title = titles.get(m.group(1))
            return m.group(0) if title is None else f"{m.group(0)}<title>{html.escape(plain(title))}</title>"

        text = re.sub(rf'<g id="{prefix}-([^"]+)">', add_title, text)
    return text


def _plain_texts(fig: Figure, newlines: bool = False) -> None:
    """Every text of the figure through :func:`plain`: drawn (or measured) as the visible escapes."""
    from matplotlib.text import Text as MplText

    for text in fig.findobj(MplText):
        text.set_text(plain(text.get_text(), newlines=newlines))


def _grid(n: int, one_column_up_to: int = 2) -> tuple[int, int]:
    cols = 1 if n <= one_column_up_to else 2
    return math.ceil(n / cols), cols


def _event_points(rec: Recording, kind: str, market: str | None = None) -> list[tuple[int, dict[str, Any]]]:
    return [(p, e) for p, e in rec.events if e["kind"] == kind and (market is None or e.get("market") == market)]


# The mark price is a solid dark line, a bankruptcy price a short dashed brown one: told apart in the legend
# by style as well as colour.
_MARK_COLOUR: Final = "#263238"
_BANKRUPTCY_COLOUR: Final = "#8d4e2a"
_BANKRUPTCY_DASH: Final = (0, (2.2, 1.4))
# At most this many labels in one chart's axes.
_MAX_LABELS: Final = 12
# Where a label may go, in points from its marker (dx, dy): the nearest ring first, then further up and down.
_LABEL_SPOTS: Final = tuple((dx, dy) for ring in (7, 19, 31, 43, 55) for dy in (ring, -ring) for dx in (7, -7))
# Beyond the first ring a label gets a leader line to its marker.
_LEADER_FROM: Final = 10


def place_labels(fig: Figure, ax: Any, items: Sequence[tuple[float, float, str, str]], *, crowded: str = "overlap",
                 fontsize: float = 7.5) -> list[Any]:
    """Label points (x, y, text, colour) in data coordinates so that no two labels overlap.

    A greedy placement, left to right: each label takes the first of
    :data:`_LABEL_SPOTS` (beside its marker, then further above and below it)
    where its box stays inside the axes and overlaps no label already placed
    and no other marker; a label that had to move away from its marker gets a
    thin leader line to it. When no spot is free, ``crowded="overlap"`` takes
    the spot that overlaps least, ``crowded="skip"`` leaves the label out.
    The layout is measured on the finished figure (constrained layout run
    first); the labels take no part in the layout, so it does not move after.
    The labels placed are returned.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    if not items:
        return []
    _plain_texts(fig)  # measured as they will be drawn
    items = [(x, y, plain(text), colour) for x, y, text, colour in items]
    canvas = fig.canvas if isinstance(fig.canvas, FigureCanvasAgg) else FigureCanvasAgg(fig)
    renderer = canvas.get_renderer()
    fig.draw(renderer)  # runs the constrained layout: the axes are where they will be saved
    frame = ax.get_window_extent(renderer)
    px = fig.dpi / 72  # pixels per point
    anchors = [tuple(ax.transData.transform((x, y))) for x, y, _, _ in items]
    pad = 5 * px
    markers = [(ax_ - pad, ay - pad, ax_ + pad, ay + pad) for ax_, ay in anchors]
    placed: list[tuple[float, float, float, float]] = []
    out = []

    def overlap(a: tuple[float, float, float, float], b: tuple[float, float, float, float]) -> float:
        w = min(a[2], b[2]) - max(a[0], b[0])
        h = min(a[3], b[3]) - max(a[1], b[1])
        return w * h if w > 0 and h > 0 else 0.0

    order = sorted(range(len(items)), key=lambda k: (anchors[k][0], anchors[k][1]))
    for k in order:
        x, y, text, colour = items[k]
        right_edge = anchors[k][0] > frame.x0 + 0.72 * frame.width
        spots = sorted(_LABEL_SPOTS, key=lambda s: (abs(s[1]), (s[0] > 0) == right_edge, s[1] < 0))
        best: tuple[float, Any, tuple[float, float, float, float]] | None = None
        for dx, dy in spots:
            ann = ax.annotate(text, (x, y), xytext=(dx, dy), textcoords="offset points",
                              ha="left" if dx > 0 else "right", va="bottom" if dy > 0 else "top",
                              fontsize=fontsize, color=colour, zorder=5, annotation_clip=False)
            ann.set_in_layout(False)
            bb = ann.get_window_extent(renderer)
            box = (bb.x0 - px, bb.y0 - px, bb.x1 + px, bb.y1 + px)
            outside = box[0] < frame.x0 or box[2] > frame.x1 or box[1] < frame.y0 or box[3] > frame.y1
            cost = sum(overlap(box, b) for b in placed) + sum(
                overlap(box, m) for j, m in enumerate(markers) if j != k) + (1e9 if outside else 0.0)
            if best is None or cost < best[0]:
                if best is not None:
                    best[1].remove()
                best = (cost, ann, box)
            else:
                ann.remove()
            if cost == 0:
                break
        assert best is not None
        cost, ann, box = best
        if cost > 0 and crowded == "skip":
            ann.remove()
            continue
        if abs(ann.xyann[1]) > _LEADER_FROM:  # moved away from its marker: a leader line back to it
            ha, va, offset = ann.get_ha(), ann.get_va(), ann.xyann
            ann.remove()
            ann = ax.annotate(text, (x, y), xytext=offset, textcoords="offset points", ha=ha, va=va,
                              fontsize=fontsize, color=colour, zorder=5, annotation_clip=False,
                              arrowprops={"arrowstyle": "-", "color": colour, "lw": 0.7, "shrinkA": 0, "shrinkB": 4,
                                          "relpos": (0.0 if ha == "left" else 1.0, 0.0 if va == "bottom" else 1.0)})
            ann.set_in_layout(False)
        placed.append(box)
        out.append(ann)
    return out


def chart_marks(rec: Recording, bands: Bands) -> str:
    import matplotlib

    markets = list(rec.marks)
    rows, cols = _grid(len(markets), one_column_up_to=3)
    legend: dict[str, Any] = {}
    with matplotlib.rc_context(_RC):
        fig = _figure(10, 1.1 + 2.1 * rows)
        axes = fig.subplots(rows, cols, squeeze=False, sharex=True)
        to_label: list[tuple[Any, list[tuple[float, float, str, str]]]] = []
        for i, market in enumerate(markets):
            ax = axes[i // cols][i % cols]
            bands.decorate(ax)
            xs, ys = _steps(bands, rec.marks[market], _price)
            ax.step(xs, ys, where="post", color=_MARK_COLOUR, lw=2, ls="-", label="mark price")
            trades = _event_points(rec, "trade", market)
            labels: list[tuple[int, float, str, str]] = []  # p, price, text, colour
            for kind, colour, label, says in (
                ("trader", "#90a4ae", "trade", None),
                ("liquidation", COLOURS[LIQUIDATION], "liquidation order fill", "liquidation order fills at {}"),
                ("fund", COLOURS[FUND_FLOW], "insurance fund order fill", "the fund's order fills at {}"),
            ):
                pts = [(p, _dec(e["price"]), e["price"]) for p, e in trades if e["taker_kind"] == kind]
                if pts:
                    ax.scatter([bands.x(p) for p, _, _ in pts], [y for _, y, _ in pts], s=30, color=colour,
                               zorder=3, label=label, edgecolors="white", linewidths=0.6)
                    if says:
                        labels += [(p, y, says.format(text), colour) for p, y, text in pts]
            adl = [(p, e) for p, e in _event_points(rec, "adl", market)]
            if adl:
                ax.scatter([bands.x(p) for p, _ in adl], [_dec(e["price"]) for _, e in adl], s=34,
                           color=COLOURS[ADL_FLOW], marker="s", zorder=3, label="ADL at the bankruptcy price",
                           edgecolors="white", linewidths=0.6)
                labels += [(p, _dec(e["price"]), f"ADL closes {e['account']} at {e['price']}", COLOURS[ADL_FLOW])
                           for p, e in adl]
            bk = [(p, e["account"], e["bankruptcy_prices"][market])
                  for p, e in _event_points(rec, "liquidation_started") if market in e["bankruptcy_prices"]]
            for p, acct, price in bk:  # a short dashed segment: another style than the mark's solid line
                x = bands.x(p)
                ax.plot([x - 0.1, x + 0.1], [_dec(price)] * 2, color=_BANKRUPTCY_COLOUR, lw=2.2,
                        ls=_BANKRUPTCY_DASH, zorder=4, label="bankruptcy price of a liquidation")
            labels += [(p, _dec(price), f"{acct}'s bankruptcy price {price}", _BANKRUPTCY_COLOUR)
                       for p, acct, price in bk]
            # The rarer kinds first (bankruptcy prices, ADL, then fills), as many as fit without overlap.
            labels.sort(key=lambda t: (t[3] != _BANKRUPTCY_COLOUR, t[3] != COLOURS[ADL_FLOW], t[0]))
            to_label.append((ax, [(bands.x(p), y, text, colour) for p, y, text, colour in labels[:_MAX_LABELS]]))
            ax.set_title(f"{market}: mark price", loc="left")
            ax.set_ylabel("ETH per contract")
            ax.margins(y=0.2)
            for handle, label in zip(*ax.get_legend_handles_labels()):
                legend.setdefault(label, handle)
        for j in range(len(markets), rows * cols):
            axes[j // cols][j % cols].set_visible(False)
        fig.legend(list(legend.values()), list(legend), loc="outside upper center", ncols=min(len(legend), 6))
        fig.supxlabel(_XLABEL, fontsize=8.5)
        for ax, items in to_label:
            place_labels(fig, ax, items, crowded="skip")
    return _svg(fig, "marks", "Mark price per market over time")


def chart_accounts(rec: Recording, bands: Bands, choice: AccountChoice) -> str:
    import matplotlib
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    shown = choice.shown
    if not shown:
        return ""
    rows, cols = _grid(len(shown))
    liq_at = {e["account"]: p for p, e in _event_points(rec, "liquidation_started")}
    bankrupt = {e["account"] for _, e in _event_points(rec, "bankruptcy")}
    call_at = {e["account"]: p for p, e in _event_points(rec, "margin_call")}
    adl_at: dict[str, int] = {}
    for p, e in _event_points(rec, "adl"):
        adl_at.setdefault(e["account"], p)
    red, blue = COLOURS[LIQUIDATION], COLOURS[ADL_FLOW]
    with matplotlib.rc_context(_RC):
        fig = _figure(10, 1.2 + 2.2 * rows)
        axes = fig.subplots(rows, cols, squeeze=False, sharex=True)
        for i, acct in enumerate(shown):
            ax = axes[i // cols][i % cols]
            bands.decorate(ax)
            series = rec.accounts[acct]
            xs, eq = _steps(bands, series, lambda v: _eth(v[0]))
            _, mm = _steps(bands, series, lambda v: _eth(v[1]))
            for k in range(len(xs) - 1):  # shade each stretch at or below the maintenance margin
                if series[min(k, len(series) - 1)][1][1] > 0 and eq[k] <= mm[k]:
                    ax.fill_between([xs[k], xs[k + 1]], [eq[k]] * 2, [mm[k]] * 2, color=red, alpha=0.2, lw=0)
            ax.step(xs, mm, where="post", color="#ef6c00", lw=1.6, ls="--")
            ax.step(xs, eq, where="post", color="#1e88e5", lw=2)
            if acct in call_at:
                p = call_at[acct]
                ax.scatter([bands.x(p)], [_eth(_at(series, p)[0])], s=50, color=red, marker="X", zorder=4,
                           edgecolors="white", linewidths=0.6)
            if acct in adl_at:
                p = adl_at[acct]
                ax.scatter([bands.x(p)], [_eth(_at(series, p)[0])], s=46, color=blue, marker="s", zorder=4,
                           edgecolors="white", linewidths=0.6)
            when = liq_at.get(acct, adl_at.get(acct))
            suffix = f" at {fmt_time(_time_at(rec, when))}" if when is not None else ""
            if acct in bankrupt:
                suffix += ", bankrupt"
            ax.set_title(f"{acct}: {choice.reason[acct]}{suffix}", loc="left")
            ax.set_ylabel("ETH")
            ax.margins(y=0.12)
        for j in range(len(shown), rows * cols):
            axes[j // cols][j % cols].set_visible(False)
        handles = [
            Line2D([0], [0], color="#1e88e5", lw=2, label="equity"),
            Line2D([0], [0], color="#ef6c00", lw=1.6, ls="--", label="maintenance margin"),
            Patch(color=red, alpha=0.2, label="equity ≤ maintenance margin"),
            Line2D([0], [0], color=red, marker="X", ls="none", markersize=7, label="liquidation requested"),
            Line2D([0], [0], color=blue, marker="s", ls="none", markersize=6, label="closed by ADL"),
        ]
        fig.legend(handles=handles, loc="outside upper center", ncols=len(handles))
        fig.supxlabel(_XLABEL, fontsize=8.5)
    return _svg(fig, "equity", "Equity against maintenance margin per account")


_DRAWN_EVENTS: Final = frozenset({"trade", "margin_call", "liquidation_started", "adl"})


def change_positions(rec: Recording) -> list[int]:
    """Where anything a chart draws changes: every sample but the first of each series, drawn events."""
    out: list[int] = []
    for series in (*rec.marks.values(), *rec.open_interest.values(), *rec.accounts.values(), rec.fund):
        out += [p for p, _ in series[1:]]
    out += [p for p, e in rec.events if e["kind"] in _DRAWN_EVENTS or e["kind"].startswith("fund_")]
    return out


def _time_at(rec: Recording, p: int) -> int:
    if not rec.deliveries:
        return 0
    return rec.deliveries[min(max(p - 1, 0), len(rec.deliveries) - 1)].time_ms


_FUND_MARKERS: Final = (
    # event kind, colour, marker, legend, short label
    ("fund_surplus", "#2e7d32", "^", "surplus received", lambda e: f"+{e['amount']} surplus from {e['account']}"),
    ("fund_gain", "#2e7d32", "P", "gain closing a position", lambda e: f"+{e['amount']} gain ({e['account']})"),
    ("fund_takeover", "#ef6c00", "D", "position taken over",
     lambda e: f"takes over {e['account']}'s {fmt_held(e['size'])} {e['market']}"),
    ("adl", COLOURS[ADL_FLOW], "s", "ADL", lambda e: f"ADL: {e['account']} {fmt_trade(e['size'])} {e['market']}"),
    ("fund_payout", COLOURS[LIQUIDATION], "v", "payout", lambda e: f"−{e['amount']} paid for {e['account']}"),
    ("fund_inventory_kept", "#000000", "X", "inventory kept", lambda e: f"keeps {fmt_held(e['size'])} {e['market']}"),
    ("fund_socialized_loss", "#6a1b9a", "*", "socialized loss received",
     lambda e: f"+{e['amount']} charged to {e['market']}'s positions"),
    ("fund_revenue", "#2e7d32", "o", "revenue pool", lambda e: f"+{e['amount']} from the revenue pool"),
)


def fmt_held(size: str) -> str:
    return f"short {size.lstrip('-')}" if size.startswith("-") else f"long {size}"


def fmt_trade(size: str) -> str:
    return f"sells {size.lstrip('-')}" if size.startswith("-") else f"buys {size}"


def chart_fund(rec: Recording, bands: Bands) -> str:
    import matplotlib

    with matplotlib.rc_context(_RC):
        fig = _figure(10, 3.9)
        ax = fig.subplots()
        bands.decorate(ax)
        xs, bal = _steps(bands, rec.fund, lambda v: _eth(v[0]))
        _, avail = _steps(bands, rec.fund, lambda v: _eth(v[1]))
        ax.fill_between(xs, avail, bal, step="post", color=COLOURS[FUND_FLOW], alpha=0.13, lw=0,
                        label="reserved: the most it may still lose on positions it is closing")
        ax.step(xs, bal, where="post", color=COLOURS[FUND_FLOW], lw=2.4, label="insurance fund balance")
        points = []
        for kind, colour, marker, legend, short in _FUND_MARKERS:
            pts = [(p, e) for p, e in rec.events if e["kind"] == kind]
            if not pts:
                continue
            ys = [_eth(_at(rec.fund, p)[0]) for p, _ in pts]
            ax.scatter([bands.x(p) for p, _ in pts], ys, s=60, color=colour, marker=marker, zorder=4,
                       label=legend, edgecolors="white", linewidths=0.7)
            points += [(p, y, short(e), colour) for (p, e), y in zip(pts, ys)]
        ax.set_title("Insurance fund (one for all markets)")
        ax.set_ylabel("ETH")
        ax.margins(y=0.25)
        top = ax.get_ylim()[1]
        ax.set_ylim(-0.04 * top, top)  # so a line at zero stays visible
        ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.14), ncols=3, fontsize=7.5)
        ax.set_xlabel(_XLABEL, fontsize=8.5)
        points.sort(key=lambda t: t[0])
        place_labels(fig, ax, [(bands.x(p), y, text, colour) for p, y, text, colour in points[:_MAX_LABELS]])
    return _svg(fig, "fund", "Insurance fund balance over time")


def chart_open_interest(rec: Recording, bands: Bands) -> str:
    import matplotlib

    palette = ["#00897b", "#5e35b1", "#f4511e", "#6d4c41", "#3949ab", "#c0ca33", "#d81b60", "#546e7a"]
    with matplotlib.rc_context(_RC):
        fig = _figure(10, 3.2)
        ax = fig.subplots()
        bands.decorate(ax)
        for i, (market, series) in enumerate(rec.open_interest.items()):
            xs, ys = _steps(bands, series, _size)
            ax.step(xs, ys, where="post", lw=2, color=palette[i % len(palette)], label=market)
        ax.set_title("Open interest per market (longs = shorts)")
        ax.set_ylabel("contracts")
        ax.set_ylim(bottom=0)
        ax.margins(y=0.2)
        ax.legend(loc="best")
        ax.set_xlabel(_XLABEL, fontsize=8.5)
    return _svg(fig, "oi", "Open interest per market over time")


# --- the sequence diagram --------------------------------------------------------------------

_HEADER_EVERY: Final = 50
# 9.5 pt in the SVG's units; the diagram is never scaled below its natural
# size (min_scale 1), so every label is at least 9.5 x 4/3 = 12.7 CSS px.
_SEQ_FONT: Final = 9.5
_FIXED_ORDER: Final = ("timeline", "traders", ORACLE, MONITOR, ENGINE, CLEARING, "books", FUND, ADL)


def lifelines(deliveries: Sequence[Delivered]) -> tuple[list[str], Callable[[str], str]]:
    """The diagram's columns, and which column an actor is drawn on.

    Traders share one column when there are more than three, and books when
    there are more than six markets, so the diagram stays readable.
    """
    names = {d.sender for d in deliveries} | {d.recipient for d in deliveries}
    traders = sorted(n for n in names if n.startswith("trader:"))
    books = sorted(n for n in names if n.startswith("book:"))
    merge_traders, merge_books = len(traders) > 3, len(books) > 6

    def column(name: str) -> str:
        if merge_traders and name.startswith("trader:"):
            return "trader:*"
        if merge_books and name.startswith("book:"):
            return "book:*"
        return name

    order: list[str] = []
    for slot in _FIXED_ORDER:
        if slot == "traders":
            order += ["trader:*"] if merge_traders else traders
        elif slot == "books":
            order += ["book:*"] if merge_books else books
        elif slot in names:
            order.append(slot)
    order += sorted(column(n) for n in names if column(n) not in order)
    return list(dict.fromkeys(order)), column


def _stimuli(rec: Recording) -> dict[int, str]:
    """For each instant, what the scenario did then: " · mark price of PUNK: 100 -> 94"."""
    count: Counter[int] = Counter(d.time_ms for d in rec.deliveries if d.sender == "timeline" and d.type != "Started")
    first: dict[int, str] = {}
    for _, e in rec.events:
        ms = round(e["time"] * 1000)
        if ms not in first and (sentence := narrate(e)) is not None:
            first[ms] = sentence
    out = {}
    for ms, n in count.items():
        if n > 1:
            out[ms] = f" · {n} scripted events"
        elif ms in first:
            out[ms] = f" · {first[ms]}"
    return out


def chart_sequence(rec: Recording, rows: Sequence[Row]) -> str:
    import matplotlib
    from matplotlib.figure import Figure
    from matplotlib.patches import FancyArrowPatch

    columns, column = lifelines(rec.deliveries)
    xpos = {c: i for i, c in enumerate(columns)}
    # One header line per instant, then its rows.
    # A long diagram repeats the actors' names every HEADER_EVERY lines.
    lines: list[tuple[str, Any]] = []
    last_time: int | None = None
    since_header = 0
    for k, r in enumerate(rows):
        if since_header >= _HEADER_EVERY and len(rows) - k > 15:
            lines += [("gap", None), ("header", None), ("gap", None)]
            since_header = 0
        t = r.first.time_ms if isinstance(r, Arrow) else r.from_ms
        if t != last_time:
            lines.append(("time", t))
            last_time = t
        lines.append(("row", r))
        since_header += 1
    what_started = _stimuli(rec)
    height = 1.1 + 0.29 * (len(lines) + 2)
    width = max(9.5, 1.3 * len(columns) + 1.2)
    titles: dict[str, str] = {}
    with matplotlib.rc_context({**_RC, "axes.grid": False}):
        fig = Figure(figsize=(width, height))
        top = 1 - 0.7 / height
        ax = fig.add_axes((0.02, 0.25 / height, 0.96, top - 0.25 / height))
        n = len(lines)
        ax.set_xlim(-0.9, len(columns) - 0.4)
        ax.set_ylim(n + 0.5, -0.8)
        ax.axis("off")
        def names(y: float, va: str) -> None:
            for c, i in xpos.items():
                ax.text(i, y, c.replace("_", "\n", 1), ha="center", va=va, fontsize=_SEQ_FONT, fontweight="bold",
                        color="#263238", linespacing=1.1, zorder=4,
                        bbox={"boxstyle": "round,pad=0.35", "fc": "#eceff1", "ec": "#90a4ae", "lw": 0.8},
                        clip_on=False)

        for i in xpos.values():
            ax.plot([i, i], [-0.5, n + 0.4], color="#b0bec5", lw=0.8, ls=(0, (3, 3)), zorder=0)
        names(-1.0, "bottom")
        gaps = 0
        for y, (what, item) in enumerate(lines):
            if what == "gap":
                continue
            if what == "header":
                names(y, "center")
                continue
            if what == "time":
                ax.axhline(y, color="#455a64", lw=0.8, zorder=1)
                ax.text(-0.88, y - 0.12, f"t = {fmt_time(item)}{what_started.get(item, '')}", ha="left",
                        va="bottom", fontsize=_SEQ_FONT, fontweight="bold", color="#455a64")
                continue
            if isinstance(item, Gap):
                ax.axhspan(y - 0.42, y + 0.42, color="#fff8e1", zorder=0.5, lw=0)
                ax.text((len(columns) - 1) / 2, y, "⋯ " + item.label(), ha="center", va="center", fontsize=_SEQ_FONT,
                        style="italic", color="#6d4c41", zorder=3, gid=f"gap{gaps}")
                gaps += 1
                continue
            d = item.first
            x0, x1 = xpos[column(d.sender)], xpos[column(d.recipient)]
            colour = COLOURS[d.category]
            gid = f"msg{d.index}"
            times = f" ×{item.count}" if item.count > 1 else ""
            label = f"{d.type}{times}" + (f": {item.detail}" if item.detail else "")
            titles[gid] = (f"#{d.index} at t = {fmt_time(d.time_ms)}: {d.sender} → {d.recipient}: {d.type}"
                           + (f" ({item.detail})" if item.detail else "") + (f", {item.count} times" if item.count > 1 else ""))
            if x0 == x1:  # a message to itself: a small loop
                arrow = FancyArrowPatch((x0, y - 0.2), (x0, y + 0.2), connectionstyle="arc3,rad=-1.2",
                                        arrowstyle="-|>", mutation_scale=8, color=colour, lw=1.1, zorder=2)
            else:
                arrow = FancyArrowPatch((x0, y + 0.12), (x1, y + 0.12), arrowstyle="-|>", mutation_scale=9,
                                        color=colour, lw=1.3 if item.count == 1 else 2.4, zorder=2,
                                        shrinkA=0, shrinkB=0)
            arrow.set_gid(gid)
            ax.add_patch(arrow)
            ax.text((x0 + x1) / 2 if x0 != x1 else x0 + 0.12, y - 0.04, label, ha="center" if x0 != x1 else "left",
                    va="bottom", fontsize=_SEQ_FONT, color=colour, zorder=3, gid=f"msg{d.index}-label")
    return _svg(fig, "seq", "Message sequence diagram of the actors", titles, min_scale=1.0, newlines=True)


# --- the stepping view ---------------------------------------------------------------------------

# At most this many narrated sentences are listed for one step.
_STEP_SAID: Final = 8
# At most this many accounts are shown as involved in one step.
_STEP_ACCOUNTS: Final = 6


def _plain_data(value: Any) -> Any:
    """Every string in a JSON-able value, keys too, made plain (see :func:`plain`)."""
    if isinstance(value, str):
        return plain(value)
    if isinstance(value, dict):
        return {plain(k): _plain_data(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain_data(v) for v in value]
    return value


def step_data(rec: Recording, rows: Sequence[Row]) -> dict[str, Any]:
    """What the stepping view steps through: one step per row of the sequence diagram.

    A row is a message (or ×N identical ones) or a run of messages not
    drawn; its step carries what the deliveries it stands for changed (see
    :meth:`Recorder._step`), merged, so stepping through the rows of a cut
    diagram still reaches every state, the last one included. ``id`` is the
    SVG id of the row's arrow or gap, which the page highlights.
    """
    steps = []
    cursor = 0
    gaps = 0
    for row in rows:
        covered = rec.steps[cursor:cursor + row.count]
        cursor += row.count
        delta = _merge_steps(covered) or {}
        involved = delta.pop("involved", [])
        said = delta.pop("said", [])
        if isinstance(row, Arrow):
            d = row.first
            ident = f"seq-msg{d.index}"
            head = (f"#{d.index} at t = {fmt_time(d.time_ms)}: {d.sender} → {d.recipient}: {d.type}"
                    + (f" ({row.detail})" if row.detail else "") + (f", {row.count} times" if row.count > 1 else ""))
        else:
            ident = f"seq-gap{gaps}"
            gaps += 1
            head = row.label()
        if len(said) > _STEP_SAID:
            said = said[:_STEP_SAID] + [f"… and {len(said) - _STEP_SAID} more"]
        steps.append({"id": ident, "head": head, "said": said, "involved": involved[:_STEP_ACCOUNTS],
                      "more": max(0, len(involved) - _STEP_ACCOUNTS), "d": delta})
    return _plain_data({"steps": steps})


_STEP_JS: Final = """
(function () {
  "use strict";
  // The script comes before the diagram it highlights: start once the whole page is parsed.
  if (document.readyState === "loading") { document.addEventListener("DOMContentLoaded", start); } else { start(); }
  function start() {
  var data = JSON.parse(document.getElementById("step-data").textContent);
  var steps = data.steps, n = steps.length;
  var $ = function (id) { return document.getElementById(id); };
  var slider = $("step-slider"), play = $("step-play");
  var current = -1, timer = null;
  if (!n) { return; }
  function stateAt(k) {
    var s = {books: {}, accounts: {}, marks: {}, fund: {}};
    for (var i = 0; i <= k; i++) {
      var d = steps[i].d;
      for (var part in d) { for (var key in d[part]) { s[part][key] = d[part][key]; } }
    }
    return s;
  }
  function cell(row, text, cls) {
    var td = document.createElement(row.parentNode && row.parentNode.tagName === "THEAD" ? "th" : "td");
    td.textContent = text;
    if (cls) { td.className = cls; }
    row.appendChild(td);
  }
  function levels(list) {
    return list.length ? list.map(function (l) { return l[0] + " × " + l[1]; }).join("\\n") : "none";
  }
  function mark(id, on) {
    [id, id + "-label"].forEach(function (x) {
      var el = $(x);
      if (el) { el.classList.toggle("current", on); }
    });
  }
  function show(k, scroll) {
    k = Math.max(0, Math.min(n - 1, k));
    if (current >= 0) { mark(steps[current].id, false); }
    current = k;
    var st = steps[k], s = stateAt(k), d = st.d;
    mark(st.id, true);
    slider.value = String(k);
    $("step-count").textContent = "step " + (k + 1) + " of " + n;
    $("step-head").textContent = st.head;
    var said = $("step-said");
    said.textContent = "";
    st.said.forEach(function (x) { var li = document.createElement("li"); li.textContent = x; said.appendChild(li); });
    if (!st.said.length) { var li = document.createElement("li"); li.className = "none"; li.textContent = "(no event narrated)"; said.appendChild(li); }
    var books = $("step-books");
    books.textContent = "";
    Object.keys(s.books).forEach(function (m) {
      var tr = document.createElement("tr");
      books.appendChild(tr);
      cell(tr, m, d.books && d.books[m] ? "changed" : "");
      cell(tr, levels(s.books[m].buy), "num");
      cell(tr, levels(s.books[m].sell), "num");
    });
    var accts = $("step-accounts");
    accts.textContent = "";
    st.involved.forEach(function (a) {
      var v = s.accounts[a];
      if (!v) { return; }
      var tr = document.createElement("tr");
      tr.setAttribute("data-account", a);
      accts.appendChild(tr);
      var changed = d.accounts && d.accounts[a] ? "changed" : "";
      cell(tr, a, changed);
      for (var i = 0; i < 3; i++) { cell(tr, v[i], "num " + changed); }
      cell(tr, v[3], changed);
    });
    $("step-accounts-more").textContent = st.more ? "and " + st.more + " more" : (st.involved.length ? "" : "none in this step");
    var f = s.fund.fund || ["", "", ""];
    $("step-fund-balance").textContent = f[0];
    $("step-fund-reserved").textContent = f[1];
    $("step-fund-available").textContent = f[2];
    $("step-fund").className = d.fund ? "changed" : "";
    $("step-marks").textContent = Object.keys(s.marks).map(function (m) { return m + " " + s.marks[m]; }).join(" · ");
    $("step-marks").className = d.marks ? "changed" : "";
    if (scroll) {
      var el = $(st.id);
      if (el && el.scrollIntoView) { el.scrollIntoView({block: "center", inline: "nearest"}); }
    }
  }
  function stop() {
    if (timer !== null) { clearInterval(timer); timer = null; }
    play.textContent = "▶ play";
    play.setAttribute("aria-pressed", "false");
  }
  function toggle() {
    if (timer !== null) { stop(); return; }
    if (current >= n - 1) { show(0, true); }
    play.textContent = "❚❚ pause";
    play.setAttribute("aria-pressed", "true");
    timer = setInterval(function () { if (current >= n - 1) { stop(); } else { show(current + 1, true); } }, 800);
  }
  $("step-first").addEventListener("click", function () { stop(); show(0, true); });
  $("step-prev").addEventListener("click", function () { stop(); show(current - 1, true); });
  $("step-next").addEventListener("click", function () { stop(); show(current + 1, true); });
  $("step-last").addEventListener("click", function () { stop(); show(n - 1, true); });
  play.addEventListener("click", toggle);
  slider.addEventListener("input", function () { stop(); show(parseInt(slider.value, 10), true); });
  document.addEventListener("keydown", function (e) {
    if (e.target === slider || e.altKey || e.ctrlKey || e.metaKey) { return; }
    var keys = {ArrowRight: function () { stop(); show(current + 1, true); },
                ArrowLeft: function () { stop(); show(current - 1, true); },
                Home: function () { stop(); show(0, true); }, End: function () { stop(); show(n - 1, true); },
                " ": toggle};
    if (keys[e.key]) { e.preventDefault(); keys[e.key](); }
  });
  slider.max = String(n - 1);
  $("stepper").hidden = false;
  show(0, false);
  }
})();
"""
# The page's one script, allowed by its hash and nothing else (see _CSP).
_STEP_JS_HASH: Final = "sha256-" + base64.b64encode(hashlib.sha256(_STEP_JS.encode()).digest()).decode()


def _json_for_html(value: Any) -> str:
    """JSON to put inside <script type="application/json">: no "<", ">" or "&" that could end the element."""
    text = json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def stepper_html(rec: Recording, rows: Sequence[Row]) -> str:
    """The stepping view: controls, the message of the step, and the state it changed; data and script."""
    data = step_data(rec, rows)
    n = len(data["steps"])
    return "".join([
        '<div id="stepper" class="stepper" hidden>',
        '<div class="controls">',
        '<button type="button" id="step-first" title="first step (Home)">« first</button>',
        '<button type="button" id="step-prev" title="previous step (←)">◀ prev</button>',
        '<button type="button" id="step-play" title="play or pause (space)" aria-pressed="false">▶ play</button>',
        '<button type="button" id="step-next" title="next step (→)">next ▶</button>',
        '<button type="button" id="step-last" title="last step (End)">last »</button>',
        f'<input type="range" id="step-slider" min="0" max="{max(n - 1, 0)}" value="0" aria-label="step">',
        '<span id="step-count"></span></div>',
        '<p id="step-head" class="step-head"></p>',
        '<ul id="step-said" class="step-said"></ul>',
        '<div class="step-state">',
        '<div><h3>Books (best 3 levels: price × size)</h3><table><thead><tr><th>market</th><th>bids</th>'
        '<th>asks</th></tr></thead><tbody id="step-books"></tbody></table></div>',
        '<div><h3>Accounts involved</h3><table><thead><tr><th>account</th><th>balance</th><th>equity</th>'
        '<th>maint. margin</th><th>positions</th></tr></thead><tbody id="step-accounts"></tbody></table>'
        '<p id="step-accounts-more" class="note"></p></div>',
        '<div><h3>Insurance fund (ETH)</h3><p id="step-fund">balance <b id="step-fund-balance"></b> · '
        'reserved <b id="step-fund-reserved"></b> · available <b id="step-fund-available"></b></p>'
        '<h3>Mark prices (ETH)</h3><p id="step-marks"></p></div>',
        "</div></div>",
        '<noscript><p class="note">The stepping view needs JavaScript; the diagram below shows every step.</p>'
        "</noscript>",
        f'<script type="application/json" id="step-data">{_json_for_html(data)}</script>',
        f"<script>{_STEP_JS}</script>",
    ])


# --- the page -----------------------------------------------------------------------------------

_CSS: Final = """
:root { --ink: #1f2933; --muted: #5f6b7a; --line: #d9dee5; --accent: #7b1fa2; }
* { box-sizing: border-box; }
body { margin: 0; font: 15px/1.55 "DejaVu Sans", "Segoe UI", Helvetica, Arial, sans-serif; color: var(--ink);
       background: #f6f7f9; }
main { max-width: 1060px; margin: 0 auto; padding: 28px 28px 60px; background: #fff; }
h1 { font-size: 26px; margin: 0 0 4px; }
h2 { font-size: 19px; margin: 38px 0 6px; padding-top: 14px; border-top: 1px solid var(--line); }
.sub { color: var(--muted); margin: 0 0 14px; }
.description { background: #f3e5f5; border-left: 4px solid var(--accent); padding: 10px 14px; margin: 0 0 16px; }
.cards { display: grid; grid-template-columns: repeat(auto-fill, minmax(118px, 1fr)); gap: 10px; margin: 14px 0; }
.card { border: 1px solid var(--line); border-radius: 6px; padding: 8px 12px; }
.card b { display: block; font-size: 20px; }
.card span { color: var(--muted); font-size: 13px; }
.card.bad b { color: #c62828; } .card.good b { color: #2e7d32; }
.explain { margin: 4px 0 10px; }
.note { color: var(--muted); font-size: 13px; }
figure { margin: 8px 0 0; }
svg.chart { display: block; width: 100%; height: auto; }
.seq { overflow-x: auto; }
/* The diagram and its stepping panel may be wider than the text: up to 1360 px, centred on the page. */
#sequence { width: min(1360px, calc(100vw - 24px)); margin-left: calc(50% - min(680px, calc(50vw - 12px))); }
table { border-collapse: collapse; font-size: 13px; margin: 8px 0; }
th, td { border-bottom: 1px solid var(--line); padding: 4px 10px; text-align: left; vertical-align: top; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
ol.story { font-size: 13.5px; padding-left: 0; list-style: none; }
ol.story li { padding: 1px 0; }
ol.story .t { display: inline-block; width: 70px; color: var(--muted); }
ol.story .a { display: inline-block; width: 150px; color: var(--muted); }
.legend-key { display: inline-block; width: 14px; height: 3px; vertical-align: middle; margin: 0 4px 0 10px; }
footer { margin-top: 40px; color: var(--muted); font-size: 12.5px; }
.stepper { position: sticky; top: 0; z-index: 5; background: #fff; border: 1px solid var(--line);
           border-radius: 6px; padding: 8px 12px; margin: 8px 0; box-shadow: 0 2px 6px rgba(0,0,0,.08);
           font-size: 13.5px; }
.stepper .controls { display: flex; align-items: center; gap: 6px; flex-wrap: wrap; }
.stepper button { font: inherit; padding: 3px 10px; border: 1px solid #90a4ae; border-radius: 4px;
                  background: #eceff1; cursor: pointer; }
.stepper input[type=range] { flex: 1; min-width: 160px; }
.step-head { margin: 6px 0 2px; font-weight: bold; }
.step-said { margin: 0 0 4px; padding-left: 18px; } .step-said li.none { color: var(--muted); list-style: none; }
.step-state { display: grid; grid-template-columns: 1fr 1.6fr 1fr; gap: 12px; }
.step-state h3 { font-size: 13px; margin: 4px 0 2px; color: var(--muted); }
.step-state table { margin: 0; font-size: 12.5px; }
.step-state .changed { background: #fff3c4; }
#step-books td { white-space: pre; }
.seq g.current path { stroke-width: 4px !important; }
.seq g.current { filter: drop-shadow(0 0 3px #ffb300); }
.seq g.current text { font-weight: bold; }
"""

# Nothing may be fetched, from anywhere: the page must work offline.
# The one script the page has (the stepping view) runs because its hash is listed; any other script,
# inline or not, is refused, and so is every request.
_CSP: Final = f"default-src 'none'; style-src 'unsafe-inline'; img-src data:; script-src '{_STEP_JS_HASH}'"

_STORY_KINDS_LEFT_OUT: Final = frozenset({"order_placed"})


def _esc(text: object, newlines: bool = False) -> str:
    """User text in HTML: control, bidi and zero-width characters made visible, then HTML-escaped."""
    return html.escape(plain(text, newlines=newlines))


def _card(value: object, label: str, cls: str = "") -> str:
    return f'<div class="card {cls}"><b>{_esc(value)}</b><span>{_esc(label)}</span></div>'


def _positions(positions: dict[str, dict[str, str]]) -> str:
    return ", ".join(f"{fmt_held(p['size'])} {m}" for m, p in positions.items()) or "none"


def render_html(rec: Recording, limit: int = SEQUENCE_LIMIT) -> str:
    """The whole report page as one string."""
    s = rec.summary
    bands = Bands(rec.deliveries, change_positions(rec))
    choice = choose_accounts(rec)
    rows = summarise_trace(rec.deliveries, limit)
    drawn = sum(r.count for r in rows if isinstance(r, Arrow))
    n_msgs = len(rec.deliveries)
    counts = s["counts"]
    fund = s["insurance_fund"]
    ok = not rec.violations
    name = rec.scenario.name

    parts: list[str] = []
    add = parts.append
    add("<!DOCTYPE html>")
    add('<html lang="en"><head><meta charset="utf-8">')
    add(f'<meta http-equiv="Content-Security-Policy" content="{_CSP}">')
    add('<meta name="viewport" content="width=device-width, initial-scale=1">')
    add(f"<title>{_esc(name)}: perp-risk-sandbox report</title>")
    add(f"<style>{_CSS}</style></head><body><main>")
    add(f'<h1 id="title">Scenario “{_esc(name)}”</h1>')
    add(f'<p class="sub">perp-risk-sandbox teaching report · seed {rec.seed} · {_esc(rec.mode)} delivery · '
        f"{n_msgs:,} messages delivered · {len(rec.events):,} events · virtual time 0 to "
        f"{_esc(fmt_time(rec.deliveries[-1].time_ms if rec.deliveries else 0))}</p>")
    if rec.scenario.description:
        add(f'<p class="description">{_esc(rec.scenario.description, newlines=True)}</p>')

    add('<section id="summary"><h2>Summary</h2><div class="cards">')
    add(_card(f"{fund['initial']} → {fund['final']}", "insurance fund (ETH)"))
    add(_card(counts["liquidations"], "liquidations"))
    add(_card(counts["bankruptcies"], "bankruptcies"))
    add(_card(counts["fund_takeovers"], "fund takeovers"))
    add(_card(counts["adl"], "positions reduced by ADL"))
    add(_card(s["fees"], "fees collected (ETH)"))
    add(_card("all held" if ok else f"{len(rec.violations)} violated", "invariants at every quiet point",
              "good" if ok else "bad"))
    add("</div>")
    if fund["positions"]:
        add(f'<p class="note">The fund ends holding {_esc(_positions(fund["positions"]))}.</p>')
    if not ok:
        add("<ul>" + "".join(f"<li><b>{_esc(v.invariant)}</b>: {_esc(v.detail)} (t = {_esc(v.time)} s)</li>"
                             for v in rec.violations) + "</ul>")
    add('<p class="explain"><b>How to read the charts.</b> The exchange runs on a virtual clock that stands still '
        "while it works through everything one event sets off: a price move reaches the margin monitor, which asks "
        "for a liquidation, whose order trades in the book, and so on, all at the same instant. So the horizontal "
        "axis gives each instant one shaded band, and inside the band draws that chain of messages in the order "
        "they were delivered. A step inside a band is a change that happened partway through the chain.</p>")
    add("</section>")

    add('<section id="mark-price"><h2>Mark price per market</h2>')
    add('<p class="explain">The mark price is the exchange’s reference price: it values every open position and '
        "decides who is liquidated. It moves only when the oracle publishes a new price. Dots are trades in the "
        "book; a red dot is a liquidation order filling, a purple one the insurance fund’s own order. The short "
        "brown dashed line is the <b>bankruptcy price</b> of a liquidated account: the price at which its equity is exactly "
        "zero. A fill better than it leaves money over for the fund; no fill at all means the account is "
        "bankrupt.</p>")
    add(f"<figure>{chart_marks(rec, bands)}</figure></section>")

    add('<section id="equity"><h2>Equity against maintenance margin</h2>')
    add('<p class="explain"><b>Equity</b> is an account’s balance plus the unrealized profit or loss of its '
        "positions at the mark price. The <b>maintenance margin</b> is the minimum equity it must keep, a fixed "
        "share of the value of its positions. When equity falls to the maintenance margin or below (red "
        "shading), the margin monitor asks the liquidation engine to take the account over. A liquidated "
        "account ends at zero; its positions are gone, so its maintenance margin drops to zero too.</p>")
    add(f'<p class="note">{_esc(choice.sentence)}</p>')
    if choice.shown:
        add(f"<figure>{chart_accounts(rec, bands, choice)}</figure>")
    add("</section>")

    add('<section id="insurance-fund"><h2>Insurance fund</h2>')
    add('<p class="explain">One insurance fund backs every market. It <b>grows</b> when a liquidation order fills '
        "better than the bankruptcy price (the surplus is what the trader’s margin had left). When an order cannot "
        "fill, the fund <b>takes the position over</b> at the bankruptcy price and tries to close it in the book, "
        "reserving the most it could lose (the light shading under the line). A close worse than "
        "the bankruptcy price is a <b>payout</b>. What the fund cannot afford to close goes to <b>ADL</b>: the most "
        "profitable, most leveraged traders on the other side are closed at the bankruptcy price. The fund never "
        "goes below zero.</p>")
    add(f"<figure>{chart_fund(rec, bands)}</figure></section>")

    add('<section id="open-interest"><h2>Open interest</h2>')
    add('<p class="explain">Open interest is the total size of all long positions in a market, which always '
        "equals the total size of all shorts: every contract has a buyer and a seller. A liquidation that trades "
        "with a new buyer leaves it unchanged; ADL closes positions on both sides at once and lowers it.</p>")
    add(f"<figure>{chart_open_interest(rec, bands)}</figure></section>")

    add('<section id="sequence"><h2>Message sequence diagram</h2>')
    add('<p class="explain">The exchange is a set of actors that share nothing and only send each other messages. '
        "Each column is an actor; each arrow is one message, from sender to recipient, top to bottom in the order "
        "it was delivered. Hover over an arrow for the details. Colours: "
        + "".join(f'<span class="legend-key" style="background:{c}"></span>{_esc(k)}' for k, c in COLOURS.items())
        + ".</p>")
    if drawn == n_msgs and len(rows) == n_msgs:
        add(f'<p class="note">All {n_msgs:,} messages are drawn.</p>')
    else:
        collapsed = sum(1 for r in rows if isinstance(r, Arrow) and r.count > 1)
        note = f"{n_msgs:,} messages in all; {drawn:,} are drawn"
        if collapsed:
            note += f" (identical messages in a row are drawn once and marked ×N: {collapsed} such arrows)"
        if drawn < n_msgs:
            note += (f"; {n_msgs - drawn:,} are only counted, in the shaded rows. The diagram keeps whole flows: "
                     "the messages that follow the first liquidation request, the first fund takeover and the first "
                     "ADL request, then the second of each, and so on, as many as fit in "
                     f"{limit} rows")
        add(f'<p class="note">{_esc(note)}.</p>')
    add('<p class="explain"><b>Step through the run.</b> The panel below replays it one row of the diagram at a '
        "time: the message just delivered is highlighted in the diagram, and the panel shows what it changed: the "
        "books’ best levels, the accounts it concerns (balance, equity and maintenance margin at the mark), the "
        "insurance fund’s balance with what it has reserved, and the marks. Changed values are shaded. Use the "
        "buttons, the slider or the keys ← → (space plays and pauses).</p>")
    add(stepper_html(rec, rows))
    add(f'<figure class="seq">{chart_sequence(rec, rows)}</figure></section>')

    story = [(e["time"], e["actor"], sentence) for _, e in rec.events
             if e["kind"] not in _STORY_KINDS_LEFT_OUT and (sentence := narrate(e)) is not None]
    add('<section id="story"><h2>What happened, step by step</h2>')
    add('<p class="explain">The narration of <code>sandbox run</code>, with exact amounts (ETH) and prices.</p>')
    cap = 400
    add(f"<details{' open' if len(story) <= 80 else ''}><summary>{len(story):,} narrated events</summary>"
        '<ol class="story">')
    for time, actor, sentence in story[:cap]:
        add(f'<li><span class="t">t = {_esc(time)} s</span><span class="a">{_esc(actor)}</span>{_esc(sentence)}</li>')
    add("</ol>")
    if len(story) > cap:
        add(f'<p class="note">… and {len(story) - cap:,} more: <code>sandbox run</code> with <code>--out DIR</code> '
            "writes every event to DIR/events.jsonl.</p>")
    add("</details></section>")

    add('<section id="end-state"><h2>End state</h2><table><thead><tr><th>account</th><th>deposited</th>'
        "<th>withdrawn</th><th>balance</th><th>positions</th></tr></thead><tbody>")
    for acct, a in s["accounts"].items():
        add(f"<tr><td>{_esc(acct)}</td><td class=num>{_esc(a['deposited'])}</td>"
            f"<td class=num>{_esc(a['withdrawn'])}</td><td class=num>{_esc(a['balance'])}</td>"
            f"<td>{_esc(_positions(a['positions']))}</td></tr>")
    add("</tbody></table><table><thead><tr><th>market</th><th>mark price</th><th>open interest</th></tr></thead><tbody>")
    for market, m in s["markets"].items():
        add(f"<tr><td>{_esc(market)}</td><td class=num>{_esc(m['mark_price'])}</td>"
            f"<td class=num>{_esc(m['open_interest_long'])}</td></tr>")
    add("</tbody></table></section>")
    add("<footer>Amounts are in ETH, prices in ETH per contract, sizes in contracts. The exchange counts in exact "
        "integers (wei, gwei, 1e-9 contract); the numbers in the text are exact, the charts round them for "
        f"drawing. Made by <code>sandbox run … --report</code>: scenario “{_esc(name)}”, seed {rec.seed}, "
        f"{_esc(rec.mode)} delivery.</footer>")
    add("</main></body></html>")
    return "\n".join(parts) + "\n"


# --- a report from a saved run ------------------------------------------------------------------


class ReportLogError(ValueError):
    """A saved run's events.jsonl cannot be turned into a report (the message says why)."""


# The first line (opening_state) is small; a longer one is not a log of this program.
_MAX_FIRST_LINE: Final = 1 << 20


def recording_from_log(path: str | os.PathLike[str], scenario_path: str | None = None) -> Recording:
    """The recording of the run that wrote ``path`` (an ``events.jsonl``), for :func:`render_html`.

    The report draws what only a live run has: every delivered message (the
    sequence diagram, the stepping view) and the state between deliveries
    (equity below maintenance margin just before a liquidation). The log
    does not hold those, but it determines them: its first line names the
    scenario with the sha256 of its file, the seed and the delivery mode,
    and a seeded run is a pure function of those. So the run is rebuilt by
    running that scenario again with that seed, and every line of the log is
    compared, byte for byte, with the rerun's events: the report is made
    only if they are the same run. A live run (trio chose its interleaving)
    cannot be rebuilt; nor can a log that was edited or cut short.

    ``scenario_path`` is the scenario file when it is not the bundled one of
    the name in the log. Raises :class:`ReportLogError`, or
    :class:`~sandbox.scenario.ScenarioError` for a bad ``scenario_path``.
    """
    import trio

    from .exchange import run_scenario
    from .scenario import bundled_scenarios, resolve_scenario

    log_path = Path(path)
    where = plain(log_path)
    if not log_path.exists():
        raise ReportLogError(f"report: {where}: no such file")
    if not log_path.is_file():
        raise ReportLogError(f"report: {where}: not a regular file (expected a run's events.jsonl)")
    try:
        with open(log_path, "rb") as f:
            first = f.readline(_MAX_FIRST_LINE)
    except OSError as e:
        raise ReportLogError(f"report: {where}: cannot be read ({e.strerror or e})") from None
    try:
        opening = json.loads(first)
        if not isinstance(opening, dict) or opening.get("kind") != "opening_state":
            raise ValueError
        name, digest, seed, mode = (opening[k] for k in ("scenario", "digest", "seed", "mode"))
    except (ValueError, KeyError, UnicodeDecodeError):
        raise ReportLogError(f"report: {where}: line 1 is not the opening_state of a run "
                             "(expected the events.jsonl of 'sandbox run --out DIR')") from None
    if mode != "seeded":
        raise ReportLogError(f"report: {where}: a {plain(mode)} run cannot be rebuilt (trio chose its interleaving); "
                             "use 'sandbox run --live --report FILE.html' to report it as it runs")
    if scenario_path is not None:
        scenario = resolve_scenario(scenario_path)
    elif isinstance(name, str) and name in bundled_scenarios():
        scenario = bundled_scenarios()[name]()
    else:
        raise ReportLogError(f"report: {where}: the run used scenario {plain(name)!r}, which is not bundled: "
                             "pass its file with --scenario FILE.toml")
    if scenario.digest != digest:
        raise ReportLogError(f"report: {where}: {plain(scenario.source)} is not the scenario file the run used "
                             "(its sha256 differs from the one in the log)")
    log = EventLog()
    recorder = Recorder()
    recorder.attach(log)
    result = trio.run(lambda: run_scenario(scenario, seed=seed, log=log, **recorder.run_options()))
    events = result.events
    n = 0
    with open(log_path, "rb") as f:
        for n, line in enumerate(f, start=1):
            if n > len(events) or line.rstrip(b"\n") != EventLog.dumps(events[n - 1]).encode():
                raise ReportLogError(f"report: {where}: line {n} is not what the run of {plain(scenario.name)} with "
                                     f"seed {seed} records: the log was edited, or written by other actors")
    if n < len(events):
        raise ReportLogError(f"report: {where}: ends at line {n}, before the run finished (it has "
                             f"{len(events)} events): a report needs the whole run")
    return recorder.finish(result)


# --- writing ----------------------------------------------------------------------------------


class ReportPathError(ValueError):
    """The report cannot be written where asked."""


def check_report_path(path: str | os.PathLike[str], avoid: Iterable[str | os.PathLike[str]] = ()) -> Path:
    """Check before the run that the report can be written at ``path``; the path.

    The rules are :mod:`sandbox._safeio`'s: nothing but a regular file is
    replaced (not a device, FIFO, directory or symlink), nor any of ``avoid``
    (the run's own inputs and outputs), and the folder must take a new file.
    """
    from ._safeio import UnsafePath, check_target, probe_writable

    try:
        target = check_target(path, flag="--report", avoid=avoid)
        probe_writable(target.parent, f"--report {path}")
    except UnsafePath as e:
        raise ReportPathError(str(e)) from None
    return target


def write_report(path: str | os.PathLike[str], rec: Recording, limit: int = SEQUENCE_LIMIT,
                 avoid: Iterable[str | os.PathLike[str]] = ()) -> Path:
    """Render and write the report; the file appears whole or not at all (:func:`sandbox._safeio.write_atomic`)."""
    from ._safeio import UnsafePath, write_atomic

    text = render_html(rec, limit)
    try:
        return write_atomic(path, text, flag="--report", avoid=avoid)
    except UnsafePath as e:
        raise ReportPathError(str(e)) from None
