"""Every message the actors exchange, in one place, so the protocol reads top to bottom.

Messages are frozen attrs classes: once sent, nobody can change one, so an
actor that keeps a message keeps a faithful record of what it was told, and a
stale view is visibly stale rather than silently updated.

Units: money in wei, prices in gwei per contract, sizes in 1e-9 contracts
(see :mod:`sandbox._core.money`). A *signed* size is positive for a long (buy) and
negative for a short (sell).

The flow, in the order it happens (``docs/architecture.md`` draws it):

1. timeline -> oracle ``MarkPriceObserved``; oracle -> everyone ``MarkPriceUpdated``
2. timeline -> trader ``ScriptedEvent``; trader -> clearing ``PlaceOrder`` /
   ``CancelOrder`` / ``Deposit`` / ``Withdraw``
3. clearing -> book ``SubmitOrder`` / ``CancelResting``; book -> ledger ``Fill``,
   book -> order's ``reply_to`` ``OrderClosed``
4. clearing -> monitor ``AccountUpdated``; monitor -> engine ``LiquidationRequested``
5. engine -> clearing ``FreezeAccount``; clearing -> books ``CancelAccountOrders``;
   books -> clearing ``AccountOrdersCancelled``; clearing -> engine ``AccountFrozen``
6. engine -> book ``SubmitOrder`` (IOC at the bankruptcy price); book -> engine
   ``OrderClosed``; engine -> clearing ``TakeOverPosition`` (what did not fill)
7. clearing -> fund ``PositionTakenOver``; fund -> book ``SubmitOrder`` (IOC at
   the fund's loss limit); book -> fund ``OrderClosed``
8. fund -> ADL ``DeleverageRequested``; ADL -> clearing ``AdlCandidatesRequested``;
   clearing -> ADL ``AdlCandidates``; ADL -> clearing ``Deleverage``;
   clearing -> ADL ``Deleveraged`` and clearing -> fund ``Fill``
9. clearing -> fund ``SurplusTransferred``; clearing -> engine
   ``LiquidationSettled``; engine -> monitor ``LiquidationEnded``

Only under a non-default ``[policy]`` (``sandbox._core.specs.Policy``):

* partial liquidation: engine -> clearing ``AccountSnapshotRequested`` once a
  slice's orders have closed; clearing -> engine ``AccountFrozen`` when its
  fills are applied; the engine hands the account back
* the median mark: timeline -> oracle ``IndexPriceObserved``; oracle -> book
  ``ImpactPricesRequested``; book -> oracle ``ImpactPricesReported``
* funding (markets with an index price): timeline -> oracle ``FundingDue``;
  oracle -> clearing ``FundingRateSet``; clearing -> fund
  ``FundingContributionRequested``; fund -> clearing ``FundingContributed``;
  clearing -> fund ``FundingRemainderTransferred``
* fees shared with the fund: clearing -> fund ``FeeShareTransferred``
* socialized loss (Drift v2): fund -> clearing ``SocializeLoss``; clearing ->
  fund ``SocializedLossTransferred``

Money travels in ``Fill``, ``PositionTakenOver``, ``SurplusTransferred``,
``FundingContributed``, ``FundingRemainderTransferred``,
``FeeShareTransferred`` and ``SocializedLossTransferred``; ``sandbox._exchange.invariants.check_step`` counts each of them
while it is in flight.
"""

from __future__ import annotations

from enum import StrEnum
import typing
from typing import Callable, Final, Literal, TypeVar

import attrs

