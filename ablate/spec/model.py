"""The loaded experiment: frozen dataclasses with every default filled in.

`ExperimentSpec.to_json()` is the resolved spec in the shape of the YAML document (defaults
written out), so it can be stored with results and loaded again as a spec.
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ablate.architecture.imported import ImportedModel, Network
from ablate.architecture.table_data import table_data
from ablate.architecture.tables import ArchitectureTable
from ablate.errors import UnknownNameError
from ablate.spec import defaults

if TYPE_CHECKING:
    from ablate.analysis.plan import AttributionPlan
    from ablate.spec.schema import PublishedChange, ReferenceSection


@dataclass(frozen=True)
class InputSpec:
    resolution: int
    batch: int

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class MeasureSpec:
    backend: str
    precision: str
    device: str
    threads: int
    channels_last: bool
    target_ci: float
    stop_on: str  # ratios | attribution: `auto` is resolved when the spec is loaded
    budget_s: float
    warmup_s: float
    settle_s: float  # untimed calls before each timing (engine.py)
    min_rounds: int
    max_rounds: int | None
    seed: int
    quick: bool
    kernels: bool  # time every kernel in the profiling stage (`KernelTimes`)

    def effective(self) -> MeasureSpec:
        """The settings a run uses: with `quick`, the smoke-run caps of `defaults`."""
        if not self.quick:
            return self
        return dataclasses.replace(
            self,
            budget_s=min(self.budget_s, defaults.QUICK_BUDGET_S),
            warmup_s=min(self.warmup_s, defaults.QUICK_WARMUP_S),
            settle_s=min(self.settle_s, defaults.QUICK_SETTLE_S),
            min_rounds=min(self.min_rounds, defaults.QUICK_MIN_ROUNDS),
        )

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class AttributionSpec:
    from_architecture: str
    to_architecture: str
    factors: tuple[str, ...]
    method: str  # as given: auto | exact | sampled
    permutations: int
    seed: int
    # `attribution.reference`: factor (or `total`) -> the published change; reported beside
    # the Shapley values, never part of the attribution itself.
    reference: Mapping[str, PublishedChange] | None = None

    def plan(self) -> AttributionPlan:
        """The plan the loader expanded the variants from; the analysis must use the same."""
        from ablate.analysis.plan import plan_attribution

        return plan_attribution(
            self.factors,
            method=self.method,  # type: ignore[arg-type]  # checked by the schema
            permutation_count=self.permutations,
            sampling_seed=self.seed,
        )

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "from": self.from_architecture,
            "to": self.to_architecture,
            "factors": list(self.factors),
            "method": self.method,
            "permutations": self.permutations,
            "seed": self.seed,
        }
        if self.reference is not None:
            data["reference"] = {key: change.to_json() for key, change in self.reference.items()}
        return data


@dataclass(frozen=True)
class VariantSpec:
    name: str
    base: str
    # Factor settings as written (or generated), without `base`, with the resolution default.
    factors: dict[str, Any]
    # Where the variant was defined: `variants.NAME`, `grid` or `attribution`.
    source_key_path: str
    # Validated and resolved at load time; identical architectures are built and timed once.
    # An imported module (`ImportedModel`) where the variant names one: `base` is then its
    # import path, and there are no factors.
    architecture: Network = field(repr=False, compare=False)
    # Published figures to compare with (listed variants only); not part of the architecture.
    reference: ReferenceSection | None = None

    @property
    def section(self) -> str:
        return self.source_key_path.partition(".")[0]

    @property
    def imported(self) -> ImportedModel | None:
        """The imported module that is this variant's network, if it is one."""
        return self.architecture if isinstance(self.architecture, ImportedModel) else None

    def to_json(self) -> dict[str, Any]:
        data = {
            "name": self.name,
            "base": self.base,
            "factors": copy.deepcopy(self.factors),
            "source_key_path": self.source_key_path,
        }
        if self.imported is not None:
            data["args"] = self.imported.args
        if self.reference is not None:
            data["reference"] = self.reference.to_json()
        return data

    def entry(self) -> dict[str, Any]:
        """The variant as the spec's `variants` section writes it."""
        imported = self.imported
        if imported is not None:
            data = {"model": imported.path, "args": imported.args}
        else:
            data = {"base": self.base, **copy.deepcopy(self.factors)}
        if self.reference is not None:
            data["reference"] = self.reference.to_json()
        return data


