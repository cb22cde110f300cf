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

import copy
import heapq
import math
import random
from collections import deque
from typing import Any, Callable, ClassVar, Iterable, Protocol, Sequence

import attrs
import trio
from sortedcontainers import SortedList

from sandbox._core.eventlog import EventLog, time_seconds
from sandbox.messages import fast_init

__all__ = [
    "Actor",
    "Envelope",
    "Runtime",
    "Delivery",
    "DeliveryWatcher",
    "SeededDelivery",
    "LiveDelivery",
    "Chooser",
    "SeededChooser",
    "RecordingChooser",
    "ScriptedChooser",
    "ReplayDiverged",
    "Network",
    "Faults",
    "ActorFailed",
    "UnhandledMessage",
    "Violation",
]

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


class Delivery(Protocol):
    """The seam: decides when, and in which order, posted messages are handled."""

    def bind(self, runtime: Runtime) -> None: ...

    def post(self, envelope: Envelope, delay_ms: int = 0) -> None: ...

    async def start(self, nursery: trio.Nursery) -> None: ...

    async def until_quiet(self) -> None:
        """Deliver until no message is in flight."""
        ...

    async def run_until(self, until: int | None) -> None:
        """Deliver every message due at or before virtual time ``until``."""
        ...

    on_quiet: Callable[[], None] | None
    NEEDS_TASKS: bool  # True if start() must run actor tasks in a nursery


class Chooser(Protocol):
    """Where a :class:`SeededDelivery` gets its decisions from."""

    def choose(self, n: int) -> int:
        """Pick one of ``n >= 2`` deliverable link heads, ordered oldest first."""
        ...

    def latency(self, low: int, high: int) -> int:
        """A message's delay in ms, ``low <= d <= high`` (only asked when ``low < high``)."""
        ...

    def chance(self, ppm: int) -> bool:
        """Whether a fault of probability ``ppm`` / 1e6 happens (only asked when ``0 < ppm``)."""
        ...


class SeededChooser:
    """Decisions from ``random.Random(seed)``: the same seed, the same run."""

    def __init__(self, seed: int) -> None:
        self._rng = random.Random(seed)

    def choose(self, n: int) -> int:
        return self._rng.randrange(n)

    def latency(self, low: int, high: int) -> int:
        return self._rng.randint(low, high)

    def chance(self, ppm: int) -> bool:
        return self._rng.randrange(1_000_000) < ppm


class RecordingChooser:
    """Wraps a chooser and records every decision, so a run can be replayed."""

    def __init__(self, inner: Chooser) -> None:
        self.inner = inner
        self.decisions: list[tuple[str, int, int, int]] = []  # (kind, low, high, value)
        # A chooser that picks by link (PCT) keeps doing so; what is recorded is
        # still the index among the due heads, so a ScriptedChooser replays it.
        inner_link = getattr(inner, "choose_link", None)
        if inner_link is not None:
            def choose_link(heads: Sequence[tuple[int, tuple[str, str]]]) -> int:
                value = inner_link(heads)
                self.decisions.append(("choose", 0, len(heads) - 1, value))
                return value

            self.choose_link = choose_link
        observe = getattr(inner, "observe_delivery", None)
        if observe is not None:
            self.observe_delivery = observe

    def choose(self, n: int) -> int:
        value = self.inner.choose(n)
        self.decisions.append(("choose", 0, n - 1, value))
        return value

    def latency(self, low: int, high: int) -> int:
        value = self.inner.latency(low, high)
        self.decisions.append(("latency", low, high, value))
        return value

    def chance(self, ppm: int) -> bool:
        value = self.inner.chance(ppm)
        self.decisions.append(("chance", ppm, 1, int(value)))
        return value


class ReplayDiverged(Exception):
    pass


class ScriptedChooser:
    """Replays recorded decisions; raises :class:`ReplayDiverged` if the run asks anything else."""

    def __init__(self, decisions: Iterable[tuple[str, int, int, int]]) -> None:
        self._decisions = list(decisions)
        self._next = 0

    def _take(self, kind: str, low: int, high: int) -> int:
        i = self._next
        if i >= len(self._decisions):
            raise ReplayDiverged(f"decision {i}: the run asks for a {kind} in [{low}, {high}] but the replay has no more")
        got = self._decisions[i]
        if (got[0], got[1], got[2]) != (kind, low, high):
            raise ReplayDiverged(f"decision {i}: the run asks for a {kind} in [{low}, {high}], the replay has {got}")
        self._next += 1
        return got[3]

    def choose(self, n: int) -> int:
        return self._take("choose", 0, n - 1)

    def latency(self, low: int, high: int) -> int:
        return self._take("latency", low, high)

    def chance(self, ppm: int) -> bool:
        return bool(self._take("chance", ppm, 1))


