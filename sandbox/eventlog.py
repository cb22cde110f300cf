"""The event log: what the actors say happened, in the order it happened.

Each event is a flat dict with ``seq`` (contiguous from 0), virtual ``time``
(seconds), ``actor``, ``kind`` and the event's own fields. Amounts, prices and
sizes are exact decimal strings. Events are the one source for the narrated
timeline, ``events.jsonl`` and the counts in ``summary.json``.
"""

from __future__ import annotations

import json
from collections import Counter
from typing import Any, Callable, Iterator

__all__ = ["EventLog", "time_seconds"]


def time_seconds(ms: int) -> int | float:
    """Virtual time for JSON: whole seconds as an int, otherwise ms / 1000."""
    return ms // 1000 if ms % 1000 == 0 else ms / 1000


class EventLog:
    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []
        self.counts: Counter[str] = Counter()
        self._listeners: list[Callable[[dict[str, Any]], None]] = []

    def subscribe(self, listener: Callable[[dict[str, Any]], None]) -> None:
        """Call ``listener(event)`` for every event as it is recorded."""
        self._listeners.append(listener)

    def record(self, time_ms: int, actor: str, kind: str, fields: dict[str, Any]) -> dict[str, Any]:
        event = {"seq": len(self.events), "time": time_seconds(time_ms), "actor": actor, "kind": kind}
        event.update(fields)
        self.events.append(event)
        self.counts[kind] += 1
        for listener in self._listeners:
            listener(event)
        return event

    def __iter__(self) -> Iterator[dict[str, Any]]:
        return iter(self.events)

    def __len__(self) -> int:
        return len(self.events)

    def of_kind(self, *kinds: str) -> list[dict[str, Any]]:
        return [e for e in self.events if e["kind"] in kinds]

    @staticmethod
    def dumps(event: dict[str, Any]) -> str:
        return json.dumps(event, separators=(",", ":"), ensure_ascii=False)
