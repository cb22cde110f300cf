"""Sweeps: many seeded runs of one scenario over a grid of parameters.

``sandbox sweep SCENARIO --set KEY=V1,V2 ... --seeds N`` runs every
combination of the ``--set`` values (dotted paths into the scenario
document, see :func:`apply_override`) for seeds ``0 .. N-1`` and writes, in
``--out``:

* ``sweep.json``: what was asked (scenario digest, the grid, the seeds), so a
  restart can tell its own rows from another sweep's;
* ``runs.jsonl``: one row per run (:func:`measure`). While the sweep runs,
  each row is appended as one complete line and fsynced as soon as its run
  ends, so an interrupted sweep keeps every finished run and a restart with
  the same ``--out`` skips them (a torn last line, from a crash in mid-write,
  is dropped). When every run is done the file is rewritten, atomically, in
  the canonical order (grid order, then seed), so its bytes do not depend on
  the backend, the number of workers or the order runs finished in;
* ``summary.json``: per combination, P(ADL) (with a 95% Wilson interval) and
  quantiles of the fund's drawdown (initial balance minus its minimum);
* ``plot.png``: those against each swept parameter.

A run is a pure function of (scenario document, overrides, seed)
(:func:`execute`), so it can go to any process: a local
:class:`~concurrent.futures.ProcessPoolExecutor` (the default) or a Dask
distributed cluster (``--scheduler tcp://HOST:PORT``).
"""

from __future__ import annotations

import argparse
import copy
import io
import itertools
import json
import math
import multiprocessing
import os
import re
import secrets
import signal
import stat
import sys
import threading
import time
import tomllib
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from decimal import Decimal
from pathlib import Path
from typing import Any, Final

import attrs

from sandbox._core.money import MONEY_DECIMALS, PRICE_DECIMALS, SIZE_DECIMALS, fmt_money, parse_units
from sandbox._core.safeio import OutDir, UnsafePath, describe_kind
from sandbox._scenario.reader import ScenarioError
from sandbox._scenario.load import parse_scenario, resolve_scenario
from rich.console import Console
from rich.table import Table
from sandbox._core.safeio import safe_name
from sandbox._tools.command import (ALLOW_OUTSIDE_HELP, EXIT_INTERRUPTED, EXIT_OK, EXIT_VIOLATION, BadInput, Command,
                                    actor_option, load_actors, positive)
from sandbox._tools.plain import plain, plain_text
from sandbox.messages import Event

__all__ = [
    "SweepError",
    "Sweep",
    "RunTask",
    "parse_set",
    "apply_override",
    "load_sweep",
    "execute",
    "measure",
    "summarize",
    "run_sweep",
    "local_backend",
    "DaskBackend",
    "ROW_FIELDS",
]

RUNS_FILE: Final = "runs.jsonl"
SPEC_FILE: Final = "sweep.json"
SUMMARY_FILE: Final = "summary.json"
PLOT_FILE: Final = "plot.png"
# Keys by which an element of an array of tables is named in a dotted path, in this order.
NAME_KEYS: Final = ("symbol", "id", "name", "account", "market")
QUANTILES: Final = {"0.5": "p50", "0.9": "p90", "0.99": "p99"}
FUND_BALANCE_EVENTS: Final = ("fund_surplus", "fund_payout", "fund_gain", "fund_lot_closed", "fund_revenue",
                                "fund_socialized_loss")
# The columns of a row, in order (params and seed first).
ROW_FIELDS: Final = (
    "params", "seed", "status", "fund_initial", "fund_final", "fund_min", "fund_drawdown", "fund_payouts",
    "fund_payout_count", "liquidations", "bankruptcies", "fund_takeovers", "adl", "adl_notional", "violations",
)


class SweepError(Exception):
    """Bad sweep input (a --set key or value, --out, --scheduler): one line, exit status 2."""


# --- the grid -------------------------------------------------------------------------


def parse_set(text: str) -> tuple[str, tuple[str, ...]]:
    """``"KEY=V1,V2"`` -> ``("KEY", ("V1", "V2"))``."""
    key, eq, values = text.partition("=")
    key = key.strip()
    if not eq or not key:
        raise SweepError(f"--set {text!r}: expected KEY=V1,V2,...")
    if any(not part for part in key.split(".")):
        raise SweepError(f"--set {key}: empty part in the dotted key")
    if key in ("seed", "name"):
        raise SweepError(f"--set {key}: cannot be swept ({'use --seeds' if key == 'seed' else 'it names the sweep'})")
    items = tuple(v.strip() for v in values.split(","))
    if any(not v for v in items):
        raise SweepError(f"--set {key}: empty value in {values!r}")
    if len(set(items)) != len(items):
        raise SweepError(f"--set {key}: a value is given twice in {values!r}")
    return key, items


def _typed(text: str, existing: object) -> object:
    """The TOML value for ``text`` at a key that now holds ``existing``.

    A whole number or a boolean becomes a TOML integer or boolean (unless
    the key holds a string); anything else stays a string, which every
    amount, price, size and rate accepts exactly. The validator then judges
    the value as it would in a file.
    """
    if isinstance(existing, str):
        return text
    try:
        literal = tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text
    return literal if isinstance(literal, (bool, int)) else text


