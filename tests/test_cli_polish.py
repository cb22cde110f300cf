"""The CLI for a newcomer: --version, "did you mean", a report from a saved run, one table of exit codes."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

import sandbox
from sandbox import cli as sandbox_cli
from sandbox._tools.command import EXIT_CODES
from sandbox._scenario.reader import ScenarioError
from sandbox._scenario.load import load_scenario

REPO = Path(__file__).resolve().parent.parent


def cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "sandbox", *args], capture_output=True, text=True, timeout=300,
                          cwd=cwd)


def one_line_error(proc: subprocess.CompletedProcess[str]) -> str:
    assert proc.returncode == 2, (proc.returncode, proc.stderr)
    assert proc.stdout == "" and "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    return lines[0]


def test_version():
    from importlib.metadata import version

    proc = cli("--version")
    assert proc.returncode == 0 and proc.stdout == f"sandbox {version('perp-risk-sandbox')}\n"


@pytest.mark.parametrize(("args", "hint"), [
    (("rn",), "did you mean 'run'?"),
    (("chek-log", "x"), "did you mean 'check-log'?"),
    (("run", "demo", "--thme", "light"), "did you mean --theme?"),
    (("run", "demo", "--theme", "lihgt"), "did you mean 'light'?"),
    (("sweep", "demo", "--seeds", "2", "--sett", "x=1"), "did you mean --set?"),
])
def test_did_you_mean_for_subcommands_options_and_choices(args, hint):
    line = one_line_error(cli(*args))
    assert line.endswith(f"; {hint} (see 'sandbox --help')")


def test_no_suggestion_when_nothing_is_close():
    line = one_line_error(cli("frobnicate"))
    assert "did you mean" not in line


def test_did_you_mean_for_a_scenario_name():
    line = one_line_error(cli("run", "cascade_adl2"))
    assert line == ("sandbox: cascade_adl2: no such file, and no bundled scenario of that name "
                    "(did you mean cascade_adl? see 'sandbox list')")
    assert "did you mean" not in one_line_error(cli("run", "zzzzzz"))


GOOD = (REPO / "scenarios" / "textbook.toml").read_text(encoding="utf-8")


def load_text(tmp_path: Path, text: str) -> ScenarioError:
    path = tmp_path / "s.toml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ScenarioError) as info:
        load_scenario(path)
    return info.value


def test_a_misspelt_required_key_is_named_with_the_key_it_should_be(tmp_path):
    e = load_text(tmp_path, GOOD.replace('mark_price = "100"', 'mark_prise = "100"'))
    assert (e.key, e.problem) == ("markets[0].mark_prise", "unknown key (did you mean mark_price? it is required)")
    # A required key that is simply missing says so, as before.
    e = load_text(tmp_path, GOOD.replace('mark_price = "100"\n', ""))
    assert (e.key, e.problem) == ("markets[0].mark_price", "is required")


def test_a_missing_required_key_is_not_blamed_on_a_known_key_that_looks_like_it(tmp_path):
    # orders[0] has "size"; its missing "side" is just missing, not a misspelt "size" (difflib ratio 0.75).
    e = load_text(tmp_path, GOOD.replace('side = "buy"\n', ""))
    assert (e.key, e.problem) == ("orders[0].side", "is required")


def test_a_misspelt_optional_key_suggests_the_known_one(tmp_path):
    e = load_text(tmp_path, GOOD.replace('maintenance_margin = "0.05"', 'maintenance_margin = "0.05"\ntick_sise = "1"'))
    assert (e.key, e.problem) == ("markets[0].tick_sise", "unknown key (did you mean tick_size?)")
    e = load_text(tmp_path, GOOD.replace('maintenance_margin = "0.05"', 'maintenance_margin = "0.05"\ncolour = "red"'))
    assert (e.key, e.problem) == ("markets[0].colour", "unknown key")


def test_the_cli_says_the_misspelling_in_one_line(tmp_path):
    path = tmp_path / "s.toml"
    path.write_text(GOOD.replace('maintenance_margin = "0.05"', 'maintenance_margin = "0.05"\ntick_sise = "1"'))
    assert one_line_error(cli("run", str(path))) == \
        f"sandbox: {path}: markets[0].tick_sise: unknown key (did you mean tick_size?)"


# --- sandbox report EVENTS.jsonl -o FILE.html ---------------------------------------------------


@pytest.fixture(scope="module")
def saved_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A run saved with --out, and the report the same run wrote live with --report."""
    base = tmp_path_factory.mktemp("saved")
    proc = cli("run", "cascade_adl", "--quiet", "--out", str(base / "out"), "--report", str(base / "live.html"))
    assert proc.returncode == 0, proc.stderr
    return base / "out" / "events.jsonl", base / "live.html"


