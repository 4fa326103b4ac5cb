"""The YAML layer of spec loading: files, syntax, tags, duplicate keys, line numbers."""

from __future__ import annotations

from pathlib import Path

import pytest

from ablate.errors import InputFileError
from ablate.spec import load_spec, load_spec_text
from ablate.spec.source import parse_yaml

MINIMAL = "name: t\nvariants:\n  a: {}\n"


def message(text: str) -> str:
    with pytest.raises(InputFileError) as caught:
        load_spec_text(text, "spec.yaml")
    return str(caught.value)


def file_message(path: Path) -> str:
    with pytest.raises(InputFileError) as caught:
        load_spec(path)
    return str(caught.value)


# -- files -----------------------------------------------------------------------------


def test_load_spec_reads_a_file_and_keeps_its_text(tmp_path: Path) -> None:
    path = tmp_path / "study.yaml"
    path.write_text(MINIMAL, encoding="utf-8")
    spec = load_spec(str(path))
    assert spec.source_path == path
    assert spec.source_label == str(path)
    assert spec.source_text == MINIMAL
    assert spec.variant_names == ("a",)


def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "nope.yaml"
    assert file_message(path) == f"{path}: no such file"


def test_directory_instead_of_file(tmp_path: Path) -> None:
    assert file_message(tmp_path) == f"{tmp_path}: is a directory, not a spec file"


def test_unreadable_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Simulated: file modes do not stop root, which CI containers often are.
    path = tmp_path / "locked.yaml"
    path.write_text(MINIMAL, encoding="utf-8")

    def refuse(self: Path) -> bytes:
        raise PermissionError(13, "Permission denied", str(self))

    monkeypatch.setattr(Path, "read_bytes", refuse)
    assert file_message(path) == f"{path}: cannot read the file: permission denied"


