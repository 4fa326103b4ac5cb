"""The caches under real faults (issue 25, items 3, 7 and 8): a flipped byte in a real entry
of each cache (export, batch-norm, calibration), a real full filesystem and a real read-only
one under the cache. A bad entry is rebuilt and the command says so in one line; a cache that
cannot be written costs only time, and says so in one line.

The full and read-only filesystems are real tmpfs mounts: the tests that need one skip, saying
why, where this process may not mount (not root, no CAP_SYS_ADMIN). Tests run as root here,
where a chmod 0555 directory would not stop a write.
"""

from __future__ import annotations

import errno
import functools
import io
import itertools
import json
import shutil
import struct
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from ablate.cli import app
from ablate.measurement import activations, calibration, programs
from ablate.measurement.activations import realistic_module
from ablate.measurement.cache_entries import CacheNotes, cache_notes, seal, unseal
from ablate.measurement.calibration import (
    Calibration,
    CalibrationCacheError,
    CalibrationKey,
    cache_path,
    cached_calibration,
    calibrate_machine,
    calibration_key,
    read_calibration,
)
from ablate.measurement.export_cache import (
    DelegationReport,
    ExportKey,
    cached_export,
    has_entry,
    read_entry,
)
from ablate.services import bench as bench_module
from ablate.variants.resolve import resolve_architecture

SMALL = {"width": 0.25, "resolution": 32}
# Where the length field of an export entry's header is: after the 8-byte magic.
LENGTH_FIELD = slice(8, 16)


def _key(**changes: object) -> ExportKey:
    fields: dict[str, object] = {
        "runtime": "executorch",
        "versions": (("executorch", "1.5.1"), ("torch", "2.13.0")),
        "precision": "fp32",
        "input_shape": (1, 3, 32, 32),
        "model_hash": "0" * 64,
        "ablate_version": "0.1.0",
        "recipe": 3,
    }
    fields.update(changes)
    return ExportKey(**fields)  # type: ignore[arg-type]


class CountingExporter:
    def __init__(self, program: bytes = bytes(range(256)) * 4) -> None:
        self.program = program
        self.calls = 0

    def __call__(self) -> tuple[bytes, DelegationReport]:
        self.calls += 1
        return self.program, DelegationReport("XNNPACK", {"aten.convolution": 3})


def _state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {name: tensor.clone() for name, tensor in model.state_dict().items()}


def _same(first: dict[str, torch.Tensor], second: dict[str, torch.Tensor]) -> bool:
    return first.keys() == second.keys() and all(torch.equal(first[k], second[k]) for k in first)


def _fake_measure(key: CalibrationKey) -> Calibration:
    return Calibration(key, 100e9, 20e9, 1024, 2**20)


# -- filesystems that really fail a write -------------------------------------------------------


@pytest.fixture
def tmpfs(tmp_path: Path) -> Iterator[Path]:
    """A real 64 KiB tmpfs, unmounted afterwards."""
    mount_point = tmp_path / "tmpfs"
    mount_point.mkdir()
    if shutil.which("mount") is None:
        pytest.skip("no `mount` here: a real full or read-only filesystem needs one")
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=64k", "ablate-test", str(mount_point)],
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs (needs root or CAP_SYS_ADMIN): {done.stderr.strip()}")
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", "-l", str(mount_point)], capture_output=True)


def fill(filesystem: Path) -> None:
    """Writes until the filesystem has not one byte left."""
    with (filesystem / "filler").open("wb", buffering=0) as handle:
        for size in (1 << 14, 1 << 10, 1 << 6, 1):
            try:
                while True:
                    handle.write(b"\0" * size)
            except OSError as error:
                if error.errno != errno.ENOSPC:
                    raise
    with pytest.raises(OSError, match="No space left"), (filesystem / "probe").open("wb") as probe:
        probe.write(b"\0" * 4096)
        probe.flush()


@pytest.fixture
def full_cache(tmpfs: Path) -> Path:
    """A cache directory on a filesystem with no space left."""
    fill(tmpfs)
    return tmpfs


