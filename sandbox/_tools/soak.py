"""A long live run: random traders, many orders, actors restarting, memory watched.

``sandbox soak`` builds a two-market exchange with a crowd of random traders
(each acting only for its own account) and a market maker, drives it in live
mode (every actor a trio task) with bursts of orders and a random-walk mark
price, crashes and restarts actors from their snapshots as it goes, checks
every invariant at every quiet point, and samples the process's resident
memory. Events are counted, not kept, so memory stays flat however long it
runs.
"""

from __future__ import annotations

import random
import resource
import time
from typing import Any, Callable, Final

import attrs
import trio

from actors import CLEARING, ORACLE, Trader, trader_name
from actors._common import book_name

from sandbox._exchange import invariants
from sandbox._core.eventlog import EventLog
from sandbox._exchange.run import prepare_run
from sandbox.messages import Event, MarkPriceObserved, ScriptedEvent
from sandbox._core.money import PRICE_DECIMALS, SIZE_DECIMALS
from sandbox._core.delivery import Faults, LiveDelivery
from sandbox._core.runtime import Runtime
from sandbox._core.actor import Violation
from sandbox._core.specs import Scenario
from sandbox._scenario.load import parse_scenario
import argparse
from rich.console import Console
from sandbox._tools.command import EXIT_OK, EXIT_VIOLATION, Command, positive
from sandbox._tools.command import seed as seed_type

__all__ = ["SoakResult", "soak", "Burst"]

MARKETS: Final = ("PUNK", "BAYC")
ORDERS_PER_BURST: Final = 100
TICK: Final = 10 ** (PRICE_DECIMALS - 2)  # 0.01
LOT: Final = 10 ** (SIZE_DECIMALS - 2)  # 0.01


@attrs.frozen
class Burst:
    """timeline -> random trader: send this many random orders for your own account."""

    orders: int


class RandomTrader(Trader):
    """Places random limit and IOC orders around the mark; keeps few orders resting."""

    def __init__(self, account: str) -> None:
        super().__init__(account)
        # Its own generator, seeded from its name's bytes (not hash(): PYTHONHASHSEED).
        self.rng = random.Random(int.from_bytes(account.encode(), "big"))
        self.marks = {m: 100 * 10**PRICE_DECIMALS for m in MARKETS}
        self.resting: list[str] = []
        self.sent = 0

    def on_ScriptedEvent(self, msg: ScriptedEvent) -> None:
        event = msg.event
        if not isinstance(event, Burst):
            return super().on_ScriptedEvent(msg)
        rng = self.rng
        for _ in range(event.orders):
            market = MARKETS[rng.randrange(len(MARKETS))]
            mark = self.marks[market]
            side = "buy" if rng.random() < 0.5 else "sell"
            offset = rng.randrange(-300, 301) * TICK
            price = max(TICK, mark + offset)
            size = rng.randrange(1, 50) * LOT
            ioc = rng.random() < 0.5
            self.sent += 1
            client_id = f"s{self.sent}"
            self.handle.place(client_id, market, side, price, size, "ioc" if ioc else "gtc")
            if not ioc:
                self.resting.append(client_id)
                if len(self.resting) > 4:
                    self.handle.cancel(self.resting.pop(0))
        if self.sent % 2000 < event.orders:
            self.handle.deposit(50 * 10**18)  # topped up now and then, so it keeps trading


@attrs.frozen
class SoakResult:
    orders: int
    seconds: float
    deliveries: int
    events: int
    restarts: int
    liquidations: int
    rejected_orders: int
    rss_mb: list[tuple[int, float]]  # (orders so far, resident MiB)
    violations: list[Violation]

    @property
    def orders_per_s(self) -> float:
        return self.orders / self.seconds if self.seconds else 0

    @property
    def rss_growth_mb(self) -> float:
        """Resident memory at the end minus after the first tenth (warm-up)."""
        if len(self.rss_mb) < 2:
            return 0
        return self.rss_mb[-1][1] - self.rss_mb[min(1, len(self.rss_mb) - 1)][1]


def soak_scenario(traders: int, seed: int) -> Scenario:
    accounts: list[dict[str, Any]] = [{"id": f"t{i}", "deposit": "200"} for i in range(traders)]
    accounts.append({"id": "mm", "deposit": "10000000"})
    orders = []
    for m in MARKETS:
        for k in range(1, 6):
            orders.append({"account": "mm", "market": m, "side": "buy", "price": str(100 - 2 * k), "size": "1000"})
            orders.append({"account": "mm", "market": m, "side": "sell", "price": str(100 + 2 * k), "size": "1000"})
    return parse_scenario({
        "name": "soak",
        "description": "random traders, a market maker, a random-walk mark, actors restarting",
        "seed": seed,
        "insurance_fund": {"balance": "1000"},
        "markets": [
            {"symbol": m, "mark_price": "100", "initial_margin": "0.1", "maintenance_margin": "0.05",
             "tick_size": "0.01", "lot_size": "0.01", "maker_fee": "0.0002", "taker_fee": "0.0005"}
            for m in MARKETS
        ],
        "accounts": accounts,
        "orders": orders,
    }, "<soak>")


def _rss_mb() -> float:
    with open("/proc/self/statm") as f:
        pages = int(f.read().split()[1])
    return pages * resource.getpagesize() / 2**20


