"""Bad scenarios are refused with one message naming the file, the key and the problem."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from sandbox import ScenarioError, load_scenario

GOOD = """
name = "ok"
[insurance_fund]
balance = "50"

[[markets]]
symbol = "PUNK"
mark_price = "100"
initial_margin = "0.1"
maintenance_margin = "0.05"

[[accounts]]
id = "alice"
deposit = "10"
positions = [{ market = "PUNK", size = "1", entry_price = "100" }]

[[accounts]]
id = "bob"
deposit = "10"
positions = [{ market = "PUNK", size = "-1", entry_price = "100" }]

[[orders]]
account = "bob"
market = "PUNK"
side = "buy"
price = "93"
size = "1"
id = "bid"

[[events]]
at = 1
type = "mark_price"
market = "PUNK"
price = "94"
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "s.toml"
    path.write_text(text)
    return path


def test_the_good_scenario_loads(tmp_path):
    s = load_scenario(write(tmp_path, GOOD))
    assert s.name == "ok" and s.fund_balance == 50 * 10**18
    assert s.accounts[0].positions[0].size == 10**9


CASES = [
    # (replace this, with this, key, problem)
    ('deposit = "10"\npositions = [{ market = "PUNK", size = "1"', 'deposit = "-10"\npositions = [{ market = "PUNK", size = "1"',
     "accounts[0].deposit", "must not be negative"),
    ('maintenance_margin = "0.05"', 'maintenance_margin = "0.1"', "markets[0].maintenance_margin", "must be below initial_margin"),
    ('maintenance_margin = "0.05"', 'maintenance_margin = "0.05"\ncolour = "red"', "markets[0].colour", "unknown key"),
    ('balance = "50"', 'balance = "50.0000000000000000001"', "insurance_fund.balance", "more than 18 decimal places"),
    ('mark_price = "100"', 'mark_price = "1.0000000001"', "markets[0].mark_price", "more than 9 decimal places"),
    ('mark_price = "100"', "mark_price = true", "markets[0].mark_price", "boolean"),
    ('mark_price = "100"', 'mark_price = "a lot"', "markets[0].mark_price", "expected a decimal number"),
    ('account = "bob"', 'account = "carol"', "orders[0].account", "unknown account 'carol'"),
    ('market = "PUNK"\nprice = "94"', 'market = "BAYC"\nprice = "94"', "events[0].market", "unknown market 'BAYC'"),
    ('size = "-1", entry_price = "100"', 'size = "-2", entry_price = "100"', "accounts", "do not net to zero"),
    ('side = "buy"', 'side = "up"', "orders[0].side", "must be one of buy, sell"),
    ('type = "mark_price"', 'type = "moon"', "events[0].type", "must be one of"),
    ('name = "ok"', "name = 5", "name", "expected a string"),
    ('name = "ok"', "", "name", "is required"),
    ("at = 1", "at = -1", "events[0].at", "must not be negative"),
    ('id = "alice"', 'id = "bob"', "accounts[1].id", "defined twice"),
]


@pytest.mark.parametrize(("old", "new", "key", "problem"), CASES)
def test_invalid_field_is_named(tmp_path, old, new, key, problem):
    assert old in GOOD
    path = write(tmp_path, GOOD.replace(old, new, 1))
    with pytest.raises(ScenarioError) as info:
        load_scenario(path)
    assert info.value.key == key
    assert problem in info.value.problem
    assert str(info.value).startswith(f"{path}: {key}: ")


def test_not_toml(tmp_path):
    with pytest.raises(ScenarioError, match=r"s\.toml: is not valid TOML"):
        load_scenario(write(tmp_path, "name = [unclosed"))


def test_missing_file(tmp_path):
    with pytest.raises(ScenarioError, match="no such file"):
        load_scenario(tmp_path / "absent.toml")


def test_not_utf8(tmp_path):
    path = tmp_path / "s.toml"
    path.write_bytes(b"name = \"\xff\"")
    with pytest.raises(ScenarioError, match="not UTF-8"):
        load_scenario(path)


def sandbox_cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "sandbox", *args], capture_output=True, text=True, cwd=cwd, timeout=120)


def test_cli_bad_scenario_exits_2_with_one_line_and_writes_nothing(tmp_path):
    path = write(tmp_path, GOOD.replace('maintenance_margin = "0.05"', 'maintenance_margin = "0.2"'))
    out = tmp_path / "out"
    proc = sandbox_cli("run", str(path), "--out", str(out))
    assert proc.returncode == 2
    assert proc.stdout == ""
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert str(path) in lines[0] and "markets[0].maintenance_margin" in lines[0]
    assert "Traceback" not in proc.stderr
    assert not out.exists()


@pytest.mark.parametrize("args", [("run", "no-such-scenario"), ("run", "--seed", "x"), ("frobnicate",)])
def test_cli_bad_arguments_exit_2_without_traceback(args):
    proc = sandbox_cli(*args)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert proc.stderr.strip()


def test_a_folder_named_like_a_bundled_scenario_does_not_hide_it(tmp_path, monkeypatch):
    from sandbox import resolve_scenario

    monkeypatch.chdir(tmp_path)
    (tmp_path / "demo").mkdir()  # e.g. an output folder
    assert resolve_scenario("demo").name == "demo"
