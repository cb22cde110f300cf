"""Clearing: the owner of every trader account's balance, positions and open-order exposure.

Clearing is the traders' gateway: it checks orders against initial margin
before they reach a book, applies fills (realized PnL, fees), takes deposits
and withdrawals, and freezes accounts under liquidation. It tells the margin
monitor about every change of an account (``AccountUpdated``): the monitor's
view is a copy that may be stale by the messages still in flight.

Rules it enforces, from docs/concepts/venues.md (NFEX):

* an account under liquidation ("taken over") can place no order, cancel
  nothing, deposit nothing and withdraw nothing;
* before the engine gets the frozen account's balance and positions, every
  open order of the account is cancelled in every book, and every fill that
  happened before the cancel is applied (the books' fills and their
  ``AccountOrdersCancelled`` share one FIFO link), so the engine's snapshot is
  final;
* a position taken over by the fund moves at the bankruptcy price, by the
  *quantity* the engine names, never "whatever is left": a liquidation fill
  still in flight then closes its own part and nothing twice;
* once every position of a liquidated account is closed, what is left of its
  balance is the fund's (NFEX: the trader loses the rest of its margin).

Fees: ``ceil(notional x rate)`` on trader orders only, maker or taker rate by
liquidity; liquidation, fund and ADL trades pay none.

Policies (``sandbox._core.specs.Policy``; the defaults are NFEX's and change nothing above):

* ``liquidation_fee``: instead of sweeping what is left, clearing charges a
  clearance fee of ``ceil(liquidated notional x rate)``, at most what is left,
  pays it to the fund and returns the rest to the trader (Binance). The
  liquidated notional is |size| x price of every liquidation fill and takeover;
  in a partial liquidation each slice pays for its own notional as soon as it is
  done, so the engine judges the account after the fee.
* partial liquidation: the engine names, with each ``TakeOverPosition``, the
  size the account keeps (``keep``). A slice is done when every market of the
  snapshot has closed its order and holds exactly that size; clearing then
  waits for ``AccountSnapshotRequested`` (after the engine's cooldown) and
  answers with a fresh ``AccountFrozen``.
* ``fee_to_fund``: that share of every fee, rounded up (in favour of the fund),
  goes to the fund (``FeeShareTransferred``) instead of the exchange's fees.
* funding (``FundingRateSet``): every account with a position in the market
  pays ``ceil(mark x size x rate)`` or receives ``floor(...)``, both rounded
  against the trader. Payers are debited at once. If receivers are owed more
  than payers paid (the fund's inventory is on the paying side), clearing holds
  what was paid (``funding_held``) and asks the fund for the difference; the
  fund pays what it has available, and if that falls short the receivers are
  paid pro rata (floor), a socialized loss. What is left over (the fund's own
  receipt, and the rounding) goes to the fund. Accounts under liquidation
  neither pay nor receive: their bankruptcy prices are fixed, and the fund
  stands in for them as it does for the positions it takes over.
"""

from __future__ import annotations

from typing import ClassVar, Mapping

import attrs

from sandbox.messages import (
    Invariant,
    Event,
    AccountFrozen,
    AccountSnapshotRequested,
    AccountOrdersCancelled,
    AccountUpdated,
    AdlCandidate,
    AdlCandidates,
    AdlCandidatesRequested,
    CancelAccountOrders,
    CancelOrder,
    CancelResting,
    Deleverage,
    Deleveraged,
    Deposit,
    FeeShareTransferred,
    Fill,
    FreezeAccount,
    FundingContributed,
    FundingContributionRequested,
    FundingRateSet,
    FundingRemainderTransferred,
    SocializedLossTransferred,
    SocializeLoss,
    LiquidationSettled,
    MarkPriceUpdated,
    Order,
    OrderClosed,
    PlaceOrder,
    PositionTakenOver,
    PositionView,
    SubmitOrder,
    SurplusTransferred,
    TakeOverPosition,
    UnfreezeAccount,
    Withdraw,
)
from sandbox._core.money import fmt_money, fmt_price, fmt_rate, fmt_size, sign
from sandbox._core.actor import Actor
from sandbox._core.specs import DEFAULT_POLICY, MarketSpec, Policy

from . import accounting
from ._common import (
    ADL,
    CLEARING,
    ENGINE,
    FUND,
    FUND_ACCOUNT,
    MONITOR,
    Position,
    apply_trade,
    book_name,
    position_margin,
    trader_name,
)
from .adl_index import AdlIndex

__all__ = ["Clearing", "Account", "OpenOrder", "LiquidationHold", "PendingFunding"]


