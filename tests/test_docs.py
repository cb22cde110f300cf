"""The documentation's examples cannot rot: every fenced block of README.md and docs/ is run or checked.

How each block is treated, by the language after its opening fence:

* ``toml``: a scenario. It is loaded and run (seeded), and every invariant must
  hold. A block with ``title="NAME.toml"`` is first written to NAME.toml in the
  page's working folder. An HTML comment on the line before the fence says
  what a partial block is: ``<!-- docs-test: edit FILE -->`` (the block's keys
  replace those lines of FILE in the working folder, which is then run) or
  ``<!-- docs-test: fragment of NAME -->`` (the block's tables are merged into
  the bundled scenario NAME, which is then run) or ``<!-- docs-test: refused -->``
  (an example of a mistake: writing it to its title, loading it must fail).
* ``python``: executed, in the page's working folder; with ``title="NAME.py"``
  it is first written to NAME.py there.
* ``console``: a session. Each ``$ command`` is run there (``sandbox ...`` through
  the real command, and ``cp``); the lines after it are its expected output,
  where a line ``...`` stands for anything, and each stretch between them must
  appear, in order (runs of whitespace compare equal, so wrapping does not
  matter). ``$ echo $?`` and the number after it state the previous command's
  exit status; without it the status must be 0.
* ``sh``: commands too slow or too big for the suite (long sweeps, a cluster of
  machines, the quick start). They are checked, not run: every ``sandbox``
  command parses with the real parser, names a scenario that exists, and a
  sweep's grid is validated; ``pip install`` names extras that exist and are
  installed; ``dask`` commands parse with Dask's own parser. The quick start's
  two commands are the ones ``.ci/run`` runs.
* ``json``: must parse; ``<!-- docs-test: equals FILE -->`` (FILE, written by an
  earlier command, holds the same JSON) or ``<!-- docs-test: a line of FILE -->``
  (one of FILE's lines is this JSON) compare it with what the sandbox wrote.
  ``text``: output and diagrams, not run.

Each page gets a fresh working folder holding a copy of ``scenarios/``, and
its blocks run in page order, as a reader would follow them.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import tomllib
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

import pytest

from sandbox import ScenarioError, load_scenario, parse_scenario, resolve_scenario, run_scenario_sync
from sandbox.cli import _parser

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
PAGES = [ROOT / "README.md", *sorted(p for p in DOCS.rglob("*.md") if "_hooks" not in p.parts)]
LANGUAGES = {"toml", "python", "console", "sh", "json", "text"}
FENCE = re.compile(r"^(?P<indent> *)(?P<fence>`{3,})(?P<info>.*)$")
DIRECTIVE = re.compile(r"<!-- docs-test: (?P<what>.+?) -->")
SNIPPET = re.compile(r'^--8<-- "(?P<path>[^"]+)"$')


@dataclass(frozen=True)
class Block:
    page: Path
    line: int  # of the opening fence, from 1
    language: str
    title: str | None
    directive: str | None
    text: str

    @property
    def where(self) -> str:
        page = self.page.relative_to(ROOT) if self.page.is_relative_to(ROOT) else self.page
        return f"{page}:{self.line}"


def blocks(page: Path) -> list[Block]:
    """The fenced blocks of a Markdown page, snippets (``--8<--``) read in."""
    lines = page.read_text(encoding="utf-8").splitlines()
    out: list[Block] = []
    i = 0
    while i < len(lines):
        m = FENCE.match(lines[i])
        if not m:
            i += 1
            continue
        indent, fence, info = len(m["indent"]), m["fence"], m["info"].strip()
        language = info.split()[0] if info else ""
        title = re.search(r'title="([^"]*)"', info)
        before = lines[i - 1].strip() if i else ""
        directive = DIRECTIVE.fullmatch(before)
        body: list[str] = []
        j = i + 1
        while j < len(lines) and lines[j].strip() != fence:
            body.append(lines[j][indent:] if lines[j][:indent].strip() == "" else lines[j])
            j += 1
        assert j < len(lines), f"{page}:{i + 1}: the block is never closed"
        text = "\n".join(body) + "\n"
        snippet = SNIPPET.match(text.strip())
        if snippet:
            text = (ROOT / snippet["path"]).read_text(encoding="utf-8")
        out.append(Block(page, i + 1, language, title[1] if title else None,
                         directive["what"] if directive else None, text))
        i = j + 1
    return out


# --- toml ---------------------------------------------------------------------------------------


def _merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    """Tables merge key by key; anything else (values, arrays of tables) is replaced."""
    out = dict(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


def edit(text: str, fragment: str) -> str:
    """``text`` with each ``key = value`` line of ``fragment`` replacing that key's line in the same table."""
    lines = text.splitlines()
    table: str | None = None
    for raw in fragment.splitlines():
        line = raw.split("#", 1)[0].strip() if not raw.strip().startswith("#") else ""
        if not line:
            continue
        if line.startswith("[["):
            raise AssertionError(f"an edit cannot say which {line} it means")
        if line.startswith("["):
            table = line
            continue
        key = line.split("=", 1)[0].strip()
        current: str | None = None
        hits = []
        for n, existing in enumerate(lines):
            stripped = existing.strip()
            if stripped.startswith("["):
                current = stripped.split("#", 1)[0].strip()
            elif current == table and re.match(rf"{re.escape(key)}\s*=", stripped):
                hits.append(n)
        assert len(hits) == 1, f"{key} appears {len(hits)} times in {table or 'the top level'}"
        lines[hits[0]] = raw.strip()
    return "\n".join(lines) + "\n"


