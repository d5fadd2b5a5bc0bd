"""The container format: fields survive, and every inconsistency is refused as a FormatError."""
from __future__ import annotations

import io

import pytest

from llmzip import FormatError
from llmzip.container import (MAGIC, Block, Header, StreamReader, Trailer, write_block, write_header,
                              write_trailer, write_varint, Reader)


def _header(**over) -> Header:
    fields = dict(model_name="tiny", model_fingerprint=bytes(range(8)), tokenizer_fingerprint=bytes(8),
                  bos_id=1, context=512, batch=4, dtype="float32", device_class="cpu-x86_64-avx2",
                  threads=2, attention="sdpa", quantizer="torch-v1", precision=24, coder="constriction-0.5",
                  software="torch x")
    fields.update(over)
    return Header(**fields)


def test_header_round_trip():
    h = _header(extra={"a": "b"}, engine="static-v1+graphs", stream_windows=3)
    assert Header.from_bytes(h.to_bytes()) == h


def test_version_1_header_reads_with_its_implied_fields():
    """Version 1 had 16-byte fingerprints and no engine or stream_windows: transformers, one stream per batch."""
    h = _header(model_fingerprint=bytes(range(16)), tokenizer_fingerprint=bytes(16), engine="transformers",
                stream_windows=0)
    old = Header.from_bytes(h.to_bytes(version=1), version=1)
    assert old == h and old.windows_per_stream() == h.batch
    with pytest.raises(ValueError, match="8-byte"):
        h.to_bytes()


@pytest.mark.parametrize("n_tokens,context,batch,per,expected", [
    (0, 4, 2, 0, 0), (1, 4, 2, 0, 1), (16, 4, 2, 0, 2), (17, 4, 2, 0, 3),
    (40, 4, 5, 2, 6),  # 10 windows: two batches of 5, each cut into streams of 2, 2 and 1 windows
    (24, 4, 5, 2, 4),  # 6 windows: a batch of 5 (3 streams), then one window (1 stream)
])
def test_stream_count(n_tokens, context, batch, per, expected):
    assert _header(context=context, batch=batch, stream_windows=per).streams_in(n_tokens) == expected


@pytest.mark.parametrize("value", [0, 1, 127, 128, 300, 2**32, 2**63 - 1])
def test_varint_round_trip(value):
    buf = bytearray()
    write_varint(buf, value)
    assert Reader(buf, "x").varint() == value


def _container(blocks) -> bytes:
    out = io.BytesIO()
    h = _header(context=4, batch=2)
    write_header(out, h)
    for b in blocks:
        write_block(out, b)
    write_trailer(out, Trailer(sum(b.raw_len for b in blocks), 0))
    return out.getvalue()


def test_blocks_round_trip():
    blk = Block(raw_len=10, raw_crc=5, n_tokens=9, side=b"\x02", streams=[b"abcd", b"efgh"])
    blob = _container([blk, blk])
    r = StreamReader(io.BytesIO(blob))
    header, _ = r.read_header()
    got = [b for b, _ in r.blocks(header)]
    assert got == [blk, blk] and r.trailer == Trailer(20, 0)


def test_refusals():
    blob = _container([Block(10, 5, 9, b"\x02", [b"abcd", b"efgh"])])
    with pytest.raises(FormatError, match="not an llmzip file"):
        StreamReader(io.BytesIO(b"PK\x03\x04 zip file")).read_header()
    newer = MAGIC + bytes([99]) + blob[5:]
    with pytest.raises(FormatError, match="newer"):
        StreamReader(io.BytesIO(newer)).read_header()
    flipped = bytearray(blob)
    flipped[10] ^= 0x01
    with pytest.raises(FormatError, match="checksum"):
        StreamReader(io.BytesIO(bytes(flipped))).read_header()
    for cut in range(len(blob)):
        with pytest.raises(FormatError):
            r = StreamReader(io.BytesIO(blob[:cut]))
            h, _ = r.read_header()
            list(r.blocks(h))


def test_stream_count_must_match_tokens():
    bad = Block(10, 5, 9, b"\x02", [b"abcd"])  # 9 tokens / context 4 = 3 windows = 2 batches
    r = StreamReader(io.BytesIO(_container([bad])))
    h, _ = r.read_header()
    with pytest.raises(FormatError, match="stream count"):
        list(r.blocks(h))
