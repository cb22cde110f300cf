"""Actor names and the margin arithmetic several actors share.

Each actor computes with its *own* view (its own copy of mark prices and of
whatever positions it was told about); these functions only do the
arithmetic, exactly, in the integer units of :mod:`sandbox.money`.
"""

from __future__ import annotations

from typing import Final, Iterable, Mapping

import attrs

from sandbox.money import apply_rate_up, ceil_div, sign
from sandbox.scenario import FUND_ACCOUNT, MarketSpec

__all__ = [
    "ORACLE",
    "CLEARING",
    "MONITOR",
    "ENGINE",
    "FUND",
    "ADL",
    "FUND_ACCOUNT",
    "book_name",
    "trader_name",
    "Position",
    "apply_trade",
    "unrealized_pnl",
    "equity",
    "maintenance_margin",
    "round_price_up",
    "round_price_down",
]

ORACLE: Final = "oracle"
CLEARING: Final = "clearing"
MONITOR: Final = "margin_monitor"
ENGINE: Final = "liquidation_engine"
FUND: Final = "insurance_fund"
ADL: Final = "adl"


def book_name(market: str) -> str:
    return f"book:{market}"


def trader_name(account: str) -> str:
    return f"trader:{account}"


@attrs.define(slots=True)
class Position:
    """A signed size and its signed cost basis (size x average entry price), in wei."""

    size: int = 0
    entry_value: int = 0


def apply_trade(position: Position, size: int, price: int) -> int:
    """Apply a signed trade of ``size`` at ``price``; return the realized PnL.

    Opening or increasing adds ``size x price`` to the cost basis. Reducing
    removes the reduced share of the basis, ``ceil(entry_value x q / size)``
    for a reduction of ``q`` (same sign as the position): rounding the removed
    basis *up* makes the realized PnL credited to the trader the smaller
    value, and the residue stays in the remaining basis, so
    ``realized + change in unrealized`` is exactly ``q x (price - mark)``:
    nothing is created or lost. A trade larger than the position closes it and
    opens the rest on the other side at ``price``.
    """
    s = position.size
    if s == 0 or (s > 0) == (size > 0):
        position.size = s + size
        position.entry_value += size * price
        return 0
    q = -size if abs(size) <= abs(s) else s  # the part that reduces, signed like s
    removed = position.entry_value if q == s else ceil_div(position.entry_value * q, s)
    realized = q * price - removed
    position.size = s - q
    position.entry_value -= removed
    rest = size + q  # what flips the position to the other side
    if rest:
        position.size = rest
        position.entry_value = rest * price
    return realized


def unrealized_pnl(size: int, entry_value: int, mark: int) -> int:
    return size * mark - entry_value


def equity(balance: int, positions: Iterable[tuple[str, int, int]], marks: Mapping[str, int]) -> int:
    """Cross-margin equity: balance plus unrealized PnL of every (market, size, entry_value)."""
    return balance + sum(size * marks[market] - entry for market, size, entry in positions)


def maintenance_margin(
    positions: Iterable[tuple[str, int, int]], marks: Mapping[str, int], markets: Mapping[str, MarketSpec]
) -> int:
    """Sum over markets of |size| x mark x maintenance rate, each rounded up."""
    return sum(
        apply_rate_up(abs(size) * marks[market], markets[market].maintenance_margin)
        for market, size, _ in positions
    )


def round_price_up(price: int, tick: int) -> int:
    return ceil_div(price, tick) * tick


def round_price_down(price: int, tick: int) -> int:
    return (price // tick) * tick


def side_of(size: int) -> str:
    return "buy" if size > 0 else "sell"


def signed(side: str, size: int) -> int:
    return size if side == "buy" else -size


__all__ += ["side_of", "signed", "sign"]
