"""What timing an attribution's end models several times a round bought, read from one run.

An attribution run whose end models were timed k times a round keeps every timing in its
journal (`timings`). On the very same rounds this prints the intervals the stopping rule
judged (the total, and the widest Shapley value, in points of the `from` model's latency)
as measured, with the median of the k timings, and as they would have been had each end
model been timed once: with its first timing only, its second only, and so on. Nothing is
timed; the noise is the run's own.

    python benchmarks/end_model_timings.py runs/20261130-173206-why_v3_faster
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import numpy as np

from ablate.analysis.attribution import latency_half_widths
from ablate.runs.schema import load_results
from ablate.spec.load import load_spec

Pick = Callable[[Mapping[str, object], str], float]


def main() -> None:
    options = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    options.add_argument("run", type=Path, help="a run directory of an attribution run")
    directory = options.parse_args().run
    spec = load_spec(directory / "spec.yaml")
    if spec.attribution is None:
        raise SystemExit(f"{directory}: the run has no attribution")
    plan = spec.attribution.plan()
    timed_as = {variant.name: variant.measured_as for variant in load_results(directory).variants}
    masks = [int(mask) for mask in plan.space.masks()]
    columns = [timed_as[plan.space.variant_name(mask)] for mask in masks]
    lines = [json.loads(line) for line in (directory / "journal.jsonl").read_text().splitlines()]
    repeated = sorted({name for line in lines for name in line.get("timings", {})})
    if not repeated:
        raise SystemExit(f"{directory}: no variant was timed more than once a round")
    count = len(lines[0]["timings"][repeated[0]])

    def widths(pick: Pick) -> str:
        rounds = np.array([[pick(line, column) for column in columns] for line in lines])
        judged = latency_half_widths(plan, rounds, masks)
        total = max(width for key, width in judged.items() if key.startswith("total:"))
        shapley = max(width for key, width in judged.items() if key.startswith("shapley:"))
        return f"total +/-{total * 100:.2f} points, widest Shapley value +/-{shapley * 100:.2f}"

    print(f"{directory}: {len(lines)} rounds; timed {count} times a round: {', '.join(repeated)}")
    print(f"  as measured (median of {count}): {widths(_as_measured)}")
    for index in range(count):
        print(f"  timing {index + 1} alone:{' ' * 11}{widths(_one_timing(index))}")


def _as_measured(line: Mapping[str, object], column: str) -> float:
    return float(line["seconds"][column])  # type: ignore[index]


def _one_timing(index: int) -> Pick:
    def pick(line: Mapping[str, object], column: str) -> float:
        timings: Mapping[str, Sequence[float]] = line.get("timings", {})  # type: ignore[assignment]
        return float(timings[column][index]) if column in timings else _as_measured(line, column)

    return pick


if __name__ == "__main__":
    main()
