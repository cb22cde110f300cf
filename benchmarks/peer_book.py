"""The order book against a peer: this project's pure-Python ``OrderBook`` vs NautilusTrader's Rust ``OrderBook``.

Run from a checkout, with the optional extra installed (``pip install -e '.[peer]'``)::

    python benchmarks/peer_book.py [ORDERS] [--repeat N]

Not part of the test suite, and not run by ``sandbox bench``. Without
``nautilus_trader`` it prints why and exits 0.

What is compared, on the same random orders as ``sandbox bench``'s book
figures (``sandbox._tools.bench._random_orders``: half buys, half sells, limit prices
uniform within +-300 ticks of 10,000, sizes 1-49 lots, half of them IOC; 50
accounts in turn, so some crosses are self-trades):

* ``bare book``: ``sandbox._tools.bench.BareBook``, sorted price levels of FIFO
  queues (sortedcontainers), match and rest, nothing else;
* ``OrderBook (actor)``: the exchange's real book, ``on_SubmitOrder`` of a
  ``SubmitOrder`` message per order: matching with price-time priority and
  self-trade prevention, a ``Fill`` message per side of every match and an
  ``OrderClosed`` per order leaving the book (sends and events discarded);
* ``Nautilus OrderBook (calls)``: ``nautilus_trader.model.book.OrderBook``
  (L3, market by order) kept in the same state: every change our book makes
  for an order (a resting order added, a maker's size reduced, a maker
  filled or cancelled and deleted) as one ``add`` / ``update`` / ``delete``
  call from Python, the ``BookOrder`` objects built beforehand. Nautilus's
  book does not match (it is a market-data book); the decisions are ours,
  computed before the clock starts, so this column is the Rust book's cost
  of holding the same book, plus one Python-to-Rust call per change;
* ``Nautilus OrderBook (deltas)``: the same changes as one prebuilt
  ``OrderBookDeltas`` batch, ``apply_deltas``: no Python in the loop at all.

Every rate is incoming orders per second (the same orders for every column).
After each run the Nautilus book's levels are checked against ours.
"""

from __future__ import annotations

import argparse
import sys
import time
from typing import Any

from sandbox._tools import bench

MARKET = "PUNK"


def book_changes(orders: list[tuple[str, int, int, bool]]) -> tuple[list[list[tuple[str, int, str, int, int]]], Any]:
    """Per incoming order, the changes our ``OrderBook`` makes to its resting orders.

    Each change is ``(action, id, side, price, size)`` with action ``add``
    (``size`` rests), ``update`` (a maker's remaining size is now ``size``) or
    ``delete``. Returns the changes and the book, to compare final states.
    """
    from actors import OrderBook
    from sandbox.messages import Fill, Order, OrderClosed, SubmitOrder

    book = OrderBook(MARKET)
    sent: list[Any] = []
    book.send = lambda recipient, message: sent.append(message)  # type: ignore[method-assign]
    book.emit = lambda kind, **fields: None  # type: ignore[method-assign]
    book.emit_lazy = lambda kind, make, *args: None  # type: ignore[method-assign]
    where: dict[str, tuple[str, int]] = {}
    changes = []
    for i, (side, price, size, ioc) in enumerate(orders):
        oid = f"o{i}"
        sent.clear()
        book.on_SubmitOrder(SubmitOrder(Order(oid, f"a{i % 50}", MARKET, side, price, size, "ioc" if ioc else "gtc",
                                              "trader", "clearing", "clearing")))
        touched: dict[str, None] = {}
        closed: set[str] = set()
        for m in sent:
            if isinstance(m, Fill) and m.liquidity == "maker":
                touched[m.order_id] = None
            elif isinstance(m, OrderClosed) and m.order_id != oid:
                touched[m.order_id] = None
                closed.add(m.order_id)
        step = []
        for mid in touched:
            s, p = where[mid]
            if mid in closed:
                step.append(("delete", int(mid[1:]), s, p, 0))
                del where[mid]
            else:
                step.append(("update", int(mid[1:]), s, p, book.orders[mid].remaining))
        if oid in book.orders:
            where[oid] = (side, price)
            step.append(("add", i, side, price, book.orders[oid].remaining))
        changes.append(step)
    return changes, book


