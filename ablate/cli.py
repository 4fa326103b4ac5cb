"""The `ablate` command line: assembles the command functions and maps user errors to exit 2.

Nothing heavy is imported here so that `ablate --help` answers without loading torch.
"""

from __future__ import annotations

import atexit
import contextlib
import errno
import functools
import gc
from collections.abc import Callable, Iterator
from typing import Any

import typer

from ablate.commands.architecture import factors_command, inspect_command, models_command
from ablate.commands.bundle import export_command, ingest_command
from ablate.commands.cluster import node_command
from ablate.commands.devices import (
    calibrate_command,
    devices_command,
    fit_device_command,
    predict_command,
)
from ablate.commands.experiment import (
    compare_command,
    report_command,
    run_command,
    validate_command,
)
from ablate.commands.matrix import matrix_command
from ablate.commands.measure import bench_command, roofline_command
from ablate.errors import AblateError, RunInterrupted
from ablate.measurement.cache_entries import cache_notes

app = typer.Typer(
    name="ablate",
    help="Which MobileNet design change buys the speed? Build variants, count, measure, compare.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


# A full disk is the machine's fault, not a bug: ablate's own writes say so as a WriteError,
# and one from a library (a compiler's cache, say) gets the same one line, naming its file.
_DISK_FULL = (errno.ENOSPC, errno.EDQUOT)


def _user_errors(command: Callable[..., Any]) -> Callable[..., Any]:
    """An AblateError becomes one line on stderr and its exit code (2; 130 for Ctrl-C), never
    a traceback."""

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            with _cache_notes_shown():
                return command(*args, **kwargs)
        except AblateError as error:
            typer.echo(f"error: {error}", err=True)
            if isinstance(error, RunInterrupted):
                _exit_promptly()
            raise typer.Exit(error.exit_code) from None
        except KeyboardInterrupt:  # a run says what it kept (RunInterrupted); others, this
            typer.echo("error: interrupted", err=True)
            _exit_promptly()
            raise typer.Exit(RunInterrupted.exit_code) from None
        except OSError as error:
            if error.errno not in _DISK_FULL:
                raise
            where = f"{error.filename}: " if error.filename else ""
            typer.echo(f"error: {where}cannot write ({error.strerror})", err=True)
            raise typer.Exit(AblateError.exit_code) from None

    return wrapper


@contextlib.contextmanager
def _cache_notes_shown() -> Iterator[None]:
    """The caches' notes (entries rebuilt, writes that failed), one line each on stderr when
    the command ends, before its error line if it has one."""
    with cache_notes() as notes:
        try:
            yield
        finally:
            for line in notes.lines():
                typer.echo(line, err=True)


def _exit_promptly() -> None:
    """Ctrl-C means now: the interpreter's last garbage collections over torch's and the
    runtimes' objects take seconds (3 s of a 3.5 s exit on a busy 2-core VM with ExecuTorch
    loaded, 0.7 s without them) and free nothing the OS does not free at exit; so once the
    atexit handlers begin, what is alive is never collected. ablate's files are closed by
    then (every write is atomic)."""
    atexit.register(gc.freeze)


def _register(name: str, command: Callable[..., Any]) -> None:
    app.command(name)(_user_errors(command))


_register("models", models_command)
_register("factors", factors_command)
_register("inspect", inspect_command)
_register("validate", validate_command)
_register("run", run_command)
_register("compare", compare_command)
_register("report", report_command)
_register("matrix", matrix_command)
_register("bench", bench_command)
_register("roofline", roofline_command)
_register("fit-device", fit_device_command)
_register("calibrate", calibrate_command)
_register("devices", devices_command)
_register("predict", predict_command)
_register("export", export_command)
_register("ingest", ingest_command)
_register("node", node_command)


def main() -> None:
    app()
