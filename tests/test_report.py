"""The teaching report: what it records, how it summarises, and that a browser renders it.

The browser tests open the report of the default demo in Debian's headless
Chromium (``.ci/run`` installs it) and check what a person would see: every
chart and the sequence diagram drawn at a real size, the titles, no console
error, nothing loaded from anywhere but the file itself.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import trio
from hypothesis import given, settings
from hypothesis import strategies as st

from sandbox import resolve_scenario, run_scenario
from sandbox._core.eventlog import EventLog
from sandbox.testing import scenarios
from sandbox._tools.report import (
    MAX_ACCOUNTS,
    Arrow,
    Bands,
    Delivered,
    Gap,
    Recorder,
    Recording,
    ReportPathError,
    change_positions,
    chart_marks,
    check_report_path,
    choose_accounts,
    place_labels,
    render_html,
    rows_count,
    step_data,
    summarise_trace,
    write_report,
)

from .chromium import Chromium, require_chromium
from .helpers import eth

# --- recording the demo ---------------------------------------------------------------------


def record(name: str = "demo") -> tuple[Any, Recording]:
    log = EventLog()
    recorder = Recorder()
    recorder.attach(log)
    result = trio.run(lambda: run_scenario(resolve_scenario(name), log=log, **recorder.run_options()))
    return result, recorder.finish(result)


@pytest.fixture(scope="module")
def demo() -> Recording:
    return record()[1]


def test_recorder_sees_alice_below_maintenance_margin_before_she_is_liquidated(demo):
    # At mark 94 alice's equity is 10 - 6 = 4 and her maintenance margin 5% of 94 = 4.7: a state
    # that never reaches a quiet point, because the liquidation follows in the same cascade.
    values = [v for _, v in demo.accounts["alice"]]
    assert values[0] == (eth("10"), eth("5"))
    assert (eth("4"), eth("4.7")) in values
    assert values[-1] == (0, 0)


def test_recorder_follows_the_fund_through_surplus_reservation_and_payout(demo):
    balances = [balance for _, (balance, _) in demo.fund]
    # 5, +3 surplus from alice, then -3 and -1 closing carol's short in two buys: 4 (the scenario's description).
    assert balances[0] == eth("5") and eth("8") in balances and balances[-1] == eth("4")
    # While it closes carol's short the fund reserves the most it may lose: all 8 it has.
    assert any(available == 0 and balance == eth("8") for _, (balance, available) in demo.fund)


def test_recorder_open_interest_and_marks(demo):
    # No ADL: the fund buys carol's short back from the market maker, so the longs stay 2.
    assert [v for _, v in demo.open_interest["BAYC"]] == [2 * 10**9]
    assert [v for _, v in demo.open_interest["PUNK"]] == [1 * 10**9]
    assert [v for _, v in demo.marks["PUNK"]] == [100 * 10**9, 94 * 10**9]


def test_recorder_places_events_at_the_delivery_that_caused_them(demo):
    positions = [p for p, _ in demo.events]
    assert positions == sorted(positions)
    # 28 narrated events, the three market-maker fills, opening_state and run_finished.
    assert len(demo.events) == 33 and len(demo.deliveries) == 73
    by_kind = {e["kind"]: p for p, e in demo.events}
    # The surplus is recorded by the fund while it handles SurplusTransferred.
    assert demo.deliveries[by_kind["fund_surplus"] - 1].type == "SurplusTransferred"
    assert demo.deliveries[by_kind["mark_price"] - 1].type == "MarkPriceObserved"


class SampleEverything(Recorder):
    """The slow, obvious recorder: every account after every delivery."""

    def after_delivery(self, runtime: Any, envelope: Any) -> None:
        super().after_delivery(runtime, envelope)
        self._sample(runtime, len(self.deliveries), None)


def recordings(scenario: Any, seed: int) -> tuple[Recording, Recording]:
    out = []
    for cls in (Recorder, SampleEverything):
        log = EventLog()
        recorder = cls()
        recorder.attach(log)
        result = trio.run(lambda: run_scenario(scenario, seed=seed, log=log, **recorder.run_options()))
        out.append(recorder.finish(result))
    return out[0], out[1]


@settings(max_examples=15, deadline=None)
@given(scenario=scenarios(max_markets=3, max_pairs=5, max_events=10), seed=st.integers(0, 1000))
def test_sampling_only_what_a_delivery_can_change_misses_nothing(scenario, seed):
    fast, slow = recordings(scenario, seed)
    assert fast.accounts == slow.accounts
    assert fast.open_interest == slow.open_interest
    assert fast.fund == slow.fund and fast.marks == slow.marks


def test_bands_put_each_instant_in_its_own_band_in_delivery_order(demo):
    bands = Bands(demo.deliveries, change_positions(demo))
    times = sorted({d.time_ms for d in demo.deliveries})
    assert [t for t, _, _ in bands.steps] == times == [0, 1000, 2000, 3000]
    xs = [bands.x(p) for p in range(len(demo.deliveries) + 1)]
    assert xs == sorted(xs) and len(set(xs)) == len(xs)
    # t=0 (orders resting in the book) changes nothing drawn: a narrow band.
    assert bands.widths == [Bands.QUIET_WIDTH, 1.0, 1.0, 1.0]
    for j, (_, a, b) in enumerate(bands.steps):
        for p in range(a + 1, b + 1):
            assert bands.lefts[j] < bands.x(p) < bands.lefts[j + 1]


# --- summarising the sequence diagram ------------------------------------------------------------


def d(index: int, sender: str, recipient: str, type: str, detail: str = "", category: str = "trading",
      time_ms: int = 0) -> Delivered:
    return Delivered(index, time_ms, sender, recipient, type, detail, category)


def liquidation_flow(start: int, account: str, time_ms: int, bankrupt: bool = False) -> list[Delivered]:
    steps = [
        ("margin_monitor", "liquidation_engine", "LiquidationRequested", "liquidation"),
        ("liquidation_engine", "clearing", "FreezeAccount", "liquidation"),
        ("clearing", "liquidation_engine", "AccountFrozen", "liquidation"),
        ("liquidation_engine", "book:PUNK", "SubmitOrder", "liquidation"),
        ("book:PUNK", "liquidation_engine", "OrderClosed", "liquidation"),
        ("liquidation_engine", "clearing", "TakeOverPosition", "liquidation"),
    ]
    if bankrupt:
        steps += [
            ("clearing", "insurance_fund", "PositionTakenOver", "fund"),
            ("insurance_fund", "book:PUNK", "SubmitOrder", "fund"),
            ("insurance_fund", "adl", "DeleverageRequested", "ADL"),
            ("adl", "clearing", "Deleverage", "ADL"),
        ]
    steps += [("clearing", "liquidation_engine", "LiquidationSettled", "liquidation")]
    return [d(start + k, s, r, t, account, c, time_ms) for k, (s, r, t, c) in enumerate(steps)]


def long_trace(n_liquidations: int = 60, noise: int = 40) -> list[Delivered]:
    """A crash: each liquidation is buried in account updates and mark updates."""
    out: list[Delivered] = []
    for k in range(n_liquidations):
        t = 1000 * (1 + k // 10)
        for j in range(noise):
            kind = ("clearing", "margin_monitor", "AccountUpdated") if j % 3 else ("oracle", "clearing", "MarkPriceUpdated")
            out.append(d(len(out), *kind, detail=f"acct{j}", time_ms=t,
                         category="market data" if kind[2] == "MarkPriceUpdated" else "trading"))
        out += liquidation_flow(len(out), f"acct{k}", t, bankrupt=k >= 40)
    return out


def test_a_short_trace_is_drawn_whole_one_arrow_per_message():
    trace = liquidation_flow(0, "alice", 0) + [d(7 + k, "clearing", "margin_monitor", "AccountUpdated") for k in range(5)]
    rows = summarise_trace(trace, limit=300)
    assert rows == [Arrow(x) for x in trace]


def test_a_long_trace_fits_the_limit_and_counts_every_message():
    trace = long_trace()
    assert len(trace) > 2500
    rows = summarise_trace(trace, limit=300)
    assert len(rows) <= 300
    assert rows_count(rows) == len(trace)
    gaps = [r for r in rows if isinstance(r, Gap)]
    assert gaps and sum(g.count for g in gaps) == sum(n for g in gaps for _, n in g.by_type)
    arrows = [r for r in rows if isinstance(r, Arrow)]
    indices = [a.first.index for a in arrows]
    assert indices == sorted(indices)
    # Counted by type, drawn and not drawn add up to the trace.
    seen: Counter[str] = Counter()
    for r in rows:
        if isinstance(r, Arrow):
            seen[r.first.type] += r.count
        else:
            seen.update(dict(r.by_type))
    assert seen == Counter(x.type for x in trace)


def test_the_first_liquidation_is_shown_whole():
    trace = long_trace()
    drawn = {r.first.index for r in summarise_trace(trace, limit=300) if isinstance(r, Arrow)}
    first = [x for x in trace if x.detail == "acct0" and x.category == "liquidation"]
    assert len(first) == 7 and {x.index for x in first} <= drawn


def test_a_rare_kind_of_flow_is_shown_even_after_many_of_another():
    # The first fund takeover comes after 40 liquidations that filled; it is shown all the same.
    trace = long_trace()
    drawn = [r.first for r in summarise_trace(trace, limit=300) if isinstance(r, Arrow)]
    kinds = {x.type for x in drawn}
    assert {"PositionTakenOver", "DeleverageRequested", "Deleverage"} <= kinds
    requested = [x for x in drawn if x.type == "LiquidationRequested"]
    assert 1 < len(requested) < 60  # some liquidations are only counted


def test_identical_consecutive_messages_collapse_into_one_arrow():
    trace = [d(0, "timeline", "oracle", "MarkPriceObserved", category="market data")]
    trace += [d(1 + k, "oracle", "clearing", "MarkPriceUpdated", category="market data") for k in range(400)]
    trace += liquidation_flow(401, "alice", 0)
    rows = summarise_trace(trace, limit=300)
    assert len(rows) == 2 + 7
    assert rows[1] == Arrow(trace[1], 400)


def test_collapsed_messages_with_different_details_show_none():
    trace = [d(k, "book:PUNK", "clearing", "Fill", detail=f"fill {k % 2}") for k in range(10)]
    rows = summarise_trace(trace, limit=5)
    assert rows == [Arrow(trace[0], 10, same_detail=False)] and rows[0].detail == ""


def test_a_tiny_limit_still_accounts_for_everything():
    trace = long_trace(5, 10)
    for limit in (1, 2, 3, 10):
        rows = summarise_trace(trace, limit=limit)
        assert 1 <= len(rows) <= limit
        assert rows_count(rows) == len(trace)
    with pytest.raises(ValueError):
        summarise_trace(trace, limit=0)


def test_a_gap_says_how_many_and_of_what():
    gap = Gap(1234, (("AccountUpdated", 1000), ("Fill", 200), ("OrderClosed", 30), ("MarkPriceUpdated", 3),
                     ("Deposit", 1)), 1000, 3000)
    assert gap.label() == ("1,234 messages not drawn (1 s to 3 s): AccountUpdated ×1,000, Fill ×200, "
                           "OrderClosed ×30, MarkPriceUpdated ×3, 1 other kind")


# --- which accounts get a chart ------------------------------------------------------------------


def fake_recording(n_accounts: int, liquidated: list[str], bankrupt: set[str], adl: list[str]) -> Recording:
    accounts = {f"a{k}": [(0, (eth(str(10 + k)), eth("1")))] for k in range(n_accounts)}
    accounts["flat"] = [(0, (eth("5"), 0))]
    events: list[tuple[int, dict[str, Any]]] = []
    for k, a in enumerate(liquidated):
        events.append((k, {"kind": "liquidation_started", "account": a}))
        if a in bankrupt:
            events.append((k, {"kind": "bankruptcy", "account": a}))
    events += [(100, {"kind": "adl", "account": a}) for a in adl]
    return Recording(None, 0, "seeded", {}, [], [], {}, {}, accounts, [], events)


def test_accounts_liquidated_first_then_adl_then_closest_to_liquidation():
    liq = ["a5", "a6", "a7", "a8", "a9", "a10", "a11"]
    rec = fake_recording(40, liq, bankrupt={"a9", "a10", "a11"}, adl=["a20", "a21"])
    choice = choose_accounts(rec, limit=MAX_ACCOUNTS)
    # 5 liquidated, alternating filled and bankrupt, earliest first; 1 ADL; the 2 lowest equity/MM.
    assert choice.shown == ["a5", "a9", "a6", "a10", "a7", "a20", "a0", "a1"]
    assert choice.reason["a9"] == "liquidated" and choice.reason["a20"] == "deleveraged by ADL"
    assert choice.reason["a0"] == "equity ≥ 10.00 × maint. margin throughout"
    assert choice.sentence.startswith("Showing 8 of 41 accounts: 5 of the 7 liquidated")
    assert "1 account never held a position and is left out" in choice.sentence


def test_few_accounts_are_all_shown(demo):
    choice = choose_accounts(demo)
    assert choice.shown == ["alice", "carol", "bob", "dave", "erin", "mm"]
    assert choice.sentence.startswith("All 6 accounts are shown: the 2 liquidated and the 4 others that came "
                                      "closest to liquidation")


# --- writing the file ------------------------------------------------------------------------------


def test_bad_report_paths_are_refused_before_anything(tmp_path):
    with pytest.raises(ReportPathError, match="does not exist"):
        check_report_path(tmp_path / "missing" / "r.html")
    with pytest.raises(ReportPathError, match="is a directory"):
        check_report_path(tmp_path)
    assert check_report_path(tmp_path / "r.html") == tmp_path / "r.html"
    assert list(tmp_path.iterdir()) == []


def test_write_report_replaces_the_file_whole(tmp_path, demo, monkeypatch):
    target = tmp_path / "r.html"
    target.write_text("old report")

    def broken(*args: Any, **kwargs: Any) -> str:
        raise RuntimeError("rendering failed")

    monkeypatch.setattr("sandbox._tools.report.render_html", broken)
    with pytest.raises(RuntimeError):
        write_report(target, demo)
    assert target.read_text() == "old report"
    assert [p.name for p in tmp_path.iterdir()] == ["r.html"]


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "sandbox", *args], capture_output=True, text=True, timeout=300)


def test_cli_bad_report_path_is_bad_input_and_nothing_is_written(tmp_path):
    out = tmp_path / "out"
    proc = cli("run", "demo", "--out", str(out), "--report", str(tmp_path / "nope" / "r.html"))
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        f"sandbox: --report {tmp_path / 'nope' / 'r.html'}: the directory {tmp_path / 'nope'} does not exist"]
    assert proc.stdout == ""
    assert list(tmp_path.iterdir()) == []
    proc = cli("run", "demo", "--report", str(tmp_path))
    assert proc.returncode == 2 and "is a directory" in proc.stderr


@pytest.fixture(scope="module")
def demo_report(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("report") / "demo.html"
    proc = cli("run", "--quiet", "--report", str(path))
    assert proc.returncode == 0, proc.stderr
    assert f"report written to {path}" in proc.stdout
    return path


def test_the_report_is_one_self_contained_file(demo_report):
    text = demo_report.read_text(encoding="utf-8")
    assert [p.name for p in demo_report.parent.iterdir()] == ["demo.html"]  # no temporary file left
    assert "Content-Security-Policy" in text and "default-src 'none'" in text
    assert "<link" not in text and "@import" not in text
    # Two script elements: the stepping view's data (not executable) and its code, allowed by its hash alone.
    assert text.count("<script") == 2 and '<script type="application/json" id="step-data">' in text
    code = text.split("<script>", 1)[1].split("</script>", 1)[0]
    digest = base64.b64encode(hashlib.sha256(code.encode()).digest()).decode()
    assert f"script-src 'sha256-{digest}'" in text and "unsafe-inline'; img-src" in text
    assert "'unsafe-inline'" not in text.split("script-src", 1)[1].split('"', 1)[0]
    for attribute in ("src=", "href="):
        for chunk in text.split(attribute)[1:]:
            assert chunk[1] in "#", f"{attribute}{chunk[:60]}"  # only links inside the page
    assert text.count("<svg") == 5
    assert 50_000 < len(text) < 1_000_000
    for phrase in ("Scenario “demo”", "The whole liquidation flow across two markets", "5 → 4",
                   "All 73 messages are drawn", "insurance fund pays 4 ETH for carol&#x27;s bankruptcy (fund 4 ETH)"):
        assert phrase in text


# --- in the browser -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def browser() -> Any:
    with Chromium(require_chromium(), width=1100, height=900) as b:
        yield b


SECTIONS = {
    "mark-price": "Mark price per market",
    "equity": "Equity against maintenance margin",
    "insurance-fund": "Insurance fund",
    "open-interest": "Open interest",
    "sequence": "Message sequence diagram",
}

MEASURE = """
(() => {
  const out = {};
  for (const id of %s) {
    const svg = document.querySelector(`#${id} svg`);
    const box = svg ? svg.getBoundingClientRect() : {width: 0, height: 0};
    out[id] = {
      heading: document.querySelector(`#${id} h2`).textContent,
      width: box.width, height: box.height,
      texts: svg ? [...svg.querySelectorAll('text')].map(t => t.textContent) : [],
      drawnTexts: svg ? [...svg.querySelectorAll('text')].filter(t => t.getBBox().width > 0).length : 0,
    };
  }
  out.arrows = document.querySelectorAll('#sequence svg g[id^="seq-msg"]:not([id$="-label"])').length;
  out.labels = document.querySelectorAll('#sequence svg g[id^="seq-msg"][id$="-label"]').length;
  out.tooltips = [...document.querySelectorAll('#sequence svg g[id^="seq-msg"] > title')].map(t => t.textContent);
  out.cards = [...document.querySelectorAll('.card b')].map(b => b.textContent);
  return out;
})()
"""


def test_the_demo_report_renders_in_chromium_without_errors(browser, demo_report, tmp_path):
    load = browser.load(demo_report.resolve().as_uri())
    assert load.errors == []
    assert load.requests == [demo_report.resolve().as_uri()]  # nothing else is fetched
    page = browser.evaluate(MEASURE % list(SECTIONS))
    for section, heading in SECTIONS.items():
        got = page[section]
        assert got["heading"] == heading
        assert got["width"] > 700 and got["height"] > 200, (section, got["width"], got["height"])
        assert got["drawnTexts"] >= 5, section
    assert {"PUNK: mark price", "BAYC: mark price"} <= set(page["mark-price"]["texts"])
    assert "alice: liquidated at 1 s" in page["equity"]["texts"]
    assert "Insurance fund (one for all markets)" in page["insurance-fund"]["texts"]
    assert "+3 surplus from alice" in page["insurance-fund"]["texts"]
    assert "Open interest per market (longs = shorts)" in page["open-interest"]["texts"]
    assert {"timeline", "oracle", "clearing", "adl", "t = 2 s · mark price of BAYC: 50 -> 58 ETH",
            "LiquidationRequested: alice"} <= set(
        page["sequence"]["texts"])
    assert page["arrows"] == 73 and page["labels"] == 73  # each label is tied to its arrow, to highlight both
    assert "#16 at t = 1 s: margin_monitor → liquidation_engine: LiquidationRequested (alice)" in page["tooltips"]
    assert page["cards"][:2] == ["5 → 4", "2"]


def test_the_charts_are_painted(browser, demo_report, tmp_path):
    import numpy as np
    from PIL import Image

    browser.load(demo_report.resolve().as_uri())
    box = "(id => { const r = document.querySelector(`#${id} svg`).getBoundingClientRect();" \
          " return [r.top + scrollY, r.bottom + scrollY]; })"
    fund_top, fund_bottom = browser.evaluate(f"{box}('insurance-fund')")
    marks_top, marks_bottom = browser.evaluate(f"{box}('mark-price')")
    shot = browser.screenshot(tmp_path / "page.png")
    pixels = np.asarray(Image.open(shot).convert("RGB"), dtype=int)

    def purple(top: float, bottom: float) -> int:  # the fund's colour, #7b1fa2
        region = pixels[int(top):int(bottom)]
        r, g, b = region[..., 0], region[..., 1], region[..., 2]
        return int(((abs(r - 0x7B) < 25) & (g < 60) & (abs(b - 0xA2) < 25)).sum())

    assert purple(fund_top, fund_bottom) > 1000  # the fund's balance line
    # The mark price chart has only one purple dot (the fund's fill) and a legend key.
    assert purple(fund_top, fund_bottom) > 5 * purple(marks_top, marks_bottom) > 0


def test_the_harness_catches_errors_and_requests_elsewhere(browser, demo_report, tmp_path):
    # A page that logs an error, throws, and tries to load an image from another host: all three are caught.
    bad = tmp_path / "bad.html"
    text = demo_report.read_text(encoding="utf-8")
    bad.write_text(text.replace("</main>", '<img src="https://example.invalid/x.png"></main>'), encoding="utf-8")
    load = browser.load(bad.as_uri())
    assert any("Content Security Policy" in e for e in load.errors)
    scripted = tmp_path / "script.html"
    scripted.write_text('<!DOCTYPE html><script>console.error("boom"); throw new Error("kaput")</script>')
    load = browser.load(scripted.as_uri())
    assert any("boom" in e for e in load.errors) and any("kaput" in e for e in load.errors)


def test_the_same_run_gives_the_same_report(demo, demo_report):
    # Recorded here, rendered here; the fixture's report came from another process.
    assert render_html(demo) == demo_report.read_text(encoding="utf-8")


# --- the charts' labels and legend ------------------------------------------------------------------


@pytest.fixture(scope="module")
def cascade() -> Recording:
    return record("cascade_adl")[1]


def legend_entries(svg: str, prefix: str) -> dict[str, str]:
    """Each legend label of a chart's SVG and the style of the line drawn beside it ("" for a marker)."""
    block = svg[svg.index(f'id="{prefix}-legend_1"'):]
    entries: dict[str, str] = {}
    style = ""
    for m in re.finditer(r'<path[^>]*style="([^"]*stroke:[^"]*)"|<text[^>]*>([^<]*)</text>|<use ', block):
        if m.group(1) is not None:
            style = m.group(1)
        elif m.group(2) is not None:
            entries[m.group(2)] = style
            style = ""
        else:
            style = ""
        if len(entries) >= 6:
            break
    return entries


