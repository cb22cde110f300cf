"""The teaching report: one self-contained HTML page that shows a run.

``sandbox run SCENARIO --report FILE.html`` records a run with a
:class:`Recorder` and writes it with :func:`write_report`. The page works
offline: every chart is an SVG that matplotlib renders into the HTML itself,
the one script (the stepping view, :func:`stepper_html`) is inline and
allowed by its hash, and a Content-Security-Policy forbids every other
script and loading anything from anywhere.

What it shows: the mark price of each market (with the trades, and the
bankruptcy prices of liquidations); the equity of the most interesting
accounts against their maintenance margin; the insurance fund's balance with
a marker for each surplus, takeover, payout and ADL; open interest; and a
message sequence diagram of the actors (:func:`summarise_trace` keeps it
readable when a run delivers thousands of messages).

**The x axis.** Virtual time does not move while the exchange works through
the cascade of messages one scripted event sets off (see
``docs/architecture.md``), so a plain time axis would draw a whole
liquidation as one vertical line. Every chart therefore gives each instant of
virtual time an equal-width *band* and draws the cascade inside it in the
order the messages were delivered: x = band + the fraction of that instant's
deliveries done so far. The sequence diagram uses the same order.

**Sampling.** The recorder samples the true state (clearing's accounts, the
oracle's marks, the fund) after every delivery to an actor that owns that
state, keeping a point only when a value changed, so the charts see states
that never reach a quiet point (an account's equity below its maintenance
margin just before it is liquidated). Amounts become floats here, for
plotting only; the text of the report quotes the exact decimal strings of
the events and of ``summary.json``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Iterable


from sandbox._tools.plain import plain
import argparse
from rich.console import Console
from sandbox._tools.command import EXIT_OK, BadInput, Command


from sandbox._tools.report.accounts import AccountChoice, choose_accounts
from sandbox._tools.report.axis import Bands, fmt_time
from sandbox._tools.report.charts import change_positions, chart_accounts, chart_fund, chart_marks, chart_open_interest, place_labels
from sandbox._tools.report.page import render_html
from sandbox._tools.report.recording import MAX_ACCOUNTS, SEQUENCE_LIMIT, Delivered, Recorder, Recording, category, describe
from sandbox._tools.report.rows import Arrow, Gap, rows_count, summarise_trace
from sandbox._tools.report.saved import ReportLogError, recording_from_log
from sandbox._tools.report.sequence import chart_sequence
from sandbox._tools.report.stepper import step_data, stepper_html

__all__ = [
    "AccountChoice",
    "Bands",
    "category",
    "change_positions",
    "chart_accounts",
    "chart_fund",
    "chart_marks",
    "chart_open_interest",
    "chart_sequence",
    "describe",
    "fmt_time",
    "place_labels",
    "rows_count",
    "Recorder",
    "Recording",
    "Delivered",
    "Arrow",
    "Gap",
    "ReportPathError",
    "ReportLogError",
    "recording_from_log",
    "stepper_html",
    "step_data",
    "check_report_path",
    "summarise_trace",
    "choose_accounts",
    "render_html",
    "write_report",
    "SEQUENCE_LIMIT",
    "MAX_ACCOUNTS",
]


# --- writing ----------------------------------------------------------------------------------


class ReportPathError(ValueError):
    """The report cannot be written where asked."""


def check_report_path(path: str | os.PathLike[str], avoid: Iterable[str | os.PathLike[str]] = ()) -> Path:
    """Check before the run that the report can be written at ``path``; the path.

    The rules are :mod:`sandbox._core.safeio`'s: nothing but a regular file is
    replaced (not a device, FIFO, directory or symlink), nor any of ``avoid``
    (the run's own inputs and outputs), and the folder must take a new file.
    """
    from sandbox._core.safeio import UnsafePath, check_target, probe_writable

    try:
        target = check_target(path, flag="--report", avoid=avoid)
        probe_writable(target.parent, f"--report {path}")
    except UnsafePath as e:
        raise ReportPathError(str(e)) from None
    return target


def write_report(path: str | os.PathLike[str], rec: Recording, limit: int = SEQUENCE_LIMIT,
                 avoid: Iterable[str | os.PathLike[str]] = ()) -> Path:
    """Render and write the report; the file appears whole or not at all (:func:`sandbox._core.safeio.write_atomic`)."""
    from sandbox._core.safeio import UnsafePath, write_atomic

    text = render_html(rec, limit)
    try:
        return write_atomic(path, text, flag="--report", avoid=avoid)
    except UnsafePath as e:
        raise ReportPathError(str(e)) from None


# --- the command ------------------------------------------------------------


def _arguments(report: argparse.ArgumentParser) -> None:
    report.add_argument("events", type=Path, metavar="EVENTS.jsonl", help="the run's DIR/events.jsonl")
    report.add_argument("-o", "--output", type=Path, required=True, metavar="FILE.html", help="the report to write")
    report.add_argument("--scenario", default=None, metavar="FILE.toml",
                        help="the scenario the run used, if it is not the bundled one of that name")


def _report(args: argparse.Namespace, console: Console) -> int:
    inputs = [args.events] + ([args.scenario] if args.scenario is not None else [])
    try:
        check_report_path(args.output, avoid=inputs)
        rec = recording_from_log(args.events, args.scenario)
        write_report(args.output, rec, avoid=inputs)
    except (ReportPathError, ReportLogError) as e:
        raise BadInput(str(e)) from None
    console.print(f"report of {plain(args.events)} written to {plain(args.output)}", markup=False, soft_wrap=True)
    return EXIT_OK


COMMAND = Command("report", "build the HTML report of a run saved with 'sandbox run --out DIR'", _arguments, _report)
