"""``sandbox list`` and ``sandbox variants``: the bundled scenarios and the bug zoo."""

from __future__ import annotations

import argparse
import re

from rich.console import Console

from sandbox._scenario.load import bundled_scenarios
from sandbox._tools.command import EXIT_OK, Command
from sandbox._tools.plain import plain

__all__ = ["LIST", "VARIANTS"]


def _no_arguments(parser: argparse.ArgumentParser) -> None:
    pass


def _list(args: argparse.Namespace, console: Console) -> int:
    for name, load in bundled_scenarios().items():
        scenario = load()
        first = re.split(r"(?<=[.?!]) ", scenario.description, maxsplit=1)[0].rstrip(".")
        console.print(plain(f"{name:<28} {first}"), markup=False, soft_wrap=True)
    return EXIT_OK


def _variants(args: argparse.Namespace, console: Console) -> int:
    from actors.zoo import VARIANTS

    for v in VARIANTS.values():
        console.print(f"{v.name:<28} {v.scenario:<24} {v.description}", markup=False, soft_wrap=True)
    return EXIT_OK


LIST = Command("list", "list the bundled scenarios", _no_arguments, _list)
VARIANTS = Command("variants", "list the deliberately wrong actor variants (the bug zoo)", _no_arguments, _variants)
