"""The latency engine driven by a simulated machine: nothing here sleeps or times real code."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Mapping, Sequence

import numpy as np
import pytest

from ablate.analysis.attribution import attribute, latency_half_widths
from ablate.analysis.plan import plan_attribution
from ablate.errors import MeasurementError
from ablate.measurement.clock import WarmupPolicy
from ablate.measurement.engine import SETTLE_CALLS, PrecisionTarget, StoppingPolicy, measure_latency
from ablate.measurement.results import LatencyResult, RatioEstimate, to_json
from ablate.measurement.statistics import stopping_widths


class FakeMachine:
    """Simulated time. A variant's run advances it by its cost, scaled by a machine-wide
    drift (proportional to simulated time) and by lognormal jitter of its own."""

    def __init__(self, seed: int = 0, drift_per_second: float = 0.0):
        self.now = 0.0
        self.drift_per_second = drift_per_second
        self.rng = np.random.default_rng(seed)
        self.calls: list[str] = []

    def clock(self) -> float:
        return self.now

    def variant(
        self,
        name: str,
        seconds: float,
        *,
        jitter: float = 0.02,
        cold_excess: float = 0.0,
        evicted_excess: float = 0.0,
        unsettled_excess: float = 0.0,
    ) -> Callable[[], None]:
        """`cold_excess`: the first run costs that much extra, decaying by e every 3 runs
        (caches, allocator and lazy initialisation warming up). `evicted_excess`: a run right
        after another variant's costs that much extra (its weights were evicted).
        `unsettled_excess`: so does a run after another variant's, shrinking by a fifth with
        each run of this variant in a row (a cache that keeps lines only once reused)."""
        runs = 0

        def run() -> None:
            nonlocal runs
            cost = seconds * (1 + self.drift_per_second * self.now)
            cost *= self.rng.lognormal(0.0, jitter) * (1 + cold_excess * np.exp(-runs / 3))
            if self.calls and self.calls[-1] != name:
                cost *= 1 + evicted_excess
            streak = 0
            while streak < len(self.calls) and self.calls[-1 - streak] == name:
                streak += 1
            cost *= 1 + unsettled_excess * 0.8**streak
            runs += 1
            self.calls.append(name)
            self.now += cost

        return run


def measure(
    machine: FakeMachine,
    variants: dict[str, Callable[[], None] | list[Callable[[], None]]],
    *,
    baseline: str = "base",
    **stopping: float,
) -> LatencyResult:
    policy = StoppingPolicy(**{"budget_seconds": 30.0, **stopping})  # type: ignore[arg-type]
    return measure_latency(variants, baseline=baseline, clock=machine.clock, stopping=policy)


def test_three_percent_slower_variant_is_called_significant():
    machine = FakeMachine(seed=1)
    result = measure(
        machine,
        {"base": machine.variant("base", 0.010), "slow": machine.variant("slow", 0.0103)},
    )
    slow = result.variant("slow")
    assert result.stop_reason == "target"
    assert slow.significant is True
    assert slow.ratio_to_baseline is not None
    low, high = slow.ratio_to_baseline.ci95
    assert low <= 1.03 <= high
    assert low > 1.0
    assert slow.ratio_to_baseline.median == pytest.approx(1.03, abs=0.01)  # the target
    assert slow.median_ms == pytest.approx(10.3, rel=0.01)
    assert result.variant("base").ratio_to_baseline is None
    assert result.variant("base").significant is None
    assert slow.flags == ()


def test_a_a_comparison_is_not_significant():
    machine = FakeMachine(seed=2)
    result = measure(
        machine, {"base": machine.variant("base", 0.010), "same": machine.variant("same", 0.010)}
    )
    same = result.variant("same")
    assert same.significant is False
    assert same.ratio_to_baseline is not None
    low, high = same.ratio_to_baseline.ci95
    assert low <= 1.0 <= high
    assert high - low <= 0.02  # stopped on the +/-1% target


def test_adaptive_stopping_keeps_a_a_coverage_at_95_percent():
    # Stopping at the first narrow interval would select too-narrow ones (93-94% in
    # simulation with order-statistic intervals alone); the ratio interval guards that.
    covered = 0
    runs = 60
    for seed in range(runs):
        machine = FakeMachine(seed=100 + seed)
        result = measure(
            machine,
            {
                "base": machine.variant("base", 0.010, jitter=0.015),
                "same": machine.variant("same", 0.010, jitter=0.015),
            },
        )
        ratio = result.variant("same").ratio_to_baseline
        assert ratio is not None and result.stop_reason == "target"
        covered += ratio.ci95[0] <= 1.0 <= ratio.ci95[1]
    assert covered / runs >= 0.95


def test_stop_on_target_leaves_every_interval_within_it():
    machine = FakeMachine(seed=3)
    result = measure(
        machine,
        {
            name: machine.variant(name, 0.010 * factor)
            for name, factor in [("base", 1.0), ("a", 1.05), ("b", 0.93)]
        },
        target_ci=0.005,
    )
    assert result.stop_reason == "target"
    assert result.elapsed_s < result.budget_s
    for name in ("a", "b"):
        ratio = result.variant(name).ratio_to_baseline
        assert ratio is not None
        assert (ratio.ci95[1] - ratio.ci95[0]) / 2 / ratio.median <= 0.005
    assert result.variant("b").ratio_to_baseline.median == pytest.approx(0.93, abs=0.005)


def test_budget_exhaustion_stops_with_reason_budget():
    machine = FakeMachine(seed=4)
    result = measure(
        machine,
        {
            "base": machine.variant("base", 0.010, jitter=0.3),
            "other": machine.variant("other", 0.010, jitter=0.3),
        },
        budget_seconds=2.0,
    )
    assert result.stop_reason == "budget"
    # Stops at the first round that ends past the budget: within one round of it.
    assert 2.0 <= result.elapsed_s < 2.0 + 0.2
    assert "wide_interval" in result.variant("other").flag_names()


def test_minimum_rounds_are_taken_even_past_the_budget():
    machine = FakeMachine(seed=5)
    result = measure(
        machine,
        {"base": machine.variant("base", 0.010), "other": machine.variant("other", 0.011)},
        budget_seconds=0.001,
        minimum_rounds=12,
    )
    assert result.rounds == 12
    assert result.stop_reason in ("budget", "target")


def test_maximum_rounds_stops_with_reason_max_rounds():
    machine = FakeMachine(seed=6)
    result = measure(
        machine,
        {"base": machine.variant("base", 0.010, jitter=0.3), "x": machine.variant("x", 0.010)},
        minimum_rounds=10,
        maximum_rounds=25,
    )
    assert (result.stop_reason, result.rounds) == ("max_rounds", 25)


def test_high_jitter_raises_the_iqr_flag():
    machine = FakeMachine(seed=7)
    result = measure(
        machine,
        {
            "base": machine.variant("base", 0.010, jitter=0.25),
            "calm": machine.variant("calm", 0.010, jitter=0.01),
        },
        budget_seconds=3.0,
    )
    base = result.variant("base")
    assert "high_iqr" in base.flag_names()
    assert base.iqr_ms / base.median_ms > 0.10
    assert "high_iqr" not in result.variant("calm").flag_names()


def test_a_drifting_machine_raises_the_drift_flag_but_pairing_keeps_the_ratio():
    machine = FakeMachine(seed=8, drift_per_second=0.1)  # +10% per simulated second
    result = measure(
        machine,
        {"base": machine.variant("base", 0.010), "slow": machine.variant("slow", 0.0103)},
        budget_seconds=3.0,
        target_ci=0.001,  # keeps it running through the drift
    )
    for variant in result.variants:
        assert "drift" in variant.flag_names()
    slow = result.variant("slow")
    assert slow.ratio_to_baseline is not None
    low, high = slow.ratio_to_baseline.ci95
    assert low <= 1.03 <= high
    assert "ratio_drift" not in slow.flag_names()


def test_a_steady_machine_raises_no_drift_flag():
    machine = FakeMachine(seed=9)
    result = measure(
        machine,
        {"base": machine.variant("base", 0.010), "other": machine.variant("other", 0.010)},
        budget_seconds=3.0,
        target_ci=0.001,
    )
    for variant in result.variants:
        assert "drift" not in variant.flag_names()


def test_every_round_runs_every_variant_once_in_varying_order():
    machine = FakeMachine(seed=10)
    names = ["base", "a", "b"]
    result = measure(
        machine,
        {name: machine.variant(name, 0.010) for name in names},
        maximum_rounds=40,
        minimum_rounds=40,
    )
    # Each visit is an untimed call and the timed one, of the same variant.
    rounds_calls = machine.calls[-6 * result.rounds :]
    assert rounds_calls[0::2] == rounds_calls[1::2]
    timed = rounds_calls[1::2]
    orders = {tuple(timed[index : index + 3]) for index in range(0, len(timed), 3)}
    assert all(sorted(order) == sorted(names) for order in orders)
    assert len(orders) > 3  # not one fixed order


def test_each_timing_follows_a_call_of_its_own_variant_so_caches_hold_it():
    # A run after another variant's costs 15% more (its weights come from memory again), as
    # ONNX Runtime's V2 did on the Xeon of 2026-12-07 after an LLC-sized sweep. The medians
    # are the warm costs, and a ratio does not take the two variants' different excesses.
    machine = FakeMachine(seed=12)
    variants = {
        "base": machine.variant("base", 0.010, jitter=0.001, evicted_excess=0.15),
        "other": machine.variant("other", 0.008, jitter=0.001, evicted_excess=0.30),
    }
    result = measure(machine, variants, maximum_rounds=30, minimum_rounds=30)
    assert result.cache_state == "warm"
    assert result.variant("base").median_ms == pytest.approx(10.0, rel=0.005)
    assert result.variant("other").median_ms == pytest.approx(8.0, rel=0.005)
    ratio = result.variant("other").ratio_to_baseline
    assert ratio is not None and ratio.median == pytest.approx(0.8, rel=0.005)


def test_settling_time_before_each_timing_recovers_the_settled_costs():
    # A run after another variant's costs 30% (base) or 60% (other, weight-heavy) more, and
    # a fifth less of that excess with each run in a row: ONNX Runtime's 96 px V2 on the Xeon
    # of 2026-12-07 took 3.3, 3.2, 2.6, 2.2 ... 2.0 ms. One untimed call leaves the timing at
    # 80% of the excess, and the ratio 19% off; 0.2 s of calls leaves well under 1%.
    def run(settle_s: float) -> LatencyResult:
        machine = FakeMachine(seed=13)
        variants = {
            "base": machine.variant("base", 0.010, jitter=0.001, unsettled_excess=0.3),
            "other": machine.variant("other", 0.005, jitter=0.001, unsettled_excess=0.6),
        }
        policy = StoppingPolicy(budget_seconds=1e6, minimum_rounds=12, maximum_rounds=12)
        return measure_latency(
            variants, baseline="base", clock=machine.clock, stopping=policy, settle_s=settle_s
        )

    warm = run(0.0)
    assert (warm.cache_state, warm.settle_s) == ("warm", 0.0)
    assert warm.variant("base").median_ms == pytest.approx(10.0 * (1 + 0.3 * 0.8), rel=0.005)
    assert warm.variant("other").median_ms == pytest.approx(5.0 * (1 + 0.6 * 0.8), rel=0.005)
    settled = run(0.2)
    assert (settled.cache_state, settled.settle_s) == ("settled", 0.2)
    # base: about 20 runs of 10 ms in a row before its timing, 0.3 x 0.8^20 = 0.3% left.
    assert settled.variant("base").median_ms == pytest.approx(10.0, rel=0.005)
    assert settled.variant("other").median_ms == pytest.approx(5.0, rel=0.002)
    ratios = [result.variant("other").ratio_to_baseline for result in (warm, settled)]
    assert ratios[0] is not None and ratios[0].median == pytest.approx(0.597, rel=0.005)
    assert ratios[1] is not None and ratios[1].median == pytest.approx(0.5, rel=0.005)


def test_settling_stops_after_thirty_calls_where_those_end_first():
    # A 0.4 ms model (blocks of 3 calls, 1 ms) would make 500 untimed calls in 0.2 s; the
    # first call and 10 blocks of 3 (31 calls) are as many passes as a V2 needs.
    machine = FakeMachine(seed=14)
    variants = {name: machine.variant(name, 0.0004, jitter=0.001) for name in ("base", "b")}
    policy = StoppingPolicy(budget_seconds=1e6, minimum_rounds=8, maximum_rounds=8)
    result = measure_latency(
        variants, baseline="base", clock=machine.clock, stopping=policy, settle_s=0.2
    )
    assert SETTLE_CALLS == 30
    for name in variants:
        timed_phase = machine.calls.count(name) - result.variant(name).warmup_runs
        assert timed_phase == 8 * (1 + 10 * 3 + 3)  # per round: settling, then the timed block


@pytest.mark.parametrize("settle_s", [-0.1, float("nan"), float("inf")])
def test_a_settling_time_that_is_no_duration_is_refused(settle_s: float) -> None:
    machine = FakeMachine()
    with pytest.raises(MeasurementError, match="settle_s must be a non-negative number"):
        measure_latency(
            {"base": machine.variant("base", 0.01)},
            baseline="base",
            clock=machine.clock,
            settle_s=settle_s,
        )


def test_warm_up_runs_until_timings_settle_and_keeps_cold_runs_out():
    machine = FakeMachine(seed=11)
    result = measure(
        machine,
        {
            "base": machine.variant("base", 0.010, cold_excess=2.0),
            "other": machine.variant("other", 0.010),
        },
    )
    base = result.variant("base")
    assert base.warmup_runs > 15  # the excess is still 2.7% at run 15
    # The first rounds are no slower than the rest: warm-up absorbed the cold runs.
    assert np.median(base.samples_ms[:10]) == pytest.approx(base.median_ms, rel=0.02)
    assert "warmup_unstable" not in base.flag_names()


def test_warm_up_that_never_settles_is_flagged():
    machine = FakeMachine(seed=12)
    result = measure_latency(
        {
            "base": machine.variant("base", 0.010, jitter=0.3),
            "other": machine.variant("other", 0.010),
        },
        baseline="base",
        clock=machine.clock,
        stopping=StoppingPolicy(budget_seconds=1.0, minimum_rounds=10),
        warmup=WarmupPolicy(window=5, tolerance=0.001, maximum_blocks=10),
    )
    assert "warmup_unstable" in result.variant("base").flag_names()


def test_a_fast_variant_is_timed_in_blocks_long_enough_for_the_clock():
    machine = FakeMachine(seed=13)
    result = measure(
        machine,
        {"base": machine.variant("base", 20e-6), "other": machine.variant("other", 0.010)},
        maximum_rounds=30,
        minimum_rounds=30,
    )
    base = result.variant("base")
    assert base.iterations_per_round == pytest.approx(50, abs=3)  # 1 ms / 20 us
    assert base.median_ms == pytest.approx(0.020, rel=0.02)  # per iteration, not per block
    assert result.variant("other").iterations_per_round == 1


def test_instances_of_a_variant_are_cycled_through():
    machine = FakeMachine(seed=19)
    result = measure(
        machine,
        {
            "base": machine.variant("base", 0.010, jitter=0.0),
            # Two builds of one model, one 4% slower (say, where its weights landed).
            "pair": [
                machine.variant("pair", 0.010, jitter=0.0),
                machine.variant("pair", 0.0104, jitter=0.0),
            ],
        },
        minimum_rounds=20,
        maximum_rounds=20,
    )
    pair = result.variant("pair")
    assert pair.instances == 2 and result.variant("base").instances == 1
    assert pair.samples_ms[:4] == pytest.approx((10.0, 10.4, 10.0, 10.4))
    assert pair.warmup_runs == 2 * result.variant("base").warmup_runs


def test_a_variant_must_be_runnables():
    with pytest.raises(MeasurementError, match="variant 'x': expected a runnable"):
        measure_latency({"x": []}, baseline="x")
    with pytest.raises(MeasurementError, match="seed must be a non-negative integer"):
        measure_latency({"x": lambda: None}, baseline="x", seed=-1)


def test_on_round_sees_each_round_as_it_is_taken():
    machine = FakeMachine(seed=14)
    journal: list[tuple[int, dict[str, float]]] = []
    result = measure_latency(
        {"base": machine.variant("base", 0.010), "other": machine.variant("other", 0.012)},
        baseline="base",
        clock=machine.clock,
        on_round=lambda index, seconds, _: journal.append((index, dict(seconds))),
    )
    assert [index for index, _ in journal] == list(range(result.rounds))
    assert [seconds["other"] * 1e3 for _, seconds in journal] == pytest.approx(
        list(result.variant("other").samples_ms)
    )


def test_prior_rounds_continue_an_interrupted_measurement():
    machine = FakeMachine(seed=15)
    variants = {"base": machine.variant("base", 0.010), "slow": machine.variant("slow", 0.0103)}
    journal: list[dict[str, float]] = []

    def interrupt_after_30(index: int, seconds: dict[str, float], _: object) -> None:
        journal.append(seconds)
        if index == 29:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        measure_latency(variants, baseline="base", clock=machine.clock, on_round=interrupt_after_30)
    assert len(journal) == 30

    indices: list[int] = []
    result = measure_latency(
        variants,
        baseline="base",
        clock=machine.clock,
        prior_rounds=journal,
        on_round=lambda index, seconds, _: indices.append(index),
    )
    assert indices[0] == 30  # numbering continues the journal
    assert result.rounds == 30 + len(indices)
    slow = result.variant("slow")
    assert [value / 1e3 for value in slow.samples_ms[:30]] == pytest.approx(
        [r["slow"] for r in journal]
    )
    assert slow.significant is True


def test_prior_rounds_must_match_the_variants():
    machine = FakeMachine()
    with pytest.raises(MeasurementError, match="prior round 1"):
        measure_latency(
            {"base": machine.variant("base", 0.01), "x": machine.variant("x", 0.01)},
            baseline="base",
            clock=machine.clock,
            prior_rounds=[{"base": 0.01, "x": 0.01}, {"base": 0.01, "y": 0.01}],
        )


def test_an_unknown_baseline_is_a_one_line_error():
    machine = FakeMachine()
    with pytest.raises(MeasurementError, match="baseline 'nope' is not one of the variants"):
        measure_latency({"base": machine.variant("base", 0.01)}, baseline="nope")


def test_a_lone_variant_stops_on_its_latency_interval():
    machine = FakeMachine(seed=16)
    result = measure(machine, {"base": machine.variant("base", 0.010)})
    base = result.variant("base")
    assert result.stop_reason == "target"
    assert (base.ci95_ms[1] - base.ci95_ms[0]) / 2 / base.median_ms <= 0.01
    assert base.ratio_to_baseline is None


def test_result_json_has_the_documented_keys():
    machine = FakeMachine(seed=17)
    result = measure(
        machine, {"base": machine.variant("base", 0.01), "x": machine.variant("x", 0.011)}
    )
    data = json.loads(to_json(result))
    assert data["schema"] == "ablate.latency/1"
    for key in ("stop_reason", "rounds", "elapsed_s", "threads", "backend", "device", "batch"):
        assert key in data
    assert {
        "cpu_model",
        "logical_cores",
        "torch_version",
        "operating_system",
        "flush_denormal",
        "channels_last",
        "threads",
        "load_average",
    } <= set(data["environment"])
    variant = data["variants"][1]
    assert {
        "median_ms",
        "instances",
        "iqr_ms",
        "ci95_ms",
        "rounds",
        "ratio_to_baseline",
        "significant",
        "flags",
    } <= set(variant)
    assert set(variant["ratio_to_baseline"]) == {"median", "ci95"}
    assert len(variant["ci95_ms"]) == 2
    assert "samples_ms" not in variant
    assert "samples_ms" in json.loads(to_json(result, include_samples=True))["variants"][0]


def test_a_result_is_reproducible_from_the_same_seed():
    results = []
    for _ in range(2):
        machine = FakeMachine(seed=18)
        results.append(
            measure(
                machine, {"base": machine.variant("base", 0.01), "x": machine.variant("x", 0.011)}
            )
        )
    # The environment records the load average of the moment, which is not the engine's to fix.
    first, second = (dataclasses.replace(r, environment=results[0].environment) for r in results)
    assert first == second


# -- a precision target other than each ratio (an attribution's Shapley values) ---------


def test_a_judged_target_decides_when_to_stop_and_is_recorded() -> None:
    machine = FakeMachine(seed=21)
    seen: list[dict[str, int]] = []

    def widths(samples: Mapping[str, Sequence[float]]) -> dict[str, float]:
        seen.append({name: len(values) for name, values in samples.items()})
        return {"shapley:x": 0.4 / len(samples["base"])}  # <= 0.01 from 40 rounds on

    judged = PrecisionTarget("attribution", widths)
    result = measure(
        machine,
        # 30% jitter: the ratio's interval is far wider than +/-1%, but it is not what is
        # judged, so it is not flagged as too wide (the same rounds judged on ratios are).
        {
            "base": machine.variant("base", 0.010, jitter=0.3),
            "x": machine.variant("x", 0.012, jitter=0.3),
        },
        target_ci=0.01,
        judged=judged,
    )
    # Checked at 20 rounds, then every tenth of the rounds taken: 20, 22, 24, 26, 28, 30, 33,
    # 36, 39, 42; the first at 40 or more is 42.
    assert [check["base"] for check in seen] == [20, 22, 24, 26, 28, 30, 33, 36, 39, 42]
    assert all(check == {"base": check["base"], "x": check["base"]} for check in seen)
    assert (result.stop_reason, result.rounds, result.stop_on) == ("target", 42, "attribution")
    assert "wide_interval" not in result.variant("x").flag_names()
    ratio = result.variant("x").ratio_to_baseline
    assert ratio is not None and (ratio.ci95[1] - ratio.ci95[0]) / 2 / ratio.median > 0.01
    assert json.loads(to_json(result))["stop_on"] == "attribution"


def test_a_judged_target_never_reached_stops_on_the_budget() -> None:
    machine = FakeMachine(seed=22)
    result = measure(
        machine,
        {"base": machine.variant("base", 0.010), "x": machine.variant("x", 0.011)},
        budget_seconds=1.0,
        judged=PrecisionTarget("attribution", lambda samples: {"never": 1.0}),
    )
    assert (result.stop_reason, result.stop_on) == ("budget", "attribution")


def test_by_default_each_ratio_is_judged() -> None:
    machine = FakeMachine(seed=23)
    result = measure(
        machine, {"base": machine.variant("base", 0.01), "x": machine.variant("x", 0.011)}
    )
    assert result.stop_on == "ratios"
    assert json.loads(to_json(result))["stop_on"] == "ratios"


@pytest.mark.parametrize("judged", [False, True])
def test_each_stopping_check_hands_its_widths_to_on_check(judged: bool) -> None:
    """What a progress display shows: the widths the rule judged, at each check, no more."""
    machine = FakeMachine(seed=25)
    samples: dict[str, list[float]] = {"base": [], "x": []}
    checks: list[tuple[int, dict[str, float]]] = []
    expected: list[dict[str, float]] = []

    def on_round(index: int, seconds: Mapping[str, float], _: object) -> None:
        for name, value in seconds.items():
            samples[name].append(value)

    def on_check(widths: Mapping[str, float]) -> None:
        checks.append((len(samples["x"]), dict(widths)))
        if not judged:  # each ratio's own interval, as the rule computes it
            expected.append(stopping_widths(samples, "base", seed=0))

    target = PrecisionTarget("attribution", lambda rounds: {"shapley:x": 0.5 / len(rounds["x"])})
    result = measure_latency(
        {"base": machine.variant("base", 0.010, jitter=0.3), "x": machine.variant("x", 0.012)},
        baseline="base",
        clock=machine.clock,
        stopping=StoppingPolicy(budget_seconds=30.0, judged=target if judged else None),
        on_round=on_round,
        on_check=on_check,
    )
    if judged:
        # 0.5 / rounds <= 0.01 from 50 rounds: checked at 20, 22, ... 46, 50, and stopped.
        assert [at for at, _ in checks] == [20, 22, 24, 26, 28, 30, 33, 36, 39, 42, 46, 50]
        assert all(widths == {"shapley:x": 0.5 / at} for at, widths in checks)
        assert (result.stop_reason, result.rounds) == ("target", 50)
    else:
        assert checks[0][0] == 20 and [widths for _, widths in checks] == expected
        assert all(set(widths) == {"x"} for _, widths in checks)


def test_stopping_on_the_attribution_takes_fewer_rounds_and_keeps_its_intervals() -> None:
    # Two factors on a simulated machine: stopping when the Shapley values are precise to
    # +/-1 point of `from` ends sooner than waiting for each ratio to be within +/-1%, and
    # the attribution then reported from those rounds is within the target.
    factors = ("a", "b")
    plan = plan_attribution(factors, path_order=factors)
    costs = {0: 0.010, 1: 0.0085, 2: 0.0104, 3: 0.0090}
    names = {mask: plan.space.variant_name(mask) for mask in costs}

    def run(judged: PrecisionTarget | None) -> tuple[LatencyResult, list[list[float]]]:
        machine = FakeMachine(seed=24)
        rounds: list[list[float]] = []
        variants = {
            names[mask]: machine.variant(names[mask], cost, jitter=0.05)
            for mask, cost in costs.items()
        }
        result = measure_latency(
            variants,
            baseline=names[0],
            clock=machine.clock,
            stopping=StoppingPolicy(budget_seconds=600.0, judged=judged),
            on_round=lambda index, seconds, _: rounds.append([seconds[names[m]] for m in costs]),
        )
        return result, rounds

    def widths(samples: Mapping[str, Sequence[float]]) -> dict[str, float]:
        columns = np.column_stack([samples[names[mask]] for mask in costs])
        return latency_half_widths(plan, columns, list(costs))

    by_ratios, _ = run(None)
    by_attribution, rounds = run(PrecisionTarget("attribution", widths))
    assert by_ratios.stop_reason == by_attribution.stop_reason == "target"
    assert by_attribution.rounds < by_ratios.rounds
    reported = attribute(factors, latency_rounds=rounds, path_order=factors)
    for effect in (*reported.shapley, reported.total):
        assert effect.latency is not None
        low, high = effect.latency.interval_percent
        assert (high - low) / 2 <= 1.0  # points of `from`


def test_a_variant_timed_several_times_a_round_keeps_the_median_of_its_timings() -> None:
    machine = FakeMachine(seed=26)
    rounds: list[tuple[dict[str, float], dict[str, tuple[float, ...]]]] = []
    result = measure_latency(
        {"base": machine.variant("base", 0.010, jitter=0.2), "x": machine.variant("x", 0.012)},
        baseline="base",
        clock=machine.clock,
        stopping=StoppingPolicy(minimum_rounds=25, maximum_rounds=25),
        on_round=lambda index, seconds, timings: rounds.append((dict(seconds), dict(timings))),
        timings_per_round={"base": 5},
    )
    assert (result.variant("base").timings_per_round, result.variant("x").timings_per_round) == (
        5,
        1,
    )
    # Only the repeated variant's timings are handed over, five a round, median kept.
    assert all(set(timings) == {"base"} and len(timings["base"]) == 5 for _, timings in rounds)
    assert [seconds["base"] for seconds, _ in rounds] == [
        sorted(timings["base"])[2] for _, timings in rounds
    ]
    assert list(result.variant("base").samples_ms) == pytest.approx(
        [seconds["base"] * 1e3 for seconds, _ in rounds]
    )
    # Each round made 6 timings, the five of `base` at varying places among them, each after
    # an untimed call of the same variant.
    calls = machine.calls[-12 * 25 :]
    assert calls[0::2] == calls[1::2]
    timed = calls[1::2]
    orders = [tuple(timed[start : start + 6]) for start in range(0, len(timed), 6)]
    assert all(sorted(order) == ["base"] * 5 + ["x"] for order in orders)
    assert len({order.index("x") for order in orders}) == 6


def test_repeated_timings_cycle_through_the_instances_within_and_across_rounds() -> None:
    machine = FakeMachine(seed=27)
    timed: list[tuple[float, ...]] = []
    measure_latency(
        {
            # Two builds, one 4% slower: timing k of round r uses build (5r + k) % 2.
            "base": [
                machine.variant("base", 0.010, jitter=0.0),
                machine.variant("base", 0.0104, jitter=0.0),
            ],
            "x": machine.variant("x", 0.012, jitter=0.0),
        },
        baseline="base",
        clock=machine.clock,
        stopping=StoppingPolicy(minimum_rounds=6, maximum_rounds=6),
        on_round=lambda index, seconds, timings: timed.append(timings["base"]),
        timings_per_round={"base": 5},
    )
    milliseconds = [tuple(round(value * 1e3, 6) for value in round_) for round_ in timed]
    assert milliseconds[:2] == [(10.0, 10.4, 10.0, 10.4, 10.0), (10.4, 10.0, 10.4, 10.0, 10.4)]


def _ratio_to_a_base_timed(
    timings: int, *, machine_seed: int, jitter: float, rounds: int, seed: int = 0
) -> RatioEstimate:
    """`x` (cost 10 ms, `jitter`) against `base` (10 ms, jitter 0.15) timed `timings` times a
    round, over `rounds` rounds of a fake machine."""
    machine = FakeMachine(seed=machine_seed)
    result = measure_latency(
        {
            "base": machine.variant("base", 0.010, jitter=0.15),
            "x": machine.variant("x", 0.010, jitter=jitter),
        },
        baseline="base",
        clock=machine.clock,
        stopping=StoppingPolicy(minimum_rounds=rounds, maximum_rounds=rounds),
        timings_per_round={"base": timings},
        seed=seed,
    )
    ratio = result.variant("x").ratio_to_baseline
    assert ratio is not None
    return ratio


def test_a_median_of_five_timings_narrows_the_ratio_interval() -> None:
    def width(timings: int) -> float:
        ratio = _ratio_to_a_base_timed(timings, machine_seed=28, jitter=0.01, rounds=60)
        return (ratio.ci95[1] - ratio.ci95[0]) / ratio.median

    # The ratio's noise is nearly all the baseline's: a median of 5 normal draws has 0.29 of
    # the variance of one, so the interval should shrink to about 0.54 of its width.
    assert width(5) < 0.7 * width(1)


@pytest.mark.parametrize(
    ("timings", "message"),
    [
        ({"base": 2}, "variant 'base': timings per round must be a positive odd integer"),
        ({"base": 0}, "must be a positive odd integer.* \\(got 0\\)"),
        ({"base": True}, "must be a positive odd integer.* \\(got True\\)"),
        ({"nope": 3}, "timings per round name 'nope', not variants; valid: base, x"),
    ],
)
def test_timings_per_round_must_be_odd_counts_of_known_variants(
    timings: dict[str, int], message: str
) -> None:
    machine = FakeMachine(seed=29)
    with pytest.raises(MeasurementError, match=message):
        measure_latency(
            {"base": machine.variant("base", 0.01), "x": machine.variant("x", 0.01)},
            baseline="base",
            clock=machine.clock,
            timings_per_round=timings,
        )
    assert machine.calls == []  # refused before anything ran


def test_five_timings_a_round_against_an_identical_variant_timed_once_are_not_biased() -> None:
    # A/A with skewed (lognormal) noise: the median of 5 draws has the same median as one
    # draw, so its ratio to an identical variant timed once is centred on 1 and its intervals
    # cover 1 as often as a plain A/A's.
    covered, centres = 0, []
    for seed in range(40):
        ratio = _ratio_to_a_base_timed(
            5, machine_seed=100 + seed, jitter=0.15, rounds=40, seed=seed
        )
        covered += ratio.ci95[0] <= 1.0 <= ratio.ci95[1]
        centres.append(ratio.median)
    assert covered >= 36  # 95% intervals: 38 expected, 36 or more with probability 0.86+
    # A mean of the 5 would centre it near 0.988 here (the lognormal's mean exceeds its median).
    assert abs(float(np.median(centres)) - 1) < 0.005
