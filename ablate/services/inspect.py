"""What `ablate models` and `ablate inspect` compute (`counting.inspection` holds the records);
rendered elsewhere."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ablate.architecture.imported import (
    DEFAULT_RESOLUTION,
    ImportedModel,
    Network,
    is_import_path,
)
from ablate.counting.inspection import Inspection, ModelSummary, rows_counts
from ablate.errors import AblateError
from ablate.spec.imports import import_refusal


@dataclass(frozen=True)
class ModelChoice:
    """A model named on the command line: a built-in architecture with factor settings, or
    a module's factory by import path (`imported`; `architecture` is then its path)."""

    architecture: str
    factors: Mapping[str, Any] = field(default_factory=dict)
    imported: ImportedModel | None = None

    @property
    def label(self) -> str:
        if self.imported is not None:
            return self.imported.label
        if not self.factors:
            return self.architecture
        settings = ",".join(f"{name}={_yaml_text(value)}" for name, value in self.factors.items())
        return f"{self.architecture}[{settings}]"

    def network(self) -> Network:
        """The network to build: the imported module, or the architecture resolved."""
        if self.imported is not None:
            return self.imported
        from ablate.variants.resolve import resolve_architecture

        return resolve_architecture(self.architecture, self.factors)


def _yaml_text(value: Any) -> str:
    """A factor value as it would be typed after --set (YAML booleans are lowercase)."""
    if isinstance(value, bool):
        return str(value).lower()
    return str(value)


def model_choice(
    model: str,
    *,
    factors: Mapping[str, Any] | None = None,
    args: Mapping[str, Any] | None = None,
    resolution: int | None = None,
    allow_import: bool = False,
    options: tuple[str, str] = ("--set", "--arg"),
) -> ModelChoice:
    """MODEL as `inspect` and `bench` take it: a built-in's name with `factors`, or an
    import path (`package.module:factory`) with its factory's keyword `args` and an input
    `resolution`, imported and checked only when `allow_import` (one line otherwise).
    `options`: how the factor and argument options are called, for the messages."""
    set_option, arg_option = options
    factors = dict(factors or {})
    if not is_import_path(model):
        if args:
            raise AblateError(
                f"{arg_option}: keyword arguments of an imported module's factory "
                f"(MODEL as package.module:factory); {model} takes {set_option} FACTOR=VALUE"
            )
        if resolution is not None:
            raise AblateError(
                f"--resolution: the input size of an imported module; {model} takes "
                f"{set_option} resolution={resolution}"
            )
        return ModelChoice(model, factors)
    imported = ImportedModel.of(model, args, resolution or DEFAULT_RESOLUTION)
    if factors:
        raise AblateError(
            f"{set_option}: factors do not apply to an imported module ({imported.path}): "
            f"ablate knows nothing of its blocks; give its factory's keyword arguments with "
            f"{arg_option} KEY=VALUE"
        )
    if not allow_import:
        raise AblateError(import_refusal(imported))
    imported.check()
    return ModelChoice(imported.path, {}, imported)


def list_models(spec: str | Path | None = None) -> list[ModelSummary]:
    """The built-in architectures, then those of ``spec``'s `architectures:` section."""
    from ablate.architecture.builder import build_module
    from ablate.architecture.tables import ARCHITECTURES, PAPERS, decode
    from ablate.spec import load_spec

    listed = [(name, architecture, PAPERS[name]) for name, architecture in ARCHITECTURES.items()]
    if spec is not None:
        loaded = load_spec(spec)
        listed += [
            (name, decode(table), f"{loaded.source_label}: architectures.{name}")
            for name, table in loaded.architectures.items()
        ]
    summaries = []
    for name, architecture, paper in listed:
        model = build_module(architecture)
        summaries.append(
            ModelSummary(
                name=name,
                paper=paper,
                params=sum(parameter.numel() for parameter in model.parameters()),
                blocks=len(architecture.blocks),
                resolution=architecture.resolution,
            )
        )
    return summaries


def inspect_model(
    model: ModelChoice | str,
    factors: dict[str, Any] | None = None,
    *,
    batch: int = 1,
    crosscheck: bool = False,
) -> Inspection:
    """Per-layer counts of `model` (a built-in's name with `factors`, or a `model_choice`)."""
    import torch

    from ablate.architecture.imported import build_network
    from ablate.counting import count_model
    from ablate.counting import crosscheck as run_crosscheck
    from ablate.counting.networks import group_function, network_rows

    choice = model if isinstance(model, ModelChoice) else model_choice(model, factors=factors)
    # Counting needs shapes, not values: randomly initialised weights otherwise drive
    # activations into denormal slow paths that make one pass take seconds.
    torch.set_flush_denormal(True)
    network = choice.network()
    module = build_network(network)
    shape = (batch, 3, network.resolution, network.resolution)
    counts = count_model(module, shape, group_of=group_function(network))
    rows = network_rows(network, module)
    return Inspection(
        model=choice.architecture,
        factors=dict(choice.factors),
        args=None if choice.imported is None else choice.imported.args,
        architecture=network,
        layers=rows,
        params=sum(parameter.numel() for parameter in module.parameters()),
        counts=counts,
        row_counts=rows_counts(rows, counts),
        crosscheck=run_crosscheck(module, shape) if crosscheck else None,
    )
