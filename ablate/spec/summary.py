"""What `ablate validate` prints: a one-line verdict and one line per variant."""

from __future__ import annotations

from ablate.spec.expand import render_value
from ablate.spec.model import ExperimentSpec, VariantSpec


def _count(number: int, noun: str) -> str:
    return f"{number} {noun}" if number == 1 else f"{number} {noun}s"


def summary_line(spec: ExperimentSpec) -> str:
    """``SPEC: OK, N variants (M distinct architectures), baseline X``."""
    variants = _count(len(spec.variants), "variant")
    architectures = _count(len(spec.architecture_groups()), "distinct architecture")
    return f"{spec.source_label}: OK, {variants} ({architectures}), baseline {spec.baseline}"


def _settings(variant: VariantSpec, spec: ExperimentSpec) -> str:
    # Settings that change nothing are left out: the resolution default (on every variant)
    # and a factor set to the base's own name (as attribution variants have on the `from` side).
    shown = {
        factor: value
        for factor, value in variant.factors.items()
        if not (factor == "resolution" and value == spec.input.resolution) and value != variant.base
    }
    settings = ", ".join(f"{key}={render_value(value)}" for key, value in shown.items())
    return settings or "as published"


def variant_lines(spec: ExperimentSpec) -> list[str]:
    """Name, base, settings; the baseline and repeated architectures marked."""
    measured_as = {
        name: names[0] for names in spec.architecture_groups().values() for name in names
    }
    name_width = max(len(variant.name) for variant in spec.variants)
    base_width = max(len(variant.base) for variant in spec.variants)
    lines = []
    for variant in spec.variants:
        notes = []
        if variant.name == spec.baseline:
            notes.append("baseline")
        if measured_as[variant.name] != variant.name:
            notes.append(f"same architecture as {measured_as[variant.name]}")
        note = f"  ({'; '.join(notes)})" if notes else ""
        lines.append(
            f"  {variant.name:<{name_width}}  {variant.base:<{base_width}}  "
            f"{_settings(variant, spec)}{note}"
        )
    return lines
