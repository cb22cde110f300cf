"""The margin monitor's price index asks for exactly what a scan of every account would."""

from __future__ import annotations

from typing import Any

import attrs
from hypothesis import given
from hypothesis import strategies as st

from actors import MarginMonitor
from sandbox.messages import AccountUpdated, LiquidationEnded, MarkPriceUpdated, PositionView
from sandbox._scenario.load import parse_scenario

MARKETS = ("PUNK", "BAYC")


class ScanningMonitor(MarginMonitor):
    """The monitor before the index: a tick re-checks every account holding the market."""

    def __init__(self, *args: Any) -> None:
        self.by_market: dict[str, dict[str, None]] = {m: {} for m in MARKETS}
        super().__init__(*args)

    def _store(self, account: str, balance: int, positions: tuple[PositionView, ...], frozen: bool) -> None:
        old = self.accounts.get(account)
        if old is not None:
            for p in old[1]:
                self.by_market[p.market].pop(account, None)
        self.accounts[account] = (balance, positions, frozen)
        for p in positions:
            self.by_market[p.market][account] = None

    def on_MarkPriceUpdated(self, msg: MarkPriceUpdated) -> None:
        if self._adopt(msg.market, msg.price, msg.version):
            for account in list(self.by_market[msg.market]):
                self.check(account)


def _markets(rates: tuple[int, int]) -> dict[str, Any]:
    sc = parse_scenario({
        "name": "index",
        "markets": [{"symbol": m, "mark_price": "100", "initial_margin": "1", "maintenance_margin": "0.05"}
                    for m in MARKETS],
        "accounts": [],
    }, "<test>")
    return {m.symbol: attrs.evolve(m, maintenance_margin=r, mark_price=100) for m, r in zip(sc.markets, rates)}


# Entries near the mark of 100 and balances of 0..40 per unit of size put
# most accounts' liquidation prices among the ticks' prices, many on the edge.
positions = st.lists(
    st.tuples(st.sampled_from(MARKETS), st.integers(-20, 20).filter(bool), st.integers(80, 120), st.integers(-3, 3)),
    min_size=0, max_size=2, unique_by=lambda t: t[0],
).map(lambda ps: tuple(PositionView(m, size, size * price + off) for m, size, price, off in ps))
accounts = st.tuples(st.integers(0, 40), st.integers(-5, 5), positions).map(
    lambda t: (t[0] * max([abs(p.size) for p in t[2]], default=1) + t[1], t[2]))
steps = st.lists(st.one_of(
    st.tuples(st.just("tick"), st.sampled_from(MARKETS), st.integers(50, 150)),
    st.tuples(st.just("update"), st.integers(0, 9), accounts, st.booleans()),
    st.tuples(st.just("ended"), st.integers(0, 9)),
), max_size=40)


@given(
    rates=st.tuples(st.sampled_from([1, 5_000, 50_000, 333_333, 500_000, 999_999]), st.integers(1, 999_999)),
    opening=st.lists(accounts, min_size=1, max_size=10),
    steps=steps,
)
def test_the_index_asks_for_exactly_the_accounts_a_full_scan_does(rates, opening, steps):
    markets = _markets(rates)
    book = {f"a{i}": a for i, a in enumerate(opening)}
    sent: dict[str, list[Any]] = {"indexed": [], "scan": []}
    monitors = {"indexed": MarginMonitor(markets, book), "scan": ScanningMonitor(markets, book)}
    for name, mon in monitors.items():
        mon.send = lambda recipient, message, out=sent[name]: out.append((recipient, message))
        mon.emit = lambda kind, **fields: None
    versions = {m: 0 for m in MARKETS}
    for step in steps:
        if step[0] == "tick":
            versions[step[1]] += 1
            msg: Any = MarkPriceUpdated(step[1], step[2], versions[step[1]])
        elif step[0] == "update":
            (balance, ps), frozen = step[2], step[3]
            msg = AccountUpdated(f"a{step[1]}", balance, ps, frozen)
        else:
            msg = LiquidationEnded(0, f"a{step[1]}", "settled", ())
        for mon in monitors.values():
            getattr(mon, "on_" + type(msg).__name__)(msg)
        assert sent["indexed"] == sent["scan"]
