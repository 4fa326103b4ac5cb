"""The matrix report (`ablate report MATRIX_DIR`, `ablate compare MATRIX_DIR`) on constructed
results: the why_eager fixture copied per device with its attribution's latencies replaced by
hand-chosen ones (`from` 20 ms; shares, totals and intervals in % of it), so every ratio, mark
and correlation below is derived by hand.
"""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest
import typer
from report_golden import EXTRAPOLATED, fixture_document, render_text
from typer.testing import CliRunner, Result

from ablate.analysis.coalitions import CoalitionSpace
from ablate.cli import _user_errors
from ablate.commands.experiment import compare_command, report_command
from ablate.report.matrix_console import matrix_renderables
from ablate.report.matrix_export import matrix_csv, matrix_json
from ablate.report.matrix_markdown import code_span, render_matrix_markdown
from ablate.report.matrix_model import MatrixReport, matrix_report, pearson, property_sentences
from ablate.report.matrix_plots import write_shapley_heatmap
from ablate.runs.matrix import MATRIX_NAME, Matrix, MatrixDevice
from ablate.runs.schema import RESULTS_NAME, Results
from tests.conftest import one_error_line

FACTORS = ("stem_channels", "activation", "last_stage")
SPACE = CoalitionSpace(FACTORS)
FROM_VARIANT, TO_VARIANT = SPACE.variant_name(0), SPACE.variant_name(SPACE.full_mask)
FROM_MS = 20.0
# A share that costs, saves, or cannot be told (its interval includes 0), in % of `from`.
COSTS = (2.0, 1.0, 3.0)
SAVES = (-2.0, -3.0, -1.0)
UNCLEAR = (0.5, -0.5, 1.5)
Percent = tuple[float, float, float]  # value, interval low, interval high
PROPERTY_HEADING = "## Which device property decides"

app = typer.Typer(pretty_exceptions_enable=False)
app.command("compare")(_user_errors(compare_command))
app.command("report")(_user_errors(report_command))
runner = CliRunner()


def _latency(percent: Percent) -> dict[str, Any]:
    value, low, high = percent
    return {
        "ms": FROM_MS * value / 100,
        "percent": value,
        "interval_ms": [FROM_MS * low / 100, FROM_MS * high / 100],
        "interval_percent": [low, high],
    }


def device_document(
    shares: Mapping[str, Percent], total: Percent = (-15.0, -17.0, -13.0)
) -> dict[str, Any]:
    """why_eager's document with `shares` (factor -> % of `from`) and `total`; `from` 20 ms."""
    document = fixture_document("why_eager")
    attribution = document["attribution"]
    for effect in attribution["shapley"]:
        effect["latency"] = _latency(shares.get(effect["label"], UNCLEAR))
    attribution["total"]["latency"] = _latency(total)
    attribution["from_values"]["latency"] = {
        "ms": FROM_MS,
        "percent": 100.0,
        "interval_ms": [FROM_MS, FROM_MS],
        "interval_percent": [100.0, 100.0],
    }
    end = 100.0 + total[0]
    attribution["to_values"]["latency"] = {
        "ms": FROM_MS * end / 100,
        "percent": end,
        "interval_ms": [FROM_MS * (100 + total[1]) / 100, FROM_MS * (100 + total[2]) / 100],
        "interval_percent": [100 + total[1], 100 + total[2]],
    }
    return document


def results(document: Mapping[str, Any]) -> Results:
    return Results.model_validate(document)


def predicted_document(shares: Mapping[str, Percent]) -> dict[str, Any]:
    """As `run --device pixel1` records it, the `to` model extrapolating (`EXTRAPOLATED`)."""
    document = device_document(shares)
    document["measurement"].update(stop_reason="predicted", predicted_on="pixel1")
    for variant in document["variants"]:
        variant["latency"]["extrapolated"] = EXTRAPOLATED if variant["name"] == TO_VARIANT else []
    return document


