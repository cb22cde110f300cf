"""The ``sandbox`` command.

Exit status: 0 the run finished and every invariant held; 1 an invariant was
violated; 2 bad input (the message names the file, the key and the problem;
nothing is run or written). ``check-log``: 0 the log is good, 1 a bad line
(reported), 2 the file cannot be read.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path
from typing import Any, Sequence

import trio
from rich.console import Console
from rich.table import Table

from .checklog import check_log
from .eventlog import EventFile, EventLog
from .exchange import RunResult, run_scenario
from .narrate import Narrator
from .scenario import Scenario, ScenarioError, bundled_scenarios, resolve_scenario

__all__ = ["main"]

DEFAULT_SCENARIO = "demo"
EXIT_OK, EXIT_VIOLATION, EXIT_BAD_INPUT = 0, 1, 2


class BadInput(Exception):
    """A command-line problem that is reported as one line and exit status 2."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, exit 2, no traceback
        self.exit(EXIT_BAD_INPUT, f"sandbox: {message} (see 'sandbox --help')\n")


def _parser() -> argparse.ArgumentParser:
    p = _Parser(prog="sandbox", description="A sandbox of a perpetual-futures exchange's risk machinery.")
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)

    run = sub.add_parser("run", help="run a scenario and narrate it")
    run.add_argument("scenario", nargs="?", default=DEFAULT_SCENARIO,
                     help=f"a bundled scenario's name or a path to a .toml file (default: {DEFAULT_SCENARIO})")
    run.add_argument("--seed", type=_seed, default=None, help="seed of the delivery order (default: the scenario's)")
    run.add_argument("--out", type=Path, default=None, help="write events.jsonl and summary.json to this directory")
    run.add_argument("--live", action="store_true",
                     help="live mode: every actor a trio task, trio picks the interleaving (not reproducible)")
    run.add_argument("--quiet", action="store_true", help="no narration; only the closing summary")
    run.add_argument("--log-json", action="store_true", help="also send every event as JSON lines to stderr")

    sub.add_parser("list", help="list the bundled scenarios")

    check = sub.add_parser(
        "check-log", help="verify an events.jsonl: seq, JSON, and the invariants recomputed from the events",
        description="Rebuild the books from an events.jsonl and check every line: contiguous seq, valid JSON, "
        "and the exchange's invariants recomputed from the events. Exit 0 with a summary, 1 with the first "
        "bad line, 2 if the file cannot be read.",
    )
    check.add_argument("file", type=Path, help="the events.jsonl to check")
    return p


def _seed(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"--seed must be a whole number, got {text!r}") from None
    if not 0 <= value < 2**63:
        raise argparse.ArgumentTypeError(f"--seed must be between 0 and 2**63-1, got {value}")
    return value


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    console = Console(highlight=False)
    try:
        if args.command == "list":
            return _list(console)
        if args.command == "check-log":
            return _check_log(args.file)
        return _run(args, console)
    except (ScenarioError, BadInput) as e:
        print(f"sandbox: {e}", file=sys.stderr)
        return EXIT_BAD_INPUT


def _list(console: Console) -> int:
    for name, load in bundled_scenarios().items():
        scenario = load()
        first = scenario.description.split(". ")[0].rstrip(".")
        console.print(f"{name:<28} {first}", markup=False, soft_wrap=True)
    return EXIT_OK


def _check_log(path: Path) -> int:
    try:
        report = check_log(path)
    except FileNotFoundError:
        raise BadInput(f"check-log: {path}: no such file") from None
    except IsADirectoryError:
        raise BadInput(f"check-log: {path}: is a directory, not an events file") from None
    except OSError as e:
        raise BadInput(f"check-log: {path}: cannot be read ({e.strerror or e})") from None
    print(f"{path}: {report.summary()}")
    return EXIT_OK if report.ok else EXIT_VIOLATION


def _prepare_out(out: Path) -> None:
    if out.exists() and not out.is_dir():
        raise BadInput(f"--out {out}: exists and is not a directory")
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = tempfile.NamedTemporaryFile(dir=out, prefix=".probe-")
        probe.close()
    except OSError as e:
        raise BadInput(f"--out {out}: cannot write there ({e.strerror or e})") from None


def _run(args: argparse.Namespace, console: Console) -> int:
    scenario = resolve_scenario(args.scenario)  # every check before anything runs
    if args.out is not None:
        _prepare_out(args.out)
    log = EventLog()
    if not args.quiet:
        console.rule(f"[bold]{scenario.name}[/bold]")
        if scenario.description:
            console.print(scenario.description, markup=False, style="italic")
        console.print()
        log.subscribe(Narrator(console))
    if args.log_json:
        log.subscribe(lambda e: print(EventLog.dumps(e), file=sys.stderr))
    events_file = None
    if args.out is not None:
        # Durable: every event is on disk the moment it is recorded (see EventFile).
        events_file = EventFile(args.out / "events.jsonl")
        log.subscribe(events_file)
    try:
        result = trio.run(
            lambda: run_scenario(scenario, seed=args.seed, mode="live" if args.live else "seeded", log=log)
        )
    finally:
        if events_file is not None:
            events_file.close()
    summary = result.summary()
    if args.out is not None:
        _write_atomic(args.out / "summary.json", json.dumps(summary, indent=2) + "\n")
    _print_summary(console, scenario, result, summary)
    return EXIT_OK if result.ok else EXIT_VIOLATION


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def _print_summary(console: Console, scenario: Scenario, result: RunResult, summary: dict[str, Any]) -> None:
    console.print()
    table = Table(title=f"{scenario.name}: seed {result.seed}, {result.mode} delivery", show_header=False)
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