def test_mark_and_bankruptcy_prices_have_distinct_line_styles_in_the_legend(cascade):
    svg = chart_marks(cascade, Bands(cascade.deliveries, change_positions(cascade)))
    entries = legend_entries(svg, "marks")
    mark, bankruptcy = entries["mark price"], entries["bankruptcy price of a liquidation"]
    assert "stroke-dasharray" not in mark and "stroke-dasharray" in bankruptcy
    colour = lambda style: re.search(r"stroke: (#[0-9a-f]{6})", style).group(1)  # noqa: E731
    assert colour(mark) != colour(bankruptcy)


def test_labels_never_overlap_and_a_moved_label_has_a_leader_line():
    from matplotlib.figure import Figure
    from matplotlib.text import Text

    fig = Figure(figsize=(6, 3), layout="constrained")
    ax = fig.subplots()
    ax.set_xlim(0, 10)
    ax.set_ylim(0, 10)
    # Five markers on one spot, one alone: the crowd must stack up and down its marker.
    items = [(5.0, 5.0, f"label number {k}", "#000000") for k in range(5)] + [(1.0, 2.0, "alone", "#000000")]
    placed = place_labels(fig, ax, items)
    assert len(placed) == 6
    renderer = fig.canvas.get_renderer()
    boxes = [Text.get_window_extent(a, renderer) for a in placed]  # the text, without its leader line
    for i, a in enumerate(boxes):
        for b in boxes[i + 1:]:
            assert not a.overlaps(b)
    for a in placed:
        moved = abs(a.xyann[1]) > 10
        assert (a.arrow_patch is not None) == moved  # a leader line exactly when it moved off its marker
    alone = next(a for a in placed if a.get_text() == "alone")
    assert alone.arrow_patch is None and abs(alone.xyann[0]) == abs(alone.xyann[1]) == 7  # right beside it


