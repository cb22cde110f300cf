"""Every subcommand, driven by hypothesis with malformed files and arguments: exit 2 and one line.

``test_bad_input.py`` covers malformed *scenarios* in depth; this covers the
breadth: each command that reads a file (run, explore, replay, sweep,
check-log) is given one that is random bytes, broken JSON or TOML, deeply
nested, a directory, a FIFO, a dangling symlink or absent, and each command
is given arguments that are wrong. Every case must end with exit status 2
and one line on stderr (``sandbox: ...``), no traceback, no output on
stdout, and nothing written. The one documented exception: ``check-log`` on
a *readable* file whose first line is not an event reports that bad line
(exit 1, one line on stdout), which is its job.

Cheap on CI: everything runs in this process and is refused before any run
starts; the "ci" profile's 60 examples per test take a few seconds.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from sandbox.cli import main

FILE_COMMANDS = ("run", "explore", "replay", "sweep", "check-log")
KINDS = ("bytes", "json", "toml", "deep", "directory", "fifo", "dangling", "absent")


def _json_values() -> st.SearchStrategy[Any]:
    scalars = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20)
    return st.recursive(scalars, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(
        st.text(max_size=10), inner, max_size=4), max_leaves=12)


@st.composite
def bad_files(draw: st.DrawFn) -> tuple[str, bytes]:
    kind = draw(st.sampled_from(KINDS))
    data = b""
    if kind == "bytes":
        data = draw(st.binary(min_size=1, max_size=400))
    elif kind == "json":
        value = draw(_json_values())
        # Half of them look like a replay with some field broken.
        if draw(st.booleans()):
            value = {"format": "sandbox-replay", "version": 1, "scenario": value, "decisions": value}
        data = json.dumps(value).encode()
    elif kind == "toml":
        data = draw(st.sampled_from([b'name = "x"\n[[markets]]\nsymbol = 1\n', b"[[[", b'name = "x"\nseed = -1\n',
                                     b'name = "x"\n[faults.crash]\nprobability = "2"\n', b"x = [" * 300]))
    elif kind == "deep":
        depth = draw(st.integers(1_000, 60_000))
        data = (draw(st.sampled_from(["[", '{"a":'])) * depth).encode()
    return kind, data


def _make(folder: Path, kind: str, data: bytes, command: str) -> Path:
    path = folder / ("input.toml" if command in ("run", "explore", "sweep") else "input.json")
    if kind == "directory":
        path.mkdir()
    elif kind == "fifo":
        os.mkfifo(path)
    elif kind == "dangling":
        path.symlink_to(folder / "nowhere")
    elif kind != "absent":
        path.write_bytes(data + (b"\n" if command == "check-log" else b""))
    return path


def _invoke(args: list[str]) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            status = main(args)
        except SystemExit as e:  # argparse's own exit
            status = int(e.code) if isinstance(e.code, int) else 2
    return status, out.getvalue(), err.getvalue()


def _assert_one_line(status: int, stdout: str, stderr: str, args: list[str]) -> None:
    assert status == 2, (args, status, stderr[-500:], stdout[-500:])
    assert stdout == "", (args, stdout[-500:])
    assert stderr.endswith("\n") and stderr.count("\n") == 1, (args, stderr[-1000:])
    assert stderr.startswith("sandbox: ") and "Traceback" not in stderr, (args, stderr)
    assert len(stderr) < 2000, (args, stderr)


def _command(command: str, path: Path, out: Path) -> list[str]:
    return {
        "run": ["run", str(path), "--quiet", "--out", str(out)],
        "explore": ["explore", str(path), "--examples", "1", "--out", str(out), "--db", str(out / "db")],
        "replay": ["replay", str(path), "--quiet"],
        "sweep": ["sweep", str(path), "--seeds", "1", "--workers", "1", "--out", str(out)],
        "check-log": ["check-log", str(path)],
    }[command]


@given(st.sampled_from(FILE_COMMANDS), bad_files())
def test_every_command_refuses_a_malformed_file_with_exit_2_and_one_line(command, case):
    kind, data = case
    folder = Path(tempfile.mkdtemp(prefix="sandbox-bad-"))
    try:
        path = _make(folder, kind, data, command)
        out = folder / "out"
        args = _command(command, path, out)
        status, stdout, stderr = _invoke(args)
        if command == "check-log" and kind in ("bytes", "json", "toml", "deep"):
            # A readable file whose first line is not an event: the bad line is reported (exit 1).
            assert (status, stderr) == (1, ""), (args, status, stderr[-500:])
            assert stdout.count("\n") == 1 and ": line 1" in stdout, stdout[-500:]
        else:
            _assert_one_line(status, stdout, stderr, args)
        assert not out.exists(), f"{args}: something was written"
        if kind == "fifo":
            assert path.is_fifo()
    finally:
        shutil.rmtree(folder, ignore_errors=True)


# Arguments that are wrong, for each command; each list is appended to a valid command line.
BAD_ARGUMENTS: dict[str, list[list[str]]] = {
    "run": [["--seed", "x"], ["--seed", "-1"], ["--seed", str(2**64)], ["--report", "{tmp}"],
            ["--report", "{fifo}"], ["--out", "{file}"], ["--out", "{file}/sub"], ["--report", ""], ["--bogus"],
            ["nonexistent-scenario"], ["{tmp}"]],
    "explore": [["--examples", "0"], ["--examples", "many"], ["--variant", "nope"], ["--find", "nope"],
                ["--workers", "-3"], ["--out", "{file}"]],
    "replay": [["{tmp}"], ["{file}"], ["--quiet", "--bogus"]],
    "sweep": [["--seeds", "0"], ["--set", "junk"], ["--set", "a="], ["--set", "seed=1,2"],
              ["--set", "insurance_fund.balance=1,1"], ["--set", "markets.NOPE.mark_price=1"],
              ["--scheduler", "http://x:1"], ["--scheduler", "tcp://x:1", "--workers", "2"],
              ["--tls-cert", "{file}"], ["--out", "{file}"], ["--out", "{file}/sub"]],
    "check-log": [["{tmp}"], ["{fifo}"], ["{tmp}/absent"]],
    "soak": [["--orders", "0"], ["--traders", "x"], ["--seed", "-5"]],
    "bench": [["--bogus"]],
    "list": [["extra"]],
    "variants": [["extra"]],
}
VALID: dict[str, list[str]] = {
    "run": ["run", "demo", "--quiet"], "explore": ["explore", "demo", "--examples", "1"], "replay": ["replay"],
    "sweep": ["sweep", "demo", "--seeds", "1", "--workers", "1"], "check-log": ["check-log"], "soak": ["soak"],
    "bench": ["bench", "--quick"], "list": ["list"], "variants": ["variants"],
}


@given(st.sampled_from(sorted(BAD_ARGUMENTS)).flatmap(
    lambda command: st.tuples(st.just(command), st.sampled_from(BAD_ARGUMENTS[command]))))
def test_every_command_refuses_wrong_arguments_with_exit_2_and_one_line(case):
    command, extra = case
    folder = Path(tempfile.mkdtemp(prefix="sandbox-args-"))
    try:
        (folder / "file").write_text("untouched")
        os.mkfifo(folder / "fifo")
        fill = {"{tmp}": str(folder), "{file}": str(folder / "file"), "{fifo}": str(folder / "fifo")}
        args = VALID[command] + [_fill(a, fill) for a in extra]
        if command == "run" and extra[0] in ("nonexistent-scenario", "{tmp}"):
            args = ["run", _fill(extra[0], fill), "--quiet"]
        status, stdout, stderr = _invoke(args)
        _assert_one_line(status, stdout, stderr, args)
        assert (folder / "file").read_text() == "untouched" and (folder / "fifo").is_fifo()
        assert sorted(p.name for p in folder.iterdir()) == ["fifo", "file"]
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _fill(arg: str, fill: dict[str, str]) -> str:
    for key, value in fill.items():
        arg = arg.replace(key, value)
    return arg
