"""Show a user-supplied string as plain, visible text: one helper for the terminal, the report and errors.

A scenario is a file a user may have downloaded: its name, description,
account ids, market symbols and order ids can hold anything TOML can, which
includes ESC (cursor moves, line erase, a window title), bidi overrides that
make ``alice`` read as ``ecila`` or reorder a whole line of the timeline, and
zero-width characters that make two different ids look the same. Every place
that shows such a string passes it through :func:`plain`, which replaces each
of those characters by a visible escape (``\\x1b``, ``\\u202e``), so what is
shown is exactly what is in the file.

Rich markup (``[bold]``, ``[link=...]``) is a separate hazard with a separate
cure: the narration and the CLI print user text as :class:`rich.text.Text`
or with ``markup=False``, never inside a markup string; :func:`plain_text`
makes such a Text.
"""

from __future__ import annotations

import re
from typing import Final

from rich.text import Text

__all__ = ["plain", "plain_text", "INVISIBLE"]

# C0 and C1 controls and DEL; the line and paragraph separators; the bidi
# embeddings, overrides, isolates and marks (U+061C, U+200E/F, U+202A-202E,
# U+2066-2069); zero-width and invisible formatting characters (U+180E,
# U+200B-200D, U+2060-2064, U+FEFF).
INVISIBLE: Final = re.compile(
    "[\x00-\x1f\x7f-\x9f\u061c\u180e\u200b-\u200f\u2028\u2029\u202a-\u202e\u2060-\u2064\u2066-\u2069\ufeff]"
)
_INVISIBLE_BUT_NEWLINE: Final = re.compile(INVISIBLE.pattern.replace("\x00-\x1f", "\x00-\x09\x0b-\x1f"))


def _escape(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def plain(text: object, *, newlines: bool = False) -> str:
    """``str(text)`` with every control, bidi and zero-width character shown as an escape.

    ``newlines=True`` keeps line feeds (a scenario's description may be
    several lines); everything else invisible is still escaped. Printable
    text, accents and non-Latin scripts are left as they are. Escaping is
    idempotent: the escapes themselves are printable ASCII.
    """
    pattern = _INVISIBLE_BUT_NEWLINE if newlines else INVISIBLE
    return pattern.sub(_escape, str(text))


def plain_text(text: object, style: str = "", *, newlines: bool = False) -> Text:
    """A rich Text of :func:`plain` ``(text)``: printed as it is, never parsed as markup."""
    return Text(plain(text, newlines=newlines), style=style)
