"""The specs check their own fields (attrs validators): a value outside a field's
domain, set in code or with attrs.evolve, is refused with the field's name."""

import attrs
import pytest

from sandbox._core.specs import (
    DEFAULT_POLICY,
    AccountSpec,
    EventSpec,
    FundSpec,
    MarketSpec,
    OrderSpec,
    Policy,
    PositionSpec,
    Tier,
)

MARKET = MarketSpec("PUNK", 100_000_000_000, 100_000, 50_000)


def test_a_misspelt_choice_is_refused_by_name():
    with pytest.raises(ValueError, match=r"^'liquidation' must be one of 'full', 'partial', got 'partal'$"):
        attrs.evolve(DEFAULT_POLICY, liquidation="partal")


@pytest.mark.parametrize("field, value, error", [
    ("fund_retries", -1, "'fund_retries' must be >= 0: -1"),
    ("fund_retries", 101, "'fund_retries' must be <= 100: 101"),
    ("partial_fraction", 0, "'partial_fraction' must be >= 1: 0"),
    ("fund_price_band", "0.1", "'fund_price_band' must be an integer"),
    ("tier_step_down", 1, "'tier_step_down' must be true or false, got 1"),
    ("adl_ranking", "pnl", "'adl_ranking' must be one of"),
    ("fund_inventory", "sell", "'fund_inventory' must be one of"),
    ("liquidation_fee", 100_000, "'liquidation_fee' must be <= 99999"),
])
def test_every_policy_field_with_a_domain_checks_it(field, value, error):
    with pytest.raises((ValueError, TypeError), match="^" + error.replace("(", r"\(").replace(")", r"\)")):
        attrs.evolve(DEFAULT_POLICY, **{field: value})


def test_every_field_of_every_spec_has_a_validator():
    # A spec field without a domain is a name or a container of other specs (checked themselves).
    free = {("MarketSpec", "symbol"), ("MarketSpec", "tiers"), ("FundSpec", "name"), ("FundSpec", "markets"),
            ("PositionSpec", "market"), ("AccountSpec", "id"), ("AccountSpec", "positions"),
            ("AccountSpec", "isolated_of"), ("OrderSpec", "account"), ("OrderSpec", "market"), ("OrderSpec", "id"), ("EventSpec", "market"),
            ("EventSpec", "price"), ("EventSpec", "account"), ("EventSpec", "amount"), ("EventSpec", "order"),
            ("EventSpec", "order_id")}
    for cls in (Policy, MarketSpec, Tier, FundSpec, PositionSpec, AccountSpec, OrderSpec, EventSpec):
        for f in attrs.fields(cls):
            if (cls.__name__, f.name) not in free:
                assert f.validator is not None, f"{cls.__name__}.{f.name} has no validator"


@pytest.mark.parametrize("make, error", [
    (lambda: attrs.evolve(MARKET, tick_size=0), "'tick_size' must be >= 1: 0"),
    (lambda: attrs.evolve(MARKET, maintenance_margin=2_000_000), "'maintenance_margin' must be <= 1000000"),
    (lambda: OrderSpec("a", "PUNK", "long", 1, 1), "'side' must be one of 'buy', 'sell', got 'long'"),
    (lambda: OrderSpec("a", "PUNK", "buy", 1, 1, tif="fok"), "'tif' must be one of 'gtc', 'ioc', got 'fok'"),
    (lambda: OrderSpec("a", "PUNK", "buy", 1, 0), "'size' must be >= 1: 0"),
    (lambda: EventSpec(0, "price"), "'type' must be one of"),
    (lambda: AccountSpec("a", -1), "'deposit' must be >= 0: -1"),
    (lambda: PositionSpec("PUNK", 1, 0), "'entry_price' must be >= 1: 0"),
    (lambda: FundSpec("f", -5, ("PUNK",)), "'balance' must be >= 0: -5"),
    (lambda: Tier(None, 0, 1, 1), "'maintenance_margin' must be >= 1: 0"),
])
def test_the_other_specs_check_their_fields(make, error):
    with pytest.raises((ValueError, TypeError), match="^" + error):
        make()


def test_a_valid_spec_is_accepted_unchanged():
    assert attrs.evolve(DEFAULT_POLICY, liquidation="partial").liquidation == "partial"
    assert attrs.evolve(MARKET, tick_size=5).tick_size == 5


def test_messages_check_their_fields_with_a_domain():
    # Every Literal-typed field of a message (side, time in force, order kind,
    # liquidity) refuses a value outside it, naming the class and the field.
    import typing

    from sandbox import messages as m

    checked = 0
    for name in m.__all__:
        cls = getattr(m, name)
        if not (isinstance(cls, type) and attrs.has(cls)):
            continue
        for f in attrs.fields(cls):
            hint = getattr(m, f.type, None) if isinstance(f.type, str) else f.type
            if typing.get_origin(hint) is not typing.Literal:
                continue
            checked += 1
            good = {g.name: (typing.get_args(hint)[0] if g is f else _sample(g, m)) for g in attrs.fields(cls)}
            instance = cls(**good)
            with pytest.raises(ValueError, match=rf"^{cls.__name__}\.{f.name} must be one of"):
                attrs.evolve(instance, **{f.name: "nonsense"})
    assert checked >= 6  # Order's side, tif, kind; SubmitOrder's...; Fill's liquidity, kind


def _sample(field, m):
    import typing

    hint = getattr(m, field.type, None) if isinstance(field.type, str) else field.type
    if typing.get_origin(hint) is typing.Literal:
        return typing.get_args(hint)[0]
    if field.default is not attrs.NOTHING:
        return field.default
    return {"int": 1, "str": "x", "bool": False}.get(str(field.type).split(" ")[0], None)
