"""The specs a scenario is made of: frozen, validated values the actors read.

The loader (:mod:`sandbox._scenario`) makes them from TOML and reports a bad
file as one line naming its key; these classes check their own fields again
(attrs validators), so a spec built in code, or changed with
``attrs.evolve``, cannot carry a value outside its domain either: the error
names the field (``attrs.evolve(policy, liquidation="partal")`` raises
``ValueError: 'liquidation' must be in ('full', 'partial') (got 'partal')``).
Units are those of :mod:`sandbox._core.money`.
"""

from __future__ import annotations

import hashlib
from typing import Any, Callable, Final

import attrs

from sandbox._core.money import RATE_ONE
from sandbox._core.delivery import Faults

__all__ = [
    "FUND_ACCOUNT",
    "TIME_DECIMALS",
    "EVENT_TYPES",
    "DataFile",
    "Tier",
    "MarketSpec",
    "SHARED_FUND",
    "FundSpec",
    "PositionSpec",
    "AccountSpec",
    "OrderSpec",
    "EventSpec",
    "LIQUIDATION_POLICIES",
    "ADL_RANKINGS",
    "FUND_INVENTORY_POLICIES",
    "BANKRUPTCY_SPLITS",
    "MARK_PRICE_POLICIES",
    "STALE_POLICIES",
    "LIQUIDATION_PRICES",
    "ADL_PRICES",
    "isolated_id",
    "Policy",
    "DEFAULT_POLICY",
    "Scenario",
]

# --- validators: every field with a domain checks it, and the error names the field ---


