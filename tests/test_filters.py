"""The filters: CRLF line ends coded as LF, and the soft breaks of hard-wrapped text as spaces, each
restored exactly, decided block by block, recorded in the block, refused or caught by the CRC-32
when damaged, and off where asked (or in older formats)."""
from __future__ import annotations

import io
import textwrap

import pytest
from hypothesis import given, settings, strategies as st

from llmzip import ChecksumError, Codec, FormatError, inspect
from llmzip.cli import main
from llmzip.container import Block, StreamReader, frame_block
from llmzip.filters import (BREAKS_PER_RECORD_BYTE, Wrap, crlf_line_ends, join_lines, plan_wrap, restore_crlf, rewrap,
                            soft_breaks, to_line_feeds, wrap_for)


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


# ---------------------------------------------------------------------------------------------
# The reflow filter

PROSE = ("It was the best of times, it was the worst of times, it was the age of wisdom, it was the age "
         "of foolishness, it was the epoch of belief, it was the epoch of incredulity, it was the season "
         "of Light, it was the season of Darkness, it was the spring of hope, it was the winter of despair.")


def _wrapped(width: int, paragraphs: int = 6) -> bytes:
    return "\n\n".join(textwrap.fill(PROSE, width) for _ in range(paragraphs)).encode() + b"\n"


@pytest.mark.parametrize("width", [40, 65, 72, 79])
def test_a_greedy_wrap_is_found_at_its_width_without_exceptions(width):
    text = _wrapped(width)
    wrap = plan_wrap(text)
    assert wrap.exceptions == () and wrap.width <= width  # the narrowest width that explains every break
    assert wrap_for(text, width) == Wrap(width, ())
    joined = join_lines(text, wrap)
    assert len(joined) == len(text) and joined.count(b"\n") == text.count(b"\n") - soft_breaks(text)
    assert b"\n\n" in joined and joined.count(b"\n") == 6 * 2 - 1  # paragraph ends stay
    assert rewrap(joined, wrap) == text


def _with_hand_break() -> tuple[bytes, int, int]:
    """A paragraph wrapped at 65 whose first line's last word is on a line of its own (a hand
    break), with where that break and the first line's end are."""
    text = bytearray(_wrapped(65, paragraphs=1))
    line_end = text.index(b"\n")
    early = text.rindex(b" ", 0, line_end)
    text[early] = ord("\n")
    return bytes(text), early, line_end


def test_a_break_where_the_line_would_fit_stays_an_lf():
    text, early, line_end = _with_hand_break()
    # Both that break and the one after the word (where the next word would still fit) stay LFs:
    # the wrap needs no exception for them.
    wrap = wrap_for(text)
    assert wrap == Wrap(65, ())
    joined = join_lines(text, wrap)
    assert joined[early] == joined[line_end] == ord("\n") and soft_breaks(joined) == 2
    assert rewrap(joined, wrap) == text


def test_a_record_of_an_earlier_writer_still_restores_its_text():
    """An earlier writer joined every soft break and recorded the two above as exceptions."""
    text, early, line_end = _with_hand_break()
    all_joined = text[:-1].replace(b"\n", b" ") + b"\n"
    exceptions = (all_joined[:early].count(b" "), all_joined[:line_end].count(b" "))
    assert rewrap(all_joined, Wrap(65, exceptions)) == text
    assert rewrap(all_joined, Wrap(65, ())) != text  # without them it differs


def test_a_space_where_the_wrap_would_break_is_recorded():
    text = bytearray(_wrapped(65, paragraphs=1))
    text[text.index(b"\n")] = ord(" ")  # the first two lines as one: longer than the width
    text = bytes(text)
    wrap = wrap_for(text, 65)
    # Every space of that line where the line so far and the next word pass 65 columns.
    first = text[:text.index(b"\n")]
    spaces = [p for p, c in enumerate(first) if c == ord(" ")]
    word_ends = [first.find(b" ", p + 1) if first.find(b" ", p + 1) >= 0 else len(first) for p in spaces]
    assert wrap.exceptions == tuple(k for k, end in enumerate(word_ends) if end > 65) != ()
    assert rewrap(join_lines(text, wrap), wrap) == text
    assert rewrap(join_lines(text, wrap), Wrap(65, ())) != text  # without them it differs


def test_columns_are_characters_not_bytes():
    text = textwrap.fill(PROSE.replace("e", "\u00e9"), 50).encode() + b"\n"  # 2 bytes, 1 column each
    assert wrap_for(text, 50) == Wrap(50, ()) and rewrap(join_lines(text, Wrap(50)), Wrap(50)) == text


@pytest.mark.parametrize("text", [
    b"",
    b"one line only\n",
    b"def f(x):\n    return x\n\nprint(f(1))\n",  # breaks that are not soft (indented, blank lines)
    b"a\nb\n",
    "\n".join(f"{k}: {w}" for k, w in enumerate(PROSE.split())).encode(),  # a list: every break is an exception
])
def test_text_that_does_not_pay_is_coded_as_it_is(text):
    assert plan_wrap(text) is None
    wrap = wrap_for(text)
    if wrap is not None:  # any record still restores the text; the filter just would not pay for it
        joined = join_lines(text, wrap)
        kept = soft_breaks(joined)
        assert soft_breaks(text) - kept < BREAKS_PER_RECORD_BYTE * (wrap.record_bytes() + kept)
        assert rewrap(joined, wrap) == text


