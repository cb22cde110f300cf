"""Stochastic scenarios: tables that *generate* markets' work instead of scripting it.

A scenario may hold, besides its scripted ``accounts``, ``orders`` and
``events``, three kinds of generator table (the format is in docs/reference/scenario-format.md,
"Stochastic scenarios"):

* ``[[price_paths]]``: one per market, a random walk of the mark price
  (volatility, drift and jumps) or a replay of prices (``csv`` or ``prices``);
* ``[[traders]]``: a population of leveraged traders in one market (count,
  deposit and leverage distributions, long/short mix, order flow), whose net
  position is taken by the population's ``house`` account;
* ``[[market_makers]]``: an account quoting a ladder of bids and asks around
  the price path, re-quoted at every step.

They are expanded into ordinary ``accounts``, ``orders`` and ``events`` (the
same dicts a TOML file parses to), and the result goes through the ordinary
validator, so a generated scenario obeys every rule a written one does
(starting positions net to zero in size and cost, prices on the tick, sizes
on the lot).

Reproducibility. Every draw comes from the run's seed: each generator has its
own :class:`random.Random`, seeded with a SHA-256 of (seed, generator kind,
its market or name), so adding a generator never changes another one's
draws, and nothing depends on ``PYTHONHASHSEED`` or the global ``random``.
No float is drawn at all: a uniform number is 53 random bits made into an
exact :class:`~decimal.Decimal`, and normals, exponentials and log-normals
are computed from them with ``Decimal``'s correctly rounded ``ln``, ``exp``
and ``sqrt`` in a fixed context (:data:`DRAW_CONTEXT`), so the same seed
gives the same scenario on every machine and Python version. Draws then
become exact integer units by the roundings documented next to each
conversion (:func:`to_tick`, :func:`to_lot_down`, :func:`to_gwei_down`).
"""

from __future__ import annotations

import contextlib
import csv
import decimal
import hashlib
import importlib.resources
import io
import json
import os
import random
import re
from decimal import Decimal
from pathlib import Path
from typing import Any, Final, Iterator

import attrs

from sandbox._core.money import (
    MONEY_DECIMALS,
    PRICE_DECIMALS,
    SIZE_DECIMALS,
    UnitError,
    _show,
    format_units,
    parse_units,
)
from sandbox._core.safeio import UnsafePath, read_regular
from sandbox._core.specs import TIME_DECIMALS, DataFile, MarketSpec
from sandbox._scenario.parse import parse_document
from sandbox._scenario.reader import GENERATOR_KEYS, MAX_TIME_MS, ScenarioError, _Reader, _typename, reading

__all__ = [
    "GENERATORS",
    "DRAW_CONTEXT",
    "Draws",
    "Distribution",
    "expand",
    "to_tick",
    "to_lot_down",
    "to_gwei_down",
]

# The top-level keys that generate work; a scenario with any of them is stochastic.
GENERATORS: Final = GENERATOR_KEYS

# Every Decimal operation of the generators runs in this context: ln, exp and
# sqrt are correctly rounded in it, so results do not depend on the platform's
# libm or on the caller's decimal context.
DRAW_CONTEXT: Final = decimal.Context(
    prec=34, rounding=decimal.ROUND_HALF_EVEN, Emin=-999_999, Emax=999_999,
    traps=[decimal.InvalidOperation, decimal.DivisionByZero, decimal.Overflow],
)
FRACTION_DECIMALS: Final = 9  # volatility, probabilities, spacings, leverage: up to 1e-9
MAX_COUNT: Final = 100_000
# What one scenario may generate (accounts + orders + events), so that a file
# of a few lines cannot ask for a run of hours, or a load of minutes.
MAX_GENERATED: Final = 200_000
MAX_STEPS: Final = 10_000
MAX_PRICE_UNITS: Final = 10**30  # 1e21 ETH a contract: a walk beyond it has left any sense
MAX_CSV_BYTES: Final = 1024 * 1024
_PRICE_UNIT: Final = Decimal(1).scaleb(-PRICE_DECIMALS)
_SIZE_UNIT: Final = Decimal(1).scaleb(-SIZE_DECIMALS)
_GWEI: Final = Decimal(1).scaleb(-9)


_INDEXED: Final = re.compile(r"[A-Za-z_]{1,40}\[\d{1,9}\]")