def apply_override(doc: dict[str, Any], key: str, text: str) -> dict[str, Any]:
    """A copy of ``doc`` with the dotted ``key`` set to ``text``.

    Parts name table keys; in an array of tables, a part names the element
    whose ``symbol``, ``id``, ``name``, ``account`` or ``market`` is that
    part (``markets.PUNK``, ``traders.retail``, ``price_paths.PUNK``), or its
    position (``orders.0``). A missing table is created: the validator then
    refuses a key the format does not know.
    """
    out = copy.deepcopy(doc)
    node: Any = out
    parts = key.split(".")
    for depth, part in enumerate(parts[:-1]):
        where = ".".join(parts[: depth + 1])
        if isinstance(node, dict):
            child = node.get(part)
            if child is None:
                child = node[part] = {}
            node = child
        elif isinstance(node, list):
            node = _element(node, part, where)
        else:
            raise ValueError(f"{'.'.join(parts[:depth])} is a value, not a table")
        if not isinstance(node, (dict, list)):
            raise ValueError(f"{where} is a value, not a table")
    last = parts[-1]
    if isinstance(node, list):
        raise ValueError(f"{'.'.join(parts[:-1])} is an array: name one of its entries")
    node[last] = _typed(text, node.get(last))
    return out


def _element(items: list[Any], part: str, where: str) -> Any:
    if part.isdigit():
        if int(part) >= len(items):
            raise ValueError(f"{where}: there are only {len(items)} entries")
        return items[int(part)]
    for name_key in NAME_KEYS:
        found = [t for t in items if isinstance(t, dict) and t.get(name_key) == part]
        if len(found) == 1:
            return found[0]
        if len(found) > 1:
            raise ValueError(f"{where}: several entries have {name_key} {part!r}; use its position")
    names = sorted({str(t.get(k)) for t in items if isinstance(t, dict) for k in NAME_KEYS[:3] if k in t})
    raise ValueError(f"{where}: no entry named {part!r}" + (f" (there are {', '.join(names)})" if names else ""))


@attrs.frozen
class RunTask:
    """One run: its place in the canonical order, the overrides, the seed."""

    index: int
    params: tuple[tuple[str, str], ...]
    seed: int

    @property
    def key(self) -> tuple[tuple[tuple[str, str], ...], int]:
        return self.params, self.seed


@attrs.frozen
class Job:
    """What every run of a sweep shares; shipped with each task, so any process can run it."""

    document: dict[str, Any]
    source: str
    digest: str
    # SHA-256 of every data file the scenario read (a stochastic csv), by name:
    # the plan depends on them as much as on the TOML.
    data: tuple[tuple[str, str], ...] = ()
    # --actor ROLE=REF: loaded again in each worker (a class from a file cannot
    # travel by pickle), so a worker must see the same module or file.
    actors: tuple[tuple[str, str], ...] = ()


@attrs.frozen
class Sweep:
    name: str
    job: Job
    sets: tuple[tuple[str, tuple[str, ...]], ...]
    seeds: int
    # The initial fund balance of each combination, as the plan computes it: a row must agree.
    fund_initial: tuple[tuple[tuple[tuple[str, str], ...], str], ...] = ()

    def combinations(self) -> list[tuple[tuple[str, str], ...]]:
        keys = [k for k, _ in self.sets]
        return [tuple(zip(keys, values)) for values in itertools.product(*(v for _, v in self.sets))]

    def tasks(self) -> list[RunTask]:
        out = []
        for params in self.combinations():
            for seed in range(self.seeds):
                out.append(RunTask(len(out), params, seed))
        return out

    def spec(self) -> dict[str, Any]:
        spec = {"scenario": self.name, "source": self.job.source, "digest": self.job.digest,
                "set": {k: list(v) for k, v in self.sets}, "seeds": self.seeds}
        if self.job.data:  # only then, as for actors: a plan of a scenario without data files reads as before
            spec["data"] = dict(self.job.data)
        if self.job.actors:  # only then, so an --out written before --actor existed still resumes
            spec["actors"] = dict(self.job.actors)
        return spec


def load_sweep(scenario: str, sets: Sequence[str], seeds: int,
               actors: tuple[tuple[str, str], ...] = (), *, allow_outside_paths: bool = False) -> Sweep:
    """Read the scenario and check every combination of the grid before anything runs."""
    # ScenarioError for a bad file, as for 'sandbox run'
    base = resolve_scenario(scenario, allow_outside_paths=allow_outside_paths)
    if base.template is not None:
        document = base.template  # the generator document, with any csv already read in
    else:
        document = tomllib.loads(base.text)  # the very text that was validated, not a second read
    job = Job(document, base.source, base.digest, tuple((d.name, d.sha256) for d in base.data_files), actors)
    grid: list[tuple[str, tuple[str, ...]]] = []
    fund: dict[tuple[tuple[str, str], ...], str] = {}  # each combination's initial fund, for checking rows
    for text in sets:
        key, values = parse_set(text)
        if any(key == k for k, _ in grid):
            raise SweepError(f"--set {key}: given twice")
        grid.append((key, values))
        for value in values:  # each value alone first, so the message names it
            single = ((key, value),)
            fund[single] = _check(job, single)
    sweep = Sweep(base.name, job, tuple(grid), seeds)
    if len(grid) > 1:
        fund = {params: _check(job, params) for params in sweep.combinations()}
    elif not grid:
        fund = {(): fmt_money(base.fund_balance)}
    return attrs.evolve(sweep, fund_initial=tuple(fund.items()))


def _override_all(job: Job, params: tuple[tuple[str, str], ...]) -> dict[str, Any]:
    doc = job.document
    for key, value in params:
        doc = apply_override(doc, key, value)
    return doc


def _check(job: Job, params: tuple[tuple[str, str], ...]) -> str:
    """Refuse a combination the validator refuses; its initial fund balance."""
    where = "--set " + " ".join(f"{k}={v}" for k, v in params)
    try:
        doc = _override_all(job, params)
    except ValueError as e:
        raise SweepError(f"{where}: {e}") from None
    try:
        return fmt_money(parse_scenario(doc, job.source, job.digest).fund_balance)
    except ScenarioError as e:
        raise SweepError(f"{where}: {e.key + ': ' if e.key else ''}{e.problem}") from None


