"""The exception hierarchy: every failure a user can meet is an LLMZipError with an actionable message."""
from __future__ import annotations


class LLMZipError(Exception):
    """Base class of every error llmzip raises on purpose."""


class FormatError(LLMZipError):
    """The input is not a valid llmzip file: wrong magic, truncated, corrupted, or a newer format."""


class ChecksumError(FormatError):
    """Decoding finished but the output does not match the checksum stored in the file."""


class ModelError(LLMZipError):
    """A model cannot be found or loaded, or is not the model a file was compressed with."""


class ModelMismatchError(ModelError):
    """The file was compressed with a different model or tokenizer than the one given."""


class UnsupportedParameterError(LLMZipError):
    """A parameter (device, dtype, quantizer, coder) cannot reproduce what the file needs."""


class MissingExtraError(LLMZipError, ImportError):
    """An optional feature's packages are not installed; the message names the extra to install."""
