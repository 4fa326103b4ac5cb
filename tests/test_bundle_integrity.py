"""A shared bundle is checked, not trusted: links, edited files, sessions, formula names.

Every fault is made for real on a real exported bundle: a symbolic link inside it, a file
edited after the export, a second session SIGKILLed half-way, names a spreadsheet would run.
"""

from __future__ import annotations

import csv
import hashlib
import importlib.util
import json
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from typer.testing import CliRunner

from ablate.cli import app
from ablate.errors import InputFileError
from ablate.runs.schema import load_results
from ablate.services.bundle_format import (
    BENCHMARK_ARGUMENTS,
    check_session,
    name_of_cell,
    timings_cell,
)

# Three networks, with names that start as spreadsheet formulas do (and one with the escape).
SPEC = """\
name: integrity
base: mobilenet_v3_small
input: {resolution: 32}
measure: {backend: onnxruntime}
baseline: "=1+1"
variants:
  "=1+1": {width: 0.35}
  "-se": {width: 0.35, se: false}
  "'@x": {width: 0.35, activation: relu}
"""
NAMES = ["=1+1", "-se", "'@x"]
PRECIOUS = "precious, outside the bundle\n"


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    pytest.importorskip("onnxruntime")
    root = tmp_path_factory.mktemp("integrity")
    spec = root / "integrity.yaml"
    spec.write_text(SPEC)
    result = CliRunner().invoke(
        app, ["export", str(spec), "--backend", "onnxruntime", "-o", str(root / "b")]
    )
    assert result.exit_code == 0, result.output
    return root / "b"


