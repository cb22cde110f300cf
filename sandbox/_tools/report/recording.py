"""Recording a run for the report: the sampled states, the deliveries, and how each message is described and coloured."""

from __future__ import annotations

from typing import Any, Final, Iterable

import attrs

from actors import accounting
from actors._common import ADL, CLEARING, ENGINE, FUND, ORACLE, book_name
from actors.accounting import equity, maintenance_margin

from sandbox import messages as msgs
from sandbox._core.eventlog import EventLog
from sandbox._core.money import fmt_money, fmt_price, fmt_size
from sandbox._tools.narrate import narrate
from sandbox._tools.plain import plain
from sandbox._core.actor import Envelope
from sandbox._core.runtime import Runtime


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
                        accounting.add_open_interest(self._oi[m], size, sign)
                self._held[account] = held
        oi = {m: list(sides) for m, sides in self._oi.items()}
        for lot in fund.lots.values():
            accounting.add_open_interest(oi[lot.market], lot.size)
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


def fmt_held(size: str) -> str:
    return f"short {size.lstrip('-')}" if size.startswith("-") else f"long {size}"


def fmt_trade(size: str) -> str:
    return f"sells {size.lstrip('-')}" if size.startswith("-") else f"buys {size}"
