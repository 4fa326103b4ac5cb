"""Device profiles on disk: schema ``ablate.device/2``, the shipped ones and the user's.

A profile is everything needed to predict and to judge the prediction: the cost model's form
and fitted coefficients, a bootstrap of the coefficients (the uncertainty), the rows it was
fitted on with their fitted and leave-one-out predictions, and the cross-validation scores of
every candidate form that justified the choice.

A profile also records what its rows resolved (`support`: per term, whether the fit pinned
it down and the range of its feature over the rows), the priors that stand in for the rates
the rows left unresolved (`priors`), and, when a prior applies, the fit without them
(`raw`, for `--prior none`). Files written before these existed have none of them and still
load; their predictions say that extrapolation was not checked.

Every profile, read or fitted, passes `profile_from_json`: its numbers finite and in range,
its shapes those of its cost model. A prediction multiplies and subtracts these numbers, so
one NaN or overflow in a profile would otherwise come out as a "nan ms" latency or a ratio
marked significant.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from importlib import resources
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ablate.counting.kinds import Kind
from ablate.devices import PRIOR_CHOICES
from ablate.devices.costs import FORMS, Form, form_choices
from ablate.errors import AblateError, InputFileError, excerpt, format_key_path
from ablate.files import read_json, write_json_atomic

# /2: the stem has a rate of its own (stem_macs), so dense_macs means the convs after it.
SCHEMA = "ablate.device/2"
PROFILE_DIRECTORY_VARIABLE = "ABLATE_DEVICES_DIR"
SHIPPED_PACKAGE = "ablate.devices"
SHIPPED_NAMES = ("pixel1",)
KIND_PATTERN = "^(" + "|".join(kind.value for kind in Kind) + ")$"

# A measured latency, in ms: a forward pass under a nanosecond or over a day is a unit
# mistake, not a device (and the fit divides by latencies: 1e-300 ms would overflow it).
LATENCY_RANGE_MS = (1e-6, 86_400_000.0)
# Every other number of a profile (ms per GMAC, per GB or per op, a prediction in ms, a
# relative error) is at most this: far beyond what any device gives, and far enough below the
# float range that a prediction's products and sums cannot overflow.
MAX_MAGNITUDE = 1e15


def latency_problem(value: float) -> str | None:
    """Why ``value`` cannot be a measured latency in ms (None when it can)."""
    low, high = LATENCY_RANGE_MS
    if math.isfinite(value) and low <= value <= high:
        return None
    return f"latency must be a number of ms from {low:g} to {high:g} (a nanosecond to a day)"


Milliseconds = Annotated[
    float, Field(ge=LATENCY_RANGE_MS[0], le=LATENCY_RANGE_MS[1], allow_inf_nan=False)
]
NonNegative = Annotated[float, Field(ge=0, le=MAX_MAGNITUDE, allow_inf_nan=False)]
# A relative residual, measured / predicted - 1: above -1, as both latencies are positive.
Residual = Annotated[float, Field(gt=-1, le=MAX_MAGNITUDE, allow_inf_nan=False)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Parameter(_Strict):
    name: str  # the term, e.g. "pointwise_macs"
    meaning: str
    value: NonNegative  # unit below; >= 0 (non-negative least squares)
    unit: str  # ms/GMAC, ms/GB or ms/op
    ci95: tuple[NonNegative, NonNegative]  # percentile interval over the bootstrap
    readable: str  # "12.3 GMAC/s", "4.1 GB/s", "25 µs per op"


class Row(_Strict):
    name: str
    model: str
    factors: dict[str, Any]
    latency_ms: Milliseconds
    fitted_ms: NonNegative  # the profile's prediction with every row fitted
    loo_ms: NonNegative  # the prediction when this row's architecture was left out
    source: str  # where the latency comes from (a paper table, a run directory)
    kernels: int = Field(0, ge=0)  # the row's timed kernels that the fit used
    # Their sum as profiled (the fit scales them to latency_ms); None: no kernel was timed.
    profiled_ms: NonNegative | None = None
    kernel_match: str | None = None  # how its kernels joined its counting records
    # The measurement's flags on its latency ("drift", "high_iqr"); none from a paper table.
    flags: list[str] = Field(default_factory=list)


class Candidate(_Strict):
    form: str
    meaning: str
    terms: list[str]
    loo_mean_abs_error: NonNegative  # relative, |predicted / measured - 1|
    loo_median_abs_error: NonNegative
    loo_max_abs_error: NonNegative


class FitQuality(_Strict):
    rows: int = Field(ge=1)
    # Distinct architectures: leave-one-out leaves one of these out.
    architectures: int = Field(ge=1)
    # Per-kernel rows beside the whole-network ones (0: fitted on whole networks only).
    kernel_rows: int = Field(0, ge=0)
    loo_median_abs_error: NonNegative  # relative
    loo_max_abs_error: NonNegative
    # Leave-one-out of the whole procedure, form selection included (the honest figure).
    nested_loo_median_abs_error: NonNegative
    nested_loo_max_abs_error: NonNegative
    in_sample_max_abs_error: NonNegative
    selection: str  # how the form was chosen
    candidates: list[Candidate]


class Bootstrap(_Strict):
    seed: int
    # One coefficient vector per resample of the rows (architectures drawn with replacement),
    # and one relative residual per resample, drawn from the leave-one-out residuals: a
    # prediction's interval is the spread of prediction_b x (1 + residual_b).
    coefficients: list[list[NonNegative]] = Field(min_length=1)
    residuals: list[Residual] = Field(min_length=1)


Share = Annotated[float, Field(ge=0, le=1, allow_inf_nan=False)]


class TermSupport(_Strict):
    """What the rows say about one term: whether the fit resolved it, and where they lie."""

    name: str
    # The bootstrap interval of its coefficient excludes 0 and its feature varies over the
    # rows: the rows pin its rate down, apart from every other term's.
    resolved: bool
    why: str  # the interval and the variation, in words
    feature_range: tuple[NonNegative, NonNegative]  # over the rows, in GMAC, GB or kernels
    # The term's share of each row's predicted time (with the coefficients predictions use).
    share_range: tuple[Share, Share]


class Prior(_Strict):
    """A rate stated, not fitted: ``term`` costed at ``rate_of``'s rate (`costs.PRIORS`)."""

    term: str
    rate_of: str
    statement: str  # "dense convs costed at the pointwise rate: not measured on this device"
    reason: str


