"""Reading what a .llmz file says about itself, without loading any model."""
from __future__ import annotations

import io
from dataclasses import dataclass
from typing import BinaryIO

from .container import Header, StreamReader, Wrap


@dataclass(frozen=True)
class BlockInfo:
    """One block as the file stores it."""

    offset: int  # of its framing, from the start of the file
    size: int  # bytes in the file, framing included
    raw_start: int  # where its data begins in the original
    raw_len: int
    raw_crc: int  # CRC-32 of its data
    tokens: int
    streams: int
    side_bytes: int  # as stored: the side channel and the wrap record
    stream_bytes: int
    line_ends: int = 0  # CRLF line ends coded as LF (llmzip.filters)
    wrap_width: int = 0  # soft line breaks coded as spaces, put back by a greedy wrap at this width (0: none)
    wrap_exceptions: int = 0  # the breaks that wrap mispredicts, recorded
    wrap_bytes: int = 0  # the wrap record's bytes (counted in side_bytes)


@dataclass(frozen=True)
class FileInfo:
    header: Header
    original_bytes: int
    compressed_bytes: int
    blocks: int
    tokens: int
    side_bytes: int
    stream_bytes: int
    header_size: int = 0  # magic, version, header and its check
    tail_size: int = 0  # the end: block index and footer (version 3) or trailer
    block_list: tuple[BlockInfo, ...] = ()

    @property
    def version(self) -> int:
        return self.header.version

    @property
    def dtype(self) -> str:
        return self.header.dtype

    @property
    def overhead_bytes(self) -> int:
        """Everything but coded streams and side channels: header, block framing, index or trailer."""
        return self.compressed_bytes - self.stream_bytes - self.side_bytes

    @property
    def bits_per_byte(self) -> float:
        return 8.0 * self.compressed_bytes / self.original_bytes if self.original_bytes else 0.0


def decode_settings(header: Header) -> tuple[str, str]:
    """The device and dtype that can reproduce a file's numbers: the ones it was written with, or
    for a portable file (device class "any") whatever device is here."""
    if header.device_class == "any":
        return "auto", header.dtype
    return ("cuda" if header.device_class.startswith("cuda") else "cpu"), header.dtype


def inspect(source: bytes | BinaryIO) -> FileInfo:
    """Parse and validate a whole container's structure (not its coded contents), front to back:
    every block's sequence number, and the block index against the blocks."""
    stream = io.BytesIO(source) if isinstance(source, (bytes, bytearray, memoryview)) else source
    reader = StreamReader(stream)
    header, header_size = reader.read_header()
    size = header_size
    blocks = []
    for block, block_size in reader.blocks(header):
        side = block.side_bytes(header.version)
        coded = sum(len(s) for s in block.streams)
        wrap = block.wrap or Wrap(0)
        blocks.append(BlockInfo(size, block_size, block.raw_start, block.raw_len, block.raw_crc, block.n_tokens,
                                len(block.streams), side, coded, block.line_ends, wrap.width, len(wrap.exceptions),
                                side - block.stored_side_len(header.version)))
        size += block_size
    assert reader.total_len is not None
    size += reader.tail_size
    original = reader.trailer.total_len if reader.trailer is not None else reader.total_len
    return FileInfo(header, original, size, len(blocks), sum(b.tokens for b in blocks),
                    sum(b.side_bytes for b in blocks), sum(b.stream_bytes for b in blocks), header_size,
                    reader.tail_size, tuple(blocks))
