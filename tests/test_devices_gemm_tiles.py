"""The GEMM-tile forms: XNNPACK runs a pointwise conv as a GEMM whose micro-kernel computes an
mr x nr tile of the output per call (7 pixels x 16 channels for f32 on AVX-512), so a conv
of 1 pixel (SE's) costs one whole tile and 17 channels cost two."""

from __future__ import annotations

import numpy as np
import pytest

from ablate.counting.kinds import Kind
from ablate.devices.costs import FORMS, GEMM_TILES, PRIORS, op_features
from ablate.devices.fit import fit_profile
from ablate.devices.observations import count_variant
from tests.synthetic_kernels import assert_recovered, exact_observations
from tests.test_devices_elementwise_kinds import NETWORKS
from tests.test_devices_elementwise_kinds import TRUTH as KINDS_TRUTH

KINDS = FORMS["kernel_sizes_bytes_elementwise_kinds"]
TILED = {tile: FORMS[f"kernel_sizes_bytes_gemm_tiles_{tile[0]}x{tile[1]}"] for tile in GEMM_TILES}


def test_a_pointwise_conv_is_counted_in_whole_tiles_and_nothing_else_changes() -> None:
    assert (7, 16) in GEMM_TILES and (6, 8) in GEMM_TILES
    form = TILED[(7, 16)]
    assert form.kernels
    swapped = [(a, b) for a, b in zip(KINDS.term_names, form.term_names, strict=True) if a != b]
    assert swapped == [("pointwise_macs", "pointwise_tiled_macs")]
    column = form.term_names.index("pointwise_tiled_macs")
    _, counted = count_variant("mobilenet_v3_large", {"resolution": 96})
    pointwise = [r for r in counted.records if r.kind is Kind.CONV_POINTWISE]
    by_shape = {(r.output_shape[1:], r.in_channels): r for r in pointwise}
    # SE's expanding conv of block 4 at 96 px: 24 -> 72 channels on 1 pixel: one 7-row tile
    # (7x the MACs), 72 channels in 5 tiles of 16 (80).
    se = by_shape[((72, 1, 1), 24)]
    assert se.macs == 24 * 72
    assert op_features(se, form, "fused")[column] == pytest.approx(24 * 80 * 7 / 1e9)
    # 3 x 3 = 9 pixels: two 7-row tiles (14); 960 channels: 60 whole tiles.
    last = by_shape[((960, 3, 3), 160)]
    assert op_features(last, form, "fused")[column] == pytest.approx(160 * 960 * 14 / 1e9)
    # The 6x8 tiles of ARM64's NEON kernel: 12 rows, 72 channels (9 tiles of 8, exact).
    assert op_features(se, TILED[(6, 8)], "fused")[column] == pytest.approx(24 * 72 * 6 / 1e9)
    shared = [i for i, name in enumerate(form.term_names) if name != "pointwise_tiled_macs"]
    for record in counted.records:
        mine, theirs = op_features(record, form, "fused"), op_features(record, KINDS, "fused")
        assert np.array_equal(mine[shared], theirs[shared])
        assert mine[column] >= theirs[column]  # a tile never holds fewer MACs than the conv


def test_dense_convs_take_the_tiled_pointwise_rate_where_unmeasured() -> None:
    assert any(r.term == "dense_macs" and r.rate_of == "pointwise_tiled_macs" for r in PRIORS)


# A device whose GEMMs cost per 7x16 tile: the elementwise-kinds test's costs, its pointwise
# rate per tiled MAC.
TRUTH = {
    ("pointwise_tiled_macs" if name == "pointwise_macs" else name): cost
    for name, cost in KINDS_TRUTH.items()
}


