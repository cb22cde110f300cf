"""The liquidation engine: takes an account over and closes its positions at the bankruptcy price.

Steps, after NFEX's cross-margin procedure (docs/concepts/venues.md):

1. On ``LiquidationRequested`` it asks clearing to freeze the account; clearing
   cancels the account's open orders and answers with the final balance and
   positions (``AccountFrozen``). A request for an account already being
   liquidated is ignored: no account is liquidated twice at once.
2. It re-checks equity <= maintenance margin on that authoritative snapshot
   with its own marks; if the account is healthy after all, it hands the
   account back (``UnfreezeAccount``).
3. It computes a bankruptcy price per position and sends one IOC order per
   position, limited at that price. Whatever the order does not fill is
   handed to the insurance fund at the bankruptcy price (``TakeOverPosition``).
4. Clearing settles the account once every position is closed: a fill better
   than the bankruptcy price leaves equity, which goes to the fund.

Partial liquidation (``liquidation = "partial"``), Hyperliquid's stated rule:
a liquidatable position whose mark notional exceeds ``partial_threshold`` is
first sent one order for ``partial_fraction`` (20%) of it; the account is then
handed back, whatever its margin. An account with negative equity (a gap) is
closed in full: no slice can bring it back. For ``partial_cooldown`` (30 s) after that,
every liquidation of the account is for the entire position. (Hyperliquid
sends a market order and never freezes the account; the sandbox freezes it
while its one order is in flight, so the snapshot the order was priced on is
final, and limits the order at the bankruptcy price, so the slice cannot take
the account below zero.)

Tier step-down (``tier_step_down``, Binance's tier-reducing IOC, BitMEX's
risk-limit step): before anything else, a position above its market's first
tier gets one IOC at market (within ``step_down_band`` of the mark, never past
its bankruptcy price) down to the bound of the tier below; what it does not
fill stays the account's; the account is then judged again on a new snapshot
and handed back if healthy (``liquidation_restored``, ``after="step_down"``),
else liquidated as usual. Backstop (``backstop_below``, Hyperliquid): an
account below that share of its maintenance margin sends nothing to the book;
every position goes to the fund (the vault) at its bankruptcy price at once.
Maintenance margins here are tiered when the market has tiers (one rule,
:func:`actors._common.position_margin`).

Bankruptcy prices (cross margin). The bankruptcy prices are the prices at
which closing every position leaves the account's balance at exactly zero.
With equity ``Q`` (balance + unrealized PnL at mark):

* ``Q >= 0``: the cushion ``Q`` is split over the positions in proportion to
  their mark notional ``|size| x mark`` (floor division; the residue goes to
  the largest position), and each position's bankruptcy price is
  ``mark - Q_k / size``: a long sells below its mark, a short buys above it,
  both on the market's side, so the orders can fill.
* ``Q < 0`` (a gap): no set of prices on the market's side can bring the
  account back to zero, so *flat and winning positions are priced at their
  mark* (closing them realizes their gain at the mark; they carry nothing),
  and the deficit ``-Q`` is carried by the *losing* positions, in proportion
  to each one's loss at mark (policy ``bankruptcy_split = "loss"``) or to its
  maintenance margin (``"maintenance_margin"``, as dYdX v4 splits it). A
  losing position's bankruptcy price lies beyond its mark, between the mark
  and its entry: the fund takes it over there and counterparties are
  deleveraged there, never at a price on the wrong side of a market that did
  not move against the account.
* No clamping: a losing position carries at most its own loss (its price
  stays between its mark and its entry; under the maintenance-margin split a
  barely losing leg with a large margin would otherwise be priced far beyond
  its entry), and a short never more than ``|size| x (mark - tick)``; what a
  position cannot carry moves to the other losing positions, then to the
  winning ones.

Each price is rounded to the tick up for a long and down for a short: the
direction that keeps the account's equity at its bankruptcy prices >= 0, so a
settled account never ends negative. The sub-tick remainder is swept to the
fund with the surplus, so nothing is lost. (Today's proportional split of a
negative equity over *every* position, clamped at one tick, is kept in the
bug zoo as ``clamped_bankruptcy_split``.)
"""

