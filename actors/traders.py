"""Scripted traders and market makers.

A trader actor acts for exactly one account, through an
:class:`AccountHandle` bound to that account: whatever it is told to do, the
requests it sends carry its own account id, so it cannot act for another.
"""

from __future__ import annotations

from sandbox.messages import CancelOrder, Deposit, PlaceOrder, ScriptedEvent, Withdraw
from sandbox._core.actor import Actor
from sandbox._core.specs import EventSpec, OrderSpec

from ._common import CLEARING, trader_name

__all__ = ["Trader", "AccountHandle", "full_order_id"]


def full_order_id(account: str, client_id: str) -> str:
    """Exchange-wide order id: the account's own (client) id prefixed by the account."""
    return f"{account}#{client_id}"


class AccountHandle:
    """The only way a trader reaches the exchange: every request is for ``account``."""

    __slots__ = ("_actor", "account")

    def __init__(self, actor: Actor, account: str) -> None:
        self._actor = actor
        self.account = account

    def place(self, client_id: str, market: str, side: str, price: int, size: int, tif: str = "gtc") -> None:
        order_id = full_order_id(self.account, client_id)
        self._actor.send(CLEARING, PlaceOrder(self.account, order_id, market, side, price, size, tif))  # type: ignore[arg-type]

    def cancel(self, client_id: str) -> None:
        self._actor.send(CLEARING, CancelOrder(self.account, full_order_id(self.account, client_id)))

    def deposit(self, amount: int) -> None:
        self._actor.send(CLEARING, Deposit(self.account, amount))

    def withdraw(self, amount: int) -> None:
        self._actor.send(CLEARING, Withdraw(self.account, amount))


class Trader(Actor):
    def __init__(self, account: str) -> None:
        super().__init__(trader_name(account))
        self.handle = AccountHandle(self, account)
        self._auto_ids = 0

    def on_ScriptedEvent(self, msg: ScriptedEvent) -> None:
        event = msg.event
        if isinstance(event, OrderSpec):
            self._place(event)
        elif isinstance(event, EventSpec):
            if event.type == "order":
                assert event.order is not None
                self._place(event.order)
            elif event.type == "cancel":
                assert event.order_id is not None
                self.handle.cancel(event.order_id)
            elif event.type == "deposit":
                assert event.amount is not None
                self.handle.deposit(event.amount)
            elif event.type == "withdraw":
                assert event.amount is not None
                self.handle.withdraw(event.amount)
            else:
                raise ValueError(f"a trader cannot perform {event.type!r}")
        else:
            raise TypeError(f"unexpected scripted event {event!r}")

    def _place(self, spec: OrderSpec) -> None:
        client_id = spec.id
        if client_id is None:
            # Scenario ids may not contain '#', so these never collide with them.
            self._auto_ids += 1
            client_id = f"#{self._auto_ids}"
        self.handle.place(client_id, spec.market, spec.side, spec.price, spec.size, spec.tif)
