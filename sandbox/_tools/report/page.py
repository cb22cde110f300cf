"""The page: the report's HTML, its cards, story and charts, under a Content-Security-Policy that loads nothing."""

from __future__ import annotations

import html
from typing import Final


from sandbox._tools.narrate import narrate
from sandbox._tools.plain import plain

from sandbox._tools.report.accounts import choose_accounts
from sandbox._tools.report.axis import Bands, fmt_time
from sandbox._tools.report.charts import change_positions, chart_accounts, chart_fund, chart_marks, chart_open_interest
from sandbox._tools.report.recording import COLOURS, fmt_held, Recording, SEQUENCE_LIMIT
from sandbox._tools.report.rows import Arrow, summarise_trace
from sandbox._tools.report.sequence import chart_sequence
from sandbox._tools.report.stepper import _STEP_JS_HASH, stepper_html
from sandbox.messages import Event


# --- the page -----------------------------------------------------------------------------------

_CSS: Final = """
:root { --ink: #1f2933; --muted: #5f6b7a; --line: #d9dee5; --accent: #7b1fa2; }
* { box-sizing: border-box; }
body { margin: 0; font: 15px/1.55 "DejaVu Sans", "Segoe UI", Helvetica, Arial, sans-serif; color: var(--ink);
       background: #f6f7f9; }
main { max-width: 1060px; margin: 0 auto; padding: 28px 28px 60px; background: #fff; }
h1 { font-size: 26px; margin: 0 0 4px; }
h2 { font-size: 19px; margin: 38px 0 6px; padding-top: 14px; border-top: 1px solid var(--line); }
.sub { color: var(--muted); margin: 0 0 14px; }
.description { background: #f3e5f5; border-left: 4px solid var(--accent); padding: 10px 14px; margin: 0 0 16px; }
.cards { display: grid; grid-template-columns: repeat(auto-fill, minmax(118px, 1fr)); gap: 10px; margin: 14px 0; }
.card { border: 1px solid var(--line); border-radius: 6px; padding: 8px 12px; }
.card b { display: block; font-size: 20px; }
.card span { color: var(--muted); font-size: 13px; }
.card.bad b { color: #c62828; } .card.good b { color: #2e7d32; }
.explain { margin: 4px 0 10px; }
.note { color: var(--muted); font-size: 13px; }
figure { margin: 8px 0 0; }
svg.chart { display: block; width: 100%; height: auto; }
.seq { overflow-x: auto; }
/* The diagram and its stepping panel may be wider than the text: up to 1360 px, centred on the page. */
#sequence { width: min(1360px, calc(100vw - 24px)); margin-left: calc(50% - min(680px, calc(50vw - 12px))); }
table { border-collapse: collapse; font-size: 13px; margin: 8px 0; }
th, td { border-bottom: 1px solid var(--line); padding: 4px 10px; text-align: left; vertical-align: top; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
ol.story { font-size: 13.5px; padding-left: 0; list-style: none; }
ol.story li { padding: 1px 0; }
ol.story .t { display: inline-block; width: 70px; color: var(--muted); }
ol.story .a { display: inline-block; width: 150px; color: var(--muted); }
.legend-key { display: inline-block; width: 14px; height: 3px; vertical-align: middle; margin: 0 4px 0 10px; }
footer { margin-top: 40px; color: var(--muted); font-size: 12.5px; }
.stepper { position: sticky; top: 0; z-index: 5; background: #fff; border: 1px solid var(--line);
           border-radius: 6px; padding: 8px 12px; margin: 8px 0; box-shadow: 0 2px 6px rgba(0,0,0,.08);
           font-size: 13.5px; }
.stepper .controls { display: flex; align-items: center; gap: 6px; flex-wrap: wrap; }
.stepper button { font: inherit; padding: 3px 10px; border: 1px solid #90a4ae; border-radius: 4px;
                  background: #eceff1; cursor: pointer; }
.stepper input[type=range] { flex: 1; min-width: 160px; }
.step-head { margin: 6px 0 2px; font-weight: bold; }
.step-said { margin: 0 0 4px; padding-left: 18px; } .step-said li.none { color: var(--muted); list-style: none; }
.step-state { display: grid; grid-template-columns: 1fr 1.6fr 1fr; gap: 12px; }
.step-state h3 { font-size: 13px; margin: 4px 0 2px; color: var(--muted); }
.step-state table { margin: 0; font-size: 12.5px; }
.step-state .changed { background: #fff3c4; }
#step-books td { white-space: pre; }
.seq g.current path { stroke-width: 4px !important; }
.seq g.current { filter: drop-shadow(0 0 3px #ffb300); }
.seq g.current text { font-weight: bold; }
"""

