"""File objects in the conventions of `lzma.open` / `lzma.LZMAFile`.

Reading decodes one block at a time (each checked against its CRC-32 before any of it is
returned); writing encodes a block whenever about a block's worth of data has been written, and
the end of the file on close. Memory stays bounded by the block size, whatever the file size.

Seeking: in a seekable version 3 file, `seek()` is free and the next `read()` decodes only the
block that holds the new position, found through the block index at the end of the file. Other
files (a pipe, or format versions 1 and 2) seek as `LZMAFile` does: forward by decoding and
discarding, backward by starting again from the beginning (which needs a seekable file).
"""
from __future__ import annotations

import builtins
import io
import os
from typing import Any, BinaryIO, Iterator

from .codec import BLOCK_BYTES, Codec
from .container import BlockIndex


class LLMZipFile(io.BufferedIOBase):
    """A binary file object that reads or writes .llmz data.

    `filename` is a path or an existing binary file object. `mode` is "r"/"rb" or "w"/"wb" (or "x"
    and "a" as for `open`, except that appending makes a second, concatenated stream is not
    supported: "a" is refused). `codec` (or `model` plus Codec keyword arguments) chooses the model;
    `block_bytes` sets the input per block when writing (the unit of random access when reading).
    """

    def __init__(self, filename: str | bytes | os.PathLike | BinaryIO, mode: str = "r", *,
                 codec: Codec | None = None, model: Any = None, block_bytes: int = BLOCK_BYTES,
                 **codec_kwargs: Any):
        super().__init__()
        mode = mode.replace("b", "")
        if mode not in ("r", "w", "x"):
            raise ValueError(f"invalid mode {mode!r}: use 'r', 'w' or 'x' (with an optional 'b')")
        self._mode = mode
        if isinstance(filename, (str, bytes, os.PathLike)):
            self._fp: BinaryIO = builtins.open(filename, mode + "b")
            self._owns_fp = True
        elif hasattr(filename, "read" if mode == "r" else "write"):
            self._fp, self._owns_fp = filename, False
        else:
            raise TypeError("filename must be a path or a binary file object")
        try:
            self._codec = codec or Codec(model, **codec_kwargs)
            if mode == "r":
                self._pos = 0  # the reader's position in the original
                self._buffer = b""  # a decoded block, or the part of one not yet passed
                self._buffer_start = 0  # its position in the original
                self._index: BlockIndex | None = None
                self._blocks: Iterator[bytes] | None = None
                self._start = self._fp.tell() if self._fp_seekable() else 0
                if self._fp_seekable():
                    self._index = self._codec.open_index(self._fp)
                if self._index is None:
                    self._restart(rewind=False)
            else:
                self._writer = self._codec.compressor(self._fp, block_bytes=block_bytes)
        except BaseException:
            if self._owns_fp:
                self._fp.close()
            raise

    # -- io plumbing ----------------------------------------------------------------------------
    def readable(self) -> bool:
        self._check_open()
        return self._mode == "r"

    def writable(self) -> bool:
        self._check_open()
        return self._mode != "r"

    def seekable(self) -> bool:
        """True when reading a seekable file (any position, either direction), as for LZMAFile."""
        self._check_open()
        return self._mode == "r" and self._fp_seekable()

    def _fp_seekable(self) -> bool:
        seekable = getattr(self._fp, "seekable", None)
        return bool(seekable is not None and seekable())

    def _check_open(self) -> None:
        if self.closed:
            raise ValueError("I/O operation on closed file")

    def _check_mode(self, reading: bool) -> None:
        self._check_open()
        if reading != (self._mode == "r"):
            raise io.UnsupportedOperation("file not open for " + ("reading" if reading else "writing"))

    def close(self) -> None:
        if self.closed:
            return
        try:
            if self._mode != "r":
                self._writer.close()
        finally:
            try:
                if self._owns_fp:
                    self._fp.close()
            finally:
                super().close()

    # -- reading --------------------------------------------------------------------------------
    def _restart(self, rewind: bool = True) -> None:
        """Decode from the first block (again, when `rewind`): files without an index."""
        if rewind:
            if not self._fp_seekable():
                raise io.UnsupportedOperation("cannot seek backward in a stream that cannot rewind")
            self._fp.seek(self._start)
        self._blocks = self._codec.iter_decompress(self._fp)
        self._buffer, self._buffer_start = b"", 0

    def _fill(self) -> bool:
        """Make the block holding the current position the buffer; False at the end of the data."""
        while not self._buffer_start <= self._pos < self._buffer_start + len(self._buffer):
            if self._index is not None:
                if self._pos >= self._index.total_len:
                    return False
                k = self._index.locate(self._pos)
                self._buffer, self._buffer_start = b"", self._index.raw_starts[k]
                self._buffer = self._codec.decode_indexed(self._fp, self._index, k)
                continue
            if self._pos < self._buffer_start:
                self._restart()
            if self._blocks is None:
                return False
            try:
                data = next(self._blocks)
            except StopIteration:
                self._blocks = None
                return False
            self._buffer_start += len(self._buffer)
            self._buffer = data
        return True

    def read(self, size: int | None = -1) -> bytes:
        self._check_mode(reading=True)
        parts = []
        remaining = -1 if size is None or size < 0 else size
        while remaining != 0 and self._fill():
            offset = self._pos - self._buffer_start
            end = len(self._buffer) if remaining < 0 else min(len(self._buffer), offset + remaining)
            parts.append(self._buffer[offset:end])
            if remaining > 0:
                remaining -= end - offset
            self._pos += end - offset
        return b"".join(parts)

    def read1(self, size: int = -1) -> bytes:
        self._check_mode(reading=True)
        if not self._fill():
            return b""
        offset = self._pos - self._buffer_start
        end = len(self._buffer) if size < 0 else min(len(self._buffer), offset + size)
        self._pos += end - offset
        return self._buffer[offset:end]

    def readinto(self, b) -> int:
        data = self.read(len(b))
        b[: len(data)] = data
        return len(data)

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        """Move to byte `offset` of the original (from its start, the current position or its end).

        With an index this only records the position; otherwise moving forward decodes and
        discards, moving backward starts again from the beginning, and SEEK_END decodes to the end.
        A position past the end is allowed (reads there return b"").
        """
        self._check_mode(reading=True)
        if whence == io.SEEK_SET:
            target = offset
        elif whence == io.SEEK_CUR:
            target = self._pos + offset
        elif whence == io.SEEK_END:
            target = self._size() + offset
        else:
            raise ValueError(f"invalid whence ({whence}, should be 0, 1 or 2)")
        if target < 0:
            raise ValueError(f"negative seek position {target}")
        if self._index is None and target < self._buffer_start and not self._fp_seekable():
            raise io.UnsupportedOperation("cannot seek backward in a stream that cannot rewind")
        self._pos = target
        return target

    def _size(self) -> int:
        if self._index is not None:
            return self._index.total_len
        while self._blocks is not None:  # decode to the end, as LZMAFile does
            try:
                data = next(self._blocks)
            except StopIteration:
                self._blocks = None
                break
            self._buffer_start += len(self._buffer)
            self._buffer = data
        return self._buffer_start + len(self._buffer)

    def tell(self) -> int:
        self._check_open()
        return self._pos if self._mode == "r" else self._writer.bytes_in

    # -- writing --------------------------------------------------------------------------------
    def write(self, data) -> int:
        self._check_mode(reading=False)
        view = memoryview(data).cast("B")
        self._writer.write(view.tobytes())
        return len(view)


def open(filename: str | bytes | os.PathLike | BinaryIO, mode: str = "rb", *, encoding: str | None = None,
         errors: str | None = None, newline: str | None = None, **kwargs: Any) -> LLMZipFile | io.TextIOWrapper:
    """Open an .llmz file in binary ("rb", "wb", "xb") or text ("rt", "wt", "xt") mode, like lzma.open."""
    if "t" in mode:
        if "b" in mode:
            raise ValueError(f"invalid mode {mode!r}")
        binary = LLMZipFile(filename, mode.replace("t", ""), **kwargs)
        return io.TextIOWrapper(binary, encoding, errors, newline)
    if encoding is not None or errors is not None or newline is not None:
        raise ValueError("encoding, errors and newline apply to text mode only")
    return LLMZipFile(filename, mode, **kwargs)
