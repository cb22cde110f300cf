"""The quiet-point checks made on what changed (invariants.QuietChecker) find exactly what check_all finds."""

from __future__ import annotations

from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from actors.zoo import VARIANTS
from sandbox import resolve_scenario
from sandbox._exchange.invariants import QuietChecker, check_all
from sandbox._core.runtime import Runtime
from sandbox._core.specs import Scenario
from sandbox._scenario.load import parse_scenario
from sandbox.testing import cross_margin_dicts, run_sync, scenario_dicts


def compare(scenario: Scenario, seed: int, actors: Any = None) -> tuple[int, int]:
    """Run ``scenario`` with a second QuietChecker beside the runner's, and compare it with check_all at every
    quiet point; return (quiet points, violations found)."""
    state: dict[str, Any] = {"checker": None, "points": 0, "found": 0}

    def checker(rt: Runtime) -> QuietChecker:
        if state["checker"] is None:
            state["checker"] = QuietChecker(rt, scenario.fund_balance)
        return state["checker"]

    def after(rt: Runtime, envelope: Any) -> None:
        checker(rt).delivered(envelope)

    def observe(rt: Runtime) -> None:
        full = check_all(rt, scenario.fund_balance)
        assert checker(rt).check() == full
        state["points"] += 1
        state["found"] += len(full)

    result = run_sync(scenario, seed=seed, actors=actors, after_delivery=after, observe=observe)
    assert result.error is None, result.error
    return state["points"], state["found"]


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(scenario_dicts(policies=True, max_events=12), st.integers(0, 5))
def test_random_runs(document: dict[str, Any], seed: int) -> None:
    compare(parse_scenario(document, "<generated>"), seed)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cross_margin_dicts(), st.integers(0, 5))
def test_random_cross_margin_runs(document: dict[str, Any], seed: int) -> None:
    compare(parse_scenario(document, "<generated>"), seed)


def test_the_bug_zoo_violating_runs() -> None:
    # Every zoo variant on its scenario over seeds: runs that break invariants, checked both ways.
    violating = 0
    for variant in VARIANTS.values():
        sc = resolve_scenario(variant.scenario)
        for seed in range(12):
            points, found = compare(sc, seed, variant.actors)
            assert points
            violating += found > 0
    assert violating >= 5  # the comparison did see violations, not only clean runs
