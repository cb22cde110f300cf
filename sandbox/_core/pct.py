"""PCT, a randomized scheduler with a probabilistic guarantee (Burckhardt et al., ASPLOS 2010).

Why a second strategy: hypothesis's tape finds races well and shrinks them,
but says nothing about how likely one run is to hit a bug of a given depth.
PCT ("probabilistic concurrency testing") does. Its guarantee, for a program
of ``n`` threads and ``k`` steps: every run finds a bug of depth ``d`` with
probability at least ``1 / (n * k**(d-1))``. A bug's *depth* is the number of
ordering constraints between steps that it needs (an order violation of two
steps has depth 1, an atomicity violation depth 2, ...).

How it maps onto this sandbox:

* A *thread* is a link (sender, recipient). A link is a sequence of
  deliveries in FIFO order, and different links interleave arbitrarily,
  which is what threads are to PCT. (An actor would not do: two links into
  one actor, e.g. a book's fill and the engine's takeover into clearing,
  race, and that race is exactly what some bugs need.)
* A *step* is one delivery; ``k`` is the number of deliveries of the
  scenario's FIFO run (:func:`sandbox._tools.explore.plan`).
* The algorithm, as in the paper: every thread gets a random distinct
  priority above ``d - 1``; ``d - 1`` change points are drawn from
  ``1..k``; at every choice the due link head of the highest priority is
  delivered; after the delivery that is step ``k_i``, the link that made it
  drops to priority ``i`` (below every initial priority). Links appear as
  the run goes: each new one's initial priority is drawn uniformly (an
  independent uniform key), which ranks the links in a uniformly random
  order, as the paper's random permutation does.
* Latencies and faults, which PCT does not cover, are drawn from the same
  seeded ``random.Random``, as :class:`sandbox._core.choosers.SeededChooser` does.

What the bound does and does not promise here: it holds for bugs whose
ordering constraints fall within the first ``k`` deliveries, with ``n`` the
links of the run (printed by ``sandbox explore --strategy pct``); runs that
deliver more than ``k`` (latency, duplicates) still run, with no change point
after ``k``. Messages only become candidates once they are due, so with a
``[network]`` model PCT chooses among the due heads, like every chooser.

Every decision still goes through :class:`sandbox._core.choosers.RecordingChooser`
as an index among the due heads, oldest first: a PCT run replays with a
:class:`sandbox._core.choosers.ScriptedChooser` (``sandbox replay``) byte for byte.
"""

from __future__ import annotations

import hashlib
from typing import Final, Sequence

from sandbox._core.choosers import SeededChooser

__all__ = ["PCTChooser", "DEFAULT_DEPTH", "pct_seed", "pct_bound"]

DEFAULT_DEPTH: Final = 3


def pct_seed(base: int, run: int) -> int:
    """The seed of run ``run`` of a PCT search seeded ``base``: independent runs, reproducible."""
    return int.from_bytes(hashlib.sha256(f"pct:{base}:{run}".encode()).digest()[:8], "big")


def pct_bound(links: int, steps: int, depth: int) -> float:
    """PCT's lower bound on the probability that one run finds a bug of ``depth``."""
    return 1.0 / (max(links, 1) * max(steps, 1) ** (depth - 1))


class PCTChooser(SeededChooser):
    """One PCT run: priorities per link, ``depth - 1`` priority change points in ``1..steps``.

    Latencies, fault chances and choices without link identities come from the
    same seeded generator as :class:`~sandbox._core.choosers.SeededChooser`'s.
    """

    def __init__(self, seed: int, depth: int, steps: int) -> None:
        if depth < 1:
            raise ValueError(f"depth must be at least 1, got {depth}")
        super().__init__(seed)
        self.depth = depth
        self.steps = max(steps, 1)
        # Step k_i -> i: after the delivery that is step k_i, its link drops to priority i.
        points = self._rng.sample(range(1, self.steps + 1), min(depth - 1, self.steps))
        self._change = {k: i for i, k in enumerate(points, start=1)}
        # A link's priority: (1, u) while it has its initial one (u uniform in
        # [0, 1): a uniformly random order of links), (0, i) once lowered.
        self._priority: dict[tuple[str, str], tuple[int, float]] = {}
        self._step = 0

    @property
    def links(self) -> int:
        """How many links (PCT's threads) this run has met so far."""
        return len(self._priority)

    def _of(self, key: tuple[str, str]) -> tuple[int, float]:
        p = self._priority.get(key)
        if p is None:
            p = self._priority[key] = (1, self._rng.random())
        return p

    def choose_link(self, heads: Sequence[tuple[int, tuple[str, str]]]) -> int:
        """The index (oldest first) of the due head whose link has the highest priority."""
        best, best_p = 0, (-1, 0.0)
        for i, (_, key) in enumerate(heads):
            p = self._of(key)
            if p > best_p:
                best, best_p = i, p
        return best

    def observe_delivery(self, key: tuple[str, str]) -> None:
        self._step += 1
        self._of(key)
        lowered = self._change.get(self._step)
        if lowered is not None:
            self._priority[key] = (0, float(lowered))

    # Without link identities (a delivery that does not offer them) PCT has
    # nothing to rank and falls back to SeededChooser.choose; it never happens
    # with SeededDelivery.
