"""The margin monitor: finds accounts whose equity has fallen to their maintenance margin.

Equity is balance + unrealized PnL at mark, summed over all of an account's
markets (cross margin). An account with positions whose equity <= maintenance
margin is sent to the liquidation engine once; the monitor will not ask again
for it until the engine says that liquidation has ended.

The monitor's view of each account is what clearing last told it
(``AccountUpdated``) and its own copy of the marks; both may be stale.

A mark-price tick must not scan every account. An account with a position in
one market only is indexed by its *trigger*: a price bound that the mark must
cross for the account to be liquidatable there (below it for a long, above it
for a short; see :func:`trigger`). The bound is derived from the exact
integer test, with the rounding of the margin on the safe side, so an index
lookup may return an account that turns out healthy but never misses one.
With tiered margin (a tier table or a risk factor, ``MarketSpec.tiered``)
the key is derived from the highest rate any part of the position pays
(:func:`~actors._common.top_maintenance_rate`): the margin is at most the
notional times that rate, so the bound stays safe (it may return more
accounts, never miss one); a rate of 100% or more leaves a long unindexed,
re-checked like a cross-margin account.
Cross-margin accounts (positions in several markets) are few; they are
re-checked on every tick of any of their markets. Candidates are checked in
the order a scan of every account would have checked them (by when the
monitor last stored each account), so what is sent is exactly the same.
"""

from __future__ import annotations

from typing import Mapping

from sortedcontainers import SortedList

from sandbox.messages import (
    Event,
    AccountUpdated,
    LiquidationEnded,
    LiquidationRequested,
    MarkPriceUpdated,
    PositionView,
    Started,
)
from sandbox._core.money import RATE_ONE, fmt_money
from sandbox._core.actor import Actor
from sandbox._core.specs import MarketSpec

from ._common import ENGINE, MONITOR, equity, maintenance_margin, top_maintenance_rate

__all__ = ["MarginMonitor", "trigger"]