# --- draws --------------------------------------------------------------------------


class Draws:
    """The random draws of one generator, from a stream derived from ``(seed, *labels)``."""

    def __init__(self, seed: int, *labels: str) -> None:
        digest = hashlib.sha256(json.dumps([seed, *labels]).encode()).digest()
        self._rng = random.Random(int.from_bytes(digest[:16], "big"))

    def uniform01(self) -> Decimal:
        """Uniform in the open interval (0, 1): an odd multiple of 2**-54, exact."""
        return DRAW_CONTEXT.divide(Decimal(2 * self._rng.getrandbits(53) + 1), Decimal(2**54))

    def below(self, n: int) -> int:
        """A whole number in [0, n), uniform (integer arithmetic only)."""
        return self._rng.randrange(n)

    def chance(self, p: Decimal) -> bool:
        return self.uniform01() < p

    def uniform(self, low: Decimal, high: Decimal) -> Decimal:
        c = DRAW_CONTEXT
        return c.add(low, c.multiply(c.subtract(high, low), self.uniform01()))

    def normal(self) -> Decimal:
        """Standard normal, by Marsaglia's polar method (needs only ln and sqrt)."""
        c = DRAW_CONTEXT
        while True:
            u = c.subtract(c.multiply(2, self.uniform01()), 1)
            v = c.subtract(c.multiply(2, self.uniform01()), 1)
            s = c.add(c.multiply(u, u), c.multiply(v, v))
            if 0 < s < 1:
                return c.multiply(u, c.sqrt(c.divide(c.multiply(-2, c.ln(s)), s)))

    def exponential(self, mean: Decimal) -> Decimal:
        c = DRAW_CONTEXT
        return c.multiply(mean, c.minus(c.ln(self.uniform01())))


@attrs.frozen
class Distribution:
    """A value drawn per use: fixed, uniform, log-normal (clipped) or a choice of values."""

    kind: str  # fixed | uniform | lognormal | choice
    low: Decimal = Decimal(0)
    high: Decimal = Decimal(0)
    median: Decimal = Decimal(0)
    sigma: Decimal = Decimal(0)
    values: tuple[Decimal, ...] = ()

    def draw(self, draws: Draws) -> Decimal:
        c = DRAW_CONTEXT
        if self.kind == "fixed":
            return self.low
        if self.kind == "uniform":
            return draws.uniform(self.low, self.high)
        if self.kind == "choice":
            return self.values[draws.below(len(self.values))]
        value = c.multiply(self.median, c.exp(c.multiply(self.sigma, draws.normal())))
        return min(max(value, self.low), self.high)


# --- exact units from draws -------------------------------------------------------------


def to_tick(price: Decimal, tick: int) -> int:
    """Price units of ``price`` (a Decimal in ETH), to the *nearest* tick (halves up), at least one tick."""
    ticks = (price / _PRICE_UNIT / tick).to_integral_value(rounding=decimal.ROUND_HALF_UP, context=DRAW_CONTEXT)
    return max(int(ticks), 1) * tick


def to_lot_down(size: Decimal, lot: int) -> int:
    """Size units of ``size`` (contracts), rounded *down* to the lot, at least one lot."""
    lots = (size / _SIZE_UNIT / lot).to_integral_value(rounding=decimal.ROUND_FLOOR, context=DRAW_CONTEXT)
    return max(int(lots), 1) * lot


def to_gwei_down(amount: Decimal) -> int:
    """Money units (wei) of ``amount`` (ETH), rounded *down* to a whole gwei (1e-9 ETH), at least 1 gwei."""
    gwei = (amount / _GWEI).to_integral_value(rounding=decimal.ROUND_FLOOR, context=DRAW_CONTEXT)
    return max(int(gwei), 1) * 10 ** (MONEY_DECIMALS - 9)


def _dec(units: int, decimals: int) -> Decimal:
    return Decimal(units).scaleb(-decimals)


def _time(ms: int) -> str:
    return format_units(ms, TIME_DECIMALS)


# --- reading the generator tables -----------------------------------------------------------


