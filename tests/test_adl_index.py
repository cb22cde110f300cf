"""Clearing's ADL index returns exactly the ranking a scan of every account and a full sort would give."""

from __future__ import annotations

from typing import Any

import attrs
from hypothesis import given, settings
from hypothesis import strategies as st

from actors import Account, Clearing
from actors._common import Position
from actors.adl import adl_rank
from actors.adl_index import single_rank
from sandbox.messages import AdlCandidate, AdlCandidates, AdlCandidatesRequested, PositionView
from sandbox._scenario.load import parse_scenario

MARKETS = ("PUNK", "BAYC")
FORMULAS = ("pnl_x_leverage", "pnl_x_margin_ratio", "pnl_pct")


def _markets() -> dict[str, Any]:
    sc = parse_scenario({
        "name": "index",
        "markets": [{"symbol": m, "mark_price": "100", "initial_margin": "0.1", "maintenance_margin": "0.05"}
                    for m in MARKETS],
        "accounts": [],
    }, "<test>")
    return {m.symbol: attrs.evolve(m, mark_price=100) for m in sc.markets}


# Small integers (prices of 80..120, sizes of -5..5): many exact ties in rank, broken by account id.
position = st.tuples(st.sampled_from(MARKETS), st.integers(-5, 5).filter(bool), st.integers(80, 120),
                     st.integers(-2, 2))
account = st.tuples(st.integers(-50, 300), st.lists(position, max_size=2, unique_by=lambda t: t[0]),
                    st.booleans())
steps = st.lists(st.one_of(
    st.tuples(st.just("change"), st.integers(0, 11), account),
    st.tuples(st.just("ask"), st.sampled_from(MARKETS), st.sampled_from((-1, 1)), st.integers(50, 150),
              st.integers(50, 150), st.sampled_from(FORMULAS), st.integers(0, 12),
              st.frozensets(st.integers(0, 11).map(lambda i: f"a{i}"), max_size=3), st.integers(0, 4)),
), max_size=30)


def _set(acct: Account, spec: tuple[int, list[tuple[str, int, int, int]], bool]) -> None:
    balance, ps, frozen = spec
    acct.balance = balance
    acct.positions = {m: Position(size, size * price + off) for m, size, price, off in ps}
    acct.hold = object() if frozen else None  # type: ignore[assignment]


@settings(max_examples=300, deadline=None)
@given(st.lists(account, min_size=12, max_size=12), steps)
def test_index_ranks_exactly_as_the_scan(initial: list[Any], script: list[Any]) -> None:
    markets = _markets()
    accounts = {f"a{i}": Account(f"a{i}") for i in range(12)}
    for acct, spec in zip(accounts.values(), initial):
        _set(acct, spec)
    clearing = Clearing(markets, accounts)
    sent: list[Any] = []
    clearing.send = lambda recipient, message: sent.append(message)  # type: ignore[method-assign]
    for step in script:
        if step[0] == "change":
            _, i, spec = step
            _set(clearing.accounts[f"a{i}"], spec)
            clearing.adl_index.dirty.add(f"a{i}")  # what Clearing._publish does after every change
            continue
        _, market, side, punk, bayc, formula, size, exclude, at_least = step
        marks = {"PUNK": punk, "BAYC": bayc}
        clearing.on_AdlCandidatesRequested(AdlCandidatesRequested(
            1, market, side, tuple(sorted(marks.items())), formula, size, exclude, at_least))
        got = sent.pop()
        assert isinstance(got, AdlCandidates) and got.ranked
        # The scan: every account with no hold and a position of that sign, ranked by adl_rank, ties by id.
        clearing.on_AdlCandidatesRequested(AdlCandidatesRequested(1, market, side))
        every = sent.pop().candidates
        ranked = sorted((c for c in every if c.account not in exclude),
                        key=lambda c: (-adl_rank(c, market, marks, formula, markets), c.account))
        assert got.total == len(ranked)
        # A prefix of the full ranking: the first at_least, and then as many as cover size.
        n, covered = 0, 0
        while n < len(ranked) and (n < at_least or covered < size):
            covered += abs(next(p.size for p in ranked[n].positions if p.market == market))
            n += 1
        assert list(got.candidates) == ranked[:n]


@given(st.integers(-50, 300), st.integers(-5, 5).filter(bool), st.integers(-600, 600), st.integers(1, 200),
       st.sampled_from(FORMULAS))
def test_single_rank_is_adl_rank(balance: int, size: int, entry: int, mark: int, formula: str) -> None:
    markets = _markets()
    c = AdlCandidate("a", balance, (PositionView("PUNK", size, entry),))
    assert single_rank(balance, size, entry, mark, formula, markets["PUNK"]) == adl_rank(
        c, "PUNK", {"PUNK": mark, "BAYC": 100}, formula, markets)
