"""Loading a scenario: a file, a bundled name or a document, to a :class:`Scenario`.

The one pipeline: read the bytes (bounded, regular files only), parse the
TOML, expand the generators of a stochastic scenario (a pure step on the
document, :mod:`sandbox._scenario.generators`), then build the specs
(:mod:`sandbox._scenario.parse`).
"""

from __future__ import annotations

import hashlib
import importlib.resources
import re
import tomllib
from pathlib import Path
from typing import Any, Callable, Final

import attrs

from sandbox._core.money import (
    _show,
)
from sandbox._core.specs import (
    Scenario,
)

from sandbox._scenario.reader import (
    GENERATOR_KEYS,
    MAX_FILE_BYTES,
    MAX_KEY_DEPTH,
    Reading,
    ScenarioError,
    _READING,
    did_you_mean,
)
from sandbox._scenario.generators import expand
from sandbox._scenario.parse import parse_document


def parse_scenario(data: dict[str, Any], source: str = "<scenario>", digest: str = "") -> Scenario:
    """Validate a parsed TOML document and build a :class:`Scenario`.

    A stochastic document's generators are expanded first (a pure step on
    the document), then the whole is parsed as an ordinary one.
    """
    if isinstance(data, dict) and any(key in data for key in GENERATOR_KEYS):
        doc, template = expand(data, source, digest)
        return attrs.evolve(parse_document(doc, source, digest), template=template, regenerate=for_seed)
    return parse_document(data, source, digest)


def load_scenario(path: str | Path, *, allow_outside_paths: bool = False) -> Scenario:
    """Read and validate a scenario file. Raises :class:`ScenarioError` on any problem.

    Only a regular file of at most :data:`MAX_FILE_BYTES` is read (a FIFO or
    device is refused at once). The files it names (a stochastic ``csv``)
    must be inside its folder unless ``allow_outside_paths``.
    """
    from sandbox._core.safeio import UnsafePath, read_regular

    source = str(path)
    try:
        raw = read_regular(path, MAX_FILE_BYTES, "a scenario file")
    except UnsafePath as e:
        raise ScenarioError(source, "", e.problem) from None
    scenario = _parse_bytes(raw, source, allow_outside_paths=allow_outside_paths)
    return attrs.evolve(scenario, read_from=(source, *(d.path for d in scenario.data_files if d.path)))


def _parse_bytes(raw: bytes, source: str, *, allow_outside_paths: bool = False,
                 embedded: dict[str, str] | None = None) -> Scenario:
    """Parse a scenario's bytes; ``embedded``: its data files come from here (a replay), not the disk."""
    rules = Reading(allow_outside_paths, embedded)
    token = _READING.set(rules)
    try:
        scenario = _parse_text(raw, source)
    finally:
        _READING.reset(token)
    return attrs.evolve(scenario, data_files=tuple(rules.read))


def _parse_text(raw: bytes, source: str) -> Scenario:
    if len(raw) > MAX_FILE_BYTES:
        raise ScenarioError(source, "", f"is larger than {MAX_FILE_BYTES // 1024} KiB, too large for a scenario")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ScenarioError(source, "", f"is not UTF-8 text (byte {e.start})") from None
    if _has_deep_key(text):
        raise ScenarioError(source, "", f"has a key nested more than {MAX_KEY_DEPTH} levels deep")
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise ScenarioError(source, "", f"is not valid TOML ({e})") from None
    except RecursionError:
        raise ScenarioError(source, "", "is not valid TOML (nested too deeply)") from None
    except ValueError:
        # tomllib lets int() refuse a literal of more than sys.get_int_max_str_digits() digits.
        raise ScenarioError(source, "", "is not valid TOML (a number with too many digits)") from None
    return attrs.evolve(parse_scenario(data, source, hashlib.sha256(raw).hexdigest()), text=text)


# Strings and comments, so that the dots inside them are not taken for key separators.
_STRINGS_AND_COMMENTS: Final = re.compile(
    r'"""(?:[^"\\]|\\[\s\S]|"(?!""))*"{3,5}'  # multi-line basic string
    r"|'''[\s\S]*?'{3,5}"  # multi-line literal string
    r'|"(?:[^"\\\n]|\\.)*"'  # basic string
    r"|'[^'\n]*'"  # literal string
    r"|#[^\n]*"  # comment
)
# A key of more than MAX_KEY_DEPTH dotted parts, once strings are blanked.
# Starting only at the start of a word and never backtracking into one, so the
# scan stays linear even over a line of 100,000 digits.
_DEEP_KEY: Final = re.compile(
    r"(?<![\w\"'-])[\w\"'-]++(?:[ \t]*+\.[ \t]*+[\w\"'-]++){%d}" % MAX_KEY_DEPTH
)


def _has_deep_key(text: str) -> bool:
    """Whether a dotted key (or table header) is deeper than MAX_KEY_DEPTH.

    A linear scan before tomllib, whose time is quadratic in a key's depth.
    Outside strings and comments a run of dots can only be a key (a number
    has one dot at most), so this refuses no file that is a scenario.
    """
    return _DEEP_KEY.search(_STRINGS_AND_COMMENTS.sub('""', text)) is not None


def _bundled_dir() -> Any:
    return importlib.resources.files("scenarios")


def bundled_scenarios() -> dict[str, Callable[[], Scenario]]:
    """Bundled scenario names mapped to loaders, sorted by name."""
    found: dict[str, Callable[[], Scenario]] = {}
    for entry in sorted(_bundled_dir().iterdir(), key=lambda e: e.name):
        if entry.name.endswith(".toml"):
            found[entry.name[: -len(".toml")]] = (
                lambda e=entry: _parse_bytes(e.read_bytes(), f"scenarios/{e.name}")
            )
    return found


def resolve_scenario(name_or_path: str, *, allow_outside_paths: bool = False) -> Scenario:
    """A bundled scenario's name, or a path to a scenario file.

    A bundled name wins unless the argument is a path to a *file*: a folder of
    the same name in the working directory (an output folder, say) does not
    hide the bundled scenario. The file is read as :func:`load_scenario` reads it.
    """
    bundled = bundled_scenarios()
    try:
        exists = Path(name_or_path).exists()
        is_file = exists and Path(name_or_path).is_file()
    except (OSError, ValueError) as e:  # e.g. a name too long for the file system
        reason = getattr(e, "strerror", None) or e
        raise ScenarioError(_show(name_or_path, 80), "", f"cannot be read ({reason})") from None
    if name_or_path in bundled and not is_file:
        return bundled[name_or_path]()
    if not name_or_path.endswith(".toml") and not exists:
        close = did_you_mean(name_or_path, bundled)
        raise ScenarioError(
            name_or_path, "", "no such file, and no bundled scenario of that name "
            + (f"(did you mean {close}? see 'sandbox list')" if close else "(see 'sandbox list')")
        )
    return load_scenario(name_or_path, allow_outside_paths=allow_outside_paths)


def for_seed(scenario: Scenario, seed: int) -> Scenario:
    """``scenario`` as run with ``seed``: a stochastic one is generated again from that seed."""
    if scenario.template is None or seed == scenario.seed:
        return scenario
    return attrs.evolve(parse_scenario({**scenario.template, "seed": seed}, scenario.source, scenario.digest),
                        text=scenario.text, data_files=scenario.data_files, read_from=scenario.read_from)