def _is_int(inst: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
    if not isinstance(value, int) or isinstance(value, bool):
        raise TypeError(f"{attribute.name!r} must be an integer (units of sandbox._core.money), got {value!r}")


def _units(default: Any = attrs.NOTHING, *, low: int | None = 0, high: int | None = None,
           optional: bool = False) -> Any:
    """An integer field of documented units, in [low, high] (None: unbounded)."""
    checks: list[Any] = [_is_int]
    if low is not None:
        checks.append(attrs.validators.ge(low))
    if high is not None:
        checks.append(attrs.validators.le(high))
    validator: Any = attrs.validators.and_(*checks)
    if optional:
        validator = attrs.validators.optional(validator)
    return attrs.field(default=default, validator=validator)


def _choice(choices: tuple[str, ...], default: Any = attrs.NOTHING) -> Any:
    def check(inst: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
        if value not in choices:
            raise ValueError(f"{attribute.name!r} must be one of {', '.join(map(repr, choices))}, got {value!r}")

    return attrs.field(default=default, validator=check)


def _flag(default: bool) -> Any:
    def check(inst: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
        if not isinstance(value, bool):
            raise TypeError(f"{attribute.name!r} must be true or false, got {value!r}")

    return attrs.field(default=default, validator=check)


_PPM = 1_000_000  # RATE_ONE, a rate of 1
_DAY = 86_400_000


# The reserved account name of the insurance fund in fills and events.
FUND_ACCOUNT: Final = "insurance_fund"
TIME_DECIMALS: Final = 3  # virtual time is kept in integer milliseconds
# The types of a scripted event (EventSpec.type).
EVENT_TYPES: Final = ("mark_price", "oracle_price", "index_price", "order", "cancel", "deposit", "withdraw")



@attrs.frozen
class DataFile:
    """A file a scenario reads besides its TOML (a stochastic ``csv``): its name as written, and its text."""

    name: str
    text: str = attrs.field(repr=False)
    path: str = ""  # where it was read from; "" when it came embedded in a replay

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.text.encode("utf-8")).hexdigest()


@attrs.frozen
class Tier:
    """One row of a market's tier table (NFEX, Binance, BitMEX risk limits).

    The tier's rates apply to the part of a position's mark notional between
    the previous tier's bound and this one's (``notional``, wei; None on the
    last tier: no bound). ``max_leverage`` is the leverage the tier allows,
    ``1 / initial_margin`` at most.
    """

    notional: int | None = _units(low=0, optional=True)
    maintenance_margin: int = _units(low=1, high=_PPM)  # ppm
    initial_margin: int = _units(low=1, high=_PPM)  # ppm
    max_leverage: int = _units(low=1)


@attrs.frozen
class MarketSpec:
    symbol: str
    mark_price: int = _units(low=1)
    initial_margin: int = _units(low=1, high=_PPM)  # ppm of notional
    maintenance_margin: int = _units(low=1, high=_PPM)  # ppm of notional
    tick_size: int = _units(1, low=1)  # price units
    lot_size: int = _units(1, low=1)  # size units
    maker_fee: int = _units(0, high=_PPM // 10)  # ppm of notional
    taker_fee: int = _units(0, high=_PPM // 10)  # ppm of notional
    # The index (spot) price at time 0: funding and the median mark need one.
    index_price: int | None = _units(None, low=1, optional=True)
    # NFEX's tiered margin: the tier table by position notional (empty: one
    # rate, maintenance_margin and initial_margin, for any size), and the
    # collection's risk factor that scales every rate (ppm; 1_000_000: x1).
    tiers: tuple[Tier, ...] = ()
    risk_factor: int = _units(1_000_000, low=1)

    @property
    def tiered(self) -> bool:
        """Whether this market's margin is anything but one flat rate (the trigger index then widens)."""
        return bool(self.tiers) or self.risk_factor != RATE_ONE


# The insurance fund of the markets no [[funds]] entry names (and of every
# market when there is none): NFEX's single fund.
SHARED_FUND: Final = "shared"


@attrs.frozen
class FundSpec:
    """One insurance fund of a ``[[funds]]`` table: its name, opening balance and markets (Binance)."""

    name: str
    balance: int = _units()
    markets: tuple[str, ...]


@attrs.frozen
class PositionSpec:
    market: str
    size: int = _units(low=None)
    entry_price: int = _units(low=1)


@attrs.frozen
class AccountSpec:
    id: str
    deposit: int = _units()
    positions: tuple[PositionSpec, ...] = ()
    # An isolated-margin bucket (an account's ``isolated`` table): the owner's
    # id and the one market it holds; None for an ordinary (cross) account.
    isolated_of: tuple[str, str] | None = None


def isolated_id(owner: str, market: str) -> str:
    """The account id of ``owner``'s isolated-margin bucket in ``market``: THE naming rule."""
    return f"{owner}@{market}"


@attrs.frozen
class OrderSpec:
    """A resting order placed at time 0, or the payload of an "order" event."""

    account: str
    market: str
    side: str = _choice(("buy", "sell"))
    price: int = _units(low=1)
    size: int = _units(low=1)
    tif: str = _choice(("gtc", "ioc"), "gtc")
    id: str | None = None


@attrs.frozen
class EventSpec:
    at_ms: int = _units()
    type: str = _choice(EVENT_TYPES)  # mark_price | oracle_price | index_price | order | cancel | deposit | withdraw
    market: str | None = None
    price: int | None = None  # None in an oracle_price event: the observation is missing
    account: str | None = None
    amount: int | None = None
    order: OrderSpec | None = None
    order_id: str | None = None


# Choices of the [policy] table (docs/reference/scenario-format.md); the first is NFEX's.
LIQUIDATION_POLICIES: Final = ("full", "partial")
ADL_RANKINGS: Final = ("pnl_x_leverage", "pnl_x_margin_ratio", "pnl_pct")
FUND_INVENTORY_POLICIES: Final = ("work", "close", "keep")
BANKRUPTCY_SPLITS: Final = ("loss", "maintenance_margin")
MARK_PRICE_POLICIES: Final = ("scripted", "median")
STALE_POLICIES: Final = ("pause", "continue")
LIQUIDATION_PRICES: Final = ("bankruptcy", "fillable")
ADL_PRICES: Final = ("bankruptcy", "previous_mark")


@attrs.frozen
class Policy:
    """The rules venues differ on. Every default is NFEX's, and keeps the sandbox as it was.

    Money in wei, rates in ppm, times in virtual ms (see docs/reference/scenario-format.md).
    """

    # Liquidation: "full" closes every position at once (NFEX, BitMEX); "partial"
    # closes a position whose mark notional exceeds partial_threshold in slices of
    # partial_fraction of its size, partial_cooldown_ms apart, and hands the account
    # back as soon as it is above maintenance margin again (Hyperliquid).
    liquidation: str = _choice(LIQUIDATION_POLICIES, "full")
    partial_threshold: int = _units(0)
    partial_fraction: int = _units(200_000, low=1, high=_PPM)
    partial_cooldown_ms: int = _units(30_000, high=_DAY)
    # 0: the trader loses whatever is left once its positions are closed (NFEX).
    # Otherwise a clearance fee of this rate on the liquidated notional goes to the
    # fund, at most what is left, and the rest is returned to the trader (Binance).
    liquidation_fee: int = _units(0, high=_PPM // 10 - 1)
    adl_ranking: str = _choice(ADL_RANKINGS, "pnl_x_leverage")
    # "work" (NFEX's rule, BitMEX in March 2020): the fund accepts a taken-over
    # position while its assets cover the position's loss at the mark, closes
    # what it can in the book within fund_price_band of the mark, holds the rest
    # and offers it again on later ticks; ADL only when it cannot accept, or
    # when held inventory drains it. "close": one order within the band, then
    # ADL for the rest at once (the sandbox's former default, as Bybit and
    # Binance describe an immediate takeover). "keep": it holds the position and
    # never trades it (Hyperliquid's backstop vault); ADL only when drained.
    fund_inventory: str = _choice(FUND_INVENTORY_POLICIES, "work")
    # The fund's orders never trade further than this from the mark (ppm).
    fund_price_band: int = _units(100_000, low=1, high=_PPM - 1)
    # The most the fund may lose on taken-over positions, in all, before ADL takes
    # over however much it holds (wei; 0: no limit): Hyperliquid's capped
    # liquidator vault, whose loss, not an empty parent vault, triggers ADL.
    fund_loss_limit: int = _units(0)
    # A lot ADL could not place (every opposing account frozen) is offered
    # again after this many virtual ms, at most fund_retries times.
    fund_retry_ms: int = _units(1_000, low=1, high=_DAY)
    fund_retries: int = _units(5, high=100)
    # How a negative equity is carried by a cross-margin account's losing
    # positions: in proportion to each one's loss at mark ("loss"), or to its
    # maintenance margin ("maintenance_margin", dYdX v4). Flat and winning
    # positions are priced at their mark either way.
    bankruptcy_split: str = _choice(BANKRUPTCY_SPLITS, "loss")
    # Share of every trading fee paid into the fund (nftperp v1's fund grew on fees).
    fee_to_fund: int = _units(0, high=_PPM)
    # "scripted": the scenario's mark_price events; "median": median(impact mid,
    # price1, price2) from the book and the index (NFEX's published formula).
    mark_price: str = _choice(MARK_PRICE_POLICIES, "scripted")
    impact_notional: int = _units(5 * 10**18, low=1)
    basis_window: int = _units(5, low=1, high=100)
    # Funding, for every market with an index price: every interval, rate =
    # premium / divisor, capped; payment = mark x size x rate, longs pay shorts.
    funding_interval_ms: int = _units(3_600_000, low=1, high=_DAY)
    funding_divisor: int = _units(24, low=1, high=10_000)
    max_funding_rate: int = _units(10_000, high=_PPM // 10)
    # Oracle trouble: a mark moving more than oracle_band from the last valid one is
    # rejected (0: no band); a market with no valid price for longer than
    # oracle_staleness_ms (0: never stale) is stale, and new liquidations that
    # involve it "pause" until a valid price returns, or "continue" at the last one.
    oracle_band: int = _units(0, high=10 * _PPM)
    oracle_staleness_ms: int = _units(0, high=_DAY)
    stale_liquidations: str = _choice(STALE_POLICIES, "pause")
    # Bybit: the bankruptcy price leaves room for the fee to close the position
    # (|size| x mark x the market's taker fee, rounded up), reserved out of a
    # positive cushion; what it leaves on the account goes to the fund with the surplus.
    bankruptcy_closing_fee: bool = _flag(False)
    # Binance's tier-reducing IOC, BitMEX's risk-limit step: a position whose
    # notional is above its market's first tier is first sent an IOC at market,
    # within step_down_band of the mark, that brings it down to the tier below;
    # then, if the account is still liquidatable, the rest goes at the bankruptcy price.
    tier_step_down: bool = _flag(False)
    step_down_band: int = _units(50_000, low=1, high=_PPM - 1)
    # Hyperliquid's backstop: an account whose equity is below this fraction of
    # its maintenance margin (ppm; 0: never) sends no order to the book; the
    # fund, as the backstop vault, takes every position over at its bankruptcy
    # price, that is with the account's margin (Hyperliquid: 2/3).
    backstop_below: int = _units(0, high=_PPM)
    # The account that is the backstop vault (Hyperliquid's HLP): it takes
    # those positions over instead of the fund ("": the fund does).
    backstop_vault: str = attrs.field(default="", validator=attrs.validators.instance_of(str))
    # dYdX v4's fillable price: "bankruptcy" (NFEX) limits the liquidation order at
    # the bankruptcy price; "fillable" limits it within fillable_spread x the
    # position's maintenance rate x BA of the mark, BA = (MM - equity) / MM in
    # [0, 1], and never past the bankruptcy price (what does not fill goes to
    # the fund at the bankruptcy price, then ADL there, as usual).
    liquidation_price: str = _choice(LIQUIDATION_PRICES, "bankruptcy")
    fillable_spread: int = _units(1_500_000, low=1, high=10 * _PPM)
    # The price ADL closes the counterparties at: the lot's "bankruptcy" price
    # (NFEX, BitMEX, Binance, Bybit, dYdX), or Hyperliquid's "previous_mark":
    # the fund's mark before its latest one, as far as the fund's budget pays
    # for the difference, never past the bankruptcy price (actors/insurance_fund.py).
    adl_price: str = _choice(ADL_PRICES, "bankruptcy")
    # Drift v2's revenue pool: a pool outside the fund of revenue_pool wei that
    # pays revenue_transfer wei (at most what is left) into the fund every
    # revenue_interval_ms of virtual time (0: no pool).
    revenue_pool: int = _units(0)
    revenue_transfer: int = _units(0)
    revenue_interval_ms: int = _units(3_600_000, low=1, high=_DAY)
    # Drift v2's socialized loss: what a lot would lose below fund_floor (wei)
    # is charged to every open position of its market, in proportion to its
    # size, like a round of funding, instead of ADL (ADL only if that collects
    # too little).
    socialized_loss: bool = _flag(False)
    fund_floor: int = _units(0)

    def is_stale(self, last_valid_ms: int, now_ms: int) -> bool:
        """Stale: no valid price for longer than the staleness limit."""
        return self.oracle_staleness_ms > 0 and now_ms - last_valid_ms > self.oracle_staleness_ms

    @property
    def pauses_when_stale(self) -> bool:
        return self.oracle_staleness_ms > 0 and self.stale_liquidations == "pause"


DEFAULT_POLICY: Final = Policy()


@attrs.frozen
class Scenario:
    name: str
    description: str
    seed: int
    fund_balance: int
    markets: tuple[MarketSpec, ...]
    accounts: tuple[AccountSpec, ...]
    orders: tuple[OrderSpec, ...]
    events: tuple[EventSpec, ...]
    source: str = "<scenario>"
    digest: str = ""
    # [network]: per-message delay in virtual ms, uniform in [low, high].
    latency_ms: tuple[int, int] = (0, 0)
    # [faults]: what to inject, decided by the run's chooser.
    faults: Faults = Faults()
    policy: Policy = DEFAULT_POLICY
    # [[funds]]: several insurance funds for groups of markets (Binance); empty:
    # one shared fund for every market (NFEX), whose balance is fund_balance.
    # When set, fund_balance is the sum of the funds' balances.
    funds: tuple[FundSpec, ...] = ()
    text: str = attrs.field(default="", repr=False, eq=False)
    # A stochastic scenario's document (see sandbox._scenario.generators): kept so that
    # for_seed can expand its generators again from another seed.
    template: dict[str, Any] | None = attrs.field(default=None, eq=False, repr=False)
    # The files it was read from besides its TOML (a stochastic csv), with
    # their text: a replay embeds them, a sweep's plan hashes them.
    data_files: tuple[DataFile, ...] = attrs.field(default=(), eq=False, repr=False)
    # Every path on disk it was read from (the TOML file and its data files).
    read_from: tuple[str, ...] = attrs.field(default=(), eq=False, repr=False)
    # How the loader generates a stochastic scenario again from another seed
    # (set with template; the specs know nothing of the loader).
    regenerate: Callable[[Scenario, int], Scenario] | None = attrs.field(default=None, eq=False, repr=False)

    def for_seed(self, seed: int) -> Scenario:
        """The scenario as run with ``seed``: a stochastic one is generated again from that seed."""
        if self.template is None or self.regenerate is None or seed == self.seed:
            return self
        return self.regenerate(self, seed)

    @property
    def opening_imbalance(self) -> int:
        """Wei by which the opening positions' entry costs do not net: ``-sum(size x entry_price)``.

        Sizes net to zero in every market, so at any mark the positions'
        unrealized PnL sums to this constant plus what trading has moved
        since: the books hold this much more (or less, when negative) than
        deposits, withdrawals and the initial fund brought in, for the whole run.
        """
        return -sum(p.size * p.entry_price for a in self.accounts for p in a.positions)

    def market(self, symbol: str) -> MarketSpec:
        for m in self.markets:
            if m.symbol == symbol:
                return m
        raise KeyError(symbol)
