"""A sandbox of a perpetual-futures exchange's risk machinery, built as trio actors.

Public surface: scenarios (:func:`load_scenario`, :func:`resolve_scenario`),
running them (:func:`run_scenario`, :func:`run_scenario_sync`), the runtime
(:class:`Runtime`, :class:`Actor`, the delivery seam) and
:mod:`sandbox.testing` for users' own tests. The actors live in :mod:`actors`.
"""

from typing import Any

from sandbox._core.actor import Actor, Envelope, Violation
from sandbox._core.delivery import LiveDelivery, SeededDelivery
from sandbox._core.runtime import Runtime
from sandbox._core.specs import Scenario
from sandbox._scenario.reader import ScenarioError
from sandbox._scenario.load import bundled_scenarios, load_scenario, parse_scenario, resolve_scenario

__all__ = [
    "Actor",
    "Envelope",
    "InvariantViolation",
    "LiveDelivery",
    "ROLES",
    "RunResult",
    "Runtime",
    "Scenario",
    "ScenarioError",
    "SeededDelivery",
    "Violation",
    "build",
    "bundled_scenarios",
    "load_scenario",
    "parse_scenario",
    "resolve_scenario",
    "run_scenario",
    "run_scenario_sync",
]


# The exchange's wiring imports the actors, which import sandbox._core; Python
# runs this __init__ before any submodule of sandbox, so the wiring is loaded
# on first use of one of its names (PEP 562): whichever of sandbox and actors
# is imported first, the order works out (docs/architecture.md, "Import order").
_EXCHANGE = ("ROLES", "InvariantViolation", "RunResult", "build", "run_scenario", "run_scenario_sync")


def __getattr__(name: str) -> Any:
    if name in _EXCHANGE:
        from sandbox._exchange import run as exchange

        return getattr(exchange, name)
    raise AttributeError(f"module 'sandbox' has no attribute {name!r}")
