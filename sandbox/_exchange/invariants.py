"""The exchange's invariants, as functions of its actors' state.

Each check takes a :class:`~sandbox._core.runtime.Runtime` whose actors are the
standard ones (or subclasses) and returns a list of
:class:`~sandbox._core.actor.Violation`. They read state from outside the actor
system, so they see the truth, not any actor's view. ``check_all`` runs them
all; the runner calls it at every quiet point (no message in flight).

* conservation: sum of account balances + fund balance + fees + unrealized
  PnL of every position (accounts' and fund's) == deposits - withdrawals +
  initial fund + what a revenue pool has paid into the fund + the opening imbalance (what the opening positions' entry
  costs do not net to, a constant), exactly, in wei;
* the fund's balance is never negative (with several funds, each fund's), and at a quiet point it covers what
  its inventory loses at the mark (balance + the losing lots' PnL >= 0);
* no loss is left on an account that cannot pay it: at a quiet point no
  account has negative equity, and at every step no account without a
  position (and not under liquidation) has a balance below zero;
* under ``fund_inventory = "close"`` (without ``socialized_loss``), no lot is left with the fund at a quiet
  point while some account holds the other side of its market (ADL had a
  candidate);
* no account ends a liquidation with a negative balance (checked by clearing
  at settlement, reported as it happens);
* long open interest == short open interest in every market;
* no account is liquidated twice at once (checked by clearing at freeze);
* liveness at a quiet point: no account is still frozen, and no account with
  positions has equity <= maintenance margin at the oracle's prices, unless
  one of its markets is stale and the policy pauses liquidations there
  (``stale_liquidations = "pause"``): by the oracle's own clock and record, not
  by the engine's say-so, so an engine that pauses a fresh market still fails.

Money on clearing's books includes ``funding_held``, funding paid by payers
and not yet passed on to receivers.
"""

from __future__ import annotations

from typing import Any, Iterable

from actors import accounting
from actors._common import ADL, CLEARING, ENGINE, FUND, ORACLE
from actors.accounting import equity, maintenance_margin
from sandbox._core.money import fmt_money, fmt_size

from sandbox._core.eventlog import time_seconds
from sandbox.messages import (
    Invariant,
    FeeShareTransferred,
    Fill,
    FundingContributed,
    FundingRemainderTransferred,
    PositionTakenOver,
    SocializedLossTransferred,
    SurplusTransferred,
)
from sandbox._core.actor import Envelope, Violation
from sandbox._core.runtime import Runtime

__all__ = [
    "check_conservation",
    "check_fund_non_negative",
    "check_open_interest",
    "check_unowned_losses",
    "check_quiet",
    "check_all",
    "check_step",
    "InFlight",
    "open_interest",
]


def _v(rt: Runtime, invariant: str, detail: str) -> Violation:
    return Violation(invariant, detail, time_seconds(rt.now_ms), "invariants")


def open_interest(rt: Runtime) -> dict[str, tuple[int, int]]:
    """(long, short) open interest per market, over accounts and the fund."""
    clearing, fund = rt[CLEARING], rt[FUND]
    oi = {m: [0, 0] for m in clearing.markets}
    for acct in clearing.accounts.values():
        for m, p in acct.positions.items():
            accounting.add_open_interest(oi[m], p.size)
    for lot in fund.lots.values():
        accounting.add_open_interest(oi[lot.market], lot.size)
    return {m: (long, short) for m, (long, short) in oi.items()}


def _held_outside_accounts(rt: Runtime) -> int:
    """What the books hold outside the accounts: fees, the fund, funding not yet passed on."""
    clearing, fund = rt[CLEARING], rt[FUND]
    return clearing.fees + fund.balance + getattr(clearing, "funding_held", 0)


def _came_in_outside_accounts(rt: Runtime, initial_fund: int) -> int:
    """What came in other than deposits: the initial fund, the opening imbalance, a revenue pool's payments.

    What a revenue pool (policy.revenue_pool) has paid into the fund came from
    outside, like a deposit. The one statement of what conservation counts
    besides the accounts, for :func:`conservation_gap` and :class:`QuietChecker`.
    """
    clearing, fund = rt[CLEARING], rt[FUND]
    return initial_fund + getattr(clearing, "opening_imbalance", 0) + getattr(fund, "revenue_received", 0)


