"""A device profile's coefficients as the properties a matrix report sets each factor's share
against (`runs.matrix.DeviceProperties`): how much dearer a depthwise MAC is than a pointwise
one, the bandwidth of the kernels without MACs, the fixed cost per kernel.

A property is None where the profile's form has no such term, or where its rows did not
resolve the coefficient (`Profile.support`): a rate the fit could set anywhere in a wide
interval would put a device at an arbitrary place on the report's axis.
"""

from __future__ import annotations

from ablate.devices.profile import Profile
from ablate.runs.matrix import DeviceProperties

# The depthwise rate: one term in the per-kind forms; the per-size forms' 3x3 term is the
# kernel size MobileNets use most.
DEPTHWISE_TERMS = ("depthwise_macs", "depthwise3_macs")
# The forms that tile the pointwise GEMM price it per tiled MAC: on the large GEMMs that set a
# network's time, within a few percent of a MAC.
POINTWISE_TERMS = ("pointwise_macs", "pointwise_tiled_macs", "pointwise_gemm_macs")
# One bandwidth for every kernel without MACs; the forms that split it by kind have the
# simplest kinds' (h-swish, clamps) instead.
ELEMENTWISE_TERMS = ("elementwise_bytes", "other_elementwise_bytes")  # ms/GB
# The per-kernel overhead: every kernel's, or in the forms that split it, the conv kernels' (by
# kind: the pointwise convs', the most numerous; apart from the matrix-vector products: the
# other convs').
OVERHEAD_TERMS = ("ops", "conv_ops", "pointwise_ops", "other_conv_ops")  # ms/op
MS_PER_S = 1000.0
US_PER_MS = 1000.0


def device_properties(profile: Profile, source: str | None = None) -> DeviceProperties:
    """The properties ``profile`` gives its device; ``source`` says where the profile comes
    from (default: the profile's name and form)."""
    depthwise = _first_known(profile, DEPTHWISE_TERMS)
    pointwise = _first_known(profile, POINTWISE_TERMS)
    ratio = None
    if depthwise is not None and pointwise:
        ratio = depthwise / pointwise
    elementwise = _first_known(profile, ELEMENTWISE_TERMS)
    overhead = _first_known(profile, OVERHEAD_TERMS)
    return DeviceProperties(
        source=source or f"profile {profile.name} (form {profile.form})",
        depthwise_to_pointwise=ratio,
        # ms per GB -> GB per s; a zero rate says nothing about a bandwidth.
        elementwise_gb_per_s=MS_PER_S / elementwise if elementwise else None,
        overhead_us=None if overhead is None else overhead * US_PER_MS,
    )


def _first_known(profile: Profile, terms: tuple[str, ...]) -> float | None:
    """The coefficient of the first of ``terms`` in the profile's form; None if it has none
    of them or the one it has is not known."""
    values = {parameter.name: parameter.value for parameter in profile.parameters}
    term = next((term for term in terms if term in values), None)
    if term is None or not _known(profile, term):
        return None
    return values[term]


def _known(profile: Profile, term: str) -> bool:
    """Resolved by the rows; or tied by a prior to a rate they resolved (a dense conv costed
    at the pointwise rate has that rate); or a profile from before support was recorded."""
    if profile.support is None:
        return True
    resolved = {support.name: support.resolved for support in profile.support}
    if resolved.get(term, False):
        return True
    prior = profile.prior_of(term)
    return prior is not None and resolved.get(prior.rate_of, False)