def run_toml(block: Block, work: Path) -> None:
    what = block.directive or ""
    if what.startswith("edit "):
        path = work / what.removeprefix("edit ")
        assert path.exists(), f"{block.where}: edits {path.name}, which an earlier block must make"
        path.write_text(edit(path.read_text(encoding="utf-8"), block.text), encoding="utf-8")
        scenario = load_scenario(path)
    elif what.startswith("fragment of "):
        name = what.removeprefix("fragment of ")
        base = tomllib.loads((ROOT / "scenarios" / f"{name}.toml").read_text(encoding="utf-8"))
        scenario = parse_scenario(_merge(base, tomllib.loads(block.text)), source=block.where)
    elif what == "refused":
        assert block.title is not None, f"{block.where}: a refused scenario needs a title= to write it to"
        path = work / block.title
        path.write_text(block.text, encoding="utf-8")
        with pytest.raises(ScenarioError):
            load_scenario(path)
        return
    elif block.title is not None:
        path = work / block.title
        path.write_text(block.text, encoding="utf-8")
        scenario = load_scenario(path)
    else:
        assert not what, f"{block.where}: unknown directive {what!r}"
        path = work / f"block-{block.line}.toml"
        path.write_text(block.text, encoding="utf-8")
        scenario = load_scenario(path)
    result = run_scenario_sync(scenario)
    assert result.ok, f"{block.where}: {result.error or result.violations}"


# --- python ---------------------------------------------------------------------------------------


def run_python(block: Block, work: Path) -> None:
    if block.title is not None:  # a file the page's later commands use
        (work / block.title).write_text(block.text, encoding="utf-8")
    code = compile(block.text, block.where, "exec")
    here = os.getcwd()
    os.chdir(work)
    try:
        exec(code, {"__name__": "__main__"})  # a script run as a script: its main guard runs
    finally:
        os.chdir(here)


# --- console ---------------------------------------------------------------------------------------


def _squash(text: str) -> str:
    return " ".join(text.split())


def session(text: str) -> list[tuple[str, list[str]]]:
    """(command, expected output lines) pairs of a console block."""
    steps: list[tuple[str, list[str]]] = []
    for line in text.splitlines():
        if line.startswith("$ "):
            steps.append((line[2:], []))
        else:
            assert steps, f"output before any command: {line!r}"
            steps[-1][1].append(line)
    return steps


def expect_output(where: str, command: str, expected: list[str], actual: str) -> None:
    stretches: list[str] = []
    current: list[str] = []
    for line in [*expected, "..."]:
        if line.strip() == "...":
            if current:
                stretches.append(_squash("\n".join(current)))
            current = []
        else:
            current.append(line)
    got, at = _squash(actual), 0
    for stretch in stretches:
        found = got.find(stretch, at)
        assert found >= 0, f"{where}: `{command}` did not print (at this point):\n{stretch}\n--- it printed:\n{actual}"
        at = found + len(stretch)


