"""``sandbox explore`` and ``sandbox replay``: their arguments, and the commands.

A module of its own, importing nothing heavy, so that parsing any command's
arguments does not load hypothesis: the commands run
:mod:`sandbox._tools.explore_cli`, which checks the values and loads the search.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from rich.console import Console

from sandbox._tools.command import ALLOW_OUTSIDE_HELP, Command, actor_option, positive, seed

__all__ = ["EXPLORE", "REPLAY"]


def _explore_arguments(ex: argparse.ArgumentParser) -> None:
    ex.add_argument("scenario", help="a bundled scenario's name or a path to a .toml file")
    ex.add_argument("--examples", type=positive("--examples"), default=500, help="interleavings to try (default 500)")
    ex.add_argument("--variant", default=None, help="swap in a deliberately wrong variant (see 'sandbox variants')")
    ex.add_argument("--find", default=None, metavar="KIND",
                    help="search for an interleaving in which an event of this kind happens (e.g. adl)")
    ex.add_argument("--out", type=Path, default=Path("."), help="where to write the replay file (default .)")
    ex.add_argument("--seed", type=seed, default=None, help="seed hypothesis's search (default: random)")
    ex.add_argument("--db", type=Path, default=None,
                    help="hypothesis example database directory (default .hypothesis/sandbox-explore)")
    ex.add_argument("--workers", type=positive("--workers"), default=1,
                    help="processes sharing one example database (default 1)")
    _search_options(ex)
    actor_option(ex)
    ex.add_argument("--allow-outside-paths", action="store_true", help=ALLOW_OUTSIDE_HELP)


def _replay_arguments(rp: argparse.ArgumentParser) -> None:
    rp.add_argument("file", type=Path)
    rp.add_argument("--quiet", action="store_true", help="no narration")
    actor_option(rp)


def _search_options(ex: argparse.ArgumentParser) -> None:
    ex.add_argument("--strategy", default="hypothesis", metavar="NAME",
                    help="hypothesis (default: hypothesis draws and shrinks each run's decisions) or pct "
                         "(the PCT scheduler, with a probability bound per run; see docs/search.md)")
    ex.add_argument("--depth", type=positive("--depth"), default=None,
                    help="--strategy pct: the bug depth d to aim at (default 3)")
    ex.add_argument("--outcomes", action="store_true",
                    help="group the final states of the runs tried into classes; a replay file per class")
    ex.add_argument("--max-deliveries", type=positive("--max-deliveries"), default=None, metavar="N",
                    help="budget of one example in deliveries (default: from the scenario's FIFO run); "
                         "a run that exceeds it is a livelock")
    ex.add_argument("--max-time", type=positive("--max-time"), default=None, metavar="SECONDS",
                    help="budget of one example in virtual seconds (default: from the scenario's FIFO run)")


def _explore(args: argparse.Namespace, console: Console) -> int:
    from sandbox._tools.explore_cli import explore_command  # hypothesis is loaded only to search

    return explore_command(args, console)


def _replay(args: argparse.Namespace, console: Console) -> int:
    from sandbox._tools.explore_cli import replay_command

    return replay_command(args, console)


EXPLORE = Command("explore", "search message interleavings for a broken invariant (hypothesis)",
                  _explore_arguments, _explore)
REPLAY = Command("replay", "rerun a replay file written by 'sandbox explore'", _replay_arguments, _replay)
