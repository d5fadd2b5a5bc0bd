"""The container format: fields survive, sizes are what FORMAT.md says, and every inconsistency is
refused as a FormatError."""
from __future__ import annotations

import dataclasses
import io

import pytest

from conftest import container_frames
from llmzip import FormatError
from llmzip.container import (ALL_TEXT_SIDE, FINGERPRINT_BYTES, FORMAT_VERSION, MAGIC, NO_MIXER, V3_FIELDS, V4_FIELDS, V5_FIELDS, Block, ContainerWriter, Header, Reader, StreamReader,
                              Trailer, crc16, header_bytes, read_index, write_varint)


def _header(**over) -> Header:
    """A float engine's header: most fields differ from the version 3 defaults."""
    fields = dict(model_name="tiny", model_fingerprint=bytes(range(4)), tokenizer_fingerprint=b"",
                  bos_id=1, context=512, batch=4, dtype="float32", device_class="cpu-x86_64-avx2",
                  threads=2, attention="sdpa", quantizer="torch-v1", precision=24, coder="constriction-0.5",
                  software="torch x")
    fields.update(over)
    return Header(**fields)


def _default_header(**over) -> Header:
    """What the codec writes with its default settings (portable engine), for a model with BOS 1."""
    fields = dict(model_name="", model_fingerprint=b"\xaa\xbb\xcc\xdd", tokenizer_fingerprint=b"", bos_id=1,
                  batch=16, dtype="float32", device_class="any", threads=0, attention="integer",
                  quantizer="int-v1", precision=24, coder="constriction-0.5-range-u32/24", software="",
                  engine="portable-v1", stream_windows=16, context=1024, carry=512, lane_tokens=8192,
                  mixer="match-v1")
    fields.update(over)
    return Header(**fields)


def test_header_round_trip():
    h = _header(extra={"a": "b"}, engine="static-v1+graphs", stream_windows=3)
    assert Header.from_bytes(h.to_bytes()) == h
    v2 = _header(model_fingerprint=bytes(range(8)), tokenizer_fingerprint=bytes(8), engine="static-v1",
                 stream_windows=2, version=2)
    assert Header.from_bytes(v2.to_bytes(), version=2) == v2


def test_default_header_is_fingerprint_and_one_byte_of_flags():
    """The header-size pin: a default file's header section is 13 bytes (magic 4, version 1,
    length 1, fingerprint 4, flags 1, CRC-16 2), one more when the BOS id is not 1."""
    h = _default_header()
    assert h.to_bytes() == b"\xaa\xbb\xcc\xdd\x00"
    assert len(header_bytes(h)) == 13
    assert len(header_bytes(_default_header(bos_id=0))) == 14
    named = _default_header(model_name="SmolLM2-135M-Instruct.Q4_1")
    assert len(named.to_bytes()) == 6  # the embedded default model's name is a one-byte code
    for header in (h, named, _default_header(bos_id=0)):
        assert Header.from_bytes(header.to_bytes()) == header


def test_default_header_at_every_level_has_one_byte_of_flags():
    from llmzip.levels import LEVELS

    for layout in LEVELS.values():
        h = _default_header(model_name="SmolLM2-135M-Instruct.Q4_1", context=layout.context, carry=layout.carry,
                            lane_tokens=layout.lane_size)
        assert h.to_bytes()[4] < 0x80  # the flags: one byte
        assert Header.from_bytes(h.to_bytes()) == h


def test_version_4_has_no_mixer():
    h = _default_header(mixer=NO_MIXER)
    v4 = dataclasses.replace(h, version=4)
    assert v4.to_bytes() == b"\xaa\xbb\xcc\xdd\x00"  # version 4's defaults: no mixer
    assert Header.from_bytes(v4.to_bytes(), version=4) == v4
    assert h.to_bytes()[4:] == b"\x80\x01\x02"  # version 5 states it: flag bit 7, code 2
    assert Header.from_bytes(h.to_bytes()) == h
    with pytest.raises(ValueError, match="version 4 has no mixer"):
        _default_header().to_bytes(version=4)


def test_version_3_has_no_carried_context():
    h = _default_header(context=512, carry=0, lane_tokens=0, mixer=NO_MIXER)
    v3 = dataclasses.replace(h, version=3)
    assert v3.to_bytes() == b"\xaa\xbb\xcc\xdd\x00"  # version 3's defaults: no carried context
    assert Header.from_bytes(v3.to_bytes(), version=3) == v3
    assert Header.from_bytes(h.to_bytes()) == h  # version 5 states it
    with pytest.raises(ValueError, match="version 3 has no carried context"):
        _default_header(mixer=NO_MIXER).to_bytes(version=3)
    with pytest.raises(FormatError, match="carried context"):
        Header.from_bytes(_default_header(carry=1024).to_bytes())


