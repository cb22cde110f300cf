"""Scenario files: TOML in, validated frozen specs out.

Every check happens here, before anything runs, so a bad file is refused with
one message that names the file, the key and the problem
(:class:`ScenarioError`), and nothing is run or written. The format is
documented in docs/reference/scenario-format.md.
"""

from __future__ import annotations

import difflib
import functools
import hashlib
import importlib.resources
import json
import re
import tomllib
from contextvars import ContextVar
from pathlib import Path
from typing import Any, Callable, Final, Iterable

import attrs

from .money import (
    MONEY_DECIMALS,
    PRICE_DECIMALS,
    RATE_DECIMALS,
    RATE_ONE,
    SIZE_DECIMALS,
    UnitError,
    _show,
    fmt_money,
    parse_units,
)
from .runtime import Faults

__all__ = [
    "ScenarioError",
    "MarketSpec",
    "PositionSpec",
    "AccountSpec",
    "OrderSpec",
    "EventSpec",
    "Policy",
    "Tier",
    "FundSpec",
    "PRESETS",
    "SHARED_FUND",
    "Scenario",
    "load_scenario",
    "parse_scenario",
    "bundled_scenarios",
    "resolve_scenario",
    "FUND_ACCOUNT",
    "DataFile",
    "Reading",
    "MAX_FUNDING_TICKS",
]

# The reserved account name of the insurance fund in fills and events.
FUND_ACCOUNT: Final = "insurance_fund"
TIME_DECIMALS: Final = 3  # virtual time is kept in integer milliseconds
# Tables that generate work instead of scripting it (sandbox.stochastic).
GENERATOR_KEYS: Final = ("price_paths", "traders", "market_makers")
EVENT_TYPES: Final = ("mark_price", "oracle_price", "index_price", "order", "cancel", "deposit", "withdraw")
MAX_TIME_MS: Final = 10**15
# Limits that keep a hostile or broken file from taking tomllib more than a
# moment (measured: tomllib reads 1-2 MB/s, and a dotted key n levels deep
# costs it O(n**2): 20,000 levels take 9 s, 100,000 exhaust memory). A
# scenario's keys are at most two levels deep.
MAX_FILE_BYTES: Final = 256 * 1024
MAX_KEY_DEPTH: Final = 4
# Funding ticks are made lazily, as the run reaches them, but each one is work:
# hourly funding for 11 years at most (docs/guarantees.md, "Bounded work").
MAX_FUNDING_TICKS: Final = 100_000



class ScenarioError(Exception):
    """A scenario file is missing, unreadable or invalid. ``str()`` is the whole message."""

    def __init__(self, source: str, key: str, problem: str) -> None:
        self.source, self.key, self.problem = source, key, problem
        where = f"{source}: {key}: " if key else f"{source}: "
        super().__init__(where + problem)


@attrs.frozen
class DataFile:
    """A file a scenario reads besides its TOML (a stochastic ``csv``): its name as written, and its text."""

    name: str
    text: str = attrs.field(repr=False)
    path: str = ""  # where it was read from; "" when it came embedded in a replay

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.text.encode("utf-8")).hexdigest()


@attrs.define
class Reading:
    """How the files a scenario names are read (see :func:`reading`)."""

    allow_outside_paths: bool = False
    # A replay's embedded data, by name: then the disk is never read.
    embedded: dict[str, str] | None = None
    read: list[DataFile] = attrs.Factory(list)


_READING: ContextVar[Reading | None] = ContextVar("sandbox_scenario_reading", default=None)


def reading() -> Reading:
    """The rules for the data files of the scenario being parsed (confined to its folder by default)."""
    current = _READING.get()
    return current if current is not None else Reading()


@attrs.frozen
class Tier:
    """One row of a market's tier table (NFEX, Binance, BitMEX risk limits).

    The tier's rates apply to the part of a position's mark notional between
    the previous tier's bound and this one's (``notional``, wei; None on the
    last tier: no bound). ``max_leverage`` is the leverage the tier allows,
    ``1 / initial_margin`` at most.
    """

    notional: int | None
    maintenance_margin: int  # ppm
    initial_margin: int  # ppm
    max_leverage: int


@attrs.frozen
class MarketSpec:
    symbol: str
    mark_price: int
    initial_margin: int  # ppm of notional
    maintenance_margin: int  # ppm of notional
    tick_size: int = 1  # price units
    lot_size: int = 1  # size units
    maker_fee: int = 0  # ppm of notional
    taker_fee: int = 0  # ppm of notional
    # The index (spot) price at time 0: funding and the median mark need one.
    index_price: int | None = None
    # NFEX's tiered margin: the tier table by position notional (empty: one
    # rate, maintenance_margin and initial_margin, for any size), and the
    # collection's risk factor that scales every rate (ppm; 1_000_000: x1).
    tiers: tuple[Tier, ...] = ()
    risk_factor: int = 1_000_000

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
    balance: int
    markets: tuple[str, ...]


@attrs.frozen
class PositionSpec:
    market: str
    size: int
    entry_price: int


@attrs.frozen
class AccountSpec:
    id: str
    deposit: int
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
    side: str
    price: int
    size: int
    tif: str = "gtc"
    id: str | None = None


