"""The narrated timeline: one plain sentence per event a person should see.

Rendered with rich: coloured on a terminal, plain text when piped. Events
without a sentence here (e.g. fees) are left out of the narration; they are
all still in ``events.jsonl``.

What makes it teach (see ``docs/narration.md``):

* **units**: amounts and prices say ``ETH`` (a price is ETH per contract),
  sizes are contracts of the named market;
* **resting orders read differently from trades**: an order is "mm bids: buy
  1 PUNK at 93 ETH (GTC, resting)", a trade starts with "trade:";
* **wrapping**: on a terminal each sentence wraps to the terminal's width
  under itself (a hanging indent), so the time and actor columns stay clear;
  piped, one event is one line, so the output can be grepped and compared;
* **colours** come from a theme whose every colour reads on its background
  (:data:`THEMES`); the default reads on dark and light terminals alike;
* **a legend** (:data:`LEGEND`) and a **glossary** (:func:`glossary`) of the
  terms the run used;
* **folding**: a long run is mostly market makers re-quoting; with
  ``fold=True`` each instant's run of resting orders placed and cancelled
  becomes one line per account.

Every user-supplied string (ids, symbols, reasons) reaches the terminal
through :func:`sandbox._tools.plain.plain` and as a :class:`rich.text.Text`, so it
is shown as it is written: never as markup, never as a control sequence.
"""

from __future__ import annotations

from typing import Any, Callable, Final, Iterable

import attrs
from rich.console import Console
from rich.text import Text
from rich.theme import Theme

from sandbox._core.money import fmt_money, fmt_price, fmt_size
from sandbox._tools.plain import plain
from sandbox.messages import Event

__all__ = ["narrate", "Narrator", "STYLES", "THEMES", "LEGEND", "GLOSSARY", "glossary", "describe_message",
           "FOLD_ABOVE", "theme_for", "print_hanging"]

_PRICE_FIELDS = {"price", "limit", "mark_price", "bid", "ask"}
_SIZE_FIELDS = {"size", "filled", "unfilled", "remaining", "keep"}
_MONEY_FIELDS = {"amount", "balance", "equity", "maintenance_margin", "budget", "surplus", "entry_value", "notional"}


def describe_message(message: object) -> str:
    """A message in one line with its amounts in decimal units, e.g. ``Fill(order_id=…, size=-1, price=93)``."""
    if not attrs.has(type(message)):
        return plain(repr(message))
    parts = []
    for field in attrs.fields(type(message)):
        value = getattr(message, field.name)
        if field.name in ("marks", "positions", "candidates", "valid_at") and isinstance(value, tuple):
            if field.name == "positions" and value:
                value = "[" + ", ".join(f"{p.market} {fmt_size(p.size)}" for p in value) + "]"
            elif field.name == "candidates":
                value = f"<{len(value)} accounts>"
            else:
                continue
        elif field.name == "order" and attrs.has(type(value)):
            value = (f"{value.side} {fmt_size(value.size)} {value.market} at {fmt_price(value.price)} "
                     f"{value.tif} for {value.account}")
        elif field.name == "event":
            value = getattr(value, "type", None) or "order"
        elif isinstance(value, int) and not isinstance(value, bool):
            if field.name in _PRICE_FIELDS:
                value = fmt_price(value)
            elif field.name in _SIZE_FIELDS:
                value = fmt_size(value)
            elif field.name in _MONEY_FIELDS:
                value = fmt_money(value)
        elif value is None:
            continue
        parts.append(f"{field.name}={value}")
    return plain(f"{type(message).__name__}({', '.join(parts)})")


def _eth(amount: str) -> str:
    """An amount (or a price: ETH per contract) with its unit."""
    return f"{amount} ETH"


def _contracts(size: str) -> str:
    return f"{size} contract" if size in ("1", "-1") else f"{size} contracts"


def _ranking(e: dict[str, Any]) -> str:
    return ", ".join(e["ranking"]) or "nobody"


def _qty(size: str) -> str:
    return size.lstrip("-")


def _held(size: str) -> str:
    return f"short {_qty(size)}" if size.startswith("-") else f"long {size}"


def _trade(size: str) -> str:
    return f"sells {_qty(size)}" if size.startswith("-") else f"buys {size}"


