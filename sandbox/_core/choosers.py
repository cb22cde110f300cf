"""Where a seeded delivery gets its decisions: a seeded random source, a recording of one, a replay of one."""

from __future__ import annotations

import random
from typing import Iterable, Protocol, Sequence




__all__ = ["Chooser", "SeededChooser", "RecordingChooser", "ScriptedChooser", "ReplayDiverged"]

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