@attrs.frozen
class EventSpec:
    at_ms: int
    type: str  # mark_price | oracle_price | index_price | order | cancel | deposit | withdraw
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
    liquidation: str = "full"
    partial_threshold: int = 0
    partial_fraction: int = 200_000
    partial_cooldown_ms: int = 30_000
    # 0: the trader loses whatever is left once its positions are closed (NFEX).
    # Otherwise a clearance fee of this rate on the liquidated notional goes to the
    # fund, at most what is left, and the rest is returned to the trader (Binance).
    liquidation_fee: int = 0
    adl_ranking: str = "pnl_x_leverage"
    # "work" (NFEX's rule, BitMEX in March 2020): the fund accepts a taken-over
    # position while its assets cover the position's loss at the mark, closes
    # what it can in the book within fund_price_band of the mark, holds the rest
    # and offers it again on later ticks; ADL only when it cannot accept, or
    # when held inventory drains it. "close": one order within the band, then
    # ADL for the rest at once (the sandbox's former default, as Bybit and
    # Binance describe an immediate takeover). "keep": it holds the position and
    # never trades it (Hyperliquid's backstop vault); ADL only when drained.
    fund_inventory: str = "work"
    # The fund's orders never trade further than this from the mark (ppm).
    fund_price_band: int = 100_000
    # The most the fund may lose on taken-over positions, in all, before ADL takes
    # over however much it holds (wei; 0: no limit): Hyperliquid's capped
    # liquidator vault, whose loss, not an empty parent vault, triggers ADL.
    fund_loss_limit: int = 0
    # A lot ADL could not place (every opposing account frozen) is offered
    # again after this many virtual ms, at most fund_retries times.
    fund_retry_ms: int = 1_000
    fund_retries: int = 5
    # How a negative equity is carried by a cross-margin account's losing
    # positions: in proportion to each one's loss at mark ("loss"), or to its
    # maintenance margin ("maintenance_margin", dYdX v4). Flat and winning
    # positions are priced at their mark either way.
    bankruptcy_split: str = "loss"
    # Share of every trading fee paid into the fund (nftperp v1's fund grew on fees).
    fee_to_fund: int = 0
    # "scripted": the scenario's mark_price events; "median": median(impact mid,
    # price1, price2) from the book and the index (NFEX's published formula).
    mark_price: str = "scripted"
    impact_notional: int = 5 * 10**18
    basis_window: int = 5
    # Funding, for every market with an index price: every interval, rate =
    # premium / divisor, capped; payment = mark x size x rate, longs pay shorts.
    funding_interval_ms: int = 3_600_000
    funding_divisor: int = 24
    max_funding_rate: int = 10_000
    # Oracle trouble: a mark moving more than oracle_band from the last valid one is
    # rejected (0: no band); a market with no valid price for longer than
    # oracle_staleness_ms (0: never stale) is stale, and new liquidations that
    # involve it "pause" until a valid price returns, or "continue" at the last one.
    oracle_band: int = 0
    oracle_staleness_ms: int = 0
    stale_liquidations: str = "pause"
    # Bybit: the bankruptcy price leaves room for the fee to close the position
    # (|size| x mark x the market's taker fee, rounded up), reserved out of a
    # positive cushion; what it leaves on the account goes to the fund with the surplus.
    bankruptcy_closing_fee: bool = False
    # Binance's tier-reducing IOC, BitMEX's risk-limit step: a position whose
    # notional is above its market's first tier is first sent an IOC at market,
    # within step_down_band of the mark, that brings it down to the tier below;
    # then, if the account is still liquidatable, the rest goes at the bankruptcy price.
    tier_step_down: bool = False
    step_down_band: int = 50_000
    # Hyperliquid's backstop: an account whose equity is below this fraction of
    # its maintenance margin (ppm; 0: never) sends no order to the book; the
    # fund, as the backstop vault, takes every position over at its bankruptcy
    # price, that is with the account's margin (Hyperliquid: 2/3).
    backstop_below: int = 0
    # The account that is the backstop vault (Hyperliquid's HLP): it takes
    # those positions over instead of the fund ("": the fund does).
    backstop_vault: str = ""
    # dYdX v4's fillable price: "bankruptcy" (NFEX) limits the liquidation order at
    # the bankruptcy price; "fillable" limits it within fillable_spread x the
    # position's maintenance rate x BA of the mark, BA = (MM - equity) / MM in
    # [0, 1], and never past the bankruptcy price (what does not fill goes to
    # the fund at the bankruptcy price, then ADL there, as usual).
    liquidation_price: str = "bankruptcy"
    fillable_spread: int = 1_500_000
    # The price ADL closes the counterparties at: the lot's "bankruptcy" price
    # (NFEX, BitMEX, Binance, Bybit, dYdX), or Hyperliquid's "previous_mark":
    # the fund's mark before its latest one, as far as the fund's budget pays
    # for the difference, never past the bankruptcy price (actors/insurance_fund.py).
    adl_price: str = "bankruptcy"
    # Drift v2's revenue pool: a pool outside the fund of revenue_pool wei that
    # pays revenue_transfer wei (at most what is left) into the fund every
    # revenue_interval_ms of virtual time (0: no pool).
    revenue_pool: int = 0
    revenue_transfer: int = 0
    revenue_interval_ms: int = 3_600_000
    # Drift v2's socialized loss: what a lot would lose below fund_floor (wei)
    # is charged to every open position of its market, in proportion to its
    # size, like a round of funding, instead of ADL (ADL only if that collects
    # too little).
    socialized_loss: bool = False
    fund_floor: int = 0

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
    # A stochastic scenario's document (see sandbox.stochastic): kept so that
    # for_seed can expand its generators again from another seed.
    template: dict[str, Any] | None = attrs.field(default=None, eq=False, repr=False)
    # The files it was read from besides its TOML (a stochastic csv), with
    # their text: a replay embeds them, a sweep's plan hashes them.
    data_files: tuple[DataFile, ...] = attrs.field(default=(), eq=False, repr=False)
    # Every path on disk it was read from (the TOML file and its data files).
    read_from: tuple[str, ...] = attrs.field(default=(), eq=False, repr=False)

    @property
    def inputs_digest(self) -> str:
        """SHA-256 over the TOML's digest and every data file's: what the runs depend on."""
        return hashlib.sha256(json.dumps([self.digest, [[d.name, d.sha256] for d in self.data_files]]).encode()
                              ).hexdigest()

    def for_seed(self, seed: int) -> Scenario:
        """The scenario as run with ``seed``: a stochastic one is generated again from that seed."""
        if self.template is None or seed == self.seed:
            return self
        return attrs.evolve(parse_scenario({**self.template, "seed": seed}, self.source, self.digest), text=self.text,
                            data_files=self.data_files, read_from=self.read_from)

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


# --- parsing helpers ------------------------------------------------------------