def run_command(argv: list[str], work: Path) -> subprocess.CompletedProcess[str]:
    if argv[0] == "cp":
        assert len(argv) == 3, argv
        shutil.copy(work / argv[1], work / argv[2])
        return subprocess.CompletedProcess(argv, 0, "", "")
    assert argv[0] == "sandbox", f"only `sandbox` and `cp` run in a console block, not {argv[0]!r}: use sh"
    return subprocess.run([sys.executable, "-m", "sandbox", *argv[1:]], cwd=work, capture_output=True, text=True,
                          timeout=600, env={k: v for k, v in os.environ.items() if k != "COLUMNS"})


def run_console(block: Block, work: Path) -> None:
    steps = session(block.text)
    last: tuple[str, subprocess.CompletedProcess[str]] | None = None
    checked = True
    for command, expected in steps:
        if command == "echo $?":
            assert last is not None, f"{block.where}: `echo $?` before any command"
            assert [e.strip() for e in expected if e.strip()] == [str(last[1].returncode)], (
                f"{block.where}: `{last[0]}` exited {last[1].returncode}; the page says {expected}\n"
                f"{last[1].stdout}{last[1].stderr}")
            checked = True
            continue
        if last is not None and not checked:
            assert last[1].returncode == 0, f"{block.where}: `{last[0]}` exited {last[1].returncode}:\n{last[1].stderr}"
        proc = run_command(shlex.split(command), work)
        expect_output(block.where, command, expected, proc.stdout + proc.stderr)
        last, checked = (command, proc), False
    if last is not None and not checked:
        assert last[1].returncode == 0, f"{block.where}: `{last[0]}` exited {last[1].returncode}:\n{last[1].stderr}"


# --- sh: checked, not run ------------------------------------------------------------------------------


def commands(text: str) -> list[str]:
    """The command lines of a shell block: continuations joined, comments and blank lines dropped."""
    joined = re.sub(r"\\\n\s*", " ", text)
    out = []
    for line in joined.splitlines():
        words = shlex.split(line, comments=True)
        if words:
            out.append(" ".join(w if w == "&&" else shlex.quote(w) for w in words))
    return out


def check_dask_command(where: str, argv: list[str]) -> None:
    """``dask scheduler|worker ...``, parsed by Dask's own command-line parser (nothing is started)."""
    import click
    from distributed.cli import dask_scheduler, dask_worker

    commands = {"scheduler": dask_scheduler.main, "worker": dask_worker.main}
    assert argv[1] in commands, f"{where}: dask {argv[1]}"
    command = commands[argv[1]]
    # Files the example names (certificates, a scheduler file) are the reader's: stand-ins are
    # made for the options that require an existing path, so everything else is still checked.
    must_exist = {opt for p in command.params if isinstance(p.type, click.Path) and p.type.exists for opt in p.opts}
    here = os.getcwd()
    with tempfile.TemporaryDirectory() as stand_ins:
        for option, value in zip(argv[2:], argv[3:]):
            if option in must_exist and not os.path.isabs(value):
                (Path(stand_ins) / value).parent.mkdir(parents=True, exist_ok=True)
                (Path(stand_ins) / value).touch()
        os.chdir(stand_ins)
        try:
            command.make_context(f"dask {argv[1]}", argv[2:])
        except click.ClickException as e:
            raise AssertionError(f"{where}: `{shlex.join(argv)}`: {e.format_message()}") from None
        finally:
            os.chdir(here)


def check_sandbox_command(where: str, argv: list[str], work: Path) -> None:
    parser = _parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:
        raise AssertionError(f"{where}: `sandbox {shlex.join(argv)}` does not parse (exit {e.code})") from None
    scenario: str | None = getattr(args, "scenario", None)
    if scenario is None:
        return
    if not (work / scenario).exists():
        resolve_scenario(scenario)  # a bundled name, or it raises
    if args.command == "sweep":
        from sandbox._tools.sweep import load_sweep

        path = work / scenario
        load_sweep(str(path) if path.exists() else scenario, args.sets, args.seeds)