__all__ = [
    "Event",
    "EVENT_KINDS",
    "Invariant",
    "INVARIANT_NAMES",
    "Started",
    "MarkPriceObserved",
    "IndexPriceObserved",
    "FundingDue",
    "ScriptedEvent",
    "MarkPriceUpdated",
    "ImpactPricesRequested",
    "ImpactPricesReported",
    "FundingRateSet",
    "FundingContributionRequested",
    "FundingContributed",
    "FundingRemainderTransferred",
    "FeeShareTransferred",
    "SocializeLoss",
    "SocializedLossTransferred",
    "PlaceOrder",
    "CancelOrder",
    "Deposit",
    "Withdraw",
    "Order",
    "SubmitOrder",
    "CancelResting",
    "CancelAccountOrders",
    "AccountOrdersCancelled",
    "Fill",
    "OrderClosed",
    "PositionView",
    "AccountUpdated",
    "LiquidationRequested",
    "FreezeAccount",
    "UnfreezeAccount",
    "AccountFrozen",
    "TakeOverPosition",
    "PositionTakenOver",
    "SurplusTransferred",
    "LiquidationSettled",
    "LiquidationEnded",
    "AccountSnapshotRequested",
    "DeleverageRequested",
    "DeleverageAbandoned",
    "AdlCandidatesRequested",
    "AdlCandidate",
    "AdlCandidates",
    "Deleverage",
    "Deleveraged",
    "FundRetryDue",
    "FundBalanceRequested",
    "FundBalanceReported",
    "Side",
    "TimeInForce",
    "OrderKind",
    "Liquidity",
]

Side = Literal["buy", "sell"]
TimeInForce = Literal["gtc", "ioc"]
# Who placed an order: a trader through clearing, the liquidation engine on a
# taken-over account, or the insurance fund for its own inventory. Only
# "trader" orders pay fees (liquidation and fund orders pay none, as in
# Binance's ADL and NFEX's engine orders); the maker on the other side pays its
# usual maker fee.
OrderKind = Literal["trader", "liquidation", "fund"]
Liquidity = Literal["maker", "taker", "takeover", "adl"]

_C = TypeVar("_C", bound=type)


def fast_init(cls: _C) -> _C:
    """Give a frozen slotted attrs class an ``__init__`` that stores each field through its slot.

    attrs' frozen ``__init__`` sets every field with ``object.__setattr__``
    (a bound method made per instance, and a look-up of the name on every
    call); writing through the slot's own descriptor does the same store in
    less than half the time. The class stays frozen (assignment still raises
    ``FrozenInstanceError``) and ``attrs.fields``, ``evolve``, eq, hash and
    repr are attrs' own. Only for fields without validators, converters,
    factories or keyword-only: a class with any keeps attrs' ``__init__``.
    """
    fields = attrs.fields(cls)
    if hasattr(cls, "__attrs_post_init__") or any(
        f.validator is not None or f.converter is not None or f.kw_only or not f.init
        or isinstance(f.default, attrs.Factory) for f in fields  # type: ignore[arg-type]
    ):
        return cls
    namespace: dict[str, object] = {}
    params, body = ["self"], []
    for i, f in enumerate(fields):
        namespace[f"_set{i}"] = getattr(cls, f.name).__set__
        if f.default is attrs.NOTHING:
            params.append(f.name)
        else:
            namespace[f"_default{i}"] = f.default
            params.append(f"{f.name}=_default{i}")
        choices = _choices(globals().get(f.type) if isinstance(f.type, str) else f.type)
        if choices is not None:  # a field with a domain (a Literal) checks it, naming the field
            namespace[f"_choices{i}"] = choices
            namespace[f"_refuse{i}"] = _refusal(cls.__name__, f.name, choices)
            body.append(f"    if {f.name} not in _choices{i}: _refuse{i}({f.name})")
        body.append(f"    _set{i}(self, {f.name})")
    source = f"def __init__({', '.join(params)}):\n" + ("\n".join(body) or "    pass") + "\n"
    exec(compile(source, f"<fast_init {cls.__qualname__}>", "exec"), namespace)
    init = namespace["__init__"]
    init.__qualname__ = f"{cls.__qualname__}.__init__"  # type: ignore[attr-defined]
    init.__annotations__ = cls.__init__.__annotations__  # type: ignore[attr-defined]
    init.__doc__ = cls.__init__.__doc__
    cls.__init__ = init  # type: ignore[misc]
    return cls