@pytest.fixture
def read_only_cache(tmpfs: Path) -> Path:
    """An empty cache directory on a read-only filesystem (root's writes fail there too)."""
    subprocess.run(["mount", "-o", "remount,ro", str(tmpfs)], check=True, capture_output=True)
    with pytest.raises(OSError, match="Read-only file system"):
        (tmpfs / "probe").write_bytes(b"")
    return tmpfs


# -- the batch-norm cache ---------------------------------------------------------------------


def _flip_a_variance_exponent(entry: Path) -> float:
    """Flips the exponent's top bit of a stored running variance that lies in [0.5, 1): the
    value becomes about 1.7e38-3.4e38, finite, as one bad bit on a disk would make it."""
    data = bytearray(entry.read_bytes())
    saved = torch.load(io.BytesIO(unseal(activations._MAGIC, bytes(data))), weights_only=True)
    name, variance = next(
        (name, tensor)
        for name, tensor in saved["statistics"].items()
        if name.endswith("running_var") and bool(((tensor >= 0.5) & (tensor < 1)).any())
    )
    index = int(((variance >= 0.5) & (variance < 1)).nonzero()[0])
    needle = variance.numpy().tobytes()
    assert data.count(needle) == 1, f"{name} is not stored once, byte for byte"
    top_byte = data.find(needle) + 4 * index + 3  # float32, little-endian: sign and exponent
    data[top_byte] ^= 0x40
    entry.write_bytes(bytes(data))
    (flipped,) = struct.unpack_from("<f", data, top_byte - 3)
    # The fault itself: without the checksum, torch reads the value back, finite and silent.
    payload = bytes(data[len(activations._MAGIC) + 32 :])
    reread = torch.load(io.BytesIO(payload), weights_only=True)["statistics"][name]
    assert reread[index].item() == flipped and 1.7e38 < flipped < float("inf")
    return flipped


def test_a_flipped_variance_exponent_is_caught_and_re_estimated(tmp_path: Path) -> None:
    architecture = resolve_architecture("mobilenet_v3_small", SMALL)
    fresh = _state(realistic_module(architecture, cache=False))
    realistic_module(architecture, cache_directory=tmp_path)
    (entry,) = (tmp_path / "batch_norm").iterdir()
    whole = entry.read_bytes()
    _flip_a_variance_exponent(entry)

    with cache_notes() as notes:
        rebuilt = realistic_module(architecture, cache_directory=tmp_path)
        again = realistic_module(architecture, cache_directory=tmp_path)
    assert _same(_state(rebuilt), fresh) and _same(_state(again), fresh)
    assert notes.rebuilt == {entry: "checksum mismatch"} and not notes.unwritable
    assert entry.read_bytes() == whole  # rewritten whole


def test_an_older_statistics_entry_without_a_checksum_is_re_estimated(tmp_path: Path) -> None:
    """Format 1 was torch.save's zip alone: it cannot be trusted, so it is replaced."""
    architecture = resolve_architecture("mobilenet_v3_small", SMALL)
    realistic_module(architecture, cache_directory=tmp_path)
    (entry,) = (tmp_path / "batch_norm").iterdir()
    whole = entry.read_bytes()
    entry.write_bytes(unseal(activations._MAGIC, whole))  # what format 1 wrote
    with cache_notes() as notes:
        realistic_module(architecture, cache_directory=tmp_path)
    assert notes.rebuilt == {entry: "an older format, without a checksum"}
    assert entry.read_bytes() == whole


def test_another_models_statistics_are_a_plain_miss(tmp_path: Path) -> None:
    """A whole entry of another key under this name (a copy): re-estimated, nothing noted."""
    small = resolve_architecture("mobilenet_v3_small", SMALL)
    other = resolve_architecture("mobilenet_v3_small", {**SMALL, "se": False})
    realistic_module(small, cache_directory=tmp_path)
    (entry,) = (tmp_path / "batch_norm").iterdir()
    whole = entry.read_bytes()
    model = realistic_module(other, cache=False)
    activations.store_statistics(model, entry, "another key")
    with cache_notes() as notes:
        realistic_module(small, cache_directory=tmp_path)
    assert notes.lines() == []
    assert entry.read_bytes() == whole


