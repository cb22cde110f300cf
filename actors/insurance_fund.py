"""The insurance fund: one for every market, never below zero.

It owns its balance and its inventory. Its income is the surplus of
liquidations that filled better than the bankruptcy price
(``SurplusTransferred``) and the profit of closing taken-over positions well;
its spending is the loss of closing them badly.

A taken-over position becomes a *lot*: its size, its bankruptcy price, and
``basis``, the cost of the lot minus the proceeds of what has been sold of it
(so the lot's value at mark is ``size x mark - basis``, and when it is flat,
``-basis`` is its realized PnL, with no division anywhere). For each lot the
fund sends one IOC order limited at the price where closing the whole lot
would lose exactly the fund's *available* balance (its balance minus what
other open lots may still lose), and reserves that worst-case loss. Whatever
the order does not fill goes to ADL at the bankruptcy price, where the lot
loses nothing. So the worst the fund can end with is ``balance - reserved >= 0``:
the reservation is what makes "never negative" hold when several
bankruptcies are in flight at once. The limit is rounded to the tick towards
a smaller loss (up for a sale, down for a purchase).

By default (NFEX) the fund keeps no inventory once a flow is done: every lot
is closed by the book or by ADL.

Policies (``sandbox.scenario.Policy``):

* ``fund_inventory = "keep"``: the fund holds a taken-over position as
  inventory instead of closing it (Hyperliquid's backstop vault, which took
  over JELLY's short). It reserves nothing for it and watches its value at
  mark (``fund_inventory_marked``): the balance stays >= 0, but the fund's
  equity (balance + inventory PnL) can fall below zero, which is the risk
  that policy takes.
* funding: asked for a contribution (receivers are owed more than payers
  paid, because the fund's inventory is on the paying side), the fund pays
  what it has available, never more (``FundingContributed``); it receives the
  rest of a round (its own receipt and the rounding).
* ``fee_to_fund``: its share of trading fees (``FeeShareTransferred``).
* ``liquidation_fee``: the clearance fee arrives as a ``SurplusTransferred``
  with reason "clearance_fee".
"""

from __future__ import annotations

from typing import ClassVar, Mapping

import attrs

from sandbox.messages import (
    DeleverageAbandoned,
    DeleverageRequested,
    FeeShareTransferred,
    Fill,
    FundingContributed,
    FundingContributionRequested,
    FundingRemainderTransferred,
    MarkPriceUpdated,
    Order,
    OrderClosed,
    PositionTakenOver,
    SubmitOrder,
    SurplusTransferred,
)
from sandbox.money import ceil_div, fmt_money, fmt_price, fmt_size
from sandbox.runtime import Actor
from sandbox.scenario import DEFAULT_POLICY, MarketSpec, Policy

from ._common import ADL, CLEARING, FUND, FUND_ACCOUNT, book_name, round_price_down, round_price_up

__all__ = ["InsuranceFund", "Lot", "fund_limit_price"]


@attrs.define(slots=True)
class Lot:
    lot_id: int
    market: str
    size: int  # signed, the fund's side
    basis: int  # cost minus proceeds so far, in wei
    bankruptcy_price: int
    reserved: int
    liq_id: int
    account: str
    kept: bool = False  # ADL found nobody: the fund holds it as inventory
    # The part of a kept lot that is certainly the fund's (signed): ADL fills of
    # the lot may still be on their way when ADL gives up (clearing -> fund and
    # adl -> fund are different links), and only this much may be netted.
    held: int = 0


