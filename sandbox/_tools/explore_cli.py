"""``sandbox explore`` and ``sandbox replay``: the command-line side of :mod:`sandbox._tools.explore`."""

from __future__ import annotations

import argparse
import concurrent.futures
import multiprocessing
import queue
import random
from pathlib import Path
from typing import Any, Mapping

from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from sandbox._core.safeio import safe_name
from sandbox.messages import EVENT_KINDS  # --find accepts every kind of the event log's registry
from sandbox._tools.actorref import load_actor_refs
from sandbox._tools.command import EXIT_OK, EXIT_VIOLATION, BadInput, load_actors, prepare_out
from sandbox._tools.explore import (
    DEFAULT_DB,
    STRATEGIES,
    Budget,
    Exploration,
    Failure,
    Finding,
    events_digest,
    explore,
    plan,
    read_replay,
    replay_run,
    write_replay,
)
from sandbox._tools.failtest import render_test
from sandbox._tools.outcomes import Outcomes
from sandbox._core.pct import DEFAULT_DEPTH, pct_bound
from sandbox._tools.narrate import Narrator, describe_message
from sandbox._tools.plain import plain
from sandbox._core.specs import Scenario
from sandbox._scenario.load import resolve_scenario

__all__ = ["explore_command", "replay_command"]

# The exit codes are defined once, in sandbox._tools.command: "found" is its EXIT_VIOLATION (something wrong was found).
EXIT_FOUND = EXIT_VIOLATION
# Show at most this many deliveries of the shrunk interleaving.
MAX_SHOWN = 80


def _variant_actors(name: str | None) -> Mapping[str, type] | None:
    from actors.zoo import VARIANTS

    if name is None:
        return None
    if name not in VARIANTS:
        raise BadInput(f"--variant {name}: unknown variant (see 'sandbox variants')")
    return VARIANTS[name].actors


