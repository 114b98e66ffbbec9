"""A progressive viewer: paints each stage of an .idf file while the file arrives.

``idfc view FILE.idf --rate 50`` reads the file at 50 kB/s in a background thread, like a
slow download, decodes stages as soon as their bytes are in (:func:`paint_sequence`) and
paints them in a Tk window. :func:`paint_sequence` is the whole viewer minus the window, so
tests check exactly what the window would show.
"""

from __future__ import annotations

import os
import queue
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from PIL import Image

from ..codec.progressive import Source, Stage, decode_progressive, pieces
from ..errors import IdfError, TruncatedFile

__all__ = ["Download", "Painted", "paint_sequence", "view"]

POLL_MS = 40  # how often the window looks for new stages
MAX_PIECE = 1 << 16


class Download:
    """Reads a source in a background thread at ``rate`` bytes/s (None: as fast as it can).

    :meth:`read` serves the bytes received so far to a decoder, blocking until more arrive;
    :attr:`received` is how many have arrived. :meth:`stop` ends the transfer early (the
    reader then sees the end of the data).
    """

    def __init__(self, source: Source, rate: float | None = None, piece_size: int | None = None):
        if rate is not None and rate <= 0:
            rate = None
        if piece_size is None:  # about 20 pieces a second at the given rate
            piece_size = MAX_PIECE if rate is None else int(min(MAX_PIECE, max(1, rate / 20)))
        self.rate = rate
        self.piece_size = piece_size
        self.received = 0
        self.total: int | None = None
        self.error: BaseException | None = None
        self._source = source
        self._pieces: list[bytes] = []
        self._served = 0  # pieces handed to the reader
        self._done = False
        self._stop = threading.Event()
        self._cond = threading.Condition()
        self._thread = threading.Thread(target=self._run, name="idfc-download", daemon=True)

    def start(self) -> Download:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        with self._cond:
            self._cond.notify_all()

    @property
    def finished(self) -> bool:
        return self._done

    def _run(self) -> None:
        started = time.monotonic()
        try:
            for piece in self._split(pieces(self._source, self.piece_size)):
                if self.rate is not None:  # keep pace: byte n is due at n / rate seconds
                    due = started + (self.received + len(piece)) / self.rate
                    if self._stop.wait(max(0.0, due - time.monotonic())):
                        break
                if self._stop.is_set():
                    break
                with self._cond:
                    self._pieces.append(piece)
                    self.received += len(piece)
                    self._cond.notify_all()
        except BaseException as exc:  # noqa: BLE001 - handed to the reader's thread
            self.error = exc
        finally:
            with self._cond:
                self._done = True
                self._cond.notify_all()

    def _split(self, pieces: Iterator[bytes]) -> Iterator[bytes]:
        """The pieces cut to at most piece_size bytes (a buffer source comes whole)."""
        size = self.piece_size
        for piece in pieces:
            for start in range(0, len(piece), size):
                yield piece[start : start + size]

    def read(self, size: int = -1) -> bytes:
        """The next piece received (at most ``size`` bytes); b"" once the transfer is over."""
        with self._cond:
            while self._served >= len(self._pieces) and not self._done and not self._stop.is_set():
                self._cond.wait()
            if self.error is not None:
                raise self.error
            if self._served >= len(self._pieces):
                return b""
            piece = self._pieces[self._served]
            if 0 <= size < len(piece):
                self._pieces[self._served] = piece[size:]
                return piece[:size]
            self._pieces[self._served] = b""  # let it be freed
            self._served += 1
            return piece


@dataclass(frozen=True)
class Painted:
    """A stage as the viewer paints it: how many bytes had arrived, and the stage."""

    bytes_received: int
    stage: Stage


def paint_sequence(
    source: Source,
    *,
    rate: float | None = None,
    piece_size: int | None = None,
    sample: bool = False,
    seed: int = 0,
    download: Download | None = None,
) -> Iterator[Painted]:
    """The stages the viewer paints, in order, with the bytes received when each was ready.

    The source is read at ``rate`` bytes/s (None: no limit) in a background thread while
    the stages are decoded here. Ends with the exact stage, or raises ``TruncatedFile``
    after the last stage an incomplete file allows.
    """
    download = download or Download(source, rate, piece_size)
    download.start()
    try:
        for stage in decode_progressive(download, sample=sample, seed=seed):
            yield Painted(download.received, stage)
    finally:
        download.stop()


