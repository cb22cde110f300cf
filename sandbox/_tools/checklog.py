"""``sandbox check-log``: verify an ``events.jsonl`` on its own, line by line.

The checker rebuilds the exchange's books from the log alone, in exact
integer units (:mod:`sandbox._core.money`), with the exchange's own arithmetic
(:mod:`actors.accounting`, and the engine's :func:`bankruptcy_prices`), and
stops at the first line that is wrong. Per line it checks:

* the line is one JSON object, UTF-8, with ``seq`` one more than the line
  before (0 first), a virtual ``time`` that never goes back (0 first), an
  ``actor`` and a ``kind``; the first event is ``opening_state`` (the books at
  time 0), and with the scenario given, exactly that scenario's;
* the event is consistent with the books so far, and every figure it states
  is recomputed: a trade honours the orders it fills; a clearing ``fill`` or
  ``liquidation_fill`` applies a trade the book logged, in the book's order; a
  fee is ``ceil(notional x rate)``; the fund's share of it, a clearance fee
  and a funding payment follow their rules (a policy's rates, not in the log,
  are inferred from the amounts and must be one value for the whole log); the
  equity and maintenance margin an actor states match one of its recent views
  of the account, and the engine's bankruptcy prices that view; the fund's
  lot comes from a position clearing handed over, and its losses, maximum
  losses and reservations are the lot's; a surplus arrives as it was sent;
  the balances an event states are the ones the books add up to;
* and then the exchange's invariants, recomputed from the rebuilt books:
  money is conserved (balances + fund + fees + funding held + unrealized PnL
  of every position, the fund's and the fills, hand-overs, surpluses, fee
  shares and socialized charges still in flight included, == deposits -
  withdrawals + initial fund + the revenue pool's transfers + opening
  imbalance), the fund is never negative, long open interest == short
  open interest in every market, no account is liquidated twice at once, and
  no account is left with a negative balance once its liquidation is settled.

An event kind the checker does not know is a bad line: it never vouches for
what it has not read. docs/reference/outputs.md lists, kind by kind, what is
checked, and which one-unit changes can only be caught at a later line or not
at all, and why.

How the books move, and why that makes conservation a real check: positions
move by what was *traded* (trades, hand-overs to the fund, ADL, the fund's
netting), recomputed with :func:`actors.accounting.apply_trade`, so realized
PnL rounds exactly as clearing rounds it; balances move by the amounts the
events *state* (realized PnL, fees, deposits, withdrawals, surpluses, funding,
the fund's payouts and gains). A stated amount that the trades do not account
for therefore shows up as money created or destroyed, on the line that states
it. Positions move in the order of the actor that owns them: an account's in
the order clearing applied its fills (clearing's ``fill`` events), the fund's
as the book traded for it (the fund's arithmetic does not round, so its order
does not matter). A trade whose fill clearing has not applied yet is a fill
*in flight*, counted at its trade price until the ``fill`` line.

Each line costs O(1) in the length of the log: recent views are bounded
(:data:`RECENT_STATES`, :data:`RECENT_MARKS`), and a funding visits the
holders of its market, as clearing does.

A log without the closing ``run_finished`` event is the prefix of a run that
did not end (e.g. killed); every line it has is checked the same way, and a
last line cut short by the kill (no newline, not JSON) is ignored. A complete
log must also have applied every fill, settled every liquidation, and passed
on every surplus, fee share and funding.
"""

from __future__ import annotations

import itertools
import json
import math
import os
from collections import deque
from typing import Any, Final, Iterable, Iterator, NoReturn

import attrs

from actors import accounting
from actors.accounting import Position, apply_trade
from actors.liquidation_engine import bankruptcy_prices
from sandbox.messages import PositionView
from sandbox._core.money import (
    MONEY_DECIMALS,
    PRICE_DECIMALS,
    RATE_DECIMALS,
    RATE_ONE,
    SIZE_DECIMALS,
    UnitError,
    fmt_money,
    fmt_price,
    fmt_rate,
    fmt_size,
    parse_units,
)
import argparse
from pathlib import Path
from rich.console import Console
from sandbox._core.safeio import UnsafePath
from sandbox._tools.command import ALLOW_OUTSIDE_HELP, EXIT_OK, EXIT_VIOLATION, BadInput, Command
from sandbox._tools.plain import plain
from sandbox._core.specs import FUND_ACCOUNT, MarketSpec, Tier
from sandbox._scenario.load import resolve_scenario

__all__ = ["check_log", "check_lines", "LogReport", "BadLine"]

OPENING: Final = "opening_state"
CLOSING: Final = "run_finished"


@attrs.frozen
class BadLine:
    """The first line that is wrong: its number (from 1), its ``seq`` if it has one, and why."""

    line: int
    seq: int | None
    problem: str

    def __str__(self) -> str:
        where = f"line {self.line}" + (f", seq {self.seq}" if self.seq is not None else "")
        return f"{where}: {self.problem}"


@attrs.frozen
class LogReport:
    """What :func:`check_log` found: ``bad`` is None when every line is good."""

    events: int
    complete: bool
    torn_tail: bool
    bad: BadLine | None = None
    scenario: str | None = None
    seed: int | None = None
    liquidations: int = 0
    fund_initial: int = 0
    fund_final: int = 0

    @property
    def ok(self) -> bool:
        return self.bad is None

    def summary(self) -> str:
        """One line: what was checked, whether the run ended, and the fund."""
        if self.bad is not None:
            return str(self.bad)
        if not self.events:
            return "OK, empty (a run cut off before its first event)"
        what = f"OK, {self.events} events (seq 0-{self.events - 1})"
        if self.scenario is not None:
            what += f", scenario {self.scenario} (seed {self.seed})"
        what += ", run finished" if self.complete else f", cut off after seq {self.events - 1} (no {CLOSING})"
        if self.torn_tail:
            what += ", torn last line ignored"
        what += (
            f"; {self.liquidations} liquidation{'s' * (self.liquidations != 1)},"
            f" fund {fmt_money(self.fund_initial)} -> {fmt_money(self.fund_final)}"
        )
        return what + "; every invariant held at every line"


# Event kinds that move nothing on the books and state no figure the log can
# recompute: checked for the common fields only (see docs/reference/cli.md).
# Any other kind without a handler is refused ("unknown event kind"): a kind a
# later version adds must be taught to the checker, never passed unread.
PASSIVE: Final = frozenset({
    "order_rejected", "withdraw_rejected",
    "oracle_price_rejected", "oracle_stale", "oracle_fresh",
    "liquidation_request_ignored", "liquidation_resumed",
    "adl_orders_cancelled",
    "fault_delay", "fault_duplicate", "duplicate_ignored", "actor_crashed", "actor_restarted",
    "actor_failed", "work_limit_reached", "invariant_violated",
})

# How many recent marks of each market, and recent states of each account, a
# figure stated by an actor may have been computed on: every actor works on its
# own copy (a mark or an account update may still be on its way to it), so a
# stated equity is checked against the few latest views, not only the newest.
RECENT_MARKS: Final = 4
RECENT_STATES: Final = 6

# Policy parameters are not in the log: the checker infers each from the
# amounts it governs and refuses the first amount no single value explains.
# (lowest, highest) ppm a rate can still have.
_ANY_RATE: Final = (1, RATE_ONE)
# Fee shares waiting for the fund before the log has shown that the fund takes
# a share of fees at all: past this many, it does not (each share reaches the
# fund within its cascade), and the queue is dropped.
_MAX_UNPROVEN_SHARES: Final = 10_000


class _Bad(Exception):
    """Raised inside the checker: the current line is wrong, for this reason."""


def _bad(problem: str) -> NoReturn:
    raise _Bad(problem)


# --- reading fields -----------------------------------------------------------------


def _field(e: dict[str, Any], key: str) -> Any:
    if key not in e:
        _bad(f"{e['kind']} event has no {key!r}")
    return e[key]


def _text(e: dict[str, Any], key: str) -> str:
    value = _field(e, key)
    if not isinstance(value, str):
        _bad(f"{e['kind']} event: {key!r} must be a string")
    return value


def _whole(e: dict[str, Any], key: str) -> int:
    value = _field(e, key)
    if isinstance(value, bool) or not isinstance(value, int):
        _bad(f"{e['kind']} event: {key!r} must be a whole number")
    return value


def _units(e: dict[str, Any], key: str, decimals: int, value: Any = None) -> int:
    value = _field(e, key) if value is None else value
    if not isinstance(value, str):
        _bad(f"{e['kind']} event: {key!r} must be an exact decimal string")
    try:
        return parse_units(value, decimals, allow_negative=True)
    except UnitError as exc:
        _bad(f"{e['kind']} event: {key!r}: {exc}")


def _money(e: dict[str, Any], key: str) -> int:
    return _units(e, key, MONEY_DECIMALS)


def _price(e: dict[str, Any], key: str = "price") -> int:
    price = _units(e, key, PRICE_DECIMALS)
    if price <= 0:
        _bad(f"{e['kind']} event: {key!r} must be positive")
    return price


def _size(e: dict[str, Any], key: str = "size") -> int:
    return _units(e, key, SIZE_DECIMALS)


def _table(e: dict[str, Any], key: str) -> dict[str, Any]:
    value = _field(e, key)
    if not isinstance(value, dict):
        _bad(f"{e['kind']} event: {key!r} must be an object")
    return value


def _show_sizes(sizes: dict[str, int] | None) -> str:
    return ", ".join(f"{fmt_size(size)} {m}" for m, size in (sizes or {}).items()) or "nothing"


def _market_spec(e: dict[str, Any], symbol: str, spec: dict[str, Any]) -> MarketSpec:
    """A market's parameters as ``opening_state`` lists them, in integer units."""
    def rate(key: str, default: str | None = None) -> int:
        return _units(e, key, RATE_DECIMALS, spec.get(key, default))

    tiers = spec.get("tiers", [])
    if not isinstance(tiers, list) or not all(isinstance(t, dict) for t in tiers):
        _bad(f"opening_state: market {symbol!r}: 'tiers' must be a list of objects")
    table = []
    for t in tiers:
        bound = t.get("notional")
        lev = t.get("max_leverage")
        if isinstance(lev, bool) or not isinstance(lev, int):
            _bad(f"opening_state: market {symbol!r}: a tier's 'max_leverage' must be a whole number")
        table.append(Tier(None if bound is None else _units(e, "notional", MONEY_DECIMALS, bound),
                          _units(e, "maintenance_margin", RATE_DECIMALS, t.get("maintenance_margin")),
                          _units(e, "initial_margin", RATE_DECIMALS, t.get("initial_margin")), lev))
    out = MarketSpec(
        symbol, _units(e, "mark_price", PRICE_DECIMALS, spec.get("mark_price")),
        rate("initial_margin"), rate("maintenance_margin"),
        _units(e, "tick_size", PRICE_DECIMALS, spec.get("tick_size")),
        _units(e, "lot_size", SIZE_DECIMALS, spec.get("lot_size")),
        rate("maker_fee"), rate("taker_fee"), tiers=tuple(table), risk_factor=rate("risk_factor", "1"),
    )
    if min(out.mark_price, out.tick_size, out.lot_size) <= 0 or out.mark_price % out.tick_size:
        _bad(f"opening_state: market {symbol!r}: its mark, tick and lot must be positive, the mark a multiple "
             "of the tick")
    return out


# --- the rebuilt books --------------------------------------------------------------


@attrs.define(slots=True)
class _Market:
    mark: int
    spec: MarketSpec
    recent: deque[int] = attrs.field(factory=lambda: deque(maxlen=RECENT_MARKS))

    @property
    def maker_fee(self) -> int:
        return self.spec.maker_fee

    @property
    def taker_fee(self) -> int:
        return self.spec.taker_fee


