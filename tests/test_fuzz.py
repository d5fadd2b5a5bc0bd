"""Fuzzing decompression: any byte string ends in the exact original data or an LLMZipError.

Never another exception type, never a hang, never a block written that the encoder did not write.
Three kinds of test:

* hypothesis properties: round trips of arbitrary binary and text mixes, and decompression of
  arbitrary byte strings (bare, behind the magic bytes, behind a valid header);
* a mutation fuzzer over a small valid multi-block file, decoded from a stream and pushed in
  pieces (`Codec.decompressor`): truncation at every length, bit flips (every bit of the header,
  a sampled bit of every byte after it), length fields inflated or re-encoded, byte insertions,
  deletions and duplications, other tools' output spliced in;
* hand-made hostile files: sizes that would take memory or model time before failing.

The default ("ci") budget keeps this file to about a minute on two cores. The long run is
`bench/fuzz_long.sh` (that is, `LLMZIP_FUZZ=long python -m pytest tests/test_fuzz.py`): 5000
examples per property (LLMZIP_FUZZ_EXAMPLES=N to change) and every bit of the file flipped.
"""
from __future__ import annotations

import bz2
import contextlib
import dataclasses
import gzip
import io
import lzma
import os
import random
import signal
import time
import tracemalloc
import zipfile
import zlib

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import llmzip
from llmzip import FORMAT_VERSION, Codec, FormatError, LLMZipError, inspect
from llmzip.compat import MAX_BATCH
from llmzip.container import (MAGIC, Block, ContainerWriter, Header, Reader, StreamReader, crc16, crc32,
                              write_varint)
from llmzip.tokenization import Layout, pack_side

# Fast LZMA settings for making test files; the decoder's dictionary is larger, so it reads them.
_FAST_LZMA = [{"id": lzma.FILTER_LZMA2, "preset": 1}]

