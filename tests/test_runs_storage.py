"""Atomic writes and the measurement journal (torn last line, damaged lines)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ablate.errors import InputFileError
from ablate.files import write_json_atomic, write_text_atomic
from ablate.runs.storage import append_round, read_rounds
from ablate.variants.factors import describe_factors
from ablate.variants.resolve import resolve_architecture


def test_atomic_write_replaces_whole_file_and_leaves_no_temporary(tmp_path: Path) -> None:
    target = tmp_path / "deep" / "results.json"
    write_json_atomic(target, {"a": 1})
    write_json_atomic(target, {"a": 2, "b": [1, 2]})
    assert json.loads(target.read_text()) == {"a": 2, "b": [1, 2]}
    assert [p.name for p in target.parent.iterdir()] == ["results.json"]


def test_atomic_write_keeps_the_old_file_when_writing_fails(tmp_path: Path) -> None:
    target = tmp_path / "results.json"
    write_text_atomic(target, "old")

    class Unserialisable:
        pass

    with pytest.raises(TypeError):
        write_json_atomic(target, {"x": Unserialisable()})
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["results.json"]


def test_journal_round_trip_and_torn_last_line(tmp_path: Path) -> None:
    journal = tmp_path / "journal.jsonl"
    assert read_rounds(journal, {"a", "b"}) == []
    append_round(journal, 0, {"a": 0.010, "b": 0.012}, cache_state="warm")
    append_round(journal, 1, {"a": 0.011, "b": 0.013}, cache_state="warm")
    with journal.open("a") as handle:
        handle.write('{"round": 2, "seconds": {"a": 0.0')  # killed mid-write
    assert read_rounds(journal, {"a", "b"}) == [
        {"a": 0.010, "b": 0.012},
        {"a": 0.011, "b": 0.013},
    ]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (
            '{"round": 0, "seconds": {"a": 1.0}}\nnot json\n',
            "journal.jsonl:2: malformed journal line (expected {round, seconds})",
        ),
        ('{"round": 1, "seconds": {"a": 1.0}}\n', "journal.jsonl:1: round 1 out of order"),
        (
            '{"round": 0, "seconds": {"z": 1.0}}\n',
            "journal.jsonl:1: seconds: round does not time the run's variants; valid: a",
        ),
        (
            '{"round": 0, "seconds": {"a": -1}}\n',
            "journal.jsonl:1: seconds: round holds a non-positive or non-finite time",
        ),
        (
            '{"round": 0, "seconds": {"a": 1.0}, "timings": [1.0]}\n',
            "journal.jsonl:1: timings: timings is not an object",
        ),
        (
            '{"round": 0, "seconds": {"a": 1.0}, "timings": {"z": [1.0]}}\n',
            "journal.jsonl:1: timings.z: timings name a variant the round does not time; valid: a",
        ),
        (
            '{"round": 0, "seconds": {"a": 1.0}, "timings": {"a": [1.0, 1.0]}}\n',
            "journal.jsonl:1: timings.a: timings are not an odd number of positive times",
        ),
        (
            '{"round": 0, "seconds": {"a": 1.0}, "timings": {"a": [1.0, 0, 2.0]}}\n',
            "journal.jsonl:1: timings.a: timings are not an odd number of positive times",
        ),
        (
            '{"round": 0, "seconds": {"a": 1.0}, "timings": {"a": [1.0, 3.0, 2.0]}}\n',
            "journal.jsonl:1: timings.a: the round's seconds are not the median of its timings",
        ),
    ],
)
def test_damaged_journal_is_reported_with_file_and_line(
    tmp_path: Path, content: str, message: str
) -> None:
    journal = tmp_path / "journal.jsonl"
    journal.write_text(content)
    with pytest.raises(InputFileError) as raised:
        read_rounds(journal, {"a"})
    assert message in str(raised.value)


def test_journal_keeps_every_repeated_timing_and_resumes_from_their_median(
    tmp_path: Path,
) -> None:
    journal = tmp_path / "journal.jsonl"
    append_round(
        journal,
        0,
        {"a": 0.011, "b": 0.012},
        cache_state="warm",
        timings={"a": [0.013, 0.010, 0.011]},
    )
    append_round(journal, 1, {"a": 0.010, "b": 0.013}, cache_state="warm", timings={})
    lines = [json.loads(line) for line in journal.read_text().splitlines()]
    assert lines[0]["timings"] == {"a": [0.013, 0.010, 0.011]}
    assert "timings" not in lines[1]  # nothing repeated: the line is as before
    assert read_rounds(journal, {"a", "b"}) == [
        {"a": 0.011, "b": 0.012},
        {"a": 0.010, "b": 0.013},
    ]


def test_describe_factors_of_published_v3_large() -> None:
    described = describe_factors(resolve_architecture("mobilenet_v3_large"))
    assert described["layout"] == "mobilenet_v3_large"
    assert described["kernel"] == [3, 3, 3, 5, 5, 5, 3, 3, 3, 3, 3, 3, 5, 5, 5]
    assert described["expansion"][:3] == [1.0, "64ch", "72ch"]
    assert described["se"].count(True) == 8 and described["se_ratio"] == 0.25
    assert described["activation"]["stem"] == "hswish"
    assert described["last_stage"] == {"kind": "v3", "channels": 1280}
    mixed = describe_factors(resolve_architecture("mobilenet_v2", {"se": "off", "width": 0.5}))
    assert mixed["layout"] == "mobilenet_v2" and mixed["se_gate"] is None
    assert mixed["width"] == 0.5


def test_a_run_started_before_a_spec_key_existed_resumes_with_its_implicit_value(
    tmp_path: Path,
) -> None:
    """Runs written before `measure.kernels` existed did not time kernels: such a run resumes
    when the key is false, and is refused, naming the key, when it is true."""
    from ablate.errors import AblateError
    from ablate.runs.storage import RESOLVED_SPEC_NAME, check_run_spec

    older = {"name": "hswish", "measure": {"backend": "eager", "budget_s": 60}}
    (tmp_path / RESOLVED_SPEC_NAME).write_text(json.dumps(older), encoding="utf-8")
    now = {"name": "hswish", "measure": {"backend": "eager", "budget_s": 60, "kernels": False}}
    check_run_spec(tmp_path, now)
    with pytest.raises(AblateError, match=r"started with measure\.kernels False, not True"):
        check_run_spec(tmp_path, {**now, "measure": {**now["measure"], "kernels": True}})
    with pytest.raises(AblateError, match=r"started with measure\.budget_s 60, not 30"):
        check_run_spec(tmp_path, {**now, "measure": {**now["measure"], "budget_s": 30}})
