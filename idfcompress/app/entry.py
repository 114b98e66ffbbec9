"""The ``idfc`` console script: Ctrl-C during start-up ends with one line and exit code 130.

Python turns SIGINT into KeyboardInterrupt wherever the main thread is, an import included;
one that escapes prints a traceback and ends the process by the signal (exit status -2). The
console script imports this module first, and importing it installs a handler that ends the
process at once with one line and 130 while the command line and its libraries are imported
and the arguments parsed: nothing has been written then, so there is nothing to clean up.
When a command starts, ``cli`` calls :func:`end_start_up`, which gives Python's own handler
back: from then on KeyboardInterrupt unwinds, so that partial outputs are removed, and the
command ends with the same line and 130.
"""

from __future__ import annotations

import os
import signal
import sys
import threading

INTERRUPTED = 130


def _interrupted_during_start_up(signum: int, frame: object) -> None:
    try:
        os.write(2, b"idfc: interrupted\n")
    finally:
        os._exit(INTERRUPTED)


# At import, not in main(): the console script imports this module, then calls main(), and a
# signal between the two must not escape either.
signal.signal(signal.SIGINT, _interrupted_during_start_up)


def end_start_up() -> None:
    """Give SIGINT back to Python's own handler (KeyboardInterrupt), if this module's is set."""
    if (
        threading.current_thread() is threading.main_thread()
        and signal.getsignal(signal.SIGINT) is _interrupted_during_start_up
    ):
        signal.signal(signal.SIGINT, signal.default_int_handler)


def main() -> int:
    """Import the command line under the start-up handler, then run it."""
    from .cli import main as command_line

    return command_line(prog_name="idfc")


if __name__ == "__main__":  # python -m idfcompress.app.entry: as the console script does
    from idfcompress.app.entry import main as entry_main

    sys.exit(entry_main())
