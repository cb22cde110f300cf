"""A shrunk failure as a pytest function, in the spirit of hypothesis's "Falsifying example".

Why: a replay file reproduces a failure, but a test is what a user keeps. The
function runs the scenario through :mod:`sandbox.testing` under the shrunk
schedule (a tape: decision ``i`` is ``tape[i] mod options``, 0 past its end)
and asserts that it fails the way the search saw. Once the bug is fixed, the
same schedule with ``assert run.failure is None`` is a regression test for
exactly that interleaving: a tape keeps meaning "this order of deliveries"
even if the fix changes how many decisions a run asks for, where a strict
replay would only report that the run diverged.

A failure that a tape of bytes cannot express (a fault of less than 1/256
probability happening, possible only with PCT's own random draws) is written
with the exact recorded decisions instead (:class:`sandbox.testing.ScriptedSchedule`).
"""

from __future__ import annotations

import re

from sandbox._tools.actorref import is_file_ref
from sandbox._tools.explore import Finding, decisions_to_tape

__all__ = ["render_test"]


def _name(*parts: str | None) -> str:
    words = [re.sub(r"\W+", "_", p).strip("_").lower() for p in parts if p]
    return "test_" + "_".join(w for w in words if w)


def render_test(finding: Finding, scenario_ref: str, command: str) -> str:
    """The source of one pytest function that reproduces ``finding``.

    ``scenario_ref`` is what :func:`sandbox.resolve_scenario` takes (a bundled
    name or a path); ``command`` is the command that found it, for the docstring.
    """
    failure = finding.failure
    lines = [
        f"def {_name(finding.scenario.name, finding.variant, *(r for r, _ in finding.actor_refs), failure.kind)}():",
        f'    """Falsifying schedule found by: {command}"""',
    ]
    imports = ["from sandbox import resolve_scenario"]
    tape = decisions_to_tape(finding.decisions)
    if tape is not None:
        imports.append("from sandbox.testing import Schedule, run_schedule_sync")
        schedule = f"Schedule(bytes({tape!r}))"
    else:
        imports.append("from sandbox.testing import ScriptedSchedule, run_schedule_sync")
        schedule = f"ScriptedSchedule({[tuple(d) for d in finding.decisions]!r})"
    actors: list[str] = []
    comments: list[str] = []
    if finding.variant:
        imports.append("from actors.zoo import VARIANTS")
        actors.append(f"**VARIANTS[{finding.variant!r}].actors")
    for role, ref in finding.actor_refs:
        module, _, cls = ref.rpartition(":")
        if is_file_ref(ref):
            comments.append(f"    # {cls}: the class in {module}; define or import it in this test's module")
        else:
            imports.append(f"from {module} import {cls}")
        actors.append(f"{role!r}: {cls}")
    budget = ""
    if failure.kind == "livelock":  # a livelock is "the budget ran out": the test needs the same budget
        imports.append("from sandbox._tools.explore import Budget")
        budget = f", budget=Budget({finding.budget.deliveries}, {finding.budget.time_ms})"
    lines += [f"    {line}" for line in imports] + comments + [""]
    lines.append(f"    scenario = resolve_scenario({scenario_ref!r})")
    args = [f"scenario, {schedule}"]
    if finding.variant and len(actors) == 1:
        args.append(f"actors=VARIANTS[{finding.variant!r}].actors")
    elif actors:
        args.append("actors={" + ", ".join(actors) + "}")
    if finding.find:
        args.append(f"find={finding.find!r}")
    lines.append(f"    run = run_schedule_sync({', '.join(args)}{budget})")
    lines.append('    assert run.failure is not None, "the schedule no longer fails"')
    lines.append(f"    assert run.failure.kind == {failure.kind!r}, run.failure.summary")
    invariants = sorted({v.invariant for v in failure.violations})
    if invariants:
        lines.append(f"    assert {{v.invariant for v in run.failure.violations}} == {set(invariants)!r}")
    elif failure.kind == "crash":
        lines.append(f"    assert run.failure.summary.startswith({failure.summary.split(':')[0]!r})")
    return "\n".join(lines) + "\n"