class _Reader:
    """Walks one TOML table, checking keys and types, and remembers the key path."""

    def __init__(self, source: str, path: str, table: object) -> None:
        self.source, self.path = source, path
        if not isinstance(table, dict):
            self.fail("", f"expected a table, got {_typename(table)}")
        self.table: dict[str, Any] = table  # type: ignore[assignment]
        self.used: set[str] = set()

    def key(self, name: str) -> str:
        if not _BARE_KEY.fullmatch(name):
            name = _show(name)  # a quoted key may hold anything: newlines, a megabyte
        return f"{self.path}.{name}" if self.path else name

    def fail(self, name: str, problem: str) -> None:
        raise ScenarioError(self.source, self.key(name) if name else self.path, problem)

    def get(self, name: str, required: bool = True) -> Any:
        self.used.add(name)
        if name not in self.table:
            if required:
                # A required key that is missing is most often misspelt: name the misspelling.
                typo = did_you_mean(name, [k for k in self.table if isinstance(k, str) and k not in self.used
                                           and k not in format_keys()])
                if typo is not None:
                    self.fail(typo, f"unknown key (did you mean {name}? it is required)")
                self.fail(name, "is required")
            return None
        return self.table[name]

    def string(
        self, name: str, required: bool = True, *, choices: tuple[str, ...] = (), max_len: int = 200
    ) -> str | None:
        value = self.get(name, required)
        if value is None:
            return None
        if not isinstance(value, str):
            self.fail(name, f"expected a string, got {_typename(value)}")
        if not value or len(value) > max_len:
            self.fail(name, f"must be a non-empty string of at most {max_len} characters")
        if choices and value not in choices:
            self.fail(name, f"must be one of {', '.join(choices)}, got {_show(value)}")
        return value

    def units(
        self,
        name: str,
        decimals: int,
        *,
        required: bool = True,
        default: int | None = None,
        allow_negative: bool = False,
        positive: bool = False,
    ) -> int:
        value = self.get(name, required and default is None)
        if value is None:
            assert default is not None
            return default
        try:
            units = parse_units(value, decimals, allow_negative=allow_negative)
        except UnitError as e:
            self.fail(name, str(e))
        if positive and units <= 0:
            self.fail(name, f"must be greater than 0, got {value!r}")
        return units

    def integer(self, name: str, default: int, low: int = 0, high: int = 2**63 - 1) -> int:
        value = self.get(name, False)
        if value is None:
            return default
        if isinstance(value, bool) or not isinstance(value, int):
            self.fail(name, f"expected an integer, got {_typename(value)}")
        if not low <= value <= high:
            bound = "2**63-1" if high == 2**63 - 1 else str(high)
            self.fail(name, f"must be between {low} and {bound}, got {_show(value)}")
        return value

    def boolean(self, name: str, default: bool) -> bool:
        value = self.get(name, False)
        if value is None:
            return default
        if not isinstance(value, bool):
            self.fail(name, f"expected true or false, got {_typename(value)}")
        return value

    def at_most(self, name: str, value: int, limit: int, what: str) -> None:
        if value > limit:
            self.fail(name, f"must be at most {what}")

    def array(self, name: str) -> list[Any]:
        value = self.get(name, False)
        if value is None:
            return []
        if not isinstance(value, list):
            self.fail(name, f"expected an array, got {_typename(value)}")
        return value

    def done(self) -> None:
        unknown = sorted(set(self.table) - self.used)
        if unknown:
            close = did_you_mean(unknown[0], sorted(self.used - set(self.table)))
            self.fail(unknown[0], "unknown key" + (f" (did you mean {close}?)" if close else ""))


@functools.cache
def format_keys() -> frozenset[str]:
    """Every key name the scenario format reads, in any table: the names the readers of this package ask for.

    A missing required key is reported as a misspelling of a key of its table
    only when that key is unknown here: ``size`` is not a misspelt ``side``,
    it is the next key the orders table reads. Taken from the source of the
    modules that read scenarios (each ``reader.method("name", ...)`` call),
    so a new key needs no list to be kept up to date; a name that is also
    read elsewhere (an event's field) only makes a suggestion less likely.
    """
    call = re.compile(r'\.(?:get|string|units|integer|array|boolean|fraction|count|distribution|at_most)'
                      r'\(\s*"([A-Za-z_][A-Za-z0-9_]*)"')
    names: set[str] = set()
    for module in Path(__file__).parent.glob("*.py"):
        names.update(call.findall(module.read_text(encoding="utf-8")))
    return frozenset(names)


def did_you_mean(word: str, candidates: Iterable[str]) -> str | None:
    """The candidate ``word`` is most likely a misspelling of, if any is close (difflib's ratio >= 0.75)."""
    close = difflib.get_close_matches(word, list(candidates), n=1, cutoff=0.75)
    return close[0] if close else None


_BARE_KEY: Final = re.compile(r"[A-Za-z0-9_-]{1,40}")


def _typename(value: object) -> str:
    return {
        dict: "a table",
        list: "an array",
        str: "a string",
        int: "an integer",
        float: "a float",
        bool: "a boolean",
    }.get(type(value), type(value).__name__)


# --- the [policy] table -------------------------------------------------------------

_DAY_MS: Final = 86_400_000


# Venue presets: ``policy = "binance"`` (or ``[policy] preset = "binance"`` with
# keys of its own that override the preset's). Each is the [policy] table that
# reproduces the venue's rules as far as the sandbox models them; the table on
# docs/concepts/policies.md says, per rule, what each venue does and what is left out.
PRESETS: Final[dict[str, dict[str, Any]]] = {
    "nfex": {},
    "bitmex": {"tier_step_down": True},
    "binance": {"tier_step_down": True, "liquidation_fee": "0.01", "adl_ranking": "pnl_x_margin_ratio",
                "fund_inventory": "close"},
    "bybit": {"bankruptcy_closing_fee": True, "fund_inventory": "close"},
    "dydx": {"bankruptcy_split": "maintenance_margin", "fund_inventory": "close", "liquidation_price": "fillable",
             "liquidation_fee": "0.015"},
    "hyperliquid": {"liquidation": "partial", "partial_threshold": "30", "partial_fraction": "0.2",
                    "partial_cooldown": "30", "fund_inventory": "keep", "backstop_below": "0.666667",
                    "adl_price": "previous_mark"},
    "drift": {"fund_inventory": "close", "socialized_loss": True},
}
# Keys that only mean something under one choice (key -> (choice key, value)).
_DEPENDENT: Final = {
    "partial_threshold": ("liquidation", "partial"),
    "partial_fraction": ("liquidation", "partial"),
    "partial_cooldown": ("liquidation", "partial"),
    "impact_notional": ("mark_price", "median"),
    "basis_window": ("mark_price", "median"),
}


def _with_preset(source: str, raw: object) -> object:
    """The [policy] table with its preset's keys filled in (the table's own keys win)."""
    key = "policy" if isinstance(raw, str) else "policy.preset"
    if isinstance(raw, str):
        raw = {"preset": raw}
    if not isinstance(raw, dict) or "preset" not in raw:
        return raw
    name = raw["preset"]
    if not isinstance(name, str) or name not in PRESETS:
        raise ScenarioError(source, key, f"must be one of the venue presets {', '.join(PRESETS)}, got {_show(name)}")
    own = {k: v for k, v in raw.items() if k != "preset"}
    base = dict(PRESETS[name])
    # A choice the table overrides takes the preset's keys that depend on it away.
    for key, (needs, value) in _DEPENDENT.items():
        if key in base and key not in own and own.get(needs, base.get(needs)) != value:
            del base[key]
    return {**base, **own}


