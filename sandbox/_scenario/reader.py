"""Reading a TOML document key by key: the loader's checks and its one-line errors.

:class:`ScenarioError` names the file, the key and the problem; a
:class:`_Reader` walks one table, checks each key's type and domain, and
suggests the key a misspelt one probably meant. The limits that bound what a
file may ask for live here too (docs/guarantees.md, "Bounded work").
"""

from __future__ import annotations

import difflib
import functools
import re
from contextvars import ContextVar
from pathlib import Path
from typing import Any, Callable, Final, Iterable, TypeVar

import attrs

from sandbox._core.money import (
    UnitError,
    _show,
    parse_units,
)
from sandbox._core.specs import (
    DataFile,
)


# Tables that generate work instead of scripting it (sandbox._scenario.generators).
GENERATOR_KEYS: Final = ("price_paths", "traders", "market_makers")
MAX_TIME_MS: Final = 10**15
# Limits that keep a hostile or broken file from taking tomllib more than a
# moment (measured: tomllib reads 1-2 MB/s, and a dotted key n levels deep
# costs it O(n**2): 20,000 levels take 9 s, 100,000 exhaust memory). A
# scenario's keys are at most two levels deep.
MAX_FILE_BYTES: Final = 256 * 1024
MAX_KEY_DEPTH: Final = 4
# Funding ticks are made lazily, as the run reaches them, but each one is work:
# hourly funding for 11 years at most (docs/guarantees.md, "Bounded work").
MAX_FUNDING_TICKS: Final = 100_000



T = TypeVar("T")


class ScenarioError(Exception):
    """A scenario file is missing, unreadable or invalid. ``str()`` is the whole message."""

    def __init__(self, source: str, key: str, problem: str) -> None:
        self.source, self.key, self.problem = source, key, problem
        where = f"{source}: {key}: " if key else f"{source}: "
        super().__init__(where + problem)


@attrs.define
class Reading:
    """How the files a scenario names are read (see :func:`reading`)."""

    allow_outside_paths: bool = False
    # A replay's embedded data, by name: then the disk is never read.
    embedded: dict[str, str] | None = None
    read: list[DataFile] = attrs.Factory(list)


_READING: ContextVar[Reading | None] = ContextVar("sandbox_scenario_reading", default=None)


def reading() -> Reading:
    """The rules for the data files of the scenario being parsed (confined to its folder by default)."""
    current = _READING.get()
    return current if current is not None else Reading()


# --- parsing helpers ------------------------------------------------------------


