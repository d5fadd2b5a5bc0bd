"""The .llmz container: a versioned header, independent blocks, and a trailer with a checksum.

Layout (all integers little-endian; `varint` is unsigned LEB128, at most 10 bytes):

    magic        4 bytes  b"\\x89LLZ"
    version      1 byte   FORMAT_VERSION
    header_len   varint   length of the header body
    header       bytes    the Header fields, see Header.to_bytes
    header_crc   4 bytes  CRC-32 of the header body
    blocks       0 or more of:
        tag          1 byte  0x01
        block_len    varint  bytes of the block body that follows
        block body   see Block.to_bytes
    end tag      1 byte   0x00
    total_len    varint   length of the original data
    total_crc    4 bytes  CRC-32 of the original data

Blocks are self-contained pieces of the input (a few hundred KiB each), so both directions stream
with bounded memory. Every length read from a file is checked against what remains of the file and
against hard limits before anything is allocated.
"""
from __future__ import annotations

import io
import zlib
from dataclasses import dataclass, field
from typing import BinaryIO, Callable, Iterator

from .errors import FormatError, LLMZipError

MAGIC = b"\x89LLZ"
FORMAT_VERSION = 2  # 2 added engine and stream_windows, shortened fingerprints; version 1 files still decode
# Fingerprint length by format version: 64 bits tell models apart as well as 128 and save 16 bytes.
FINGERPRINT_BYTES = {1: 16, 2: 8}
BLOCK_TAG = 0x01
END_TAG = 0x00

# Hard limits that keep a corrupted or hostile file from asking for absurd allocations.
MAX_HEADER_BYTES = 1 << 16
MAX_BLOCK_BYTES = 1 << 28
MAX_BLOCK_RAW_BYTES = 1 << 26
MAX_STRING_BYTES = 1 << 10
_READ_CHUNK = 1 << 20  # largest single read from a stream


def crc32(data: bytes | memoryview, previous: int = 0) -> int:
    return zlib.crc32(data, previous) & 0xFFFFFFFF


# ---------------------------------------------------------------------------------------------
# Primitive readers and writers


def write_varint(out: bytearray, value: int) -> None:
    if value < 0:
        raise ValueError("varint must be non-negative")
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return


def decode_varint(next_byte: Callable[[], int], limit: int, what: str) -> int:
    """Read one varint byte by byte, refusing overlong encodings and values above `limit`."""
    value = shift = 0
    for _ in range(10):
        byte = next_byte()
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            if value > limit:
                raise FormatError(f"corrupted file: {what} is {value}, above the limit {limit}")
            return value
        shift += 7
    raise FormatError(f"corrupted file: overlong number in {what}")


class Reader:
    """Bounds-checked reads from an in-memory buffer; every failure is a FormatError."""

    def __init__(self, data: bytes | memoryview, what: str):
        self.data = memoryview(data)
        self.pos = 0
        self.what = what

    @property
    def remaining(self) -> int:
        return len(self.data) - self.pos

    def take(self, n: int) -> memoryview:
        if n < 0 or n > self.remaining:
            raise FormatError(f"truncated or corrupted file: {self.what} ends early")
        chunk = self.data[self.pos : self.pos + n]
        self.pos += n
        return chunk

    def u8(self) -> int:
        return self.take(1)[0]

    def u32(self) -> int:
        return int.from_bytes(self.take(4), "little")

    def varint(self, limit: int = (1 << 63) - 1, name: str = "a length") -> int:
        return decode_varint(self.u8, limit, f"{name} in {self.what}")

    def string(self) -> str:
        raw = self.take(self.varint(MAX_STRING_BYTES, "a string length"))
        try:
            return bytes(raw).decode("utf-8")
        except UnicodeDecodeError:
            raise FormatError(f"corrupted file: a text field in {self.what} is not UTF-8") from None

    def expect_end(self) -> None:
        if self.remaining:
            raise FormatError(f"corrupted file: {self.remaining} unexpected bytes at the end of {self.what}")


def _write_string(out: bytearray, text: str) -> None:
    raw = text.encode("utf-8")
    if len(raw) > MAX_STRING_BYTES:
        raise ValueError(f"header string too long: {text[:40]!r}...")
    write_varint(out, len(raw))
    out += raw


# ---------------------------------------------------------------------------------------------
# Header


