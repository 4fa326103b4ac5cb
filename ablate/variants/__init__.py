"""Variants: a base architecture with factor settings applied."""
