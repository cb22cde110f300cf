"""The oracle: publishes mark prices, after checking them, and sets funding rates.

It owns the authoritative mark price of every market. Every other actor keeps
its own copy, updated only when a ``MarkPriceUpdated`` reaches it, so between
an update's publication and its delivery two actors can disagree about the
price: that is a real exchange's staleness, made visible.

**Oracle trouble.** Every observation is checked before it is published. One
that is missing (the feed is silent), zero or negative is rejected and logged
(``oracle_price_rejected``); so is one that moves more than ``oracle_band``
from the last valid price, the usual defence against a manipulated print
(a wash-traded NFT floor). A market with no valid price for longer than
``oracle_staleness`` is *stale*: the liquidation engine pauses new
liquidations in it (``stale_liquidations = "pause"``) until a valid price
returns. A stale market has no trustworthy reference for the band, so the first
positive observation after the staleness limit is accepted whatever its move:
a real move beyond the band is held back for at most the staleness limit, never
refused forever. Every receiver learns when each price was accepted
(``MarkPriceUpdated.observed_ms``) and judges staleness by that.

**The mark price** is, by default, whatever the scenario's timeline says
(``mark_price`` events). With ``policy.mark_price = "median"`` it is NFEX's
published formula, computed on every ``index_price`` observation::

    mark   = median(impact mid, price1, price2)
    impact mid = (impact bid + impact ask) / 2, the average fill prices of
                 impact_notional against each side of the book (the index when a
                 side is too thin to fill it)
    price1 = index x (1 + last funding rate x seconds to next funding / 3600)
    price2 = index + the average basis (impact mid - index) of the last
             basis_window computations (the reference leaves price2 open; this
             is Binance's "index + moving average of the basis")

The median of three means one manipulated input (a spoofed book) moves the
mark by much less than it moves itself.

**Funding.** Every ``funding_interval`` (an hour by default) the oracle sets the
rate of every market with an index price: rate = (mark - index) / index /
funding_divisor, toward zero to the ppm, capped at +-max_funding_rate. Clearing
settles it: payment = mark x size x rate, a positive rate means longs pay shorts.
"""

from __future__ import annotations

from collections import deque
from typing import Mapping, Sequence

from sandbox._core.eventlog import time_seconds
from sandbox.messages import (
    Event,
    FundingDue,
    FundingRateSet,
    ImpactPricesReported,
    ImpactPricesRequested,
    IndexPriceObserved,
    MarkPriceObserved,
    MarkPriceUpdated,
)
from sandbox._core.money import RATE_ONE, fmt_price, fmt_rate, sign
from sandbox._core.actor import Actor
from sandbox._core.specs import DEFAULT_POLICY, MarketSpec, Policy

from ._common import ADL, CLEARING, ENGINE, FUND, MONITOR, ORACLE, book_name, round_price_down

__all__ = ["Oracle", "median_mark"]

_MS_PER_HOUR = 3_600_000


def median_mark(impact_mid: int, price1: int, price2: int, tick: int) -> int:
    """The middle one of the three, rounded down to the tick (and at least one tick)."""
    middle = sorted((impact_mid, price1, price2))[1]
    return max(round_price_down(middle, tick), tick)


