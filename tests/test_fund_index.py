"""The insurance fund's indexes (reservations summed per fund, lots by market and side) agree with a scan."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from actors import InsuranceFund
from sandbox import bundled_scenarios, resolve_scenario
from sandbox.testing import run_sync, scenario_dicts
from sandbox._scenario.load import parse_scenario


class CheckedFund(InsuranceFund):
    """Compares, after every message it handles, each fund's indexed reservations and lots with a scan."""

    checks = 0

    def _dispatch(self, envelope):  # type: ignore[no-untyped-def]
        out = super()._dispatch(envelope)
        for name in self.ledgers:
            scan = sum(self.reserve(lot) for lot in self.lots.values() if self.fund_of[lot.market] == name)
            assert self._reserved.get(name, 0) == scan, (name, self._reserved, scan)
        for (market, side), lots in self._sides.items():
            assert list(lots) == [i for i, lot in self.lots.items()
                                  if lot.market == market and (lot.size > 0) == (side > 0) and lot.size]
        CheckedFund.checks += 1
        return out


def test_bundled_scenarios():
    for name in bundled_scenarios():
        result = run_sync(resolve_scenario(name), actors={"insurance_fund": CheckedFund})
        assert result.error is None, (name, result.error)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(scenario_dicts(policies=True), st.integers(0, 3))
def test_random_runs(document, seed):
    result = run_sync(parse_scenario(document, "<generated>"), seed=seed, actors={"insurance_fund": CheckedFund})
    assert result.error is None, result.error