def test_v3_defaults_are_the_codecs_defaults():
    """The defaults that let a header leave fields out are the codec's own defaults, or the
    default file would carry every field."""
    from llmzip.codec import STREAM_WINDOWS
    from llmzip.compat import PORTABLE_ATTENTION, PORTABLE_DEVICE_CLASS
    from llmzip.coder import CODER_ID
    from llmzip.levels import DEFAULT_LEVEL, LEVELS
    from llmzip.portable import PORTABLE_ENGINE
    from llmzip.quantize import INTEGER_QUANTIZER, PRECISION

    defaults = {f.name: f.default for f in V5_FIELDS}
    assert [f.name for f in V5_FIELDS if f.name != "mixer"] == [f.name for f in V4_FIELDS]
    assert [f.name for f in V4_FIELDS if f.name not in ("carry", "lane_tokens")] == [f.name for f in V3_FIELDS]
    assert {f.name: f.default for f in V3_FIELDS}["context"] == 512  # version 3's default, no carried context
    level = LEVELS[DEFAULT_LEVEL]
    assert (defaults["context"], defaults["carry"], defaults["lane_tokens"]) == (level.context, level.carry,
                                                                                level.lane_size)
    assert defaults["stream_windows"] == STREAM_WINDOWS
    assert (defaults["engine"], defaults["quantizer"], defaults["precision"], defaults["coder"]) == (
        PORTABLE_ENGINE, INTEGER_QUANTIZER, PRECISION, CODER_ID)
    assert (defaults["device_class"], defaults["attention"]) == (PORTABLE_DEVICE_CLASS, PORTABLE_ATTENTION)


@pytest.mark.parametrize("field,value,size", [
    ("quantizer", "triton-v1:block=4096:warps=8", 4),  # code 3, block and warps as varints
    ("quantizer", "triton-v1:block=04096:warps=8", 1 + 1 + 29),  # not canonical: kept as a string
    ("engine", "static-v1", 1),
    ("dtype", "bfloat16", 1),
    ("attention", "sdpa", 1),
    ("attention", "flash_attention_2", 1 + 1 + 17),  # unknown values escape to a string
    ("device_class", "cuda-sm90:NVIDIA H100", 1 + 1 + 21),
])
def test_known_values_are_codes_and_others_strings(field, value, size):
    h = _default_header(**{field: value})
    assert len(h.to_bytes()) == 6 + size  # these fields' flags are past the first byte
    assert Header.from_bytes(h.to_bytes()) == h


def test_unknown_codes_and_flags_are_refused():
    body = bytearray(_default_header(engine="transformers").to_bytes())
    assert body[-1] == 2  # the engine's code
    body[-1] = 9
    with pytest.raises(FormatError, match="unknown engine code 9"):
        Header.from_bytes(bytes(body))
    with pytest.raises(FormatError, match="flags"):
        Header.from_bytes(b"\xaa\xbb\xcc\xdd" + bytes([0xFF, 0xFF, 0x1F]))  # bit 18: past the table
    with pytest.raises(FormatError, match="unexpected bytes"):
        Header.from_bytes(_default_header().to_bytes() + b"\x00")


def test_version_1_header_reads_with_its_implied_fields():
    """Version 1 had 16-byte fingerprints and no engine or stream_windows: transformers, one stream per batch."""
    h = _header(model_fingerprint=bytes(range(16)), tokenizer_fingerprint=bytes(16), engine="transformers",
                stream_windows=0, version=1)
    old = Header.from_bytes(h.to_bytes(), version=1)
    assert old == h and old.windows_per_stream() == h.batch
    with pytest.raises(ValueError, match="4-byte"):
        h.to_bytes(version=3)
    with pytest.raises(ValueError, match="transformers"):
        dataclasses.replace(h, engine="static-v1").to_bytes()


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


def _container(blocks, version: int = FORMAT_VERSION) -> bytes:
    out = io.BytesIO()
    fp = FINGERPRINT_BYTES[version]
    h = _header(context=4, batch=2, version=version, model_fingerprint=bytes(fp),
                tokenizer_fingerprint=bytes(fp if version < 3 else 0), engine="transformers")
    writer = ContainerWriter(out, h)
    for b in blocks:
        writer.add(b)
    writer.close(total_crc=0)
    return out.getvalue()


def _read(blob: bytes) -> tuple[list[Block], StreamReader]:
    r = StreamReader(io.BytesIO(blob))
    header, _ = r.read_header()
    return [b for b, _ in r.blocks(header)], r


BLK = Block(raw_len=10, raw_crc=5, n_tokens=9, side=b"\x00\x01\x02", streams=[b"abcd", b"efgh"])


@pytest.mark.parametrize("version", [1, 2, 3])
def test_blocks_round_trip(version):
    got, r = _read(_container([BLK, BLK], version))
    assert got == [BLK, dataclasses.replace(BLK, raw_start=10)] and r.total_len == 20
    assert (r.trailer == Trailer(20, 0)) if version < 3 else r.trailer is None


def test_all_text_side_channel_is_stored_as_nothing():
    text = dataclasses.replace(BLK, side=ALL_TEXT_SIDE)
    assert len(text.to_bytes()) == len(BLK.to_bytes()) - 3 and text.stored_side_len() == 0
    assert text.stored_side_len(version=2) == 1
    assert _read(_container([text]))[0] == [text]


