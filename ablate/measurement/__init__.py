"""Latency measurement: interleaved rounds, paired ratios with intervals, noise flags.

Entry points (import them from their modules; this package imports nothing, so that
`ablate --help` stays light):

- `latency.measure_latency` - the engine: prepared variants in, `results.LatencyResult` out.
- `backends.prepare_runnable` / `backends.BACKENDS` - model + input -> runnable, per backend.
- `setup.MeasurementSetup`, `setup.configure_torch`, `setup.example_input`.
- `profile.profile_operators` - per-op time shares by block and op kind.
- `calibrate.calibrate_machine`, `roofline.roofline` - peak rates, cache, roofline bounds.
- `bench.run_bench` - what `ablate bench` runs; `render` turns results into rich tables.
"""