def fund_limit_price(size: int, bankruptcy_price: int, available: int, tick: int) -> int:
    """The limit at which closing ``size`` taken over at ``bankruptcy_price`` loses at most ``available``."""
    if size > 0:  # the fund sells: loss = size x (bankruptcy - limit)
        return max(round_price_up(ceil_div(size * bankruptcy_price - available, size), tick), tick)
    qty = -size  # the fund buys: loss = qty x (limit - bankruptcy)
    return round_price_down((qty * bankruptcy_price + available) // qty, tick)


class InsuranceFund(Actor):
    # Reserve each open lot's worst-case loss so that concurrent lots cannot
    # together lose more than the balance.
    RESERVES: ClassVar[bool] = True
    policy: Policy = DEFAULT_POLICY

    def __init__(self, markets: Mapping[str, MarketSpec], balance: int) -> None:
        super().__init__(FUND)
        self.markets = dict(markets)
        self.balance = balance
        self.lots: dict[int, Lot] = {}
        self._next_lot = 0
        # Only a fund that keeps inventory hears of marks (policy fund_inventory = "keep").
        self.marks = {m: spec.mark_price for m, spec in self.markets.items()}

    @property
    def reserved(self) -> int:
        return sum(lot.reserved for lot in self.lots.values())

    @property
    def available(self) -> int:
        return self.balance - self.reserved

    def positions(self) -> dict[str, tuple[int, int]]:
        """Inventory per market: (size, entry value) summed over open lots."""
        out: dict[str, tuple[int, int]] = {}
        for lot in self.lots.values():
            size, basis = out.get(lot.market, (0, 0))
            out[lot.market] = (size + lot.size, basis + lot.basis)
        return {m: v for m, v in sorted(out.items()) if v != (0, 0)}

    def unrealized_pnl(self, market: str | None = None) -> int:
        """The inventory's PnL at this fund's marks (one market, or all)."""
        return sum(
            lot.size * self.marks[lot.market] - lot.basis
            for lot in self.lots.values()
            if market is None or lot.market == market
        )

    def on_SurplusTransferred(self, msg: SurplusTransferred) -> None:
        self.balance += msg.amount
        kind = "fund_liquidation_fee" if msg.reason == "clearance_fee" else "fund_surplus"
        self.emit(kind, account=msg.account, liq_id=msg.liq_id, amount=fmt_money(msg.amount),
                  balance=fmt_money(self.balance))

    def on_FeeShareTransferred(self, msg: FeeShareTransferred) -> None:
        self.balance += msg.amount
        self.emit("fund_fee_income", account=msg.account, market=msg.market, amount=fmt_money(msg.amount),
                  balance=fmt_money(self.balance))

    def on_FundingContributionRequested(self, msg: FundingContributionRequested) -> None:
        # Never more than is available: the reservations of open lots stay covered.
        amount = min(msg.amount, max(self.available, 0))
        self.balance -= amount
        self.emit("fund_funding_paid", market=msg.market, funding_id=msg.funding_id, amount=fmt_money(amount),
                  owed=fmt_money(msg.amount), balance=fmt_money(self.balance))
        self.send(CLEARING, FundingContributed(msg.market, msg.funding_id, amount))

    def on_FundingRemainderTransferred(self, msg: FundingRemainderTransferred) -> None:
        self.balance += msg.amount
        self.emit("fund_funding_received", market=msg.market, funding_id=msg.funding_id,
                  amount=fmt_money(msg.amount), balance=fmt_money(self.balance))

    def on_MarkPriceUpdated(self, msg: MarkPriceUpdated) -> None:
        self.marks[msg.market] = msg.price
        held = sum(lot.size for lot in self.lots.values() if lot.market == msg.market)
        if held:
            self.emit(
                "fund_inventory_marked", market=msg.market, size=fmt_size(held), mark_price=fmt_price(msg.price),
                unrealized_pnl=fmt_money(self.unrealized_pnl(msg.market)), balance=fmt_money(self.balance),
                equity=fmt_money(self.balance + self.unrealized_pnl()),
            )

    def budget(self, msg: PositionTakenOver) -> int:
        """What closing this lot may lose: what no other open lot may still lose."""
        return self.available

    def on_PositionTakenOver(self, msg: PositionTakenOver) -> None:
        if self.policy.fund_inventory == "keep":
            return self.keep(msg)
        self._next_lot += 1
        tick = self.markets[msg.market].tick_size
        limit = fund_limit_price(msg.size, msg.price, self.budget(msg), tick)
        max_loss = abs(msg.size) * abs(msg.price - limit)
        lot = Lot(
            self._next_lot, msg.market, msg.size, msg.size * msg.price, msg.price,
            max_loss if self.RESERVES else 0, msg.liq_id, msg.account,
        )
        self.lots[lot.lot_id] = lot
        self.emit(
            "fund_order", lot_id=lot.lot_id, market=msg.market, size=fmt_size(msg.size),
            bankruptcy_price=fmt_price(msg.price), limit=fmt_price(limit), max_loss=fmt_money(max_loss),
            liq_id=msg.liq_id, account=msg.account,
        )
        order = Order(
            self._order_id(lot), FUND_ACCOUNT, msg.market, "sell" if msg.size > 0 else "buy", limit,
            abs(msg.size), "ioc", "fund", FUND, FUND,
        )
        self.send(book_name(msg.market), SubmitOrder(order))

    def keep(self, msg: PositionTakenOver) -> None:
        """Hold the position as inventory at the bankruptcy price (policy fund_inventory = "keep")."""
        self._next_lot += 1
        lot = Lot(self._next_lot, msg.market, msg.size, msg.size * msg.price, msg.price, 0, msg.liq_id,
                  msg.account, kept=True, held=msg.size)
        self.lots[lot.lot_id] = lot
        self.emit("fund_inventory_taken", lot_id=lot.lot_id, market=msg.market, account=msg.account,
                  size=fmt_size(msg.size), price=fmt_price(msg.price))
        # Kept lots are not netted against each other: crossing a long and a short
        # realizes their PnL, and a fund that reserves nothing for its inventory
        # could realize more than its balance. Held side by side they offset at mark.

    def on_Fill(self, msg: Fill) -> None:
        lot = self.lots[self._lot_id(msg.order_id)]
        lot.size += msg.size
        lot.basis += msg.size * msg.price
        if lot.size == 0:
            self._close(lot)

    def on_OrderClosed(self, msg: OrderClosed) -> None:
        lot = self.lots.get(self._lot_id(msg.order_id))
        if lot is None:
            return  # fully filled and already closed
        # Fills travel the same link ahead of this message, so lot.size is what is left.
        if self._net_against_inventory(lot):
            return
        self.send(ADL, DeleverageRequested(lot.lot_id, lot.market, lot.size, lot.bankruptcy_price))

    def on_DeleverageAbandoned(self, msg: DeleverageAbandoned) -> None:
        lot = self.lots[msg.lot_id]
        lot.kept = True
        lot.held = msg.remaining  # lot.size may still count ADL fills in flight
        if not self._net_against_inventory(lot, msg.remaining):
            self.emit("fund_inventory_kept", lot_id=lot.lot_id, market=lot.market, size=fmt_size(lot.held))

    def _net_against_inventory(self, lot: Lot, nettable: int | None = None) -> bool:
        """Cross ``lot`` with kept lots of the other side in its market; True if it is flat.

        When both sides of a market go bankrupt together, ADL may find no
        candidate (accounts under liquidation are not deleveraged) and the fund
        is left holding a long and a short of the same market. Those offset:
        they are crossed with each other at ``lot``'s bankruptcy price. The
        price only moves PnL between two lots of the fund, so it costs nothing.
        Only the part of a kept lot that is certainly held is crossed
        (``nettable`` for ``lot``, ``held`` for the others); a lot closes when
        its size, in-flight fills included, reaches zero.
        """
        own = lot.size if nettable is None else nettable
        for other in list(self.lots.values()):
            if own == 0:
                break
            if other is lot or not other.kept or other.market != lot.market or (other.held > 0) == (own > 0):
                continue
            qty = min(abs(own), abs(other.held))
            if qty == 0:
                continue
            price = lot.bankruptcy_price
            self.emit("fund_netted", market=lot.market, size=fmt_size(qty), price=fmt_price(price),
                      lots=[other.lot_id, lot.lot_id])
            for each in (other, lot):
                trade = -qty if each.size > 0 else qty
                each.size += trade
                each.basis += trade * price
            other.held += -qty if other.held > 0 else qty
            own += -qty if own > 0 else qty
            if lot.kept:
                lot.held = own
            for each in (other, lot):
                if each.size == 0:
                    self._close(each)
        return lot.size == 0

    def _close(self, lot: Lot) -> None:
        del self.lots[lot.lot_id]
        pnl = -lot.basis
        self.balance += pnl
        kind = "fund_payout" if pnl < 0 else ("fund_gain" if pnl > 0 else "fund_lot_closed")
        self.emit(kind, lot_id=lot.lot_id, market=lot.market, account=lot.account, amount=fmt_money(abs(pnl)),
                  balance=fmt_money(self.balance))
        if self.balance < 0:
            self.violation("fund never negative", f"balance {fmt_money(self.balance)} after lot {lot.lot_id}")

    @staticmethod
    def _order_id(lot: Lot) -> str:
        return f"fund:{lot.lot_id}"

    @staticmethod
    def _lot_id(order_id: str) -> int:
        return int(order_id.partition(":")[2])