class _GenReader(_Reader):
    """A :class:`_Reader` with the value kinds the generators need."""

    def key(self, name: str) -> str:
        if _INDEXED.fullmatch(name):  # an entry of an array ("prices[3]"): a path, not a key to quote
            return f"{self.path}.{name}" if self.path else name
        return super().key(name)

    def fraction(self, name: str, default: str | None = None, *, low: str | None = "0", high: str | None = None,
                 negative: bool = False) -> Decimal:
        units = self.units(name, FRACTION_DECIMALS, default=None if default is None else
                           parse_units(default, FRACTION_DECIMALS, allow_negative=True), allow_negative=negative)
        value = _dec(units, FRACTION_DECIMALS)
        if low is not None and value < Decimal(low):
            self.fail(name, f"must be at least {low}, got {format_units(units, FRACTION_DECIMALS)}")
        if high is not None and value > Decimal(high):
            self.fail(name, f"must be at most {high}, got {format_units(units, FRACTION_DECIMALS)}")
        return value

    def count(self, name: str, default: int | None = None, *, low: int = 0, high: int = MAX_COUNT) -> int:
        value = self.get(name, default is None)
        if value is None:
            assert default is not None
            return default
        if isinstance(value, bool) or not isinstance(value, int):
            self.fail(name, f"expected an integer, got {_typename(value)}")
        if not low <= value <= high:
            self.fail(name, f"must be between {low} and {high}, got {value}")
        return value

    def distribution(self, name: str, decimals: int, default: str | None = None, *, positive: bool = True) -> Distribution:
        """A decimal (fixed) or a table: {min, max} uniform; {median, sigma, min?, max?}; {values}."""
        value = self.get(name, default is None)
        if value is None:
            value = default
        if not isinstance(value, dict):
            fixed = self._decimal(name, value, decimals, positive)
            return Distribution("fixed", low=fixed, high=fixed)
        key = self.key(name)
        t = _GenReader(self.source, key, value)
        if "values" in value:
            raw = t.array("values")
            if not raw:
                t.fail("values", "must not be empty")
            values = tuple(t._decimal(f"values[{i}]", v, decimals, positive) for i, v in enumerate(raw))
            t.done()
            return Distribution("choice", values=values)
        if "median" in value:
            median = t._decimal("median", t.get("median"), decimals, True)
            sigma = t.fraction("sigma", high="10")
            low = t._decimal("min", t.get("min"), decimals, positive) if "min" in value else Decimal(0)
            high = t._decimal("max", t.get("max"), decimals, positive) if "max" in value else Decimal("1e30")
            t.done()
            if low > high:
                t.fail("min", "must not be above max")
            return Distribution("lognormal", low=low, high=high, median=median, sigma=sigma)
        if "min" in value or "max" in value:
            low = t._decimal("min", t.get("min"), decimals, positive)
            high = t._decimal("max", t.get("max"), decimals, positive)
            t.done()
            if low > high:
                t.fail("min", "must not be above max")
            return Distribution("uniform", low=low, high=high)
        t.fail("", "a distribution is a number, or a table with min and max (uniform), "
                   "median and sigma (log-normal) or values (a choice)")
        raise AssertionError  # unreachable

    def _decimal(self, name: str, value: object, decimals: int, positive: bool) -> Decimal:
        self.used.add(name.split("[")[0])
        try:
            units = parse_units(value, decimals, allow_negative=not positive)
        except UnitError as e:
            self.fail(name, str(e))
        if positive and units <= 0:
            self.fail(name, f"must be greater than 0, got {value!r}")
        return _dec(units, decimals)


# --- generated entries ----------------------------------------------------------------------


@attrs.frozen
class _Point:
    at_ms: int
    price: int  # price units


@attrs.define
class _Generated:
    accounts: list[dict[str, Any]] = attrs.Factory(list)
    orders: list[dict[str, Any]] = attrs.Factory(list)
    # (at_ms, phase, n, event): quotes (0) go before the mark they follow (1), order flow after (2).
    events: list[tuple[int, int, int, dict[str, Any]]] = attrs.Factory(list)

    def event(self, at_ms: int, phase: int, event: dict[str, Any]) -> None:
        self.events.append((at_ms, phase, len(self.events), event))

    def reserve(self, r: _Reader, n: int) -> None:
        """Refuse, at this generator's key, what would take the scenario past MAX_GENERATED entries."""
        total = len(self.accounts) + len(self.orders) + len(self.events) + n
        if total > MAX_GENERATED:
            r.fail("", f"would generate {total:,} accounts, orders and events; at most {MAX_GENERATED:,}")


