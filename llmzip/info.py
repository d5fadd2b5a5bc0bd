"""Reading what a .llmz file says about itself, without loading any model."""
from __future__ import annotations

import io
from dataclasses import dataclass
from typing import BinaryIO

from .container import Header, StreamReader


@dataclass(frozen=True)
class FileInfo:
    header: Header
    original_bytes: int
    compressed_bytes: int
    blocks: int
    tokens: int
    side_bytes: int
    stream_bytes: int

    @property
    def dtype(self) -> str:
        return self.header.dtype

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
    """Parse and validate a whole container's structure (not its coded contents)."""
    stream = io.BytesIO(source) if isinstance(source, (bytes, bytearray, memoryview)) else source
    reader = StreamReader(stream)
    header, size = reader.read_header()
    blocks = tokens = side = coded = 0
    for block, block_size in reader.blocks(header):
        blocks += 1
        tokens += block.n_tokens
        side += len(block.side)
        coded += sum(len(s) for s in block.streams)
        size += block_size
    trailer = reader.trailer
    assert trailer is not None
    size += len(trailer.to_bytes())
    return FileInfo(header, trailer.total_len, size, blocks, tokens, side, coded)