def test_crowded_labels_can_be_left_out_instead():
    from matplotlib.figure import Figure
    from matplotlib.text import Text

    fig = Figure(figsize=(3, 1.2), layout="constrained")
    ax = fig.subplots()
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    items = [(0.5, 0.5, f"a rather long label {k}", "#000000") for k in range(30)]
    placed = place_labels(fig, ax, items, crowded="skip")
    assert 0 < len(placed) < 30
    renderer = fig.canvas.get_renderer()
    boxes = [Text.get_window_extent(a, renderer) for a in placed]
    assert not any(a.overlaps(b) for i, a in enumerate(boxes) for b in boxes[i + 1:])


@pytest.fixture(scope="module")
def cascade_report(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("cascade") / "cascade.html"
    proc = cli("run", "cascade_adl", "--quiet", "--report", str(path))
    assert proc.returncode == 0, proc.stderr
    return path


OVERLAPS = """
(id => {
  const boxes = [...document.querySelectorAll(`#${id} svg text`)].map(t => [t.textContent, t.getBoundingClientRect()])
    .filter(([_, r]) => r.width > 0);
  const out = [];
  for (let i = 0; i < boxes.length; i++) for (let j = i + 1; j < boxes.length; j++) {
    const [a, r] = boxes[i], [b, s] = boxes[j];
    const w = Math.min(r.right, s.right) - Math.max(r.left, s.left), h = Math.min(r.bottom, s.bottom) - Math.max(r.top, s.top);
    if (w > 0.5 && h > 0.5) out.push([a, b]);
  }
  return {texts: boxes.map(([t]) => t), overlaps: out};
})
"""


def test_cascade_labels_are_drawn_and_do_not_overlap_in_the_browser(browser, cascade_report):
    load = browser.load(cascade_report.resolve().as_uri())
    assert load.errors == []
    fund = browser.evaluate(f"{OVERLAPS}('insurance-fund')")
    marks = browser.evaluate(f"{OVERLAPS}('mark-price')")
    assert fund["overlaps"] == [] and marks["overlaps"] == []
    assert {"takes over L1's long 1 PUNK", "−2 paid for L1", "ADL: S2 buys 1 PUNK", "ADL: S3 buys 1 PUNK"} <= \
        set(fund["texts"])
    # The mark-price chart now says what its markers are.
    assert {"L1's bankruptcy price 90", "the fund's order fills at 88", "ADL closes S2 at 80"} <= set(marks["texts"])


def test_sequence_labels_are_at_least_12_css_pixels(browser, demo_report):
    browser.load(demo_report.resolve().as_uri())
    sizes = browser.evaluate("""[...document.querySelectorAll('#sequence svg text')]
        .map(t => parseFloat(getComputedStyle(t).fontSize) * t.getScreenCTM().a)""")
    assert len(sizes) > 64 and min(sizes) >= 12, min(sizes)


# --- the stepping view -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def saved_demo(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[dict[str, Any]], dict[str, Any]]:
    """The demo's report, with the events.jsonl and summary.json of the same run."""
    base = tmp_path_factory.mktemp("stepping")
    proc = cli("run", "--quiet", "--out", str(base), "--report", str(base / "demo.html"))
    assert proc.returncode == 0, proc.stderr
    events = [json.loads(line) for line in (base / "events.jsonl").read_text().splitlines()]
    return base / "demo.html", events, json.loads((base / "summary.json").read_text())


def shown(browser: Any) -> dict[str, Any]:
    return browser.evaluate("""({
      count: document.getElementById('step-count').innerText,
      head: document.getElementById('step-head').innerText,
      said: document.getElementById('step-said').innerText,
      balance: document.getElementById('step-fund-balance').innerText,
      reserved: document.getElementById('step-fund-reserved').innerText,
      books: document.getElementById('step-books').innerText,
      accounts: [...document.querySelectorAll('#step-accounts tr')].map(r => [...r.cells].map(c => c.innerText)),
      current: [...document.querySelectorAll('#sequence .current')].map(e => e.id),
      slider: document.getElementById('step-slider').value,
    })""")


def test_the_stepping_view_steps_through_the_run_by_clicks_and_keys(browser, saved_demo, demo):
    page, events, summary = saved_demo
    load = browser.load(page.resolve().as_uri())
    assert load.errors == [] and load.requests == [page.resolve().as_uri()]
    assert browser.evaluate("document.getElementById('stepper').hidden") is False
    first = shown(browser)
    n = len(demo.deliveries)  # every message of the demo is drawn, so each is a step
    assert first["count"] == f"step 1 of {n}" and first["current"] == ["seq-msg0", "seq-msg0-label"]
    assert first["balance"] == summary["insurance_fund"]["initial"] == "5"

    surplus = next(e for e in events if e["kind"] == "fund_surplus")
    payout = next(e for e in events if e["kind"] == "fund_payout")
    clicks, seen_book, before = 0, None, first
    while "surplus from alice" not in (now := shown(browser))["said"]:
        before = now
        browser.click("#step-next")
        clicks += 1
        assert clicks <= n
        if seen_book is None and "clearing → book:PUNK: SubmitOrder (mm buy 1 PUNK @ 93 GTC)" in shown(browser)["head"]:
            seen_book = shown(browser)["books"]
    # The step that delivered SurplusTransferred: the fund's balance is the one events.jsonl records.
    p = next(p for p, e in demo.events if e["kind"] == "fund_surplus")
    assert clicks == p - 1  # one click a delivery: every message of the demo is a step
    assert now["count"] == f"step {p} of {n}" and now["slider"] == str(p - 1)
    d = demo.deliveries[p - 1]
    assert (d.recipient, d.type) == ("insurance_fund", "SurplusTransferred")
    assert now["head"] == f"#{p - 1} at t = 1 s: {d.sender} → insurance_fund: SurplusTransferred (alice)"
    assert now["balance"] == surplus["balance"] == "8" and before["balance"] == "5"
    assert now["current"] == [f"seq-msg{p - 1}", f"seq-msg{p - 1}-label"]
    assert ["alice", "0", "0", "0", "none"] in now["accounts"]
    assert seen_book is not None and "PUNK\t93 × 1\tnone" in seen_book

    browser.click("#step-prev")
    back = shown(browser)
    assert back["count"] == f"step {p - 1} of {n}" and back["balance"] == "5"
    assert back["current"] == [f"seq-msg{p - 2}", f"seq-msg{p - 2}-label"]
    browser.press("ArrowRight")
    assert shown(browser)["balance"] == "8"

    # Step on until the fund reserves what it may lose closing carol's short: all 8 it has.
    while shown(browser)["reserved"] != "8":
        browser.press("ArrowRight")
        assert int(shown(browser)["slider"]) < n - 1
    browser.press("End")
    last = shown(browser)
    assert last["count"] == f"step {n} of {n}" and last["balance"] == payout["balance"] == \
        summary["insurance_fund"]["final"]
    browser.click("#step-first")
    assert shown(browser)["count"] == f"step 1 of {n}"
    # The slider, clicked with the mouse: at its right end it shows the last step, at its left end the first.
    browser.click("#step-slider", at=(1.0, 0.5))
    assert shown(browser)["count"] == f"step {n} of {n}" and shown(browser)["balance"] == last["balance"]
    browser.click("#step-slider", at=(0.0, 0.5))
    assert shown(browser)["count"] == f"step 1 of {n}" and shown(browser)["balance"] == "5"


def test_play_and_pause(browser, saved_demo):
    page, _, _ = saved_demo
    browser.load(page.resolve().as_uri())
    browser.click("#step-play")
    assert browser.text("#step-play") == "❚❚ pause"
    for _ in range(200):  # until the player has moved on twice (no wall-clock time is asserted)
        if int(shown(browser)["slider"]) >= 2:
            break
        time.sleep(0.1)
    assert int(shown(browser)["slider"]) >= 2
    browser.click("#step-play")
    assert browser.text("#step-play") == "▶ play"
    paused = shown(browser)["slider"]
    time.sleep(1.2)  # longer than a step of the player: a paused player has not moved
    assert shown(browser)["slider"] == paused


def test_the_page_runs_its_own_script_and_no_other(browser, saved_demo, demo, tmp_path):
    page, _, _ = saved_demo
    text = page.read_text(encoding="utf-8")
    injected = tmp_path / "injected.html"
    injected.write_text(text.replace("</main>", '<script>document.title = "pwned";</script></main>'),
                        encoding="utf-8")
    load = browser.load(injected.as_uri())
    assert any("Content Security Policy" in e for e in load.errors)
    assert browser.evaluate("document.title") != "pwned"
    assert browser.text("#step-count") == f"step 1 of {len(demo.deliveries)}"  # the page's own, hashed script ran


def test_step_data_of_a_cut_diagram_still_reaches_the_end_state(cascade):
    rows = summarise_trace(cascade.deliveries, limit=12)
    assert any(isinstance(r, Gap) for r in rows)
    steps = step_data(cascade, rows)["steps"]
    assert len(steps) == len(rows)
    state: dict[str, Any] = {}
    for step in steps:
        for part, values in step["d"].items():
            state.setdefault(part, {}).update(values)
    fund = cascade.summary["insurance_fund"]
    assert state["fund"]["fund"][0] == fund["final"]
    for acct, a in cascade.summary["accounts"].items():
        assert state["accounts"][acct][0] == a["balance"]
    assert {s["id"] for s in steps if s["id"].startswith("seq-gap")} == \
        {f"seq-gap{k}" for k in range(sum(isinstance(r, Gap) for r in rows))}


def test_the_browser_starts_after_a_report_was_made_in_the_same_process(browser, tmp_path):
    # Making a report leaves fds 3 and 4 free but the driver's pipes above them (matplotlib's font files
    # came and went): Popen's pass_fds=(3, 4) then failed with EBADF, and os.dup returning 3 and 4
    # themselves left them close-on-exec ("Remote debugging pipe file descriptors are not open").
    code = ("import sys\nfrom sandbox.cli import main\n"
            f"assert main(['run', 'demo', '--quiet', '--report', {str(tmp_path / 'r.html')!r}]) == 0\n"
            "from tests.chromium import Chromium\nwith Chromium() as b:\n    print(b.evaluate('1 + 1'))\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                          cwd=Path(__file__).resolve().parent.parent)
    assert proc.returncode == 0 and proc.stdout.endswith("\n2\n"), proc.stderr[-2000:]
