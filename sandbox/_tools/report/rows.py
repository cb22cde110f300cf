"""The sequence diagram's rows: the deliveries of a run collapsed, folded and cut to a readable number."""

from __future__ import annotations

from collections import Counter
from itertools import zip_longest
from typing import Iterable, Sequence

import attrs


from sandbox._tools.report.axis import fmt_time
from sandbox._tools.report.recording import ANCHORS, Delivered, FLOW, SEQUENCE_LIMIT, WINDOW_AFTER, WINDOW_BEFORE


# --- the sequence diagram's rows ----------------------------------------------------------


@attrs.frozen
class Arrow:
    """A drawn message; ``count`` > 1 when identical consecutive messages were collapsed."""

    first: Delivered
    count: int = 1
    same_detail: bool = True  # False when collapsed messages carried different details

    @property
    def detail(self) -> str:
        return self.first.detail if self.same_detail else ""


@attrs.frozen
class Gap:
    """Messages not drawn, counted by type."""

    count: int
    by_type: tuple[tuple[str, int], ...]
    from_ms: int
    to_ms: int

    def label(self, most: int = 4) -> str:
        shown = ", ".join(f"{name} ×{n:,}" for name, n in self.by_type[:most])
        more = len(self.by_type) - most
        rest = f", {more} other kind{'s' if more > 1 else ''}" if more > 0 else ""
        when = fmt_time(self.from_ms) if self.from_ms == self.to_ms else \
            f"{fmt_time(self.from_ms)} to {fmt_time(self.to_ms)}"
        noun = "message" if self.count == 1 else "messages"
        return f"{self.count:,} {noun} not drawn ({when}): {shown}{rest}"


Row = Arrow | Gap


def _gap(rows: Sequence[Row]) -> Gap:
    counts: Counter[str] = Counter()
    times: list[int] = []
    for r in rows:
        if isinstance(r, Arrow):
            counts[r.first.type] += r.count
            times.append(r.first.time_ms)
        else:
            counts.update(dict(r.by_type))
            times += [r.from_ms, r.to_ms]
    ordered = tuple(sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))
    return Gap(sum(counts.values()), ordered, min(times), max(times))


def _merge_gaps(rows: Iterable[Row]) -> list[Row]:
    out: list[Row] = []
    for r in rows:
        if isinstance(r, Gap) and out and isinstance(out[-1], Gap):
            out[-1] = _gap([out[-1], r])
        else:
            out.append(r)
    return out


def _collapse(deliveries: Sequence[Delivered]) -> list[Row]:
    out: list[Row] = []
    for d in deliveries:
        last = out[-1] if out else None
        if (isinstance(last, Arrow) and (last.first.sender, last.first.recipient, last.first.type, last.first.time_ms)
                == (d.sender, d.recipient, d.type, d.time_ms)):
            out[-1] = Arrow(last.first, last.count + 1, last.same_detail and last.first.detail == d.detail)
        else:
            out.append(Arrow(d))
    return out


def _is_flow(row: Row) -> bool:
    return isinstance(row, Arrow) and row.first.category in FLOW


def _fold_background(rows: Sequence[Row], keep_run: int = 2) -> list[Row]:
    """Runs of more than ``keep_run`` rows outside the liquidation flow become one gap each."""
    out: list[Row] = []
    run: list[Row] = []

    def close() -> None:
        if len(run) > keep_run:
            out.append(_gap(run))
        else:
            out.extend(run)
        run.clear()

    for r in rows:
        if _is_flow(r):
            close()
            out.append(r)
        else:
            run.append(r)
    close()
    return _merge_gaps(out)


def _kept(rows: Sequence[Row], keep: set[int]) -> list[Row]:
    """The rows whose index is in ``keep``; each run of the others becomes one gap."""
    out: list[Row] = []
    skipped: list[Row] = []
    for i, r in enumerate(rows):
        if i in keep:
            if skipped:
                out.append(_gap(skipped))
                skipped = []
            out.append(r)
        else:
            skipped.append(r)
    if skipped:
        out.append(_gap(skipped))
    return _merge_gaps(out)


def _kept_size(n: int, keep: set[int]) -> int:
    """len(_kept(rows, keep)) for len(rows) == n, without building it."""
    size, in_gap = 0, False
    for i in range(n):
        if i in keep:
            size, in_gap = size + 1, False
        elif not in_gap:
            size, in_gap = size + 1, True
    return size


def _anchor_order(rows: Sequence[Row]) -> list[int]:
    """Where the flows start, the first of every kind before the second of any."""
    by_kind: dict[str, list[int]] = {k: [] for k in ANCHORS}
    for i, r in enumerate(rows):
        if isinstance(r, Arrow) and r.first.type in by_kind:
            by_kind[r.first.type].append(i)
    order = [i for rank in zip_longest(*by_kind.values()) for i in rank if i is not None]
    return order or [i for i, r in enumerate(rows) if _is_flow(r)] or [0]


def summarise_trace(deliveries: Sequence[Delivered], limit: int = SEQUENCE_LIMIT) -> list[Row]:
    """The rows of the sequence diagram: at most ``limit``, every message accounted for.

    0. If there are no more than ``limit`` messages, each is one arrow.
    1. Otherwise identical consecutive messages (same sender, recipient, type
       and instant) become one arrow marked ×N.
    2. If that is still more than ``limit`` rows, runs of three or more
       messages outside the liquidation flow (mark updates, account updates,
       ordinary trading) become one "not drawn" row that counts them by type.
    3. If it is still too long, whole flows are shown and the rest counted:
       from the first liquidation request, the first fund takeover, the first
       ADL request, then the second of each and so on, the rows from just
       before each to :data:`WINDOW_AFTER` rows after it are kept while they
       fit; every run of rows in between becomes one "not drawn" row.
    """
    if limit < 1:
        raise ValueError("limit must be at least 1")
    if len(deliveries) <= limit:
        return [Arrow(d) for d in deliveries]
    rows = _collapse(deliveries)
    if len(rows) <= limit:
        return rows
    rows = _fold_background(rows)
    if len(rows) <= limit:
        return rows
    n = len(rows)
    keep: set[int] = set()
    size = 1  # everything in one gap
    misses = 0
    for a in _anchor_order(rows):
        if size >= limit - 1 or misses >= 20:
            break
        for after in (WINDOW_AFTER, WINDOW_AFTER // 3, 0):
            trial = keep | set(range(max(0, a - WINDOW_BEFORE if after else a), min(n, a + after + 1)))
            trial_size = _kept_size(n, trial)
            if trial_size <= limit:
                keep, size, misses = trial, trial_size, 0
                break
        else:
            misses += 1
    return _kept(rows, keep)


def rows_count(rows: Iterable[Row]) -> int:
    """How many messages the rows stand for (drawn or not)."""
    return sum(r.count for r in rows)