@dataclass(frozen=True)
class Header:
    """Everything that decides the numbers the coder sees; the decoder must reproduce all of it."""

    model_name: str
    model_fingerprint: bytes  # hash of the weights as loaded (see models.py), FINGERPRINT_BYTES long
    tokenizer_fingerprint: bytes  # hash of the token byte table (see tokenization.py), as long
    bos_id: int
    context: int  # tokens per window; each window starts again from BOS
    batch: int  # windows run in lockstep per model call
    dtype: str  # e.g. "float32", "bfloat16"
    device_class: str  # e.g. "cpu-x86_64", "cuda-sm90"
    threads: int  # CPU threads of the model kernels: their work split changes the last bits
    attention: str  # the attention implementation, e.g. "sdpa"
    quantizer: str  # id of the logits-to-frequencies implementation, see quantize.py
    precision: int  # bits of the coder's probability total
    coder: str  # range coder and its stream format version
    software: str  # torch and transformers versions that encoded; checked loosely
    extra: dict[str, str] = field(default_factory=dict)  # reserved for later fields
    engine: str = "transformers"  # what computed the logits step by step, see inference.py
    stream_windows: int = 0  # windows per coded stream (0: a whole batch per stream, as in version 1)

    def windows_per_stream(self) -> int:
        return self.stream_windows or self.batch

    def streams_in(self, n_tokens: int) -> int:
        """How many coded streams a block of n_tokens has: per batch, one per stream_windows windows."""
        n_windows = -(-n_tokens // self.context)
        full, last = divmod(n_windows, self.batch)
        per = self.windows_per_stream()
        return full * -(-self.batch // per) + -(-last // per)

    def to_bytes(self, version: int = FORMAT_VERSION) -> bytes:
        """The header body as format `version` writes it (older versions for compatibility tests)."""
        out = bytearray()
        _write_string(out, self.model_name)
        for fp in (self.model_fingerprint, self.tokenizer_fingerprint):
            if len(fp) != FINGERPRINT_BYTES[version]:
                raise ValueError(f"format version {version} has {FINGERPRINT_BYTES[version]}-byte fingerprints")
            out += fp
        for number in (self.bos_id, self.context, self.batch, self.threads):
            write_varint(out, number)
        for text in (self.dtype, self.device_class, self.attention, self.quantizer):
            _write_string(out, text)
        out.append(self.precision)
        _write_string(out, self.coder)
        _write_string(out, self.software)
        write_varint(out, len(self.extra))
        for key, value in sorted(self.extra.items()):
            _write_string(out, key)
            _write_string(out, value)
        if version >= 2:
            _write_string(out, self.engine)
            write_varint(out, self.stream_windows)
        return bytes(out)

    @classmethod
    def from_bytes(cls, body: bytes | memoryview, version: int = FORMAT_VERSION) -> "Header":
        r = Reader(body, "the header")
        name = r.string()
        model_fp, tok_fp = bytes(r.take(FINGERPRINT_BYTES[version])), bytes(r.take(FINGERPRINT_BYTES[version]))
        bos = r.varint(1 << 32, "the BOS id")
        context = r.varint(1 << 24, "the context")
        batch = r.varint(1 << 20, "the batch size")
        threads = r.varint(1 << 12, "the thread count")
        if context < 1 or batch < 1:
            raise FormatError("corrupted file: context and batch must be positive")
        dtype, device_class, attention, quantizer = r.string(), r.string(), r.string(), r.string()
        precision = r.u8()
        coder, software = r.string(), r.string()
        extra = {}
        for _ in range(r.varint(64, "the number of extra fields")):
            key = r.string()
            extra[key] = r.string()
        engine, stream_windows = "transformers", 0
        if version >= 2:
            engine = r.string()
            stream_windows = r.varint(batch, "the windows per stream")  # 0: the whole batch
        r.expect_end()
        return cls(name, model_fp, tok_fp, bos, context, batch, dtype, device_class, threads, attention,
                   quantizer, precision, coder, software, extra, engine, stream_windows)


# ---------------------------------------------------------------------------------------------
# Blocks


@dataclass(frozen=True)
class Block:
    """One independently decodable piece of the input.

    `side` carries what the model does not code (raw bytes and the layout that splices them back,
    see tokenization.py), already packed. `streams` holds the range-coder streams: per batch of
    windows, one per `stream_windows` of them; the windows of a block are `ceil(n_tokens / context)`
    consecutive slices of its tokens.
    """

    raw_len: int
    raw_crc: int
    n_tokens: int
    side: bytes
    streams: list[bytes]

    def to_bytes(self) -> bytes:
        out = bytearray()
        write_varint(out, self.raw_len)
        out += self.raw_crc.to_bytes(4, "little")
        write_varint(out, self.n_tokens)
        write_varint(out, len(self.side))
        out += self.side
        write_varint(out, len(self.streams))
        for stream in self.streams:
            write_varint(out, len(stream))
        for stream in self.streams:
            out += stream
        return bytes(out)

    @classmethod
    def from_bytes(cls, body: bytes | memoryview, header: Header) -> "Block":
        r = Reader(body, "a block")
        raw_len = r.varint(MAX_BLOCK_RAW_BYTES, "the block size")
        raw_crc = r.u32()
        n_tokens = r.varint(raw_len, "the token count")
        side = bytes(r.take(r.varint(r.remaining, "the side data length")))
        n_streams = header.streams_in(n_tokens)
        if r.varint(r.remaining, "the stream count") != n_streams:
            raise FormatError("corrupted file: a block's stream count does not match its token count")
        lengths = [r.varint(r.remaining, "a stream length") for _ in range(n_streams)]
        if sum(lengths) != r.remaining:
            raise FormatError("corrupted file: a block's stream lengths do not add up")
        streams = [bytes(r.take(n)) for n in lengths]
        return cls(raw_len, raw_crc, n_tokens, side, streams)


@dataclass(frozen=True)
class Trailer:
    total_len: int
    total_crc: int

    def to_bytes(self) -> bytes:
        buf = bytearray([END_TAG])
        write_varint(buf, self.total_len)
        buf += self.total_crc.to_bytes(4, "little")
        return bytes(buf)


# ---------------------------------------------------------------------------------------------
# Writing and reading whole containers


def write_header(out: BinaryIO, header: Header) -> int:
    body = header.to_bytes()
    buf = bytearray(MAGIC)
    buf.append(FORMAT_VERSION)
    write_varint(buf, len(body))
    buf += body
    buf += crc32(body).to_bytes(4, "little")
    out.write(buf)
    return len(buf)


def write_block(out: BinaryIO, block: Block) -> int:
    body = block.to_bytes()
    buf = bytearray([BLOCK_TAG])
    write_varint(buf, len(body))
    out.write(bytes(buf))
    out.write(body)
    return len(buf) + len(body)


def write_trailer(out: BinaryIO, trailer: Trailer) -> int:
    buf = trailer.to_bytes()
    out.write(buf)
    return len(buf)


class StreamReader:
    """Reads a container from a binary stream piece by piece, validating as it goes."""

    def __init__(self, source: BinaryIO):
        self.source = source

    def _read_exact(self, n: int, what: str) -> bytes:
        if n <= _READ_CHUNK:
            data = self.source.read(n)
            if data is None or len(data) != n:
                raise FormatError(f"truncated file: it ends inside {what}")
            return data
        # A length from the file is only a claim: read it piece by piece, so that a truncated or
        # corrupted file costs memory for the bytes it has, not for the bytes it says it has.
        buf = bytearray()
        while len(buf) < n:
            chunk = self.source.read(min(_READ_CHUNK, n - len(buf)))
            if not chunk:
                raise FormatError(f"truncated file: it ends inside {what}")
            buf += chunk
        return bytes(buf)

    def _read_varint(self, what: str, limit: int) -> int:
        return decode_varint(lambda: self._read_exact(1, what)[0], limit, what)

    def read_header(self) -> tuple[Header, int]:
        """Return the header and the number of bytes it took."""
        magic = self.source.read(len(MAGIC))
        if magic is None or len(magic) < len(MAGIC) or magic != MAGIC:
            raise FormatError("not an llmzip file (no llmzip magic bytes at the start)")
        version = self._read_exact(1, "the header")[0]
        if version > FORMAT_VERSION:
            raise FormatError(
                f"this file uses llmzip format version {version}, newer than this llmzip reads "
                f"(version {FORMAT_VERSION}): upgrade llmzip")
        if version < 1:
            raise FormatError(f"corrupted file: invalid format version {version}")
        body_len = self._read_varint("the header", MAX_HEADER_BYTES)
        body = self._read_exact(body_len, "the header")
        stored_crc = int.from_bytes(self._read_exact(4, "the header"), "little")
        if crc32(body) != stored_crc:
            raise FormatError("corrupted file: the header checksum does not match")
        size_prefix = bytearray()
        write_varint(size_prefix, body_len)
        return Header.from_bytes(body, version), len(MAGIC) + 1 + len(size_prefix) + body_len + 4

    def blocks(self, header: Header) -> Iterator[tuple[Block, int]]:
        """Yield (block, its size on disk); ends after the trailer, stored in self.trailer."""
        self.trailer: Trailer | None = None
        while True:
            tag = self._read_exact(1, "the block list")[0]
            if tag == END_TAG:
                total_len = self._read_varint("the trailer", 1 << 62)
                total_crc = int.from_bytes(self._read_exact(4, "the trailer"), "little")
                self.trailer = Trailer(total_len, total_crc)
                if self.source.read(1):
                    raise FormatError("corrupted file: unexpected data after the end of the llmzip stream")
                return
            if tag != BLOCK_TAG:
                raise FormatError(f"corrupted file: unknown block tag {tag}")
            body_len = self._read_varint("a block length", MAX_BLOCK_BYTES)
            body = self._read_exact(body_len, "a block")
            size_prefix = bytearray()
            write_varint(size_prefix, body_len)
            yield Block.from_bytes(body, header), 1 + len(size_prefix) + body_len


def read_all(blob: bytes) -> tuple[Header, list[Block], Trailer]:
    """Parse a whole in-memory container (used by `info` and tests)."""
    reader = StreamReader(io.BytesIO(blob))
    header, _ = reader.read_header()
    blocks = [block for block, _ in reader.blocks(header)]
    assert reader.trailer is not None
    return header, blocks, reader.trailer


__all__ = [
    "MAGIC", "FORMAT_VERSION", "Header", "Block", "Trailer", "StreamReader", "read_all",
    "write_header", "write_block", "write_trailer", "crc32", "LLMZipError",
]