class Oracle(Actor):
    SUBSCRIBERS: Sequence[str] = (CLEARING, MONITOR, ENGINE, ADL)
    policy: Policy = DEFAULT_POLICY

    def __init__(self, markets: Mapping[str, MarketSpec]) -> None:
        super().__init__(ORACLE)
        self.markets = dict(markets)
        self.marks = {m: spec.mark_price for m, spec in markets.items()}
        self.versions = {m: 0 for m in markets}
        # When each market last had a valid price (virtual ms): the scenario's at 0.
        self.valid_at = {m: 0 for m in markets}
        self.index = {m: spec.index_price for m, spec in markets.items() if spec.index_price is not None}
        self.funding_rates = {m: 0 for m in self.index}  # the last rate set, ppm
        self.basis: dict[str, deque[int]] = {m: deque() for m in self.index}
        self.stale_logged: dict[str, None] = {}
        self._funding_id = 0
        self._request_id = 0

    def subscribers(self) -> Sequence[str]:
        # The fund values its inventory, reserves and prices its orders at the mark.
        return (*self.SUBSCRIBERS, FUND)

    def is_stale(self, market: str) -> bool:
        return self.policy.is_stale(self.valid_at[market], self.now_ms)

    # -- mark price observations -----------------------------------------------------

    def on_MarkPriceObserved(self, msg: MarkPriceObserved) -> None:
        self.observe(msg.market, msg.price)

    def rejection(self, market: str, price: int | None) -> str | None:
        """Why ``price`` cannot be published (None: it can)."""
        if price is None:
            return "missing"
        if price == 0:
            return "zero"
        if price < 0:
            return "negative"
        band, last = self.policy.oracle_band, self.marks[market]
        # |price - last| / last > band, exactly: no division.
        if band and abs(price - last) * RATE_ONE > band * last and not self.is_stale(market):
            return "outside_band"
        return None

    def observe(self, market: str, price: int | None) -> None:
        reason = self.rejection(market, price)
        if reason is None:
            assert price is not None
            self.publish(market, price)
            return
        fields: dict[str, object] = {}
        if reason == "outside_band":
            fields["band"] = fmt_rate(self.policy.oracle_band)
        self.emit(
            Event.ORACLE_PRICE_REJECTED, market=market, price=None if price is None else fmt_price(price),
            reason=reason, last_valid=fmt_price(self.marks[market]), **fields,
        )
        if self.is_stale(market) and market not in self.stale_logged:
            self.stale_logged[market] = None
            self.emit(Event.ORACLE_STALE, market=market, last_valid=fmt_price(self.marks[market]),
                      since=time_seconds(self.valid_at[market]), limit=time_seconds(self.policy.oracle_staleness_ms),
                      liquidations="paused" if self.policy.pauses_when_stale else "continue")

    def publish(self, market: str, price: int) -> None:
        if self.is_stale(market):
            self.emit(Event.ORACLE_FRESH, market=market, price=fmt_price(price),
                      stale_for=time_seconds(self.now_ms - self.valid_at[market]))
        self.stale_logged.pop(market, None)
        previous = self.marks[market]
        self.marks[market] = price
        self.versions[market] += 1
        self.valid_at[market] = self.now_ms
        self.emit(Event.MARK_PRICE, market=market, price=fmt_price(price), previous=fmt_price(previous))
        update = MarkPriceUpdated(market, price, self.versions[market], self.now_ms)
        for subscriber in self.subscribers():
            self.send(subscriber, update)

    # -- the index, and the median mark ------------------------------------------------

    def on_IndexPriceObserved(self, msg: IndexPriceObserved) -> None:
        self.index[msg.market] = msg.price
        self.basis.setdefault(msg.market, deque())
        self.funding_rates.setdefault(msg.market, 0)
        self.emit(Event.INDEX_PRICE, market=msg.market, price=fmt_price(msg.price))
        if self.policy.mark_price == "median":
            self._request_id += 1
            self.send(book_name(msg.market),
                      ImpactPricesRequested(msg.market, self._request_id, self.policy.impact_notional))

    def on_ImpactPricesReported(self, msg: ImpactPricesReported) -> None:
        market, index = msg.market, self.index[msg.market]
        impact_mid = (msg.bid + msg.ask) // 2 if msg.bid is not None and msg.ask is not None else index
        samples = self.basis[market]
        samples.append(impact_mid - index)
        while len(samples) > self.policy.basis_window:
            samples.popleft()
        price1 = index + index * self.funding_rates[market] * self._ms_to_next_funding() // (RATE_ONE * _MS_PER_HOUR)
        price2 = index + sum(samples) // len(samples)
        mark = median_mark(impact_mid, price1, price2, self.markets[market].tick_size)
        self.emit(
            Event.MARK_COMPUTED, market=market, index=fmt_price(index),
            impact_bid=None if msg.bid is None else fmt_price(msg.bid),
            impact_ask=None if msg.ask is None else fmt_price(msg.ask),
            impact_mid=fmt_price(impact_mid), price1=fmt_price(price1), price2=fmt_price(price2),
            mark=fmt_price(mark),
        )
        self.observe(market, mark)

    def _ms_to_next_funding(self) -> int:
        interval = self.policy.funding_interval_ms
        return interval - self.now_ms % interval

    # -- funding ---------------------------------------------------------------------------

    def funding_rate(self, market: str) -> int:
        """(mark - index) / index / divisor, toward zero to the ppm, capped (module doc)."""
        premium = (self.marks[market] - self.index[market]) * RATE_ONE
        rate = sign(premium) * (abs(premium) // (self.index[market] * self.policy.funding_divisor))
        cap = self.policy.max_funding_rate
        return max(-cap, min(cap, rate))

    def on_FundingDue(self, msg: FundingDue) -> None:
        for market in self.markets:
            if market not in self.index:
                continue
            rate = self.funding_rate(market)
            self.funding_rates[market] = rate
            self._funding_id += 1
            self.emit(Event.FUNDING_RATE, market=market, funding_id=self._funding_id, rate=fmt_rate(rate),
                      mark_price=fmt_price(self.marks[market]), index=fmt_price(self.index[market]))
            if rate:
                self.send(CLEARING, FundingRateSet(market, self._funding_id, rate, self.marks[market]))