def explore_command(args: argparse.Namespace, console: Console) -> int:
    scenario = resolve_scenario(args.scenario, allow_outside_paths=args.allow_outside_paths)
    actors, refs = load_actors(args.actors, _variant_actors(args.variant))
    if args.find is not None and args.find not in EVENT_KINDS:
        raise BadInput(f"--find {args.find}: unknown event kind (one of {', '.join(sorted(EVENT_KINDS))})")
    if args.strategy not in STRATEGIES:
        raise BadInput(f"--strategy {args.strategy}: unknown strategy (one of {', '.join(STRATEGIES)})")
    if args.depth is not None and args.strategy != "pct":
        raise BadInput("--depth is for --strategy pct")
    if args.workers > 1 and (args.strategy != "hypothesis" or args.outcomes):
        raise BadInput("--workers is for --strategy hypothesis without --outcomes")
    if args.depth is not None and args.depth > 10:
        raise BadInput(f"--depth must be between 1 and 10, got {args.depth}")
    prepare_out(args.out)
    db = args.db if args.db is not None else DEFAULT_DB
    depth = args.depth or DEFAULT_DEPTH
    budget = None
    if args.max_deliveries is not None or args.max_time is not None:
        default = plan(scenario, actors).budget
        budget = Budget(args.max_deliveries or default.deliveries,
                        default.time_ms if args.max_time is None else 1000 * args.max_time)
    # As in hypothesis, a seeded search is reproducible but saves nothing to
    # the example database; an unseeded one saves what it finds. PCT draws a
    # seed if none is given, and says which, so its search can be repeated.
    seed = args.seed
    if args.strategy == "pct" and seed is None:
        seed = random.SystemRandom().randrange(2**63)
    what = f"an interleaving with a {args.find!r} event" if args.find else "a broken invariant"
    if args.outcomes:
        what = "the outcome classes, and " + what
    if args.strategy == "pct":
        how = f"PCT of depth {depth}, search seed {seed}"
    else:
        how = f"search seed {seed}, not saved to the database" if seed is not None else f"example database {db}"
    variant = " with " + ", ".join(([f"variant [bold]{args.variant}[/bold]"] if args.variant else [])
                                   + [f"{role}=[bold]{ref}[/bold]" for role, ref in refs]) if actors else ""
    console.print(
        f"exploring [bold]{escape(plain(scenario.name))}[/bold]{variant}: up to {args.examples} interleavings for {what} "
        f"({how}; {args.workers} worker(s))",
        highlight=False,
    )
    outcomes = Outcomes() if args.outcomes else None
    progress = Progress(
        TextColumn("examples"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
        console=Console(stderr=True), transient=False,
    )
    with progress:
        task = progress.add_task("explore", total=args.examples)
        if args.workers == 1:
            result = explore(
                scenario, examples=args.examples, variant=args.variant, actors=actors, find=args.find,
                database=db, seed=seed,
                on_example=lambda n: progress.update(task, completed=min(n, args.examples)),
                strategy=args.strategy, depth=depth, budget=budget,
                on_run=outcomes.add if outcomes is not None else None, actor_refs=refs,
            )
        else:
            result = _explore_parallel(scenario, args, db, seed, progress, task, refs, budget)
    if result.plan is not None:
        b = result.plan.budget
        console.print(f"budget of one example: {b.deliveries} deliveries"
                      + (f", {b.time_ms / 1000:g} s of virtual time" if b.time_ms is not None else ""),
                      highlight=False)
    if args.strategy == "pct" and result.plan is not None:
        n, k = max(result.links, 1), result.plan.steps
        console.print(f"PCT bound: n = {n} links, k = {k} steps, d = {depth}: each run finds a bug of depth "
                      f"{depth} with probability >= 1/(n k^(d-1)) = {pct_bound(n, k, depth):.3g}", highlight=False)
    if outcomes is not None:
        _print_outcomes(console, scenario, outcomes, args.out, args.strategy, refs, args.variant)
    if result.finding is None:
        console.print(f"[green]nothing found[/green] in {result.runs} interleavings", highlight=False)
        return EXIT_OK
    finding = result.finding
    path = args.out / _replay_name(scenario, args.variant, args.find, refs)
    write_replay(finding, path, avoid=scenario.read_from)
    _print_finding(console, finding, result)
    console.print(plain(f"\nreplay written to {path}\n  sandbox replay {path}"
                        + "".join(f" --actor {role}={ref}" for role, ref in refs), newlines=True), markup=False)
    _print_test(console, finding, args, path)
    return EXIT_FOUND


def _print_test(console: Console, finding: Finding, args: argparse.Namespace, replay: Path) -> None:
    """The shrunk failure as a pytest function: printed, and written beside the replay file."""
    ref = args.scenario
    if Path(ref).exists():
        ref = str(Path(ref).resolve())
    command = " ".join(["sandbox explore", args.scenario]
                       + ([f"--variant {args.variant}"] if args.variant else [])
                       + [f"--actor {a}" for a in args.actors]
                       + ([f"--find {args.find}"] if args.find else [])
                       + ([f"--seed {args.seed}"] if args.seed is not None else [])
                       + ([f"--strategy {args.strategy}"] if args.strategy != "hypothesis" else []))
    source = render_test(finding, ref, command)
    test_path = replay.with_name("test_" + replay.stem.replace("-", "_") + ".py")
    tmp = test_path.with_name(f".{test_path.name}.tmp")
    tmp.write_text(TEST_HEADER + source, encoding="utf-8")
    tmp.replace(test_path)
    console.print(f"\nThe failure as a test (also written to {test_path}):\n", markup=False, highlight=False)
    console.print(source, markup=False, highlight=False, soft_wrap=True)


TEST_HEADER = '''"""Written by sandbox explore: a shrunk failure as a test (see docs/search.md)."""


'''


def _print_outcomes(console: Console, scenario: Scenario, outcomes: Outcomes, out: Path, strategy: str,
                    refs: tuple[tuple[str, str], ...], variant: str | None) -> None:
    classes = list(outcomes.classes.values())
    varying = outcomes.varying()
    console.print(
        f"\n[bold]{len(classes)} outcome class{'es' * (len(classes) != 1)}[/bold] in {outcomes.runs} runs "
        + ("(the outcome does not depend on the interleaving)" if len(classes) == 1 else
           f"(they differ in: {', '.join(varying)})"),
        highlight=False,
    )
    shown = varying or ["fund", "liquidation started", "adl"]
    for i, c in enumerate(classes, start=1):
        values = dict(c.outcome)
        # The variant and the --actor classes are recorded: the class replays only with them.
        finding = Finding(scenario, variant, None, Failure("outcome", f"outcome class {i} of {len(classes)}"),
                          tuple(c.representative.decisions), tuple(c.representative.events),
                          tuple(c.representative.deliveries), c.representative.quiet_at,
                          strategy=strategy, actor_refs=refs)
        name = _replay_name(scenario, variant, None, refs).removesuffix(".json")
        path = out / f"{name}-outcome-{i}.json"
        write_replay(finding, path, avoid=scenario.read_from)
        console.print(
            f"  class {i}: {c.runs} runs ({c.runs / outcomes.runs:.1%}), first in run #{c.first}: "
            + "; ".join(f"{k} {values[k]}" for k in shown) + f"\n    replay: {path} "
            f"({c.overtakes} out-of-order deliveries)",
            markup=False, highlight=False, soft_wrap=True,
        )


def _replay_name(scenario: Scenario, variant: str | None, find: str | None,
                 refs: tuple[tuple[str, str], ...] = ()) -> str:
    # The scenario's name and an --actor's class are the user's: made harmless, they cannot leave --out.
    parts = ([safe_name(scenario.name)] + ([variant] if variant else [])
             + [f"{role}-{safe_name(ref.rpartition(':')[2])}" for role, ref in refs] + ([f"find-{find}"] if find else []))
    return "replay-" + "-".join(parts) + ".json"


def _print_finding(console: Console, finding: Finding, result: Exploration) -> None:
    failure = finding.failure
    headline = {"violation": "INVARIANT VIOLATED", "crash": "ACTOR CRASHED", "livelock": "LIVELOCK", "event": "FOUND"}[failure.kind]
    console.print(
        f"\n[bold red]{headline}[/bold red] (first failing run: #{result.first_failure}; "
        f"shrunk in {result.runs} runs in all; strategy {finding.strategy})",
        highlight=False,
    )
    console.print(f"  {plain(failure.summary)}", markup=False)
    shown = list(finding.deliveries[finding.quiet_at:])
    overtaken = sum(d.overtook for d in shown)
    console.print(
        f"\nThe interleaving: {len(shown)} deliveries from the last quiet point to the end "
        f"({finding.quiet_at} before it, all in order); * = delivered ahead of an older message "
        f"({overtaken} such):",
        highlight=False,
    )
    first = len(finding.deliveries) - len(shown) + 1
    rows: list[tuple[int, Any]] = list(enumerate(shown, start=first))
    if len(rows) > MAX_SHOWN:
        # A livelock's story is how it began (the loop then repeats): show the
        # start and the last few; any other failure's is how it ended.
        head = MAX_SHOWN - 10 if failure.kind == "livelock" else 0
        skipped = len(rows) - MAX_SHOWN
        for i, d in rows[:head]:
            _print_delivery(console, i, d)
        console.print(f"  ... {skipped} deliveries not shown ...", highlight=False)
        rows = rows[head + skipped:]
    for i, d in rows:
        _print_delivery(console, i, d)


def _print_delivery(console: Console, i: int, d: Any) -> None:
    env = d.envelope
    mark = "*" if d.overtook else " "
    console.print(
        f" {mark}{i:>4}  t={d.time_ms / 1000:.3f}  {env.sender} -> {env.recipient}: {describe_message(env.message)}",
        markup=False, highlight=False, soft_wrap=True,
    )


def _explore_worker(
    scenario: Scenario, variant: str | None, find: str | None, examples: int, db: Path, seed: int | None,
    counter: Any, refs: tuple[tuple[str, str], ...] = (), budget: Budget | None = None,
) -> Exploration:
    def tick(n: int) -> None:
        counter.put(1)

    # A class from a file cannot be pickled to a worker: each worker loads the references itself.
    actors, _ = load_actor_refs([f"{role}={ref}" for role, ref in refs], _variant_actors(variant))
    return explore(scenario, examples=examples, variant=variant, actors=actors, find=find,
                   database=db, seed=seed, on_example=tick, budget=budget, actor_refs=refs)


def _explore_parallel(
    scenario: Scenario, args: argparse.Namespace, db: Path, seed: int | None, progress: Progress, task: Any,
    refs: tuple[tuple[str, str], ...] = (), budget: Budget | None = None,
) -> Exploration:
    """K processes share one example database: what one has found, the next search tries first."""
    per_worker = -(-args.examples // args.workers)
    manager = multiprocessing.Manager()
    counter = manager.Queue()
    done = 0
    with concurrent.futures.ProcessPoolExecutor(max_workers=args.workers) as pool:
        futures = [
            pool.submit(_explore_worker, scenario, args.variant, args.find, per_worker, db,
                        None if seed is None else seed + i, counter, refs, budget)
            for i in range(args.workers)
        ]
        pending = set(futures)
        while pending:
            finished, pending = concurrent.futures.wait(pending, timeout=0.2)
            try:
                while True:
                    counter.get_nowait()
                    done += 1
            except queue.Empty:
                pass
            progress.update(task, completed=min(done, args.examples))
        results = [f.result() for f in futures]
    manager.shutdown()
    runs = sum(r.runs for r in results)
    for r in results:
        if r.finding is not None:
            return Exploration(r.finding, runs, r.first_failure, r.plan)
    return Exploration(None, runs, 0, results[0].plan if results else None)


def replay_command(args: argparse.Namespace, console: Console) -> int:
    replay = read_replay(args.file)
    actors, refs = load_actors(args.actors, _variant_actors(replay.variant))
    # A replay file names the --actor classes it was made with, but never loads
    # code by itself: the command line must name the same ones.
    if replay.actor_refs and dict(refs) != dict(replay.actor_refs):
        wanted = " ".join(f"--actor {role}={ref}" for role, ref in replay.actor_refs)
        raise BadInput(f"{args.file}: recorded with {wanted}; pass the same --actor to replay it")
    run = replay_run(replay, actors)
    if not args.quiet:
        narrator = Narrator(console)
        console.rule(f"[bold]replay of {escape(plain(replay.scenario.name))}[/bold]"
                     + (f" with variant {escape(plain(replay.variant))}" if replay.variant else ""))
        for event in run.events:
            narrator(event)
    same = len(run.events) == replay.events and events_digest(run.events) == replay.events_sha256
    console.print()
    if same:
        console.print(f"[green]reproduced[/green]: the same {replay.events} events as the recorded run "
                      f"(sha256 {replay.events_sha256[:16]}...)", highlight=False)
    else:
        console.print(f"[bold red]NOT reproduced[/bold red]: {len(run.events)} events, "
                      f"sha256 {events_digest(run.events)[:16]}...; the file recorded {replay.events} events, "
                      f"sha256 {replay.events_sha256[:16]}...", highlight=False)
    if run.failure is not None:
        console.print(f"[bold red]{run.failure.kind}[/bold red]: {escape(plain(run.failure.summary))}", highlight=False)
    return EXIT_OK if same and run.failure is None else EXIT_FOUND

