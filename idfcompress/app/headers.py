"""``idfc info``: the header of an .idf file, read without the payloads.

The magic is checked on the first bytes (``/dev/zero`` is refused at once), then only the
header is read (``container.header_size_needed``); of a regular file's payloads,
``api.info`` reads only the first byte of each first-stage flow chunk (the "fitted prior"
count) and the first two of each region payload (which coder, which prior); a stream is
read no further than the header says. The file's size is compared with the one the header
announces: a truncated file is an error, not a silent success.
"""

from __future__ import annotations

import os
import stat
from typing import Any, BinaryIO

from .files import Failure, open_input, read_header_prefix, read_upto


def _seekable_size(handle: BinaryIO) -> int | None:
    """The size of a regular local file, or None for a stream."""
    try:
        status = os.fstat(handle.fileno())
    except (OSError, AttributeError, ValueError):
        return None
    return status.st_size if stat.S_ISREG(status.st_mode) else None


def read_info(name: str) -> dict[str, Any]:
    """``api.info`` fields of file ``name`` plus ``file_bytes``; ``Failure`` or a
    ``FormatError`` when it is not a complete .idf file."""
    from .. import api
    from ..format import container

    with open_input(name) as handle:
        data, need = read_header_prefix(handle)
        if need is None or len(data) < need:
            container.read_header(bytes(data))  # raises TruncatedFile, naming what is missing
        assert need is not None
        header = bytes(data[:need])
        _, entries = container.read_header(header)
        end = container.file_size(entries, need)
        size = _seekable_size(handle)
        if size is None:  # a stream: read it (no further than the header says, plus one)
            data += read_upto(handle, end + 1 - len(data))
            fields, size = api.info(bytes(data)), len(data)
        else:  # api.info reads the header again and one byte of some payloads
            handle.seek(0)
            fields = api.info(handle)
    if size < end:
        raise Failure(f"truncated .idf file: the header announces {end} bytes, only {size} present")
    container.check_no_trailing(size, end)
    fields["file_bytes"] = size
    return fields


def describe(name: str, fields: dict[str, Any]) -> list[str]:
    """The text ``idfc info`` prints for one file."""
    size = fields["file_bytes"]
    subpixels = fields["width"] * fields["height"] * sum(g["channels"] for g in fields["groups"])
    source = f" (from mode {fields['source_mode']})" if fields["source_mode"] else ""
    lines = [
        f"{name}:",
        f"  size      {fields['width']}x{fields['height']} {fields['mode']}{source}",
        f"  bytes     {size} ({8 * size / subpixels:.3f} bits/subpixel)",
        f"  tiles     {fields['tiles']} of {fields['tile_size']} px, "
        f"{fields['region_tiles']} as region payloads"
        + (  # what only files made by the flow hold
            f", {fields['margins']} margins, "
            f"{fields['fitted_first_stages']} first-stage priors fitted"
            if any(g["flow_chunks"] for g in fields["groups"]) or fields["margins"]
            else ""
        ),
    ]
    if fields.get("coarse_tiles"):
        lines.append(
            f"  coarse    the pixels at multiples of {fields['coarse_stride']} first, in "
            f"{fields['coarse_tiles']} tile(s): a prefix past them shows the whole picture"
        )
    if fields["region_coders"]:
        coders = ", ".join(f"{n} {name}" for name, n in fields["region_coders"].items())
        lines.append(f"  regions   {coders}")
    for g in fields["groups"]:  # the model fields matter only to a group with flow chunks
        flow = (
            f", {g['flow_chunks']} flow chunks: flow model {g['model']} "
            f"(sha256 {g['model_sha256'][:16]}…, {g['arithmetic']})"
            if g["flow_chunks"]
            else ""
        )
        lines.append(f"  group     {g['channels']} channel(s) from {g['first_channel']}{flow}")
    if fields["metadata"]:
        items = ", ".join(f"{k} {v} bytes" for k, v in fields["metadata"].items())
        lines.append(f"  metadata  {items}")
    lines.append(f"  checksum  sha256 {fields['pixel_sha256']}")
    return lines
