"""Options and error handling shared by every command (data overrides, site, period)."""

from __future__ import annotations

import contextlib
import functools
import os
import re
from pathlib import Path
from typing import Annotated, Callable, Iterator, Optional, Sequence

import click
import pandas as pd
import typer
from rich.console import Console

from coolshift.locks import EXIT_LOCKED, Acquired, LockSpec, RunLocked, control_locks, hold_locks
from coolshift.usecases.inputs import default_period, load_inputs  # noqa: F401 (the commands' loaders)

console = Console()
err_console = Console(stderr=True, soft_wrap=True)

# ISO 8601 date or date-time, optional seconds/fraction and offset: 2022-07-01, 2022-07-01T06:00Z,
# 2022-07-01 06:00:00+02:00. Anything else (2022-13-45, "yesterday", 1) is refused at parse time.
_ISO_TIME = re.compile(r"^\d{4}-\d{2}-\d{2}(?:[T ]\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?(?:Z|[+-]\d{2}(?::?\d{2})?)?)?$")


def iso_time_option(value: Optional[str]) -> Optional[str]:
    """Typer callback: a --start/--end value must be a real ISO 8601 time; a bad one is exit 2
    with typer's "Invalid value for '--start'" naming the option (never a traceback)."""
    if value is None:
        return None
    text = value.strip()
    ok = bool(_ISO_TIME.match(text))
    if ok:
        try:
            t = pd.Timestamp(text)
            ok = t is not pd.NaT
        except (ValueError, TypeError, OverflowError):
            ok = False
    if not ok:
        raise typer.BadParameter(f"{value[:40]!r} is not an ISO 8601 date or time (e.g. 2022-07-01 or 2022-07-01T06:00Z)")
    return text


SiteOpt = Annotated[Path, typer.Option("--site", "-s", help="site configuration YAML", exists=False)]
StartOpt = Annotated[Optional[str], typer.Option(help="period start, ISO 8601 (UTC if no offset); default: start of the carbon data",
                                                 callback=iso_time_option)]
EndOpt = Annotated[Optional[str], typer.Option(help="period end (exclusive); default: start + 1 year or end of data",
                                               callback=iso_time_option)]
CarbonOpt = Annotated[Optional[Path], typer.Option("--carbon", help="override the site's carbon-intensity file")]
WeatherOpt = Annotated[Optional[Path], typer.Option("--weather", help="override the site's weather file")]
WorkloadOpt = Annotated[Optional[Path], typer.Option("--workload", help="override the site's workload trace")]
CarbonFmtOpt = Annotated[Optional[str], typer.Option("--carbon-format", help="force a reader: eia930, electricitymaps, watttime, lwa, canonical")]
WeatherFmtOpt = Annotated[Optional[str], typer.Option("--weather-format", help="force a reader: openmeteo, epw, canonical")]
WorkloadFmtOpt = Annotated[Optional[str], typer.Option("--workload-format", help="force a reader: sustaindc_hourly, alibaba2018_5min, google2019_5min, canonical")]

EXIT_OK, EXIT_FALLBACK, EXIT_BAD_INPUT, EXIT_FAILURE = 0, 3, 2, 1


def cli_errors(func: Callable) -> Callable:
    """Turn input errors into one clear line and exit code 2, never a traceback.

    ConfigError/DataError name the file and key/column/row. An OSError or UnicodeError that
    escaped a reader is still bad input (exit 2, naming the file, not its content). Anything
    else is a bug: exit 1 with its type, and the traceback only with COOLSHIFT_DEBUG=1.
    """

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        from coolshift.config import ConfigError
        from coolshift.io.checks import DataError

        try:
            return func(*args, **kwargs)
        except (typer.Exit, typer.Abort, click.exceptions.Exit, click.exceptions.Abort, click.exceptions.ClickException):
            raise
        except (ConfigError, DataError) as exc:
            err_console.print("[bold red]error:[/] " + _escape(str(exc)), markup=True, highlight=False)
            raise typer.Exit(EXIT_BAD_INPUT) from None
        except OSError as exc:
            where = f"{exc.filename}: " if getattr(exc, "filename", None) else ""
            err_console.print("[bold red]error:[/] " + _escape(f"{where}cannot access the file ({exc.strerror or type(exc).__name__})"),
                              markup=True, highlight=False)
            raise typer.Exit(EXIT_BAD_INPUT) from None
        except UnicodeError as exc:
            err_console.print("[bold red]error:[/] " + _escape(f"a file is not UTF-8 text ({type(exc).__name__})"),
                              markup=True, highlight=False)
            raise typer.Exit(EXIT_BAD_INPUT) from None
        except Exception as exc:  # noqa: BLE001 - an operator's tool reports, it does not dump a traceback
            if os.environ.get("COOLSHIFT_DEBUG"):
                raise
            err_console.print(f"[bold red]internal error:[/] {type(exc).__name__} in {func.__name__} (a bug: please report it; "
                              "set COOLSHIFT_DEBUG=1 for the traceback)", markup=True, highlight=False)
            raise typer.Exit(EXIT_FAILURE) from None

    return wrapper


def _escape(text: str) -> str:
    """Rich markup off for text that may hold a user's cell or key (``[x]`` is not a style)."""
    from rich.markup import escape

    return escape(text)


# -- locks held by a command (exit 75 when another run holds one) ------------------------
def exit_locked(exc: RunLocked) -> None:
    """One line naming the lock and its holder, exit 75 (another run holds it)."""
    err_console.print(f"[bold red]locked:[/] {exc}", markup=True, highlight=False)
    raise typer.Exit(EXIT_LOCKED) from None


def exit_lock_unavailable(exc: OSError) -> None:
    """The lock file cannot be taken at all (not held by anyone): one line, exit 1."""
    err_console.print(f"[bold red]error:[/] cannot take the lock: {exc} "
                      "(set COOLSHIFT_STATE_DIR to a writable local folder)", markup=True, highlight=False)
    raise typer.Exit(1) from None


@contextlib.contextmanager
def cli_locks(specs: Sequence[LockSpec], command: str,
              warn: Callable[[str], None] | None = None) -> Iterator[list[Acquired]]:
    """:func:`hold_locks` for a command: a held lock is one line on stderr and exit 75.

    Recovered locks (left by a dead run) are reported through ``warn`` (stderr by default).
    """
    def _warn(m: str) -> None:
        err_console.print(f"[yellow]warning:[/] {m}", markup=True, highlight=False)

    warn = warn or _warn
    with contextlib.ExitStack() as stack:
        try:
            taken = stack.enter_context(hold_locks(specs, command))
        except RunLocked as exc:
            exit_locked(exc)
        except OSError as exc:
            exit_lock_unavailable(exc)
        for a in taken:
            m = a.recovered_message()
            if m:
                warn(m)
        yield taken


def control_loop_locks(pm, site_name: str, command: str, apply: bool = True):
    """For a command that writes setpoints through point map ``pm``: hold :func:`control_locks`
    (exit 75 when held); a dry run (``apply=False``) writes nothing and takes no lock."""
    if not apply:
        return contextlib.nullcontext([])
    return cli_locks(control_locks(site_name, pm.protocol, pm.connection), command)
