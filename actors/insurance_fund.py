"""The insurance fund: one for every market (or one per group of markets), never below zero.

It owns its balance and its inventory. Its income is the surplus of
liquidations that filled better than the bankruptcy price
(``SurplusTransferred``) and the profit of closing taken-over positions well;
its spending is the loss of closing them badly.

A taken-over position becomes a *lot*: its size, its bankruptcy price, and
``basis``, the cost of the lot minus the proceeds of what has been sold of it
(so the lot's value at mark is ``size x mark - basis``, and when it is flat,
``-basis`` is its realized PnL, with no division anywhere).

Reservations. Each open lot reserves the most it can still lose:
``max(0, basis - size x price)`` over the prices it may still be closed at:
its mark (held, or sold in the book near the mark), its bankruptcy price (ADL
closes it there) and, while an order of the fund is in the book, that order's
limit. ``available = balance - reserved``. A reservation is recomputed
whenever its inputs change, so it is released down to the realized loss as
soon as an order closes or a lot is deleveraged, and it follows the mark while
the fund holds the lot. Every order the fund sends is limited so that its
worst fill keeps ``available >= 0``; so realized losses never exceed the
balance, and the fund's balance never goes below zero, whatever the order in
which concurrent bankruptcies reach it.

The rule (``policy.fund_inventory``), NFEX's by default:

* ``"work"``: NFEX says ADL happens only when "the assets in the insurance
  fund pool are depleted, and the insurance fund protocol is unable to accept
  positions from the liquidation engine". The fund *accepts* a lot when its
  available assets, after what its held inventory would lose at the mark,
  cover the new lot's loss at the mark; it accepts a lot whole or not at all
  (a lot is one position of one liquidation; taking part of it would leave
  the same bankruptcy split between two owners for no gain in solvency).
  An accepted lot is offered to the book at once with an IOC limited within
  ``fund_price_band`` of the mark (and within its budget); what does not fill
  is held as inventory, valued at the mark, and offered again on every later
  mark of its market, at the new mark: the fund steps its price as the market
  moves, as BitMEX's fund did in March 2020, when ADL was prevented
  completely. A lot the fund cannot accept goes to ADL whole, at once. When
  held inventory later *drains* the fund (``available < 0`` after a mark
  moves against it, or after its orders filled badly), its oldest held lots
  go to ADL until ``available >= 0`` again.
* ``"close"``: the sandbox's former default, an immediate takeover as Bybit
  and Binance describe theirs: one IOC within the band and the budget, and
  whatever does not fill goes to ADL at once, whatever the fund holds.
* ``"keep"``: the fund holds every lot and never trades it (Hyperliquid's
  backstop vault took over JELLY's short and held it); ADL only when drained.

ADL closes a lot, held or fresh, at the lot's *bankruptcy price*: the
counterparty is deleveraged at the price the bankrupt account was closed at,
as BitMEX and NFEX describe it, however long the fund has held the lot
(``adl_price = "previous_mark"``, Hyperliquid: at the fund's previous mark,
as far as its budget pays the difference; :meth:`InsuranceFund.adl_price_for`). A lot
ADL could not place (every opposing account was under liquidation) is kept,
offered again after ``fund_retry_ms`` up to ``fund_retries`` times, and on
every later mark. The fund nets a long and a short lot of one market *at the
mark*: that realizes exactly what the two lots lose at the mark together,
which their reservations already cover, so netting never realizes a loss the
fund did not reserve.

Also (``sandbox._core.specs.Policy``):

* funding: asked for a contribution (receivers are owed more than payers
  paid, because the fund's inventory is on the paying side), the fund pays
  what it has available, never more (``FundingContributed``); it receives the
  rest of a round (its own receipt and the rounding).
* ``fee_to_fund``: its share of trading fees (``FeeShareTransferred``).
* ``liquidation_fee``: the clearance fee arrives as a ``SurplusTransferred``
  with reason "clearance_fee".
* ``socialized_loss`` (Drift v2): instead of ADL the fund keeps the lot and
  asks clearing to charge what holding it leaves it short of ``fund_floor``
  to the market's open positions (``SocializeLoss``); ADL only if that
  collects too little. ``revenue_pool``: a pool outside the fund pays a
  transfer into it every interval, credited on the marks (:meth:`_feed`).
* ``fund_loss_limit``: a capped vault (Hyperliquid's liquidator vault after
  JELLY): what it has lost on taken-over positions so far counts against the
  cap, and ``available`` is the smaller of what the balance and what the cap
  leave; past the cap ADL takes over, however rich the fund is.

Several funds (``[[funds]]``, Binance): one actor holds one *ledger* per
fund, each with its own balance, its own lots (a lot is its market's fund's)
and its own ``available``; every rule above applies per ledger: a lot is
accepted, budgeted, netted and drained against its own fund only, so a
surplus in one group never pays a bankruptcy in another. Income follows the
market it comes from (a fee share, funding); a liquidation's surplus goes to
the fund of the first of its markets in symbol order (the sandbox's choice:
a cross-margin account may span funds). With one fund, the default, there is
one ledger, ``"shared"``, and nothing changes. One actor with several
ledgers, not one actor per fund, so the rest of the exchange still has one
fund to send to and the invariants and ``check-log`` still see every lot.

Extension hooks (see docs, "Your own variant"): :attr:`RESERVES` (False:
reserve nothing), :meth:`reserve` (what a lot may still lose),
:meth:`accepts` (may the fund take this lot over), :meth:`budget` (what
closing a lot may lose).
"""