def _choices(hint: object) -> frozenset[str] | None:
    """The values a ``Literal`` type allows (None for any other type)."""
    return frozenset(typing.get_args(hint)) if typing.get_origin(hint) is Literal else None


def _refusal(cls: str, field: str, choices: frozenset[str]) -> Callable[[object], None]:
    def refuse(value: object) -> None:
        raise ValueError(f"{cls}.{field} must be one of {', '.join(map(repr, sorted(choices)))}, got {value!r}")

    return refuse


def _frozen(cls: _C) -> _C:
    return fast_init(attrs.frozen(slots=True, kw_only=False)(cls))


# --- timeline stimuli ---------------------------------------------------------


@_frozen
class Started:
    """Sent once at virtual time 0 to actors that handle it."""


@_frozen
class MarkPriceObserved:
    """timeline -> oracle: the scenario says the mark price is now ``price``.

    ``price`` is None when the observation is missing (an ``oracle_price``
    event without a price); it may be zero or negative too: the oracle decides
    whether to accept it.
    """

    market: str
    price: int | None


@_frozen
class IndexPriceObserved:
    """timeline -> oracle: the index (spot) price of ``market`` is now ``price``."""

    market: str
    price: int


@_frozen
class FundingDue:
    """timeline -> oracle: a funding interval has ended; settle funding in every market with an index."""


@_frozen
class ScriptedEvent:
    """timeline -> trader: perform one scripted action (a scenario order/event)."""

    event: object  # a sandbox._core.specs.OrderSpec / EventSpec


# --- oracle ---------------------------------------------------------------------


@_frozen
class MarkPriceUpdated:
    """oracle -> subscribers: the mark price of ``market`` is ``price``.

    ``version`` counts the oracle's updates of that market, so a receiver can
    tell which of two prices it heard is the newer one.
    """

    market: str
    price: int
    version: int
    # Virtual time (ms) at which the oracle accepted this price: receivers
    # judge staleness by it, not by when the message happens to reach them.
    observed_ms: int = 0


@_frozen
class ImpactPricesRequested:
    """oracle -> book: the average fill prices of ``notional`` (wei) against each side of the book."""

    market: str
    request_id: int
    notional: int


@_frozen
class ImpactPricesReported:
    """book -> oracle: impact bid and ask (None where the side is too thin for the notional)."""

    market: str
    request_id: int
    bid: int | None
    ask: int | None


# --- funding and fees -------------------------------------------------------------


@_frozen
class FundingRateSet:
    """oracle -> clearing: pay funding in ``market`` at ``rate`` (ppm, signed) on ``mark_price``.

    payment = mark price x size x rate; a positive rate means longs pay shorts.
    """

    market: str
    funding_id: int
    rate: int
    mark_price: int


@_frozen
class FundingContributionRequested:
    """clearing -> fund: receivers are owed ``amount`` more than payers paid (the fund's side)."""

    market: str
    funding_id: int
    amount: int


@_frozen
class FundingContributed:
    """fund -> clearing: the fund pays ``amount`` (at most what it has available) toward the receivers."""

    market: str
    funding_id: int
    amount: int


@_frozen
class FundingRemainderTransferred:
    """clearing -> fund: what payers paid beyond what receivers were paid (the fund's receipt, rounding)."""

    market: str
    funding_id: int
    amount: int


@_frozen
class FeeShareTransferred:
    """clearing -> fund: the fund's share of a trading fee."""

    account: str
    market: str
    amount: int


@_frozen
class SocializeLoss:
    """fund -> clearing: charge ``amount`` to the open positions of ``market`` (Drift v2's socialized loss)."""

    lot_id: int
    market: str
    amount: int


@_frozen
class SocializedLossTransferred:
    """clearing -> fund: what the charge of a ``SocializeLoss`` collected (0: no position to charge)."""

    lot_id: int
    market: str
    amount: int


