"""The results.json schema, version 1: what `ablate run` writes and `compare`/`report` read.

Reading validates the whole file, so a damaged or hand-edited file gets one line naming the
file and the key path instead of a traceback deep inside a renderer.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ablate.errors import InputFileError

SCHEMA = "ablate.results/1"
RESULTS_NAME = "results.json"
Status = Literal["counting", "counted", "measured", "profiled", "complete"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Ratio(_Strict):
    median: float
    ci95: tuple[float, float]


class Flag(_Strict):
    name: str
    detail: str


class Latency(_Strict):
    """Per-iteration latency over the measurement rounds, in milliseconds."""

    median_ms: float
    iqr_ms: float
    ci95_ms: tuple[float, float]
    rounds: int
    ratio_to_baseline: Ratio | None  # None for the baseline itself
    significant: bool | None  # the ratio interval excludes 1.0
    flags: list[Flag]


class BlockCounts(_Strict):
    name: str  # "stem", "blocks.0", ..., "last_stage", "classifier"
    params: int
    macs: int
    flops: int
    bytes_unfused: int
    bytes_fused: int
    intensity_fused: float  # FLOPs per byte of the fused view
    time_share: float | None = None  # of the profiled forward time, in [0, 1]
    roofline_ms: float | None = None  # max(FLOPs / peak, fused bytes / bandwidth)
    bound: Literal["compute-bound", "memory-bound"] | None = None


class Variant(_Strict):
    name: str
    base: str
    factors: dict[str, Any]  # as given in the spec
    resolved_factors: dict[str, Any]  # every factor's effective value
    measured_as: str  # the variant whose identical architecture was built and timed
    params: int
    macs: int  # conv + linear multiply-accumulates (FlopCounterMode / 2)
    flops: int  # 2 x MACs + elementwise ops, BN unfolded
    flops_folded: int  # 2 x MACs + elementwise ops, BN folded into the convs
    madds_folded: int  # the papers' MAdds convention
    bytes_unfused: int  # every aten op reads inputs + weights, writes outputs (eager)
    bytes_fused: int  # conv + BN + activation as one kernel (inference engines)
    activation_peak_bytes: int
    by_kind: dict[str, dict[str, Any]]
    unknown_ops: dict[str, int]
    blocks: list[BlockCounts]
    latency: Latency | None = None
    op_time_shares: dict[str, dict[str, float]] | None = None  # by_block, by_operator


class Measurement(_Strict):
    stop_reason: Literal["target", "budget", "max_rounds"]
    rounds: int
    elapsed_s: float
    backend: str
    device: str
    batch: int
    threads: int
    target_ci: float
    budget_s: float
    seed: int
    roofline_calibration: dict[str, Any] | None = None


class Results(_Strict):
    schema_name: Literal["ablate.results/1"] = Field(alias="schema")
    status: Status
    ablate_version: str
    experiment: str
    description: str | None
    quick: bool
    created: str
    spec: dict[str, Any]
    environment: dict[str, Any]
    baseline: str
    measurement: Measurement | None = None
    variants: list[Variant]
    attribution: dict[str, Any] | None = None

    def variant(self, name: str) -> Variant:
        for variant in self.variants:
            if variant.name == name:
                return variant
        raise InputFileError(
            "results.json",
            "no such variant",
            key_path=name,
            choices=[v.name for v in self.variants],
        )


def _key_path(location: tuple[int | str, ...]) -> str:
    text = ""
    for part in location:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text


def load_results(path: Path) -> Results:
    if path.is_dir():
        path = path / RESULTS_NAME
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InputFileError(path, "no such file") from None
    except (OSError, UnicodeDecodeError) as error:
        raise InputFileError(path, f"cannot read ({error.__class__.__name__})") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as error:
        raise InputFileError(path, f"not valid JSON ({error.msg})", line=error.lineno) from None
    if not isinstance(data, dict):
        raise InputFileError(path, "expected a JSON object at the top level")
    if data.get("schema") != SCHEMA:
        raise InputFileError(
            path, f"unsupported schema {data.get('schema')!r}", key_path="schema", choices=[SCHEMA]
        )
    try:
        return Results.model_validate(data)
    except ValidationError as error:
        first = error.errors()[0]
        raise InputFileError(
            path,
            f"{first['msg']} (got {first.get('input')!r:.60})",
            key_path=_key_path(first["loc"]),
        ) from None
