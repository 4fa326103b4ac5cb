"""`ablate validate SPEC` through typer's CliRunner."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from ablate.architecture.description import ACTIVATIONS
from ablate.architecture.tables import ARCHITECTURES
from ablate.cli import _user_errors
from ablate.commands.experiment import validate_command

runner = CliRunner()

SPEC = (
    "name: t\n"
    "baseline: relu\n"
    "variants:\n"
    "  published: {}\n"
    "  relu: {activation: relu}\n"
    "  again: {activation: {early: relu, late: hswish, from_channels: 80}}\n"
    "  v2: {base: mobilenet_v2, resolution: 160}\n"
)


@pytest.fixture
def app() -> typer.Typer:
    """A local app with the same error wrapper as `ablate.cli` (the lead registers it there)."""
    local = typer.Typer(add_completion=False, pretty_exceptions_enable=False)
    local.command("validate")(_user_errors(validate_command))

    @local.command("noop")
    def noop() -> None:  # with two commands, typer keeps `validate` as a subcommand
        """Nothing."""

    return local


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "spec.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def test_validate_prints_a_summary_and_the_variants(app: typer.Typer, tmp_path: Path) -> None:
    path = write(tmp_path, SPEC)
    result = runner.invoke(app, ["validate", str(path)])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    # The estimate (memory of this process, so not a fixed figure) follows the verdict.
    assert re.fullmatch(
        r"3 distinct architectures for 4 variants; memory about \d+\.\d GB \(3 built copies "
        r"each\)( of \d+\.\d GB)? available; counting about \d+ s, preparing at most about "
        r"\d+ s, measuring at most about 60 s, profiling about \d+ s; in all about \d+ s with "
        r"nothing cached",
        lines.pop(1),
    )
    assert lines == [
        f"{path}: OK, 4 variants (3 distinct architectures), baseline relu",
        "  published  mobilenet_v3_large  as published",
        "  relu       mobilenet_v3_large  activation=relu  (baseline)",
        "  again      mobilenet_v3_large  activation={early:relu,late:hswish,from_channels:80}  "
        "(same architecture as published)",
        "  v2         mobilenet_v2        resolution=160",
    ]


def test_validate_singular_counts(app: typer.Typer, tmp_path: Path) -> None:
    path = write(tmp_path, "name: t\nvariants:\n  only: {}\n")
    result = runner.invoke(app, ["validate", str(path)])
    assert result.output.splitlines()[0] == (
        f"{path}: OK, 1 variant (1 distinct architecture), baseline only"
    )


def test_validate_json_prints_the_resolved_spec(app: typer.Typer, tmp_path: Path) -> None:
    result = runner.invoke(app, ["validate", str(write(tmp_path, SPEC)), "--json"])
    assert result.exit_code == 0, result.output
    resolved = json.loads(result.output)
    assert resolved["baseline"] == "relu"
    assert resolved["measure"]["budget_s"] == 60.0
    assert list(resolved["variants"]) == ["published", "relu", "again", "v2"]


def test_validate_errors_are_one_line_and_exit_2(app: typer.Typer, tmp_path: Path) -> None:
    path = write(tmp_path, SPEC.replace("activation: relu", "activation: tanh"))
    result = runner.invoke(app, ["validate", str(path)])
    assert result.exit_code == 2
    assert result.output == (
        f"error: {path}:5: variants.relu.activation: unknown activation (got 'tanh'); valid: "
        f"{', '.join([*ACTIVATIONS, *ARCHITECTURES])}\n"
    )
    assert "Traceback" not in result.output


def test_validate_missing_file(app: typer.Typer, tmp_path: Path) -> None:
    path = tmp_path / "absent.yaml"
    result = runner.invoke(app, ["validate", str(path)])
    assert result.exit_code == 2
    assert result.output == f"error: {path}: no such file\n"


def test_command_module_does_not_import_torch_or_the_loader() -> None:
    code = (
        "import sys\n"
        "import ablate.commands.experiment\n"
        "print('torch' in sys.modules, 'ablate.spec.load' in sys.modules)\n"
    )
    output = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert output.split() == ["False", "False"]


def test_loading_a_spec_does_not_import_torch() -> None:
    code = (
        "import sys\n"
        "from ablate.spec import load_spec_text\n"
        "load_spec_text('name: t\\nvariants:\\n  a: {kernel: 5}\\n')\n"
        "print('torch' in sys.modules)\n"
    )
    output = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert output.strip() == "False"
