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

import copy
import hashlib
import importlib.resources
import itertools
import json
import math
import multiprocessing
import os
import signal
import threading
import time
import tomllib
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from decimal import Decimal
from pathlib import Path
from typing import Any, Final

import attrs

from .money import MONEY_DECIMALS, PRICE_DECIMALS, SIZE_DECIMALS, fmt_money, parse_units
from .scenario import ScenarioError, bundled_scenarios, parse_scenario, resolve_scenario

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
FUND_BALANCE_EVENTS: Final = ("fund_surplus", "fund_payout", "fund_gain", "fund_lot_closed")
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
    # --actor ROLE=REF: loaded again in each worker (a class from a file cannot
    # travel by pickle), so a worker must see the same module or file.
    actors: tuple[tuple[str, str], ...] = ()


@attrs.frozen
class Sweep:
    name: str
    job: Job
    sets: tuple[tuple[str, tuple[str, ...]], ...]
    seeds: int

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
        if self.job.actors:  # only then, so an --out written before --actor existed still resumes
            spec["actors"] = dict(self.job.actors)
        return spec


def load_sweep(scenario: str, sets: Sequence[str], seeds: int,
               actors: tuple[tuple[str, str], ...] = ()) -> Sweep:
    """Read the scenario and check every combination of the grid before anything runs."""
    base = resolve_scenario(scenario)  # ScenarioError for a bad file, as for 'sandbox run'
    if base.template is not None:
        document = base.template  # the generator document, with any csv already read in
    else:
        document = tomllib.loads(_raw_bytes(scenario).decode("utf-8"))
    job = Job(document, base.source, base.digest, actors)
    grid: list[tuple[str, tuple[str, ...]]] = []
    for text in sets:
        key, values = parse_set(text)
        if any(key == k for k, _ in grid):
            raise SweepError(f"--set {key}: given twice")
        grid.append((key, values))
        for value in values:  # each value alone first, so the message names it
            _check(job, ((key, value),))
    sweep = Sweep(base.name, job, tuple(grid), seeds)
    if len(grid) > 1:
        for params in sweep.combinations():
            _check(job, params)
    return sweep


def _raw_bytes(ref: str) -> bytes:
    if ref in bundled_scenarios() and not Path(ref).exists():
        return importlib.resources.files("scenarios").joinpath(f"{ref}.toml").read_bytes()
    return Path(ref).read_bytes()


def _override_all(job: Job, params: tuple[tuple[str, str], ...]) -> dict[str, Any]:
    doc = job.document
    for key, value in params:
        doc = apply_override(doc, key, value)
    return doc


def _check(job: Job, params: tuple[tuple[str, str], ...]) -> None:
    where = "--set " + " ".join(f"{k}={v}" for k, v in params)
    try:
        doc = _override_all(job, params)
    except ValueError as e:
        raise SweepError(f"{where}: {e}") from None
    try:
        parse_scenario(doc, job.source, job.digest)
    except ScenarioError as e:
        raise SweepError(f"{where}: {e.key + ': ' if e.key else ''}{e.problem}") from None


# --- one run ---------------------------------------------------------------------------------