def _prices(e: dict[str, Any]) -> str:
    return ", ".join(f"{m} {_eth(p)}" for m, p in e["bankruptcy_prices"].items())


def _started(e: dict[str, Any]) -> str:
    if e.get("backstop"):
        return (f"{e['account']}'s equity {_eth(e['equity'])} is below the backstop's share of its maintenance "
                f"margin {_eth(e['maintenance_margin'])}: nothing goes to the book, the backstop vault takes "
                f"every position over with its margin, at bankruptcy price {_prices(e)}")
    if "limits" in e:  # dYdX's fillable price
        return (f"liquidating {e['account']} (equity {_eth(e['equity'])}): orders limited at the fillable price "
                + ", ".join(f"{m} {_eth(p)}" for m, p in e["limits"].items())
                + f"; what does not fill goes to the fund at bankruptcy price {_prices(e)}")
    if "closing" not in e:
        return (f"liquidating {e['account']} (equity {_eth(e['equity'])}): closing at bankruptcy price "
                f"{_prices(e)}")
    closing = ", ".join(f"{_qty(q)} of {_qty(e['positions'][m])} {m}" for m, q in e["closing"].items())
    return (f"liquidating {e['account']} in slices (equity {_eth(e['equity'])}), slice {e['slice']}: closing "
            f"{closing} at bankruptcy price {_prices(e)}")


_REJECTED = {"missing": "no price", "zero": "a price of zero", "negative": "a negative price"}


def _rejected(e: dict[str, Any]) -> str:
    if e["reason"] == "outside_band":
        why = f"{_eth(e['price'])} moves more than {_pct(e['band'])} from {_eth(e['last_valid'])}"
    else:
        why = _REJECTED.get(e["reason"], e["reason"]) + ("" if e["price"] is None else f" ({_eth(e['price'])})")
    return f"{e['market']} price rejected: {why}; the mark stays {_eth(e['last_valid'])}"


def _pct(rate: str) -> str:
    """A rate as a percentage: "0.0025" -> "0.25%"."""
    from decimal import Decimal

    return f"{(Decimal(rate) * 100).normalize():f}%"


def _funding_rate(e: dict[str, Any]) -> str:
    rate = e["rate"]
    who = "nobody pays" if rate == "0" else ("shorts pay longs" if rate.startswith("-") else "longs pay shorts")
    return (f"funding of {e['market']}: mark {_eth(e['mark_price'])} vs index {_eth(e['index'])}, "
            f"rate {_pct(rate)}: {who}")


def _funding(e: dict[str, Any]) -> str:
    amount = e["amount"]
    verb = f"pays {_eth(amount[1:])}" if amount.startswith("-") else f"receives {_eth(amount)}"
    return f"{e['account']} {verb} funding in {e['market']} (balance {_eth(e['balance'])})"


def _settled(e: dict[str, Any]) -> str:
    if "returned" in e:
        return (f"{e['account']}'s liquidation settled: a clearance fee of {_eth(e['clearance_fee'])} goes to the "
                f"fund, {_eth(e['returned'])} is returned to {e['account']}")
    return (f"{e['account']}'s liquidation settled: {e['account']} ends at 0 ETH"
            + (f", the {_eth(e['surplus'])} left over goes to the fund" if e["surplus"] != "0" else ""))


def _positions(e: dict[str, Any]) -> str:
    return ", ".join(f"{_held(size)} {m}" for m, size in e["positions"].items()) or "nothing"


def _order(e: dict[str, Any]) -> str:
    """A resting (GTC) order is a bid or an ask waiting in the book; an IOC order trades now or not at all."""
    what = f"{e['side']} {e['size']} {e['market']} at {_eth(e['price'])}"
    if e["tif"] == "gtc":
        return f"{e['account']} {'bids' if e['side'] == 'buy' else 'asks'}: {what} (GTC, resting)"
    if e["tif"] == "ioc":
        return f"{e['account']} sends an IOC order: {what} (fills now or expires)"
    return f"{e['account']} sends an order: {what} ({e['tif'].upper()})"


def _trade_line(e: dict[str, Any]) -> str:
    taker = {"trader": "", "liquidation": " (a liquidation order)", "fund": " (the insurance fund's order)"}
    return (f"trade: {e['size']} {e['market']} at {_eth(e['price'])}, {e['buyer']} buys from {e['seller']}"
            + taker.get(e["taker_kind"], f" ({e['taker_kind']} order)"))


