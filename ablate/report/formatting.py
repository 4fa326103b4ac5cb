"""Number formats shared by the console, Markdown and summary text: one convention each.

Counts in millions ("M" = 1e6), bytes in MB (1e6 bytes), latency in ms, changes as signed
percentages. Plain ASCII signs, so the same text reads the same in a terminal, a Markdown
table and a CSV-minded diff.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from ablate.analysis.record import Effect
from ablate.metrics import Metric
from ablate.report.changes import CountChange
from ablate.runs.schema import ATTRIBUTION

NOT_AVAILABLE = "n/a"
BYTES_PER_MB = 1e6
CONVENTIONS = (
    "MACs: conv+linear multiply-accumulates. FLOPs: 2 x MACs + elementwise ops (BN unfolded). "
    "Bytes: memory traffic per forward pass, unfused = every eager op reads its inputs and "
    "weights and writes its output; fused = conv+BN+activation as one kernel. "
    "M = 1e6; MB = 1e6 bytes. Latency: median per forward pass over the measurement rounds, "
    "with its 95% interval; a change is significant only when the 95% interval of the "
    "paired ratio to the baseline excludes 1.0."
)


def setting_text(value: Any) -> str:
    """A recorded setting (an environment entry, a spec value) as `str` shows it, but with the
    strings inside a list or mapping quoted and never re-escaped: they arrive escaped for the
    output already, and `repr` would double their backslashes."""
    if isinstance(value, str):
        return value
    return _item_text(value)


def environment_text(value: Any) -> str:
    """An environment entry: a list of words (the CPU's flags) space-joined, as /proc/cpuinfo
    writes them, since a quoted list of twenty flags is hard to scan; anything else as
    `setting_text` shows it."""
    if isinstance(value, list | tuple) and value and all(isinstance(v, str) for v in value):
        return " ".join(value)
    return setting_text(value)


def _item_text(value: Any) -> str:
    if isinstance(value, str):
        return f"'{value}'"
    if isinstance(value, Mapping):
        return "{" + ", ".join(f"{_item_text(k)}: {_item_text(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_item_text(item) for item in value) + "]"
    return str(value)


def table_millions(value: float) -> str:
    """Millions (or MB: 1e6 bytes) without a unit, for tables whose column names it."""
    return f"{value / 1e6:,.2f}"


def share_percent(share: float) -> str:
    """A share in [0, 1] as a bare percentage, for tables whose column says %."""
    return f"{100 * share:.1f}"


def intensity(flops_per_byte: float) -> str:
    return f"{flops_per_byte:.2f}"


def millions(value: float, digits: int = 1) -> str:
    return f"{value / 1e6:.{digits}f} M"


def signed_millions(value: float, digits: int = 1) -> str:
    return "0" if value == 0 else f"{value / 1e6:+.{digits}f} M"


def megabytes(value: float, digits: int = 1) -> str:
    return f"{value / BYTES_PER_MB:.{digits}f} MB"


def signed_megabytes(value: float, digits: int = 1) -> str:
    if value == 0:
        return "0"
    if abs(value) < 0.5 * 10 ** (6 - digits):
        return f"{value:+,.0f} B"  # too small for the MB digits: exact bytes
    return f"{value / BYTES_PER_MB:+.{digits}f} MB"


def percent(value: float | None, digits: int = 1) -> str:
    if value is None:
        return NOT_AVAILABLE
    if 0 < abs(value) < 10**-digits:
        # A real but tiny change must not read as "+0.0%", which looks like no change.
        if abs(value) < 1e-4:
            return "+<0.0001%" if value > 0 else "-<0.0001%"
        return f"{value:+.{digits}g}%"
    return f"{value:+.{digits}f}%"


def change_percent(change: CountChange) -> str:
    """`-28.0%`, `unchanged`, `new` when the baseline count is zero, `n/a` when missing."""
    if change.missing:
        return NOT_AVAILABLE
    if change.delta == 0:
        return "unchanged"
    return "new" if change.percent is None else percent(change.percent)


def milliseconds(value: float) -> str:
    return f"{value:.3f}" if abs(value) < 10 else f"{value:.2f}"


def signed_milliseconds(value: float) -> str:
    return f"{value:+.3f}" if abs(value) < 10 else f"{value:+.2f}"


def ms_interval(interval: tuple[float, float]) -> str:
    return f"[{milliseconds(interval[0])}, {milliseconds(interval[1])}]"


def signed_ms_interval(interval: tuple[float, float]) -> str:
    return f"[{signed_milliseconds(interval[0])}, {signed_milliseconds(interval[1])}]"


def percent_interval(interval: tuple[float, float] | None, digits: int = 1) -> str:
    if interval is None:
        return NOT_AVAILABLE
    return f"[{interval[0]:+.{digits}f}, {interval[1]:+.{digits}f}]%"


def target_phrase(target_ci: float, stop_on: str) -> str:
    """What the measurement's stopping target asked to be precise, e.g. for a report row."""
    if stop_on == ATTRIBUTION:
        return (
            f"+/-{target_ci * 100:.1f} points of the `from` model's latency, for every latency "
            "Shapley value and the total"
        )
    return f"+/-{target_ci:.1%} of the ratio"


def latency_text(median_ms: float, ci95_ms: tuple[float, float]) -> str:
    """`14.10 [14.05, 14.16] ms`-style median with its 95% interval."""
    return f"{milliseconds(median_ms)} {ms_interval(ci95_ms)}"


def count_change(change: CountChange, *, bytes_unit: bool = False, digits: int = 1) -> str:
    """The variant's value and its change: `216.6 M (-28.0%)`; the baseline shows no change."""
    if change.value is None:
        return NOT_AVAILABLE
    value = megabytes(change.value, digits) if bytes_unit else millions(change.value, digits)
    if change.delta is None or change.delta == 0:
        return value
    return f"{value} ({percent(change.percent)})"


def metric_value(metric: Metric, value: float | None) -> str:
    """A count in M or bytes in MB, at the metric's table precision; `n/a` when missing."""
    if value is None:
        return NOT_AVAILABLE
    if metric.unit == "bytes":
        return megabytes(value, metric.digits)
    return millions(value, metric.digits)


def metric_change(metric: Metric, change: CountChange) -> str:
    """`count_change` at the metric's unit and precision."""
    return count_change(change, bytes_unit=metric.unit == "bytes", digits=metric.digits)


def latency_verdict(effect: Effect) -> str | None:
    """What a factor does to latency, judged by its interval; None when not measured."""
    if effect.latency is None:
        return None
    return {-1: "speeds up", 0: "unclear", 1: "slows down"}[effect.latency.direction]


UNKNOWN_OPS_NOTE = "ops with no counting rule, counted as zero in every total"
MODULES_SHOWN = 3


def unknown_op_text(operator: str, calls: int, modules: Sequence[str]) -> str:
    """`aten.gelu.default x35 at stem.act, blocks.0.act, blocks.1.act and 32 more modules`."""
    text = f"{operator} x{calls}"
    if not modules:
        return f"{text} (modules not recorded)"
    shown = ", ".join(modules[:MODULES_SHOWN])
    more = len(modules) - MODULES_SHOWN
    return f"{text} at {shown}" + (f" and {more} more modules" if more > 0 else "")