def device(name: str, status: str = "complete", **fields: Any) -> MatrixDevice:
    kind = fields.pop("kind", "backend")
    run = None if status != "complete" else f"{name}/20250601-120000-why"
    return MatrixDevice.model_validate(
        {"name": name, "kind": kind, "status": status, "run": run, **fields}
    )


def properties(
    depthwise: float | None = None, bandwidth: float | None = None, overhead: float | None = None
) -> dict[str, Any]:
    return {
        "source": "fitted to this run (form conv_kinds)",
        "depthwise_to_pointwise": depthwise,
        "elementwise_gb_per_s": bandwidth,
        "overhead_us": overhead,
    }


def matrix_of(devices: Sequence[MatrixDevice]) -> Matrix:
    return Matrix.model_validate(
        {
            "schema": "ablate.matrix/1",
            "name": "why_v3_faster",
            "spec_sha256": "0123456789ab" + "0" * 52,
            "created": "2025-06-01T12:00:00",
            "devices": [d.model_dump(mode="json") for d in devices],
        }
    )


def report_of(pairs: Sequence[tuple[MatrixDevice, Results | None]]) -> MatrixReport:
    return matrix_report(matrix_of([d for d, _ in pairs]), pairs)


def table_row(text: str, first_cell: str, after: str = "") -> str:
    """The Markdown table row whose first cell is `first_cell`, the first one after the line
    `after` (default: the first in the text)."""
    for line in text.split(f"\n{after}\n", 1)[-1].splitlines():
        if line.startswith(f"| {first_cell} |"):
            return line
    raise AssertionError(f"no row {first_cell!r} in:\n{text}")


FAILED = device(
    "litert",
    status="failed",
    error="litert is not installed: pip install 'ablate[litert]'",
    resume="ablate run experiments/why_v3_faster.yaml --resume runs/x-matrix",
)


# -- headline ---------------------------------------------------------------------------------


def test_the_headline_gives_each_device_its_ratio_interval_and_how_it_ended() -> None:
    report = report_of(
        [
            (device("eager"), results(device_document({}, total=(-15.0, -17.0, -13.0)))),
            (device("torchscript"), results(device_document({}, total=(9.0, 7.5, 10.5)))),
            (device("onnxruntime"), results(device_document({}, total=(0.4, -0.6, 1.4)))),
            (
                device("pixel1", kind="profile", profile="pixel1"),
                results(predicted_document({})),
            ),
            (FAILED, None),
        ]
    )
    text = render_matrix_markdown(report)
    assert "## v2+v3_choices / mobilenet_v2 per device" in text
    heading = (
        "| device | kind | v2+v3_choices / mobilenet_v2 [95% interval] | verdict | "
        "mobilenet_v2 ms | v2+v3_choices ms | latencies | notes |"
    )
    assert heading in text
    # 1 - 15% = 0.850, [1 - 17%, 1 - 13%]; 20 ms * 0.85 = 17 ms.
    assert table_row(text, "eager") == (
        "| eager | backend | 0.850 [0.830, 0.870] | faster | 20.00 | 17.00 | target |  |"
    )
    assert table_row(text, "torchscript") == (
        "| torchscript | backend | 1.090 [1.075, 1.105] | slower | 20.00 | 21.80 | target |  |"
    )
    assert table_row(text, "onnxruntime") == (
        "| onnxruntime | backend | 1.004 [0.994, 1.014] | no different within the interval "
        "| 20.00 | 20.08 | target |  |"
    )
    # A predicted device says so, and its extrapolating `to` model leaves no verdict.
    assert table_row(text, "pixel1") == (
        "| pixel1 | profile | 0.850 [0.830, 0.870] | cannot tell (extrapolated) | 20.00 | "
        "17.00 | predicted on pixel1 | the end models extrapolate: "
        "to:{stem_channels,activation,last_stage} (dense_macs: 12.6 MMAC, 2.5x the largest "
        "fitted row's 5.04 MMAC; pointwise_macs: no fitted row has it); no factor's share can "
        "be told: 1 of the 8 coalitions' predictions extrapolate, and every Shapley value "
        "averages over all of them (dense_macs in 1, up to 2.5x outside the fitted rows; "
        "pointwise_macs in 1, beyond every fitted row) |"
    )
    assert table_row(text, "litert") == (
        "| litert | backend | failed |  |  |  |  | litert is not installed: pip install "
        "'ablate\\[litert\\]' |"
    )
    assert "(target: every interval reached the target width)" in text
    pixel1 = report.devices[3]
    assert pixel1.predicted_on == "pixel1" and pixel1.headline is not None
    assert pixel1.headline.sign == 0 and all(s.extrapolated for s in pixel1.shares.values())