def test_other_read_errors_name_the_reason(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "flaky.yaml"
    path.write_text(MINIMAL, encoding="utf-8")

    def fail(self: Path) -> bytes:
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(Path, "read_bytes", fail)
    assert file_message(path) == f"{path}: cannot read the file: Input/output error"


def test_non_utf8_file_names_the_line(tmp_path: Path) -> None:
    path = tmp_path / "latin1.yaml"
    path.write_bytes(b"name: t\ndescription: caf\xe9\n")
    assert file_message(path) == f"{path}:2: not UTF-8 text (byte 0xe9 cannot be decoded)"


def test_empty_file(tmp_path: Path) -> None:
    path = tmp_path / "empty.yaml"
    path.write_bytes(b"")
    assert file_message(path) == f"{path}: the file is empty"


def test_byte_order_mark_is_accepted(tmp_path: Path) -> None:
    path = tmp_path / "bom.yaml"
    path.write_bytes(b"\xef\xbb\xbf" + MINIMAL.encode())
    assert load_spec(path).name == "t"


def test_comments_only() -> None:
    assert message("# nothing here\n\n") == "spec.yaml: no YAML document, only comments"


@pytest.mark.parametrize(
    ("text", "kind"),
    [("- a\n- b\n", "a list"), ("just words\n", "a string"), ("~\n", "null"), ("3\n", "a number")],
)
def test_top_level_must_be_a_mapping(text: str, kind: str) -> None:
    assert message(text) == (
        f"spec.yaml:1: the top level must be a mapping (name: ..., variants: ...), not {kind}"
    )


# -- syntax ----------------------------------------------------------------------------


def test_malformed_yaml_names_file_and_line() -> None:
    assert message("name: t\nvariants: a: b\n") == (
        "spec.yaml:2: invalid YAML: mapping values are not allowed here"
    )


def test_tab_indentation() -> None:
    assert message("name: t\n\tvariants: {}\n") == (
        "spec.yaml:2: invalid YAML: while scanning for the next token, found character '\\t' "
        "that cannot start any token"
    )


def test_unclosed_flow_mapping() -> None:
    text = "name: t\nvariants:\n  a: {kernel: 3\n"
    assert message(text).startswith("spec.yaml:4: invalid YAML: while parsing a flow mapping")


def test_two_documents() -> None:
    assert message(MINIMAL + "---\nname: u\n") == (
        "spec.yaml:4: invalid YAML: expected a single document in the stream, but found "
        "another document"
    )


def test_control_character() -> None:
    assert message("name: t\ndescription: a\x00b\n") == (
        "spec.yaml:2: invalid YAML: unacceptable character #x0000 (special characters are not "
        "allowed)"
    )


# -- plain data only -------------------------------------------------------------------


def test_duplicate_key_in_a_nested_mapping() -> None:
    text = "name: t\nvariants:\n  relu: {}\n  se: {se: off}\n  relu: {activation: relu}\n"
    assert message(text) == "spec.yaml:5: variants.relu: duplicate key 'relu' (first on line 3)"


def test_duplicate_key_at_the_top() -> None:
    assert message("name: t\nname: u\n") == (
        "spec.yaml:2: name: duplicate key 'name' (first on line 1)"
    )


def test_duplicate_factor_in_a_flow_mapping() -> None:
    text = "name: t\nvariants:\n  a: {kernel: 3, kernel: 5}\n"
    assert message(text) == (
        "spec.yaml:3: variants.a.kernel: duplicate key 'kernel' (first on line 3)"
    )


def test_python_object_tag_is_refused_before_anything_is_constructed() -> None:
    text = "name: t\nvariants:\n  a: !!python/object/apply:os.system ['echo hacked']\n"
    assert message(text) == (
        "spec.yaml:3: variants.a: YAML tag !!python/object/apply:os.system is not allowed: a "
        "spec holds plain data only (mappings, lists, strings, numbers, booleans)"
    )


@pytest.mark.parametrize(
    ("value", "shown"),
    [
        ("!!python/name:os.system ''", "!!python/name:os.system"),
        ("!!binary aGVsbG8=", "!!binary"),
        ("!!set {a: null}", "!!set"),
        ("!custom 3", "!custom"),
    ],
)
def test_non_standard_tags_are_refused(value: str, shown: str) -> None:
    assert message(f"name: t\ndescription: {value}\n").startswith(
        f"spec.yaml:2: description: YAML tag {shown} is not allowed"
    )


def test_tag_on_a_key_is_refused() -> None:
    assert message("name: t\n!!python/name:os.system : 3\n").startswith(
        "spec.yaml:2: YAML tag !!python/name:os.system is not allowed"
    )


def test_keys_that_read_as_booleans_or_numbers_must_be_quoted() -> None:
    assert message("name: t\nvariants:\n  on: {}\n") == (
        "spec.yaml:3: variants: key 'on' reads as a boolean (True), not a name; quote it"
    )
    assert message("name: t\nvariants:\n  16: {}\n") == (
        "spec.yaml:3: variants: key '16' reads as an integer (16), not a name; quote it"
    )
    assert load_spec_text("name: t\nvariants:\n  'on': {}\n").variant_names == ("on",)


def test_complex_keys_are_refused() -> None:
    assert message("name: t\n? [a, b]\n: 3\n") == (
        "spec.yaml:2: keys must be plain names, not lists or mappings"
    )


def test_recursive_alias_is_refused() -> None:
    assert message("name: t\nvariants: &all\n  a: *all\n") == (
        "spec.yaml:3: variants.a: an alias refers to a mapping or list that contains it"
    )


def test_anchors_aliases_and_merge_keys_work() -> None:
    text = (
        "name: t\n"
        "variants:\n"
        "  a: &small {kernel: 3, se: off}\n"
        "  b:\n"
        "    <<: *small\n"
        "    kernel: 5\n"
        "  c: *small\n"
    )
    spec = load_spec_text(text)
    assert spec.variant("b").factors == {"kernel": 5, "se": False, "resolution": 224}
    assert spec.variant("c").factors == spec.variant("a").factors


# -- line numbers ----------------------------------------------------------------------


def test_line_of_key_paths() -> None:
    text = (
        "name: t\n"  # 1
        "variants:\n"  # 2
        "  relu:\n"  # 3
        "    kernel:\n"  # 4
        "      - 3\n"  # 5
        "      - 5\n"  # 6
        "    se: off\n"  # 7
    )
    document = parse_yaml(text, "spec.yaml")
    assert document.line_of(("variants",)) == 2
    assert document.line_of(("variants", "relu", "kernel")) == 4
    assert document.line_of(("variants", "relu", "kernel", 1)) == 6
    assert document.line_of(("variants", "relu", "se")) == 7
    # Missing parts: the deepest node that exists; nothing at all: no line.
    assert document.line_of(("variants", "relu", "kernel", 9)) == 4
    assert document.line_of(("variants", "gelu")) == 2
    assert document.line_of(("measure",)) is None
