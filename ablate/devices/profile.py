"""Device profiles on disk: schema ``ablate.device/1``, the shipped ones and the user's.

A profile is everything needed to predict and to judge the prediction: the cost model's form
and fitted coefficients, a bootstrap of the coefficients (the uncertainty), the rows it was
fitted on with their fitted and leave-one-out predictions, and the cross-validation scores of
every candidate form that justified the choice.
"""

from __future__ import annotations

import os
from importlib import resources
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ablate.errors import AblateError, InputFileError
from ablate.files import read_json, write_json_atomic

SCHEMA = "ablate.device/1"
PROFILE_DIRECTORY_VARIABLE = "ABLATE_DEVICES_DIR"
SHIPPED_PACKAGE = "ablate.devices"
SHIPPED_NAMES = ("pixel1",)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Parameter(_Strict):
    name: str  # the term, e.g. "pointwise_macs"
    meaning: str
    value: float  # unit below; >= 0 (non-negative least squares)
    unit: str  # ms/GMAC, ms/GB or ms/op
    ci95: tuple[float, float]  # percentile interval over the bootstrap
    readable: str  # "12.3 GMAC/s", "4.1 GB/s", "25 µs per op"


class Row(_Strict):
    name: str
    model: str
    factors: dict[str, Any]
    latency_ms: float
    fitted_ms: float  # the profile's prediction with every row fitted
    loo_ms: float  # the prediction when this row's architecture was left out
    source: str  # where the latency comes from (a paper table, a run directory)


class Candidate(_Strict):
    form: str
    meaning: str
    terms: list[str]
    loo_mean_abs_error: float  # relative, |predicted / measured - 1|
    loo_median_abs_error: float
    loo_max_abs_error: float


class FitQuality(_Strict):
    rows: int
    architectures: int  # distinct architectures: leave-one-out leaves one of these out
    loo_median_abs_error: float  # relative
    loo_max_abs_error: float
    # Leave-one-out of the whole procedure, form selection included (the honest figure).
    nested_loo_median_abs_error: float
    nested_loo_max_abs_error: float
    in_sample_max_abs_error: float
    selection: str  # how the form was chosen
    candidates: list[Candidate]


class Bootstrap(_Strict):
    seed: int
    # One coefficient vector per resample of the rows (architectures drawn with replacement),
    # and one relative residual per resample, drawn from the leave-one-out residuals: a
    # prediction's interval is the spread of prediction_b x (1 + residual_b).
    coefficients: list[list[float]]
    residuals: list[float]


class Profile(_Strict):
    schema_name: Literal["ablate.device/1"] = Field(alias="schema")
    name: str
    description: str
    created: str
    ablate_version: str
    view: Literal["fused", "unfused"]  # which traffic view the byte terms count
    batch: int
    dtype: str
    form: str
    parameters: list[Parameter]
    quality: FitQuality
    bootstrap: Bootstrap
    rows: list[Row]

    @property
    def coefficients(self) -> list[float]:
        return [parameter.value for parameter in self.parameters]

    def summary(self) -> str:
        """One line a person can read: what the device is like."""
        return ", ".join(
            f"{parameter.meaning} at {parameter.readable}" for parameter in self.parameters
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


def read_profile(path: Path) -> Profile:
    data = read_json(path)
    if not isinstance(data, dict) or data.get("schema") != SCHEMA:
        got = data.get("schema") if isinstance(data, dict) else None
        raise InputFileError(
            path, f"unsupported schema {got!r}", key_path="schema", choices=[SCHEMA]
        )
    try:
        return Profile.model_validate(data)
    except ValidationError as error:
        first = error.errors()[0]
        key = ".".join(str(part) for part in first["loc"])
        raise InputFileError(path, first["msg"], key_path=key) from None


def available_profiles() -> dict[str, Path]:
    """Every profile by name; a user profile of the same name shadows the shipped one."""
    found = {name: shipped_path(name) for name in SHIPPED_NAMES if shipped_path(name).exists()}
    directory = user_directory()
    if directory.is_dir():
        for path in sorted(directory.glob("*.json")):
            found[path.stem] = path
    return found


def load_profile(name: str) -> Profile:
    """A profile by name (user directory first, then shipped) or by path to a JSON file."""
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