@attrs.frozen
class Network:
    """Per-message delay in virtual ms, uniform in [low, high]; per-link FIFO is kept."""

    low: int = 0
    high: int = 0


@attrs.frozen
class Faults:
    """Faults to inject, each decided by the chooser (so seeded, and searchable by explore).

    Probabilities are in ppm. ``delay``: a message is held ``delay_max_ms`` at
    most on top of its latency (its link stays FIFO, so the messages behind it
    wait too). ``duplicate``: a message is delivered twice. ``crash``: before a
    delivery to one of ``crash_actors``, the actor crashes, stays down
    ``crash_downtime_ms`` (messages to it wait), and restarts from its last
    snapshot plus the journal of what it handled since.
    """

    delay: int = 0
    delay_max_ms: int = 0
    duplicate: int = 0
    crash: int = 0
    crash_actors: tuple[str, ...] = ()
    crash_downtime_ms: int = 0
    snapshot_every: int = 20


class SeededDelivery:
    """One message at a time, the next one picked by a chooser among link heads.

    Candidates are the heads of the non-empty (sender, recipient) queues that
    are due (their delivery time has come), ordered by the order they were
    posted (oldest first), so choice 0 always means "the oldest message that
    may be delivered": a chooser that always answers 0 gives the global FIFO
    order, and hypothesis shrinks towards it. The chooser is consulted only
    when there is a real choice (two or more due links), so the recorded list
    of decisions is exactly the interleaving.

    With a :class:`Network`, each message is due ``latency`` ms after it was
    sent (drawn by the chooser), never before the previous message of its
    link; when nothing is due, virtual time jumps to the next due message.
    :class:`Faults` are injected here too, each a decision of the chooser.

    Choosing costs O(log n) in the number of non-empty links, not a scan:
    the due heads are kept in a sorted list by the seq of their head message
    (so "choice i" is an index into it), and the heads not yet due in a heap
    by due time, moved over as virtual time reaches them. A run that keeps
    thousands of messages in flight delivers as fast as one that keeps ten,
    so a runaway run reaches its explore budget in seconds. The decisions and
    the delivery order are exactly those of a scan over every link (tested
    against one in ``tests/test_search.py``).
    """

    # Let trio breathe (cancellation, KeyboardInterrupt) every so many messages.
    CHECKPOINT_EVERY = 2048
    NEEDS_TASKS = False

    def __init__(
        self,
        seed: int = 0,
        chooser: Chooser | None = None,
        network: Network | None = None,
        faults: Faults | None = None,
        watcher: DeliveryWatcher | None = None,
    ) -> None:
        self.chooser: Chooser = chooser if chooser is not None else SeededChooser(seed)
        self.network = network if network is not None else Network()
        self.faults = faults if faults is not None else Faults()
        self._links: dict[tuple[str, str], deque[tuple[int, Envelope]]] = {}
        # Every non-empty link is in exactly one of: _ready (its head is due;
        # entries (head seq, link)), or _waiting (a heap of (due, head seq,
        # link); an entry is live only while _wait_due[link] equals its due,
        # so a link re-scheduled by a crash leaves a stale entry behind).
        self._ready: SortedList = SortedList()
        self._waiting: list[tuple[int, int, tuple[str, str]]] = []
        self._wait_due: dict[tuple[str, str], int] = {}
        # The oldest message in flight, without a sorted structure: seqs are
        # posted in increasing order, so the smallest one still in flight only
        # moves up; _copies counts the envelopes of each seq in flight (a
        # duplicate shares its original's seq).
        self._copies: dict[int, int] = {}
        self._oldest = 0
        self._into: dict[str, set[tuple[str, str]]] = {}  # recipient -> its non-empty links (for crashes)
        self._runtime: Runtime | None = None
        self.delivered = 0
        self.on_quiet: Callable[[], None] | None = None
        self._down: dict[str, int] = {}  # crashed actor -> when it restarts
        self.watcher = watcher
        # Optional chooser hooks (a PCT scheduler needs to know the links, not
        # only how many there are, and which link each delivery came from).
        self._choose_link: Callable[[Sequence[tuple[int, tuple[str, str]]]], int] | None = getattr(
            self.chooser, "choose_link", None)
        self._observe: Callable[[tuple[str, str]], None] | None = getattr(self.chooser, "observe_delivery", None)

    def bind(self, runtime: Runtime) -> None:
        self._runtime = runtime

    def post(self, envelope: Envelope, delay_ms: int = 0) -> None:
        rt = self._runtime
        assert rt is not None
        due = rt.now_ms
        net = self.network
        if delay_ms:  # a timer (Actor.send_later): local, so no network latency
            due += delay_ms
        elif net.high:
            due += net.low if net.low == net.high else self.chooser.latency(net.low, net.high)
        faults = self.faults
        if faults.delay and envelope.sender != TIMELINE and self.chooser.chance(faults.delay):
            extra = self.chooser.latency(1, faults.delay_max_ms) if faults.delay_max_ms > 1 else 1
            due += extra
            rt.log.record(rt.now_ms, "network", "fault_delay", {
                "message_seq": envelope.seq, "sender": envelope.sender, "recipient": envelope.recipient,
                "message": type(envelope.message).__name__, "delay_ms": extra,
            })
        key = (envelope.sender, envelope.recipient)
        queue = self._links.get(key)
        new_head = queue is None
        if queue is None:
            queue = self._links[key] = deque()
        elif queue[-1][0] > due:
            due = queue[-1][0]
        queue.append((due, envelope))
        self._copies[envelope.seq] = 1
        if self.watcher is not None:
            self.watcher.posted(envelope)
        if faults.duplicate and envelope.sender != TIMELINE and self.chooser.chance(faults.duplicate):
            copy_ = attrs.evolve(envelope, duplicate=True)
            queue.append((due, copy_))
            self._copies[envelope.seq] = 2
            if self.watcher is not None:
                self.watcher.posted(copy_)
            rt.log.record(rt.now_ms, "network", "fault_duplicate", {
                "message_seq": envelope.seq, "sender": envelope.sender, "recipient": envelope.recipient,
                "message": type(envelope.message).__name__,
            })
        if new_head:
            into = self._into.get(key[1])
            if into is None:
                into = self._into[key[1]] = set()
            into.add(key)
            self._place(key, rt.now_ms)

    async def start(self, nursery: trio.Nursery) -> None:
        return None

    def in_flight(self) -> list[Envelope]:
        """Every posted, undelivered message, oldest first."""
        return sorted((e for q in self._links.values() for _, e in q), key=lambda e: e.seq)

    def oldest_seq(self) -> int | None:
        """The seq of the oldest message in flight (None if none is); amortized O(1)."""
        copies = self._copies
        if not copies:
            return None
        oldest = self._oldest
        while oldest not in copies:
            oldest += 1
        self._oldest = oldest
        return oldest

    def _due(self, key: tuple[str, str]) -> int:
        due = self._links[key][0][0]
        if self._down:
            restart = self._down.get(key[1])
            if restart is not None and restart > due:
                return restart
        return due

    def _place(self, key: tuple[str, str], now: int) -> None:
        """File a link whose head just changed: ready if its head is due at ``now``, else waiting."""
        due = self._due(key)
        seq = self._links[key][0][1].seq
        if due <= now:
            self._ready.add((seq, key))
        else:
            self._wait_due[key] = due
            heapq.heappush(self._waiting, (due, seq, key))

    def _promote(self, now: int) -> None:
        """Move every waiting link whose head is due at ``now`` to the ready list."""
        waiting = self._waiting
        while waiting and waiting[0][0] <= now:
            due, seq, key = heapq.heappop(waiting)
            if self._wait_due.get(key) == due:
                del self._wait_due[key]
                self._ready.add((seq, key))

    def _next_due(self) -> int:
        """When the first waiting link becomes due (some link is waiting)."""
        waiting = self._waiting
        while self._wait_due.get(waiting[0][2]) != waiting[0][0]:
            heapq.heappop(waiting)  # stale: that link was re-scheduled
        return waiting[0][0]

    def _hold(self, recipient: str, now: int) -> None:
        """``recipient`` is down: its links are due no earlier than its restart."""
        for key in self._into.get(recipient, ()):
            due = self._due(key)
            waiting = self._wait_due.get(key)
            if waiting is None:
                if due > now:
                    self._ready.remove((self._links[key][0][1].seq, key))
                    self._wait_due[key] = due
                    heapq.heappush(self._waiting, (due, self._links[key][0][1].seq, key))
            elif due > waiting:
                self._wait_due[key] = due
                heapq.heappush(self._waiting, (due, self._links[key][0][1].seq, key))

    def step(self, until: int | None = None) -> bool:
        """Deliver one message due by ``until`` (None: any). False when there is none."""
        links = self._links
        if not links:
            return False
        rt = self._runtime
        assert rt is not None
        now = rt.now_ms
        waiting = self._waiting
        if waiting and waiting[0][0] <= now:
            self._promote(now)
        ready = self._ready
        if not ready:
            due = self._next_due()
            if until is not None and due > until:
                return False
            rt.now_ms = now = due
            self._promote(due)
        n = len(ready)
        if n == 1:
            index = 0
        else:
            index = self._choose_link(ready) if self._choose_link is not None else self.chooser.choose(n)
            if not 0 <= index < n:
                raise ValueError(f"chooser returned {index} for {n} candidates")
        head = ready.pop(index)  # (one call instead of ready[index] and del ready[index])
        key = head[1]
        queue = links[key]
        recipient = key[1]
        if self._down and recipient in self._down:
            del self._down[recipient]
            rt.restart(recipient)
        faults = self.faults
        if faults.crash and recipient in faults.crash_actors and self.chooser.chance(faults.crash):
            # The actor dies before handling this message, which stays queued.
            ready.add(head)
            rt.crash(recipient, queue[0][1])
            self._down[recipient] = rt.now_ms + faults.crash_downtime_ms
            self._hold(recipient, now)
            return True
        envelope = queue.popleft()[1]
        left = self._copies[envelope.seq] - 1
        if left:
            self._copies[envelope.seq] = left
        else:
            del self._copies[envelope.seq]
        if queue:
            due, following = queue[0]
            if due <= now and not self._down:
                ready.add((following.seq, key))
            else:
                self._place(key, now)
        else:
            del links[key]
            self._into[recipient].discard(key)
        if self.watcher is not None:
            self.watcher.taken(envelope)
        self.delivered += 1
        rt.deliver(envelope)
        if self._observe is not None:
            self._observe(key)
        if not links and self.on_quiet is not None:
            self.on_quiet()
        return True

    async def run_until(self, until: int | None) -> None:
        """Deliver every message due at or before ``until`` (None: until nothing is in flight)."""
        n = 0
        while self.step(until):
            n += 1
            if n % self.CHECKPOINT_EVERY == 0:
                await trio.lowlevel.checkpoint()
        if until is None and self._down:
            # Nothing left to deliver: bring every crashed actor back, so the
            # run ends with every actor's state rebuilt.
            for name in list(self._down):
                del self._down[name]
                self._runtime.restart(name)  # type: ignore[union-attr]

    async def until_quiet(self) -> None:
        await self.run_until(None)