# --- trader -> clearing ---------------------------------------------------------


@_frozen
class PlaceOrder:
    account: str
    order_id: str
    market: str
    side: Side
    price: int
    size: int
    tif: TimeInForce = "gtc"


@_frozen
class CancelOrder:
    account: str
    order_id: str


@_frozen
class Deposit:
    account: str
    amount: int


@_frozen
class Withdraw:
    account: str
    amount: int


# --- books ----------------------------------------------------------------------


@_frozen
class Order:
    """An order as a book sees it.

    ``ledger`` names the actor that owns the account's money and positions and
    receives the :class:`Fill`; ``reply_to`` receives the :class:`OrderClosed`.
    """

    order_id: str
    account: str
    market: str
    side: Side
    price: int
    size: int
    tif: TimeInForce
    kind: OrderKind
    ledger: str
    reply_to: str


@_frozen
class SubmitOrder:
    order: Order


@_frozen
class CancelResting:
    """clearing -> book: cancel one resting order of ``account``."""

    account: str
    order_id: str


@_frozen
class CancelAccountOrders:
    """clearing -> book: a liquidation has begun; cancel every order of ``account``."""

    liq_id: int
    account: str


@_frozen
class AccountOrdersCancelled:
    """book -> clearing: no order of ``account`` is left in this book."""

    liq_id: int
    account: str
    market: str


@_frozen
class Fill:
    """A change of one party's position at ``price``.

    Sent by a book for each side of a match, and by clearing for the fund's
    side of an ADL. ``size`` is signed from the receiving party's view: +buy,
    -sell.
    """

    order_id: str
    account: str
    market: str
    size: int
    price: int
    liquidity: Liquidity
    kind: OrderKind


@_frozen
class OrderClosed:
    """book -> reply_to: the order left the book; nothing more of it will fill.

    ``reason`` is "filled", "expired" (IOC remainder), "cancelled" or
    "self_trade" (cancelled by self-trade prevention).
    """

    order_id: str
    account: str
    market: str
    filled: int
    unfilled: int
    reason: str


# --- clearing -> monitor ------------------------------------------------------------


@_frozen
class PositionView:
    market: str
    size: int
    entry_value: int  # signed cost basis: size x average entry price, in wei


@_frozen
class AccountUpdated:
    """clearing -> monitor: the account's balance and positions changed."""

    account: str
    balance: int
    positions: tuple[PositionView, ...]
    frozen: bool
    # Clearing's count of updates of this account: a view with a lower version is older.
    version: int = 0


# --- liquidation ---------------------------------------------------------------


@_frozen
class LiquidationRequested:
    """monitor -> engine: by the monitor's view, equity <= maintenance margin.

    ``marks`` are the (market, price, version) the monitor judged by; the
    engine adopts any that are newer than its own, so it never cancels a
    liquidation only because the monitor heard of a price move first.
    """

    account: str
    equity: int
    maintenance_margin: int
    marks: tuple[tuple[str, int, int], ...] = ()
    # The monitor's view of the account when it asked (for narration, and for
    # variants that trust it instead of clearing's snapshot).
    balance: int = 0
    positions: tuple[PositionView, ...] = ()
    # (market, observed_ms): when the oracle accepted each of those marks, so an
    # engine that adopts a mark from here also knows how fresh it is.
    valid_at: tuple[tuple[str, int], ...] = ()


@_frozen
class FreezeAccount:
    """engine -> clearing: take the account over (no orders, cancels, deposits, withdrawals)."""

    liq_id: int
    account: str


@_frozen
class UnfreezeAccount:
    """engine -> clearing: the account turned out healthy; hand it back."""

    liq_id: int
    account: str


@_frozen
class AccountFrozen:
    """clearing -> engine: the account is frozen and its orders are gone.

    The balance and positions are authoritative and final: every fill of the
    account's own orders has been applied before this is sent.
    """

    liq_id: int
    account: str
    balance: int
    positions: tuple[PositionView, ...]
    version: int = 0  # the account's version (AccountUpdated.version) this snapshot is