LONG = os.environ.get("LLMZIP_FUZZ") == "long"
_COMMON = dict(deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
settings.register_profile("llmzip-fuzz-ci", max_examples=25, database=None, **_COMMON)
settings.register_profile("llmzip-fuzz-long", max_examples=int(os.environ.get("LLMZIP_FUZZ_EXAMPLES", 5000)),
                          **_COMMON)
# Applied per test (not loaded globally), so other test files keep hypothesis' defaults.
FUZZ = settings.get_profile("llmzip-fuzz-long" if LONG else "llmzip-fuzz-ci")
SECONDS_PER_CASE = 60  # a decode that takes longer on this tiny input is a hang

CONTEXT, BATCH, BLOCK = 8, 2, 40


# ---------------------------------------------------------------------------------------------
# Fixtures and the oracle


@pytest.fixture(scope="module")
def codec(llama):
    # The float engine's lockstep layout, which these hand-made files follow; the portable
    # engine's own corruption tests are in test_portable.py.
    return Codec(llama, context=CONTEXT, batch=BATCH, engine="transformers")


def _sample() -> bytes:
    """Hard-wrapped lines, text, binary bytes, non-ASCII characters, and CRLF line ends (the blocks
    that hold them carry a wrap record and a line-end count, which the length fuzzing reaches too)."""
    text = b"Alice was beginning to get very tired of sitting by her sister on the bank.\r\n"
    wrapped = b"a b\nc d\ne f\ng h\ni j\nk l\nm n\no p\nq r\ns t\n"  # one block, wrapped at 3 columns
    return wrapped + text[:50] + b"\x00\xff\x13\x37binary\x80\x81" + text[50:] + "ü and é\r\n".encode()


@pytest.fixture(scope="module")
def sample(codec):
    """A small valid file of several blocks, and the data of each block as the encoder cut it."""
    data = _sample()
    out = io.BytesIO()
    stats = codec.compress_stream(io.BytesIO(data), out, block_bytes=BLOCK)
    assert stats.blocks >= 3
    blob = out.getvalue()
    reader = StreamReader(io.BytesIO(blob))
    header, header_size = reader.read_header()
    blocks = [block for block, _ in reader.blocks(header)]
    pieces, pos = [], 0
    for block in blocks:
        pieces.append(data[pos : pos + block.raw_len])
        pos += block.raw_len
    assert b"".join(pieces) == data
    return data, blob, header_size, frozenset(pieces)


class _Timeout(Exception):
    pass


@contextlib.contextmanager
def _time_limit(seconds: float):
    def alarm(signum, frame):
        raise _Timeout(f"decoding took longer than {seconds} s: a hang")

    previous = signal.signal(signal.SIGALRM, alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


class _Recorder(io.RawIOBase):
    def __init__(self):
        self.chunks: list[bytes] = []

    def writable(self) -> bool:
        return True

    def write(self, data) -> int:
        self.chunks.append(bytes(data))
        return len(data)


def check_decode(codec: Codec, blob: bytes, original: bytes, pieces: frozenset = frozenset()) -> str:
    """The property: exact original data, or an LLMZipError; and whatever was written before an
    error is whole blocks the encoder wrote (each block's CRC is checked before it is written).
    The push decompressor, fed the same bytes in pieces, must agree (`_check_push`)."""
    target = _Recorder()
    try:
        with _time_limit(SECONDS_PER_CASE):
            codec.decompress_stream(io.BytesIO(blob), target)
    except LLMZipError as exc:
        assert str(exc) and "\n" not in str(exc)
        for chunk in target.chunks:
            assert chunk in pieces, "a block that the encoder never wrote was written out"
        outcome = type(exc).__name__
    else:
        assert b"".join(target.chunks) == original, "decompression returned wrong data without an error"
        outcome = "ok"
    _check_push(codec, blob, original, pieces, outcome)
    return outcome


def _check_push(codec: Codec, blob: bytes, original: bytes, pieces: frozenset, pulled: str) -> None:
    """Fed in pieces of 7 bytes: the original at the end, an LLMZipError, or (a file cut short, or
    not an llmzip file's length yet) a wait for more; only whole blocks come out before either."""
    decompressor = codec.decompressor()
    out = []
    try:
        with _time_limit(SECONDS_PER_CASE):
            for at in range(0, len(blob), 7):
                if decompressor.eof:
                    break
                out.append(decompressor.decompress(blob[at : at + 7]))
    except LLMZipError as exc:
        assert str(exc) and "\n" not in str(exc) and pulled != "ok"
    else:
        if decompressor.eof:  # bytes after the end are the caller's (unused_data), not an error
            assert b"".join(out) == original, "push decompression returned wrong data without an error"
            return
        assert pulled != "ok", "a valid file fed whole did not reach its end"
    for chunk in filter(None, out):
        assert chunk in pieces, "push decompression gave out a block that the encoder never wrote"


def check_arbitrary(codec: Codec, blob: bytes) -> None:
    """For bytes with no known original: only LLMZipError may come out, from every entry point."""
    with _time_limit(SECONDS_PER_CASE):
        for call in (codec.decompress, inspect, lambda b: llmzip.decompress(b, model=codec)):
            with contextlib.suppress(LLMZipError):
                call(blob)


# ---------------------------------------------------------------------------------------------
# Properties


_text = st.text(alphabet=st.characters(codec="utf-8"), max_size=60).map(lambda s: s.encode("utf-8"))
_chunks = st.one_of(
    st.binary(max_size=60),
    _text,
    st.sampled_from([b"\x00" * 30, b"\r\n", b"\xff\xfe", "😀 中文".encode(), b"<s></s>", b" " * 20]),
    st.text(alphabet="abc \n", max_size=80).map(str.encode),
)
_mixes = st.lists(_chunks, max_size=5).map(b"".join)


@FUZZ
@given(data=_mixes, block_bytes=st.sampled_from([1 << 20, 64, 17]))
def test_round_trip_of_binary_and_text_mixes(codec, data, block_bytes):
    out = io.BytesIO()
    codec.compress_stream(io.BytesIO(data), out, block_bytes=block_bytes)
    back = io.BytesIO()
    codec.decompress_stream(io.BytesIO(out.getvalue()), back)
    assert back.getvalue() == data


@FUZZ
@given(tail=st.binary(max_size=400), prefix=st.sampled_from(["none", "magic", "magic+version"]))
def test_arbitrary_bytes_raise_only_llmzip_errors(codec, tail, prefix):
    head = {"none": b"", "magic": MAGIC, "magic+version": MAGIC + b"\x01"}[prefix]
    check_arbitrary(codec, head + tail)


@FUZZ
@given(tail=st.binary(max_size=300))
def test_valid_header_then_arbitrary_bytes(codec, sample, tail):
    _, blob, header_size, _ = sample
    check_arbitrary(codec, blob[:header_size] + tail)


@FUZZ
@given(block=st.binary(max_size=200), framed=st.booleans())
def test_valid_header_then_arbitrary_block(codec, sample, block, framed):
    """Random block bodies with correct framing reach Block.from_bytes and the side channel."""
    _, blob, header_size, _ = sample
    body = bytearray()
    write_varint(body, len(block))
    body += block
    tail = bytes(body) + (b"\x00\x01\x01" if framed else b"")  # end tag, an index of one block, its length
    check_arbitrary(codec, blob[:header_size] + tail)


# ---------------------------------------------------------------------------------------------
# Mutation fuzzing of a valid file


def test_truncation_at_every_length(codec, sample):
    data, blob, _, pieces = sample
    for cut in range(len(blob)):
        assert check_decode(codec, blob[:cut], data, pieces) == "FormatError", cut
    assert check_decode(codec, blob, data, pieces) == "ok"


def test_every_header_bit_flip(codec, sample):
    data, blob, header_size, pieces = sample
    for pos in range(header_size):
        for bit in range(8):
            damaged = bytearray(blob)
            damaged[pos] ^= 1 << bit
            assert check_decode(codec, bytes(damaged), data, pieces) != "ok", (pos, bit)


def test_bit_flips_in_blocks_and_trailer(codec, sample):
    data, blob, header_size, pieces = sample
    rng = random.Random(1)
    results = {}
    for pos in range(header_size, len(blob)):
        for bit in range(8) if LONG else [rng.randrange(8)]:
            damaged = bytearray(blob)
            damaged[pos] ^= 1 << bit
            outcome = check_decode(codec, bytes(damaged), data, pieces)
            results[outcome] = results.get(outcome, 0) + 1
    assert results.get("ChecksumError") and results.get("FormatError")  # both checks are reached


def _length_fields(blob: bytes) -> list[tuple[str, int, int, int, int]]:
    """(name, start, end, value, limit) of every varint outside the CRC-protected header, in the
    version 3 layout (the footer, a backward varint, is left to the bit flips)."""
    r = Reader(blob, "test file")
    fields = []

    def varint(name: str, limit: int) -> int:
        start = r.pos
        value = r.varint()
        fields.append((name, start, r.pos, value, limit))
        return value

    r.take(len(MAGIC))
    assert r.u8() == FORMAT_VERSION
    header = Header.from_bytes(r.take(varint("header length", 1 << 16)), FORMAT_VERSION)
    r.take(2)
    while block_len := varint("block length", 1 << 28):
        end = r.pos + block_len
        varint("block position", 1 << 62)
        raw_len = varint("block size", 1 << 26)
        r.take(4)
        n_tokens = varint("token count", raw_len)
        side = varint("side length", 1 << 28)  # 4 x the length, + 1 with a line-end count, + 2 with a wrap record
        if side & 1:
            varint("line-end count", raw_len // 2)
        if side & 2:
            varint("wrap width", 1 << 10)
            for _ in range(varint("wrap exception count", raw_len)):
                varint("wrap exception", raw_len)
        r.take(side >> 2)
        for _ in range(header.streams_in(n_tokens) - 1):
            varint("stream length", 1 << 28)
        r.take(end - r.pos)
    index_start = r.pos
    count = varint("block count", 1 << 62)
    for _ in range(count - 1):
        varint("index size", 1 << 28)
        varint("index length", 1 << 26)
    assert r.remaining == 1 and blob[-1] == r.pos - index_start  # the footer
    return fields


def _encode_varint(value: int) -> bytes:
    out = bytearray()
    write_varint(out, value)
    return bytes(out)


def _replacements(value: int, limit: int) -> list[bytes]:
    values = {value + 1, value * 2 + 1, value + 1000, 1 << 20, 1 << 26, 1 << 31, limit, limit + 1,
              (1 << 63) - 1, (1 << 64) - 1}
    if value:
        values |= {value - 1, value // 2}
    out = [_encode_varint(v) for v in sorted(values - {value})]
    out.append(_encode_varint(value)[:-1] + bytes([_encode_varint(value)[-1] | 0x80, 0x00]))  # same value, longer
    out.append(b"\xff" * 10 + b"\x01")  # overlong: 11 bytes
    out.append(b"\x80" * 9 + b"\x7f")  # 10 bytes, above 2**64
    return out


def test_inflated_and_reencoded_length_fields(codec, sample):
    data, blob, _, pieces = sample
    fields = _length_fields(blob)
    assert {name for name, *_ in fields} >= {"block position", "block size", "token count", "side length",
                                              "line-end count", "wrap width", "wrap exception count",
                                              "block count", "index size", "index length"}
    for name, start, end, value, limit in fields:
        for replacement in _replacements(value, limit):
            mutant = blob[:start] + replacement + blob[end:]
            outcome = check_decode(codec, mutant, data, pieces)
            # A wrap width may change and still wrap the same lines: then the output is exact (checked).
            assert outcome != "ok" or mutant == blob or replacement[-1] == 0 or name == "wrap width", \
                (name, value, replacement)


def _edit_strategy(size: int):
    pos = st.integers(0, max(0, size - 1))
    return st.one_of(
        st.tuples(st.just("flip"), pos, st.integers(0, 7)),
        st.tuples(st.just("set"), pos, st.integers(0, 255)),
        st.tuples(st.just("insert"), pos, st.binary(min_size=1, max_size=8)),
        st.tuples(st.just("delete"), pos, st.integers(1, 16)),
        st.tuples(st.just("duplicate"), pos, st.integers(1, 40)),
        st.tuples(st.just("move"), pos, st.integers(1, 40)),
    )


def _apply(blob: bytes, edits) -> bytes:
    b = bytearray(blob)
    for kind, pos, arg in edits:
        pos = min(pos, max(0, len(b) - 1))
        if kind == "flip" and b:
            b[pos] ^= 1 << arg
        elif kind == "set" and b:
            b[pos] = arg
        elif kind == "insert":
            b[pos:pos] = arg
        elif kind == "delete":
            del b[pos : pos + arg]
        elif kind == "duplicate":
            b[pos:pos] = b[pos : pos + arg]
        elif kind == "move":
            piece = b[pos : pos + arg]
            del b[pos : pos + arg]
            b[len(b) // 2 : len(b) // 2] = piece
    return bytes(b)


@FUZZ
@given(data=st.data())
def test_random_edits_of_a_valid_file(codec, sample, data):
    original, blob, header_size, pieces = sample
    # Most edits go after the header: header edits only ever meet its checksum.
    edits = data.draw(st.lists(_edit_strategy(len(blob)), min_size=1, max_size=4))
    edits = [(k, header_size + p % (len(blob) - header_size) if data.draw(st.integers(0, 3)) else p, a)
             for k, p, a in edits]
    check_decode(codec, _apply(blob, edits), original, pieces)


def _stream_spans(blob: bytes) -> list[tuple[int, int]]:
    """(start, end) of every range-coder stream in a valid version 3 file."""
    r = Reader(blob, "test file")
    r.take(len(MAGIC) + 1)
    header = Header.from_bytes(r.take(r.varint()))
    r.take(2)
    spans = []
    while block_len := r.varint():
        end = r.pos + block_len
        r.varint()
        r.varint()
        r.take(4)
        n_streams = header.streams_in(r.varint())
        side = r.varint()
        if side & 1:
            r.varint()  # the line-end count
        if side & 2:
            r.varint()  # the wrap width
            for _ in range(r.varint()):  # the wrap exceptions
                r.varint()
        r.take(side >> 2)
        lengths = [r.varint() for _ in range(n_streams - 1)]
        lengths.append(end - r.pos - sum(lengths))
        for n in lengths:
            spans.append((r.pos, r.pos + n))
            r.take(n)
    return spans


@FUZZ
@given(data=st.data())
def test_random_stream_contents(codec, sample, data):
    """Streams replaced by arbitrary words of the same length: the range decoder's worst inputs."""
    original, blob, _, pieces = sample
    spans = _stream_spans(blob)
    start, end = data.draw(st.sampled_from(spans))
    words = data.draw(st.binary(min_size=end - start, max_size=end - start))
    check_decode(codec, blob[:start] + words + blob[end:], original, pieces)


def test_other_tools_output_and_splices(codec, sample):
    data, blob, header_size, pieces = sample
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("sample", data)
    others = [gzip.compress(data), lzma.compress(data), lzma.compress(data, format=lzma.FORMAT_ALONE),
              bz2.compress(data), zlib.compress(data), archive.getvalue(), data, b""]
    for other in others:
        assert check_decode(codec, other, data, pieces) == "FormatError"
        cuts = sorted({1, 4, 5, 6, header_size, header_size + 1, len(blob) // 2, len(blob) - 6, len(blob) - 1})
        for cut in cuts:
            for mutant in (blob[:cut] + other[cut:], blob[:cut] + other, other[:cut] + blob[cut:]):
                assert check_decode(codec, mutant, data, pieces) != "ok" or mutant == blob
        assert check_decode(codec, blob + other, data, pieces) != "ok" or not other


# ---------------------------------------------------------------------------------------------
# Hostile files, made by hand: sizes that would cost memory or model time before failing


def _file(codec: Codec, blocks: list[Block], header=None) -> bytes:
    out = io.BytesIO()
    writer = ContainerWriter(out, header or codec._header())
    for block in blocks:
        writer.add(block)
    writer.close()
    return out.getvalue()


@pytest.fixture()
def no_model(codec, monkeypatch):
    """Fail if the model runs: these files must be refused from their sizes alone."""
    def refuse(*args, **kwargs):
        raise AssertionError("the model ran on a file that its sizes already show to be corrupted")

    monkeypatch.setattr(codec._lockstep, "code_batch", refuse)
    return codec


def _streams(n_tokens: int, context: int = CONTEXT, batch: int = BATCH) -> list[bytes]:
    windows = -(-n_tokens // context)
    return [b"\x01\x02\x03\x04"] * (-(-windows // batch))


@pytest.mark.parametrize("raw_len,n_tokens", [(60 << 20, 1000), (60 << 20, 0), (1000, 1001)])
def test_token_count_that_cannot_fit_the_layout(no_model, raw_len, n_tokens):
    """A block claiming 60 MB of text in a one-byte side channel, but too few tokens to carry it
    (or more tokens than text bytes), is refused before the model runs."""
    block = Block(raw_len, 0, n_tokens, b"\x02", _streams(n_tokens))
    started = time.perf_counter()
    with pytest.raises(FormatError, match="token count"):
        no_model.decompress(_file(no_model, [block]))
    assert time.perf_counter() - started < 10
    too_many = Block(1000, 0, 1000, pack_side(Layout(((10, 990),), b"x" * 990)), _streams(1000))
    with pytest.raises(FormatError, match="token count"):
        no_model.decompress(_file(no_model, [too_many]))


def test_lzma_bomb_in_the_side_channel(no_model):
    bomb = lzma.compress(b"\x00" * (16 << 20), format=lzma.FORMAT_RAW, filters=_FAST_LZMA)
    assert len(bomb) < 20000
    block = Block(1000, 0, 0, b"\x01" + bomb, [])
    started = time.perf_counter()
    with pytest.raises(FormatError, match="side channel"):
        no_model.decompress(_file(no_model, [block]))
    assert time.perf_counter() - started < 10


@pytest.mark.parametrize("payload", [
    _encode_varint(1 << 25) + b"\x00\x00" * 100,  # millions of runs announced, empty runs
    _encode_varint(3) + b"\x00\x05" + b"\x00\x05" + b"\x05\x00",  # an empty text run in the middle
    _encode_varint(2) + b"\x05\x00" + b"\x05\x00",  # an empty raw run before the last
    _encode_varint(1) + b"\x00" + _encode_varint((1 << 26) - 1),  # a run longer than the block
    _encode_varint(0),  # no runs at all
    _encode_varint(1) + b"\x0a\x00" + b"trailing",  # raw bytes the layout does not use
])
def test_inconsistent_layouts_are_refused_early(no_model, payload):
    for side in (b"\x00" + payload, b"\x01" + lzma.compress(
            payload, format=lzma.FORMAT_RAW, filters=_FAST_LZMA)):
        block = Block(10, 0, 5, side, _streams(5))
        with pytest.raises(FormatError, match="layout|side channel"):
            no_model.decompress(_file(no_model, [block]))


def test_layout_bomb_of_many_runs_costs_no_memory(no_model):
    """Many valid-looking runs fail without a Python object per run (that was ~70 bytes a run)."""
    runs = 1 << 16
    payload = _encode_varint(runs) + b"\x01\x01" * runs  # one text byte, one raw byte... but no raw bytes
    blob = _file(no_model, [Block(2 * runs, 0, runs, b"\x00" + payload, _streams(runs))])
    tracemalloc.start()
    try:
        with pytest.raises(FormatError, match="ends early"):
            no_model.decompress(blob)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 8 * len(blob)  # a few copies of the file's bytes


@pytest.mark.parametrize("streams", [[b""], [b"abc"], [b"\x01\x02\x03\x04\x05"]])
def test_malformed_streams_are_refused_before_the_model(no_model, streams):
    block = Block(10, 0, 3, b"\x02", streams)
    with pytest.raises(FormatError, match="stream"):
        no_model.decompress(_file(no_model, [block]))


def test_invalid_coded_stream_is_a_format_error(codec):
    """constriction reports impossible data as AssertionError: it must come out as FormatError."""
    import torch

    from llmzip.coder import StreamDecoder
    from llmzip.quantize import TOTAL

    freqs = torch.ones((2, 400), dtype=torch.int32)
    freqs[:, 7] += TOTAL - 400
    with pytest.raises(FormatError, match="coded stream is invalid"):
        StreamDecoder(b"\xff" * 12).decode(freqs)
    block = Block(8, 0, 8, b"\x02", [b"\xff" * 12])
    with pytest.raises(FormatError, match="coded stream is invalid"):
        codec.decompress(_file(codec, [block]))
    for word in (b"\xfe\xff\xff\xff", b"\x00\x00\x00\x80", b"\x00" * 4):
        with pytest.raises(FormatError):
            codec.decompress(_file(codec, [Block(8, 0, 8, b"\x02", [word * 3])]))


def _header_with(codec: Codec, **changes):
    return dataclasses.replace(codec._header(), **changes)


@pytest.mark.parametrize("changes,message", [
    ({"context": 1 << 20}, "positions"),
    ({"batch": MAX_BATCH + 1}, "batch"),
    ({"batch": 1 << 20, "context": 1}, "batch"),
])
def test_header_sizes_are_checked_before_the_model_runs(no_model, changes, message):
    n_tokens = 3000
    header = _header_with(no_model, **changes)
    block = Block(n_tokens, 0, n_tokens, b"\x02", _streams(n_tokens, header.context, header.batch))
    with pytest.raises(FormatError, match=message):
        no_model.decompress(_file(no_model, [block], header=header))


def _v3_file(body: bytes) -> bytes:
    """A header body behind a valid frame and check of the current version (3 or later: the same
    framing), then an empty file's end."""
    framed = bytearray([FORMAT_VERSION])
    write_varint(framed, len(body))
    framed += body
    return MAGIC + bytes(framed) + crc16(framed).to_bytes(2, "little") + b"\x00\x00\x01"


def test_header_fields_that_are_not_text_or_too_long(codec):
    good = codec._header(version=2).to_bytes()
    name_len = good[0]
    cases = {
        "not UTF-8": bytes([name_len]) + b"\xff" * name_len + good[1 + name_len :],
        "string longer than the limit": _encode_varint(5000) + good[1:],
        "string longer than the header": _encode_varint(1000) + good[1:],
        "overlong varint": b"\xff" * 11 + good[1:],
        "extra bytes": good + b"\x00",
        "cut short": good[:-3],
    }
    blobs = []
    for name, body in cases.items():
        blob = bytearray(MAGIC + b"\x02")
        write_varint(blob, len(body))
        blob += body + crc32(body).to_bytes(4, "little") + b"\x00\x00" + bytes(4)
        blobs.append(bytes(blob))
    # Version 3: the float engine's header has its device class and software as strings.
    v3 = codec._header().to_bytes()
    device = codec.model.device_class.encode()
    at = v3.index(bytes([len(device)]) + device)
    blobs += [_v3_file(body) for body in (
        v3[:at + 1] + b"\xff" * len(device) + v3[at + 1 + len(device):],  # not UTF-8
        v3[:at] + _encode_varint(5000) + v3[at + 1:],  # longer than the limit
        v3[:at] + _encode_varint(1000) + v3[at + 1:],  # longer than the header
        v3[:4] + b"\xff" * 11 + v3[5:],  # overlong flags
        v3 + b"\x00",
        v3[:-3],
        v3[:4] + _encode_varint(1 << 20) + v3[5:],  # flags of fields this version does not have
    )]
    assert codec.decompress(_v3_file(v3)) == b""
    for blob in blobs:
        with pytest.raises(FormatError):
            codec.decompress(blob)
        with pytest.raises(FormatError):
            inspect(blob)


def test_declared_lengths_beyond_the_file_allocate_nothing(codec):
    """A block length of 200 MiB in a 300-byte file fails by reading, not by allocating 200 MiB."""
    header = io.BytesIO()
    ContainerWriter(header, codec._header())
    frame = bytearray()
    write_varint(frame, 200 << 20)
    reads = []

    class Source(io.BytesIO):
        def read(self, n=-1):
            reads.append(n)
            return super().read(n)

    with pytest.raises(FormatError, match="truncated"):
        codec.decompress_stream(Source(header.getvalue() + bytes(frame) + b"x" * 300), io.BytesIO())
    assert max(reads) <= 1 << 20


def test_encoder_refuses_what_the_decoder_would_refuse(llama):
    from llmzip import UnsupportedParameterError
    from llmzip.container import MAX_BLOCK_RAW_BYTES

    with pytest.raises(UnsupportedParameterError, match="batch"):
        Codec(llama, batch=MAX_BATCH + 1)
    with pytest.raises(UnsupportedParameterError, match="positions"):
        Codec(llama, context=llama.config.max_position_embeddings + 1)
    codec = Codec(llama, context=CONTEXT, batch=BATCH, engine="transformers")
    for block_bytes in (0, MAX_BLOCK_RAW_BYTES + 1):
        with pytest.raises(UnsupportedParameterError, match="block_bytes"):
            codec.compress_stream(io.BytesIO(b"data"), io.BytesIO(), block_bytes=block_bytes)