def test_the_statistics_cache_on_a_full_disk_costs_only_time(full_cache: Path) -> None:
    architecture = resolve_architecture("mobilenet_v3_small", SMALL)
    with cache_notes() as notes:
        model = realistic_module(architecture, cache_directory=full_cache)
    assert _same(_state(model), _state(realistic_module(architecture, cache=False)))
    ((path, reason),) = notes.unwritable.items()
    assert path.parent == full_cache / "batch_norm" and path.suffix == ".pt"
    assert reason == "No space left on device"
    assert not list((full_cache / "batch_norm").iterdir())  # no temporary file left behind


# -- the export cache ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("bit", "beyond"),
    [
        (63, True),  # format 1: OverflowError (cannot fit 'int' into an index-sized integer)
        (40, True),  # format 1: MemoryError, reading 1 TiB
        (3, False),  # a length still inside the file: the header's checksum tells
    ],
)
def test_a_flipped_bit_in_the_header_length_is_rebuilt(
    tmp_path: Path, bit: int, beyond: bool
) -> None:
    exporter = CountingExporter()
    stored = cached_export(_key(), exporter, directory=tmp_path)
    assert stored.path is not None
    data = bytearray(stored.path.read_bytes())
    (length,) = struct.unpack("<Q", data[LENGTH_FIELD])
    data[LENGTH_FIELD] = struct.pack("<Q", length ^ (1 << bit))
    stored.path.write_bytes(bytes(data))

    with cache_notes() as notes:
        assert not has_entry(stored.path, _key())  # what the export pool asks first
        assert read_entry(stored.path, _key()) is None
        rebuilt = cached_export(_key(), exporter, directory=tmp_path)
        again = cached_export(_key(), exporter, directory=tmp_path)
    assert exporter.calls == 2 and not rebuilt.cached and again.cached
    assert rebuilt.program == again.program == exporter.program
    out_of_range = f"header length {length ^ (1 << bit)} out of range for a {len(data)}-byte file"
    assert notes.rebuilt == {stored.path: out_of_range if beyond else "header checksum mismatch"}
    assert len(notes.lines()) == 1 and str(stored.path) in notes.lines()[0]


@pytest.mark.parametrize(
    ("where", "reason"),
    [
        ("magic", "not an export-cache entry"),
        ("header", "header checksum mismatch"),
        ("program", "program checksum mismatch"),
        ("cut", "program of 1023 bytes, its header says 1024"),
    ],
)
def test_every_bad_export_entry_names_its_reason(tmp_path: Path, where: str, reason: str) -> None:
    exporter = CountingExporter()
    stored = cached_export(_key(), exporter, directory=tmp_path)
    assert stored.path is not None
    data = bytearray(stored.path.read_bytes())
    if where == "magic":
        data[0] ^= 0x01
    elif where == "header":  # a digit of the export time: the header's checksum tells
        data[data.index(b'"export_seconds": ') + 18] ^= 0x01
    elif where == "program":
        data[-1] ^= 0x01
    else:
        data = data[:-1]
    stored.path.write_bytes(bytes(data))
    with cache_notes() as notes:
        assert not cached_export(_key(), exporter, directory=tmp_path).cached
    assert notes.rebuilt == {stored.path: reason}


def test_an_export_entry_of_the_older_format_is_rebuilt(tmp_path: Path) -> None:
    """Format 1 had no header checksum (a flipped delegation count would pass): rebuilt."""
    exporter = CountingExporter()
    stored = cached_export(_key(), exporter, directory=tmp_path)
    assert stored.path is not None
    data = stored.path.read_bytes()
    (length,) = struct.unpack("<Q", data[LENGTH_FIELD])
    header = data[16 + 32 : 16 + 32 + length].replace(b"export/2", b"export/1")
    old = b"ABLATEX1" + struct.pack("<Q", len(header)) + header + exporter.program
    stored.path.write_bytes(old)
    with cache_notes() as notes:
        assert not cached_export(_key(), exporter, directory=tmp_path).cached
    assert notes.rebuilt == {stored.path: "an older format, without a header checksum"}
    assert stored.path.read_bytes() != old and read_entry(stored.path, _key()) is not None