# ------------------------------------------------------------------------------ window


def _status(painted: Painted) -> str:
    stage = painted.stage
    state = "exact image (checksum verified)" if stage.exact else "preview"
    return (
        f"stage {stage.index}/{stage.count} · {stage.bytes_used / 1000:.1f} of "
        f"{stage.total_bytes / 1000:.1f} kB ({100 * stage.fraction:.1f} %) · {state}"
    )


def _display_image(stage: Stage, max_size: tuple[int, int]) -> Image.Image:
    image = Image.fromarray(stage.pixels, stage.image.mode)
    if image.width > max_size[0] or image.height > max_size[1]:
        image.thumbnail(max_size, Image.Resampling.BILINEAR)
    return image


def view(
    path: str | os.PathLike,
    *,
    rate: float | None = None,
    sample: bool = False,
    seed: int = 0,
    close_when_done: float | None = None,
    on_paint: Callable[[Any, Painted], None] | None = None,
) -> list[Painted]:
    """Open a Tk window and paint the stages of ``path`` as it is read at ``rate`` bytes/s.

    Returns what was painted once the window is closed (``close_when_done``: close it by
    itself that many seconds after the last stage, for scripts and tests; ``on_paint(root,
    painted)`` is called in the window's thread once each stage is on screen). Errors show in
    the window's status line; once it is closed they are raised, except a ``TruncatedFile``
    after previews were painted (the last painted stage is then not exact).
    """
    import tkinter

    from PIL import ImageTk

    root = tkinter.Tk()
    root.title(f"idfc view {os.fspath(path)}")
    max_size = (
        max(64, int(root.winfo_screenwidth() * 0.9)),
        max(64, int(root.winfo_screenheight() * 0.8)),
    )
    canvas = tkinter.Label(root, text="waiting for the first stage…", width=60, height=12)
    canvas.pack()
    status = tkinter.Label(root, text="", anchor="w")
    status.pack(fill="x")
    progress = tkinter.Label(root, text="", anchor="w", fg="grey30")
    progress.pack(fill="x")

    events: queue.Queue = queue.Queue()
    download = Download(path, rate)
    painted: list[Painted] = []
    failure: list[BaseException] = []
    photo: list[Any] = []  # keep a reference, or Tk shows nothing

    def work() -> None:
        try:
            for item in paint_sequence(path, sample=sample, seed=seed, download=download):
                events.put(("stage", item, _display_image(item.stage, max_size)))
        except BaseException as exc:  # noqa: BLE001 - shown in the window, re-raised later
            events.put(("error", exc, None))
        events.put(("end", None, None))

    def poll() -> None:
        try:
            while True:
                what, item, image = events.get_nowait()
                if what == "stage":
                    painted.append(item)
                    photo[:] = [ImageTk.PhotoImage(image)]
                    canvas.configure(image=photo[0], text="", width=0, height=0)
                    status.configure(text=_status(item))
                    if on_paint is not None:
                        root.update_idletasks()
                        on_paint(root, item)
                elif what == "error":
                    failure.append(item)
                    shown = f"{_status(painted[-1])} — " if painted else ""
                    message = str(item) if isinstance(item, IdfError) else repr(item)
                    status.configure(text=f"{shown}{message}", fg="red3")
                else:
                    if close_when_done is not None:
                        root.after(int(1000 * close_when_done), root.destroy)
                    return
        except queue.Empty:
            pass
        got = download.received
        speed = "" if rate is None else f" at {rate / 1000:.1f} kB/s"
        progress.configure(text=f"received {got / 1000:.1f} kB{speed}")
        root.after(POLL_MS, poll)

    thread = threading.Thread(target=work, name="idfc-decode", daemon=True)
    thread.start()
    root.after(POLL_MS, poll)
    try:
        root.mainloop()
    finally:
        download.stop()
    if failure and (not painted or not isinstance(failure[0], TruncatedFile)):
        raise failure[0]
    return painted
