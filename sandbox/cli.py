"""The ``sandbox`` command.

Exit status, the same for every subcommand: :data:`EXIT_CODES` below is the
one definition (``sandbox --help`` prints it; ``docs/reference/exit-codes.md``
explains it command by command): 0 done, nothing wrong; 1 something wrong was
found (an invariant violated, a finding, a replay that differs, a bad log
line); 2 bad input, one line on stderr and nothing run or written; 3 an actor
crashed; 4 the run reached its work limits and was stopped (docs/guarantees.md);
130 interrupted.

Every command that writes does so through :mod:`sandbox._safeio` (docs/guarantees.md, "Safe writes").
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
from decimal import Decimal
from pathlib import Path
from typing import Any, Final, Sequence

import trio
from rich.console import Console
from rich.table import Table
from rich.text import Text

from ._safeio import OutDir, UnsafePath, safe_name
from .checklog import check_log
from .eventlog import EventFile, EventLog
from .exchange import RunResult, run_scenario
from .narrate import FOLD_ABOVE, LEGEND, Narrator, glossary, print_hanging
from .plain import plain, plain_text
from .scenario import Scenario, ScenarioError, bundled_scenarios, resolve_scenario

__all__ = ["main"]

DEFAULT_SCENARIO = "demo"
# The one definition of the exit codes (see the table above); other modules import them from here.
EXIT_OK, EXIT_VIOLATION, EXIT_BAD_INPUT, EXIT_CRASH, EXIT_STOPPED, EXIT_INTERRUPTED = 0, 1, 2, 3, 4, 130
EXIT_CODES: Final = {
    EXIT_OK: "done, nothing wrong found",
    EXIT_VIOLATION: "something found: an invariant violated, a finding, a replay that differs, a bad log line",
    EXIT_BAD_INPUT: "bad input (one line on stderr; nothing run or written)",
    EXIT_CRASH: "an actor crashed",
    EXIT_STOPPED: "the run reached its work limits and was stopped",
    EXIT_INTERRUPTED: "interrupted",
}
# What a run writes into --out: cleared when a run starts, so a killed run never
# leaves an old summary beside a new partial log.
RUN_RESULTS = ("events.jsonl", "summary.json")
ALLOW_OUTSIDE_HELP = ("let the scenario name files outside its own folder (a stochastic csv); "
                      "off by default, so a downloaded scenario reads nothing else")


class BadInput(Exception):
    """A command-line problem that is reported as one line and exit status 2."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, exit 2, no traceback
        choice = re.search(r"invalid choice: '((?:[^'\\]|\\.)*)' \(choose from (.*)\)$", message)
        if choice is not None:  # a mistyped subcommand or option value: say which was probably meant
            from .scenario import did_you_mean

            close = did_you_mean(choice.group(1), re.findall(r"'([^']*)'", choice.group(2)))
            if close is not None:
                message += f"; did you mean {close!r}?"
        elif message.startswith("unrecognized arguments: "):  # a mistyped option of any subcommand
            from .scenario import did_you_mean

            options = {o for parser in self._all_parsers() for a in parser._actions for o in a.option_strings}
            typo = next((t for t in message.split()[2:] if t.startswith("--")), None)
            close = did_you_mean(typo.split("=", 1)[0], options) if typo else None
            if close is not None:
                message += f"; did you mean {close}?"
        self.exit(EXIT_BAD_INPUT, f"sandbox: {plain(message)} (see 'sandbox --help')\n")

    def _all_parsers(self) -> list[argparse.ArgumentParser]:
        subs = [a for a in self._actions if isinstance(a, argparse._SubParsersAction)]
        return [self, *(p for a in subs for p in a.choices.values())]


