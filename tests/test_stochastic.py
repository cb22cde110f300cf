"""Stochastic scenarios: generated from the run's seed, reproducible, and held to every rule of a written one."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import tomllib
from decimal import Decimal
from pathlib import Path

import pytest

from sandbox import ScenarioError, bundled_scenarios, load_scenario, parse_scenario, run_scenario_sync
from sandbox._core.money import parse_units
from sandbox._scenario.generators import Draws, to_gwei_down, to_lot_down, to_tick

MARKET = """
name = "gen"
seed = 0
[[markets]]
symbol = "PUNK"
mark_price = "100"
initial_margin = "0.1"
maintenance_margin = "0.05"
tick_size = "0.01"
lot_size = "0.01"
"""


def gen(body: str, seed: int = 0) -> object:
    doc = tomllib.loads(MARKET + textwrap.dedent(body))
    doc["seed"] = seed
    return parse_scenario(doc, "gen.toml")


def price(text: str) -> int:
    return parse_units(text, 9)


def marks(scenario) -> list[tuple[int, str]]:
    return [(e.at_ms, str(Decimal(e.price) / 10**9)) for e in scenario.events if e.type == "mark_price"]


def test_a_walk_without_volatility_or_jumps_follows_its_drift_rounded_to_the_tick():
    s = gen("""
        [[price_paths]]
        market = "PUNK"
        steps = 3
        interval = "0.5"
        drift = "0.1"
        """)
    # 100 * e^0.1 = 110.517..., e^0.2 = 122.140..., e^0.3 = 134.985...; nearest tick, first mark at `interval`
    assert marks(s) == [(500, "110.52"), (1000, "122.14"), (1500, "134.99")]


def test_downward_jumps_only_ever_lower_the_price():
    s = gen("""
        [[price_paths]]
        market = "PUNK"
        steps = 20
        jump_probability = "1"
        jump_mean = "0.05"
        jump_direction = "down"
        """)
    prices = [e.price for e in s.events]
    assert len(prices) == 20
    assert all(b <= a for a, b in zip([price("100")] + prices, prices))
    assert prices[-1] < price("100")
    assert all(p % price("0.01") == 0 and p > 0 for p in prices)


WALK = """
[[price_paths]]
market = "PUNK"
steps = 30
volatility = "0.05"
jump_probability = "0.1"
jump_mean = "0.2"

[[market_makers]]
account = "mm"
market = "PUNK"
deposit = "100000"
levels = 2
spacing = "0.03"
size = { min = "1", max = "5" }

