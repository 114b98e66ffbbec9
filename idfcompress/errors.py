"""Exceptions raised by idfcompress; every message is one line meant for the user."""


class IdfError(Exception):
    """Base class of every error idfcompress reports to users."""


class UnsupportedImage(IdfError):
    """The input image has a mode or depth the codec does not handle."""


class FormatError(IdfError):
    """The data is not a valid .idf file."""


class NotAnIdfFile(FormatError):
    """The data does not start with the .idf magic bytes."""


class UnsupportedVersion(FormatError):
    """The file was written by a newer (or unknown) version of the format."""


class TruncatedFile(FormatError):
    """The file ends before the data its header announces."""


class CorruptFile(FormatError):
    """The file's structure, a checksum or the decoded data is inconsistent."""


class ModelError(IdfError):
    """A model is missing, malformed or not the one a file was made with."""


class MissingDependency(IdfError):
    """An optional package a feature needs is not installed (e.g. PyTorch for the flow)."""


class ImageTooLarge(IdfError):
    """The image exceeds the pixel limit set to guard against decompression bombs."""


class VerificationFailed(IdfError):
    """A file just written did not decode to its input (``verify=True``)."""


class IdfWarning(UserWarning):
    """Base class of the warnings idfcompress gives users (``warnings.warn``); every message
    is one line, which ``idfc`` prints as ``idfc: FILE: warning: MESSAGE``."""


class MetadataWarning(IdfWarning):
    """Metadata (ICC profile, EXIF, another tag) was left out of an output image because
    its format cannot store it or the image library cannot write it; pixels are unaffected."""


class ImageWarning(IdfWarning):
    """The image library (Pillow) warned about an image it read or wrote anyway: its
    message, on one line (its own warnings never reach the user raw)."""
