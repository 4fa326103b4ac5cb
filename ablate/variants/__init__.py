"""Variants: a base architecture with factor settings applied."""

from ablate.variants.factors import parse_set_options

__all__ = ["parse_set_options"]
