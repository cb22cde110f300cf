"""The money rules, once: pure functions on integers of the documented units.

Every figure of the exchange's accounting is computed here and nowhere else:
the actors (clearing, the insurance fund, the liquidation engine), the
invariants (:mod:`sandbox._exchange.invariants`), the log checker
(:mod:`sandbox._tools.checklog`), the report and the summary all call these
functions, so a rule cannot drift between the exchange and the programs that
check it. (The one deliberate exception is
``sandbox.testing.summary_conserves_money``, an independent re-check in
Decimal arithmetic.)

Units (docs/reference/units.md): money in wei, prices in gwei per contract,
sizes in 1e-9 contract, rates in ppm, so ``size x price`` is exactly wei.
Every function takes and returns ``int``; nothing here is a float, and nothing
here holds state or knows an actor. The only imports are the two rounding
primitives of :mod:`sandbox._core.money` (``ceil_div``, ``apply_rate_up``), so the
module can move with the core as it is.

Why a module of its own and not :mod:`actors._common`: ``_common`` also holds
actor names and the ``Position`` record; this module is only arithmetic, and
``_common`` re-exports what it used to define (``equity``,
``unrealized_pnl``) so existing imports keep working.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Iterable, Mapping

import attrs

from sandbox._core.money import RATE_ONE, apply_rate_up, ceil_div

if TYPE_CHECKING:  # only for annotations: a market's rates and tiers, read as integers
    from sandbox._core.specs import MarketSpec

__all__ = [
    "RATE_ONE",
    "ceil_div",
    "apply_rate_up",
    "Position",
    "apply_trade",
    "margin_units",
    "position_margin",
    "maintenance_margin",
    "top_maintenance_rate",
    "notional",
    "unrealized_pnl",
    "equity",
    "trading_fee",
    "fee_share",
    "clearance_fee",
    "liquidation_surplus",
    "funding_owed",
    "funding_paid",
    "funding_received",
    "funding_pro_rata",
    "lot_loss_at",
    "lot_reserve",
    "socialized_share",
    "socialize_shortfall",
    "revenue_transfer",
    "adl_price_at_previous_mark",
    "add_open_interest",
    "round_price_up",
    "round_price_down",
    "fund_limit_price",
    "band_limit_price",
]


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


def notional(size: int, price: int) -> int:
    """``|size| x price``, in wei: exact, never divided."""
    return abs(size) * price


def unrealized_pnl(size: int, entry_value: int, mark: int) -> int:
    """A position's (or a lot's) PnL at ``mark``: ``size x mark - cost basis``."""
    return size * mark - entry_value


def equity(balance: int, positions: Iterable[tuple[str, int, int]], marks: Mapping[str, int]) -> int:
    """Cross-margin equity: balance plus unrealized PnL of every (market, size, entry_value)."""
    return balance + sum(unrealized_pnl(size, entry, marks[market]) for market, size, entry in positions)


def trading_fee(size: int, price: int, rate: int) -> int:
    """The fee of a fill: ``ceil(|size| x price x rate)``, what the trader owes, rounded up."""
    return apply_rate_up(notional(size, price), rate)


def fee_share(fee: int, rate: int) -> int:
    """The insurance fund's share of a fee (``fee_to_fund``): rounded up, in favour of the fund."""
    return apply_rate_up(fee, rate) if fee and rate else 0


def clearance_fee(balance: int, liquidated_notional: int, rate: int) -> int:
    """A liquidation's clearance fee: ``ceil(liquidated notional x rate)``, never more than what is left."""
    return min(max(balance, 0), apply_rate_up(liquidated_notional, rate))


def liquidation_surplus(residual: int) -> int:
    """What a settled liquidation sends the fund without a clearance fee: all that is left (NFEX)."""
    return max(residual, 0)


def funding_owed(size: int, mark: int, rate: int) -> int:
    """What a position owes at a funding, exactly, in wei x ppm: > 0 it pays, < 0 it receives."""
    return size * mark * rate