# --- one run ---------------------------------------------------------------------------------


def execute(job: Job, task: RunTask) -> dict[str, Any]:
    """Run one task and return its row. Deterministic: the same task gives the same row anywhere."""
    from sandbox._exchange.run import run_scenario_sync

    try:
        doc = dict(_override_all(job, task.params))
        doc["seed"] = task.seed  # a stochastic scenario is generated from the run's seed
        scenario = parse_scenario(doc, job.source, job.digest)
        actors = None
        if job.actors:
            from sandbox._tools.actorref import load_actor

            actors = {role: load_actor(role, ref) for role, ref in job.actors}
        result = run_scenario_sync(scenario, seed=task.seed, check=True, actors=actors)
        row = measure(task, scenario.fund_balance, result.events, result.log.counts, result.violations)
        if result.stopped is not None:  # the run's work limits (docs/guarantees.md): a result, not a crash
            row["status"] = "stopped"
        return row
    except Exception as e:  # a crash is a result of the sweep too, with the same row everywhere
        row = _row(task, status="error", fund_initial="0")
        row["error"] = f"{type(e).__name__}: {e}"
        return row


def _row(task: RunTask, **fields: Any) -> dict[str, Any]:
    row: dict[str, Any] = {"params": dict(task.params), "seed": task.seed}
    for name in ROW_FIELDS[2:]:
        row[name] = fields.get(name, [] if name == "violations" else 0)
    return row


def measure(task: RunTask, fund_initial: int, events: list[dict[str, Any]], counts: Any,
            violations: Sequence[Any]) -> dict[str, Any]:
    """The row of one run, from its events: every amount an exact decimal string."""
    balance = minimum = fund_initial
    payouts = payout_count = 0
    for e in events:
        if e["kind"] in FUND_BALANCE_EVENTS:
            balance = parse_units(e["balance"], MONEY_DECIMALS, allow_negative=True)
            minimum = min(minimum, balance)
            if e["kind"] == Event.FUND_PAYOUT:
                payouts += parse_units(e["amount"], MONEY_DECIMALS)
                payout_count += 1
    adl_notional = sum(
        abs(parse_units(e["size"], SIZE_DECIMALS, allow_negative=True)) * parse_units(e["price"], PRICE_DECIMALS)
        for e in events if e["kind"] == Event.ADL
    )
    return _row(
        task,
        status="ok" if not violations else "invariant_violated",
        fund_initial=fmt_money(fund_initial),
        fund_final=fmt_money(balance),
        fund_min=fmt_money(minimum),
        fund_drawdown=fmt_money(fund_initial - minimum),
        fund_payouts=fmt_money(payouts),
        fund_payout_count=payout_count,
        liquidations=counts[Event.LIQUIDATION_STARTED],
        bankruptcies=counts[Event.BANKRUPTCY],
        fund_takeovers=counts[Event.FUND_TAKEOVER],
        adl=counts[Event.ADL],
        adl_notional=fmt_money(adl_notional),
        violations=sorted({v.invariant for v in violations}),
    )


def _dumps(row: dict[str, Any]) -> str:
    return json.dumps(row, separators=(",", ":"), ensure_ascii=False)


# --- summaries ----------------------------------------------------------------------------------


def _quantile(sorted_values: list[Decimal], q: str) -> Decimal:
    """Nearest-rank quantile: the smallest value with at least a fraction q of the values at or below it."""
    rank = math.ceil(Decimal(q) * len(sorted_values))
    return sorted_values[max(rank, 1) - 1]


