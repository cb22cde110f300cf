"""The ``sandbox`` command: the subcommands of the tools, put together.

Each tool owns its subcommand (a :class:`~sandbox._tools.command.Command`:
its name, help, arguments and the function that runs it); this module only
builds the parser in the order ``sandbox --help`` lists them and turns bad
input into one line on stderr.

Exit status, the same for every subcommand: :data:`~sandbox._tools.command.EXIT_CODES`
is the one definition (``sandbox --help`` prints it; ``docs/reference/exit-codes.md``
explains it command by command): 0 done, nothing wrong; 1 something wrong was
found (an invariant violated, a finding, a replay that differs, a bad log
line); 2 bad input, one line on stderr and nothing run or written; 3 an actor
crashed; 4 the run reached its work limits and was stopped (docs/guarantees.md);
130 interrupted.

Every command that writes does so through :mod:`sandbox._core.safeio` (docs/guarantees.md, "Safe writes").
"""

from __future__ import annotations

import argparse
import sys
from typing import Final, Sequence

from rich.console import Console

from sandbox._core.safeio import UnsafePath
from sandbox._scenario.reader import ScenarioError
from sandbox._tools import bench, catalog, checklog, explore_args, report, run, soak, sweep
from sandbox._tools.command import EXIT_BAD_INPUT, EXIT_CODES, BadInput, Command, Parser
from sandbox._tools.plain import plain

__all__ = ["main", "COMMANDS"]

# In the order of ``sandbox --help``.
COMMANDS: Final[tuple[Command, ...]] = (
    run.RUN, report.COMMAND, catalog.LIST, explore_args.EXPLORE, explore_args.REPLAY, catalog.VARIANTS,
    checklog.COMMAND, soak.COMMAND, bench.COMMAND, sweep.COMMAND,
)


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("perp-risk-sandbox")
    except PackageNotFoundError:  # run from a source tree that was never installed
        return "unknown"


def _parser() -> argparse.ArgumentParser:
    p = Parser(prog="sandbox", description="A sandbox of a perpetual-futures exchange's risk machinery.",
               epilog="exit status: " + "; ".join(f"{code} {what}" for code, what in EXIT_CODES.items()))
    p.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    sub = p.add_subparsers(dest="command", required=True, parser_class=Parser)
    for command in COMMANDS:
        extra = {"description": command.description} if command.description is not None else {}
        command.arguments(sub.add_parser(command.name, help=command.help, **extra))
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    console = Console(highlight=False)
    command = next(c for c in COMMANDS if c.name == args.command)
    try:
        return command.run(args, console)
    except (ScenarioError, BadInput, UnsafePath) as e:
        print(f"sandbox: {plain(e)}", file=sys.stderr)
        return EXIT_BAD_INPUT