def test_no_number_pools_devices() -> None:
    report = report_of(
        [
            (device("eager"), results(device_document({"stem_channels": COSTS}))),
            (device("onnxruntime"), results(device_document({"stem_channels": SAVES}))),
            (FAILED, None),
        ]
    )
    console = render_text(matrix_renderables(report))
    for text in (render_matrix_markdown(report), console, matrix_json(report), matrix_csv(report)):
        lowered = text.lower()
        assert "all devices" not in lowered
        assert not re.search(r"\b(mean|average|pooled|overall)\b", lowered)
    document = json.loads(matrix_json(report))
    # The only values outside a device are the majorities (signs) and the correlations.
    assert set(document) == {
        "schema",
        "name",
        "spec_sha256",
        "created",
        "from",
        "to",
        "factors",
        "conventions",
        "devices",
        "majority",
        "relations",
        "property_sentences",
    }


# -- the Shapley table and its sign marks -------------------------------------------------------


def sign_case() -> MatrixReport:
    """stem_channels saves time on two devices and costs on one (marked); on a fourth its
    interval includes 0 (no sign, never marked). activation splits one to one: no majority."""
    return report_of(
        [
            (device("a"), results(device_document({"stem_channels": (-3.0, -4.0, -2.0)}))),
            (
                device("b"),
                results(device_document({"stem_channels": SAVES, "activation": COSTS})),
            ),
            (
                device("c"),
                results(device_document({"stem_channels": (1.0, 0.5, 1.5), "activation": SAVES})),
            ),
            (device("d"), results(device_document({"stem_channels": UNCLEAR}))),
        ]
    )


def test_a_cell_against_the_majority_is_marked_and_one_without_a_sign_never() -> None:
    report = sign_case()
    assert report.majority == {"stem_channels": -1, "activation": 0, "last_stage": 0}
    marked = {
        (column.name, factor)
        for column in report.devices
        for factor, share in column.shares.items()
        if share.marked
    }
    assert marked == {("c", "stem_channels")}
    # d's +0.5 has the minority's sign but its interval includes 0: no sign, no mark.
    assert report.devices[3].shares["stem_channels"].sign == 0
    text = render_matrix_markdown(report)
    assert table_row(text, "stem_channels") == (
        "| stem_channels | -3.0 [-4.0, -2.0] | -2.0 [-3.0, -1.0] | +1.0 [+0.5, +1.5] † | "
        "+0.5 [-0.5, +1.5] | 1 / 2 / 1 |"
    )
    assert table_row(text, "activation") == (
        "| activation | +0.5 [-0.5, +1.5] | +2.0 [+1.0, +3.0] | -2.0 [-3.0, -1.0] | "
        "+0.5 [-0.5, +1.5] | 1 / 1 / 2 |"
    )
    assert table_row(text, "**total**") == (
        "| **total** | -15.0 [-17.0, -13.0] | -15.0 [-17.0, -13.0] | -15.0 [-17.0, -13.0] | "
        "-15.0 [-17.0, -13.0] |  |"
    )
    assert "a cell whose interval includes 0 is never marked" in text
    console = render_text(matrix_renderables(report))
    assert console.count("†") == 2  # the marked cell and the caption that explains it
    assert "+1.0 [+0.5, +1.5] †" in console


