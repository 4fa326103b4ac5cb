"""The structure the code relies on: one metric table, one vocabulary each, one-way imports."""

from __future__ import annotations

import ast
import inspect
from collections import defaultdict
from collections.abc import Collection, Mapping
from pathlib import Path

import pytest
import torch

from ablate.architecture.description import ACTIVATIONS, LAST_STAGES, SE_GATES
from ablate.architecture.layers import activation_module, gate_module
from ablate.counting.records import PASS_TOTALS, RULES
from ablate.errors import MissingDependencyError, UnknownNameError
from ablate.measurement.backends import BACKENDS, Backend, backend_fuses, module_available
from ablate.metrics import (
    ATTRIBUTABLE,
    BY_KEY,
    COMPARED,
    COUNTED,
    METRICS,
    PER_BLOCK,
    PER_LAYER,
    STORED,
)
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
    "report",  # renders the results model; the services call it
    "cluster",  # exports on Ray: a pool with the export pool's interface; services join it
    "services",
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


def test_reports_read_the_results_model_only() -> None:
    # What a report needs of a backend (fuses, profiler, delegate) travels in the results.
    assert not _package_imports()["report"] & {"measurement", "services"}


def test_the_results_model_has_one_optional_field_per_stored_metric() -> None:
    variant_fields = [key for key in Variant.model_fields if key in BY_KEY]
    assert variant_fields == [metric.key for metric in STORED]  # in table order
    block_fields = [key for key in BlockCounts.model_fields if key in BY_KEY]
    assert block_fields == [metric.key for metric in PER_BLOCK]
    for key in variant_fields:
        assert not Variant.model_fields[key].is_required(), key
        assert Variant.model_fields[key].description == BY_KEY[key].convention
    assert len({metric.key for metric in METRICS}) == len(METRICS)


def test_every_counted_metric_has_one_counting_rule() -> None:
    assert set(RULES).isdisjoint(PASS_TOTALS)
    assert {m.key for m in COUNTED} == set(RULES) | set(PASS_TOTALS)
    # per-layer metrics are sums over records, so that layers and kinds can be totalled
    assert {m.key for m in PER_LAYER} <= set(RULES)
    assert [m.key for m in PER_LAYER] == ["macs", "flops", "bytes_unfused", "bytes_fused"]


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
    eager = BACKENDS.get("eager").factory
    absent = Backend("absent", eager, False, modules=("no_such_module_x",), extra="x")
    with pytest.raises(MissingDependencyError, match=r"pip install 'ablate\[x\]'"):
        absent.check_available()
    assert not module_available("no_such_module_x") and module_available("json")


def test_no_code_dispatches_on_a_backend_name() -> None:
    """A backend's name is a string only in the module that registers it: nothing else
    compares it, keys a table by it or lists it, and its delegate's name is its runtime's to
    say; what the code asks a backend comes from its descriptor. A table frozen for reading
    results written before they recorded a fact (`*_BEFORE_RECORDED`) is history, exempt."""
    names = set(BACKENDS.names())
    registering = {inspect.getsourcefile(BACKENDS.get(name).factory) for name in names}
    # A runtime added later registers from a module of its own, beside these.
    assert {Path(file).name for file in registering if file} >= {
        "host_backends.py",
        "executorch.py",
        "litert.py",
    }
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        if str(path.resolve()) in {str(Path(file).resolve()) for file in registering if file}:
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"))
        history = {
            id(inner)
            for node in ast.walk(tree)
            if isinstance(node, ast.Assign)
            and any(
                isinstance(target, ast.Name) and target.id.endswith("_BEFORE_RECORDED")
                for target in node.targets
            )
            for inner in ast.walk(node.value)
        }
        for node in ast.walk(tree):
            if id(node) in history:
                continue
            if isinstance(node, ast.Compare):
                candidates = [node.left, *node.comparators]
            elif isinstance(node, ast.Dict):
                candidates = [key for key in node.keys if key is not None]
            elif isinstance(node, ast.Tuple | ast.List | ast.Set):
                candidates = list(node.elts)
            elif isinstance(node, ast.MatchValue):
                candidates = [node.value]
            else:
                candidates = [node] if isinstance(node, ast.Constant) else []
                candidates = [c for c in candidates if c.value == "XNNPACK"]
            found += [
                f"{path.relative_to(PACKAGE.parent)}:{node.lineno}: {candidate.value!r}"
                for candidate in candidates
                if isinstance(candidate, ast.Constant)
                and (candidate.value in names or candidate.value == "XNNPACK")
            ]
    assert found == []


# -- the module graph: every import of every ablate module, wherever it is in the file


def _module_files() -> dict[str, Path]:
    """Module name -> file, for every module of the ablate package."""
    files = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        files[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return files


def _module_imports(source: str, name: str, modules: Collection[str], *, package: bool) -> set[str]:
    """The ablate modules that module `name` imports: at the top, in functions, under
    TYPE_CHECKING; `from ablate.x import y` imports module `ablate.x.y` where there is one,
    else `ablate.x`; relative imports resolved against `name`."""
    targets = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            targets |= {alias.name for alias in node.names if alias.name in modules}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = name.split(".")[: len(name.split(".")) - node.level + package]
                base = ".".join([*parent, *([node.module] if node.module else [])])
            for alias in node.names:
                if f"{base}.{alias.name}" in modules:
                    targets.add(f"{base}.{alias.name}")
                elif base in modules:
                    targets.add(base)
    return targets - {name}


def _import_graph() -> dict[str, set[str]]:
    files = _module_files()
    return {
        name: _module_imports(
            path.read_text(encoding="utf-8"), name, files, package=path.name == "__init__.py"
        )
        for name, path in files.items()
    }


def _cycle(graph: Mapping[str, Collection[str]]) -> list[str] | None:
    """One import cycle of `graph` as the path that closes it ([a, b, a]); None if none."""
    done: set[str] = set()
    path: list[str] = []

    def visit(module: str) -> list[str] | None:
        if module in path:
            return [*path[path.index(module) :], module]
        if module in done:
            return None
        path.append(module)
        for target in sorted(graph.get(module, ())):
            if found := visit(target):
                return found
        path.pop()
        done.add(module)
        return None

    for module in sorted(graph):
        if found := visit(module):
            return found
    return None


def test_no_module_imports_itself_through_others() -> None:
    graph = _import_graph()
    assert graph["ablate.measurement.runtimes.executorch"] >= {
        "ablate.measurement.backends",
        "ablate.measurement.programs",
    }
    cycle = _cycle(graph)
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


def test_the_import_graph_sees_every_kind_of_import_and_names_a_cycle() -> None:
    modules = {"ablate.a", "ablate.b", "ablate.c", "ablate.pkg", "ablate.pkg.mod"}
    source = (
        "from __future__ import annotations\n"
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n    from ablate.a import Thing\n"
        "def f():\n    import ablate.b\n"
        "from ablate.pkg import mod\n"
        "from . import name_in_the_package\n"
    )
    assert _module_imports(source, "ablate.pkg.mod2", modules, package=False) == {
        "ablate.a",
        "ablate.b",
        "ablate.pkg.mod",
        "ablate.pkg",
    }
    assert _module_imports("from . import c", "ablate", modules, package=True) == {"ablate.c"}
    assert _module_imports("from .. import c", "ablate.pkg.x", modules, package=False) == {
        "ablate.c"
    }
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a", "d"}, "d": set()}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": {"a"}}) == ["a", "b", "a"]
    assert _cycle({"a": {"b", "c"}, "b": {"c"}, "c": set()}) is None
