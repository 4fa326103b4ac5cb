"""An architecture table as plain data (a spec's ``architectures:`` entry) and back.

The data holds the same block codes as tables.py and is decoded by the same ``decode``, so a
spec's architecture and a built-in are one representation; ``architecture_yaml`` writes a
built-in out in this form (the round trip is tested for every built-in classifier).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import Any, get_args

from ablate.architecture.description import (
    ACTIVATIONS,
    LAST_STAGE_WIDTHS,
    LAST_STAGES,
    SE_GATES,
    LastStage,
    SqueezeExcite,
    SqueezeReference,
    Stem,
)
from ablate.architecture.tables import (
    TABLES,
    V3_SQUEEZE_EXCITE,
    ArchitectureTable,
    decode_block,
)
from ablate.errors import KeyPath

# Key -> required; the order is the one `table_data` writes.
TABLE_KEYS = {
    "paper": False,
    "stem": True,
    "stages": True,
    "last_stage": True,
    "last_stage_activation": True,
    "batch_norm_epsilon": False,
    "squeeze_excite": False,
    "resolution": False,
    "classes": False,
}
STEM_KEYS = {"channels": True, "kernel": True, "stride": True, "activation": True, "width": False}
LAST_STAGE_KEYS = {
    "kind": True,
    "channels": False,
    "dropout": False,
    "width": False,
    "conv_channels": False,
}
SQUEEZE_EXCITE_KEYS = {"ratio": False, "gate": False, "reference": False}
SQUEEZE_REFERENCES: tuple[SqueezeReference, ...] = get_args(SqueezeReference)
# The table gives no default epsilon (each paper's differs): the one most built-ins use.
DEFAULT_BATCH_NORM_EPSILON = 1e-5


def _default(record: type[Any], name: str) -> Any:
    """A record's own default for an optional key, so that the data form cannot drift."""
    return next(field.default for field in dataclasses.fields(record) if field.name == name)


class TableDataError(ValueError):
    """A problem at ``path`` (relative to the entry); the spec loader adds file and line."""

    def __init__(
        self, path: KeyPath, reason: str, value: object = None, choices: tuple[str, ...] = ()
    ):
        super().__init__(reason)
        self.path = path
        self.reason = reason
        self.value = value
        self.choices = choices
        # A missing or unknown key has no value to show.
        self.has_value = True

    @classmethod
    def key(cls, path: KeyPath, reason: str, choices: tuple[str, ...] = ()) -> TableDataError:
        error = cls(path, reason, choices=choices)
        error.has_value = False
        return error


def architecture_yaml(name: str) -> dict[str, Any]:
    """The built-in classifier ``name`` as an ``architectures:`` entry of a spec."""
    return table_data(TABLES[name])


def table_data(table: ArchitectureTable) -> dict[str, Any]:
    """``table`` as an ``architectures:`` entry, every optional key written out."""
    stage = table.last_stage
    last_stage: dict[str, Any] = {
        "kind": stage.kind,
        "dropout": stage.dropout,
        "width": stage.width,
    }
    if stage.channels is not None:
        last_stage["channels"] = stage.channels
    if stage.conv_channels is not None:
        last_stage["conv_channels"] = stage.conv_channels
    squeeze = table.squeeze_excite
    return {
        "paper": table.paper,
        "stem": {
            "channels": table.stem.channels,
            "kernel": table.stem.kernel_size,
            "stride": table.stem.stride,
            "activation": table.stem.activation,
            "width": table.stem.width,
        },
        "stages": [list(codes) for codes in table.stages],
        "last_stage": last_stage,
        "last_stage_activation": table.last_stage_activation,
        "batch_norm_epsilon": table.batch_norm_epsilon,
        "squeeze_excite": {
            "ratio": squeeze.ratio,
            "gate": squeeze.gate,
            "reference": squeeze.reference,
        },
        "resolution": table.resolution,
        "classes": table.num_classes,
    }


def table_from_data(name: str, data: object) -> ArchitectureTable:
    """An ``architectures:`` entry -> its table; every problem is a ``TableDataError``.

    Beyond each value's type and vocabulary: every block code decodes, and every stride
    divides the feature map it applies to at the entry's resolution (the network would
    otherwise round sizes the table does not show).
    """
    entry = _mapping((), data, TABLE_KEYS)
    paper = entry.get("paper", "")
    if not isinstance(paper, str):
        raise TableDataError(("paper",), "expected a string", paper)
    table = ArchitectureTable(
        name=name,
        paper=paper,
        stem=_stem(entry["stem"]),
        stages=_stages(entry["stages"]),
        last_stage=_last_stage(entry["last_stage"]),
        last_stage_activation=_choice(
            ("last_stage_activation",), entry["last_stage_activation"], tuple(ACTIVATIONS)
        ),
        batch_norm_epsilon=_number(
            ("batch_norm_epsilon",),
            entry.get("batch_norm_epsilon", DEFAULT_BATCH_NORM_EPSILON),
            lambda value: 0 < value < 1,
            "a number in (0, 1)",
        ),
        squeeze_excite=_squeeze_excite(entry.get("squeeze_excite", {})),
        resolution=_integer(
            ("resolution",), entry.get("resolution", _default(ArchitectureTable, "resolution"))
        ),
        num_classes=_integer(
            ("classes",), entry.get("classes", _default(ArchitectureTable, "num_classes"))
        ),
    )
    _check_blocks(table)
    return table


