"""Exact integer units for every amount, price, size and rate.

Nothing in the accounting is a float. Each quantity is an ``int`` counted in
the smallest unit of its kind:

==========  ===================  =============================================
kind        unit                 why
==========  ===================  =============================================
money       wei (1e-18 ETH)      balances, PnL, fees, margins, the fund
price       gwei per contract    mark, limit, entry and bankruptcy prices
            (1e-9 ETH)
size        1e-9 contract        positions and order sizes
rate        ppm (1e-6)           margin fractions and fee rates
==========  ===================  =============================================

The units are chosen so that ``price * size`` is *exactly* money:
1e-9 ETH/contract x 1e-9 contract = 1e-18 ETH = 1 wei. A notional therefore
never needs a division. The only divisions in the whole exchange are

* rate x notional (margins, fees): :func:`apply_rate_up`, always rounded *up*,
  because a margin requirement or a fee is something the trader owes;
* the cost basis removed when a position is partly reduced
  (:func:`ceil_div` in ``actors.accounting.apply_trade``), rounded so the realized PnL
  credited to the trader is the smaller one; the residue stays in the
  remaining position's cost basis, so nothing is lost;
* bankruptcy and fund-limit prices (``actors.liquidation_engine`` and
  ``actors.accounting``), rounded to the tick in the direction that keeps
  the liquidated account's equity, and the fund's balance, non-negative;
* under a non-default ``[policy]``: a clearance fee and the fund's share of a
  fee (up), funding payments (up for a payer, down for a receiver, the residue
  to the fund), a partial liquidation's slice (up to the lot), and prices that
  carry no money (funding rates toward zero; impact prices, the median mark's
  terms and the mark itself, see ``actors.oracle``).

The accounting rules themselves, written once on these units, are
:mod:`actors.accounting`.

Every rounding of money goes against the trader and in favour of solvency, and
the residue of every rounding stays on somebody's books, so money is conserved
exactly (see ``sandbox._exchange.invariants``; docs/reference/units.md's rounding table lists them all).
"""

from __future__ import annotations

import decimal
import math
from typing import Final

__all__ = [
    "MONEY_DECIMALS",
    "PRICE_DECIMALS",
    "SIZE_DECIMALS",
    "RATE_DECIMALS",
    "RATE_ONE",
    "UnitError",
    "parse_units",
    "format_units",
    "fmt_money",
    "fmt_price",
    "fmt_size",
    "fmt_rate",
    "ceil_div",
    "apply_rate_up",
    "sign",
]

MONEY_DECIMALS: Final = 18
PRICE_DECIMALS: Final = 9
SIZE_DECIMALS: Final = 9
RATE_DECIMALS: Final = 6
RATE_ONE: Final = 10**RATE_DECIMALS
assert PRICE_DECIMALS + SIZE_DECIMALS == MONEY_DECIMALS

# A context with enough precision for any amount a scenario can write, so the
# conversion from text to integer units is exact.
_CTX: Final = decimal.Context(prec=200, traps=[decimal.InvalidOperation])
# Any amount is below 10**60 units; checked on the exponent first, so that a
# value like "1e999999999" is refused at once instead of being expanded.
_MAX_DIGITS: Final = 60


def _show(value: object, limit: int = 40) -> str:
    """``repr(value)`` for an error message: one line, at most ``limit`` characters."""
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) >= 10**limit:
        # str() of a huge int is slow (and refused past 4300 digits): say how big it is instead.
        return f"an integer of {int(abs(value).bit_length() * 0.30103) + 1} digits or so"
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


class UnitError(ValueError):
    """A value cannot be expressed exactly in the requested unit."""


def parse_units(value: object, decimals: int, *, allow_negative: bool = False) -> int:
    """Convert a decimal written as a string, int or float into integer units.

    Strings and ints are exact. A TOML float is taken at its shortest
    round-trip decimal form (``0.1`` means ``"0.1"``); write amounts as strings
    when in doubt. Raises :class:`UnitError` naming the problem.
    """
    if isinstance(value, bool):
        raise UnitError(f"expected a decimal number, got a boolean ({value!r})")
    if isinstance(value, int):
        if abs(value) >= 10**_MAX_DIGITS:
            raise UnitError(f"{_show(value)} is too large")
        d = decimal.Decimal(value)
    elif isinstance(value, float):
        if not math.isfinite(value):
            raise UnitError(f"expected a finite number, got {value!r}")
        d = decimal.Decimal(repr(value))
    elif isinstance(value, str):
        text = value.strip()
        if not text or len(text) > 100:
            raise UnitError(f"expected a decimal number, got {_show(value)}")
        try:
            d = decimal.Decimal(text)
        except decimal.InvalidOperation:
            raise UnitError(f"expected a decimal number, got {_show(value)}") from None
        if not d.is_finite():
            raise UnitError(f"expected a finite number, got {_show(value)}")
    else:
        raise UnitError(f"expected a decimal number, got {type(value).__name__}")
    if d and d.adjusted() + decimals >= _MAX_DIGITS:
        raise UnitError(f"{_show(value)} is too large")
    exponent = d.as_tuple().exponent
    assert isinstance(exponent, int)
    if exponent < -decimals and d != d.quantize(decimal.Decimal(1).scaleb(-decimals), context=_CTX):
        raise UnitError(f"{_show(value)} has more than {decimals} decimal places")
    units = int(d.scaleb(decimals, context=_CTX))
    if units < 0 and not allow_negative:
        raise UnitError(f"must not be negative, got {_show(value)}")
    return units


def format_units(units: int, decimals: int) -> str:
    """The exact decimal string of an integer amount: ``format_units(250, 3) == "0.25"``."""
    negative = units < 0
    whole, frac = divmod(-units if negative else units, 10**decimals)
    frac = str(frac).rjust(decimals, "0").rstrip("0") if decimals else ""
    text = f"{whole}.{frac}" if frac else str(whole)
    return f"-{text}" if negative else text


def fmt_money(units: int) -> str:
    return format_units(units, MONEY_DECIMALS)


def fmt_price(units: int) -> str:
    return format_units(units, PRICE_DECIMALS)


def fmt_size(units: int) -> str:
    return format_units(units, SIZE_DECIMALS)


def fmt_rate(units: int) -> str:
    return format_units(units, RATE_DECIMALS)


def ceil_div(a: int, b: int) -> int:
    """``ceil(a / b)`` for integers of any sign (``b != 0``), without floats."""
    return -((-a) // b)


def apply_rate_up(amount: int, rate_ppm: int) -> int:
    """``amount x rate``, rounded up: what a trader owes is never rounded away."""
    return ceil_div(amount * rate_ppm, RATE_ONE)


def sign(x: int) -> int:
    return (x > 0) - (x < 0)