@attrs.define(slots=True)
class _Funding:
    """One funding of one market, from its ``funding_rate`` line until its last payment."""

    funding_id: int
    mark: int
    rate: int
    payers: dict[str, int]  # account -> what it must pay, not logged yet
    receivers: dict[str, int]  # account -> what it is owed
    paid: int = 0  # what the payers paid so far
    due: int = 0  # what the fund is asked for (receivers' total - payers' total)
    contributed: int | None = None  # what the fund paid (None: not asked, or not yet)
    shares: dict[str, int] = attrs.field(factory=dict)  # receiver -> what it gets
    remainder_received: bool = False
    shortfall_seen: bool = False

    @property
    def owed(self) -> int:
        return sum(self.receivers.values())

    @property
    def pool(self) -> int | None:
        """What there is to pay the receivers, once known: the payers' money and the fund's contribution."""
        if self.payers or (self.due > 0 and self.contributed is None):
            return None
        return self.paid + (self.contributed or 0)

    def share(self, account: str) -> int:
        pool = self.pool
        assert pool is not None
        return accounting.funding_pro_rata(self.receivers[account], pool, self.owed)

    @property
    def remainder(self) -> int:
        pool = self.pool
        assert pool is not None
        return pool - sum(self.share(a) for a in self.receivers)


@attrs.define(slots=True)
class _InFlight:
    """A trade's fill on its way to clearing: the account, its order, the signed size and price."""

    line: int
    order_id: str
    size: int
    price: int
    kind: str  # the order's kind: trader | liquidation
    liquidity: str


@attrs.define(slots=True)
class _AdlRequest:
    """A lot the fund handed to ADL: what is left to deleverage, and whether ADL gave up."""

    lot_id: int
    market: str
    remaining: int
    over: bool = False
    price: int = -1  # the price the fund asked ADL to close it at (policy.adl_price)


def cur_price(books: Any, cur: _AdlRequest) -> int:
    return cur.price


@attrs.define(slots=True)
class _Socialize:
    """A socialized loss the fund asked for (lot, its fund), and clearing's charges for it once they begin."""

    market: str
    amount: int
    fund: str | None
    due: deque[tuple[str, int]] | None = None  # (account, share) still to charge, in clearing's order
    collected: int = 0


@attrs.define(slots=True)
class _Order:
    """A trader's order open in a book: whose, where, which side (+1 buy), its limit and what is left of it."""

    account: str
    market: str
    side: int
    price: int
    remaining: int


@attrs.define(slots=True)
class _Lot:
    market: str
    size: int
    basis: int
    side: int  # +1 long, -1 short, as taken over
    bankruptcy_price: int = 0
    liq_id: int = 0
    account: str = ""
    limit: int | None = None  # the limit of its last order (the book may still trade it)
    adl_price: int | None = None  # the price of its last ADL request
    held_at: int | None = None  # held since this fund_inventory_marked of its market (None: not held)


