"""The report's x axis: one equal band per instant of virtual time, the cascade drawn inside it in delivery order."""

from __future__ import annotations

from bisect import bisect_left
from typing import Any, Callable, Final, Iterable, Sequence


from sandbox._core.eventlog import time_seconds
from sandbox._core.money import MONEY_DECIMALS, PRICE_DECIMALS, SIZE_DECIMALS

from sandbox._tools.report.recording import Delivered, _PAD


# --- the x axis -------------------------------------------------------------------------------


def fmt_time(ms: int) -> str:
    """Virtual time for people: ``1 s``, ``2.5 s``, ``90 min``, ``3 h``."""
    if ms and ms % 3_600_000 == 0:
        return f"{ms // 3_600_000} h"
    if ms and ms % 60_000 == 0 and ms >= 600_000:
        return f"{ms // 60_000} min"
    return f"{time_seconds(ms)} s"


class Bands:
    """Maps "deliveries done" to x: one band per instant of virtual time.

    An instant in which something drawn changes gets a band of width 1; an
    instant in which nothing drawn changes (orders resting in the book, a
    price move nobody feels) gets a narrower one, so the eye goes where
    something happens.
    """

    QUIET_WIDTH: Final = 0.4

    def __init__(self, deliveries: Sequence[Delivered], changes: Iterable[int] = ()) -> None:
        self.steps: list[tuple[int, int, int]] = []  # (time_ms, first delivery, end)
        for d in deliveries:
            if self.steps and self.steps[-1][0] == d.time_ms:
                t, a, _ = self.steps[-1]
                self.steps[-1] = (t, a, d.index + 1)
            else:
                self.steps.append((d.time_ms, d.index, d.index + 1))
        self._ends = [end for _, _, end in self.steps]
        busy = [False] * len(self.steps)
        for p in changes:
            if p > 0:
                busy[min(bisect_left(self._ends, p), len(self.steps) - 1)] = True
        self.widths = [1.0 if b else self.QUIET_WIDTH for b in busy]
        self.lefts = [0.0]
        for w in self.widths:
            self.lefts.append(self.lefts[-1] + w)

    @property
    def end(self) -> float:
        return self.lefts[-1] if self.steps else 1.0

    def x(self, p: int) -> float:
        if p <= 0 or not self.steps:
            return 0.0
        j = min(bisect_left(self._ends, p), len(self.steps) - 1)
        _, a, b = self.steps[j]
        return self.lefts[j] + self.widths[j] * (_PAD + (1 - 2 * _PAD) * (p - a) / (b - a))

    def decorate(self, ax: Any) -> None:
        from matplotlib.ticker import FixedFormatter, FixedLocator

        n = len(self.steps)
        if n <= 80:
            for j in range(1, n, 2):
                ax.axvspan(self.lefts[j], self.lefts[j + 1], color="#eef1f5", zorder=0, lw=0)
        ax.set_xlim(0, self.end)
        shown = sorted({round(k * (n - 1) / 11) for k in range(12)}) if n > 12 else list(range(n))
        ax.xaxis.set_major_locator(FixedLocator([self.lefts[j] + self.widths[j] / 2 for j in shown]))
        ax.xaxis.set_major_formatter(FixedFormatter([fmt_time(self.steps[j][0]) for j in shown]))
        ax.tick_params(axis="x", length=0)


def _steps(bands: Bands, series: Sequence[tuple[int, Any]], value: Callable[[Any], float]) -> tuple[list[float], list[float]]:
    xs = [bands.x(p) for p, _ in series]
    ys = [value(v) for _, v in series]
    if series:
        xs.append(bands.end)
        ys.append(ys[-1])
    return xs, ys


def _at(series: Sequence[tuple[int, Any]], p: int) -> Any:
    """The value of a step series at position p (the last sample at or before it)."""
    value = series[0][1] if series else None
    for q, v in series:
        if q > p:
            break
        value = v
    return value


def _eth(wei: int) -> float:
    return wei / 10**MONEY_DECIMALS  # plotting only


def _price(units: int) -> float:
    return units / 10**PRICE_DECIMALS  # plotting only


def _size(units: int) -> float:
    return units / 10**SIZE_DECIMALS  # plotting only


def _dec(text: str) -> float:
    return float(text)  # an event's exact decimal string, for plotting only
