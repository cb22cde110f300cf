"""Make the screenshots of docs/narration.md from the real program, so they can be made again after a change.

    python -m tests.docshots [DOCS_DIR]

* ``narration-80col-light.png``: ``sandbox run demo --theme light --width 80``
  as a light terminal shows it: the CLI's own output, recorded by rich
  (``Console(record=True)``), exported as SVG with a light terminal palette
  and photographed by headless Chromium;
* ``report-stepping.png``: the demo's report in Chromium, stepped with real
  clicks to the delivery of SurplusTransferred (the fund receives alice's
  surplus).
"""

from __future__ import annotations

import io
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.terminal_theme import TerminalTheme

from .chromium import Chromium

# A light terminal: black on white, with the usual 16-colour palette (the
# narration's themes use fixed colours, so only the background matters).
LIGHT_TERMINAL: TerminalTheme = TerminalTheme(
    (255, 255, 255), (30, 30, 30),
    [(0, 0, 0), (205, 0, 0), (0, 160, 0), (160, 130, 0), (0, 0, 238), (205, 0, 205), (0, 160, 160), (229, 229, 229)],
    [(127, 127, 127), (255, 0, 0), (0, 200, 0), (200, 170, 0), (92, 92, 255), (255, 0, 255), (0, 200, 200),
     (255, 255, 255)],
)

# The stepping screenshot: "next" is clicked until the message shown is this one (the fund's balance
# goes from 5 to 8).
STEPPING_TO = "SurplusTransferred"


def _quantize(path: Path) -> None:
    """A palette of 256 colours: a third of the size, and text stays sharp."""
    try:
        from PIL import Image
    except ImportError:
        return
    image = Image.open(path).convert("RGB")
    image.quantize(256, method=Image.Quantize.FASTOCTREE, dither=Image.Dither.NONE).save(path, optimize=True)


def narration_svg() -> str:
    """The CLI's output for the demo at 80 columns on the light theme, as rich exports it."""
    import sandbox.cli as cli

    recorded = Console(record=True, width=80, force_terminal=True, color_system="truecolor", file=io.StringIO())

    def console(**kwargs: Any) -> Console:  # the one main() creates
        return recorded

    original = cli.Console
    cli.Console = console  # type: ignore[assignment,misc]
    try:
        status = cli.main(["run", "demo", "--theme", "light", "--width", "80"])
    finally:
        cli.Console = original  # type: ignore[misc]
    if status != 0:
        raise RuntimeError(f"sandbox run demo exited {status}")
    return recorded.export_svg(title="sandbox run demo --theme light --width 80", theme=LIGHT_TERMINAL)


def shoot_svg(svg: str, out: Path, work: Path) -> None:
    page = work / "narration.svg"
    page.write_text(svg, encoding="utf-8")
    width = 1000
    with Chromium(width=width, height=800) as browser:
        html = work / "narration.html"
        html.write_text('<!DOCTYPE html><html><body style="margin:0;background:#fff">'
                        f'<img src="{page.name}" style="width:{width}px;display:block"></body></html>', encoding="utf-8")
        load = browser.load(html.as_uri())
        if load.errors:
            raise RuntimeError("\n".join(load.errors))
        browser.screenshot(out)
    _quantize(out)


def shoot_stepping(out: Path, work: Path) -> None:
    report = work / "demo.html"
    # Made by the command, as a user makes it.
    subprocess.run([sys.executable, "-m", "sandbox", "run", "demo", "--quiet", "--report", str(report)],
                   check=True, stdout=subprocess.DEVNULL)
    with Chromium(width=1400, height=800) as browser:
        load = browser.load(report.as_uri())
        if load.errors:
            raise RuntimeError("\n".join(load.errors))
        steps = int(browser.evaluate("document.getElementById('step-slider').max")) + 1
        for _ in range(steps):
            if STEPPING_TO in browser.text("#step-head"):
                break
            browser.click("#step-next")
        else:
            raise RuntimeError(f"no step delivers {STEPPING_TO}")
        top = int(browser.evaluate("scrollY"))
        browser.screenshot(out, full_page=False, top=top)
    _quantize(out)


def main(argv: list[str]) -> int:
    docs = Path(argv[0]) if argv else Path(__file__).resolve().parent.parent / "docs"
    with tempfile.TemporaryDirectory(prefix="docshots-") as tmp:
        work = Path(tmp)
        shoot_svg(narration_svg(), docs / "narration-80col-light.png", work)
        shoot_stepping(docs / "report-stepping.png", work)
    for name in ("narration-80col-light.png", "report-stepping.png"):
        print(f"{docs / name}: {(docs / name).stat().st_size:,} bytes")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
