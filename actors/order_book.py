"""The order book of one market: price-time priority, limit and IOC orders, cancels.

Price levels live in ``sortedcontainers.SortedDict`` (bids keyed by negated
price so the best level of either side is index 0); each level is a FIFO
deque, which gives time priority. The book owns its resting orders and
nothing else: it knows no balances. For every match it sends one
:class:`~sandbox.messages.Fill` per side to that side's ledger (clearing or the
insurance fund), and when an order leaves the book it sends
:class:`~sandbox.messages.OrderClosed` to the order's ``reply_to``. Fills are
sent before the close on the same link, so a receiver has always applied an
order's fills when it hears the order is closed.

Self-trade prevention (cancel the resting order) stops a liquidation order
from trading against its own account, as on BitMEX and Binance.

For the median mark price the book also answers the oracle's question "what
would an order of this notional fill at, on average, on each side?"
(impact bid and ask): the bid rounded down and the ask up, to the price unit.
"""

from __future__ import annotations

from collections import deque

import attrs
from sortedcontainers import SortedDict

from sandbox.messages import (
    Event,
    AccountOrdersCancelled,
    CancelAccountOrders,
    CancelResting,
    Fill,
    ImpactPricesReported,
    ImpactPricesRequested,
    Order,
    OrderClosed,
    SubmitOrder,
)
from sandbox._core.money import ceil_div, fmt_price, fmt_size
from sandbox._core.actor import Actor

from ._common import CLEARING, ORACLE, book_name

__all__ = ["OrderBook"]


@attrs.define(slots=True, eq=False)
class _Resting:
    order: Order
    remaining: int
    filled: int = 0


