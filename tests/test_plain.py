"""User-supplied strings are shown as plain text: never markup, never control codes, bidi or invisible characters.

A scenario file is something a user may have downloaded: its name, account
ids and market symbols reach the terminal, the report and error messages.
Each case below failed before :mod:`sandbox._tools.plain`: the name ``x[/nope]``
crashed the run with a rich MarkupError, ``[link=...]`` made a hyperlink, raw
ESC sequences reached the terminal, U+202E reversed the timeline's text and a
``$...$`` account id crashed the report in matplotlib's mathtext.
"""

from __future__ import annotations

import io
import re
import subprocess
import sys
from pathlib import Path

import pytest
from rich.console import Console

from sandbox._tools.narrate import Narrator, narrate
from sandbox._tools.plain import plain, plain_text

REPO = Path(__file__).resolve().parent.parent

NAME = "x[/nope] [link=https://evil.example/]click[/link] \x1b[2J\u202egnp.exe"
ALICE = "al\u202eice$x^2$"
MM = "m\u200bm"
PUNK = "PU\x1b]0;pwned\x07NK"
BOB = "bo$\\nope{b$"  # not valid mathtext: matplotlib raised ValueError drawing it


def toml_string(text: str) -> str:
    """A TOML basic string of ``text``, every character outside printable ASCII as a \\u escape."""
    return '"' + "".join(c if 32 <= ord(c) < 127 and c not in '"\\' else f"\\u{ord(c):04x}" for c in text) + '"'


@pytest.fixture(scope="module")
def hostile(tmp_path_factory: pytest.TempPathFactory) -> Path:
    text = (REPO / "scenarios" / "textbook.toml").read_text(encoding="utf-8")
    text = text.replace('name = "textbook"', f"name = {toml_string(NAME)}")
    text = text.replace('"alice"', toml_string(ALICE)).replace('"mm"', toml_string(MM))
    text = text.replace('"bob"', toml_string(BOB))
    text = text.replace('"PUNK"', toml_string(PUNK))
    path = tmp_path_factory.mktemp("hostile") / "hostile.toml"
    path.write_text(text, encoding="utf-8")
    return path


def cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "sandbox", *args], capture_output=True, text=True, timeout=300,
                          cwd=cwd)


# --- the helper -----------------------------------------------------------------------------


@pytest.mark.parametrize(("raw", "shown"), [
    ("\x1b[2J", "\\x1b[2J"),
    ("a\x07b\x00c\x7fd\x9be", "a\\x07b\\x00c\\x7fd\\x9be"),
    ("ali\u202ece", "ali\\u202ece"),
    ("\u2066x\u2069 \u202a\u202b\u202c\u202d", "\\u2066x\\u2069 \\u202a\\u202b\\u202c\\u202d"),
    ("m\u200bm\u200c\u200d\u2060\ufeff", "m\\u200bm\\u200c\\u200d\\u2060\\ufeff"),
    ("line\nbreak\r\ttab", "line\\x0abreak\\x0d\\x09tab"),
    ("naïve Ελλάδα 東京 $x$ [b]", "naïve Ελλάδα 東京 $x$ [b]"),  # printable text is left alone
])
def test_plain_escapes_what_cannot_be_seen(raw, shown):
    assert plain(raw) == shown
    assert plain(plain(raw)) == shown  # idempotent: escaping twice shows the same


def test_plain_can_keep_line_breaks_of_a_description():
    assert plain("one\ntwo\x1b", newlines=True) == "one\ntwo\\x1b"


def test_plain_text_is_never_markup():
    out = io.StringIO()
    Console(file=out, width=200).print(plain_text("[link=https://evil.example/]click[/link] x[/nope]"))
    assert out.getvalue() == "[link=https://evil.example/]click[/link] x[/nope]\n"


# --- the narration --------------------------------------------------------------------------


def test_narration_escapes_every_user_string():
    event = {"kind": "trade", "time": 1, "actor": f"book:{PUNK}", "market": PUNK, "price": "93", "size": "1",
             "buyer": MM, "seller": ALICE, "taker_kind": "trader"}
    assert narrate(event) == ("trade: 1 PU\\x1b]0;pwned\\x07NK at 93 ETH, m\\u200bm buys from "
                              "al\\u202eice$x^2$")
    out = io.StringIO()
    Narrator(Console(file=out, width=200, force_terminal=True), wrap=False)(event)
    text = out.getvalue()
    assert "\u202e" not in text and "\u200b" not in text and "\x07" not in text
    assert "]0;pwned" in text and "\x1b]" not in text  # only rich's own colour codes are escapes
    shown = re.sub(r"\x1b\[[0-9;]*m", "", text)  # rich's own styling (SGR) removed: the text as seen
    assert "\x1b" not in shown
    assert "book:PU\\x1b]0;pwned\\x07NK trade:" in shown


def test_a_hostile_scenario_runs_and_its_strings_are_shown_escaped(hostile, tmp_path):
    report = tmp_path / "r.html"
    proc = cli("run", str(hostile), "--report", str(report))
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""  # no traceback, no matplotlib warning about missing glyphs
    out = proc.stdout
    for raw in ("\x1b", "\x07", "\u202e", "\u200b"):
        assert raw not in out
    # The name is printed as it is written: not markup (no crash on [/nope], no hyperlink), escapes visible.
    assert "x[/nope] [link=https://evil.example/]click[/link] \\x1b[2J\\u202egnp.exe" in out
    assert "al\\u202eice$x^2$'s equity 4 ETH <= maintenance margin 4.7 ETH" in out
    assert "book:PU\\x1b]0;pwned\\x07NK trade: 1 PU\\x1b]0;pwned\\x07NK at 93 ETH, m\\u200bm buys from al\\u202eice$x^2$" in out

    # The report: written (mathtext off: "$x^2$" is text), with the same visible escapes, in HTML and SVG.
    page = report.read_text(encoding="utf-8")
    for raw in ("\x1b", "\x07", "\u202e", "\u200b"):
        assert raw not in page
    assert "al\\u202eice$x^2$" in page and "PU\\x1b]0;pwned\\x07NK" in page
    assert "bo$\\nope{b$: equity" in page  # the equity chart's title, drawn as written
    assert "https://evil.example" not in page.replace("[link=https://evil.example/]", "")
    assert 'href="https://evil' not in page


def test_a_hostile_name_in_a_terminal_is_plain_text(hostile):
    # Forced colour: rich's own styling codes appear, but no markup of the name is obeyed.
    proc = subprocess.run([sys.executable, "-c", (
        "import sys; from sandbox.cli import main; from rich.console import Console; import sandbox.cli as c;"
        "c.Console = lambda **k: Console(force_terminal=True, width=120, **k); sys.exit(main(sys.argv[1:]))"),
        "run", str(hostile)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "\x1b]8;" not in proc.stdout  # no OSC 8 hyperlink
    assert "\x1b[2J" not in proc.stdout and "\u202e" not in proc.stdout
    assert "[link=https://evil.example/]click[/link]" in proc.stdout


def test_error_messages_escape_the_name_they_quote(tmp_path):
    proc = cli("run", "no\x1b[2Jsuch\u202e")
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        "sandbox: no\\x1b[2Jsuch\\u202e: no such file, and no bundled scenario of that name (see 'sandbox list')"]
    proc = cli("frob\x1b[2J")
    assert proc.returncode == 2 and "\x1b" not in proc.stderr and "frob\\x1b[2J" in proc.stderr
