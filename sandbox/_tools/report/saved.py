"""A report from a saved run: a Recording rebuilt from events.jsonl (and the scenario it names)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Final


from sandbox._core.eventlog import EventLog
from sandbox._tools.plain import plain

from sandbox._tools.report.recording import Recorder, Recording


# --- a report from a saved run ------------------------------------------------------------------


class ReportLogError(ValueError):
    """A saved run's events.jsonl cannot be turned into a report (the message says why)."""


# The first line (opening_state) is small; a longer one is not a log of this program.
_MAX_FIRST_LINE: Final = 1 << 20


def recording_from_log(path: str | os.PathLike[str], scenario_path: str | None = None) -> Recording:
    """The recording of the run that wrote ``path`` (an ``events.jsonl``), for :func:`render_html`.

    The report draws what only a live run has: every delivered message (the
    sequence diagram, the stepping view) and the state between deliveries
    (equity below maintenance margin just before a liquidation). The log
    does not hold those, but it determines them: its first line names the
    scenario with the sha256 of its file, the seed and the delivery mode,
    and a seeded run is a pure function of those. So the run is rebuilt by
    running that scenario again with that seed, and every line of the log is
    compared, byte for byte, with the rerun's events: the report is made
    only if they are the same run. A live run (trio chose its interleaving)
    cannot be rebuilt; nor can a log that was edited or cut short.

    ``scenario_path`` is the scenario file when it is not the bundled one of
    the name in the log. Raises :class:`ReportLogError`, or
    :class:`~sandbox._scenario.reader.ScenarioError` for a bad ``scenario_path``.
    """
    import trio

    from sandbox._exchange.run import run_scenario
    from sandbox._scenario.load import bundled_scenarios, resolve_scenario

    log_path = Path(path)
    where = plain(log_path)
    if not log_path.exists():
        raise ReportLogError(f"report: {where}: no such file")
    if not log_path.is_file():
        raise ReportLogError(f"report: {where}: not a regular file (expected a run's events.jsonl)")
    try:
        with open(log_path, "rb") as f:
            first = f.readline(_MAX_FIRST_LINE)
    except OSError as e:
        raise ReportLogError(f"report: {where}: cannot be read ({e.strerror or e})") from None
    try:
        opening = json.loads(first)
        if not isinstance(opening, dict) or opening.get("kind") != "opening_state":
            raise ValueError
        name, digest, seed, mode = (opening[k] for k in ("scenario", "digest", "seed", "mode"))
    except (ValueError, KeyError, UnicodeDecodeError):
        raise ReportLogError(f"report: {where}: line 1 is not the opening_state of a run "
                             "(expected the events.jsonl of 'sandbox run --out DIR')") from None
    if mode != "seeded":
        raise ReportLogError(f"report: {where}: a {plain(mode)} run cannot be rebuilt (trio chose its interleaving); "
                             "use 'sandbox run --live --report FILE.html' to report it as it runs")
    if scenario_path is not None:
        scenario = resolve_scenario(scenario_path)
    elif isinstance(name, str) and name in bundled_scenarios():
        scenario = bundled_scenarios()[name]()
    else:
        raise ReportLogError(f"report: {where}: the run used scenario {plain(name)!r}, which is not bundled: "
                             "pass its file with --scenario FILE.toml")
    if scenario.digest != digest:
        raise ReportLogError(f"report: {where}: {plain(scenario.source)} is not the scenario file the run used "
                             "(its sha256 differs from the one in the log)")
    log = EventLog()
    recorder = Recorder()
    recorder.attach(log)
    result = trio.run(lambda: run_scenario(scenario, seed=seed, log=log, **recorder.run_options()))
    events = result.events
    n = 0
    with open(log_path, "rb") as f:
        for n, line in enumerate(f, start=1):
            if n > len(events) or line.rstrip(b"\n") != EventLog.dumps(events[n - 1]).encode():
                raise ReportLogError(f"report: {where}: line {n} is not what the run of {plain(scenario.name)} with "
                                     f"seed {seed} records: the log was edited, or written by other actors")
    if n < len(events):
        raise ReportLogError(f"report: {where}: ends at line {n}, before the run finished (it has "
                             f"{len(events)} events): a report needs the whole run")
    return recorder.finish(result)