def expand(data: dict[str, Any], source: str, digest: str = "") -> tuple[dict[str, Any], dict[str, Any]]:
    """A stochastic document's generators, expanded from its ``seed``: ``(document, template)``.

    A pure step on documents: ``document`` is an ordinary scenario document
    (the written entries, then the generated ones), for the parser to
    validate and build; ``template`` is the generator document with any
    ``csv`` read into ``prices``, which :meth:`Scenario.for_seed` expands
    again for another seed. The written part is validated first, on its own,
    so that its mistakes are reported at their own keys, and the generators
    read its markets and seed.
    """
    base_doc = {k: v for k, v in data.items() if k not in GENERATORS}
    base = parse_document(base_doc, source, digest)  # the written part first, with its own messages
    markets = {m.symbol: m for m in base.markets}
    template = dict(data)
    taken = {a.id for a in base.accounts}
    gen = _Generated()

    paths: dict[str, list[_Point]] = {}
    raw_paths = _Reader(source, "", data).array("price_paths")
    inlined: list[Any] = []
    for i, raw in enumerate(raw_paths):
        r = _GenReader(source, f"price_paths[{i}]", raw)
        market = _market(r, markets)
        if market.symbol in paths:
            r.fail("market", f"a second price path for {market.symbol!r}")
        with _arithmetic(r):
            points, table = _price_path(r, market, base.seed, source)
        gen.reserve(r, len(points))
        paths[market.symbol] = points
        inlined.append(table)
        for p in points:
            gen.event(p.at_ms, 1, {"at": _time(p.at_ms), "type": "mark_price", "market": market.symbol,
                                   "price": format_units(p.price, PRICE_DECIMALS)})
    if raw_paths:
        template["price_paths"] = inlined

    for i, raw in enumerate(_Reader(source, "", data).array("market_makers")):
        r = _GenReader(source, f"market_makers[{i}]", raw)
        with _arithmetic(r):
            _market_maker(r, markets, paths, base.seed, taken, gen)

    for i, raw in enumerate(_Reader(source, "", data).array("traders")):
        r = _GenReader(source, f"traders[{i}]", raw)
        with _arithmetic(r):
            _population(r, markets, paths, base.seed, taken, gen)

    doc = dict(base_doc)
    doc["accounts"] = list(base_doc.get("accounts", [])) + gen.accounts
    doc["orders"] = list(base_doc.get("orders", [])) + gen.orders
    # The parser sorts events by time, stably: written events keep their place
    # before generated ones at the same time, and generated ones keep their phase order.
    doc["events"] = list(base_doc.get("events", [])) + [e for *_, e in sorted(gen.events, key=lambda t: t[:3])]
    return doc, template


@contextlib.contextmanager
def _arithmetic(r: _Reader) -> Iterator[None]:
    """A draw whose numbers leave Decimal's range is bad input at the generator's key, not a crash."""
    try:
        yield
    except decimal.DecimalException:
        r.fail("", "its numbers go out of range (too large a deposit, leverage, size or price)")


def _market(r: _Reader, markets: dict[str, MarketSpec]) -> MarketSpec:
    symbol = r.string("market")
    if symbol not in markets:
        r.fail("market", f"unknown market {symbol!r}")
    return markets[symbol]  # type: ignore[index]


def _new_account(r: _Reader, key: str, account_id: str, taken: set[str]) -> None:
    if account_id in taken:
        r.fail(key, f"account {account_id!r} already exists")
    if ":" in account_id or "#" in account_id or account_id == "insurance_fund":
        r.fail(key, f"{account_id!r} is reserved or contains ':' or '#'")
    taken.add(account_id)


def _price_at(points: list[_Point], market: MarketSpec, at_ms: int) -> int:
    """The path's price at ``at_ms``: its last point at or before then, else the market's mark."""
    price = market.mark_price
    for p in points:
        if p.at_ms > at_ms:
            break
        price = p.price
    return price


