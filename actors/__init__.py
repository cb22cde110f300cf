"""The actors of the exchange, one module each.

Subclass any of them to prototype a variant, and pass it to
:func:`sandbox.run_scenario` through ``actors={"insurance_fund": MyFund}``.
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

__all__ = [
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