class _Reader:
    """Walks one TOML table, checking keys and types, and remembers the key path."""

    def __init__(self, source: str, path: str, table: object) -> None:
        self.source, self.path = source, path
        if not isinstance(table, dict):
            self.fail("", f"expected a table, got {_typename(table)}")
        self.table: dict[str, Any] = table  # type: ignore[assignment]
        self.used: set[str] = set()

    def key(self, name: str) -> str:
        if not _BARE_KEY.fullmatch(name):
            name = _show(name)  # a quoted key may hold anything: newlines, a megabyte
        return f"{self.path}.{name}" if self.path else name

    def fail(self, name: str, problem: str) -> None:
        raise ScenarioError(self.source, self.key(name) if name else self.path, problem)

    def get(self, name: str, required: bool = True) -> Any:
        self.used.add(name)
        if name not in self.table:
            if required:
                # A required key that is missing is most often misspelt: name the misspelling.
                typo = did_you_mean(name, [k for k in self.table if isinstance(k, str) and k not in self.used
                                           and k not in format_keys()])
                if typo is not None:
                    self.fail(typo, f"unknown key (did you mean {name}? it is required)")
                self.fail(name, "is required")
            return None
        return self.table[name]

    def string(
        self, name: str, required: bool = True, *, choices: tuple[str, ...] = (), max_len: int = 200
    ) -> str | None:
        value = self.get(name, required)
        if value is None:
            return None
        if not isinstance(value, str):
            self.fail(name, f"expected a string, got {_typename(value)}")
        if not value or len(value) > max_len:
            self.fail(name, f"must be a non-empty string of at most {max_len} characters")
        if choices and value not in choices:
            self.fail(name, f"must be one of {', '.join(choices)}, got {_show(value)}")
        return value

    def build(self, cls: Callable[..., T], fields: dict[str, Any]) -> T:
        """``cls(**fields)``: a spec whose own validators refuse a value is a ScenarioError at its key.

        The reader checks every key first, with its own wording; the specs'
        validators (sandbox._core.specs) are the second line, for what it lets through.
        """
        try:
            return cls(**fields)
        except (TypeError, ValueError) as e:
            found = re.match(r"'(\w+)'", str(e))
            name = found.group(1) if found else ""
            key = name if name in self.table else name.removesuffix("_ms")
            self.fail(key if key in self.table else "", str(e))
            raise  # unreachable: fail raises

    def units(
        self,
        name: str,
        decimals: int,
        *,
        required: bool = True,
        default: int | None = None,
        allow_negative: bool = False,
        positive: bool = False,
    ) -> int:
        value = self.get(name, required and default is None)
        if value is None:
            assert default is not None
            return default
        try:
            units = parse_units(value, decimals, allow_negative=allow_negative)
        except UnitError as e:
            self.fail(name, str(e))
        if positive and units <= 0:
            self.fail(name, f"must be greater than 0, got {value!r}")
        return units

    def integer(self, name: str, default: int, low: int = 0, high: int = 2**63 - 1) -> int:
        value = self.get(name, False)
        if value is None:
            return default
        if isinstance(value, bool) or not isinstance(value, int):
            self.fail(name, f"expected an integer, got {_typename(value)}")
        if not low <= value <= high:
            bound = "2**63-1" if high == 2**63 - 1 else str(high)
            self.fail(name, f"must be between {low} and {bound}, got {_show(value)}")
        return value

    def boolean(self, name: str, default: bool) -> bool:
        value = self.get(name, False)
        if value is None:
            return default
        if not isinstance(value, bool):
            self.fail(name, f"expected true or false, got {_typename(value)}")
        return value

    def at_most(self, name: str, value: int, limit: int, what: str) -> None:
        if value > limit:
            self.fail(name, f"must be at most {what}")

    def array(self, name: str) -> list[Any]:
        value = self.get(name, False)
        if value is None:
            return []
        if not isinstance(value, list):
            self.fail(name, f"expected an array, got {_typename(value)}")
        return value

    def done(self) -> None:
        unknown = sorted(set(self.table) - self.used)
        if unknown:
            close = did_you_mean(unknown[0], sorted(self.used - set(self.table)))
            self.fail(unknown[0], "unknown key" + (f" (did you mean {close}?)" if close else ""))


@functools.cache
def format_keys() -> frozenset[str]:
    """Every key name the scenario format reads, in any table: the names the readers of this package ask for.

    A missing required key is reported as a misspelling of a key of its table
    only when that key is unknown here: ``size`` is not a misspelt ``side``,
    it is the next key the orders table reads. Taken from the source of the
    modules that read scenarios (each ``reader.method("name", ...)`` call),
    so a new key needs no list to be kept up to date; a name that is also
    read elsewhere (an event's field) only makes a suggestion less likely.
    """
    call = re.compile(r'\.(?:get|string|units|integer|array|boolean|fraction|count|distribution|at_most)'
                      r'\(\s*"([A-Za-z_][A-Za-z0-9_]*)"')
    names: set[str] = set()
    for module in Path(__file__).parent.glob("*.py"):
        names.update(call.findall(module.read_text(encoding="utf-8")))
    return frozenset(names)


def did_you_mean(word: str, candidates: Iterable[str]) -> str | None:
    """The candidate ``word`` is most likely a misspelling of, if any is close (difflib's ratio >= 0.75)."""
    close = difflib.get_close_matches(word, list(candidates), n=1, cutoff=0.75)
    return close[0] if close else None


_BARE_KEY: Final = re.compile(r"[A-Za-z0-9_-]{1,40}")


def _typename(value: object) -> str:
    return {
        dict: "a table",
        list: "an array",
        str: "a string",
        int: "an integer",
        float: "a float",
        bool: "a boolean",
    }.get(type(value), type(value).__name__)