def _wilson(k: int, n: int, z: float = 1.959963984540054) -> tuple[float, float]:
    """95% Wilson score interval of a proportion k/n (sound for k = 0, unlike k/n +- ...)."""
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def summarize(sweep: Sweep, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One entry per combination of the grid, in grid order."""
    by_params: dict[tuple[tuple[str, str], ...], list[dict[str, Any]]] = {}
    for row in rows:
        by_params.setdefault(tuple(row["params"].items()), []).append(row)
    out = []
    for params in sweep.combinations():
        group = by_params.get(params, [])
        if not group:
            continue
        n = len(group)
        adl_runs = sum(1 for r in group if r["adl"] > 0)
        low, high = _wilson(adl_runs, n)
        drawdowns = sorted(Decimal(r["fund_drawdown"]) for r in group)
        out.append({
            "params": dict(params),
            "runs": n,
            "ok": sum(1 for r in group if r["status"] == "ok"),
            "adl_runs": adl_runs,
            "p_adl": round(adl_runs / n, 6),
            "p_adl_95": [round(low, 6), round(high, 6)],
            "fund_drawdown": {name: str(_quantile(drawdowns, q)) for q, name in QUANTILES.items()}
            | {"max": str(drawdowns[-1])},
            "mean_liquidations": round(sum(r["liquidations"] for r in group) / n, 6),
            "mean_bankruptcies": round(sum(r["bankruptcies"] for r in group) / n, 6),
            "mean_adl_notional": str(sum(Decimal(r["adl_notional"]) for r in group) / n),
        })
    return out


# --- the journal --------------------------------------------------------------------------------


MAX_JOURNAL_BYTES: Final = 1 << 30  # 1 GiB: about 3 million rows
MAX_ROW_BYTES: Final = 64 * 1024
STATUSES: Final = ("ok", "invariant_violated", "error", "stopped")
_MONEY_FIELDS: Final = ("fund_initial", "fund_final", "fund_min", "fund_drawdown", "fund_payouts", "adl_notional")
_COUNT_FIELDS: Final = ("fund_payout_count", "liquidations", "bankruptcies", "fund_takeovers", "adl")


def row_problem(row: object, task: RunTask, fund_initial: str | None = None) -> str | None:
    """Why ``row`` is not a row of ``task`` by the schema of :data:`ROW_FIELDS`, or None if it is.

    Checked: exactly the row's fields, each of its type (amounts exact
    decimal strings, counts whole numbers, a known status); the task's own
    params and seed; and the sums a real run cannot get wrong (drawdown =
    initial - minimum, the minimum at or below both ends, no ADL notional
    without ADL, no payouts without a payout, no violation in an "ok" row).
    Every row of the journal and every result from a worker goes through it.
    """
    if not isinstance(row, dict):
        return "not a JSON object"
    want = set(ROW_FIELDS) | ({"error"} if row.get("status") == "error" else set())
    if set(row) != want:
        return "not the fields of a row"
    if row["params"] != dict(task.params) or list(row["params"]) != [k for k, _ in task.params]:
        return "params of another run"
    if type(row["seed"]) is not int or row["seed"] != task.seed:
        return "seed of another run"
    if row["status"] not in STATUSES:
        return "unknown status"
    money: dict[str, int] = {}
    for name in _MONEY_FIELDS:
        value = row[name]
        if not isinstance(value, str) or len(value) > 80:
            return f"{name} is not an amount"
        try:
            money[name] = parse_units(value, MONEY_DECIMALS, allow_negative=True)
        except (ValueError, ArithmeticError):
            return f"{name} is not an amount"
    for name in _COUNT_FIELDS:
        if type(row[name]) is not int or row[name] < 0:
            return f"{name} is not a count"
    violations = row["violations"]
    if not isinstance(violations, list) or not all(isinstance(v, str) and len(v) < 500 for v in violations):
        return "violations is not a list of names"
    if row["status"] == "error":
        return None if isinstance(row["error"], str) and len(row["error"]) < 10_000 else "error is not a message"
    if fund_initial is not None and row["fund_initial"] != fund_initial:
        return "not the plan's initial fund"
    if money["fund_drawdown"] != money["fund_initial"] - money["fund_min"]:
        return "the drawdown is not initial - minimum"
    if money["fund_min"] > money["fund_initial"] or money["fund_min"] > money["fund_final"]:
        return "the minimum is above the initial or final balance"
    if (row["adl"] == 0) != (money["adl_notional"] == 0) or (row["fund_payout_count"] == 0) != (
            money["fund_payouts"] == 0):
        return "counts and amounts disagree"
    if (row["status"] == "ok") == bool(violations) and row["status"] != "stopped":
        return "status and violations disagree"
    return None


def _read_journal(out: OutDir, sweep: Sweep) -> dict[Any, dict[str, Any]]:
    """The journal's rows that are rows of this sweep's plan, by task key; everything else is redone.

    A torn last line (a crash in mid-write) is cut off the file. A line that
    is not JSON, not a row by :func:`row_problem`, for a task the plan does
    not have, or for a task that has another row too (which one would be the
    truth?) is not trusted: its run is done again.
    """
    raw = out.read(RUNS_FILE, MAX_JOURNAL_BYTES, "a sweep journal")
    if raw is None:
        return {}
    end = raw.rfind(b"\n") + 1
    if end < len(raw):
        fd = out.open_append(RUNS_FILE)
        try:
            os.ftruncate(fd, end)
        finally:
            os.close(fd)
    wanted = {_task_id(t.params, t.seed): t for t in sweep.tasks()}
    funds = dict(sweep.fund_initial)
    seen: dict[Any, list[dict[str, Any]]] = {}
    for line in raw[:end].splitlines():
        if len(line) > MAX_ROW_BYTES:
            continue
        try:
            row = json.loads(line)
        except (ValueError, RecursionError):
            continue  # not a row of ours: redone
        if not isinstance(row, dict) or not isinstance(row.get("params"), dict):
            continue
        try:
            key = _task_id(tuple(row["params"].items()), row.get("seed"))
        except TypeError:
            continue
        task = wanted.get(key)
        if task is None or row_problem(row, task, funds.get(task.params)) is not None:
            continue
        seen.setdefault(task.key, []).append(row)
    return {key: rows[0] for key, rows in seen.items() if len(rows) == 1}


def _task_id(params: Any, seed: Any) -> str:
    return json.dumps([list(map(list, params)), seed])


class _Journal:
    """Appends each row as one complete line, flushed to disk before the next."""

    def __init__(self, out: OutDir) -> None:
        self._fd = out.open_append(RUNS_FILE)

    def append(self, row: dict[str, Any]) -> None:
        data = (_dumps(row) + "\n").encode("utf-8")
        written = os.write(self._fd, data)  # one write of the whole line
        while written < len(data):
            written += os.write(self._fd, data[written:])
        os.fsync(self._fd)

    def close(self) -> None:
        os.close(self._fd)


def prepare_out(out: Path, sweep: Sweep) -> None:
    """Refuse an --out that holds another sweep's rows (nothing is written here)."""
    try:
        folder = OutDir(out, lock=False) if out.exists() else None
    except UnsafePath as e:
        raise SweepError(str(e)) from None
    if folder is None:
        ancestor = out.absolute().parent
        while not ancestor.exists():
            ancestor = ancestor.parent
        if not ancestor.is_dir() or not os.access(ancestor, os.W_OK | os.X_OK):
            raise SweepError(f"--out {out}: cannot write there ({ancestor} is not a folder this user can write in)")
        return
    try:
        _check_spec(folder, sweep)
    finally:
        folder.close()


