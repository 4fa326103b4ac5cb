"""Text from outside the spec's closed vocabularies, in every output a report writes.

A results file with hostile text in every free-text field (the environment and a phone's
device record, the description, factor values, op and module names, noise flags, notes, the
references' sources, variant names where the name rule lets it through): the Markdown report
shows it escaped and keeps its tables whole, the CSV quotes and prefixes what a spreadsheet
would run, the console prints no ESC byte and applies no rich markup, plots typeset no math.
"""

from __future__ import annotations

import csv
import io
import json
import re
from pathlib import Path
from typing import Any

import pytest
from report_golden import FIXTURE_RUNS, fixture_document, fixture_results, modified_results
from rich.console import Console, RenderableType
from typer.testing import CliRunner

from ablate.cli import app
from ablate.report.compare import compare_variants
from ablate.report.compare_console import (
    comparison_renderables,
    print_renderables,
    run_comparison_renderables,
    run_renderables,
)
from ablate.report.escaping import (
    console_text,
    csv_field,
    escaped,
    markdown_link,
    markdown_text,
    plot_text,
)
from ablate.report.markdown import render_markdown
from ablate.report.plots import LATENCY_VS_MACS, WATERFALL
from ablate.report.write import CSV_COLUMNS, comparison_csv

HOSTILE = (
    "<script>alert(1)</script> <img src=x onerror=alert(1)> [x](javascript:alert(1)) "
    'a|b \x1b[31mred\x1b[0m [bold]b[/bold] =HYPERLINK("http://evil.example") line\nbreak '
    "$x$ `code` *em* _u_ \x85next\u2028sep\x07bell"
)
# The same, escaped for Markdown and HTML.
HOSTILE_MARKDOWN = (
    "&lt;script&gt;alert(1)&lt;/script&gt; &lt;img src=x onerror=alert(1)&gt; "
    r"\[x\](javascript:alert(1)) a\|b ␛\[31mred␛\[0m \[bold\]b\[/bold\] "
    r'=HYPERLINK("http://evil.example") line break \$x\$ \`code\` \*em\* \_u_  next sep␇bell'
)
# A reference's source and a variant name refuse < > & | ` \ and control characters; the rest
# of the hostile text gets through and must be escaped like any other.
HOSTILE_SOURCE = "[x](javascript:alert(1)) [bold]b[/bold] $x$ *em* =1+2"
HOSTILE_NAME = "[x](javascript:alert(1)) [bold]b[/bold] $x$"
RAW_FRAGMENTS = (
    "<script",
    "<img",
    "[x](javascript",
    "\x1b",
    "[bold]",
    "line\nbreak",
    "`code`",
    "\x85",
    "\u2028",
    "\x07",
)


def _hostile(document: dict[str, Any]) -> None:
    """Hostile text in every free-text field of a why_eager results document."""
    document["description"] = HOSTILE
    document["created"] = HOSTILE
    environment = document["environment"]
    for key in ("cpu_model", "device_name", "operating_system", "python_version"):
        environment[key] = HOSTILE
    environment["torch_version"] = [HOSTILE, 2]  # a badly typed field, shown as written
    # What ingest writes from a phone's device.json.
    environment["measured_on_device"] = {"model": HOSTILE, "governor": HOSTILE, "soc": HOSTILE}
    document["measurement"]["device"] = HOSTILE
    for variant in document["variants"]:
        variant["factors"] = {**variant["factors"], "note": HOSTILE, HOSTILE: [HOSTILE, 1]}
        variant["unknown_ops"] = {HOSTILE: {"calls": 2, "modules": [HOSTILE, "blocks.0"]}}
        if variant["latency"] is not None:
            variant["latency"]["flags"] = [{"name": HOSTILE, "detail": HOSTILE}]
    document["variants"][0]["reference"] = {"latency_ms": 64, "source": HOSTILE_SOURCE}
    document["variants"][-1]["reference"] = {"latency_ms": 51, "source": HOSTILE_SOURCE}
    document["attribution_reference"]["last_stage"]["source"] = HOSTILE_SOURCE
    document["attribution"]["notes"] = [HOSTILE]


