"""`ablate bench` and `ablate roofline`: pure functions of their results model (`runs.bench`)
to rich renderables. Nothing here measures or prints."""

from __future__ import annotations

from collections.abc import Sequence

from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from ablate.report.layout import fitted
from ablate.runs.bench import BenchResults, MachineCalibration, TimeBreakdown
from ablate.runs.schema import STOP_REASONS, Latency


def verdict(latency: Latency) -> Text:
    ratio = latency.ratio_to_baseline
    if ratio is None:
        return Text("baseline", style="dim")
    if not latency.significant:
        return Text("no significant difference", style="yellow")
    word = "slower" if ratio.median > 1 else "faster"
    return Text(f"{abs(ratio.median - 1) * 100:.1f}% {word}", style="bold")


def latency_table(result: BenchResults) -> Table:
    table = Table(title="Latency per forward pass (95% intervals)", title_justify="left")
    table.add_column("variant", overflow="fold")
    table.add_column("median ms", justify="right")
    table.add_column("IQR ms", justify="right")
    table.add_column("ratio to baseline", justify="right")
    table.add_column("verdict")
    for variant in result.variants:
        latency = variant.latency
        ratio = latency.ratio_to_baseline
        low, high = latency.ci95_ms
        name = Text(variant.name)
        if latency.flags:
            name.append(" !", style="bold red")  # details in the notes below the table
        table.add_row(
            name,
            f"{latency.median_ms:.3f} [{low:.3f}, {high:.3f}]",
            f"{latency.iqr_ms:.3f}",
            "-"
            if ratio is None
            else f"{ratio.median:.4f} [{ratio.ci95[0]:.4f}, {ratio.ci95[1]:.4f}]",
            verdict(latency),
        )
    return table


def run_summary(result: BenchResults) -> Text:
    measurement, environment = result.measurement, result.environment
    threads = "thread" if measurement.threads == 1 else "threads"
    return Text(
        f"Stopped after {measurement.rounds} rounds, {measurement.elapsed_s:.1f} s: "
        f"{STOP_REASONS[measurement.stop_reason]} (target +/-{measurement.target_ci:.1%}, "
        f"budget {measurement.budget_s:g} s).\n"
        f"{measurement.backend} {measurement.precision} on {measurement.device} "
        f"({environment['device_name']}), {measurement.threads} {threads}, batch "
        f"{measurement.batch}, channels_last {environment['channels_last']}, flush denormal "
        f"{environment['flush_denormal']}, torch {environment['torch_version']}, load average "
        f"{environment['load_average']:.1f} on {environment['logical_cores']} cores."
    )


def flag_notes(result: BenchResults) -> Text | None:
    lines = [
        f"! {variant.name}: {flag.name}: {flag.detail}"
        for variant in result.variants
        for flag in variant.latency.flags
    ]
    environment = result.environment
    # Above the core count, other jobs shared the caches and memory bus (setup.Environment).
    if environment["load_average"] > environment["logical_cores"]:
        lines.append(
            f"! busy machine: load average {environment['load_average']:.1f} on "
            f"{environment['logical_cores']} cores; other jobs share the caches and memory bus, "
            f"which can move models of different memory intensity by different amounts"
        )
    return Text("\n".join(lines), style="red") if lines else None


def share_table(title: str, columns: Sequence[tuple[str, Sequence[tuple[str, float]]]]) -> Table:
    """One row per name, one column per variant: its share of that variant's profiled time."""
    table = Table(title=title, title_justify="left")
    table.add_column("")
    names: list[str] = []
    for _, shares in columns:
        names += [name for name, _ in shares if name not in names]
    for variant, _ in columns:
        # Text, not a str: a str header is read as markup, and "[se=false]" is a markup tag.
        table.add_column(Text(variant), justify="right", overflow="fold")
    lookup = [dict(shares) for _, shares in columns]
    for name in names:
        table.add_row(
            name, *(f"{shares[name]:.1%}" if name in shares else "-" for shares in lookup)
        )
    return table


