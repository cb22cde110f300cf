"""The event log's protocol is declared once (sandbox.messages.Event, Invariant):
every kind the code records and every invariant it reports is in the registry,
and the tools that read kinds read them from there."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from actors.zoo import VARIANTS
from sandbox import bundled_scenarios, resolve_scenario, run_scenario_sync
from sandbox._tools.narrate import STYLES
from sandbox.messages import EVENT_KINDS, INVARIANT_NAMES, Event, Invariant

ROOT = Path(__file__).resolve().parent.parent
SOURCES = sorted((ROOT / "actors").glob("*.py")) + sorted((ROOT / "sandbox").rglob("*.py"))
# Recorded but not narrated: the run's frame, what the narration shows inside
# another line (a fill in its trade, a fee in its fill), and the runtime's own
# faults and crashes (the timeline of a fault-injected run shows their effects).
NOT_NARRATED = {Event.OPENING_STATE, Event.RUN_FINISHED, Event.FILL, Event.FEE, Event.WORK_LIMIT_REACHED,
                Event.ACTOR_FAILED, Event.ACTOR_CRASHED, Event.ACTOR_RESTARTED, Event.FAULT_DELAY,
                Event.FAULT_DUPLICATE, Event.DUPLICATE_IGNORED}


def literal_kinds() -> set[str]:
    """Kinds written as string literals where an event is recorded."""
    found: set[str] = set()
    for path in SOURCES:
        text = path.read_text(encoding="utf-8")
        found.update(re.findall(r'\b(?:emit|record)\(\s*(?:[\w.]+, [\w."]+, )?"([a-z_]+)"\s*[,)]', text))
    return found


def test_every_kind_written_in_the_code_is_declared():
    assert literal_kinds() <= EVENT_KINDS, literal_kinds() - EVENT_KINDS


def test_every_kind_a_run_records_is_declared():
    seen: set[str] = set()
    for name in bundled_scenarios():
        seen |= {e["kind"] for e in run_scenario_sync(resolve_scenario(name)).events}
    for v in VARIANTS.values():
        seen |= {e["kind"] for e in run_scenario_sync(resolve_scenario(v.scenario), actors=v.actors).events}
    assert seen <= EVENT_KINDS, seen - EVENT_KINDS
    # and the registry holds nothing stale: a declared kind is written somewhere in the code
    code = "\n".join(p.read_text(encoding="utf-8") for p in SOURCES if p.name != "messages.py")
    stale = {k for k in Event if f'"{k.value}"' not in code and f"Event.{k.name}" not in code
             and not re.search(rf'f"[a-z_]*{{[^}}]+}}_{k.value.split("_", 1)[-1]}"', code)}
    assert not stale, stale


def test_the_narrator_has_a_sentence_for_every_kind():
    assert set(STYLES) <= EVENT_KINDS
    assert EVENT_KINDS - set(STYLES) == NOT_NARRATED


def test_every_invariant_reported_is_declared():
    reported: set[str] = set()
    for path in SOURCES:
        text = path.read_text(encoding="utf-8")
        reported.update(re.findall(r'(?:violation|Violation|_v)\(\s*(?:rt,\s*)?"([a-z][^"]*)"', text))
    assert reported <= INVARIANT_NAMES, reported - INVARIANT_NAMES
    for v in VARIANTS.values():
        result = run_scenario_sync(resolve_scenario(v.scenario), actors=v.actors)
        assert {x.invariant for x in result.violations} <= INVARIANT_NAMES


def test_an_event_name_is_its_string_in_the_log():
    import json

    assert json.dumps({"kind": Event.MARGIN_CALL}) == '{"kind": "margin_call"}'
    assert f"{Event.MARGIN_CALL}" == "margin_call" and Event("adl") is Event.ADL
    assert Invariant.MONEY_CONSERVED == "money is conserved"


@pytest.mark.parametrize("kind", ["adl", "fund_takeover", "fee"])
def test_explore_find_accepts_the_registry(kind):
    from sandbox._tools import explore_cli

    assert explore_cli.EVENT_KINDS is EVENT_KINDS and kind in explore_cli.EVENT_KINDS