def _mark(e: dict[str, Any]) -> str:
    return f"mark price of {e['market']}: {e['previous']} -> {_eth(e['price'])}"


def _frozen(e: dict[str, Any]) -> str:
    return (f"{e['account']} taken over by the liquidation engine"
            + (f", cancelling its orders in {', '.join(e['cancelling'])}" if e["cancelling"] else ""))


def _funding_paid(e: dict[str, Any]) -> str:
    if e["owed"] == e["amount"]:
        return (f"insurance fund pays {_eth(e['amount'])} of funding in {e['market']} for its inventory "
                f"(fund {_eth(e['balance'])})")
    return (f"insurance fund owes {_eth(e['owed'])} of funding in {e['market']} and pays all it has available, "
            f"{_eth(e['amount'])} (fund {_eth(e['balance'])})")


def _stale(e: dict[str, Any]) -> str:
    then = "pause" if e["liquidations"] == "paused" else "continue at " + _eth(e["last_valid"])
    return f"{e['market']} is stale: no valid price since t={e['since']} (limit {e['limit']} s); new liquidations {then}"


# The semantic styles of the narration; a theme gives each one its colour.
QUIET, ORDER, TRADE, PRICE, WARN, ALERT, LIQ, LIQ_BOLD, FUND, FUND_BOLD, GOOD, GOOD_BOLD, ADL, ADL_BOLD, ALARM = (
    "narr.quiet", "narr.order", "narr.trade", "narr.price", "narr.warn", "narr.alert", "narr.liq", "narr.liq.bold",
    "narr.fund", "narr.fund.bold", "narr.good", "narr.good.bold", "narr.adl", "narr.adl.bold", "narr.alarm")

