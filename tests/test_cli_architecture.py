"""`ablate models`, `ablate factors`, `ablate inspect` through typer's CliRunner."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import click
import pytest
import typer
import yaml
from typer.testing import CliRunner

from ablate.architecture.table_data import architecture_yaml
from ablate.cli import app

runner = CliRunner()


def test_help_imports_neither_torch_nor_ray() -> None:
    code = (
        "import sys\n"
        "from typer.testing import CliRunner\n"
        "from ablate.cli import app\n"
        "result = CliRunner().invoke(app, ['--help'])\n"
        "assert result.exit_code == 0, result.output\n"
        "assert 'inspect' in result.output\n"
        "print('torch' in sys.modules, 'ray' in sys.modules)\n"
    )
    output = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert output.strip() == "False False"  # neither torch nor ray (the [cluster] extra)


def test_python_dash_m_works() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "ablate", "--help"], capture_output=True, text=True, check=True
    )
    assert "Usage" in result.stdout and "inspect" in result.stdout


def _command_paths(group: typer.Typer, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    command = typer.main.get_command(group)
    paths = []

    def walk(node: click.Command, path: tuple[str, ...]) -> None:
        paths.append(path)
        for name, child in getattr(node, "commands", {}).items():
            walk(child, (*path, name))

    walk(command, prefix)
    return paths


def test_every_commands_help_renders() -> None:
    # Rich reads square brackets in help text as markup: "BACKEND[/PRECISION]" once made
    # `ablate run --help` a traceback. Every command's help must render.
    paths = _command_paths(app)
    assert ("run",) in paths and len(paths) > 15
    for path in paths:
        result = runner.invoke(app, [*path, "--help"])
        assert result.exit_code == 0, (path, result.output, result.exception)
        assert "Usage" in result.output


@pytest.mark.slow
def test_models_lists_exact_parameter_counts() -> None:
    result = runner.invoke(app, ["models", "--json"])
    assert result.exit_code == 0, result.output
    rows = {row["name"]: row for row in json.loads(result.output)}
    assert {name: row["params"] for name, row in rows.items()} == {
        "mobilenet_v1": 4_231_976,
        "mobilenet_v2": 3_504_872,
        "mobilenet_v3_large": 5_483_032,
        "mobilenet_v3_small": 2_542_856,
        "mnasnet_a1": 3_887_038,
        # timm 1.0.31's mobilenetv4_conv_small / _medium (tests/test_mobilenet_v4.py).
        "mobilenet_v4_conv_small": 3_774_024,
        "mobilenet_v4_conv_medium": 9_715_512,
        # Detectors (91 classes, paper convention; tests/test_detection.py checks Table 6).
        "ssdlite_mobilenet_v1": 5_246_911,
        "ssdlite_mobilenet_v2": 4_500_543,
        "ssdlite_mobilenet_v3_large": 5_006_735,
        "ssdlite_mobilenet_v3_small": 2_518_271,
        "ssdlite_mobilenet_v3_large_reduced": 3_248_255,
        "ssdlite_mobilenet_v3_small_reduced": 1_785_743,
        "ssdlite_mnasnet_a1": 4_912_181,
        "ssd_mobilenet_v1": 17_909_759,
    }
    assert rows["mobilenet_v2"]["blocks"] == 17
    table = runner.invoke(app, ["models"])
    assert table.exit_code == 0 and "5,483,032" in table.output


def test_factors_lists_every_factor() -> None:
    result = runner.invoke(app, ["factors"], env={"COLUMNS": "200"})
    assert result.exit_code == 0
    for name in ("width", "resolution", "activation", "se_ratio", "kernel", "layout"):
        assert name in result.output


def test_inspect_table_and_totals() -> None:
    result = runner.invoke(app, ["inspect", "mobilenet_v3_large"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert "5,483,032 parameters" in result.output
    assert "bneck 5x5" in result.output and "hswish" in result.output


def test_inspect_json_with_set_values_read_as_yaml() -> None:
    result = runner.invoke(
        app,
        ["inspect", "mobilenet_v3_large", "--set", "se=off", "--set", "kernel=5", "--json"],
    )
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["factors"] == {"se": False, "kernel": 5}
    # 5,483,032 - 1,512,280 (SE) + 5x5 on the nine 3x3 blocks: (2,112 channels x 16) = 4,004,544
    assert data["params"] == 5_483_032 - 1_512_280 + 33_792
    assert isinstance(data["params"], int)
    blocks = [layer for layer in data["layers"] if layer["module"].startswith("blocks.")]
    assert len(blocks) == 15
    assert {layer["kernel_size"] for layer in blocks} == {5}
    assert not any(layer["squeeze_excite"] for layer in blocks)
    assert blocks[0]["input_height"] == 112 and blocks[-1]["input_height"] == 7
    assert sum(layer["params"] for layer in data["layers"]) == data["params"]


def test_inspect_per_block_list_and_placement_mapping() -> None:
    kernels = "[3,3,3,5,5,5,3,3,3,3,3,3,5,5,5]"
    placement = "{early: relu, late: hswish, from_channels: 112}"
    result = runner.invoke(
        app,
        ["inspect", "mobilenet_v3_large", "--set", f"kernel={kernels}",
         "--set", f"activation={placement}", "--json"],
    )
    assert result.exit_code == 0, result.output
    blocks = [row for row in json.loads(result.output)["layers"] if row["layer"].isdigit()]
    assert [row["activation"] for row in blocks] == ["relu"] * 10 + ["hswish"] * 5


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["inspect", "mobilenet_v3_large", "--set", "kernel=4"],
         "error: kernel: unsupported depthwise kernel (got 4); valid: 3, 5, 7"),
        (["inspect", "mobilenet_v3_large", "--set", "kernel"],
         "error: --set 'kernel': expected FACTOR=VALUE"),
        (["inspect", "mobilenet_v3_large", "--set", "kernel=[3,"],
         "error: --set 'kernel=[3,': VALUE is not valid YAML"),
        (["inspect", "mobilenet_v3_large", "--set", "kernel=3", "--set", "kernel=5"],
         "factor 'kernel' is set twice"),
        (["inspect", "mobilenet_v3_large", "--set", "depth=3"],
         "error: depth: unknown factor (got 3); valid: width"),
        (["inspect", "resnet50"], "error: base: unknown architecture (got 'resnet50')"),
    ],
)
def test_bad_input_gets_one_line_and_exit_2(arguments: list[str], message: str) -> None:
    result = runner.invoke(app, arguments)
    assert result.exit_code == 2
    assert message in result.output
    assert "Traceback" not in result.output
    assert len(result.output.strip().splitlines()) == 1


def test_inspect_json_carries_the_counts() -> None:
    result = runner.invoke(app, ["inspect", "mobilenet_v3_large", "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    # conv+linear MACs of V3-Large at 224x224 (torchvision's 0.217 "GFLOPS"; paper: 219M MAdds).
    assert data["macs"] == 216_589_760
    for key in ("macs", "flops", "bytes_unfused", "bytes_fused", "activation_peak_bytes"):
        assert isinstance(data[key], int) and data[key] > 0
    assert data["flops"] > 2 * data["macs"]  # elementwise ops on top of 2 x MACs
    assert data["bytes_fused"] < data["bytes_unfused"]
    assert data["unknown_ops"] == {}
    assert set(data["by_kind"]) >= {"conv_depthwise", "conv_pointwise", "hardswish", "se_multiply"}
    layers = data["layers"]
    # Every op lands in exactly one row: the rows add up to the totals.
    assert sum(layer["macs"] for layer in layers) == data["macs"]
    assert sum(layer["bytes_unfused"] for layer in layers) == data["bytes_unfused"]
    assert sum(layer["bytes_fused"] for layer in layers) == data["bytes_fused"]
    assert abs(sum(layer["macs_share"] for layer in layers) - 1.0) < 1e-9
    # The classifier's h-swish is booked with the hidden linear layer it follows.
    hidden = next(layer for layer in layers if layer["layer"] == "hidden")
    assert hidden["macs"] == 960 * 1280 and hidden["flops"] > 2 * 960 * 1280


def test_inspect_crosscheck_json_explains_the_peers() -> None:
    result = runner.invoke(app, ["inspect", "mobilenet_v3_large", "--crosscheck", "--json"])
    assert result.exit_code == 0, result.output
    crosscheck = json.loads(result.output)["crosscheck"]
    assert crosscheck["fvcore"]["total"] == 226_033_824
    assert crosscheck["ptflops"]["total"] == 230_719_008
    assert crosscheck["fvcore"]["residual"] == 0 and crosscheck["ptflops"]["residual"] == 0


def test_inspect_table_shows_counts_with_units() -> None:
    result = runner.invoke(app, ["inspect", "mobilenet_v2"], env={"COLUMNS": "240"})
    assert result.exit_code == 0, result.output
    assert "MACs (M)" in result.output and "bytes fused (MB)" in result.output
    assert "300.77" in result.output  # V2 conv+linear MACs, millions


def test_models_lists_a_specs_own_architectures(tmp_path: Path) -> None:
    spec = tmp_path / "spec.yaml"
    document = {
        "name": "own",
        "architectures": {"my_v2": architecture_yaml("mobilenet_v2")},
        "base": "my_v2",
        "variants": {"a": {}},
    }
    spec.write_text(yaml.safe_dump(document))
    result = runner.invoke(app, ["models", "--json", "--spec", str(spec)])
    assert result.exit_code == 0, result.output
    rows = {row["name"]: row for row in json.loads(result.output)}
    # The built-ins, then the spec's: V2 written out has V2's count (3,504,872) and blocks.
    assert list(rows)[-1] == "my_v2" and "mobilenet_v2" in rows
    assert (rows["my_v2"]["params"], rows["my_v2"]["blocks"]) == (3_504_872, 17)
    assert rows["my_v2"]["paper"] == f"{spec}: architectures.my_v2"
    broken = tmp_path / "broken.yaml"
    broken.write_text(yaml.safe_dump(document).replace("ir_k3_t6_c320_s1_r6", "ir_k3"))
    result = runner.invoke(app, ["models", "--spec", str(broken)])
    assert result.exit_code != 0
    assert "architectures.my_v2.stages[6][0]: malformed block code (got 'ir_k3')" in result.output