def test_another_keys_export_entry_is_a_plain_miss(tmp_path: Path) -> None:
    exporter = CountingExporter()
    stored = cached_export(_key(), exporter, directory=tmp_path)
    assert stored.path is not None
    with cache_notes() as notes:
        assert read_entry(stored.path, _key(ablate_version="9")) is None
        assert not has_entry(stored.path, _key(ablate_version="9"))
    assert notes.lines() == []


def test_an_export_on_a_full_cache_disk_costs_only_time(full_cache: Path) -> None:
    exporter = CountingExporter(program=b"\x5a" * 100_000)
    with cache_notes() as notes:
        first = cached_export(_key(), exporter, directory=full_cache)
        second = cached_export(_key(), exporter, directory=full_cache)
    assert first.program == second.program == exporter.program
    assert (first.path, first.cached, exporter.calls) == (None, False, 2)
    entry = full_cache / "exports" / _key().file_name()
    assert notes.unwritable == {entry: "No space left on device"}
    assert sorted(path.name for path in (full_cache / "exports").iterdir()) == [
        entry.name + ".lock"  # the lock (an empty file); no entry, no temporary file
    ]


def test_an_export_into_a_read_only_empty_cache_costs_only_time(read_only_cache: Path) -> None:
    exporter = CountingExporter()
    with cache_notes() as notes:
        artifact = cached_export(_key(), exporter, directory=read_only_cache)
    assert (artifact.program, artifact.path, artifact.cached) == (exporter.program, None, False)
    entry = read_only_cache / "exports" / _key().file_name()
    assert notes.unwritable == {entry: "Read-only file system"}


# -- the calibration cache ----------------------------------------------------------------------


def test_a_flipped_digit_in_a_calibration_is_measured_again(tmp_path: Path) -> None:
    path = calibrate_machine(cache_dir=tmp_path, measure=_fake_measure).path
    text = path.read_text()
    assert '"peak_flop_per_second": 100000000000.0' in text
    # One bit: '1' (0x31) -> '3' (0x33): still JSON, finite, and a roof three times higher.
    path.write_text(text.replace("100000000000.0", "300000000000.0", 1))
    key = calibration_key(threads=1, device="cpu")
    with pytest.raises(CalibrationCacheError, match="checksum mismatch"):
        read_calibration(path, key)

    measured = []

    def measure(key: CalibrationKey) -> Calibration:
        measured.append(key)
        return _fake_measure(key)

    with cache_notes() as notes:
        for _ in range(3):  # a run reads it at measuring and at profiling, bench once
            again = cached_calibration(threads=1, device="cpu", cache_dir=tmp_path, measure=measure)
            assert again is not None and again.peak_flop_per_second == 100e9
    assert len(measured) == 1  # rebuilt once, then read back
    assert notes.rebuilt == {path: "checksum mismatch"}
    assert read_calibration(path, key) == again


def test_an_older_calibration_without_a_checksum_is_measured_again(tmp_path: Path) -> None:
    key = calibration_key(threads=1, device="cpu")
    path = cache_path(key, tmp_path)
    path.write_text(
        json.dumps(
            {
                "schema": "ablate.calibration/1",
                "key": {
                    "cpu_model": key.cpu_model,
                    "threads": 1,
                    "torch_version": key.torch_version,
                    "device": "cpu",
                },
                "peak_flop_per_second": 5e9,
                "bandwidth_bytes_per_second": 1e9,
                "matrix_size": 1024,
                "copy_bytes": 2**20,
            }
        )
    )
    with cache_notes() as notes:
        rebuilt = cached_calibration(
            threads=1, device="cpu", cache_dir=tmp_path, measure=_fake_measure
        )
    assert rebuilt is not None and rebuilt.peak_flop_per_second == 100e9
    assert notes.rebuilt == {path: "an older format, without a checksum"}
    outcome = calibrate_machine(cache_dir=tmp_path, measure=_fake_measure)
    assert outcome.source == "cache"


