"""A user's own variant of the insurance fund, tested against every interleaving hypothesis can find.

Run it with:  python -m pytest docs/examples/test_my_fund.py
"""

from hypothesis import given, settings

from actors import InsuranceFund
from sandbox import resolve_scenario
from sandbox.testing import run_schedule, run_schedule_sync, schedules

SCENARIO = resolve_scenario("race_two_bankruptcies")


class SimplerFund(InsuranceFund):
    """My idea: skip the bookkeeping of reservations and budget every lot with the whole balance."""

    def budget(self, lot):
        return self.balance


@settings(max_examples=200)
@given(schedules())
def test_the_standard_fund_never_goes_negative(schedule):
    run = run_schedule_sync(SCENARIO, schedule)
    assert run.failure is None, run.failure.summary


@settings(max_examples=200)
@given(schedules())
def test_my_fund_never_goes_negative(schedule):
    run = run_schedule_sync(SCENARIO, schedule, actors={"insurance_fund": SimplerFund})
    assert run.failure is None, run.failure.summary  # hypothesis finds the schedule that breaks it


# The same with pytest-trio's trio mode: the test is async and awaits the run.
@settings(max_examples=50)
@given(schedules())
async def test_the_standard_fund_in_trio_mode(schedule):
    run = await run_schedule(SCENARIO, schedule)
    assert run.failure is None, run.failure.summary
    assert run.runtime["insurance_fund"].balance >= 0
