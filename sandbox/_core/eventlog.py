"""The event log: what the actors say happened, in the order it happened.

Each event is a flat dict with ``seq`` (contiguous from 0), virtual ``time``
(seconds), ``actor``, ``kind`` and the event's own fields. Amounts, prices and
sizes are exact decimal strings. Events are the one source for the narrated
timeline, ``events.jsonl`` and the counts in ``summary.json``.

:class:`EventFile` writes ``events.jsonl`` *as events happen*, one ``write()``
of one whole line per event, so a run killed at any moment (even by SIGKILL)
leaves a valid prefix of its log on disk.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from types import TracebackType
from typing import Any, Callable, Iterable, Iterator

__all__ = ["EventLog", "EventFile", "time_seconds"]


def time_seconds(ms: int) -> int | float:
    """Virtual time for JSON: whole seconds as an int, otherwise ms / 1000."""
    return ms // 1000 if ms % 1000 == 0 else ms / 1000


class EventLog:
    """The events of one run, kept in memory (``keep=False``: only counted and
    passed to the listeners, for runs too long to keep, such as a soak).

    An event may be recorded *lazily* (:meth:`record_lazy`): its own fields
    are made by a function of values captured when it happened (ints and
    strings, never a live object), called only when someone reads the event:
    at once if a listener wants that kind, else when :attr:`events` is next
    read (or never, when nothing keeps or reads it). The fields are the same
    values either way; only the time they are formatted moves.
    """

    def __init__(self, keep: bool = True) -> None:
        self._events: list[dict[str, Any]] = []
        # Lazily recorded events of _events whose fields are not made yet.
        self._pending: list[tuple[dict[str, Any], Callable[..., dict[str, Any]], tuple[Any, ...]]] = []
        self.counts: Counter[str] = Counter()
        self._listeners: list[tuple[Callable[[dict[str, Any]], None], frozenset[str] | None]] = []
        self._wanted: frozenset[str] | None = frozenset()  # kinds some listener wants (None: every kind)
        self._keep = keep
        self._recorded = 0

    def subscribe(self, listener: Callable[[dict[str, Any]], None], kinds: Iterable[str] | None = None) -> None:
        """Call ``listener(event)`` for every event as it is recorded (``kinds``: only for events of those kinds)."""
        wanted = None if kinds is None else frozenset(kinds)
        self._listeners.append((listener, wanted))
        if wanted is None or self._wanted is None:
            self._wanted = None
        else:
            self._wanted |= wanted

    @property
    def events(self) -> list[dict[str, Any]]:
        """Every event kept, in order (lazily recorded ones are made now)."""
        if self._pending:
            self._flush()
        return self._events

    def record(self, time_ms: int, actor: str, kind: str, fields: dict[str, Any]) -> None:
        self.counts[kind] += 1
        seq = self._recorded
        self._recorded += 1
        wanted = self._wanted
        listening = wanted is None or kind in wanted
        if not (self._keep or listening):
            return
        event = {"seq": seq, "time": time_seconds(time_ms), "actor": actor, "kind": kind}
        _fill(event, fields)
        if self._keep:
            self._events.append(event)
        if listening:
            self._tell(event)

    def record_lazy(
        self, time_ms: int, actor: str, kind: str, make: Callable[..., dict[str, Any]], args: tuple[Any, ...]
    ) -> None:
        """Record an event whose fields are ``make(*args)``, made only when the event is read.

        ``args`` must be values that do not change (ints, strings, tuples of
        them): the fields are made from them later, maybe after the run.
        """
        self.counts[kind] += 1
        seq = self._recorded
        self._recorded += 1
        wanted = self._wanted
        listening = wanted is None or kind in wanted
        if not (self._keep or listening):
            return
        event = {"seq": seq, "time": time_seconds(time_ms), "actor": actor, "kind": kind}
        if listening:
            _fill(event, make(*args))
            if self._keep:
                self._events.append(event)
            self._tell(event)
        else:
            self._events.append(event)
            self._pending.append((event, make, args))

    def _tell(self, event: dict[str, Any]) -> None:
        kind = event["kind"]
        for listener, kinds in self._listeners:
            if kinds is None or kind in kinds:
                listener(event)

    def _flush(self) -> None:
        pending, self._pending = self._pending, []
        for event, make, args in pending:
            _fill(event, make(*args))

    def __iter__(self) -> Iterator[dict[str, Any]]:
        return iter(self.events)

    def __len__(self) -> int:
        return self._recorded

    def of_kind(self, *kinds: str) -> list[dict[str, Any]]:
        return [e for e in self.events if e["kind"] in kinds]

    @staticmethod
    def dumps(event: dict[str, Any]) -> str:
        return json.dumps(event, separators=(",", ":"), ensure_ascii=False)


def _fill(event: dict[str, Any], fields: dict[str, Any]) -> None:
    n = len(event)
    event.update(fields)
    if len(event) != n + len(fields):
        raise ValueError(f"event {event['kind']!r} has a field named like a header field (seq, time, actor, kind)")


class EventFile:
    """A JSON-lines file that every event is appended to the moment it is recorded.

    Subscribe it to a log (``log.subscribe(EventFile(path))``). Each event is
    encoded in full and handed to the kernel with a single ``os.write`` of the
    whole line, newline included, on a file opened with ``O_APPEND``; nothing
    is buffered in the process. So a process killed at any point, SIGKILL
    included, leaves a file whose every line is a complete event and whose
    ``seq`` runs from 0 without a gap: the kernel has every line that was
    written, and a line is either written whole or not at all (a write to a
    regular file is not interrupted by a signal; a partial write would only
    come from a full disk, and is finished by the loop below). Readers
    (``sandbox check-log``) still tolerate a torn last line.

    Why per event rather than per quiet point: one ``write()`` per line costs
    about 2 us against 0.4 us for a buffered write (and 8 us to encode the
    line, which any writer pays), next to 55-120 us of exchange work per
    event: 1-3% of a run, which on the demo and on a generated 9,000-event
    run is lost in the noise. Batching at quiet points would save that but
    lose the whole cascade in progress when the run is killed, which is the
    part one wants to read. There is no ``fsync``: the file survives a killed
    process, not a power cut (an fsync per line costs 100-450 us, more than
    the run itself).
    """

    def __init__(self, path: str | os.PathLike[str], fd: int | None = None) -> None:
        """Start a new file at ``path``, or append to ``fd`` (opened by :meth:`OutDir.open_append`).

        The file at ``path`` is replaced, never written through: a symlink,
        FIFO, device or directory there is refused (:class:`UnsafePath`), and
        an old regular file is unlinked and a new one created exclusively, so
        neither a planted symlink nor a hard link to another file is followed.
        """
        self.path = path
        if fd is None:
            from sandbox._core.safeio import OutDir, check_target

            target = check_target(path)
            out = OutDir(target.parent, flag="events file", lock=False)
            try:
                out.clear([target.name])
                fd = out.open_append(target.name, new=True)
            finally:
                out.close()
        self._fd: int | None = fd

    def __call__(self, event: dict[str, Any]) -> None:
        if self._fd is None:
            raise ValueError(f"{self.path}: the event file is closed")
        data = (EventLog.dumps(event) + "\n").encode("utf-8")
        written = os.write(self._fd, data)
        while written < len(data):
            written += os.write(self._fd, data[written:])

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> EventFile:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
