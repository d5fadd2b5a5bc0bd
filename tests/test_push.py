"""Push-based decompression (`Codec.decompressor`), in the manner of `lzma.LZMADecompressor`:
.llmz bytes fed in pieces of any size give back the original, checked block by block."""
from __future__ import annotations

import io
import random

import pytest

from llmzip import ChecksumError, Codec, FormatError, ModelMismatchError, StreamDecompressor
from llmzip.container import read_all


@pytest.fixture(scope="module")
def codec(llama) -> Codec:
    return Codec(llama, context=48)


@pytest.fixture(scope="module")
def several_blocks(codec, alice) -> tuple[bytes, bytes]:
    data = alice[:900] + bytes(range(256))
    blob = codec.compress(data, block_bytes=300)
    assert len(read_all(blob)[1]) >= 4  # cut after newlines near each 300 bytes
    return data, blob


def _feed(decompressor: StreamDecompressor, blob: bytes, sizes: list[int]) -> list[bytes]:
    pieces, at = [], 0
    for size in sizes:
        pieces.append(decompressor.decompress(blob[at : at + size]))
        at += size
    if at < len(blob):
        pieces.append(decompressor.decompress(blob[at:]))
    return pieces


def test_byte_by_byte_gives_each_block_once_it_has_arrived(codec, several_blocks):
    data, blob = several_blocks
    d = codec.decompressor()
    pieces = _feed(d, blob, [1] * len(blob))
    assert b"".join(pieces) == data and d.eof and d.unused_data == b"" and not d.needs_input
    # output comes block by block: as many non-empty pieces as blocks, each a whole block
    _, blocks, _ = read_all(blob)
    assert [len(p) for p in pieces if p] == [b.raw_len for b in blocks]
    # the statistics equal the pull decoder's
    pulled = codec.decompress_stream(io.BytesIO(blob), io.BytesIO())
    for name in ("original_bytes", "compressed_bytes", "header_bytes", "side_bytes", "stream_bytes", "tokens",
                 "blocks"):
        assert getattr(d.stats, name) == getattr(pulled, name), name


def test_random_pieces_max_length_and_unused_data(codec, several_blocks):
    data, blob = several_blocks
    rng = random.Random(5)
    d = codec.decompressor()
    out, at = bytearray(), 0
    while not d.eof:
        assert at < len(blob) or not d.needs_input, "all input given, yet more asked for"
        size = rng.randrange(0, 200)
        piece = blob[at : at + size] + (b"after the end" if at < len(blob) <= at + size else b"")
        at += size
        got = d.decompress(piece, max_length=97)
        assert len(got) <= 97
        out += got
        if len(got) == 97 and not d.eof:
            assert not d.needs_input  # more is waiting: a call without input returns it
    assert bytes(out) == data and d.unused_data == b"after the end"
    with pytest.raises(EOFError):
        d.decompress(b"x")
    # the whole file at once, asked for exactly the first block: the rest is waiting, not needed
    first = read_all(blob)[1][0].raw_len
    d = codec.decompressor()
    assert d.decompress(blob, max_length=first) == data[:first] and not d.needs_input and not d.eof
    assert d.decompress(b"") == data[first:] and d.eof


def test_empty_original_and_an_older_format(codec, gpt2, alice):
    d = codec.decompressor()
    assert d.decompress(codec.compress(b"")) == b"" and d.eof
    # a version 2 file ends with the whole's length and CRC-32 instead of an index
    old = Codec(gpt2, context=32, batch=2)
    out = io.BytesIO()
    old.compress_stream(io.BytesIO(alice[:300]), out, block_bytes=128, version=2)
    d = old.decompressor()
    assert b"".join(_feed(d, out.getvalue(), [7] * (len(out.getvalue()) // 7))) == alice[:300] and d.eof


def test_refusals_come_as_soon_as_their_unit_arrives(codec, gpt2, several_blocks):
    data, blob = several_blocks
    # a file for another model: refused once the header is complete, before any block is read
    other = Codec(gpt2, context=32).decompressor()
    with pytest.raises(ModelMismatchError):
        _feed(other, blob[:64], [1] * 63)
    # a damaged third block: the first two come out, then the third is refused when it arrives
    _, blocks, _ = read_all(blob)
    start_of_third = blob.index(blocks[2].streams[0])
    damaged = bytearray(blob)
    damaged[start_of_third + 2] ^= 0x40
    d = codec.decompressor()
    assert d.decompress(bytes(damaged[:start_of_third])) == data[: blocks[0].raw_len + blocks[1].raw_len]
    with pytest.raises((ChecksumError, FormatError)) as refused:
        d.decompress(bytes(damaged[start_of_third:]))
    # and it stays refused: nothing after the damaged block comes out as if the block were not there
    with pytest.raises(type(refused.value)):
        d.decompress(b"")