def test_a_bad_calibration_on_a_full_disk_is_measured_and_used(full_cache: Path) -> None:
    key = calibration_key(threads=1, device="cpu")
    path = cache_path(key, full_cache)
    (full_cache / "filler").unlink()
    path.write_text("{ torn")  # a bad file, then the disk fills up
    fill(full_cache)
    with cache_notes() as notes:
        got = cached_calibration(
            threads=1, device="cpu", cache_dir=full_cache, measure=_fake_measure
        )
    assert got is not None and got.peak_flop_per_second == 100e9
    assert list(notes.rebuilt) == [path] and notes.unwritable == {path: "No space left on device"}


# -- what the command prints ------------------------------------------------------------------


def test_notes_name_a_few_entries_then_count_the_rest() -> None:
    notes = CacheNotes(
        rebuilt={Path(f"/c/batch_norm/{index}.pt"): "checksum mismatch" for index in range(5)},
        unwritable={Path("/c/exports/a.export"): "No space left on device"},
    )
    assert notes.lines() == [
        "note: rebuilt 5 bad cache entries: /c/batch_norm/0.pt (checksum mismatch), "
        "/c/batch_norm/1.pt (checksum mismatch), /c/batch_norm/2.pt (checksum mismatch) "
        "and 2 more",
        "note: the cache could not be written, 1 file: /c/exports/a.export (No space left on "
        "device); nothing lost, later runs compute them again",
    ]
    assert CacheNotes().lines() == []


def test_seal_refuses_what_it_did_not_seal() -> None:
    sealed = seal(b"MAGIC", b"payload")
    assert unseal(b"MAGIC", sealed) == b"payload"
    for damaged, reason in [
        (sealed[:-1] + b"X", "checksum mismatch"),
        (sealed[:3], "cut short"),
        (sealed[:10], "cut short"),
        (b"PK" + sealed, "not an entry of this cache"),
    ]:
        with pytest.raises(ValueError, match=reason):
            unseal(b"MAGIC", damaged)