@attrs.define(slots=True)
class OpenOrder:
    market: str
    side: str
    remaining: int


@attrs.define(slots=True)
class LiquidationHold:
    """What clearing tracks for a frozen account."""

    liq_id: int
    cancels_pending: set[str]
    snapshot_sent: bool = False
    # Markets whose liquidation order has closed (TakeOverPosition received).
    closed_markets: set[str] = attrs.Factory(set)
    markets: tuple[str, ...] = ()
    # Partial liquidation: the size each market keeps after the current slice.
    targets: dict[str, int] = attrs.Factory(dict)
    snapshot_wanted: bool = False
    # |size| x price of every liquidation fill and takeover (for a clearance fee).
    liquidated_notional: int = 0
    # Takeovers of this round, applied together once the round is done, so the
    # liquidation's own surplus reaches the fund before the lots it must pay for.
    takeovers: list[TakeOverPosition] = attrs.Factory(list)


def _first(hold: LiquidationHold) -> str:
    """The liquidation's first market in symbol order (whose fund takes its surplus, with several funds)."""
    return hold.markets[0] if hold.markets else ""


@attrs.define(slots=True)
class PendingFunding:
    """A funding round waiting for the fund's contribution."""

    market: str
    paid: int  # what the payers paid, held by clearing
    due: int  # what the fund was asked for
    receivers: list[tuple[str, int]]  # (account, amount owed), in account order


@attrs.define(slots=True)
class Account:
    id: str
    balance: int = 0
    deposited: int = 0
    withdrawn: int = 0
    positions: dict[str, Position] = attrs.Factory(dict)
    orders: dict[str, OpenOrder] = attrs.Factory(dict)
    # Per market: [open buy size, open sell size] of orders not yet closed.
    exposure: dict[str, list[int]] = attrs.Factory(dict)
    hold: LiquidationHold | None = None
    # Bumped on every AccountUpdated, so the monitor can tell an old view from a new one.
    version: int = 0

    @property
    def frozen(self) -> bool:
        return self.hold is not None

    def views(self) -> tuple[PositionView, ...]:
        return tuple(
            PositionView(m, p.size, p.entry_value) for m, p in sorted(self.positions.items()) if p.size
        )