def funding_paid(owed: int) -> int:
    """What a payer pays (``owed > 0``): rounded up."""
    return ceil_div(owed, RATE_ONE)


def funding_received(owed: int) -> int:
    """What a receiver is owed (``owed < 0``): rounded down (the residue goes to the fund)."""
    return (-owed) // RATE_ONE


def funding_pro_rata(amount: int, pool: int, owed_total: int) -> int:
    """A receiver's payment out of ``pool`` when it falls short of ``owed_total``: each rounded down."""
    return amount if pool >= owed_total else amount * pool // owed_total


def lot_loss_at(basis: int, size: int, price: int) -> int:
    """What closing a lot of ``size`` with cost ``basis`` at ``price`` loses (negative: a gain)."""
    return basis - size * price


def lot_reserve(basis: int, size: int, *prices: int) -> int:
    """What a lot may still lose: ``max(0, basis - size x p)`` over the prices it may still close at."""
    return max(0, *(lot_loss_at(basis, size, p) for p in prices))


def socialized_share(amount: int, size: int, total: int) -> int:
    """One position's share of a socialized loss (Drift v2): ``amount x |size| / total size``, rounded up.

    Against the trader, in favour of solvency: the fund collects the whole
    amount and at most one wei more per account.
    """
    return ceil_div(amount * size, total)


def socialize_shortfall(floor: int, available: int, charging: int) -> int:
    """What a socialized loss asks for (Drift v2): what leaves the fund's available assets short of its floor.

    ``available`` is the fund's available balance with the lot held at the
    mark, ``charging`` what charges already in flight for its lots ask for;
    nothing to ask when it is 0 or less.
    """
    return floor - available - charging


def revenue_transfer(transfer: int, pool: int, received: int) -> int:
    """One transfer of the revenue pool into the fund (Drift v2): ``transfer``, at most what the pool has left."""
    return min(transfer, pool - received)


def adl_price_at_previous_mark(size: int, previous: int, by_budget: int, bankruptcy: int) -> int:
    """ADL's price for a lot of ``size`` at the fund's previous mark (Hyperliquid's ``adl_price``).

    The previous mark, as far as the fund's budget pays (``by_budget``, the
    limit at which closing the lot loses the whole budget): moved towards the
    bankruptcy price, never past it. A long lot is sold (a higher price loses
    less), a short one bought.
    """
    if size > 0:
        return max(previous, min(by_budget, bankruptcy))
    return min(previous, max(by_budget, bankruptcy))


def add_open_interest(oi: list[int], size: int, times: int = 1) -> None:
    """Count a signed position ``times`` times (-1: take it out) in ``oi = [long, short]``, in place."""
    oi[0 if size > 0 else 1] += times * abs(size)


def round_price_up(price: int, tick: int) -> int:
    return ceil_div(price, tick) * tick


def round_price_down(price: int, tick: int) -> int:
    return (price // tick) * tick


def fund_limit_price(size: int, basis: int, budget: int, tick: int) -> int:
    """The limit at which closing ``size`` with cost ``basis`` loses at most ``budget``.

    A sale (``size > 0``) loses ``basis - size x limit``: the limit is rounded
    up to the tick (a smaller loss), and never below one tick. A purchase loses
    ``basis + qty x limit`` (``basis < 0``): rounded down.
    """
    if size > 0:
        return max(round_price_up(ceil_div(basis - budget, size), tick), tick)
    qty = -size
    return round_price_down((budget - basis) // qty, tick)


def band_limit_price(size: int, mark: int, band_ppm: int, tick: int) -> int:
    """The furthest price from ``mark`` the fund's order may trade at: ``mark x (1 -/+ band)``, inside the band."""
    if size > 0:
        return max(round_price_up(ceil_div(mark * (RATE_ONE - band_ppm), RATE_ONE), tick), tick)
    return round_price_down(mark * (RATE_ONE + band_ppm) // RATE_ONE, tick)
