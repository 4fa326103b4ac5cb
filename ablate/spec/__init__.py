"""Experiment specs: YAML in, a validated `ExperimentSpec` with every variant resolved out."""

from ablate.spec.load import load_spec, load_spec_text, with_overrides
from ablate.spec.model import (
    AttributionSpec,
    ExperimentSpec,
    InputSpec,
    MeasureSpec,
    VariantSpec,
)

__all__ = [
    "AttributionSpec",
    "ExperimentSpec",
    "InputSpec",
    "MeasureSpec",
    "VariantSpec",
    "load_spec",
    "load_spec_text",
    "with_overrides",
]