class DeliveryWatcher(Protocol):
    """Told of every message entering and leaving flight (e.g. to tally what is in flight)."""

    def posted(self, envelope: Envelope) -> None: ...

    def taken(self, envelope: Envelope) -> None: ...


class LiveDelivery:
    """Each actor is a trio task draining its own memory channel in batches."""

    NEEDS_TASKS = True

    def __init__(self, faults: Faults | None = None, seed: int = 0) -> None:
        # Live mode injects only crashes (no per-message control): an actor
        # restarts at once, from its snapshot and journal, between two batches.
        self.faults = faults if faults is not None else Faults()
        self._rng = random.Random(seed)
        self._senders: dict[str, trio.MemorySendChannel[Envelope]] = {}
        self._in_flight = 0
        self._quiet = trio.Event()
        self._runtime: Runtime | None = None
        self.delivered = 0
        self.on_quiet: Callable[[], None] | None = None

    def bind(self, runtime: Runtime) -> None:
        self._runtime = runtime

    def post(self, envelope: Envelope, delay_ms: int = 0) -> None:
        # No virtual clock here: a timer's delay is ignored, like the network model.
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
            faults = self.faults
            for envelope in batch:
                if (faults.crash and envelope.recipient in faults.crash_actors
                        and self._rng.randrange(1_000_000) < faults.crash):
                    rt = self._runtime
                    assert rt is not None
                    rt.crash(envelope.recipient, envelope)
                    rt.restart(envelope.recipient)
                deliver(envelope)
            self.delivered += len(batch)
            self._in_flight -= len(batch)
            if self._in_flight == 0:
                self._quiet.set()

    async def until_quiet(self) -> None:
        while self._in_flight:
            self._quiet = trio.Event()
            await self._quiet.wait()
        if self.on_quiet is not None:
            self.on_quiet()

    async def run_until(self, until: int | None) -> None:
        # Live mode has no network model: every message is due at once, so
        # "everything due by then" is "everything".
        if self._in_flight:
            await self.until_quiet()


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
            self.log.record(self.now_ms, envelope.recipient, "duplicate_ignored", {
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
        self.log.record(self.now_ms, name, "actor_crashed", {
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
        self.log.record(self.now_ms, name, "actor_restarted", {"replayed": len(durable.journal)})
        if before is not None and _canonical(_state(fresh)) != before:
            self.report(Violation(
                "a restarted actor rebuilds its state", f"{name}: snapshot + journal differ from the state it lost",
                time_seconds(self.now_ms), name,
            ))

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
