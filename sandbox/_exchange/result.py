"""What a run gives back: :class:`RunResult`, and its ``summary.json`` (the end state, every amount an exact decimal string)."""

from __future__ import annotations

from typing import Any

import attrs

from actors import CLEARING, FUND, ORACLE

from sandbox._exchange.invariants import open_interest
from sandbox._core.money import fmt_money, fmt_price, fmt_size
from sandbox._core.eventlog import EventLog
from sandbox._core.runtime import ActorFailed, Runtime
from sandbox._core.actor import Violation
from sandbox._core.specs import Scenario
from sandbox.messages import Event

__all__ = ["RunResult", "WorkLimitExceeded", "WorkLimits", "summarize", "COUNTED"]

# summary "counts" key -> the event kind it counts
COUNTED = {
    "liquidations": Event.LIQUIDATION_STARTED,
    "bankruptcies": Event.BANKRUPTCY,
    "fund_takeovers": Event.FUND_TAKEOVER,
    "adl": Event.ADL,
}


@attrs.frozen
class WorkLimits:
    """The most a run of one scenario may do: ``steps`` and a virtual-time ``horizon_ms``."""

    steps: int
    horizon_ms: int
    entries: int  # what the cap is derived from


class WorkLimitExceeded(Exception):
    """A run reached its cap of steps or its horizon of virtual time: it was stopped there."""

    def __init__(self, what: str, limits: WorkLimits) -> None:
        self.what = what
        self.limits = limits
        super().__init__(what)


@attrs.define
class RunResult:
    scenario: Scenario
    seed: int
    mode: str
    runtime: Runtime
    violations: list[Violation]
    error: ActorFailed | None = None  # an actor raised: the run stopped there
    stopped: WorkLimitExceeded | None = None  # the run reached its work limits and was stopped there

    @property
    def log(self) -> EventLog:
        return self.runtime.log

    @property
    def events(self) -> list[dict[str, Any]]:
        return self.runtime.log.events

    @property
    def ok(self) -> bool:
        return not self.violations and self.error is None and self.stopped is None

    @property
    def status(self) -> str:
        """``ok``, ``invariant_violated``, ``failed`` (an actor raised) or ``stopped`` (the work limits)."""
        if self.error is not None:
            return "failed"
        if self.stopped is not None:
            return "stopped"
        return "ok" if not self.violations else "invariant_violated"

    def summary(self) -> dict[str, Any]:
        """``summary.json``'s content."""
        return summarize(self)


def _positions(items: dict[str, tuple[int, int]]) -> dict[str, dict[str, str]]:
    return {m: {"size": fmt_size(size), "entry_value": fmt_money(ev)} for m, (size, ev) in sorted(items.items())}


def _funds(result: RunResult, fund: Any) -> dict[str, Any]:
    """Each fund's opening and final balance and markets, when there are several (``[[funds]]``)."""
    if not result.scenario.funds:
        return {}
    ledgers = getattr(fund, "ledgers", {})
    return {"funds": {
        f.name: {"initial": fmt_money(f.balance), "final": fmt_money(ledgers.get(f.name, 0)), "markets": list(f.markets)}
        for f in result.scenario.funds
    }}


def _isolated(buckets: dict[str, tuple[str, str]], account: str) -> dict[str, Any]:
    """An isolated-margin bucket's owner and market (``isolated``); nothing for a cross account."""
    if account not in buckets:
        return {}
    owner, market = buckets[account]
    return {"isolated": {"owner": owner, "market": market}}


def _vault(result: RunResult, clearing: Any, oracle: Any) -> dict[str, Any]:
    """The backstop vault's account (``policy.backstop_vault``): its balance and PnL at the final marks."""
    name = result.scenario.policy.backstop_vault
    acct = clearing.accounts.get(name) if name else None
    if acct is None:
        return {}
    upnl = sum(p.size * oracle.marks[m] - p.entry_value for m, p in acct.positions.items())
    return {"backstop_vault": {
        "account": name, "balance": fmt_money(acct.balance), "unrealized_pnl": fmt_money(upnl),
        "pnl": fmt_money(acct.balance + upnl - acct.deposited + acct.withdrawn),
    }}


def summarize(result: RunResult) -> dict[str, Any]:
    rt = result.runtime
    clearing, fund, oracle = rt[CLEARING], rt[FUND], rt[ORACLE]
    counts = result.log.counts
    buckets = {a.id: a.isolated_of for a in result.scenario.accounts if a.isolated_of is not None}
    return {
        "scenario": result.scenario.name,
        "seed": result.seed,
        "mode": result.mode,
        "status": result.status,
        "time": result.events[-1]["time"] if result.events else 0,
        "insurance_fund": {
            "initial": fmt_money(result.scenario.fund_balance),
            "final": fmt_money(fund.balance),
            "positions": _positions(fund.positions()),
            **_funds(result, fund),
            # Drift v2's revenue pool (policy.revenue_pool): money from outside, like a deposit.
            **({"revenue_received": fmt_money(getattr(fund, "revenue_received", 0))}
               if result.scenario.policy.revenue_pool else {}),
        },
        **_vault(result, clearing, oracle),
        "accounts": {
            acct.id: {
                "deposited": fmt_money(acct.deposited),
                "withdrawn": fmt_money(acct.withdrawn),
                "balance": fmt_money(acct.balance),
                "positions": _positions({m: (p.size, p.entry_value) for m, p in acct.positions.items()}),
                **_isolated(buckets, acct.id),
            }
            for acct in clearing.accounts.values()
        },
        "markets": {
            m: {
                "mark_price": fmt_price(oracle.marks[m]),
                "open_interest_long": fmt_size(long),
                "open_interest_short": fmt_size(short),
            }
            for m, (long, short) in open_interest(rt).items()
        },
        "fees": fmt_money(clearing.fees),
        # What the opening positions' entry costs do not net to: a constant of
        # the conservation equation (books == deposits - withdrawals + initial fund + this).
        "opening_imbalance": fmt_money(result.scenario.opening_imbalance),
        "counts": {key: counts[kind] for key, kind in COUNTED.items()},
        "error": None if result.error is None else {
            "actor": result.error.envelope.recipient,
            "message": type(result.error.envelope.message).__name__,
            "seq": result.error.envelope.seq,
            "error": f"{type(result.error.error).__name__}: {result.error.error}",
        },
        "stopped": None if result.stopped is None else str(result.stopped),
        "violations": [
            {"invariant": v.invariant, "detail": v.detail, "time": v.time, "actor": v.actor}
            for v in result.violations
        ],
    }