# kind -> (style, sentence)
_SENTENCES: Final[dict[str, tuple[str, Callable[[dict[str, Any]], str]]]] = {
    Event.MARK_PRICE: (PRICE, _mark),
    Event.ORDER_PLACED: (ORDER, _order),
    Event.ORDER_REJECTED: (WARN, lambda e: f"{e['account']}'s order {e.get('order_id', '')} rejected: {e['reason']}"),
    Event.CANCEL_REJECTED: (WARN, lambda e: f"{e['account']}'s cancel of {e['order_id']} rejected: {e['reason']}"),
    Event.DEPOSIT_REJECTED: (WARN, lambda e: f"{e['account']}'s deposit of {_eth(e['amount'])} rejected: {e['reason']}"),
    Event.WITHDRAW_REJECTED: (WARN, lambda e: f"{e['account']}'s withdrawal of {_eth(e['amount'])} rejected: {e['reason']}"),
    Event.ORDER_CANCELLED: (ORDER, lambda e: f"{e['account']}'s resting order {e['order_id']} cancelled "
                        f"({e['reason']}, {_contracts(e['unfilled'])} unfilled)"),
    Event.ORDER_EXPIRED: (QUIET, lambda e: f"{e['account']}'s IOC order {e['order_id']} expired with "
                      f"{_contracts(e['unfilled'])} unfilled"),
    Event.DEPOSIT: (GOOD, lambda e: f"{e['account']} deposits {_eth(e['amount'])} (balance {_eth(e['balance'])})"),
    Event.WITHDRAW: (GOOD, lambda e: f"{e['account']} withdraws {_eth(e['amount'])} (balance {_eth(e['balance'])})"),
    Event.TRADE: (TRADE, _trade_line),
    Event.MARGIN_CALL: (ALERT, lambda e: f"{e['account']}'s equity {_eth(e['equity'])} <= maintenance margin "
                    f"{_eth(e['maintenance_margin'])}: liquidation requested"),
    Event.ACCOUNT_FROZEN: (WARN, _frozen),
    Event.ACCOUNT_UNFROZEN: (GOOD, lambda e: f"{e['account']} handed back to its owner"),
    Event.LIQUIDATION_CANCELLED: (GOOD, lambda e: f"{e['account']} is healthy after all (equity {_eth(e['equity'])} > "
                              f"{_eth(e['maintenance_margin'])}): liquidation cancelled"),
    Event.LIQUIDATION_STARTED: (LIQ_BOLD, _started),
    Event.LIQUIDATION_RESTORED: (GOOD, lambda e: (
        f"{e['account']} is handed back after a tier step-down with {_positions(e)} (equity {_eth(e['equity'])} > "
        f"maintenance margin {_eth(e['maintenance_margin'])})" if e.get("after") == "step_down" else
        f"{e['account']} is handed back after a partial liquidation with "
        f"{_positions(e)} (equity {_eth(e['equity'])}, maintenance margin "
        f"{_eth(e['maintenance_margin'])}); for the cooldown, a new liquidation closes it all")),
    Event.LIQUIDATION_STEP_DOWN: (LIQ_BOLD, lambda e: (
        f"{e['account']} (equity {_eth(e['equity'])}, tiered maintenance margin {_eth(e['maintenance_margin'])}) "
        "is first stepped down a tier: an IOC closes "
        + ", ".join(f"{_qty(q)} of {_qty(e['positions'][m])} {m} (limit {_eth(e['limits'][m])})"
                    for m, q in e["closing"].items()))),
    Event.LIQUIDATION_PAUSED: (ALERT, lambda e: f"{e['account']}'s liquidation paused: no valid price in "
                           f"{', '.join(e['markets'])} for too long"),
    Event.LIQUIDATION_RESUMED: (WARN, lambda e: f"{e['account']}'s liquidation resumes: prices are back"),
    Event.CLEARANCE_FEE: (LIQ, lambda e: f"{e['account']} pays a clearance fee of {_eth(e['amount'])} on its liquidated "
                      f"slice (balance {_eth(e['balance'])})"),
    Event.LIQUIDATION_FILL: (LIQ, lambda e: f"{e['account']}'s liquidation order {_trade(e['size'])} {e['market']} at "
                         f"{_eth(e['price'])} (realized {_eth(e['realized_pnl'])})"),
    Event.BANKRUPTCY: (LIQ_BOLD, lambda e: f"{e['account']}'s liquidation order could not all fill in {e['market']} at "
                   "its bankruptcy price: the rest goes to the insurance fund there"),
    Event.FUND_TAKEOVER: (FUND, lambda e: f"insurance fund takes over {e['account']}'s {_held(e['size'])} {e['market']} "
                      f"at bankruptcy price {_eth(e['price'])}"),
    Event.LIQUIDATION_SETTLED: (LIQ, _settled),
    Event.FUND_SURPLUS: (GOOD_BOLD, lambda e: f"insurance fund receives {_eth(e['amount'])} surplus from {e['account']} "
                     f"(fund {_eth(e['balance'])})"),
    Event.FUND_ORDER: (FUND, lambda e: f"insurance fund closes its {_held(e['size'])} {e['market']} with an IOC limited "
                   f"at {_eth(e['limit'])} (may lose at most {_eth(e['max_loss'])})"),
    Event.FUND_PAYOUT: (FUND_BOLD, lambda e: f"insurance fund pays {_eth(e['amount'])} for {e['account']}'s bankruptcy "
                    f"(fund {_eth(e['balance'])})"),
    Event.FUND_GAIN: (GOOD_BOLD, lambda e: f"insurance fund gains {_eth(e['amount'])} closing {e['account']}'s position "
                  f"(fund {_eth(e['balance'])})"),
    Event.FUND_LOT_CLOSED: (FUND, lambda e: f"insurance fund closed {e['account']}'s position at no cost"),
    Event.FUND_INVENTORY_KEPT: (FUND_BOLD, lambda e: f"insurance fund keeps {_held(e['size'])} {e['market']}: nothing "
                            "left to deleverage"),
    Event.FUND_NETTED: (FUND, lambda e: f"insurance fund nets {e['size']} {e['market']} of its own long and short "
                    f"inventory at {_eth(e['price'])}"),
    Event.FUND_LIQUIDATION_FEE: (GOOD_BOLD, lambda e: f"insurance fund receives a clearance fee of {_eth(e['amount'])} "
                             f"from {e['account']} (fund {_eth(e['balance'])})"),
    Event.FUND_FEE_INCOME: (GOOD, lambda e: f"insurance fund receives {_eth(e['amount'])} of {e['account']}'s trading fee "
                        f"(fund {_eth(e['balance'])})"),
    Event.FUND_FUNDING_PAID: (FUND_BOLD, _funding_paid),
    Event.FUND_FUNDING_RECEIVED: (GOOD, lambda e: f"insurance fund receives {_eth(e['amount'])} of funding in "
                              f"{e['market']} (fund {_eth(e['balance'])})"),
    Event.FUND_LOT_OPENED: (FUND, lambda e: (
        f"insurance fund accepts {e['account']}'s {_held(e['size'])} {e['market']} at {_eth(e['bankruptcy_price'])}: "
        + (f"it gains {_eth(e['loss_at_mark'][1:])}" if e["loss_at_mark"].startswith("-")
           else f"it loses {_eth(e['loss_at_mark'])}")
        + f" at the mark, and {_eth(e['available'])} is available"
        if e["accepted"] else
        f"insurance fund cannot accept {e['account']}'s {_held(e['size'])} {e['market']}: it would lose "
        f"{_eth(e['loss_at_mark'])} at the mark, more than the {_eth(e['available'])} available")),
    Event.FUND_INVENTORY_HELD: (FUND, lambda e: f"insurance fund holds {_held(e['size'])} {e['market']} as inventory at "
                            f"mark {_eth(e['mark_price'])} ({_eth(e['reserved'])} reserved, "
                            f"{_eth(e['available'])} available)"),
    Event.FUND_ADL_REQUESTED: (ADL_BOLD, lambda e: f"insurance fund hands {e['size']} {e['market']} to ADL at "
                           f"{_eth(e['price'])}: " + {
                               "cannot accept": "it cannot accept the position",
                               "unfilled": "its order did not fill (one-shot policy)",
                               "drained": "its held inventory has drained it"}.get(e["reason"], e["reason"])),
    Event.VAULT_TAKEOVER: (FUND_BOLD, lambda e: f"the backstop vault {e['vault']} takes over {e['account']}'s "
                       f"{_held(e['size'])} {e['market']} at bankruptcy price {_eth(e['price'])} "
                       f"(vault balance {_eth(e['vault_balance'])})"),
    Event.FUND_SOCIALIZE_REQUESTED: (ADL_BOLD, lambda e: f"insurance fund would be {_eth(e['amount'])} short holding "
                                 f"lot {e['lot_id']} in {e['market']}: the loss is spread over the market's open "
                                 "positions (socialized loss)"),
    Event.SOCIALIZED_LOSS: (WARN, lambda e: f"{e['account']} pays {_eth(e['amount'].lstrip('-'))} of the socialized loss "
                        f"in {e['market']} (balance {_eth(e['balance'])})"),
    Event.FUND_SOCIALIZED_LOSS: (GOOD_BOLD, lambda e: f"insurance fund receives {_eth(e['amount'])} of socialized loss "
                             f"for lot {e['lot_id']} (fund {_eth(e['balance'])})"),
    Event.FUND_REVENUE: (GOOD, lambda e: f"insurance fund receives {_eth(e['amount'])} from the revenue pool "
                     f"(fund {_eth(e['balance'])}, pool {_eth(e['pool_left'])} left)"),
    Event.ADL_ORDERS_CANCELLED: (WARN, lambda e: f"{e['account']}'s open orders in {e['market']} are cancelled after ADL"),
    Event.FUND_INVENTORY_MARKED: (FUND, lambda e: f"insurance fund's {_held(e['size'])} {e['market']} at mark "
                              f"{_eth(e['mark_price'])}: unrealized {_eth(e['unrealized_pnl'])}, fund equity "
                              f"{_eth(e['equity'])} (balance {_eth(e['balance'])})"),
    Event.ORACLE_PRICE_REJECTED: (ALERT, _rejected),
    Event.ORACLE_STALE: (ALERT, _stale),
    Event.ORACLE_FRESH: (PRICE, lambda e: f"{e['market']} has a valid price again after {e['stale_for']} s without one"),
    Event.INDEX_PRICE: (QUIET, lambda e: f"index price of {e['market']}: {_eth(e['price'])}"),
    Event.MARK_COMPUTED: (QUIET, lambda e: f"{e['market']}: median(impact mid {e['impact_mid']}, price1 {e['price1']}, "
                      f"price2 {e['price2']}) = {_eth(e['mark'])}"),
    Event.FUNDING_RATE: (PRICE, _funding_rate),
    Event.FUNDING: (QUIET, _funding),
    Event.FUNDING_SHORTFALL: (LIQ_BOLD, lambda e: f"funding receivers in {e['market']} are owed {_eth(e['owed'])} more "
                          f"than payers paid; the fund adds {_eth(e['contributed'])}: paid pro rata"),
    Event.ADL_RANKING: (ADL_BOLD, lambda e: f"fund cannot close {e['remaining']} {e['market']}: auto-deleveraging, "
                    f"ranking {_ranking(e)}"),
    Event.ADL: (ADL, lambda e: f"ADL: {e['account']} {_trade(e['size'])} {e['market']} at {_eth(e['price'])} to the fund "
            f"(realized {_eth(e['realized_pnl'])})"),
    Event.ADL_INCOMPLETE: (LIQ_BOLD, lambda e: f"ADL found no one left to take {e['remaining']} {e['market']}"),
    Event.LIQUIDATION_REQUEST_IGNORED: (QUIET, lambda e: f"second liquidation request for {e['account']} ignored "
                                    f"({e['reason']})"),
    Event.INVARIANT_VIOLATED: (ALARM, lambda e: f"INVARIANT VIOLATED: {e['invariant']}: {e['detail']}"),
}