@_frozen
class TakeOverPosition:
    """engine -> clearing: move ``size`` (signed, the account's side) to the fund at ``price``.

    Sent once per liquidated position when its liquidation order has closed;
    ``size`` is what the order did not fill and may be 0.
    """

    liq_id: int
    account: str
    market: str
    size: int
    price: int
    budget: int | None = None  # only the zoo's check-then-act variant sets it
    # Partial liquidation: the signed size the account keeps in ``market`` once
    # this slice is done (0: the position is closed, as in a full liquidation).
    keep: int = 0
    # The mark (and its version) the engine judged by, passed on to the fund so
    # it never values the lot at an older mark than the liquidation's.
    mark: int = 0
    mark_version: int = 0
    # A backstop takeover (policy.backstop_below): with policy.backstop_vault
    # clearing moves it to the vault's account instead of the fund (None: an
    # ordinary takeover, left out of a message's description).
    backstop: bool | None = None


@_frozen
class PositionTakenOver:
    """clearing -> fund: the fund now holds ``size`` (signed, the fund's side) at ``price``."""

    liq_id: int
    account: str
    market: str
    size: int
    price: int
    budget: int | None = None  # passed through from TakeOverPosition
    mark: int = 0  # passed through from TakeOverPosition
    mark_version: int = 0


@_frozen
class SurplusTransferred:
    """clearing -> fund: what a liquidated account had left, paid into the fund.

    ``reason`` is "surplus" (NFEX: the trader loses the rest of its margin) or
    "clearance_fee" (policy.liquidation_fee: only the fee goes to the fund).
    """

    liq_id: int
    account: str
    amount: int
    reason: str = "surplus"
    # The liquidation's first market (symbol order): with several funds, whose fund it goes to.
    market: str = ""


@_frozen
class LiquidationSettled:
    """clearing -> engine: every position is closed and the account is settled."""

    liq_id: int
    account: str
    surplus: int


@_frozen
class LiquidationEnded:
    """engine -> monitor: the liquidation of ``account`` is over.

    ``outcome``: "settled", "cancelled" (healthy on the snapshot), or
    "restored" (a partial liquidation brought it back above maintenance margin).
    ``marks`` are the (market, price, version) the engine judged by; the
    monitor adopts any newer than its own, so a liquidation the engine
    cancelled on a newer price is not asked for again on an older one.
    """

    liq_id: int
    account: str
    outcome: str
    marks: tuple[tuple[str, int, int], ...] = ()
    # The account version the engine judged (AccountFrozen.version): the
    # monitor does not ask again on a view older than that.
    version: int = 0


@_frozen
class AccountSnapshotRequested:
    """engine -> clearing: send ``AccountFrozen`` again once the current slice's fills are all applied."""

    liq_id: int
    account: str


# --- ADL ------------------------------------------------------------------------


@_frozen
class DeleverageRequested:
    """fund -> ADL: close ``size`` (signed, the fund's side) of lot ``lot_id`` at ``price``."""

    lot_id: int
    market: str
    size: int
    price: int


@_frozen
class DeleverageAbandoned:
    """ADL -> fund: no opposing position was left to deleverage; ``remaining`` stays with the fund."""

    lot_id: int
    market: str
    remaining: int


@_frozen
class AdlCandidatesRequested:
    """ADL -> clearing: list accounts whose position in ``market`` has sign ``side``.

    With ``marks`` (the coordinator's own view of every mark) clearing answers
    *ranked*, by ``ranking`` (``policy.adl_ranking``) at those marks, from the
    index it keeps per market and side (``actors.adl_index``): the highest
    first, leaving out ``exclude``, as many as cover ``size`` and at least
    ``at_least`` (for the ``adl_ranking`` event). Without, every candidate, unranked.
    """

    adl_id: int
    market: str
    side: int
    marks: tuple[tuple[str, int], ...] = ()
    ranking: str = "pnl_x_leverage"
    size: int = 0
    exclude: frozenset[str] = frozenset()
    at_least: int = 0