def _parser() -> argparse.ArgumentParser:
    p = _Parser(prog="sandbox", description="A sandbox of a perpetual-futures exchange's risk machinery.",
                epilog="exit status: " + "; ".join(f"{code} {what}" for code, what in EXIT_CODES.items()))
    p.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
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
    run.add_argument("--report", type=Path, default=None, metavar="FILE.html",
                     help="write a self-contained HTML report of the run (charts and a message sequence diagram)")
    _narration_options(run)
    _actor_option(run)

    report = sub.add_parser("report", help="build the HTML report of a run saved with 'sandbox run --out DIR'")
    report.add_argument("events", type=Path, metavar="EVENTS.jsonl", help="the run's DIR/events.jsonl")
    report.add_argument("-o", "--output", type=Path, required=True, metavar="FILE.html", help="the report to write")
    report.add_argument("--scenario", default=None, metavar="FILE.toml",
                        help="the scenario the run used, if it is not the bundled one of that name")
    run.add_argument("--allow-outside-paths", action="store_true", help=ALLOW_OUTSIDE_HELP)

    sub.add_parser("list", help="list the bundled scenarios")

    ex = sub.add_parser("explore", help="search message interleavings for a broken invariant (hypothesis)")
    ex.add_argument("scenario", help="a bundled scenario's name or a path to a .toml file")
    ex.add_argument("--examples", type=_positive("--examples"), default=500, help="interleavings to try (default 500)")
    ex.add_argument("--variant", default=None, help="swap in a deliberately wrong variant (see 'sandbox variants')")
    ex.add_argument("--find", default=None, metavar="KIND",
                    help="search for an interleaving in which an event of this kind happens (e.g. adl)")
    ex.add_argument("--out", type=Path, default=Path("."), help="where to write the replay file (default .)")
    ex.add_argument("--seed", type=_seed, default=None, help="seed hypothesis's search (default: random)")
    ex.add_argument("--db", type=Path, default=None,
                    help="hypothesis example database directory (default .hypothesis/sandbox-explore)")
    ex.add_argument("--workers", type=_positive("--workers"), default=1,
                    help="processes sharing one example database (default 1)")
    from ._search_args import add_search_options

    add_search_options(ex, _positive)
    _actor_option(ex)
    ex.add_argument("--allow-outside-paths", action="store_true", help=ALLOW_OUTSIDE_HELP)

    rp = sub.add_parser("replay", help="rerun a replay file written by 'sandbox explore'")
    rp.add_argument("file", type=Path)
    rp.add_argument("--quiet", action="store_true", help="no narration")
    _actor_option(rp)

    sub.add_parser("variants", help="list the deliberately wrong actor variants (the bug zoo)")
    check = sub.add_parser(
        "check-log", help="verify an events.jsonl: seq, JSON, and the invariants recomputed from the events",
        description="Rebuild the books from an events.jsonl and check every line: contiguous seq, valid JSON, "
        "and the exchange's invariants recomputed from the events. Exit 0 with a summary, 1 with the first "
        "bad line, 2 if the file cannot be read.",
    )
    check.add_argument("file", type=Path, help="the events.jsonl to check")


    soak = sub.add_parser("soak", help="a long live run: random traders, restarts, memory and invariants watched")
    soak.add_argument("--orders", type=_positive("--orders"), default=1_000_000, help="orders to send (default 1000000)")
    soak.add_argument("--traders", type=_positive("--traders"), default=50, help="random traders (default 50)")
    soak.add_argument("--restart-ppm", type=_positive("--restart-ppm"), default=20,
                      help="chance per message, in ppm, that its recipient crashes and restarts first (default 20)")
    soak.add_argument("--seed", type=_seed, default=0)

    bench = sub.add_parser("bench", help="measure throughput and scale against this machine's own limits")
    bench.add_argument("--quick", action="store_true",
                       help="smaller sizes (under 45 s on 2 cores): same figures, sizes stated in the output")
    bench.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    bench.add_argument("--million", action="store_true",
                       help="only the crash of 1,000,000 accounts with its events.jsonl, then check-log on it "
                            "(time, peak memory, verdicts)")
    bench.add_argument("--out", type=Path, default=None,
                       help="with --million: the folder for events.jsonl (default: a temporary one, removed)")

    sweep = sub.add_parser("sweep", help="run a scenario over a grid of parameters and seeds (P(ADL), fund drawdown)")
    sweep.add_argument("scenario", help="a bundled scenario's name or a path to a .toml file")
    sweep.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=V1,V2,...",
                       help="a dotted scenario key and the values to sweep, e.g. insurance_fund.balance=0,10,50 "
                            "(repeat for a grid of every combination)")
    sweep.add_argument("--seeds", type=_positive("--seeds"), required=True, help="runs per combination: seeds 0..N-1")
    sweep.add_argument("--workers", type=_positive("--workers"), default=None,
                       help="local worker processes (default: one per CPU)")
    sweep.add_argument("--scheduler", default=None, metavar="tcp://HOST:PORT",
                       help="run on this Dask distributed scheduler's workers instead of a local pool "
                            "(tls://HOST:PORT with --tls-* or Dask's TLS settings; see docs/guarantees.md)")
    sweep.add_argument("--out", type=Path, default=None,
                       help="directory of the rows, summary and plot (default: out/sweep-SCENARIO); "
                            "a rerun with the same --out skips the runs already done")
    _actor_option(sweep)
    sweep.add_argument("--allow-outside-paths", action="store_true", help=ALLOW_OUTSIDE_HELP)
    _tls_arguments(sweep)
    return p


