"""The ADL coordinator: deleverages the most profitable, most leveraged opposing positions.

When the insurance fund cannot close a taken-over lot within its budget it
asks for auto-deleveraging. The coordinator asks clearing for the accounts
holding the opposite side of that market (a fresh snapshot; accounts under
liquidation are not candidates), ranked by :func:`adl_rank` at the
coordinator's own marks (the request carries them, and the ranking), and
closes them highest first at the lot's bankruptcy price until the lot is flat.
Clearing keeps its accounts ranked per market and side (``actors/adl_index.py``)
and answers with the highest ranked that cover the size (and at least
:data:`RANKING_SHOWN`, for the ``adl_ranking`` event): O(log n + k) a request,
not a scan and a sort of every account. A request without marks is answered
with every candidate, unranked, and the coordinator ranks them itself.

Ranking, as BitMEX and NFEX publish it (docs/concepts/venues.md)::

    PnL%               = unrealized PnL / |entry value|
    effective leverage = mark value / |mark value - bankrupt value|
    rank               = PnL% x effective leverage    if PnL% >= 0
                         PnL% / effective leverage    otherwise

For a cross-margin account the bankrupt value of a position is its value at
the price where the account's equity would be zero with its other positions
at mark, so ``|mark value - bankrupt value|`` is the account's equity. An
account with equity <= 0 ranks last. Ranks are exact fractions (no floats);
ties go to the account id, so the order is deterministic.

Other rankings (``policy.adl_ranking``)::

    pnl_x_margin_ratio  PnL% x margin ratio, margin ratio = maintenance margin / equity
                        (PnL% / margin ratio when PnL% < 0), as Binance describes it
    pnl_pct             PnL% alone: the most profitable first, whatever its leverage

Positions may change between the snapshot and the ``Deleverage`` reaching
clearing (the snapshot is stale by then); clearing applies at most what is
still there, and at most what the account's balance can pay at the lot's
price (ADL never leaves a balance below zero), and says how much; the
coordinator asks again for the rest, leaving out the accounts that gave less
than they were asked.
"""

from __future__ import annotations

from collections import deque
from fractions import Fraction
from typing import Final, Mapping

import attrs

from sandbox.messages import (
    Event,
    AdlCandidate,
    AdlCandidates,
    AdlCandidatesRequested,
    Deleverage,
    DeleverageAbandoned,
    DeleverageRequested,
    Deleveraged,
    MarkPriceUpdated,
)
from sandbox._core.money import fmt_price, fmt_size, sign
from sandbox._core.actor import Actor
from sandbox._core.specs import DEFAULT_POLICY, MarketSpec, Policy

from . import accounting
from ._common import ADL, CLEARING, FUND, equity, maintenance_margin

__all__ = ["AdlCoordinator", "adl_rank"]

# How many fresh snapshots to try before leaving the rest with the fund.
MAX_ROUNDS: Final = 5
# The ``adl_ranking`` event names at most this many accounts (and, when there were more, how many).
RANKING_SHOWN: Final = 20
_LAST: Final = Fraction(-(10**30))


def adl_rank(
    candidate: AdlCandidate,
    market: str,
    marks: Mapping[str, int],
    formula: str = "pnl_x_leverage",
    markets: Mapping[str, MarketSpec] | None = None,
) -> Fraction:
    """The ADL ranking of ``candidate``'s position in ``market`` (see module doc).

    ``markets`` (for maintenance margins) is needed by "pnl_x_margin_ratio" only.
    """
    triples = [(p.market, p.size, p.entry_value) for p in candidate.positions]
    eq = equity(candidate.balance, triples, marks)
    position = next(p for p in candidate.positions if p.market == market)
    if eq <= 0 or position.entry_value == 0:
        return _LAST
    mark_value = abs(position.size * marks[market])
    pnl_pct = Fraction(accounting.unrealized_pnl(position.size, position.entry_value, marks[market]),
                       abs(position.entry_value))
    if formula == "pnl_pct":
        return pnl_pct
    if formula == "pnl_x_margin_ratio":
        assert markets is not None
        factor = Fraction(maintenance_margin(triples, marks, markets), eq)
        if factor == 0:
            return pnl_pct
    else:
        factor = Fraction(mark_value, eq)  # effective leverage
    return pnl_pct * factor if pnl_pct >= 0 else pnl_pct / factor