def execute(job: Job, task: RunTask) -> dict[str, Any]:
    """Run one task and return its row. Deterministic: the same task gives the same row anywhere."""
    from .exchange import run_scenario_sync

    try:
        doc = dict(_override_all(job, task.params))
        doc["seed"] = task.seed  # a stochastic scenario is generated from the run's seed
        scenario = parse_scenario(doc, job.source, job.digest)
        actors = None
        if job.actors:
            from .actorref import load_actor

            actors = {role: load_actor(role, ref) for role, ref in job.actors}
        result = run_scenario_sync(scenario, seed=task.seed, check=True, actors=actors)
        return measure(task, scenario.fund_balance, result.events, result.log.counts, result.violations)
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
            if e["kind"] == "fund_payout":
                payouts += parse_units(e["amount"], MONEY_DECIMALS)
                payout_count += 1
    adl_notional = sum(
        abs(parse_units(e["size"], SIZE_DECIMALS, allow_negative=True)) * parse_units(e["price"], PRICE_DECIMALS)
        for e in events if e["kind"] == "adl"
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
        liquidations=counts["liquidation_started"],
        bankruptcies=counts["bankruptcy"],
        fund_takeovers=counts["fund_takeover"],
        adl=counts["adl"],
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


def _read_journal(path: Path) -> list[dict[str, Any]]:
    """Complete rows of ``path``; a torn last line (a crash in mid-write) is cut off the file."""
    if not path.exists():
        return []
    data = path.read_bytes()
    end = data.rfind(b"\n") + 1
    if end < len(data):
        os.truncate(path, end)
    rows = []
    for line in data[:end].splitlines():
        try:
            row = json.loads(line)
        except ValueError:
            continue  # not a row of ours: redone
        if isinstance(row, dict) and isinstance(row.get("params"), dict) and isinstance(row.get("seed"), int):
            rows.append(row)
    return rows


class _Journal:
    """Appends each row as one complete line, flushed to disk before the next."""

    def __init__(self, path: Path) -> None:
        self._fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)

    def append(self, row: dict[str, Any]) -> None:
        data = (_dumps(row) + "\n").encode("utf-8")
        written = os.write(self._fd, data)  # one write of the whole line
        while written < len(data):
            written += os.write(self._fd, data[written:])
        os.fsync(self._fd)

    def close(self) -> None:
        os.close(self._fd)


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def prepare_out(out: Path, sweep: Sweep) -> None:
    """Refuse an --out that holds another sweep's rows (nothing is written here)."""
    if out.exists() and not out.is_dir():
        raise SweepError(f"--out {out}: exists and is not a directory")
    spec_path = out / SPEC_FILE
    if spec_path.exists():
        try:
            previous = json.loads(spec_path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as e:
            raise SweepError(f"--out {out}: {SPEC_FILE} cannot be read ({e})") from None
        if not _same_sweep(previous, sweep.spec()):
            raise SweepError(f"--out {out}: holds a different sweep ({_difference(previous, sweep.spec())}); "
                             "use another --out")
    elif (out / RUNS_FILE).exists():
        raise SweepError(f"--out {out}: has {RUNS_FILE} but no {SPEC_FILE}; use another --out")


def _same_sweep(old: Any, new: dict[str, Any]) -> bool:
    # The same file named another way (a relative path from elsewhere) is the same sweep: its digest says so.
    return isinstance(old, dict) and all(old.get(k) == new.get(k) for k in set(new) | set(old) if k != "source")


def _difference(old: Any, new: dict[str, Any]) -> str:
    if not isinstance(old, dict):
        return "unreadable"
    changed = [k for k in {**old, **new} if k != "source" and old.get(k) != new.get(k)]
    return ", ".join(f"{k} was {json.dumps(old.get(k))}" for k in changed) or "format"


# --- backends -------------------------------------------------------------------------------------


Backend = Callable[[Job, list[RunTask]], Iterator[dict[str, Any]]]


def local_backend(workers: int) -> Backend:
    """A pool of ``workers`` processes on this machine."""

    def run(job: Job, tasks: list[RunTask]) -> Iterator[dict[str, Any]]:
        # forkserver: workers fork from a clean server process, not from this
        # one (whose progress-bar thread could hold a lock at fork time).
        ctx = multiprocessing.get_context("forkserver")
        ctx.set_forkserver_preload(["sandbox.sweep", "sandbox.exchange"])
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


class DaskBackend:
    """The workers of a running Dask distributed cluster (``dask scheduler`` / ``dask worker``).

    Connects when made, so an unreachable scheduler is reported before
    anything is written. The workers need this package installed (the same
    version: a run is only reproduced by the same code).
    """

    def __init__(self, address: str) -> None:
        from distributed import Client

        self.address = address
        try:
            # How long to try is Dask's own setting, distributed.comm.timeouts.connect
            # (30 s by default; e.g. DASK_DISTRIBUTED__COMM__TIMEOUTS__CONNECT=5s).
            self.client = Client(address, set_as_default=False)
        except (OSError, TimeoutError) as e:
            raise SweepError(f"--scheduler {address}: cannot connect ({e})") from None

    def __call__(self, job: Job, tasks: list[RunTask]) -> Iterator[dict[str, Any]]:
        from distributed import as_completed

        client = self.client
        # The job goes to every worker once; each task carries only its overrides and seed.
        job_future = client.scatter(job, broadcast=True, hash=False)
        tag = hashlib.sha256(json.dumps([job.digest, job.source]).encode()).hexdigest()[:12]
        futures = [
            client.submit(execute, job_future, task, key=f"sandbox-run-{tag}-{_task_hash(task)}", pure=False)
            for task in tasks
        ]
        try:
            for future in as_completed(futures, loop=client.loop):
                yield future.result()
        finally:
            client.cancel(futures)

    def close(self) -> None:
        self.client.close()


def _task_hash(task: RunTask) -> str:
    return hashlib.sha256(json.dumps([task.params, task.seed]).encode()).hexdigest()[:16]


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


def run_sweep(
    sweep: Sweep,
    out: Path,
    backend: Backend,
    *,
    on_start: Callable[[int, int], None] | None = None,
    on_row: Callable[[dict[str, Any]], None] | None = None,
    plot: bool = True,
) -> SweepOutcome:
    """Run what ``out`` does not hold yet, then write the sorted rows, the summary and the plot."""
    prepare_out(out, sweep)
    out.mkdir(parents=True, exist_ok=True)
    spec_path = out / SPEC_FILE
    if not spec_path.exists():
        _write_atomic(spec_path, json.dumps(sweep.spec(), indent=2) + "\n")
    tasks = sweep.tasks()
    wanted = {t.key: t for t in tasks}
    done: dict[Any, dict[str, Any]] = {}
    for row in _read_journal(out / RUNS_FILE):
        key = (tuple(row["params"].items()), row["seed"])
        if key in wanted:
            done[key] = row
    todo = [t for t in tasks if t.key not in done]
    if on_start is not None:
        on_start(len(todo), len(done))
    started = time.perf_counter()
    if todo:
        journal = _Journal(out / RUNS_FILE)
        try:
            for row in backend(sweep.job, todo):
                journal.append(row)
                done[(tuple(row["params"].items()), row["seed"])] = row
                if on_row is not None:
                    on_row(row)
        finally:
            journal.close()
    seconds = time.perf_counter() - started
    rows = [done[t.key] for t in tasks]  # canonical order: grid order, then seed
    _write_atomic(out / RUNS_FILE, "".join(_dumps(r) + "\n" for r in rows))
    summary = summarize(sweep, rows)
    _write_atomic(out / SUMMARY_FILE, json.dumps({**sweep.spec(), "combinations": summary}, indent=2) + "\n")
    if plot:
        write_plot(sweep, summary, out / PLOT_FILE)
    return SweepOutcome(rows, summary, len(todo), len(tasks) - len(todo), seconds)


# --- the plot -----------------------------------------------------------------------------------------


def _number(text: str) -> float | None:
    try:
        value = Decimal(text)
    except ArithmeticError:
        return None
    return float(value) if value.is_finite() else None


def write_plot(sweep: Sweep, summary: list[dict[str, Any]], path: Path) -> None:
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
    tmp = path.with_name(f".{path.name}.tmp.png")
    fig.savefig(tmp, dpi=110)
    plt.close(fig)
    os.replace(tmp, path)
