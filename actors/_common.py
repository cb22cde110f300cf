"""Actor names, and the margin arithmetic several actors share.

The arithmetic itself (positions, equity, margins, unrealized PnL, fees, the
fund's lot arithmetic, price rounding) lives in :mod:`actors.accounting`; this
module re-exports what it used to define, so existing imports keep working.
Each actor computes with its *own* view (its own copy of mark prices and of
whatever positions it was told about); those functions only do the
arithmetic, exactly, in the integer units of :mod:`sandbox._core.money`.
"""

from __future__ import annotations

from typing import Final

from sandbox._core.money import sign
from sandbox._core.specs import FUND_ACCOUNT

from .accounting import (
    Position,
    apply_trade,
    equity,
    maintenance_margin,
    margin_units,
    position_margin,
    round_price_down,
    round_price_up,
    top_maintenance_rate,
    unrealized_pnl,
)

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


__all__ += ["sign"]
