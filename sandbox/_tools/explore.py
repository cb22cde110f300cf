"""Search the space of message interleavings with hypothesis; shrink and replay what it finds.

Every decision of a run (which due message goes next, and each message's
latency when the scenario has a ``[network]`` model) comes from a
*chooser*. :func:`explore` lets hypothesis be the chooser: each example is one
whole run, checked after every delivery (:func:`sandbox._exchange.invariants.check_step`,
and the actors' own checks) and at every quiet point
(:func:`sandbox._exchange.invariants.check_all`). A run that breaks an invariant, or in
which an event of the wanted kind happens (``find``), fails the example;
hypothesis then shrinks its decisions towards 0, i.e. towards plain FIFO
delivery with no latency, so what is left is the smallest departure from the
obvious order that still fails. Failures go to hypothesis's example database,
so the next search tries them first.

A :class:`Finding` carries the recorded decisions; :func:`replay_run` runs
them again and gets the very same events.

The second strategy, PCT (:mod:`sandbox._core.pct`), is another chooser: its runs
carry a probability bound, and what it finds is shrunk by :func:`shrink`.
Every run has a :class:`Budget` (sized by :func:`plan` from the scenario's
FIFO run) so that a run that never ends is a ``livelock`` finding in
seconds rather than a search that hangs; shrinking has a budget too.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import random
from pathlib import Path
from typing import Any, Callable, Final, Iterable, Mapping, Sequence

import attrs
import trio
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import seed as hypothesis_seed
from hypothesis import strategies as st
from hypothesis.database import DirectoryBasedExampleDatabase, ExampleDatabase

from sandbox._exchange import invariants
from sandbox._core.eventlog import EventLog
from sandbox._exchange.run import MAX_CRASHES_IN_A_ROW, finish_run, prepare_run
from sandbox._core.choosers import Chooser, RecordingChooser, ScriptedChooser
from sandbox._core.actor import Envelope, Violation
from sandbox._core.delivery import Network, SeededDelivery
from sandbox._core.runtime import Runtime
from sandbox._core.money import _show
from sandbox._core.pct import DEFAULT_DEPTH, PCTChooser, pct_seed
from sandbox._core.specs import Scenario
from sandbox._scenario.reader import ScenarioError
from sandbox._scenario.load import _parse_bytes
from sandbox.messages import Event

__all__ = [
    "Budget",
    "Plan",
    "plan",
    "STRATEGIES",
    "shrink",
    "decisions_to_tape",
    "Exploration",
    "Finding",
    "Failure",
    "TapeChooser",
    "explore",
    "run_once",
    "run_once_async",
    "Run",
    "write_replay",
    "read_replay",
    "replay_run",
    "REPLAY_VERSION",
]

REPLAY_FORMAT: Final = "sandbox-replay"
REPLAY_VERSION: Final = 1
DEFAULT_DB: Final = Path(".hypothesis") / "sandbox-explore"
# A run that delivers more than this without ending is reported as a livelock
# (the ceiling of every budget, and the budget of a run with none given).
MAX_DELIVERIES: Final = 200_000
# An example's budget, from the FIFO run of the scenario: this many times its
# deliveries plus this many more; and in virtual time, its end plus again as
# long as it ran past the last scripted event (timers, e.g. cooldowns), plus
# this much.
BUDGET_FACTOR: Final = 20
BUDGET_SLACK: Final = 10_000
BUDGET_TIME_MS: Final = 60_000
# Shrinking stops trying new candidates after this many deliveries in all
# (the shrunk failure so far is kept): a livelock costs a whole budget per
# candidate, and shrinking must end in seconds, not hours.
SHRINK_DELIVERIES: Final = 200_000


@attrs.frozen
class Budget:
    """What one example may use before it is reported as a livelock.

    ``deliveries``: messages delivered; ``time_ms``: virtual time (None: no
    limit). A run that loops through messages meets the first, one that loops
    through timers (``send_later``) the second. Both are counted by the run
    itself, not by a wall clock, so a seeded search stays reproducible.
    """

    deliveries: int = MAX_DELIVERIES
    time_ms: int | None = None


class TapeChooser:
    """Decisions read off a tape of small integers that hypothesis draws in one go.

    Decision ``i`` is ``tape[i] mod (number of options)``; past the end of
    the tape every decision is 0 (the oldest message, the lowest latency).
    Drawing the tape as one list is much cheaper than one hypothesis draw per
    decision, and it shrinks the same way: shorter, and towards zeros, which
    is plain FIFO delivery.
    """

    def __init__(self, tape: bytes | list[int]) -> None:
        self._tape = tape
        self._i = 0

    def _next(self, options: int) -> int:
        i = self._i
        self._i += 1
        return self._tape[i] % options if i < len(self._tape) else 0

    def choose(self, n: int) -> int:
        return self._next(n)

    def latency(self, low: int, high: int) -> int:
        return low + self._next(high - low + 1)

    def chance(self, ppm: int) -> bool:
        # High bytes mean "the fault happens", so shrinking (towards 0) removes faults.
        return self._next(256) * 1_000_000 >= (256 * (1_000_000 - ppm))


class _CountingChooser:
    def __init__(self) -> None:
        self.count = 0

    def choose(self, n: int) -> int:
        self.count += 1
        return 0

    def latency(self, low: int, high: int) -> int:
        self.count += 1
        return low

    def chance(self, ppm: int) -> bool:
        self.count += 1
        return False


def _tapes(n: int) -> st.SearchStrategy[bytes]:
    # One draw of a fixed length of bytes: cheap to generate, every decision
    # varies (hypothesis keeps variable-length lists short on average), and
    # shrinking drives each byte to 0.
    return st.binary(min_size=n, max_size=n)


@attrs.frozen
class Plan:
    """What the FIFO run of a scenario says about the runs to try."""

    tape_length: int  # room for every decision: twice what the FIFO run needs, plus slack
    budget: Budget
    steps: int  # deliveries of the FIFO run (PCT's k)
    fifo_failure: Failure | None


def plan(scenario: Scenario, actors: Mapping[str, type] | None, budget: Budget | None = None) -> Plan:
    """Run the scenario once in FIFO order and size the search from it.

    Unless ``budget`` is given, an example may deliver ``BUDGET_FACTOR`` times
    what the FIFO run delivers plus ``BUDGET_SLACK``, and run until the FIFO
    run's end plus its overhang past the last scripted event plus
    ``BUDGET_TIME_MS`` of virtual time. If the FIFO
    run itself does not end (it meets the given budget, or
    ``MAX_DELIVERIES`` or ten times ``BUDGET_TIME_MS`` past the last scripted event),
    the budget is sized from the scripted events alone.
    """
    last_event = max((e.at_ms for e in scenario.events), default=0)
    cap = budget if budget is not None else Budget(MAX_DELIVERIES, last_event + 10 * BUDGET_TIME_MS)
    counter = _CountingChooser()
    fifo = run_once(scenario, counter, actors=actors, budget=cap)
    looped = fifo.failure is not None and fifo.failure.kind == "livelock"
    steps = 0 if looped else len(fifo.deliveries)
    if budget is None:
        end = last_event if looped else fifo.runtime.now_ms
        budget = Budget(min(MAX_DELIVERIES, BUDGET_FACTOR * steps + BUDGET_SLACK),
                        2 * end - last_event + BUDGET_TIME_MS)
    return Plan(2 * counter.count + 16, budget, max(steps, 1), fifo.failure)


def tape_length(scenario: Scenario, actors: Mapping[str, type] | None) -> int:
    """Room for every decision of a run: twice what the FIFO run needs, plus slack."""
    return plan(scenario, actors).tape_length


@attrs.frozen
class Failure:
    """Why a run stopped: an invariant broke, an actor crashed, or the wanted event happened."""

    kind: str  # "violation" | "crash" | "livelock" | "event"
    summary: str
    violations: tuple[Violation, ...] = ()


class _Stop(Exception):
    def __init__(self, failure: Failure) -> None:
        self.failure = failure
        super().__init__(failure.summary)


@attrs.frozen
class Delivered:
    """One delivery of a run, as the interleaving lists it."""

    time_ms: int
    envelope: Envelope
    overtook: bool  # an older message was still in flight (it was delivered out of FIFO order)


@attrs.define
class Run:
    """One run under a chooser: its runtime, every delivery, and how it ended."""

    runtime: Runtime
    decisions: list[tuple[str, int, int, int]]
    failure: Failure | None
    deliveries: list[Delivered]
    quiet_at: int  # deliveries before the last quiet point

    @property
    def events(self) -> list[dict[str, Any]]:
        return self.runtime.log.events


def run_once(
    scenario: Scenario,
    chooser: Chooser,
    *,
    actors: Mapping[str, type] | None = None,
    find: str | None = None,
    budget: Budget | None = None,
) -> Run:
    """Run ``scenario`` once with every decision from ``chooser``, stopping at the first failure.

    A run that exceeds ``budget`` (default: ``MAX_DELIVERIES`` deliveries, no
    limit of virtual time) stops with a ``livelock`` failure.
    """
    return trio.run(functools.partial(run_once_async, scenario, chooser, actors=actors, find=find, budget=budget))


async def run_once_async(
    scenario: Scenario,
    chooser: Chooser,
    *,
    actors: Mapping[str, type] | None = None,
    find: str | None = None,
    budget: Budget | None = None,
) -> Run:
    """:func:`run_once` inside a running trio loop (e.g. a pytest-trio test)."""
    rt, timeline, on_quiet, finish = _prepare(scenario, chooser, actors, find, budget or Budget())
    try:
        await rt.run(timeline, on_quiet)
    except BaseException as e:
        return finish(e)
    return finish(None)


def _prepare(
    scenario: Scenario, chooser: Chooser, actors: Mapping[str, type] | None, find: str | None, budget: Budget
) -> tuple[Runtime, list[tuple[int, str, Any]], Callable[[Runtime], None], Callable[[BaseException | None], Run]]:
    recorder = RecordingChooser(chooser)
    # The tally of what is in flight is kept as messages come and go, so the
    # check after each delivery costs the same with 10 or 100,000 in flight.
    tally = invariants.InFlight()
    delivery = SeededDelivery(chooser=recorder, network=Network(*scenario.latency_ms), faults=scenario.faults,
                              watcher=tally)
    # The same wiring as every run: its log opens with the opening state (under
    # the scenario's own seed: an explored run's deliveries come from its
    # decisions) and, when the run goes quiet to the end, closes with run_finished.
    rt, timeline = prepare_run(scenario, delivery, actors, EventLog(), seed=scenario.seed)
    rt.trace = []
    initial = scenario.fund_balance
    reported = [0]
    deliveries: list[Delivered] = []
    quiet_points = [0]  # len(deliveries) at each quiet point
    max_deliveries, max_time = budget.deliveries, budget.time_ms
    # Crashes deliver nothing, so [faults] crash with probability 1 never reaches
    # after_delivery: they count against the budget too, and so many in a row
    # that the run makes no progress (sandbox._exchange.run.MAX_CRASHES_IN_A_ROW) end it.
    crashes = [0, 0]  # in all, in a row

    def after_delivery(runtime: Runtime, envelope: Envelope) -> None:
        crashes[1] = 0
        if len(deliveries) + crashes[0] >= max_deliveries:
            raise _Stop(Failure("livelock", f"still busy after {max_deliveries} deliveries (the budget of one "
                                            "example): the actors never go quiet"))
        if max_time is not None and runtime.now_ms > max_time:
            raise _Stop(Failure("livelock", f"still busy at virtual time {runtime.now_ms / 1000:g} s (the budget "
                                            f"of one example ends at {max_time / 1000:g} s): the actors never go quiet"))
        oldest = delivery.oldest_seq()
        overtook = oldest is not None and oldest < envelope.seq
        deliveries.append(Delivered(runtime.now_ms, envelope, overtook))
        if len(runtime.violations) > reported[0]:
            new = runtime.violations[reported[0]:]
            reported[0] = len(runtime.violations)
            raise _Stop(Failure("violation", _describe(new), tuple(new)))
        found = invariants.check_step(runtime, initial, tally)
        if found:
            _report(runtime, found)
            raise _Stop(Failure("violation", _describe(found), tuple(found)))
        if find is not None and runtime.log.counts[find]:
            raise _Stop(Failure("event", f"an event of kind {find!r} happened"))

    def on_quiet(runtime: Runtime) -> None:
        found = invariants.check_all(runtime, initial)
        if found:
            _report(runtime, found)
            raise _Stop(Failure("violation", _describe(found), tuple(found)))
        quiet_points.append(len(deliveries))

    rt.after_delivery = after_delivery

    def on_event(event: dict[str, Any]) -> None:
        if event["kind"] == Event.ACTOR_CRASHED:
            crashes[0] += 1
            crashes[1] += 1
            if crashes[1] >= MAX_CRASHES_IN_A_ROW or len(deliveries) + crashes[0] >= max_deliveries:
                raise _Stop(Failure("livelock", f"{crashes[1]} crashes in a row, {len(deliveries)} deliveries and "
                                                f"{crashes[0]} crashes in all: the actors never go quiet"))

    rt.log.subscribe(on_event, kinds=("actor_crashed",))  # (the other kinds stay lazy)

    def finish(error: BaseException | None) -> Run:
        failure: Failure | None = None
        if isinstance(error, _Stop):
            failure = error.failure
        elif isinstance(error, Exception):  # an actor crashed: that is a finding too
            failure = Failure("crash", f"{type(error).__name__}: {error}")
        elif error is not None:
            raise error  # KeyboardInterrupt, trio.Cancelled...
        if failure is None:
            finish_run(rt, "ok")
        # The busy stretch that led to the end: from the last quiet point before it.
        return Run(rt, recorder.decisions, failure, deliveries, quiet_points[-1])

    return rt, timeline, on_quiet, finish


def _report(rt: Runtime, found: list[Violation]) -> None:
    for v in found:
        rt.report(v)


def _describe(violations: list[Violation]) -> str:
    return "; ".join(f"{v.invariant}: {v.detail}" for v in violations)


@attrs.frozen
class Finding:
    scenario: Scenario
    variant: str | None
    find: str | None
    failure: Failure
    decisions: tuple[tuple[str, int, int, int], ...]
    events: tuple[dict[str, Any], ...]
    deliveries: tuple[Delivered, ...]
    quiet_at: int
    budget: Budget = Budget()  # the run's budget: a livelock replays only under the same one
    strategy: str = "hypothesis"
    actor_refs: tuple[tuple[str, str], ...] = ()  # --actor ROLE=REF the run was made with


@attrs.frozen
class Exploration:
    finding: Finding | None
    runs: int  # runs made, shrinking included
    first_failure: int  # the run that failed first (0: none did)
    plan: Plan | None = None
    links: int = 0  # PCT: the most links (its "threads", n) seen in one run


def events_digest(events: list[dict[str, Any]] | tuple[dict[str, Any], ...]) -> str:
    h = hashlib.sha256()
    for e in events:
        h.update(EventLog.dumps(e).encode())
        h.update(b"\n")
    return h.hexdigest()


STRATEGIES: Final = ("hypothesis", "pct")


def explore(
    scenario: Scenario,
    *,
    examples: int = 500,
    variant: str | None = None,
    actors: Mapping[str, type] | None = None,
    find: str | None = None,
    database: ExampleDatabase | Path | None = DEFAULT_DB,
    seed: int | None = None,
    on_example: Callable[[int], None] | None = None,
    strategy: str = "hypothesis",
    depth: int = DEFAULT_DEPTH,
    budget: Budget | None = None,
    on_run: Callable[[Run], None] | None = None,
    actor_refs: tuple[tuple[str, str], ...] = (),
) -> Exploration:
    """Search up to ``examples`` interleavings; shrink the first failure found.

    ``strategy="hypothesis"`` (default) draws each run's decisions as a tape
    from hypothesis, which also shrinks. With ``seed`` the search is
    reproducible; as with hypothesis's ``@seed``, it then saves nothing to
    ``database`` (it still tries what is there). ``strategy="pct"`` runs the
    PCT scheduler of bug depth ``depth`` (:mod:`sandbox._core.pct`), run ``i``
    seeded from ``(seed, i)``, and shrinks what it finds with
    :func:`shrink`; it uses no database.

    Every run is held to ``budget`` (default: sized by :func:`plan`); one
    that exceeds it is a ``livelock`` finding. ``on_run`` sees every run made
    before the first failure (e.g. to group outcomes).
    """
    if strategy not in STRATEGIES:
        raise ValueError(f"unknown strategy {strategy!r}; strategies are {', '.join(STRATEGIES)}")
    the_plan = plan(scenario, actors, budget)
    budget = the_plan.budget
    if strategy == "pct":
        return _explore_pct(scenario, examples, variant, actors, find, seed, on_example, depth, the_plan, on_run,
                            actor_refs)
    count = [0]
    first = [0]
    last: list[Run] = []
    failing: set[bytes] = set()
    shrink_spent = [0]

    def attempt(tape: bytes) -> None:
        if first[0] and shrink_spent[0] >= SHRINK_DELIVERIES and tape not in failing:
            # Shrinking has used its budget: every new candidate "passes", so
            # hypothesis stops at the smallest failure found so far (and its
            # final re-run of that one, which is in ``failing``, fails again).
            return
        run = run_once(scenario, TapeChooser(tape), actors=actors, find=find, budget=budget)
        count[0] += 1
        if first[0]:
            shrink_spent[0] += len(run.deliveries)
        if on_example is not None:
            on_example(count[0])
        if run.failure is None and on_run is not None and not first[0]:
            on_run(run)
        if run.failure is not None:
            first[0] = first[0] or count[0]
            failing.add(bytes(tape))
            last[:] = [run]
            raise AssertionError(run.failure.summary)

    db: ExampleDatabase | None
    if database is None:
        db = None
    elif isinstance(database, ExampleDatabase):
        db = database
    else:
        db = DirectoryBasedExampleDatabase(str(database))
    test = settings(
        max_examples=examples,
        database=db,
        deadline=None,
        derandomize=False,
        report_multiple_bugs=False,
        suppress_health_check=list(HealthCheck),
        phases=(Phase.explicit, Phase.reuse, Phase.generate, Phase.shrink),
        print_blob=False,
    )(given(_tapes(the_plan.tape_length))(attempt))
    if seed is not None:
        test = hypothesis_seed(seed)(test)
    # One database entry per (scenario, variant, question), so failures found
    # for one are replayed first for that one only.
    key = f"{scenario.digest or scenario.name}|{variant}|{find}{_refs_key(actor_refs)}".encode()
    test._hypothesis_internal_database_key = hashlib.sha256(key).digest()  # type: ignore[attr-defined]
    try:
        test()
    except AssertionError:
        run = last[-1]  # hypothesis ends by re-running the shrunk example
        assert run.failure is not None
        finding = Finding(
            scenario, variant, find, run.failure, tuple(run.decisions), tuple(run.events),
            tuple(run.deliveries), run.quiet_at, budget, "hypothesis", actor_refs,
        )
        return Exploration(finding, count[0], first[0], the_plan)
    return Exploration(None, count[0], 0, the_plan)


def _refs_key(actor_refs: tuple[tuple[str, str], ...]) -> str:
    # Without --actor the key is what it always was, so existing databases still apply.
    return "" if not actor_refs else "|" + ",".join(f"{role}={ref}" for role, ref in actor_refs)


def _explore_pct(
    scenario: Scenario, examples: int, variant: str | None, actors: Mapping[str, type] | None, find: str | None,
    seed: int | None, on_example: Callable[[int], None] | None, depth: int, the_plan: Plan,
    on_run: Callable[[Run], None] | None, actor_refs: tuple[tuple[str, str], ...],
) -> Exploration:
    base = seed if seed is not None else random.SystemRandom().randrange(2**63)
    links = 0
    for i in range(1, examples + 1):
        chooser = PCTChooser(pct_seed(base, i), depth, the_plan.steps)
        run = run_once(scenario, chooser, actors=actors, find=find, budget=the_plan.budget)
        links = max(links, chooser.links)
        if on_example is not None:
            on_example(i)
        if run.failure is None:
            if on_run is not None:
                on_run(run)
            continue
        shrunk, tries = shrink(scenario, run, actors=actors, find=find, budget=the_plan.budget)
        finding = Finding(
            scenario, variant, find, shrunk.failure, tuple(shrunk.decisions), tuple(shrunk.events),  # type: ignore[arg-type]
            tuple(shrunk.deliveries), shrunk.quiet_at, the_plan.budget, "pct", actor_refs,
        )
        return Exploration(finding, i + tries, i, the_plan, links)
    return Exploration(None, examples, 0, the_plan, links)


# --- shrinking a run found without hypothesis --------------------------------------------


def decisions_to_tape(decisions: Sequence[tuple[str, int, int, int]]) -> list[int] | None:
    """The tape a :class:`TapeChooser` reads to make exactly these decisions (None if it cannot).

    A choice or a latency is its offset from the lowest option; a fault that
    happened is 255, one that did not is 0. A fault of less than 1/256
    probability cannot be made to happen by a tape of bytes (None then).
    """
    tape: list[int] = []
    for kind, low, high, value in decisions:
        if kind == "chance":
            on = 255 if value else 0
            if TapeChooser([on]).chance(low) != bool(value):
                return None
            tape.append(on)
        else:
            tape.append(value - low)
            if value - low > 255:
                return None
    while tape and tape[-1] == 0:  # past the end of a tape every decision is 0
        tape.pop()
    return tape


def _same_failure(a: Failure, b: Failure | None) -> bool:
    if b is None or a.kind != b.kind:
        return False
    return {v.invariant for v in a.violations} == {v.invariant for v in b.violations}


def shrink(
    scenario: Scenario,
    run: Run,
    *,
    actors: Mapping[str, type] | None = None,
    find: str | None = None,
    budget: Budget | None = None,
    max_deliveries: int = SHRINK_DELIVERIES,
) -> tuple[Run, int]:
    """A smaller run that fails the same way as ``run``, and how many runs it took.

    Works on the run's decisions as a tape (see :func:`decisions_to_tape`),
    like hypothesis: cut the tape short, then set each decision to 0 (the
    oldest message, the lowest latency, no fault), then halve what is left;
    a change is kept if the run still fails with the same kind and the same
    broken invariants. Deterministic, and it stops after ``max_deliveries``
    deliveries in all, keeping the smallest failure so far.
    """
    assert run.failure is not None
    target = run.failure
    tape = decisions_to_tape(run.decisions)
    if tape is None:
        return run, 0
    runs = [0]
    spent = [0]
    best = run_once(scenario, TapeChooser(tape), actors=actors, find=find, budget=budget)
    runs[0] += 1
    if not _same_failure(target, best.failure):
        return run, runs[0]  # the tape does not make the same run (should not happen); keep the original

    def fails(candidate: list[int]) -> Run | None:
        if spent[0] >= max_deliveries:
            return None
        trial = run_once(scenario, TapeChooser(candidate), actors=actors, find=find, budget=budget)
        runs[0] += 1
        spent[0] += len(trial.deliveries)
        return trial if _same_failure(target, trial.failure) else None

    improved = True
    while improved and spent[0] < max_deliveries:
        improved = False
        # The shortest prefix that still fails (past it, every decision is 0).
        low, high = 0, len(tape)
        while low < high and spent[0] < max_deliveries:
            mid = (low + high) // 2
            trial = fails(tape[:mid])
            if trial is not None:
                high, best, improved = mid, trial, True
                tape = tape[:mid]
            else:
                low = mid + 1
        for i in reversed(range(len(tape))):
            for smaller in sorted({0, tape[i] // 2} - {tape[i]}):
                candidate = tape[:i] + [smaller] + tape[i + 1:]
                trial = fails(candidate)
                if trial is not None:
                    tape, best, improved = candidate, trial, True
                    break
        while tape and tape[-1] == 0:
            tape.pop()
    return best, runs[0]


# --- replay files -------------------------------------------------------------------


def write_replay(finding: Finding, path: Path, avoid: Iterable[str | os.PathLike[str]] = ()) -> None:
    """Write the replay file: the scenario's TOML and every data file it read (self-contained), and the decisions.

    Written by :func:`sandbox._core.safeio.write_atomic` (never onto a symlink,
    device or FIFO, nor onto one of ``avoid``).
    """
    from sandbox._core.safeio import write_atomic

    scenario = finding.scenario
    document = {
        "format": REPLAY_FORMAT,
        "version": REPLAY_VERSION,
        "scenario": {
            "name": scenario.name,
            "source": scenario.source,
            "sha256": scenario.digest,
            "toml": scenario.text,
            # The seed it was explored with: a stochastic scenario is generated from it.
            "seed": scenario.seed,
            # A stochastic csv, embedded: the replay does not depend on the file it came from.
            "data": {d.name: {"sha256": d.sha256, "text": d.text} for d in scenario.data_files},
        },
        "variant": finding.variant,
        "find": finding.find,
        "failure": {"kind": finding.failure.kind, "summary": finding.failure.summary},
        "strategy": finding.strategy,
        "budget": {"deliveries": finding.budget.deliveries, "time_ms": finding.budget.time_ms},
        "actors": {role: ref for role, ref in finding.actor_refs},
        "decisions": [list(d) for d in finding.decisions],
        "events": len(finding.events),
        "events_sha256": events_digest(finding.events),
    }
    write_atomic(path, json.dumps(document, indent=1) + "\n", avoid=avoid)


@attrs.frozen
class Replay:
    scenario: Scenario
    variant: str | None
    find: str | None
    failure_kind: str
    failure_summary: str
    decisions: tuple[tuple[str, int, int, int], ...]
    events: int
    events_sha256: str
    budget: Budget = Budget()
    strategy: str = "hypothesis"
    actor_refs: tuple[tuple[str, str], ...] = ()


# A replay holds the scenario (256 KiB at most), its data files (1 MiB each) and
# one decision per choice of the run (about 20 bytes each): 64 MiB is far more
# than a run under its work limits needs, and parses in well under 1 GiB.
MAX_REPLAY_BYTES: Final = 64 * 1024 * 1024
_DECISION_KINDS: Final = ("choose", "latency", "chance")


def read_replay(path: Path) -> Replay:
    """Load and check a replay file; any problem is a :class:`ScenarioError` naming the key.

    Only a regular file of at most :data:`MAX_REPLAY_BYTES` is read; every
    field must have its type; the embedded scenario and data files must
    match their digests. The scenario's data files come from the replay,
    never from the disk.
    """
    from sandbox._core.safeio import UnsafePath, read_regular

    source = str(path)
    try:
        raw = read_regular(path, MAX_REPLAY_BYTES, "a replay file")
        text_of_file = raw.decode("utf-8")
    except UnsafePath as e:
        raise ScenarioError(source, "", e.problem) from None
    except UnicodeDecodeError as e:
        raise ScenarioError(source, "", f"is not UTF-8 text (byte {e.start})") from None
    try:
        doc = json.loads(text_of_file)
    except json.JSONDecodeError as e:
        raise ScenarioError(source, "", f"is not a replay file (not JSON: {e.msg} at line {e.lineno})") from None
    except RecursionError:
        raise ScenarioError(source, "", "is not a replay file (JSON nested too deeply)") from None
    if not isinstance(doc, dict) or doc.get("format") != REPLAY_FORMAT:
        raise ScenarioError(source, "format", f"is not {REPLAY_FORMAT!r}: not a replay file")
    if doc.get("version") != REPLAY_VERSION:
        raise ScenarioError(
            source, "version", f"is {doc['version'] if type(doc.get('version')) is int else 'not a number'}; "
                               f"this sandbox reads replay version {REPLAY_VERSION}"
        )

    def field(where: str, value: object, kind: type | tuple[type, ...], optional: bool = False) -> Any:
        if (value is None and optional) or (isinstance(value, kind) and not isinstance(value, bool)):
            return value
        raise ScenarioError(source, where, f"must be {_kind_name(kind)}{' or null' if optional else ''}, "
                                           f"not {type(value).__name__}")

    sc = field("scenario", doc.get("scenario"), dict)
    text = field("scenario.toml", sc.get("toml"), str)
    digest = field("scenario.sha256", sc.get("sha256"), str)
    embedded_source = field("scenario.source", sc.get("source", "scenario"), str)
    raw_data = field("scenario.data", sc.get("data", {}), dict)
    variant = field("variant", doc.get("variant"), str, optional=True)
    find = field("find", doc.get("find"), str, optional=True)
    failure = field("failure", doc.get("failure"), dict)
    kind = field("failure.kind", failure.get("kind"), str)
    summary = field("failure.summary", failure.get("summary"), str)
    n_events = field("events", doc.get("events"), int)
    events_sha = field("events_sha256", doc.get("events_sha256"), str)
    raw_decisions = field("decisions", doc.get("decisions"), list)
    decisions = []
    for i, d in enumerate(raw_decisions):
        if (not isinstance(d, list) or len(d) != 4 or d[0] not in _DECISION_KINDS
                or not all(type(x) is int and 0 <= x < 2**63 for x in d[1:])):
            raise ScenarioError(source, f"decisions[{i}]", "must be [kind, low, high, value] with kind one of "
                                                           f"{', '.join(_DECISION_KINDS)} and whole numbers")
        decisions.append((d[0], d[1], d[2], d[3]))
    if hashlib.sha256(text.encode("utf-8")).hexdigest() != digest:
        raise ScenarioError(source, "scenario.sha256", "does not match the embedded scenario: the file was edited")
    embedded: dict[str, str] = {}
    for name, entry in raw_data.items():
        where = f"scenario.data.{_show(name)}"
        entry = field(where, entry, dict)
        data_text = field(where + ".text", entry.get("text"), str)
        if hashlib.sha256(data_text.encode("utf-8")).hexdigest() != field(where + ".sha256", entry.get("sha256"), str):
            raise ScenarioError(source, where, "does not match its sha256: the embedded data was edited")
        embedded[name] = data_text
    # Files written before budgets, strategies and --actor had none of them.
    raw_budget = field("budget", doc.get("budget") or {}, dict)
    deliveries = field("budget.deliveries", raw_budget.get("deliveries", MAX_DELIVERIES), int)
    time_ms = field("budget.time_ms", raw_budget.get("time_ms"), int, optional=True)
    strategy = field("strategy", doc.get("strategy", "hypothesis"), str)
    raw_actors = field("actors", doc.get("actors") or {}, dict)
    actor_refs = tuple((role, field(f"actors.{_show(role)}", ref, str)) for role, ref in raw_actors.items())
    scenario = _parse_bytes(text.encode("utf-8"), f"{source} (embedded {_show(embedded_source, 80)})",
                            embedded=embedded)
    # Files written before the seed was recorded ran the scenario's own.
    seed = field("scenario.seed", sc.get("seed", scenario.seed), int)
    if not 0 <= seed < 2**63:
        raise ScenarioError(source, "scenario.seed", f"must be between 0 and 2**63-1, got {seed}")
    scenario = scenario.for_seed(seed)
    return Replay(scenario, variant, find, kind, summary, tuple(decisions), n_events, events_sha,
                  Budget(deliveries, time_ms), strategy, actor_refs)


def _kind_name(kind: type | tuple[type, ...]) -> str:
    names = {dict: "an object", list: "an array", str: "a string", int: "a whole number"}
    kinds = kind if isinstance(kind, tuple) else (kind,)
    return " or ".join(names.get(k, k.__name__) for k in kinds)


def replay_run(replay: Replay, actors: Mapping[str, type] | None) -> Run:
    return run_once(replay.scenario, ScriptedChooser(replay.decisions), actors=actors, find=replay.find,
                    budget=replay.budget)

