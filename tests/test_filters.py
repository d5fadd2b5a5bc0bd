"""The line-end filter: CRLF line ends coded as LF and restored exactly, decided block by block,
recorded in the block, refused when damaged, and off where asked (or in older formats)."""
from __future__ import annotations

import io

import pytest
from hypothesis import given, settings, strategies as st

from llmzip import ChecksumError, Codec, FormatError, inspect
from llmzip.cli import main
from llmzip.container import Block, StreamReader, frame_block
from llmzip.filters import crlf_line_ends, restore_crlf, to_line_feeds


@pytest.mark.parametrize("data,line_ends", [
    (b"one\r\ntwo\r\n", 2),
    (b"one\r\ntwo\r\nthree", 2),  # text after the last line end
    (b"\r\r\n\r\n", 2),  # a CR that does not end a line stays
    (b"one\r\ntwo\nthree\r\n", 0),  # one bare LF: the block is coded as it is
    (b"no line ends\r", 0),
    (b"", 0),
    (b"\n", 0),
    (b"\r\n", 1),
])
def test_which_blocks_the_filter_takes(data, line_ends):
    assert crlf_line_ends(data) == line_ends
    if line_ends:
        coded = to_line_feeds(data)
        assert len(coded) == len(data) - line_ends and coded.count(b"\n") == line_ends
        assert restore_crlf(coded, line_ends) == data


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from([b"a", b"\r", b"\n", b"\r\n", b"\r\r\n", b"\xff"]), max_size=40).map(b"".join))
def test_the_filter_restores_every_block_it_takes(data):
    line_ends = crlf_line_ends(data)
    if line_ends:
        assert restore_crlf(to_line_feeds(data), line_ends) == data
    else:
        assert data.count(b"\n") == 0 or data.count(b"\r\n") < data.count(b"\n")


def test_a_wrong_line_end_count_is_refused():
    with pytest.raises(FormatError, match="line-end count"):
        restore_crlf(b"one\ntwo\n", 3)
    assert restore_crlf(b"one\ntwo\n", 0) == b"one\ntwo\n"


@pytest.fixture(scope="module")
def codec(llama):
    return Codec(llama, context=64)


def test_crlf_text_is_coded_as_lf_in_fewer_tokens_and_restored(codec, llama, alice):
    data = alice[:1500]
    assert crlf_line_ends(data)
    blob, stats = codec.compress_with_stats(data)
    kept, kept_stats = Codec(llama, context=64, keep_line_ends=True).compress_with_stats(data)
    (block,) = inspect(blob).block_list
    assert block.line_ends == data.count(b"\r\n") and inspect(kept).block_list[0].line_ends == 0
    assert stats.tokens < kept_stats.tokens
    assert stats.text_bytes == kept_stats.text_bytes == len(data)  # the original's bytes, CRs counted
    assert codec.decompress(blob) == data and codec.decompress(kept) == data


def test_mixed_binary_and_blocks_without_line_ends_round_trip(codec, alice):
    data = (alice[:300] + b"\x00\xff\r\n\x80 binary \r\n" + alice[300:700] + b"bare\nfeed\r\n"
            + b"no line end at all, only a CR\r" * 20)
    out = io.BytesIO()
    codec.compress_stream(io.BytesIO(data), out, block_bytes=250)
    blob = out.getvalue()
    blocks = inspect(blob).block_list
    assert any(b.line_ends for b in blocks) and any(not b.line_ends for b in blocks)
    assert codec.decompress(blob) == data
    assert codec.decompress_range(blob, 100, 900) == data[100:900]


def test_format_5_has_no_filter_and_still_decodes(codec, alice):
    data = alice[:600]
    out = io.BytesIO()
    codec.compress_stream(io.BytesIO(data), out, version=5)
    blob = out.getvalue()
    assert inspect(blob).version == 5 and inspect(blob).block_list[0].line_ends == 0
    assert codec.decompress(blob) == data
    with pytest.raises(ValueError, match="no line-end filter"):
        Block(10, 0, 1, b"\x02", [b"\0" * 4], line_ends=2).to_bytes(version=5)


def _with_line_ends(blob: bytes, line_ends: int) -> bytes:
    """The one-block file `blob` with its block's line-end count replaced."""
    reader = StreamReader(io.BytesIO(blob))
    header, header_size = reader.read_header()
    ((block, size),) = list(reader.blocks(header))
    replaced = frame_block(Block(block.raw_len, block.raw_crc, block.n_tokens, block.side, block.streams,
                                 block.raw_start, line_ends))
    return blob[:header_size] + replaced + blob[header_size + size:]


def test_a_damaged_line_end_count_never_gives_wrong_output(codec, alice):
    data = alice[:500]
    blob = codec.compress(data)
    count = inspect(blob).block_list[0].line_ends
    assert count and codec.decompress(_with_line_ends(blob, count)) == data  # the helper rebuilds it exactly
    for wrong in (count - 1, count + 1, 1):
        with pytest.raises((FormatError, ChecksumError)):
            codec.decompress(_with_line_ends(blob, wrong))
    with pytest.raises((FormatError, ChecksumError)):
        codec.decompress(_with_line_ends(blob, 0))  # the CRs are not restored: the CRC-32 fails


def test_cli_keep_line_ends(llama_dir, alice, tmp_path):
    path = tmp_path / "crlf.txt"
    path.write_bytes(alice[:400])
    for extra, filtered in (([], True), (["--keep-line-ends"], False)):
        assert main(["compress", "-q", "-k", "-f", "--model", str(llama_dir), "--context", "64", *extra,
                     str(path)]) == 0
        packed = path.with_name("crlf.txt.llmz")
        assert bool(inspect(packed.read_bytes()).block_list[0].line_ends) == filtered
        assert main(["decompress", "-q", "-c", "--model", str(llama_dir), str(packed)]) == 0