def conservation_gap(rt: Runtime, initial_fund: int) -> int:
    """Total value on the books minus what came in; 0 when money is conserved."""
    clearing, fund = rt[CLEARING], rt[FUND]
    marks = rt[ORACLE].marks
    total = _held_outside_accounts(rt)
    external = _came_in_outside_accounts(rt, initial_fund)
    for acct in clearing.accounts.values():
        total += equity(acct.balance, ((m, p.size, p.entry_value) for m, p in acct.positions.items()), marks)
        external += acct.deposited - acct.withdrawn
    for lot in fund.lots.values():
        total += accounting.unrealized_pnl(lot.size, lot.basis, marks[lot.market])
    return total - external


def check_conservation(rt: Runtime, initial_fund: int) -> list[Violation]:
    gap = conservation_gap(rt, initial_fund)
    if gap:
        return [_v(rt, Invariant.MONEY_CONSERVED, f"books differ from deposits - withdrawals + initial fund by {fmt_money(gap)}")]
    return []


def _ledgers(fund: object) -> dict[str, int]:
    """Each insurance fund's balance, when there are several (``[[funds]]``); empty with one."""
    ledgers = getattr(fund, "ledgers", None)
    return dict(ledgers) if isinstance(ledgers, dict) and len(ledgers) > 1 else {}


def check_fund_non_negative(rt: Runtime) -> list[Violation]:
    fund = rt[FUND]
    balance = fund.balance
    out = [_v(rt, Invariant.FUND_NEVER_NEGATIVE, f"fund balance {fmt_money(balance)}")] if balance < 0 else []
    # With several funds, each one on its own: one's surplus never covers another's loss.
    out += [_v(rt, Invariant.FUND_NEVER_NEGATIVE, f"fund {name!r} balance {fmt_money(value)}")
            for name, value in _ledgers(fund).items() if value < 0 and balance >= 0]
    return out


def check_unowned_losses(rt: Runtime) -> list[Violation]:
    """No account without a position, and not under liquidation, has a balance below zero."""
    return [
        _v(rt, Invariant.NO_UNOWNED_LOSS,
           f"{acct.id} has no position and a balance of {fmt_money(acct.balance)}")
        for acct in rt[CLEARING].accounts.values()
        if acct.balance < 0 and not acct.positions and acct.hold is None
    ]


def check_open_interest(rt: Runtime) -> list[Violation]:
    return [
        _v(rt, Invariant.OPEN_INTEREST_BALANCED, f"{m}: long {fmt_size(long)} != short {fmt_size(short)}")
        for m, (long, short) in open_interest(rt).items()
        if long != short
    ]


def _can_pay_one_lot(acct: Any, position: Any, lot: Any, lot_size: int) -> bool:
    """Whether ADL could deleverage one lot of ``position`` at ``lot``'s price (it never takes a balance below 0)."""
    from actors._common import Position, apply_trade

    trial = Position(position.size, position.entry_value)
    return acct.balance + apply_trade(trial, -lot_size if position.size > 0 else lot_size,
                                       getattr(lot, "adl_at", lot.bankruptcy_price)) >= 0


def _account_quiet(acct: Any, oracle: Any, markets: Any) -> list[tuple[str, str]]:
    """The (invariant, detail) of what is wrong with one account at a quiet point (part of :func:`check_quiet`)."""
    if acct.hold is not None:
        return [("every liquidation completes", f"{acct.id} is still frozen (liquidation {acct.hold.liq_id})")]
    out = []
    if not acct.positions and acct.balance < 0:
        out.append(("no loss left on an account that cannot pay it",
                    f"{acct.id} has no position and a balance of {fmt_money(acct.balance)}"))
    if acct.positions and not _paused_by_stale_oracle(oracle, acct.positions):
        marks = oracle.marks
        triples = [(m, p.size, p.entry_value) for m, p in acct.positions.items()]
        eq = equity(acct.balance, triples, marks)
        mm = maintenance_margin(triples, marks, markets)
        if eq < 0:
            out.append(("no account outside a liquidation has negative equity", f"{acct.id} has equity {fmt_money(eq)}"))
        if eq <= mm:
            out.append(("every underwater account is liquidated",
                        f"{acct.id} has equity {fmt_money(eq)} <= maintenance margin {fmt_money(mm)}"))
    return out


def check_quiet(rt: Runtime) -> list[Violation]:
    """What must hold once nothing is in flight: every liquidation finished, none missed."""
    clearing, oracle = rt[CLEARING], rt[ORACLE]
    out = [_v(rt, invariant, detail) for acct in clearing.accounts.values()
           for invariant, detail in _account_quiet(acct, oracle, clearing.markets)]
    return out + _quiet_globals(rt)