def _narration_options(run: argparse.ArgumentParser) -> None:
    """The options of the narrated timeline (see docs/narration.md)."""
    from .narrate import FOLD_ABOVE, THEMES

    run.add_argument("--theme", choices=list(THEMES), default="auto",
                     help="colours for a dark or light terminal (default auto: readable on both)")
    run.add_argument("--fold", action=argparse.BooleanOptionalAction, default=None,
                     help="fold market makers' re-quotes into one line per account and instant "
                          f"(default: on when the scenario has more than {FOLD_ABOVE} scripted events)")
    run.add_argument("--width", type=_positive("--width"), default=None, metavar="COLUMNS",
                     help="wrap the narration at this width with a hanging indent (default: the terminal's "
                          "width on a terminal; piped, one event per line)")
    run.add_argument("--explain", action="store_true", help="after the run, a glossary of the terms it used")


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("perp-risk-sandbox")
    except PackageNotFoundError:  # run from a source tree that was never installed
        return "unknown"


def _actor_option(p: argparse.ArgumentParser) -> None:
    p.add_argument("--actor", dest="actors", action="append", default=[], metavar="ROLE=module:Class",
                   help="replace a role's actor with your subclass (module:Class or path/to/file.py:Class); "
                        "this imports and runs your code (repeat for several roles)")


def _load_actors(texts: list[str], base: Any = None) -> tuple[Any, tuple[tuple[str, str], ...]]:
    """The --actor classes (over a variant's), or BadInput naming the bad reference."""
    from .actorref import ActorRefError, load_actor_refs

    try:
        return load_actor_refs(texts, base)
    except ActorRefError as e:
        raise BadInput(str(e)) from None


def _tls_arguments(sweep: argparse.ArgumentParser) -> None:
    """--tls-*: the files of a tls:// scheduler (without them, Dask's own distributed.comm.tls settings)."""
    for flag, what in (("--tls-ca-file", "the CA certificate that signed the scheduler's and workers' certificates"),
                       ("--tls-cert", "this client's certificate"), ("--tls-key", "this client's private key")):
        sweep.add_argument(flag, default=None, metavar="FILE", help=f"with a tls:// --scheduler: {what}")


def _no_tls(args: argparse.Namespace) -> None:
    if any(f is not None for f in (args.tls_ca_file, args.tls_cert, args.tls_key)):
        raise BadInput("--tls-ca-file, --tls-cert and --tls-key are for a tls:// --scheduler")


