"""A scenario document (parsed TOML, generators already expanded) to validated frozen specs.

Every check happens here, before anything runs, so a bad file is refused with
one message that names the file, the key and the problem
(:class:`ScenarioError`), and nothing is run or written. The format is
documented in docs/reference/scenario-format.md.
"""

from __future__ import annotations

from typing import Any, Final


from sandbox._core.money import (
    MONEY_DECIMALS,
    PRICE_DECIMALS,
    RATE_DECIMALS,
    RATE_ONE,
    SIZE_DECIMALS,
    _show,
    fmt_money,
)
from sandbox._core.delivery import Faults
from sandbox._core.specs import (
    ADL_PRICES,
    isolated_id,
    FUND_ACCOUNT,
    TIME_DECIMALS,
    EVENT_TYPES,
    Tier,
    MarketSpec,
    SHARED_FUND,
    FundSpec,
    PositionSpec,
    AccountSpec,
    OrderSpec,
    EventSpec,
    LIQUIDATION_POLICIES,
    ADL_RANKINGS,
    FUND_INVENTORY_POLICIES,
    BANKRUPTCY_SPLITS,
    MARK_PRICE_POLICIES,
    STALE_POLICIES,
    LIQUIDATION_PRICES,
    Policy,
    DEFAULT_POLICY,
    Scenario,
)

from sandbox._scenario.reader import (
    MAX_FUNDING_TICKS,
    MAX_TIME_MS,
    ScenarioError,
    _BARE_KEY,
    _Reader,
)


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
    values = dict(
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
    r.at_most("partial_fraction", values["partial_fraction"], RATE_ONE, "1 (the whole position)")
    r.at_most("partial_cooldown", values["partial_cooldown_ms"], _DAY_MS, "one day")
    r.at_most("liquidation_fee", values["liquidation_fee"], RATE_ONE // 10 - 1, "just below 0.1 (10%)")
    r.at_most("fee_to_fund", values["fee_to_fund"], RATE_ONE, "1 (every fee)")
    r.at_most("fund_price_band", values["fund_price_band"], RATE_ONE - 1, "just below 1 (100%)")
    r.at_most("fund_retry", values["fund_retry_ms"], _DAY_MS, "one day")
    r.at_most("funding_interval", values["funding_interval_ms"], _DAY_MS, "one day")
    r.at_most("max_funding_rate", values["max_funding_rate"], RATE_ONE // 10, "0.1 (10% per interval)")
    r.at_most("oracle_band", values["oracle_band"], 10 * RATE_ONE, "10 (a move of 1000%)")
    r.at_most("oracle_staleness", values["oracle_staleness_ms"], _DAY_MS, "one day")
    if values["oracle_band"] and not values["oracle_staleness_ms"]:
        # Without a staleness limit a real move beyond the band would be refused forever.
        r.fail("oracle_band", "needs oracle_staleness: a move beyond the band is accepted once the market is stale")
    if "stale_liquidations" in r.table and not values["oracle_staleness_ms"]:
        r.fail("stale_liquidations", "only applies with an oracle_staleness limit")
    r.at_most("step_down_band", values["step_down_band"], RATE_ONE - 1, "just below 1 (100%)")
    r.at_most("backstop_below", values["backstop_below"], RATE_ONE, "1 (the whole maintenance margin)")
    if values["backstop_vault"] and not values["backstop_below"]:
        r.fail("backstop_vault", "only applies with backstop_below")
    r.at_most("fillable_spread", values["fillable_spread"], 10 * RATE_ONE, "10")
    if "fillable_spread" in r.table and values["liquidation_price"] != "fillable":
        r.fail("fillable_spread", "only applies with liquidation_price = 'fillable'")
    r.at_most("revenue_interval", values["revenue_interval_ms"], _DAY_MS, "one day")
    if values["revenue_pool"] and not values["revenue_transfer"]:
        r.fail("revenue_pool", "needs revenue_transfer: how much the pool pays into the fund each interval")
    for key in ("revenue_transfer", "revenue_interval"):
        if key in r.table and not values["revenue_pool"]:
            r.fail(key, "only applies with a revenue_pool")
    if "fund_floor" in r.table and not values["socialized_loss"]:
        r.fail("fund_floor", "only applies with socialized_loss = true")
    if "step_down_band" in r.table and not values["tier_step_down"]:
        r.fail("step_down_band", "only applies with tier_step_down = true")
    policy = r.build(Policy, values)
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


def parse_document(data: dict[str, Any], source: str = "<scenario>", digest: str = "") -> Scenario:
    """Validate a parsed TOML document with no generators and build a :class:`Scenario`."""
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
        values = dict(
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
        top_initial = max([values["initial_margin"]] + [t.initial_margin for t in tiers])
        if top_initial * values["risk_factor"] > RATE_ONE * RATE_ONE:
            r.fail("risk_factor", "makes an initial margin rate above 1 (100% of notional)")
        if values["initial_margin"] > RATE_ONE:
            r.fail("initial_margin", "must be at most 1 (100% of notional)")
        if values["maintenance_margin"] >= values["initial_margin"]:
            r.fail("maintenance_margin", "must be below initial_margin")
        for fee in ("maker_fee", "taker_fee"):
            if values[fee] >= RATE_ONE // 10:
                r.fail(fee, "must be below 0.1 (10%)")
        if values["mark_price"] % values["tick_size"]:
            r.fail("mark_price", "is not a multiple of tick_size")
        if policy.mark_price == "median" and values["index_price"] is None:
            r.fail("index_price", "is required with policy.mark_price = 'median'")
        spec = r.build(MarketSpec, values)
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