STYLES: Final = {kind: style for kind, (style, _) in _SENTENCES.items()}

# Every colour is a fixed one of the 256-colour palette or a hex colour, never
# one of the 16 basic names ("yellow", "white"): terminals remap those to
# anything, and white or yellow text vanishes on a light background. The
# default ("auto") theme uses mid tones whose contrast is at least 3.5:1
# against both black and white; "dark" and "light" use stronger ones for
# their background. Text with no colour (trades, "narr.trade") is the
# terminal's own foreground, which reads on any background.
_BASE: Final = {QUIET: "dim", ORDER: "dim italic", TRADE: "bold", ALARM: "bold #ffffff on #af0000"}
THEMES: Final[dict[str, dict[str, str]]] = {
    "auto": {PRICE: "#0087af", WARN: "#d75f00", ALERT: "bold #d75f00", LIQ: "#d70000", LIQ_BOLD: "bold #d70000",
             FUND: "#d700d7", FUND_BOLD: "bold #d700d7", GOOD: "#008700", GOOD_BOLD: "bold #008700",
             ADL: "#005fff", ADL_BOLD: "bold #005fff"},
    "dark": {PRICE: "#00afff", WARN: "#ffd700", ALERT: "bold #ffd700", LIQ: "#ff5f5f", LIQ_BOLD: "bold #ff5f5f",
             FUND: "#d75fd7", FUND_BOLD: "bold #d75fd7", GOOD: "#00d700", GOOD_BOLD: "bold #00d700",
             ADL: "#5f87ff", ADL_BOLD: "bold #5f87ff"},
    "light": {PRICE: "#005faf", WARN: "#af5f00", ALERT: "bold #af5f00", LIQ: "#d70000", LIQ_BOLD: "bold #d70000",
              FUND: "#8700af", FUND_BOLD: "bold #8700af", GOOD: "#005f00", GOOD_BOLD: "bold #005f00",
              ADL: "#0000d7", ADL_BOLD: "bold #0000d7"},
}