class _Books:
    """The exchange's books as the log tells them, with running totals for the invariants."""

    def __init__(self) -> None:
        self.markets: dict[str, _Market] = {}
        self.balances: dict[str, int] = {}
        self.positions: dict[str, dict[str, Position]] = {}
        self.frozen: dict[str, int] = {}  # account -> liquidation id
        self.fund = 0
        self.fund_initial = 0
        # With several funds ([[funds]]): each fund's balance, and the fund of each market.
        self.ledgers: dict[str, int] = {}
        self.fund_of: dict[str, str] = {}
        self.fees = 0
        self.external = 0  # initial fund + deposits - withdrawals
        self.lots: dict[int, _Lot] = {}
        self.orders: dict[str, _Order] = {}  # traders' orders open in the books
        self.index: dict[str, int] = {}  # market -> the last index price logged
        self.adl_requests: deque[_AdlRequest] = deque()  # the fund's requests ADL has not started
        self.adl_current: _AdlRequest | None = None
        self.adl_given_up: dict[int, int] = {}  # lot id -> what ADL left of it, until the fund keeps it
        self.funding_ids = 0  # the oracle numbers its fundings 1, 2, ...
        self.lots_opened = 0  # and the fund its lots
        self.fills: dict[tuple[str, str], deque[_InFlight]] = {}  # (account, market) -> in flight, book order
        self.takeovers: dict[tuple[int, str], tuple[int, int]] = {}  # (liq id, market) -> (size, price)
        # liq id -> what it sent the fund, in order: (amount, the fund's event for it)
        self.surpluses: dict[int, deque[tuple[int, str]]] = {}
        # Running totals over every position, lot and fill or hand-over in flight.
        self.net: dict[str, int] = {}  # market -> sum of signed sizes (0 <=> long OI == short OI)
        self.basis = 0  # sum of cost bases
        self.balance_total = 0
        self.surplus_total = 0
        self.liquidations = 0
        # Why the last money movement may not add up, for the conservation message.
        self.note: str | None = None
        # The fill just applied (account, market, fee): the ``fee`` event that follows must match it.
        self.last_fill: tuple[str, str, int] | None = None
        # Each account's recent states (balance, positions), newest last, and who holds each market.
        self.states: dict[str, deque[tuple[int, tuple[tuple[str, int, int], ...]]]] = {}
        self.touched: set[str] = set()
        self.holders: dict[str, set[str]] = {}
        self.order_of: dict[str, int] = {}  # account -> its place in clearing's books (funding's order)
        # Money held by clearing for a funding (paid, not yet passed on), and each market's funding.
        self.funding_held = 0
        self.fundings: dict[str, _Funding] = {}
        # Fee shares on their way to the fund, in clearing's order: (account, market, fee, line).
        self.shares: deque[tuple[str, str, int, int]] = deque()
        self.shares_seen = False  # the log has shown that the fund takes a share of fees
        self.shares_off = False  # ... or that it does not
        self.shares_total = 0  # money in flight as fee shares (counted in ``fees`` until it arrives)
        # The policy's parameters, as far as the log has pinned them down.
        self.fee_to_fund = _ANY_RATE
        self.liquidation_fee: tuple[int, int] | None = None  # None: no settlement has said yet; (0, 0): none
        self.bankruptcy_rules = {("loss", False), ("loss", True), ("maintenance_margin", False),
                                 ("maintenance_margin", True)}
        # Per liquidation: the notional liquidated since its last clearance fee.
        self.liquidated: dict[int, int] = {}
        # The fund's lots per market, summed: (size, basis).
        self.lot_totals: dict[str, list[int]] = {}
        # policy.adl_price: the rules the fund's ADL requests so far are consistent with.
        self.adl_prices = {"bankruptcy", "previous_mark"}
        # policy.socialized_loss: the charges the fund asked for and clearing has not passed on yet
        # (lot id -> _Socialize), the money charged on its way to the fund, and the fund's floor.
        self.socializing: dict[int, _Socialize] = {}
        self.socialized_held = 0
        self.fund_floor: int | None = None
        # policy.revenue_pool: the pool's size, one transfer, and what it has paid in so far.
        self.revenue_pool: int | None = None
        self.revenue_transfer: int | None = None
        self.revenue_received = 0
        # policy.backstop_vault: the vault account, and each backstop liquidation's sizes and prices.
        self.vault: str | None = None
        self.backstops: dict[int, tuple[dict[str, int], dict[str, int]]] = {}
        # How many times the fund has marked its inventory in each market: a held lot is held again
        # (re-offered, no order possible) only on a later mark.
        self.marked: dict[str, int] = {}
        # Isolated margin: each bucket account (OWNER@MARKET) and its one market.
        self.buckets: dict[str, str] = {}

    # -- helpers that keep the totals right ---------------------------------------------

    def market(self, e: dict[str, Any]) -> str:
        market = _text(e, "market")
        if market not in self.markets:
            _bad(f"unknown market {market!r}")
        return market

    def account(self, e: dict[str, Any], key: str = "account") -> str:
        account = _text(e, key)
        if account not in self.balances:
            _bad(f"unknown account {account!r}")
        return account

    def credit(self, account: str, amount: int) -> None:
        self.balances[account] += amount
        self.balance_total += amount
        self.touched.add(account)

    def remember_states(self) -> None:
        """After a line: the new state of every account it changed joins that account's recent states."""
        for account in self.touched:
            triples = tuple((m, p.size, p.entry_value) for m, p in self.positions[account].items())
            self.states[account].append((self.balances[account], triples))
        self.touched.clear()

    def views(self, account: str) -> Iterator[tuple[int, tuple[tuple[str, int, int], ...], dict[str, int]]]:
        """The (balance, positions, marks) an actor may have judged ``account`` by, newest first.

        The account's few latest states, each with every combination of its
        markets' few latest marks: an actor's copy of either may lag the log.
        """
        for balance, triples in reversed(self.states[account]):
            markets = [m for m, _, _ in triples]
            for marks in itertools.product(*(reversed(self.markets[m].recent) for m in markets)):
                yield balance, triples, dict(zip(markets, marks))

    def specs(self) -> dict[str, MarketSpec]:
        return {m: market.spec for m, market in self.markets.items()}

    def judged(self, e: dict[str, Any], account: str, what: str, sizes: dict[str, int] | None = None
               ) -> tuple[int, tuple[tuple[str, int, int], ...], dict[str, int]]:
        """The view a stated (equity, maintenance margin) was computed on; refuse the line if none fits."""
        eq, mm = _money(e, "equity"), _money(e, "maintenance_margin")
        specs = self.specs()
        for balance, triples, marks in self.views(account):
            if sizes is not None and sizes != {m: size for m, size, _ in triples}:
                continue
            if (accounting.equity(balance, triples, marks) == eq
                    and accounting.maintenance_margin(triples, marks, specs) == mm):
                return balance, triples, marks
        balance, triples = self.states[account][-1]
        marks = {m: self.markets[m].mark for m, _, _ in triples}
        held = {m: fmt_size(size) for m, size, _ in triples}
        _bad(f"{what} states equity {fmt_money(eq)} and maintenance margin {fmt_money(mm)} for {account}"
             + (f" holding {_show_sizes(sizes)}" if sizes is not None else "")
             + f", which no recent view of the books gives: at the latest ({fmt_money(balance)}, {held} at "
             f"{ {m: fmt_price(x) for m, x in marks.items()} }) they are "
             f"{fmt_money(accounting.equity(balance, triples, marks))} and "
             f"{fmt_money(accounting.maintenance_margin(triples, marks, specs))}")

    def recent_mark(self, e: dict[str, Any], market: str, key: str = "mark_price") -> int:
        """A mark an event states as an actor's copy: it must be one of the market's recent marks."""
        mark = _price(e, key)
        if mark not in self.markets[market].recent:
            _bad(f"{e['kind']} states a mark of {fmt_price(mark)} for {market}, which is none of its recent marks "
                 f"({', '.join(fmt_price(x) for x in reversed(self.markets[market].recent))})")
        return mark

    def narrow(self, name: str, rate: tuple[int, int], lo: int, hi: int, what: str) -> tuple[int, int]:
        """Pin a policy rate (ppm) down further; refuse the line if no rate explains every amount so far."""
        new = (max(rate[0], lo), min(rate[1], hi))
        if new[0] > new[1]:
            _bad(f"{what}: no single {name} explains it and the amounts before it "
                 f"(they need {fmt_rate(rate[0])}..{fmt_rate(rate[1])}, this one {fmt_rate(max(lo, 0))}..{fmt_rate(hi)})")
        return new

    def hold(self, market: str, size: int, basis: int) -> None:
        """Something of ``size`` at cost ``basis`` comes onto (or, negated, leaves) the books."""
        self.net[market] += size
        self.basis += basis

    def trade(self, account: str, market: str, size: int, price: int) -> int:
        """Apply a signed trade to an account's position, as clearing does; return the realized PnL."""
        positions = self.positions[account]
        position = positions.setdefault(market, Position())
        before = position.entry_value
        realized = apply_trade(position, size, price)
        self.hold(market, size, position.entry_value - before)
        self.touched.add(account)
        if position.size == 0:
            del positions[market]
            self.holders[market].discard(account)
        else:
            self.holders[market].add(account)
        return realized

    def realize(self, account: str, stated: int, recomputed: int, what: str) -> None:
        """Credit the realized PnL the log states; remember it if the trade says otherwise."""
        self.credit(account, stated)
        if stated != recomputed:
            self.note = f"{what} states realized PnL {fmt_money(stated)}, the trade realizes {fmt_money(recomputed)}"

    def lot(self, e: dict[str, Any], lot_id: int) -> _Lot:
        lot = self.lots.get(lot_id)
        if lot is None:
            _bad(f"the insurance fund has no open lot {lot_id}")
        return lot

    def stated_balance(self, e: dict[str, Any], account: str) -> None:
        stated = _money(e, "balance")
        if stated != self.balances[account]:
            _bad(f"{account}'s balance is stated as {fmt_money(stated)}, "
                 f"but the log adds up to {fmt_money(self.balances[account])}")

    def stated_fund(self, e: dict[str, Any]) -> None:
        stated = _money(e, "balance")
        if self.ledgers:  # several funds: the event states its own fund's balance
            name = self.ledger(e)
            if stated != self.ledgers[name]:
                _bad(f"fund {name!r}'s balance is stated as {fmt_money(stated)}, "
                     f"but the log adds up to {fmt_money(self.ledgers[name])}")
            return
        if stated != self.fund:
            _bad(f"the fund's balance is stated as {fmt_money(stated)}, but the log adds up to {fmt_money(self.fund)}")

    def ledger(self, e: dict[str, Any], market: str | None = None) -> str:
        """The fund an event of several funds names; a lot's must be its market's fund."""
        name = _text(e, "fund")
        if name not in self.ledgers:
            _bad(f"unknown fund {name!r}")
        if market is not None and self.fund_of[market] != name:
            _bad(f"{market} belongs to fund {self.fund_of[market]!r}, but the event books it to {name!r}")
        return name

    def book_fund(self, e: dict[str, Any], amount: int, market: str | None = None) -> None:
        """Money into (or out of) the fund; with several funds, into the one the event names."""
        self.fund += amount
        if self.ledgers:
            self.ledgers[self.ledger(e, market)] += amount

    # -- the invariants, after every line ----------------------------------------------------

    def check_invariants(self) -> None:
        for market, net in self.net.items():
            if net:
                _bad(f"long open interest != short open interest in {market}: "
                     f"positions, lots and fills in flight add up to {fmt_size(net)}")
        value = self.balance_total + self.fund + self.fees + self.surplus_total + self.funding_held - self.basis
        value += self.socialized_held
        value += sum(m.mark * self.net[s] for s, m in self.markets.items())  # 0 while open interest balances
        gap = value - self.external
        if gap:
            why = f" ({self.note})" if self.note else ""
            _bad(f"money is not conserved: the books differ from deposits - withdrawals + initial fund "
                 f"by {fmt_money(gap)}{why}")
        if self.fund < 0:
            _bad(f"the fund is negative: {fmt_money(self.fund)}")
        for name, value in self.ledgers.items():
            if value < 0:
                _bad(f"fund {name!r} is negative: {fmt_money(value)}")

    def check_closed(self, e: dict[str, Any]) -> None:
        """At the end of a run nothing may be left in flight and every liquidation has ended."""
        for (account, market), queue in self.fills.items():
            if queue:
                _bad(f"the run ended but the trade on line {queue[0].line} was never applied to {account} in {market}")
        for (liq_id, market) in self.takeovers:
            _bad(f"the run ended but liquidation {liq_id}'s {market} position never reached the fund")
        for liq_id in self.surpluses:
            _bad(f"the run ended but what liquidation {liq_id} sent the fund never reached it")
        for lot_id in self.socializing:
            _bad(f"the run ended but the socialized loss the fund asked for lot {lot_id} never reached it")
        if self.shares and self.shares_seen:
            account, market, _, line = self.shares[0]
            _bad(f"the run ended but the fund's share of {account}'s fee in {market} (line {line}) never reached it")
        for market, funding in self.fundings.items():
            self.funding_done(market, funding, "the run ended")
        for account, liq_id in self.frozen.items():
            _bad(f"every liquidation completes: the run ended with {account} still under liquidation {liq_id}")

    # -- one method per event kind that moves the books ---------------------------------------

    def on_opening_state(self, e: dict[str, Any]) -> None:
        for symbol, spec in _table(e, "markets").items():
            if not isinstance(spec, dict):
                _bad(f"opening_state: market {symbol!r} must be an object")
            market = _market_spec(e, symbol, spec)
            self.markets[symbol] = _Market(market.mark_price, market)
            self.markets[symbol].recent.append(market.mark_price)
            self.net[symbol] = 0
            self.holders[symbol] = set()
            self.lot_totals[symbol] = [0, 0]
        self.fund = self.fund_initial = self.external = _money(e, "insurance_fund")
        if "funds" in e:
            for name, spec in _table(e, "funds").items():
                if not isinstance(spec, dict) or not isinstance(spec.get("markets"), list):
                    _bad(f"opening_state: fund {name!r} must be an object with markets")
                self.ledgers[name] = _units(e, "balance", MONEY_DECIMALS, spec.get("balance"))
                for market in spec["markets"]:
                    if market not in self.markets or market in self.fund_of:
                        _bad(f"opening_state: fund {name!r} names market {market!r} twice or unknown")
                    self.fund_of[market] = name
            if sum(self.ledgers.values()) != self.fund or set(self.fund_of) != set(self.markets):
                _bad("opening_state: the funds' balances do not add up to insurance_fund, "
                     "or some market is in no fund")
        for account, spec in _table(e, "accounts").items():
            if not isinstance(spec, dict) or not isinstance(spec.get("positions"), dict):
                _bad(f"opening_state: account {account!r} must be an object with positions")
            balance = _units(e, "balance", MONEY_DECIMALS, spec.get("balance"))
            self.balances[account] = 0
            self.order_of[account] = len(self.order_of)
            self.states[account] = deque(maxlen=RECENT_STATES)
            self.credit(account, balance)
            self.external += balance
            self.positions[account] = {}
            for market, p in spec["positions"].items():
                if market not in self.markets or not isinstance(p, dict):
                    _bad(f"opening_state: {account}'s position in unknown market {market!r}")
                size = _units(e, "size", SIZE_DECIMALS, p.get("size"))
                entry_value = _units(e, "entry_value", MONEY_DECIMALS, p.get("entry_value"))
                if size == 0:
                    _bad(f"opening_state: {account}'s position in {market} has size 0")
                self.positions[account][market] = Position(size, entry_value)
                self.holders[market].add(account)
                self.hold(market, size, entry_value)
                # Entry costs need not net (a real snapshot): what they do not net
                # to is the opening imbalance, a constant on both sides.
                self.external -= entry_value
        for account in self.balances:  # an isolated bucket, OWNER@MARKET, holds its market only
            owner, at, market = account.rpartition("@")
            if at and owner in self.balances and market in self.markets:
                self.buckets[account] = market
                if set(self.positions[account]) - {market}:
                    _bad(f"opening_state: the isolated bucket {account} holds {', '.join(self.positions[account])}")
        if "opening_imbalance" in e:
            stated = _money(e, "opening_imbalance")
            if stated != self.external - self.fund_initial - sum(self.balances.values()):
                _bad(f"opening_state states an opening imbalance of {fmt_money(stated)}, but its positions' "
                     f"entry costs net to {fmt_money(self.fund_initial + sum(self.balances.values()) - self.external)}")

    def on_mark_price(self, e: dict[str, Any]) -> None:
        market = self.market(e)
        previous = _price(e, "previous")
        if previous != self.markets[market].mark:
            _bad(f"the previous mark of {market} is stated as {fmt_price(previous)}, "
                 f"but the log last set it to {fmt_price(self.markets[market].mark)}")
        mark = _price(e)
        tick = self.markets[market].spec.tick_size
        if mark % tick:
            _bad(f"a mark of {fmt_price(mark)} for {market}, not a multiple of its tick {fmt_price(tick)}")
        self.markets[market].mark = mark
        if mark != previous:
            self.markets[market].recent.append(mark)

    # -- the oracle's index, and funding ---------------------------------------------------

    def on_index_price(self, e: dict[str, Any]) -> None:
        self.index[self.market(e)] = _price(e)

    def same_index(self, e: dict[str, Any], market: str, key: str) -> None:
        """An index price an event states is the last one the oracle logged (if it logged one)."""
        if market in self.index and _price(e, key) != self.index[market]:
            _bad(f"{e['kind']} states {market}'s index as {fmt_price(_price(e, key))}, but the last index price "
                 f"logged is {fmt_price(self.index[market])}")

    def on_mark_computed(self, e: dict[str, Any]) -> None:
        self.same_index(e, self.market(e), "index")

    def on_run_finished(self, e: dict[str, Any]) -> None:
        if _whole(e, "violations") != 0:  # a line reporting one is refused where it is
            _bad(f"the run reports {e['violations']} invariant violations, but the log has none")


    def on_funding_rate(self, e: dict[str, Any]) -> None:
        """A funding: who pays and who receives what, recomputed from the positions clearing holds now."""
        market, funding_id = self.market(e), _whole(e, "funding_id")
        mark, rate = _price(e, "mark_price"), _units(e, "rate", RATE_DECIMALS)
        if funding_id != self.funding_ids + 1:
            _bad(f"funding {funding_id}, but the oracle's last funding was {self.funding_ids}")
        self.funding_ids = funding_id
        if mark != self.markets[market].mark:  # the oracle's own mark: the log's
            _bad(f"funding {funding_id} of {market} states the mark as {fmt_price(mark)}, but it is "
                 f"{fmt_price(self.markets[market].mark)}")
        self.same_index(e, market, "index")
        # (mark - index) / index / divisor toward zero, capped: the divisor (>= 1) and the cap are the
        # policy's, so the rate is bounded here and checked exactly by the payments it makes.
        index = _price(e, "index")
        premium = (mark - index) * RATE_ONE
        bound = abs(premium) // index
        if rate and ((rate > 0) != (premium > 0) or abs(rate) > bound):
            _bad(f"funding {funding_id} of {market} states a rate of {fmt_rate(rate)}, but (mark - index) / index "
                 f"is {'-' if premium < 0 else ''}{fmt_rate(bound)} before its divisor and cap")
        if market in self.fundings:
            self.funding_done(market, self.fundings.pop(market), f"funding {funding_id} of {market} began")
        payers, receivers = {}, {}
        for account in sorted(self.holders[market], key=self.order_of.__getitem__):
            if account in self.frozen:
                continue  # clearing skips an account under liquidation
            owed = accounting.funding_owed(self.positions[account][market].size, mark, rate)
            if owed > 0:
                payers[account] = accounting.funding_paid(owed)
            elif owed < 0 and accounting.funding_received(owed):
                receivers[account] = accounting.funding_received(owed)
        funding = _Funding(funding_id, mark, rate, payers, receivers)
        funding.due = sum(receivers.values()) - sum(payers.values())
        self.fundings[market] = funding

    def funding_done(self, market: str, f: _Funding, why: str) -> None:
        """Everything a funding owed has been paid, and what was left returned to the fund."""
        if f.payers:
            _bad(f"{why}, but {next(iter(f.payers))} never paid funding {f.funding_id} of {market}")
        if f.due > 0 and f.contributed is None:
            _bad(f"{why}, but the fund was never asked for funding {f.funding_id} of {market}")
        if f.due > 0 and f.contributed is not None and f.contributed < f.due and not f.shortfall_seen:
            _bad(f"{why}, but funding {f.funding_id} of {market} fell short without a funding_shortfall")
        unpaid = [a for a in f.receivers if a not in f.shares and f.share(a)]
        if unpaid:
            _bad(f"{why}, but {unpaid[0]} was never paid funding {f.funding_id} of {market}")
        if f.remainder and not f.remainder_received:
            _bad(f"{why}, but the rest of funding {f.funding_id} of {market} never reached the fund")

    def funding_of(self, e: dict[str, Any], market: str) -> _Funding:
        f = self.fundings.get(market)
        if f is None or ("funding_id" in e and _whole(e, "funding_id") != f.funding_id):
            _bad(f"a {e['kind']} event of {market} for no funding in progress")
        return f

    def on_funding(self, e: dict[str, Any]) -> None:
        account, market, amount = self.account(e), self.market(e), _money(e, "amount")
        f = self.funding_of(e, market)
        if "rate" in e and _units(e, "rate", RATE_DECIMALS) != f.rate:
            _bad(f"{account}'s funding states a rate of {e['rate']}, but funding {f.funding_id} is at {fmt_rate(f.rate)}")
        if amount < 0:
            owed = f.payers.pop(account, None)
            if owed != -amount:
                _bad(f"{account} pays {fmt_money(-amount)} of funding {f.funding_id} in {market}, but "
                     + (f"it owes {fmt_money(owed)}" if owed is not None else "it owes nothing (or has paid)"))
            f.paid -= amount
        else:
            if account not in f.receivers or account in f.shares or f.pool is None:
                _bad(f"{account} receives {fmt_money(amount)} of funding {f.funding_id} in {market}, but "
                     + ("it is owed nothing" if account not in f.receivers else
                        "it has been paid" if account in f.shares else "the money to pay it is not in yet"))
            share = f.share(account)
            if amount != share or amount == 0:
                _bad(f"{account} receives {fmt_money(amount)} of funding {f.funding_id} in {market}, but its "
                     f"{fmt_money(f.receivers[account])} out of {fmt_money(f.pool or 0)} for {fmt_money(f.owed)} owed "
                     f"is {fmt_money(share)}")
            f.shares[account] = amount
        self.credit(account, amount)
        self.funding_held -= amount
        self.stated_balance(e, account)

    def on_fund_funding_paid(self, e: dict[str, Any]) -> None:
        market = self.market(e)
        f = self.funding_of(e, market)
        owed, amount = _money(e, "owed"), _money(e, "amount")
        if f.payers or f.due <= 0 or f.contributed is not None:
            _bad(f"the fund pays into funding {f.funding_id} of {market}, which "
                 + ("has payers still to pay" if f.payers else "needs nothing from it" if f.due <= 0 else "it paid"))
        if owed != f.due:
            _bad(f"the fund is asked for {fmt_money(owed)} of funding {f.funding_id} in {market}, but its receivers "
                 f"are owed {fmt_money(f.owed)} and its payers paid {fmt_money(f.paid)}: {fmt_money(f.due)}")
        if not 0 <= amount <= owed:
            _bad(f"the fund pays {fmt_money(amount)} of the {fmt_money(owed)} asked for funding {f.funding_id}")
        f.contributed = amount
        self.book_fund(e, -amount, market)
        self.funding_held += amount
        self.stated_fund(e)

    def on_funding_shortfall(self, e: dict[str, Any]) -> None:
        market = self.market(e)
        f = self.funding_of(e, market)
        if f.contributed is None or f.contributed >= f.due or f.shortfall_seen:
            _bad(f"a funding shortfall of funding {f.funding_id} in {market}, which the fund "
                 + ("has not been asked about" if f.contributed is None else "paid in full"))
        if (_money(e, "owed"), _money(e, "contributed")) != (f.due, f.contributed):
            _bad(f"funding {f.funding_id}'s shortfall states {e['contributed']} of {e['owed']}, but the fund paid "
                 f"{fmt_money(f.contributed)} of {fmt_money(f.due)}")
        f.shortfall_seen = True

    def on_fund_funding_received(self, e: dict[str, Any]) -> None:
        market = self.market(e)
        f = self.funding_of(e, market)
        amount = _money(e, "amount")
        if f.pool is None or f.remainder_received or f.remainder != amount:
            _bad(f"the fund receives {fmt_money(amount)} left of funding {f.funding_id} in {market}, but "
                 + ("its receivers are not settled yet" if f.pool is None else
                    "it was returned already" if f.remainder_received else f"{fmt_money(f.remainder)} is left"))
        f.remainder_received = True
        self.funding_held -= amount
        self.book_fund(e, amount, market)
        self.stated_fund(e)

    def on_deposit(self, e: dict[str, Any]) -> None:
        account, amount = self.account(e), _money(e, "amount")
        self.not_bucket(account, "a deposit")
        if amount <= 0:
            _bad(f"a deposit of {fmt_money(amount)}")
        self.credit(account, amount)
        self.external += amount
        self.stated_balance(e, account)

    def on_withdraw(self, e: dict[str, Any]) -> None:
        account, amount = self.account(e), _money(e, "amount")
        self.not_bucket(account, "a withdrawal")
        if amount <= 0:
            _bad(f"a withdrawal of {fmt_money(amount)}")
        self.credit(account, -amount)
        self.external -= amount
        self.stated_balance(e, account)

    def not_bucket(self, account: str, what: str) -> None:
        """Margin cannot be moved into or out of an isolated bucket during a run: its owner's cross account takes it."""
        if account in self.buckets:
            _bad(f"{what} to or from the isolated bucket {account}: deposits and withdrawals go to the cross account")

    def on_trade(self, e: dict[str, Any], line: int) -> None:
        market, price, size = self.market(e), _price(e), _size(e)
        if size <= 0:
            _bad(f"a trade of size {fmt_size(size)}")
        buyer, seller, taker = _text(e, "buyer"), _text(e, "seller"), _text(e, "taker")
        taker_kind = _text(e, "taker_kind")
        if buyer == seller:
            _bad(f"{buyer} trades with itself")
        if taker not in (buyer, seller):
            _bad(f"the taker {taker!r} is neither the buyer nor the seller")
        orders = {taker: _text(e, "taker_order"), (seller if taker == buyer else buyer): _text(e, "maker_order")}
        spec = self.markets[market].spec
        if price % spec.tick_size:
            _bad(f"a trade at {fmt_price(price)}, off {market}'s tick {fmt_price(spec.tick_size)}")
        if taker_kind == "trader" and size % spec.lot_size:
            _bad(f"a trade of {fmt_size(size)} between two traders' orders, off {market}'s lot {fmt_size(spec.lot_size)}")
        for account, signed in ((buyer, size), (seller, -size)):
            is_taker = account == taker
            if not is_taker or taker_kind == "trader":
                self.order_trades(orders[account], account, market, signed, price, maker=not is_taker)
            kind = taker_kind if is_taker else "trader"  # IOC orders never rest: a maker is a trader's order
            if account == FUND_ACCOUNT:
                if not (is_taker and kind == "fund"):
                    _bad("the insurance fund trades only as the taker of its own IOC orders")
                lot_id = orders[account].partition(":")[2]
                lot = self.lot(e, int(lot_id) if lot_id.isdigit() else -1)
                if lot.market != market:
                    _bad(f"the fund's order {orders[account]} is for {lot.market}, not {market}")
                if lot.limit is None or (price < lot.limit if signed < 0 else price > lot.limit):
                    _bad(f"the fund's order {orders[account]} trades at {fmt_price(price)}, "
                         + ("but it has no order in the book" if lot.limit is None
                            else f"beyond its limit {fmt_price(lot.limit)}"))
                self.lot_move(lot, signed, signed * price)
                self.hold(market, signed, signed * price)
                continue
            if account not in self.balances:
                _bad(f"unknown account {account!r}")
            if kind not in ("trader", "liquidation"):
                _bad(f"{account} trades with an order of kind {kind!r}")
            fill = _InFlight(line, orders[account], signed, price, kind, "taker" if is_taker else "maker")
            self.fills.setdefault((account, market), deque()).append(fill)
            self.hold(market, signed, signed * price)

    # -- traders' orders --------------------------------------------------------------------

    def on_order_placed(self, e: dict[str, Any]) -> None:
        """A trader's order clearing accepted: on the tick and the lot; the book's trades must honour it."""
        account, market, order_id = self.account(e), self.market(e), _text(e, "order_id")
        side, price, size = _text(e, "side"), _price(e), _size(e)
        spec = self.markets[market].spec
        if side not in ("buy", "sell") or size <= 0 or size % spec.lot_size or price % spec.tick_size:
            _bad(f"an order to {side} {fmt_size(size)} {market} at {fmt_price(price)}: not a side, or off the lot "
                 f"{fmt_size(spec.lot_size)} or the tick {fmt_price(spec.tick_size)}")
        if order_id in self.orders:
            _bad(f"order {order_id} is placed twice")
        if self.buckets.get(account, market) != market:
            _bad(f"the isolated bucket {account} places an order in {market}: it holds {self.buckets[account]} only")
        self.orders[order_id] = _Order(account, market, 1 if side == "buy" else -1, price, size)

    def order_trades(self, order_id: str, account: str, market: str, signed: int, price: int, maker: bool) -> None:
        order = self.orders.get(order_id)
        if order is None or (order.account, order.market, order.side) != (account, market, 1 if signed > 0 else -1):
            _bad(f"{account} trades {fmt_size(signed)} {market} with order {order_id}, which is not an open order "
                 f"of theirs on that side of {market}")
        if (price != order.price) if maker else (price > order.price if signed > 0 else price < order.price):
            _bad(f"order {order_id} ({'resting' if maker else 'taking'} at {fmt_price(order.price)}) trades at "
                 f"{fmt_price(price)}")
        if abs(signed) > order.remaining:
            _bad(f"order {order_id} trades {fmt_size(abs(signed))}, more than the {fmt_size(order.remaining)} left of it")
        order.remaining -= abs(signed)
        if not order.remaining:
            del self.orders[order_id]

    def on_order_cancelled(self, e: dict[str, Any]) -> None:
        order_id, unfilled = _text(e, "order_id"), _size(e, "unfilled")
        order = self.orders.pop(order_id, None)
        if order is None or (order.account, order.market) != (_text(e, "account"), _text(e, "market")):
            _bad(f"the book closes order {order_id}, which is not open")
        if unfilled != order.remaining:
            _bad(f"the book closes order {order_id} with {fmt_size(unfilled)} unfilled, but "
                 f"{fmt_size(order.remaining)} of it was left")

    def on_order_expired(self, e: dict[str, Any]) -> None:
        self.on_order_cancelled(e)

    def _applied(self, e: dict[str, Any], account: str, market: str, kind: str) -> _InFlight:
        """The fill clearing applies now: the oldest in flight for this account and market."""
        size, price, order_id = _size(e), _price(e), _text(e, "order_id")
        queue = self.fills.get((account, market))
        if not queue:
            _bad(f"clearing applies a fill of {fmt_size(size)} {market} at {fmt_price(price)} to {account}, "
                 "but no trade in the log is waiting for it (a duplicated or invented fill?)")
        fill = queue[0]
        if (fill.order_id, fill.size, fill.price, fill.kind) != (order_id, size, price, kind):
            _bad(f"clearing applies {order_id}'s fill of {fmt_size(size)} {market} at {fmt_price(price)} "
                 f"to {account}, but the next trade waiting for it (line {fill.line}) is {fill.order_id}'s "
                 f"{fmt_size(fill.size)} at {fmt_price(fill.price)}")
        queue.popleft()
        self.hold(market, -size, -size * price)  # no longer in flight: it is applied below
        return fill

    def on_fill(self, e: dict[str, Any]) -> None:
        account, market = self.account(e), self.market(e)
        fill = self._applied(e, account, market, "trader")
        if _text(e, "liquidity") != fill.liquidity:
            _bad(f"{account}'s fill is logged as {e['liquidity']}, but the trade made it the {fill.liquidity}")
        spec = self.markets[market]
        fee = accounting.trading_fee(fill.size, fill.price, spec.maker_fee if fill.liquidity == "maker" else spec.taker_fee)
        stated_fee = _money(e, "fee")
        if stated_fee != fee:
            _bad(f"{account}'s {fill.liquidity} fee is stated as {fmt_money(stated_fee)}, "
                 f"but {fmt_size(abs(fill.size))} x {fmt_price(fill.price)} at the {fill.liquidity} rate is {fmt_money(fee)}")
        realized = self.trade(account, market, fill.size, fill.price)
        self.realize(account, _money(e, "realized_pnl"), realized, f"{account}'s fill")
        self.credit(account, -stated_fee)
        self.fees += stated_fee
        self.stated_balance(e, account)
        self.last_fill = (account, market, stated_fee, fill.liquidity)
        if not stated_fee:
            self.last_fill = None  # a fill without a fee has no fee event

    def on_fee(self, e: dict[str, Any], last_fill: tuple[str, str, int, str] | None, line: int) -> None:
        account, market, amount = _text(e, "account"), _text(e, "market"), _money(e, "amount")
        if last_fill is None or last_fill[:2] != (account, market):
            _bad(f"a fee of {fmt_money(amount)} on {account} in {market} that follows no fill of theirs")
        if last_fill[2] != amount:
            _bad(f"a fee of {fmt_money(amount)} on {account}, but the fill before it charged {fmt_money(last_fill[2])}")
        if _text(e, "liquidity") != last_fill[3]:
            _bad(f"the fee event calls {account} the {e['liquidity']}, but the fill before it was the {last_fill[3]}")
        # The fund's share of it, if the policy gives it one, is on its way (fee_to_fund).
        if not self.shares_off:
            self.shares.append((account, market, amount, line))
            if not self.shares_seen and len(self.shares) > _MAX_UNPROVEN_SHARES:
                self.shares_off = True
                self.shares.clear()

    def on_fund_fee_income(self, e: dict[str, Any]) -> None:
        account, market, amount = self.account(e), self.market(e), _money(e, "amount")
        if self.shares_off or not self.shares:
            _bad(f"the fund receives a share of {account}'s fee in {market}, but no fee is waiting for it")
        self.shares_seen = True
        waiting, where, fee, line = self.shares.popleft()
        if (waiting, where) != (account, market):
            _bad(f"the fund receives a share of {account}'s fee in {market}, but the next fee clearing charged "
                 f"(line {line}) is {waiting}'s in {where}")
        # ceil(fee x r) == amount for the policy's rate r, 1 ppm .. 100%
        lo = (amount - 1) * RATE_ONE // fee + 1 if amount > 0 else 1
        hi = amount * RATE_ONE // fee
        self.fee_to_fund = self.narrow("fee_to_fund", self.fee_to_fund, lo, hi,
                                       f"a fund share of {fmt_money(amount)} of a fee of {fmt_money(fee)}")
        self.fees -= amount
        self.book_fund(e, amount, market)
        self.stated_fund(e)

    def on_liquidation_fill(self, e: dict[str, Any]) -> None:
        account, market = self.account(e), self.market(e)
        if account not in self.frozen:
            _bad(f"a liquidation fill for {account}, who is not under liquidation")
        fill = self._applied(e, account, market, "liquidation")
        realized = self.trade(account, market, fill.size, fill.price)
        self.realize(account, _money(e, "realized_pnl"), realized, f"{account}'s liquidation fill")
        self.stated_balance(e, account)
        liq_id = self.frozen[account]
        self.liquidated[liq_id] = self.liquidated.get(liq_id, 0) + accounting.notional(fill.size, fill.price)

    def on_account_frozen(self, e: dict[str, Any]) -> None:
        account, liq_id = self.account(e), _whole(e, "liq_id")
        if account in self.frozen:
            _bad(f"no account is liquidated twice at once: {account} is frozen by liquidation {liq_id} "
                 f"while liquidation {self.frozen[account]} is running")
        self.frozen[account] = liq_id

    def _running(self, e: dict[str, Any]) -> tuple[str, int]:
        account, liq_id = self.account(e), _whole(e, "liq_id")
        if self.frozen.get(account) != liq_id:
            _bad(f"{account} is not under liquidation {liq_id}")
        return account, liq_id

    def on_account_unfrozen(self, e: dict[str, Any]) -> None:
        account, _ = self._running(e)
        del self.frozen[account]

    def on_liquidation_started(self, e: dict[str, Any]) -> None:
        """The engine's figures recomputed on the snapshot it judged: equity, margin, bankruptcy prices."""
        account, liq_id = self._running(e)
        self.liquidations += 1
        balance, triples, marks = self.judged(e, account, "the liquidation", self.sizes(e))
        self.limits_on_tick(e)
        if "slice" in e and _whole(e, "slice") != 1:
            _bad(f"liquidation {liq_id} starts with slice {e['slice']}: a liquidation's first slice is 1")
        stated = _table(e, "bankruptcy_prices")
        prices = {m: _units(e, "bankruptcy_prices", PRICE_DECIMALS, v) for m, v in stated.items()}
        views = tuple(PositionView(m, size, entry) for m, size, entry in triples)
        specs = self.specs()
        found = {rule for rule in self.bankruptcy_rules
                 if bankruptcy_prices(balance, views, marks, specs, *rule) == prices}
        if not found:
            rule = sorted(self.bankruptcy_rules)[0]
            want = bankruptcy_prices(balance, views, marks, specs, *rule)
            _bad(f"liquidation {liq_id} states bankruptcy prices "
                 f"{ {m: fmt_price(x) for m, x in prices.items()} }, but {account}'s equity split "
                 f"({rule[0]}{', after closing fees' if rule[1] else ''}) gives "
                 f"{ {m: fmt_price(x) for m, x in want.items()} }")
        self.bankruptcy_rules = found
        if e.get("backstop") is True:  # every position goes to the fund or the vault at once, as stated here
            self.backstops[liq_id] = (self.sizes(e), prices)

    def limits_on_tick(self, e: dict[str, Any]) -> None:
        """The engine's order limits (``limits``) are prices on each market's tick."""
        for m, v in _table(e, "limits").items() if "limits" in e else ():
            price = _units(e, "limits", PRICE_DECIMALS, v)
            if m not in self.markets or price <= 0 or price % self.markets[m].spec.tick_size:
                _bad(f"the engine's limit for {m} is {fmt_price(price)}, not a price on {m}'s tick")

    def sizes(self, e: dict[str, Any]) -> dict[str, int]:
        return {m: _units(e, "positions", SIZE_DECIMALS, v) for m, v in _table(e, "positions").items()}

    def on_liquidation_step_down(self, e: dict[str, Any]) -> None:
        """A tier step-down moves money only through its liquidation fills; its figures are the engine's view."""
        account, _ = self._running(e)
        self.judged(e, account, "the step-down", self.sizes(e))
        self.limits_on_tick(e)

    def on_liquidation_cancelled(self, e: dict[str, Any]) -> None:
        account, _ = self._running(e)
        self.judged(e, account, "the cancelled liquidation")

    def on_liquidation_restored(self, e: dict[str, Any]) -> None:
        account, _ = self._running(e)
        self.judged(e, account, "the liquidation handed back", self.sizes(e))

    def on_liquidation_paused(self, e: dict[str, Any]) -> None:
        self.judged(e, self.account(e), "the paused liquidation")

    def on_margin_call(self, e: dict[str, Any]) -> None:
        account = self.account(e)
        _, triples, _ = self.judged(e, account, "the margin call")
        if not triples:
            _bad(f"a margin call on {account}, who holds no position")
        if _money(e, "equity") > _money(e, "maintenance_margin"):
            _bad(f"a margin call on {account}, whose equity is above its maintenance margin")

    def on_bankruptcy(self, e: dict[str, Any]) -> None:
        account, _ = self._running(e)
        market = self.market(e)
        if market not in self.positions[account] and (self.frozen[account], market) not in self.takeovers:
            _bad(f"a bankruptcy of {account} in {market}, where it holds nothing")

    def on_fund_takeover(self, e: dict[str, Any]) -> None:
        account, liq_id = self._running(e)
        market, size, price = self.market(e), _size(e), _price(e)
        held = self.positions[account].get(market)
        if size == 0 or held is None or (held.size > 0) != (size > 0) or abs(size) > abs(held.size):
            _bad(f"the fund takes over {fmt_size(size)} {market} from {account}, who holds "
                 f"{fmt_size(held.size) if held else 'none'}")
        if (liq_id, market) in self.takeovers:
            _bad(f"liquidation {liq_id} hands its {market} position to the fund twice")
        realized = self.trade(account, market, -size, price)
        self.realize(account, _money(e, "realized_pnl"), realized, f"{account}'s hand-over to the fund")
        self.takeovers[(liq_id, market)] = (size, price)
        self.liquidated[liq_id] = self.liquidated.get(liq_id, 0) + accounting.notional(size, price)
        self.hold(market, size, size * price)  # in flight to the fund
        self.stated_balance(e, account)

    def on_vault_takeover(self, e: dict[str, Any]) -> None:
        """The backstop vault (policy.backstop_vault) takes a backstopped position over, as an account.

        The size and price are the backstop's (its ``liquidation_started``:
        the whole position at its bankruptcy price); the liquidated account
        realizes what the fund's hand-over would, and the vault trades the
        other side, as clearing applies it (:func:`accounting.apply_trade`).
        """
        account, liq_id = self._running(e)
        market, size, price = self.market(e), _size(e), _price(e)
        vault = self.account(e, "vault")
        if self.vault is None:
            self.vault = vault
        if vault != self.vault or vault == account or vault in self.frozen:
            _bad(f"the backstop vault {vault} takes over {account}'s {market} position, but "
                 + (f"the vault is {self.vault}" if vault != self.vault else
                    "it is the account liquidated" if vault == account else "it is under liquidation itself"))
        backstop = self.backstops.get(liq_id)
        if backstop is None or (backstop[0].get(market), backstop[1].get(market)) != (size, price):
            _bad(f"the backstop vault takes over {fmt_size(size)} {market} at {fmt_price(price)} from {account}, but "
                 + (f"liquidation {liq_id} is no backstop" if backstop is None else
                    f"the backstop liquidates {fmt_size(backstop[0].get(market, 0))} at "
                    f"{fmt_price(backstop[1].get(market, 0))}"))
        held = self.positions[account].get(market)
        if size == 0 or held is None or held.size != size:
            _bad(f"the backstop vault takes over {fmt_size(size)} {market} from {account}, who holds "
                 f"{fmt_size(held.size) if held else 'none'}")
        realized = self.trade(account, market, -size, price)
        self.realize(account, _money(e, "realized_pnl"), realized, f"{account}'s hand-over to the vault")
        self.liquidated[liq_id] = self.liquidated.get(liq_id, 0) + accounting.notional(size, price)
        self.stated_balance(e, account)
        self.credit(vault, self.trade(vault, market, size, price))
        stated = _money(e, "vault_balance")
        if stated != self.balances[vault]:
            _bad(f"the vault {vault}'s balance is stated as {fmt_money(stated)}, "
                 f"but the log adds up to {fmt_money(self.balances[vault])}")

    def on_liquidation_settled(self, e: dict[str, Any]) -> None:
        account, liq_id = self._running(e)
        if self.positions[account]:
            _bad(f"{account}'s liquidation {liq_id} is settled with positions open in {', '.join(self.positions[account])}")
        residual = self.balances[account]
        if residual < 0:
            _bad(f"no negative balance once a liquidation is settled: {account} ends liquidation {liq_id} "
                 f"at {fmt_money(residual)}")
        surplus = _money(e, "surplus")
        with_fee = "clearance_fee" in e or "returned" in e
        self.fee_policy(with_fee, f"liquidation {liq_id}'s settlement")
        if with_fee:
            fee, returned = _money(e, "clearance_fee"), _money(e, "returned")
            if surplus != fee or returned != residual - fee:
                _bad(f"{account}'s liquidation sends {fmt_money(surplus)} to the fund and returns {fmt_money(returned)}"
                     f" with a clearance fee of {fmt_money(fee)}, out of a balance of {fmt_money(residual)}")
            self.clearance(liq_id, residual, fee, f"{account}'s clearance fee of {fmt_money(fee)}")
            kind = "fund_liquidation_fee"
        else:
            kind = "fund_surplus"
            if surplus != accounting.liquidation_surplus(residual):
                _bad(f"{account}'s liquidation sends {fmt_money(surplus)} to the fund, "
                     f"but what is left of the balance is {fmt_money(residual)}")
        self.credit(account, -surplus)
        if surplus:
            self.surpluses.setdefault(liq_id, deque()).append((surplus, kind))
            self.surplus_total += surplus
        del self.frozen[account]
        self.liquidated.pop(liq_id, None)
        self.backstops.pop(liq_id, None)
        self.stated_balance(e, account)

    def fee_policy(self, with_fee: bool, what: str) -> None:
        """Whether the policy charges a clearance fee: every settlement must agree with the first."""
        if self.liquidation_fee is None:
            self.liquidation_fee = _ANY_RATE if with_fee else (0, 0)
        elif (self.liquidation_fee != (0, 0)) != with_fee:
            _bad(f"{what} {'has' if with_fee else 'has no'} clearance fee, unlike the settlements before it")

    def clearance(self, liq_id: int, balance: int, fee: int, what: str) -> None:
        """A clearance fee: ceil(liquidated notional x rate), at most what is left; pin the rate down."""
        assert self.liquidation_fee is not None
        cap, notional = max(balance, 0), self.liquidated.get(liq_id, 0)
        if fee > cap or fee < 0 or (notional == 0 and fee):
            _bad(f"{what} on a liquidated notional of {fmt_money(notional)} with {fmt_money(balance)} left")
        if notional == 0:
            return
        lo = (fee - 1) * RATE_ONE // notional + 1 if fee > 0 else 1
        hi = fee * RATE_ONE // notional if fee < cap else RATE_ONE
        self.liquidation_fee = self.narrow("liquidation_fee", self.liquidation_fee, lo, hi,
                                           f"{what} on a liquidated notional of {fmt_money(notional)}")

    def on_clearance_fee(self, e: dict[str, Any]) -> None:
        """A slice of a partial liquidation pays its clearance fee (and the next slice counts from 0)."""
        account, liq_id = self._running(e)
        amount = _money(e, "amount")
        self.fee_policy(True, f"{account}'s slice clearance fee")
        if amount <= 0:
            _bad(f"a clearance fee of {fmt_money(amount)}")
        self.clearance(liq_id, self.balances[account], amount, f"{account}'s slice clearance fee of {fmt_money(amount)}")
        self.liquidated[liq_id] = 0
        self.credit(account, -amount)
        self.surpluses.setdefault(liq_id, deque()).append((amount, "fund_liquidation_fee"))
        self.surplus_total += amount
        self.stated_balance(e, account)

    def on_fund_surplus(self, e: dict[str, Any]) -> None:
        self._received(e, "fund_surplus")

    def on_fund_liquidation_fee(self, e: dict[str, Any]) -> None:
        self._received(e, "fund_liquidation_fee")

    def _received(self, e: dict[str, Any], kind: str) -> None:
        liq_id, amount = _whole(e, "liq_id"), _money(e, "amount")
        sent = self.surpluses.get(liq_id)
        if not sent:
            _bad(f"the fund receives {'a surplus' if kind == 'fund_surplus' else 'a clearance fee'} "
                 f"from liquidation {liq_id}, which sent none")
        first, what = sent.popleft()
        if not sent:
            del self.surpluses[liq_id]
        if what != kind:
            _bad(f"the fund books liquidation {liq_id}'s {what.removeprefix('fund_').replace('_', ' ')} as {kind}")
        self.surplus_total -= first
        self.book_fund(e, amount)
        if amount != first:
            self.note = f"liquidation {liq_id} sent {fmt_money(first)}, the fund received {fmt_money(amount)}"
        self.stated_fund(e)

    def lot_move(self, lot: _Lot, size: int, basis: int) -> None:
        lot.size += size
        lot.basis += basis
        totals = self.lot_totals[lot.market]
        totals[0] += size
        totals[1] += basis

    def fund_lot(self, e: dict[str, Any], what: str, price_keys: tuple[str, ...] = ("bankruptcy_price", "price"),
                 zero_ok: bool = False) -> tuple[int, _Lot]:
        """The lot an event of the fund's names, with its market, and (if stated) its liquidation's fields."""
        lot_id = _whole(e, "lot_id")
        lot = self.lot(e, lot_id)
        if lot.market != self.market(e):
            _bad(f"the fund's {what} for lot {lot_id} is in {self.market(e)}, but the lot is {lot.market}")
        for key, value in (("liq_id", lot.liq_id), ("account", lot.account)):
            if key in e and e[key] != value:
                _bad(f"the fund's {what} for lot {lot_id} names {key} {e[key]!r}, but the lot is {value!r}'s")
        for key in price_keys:
            if key in e and _price(e, key) != lot.bankruptcy_price:
                _bad(f"the fund's {what} for lot {lot_id} states its bankruptcy price as {fmt_price(_price(e, key))}, "
                     f"but the lot was opened at {fmt_price(lot.bankruptcy_price)}")
        size = _size(e)
        if (size == 0 and not zero_ok) or (size and (size > 0) != (lot.side > 0)) or abs(size) > abs(lot.size):
            _bad(f"the fund's {what} for lot {lot_id} is of {fmt_size(size)}, but the lot holds {fmt_size(lot.size)}")
        return lot_id, lot

    def on_fund_order(self, e: dict[str, Any]) -> None:
        """An order of the fund's for a lot it holds: its size, the most it may lose, a limit on the tick."""
        lot_id, lot = self.fund_lot(e, "order")
        limit, max_loss = _price(e, "limit"), _money(e, "max_loss")
        tick = self.markets[lot.market].spec.tick_size
        if limit % tick:
            _bad(f"the fund's order for lot {lot_id} has a limit of {fmt_price(limit)}, off the tick {fmt_price(tick)}")
        lot.limit, lot.held_at = limit, None
        if not any(accounting.lot_reserve(lot.basis, lot.size, mark, lot.bankruptcy_price, limit) == max_loss
                   for mark in self.markets[lot.market].recent):
            _bad(f"the fund's order for lot {lot_id} states a maximum loss of {fmt_money(max_loss)}, but "
                 f"max(0, its loss at the mark {fmt_price(self.markets[lot.market].mark)}, at its bankruptcy price, at "
                 f"its limit) is {fmt_money(accounting.lot_reserve(lot.basis, lot.size, self.markets[lot.market].mark, lot.bankruptcy_price, limit))}")

    def on_fund_inventory_held(self, e: dict[str, Any]) -> None:
        """What did not fill is held: the whole lot, reserved at max(0, loss at the mark, at the bankruptcy price)."""
        lot_id, lot = self.fund_lot(e, "held inventory")
        if _size(e) != lot.size:
            _bad(f"the fund holds {fmt_size(_size(e))} of lot {lot_id}, which is {fmt_size(lot.size)}")
        if lot.held_at is not None and lot.held_at == self.marked.get(lot.market, 0):
            _bad(f"the fund holds lot {lot_id}, which it holds already (no order, request or mark since)")
        lot.held_at = self.marked.get(lot.market, 0)
        mark = self.recent_mark(e, lot.market)
        reserved = accounting.lot_reserve(lot.basis, lot.size, mark, lot.bankruptcy_price)
        if _money(e, "reserved") != reserved:
            _bad(f"lot {lot_id} is held with {fmt_money(_money(e, 'reserved'))} reserved, but what it may still lose "
                 f"at {fmt_price(mark)} or its bankruptcy price is {fmt_money(reserved)}")

    def on_fund_adl_requested(self, e: dict[str, Any]) -> None:
        lot_id, lot = self.fund_lot(e, "ADL request", ("bankruptcy_price",))
        if lot_id in self.socializing:
            _bad(f"the fund asks ADL to close lot {lot_id}, whose socialized loss is still being charged")
        price = self.adl_price(e, lot_id, lot)
        lot.adl_price, lot.held_at = price, None
        self.adl_requests.append(_AdlRequest(lot_id, lot.market, abs(_size(e)), price=price))

    def adl_price(self, e: dict[str, Any], lot_id: int, lot: _Lot) -> int:
        """The price of an ADL request (policy.adl_price): the lot's bankruptcy price, or its previous mark.

        At the previous mark (Hyperliquid) the price is
        :func:`accounting.adl_price_at_previous_mark` of one of the market's
        recent marks (the fund's copy of the mark before its latest) and a
        limit the fund's budget pays, which the log does not state: a limit
        on the tick (the price itself), or one past the bankruptcy price
        (the bankruptcy price); while fills of an earlier request may be in
        flight, the earlier request's price.
        """
        price, bk = _price(e), lot.bankruptcy_price
        tick = self.markets[lot.market].spec.tick_size
        by_budget = [bk] + ([price] if price % tick == 0 else [])
        rules = set()
        if price == bk:
            rules.add("bankruptcy")
        if price == lot.adl_price or any(
                accounting.adl_price_at_previous_mark(lot.side, mark, limit, bk) == price
                for mark in self.markets[lot.market].recent for limit in by_budget):
            rules.add("previous_mark")
        if not rules & self.adl_prices:
            _bad(f"the fund asks ADL to close lot {lot_id} at {fmt_price(price)}, which is "
                 + ("neither its bankruptcy price " if "bankruptcy" in self.adl_prices else "not ")
                 + f"({fmt_price(bk)}) {'nor' if 'bankruptcy' in self.adl_prices else 'or'} a recent mark as far as "
                 "the fund's budget pays (a limit on the tick, never past the bankruptcy price)"
                 + (", the rule of the requests before it" if len(self.adl_prices) == 1 else ""))
        self.adl_prices &= rules
        return price

    # -- the socialized loss (policy.socialized_loss), the revenue pool (policy.revenue_pool) --------------

    def on_fund_socialize_requested(self, e: dict[str, Any]) -> None:
        """The fund keeps a lot and asks what it leaves it short of its floor: one floor for the whole log.

        The floor is not in the log: ``amount`` + ``available`` + what the
        fund's charges in flight ask for (:func:`accounting.socialize_shortfall`)
        is inferred from the first request and must be the same at every one.
        """
        lot_id = _whole(e, "lot_id")
        lot = self.lot(e, lot_id)
        if lot.market != self.market(e):
            _bad(f"the fund's socialized loss for lot {lot_id} is in {self.market(e)}, but the lot is {lot.market}")
        amount, available = _money(e, "amount"), _money(e, "available")
        if amount <= 0 or lot_id in self.socializing:
            _bad(f"the fund asks for a socialized loss of {fmt_money(amount)} for lot {lot_id}, "
                 + ("which is no loss" if amount <= 0 else "which it has asked ADL or clearing for already"))
        name = self.ledger(e, lot.market) if self.ledgers else None
        charging = sum(r.amount for r in self.socializing.values() if r.fund == name)
        floor = amount + available + charging
        if self.fund_floor is None:
            self.fund_floor = floor
        if accounting.socialize_shortfall(self.fund_floor, available, charging) != amount:
            _bad(f"the fund asks for a socialized loss of {fmt_money(amount)} for lot {lot_id} with "
                 f"{fmt_money(available)} available and {fmt_money(charging)} being charged, but its floor "
                 f"{fmt_money(self.fund_floor)} leaves it short of "
                 f"{fmt_money(accounting.socialize_shortfall(self.fund_floor, available, charging))}")
        self.socializing[lot_id] = _Socialize(lot.market, amount, name)
        lot.held_at = None

    def socialize_shares(self, lot_id: int, r: _Socialize) -> deque[tuple[str, int]]:
        """Clearing's charges for a socialized loss, recomputed on its books: every open position of the
        market (accounts under liquidation left out) pays :func:`accounting.socialized_share`, in clearing's order."""
        payers = [(a, abs(self.positions[a][r.market].size))
                  for a in sorted(self.holders[r.market], key=self.order_of.__getitem__) if a not in self.frozen]
        total = sum(size for _, size in payers)
        return deque((a, accounting.socialized_share(r.amount, size, total)) for a, size in payers)

    def can_pay(self, account: str, share: int) -> bool:
        """Whether ``account`` can pay a share: from its balance, and from its equity at some recent marks
        (clearing's copy of which may lag the log)."""
        if share > self.balances[account]:
            return False
        triples = tuple((m, p.size, p.entry_value) for m, p in self.positions[account].items())
        return any(accounting.equity(self.balances[account], triples, dict(zip([m for m, _, _ in triples], marks)))
                   >= share for marks in itertools.product(*(self.markets[m].recent for m, _, _ in triples)))

    def on_socialized_loss(self, e: dict[str, Any]) -> None:
        """Clearing charges one position its share of a socialized loss; all or nothing."""
        account, market, lot_id = self.account(e), self.market(e), _whole(e, "lot_id")
        r = self.socializing.get(lot_id)
        if r is None or r.market != market:
            _bad(f"clearing charges {account} a socialized loss of lot {lot_id} in {market}, which the fund "
                 "has not asked for")
        if r.due is None:  # the first charge: clearing's books now are those it charged on
            r.due = self.socialize_shares(lot_id, r)
            for payer, share in r.due:
                if not self.can_pay(payer, share):
                    _bad(f"clearing charges the socialized loss of lot {lot_id}, but {payer} cannot pay its share "
                         f"of {fmt_money(share)}: all or nothing, nobody is charged")
        if not r.due:
            _bad(f"clearing charges {account} a socialized loss of lot {lot_id}, but every position has paid")
        payer, share = r.due.popleft()
        amount = _money(e, "amount")
        if (payer, -share) != (account, amount):
            _bad(f"clearing charges {account} {fmt_money(-amount)} of the socialized loss of lot {lot_id}, but "
                 f"the next position to pay is {payer}'s, {fmt_money(share)} of {fmt_money(r.amount)} "
                 "pro rata of its size")
        self.credit(account, amount)
        self.socialized_held -= amount
        r.collected -= amount
        self.stated_balance(e, account)

    def on_fund_socialized_loss(self, e: dict[str, Any]) -> None:
        """What clearing charged reaches the fund: every share, or nothing if some position could not pay."""
        lot_id = _whole(e, "lot_id")
        r = self.socializing.pop(lot_id, None)
        market, amount = self.market(e), _money(e, "amount")
        if r is None or r.market != market:
            _bad(f"the fund receives a socialized loss for lot {lot_id} in {market}, which it did not ask for")
        # Nothing charged: some position could not pay its share. Not recomputed: clearing refused on its
        # books somewhere between the request and this line (an account frozen, a fill applied meanwhile),
        # and no line of its pins that moment down.
        if r.due:
            _bad(f"the fund receives the socialized loss of lot {lot_id}, but {r.due[0][0]} was never charged")
        if amount != r.collected:
            _bad(f"the fund receives {fmt_money(amount)} of the socialized loss of lot {lot_id}, but clearing "
                 f"charged {fmt_money(r.collected)}")
        self.socialized_held -= amount
        self.book_fund(e, amount, market)
        self.stated_fund(e)

    def on_fund_revenue(self, e: dict[str, Any]) -> None:
        """A transfer of the revenue pool into the fund: money from outside, by the pool's rule.

        The pool and the transfer are not in the log: the pool is what has
        been paid in plus ``pool_left``, the same at every transfer; each
        transfer is :func:`accounting.revenue_transfer` (one transfer, at most
        what is left): every one but a last, smaller one is the same.
        """
        amount, left = _money(e, "amount"), _money(e, "pool_left")
        pool = self.revenue_received + amount + left
        if self.revenue_pool is None:
            self.revenue_pool = pool
        if amount <= 0 or left < 0 or pool != self.revenue_pool:
            _bad(f"the revenue pool pays {fmt_money(amount)} with {fmt_money(left)} left, but "
                 + (f"it paid {fmt_money(self.revenue_received)} of {fmt_money(self.revenue_pool)}"
                    if amount > 0 and left >= 0 else "a transfer is positive, and so is what is left"))
        if left and self.revenue_transfer is None:
            self.revenue_transfer = amount  # not the last: a whole transfer
        transfer = self.revenue_transfer if self.revenue_transfer is not None else amount
        if accounting.revenue_transfer(transfer, self.revenue_pool, self.revenue_received) != amount:
            _bad(f"the revenue pool pays {fmt_money(amount)}, but a transfer is {fmt_money(transfer)}, at most the "
                 f"{fmt_money(self.revenue_pool - self.revenue_received)} left")
        self.revenue_received += amount
        self.external += amount
        self.book_fund(e, amount)
        self.stated_fund(e)

    # -- ADL ----------------------------------------------------------------------------------

    def adl_request(self, e: dict[str, Any]) -> _AdlRequest:
        """The request ADL works on now: it takes the fund's requests one at a time, in order."""
        cur = self.adl_current
        if cur is None or cur.over or cur.remaining == 0:
            if not self.adl_requests:
                _bad(f"ADL works on lot {e.get('lot_id')} in {e.get('market')}, but the fund asked for nothing")
            cur = self.adl_current = self.adl_requests.popleft()
        if (_whole(e, "lot_id"), self.market(e)) != (cur.lot_id, cur.market):
            _bad(f"ADL works on lot {e['lot_id']} in {e['market']}, but the fund's next request is lot "
                 f"{cur.lot_id} in {cur.market}")
        return cur

    def on_adl_ranking(self, e: dict[str, Any]) -> None:
        """A round of ADL: what is left of the request, and candidates who hold the other side."""
        cur = self.adl_request(e)
        if _size(e, "remaining") != cur.remaining:
            _bad(f"ADL ranks for {fmt_size(_size(e, 'remaining'))} of lot {cur.lot_id}, but "
                 f"{fmt_size(cur.remaining)} of it is left")
        ranking = _field(e, "ranking")
        if not isinstance(ranking, list) or not all(isinstance(a, str) for a in ranking) or len(set(ranking)) != len(ranking):
            _bad("adl_ranking event: 'ranking' must be a list of distinct accounts")
        side = self.lots[cur.lot_id].side if cur.lot_id in self.lots else 0
        for account in ranking:
            if account not in self.states or not any(
                    any(m == cur.market and size * side < 0 for m, size, _ in triples)
                    for _, triples in self.states[account]):
                _bad(f"ADL ranks {account}, who holds no position against lot {cur.lot_id} in {cur.market}")

    def on_adl_incomplete(self, e: dict[str, Any]) -> None:
        cur = self.adl_request(e)
        if _size(e, "remaining") != cur.remaining or _price(e) != cur_price(self, cur):
            _bad(f"ADL gives up on lot {cur.lot_id} with {e['remaining']} left at {e['price']}, but "
                 f"{fmt_size(cur.remaining)} is left at the price the fund asked for ({fmt_price(cur.price)})")
        cur.over = True
        self.adl_given_up[cur.lot_id] = cur.remaining

    def on_fund_inventory_kept(self, e: dict[str, Any]) -> None:
        """ADL gave up on a lot: the fund keeps what ADL said was left of it."""
        # (0 kept: its held part was netted away while ADL fills of it are still in flight.)
        lot_id, lot = self.fund_lot(e, "kept inventory", zero_ok=True)
        lot.held_at = None
        left = self.adl_given_up.pop(lot_id, None)
        if left != abs(_size(e)):
            _bad(f"the fund keeps {fmt_size(_size(e))} of lot {lot_id}, but "
                 + ("ADL did not give up on it" if left is None else f"ADL gave up with {fmt_size(left)} left"))

    def on_fund_inventory_marked(self, e: dict[str, Any]) -> None:
        """The fund values its inventory in a market at a new mark: size, unrealized PnL and equity recomputed."""
        market = self.market(e)
        mark = self.recent_mark(e, market)
        self.marked[market] = self.marked.get(market, 0) + 1
        size, basis = self.lot_totals[market]
        if _size(e) != size:
            _bad(f"the fund states its {market} inventory as {fmt_size(_size(e))}, but its lots hold {fmt_size(size)}")
        pnl = accounting.unrealized_pnl(size, basis, mark)
        if _money(e, "unrealized_pnl") != pnl:
            _bad(f"the fund states the unrealized PnL of its {market} inventory as "
                 f"{fmt_money(_money(e, 'unrealized_pnl'))}, but {fmt_size(size)} at {fmt_price(mark)} is {fmt_money(pnl)}")
        self.stated_fund(e)
        name = self.ledger(e) if self.ledgers else None
        others = [m for m, (sz, bs) in self.lot_totals.items() if (sz or bs) and m != market
                  and (name is None or self.fund_of[m] == name)]
        rest = _money(e, "equity") - _money(e, "balance") - pnl
        for marks in itertools.product(*(reversed(self.markets[m].recent) for m in others)):
            if rest == sum(accounting.unrealized_pnl(*self.lot_totals[m], x) for m, x in zip(others, marks)):
                break
        else:
            _bad(f"the fund states its equity as {fmt_money(_money(e, 'equity'))}, which is not its balance plus its "
                 "inventory's unrealized PnL at its marks")

    def on_fund_lot_opened(self, e: dict[str, Any]) -> None:
        liq_id, market, lot_id = _whole(e, "liq_id"), self.market(e), _whole(e, "lot_id")
        size, price = _size(e), _price(e, "bankruptcy_price")
        sent = self.takeovers.pop((liq_id, market), None)
        if sent is None:
            _bad(f"the fund opens lot {lot_id} for liquidation {liq_id} in {market}, which handed nothing over")
        if sent != (size, price):
            _bad(f"the fund opens lot {lot_id} with {fmt_size(size)} at {fmt_price(price)}, "
                 f"but clearing handed over {fmt_size(sent[0])} at {fmt_price(sent[1])}")
        if lot_id != self.lots_opened + 1:
            _bad(f"the fund opens lot {lot_id}, but its last lot was {self.lots_opened}")
        self.lots_opened = lot_id
        self.lots[lot_id] = _Lot(market, 0, 0, 1 if size > 0 else -1, price, liq_id, _text(e, "account"))
        self.lot_move(self.lots[lot_id], size, size * price)
        stated = _money(e, "loss_at_mark")  # at the fund's copy of the mark: one of the recent marks
        if not any(accounting.lot_loss_at(size * price, size, mark) == stated for mark in self.markets[market].recent):
            _bad(f"lot {lot_id} states a loss at the mark of {fmt_money(_money(e, 'loss_at_mark'))}, but "
                 f"{fmt_size(size)} at {fmt_price(price)} loses "
                 f"{fmt_money(accounting.lot_loss_at(size * price, size, self.markets[market].mark))} at the mark "
                 f"{fmt_price(self.markets[market].mark)}")
        # The hand-over is no longer in flight; the lot holds the same size at the same cost.

    def on_fund_netted(self, e: dict[str, Any]) -> None:
        market, qty, price = self.market(e), _size(e), _price(e)
        lot_ids = _field(e, "lots")
        if not (isinstance(lot_ids, list) and len(lot_ids) == 2 and all(isinstance(i, int) for i in lot_ids)):
            _bad("fund_netted event: 'lots' must be two lot ids")
        lots = [self.lot(e, i) for i in lot_ids]
        if {lot.side for lot in lots} != {1, -1} or any(lot.market != market for lot in lots) or qty <= 0:
            _bad(f"the fund nets lots {lot_ids}, which are not a long and a short in {market}")
        self.recent_mark(e, market, "price")  # the two are crossed at the fund's mark
        for lot in lots:
            trade = -qty * lot.side
            self.lot_move(lot, trade, trade * price)
            self.hold(market, trade, trade * price)
        for lot_id in lot_ids:  # a lot ADL gave up on is netted before the fund keeps the rest
            if lot_id in self.adl_given_up:
                self.adl_given_up[lot_id] -= qty

    def _close_lot(self, e: dict[str, Any], sign: int) -> None:
        lot_id, amount = _whole(e, "lot_id"), _money(e, "amount")
        lot = self.lot(e, lot_id)
        if lot.size:
            _bad(f"the fund closes lot {lot_id}, which still holds {fmt_size(lot.size)} {lot.market}")
        del self.lots[lot_id]
        self.adl_given_up.pop(lot_id, None)  # netted away before the fund could keep it
        self.hold(lot.market, 0, -lot.basis)
        totals = self.lot_totals[lot.market]
        totals[1] -= lot.basis  # the lot's own figures stay, for the amount it books
        if _text(e, "account") != lot.account or _text(e, "market") != lot.market:
            _bad(f"the fund closes lot {lot_id} as {e['account']}'s in {e['market']}, but it is "
                 f"{lot.account}'s in {lot.market}")
        kind = "fund_payout" if lot.basis > 0 else "fund_gain" if lot.basis < 0 else "fund_lot_closed"
        if e["kind"] != kind or amount < 0 or (sign == 0 and amount):
            _bad(f"the fund books lot {lot_id} as {e['kind']} of {fmt_money(amount)}, but its trades come to "
                 f"{fmt_money(-lot.basis)} (a {kind})")
        stated = sign * amount
        self.book_fund(e, stated, lot.market)
        if stated != -lot.basis:
            self.note = (f"the fund books {fmt_money(stated)} on lot {lot_id}, "
                         f"whose trades come to {fmt_money(-lot.basis)}")
        self.stated_fund(e)

    def on_fund_payout(self, e: dict[str, Any]) -> None:
        self._close_lot(e, -1)

    def on_fund_gain(self, e: dict[str, Any]) -> None:
        self._close_lot(e, 1)

    def on_fund_lot_closed(self, e: dict[str, Any]) -> None:
        self._close_lot(e, 0)

    def on_adl(self, e: dict[str, Any]) -> None:
        account, market, size, price = self.account(e), self.market(e), _size(e), _price(e)
        lot = self.lot(e, _whole(e, "lot_id"))
        held = self.positions[account].get(market)
        if account in self.frozen:
            _bad(f"ADL deleverages {account}, who is under liquidation")
        if size == 0 or held is None or (held.size > 0) == (size > 0) or abs(size) > abs(held.size):
            _bad(f"ADL trades {fmt_size(size)} {market} for {account}, who holds "
                 f"{fmt_size(held.size) if held else 'none'}")
        if lot.market != market or lot.side != (1 if size > 0 else -1):
            _bad(f"ADL trades {fmt_size(size)} {market} against a fund lot it cannot close")
        if (self.adl_current is None or self.adl_current.lot_id != _whole(e, "lot_id") or self.adl_current.over
                or abs(size) > self.adl_current.remaining):
            _bad(f"ADL trades {fmt_size(size)} {market} for lot {e['lot_id']}, which is not the request ADL works on "
                 "or has less left")
        if price != self.adl_current.price:
            _bad(f"ADL trades {fmt_size(size)} {market} for lot {e['lot_id']} at {fmt_price(price)}, but the fund "
                 f"asked for {fmt_price(self.adl_current.price)}")
        self.adl_current.remaining -= abs(size)
        realized = self.trade(account, market, size, price)
        self.realize(account, _money(e, "realized_pnl"), realized, f"{account}'s ADL")
        self.lot_move(lot, -size, -size * price)
        self.hold(market, -size, -size * price)
        self.stated_balance(e, account)


