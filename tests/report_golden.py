"""Golden files for the compare and report renderers, and the fixture runs they render.

A rendering that differs from its golden file fails with a unified diff. After an intended
change, rewrite the golden files and review the diff in git:

    ABLATE_REGENERATE_GOLDEN=1 pytest tests/test_compare_console.py tests/test_report_markdown.py
"""

from __future__ import annotations

import difflib
import io
import json
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console, RenderableType

from ablate.runs.schema import Results, load_results

GOLDEN_DIRECTORY = Path(__file__).parent / "golden"
FIXTURE_DIRECTORY = Path(__file__).parent / "fixtures"
REGENERATE_VARIABLE = "ABLATE_REGENERATE_GOLDEN"
CONSOLE_WIDTH = 160
FIXTURE_RUNS = ("hswish_eager", "hswish_compile", "why_eager", "why_compile")


def regenerating() -> bool:
    return os.environ.get(REGENERATE_VARIABLE) == "1"


def assert_golden(name: str, text: str) -> None:
    path = GOLDEN_DIRECTORY / name
    if regenerating():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        return
    if not path.exists():
        pytest.fail(f"no golden file {path}; create it with {REGENERATE_VARIABLE}=1")
    expected = path.read_text(encoding="utf-8")
    if text != expected:
        diff = "".join(
            difflib.unified_diff(
                expected.splitlines(keepends=True),
                text.splitlines(keepends=True),
                fromfile=f"golden/{name}",
                tofile="rendered",
            )
        )
        pytest.fail(
            f"{name} differs from its golden file; if intended, rerun with "
            f"{REGENERATE_VARIABLE}=1 and review the diff:\n{diff}"
        )


def render_text(parts: Sequence[RenderableType]) -> str:
    """Renderables as plain text at a fixed width: no colour, no terminal."""
    console = Console(
        width=CONSOLE_WIDTH,
        record=True,
        color_system=None,
        file=io.StringIO(),
        force_terminal=False,
    )
    for part in parts:
        console.print(part)
    return console.export_text()


def fixture_path(name: str) -> Path:
    return FIXTURE_DIRECTORY / name / "results.json"


def fixture_results(name: str) -> Results:
    return load_results(fixture_path(name))


def fixture_document(name: str) -> dict[str, Any]:
    return json.loads(fixture_path(name).read_text(encoding="utf-8"))


def modified_results(name: str, change: Callable[[dict[str, Any]], None]) -> Results:
    """A fixture run with `change` applied to its JSON document, validated again."""
    document = fixture_document(name)
    change(document)
    return Results.model_validate(document)


def counts_only(document: dict[str, Any]) -> None:
    """A run stopped after counting: no latency, no profile, no attribution."""
    document["status"] = "counted"
    document["measurement"] = None
    document["attribution"] = None
    for variant in document["variants"]:
        variant["latency"] = None
        variant["op_time_shares"] = None
        for block in variant["blocks"]:
            for key in ("time_share", "roofline_ms", "bound"):
                block.pop(key, None)


# Where the predicted fixture's v3_relu extrapolates: past the largest fitted row's dense
# MACs, and on pointwise MACs that no fitted row has.
EXTRAPOLATED = [
    {
        "term": "dense_macs",
        "detail": "12.6 MMAC, 2.5x the largest fitted row's 5.04 MMAC",
        "times_outside": 2.5,
    },
    {"term": "pointwise_macs", "detail": "no fitted row has it", "times_outside": None},
]


def predicted(document: dict[str, Any], flagged: str = "v3_relu") -> None:
    """The run's latencies as `run --device pixel1` records them: `flagged` extrapolates on
    `EXTRAPOLATED`, every other variant stays inside the profile's rows."""
    document["measurement"].update(stop_reason="predicted", predicted_on="pixel1")
    for variant in document["variants"]:
        variant["latency"]["extrapolated"] = EXTRAPOLATED if variant["name"] == flagged else []
