"""The actor: an envelope's recipient with synchronous ``on_<Message>`` handlers, and what it may report."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable, ClassVar

import attrs

from sandbox._core.eventlog import time_seconds
from sandbox.messages import fast_init

__all__ = ["TIMELINE", "Actor", "Envelope", "UnhandledMessage", "Violation"]

if TYPE_CHECKING:
    from sandbox._core.runtime import Runtime


TIMELINE = "timeline"


@fast_init
@attrs.frozen(slots=True)
class Envelope:
    seq: int  # the message id: unique, and increasing along every link
    sender: str
    recipient: str
    message: Any
    duplicate: bool = False  # a copy injected by the duplicate-delivery fault


@attrs.frozen
class Violation:
    """An invariant that did not hold: which, where, and the numbers.

    ``invariant`` is the name (a :class:`sandbox.messages.Invariant`), kept as
    its plain string, so that a violation prints, compares and serialises as
    the name it reports.
    """

    invariant: str = attrs.field(converter=str)
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

    # True while a restarted actor replays its journal: what it sends, emits or
    # reports then was already sent, emitted or reported before the crash.
    _replaying: bool = False

    def __init__(self, name: str) -> None:
        self.name = name
        self._runtime: Runtime | None = None
        # The last message id handled from each sender. Ids increase along a
        # link and links are FIFO, so anything at or below it is a duplicate.
        self._last_seq: dict[str, int] = {}
        self.sender = ""  # who sent the message being handled

    # -- what a handler may do ---------------------------------------------------

    def send(self, recipient: str, message: Any) -> None:
        """Post a message; it is delivered later, through the delivery seam."""
        assert self._runtime is not None
        if not self._replaying:
            self._runtime.post(self.name, recipient, message)

    def send_later(self, delay_ms: int, message: Any) -> None:
        """A timer: post ``message`` to this actor, due ``delay_ms`` virtual ms from now.

        The seeded delivery holds it until then (a cooldown keeps the run
        busy, so no quiet point passes while it is pending); live mode, which
        has no virtual clock of its own, delivers it at once.
        """
        assert self._runtime is not None
        if not self._replaying:
            self._runtime.post(self.name, self.name, message, delay_ms)

    def emit(self, kind: str, **fields: Any) -> None:
        """Record a domain event in the event log."""
        assert self._runtime is not None
        if not self._replaying:
            self._runtime.log.record(self._runtime.now_ms, self.name, kind, fields)

    def emit_lazy(self, kind: str, make: Callable[..., dict[str, Any]], *args: Any) -> None:
        """Record a domain event whose fields are ``make(*args)``, made only if someone reads it.

        For events on a hot path (a book's trades): formatting their amounts
        costs more than the match itself, and a run that keeps no log (a
        soak, the bench) never reads them. ``args`` are the plain values the
        fields are made of (they must not change later); the event reads the
        same as one recorded with :meth:`emit`.
        """
        assert self._runtime is not None
        if not self._replaying:
            self._runtime.log.record_lazy(self._runtime.now_ms, self.name, kind, make, args)

    def violation(self, invariant: str, detail: str) -> None:
        """Report an invariant broken in a way only this actor can see."""
        assert self._runtime is not None
        if not self._replaying:
            self._runtime.report(Violation(invariant, detail, time_seconds(self._runtime.now_ms), self.name))

    @property
    def now_ms(self) -> int:
        assert self._runtime is not None
        return self._runtime.now_ms

    # -- runtime side ----------------------------------------------------------------

    def _dispatch(self, envelope: Envelope) -> bool:
        """Handle ``envelope`` once; False if it is a duplicate and was ignored."""
        sender = envelope.sender
        seq = envelope.seq
        last = self._last_seq
        if seq <= last.get(sender, -1):
            return False
        last[sender] = seq
        self.sender = sender
        message = envelope.message
        handler = self._handler_cache.get(type(message))
        if handler is None:
            cls = type(self)
            handler = getattr(cls, "on_" + type(message).__name__, None)
            if handler is None:
                raise UnhandledMessage(f"{self.name} has no handler for {type(message).__name__}")
            cls._handler_cache[type(message)] = handler
        handler(self, message)
        return True