class RawFit(_Strict):
    """The fit without priors: what the rows alone say (`--prior none`)."""

    parameters: list[Parameter]
    quality: FitQuality
    bootstrap: Bootstrap
    support: list[TermSupport]
    fitted_ms: list[NonNegative]  # per row, as Row.fitted_ms
    loo_ms: list[NonNegative]


class Absorption(_Strict):
    """A kind the device ran inside the kernel before it, and how often the calibration saw
    that (``fused`` of ``seen`` records of the kind)."""

    kind: Annotated[str, Field(pattern=KIND_PATTERN)]
    fused: int = Field(ge=1)
    seen: int = Field(ge=1)


class Profile(_Strict):
    schema_name: Literal["ablate.device/2"] = Field(alias="schema")
    name: str
    description: str
    created: str
    ablate_version: str
    view: Literal["fused", "unfused"]  # which traffic view the byte terms count
    batch: int = Field(ge=1)
    dtype: str
    form: str
    parameters: list[Parameter]
    quality: FitQuality
    bootstrap: Bootstrap
    rows: list[Row] = Field(min_length=1)
    # Per term, in the form's order; None in files written before it was recorded.
    support: list[TermSupport] | None = None
    priors: list[Prior] = []
    raw: RawFit | None = None  # only when a prior applies
    # Kinds this device runs inside the kernel before them, as its calibration's kernels
    # showed (`fit.absorbed_kinds`): no kernel and no traffic of their own here.
    absorbed: list[Absorption] = []

    @property
    def absorbed_kinds(self) -> frozenset[Kind]:
        return frozenset(Kind(entry.kind) for entry in self.absorbed)

    @property
    def coefficients(self) -> list[float]:
        return [parameter.value for parameter in self.parameters]

    def unsteady(self) -> str | None:
        """One sentence when the latencies the profile was fitted on moved while they were
        measured (`MOVED_FLAGS`: a wide spread or a drift) in at least `UNSTEADY_SHARE` of its
        rows (`measurement.statistics.mostly_moved`); None otherwise. A machine that slows
        down or turns noisy during a calibration biases every rate it fits (this host,
        2026-12-07: an ExecuTorch int8 calibration in which every network drifted, a median
        +25%, predicted the full networks 15% too slow, and 2.1% measured again on the quiet
        machine; an fp32 calibration whose 36 latencies all spread over 10% of their
        medians, 16.5% too slow)."""
        from ablate.measurement.statistics import MOVED_FLAGS, mostly_moved, moved

        count = sum(1 for row in self.rows if moved(row.flags))
        if not mostly_moved(count, len(self.rows)):
            return None
        counts = ", ".join(
            f"{flag!r} on {flagged}"
            for flag in MOVED_FLAGS
            if (flagged := sum(1 for row in self.rows if flag in row.flags))
        )
        return (
            f"{count} of {len(self.rows)} rows' latencies moved while they were measured "
            f"(flags in their runs: {counts}): the machine was not steady, and the fitted "
            "costs carry that; measure on a quiet machine, pinned to a core"
        )

    def summary(self) -> str:
        """One line a person can read: what the device is like."""
        return ", ".join(
            f"{parameter.meaning} at {parameter.readable}" for parameter in self.parameters
        )

    def prior_of(self, term: str) -> Prior | None:
        return next((prior for prior in self.priors if prior.term == term), None)

    def without_priors(self) -> Profile:
        """The same profile with the raw fit's coefficients: what its rows alone say."""
        raw = self.raw
        if raw is None:
            return self
        rows = [
            row.model_copy(update={"fitted_ms": fitted, "loo_ms": loo})
            for row, fitted, loo in zip(self.rows, raw.fitted_ms, raw.loo_ms, strict=True)
        ]
        return self.model_copy(
            update={
                "parameters": raw.parameters,
                "quality": raw.quality,
                "bootstrap": raw.bootstrap,
                "support": raw.support,
                "rows": rows,
                "priors": [],
                "raw": None,
            }
        )

    def to_json(self) -> dict[str, Any]:
        return self.model_dump(mode="json", by_alias=True)


