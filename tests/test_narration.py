"""The narrated timeline: exact sentences, wrapping with a hanging indent, themes, legend, glossary and folding."""

from __future__ import annotations

import io
import subprocess
import sys

import pytest
from rich.console import Console
from rich.style import Style
from rich.text import Text

from sandbox import resolve_scenario, run_scenario_sync
from sandbox._tools.narrate import (FOLD_ABOVE, GLOSSARY, LEGEND, STYLES, THEMES, Narrator, glossary, print_hanging,
                             theme_for)


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "sandbox", *args], capture_output=True, text=True, timeout=300)


DEMO_TIMELINE = """\
t=0      clearing           mm bids: buy 1 PUNK at 93 ETH (GTC, resting)
         clearing           mm asks: sell 1 BAYC at 59 ETH (GTC, resting)
         clearing           mm asks: sell 5 BAYC at 65 ETH (GTC, resting)
t=1      oracle             mark price of PUNK: 100 -> 94 ETH
         margin_monitor     alice's equity 4 ETH <= maintenance margin 4.7 ETH: liquidation requested
         clearing           alice taken over by the liquidation engine
         liquidation_engine liquidating alice (equity 4 ETH): closing at bankruptcy price PUNK 90 ETH
         book:PUNK          trade: 1 PUNK at 93 ETH, mm buys from alice (a liquidation order)
         clearing           alice's liquidation order sells 1 PUNK at 93 ETH (realized -7 ETH)
         clearing           alice's liquidation settled: alice ends at 0 ETH, the 3 ETH left over goes to the fund
         insurance_fund     insurance fund receives 3 ETH surplus from alice (fund 8 ETH)
t=2      oracle             mark price of BAYC: 50 -> 58 ETH
         margin_monitor     carol's equity -4 ETH <= maintenance margin 5.8 ETH: liquidation requested
         clearing           carol taken over by the liquidation engine
         liquidation_engine liquidating carol (equity -4 ETH): closing at bankruptcy price BAYC 56 ETH
         liquidation_engine carol's liquidation order could not all fill in BAYC at its bankruptcy price: the rest goes to the insurance fund there
         clearing           insurance fund takes over carol's short 2 BAYC at bankruptcy price 56 ETH
         clearing           carol's liquidation settled: carol ends at 0 ETH
         insurance_fund     insurance fund accepts carol's short 2 BAYC at 56 ETH: it loses 4 ETH at the mark, and 8 ETH is available
         insurance_fund     insurance fund closes its short 2 BAYC with an IOC limited at 60 ETH (may lose at most 8 ETH)
         book:BAYC          trade: 1 BAYC at 59 ETH, insurance_fund buys from mm (the insurance fund's order)
         insurance_fund     insurance fund holds short 1 BAYC as inventory at mark 58 ETH (5 ETH reserved, 3 ETH available)
t=3      clearing           mm asks: sell 1 BAYC at 57 ETH (GTC, resting)
         oracle             mark price of BAYC: 58 -> 57 ETH
         insurance_fund     insurance fund's short 1 BAYC at mark 57 ETH: unrealized -4 ETH, fund equity 4 ETH (balance 8 ETH)
         insurance_fund     insurance fund closes its short 1 BAYC with an IOC limited at 61 ETH (may lose at most 8 ETH)
         book:BAYC          trade: 1 BAYC at 57 ETH, insurance_fund buys from mm (the insurance fund's order)
         insurance_fund     insurance fund pays 4 ETH for carol's bankruptcy (fund 4 ETH)
"""


@pytest.fixture(scope="module")
def demo_events() -> list[dict]:
    return run_scenario_sync(resolve_scenario("demo")).events


def narrate_all(events: list[dict], **kwargs: object) -> str:
    width = kwargs.pop("width", 200)
    out = io.StringIO()
    narrator = Narrator(Console(file=out, width=width, theme=theme_for("auto")), **kwargs)  # type: ignore[arg-type]
    for e in events:
        narrator(e)
    narrator.flush()
    return out.getvalue()


