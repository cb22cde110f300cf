"""The margin monitor: finds accounts whose equity has fallen to their maintenance margin.

Equity is balance + unrealized PnL at mark, summed over all of an account's
markets (cross margin). An account with positions whose equity <= maintenance
margin is sent to the liquidation engine once; the monitor will not ask again
for it until the engine says that liquidation has ended.

The monitor's view of each account is what clearing last told it
(``AccountUpdated``) and its own copy of the marks; both may be stale.
Accounts are indexed by market so a mark-price tick only looks at accounts
holding that market.
"""

from __future__ import annotations

from typing import Mapping

from sandbox.messages import (
    AccountUpdated,
    LiquidationEnded,
    LiquidationRequested,
    MarkPriceUpdated,
    PositionView,
    Started,
)
from sandbox.money import fmt_money
from sandbox.runtime import Actor
from sandbox.scenario import MarketSpec

from ._common import ENGINE, MONITOR, equity, maintenance_margin

__all__ = ["MarginMonitor"]


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
        self.by_market: dict[str, dict[str, None]] = {m: {} for m in self.markets}
        self.requested: dict[str, None] = {}
        for account, (balance, positions) in accounts.items():
            self._store(account, balance, positions, False)

    def _store(self, account: str, balance: int, positions: tuple[PositionView, ...], frozen: bool) -> None:
        old = self.accounts.get(account)
        if old is not None:
            for p in old[1]:
                self.by_market[p.market].pop(account, None)
        self.accounts[account] = (balance, positions, frozen)
        for p in positions:
            self.by_market[p.market][account] = None

    def margin(self, account: str) -> tuple[int, int]:
        """(equity, maintenance margin) of ``account`` by this monitor's view."""
        balance, positions, _ = self.accounts[account]
        triples = [(p.market, p.size, p.entry_value) for p in positions]
        return equity(balance, triples, self.marks), maintenance_margin(triples, self.marks, self.markets)

    def check(self, account: str) -> None:
        if account in self.requested:
            return
        balance, positions, frozen = self.accounts[account]
        if not positions or frozen:
            return
        eq, mm = self.margin(account)
        if eq <= mm:
            self.requested[account] = None
            self.emit("margin_call", account=account, equity=fmt_money(eq), maintenance_margin=fmt_money(mm))
            marks = tuple((p.market, self.marks[p.market], self.versions[p.market]) for p in positions)
            valid_at = tuple((p.market, self.valid_at[p.market]) for p in positions)
            self.send(ENGINE, LiquidationRequested(account, eq, mm, marks, balance, positions, valid_at))

    def on_Started(self, msg: Started) -> None:
        for account in list(self.accounts):
            self.check(account)

    def on_AccountUpdated(self, msg: AccountUpdated) -> None:
        self._store(msg.account, msg.balance, msg.positions, msg.frozen)
        self.check(msg.account)

    def on_MarkPriceUpdated(self, msg: MarkPriceUpdated) -> None:
        if msg.version <= self.versions[msg.market]:
            return
        self.marks[msg.market] = msg.price
        self.versions[msg.market] = msg.version
        self.valid_at[msg.market] = msg.observed_ms
        for account in list(self.by_market[msg.market]):
            self.check(account)

    def on_LiquidationEnded(self, msg: LiquidationEnded) -> None:
        self.requested.pop(msg.account, None)
        if msg.outcome != "settled":
            # "cancelled" or "restored": the engine judged the account healthy by
            # *its* view. If ours still says otherwise, one of us is behind on a
            # mark price; ask again, so an underwater account is never left
            # alone once the views agree.
            self.check(msg.account)
