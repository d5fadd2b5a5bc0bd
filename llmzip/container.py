"""The .llmz container: a versioned header, independent blocks, and a block index at the end.

Version 3 layout (all integers little-endian; `varint` is unsigned LEB128, at most 10 bytes;
FORMAT.md is the reference, with the reasoning behind every field's size):

    magic        4 bytes  b"\\x89LLZ"
    version      1 byte   3
    header_len   varint   length of the header body
    header       bytes    the Header fields, see Header.to_bytes: short codes, defaults omitted
    header_crc   2 bytes  CRC-16 of version, header_len and header
    blocks       0 or more of:
        block_len    varint  bytes of the block body that follows (never 0)
        block body   raw_start (the block's first byte in the original: its sequence number),
                     raw_len, raw_crc (CRC-32), n_tokens, side channel, streams; see Block.to_bytes
    end          1 byte   0x00
    index        varint n_blocks, then (framed size, raw_len) of every block but the last
    footer       the index length as a varint written backwards, so that a reader finds the index
                 from the end of the file

Blocks are self-contained pieces of the input (1 MiB by default), so both directions stream with
bounded memory, and a reader that can seek decodes only the blocks a byte range needs
(`read_index`). Every length read from a file is checked against what remains of the file and
against hard limits before anything is allocated. Versions 1 and 2 (no sequence numbers, no index,
a trailer with the total length and CRC-32) are still read, and written for compatibility tests.
"""
from __future__ import annotations

import binascii
import io
import re
import zlib
from array import array
from bisect import bisect_right
from dataclasses import dataclass, field, replace
from typing import BinaryIO, Callable, Iterator

from .errors import FormatError, LLMZipError

MAGIC = b"\x89LLZ"
# 7: a block's line-wrap record (the soft line breaks its text was coded without, see filters.py).
# 6: a block's line-end count (the CRLF line ends its text was coded without, see filters.py).
# 5: a mixer field (the match model mixed into the LLM's frequencies, see match.py).
# 4: carried context (the header's carry and lane_tokens fields, see schedule.py).
# 3: compact header (codes, defaults, 4-byte fingerprint, CRC-16), block sequence numbers, block index.
# 2 added engine and stream_windows and shortened fingerprints. Versions 1 to 6 still decode.
FORMAT_VERSION = 7
VERSIONS = (1, 2, 3, 4, 5, 6, 7)
# Model fingerprint length by format version. Version 3 keeps 32 bits: enough to tell a wrong model
# before decoding (FORMAT.md, "Why these sizes"); the block CRC-32 is what guarantees the output.
FINGERPRINT_BYTES = {1: 16, 2: 8, 3: 4, 4: 4, 5: 4, 6: 4, 7: 4}
# Versions 1 and 2 also stored the token table's fingerprint; version 3's model fingerprint covers it.
TOKENIZER_FINGERPRINT_BYTES = {1: 16, 2: 8, 3: 0, 4: 0, 5: 0, 6: 0, 7: 0}
BLOCK_TAG = 0x01  # versions 1 and 2
END_TAG = 0x00

# Hard limits that keep a corrupted or hostile file from asking for absurd allocations.
MAX_HEADER_BYTES = 1 << 16
MAX_BLOCK_BYTES = 1 << 28
MAX_BLOCK_RAW_BYTES = 1 << 26
MAX_STRING_BYTES = 1 << 10
MAX_WRAP_WIDTH = 1 << 10  # the widest line a block's wrap record may give (filters.py)
MAX_TOTAL_BYTES = 1 << 62
_READ_CHUNK = 1 << 20  # largest single read from a stream

# The side channel of a block that is all text (see tokenization.pack_side). Version 3 stores it as
# an empty side channel: it is the side of nearly every text block, and an empty one never occurs.
ALL_TEXT_SIDE = b"\x02"


def crc32(data: bytes | memoryview, previous: int = 0) -> int:
    return zlib.crc32(data, previous) & 0xFFFFFFFF


def crc16(data: bytes | memoryview) -> int:
    """CRC-16/CCITT-FALSE (polynomial 0x1021, initial 0xFFFF): the version 3 header check."""
    return binascii.crc_hqx(bytes(data), 0xFFFF)


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


def varint_bytes(value: int) -> bytes:
    out = bytearray()
    write_varint(out, value)
    return bytes(out)


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
# Version 3 header: known values as one-byte codes, fields equal to their defaults omitted


