"""What a run shows while it runs: whole lines in a log or a pipe, a live display on a terminal.

The line display's pacing runs on a fake clock: no sleeps, no timing.
"""

from __future__ import annotations

import io

from rich.console import Console

from ablate.report.progress import LINE_INTERVAL_S, LineProgress, LiveProgress, run_progress


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def log_console(width: int = 80) -> tuple[Console, io.StringIO]:
    stream = io.StringIO()
    return Console(file=stream, width=width, force_terminal=False, color_system=None), stream


def test_a_log_or_a_narrow_terminal_gets_lines_and_a_wide_terminal_a_live_display() -> None:
    console, _ = log_console()
    assert isinstance(run_progress(console), LineProgress)
    narrow = Console(file=io.StringIO(), width=80, force_terminal=True)
    assert isinstance(run_progress(narrow), LineProgress)
    wide = Console(file=io.StringIO(), width=140, force_terminal=True)
    assert isinstance(run_progress(wide), LiveProgress)


def test_lines_come_one_per_stage_and_one_every_interval_within_a_stage() -> None:
    console, stream = log_console()
    clock = FakeClock()
    progress = LineProgress(console, clock=clock)
    progress.note("2 distinct architectures for 2 variants; memory about 0.1 GB")
    progress.counting("small", 0, 2)
    clock.now += 1
    progress.counting("relu", 1, 2)  # the same stage, a second later: no line
    progress.counting("done", 2, 2)  # the runner's note says how long counting took
    progress.note("counted in 1.2 s")
    progress.counting("preparing small", 0, 2)  # a new stage: a line at once
    progress.counting("exporting", 1, 2)
    progress.counting("exporting", 2, 2)  # the stage's last step
    for round_index in range(30):
        clock.now += 1
        interval = None if round_index < 5 else 0.05 / (round_index + 1)
        progress.measuring(round_index, "ratios", interval, 60.0 - round_index)
    clock.now += 1
    progress.measuring(30, "attribution", 0.0012, -2.0)  # an interval on: a line
    progress.close()
    assert stream.getvalue().splitlines() == [
        "2 distinct architectures for 2 variants; memory about 0.1 GB",
        "counting small (0/2)",
        "counted in 1.2 s",
        "preparing small (0/2)",
        "exporting (1/2)",
        "exporting (2/2)",
        "measuring: round 1, …, 60 s of budget left",
        f"measuring: round {int(LINE_INTERVAL_S) + 1}, ±0.45% widest ratio interval, "
        "50 s of budget left",
        "measuring: round 21, ±0.24% widest ratio interval, 40 s of budget left",
        "measuring: round 31, ±0.12% widest attribution interval, 0 s of budget left",
    ]


def test_a_line_is_never_cut_or_wrapped_into_fragments() -> None:
    console, stream = log_console(width=40)
    progress = LineProgress(console, clock=FakeClock())
    name = "to:{stem_channels,activation,last_stage}_and_more"
    progress.counting(name, 3, 128)
    progress.note("[bold]not markup[/bold] and a long note that runs past forty columns")
    text = stream.getvalue()
    assert text.splitlines() == [
        f"counting {name} (3/128)",
        "[bold]not markup[/bold] and a long note that runs past forty columns",
    ]
    assert "\r" not in text and "\x1b" not in text