def _check_spec(folder: OutDir, sweep: Sweep) -> None:
    out = folder.path
    try:
        raw = folder.read(SPEC_FILE, 1 << 20, "a sweep's plan")
        runs = folder.kind(RUNS_FILE)
    except UnsafePath as e:
        raise SweepError(str(e)) from None
    has_runs = runs is not None
    if runs is not None and not stat.S_ISREG(runs):
        raise SweepError(f"--out {out}: {RUNS_FILE} there is {describe_kind(runs)}, not a sweep journal")
    if raw is not None:
        try:
            previous = json.loads(raw.decode("utf-8"))
        except (ValueError, RecursionError) as e:
            raise SweepError(f"--out {out}: {SPEC_FILE} cannot be read ({type(e).__name__})") from None
        if not _same_sweep(previous, sweep.spec()):
            raise SweepError(f"--out {out}: holds a different sweep ({_difference(previous, sweep.spec())}); "
                             "use another --out")
    elif has_runs:
        raise SweepError(f"--out {out}: has {RUNS_FILE} but no {SPEC_FILE}; use another --out")


def _same_sweep(old: Any, new: dict[str, Any]) -> bool:
    # The same file named another way (a relative path from elsewhere) is the same sweep: its digest says so.
    return isinstance(old, dict) and all(old.get(k) == new.get(k) for k in set(new) | set(old) if k != "source")


def _difference(old: Any, new: dict[str, Any]) -> str:
    if not isinstance(old, dict):
        return "unreadable"
    changed = [k for k in {**old, **new} if k != "source" and old.get(k) != new.get(k)]
    return ", ".join(f"{k} was {json.dumps(old.get(k))[:200]}" for k in changed) or "format"


# --- backends -------------------------------------------------------------------------------------


Backend = Callable[[Job, list[RunTask]], Iterator[dict[str, Any]]]


def local_backend(workers: int) -> Backend:
    """A pool of ``workers`` processes on this machine."""

    def run(job: Job, tasks: list[RunTask]) -> Iterator[dict[str, Any]]:
        # forkserver: workers fork from a clean server process, not from this
        # one (whose progress-bar thread could hold a lock at fork time).
        ctx = multiprocessing.get_context("forkserver")
        ctx.set_forkserver_preload(["sandbox._tools.sweep", "sandbox._exchange.run"])
        pool = ProcessPoolExecutor(max_workers=workers, mp_context=ctx, initializer=_worker_init,
                                   initargs=(os.getpid(),))
        try:
            # A bounded window of submitted tasks: an interrupt has little to cancel.
            pending: set[Future[dict[str, Any]]] = set()
            queue = iter(tasks)
            for task in itertools.islice(queue, 4 * workers):
                pending.add(pool.submit(execute, job, task))
            while pending:
                done, pending = wait(pending, return_when=FIRST_COMPLETED)
                for future in done:
                    yield future.result()
                    for task in itertools.islice(queue, 1):
                        pending.add(pool.submit(execute, job, task))
        finally:
            pool.shutdown(wait=True, cancel_futures=True)

    return run


def _worker_init(parent: int) -> None:
    # Ctrl-C is the parent's to handle: it stops submitting, keeps the rows it
    # has and shuts the pool down; a worker killed mid-run would only add noise.
    signal.signal(signal.SIGINT, signal.SIG_IGN)

    # A parent killed outright (SIGKILL, OOM) cannot shut the pool down, and a
    # worker blocked on its task queue would wait forever (it holds that
    # queue's write end itself), keeping the forkserver alive too. So each
    # worker leaves on its own once the sweep's process is gone.
    def watch() -> None:
        while True:
            time.sleep(0.5)
            try:
                os.kill(parent, 0)
            except ProcessLookupError:
                os._exit(1)
            except PermissionError:
                pass

    threading.Thread(target=watch, name="sweep-parent-watch", daemon=True).start()


def execute_json(job: Job, task: RunTask) -> str:
    """:func:`execute`'s row as one JSON string: what a Dask worker sends back (plain data, checked on arrival)."""
    return _dumps(execute(job, task))


# What the sweep's client accepts from the cluster: msgpack-encoded plain data
# only. A result Dask would have to unpickle (any object, and the code its
# unpickling runs) is refused by Dask itself before it reaches the sweep.
DASK_DESERIALIZERS: Final = ("msgpack", "error")
DASK_SERIALIZERS: Final = ("dask", "pickle", "msgpack")  # what the client sends: its own job and tasks


def dask_security(ca_file: str | None, cert: str | None, key: str | None, address: str) -> Any:
    """The ``distributed.Security`` for ``address``: the --tls-* files if given, else Dask's configuration.

    Plain ``tcp://`` takes no TLS files. ``tls://`` with no files uses
    ``distributed.comm.tls.*`` from Dask's configuration (files, or the
    ``DASK_DISTRIBUTED__COMM__TLS__...`` variables); with files, they must
    name the CA that signed the scheduler's certificate and the client's own
    certificate and key (mutual TLS), and encryption is required.
    """
    given = [f for f in (ca_file, cert, key) if f is not None]
    if address.startswith("tcp://"):
        if given:
            raise SweepError("--tls-ca-file, --tls-cert and --tls-key are for a tls:// scheduler")
        return None
    from distributed.security import Security

    if not given:
        return Security()  # Dask's configuration: distributed.comm.tls.*
    if len(given) != 3:
        raise SweepError("--tls-ca-file, --tls-cert and --tls-key go together")
    for flag, path in (("--tls-ca-file", ca_file), ("--tls-cert", cert), ("--tls-key", key)):
        assert path is not None
        if not Path(path).is_file():
            raise SweepError(f"{flag} {path}: no such file")
    return Security(tls_ca_file=ca_file, tls_client_cert=cert, tls_client_key=key, require_encryption=True)