# Event kinds that move nothing on the books and state nothing to recompute are
# the PASSIVE ones; every other kind has a handler here.
_HANDLERS: Final = {
    name[3:]: getattr(_Books, name) for name in dir(_Books) if name.startswith("on_") and name != "on_fee"
}


# --- reading the file ---------------------------------------------------------------------


def _reject_constant(name: str) -> NoReturn:
    raise ValueError(f"{name} is not a number JSON allows")


def _first_difference(stated: Any, expected: Any, path: str) -> str | None:
    """Where two JSON values first differ (a dotted path), or None if they are equal."""
    if isinstance(stated, dict) and isinstance(expected, dict):
        for key in [*expected, *(k for k in stated if k not in expected)]:
            if key not in stated or key not in expected:
                return f"{path}.{key}"
            found = _first_difference(stated[key], expected[key], f"{path}.{key}")
            if found:
                return found
        return None
    if isinstance(stated, list) and isinstance(expected, list) and len(stated) == len(expected):
        for i, (a, b) in enumerate(zip(stated, expected)):
            found = _first_difference(a, b, f"{path}[{i}]")
            if found:
                return found
        return None
    return None if stated == expected and type(stated) is type(expected) else path


def _check_opening(event: dict[str, Any], scenario: Any) -> None:
    """With the scenario the run was made from, ``opening_state`` must be exactly what it opens with."""
    from sandbox._exchange.run import opening_state

    if event.get("digest") != scenario.digest:
        _bad(f"the log was not made from this scenario: its digest is {event.get('digest')!r}, "
             f"the scenario's {scenario.digest!r}")
    seed, mode = event.get("seed"), event.get("mode")
    expected = opening_state(scenario, seed if isinstance(seed, int) else scenario.seed, str(mode))
    stated = {k: v for k, v in event.items() if k not in ("seq", "time", "actor", "kind")}
    where = _first_difference(stated, expected, "opening_state")
    if where is not None:
        _bad(f"{where} is not what scenario {scenario.name!r} opens with")