def test_the_heatmap_is_written_and_linked(tmp_path: Path) -> None:
    report = sign_case()
    path = write_shapley_heatmap(report, tmp_path / "report-shapley.png")
    assert path == tmp_path / "report-shapley.png"
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    text = render_matrix_markdown(report, heatmap="report-shapley.png")
    assert "![Shapley values per device, % of mobilenet_v2's time](report-shapley.png)" in text


def test_no_heatmap_without_a_device_with_results(tmp_path: Path) -> None:
    report = report_of([(FAILED, None)])
    assert write_shapley_heatmap(report, tmp_path / "x.png") is None
    assert not (tmp_path / "x.png").exists()
    text = render_matrix_markdown(report)
    assert "No device has an attribution with latency." in text


# -- which device property decides --------------------------------------------------------------


def test_with_fewer_than_four_devices_it_cannot_be_told() -> None:
    # Three devices with results (a perfect correlation among them) and a failed fourth.
    report = report_of(
        [
            (
                device(f"d{i}", properties=properties(depthwise=float(i))),
                results(device_document({"stem_channels": (float(i), i - 0.5, i + 0.5)})),
            )
            for i in (1, 2, 3)
        ]
        + [(FAILED, None)]
    )
    sentence = (
        "Which device property decides cannot be told from 3 devices with results: a "
        "correlation across devices is read only over 4 or more."
    )
    text = render_matrix_markdown(report)
    assert sentence in text
    assert "r = " not in text
    assert sentence in " ".join(render_text(matrix_renderables(report)).split())
    assert json.loads(matrix_json(report))["property_sentences"] == [sentence]


def correlated(stem: Sequence[float], activation: Sequence[float]) -> MatrixReport:
    """Four devices, depthwise/pointwise 1..4, no other property; last_stage costs 2% on
    each (constant: no correlation)."""
    return report_of(
        [
            (
                device(f"d{i}", properties=properties(depthwise=float(i))),
                results(
                    device_document(
                        {
                            "stem_channels": (s, s - 0.4, s + 0.4),
                            "activation": (a, a - 0.4, a + 0.4),
                            "last_stage": COSTS,
                        }
                    )
                ),
            )
            for i, s, a in zip((1, 2, 3, 4), stem, activation, strict=True)
        ]
    )


def test_a_strong_relation_over_four_devices_is_stated_with_r_and_n() -> None:
    # x = 1..4, y = 1, 2, 3, 5: deviations (-1.5, -0.5, 0.5, 1.5) and (-1.75, -0.75, 0.25,
    # 2.25): r = 6.5 / sqrt(5 * 8.75) = 0.983. activation: y = 1, 3, 2, 1: r = -0.5 /
    # sqrt(5 * 2.75) = -0.135, too weak to state.
    report = correlated((1.0, 2.0, 3.0, 5.0), (1.0, 3.0, 2.0, 1.0))
    assert pearson([1, 2, 3, 4], [1, 2, 3, 5]) == pytest.approx(6.5 / (5 * 8.75) ** 0.5)
    assert pearson([1, 2, 3, 4], [2, 2, 2, 2]) is None
    assert pearson([1, 2, 3, float("inf")], [1, 2, 3, 5]) is None
    stated = [relation for relation in report.relations if relation.stated]
    assert [(r.factor, r.prop, r.n) for r in stated] == [
        ("stem_channels", "depthwise_to_pointwise", 4)
    ]
    sentence = (
        "stem_channels costs more of mobilenet_v2's time where depthwise MACs are dearer "
        "relative to pointwise ones (r = 0.98, 4 devices)."
    )
    text = render_matrix_markdown(report)
    assert sentence in text
    assert table_row(text, "activation", PROPERTY_HEADING).endswith(
        "| r = -0.13 (n = 4) | n = 0: too few | n = 0: too few |"
    )
    assert table_row(text, "last_stage", PROPERTY_HEADING).endswith(
        "| n = 4: constant | n = 0: too few | n = 0: too few |"
    )
    plain = sentence
    assert plain in " ".join(render_text(matrix_renderables(report)).split())
    assert json.loads(matrix_json(report))["property_sentences"] == [plain]


