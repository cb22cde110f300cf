"""A long, busy scenario for the durable-log tests and for measuring the event writer.

With the defaults it is about 230 KB (under the 256 KiB limit on scenario
files) and its run logs about 9,000 events.

Rounds of market-maker quotes crossed by traders (each crossing: two orders
placed, a trade, two fills, two fees), with the mark drifting down through a
ladder of thin longs so that liquidations (surpluses, fund takeovers, ADL)
happen along the way.
"""

from __future__ import annotations

from decimal import Decimal


def long_scenario_toml(rounds: int = 600, traders: int = 20, thin_longs: int = 40) -> str:
    lines = [
        'name = "long"',
        'description = "A long busy run: quotes crossed by traders, the mark drifting through thin longs."',
        "seed = 1",
        '[insurance_fund]\nbalance = "20"',
    ]
    for symbol, mark in (("PUNK", 100), ("BAYC", 50)):
        lines.append(
            f'[[markets]]\nsymbol = "{symbol}"\nmark_price = "{mark}"\ninitial_margin = "0.1"\n'
            'maintenance_margin = "0.05"\ntick_size = "0.01"\nlot_size = "0.01"\n'
            'maker_fee = "0.0015"\ntaker_fee = "0.0015"'
        )
    lines.append('[[accounts]]\nid = "mm"\ndeposit = "1000000000"')
    for i in range(traders):
        lines.append(f'[[accounts]]\nid = "t{i}"\ndeposit = "100000"')
    # Thin longs opened against one well-funded short: each dies at a different mark.
    for i in range(thin_longs):
        lines.append(
            f'[[accounts]]\nid = "l{i}"\ndeposit = "{6 + i % 9}"\n'
            'positions = [{ market = "PUNK", size = "1", entry_price = "100" }]'
        )
    lines.append(
        f'[[accounts]]\nid = "s"\ndeposit = "100000"\n'
        f'positions = [{{ market = "PUNK", size = "-{thin_longs}", entry_price = "100" }}]'
    )
    events = []
    mark = Decimal(100)
    for k in range(rounds):
        at = k + 1
        symbol = "PUNK" if k % 2 else "BAYC"
        p = mark if symbol == "PUNK" else Decimal(50)
        t = f"t{k % traders}"
        ask, bid = p + Decimal("0.5"), p - Decimal("0.5")
        for account, side, price, tif in (("mm", "sell", ask, "gtc"), (t, "buy", ask, "ioc"),
                                          ("mm", "buy", bid, "gtc"), (t, "sell", bid, "ioc")):
            events.append(
                f'{{at={at},type="order",account="{account}",market="{symbol}",side="{side}",'
                f'price="{price}",size="1",tif="{tif}"}}'
            )
        if k % 15 == 14:  # the mark drifts down, then recovers
            mark = mark - Decimal(1) if (k // 15) % 60 < 45 else mark + Decimal(1)
            events.append(f'{{at={at},type="mark_price",market="PUNK",price="{mark}"}}')
    # Top-level keys come before the first table header.
    lines.insert(3, "events = [\n" + ",\n".join(events) + ",\n]")
    return "\n".join(lines) + "\n"
