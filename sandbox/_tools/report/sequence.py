"""The message sequence diagram of the actors (SVG)."""

from __future__ import annotations

from collections import Counter
from typing import Any, Callable, Final, Sequence


from actors._common import ADL, CLEARING, ENGINE, FUND, MONITOR, ORACLE

from sandbox._tools.narrate import narrate

from sandbox._tools.report.axis import fmt_time
from sandbox._tools.report.charts import _RC, _svg
from sandbox._tools.report.recording import COLOURS, Delivered, Recording
from sandbox._tools.report.rows import Arrow, Gap, Row


# --- the sequence diagram --------------------------------------------------------------------

_HEADER_EVERY: Final = 50
# 9.5 pt in the SVG's units; the diagram is never scaled below its natural
# size (min_scale 1), so every label is at least 9.5 x 4/3 = 12.7 CSS px.
_SEQ_FONT: Final = 9.5
_FIXED_ORDER: Final = ("timeline", "traders", ORACLE, MONITOR, ENGINE, CLEARING, "books", FUND, ADL)


def lifelines(deliveries: Sequence[Delivered]) -> tuple[list[str], Callable[[str], str]]:
    """The diagram's columns, and which column an actor is drawn on.

    Traders share one column when there are more than three, and books when
    there are more than six markets, so the diagram stays readable.
    """
    names = {d.sender for d in deliveries} | {d.recipient for d in deliveries}
    traders = sorted(n for n in names if n.startswith("trader:"))
    books = sorted(n for n in names if n.startswith("book:"))
    merge_traders, merge_books = len(traders) > 3, len(books) > 6

    def column(name: str) -> str:
        if merge_traders and name.startswith("trader:"):
            return "trader:*"
        if merge_books and name.startswith("book:"):
            return "book:*"
        return name

    order: list[str] = []
    for slot in _FIXED_ORDER:
        if slot == "traders":
            order += ["trader:*"] if merge_traders else traders
        elif slot == "books":
            order += ["book:*"] if merge_books else books
        elif slot in names:
            order.append(slot)
    order += sorted(column(n) for n in names if column(n) not in order)
    return list(dict.fromkeys(order)), column


def _stimuli(rec: Recording) -> dict[int, str]:
    """For each instant, what the scenario did then: " · mark price of PUNK: 100 -> 94"."""
    count: Counter[int] = Counter(d.time_ms for d in rec.deliveries if d.sender == "timeline" and d.type != "Started")
    first: dict[int, str] = {}
    for _, e in rec.events:
        ms = round(e["time"] * 1000)
        if ms not in first and (sentence := narrate(e)) is not None:
            first[ms] = sentence
    out = {}
    for ms, n in count.items():
        if n > 1:
            out[ms] = f" · {n} scripted events"
        elif ms in first:
            out[ms] = f" · {first[ms]}"
    return out


def chart_sequence(rec: Recording, rows: Sequence[Row]) -> str:
    import matplotlib
    from matplotlib.figure import Figure
    from matplotlib.patches import FancyArrowPatch

    columns, column = lifelines(rec.deliveries)
    xpos = {c: i for i, c in enumerate(columns)}
    # One header line per instant, then its rows.
    # A long diagram repeats the actors' names every HEADER_EVERY lines.
    lines: list[tuple[str, Any]] = []
    last_time: int | None = None
    since_header = 0
    for k, r in enumerate(rows):
        if since_header >= _HEADER_EVERY and len(rows) - k > 15:
            lines += [("gap", None), ("header", None), ("gap", None)]
            since_header = 0
        t = r.first.time_ms if isinstance(r, Arrow) else r.from_ms
        if t != last_time:
            lines.append(("time", t))
            last_time = t
        lines.append(("row", r))
        since_header += 1
    what_started = _stimuli(rec)
    height = 1.1 + 0.29 * (len(lines) + 2)
    width = max(9.5, 1.3 * len(columns) + 1.2)
    titles: dict[str, str] = {}
    with matplotlib.rc_context({**_RC, "axes.grid": False}):
        fig = Figure(figsize=(width, height))
        top = 1 - 0.7 / height
        ax = fig.add_axes((0.02, 0.25 / height, 0.96, top - 0.25 / height))
        n = len(lines)
        ax.set_xlim(-0.9, len(columns) - 0.4)
        ax.set_ylim(n + 0.5, -0.8)
        ax.axis("off")
        def names(y: float, va: str) -> None:
            for c, i in xpos.items():
                ax.text(i, y, c.replace("_", "\n", 1), ha="center", va=va, fontsize=_SEQ_FONT, fontweight="bold",
                        color="#263238", linespacing=1.1, zorder=4,
                        bbox={"boxstyle": "round,pad=0.35", "fc": "#eceff1", "ec": "#90a4ae", "lw": 0.8},
                        clip_on=False)

        for i in xpos.values():
            ax.plot([i, i], [-0.5, n + 0.4], color="#b0bec5", lw=0.8, ls=(0, (3, 3)), zorder=0)
        names(-1.0, "bottom")
        gaps = 0
        for y, (what, item) in enumerate(lines):
            if what == "gap":
                continue
            if what == "header":
                names(y, "center")
                continue
            if what == "time":
                ax.axhline(y, color="#455a64", lw=0.8, zorder=1)
                ax.text(-0.88, y - 0.12, f"t = {fmt_time(item)}{what_started.get(item, '')}", ha="left",
                        va="bottom", fontsize=_SEQ_FONT, fontweight="bold", color="#455a64")
                continue
            if isinstance(item, Gap):
                ax.axhspan(y - 0.42, y + 0.42, color="#fff8e1", zorder=0.5, lw=0)
                ax.text((len(columns) - 1) / 2, y, "⋯ " + item.label(), ha="center", va="center", fontsize=_SEQ_FONT,
                        style="italic", color="#6d4c41", zorder=3, gid=f"gap{gaps}")
                gaps += 1
                continue
            d = item.first
            x0, x1 = xpos[column(d.sender)], xpos[column(d.recipient)]
            colour = COLOURS[d.category]
            gid = f"msg{d.index}"
            times = f" ×{item.count}" if item.count > 1 else ""
            label = f"{d.type}{times}" + (f": {item.detail}" if item.detail else "")
            titles[gid] = (f"#{d.index} at t = {fmt_time(d.time_ms)}: {d.sender} → {d.recipient}: {d.type}"
                           + (f" ({item.detail})" if item.detail else "") + (f", {item.count} times" if item.count > 1 else ""))
            if x0 == x1:  # a message to itself: a small loop
                arrow = FancyArrowPatch((x0, y - 0.2), (x0, y + 0.2), connectionstyle="arc3,rad=-1.2",
                                        arrowstyle="-|>", mutation_scale=8, color=colour, lw=1.1, zorder=2)
            else:
                arrow = FancyArrowPatch((x0, y + 0.12), (x1, y + 0.12), arrowstyle="-|>", mutation_scale=9,
                                        color=colour, lw=1.3 if item.count == 1 else 2.4, zorder=2,
                                        shrinkA=0, shrinkB=0)
            arrow.set_gid(gid)
            ax.add_patch(arrow)
            ax.text((x0 + x1) / 2 if x0 != x1 else x0 + 0.12, y - 0.04, label, ha="center" if x0 != x1 else "left",
                    va="bottom", fontsize=_SEQ_FONT, color=colour, zorder=3, gid=f"msg{d.index}-label")
    return _svg(fig, "seq", "Message sequence diagram of the actors", titles, min_scale=1.0, newlines=True)