class DaskBackend:
    """The workers of a running Dask distributed cluster (``dask scheduler`` / ``dask worker``).

    Connects when made, so an unreachable scheduler is reported before
    anything is written. The workers need this package installed (the same
    version: a run is only reproduced by the same code).

    Whoever can reach the scheduler can run code on its workers, and so can
    change what they compute: the cluster must be trusted (docs/guarantees.md,
    "Sweeps on a cluster"). What the sweep does not trust: each task's key
    is random (a key derived from the sweep could be claimed first by
    someone else's task, whose result Dask would hand back); each result
    must be a JSON string (:data:`DASK_DESERIALIZERS`: nothing is unpickled)
    that is a row of its own task (:func:`row_problem`).
    """

    def __init__(self, address: str, security: Any = None) -> None:
        from distributed import Client

        self.address = address
        try:
            # How long to try is Dask's own setting, distributed.comm.timeouts.connect
            # (30 s by default; e.g. DASK_DISTRIBUTED__COMM__TIMEOUTS__CONNECT=5s).
            self.client = Client(address, set_as_default=False, security=security,
                                 serializers=list(DASK_SERIALIZERS), deserializers=list(DASK_DESERIALIZERS))
        except (OSError, TimeoutError, ValueError, TypeError) as e:
            raise SweepError(f"--scheduler {address}: cannot connect ({type(e).__name__}: {str(e)[:200]})") from None

    def __call__(self, job: Job, tasks: list[RunTask]) -> Iterator[dict[str, Any]]:
        from distributed import as_completed

        client = self.client
        # The job goes to every worker once (under a random key); each task carries only its overrides and seed.
        job_future = client.scatter(job, broadcast=True, hash=False)
        by_key: dict[str, RunTask] = {}
        futures = []
        for task in tasks:
            key = f"sandbox-run-{secrets.token_hex(16)}"
            by_key[key] = task
            futures.append(client.submit(execute_json, job_future, task, key=key, pure=False))
        try:
            for future in as_completed(futures, loop=client.loop):
                try:
                    result = future.result()
                except Exception as e:
                    raise SweepError(f"--scheduler {self.address}: a run failed on the cluster "
                                     f"({type(e).__name__}); nothing of it was kept") from None
                yield _checked_result(result, by_key[future.key], self.address)
        finally:
            client.cancel(futures)

    def close(self) -> None:
        self.client.close()


def _checked_result(result: object, task: RunTask, address: str) -> dict[str, Any]:
    """A worker's answer as the row of ``task``, or :class:`SweepError`."""
    if not isinstance(result, str) or len(result) > MAX_ROW_BYTES:
        raise SweepError(f"--scheduler {address}: a worker returned {type(result).__name__}, not a row; "
                         "nothing of it was kept")
    try:
        row = json.loads(result)
    except (ValueError, RecursionError):
        row = None
    problem = row_problem(row, task) if row is not None else "not JSON"
    if problem is not None:
        raise SweepError(f"--scheduler {address}: a worker returned a bad row ({problem}); nothing of it was kept")
    return row  # type: ignore[return-value]


# --- the sweep --------------------------------------------------------------------------------------


@attrs.frozen
class SweepOutcome:
    rows: list[dict[str, Any]]
    summary: list[dict[str, Any]]
    ran: int
    skipped: int
    seconds: float

    @property
    def runs_per_second(self) -> float:
        return self.ran / self.seconds if self.seconds > 0 else 0.0


def open_out(out: Path, sweep: Sweep) -> OutDir:
    """``out``, locked for this sweep (a second command into it is refused), after :func:`prepare_out`'s checks."""
    prepare_out(out, sweep)
    try:
        folder = OutDir(out)
    except UnsafePath as e:
        raise SweepError(str(e)) from None
    try:
        _check_spec(folder, sweep)
    except BaseException:
        folder.close()
        raise
    return folder


def run_sweep(
    sweep: Sweep,
    out: Path | OutDir,
    backend: Backend,
    *,
    on_start: Callable[[int, int], None] | None = None,
    on_row: Callable[[dict[str, Any]], None] | None = None,
    plot: bool = True,
) -> SweepOutcome:
    """Run what ``out`` does not hold yet, then write the sorted rows, the summary and the plot.

    ``out`` (a path, or a folder already opened by :func:`open_out`) is
    locked for the whole sweep (a second command into it is refused) and the
    previous summary and plot are removed first. On resume, the
    journal's rows are checked against the plan (:func:`_read_journal`);
    every new row is checked too (:func:`row_problem`): a backend that
    returns anything else stops the sweep (:class:`SweepError`).
    """
    folder = out if isinstance(out, OutDir) else open_out(out, sweep)
    try:
        return _run_sweep_in(folder, sweep, backend, on_start, on_row, plot)
    except UnsafePath as e:
        raise SweepError(str(e)) from None
    finally:
        if folder is not out:  # opened here: closed here
            folder.close()