def _quiet_globals(rt: Runtime) -> list[Violation]:
    """The quiet-point invariants of the fund, ADL, the engine and funding (part of :func:`check_quiet`)."""
    clearing, oracle = rt[CLEARING], rt[ORACLE]
    marks = oracle.marks
    out = []
    fund = rt[FUND]
    covered = fund.balance - sum(accounting.lot_reserve(lot.basis, lot.size, marks[lot.market])
                                 for lot in fund.lots.values())
    if covered < 0 and not _ledgers(fund):
        out.append(_v(rt, Invariant.FUND_COVERS_INVENTORY,
                      f"fund balance {fmt_money(fund.balance)} less what its inventory loses at the mark "
                      f"is {fmt_money(covered)}"))
    # Not with several funds (neither per fund nor all together): with several funds, a cross-margin account whose markets span
    # funds can have its deficit carried by one fund's market (its bankruptcy
    # prices know nothing of funds), and when nobody is left to deleverage that
    # fund keeps lots it cannot pay for at the mark. Its *balance* still never
    # goes below zero (check_fund_non_negative, per fund); see
    # docs/concepts/fund-and-bankruptcy.md, "Several funds".
    policy = getattr(fund, "policy", None)
    # Under socialized_loss the fund holds what it socialized instead of ADL: not a lot left over.
    if policy is not None and policy.fund_inventory == "close" and not policy.socialized_loss and fund.lots:
        for lot in fund.lots.values():
            side = -1 if lot.size > 0 else 1
            if any((p := a.positions.get(lot.market)) is not None and (p.size > 0) == (side > 0)
                   and _can_pay_one_lot(a, p, lot, clearing.markets[lot.market].lot_size)
                   for a in clearing.accounts.values()):
                out.append(_v(rt, Invariant.NO_LOT_LEFT,
                              f"lot {lot.lot_id} ({fmt_size(lot.size)} {lot.market}) is still the fund's"))
                break
    if rt[ADL].current is not None:
        out.append(_v(rt, Invariant.LIQUIDATIONS_COMPLETE, "an ADL request is still open"))
    for account, request in getattr(rt[ENGINE], "paused", {}).items():
        if not _paused_by_stale_oracle(oracle, [m for m, _, _ in request.marks]):
            out.append(_v(rt, Invariant.PAUSED_RESUMES,
                          f"{account}'s liquidation is still paused, but none of its markets is stale"))
    if getattr(clearing, "pending_funding", None):
        out.append(_v(rt, Invariant.FUNDING_COMPLETES,
                      f"funding {sorted(clearing.pending_funding)} still waits for the fund"))
    return out


def _paused_by_stale_oracle(oracle: Any, markets: Iterable[str]) -> bool:
    """The policy pauses liquidations in stale markets, and one of ``markets`` is stale now."""
    policy = getattr(oracle, "policy", None)
    if policy is None or not policy.pauses_when_stale:
        return False
    return any(policy.is_stale(oracle.valid_at[m], oracle.now_ms) for m in markets)


class InFlight:
    """A running tally of the money and positions travelling in messages (a delivery watcher).

    :func:`check_step` needs, after every delivery, the sum over every message
    in flight of what it carries. Summing a list of them each time costs as
    much as the list is long, so a run that keeps many messages in flight
    slows down as it goes; this tally is updated as each message is posted
    and taken (O(1) each) and gives the same sums. A message's value depends
    on the current mark (``size * (mark - price)``), so per market it keeps
    the sizes and the ``size * price`` separately; integers, so the result is
    exactly the sum a scan would give.
    """

    def __init__(self) -> None:
        self.size: dict[str, int] = {}  # market -> sum of sizes of fills and takeovers in flight
        self.value: dict[str, int] = {}  # market -> sum of size * price of the same
        self.amount = 0  # money in transfers to or from the fund in flight

    def _add(self, envelope: Envelope, sign: int) -> None:
        if envelope.duplicate:
            return  # its receiver will ignore it
        msg = envelope.message
        if isinstance(msg, (Fill, PositionTakenOver)):
            self.size[msg.market] = self.size.get(msg.market, 0) + sign * msg.size
            self.value[msg.market] = self.value.get(msg.market, 0) + sign * msg.size * msg.price
        elif isinstance(msg, _MONEY_MESSAGES):
            self.amount += sign * msg.amount

    def posted(self, envelope: Envelope) -> None:
        self._add(envelope, 1)

    def taken(self, envelope: Envelope) -> None:
        self._add(envelope, -1)


