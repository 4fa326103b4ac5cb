"""`ablate ingest` against hostile and clumsy input: names read against the manifest's only, a
real SIGKILL mid-ingest, names the spec accepts and the CSV can carry, and bad bytes in real
files, each refused in one line through the CLI."""

from __future__ import annotations

import csv
import io
import json
import os
import signal
import stat
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from ablate.cli import app
from ablate.runs.schema import load_results
from ablate.runs.storage import (
    RESOLVED_SPEC_NAME,
    STAGING_PREFIX,
    new_run_directory,
    remove_abandoned_staging,
    staged_run_directory,
    unfinished_run,
)
from ablate.services.bundle_format import (
    DEVICE_RECORD_NAME,
    DEVICE_SCHEMA,
    TIMINGS_COLUMNS,
)

# Two networks whose names are the other's unit id: the exporter numbers units v000, v001 in
# the spec's order, so `v001` is unit v000 and `v000` is unit v001.
SPEC = """\
name: swapped
base: mobilenet_v3_small
input: {resolution: 32}
measure: {backend: onnxruntime}
baseline: v001
variants:
  v001: {width: 0.35}
  v000: {width: 0.35, se: false}
"""
SESSION = "20260101T120000-test"
MILLISECONDS = {"v001": 1.0, "v000": 3.0}


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    pytest.importorskip("onnxruntime")
    root = tmp_path_factory.mktemp("swapped")
    spec = root / "swapped.yaml"
    spec.write_text(SPEC)
    result = CliRunner().invoke(
        app, ["export", str(spec), "--backend", "onnxruntime", "-o", str(root / "b")]
    )
    assert result.exit_code == 0, result.output
    return root / "b"


def _row(round_index: object, variant: str, milliseconds: object, position: object) -> list[str]:
    cells = {
        "round": str(round_index),
        "variant": variant,
        "milliseconds": str(milliseconds),
        "position": str(position),
        "session": SESSION,
    }
    return [cells[column] for column in TIMINGS_COLUMNS]


def _csv(rows: list[list[str]]) -> str:
    text = io.StringIO()
    csv.writer(text, lineterminator="\n").writerows([list(TIMINGS_COLUMNS), *rows])
    return text.getvalue()


def _rounds(count: int = 6, **milliseconds: float) -> list[list[str]]:
    """`count` rounds of both networks, as measure.sh writes them (names, not ids)."""
    times = {**MILLISECONDS, **milliseconds}
    return [
        _row(index, name, times[name], position)
        for index in range(count)
        for position, name in enumerate(sorted(times, reverse=index % 2 == 1))
    ]


def _record(rounds: int = 6, **changes: object) -> dict[str, object]:
    record: dict[str, object] = {
        "schema": DEVICE_SCHEMA,
        "session": SESSION,
        "mode": "adb",
        "model": "Pixel 8",
        "cores": 8,
        "cpu": 7,
        "pinned": True,
        "temperature_start_raw": "31000",
        "temperature_end_raw": "33000",
        "iterations": 10,
        "warmup_iterations": 5,
        "seed": 0,
        "rounds": rounds,
        "stop_reason": "max_rounds",
        "elapsed_s": 12,
    }
    record.update(changes)
    return record


def _session(directory: Path, text: str | bytes, record: dict | bytes | None = None) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    timings = directory / "timings.csv"
    if isinstance(text, str):
        text = text.encode("utf-8")
    timings.write_bytes(text)
    if isinstance(record, dict):
        (directory / DEVICE_RECORD_NAME).write_text(json.dumps(record))
    elif record is not None:
        (directory / DEVICE_RECORD_NAME).write_bytes(record)
    return timings


@dataclass(frozen=True)
class Ingested:
    returncode: int
    stdout: str
    stderr: str

    @property
    def run(self) -> Path:
        return Path(self.stdout.strip().splitlines()[-1])


def _ingest(bundle: Path, timings: Path, out: Path) -> Ingested:
    """`ablate ingest` through the CLI, as a user sees it (stdout, stderr, exit code)."""
    result = CliRunner().invoke(app, ["ingest", str(bundle), str(timings), "--out", str(out)])
    return Ingested(result.exit_code, result.stdout, result.stderr)