def user_directory() -> Path:
    configured = os.environ.get(PROFILE_DIRECTORY_VARIABLE)
    if configured:
        return Path(configured)
    config_home = os.environ.get("XDG_CONFIG_HOME")
    base = Path(config_home) if config_home else Path.home() / ".config"
    return base / "ablate" / "devices"


def shipped_path(name: str) -> Path:
    return Path(str(resources.files(SHIPPED_PACKAGE).joinpath(f"{name}.json")))


def write_profile(profile: Profile, path: Path) -> None:
    write_json_atomic(path, profile.to_json())


class ProfileError(ValueError):
    """What is wrong in a profile's content: where (a key path), what, and the valid choices."""

    def __init__(self, key_path: str, message: str, choices: Sequence[str] = ()) -> None:
        super().__init__(f"{key_path}: {message}")
        self.key_path = key_path
        self.message = message
        self.choices = tuple(choices)


def _check_fit(
    prefix: str,
    form: Form,
    parameters: Sequence[Parameter],
    bootstrap: Bootstrap,
    quality: FitQuality,
    rows: int,
) -> None:
    """One fit's parts against its form and each other (the profile's own, or its raw one)."""
    names = [parameter.name for parameter in parameters]
    if names != list(form.term_names):
        raise ProfileError(
            f"{prefix}parameters",
            f"the file has {len(names)} terms ({', '.join(names) or 'none'}); cost model "
            f"{form.name!r} has {len(form.terms)}, in this order",
            form.term_names,
        )
    for index, (parameter, term) in enumerate(zip(parameters, form.terms, strict=True)):
        if parameter.unit != term.unit:
            raise ProfileError(
                f"{prefix}parameters[{index}].unit",
                f"{parameter.unit!r} is not {term.name}'s unit",
                [term.unit],
            )
        low, high = parameter.ci95
        if low > high:
            raise ProfileError(f"{prefix}parameters[{index}].ci95", f"low {low} above high {high}")
    if not any(parameter.value for parameter in parameters):
        raise ProfileError(
            f"{prefix}parameters", "every coefficient is 0: the profile predicts no time"
        )
    for index, sample in enumerate(bootstrap.coefficients):
        if len(sample) != len(names):
            raise ProfileError(
                f"{prefix}bootstrap.coefficients[{index}]",
                f"{len(sample)} coefficients; the cost model has {len(names)}: {', '.join(names)}",
            )
        if not any(sample):
            raise ProfileError(
                f"{prefix}bootstrap.coefficients[{index}]",
                "every coefficient is 0: it predicts no time",
            )
    resamples, residuals = len(bootstrap.coefficients), len(bootstrap.residuals)
    if residuals != resamples:
        raise ProfileError(
            f"{prefix}bootstrap.residuals",
            f"{residuals} residuals for {resamples} coefficient resamples; one per resample",
        )
    if quality.rows != rows:
        raise ProfileError(
            f"{prefix}quality.rows", f"{quality.rows}, but the profile has {rows} rows"
        )
    if quality.architectures > quality.rows:
        raise ProfileError(
            f"{prefix}quality.architectures",
            f"{quality.architectures} architectures in {quality.rows} rows",
        )


def _check_support(prefix: str, form: Form, support: Sequence[TermSupport]) -> None:
    names = [entry.name for entry in support]
    if names != list(form.term_names):
        raise ProfileError(
            f"{prefix}support",
            f"the file has support for {', '.join(names) or 'no term'}; cost model "
            f"{form.name!r} has these terms, in this order",
            form.term_names,
        )
    for index, entry in enumerate(support):
        for key in ("feature_range", "share_range"):
            low, high = getattr(entry, key)
            if low > high:
                raise ProfileError(
                    f"{prefix}support[{index}].{key}", f"low {low} above high {high}"
                )