def _parse_policy(source: str, raw: object) -> Policy:
    r = _Reader(source, "policy", _with_preset(source, raw))
    liquidation = r.string("liquidation", required=False, choices=LIQUIDATION_POLICIES) or "full"
    mark_price = r.string("mark_price", required=False, choices=MARK_PRICE_POLICIES) or "scripted"
    # Keys that only mean something under one choice are refused under the others,
    # so a scenario never carries a setting that silently does nothing.
    for key, (needs, value) in _DEPENDENT.items():
        chosen = liquidation if needs == "liquidation" else mark_price
        if key in r.table and chosen != value:
            r.fail(key, f"only applies with {needs} = {value!r}")
    d = DEFAULT_POLICY
    policy = Policy(
        liquidation=liquidation,
        partial_threshold=r.units("partial_threshold", MONEY_DECIMALS, default=d.partial_threshold),
        partial_fraction=r.units("partial_fraction", RATE_DECIMALS, default=d.partial_fraction, positive=True),
        partial_cooldown_ms=r.units("partial_cooldown", TIME_DECIMALS, default=d.partial_cooldown_ms),
        liquidation_fee=r.units("liquidation_fee", RATE_DECIMALS, default=d.liquidation_fee),
        adl_ranking=r.string("adl_ranking", required=False, choices=ADL_RANKINGS) or d.adl_ranking,
        fund_inventory=r.string("fund_inventory", required=False, choices=FUND_INVENTORY_POLICIES)
        or d.fund_inventory,
        fund_price_band=r.units("fund_price_band", RATE_DECIMALS, default=d.fund_price_band, positive=True),
        fund_loss_limit=r.units("fund_loss_limit", MONEY_DECIMALS, default=d.fund_loss_limit),
        fund_retry_ms=r.units("fund_retry", TIME_DECIMALS, default=d.fund_retry_ms, positive=True),
        fund_retries=r.integer("fund_retries", d.fund_retries, low=0, high=100),
        bankruptcy_split=r.string("bankruptcy_split", required=False, choices=BANKRUPTCY_SPLITS)
        or d.bankruptcy_split,
        fee_to_fund=r.units("fee_to_fund", RATE_DECIMALS, default=d.fee_to_fund),
        mark_price=mark_price,
        impact_notional=r.units("impact_notional", MONEY_DECIMALS, default=d.impact_notional, positive=True),
        basis_window=r.integer("basis_window", d.basis_window, low=1, high=100),
        funding_interval_ms=r.units("funding_interval", TIME_DECIMALS, default=d.funding_interval_ms,
                                    positive=True),
        funding_divisor=r.integer("funding_divisor", d.funding_divisor, low=1, high=10_000),
        max_funding_rate=r.units("max_funding_rate", RATE_DECIMALS, default=d.max_funding_rate),
        oracle_band=r.units("oracle_band", RATE_DECIMALS, default=d.oracle_band),
        oracle_staleness_ms=r.units("oracle_staleness", TIME_DECIMALS, default=d.oracle_staleness_ms),
        stale_liquidations=r.string("stale_liquidations", required=False, choices=STALE_POLICIES)
        or d.stale_liquidations,
        bankruptcy_closing_fee=r.boolean("bankruptcy_closing_fee", d.bankruptcy_closing_fee),
        tier_step_down=r.boolean("tier_step_down", d.tier_step_down),
        step_down_band=r.units("step_down_band", RATE_DECIMALS, default=d.step_down_band, positive=True),
        backstop_below=r.units("backstop_below", RATE_DECIMALS, default=d.backstop_below),
        backstop_vault=r.string("backstop_vault", required=False) or d.backstop_vault,
        liquidation_price=r.string("liquidation_price", required=False, choices=LIQUIDATION_PRICES)
        or d.liquidation_price,
        fillable_spread=r.units("fillable_spread", RATE_DECIMALS, default=d.fillable_spread, positive=True),
        adl_price=r.string("adl_price", required=False, choices=ADL_PRICES) or d.adl_price,
        revenue_pool=r.units("revenue_pool", MONEY_DECIMALS, default=d.revenue_pool),
        revenue_transfer=r.units("revenue_transfer", MONEY_DECIMALS, default=d.revenue_transfer),
        revenue_interval_ms=r.units("revenue_interval", TIME_DECIMALS, default=d.revenue_interval_ms,
                                    positive=True),
        socialized_loss=r.boolean("socialized_loss", d.socialized_loss),
        fund_floor=r.units("fund_floor", MONEY_DECIMALS, default=d.fund_floor),
    )
    r.at_most("partial_fraction", policy.partial_fraction, RATE_ONE, "1 (the whole position)")
    r.at_most("partial_cooldown", policy.partial_cooldown_ms, _DAY_MS, "one day")
    r.at_most("liquidation_fee", policy.liquidation_fee, RATE_ONE // 10 - 1, "just below 0.1 (10%)")
    r.at_most("fee_to_fund", policy.fee_to_fund, RATE_ONE, "1 (every fee)")
    r.at_most("fund_price_band", policy.fund_price_band, RATE_ONE - 1, "just below 1 (100%)")
    r.at_most("fund_retry", policy.fund_retry_ms, _DAY_MS, "one day")
    r.at_most("funding_interval", policy.funding_interval_ms, _DAY_MS, "one day")
    r.at_most("max_funding_rate", policy.max_funding_rate, RATE_ONE // 10, "0.1 (10% per interval)")
    r.at_most("oracle_band", policy.oracle_band, 10 * RATE_ONE, "10 (a move of 1000%)")
    r.at_most("oracle_staleness", policy.oracle_staleness_ms, _DAY_MS, "one day")
    if policy.oracle_band and not policy.oracle_staleness_ms:
        # Without a staleness limit a real move beyond the band would be refused forever.
        r.fail("oracle_band", "needs oracle_staleness: a move beyond the band is accepted once the market is stale")
    if "stale_liquidations" in r.table and not policy.oracle_staleness_ms:
        r.fail("stale_liquidations", "only applies with an oracle_staleness limit")
    r.at_most("step_down_band", policy.step_down_band, RATE_ONE - 1, "just below 1 (100%)")
    r.at_most("backstop_below", policy.backstop_below, RATE_ONE, "1 (the whole maintenance margin)")
    if policy.backstop_vault and not policy.backstop_below:
        r.fail("backstop_vault", "only applies with backstop_below")
    r.at_most("fillable_spread", policy.fillable_spread, 10 * RATE_ONE, "10")
    if "fillable_spread" in r.table and policy.liquidation_price != "fillable":
        r.fail("fillable_spread", "only applies with liquidation_price = 'fillable'")
    r.at_most("revenue_interval", policy.revenue_interval_ms, _DAY_MS, "one day")
    if policy.revenue_pool and not policy.revenue_transfer:
        r.fail("revenue_pool", "needs revenue_transfer: how much the pool pays into the fund each interval")
    for key in ("revenue_transfer", "revenue_interval"):
        if key in r.table and not policy.revenue_pool:
            r.fail(key, "only applies with a revenue_pool")
    if "fund_floor" in r.table and not policy.socialized_loss:
        r.fail("fund_floor", "only applies with socialized_loss = true")
    if "step_down_band" in r.table and not policy.tier_step_down:
        r.fail("step_down_band", "only applies with tier_step_down = true")
    r.done()
    return policy


def _tiers(source: str, path: str, market: _Reader) -> tuple[Tier, ...]:
    """A market's ``tiers`` array: ascending bounds, rates that never fall, the last one unbounded."""
    raw = market.array("tiers")
    out: list[Tier] = []
    for j, raw_tier in enumerate(raw):
        t = _Reader(source, f"{path}.tiers[{j}]", raw_tier)
        last = j == len(raw) - 1
        bound = None if last and "notional" not in t.table else t.units("notional", MONEY_DECIMALS, positive=True)
        mm = t.units("maintenance_margin", RATE_DECIMALS, positive=True)
        im = t.units("initial_margin", RATE_DECIMALS, positive=True)
        if im > RATE_ONE:
            t.fail("initial_margin", "must be at most 1 (100% of notional)")
        if mm >= im:
            t.fail("maintenance_margin", "must be below initial_margin")
        lev = t.integer("max_leverage", RATE_ONE // im, low=1, high=1000)
        if lev * im > RATE_ONE:
            t.fail("max_leverage", f"must be at most 1 / initial_margin ({RATE_ONE // im})")
        if out:
            prev = out[-1]
            if bound is not None and bound <= (prev.notional or 0):
                t.fail("notional", "must be above the previous tier's notional")
            if mm < prev.maintenance_margin or im < prev.initial_margin:
                t.fail("maintenance_margin" if mm < prev.maintenance_margin else "initial_margin",
                       "must not be below the previous tier's")
            if lev > prev.max_leverage:
                t.fail("max_leverage", "must not be above the previous tier's")
        if bound is None and not last:
            t.fail("notional", "is required on every tier but the last")
        t.done()
        out.append(Tier(bound, mm, im, lev))
    if len(out) == 1:
        market.fail("tiers", "needs at least two tiers (one rate for every size is the market's own)")
    return tuple(out)


# --- the scenario ----------------------------------------------------------------


def parse_scenario(data: dict[str, Any], source: str = "<scenario>", digest: str = "") -> Scenario:
    """Validate a parsed TOML document and build a :class:`Scenario`."""
    if isinstance(data, dict) and any(key in data for key in GENERATOR_KEYS):
        from .stochastic import expand  # generators become ordinary entries, then come back here

        return expand(data, source, digest)
    top = _Reader(source, "", data)
    name = top.string("name")
    description = top.string("description", required=False, max_len=10_000) or ""
    seed = top.integer("seed", 0)

    raw_fund = top.get("insurance_fund", False)
    fund = _Reader(source, "insurance_fund", {} if raw_fund is None else raw_fund)
    fund_balance = fund.units("balance", MONEY_DECIMALS, default=0)
    fund.done()

    latency = (0, 0)
    if top.get("network", False) is not None:
        net = _Reader(source, "network", top.get("network"))
        raw_latency = net.get("latency", False)
        if isinstance(raw_latency, dict):
            span = _Reader(source, "network.latency", raw_latency)
            latency = (span.units("min", TIME_DECIMALS), span.units("max", TIME_DECIMALS))
            span.done()
            if latency[0] > latency[1]:
                span.fail("max", "must not be below min")
        elif raw_latency is not None:
            fixed = net.units("latency", TIME_DECIMALS)
            latency = (fixed, fixed)
        if latency[1] > 60_000:
            net.fail("latency", "must be at most 60 seconds")
        net.done()

    policy = DEFAULT_POLICY
    if top.get("policy", False) is not None:
        policy = _parse_policy(source, top.get("policy"))

    markets: list[MarketSpec] = []
    raw_markets = top.array("markets")
    if not raw_markets:
        top.fail("markets", "at least one market is required")
    for i, raw in enumerate(raw_markets):
        r = _Reader(source, f"markets[{i}]", raw)
        symbol = r.string("symbol")
        assert symbol is not None
        if any(m.symbol == symbol for m in markets):
            r.fail("symbol", f"market {symbol!r} is defined twice")
        if symbol == FUND_ACCOUNT:
            r.fail("symbol", "is a reserved name")
        tiers = _tiers(source, f"markets[{i}]", r)
        flat = {}
        for key in ("initial_margin", "maintenance_margin"):
            if tiers and key not in r.table:  # the first tier's rate is the market's
                flat[key] = getattr(tiers[0], key)
            else:
                flat[key] = r.units(key, RATE_DECIMALS, positive=True)
                if tiers and flat[key] != getattr(tiers[0], key):
                    r.fail(key, f"must be the first tier's {key} (or left out) when the market has tiers")
        spec = MarketSpec(
            symbol=symbol,
            mark_price=r.units("mark_price", PRICE_DECIMALS, positive=True),
            initial_margin=flat["initial_margin"],
            maintenance_margin=flat["maintenance_margin"],
            tick_size=r.units("tick_size", PRICE_DECIMALS, default=1, positive=True),
            lot_size=r.units("lot_size", SIZE_DECIMALS, default=1, positive=True),
            maker_fee=r.units("maker_fee", RATE_DECIMALS, default=0),
            taker_fee=r.units("taker_fee", RATE_DECIMALS, default=0),
            index_price=(
                r.units("index_price", PRICE_DECIMALS, positive=True) if "index_price" in r.table else None
            ),
            tiers=tiers,
            risk_factor=r.units("risk_factor", RATE_DECIMALS, default=RATE_ONE, positive=True),
        )
        # The risk factor scales every rate: the largest initial rate must stay at most 100%.
        top_initial = max([spec.initial_margin] + [t.initial_margin for t in tiers])
        if top_initial * spec.risk_factor > RATE_ONE * RATE_ONE:
            r.fail("risk_factor", "makes an initial margin rate above 1 (100% of notional)")
        if spec.initial_margin > RATE_ONE:
            r.fail("initial_margin", "must be at most 1 (100% of notional)")
        if spec.maintenance_margin >= spec.initial_margin:
            r.fail("maintenance_margin", "must be below initial_margin")
        for fee in ("maker_fee", "taker_fee"):
            if getattr(spec, fee) >= RATE_ONE // 10:
                r.fail(fee, "must be below 0.1 (10%)")
        if spec.mark_price % spec.tick_size:
            r.fail("mark_price", "is not a multiple of tick_size")
        if policy.mark_price == "median" and spec.index_price is None:
            r.fail("index_price", "is required with policy.mark_price = 'median'")
        r.done()
        markets.append(spec)
    by_symbol = {m.symbol: m for m in markets}
    faults = _faults(top, source, by_symbol)
    funds = _funds(source, top, by_symbol, fund_balance)

    def market_of(r: _Reader, key: str = "market") -> MarketSpec:
        symbol = r.string(key)
        if symbol not in by_symbol:
            r.fail(key, f"unknown market {symbol!r}")
        return by_symbol[symbol]  # type: ignore[index]

    accounts: list[AccountSpec] = []
    ids: set[str] = set()
    # (owner, market) -> the id of its isolated-margin bucket: orders in that market go there.
    isolated: dict[tuple[str, str], str] = {}
    for i, raw in enumerate(top.array("accounts")):
        r = _Reader(source, f"accounts[{i}]", raw)
        account_id = r.string("id")
        assert account_id is not None
        if account_id in ids:
            r.fail("id", f"account {account_id!r} is defined twice")
        if account_id == FUND_ACCOUNT or ":" in account_id or "#" in account_id:
            r.fail("id", f"{account_id!r} is reserved or contains ':' or '#'")
        ids.add(account_id)
        deposit = r.units("deposit", MONEY_DECIMALS, default=0)
        positions: list[PositionSpec] = []
        for j, raw_pos in enumerate(r.array("positions")):
            p = _Reader(source, f"accounts[{i}].positions[{j}]", raw_pos)
            m = market_of(p)
            if any(q.market == m.symbol for q in positions):
                p.fail("market", f"a second position in {m.symbol!r}")
            size = p.units("size", SIZE_DECIMALS, allow_negative=True)
            if size == 0:
                p.fail("size", "must not be 0")
            if size % m.lot_size:
                p.fail("size", "is not a multiple of the market's lot_size")
            entry = p.units("entry_price", PRICE_DECIMALS, positive=True)
            p.done()
            positions.append(PositionSpec(m.symbol, size, entry))
        # Isolated margin (NFEX's contract page lists it beside cross): each
        # market of the table is held in a bucket of its own, an account with
        # that much of the deposit, liquidated alone; the rest stays cross.
        raw_isolated = r.get("isolated", False)
        buckets: list[AccountSpec] = []
        if raw_isolated is not None:
            iso = _Reader(source, f"accounts[{i}].isolated", raw_isolated)
            for symbol in list(iso.table):
                if symbol not in by_symbol:
                    iso.fail(symbol, f"unknown market {symbol!r}")
                margin = iso.units(symbol, MONEY_DECIMALS, positive=True)
                bucket = isolated_id(account_id, symbol)
                if bucket in ids or any(bucket == (a.get("id") if isinstance(a, dict) else None)
                                        for a in top.array("accounts")):
                    iso.fail(symbol, f"the isolated bucket's id {bucket!r} is another account's")
                held = tuple(q for q in positions if q.market == symbol)
                buckets.append(AccountSpec(bucket, margin, held, (account_id, symbol)))
                isolated[(account_id, symbol)] = bucket
            iso.done()
            if not buckets:
                r.fail("isolated", "names no market")
            carved = sum(b.deposit for b in buckets)
            if carved > deposit:
                r.fail("isolated", f"its margins ({fmt_money(carved)}) exceed the deposit ({fmt_money(deposit)})")
            deposit -= carved
            positions = [q for q in positions if (account_id, q.market) not in isolated]
        r.done()
        accounts.append(AccountSpec(account_id, deposit, tuple(positions)))
        accounts.extend(buckets)
        ids.update(b.id for b in buckets)

    if policy.backstop_vault and policy.backstop_vault not in ids:
        raise ScenarioError(source, "policy.backstop_vault", f"unknown account {policy.backstop_vault!r}")
    for m in markets:
        held = [p for a in accounts for p in a.positions if p.market == m.symbol]
        if sum(p.size for p in held):
            top.fail("accounts", f"starting positions in {m.symbol!r} do not net to zero (long != short)")
        # Entry costs need not net: a real snapshot's positions were opened at
        # different prices. What they do not net to is the opening imbalance
        # (Scenario.opening_imbalance), a constant of the conservation equation.

    def account_of(r: _Reader) -> str:
        account = r.string("account")
        if account not in ids:
            r.fail("account", f"unknown account {account!r}")
        return account  # type: ignore[return-value]

    client_ids: set[tuple[str, str]] = set()
    routed: dict[tuple[str, str], str] = {}  # (owner, order id) -> the account that placed it

    def order_of(r: _Reader) -> OrderSpec:
        owner = account_of(r)
        m = market_of(r)
        account = isolated.get((owner, m.symbol), owner)  # an isolated market's orders are its bucket's
        side = r.string("side", choices=("buy", "sell"))
        price = r.units("price", PRICE_DECIMALS, positive=True)
        size = r.units("size", SIZE_DECIMALS, positive=True)
        tif = r.string("tif", required=False, choices=("gtc", "ioc")) or "gtc"
        order_id = r.string("id", required=False)
        if price % m.tick_size:
            r.fail("price", "is not a multiple of the market's tick_size")
        if size % m.lot_size:
            r.fail("size", "is not a multiple of the market's lot_size")
        if order_id is not None:
            if (account, order_id) in client_ids:
                r.fail("id", f"order id {order_id!r} is used twice by {owner!r}")
            if "#" in order_id:
                r.fail("id", "must not contain '#'")
            client_ids.add((account, order_id))
            routed[(owner, order_id)] = account
        return OrderSpec(account, m.symbol, side, price, size, tif, order_id)  # type: ignore[arg-type]

    orders: list[OrderSpec] = []
    for i, raw in enumerate(top.array("orders")):
        r = _Reader(source, f"orders[{i}]", raw)
        orders.append(order_of(r))
        r.done()

    events: list[EventSpec] = []
    for i, raw in enumerate(top.array("events")):
        r = _Reader(source, f"events[{i}]", raw)
        at = r.units("at", TIME_DECIMALS)
        if at > MAX_TIME_MS:
            r.fail("at", "is too large")
        kind = r.string("type", choices=EVENT_TYPES)
        event: EventSpec
        if kind in ("mark_price", "oracle_price") and policy.mark_price == "median":
            r.fail("type", f"{kind} events need policy.mark_price = 'scripted' (the median mark comes "
                           "from the book and index_price events)")
        if kind == "mark_price":
            m = market_of(r)
            price = r.units("price", PRICE_DECIMALS, positive=True)
            if price % m.tick_size:
                r.fail("price", "is not a multiple of the market's tick_size")
            event = EventSpec(at, kind, market=m.symbol, price=price)
        elif kind == "oracle_price":
            # An observation the oracle may have to refuse: no price (the feed
            # is silent), zero or negative. It is checked when it arrives, not here.
            m = market_of(r)
            observed: int | None = None
            if "price" in r.table:
                observed = r.units("price", PRICE_DECIMALS, allow_negative=True)
                if observed > 0 and observed % m.tick_size:
                    r.fail("price", "is not a multiple of the market's tick_size")
            event = EventSpec(at, kind, market=m.symbol, price=observed)
        elif kind == "index_price":
            m = market_of(r)
            event = EventSpec(at, kind, market=m.symbol, price=r.units("price", PRICE_DECIMALS, positive=True))
        elif kind == "order":
            o = order_of(r)
            event = EventSpec(at, kind, account=o.account, market=o.market, order=o)
        elif kind == "cancel":
            owner = account_of(r)
            order_id = r.string("order")
            account = routed.get((owner, order_id), owner)  # type: ignore[arg-type]
            if (account, order_id) not in client_ids:
                r.fail("order", f"no earlier order with id {order_id!r} for {owner!r}")
            event = EventSpec(at, kind, account=account, order_id=order_id)
        else:
            account = account_of(r)
            amount = r.units("amount", MONEY_DECIMALS, positive=True)
            event = EventSpec(at, kind, account=account, amount=amount)
        r.done()
        events.append(event)
    top.done()

    # Stable sort: file order breaks ties between events at the same time.
    events.sort(key=lambda e: e.at_ms)
    ticks = funding_ticks(markets, events, policy)
    if ticks > MAX_FUNDING_TICKS:
        # Each tick is work (a delivery per market at least): refused here, before
        # anything runs, rather than found out by the run's delivery cap.
        raise ScenarioError(
            source, "events",
            f"funding every {policy.funding_interval_ms / 1000:g} s up to the last event, at "
            f"t={events[-1].at_ms / 1000:g} s, would be {ticks:,} funding ticks; at most {MAX_FUNDING_TICKS:,} "
            "(see docs/guarantees.md)")
    assert name is not None
    return Scenario(
        name=name,
        description=description,
        seed=seed,
        fund_balance=sum(f.balance for f in funds) if funds else fund_balance,
        funds=funds,
        markets=tuple(markets),
        accounts=tuple(accounts),
        orders=tuple(orders),
        events=tuple(events),
        source=source,
        digest=digest,
        latency_ms=latency,
        faults=faults,
        policy=policy,
    )


def funding_ticks(markets: Any, events: Any, policy: Policy) -> int:
    """How many funding ticks a run has: one every interval up to the last event, if any market has an index."""
    indexed = any(m.index_price is not None for m in markets) or any(e.type == "index_price" for e in events)
    if not indexed or not events:
        return 0
    return events[-1].at_ms // policy.funding_interval_ms


def _funds(source: str, top: _Reader, markets: dict[str, MarketSpec], shared_balance: int) -> tuple[FundSpec, ...]:
    """The ``[[funds]]`` table: each fund's name, balance and markets; the rest stay with the shared fund."""
    named: list[FundSpec] = []
    owner: dict[str, str] = {}
    for i, raw in enumerate(top.array("funds")):
        f = _Reader(source, f"funds[{i}]", raw)
        name = f.string("name", max_len=40)
        assert name is not None
        if name in (SHARED_FUND, FUND_ACCOUNT) or not _BARE_KEY.fullmatch(name):
            f.fail("name", f"{_show(name)} is reserved or not a plain name (letters, digits, '_' and '-')")
        if any(x.name == name for x in named):
            f.fail("name", f"fund {name!r} is defined twice")
        balance = f.units("balance", MONEY_DECIMALS, default=0)
        symbols = f.get("markets")
        if not isinstance(symbols, list) or not symbols or not all(isinstance(m, str) for m in symbols):
            f.fail("markets", "expected a non-empty array of market symbols")
        for m in symbols:
            if m not in markets:
                f.fail("markets", f"unknown market {_show(m)}")
            if m in owner:
                f.fail("markets", f"market {m!r} is already in fund {owner[m]!r}")
            owner[m] = name
        f.done()
        named.append(FundSpec(name, balance, tuple(sorted(symbols))))
    if not named:
        return ()
    rest = tuple(m for m in sorted(markets) if m not in owner)
    if not rest and shared_balance:
        top.fail("insurance_fund", "every market is in one of the [[funds]]: the shared fund has no market "
                                   "for its balance (set it in a [[funds]] entry)")
    return tuple(named) + ((FundSpec(SHARED_FUND, shared_balance, rest),) if rest else ())


# Actors that [faults] crash may name (traders are scripts, not servers).
CRASHABLE: Final = ("oracle", "clearing", "margin_monitor", "liquidation_engine", "insurance_fund", "adl")


def _probability(r: _Reader, name: str) -> int:
    ppm = r.units(name, RATE_DECIMALS, default=0)
    if ppm > RATE_ONE:
        r.fail(name, "is a probability: at most 1")
    return ppm


def _faults(top: _Reader, source: str, markets: dict[str, MarketSpec]) -> Faults:
    raw = top.get("faults", False)
    if raw is None:
        return Faults()
    f = _Reader(source, "faults", raw)
    delay, delay_max = 0, 0
    if f.get("delay", False) is not None:
        d = _Reader(source, "faults.delay", f.get("delay"))
        delay = _probability(d, "probability")
        delay_max = d.units("max", TIME_DECIMALS)
        if not 1 <= delay_max <= 60_000:
            d.fail("max", "must be from 0.001 to 60 seconds")
        d.done()
    duplicate = _probability(f, "duplicate")
    crash, actors, downtime = 0, (), 0
    if f.get("crash", False) is not None:
        c = _Reader(source, "faults.crash", f.get("crash"))
        crash = _probability(c, "probability")
        downtime = c.units("downtime", TIME_DECIMALS, default=0)
        if downtime > 60_000:
            c.fail("downtime", "must be at most 60 seconds")
        names = c.get("actors")
        allowed = CRASHABLE + tuple(f"book:{m}" for m in markets)
        if not isinstance(names, list) or not names or not all(isinstance(n, str) for n in names):
            c.fail("actors", "expected a non-empty array of actor names")
        for n in names:
            if n not in allowed:
                c.fail("actors", f"{_show(n)} is not an actor that can crash (one of {', '.join(allowed)})")
        actors = tuple(dict.fromkeys(names))
        c.done()
    snapshot_every = f.integer("snapshot_every", 20)
    if not 1 <= snapshot_every <= 100_000:
        f.fail("snapshot_every", "must be from 1 to 100000")
    f.done()
    return Faults(delay, delay_max, duplicate, crash, actors, downtime, snapshot_every)


def load_scenario(path: str | Path, *, allow_outside_paths: bool = False) -> Scenario:
    """Read and validate a scenario file. Raises :class:`ScenarioError` on any problem.

    Only a regular file of at most :data:`MAX_FILE_BYTES` is read (a FIFO or
    device is refused at once). The files it names (a stochastic ``csv``)
    must be inside its folder unless ``allow_outside_paths``.
    """
    from ._safeio import UnsafePath, read_regular

    source = str(path)
    try:
        raw = read_regular(path, MAX_FILE_BYTES, "a scenario file")
    except UnsafePath as e:
        raise ScenarioError(source, "", e.problem) from None
    scenario = _parse_bytes(raw, source, allow_outside_paths=allow_outside_paths)
    return attrs.evolve(scenario, read_from=(source, *(d.path for d in scenario.data_files if d.path)))


def _parse_bytes(raw: bytes, source: str, *, allow_outside_paths: bool = False,
                 embedded: dict[str, str] | None = None) -> Scenario:
    """Parse a scenario's bytes; ``embedded``: its data files come from here (a replay), not the disk."""
    rules = Reading(allow_outside_paths, embedded)
    token = _READING.set(rules)
    try:
        scenario = _parse_text(raw, source)
    finally:
        _READING.reset(token)
    return attrs.evolve(scenario, data_files=tuple(rules.read))


def _parse_text(raw: bytes, source: str) -> Scenario:
    if len(raw) > MAX_FILE_BYTES:
        raise ScenarioError(source, "", f"is larger than {MAX_FILE_BYTES // 1024} KiB, too large for a scenario")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ScenarioError(source, "", f"is not UTF-8 text (byte {e.start})") from None
    if _has_deep_key(text):
        raise ScenarioError(source, "", f"has a key nested more than {MAX_KEY_DEPTH} levels deep")
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise ScenarioError(source, "", f"is not valid TOML ({e})") from None
    except RecursionError:
        raise ScenarioError(source, "", "is not valid TOML (nested too deeply)") from None
    except ValueError:
        # tomllib lets int() refuse a literal of more than sys.get_int_max_str_digits() digits.
        raise ScenarioError(source, "", "is not valid TOML (a number with too many digits)") from None
    return attrs.evolve(parse_scenario(data, source, hashlib.sha256(raw).hexdigest()), text=text)


# Strings and comments, so that the dots inside them are not taken for key separators.
_STRINGS_AND_COMMENTS: Final = re.compile(
    r'"""(?:[^"\\]|\\[\s\S]|"(?!""))*"{3,5}'  # multi-line basic string
    r"|'''[\s\S]*?'{3,5}"  # multi-line literal string
    r'|"(?:[^"\\\n]|\\.)*"'  # basic string
    r"|'[^'\n]*'"  # literal string
    r"|#[^\n]*"  # comment
)
# A key of more than MAX_KEY_DEPTH dotted parts, once strings are blanked.
# Starting only at the start of a word and never backtracking into one, so the
# scan stays linear even over a line of 100,000 digits.
_DEEP_KEY: Final = re.compile(
    r"(?<![\w\"'-])[\w\"'-]++(?:[ \t]*+\.[ \t]*+[\w\"'-]++){%d}" % MAX_KEY_DEPTH
)


def _has_deep_key(text: str) -> bool:
    """Whether a dotted key (or table header) is deeper than MAX_KEY_DEPTH.

    A linear scan before tomllib, whose time is quadratic in a key's depth.
    Outside strings and comments a run of dots can only be a key (a number
    has one dot at most), so this refuses no file that is a scenario.
    """
    return _DEEP_KEY.search(_STRINGS_AND_COMMENTS.sub('""', text)) is not None


def _bundled_dir() -> Any:
    return importlib.resources.files("scenarios")


def bundled_scenarios() -> dict[str, Callable[[], Scenario]]:
    """Bundled scenario names mapped to loaders, sorted by name."""
    found: dict[str, Callable[[], Scenario]] = {}
    for entry in sorted(_bundled_dir().iterdir(), key=lambda e: e.name):
        if entry.name.endswith(".toml"):
            found[entry.name[: -len(".toml")]] = (
                lambda e=entry: _parse_bytes(e.read_bytes(), f"scenarios/{e.name}")
            )
    return found


def resolve_scenario(name_or_path: str, *, allow_outside_paths: bool = False) -> Scenario:
    """A bundled scenario's name, or a path to a scenario file.

    A bundled name wins unless the argument is a path to a *file*: a folder of
    the same name in the working directory (an output folder, say) does not
    hide the bundled scenario. The file is read as :func:`load_scenario` reads it.
    """
    bundled = bundled_scenarios()
    try:
        exists = Path(name_or_path).exists()
        is_file = exists and Path(name_or_path).is_file()
    except (OSError, ValueError) as e:  # e.g. a name too long for the file system
        reason = getattr(e, "strerror", None) or e
        raise ScenarioError(_show(name_or_path, 80), "", f"cannot be read ({reason})") from None
    if name_or_path in bundled and not is_file:
        return bundled[name_or_path]()
    if not name_or_path.endswith(".toml") and not exists:
        close = did_you_mean(name_or_path, bundled)
        raise ScenarioError(
            name_or_path, "", "no such file, and no bundled scenario of that name "
            + (f"(did you mean {close}? see 'sandbox list')" if close else "(see 'sandbox list')")
        )
    return load_scenario(name_or_path, allow_outside_paths=allow_outside_paths)