def _refused(completed: Ingested) -> str:
    """The one line of a refusal: exit 2, no traceback."""
    assert completed.returncode == 2, completed.stderr
    assert "Traceback" not in completed.stderr
    lines = completed.stderr.strip().splitlines()
    assert len(lines) == 1, completed.stderr
    return lines[0]


# -- item 1: timings are read against the manifest's names only ----------------------------


def test_a_variant_named_like_another_units_id_gets_its_own_timings(
    bundle: Path, tmp_path: Path
) -> None:
    manifest = json.loads((bundle / "manifest.json").read_text())
    assert [(unit["id"], unit["name"]) for unit in manifest["units"]] == [
        ("v000", "v001"),
        ("v001", "v000"),
    ]
    timings = _session(tmp_path / "phone", _csv(_rounds()), _record())
    completed = _ingest(bundle, timings, tmp_path / "runs")
    assert completed.returncode == 0, completed.stderr
    results = load_results(completed.run)
    latency = {variant.name: variant.latency for variant in results.variants}
    assert latency["v001"] is not None and latency["v001"].median_ms == pytest.approx(1.0)
    assert latency["v000"] is not None and latency["v000"].median_ms == pytest.approx(3.0)
    assert latency["v000"].ratio_to_baseline is not None
    assert latency["v000"].ratio_to_baseline.median == pytest.approx(3.0)


# -- item 4: a SIGKILL mid-ingest ------------------------------------------------------------


def _hidden_run(out: Path) -> Path | None:
    """A hidden directory in `out` that a listing of runs would take for one."""
    if not out.is_dir():
        return None
    found = [
        p for p in out.iterdir() if p.name.startswith(".") and (p / RESOLVED_SPEC_NAME).exists()
    ]
    return found[0] if found else None