_MONEY_MESSAGES = (SurplusTransferred, FundingContributed, FundingRemainderTransferred, FeeShareTransferred,
                   SocializedLossTransferred)


def check_step(rt: Runtime, initial_fund: int, in_flight: Iterable[Envelope] | InFlight) -> list[Violation]:
    """The invariants that hold after *every* delivery, counting what is in flight.

    Money and positions travel in these messages: a :class:`Fill` not yet
    applied by its ledger, a :class:`PositionTakenOver` not yet booked by the
    fund, and money for the fund or from it not yet received
    (:class:`SurplusTransferred`, :class:`FundingContributed`,
    :class:`FundingRemainderTransferred`, :class:`FeeShareTransferred`,
    :class:`SocializedLossTransferred`). Counting those,
    money is conserved and positions net to zero at every step, not only at
    quiet points; and the fund's balance is never negative at any step.
    ``in_flight`` is the messages themselves or an :class:`InFlight` tally of them.
    """
    marks = rt[ORACLE].marks
    gap = conservation_gap(rt, initial_fund)
    net = {m: long - short for m, (long, short) in open_interest(rt).items()}
    tally = in_flight if isinstance(in_flight, InFlight) else _tally(in_flight)
    for market, size in tally.size.items():
        gap += size * marks[market] - tally.value[market]
        net[market] += size
    gap += tally.amount
    out = check_fund_non_negative(rt) + check_unowned_losses(rt)
    if gap:
        out.append(_v(rt, Invariant.MONEY_CONSERVED, f"books and messages in flight differ by {fmt_money(gap)}"))
    out += [
        _v(rt, Invariant.OPEN_INTEREST_BALANCED, f"{m}: positions and fills in flight net to {fmt_size(n)}")
        for m, n in net.items()
        if n
    ]
    return out


def _tally(envelopes: Iterable[Envelope]) -> InFlight:
    tally = InFlight()
    for envelope in envelopes:
        tally.posted(envelope)
    return tally


def check_all(rt: Runtime, initial_fund: int, *, quiet: bool = True) -> list[Violation]:
    out = check_conservation(rt, initial_fund) + check_fund_non_negative(rt) + check_open_interest(rt)
    if quiet:
        out += check_quiet(rt)
    return out




# Messages to clearing that change the account they name and no other (every handler of these touches
# ``msg.account`` only); and those that change no account. Any other message to clearing (funding) makes
# the next quiet point check every account.
_ONE_ACCOUNT = frozenset({
    "PlaceOrder", "CancelOrder", "Deposit", "Withdraw", "Fill", "OrderClosed", "FreezeAccount",
    "AccountOrdersCancelled", "AccountSnapshotRequested", "UnfreezeAccount", "TakeOverPosition", "Deleverage",
})
_NO_ACCOUNT = frozenset({"MarkPriceUpdated", "AdlCandidatesRequested"})


