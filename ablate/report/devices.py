"""Rich renderers for device profiles and predictions: pure functions of the records."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from rich.table import Table

from ablate.devices.costs import FORMS, feature_text
from ablate.devices.support import RANGE_MARGIN

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


def support_table(profile: Profile) -> Table:
    """Per term: what the rows resolved, and the range of its feature over them."""
    table = Table(
        title=f"What the rows of {profile.name} resolved",
        caption="resolved: the term's 95% bootstrap interval excludes 0 and its feature varies "
        f"over the rows. A prediction is flagged extrapolated beyond {RANGE_MARGIN:g}x a "
        f"feature's range, or when an unresolved term carries over {RANGE_MARGIN:g}x its "
        "largest share of a row's time.",
    )
    table.add_column("term")
    table.add_column("resolved")
    table.add_column("why")
    table.add_column("feature over the rows", justify="right")
    table.add_column("share of a row's time", justify="right")
    table.add_column("prior")
    if profile.support is None:
        table.add_row(
            "-",
            "not recorded",
            "the profile predates the record; refit it with `ablate fit-device`",
            "",
            "",
            "",
        )
        return table
    form = FORMS[profile.form]
    for term, entry in zip(form.terms, profile.support, strict=True):
        low, high = entry.feature_range
        share_low, share_high = entry.share_range
        prior = profile.prior_of(entry.name)
        table.add_row(
            entry.name,
            "yes" if entry.resolved else "no",
            entry.why,
            f"{feature_text(term, low)} .. {feature_text(term, high)}",
            f"{_percent(share_low)} .. {_percent(share_high)}",
            "" if prior is None else prior.statement,
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
    table.add_column("unresolved by its rows")
    for listing in listings:
        quality = listing.profile.quality
        table.add_row(
            listing.name,
            "shipped" if listing.shipped else str(listing.path),
            str(quality.rows),
            _percent(quality.loo_median_abs_error),
            _percent(quality.loo_max_abs_error),
            listing.profile.summary(),
            unresolved_text(listing.profile),
        )
    return table


def unresolved_text(profile: Profile) -> str:
    """`dense_macs (prior: ...), ops`, `none`, or that the profile does not say."""
    if profile.support is None:
        return "not recorded (refit to record it)"
    names = []
    for entry in profile.support:
        if entry.resolved:
            continue
        prior = profile.prior_of(entry.name)
        names.append(entry.name + ("" if prior is None else f" ({prior.statement})"))
    return ", ".join(names) or "none"


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


def prediction_notes(prediction: Prediction, raw: bool = False) -> list[str]:
    """Below the prediction table: the priors it rests on, and where it extrapolates."""
    lines = []
    if raw:
        lines.append("Raw fit (--prior none): no prior stands in for an unresolved rate.")
    lines += [f"Prior: {statement}." for statement in prediction.priors]
    if prediction.extrapolated is None:
        lines.append(
            "Extrapolation not checked: the profile does not record what its rows resolved "
            "(refit it with `ablate fit-device`)."
        )
    elif prediction.extrapolated:
        lines.append(
            "EXTRAPOLATED: the network lies outside what the profile's rows resolved, so the "
            "prediction rests on rates they never measured:"
        )
        lines += [f"- {entry.term}: {entry.detail}" for entry in prediction.extrapolated]
    return lines