def _positive(flag: str) -> Any:
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{flag} must be a whole number, got {text!r}") from None
        if not 1 <= value <= 10**7:
            raise argparse.ArgumentTypeError(f"{flag} must be between 1 and 10000000, got {value}")
        return value

    return parse


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
        if args.command == "check-log":
            return _check_log(args.file)
        if args.command == "soak":
            return _soak(args, console)
        if args.command == "sweep":
            return _sweep(args, console)
        if args.command == "bench":
            return _bench(args, console)
        if args.command == "report":
            return _report(args, console)
        return _run(args, console)
    except (ScenarioError, BadInput, UnsafePath) as e:
        print(f"sandbox: {plain(e)}", file=sys.stderr)
        return EXIT_BAD_INPUT


def _list(console: Console) -> int:
    for name, load in bundled_scenarios().items():
        scenario = load()
        first = re.split(r"(?<=[.?!]) ", scenario.description, maxsplit=1)[0].rstrip(".")
        console.print(plain(f"{name:<28} {first}"), markup=False, soft_wrap=True)
    return EXIT_OK


def _report(args: argparse.Namespace, console: Console) -> int:
    from . import report

    inputs = [args.events] + ([args.scenario] if args.scenario is not None else [])
    try:
        report.check_report_path(args.output, avoid=inputs)
        rec = report.recording_from_log(args.events, args.scenario)
        report.write_report(args.output, rec, avoid=inputs)
    except (report.ReportPathError, report.ReportLogError) as e:
        raise BadInput(str(e)) from None
    console.print(f"report of {plain(args.events)} written to {plain(args.output)}", markup=False, soft_wrap=True)
    return EXIT_OK


def _variants(console: Console) -> int:
    from actors.zoo import VARIANTS

    for v in VARIANTS.values():
        console.print(f"{v.name:<28} {v.scenario:<24} {v.description}", markup=False, soft_wrap=True)
    return EXIT_OK
def _check_log(path: Path) -> int:
    try:
        report = check_log(path)
    except UnsafePath as e:
        raise BadInput(f"check-log: {e}") from None
    except FileNotFoundError:
        raise BadInput(f"check-log: {path}: no such file") from None
    except IsADirectoryError:
        raise BadInput(f"check-log: {path}: is a directory, not an events file") from None
    except OSError as e:
        raise BadInput(f"check-log: {path}: cannot be read ({e.strerror or e})") from None
    if report.unsupported is not None:
        raise BadInput(f"check-log: {path}: {report.unsupported}")
    print(plain(f"{path}: {report.summary()}"))  # a bad line's message may quote the log's ids
    return EXIT_OK if report.ok else EXIT_VIOLATION


def _soak(args: argparse.Namespace, console: Console) -> int:
    from .soak import soak

    console.print(f"soak: {args.orders} orders from {args.traders} random traders, live mode, "
                  f"restarts at {args.restart_ppm} ppm per message", highlight=False)
    r = soak(orders=args.orders, traders=args.traders, restart_ppm=args.restart_ppm, seed=args.seed,
             progress=lambda n: console.print(f"  {n:>9} orders sent", highlight=False))
    console.print(
        f"{r.orders} orders in {r.seconds:.1f} s ({r.orders_per_s:.0f} orders/s, {r.deliveries} messages, "
        f"{r.events} events); {r.restarts} actor restarts, {r.liquidations} liquidations, "
        f"{r.rejected_orders} orders rejected", highlight=False)
    console.print("resident memory (MiB) by orders sent: "
                  + ", ".join(f"{n}: {mb:.1f}" for n, mb in r.rss_mb)
                  + f"; growth after warm-up {r.rss_growth_mb:+.1f} MiB", highlight=False)
    if r.violations:
        for v in r.violations:
            console.print(f"[bold red]invariant violated[/bold red]: {v.invariant}: {v.detail}", highlight=False)
        return EXIT_VIOLATION
    console.print("[green]every invariant held at every quiet point[/green]", highlight=False)
    return EXIT_OK


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


