"""The narrated timeline: one plain sentence per event a person should see.

Rendered with rich: coloured on a terminal, plain text when piped. Events
without a sentence here (e.g. fees) are left out of the narration; they are
all still in ``events.jsonl``.
"""

from __future__ import annotations

from typing import Any, Callable, Final

import attrs
from rich.console import Console
from rich.text import Text

from .money import fmt_money, fmt_price, fmt_size

__all__ = ["narrate", "Narrator", "STYLES", "describe_message"]

_PRICE_FIELDS = {"price", "limit", "mark_price", "bid", "ask"}
_SIZE_FIELDS = {"size", "filled", "unfilled", "remaining", "keep"}
_MONEY_FIELDS = {"amount", "balance", "equity", "maintenance_margin", "budget", "surplus", "entry_value", "notional"}


def describe_message(message: object) -> str:
    """A message in one line with its amounts in decimal units, e.g. ``Fill(order_id=…, size=-1, price=93)``."""
    if not attrs.has(type(message)):
        return repr(message)
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
    return f"{type(message).__name__}({', '.join(parts)})"


def _ranking(e: dict[str, Any]) -> str:
    return ", ".join(e["ranking"]) or "nobody"


def _qty(size: str) -> str:
    return size.lstrip("-")


def _held(size: str) -> str:
    return f"short {_qty(size)}" if size.startswith("-") else f"long {size}"


def _trade(size: str) -> str:
    return f"sells {_qty(size)}" if size.startswith("-") else f"buys {size}"


def _prices(e: dict[str, Any]) -> str:
    return ", ".join(f"{m} {p}" for m, p in e["bankruptcy_prices"].items())


def _started(e: dict[str, Any]) -> str:
    if "closing" not in e:
        return f"liquidating {e['account']} (equity {e['equity']}): closing at bankruptcy price {_prices(e)}"
    closing = ", ".join(f"{_qty(q)} of {_qty(e['positions'][m])} {m}" for m, q in e["closing"].items())
    who = (f"liquidating {e['account']} in slices" if e["kind"] == "liquidation_started"
           else f"{e['account']} still underwater after the cooldown")
    return f"{who} (equity {e['equity']}), slice {e['slice']}: closing {closing} at bankruptcy price {_prices(e)}"


_REJECTED = {"missing": "no price", "zero": "a price of zero", "negative": "a negative price"}


def _rejected(e: dict[str, Any]) -> str:
    if e["reason"] == "outside_band":
        why = f"{e['price']} moves more than {_pct(e['band'])} from {e['last_valid']}"
    else:
        why = _REJECTED.get(e["reason"], e["reason"]) + ("" if e["price"] is None else f" ({e['price']})")
    return f"{e['market']} price rejected: {why}; the mark stays {e['last_valid']}"


def _pct(rate: str) -> str:
    """A rate as a percentage: "0.0025" -> "0.25%"."""
    from decimal import Decimal

    return f"{(Decimal(rate) * 100).normalize():f}%"


def _funding_rate(e: dict[str, Any]) -> str:
    rate = e["rate"]
    who = "nobody pays" if rate == "0" else ("shorts pay longs" if rate.startswith("-") else "longs pay shorts")
    return f"funding of {e['market']}: mark {e['mark_price']} vs index {e['index']}, rate {_pct(rate)}: {who}"


def _funding(e: dict[str, Any]) -> str:
    amount = e["amount"]
    verb = f"pays {amount[1:]}" if amount.startswith("-") else f"receives {amount}"
    return f"{e['account']} {verb} funding in {e['market']} (balance {e['balance']})"


def _settled(e: dict[str, Any]) -> str:
    if "returned" in e:
        return (f"{e['account']}'s liquidation settled: a clearance fee of {e['clearance_fee']} goes to the fund, "
                f"{e['returned']} is returned to {e['account']}")
    return (f"{e['account']}'s liquidation settled: {e['account']} ends at 0"
            + (f", the {e['surplus']} left over goes to the fund" if e["surplus"] != "0" else ""))


def _positions(e: dict[str, Any]) -> str:
    return ", ".join(f"{_held(size)} {m}" for m, size in e["positions"].items()) or "nothing"