def _second(document: dict[str, Any]) -> None:
    _hostile(document)
    document["environment"]["cpu_model"] = "another " + HOSTILE
    document["environment"]["measured_on_device"]["model"] = "another " + HOSTILE


def _cells(line: str) -> int:
    """The cells of a Markdown table row: pipes not escaped by a backslash, less one."""
    pipes, index = 0, 0
    while index < len(line):
        if line[index] == "\\":
            index += 2
            continue
        pipes += line[index] == "|"
        index += 1
    return pipes - 1


def _tables(text: str) -> list[list[str]]:
    tables: list[list[str]] = []
    previous = ""
    for line in text.splitlines():
        if line.startswith("|"):
            if not previous.startswith("|"):
                tables.append([])
            tables[-1].append(line)
        previous = line
    return tables


def test_the_markdown_report_shows_every_hostile_text_escaped() -> None:
    text = render_markdown(
        modified_results("why_eager", _hostile),
        plots={LATENCY_VS_MACS: "my run (1)/report-latency_vs_macs.png", WATERFALL: "w.png"},
        versus=modified_results("why_eager", _second),
    )
    for fragment in RAW_FRAGMENTS:
        assert fragment not in text, fragment
    # Every field shows the escaped text (the description as its own paragraph, one line).
    assert f"# ablate report: why_v3_faster\n\n{HOSTILE_MARKDOWN}\n\n" in text
    assert text.count(HOSTILE_MARKDOWN) > 50
    for shown in (
        f"| CPU | {HOSTILE_MARKDOWN} |",
        f"| operating system | {HOSTILE_MARKDOWN} |",
        f"| torch | ['{HOSTILE_MARKDOWN}', 2] |",
        f"| device | {HOSTILE_MARKDOWN} |",
        f'note={HOSTILE_MARKDOWN}, {HOSTILE_MARKDOWN}=["{HOSTILE_MARKDOWN}", 1]',
        f"- to:{{}}: {HOSTILE_MARKDOWN}: {HOSTILE_MARKDOWN}",  # a noise flag
        f"{HOSTILE_MARKDOWN} x2 at {HOSTILE_MARKDOWN}, blocks.0",  # an unknown op
        f"Note: {HOSTILE_MARKDOWN}",
        f"| measured_on_device.model | {HOSTILE_MARKDOWN} | another {HOSTILE_MARKDOWN} |",
        r"(\[x\](javascript:alert(1)) \[bold\]b\[/bold\] \$x\$ \*em\* =1+2)",  # sources
    ):
        assert shown in text, shown
    # Figure paths are link destinations: a space or a parenthesis cannot end the link.
    assert "](my%20run%20%281%29/report-latency_vs_macs.png)" in text
    # Table rows stay rows: every row of every table has its header's cells.
    tables = _tables(text)
    assert len(tables) >= 10
    for table in tables:
        assert {_cells(row) for row in table} == {_cells(table[0])}, table[0]


def test_names_the_spec_accepts_are_escaped_too() -> None:
    def renamed(document: dict[str, Any]) -> None:
        for variant in document["variants"]:
            if variant["name"] == "v3_relu":
                variant["name"] = variant["measured_as"] = HOSTILE_NAME

    results = modified_results("hswish_eager", renamed)
    text = render_markdown(results, plots={})
    assert "[x](javascript" not in text and "[bold]" not in text
    assert r"| \[x\](javascript:alert(1)) \[bold\]b\[/bold\] \$x\$ | mobilenet_v3_large |" in text
    # A --baseline names the variant as the user typed it.
    rebased = render_markdown(results, plots={}, baseline=HOSTILE_NAME)
    assert r"Baseline: **\[x\](javascript:alert(1)) \[bold\]b\[/bold\] \$x\$**" in rebased