@pytest.mark.slow
def test_sigkill_mid_ingest_leaves_nothing_resume_adopts_and_the_next_ingest_cleans_up(
    bundle: Path, tmp_path: Path
) -> None:
    # 50,000 rounds: the staging directory lives for a good part of a second, long after it
    # holds the resolved spec that made a resume adopt it.
    big = _session(tmp_path / "long", _csv(_rounds(50_000)), _record(50_000))
    out = tmp_path / "runs"
    process = subprocess.Popen(
        [sys.executable, "-m", "ablate", "ingest", str(bundle), str(big), "--out", str(out)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 300
    while _hidden_run(out) is None:
        assert process.poll() is None, f"ingest ended before it was killed: {process.stderr}"
        assert time.monotonic() < deadline
        time.sleep(0.001)
    process.send_signal(signal.SIGKILL)
    assert process.wait(timeout=60) == -signal.SIGKILL
    staging = _hidden_run(out)
    assert staging is not None and staging.name.startswith(STAGING_PREFIX)
    claimed = out / staging.name.removeprefix(STAGING_PREFIX)
    assert claimed.is_dir() and not any(claimed.iterdir())  # the killed run's empty place

    spec = tmp_path / "swapped.yaml"
    spec.write_text(SPEC)
    resumed = CliRunner().invoke(
        app, ["run", str(spec), "--backend", "onnxruntime", "--resume", "--out", str(out)]
    )
    assert resumed.exit_code == 2, resumed.output
    assert "no unfinished run of 'swapped' to resume" in resumed.stderr
    assert staging.is_dir() and not (staging / "results.json").exists()  # untouched

    small = _session(tmp_path / "short", _csv(_rounds()), _record())
    completed = _ingest(bundle, small, out)
    assert completed.returncode == 0, completed.stderr
    run = completed.run
    assert sorted(path.name for path in out.iterdir()) == [run.name]
    assert load_results(run).status == "complete"


def test_a_live_writers_staging_directory_is_kept_and_an_abandoned_one_removed(
    tmp_path: Path,
) -> None:
    out = tmp_path / "runs"
    with staged_run_directory(out, "live") as (staging, final):
        (staging / "partial").write_text("x")
        # Another process's view: the claimed directory is locked (flock is per open file).
        assert remove_abandoned_staging(out) == []
        assert staging.is_dir()
    assert not staging.exists() and (final / "partial").read_text() == "x"

    # One whose claimed directory nobody locks: its writer died.
    claimed = new_run_directory(out, "dead")
    dead = out / f"{STAGING_PREFIX}{claimed.name}"
    dead.mkdir()
    # One whose claimed run directory is gone has no writer either.
    orphan = out / f"{STAGING_PREFIX}20260101-000000-gone"
    orphan.mkdir()
    (orphan / RESOLVED_SPEC_NAME).write_text("{}")
    assert sorted(remove_abandoned_staging(out)) == sorted([orphan, dead])
    assert sorted(path.name for path in out.iterdir()) == [final.name]
    # And the next run directory claimed removes them too.
    orphan.mkdir()
    new_run_directory(out, "next")
    assert not orphan.exists()


def test_a_failing_block_leaves_no_staging_and_no_claimed_directory(tmp_path: Path) -> None:
    out = tmp_path / "runs"
    with pytest.raises(RuntimeError), staged_run_directory(out, "fails") as (staging, _):
        (staging / "x").write_text("x")
        raise RuntimeError
    assert list(out.iterdir()) == []


def test_an_ingested_run_is_never_resumed_even_without_its_results(
    bundle: Path, tmp_path: Path
) -> None:
    out = tmp_path / "runs"
    completed = _ingest(bundle, _session(tmp_path / "phone", _csv(_rounds()), _record()), out)
    assert completed.returncode == 0, completed.stderr
    run = completed.run
    (run / "results.json").unlink()  # as if lost: the status no longer says complete
    resolved = json.loads((run / RESOLVED_SPEC_NAME).read_text())
    with pytest.raises(Exception, match="no unfinished run of 'swapped' to resume"):
        unfinished_run(out, resolved)


def test_an_ingested_run_directory_has_the_mode_of_a_local_one(
    bundle: Path, tmp_path: Path
) -> None:
    before = os.umask(0o022)
    try:
        local = new_run_directory(tmp_path / "local", "x")
        completed = _ingest(bundle, _session(tmp_path / "p", _csv(_rounds()), _record()), tmp_path)
    finally:
        os.umask(before)
    assert completed.returncode == 0, completed.stderr
    run = completed.run
    assert stat.S_IMODE(run.stat().st_mode) == stat.S_IMODE(local.stat().st_mode) == 0o755
    assert stat.S_IMODE((run / "results.json").stat().st_mode) == 0o644


# -- item 10: a name the spec accepts is a name the CSV carries --------------------------------


@pytest.mark.parametrize(
    "key",
    [
        '" leading"',
        '"trailing "',
        '"no-break\\_"',  # U+00A0 at the end
        '"line\\Lseparator"',  # U+2028
        '"next\\Nline"',  # U+0085 (NEL)
        '"paragraph\\Pseparator"',  # U+2029
        '"c1\\x9bcontrol"',
    ],
)
def test_the_spec_refuses_names_a_csv_row_cannot_carry(tmp_path: Path, key: str) -> None:
    spec = tmp_path / "names.yaml"
    spec.write_text(f"name: names\nvariants:\n  a: {{}}\n  {key}: {{width: 0.5}}\n")
    result = CliRunner().invoke(app, ["validate", str(spec)])
    assert result.exit_code == 2
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: {spec}:4: variants")
    assert lines[0].endswith(
        "a variant name takes 1-100 characters, no control characters or line separators, "
        "none of < > & | ` \\, no white space at either end"
    )


def test_names_with_inner_spaces_commas_and_quotes_travel_through_the_csv(
    tmp_path: Path,
) -> None:
    pytest.importorskip("onnxruntime")
    names = ['wide, "quoted" net', "é narrow"]
    spec = tmp_path / "odd.yaml"
    spec.write_text(
        "name: odd\nbase: mobilenet_v3_small\ninput: {resolution: 32}\n"
        f"baseline: {json.dumps(names[0])}\n"
        f"variants:\n  {json.dumps(names[0])}: {{width: 0.35}}\n"
        f"  {json.dumps(names[1])}: {{width: 0.35, se: false}}\n"
    )
    exported = CliRunner().invoke(
        app, ["export", str(spec), "--backend", "onnxruntime", "-o", str(tmp_path / "b")]
    )
    assert exported.exit_code == 0, exported.output
    rows = [
        _row(index, name, 1.0 + column, column)
        for index in range(6)
        for column, name in enumerate(names)
    ]
    completed = _ingest(tmp_path / "b", _session(tmp_path / "p", _csv(rows), _record()), tmp_path)
    assert completed.returncode == 0, completed.stderr
    results = load_results(completed.run)
    assert {v.name: v.latency.median_ms for v in results.variants if v.latency} == {
        names[0]: 1.0,
        names[1]: 2.0,
    }


def test_batch_0_is_refused_at_validate(tmp_path: Path) -> None:
    spec = tmp_path / "b0.yaml"
    spec.write_text("name: b0\ninput: {batch: 0}\n")
    result = CliRunner().invoke(app, ["validate", str(spec)])
    assert result.exit_code == 2
    assert result.output.strip() == f"error: {spec}:2: input.batch: must be at least 1 (got 0)"


# -- the smaller cases: real files with the bad bytes, through the CLI ----------------------

LONG_FIELD = "x" * 200_000
TIME_RULE = "must be a positive finite time, 1e-06 ms (1 ns) to 3.6e+06 ms (1 h)"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # seconds that underflow: 1e-320 ms is a positive (subnormal) float, 1e-323 s is 0
        (
            _csv(_rounds(v000="1e-320")),
            ":2: milliseconds must be a positive finite time, 1e-06 ms (1 ns) to 3.6e+06 ms (1 h)",
        ),
        (_csv(_rounds(v000="5e-324")), ":2: milliseconds must be a positive finite time"),
        (_csv(_rounds(v000="1e+300")), ":2: milliseconds must be a positive finite time"),
        # digits Python's int() and float() read and a driver never writes
        (_csv([_row("٣", "v001", 1.0, 0)]), ":2: round must be a whole number >= 0 (got '٣')"),
        (_csv([_row(0, "v001", 1.0, "３")]), ":2: position must be a whole number >= 0 (got '３')"),
        (_csv([_row(0, "v001", "１.5", 0)]), ":2: milliseconds is not a number (got '１.5')"),
        (_csv([_row(0, "v001", "1_5", 0)]), ":2: milliseconds is not a number (got '1_5')"),
        (_csv([_row("1" * 10, "v001", 1, 0)]), ":2: round has more than 9 digits"),
        # a field over csv's limit, one endless line, a NUL, bytes that are not UTF-8
        (_csv([_row(0, LONG_FIELD, 1.0, 0)]), ":2: a field over 131072 characters"),
        (_csv([]) + "x" * 3_000_000, ":2: line longer than"),
        (
            _csv([*_rounds(), _row(6, "v001\0", 1.0, 0)]),
            ":14: variant: unknown variant 'v001\\x00'",
        ),
        (_csv(_rounds()).encode() + b"0,v\xff,1.0,0,s\n", ":14: not UTF-8 text"),
        # the unit ids are no names
        (
            _csv([_row(0, "v002", 1.0, 0)]),
            ":2: variant: unknown variant 'v002' (not in the bundle)",
        ),
    ],
)
def test_bad_bytes_in_timings_are_one_line_exit_2(
    bundle: Path, tmp_path: Path, text: str | bytes, expected: str
) -> None:
    timings = _session(tmp_path / "p", text)
    line = _refused(_ingest(bundle, timings, tmp_path / "runs"))
    assert line.startswith(f"error: {timings}{expected}"), line
    assert not (tmp_path / "runs").exists()


