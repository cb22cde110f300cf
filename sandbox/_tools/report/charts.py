"""The charts: marks, accounts' equity against maintenance margin, the fund, open interest (SVG by matplotlib)."""

from __future__ import annotations

import html
import io
import math
import re
from typing import TYPE_CHECKING, Any, Final, Sequence


from sandbox._tools.plain import plain

from sandbox._tools.report.accounts import AccountChoice
from sandbox._tools.report.axis import Bands, _at, _dec, _eth, _price, _size, _steps, fmt_time
from sandbox._tools.report.recording import fmt_held, fmt_trade, ADL_FLOW, COLOURS, FUND_FLOW, LIQUIDATION, Recording
from sandbox.messages import Event

if TYPE_CHECKING:
    from matplotlib.figure import Figure


# --- charts -----------------------------------------------------------------------------------

_RC: Final = {
    "svg.fonttype": "none",  # real <text>: selectable, searchable, small
    "svg.hashsalt": "perp-risk-sandbox",  # the same run gives the same bytes
    "font.family": "DejaVu Sans",
    "font.size": 9,
    "axes.titlesize": 10,
    "axes.titleweight": "bold",
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.grid": True,
    "axes.grid.axis": "y",
    "grid.color": "#dde1e6",
    "grid.linewidth": 0.6,
    "legend.frameon": False,
    "legend.fontsize": 8,
    # Account ids and symbols are user text: "$x$" must be drawn as it is, not parsed as mathtext or TeX.
    "text.parse_math": False,
    "text.usetex": False,
}


_XLABEL: Final = "virtual time: one band per instant; inside it, the cascade of messages in delivery order"


def _figure(width: float, height: float) -> Figure:
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), layout="constrained")


def _svg(fig: Figure, prefix: str, label: str, titles: dict[str, str] | None = None, min_scale: float = 0.0,
         newlines: bool = False) -> str:
    """The figure as inline SVG, ids made unique to this figure, with tooltips.

    The SVG scales down to the page's width, but not below ``min_scale`` of
    its natural size (the page scrolls sideways instead). Every text drawn
    goes through :func:`plain` first (titles, labels and legends quote
    account ids and symbols); ``newlines`` keeps line breaks, for a chart
    whose own labels have them.
    """
    import matplotlib

    _plain_texts(fig, newlines)
    buf = io.StringIO()
    with matplotlib.rc_context(_RC):
        fig.savefig(buf, format="svg", metadata={"Date": None})
    text = buf.getvalue()
    text = text[text.index("<svg"):]
    text = re.sub(r'\bid="([^"]+)"', lambda m: f'id="{prefix}-{m.group(1)}"', text)
    text = re.sub(r'url\(#([^)]+)\)', lambda m: f"url(#{prefix}-{m.group(1)})", text)
    text = re.sub(r'href="#([^"]+)"', lambda m: f'href="#{prefix}-{m.group(1)}"', text)
    text = re.sub(r'<svg([^>]*?) width="([\d.]+)pt" height="([\d.]+)pt"',
                  lambda m: f'<svg{m.group(1)} class="chart" role="img" aria-label="{html.escape(label)}" '
                            f'style="max-width:{m.group(2)}pt;min-width:{float(m.group(2)) * min_scale:.0f}pt"',
                  text, count=1)
    if titles:
        def add_title(m: re.Match[str]) -> str:
            title = titles.get(m.group(1))
            return m.group(0) if title is None else f"{m.group(0)}<title>{html.escape(plain(title))}</title>"

        text = re.sub(rf'<g id="{prefix}-([^"]+)">', add_title, text)
    return text


def _plain_texts(fig: Figure, newlines: bool = False) -> None:
    """Every text of the figure through :func:`plain`: drawn (or measured) as the visible escapes."""
    from matplotlib.text import Text as MplText

    for text in fig.findobj(MplText):
        text.set_text(plain(text.get_text(), newlines=newlines))


def _grid(n: int, one_column_up_to: int = 2) -> tuple[int, int]:
    cols = 1 if n <= one_column_up_to else 2
    return math.ceil(n / cols), cols


def _event_points(rec: Recording, kind: str, market: str | None = None) -> list[tuple[int, dict[str, Any]]]:
    return [(p, e) for p, e in rec.events if e["kind"] == kind and (market is None or e.get("market") == market)]