def _bench(args: argparse.Namespace, console: Console) -> int:
    from .bench import MILLION_TARGETS, SIZES, TARGETS, million, run_bench

    mode = "million" if args.million else "quick" if args.quick else "full"
    err = Console(stderr=True, highlight=False)
    progress = None if args.json else (lambda what: err.print(f"  {what} ..."))
    if args.million:
        if args.out is not None:
            _prepare_out(args.out)
        r = million(None if args.out is None else str(args.out), progress=progress)
        targets = MILLION_TARGETS
    else:
        if not args.json:
            console.print(f"bench ({mode}): " + ", ".join(f"{k} {v:,}" for k, v in SIZES[mode].items()),
                          markup=False, soft_wrap=True)
        r = run_bench(args.quick, progress=progress)
        targets = TARGETS
    if args.json:
        print(json.dumps(r))
        return EXIT_OK
    table = Table(title=f"sandbox bench ({mode})", show_header=False)
    table.add_column(style="bold")
    table.add_column(justify="right")
    for key, value in r.items():
        if isinstance(value, (int, float)):
            table.add_row(key, f"{value:,.6g}" if isinstance(value, float) else f"{value:,}")
    console.print(table)
    if "check_log_summary" in r:
        console.print(f"check-log: {r['check_log_summary']}", markup=False, highlight=False)
    for name, *_ in targets:
        t = r["targets"][name]
        verdict = "[green]PASS[/green]" if t["met"] else "[bold red]MISS[/bold red]"
        console.print(f"{verdict} {name}: {t['value']:,.4g} vs limit {t['limit']:,.4g}", highlight=False)
    return EXIT_OK


def _prepare_out(out: Path) -> None:
    """An --out folder that a file can be written in (made if absent); nothing else is written."""
    OutDir(out, lock=False).close()


def open_out(out: Path, results: Sequence[str], inputs: Sequence[str]) -> OutDir:
    """--out, locked for this command and cleared of ``results``, none of which may be one of ``inputs``."""
    folder = OutDir(out)
    try:
        folder.check_inputs(results, inputs)
        folder.clear(results)
    except BaseException:
        folder.close()
        raise
    return folder


def _run(args: argparse.Namespace, console: Console) -> int:
    scenario = resolve_scenario(args.scenario, allow_outside_paths=args.allow_outside_paths)  # every check first
    inputs = list(scenario.read_from)
    actors, _ = _load_actors(args.actors)
    recorder = None
    if args.report is not None:
        from . import report  # matplotlib is loaded only when a report is asked for

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
        from . import report

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


def _sweep(args: argparse.Namespace, console: Console) -> int:
    from . import sweep as sw

    if args.scheduler is not None and args.workers is not None:
        raise BadInput("--workers is for the local pool; with --scheduler the cluster's workers run the sweep")
    if args.scheduler is not None and not re.fullmatch(r"(tcp|tls)://[^\s:/]+:\d{1,5}", args.scheduler):
        raise BadInput(f"--scheduler {args.scheduler!r}: expected tcp://HOST:PORT or tls://HOST:PORT")
    _, actor_refs = _load_actors(args.actors)  # checked here; each worker loads them again
    try:  # every check (scenario, each --set key and value, --out) before anything is written
        security = (sw.dask_security(args.tls_ca_file, args.tls_cert, args.tls_key, args.scheduler)
                    if args.scheduler is not None else _no_tls(args))
        plan = sw.load_sweep(args.scenario, args.sets, args.seeds, actor_refs,
                            allow_outside_paths=args.allow_outside_paths)
        # The default folder is named after the scenario, made harmless: a name with '../' stays in ./out.
        out = args.out if args.out is not None else Path("out") / f"sweep-{safe_name(plan.name)}"
        sw.prepare_out(out, plan)
    except sw.SweepError as e:
        raise BadInput(str(e)) from None
    return _sweep_in(args, console, plan, out, security)