def soak(
    orders: int = 1_000_000,
    traders: int = 50,
    restart_ppm: int = 20,
    seed: int = 0,
    progress: Callable[[int], None] | None = None,
) -> SoakResult:
    """Run the soak; ``restart_ppm`` is the chance per message that its recipient crashes first."""
    sc = soak_scenario(traders, seed)
    faults = Faults(crash=restart_ppm, crash_actors=(CLEARING, "insurance_fund", "margin_monitor",
                                                      "liquidation_engine", "adl", book_name("PUNK")),
                    snapshot_every=500)
    log = EventLog(keep=False)
    sc = attrs.evolve(sc, faults=faults)
    rt, timeline = prepare_run(sc, LiveDelivery(faults, seed), {"trader": RandomTrader}, log, seed=seed)
    for i in range(traders):
        if trader_name(f"t{i}") not in rt.actors:
            rt.add(RandomTrader(f"t{i}"))
    rng = random.Random(seed)
    bursts = -(-orders // ORDERS_PER_BURST)
    marks = {m: 100 * 10**PRICE_DECIMALS for m in MARKETS}
    at = 0
    for b in range(bursts):
        at += 10
        if b % 20 == 0:
            m = MARKETS[rng.randrange(len(MARKETS))]
            # A bounded random walk: 100 +- a few percent, sometimes a jolt.
            step = rng.randrange(-200, 201) * TICK * (5 if rng.random() < 0.05 else 1)
            marks[m] = min(max(marks[m] + step, 80 * 10**PRICE_DECIMALS), 120 * 10**PRICE_DECIMALS)
            timeline.append((at, ORACLE, MarkPriceObserved(m, marks[m])))
        count = min(ORDERS_PER_BURST, orders - b * ORDERS_PER_BURST)
        timeline.append((at, trader_name(f"t{b % traders}"), ScriptedEvent(Burst(count))))

    samples: list[tuple[int, float]] = [(0, _rss_mb())]
    found: list[Violation] = []
    seen: set[tuple[str, str]] = set()
    done = [0]
    every = max(1, bursts // 10)
    quiet_count = [0]

    def on_quiet(runtime: Runtime) -> None:
        quiet_count[0] += 1
        for v in invariants.check_all(runtime, sc.fund_balance):
            if (v.invariant, v.detail) not in seen:
                seen.add((v.invariant, v.detail))
                found.append(v)
        sent = sum(t.sent for name, t in runtime.actors.items() if name.startswith("trader:"))
        if sent // (ORDERS_PER_BURST * every) > done[0]:
            done[0] = sent // (ORDERS_PER_BURST * every)
            samples.append((sent, _rss_mb()))
            if progress is not None:
                progress(sent)

    start = time.perf_counter()
    trio.run(rt.run, timeline, on_quiet)
    seconds = time.perf_counter() - start
    samples.append((orders, _rss_mb()))
    return SoakResult(
        orders=orders,
        seconds=seconds,
        deliveries=rt.delivery.delivered,  # type: ignore[attr-defined]
        events=len(log),
        restarts=log.counts[Event.ACTOR_RESTARTED],
        liquidations=log.counts[Event.LIQUIDATION_STARTED],
        rejected_orders=log.counts[Event.ORDER_REJECTED],
        rss_mb=samples,
        violations=found + [v for v in rt.violations if v not in found],
    )


# --- the command ------------------------------------------------------------


def _arguments(soak: argparse.ArgumentParser) -> None:
    soak.add_argument("--orders", type=positive("--orders"), default=1_000_000, help="orders to send (default 1000000)")
    soak.add_argument("--traders", type=positive("--traders"), default=50, help="random traders (default 50)")
    soak.add_argument("--restart-ppm", type=positive("--restart-ppm"), default=20,
                      help="chance per message, in ppm, that its recipient crashes and restarts first (default 20)")
    soak.add_argument("--seed", type=seed_type, default=0)


def _soak(args: argparse.Namespace, console: Console) -> int:
    console.print(f"soak: {args.orders} orders from {args.traders} random traders, live mode, "
                  f"restarts at {args.restart_ppm} ppm per message", highlight=False)
    r = soak(orders=args.orders, traders=args.traders, restart_ppm=args.restart_ppm, seed=args.seed,
             progress=lambda n: console.print(f"  {n:>9} orders sent", highlight=False))
    console.print(
        f"{r.orders} orders in {r.seconds:.1f} s ({r.orders_per_s:.0f} orders/s, {r.deliveries} messages, "
        f"{r.events} events); {r.restarts} actor restarts, {r.liquidations} liquidations, "
        f"{r.rejected_orders} orders rejected", highlight=False)
    console.print("resident memory (MiB) by orders sent: "
                  + ", ".join(f"{n}: {mb:.1f}" for n, mb in r.rss_mb)
                  + f"; growth after warm-up {r.rss_growth_mb:+.1f} MiB", highlight=False)
    if r.violations:
        for v in r.violations:
            console.print(f"[bold red]invariant violated[/bold red]: {v.invariant}: {v.detail}", highlight=False)
        return EXIT_VIOLATION
    console.print("[green]every invariant held at every quiet point[/green]", highlight=False)
    return EXIT_OK


COMMAND = Command("soak", "a long live run: random traders, restarts, memory and invariants watched", _arguments, _soak)
