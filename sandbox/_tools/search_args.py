"""The options of ``sandbox explore``'s search (strategy, budget, outcomes), kept out of ``cli.py``.

A module of its own, importing nothing heavy, so that parsing any command's
arguments does not load hypothesis; the values are checked in
:func:`sandbox._tools.explore_cli.explore_command`.
"""

from __future__ import annotations

import argparse
from typing import Any, Callable

__all__ = ["add_search_options"]


def add_search_options(ex: argparse.ArgumentParser, positive: Callable[[str], Any]) -> None:
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