def theme_for(name: str) -> Theme:
    """The rich Theme of a narration theme ("auto", "dark" or "light")."""
    return Theme({**_BASE, **THEMES[name], "narr.stamp": "dim", "narr.actor": "dim"})


# One line at 80 columns ("legend: " + this); docs/narration.md says it at length.
LEGEND: Final = "ETH amounts, sizes in contracts; bids/asks rest; trade: fill; --explain"

# term -> (what it means, the event kinds whose sentence uses it)
GLOSSARY: Final[dict[str, tuple[str, frozenset[str]]]] = {
    "mark price": ("the exchange's reference price of a market, published by the oracle: it values every "
                   "position and decides who is liquidated", frozenset({"mark_price", "mark_computed",
                                                                         "fund_inventory_marked", "oracle_stale"})),
    "GTC": ("good-till-cancelled: an order that rests in the book (a bid to buy or an ask to sell) until it "
            "fills or is cancelled", frozenset({"order_placed", "order_cancelled"})),
    "IOC": ("immediate-or-cancel: an order that trades what it can at once and expires with the rest; "
            "liquidation and fund orders are IOC", frozenset({"order_expired", "fund_order", "order_placed"})),
    Event.TRADE: ("two orders matched in the book: the buyer's and the seller's positions change by the size "
              "at the trade price", frozenset({"trade"})),
    "equity": ("an account's balance plus the unrealized profit or loss of its positions at the mark price",
               frozenset({"margin_call", "liquidation_started", "liquidation_cancelled",
                          "liquidation_restored", "fund_inventory_marked"})),
    "maintenance margin": ("the least equity an account must keep, a share of its positions' value at the mark; "
                           "at or below it the account is liquidated",
                           frozenset({"margin_call", "liquidation_cancelled", "liquidation_restored"})),
    "liquidation": ("the engine takes over an account below maintenance margin, cancels its orders and closes "
                    "its positions with IOC orders", frozenset({"liquidation_started",
                                                                "liquidation_fill", "liquidation_settled",
                                                                "account_frozen"})),
    "bankruptcy price": ("the price at which a liquidated account's equity is exactly zero: a fill better than "
                         "it leaves a surplus for the fund, no fill makes the account bankrupt",
                         frozenset({"liquidation_started", "fund_takeover", "bankruptcy",
                                    "fund_lot_opened"})),
    "realized": ("realized profit or loss: what closing (part of) a position at that price adds to or takes "
                 "from the balance", frozenset({"liquidation_fill", "adl"})),
    "insurance fund": ("one fund for all markets (or, with several funds, one per group of markets): it receives "
                       "surpluses, takes over positions that could not be closed, and pays for bankruptcies; it "
                       "never goes below zero",
                       frozenset({k for k in _SENTENCES if k.startswith("fund_")})),
    "reserved": ("while it closes a position the fund sets aside the most it could lose on it; only the rest "
                 "is available", frozenset({"fund_order", "fund_inventory_held", "fund_lot_opened"})),
    "ADL": ("auto-deleveraging: what the fund cannot afford to close is closed against the most profitable, "
            "most leveraged traders on the other side, at the bankruptcy price",
            frozenset({"adl_ranking", "adl", "adl_incomplete"})),
    Event.FUNDING: ("periodic payments between longs and shorts that pull the mark price toward the index price",
                frozenset({"funding_rate", "funding", "funding_shortfall", "fund_funding_paid",
                           "fund_funding_received"})),
    "index price": ("the spot price of the underlying, the reference for funding and the median mark",
                    frozenset({"index_price", "funding_rate", "mark_computed"})),
    "stale": ("no valid oracle price for longer than the limit: new liquidations may pause",
              frozenset({"oracle_stale", "oracle_fresh", "liquidation_paused", "liquidation_resumed"})),
    "tier": ("a band of position size with its own margin rates: the larger the position, the higher the "
             "rate on the part in each higher tier", frozenset({"liquidation_step_down"})),
}


