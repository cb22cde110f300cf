"""Small helpers for writing scenarios in tests as TOML text."""

from __future__ import annotations

import textwrap
import tomllib
from typing import Any

from sandbox import RunResult, Scenario, parse_scenario, run_scenario_sync
from sandbox._core.money import parse_units

HEADER = """
name = "test"
[insurance_fund]
balance = "{fund}"
"""


def scenario(body: str, fund: str = "0") -> Scenario:
    text = HEADER.format(fund=fund) + textwrap.dedent(body)
    return parse_scenario(tomllib.loads(text), "test.toml")


def run(body: str, fund: str = "0", seed: int = 0, **kwargs: Any) -> RunResult:
    result = run_scenario_sync(scenario(body, fund), seed=seed, **kwargs)
    assert result.violations == [], result.violations
    return result


def eth(text: str) -> int:
    """Money units (wei) of a decimal string."""
    return parse_units(text, 18, allow_negative=True)


def market(symbol: str = "PUNK", mark: str = "100", im: str = "0.1", mm: str = "0.05", extra: str = "") -> str:
    return f"""
[[markets]]
symbol = "{symbol}"
mark_price = "{mark}"
initial_margin = "{im}"
maintenance_margin = "{mm}"
{extra}
"""


def account(id: str, deposit: str, *positions: tuple[str, str, str]) -> str:
    pos = ", ".join(f'{{ market = "{m}", size = "{s}", entry_price = "{p}" }}' for m, s, p in positions)
    return f"""
[[accounts]]
id = "{id}"
deposit = "{deposit}"
positions = [{pos}]
"""


def order(account: str, market: str, side: str, price: str, size: str, **extra: str) -> str:
    more = "".join(f'{k} = "{v}"\n' for k, v in extra.items())
    return f"""
[[orders]]
account = "{account}"
market = "{market}"
side = "{side}"
price = "{price}"
size = "{size}"
{more}"""


def event(at: float, type: str, **fields: str) -> str:
    more = "".join(f'{k} = "{v}"\n' for k, v in fields.items())
    return f"""
[[events]]
at = {at}
type = "{type}"
{more}"""


def summary_of(result: RunResult) -> dict[str, Any]:
    return result.summary()


def balance(result: RunResult, account: str) -> str:
    return result.summary()["accounts"][account]["balance"]


def fund(result: RunResult) -> str:
    return result.summary()["insurance_fund"]["final"]


# A [policy] table that makes the fund close at once and hand the rest to ADL.
ONE_SHOT = """
[policy]
fund_inventory = "close"
"""


def one_shot(s: Scenario, **policy: Any) -> Scenario:
    """``s`` under the one-shot fund policy: one order, then ADL for the rest (``fund_inventory = "close"``)."""
    import attrs

    return attrs.evolve(s, policy=attrs.evolve(s.policy, fund_inventory="close", **policy))
