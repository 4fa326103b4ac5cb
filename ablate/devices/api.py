"""The library calls behind `ablate fit-device`, `ablate devices` and `ablate predict`."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ablate.devices.costs import FORMS, form_choices
from ablate.devices.fit import fit_profile, fit_scaled
from ablate.devices.observations import (
    count_variant,
    run_gemm_tile,
    run_observations,
    table_observations,
)
from ablate.devices.predict import Prediction, predict_records
from ablate.devices.profile import (
    SHIPPED_NAMES,
    Profile,
    available_profiles,
    load_profile,
    read_profile,
    user_directory,
    write_profile,
)
from ablate.errors import AblateError, InputFileError

_NAME_CHARACTERS = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-.")


def check_profile_name(name: str) -> None:
    """Raises, in one line, unless `name` can name a profile file."""
    if not name or not set(name) <= _NAME_CHARACTERS or name.startswith("."):
        raise AblateError(
            f"NAME {name!r}: use letters, digits, '_', '-' and '.' (it names the profile file)"
        )


def fit_device(
    name: str,
    *,
    runs: Sequence[Path] = (),
    table: Path | None = None,
    form: str | None = None,
    out: Path | None = None,
    description: str | None = None,
    like: str | None = None,
) -> tuple[Profile, Path]:
    """Fit a profile from runs or from a table and write it (default: the user directory);
    with `like`, the profile `like`'s kernel costs times one scale fitted to the rows."""
    check_profile_name(name)
    if (table is None) == (not runs):
        raise AblateError("give either --from RUN (repeatable) or --from-table TABLE.csv")
    if form is not None and form not in FORMS:
        raise AblateError(f"--form {form!r}: unknown cost model; valid: {form_choices()}")
    if form is not None and like is not None:
        raise AblateError("--form and --like: give one (--like takes the reference's form)")
    reference = load_profile(like) if like is not None else None
    tile = None
    if table is not None:
        observations = table_observations(table)
        view, batch, origin = "fused", 1, str(table)
    else:
        observations, view, batch = run_observations(runs)
        origin = ", ".join(str(path) for path in runs)
        tile = run_gemm_tile(runs)
    if reference is not None:
        profile = fit_scaled(
            observations,
            reference,
            name=name,
            description=description or f"{reference.name}'s kernel costs scaled to {origin}",
            origin=origin,
        )
    else:
        profile = fit_profile(
            observations,
            name=name,
            description=description or f"fitted from {origin}",
            view=view,  # type: ignore[arg-type]  # run_observations returns a View
            batch=batch,
            form_name=form,
            origin=origin,
            gemm_tile=tile,
        )
    path = out or user_directory() / f"{name}.json"
    write_profile(profile, path)
    return profile, path


@dataclass(frozen=True)
class ProfileListing:
    name: str
    path: Path
    shipped: bool
    profile: Profile

    def to_json(self) -> dict[str, Any]:
        quality = self.profile.quality
        return {
            "name": self.name,
            "path": str(self.path),
            "shipped": self.shipped,
            "form": self.profile.form,
            "view": self.profile.view,
            "rows": quality.rows,
            "architectures": quality.architectures,
            "loo_median_abs_error": quality.loo_median_abs_error,
            "loo_max_abs_error": quality.loo_max_abs_error,
            "summary": self.profile.summary(),
            "description": self.profile.description,
            "support": None
            if self.profile.support is None
            else [entry.model_dump(mode="json") for entry in self.profile.support],
            "priors": [prior.model_dump(mode="json") for prior in self.profile.priors],
        }


@dataclass(frozen=True)
class DeviceListing:
    """Every profile that could be read, and one error (naming its file) per one that could not:
    a broken profile must not hide the others."""

    profiles: tuple[ProfileListing, ...]
    unreadable: tuple[InputFileError, ...]


def list_devices() -> DeviceListing:
    user = user_directory()
    profiles: list[ProfileListing] = []
    unreadable: list[InputFileError] = []
    for name, path in available_profiles().items():
        try:
            profile = read_profile(path)
        except InputFileError as error:
            unreadable.append(error)
            continue
        shipped = name in SHIPPED_NAMES and path.parent != user
        profiles.append(ProfileListing(name=name, path=path, shipped=shipped, profile=profile))
    return DeviceListing(profiles=tuple(profiles), unreadable=tuple(unreadable))


def predict_variant(
    model: str, factors: dict[str, Any], device: str, prior: str = "stated"
) -> Prediction:
    profile = load_profile(device, prior)
    _, counts = count_variant(model, factors, profile.batch)
    return predict_records(profile, counts.records)