def trigger(balance: int, size: int, entry_value: int, rate_ppm: int) -> int | None:
    """The price index key of a one-market account, or None if it cannot be indexed.

    The account is liquidatable at mark ``p`` when
    ``balance + size*p - entry_value <= ceil(|size|*p*rate)``. Since the
    ceiling is below ``|size|*p*rate + 1``, that implies, for a long,
    ``p < ONE*(entry_value - balance + 1) / (size*(ONE - rate))`` and, for a
    short (``a = -size``), ``p > ONE*(balance - entry_value - 1) / (a*(ONE + rate))``.
    A long is looked at when ``p <= key`` (key rounded up, plus one), a short
    when ``p > key`` (key rounded down, minus one).
    """
    if size > 0 and rate_ppm < RATE_ONE:
        return -((-RATE_ONE * (entry_value - balance + 1)) // (size * (RATE_ONE - rate_ppm))) + 1
    if size < 0:
        return (RATE_ONE * (balance - entry_value - 1)) // (-size * (RATE_ONE + rate_ppm)) - 1
    return None


class MarginMonitor(Actor):
    def __init__(
        self,
        markets: Mapping[str, MarketSpec],
        accounts: Mapping[str, tuple[int, tuple[PositionView, ...]]],
    ) -> None:
        super().__init__(MONITOR)
        self.markets = dict(markets)
        self.marks = {m: spec.mark_price for m, spec in self.markets.items()}
        self.versions = {m: 0 for m in self.markets}
        self.valid_at = {m: 0 for m in self.markets}  # when the oracle accepted each mark
        self.accounts: dict[str, tuple[int, tuple[PositionView, ...], bool]] = {}
        # The index. Entries are (key, stamp, account); the stamp orders
        # accounts by when they were last stored (the order of a full scan).
        self.longs: dict[str, SortedList] = {m: SortedList() for m in self.markets}
        self.shorts: dict[str, SortedList] = {m: SortedList() for m in self.markets}
        self.cross: dict[str, dict[str, int]] = {m: {} for m in self.markets}  # market -> {account: stamp}
        self._entry: dict[str, tuple[str, int, tuple[int, int, str] | None]] = {}  # account -> (market, sign, entry)
        self._stamp = 0
        self.requested: dict[str, None] = {}
        # Per account: the version of the view stored, and the newest version the
        # engine has judged. The monitor never asks on a view older than the
        # engine's last answer: it waits for clearing's newer update, which is on
        # its way (without this, an update delayed past a liquidation's end can
        # make monitor and engine ask and refuse forever at one instant).
        self.view_version: dict[str, int] = {}
        self.judged: dict[str, int] = {}
        for account, (balance, positions) in accounts.items():
            self._store(account, balance, positions, False)

    def _store(self, account: str, balance: int, positions: tuple[PositionView, ...], frozen: bool) -> None:
        self._unindex(account)
        self.accounts[account] = (balance, positions, frozen)
        if not positions:
            return
        self._stamp += 1
        stamp = self._stamp
        if len(positions) == 1:
            p = positions[0]
            key = trigger(balance, p.size, p.entry_value, top_maintenance_rate(self.markets[p.market]))
            if key is not None:
                entry = (key, stamp, account)
                (self.longs if p.size > 0 else self.shorts)[p.market].add(entry)
                self._entry[account] = (p.market, 1 if p.size > 0 else -1, entry)
                return
        for p in positions:
            self.cross[p.market][account] = stamp
        self._entry[account] = ("", 0, None)

    def _unindex(self, account: str) -> None:
        old = self._entry.pop(account, None)
        if old is None:
            return
        market, side, entry = old
        if side:
            (self.longs if side > 0 else self.shorts)[market].remove(entry)
        else:
            for p in self.accounts[account][1]:
                self.cross[p.market].pop(account, None)

    def candidates(self, market: str, price: int) -> list[str]:
        """Every account holding ``market`` that may be liquidatable at ``price``, in scan order."""
        probe = (price,)
        longs, shorts = self.longs[market], self.shorts[market]
        found = [(stamp, account) for _, stamp, account in longs.islice(longs.bisect_left(probe))]
        found += [(stamp, account) for _, stamp, account in shorts.islice(0, shorts.bisect_left(probe))]
        found += [(stamp, account) for account, stamp in self.cross[market].items()]
        found.sort()
        return [account for _, account in found]

    def margin(self, account: str) -> tuple[int, int]:
        """(equity, maintenance margin) of ``account`` by this monitor's view."""
        balance, positions, _ = self.accounts[account]
        triples = [(p.market, p.size, p.entry_value) for p in positions]
        return equity(balance, triples, self.marks), maintenance_margin(triples, self.marks, self.markets)

    def check(self, account: str) -> None:
        if account in self.requested or self.view_version.get(account, 0) < self.judged.get(account, 0):
            return
        balance, positions, frozen = self.accounts[account]
        if not positions or frozen:
            return
        eq, mm = self.margin(account)
        if eq <= mm:
            self.requested[account] = None
            self.emit(Event.MARGIN_CALL, account=account, equity=fmt_money(eq), maintenance_margin=fmt_money(mm))
            marks = tuple((p.market, self.marks[p.market], self.versions[p.market]) for p in positions)
            valid_at = tuple((p.market, self.valid_at[p.market]) for p in positions)
            self.send(ENGINE, LiquidationRequested(account, eq, mm, marks, balance, positions, valid_at))

    def on_Started(self, msg: Started) -> None:
        for account in list(self.accounts):
            self.check(account)

    def on_AccountUpdated(self, msg: AccountUpdated) -> None:
        if msg.version and msg.version < self.view_version.get(msg.account, 0):
            return  # older than the view already stored
        self.view_version[msg.account] = msg.version
        self._store(msg.account, msg.balance, msg.positions, msg.frozen)
        self.check(msg.account)

    def _adopt(self, market: str, price: int, version: int) -> bool:
        if version <= self.versions[market]:
            return False
        self.marks[market] = price
        self.versions[market] = version
        return True

    def on_MarkPriceUpdated(self, msg: MarkPriceUpdated) -> None:
        if self._adopt(msg.market, msg.price, msg.version):
            self.valid_at[msg.market] = msg.observed_ms
            for account in self.candidates(msg.market, msg.price):
                self.check(account)

    def on_LiquidationEnded(self, msg: LiquidationEnded) -> None:
        # The engine judged by marks at least as new as ours (it adopts ours
        # from the request). Adopting its newer ones first means we never ask
        # again for an account it has just found healthy on a newer price:
        # without it, a re-check could ping-pong with the engine for as long
        # as our copy of a mark update is still on its way.
        for market, price, version in msg.marks:
            self._adopt(market, price, version)
        self.requested.pop(msg.account, None)
        if msg.version > self.judged.get(msg.account, 0):
            self.judged[msg.account] = msg.version
        if msg.outcome != "settled":
            # "cancelled" or "restored": the engine judged the account healthy
            # on marks we now share. Check once more on our (possibly newer)
            # view of the account, so an underwater account is never left alone.
            self.check(msg.account)