from __future__ import annotations

from typing import ClassVar, Mapping

import attrs

from sandbox.messages import (
    Invariant,
    Event,
    DeleverageAbandoned,
    DeleverageRequested,
    FeeShareTransferred,
    Fill,
    FundingContributed,
    FundingContributionRequested,
    FundingRemainderTransferred,
    SocializedLossTransferred,
    SocializeLoss,
    FundRetryDue,
    MarkPriceUpdated,
    Order,
    OrderClosed,
    PositionTakenOver,
    SubmitOrder,
    SurplusTransferred,
)
from sandbox._core.money import fmt_money, fmt_price, fmt_size
from sandbox._core.actor import Actor
from sandbox._core.specs import DEFAULT_POLICY, SHARED_FUND, FundSpec, MarketSpec, Policy

from . import accounting
from ._common import ADL, CLEARING, FUND, FUND_ACCOUNT, book_name
from .accounting import band_limit_price, fund_limit_price

__all__ = ["InsuranceFund", "Lot", "fund_limit_price", "band_limit_price"]

# A lot's state: an IOC of the fund's in the book, held as inventory, handed to
# ADL, or kept after ADL could place none of it.
ORDER, HELD, IN_ADL, KEPT = "order", "held", "adl", "kept"
# Waiting for clearing to charge its loss to the market's positions (policy.socialized_loss).
SOCIALIZING = "socializing"


@attrs.define(slots=True)
class Lot:
    lot_id: int
    market: str
    size: int  # signed, the fund's side
    basis: int  # cost minus proceeds so far, in wei
    bankruptcy_price: int
    liq_id: int
    account: str
    state: str = HELD
    limit: int | None = None  # the limit of the fund's order in the book (state ORDER)
    # The part that is certainly the fund's (signed): ADL fills of the lot may
    # still be on their way when ADL gives up (clearing -> fund and adl -> fund
    # are different links), and only this much may be netted or offered again.
    held: int = 0
    tries: int = 0  # retries after ADL could place none of it
    hint: int | None = None  # a budget handed in with the takeover (the zoo's check-then-act)
    # The price ADL was last asked to close it at (None: never; policy.adl_price).
    adl_price: int | None = None
    socialize_asked: int = 0  # what its SocializeLoss in flight asks for

    def loss_at(self, price: int) -> int:
        """What closing the whole lot at ``price`` would realize as a loss (negative: a gain)."""
        return accounting.lot_loss_at(self.basis, self.size, price)

    @property
    def adl_at(self) -> int:
        """The price ADL closes it at: the one it was asked at, else its bankruptcy price."""
        return self.bankruptcy_price if self.adl_price is None else self.adl_price


