"""Rich renderers for device profiles and predictions: pure functions of the records."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from rich.table import Table

if TYPE_CHECKING:
    from ablate.devices.api import ProfileListing
    from ablate.devices.predict import Prediction
    from ablate.devices.profile import Profile


def _percent(value: float) -> str:
    return f"{100 * value:.1f}%"


def profile_table(profile: Profile) -> Table:
    quality = profile.quality
    table = Table(
        title=f"Device profile {profile.name}: cost model {profile.form} ({profile.view} view, "
        f"batch {profile.batch})",
        caption=f"{quality.rows} rows, {quality.architectures} architectures. Leave-one-out "
        f"relative error: median {_percent(quality.loo_median_abs_error)}, worst "
        f"{_percent(quality.loo_max_abs_error)} (form chosen again per fold: median "
        f"{_percent(quality.nested_loo_median_abs_error)}, worst "
        f"{_percent(quality.nested_loo_max_abs_error)}). 95% intervals: bootstrap over "
        "architectures.",
    )
    table.add_column("term")
    table.add_column("meaning")
    table.add_column("coefficient", justify="right")
    table.add_column("95% interval", justify="right")
    table.add_column("reads as", justify="right")
    for parameter in profile.parameters:
        low, high = parameter.ci95
        table.add_row(
            parameter.name,
            parameter.meaning,
            f"{parameter.value:.4g} {parameter.unit}",
            f"{low:.3g} .. {high:.3g}",
            parameter.readable,
        )
    return table


def candidates_table(profile: Profile) -> Table:
    table = Table(
        title="Candidate cost models, leave-one-architecture-out relative error",
        caption=f"chosen: {profile.form} ({profile.quality.selection})",
    )
    table.add_column("form")
    table.add_column("terms", justify="right")
    table.add_column("mean", justify="right")
    table.add_column("median", justify="right")
    table.add_column("worst", justify="right")
    for candidate in profile.quality.candidates:
        table.add_row(
            candidate.form + (" *" if candidate.form == profile.form else ""),
            str(len(candidate.terms)),
            _percent(candidate.loo_mean_abs_error),
            _percent(candidate.loo_median_abs_error),
            _percent(candidate.loo_max_abs_error),
        )
    return table


def devices_table(listings: Sequence[ProfileListing]) -> Table:
    table = Table(title="Device profiles (a user profile shadows a shipped one of its name)")
    table.add_column("name")
    table.add_column("where")
    table.add_column("rows", justify="right")
    table.add_column("LOO median", justify="right")
    table.add_column("LOO worst", justify="right")
    table.add_column("what the device is like")
    for listing in listings:
        quality = listing.profile.quality
        table.add_row(
            listing.name,
            "shipped" if listing.shipped else str(listing.path),
            str(quality.rows),
            _percent(quality.loo_median_abs_error),
            _percent(quality.loo_max_abs_error),
            listing.profile.summary(),
        )
    return table


def prediction_table(title: str, prediction: Prediction) -> Table:
    low, high = prediction.interval_ms
    table = Table(
        title=f"{title}: predicted on {prediction.device} {prediction.ms:.2f} ms "
        f"(95% prediction interval {low:.2f} .. {high:.2f} ms)",
        caption="Per block: the profile's cost terms summed over the block's kernels; block "
        "intervals from the coefficients' uncertainty only.",
    )
    table.add_column("block")
    table.add_column("ms", justify="right")
    table.add_column("95% interval", justify="right")
    table.add_column("share", justify="right")
    terms = list(prediction.terms_ms)
    for term in terms:
        table.add_column(f"{term} ms", justify="right")
    for block in prediction.blocks:
        block_low, block_high = block.ci95_ms
        table.add_row(
            block.name,
            f"{block.ms:.3f}",
            f"{block_low:.3f} .. {block_high:.3f}",
            _percent(block.ms / prediction.ms) if prediction.ms else "-",
            *(f"{block.terms_ms[term]:.3f}" for term in terms),
        )
    return table