@pytest.fixture
def bench_app(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """`ablate bench` on a fake clock and a fake calibration, its cache in tmp_path/cache."""
    cache = tmp_path / "cache"
    monkeypatch.setenv("ABLATE_CACHE_DIR", str(cache))
    clock = functools.partial(next, itertools.count(step=0.01))  # type: ignore[call-overload]
    monkeypatch.setattr(
        bench_module, "run_bench", functools.partial(bench_module.run_bench, clock=clock)
    )
    monkeypatch.setattr(calibration, "measure_calibration", _fake_measure)
    return cache


BENCH = ["bench", "mobilenet_v3_small", "--set", "width=0.25", "--set", "resolution=32", "--json"]


def _notes(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("note: ")]


@pytest.mark.slow  # several seconds: CI runs it, daily work need not
def test_bench_says_once_which_entries_it_rebuilt(bench_app: Path) -> None:
    """Three instances and the profile read the statistics four times, the roofline reads the
    calibration: two bad entries, one line naming both, then nothing on the next run."""
    assert CliRunner().invoke(app, ["roofline"]).exit_code == 0
    first = CliRunner().invoke(app, BENCH)
    assert first.exit_code == 0, first.output
    assert _notes(first.stderr) == []
    (statistics,) = (bench_app / "batch_norm").iterdir()
    (calibrated,) = bench_app.glob("calibration-*.json")
    _flip_a_variance_exponent(statistics)
    calibrated.write_text(calibrated.read_text().replace("100000000000.0", "300000000000.0"))

    second = CliRunner().invoke(app, BENCH)
    assert second.exit_code == 0, second.output
    assert json.loads(second.stdout)["calibrated"] is True
    assert _notes(second.stderr) == [
        f"note: rebuilt 2 bad cache entries: {statistics} (checksum mismatch), {calibrated} "
        "(checksum mismatch)"
    ]
    third = CliRunner().invoke(app, BENCH)
    assert _notes(third.stderr) == []


def test_bench_on_a_read_only_cache_says_so_once(
    bench_app: Path, read_only_cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every read of the statistics misses and every write fails: one line, exit 0."""
    monkeypatch.setenv("ABLATE_CACHE_DIR", str(read_only_cache))
    result = CliRunner().invoke(app, BENCH)
    assert result.exit_code == 0, result.output
    (line,) = _notes(result.stderr)
    assert line.startswith("note: the cache could not be written, 1 file: ")
    assert f"{read_only_cache}/batch_norm/" in line and "(Read-only file system)" in line
    assert "Traceback" not in result.output


EXPORT_SPEC = """\
name: phone
base: mobilenet_v3_small
input: {resolution: 32}
measure: {budget_s: 600}
baseline: se
variants:
  se: {width: 0.25}
"""


@pytest.fixture
def export_app(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """`ablate export --backend executorch` in this process, its exporter a fake one (a real
    export takes 25 s; the cache around it is what is tested), the spec at tmp_path."""
    pytest.importorskip("executorch")
    monkeypatch.setenv("ABLATE_EXPORT_WORKERS", "1")  # no worker processes: the fake holds

    def export(runtime: object, module: object, example: object, precision: str):
        return b"program" * 1000, DelegationReport("XNNPACK", {"aten.convolution": 3})

    monkeypatch.setattr(programs, "delegated_export", export)
    spec = tmp_path / "phone.yaml"
    spec.write_text(EXPORT_SPEC)
    return spec


@pytest.mark.parametrize("fault", ["full", "read-only"])
def test_export_writes_its_bundle_whatever_the_cache_disk(
    export_app: Path, tmpfs: Path, monkeypatch: pytest.MonkeyPatch, fault: str
) -> None:
    if fault == "full":
        fill(tmpfs)
    else:
        subprocess.run(["mount", "-o", "remount,ro", str(tmpfs)], check=True)
    monkeypatch.setenv("ABLATE_CACHE_DIR", str(tmpfs))
    out = export_app.parent / "bundle"
    result = CliRunner().invoke(
        app, ["export", str(export_app), "--backend", "executorch", "-o", str(out)]
    )
    assert result.exit_code == 0, result.output
    assert "Traceback" not in result.output
    manifest = json.loads((out / "manifest.json").read_text())
    assert (out / manifest["units"][0]["file"]).read_bytes() == b"program" * 1000
    (line,) = _notes(result.stderr)
    why = "No space left on device" if fault == "full" else "Read-only file system"
    assert line.startswith("note: the cache could not be written, 2 files: ")
    assert f"{tmpfs}/batch_norm/" in line and f"{tmpfs}/exports/executorch-fp32-" in line
    assert line.count(f"({why})") == 2


def test_export_rebuilds_a_flipped_header_length_and_says_so(
    export_app: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ABLATE_CACHE_DIR", str(tmp_path / "cache"))
    arguments = ["export", str(export_app), "--backend", "executorch"]
    first = CliRunner().invoke(app, [*arguments, "-o", str(tmp_path / "one")])
    assert first.exit_code == 0, first.output
    (entry,) = (tmp_path / "cache" / "exports").glob("*.export")
    data = bytearray(entry.read_bytes())
    data[LENGTH_FIELD.start + 5] ^= 0x01  # bit 40 of the length: 1 TiB more
    entry.write_bytes(bytes(data))

    second = CliRunner().invoke(app, [*arguments, "-o", str(tmp_path / "two")])
    assert second.exit_code == 0, second.output
    (line,) = _notes(second.stderr)
    assert line.startswith(f"note: rebuilt 1 bad cache entry: {entry} (header length 10995116")
    third = CliRunner().invoke(app, [*arguments, "-o", str(tmp_path / "three")])
    assert third.exit_code == 0 and _notes(third.stderr) == []
