"""The golden digests of every bundled scenario's events.jsonl.

Refactors and optimisations must not change what a run does: the same
scenario, seed and policy give the same bytes. ``digests()`` runs every
bundled scenario under its own policy and under every venue preset, with its
own seed and two others, and hashes the lines ``events.jsonl`` would hold
(the same serialisation, ``EventLog.dumps``). ``tests/golden/events.json``
holds the digests recorded before the change; ``test_golden_events.py``
compares. A change that is meant to alter behaviour re-records them with
``python -m tests.golden.events --write`` and says so in its commit.
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

import attrs

from sandbox import bundled_scenarios, resolve_scenario, run_scenario_sync
from sandbox._core.eventlog import EventLog
from sandbox._scenario.parse import PRESETS, _parse_policy

FILE = Path(__file__).with_name("events.json")
EXTRA_SEEDS = (1, 7)


def cases() -> list[tuple[str, str, int]]:
    """(scenario, policy: "own" or a preset, seed) for every case recorded."""
    out = []
    for name in bundled_scenarios():
        sc = resolve_scenario(name)
        for policy in ("own", *PRESETS):
            seeds = (sc.seed, *EXTRA_SEEDS) if policy == "own" else (sc.seed,)
            out.extend((name, policy, s) for s in seeds)
    return out


def digest(name: str, policy: str, seed: int) -> str:
    sc = resolve_scenario(name)
    if policy != "own":
        sc = attrs.evolve(sc, policy=_parse_policy(sc.source, policy))
    result = run_scenario_sync(sc, seed=seed)
    h = hashlib.sha256()
    for e in result.events:
        h.update(EventLog.dumps(e).encode())
        h.update(b"\n")
    return h.hexdigest()


def key(name: str, policy: str, seed: int) -> str:
    return f"{name} {policy} {seed}"


def main(argv: list[str]) -> int:
    if argv != ["--write"]:
        print("usage: python -m tests.golden.events --write", file=sys.stderr)
        return 2
    table = {key(*c): digest(*c) for c in cases()}
    FILE.write_text(json.dumps(table, indent=1, sort_keys=True) + "\n")
    print(f"{len(table)} digests written to {FILE}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
