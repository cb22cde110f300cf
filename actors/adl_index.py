"""Clearing's ADL candidates, kept ranked per market and side.

A deleverage request used to make clearing list every account holding the
other side, and the coordinator rank them all with exact fractions: O(accounts)
per request, and a cascade makes O(accounts) requests. This index keeps, per
(market, side), the accounts with a position in that market only in a
``SortedList`` under their ADL key ``(-rank, account)``, the order the
coordinator sorts by (:func:`actors.adl.adl_rank`, ties by account id), so a
request costs O(log n + k) for the k candidates it returns.

A one-market account's rank depends on its balance, size and entry value and
on the mark of that market only; for a fixed mark it is a fixed exact
``Fraction``. So a bucket is built for one mark (and one ranking formula) and
rebuilt, O(n log n), only when a request comes with another mark: marks
change far less often than requests come. Accounts with positions in several
markets (cross margin, whose equity depends on every mark) are few; they are
kept in a set per (market, side) and ranked on each request, then merged in.

Clearing marks an account dirty whenever it changes (every change is followed
by its ``AccountUpdated``, :meth:`Clearing._publish`); a request first re-files
the dirty accounts. The ranking is exactly the scan's: same candidates (no
hold, a position of the requested sign), same keys, same order.
"""

from __future__ import annotations

import heapq
from fractions import Fraction
from typing import TYPE_CHECKING, Any, Iterator, Mapping

import attrs
from sortedcontainers import SortedList

from sandbox.messages import AdlCandidate
from sandbox._core.money import sign
from sandbox._core.specs import MarketSpec

from ._common import position_margin

if TYPE_CHECKING:
    from .clearing import Account

__all__ = ["AdlIndex", "single_rank"]

_LAST = Fraction(-(10**30))  # as actors.adl


def single_rank(balance: int, size: int, entry_value: int, mark: int, formula: str, spec: MarketSpec) -> Fraction:
    """``adl_rank`` of an account whose only position is (``size``, ``entry_value``), at ``mark``: exactly."""
    upnl = size * mark - entry_value
    eq = balance + upnl
    if eq <= 0 or entry_value == 0:
        return _LAST
    base = abs(entry_value)
    if formula == "pnl_pct":
        return Fraction(upnl, base)
    if formula == "pnl_x_margin_ratio":
        factor = position_margin(spec, abs(size) * mark)
        if factor == 0:
            return Fraction(upnl, base)
    else:
        factor = abs(size * mark)  # effective leverage = mark value / equity
    # pnl% x (factor / eq) when pnl% >= 0, else pnl% / (factor / eq)
    return Fraction(upnl * factor, base * eq) if upnl >= 0 else Fraction(upnl * eq, base * factor)


@attrs.define(eq=True)
class _Bucket:
    members: dict[str, Any] = attrs.Factory(dict)  # account -> its key (None while the bucket is unbuilt)
    keys: SortedList | None = None
    built: tuple[int, str] | None = None  # (mark, formula) the keys are for


@attrs.define(eq=True)
class AdlIndex:
    """Per (market, side): one-market holders ranked, cross-margin holders in a set (module doc)."""

    markets: dict[str, MarketSpec]
    dirty: set[str] = attrs.Factory(set)
    # account -> the (market, side) buckets it is filed in, and whether it is a one-market account
    where: dict[str, tuple[bool, tuple[tuple[str, int], ...]]] = attrs.Factory(dict)
    buckets: dict[tuple[str, int], _Bucket] = attrs.Factory(dict)
    cross: dict[tuple[str, int], set[str]] = attrs.Factory(dict)
    shapes: dict[Any, Any] = attrs.Factory(dict)

    def _key(self, acct: Account, market: str, bucket: _Bucket) -> tuple[Fraction, str]:
        assert bucket.built is not None
        mark, formula = bucket.built
        p = acct.positions[market]
        return (-single_rank(acct.balance, p.size, p.entry_value, mark, formula, self.markets[market]), acct.id)

    def _unfile(self, account: str) -> None:
        filed = self.where.pop(account, None)
        if filed is None:
            return
        one, places = filed
        for place in places:
            if one:
                bucket = self.buckets[place]
                key = bucket.members.pop(account)
                if bucket.keys is not None:
                    bucket.keys.remove(key)
            else:
                self.cross[place].discard(account)

    def _file(self, acct: Account) -> None:
        if acct.hold is not None:
            return  # under liquidation: not a candidate
        places = tuple((m, sign(p.size)) for m, p in acct.positions.items() if p.size)
        if not places:
            return
        one = len(places) == 1
        filed = (one, places)
        # One shared tuple per way of being filed: a run may index a million accounts, nearly all alike.
        self.where[acct.id] = self.shapes.setdefault(filed, filed)
        for place in places:
            if one:
                bucket = self.buckets.get(place)
                if bucket is None:
                    bucket = self.buckets[place] = _Bucket()
                if bucket.keys is None:
                    bucket.members[acct.id] = None
                else:
                    key = self._key(acct, place[0], bucket)
                    bucket.members[acct.id] = key
                    bucket.keys.add(key)
            else:
                self.cross.setdefault(place, set()).add(acct.id)

    def refresh(self, accounts: Mapping[str, Account]) -> None:
        """Re-file every account changed since the last request."""
        for account in self.dirty:
            self._unfile(account)
            acct = accounts.get(account)
            if acct is not None:
                self._file(acct)
        self.dirty.clear()

    def _build(self, accounts: Mapping[str, Account], market: str, bucket: _Bucket, mark: int, formula: str) -> None:
        bucket.built = (mark, formula)
        members = bucket.members
        for account in members:
            members[account] = self._key(accounts[account], market, bucket)
        bucket.keys = SortedList(members.values())

    def ranked(
        self, accounts: Mapping[str, Account], market: str, side: int, marks: Mapping[str, int], formula: str,
        size: int, exclude: frozenset[str], at_least: int,
    ) -> tuple[list[AdlCandidate], int]:
        """The highest ranked candidates (at ``marks``) covering ``size``, at least ``at_least``; and how many in all."""
        from .adl import adl_rank

        self.refresh(accounts)
        place = (market, side)
        bucket = self.buckets.get(place)
        if bucket is None:
            bucket = self.buckets[place] = _Bucket()
        if bucket.built != (marks[market], formula):
            self._build(accounts, market, bucket, marks[market], formula)
        assert bucket.keys is not None
        cross = []
        for account in self.cross.get(place, ()):
            acct = accounts[account]
            c = AdlCandidate(acct.id, acct.balance, acct.views())
            cross.append((-adl_rank(c, market, marks, formula, self.markets), account))
        cross.sort()
        total = len(bucket.members) + len(cross)
        total -= sum(1 for a in exclude if a in bucket.members or a in self.cross.get(place, ()))
        merged: Iterator[tuple[Fraction, str]] = heapq.merge(bucket.keys, cross) if cross else iter(bucket.keys)
        out: list[AdlCandidate] = []
        covered = 0
        for _, account in merged:
            if len(out) >= at_least and covered >= size:
                break
            if account in exclude:
                continue
            acct = accounts[account]
            covered += abs(acct.positions[market].size)
            out.append(AdlCandidate(acct.id, acct.balance, acct.views()))
        return out, total