def nautilus_rates(orders: list[tuple[str, int, int, bool]], repeat: int) -> dict[str, Any]:
    from nautilus_trader.model.book import OrderBook as NautilusBook
    from nautilus_trader.model.data import BookOrder, OrderBookDelta, OrderBookDeltas
    from nautilus_trader.model.enums import BookAction, BookType, OrderSide
    from nautilus_trader.model.identifiers import InstrumentId
    from nautilus_trader.model.objects import Price, Quantity

    changes, ours = book_changes(orders)
    iid = InstrumentId.from_str(f"{MARKET}-PERP.SIM")
    sides = {"buy": OrderSide.BUY, "sell": OrderSide.SELL}
    ops = [(action, BookOrder(sides[side], Price(price, 0), Quantity(size, 0), oid))
           for step in changes for action, oid, side, price, size in step]
    actions = {"add": BookAction.ADD, "update": BookAction.UPDATE, "delete": BookAction.DELETE}
    deltas = OrderBookDeltas(iid, [OrderBookDelta(iid, actions[a], bo, 0, k + 1, 0, 0) for k, (a, bo) in enumerate(ops)])

    def check(book: Any) -> None:
        for side, levels in (("buy", book.bids()), ("sell", book.asks())):
            theirs = [(int(level.price), int(level.size())) for level in levels]
            mine = ours.depth(side)
            assert theirs == mine, f"the Nautilus book differs from ours on the {side} side"

    def calls() -> float:
        book = NautilusBook(iid, BookType.L3_MBO)
        add, update, delete = book.add, book.update, book.delete
        fn = {"add": add, "update": update, "delete": delete}
        bound = [(fn[a], bo) for a, bo in ops]
        start = time.perf_counter()
        for f, bo in bound:
            f(bo, 0)
        seconds = time.perf_counter() - start
        check(book)
        return len(orders) / seconds

    def batch() -> float:
        book = NautilusBook(iid, BookType.L3_MBO)
        start = time.perf_counter()
        book.apply_deltas(deltas)
        seconds = time.perf_counter() - start
        check(book)
        return len(orders) / seconds

    counts = {a: sum(1 for x, _ in ops if x == a) for a in actions}
    crossed = sum(1 for step in changes if any(a != "add" for a, *_ in step))
    return {"calls": max(calls() for _ in range(repeat)), "deltas": max(batch() for _ in range(repeat)),
            "changes": counts, "crossed": crossed}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("orders", nargs="?", type=int, default=200_000)
    parser.add_argument("--repeat", type=int, default=3, help="best of N runs per column (default 3)")
    args = parser.parse_args(argv)
    try:
        import nautilus_trader
    except ImportError:
        print("skipped: nautilus_trader is not installed (pip install -e '.[peer]' or pip install nautilus_trader)")
        return 0
    orders = bench._random_orders(args.orders)
    bare = max(bench.bare_book_orders_per_s(orders) for _ in range(args.repeat))
    ours = max(bench.book_orders_per_s(orders) for _ in range(args.repeat))
    peer = nautilus_rates(orders, args.repeat)
    print(f"{args.orders:,} random orders (best of {args.repeat}); nautilus_trader {nautilus_trader.__version__}, "
          f"Python {sys.version.split()[0]}")
    print(f"book changes: {peer['changes']['add']:,} adds, {peer['changes']['update']:,} updates, "
          f"{peer['changes']['delete']:,} deletes; {peer['crossed']:,} orders crossed (traded or self-trade cancelled)")
    print("| book | orders/s | vs bare book |")
    print("|---|---:|---:|")
    for name, rate in (("bare book (sortedcontainers)", bare), ("OrderBook (actor, pure Python)", ours),
                       ("Nautilus OrderBook, one call per change", peer["calls"]),
                       ("Nautilus OrderBook, apply_deltas batch", peer["deltas"])):
        print(f"| {name} | {rate:,.0f} | {rate / bare:.2f}x |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
