"""Outcome classes: does the end state depend on the interleaving?

Why: "is there a violation?" is one question; a designer also asks whether
the exchange's result depends on the order in which messages happen to
arrive (two correct outcomes are a race in the rules, not in the code).
``sandbox explore SCENARIO --outcomes`` groups the final states of the runs
it tries by what a user of the exchange can see:

* the insurance fund's balance and the positions it holds,
* how many liquidations, bankruptcies, fund takeovers and ADL trades there were,
* every account's balance and positions (size and cost basis).

Two runs are in the same class when all of these are equal, exactly (money
is integers). Each class keeps a representative run, the one with the fewest
out-of-order deliveries (the closest to FIFO), whose decisions become its
replay file.
"""

from __future__ import annotations


import attrs

from actors._common import CLEARING, FUND

from sandbox._tools.explore import Run
from sandbox._core.money import fmt_money, fmt_size

__all__ = ["Outcome", "OutcomeClass", "Outcomes", "outcome_of", "COUNTED"]

# The event kinds counted in an outcome.
COUNTED = ("liquidation_started", "bankruptcy", "fund_takeover", "adl")

Outcome = tuple[tuple[str, str], ...]  # (field, value) in a fixed order


def outcome_of(run: Run) -> Outcome:
    """The final state of ``run`` as (field, value) pairs: every amount an exact decimal string."""
    rt = run.runtime
    fund, clearing = rt[FUND], rt[CLEARING]
    fields: list[tuple[str, str]] = [("fund", fmt_money(fund.balance))]
    lots: dict[str, int] = {}
    for lot in fund.lots.values():
        lots[lot.market] = lots.get(lot.market, 0) + lot.size
    fields.append(("fund positions", _positions({m: (s, None) for m, s in sorted(lots.items()) if s})))
    counts = rt.log.counts
    fields += [(kind.replace("_", " "), str(counts[kind])) for kind in COUNTED]
    for acct in clearing.accounts.values():
        fields.append((f"{acct.id} balance", fmt_money(acct.balance)))
        fields.append((f"{acct.id} positions", _positions(
            {m: (p.size, p.entry_value) for m, p in sorted(acct.positions.items())})))
    return tuple(fields)


def _positions(positions: dict[str, tuple[int, int | None]]) -> str:
    if not positions:
        return "flat"
    return ", ".join(
        f"{m} {fmt_size(size)}" + ("" if basis is None else f" @ cost {fmt_money(basis)}")
        for m, (size, basis) in positions.items()
    )


@attrs.define
class OutcomeClass:
    outcome: Outcome
    runs: int
    representative: Run
    overtakes: int  # out-of-order deliveries of the representative
    first: int  # the example in which it was first seen


@attrs.define
class Outcomes:
    """The classes seen so far, in the order they were first seen."""

    classes: dict[Outcome, OutcomeClass] = attrs.Factory(dict)
    runs: int = 0

    def add(self, run: Run) -> None:
        self.runs += 1
        outcome = outcome_of(run)
        overtakes = sum(d.overtook for d in run.deliveries)
        found = self.classes.get(outcome)
        if found is None:
            self.classes[outcome] = OutcomeClass(outcome, 1, run, overtakes, self.runs)
            return
        found.runs += 1
        if overtakes < found.overtakes:
            found.representative, found.overtakes = run, overtakes

    def varying(self) -> list[str]:
        """The fields that differ between classes (all of them, for one class: none)."""
        if len(self.classes) < 2:
            return []
        outcomes = list(self.classes)
        return [field for i, (field, value) in enumerate(outcomes[0])
                if any(o[i] != (field, value) for o in outcomes[1:])]
