"""The exit codes, one-line errors and the per-input loop of the commands that run in this
process one input after another (``info``, ``view``, the previews); ``compress``,
``decompress`` and ``test`` run their batches through ``parallel``."""

from __future__ import annotations

import os
import sys
import traceback
from collections.abc import Callable

import click

from .files import StdoutClosed
from .jobs import error_message

EXIT_CODES = """\b
Exit codes:
  0  every input was processed
  1  an error with at least one input (the others are still processed), or
     standard output closed early (idfc ... -c | head)
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
    click.echo(f"idfc: {name}: {error_message(exc)}", err=True)


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
    """Call ``one`` on every input; an error about one is reported in one line and the
    others go on; exit 1 at the end if any failed, 130 on Ctrl-C."""
    failed = False
    for name in inputs:
        try:
            one(name)
        except KeyboardInterrupt:
            click.echo("idfc: interrupted", err=True)
            sys.exit(130)
        except Exception as exc:  # noqa: BLE001 - one line, the traceback with --debug
            report(name, exc)
            failed = True
            if isinstance(exc, StdoutClosed):
                break
    if failed:
        sys.exit(1)
