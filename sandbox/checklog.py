"""``sandbox check-log``: verify an ``events.jsonl`` on its own, line by line.

The checker rebuilds the exchange's books from the log alone, in exact
integer units (:mod:`sandbox.money`), and stops at the first line that is
wrong. Per line it checks:

* the line is one JSON object, UTF-8, with ``seq`` one more than the line
  before (0 first), a virtual ``time`` that never goes back, an ``actor`` and
  a ``kind``; the first event is ``opening_state`` (the books at time 0);
* the event is consistent with the books so far: a clearing ``fill`` or
  ``liquidation_fill`` applies a trade the book logged, in the book's order; a
  fee is ``ceil(notional x rate)``; the fund's lot comes from a position
  clearing handed over; a surplus arrives as it was sent; the balances an
  event states (``balance``) are the ones the books add up to;
* and then the exchange's invariants, recomputed from the rebuilt books:
  money is conserved (balances + fund + fees + unrealized PnL of every
  position, the fund's and the fills and hand-overs still in flight included,
  == deposits - withdrawals + initial fund), the fund is never negative, long
  open interest == short open interest in every market, no account is
  liquidated twice at once, and no account is left with a negative balance
  once its liquidation is settled.

How the books move, and why that makes conservation a real check: positions
move by what was *traded* (trades, hand-overs to the fund, ADL, the fund's
netting), recomputed with :func:`actors._common.apply_trade`, so realized PnL
rounds exactly as clearing rounds it; balances move by the amounts the events
*state* (realized PnL, fees, deposits, withdrawals, surpluses, the fund's
payouts and gains). A stated amount that the trades do not account for
therefore shows up as money created or destroyed, on the line that states it.
Positions move in the order of the actor that owns them: an account's in the
order clearing applied its fills (clearing's ``fill`` events), the fund's as
the book traded for it (the fund's arithmetic does not round, so its order
does not matter). A trade whose fill clearing has not applied yet is a fill
*in flight*, counted at its trade price until the ``fill`` line.

A log without the closing ``run_finished`` event is the prefix of a run that
did not end (e.g. killed); every line it has is checked the same way, and a
last line cut short by the kill (no newline, not JSON) is ignored. A complete
log must also have applied every fill and settled every liquidation.
"""

from __future__ import annotations

import json
import math
import os
from collections import deque
from typing import Any, Final, Iterable, NoReturn

import attrs

from actors._common import FUND_ACCOUNT, Position, apply_trade
from sandbox.money import (
    MONEY_DECIMALS,
    PRICE_DECIMALS,
    RATE_DECIMALS,
    SIZE_DECIMALS,
    UnitError,
    apply_rate_up,
    fmt_money,
    fmt_price,
    fmt_size,
    parse_units,
)

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
    # Set when the log uses an optional policy whose money movements the
    # checker does not model: it then stops there and claims nothing.
    unsupported: str | None = None

    @property
    def ok(self) -> bool:
        return self.bad is None and self.unsupported is None

    def summary(self) -> str:
        """One line: what was checked, whether the run ended, and the fund."""
        if self.bad is not None:
            return str(self.bad)
        if self.unsupported is not None:
            return self.unsupported
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


# Events of the optional policies (funding, fee share, clearance fee, partial
# liquidation, fund inventory) that move money in ways the checker does not
# rebuild yet: it stops at the first one rather than claim a result.
UNMODELLED: Final = frozenset({
    "funding", "fund_funding_received", "fund_funding_paid", "funding_shortfall", "fund_fee_income",
    "clearance_fee",
})


class _Unsupported(Exception):
    pass


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


# --- the rebuilt books --------------------------------------------------------------


