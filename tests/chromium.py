"""Drive Debian's headless Chromium over the DevTools protocol, through a pipe.

No browser download, no driver, no websocket library and no port: Chromium
is started with ``--remote-debugging-pipe`` and reads DevTools commands from
file descriptor 3 and writes replies and events to descriptor 4, each message
a JSON object ended by a NUL byte. That is all a test needs to load a page,
collect every console message, exception and network request, measure
elements, click and press keys as a person would (:meth:`Chromium.click`,
:meth:`Chromium.press`), read what the page shows and take a screenshot.

Which browser: ``$CHROMIUM`` if it names an executable, else the first of
``/usr/bin/chromium``, ``/usr/bin/chromium-browser``, ``/usr/bin/google-chrome``
and ``chromium`` on ``PATH`` (:func:`find_chromium`). With none, the browser
tests skip with a one-line reason, unless ``SANDBOX_REQUIRE_BROWSER=1``
(``.ci/run`` sets it after installing Chromium): then they fail
(:func:`require_chromium`). See docs/how-to/run-the-tests.md.

Also a command, to refresh the documentation's screenshots::

    python -m tests.chromium screenshot PAGE.html|URL docs/report.png [MAX_HEIGHT [WIDTH]]
"""

from __future__ import annotations

import base64
import json
import os
import select
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

__all__ = ["Chromium", "PageLoad", "find_chromium", "require_chromium", "BrowserError", "REQUIRE_BROWSER"]

CANDIDATES = ("/usr/bin/chromium", "/usr/bin/chromium-browser", "/usr/bin/google-chrome")

FLAGS = (
    "--headless",
    "--no-sandbox",  # CI runs as root
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--no-default-browser-check",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-extensions",
    "--disable-dev-shm-usage",
    "--hide-scrollbars",
    "--mute-audio",
    "--remote-debugging-pipe",
)


# Set to 1 where a browser must be there (CI): a missing one fails the browser tests instead of skipping them.
REQUIRE_BROWSER = "SANDBOX_REQUIRE_BROWSER"


class BrowserError(RuntimeError):
    pass


def find_chromium() -> str | None:
    for path in (os.environ.get("CHROMIUM"), *CANDIDATES, shutil.which("chromium")):
        if path and os.access(path, os.X_OK):
            return path
    return None


def require_chromium() -> str:
    """The browser for a test; without one, skip the test (or fail it under ``SANDBOX_REQUIRE_BROWSER=1``)."""
    import pytest

    path = find_chromium()
    if path is not None:
        return path
    where = f"$CHROMIUM={os.environ['CHROMIUM']!r} is not executable and no" if os.environ.get("CHROMIUM") else "no"
    reason = (f"{where} Chromium found (set CHROMIUM=/path/to/chromium, or apt-get install chromium)")
    if os.environ.get(REQUIRE_BROWSER) == "1":
        pytest.fail(f"{REQUIRE_BROWSER}=1 but {reason}", pytrace=False)
    pytest.skip(reason)


class PageLoad:
    """What happened while a page loaded: console messages, exceptions, requests."""

    def __init__(self) -> None:
        self.console: list[tuple[str, str]] = []  # (level, text)
        self.exceptions: list[str] = []
        self.log_entries: list[tuple[str, str, str]] = []  # (level, source, text)
        self.requests: list[str] = []

    @property
    def errors(self) -> list[str]:
        out = [f"console.{level}: {text}" for level, text in self.console if level in ("error", "assert")]
        out += [f"exception: {text}" for text in self.exceptions]
        out += [f"{source} {level}: {text}" for level, source, text in self.log_entries if level == "error"]
        return out