def _check_priors(profile: Profile, form: Form) -> None:
    """Each prior names two terms of the form, and the profile costs the one at the other's
    rate: a prior the coefficients do not follow would be a statement without effect."""
    values = {parameter.name: parameter.value for parameter in profile.parameters}
    seen: set[str] = set()
    for index, prior in enumerate(profile.priors):
        for key in ("term", "rate_of"):
            if getattr(prior, key) not in values:
                raise ProfileError(
                    f"priors[{index}].{key}",
                    f"{getattr(prior, key)!r} is no term of cost model {form.name!r}",
                    form.term_names,
                )
        if prior.term in seen or prior.term == prior.rate_of:
            raise ProfileError(f"priors[{index}].term", f"{prior.term!r}: one prior per term")
        seen.add(prior.term)
        if not math.isclose(values[prior.term], values[prior.rate_of], rel_tol=1e-9):
            raise ProfileError(
                f"priors[{index}]",
                f"{prior.term} is {values[prior.term]:g}, not {prior.rate_of}'s rate "
                f"{values[prior.rate_of]:g}: the prior is not applied",
            )
    if profile.priors and profile.raw is None:
        raise ProfileError("raw", "missing: a profile with priors keeps the fit without them")
    if not profile.priors and profile.raw is not None:
        raise ProfileError("raw", "present, but no prior applies: the fit is the raw one")


def _check_shapes(profile: Profile) -> None:
    """What pydantic's field types cannot see: the parts that must agree with each other."""
    form = FORMS.get(profile.form)
    if form is None:
        raise ProfileError("form", f"unknown cost model {profile.form!r}", [form_choices()])
    rows = len(profile.rows)
    _check_fit("", form, profile.parameters, profile.bootstrap, profile.quality, rows)
    if profile.support is not None:
        _check_support("", form, profile.support)
    raw = profile.raw
    if raw is not None:
        _check_fit("raw.", form, raw.parameters, raw.bootstrap, raw.quality, rows)
        _check_support("raw.", form, raw.support)
        for key in ("fitted_ms", "loo_ms"):
            if len(getattr(raw, key)) != rows:
                raise ProfileError(
                    f"raw.{key}", f"{len(getattr(raw, key))} values for {rows} rows; one per row"
                )
    _check_priors(profile, form)


def profile_from_json(data: Any) -> Profile:
    """A profile from its JSON form, every number and shape checked (a `ProfileError` if not)."""
    if not isinstance(data, dict) or data.get("schema") != SCHEMA:
        got = data.get("schema") if isinstance(data, dict) else None
        hint = (
            "; written by an older ablate: fit it again (ablate fit-device)"
            if isinstance(got, str) and got.startswith("ablate.device/")
            else ""
        )
        raise ProfileError("schema", f"unsupported schema {got!r}{hint}", [SCHEMA])
    try:
        profile = Profile.model_validate(data)
    except ValidationError as error:
        first = error.errors()[0]
        message = first["msg"]
        value = first.get("input")
        if value is None or isinstance(value, bool | int | float | str):
            message += f" (got {excerpt(value)})"
        raise ProfileError(format_key_path(first["loc"]), message) from None
    _check_shapes(profile)
    return profile


def read_profile(path: Path) -> Profile:
    try:
        return profile_from_json(read_json(path))
    except ProfileError as error:
        raise InputFileError(
            path, error.message, key_path=error.key_path, choices=error.choices
        ) from None


def available_profiles() -> dict[str, Path]:
    """Every profile by name; a user profile of the same name shadows the shipped one."""
    found = {name: shipped_path(name) for name in SHIPPED_NAMES if shipped_path(name).exists()}
    directory = user_directory()
    if directory.is_dir():
        for path in sorted(directory.glob("*.json")):
            found[path.stem] = path
    return found


def load_profile(name: str, prior: str = "stated") -> Profile:
    """A profile by name (user directory first, then shipped) or by path to a JSON file;
    with ``prior="none"``, its raw fit."""
    if prior not in PRIOR_CHOICES:
        raise AblateError(f"--prior {prior!r}: valid: {', '.join(PRIOR_CHOICES)}")
    profile = _load_profile(name)
    return profile.without_priors() if prior == "none" else profile


def _load_profile(name: str) -> Profile:
    if name.endswith(".json"):
        return read_profile(Path(name))
    profiles = available_profiles()
    if name not in profiles:
        raise AblateError(
            f"--device {name!r}: no such device profile; valid: "
            + (", ".join(profiles) or "(none)")
            + f" (fit one with `ablate fit-device`; user profiles live in {user_directory()})"
        )
    return read_profile(profiles[name])