def _price_path(r: _GenReader, market: MarketSpec, seed: int, source: str) -> tuple[list[_Point], dict[str, Any]]:
    table = dict(r.table)
    replay = "csv" in r.table or "prices" in r.table
    if replay:
        if "csv" in r.table and "prices" in r.table:
            r.fail("csv", "give csv or prices, not both")
        if "csv" in r.table:
            rows = _read_csv(r, source)
            table.pop("csv")
            table["prices"] = rows
        else:
            rows = r.array("prices")
        points: list[_Point] = []
        for j, row in enumerate(rows):
            p = _Reader(r.source, r.key(f"prices[{j}]"), row)
            try:
                at = p.units("at", TIME_DECIMALS)
                price = p.units("price", PRICE_DECIMALS, positive=True)
                p.done()
                if points and at < points[-1].at_ms:
                    p.fail("at", "prices must be in time order")
            except ScenarioError as e:
                if "csv" not in r.table:
                    raise
                # Name the line and the column, never the value: it is the file's content.
                column = e.key.rsplit(".", 1)[-1]
                what = "out of time order" if "time order" in e.problem else "not a valid " + (
                    "time in seconds" if column == "at" else "positive price")
                r.fail("csv", f"{_show(str(r.table['csv']), 80)}: line {j + 2}, column {column!r}: {what}")
            # Replayed prices are rounded to the market's nearest tick (halves up).
            points.append(_Point(at, to_tick(_dec(price, PRICE_DECIMALS), market.tick_size)))
        r.done()
        return points, table

    steps = r.count("steps", low=1, high=MAX_STEPS)
    interval = r.units("interval", TIME_DECIMALS, default=1000, positive=True)
    start = r.units("start", TIME_DECIMALS, default=interval)
    volatility = r.fraction("volatility", "0", high="10")
    drift = r.fraction("drift", "0", low="-10", high="10", negative=True)
    jump_p = r.fraction("jump_probability", "0", high="1")
    jump_mean = r.fraction("jump_mean", "0", high="10")
    direction = r.string("jump_direction", required=False, choices=("down", "up", "both")) or "both"
    r.done()
    c = DRAW_CONTEXT
    draws = Draws(seed, "price_path", market.symbol)
    price = _dec(market.mark_price, PRICE_DECIMALS)
    points = []
    for k in range(steps):
        # The draws of one step are always the same four, in the same order,
        # so a change of parameters moves the path but not the stream.
        z = draws.normal()
        jumps = draws.chance(jump_p)
        size = draws.exponential(jump_mean) if jump_mean else Decimal(0)
        up = draws.chance(Decimal("0.5")) if direction == "both" else direction == "up"
        log_return = c.add(drift, c.multiply(volatility, z))
        if jumps:
            log_return = c.add(log_return, size if up else c.minus(size))
        price = c.multiply(price, c.exp(log_return))
        units = to_tick(price, market.tick_size)
        if units > MAX_PRICE_UNITS:
            r.fail("", f"the walk passes {format_units(MAX_PRICE_UNITS, PRICE_DECIMALS)} at step {k + 1}: "
                       "lower volatility, drift or jump_mean")
        at = start + k * interval
        if at > MAX_TIME_MS:
            r.fail("steps", "the path runs past the largest time")
        points.append(_Point(at, units))
    return points, table


def _read_csv(r: _GenReader, source: str) -> list[dict[str, str]]:
    """The rows of the price path's ``csv``: a regular file inside the scenario's folder, or embedded data.

    The file must be inside the scenario file's folder (after symlinks are
    resolved) unless the command was given ``--allow-outside-paths``; only a
    regular file of at most :data:`MAX_CSV_BYTES` is read. A replay's
    scenario reads its csv from the replay (``reading().embedded``), never
    from the disk. Messages name the file, the line and the column, never
    what the file holds.
    """
    name = r.string("csv", max_len=1000)
    assert name is not None
    rules = reading()
    if rules.embedded is not None:
        if name not in rules.embedded:
            r.fail("csv", f"{_show(name, 80)} is not among the data the replay embeds: the replay is not "
                          "self-contained (written by an older sandbox?); explore the scenario again")
        text = rules.embedded[name]
        where = ""
    else:
        path = _csv_path(r, name, source, rules.allow_outside_paths)
        try:
            raw = read_regular(path, MAX_CSV_BYTES, "a csv file")
        except UnsafePath as e:
            r.fail("csv", f"cannot read {_show(name, 80)} ({e.problem})")
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as e:
            r.fail("csv", f"{_show(name, 80)}: is not UTF-8 text (byte {e.start})")
        where = str(path)
    rules.read.append(DataFile(name, text, where))
    reader = csv.DictReader(io.StringIO(text))
    try:
        fieldnames = reader.fieldnames
        if fieldnames is None or not {"at", "price"} <= {f.strip() for f in fieldnames}:
            r.fail("csv", f"{_show(name, 80)}: the first line must name the columns, with at least 'at' and 'price'")
        rows = []
        for row in reader:
            clean = {(k or "").strip(): (v or "").strip() for k, v in row.items() if isinstance(v, str)}
            rows.append({"at": clean.get("at", ""), "price": clean.get("price", "")})
    except csv.Error as e:
        r.fail("csv", f"{_show(name, 80)}: is not a valid csv file (line {reader.line_num}: {e})")
    if not rows:
        r.fail("csv", f"{_show(name, 80)}: has no rows")
    return rows