# Known values of each coded field; a value's code is its position + 1, and code 0 is followed by
# the value as a string. These tables are part of the format: append only, never reorder.
ENGINE_CODES = ("portable-v1", "transformers", "static-v1", "static-v1+graphs")
QUANTIZER_CODES = ("int-v1", "torch-v1")  # code 3: triton-v1 with its launch configuration, below
TRITON_CODE = 3
_TRITON_ID = re.compile(r"triton-v1:block=([1-9][0-9]*):warps=([1-9][0-9]*)")
DTYPE_CODES = ("float32", "bfloat16", "float16")
DEVICE_CODES = ("any",)
ATTENTION_CODES = ("integer", "sdpa", "eager")
CODER_CODES = ("constriction-0.5-range-u32/24",)
MODEL_NAME_CODES = ("SmolLM2-135M-Instruct.Q4_1",)  # the embedded default model
MIXER_CODES = ("match-v1", "none", "adapt-v1", "adapt-v2")  # see match.py and adapt.py
NO_MIXER = "none"
ADAPT_MIXERS = ("adapt-v1", "adapt-v2")  # the match model and a logit bias learned while coding ...
COUNTED_MIXER = "adapt-v2"  # ... at a rate per token that falls as the token recurs
ADAPT_MIXER = COUNTED_MIXER  # the one the levels choose


@dataclass(frozen=True)
class _Field:
    name: str  # Header attribute
    kind: str  # "varint", "u8", "code", "string", "extra"
    default: object
    codes: tuple[str, ...] = ()
    limit: int = (1 << 63) - 1


# Bit i of the header's `present` varint says that field i follows; a clear bit means the default.
# The defaults are the codec's default settings (portable engine, context 512, 16 windows per
# stream), so that a file made with them carries only its model fingerprint and one byte of flags.
V3_FIELDS = (
    _Field("bos_id", "varint", 1, limit=1 << 32),
    _Field("context", "varint", 512, limit=1 << 24),
    _Field("stream_windows", "varint", 16, limit=1 << 20),
    _Field("batch", "varint", None, limit=1 << 20),  # default: stream_windows
    _Field("model_name", "code", "", MODEL_NAME_CODES),  # default: not recorded
    _Field("engine", "code", ENGINE_CODES[0], ENGINE_CODES),
    _Field("quantizer", "code", QUANTIZER_CODES[0], QUANTIZER_CODES),
    _Field("dtype", "code", DTYPE_CODES[0], DTYPE_CODES),
    _Field("device_class", "code", DEVICE_CODES[0], DEVICE_CODES),
    _Field("attention", "code", ATTENTION_CODES[0], ATTENTION_CODES),
    _Field("threads", "varint", 0, limit=1 << 12),
    _Field("precision", "u8", 24),
    _Field("coder", "code", CODER_CODES[0], CODER_CODES),
    _Field("software", "string", ""),  # default: not recorded
    _Field("extra", "extra", None),  # default: none
)
# Version 4 adds the carried-context layout after the model name. Its defaults (and the context's)
# are those of the default compression level, and its bits come before the engine's, so that a file at any level
# still needs one byte of flags. Like every default here they are part of the format: a version 4
# file without the field means this value.
V4_CONTEXT = 1024
V4_CARRY = 512
V4_LANE_TOKENS = 8192
V4_FIELDS = (V3_FIELDS[0], _Field("context", "varint", V4_CONTEXT, limit=1 << 24)) + V3_FIELDS[2:5] + (
    _Field("carry", "varint", V4_CARRY, limit=1 << 24),
    _Field("lane_tokens", "varint", V4_LANE_TOKENS, limit=1 << 30),
) + V3_FIELDS[5:]
# Version 5 adds the mixer after the layout; by default the match model is mixed in. A file of
# an earlier version has no mixer.
V5_FIELDS = V4_FIELDS[:7] + (_Field("mixer", "code", MIXER_CODES[0], MIXER_CODES),) + V4_FIELDS[7:]


def _fields(version: int) -> tuple[_Field, ...]:
    return V5_FIELDS if version >= 5 else V4_FIELDS if version >= 4 else V3_FIELDS


def _write_code(out: bytearray, value: str, codes: tuple[str, ...], quantizer: bool = False) -> None:
    if value in codes:
        write_varint(out, codes.index(value) + 1)
        return
    triton = _TRITON_ID.fullmatch(value) if quantizer else None
    if triton:
        write_varint(out, TRITON_CODE)
        write_varint(out, int(triton.group(1)))
        write_varint(out, int(triton.group(2)))
        return
    out.append(0)
    _write_string(out, value)


def _read_code(r: Reader, name: str, codes: tuple[str, ...]) -> str:
    code = r.varint(1 << 16, f"the {name} code")
    if code == 0:
        return r.string()
    if name == "quantizer" and code == TRITON_CODE:
        block = r.varint(1 << 20, "the quantizer's block size")
        warps = r.varint(1 << 10, "the quantizer's warp count")
        return f"triton-v1:block={block}:warps={warps}"
    if code > len(codes):
        raise FormatError(f"corrupted file, or one from a newer llmzip: unknown {name} code {code}")
    return codes[code - 1]


# ---------------------------------------------------------------------------------------------
# Header