def roofline_table(breakdown: TimeBreakdown) -> Table | None:
    roofline = breakdown.roofline
    if roofline is None:
        return None
    table = Table(title=Text(f"Roofline: {breakdown.variant}"), title_justify="left")
    for column in ("block", "MFLOPs", "MB moved", "bound ms", "bound by", "measured ms*"):
        table.add_column(column, justify="left" if column in ("block", "bound by") else "right")
    shares = breakdown.shares.by_block
    measured = roofline.measured_ms
    for block in roofline.blocks:
        estimate = "-"
        if measured is not None and block.name in shares:
            estimate = f"{measured * shares[block.name]:.3f}"
        table.add_row(
            block.name,
            f"{block.flops / 1e6:.1f}",
            f"{block.bytes_moved / 1e6:.2f}",
            f"{block.minimum_ms:.3f}",
            block.bound,
            estimate,
        )
    caption = f"Sum of bounds {roofline.minimum_ms:.3f} ms"
    if measured is not None and roofline.attainment is not None:
        caption += f" vs measured {measured:.3f} ms: {roofline.attainment:.0%} of the roofline"
    table.caption = caption + ". *The measured median split by profiled shares."
    return table


def bench_report(report: BenchResults) -> Group:
    parts: list[RenderableType] = [latency_table(report), run_summary(report)]
    notes = flag_notes(report)
    if notes is not None:
        parts.append(notes)
    if report.breakdowns:
        parts.append(
            share_table(
                "Time share by block (profiled, eager)",
                [(b.variant, list(b.shares.by_block.items())) for b in report.breakdowns],
            )
        )
        parts.append(
            share_table(
                "Time share by op (profiled, eager)",
                [(b.variant, list(b.shares.by_operator.items())) for b in report.breakdowns],
            )
        )
        profiled = [b for b in report.breakdowns if b.runtime_profile is not None]
        if profiled:
            measurement = report.measurement
            first = profiled[0].runtime_profile
            assert first is not None
            parts.append(
                share_table(
                    f"Time share by kernel (profiled, {measurement.backend} "
                    f"{measurement.precision}, {first.profiler})",
                    [
                        (b.variant, [(op.label, op.share) for op in b.runtime_profile.ops])
                        for b in profiled
                        if b.runtime_profile is not None
                    ],
                )
            )
        parts += [table for b in report.breakdowns if (table := roofline_table(b)) is not None]
        if not report.calibrated:
            parts.append(
                Text("No roofline: run `ablate roofline` once on this machine.", style="dim")
            )
    # Each table as a table where it fits, row by row where not (a log, a narrow terminal).
    return Group(*(fitted(part) if isinstance(part, Table) else part for part in parts))


def calibration_report(calibration: MachineCalibration) -> Group:
    table = Table(title="Calibration", title_justify="left", show_header=False)
    table.add_column("")
    table.add_column("", justify="right")
    table.add_row("CPU", Text(calibration.cpu_model))
    table.add_row("device", calibration.device)
    table.add_row("threads", str(calibration.threads))
    table.add_row("torch", calibration.torch_version)
    table.add_row(
        f"peak fp32 ({calibration.matrix_size}^2 matmul)",
        f"{calibration.peak_flop_per_second / 1e9:.1f} GFLOP/s",
    )
    table.add_row(
        f"bandwidth ({calibration.copy_bytes // 2**20} MiB copy)",
        f"{calibration.bandwidth_bytes_per_second / 1e9:.1f} GB/s",
    )
    ridge = calibration.peak_flop_per_second / calibration.bandwidth_bytes_per_second
    table.add_row("ridge point", f"{ridge:.1f} FLOP/byte")
    notes = {
        "cache": f"From the cache {calibration.path} (--force to measure again).",
        "measured": f"Measured and cached in {calibration.path}.",
        "replaced_corrupt": f"Measured again: {calibration.detail}; replaced.",
    }
    return Group(table, Text(notes[calibration.source]))