def measure(
    bundle: Path, out: Path | None = None, **settings: str
) -> subprocess.CompletedProcess[str]:
    """measure.sh on this machine (its one host runner), 6 short rounds unless told."""
    environment = {
        **os.environ,
        "ABLATE_MODE": "host",
        "ROUNDS": "6",
        "MIN_ROUNDS": "6",
        "ITERATIONS": "1",
        "WARMUP": "1",
        **settings,
    }
    if out is not None:
        environment["OUT_DIR"] = str(out)
    return subprocess.run(
        ["sh", str(bundle / "measure.sh")],
        env=environment,
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.fixture(scope="module")
def measured(bundle: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A complete session of `bundle`: the directory holding timings.csv and device.json."""
    out = tmp_path_factory.mktemp("measured")
    completed = measure(bundle, out)
    assert completed.returncode == 0, completed.stderr
    return out


def copy_of(bundle: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "bundle"
    shutil.copytree(bundle, copy, symlinks=True)
    return copy.resolve()  # as measure.sh names it (`pwd -P`)


def ingest(bundle: Path, timings: Path, out: Path) -> Any:
    return CliRunner().invoke(app, ["ingest", str(bundle), str(timings), "--out", str(out)])


def refused(result: Any) -> str:
    """The one line a refusal printed, checked to be one line with exit code 2."""
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1, result.output
    return lines[0]


def set_manifest_hash(bundle: Path, name: str) -> None:
    """What a careful tamperer does: the manifest's sha256 of `name` made to match."""
    manifest = json.loads((bundle / "manifest.json").read_text())
    manifest["files"][name] = hashlib.sha256((bundle / name).read_bytes()).hexdigest()
    (bundle / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")


# -- symbolic links ---------------------------------------------------------------------------


@pytest.mark.parametrize("link", ["timings.csv", "device.json", "models/v000.onnx.orig"])
def test_the_driver_refuses_a_bundle_holding_a_link_and_writes_nothing_through_it(
    bundle: Path, tmp_path: Path, link: str
) -> None:
    """`timings.csv -> ~/victim`: the unmodified measure.sh used to overwrite the victim."""
    copy = copy_of(bundle, tmp_path)
    victim = tmp_path / "victim"
    victim.write_text(PRECIOUS)
    (copy / link).symlink_to(victim)
    completed = measure(copy)  # OUT_DIR: the bundle itself, the default
    assert completed.returncode == 2
    assert completed.stderr == (
        f"measure.sh: {copy / link} is a symbolic link: a bundle holds none (a link could "
        "make this script write outside the bundle); export the bundle again\n"
    )
    assert victim.read_text() == PRECIOUS
    assert (copy / link).is_symlink()
    assert sorted(path.name for path in copy.iterdir() if path.name.startswith(".")) == []


@pytest.mark.parametrize("name", ["timings.csv", "device.json"])
def test_the_driver_writes_no_output_through_a_link_outside_the_bundle(
    bundle: Path, tmp_path: Path, name: str
) -> None:
    out = (tmp_path / "out").resolve()
    out.mkdir()
    victim = tmp_path / "victim"
    victim.write_text(PRECIOUS)
    (out / name).symlink_to(victim)
    completed = measure(bundle, out)
    assert completed.returncode == 2
    assert completed.stderr == (
        f"measure.sh: {out / name} is a symbolic link or not a regular file: measure.sh "
        "writes no file through one; remove it\n"
    )
    assert victim.read_text() == PRECIOUS
    assert sorted(path.name for path in out.iterdir()) == [name]


def test_ingest_refuses_a_link_inside_the_bundle(
    bundle: Path, measured: Path, tmp_path: Path
) -> None:
    copy = copy_of(bundle, tmp_path)
    elsewhere = tmp_path / "run_host.py"
    shutil.move(copy / "run_host.py", elsewhere)
    (copy / "run_host.py").symlink_to(elsewhere)  # the same bytes, through a link
    line = refused(ingest(copy, measured / "timings.csv", tmp_path / "runs"))
    assert line == (
        f"error: {copy / 'run_host.py'}: a symbolic link inside the bundle; a bundle holds "
        "none: export it again"
    )
    assert not (tmp_path / "runs").exists()


# -- edited files -------------------------------------------------------------------------------

EDITED = ["measure.sh", "run_host.py", "bundle.env", "variants.txt", "models/v001.onnx"]


def edit(file: Path) -> None:
    """An edit that leaves the file working: a comment (or a byte, for a program)."""
    with file.open("ab") as handle:
        handle.write(b"\n# edited\n" if file.suffix != ".onnx" else b"\0")


@pytest.mark.parametrize("name", EDITED)
def test_the_driver_refuses_an_edited_file_before_timing_anything(
    bundle: Path, tmp_path: Path, name: str
) -> None:
    copy = copy_of(bundle, tmp_path)
    edit(copy / name)
    completed = measure(copy, tmp_path / "out")
    assert completed.returncode == 2
    assert completed.stderr == (
        f"measure.sh: {copy / name}: sha256 differs from manifest.json's: the file changed "
        "since the export; export the bundle again\n"
    )
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("name", EDITED)
def test_ingest_refuses_an_edited_file_naming_it(
    bundle: Path, measured: Path, tmp_path: Path, name: str
) -> None:
    copy = copy_of(bundle, tmp_path)
    edit(copy / name)
    line = refused(ingest(copy, measured / "timings.csv", tmp_path / "runs"))
    assert line == (
        f"error: {copy / name}: sha256 differs from manifest.json's: the file changed since "
        "the export; export the bundle again"
    )
    assert not (tmp_path / "runs").exists()


def test_swapped_names_in_variants_txt_are_refused_even_with_the_manifest_hash_updated(
    bundle: Path, measured: Path, tmp_path: Path
) -> None:
    """The edit that mis-attributes timings: each program timed under another's name."""
    copy = copy_of(bundle, tmp_path)
    lines = (copy / "variants.txt").read_text().splitlines(keepends=True)
    names = [line.rsplit("\t", 1)[1] for line in lines]
    swapped = [line.rsplit("\t", 1)[0] + "\t" + names[(i + 1) % 3] for i, line in enumerate(lines)]
    (copy / "variants.txt").write_text("".join(swapped))
    set_manifest_hash(copy, "variants.txt")
    line = refused(ingest(copy, measured / "timings.csv", tmp_path / "runs"))
    assert line == (
        f"error: {copy / 'variants.txt'}: not the list of programs and names that "
        "manifest.json's units make: the list measure.sh times was edited; export the bundle "
        "again"
    )


def test_bundle_env_is_read_as_data_never_run(bundle: Path, tmp_path: Path) -> None:
    """A settings file with a command in it, and flags that would reach the target's shell:
    the command never runs, and the flags are refused before anything is timed."""
    copy = copy_of(bundle, tmp_path)
    marker = tmp_path / "ran"
    settings = (
        (copy / "bundle.env")
        .read_text()
        .replace(
            "BUNDLE_BENCHMARK_ARGS=-m times", f"BUNDLE_BENCHMARK_ARGS=$(touch {marker}) -m times"
        )
    )
    (copy / "bundle.env").write_text(settings + f"touch {marker}\n")
    set_manifest_hash(copy, "bundle.env")
    completed = measure(copy, tmp_path / "out")
    assert completed.returncode == 2
    assert completed.stderr == (
        f"measure.sh: {copy / 'bundle.env'}: BUNDLE_BENCHMARK_ARGS holds a character other "
        "than letters, digits, spaces and _{}=.,:/-\n"
    )
    assert not marker.exists()


def test_a_manifest_without_the_driver_files_hashes_is_refused(
    bundle: Path, measured: Path, tmp_path: Path
) -> None:
    copy = copy_of(bundle, tmp_path)
    manifest = json.loads((copy / "manifest.json").read_text())
    del manifest["files"]["run_host.py"]
    (copy / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    line = refused(ingest(copy, measured / "timings.csv", tmp_path / "runs"))
    assert line == (
        f"error: {copy / 'manifest.json'}: files: lists ['bundle.env', 'measure.sh', "
        "'variants.txt']; expected the driver's files; valid: bundle.env, measure.sh, "
        "run_host.py, variants.txt"
    )
    completed = measure(copy, tmp_path / "out")
    assert completed.returncode == 2
    assert completed.stderr == (
        f"measure.sh: {copy / 'manifest.json'} lists no sha256 for run_host.py: not a bundle "
        "of this ablate; export it again\n"
    )


# -- sessions -------------------------------------------------------------------------------


def _serving(bundle: Path) -> list[int]:
    """The host runners of `bundle` that are running (their process ids)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            arguments = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if str(bundle.resolve() / "run_host.py").encode() in arguments and b"--serve" in arguments:
            found.append(int(entry.name))
    return found


def _complete_rows(timings: Path) -> int:
    return max(len(timings.read_text().splitlines()) - 1, 0) if timings.exists() else 0


@pytest.mark.skipif(not Path("/proc/self/cmdline").exists(), reason="needs /proc")
def test_an_interrupted_second_session_is_ingested_with_its_own_record(
    bundle: Path, tmp_path: Path
) -> None:
    """Session 1 completes; session 2 (other settings) is SIGKILLed half-way. Its rows are
    ingested with its own record, never session 1's; session 1's record beside them is
    refused; the host runner of the killed session ends."""
    out = tmp_path / "out"
    first = measure(bundle, out, ROUNDS="7", ITERATIONS="3", SEED="1")
    assert first.returncode == 0, first.stderr
    first_record = json.loads((out / "device.json").read_text())
    assert first_record["rounds"] == 7 and first_record["iterations"] == 3

    environment = {
        **os.environ,
        "ABLATE_MODE": "host",
        "OUT_DIR": str(out),
        "ROUNDS": "1000000",
        "MIN_ROUNDS": "6",
        "BUDGET_S": "100000",
        "ITERATIONS": "1",
        "WARMUP": "1",
        "SEED": "2",
    }
    second = subprocess.Popen(
        ["sh", str(bundle / "measure.sh")],
        env=environment,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    timings = out / "timings.csv"
    deadline = time.monotonic() + 120
    while not (
        json.loads((out / "device.json").read_text())["session"] != first_record["session"]
        and _complete_rows(timings) >= 8 * 3
    ):
        assert second.poll() is None and time.monotonic() < deadline, "session 2 stalled"
        time.sleep(0.02)
    second.send_signal(signal.SIGKILL)
    second.wait()
    assert second.returncode == -signal.SIGKILL

    # The runner sees its requests end and exits: nothing of the session is left running.
    deadline = time.monotonic() + 30
    while _serving(bundle) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _serving(bundle) == []

    record = json.loads((out / "device.json").read_text())
    assert record["stop_reason"] == "interrupted" and record["rounds"] is None
    assert record["iterations"] == 1 and record["seed"] == 2
    with timings.open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert {row["session"] for row in rows} == {record["session"]}
    taken = len(rows) // 3
    assert len(rows) == taken * 3 and taken >= 8  # only complete rounds

    result = ingest(bundle, timings, tmp_path / "runs")
    assert result.exit_code == 0, result.output
    results = load_results(Path(result.output.strip().splitlines()[-1]))
    assert results.measurement is not None and results.measurement.rounds == taken
    on_device = results.environment["measured_on_device"]
    assert on_device["iterations_per_round"] == 1  # session 2's, not session 1's 3

    # Session 1's record beside session 2's rows (the record an older driver left there).
    (out / "device.json").write_text(json.dumps(first_record))
    line = refused(ingest(bundle, timings, tmp_path / "runs-stale"))
    assert line == (
        f"error: {out / 'device.json'}: session: the record of session "
        f"'{first_record['session']}', but the timings are of session '{record['session']}': "
        "it belongs to another session, of another run of measure.sh; ingest the timings "
        "with their own device.json"
    )
    assert not (tmp_path / "runs-stale").exists()


def test_a_finished_record_must_count_the_rounds_of_its_timings(
    bundle: Path, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    completed = measure(bundle, out, ROUNDS="7")
    assert completed.returncode == 0, completed.stderr
    timings = out / "timings.csv"
    lines = timings.read_text().splitlines(keepends=True)
    timings.write_text("".join(line for line in lines if not line.startswith("6,")))
    line = refused(ingest(bundle, timings, tmp_path / "runs"))
    assert line == (
        f"error: {out / 'device.json'}: rounds: 7 rounds, but the timings hold 6 complete "
        "rounds of its session: rows were added or removed since"
    )


@pytest.mark.parametrize(
    ("record", "problem"),
    [
        ({}, None),  # timings written by hand: nothing to check
        ({"session": "S", "stop_reason": "max_rounds", "rounds": 6}, None),
        ({"session": "S", "stop_reason": "budget", "rounds": 6}, None),
        ({"session": "S", "stop_reason": "interrupted", "rounds": None}, None),
        ({"stop_reason": "max_rounds", "rounds": 6}, "session: missing: the id of its session"),
        (
            {"session": "S", "stop_reason": "max_rounds", "rounds": 5},
            "rounds: 5 rounds, but the timings hold 6 complete rounds of its session: rows "
            "were added or removed since",
        ),
        (
            {"session": "S", "stop_reason": "running", "rounds": 6},
            "stop_reason: unknown stop reason 'running'; valid: budget, max_rounds, interrupted",
        ),
        (
            {"session": "T", "stop_reason": "max_rounds", "rounds": 6},
            "session: the record of session 'T', but the timings are of session 'S': it belongs "
            "to another session, of another run of measure.sh; ingest the timings with their "
            "own device.json",
        ),
    ],
)
def test_check_session(record: dict[str, Any], problem: str | None) -> None:
    path = Path("device.json")
    if problem is None:
        check_session(record, "S", 6, path)
        return
    with pytest.raises(InputFileError) as error:
        check_session(record, "S", 6, path)
    assert str(error.value) == f"device.json: {problem}"


# -- names a spreadsheet would run -------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "cell"),
    [
        ("plain", "plain"),
        ("=1+1", '"\'=1+1"'),
        ("+x", '"\'+x"'),
        ("-se", '"\'-se"'),
        ("@x", '"\'@x"'),
        ("'@x", "\"''@x\""),  # the escape itself, escaped: read back exactly
        ("'plain", "\"''plain\""),
        ("a,b", '"a,b"'),
        ('=HYPERLINK("x")', '"\'=HYPERLINK(""x"")"'),
        ("x=1", "x=1"),
    ],
)
def test_a_timings_cell_reads_as_text_and_back_as_the_name(name: str, cell: str) -> None:
    assert timings_cell(name) == cell
    [[read]] = list(csv.reader([cell]))
    assert not read.startswith(("=", "+", "-", "@"))
    assert name_of_cell(read) == name


def test_formula_names_go_through_the_driver_and_back_exactly(
    bundle: Path, measured: Path, tmp_path: Path
) -> None:
    cells = [line.split("\t")[3] for line in (bundle / "variants.txt").read_text().splitlines()]
    assert cells == ['"\'=1+1"', '"\'-se"', "\"''@x\""]
    text = (measured / "timings.csv").read_text()
    assert all(line.split(",")[1] in cells for line in text.splitlines()[1:])
    with (measured / "timings.csv").open(newline="") as handle:
        read = {row["variant"] for row in csv.DictReader(handle)}
    assert read == {"'=1+1", "'-se", "''@x"}  # what a spreadsheet shows: text
    result = ingest(bundle, measured / "timings.csv", tmp_path / "runs")
    assert result.exit_code == 0, result.output
    results = load_results(Path(result.output.strip().splitlines()[-1]))
    assert [variant.name for variant in results.variants] == NAMES
    assert all(variant.latency is not None for variant in results.variants)


# -- the host runner ----------------------------------------------------------------------------


def _runner(bundle: Path) -> Any:
    """The bundle's run_host.py as a module (it is a script; ablate never imports it)."""
    spec = importlib.util.spec_from_file_location("run_host_of_bundle", bundle / "run_host.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_host_runner_loads_each_program_once_and_answers_each_request(
    bundle: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    runner = _runner(bundle)
    loads: list[str] = []
    onnx = runner.RUNTIMES[".onnx"]

    def counted(model: Path, images: Any) -> Any:
        loads.append(model.name)
        assert images.shape == (1, 3, 32, 32)
        return onnx(model, images)

    monkeypatch.setitem(runner.RUNTIMES, ".onnx", counted)
    replies: list[str] = []
    requests = [
        "2 models/v000.onnx\n",
        "1 models/v001.onnx\n",
        "3 models/v000.onnx\n",
        "1 models/v009.onnx\n",
        "1 models/v002.onnx\n",  # never read: the error above ends the session
    ]
    assert runner.serve(requests, replies.append) == 1
    assert loads == ["v000.onnx", "v001.onnx"]
    assert [reply.split(" ")[0] for reply in replies[:3]] == ["ablate-ms:"] * 3
    assert all(float(reply.split(" ")[1]) > 0 for reply in replies[:3])
    assert replies[3] == (
        "error: models/v009.onnx: ValueError: v009.onnx is not a model of this bundle"
    )
    assert len(replies) == 4
    replies.clear()
    assert runner.serve(["x models/v000.onnx\n"], replies.append) == 1
    assert replies == [
        "error: models/v000.onnx: ValueError: not `ITERATIONS FILE`: 'x models/v000.onnx'"
    ]


def test_the_host_runner_times_the_mean_of_the_iterations_after_one_untimed(
    bundle: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    runner = _runner(bundle)
    calls: list[float] = []
    now = [100.0]

    def forward() -> None:
        calls.append(now[0])
        now[0] += 0.004  # each forward pass: 4 ms on the fake clock

    monkeypatch.setattr(runner, "time", SimpleNamespace(perf_counter=lambda: now[0]))
    assert runner._timed(forward, 5) == pytest.approx(4.0)
    assert len(calls) == 6


def test_every_runtime_flags_are_ones_the_driver_accepts() -> None:
    """A descriptor's flags reach a shell on the phone: the driver refuses shell syntax in a
    bundle's settings, so every registered runtime's flags must pass its check."""
    from ablate.measurement.backends import exportable_backends

    flags = {
        runtime.name: runtime.program.arguments
        for runtime in exportable_backends()
        if runtime.program is not None
    }
    assert {"onnxruntime", "executorch", "litert"} <= set(flags)
    for arguments in flags.values():
        assert "{model}" in arguments and "{runs}" in arguments
        assert BENCHMARK_ARGUMENTS.fullmatch(arguments)
    assert not BENCHMARK_ARGUMENTS.fullmatch("--graph={model}; rm -rf ~")
    assert not BENCHMARK_ARGUMENTS.fullmatch("--graph=$(id)")


# -- export's output ------------------------------------------------------------------------------


def test_export_refuses_a_missing_parent_or_a_link_in_one_line(tmp_path: Path) -> None:
    pytest.importorskip("onnxruntime")
    spec = tmp_path / "s.yaml"
    spec.write_text(SPEC)
    runner = CliRunner()
    missing = tmp_path / "no" / "such" / "b"
    export = ["export", str(spec), "--backend", "onnxruntime", "-o"]
    result = runner.invoke(app, [*export, str(missing)])
    assert refused(result) == (
        f"error: {missing}: no such directory {missing.parent} to write the bundle in"
    )
    target = tmp_path / "empty"
    target.mkdir()
    link = tmp_path / "link"
    link.symlink_to(target)
    result = runner.invoke(app, [*export, str(link)])
    assert refused(result) == f"error: {link}: a symbolic link; give a new or empty directory"
    assert sorted(path.name for path in tmp_path.iterdir()) == ["empty", "link", "s.yaml"]
    assert list(target.iterdir()) == []
