"""What every subcommand shares: the exit codes, bad input, the option types, the --out folder.

Each tool owns its subcommand as a :class:`Command` (its name, help, its
arguments and the function that runs it); :mod:`sandbox.cli` only puts them
together. A problem with the command line or an input is :class:`BadInput`,
reported as one line on stderr and exit status 2.
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path
from typing import Any, Callable, Final, Sequence

import attrs
from rich.console import Console

from sandbox._core.safeio import OutDir
from sandbox._tools.plain import plain

__all__ = [
    "Command", "BadInput", "Parser", "EXIT_CODES", "EXIT_OK", "EXIT_VIOLATION", "EXIT_BAD_INPUT", "EXIT_CRASH",
    "EXIT_STOPPED", "EXIT_INTERRUPTED", "ALLOW_OUTSIDE_HELP", "positive", "seed", "actor_option", "load_actors",
    "prepare_out", "open_out",
]

# The one definition of the exit codes (docs/reference/exit-codes.md); every command imports them from here.
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
ALLOW_OUTSIDE_HELP: Final = ("let the scenario name files outside its own folder (a stochastic csv); "
                             "off by default, so a downloaded scenario reads nothing else")


@attrs.frozen
class Command:
    """One subcommand: ``sandbox NAME``, its one-line ``help``, ``arguments(parser)`` adding its
    options, and ``run(args, console)`` returning the exit status."""

    name: str
    help: str
    arguments: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace, Console], int]
    description: str | None = None


class BadInput(Exception):
    """A command-line problem that is reported as one line and exit status 2."""


class Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, exit 2, no traceback
        choice = re.search(r"invalid choice: '((?:[^'\\]|\\.)*)' \(choose from (.*)\)$", message)
        if choice is not None:  # a mistyped subcommand or option value: say which was probably meant
            from sandbox._scenario.reader import did_you_mean

            close = did_you_mean(choice.group(1), re.findall(r"'([^']*)'", choice.group(2)))
            if close is not None:
                message += f"; did you mean {close!r}?"
        elif message.startswith("unrecognized arguments: "):  # a mistyped option of any subcommand
            from sandbox._scenario.reader import did_you_mean

            options = {o for parser in self._all_parsers() for a in parser._actions for o in a.option_strings}
            typo = next((t for t in message.split()[2:] if t.startswith("--")), None)
            close = did_you_mean(typo.split("=", 1)[0], options) if typo else None
            if close is not None:
                message += f"; did you mean {close}?"
        self.exit(EXIT_BAD_INPUT, f"sandbox: {plain(message)} (see 'sandbox --help')\n")

    def _all_parsers(self) -> list[argparse.ArgumentParser]:
        subs = [a for a in self._actions if isinstance(a, argparse._SubParsersAction)]
        return [self, *(p for a in subs for p in a.choices.values())]


def positive(flag: str) -> Any:
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{flag} must be a whole number, got {text!r}") from None
        if not 1 <= value <= 10**7:
            raise argparse.ArgumentTypeError(f"{flag} must be between 1 and 10000000, got {value}")
        return value

    return parse


def seed(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"--seed must be a whole number, got {text!r}") from None
    if not 0 <= value < 2**63:
        raise argparse.ArgumentTypeError(f"--seed must be between 0 and 2**63-1, got {value}")
    return value


def actor_option(p: argparse.ArgumentParser) -> None:
    p.add_argument("--actor", dest="actors", action="append", default=[], metavar="ROLE=module:Class",
                   help="replace a role's actor with your subclass (module:Class or path/to/file.py:Class); "
                        "this imports and runs your code (repeat for several roles)")


def load_actors(texts: list[str], base: Any = None) -> tuple[Any, tuple[tuple[str, str], ...]]:
    """The --actor classes (over a variant's), or BadInput naming the bad reference."""
    from sandbox._tools.actorref import ActorRefError, load_actor_refs

    try:
        return load_actor_refs(texts, base)
    except ActorRefError as e:
        raise BadInput(str(e)) from None


def prepare_out(out: Path) -> None:
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