def test_piped_run_prints_the_legend_and_one_event_a_line():
    proc = cli("run")
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert DEMO_TIMELINE in out  # one event a line, however long: grep-able and comparable
    assert "\nlegend: ETH amounts, sizes in contracts; bids/asks rest; trade: fill; --explain\n" in out
    assert len("legend: " + LEGEND) <= 80  # one line at 80 columns
    assert out.index("legend:") < out.index("t=0 ")
    assert "\x1b[" not in out


def test_resting_orders_read_apart_from_trades(demo_events):
    text = narrate_all(demo_events)
    resting = [line for line in text.splitlines() if "(GTC, resting)" in line]
    trades = [line for line in text.splitlines() if " trade: " in line]
    assert len(resting) == 4 and len(trades) == 3
    assert all(" bids: buy " in line or " asks: sell " in line for line in resting)
    assert not any("resting" in line for line in trades)


DEMO_AT_80 = """\
t=0      clearing           mm bids: buy 1 PUNK at 93 ETH (GTC, resting)
         clearing           mm asks: sell 1 BAYC at 59 ETH (GTC, resting)
         clearing           mm asks: sell 5 BAYC at 65 ETH (GTC, resting)
t=1      oracle             mark price of PUNK: 100 -> 94 ETH
         margin_monitor     alice's equity 4 ETH <= maintenance margin 4.7 ETH:
                            liquidation requested
         clearing           alice taken over by the liquidation engine
         liquidation_engine liquidating alice (equity 4 ETH): closing at
                            bankruptcy price PUNK 90 ETH
         book:PUNK          trade: 1 PUNK at 93 ETH, mm buys from alice (a
                            liquidation order)
         clearing           alice's liquidation order sells 1 PUNK at 93 ETH
                            (realized -7 ETH)
         clearing           alice's liquidation settled: alice ends at 0 ETH,
                            the 3 ETH left over goes to the fund
         insurance_fund     insurance fund receives 3 ETH surplus from alice
                            (fund 8 ETH)
t=2      oracle             mark price of BAYC: 50 -> 58 ETH
         margin_monitor     carol's equity -4 ETH <= maintenance margin 5.8 ETH:
                            liquidation requested
         clearing           carol taken over by the liquidation engine
         liquidation_engine liquidating carol (equity -4 ETH): closing at
                            bankruptcy price BAYC 56 ETH
         liquidation_engine carol's liquidation order could not all fill in BAYC
                            at its bankruptcy price: the rest goes to the
                            insurance fund there
         clearing           insurance fund takes over carol's short 2 BAYC at
                            bankruptcy price 56 ETH
         clearing           carol's liquidation settled: carol ends at 0 ETH
         insurance_fund     insurance fund accepts carol's short 2 BAYC at 56
                            ETH: it loses 4 ETH at the mark, and 8 ETH is
                            available
         insurance_fund     insurance fund closes its short 2 BAYC with an IOC
                            limited at 60 ETH (may lose at most 8 ETH)
         book:BAYC          trade: 1 BAYC at 59 ETH, insurance_fund buys from mm
                            (the insurance fund's order)
         insurance_fund     insurance fund holds short 1 BAYC as inventory at
                            mark 58 ETH (5 ETH reserved, 3 ETH available)
t=3      clearing           mm asks: sell 1 BAYC at 57 ETH (GTC, resting)
         oracle             mark price of BAYC: 58 -> 57 ETH
         insurance_fund     insurance fund's short 1 BAYC at mark 57 ETH:
                            unrealized -4 ETH, fund equity 4 ETH (balance 8 ETH)
         insurance_fund     insurance fund closes its short 1 BAYC with an IOC
                            limited at 61 ETH (may lose at most 8 ETH)
         book:BAYC          trade: 1 BAYC at 57 ETH, insurance_fund buys from mm
                            (the insurance fund's order)
         insurance_fund     insurance fund pays 4 ETH for carol's bankruptcy
                            (fund 4 ETH)
"""


