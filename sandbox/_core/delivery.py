"""The seam every message passes through: the seeded delivery (one message at a time, a chooser picks) and the live one (trio tasks), with the network's latency and the faults they inject."""

from __future__ import annotations

import heapq
import math
import random
from collections import deque
from typing import TYPE_CHECKING, Callable, Protocol, Sequence

import attrs
import trio
from sortedcontainers import SortedList

from sandbox._core.actor import TIMELINE, Envelope
from sandbox._core.choosers import Chooser, SeededChooser
from sandbox.messages import Event

__all__ = ["Delivery", "DeliveryWatcher", "SeededDelivery", "LiveDelivery", "Network", "Faults"]

if TYPE_CHECKING:
    from sandbox._core.runtime import Runtime


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
            rt.log.record(rt.now_ms, "network", Event.FAULT_DELAY, {
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
            rt.log.record(rt.now_ms, "network", Event.FAULT_DUPLICATE, {
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
