"""The matrix report as JSON (the whole model) and CSV (the Shapley table, one row per device
and factor, the total row carrying the headline ratio): pure functions of `MatrixReport`.

Percentages are of each device's own `from` model; nothing here spans devices but the
correlations of `relations`, which say over which devices they were taken.
"""

from __future__ import annotations

import json
from typing import Any

from ablate.report.escaping import csv_line
from ablate.report.matrix_model import DeviceColumn, MatrixReport, Share, property_sentences

MATRIX_REPORT_SCHEMA = "ablate.matrix-report/1"
TOTAL = "total"
MATRIX_CSV_COLUMNS = (
    "device",
    "kind",
    "status",
    "predicted_on",
    "factor",
    "share_pct",
    "share_ci_low_pct",
    "share_ci_high_pct",
    "sign",
    "marked",
    "extrapolated",
    "ratio",
    "ratio_ci_low",
    "ratio_ci_high",
    "error",
    "resume",
)


def _round(value: float, digits: int = 6) -> float:
    return round(value, digits)


def _share(share: Share) -> dict[str, Any]:
    return {
        "percent": _round(share.percent),
        "interval": [_round(share.interval[0]), _round(share.interval[1])],
        "sign": share.sign,
        "marked": share.marked,
        "extrapolated": share.extrapolated,
    }


def _device(device: DeviceColumn) -> dict[str, Any]:
    headline = device.headline
    kernels = device.kernels
    return {
        "name": device.name,
        "kind": device.kind,
        "status": device.status,
        "error": device.error,
        "resume": device.resume,
        "missing": device.missing,
        "predicted_on": device.predicted_on,
        "stop_reason": device.stop_reason,
        "ratio": None
        if headline is None
        else {
            "median": _round(headline.ratio),
            "interval": [_round(headline.interval[0]), _round(headline.interval[1])],
            "confidence_percent": headline.confidence_percent,
            "sign": headline.sign,
            "from_ms": _round(headline.from_ms),
            "to_ms": _round(headline.to_ms),
        },
        "extrapolated": {"ends": device.ends_extrapolated, "factors": device.factors_extrapolated},
        "shares": {factor: _share(share) for factor, share in device.shares.items()},
        "total": None if headline is None else _share(headline.total),
        "kernels": None
        if kernels is None
        else {
            "source": kernels.source,
            "moves": [
                {
                    "kernel": move.kernel,
                    "from_share": _round(move.from_share),
                    "to_share": _round(move.to_share),
                }
                for move in kernels.moves
            ],
        },
        "properties": None if device.properties is None else device.properties.model_dump(),
    }


def matrix_json(report: MatrixReport) -> str:
    document = {
        "schema": MATRIX_REPORT_SCHEMA,
        "name": report.name,
        "spec_sha256": report.spec_sha256,
        "created": report.created,
        "from": report.from_name,
        "to": report.to_name,
        "factors": list(report.factors),
        "conventions": {
            "ratio": "to's median over from's on the device (the attribution's total), with "
            "its bootstrap interval",
            "shares": "each factor's Shapley value in % of the device's own from-model median; "
            "sign 0 where the interval includes 0 or the prediction extrapolates",
            "marked": "signed, and against the majority of the factor's signed cells",
            "relations": "Pearson's r of a factor's shares with a device property over the "
            "devices listed (None under 4 or where either side is constant)",
        },
        "devices": [_device(device) for device in report.devices],
        "majority": report.majority,
        "relations": [
            {
                "factor": relation.factor,
                "property": relation.prop,
                "devices": list(relation.devices),
                "n": relation.n,
                "r": None if relation.r is None else _round(relation.r),
                "stated": relation.stated,
            }
            for relation in report.relations
        ],
        "property_sentences": property_sentences(report),
    }
    return json.dumps(document, indent=2, allow_nan=False) + "\n"


def _rows(device: DeviceColumn) -> list[dict[str, Any]]:
    common = {
        "device": device.name,
        "kind": device.kind,
        "status": device.status,
        "predicted_on": device.predicted_on,
        "error": device.error or device.missing,
        "resume": device.resume,
    }
    headline = device.headline
    if headline is None:
        return [common]
    rows = []
    for factor, share in [*device.shares.items(), (TOTAL, headline.total)]:
        row = {
            **common,
            "factor": factor,
            "share_pct": _round(share.percent),
            "share_ci_low_pct": _round(share.interval[0]),
            "share_ci_high_pct": _round(share.interval[1]),
            "sign": share.sign,
            "marked": share.marked,
            "extrapolated": share.extrapolated,
        }
        if factor == TOTAL:
            row.update(
                ratio=_round(headline.ratio),
                ratio_ci_low=_round(headline.interval[0]),
                ratio_ci_high=_round(headline.interval[1]),
            )
        rows.append(row)
    return rows


def matrix_csv(report: MatrixReport) -> str:
    lines = [csv_line(MATRIX_CSV_COLUMNS)]
    for device in report.devices:
        for row in _rows(device):
            lines.append(csv_line(row.get(column) for column in MATRIX_CSV_COLUMNS))
    return "".join(lines)
