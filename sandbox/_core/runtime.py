"""The runtime: actors, the one seam through which every message is delivered, and virtual time.

The pieces live in :mod:`sandbox._core.actor` (the actor and its envelopes),
:mod:`sandbox._core.delivery` (the seam) and :mod:`sandbox._core.choosers`
(where a seeded delivery gets its decisions); this module puts them together.

An actor is a class with synchronous ``on_<MessageClass>`` handlers. Handlers
are synchronous on purpose: an actor's state changes only inside one handler
call, atomically, so the only thing that can interleave is *which message is
handled next*. That makes the space of behaviours exactly the space of
delivery orders, which a seeded random source or hypothesis can choose from,
and which shrinks to a short list of deliveries.

Every message goes through :meth:`Runtime.post` and then a :class:`Delivery`,
the seam. Two deliveries exist:

* :class:`SeededDelivery` (the default): keeps every in-flight message in a
  FIFO queue per (sender, recipient) link and lets a *chooser* pick which
  link's head is delivered next, one message at a time. Trio's own scheduling
  order can never leak in, so a seed replays a run byte for byte.
* :class:`LiveDelivery`: every actor is its own trio task reading a trio
  memory channel, draining it in batches; trio decides the interleaving. This
  is the fast mode, with real concurrency and no per-message control.

Both keep per-link FIFO order (a trio memory channel preserves the order of
one sender's messages; the seeded delivery chooses only among link heads),
like TCP between two processes. The protocol relies on that and on nothing
else: e.g. a book's fills for an order reach clearing before the book's
confirmation that the account's orders are cancelled.

Virtual time is owned by the runtime: the timeline advances it to each
scripted event's time once the exchange is quiet (no message in flight), the
equivalent of trio's ``MockClock`` with ``autojump_threshold=0``.
"""

from __future__ import annotations

import copy
from collections import deque
from typing import Any, Callable, Iterable

import attrs
import trio

from sandbox._core.eventlog import EventLog, time_seconds
from sandbox._core.actor import TIMELINE, Actor, Envelope, Violation
from sandbox._core.delivery import Delivery, SeededDelivery
from sandbox.messages import Invariant, Event


__all__ = ["Runtime", "ActorFailed"]