def test_report_from_a_saved_run_is_the_report_of_that_run(saved_run, tmp_path):
    events, live = saved_run
    out = tmp_path / "from-log.html"
    proc = cli("report", str(events), "-o", str(out))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == f"report of {events} written to {out}\n"
    assert out.read_bytes() == live.read_bytes()
    assert [p.name for p in tmp_path.iterdir()] == ["from-log.html"]


def test_report_of_a_custom_scenario_needs_its_file(tmp_path):
    scenario = tmp_path / "mine.toml"
    scenario.write_text(GOOD.replace('name = "textbook"', 'name = "mine"'), encoding="utf-8")
    assert cli("run", str(scenario), "--quiet", "--out", str(tmp_path / "out")).returncode == 0
    events = tmp_path / "out" / "events.jsonl"
    line = one_line_error(cli("report", str(events), "-o", str(tmp_path / "r.html")))
    assert line == (f"sandbox: report: {events}: the run used scenario 'mine', which is not bundled: "
                    "pass its file with --scenario FILE.toml")
    proc = cli("report", str(events), "-o", str(tmp_path / "r.html"), "--scenario", str(scenario))
    assert proc.returncode == 0, proc.stderr and (tmp_path / "r.html").exists()
    # A different file of the same name is refused: its sha256 is not the one the log recorded.
    scenario.write_text(GOOD.replace('name = "textbook"', 'name = "mine"') + "\n# edited\n", encoding="utf-8")
    line = one_line_error(cli("report", str(events), "-o", str(tmp_path / "r2.html"), "--scenario", str(scenario)))
    assert line.endswith(f"{scenario} is not the scenario file the run used (its sha256 differs from the one in "
                         "the log)")
    assert not (tmp_path / "r2.html").exists()


def test_report_refuses_an_edited_a_cut_and_a_live_log(saved_run, tmp_path):
    events, _ = saved_run
    lines = events.read_text(encoding="utf-8").splitlines(keepends=True)
    edited = tmp_path / "edited.jsonl"
    edited.write_text("".join(lines[:5] + [lines[5].replace('"seq":5', '"seq":5,"x":1')] + lines[6:]))
    assert re.fullmatch(r"sandbox: report: .*edited\.jsonl: line 6 is not what the run of cascade_adl with seed 0 "
                        r"records: the log was edited, or written by other actors",
                        one_line_error(cli("report", str(edited), "-o", str(tmp_path / "r.html"))))
    cut = tmp_path / "cut.jsonl"
    cut.write_text("".join(lines[:10]))
    assert one_line_error(cli("report", str(cut), "-o", str(tmp_path / "r.html"))).endswith(
        f"ends at line 10, before the run finished (it has {len(lines)} events): a report needs the whole run")
    live = tmp_path / "live.jsonl"
    opening = json.loads(lines[0])
    live.write_text(json.dumps({**opening, "mode": "live"}) + "\n" + "".join(lines[1:]))
    assert "a live run cannot be rebuilt" in one_line_error(cli("report", str(live), "-o", str(tmp_path / "r.html")))
    assert "line 1 is not the opening_state" in one_line_error(
        cli("report", str(REPO / "pyproject.toml"), "-o", str(tmp_path / "r.html")))
    assert "not a regular file" in one_line_error(cli("report", str(tmp_path), "-o", str(tmp_path / "r.html")))
    assert "no such file" in one_line_error(cli("report", str(tmp_path / "nope"), "-o", str(tmp_path / "r.html")))
    assert not (tmp_path / "r.html").exists()


# --- exit codes ------------------------------------------------------------------------------------


def test_exit_codes_are_defined_once():
    from sandbox._tools import command
    from sandbox._tools import explore_cli as _explore_cli

    assert _explore_cli.EXIT_FOUND == command.EXIT_VIOLATION and _explore_cli.EXIT_OK is command.EXIT_OK
    definitions = [p.relative_to(REPO).as_posix() for p in Path(sandbox.__file__).parent.rglob("*.py")
                   if re.search(r"^EXIT_\w+(, EXIT_\w+)* = \d", p.read_text(encoding="utf-8"), re.M)]
    assert definitions == ["sandbox/_tools/command.py"]


def test_exit_codes_are_documented_in_one_table_shown_by_help():
    help_text = cli("--help").stdout
    for code, what in EXIT_CODES.items():
        assert f"{code} {what}" in " ".join(help_text.split())
    doc = (REPO / "docs" / "reference" / "exit-codes.md").read_text(encoding="utf-8")
    for code in EXIT_CODES:
        assert re.search(rf"^\| {code} \|", doc, re.M), code
    # The per-command table names every subcommand.
    commands = set(re.findall(r"^\| `([\w-]+)`(?:, `([\w-]+)`)? \|", doc, re.M))
    named = {c for pair in commands for c in pair if c}
    subparsers = next(a for a in sandbox_cli._parser()._actions if a.dest == "command")
    assert named == set(subparsers.choices)