class Chromium:
    """One headless Chromium with one page; use as a context manager."""

    def __init__(self, executable: str | None = None, width: int = 1280, height: int = 900,
                 timeout: float = 30.0) -> None:
        self.executable = executable or find_chromium()
        if self.executable is None:
            raise BrowserError("no Chromium found (apt-get install chromium)")
        self.width, self.height, self.timeout = width, height, timeout
        self._next_id = 0
        self._buffer = b""
        self._events: list[dict[str, Any]] = []
        self.session: str | None = None

    # -- process and pipe -------------------------------------------------------------

    def __enter__(self) -> Chromium:
        self._profile = tempfile.TemporaryDirectory(prefix="chromium-profile-")
        to_chrome_r, self._to_chrome = os.pipe()
        self._from_chrome, from_chrome_w = os.pipe()

        def wire() -> None:  # in the child: the pipe ends become fds 3 and 4
            a, b = os.dup(to_chrome_r), os.dup(from_chrome_w)
            os.dup2(a, 3)
            os.dup2(b, 4)
            # dup2 onto itself (os.dup returned 3 or 4, free in this process) leaves close-on-exec set.
            os.set_inheritable(3, True)
            os.set_inheritable(4, True)

        self._stderr = tempfile.TemporaryFile()
        self.proc = subprocess.Popen(
            [self.executable, *FLAGS, f"--user-data-dir={self._profile.name}",
             f"--window-size={self.width},{self.height}", "about:blank"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=self._stderr,
            # Not pass_fds=(3, 4): Popen marks those inheritable before wire() runs, which fails when fd 3 or 4
            # is not open in this process (EBADF). The pipes are not inheritable (PEP 446), so Chromium gets
            # fds 3 and 4 and what this process opened inheritable on purpose, nothing else of ours.
            close_fds=False, preexec_fn=wire,
        )
        os.close(to_chrome_r)
        os.close(from_chrome_w)
        try:
            target = self.call("Target.createTarget", url="about:blank")["targetId"]
            self.session = self.call("Target.attachToTarget", targetId=target, flatten=True)["sessionId"]
            for domain in ("Page", "Runtime", "Log", "Network"):
                self.call(f"{domain}.enable")
            self.call("Emulation.setDeviceMetricsOverride", width=self.width, height=self.height,
                      deviceScaleFactor=1, mobile=False)
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            if self.proc.poll() is None:
                try:
                    self._send("Browser.close", {}, session=False)
                    self.proc.wait(timeout=5)
                except (OSError, subprocess.TimeoutExpired, BrowserError):
                    self.proc.kill()
                    self.proc.wait()
        finally:
            for fd in (self._to_chrome, self._from_chrome):
                try:
                    os.close(fd)
                except OSError:
                    pass
            self._stderr.close()
            self._profile.cleanup()

    def stderr(self) -> str:
        self._stderr.seek(0)
        return self._stderr.read().decode(errors="replace")

    def _send(self, method: str, params: dict[str, Any], session: bool = True) -> int:
        self._next_id += 1
        message: dict[str, Any] = {"id": self._next_id, "method": method, "params": params}
        if session and self.session:
            message["sessionId"] = self.session
        data = json.dumps(message).encode() + b"\0"
        while data:
            written = os.write(self._to_chrome, data)
            data = data[written:]
        return self._next_id

    def _read(self, deadline: float) -> dict[str, Any]:
        while b"\0" not in self._buffer:
            left = deadline - time.monotonic()
            if left <= 0:
                raise BrowserError("Chromium did not answer in time")
            ready, _, _ = select.select([self._from_chrome], [], [], left)
            if not ready:
                continue
            chunk = os.read(self._from_chrome, 1 << 20)
            if not chunk:
                raise BrowserError(f"Chromium closed the pipe; its stderr:\n{self.stderr()[-3000:]}")
            self._buffer += chunk
        raw, _, self._buffer = self._buffer.partition(b"\0")
        return json.loads(raw)

    def call(self, method: str, **params: Any) -> dict[str, Any]:
        """Send a command and return its result; events that arrive meanwhile are kept."""
        wanted = self._send(method, params, session=not method.startswith(("Target.", "Browser.")))
        deadline = time.monotonic() + self.timeout
        while True:
            message = self._read(deadline)
            if message.get("id") == wanted:
                if "error" in message:
                    raise BrowserError(f"{method}: {message['error']}")
                return message.get("result", {})
            if "method" in message:
                self._events.append(message)

    def _wait_for(self, method: str) -> None:
        """Read until an event ``method`` has arrived (events stay in ``self._events``)."""
        deadline = time.monotonic() + self.timeout
        seen = 0
        while True:
            for event in self._events[seen:]:
                if event.get("method") == method:
                    return
            seen = len(self._events)
            self._events.append(self._read(deadline))

    # -- what a test uses -----------------------------------------------------------------

    def load(self, url: str, settle: float = 0.3) -> PageLoad:
        """Navigate to ``url``, wait for the load event, and report what the page did."""
        self._events.clear()
        self.call("Page.navigate", url=url)
        self._wait_for("Page.loadEventFired")
        end = time.monotonic() + settle  # late console messages
        while (left := end - time.monotonic()) > 0:
            if b"\0" in self._buffer or select.select([self._from_chrome], [], [], left)[0]:
                self._events.append(self._read(time.monotonic() + self.timeout))
        load = PageLoad()
        for event in self._events:
            method, params = event.get("method"), event.get("params", {})
            if method == "Runtime.consoleAPICalled":
                text = " ".join(str(a.get("value", a.get("description", ""))) for a in params.get("args", []))
                load.console.append((params.get("type", ""), text))
            elif method == "Runtime.exceptionThrown":
                details = params.get("exceptionDetails", {})
                load.exceptions.append(details.get("exception", {}).get("description") or details.get("text", ""))
            elif method == "Log.entryAdded":
                entry = params.get("entry", {})
                load.log_entries.append((entry.get("level", ""), entry.get("source", ""), entry.get("text", "")))
            elif method == "Network.requestWillBeSent":
                load.requests.append(params.get("request", {}).get("url", ""))
        return load

    def evaluate(self, expression: str) -> Any:
        result = self.call("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True)
        if "exceptionDetails" in result:
            raise BrowserError(f"evaluate: {result['exceptionDetails']}")
        return result["result"].get("value")

    # -- acting on the page as a person would ---------------------------------------------

    def text(self, selector: str) -> str:
        """The visible text (innerText) of the first element matching ``selector``."""
        value = self.evaluate(f"(() => {{ const e = document.querySelector({json.dumps(selector)});"
                              " return e === null ? null : e.innerText; })()")
        if value is None:
            raise BrowserError(f"no element matches {selector!r}")
        return str(value)

    def click(self, selector: str, at: tuple[float, float] = (0.5, 0.5)) -> None:
        """A real mouse click (press and release of the left button) on the element, at its middle.

        ``at`` is where, as fractions of the element's width and height (a
        slider's track is clicked at ``(1.0, 0.5)`` to move it to its end).

        The element is scrolled into view first; the click goes through
        Chromium's input pipeline (Input.dispatchMouseEvent), so it reaches
        whatever is on top at that point, as a person's click would: a hidden
        or covered button is not clicked.
        """
        box = self.evaluate(
            f"(() => {{ const e = document.querySelector({json.dumps(selector)}); if (e === null) return null;"
            " e.scrollIntoView({block: 'nearest'}); const r = e.getBoundingClientRect();"
            " return [r.left, r.top, r.width, r.height]; })()")
        if box is None:
            raise BrowserError(f"no element matches {selector!r}")
        left, top, width, height = box
        if width <= 0 or height <= 0:
            raise BrowserError(f"{selector!r} is not displayed")
        x = left + min(max(at[0] * width, 0.5), width - 0.5)  # inside the element, even at its very edge
        y = top + min(max(at[1] * height, 0.5), height - 0.5)
        self.call("Input.dispatchMouseEvent", type="mouseMoved", x=x, y=y)
        for kind in ("mousePressed", "mouseReleased"):
            self.call("Input.dispatchMouseEvent", type=kind, x=x, y=y, button="left", buttons=1, clickCount=1)

    _KEYS = {"ArrowRight": 39, "ArrowLeft": 37, "Home": 36, "End": 35, " ": 32, "Enter": 13}

    def press(self, key: str) -> None:
        """A key pressed and released on the focused element (Input.dispatchKeyEvent), e.g. "ArrowRight"."""
        code = self._KEYS[key]
        name = "Space" if key == " " else key
        text = {" ": " ", "Enter": "\r"}.get(key)
        down: dict[str, Any] = {"type": "keyDown" if text else "rawKeyDown", "key": key, "code": name,
                                "windowsVirtualKeyCode": code, "nativeVirtualKeyCode": code}
        if text:
            down["text"] = text
        self.call("Input.dispatchKeyEvent", **down)
        self.call("Input.dispatchKeyEvent", type="keyUp", key=key, code=name, windowsVirtualKeyCode=code,
                  nativeVirtualKeyCode=code)

    def screenshot(self, path: str | Path, full_page: bool = True, max_height: int | None = None,
                   top: int = 0) -> Path:
        """A PNG of the page (the whole page, or ``max_height`` pixels of it from ``top``)."""
        height = self.height
        if full_page:
            height = int(self.evaluate("document.documentElement.scrollHeight")) - top
        if max_height is not None:
            height = min(height, max_height)
        self.call("Emulation.setDeviceMetricsOverride", width=self.width, height=height, deviceScaleFactor=1,
                  mobile=False)
        clip = {"x": 0, "y": top, "width": self.width, "height": height, "scale": 1}
        data = self.call("Page.captureScreenshot", format="png", captureBeyondViewport=True, clip=clip)["data"]
        self.call("Emulation.setDeviceMetricsOverride", width=self.width, height=self.height,
                  deviceScaleFactor=1, mobile=False)
        out = Path(path)
        out.write_bytes(base64.b64decode(data))
        return out


def _main(argv: list[str]) -> int:
    if len(argv) < 3 or argv[0] != "screenshot":
        print("usage: python -m tests.chromium screenshot PAGE.html|URL OUT.png [MAX_HEIGHT [WIDTH]]", file=sys.stderr)
        return 2
    page, out = argv[1], Path(argv[2])  # a file, or an http:// address (a served site)
    url = page if page.startswith(("http://", "https://")) else Path(page).resolve().as_uri()
    max_height = int(argv[3]) if len(argv) > 3 else None
    width = int(argv[4]) if len(argv) > 4 else 1100
    with Chromium(width=width) as browser:
        load = browser.load(url)
        if load.errors:
            print("\n".join(load.errors), file=sys.stderr)
            return 1
        browser.screenshot(out, max_height=max_height)
    try:  # a palette of 256 colours: a third of the size, and text stays sharp
        from PIL import Image
    except ImportError:
        pass
    else:
        image = Image.open(out).convert("RGB")
        image.quantize(256, method=Image.Quantize.FASTOCTREE, dither=Image.Dither.NONE).save(out, optimize=True)
    print(f"{out}: {out.stat().st_size:,} bytes")
    return 0


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