def check_sh(block: Block, work: Path) -> None:
    for command in commands(block.text):
        for part in command.split(" && "):
            argv = shlex.split(part)
            if argv[0] == "sandbox":
                check_sandbox_command(block.where, argv[1:], work)
            elif argv[:2] == ["pip", "install"]:
                extras = re.findall(r"\.\[([\w,]+)\]", part)
                assert extras, f"{block.where}: {part}: installs this project with its extras"
                for extra in extras[0].split(","):
                    required = [r for r in metadata.requires("perp-risk-sandbox") or [] if f'extra == "{extra}"' in r]
                    assert required, f"{block.where}: no extra [{extra}] in pyproject.toml"
                    for requirement in required:
                        name = re.split(r"[\[<>=;! ]", requirement, maxsplit=1)[0]
                        metadata.version(name)  # installed, or PackageNotFoundError
            elif argv[:3] == ["python", "-m", "pytest"]:
                assert argv[3:] == [] or all(a.startswith("-") or (ROOT / a).exists() for a in argv[3:]), part
            elif argv[:2] == ["python", "-m"]:
                assert importlib.util.find_spec(argv[2]) is not None, f"{block.where}: no module {argv[2]}"
                if argv[2] == "tests.chromium":
                    assert argv[3] == "screenshot" and len(argv) in (6, 7, 8), part
            elif argv[:3] == ["mkdocs", "build", "--strict"]:
                continue  # what test_the_site_builds_strictly... does
            elif argv[0] == "dask":
                check_dask_command(block.where, argv)
            elif argv[0] in ("echo", "setsid"):
                continue
            else:
                raise AssertionError(f"{block.where}: the docs test does not know how to check `{part}`")


# --- json ----------------------------------------------------------------------------------------------


def run_json(block: Block, work: Path) -> None:
    value = json.loads(block.text)
    what = block.directive or ""
    if what.startswith("equals "):
        assert value == json.loads((work / what.removeprefix("equals ")).read_text(encoding="utf-8")), block.where
    elif what.startswith("a line of "):
        lines = (work / what.removeprefix("a line of ")).read_text(encoding="utf-8").splitlines()
        assert value in [json.loads(line) for line in lines], f"{block.where}: no such line"
    else:
        assert not what, f"{block.where}: unknown directive {what!r}"


# --- the pages ------------------------------------------------------------------------------------------


def run_block(block: Block, work: Path) -> None:
    assert block.language in LANGUAGES, f"{block.where}: a block in {block.language or 'no language'}"
    if block.language == "toml":
        run_toml(block, work)
    elif block.language == "python":
        run_python(block, work)
    elif block.language == "console":
        run_console(block, work)
    elif block.language == "sh":
        check_sh(block, work)
    elif block.language == "json":
        run_json(block, work)


@pytest.mark.parametrize("page", PAGES, ids=[str(p.relative_to(ROOT)) for p in PAGES])
def test_every_example_of_the_page_runs(page: Path, tmp_path: Path) -> None:
    shutil.copytree(ROOT / "scenarios", tmp_path / "scenarios", ignore=shutil.ignore_patterns("*.py", "__pycache__"))
    for block in blocks(page):
        run_block(block, tmp_path)


def test_the_readme_quick_start_is_what_ci_runs() -> None:
    quick = [b for b in blocks(ROOT / "README.md") if b.language == "sh"][0]
    assert commands(quick.text) == ["pip install -e '.[test]' && sandbox run", "python -m pytest"]
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8").splitlines()
    for command in ("pip install -e '.[test]' && sandbox run", "python -m pytest"):
        # as written, or with its status kept for .ci/run to report (`python -m pytest || status=$?`)
        ran = any(line.strip() in (command, f"{command} || status=$?") for line in ci)
        assert ran, f".ci/run does not run {command!r}"


def test_the_harness_catches_a_wrong_example(tmp_path: Path) -> None:
    shutil.copytree(ROOT / "scenarios", tmp_path / "scenarios", ignore=shutil.ignore_patterns("*.py", "__pycache__"))
    page = tmp_path / "page.md"
    page.write_text("```console\n$ sandbox run textbook\nsomething it never says\n```\n", encoding="utf-8")
    with pytest.raises(AssertionError, match="did not print"):
        run_block(blocks(page)[0], tmp_path)
    page.write_text("```console\n$ sandbox run textbook --seed x\n```\n", encoding="utf-8")
    with pytest.raises(AssertionError, match="exited 2"):
        run_block(blocks(page)[0], tmp_path)
    page.write_text('```toml\nname = "one"\n[[markets]]\nsymbol = "A"\nmark_price = "1"\n'
                    'initial_margin = "0.1"\nmaintenance_margin = "0.05"\n[[accounts]]\nid = "a"\n'
                    'positions = [{ market = "A", size = "1", entry_price = "1" }]\n```\n', encoding="utf-8")
    with pytest.raises(Exception, match="net to zero"):
        run_block(blocks(page)[0], tmp_path)
    page.write_text("```sh\nsandbox sweep demo --set nope=1 --seeds 2\n```\n", encoding="utf-8")
    with pytest.raises(Exception, match="nope"):
        run_block(blocks(page)[0], tmp_path)


