"""A module by import path (`model: package.module:factory`, `ablate inspect PATH`): counted by
ablate's own engine, run on the backends, compared and reported; imported only with
--allow-import; every way it can fail one line and exit 2.

The module is tests/fixtures/custom_models.py, whose `tiny_net` is small enough to count by
hand: at 32x32, width 8, 10 classes,

    stem: 3x3 conv 3->8 stride 2 (16x16 out)  params 3*8*9 = 216 (+16 BN)  MACs 16*16*8*27 = 55,296
    blocks.0: 3x3 depthwise on 8 channels      params 8*9 = 72             MACs 16*16*8*9 = 18,432
    blocks.1: 1x1 conv 8->16                   params 8*16 = 128           MACs 16*16*16*8 = 32,768
    classifier: linear 16->10                  params 16*10+10 = 170       MACs 160
    total                                      params 602                  MACs 106,656

and at width 16: params 432+32, 144, 512, 330 = 1,450; MACs 110,592 + 36,864 + 131,072 + 320
= 278,848.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml
from conftest import one_error_line
from typer.testing import CliRunner

import ablate.runs.runner as runner_module
from ablate.architecture.imported import ImportedModel, ImportedModelError, parse_import_path
from ablate.cli import app
from ablate.errors import AblateError
from ablate.report.compare import compare_variants
from ablate.runs.schema import load_results
from ablate.services.experiment import run_experiment
from ablate.services.inspect import inspect_model, model_choice
from ablate.spec import load_spec, load_spec_text
from ablate.spec.imports import admit_imports

ROOT = Path(__file__).resolve().parents[1]
FIXTURE = ROOT / "tests" / "fixtures" / "custom_models.py"
TINY = "tests.fixtures.custom_models:tiny_net"
TINY_PARAMS, TINY_MACS = 602, 106_656
WIDE_PARAMS, WIDE_MACS = 1_450, 278_848
runner = CliRunner()

SPEC = f"""\
name: mine
model: {TINY}
args: {{classes: 10}}
input: {{resolution: 32}}
measure: {{settle_s: 0, budget_s: 1, warmup_s: 0.05, min_rounds: 6, max_rounds: 8}}
baseline: narrow
variants:
  narrow: {{}}
  wide: {{args: {{width: 16}}}}
  again: {{args: {{classes: 10}}}}
  class: {{model: tests.fixtures.custom_models:TinyNet, args: {{width: 8}}}}