def check_lines(lines: Iterable[bytes], made_from: Any = None) -> LogReport:
    """Check the raw lines of a log (each with its trailing newline, if it has one).

    With ``made_from`` (the :class:`~sandbox._scenario.parse.Scenario` the run was
    made from), its first line must also be exactly the books that scenario
    opens with (same digest, every balance, position and market parameter).
    """
    books = _Books()
    expected_seq = 0
    last_time: float = 0
    complete = torn = False
    scenario: str | None = None
    seed: int | None = None
    lineno = 0
    pending: bytes | None = None

    def report(bad: BadLine | None) -> LogReport:
        return LogReport(
            events=expected_seq, complete=complete, torn_tail=torn, bad=bad, scenario=scenario, seed=seed,
            liquidations=books.liquidations, fund_initial=books.fund_initial, fund_final=books.fund,
        )

    # Look one line ahead, so the last line is known to be the last.
    iterator = iter(lines)
    pending = next(iterator, None)
    while pending is not None:
        raw, pending = pending, next(iterator, None)
        lineno += 1
        last = pending is None
        seq: int | None = None
        try:
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                _bad(f"not UTF-8 (byte {exc.start})")
            try:
                event = json.loads(text, parse_constant=_reject_constant)
            except RecursionError:
                _bad("JSON nested too deeply")
            except ValueError as exc:
                if last and not raw.endswith(b"\n"):
                    torn = True  # the run was killed in the middle of writing its last line
                    break
                _bad(f"not valid JSON ({exc})" if text.strip() else "an empty line, not a JSON event")
            if not isinstance(event, dict):
                _bad("not a JSON object")
            raw_seq = event.get("seq")
            if isinstance(raw_seq, int) and not isinstance(raw_seq, bool):
                seq = raw_seq
            if seq != expected_seq:
                if seq is None:
                    _bad(f"no whole-number 'seq' (expected {expected_seq})")
                why = "a line is missing" if seq > expected_seq else "a line is repeated or out of order"
                _bad(f"seq {seq} where {expected_seq} was expected ({why})")
            time = event.get("time")
            if isinstance(time, bool) or not isinstance(time, (int, float)) or not math.isfinite(time):
                _bad("no numeric 'time'")
            if time < last_time:
                _bad(f"time goes back from {last_time} to {time}")
            if seq == 0 and time != 0:
                _bad(f"the books open at time 0, not {time}")
            last_time = time
            for key in ("actor", "kind"):
                if not isinstance(event.get(key), str):
                    _bad(f"no {key!r} string")
            kind = event["kind"]
            if complete:
                _bad(f"a {kind} event after {CLOSING}")
            if (kind == OPENING) != (seq == 0):
                _bad(f"the log must open with {OPENING}" if seq == 0 else f"a second {OPENING}")
            if kind == OPENING and made_from is not None:
                _check_opening(event, made_from)
            _apply(books, kind, event, lineno)
            if kind == OPENING:
                scenario = event.get("scenario") if isinstance(event.get("scenario"), str) else None
                seed = event.get("seed") if isinstance(event.get("seed"), int) else None
            elif kind == CLOSING:
                books.check_closed(event)
                complete = True
            books.check_invariants()
        except _Bad as exc:
            return report(BadLine(lineno, seq, str(exc)))
        expected_seq += 1
    return report(None)