def test_the_sentence_follows_the_sign_of_r_and_of_the_majority() -> None:
    report = correlated((5.0, 3.0, 2.0, 1.0), (1.0, 3.0, 2.0, 1.0))
    assert property_sentences(report) == [
        "stem_channels costs less of mobilenet_v2's time where depthwise MACs are dearer "
        "relative to pointwise ones (r = -0.98, 4 devices)."
    ]
    # Saving time on every device, less where depthwise MACs are dearer: a higher share.
    report = correlated((-5.0, -3.0, -2.0, -1.0), (1.0, 3.0, 2.0, 1.0))
    assert property_sentences(report) == [
        "stem_channels saves less of mobilenet_v2's time where depthwise MACs are dearer "
        "relative to pointwise ones (r = 0.98, 4 devices)."
    ]
    report = correlated((-1.0, -2.0, -3.0, -5.0), (1.0, 3.0, 2.0, 1.0))
    assert property_sentences(report)[0].startswith("stem_channels saves more of mobilenet_v2")


def test_no_relation_is_stated_under_the_threshold() -> None:
    # stem: y = 1, 3, 2, 1 (r = -0.13); activation: y = 1, 1, 2, 1.5: deviations (-0.375,
    # -0.375, 0.625, 0.125), r = 1.25 / sqrt(5 * 0.6875) = 0.67: not strong enough either.
    report = correlated((1.0, 3.0, 2.0, 1.0), (1.0, 1.0, 2.0, 1.5))
    assert not any(relation.stated for relation in report.relations)
    text = render_matrix_markdown(report)
    assert (
        "No factor's share follows a device property: |r| < 0.8 for every pair read over 4 "
        "or more devices."
    ) in text
    assert "costs more of" not in text and "costs less of" not in text
    assert table_row(text, "activation", PROPERTY_HEADING).endswith(
        "| r = +0.67 (n = 4) | n = 0: too few | n = 0: too few |"
    )


def test_an_extrapolated_share_or_an_unknown_property_takes_no_part() -> None:
    # Five devices with results, but one predicts with extrapolation and one has no fitted
    # property: three pairs left, too few to read.
    pairs = [
        (
            device(f"d{i}", properties=properties(depthwise=float(i))),
            results(device_document({"stem_channels": (float(i), i - 0.5, i + 0.5)})),
        )
        for i in (1, 2, 3)
    ]
    pairs.append((device("nofit"), results(device_document({"stem_channels": COSTS}))))
    pairs.append(
        (
            device("pixel1", kind="profile", profile="pixel1", properties=properties(4.0)),
            results(predicted_document({"stem_channels": (4.0, 3.5, 4.5)})),
        )
    )
    report = report_of(pairs)
    relation = report.relations[0]
    assert (relation.factor, relation.prop) == ("stem_channels", "depthwise_to_pointwise")
    assert relation.devices == ("d1", "d2", "d3") and relation.r is None
    assert report.decidable
    text = render_matrix_markdown(report)
    assert (
        "Which device property decides cannot be told: fewer than 4 of the 5 devices with "
        "results have a fitted property"
    ) in text
    assert "| d1 | 1 | n/a | n/a | fitted to this run (form conv_kinds) |" in text
    assert "| nofit | n/a | n/a | n/a | n/a |" in text


# -- kernels --------------------------------------------------------------------------------------


def _variant(document: dict[str, Any], name: str) -> dict[str, Any]:
    return next(v for v in document["variants"] if v["name"] == name)


