"""llmzip: lossless compression with a causal language model as the probability model.

The API follows Python's `lzma` and `bz2` modules::

    import llmzip
    blob = llmzip.compress(data)              # embedded default model
    assert llmzip.decompress(blob) == data

    codec = llmzip.Codec("path/to/model")     # load once, code many times
    blob = codec.compress(data)

Every deliberate failure is an `LLMZipError`; see `llmzip.errors` for the subclasses.
"""
from __future__ import annotations

import threading
from typing import Any

from . import _openmp  # noqa: F401  (first of llmzip's modules: it must run before torch loads)
from .codec import BLOCK_BYTES, Codec, Progress, Stats, StreamCompressor, StreamDecompressor
from .container import FORMAT_VERSION
from .errors import (
    ChecksumError,
    FormatError,
    LLMZipError,
    ModelError,
    ModelMismatchError,
    UnsupportedParameterError,
)
from .fileobj import LLMZipFile, open
from .info import FileInfo, decode_settings, inspect
from .models import DEFAULT_MODEL, LoadedModel, load_model

__version__ = "0.1.0"

_codecs: dict[tuple, Codec] = {}
_codecs_lock = threading.Lock()


def _shared_codec(model: Any, device: Any, dtype: Any) -> Codec:
    """Module-level calls reuse one loaded model per (model, device, dtype), like a cache."""
    if isinstance(model, (Codec, LoadedModel)):
        return model if isinstance(model, Codec) else Codec(model)
    key = (str(model) if model is not None else None, str(device), str(dtype))
    with _codecs_lock:
        if key not in _codecs:
            _codecs[key] = Codec(model, device=device, dtype=dtype)
        return _codecs[key]


def compress(data: bytes, model: Any = None, *, preset: int | None = None, context: int | None = None,
             batch: int | None = None, device: Any = None, dtype: Any = None, block_bytes: int = BLOCK_BYTES) -> bytes:
    """Compress `data` with `model` (None: the embedded default) and return the .llmz bytes.

    `preset` is the compression level, 1 (fastest) to 9 (best), as in `lzma.compress`; `block_bytes`
    is the input per block, the unit of random access (`Codec.decompress_range`).
    """
    base = _shared_codec(model, device, dtype)
    codec = base
    if (preset, context, batch) != (None, None, None):
        codec = Codec(base.model, preset=preset, context=context, batch=batch, quantizer=base.quantizer,
                      engine=base.engine)
    return codec.compress(bytes(data), block_bytes=block_bytes)


def decompress(data: bytes, model: Any = None, *, device: Any = None, dtype: Any = None) -> bytes:
    """Decompress .llmz bytes; `model` must be the one the data was compressed with."""
    if device is None or dtype is None:  # the file says what reproduces its numbers
        file_device, file_dtype = decode_settings(inspect(data).header)
        device, dtype = device or file_device, dtype or file_dtype
    return _shared_codec(model, device, dtype).decompress(bytes(data))


__all__ = [
    "compress", "decompress", "open", "LLMZipFile", "inspect", "Codec", "StreamCompressor", "StreamDecompressor",
    "Progress", "Stats", "FileInfo", "load_model", "LoadedModel", "DEFAULT_MODEL", "FORMAT_VERSION", "LLMZipError",
    "FormatError", "ChecksumError", "ModelError", "ModelMismatchError", "UnsupportedParameterError",
]
