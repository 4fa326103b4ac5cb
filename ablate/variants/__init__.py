"""Variants: a base architecture with factor settings applied."""

from ablate.variants.set_options import parse_set_options

__all__ = ["parse_set_options"]