def test_edit_replaces_a_key_in_its_table() -> None:
    text = 'name = "a"\n[insurance_fund]\nbalance = "5"\n[[markets]]\nbalance = "7"\n'
    assert edit(text, '[insurance_fund]\nbalance = "20"\n') == 'name = "a"\n[insurance_fund]\nbalance = "20"\n' \
        '[[markets]]\nbalance = "7"\n'
    with pytest.raises(AssertionError, match="0 times"):
        edit(text, '[insurance_fund]\nfund = "1"\n')


# --- the site ------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The site, built as .ci/run builds it: strictly, so a broken link or anchor fails."""
    out = tmp_path_factory.mktemp("site")
    proc = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(out)], cwd=ROOT,
                          capture_output=True, text=True, timeout=600, env={**os.environ, "NO_MKDOCS_2_WARNING": "1"})
    assert proc.returncode == 0, proc.stderr
    return out


def test_the_site_builds_strictly_and_links_nothing_it_loads_to_elsewhere(site: Path) -> None:
    assert (site / "tutorial" / "index.html").exists()
    loads = re.compile(r"""<(?:script|link|img|iframe|source)\b[^>]*\b(?:src|href)\s*=\s*["'](?:https?:)?//""")
    for page in site.rglob("*.html"):
        text = page.read_text(encoding="utf-8")
        assert not loads.search(text), f"{page}: {loads.search(text)}"
        assert "fonts.googleapis" not in text and "fonts.gstatic" not in text, page
    for css in site.rglob("*.css"):
        assert not re.search(r"@import\s+url\(\s*[\"']?(?:https?:)?//", css.read_text(encoding="utf-8")), css
    cli = (site / "reference" / "cli" / "index.html").read_text(encoding="utf-8")
    for name in ("run", "list", "explore", "replay", "variants", "check-log", "soak", "bench", "sweep"):
        assert f"sandbox {name}" in cli


def test_the_site_in_a_browser_requests_nothing_from_elsewhere(site: Path) -> None:
    import functools
    import threading
    from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

    from .chromium import Chromium, require_chromium

    class Quiet(SimpleHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Quiet, directory=str(site)))  # a free port
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{server.server_address[1]}/"
    try:
        with Chromium(require_chromium(), width=1280, height=900) as browser:
            for path in ("", "tutorial/", "concepts/glossary/", "reference/cli/", "reference/python-api/"):
                load = browser.load(base + path, settle=1.0)
                assert load.errors == [], (path, load.errors)
                elsewhere = [r for r in load.requests if not r.startswith((base, "data:"))]
                assert elsewhere == [], (path, elsewhere)
                assert browser.evaluate("document.querySelector('article h1').textContent") != ""
    finally:
        server.shutdown()
        server.server_close()


def test_the_cli_reference_is_generated_from_the_parser() -> None:
    sys.path.insert(0, str(DOCS / "_hooks"))
    try:
        import reference
    finally:
        sys.path.remove(str(DOCS / "_hooks"))
    text = reference.cli_reference()
    parser = _parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    for name, command in sub.choices.items():
        assert f"## `sandbox {name}`" in text
        for action in command._actions:
            if isinstance(action, argparse._HelpAction):  # every command has -h; the table leaves it out
                continue
            for option in action.option_strings:
                assert f"`{option}" in text, (name, option)
    page = (DOCS / "reference" / "cli.md").read_text(encoding="utf-8")
    assert reference.CLI_MARKER in page and "## `sandbox" not in page  # nothing copied by hand


def test_nothing_refers_to_a_folder_outside_the_project() -> None:
    # The folder name is spelt in two parts so that this file does not match itself.
    shared = "sha" + "red"
    outside = re.compile(rf"{shared}/reference|\.\./{shared}")
    found = []
    for path in ROOT.rglob("*"):
        if any(part in (".git", ".venv", "site", "__pycache__", ".hypothesis") or part.endswith(".egg-info")
               for part in path.relative_to(ROOT).parts):
            continue
        if path.is_file() and path.suffix in (".md", ".py", ".toml", ".yml", ".txt", "") and path != Path(__file__):
            text = path.read_text(encoding="utf-8", errors="replace")
            found += [f"{path.relative_to(ROOT)}: {m.group()}" for m in outside.finditer(text)]
    assert found == []
