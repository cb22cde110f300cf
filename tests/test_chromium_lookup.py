"""Which browser the report tests use, and what they do without one: skip, or fail under SANDBOX_REQUIRE_BROWSER=1."""

from __future__ import annotations

import shutil
import stat
from pathlib import Path

import pytest

from . import chromium
from .chromium import REQUIRE_BROWSER, find_chromium, require_chromium


@pytest.fixture
def no_browser(monkeypatch: pytest.MonkeyPatch) -> None:
    """A machine with no Chromium anywhere the lookup goes."""
    monkeypatch.setattr(chromium, "CANDIDATES", ())
    monkeypatch.setattr(shutil, "which", lambda name: None)
    monkeypatch.delenv("CHROMIUM", raising=False)
    monkeypatch.delenv(REQUIRE_BROWSER, raising=False)


def test_chromium_names_the_browser(no_browser: None, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    browser = tmp_path / "my-chromium"
    browser.write_text("#!/bin/sh\n")
    browser.chmod(browser.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv("CHROMIUM", str(browser))
    assert find_chromium() == str(browser) == require_chromium()


def test_without_a_browser_the_tests_skip_with_one_line(no_browser: None) -> None:
    with pytest.raises(pytest.skip.Exception) as skipped:
        require_chromium()
    reason = str(skipped.value)
    assert reason == "no Chromium found (set CHROMIUM=/path/to/chromium, or apt-get install chromium)"
    assert "\n" not in reason


def test_a_chromium_that_is_not_executable_is_named(no_browser: None, monkeypatch: pytest.MonkeyPatch,
                                                    tmp_path: Path) -> None:
    monkeypatch.setenv("CHROMIUM", str(tmp_path / "absent"))
    with pytest.raises(pytest.skip.Exception) as skipped:
        require_chromium()
    assert str(skipped.value).startswith(f"$CHROMIUM={str(tmp_path / 'absent')!r} is not executable and no Chromium")


def test_require_browser_turns_the_skip_into_a_failure(no_browser: None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(REQUIRE_BROWSER, "1")
    with pytest.raises(pytest.fail.Exception) as failed:
        require_chromium()
    assert str(failed.value).startswith("SANDBOX_REQUIRE_BROWSER=1 but no Chromium found")