def _apply(books: _Books, kind: str, event: dict[str, Any], lineno: int) -> None:
    last_fill, books.last_fill, books.note = books.last_fill, None, None
    if kind == "invariant_violated":
        _bad(f"the run reports an invariant violated: {event.get('invariant')}: {event.get('detail')}")
    if kind == "fee":
        books.on_fee(event, last_fill, lineno)
    elif kind == "trade":
        books.on_trade(event, lineno)
    else:
        handler = _HANDLERS.get(kind)
        if handler is not None:
            handler(books, event)
        elif kind not in PASSIVE:
            _bad(f"unknown event kind {kind!r}: check-log does not know what it means, so it cannot vouch "
                 "for the log")
    books.remember_states()


# A log of 10 million events is about 3 GB; one event is at most a few KB (an
# opening_state lists every account: 1,000,000 of them, ~80 bytes each, fit in 256 MiB).
MAX_LOG_BYTES: Final = 4 * 1024 * 1024 * 1024
MAX_LINE_BYTES: Final = 256 * 1024 * 1024


def check_log(path: str | os.PathLike[str], scenario: Any = None) -> LogReport:
    """Check the log at ``path``.

    Only a regular file is read (a FIFO or device is refused at once, as
    :class:`~sandbox._core.safeio.UnsafePath`), at most :data:`MAX_LOG_BYTES`,
    one line of at most :data:`MAX_LINE_BYTES` at a time: a longer line is
    a bad line, not a read of the whole file. Raises ``OSError`` if it
    cannot be read.
    """
    from sandbox._core.safeio import open_regular

    with open_regular(path, MAX_LOG_BYTES, "an events file") as f:
        return check_lines(_lines(f), scenario)