def _stem(data: object) -> Stem:
    stem = _mapping(("stem",), data, STEM_KEYS)
    return Stem(
        channels=_integer(("stem", "channels"), stem["channels"]),
        kernel_size=_integer(("stem", "kernel"), stem["kernel"]),
        stride=_integer(("stem", "stride"), stem["stride"]),
        activation=_choice(("stem", "activation"), stem["activation"], tuple(ACTIVATIONS)),
        width=_choice(("stem", "width"), stem.get("width", "scaled"), LAST_STAGE_WIDTHS),
    )


def _last_stage(data: object) -> LastStage:
    stage = _mapping(("last_stage",), data, LAST_STAGE_KEYS)
    kind = LAST_STAGES[_choice(("last_stage", "kind"), stage["kind"], tuple(LAST_STAGES))]
    # The kinds that size a layer by the stage's own counts need them.
    needed = {
        "channels": kind.conv_to_channels or kind.hidden,
        "conv_channels": kind.conv_to_conv_channels,
    }
    counts: dict[str, int | None] = {}
    for key, needs in needed.items():
        if needs and key not in stage:
            raise TableDataError.key(
                ("last_stage", key), f"missing: a {kind.name} last stage needs its {key}"
            )
        counts[key] = None if key not in stage else _integer(("last_stage", key), stage[key])
    return LastStage(
        kind=kind.name,
        channels=counts["channels"],
        dropout=_number(
            ("last_stage", "dropout"),
            stage.get("dropout", _default(LastStage, "dropout")),
            lambda value: 0 <= value < 1,
            "a dropout rate in [0, 1)",
        ),
        width=_choice(("last_stage", "width"), stage.get("width", "scaled"), LAST_STAGE_WIDTHS),
        conv_channels=counts["conv_channels"],
    )


def _squeeze_excite(data: object) -> SqueezeExcite:
    squeeze = _mapping(("squeeze_excite",), data, SQUEEZE_EXCITE_KEYS)
    reference = _choice(
        ("squeeze_excite", "reference"),
        squeeze.get("reference", V3_SQUEEZE_EXCITE.reference),
        SQUEEZE_REFERENCES,
    )
    return SqueezeExcite(
        ratio=_number(
            ("squeeze_excite", "ratio"),
            squeeze.get("ratio", V3_SQUEEZE_EXCITE.ratio),
            lambda value: 0 < value <= 1,
            "a ratio in (0, 1]",
        ),
        gate=_choice(
            ("squeeze_excite", "gate"), squeeze.get("gate", V3_SQUEEZE_EXCITE.gate), tuple(SE_GATES)
        ),
        reference=reference,  # type: ignore[arg-type]  # one of SQUEEZE_REFERENCES
    )


def _stages(data: object) -> tuple[tuple[str, ...], ...]:
    if not isinstance(data, list) or not data:
        raise TableDataError(("stages",), "expected a non-empty list of stages", data)
    stages = []
    for index, stage in enumerate(data):
        if not isinstance(stage, list) or not stage:
            raise TableDataError(
                ("stages", index), "expected a non-empty list of block codes", stage
            )
        for position, code in enumerate(stage):
            if not isinstance(code, str):
                raise TableDataError(("stages", index, position), "expected a block code", code)
        stages.append(tuple(stage))
    return tuple(stages)


def _check_blocks(table: ArchitectureTable) -> None:
    """Decode every code as ``decode`` will, following the feature map's size."""
    size = table.resolution
    if size % table.stem.stride:
        raise TableDataError(
            ("stem", "stride"), f"does not divide the resolution {size}", table.stem.stride
        )
    size //= table.stem.stride
    channels = table.stem.channels
    for index, stage in enumerate(table.stages):
        for position, code in enumerate(stage):
            path = ("stages", index, position)
            try:
                blocks = decode_block(code, channels, table.squeeze_excite)
            except ValueError as error:
                raise TableDataError(path, str(error).replace(f" {code!r}", ""), code) from None
            stride = blocks[0].stride
            if size % stride:
                raise TableDataError(
                    path,
                    f"stride {stride} does not divide the {size}x{size} feature map it "
                    f"applies to (resolution {table.resolution})",
                    code,
                )
            size //= stride
            channels = blocks[-1].out_channels


def _mapping(path: KeyPath, data: object, keys: Mapping[str, bool]) -> dict[str, Any]:
    if not isinstance(data, dict):
        raise TableDataError(path, "expected a mapping", data)
    for key in data:
        if key not in keys:
            raise TableDataError.key((*path, key), "unknown key", tuple(keys))
    for key, required in keys.items():
        if required and key not in data:
            raise TableDataError.key((*path, key), "missing required key")
    return data


def _integer(path: KeyPath, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise TableDataError(path, "expected a positive integer", value)
    return value


def _number(path: KeyPath, value: object, test: Callable[[float], bool], rule: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not test(value):
        raise TableDataError(path, f"expected {rule}", value)
    return value


def _choice(path: KeyPath, value: object, choices: tuple[str, ...]) -> str:
    if not isinstance(value, str) or value not in choices:
        raise TableDataError(path, "unknown value", value, choices)
    return value