class Runtime:
    """Holds the actors, the clock, the event log and the delivery seam."""

    def __init__(self, delivery: Delivery | None = None, log: EventLog | None = None) -> None:
        self.actors: dict[str, Actor] = {}
        self.delivery: Delivery = delivery if delivery is not None else SeededDelivery(0)
        self.delivery.bind(self)
        self.log = log if log is not None else EventLog()
        self.now_ms = 0
        self.violations: list[Violation] = []
        self.trace: list[tuple[int, int, str, str, str]] | None = None
        self._seq = 0
        # Called after each delivery (e.g. to check invariants at every step).
        self.after_delivery: Callable[[Runtime, Envelope], None] | None = None
        # Actors that may crash: their last snapshot and what they handled since.
        self._durable: dict[str, _Durable] = {}
        self._snapshot_every = 20
        self._crashed_state: dict[str, Any] = {}

    def add(self, actor: Actor) -> Actor:
        if actor.name in self.actors:
            raise ValueError(f"two actors named {actor.name!r}")
        actor._runtime = self
        self.actors[actor.name] = actor
        return actor

    def __getitem__(self, name: str) -> Any:
        return self.actors[name]

    def post(self, sender: str, recipient: str, message: Any, delay_ms: int = 0) -> None:
        if recipient not in self.actors:
            raise KeyError(f"{sender} sent {type(message).__name__} to unknown actor {recipient!r}")
        envelope = Envelope(self._seq, sender, recipient, message)
        self._seq += 1
        if delay_ms:
            self.delivery.post(envelope, delay_ms)
        else:
            self.delivery.post(envelope)

    def deliver(self, envelope: Envelope) -> None:
        if self.trace is not None:
            self.trace.append(
                (envelope.seq, self.now_ms, envelope.sender, envelope.recipient, type(envelope.message).__name__)
            )
        actor = self.actors[envelope.recipient]
        try:
            handled = actor._dispatch(envelope)
        except Exception as e:
            raise ActorFailed(envelope, e) from e
        if not handled:
            self.log.record(self.now_ms, envelope.recipient, Event.DUPLICATE_IGNORED, {
                "message_seq": envelope.seq, "sender": envelope.sender, "message": type(envelope.message).__name__,
            })
        elif self._durable:
            durable = self._durable.get(envelope.recipient)
            if durable is not None:
                durable.journal.append(envelope)
                if len(durable.journal) >= self._snapshot_every:
                    durable.snapshot = copy.deepcopy(_state(actor))
                    durable.journal.clear()
        if self.after_delivery is not None:
            self.after_delivery(self, envelope)

    # -- crashes and restarts ----------------------------------------------------------

    def make_durable(self, names: Iterable[str], snapshot_every: int = 20) -> None:
        """Keep a snapshot and a journal for each of ``names``, so they can crash and restart."""
        self._snapshot_every = snapshot_every
        for name in names:
            self._durable[name] = _Durable(copy.deepcopy(_state(self.actors[name])), [])

    def crash(self, name: str, at: Envelope) -> None:
        """``name`` dies: its memory is gone; only its snapshot and journal survive."""
        durable = self._durable[name]
        # Kept only to check the rebuilt state against it; the restart never reads it.
        self._crashed_state[name] = _canonical(_state(self.actors[name]))
        self.log.record(self.now_ms, name, Event.ACTOR_CRASHED, {
            "before": type(at.message).__name__, "message_seq": at.seq, "journal": len(durable.journal),
        })

    def restart(self, name: str) -> None:
        """Rebuild ``name`` from its last snapshot, replaying its journal with its sends suppressed."""
        old = self.actors[name]
        durable = self._durable[name]
        fresh = object.__new__(type(old))
        fresh.__dict__.update(copy.deepcopy(durable.snapshot))
        fresh._runtime = self
        fresh._replaying = True
        try:
            for envelope in durable.journal:
                fresh._dispatch(envelope)
        finally:
            del fresh._replaying
        self.actors[name] = fresh
        before = self._crashed_state.pop(name, None)
        self.log.record(self.now_ms, name, Event.ACTOR_RESTARTED, {"replayed": len(durable.journal)})
        if before is not None and _canonical(_state(fresh)) != before:
            self.report(Violation(
                Invariant.RESTART_REBUILDS, f"{name}: snapshot + journal differ from the state it lost",
                time_seconds(self.now_ms), name,
            ))

    def report(self, violation: Violation) -> None:
        self.violations.append(violation)
        self.log.record(
            self.now_ms, violation.actor or "runtime", Event.INVARIANT_VIOLATED,
            {"invariant": violation.invariant, "detail": violation.detail},
        )

    async def run(
        self,
        timeline: Iterable[tuple[int, str, Any]],
        on_quiet: Callable[[Runtime], None] | None = None,
    ) -> None:
        """Feed each (time_ms, recipient, message) stimulus at its virtual time.

        Before a stimulus is posted, every message due at or before its time
        is delivered. With no network delay every message is due at once, so
        each stimulus runs until the exchange is quiet before the next one, in
        the given order (file order breaks ties). With a delay, stimuli can
        meet messages still in flight. ``on_quiet`` runs whenever nothing is
        in flight.
        """
        if on_quiet is not None:
            self.delivery.on_quiet = lambda: on_quiet(self)
        if not self.delivery.NEEDS_TASKS:
            await self._feed(timeline)
            return
        try:
            async with trio.open_nursery() as nursery:
                await self.delivery.start(nursery)
                await self._feed(timeline)
                nursery.cancel_scope.cancel()
        except BaseExceptionGroup as group:
            # An actor task failed: raise its own exception, not trio's wrapper,
            # so a live run fails the same way as a seeded one.
            raise _first_leaf(group) from None

    async def _feed(self, timeline: Iterable[tuple[int, str, Any]]) -> None:
        for at_ms, recipient, message in timeline:
            await self.delivery.run_until(at_ms)
            self.now_ms = max(self.now_ms, at_ms)
            self.post(TIMELINE, recipient, message)
        await self.delivery.run_until(None)


class ActorFailed(Exception):
    """An actor raised while handling a message: the run cannot go on."""

    def __init__(self, envelope: Envelope, error: Exception) -> None:
        self.envelope = envelope
        self.error = error
        super().__init__(
            f"actor {envelope.recipient} failed on {type(envelope.message).__name__} "
            f"(seq {envelope.seq}, from {envelope.sender}): {type(error).__name__}: {error}"
        )


@attrs.define
class _Durable:
    snapshot: dict[str, Any]
    journal: list[Envelope]


def _state(actor: Actor) -> dict[str, Any]:
    return {k: v for k, v in actor.__dict__.items() if k != "_runtime"}


def _canonical(value: Any) -> Any:
    """A comparable form of an actor's state: sets sorted, attrs objects by their fields."""
    if isinstance(value, dict):
        return [("dict", type(value).__name__)] + [(_canonical(k), _canonical(v)) for k, v in value.items()]
    if isinstance(value, (set, frozenset)):
        return ["set"] + sorted((_canonical(v) for v in value), key=repr)
    if isinstance(value, (list, tuple, deque)):
        return [type(value).__name__] + [_canonical(v) for v in value]
    if attrs.has(type(value)):
        return [type(value).__name__] + [_canonical(getattr(value, f.name)) for f in attrs.fields(type(value))]
    return value


def _first_leaf(group: BaseExceptionGroup) -> BaseException:
    first = group.exceptions[0]
    return _first_leaf(first) if isinstance(first, BaseExceptionGroup) else first
