"""Actors, envelopes and the one seam through which every message is delivered.

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

import math
import random
from collections import deque
from typing import Any, Callable, ClassVar, Iterable, Protocol

import attrs
import trio

from .eventlog import EventLog, time_seconds

__all__ = [
    "Actor",
    "Envelope",
    "Runtime",
    "Delivery",
    "SeededDelivery",
    "LiveDelivery",
    "Chooser",
    "UnhandledMessage",
    "Violation",
]

TIMELINE = "timeline"


@attrs.frozen(slots=True)
class Envelope:
    seq: int
    sender: str
    recipient: str
    message: Any


@attrs.frozen
class Violation:
    """An invariant that did not hold: which, where, and the numbers."""

    invariant: str
    detail: str
    time: int | float = 0
    actor: str = ""


class UnhandledMessage(Exception):
    pass


class Actor:
    """Base of every actor. One instance owns its state; only its handlers touch it."""

    # Per class: message type -> unbound handler. Filled lazily by _dispatch.
    _handler_cache: ClassVar[dict[type, Callable[[Any, Any], None]]]

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls._handler_cache = {}

    def __init__(self, name: str) -> None:
        self.name = name
        self._runtime: Runtime | None = None

    # -- what a handler may do ---------------------------------------------------

    def send(self, recipient: str, message: Any) -> None:
        """Post a message; it is delivered later, through the delivery seam."""
        assert self._runtime is not None
        self._runtime.post(self.name, recipient, message)

    def emit(self, kind: str, **fields: Any) -> None:
        """Record a domain event in the event log."""
        assert self._runtime is not None
        self._runtime.log.record(self._runtime.now_ms, self.name, kind, fields)

    def violation(self, invariant: str, detail: str) -> None:
        """Report an invariant broken in a way only this actor can see."""
        assert self._runtime is not None
        self._runtime.report(Violation(invariant, detail, time_seconds(self._runtime.now_ms), self.name))

    @property
    def now_ms(self) -> int:
        assert self._runtime is not None
        return self._runtime.now_ms

    # -- runtime side ----------------------------------------------------------------

    def _dispatch(self, envelope: Envelope) -> None:
        message = envelope.message
        cls = type(self)
        handler = cls._handler_cache.get(type(message))
        if handler is None:
            handler = getattr(cls, "on_" + type(message).__name__, None)
            if handler is None:
                raise UnhandledMessage(f"{self.name} has no handler for {type(message).__name__}")
            cls._handler_cache[type(message)] = handler
        handler(self, message)


class Delivery(Protocol):
    """The seam: decides when, and in which order, posted messages are handled."""

    def bind(self, runtime: Runtime) -> None: ...

    def post(self, envelope: Envelope) -> None: ...

    async def start(self, nursery: trio.Nursery) -> None: ...

    async def until_quiet(self) -> None:
        """Deliver until no message is in flight."""
        ...


class Chooser(Protocol):
    def __call__(self, n: int) -> int:
        """Pick one of ``n >= 2`` deliverable link heads, ordered oldest first."""
        ...


def seeded_chooser(seed: int) -> Chooser:
    rng = random.Random(seed)
    return rng.randrange


class SeededDelivery:
    """One message at a time, the next one picked by a chooser among link heads.

    Candidates are the heads of the non-empty (sender, recipient) queues,
    ordered by the order they were posted (oldest first), so choice 0 always
    means "the oldest message that may be delivered": a chooser that always
    answers 0 gives the global FIFO order, and hypothesis shrinks towards it.
    The chooser is consulted only when there is a real choice (two or more
    links), so a recorded list of choices is exactly the interleaving.
    """

    # Let trio breathe (cancellation, KeyboardInterrupt) every so many messages.
    CHECKPOINT_EVERY = 2048

    def __init__(self, seed: int = 0, chooser: Chooser | None = None) -> None:
        self.choose: Chooser = chooser if chooser is not None else seeded_chooser(seed)
        self._links: dict[tuple[str, str], deque[Envelope]] = {}
        self._runtime: Runtime | None = None
        self.choices: list[int] = []
        self.delivered = 0

    def bind(self, runtime: Runtime) -> None:
        self._runtime = runtime

    def post(self, envelope: Envelope) -> None:
        key = (envelope.sender, envelope.recipient)
        queue = self._links.get(key)
        if queue is None:
            self._links[key] = deque((envelope,))
        else:
            queue.append(envelope)

    async def start(self, nursery: trio.Nursery) -> None:
        return None

    def in_flight(self) -> list[Envelope]:
        return sorted((e for q in self._links.values() for e in q), key=lambda e: e.seq)

    def step(self) -> bool:
        """Deliver one message. False when nothing is in flight."""
        links = self._links
        if not links:
            return False
        if len(links) == 1:
            key = next(iter(links))
        else:
            heads = sorted(links, key=lambda k: links[k][0].seq)
            choice = self.choose(len(heads))
            if not 0 <= choice < len(heads):
                raise ValueError(f"chooser returned {choice} for {len(heads)} candidates")
            self.choices.append(choice)
            key = heads[choice]
        queue = links[key]
        envelope = queue.popleft()
        if not queue:
            del links[key]
        self.delivered += 1
        assert self._runtime is not None
        self._runtime.deliver(envelope)
        return True

    async def until_quiet(self) -> None:
        n = 0
        while self.step():
            n += 1
            if n % self.CHECKPOINT_EVERY == 0:
                await trio.lowlevel.checkpoint()


class LiveDelivery:
    """Each actor is a trio task draining its own memory channel in batches."""

    def __init__(self) -> None:
        self._senders: dict[str, trio.MemorySendChannel[Envelope]] = {}
        self._in_flight = 0
        self._quiet = trio.Event()
        self._runtime: Runtime | None = None
        self.delivered = 0

    def bind(self, runtime: Runtime) -> None:
        self._runtime = runtime

    def post(self, envelope: Envelope) -> None:
        self._in_flight += 1
        self._senders[envelope.recipient].send_nowait(envelope)

    async def start(self, nursery: trio.Nursery) -> None:
        assert self._runtime is not None
        for name in self._runtime.actors:
            send, receive = trio.open_memory_channel[Envelope](math.inf)
            self._senders[name] = send
            nursery.start_soon(self._actor_loop, receive, name=f"actor:{name}")

    async def _actor_loop(self, receive: trio.MemoryReceiveChannel[Envelope]) -> None:
        deliver = self._runtime.deliver  # type: ignore[union-attr]
        async for first in receive:
            batch = [first]
            # Drain whatever else is already queued: one wake-up, many messages.
            try:
                while True:
                    batch.append(receive.receive_nowait())
            except trio.WouldBlock:
                pass
            for envelope in batch:
                deliver(envelope)
            self.delivered += len(batch)
            self._in_flight -= len(batch)
            if self._in_flight == 0:
                self._quiet.set()

    async def until_quiet(self) -> None:
        while self._in_flight:
            self._quiet = trio.Event()
            await self._quiet.wait()


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

    def add(self, actor: Actor) -> Actor:
        if actor.name in self.actors:
            raise ValueError(f"two actors named {actor.name!r}")
        actor._runtime = self
        self.actors[actor.name] = actor
        return actor

    def __getitem__(self, name: str) -> Any:
        return self.actors[name]

    def post(self, sender: str, recipient: str, message: Any) -> None:
        if recipient not in self.actors:
            raise KeyError(f"{sender} sent {type(message).__name__} to unknown actor {recipient!r}")
        envelope = Envelope(self._seq, sender, recipient, message)
        self._seq += 1
        self.delivery.post(envelope)

    def deliver(self, envelope: Envelope) -> None:
        if self.trace is not None:
            self.trace.append(
                (envelope.seq, self.now_ms, envelope.sender, envelope.recipient, type(envelope.message).__name__)
            )
        self.actors[envelope.recipient]._dispatch(envelope)
        if self.after_delivery is not None:
            self.after_delivery(self, envelope)

    def report(self, violation: Violation) -> None:
        self.violations.append(violation)
        self.log.record(
            self.now_ms, violation.actor or "runtime", "invariant_violated",
            {"invariant": violation.invariant, "detail": violation.detail},
        )

    async def run(
        self,
        timeline: Iterable[tuple[int, str, Any]],
        on_quiet: Callable[[Runtime], None] | None = None,
    ) -> None:
        """Feed each (time_ms, recipient, message) stimulus, then wait until quiet.

        Stimuli are delivered one at a time in the given order, each to
        quiescence, so file order breaks ties between events at the same
        virtual time. ``on_quiet`` runs at every quiet point.
        """
        async with trio.open_nursery() as nursery:
            await self.delivery.start(nursery)
            for at_ms, recipient, message in timeline:
                self.now_ms = max(self.now_ms, at_ms)
                self.post(TIMELINE, recipient, message)
                await self.delivery.until_quiet()
                if on_quiet is not None:
                    on_quiet(self)
            nursery.cancel_scope.cancel()