def test_csv_cells_that_start_like_a_formula_are_quoted_text() -> None:
    names = {
        "v3_relu": '=HYPERLINK("http://evil.example","x")',
        "v3_hswish_at_16": "@SUM(1+1)",
        "mobilenet_v2": "+cmd",
    }

    def formulas(document: dict[str, Any]) -> None:
        for variant in document["variants"]:
            if variant["name"] in names:
                variant["name"] = variant["measured_as"] = names[variant["name"]]
            if variant["latency"] is not None:
                variant["latency"]["flags"] = [{"name": "-2+3", "detail": "x"}]

    text = comparison_csv(modified_results("hswish_eager", formulas))
    # OWASP: a leading single quote, inside a quoted cell, embedded quotes doubled.
    assert '\n"\'=HYPERLINK(""http://evil.example"",""x"")",False,' in text
    assert '\n"\'@SUM(1+1)",False,"\'@SUM(1+1)",' in text
    assert '\n"\'+cmd",False,"\'+cmd",' in text
    rows = list(csv.reader(io.StringIO(text)))
    assert rows[0] == list(CSV_COLUMNS)
    assert all(len(row) == len(CSV_COLUMNS) for row in rows)
    by_name = {row[0]: dict(zip(CSV_COLUMNS, row, strict=True)) for row in rows[1:]}
    assert set(by_name) == {"v3_published", *(f"'{name}" for name in names.values())}
    assert by_name["'+cmd"]["noise_flags"] == "'-2+3"
    # Numbers are numbers: a negative change is written as it is, unquoted.
    changes = [row["latency_delta_pct"] for row in by_name.values()]
    negative = [change for change in changes if change.startswith("-")]
    assert negative and all(float(change) < 0 and f",{change}," in text for change in negative)


def test_the_csv_of_the_fixtures_is_as_before() -> None:
    """No fixture name needs quoting: the writer's output is the csv module's."""
    from ablate.report.write import comparison_row

    for name in FIXTURE_RUNS:
        results = fixture_results(name)
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=CSV_COLUMNS, lineterminator="\n")
        writer.writeheader()
        for row in compare_variants(results).rows:
            values = comparison_row(row)
            writer.writerow(
                {
                    key: ""
                    if value is None
                    else ";".join(value)
                    if isinstance(value, list)
                    else value
                    for key, value in values.items()
                }
            )
        assert comparison_csv(results) == buffer.getvalue()


def test_ablate_report_writes_the_hostile_run_escaped(tmp_path: Path) -> None:
    """The command end to end, to stdout: Markdown (its figures drawn), CSV and JSON."""
    document = fixture_document("why_eager")
    _hostile(document)
    run = tmp_path / "run"
    run.mkdir()
    (run / "results.json").write_text(json.dumps(document), encoding="utf-8")
    runner = CliRunner()
    markdown = runner.invoke(app, ["report", str(run), "--markdown", "-o", "-"])
    assert markdown.exit_code == 0, markdown.output
    assert HOSTILE_MARKDOWN in markdown.output
    for fragment in RAW_FRAGMENTS:
        assert fragment not in markdown.output, fragment
    for flag in ("--csv", "--json"):
        result = runner.invoke(app, ["report", str(run), flag, "-o", "-"])
        assert result.exit_code == 0, result.output
        assert "\x1b" not in result.output and "\x85" not in result.output


def _printed(parts: list[RenderableType], **options: Any) -> str:
    buffer = io.StringIO()
    console = Console(file=buffer, width=3000, **options)
    print_renderables(parts, console)
    return buffer.getvalue()


def test_the_console_prints_no_control_character_and_applies_no_markup() -> None:
    hostile = modified_results("why_eager", _hostile)
    second = modified_results("why_eager", _second)
    outputs = [
        comparison_renderables(hostile),
        comparison_renderables(hostile, baseline="to:{last_stage}"),
        run_comparison_renderables(hostile, second),
        run_renderables(compare_variants(hostile)),
    ]
    for parts in outputs:
        plain = _printed(parts, color_system=None, force_terminal=False)
        assert "\x1b" not in plain and "\x07" not in plain and "\x85" not in plain
        assert "\u2028" not in plain and "line\nbreak" not in plain
        # The markup is printed as the characters it is, not applied.
        assert "[bold]b[/bold]" in plain and "␛[31mred␛[0m" in plain
        # On a colour terminal only the renderers' own styles are escape sequences.
        styled = _printed(parts, color_system="standard", force_terminal=True)
        assert "\x1b[31mred" not in styled and "[bold]b[/bold]" in styled
    assert "<script>alert(1)</script>" in _printed(outputs[0], color_system=None)


