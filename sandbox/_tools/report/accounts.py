"""Which accounts get an equity chart: the liquidated, the deleveraged, and the largest, within a limit."""

from __future__ import annotations

import math
from itertools import zip_longest
from typing import Sequence

import attrs


from sandbox._tools.report.recording import MAX_ACCOUNTS, Recording
from sandbox.messages import Event


# --- account selection ----------------------------------------------------------------------


@attrs.frozen
class AccountChoice:
    shown: list[str]
    reason: dict[str, str]
    sentence: str


def _quotas(sizes: Sequence[int], limit: int, reserve: Sequence[int]) -> list[int]:
    """How many of each group to show: first what ``reserve`` sets aside for each, then in group order."""
    take = [min(n, r) for n, r in zip(sizes, reserve)]
    while sum(take) > limit:  # a limit smaller than the reserves: trim from the last group
        k = max(i for i, t in enumerate(take) if t)
        take[k] -= 1
    for i, n in enumerate(sizes):
        take[i] += min(n - take[i], limit - sum(take))
    return take


def _interleave(first: Sequence[str], second: Sequence[str]) -> list[str]:
    return [a for pair in zip_longest(first, second) for a in pair if a is not None]


def choose_accounts(recording: Recording, limit: int = MAX_ACCOUNTS) -> AccountChoice:
    """The accounts worth a chart: liquidated, deleveraged by ADL, and those closest to liquidation.

    When there are more than ``limit``, most places go to liquidated accounts
    (bankrupt ones and ones that left a surplus, alternately, earliest first),
    one to an account deleveraged by ADL and two to the survivors that came
    closest to liquidation (lowest equity ÷ maintenance margin).
    """
    liquidated: list[str] = []
    bankrupt: set[str] = set()
    deleveraged: list[str] = []
    for _, e in recording.events:
        if e["kind"] == Event.LIQUIDATION_STARTED and e["account"] not in liquidated:
            liquidated.append(e["account"])
        elif e["kind"] == Event.BANKRUPTCY:
            bankrupt.add(e["account"])
        elif e["kind"] == Event.ADL and e["account"] not in deleveraged:
            deleveraged.append(e["account"])
    deleveraged = [a for a in deleveraged if a not in liquidated]
    if liquidated and liquidated[0] in bankrupt:
        liquidated = _interleave([a for a in liquidated if a in bankrupt], [a for a in liquidated if a not in bankrupt])
    else:
        liquidated = _interleave([a for a in liquidated if a not in bankrupt], [a for a in liquidated if a in bankrupt])

    def closest(acct: str) -> float:
        ratios = [eq / mm for _, (eq, mm) in recording.accounts[acct] if mm > 0]
        return min(ratios) if ratios else math.inf

    others = [a for a in recording.accounts if a not in liquidated and a not in deleveraged]
    others = sorted((a for a in others if closest(a) < math.inf), key=lambda a: (closest(a), a))

    n_liq, n_adl, n_other = _quotas([len(liquidated), len(deleveraged), len(others)], limit, [limit - 3, 1, 2])
    shown = liquidated[:n_liq] + deleveraged[:n_adl] + others[:n_other]
    reason: dict[str, str] = {}
    for a in shown:
        if a in liquidated:
            reason[a] = "liquidated"
        elif a in deleveraged:
            reason[a] = "deleveraged by ADL"
        else:
            reason[a] = f"equity ≥ {closest(a):.2f} × maint. margin throughout"
    total = len(recording.accounts)
    flat = total - len(liquidated) - len(deleveraged) - len(others)
    parts = []
    if n_liq:
        parts.append(f"the {n_liq} liquidated" if n_liq == len(liquidated) else
                     f"{n_liq} of the {len(liquidated)} liquidated (bankrupt or not in turn, earliest first)")
    if n_adl:
        parts.append(f"the {n_adl} deleveraged by ADL" if n_adl == len(deleveraged) else
                     f"{n_adl} of the {len(deleveraged)} deleveraged by ADL (earliest first)")
    if n_other:
        parts.append(f"the {n_other} other{'s' if n_other > 1 else ''} that came closest to liquidation "
                     "(lowest equity ÷ maintenance margin)")
    what = _and(parts) or "none held a position"
    if len(shown) == total:
        sentence = f"All {total} accounts are shown: {what}."
    else:
        sentence = f"Showing {len(shown)} of {total} accounts: {what}."
    if flat:
        sentence += (f" {flat} account{'s' if flat > 1 else ''} never held a position"
                     f" and {'are' if flat > 1 else 'is'} left out.")
    return AccountChoice(shown, reason, sentence)


def _and(parts: Sequence[str]) -> str:
    if len(parts) <= 1:
        return "".join(parts)
    return ", ".join(parts[:-1]) + " and " + parts[-1]