def glossary(kinds: Iterable[str]) -> list[tuple[str, str]]:
    """The glossary's entries for the terms that the narration of these event kinds uses, in glossary order."""
    seen = set(kinds)
    return [(term, text) for term, (text, used_by) in GLOSSARY.items() if used_by & seen]


def narrate(event: dict[str, Any]) -> str | None:
    """The sentence for ``event`` (user strings made visible by :func:`plain`), or None if it is left out."""
    entry = _SENTENCES.get(event["kind"])
    if entry is None:
        return None
    sentence = entry[1](event)
    if isinstance(event.get("fund"), str):  # several funds: say which one
        name = event["fund"]
        if "insurance fund" in sentence:
            sentence = sentence.replace("insurance fund", f"insurance fund {name}", 1)
        else:
            sentence += f" (fund {name})"
    return plain(sentence)


# A scenario with more scripted events than this is folded unless asked otherwise.
FOLD_ABOVE: Final = 100


def _foldable(event: dict[str, Any]) -> bool:
    """A re-quote: a resting order placed, or a resting order cancelled by its owner."""
    kind = event["kind"]
    return (kind == Event.ORDER_PLACED and event.get("tif") == "gtc") or kind == Event.ORDER_CANCELLED


class Narrator:
    """Prints events as they are recorded: ``log.subscribe(Narrator(console))``.

    ``wrap`` (default: when the console is a terminal) wraps each sentence to
    the console's width under itself; unwrapped, an event is one line however
    long, which keeps piped output one event per line. ``fold`` turns each
    instant's run of re-quotes (resting orders placed and cancelled) into one
    line per account; call :meth:`flush` at the end to print a pending fold
    (the ``run_finished`` event flushes too). ``theme`` (see :data:`THEMES`)
    is pushed onto the console, so whatever else prints the narration's
    styles there (the CLI's legend) gets the same colours.
    """

    def __init__(self, console: Console, *, wrap: bool | None = None, fold: bool = False, theme: str = "auto") -> None:
        console.push_theme(theme_for(theme))  # the narration's styles are names ("narr.trade"): give them colours
        self.console = console
        self.wrap = console.is_terminal if wrap is None else wrap
        self.fold = fold
        self._last_time: object = None
        self._folded: list[dict[str, Any]] = []

    def __call__(self, event: dict[str, Any]) -> None:
        if self.fold:
            if self._folded and (event["time"] != self._folded[0]["time"] or not _foldable(event)):
                if event["kind"] in _SENTENCES or event["kind"] == Event.RUN_FINISHED or _foldable(event):
                    self.flush()
            if _foldable(event):
                self._folded.append(event)
                return
        sentence = narrate(event)
        if sentence is not None:
            self._print(event["time"], event["actor"], sentence, _SENTENCES[event["kind"]][0])

    def flush(self) -> None:
        """Print the pending fold: one event as it is, more as one line per account."""
        folded, self._folded = self._folded, []
        if len(folded) == 1:
            e = folded[0]
            self._print(e["time"], e["actor"], narrate(e) or "", _SENTENCES[e["kind"]][0])
            return
        by_account: dict[str, list[dict[str, Any]]] = {}
        for e in folded:
            by_account.setdefault(e["account"], []).append(e)
        for account, events in by_account.items():
            self._print(events[0]["time"], "clearing", plain(_requotes(account, events)), ORDER)

    def _print(self, time: object, actor: str, sentence: str, style: str) -> None:
        stamp = f"t={time:<6}" if time != self._last_time else " " * 8
        self._last_time = time
        if not self.wrap:
            # Spans, not a base style: Text(stamp, style=...) would dim the whole line.
            line = Text.assemble((stamp, "narr.stamp"), (f" {plain(actor):<18} ", "narr.actor"), (sentence, style))
            self.console.print(line, soft_wrap=True, highlight=False)
            return
        print_hanging(self.console, Text.assemble((stamp, "narr.stamp"), (f" {plain(actor):<18} ", "narr.actor")),
                      Text(sentence, style=style))