@_frozen
class AdlCandidate:
    account: str
    balance: int
    positions: tuple[PositionView, ...]


@_frozen
class AdlCandidates:
    adl_id: int
    market: str
    candidates: tuple[AdlCandidate, ...]
    # Ranked (highest first) when the request carried marks; ``total``: how many candidates there were in all.
    ranked: bool = False
    total: int = 0


@_frozen
class Deleverage:
    """ADL -> clearing: reduce ``account``'s position by ``size`` (signed trade for the account) at ``price``."""

    adl_id: int
    lot_id: int
    account: str
    market: str
    size: int
    price: int


@_frozen
class Deleveraged:
    """clearing -> ADL: ``size`` of the requested amount was applied (0 if the position was gone)."""

    adl_id: int
    account: str
    size: int


# --- used only by the deliberately wrong variants in actors/zoo.py --------------


@_frozen
class FundRetryDue:
    """fund -> fund (a timer): offer lot ``lot_id``, which ADL could not place, once more."""

    lot_id: int


@_frozen
class FundBalanceRequested:
    """engine -> fund (zoo): how much does the fund have?"""

    liq_id: int
    account: str
    market: str


@_frozen
class FundBalanceReported:
    """fund -> engine (zoo): the fund's balance as of now."""

    liq_id: int
    account: str
    market: str
    balance: int


# --- the event log's protocol ----------------------------------------------------------
#
# What the actors say happened, one kind per line of events.jsonl. Declared
# once, here: the actors emit these names, and the narrator, the report,
# check-log, the summary and ``explore --find`` read them from this registry.
# An Event is a str (a StrEnum), so a log line is the same bytes whether it
# was written with the name or the string. docs/reference/outputs.md lists
# each kind's fields.