def test_one_block_file_ends_with_three_bytes():
    """End tag, an index of one block (its count: the last block's entry is implied), a one-byte footer."""
    blob = _container([BLK])
    assert blob.endswith(b"\x00\x01\x01")
    header_size = len(header_bytes(_header(context=4, batch=2, model_fingerprint=bytes(4), engine="transformers")))
    assert len(blob) == header_size + 1 + len(BLK.to_bytes()) + 3


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
            _read(blob[:cut])


def test_header_check_covers_version_and_length():
    h = _default_header()
    framed = bytearray(header_bytes(h))
    assert int.from_bytes(framed[-2:], "little") == crc16(framed[4:-2])
    for pos in range(4, len(framed)):
        for bit in range(8):
            damaged = bytearray(framed)
            damaged[pos] ^= 1 << bit
            with pytest.raises(FormatError):
                StreamReader(io.BytesIO(bytes(damaged) + b"\x00\x00\x01")).read_header()


def test_stream_lengths_must_add_up():
    bad = Block(10, 5, 9, b"\x02", [b"abcd"])  # 9 tokens / context 4 = 3 windows = 2 batches
    with pytest.raises(FormatError, match="stream count"):
        _read(_container([bad], version=2))
    # version 3 stores no count and no last length: a first stream longer than the block fails
    body = bytearray(dataclasses.replace(BLK, streams=[b"abcd", b"efgh"]).to_bytes())
    assert body[-9] == 4  # the first stream's length
    body[-9] = 12
    with pytest.raises(FormatError, match="stream length"):
        Block.from_bytes(bytes(body), _header(context=4, batch=2))


def _blocks(n: int) -> list[Block]:
    return [Block(10 + k, k, 9, b"\x02", [bytes([k]) * 4, b"efgh"]) for k in range(n)]


@pytest.mark.parametrize("order,good", [
    ((0, 2, 3), 1),  # block 1 removed: block 0 passes, block 2 is refused before it is read on
    ((0, 1, 1, 2, 3), 2),  # block 1 repeated
    ((0, 2, 1, 3), 1),  # blocks 1 and 2 swapped
    ((1, 2, 3), 0),  # the first block removed
])
def test_removed_repeated_or_reordered_blocks_are_refused_in_order(order, good):
    head, frames, end = container_frames(_container(_blocks(4)))
    r = StreamReader(io.BytesIO(head + b"".join(frames[k] for k in order) + end))
    header, _ = r.read_header()
    seen = []
    with pytest.raises(FormatError, match="removed, repeated or reordered"):
        for block, _ in r.blocks(header):
            seen.append(block)
    assert seen == [dataclasses.replace(b, raw_start=sum(10 + j for j in range(k)))
                    for k, b in enumerate(_blocks(4)[:good])]


def test_removed_last_block_is_caught_by_the_index():
    head, frames, end = container_frames(_container(_blocks(3)))
    with pytest.raises(FormatError, match="index lists 3 blocks"):
        _read(head + b"".join(frames[:2]) + end)


def test_index_from_the_end():
    blocks = _blocks(3)
    blob = _container(blocks)
    index = read_index(io.BytesIO(blob))
    head, frames, _ = container_frames(blob)
    assert len(index) == 3 and index.total_len == 33
    assert list(index.offsets) == [len(head), len(head) + len(frames[0]), len(head) + len(frames[0]) + len(frames[1])]
    assert list(index.raw_starts) == [0, 10, 21] and list(index.sizes) == [len(f) for f in frames]
    assert [index.locate(p) for p in (0, 9, 10, 20, 21, 32)] == [0, 0, 1, 1, 2, 2]
    source = io.BytesIO(blob)
    assert index.read_block(source, 1) == dataclasses.replace(blocks[1], raw_start=10)
    with pytest.raises(ValueError):
        index.locate(33)
    empty = read_index(io.BytesIO(_container([])))
    assert len(empty) == 0 and empty.total_len == 0


def test_index_of_an_older_version_is_none_and_rewinds():
    source = io.BytesIO(_container(_blocks(2), version=2))
    assert read_index(source) is None and source.tell() == 0


def test_damaged_index_is_refused_or_caught_when_used():
    blob = _container(_blocks(3))
    for cut in range(1, 4):
        with pytest.raises(FormatError):
            read_index(io.BytesIO(blob[:-cut]))
    with pytest.raises(FormatError):
        read_index(io.BytesIO(blob + b"\x00"))
    # Entries that still add up but point into the wrong places: found out when the block is read.
    head, frames, end = container_frames(blob)
    assert end[:2] == b"\x00\x03"
    entries = end[2:-1]
    swapped = bytes([entries[2], entries[3], entries[0], entries[1]])  # blocks 0 and 1 swap entries
    damaged = head + b"".join(frames) + b"\x00\x03" + swapped + end[-1:]
    index = read_index(io.BytesIO(damaged))
    with pytest.raises(FormatError, match="block 0"):
        index.read_block(io.BytesIO(damaged), 0)
    with pytest.raises(FormatError, match="index does not match block 0"):
        _read(damaged)