class QuietChecker:
    """:func:`check_all` at every quiet point, computed on what changed since the last one.

    Exactly what :func:`check_all` would return (the same violations, in the
    same order), without a pass over every account:

    * an account's own invariants (still frozen, a loss left with no position,
      negative equity, equity <= maintenance margin) depend on its balance,
      positions and hold, on the oracle's marks of its markets and on whether
      one of them is stale. An account is *dirty* if a message clearing handled
      named it, if clearing published it (``AccountUpdated``: whatever changed
      it), or if the mark, the time it was accepted or the staleness of one of
      its markets moved (then every holder of that market is dirty). Only dirty
      accounts are checked again; every other account's findings are kept;
    * conservation and open interest are running totals: per account, what it
      adds to the gap (``balance - deposited + withdrawn - sum of entry values``)
      and its size per market, replaced when it is dirty; the marks are applied
      to the market's net size. The fund's lots, the fund and the other global
      checks (ADL, paused liquidations, funding) are computed in full: they are
      few;
    * a message to clearing that may change accounts it does not name (a funding
      round) makes the next quiet point check every account; so does the first.

    The runner (``run_scenario``) feeds it every delivery (:meth:`delivered`)
    and runs :func:`check_all` in full once more at the end of the run, so a
    change this bookkeeping missed (an actor variant that changes accounts it
    is not told about, without publishing them) is still reported.
    """

    def __init__(self, rt: Runtime, initial_fund: int) -> None:
        self.rt = rt
        self.initial_fund = initial_fund
        self.everything = True
        self.dirty: set[str] = set()
        self.found: dict[str, list[tuple[str, str]]] = {}  # account -> what is wrong with it
        # account -> (what it adds to the conservation gap, marks aside; then its markets and sizes, flat):
        # one tuple an account, as a run may have a million of them
        self.filed: dict[str, tuple[Any, ...]] = {}
        self.net: dict[str, int] = {}  # market -> sum of account sizes
        self.oi: dict[str, list[int]] = {}  # market -> [long, short] over accounts
        self.holders: dict[str, set[str]] = {}  # market -> accounts with a position there
        self.parts = 0
        self.seen_markets: dict[str, tuple[int, bool]] = {}
        self.order: dict[str, int] = {}  # account -> its place in clearing's accounts (built once something is wrong)
        self.accounts = -1

    def delivered(self, envelope: Envelope) -> None:
        message = envelope.message
        name = type(message).__name__
        if envelope.recipient == CLEARING:
            if name in _ONE_ACCOUNT:
                self.dirty.add(message.account)
            elif name not in _NO_ACCOUNT:
                self.everything = True
        elif name == "AccountUpdated":
            self.dirty.add(message.account)

    def _refile(self, acct: Any) -> None:
        account = acct.id
        old = self.filed.get(account)
        if old is not None:
            self.parts -= old[0]
            for i in range(1, len(old), 2):
                m, size = old[i], old[i + 1]
                self.net[m] -= size
                self.oi[m][0 if size > 0 else 1] -= abs(size)
                self.holders[m].discard(account)
        part = acct.balance - acct.deposited + acct.withdrawn
        new: list[Any] = [0]
        for m, p in acct.positions.items():
            part -= p.entry_value
            new += (m, p.size)
            self.net[m] = self.net.get(m, 0) + p.size
            self.oi.setdefault(m, [0, 0])[0 if p.size > 0 else 1] += abs(p.size)
            self.holders.setdefault(m, set()).add(account)
        new[0] = part
        self.filed[account] = tuple(new)
        self.parts += part

    def check(self) -> list[Violation]:
        rt = self.rt
        clearing, oracle, fund = rt[CLEARING], rt[ORACLE], rt[FUND]
        accounts = clearing.accounts
        policy = getattr(oracle, "policy", None)
        moved = []
        for m in clearing.markets:
            # What an account's findings read of its market: the mark, and whether liquidations pause there.
            stale = bool(policy is not None and policy.pauses_when_stale
                         and policy.is_stale(oracle.valid_at[m], oracle.now_ms))
            state = (oracle.marks[m], stale)
            if self.seen_markets.get(m) != state:
                self.seen_markets[m] = state
                moved.append(m)
        if self.everything or len(accounts) != self.accounts:
            self.everything = False
            self.accounts = len(accounts)
            self.order = {}
            dirty: Iterable[str] = list(accounts)
            self.dirty.clear()
        else:
            for m in moved:
                self.dirty |= self.holders.get(m, set())
            dirty, self.dirty = self.dirty, set()
        for account in dirty:
            acct = accounts.get(account)
            if acct is None:
                continue
            self._refile(acct)
            found = _account_quiet(acct, oracle, clearing.markets)
            if found:
                self.found[account] = found
            else:
                self.found.pop(account, None)
        # Conservation and open interest from the running totals, the fund's lots counted in full.
        marks = oracle.marks
        gap = _held_outside_accounts(rt) + self.parts - _came_in_outside_accounts(rt, self.initial_fund)
        gap += sum(marks[m] * net for m, net in self.net.items())
        oi = {m: list(self.oi.get(m, (0, 0))) for m in clearing.markets}
        for lot in fund.lots.values():
            gap += lot.size * marks[lot.market] - lot.basis
            oi[lot.market][0 if lot.size > 0 else 1] += abs(lot.size)
        out = []
        if gap:
            out.append(_v(rt, Invariant.MONEY_CONSERVED,
                          f"books differ from deposits - withdrawals + initial fund by {fmt_money(gap)}"))
        out += check_fund_non_negative(rt)
        out += [_v(rt, Invariant.OPEN_INTEREST_BALANCED, f"{m}: long {fmt_size(long)} != short {fmt_size(short)}")
                for m, (long, short) in oi.items() if long != short]
        if len(self.order) != len(accounts) and self.found:
            self.order = {a: i for i, a in enumerate(accounts)}
        for account in sorted(self.found, key=self.order.__getitem__):
            out += [_v(rt, invariant, detail) for invariant, detail in self.found[account]]
        return out + _quiet_globals(rt)