class Event(StrEnum):
    """Every kind of event the log holds, grouped by who records it."""

    # the exchange (sandbox._exchange.run): the first and last line of a run
    OPENING_STATE = "opening_state"
    RUN_FINISHED = "run_finished"
    WORK_LIMIT_REACHED = "work_limit_reached"
    ACTOR_FAILED = "actor_failed"
    # the runtime: faults and crashes it injects, violations actors report
    ACTOR_CRASHED = "actor_crashed"
    ACTOR_RESTARTED = "actor_restarted"
    FAULT_DELAY = "fault_delay"
    FAULT_DUPLICATE = "fault_duplicate"
    DUPLICATE_IGNORED = "duplicate_ignored"
    INVARIANT_VIOLATED = "invariant_violated"
    # the oracle
    MARK_PRICE = "mark_price"
    MARK_COMPUTED = "mark_computed"
    INDEX_PRICE = "index_price"
    ORACLE_PRICE_REJECTED = "oracle_price_rejected"
    ORACLE_STALE = "oracle_stale"
    ORACLE_FRESH = "oracle_fresh"
    FUNDING_RATE = "funding_rate"
    # the order books
    TRADE = "trade"
    ORDER_CANCELLED = "order_cancelled"
    ORDER_EXPIRED = "order_expired"
    # clearing
    ORDER_PLACED = "order_placed"
    ORDER_REJECTED = "order_rejected"
    CANCEL_REJECTED = "cancel_rejected"
    DEPOSIT = "deposit"
    DEPOSIT_REJECTED = "deposit_rejected"
    WITHDRAW = "withdraw"
    WITHDRAW_REJECTED = "withdraw_rejected"
    FILL = "fill"
    FEE = "fee"
    FUNDING = "funding"
    FUNDING_SHORTFALL = "funding_shortfall"
    ACCOUNT_FROZEN = "account_frozen"
    ACCOUNT_UNFROZEN = "account_unfrozen"
    LIQUIDATION_FILL = "liquidation_fill"
    CLEARANCE_FEE = "clearance_fee"
    FUND_TAKEOVER = "fund_takeover"
    VAULT_TAKEOVER = "vault_takeover"
    SOCIALIZED_LOSS = "socialized_loss"
    LIQUIDATION_SETTLED = "liquidation_settled"
    ADL = "adl"
    ADL_ORDERS_CANCELLED = "adl_orders_cancelled"
    # the margin monitor
    MARGIN_CALL = "margin_call"
    # the liquidation engine
    LIQUIDATION_STARTED = "liquidation_started"
    LIQUIDATION_CANCELLED = "liquidation_cancelled"
    LIQUIDATION_REQUEST_IGNORED = "liquidation_request_ignored"
    LIQUIDATION_STEP_DOWN = "liquidation_step_down"
    LIQUIDATION_RESTORED = "liquidation_restored"
    LIQUIDATION_PAUSED = "liquidation_paused"
    LIQUIDATION_RESUMED = "liquidation_resumed"
    BANKRUPTCY = "bankruptcy"
    # the insurance fund
    FUND_SURPLUS = "fund_surplus"
    FUND_LIQUIDATION_FEE = "fund_liquidation_fee"
    FUND_FEE_INCOME = "fund_fee_income"
    FUND_FUNDING_PAID = "fund_funding_paid"
    FUND_FUNDING_RECEIVED = "fund_funding_received"
    FUND_LOT_OPENED = "fund_lot_opened"
    FUND_ORDER = "fund_order"
    FUND_INVENTORY_HELD = "fund_inventory_held"
    FUND_INVENTORY_KEPT = "fund_inventory_kept"
    FUND_INVENTORY_MARKED = "fund_inventory_marked"
    FUND_NETTED = "fund_netted"
    FUND_PAYOUT = "fund_payout"
    FUND_GAIN = "fund_gain"
    FUND_LOT_CLOSED = "fund_lot_closed"
    FUND_ADL_REQUESTED = "fund_adl_requested"
    FUND_SOCIALIZE_REQUESTED = "fund_socialize_requested"
    FUND_SOCIALIZED_LOSS = "fund_socialized_loss"
    FUND_REVENUE = "fund_revenue"
    # the ADL coordinator
    ADL_RANKING = "adl_ranking"
    ADL_INCOMPLETE = "adl_incomplete"


EVENT_KINDS: Final[frozenset[str]] = frozenset(Event)


class Invariant(StrEnum):
    """The names of the invariants, as a violation reports them (docs/design/guarantees.md)."""

    MONEY_CONSERVED = "money is conserved"
    FUND_NEVER_NEGATIVE = "fund never negative"
    FUND_COVERS_INVENTORY = "fund never negative, inventory included"
    OPEN_INTEREST_BALANCED = "long open interest equals short"
    NO_UNOWNED_LOSS = "no loss left on an account that cannot pay it"
    NO_NEGATIVE_EQUITY = "no account outside a liquidation has negative equity"
    NO_LOT_LEFT = "no lot left with the fund while ADL has a candidate"
    UNDERWATER_LIQUIDATED = "every underwater account is liquidated"
    LIQUIDATIONS_COMPLETE = "every liquidation completes"
    FUNDING_COMPLETES = "every funding round completes"
    PAUSED_RESUMES = "a paused liquidation resumes when prices return"
    ADL_REQUEST_OPEN = "an ADL request is still open"
    NOT_LIQUIDATED_TWICE = "no account liquidated twice at once"
    CLOSED_ONCE = "a liquidated position is closed once"
    TAKEOVER_FROZEN = "takeover only of a frozen account"
    SETTLED_NOT_NEGATIVE = "no negative balance once a liquidation is settled"
    RESTART_REBUILDS = "a restarted actor rebuilds its state"


INVARIANT_NAMES: Final[frozenset[str]] = frozenset(Invariant)