[[traders]]
name = "t"
market = "PUNK"
count = 12
long_fraction = "0.7"
deposit = { median = "5", sigma = "0.8", max = "50" }
leverage = { min = "1.5", max = "12" }
orders = 10
order_size = { values = ["0.1", "0.25"] }
order_offset = { min = "-0.02", max = "0.02" }
"""


def test_the_same_seed_gives_the_same_scenario_and_another_seed_another():
    a, b, c = gen(WALK, seed=7), gen(WALK, seed=7), gen(WALK, seed=8)
    assert (a.accounts, a.orders, a.events) == (b.accounts, b.orders, b.events)
    assert marks(a) != marks(c)
    assert [x.deposit for x in a.accounts] != [x.deposit for x in c.accounts]


def test_a_generated_scenario_is_the_same_in_another_process_whatever_the_hash_seed(tmp_path: Path):
    path = tmp_path / "walk.toml"
    path.write_text(MARKET + WALK)
    code = ("import sys, json; from sandbox import load_scenario; s = load_scenario(sys.argv[1]).for_seed(11); "
            "print(json.dumps([repr(s.accounts), repr(s.orders), repr(s.events)]))")
    outputs = {
        subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, text=True, check=True,
                       env={"PYTHONHASHSEED": hashseed, "PATH": ""}).stdout
        for hashseed in ("0", "4242")
    }
    assert len(outputs) == 1
    assert json.loads(outputs.pop())[2].count("mark_price") == 30


def test_starting_positions_net_to_zero_in_size_and_cost_and_the_house_holds_the_net():
    s = gen(WALK, seed=3)
    traders = [a for a in s.accounts if a.id.startswith("t-") and a.id != "t-house"]
    assert [a.id for a in traders] == [f"t-{i:02d}" for i in range(12)]
    house = next(a for a in s.accounts if a.id == "t-house")
    held = [p for a in s.accounts for p in a.positions]
    assert sum(p.size for p in held) == 0
    assert sum(p.size * p.entry_price for p in held) == 0
    assert {p.entry_price for p in held} == {price("100")}
    net = sum(a.positions[0].size for a in traders)
    assert house.positions[0].size == -net
    assert house.deposit == abs(net) * price("100")  # leverage 1 by default
    for a in traders:
        assert a.deposit % 10**9 == 0  # whole gwei
        assert a.positions[0].size % price("0.01") == 0  # on the lot
        leverage = Decimal(abs(a.positions[0].size) * a.positions[0].entry_price) / a.deposit
        assert leverage <= 12


def test_fixed_deposit_and_leverage_give_the_size_by_hand():
    s = gen("""
        [[traders]]
        name = "x"
        market = "PUNK"
        count = 4
        long_fraction = "1"
        deposit = "10"
        leverage = "5"
        house_deposit = "1000"
        """)
    by_id = {a.id: a for a in s.accounts}
    for i in range(4):  # 10 ETH x 5 / 100 = 0.5 PUNK, all long
        assert by_id[f"x-{i}"].deposit == 10 * 10**18
        assert by_id[f"x-{i}"].positions[0].size == price("0.5")
    assert by_id["x-house"].positions[0].size == -price("2")
    assert by_id["x-house"].deposit == 1000 * 10**18


def test_a_market_maker_quotes_a_ladder_and_requotes_just_before_each_mark():
    s = gen("""
        [[price_paths]]
        market = "PUNK"
        steps = 2
        drift = "0.1"

        [[market_makers]]
        account = "mm"
        market = "PUNK"
        deposit = "10000"
        levels = 2
        spacing = "0.03"
        size = "1.5"
        """)
    assert [(o.side, o.price, o.size, o.id) for o in s.orders] == [
        ("buy", price("97"), price("1.5"), "q0b1"), ("sell", price("103"), price("1.5"), "q0s1"),
        ("buy", price("94"), price("1.5"), "q0b2"), ("sell", price("106"), price("1.5"), "q0s2"),
    ]
    at_1s = [e for e in s.events if e.at_ms == 1000]
    assert [e.type for e in at_1s] == ["cancel"] * 4 + ["order"] * 4 + ["mark_price"]
    assert [e.order_id for e in at_1s[:4]] == ["q0b1", "q0s1", "q0b2", "q0s2"]
    # Around the new price 110.52: 3% away is 107.2044 -> 107.20 and 113.8356 -> 113.84.
    assert [(e.order.side, e.order.price) for e in at_1s[4:6]] == [("buy", price("107.2")), ("sell", price("113.84"))]


def test_order_flow_comes_from_the_population_within_the_path_on_the_tick_and_lot():
    s = gen(WALK, seed=5)
    flow = [e for e in s.events if e.type == "order" and e.account.startswith("t-")]
    assert len(flow) == 10
    assert all(1000 <= e.at_ms <= 30_000 for e in flow)
    assert {e.order.size for e in flow} <= {price("0.1"), price("0.25")}
    assert all(e.order.price % price("0.01") == 0 and e.order.tif == "ioc" for e in flow)


def test_a_csv_replays_its_prices_like_the_same_rows_written_inline(tmp_path: Path):
    (tmp_path / "punk.csv").write_text("at,price,note\n1,95.5,a\n2.5,80.123,b\n4,81,c\n")
    csv_file = tmp_path / "replay.toml"
    csv_file.write_text(MARKET + '[[price_paths]]\nmarket = "PUNK"\ncsv = "punk.csv"\n')
    inline = gen("""
        [[price_paths]]
        market = "PUNK"
        prices = [{ at = "1", price = "95.5" }, { at = "2.5", price = "80.123" }, { at = "4", price = "81" }]
        """)
    replayed = load_scenario(csv_file)
    assert marks(replayed) == marks(inline) == [(1000, "95.5"), (2500, "80.12"), (4000, "81")]
    # The csv is read once, at load: reseeding never goes back to the file.
    (tmp_path / "punk.csv").unlink()
    assert marks(replayed.for_seed(9)) == marks(replayed)


def test_a_run_draws_its_scenario_from_the_run_seed():
    s = gen(WALK, seed=0)
    result = run_scenario_sync(s, seed=4)
    assert result.scenario.events == gen(WALK, seed=4).events
    assert result.scenario.events != s.events
    assert result.violations == []


@pytest.mark.parametrize("seed", range(6))
def test_the_bundled_stochastic_scenario_runs_with_every_invariant_holding(seed):
    scenario = bundled_scenarios()["stochastic_crash"]()
    result = run_scenario_sync(scenario, seed=seed, check=True)
    assert result.violations == []
    assert result.log.counts["mark_price"] == 24


def test_draws_are_exact_and_in_range():
    d = Draws(1, "x")
    us = [d.uniform01() for _ in range(1000)]
    assert all(0 < u < 1 for u in us)
    assert 0.45 < float(sum(us) / len(us)) < 0.55
    zs = [Draws(2, "z").normal() for _ in range(1)] + [d.normal() for _ in range(2000)]
    mean = sum(zs) / len(zs)
    var = sum((z - mean) ** 2 for z in zs) / len(zs)
    assert abs(mean) < Decimal("0.1") and abs(var - 1) < Decimal("0.15")
    assert to_tick(Decimal("100.005"), price("0.01")) == price("100.01")  # halves up
    assert to_tick(Decimal("0.001"), price("0.01")) == price("0.01")  # at least one tick
    assert to_lot_down(Decimal("0.129"), price("0.01")) == price("0.12")
    assert to_gwei_down(Decimal("1.0000000019")) == 1_000_000_001 * 10**9


BAD = [
    ('[[price_paths]]\nmarket = "PUNK"\nsteps = 3\ncolour = "red"\n', "price_paths[0].colour", "unknown key"),
    ('[[price_paths]]\nmarket = "PUNK"\nsteps = 3\njump_probability = "1.5"\n',
     "price_paths[0].jump_probability", "must be at most 1"),
    ('[[price_paths]]\nmarket = "PUNK"\nsteps = "3"\n', "price_paths[0].steps", "expected an integer"),
    ('[[price_paths]]\nmarket = "BAYC"\nsteps = 3\n', "price_paths[0].market", "unknown market 'BAYC'"),
    ('[[price_paths]]\nmarket = "PUNK"\nsteps = 3\n[[price_paths]]\nmarket = "PUNK"\nsteps = 3\n',
     "price_paths[1].market", "a second price path"),
    ('[[price_paths]]\nmarket = "PUNK"\ncsv = "absent.csv"\n', "price_paths[0].csv", "cannot read"),
    ('[[price_paths]]\nmarket = "PUNK"\nprices = [{ at = "2", price = "9" }, { at = "1", price = "9" }]\n',
     "price_paths[0].prices[1].at", "time order"),
    ('[[traders]]\nname = "t"\nmarket = "PUNK"\ncount = 2\ndeposit = "1"\nleverage = { min = "5" }\n',
     "traders[0].leverage.max", "is required"),
    ('[[traders]]\nname = "t"\nmarket = "PUNK"\ncount = 2\ndeposit = { mean = "1" }\nleverage = "2"\n',
     "traders[0].deposit", "a distribution is a number, or a table"),
    ('[[traders]]\nname = "t"\nmarket = "PUNK"\ncount = 2\ndeposit = "-1"\nleverage = "2"\n',
     "traders[0].deposit", "must not be negative"),
    ('[[traders]]\nname = "t"\nmarket = "PUNK"\ncount = 2\ndeposit = "1"\nleverage = { values = ["2", "0"] }\n',
     "traders[0].leverage.values[1]", "must be greater than 0"),
    ('[[traders]]\nname = "t"\nmarket = "PUNK"\ncount = 0\ndeposit = "1"\nleverage = "2"\n',
     "traders[0].count", "must be between 1"),
    ('[[market_makers]]\naccount = "mm"\nmarket = "PUNK"\ndeposit = "1"\nsize = "1"\n'
     '[[market_makers]]\naccount = "mm"\nmarket = "PUNK"\ndeposit = "1"\nsize = "1"\n',
     "market_makers[1].account", "already exists"),
    ('[[market_makers]]\naccount = "mm"\nmarket = "PUNK"\ndeposit = "1"\nsize = "1"\nrequote = "yes"\n',
     "market_makers[0].requote", "expected true or false"),
    # A few lines must not ask for hours: what a scenario may generate is bounded.
    ('[[price_paths]]\nmarket = "PUNK"\nsteps = 10000\n[[market_makers]]\naccount = "mm"\nmarket = "PUNK"\n'
     'deposit = "1"\nsize = "1"\nlevels = 50\n', "market_makers[0]", "would generate 2,010,101 accounts"),
    ('[[price_paths]]\nmarket = "PUNK"\nsteps = 10001\n', "price_paths[0].steps", "must be between 1 and 10000"),
    ('[[price_paths]]\nmarket = "PUNK"\nsteps = 10000\ndrift = "10"\n', "price_paths[0]", "the walk passes"),
    ('[[traders]]\nname = "t"\nmarket = "PUNK"\ncount = 2\ndeposit = "1e50"\nleverage = "2"\n',
     "traders[0].deposit", "too large"),
    ('[[traders]]\nname = "t"\nmarket = "PUNK"\ncount = 2\ndeposit = "1e30"\nleverage = "1e30"\n',
     "traders[0].leverage", "a position of more than"),
]


@pytest.mark.parametrize(("body", "key", "problem"), BAD)
def test_a_bad_generator_key_is_named(tmp_path: Path, body: str, key: str, problem: str):
    path = tmp_path / "bad.toml"
    path.write_text(MARKET + body)
    with pytest.raises(ScenarioError) as info:
        load_scenario(path)
    assert (info.value.key, str(info.value).startswith(f"{path}: {key}: ")) == (key, True), str(info.value)
    assert problem in info.value.problem


def test_the_cli_refuses_a_bad_generator_with_one_line_and_exit_2(tmp_path: Path):
    path = tmp_path / "bad.toml"
    path.write_text(MARKET + '[[traders]]\nname = "t"\nmarket = "PUNK"\ncount = 2\ndeposit = "1"\nleverage = "x"\n')
    proc = subprocess.run([sys.executable, "-m", "sandbox", "run", str(path), "--out", str(tmp_path / "o")],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr.strip().splitlines() == [f"sandbox: {path}: traders[0].leverage: expected a decimal number, "
                                                "got 'x'"]
    assert not (tmp_path / "o").exists()