def test_a_utf8_bom_is_accepted_in_timings_and_device_record(bundle: Path, tmp_path: Path) -> None:
    bom = b"\xef\xbb\xbf"
    record = bom + json.dumps(_record()).encode()
    timings = _session(tmp_path / "p", bom + _csv(_rounds()).encode(), record)
    completed = _ingest(bundle, timings, tmp_path / "runs")
    assert completed.returncode == 0, completed.stderr
    results = load_results(completed.run)
    assert results.environment["measured_on_device"]["model"] == "Pixel 8"


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (
            {"iterations": "10"},
            "iterations: expected a whole number from 1 to 2147483647 (got '10')",
        ),
        ({"iterations": 0}, "iterations: expected a whole number from 1 to 2147483647 (got 0)"),
        ({"cores": True}, "cores: expected a whole number from 1 to 2147483647 (got True)"),
        ({"pinned": "yes"}, "pinned: expected true or false (got 'yes')"),
        ({"model": ["Pixel"]}, "model: expected text (got ['Pixel'])"),
        ({"elapsed_s": -1}, "elapsed_s: expected a finite number of seconds >= 0 (got -1)"),
        ({"elapsed_s": 10**400}, "elapsed_s: expected a finite number of seconds >= 0"),
        ({"soc": "x" * 1001}, "soc: longer than 1000 characters"),
    ],
)
def test_a_badly_typed_device_record_is_one_line_exit_2(
    bundle: Path, tmp_path: Path, change: dict, expected: str
) -> None:
    timings = _session(tmp_path / "p", _csv(_rounds()), _record(**change))
    line = _refused(_ingest(bundle, timings, tmp_path / "runs"))
    assert line.startswith(f"error: {timings.parent / DEVICE_RECORD_NAME}: {expected}"), line