# kind -> (style, sentence)
_SENTENCES: Final[dict[str, tuple[str, Callable[[dict[str, Any]], str]]]] = {
    "mark_price": ("cyan", lambda e: f"mark price of {e['market']}: {e['previous']} -> {e['price']}"),
    "order_placed": ("dim", lambda e: f"{e['account']} {e['side']}s {e['size']} {e['market']} at {e['price']} ({e['tif']})"),
    "order_rejected": ("yellow", lambda e: f"{e['account']}'s order {e.get('order_id', '')} rejected: {e['reason']}"),
    "cancel_rejected": ("yellow", lambda e: f"{e['account']}'s cancel of {e['order_id']} rejected: {e['reason']}"),
    "deposit_rejected": ("yellow", lambda e: f"{e['account']}'s deposit of {e['amount']} rejected: {e['reason']}"),
    "withdraw_rejected": ("yellow", lambda e: f"{e['account']}'s withdrawal of {e['amount']} rejected: {e['reason']}"),
    "order_cancelled": ("dim", lambda e: f"order {e['order_id']} of {e['account']} cancelled ({e['reason']}, {e['unfilled']} unfilled)"),
    "order_expired": ("dim", lambda e: f"IOC order {e['order_id']} of {e['account']} expired with {e['unfilled']} unfilled"),
    "deposit": ("green", lambda e: f"{e['account']} deposits {e['amount']} (balance {e['balance']})"),
    "withdraw": ("green", lambda e: f"{e['account']} withdraws {e['amount']} (balance {e['balance']})"),
    "trade": ("white", lambda e: f"trade {e['size']} {e['market']} at {e['price']}: {e['buyer']} buys from {e['seller']}"
              + ("" if e["taker_kind"] == "trader" else f" ({e['taker_kind']} order)")),
    "margin_call": ("bold yellow", lambda e: f"{e['account']}'s equity {e['equity']} <= maintenance margin {e['maintenance_margin']}: liquidation requested"),
    "account_frozen": ("yellow", lambda e: f"{e['account']} taken over by the liquidation engine"
                       + (f", cancelling its orders in {', '.join(e['cancelling'])}" if e["cancelling"] else "")),
    "account_unfrozen": ("green", lambda e: f"{e['account']} handed back to its owner"),
    "liquidation_cancelled": ("green", lambda e: f"{e['account']} is healthy after all (equity {e['equity']} > {e['maintenance_margin']}): liquidation cancelled"),
    "liquidation_started": ("bold red", _started),
    "liquidation_slice": ("bold red", _started),
    "liquidation_restored": ("green", lambda e: f"{e['account']} is above maintenance margin again (equity {e['equity']} > {e['maintenance_margin']}): handed back with {_positions(e)}"),
    "liquidation_paused": ("bold yellow", lambda e: f"{e['account']}'s liquidation paused: no valid price in {', '.join(e['markets'])} for too long"),
    "liquidation_resumed": ("yellow", lambda e: f"{e['account']}'s liquidation resumes: prices are back"),
    "clearance_fee": ("red", lambda e: f"{e['account']} pays a clearance fee of {e['amount']} on its liquidated slice (balance {e['balance']})"),
    "liquidation_fill": ("red", lambda e: f"{e['account']}'s liquidation order {_trade(e['size'])} {e['market']} at {e['price']} (realized {e['realized_pnl']})"),
    "bankruptcy": ("bold red", lambda e: f"{e['account']}'s liquidation order could not fill in {e['market']}: bankrupt"),
    "fund_takeover": ("magenta", lambda e: f"insurance fund takes over {e['account']}'s {_held(e['size'])} {e['market']} at bankruptcy price {e['price']}"),
    "liquidation_settled": ("red", _settled),
    "fund_surplus": ("bold green", lambda e: f"insurance fund receives {e['amount']} surplus from {e['account']} (fund {e['balance']})"),
    "fund_order": ("magenta", lambda e: f"insurance fund closes its {_held(e['size'])} {e['market']} with an IOC limited at {e['limit']} (may lose at most {e['max_loss']})"),
    "fund_payout": ("bold magenta", lambda e: f"insurance fund pays {e['amount']} for {e['account']}'s bankruptcy (fund {e['balance']})"),
    "fund_gain": ("bold green", lambda e: f"insurance fund gains {e['amount']} closing {e['account']}'s position (fund {e['balance']})"),
    "fund_lot_closed": ("magenta", lambda e: f"insurance fund closed {e['account']}'s position at no cost"),
    "fund_inventory_kept": ("bold magenta", lambda e: f"insurance fund keeps {_held(e['size'])} {e['market']}: nothing left to deleverage"),
    "fund_netted": ("magenta", lambda e: f"insurance fund nets {e['size']} {e['market']} of its own long and short inventory at {e['price']}"),
    "fund_liquidation_fee": ("bold green", lambda e: f"insurance fund receives a clearance fee of {e['amount']} from {e['account']} (fund {e['balance']})"),
    "fund_fee_income": ("green", lambda e: f"insurance fund receives {e['amount']} of {e['account']}'s trading fee (fund {e['balance']})"),
    "fund_funding_paid": ("bold magenta", lambda e: (
        f"insurance fund pays {e['amount']} of funding in {e['market']} for its inventory (fund {e['balance']})"
        if e["owed"] == e["amount"] else
        f"insurance fund owes {e['owed']} of funding in {e['market']} and pays all it has available, {e['amount']} (fund {e['balance']})")),
    "fund_funding_received": ("green", lambda e: f"insurance fund receives {e['amount']} of funding in {e['market']} (fund {e['balance']})"),
    "fund_lot_opened": ("magenta", lambda e: (
        f"insurance fund accepts {e['account']}'s {_held(e['size'])} {e['market']} at {e['bankruptcy_price']}: it loses {e['loss_at_mark']} at the mark, and {e['available']} is available"
        if e["accepted"] else
        f"insurance fund cannot accept {e['account']}'s {_held(e['size'])} {e['market']}: it would lose {e['loss_at_mark']} at the mark, more than the {e['available']} available")),
    "fund_inventory_held": ("magenta", lambda e: f"insurance fund holds {_held(e['size'])} {e['market']} as inventory at mark {e['mark_price']} ({e['reserved']} reserved, {e['available']} available)"),
    "fund_adl_requested": ("bold magenta", lambda e: f"insurance fund hands {e['size']} {e['market']} to ADL at {e['price']}: " + {
        "cannot accept": "it cannot accept the position", "unfilled": "its order did not fill (one-shot policy)",
        "drained": "its held inventory has drained it"}.get(e["reason"], e["reason"])),
    "adl_orders_cancelled": ("yellow", lambda e: f"{e['account']}'s open orders in {e['market']} are cancelled after ADL"),
    "fund_inventory_marked": ("magenta", lambda e: f"insurance fund's {_held(e['size'])} {e['market']} at mark {e['mark_price']}: unrealized {e['unrealized_pnl']}, fund equity {e['equity']} (balance {e['balance']})"),
    "oracle_price_rejected": ("bold yellow", _rejected),
    "oracle_stale": ("bold yellow", lambda e: f"{e['market']} is stale: no valid price since t={e['since']} (limit {e['limit']} s); new liquidations {'pause' if e['liquidations'] == 'paused' else 'continue at ' + e['last_valid']}"),
    "oracle_fresh": ("cyan", lambda e: f"{e['market']} has a valid price again after {e['stale_for']} s without one"),
    "index_price": ("dim", lambda e: f"index price of {e['market']}: {e['price']}"),
    "mark_computed": ("dim", lambda e: f"{e['market']}: median(impact mid {e['impact_mid']}, price1 {e['price1']}, price2 {e['price2']}) = {e['mark']}"),
    "funding_rate": ("cyan", _funding_rate),
    "funding": ("dim", _funding),
    "funding_shortfall": ("bold red", lambda e: f"funding receivers in {e['market']} are owed {e['owed']} more than payers paid; the fund adds {e['contributed']}: paid pro rata"),
    "adl_ranking": ("bold blue", lambda e: f"fund cannot close {e['remaining']} {e['market']}: auto-deleveraging, ranking {_ranking(e)}"),
    "adl": ("blue", lambda e: f"ADL: {e['account']} {_trade(e['size'])} {e['market']} at {e['price']} to the fund (realized {e['realized_pnl']})"),
    "adl_incomplete": ("bold red", lambda e: f"ADL found no one left to take {e['remaining']} {e['market']}"),
    "liquidation_request_ignored": ("dim", lambda e: f"second liquidation request for {e['account']} ignored ({e['reason']})"),
    "invariant_violated": ("bold white on red", lambda e: f"INVARIANT VIOLATED: {e['invariant']}: {e['detail']}"),
}

STYLES: Final = {kind: style for kind, (style, _) in _SENTENCES.items()}


def narrate(event: dict[str, Any]) -> str | None:
    """The sentence for ``event``, or None if the narration leaves it out."""
    entry = _SENTENCES.get(event["kind"])
    return None if entry is None else entry[1](event)


class Narrator:
    """Prints events as they are recorded: ``log.subscribe(Narrator(console))``."""

    def __init__(self, console: Console) -> None:
        self.console = console
        self._last_time: object = None

    def __call__(self, event: dict[str, Any]) -> None:
        sentence = narrate(event)
        if sentence is None:
            return
        kind = event["kind"]
        time = event["time"]
        stamp = f"t={time:<6}" if time != self._last_time else " " * 8
        self._last_time = time
        line = Text(stamp, style="dim")
        line.append(f" {event['actor']:<19}", style="dim")
        line.append(sentence, style=_SENTENCES[kind][0])
        self.console.print(line, soft_wrap=True, highlight=False)