def test_the_kernel_shares_that_moved_most_per_profiled_device() -> None:
    eager = device_document({})
    _variant(eager, FROM_VARIANT)["op_time_shares"]["by_operator"] = {
        "aten::conv2d": 0.6,
        "aten::hardtanh_": 0.2,
        "aten::add_": 0.2,
    }
    _variant(eager, TO_VARIANT)["op_time_shares"]["by_operator"] = {
        "aten::conv2d": 0.5,
        "aten::hardswish_": 0.3,
        "aten::add_": 0.2,
    }
    timed = device_document({})
    timed["measurement"]["backend"] = "onnxruntime"
    for name, convolution in ((FROM_VARIANT, 3.0), (TO_VARIANT, 1.0)):
        _variant(timed, name)["kernels"] = {
            "timer": "onnxruntime",
            "runs": 5,
            "events": [
                {"name": "Conv", "milliseconds": convolution, "delegated": True, "kind": "conv"},
                {"name": "Conv", "milliseconds": 1.0, "delegated": True, "kind": "conv"},
                {"name": "Mean", "milliseconds": 1.0, "delegated": False, "kind": "mean"},
            ],
        }
    report = report_of(
        [
            (device("eager"), results(eager)),
            (device("onnxruntime"), results(timed)),
            # Its per-op shares are eager's, not this backend's: no kernel shares.
            (device("compile"), results(_on_backend(device_document({}), "compile"))),
            (device("pixel1", kind="profile"), results(predicted_document({}))),
        ]
    )
    text = render_matrix_markdown(report)
    section = text.split("### eager (eager profiler, per aten op)\n\n")[1].split("\n\n")[0]
    assert section.splitlines() == [
        "| kernel | mobilenet_v2 % | v2+v3_choices % | change, points |",
        "|---|---:|---:|---:|",
        "| aten::hardswish_ | 0.0 | 30.0 | +30.0 |",
        "| aten::hardtanh_ | 20.0 | 0.0 | -20.0 |",
        "| aten::conv2d | 60.0 | 50.0 | -10.0 |",
    ]
    # Conv 4 of 5 ms (80%) -> 2 of 3 ms (66.7%); Mean 20% -> 33.3%.
    section = text.split("### onnxruntime (onnxruntime kernel timer, median of 5 runs)\n\n")[1]
    assert section.split("\n\n")[0].splitlines()[2:] == [
        "| Conv | 80.0 | 66.7 | -13.3 |",
        "| Mean (outside the delegate) | 20.0 | 33.3 | +13.3 |",
    ]
    assert "No per-op or runtime profile of both models: compile, pixel1." in text


def _on_backend(document: dict[str, Any], backend: str) -> dict[str, Any]:
    document["measurement"]["backend"] = backend
    return document


# -- devices without results ---------------------------------------------------------------


def test_a_failed_device_is_listed_with_its_error_and_resume_command() -> None:
    no_attribution = device_document({})
    no_attribution["attribution"] = None
    report = report_of(
        [
            (device("eager"), results(device_document({}))),
            (FAILED, None),
            (
                device(
                    "executorch/int8",
                    status="interrupted",
                    error="interrupted by a signal",
                    resume="ablate run SPEC --resume runs/m",
                ),
                None,
            ),
            (device("torchscript"), results(no_attribution)),
        ]
    )
    text = render_matrix_markdown(report)
    assert text.split("## Devices without results\n\n")[1].splitlines() == [
        "- **litert** (failed): litert is not installed: pip install 'ablate\\[litert\\]'. "
        "Resume: `ablate run experiments/why_v3_faster.yaml --resume runs/x-matrix`",
        "- **executorch/int8** (interrupted): interrupted by a signal. Resume: "
        "`ablate run SPEC --resume runs/m`",
        "- **torchscript** (complete): its results have no attribution.",
    ]
    assert (
        "Not in the table, having no results: litert (failed), executorch/int8 (interrupted), "
        "torchscript (complete) (see below)."
    ) in text
    console = " ".join(render_text(matrix_renderables(report)).split())
    assert (
        "litert (failed): litert is not installed: pip install 'ablate[litert]'. Resume: "
        "ablate run experiments/why_v3_faster.yaml --resume runs/x-matrix"
    ) in console
    rows = matrix_csv(report).splitlines()
    assert rows[0] == (
        "device,kind,status,predicted_on,factor,share_pct,share_ci_low_pct,share_ci_high_pct,"
        "sign,marked,extrapolated,ratio,ratio_ci_low,ratio_ci_high,error,resume"
    )
    assert rows[1] == "eager,backend,complete,,stem_channels,0.5,-0.5,1.5,0,False,False,,,,,"
    assert rows[4] == (
        "eager,backend,complete,,total,-15.0,-17.0,-13.0,-1,False,False,0.85,0.83,0.87,,"
    )
    assert rows[5] == (
        "litert,backend,failed,,,,,,,,,,,,litert is not installed: pip install "
        "'ablate[litert]',ablate run experiments/why_v3_faster.yaml --resume runs/x-matrix"
    )


