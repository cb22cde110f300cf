"""``sandbox run``: a scenario run and narrated, with its events, summary and report written if asked."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import trio
from rich.console import Console
from rich.table import Table
from rich.text import Text

from sandbox._core.eventlog import EventFile, EventLog
from sandbox._core.safeio import OutDir
from sandbox._core.specs import Scenario
from sandbox._exchange.result import RunResult
from sandbox._exchange.run import run_scenario
from sandbox._scenario.load import resolve_scenario
from sandbox._tools.command import (
    ALLOW_OUTSIDE_HELP,
    EXIT_CRASH,
    EXIT_OK,
    EXIT_STOPPED,
    EXIT_VIOLATION,
    BadInput,
    Command,
    actor_option,
    load_actors,
    open_out,
    positive,
    seed,
)
from sandbox._tools.narrate import FOLD_ABOVE, LEGEND, Narrator, glossary, print_hanging
from sandbox._tools.plain import plain, plain_text

__all__ = ["RUN", "DEFAULT_SCENARIO", "RUN_RESULTS"]

DEFAULT_SCENARIO = "demo"
# What a run writes into --out: cleared when a run starts, so a killed run never
# leaves an old summary beside a new partial log.
RUN_RESULTS = ("events.jsonl", "summary.json")


def _arguments(run: argparse.ArgumentParser) -> None:
    run.add_argument("scenario", nargs="?", default=DEFAULT_SCENARIO,
                     help=f"a bundled scenario's name or a path to a .toml file (default: {DEFAULT_SCENARIO})")
    run.add_argument("--seed", type=seed, default=None, help="seed of the delivery order (default: the scenario's)")
    run.add_argument("--out", type=Path, default=None, help="write events.jsonl and summary.json to this directory")
    run.add_argument("--live", action="store_true",
                     help="live mode: every actor a trio task, trio picks the interleaving (not reproducible)")
    run.add_argument("--quiet", action="store_true", help="no narration; only the closing summary")
    run.add_argument("--log-json", action="store_true", help="also send every event as JSON lines to stderr")
    run.add_argument("--report", type=Path, default=None, metavar="FILE.html",
                     help="write a self-contained HTML report of the run (charts and a message sequence diagram)")
    _narration_options(run)
    actor_option(run)
    run.add_argument("--allow-outside-paths", action="store_true", help=ALLOW_OUTSIDE_HELP)


def _narration_options(run: argparse.ArgumentParser) -> None:
    """The options of the narrated timeline (see docs/narration.md)."""
    from sandbox._tools.narrate import FOLD_ABOVE, THEMES

    run.add_argument("--theme", choices=list(THEMES), default="auto",
                     help="colours for a dark or light terminal (default auto: readable on both)")
    run.add_argument("--fold", action=argparse.BooleanOptionalAction, default=None,
                     help="fold market makers' re-quotes into one line per account and instant "
                          f"(default: on when the scenario has more than {FOLD_ABOVE} scripted events)")
    run.add_argument("--width", type=positive("--width"), default=None, metavar="COLUMNS",
                     help="wrap the narration at this width with a hanging indent (default: the terminal's "
                          "width on a terminal; piped, one event per line)")
    run.add_argument("--explain", action="store_true", help="after the run, a glossary of the terms it used")


def _json_logger() -> Any:
    """Every event through structlog, rendered as one JSON object per line on stderr.

    structlog's ``event`` key is the event's ``kind``; every field of the
    event follows unchanged.
    """
    import structlog

    logger = structlog.wrap_logger(
        structlog.PrintLogger(sys.stderr),
        processors=[structlog.processors.JSONRenderer(separators=(",", ":"), ensure_ascii=False)],
    )
    return lambda event: logger.info(event["kind"], **event)


def _run(args: argparse.Namespace, console: Console) -> int:
    scenario = resolve_scenario(args.scenario, allow_outside_paths=args.allow_outside_paths)  # every check first
    inputs = list(scenario.read_from)
    actors, _ = load_actors(args.actors)
    recorder = None
    if args.report is not None:
        from sandbox._tools import report  # matplotlib is loaded only when a report is asked for

        outputs = [args.out / name for name in RUN_RESULTS] if args.out is not None else []
        try:
            report.check_report_path(args.report, avoid=inputs + outputs)
        except report.ReportPathError as e:
            raise BadInput(str(e)) from None
        recorder = report.Recorder()
    out = open_out(args.out, RUN_RESULTS, inputs) if args.out is not None else None
    try:
        return _run_in(args, console, scenario, actors, recorder, out)
    finally:
        if out is not None:
            out.close()


def _run_in(args: argparse.Namespace, console: Console, scenario: Scenario, actors: Any, recorder: Any,
            out: OutDir | None) -> int:
    log = EventLog()
    narrator = None
    if not args.quiet:
        if args.width is not None:
            console.width = args.width
        fold = args.fold if args.fold is not None else len(scenario.events) > FOLD_ABOVE
        narrator = Narrator(console, wrap=True if args.width is not None else None, fold=fold, theme=args.theme)
        console.rule(plain_text(scenario.name, "bold"))
        if scenario.description:
            console.print(plain_text(scenario.description, "italic", newlines=True))
        print_hanging(console, Text("legend: ", style="narr.quiet"), Text(LEGEND, style="narr.quiet"))
        console.print()
        log.subscribe(narrator)
    if args.log_json:
        log.subscribe(_json_logger())
    hooks = {}
    if recorder is not None:
        recorder.attach(log)
        hooks = recorder.run_options()
    events_file = None
    if out is not None:
        # Durable: every event is on disk the moment it is recorded (see EventFile).
        events_file = EventFile(out.file("events.jsonl"), fd=out.open_append("events.jsonl", new=True))
        log.subscribe(events_file)
    try:
        result = trio.run(
            lambda: run_scenario(scenario, seed=args.seed, mode="live" if args.live else "seeded", log=log,
                                 actors=actors, **hooks)
        )
    finally:
        if events_file is not None:
            events_file.close()
    if narrator is not None:
        narrator.flush()
    summary = result.summary()
    if out is not None:
        out.write_atomic("summary.json", json.dumps(summary, indent=2) + "\n", fsync=False)
    if result.error is not None:
        print(f"sandbox: {plain(scenario.source)}: {plain(result.error)}", file=sys.stderr)
        return EXIT_CRASH
    if result.stopped is not None:
        print(f"sandbox: {plain(scenario.source)}: {plain(result.stopped)}", file=sys.stderr)
        return EXIT_STOPPED
    if recorder is not None:
        from sandbox._tools import report

        inputs = list(scenario.read_from) + ([out.file(n) for n in RUN_RESULTS] if out is not None else [])
        try:
            report.write_report(args.report, recorder.finish(result), avoid=inputs)
        except report.ReportPathError as e:
            raise BadInput(str(e)) from None
    _print_summary(console, scenario, result, summary)
    if args.explain:
        _print_glossary(console, {e["kind"] for e in result.events})
    if recorder is not None:
        console.print(f"report written to {plain(args.report)}", markup=False)
    return EXIT_OK if result.ok else EXIT_VIOLATION


def _print_summary(console: Console, scenario: Scenario, result: RunResult, summary: dict[str, Any]) -> None:
    console.print()
    table = Table(title=plain_text(f"{scenario.name}: seed {result.seed}, {result.mode} delivery"), show_header=False)
    table.add_column(style="bold")
    table.add_column()
    fund = summary["insurance_fund"]
    table.add_row("insurance fund", f"{fund['initial']} -> {fund['final']}"
                  + (f" (keeps {fund['positions']})" if fund["positions"] else ""))
    for key, value in summary["counts"].items():
        table.add_row(key.replace("_", " "), str(value))
    table.add_row("fees", summary["fees"])
    table.add_row("events", str(len(result.events)))
    if result.ok:
        table.add_row("invariants", "[green]all held at every quiet point[/green]")
    else:
        table.add_row("invariants", f"[bold red]{len(result.violations)} violated[/bold red]")
    console.print(table)


def _print_glossary(console: Console, kinds: set[str]) -> None:
    """The terms the narration of this run used, each with one sentence (``--explain``)."""
    console.print()
    console.print("Terms used above:", style="bold", markup=False)
    for term, text in glossary(kinds):
        print_hanging(console, Text.assemble("  ", (term, "bold"), ": "), Text(text))


RUN = Command("run", "run a scenario and narrate it", _arguments, _run)
