"""A Pillow plugin for .idf files: ``Image.open("photo.idf")`` and ``image.save("photo.idf")``.

``import idfcompress`` registers it without importing Pillow (see ``idfcompress.__init__``:
at once if ``PIL.Image`` is already imported, else as soon as it is); importing this module
registers it too. Pillow has no entry-point discovery of third-party plugins, so there is
nothing to declare in the package metadata.

Reading checks everything :func:`idfcompress.decompress` checks (the header and chunk
CRCs, the SHA-256 of the decoded pixels, no bytes after the end): a corrupt or truncated
file raises ``OSError`` (with the :class:`~idfcompress.IdfError` as its cause), never
gives a wrong image. ``Image.open`` reads the header only; ``load()`` reads the rest of the
file once, into one buffer, and decodes it.

``draft()`` (which ``thumbnail()`` calls) serves a size the file's coarse level covers from
that level alone: every F-th pixel of every F-th row, the first bytes of the file, so a
thumbnail of a 12 MP photo reads and decodes about 1 % of it. That level is a subsample,
not an average (a draft, as JPEG's are scaled DCTs); its chunks are CRC-checked, while the
pixel SHA-256 can only check the whole image. Files without a coarse level (made before
format 10, or by the flow) and larger sizes decode exactly, then reduce.
Previews are given only where Pillow asks for what a damaged file still holds: with
``ImageFile.LOAD_TRUNCATED_IMAGES = True`` a truncated progressive file loads as the best
stage its bytes allow, and ``info["idf_preview"]`` is ``(stage, stages)``.
"""

from __future__ import annotations

from typing import IO, Any

import numpy as np
from PIL import Image, ImageFile

from .api import compress
from .codec import decoder
from .codec.decoder import Decoding
from .codec.progressive import decode_preview
from .errors import IdfError, NotAnIdfFile, TruncatedFile, UnsupportedImage
from .format import container
from .format.layout import COARSE_KIND, coarse_stride
from .imageio import PixelImage, from_pil

__all__ = ["EXTENSIONS", "FORMAT", "MIME", "IdfImageFile", "register", "save"]

FORMAT = "IDF"
EXTENSIONS = (".idf",)
MIME = "image/x-idf"
_PIECE = 1 << 12  # bytes read at a time while looking for the end of the header


def accept(prefix: bytes) -> bool:
    """Whether a file starting with ``prefix`` is an .idf file (its 8 magic bytes)."""
    return prefix[: len(container.MAGIC)] == container.MAGIC


def _max_pixels() -> int | None:
    """The decoder's pixel limit: its own, or Pillow's bomb limit when that is higher or
    switched off (Pillow checks its limit when the file is opened)."""
    limit = Image.MAX_IMAGE_PIXELS
    return None if limit is None else max(decoder.MAX_PIXELS, 2 * int(limit))


def _read_into(fp: IO[bytes], view: memoryview) -> int:
    """Fill ``view`` from ``fp``; the number of bytes read (less at the end of the file)."""
    done = 0
    readinto = getattr(fp, "readinto", None)
    while done < len(view):
        if readinto is not None:
            got = readinto(view[done:])
        else:
            piece = fp.read(len(view) - done)
            got = len(piece)
            view[done : done + got] = piece
        if not got:
            break
        done += got
    return done


