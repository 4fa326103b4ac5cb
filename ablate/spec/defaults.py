"""Every default of an experiment spec, in one place.

The schema, the resolved spec written into results and `ablate validate` all read these; a
default changed here changes everywhere at once.
"""

from __future__ import annotations

from typing import get_args

from ablate.measurement.results import StopOn

# The paper's subject: variants without a `base` start from the published V3-Large.
BASE = "mobilenet_v3_large"

# input: the paper's Table 3 and Table 5 timings are single images at 224x224.
RESOLUTION = 224
BATCH = 1

# measure: one thread by default, because multi-threaded timings on a shared machine measure
# the neighbours as much as the model.
BACKEND = "eager"
# fp32, or int8: static post-training quantization, for the mobile backends that run it.
PRECISION = "fp32"
DEVICE = "cpu"
THREADS = 1
CHANNELS_LAST = False
# Stop once every latency ratio's 95% interval is within +-1% of its estimate ...
TARGET_CI = 0.01
# What that target judges: `ratios` (each variant's ratio), `attribution` (the Shapley values
# and total, as fractions of the `from` model's latency) or `auto` (attribution when the spec
# has one: its Shapley values are precise within a few dozen rounds, each of 128 ratios much
# later; its total, two models' medians alone, takes about as long as one ratio).
STOP_ON = "auto"
STOP_ON_CHOICES = (STOP_ON, *get_args(StopOn))
# ... or once the whole measurement (all variants together, interleaved) took this long.
BUDGET_S = 60.0
# Upper bound on each variant's warm-up; warm-up usually settles in well under a second.
WARMUP_S = 10.0
# Untimed calls of a model before each of its timings, in seconds (0: one call): a shared L3
# may keep a model's weights only after many reads (measurement/engine.py, "Interleaved
# rounds"). ONNX Runtime's V2 settles within about 0.2 s on the Xeon of 2026-12-07.
SETTLE_S = 0.2
SETTLE_S_LIMIT = 10.0  # per timing of each variant: more is a typo, not a setting
# The distribution-free 95% interval of a median needs at least 6 samples; 20 rounds also
# give the drift checks something to compare.
MIN_ROUNDS = 20
MIN_ROUNDS_FLOOR = 6
MAX_ROUNDS: int | None = None
# Seeds the random order of each round (and nothing else).
MEASURE_SEED = 0
QUICK = False
# Time every kernel of each network with its backend's own profiler (the profiling stage),
# for fitting a device profile's per-kernel costs (`ablate calibrate` turns it on).
KERNELS = False

# measure.quick: a smoke run that checks an experiment end to end in seconds; its numbers are
# for plumbing, not conclusions. These caps replace the settings above when quick is on.
QUICK_BUDGET_S = 10.0
QUICK_WARMUP_S = 1.0
QUICK_SETTLE_S = 0.0
QUICK_MIN_ROUNDS = MIN_ROUNDS_FLOOR

# attribution: exact Shapley values up to 8 factors (2^8 = 256 variants), sampled beyond.
ATTRIBUTION_METHOD = "auto"
ATTRIBUTION_METHODS = ("auto", "exact", "sampled")
# Antithetic sampling pairs each order with its reverse, so the count must be even and at
# least 4 (two pairs) for a standard error.
PERMUTATIONS = 1000
MIN_PERMUTATIONS = 4
ATTRIBUTION_SEED = 0

# Half-widths of 50% or more are no longer a precision target: the ratio could be anything.
TARGET_CI_LIMIT = 0.5

# Limits, not defaults: a grid is a full factorial and grows fast.
MAX_GRID_VARIANTS = 1024
