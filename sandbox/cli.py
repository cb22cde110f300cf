"""The ``sandbox`` command.

Exit status: 0 the run finished and every invariant held; 1 an invariant was
violated; 2 bad input (the message names the file, the key and the problem;
nothing is run or written).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import tempfile
from pathlib import Path
from typing import Any, Sequence

import trio
from rich.console import Console
from rich.table import Table

from .eventlog import EventLog
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

    ex = sub.add_parser("explore", help="search message interleavings for a broken invariant (hypothesis)")
    ex.add_argument("scenario", help="a bundled scenario's name or a path to a .toml file")
    ex.add_argument("--examples", type=_positive, default=500, help="interleavings to try (default 500)")
    ex.add_argument("--variant", default=None, help="swap in a deliberately wrong variant (see 'sandbox variants')")
    ex.add_argument("--find", default=None, metavar="KIND",
                    help="search for an interleaving in which an event of this kind happens (e.g. adl)")
    ex.add_argument("--out", type=Path, default=Path("."), help="where to write the replay file (default .)")
    ex.add_argument("--seed", type=_seed, default=None, help="seed hypothesis's search (default: random)")
    ex.add_argument("--db", type=Path, default=None,
                    help="hypothesis example database directory (default .hypothesis/sandbox-explore)")
    ex.add_argument("--workers", type=_positive, default=1,
                    help="processes sharing one example database (default 1)")

    rp = sub.add_parser("replay", help="rerun a replay file written by 'sandbox explore'")
    rp.add_argument("file", type=Path)
    rp.add_argument("--quiet", action="store_true", help="no narration")

    sub.add_parser("variants", help="list the deliberately wrong actor variants (the bug zoo)")
    return p


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if not 1 <= value <= 10**7:
        raise argparse.ArgumentTypeError(f"expected a number from 1 to 10000000, got {value}")
    return value


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
        if args.command == "variants":
            return _variants(console)
        if args.command == "explore":
            from ._explore_cli import explore_command

            return explore_command(args, console)
        if args.command == "replay":
            from ._explore_cli import replay_command

            return replay_command(args, console)
        return _run(args, console)
    except (ScenarioError, BadInput) as e:
        print(f"sandbox: {e}", file=sys.stderr)
        return EXIT_BAD_INPUT


def _list(console: Console) -> int:
    for name, load in bundled_scenarios().items():
        scenario = load()
        first = re.split(r"(?<=[.?!]) ", scenario.description, maxsplit=1)[0].rstrip(".")
        console.print(f"{name:<28} {first}", markup=False, soft_wrap=True)
    return EXIT_OK


def _variants(console: Console) -> int:
    from actors.zoo import VARIANTS

    for v in VARIANTS.values():
        console.print(f"{v.name:<28} {v.scenario:<24} {v.description}", markup=False, soft_wrap=True)
    return EXIT_OK


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
        events_file = open(args.out / "events.jsonl", "w", encoding="utf-8")
        log.subscribe(lambda e: events_file.write(EventLog.dumps(e) + "\n"))  # type: ignore[union-attr]
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