class IdfImageFile(ImageFile.ImageFile):
    """An .idf file opened by Pillow: the header on open, the pixels on ``load()``."""

    format = FORMAT
    format_description = "idfcompress lossless image"

    def _open(self) -> None:
        assert self.fp is not None
        prefix = b""
        size: int | None = None
        try:
            while size is None or len(prefix) < size:
                piece = self.fp.read(_PIECE if size is None else size - len(prefix))
                if not piece:
                    break
                prefix += piece
                size = container.header_size_needed(prefix)
            header, table = container.read_header(prefix)
        except NotAnIdfFile as exc:
            raise SyntaxError(str(exc)) from None  # not ours: Pillow tries the other plugins
        except IdfError as exc:
            raise OSError(str(exc)) from exc
        assert size is not None
        self._header = header
        self._table = table
        self._header_size = size
        self._prefix = prefix
        self._mode = header.mode
        self._size = (header.width, header.height)
        if "ICCP" in header.metadata:
            self.info["icc_profile"] = header.metadata["ICCP"]
        if "EXIF" in header.metadata:
            self.info["exif"] = header.metadata["EXIF"]
        self._pending = True  # pixels not decoded yet (load() does not use Pillow's tiles)
        self._draft = 0  # the coarse level's stride when draft() chose it

    def draft(
        self, mode: str | None, size: tuple[int, int] | None
    ) -> tuple[str, tuple[int, int, float, float]] | None:
        """Configure ``load()`` to give the coarse level where it is at least ``size``
        (``mode`` is ignored: the image keeps its own); None where it cannot."""
        if size is None or not getattr(self, "_pending", False) or self._draft:
            return None
        header, (width, height) = self._header, self.size
        groups = {e.group for e in self._table if e.kind == COARSE_KIND}
        if groups != set(range(len(header.groups))):
            return None  # an older file, or one made by the flow (load() checks the rest)
        stride = coarse_stride(height, width, header.tile_size)
        reduced = (-(-width // stride), -(-height // stride))
        if reduced[0] < size[0] or reduced[1] < size[1]:
            return None
        self._draft, self._size = stride, reduced
        self.info["idf_draft"] = stride
        return self.mode, (0, 0, width / stride, height / stride)

    def _decode_draft(self) -> PixelImage:
        """The coarse levels of every plane group, from the file's first bytes."""
        decoding = Decoding(self._header, self._table, self._header_size, _max_pixels())
        end = max(e.offset + e.length for e in self._table if e.kind == COARSE_KIND)
        data, got = self._read_upto(end)
        if got < end:
            raise TruncatedFile(
                f"image file is truncated: {got} bytes, its coarse level ends at {end}"
            )
        levels = [decoding.coarse(memoryview(data), g) for g in range(len(self._header.groups))]
        pixels = np.concatenate([level for level in levels if level is not None], axis=2)
        return PixelImage(pixels, self._header.mode, metadata=dict(self._header.metadata))

    def _read_file(self) -> tuple[bytearray, int]:
        """The whole file in one buffer of its announced size, and how many bytes of it
        arrived; ``CorruptFile`` if bytes follow its end."""
        assert self.fp is not None
        total = container.file_size(self._table, self._header_size)
        container.check_no_trailing(len(self._prefix), total)
        data, got = self._read_upto(total)
        if got == total:
            container.check_no_trailing(total + len(self.fp.read(1)), total)
        return data, got

    def _read_upto(self, end: int) -> tuple[bytearray, int]:
        """The file's first ``end`` bytes in one buffer (what was read with the header, then
        the rest from the file), and how many of them arrived."""
        assert self.fp is not None
        data = bytearray(end)
        got = min(len(self._prefix), end)
        data[:got] = self._prefix[:got]
        return data, got + _read_into(self.fp, memoryview(data)[got:])

    def _decode(self) -> PixelImage:
        data, got = self._read_file()
        if got == len(data):
            return decoder.decode(memoryview(data), max_pixels=_max_pixels())
        if not ImageFile.LOAD_TRUNCATED_IMAGES:
            raise TruncatedFile(
                f"image file is truncated: {got} of the {len(data)} bytes its header announces"
            )
        stage = decode_preview(memoryview(data)[:got], max_pixels=_max_pixels())
        self.info["idf_preview"] = (stage.index, stage.count)
        return stage.image

    def load(self) -> Any:
        if getattr(self, "_pending", False):
            try:
                image = self._decode_draft() if self._draft else self._decode()
            except IdfError as exc:
                raise OSError(str(exc)) from exc
            finally:
                if self._exclusive_fp and self._close_exclusive_fp_after_loading and self.fp:
                    self.fp.close()
                self.fp = None
            pixels = image.pixels[:, :, 0] if image.mode == "L" else image.pixels
            self.im = Image.fromarray(pixels, image.mode).im
            self._pending = False
            self.readonly = 0
            self._prefix = b""
        elif self._im is None:
            raise OSError("cannot load this image")
        return Image.Image.load(self)


def _metadata(image: Image.Image, options: dict[str, Any]) -> dict[str, bytes]:
    """ICC profile and EXIF to store: the save options', else the image's own."""
    icc = options.get("icc_profile", image.info.get("icc_profile"))
    exif = options.get("exif", image.info.get("exif"))
    if isinstance(exif, Image.Exif):
        exif = exif.tobytes()
    meta = {}
    if icc:
        meta["ICCP"] = bytes(icc)
    if exif:
        meta["EXIF"] = bytes(exif)
    return meta


def save(image: Image.Image, fp: IO[bytes], filename: str | bytes = "") -> None:
    """Pillow's save handler: ``image.save("x.idf", tile_size=256, verify=False,
    icc_profile=..., exif=...)``; other options are ignored, as Pillow's own plugins do.

    Every file is progressive (its coarse level first). P and 1 images are stored as RGB(A)
    and L, as :func:`idfcompress.compress` stores them; other modes (I;16, F, CMYK, ...) raise
    ``OSError``. The image's ICC profile and EXIF are kept unless the options replace them
    (``icc_profile=None``, ``exif=b""`` drop them).
    """
    options = dict(getattr(image, "encoderinfo", {}))
    try:
        pixels = from_pil(image)
    except UnsupportedImage as exc:
        raise OSError(f"cannot write mode {image.mode} as IDF: {exc}") from exc
    pixels.metadata = _metadata(image, options)
    extra = {key: options[key] for key in ("tile_size",) if key in options}
    try:
        data = compress(pixels, verify=bool(options.get("verify")), **extra)
    except IdfError as exc:
        raise OSError(str(exc)) from exc
    fp.write(data)


def register() -> None:
    """Register the plugin with Pillow (done on import of this module and of idfcompress)."""
    Image.register_open(FORMAT, IdfImageFile, accept)
    Image.register_save(FORMAT, save)
    Image.register_extensions(FORMAT, list(EXTENSIONS))
    Image.register_mime(FORMAT, MIME)


register()