@dataclass(frozen=True)
class Header:
    """Everything that decides the numbers the coder sees; the decoder must reproduce all of it."""

    model_name: str  # readable name; "" when the file does not record it (version 3, most models)
    model_fingerprint: bytes  # hash of the weights as loaded and of the token table, FINGERPRINT_BYTES long
    tokenizer_fingerprint: bytes  # hash of the token byte table; versions 1 and 2 only (b"" in version 3)
    bos_id: int
    context: int  # tokens one model call sees per window (carried context included)
    batch: int  # windows run in lockstep per model call
    dtype: str  # e.g. "float32", "bfloat16"
    device_class: str  # e.g. "cpu-x86_64-avx2", "cuda-sm90:...", "any" (portable engine)
    threads: int  # CPU threads of the model kernels: their work split changes the last bits
    attention: str  # the attention implementation, e.g. "sdpa"
    quantizer: str  # id of the logits-to-frequencies implementation, see quantize.py
    precision: int  # bits of the coder's probability total
    coder: str  # range coder and its stream format version
    software: str  # torch and transformers versions that encoded ("" if not recorded); checked loosely
    extra: dict[str, str] = field(default_factory=dict)  # reserved for later fields
    engine: str = "transformers"  # what computed the logits, see inference.py and portable/
    stream_windows: int = 0  # windows per coded stream (0: a whole batch per stream, as in version 1)
    version: int = FORMAT_VERSION  # the format version the header was read from, or is written as
    carry: int = 0  # carried context of each window after a lane's first (version 4; see schedule.py)
    lane_tokens: int = 0  # tokens per lane; 0 (every version before 4): the context
    mixer: str = NO_MIXER  # what is mixed into the model's frequencies (version 5; see match.py)

    def __post_init__(self) -> None:
        if self.lane_tokens == self.context:  # one canonical form, so that equal layouts compare equal
            object.__setattr__(self, "lane_tokens", 0)

    @property
    def lane_size(self) -> int:
        return self.lane_tokens or self.context

    def windows_per_stream(self) -> int:
        return self.stream_windows or self.batch

    def streams_in(self, n_tokens: int) -> int:
        """How many coded streams a block of n_tokens has: per batch, one per stream_windows windows."""
        n_windows = -(-n_tokens // self.lane_size)  # lanes: one window each without carried context
        full, last = divmod(n_windows, self.batch)
        per = self.windows_per_stream()
        return full * -(-self.batch // per) + -(-last // per)

    def to_bytes(self, version: int | None = None) -> bytes:
        """The header body as format `version` (default: the header's own) writes it."""
        version = self.version if version is None else version
        if version not in VERSIONS:
            raise ValueError(f"no format version {version}")
        for fp, sizes in ((self.model_fingerprint, FINGERPRINT_BYTES), (self.tokenizer_fingerprint,
                                                                       TOKENIZER_FINGERPRINT_BYTES)):
            if len(fp) != sizes[version]:
                raise ValueError(f"format version {version} has {FINGERPRINT_BYTES[version]}-byte fingerprints"
                                 + (" and no tokenizer fingerprint" if version >= 3 else ""))
        if version < 4 and (self.carry or self.lane_size != self.context):
            raise ValueError(f"format version {version} has no carried context")
        if version < 5 and self.mixer != NO_MIXER:
            raise ValueError(f"format version {version} has no mixer")
        if version >= 3:
            return self._v3_body(version)
        if version == 1 and (self.engine != "transformers" or self.stream_windows):
            raise ValueError("format version 1 has only the transformers engine, one stream per batch")
        out = bytearray()
        _write_string(out, self.model_name)
        out += self.model_fingerprint + self.tokenizer_fingerprint
        for number in (self.bos_id, self.context, self.batch, self.threads):
            write_varint(out, number)
        for text in (self.dtype, self.device_class, self.attention, self.quantizer):
            _write_string(out, text)
        out.append(self.precision)
        _write_string(out, self.coder)
        _write_string(out, self.software)
        _write_extra(out, self.extra)
        if version >= 2:
            _write_string(out, self.engine)
            write_varint(out, self.stream_windows)
        return bytes(out)

    def _v3_body(self, version: int) -> bytes:
        present, fields = 0, bytearray()
        for bit, f in enumerate(_fields(version)):
            value = self.lane_size if f.name == "lane_tokens" else getattr(self, f.name)
            default = self.stream_windows if f.name == "batch" else {} if f.kind == "extra" else f.default
            if value == default:
                continue
            present |= 1 << bit
            if f.kind == "varint":
                write_varint(fields, value)
            elif f.kind == "u8":
                fields.append(value)
            elif f.kind == "code":
                _write_code(fields, value, f.codes, quantizer=f.name == "quantizer")
            elif f.kind == "string":
                _write_string(fields, value)
            else:
                _write_extra(fields, value)
        out = bytearray(self.model_fingerprint)
        write_varint(out, present)
        return bytes(out + fields)

    @classmethod
    def from_bytes(cls, body: bytes | memoryview, version: int = FORMAT_VERSION) -> "Header":
        r = Reader(body, "the header")
        if version >= 3:
            header = cls._from_v3(r, version)
        else:
            name = r.string()
            size = FINGERPRINT_BYTES[version]
            model_fp, tok_fp = bytes(r.take(size)), bytes(r.take(size))
            bos = r.varint(1 << 32, "the BOS id")
            context = r.varint(1 << 24, "the context")
            batch = r.varint(1 << 20, "the batch size")
            threads = r.varint(1 << 12, "the thread count")
            dtype, device_class, attention, quantizer = r.string(), r.string(), r.string(), r.string()
            precision = r.u8()
            coder, software = r.string(), r.string()
            extra = _read_extra(r)
            engine, stream_windows = "transformers", 0
            if version >= 2:
                engine = r.string()
                stream_windows = r.varint(1 << 20, "the windows per stream")  # 0: the whole batch
            header = cls(name, model_fp, tok_fp, bos, context, batch, dtype, device_class, threads, attention,
                         quantizer, precision, coder, software, extra, engine, stream_windows, version)
        r.expect_end()
        if header.context < 1 or header.batch < 1:
            raise FormatError("corrupted file: context and batch must be positive")
        if header.stream_windows > header.batch:
            raise FormatError("corrupted file: more windows per stream than per batch")
        if header.carry >= header.context or header.lane_size < header.context:
            raise FormatError("corrupted file: the carried context must be below the context, and lanes no shorter")
        return header

    @classmethod
    def _from_v3(cls, r: Reader, version: int) -> "Header":
        """Versions 3 and 4: the fingerprint, the flags of the fields present, those fields."""
        values: dict = {"model_fingerprint": bytes(r.take(FINGERPRINT_BYTES[version])), "tokenizer_fingerprint": b"",
                        "version": version}
        fields = _fields(version)
        present = r.varint((1 << len(fields)) - 1, "the header's field flags")
        for bit, f in enumerate(fields):
            if not present >> bit & 1:
                values[f.name] = (values["stream_windows"] if f.name == "batch" else {} if f.kind == "extra"
                                  else f.default)
            elif f.kind == "varint":
                values[f.name] = r.varint(f.limit, f"the {f.name.replace('_', ' ')}")
            elif f.kind == "u8":
                values[f.name] = r.u8()
            elif f.kind == "code":
                values[f.name] = _read_code(r, f.name.replace("_", " "), f.codes)
            elif f.kind == "string":
                values[f.name] = r.string()
            else:
                values[f.name] = _read_extra(r)
        return cls(**values)


def _write_extra(out: bytearray, extra: dict[str, str]) -> None:
    write_varint(out, len(extra))
    for key, value in sorted(extra.items()):
        _write_string(out, key)
        _write_string(out, value)


def _read_extra(r: Reader) -> dict[str, str]:
    extra = {}
    for _ in range(r.varint(64, "the number of extra fields")):
        key = r.string()
        extra[key] = r.string()
    return extra


# ---------------------------------------------------------------------------------------------
# Blocks


@dataclass(frozen=True)
class Wrap:
    """A block's line-wrap record (version 7 on): its soft line breaks come back from a greedy wrap
    at `width` columns, wrong exactly at the candidates (counted from 0, in order) in `exceptions`.
    `llmzip.filters` finds and walks the candidates; this is what the file stores of them."""

    width: int
    exceptions: tuple[int, ...] = ()

    def to_bytes(self) -> bytes:
        """The width, the count of exceptions, and each exception (strictly increasing) as its gap
        to the one before, less 1, all varints."""
        out = bytearray()
        write_varint(out, self.width)
        write_varint(out, len(self.exceptions))
        previous = -1
        for k in self.exceptions:
            write_varint(out, k - previous - 1)
            previous = k
        return bytes(out)

    def record_bytes(self) -> int:
        """Bytes the record takes in the block."""
        return len(self.to_bytes())

    @classmethod
    def read(cls, r: Reader, raw_len: int) -> "Wrap":
        """The record at `r`, of a block of `raw_len` bytes: a zero width, or an exception the block
        cannot hold, is refused before any decoding."""
        width = r.varint(MAX_WRAP_WIDTH, "the line-wrap width")
        if not width:
            raise FormatError("corrupted file: a block's line-wrap width is zero")
        exceptions, previous = [], -1
        for _ in range(r.varint(min(raw_len, r.remaining), "the line-wrap exception count")):
            previous += 1 + r.varint(raw_len, "a line-wrap exception")
            exceptions.append(previous)
        if previous >= raw_len:
            raise FormatError("corrupted file: a block's line-wrap exceptions pass its text")
        return cls(width, tuple(exceptions))


@dataclass(frozen=True)
class Block:
    """One independently decodable piece of the input.

    `side` carries what the model does not code (raw bytes and the layout that splices them back,
    see tokenization.py), already packed. `streams` holds the range-coder streams: per batch of
    windows, one per `stream_windows` of them; the windows of a block are `ceil(n_tokens / context)`
    consecutive slices of its tokens. `raw_start` is where the block's data begins in the original:
    version 3 stores it as the block's sequence number; for older files the reader counts it.
    `line_ends` is how many CRLF line ends were coded as LF (`llmzip.filters`; version 6 on): the
    tokens and side channel hold raw_len - line_ends bytes. `wrap` (None: none) puts back the soft
    line breaks that were coded as spaces (version 7 on).
    """

    raw_len: int
    raw_crc: int
    n_tokens: int
    side: bytes
    streams: list[bytes]
    raw_start: int = 0
    line_ends: int = 0
    wrap: Wrap | None = None

    @property
    def coded_len(self) -> int:
        """Bytes the tokens and the side channel hold: the block without the CRs the filter took out."""
        return self.raw_len - self.line_ends

    def stored_side_len(self, version: int = FORMAT_VERSION) -> int:
        """Bytes the side channel takes in the file (version 3 stores an all-text side as nothing)."""
        return 0 if version >= 3 and self.side == ALL_TEXT_SIDE else len(self.side)

    def side_bytes(self, version: int = FORMAT_VERSION) -> int:
        """Bytes of what the model does not code, as stored: the side channel, and the wrap record
        (the layout of the text's lines, which grows with the text, unlike the block's framing)."""
        return self.stored_side_len(version) + (self.wrap.record_bytes() if self.wrap else 0)

    def to_bytes(self, version: int = FORMAT_VERSION) -> bytes:
        out = bytearray()
        if version >= 3:
            write_varint(out, self.raw_start)
        write_varint(out, self.raw_len)
        out += self.raw_crc.to_bytes(4, "little")
        write_varint(out, self.n_tokens)
        side = b"" if self.stored_side_len(version) == 0 else self.side
        if self.wrap and version < 7 or self.line_ends and version < 6:
            raise ValueError(f"format version {version} has no {'reflow' if self.wrap else 'line-end'} filter")
        if version >= 7:  # the side length's low bits say whether a line-end count and a wrap record follow
            write_varint(out, len(side) << 2 | bool(self.wrap) << 1 | bool(self.line_ends))
            self._write_filters(out)
        elif version == 6:  # the low bit says whether a line-end count follows
            write_varint(out, len(side) << 1 | bool(self.line_ends))
            self._write_filters(out)
        else:
            write_varint(out, len(side))
        out += side
        if version < 3:
            write_varint(out, len(self.streams))
        # Version 3 leaves out the stream count (it follows from n_tokens) and the last stream's
        # length (it is what remains of the block).
        for stream in self.streams[:-1] if version >= 3 else self.streams:
            write_varint(out, len(stream))
        for stream in self.streams:
            out += stream
        return bytes(out)

    def _write_filters(self, out: bytearray) -> None:
        if self.line_ends:
            write_varint(out, self.line_ends)
        if self.wrap:
            out += self.wrap.to_bytes()

    @classmethod
    def from_bytes(cls, body: bytes | memoryview, header: Header, raw_start: int = 0) -> "Block":
        """Parse a block body; `raw_start` is the reader's count, for versions that do not store it."""
        r = Reader(body, "a block")
        v3 = header.version >= 3
        if v3:
            raw_start = r.varint(MAX_TOTAL_BYTES, "the block's position")
        raw_len = r.varint(MAX_BLOCK_RAW_BYTES, "the block size")
        if v3 and raw_len == 0:
            raise FormatError("corrupted file: an empty block")
        raw_crc = r.u32()
        n_tokens = r.varint(raw_len, "the token count")
        flag_bits = 2 if header.version >= 7 else 1 if header.version == 6 else 0
        side_len = r.varint((r.remaining + 1 << flag_bits) - 1, "the side data length")
        flags, side_len = side_len & ((1 << flag_bits) - 1), side_len >> flag_bits
        line_ends, wrap = 0, None
        if flags & 1:  # a line-end count follows
            line_ends = r.varint(raw_len // 2, "the line-end count")
            if not line_ends:
                raise FormatError("corrupted file: a block's line-end count is zero")
        if flags & 2:  # a wrap record follows
            wrap = Wrap.read(r, raw_len)
        side = bytes(r.take(side_len))
        if v3 and not side:
            side = ALL_TEXT_SIDE
        n_streams = header.streams_in(n_tokens)
        if not v3 and r.varint(r.remaining, "the stream count") != n_streams:
            raise FormatError("corrupted file: a block's stream count does not match its token count")
        lengths = [r.varint(r.remaining, "a stream length") for _ in range(n_streams - 1 if v3 else n_streams)]
        if v3 and n_streams:
            lengths.append(r.remaining - sum(lengths))
        if sum(lengths) != r.remaining or (lengths and lengths[-1] < 0):
            raise FormatError("corrupted file: a block's stream lengths do not add up")
        streams = [bytes(r.take(n)) for n in lengths]
        return cls(raw_len, raw_crc, n_tokens, side, streams, raw_start, line_ends, wrap)


@dataclass(frozen=True)
class Trailer:
    """The end of a version 1 or 2 file: length and CRC-32 of the whole original."""

    total_len: int
    total_crc: int

    def to_bytes(self) -> bytes:
        buf = bytearray([END_TAG])
        write_varint(buf, self.total_len)
        buf += self.total_crc.to_bytes(4, "little")
        return bytes(buf)


def _backward_varint(value: int) -> bytes:
    """A varint written backwards: read from the end of a file, its first byte comes first."""
    return varint_bytes(value)[::-1]


def _index_bytes(sizes: array, raw_lens: array) -> bytes:
    out = bytearray()
    n = len(sizes)
    write_varint(out, n)
    for k in range(n - 1):  # the last block's entry follows from the others and the block itself
        write_varint(out, sizes[k])
        write_varint(out, raw_lens[k])
    return bytes(out)


# ---------------------------------------------------------------------------------------------
# Writing


def header_bytes(header: Header) -> bytes:
    """Magic, version, the header and its check, as `header.version` frames them."""
    body = header.to_bytes()
    buf = bytearray(MAGIC)
    buf.append(header.version)
    write_varint(buf, len(body))
    buf += body
    if header.version >= 3:
        buf += crc16(buf[len(MAGIC):]).to_bytes(2, "little")
    else:
        buf += crc32(body).to_bytes(4, "little")
    return bytes(buf)


def write_header(out: BinaryIO, header: Header) -> int:
    buf = header_bytes(header)
    out.write(buf)
    return len(buf)


def frame_block(block: Block, version: int = FORMAT_VERSION) -> bytes:
    """A block as it stands in the file: version 3 `block_len body`, older `01 block_len body`."""
    body = block.to_bytes(version)
    buf = bytearray() if version >= 3 else bytearray([BLOCK_TAG])
    write_varint(buf, len(body))
    return bytes(buf) + body


class ContainerWriter:
    """Writes one container: the header at once, each block as it comes, the end on `close()`.

    It numbers the blocks (version 3: each block's `raw_start`, the bytes of all blocks before it)
    and keeps what the index needs, two numbers per block.
    """

    def __init__(self, out: BinaryIO, header: Header):
        self.out = out
        self.version = header.version
        self.raw_total = 0
        self._sizes = array("Q")
        self._raw_lens = array("Q")
        self.bytes_written = write_header(out, header)

    @property
    def blocks(self) -> int:
        return len(self._sizes)

    def add(self, block: Block) -> int:
        """Write `block` as the next one (its raw_start is set here); return its framed size."""
        if block.raw_len < 1:
            raise ValueError("a block holds at least one byte")
        framed = frame_block(replace(block, raw_start=self.raw_total), self.version)
        self.out.write(framed)
        self._sizes.append(len(framed))
        self._raw_lens.append(block.raw_len)
        self.raw_total += block.raw_len
        self.bytes_written += len(framed)
        return len(framed)

    def close(self, total_crc: int = 0) -> int:
        """Write the end (version 3: end tag, index, footer; older: the trailer, which needs the
        CRC-32 of all the data, `total_crc`); return its size."""
        if self.version >= 3:
            index = _index_bytes(self._sizes, self._raw_lens)
            tail = bytes([END_TAG]) + index + _backward_varint(len(index))
        else:
            tail = Trailer(self.raw_total, total_crc).to_bytes()
        self.out.write(tail)
        self.bytes_written += len(tail)
        return len(tail)


# ---------------------------------------------------------------------------------------------
# Reading front to back


class StreamReader:
    """Reads a container from a binary stream piece by piece, validating as it goes.

    After the end has been read: `total_len` (the original's length), `trailer` (versions 1 and 2:
    the stored length and CRC-32, for the caller to check against the data) and `tail_size`
    (bytes of the end: trailer, or end tag, index and footer). `at_end` refuses bytes after the
    end; a reader over a stream that may go on (a push decompressor) leaves them to its caller.
    """

    def __init__(self, source: BinaryIO, at_end: bool = True):
        self.source = source
        self.trailer: Trailer | None = None
        self.total_len: int | None = None
        self.tail_size = 0
        self._check_at_end = at_end
        self._sizes, self._raw_lens = array("Q"), array("Q")  # of the blocks read so far
        self._next_start = 0  # where the next block must start in the original

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

    def _read_varint(self, what: str, limit: int, counted: bytearray | None = None) -> int:
        def next_byte() -> int:
            byte = self._read_exact(1, what)[0]
            if counted is not None:
                counted.append(byte)
            return byte

        return decode_varint(next_byte, limit, what)

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
        framing = bytearray([version])
        body_len = self._read_varint("the header", MAX_HEADER_BYTES, framing)
        body = self._read_exact(body_len, "the header")
        check_size = 2 if version >= 3 else 4
        stored = int.from_bytes(self._read_exact(check_size, "the header"), "little")
        if stored != (crc16(bytes(framing) + body) if version >= 3 else crc32(body)):
            raise FormatError("corrupted file: the header checksum does not match")
        return Header.from_bytes(body, version), len(MAGIC) + len(framing) + body_len + check_size

    def blocks(self, header: Header) -> Iterator[tuple[Block, int]]:
        """Yield (block, its size on disk), each checked to be the next one; ends after the end."""
        while (item := self.next_block(header)) is not None:
            yield item

    def next_block(self, header: Header) -> tuple[Block, int] | None:
        """The next block and its size on disk, or None once the end has been read and checked.

        The reader's state changes only after a whole block (or the whole end) has been read, so a
        caller whose source ran dry can rewind it to where this call began and call again.
        """
        if header.version < 3:
            return self._next_block_v2(header)
        framing = bytearray()
        body_len = self._read_varint("a block length", MAX_BLOCK_BYTES, framing)
        if body_len == 0:  # the end tag
            self._read_index()
            return None
        body = self._read_exact(body_len, "a block")
        block = Block.from_bytes(body, header)
        if block.raw_start != self._next_start:
            # Checked before the block is decoded, so none of its bytes can be written.
            raise FormatError(
                f"corrupted file: block {len(self._sizes)} starts at byte {block.raw_start} of the original, "
                f"not at byte {self._next_start}: a block was removed, repeated or reordered")
        self._next_start += block.raw_len
        self._sizes.append(len(framing) + body_len)
        self._raw_lens.append(block.raw_len)
        return block, len(framing) + body_len

    def _next_block_v2(self, header: Header) -> tuple[Block, int] | None:
        tag = self._read_exact(1, "the block list")[0]
        if tag == END_TAG:
            total_len = self._read_varint("the trailer", MAX_TOTAL_BYTES)
            trailer = Trailer(total_len, int.from_bytes(self._read_exact(4, "the trailer"), "little"))
            self._finish(len(trailer.to_bytes()))
            self.trailer = trailer
            return None
        if tag != BLOCK_TAG:
            raise FormatError(f"corrupted file: unknown block tag {tag}")
        framing = bytearray([tag])
        body_len = self._read_varint("a block length", MAX_BLOCK_BYTES, framing)
        body = self._read_exact(body_len, "a block")
        block = Block.from_bytes(body, header, raw_start=self._next_start)
        self._next_start += block.raw_len
        return block, len(framing) + body_len

    def _read_index(self) -> None:
        """The end of a version 3 file, after its end tag: the index must describe exactly the
        blocks just read (a reader that seeks relies on it)."""
        sizes = self._sizes
        index = bytearray()
        count = self._read_varint("the block index", MAX_TOTAL_BYTES, index)
        if count != len(sizes):
            raise FormatError(f"corrupted file: the block index lists {count} blocks, the file has {len(sizes)}")
        for k in range(count - 1):
            size = self._read_varint("the block index", MAX_TOTAL_BYTES, index)
            raw_len = self._read_varint("the block index", MAX_TOTAL_BYTES, index)
            if (size, raw_len) != (sizes[k], self._raw_lens[k]):
                raise FormatError(f"corrupted file: the block index does not match block {k}")
        footer = _backward_varint(len(index))
        if self._read_exact(len(footer), "the index footer") != footer:
            raise FormatError("corrupted file: the index length at the end of the file does not match the index")
        self._finish(1 + len(index) + len(footer))

    def _finish(self, tail_size: int) -> None:
        if self._check_at_end and self.source.read(1):
            raise FormatError("corrupted file: unexpected data after the end of the llmzip stream")
        self.tail_size = tail_size
        self.total_len = self._next_start


def read_all(blob: bytes) -> tuple[Header, list[Block], StreamReader]:
    """Parse a whole in-memory container (used by tests); the reader holds the end's fields."""
    reader = StreamReader(io.BytesIO(blob))
    header, _ = reader.read_header()
    blocks = [block for block, _ in reader.blocks(header)]
    return header, blocks, reader


# ---------------------------------------------------------------------------------------------
# Reading through the index: any block, found from the end of the file


class BlockIndex:
    """Where every block of a version 3 file is, read from its end (`read_index`).

    Nothing here is trusted beyond a hint of where to look: `read_block` checks that the block it
    finds has the position, length and size the index promised, and the block's own CRC-32 checks
    its data after decoding. So a damaged index can make a read fail, never return wrong bytes.
    """

    def __init__(self, header: Header, start: int, header_size: int, offsets: array, sizes: array,
                 raw_starts: array, raw_lens: array):
        self.header = header
        self.start = start  # where the container begins in the source
        self.header_size = header_size
        self.offsets, self.sizes, self.raw_starts, self.raw_lens = offsets, sizes, raw_starts, raw_lens

    def __len__(self) -> int:
        return len(self.offsets)

    @property
    def total_len(self) -> int:
        return self.raw_starts[-1] + self.raw_lens[-1] if len(self) else 0

    def locate(self, position: int) -> int:
        """The block holding byte `position` of the original (0 <= position < total_len)."""
        if not 0 <= position < self.total_len:
            raise ValueError(f"position {position} is outside the original's {self.total_len} bytes")
        return bisect_right(self.raw_starts, position) - 1

    def read_block(self, source: BinaryIO, k: int) -> Block:
        """Read block k, checked against the index; the source must be the one the index came from."""
        source.seek(self.offsets[k])
        reader = StreamReader(source)
        framing = bytearray()
        body_len = reader._read_varint("a block length", MAX_BLOCK_BYTES, framing)
        if len(framing) + body_len != self.sizes[k]:
            raise FormatError(f"corrupted file: block {k} does not have the size its index entry gives")
        block = Block.from_bytes(reader._read_exact(body_len, "a block"), self.header)
        if (block.raw_start, block.raw_len) != (self.raw_starts[k], self.raw_lens[k]):
            raise FormatError(f"corrupted file: block {k} is not where the block index puts it")
        return block


def read_index(source: BinaryIO) -> BlockIndex | None:
    """Read a seekable container's header and block index (from its end, as xz and zstd's seekable
    format allow). The container runs from the source's position to its end. Returns None, with the
    source back at its starting position, for a format version that has no index (1 and 2)."""
    start = source.tell()
    reader = StreamReader(source)
    header, header_size = reader.read_header()
    if header.version < 3:
        source.seek(start)
        return None
    end = source.seek(0, io.SEEK_END)
    first_block = start + header_size
    # The footer: the index length as a varint written backwards.
    source.seek(max(first_block, end - 10))
    tail = source.read(end - source.tell())
    index_len = shift = 0
    for footer_len, byte in enumerate(reversed(tail), 1):
        index_len |= (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            break
    else:
        raise FormatError("truncated or corrupted file: no block index at its end")
    if tail[len(tail) - footer_len:] != _backward_varint(index_len):
        raise FormatError("corrupted file: the block index length at its end is not written as llmzip writes it")
    index_start = end - footer_len - index_len
    if index_len < 1 or index_start - 1 < first_block:
        raise FormatError("truncated or corrupted file: the block index length at its end is impossible")
    source.seek(index_start - 1)
    index_bytes = reader._read_exact(1 + index_len, "the block index")
    if index_bytes[0] != END_TAG:
        raise FormatError("truncated or corrupted file: the block index does not follow the last block")
    r = Reader(index_bytes[1:], "the block index")
    end_tag_at = index_start - 1
    count = r.varint((end_tag_at - first_block) // 7, "the block count")  # a framed block takes >= 7 bytes
    offsets, sizes, raw_starts, raw_lens = array("Q"), array("Q"), array("Q"), array("Q")
    offset, raw_pos = first_block, 0
    for _ in range(count - 1):
        size = r.varint(MAX_BLOCK_BYTES + 10, "a block size")
        raw_len = r.varint(MAX_BLOCK_RAW_BYTES, "a block length")
        if size < 7 or raw_len < 1:
            raise FormatError("corrupted file: the block index lists an impossible block")
        offsets.append(offset)
        sizes.append(size)
        raw_starts.append(raw_pos)
        raw_lens.append(raw_len)
        offset += size
        raw_pos += raw_len
    r.expect_end()
    if count == 0:
        if first_block != end_tag_at:
            raise FormatError("corrupted file: the block index lists no blocks, but the file has some")
        return BlockIndex(header, start, header_size, offsets, sizes, raw_starts, raw_lens)
    if offset >= end_tag_at:
        raise FormatError("corrupted file: the block index lists more bytes than the file has")
    # The last block is not in the index: its size is what remains, its length is in its head.
    source.seek(offset)
    framing = bytearray()
    body_len = reader._read_varint("the last block", MAX_BLOCK_BYTES, framing)
    if offset + len(framing) + body_len != end_tag_at:
        raise FormatError("corrupted file: the last block does not end where the block index begins")
    head = Reader(reader._read_exact(min(body_len, 20), "the last block"), "the last block")
    raw_start = head.varint(MAX_TOTAL_BYTES, "the block's position")
    raw_len = head.varint(MAX_BLOCK_RAW_BYTES, "the block size")
    if raw_start != raw_pos or raw_len < 1:
        raise FormatError("corrupted file: the last block is not where the block index puts it")
    offsets.append(offset)
    sizes.append(end_tag_at - offset)
    raw_starts.append(raw_pos)
    raw_lens.append(raw_len)
    return BlockIndex(header, start, header_size, offsets, sizes, raw_starts, raw_lens)


__all__ = [
    "MAGIC", "FORMAT_VERSION", "VERSIONS", "Header", "Block", "Wrap", "Trailer", "StreamReader", "ContainerWriter",
    "BlockIndex", "read_index", "read_all", "write_header", "header_bytes", "frame_block", "crc32", "crc16",
    "LLMZipError",
]