class Clearing(Actor):
    # NFEX: an account taken over can neither deposit nor withdraw.
    LOCKS_WITHDRAWALS: ClassVar[bool] = True
    policy: Policy = DEFAULT_POLICY

    def __init__(self, markets: Mapping[str, MarketSpec], accounts: Mapping[str, Account]) -> None:
        super().__init__(CLEARING)
        self.markets = dict(markets)
        self.marks = {m: spec.mark_price for m, spec in self.markets.items()}
        self.accounts: dict[str, Account] = dict(accounts)
        self.fees = 0
        # Every settled liquidation's final balance before the sweep; kept for the invariant.
        self.settled: list[tuple[str, int]] = []
        # Funding paid by payers and not yet passed on to receivers (money on clearing's books).
        self.funding_held = 0
        self.pending_funding: dict[int, PendingFunding] = {}
        # What the opening positions' entry costs do not net to (Scenario.opening_imbalance):
        # a constant of the conservation equation.
        self.opening_imbalance = -sum(
            p.entry_value for acct in self.accounts.values() for p in acct.positions.values()
        )
        # ADL candidates ranked per market and side (actors/adl_index.py); every account starts dirty.
        self.adl_index = AdlIndex(self.markets, set(self.accounts))

    # -- margin arithmetic on clearing's own view -------------------------------------

    def equity(self, acct: Account) -> int:
        marks = self.marks
        return accounting.equity(acct.balance, ((m, p.size, p.entry_value) for m, p in acct.positions.items()), marks)

    def initial_margin(self, acct: Account, extra: tuple[str, int, int] | None = None) -> int:
        """Initial margin of the worst case of positions plus open orders.

        Per market, the exposure is max(|size + open buys|, |size - open sells|)
        at the mark price, times the initial-margin rate (the tier table's, if
        the market has one: :func:`~actors._common.position_margin`), rounded up. ``extra``
        is a hypothetical new order (market, open buy, open sell).
        """
        markets = set(acct.positions) | set(acct.exposure)
        if extra is not None:
            markets.add(extra[0])
        total = 0
        for m in markets:
            pos = acct.positions.get(m)
            size = pos.size if pos else 0
            buy, sell = acct.exposure.get(m, (0, 0))
            if extra is not None and extra[0] == m:
                buy, sell = buy + extra[1], sell + extra[2]
            worst = max(abs(size + buy), abs(size - sell))
            total += position_margin(self.markets[m], worst * self.marks[m], initial=True)
        return total

    # -- trader requests ------------------------------------------------------------------

    def _reject(self, kind: Event, account: str, reason: str, **fields: object) -> None:
        self.emit(kind, account=account, reason=reason, **fields)

    def _not_the_owner(self, account: str) -> bool:
        """Isolation: a trader acts only for its own account (its handle is bound to it)."""
        return self.sender != trader_name(account)

    def on_PlaceOrder(self, msg: PlaceOrder) -> None:
        acct = self.accounts.get(msg.account)
        fields = dict(order_id=msg.order_id, market=msg.market, side=msg.side)
        if self._not_the_owner(msg.account):
            return self._reject(Event.ORDER_REJECTED, msg.account, f"not {self.sender}'s account", **fields)
        if acct is None:
            return self._reject(Event.ORDER_REJECTED, msg.account, "unknown account", **fields)
        if acct.frozen:
            return self._reject(Event.ORDER_REJECTED, msg.account, "account under liquidation", **fields)
        spec = self.markets.get(msg.market)
        if spec is None:
            return self._reject(Event.ORDER_REJECTED, msg.account, "unknown market", **fields)
        if msg.order_id in acct.orders:
            return self._reject(Event.ORDER_REJECTED, msg.account, "duplicate order id", **fields)
        if msg.size <= 0 or msg.size % spec.lot_size:
            return self._reject(Event.ORDER_REJECTED, msg.account, "size is not a positive multiple of the lot size", **fields)
        if msg.price <= 0 or msg.price % spec.tick_size:
            return self._reject(Event.ORDER_REJECTED, msg.account, "price is not a positive multiple of the tick size", **fields)
        buy, sell = (msg.size, 0) if msg.side == "buy" else (0, msg.size)
        before = self.initial_margin(acct)
        after = self.initial_margin(acct, (msg.market, buy, sell))
        if after > before:
            # An order that adds exposure must be covered, after the loss it
            # would take at once against the mark price and its taker fee.
            mark = self.marks[msg.market]
            instant_loss = max(0, (msg.price - mark) * msg.size if buy else (mark - msg.price) * msg.size)
            fee = accounting.trading_fee(msg.size, msg.price, spec.taker_fee)
            available = self.equity(acct) - instant_loss - fee
            if available < after:
                return self._reject(Event.ORDER_REJECTED, msg.account, "insufficient margin",
                    required=fmt_money(after), available=fmt_money(available), **fields,
                )
        else:
            # An order that only reduces is checked at its own price (BitMEX checks
            # PnL at the order price): the loss it realizes plus its taker fee must
            # be payable from the balance, or the account could end below zero.
            realized = self._realized_if(acct, msg.market, buy - sell, msg.price)
            fee = accounting.trading_fee(msg.size, msg.price, spec.taker_fee)
            if acct.balance + realized - fee < 0:
                return self._reject(Event.ORDER_REJECTED, msg.account, "its realized loss and fee exceed the balance",
                    realized_pnl=fmt_money(realized), fee=fmt_money(fee), balance=fmt_money(acct.balance), **fields,
                )
        acct.orders[msg.order_id] = OpenOrder(msg.market, msg.side, msg.size)
        exposure = acct.exposure.setdefault(msg.market, [0, 0])
        exposure[0] += buy
        exposure[1] += sell
        self.emit_lazy(Event.ORDER_PLACED, _order_placed_fields, msg)  # (a message is frozen: safe to format later)
        order = Order(
            msg.order_id, msg.account, msg.market, msg.side, msg.price, msg.size, msg.tif,
            "trader", CLEARING, CLEARING,
        )
        self.send(book_name(msg.market), SubmitOrder(order))

    @staticmethod
    def _realized_if(acct: Account, market: str, size: int, price: int) -> int:
        """The PnL a trade of ``size`` at ``price`` would realize on ``acct``'s position (no change made)."""
        position = acct.positions.get(market)
        if position is None:
            return 0
        return apply_trade(Position(position.size, position.entry_value), size, price)

    def on_CancelOrder(self, msg: CancelOrder) -> None:
        acct = self.accounts.get(msg.account)
        if self._not_the_owner(msg.account):
            return self._reject(Event.CANCEL_REJECTED, msg.account, f"not {self.sender}'s account", order_id=msg.order_id)
        if acct is None:
            return self._reject(Event.CANCEL_REJECTED, msg.account, "unknown account", order_id=msg.order_id)
        if acct.frozen:
            return self._reject(Event.CANCEL_REJECTED, msg.account, "account under liquidation", order_id=msg.order_id)
        order = acct.orders.get(msg.order_id)
        if order is None:
            return self._reject(Event.CANCEL_REJECTED, msg.account, "no such open order", order_id=msg.order_id)
        self.send(book_name(order.market), CancelResting(msg.account, msg.order_id))

    def on_Deposit(self, msg: Deposit) -> None:
        acct = self.accounts.get(msg.account)
        if self._not_the_owner(msg.account):
            return self._reject(Event.DEPOSIT_REJECTED, msg.account, f"not {self.sender}'s account", amount=fmt_money(msg.amount))
        if acct is None or acct.frozen or msg.amount <= 0:
            reason = "unknown account" if acct is None else (
                "account under liquidation" if acct.frozen else "amount must be positive")
            return self._reject(Event.DEPOSIT_REJECTED, msg.account, reason, amount=fmt_money(msg.amount))
        acct.balance += msg.amount
        acct.deposited += msg.amount
        self.emit(Event.DEPOSIT, account=msg.account, amount=fmt_money(msg.amount), balance=fmt_money(acct.balance))
        self._publish(acct)

    def on_Withdraw(self, msg: Withdraw) -> None:
        """A withdrawal may take at most the balance, and must leave initial margin covered."""
        acct = self.accounts.get(msg.account)
        amount = fmt_money(msg.amount)
        if self._not_the_owner(msg.account):
            return self._reject(Event.WITHDRAW_REJECTED, msg.account, f"not {self.sender}'s account", amount=amount)
        if acct is None:
            return self._reject(Event.WITHDRAW_REJECTED, msg.account, "unknown account", amount=amount)
        if acct.frozen and self.LOCKS_WITHDRAWALS:
            return self._reject(Event.WITHDRAW_REJECTED, msg.account, "account under liquidation", amount=amount)
        if msg.amount <= 0 or msg.amount > acct.balance:
            return self._reject(Event.WITHDRAW_REJECTED, msg.account, "more than the balance", amount=amount)
        if self.equity(acct) - msg.amount < self.initial_margin(acct):
            return self._reject(Event.WITHDRAW_REJECTED, msg.account, "would leave initial margin uncovered", amount=amount)
        acct.balance -= msg.amount
        acct.withdrawn += msg.amount
        self.emit(Event.WITHDRAW, account=msg.account, amount=amount, balance=fmt_money(acct.balance))
        self._publish(acct)

    # -- books -------------------------------------------------------------------------------

    def on_Fill(self, msg: Fill) -> None:
        acct = self.accounts[msg.account]
        fee = 0
        if msg.kind == "trader":
            spec = self.markets[msg.market]
            rate = spec.maker_fee if msg.liquidity == "maker" else spec.taker_fee
            fee = accounting.trading_fee(msg.size, msg.price, rate)
            order = acct.orders.get(msg.order_id)
            if order is not None:
                order.remaining -= abs(msg.size)
                acct.exposure[order.market][0 if msg.size > 0 else 1] -= abs(msg.size)
        position = acct.positions.setdefault(msg.market, Position())
        realized = apply_trade(position, msg.size, msg.price)
        if position.size == 0:
            del acct.positions[msg.market]
        acct.balance += realized - fee
        share = accounting.fee_share(fee, self.policy.fee_to_fund)
        self.fees += fee - share
        # Every fill clearing applies is logged with what it did to the account,
        # in the order clearing applied it, so the books can be rebuilt from the
        # log exactly (``sandbox check-log``).
        if msg.kind == "trader":
            self.emit_lazy(Event.FILL, _fill_fields, msg, fee, realized, acct.balance)
        if fee:
            self.emit_lazy(Event.FEE, _fee_fields, msg, fee)
        if share:
            self.send(FUND, FeeShareTransferred(msg.account, msg.market, share))
        if msg.kind == "liquidation" and acct.hold is not None:
            acct.hold.liquidated_notional += abs(msg.size) * msg.price
        if msg.kind == "liquidation":
            if acct.hold is None or msg.order_id != f"liq{acct.hold.liq_id}:{msg.market}":
                self.violation(
                    Invariant.CLOSED_ONCE,
                    f"{msg.account}: liquidation fill {msg.order_id} arrived after the account was settled",
                )
            self.emit(
                Event.LIQUIDATION_FILL, account=msg.account, market=msg.market, size=fmt_size(msg.size),
                price=fmt_price(msg.price), realized_pnl=fmt_money(realized), order_id=msg.order_id,
                balance=fmt_money(acct.balance),
            )
        self._publish(acct)
        if acct.hold is not None:
            self._maybe_settle(acct)

    def on_OrderClosed(self, msg: OrderClosed) -> None:
        acct = self.accounts[msg.account]
        order = acct.orders.pop(msg.order_id, None)
        if order is None:
            return
        if order.remaining:
            exposure = acct.exposure[order.market]
            exposure[0 if order.side == "buy" else 1] -= order.remaining
        exposure = acct.exposure.get(order.market)
        if exposure is not None and exposure == [0, 0]:
            del acct.exposure[order.market]
        self._publish(acct)

    def on_MarkPriceUpdated(self, msg: MarkPriceUpdated) -> None:
        self.marks[msg.market] = msg.price

    # -- liquidation ---------------------------------------------------------------------

    def on_FreezeAccount(self, msg: FreezeAccount) -> None:
        acct = self.accounts[msg.account]
        if acct.hold is not None:
            self.violation(
                Invariant.NOT_LIQUIDATED_TWICE,
                f"{msg.account} frozen by liquidation {msg.liq_id} while liquidation {acct.hold.liq_id} is running",
            )
            return
        markets = sorted({o.market for o in acct.orders.values()})
        acct.hold = LiquidationHold(msg.liq_id, set(markets))
        self.emit(Event.ACCOUNT_FROZEN, account=msg.account, liq_id=msg.liq_id, cancelling=markets)
        for m in markets:
            self.send(book_name(m), CancelAccountOrders(msg.liq_id, msg.account))
        self._publish(acct)
        if not markets:
            self._send_snapshot(acct)

    def on_AccountOrdersCancelled(self, msg: AccountOrdersCancelled) -> None:
        acct = self.accounts[msg.account]
        hold = acct.hold
        if hold is None or hold.liq_id != msg.liq_id:
            return
        hold.cancels_pending.discard(msg.market)
        if not hold.cancels_pending:
            self._send_snapshot(acct)

    def _send_snapshot(self, acct: Account) -> None:
        hold = acct.hold
        assert hold is not None
        hold.snapshot_sent = True
        hold.markets = tuple(sorted(acct.positions))
        # A new round (the next slice of a partial liquidation) starts from here.
        hold.closed_markets = set()
        hold.targets = {}
        hold.snapshot_wanted = False
        self.send(ENGINE, AccountFrozen(hold.liq_id, acct.id, acct.balance, acct.views(), acct.version))

    def on_AccountSnapshotRequested(self, msg: AccountSnapshotRequested) -> None:
        acct = self.accounts[msg.account]
        if acct.hold is None or acct.hold.liq_id != msg.liq_id:
            return
        acct.hold.snapshot_wanted = True
        if self._slice_done(acct):
            self._send_snapshot(acct)

    def on_UnfreezeAccount(self, msg: UnfreezeAccount) -> None:
        acct = self.accounts[msg.account]
        hold = acct.hold
        if hold is None or hold.liq_id != msg.liq_id:
            return
        acct.hold = None
        self.emit(Event.ACCOUNT_UNFROZEN, account=msg.account, liq_id=msg.liq_id)
        self._publish(acct)

    def _clearance_fee(self, balance: int, hold: LiquidationHold) -> int:
        """ceil(liquidated notional x rate), but never more than what is left."""
        return accounting.clearance_fee(balance, hold.liquidated_notional, self.policy.liquidation_fee)

    def _charge_slice_fee(self, acct: Account, hold: LiquidationHold) -> None:
        """A slice of a partial liquidation pays its clearance fee before the engine judges again."""
        fee = self._clearance_fee(acct.balance, hold)
        hold.liquidated_notional = 0
        if fee:
            acct.balance -= fee
            self.send(FUND, SurplusTransferred(hold.liq_id, acct.id, fee, "clearance_fee", _first(hold)))
            self.emit(Event.CLEARANCE_FEE, account=acct.id, liq_id=hold.liq_id, amount=fmt_money(fee),
                      balance=fmt_money(acct.balance))
            self._publish(acct)

    def on_TakeOverPosition(self, msg: TakeOverPosition) -> None:
        acct = self.accounts[msg.account]
        hold = acct.hold
        if hold is None or hold.liq_id != msg.liq_id:
            self.violation(Invariant.TAKEOVER_FROZEN, f"{msg.account} liquidation {msg.liq_id}")
            return
        hold.closed_markets.add(msg.market)
        if msg.keep:
            hold.targets[msg.market] = msg.keep
        size = self.takeover_size(acct, msg)
        hold.liquidated_notional += abs(size) * msg.price
        if size:
            hold.takeovers.append(attrs.evolve(msg, size=size))
        self._maybe_settle(acct)

    def _apply_takeovers(self, acct: Account, hold: LiquidationHold) -> list[PositionTakenOver]:
        """Move this round's taken-over positions to the fund's side, at their bankruptcy prices."""
        out = []
        for msg in hold.takeovers:
            position = acct.positions.setdefault(msg.market, Position())
            realized = apply_trade(position, -msg.size, msg.price)
            if position.size == 0:
                del acct.positions[msg.market]
            acct.balance += realized
            vault = self.accounts.get(self.policy.backstop_vault) if msg.backstop else None
            if vault is not None and vault.hold is None and vault is not acct:
                self._to_vault(vault, msg, realized, acct.balance)
                continue
            self.emit(
                Event.FUND_TAKEOVER, account=msg.account, market=msg.market, size=fmt_size(msg.size),
                price=fmt_price(msg.price), liq_id=msg.liq_id, realized_pnl=fmt_money(realized),
                balance=fmt_money(acct.balance),
            )
            out.append(PositionTakenOver(msg.liq_id, msg.account, msg.market, msg.size, msg.price, msg.budget,
                                         msg.mark, msg.mark_version))
        hold.takeovers = []
        return out

    def _to_vault(self, vault: Account, msg: TakeOverPosition, realized: int, balance: int) -> None:
        """Hyperliquid's backstop vault as an account (``policy.backstop_vault``): it takes the position over.

        At the bankruptcy price, so with it the liquidated account's margin
        (its value at the mark less that price); the vault's balance and PnL
        are an account's like any other, and so are its margin checks: if it
        goes under it is liquidated as usual, its loss beyond its balance the
        fund's. A vault under liquidation itself takes nothing: the fund does.
        """
        vp = vault.positions.setdefault(msg.market, Position())
        vault.balance += apply_trade(vp, msg.size, msg.price)
        if vp.size == 0:
            del vault.positions[msg.market]
        self.emit(
            Event.VAULT_TAKEOVER, account=msg.account, vault=vault.id, market=msg.market, size=fmt_size(msg.size),
            price=fmt_price(msg.price), liq_id=msg.liq_id, realized_pnl=fmt_money(realized),
            balance=fmt_money(balance), vault_balance=fmt_money(vault.balance),
        )
        self._publish(vault)

    def _hand_over(self, lots: list[PositionTakenOver]) -> None:
        for lot in lots:
            self.send(FUND, lot)

    def takeover_size(self, acct: Account, msg: TakeOverPosition) -> int:
        """What moves to the fund: exactly the size the engine names.

        Not "whatever is left of the position": a fill of the liquidation
        order may still be on its way here (book -> clearing and engine ->
        clearing are different links), and it closes its own part.
        """
        return msg.size

    def _slice_done(self, acct: Account) -> bool:
        """Every order of the current round has closed and every fill of it is applied.

        In a full liquidation every target is 0, so this is "no position left".
        """
        hold = acct.hold
        assert hold is not None
        if not hold.snapshot_sent or not hold.closed_markets.issuperset(hold.markets):
            return False
        taken = {t.market: t.size for t in hold.takeovers}
        return all(p.size - taken.get(m, 0) == hold.targets.get(m, 0) for m, p in acct.positions.items())

    def _maybe_settle(self, acct: Account) -> None:
        hold = acct.hold
        assert hold is not None
        if not self._slice_done(acct):
            return
        lots = self._apply_takeovers(acct, hold)
        if acct.positions:
            # A slice of a partial liquidation is done; the engine asks for the
            # next snapshot once its cooldown is over.
            if self.policy.liquidation_fee and hold.liquidated_notional:
                self._charge_slice_fee(acct, hold)
            self._hand_over(lots)
            self._publish(acct)
            if hold.snapshot_wanted:
                self._send_snapshot(acct)
            return
        residual = acct.balance
        self.settled.append((acct.id, residual))
        if residual < 0:
            self.violation(
                Invariant.SETTLED_NOT_NEGATIVE,
                f"{acct.id} ends liquidation {hold.liq_id} at {fmt_money(residual)}",
            )
        extra: dict[str, str] = {}
        if self.policy.liquidation_fee:
            surplus = self._clearance_fee(residual, hold)
            reason = "clearance_fee"
            extra = {"clearance_fee": fmt_money(surplus), "returned": fmt_money(residual - surplus)}
        else:
            surplus = accounting.liquidation_surplus(residual)  # NFEX: the trader loses the rest of its margin
            reason = "surplus"
        acct.balance -= surplus
        acct.hold = None
        if surplus:
            # Ahead of the lots on the same link: the fund counts this surplus
            # before it budgets the positions this liquidation hands it.
            self.send(FUND, SurplusTransferred(hold.liq_id, acct.id, surplus, reason, _first(hold)))
        self._hand_over(lots)
        self.emit(Event.LIQUIDATION_SETTLED, account=acct.id, liq_id=hold.liq_id, surplus=fmt_money(surplus),
                  balance=fmt_money(acct.balance), **extra)
        self.send(ENGINE, LiquidationSettled(hold.liq_id, acct.id, surplus))
        self._publish(acct)

    # -- ADL ------------------------------------------------------------------------------

    def on_AdlCandidatesRequested(self, msg: AdlCandidatesRequested) -> None:
        if msg.marks:  # ranked from the index, at the coordinator's marks: O(log n + k)
            ranked, total = self.adl_index.ranked(self.accounts, msg.market, msg.side, dict(msg.marks), msg.ranking,
                                                  msg.size, msg.exclude, msg.at_least)
            self.send(ADL, AdlCandidates(msg.adl_id, msg.market, tuple(ranked), True, total))
            return
        candidates = tuple(
            AdlCandidate(acct.id, acct.balance, acct.views())
            for acct in self.accounts.values()
            if acct.hold is None
            and (p := acct.positions.get(msg.market)) is not None
            and sign(p.size) == msg.side
        )
        self.send(ADL, AdlCandidates(msg.adl_id, msg.market, candidates))

    def on_Deleverage(self, msg: Deleverage) -> None:
        acct = self.accounts.get(msg.account)
        position = acct.positions.get(msg.market) if acct is not None else None
        done = 0
        if acct is not None and acct.hold is None and position is not None and sign(position.size) == -sign(msg.size):
            done = self._payable(acct, msg.market, sign(msg.size), min(abs(msg.size), abs(position.size)), msg.price)
        if acct is not None and position is not None and done:
            trade = sign(msg.size) * done
            realized = apply_trade(position, trade, msg.price)
            if position.size == 0:
                del acct.positions[msg.market]
            acct.balance += realized
            self.send(FUND, Fill(f"fund:{msg.lot_id}", FUND_ACCOUNT, msg.market, -trade, msg.price, "adl", "fund"))
            self.emit(
                Event.ADL, account=msg.account, market=msg.market, size=fmt_size(trade), price=fmt_price(msg.price),
                realized_pnl=fmt_money(realized), lot_id=msg.lot_id, balance=fmt_money(acct.balance),
            )
            # BitMEX cancels a deleveraged trader's open orders in the contract: a
            # resting order that reduced the old position would otherwise open a
            # fresh one, never checked against margin.
            if any(o.market == msg.market for o in acct.orders.values()):
                self.emit(Event.ADL_ORDERS_CANCELLED, account=msg.account, market=msg.market)
                self.send(book_name(msg.market), CancelAccountOrders(0, msg.account))
            self._publish(acct)
        self.send(ADL, Deleveraged(msg.adl_id, msg.account, done))

    def _payable(self, acct: Account, market: str, direction: int, size: int, price: int) -> int:
        """The largest part of ``size`` (whole lots) whose realized loss at ``price`` the balance can pay.

        ADL never leaves a balance below zero: a thinly margined counterparty
        is deleveraged only as far as it can pay, and ADL asks the next one
        for the rest.
        """
        if acct.balance + self._realized_if(acct, market, direction * size, price) >= 0:
            return size
        lot = self.markets[market].lot_size
        lo, hi = 0, size // lot  # lo lots are payable, hi lots are not
        while hi - lo > 1:
            mid = (lo + hi) // 2
            if acct.balance + self._realized_if(acct, market, direction * mid * lot, price) >= 0:
                lo = mid
            else:
                hi = mid
        return lo * lot

    # -- funding -----------------------------------------------------------------------

    def on_FundingRateSet(self, msg: FundingRateSet) -> None:
        paid = 0
        receivers: list[tuple[str, int]] = []
        for acct in self.accounts.values():
            position = acct.positions.get(msg.market)
            if position is None or acct.hold is not None:
                continue
            owed = accounting.funding_owed(position.size, msg.mark_price, msg.rate)  # wei x ppm; > 0: this account pays
            if owed > 0:
                amount = accounting.funding_paid(owed)
                acct.balance -= amount
                paid += amount
                self.emit(Event.FUNDING, account=acct.id, market=msg.market, amount=fmt_money(-amount),
                          rate=fmt_rate(msg.rate), balance=fmt_money(acct.balance))
                self._publish(acct)
            elif owed < 0 and accounting.funding_received(owed):
                receivers.append((acct.id, accounting.funding_received(owed)))
        due = sum(amount for _, amount in receivers) - paid
        if due > 0:
            self.funding_held += paid
            self.pending_funding[msg.funding_id] = PendingFunding(msg.market, paid, due, receivers)
            self.send(FUND, FundingContributionRequested(msg.market, msg.funding_id, due))
        else:
            self._pay_receivers(msg.market, msg.funding_id, receivers, paid)

    def on_FundingContributed(self, msg: FundingContributed) -> None:
        pending = self.pending_funding.pop(msg.funding_id)
        self.funding_held -= pending.paid
        if msg.amount < pending.due:
            self.emit(Event.FUNDING_SHORTFALL, market=msg.market, funding_id=msg.funding_id,
                      owed=fmt_money(pending.due), contributed=fmt_money(msg.amount))
        self._pay_receivers(msg.market, msg.funding_id, pending.receivers, pending.paid + msg.amount)

    def _pay_receivers(self, market: str, funding_id: int, receivers: list[tuple[str, int]], pool: int) -> None:
        """Pay what each receiver is owed out of ``pool``; pro rata (floor) if it falls short."""
        owed = sum(amount for _, amount in receivers)
        available = pool
        for account, amount in receivers:
            share = accounting.funding_pro_rata(amount, available, owed)
            acct = self.accounts[account]
            acct.balance += share
            pool -= share
            if share:
                self.emit(Event.FUNDING, account=account, market=market, amount=fmt_money(share),
                          balance=fmt_money(acct.balance))
                self._publish(acct)
        if pool:
            self.send(FUND, FundingRemainderTransferred(market, funding_id, pool))

    # -- socialized loss (Drift v2) ------------------------------------------------------

    def on_SocializeLoss(self, msg: SocializeLoss) -> None:
        """Charge ``msg.amount`` to every open position of the market, in proportion to its size.

        Drift v2 spreads a bankruptcy the fund cannot pay over the market's
        open positions through their cumulative funding; here it is one
        charge, like a round of funding every position pays: a position of
        size ``s`` out of ``S`` in all (both sides, accounts under liquidation
        left out: their snapshot is final) pays ``ceil(amount x |s| / S)``,
        rounded up against the trader, so the fund collects the amount and at
        most one wei more per account. All or nothing: if some account's
        balance, or its equity at clearing's marks, cannot pay its share (the
        charge must not leave a balance below zero, which a later fall could
        turn into a loss nobody can carry, nor make a bankruptcy of its own),
        nobody is charged and the fund turns to ADL, as without socialized
        loss (a part charged and the rest deleveraged would make the same
        winners pay twice). An account it leaves below maintenance margin is
        liquidated as usual.
        """
        payers = [(acct, abs(p.size)) for acct in self.accounts.values()
                  if acct.hold is None and (p := acct.positions.get(msg.market)) is not None]
        total = sum(size for _, size in payers)
        shares = [(acct, accounting.socialized_share(msg.amount, size, total)) for acct, size in payers]
        if any(share > min(acct.balance, self.equity(acct)) for acct, share in shares):
            shares = []
        collected = 0
        for acct, share in shares:
            acct.balance -= share
            collected += share
            self.emit(Event.SOCIALIZED_LOSS, account=acct.id, market=msg.market, lot_id=msg.lot_id,
                      amount=fmt_money(-share), balance=fmt_money(acct.balance))
            self._publish(acct)
        self.send(FUND, SocializedLossTransferred(msg.lot_id, msg.market, collected))

    # -- to the monitor -------------------------------------------------------------------

    def _publish(self, acct: Account) -> None:
        self.adl_index.dirty.add(acct.id)
        acct.version += 1
        self.send(MONITOR, AccountUpdated(acct.id, acct.balance, acct.views(), acct.frozen, acct.version))


# The fields of clearing's most frequent events, made only when the event is read (Actor.emit_lazy).


def _order_placed_fields(msg: PlaceOrder) -> dict[str, object]:
    return {"account": msg.account, "order_id": msg.order_id, "market": msg.market, "side": msg.side,
            "price": fmt_price(msg.price), "size": fmt_size(msg.size), "tif": msg.tif}


def _fill_fields(msg: Fill, fee: int, realized: int, balance: int) -> dict[str, object]:
    return {"account": msg.account, "market": msg.market, "order_id": msg.order_id, "size": fmt_size(msg.size),
            "price": fmt_price(msg.price), "liquidity": msg.liquidity, "fee": fmt_money(fee),
            "realized_pnl": fmt_money(realized), "balance": fmt_money(balance)}


def _fee_fields(msg: Fill, fee: int) -> dict[str, object]:
    return {"account": msg.account, "market": msg.market, "amount": fmt_money(fee), "liquidity": msg.liquidity}
