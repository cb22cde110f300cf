"""The exchange's invariants, as functions of its actors' state.

Each check takes a :class:`~sandbox.runtime.Runtime` whose actors are the
standard ones (or subclasses) and returns a list of
:class:`~sandbox.runtime.Violation`. They read state from outside the actor
system, so they see the truth, not any actor's view. ``check_all`` runs them
all; the runner calls it at every quiet point (no message in flight).

* conservation: sum of account balances + fund balance + fees + unrealized
  PnL of every position (accounts' and fund's) == deposits - withdrawals +
  initial fund, exactly, in wei;
* the fund's balance is never negative;
* no account ends a liquidation with a negative balance (checked by clearing
  at settlement, reported as it happens);
* long open interest == short open interest in every market;
* no account is liquidated twice at once (checked by clearing at freeze);
* liveness at a quiet point: no account is still frozen, and no account with
  positions has equity <= maintenance margin at the oracle's prices.
"""

from __future__ import annotations

from typing import Any

from typing import Iterable

from actors._common import ADL, CLEARING, FUND, ORACLE, equity, maintenance_margin
from sandbox.money import fmt_money, fmt_size

from .eventlog import time_seconds
from .messages import Fill, PositionTakenOver, SurplusTransferred
from .runtime import Envelope, Runtime, Violation

__all__ = [
    "check_conservation",
    "check_fund_non_negative",
    "check_open_interest",
    "check_quiet",
    "check_all",
    "check_step",
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
            oi[m][0 if p.size > 0 else 1] += abs(p.size)
    for lot in fund.lots.values():
        oi[lot.market][0 if lot.size > 0 else 1] += abs(lot.size)
    return {m: (long, short) for m, (long, short) in oi.items()}


def conservation_gap(rt: Runtime, initial_fund: int) -> int:
    """Total value on the books minus what came in; 0 when money is conserved."""
    clearing, fund = rt[CLEARING], rt[FUND]
    marks = rt[ORACLE].marks
    total = clearing.fees + fund.balance
    external = initial_fund
    for acct in clearing.accounts.values():
        total += acct.balance + sum(p.size * marks[m] - p.entry_value for m, p in acct.positions.items())
        external += acct.deposited - acct.withdrawn
    for lot in fund.lots.values():
        total += lot.size * marks[lot.market] - lot.basis
    return total - external


def check_conservation(rt: Runtime, initial_fund: int) -> list[Violation]:
    gap = conservation_gap(rt, initial_fund)
    if gap:
        return [_v(rt, "money is conserved", f"books differ from deposits - withdrawals + initial fund by {fmt_money(gap)}")]
    return []


def check_fund_non_negative(rt: Runtime) -> list[Violation]:
    balance = rt[FUND].balance
    return [_v(rt, "fund never negative", f"fund balance {fmt_money(balance)}")] if balance < 0 else []


def check_open_interest(rt: Runtime) -> list[Violation]:
    return [
        _v(rt, "long open interest equals short", f"{m}: long {fmt_size(long)} != short {fmt_size(short)}")
        for m, (long, short) in open_interest(rt).items()
        if long != short
    ]


def check_quiet(rt: Runtime) -> list[Violation]:
    """What must hold once nothing is in flight: every liquidation finished, none missed."""
    clearing = rt[CLEARING]
    marks = rt[ORACLE].marks
    out = []
    for acct in clearing.accounts.values():
        if acct.hold is not None:
            out.append(_v(rt, "every liquidation completes", f"{acct.id} is still frozen (liquidation {acct.hold.liq_id})"))
            continue
        if acct.positions:
            triples = [(m, p.size, p.entry_value) for m, p in acct.positions.items()]
            eq = equity(acct.balance, triples, marks)
            mm = maintenance_margin(triples, marks, clearing.markets)
            if eq <= mm:
                out.append(_v(
                    rt, "every underwater account is liquidated",
                    f"{acct.id} has equity {fmt_money(eq)} <= maintenance margin {fmt_money(mm)}",
                ))
    if rt[ADL].current is not None:
        out.append(_v(rt, "every liquidation completes", "an ADL request is still open"))
    return out


def check_step(rt: Runtime, initial_fund: int, in_flight: Iterable[Envelope]) -> list[Violation]:
    """The invariants that hold after *every* delivery, counting what is in flight.

    Money and positions travel in three messages: a :class:`Fill` not yet
    applied by its ledger, a :class:`PositionTakenOver` not yet booked by the
    fund, and a :class:`SurplusTransferred` not yet received. Counting those,
    money is conserved and positions net to zero at every step, not only at
    quiet points; and the fund's balance is never negative at any step.
    """
    marks = rt[ORACLE].marks
    gap = conservation_gap(rt, initial_fund)
    net = {m: long - short for m, (long, short) in open_interest(rt).items()}
    for envelope in in_flight:
        if envelope.duplicate:
            continue  # its receiver will ignore it
        msg = envelope.message
        if isinstance(msg, (Fill, PositionTakenOver)):
            gap += msg.size * (marks[msg.market] - msg.price)
            net[msg.market] += msg.size
        elif isinstance(msg, SurplusTransferred):
            gap += msg.amount
    out = check_fund_non_negative(rt)
    if gap:
        out.append(_v(rt, "money is conserved", f"books and messages in flight differ by {fmt_money(gap)}"))
    out += [
        _v(rt, "long open interest equals short", f"{m}: positions and fills in flight net to {fmt_size(n)}")
        for m, n in net.items()
        if n
    ]
    return out


def check_all(rt: Runtime, initial_fund: int, *, quiet: bool = True) -> list[Violation]:
    out = check_conservation(rt, initial_fund) + check_fund_non_negative(rt) + check_open_interest(rt)
    if quiet:
        out += check_quiet(rt)
    return out


