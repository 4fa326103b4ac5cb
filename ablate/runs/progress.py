"""What a run tells the person watching it; the runner reports, a display decides how."""

from __future__ import annotations

from typing import Protocol

from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn


class RunProgress(Protocol):
    def note(self, text: str) -> None: ...

    def counting(self, variant: str, done: int, total: int) -> None: ...

    def measuring(
        self, round_index: int, variant: str, interval: float | None, seconds_left: float
    ) -> None: ...

    def close(self) -> None: ...


class SilentProgress:
    def note(self, text: str) -> None:
        pass

    def counting(self, variant: str, done: int, total: int) -> None:
        pass

    def measuring(
        self, round_index: int, variant: str, interval: float | None, seconds_left: float
    ) -> None:
        pass

    def close(self) -> None:
        pass


class RichProgress:
    """A live display on stderr, so that stdout keeps only the results and the run directory."""

    def __init__(self, console: Console | None = None):
        self.console = console or Console(stderr=True)
        self._progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
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
        self, round_index: int, variant: str, interval: float | None, seconds_left: float
    ) -> None:
        task = self._task("measuring", 1.0)
        width = "…" if interval is None else f"±{interval * 100:.2f}% widest ratio interval"
        self._progress.update(
            task,
            completed=0.0,
            detail=f"round {round_index + 1}, {width}, {max(seconds_left, 0):.0f} s of budget left",
        )

    def close(self) -> None:
        if self._started:
            self._progress.stop()
