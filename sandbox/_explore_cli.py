"""``sandbox explore`` and ``sandbox replay``: the command-line side of :mod:`sandbox.explore`."""

from __future__ import annotations

import argparse
import concurrent.futures
import multiprocessing
import queue
from pathlib import Path
from typing import Any, Mapping

from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from .explore import DEFAULT_DB, Exploration, Finding, events_digest, explore, read_replay, replay_run, write_replay
from .cli import EXIT_OK, EXIT_VIOLATION
from .narrate import STYLES, Narrator, describe_message
from .plain import plain
from .scenario import Scenario, resolve_scenario

__all__ = ["explore_command", "replay_command"]

# The exit codes are defined once, in sandbox.cli: "found" is its EXIT_VIOLATION (something wrong was found).
EXIT_FOUND = EXIT_VIOLATION
# Event kinds --find accepts: every kind the actors emit.
EVENT_KINDS = frozenset(STYLES) | {"fee"}
# Show at most this many deliveries of the shrunk interleaving.
MAX_SHOWN = 80


def _variant_actors(name: str | None) -> Mapping[str, type] | None:
    from actors.zoo import VARIANTS

    from .cli import BadInput

    if name is None:
        return None
    if name not in VARIANTS:
        raise BadInput(f"--variant {name}: unknown variant (see 'sandbox variants')")
    return VARIANTS[name].actors


def explore_command(args: argparse.Namespace, console: Console) -> int:
    from .cli import BadInput, _prepare_out

    scenario = resolve_scenario(args.scenario)
    actors = _variant_actors(args.variant)
    if args.find is not None and args.find not in EVENT_KINDS:
        raise BadInput(f"--find {args.find}: unknown event kind (one of {', '.join(sorted(EVENT_KINDS))})")
    _prepare_out(args.out)
    db = args.db if args.db is not None else DEFAULT_DB
    # As in hypothesis, a seeded search is reproducible but saves nothing to
    # the example database; an unseeded one saves what it finds.
    seed = args.seed
    what = f"an interleaving with a {args.find!r} event" if args.find else "a broken invariant"
    how = f"search seed {seed}, not saved to the database" if seed is not None else f"example database {db}"
    console.print(
        f"exploring [bold]{escape(plain(scenario.name))}[/bold]"
        + (f" with variant [bold]{args.variant}[/bold]" if args.variant else "")
        + f": up to {args.examples} interleavings for {what} ({how}; {args.workers} worker(s))",
        highlight=False,
    )
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
            )
        else:
            result = _explore_parallel(scenario, args, db, seed, progress, task)
    if result.finding is None:
        console.print(f"[green]nothing found[/green] in {result.runs} interleavings", highlight=False)
        return EXIT_OK
    finding = result.finding
    path = args.out / _replay_name(scenario, args.variant, args.find)
    write_replay(finding, path)
    _print_finding(console, finding, result)
    console.print(plain(f"\nreplay written to {path}\n  sandbox replay {path}", newlines=True), markup=False)
    return EXIT_FOUND


def _replay_name(scenario: Scenario, variant: str | None, find: str | None) -> str:
    parts = [scenario.name] + ([variant] if variant else []) + ([f"find-{find}"] if find else [])
    return "replay-" + "-".join(parts) + ".json"


def _print_finding(console: Console, finding: Finding, result: Exploration) -> None:
    failure = finding.failure
    headline = {"violation": "INVARIANT VIOLATED", "crash": "ACTOR CRASHED", "livelock": "LIVELOCK", "event": "FOUND"}[failure.kind]
    console.print(
        f"\n[bold red]{headline}[/bold red] (first failing run: #{result.first_failure}; "
        f"shrunk in {result.runs} runs in all)",
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
    if len(shown) > MAX_SHOWN:
        console.print(f"  ... {len(shown) - MAX_SHOWN} earlier deliveries not shown ...", highlight=False)
        shown = shown[-MAX_SHOWN:]
    for i, d in enumerate(shown, start=len(finding.deliveries) - len(shown) + 1):
        env = d.envelope
        mark = "*" if d.overtook else " "
        console.print(
            f" {mark}{i:>4}  t={d.time_ms / 1000:.3f}  {env.sender} -> {env.recipient}: {describe_message(env.message)}",
            markup=False, highlight=False, soft_wrap=True,
        )


def _explore_worker(
    scenario: Scenario, variant: str | None, find: str | None, examples: int, db: Path, seed: int | None,
    counter: Any,
) -> Exploration:
    def tick(n: int) -> None:
        counter.put(1)

    return explore(scenario, examples=examples, variant=variant, actors=_variant_actors(variant), find=find,
                   database=db, seed=seed, on_example=tick)


def _explore_parallel(
    scenario: Scenario, args: argparse.Namespace, db: Path, seed: int | None, progress: Progress, task: Any
) -> Exploration:
    """K processes share one example database: what one has found, the next search tries first."""
    per_worker = -(-args.examples // args.workers)
    manager = multiprocessing.Manager()
    counter = manager.Queue()
    done = 0
    with concurrent.futures.ProcessPoolExecutor(max_workers=args.workers) as pool:
        futures = [
            pool.submit(_explore_worker, scenario, args.variant, args.find, per_worker, db,
                        None if seed is None else seed + i, counter)
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
            return Exploration(r.finding, runs, r.first_failure)
    return Exploration(None, runs, 0)


def replay_command(args: argparse.Namespace, console: Console) -> int:
    replay = read_replay(args.file)
    actors = _variant_actors(replay.variant)
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