@attrs.define(slots=True)
class _Market:
    mark: int
    maker_fee: int
    taker_fee: int


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
class _Lot:
    market: str
    size: int
    basis: int
    side: int  # +1 long, -1 short, as taken over


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
        self.fills: dict[tuple[str, str], deque[_InFlight]] = {}  # (account, market) -> in flight, book order
        self.takeovers: dict[tuple[int, str], tuple[int, int]] = {}  # (liq id, market) -> (size, price)
        self.surpluses: dict[int, int] = {}  # liq id -> amount sent to the fund
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
        if position.size == 0:
            del positions[market]
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
        value = self.balance_total + self.fund + self.fees + self.surplus_total - self.basis
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
            _bad(f"the run ended but liquidation {liq_id}'s surplus never reached the fund")
        for account, liq_id in self.frozen.items():
            _bad(f"every liquidation completes: the run ended with {account} still under liquidation {liq_id}")

    # -- one method per event kind that moves the books ---------------------------------------

    def on_opening_state(self, e: dict[str, Any]) -> None:
        for symbol, spec in _table(e, "markets").items():
            if not isinstance(spec, dict):
                _bad(f"opening_state: market {symbol!r} must be an object")
            self.markets[symbol] = _Market(
                _units(e, "mark_price", PRICE_DECIMALS, spec.get("mark_price")),
                _units(e, "maker_fee", RATE_DECIMALS, spec.get("maker_fee")),
                _units(e, "taker_fee", RATE_DECIMALS, spec.get("taker_fee")),
            )
            self.net[symbol] = 0
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
            self.credit(account, balance)
            self.external += balance
            self.positions[account] = {}
            for market, p in spec["positions"].items():
                if market not in self.markets or not isinstance(p, dict):
                    _bad(f"opening_state: {account}'s position in unknown market {market!r}")
                size = _units(e, "size", SIZE_DECIMALS, p.get("size"))
                entry_value = _units(e, "entry_value", MONEY_DECIMALS, p.get("entry_value"))
                self.positions[account][market] = Position(size, entry_value)
                self.hold(market, size, entry_value)
                # Entry costs need not net (a real snapshot): what they do not net
                # to is the opening imbalance, a constant on both sides.
                self.external -= entry_value
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
        self.markets[market].mark = _price(e)

    def on_deposit(self, e: dict[str, Any]) -> None:
        account, amount = self.account(e), _money(e, "amount")
        if amount <= 0:
            _bad(f"a deposit of {fmt_money(amount)}")
        self.credit(account, amount)
        self.external += amount
        self.stated_balance(e, account)

    def on_withdraw(self, e: dict[str, Any]) -> None:
        account, amount = self.account(e), _money(e, "amount")
        if amount <= 0:
            _bad(f"a withdrawal of {fmt_money(amount)}")
        self.credit(account, -amount)
        self.external -= amount
        self.stated_balance(e, account)

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
        for account, signed in ((buyer, size), (seller, -size)):
            is_taker = account == taker
            kind = taker_kind if is_taker else "trader"  # IOC orders never rest: a maker is a trader's order
            if account == FUND_ACCOUNT:
                if not (is_taker and kind == "fund"):
                    _bad("the insurance fund trades only as the taker of its own IOC orders")
                lot_id = orders[account].partition(":")[2]
                lot = self.lot(e, int(lot_id) if lot_id.isdigit() else -1)
                if lot.market != market:
                    _bad(f"the fund's order {orders[account]} is for {lot.market}, not {market}")
                lot.size += signed
                lot.basis += signed * price
                self.hold(market, signed, signed * price)
                continue
            if account not in self.balances:
                _bad(f"unknown account {account!r}")
            if kind not in ("trader", "liquidation"):
                _bad(f"{account} trades with an order of kind {kind!r}")
            fill = _InFlight(line, orders[account], signed, price, kind, "taker" if is_taker else "maker")
            self.fills.setdefault((account, market), deque()).append(fill)
            self.hold(market, signed, signed * price)

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
        fee = apply_rate_up(abs(fill.size) * fill.price, spec.maker_fee if fill.liquidity == "maker" else spec.taker_fee)
        stated_fee = _money(e, "fee")
        if stated_fee != fee:
            _bad(f"{account}'s {fill.liquidity} fee is stated as {fmt_money(stated_fee)}, "
                 f"but {fmt_size(abs(fill.size))} x {fmt_price(fill.price)} at the {fill.liquidity} rate is {fmt_money(fee)}")
        realized = self.trade(account, market, fill.size, fill.price)
        self.realize(account, _money(e, "realized_pnl"), realized, f"{account}'s fill")
        self.credit(account, -stated_fee)
        self.fees += stated_fee
        self.stated_balance(e, account)
        self.last_fill = (account, market, stated_fee)

    def on_fee(self, e: dict[str, Any], last_fill: tuple[str, str, int] | None) -> None:
        account, market, amount = _text(e, "account"), _text(e, "market"), _money(e, "amount")
        if last_fill is None or last_fill[:2] != (account, market):
            _bad(f"a fee of {fmt_money(amount)} on {account} in {market} that follows no fill of theirs")
        if last_fill[2] != amount:
            _bad(f"a fee of {fmt_money(amount)} on {account}, but the fill before it charged {fmt_money(last_fill[2])}")

    def on_liquidation_fill(self, e: dict[str, Any]) -> None:
        account, market = self.account(e), self.market(e)
        if account not in self.frozen:
            _bad(f"a liquidation fill for {account}, who is not under liquidation")
        fill = self._applied(e, account, market, "liquidation")
        realized = self.trade(account, market, fill.size, fill.price)
        self.realize(account, _money(e, "realized_pnl"), realized, f"{account}'s liquidation fill")
        self.stated_balance(e, account)

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
        self._running(e)
        self.liquidations += 1

    def on_liquidation_step_down(self, e: dict[str, Any]) -> None:
        """A tier step-down moves money only through its liquidation fills, which are checked as such."""
        self._running(e)

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
        self.hold(market, size, size * price)  # in flight to the fund
        self.stated_balance(e, account)

    def on_liquidation_settled(self, e: dict[str, Any]) -> None:
        account, liq_id = self._running(e)
        if self.positions[account]:
            _bad(f"{account}'s liquidation {liq_id} is settled with positions open in {', '.join(self.positions[account])}")
        residual = self.balances[account]
        if residual < 0:
            _bad(f"no negative balance once a liquidation is settled: {account} ends liquidation {liq_id} "
                 f"at {fmt_money(residual)}")
        surplus = _money(e, "surplus")
        if surplus != residual:
            _bad(f"{account}'s liquidation sends {fmt_money(surplus)} to the fund, "
                 f"but what is left of the balance is {fmt_money(residual)}")
        self.credit(account, -surplus)
        if surplus:
            self.surpluses[liq_id] = surplus
            self.surplus_total += surplus
        del self.frozen[account]
        self.stated_balance(e, account)

    def on_fund_surplus(self, e: dict[str, Any]) -> None:
        liq_id, amount = _whole(e, "liq_id"), _money(e, "amount")
        sent = self.surpluses.pop(liq_id, None)
        if sent is None:
            _bad(f"the fund receives a surplus from liquidation {liq_id}, which sent none")
        self.surplus_total -= sent
        self.book_fund(e, amount)
        if amount != sent:
            self.note = f"liquidation {liq_id} sent {fmt_money(sent)}, the fund received {fmt_money(amount)}"
        self.stated_fund(e)

    def on_fund_order(self, e: dict[str, Any]) -> None:
        """An order of the fund's for a lot it holds: the lot must exist, in that market."""
        lot = self.lot(e, _whole(e, "lot_id"))
        if lot.market != self.market(e):
            _bad(f"the fund's order for lot {_whole(e, 'lot_id')} is in {self.market(e)}, but the lot is {lot.market}")

    def on_fund_lot_opened(self, e: dict[str, Any]) -> None:
        liq_id, market, lot_id = _whole(e, "liq_id"), self.market(e), _whole(e, "lot_id")
        size, price = _size(e), _price(e, "bankruptcy_price")
        sent = self.takeovers.pop((liq_id, market), None)
        if sent is None:
            _bad(f"the fund opens lot {lot_id} for liquidation {liq_id} in {market}, which handed nothing over")
        if sent != (size, price):
            _bad(f"the fund opens lot {lot_id} with {fmt_size(size)} at {fmt_price(price)}, "
                 f"but clearing handed over {fmt_size(sent[0])} at {fmt_price(sent[1])}")
        if lot_id in self.lots:
            _bad(f"the fund opens lot {lot_id} twice")
        self.lots[lot_id] = _Lot(market, size, size * price, 1 if size > 0 else -1)
        # The hand-over is no longer in flight; the lot holds the same size at the same cost.

    def on_fund_netted(self, e: dict[str, Any]) -> None:
        market, qty, price = self.market(e), _size(e), _price(e)
        lot_ids = _field(e, "lots")
        if not (isinstance(lot_ids, list) and len(lot_ids) == 2 and all(isinstance(i, int) for i in lot_ids)):
            _bad("fund_netted event: 'lots' must be two lot ids")
        lots = [self.lot(e, i) for i in lot_ids]
        if {lot.side for lot in lots} != {1, -1} or any(lot.market != market for lot in lots) or qty <= 0:
            _bad(f"the fund nets lots {lot_ids}, which are not a long and a short in {market}")
        for lot in lots:
            trade = -qty * lot.side
            lot.size += trade
            lot.basis += trade * price
            self.hold(market, trade, trade * price)

    def _close_lot(self, e: dict[str, Any], sign: int) -> None:
        lot_id, amount = _whole(e, "lot_id"), _money(e, "amount")
        lot = self.lot(e, lot_id)
        if lot.size:
            _bad(f"the fund closes lot {lot_id}, which still holds {fmt_size(lot.size)} {lot.market}")
        del self.lots[lot_id]
        self.hold(lot.market, 0, -lot.basis)
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
        realized = self.trade(account, market, size, price)
        self.realize(account, _money(e, "realized_pnl"), realized, f"{account}'s ADL")
        lot.size -= size
        lot.basis -= size * price
        self.hold(market, -size, -size * price)
        self.stated_balance(e, account)


