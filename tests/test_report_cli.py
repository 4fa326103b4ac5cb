"""`ablate compare` and `ablate report` through typer's CliRunner, every error path included.

The commands are registered here on a local app with the CLI's own error wrapper, as the
lead registers them in `ablate/cli.py`.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import typer
from report_golden import fixture_path
from typer.testing import CliRunner, Result

from ablate.cli import _user_errors
from ablate.commands.experiment import compare_command, report_command
from ablate.runs.storage import RESOLVED_SPEC_NAME
from tests.conftest import one_error_line

app = typer.Typer(pretty_exceptions_enable=False)
app.command("compare")(_user_errors(compare_command))
app.command("report")(_user_errors(report_command))
runner = CliRunner()


def invoke(*arguments: str) -> Result:
    return runner.invoke(app, [str(argument) for argument in arguments])


def make_run(out_dir: Path, fixture: str, stamp: str = "20250514-093000") -> Path:
    """A run directory as `ablate run` leaves it: resolved spec and results."""
    run = out_dir / f"{stamp}-{fixture}"
    run.mkdir(parents=True)
    shutil.copy(fixture_path(fixture), run / "results.json")
    (run / RESOLVED_SPEC_NAME).write_text(json.dumps({"name": fixture}), encoding="utf-8")
    return run


# -- compare ------------------------------------------------------------------------------------


def test_compare_defaults_to_the_latest_run(tmp_path: Path) -> None:
    make_run(tmp_path, "why_eager", stamp="20250101-000000")
    make_run(tmp_path, "hswish_eager", stamp="20250514-093000")
    result = invoke("compare", "--out", tmp_path)
    assert result.exit_code == 0, result.output
    assert "hswish: 4 variants against v3_published" in result.stdout
    assert "Latency (median [95% interval])" in result.stdout


def test_compare_a_results_file_against_another_baseline() -> None:
    result = invoke("compare", fixture_path("hswish_eager"), "--baseline", "mobilenet_v2")
    assert result.exit_code == 0, result.output
    assert "Re-based" in result.stdout and "≈yes" in result.stdout


def test_compare_two_runs() -> None:
    result = invoke("compare", fixture_path("hswish_eager"), fixture_path("hswish_compile").parent)
    assert result.exit_code == 0, result.output
    assert "Environment differences" in result.stdout
    assert "⇅ flips" in result.stdout


def test_compare_missing_run(tmp_path: Path) -> None:
    line = one_error_line(invoke("compare", tmp_path / "nope"))
    assert line == f"error: {tmp_path / 'nope'}: no such run directory or results.json"


def test_compare_missing_second_run(tmp_path: Path) -> None:
    line = one_error_line(invoke("compare", fixture_path("why_eager"), tmp_path / "gone"))
    assert "gone: no such run directory" in line


def test_compare_with_no_runs_at_all(tmp_path: Path) -> None:
    line = one_error_line(invoke("compare", "--out", tmp_path / "runs"))
    assert "no runs yet" in line


def test_compare_a_run_directory_without_results(tmp_path: Path) -> None:
    line = one_error_line(invoke("compare", tmp_path))
    assert line == f"error: {tmp_path / 'results.json'}: no such file"


def test_compare_corrupt_results(tmp_path: Path) -> None:
    path = tmp_path / "results.json"
    path.write_text('{"schema": "ablate.results/1", "status": ', encoding="utf-8")
    line = one_error_line(invoke("compare", path))
    assert f"{path}:1: not valid JSON" in line


def test_compare_results_that_break_the_schema(tmp_path: Path) -> None:
    document = json.loads(fixture_path("hswish_eager").read_text(encoding="utf-8"))
    document["variants"][1]["macs"] = "many"
    path = tmp_path / "results.json"
    path.write_text(json.dumps(document), encoding="utf-8")
    line = one_error_line(invoke("compare", path))
    assert "variants[1].macs: Input should be a valid integer" in line
    assert "(got 'many')" in line


def test_compare_unknown_baseline() -> None:
    line = one_error_line(invoke("compare", fixture_path("why_eager"), "-b", "v9"))
    assert line.startswith("error: --baseline: no variant 'v9' in experiment 'why_v3_faster'")
    assert "valid: to:{}, to:{stem_channels}" in line


def test_compare_unknown_baseline_in_the_second_run() -> None:
    line = one_error_line(
        invoke("compare", fixture_path("why_eager"), fixture_path("hswish_eager"), "-b", "to:{}")
    )
    assert "no variant 'to:{}' in experiment 'hswish'" in line


# -- report -------------------------------------------------------------------------------------


def test_report_writes_markdown_and_figures_beside_it(tmp_path: Path) -> None:
    run = make_run(tmp_path, "why_eager")
    result = invoke("report", run, "--markdown")
    assert result.exit_code == 0, result.output
    assert result.stdout == f"wrote {run / 'report.md'}\n"
    text = (run / "report.md").read_text(encoding="utf-8")
    for name in ("latency_vs_macs", "latency_delta", "block_time_shares", "waterfall"):
        assert f"](report-{name}.png)" in text
        assert (run / f"report-{name}.png").read_bytes()[:4] == b"\x89PNG"


def test_report_defaults_to_markdown_of_the_latest_run(tmp_path: Path) -> None:
    run = make_run(tmp_path, "hswish_compile")
    result = invoke("report", "--out", tmp_path)
    assert result.exit_code == 0, result.output
    assert (run / "report.md").is_file()


def test_report_to_another_file_puts_figures_beside_it(tmp_path: Path) -> None:
    target = tmp_path / "docs" / "hswish.md"
    result = invoke("report", fixture_path("hswish_eager"), "-o", target)
    assert result.exit_code == 0, result.output
    text = target.read_text(encoding="utf-8")
    assert "](hswish-latency_vs_macs.png)" in text
    assert (target.parent / "hswish-latency_vs_macs.png").is_file()


def test_report_to_stdout_links_figures_from_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    run = make_run(tmp_path / "runs", "why_eager")
    monkeypatch.chdir(tmp_path)
    result = invoke("report", run, "-o", "-")
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("# ablate report: why_v3_faster\n")
    link = f"]({Path('runs') / run.name / 'report-waterfall.png'})"
    assert link in result.stdout
    assert not (run / "report.md").exists()


def test_report_versus_a_second_backend(tmp_path: Path) -> None:
    target = tmp_path / "report.md"
    result = invoke(
        "report", fixture_path("why_eager"), "--vs", fixture_path("why_compile"), "-o", target
    )
    assert result.exit_code == 0, result.output
    text = target.read_text(encoding="utf-8")
    assert "## Against a second run" in text and "On the compile backend" in text


def test_report_json_and_csv(tmp_path: Path) -> None:
    run = make_run(tmp_path, "hswish_eager")
    result = invoke("report", run, "--json", "--csv")
    assert result.exit_code == 0, result.output
    assert json.loads((run / "report.json").read_text())["experiment"] == "hswish"
    assert (run / "report.csv").read_text().startswith("variant,is_baseline,")
    assert not (run / "report.md").exists()


def test_report_json_to_stdout() -> None:
    result = invoke(
        "report", fixture_path("why_eager"), "--json", "-o", "-", "-b", "to:{last_stage}"
    )
    assert result.exit_code == 0, result.output
    document = json.loads(result.stdout)
    assert document["baseline"] == "to:{last_stage}" and document["rebased"] is True


def test_report_one_file_for_one_format(tmp_path: Path) -> None:
    line = one_error_line(
        invoke("report", fixture_path("why_eager"), "--json", "--csv", "-o", tmp_path / "x")
    )
    assert line == "error: -o names one file: choose one of --markdown, --json, --csv"


def test_report_versus_needs_markdown() -> None:
    line = one_error_line(
        invoke("report", fixture_path("why_eager"), "--csv", "--vs", fixture_path("why_compile"))
    )
    assert "--vs" in line


def test_report_unknown_baseline(tmp_path: Path) -> None:
    run = make_run(tmp_path, "hswish_eager")
    line = one_error_line(invoke("report", run, "--baseline", "nope"))
    assert "--baseline: no variant 'nope'" in line
    assert not (run / "report.md").exists()  # nothing written before the check


def test_report_missing_run_and_missing_versus(tmp_path: Path) -> None:
    assert "no such run directory" in one_error_line(invoke("report", tmp_path / "nope"))
    line = one_error_line(invoke("report", fixture_path("why_eager"), "--vs", tmp_path / "nope"))
    assert "nope: no such run directory" in line


def test_report_corrupt_results(tmp_path: Path) -> None:
    path = tmp_path / "results.json"
    path.write_text("[]", encoding="utf-8")
    line = one_error_line(invoke("report", path))
    assert line == f"error: {path}: expected a JSON object at the top level"


def test_report_damaged_attribution(tmp_path: Path) -> None:
    document = json.loads(fixture_path("why_eager").read_text(encoding="utf-8"))
    del document["attribution"]["total"]
    path = tmp_path / "results.json"
    path.write_text(json.dumps(document), encoding="utf-8")
    line = one_error_line(invoke("report", path))
    assert line == f"error: {path}: attribution.total: Field required"


def test_report_damaged_version_1_attribution(tmp_path: Path) -> None:
    document = json.loads(fixture_path("why_eager_v1").read_text(encoding="utf-8"))
    del document["attribution"]["total"]["ci95"]
    path = tmp_path / "results.json"
    path.write_text(json.dumps(document), encoding="utf-8")
    line = one_error_line(invoke("report", path))
    assert line == f"error: {path}: attribution.total.ci95: missing"


def test_report_unwritable_destination(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory", encoding="utf-8")
    line = one_error_line(
        invoke("report", fixture_path("hswish_eager"), "--csv", "-o", blocker / "r.csv")
    )
    assert "cannot write" in line
