"""The V2 -> V3-Large attribution on real counts: exact ends, exact efficiency."""

from __future__ import annotations

from fractions import Fraction

import pytest

import ablate
from ablate.analysis.attribution import attribute
from ablate.analysis.coalitions import CoalitionSpace
from ablate.counting import count_model
from ablate.spec import load_spec
from tests.conftest import parameter_count

V2 = {"params": 3_504_872, "macs": 300_774_272}
V3_LARGE = {"params": 5_483_032, "macs": 216_589_760}


# Counting all 128 coalitions of the real attribution takes about 20 s.
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def counted() -> tuple[CoalitionSpace, dict[int, dict[str, int]]]:
    spec = load_spec("experiments/why_v3_faster.yaml")
    assert spec.attribution is not None
    space = CoalitionSpace(spec.attribution.factors)
    values: dict[int, dict[str, int]] = {}
    for mask in space.masks():
        variant = spec.variant(space.variant_name(mask))
        model = ablate.build_model(variant.base, **variant.factors)
        counts = count_model(model)
        values[int(mask)] = {"params": parameter_count(model), "macs": counts.macs}
    return space, values


def test_the_two_ends_are_exactly_v2_and_v3_large(counted) -> None:
    space, values = counted
    assert len(values) == 128
    assert values[0] == V2
    assert values[(1 << len(space.factors)) - 1] == V3_LARGE


def test_shapley_contributions_sum_exactly_to_the_total(counted) -> None:
    space, values = counted
    result = attribute(
        space.factors,
        {metric: [values[mask][metric] for mask in range(128)] for metric in ("params", "macs")},
        from_name="mobilenet_v2",
        to_name="mobilenet_v3_large",
    )
    for metric in ("params", "macs"):
        total = V3_LARGE[metric] - V2[metric]
        contributions = [result.shapley_of(factor).metrics[metric] for factor in space.factors]
        assert sum(Fraction(value) for value in contributions) == total
    assert result.total.metrics["macs"] == 216_589_760 - 300_774_272
    # One-factor views, hand-derived (conv + linear MACs at 224x224, final map 7x7):
    # on V2 (last block 320 ch), V3's last stage is 1x1 320->1920 (30,105,600) + linear
    # 1920->1280 (2,457,600) + 1280->1000, against V2's 1x1 320->1280 (20,070,400) + 1280->1000.
    index = space.factors.index("last_stage")
    added = result.added_to_from[index].metrics["macs"]
    assert added == 30_105_600 + 2_457_600 - 20_070_400
    # On V3-Large (last block 160 ch): 160->960 (7,526,400) + 960->1280 (1,228,800) against
    # 160->1280 (10,035,200). The paper's 30M saving (Section 5.1) also drops V2's last
    # bottleneck, which this vocabulary books under `layout`.
    removed = result.removed_from_to[index].metrics["macs"]
    assert removed == 7_526_400 + 1_228_800 - 10_035_200