@dataclass(frozen=True)
class DeviceEntry:
    """One entry of `devices:` as written: a name, or a mapping with an interpreter and a
    calibrated profile. Its names are checked against the device vocabulary, which knows the
    device profiles, by `devices.vocabulary.spec_devices`."""

    device: str
    python: str | None
    profile: str | None
    path: tuple[str | int, ...]  # its key path: ("devices", 2)
    mapping: bool  # written as {device: ...}: the name's key path is `path` + "device"
    # The cluster device (`ablate node`'s `ablate-device:NAME` resource) that measures it.
    node: str | None = None
    # The adb serial of the phone that times it (`measurement.phone`); on a cluster, the node
    # that advertises the phone (`ablate-device:SERIAL`) drives it.
    phone: str | None = None


@dataclass(frozen=True)
class ImportSite:
    """An imported module and where the spec first names it: running the spec imports it
    (`spec.imports.admit_imports`), and what fails there is reported at this place."""

    model: ImportedModel
    key_path: str  # `model`, `variants.NAME.model` or `variants.NAME.args`
    line: int | None


@dataclass(frozen=True)
class ExperimentSpec:
    name: str
    description: str | None
    base: str
    input: InputSpec
    measure: MeasureSpec
    baseline: str
    # Listed variants first, then the grid's, then the attribution's, in that order.
    variants: tuple[VariantSpec, ...]
    attribution: AttributionSpec | None
    # The grid as given (factor -> values), kept for the resolved spec.
    grid: Mapping[str, tuple[Any, ...]] | None
    source_path: Path | None  # None for a spec given as text
    source_label: str  # the path, or the label given to load_spec_text, as errors name it
    source_text: str = field(repr=False)
    # `devices:`, the matrix to run; not part of the resolved spec (`to_json`): each device's
    # run is the spec on that one device, and a device added to the list changes no run.
    devices: tuple[DeviceEntry, ...] | None = None
    # `architectures:`, the spec's own tables (the variants hold them decoded and resolved).
    architectures: Mapping[str, ArchitectureTable] = field(default_factory=dict)
    # `model:` and `args:`, the module every variant imports (`base` is then its path).
    model: ImportedModel | None = None
    # Every imported module a variant names: the code running the spec would import.
    imports: tuple[ImportSite, ...] = ()

    @property
    def variant_names(self) -> tuple[str, ...]:
        return tuple(variant.name for variant in self.variants)

    def variant(self, name: str) -> VariantSpec:
        for variant in self.variants:
            if variant.name == name:
                return variant
        raise UnknownNameError("variant", name, self.variant_names)

    @property
    def baseline_variant(self) -> VariantSpec:
        return self.variant(self.baseline)

    def architecture_groups(self) -> dict[Network, tuple[str, ...]]:
        """Variant names by distinct architecture, in variant order; the first name of each
        group is the one that gets built and timed."""
        groups: dict[Network, list[str]] = {}
        for variant in self.variants:
            groups.setdefault(variant.architecture, []).append(variant.name)
        return {architecture: tuple(names) for architecture, names in groups.items()}

    def to_json(self) -> dict[str, Any]:
        """The resolved spec: the document with every default filled in."""
        listed = {
            variant.name: variant.entry()
            for variant in self.variants
            if variant.section == "variants"
        }
        grid = None
        if self.grid is not None:
            grid = {key: list(values) for key, values in self.grid.items()}
        # An imported spec names its module where others name a base (it has no base).
        network: dict[str, Any] = (
            {"base": self.base}
            if self.model is None
            else {"model": self.model.path, "args": self.model.args}
        )
        return {
            "name": self.name,
            "description": self.description,
            **network,
            "input": self.input.to_json(),
            "measure": self.measure.to_json(),
            "baseline": self.baseline,
            "variants": listed,
            "grid": copy.deepcopy(grid),
            "attribution": None if self.attribution is None else self.attribution.to_json(),
            # Only where there are some: the resolved spec of every earlier run stays the same.
            **(
                {"architectures": {n: table_data(t) for n, t in self.architectures.items()}}
                if self.architectures
                else {}
            ),
        }