# Event kinds that move nothing on the books (and kinds the checker does not know,
# e.g. added by a later version) are checked only for the common fields.
_HANDLERS: Final = {
    name[3:]: getattr(_Books, name) for name in dir(_Books) if name.startswith("on_") and name != "on_fee"
}


# --- reading the file ---------------------------------------------------------------------


def _reject_constant(name: str) -> NoReturn:
    raise ValueError(f"{name} is not a number JSON allows")


def check_lines(lines: Iterable[bytes]) -> LogReport:
    """Check the raw lines of a log (each with its trailing newline, if it has one)."""
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
            last_time = time
            for key in ("actor", "kind"):
                if not isinstance(event.get(key), str):
                    _bad(f"no {key!r} string")
            kind = event["kind"]
            if complete:
                _bad(f"a {kind} event after {CLOSING}")
            if (kind == OPENING) != (seq == 0):
                _bad(f"the log must open with {OPENING}" if seq == 0 else f"a second {OPENING}")
            if kind in UNMODELLED or (kind == "liquidation_settled" and "clearance_fee" in event):
                raise _Unsupported(
                    f"cannot verify: line {lineno}, seq {seq} is a {kind!r} event of an optional policy "
                    "whose money movements check-log does not rebuild (it checks NFEX's defaults); "
                    f"lines 1-{lineno - 1} were good"
                )
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
        except _Unsupported as exc:
            return attrs.evolve(report(None), unsupported=str(exc))
        expected_seq += 1
    return report(None)