# Nothing may be fetched, from anywhere: the page must work offline.
# The one script the page has (the stepping view) runs because its hash is listed; any other script,
# inline or not, is refused, and so is every request.
_CSP: Final = f"default-src 'none'; style-src 'unsafe-inline'; img-src data:; script-src '{_STEP_JS_HASH}'"

_STORY_KINDS_LEFT_OUT: Final = frozenset({Event.ORDER_PLACED})


def _esc(text: object, newlines: bool = False) -> str:
    """User text in HTML: control, bidi and zero-width characters made visible, then HTML-escaped."""
    return html.escape(plain(text, newlines=newlines))


def _card(value: object, label: str, cls: str = "") -> str:
    return f'<div class="card {cls}"><b>{_esc(value)}</b><span>{_esc(label)}</span></div>'


def _positions(positions: dict[str, dict[str, str]]) -> str:
    return ", ".join(f"{fmt_held(p['size'])} {m}" for m, p in positions.items()) or "none"


def render_html(rec: Recording, limit: int = SEQUENCE_LIMIT) -> str:
    """The whole report page as one string."""
    s = rec.summary
    bands = Bands(rec.deliveries, change_positions(rec))
    choice = choose_accounts(rec)
    rows = summarise_trace(rec.deliveries, limit)
    drawn = sum(r.count for r in rows if isinstance(r, Arrow))
    n_msgs = len(rec.deliveries)
    counts = s["counts"]
    fund = s["insurance_fund"]
    ok = not rec.violations
    name = rec.scenario.name

    parts: list[str] = []
    add = parts.append
    add("<!DOCTYPE html>")
    add('<html lang="en"><head><meta charset="utf-8">')
    add(f'<meta http-equiv="Content-Security-Policy" content="{_CSP}">')
    add('<meta name="viewport" content="width=device-width, initial-scale=1">')
    add(f"<title>{_esc(name)}: perp-risk-sandbox report</title>")
    add(f"<style>{_CSS}</style></head><body><main>")
    add(f'<h1 id="title">Scenario “{_esc(name)}”</h1>')
    add(f'<p class="sub">perp-risk-sandbox teaching report · seed {rec.seed} · {_esc(rec.mode)} delivery · '
        f"{n_msgs:,} messages delivered · {len(rec.events):,} events · virtual time 0 to "
        f"{_esc(fmt_time(rec.deliveries[-1].time_ms if rec.deliveries else 0))}</p>")
    if rec.scenario.description:
        add(f'<p class="description">{_esc(rec.scenario.description, newlines=True)}</p>')

    add('<section id="summary"><h2>Summary</h2><div class="cards">')
    add(_card(f"{fund['initial']} → {fund['final']}", "insurance fund (ETH)"))
    add(_card(counts["liquidations"], "liquidations"))
    add(_card(counts["bankruptcies"], "bankruptcies"))
    add(_card(counts["fund_takeovers"], "fund takeovers"))
    add(_card(counts[Event.ADL], "positions reduced by ADL"))
    add(_card(s["fees"], "fees collected (ETH)"))
    add(_card("all held" if ok else f"{len(rec.violations)} violated", "invariants at every quiet point",
              "good" if ok else "bad"))
    add("</div>")
    if fund["positions"]:
        add(f'<p class="note">The fund ends holding {_esc(_positions(fund["positions"]))}.</p>')
    if not ok:
        add("<ul>" + "".join(f"<li><b>{_esc(v.invariant)}</b>: {_esc(v.detail)} (t = {_esc(v.time)} s)</li>"
                             for v in rec.violations) + "</ul>")
    add('<p class="explain"><b>How to read the charts.</b> The exchange runs on a virtual clock that stands still '
        "while it works through everything one event sets off: a price move reaches the margin monitor, which asks "
        "for a liquidation, whose order trades in the book, and so on, all at the same instant. So the horizontal "
        "axis gives each instant one shaded band, and inside the band draws that chain of messages in the order "
        "they were delivered. A step inside a band is a change that happened partway through the chain.</p>")
    add("</section>")

    add('<section id="mark-price"><h2>Mark price per market</h2>')
    add('<p class="explain">The mark price is the exchange’s reference price: it values every open position and '
        "decides who is liquidated. It moves only when the oracle publishes a new price. Dots are trades in the "
        "book; a red dot is a liquidation order filling, a purple one the insurance fund’s own order. The short "
        "brown dashed line is the <b>bankruptcy price</b> of a liquidated account: the price at which its equity is exactly "
        "zero. A fill better than it leaves money over for the fund; no fill at all means the account is "
        "bankrupt.</p>")
    add(f"<figure>{chart_marks(rec, bands)}</figure></section>")

    add('<section id="equity"><h2>Equity against maintenance margin</h2>')
    add('<p class="explain"><b>Equity</b> is an account’s balance plus the unrealized profit or loss of its '
        "positions at the mark price. The <b>maintenance margin</b> is the minimum equity it must keep, a fixed "
        "share of the value of its positions. When equity falls to the maintenance margin or below (red "
        "shading), the margin monitor asks the liquidation engine to take the account over. A liquidated "
        "account ends at zero; its positions are gone, so its maintenance margin drops to zero too.</p>")
    add(f'<p class="note">{_esc(choice.sentence)}</p>')
    if choice.shown:
        add(f"<figure>{chart_accounts(rec, bands, choice)}</figure>")
    add("</section>")

    add('<section id="insurance-fund"><h2>Insurance fund</h2>')
    add('<p class="explain">One insurance fund backs every market. It <b>grows</b> when a liquidation order fills '
        "better than the bankruptcy price (the surplus is what the trader’s margin had left). When an order cannot "
        "fill, the fund <b>takes the position over</b> at the bankruptcy price and tries to close it in the book, "
        "reserving the most it could lose (the light shading under the line). A close worse than "
        "the bankruptcy price is a <b>payout</b>. What the fund cannot afford to close goes to <b>ADL</b>: the most "
        "profitable, most leveraged traders on the other side are closed at the bankruptcy price. The fund never "
        "goes below zero.</p>")
    add(f"<figure>{chart_fund(rec, bands)}</figure></section>")

    add('<section id="open-interest"><h2>Open interest</h2>')
    add('<p class="explain">Open interest is the total size of all long positions in a market, which always '
        "equals the total size of all shorts: every contract has a buyer and a seller. A liquidation that trades "
        "with a new buyer leaves it unchanged; ADL closes positions on both sides at once and lowers it.</p>")
    add(f"<figure>{chart_open_interest(rec, bands)}</figure></section>")

    add('<section id="sequence"><h2>Message sequence diagram</h2>')
    add('<p class="explain">The exchange is a set of actors that share nothing and only send each other messages. '
        "Each column is an actor; each arrow is one message, from sender to recipient, top to bottom in the order "
        "it was delivered. Hover over an arrow for the details. Colours: "
        + "".join(f'<span class="legend-key" style="background:{c}"></span>{_esc(k)}' for k, c in COLOURS.items())
        + ".</p>")
    if drawn == n_msgs and len(rows) == n_msgs:
        add(f'<p class="note">All {n_msgs:,} messages are drawn.</p>')
    else:
        collapsed = sum(1 for r in rows if isinstance(r, Arrow) and r.count > 1)
        note = f"{n_msgs:,} messages in all; {drawn:,} are drawn"
        if collapsed:
            note += f" (identical messages in a row are drawn once and marked ×N: {collapsed} such arrows)"
        if drawn < n_msgs:
            note += (f"; {n_msgs - drawn:,} are only counted, in the shaded rows. The diagram keeps whole flows: "
                     "the messages that follow the first liquidation request, the first fund takeover and the first "
                     "ADL request, then the second of each, and so on, as many as fit in "
                     f"{limit} rows")
        add(f'<p class="note">{_esc(note)}.</p>')
    add('<p class="explain"><b>Step through the run.</b> The panel below replays it one row of the diagram at a '
        "time: the message just delivered is highlighted in the diagram, and the panel shows what it changed: the "
        "books’ best levels, the accounts it concerns (balance, equity and maintenance margin at the mark), the "
        "insurance fund’s balance with what it has reserved, and the marks. Changed values are shaded. Use the "
        "buttons, the slider or the keys ← → (space plays and pauses).</p>")
    add(stepper_html(rec, rows))
    add(f'<figure class="seq">{chart_sequence(rec, rows)}</figure></section>')

    story = [(e["time"], e["actor"], sentence) for _, e in rec.events
             if e["kind"] not in _STORY_KINDS_LEFT_OUT and (sentence := narrate(e)) is not None]
    add('<section id="story"><h2>What happened, step by step</h2>')
    add('<p class="explain">The narration of <code>sandbox run</code>, with exact amounts (ETH) and prices.</p>')
    cap = 400
    add(f"<details{' open' if len(story) <= 80 else ''}><summary>{len(story):,} narrated events</summary>"
        '<ol class="story">')
    for time, actor, sentence in story[:cap]:
        add(f'<li><span class="t">t = {_esc(time)} s</span><span class="a">{_esc(actor)}</span>{_esc(sentence)}</li>')
    add("</ol>")
    if len(story) > cap:
        add(f'<p class="note">… and {len(story) - cap:,} more: <code>sandbox run</code> with <code>--out DIR</code> '
            "writes every event to DIR/events.jsonl.</p>")
    add("</details></section>")

    add('<section id="end-state"><h2>End state</h2><table><thead><tr><th>account</th><th>deposited</th>'
        "<th>withdrawn</th><th>balance</th><th>positions</th></tr></thead><tbody>")
    for acct, a in s["accounts"].items():
        add(f"<tr><td>{_esc(acct)}</td><td class=num>{_esc(a['deposited'])}</td>"
            f"<td class=num>{_esc(a['withdrawn'])}</td><td class=num>{_esc(a['balance'])}</td>"
            f"<td>{_esc(_positions(a['positions']))}</td></tr>")
    add("</tbody></table><table><thead><tr><th>market</th><th>mark price</th><th>open interest</th></tr></thead><tbody>")
    for market, m in s["markets"].items():
        add(f"<tr><td>{_esc(market)}</td><td class=num>{_esc(m['mark_price'])}</td>"
            f"<td class=num>{_esc(m['open_interest_long'])}</td></tr>")
    add("</tbody></table></section>")
    add("<footer>Amounts are in ETH, prices in ETH per contract, sizes in contracts. The exchange counts in exact "
        "integers (wei, gwei, 1e-9 contract); the numbers in the text are exact, the charts round them for "
        f"drawing. Made by <code>sandbox run … --report</code>: scenario “{_esc(name)}”, seed {rec.seed}, "
        f"{_esc(rec.mode)} delivery.</footer>")
    add("</main></body></html>")
    return "\n".join(parts) + "\n"