def _run_sweep_in(folder: OutDir, sweep: Sweep, backend: Backend, on_start: Callable[[int, int], None] | None,
                  on_row: Callable[[dict[str, Any]], None] | None, plot: bool) -> SweepOutcome:
    _check_spec(folder, sweep)
    folder.clear([SUMMARY_FILE, PLOT_FILE])  # the last sweep's results: rewritten at the end
    if folder.kind(SPEC_FILE) is None:
        folder.write_atomic(SPEC_FILE, json.dumps(sweep.spec(), indent=2) + "\n")
    tasks = sweep.tasks()
    done = _read_journal(folder, sweep)
    todo = [t for t in tasks if t.key not in done]
    wanted = {_task_id(t.params, t.seed): t for t in todo}
    if on_start is not None:
        on_start(len(todo), len(done))
    started = time.perf_counter()
    if todo:
        journal = _Journal(folder)
        try:
            for row in backend(sweep.job, todo):
                task = wanted.get(_row_id(row))
                problem = ("not one of the runs asked for" if task is None
                           else row_problem(row, task, dict(sweep.fund_initial).get(task.params)))
                if problem is not None or task is None or task.key in done:
                    raise SweepError(f"a worker returned a bad row ({problem or 'a run returned twice'}); "
                                     "nothing of it was kept")
                journal.append(row)
                done[task.key] = row
                if on_row is not None:
                    on_row(row)
        finally:
            journal.close()
    seconds = time.perf_counter() - started
    rows = [done[t.key] for t in tasks]  # canonical order: grid order, then seed
    folder.write_atomic(RUNS_FILE, "".join(_dumps(r) + "\n" for r in rows))
    summary = summarize(sweep, rows)
    folder.write_atomic(SUMMARY_FILE, json.dumps({**sweep.spec(), "combinations": summary}, indent=2) + "\n")
    if plot:
        folder.write_atomic(PLOT_FILE, render_plot(sweep, summary))
    return SweepOutcome(rows, summary, len(todo), len(tasks) - len(todo), seconds)


def _row_id(row: object) -> str | None:
    if not isinstance(row, dict) or not isinstance(row.get("params"), dict):
        return None
    try:
        return _task_id(tuple(row["params"].items()), row.get("seed"))
    except (TypeError, ValueError):
        return None


# --- the plot -----------------------------------------------------------------------------------------


def _number(text: str) -> float | None:
    try:
        value = Decimal(text)
    except ArithmeticError:
        return None
    return float(value) if value.is_finite() else None


def render_plot(sweep: Sweep, summary: list[dict[str, Any]]) -> bytes:
    """P(ADL) and the fund's drawdown quantiles against each swept parameter, as one PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    keys = [k for k, _ in sweep.sets] or ["(no parameter)"]
    fig, axes = plt.subplots(2, len(keys), figsize=(5.5 * len(keys), 7.5), squeeze=False)
    for col, key in enumerate(keys):
        others = [k for k in keys if k != key and k in (summary[0]["params"] if summary else {})]
        groups: dict[tuple[tuple[str, str], ...], list[dict[str, Any]]] = {}
        for entry in summary:
            groups.setdefault(tuple((k, entry["params"][k]) for k in others), []).append(entry)
        values = [v for k, vs in sweep.sets if k == key for v in vs] or [""]
        numeric = all(_number(v) is not None for v in values) and bool(sweep.sets)
        position = {v: (_number(v) if numeric else i) for i, v in enumerate(values)}
        top, bottom = axes[0][col], axes[1][col]
        for label, entries in groups.items():
            xs = [position[e["params"].get(key, "")] for e in entries]
            name = ", ".join(f"{k}={v}" for k, v in label)
            p = [e["p_adl"] for e in entries]
            line = top.plot(xs, p, marker="o", label=name or "P(ADL)")[0]
            top.fill_between(xs, [e["p_adl_95"][0] for e in entries], [e["p_adl_95"][1] for e in entries],
                             color=line.get_color(), alpha=0.15)
            quantiles = ("p50", "p90", "p99") if len(groups) == 1 else ("p90",)
            for q, style in zip(quantiles, ("-", "--", ":")):
                bottom.plot(xs, [float(e["fund_drawdown"][q]) for e in entries], linestyle=style, marker=".",
                            color=line.get_color() if len(groups) > 1 else None,
                            label=f"{q}" + (f" ({name})" if name else ""))
        top.axhline(0.01, color="grey", linewidth=0.8, linestyle=":", label="1%")
        top.set_ylabel("P(ADL) per run (band: 95% interval)")
        bottom.set_ylabel("fund drawdown (ETH): initial - minimum")
        for ax in (top, bottom):
            ax.set_xlabel(key)
            ax.grid(alpha=0.3)
            ax.legend(fontsize="small")
            if not numeric:
                ax.set_xticks(range(len(values)), values)
        top.set_ylim(bottom=0)
    fig.suptitle(f"{sweep.name}: {sweep.seeds} seeds per point")
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    return buf.getvalue()


# --- the command ------------------------------------------------------------


def _arguments(sweep: argparse.ArgumentParser) -> None:
    sweep.add_argument("scenario", help="a bundled scenario's name or a path to a .toml file")
    sweep.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=V1,V2,...",
                       help="a dotted scenario key and the values to sweep, e.g. insurance_fund.balance=0,10,50 "
                            "(repeat for a grid of every combination)")
    sweep.add_argument("--seeds", type=positive("--seeds"), required=True, help="runs per combination: seeds 0..N-1")
    sweep.add_argument("--workers", type=positive("--workers"), default=None,
                       help="local worker processes (default: one per CPU)")
    sweep.add_argument("--scheduler", default=None, metavar="tcp://HOST:PORT",
                       help="run on this Dask distributed scheduler's workers instead of a local pool "
                            "(tls://HOST:PORT with --tls-* or Dask's TLS settings; see docs/guarantees.md)")
    sweep.add_argument("--out", type=Path, default=None,
                       help="directory of the rows, summary and plot (default: out/sweep-SCENARIO); "
                            "a rerun with the same --out skips the runs already done")
    actor_option(sweep)
    sweep.add_argument("--allow-outside-paths", action="store_true", help=ALLOW_OUTSIDE_HELP)
    _tls_arguments(sweep)


def _tls_arguments(sweep: argparse.ArgumentParser) -> None:
    """--tls-*: the files of a tls:// scheduler (without them, Dask's own distributed.comm.tls settings)."""
    for flag, what in (("--tls-ca-file", "the CA certificate that signed the scheduler's and workers' certificates"),
                       ("--tls-cert", "this client's certificate"), ("--tls-key", "this client's private key")):
        sweep.add_argument(flag, default=None, metavar="FILE", help=f"with a tls:// --scheduler: {what}")