def _csv_path(r: _GenReader, name: str, source: str, allow_outside: bool) -> Path:
    """Where a csv is: named relatively, next to its scenario file (or among the bundled scenarios).

    Unless ``allow_outside``, the resolved path must lie inside that folder:
    a downloaded scenario cannot make the sandbox read ``/etc/passwd`` or
    ``../../secret.csv``.
    """
    path = Path(name)
    if source.startswith("scenarios/") and not Path(source).exists():
        base = Path(str(importlib.resources.files("scenarios")))
    else:
        base = Path(source).parent
    full = path if path.is_absolute() else base / path
    if not allow_outside:
        root = os.path.realpath(base)
        real = os.path.realpath(full)
        if real != root and not real.startswith(root.rstrip(os.sep) + os.sep):
            r.fail("csv", f"{_show(name, 80)} is outside the scenario's folder; a scenario reads only files "
                          "in its own folder unless the command is given --allow-outside-paths")
    return full


def _market_maker(r: _GenReader, markets: dict[str, MarketSpec], paths: dict[str, list[_Point]], seed: int,
                  taken: set[str], gen: _Generated) -> None:
    account = r.string("account")
    assert account is not None
    _new_account(r, "account", account, taken)
    market = _market(r, markets)
    deposit = r.units("deposit", MONEY_DECIMALS)
    levels = r.count("levels", 5, low=1, high=50)
    spacing = r.fraction("spacing", "0.01", high="0.5")
    if spacing <= 0:
        r.fail("spacing", "must be greater than 0")
    size = r.distribution("size", SIZE_DECIMALS)
    requote = r.boolean("requote", True)
    r.done()
    gen.reserve(r, 1 + 2 * levels + (4 * levels * len(paths.get(market.symbol, [])) if requote else 0))
    draws = Draws(seed, "market_maker", account)
    gen.accounts.append({"id": account, "deposit": format_units(deposit, MONEY_DECIMALS)})
    c = DRAW_CONTEXT
    symbol = market.symbol

    def quotes(tag: str, price_units: int) -> list[dict[str, Any]]:
        price = _dec(price_units, PRICE_DECIMALS)
        out = []
        for k in range(1, levels + 1):
            away = c.multiply(spacing, k)
            # Level k sits k spacings away from the price, on the tick; a bid never crosses to zero.
            bid = to_tick(c.multiply(price, c.subtract(1, away)), market.tick_size)
            ask = to_tick(c.multiply(price, c.add(1, away)), market.tick_size)
            for side, px in (("buy", bid), ("sell", ask)):
                out.append({"account": account, "market": symbol, "side": side,
                            "price": format_units(px, PRICE_DECIMALS),
                            "size": format_units(to_lot_down(size.draw(draws), market.lot_size), SIZE_DECIMALS),
                            "id": f"{tag}{side[0]}{k}"})
        return out

    current = quotes("q0", market.mark_price)
    gen.orders.extend(current)
    if not requote:
        return
    # The book moves first and the oracle follows (the mark is an index of
    # venues' prices, docs/concepts/venues.md): the ladder around each new price is in
    # place just before the mark that triggers liquidations against it.
    for step, point in enumerate(paths.get(symbol, []), start=1):
        for q in current:
            gen.event(point.at_ms, 0, {"at": _time(point.at_ms), "type": "cancel", "account": account,
                                       "order": q["id"]})
        current = quotes(f"q{step}", point.price)
        for q in current:
            gen.event(point.at_ms, 0, {"at": _time(point.at_ms), "type": "order", **q})