def _sweep_in(args: argparse.Namespace, console: Console, plan: Any, out: Path, security: Any) -> int:
    from . import sweep as sw

    if args.scheduler is not None:
        try:
            cluster = sw.DaskBackend(args.scheduler, security)
        except sw.SweepError as e:
            raise BadInput(str(e)) from None
        backend, where, close = cluster, f"the Dask cluster at {args.scheduler}", cluster.close
    else:
        workers = args.workers or os.cpu_count() or 1
        backend, where, close = sw.local_backend(workers), f"{workers} local worker{'s' * (workers > 1)}", None
    try:
        folder = sw.open_out(out, plan)  # locked until the sweep ends
    except sw.SweepError as e:
        if close is not None:
            close()
        raise BadInput(str(e)) from None
    try:
        return _sweep_run(args, console, plan, out, folder, backend, where, close)
    finally:
        folder.close()


def _sweep_run(args: argparse.Namespace, console: Console, plan: Any, out: Path, folder: OutDir, backend: Any,
               where: str, close: Any) -> int:
    from rich.progress import (BarColumn, MofNCompleteColumn, Progress, ProgressColumn, TextColumn,
                               TimeElapsedColumn, TimeRemainingColumn)
    from rich.text import Text

    from . import sweep as sw

    class RunsPerSecond(ProgressColumn):
        def render(self, task: Any) -> Text:
            return Text(f"{task.speed:.1f} runs/s" if task.speed else "")

    combos = len(plan.combinations())
    console.print(f"sweep {plain(plan.name)}: {combos} combination{'s' * (combos > 1)} x {plan.seeds} seeds = "
                  f"{combos * plan.seeds} runs on {where}", markup=False, soft_wrap=True)
    err = Console(stderr=True, highlight=False)
    progress = Progress(TextColumn("runs"), BarColumn(), MofNCompleteColumn(), RunsPerSecond(), TimeElapsedColumn(),
                        TextColumn("ETA"), TimeRemainingColumn(), console=err, transient=True)
    bar = progress.add_task("runs", total=None)

    def on_start(todo: int, skipped: int) -> None:
        if skipped:
            console.print(f"{out}: {skipped} runs already done, skipped", markup=False, soft_wrap=True)
        progress.update(bar, total=todo)

    try:
        with progress:
            outcome = sw.run_sweep(plan, folder, backend, on_start=on_start,
                                   on_row=lambda _: progress.advance(bar))
    except sw.SweepError as e:
        raise BadInput(str(e)) from None
    except KeyboardInterrupt:
        print(f"sandbox: interrupted; the finished runs are in {out / sw.RUNS_FILE}: "
              "run the same command again to resume", file=sys.stderr)
        return EXIT_INTERRUPTED
    finally:
        if close is not None:
            close()
    if outcome.ran:
        console.print(f"{outcome.ran} runs in {outcome.seconds:.2f} s: {outcome.runs_per_second:.2f} runs/s "
                      f"on {where}", markup=False, soft_wrap=True)
    table = Table(title=plain_text(f"{plan.name}: {plan.seeds} seeds per combination"))
    for key, _ in plan.sets:
        table.add_column(key)
    for column in ("P(ADL)", "95% interval", "fund drawdown p50", "p90", "p99", "not ok"):
        table.add_column(column, justify="right")
    for entry in outcome.summary:
        d = entry["fund_drawdown"]
        low, high = entry["p_adl_95"]
        table.add_row(*(plain_text(v) for v in entry["params"].values()), f"{entry['p_adl']:.2%}",
                      f"{low:.1%}-{high:.1%}", *(f"{Decimal(d[q]):.2f}" for q in ("p50", "p90", "p99")),
                      str(entry["runs"] - entry["ok"]))
    console.print(table)
    console.print(f"wrote {out / sw.RUNS_FILE} ({len(outcome.rows)} rows), {out / sw.SUMMARY_FILE}, "
                  f"{out / sw.PLOT_FILE}", markup=False, soft_wrap=True)
    return EXIT_OK if all(r["status"] == "ok" for r in outcome.rows) else EXIT_VIOLATION