def test_wrapped_at_80_columns_with_a_hanging_indent(demo_events):
    text = narrate_all(demo_events, width=80, wrap=True)
    assert text == DEMO_AT_80
    lines = text.splitlines()
    assert max(len(line) for line in lines) <= 80
    assert all(line == line.rstrip() for line in lines)  # no padding
    # Wrapping only moves line breaks: joined up again, the sentences are those of the piped timeline.
    joined = " ".join(line[28:] if line.startswith(" " * 28) else "\n" + line for line in lines).strip()
    assert [" ".join(x.split()) for x in joined.split("\n")] == \
        [" ".join(x.split()) for x in DEMO_TIMELINE.strip().split("\n")]


def test_width_option_wraps_even_when_piped():
    proc = cli("run", "--width", "80")
    assert proc.returncode == 0
    assert DEMO_AT_80 in proc.stdout


def test_a_long_actor_name_still_has_a_space_before_its_sentence():
    narrator = Narrator(Console(file=(buf := io.StringIO()), width=200), wrap=False)
    narrator({"kind": "index_price", "time": 0, "actor": "trader:" + "x" * 20, "market": "PUNK", "price": "1"})
    assert buf.getvalue() == f"t=0      trader:{'x' * 20} index price of PUNK: 1 ETH\n"


def test_print_hanging_indents_every_later_line_under_the_first():
    out = io.StringIO()
    print_hanging(Console(file=out, width=30), Text("  term: "), Text("one two three four five six seven eight"))
    assert out.getvalue() == "  term: one two three four\n        five six seven eight\n"


def contrast(style: str, background: tuple[int, int, int]) -> float:
    def luminance(rgb: tuple[int, int, int]) -> float:
        def channel(v: int) -> float:
            c = v / 255
            return c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4
        r, g, b = rgb
        return 0.2126 * channel(r) + 0.7152 * channel(g) + 0.0722 * channel(b)

    colour = Style.parse(style).color
    assert colour is not None and colour.type.name in ("TRUECOLOR", "EIGHT_BIT"), style
    fg = tuple(colour.get_truecolor())
    hi, lo = sorted((luminance(fg), luminance(background)), reverse=True)  # type: ignore[arg-type]
    return (hi + 0.05) / (lo + 0.05)


BLACK, WHITE = (0, 0, 0), (255, 255, 255)


@pytest.mark.parametrize(("theme", "backgrounds"), [("auto", [BLACK, WHITE]), ("dark", [BLACK]), ("light", [WHITE])])
def test_every_colour_reads_on_its_background(theme, backgrounds):
    # No 16-colour name (terminals remap those: white or yellow text vanishes on a light background).
    for name, style in THEMES[theme].items():
        for background in backgrounds:
            assert contrast(style, background) >= 3.5, (theme, name, style, background)
    used = set(STYLES.values())
    assert used - set(THEMES[theme]) <= {"narr.quiet", "narr.order", "narr.trade", "narr.alarm"}


def test_trade_lines_are_in_the_terminals_own_colour(demo_events):
    for theme in THEMES:
        style = theme_for(theme).styles["narr.trade"]
        assert style.color is None and style.bold  # the foreground of the terminal, whatever its background
    out = io.StringIO()
    narrator = Narrator(Console(file=out, width=200, force_terminal=True, color_system="truecolor",
                                theme=theme_for("light")), wrap=False)
    for e in demo_events:
        narrator(e)
    assert "\x1b[1m" in out.getvalue() and "97m" not in out.getvalue() and "37m" not in out.getvalue()


def test_a_replay_is_narrated_in_colour_too(tmp_path):
    # Narrator brings its theme: the styles are names, which a console without the theme would drop silently.
    out = io.StringIO()
    narrator = Narrator(Console(file=out, width=200, force_terminal=True, color_system="truecolor"), wrap=False)
    narrator({"kind": "mark_price", "time": 1, "actor": "oracle", "market": "PUNK", "previous": "100", "price": "94"})
    assert "\x1b[38;2;0;135;175mmark price of PUNK: 100 -> 94 ETH" in out.getvalue()  # auto's #0087af