@pytest.mark.slow  # several seconds: CI runs it, daily work need not
def test_a_known_tile_is_recovered_and_chosen_over_the_other_tiles() -> None:
    form = TILED[(7, 16)]
    observations = exact_observations(NETWORKS, form, TRUTH)
    profile = fit_profile(observations, name="tiles", description="known GEMM tiles")
    assert profile.form == form.name
    assert_recovered(profile, observations, TRUTH)
    # Every other tile, and no tile at all, misses some network.
    errors = {c.form: c.loo_max_abs_error for c in profile.quality.candidates}
    for tile, other in TILED.items():
        if tile != (7, 16):
            assert errors[other.name] > 1e-3, other.name
    assert errors[KINDS.name] > 1e-3


@pytest.mark.parametrize(
    ("machine", "flags", "identity", "tile"),
    [
        # This host (2026-12-07): AVX-512.
        ("x86_64", ["avx", "avx2", "avx512f", "fma"], "AuthenticAMD family 25 model 17", (7, 16)),
        ("x86_64", ["avx", "avx2", "fma"], "GenuineIntel family 6 model 85", (5, 16)),
        ("x86_64", ["avx", "avx2", "fma"], "AuthenticAMD family 23 model 49", None),  # Zen 1/2
        ("x86_64", ["avx"], "GenuineIntel family 6 model 42", (5, 16)),
        ("x86_64", ["sse4_1", "sse4_2"], "GenuineIntel family 6 model 23", (4, 8)),
        ("aarch64", [], "", (6, 8)),
        ("arm64-v8a", ["neon"], "", (6, 8)),
        ("riscv64", [], "", None),
    ],
)
def test_the_cpu_names_xnnpacks_tile(
    machine: str, flags: list[str], identity: str, tile: tuple[int, int] | None
) -> None:
    from ablate.measurement.kernels import xnnpack_f32_gemm_tile

    assert xnnpack_f32_gemm_tile(machine, flags, identity) == tile
    assert tile is None or tile in GEMM_TILES


def test_a_run_tells_its_tile_only_for_xnnpack_in_fp32() -> None:
    from types import SimpleNamespace

    from ablate.devices.observations import gemm_tile_of

    avx512 = {"machine": "x86_64", "cpu_flags": ["avx512f"], "cpu_identity": "AuthenticAMD"}

    def run(backend: str, precision: str, environment: dict) -> SimpleNamespace:
        measurement = SimpleNamespace(backend=backend, precision=precision)
        return SimpleNamespace(measurement=measurement, environment=environment)

    assert gemm_tile_of(run("executorch", "fp32", avx512)) == (7, 16)
    assert gemm_tile_of(run("litert", "fp32", avx512)) == (7, 16)
    assert gemm_tile_of(run("executorch", "int8", avx512)) is None  # qs8: other kernels
    assert gemm_tile_of(run("onnxruntime", "fp32", avx512)) is None  # MLAS, not XNNPACK
    assert gemm_tile_of(run("eager", "fp32", avx512)) is None
    assert gemm_tile_of(run("executorch", "fp32", {})) is None  # an environment that says nothing
    assert gemm_tile_of(SimpleNamespace(measurement=None, environment=avx512)) is None


# Slow: fits every candidate form with leave-one-out and its nested selection (seconds).
@pytest.mark.slow
def test_a_known_tile_leaves_the_other_tiles_out_of_the_choice() -> None:
    form = TILED[(7, 16)]
    observations = exact_observations(NETWORKS, form, TRUTH)
    told = fit_profile(observations, name="t", description="", gemm_tile=(5, 16))
    names = {candidate.form for candidate in told.quality.candidates}
    assert TILED[(5, 16)].name in names and KINDS.name in names
    assert not names & {other.name for tile, other in TILED.items() if tile != (5, 16)}
    # The wrong tile's misfit may take a spill variant of the chosen form (a cache's worth of
    # matrix-vector weights): still a form of the tile told, or of none.
    assert told.form.split("_spill_")[0] in (TILED[(5, 16)].name, KINDS.name)
    assert "pointwise GEMM tiles 5x16, XNNPACK's on the CPU" in told.quality.selection
    # Told the tile it ran, the fit is exact again.
    right = fit_profile(observations, name="t", description="", gemm_tile=(7, 16))
    assert right.form == form.name and right.quality.loo_max_abs_error < 1e-6
