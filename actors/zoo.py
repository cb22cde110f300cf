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

from sandbox._core.money import ceil_div

from ._common import CLEARING, ENGINE, FUND, equity, round_price_down, round_price_up
from .clearing import Account, Clearing
from .insurance_fund import InsuranceFund, Lot
from .liquidation_engine import LiquidationEngine, Liquidation
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

    def take_over(self, liq: Liquidation, market: str, size: int, price: int) -> None:
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

    def budget(self, lot: Lot) -> int:
        return self.balance if lot.hint is None else lot.hint


# --- 2. the engine trusts the monitor's view ---------------------------------------------


class StaleViewEngine(LiquidationEngine):
    """Liquidates the positions the margin monitor saw, not clearing's final snapshot.

    The monitor's view lags clearing by the ``AccountUpdated`` messages in
    flight: when a fill has just changed the position, the engine closes a
    size the account no longer has, flipping it to the other side.
    """

    def account_view(self, liq: Liquidation, msg: AccountFrozen) -> tuple[int, tuple[PositionView, ...]]:
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


# --- 5. the deficit split over every position, clamped at one tick -----------------------


class ClampedSplitEngine(LiquidationEngine):
    """Splits a negative equity over *every* position by mark notional, and clamps prices at one tick.

    The sandbox's own rule until the deficit was given to the losing legs: a
    flat or winning leg gets a bankruptcy price on the wrong side of its mark,
    and when the crash is larger than a short leg's notional its price comes
    out below zero, is clamped to one tick, and the account settles below zero.
    """

    def bankruptcy_prices(self, balance: int, positions: tuple[PositionView, ...]) -> dict[str, int]:
        triples = [(p.market, p.size, p.entry_value) for p in positions]
        q = equity(balance, triples, self.marks)
        weights = [abs(p.size) * self.marks[p.market] for p in positions]
        shares = [q * w // sum(weights) for w in weights]
        largest = max(range(len(weights)), key=lambda i: (weights[i], -i))
        shares[largest] += q - sum(shares)
        prices = {}
        for p, share in zip(positions, shares):
            tick = self.markets[p.market].tick_size
            exact = p.size * self.marks[p.market] - share
            price = (round_price_up(ceil_div(exact, p.size), tick) if p.size > 0
                     else round_price_down(exact // p.size, tick))
            prices[p.market] = max(price, tick)
        return prices


# --- 6. a reservation that grabs everything and keeps it -------------------------------------


class GrabEverythingFund(InsuranceFund):
    """Reserves everything available for a short lot (a long's whole notional), and never lowers it.

    The sandbox's own rule until reservations followed the lot: a reservation
    made when the lot arrived stays until the lot is closed, whatever its order
    did. A second bankruptcy that arrives while the first lot is open finds
    nothing available and goes to ADL, although the fund holds plenty.
    """

    def __init__(self, markets: Mapping[str, object], balance: int) -> None:
        super().__init__(markets, balance)  # type: ignore[arg-type]
        self.grabbed: dict[int, int] = {}

    def reserve(self, lot: Lot) -> int:
        grabbed = self.grabbed.get(lot.lot_id)
        return super().reserve(lot) if grabbed is None else grabbed

    def on_PositionTakenOver(self, msg: PositionTakenOver) -> None:
        free = max(self.available, 0)
        super().on_PositionTakenOver(msg)
        lot = self.lots.get(self._next_lot)
        if lot is not None and lot.state != "adl":
            self.grabbed[lot.lot_id] = free if msg.size < 0 else min(free, abs(msg.size) * msg.price)


@attrs.frozen
class Variant:
    name: str
    scenario: str
    actors: Mapping[str, type]
    description: str
    # The event kind explore looks for (``--find``) when the variant breaks no
    # invariant but a promise: None means an invariant violation.
    find: str | None = None


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
        Variant(
            "clamped_bankruptcy_split", "cross_margin_crash",
            {"liquidation_engine": ClampedSplitEngine},
            "a negative equity is split over every position by notional and clamped at one tick: the "
            "unmoved short gets a price below zero, and the account settles below zero",
        ),
        Variant(
            "grab_everything_reservation", "race_grabbed_reservation",
            {"insurance_fund": GrabEverythingFund},
            "the fund reserves everything for the first lot and never gives it back: a second "
            "bankruptcy goes to ADL although the fund holds a million",
            find="adl",
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