def _population(r: _GenReader, markets: dict[str, MarketSpec], paths: dict[str, list[_Point]], seed: int,
                taken: set[str], gen: _Generated) -> None:
    name = r.string("name", max_len=40)
    assert name is not None
    market = _market(r, markets)
    count = r.count("count", low=1, high=10_000)
    long_fraction = r.fraction("long_fraction", "0.5", high="1")
    deposit = r.distribution("deposit", MONEY_DECIMALS)
    leverage = r.distribution("leverage", FRACTION_DECIMALS)
    entry = r.units("entry_price", PRICE_DECIMALS, default=market.mark_price, positive=True)
    if entry % market.tick_size:
        r.fail("entry_price", "is not a multiple of the market's tick_size")
    house_deposit = r.get("house_deposit", False)
    orders = r.count("orders", 0)
    order_size = r.distribution("order_size", SIZE_DECIMALS, "0.01")
    order_offset = r.distribution("order_offset", FRACTION_DECIMALS, "0", positive=False)
    buy_fraction = r.fraction("buy_fraction", "0.5", high="1")
    tif = r.string("order_tif", required=False, choices=("gtc", "ioc")) or "ioc"
    house_units = r.units("house_deposit", MONEY_DECIMALS) if house_deposit is not None else None
    r.done()
    gen.reserve(r, count + 1 + orders)
    width = len(str(count - 1))
    ids = [f"{name}-{i:0{width}d}" for i in range(count)]
    for account_id in ids:
        _new_account(r, "name", account_id, taken)
    house = f"{name}-house"
    _new_account(r, "name", house, taken)

    draws = Draws(seed, "traders", name)
    c = DRAW_CONTEXT
    entry_dec = _dec(entry, PRICE_DECIMALS)
    fmt_entry = format_units(entry, PRICE_DECIMALS)
    net = 0
    for account_id in ids:
        long = draws.chance(long_fraction)
        margin = deposit.draw(draws)
        lev = leverage.draw(draws)
        money = to_gwei_down(margin)
        # size = deposit x leverage / entry price, down to the lot: the realized
        # leverage is at most the drawn one (and at least one lot is held).
        size = to_lot_down(c.divide(c.multiply(_dec(money, MONEY_DECIMALS), lev), entry_dec), market.lot_size)
        if size > MAX_PRICE_UNITS:
            r.fail("leverage", f"deposit x leverage gives {account_id} a position of more than "
                               f"{format_units(MAX_PRICE_UNITS, SIZE_DECIMALS)} contracts")
        signed = size if long else -size
        net += signed
        gen.accounts.append({
            "id": account_id, "deposit": format_units(money, MONEY_DECIMALS),
            "positions": [{"market": market.symbol, "size": format_units(signed, SIZE_DECIMALS),
                           "entry_price": fmt_entry}],
        })
    # The house opened every trader's position against it, all at the same
    # entry price, so the market's starting positions net to zero in size and
    # in cost. Unless told otherwise it holds its net at leverage 1.
    if house_units is None:
        house_units = abs(net) * entry
    house_account: dict[str, Any] = {"id": house, "deposit": format_units(house_units, MONEY_DECIMALS)}
    if net:
        house_account["positions"] = [{"market": market.symbol, "size": format_units(-net, SIZE_DECIMALS),
                                       "entry_price": fmt_entry}]
    gen.accounts.append(house_account)

    if not orders:
        return
    points = paths.get(market.symbol, [])
    first = points[0].at_ms if points else 0
    last = points[-1].at_ms if points else 0
    for _ in range(orders):
        at = first + draws.below(last - first + 1)
        account_id = ids[draws.below(count)]
        buy = draws.chance(buy_fraction)
        size = to_lot_down(order_size.draw(draws), market.lot_size)
        offset = order_offset.draw(draws)
        # A positive offset crosses: a buy limited above the price, a sell below.
        ref = _dec(_price_at(points, market, at), PRICE_DECIMALS)
        factor = c.add(1, offset) if buy else c.subtract(1, offset)
        limit = to_tick(c.multiply(ref, factor), market.tick_size)
        gen.event(at, 2, {"at": _time(at), "type": "order", "account": account_id, "market": market.symbol,
                          "side": "buy" if buy else "sell", "price": format_units(limit, PRICE_DECIMALS),
                          "size": format_units(size, SIZE_DECIMALS), "tif": tif})