def _apply(books: _Books, kind: str, event: dict[str, Any], lineno: int) -> None:
    last_fill, books.last_fill, books.note = books.last_fill, None, None
    if kind == "invariant_violated":
        _bad(f"the run reports an invariant violated: {event.get('invariant')}: {event.get('detail')}")
    if kind == "fee":
        books.on_fee(event, last_fill)
    elif kind == "trade":
        books.on_trade(event, lineno)
    else:
        handler = _HANDLERS.get(kind)
        if handler is not None:
            handler(books, event)


# A log of 10 million events is about 3 GB; one event is at most a few KB (an
# opening_state lists every account: 1,000,000 of them, ~80 bytes each, fit in 256 MiB).
MAX_LOG_BYTES: Final = 4 * 1024 * 1024 * 1024
MAX_LINE_BYTES: Final = 256 * 1024 * 1024


def check_log(path: str | os.PathLike[str]) -> LogReport:
    """Check the log at ``path``.

    Only a regular file is read (a FIFO or device is refused at once, as
    :class:`~sandbox._safeio.UnsafePath`), at most :data:`MAX_LOG_BYTES`,
    one line of at most :data:`MAX_LINE_BYTES` at a time: a longer line is
    a bad line, not a read of the whole file. Raises ``OSError`` if it
    cannot be read.
    """
    from ._safeio import open_regular

    with open_regular(path, MAX_LOG_BYTES, "an events file") as f:
        return check_lines(_lines(f))


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
