"""Behaviour does not change under a refactor or an optimisation: every bundled
scenario, under its own policy and every venue preset, with several seeds,
gives byte for byte the events.jsonl recorded in tests/golden/events.json."""

import json

import pytest

from tests.golden.events import FILE, cases, digest, key

RECORDED = json.loads(FILE.read_text())


def test_every_case_is_recorded():
    # A new bundled scenario or preset is recorded too (and nothing stale stays).
    assert sorted(RECORDED) == sorted(key(*c) for c in cases())


@pytest.mark.parametrize("case", cases(), ids=lambda c: key(*c).replace(" ", ":"))
def test_events_are_byte_identical(case):
    assert digest(*case) == RECORDED[key(*case)]
