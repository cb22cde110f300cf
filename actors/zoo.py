"""The bug zoo: deliberately wrong variants of the actors, each a small subclass.

Each is a mistake a real exchange could ship, and each is invisible in the
happy path: it takes one particular interleaving of messages to break an
invariant. ``sandbox explore <scenario> --variant <name>`` finds that
interleaving, shrinks it and writes a replay; ``sandbox variants`` lists them
with the bundled scenario that exposes each.
"""

from __future__ import annotations

from typing import Mapping

import attrs

from sandbox.messages import (
    AccountFrozen,
    FundBalanceReported,
    FundBalanceRequested,
    LiquidationEnded,
    PositionTakenOver,
    PositionView,
    TakeOverPosition,
)

from ._common import CLEARING, ENGINE, FUND
from .clearing import Account, Clearing
from .insurance_fund import InsuranceFund
from .liquidation_engine import LiquidationEngine, _Liquidation
from .margin_monitor import MarginMonitor

__all__ = ["Variant", "VARIANTS"]


# --- 1. check-then-act on the fund ------------------------------------------------


class CheckThenActEngine(LiquidationEngine):
    """Asks the fund's balance before each takeover, and hands the answer on as a budget.

    The answer is stale by the time the fund uses it: two bankruptcies in
    flight together both see the full balance, and both spend it.
    """

    def __init__(self, markets: Mapping[str, object]) -> None:
        super().__init__(markets)  # type: ignore[arg-type]
        self.pending: dict[tuple[int, str], tuple[int, int]] = {}

    def take_over(self, liq: _Liquidation, market: str, size: int, price: int) -> None:
        if size == 0:
            return super().take_over(liq, market, size, price)
        self.pending[(liq.liq_id, market)] = (size, price)
        self.send(FUND, FundBalanceRequested(liq.liq_id, liq.account, market))

    def on_FundBalanceReported(self, msg: FundBalanceReported) -> None:
        size, price = self.pending.pop((msg.liq_id, msg.market))
        self.send(CLEARING, TakeOverPosition(msg.liq_id, msg.account, msg.market, size, price, msg.balance))


class CheckThenActFund(InsuranceFund):
    """Answers balance questions, and trusts the budget it is handed instead of reserving."""

    RESERVES = False

    def on_FundBalanceRequested(self, msg: FundBalanceRequested) -> None:
        self.send(ENGINE, FundBalanceReported(msg.liq_id, msg.account, msg.market, self.balance))

    def budget(self, msg: PositionTakenOver) -> int:
        return self.balance if msg.budget is None else msg.budget


# --- 2. the engine trusts the monitor's view ---------------------------------------------


class StaleViewEngine(LiquidationEngine):
    """Liquidates the positions the margin monitor saw, not clearing's final snapshot.

    The monitor's view lags clearing by the ``AccountUpdated`` messages in
    flight: when a fill has just changed the position, the engine closes a
    size the account no longer has, flipping it to the other side.
    """

    def account_view(self, liq: _Liquidation, msg: AccountFrozen) -> tuple[int, tuple[PositionView, ...]]:
        return liq.request.balance, liq.request.positions


# --- 3. the takeover moves "whatever is left" ------------------------------------------


class WhateverIsLeftClearing(Clearing):
    """Moves the account's whole remaining position to the fund at takeover.

    If a fill of the liquidation order is still on its way to clearing, the
    fund gets that part too, and when the fill arrives it closes it a second
    time: the account is left with a position on the other side.
    """

    def takeover_size(self, acct: Account, msg: TakeOverPosition) -> int:
        position = acct.positions.get(msg.market)
        return position.size if position is not None else 0


# --- 4. withdrawals are not locked during a liquidation ---------------------------------


class UnlockedWithdrawalsClearing(Clearing):
    """Checks a withdrawal against margin but forgets the liquidation lock.

    The engine computed bankruptcy prices from a snapshot that still had the
    money; a withdrawal that slips in afterwards leaves the settled account
    below zero.
    """

    LOCKS_WITHDRAWALS = False


@attrs.frozen
class Variant:
    name: str
    scenario: str
    actors: Mapping[str, type]
    description: str


VARIANTS: Mapping[str, Variant] = {
    v.name: v
    for v in (
        Variant(
            "fund_check_then_act", "race_two_bankruptcies",
            {"liquidation_engine": CheckThenActEngine, "insurance_fund": CheckThenActFund},
            "the engine asks the fund's balance, then acts on the answer later: two bankruptcies in "
            "flight together overdraw the fund",
        ),
        Variant(
            "engine_trusts_monitor", "race_stale_view",
            {"liquidation_engine": StaleViewEngine},
            "the engine liquidates the position the margin monitor saw, which a fill has already "
            "changed: the account is flipped to the other side and its liquidation never settles",
        ),
        Variant(
            "takeover_whatever_left", "race_partial_fill",
            {"clearing": WhateverIsLeftClearing},
            "the fund takes over whatever is left of the position; a liquidation fill that arrives "
            "after the takeover closes its part a second time",
        ),
        Variant(
            "withdraw_during_liquidation", "race_withdrawal",
            {"clearing": UnlockedWithdrawalsClearing},
            "withdrawals are checked against margin but not against the liquidation lock: money "
            "leaves after the bankruptcy price was computed and the account settles below zero",
        ),
    )
}


# --- 5. a poll that reads a copy: a livelock -------------------------------------------
# Its own section (and its own VARIANTS entry below) so that it stays apart from
# the variants above.


@attrs.frozen
class AwaitUnfrozen:
    """monitor -> itself, a timer: look again whether clearing has unfrozen ``account``."""

    account: str
    view: tuple[int, tuple[PositionView, ...], bool]  # the monitor's view when it started waiting


class PollingStaleCopyMonitor(MarginMonitor):
    """After a liquidation settles, waits for clearing's word that the account is unfrozen, by polling a copy.

    It expects clearing's last ``AccountUpdated`` of a liquidation to arrive
    before the engine's ``LiquidationEnded``: true in FIFO order (clearing
    sends it before it tells the engine), but the two travel different
    links. When the end overtakes the update, the monitor polls every
    ``POLL_MS`` virtual ms, and each poll reads the copy of its view that it
    took when it started waiting, which never changes: it polls forever, and
    the exchange never goes quiet (a livelock of timers).
    """

    POLL_MS = 100

    def on_LiquidationEnded(self, msg: LiquidationEnded) -> None:
        super().on_LiquidationEnded(msg)
        view = self.accounts.get(msg.account)
        if msg.outcome == "settled" and view is not None and view[2]:
            self.send_later(self.POLL_MS, AwaitUnfrozen(msg.account, view))

    def on_AwaitUnfrozen(self, msg: AwaitUnfrozen) -> None:
        if msg.view[2]:  # the bug: the copy in the message, not self.accounts[msg.account]
            self.send_later(self.POLL_MS, msg)


VARIANTS = {
    **VARIANTS,
    "monitor_polls_stale_copy": Variant(
        "monitor_polls_stale_copy", "race_partial_fill",
        {"margin_monitor": PollingStaleCopyMonitor},
        "after a liquidation settles, the monitor polls for the unfreeze on a copy of its view: when the "
        "engine's word overtakes clearing's last update, it polls forever (a livelock)",
    ),
}