def test_cli_theme_light_colours_the_output():
    proc = subprocess.run([sys.executable, "-c", (
        "import sys; import sandbox.cli as c; from rich.console import Console;"
        "c.Console = lambda **k: Console(force_terminal=True, color_system='truecolor', width=200, **k);"
        "sys.exit(c.main(sys.argv[1:]))"), "run", "--theme", "light"], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    # The light theme's price colour, #005faf, on the mark price lines.
    assert "\x1b[38;2;0;95;175mmark price of PUNK: 100 -> 94 ETH" in proc.stdout


def test_legend_and_glossary_cover_the_terms_of_the_demo(demo_events):
    terms = [term for term, _ in glossary({e["kind"] for e in demo_events})]
    assert terms == ["mark price", "GTC", "IOC", "trade", "equity", "maintenance margin", "liquidation",
                     "bankruptcy price", "realized", "insurance fund", "reserved"]
    assert set(GLOSSARY) >= {"GTC", "IOC", "realized", "bankruptcy price", "ADL", "mark price"}


def test_explain_prints_the_glossary_after_the_run():
    proc = cli("run", "--explain")
    assert proc.returncode == 0
    tail = proc.stdout.split("Terms used above:\n", 1)[1]
    assert tail.startswith("  mark price: the exchange's reference price of a market, published by the\n"
                           "              oracle: it values every position and decides who is liquidated\n")
    assert "\n  bankruptcy price: the price at which a liquidated account's equity is exactly\n" in tail
    assert tail.endswith("\n  reserved: while it closes a position the fund sets aside the most it could\n"
                         "            lose on it; only the rest is available\n")
    assert "ADL:" not in tail and "funding" not in tail  # only the terms this run used: the demo has no ADL


@pytest.fixture(scope="module")
def stochastic_events() -> list[dict]:
    return run_scenario_sync(resolve_scenario("stochastic_crash")).events


def test_fold_turns_each_instants_requotes_into_one_line_per_account(stochastic_events):
    full = narrate_all(stochastic_events).splitlines()
    folded = narrate_all(stochastic_events, fold=True).splitlines()
    assert len(folded) < len(full) / 2
    assert folded[:2] == [
        "t=0      clearing           mm-punk re-quotes (folded): rests 3 bids 91-97 ETH and 3 asks 103-109 ETH "
        "in PUNK (GTC)",
        "         clearing           mm-bayc re-quotes (folded): rests 3 bids 45.5-48.5 ETH and 3 asks 51.5-54.5 "
        "ETH in BAYC (GTC)"]
    assert folded[2] == ("t=1      clearing           mm-punk re-quotes (folded): cancels 6 resting orders, "
                         "then rests 3 bids 90.75-96.74 ETH and 3 asks 102.72-108.71 ETH in PUNK (GTC)")
    # Everything else is narrated exactly as without folding, in the same order.
    rest = [line.strip() for line in full if "(GTC, resting)" not in line and "resting order" not in line]
    kept = [line.strip() for line in folded if "re-quotes (folded)" not in line]
    assert [" ".join(x.split()[2:]) if x.startswith("t=") else " ".join(x.split()[1:]) for x in kept] == \
        [" ".join(x.split()[2:]) if x.startswith("t=") else " ".join(x.split()[1:]) for x in rest]


def test_fold_is_automatic_for_long_scenarios_and_can_be_turned_off():
    assert len(resolve_scenario("stochastic_crash").events) > FOLD_ABOVE >= len(resolve_scenario("demo").events)
    auto = cli("run", "stochastic_crash")
    off = cli("run", "stochastic_crash", "--no-fold")
    assert auto.returncode == off.returncode == 0
    assert "re-quotes (folded)" in auto.stdout and "re-quotes (folded)" not in off.stdout
    assert auto.stdout.count("\n") < off.stdout.count("\n") / 2
    assert "re-quotes (folded)" in cli("run", "demo", "--fold").stdout


def test_the_narration_is_deterministic_when_piped():
    first, second = cli("run", "stochastic_crash"), cli("run", "stochastic_crash")
    assert first.stdout == second.stdout and first.returncode == 0