class InsuranceFund(Actor):
    # Reserve what each open lot may still lose, so that concurrent lots
    # cannot together lose more than the balance.
    RESERVES: ClassVar[bool] = True
    policy: Policy = DEFAULT_POLICY

    def __init__(self, markets: Mapping[str, MarketSpec], balance: int) -> None:
        super().__init__(FUND)
        self.markets = dict(markets)
        # One ledger per fund (module doc): its balance, by fund name.
        self.ledgers: dict[str, int] = {SHARED_FUND: balance}
        self.fund_of: dict[str, str] = {m: SHARED_FUND for m in self.markets}
        self.lots: dict[int, Lot] = {}
        self._next_lot = 0
        self.marks = {m: spec.mark_price for m, spec in self.markets.items()}
        self.versions = {m: 0 for m in self.markets}
        # The mark before the latest one, per market (policy.adl_price = "previous_mark").
        self.prev_marks = dict(self.marks)
        # Net loss realized on taken-over positions so far, per fund (for policy.fund_loss_limit).
        self.losses: dict[str, int] = {SHARED_FUND: 0}
        # What the revenue pool (policy.revenue_pool) has paid in so far, and in how many transfers.
        self.revenue_received = 0
        self.revenue_transfers = 0
        # Indexes, so that nothing per event costs O(lots): the open lots by (market, sign of size), in
        # lot order; and, unless a subclass overrides reserve(), each lot's reservation and their sum per
        # fund, recomputed whenever a lot's state, limit, size or basis or its market's mark changes.
        self._sides: dict[tuple[str, int], dict[int, Lot]] = {}
        self._indexed = type(self).reserve is InsuranceFund.reserve
        self._reserves: dict[int, int] = {}
        self._reserved: dict[str, int] = {SHARED_FUND: 0}

    def set_funds(self, funds: tuple[FundSpec, ...]) -> None:
        """Several funds for groups of markets (a scenario's ``[[funds]]``): one ledger each."""
        if not funds:
            return
        self.ledgers = {f.name: f.balance for f in funds}
        self.losses = {f.name: 0 for f in funds}
        self.fund_of = {m: f.name for f in funds for m in f.markets}
        self._reserved = {f.name: sum(self._reserves.get(lot.lot_id, 0) for lot in self.lots.values()
                                      if self.fund_of[lot.market] == f.name) for f in funds}

    @property
    def several(self) -> bool:
        return len(self.ledgers) > 1

    @property
    def balance(self) -> int:
        """Every fund's balance together (with one fund, its balance)."""
        return sum(self.ledgers.values())

    @balance.setter
    def balance(self, value: int) -> None:
        if self.several:
            raise AttributeError("several funds: set a ledger in InsuranceFund.ledgers")
        (name,) = self.ledgers
        self.ledgers[name] = value

    def ledger_of(self, lot: Lot) -> str:
        return self.fund_of[lot.market]

    def _tag(self, name: str) -> dict[str, str]:
        """The ``fund`` field of an event, with several funds (none with one: logs stay as they were)."""
        return {"fund": name} if self.several else {}

    def _adopt(self, market: str, price: int, version: int) -> bool:
        """Take a mark newer than the fund's own (the oracle's, or one a takeover carries)."""
        if version <= self.versions[market]:
            return False
        self.prev_marks[market] = self.marks[market]
        self.marks[market], self.versions[market] = price, version
        for side in (1, -1):
            for lot in self._sides.get((market, side), {}).values():
                self._reindex(lot)
        return True

    def _reindex(self, lot: Lot) -> None:
        """Re-file ``lot`` in the indexes (after any change of it or of its mark)."""
        side = 1 if lot.size > 0 else -1
        if lot.lot_id in self.lots and lot.size:
            self._sides.setdefault((lot.market, side), {})[lot.lot_id] = lot
            self._sides.get((lot.market, -side), {}).pop(lot.lot_id, None)
        else:
            for one in (1, -1):
                self._sides.get((lot.market, one), {}).pop(lot.lot_id, None)
        if not self._indexed:
            return
        old = self._reserves.pop(lot.lot_id, 0)
        new = 0
        if lot.lot_id in self.lots:
            new = self._reserves[lot.lot_id] = self.reserve(lot)
        name = self.fund_of[lot.market]
        self._reserved[name] = self._reserved.get(name, 0) + new - old

    # -- what the fund has --------------------------------------------------------------

    def reserve(self, lot: Lot) -> int:
        """What ``lot`` may still lose (module doc); 0 for a fund that does not reserve."""
        if not self.RESERVES:
            return 0
        if lot.state == IN_ADL:
            return accounting.lot_reserve(lot.basis, lot.size, lot.adl_at)
        worst = accounting.lot_reserve(lot.basis, lot.size, self.marks[lot.market], lot.adl_at)
        if lot.state == ORDER and lot.limit is not None:
            worst = max(worst, lot.loss_at(lot.limit))
        return worst

    @property
    def reserved(self) -> int:
        return sum(self.reserve(lot) for lot in self.lots.values())

    def available_in(self, name: str) -> int:
        """One fund's balance less what its open lots may still lose (and, capped, less its losses)."""
        if self._indexed:
            reserved = self._reserved.get(name, 0)
        else:
            reserved = sum(self.reserve(lot) for lot in self.lots.values() if self.fund_of[lot.market] == name)
        free = self.ledgers[name] - reserved
        if self.policy.fund_loss_limit:  # a capped vault: its loss so far counts against the cap
            free = min(free, self.policy.fund_loss_limit - self.losses[name] - reserved)
        return free

    @property
    def available(self) -> int:
        """What every fund has available, together (with one fund, its ``available``)."""
        return sum(self.available_in(name) for name in self.ledgers)

    def positions(self) -> dict[str, tuple[int, int]]:
        """Inventory per market: (size, entry value) summed over open lots."""
        out: dict[str, tuple[int, int]] = {}
        for lot in self.lots.values():
            size, basis = out.get(lot.market, (0, 0))
            out[lot.market] = (size + lot.size, basis + lot.basis)
        return {m: v for m, v in sorted(out.items()) if v != (0, 0)}

    def unrealized_pnl(self, market: str | None = None) -> int:
        """The inventory's PnL at this fund's marks (one market, or all)."""
        return sum(
            accounting.unrealized_pnl(lot.size, lot.basis, self.marks[lot.market])
            for lot in self.lots.values()
            if market is None or lot.market == market
        )

    # -- income ---------------------------------------------------------------------------

    def _fund_of_market(self, market: str) -> str:
        # A surplus names its liquidation's first market; one fund takes everything.
        return self.fund_of.get(market, SHARED_FUND) if self.several else next(iter(self.ledgers))

    def on_SurplusTransferred(self, msg: SurplusTransferred) -> None:
        name = self._fund_of_market(msg.market)
        self.ledgers[name] += msg.amount
        kind = Event.FUND_LIQUIDATION_FEE if msg.reason == "clearance_fee" else Event.FUND_SURPLUS
        self.emit(kind, account=msg.account, liq_id=msg.liq_id, amount=fmt_money(msg.amount),
                  balance=fmt_money(self.ledgers[name]), **self._tag(name))

    def on_FeeShareTransferred(self, msg: FeeShareTransferred) -> None:
        name = self._fund_of_market(msg.market)
        self.ledgers[name] += msg.amount
        self.emit(Event.FUND_FEE_INCOME, account=msg.account, market=msg.market, amount=fmt_money(msg.amount),
                  balance=fmt_money(self.ledgers[name]), **self._tag(name))

    def on_FundingContributionRequested(self, msg: FundingContributionRequested) -> None:
        # Never more than is available: the reservations of open lots stay covered.
        name = self._fund_of_market(msg.market)
        amount = min(msg.amount, max(self.available_in(name), 0))
        self.ledgers[name] -= amount
        self.emit(Event.FUND_FUNDING_PAID, market=msg.market, funding_id=msg.funding_id, amount=fmt_money(amount),
                  owed=fmt_money(msg.amount), balance=fmt_money(self.ledgers[name]), **self._tag(name))
        self.send(CLEARING, FundingContributed(msg.market, msg.funding_id, amount))
        self._check_drained()

    def on_FundingRemainderTransferred(self, msg: FundingRemainderTransferred) -> None:
        name = self._fund_of_market(msg.market)
        self.ledgers[name] += msg.amount
        self.emit(Event.FUND_FUNDING_RECEIVED, market=msg.market, funding_id=msg.funding_id,
                  amount=fmt_money(msg.amount), balance=fmt_money(self.ledgers[name]), **self._tag(name))

    # -- marks: value the inventory, work it out ------------------------------------------

    def _feed(self, market: str, at_ms: int) -> None:
        """Drift v2's revenue pool: one transfer for every ``revenue_interval`` passed by ``at_ms``.

        Paid on the first mark at or after each interval's end (the oracle's
        time, so a restarted fund replays it alike), into the fund of that
        mark's market; each transfer is ``revenue_transfer``, at most what
        the pool has left.
        """
        p = self.policy
        if not p.revenue_pool:
            return
        name = self._fund_of_market(market)
        while self.revenue_transfers < at_ms // p.revenue_interval_ms and self.revenue_received < p.revenue_pool:
            self.revenue_transfers += 1
            amount = accounting.revenue_transfer(p.revenue_transfer, p.revenue_pool, self.revenue_received)
            self.revenue_received += amount
            self.ledgers[name] += amount
            self.emit(Event.FUND_REVENUE, amount=fmt_money(amount), balance=fmt_money(self.ledgers[name]),
                      pool_left=fmt_money(p.revenue_pool - self.revenue_received), **self._tag(name))

    def on_MarkPriceUpdated(self, msg: MarkPriceUpdated) -> None:
        self._feed(msg.market, msg.observed_ms)
        # A takeover may have brought this mark already: value and offer again only once.
        if not self._adopt(msg.market, msg.price, msg.version):
            return
        held = sum(lot.size for lot in self.lots.values() if lot.market == msg.market)
        if held:
            name = self.fund_of[msg.market]
            equity = self.ledgers[name] + sum(accounting.unrealized_pnl(lot.size, lot.basis, self.marks[lot.market])
                                              for lot in self.lots.values() if self.fund_of[lot.market] == name)
            self.emit(
                Event.FUND_INVENTORY_MARKED, market=msg.market, size=fmt_size(held), mark_price=fmt_price(msg.price),
                unrealized_pnl=fmt_money(self.unrealized_pnl(msg.market)), balance=fmt_money(self.ledgers[name]),
                equity=fmt_money(equity), available=fmt_money(self.available_in(name)), **self._tag(name),
            )
        self._check_drained()
        if self.policy.fund_inventory != "keep":
            for lot in list(self.lots.values()):
                if lot.market == msg.market and lot.state in (HELD, KEPT) and lot.held:
                    self._offer(lot)

    # -- taking a position over -------------------------------------------------------------

    def accepts(self, lot: Lot) -> bool:
        """May the fund take ``lot`` over (it is already counted in its fund's ``available``)?"""
        return self.policy.fund_inventory == "close" or self.available_in(self.ledger_of(lot)) >= 0

    def budget(self, lot: Lot) -> int:
        """What closing ``lot`` may lose: its own reservation plus what no other lot of its fund may still lose."""
        return self.available_in(self.ledger_of(lot)) + self.reserve(lot)

    def on_PositionTakenOver(self, msg: PositionTakenOver) -> None:
        # The mark the liquidation judged by: the oracle's copy to the fund may
        # still be on its way, and the lot is valued and priced at a mark at
        # least that new, whatever the delivery order.
        self._adopt(msg.market, msg.mark, msg.mark_version)
        name = self.fund_of[msg.market]
        before = self.available_in(name)
        self._next_lot += 1
        lot = Lot(self._next_lot, msg.market, msg.size, msg.size * msg.price, msg.price, msg.liq_id, msg.account,
                  held=msg.size, hint=msg.budget)
        self.lots[lot.lot_id] = lot
        self._reindex(lot)
        accepted = self.accepts(lot)
        self.emit(
            Event.FUND_LOT_OPENED, lot_id=lot.lot_id, market=msg.market, size=fmt_size(msg.size),
            bankruptcy_price=fmt_price(msg.price), liq_id=msg.liq_id, account=msg.account,
            loss_at_mark=fmt_money(lot.loss_at(self.marks[msg.market])), available=fmt_money(before),
            accepted=accepted, **self._tag(name),
        )
        if not accepted:
            self._deleverage(lot, "cannot accept")
        elif self.policy.fund_inventory == "keep":
            self._held(lot)
        else:
            self._offer(lot)
        self._check_drained()

    def _offer(self, lot: Lot) -> None:
        """Send ``lot``'s held part to the book: an IOC within the price band and the budget."""
        tick = self.markets[lot.market].tick_size
        size = lot.held
        # The held part's share of the basis (all of it unless ADL fills are in flight).
        basis = lot.basis if size == lot.size else lot.basis * size // lot.size
        by_budget = fund_limit_price(size, basis, self.budget(lot), tick)
        by_band = band_limit_price(size, self.marks[lot.market], self.policy.fund_price_band, tick)
        limit = max(by_budget, by_band) if size > 0 else min(by_budget, by_band)
        if size < 0 and limit < tick:  # no price at which the fund can afford to buy
            if self.policy.fund_inventory == "close":
                return self._deleverage(lot, "unfilled")
            return self._held(lot)
        lot.state, lot.limit = ORDER, limit
        self._reindex(lot)
        self.emit(
            Event.FUND_ORDER, lot_id=lot.lot_id, market=lot.market, size=fmt_size(size),
            bankruptcy_price=fmt_price(lot.bankruptcy_price), limit=fmt_price(limit),
            max_loss=fmt_money(self.reserve(lot)), liq_id=lot.liq_id, account=lot.account,
        )
        order = Order(
            self._order_id(lot), FUND_ACCOUNT, lot.market, "sell" if size > 0 else "buy", limit,
            abs(size), "ioc", "fund", FUND, FUND,
        )
        self.send(book_name(lot.market), SubmitOrder(order))

    def on_Fill(self, msg: Fill) -> None:
        lot = self.lots[self._lot_id(msg.order_id)]
        lot.size += msg.size
        lot.basis += msg.size * msg.price
        self._reindex(lot)
        if lot.state != KEPT:
            lot.held = lot.size
        if lot.size == 0:
            self._close(lot)
            self._check_drained()

    def on_OrderClosed(self, msg: OrderClosed) -> None:
        lot = self.lots.get(self._lot_id(msg.order_id))
        if lot is None:
            return  # fully filled and already closed
        # Fills travel the same link ahead of this message, so lot.size is what is left.
        lot.limit = None
        self._reindex(lot)
        if self.policy.fund_inventory == "close":
            lot.state = HELD
            self._reindex(lot)
            if not self._net(lot):
                self._deleverage(lot, "unfilled")
            return
        self._held(lot)

    def _held(self, lot: Lot) -> None:
        lot.state, lot.held = HELD, lot.size
        self._reindex(lot)
        if self._net(lot):
            return
        name = self.ledger_of(lot)
        self.emit(Event.FUND_INVENTORY_HELD, lot_id=lot.lot_id, market=lot.market, size=fmt_size(lot.size),
                  mark_price=fmt_price(self.marks[lot.market]), reserved=fmt_money(self.reserve(lot)),
                  available=fmt_money(self.available_in(name)), **self._tag(name))
        self._check_drained()

    # -- ADL -----------------------------------------------------------------------------------

    def _check_drained(self) -> None:
        """Held inventory has drained a fund: its oldest held lots go to ADL until it covers the rest.

        (Under ``"close"`` the fund holds nothing, unless a socialized loss let it keep a lot.)
        """
        if self.policy.fund_inventory == "close" and not self.policy.socialized_loss:
            return
        for name in self.ledgers:
            if self.available_in(name) >= 0 or self._charging(name):
                continue  # (a charge in flight: its money comes first)
            for lot in list(self.lots.values()):
                if self.available_in(name) >= 0 or self._charging(name):
                    break
                # A kept lot ADL just failed to place is offered again by its timer
                # (and on the next mark), not here: that would ask ADL again at once.
                if lot.state == HELD and lot.held and self.ledger_of(lot) == name:
                    self._deleverage(lot, "drained")

    def adl_price_for(self, lot: Lot) -> int:
        """The price ADL is asked to close ``lot``'s held part at (``policy.adl_price``).

        "bankruptcy": the lot's bankruptcy price. "previous_mark"
        (Hyperliquid): the fund's mark before its latest one; the fund pays
        the difference from the bankruptcy price out of its budget, so a
        price the budget cannot pay is moved towards the bankruptcy price
        (:func:`fund_limit_price`, rounded in the fund's favour) and never
        past it. While ADL fills of an earlier request may be in flight, the
        earlier price stays, so every fill of the lot is at one price.
        """
        if self.policy.adl_price != "previous_mark":
            return lot.bankruptcy_price
        if lot.held != lot.size:
            return lot.adl_at
        bk, prev = lot.bankruptcy_price, self.prev_marks[lot.market]
        by_budget = fund_limit_price(lot.size, lot.basis, self.budget(lot), self.markets[lot.market].tick_size)
        return accounting.adl_price_at_previous_mark(lot.size, prev, by_budget, bk)

    def _deleverage(self, lot: Lot, reason: str) -> None:
        if self._socialize(lot, reason):
            return
        self._adl(lot, reason)

    def _socialize(self, lot: Lot, reason: str) -> bool:
        """Drift v2: ask clearing to charge the market's positions what the lot would cost below the floor.

        Instead of ADL (``policy.socialized_loss``): the fund keeps the lot,
        valued at the mark, and what that leaves its available assets short
        of ``fund_floor`` is spread over every open position of the market
        (``SocializeLoss``); with the money in, the lot is held like any
        inventory. Not while ADL fills of the lot are in flight; False: ADL as
        usual. (No loop: a charge that collects less than it asked sends the
        lot to ADL, and a charge that collects it all leaves nothing to ask.)
        """
        if not self.policy.socialized_loss or lot.held != lot.size:
            return False
        name = self.ledger_of(lot)
        lot.state, lot.limit = HELD, None  # reserved at the mark, as it would be held
        self._reindex(lot)
        shortfall = accounting.socialize_shortfall(self.policy.fund_floor, self.available_in(name), self._charging(name))
        if shortfall <= 0:
            self._held(lot)
            return True
        lot.state, lot.socialize_asked = SOCIALIZING, shortfall
        self._reindex(lot)
        self.emit(Event.FUND_SOCIALIZE_REQUESTED, lot_id=lot.lot_id, market=lot.market, amount=fmt_money(shortfall),
                  reason=reason, available=fmt_money(self.available_in(name)), **self._tag(name))
        self.send(CLEARING, SocializeLoss(lot.lot_id, lot.market, shortfall))
        return True

    def _charging(self, name: str) -> int:
        """What the charges in flight for this fund's lots ask for (policy.socialized_loss)."""
        return sum(lot.socialize_asked for lot in self.lots.values()
                   if lot.state == SOCIALIZING and self.ledger_of(lot) == name)

    def on_SocializedLossTransferred(self, msg: SocializedLossTransferred) -> None:
        lot = self.lots[msg.lot_id]
        name = self.ledger_of(lot)
        self.ledgers[name] += msg.amount
        self.emit(Event.FUND_SOCIALIZED_LOSS, lot_id=lot.lot_id, market=msg.market, amount=fmt_money(msg.amount),
                  balance=fmt_money(self.ledgers[name]), **self._tag(name))
        lot.state, lot.socialize_asked = HELD, 0
        self._reindex(lot)
        if self.available_in(name) >= 0:
            self._held(lot)
        else:  # too few positions to charge: ADL after all
            self._adl(lot, "socialized too little")

    def _adl(self, lot: Lot, reason: str) -> None:
        price = self.adl_price_for(lot)
        lot.state, lot.adl_price = IN_ADL, price
        self._reindex(lot)
        name = self.ledger_of(lot)
        self.emit(Event.FUND_ADL_REQUESTED, lot_id=lot.lot_id, market=lot.market, size=fmt_size(lot.held),
                  price=fmt_price(price), reason=reason,
                  available=fmt_money(self.available_in(name)), **self._tag(name))
        self.send(ADL, DeleverageRequested(lot.lot_id, lot.market, lot.held, price))

    def on_DeleverageAbandoned(self, msg: DeleverageAbandoned) -> None:
        lot = self.lots[msg.lot_id]
        lot.state = KEPT
        self._reindex(lot)
        lot.held = msg.remaining  # lot.size may still count ADL fills in flight
        if not self._net(lot):
            self.emit(Event.FUND_INVENTORY_KEPT, lot_id=lot.lot_id, market=lot.market, size=fmt_size(lot.held))
            if lot.tries < self.policy.fund_retries:
                lot.tries += 1
                self.send_later(self.policy.fund_retry_ms, FundRetryDue(lot.lot_id))
        # Back in inventory, the lot is reserved at its mark again: other lots may now have to go.
        self._check_drained()

    def on_FundRetryDue(self, msg: FundRetryDue) -> None:
        lot = self.lots.get(msg.lot_id)
        if lot is None or lot.state != KEPT or not lot.held:
            return
        lot.state = HELD  # offered again like any held lot
        self._reindex(lot)
        if self.policy.fund_inventory == "keep":
            self._check_drained()
        else:
            self._offer(lot)

    # -- netting and closing ------------------------------------------------------------------

    def _net(self, lot: Lot) -> bool:
        """Cross ``lot`` with held lots of the other side in its market, at the mark; True if it is flat.

        When both sides of a market go bankrupt together, the fund can hold a
        long and a short of the same market. Crossed at the mark, the two
        realize what they lose at the mark together, which their reservations
        cover (module doc); a crossing whose realized loss the balance cannot
        pay is not made (the lots stay held, for ADL). Only the part of a lot
        that is certainly held is crossed; a lot closes when its size, in-flight
        fills included, is zero.
        """
        price = self.marks[lot.market]
        # Only lots of the other side can cross (a lot's size keeps its sign): the index, in lot order.
        others = self._sides.get((lot.market, -1 if lot.held > 0 else 1), {}) if lot.held else {}
        for other in list(others.values()):
            if lot.held == 0:
                break
            if (other is lot or other.state not in (HELD, KEPT) or other.market != lot.market
                    or other.held == 0 or (other.held > 0) == (lot.held > 0)):
                continue
            qty = min(abs(lot.held), abs(other.held))
            trades = [(each, -qty if each.held > 0 else qty) for each in (other, lot)]
            # What the crossing realizes, on the lots it closes: never more than the fund has. A lot
            # whose held part it crosses whole closes once its ADL fills in flight land, at its
            # bankruptcy price: that counts too (it is size - held; 0 when nothing is in flight).
            realized = sum(-(each.basis + trade * price - (each.size - each.held) * each.adl_at)
                           for each, trade in trades if each.held + trade == 0)
            # Lots of this fund that hold nothing any more but still have ADL fills in flight will
            # realize their loss at the bankruptcy price when those land: that money is spoken for.
            name = self.ledger_of(lot)
            committed = sum(accounting.lot_reserve(o.basis, o.size, o.adl_at) for o in self.lots.values()
                            if o is not lot and o is not other and o.held == 0 and o.size != 0
                            and self.ledger_of(o) == name)
            if self.ledgers[name] - committed + realized < 0:
                continue
            self.emit(Event.FUND_NETTED, market=lot.market, size=fmt_size(qty), price=fmt_price(price),
                      lots=[other.lot_id, lot.lot_id])
            for each, trade in trades:
                each.size += trade
                each.basis += trade * price
                each.held += trade
                self._reindex(each)
            # The gain first, so the balance never dips below zero in between.
            for each in sorted((other, lot), key=lambda one: one.basis):
                if each.size == 0:
                    self._close(each)
        return lot.size == 0

    def _close(self, lot: Lot) -> None:
        del self.lots[lot.lot_id]
        self._reindex(lot)
        pnl = -lot.basis
        name = self.ledger_of(lot)
        self.ledgers[name] += pnl
        self.losses[name] -= pnl
        kind = Event.FUND_PAYOUT if pnl < 0 else (Event.FUND_GAIN if pnl > 0 else Event.FUND_LOT_CLOSED)
        self.emit(kind, lot_id=lot.lot_id, market=lot.market, account=lot.account, amount=fmt_money(abs(pnl)),
                  balance=fmt_money(self.ledgers[name]), **self._tag(name))
        if self.ledgers[name] < 0:
            where = f"fund {name!r} " if self.several else ""
            self.violation(Invariant.FUND_NEVER_NEGATIVE,
                           f"{where}balance {fmt_money(self.ledgers[name])} after lot {lot.lot_id}")

    @staticmethod
    def _order_id(lot: Lot) -> str:
        return f"fund:{lot.lot_id}"

    @staticmethod
    def _lot_id(order_id: str) -> int:
        return int(order_id.partition(":")[2])