def test_a_plot_typesets_no_math_from_the_results(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import ablate.report.plots as plots

    def renamed(document: dict[str, Any]) -> None:
        for variant in document["variants"]:
            if variant["name"] == "v3_relu":
                variant["name"] = variant["measured_as"] = "relu $x^2$"

    seen = []
    drawn = plots.draw_latency_vs_macs
    monkeypatch.setattr(plots, "draw_latency_vs_macs", lambda r: seen.append(r) or drawn(r))
    written = plots.write_report_plots(modified_results("hswish_eager", renamed), tmp_path)
    assert LATENCY_VS_MACS in written and (tmp_path / written[LATENCY_VS_MACS]).stat().st_size
    (shown,) = seen
    assert [v.name for v in shown.variants if "relu" in v.name] == [r"relu \$x^2\$"]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("x86_64 aten::hardtanh_ to:{stem_channels,activation}", None),  # unchanged
        ("AMD EPYC 7B13, 2.13.0+cpu, Linux-6.1.0-x86_64-with-glibc2.36", None),
        ("MobileNetV3 §5.1, Pixel-1: 11% of 64 ms", None),
        ("<b>&amp;</b>", "&lt;b&gt;&amp;amp;&lt;/b&gt;"),
        ("![img](x) # h ~~s~~", r"!\[img\](x) \# h \~\~s\~\~"),
        (r"C:\path\_x", r"C:\\path\\\_x"),
        ("_a_ b_ __init__", r"\_a_ b_ \_\_init_\_"),
        ("tab\there\r\nCR", "tab here  CR"),
        ("\x00\x1b\x7f\x9b\u202e", "␀␛\u2421\ufffd\ufffd"),
    ],
)
def test_markdown_text(text: str, expected: str | None) -> None:
    assert markdown_text(text) == (text if expected is None else expected)


def test_console_and_plot_text() -> None:
    assert console_text("[bold red]x[/bold red] \x1b[2J") == r"\[bold red]x\[/bold red] ␛[2J"
    assert console_text("[95% CI] to:{se}") == "[95% CI] to:{se}"  # no tag: as it is
    assert plot_text("a $x^2$\nb") == r"a \$x^2\$ b"


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, ""),
        (True, "True"),
        (-1.5, "-1.5"),  # a number is never a formula
        ("plain", "plain"),
        ("a,b", '"a,b"'),
        ('say "hi"', '"say ""hi"""'),
        ("=1+2", '"\'=1+2"'),
        ("-1", '"\'-1"'),
        ("@A1", '"\'@A1"'),
        ('+x,"y"', '"\'+x,""y"""'),
        ("\t=1", '"\' =1"'),  # a tab before it: still a formula to a spreadsheet
        ("a\nb\x1b", "a b␛"),
    ],
)
def test_csv_field(value: object, expected: str) -> None:
    assert csv_field(value) == expected


def test_markdown_link() -> None:
    assert markdown_link("report-waterfall.png") == "report-waterfall.png"
    assert markdown_link("../runs/a b)/<x>.png") == "../runs/a%20b%29/%3Cx%3E.png"


def test_escaping_a_clean_model_returns_it_unchanged() -> None:
    """The fixtures hold no text to escape: each renderer sees the very same objects (and the
    golden files stay as they were)."""
    for name in FIXTURE_RUNS:
        results = fixture_results(name)
        for escape in (markdown_text, console_text, plot_text):
            assert escaped(results, escape) is results
        comparison = compare_variants(results)
        assert escaped(comparison, console_text) is comparison


def test_escaping_reaches_keys_items_and_nested_models() -> None:
    results = modified_results("hswish_eager", lambda d: d["environment"].update({"<k>": ["<v>"]}))
    shown = escaped(results, markdown_text)
    assert shown.environment["&lt;k&gt;"] == ["&lt;v&gt;"]
    assert "<k>" in results.environment  # the original is left alone
    assert shown.variants is results.variants  # untouched parts are shared, not copied
    assert re.fullmatch(r"[\w.:+-]+", shown.created)
