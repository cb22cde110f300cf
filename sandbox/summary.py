"""``summary.json``: the end state of a run, every amount an exact decimal string."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from actors import CLEARING, FUND, ORACLE

from .invariants import open_interest
from .money import fmt_money, fmt_price, fmt_size

if TYPE_CHECKING:
    from .exchange import RunResult

__all__ = ["summarize", "COUNTED"]

# summary "counts" key -> the event kind it counts
COUNTED = {
    "liquidations": "liquidation_started",
    "bankruptcies": "bankruptcy",
    "fund_takeovers": "fund_takeover",
    "adl": "adl",
}


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