@attrs.define
class _Request:
    adl_id: int
    request: DeleverageRequested
    remaining: int  # unsigned size still to close
    pending: int = 0
    rounds: int = 0
    asked: dict[str, int] = attrs.Factory(dict)  # account -> size asked this round
    # Accounts that gave less than they were asked (their balance could not pay
    # more, or the position was gone): the next round asks the others.
    exhausted: set[str] = attrs.Factory(set)


class AdlCoordinator(Actor):
    policy: Policy = DEFAULT_POLICY

    def __init__(self, markets: Mapping[str, MarketSpec]) -> None:
        super().__init__(ADL)
        self.markets = dict(markets)
        self.marks = {m: spec.mark_price for m, spec in markets.items()}
        self.queue: deque[DeleverageRequested] = deque()
        self.current: _Request | None = None
        self._next_id = 0

    def on_MarkPriceUpdated(self, msg: MarkPriceUpdated) -> None:
        self.marks[msg.market] = msg.price

    def on_DeleverageRequested(self, msg: DeleverageRequested) -> None:
        self.queue.append(msg)
        if self.current is None:
            self._next()

    def _next(self) -> None:
        self.current = None
        if not self.queue:
            return
        request = self.queue.popleft()
        self._next_id += 1
        self.current = _Request(self._next_id, request, abs(request.size))
        self._ask()

    def _ask(self) -> None:
        cur = self.current
        assert cur is not None
        cur.rounds += 1
        # Opposing positions: the other side from the fund's lot.
        # Clearing ranks from its index at this coordinator's marks and ranking: the highest
        # first, as many as cover what is left (and enough for the ranking event).
        self.send(CLEARING, AdlCandidatesRequested(
            cur.adl_id, cur.request.market, -sign(cur.request.size), tuple(sorted(self.marks.items())),
            self.policy.adl_ranking, cur.remaining, frozenset(cur.exhausted), RANKING_SHOWN))

    def on_AdlCandidates(self, msg: AdlCandidates) -> None:
        cur = self.current
        if cur is None or msg.adl_id != cur.adl_id:
            return
        req = cur.request
        if msg.ranked:  # clearing ranked them (from its index, at these marks), and left out the exhausted
            ranked = [c for c in msg.candidates if c.account not in cur.exhausted]
            total = msg.total
        else:
            ranked = sorted(
                (c for c in msg.candidates if c.account not in cur.exhausted),
                key=lambda c: (-adl_rank(c, msg.market, self.marks, self.policy.adl_ranking, self.markets),
                               c.account),
            )
            total = len(ranked)
        # A long ranking names its first RANKING_SHOWN and says how many there were.
        more = {"candidates": total} if total > RANKING_SHOWN else {}
        self.emit(
            Event.ADL_RANKING, market=msg.market, lot_id=req.lot_id, remaining=fmt_size(cur.remaining),
            ranking=[c.account for c in ranked[:RANKING_SHOWN]], **more,
        )
        need = cur.remaining
        for c in ranked:
            if not need:
                break
            held = abs(next(p.size for p in c.positions if p.market == msg.market))
            take = min(need, held)
            need -= take
            cur.pending += 1
            cur.asked[c.account] = take
            # The winner's trade closes (part of) its position: the fund's side is the opposite.
            self.send(CLEARING, Deleverage(cur.adl_id, req.lot_id, c.account, msg.market,
                                           sign(req.size) * take, req.price))
        if cur.pending == 0:
            self._abandon()

    def on_Deleveraged(self, msg: Deleveraged) -> None:
        cur = self.current
        if cur is None or msg.adl_id != cur.adl_id:
            return
        cur.remaining -= msg.size
        cur.pending -= 1
        if msg.size < cur.asked.pop(msg.account, 0):
            cur.exhausted.add(msg.account)
        if cur.pending:
            return
        if cur.remaining == 0:
            self._next()
        elif cur.rounds < MAX_ROUNDS:
            self._ask()
        else:
            self._abandon()

    def _abandon(self) -> None:
        cur = self.current
        assert cur is not None
        req = cur.request
        self.emit(Event.ADL_INCOMPLETE, market=req.market, lot_id=req.lot_id, remaining=fmt_size(cur.remaining),
                  price=fmt_price(req.price))
        self.send(FUND, DeleverageAbandoned(req.lot_id, req.market, sign(req.size) * cur.remaining))
        self._next()