from __future__ import annotations

from typing import Mapping

import attrs

from sandbox.messages import (
    Event,
    AccountFrozen,
    AccountSnapshotRequested,
    FreezeAccount,
    LiquidationEnded,
    LiquidationRequested,
    LiquidationSettled,
    MarkPriceUpdated,
    Order,
    OrderClosed,
    PositionView,
    SubmitOrder,
    TakeOverPosition,
    UnfreezeAccount,
)
from sandbox._core.money import RATE_ONE, ceil_div, fmt_money, fmt_price, fmt_size, sign
from sandbox._core.actor import Actor
from sandbox._core.specs import DEFAULT_POLICY, MarketSpec, Policy

from . import accounting
from ._common import (
    CLEARING,
    ENGINE,
    MONITOR,
    book_name,
    equity,
    maintenance_margin,
    margin_units,
    position_margin,
    round_price_down,
    round_price_up,
)

__all__ = ["LiquidationEngine", "bankruptcy_prices", "closing_fees"]


def bankruptcy_prices(
    balance: int,
    positions: tuple[PositionView, ...],
    marks: Mapping[str, int],
    markets: Mapping[str, MarketSpec],
    split: str = "loss",
    closing_fee: bool = False,
) -> dict[str, int]:
    """The bankruptcy price of each position of a cross-margin account (see module doc).

    With ``closing_fee`` (Bybit, ``policy.bankruptcy_closing_fee``) a positive
    cushion first keeps the fee to close every position at its mark
    (``ceil(|size| x mark x taker fee)`` each): the split is of
    ``max(Q - fees, 0)``, so each price lies that much closer to its mark.

    With equity ``Q >= 0`` the cushion is split over every position by mark
    notional (a long's share is capped so its price stays >= one tick; what it
    cannot take moves to the others). With ``Q < 0`` the flat and winning legs
    are priced at their mark and the deficit ``-Q`` is carried by the losing
    legs, in proportion to their loss at mark (``split = "loss"``) or to their
    maintenance margin (``split = "maintenance_margin"``, dYdX v4); a short
    cannot carry more than ``|size| x (mark - tick)`` and what it cannot carry
    moves to the other losing legs, then to the winning ones. Prices are
    rounded to the tick up for a long and down for a short (the account's
    equity at its bankruptcy prices stays >= 0). A deficit that no leg can
    carry is only possible with a negative balance and nothing but shorts near
    a price of one tick; it would settle the account below zero, which the
    invariants report ("no loss left on an account that cannot pay it").
    """
    return _allocate(balance, positions, marks, markets, split, closing_fee)


def closing_fees(positions: tuple[PositionView, ...], marks: Mapping[str, int],
                 markets: Mapping[str, MarketSpec]) -> int:
    """The taker fee of closing every position at its mark, each rounded up (Bybit's fee to close)."""
    return sum(accounting.trading_fee(p.size, marks[p.market], markets[p.market].taker_fee) for p in positions)


def _capacity(p: PositionView, marks: Mapping[str, int], markets: Mapping[str, MarketSpec], sign_: int) -> int | None:
    """How much of a share of sign ``sign_`` the position can take before its price passes one tick.

    ``share`` moves the price by ``-share / size``: a long's price falls with
    a positive share, a short's with a negative one. None: no bound.
    """
    tick = markets[p.market].tick_size
    if (p.size > 0) == (sign_ > 0):
        return abs(p.size) * max(marks[p.market] - tick, 0)
    return None


