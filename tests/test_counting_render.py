"""Tables name a unit and convention in every numeric header."""

from __future__ import annotations

import io

from rich.console import Console
from rich.table import Table
from torch import nn

from ablate.counting import count_model, crosscheck
from ablate.report.console import (
    crosscheck_tables,
    kinds_table,
    layers_table,
    totals_table,
)

UNITS = ("(M)", "(MB)", "/byte", "%")


def model() -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8), nn.Hardswish()
    ).eval()


def text(table: Table) -> str:
    console = Console(file=io.StringIO(), width=240)
    console.print(table)
    return console.file.getvalue()


def headers(table: Table) -> list[str]:
    return [str(column.header) for column in table.columns]


def test_layer_table_headers_carry_units() -> None:
    table = layers_table(count_model(model(), (1, 3, 8, 8)))
    numeric = headers(table)[1:]
    assert all(any(unit in header for unit in UNITS) for header in numeric), numeric
    assert "MACs (M)" in numeric
    assert "FLOPs (M)" in numeric
    rendered = text(table)
    # layers "0", "1", "2" (the Sequential's children), then the total row
    assert "total" in rendered


def test_kind_table_lists_kinds_and_unknown_ops() -> None:
    result = count_model(model(), (1, 3, 8, 8))
    rendered = text(kinds_table(result))
    for kind in ("conv_dense", "batch_norm", "hardswish"):
        assert kind in rendered
    numeric = headers(kinds_table(result))[2:]
    assert all(any(unit in header for unit in UNITS) for header in numeric), numeric


def test_totals_table_shows_the_three_mac_conventions() -> None:
    rendered = text(totals_table(count_model(model(), (1, 3, 8, 8))))
    for name in ("macs", "madds_folded", "madds_unfolded", "bytes_fused"):
        assert name in rendered


def test_crosscheck_tables_render() -> None:
    fvcore, ptflops = crosscheck_tables(crosscheck(model(), (1, 3, 8, 8)))
    assert "unexplained residual" in text(fvcore)
    assert "ptflops (M)" in headers(ptflops)


