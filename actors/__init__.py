"""The actors of the exchange, one module each.

Subclass any of them to prototype a variant, and pass it to
:func:`sandbox.run_scenario` through ``actors={"insurance_fund": MyFund}``.
What a variant may override is :data:`EXTENSION_POINTS` (each hook's
docstring says its contract; docs/reference/extension-api.md explains them),
plus any message handler ``on_<Message>`` (the protocol is
:mod:`sandbox.messages`). The bug zoo (:mod:`actors.zoo`) uses nothing else.
"""

from ._common import ADL, CLEARING, ENGINE, FUND, FUND_ACCOUNT, MONITOR, ORACLE, book_name, trader_name
from .adl import AdlCoordinator
from .clearing import Account, Clearing
from .insurance_fund import InsuranceFund
from .liquidation_engine import LiquidationEngine
from .margin_monitor import MarginMonitor
from .oracle import Oracle
from .order_book import OrderBook
from .traders import AccountHandle, Trader

# The hooks a variant may override, by class: methods unless named in capitals
# (class attributes). Everything else of an actor is its own business.
EXTENSION_POINTS: dict[str, tuple[str, ...]] = {
    "Oracle": ("rejection",),
    "Clearing": ("LOCKS_WITHDRAWALS", "takeover_size"),
    "MarginMonitor": ("candidates",),
    "LiquidationEngine": ("account_view", "bankruptcy_prices", "order_limits", "slice_sizes", "take_over"),
    "InsuranceFund": ("RESERVES", "reserve", "accepts", "budget"),
}

__all__ = [
    "EXTENSION_POINTS",
    "Account",
    "AccountHandle",
    "AdlCoordinator",
    "Clearing",
    "InsuranceFund",
    "LiquidationEngine",
    "MarginMonitor",
    "Oracle",
    "OrderBook",
    "Trader",
    "ADL",
    "CLEARING",
    "ENGINE",
    "FUND",
    "FUND_ACCOUNT",
    "MONITOR",
    "ORACLE",
    "book_name",
    "trader_name",
]
