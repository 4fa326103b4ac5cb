"""JSON and CSV exports of the comparison."""

from __future__ import annotations

import csv
import io
import json

import pytest
from report_golden import EXTRAPOLATED, fixture_results, modified_results, predicted

from ablate.report.write import COMPARISON_SCHEMA, CSV_COLUMNS, comparison_csv, comparison_json


def test_json_rows_and_blocks() -> None:
    document = json.loads(comparison_json(fixture_results("hswish_compile")))
    assert document["schema"] == COMPARISON_SCHEMA
    assert document["baseline"] == "v3_published" and not document["rebased"]
    assert document["quick"] is True and document["backend"] == "compile"
    rows = {row["variant"]: row for row in document["rows"]}
    assert set(rows) == {"v3_published", "v3_relu", "v3_hswish_at_16", "mobilenet_v2"}
    v2 = rows["mobilenet_v2"]
    assert v2["macs"] == 300_774_272 and v2["macs_delta_pct"] == pytest.approx(38.87, abs=0.01)
    assert v2["macs_vs_latency"] == "opposite" and v2["significant"] is True
    assert v2["latency_delta_ci95_low_pct"] < v2["latency_delta_pct"] < 0
    assert rows["v3_published"]["latency_delta_ci95_low_pct"] is None
    assert set(document["blocks"]) == {"v3_relu", "v3_hswish_at_16", "mobilenet_v2"}
    added = [b for b in document["blocks"]["mobilenet_v2"] if b["status"] == "added"]
    assert [b["block"] for b in added] == ["blocks.15", "blocks.16"]
    assert added[0]["baseline_macs"] == 0


def test_csv_has_one_row_per_variant_with_units_in_the_column_names() -> None:
    text = comparison_csv(fixture_results("hswish_eager"), "mobilenet_v2")
    rows = list(csv.DictReader(io.StringIO(text)))
    assert tuple(rows[0]) == CSV_COLUMNS
    assert "latency_median_ms" in CSV_COLUMNS and "bytes_fused_bytes" in CSV_COLUMNS
    assert [row["variant"] for row in rows] == [
        "v3_published",
        "v3_relu",
        "v3_hswish_at_16",
        "mobilenet_v2",
    ]
    relu = rows[1]
    assert relu["approximate"] == "True" and relu["significant"] == "True"
    assert float(relu["latency_median_ms"]) == pytest.approx(13.75, abs=0.01)
    assert rows[3]["is_baseline"] == "True" and rows[3]["latency_delta_ci95_low_pct"] == ""
    noisy = rows[2]
    assert noisy["noise_flags"] == "high_iqr;wide_interval"


def test_a_predicted_run_exports_where_each_prediction_extrapolates() -> None:
    results = modified_results("hswish_eager", predicted)
    rows = {row["variant"]: row for row in json.loads(comparison_json(results))["rows"]}
    assert rows["v3_relu"]["latency_extrapolated"] == EXTRAPOLATED
    # Checked and inside the profile's rows: an empty list, not "not checked".
    assert rows["v3_published"]["latency_extrapolated"] == []
    assert rows["mobilenet_v2"]["latency_extrapolated"] == []
    cells = {
        row["variant"]: row["latency_extrapolated"]
        for row in csv.DictReader(io.StringIO(comparison_csv(results)))
    }
    assert cells == {
        "v3_published": "",
        "v3_relu": "dense_macs;pointwise_macs",
        "v3_hswish_at_16": "",
        "mobilenet_v2": "",
    }


def test_a_measured_run_has_no_extrapolation_to_export() -> None:
    results = fixture_results("hswish_eager")
    document = json.loads(comparison_json(results))
    assert [row["latency_extrapolated"] for row in document["rows"]] == [None] * 4
    assert "latency_extrapolated" in document["conventions"]
    rows = list(csv.DictReader(io.StringIO(comparison_csv(results))))
    assert [row["latency_extrapolated"] for row in rows] == [""] * 4
