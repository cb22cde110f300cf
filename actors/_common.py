"""Actor names and the margin arithmetic several actors share.

Each actor computes with its *own* view (its own copy of mark prices and of
whatever positions it was told about); these functions only do the
arithmetic, exactly, in the integer units of :mod:`sandbox._core.money`.
"""

from __future__ import annotations

from typing import Final, Iterable, Mapping

import attrs

from sandbox._core.money import RATE_ONE, apply_rate_up, ceil_div, sign
from sandbox._core.specs import FUND_ACCOUNT, MarketSpec

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
    "margin_units",
    "position_margin",
    "top_maintenance_rate",
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


def margin_units(spec: MarketSpec, notional: int, initial: bool = False) -> int:
    """A position's margin, exactly, in wei x ppm x ppm: THE rule of tiered margin.

    ``notional`` is the position's mark notional ``|size| x mark``. With no
    tier table, ``notional x rate x risk factor``. With tiers (NFEX, Binance),
    each tier's rate applies to the part of the notional between the previous
    tier's bound and its own (the last tier's rate to everything above), so
    the margin grows continuously with size and no position's margin jumps at
    a bound; the collection's risk factor scales the sum. ``initial`` picks
    the initial rates instead of the maintenance ones.
    """
    if not spec.tiers:
        return notional * (spec.initial_margin if initial else spec.maintenance_margin) * spec.risk_factor
    total, below = 0, 0
    for tier in spec.tiers:
        rate = tier.initial_margin if initial else tier.maintenance_margin
        top = notional if tier.notional is None or tier is spec.tiers[-1] else min(notional, tier.notional)
        if top > below:
            total += (top - below) * rate
        below = max(below, top)
        if below >= notional:
            break
    return total * spec.risk_factor


def position_margin(spec: MarketSpec, notional: int, initial: bool = False) -> int:
    """A position's maintenance (or initial) margin in wei, rounded up (against the trader)."""
    if not spec.tiered:  # one rate: exactly the sandbox's historical ceil(notional x rate)
        return apply_rate_up(notional, spec.initial_margin if initial else spec.maintenance_margin)
    return ceil_div(margin_units(spec, notional, initial), RATE_ONE * RATE_ONE)


def top_maintenance_rate(spec: MarketSpec) -> int:
    """The highest maintenance rate any part of a position pays, risk factor included (ppm, rounded up).

    Every position's maintenance margin is at most ``notional x`` this rate:
    the margin monitor's trigger index uses it as a safe bound.
    """
    rates = [t.maintenance_margin for t in spec.tiers] or [spec.maintenance_margin]
    return ceil_div(max(rates) * spec.risk_factor, RATE_ONE)


def maintenance_margin(
    positions: Iterable[tuple[str, int, int]], marks: Mapping[str, int], markets: Mapping[str, MarketSpec]
) -> int:
    """Sum over markets of each position's maintenance margin (:func:`position_margin`), each rounded up."""
    return sum(
        position_margin(markets[market], abs(size) * marks[market])
        for market, size, _ in positions
    )


def round_price_up(price: int, tick: int) -> int:
    return ceil_div(price, tick) * tick


def round_price_down(price: int, tick: int) -> int:
    return (price // tick) * tick


__all__ += ["sign"]