class OrderBook(Actor):
    def __init__(self, market: str) -> None:
        super().__init__(book_name(market))
        self.market = market
        self.bids: SortedDict[int, deque[_Resting]] = SortedDict()  # key: -price
        self.asks: SortedDict[int, deque[_Resting]] = SortedDict()  # key: price
        self.orders: dict[str, _Resting] = {}
        self.by_account: dict[str, dict[str, None]] = {}

    # -- queries (for tests, reports and invariants; never used by other actors) ---

    def best_bid(self) -> int | None:
        return -self.bids.peekitem(0)[0] if self.bids else None

    def depth(self, side: str) -> list[tuple[int, int]]:
        levels = self.bids if side == "buy" else self.asks
        return [(abs(k), sum(r.remaining for r in q)) for k, q in levels.items()]

    def impact_price(self, side: str, notional: int) -> int | None:
        """Average price of filling ``notional`` (wei) against ``side``'s resting orders.

        None when the side holds less than ``notional``. The average is
        ``notional / size``, with the last level filled in part (exactly:
        ``notional x p / (size x p + rest)``), rounded down for bids, up for asks.
        """
        cost = size = 0
        for price, qty in self.depth(side):
            if cost + price * qty >= notional:
                rest = notional - cost
                num, den = notional * price, size * price + rest
                return num // den if side == "buy" else ceil_div(num, den)
            cost += price * qty
            size += qty
        return None

    # -- handlers ----------------------------------------------------------------------

    def on_SubmitOrder(self, msg: SubmitOrder) -> None:
        # The hot path of every order, written out: the order's fields read
        # once, its Fill and OrderClosed built here, the trade event recorded
        # lazily. It sends the same messages in the same order as the plain
        # loop it replaces (each match: the maker's Fill, the taker's Fill,
        # the trade, then the maker's OrderClosed if it is done).
        order = msg.order
        send = self.send
        market = self.market
        account = order.account
        order_id = order.order_id
        limit = order.price
        ledger = order.ledger
        kind = order.kind
        remaining = order.size
        filled = 0
        buying = order.side == "buy"
        levels = self.asks if buying else self.bids
        orders = self.orders
        by_account = self.by_account
        emit_lazy = self.emit_lazy
        while remaining and levels:
            key, queue = levels.peekitem(0)
            level_price = key if buying else -key
            if (level_price > limit) if buying else (level_price < limit):
                break
            while queue and remaining:
                maker = queue[0]
                made = maker.order
                if made.account == account:
                    queue.popleft()
                    self._forget(maker)
                    self._close(maker, "self_trade")
                    continue
                qty = maker.remaining if maker.remaining < remaining else remaining
                maker.remaining -= qty
                maker.filled += qty
                remaining -= qty
                filled += qty
                send(made.ledger, Fill(made.order_id, made.account, market, -qty if buying else qty, level_price,
                                       "maker", made.kind))
                send(ledger, Fill(order_id, account, market, qty if buying else -qty, level_price, "taker", kind))
                emit_lazy(Event.TRADE, _trade_fields, market, level_price, qty,
                          account if buying else made.account, made.account if buying else account,
                          account, kind, order_id, made.order_id)
                if maker.remaining == 0:
                    queue.popleft()
                    del orders[made.order_id]
                    mine = by_account[made.account]
                    del mine[made.order_id]
                    if not mine:
                        del by_account[made.account]
                    send(made.reply_to, OrderClosed(made.order_id, made.account, market, maker.filled, 0, "filled"))
            if not queue:
                del levels[key]
        if remaining == 0:
            send(order.reply_to, OrderClosed(order_id, account, market, filled, 0, "filled"))
        elif order.tif == "ioc":  # what _close does, without a _Resting made only to be closed
            if order.kind == "trader":
                emit_lazy(Event.ORDER_EXPIRED, _closed_fields, account, order_id, market, remaining, "expired")
            send(order.reply_to, OrderClosed(order_id, account, market, filled, remaining, "expired"))
        else:  # rest it
            own, key = (self.bids, -limit) if buying else (self.asks, limit)
            queue = own.get(key)
            if queue is None:
                queue = own[key] = deque()
            resting = _Resting(order, remaining, filled)
            queue.append(resting)
            orders[order_id] = resting
            mine = by_account.get(account)
            if mine is None:
                mine = by_account[account] = {}
            mine[order_id] = None

    def on_CancelResting(self, msg: CancelResting) -> None:
        resting = self.orders.get(msg.order_id)
        if resting is None or resting.order.account != msg.account:
            # Already filled or cancelled: its OrderClosed is on its way.
            return
        self._remove(resting)
        self._close(resting, "cancelled")

    def on_CancelAccountOrders(self, msg: CancelAccountOrders) -> None:
        for order_id in list(self.by_account.get(msg.account, ())):
            resting = self.orders[order_id]
            self._remove(resting)
            self._close(resting, "cancelled")
        self.send(CLEARING, AccountOrdersCancelled(msg.liq_id, msg.account, self.market))

    def on_ImpactPricesRequested(self, msg: ImpactPricesRequested) -> None:
        self.send(ORACLE, ImpactPricesReported(
            msg.market, msg.request_id, self.impact_price("buy", msg.notional), self.impact_price("sell", msg.notional),
        ))

    # -- internals ---------------------------------------------------------------------

    def _close(self, resting: _Resting, reason: str) -> None:
        order = resting.order
        if reason != "filled" and order.kind == "trader":
            self.emit_lazy(Event.ORDER_EXPIRED if reason == "expired" else Event.ORDER_CANCELLED, _closed_fields,
                           order.account, order.order_id, self.market, resting.remaining, reason)
        self.send(
            order.reply_to,
            OrderClosed(order.order_id, order.account, self.market, resting.filled, resting.remaining, reason),
        )

    def _forget(self, resting: _Resting) -> None:
        order = resting.order
        del self.orders[order.order_id]
        mine = self.by_account[order.account]
        del mine[order.order_id]
        if not mine:
            del self.by_account[order.account]

    def _remove(self, resting: _Resting) -> None:
        order = resting.order
        levels, key = (self.bids, -order.price) if order.side == "buy" else (self.asks, order.price)
        queue = levels[key]
        queue.remove(resting)
        if not queue:
            del levels[key]
        self._forget(resting)


# The fields of the book's events, made only when the event is read (Actor.emit_lazy).


def _trade_fields(market: str, price: int, qty: int, buyer: str, seller: str, taker: str, taker_kind: str,
                  taker_order: str, maker_order: str) -> dict[str, object]:
    return {"market": market, "price": fmt_price(price), "size": fmt_size(qty), "buyer": buyer, "seller": seller,
            "taker": taker, "taker_kind": taker_kind, "taker_order": taker_order, "maker_order": maker_order}


def _closed_fields(account: str, order_id: str, market: str, unfilled: int, reason: str) -> dict[str, object]:
    return {"account": account, "order_id": order_id, "market": market, "unfilled": fmt_size(unfilled),
            "reason": reason}
