"""What a run shows while it runs (a `runs.runner.RunProgress`), on stderr so that stdout keeps
only the results and the run directory.

A terminal wide enough gets a live display; a log, a pipe or a narrow terminal gets whole
lines instead, since a live display written there prints every refresh as a fragment.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

from ablate.runs.schema import RATIOS

# Below this width the live display's columns wrap into each other.
LIVE_MIN_WIDTH = 100
# A log gets a line per stage and, while a stage goes on, one at most this often.
LINE_INTERVAL_S = 10.0
# The labels the runner passes to `counting` that name their own stage; any other label is an
# architecture being counted, and "done" ends counting (the runner notes how long it took).
_STAGE_WORDS = ("preparing", "loading", "exporting", "profiling")
_DONE = "done"


def run_progress(console: Console | None = None) -> LiveProgress | LineProgress:
    """The display that reads well where `console` writes."""
    console = console or Console(stderr=True)
    if console.is_terminal and not console.is_dumb_terminal and console.width >= LIVE_MIN_WIDTH:
        return LiveProgress(console)
    return LineProgress(console)


def _judged_interval(judged: str, interval: float | None) -> str:
    what = "ratio" if judged == RATIOS else "attribution"
    return "…" if interval is None else f"±{interval * 100:.2f}% widest {what} interval"


def _measuring_detail(
    round_index: int, judged: str, interval: float | None, seconds_left: float
) -> str:
    return (
        f"round {round_index + 1}, {_judged_interval(judged, interval)}, "
        f"{max(seconds_left, 0):.0f} s of budget left"
    )


class LiveProgress:
    """A live display: a bar per stage, redrawn in place."""

    def __init__(self, console: Console):
        self.console = console
        self._progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(bar_width=20),
            TextColumn("{task.fields[detail]}"),
            TimeRemainingColumn(),
            console=self.console,
            transient=False,
        )
        self._tasks: dict[str, int] = {}
        self._started = False

    def _task(self, stage: str, total: float) -> int:
        if not self._started:
            self._progress.start()
            self._started = True
        if stage not in self._tasks:
            self._tasks[stage] = self._progress.add_task(stage, total=total, detail="")
        return self._tasks[stage]

    def note(self, text: str) -> None:
        self.console.print(text)

    def counting(self, variant: str, done: int, total: int) -> None:
        task = self._task("counting", total)
        self._progress.update(task, completed=done, detail=variant)

    def measuring(
        self, round_index: int, judged: str, interval: float | None, seconds_left: float
    ) -> None:
        task = self._task("measuring", 1.0)
        detail = _measuring_detail(round_index, judged, interval, seconds_left)
        self._progress.update(task, completed=0.0, detail=detail)

    def close(self) -> None:
        if self._started:
            self._progress.stop()


class LineProgress:
    """Whole lines: one when a stage starts or ends, and one every `interval_s` seconds (by
    `clock`) while it goes on."""

    def __init__(
        self,
        console: Console,
        *,
        clock: Callable[[], float] = time.monotonic,
        interval_s: float = LINE_INTERVAL_S,
    ):
        self.console = console
        self.clock = clock
        self.interval_s = interval_s
        self._stage: str | None = None
        self._printed_at = 0.0

    def _line(self, stage: str, text: str, *, last: bool = False) -> None:
        now = self.clock()
        if stage == self._stage and not last and now - self._printed_at < self.interval_s:
            return
        self._stage, self._printed_at = stage, now
        # No markup, no wrapping into the next line's place: a log line as it was written.
        self.console.print(text, markup=False, highlight=False, soft_wrap=True)

    def note(self, text: str) -> None:
        self.console.print(text, markup=False, highlight=False, soft_wrap=True)

    def counting(self, variant: str, done: int, total: int) -> None:
        if variant == _DONE:
            return
        stage = variant.split(" ", 1)[0]
        if stage not in _STAGE_WORDS:
            stage, variant = "counting", f"counting {variant}"
        self._line(stage, f"{variant} ({done}/{total})", last=done == total)

    def measuring(
        self, round_index: int, judged: str, interval: float | None, seconds_left: float
    ) -> None:
        detail = _measuring_detail(round_index, judged, interval, seconds_left)
        self._line("measuring", f"measuring: {detail}")

    def close(self) -> None:
        pass