# The mark price is a solid dark line, a bankruptcy price a short dashed brown one: told apart in the legend
# by style as well as colour.
_MARK_COLOUR: Final = "#263238"
_BANKRUPTCY_COLOUR: Final = "#8d4e2a"
_BANKRUPTCY_DASH: Final = (0, (2.2, 1.4))
# At most this many labels in one chart's axes.
_MAX_LABELS: Final = 12
# Where a label may go, in points from its marker (dx, dy): the nearest ring first, then further up and down.
_LABEL_SPOTS: Final = tuple((dx, dy) for ring in (7, 19, 31, 43, 55) for dy in (ring, -ring) for dx in (7, -7))
# Beyond the first ring a label gets a leader line to its marker.
_LEADER_FROM: Final = 10


def place_labels(fig: Figure, ax: Any, items: Sequence[tuple[float, float, str, str]], *, crowded: str = "overlap",
                 fontsize: float = 7.5) -> list[Any]:
    """Label points (x, y, text, colour) in data coordinates so that no two labels overlap.

    A greedy placement, left to right: each label takes the first of
    :data:`_LABEL_SPOTS` (beside its marker, then further above and below it)
    where its box stays inside the axes and overlaps no label already placed
    and no other marker; a label that had to move away from its marker gets a
    thin leader line to it. When no spot is free, ``crowded="overlap"`` takes
    the spot that overlaps least, ``crowded="skip"`` leaves the label out.
    The layout is measured on the finished figure (constrained layout run
    first); the labels take no part in the layout, so it does not move after.
    The labels placed are returned.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    if not items:
        return []
    _plain_texts(fig)  # measured as they will be drawn
    items = [(x, y, plain(text), colour) for x, y, text, colour in items]
    canvas = fig.canvas if isinstance(fig.canvas, FigureCanvasAgg) else FigureCanvasAgg(fig)
    renderer = canvas.get_renderer()
    fig.draw(renderer)  # runs the constrained layout: the axes are where they will be saved
    frame = ax.get_window_extent(renderer)
    px = fig.dpi / 72  # pixels per point
    anchors = [tuple(ax.transData.transform((x, y))) for x, y, _, _ in items]
    pad = 5 * px
    markers = [(ax_ - pad, ay - pad, ax_ + pad, ay + pad) for ax_, ay in anchors]
    placed: list[tuple[float, float, float, float]] = []
    out = []

    def overlap(a: tuple[float, float, float, float], b: tuple[float, float, float, float]) -> float:
        w = min(a[2], b[2]) - max(a[0], b[0])
        h = min(a[3], b[3]) - max(a[1], b[1])
        return w * h if w > 0 and h > 0 else 0.0

    order = sorted(range(len(items)), key=lambda k: (anchors[k][0], anchors[k][1]))
    for k in order:
        x, y, text, colour = items[k]
        right_edge = anchors[k][0] > frame.x0 + 0.72 * frame.width
        spots = sorted(_LABEL_SPOTS, key=lambda s: (abs(s[1]), (s[0] > 0) == right_edge, s[1] < 0))
        best: tuple[float, Any, tuple[float, float, float, float]] | None = None
        for dx, dy in spots:
            ann = ax.annotate(text, (x, y), xytext=(dx, dy), textcoords="offset points",
                              ha="left" if dx > 0 else "right", va="bottom" if dy > 0 else "top",
                              fontsize=fontsize, color=colour, zorder=5, annotation_clip=False)
            ann.set_in_layout(False)
            bb = ann.get_window_extent(renderer)
            box = (bb.x0 - px, bb.y0 - px, bb.x1 + px, bb.y1 + px)
            outside = box[0] < frame.x0 or box[2] > frame.x1 or box[1] < frame.y0 or box[3] > frame.y1
            cost = sum(overlap(box, b) for b in placed) + sum(
                overlap(box, m) for j, m in enumerate(markers) if j != k) + (1e9 if outside else 0.0)
            if best is None or cost < best[0]:
                if best is not None:
                    best[1].remove()
                best = (cost, ann, box)
            else:
                ann.remove()
            if cost == 0:
                break
        assert best is not None
        cost, ann, box = best
        if cost > 0 and crowded == "skip":
            ann.remove()
            continue
        if abs(ann.xyann[1]) > _LEADER_FROM:  # moved away from its marker: a leader line back to it
            ha, va, offset = ann.get_ha(), ann.get_va(), ann.xyann
            ann.remove()
            ann = ax.annotate(text, (x, y), xytext=offset, textcoords="offset points", ha=ha, va=va,
                              fontsize=fontsize, color=colour, zorder=5, annotation_clip=False,
                              arrowprops={"arrowstyle": "-", "color": colour, "lw": 0.7, "shrinkA": 0, "shrinkB": 4,
                                          "relpos": (0.0 if ha == "left" else 1.0, 0.0 if va == "bottom" else 1.0)})
            ann.set_in_layout(False)
        placed.append(box)
        out.append(ann)
    return out


def chart_marks(rec: Recording, bands: Bands) -> str:
    import matplotlib

    markets = list(rec.marks)
    rows, cols = _grid(len(markets), one_column_up_to=3)
    legend: dict[str, Any] = {}
    with matplotlib.rc_context(_RC):
        fig = _figure(10, 1.1 + 2.1 * rows)
        axes = fig.subplots(rows, cols, squeeze=False, sharex=True)
        to_label: list[tuple[Any, list[tuple[float, float, str, str]]]] = []
        for i, market in enumerate(markets):
            ax = axes[i // cols][i % cols]
            bands.decorate(ax)
            xs, ys = _steps(bands, rec.marks[market], _price)
            ax.step(xs, ys, where="post", color=_MARK_COLOUR, lw=2, ls="-", label="mark price")
            trades = _event_points(rec, Event.TRADE, market)
            labels: list[tuple[int, float, str, str]] = []  # p, price, text, colour
            for kind, colour, label, says in (
                ("trader", "#90a4ae", "trade", None),
                ("liquidation", COLOURS[LIQUIDATION], "liquidation order fill", "liquidation order fills at {}"),
                ("fund", COLOURS[FUND_FLOW], "insurance fund order fill", "the fund's order fills at {}"),
            ):
                pts = [(p, _dec(e["price"]), e["price"]) for p, e in trades if e["taker_kind"] == kind]
                if pts:
                    ax.scatter([bands.x(p) for p, _, _ in pts], [y for _, y, _ in pts], s=30, color=colour,
                               zorder=3, label=label, edgecolors="white", linewidths=0.6)
                    if says:
                        labels += [(p, y, says.format(text), colour) for p, y, text in pts]
            adl = [(p, e) for p, e in _event_points(rec, Event.ADL, market)]
            if adl:
                ax.scatter([bands.x(p) for p, _ in adl], [_dec(e["price"]) for _, e in adl], s=34,
                           color=COLOURS[ADL_FLOW], marker="s", zorder=3, label="ADL at the bankruptcy price",
                           edgecolors="white", linewidths=0.6)
                labels += [(p, _dec(e["price"]), f"ADL closes {e['account']} at {e['price']}", COLOURS[ADL_FLOW])
                           for p, e in adl]
            bk = [(p, e["account"], e["bankruptcy_prices"][market])
                  for p, e in _event_points(rec, Event.LIQUIDATION_STARTED) if market in e["bankruptcy_prices"]]
            for p, acct, price in bk:  # a short dashed segment: another style than the mark's solid line
                x = bands.x(p)
                ax.plot([x - 0.1, x + 0.1], [_dec(price)] * 2, color=_BANKRUPTCY_COLOUR, lw=2.2,
                        ls=_BANKRUPTCY_DASH, zorder=4, label="bankruptcy price of a liquidation")
            labels += [(p, _dec(price), f"{acct}'s bankruptcy price {price}", _BANKRUPTCY_COLOUR)
                       for p, acct, price in bk]
            # The rarer kinds first (bankruptcy prices, ADL, then fills), as many as fit without overlap.
            labels.sort(key=lambda t: (t[3] != _BANKRUPTCY_COLOUR, t[3] != COLOURS[ADL_FLOW], t[0]))
            to_label.append((ax, [(bands.x(p), y, text, colour) for p, y, text, colour in labels[:_MAX_LABELS]]))
            ax.set_title(f"{market}: mark price", loc="left")
            ax.set_ylabel("ETH per contract")
            ax.margins(y=0.2)
            for handle, label in zip(*ax.get_legend_handles_labels()):
                legend.setdefault(label, handle)
        for j in range(len(markets), rows * cols):
            axes[j // cols][j % cols].set_visible(False)
        fig.legend(list(legend.values()), list(legend), loc="outside upper center", ncols=min(len(legend), 6))
        fig.supxlabel(_XLABEL, fontsize=8.5)
        for ax, items in to_label:
            place_labels(fig, ax, items, crowded="skip")
    return _svg(fig, "marks", "Mark price per market over time")


def chart_accounts(rec: Recording, bands: Bands, choice: AccountChoice) -> str:
    import matplotlib
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    shown = choice.shown
    if not shown:
        return ""
    rows, cols = _grid(len(shown))
    liq_at = {e["account"]: p for p, e in _event_points(rec, Event.LIQUIDATION_STARTED)}
    bankrupt = {e["account"] for _, e in _event_points(rec, Event.BANKRUPTCY)}
    call_at = {e["account"]: p for p, e in _event_points(rec, Event.MARGIN_CALL)}
    adl_at: dict[str, int] = {}
    for p, e in _event_points(rec, Event.ADL):
        adl_at.setdefault(e["account"], p)
    red, blue = COLOURS[LIQUIDATION], COLOURS[ADL_FLOW]
    with matplotlib.rc_context(_RC):
        fig = _figure(10, 1.2 + 2.2 * rows)
        axes = fig.subplots(rows, cols, squeeze=False, sharex=True)
        for i, acct in enumerate(shown):
            ax = axes[i // cols][i % cols]
            bands.decorate(ax)
            series = rec.accounts[acct]
            xs, eq = _steps(bands, series, lambda v: _eth(v[0]))
            _, mm = _steps(bands, series, lambda v: _eth(v[1]))
            for k in range(len(xs) - 1):  # shade each stretch at or below the maintenance margin
                if series[min(k, len(series) - 1)][1][1] > 0 and eq[k] <= mm[k]:
                    ax.fill_between([xs[k], xs[k + 1]], [eq[k]] * 2, [mm[k]] * 2, color=red, alpha=0.2, lw=0)
            ax.step(xs, mm, where="post", color="#ef6c00", lw=1.6, ls="--")
            ax.step(xs, eq, where="post", color="#1e88e5", lw=2)
            if acct in call_at:
                p = call_at[acct]
                ax.scatter([bands.x(p)], [_eth(_at(series, p)[0])], s=50, color=red, marker="X", zorder=4,
                           edgecolors="white", linewidths=0.6)
            if acct in adl_at:
                p = adl_at[acct]
                ax.scatter([bands.x(p)], [_eth(_at(series, p)[0])], s=46, color=blue, marker="s", zorder=4,
                           edgecolors="white", linewidths=0.6)
            when = liq_at.get(acct, adl_at.get(acct))
            suffix = f" at {fmt_time(_time_at(rec, when))}" if when is not None else ""
            if acct in bankrupt:
                suffix += ", bankrupt"
            ax.set_title(f"{acct}: {choice.reason[acct]}{suffix}", loc="left")
            ax.set_ylabel("ETH")
            ax.margins(y=0.12)
        for j in range(len(shown), rows * cols):
            axes[j // cols][j % cols].set_visible(False)
        handles = [
            Line2D([0], [0], color="#1e88e5", lw=2, label="equity"),
            Line2D([0], [0], color="#ef6c00", lw=1.6, ls="--", label="maintenance margin"),
            Patch(color=red, alpha=0.2, label="equity ≤ maintenance margin"),
            Line2D([0], [0], color=red, marker="X", ls="none", markersize=7, label="liquidation requested"),
            Line2D([0], [0], color=blue, marker="s", ls="none", markersize=6, label="closed by ADL"),
        ]
        fig.legend(handles=handles, loc="outside upper center", ncols=len(handles))
        fig.supxlabel(_XLABEL, fontsize=8.5)
    return _svg(fig, "equity", "Equity against maintenance margin per account")


_DRAWN_EVENTS: Final = frozenset({Event.TRADE, Event.MARGIN_CALL, Event.LIQUIDATION_STARTED, Event.ADL})


def change_positions(rec: Recording) -> list[int]:
    """Where anything a chart draws changes: every sample but the first of each series, drawn events."""
    out: list[int] = []
    for series in (*rec.marks.values(), *rec.open_interest.values(), *rec.accounts.values(), rec.fund):
        out += [p for p, _ in series[1:]]
    out += [p for p, e in rec.events if e["kind"] in _DRAWN_EVENTS or e["kind"].startswith("fund_")]
    return out


def _time_at(rec: Recording, p: int) -> int:
    if not rec.deliveries:
        return 0
    return rec.deliveries[min(max(p - 1, 0), len(rec.deliveries) - 1)].time_ms


_FUND_MARKERS: Final = (
    # event kind, colour, marker, legend, short label
    ("fund_surplus", "#2e7d32", "^", "surplus received", lambda e: f"+{e['amount']} surplus from {e['account']}"),
    ("fund_gain", "#2e7d32", "P", "gain closing a position", lambda e: f"+{e['amount']} gain ({e['account']})"),
    ("fund_takeover", "#ef6c00", "D", "position taken over",
     lambda e: f"takes over {e['account']}'s {fmt_held(e['size'])} {e['market']}"),
    ("adl", COLOURS[ADL_FLOW], "s", "ADL", lambda e: f"ADL: {e['account']} {fmt_trade(e['size'])} {e['market']}"),
    ("fund_payout", COLOURS[LIQUIDATION], "v", "payout", lambda e: f"−{e['amount']} paid for {e['account']}"),
    ("fund_inventory_kept", "#000000", "X", "inventory kept", lambda e: f"keeps {fmt_held(e['size'])} {e['market']}"),
    ("fund_socialized_loss", "#6a1b9a", "*", "socialized loss received",
     lambda e: f"+{e['amount']} charged to {e['market']}'s positions"),
    ("fund_revenue", "#2e7d32", "o", "revenue pool", lambda e: f"+{e['amount']} from the revenue pool"),
)


def chart_fund(rec: Recording, bands: Bands) -> str:
    import matplotlib

    with matplotlib.rc_context(_RC):
        fig = _figure(10, 3.9)
        ax = fig.subplots()
        bands.decorate(ax)
        xs, bal = _steps(bands, rec.fund, lambda v: _eth(v[0]))
        _, avail = _steps(bands, rec.fund, lambda v: _eth(v[1]))
        ax.fill_between(xs, avail, bal, step="post", color=COLOURS[FUND_FLOW], alpha=0.13, lw=0,
                        label="reserved: the most it may still lose on positions it is closing")
        ax.step(xs, bal, where="post", color=COLOURS[FUND_FLOW], lw=2.4, label="insurance fund balance")
        points = []
        for kind, colour, marker, legend, short in _FUND_MARKERS:
            pts = [(p, e) for p, e in rec.events if e["kind"] == kind]
            if not pts:
                continue
            ys = [_eth(_at(rec.fund, p)[0]) for p, _ in pts]
            ax.scatter([bands.x(p) for p, _ in pts], ys, s=60, color=colour, marker=marker, zorder=4,
                       label=legend, edgecolors="white", linewidths=0.7)
            points += [(p, y, short(e), colour) for (p, e), y in zip(pts, ys)]
        ax.set_title("Insurance fund (one for all markets)")
        ax.set_ylabel("ETH")
        ax.margins(y=0.25)
        top = ax.get_ylim()[1]
        ax.set_ylim(-0.04 * top, top)  # so a line at zero stays visible
        ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.14), ncols=3, fontsize=7.5)
        ax.set_xlabel(_XLABEL, fontsize=8.5)
        points.sort(key=lambda t: t[0])
        place_labels(fig, ax, [(bands.x(p), y, text, colour) for p, y, text, colour in points[:_MAX_LABELS]])
    return _svg(fig, "fund", "Insurance fund balance over time")


def chart_open_interest(rec: Recording, bands: Bands) -> str:
    import matplotlib

    palette = ["#00897b", "#5e35b1", "#f4511e", "#6d4c41", "#3949ab", "#c0ca33", "#d81b60", "#546e7a"]
    with matplotlib.rc_context(_RC):
        fig = _figure(10, 3.2)
        ax = fig.subplots()
        bands.decorate(ax)
        for i, (market, series) in enumerate(rec.open_interest.items()):
            xs, ys = _steps(bands, series, _size)
            ax.step(xs, ys, where="post", lw=2, color=palette[i % len(palette)], label=market)
        ax.set_title("Open interest per market (longs = shorts)")
        ax.set_ylabel("contracts")
        ax.set_ylim(bottom=0)
        ax.margins(y=0.2)
        ax.legend(loc="best")
        ax.set_xlabel(_XLABEL, fontsize=8.5)
    return _svg(fig, "oi", "Open interest per market over time")
