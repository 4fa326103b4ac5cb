"""The structure the code relies on: one metric table, one vocabulary each, one-way imports."""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

import pytest
import torch

from ablate.architecture.description import ACTIVATIONS, LAST_STAGES, SE_GATES
from ablate.architecture.layers import activation_module, gate_module
from ablate.errors import MissingDependencyError, UnknownNameError
from ablate.measurement.backends import BACKENDS, Backend, backend_fuses
from ablate.metrics import ATTRIBUTABLE, COMPARED, COUNTED, METRICS, PER_BLOCK, STORED
from ablate.report.write import CSV_COLUMNS
from ablate.runs.schema import BlockCounts, Variant
from ablate.variants.factors import FACTORS

PACKAGE = Path(__file__).parent.parent / "ablate"
# The pipeline, upstream first: a package may import only packages before it.
LAYERS = (
    "architecture",
    "variants",
    "counting",
    "measurement",
    "analysis",
    "spec",
    "runs",
    "devices",  # fits and predicts from counts and runs; services and commands use it
    "services",
    "report",
    "commands",
)


def _package_imports() -> dict[str, set[str]]:
    edges: dict[str, set[str]] = defaultdict(set)
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE).parts
        if len(parts) == 1:
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("ablate."):
                target = node.module.split(".")[1]  # type: ignore[union-attr]
                if target != parts[0] and target in LAYERS:
                    edges[parts[0]].add(target)
    return edges


def test_packages_import_only_upstream_packages() -> None:
    for package, targets in _package_imports().items():
        for target in targets:
            assert LAYERS.index(target) < LAYERS.index(package), f"{package} imports {target}"


def test_every_stored_metric_is_a_field_of_the_results_model() -> None:
    assert {metric.key for metric in STORED} <= set(Variant.model_fields)
    assert {metric.key for metric in PER_BLOCK} <= set(BlockCounts.model_fields)
    assert len({metric.key for metric in METRICS}) == len(METRICS)


def test_metric_lists_are_views_of_the_one_table() -> None:
    assert [m.key for m in COMPARED] == [
        "params",
        "macs",
        "flops",
        "bytes_unfused",
        "bytes_fused",
        "activation_peak_bytes",
    ]
    assert [m.key for m in ATTRIBUTABLE] == [
        "params",
        "macs",
        "flops",
        "flops_folded",
        "bytes_unfused",
        "bytes_fused",
    ]
    assert "params" not in {m.key for m in COUNTED}  # from the weights, not the counting pass
    # Every compared metric is a CSV column (bytes say so) with its change column.
    assert "bytes_fused_bytes" in CSV_COLUMNS and "bytes_fused_delta_pct" in CSV_COLUMNS
    assert "activation_peak_bytes" in CSV_COLUMNS
    for metric in COMPARED:
        assert any(column.startswith(metric.key) for column in CSV_COLUMNS)


def test_vocabularies_are_the_ones_the_factors_offer_and_the_layers_build() -> None:
    assert "relu | relu6 | hswish | swish" in FACTORS["activation"].values
    assert " | ".join(SE_GATES) == FACTORS["se_gate"].values
    assert FACTORS["last_stage"].values.startswith(" | ".join(LAST_STAGES))
    for name, module in ACTIVATIONS.items():
        built = activation_module(name)
        # In place wherever torch offers it, as the reference implementations build them.
        assert type(built).__name__ == module and getattr(built, "inplace", True)
    assert isinstance(gate_module("hsigmoid"), torch.nn.Hardsigmoid)
    with pytest.raises(UnknownNameError, match=f"valid: {', '.join(ACTIVATIONS)}"):
        activation_module("tanh")


def test_every_backend_says_whether_it_fuses() -> None:
    assert not BACKENDS.get("eager").fuses
    assert all(BACKENDS.get(name).fuses for name in ("torchscript", "onnxruntime", "compile"))
    assert backend_fuses("onnxruntime") and not backend_fuses("eager")
    assert not backend_fuses("a-backend-of-a-later-version")


def test_a_backend_missing_its_module_names_the_extra_to_install() -> None:
    absent = Backend("absent", BACKENDS.get("eager").factory, False, ("no_such_module_x",), "x")
    with pytest.raises(MissingDependencyError, match=r"pip install 'ablate\[x\]'"):
        absent.check_available()
