"""The oracle: publishes mark prices from the scenario's timeline.

It owns the authoritative mark price of every market. Every other actor keeps
its own copy, updated only when a ``MarkPriceUpdated`` reaches it, so between
an update's publication and its delivery two actors can disagree about the
price: that is a real exchange's staleness, made visible.
"""

from __future__ import annotations

from typing import Mapping, Sequence

from sandbox.messages import MarkPriceObserved, MarkPriceUpdated
from sandbox.money import fmt_price
from sandbox.runtime import Actor
from sandbox.scenario import MarketSpec

from ._common import ADL, CLEARING, ENGINE, MONITOR, ORACLE

__all__ = ["Oracle"]


class Oracle(Actor):
    SUBSCRIBERS: Sequence[str] = (CLEARING, MONITOR, ENGINE, ADL)

    def __init__(self, markets: Mapping[str, MarketSpec]) -> None:
        super().__init__(ORACLE)
        self.marks = {m: spec.mark_price for m, spec in markets.items()}
        self.versions = {m: 0 for m in markets}

    def on_MarkPriceObserved(self, msg: MarkPriceObserved) -> None:
        previous = self.marks[msg.market]
        self.marks[msg.market] = msg.price
        self.versions[msg.market] += 1
        self.emit("mark_price", market=msg.market, price=fmt_price(msg.price), previous=fmt_price(previous))
        update = MarkPriceUpdated(msg.market, msg.price, self.versions[msg.market])
        for subscriber in self.SUBSCRIBERS:
            self.send(subscriber, update)