def print_hanging(console: Console, head: Text, body: Text) -> None:
    """``head`` then ``body`` wrapped to the console's width, its later lines indented under its first.

    Wrapped with rich's word wrapping (a word longer than a line is folded),
    one printed line per wrapped line, so no line has trailing padding.
    """
    indent = head.cell_len
    lines = body.wrap(console, max(20, console.width - indent), overflow="fold")
    for i, line in enumerate(lines):
        line.rstrip()
        console.print(Text.assemble(head if i == 0 else " " * indent, line), soft_wrap=True, highlight=False)


def _range(prices: list[str]) -> str:
    from decimal import Decimal

    low, high = min(prices, key=Decimal), max(prices, key=Decimal)
    return _eth(low) if low == high else f"{low}-{_eth(high)}"


def _requotes(account: str, events: list[dict[str, Any]]) -> str:
    """One line for an account's re-quotes at one instant."""
    cancelled = sum(e["kind"] == Event.ORDER_CANCELLED for e in events)
    placed = [e for e in events if e["kind"] == Event.ORDER_PLACED]
    parts = []
    if cancelled:
        parts.append(f"cancels {cancelled} resting order{'s' * (cancelled > 1)}")
    if placed:
        sides = []
        for market in dict.fromkeys(e["market"] for e in placed):
            bids = [e["price"] for e in placed if e["market"] == market and e["side"] == "buy"]
            asks = [e["price"] for e in placed if e["market"] == market and e["side"] == "sell"]
            what = ([f"{len(bids)} bid{'s' * (len(bids) > 1)} {_range(bids)}"] if bids else []) + \
                   ([f"{len(asks)} ask{'s' * (len(asks) > 1)} {_range(asks)}"] if asks else [])
            sides.append(f"{' and '.join(what)} in {market}")
        parts.append("rests " + "; ".join(sides))
    return f"{account} re-quotes (folded): " + ", then ".join(parts) + " (GTC)"