def _lines(f: Any) -> Iterable[bytes]:
    while True:
        line = f.readline(MAX_LINE_BYTES + 1)
        if not line:
            return
        if len(line) > MAX_LINE_BYTES and not line.endswith(b"\n"):
            # Too long: reported as a bad line without reading the rest. The empty
            # line after it keeps it from being taken for a torn last line.
            yield line
            yield b""
            return
        yield line


# --- the command ------------------------------------------------------------


def _arguments(check: argparse.ArgumentParser) -> None:
    check.add_argument("file", type=Path, help="the events.jsonl to check")
    check.add_argument("--scenario", default=None,
                       help="the scenario the run was made from (a bundled name or a .toml): its first line must "
                       "then be exactly the books that scenario opens with")
    check.add_argument("--allow-outside-paths", action="store_true", help=ALLOW_OUTSIDE_HELP)


def _check_log(args: argparse.Namespace, console: Console) -> int:
    path = args.file
    scenario = None
    if args.scenario is not None:
        scenario = resolve_scenario(args.scenario, allow_outside_paths=args.allow_outside_paths)
    try:
        report = check_log(path, scenario)
    except UnsafePath as e:
        raise BadInput(f"check-log: {e}") from None
    except FileNotFoundError:
        raise BadInput(f"check-log: {path}: no such file") from None
    except IsADirectoryError:
        raise BadInput(f"check-log: {path}: is a directory, not an events file") from None
    except OSError as e:
        raise BadInput(f"check-log: {path}: cannot be read ({e.strerror or e})") from None
    print(plain(f"{path}: {report.summary()}"))  # a bad line's message may quote the log's ids
    return EXIT_OK if report.ok else EXIT_VIOLATION


COMMAND = Command(
    "check-log", "verify an events.jsonl: seq, JSON, and the invariants recomputed from the events", _arguments,
    _check_log,
    description="Rebuild the books from an events.jsonl and check every line: contiguous seq, valid JSON, "
    "and the exchange's invariants recomputed from the events. Exit 0 with a summary, 1 with the first "
    "bad line, 2 if the file cannot be read.",
)