def _share_out(amount: int, legs: list[int], weights: dict[int, int], caps: dict[int, int | None]) -> dict[int, int]:
    """Split ``amount`` (>= 0) over ``legs`` by ``weights``, each capped; the overflow moves on.

    Floor division; the residue goes to the leg with the largest weight (the
    first such) that still has room. Returns what each leg takes; what no leg
    can take is ``amount - sum(result)``.
    """
    taken = {i: 0 for i in legs}
    open_legs = list(legs)
    left = amount
    while left and open_legs:
        total = sum(weights[i] for i in open_legs)
        if total == 0:
            parts = {i: 0 for i in open_legs}
            parts[open_legs[0]] = left
        else:
            parts = {i: left * weights[i] // total for i in open_legs}
            largest = max(open_legs, key=lambda i: (weights[i], -i))
            parts[largest] += left - sum(parts.values())
        full = []
        for i in open_legs:
            cap = caps[i]
            room = parts[i] if cap is None else min(parts[i], cap - taken[i])
            taken[i] += room
            left -= room
            if cap is not None and taken[i] >= cap:
                full.append(i)
        if not full:
            break
        open_legs = [i for i in open_legs if i not in full]
    return taken


def _allocate(
    balance: int,
    positions: tuple[PositionView, ...],
    marks: Mapping[str, int],
    markets: Mapping[str, MarketSpec],
    split: str,
    closing_fee: bool = False,
) -> dict[str, int]:
    triples = [(p.market, p.size, p.entry_value) for p in positions]
    q = equity(balance, triples, marks)
    idx = list(range(len(positions)))
    shares = {i: 0 for i in idx}  # signed: equity each leg uses up (> 0) or must recover (< 0)
    if q >= 0:
        cushion = q
        if closing_fee:
            cushion = max(0, q - closing_fees(positions, marks, markets))
        weights = {i: abs(p.size) * marks[p.market] for i, p in enumerate(positions)}
        caps = {i: _capacity(p, marks, markets, 1) for i, p in enumerate(positions)}
        shares.update(_share_out(cushion, idx, weights, caps))
        # A cushion no long can take (every leg at one tick) stays with the
        # account and is swept to the fund at settlement: nothing to carry.
    else:
        deficit = -q
        pnl = {i: accounting.unrealized_pnl(p.size, p.entry_value, marks[p.market]) for i, p in enumerate(positions)}
        losing = [i for i in idx if pnl[i] < 0]
        winning = [i for i in idx if pnl[i] >= 0]
        if split == "maintenance_margin":
            # Each leg's maintenance margin, exactly (tiers and risk factor included).
            weights = {
                i: margin_units(markets[p.market], abs(p.size) * marks[p.market])
                for i, p in enumerate(positions)
            }
        else:
            weights = {i: -pnl[i] if pnl[i] < 0 else abs(positions[i].size) * marks[positions[i].market]
                       for i in idx}
        caps = {i: _capacity(p, marks, markets, -1) for i, p in enumerate(positions)}
        # A losing leg carries at most its own loss (its price stays between its
        # mark and its entry): with a balance >= 0 the losses cover the deficit,
        # so under either split nobody is deleveraged beyond the bankrupt's entry.
        losing_caps = {i: -pnl[i] if caps[i] is None else min(caps[i], -pnl[i]) for i in losing}
        taken = _share_out(deficit, losing, weights, losing_caps)
        rest = deficit - sum(taken.values())
        if rest:
            taken.update(_share_out(rest, winning, weights, caps))
        for i, v in taken.items():
            shares[i] = -v
    prices: dict[str, int] = {}
    for i, p in enumerate(positions):
        tick = markets[p.market].tick_size
        exact_num = p.size * marks[p.market] - shares[i]  # = size x bankruptcy price
        if p.size > 0:
            price = round_price_up(ceil_div(exact_num, p.size), tick)
        else:
            price = round_price_down(exact_num // p.size, tick)
        prices[p.market] = price
    return prices


@attrs.define
class Liquidation:
    """One liquidation in progress, the engine's own record of it: what its hooks receive as ``liq``.

    ``prices`` are the bankruptcy prices by market (set when the account is
    frozen), ``sides`` each position's sign, ``open_orders`` the liquidation
    orders not yet closed. A variant reads it; only the engine changes it.
    """

    liq_id: int
    account: str
    request: LiquidationRequested
    prices: dict[str, int] = attrs.Factory(dict)
    sides: dict[str, int] = attrs.Factory(dict)  # +1 long, -1 short, per market
    open_orders: set[str] = attrs.Factory(set)
    bankrupt: bool = False
    # Partial liquidation: slices done so far, each sliced position's size at
    # the start (what a slice is a fraction of), and what each market keeps.
    slices: int = 0
    initial: dict[str, int] = attrs.Factory(dict)
    keep: dict[str, int] = attrs.Factory(dict)
    # Tier step-down: True once the step-down round has been sent; the sizes it
    # sent and each position's size before it, while that round is in flight.
    stepped: bool = False
    step_sent: dict[str, int] = attrs.Factory(dict)
    step_from: dict[str, int] = attrs.Factory(dict)


class LiquidationEngine(Actor):
    policy: Policy = DEFAULT_POLICY

    def __init__(self, markets: Mapping[str, MarketSpec]) -> None:
        super().__init__(ENGINE)
        self.markets = dict(markets)
        self.marks = {m: spec.mark_price for m, spec in self.markets.items()}
        self.versions = {m: 0 for m in self.markets}
        self.active: dict[str, Liquidation] = {}  # account -> its liquidation
        self._next_id = 0
        # When each mark was accepted by the oracle (virtual ms), for staleness.
        self.valid_at = {m: 0 for m in self.markets}
        self.paused: dict[str, LiquidationRequested] = {}  # account -> its held request
        # Partial liquidation: when each account was last handed back after a slice (virtual ms).
        self.last_partial: dict[str, int] = {}

    def is_stale(self, market: str) -> bool:
        return self.policy.is_stale(self.valid_at[market], self.now_ms)

    def on_MarkPriceUpdated(self, msg: MarkPriceUpdated) -> None:
        self._adopt(msg.market, msg.price, msg.version, msg.observed_ms)
        for account, request in list(self.paused.items()):
            if not any(self.is_stale(m) for m, _, _ in request.marks):
                del self.paused[account]
                self.emit(Event.LIQUIDATION_RESUMED, account=account)
                self.on_LiquidationRequested(request)

    def _adopt(self, market: str, price: int, version: int, observed_ms: int | None = None) -> None:
        if version > self.versions[market]:
            self.marks[market] = price
            self.versions[market] = version
        if observed_ms is not None and version >= self.versions[market]:
            self.valid_at[market] = max(self.valid_at[market], observed_ms)

    def on_LiquidationRequested(self, msg: LiquidationRequested) -> None:
        valid_at = dict(msg.valid_at)
        for market, price, version in msg.marks:
            self._adopt(market, price, version, valid_at.get(market))
        if msg.account in self.active:
            self.emit(Event.LIQUIDATION_REQUEST_IGNORED, account=msg.account, reason="already being liquidated")
            return
        if self.policy.pauses_when_stale:
            stale = [m for m, _, _ in msg.marks if self.is_stale(m)]
            if stale:
                if msg.account not in self.paused:
                    self.emit(Event.LIQUIDATION_PAUSED, account=msg.account, markets=stale,
                              equity=fmt_money(msg.equity), maintenance_margin=fmt_money(msg.maintenance_margin))
                self.paused[msg.account] = msg
                return
        self._next_id += 1
        self.active[msg.account] = Liquidation(self._next_id, msg.account, msg)
        self.send(CLEARING, FreezeAccount(self._next_id, msg.account))

    def account_view(self, liq: Liquidation, msg: AccountFrozen) -> tuple[int, tuple[PositionView, ...]]:
        """The balance and positions to liquidate: clearing's final snapshot, never the monitor's view."""
        return msg.balance, msg.positions

    def on_AccountFrozen(self, msg: AccountFrozen) -> None:
        liq = self.active[msg.account]
        balance, positions = self.account_view(liq, msg)
        triples = [(p.market, p.size, p.entry_value) for p in positions]
        eq = equity(balance, triples, self.marks)
        mm = maintenance_margin(triples, self.marks, self.markets)
        if liq.slices or not positions or eq > mm:
            # Hyperliquid: one order for a slice, then the account is its owner's
            # again, whatever its margin; if it is still liquidatable, the next
            # liquidation (within the cooldown) closes the entire position.
            if liq.slices:
                self.last_partial[msg.account] = self.now_ms
            del self.active[msg.account]
            restored = liq.slices or liq.stepped  # a step-down that left the account healthy
            outcome = "restored" if restored else "cancelled"
            self.emit(
                Event.LIQUIDATION_RESTORED if restored else Event.LIQUIDATION_CANCELLED, account=msg.account,
                liq_id=liq.liq_id, equity=fmt_money(eq), maintenance_margin=fmt_money(mm),
                **({"positions": {p.market: fmt_size(p.size) for p in positions}} if restored else {}),
                **({"after": "step_down"} if liq.stepped and not liq.slices else {}),
            )
            self.send(CLEARING, UnfreezeAccount(liq.liq_id, msg.account))
            self.send(MONITOR, LiquidationEnded(liq.liq_id, msg.account, outcome, self._marks_of(positions),
                                                msg.version))
            return
        liq.prices = self.bankruptcy_prices(balance, positions)
        if (self.policy.backstop_below and eq * RATE_ONE < mm * self.policy.backstop_below
                and liq.account != self.policy.backstop_vault):  # the vault itself is liquidated as usual
            return self.backstop(liq, positions, eq, mm)
        if self.policy.tier_step_down and not liq.stepped and self.step_down(liq, positions, eq, mm):
            return
        sizes = self.slice_sizes(liq, positions) if eq >= 0 else {p.market: abs(p.size) for p in positions}
        sliced = {p.market: fmt_size(sizes[p.market]) for p in positions if sizes[p.market] != abs(p.size)}
        fields = dict(
            account=msg.account, liq_id=liq.liq_id, equity=fmt_money(eq), maintenance_margin=fmt_money(mm),
            bankruptcy_prices={m: fmt_price(p) for m, p in liq.prices.items()},
            positions={p.market: fmt_size(p.size) for p in positions},
        )
        limits = self.order_limits(liq, positions, eq, mm)
        if self.policy.liquidation_price == "fillable":
            fields["limits"] = {m: fmt_price(x) for m, x in limits.items()}
        if sliced:  # one slice, after which the account is handed back (module doc)
            fields.update(slice=1, closing={p.market: fmt_size(sizes[p.market]) for p in positions})
        self.emit(Event.LIQUIDATION_STARTED, **fields)
        liq.slices += 1
        for p in positions:
            order_id = f"liq{liq.liq_id}:{p.market}"
            liq.open_orders.add(p.market)
            liq.sides[p.market] = 1 if p.size > 0 else -1
            liq.keep[p.market] = p.size - sign(p.size) * sizes[p.market]
            order = Order(
                order_id, msg.account, p.market, "sell" if p.size > 0 else "buy", limits[p.market],
                sizes[p.market], "ioc", "liquidation", CLEARING, ENGINE,
            )
            self.send(book_name(p.market), SubmitOrder(order))

    def order_limits(self, liq: Liquidation, positions: tuple[PositionView, ...], eq: int, mm: int) -> dict[str, int]:
        """Each liquidation order's limit: the bankruptcy price, or dYdX's fillable price.

        Fillable (``liquidation_price = "fillable"``): ``mark -/+ spread x
        (the position's maintenance margin / |size|) x BA`` with ``BA = (MM -
        equity) / MM`` clamped to [0, 1] (at maintenance margin the order is
        limited at the mark; at zero equity or below, ``spread`` maintenance
        rates away), rounded to the tick towards the mark, and never past the
        bankruptcy price: a liquidation fill never takes the account below zero.
        """
        if self.policy.liquidation_price != "fillable":
            return dict(liq.prices)
        out: dict[str, int] = {}
        ba_num, ba_den = min(max(mm - eq, 0), mm), mm  # BA = ba_num / ba_den, in [0, 1]
        for p in positions:
            spec, mark = self.markets[p.market], self.marks[p.market]
            margin = position_margin(spec, abs(p.size) * mark)  # the position's maintenance margin, wei
            # offset (price units) = spread/ONE x margin/|size| x BA
            num = self.policy.fillable_spread * margin * ba_num
            den = RATE_ONE * abs(p.size) * ba_den if ba_den else 1
            if p.size > 0:
                limit = round_price_up(mark - num // den, spec.tick_size)
                out[p.market] = max(limit, liq.prices[p.market])
            else:
                limit = round_price_down(mark + ceil_div(num, den), spec.tick_size)
                out[p.market] = min(limit, liq.prices[p.market])
        return out

    def backstop(self, liq: Liquidation, positions: tuple[PositionView, ...], eq: int, mm: int) -> None:
        """Hyperliquid's backstop: below ``backstop_below`` of maintenance margin, no order to the book.

        The fund, as the backstop vault, takes every position over at its
        bankruptcy price: with it the account's margin (the position's value
        at the mark less the price is the account's equity, share by share).
        """
        self.emit(
            Event.LIQUIDATION_STARTED, account=liq.account, liq_id=liq.liq_id, equity=fmt_money(eq),
            maintenance_margin=fmt_money(mm), bankruptcy_prices={m: fmt_price(p) for m, p in liq.prices.items()},
            positions={p.market: fmt_size(p.size) for p in positions}, backstop=True,
        )
        liq.slices += 1
        for p in positions:
            liq.sides[p.market] = 1 if p.size > 0 else -1
            liq.keep[p.market] = 0
            self.take_over(liq, p.market, p.size, liq.prices[p.market], backstop=True)

    def step_sizes(self, positions: tuple[PositionView, ...]) -> dict[str, int]:
        """How much of each position the tier step-down sells: down to the bound of the tier below.

        A position whose mark notional is in tier k > 0 of its market's table
        is reduced to the largest whole number of lots whose notional is at
        most tier k-1's bound; positions in the first tier (or in a market
        without tiers) are not stepped.
        """
        out: dict[str, int] = {}
        for p in positions:
            spec, mark = self.markets[p.market], self.marks[p.market]
            notional = abs(p.size) * mark
            below = [t.notional for t in spec.tiers[:-1] if t.notional is not None and t.notional < notional]
            if not below:
                continue
            target = below[-1] // mark // spec.lot_size * spec.lot_size
            if abs(p.size) > target:
                out[p.market] = abs(p.size) - target
        return out

    def step_down(self, liq: Liquidation, positions: tuple[PositionView, ...], eq: int, mm: int) -> bool:
        """Binance's tier-reducing IOC (BitMEX's risk-limit step); False if no position is above a lower tier.

        One IOC per stepped position, at market within ``step_down_band`` of the
        mark and never past its bankruptcy price (the account cannot end below
        zero); what it does not fill stays the account's. The account is then
        judged again on clearing's next snapshot: handed back if healthy, else
        liquidated as usual at the bankruptcy price.
        """
        sizes = self.step_sizes(positions)
        if not sizes:
            return False
        liq.stepped = True
        band = self.policy.step_down_band
        limits: dict[str, int] = {}
        for p in positions:
            if p.market not in sizes:
                continue
            mark, tick = self.marks[p.market], self.markets[p.market].tick_size
            if p.size > 0:
                by_band = round_price_up(ceil_div(mark * (RATE_ONE - band), RATE_ONE), tick)
                limits[p.market] = max(by_band, liq.prices[p.market], tick)
            else:
                limits[p.market] = min(round_price_down(mark * (RATE_ONE + band) // RATE_ONE, tick),
                                       liq.prices[p.market])
        self.emit(Event.LIQUIDATION_STEP_DOWN, account=liq.account, liq_id=liq.liq_id, equity=fmt_money(eq),
                  maintenance_margin=fmt_money(mm), positions={p.market: fmt_size(p.size) for p in positions},
                  closing={m: fmt_size(q) for m, q in sizes.items()},
                  limits={m: fmt_price(x) for m, x in limits.items()})
        for p in positions:
            liq.sides[p.market] = 1 if p.size > 0 else -1
            liq.step_from[p.market] = p.size
            if p.market not in sizes:  # not stepped: it keeps its whole size this round
                liq.keep[p.market] = p.size
                self.take_over(liq, p.market, 0, liq.prices[p.market])
                continue
            liq.open_orders.add(p.market)
            liq.step_sent[p.market] = sizes[p.market]
            liq.keep[p.market] = p.size - sign(p.size) * sizes[p.market]
            order = Order(
                f"liq{liq.liq_id}:{p.market}", liq.account, p.market, "sell" if p.size > 0 else "buy",
                limits[p.market], sizes[p.market], "ioc", "liquidation", CLEARING, ENGINE,
            )
            self.send(book_name(p.market), SubmitOrder(order))
        return True

    def bankruptcy_prices(self, balance: int, positions: tuple[PositionView, ...]) -> dict[str, int]:
        """Each position's bankruptcy price (an extension hook; module doc has the rule)."""
        return bankruptcy_prices(balance, positions, self.marks, self.markets, self.policy.bankruptcy_split,
                                 self.policy.bankruptcy_closing_fee)

    def slice_sizes(self, liq: Liquidation, positions: tuple[PositionView, ...]) -> dict[str, int]:
        """How much of each position this round closes: all of it, or a slice (module doc)."""
        policy = self.policy
        sizes: dict[str, int] = {}
        last = self.last_partial.get(liq.account)
        recent = last is not None and self.now_ms - last < policy.partial_cooldown_ms
        for p in positions:
            size = abs(p.size)
            if (policy.liquidation == "partial" and not recent
                    and size * self.marks[p.market] > policy.partial_threshold):
                lot = self.markets[p.market].lot_size
                start = liq.initial.setdefault(p.market, size)
                one_slice = ceil_div(ceil_div(start * policy.partial_fraction, RATE_ONE), lot) * lot
                size = min(size, one_slice)
            sizes[p.market] = size
        return sizes

    def on_OrderClosed(self, msg: OrderClosed) -> None:
        liq = self.active[msg.account]
        liq.open_orders.discard(msg.market)
        if msg.market in liq.step_sent:
            # A step-down order: what it did not fill stays the account's, nothing goes to the fund.
            filled = liq.step_sent.pop(msg.market) - msg.unfilled
            liq.keep[msg.market] = liq.step_from[msg.market] - liq.sides[msg.market] * filled
            self.take_over(liq, msg.market, 0, liq.prices[msg.market])
            if not liq.open_orders:
                self.send(CLEARING, AccountSnapshotRequested(liq.liq_id, liq.account))
            return
        price = liq.prices[msg.market]
        # The part the liquidation order could not fill, signed like the position.
        remaining = liq.sides[msg.market] * msg.unfilled
        if remaining and not liq.bankrupt:
            liq.bankrupt = True
            self.emit(Event.BANKRUPTCY, account=msg.account, liq_id=liq.liq_id, market=msg.market)
        self.take_over(liq, msg.market, remaining, price)
        if not liq.open_orders and any(liq.keep.values()):
            # A slice is done and the account keeps part of a position: hand it
            # back on the snapshot clearing sends once the slice's fills are applied.
            self.send(CLEARING, AccountSnapshotRequested(liq.liq_id, liq.account))

    def take_over(self, liq: Liquidation, market: str, size: int, price: int, backstop: bool = False) -> None:
        """Hand what the liquidation order did not fill to the fund (or the backstop vault), at the bankruptcy price."""
        self.send(CLEARING, TakeOverPosition(liq.liq_id, liq.account, market, size, price,
                                             keep=liq.keep.get(market, 0), mark=self.marks[market],
                                             mark_version=self.versions[market], backstop=True if backstop else None))

    def on_LiquidationSettled(self, msg: LiquidationSettled) -> None:
        liq = self.active.pop(msg.account)
        self.send(MONITOR, LiquidationEnded(liq.liq_id, msg.account, "settled"))

    def _marks_of(self, positions: tuple[PositionView, ...]) -> tuple[tuple[str, int, int], ...]:
        return tuple((p.market, self.marks[p.market], self.versions[p.market]) for p in positions)
