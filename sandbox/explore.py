"""Search the space of message interleavings with hypothesis; shrink and replay what it finds.

Every decision of a run (which due message goes next, and each message's
latency when the scenario has a ``[network]`` model) comes from a
*chooser*. :func:`explore` lets hypothesis be the chooser: each example is one
whole run, checked after every delivery (:func:`sandbox.invariants.check_step`,
and the actors' own checks) and at every quiet point
(:func:`sandbox.invariants.check_all`). A run that breaks an invariant, or in
which an event of the wanted kind happens (``find``), fails the example;
hypothesis then shrinks its decisions towards 0, i.e. towards plain FIFO
delivery with no latency, so what is left is the smallest departure from the
obvious order that still fails. Failures go to hypothesis's example database,
so the next search tries them first.

A :class:`Finding` carries the recorded decisions; :func:`replay_run` runs
them again and gets the very same events.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
from pathlib import Path
from typing import Any, Callable, Final, Iterable, Mapping

import attrs
import trio
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import seed as hypothesis_seed
from hypothesis import strategies as st
from hypothesis.database import DirectoryBasedExampleDatabase, ExampleDatabase

from . import invariants
from .eventlog import EventLog
from .exchange import build, work_limits
from .runtime import (
    Chooser,
    Envelope,
    Network,
    RecordingChooser,
    Runtime,
    ScriptedChooser,
    SeededDelivery,
    Violation,
)
from .money import _show
from .scenario import Scenario, ScenarioError, _parse_bytes

__all__ = [
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
# A run that delivers more than this without ending is reported as a livelock.
MAX_DELIVERIES: Final = 200_000


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


def tape_length(scenario: Scenario, actors: Mapping[str, type] | None) -> int:
    """Room for every decision of a run: twice what the FIFO run needs, plus slack."""
    counter = _CountingChooser()
    run_once(scenario, counter, actors=actors)
    return 2 * counter.count + 16


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
) -> Run:
    """Run ``scenario`` once with every decision from ``chooser``, stopping at the first failure."""
    return trio.run(functools.partial(run_once_async, scenario, chooser, actors=actors, find=find))


async def run_once_async(
    scenario: Scenario,
    chooser: Chooser,
    *,
    actors: Mapping[str, type] | None = None,
    find: str | None = None,
) -> Run:
    """:func:`run_once` inside a running trio loop (e.g. a pytest-trio test)."""
    rt, timeline, on_quiet, finish = _prepare(scenario, chooser, actors, find)
    try:
        await rt.run(timeline, on_quiet)
    except BaseException as e:
        return finish(e)
    return finish(None)


def _prepare(
    scenario: Scenario, chooser: Chooser, actors: Mapping[str, type] | None, find: str | None
) -> tuple[Runtime, list[tuple[int, str, Any]], Callable[[Runtime], None], Callable[[BaseException | None], Run]]:
    recorder = RecordingChooser(chooser)
    delivery = SeededDelivery(chooser=recorder, network=Network(*scenario.latency_ms), faults=scenario.faults)
    rt, timeline = build(scenario, delivery, actors, EventLog())
    if scenario.faults.crash:
        rt.make_durable(scenario.faults.crash_actors, scenario.faults.snapshot_every)
    rt.trace = []
    initial = scenario.fund_balance
    reported = [0]
    deliveries: list[Delivered] = []
    quiet_points = [0]  # len(deliveries) at each quiet point
    # The run's own work limit (sandbox.exchange.work_limits), within explore's.
    cap = min(MAX_DELIVERIES, work_limits(scenario).steps)
    crashes = [0]

    def after_delivery(runtime: Runtime, envelope: Envelope) -> None:
        if len(deliveries) + crashes[0] >= cap:
            raise _Stop(Failure("livelock", f"still busy after {cap} deliveries: the actors never go quiet"))
        in_flight = _all_in_flight(delivery)
        overtook = any(e.seq < envelope.seq for e in in_flight)
        deliveries.append(Delivered(runtime.now_ms, envelope, overtook))
        if len(runtime.violations) > reported[0]:
            new = runtime.violations[reported[0]:]
            reported[0] = len(runtime.violations)
            raise _Stop(Failure("violation", _describe(new), tuple(new)))
        found = invariants.check_step(runtime, initial, in_flight)
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
        # A crash delivers nothing, so [faults] crash with probability 1 never
        # reaches after_delivery: count it against the same cap.
        if event["kind"] == "actor_crashed":
            crashes[0] += 1
            if len(deliveries) + crashes[0] >= cap:
                raise _Stop(Failure("livelock", f"still busy after {cap} deliveries and crashes: "
                                                "the actors never go quiet"))

    rt.log.subscribe(on_event)

    def finish(error: BaseException | None) -> Run:
        failure: Failure | None = None
        if isinstance(error, _Stop):
            failure = error.failure
        elif isinstance(error, Exception):  # an actor crashed: that is a finding too
            failure = Failure("crash", f"{type(error).__name__}: {error}")
        elif error is not None:
            raise error  # KeyboardInterrupt, trio.Cancelled...
        # The busy stretch that led to the end: from the last quiet point before it.
        return Run(rt, recorder.decisions, failure, deliveries, quiet_points[-1])

    return rt, timeline, on_quiet, finish


def _all_in_flight(delivery: SeededDelivery) -> list[Envelope]:
    return [e for q in delivery._links.values() for _, e in q]


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


@attrs.frozen
class Exploration:
    finding: Finding | None
    runs: int  # runs made, shrinking included
    first_failure: int  # the run that failed first (0: none did)


def events_digest(events: list[dict[str, Any]] | tuple[dict[str, Any], ...]) -> str:
    h = hashlib.sha256()
    for e in events:
        h.update(EventLog.dumps(e).encode())
        h.update(b"\n")
    return h.hexdigest()


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
) -> Exploration:
    """Search up to ``examples`` interleavings; shrink the first failure found.

    With ``seed`` the search is reproducible; as with hypothesis's ``@seed``,
    it then saves nothing to ``database`` (it still tries what is there).
    """
    count = [0]
    first = [0]
    last: list[Run] = []

    def attempt(tape: bytes) -> None:
        run = run_once(scenario, TapeChooser(tape), actors=actors, find=find)
        count[0] += 1
        if on_example is not None:
            on_example(count[0])
        if run.failure is not None:
            first[0] = first[0] or count[0]
            last.append(run)
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
    )(given(_tapes(tape_length(scenario, actors)))(attempt))
    if seed is not None:
        test = hypothesis_seed(seed)(test)
    # One database entry per (scenario, variant, question), so failures found
    # for one are replayed first for that one only.
    key = f"{scenario.digest or scenario.name}|{variant}|{find}".encode()
    test._hypothesis_internal_database_key = hashlib.sha256(key).digest()  # type: ignore[attr-defined]
    try:
        test()
    except AssertionError:
        run = last[-1]  # hypothesis ends by re-running the shrunk example
        assert run.failure is not None
        finding = Finding(
            scenario, variant, find, run.failure, tuple(run.decisions), tuple(run.events),
            tuple(run.deliveries), run.quiet_at,
        )
        return Exploration(finding, count[0], first[0])
    return Exploration(None, count[0], 0)


# --- replay files -------------------------------------------------------------------


def write_replay(finding: Finding, path: Path, avoid: Iterable[str | os.PathLike[str]] = ()) -> None:
    """Write the replay file: the scenario's TOML and every data file it read (self-contained), and the decisions.

    Written by :func:`sandbox._safeio.write_atomic` (never onto a symlink,
    device or FIFO, nor onto one of ``avoid``).
    """
    from ._safeio import write_atomic

    scenario = finding.scenario
    document = {
        "format": REPLAY_FORMAT,
        "version": REPLAY_VERSION,
        "scenario": {
            "name": scenario.name,
            "source": scenario.source,
            "sha256": scenario.digest,
            "toml": scenario.text,
            # A stochastic csv, embedded: the replay does not depend on the file it came from.
            "data": {d.name: {"sha256": d.sha256, "text": d.text} for d in scenario.data_files},
        },
        "variant": finding.variant,
        "find": finding.find,
        "failure": {"kind": finding.failure.kind, "summary": finding.failure.summary},
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
    from ._safeio import UnsafePath, read_regular

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
    scenario = _parse_bytes(text.encode("utf-8"), f"{source} (embedded {_show(embedded_source, 80)})",
                            embedded=embedded)
    return Replay(scenario, variant, find, kind, summary, tuple(decisions), n_events, events_sha)


def _kind_name(kind: type | tuple[type, ...]) -> str:
    names = {dict: "an object", list: "an array", str: "a string", int: "a whole number"}
    kinds = kind if isinstance(kind, tuple) else (kind,)
    return " or ".join(names.get(k, k.__name__) for k in kinds)


def replay_run(replay: Replay, actors: Mapping[str, type] | None) -> Run:
    return run_once(replay.scenario, ScriptedChooser(replay.decisions), actors=actors, find=replay.find)

