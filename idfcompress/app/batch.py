"""The per-input loop of every ``idfc`` command: output names, progress lines, one-line
errors for one input while the others go on, and the exit codes."""

from __future__ import annotations

import os
import sys
import traceback
from collections.abc import Callable
from pathlib import Path

import click

from ..errors import IdfError
from .files import STDIO, Failure

EXIT_CODES = """\b
Exit codes:
  0  every input was processed
  1  an error with at least one input (the others are still processed)
  2  usage error (bad option or argument)
  130 interrupted (Ctrl-C); no partial output is left behind"""

PREVIEW_EXIT = 3
PREVIEW_EXIT_CODES = EXIT_CODES.replace(
    "\n  130 ",
    f"\n  {PREVIEW_EXIT}  only a preview, not the exact image, was written or shown: the data"
    "\n     ended early (decompress --bytes N / --progressive DIR, view)\n  130 ",
)


def debug_enabled() -> bool:
    """Whether tracebacks were asked for (--debug or IDFC_DEBUG)."""
    return bool(os.environ.get("IDFC_DEBUG")) or bool(
        click.get_current_context().find_root().params.get("debug")
    )


def report(name: str, exc: BaseException) -> None:
    """One stderr line about input ``name`` (and the traceback with --debug)."""
    if debug_enabled():
        traceback.print_exception(exc)
    message = str(exc) or exc.__class__.__name__
    click.echo(f"idfc: {name}: {message}", err=True)


def target_path(source: str, output: str | None, stdout: bool, several: bool, suffix: str) -> str:
    """Where the output of ``source`` goes: ``-o`` (a file, or a folder for several
    inputs), standard output, or beside the input with ``suffix``."""
    if stdout or (source == STDIO and output is None):
        return STDIO
    if output is not None and (several or Path(output).is_dir()):
        base = "stdin" if source == STDIO else Path(source).stem
        return str(Path(output) / (base + suffix))
    if output is not None:
        return output
    return str(Path(source).with_suffix(suffix))


def check_output_option(inputs: tuple[str, ...], output: str | None) -> None:
    """A usage error when several inputs would go to one ``-o`` that is not a folder."""
    if output and len(inputs) > 1 and not Path(output).is_dir():
        raise click.UsageError(
            f"with several inputs, -o must name an existing directory ({output})"
        )


def progress_printer(name: str, quiet: bool) -> Callable[[int, int], None] | None:
    """A per-tile progress line on a terminal, or None."""
    if quiet or not sys.stderr.isatty():
        return None

    def show(done: int, total: int) -> None:
        end = "\n" if done == total else ""
        click.echo(f"\r{name}: {100 * done // total:3d}% of tiles", err=True, nl=False)
        if end:
            click.echo("\r" + " " * (len(name) + 20) + "\r", err=True, nl=False)

    return show


def run_each(inputs: tuple[str, ...], one: Callable[[str], None]) -> None:
    """Call ``one`` on every input; an error about one is reported and the others go on;
    exit 1 at the end if any failed, 130 on Ctrl-C."""
    failed = False
    for name in inputs:
        try:
            one(name)
        except KeyboardInterrupt:
            click.echo("idfc: interrupted", err=True)
            sys.exit(130)
        except (Failure, IdfError, OSError, ValueError) as exc:
            report(name, exc)
            failed = True
        except Exception as exc:  # noqa: BLE001 - a bug: one line, traceback with --debug
            report(
                name,
                RuntimeError(
                    f"internal error ({exc.__class__.__name__}: {exc}); rerun with --debug"
                ),
            )
            failed = True
    if failed:
        sys.exit(1)