def test_lines_that_end_early_keep_the_filter_off():
    """Wrapped paragraphs beside many short lines (code, a list): the lines are not mostly wrapped
    prose, and joining the few long ones would cost bytes."""
    prose = _wrapped(65, paragraphs=2)
    assert plan_wrap(prose) is not None
    listing = "".join(f"item_{k} = {k}\n" for k in range(40)).encode()
    assert plan_wrap(prose + b"\n" + listing) is None


@settings(max_examples=400, deadline=None)
@given(st.lists(st.sampled_from([b"a", b"word", b"longerword", b" ", b"  ", b"\n", b"\t", b"\xc3\xa9", b"\xff",
                                 b"\r\n"]), max_size=60).map(b"".join),
       st.one_of(st.none(), st.integers(1, 30)))
def test_every_record_restores_its_text(text, width):
    wrap = wrap_for(text, width)
    if wrap is None:
        assert soft_breaks(text) == 0
    else:
        assert wrap.width == width or width is None
        assert rewrap(join_lines(text, wrap), wrap) == text
        assert wrap.record_bytes() == len(_record_bytes(wrap))


def _record_bytes(wrap: Wrap) -> bytes:
    """The record as the container writes it: the block with and without it, the difference."""
    plain = Block(10, 0, 1, b"\x02", [b"\0" * 4]).to_bytes()
    return Block(10, 0, 1, b"\x02", [b"\0" * 4], wrap=wrap).to_bytes()[len(plain) - 5: -5]


def test_a_record_that_passes_the_text_is_refused():
    text = _wrapped(65)
    candidates = len(text.split()) - 1
    with pytest.raises(FormatError, match="line-wrap exceptions"):
        rewrap(join_lines(text, Wrap(65)), Wrap(65, (candidates + 10,)))


def test_hard_wrapped_text_is_coded_as_paragraphs_and_restored(codec, llama, alice):
    for data in (alice[:1500], to_line_feeds(alice[:1500])):  # with both filters, and with reflow alone
        blob, stats = codec.compress_with_stats(data)
        kept, kept_stats = Codec(llama, context=64, keep_line_ends=True).compress_with_stats(data)
        (block,) = inspect(blob).block_list
        assert block.wrap_width == 65 and inspect(kept).block_list[0].wrap_width == 0
        assert stats.tokens < kept_stats.tokens and stats.text_bytes == len(data)
        assert codec.decompress(blob) == data and codec.decompress(kept) == data


def test_format_6_has_no_reflow_and_still_decodes(codec, alice):
    data = alice[:600]
    out = io.BytesIO()
    codec.compress_stream(io.BytesIO(data), out, version=6)
    (block,) = inspect(out.getvalue()).block_list
    assert block.line_ends and not block.wrap_width
    assert codec.decompress(out.getvalue()) == data
    with pytest.raises(ValueError, match="no reflow filter"):
        Block(10, 0, 1, b"\x02", [b"\0" * 4], wrap=Wrap(65)).to_bytes(version=6)


def _with_wrap(blob: bytes, width: int, exceptions: tuple[int, ...]) -> bytes:
    """The one-block file `blob` with its block's wrap record replaced."""
    reader = StreamReader(io.BytesIO(blob))
    header, header_size = reader.read_header()
    ((block, size),) = list(reader.blocks(header))
    replaced = frame_block(Block(block.raw_len, block.raw_crc, block.n_tokens, block.side, block.streams,
                                 block.raw_start, block.line_ends, Wrap(width, exceptions)))
    return blob[:header_size] + replaced + blob[header_size + size:]


def test_a_damaged_wrap_record_never_gives_wrong_output(codec, alice):
    data = to_line_feeds(alice[:2000])
    blob = codec.compress(data)
    (block,) = inspect(blob).block_list
    wrap = wrap_for(data)
    assert block.wrap_width == wrap.width and codec.decompress(_with_wrap(blob, wrap.width, wrap.exceptions)) == data
    for width, exceptions in ((wrap.width - 1, wrap.exceptions), (wrap.width + 5, wrap.exceptions),
                              (wrap.width, wrap.exceptions + (10**6,)), (wrap.width, (0,) + wrap.exceptions[1:]),
                              (0, ())):
        with pytest.raises((FormatError, ChecksumError)):
            codec.decompress(_with_wrap(blob, width, exceptions))


def test_a_zero_wrap_width_is_refused(codec, alice):
    header, _ = StreamReader(io.BytesIO(codec.compress(alice[:100]))).read_header()
    body = bytearray(Block(10, 0, 1, b"", [b"\0" * 4], wrap=Wrap(3)).to_bytes())
    at = len(Block(10, 0, 1, b"", [b"\0" * 4]).to_bytes()) - 4  # the record's first byte, the width
    assert body[at] == 3 and Block.from_bytes(bytes(body), header).wrap == Wrap(3)
    body[at] = 0
    with pytest.raises(FormatError, match="line-wrap width is zero"):
        Block.from_bytes(bytes(body), header)


def test_cli_info_shows_the_wrap(llama_dir, alice, tmp_path, capsys):
    path = tmp_path / "wrapped.txt"
    path.write_bytes(alice[:1500])
    assert main(["compress", "-q", "-k", "--model", str(llama_dir), "--context", "64", str(path)]) == 0
    assert main(["info", str(path.with_name("wrapped.txt.llmz"))]) == 0
    table = capsys.readouterr().out.splitlines()
    head = table.index(next(line for line in table if "CRLF" in line))
    assert table[head].split()[5:7] == ["CRLF", "wrap"]
    assert table[head + 1].split()[6] == f"65/{len(wrap_for(to_line_feeds(alice[:1500])).exceptions)}"