def _no_tls(args: argparse.Namespace) -> None:
    if any(f is not None for f in (args.tls_ca_file, args.tls_cert, args.tls_key)):
        raise BadInput("--tls-ca-file, --tls-cert and --tls-key are for a tls:// --scheduler")


def _sweep(args: argparse.Namespace, console: Console) -> int:
    if args.scheduler is not None and args.workers is not None:
        raise BadInput("--workers is for the local pool; with --scheduler the cluster's workers run the sweep")
    if args.scheduler is not None and not re.fullmatch(r"(tcp|tls)://[^\s:/]+:\d{1,5}", args.scheduler):
        raise BadInput(f"--scheduler {args.scheduler!r}: expected tcp://HOST:PORT or tls://HOST:PORT")
    _, actor_refs = load_actors(args.actors)  # checked here; each worker loads them again
    try:  # every check (scenario, each --set key and value, --out) before anything is written
        security = (dask_security(args.tls_ca_file, args.tls_cert, args.tls_key, args.scheduler)
                    if args.scheduler is not None else _no_tls(args))
        plan = load_sweep(args.scenario, args.sets, args.seeds, actor_refs,
                            allow_outside_paths=args.allow_outside_paths)
        # The default folder is named after the scenario, made harmless: a name with '../' stays in ./out.
        out = args.out if args.out is not None else Path("out") / f"sweep-{safe_name(plan.name)}"
        prepare_out(out, plan)
    except SweepError as e:
        raise BadInput(str(e)) from None
    return _sweep_in(args, console, plan, out, security)


def _sweep_in(args: argparse.Namespace, console: Console, plan: Any, out: Path, security: Any) -> int:
    if args.scheduler is not None:
        try:
            cluster = DaskBackend(args.scheduler, security)
        except SweepError as e:
            raise BadInput(str(e)) from None
        backend, where, close = cluster, f"the Dask cluster at {args.scheduler}", cluster.close
    else:
        workers = args.workers or os.cpu_count() or 1
        backend, where, close = local_backend(workers), f"{workers} local worker{'s' * (workers > 1)}", None
    try:
        folder = open_out(out, plan)  # locked until the sweep ends
    except SweepError as e:
        if close is not None:
            close()
        raise BadInput(str(e)) from None
    try:
        return _sweep_run(args, console, plan, out, folder, backend, where, close)
    finally:
        folder.close()


def _sweep_run(args: argparse.Namespace, console: Console, plan: Any, out: Path, folder: OutDir, backend: Any,
               where: str, close: Any) -> int:
    from rich.progress import (BarColumn, MofNCompleteColumn, Progress, ProgressColumn, TextColumn,
                               TimeElapsedColumn, TimeRemainingColumn)
    from rich.text import Text

    class RunsPerSecond(ProgressColumn):
        def render(self, task: Any) -> Text:
            return Text(f"{task.speed:.1f} runs/s" if task.speed else "")

    combos = len(plan.combinations())
    console.print(f"sweep {plain(plan.name)}: {combos} combination{'s' * (combos > 1)} x {plan.seeds} seeds = "
                  f"{combos * plan.seeds} runs on {where}", markup=False, soft_wrap=True)
    err = Console(stderr=True, highlight=False)
    progress = Progress(TextColumn("runs"), BarColumn(), MofNCompleteColumn(), RunsPerSecond(), TimeElapsedColumn(),
                        TextColumn("ETA"), TimeRemainingColumn(), console=err, transient=True)
    bar = progress.add_task("runs", total=None)

    def on_start(todo: int, skipped: int) -> None:
        if skipped:
            console.print(f"{out}: {skipped} runs already done, skipped", markup=False, soft_wrap=True)
        progress.update(bar, total=todo)

    try:
        with progress:
            outcome = run_sweep(plan, folder, backend, on_start=on_start,
                                   on_row=lambda _: progress.advance(bar))
    except SweepError as e:
        raise BadInput(str(e)) from None
    except KeyboardInterrupt:
        print(f"sandbox: interrupted; the finished runs are in {out / RUNS_FILE}: "
              "run the same command again to resume", file=sys.stderr)
        return EXIT_INTERRUPTED
    finally:
        if close is not None:
            close()
    if outcome.ran:
        console.print(f"{outcome.ran} runs in {outcome.seconds:.2f} s: {outcome.runs_per_second:.2f} runs/s "
                      f"on {where}", markup=False, soft_wrap=True)
    table = Table(title=plain_text(f"{plan.name}: {plan.seeds} seeds per combination"))
    for key, _ in plan.sets:
        table.add_column(key)
    for column in ("P(ADL)", "95% interval", "fund drawdown p50", "p90", "p99", "not ok"):
        table.add_column(column, justify="right")
    for entry in outcome.summary:
        d = entry["fund_drawdown"]
        low, high = entry["p_adl_95"]
        table.add_row(*(plain_text(v) for v in entry["params"].values()), f"{entry['p_adl']:.2%}",
                      f"{low:.1%}-{high:.1%}", *(f"{Decimal(d[q]):.2f}" for q in ("p50", "p90", "p99")),
                      str(entry["runs"] - entry["ok"]))
    console.print(table)
    console.print(f"wrote {out / RUNS_FILE} ({len(outcome.rows)} rows), {out / SUMMARY_FILE}, "
                  f"{out / PLOT_FILE}", markup=False, soft_wrap=True)
    return EXIT_OK if all(r["status"] == "ok" for r in outcome.rows) else EXIT_VIOLATION


COMMAND = Command("sweep", "run a scenario over a grid of parameters and seeds (P(ADL), fund drawdown)", _arguments,
                  _sweep)