def test_a_resume_command_is_shown_as_it_is_in_its_code_span() -> None:
    assert code_span("ablate run a_b.yaml") == "`ablate run a_b.yaml`"
    assert code_span("echo `x` ``y``") == "``` echo `x` ``y`` ```"
    assert code_span("`x`") == "`` `x` ``"


def test_text_from_the_results_is_escaped_in_every_rendering() -> None:
    hostile = device("[bold]<b>x</b>|", error="a | b <script>")
    report = report_of([(hostile, results(device_document({}))), (FAILED, None)])
    text = render_matrix_markdown(report)
    assert "| \\[bold\\]&lt;b&gt;x&lt;/b&gt;\\| | backend |" in text
    console = render_text(matrix_renderables(report))
    assert "[bold]<b>x</b>|" in console


# -- through the command line -------------------------------------------------------------------


def write_matrix(
    directory: Path, pairs: Sequence[tuple[MatrixDevice, dict[str, Any] | None]]
) -> Path:
    """A matrix directory as `ablate run --devices` leaves it: matrix.json and each complete
    device's run."""
    matrix = matrix_of([d for d, _ in pairs])
    directory.mkdir(parents=True)
    (directory / MATRIX_NAME).write_text(
        json.dumps(matrix.model_dump(mode="json", by_alias=True)), encoding="utf-8"
    )
    for entry, document in pairs:
        if document is not None:
            run = matrix.run_directory(directory, entry)
            assert run is not None
            run.mkdir(parents=True)
            (run / RESULTS_NAME).write_text(json.dumps(document), encoding="utf-8")
    return directory


def invoke(*arguments: object) -> Result:
    return runner.invoke(app, [str(argument) for argument in arguments])


@pytest.fixture
def matrix_directory(tmp_path: Path) -> Path:
    return write_matrix(
        tmp_path / "20250601-120000-why_v3_faster-matrix",
        [
            (device("eager"), device_document({"stem_channels": SAVES})),
            (
                device("onnxruntime"),
                device_document({"stem_channels": COSTS}, total=(9.0, 7.5, 10.5)),
            ),
            (FAILED, None),
        ],
    )


def test_report_writes_the_markdown_and_its_heatmap_into_the_matrix(matrix_directory: Path) -> None:
    result = invoke("report", matrix_directory, "--markdown")
    assert result.exit_code == 0, result.output
    assert result.stdout == f"wrote {matrix_directory / 'report.md'}\n"
    text = (matrix_directory / "report.md").read_text(encoding="utf-8")
    assert text.startswith("# ablate matrix report: why_v3_faster\n")
    assert "](report-shapley.png)" in text
    assert (matrix_directory / "report-shapley.png").read_bytes()[:4] == b"\x89PNG"
    assert table_row(text, "onnxruntime").startswith(
        "| onnxruntime | backend | 1.090 [1.075, 1.105] |"
    )