def test_a_non_finite_device_record_number_is_one_line(bundle: Path, tmp_path: Path) -> None:
    record = json.dumps(_record()).replace('"elapsed_s": 12', '"elapsed_s": NaN').encode()
    timings = _session(tmp_path / "p", _csv(_rounds()), record)
    line = _refused(_ingest(bundle, timings, tmp_path / "runs"))
    assert line.endswith("elapsed_s: expected a finite number of seconds >= 0 (got nan)")


def _tampered(bundle: Path, tmp_path: Path, change) -> Path:  # type: ignore[no-untyped-def]
    copy = tmp_path / "tampered"
    subprocess.run(["cp", "-a", str(bundle), str(copy)], check=True)
    manifest = json.loads((copy / "manifest.json").read_text())
    change(manifest)
    (copy / "manifest.json").write_text(json.dumps(manifest))
    return copy


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (
            lambda m: m["variants"][1].update(measured_as="v002"),
            "variants[1].measured_as: names no unit of the bundle (v001, v000) (got 'v002')",
        ),
        (
            lambda m: m["variants"][1].update(measured_as="v001"),
            "variants[1].measured_as: 'v001'; the spec times 'v000' as 'v000'",
        ),
        (
            lambda m: m["units"][0]["input_shape"].__setitem__(0, 0),
            "units[0].input_shape: expected 4 sizes >= 1 (batch, C, H, W) (got [0, 3, 32, 32])",
        ),
        (
            lambda m: m["units"][1].update(name="v000\u2028"),
            "units[1].name: not a variant name a spec accepts (got 'v000\\u2028')",
        ),
        (lambda m: m.update(baseline=["v001"]), "baseline: expected text (got ['v001'])"),
        (lambda m: m.update(baseline="v002"), "baseline: not one of the units (v001, v000)"),
        (lambda m: m.update(units={}), "units: expected a non-empty list (got {})"),
        (lambda m: m["variants"].__setitem__(0, "v001"), "variants[0]: expected an object"),
        (
            lambda m: m["variants"][0].update(macs="many"),
            "variants[0]: Input should be a valid integer, unable to parse string as an "
            "integer (at macs)",
        ),
    ],
)
def test_a_tampered_manifest_field_is_one_line_exit_2(
    bundle: Path,
    tmp_path: Path,
    change,
    expected: str,  # type: ignore[no-untyped-def]
) -> None:
    tampered = _tampered(bundle, tmp_path, change)
    timings = _session(tmp_path / "p", _csv(_rounds()), _record())
    line = _refused(_ingest(tampered, timings, tmp_path / "runs"))
    assert line.startswith(f"error: {tampered / 'manifest.json'}: {expected}"), line


# -- what makes a long session fast: one journal write, a direct bootstrap -------------------


def test_the_journal_written_at_once_is_the_one_appended_round_by_round(tmp_path: Path) -> None:
    from ablate.runs.storage import append_round, read_journal, write_journal

    names = ['a,"b"', "é 100%", "z"]
    seconds = np.array([[0.0015, 2e-9, 1.0 / 3], [3.0, 0.25, 1e-3]])
    write_journal(tmp_path / "at-once.jsonl", names, seconds, cache_state="warm")
    for index, row in enumerate(seconds.tolist()):
        append_round(
            tmp_path / "appended.jsonl",
            index,
            dict(zip(names, row, strict=True)),
            cache_state="warm",
        )
    assert (tmp_path / "at-once.jsonl").read_bytes() == (tmp_path / "appended.jsonl").read_bytes()
    journal = read_journal(tmp_path / "at-once.jsonl", set(names))
    assert journal.rounds == [dict(zip(names, row, strict=True)) for row in seconds.tolist()]
    assert journal.cache_state == "warm"
