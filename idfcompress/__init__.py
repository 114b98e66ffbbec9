"""idfcompress: lossless image compression with an Integer Discrete Flow.

The names below are loaded on first use, so that ``import idfcompress`` (and ``idfc
--version``) costs almost nothing; torch is imported only when a network runs.

Importing the package also registers the Pillow plugin (``Image.open("x.idf")``,
``image.save("x.idf")``, module ``idfcompress.pillow``) without importing Pillow: at once
if ``PIL.Image`` is already imported, else right after its import, by an import hook that
then removes itself. What it registers are stand-ins that import ``idfcompress.pillow`` on
first use.
"""

from __future__ import annotations

import importlib
import sys
from typing import IO, TYPE_CHECKING, Any

from .errors import IdfError

__version__ = "0.1.0"

_LAZY = {
    "compress": "api",
    "compress_with_stats": "api",
    "decompress": "api",
    "decompress_image": "api",
    "decompress_pixels": "api",
    "info": "api",
    "set_threads": "api",
    "warm_up": "api",
    "Stage": "codec.progressive",
    "decode_progressive": "codec.progressive",
}

__all__ = [
    "IdfError",
    "Stage",
    "__version__",
    "compress",
    "compress_with_stats",
    "decode_progressive",
    "decompress",
    "decompress_image",
    "decompress_pixels",
    "info",
    "set_threads",
    "warm_up",
]

if TYPE_CHECKING:
    from .api import (
        compress,
        compress_with_stats,
        decompress,
        decompress_image,
        decompress_pixels,
        info,
        set_threads,
        warm_up,
    )
    from .codec.progressive import Stage, decode_progressive


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)


# ------------------------------------------------------------------------------ Pillow

_MAGIC = b"\x89IDF\r\n\x1a\n"  # format.container.MAGIC (a test checks they agree)


def _pillow_accept(prefix: bytes) -> bool:
    return prefix[: len(_MAGIC)] == _MAGIC


def _pillow_open(fp: IO[bytes], filename: str | bytes) -> Any:
    from .pillow import IdfImageFile

    return IdfImageFile(fp, filename)


def _pillow_save(image: Any, fp: IO[bytes], filename: str | bytes) -> None:
    from .pillow import save

    save(image, fp, filename)


def _register_pillow(image_module: Any) -> None:
    """Register the stand-ins with ``PIL.Image`` unless the plugin is registered already."""
    if "IDF" not in image_module.OPEN:
        image_module.register_open("IDF", _pillow_open, _pillow_accept)
        image_module.register_save("IDF", _pillow_save)
        image_module.register_extension("IDF", ".idf")
        image_module.register_mime("IDF", "image/x-idf")


class _RegisteringLoader:
    """Wraps the loader of ``PIL.Image``: runs it, then registers the plugin."""

    def __init__(self, loader: Any) -> None:
        self._loader = loader

    def __getattr__(self, name: str) -> Any:
        return getattr(self._loader, name)

    def create_module(self, spec: Any) -> Any:
        return self._loader.create_module(spec)

    def exec_module(self, module: Any) -> None:
        self._loader.exec_module(module)
        if _PILLOW_HOOK in sys.meta_path:
            sys.meta_path.remove(_PILLOW_HOOK)
        try:
            _register_pillow(module)
        except Exception:  # pragma: no cover - never let the plugin break Pillow's import
            pass


class _PillowImportHook:
    """A meta path finder that finds ``PIL.Image`` with the other finders and wraps its
    loader, so that the plugin is registered as soon as Pillow is imported."""

    def find_spec(self, name: str, path: Any = None, target: Any = None) -> Any:
        if name != "PIL.Image":
            return None
        for finder in sys.meta_path:
            find = getattr(finder, "find_spec", None)
            if finder is self or find is None:
                continue
            spec = find(name, path, target)
            if spec is not None:
                if spec.loader is not None and hasattr(spec.loader, "exec_module"):
                    spec.loader = _RegisteringLoader(spec.loader)
                return spec
        return None


_PILLOW_HOOK = _PillowImportHook()
if "PIL.Image" in sys.modules:
    _register_pillow(sys.modules["PIL.Image"])
else:
    sys.meta_path.insert(0, _PILLOW_HOOK)