def test_report_reads_matrix_json_too_and_prints_with_dash(matrix_directory: Path) -> None:
    result = invoke("report", matrix_directory / MATRIX_NAME, "--json", "-o", "-")
    assert result.exit_code == 0, result.output
    document = json.loads(result.stdout)
    assert [d["name"] for d in document["devices"]] == ["eager", "onnxruntime", "litert"]
    assert document["devices"][1]["ratio"]["median"] == 1.09
    assert document["devices"][0]["shares"]["stem_channels"]["sign"] == -1
    assert document["devices"][2]["resume"].startswith("ablate run")
    result = invoke("report", matrix_directory, "--csv", "-o", "-")
    assert result.exit_code == 0, result.output
    assert (
        "onnxruntime,backend,complete,,total,9.0,7.5,10.5,1,False,False,1.09,1.075,1.105,,"
        in result.stdout
    )
    result = invoke("report", matrix_directory, "--markdown", "-o", "-")
    assert result.exit_code == 0, result.output
    assert "# ablate matrix report" in result.stdout
    assert (matrix_directory / "report-shapley.png").exists()


def test_report_writes_where_o_says(matrix_directory: Path, tmp_path: Path) -> None:
    target = tmp_path / "out" / "why.md"
    result = invoke("report", matrix_directory, "-o", target)
    assert result.exit_code == 0, result.output
    assert "](why-shapley.png)" in target.read_text(encoding="utf-8")
    assert (tmp_path / "out" / "why-shapley.png").exists()


def test_compare_prints_the_matrix(matrix_directory: Path) -> None:
    result = invoke("compare", matrix_directory)
    assert result.exit_code == 0, result.output
    plain = " ".join(result.stdout.split())
    assert "why_v3_faster: 3 devices" in plain
    assert "1.090 [1.075, 1.105]" in plain
    assert "litert (failed): litert is not installed" in plain
    assert "Which device property decides cannot be told from 2 devices with results" in plain


@pytest.mark.parametrize(
    ("arguments", "expected"),
    [
        (("report", "{m}", "--vs", "{m}"), "--vs {m}: a matrix sets its devices side by side"),
        (("report", "{m}", "--baseline", "x"), "--baseline x: a matrix compares each device's"),
        (("report", "{m}", "--json", "--csv", "-o", "f"), "-o names one file"),
        (("compare", "{m}", "--baseline", "x"), "--baseline x: a matrix compares each device's"),
        (("compare", "{m}", "{m}"), "{m}: a matrix sets its devices side by side itself"),
    ],
)
def test_options_a_matrix_takes_not_are_refused_in_one_line(
    matrix_directory: Path, arguments: tuple[str, ...], expected: str
) -> None:
    line = one_error_line(invoke(*(a.format(m=matrix_directory) for a in arguments)))
    assert expected.format(m=matrix_directory) in line


def test_compare_refuses_a_matrix_as_the_second_run(matrix_directory: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    run.mkdir()
    shutil.copy(Path(__file__).parent / "fixtures" / "why_eager" / RESULTS_NAME, run)
    line = one_error_line(invoke("compare", run, matrix_directory))
    assert f"{matrix_directory}: a matrix sets its devices side by side itself" in line


def test_a_damaged_matrix_or_device_run_is_one_line(matrix_directory: Path) -> None:
    results_file = matrix_directory / "eager" / "20250601-120000-why" / RESULTS_NAME
    results_file.unlink()
    line = one_error_line(invoke("report", matrix_directory))
    assert str(results_file) in line
    (matrix_directory / MATRIX_NAME).write_text('{"schema": "ablate.matrix/1"}', encoding="utf-8")
    line = one_error_line(invoke("compare", matrix_directory))
    assert MATRIX_NAME in line and "name" in line


def test_an_unwritable_destination_is_one_line(matrix_directory: Path, tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("", encoding="utf-8")
    line = one_error_line(invoke("report", matrix_directory, "--json", "-o", blocker / "x.json"))
    assert "cannot write" in line