"""


@pytest.fixture(autouse=True)
def repository_on_path(monkeypatch: pytest.MonkeyPatch) -> None:
    # `tests.fixtures.custom_models` is found from the repository root, as from PYTHONPATH.
    monkeypatch.syspath_prepend(str(ROOT))


@pytest.fixture
def spec(tmp_path: Path) -> Path:
    path = tmp_path / "mine.yaml"
    path.write_text(SPEC)
    return path


def _spec_error(text: str) -> str:
    with pytest.raises(AblateError) as caught:
        load_spec_text(text, "spec.yaml")
    return str(caught.value)


# -- counting: ablate's own engine on the module ------------------------------------------------


def test_an_imported_module_counts_as_derived_by_hand() -> None:
    choice = model_choice(TINY, resolution=32, allow_import=True)
    inspection = inspect_model(choice)
    assert inspection.params == TINY_PARAMS and inspection.counts.totals["macs"] == TINY_MACS
    rows = {row.layer: row for row in inspection.layers}
    macs = {
        row.layer: counts.totals["macs"]
        for row, counts in zip(inspection.layers, inspection.row_counts, strict=True)
    }
    # Layers are the top-level children and the numbered ones inside a container.
    assert list(rows) == ["stem", "blocks.0", "blocks.1", "pool", "classifier"]
    assert {name: row.params for name, row in rows.items()} == {
        "stem": 216 + 16,
        "blocks.0": 72,
        "blocks.1": 128,
        "pool": 0,
        "classifier": 170,
    }
    assert macs == {
        "stem": 55_296,
        "blocks.0": 18_432,
        "blocks.1": 32_768,
        "pool": 0,
        "classifier": 160,
    }
    stem = rows["stem"]
    assert (stem.input_height, stem.input_channels, stem.out_channels, stem.stride) == (32, 3, 8, 2)
    assert rows["blocks.1"].operator == "Sequential" and rows["blocks.1"].out_channels == 16
    assert inspection.counts.unknown_ops == {}
    data = inspection.to_json()
    assert (data["model"], data["args"], data["resolution"], data["width"]) == (TINY, {}, 32, None)


def test_an_op_without_a_counting_rule_is_reported_not_counted_as_nothing() -> None:
    choice = model_choice(TINY, args={"activation": "gelu"}, resolution=32, allow_import=True)
    counts = inspect_model(choice).counts
    unknown = counts.unknown_ops["aten.gelu.default"]
    assert unknown.calls == 3 and list(unknown.modules) == ["stem.act", "blocks.0.1", "blocks.1.1"]
    assert counts.totals["macs"] == TINY_MACS  # the convs are still counted

    result = runner.invoke(
        app,
        ["inspect", TINY, "--allow-import", "--resolution", "32", "--arg", "activation=gelu"],
        env={"COLUMNS": "200"},
    )
    assert result.exit_code == 0, result.output
    assert "Unknown ops" in result.output and "aten.gelu.default" in result.output


def test_inspect_by_import_path_with_arguments() -> None:
    arguments = ["--allow-import", "--resolution", "32", "--arg", "width=16", "--json"]
    result = runner.invoke(app, ["inspect", TINY, *arguments])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert (data["params"], data["macs"], data["args"]) == (WIDE_PARAMS, WIDE_MACS, {"width": 16})
    assert [layer["layer"] for layer in data["layers"]] == [
        "stem",
        "blocks.0",
        "blocks.1",
        "pool",
        "classifier",
    ]
    table = runner.invoke(app, ["inspect", TINY, *arguments[:-1]], env={"COLUMNS": "200"})
    assert table.exit_code == 0 and f"{TINY}(width=16) at 32x32" in table.output


def test_a_module_with_no_parameters_from_an_installed_distribution() -> None:
    identity = ImportedModel.of("torch.nn:Identity", resolution=8)
    counts = inspect_model(model_choice(identity.path, resolution=8, allow_import=True)).counts
    assert counts.totals["macs"] == 0
    # Traceable: the distribution that provides it, at its installed version.
    provenance = identity.provenance()
    assert (provenance["distribution"], provenance["version"]) == ("torch", torch.__version__)
    assert provenance["file"].endswith("linear.py")  # where Identity is defined


def test_bench_times_an_imported_module_against_other_arguments() -> None:
    import itertools

    from ablate.services.bench import run_bench

    ticks = itertools.count()
    report = run_bench(
        model=TINY,
        args={"width": 8},
        vs_args={"width": 16},
        resolution=32,
        allow_import=True,
        instances=1,
        clock=lambda: next(ticks) * 0.01,
    )
    names = [variant.name for variant in report.latency.variants]
    assert names == [f"{TINY}(width=8)", f"{TINY}(width=16)"]
    shares = [share.name for share in report.breakdowns[0].profile.by_group()]
    assert shares[:3] == ["stem", "blocks.0", "blocks.1"]


# -- every way an import path can fail: one line, exit 2 ----------------------------------------

FIXTURES = "tests.fixtures.custom_models"


@pytest.mark.parametrize(
    ("model", "expected"),
    [
        (
            "torchvision.models.mobilenet_v3_large",
            "not an import path: expected package.module:factory",
        ),
        ("tests.fixtures.custom_models:", "not an import path"),
        (":tiny_net", "not an import path"),
        ("a:b:c", "not an import path"),
        (
            "no_such_package_xyz:net",
            "cannot import module 'no_such_package_xyz' (ModuleNotFoundError",
        ),
        ("tests.fixtures.broken_models:net", "(RuntimeError: this module fails on import)"),
        (f"{FIXTURES}:nope", f"'{FIXTURES}' has no attribute 'nope'"),
        (f"{FIXTURES}:NOT_CALLABLE", "is not callable (a int)"),
        (f"{FIXTURES}:raising_factory", "the factory raised ValueError: no such width: 8"),
        (f"{FIXTURES}:not_a_module", "the factory returned a dict, not a torch.nn.Module"),
        (
            f"{FIXTURES}:flat_input_net",
            "a forward pass on a 1x3x224x224 input failed (RuntimeError",
        ),
    ],
)
@pytest.mark.parametrize("command", ["inspect", "bench"])
def test_a_failing_import_path_is_one_line(command: str, model: str, expected: str) -> None:
    result = runner.invoke(app, [command, model, "--allow-import"])
    line = one_error_line(result)
    assert expected in line
    assert model.rstrip(":").lstrip(":").split(":")[0] in line  # it names the path
    assert "second line" not in line  # the rest of a multi-line error stays out


def test_a_malformed_path_says_what_a_valid_one_looks_like() -> None:
    with pytest.raises(ImportedModelError) as caught:
        parse_import_path("torchvision.models.mobilenet_v3_large")
    assert "e.g. torchvision.models:mobilenet_v3_large" in str(caught.value)
    assert parse_import_path("pkg.sub:Class.create") == ("pkg.sub", "Class.create")


@pytest.mark.parametrize("command", ["inspect", "bench"])
def test_inspect_and_bench_need_allow_import(command: str) -> None:
    line = one_error_line(runner.invoke(app, [command, TINY]))
    assert line == (
        f"error: {TINY}: importing it runs the code of the Python module "
        "'tests.fixtures.custom_models'; pass --allow-import to allow it"
    )


def test_factors_and_arguments_go_to_their_own_kind_of_model() -> None:
    line = one_error_line(runner.invoke(app, ["inspect", TINY, "--allow-import", "--set", "se=on"]))
    assert "--set: factors do not apply to an imported module" in line and "--arg" in line
    line = one_error_line(runner.invoke(app, ["inspect", "mobilenet_v2", "--arg", "width=3"]))
    assert "--arg: keyword arguments of an imported module's factory" in line
    line = one_error_line(runner.invoke(app, ["inspect", "mobilenet_v2", "--resolution", "96"]))
    assert "--set resolution=96" in line
    bench = ["bench", TINY, "--allow-import", "--vs", "mobilenet_v2", "--arg2", "width=3"]
    assert "--arg2: keyword arguments" in one_error_line(runner.invoke(app, bench))


# -- specs -----------------------------------------------------------------------------------------


def test_a_spec_names_modules_and_imports_nothing_until_admitted(spec: Path) -> None:
    # Loading imports nothing: a module that does not exist, or fails on import, loads.
    for missing in ("no_such_package_xyz:net", "tests.fixtures.broken_models:net"):
        assert load_spec_text(f"name: t\nmodel: {missing}\n").imports[0].model.path == missing
    loaded = load_spec(spec)
    assert [variant.base for variant in loaded.variants] == [
        TINY,
        TINY,
        TINY,
        f"{FIXTURES}:TinyNet",
    ]
    assert [variant.factors for variant in loaded.variants] == [{}, {}, {}, {}]
    wide = loaded.variant("wide").imported
    assert wide is not None and wide.args == {"classes": 10, "width": 16}
    # The variant's own model takes its own args only; the spec's are for the spec's model.
    assert loaded.variant("class").architecture == ImportedModel.of(
        f"{FIXTURES}:TinyNet", {"width": 8}, 32
    )
    # `again` calls the factory as `narrow` does: one network, built and timed once.
    groups = list(loaded.architecture_groups().values())
    assert groups == [("narrow", "again"), ("wide",), ("class",)]
    assert [site.key_path for site in loaded.imports] == [
        "model",
        "variants.wide.args",
        "variants.class.args",
    ]
    with pytest.raises(AblateError) as caught:
        admit_imports(loaded, allow_import=False)
    assert str(caught.value) == (
        f"{spec}:2: model: {TINY}: importing it runs the code of the Python module "
        "'tests.fixtures.custom_models'; pass --allow-import to allow it"
    )
    admit_imports(loaded, allow_import=True)


def test_the_resolved_spec_names_the_module_and_loads_back(spec: Path) -> None:
    loaded = load_spec(spec)
    resolved = loaded.to_json()
    assert (resolved["model"], resolved["args"]) == (
        TINY,
        {"classes": 10},
    ) and "base" not in resolved
    assert resolved["variants"]["wide"] == {"model": TINY, "args": {"classes": 10, "width": 16}}
    assert load_spec_text(json.dumps(resolved)).to_json() == resolved


def test_a_spec_with_model_and_no_variants_has_the_module_as_its_one_variant() -> None:
    loaded = load_spec_text(f"name: m\nmodel: {TINY}\nargs: {{width: 4}}\n")
    (variant,) = loaded.variants
    assert (variant.name, variant.base, loaded.baseline) == ("tiny_net", TINY, "tiny_net")
    assert variant.imported == ImportedModel.of(TINY, {"width": 4}, 224)


def test_identical_calls_are_one_network(tmp_path: Path) -> None:
    loaded = load_spec_text(
        f"name: m\nmodel: {TINY}\nvariants:\n  a: {{}}\n  b: {{args: {{}}}}\n"
        f"  c: {{model: {TINY}}}\n  d: {{args: {{width: 9}}}}\n"
    )
    assert list(loaded.architecture_groups().values()) == [("a", "b", "c"), ("d",)]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            f"name: t\nmodel: {TINY}\nvariants:\n  a: {{kernel: 5}}\n",
            "spec.yaml:4: variants.a.kernel: factors do not apply to an imported module "
            f"({TINY!r}): ablate knows nothing of its blocks; give the factory's keyword "
            "arguments under args (got 5)",
        ),
        (
            f"name: t\nvariants:\n  a: {{model: {TINY}, se: on}}\n",
            "spec.yaml:3: variants.a.se: factors do not apply to an imported module",
        ),
        (
            f"name: t\nmodel: {TINY}\ngrid: {{kernel: [3, 5]}}\n",
            f"spec.yaml:3: grid: factors do not apply to an imported module ({TINY!r}): a grid "
            "varies factors; list variants with their args",
        ),
        (
            f"name: t\nmodel: {TINY}\nattribution:\n  from: mobilenet_v2\n  to: mobilenet_v3_large"
            "\n  factors: [se]\n",
            "spec.yaml:3: attribution: factors do not apply to an imported module",
        ),
        (
            f"name: t\nbase: mobilenet_v2\nmodel: {TINY}\n",
            "spec.yaml:2: base: base and model both name the spec's network: give one",
        ),
        (
            f"name: t\nvariants:\n  a: {{base: mobilenet_v2, model: {TINY}}}\n",
            "spec.yaml:3: variants.a.base: base and model both name the variant's network",
        ),
        (
            "name: t\nargs: {width: 3}\nvariants:\n  a: {}\n",
            "spec.yaml:2: args: args without model: give model: package.module:factory",
        ),
        (
            "name: t\nvariants:\n  a: {args: {width: 3}}\n",
            "spec.yaml:3: variants.a.args: args without model",
        ),
        (
            f"name: t\nmodel: {TINY}\nvariants:\n  a: {{args: [3]}}\n",
            "spec.yaml:4: variants.a.args: expected a mapping of keyword arguments (got [3])",
        ),
        (
            "name: t\nvariants:\n  a: {model: 3}\n",
            "spec.yaml:3: variants.a.model: expected an import path, package.module:factory",
        ),
        (
            "name: t\nmodel: torchvision.models.mobilenet_v3_large\n",
            "spec.yaml:2: model: not an import path: expected package.module:factory",
        ),
        (
            f"name: t\nmodel: {TINY}\nargs: {{when: 2024-01-01}}\n",
            "spec.yaml:3: args: args must be plain data",
        ),
        ("name: t\nmodel: [a]\n", "spec.yaml:2: model: expected a string"),
        (
            f"name: t\nmodel: {TINY}\narchitectures: {{mine: {{}}}}\n",
            "spec.yaml:3: architectures: no variant can use them",
        ),
    ],
)
def test_a_spec_that_misuses_model_is_one_line_at_its_key_path(text: str, expected: str) -> None:
    assert _spec_error(text).startswith(expected)


def test_what_fails_on_import_is_reported_where_the_spec_names_it(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(
        f"name: t\nmodel: {TINY}\nvariants:\n  ok: {{}}\n"
        f"  bad: {{model: {FIXTURES}:raising_factory, args: {{width: 3}}}}\n"
    )
    with pytest.raises(AblateError) as caught:
        admit_imports(load_spec(path), allow_import=True)
    assert str(caught.value) == (
        f"{path}:5: variants.bad.args: {FIXTURES}:raising_factory(width=3): the factory raised "
        "ValueError: no such width: 3"
    )


# -- validate and run: refused without --allow-import --------------------------------------------


def test_validate_and_run_refuse_a_spec_that_imports_without_the_flag(
    spec: Path, tmp_path: Path
) -> None:
    out = tmp_path / "runs"
    for command in (["validate", str(spec)], ["run", str(spec), "--out", str(out)]):
        line = one_error_line(runner.invoke(app, command))
        assert line.startswith(f"error: {spec}:2: model: {TINY}: importing it runs the code")
        assert line.endswith("pass --allow-import to allow it")
    assert not out.exists()  # nothing was created
    result = runner.invoke(app, ["validate", str(spec), "--allow-import"])
    assert result.exit_code == 0, result.output
    assert "OK, 4 variants (3 distinct architectures), baseline narrow" in result.stdout
    assert f"wide    {TINY}  args classes=10, width=16" in result.stdout


def test_a_device_matrix_and_an_export_refuse_a_spec_that_imports(
    spec: Path, tmp_path: Path
) -> None:
    matrix = ["run", str(spec), "--devices", "eager,onnxruntime", "--allow-import"]
    line = one_error_line(runner.invoke(app, [*matrix, "--out", str(tmp_path / "runs")]))
    assert "a device matrix does not take a spec that imports a module" in line
    export = ["export", str(spec), "--backend", "onnxruntime", "-o", str(tmp_path / "bundle")]
    assert "ablate export does not take a spec" in one_error_line(runner.invoke(app, export))


# -- a run: counted, measured, compared and reported ---------------------------------------------


def _imported_record(variant: Any) -> dict[str, Any]:
    assert variant.imported is not None
    return variant.imported.model_dump()


def test_a_run_of_imported_modules_is_counted_measured_compared_and_reported(
    spec: Path, tmp_path: Path
) -> None:
    out = tmp_path / "runs"
    result = runner.invoke(app, ["run", str(spec), "--allow-import", "--out", str(out)])
    assert result.exit_code == 0, result.output
    directory = Path(result.stdout.strip().splitlines()[-1])
    results = load_results(directory)
    assert results.status == "complete"
    narrow, wide, again, _ = results.variants
    assert (narrow.params, narrow.macs, wide.params, wide.macs) == (
        TINY_PARAMS,
        TINY_MACS,
        WIDE_PARAMS,
        WIDE_MACS,
    )
    assert again.measured_as == "narrow"  # the same call
    assert (narrow.base, narrow.factors, narrow.resolved_factors) == (TINY, {}, {"resolution": 32})
    assert [block.name for block in narrow.blocks] == [
        "stem",
        "blocks.0",
        "blocks.1",
        "pool",
        "(model)",  # the root's own torch.flatten
        "classifier",
    ]
    assert sum(block.params for block in narrow.blocks) == TINY_PARAMS
    assert narrow.op_time_shares is not None
    assert set(narrow.op_time_shares.by_block) == {block.name for block in narrow.blocks}
    # What was run: path, arguments, and the file (not an installed distribution) by hash.
    assert _imported_record(wide) == {
        "path": TINY,
        "args": {"classes": 10, "width": 16},
        "distribution": None,
        "version": None,
        "file": str(FIXTURE),
        "sha256": hashlib.sha256(FIXTURE.read_bytes()).hexdigest(),
    }
    assert results.spec["model"] == TINY
    assert json.loads((directory / "resolved_spec.json").read_text())["model"] == TINY

    compared = runner.invoke(app, ["compare", str(directory)], env={"COLUMNS": "200"})
    assert compared.exit_code == 0, compared.output
    assert "factors changed: args.width" in compared.stdout
    # What differs between two calls: the import path, and each argument.
    changed = [row.changed_factors for row in compare_variants(results).rows]
    assert changed == [(), ("args.width",), (), ("model", "args.classes", "args.width")]
    reported = runner.invoke(app, ["report", str(directory), "--markdown", "-o", "-"])
    assert reported.exit_code == 0, reported.output
    markdown = reported.stdout
    assert f"| wide | {TINY} | args: classes=10, width=16 | itself |" in markdown
    assert f"| wide | {TINY} | not installed | {FIXTURE} | " in markdown
    # A device profile is fitted from ablate's own architectures, which it counts again.
    fitted = runner.invoke(app, ["fit-device", "mine", "--from", str(directory)])
    assert "variants[0].imported: an imported module" in one_error_line(fitted)


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["onnxruntime", "executorch"])
def test_a_run_of_imported_modules_on_an_exporting_backend(
    spec: Path, tmp_path: Path, backend: str
) -> None:
    pytest.importorskip({"onnxruntime": "onnxruntime", "executorch": "executorch"}[backend])
    directory = run_experiment(
        spec_path=spec, out_dir=tmp_path / "runs", backend=backend, allow_import=True
    )
    results = load_results(directory)
    assert results.status == "complete" and results.measurement is not None
    assert results.measurement.backend == backend
    for variant in results.variants:
        assert variant.latency is not None and variant.macs in (TINY_MACS, WIDE_MACS)
        # A mobile runtime records the program it exported (ONNX Runtime runs in-process).
        assert (variant.runtime is not None) == (backend == "executorch")


class Killed(BaseException):
    """Stands in for SIGKILL: nothing after it runs."""


@pytest.mark.slow
def test_a_run_of_imported_modules_resumes_after_a_kill(
    spec: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "runs"
    real_append = runner_module.append_round

    def append_then_die(path: Path, index: int, seconds: dict[str, float], **journal: Any) -> None:
        real_append(path, index, seconds, **journal)
        if index == 2:
            raise Killed

    monkeypatch.setattr(runner_module, "append_round", append_then_die)
    with pytest.raises(Killed):
        run_experiment(spec_path=spec, out_dir=out, allow_import=True)
    (directory,) = out.iterdir()
    assert load_results(directory).status == "counted"
    monkeypatch.setattr(runner_module, "append_round", real_append)
    # A resumed run imports the module again, so it needs the flag again.
    with pytest.raises(AblateError, match="pass --allow-import"):
        run_experiment(spec_path=spec, out_dir=out, resume=True)
    assert run_experiment(spec_path=spec, out_dir=out, resume=True, allow_import=True) == directory
    results = load_results(directory)
    assert results.status == "complete" and results.measurement is not None
    assert results.measurement.rounds > 3
    assert _imported_record(results.variants[1])["args"] == {"classes": 10, "width": 16}


def test_the_rerun_command_of_an_imported_run_keeps_the_flag(spec: Path, tmp_path: Path) -> None:
    command = runner_module.rerun_command(spec, tmp_path, allow_import=True)
    assert command[-1] == "--allow-import"


def test_yaml_args_reach_the_factory_as_keywords() -> None:
    built = ImportedModel.of(TINY, yaml.safe_load("{width: 4, classes: 3}"), 32).build()
    assert isinstance(built, torch.nn.Module) and not built.training
    assert built.classifier.out_features == 3 and built.stem.conv.out_channels == 4


def test_the_command_line_lists_the_flag_on_each_command() -> None:
    for command in ("validate", "run", "inspect", "bench"):
        result = runner.invoke(app, [command, "--help"], env={"COLUMNS": "200"})
        assert "--allow-import" in result.output, command


def test_a_module_in_the_working_directory_imports_as_with_python_m(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A console script's path lacks the working directory; a project's own models live there."""
    import sys

    (tmp_path / "ablate_project_models.py").write_text(
        "from torch import nn\n"
        "def net(width: int = 4) -> nn.Module:\n"
        "    return nn.Sequential(nn.Conv2d(3, width, 3), nn.ReLU())\n"
    )
    monkeypatch.chdir(tmp_path)
    before = list(sys.path)
    result = CliRunner().invoke(
        app, ["inspect", "ablate_project_models:net", "--allow-import", "--json"]
    )
    assert result.exit_code == 0, result.output
    assert sys.path == before  # searched while importing only
    counted = json.loads(result.output)
    # A 3x3 conv from 3 to 4 channels at 224x224, no padding: 3*4*9 + 4 parameters, and
    # 222*222 outputs x 4 channels x 27 MACs each.
    assert counted["params"] == 112
    assert counted["macs"] == 222 * 222 * 4 * 27
